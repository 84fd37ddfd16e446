//! The report's tables, as Markdown and as HTML: Table 1 (15 subsets in the paper's order
//! with ○/● marks, Dice and HD95 of WT/TC/ET, means row; the one renderer of it, used by the
//! report and by `evaluate`'s `summary.md`), Table 2 (mean Dice per fusion strategy) and the
//! Fig.-3 attention summary.

use std::fmt::Write;

use super::attention::Attention;
use super::scores::{ScoreTable, SubsetScores};
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

/// Dice as a percentage with two decimals, as the paper prints it; `–` when not finite.
pub fn dice_pct(d: f64) -> String {
    if d.is_finite() {
        format!("{:.2}", d * 100.0)
    } else {
        "–".to_string()
    }
}

/// HD95 in mm with two decimals, `–` when absent or not finite.
pub fn hd95_mm(h: Option<f64>) -> String {
    match h {
        Some(h) if h.is_finite() => format!("{h:.2}"),
        _ => "–".to_string(),
    }
}

/// The optional columns of [`table1`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Table1Columns {
    /// Dice and HD95 of ET after post-processing (`Dice ET (pp)`, `HD95 ET (pp)`).
    pub et_postprocessed: bool,
    /// The number of cases averaged (`Cases`).
    pub cases: bool,
}

/// Table 1 for one model: a row per evaluated subset in the paper's order (`0001` FLAIR
/// first … `1111` last), columns T1, T1c, T2, FLAIR (○ missing, ● available), Dice % of
/// WT, TC, ET, HD95 mm of WT, TC, ET (each group followed by ET after post-processing when
/// `columns` asks), the number of cases when asked; a final `Mean` row.
pub fn table1(scores: &ScoreTable, columns: Table1Columns) -> Table {
    let pp = columns.et_postprocessed;
    let mut header: Vec<String> = Modality::ALL
        .iter()
        .map(|m| m.label().to_string())
        .collect();
    header.extend(Region::ALL.iter().map(|r| format!("Dice {r}")));
    if pp {
        header.push("Dice ET (pp)".to_string());
    }
    header.extend(Region::ALL.iter().map(|r| format!("HD95 {r}")));
    if pp {
        header.push("HD95 ET (pp)".to_string());
    }
    if columns.cases {
        header.push("Cases".to_string());
    }
    let cells = |marks: Vec<String>, s: &SubsetScores| {
        let et_pp = s.et_postprocessed;
        let mut v = marks;
        v.extend(s.regions.iter().map(|x| dice_pct(x.dice)));
        if pp {
            v.push(dice_pct(et_pp.map_or(f64::NAN, |p| p.dice)));
        }
        v.extend(s.regions.iter().map(|x| hd95_mm(x.hd95)));
        if pp {
            v.push(hd95_mm(et_pp.and_then(|p| p.hd95)));
        }
        if columns.cases {
            v.push(s.cases.to_string());
        }
        v
    };
    let rows = subset_rows(
        scores.subsets.keys().copied(),
        |subset, marks| match subset {
            Some(s) => cells(marks, &scores.subsets[&s]),
            None => cells(marks, &scores.mean),
        },
    );
    Table {
        header,
        rows,
        footer: 1,
    }
}

/// The rows of a Table-1 layout: one per subset of `subsets` (in the order given), then the
/// `Mean` row; `cells(subset, marks)` gives a row's cells from its four mark cells (○/● for a
/// subset, `Mean` and three blanks for the mean row, where `subset` is `None`).
fn subset_rows(
    subsets: impl Iterator<Item = Subset>,
    cells: impl Fn(Option<Subset>, Vec<String>) -> Vec<String>,
) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = subsets
        .map(|s| cells(Some(s), s.marks().chars().map(String::from).collect()))
        .collect();
    let mean_marks = vec![
        "Mean".to_string(),
        String::new(),
        String::new(),
        String::new(),
    ];
    rows.push(cells(None, mean_marks));
    rows
}

/// The score a several-method Table 1 shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Dice in %.
    Dice,
    /// HD95 in mm.
    Hd95,
}

/// Table 1 of several methods in the paper's layout: a row per subset (the union of the
/// methods' subsets, paper order) with ○/● marks, then for each region WT, TC, ET one column
/// per method (`WT · <label>`), the `Mean` row last. A subset a method did not evaluate is
/// `–`.
pub fn table1_methods(methods: &[(String, &ScoreTable)], metric: Metric) -> Table {
    let mut header: Vec<String> = Modality::ALL
        .iter()
        .map(|m| m.label().to_string())
        .collect();
    for r in Region::ALL {
        header.extend(methods.iter().map(|(label, _)| format!("{r} · {label}")));
    }
    let subsets: std::collections::BTreeSet<Subset> = methods
        .iter()
        .flat_map(|(_, t)| t.subsets.keys().copied())
        .collect();
    let value = |row: Option<&SubsetScores>, r: usize| match (row, metric) {
        (None, _) => "–".to_string(),
        (Some(x), Metric::Dice) => dice_pct(x.regions[r].dice),
        (Some(x), Metric::Hd95) => hd95_mm(x.regions[r].hd95),
    };
    let rows = subset_rows(subsets.into_iter(), |subset, mut marks| {
        for r in 0..Region::ALL.len() {
            marks.extend(methods.iter().map(|(_, t)| {
                let row = match subset {
                    Some(s) => t.subsets.get(&s),
                    None => Some(&t.mean),
                };
                value(row, r)
            }));
        }
        marks
    });
    Table {
        header,
        rows,
        footer: 1,
    }
}

/// Table 2: mean Dice % over the 15 subsets of WT (Complete), TC (Core), ET (Enhancing)
/// and their average, one row per `(label, scores)`.
pub fn table2(models: &[(String, &ScoreTable)]) -> Table {
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
            let d = s.mean.regions.map(|x| x.dice);
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
    use crate::modality::Subset;
    use crate::report::scores::RegionScore;

    fn summary() -> ScoreTable {
        ScoreTable::from_rows(Subset::all_nonempty().map(|s| {
            let regions = std::array::from_fn(|i| {
                RegionScore::new(
                    s.bits() as f64 / 100.0 + i as f64 / 10.0,
                    (i != 2).then_some(2.5),
                )
            });
            let row = SubsetScores {
                regions,
                et_postprocessed: Some(RegionScore::new(0.25, Some(f64::NAN))),
                cases: 3,
            };
            (s, row)
        }))
    }

    #[test]
    fn table1_rows_follow_paper_order_with_marks() {
        let t = table1(&summary(), Table1Columns::default());
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
    fn table1_optional_columns_follow_their_groups() {
        let columns = Table1Columns {
            et_postprocessed: true,
            cases: true,
        };
        let t = table1(&summary(), columns);
        assert_eq!(
            t.header[4..],
            [
                "Dice WT",
                "Dice TC",
                "Dice ET",
                "Dice ET (pp)",
                "HD95 WT",
                "HD95 TC",
                "HD95 ET",
                "HD95 ET (pp)",
                "Cases"
            ]
        );
        assert_eq!(t.rows[0][7..], ["25.00", "2.50", "2.50", "–", "–", "3"]);
        assert_eq!(t.rows.len(), 16);
    }

    #[test]
    fn table1_of_several_methods_has_a_column_per_region_and_method() {
        let a = summary();
        let mut b = summary();
        b.subsets.remove(&Subset::FULL);
        let t = table1_methods(&[("A2FSeg".into(), &a), ("HeMIS".into(), &b)], Metric::Dice);
        assert_eq!(
            t.header,
            [
                "T1",
                "T1c",
                "T2",
                "FLAIR",
                "WT · A2FSeg",
                "WT · HeMIS",
                "TC · A2FSeg",
                "TC · HeMIS",
                "ET · A2FSeg",
                "ET · HeMIS"
            ]
        );
        assert_eq!(t.rows.len(), 16);
        assert_eq!(t.footer, 1);
        assert_eq!(t.rows[0][..4], ["○", "○", "○", "●"]);
        // 0001: WT 1.00 %, TC 11.00 %, ET 21.00 % for both methods.
        assert_eq!(
            t.rows[0][4..],
            ["1.00", "1.00", "11.00", "11.00", "21.00", "21.00"]
        );
        // 1111 is missing for HeMIS.
        assert_eq!(t.rows[14][..6], ["●", "●", "●", "●", "15.00", "–"]);
        assert_eq!(t.rows[15][0], "Mean");
        assert_eq!(t.rows[15][4], dice_pct(a.mean.regions[0].dice));
        let h = table1_methods(&[("A2FSeg".into(), &a)], Metric::Hd95);
        assert_eq!(h.rows[0][4..], ["2.50", "2.50", "–"]);
        assert_eq!(h.header.len(), 7);
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
