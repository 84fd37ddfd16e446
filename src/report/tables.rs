//! The report's tables, as Markdown and as HTML: Table 1 (15 subsets in the paper's order
//! with ○/● marks, Dice and HD95 of WT/TC/ET, means row), Table 2 (mean Dice per fusion
//! strategy) and the Fig.-3 attention summary.

use std::fmt::Write;

use super::inputs::{Attention, RegionScore, Summary};
use crate::labels::Region;
use crate::modality::{Modality, Subset};

/// A plain table: header cells and rows of cells (text, no markup).
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Header cells.
    pub header: Vec<String>,
    /// Body rows; the last may be a summary row (see `footer`).
    pub rows: Vec<Vec<String>>,
    /// Number of trailing rows that are summaries (drawn bold).
    pub footer: usize,
}

impl Table {
    /// GitHub-flavoured Markdown; numeric columns (all but those starting with a mark or
    /// name) are right-aligned.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "| {} |", self.header.join(" | "));
        let align: Vec<&str> = self
            .header
            .iter()
            .enumerate()
            .map(|(i, _)| if self.is_numeric(i) { "---:" } else { ":---" })
            .collect();
        let _ = writeln!(s, "|{}|", align.join("|"));
        let body = self.rows.len() - self.footer.min(self.rows.len());
        for (r, row) in self.rows.iter().enumerate() {
            let cells: Vec<String> = row
                .iter()
                .map(|c| {
                    let c = c.replace('|', "\\|");
                    if r >= body && !c.is_empty() {
                        format!("**{c}**")
                    } else {
                        c
                    }
                })
                .collect();
            let _ = writeln!(s, "| {} |", cells.join(" | "));
        }
        s
    }

    /// An HTML `<table>` with escaped text.
    pub fn html(&self) -> String {
        let mut s = String::from("<table>\n<thead><tr>");
        for h in &self.header {
            let _ = write!(s, "<th>{}</th>", escape(h));
        }
        s.push_str("</tr></thead>\n<tbody>\n");
        let body = self.rows.len() - self.footer.min(self.rows.len());
        for (r, row) in self.rows.iter().enumerate() {
            s.push_str(if r >= body {
                "<tr class=\"footer\">"
            } else {
                "<tr>"
            });
            for (i, c) in row.iter().enumerate() {
                let class = if self.is_numeric(i) {
                    " class=\"num\""
                } else {
                    ""
                };
                let _ = write!(s, "<td{class}>{}</td>", escape(c));
            }
            s.push_str("</tr>\n");
        }
        s.push_str("</tbody>\n</table>\n");
        s
    }

    /// Whether column `i` holds numbers in every body row that has a value.
    fn is_numeric(&self, i: usize) -> bool {
        let mut any = false;
        for row in &self.rows {
            match row.get(i).map(String::as_str) {
                None | Some("") | Some("–") => {}
                Some(c) if c.parse::<f64>().is_ok() => any = true,
                Some(_) => return false,
            }
        }
        any
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Dice as a percentage with two decimals, as the paper prints it.
pub fn dice_pct(d: f64) -> String {
    format!("{:.2}", d * 100.0)
}

/// HD95 in mm with two decimals, `–` when absent.
pub fn hd95_mm(h: Option<f64>) -> String {
    h.map_or_else(|| "–".to_string(), |h| format!("{h:.2}"))
}

/// Table 1 for one model: a row per evaluated subset in the paper's order (`0001` FLAIR
/// first … `1111` last), columns T1, T1c, T2, FLAIR (○ missing, ● available), Dice % of
/// WT, TC, ET, HD95 mm of WT, TC, ET; a final `Mean` row.
pub fn table1(summary: &Summary) -> Table {
    let mut header: Vec<String> = Modality::ALL
        .iter()
        .map(|m| m.label().to_string())
        .collect();
    for r in Region::ALL {
        header.push(format!("Dice {r}"));
    }
    for r in Region::ALL {
        header.push(format!("HD95 {r}"));
    }
    let scores_cells = |s: &[RegionScore; 3]| {
        let mut v: Vec<String> = s.iter().map(|x| dice_pct(x.dice)).collect();
        v.extend(s.iter().map(|x| hd95_mm(x.hd95)));
        v
    };
    let mut rows = Vec::new();
    for subset in Subset::all_nonempty() {
        let Some(scores) = summary.subsets.get(&subset) else {
            continue;
        };
        let mut row: Vec<String> = subset.marks().chars().map(String::from).collect();
        row.extend(scores_cells(scores));
        rows.push(row);
    }
    let mut mean = vec![
        "Mean".to_string(),
        String::new(),
        String::new(),
        String::new(),
    ];
    mean.extend(scores_cells(&summary.mean));
    rows.push(mean);
    Table {
        header,
        rows,
        footer: 1,
    }
}

/// Table 2: mean Dice % over the 15 subsets of WT (Complete), TC (Core), ET (Enhancing)
/// and their average, one row per `(label, summary)`.
pub fn table2(models: &[(String, &Summary)]) -> Table {
    let header = [
        "Method",
        "Complete (WT)",
        "Core (TC)",
        "Enhancing (ET)",
        "Average",
    ]
    .map(String::from)
    .to_vec();
    let rows = models
        .iter()
        .map(|(label, s)| {
            let d = s.mean.map(|x| x.dice);
            vec![
                label.clone(),
                dice_pct(d[0]),
                dice_pct(d[1]),
                dice_pct(d[2]),
                dice_pct(d.iter().sum::<f64>() / 3.0),
            ]
        })
        .collect();
    Table {
        header,
        rows,
        footer: 0,
    }
}

/// The Fig.-3 summary as a table: a row per region, the mean attention weight of each
/// modality, and the modality with the largest weight.
pub fn attention_table(a: &Attention) -> Table {
    let mut header = vec!["Region".to_string()];
    header.extend(Modality::ALL.iter().map(|m| m.label().to_string()));
    header.push("Largest".to_string());
    let rows = a
        .regions
        .iter()
        .map(|(name, w)| {
            let mut row = vec![name.clone()];
            row.extend(
                w.iter()
                    .map(|x| x.map_or_else(|| "–".to_string(), |x| format!("{x:.3}"))),
            );
            row.push(
                a.dominant(name)
                    .map_or_else(String::new, |m| m.label().to_string()),
            );
            row
        })
        .collect();
    Table {
        header,
        rows,
        footer: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::inputs::RegionScores;

    fn summary() -> Summary {
        Summary::from_rows(Subset::all_nonempty().map(|s| {
            let r: RegionScores = std::array::from_fn(|i| RegionScore {
                dice: s.bits() as f64 / 100.0 + i as f64 / 10.0,
                hd95: (i != 2).then_some(2.5),
            });
            (s, r)
        }))
    }

    #[test]
    fn table1_rows_follow_paper_order_with_marks() {
        let t = table1(&summary());
        assert_eq!(t.rows.len(), 16);
        assert_eq!(t.header[..4], ["T1", "T1c", "T2", "FLAIR"]);
        assert_eq!(t.rows[0][..4], ["○", "○", "○", "●"]);
        assert_eq!(t.rows[3][..4], ["○", "●", "○", "○"]);
        assert_eq!(t.rows[14][..4], ["●", "●", "●", "●"]);
        assert_eq!(t.rows[15][0], "Mean");
        assert_eq!(t.rows[0][4], "1.00");
        assert_eq!(t.rows[14][6], "35.00");
        assert_eq!(t.rows[0][9], "–");
        let md = t.markdown();
        assert_eq!(md.lines().count(), 18);
        assert!(md.contains("| **Mean** |"));
        let html = t.html();
        assert_eq!(html.matches("<tr>").count(), 1 + 15);
        assert!(html.contains("class=\"footer\""));
    }

    #[test]
    fn table2_and_attention() {
        let s = summary();
        let t = table2(&[
            ("Average fusion".into(), &s),
            ("Adaptive <fusion>".into(), &s),
        ]);
        assert_eq!(t.rows.len(), 2);
        assert!(t.html().contains("Adaptive &lt;fusion&gt;"));
        let a = Attention::from_json(r#"{"ET": [0.1, 0.6, 0.2, 0.1]}"#).unwrap();
        let t = attention_table(&a);
        assert_eq!(t.rows[0], ["ET", "0.100", "0.600", "0.200", "0.100", "T1c"]);
    }
}
