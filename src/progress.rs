//! What long-running commands tell the user while they work: progress bars and event lines.
//!
//! - [`bar`] / [`labelled_bar`]: the one progress-bar style of the crate (position, elapsed
//!   time and ETA), drawn on stderr, hidden when quiet.
//! - [`Sink`]: where a command's events go. An event ([`Event`]) knows its text line and its
//!   JSON object; the sink's [`Output`] picks one rendering (or none), so a command writes
//!   each event once and the text, JSON-lines and quiet modes cannot drift apart.

use std::io::Write;

use indicatif::{ProgressBar, ProgressStyle};

/// The bar template: `{prefix}` is the label (with its trailing space, or empty), `{unit}`
/// is filled in per bar.
const TEMPLATE: &str = "{prefix}[{bar:30}] {pos}/{len} UNIT [{elapsed_precise}, ETA {eta}] {msg}";

/// A progress bar over `len` items named `unit` ("cases"), hidden when `quiet`.
pub fn bar(len: u64, unit: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template(&TEMPLATE.replace("UNIT", unit))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar
}

/// [`bar`] with `label` in front of it ("epoch 3/50", "checking").
pub fn labelled_bar(len: u64, label: &str, unit: &str, quiet: bool) -> ProgressBar {
    let bar = bar(len, unit, quiet);
    if !label.is_empty() {
        bar.set_prefix(format!("{label} "));
    }
    bar
}

/// Something a command reports: one line of text, one JSON object, or both.
pub trait Event {
    /// The line shown in text mode (`None`: nothing in text mode).
    fn text(&self) -> Option<String>;
    /// The object written in JSON-lines mode (`None`: nothing in JSON mode).
    fn json(&self) -> Option<serde_json::Value>;
}

/// How a command reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Text lines (and progress bars) for a person.
    Text,
    /// One JSON object per line on stdout, no progress bars.
    Json,
    /// Nothing.
    Quiet,
}

/// The stream text lines go to (JSON lines always go to stdout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output: the command's result is the text (`demo`).
    Stdout,
    /// Standard error: the command's result is files, the text is commentary (`train`).
    Stderr,
}

/// The one place a command's events and progress bars go through.
#[derive(Debug, Clone, Copy)]
pub struct Sink {
    output: Output,
    text_to: Stream,
}

impl Sink {
    /// A sink rendering as `output`, text lines to `text_to`.
    pub fn new(output: Output, text_to: Stream) -> Sink {
        Sink { output, text_to }
    }

    /// The rendering mode.
    pub fn output(&self) -> Output {
        self.output
    }

    /// The rendering of `event` this sink writes (`None`: nothing).
    pub fn render(&self, event: &impl Event) -> Option<String> {
        match self.output {
            Output::Text => event.text(),
            Output::Json => event.json().map(|v| v.to_string()),
            Output::Quiet => None,
        }
    }

    /// Writes `event` as [`Sink::render`] says, one line. A closed stream is ignored (as a
    /// progress report must not fail the work).
    pub fn emit(&self, event: &impl Event) {
        let Some(line) = self.render(event) else {
            return;
        };
        let to_stdout = self.output == Output::Json || self.text_to == Stream::Stdout;
        if to_stdout {
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        } else {
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        }
    }

    /// A [`labelled_bar`], shown only in text mode.
    pub fn bar(&self, len: usize, label: &str, unit: &str) -> ProgressBar {
        labelled_bar(len as u64, label, unit, self.output != Output::Text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Both;
    impl Event for Both {
        fn text(&self) -> Option<String> {
            Some("a line".into())
        }
        fn json(&self) -> Option<serde_json::Value> {
            Some(serde_json::json!({ "event": "both" }))
        }
    }

    struct TextOnly;
    impl Event for TextOnly {
        fn text(&self) -> Option<String> {
            Some("note".into())
        }
        fn json(&self) -> Option<serde_json::Value> {
            None
        }
    }

    #[test]
    fn each_output_renders_its_own_form() {
        let sink = |o| Sink::new(o, Stream::Stderr);
        assert_eq!(sink(Output::Text).render(&Both).as_deref(), Some("a line"));
        assert_eq!(
            sink(Output::Json).render(&Both).as_deref(),
            Some(r#"{"event":"both"}"#)
        );
        assert_eq!(sink(Output::Quiet).render(&Both), None);
        assert_eq!(sink(Output::Json).render(&TextOnly), None);
        assert_eq!(
            sink(Output::Text).render(&TextOnly).as_deref(),
            Some("note")
        );
    }

    #[test]
    fn bars_are_hidden_unless_text() {
        for o in [Output::Json, Output::Quiet] {
            assert!(
                Sink::new(o, Stream::Stderr)
                    .bar(3, "x", "cases")
                    .is_hidden()
            );
        }
        let shown = Sink::new(Output::Text, Stream::Stderr).bar(3, "epoch 1/2", "steps");
        assert_eq!(shown.length(), Some(3));
        assert_eq!(shown.prefix(), "epoch 1/2 ");
        assert!(bar(3, "cases", true).is_hidden());
    }
}
