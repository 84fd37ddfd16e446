//! Where in a TOML configuration file a problem lies. Every error about a configuration file
//! is one line, `FILE: line L, column C: message`: the toml crate's own rendering spreads a
//! syntax error over several lines (a source snippet with a caret), and an invalid value found
//! after the file's keys were merged into a preset knows neither its file nor its place.

use std::ops::Range;

use anyhow::{Error, anyhow};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// A configuration file's text, parsed once as a plain table (what the settings are read
/// from) and once with the places of its keys and values (what errors point at).
pub(crate) struct ConfigFile<'a> {
    /// How errors name the file (its path).
    origin: &'a str,
    /// The file's text.
    text: &'a str,
    /// The document with the byte ranges of every key and value.
    spans: Spanned<DeTable<'a>>,
}

/// Which part of a `key = value` line an error points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// The key (an unknown key).
    Key,
    /// The value (an invalid value).
    Value,
}

impl<'a> ConfigFile<'a> {
    /// Parses `text`, read from the file `origin`; a syntax error is one line naming the
    /// file, the line and the column.
    pub(crate) fn parse(origin: &'a str, text: &'a str) -> Result<(Self, toml::Table), Error> {
        let located = |e: toml::de::Error| match e.span() {
            Some(span) => at(origin, text, span.start, e.message()),
            None => anyhow!("{origin}: {}", one_line(e.message())),
        };
        let spans = DeTable::parse(text).map_err(located)?;
        let table: toml::Table = toml::from_str(text).map_err(located)?;
        Ok((
            ConfigFile {
                origin,
                text,
                spans,
            },
            table,
        ))
    }

    /// An error about the dotted key path `key` (`augmentation.p_rotation`): at its line and
    /// column when the file has that key, else naming the file only.
    pub(crate) fn error_at(&self, key: &str, part: Part, message: &str) -> Error {
        match self.span_of(key, part) {
            Some(span) => at(self.origin, self.text, span.start, message),
            None => anyhow!("{}: {}", self.origin, one_line(message)),
        }
    }

    /// An error about the file as a whole.
    pub(crate) fn error(&self, message: &str) -> Error {
        anyhow!("{}: {}", self.origin, one_line(message))
    }

    /// The byte range of `key`'s key or value in the text, if the file has that key.
    fn span_of(&self, key: &str, part: Part) -> Option<Range<usize>> {
        let mut table = self.spans.get_ref();
        let mut names = key.split('.').peekable();
        while let Some(name) = names.next() {
            let (k, v) = table.iter().find(|(k, _)| k.get_ref().as_ref() == name)?;
            if names.peek().is_none() {
                return Some(match part {
                    Part::Key => k.span(),
                    Part::Value => v.span(),
                });
            }
            match v.get_ref() {
                DeValue::Table(t) => table = t,
                _ => return None,
            }
        }
        None
    }
}

/// `ORIGIN: line L, column C: message` for the byte offset `offset` of `text` (line and
/// column from 1, the column counted in characters).
fn at(origin: &str, text: &str, offset: usize, message: &str) -> Error {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    anyhow!(
        "{origin}: line {line}, column {column}: {}",
        one_line(message)
    )
}

/// `message` on one line (the toml crate's messages may end with or hold newlines).
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The dotted paths of the leaf values of `table` (values that are not tables), with the
/// values: the settings a configuration file sets.
pub(crate) fn leaves(table: &toml::Table) -> Vec<(String, toml::Value)> {
    let mut out = Vec::new();
    for (k, v) in table {
        match v {
            toml::Value::Table(t) => out.extend(
                leaves(t)
                    .into_iter()
                    .map(|(path, v)| (format!("{k}.{path}"), v)),
            ),
            _ => out.push((k.clone(), v.clone())),
        }
    }
    out
}

/// `table` with the dotted key path `key` set to `value` (a key that is not there is
/// added, creating tables on the way).
pub(crate) fn with_leaf(table: &toml::Table, key: &str, value: &toml::Value) -> toml::Table {
    let mut out = table.clone();
    let mut slot = &mut out;
    let names: Vec<&str> = key.split('.').collect();
    for name in &names[..names.len() - 1] {
        let entry = slot
            .entry(name.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(t) = entry else {
            unreachable!("just made a table")
        };
        slot = t;
    }
    slot.insert(names[names.len() - 1].to_string(), value.clone());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(origin: &str, text: &str) -> String {
        match ConfigFile::parse(origin, text) {
            Ok(_) => panic!("{text:?} parsed"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn syntax_errors_are_one_line_with_line_and_column() {
        let e = err("f.toml", "epochs = 3\nlr = \n");
        assert!(e.starts_with("f.toml: line 2, column 6: "), "{e}");
        assert!(!e.contains('\n'), "{e}");
        assert!(e.contains("quoted"), "{e}");
        let e = err("g.toml", "[model\nx = 1\n");
        assert!(e.starts_with("g.toml: line 1, column "), "{e}");
        assert!(!e.contains('\n') && !e.contains('^'), "{e}");
        // A key given twice.
        let e = err("h.toml", "lr = 1.0\nlr = 2.0\n");
        assert!(e.starts_with("h.toml: line 2, column 1: "), "{e}");
    }

    #[test]
    fn errors_point_at_keys_and_values() {
        let text = "epochs = 3\n\n[augmentation]\n  p_rotation = \"é\"\n";
        let (file, table) = ConfigFile::parse("f.toml", text).unwrap();
        assert_eq!(table["epochs"].as_integer(), Some(3));
        let e = file.error_at("augmentation.p_rotation", Part::Value, "bad\nvalue");
        assert_eq!(format!("{e}"), "f.toml: line 4, column 16: bad value");
        let e = file.error_at("augmentation.p_rotation", Part::Key, "unknown key");
        assert_eq!(format!("{e}"), "f.toml: line 4, column 3: unknown key");
        let e = file.error_at("epochs", Part::Value, "m");
        assert_eq!(format!("{e}"), "f.toml: line 1, column 10: m");
        // A key the file does not have: the file only.
        let e = file.error_at("model.arch", Part::Value, "m");
        assert_eq!(format!("{e}"), "f.toml: m");
        // Dotted keys are found like tables.
        let (file, _) = ConfigFile::parse("f.toml", "model.fusion = \"x\"\n").unwrap();
        let e = file.error_at("model.fusion", Part::Value, "m");
        assert_eq!(format!("{e}"), "f.toml: line 1, column 16: m");
    }

    #[test]
    fn leaves_and_with_leaf_round_trip() {
        let table: toml::Table = toml::from_str("a = 1\n[t]\nb = [1, 2]\nc = 'x'\n").unwrap();
        let l = leaves(&table);
        let paths: Vec<&str> = l.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["a", "t.b", "t.c"]);
        let mut rebuilt = toml::Table::new();
        for (p, v) in &l {
            rebuilt = with_leaf(&rebuilt, p, v);
        }
        assert_eq!(rebuilt, table);
    }
}
