//! Progress bars, all in this one place: drawn on stderr only when stderr is a terminal and
//! `--quiet` is off, so pipes, logs and CI output stay clean.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use minitls::transfer::Progress;

const TEMPLATE: &str =
    "{msg:20!} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}";

/// Shows transfer progress (bytes, rate, ETA) for one file at a time.
pub struct Bars {
    enabled: bool,
    bar: Option<ProgressBar>,
    name: String,
}

impl Bars {
    /// Bars that draw only if `!quiet` and stderr is a terminal.
    pub fn new(quiet: bool) -> Self {
        Self {
            enabled: !quiet && std::io::stderr().is_terminal(),
            bar: None,
            name: String::new(),
        }
    }
}

impl Progress for Bars {
    fn begin(&mut self, name: &str, total: u64) {
        self.end();
        if !self.enabled {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        // The template is a constant; if indicatif ever rejects it, a plain bar still works.
        if let Ok(style) = ProgressStyle::with_template(TEMPLATE) {
            bar.set_style(style.progress_chars("=> "));
        }
        self.name = super::error::printable(name);
        bar.set_message(self.name.clone());
        self.bar = Some(bar);
    }

    /// Trees: "NAME 123/10000" files done of the total, beside the byte bar.
    fn file_done(&mut self, done: u64, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{} {done}/{total}", self.name));
        }
    }

    fn advance(&mut self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    fn end(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        // A transfer that failed halfway must not leave a half-drawn bar above the error line.
        self.end();
    }
}

/// A spinner for slow work without a byte count (RSA key generation); cleared on drop.
pub struct Spinner(Option<ProgressBar>);

impl Spinner {
    /// Shows `msg` with a spinner if `!quiet` and stderr is a terminal.
    pub fn new(quiet: bool, msg: &str) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(ProgressStyle::default_spinner());
        bar.set_message(msg.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        Self(Some(bar))
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(bar) = self.0.take() {
            bar.finish_and_clear();
        }
    }
}
