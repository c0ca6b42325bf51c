//! The spinner a running statement shows on a terminal: the time so far and the rows received.
//!
//! It appears only once a statement has run for [`DELAY`] (a quick answer should not flicker), only
//! when stderr is a terminal (scripts and pipes never see it), and it is erased before the results
//! are printed.

use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How long a statement runs before the spinner shows.
pub const DELAY: Duration = Duration::from_millis(300);

/// A spinner for one statement; must be started inside the tokio runtime.
#[derive(Debug)]
pub struct Spinner {
    bar: ProgressBar,
    reveal: tokio::task::JoinHandle<()>,
}

impl Spinner {
    /// Starts a spinner for a statement, if stderr is a terminal.
    pub fn start() -> Option<Spinner> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        bar.set_style(ProgressStyle::with_template("{spinner} {elapsed} {msg}").ok()?);
        bar.set_message("running (Ctrl-C cancels)");
        let shown = bar.clone();
        let reveal = tokio::spawn(async move {
            tokio::time::sleep(DELAY).await;
            shown.set_draw_target(ProgressDrawTarget::stderr());
            shown.enable_steady_tick(Duration::from_millis(120));
        });
        Some(Spinner { bar, reveal })
    }

    /// Notes how many rows have arrived so far.
    pub fn rows(&self, rows: usize) {
        self.bar.set_message(format!("running, {rows} rows so far (Ctrl-C cancels)"));
    }

    /// Erases the spinner.
    pub fn finish(self) {
        self.reveal.abort();
        self.bar.finish_and_clear();
    }
}
