//! User-facing errors of the binary: one line each, naming what failed and the fix.
//!
//! The library's errors are typed enums; here, at the edge, they become text with context
//! (like `anyhow::Context`, without the dependency).

use std::fmt;
use std::io::{self, Write};

/// Exit statuses (SPEC §1.1; also in `--help` and the README).
pub mod exit {
    /// Any other error.
    pub const OTHER: u8 = 1;
    /// Bad flags or arguments.
    pub const USAGE: u8 = 2;
    /// Could not reach the server (name resolution, refused, timed out).
    pub const UNREACHABLE: u8 = 3;
    /// Authentication failed: a certificate rejected, revoked or expired, a handshake refused.
    pub const AUTH: u8 = 4;
    /// The server refused the request (not found, not allowed, is a directory).
    pub const REFUSED: u8 = 5;
    /// Local I/O failed (cannot write, disk full).
    pub const LOCAL_IO: u8 = 6;
    /// Integrity failed: bad signature, tampered or truncated data, a mismatch in `verify`.
    pub const INTEGRITY: u8 = 7;
    /// A tree was fetched but some entries were skipped.
    pub const PARTIAL: u8 = 8;
}

/// A failure of a command, ready to print as `minitls: error: <message>`.
#[derive(Debug)]
pub enum CliError {
    /// A one-line message, and the exit status it calls for.
    Message(String, u8),
    /// The failure was already printed (for example one line per failed file in `verify`);
    /// only the exit status is left to set.
    Reported(u8),
    /// stdout was closed under us (`minitls ls | head`): stop quietly, like other Unix tools.
    BrokenPipe,
}

pub type CliResult<T> = Result<T, CliError>;

impl CliError {
    pub fn new(msg: impl Into<String>) -> Self {
        CliError::Message(msg.into(), exit::OTHER)
    }

    /// A message with a specific exit status.
    pub fn with_code(code: u8, msg: impl Into<String>) -> Self {
        CliError::Message(msg.into(), code)
    }

    /// A usage error found by our own checks (clap reports its own with status 2 too).
    pub fn usage(msg: impl Into<String>) -> Self {
        Self::with_code(exit::USAGE, msg)
    }

    /// The process exit status.
    pub fn exit_status(&self) -> u8 {
        match self {
            CliError::Message(_, c) | CliError::Reported(c) => *c,
            CliError::BrokenPipe => 0,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Message(m, _) => f.write_str(&one_line(&without_os_error(m))),
            CliError::Reported(_) => f.write_str("(already reported)"),
            CliError::BrokenPipe => f.write_str("output closed"),
        }
    }
}

impl std::error::Error for CliError {}

/// Adds what we were doing to a library error: `"<context>: <error>"`.
pub trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> CliResult<T>;
}

impl<T, E: fmt::Display> Context<T> for Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> CliResult<T> {
        self.map_err(|e| CliError::new(format!("{}: {e}", what())))
    }
}

/// Drops Rust's " (os error N)" from I/O error texts: it means nothing to users.
fn without_os_error(text: &str) -> String {
    let mut out = text.to_string();
    while let Some(start) = out.find(" (os error ") {
        match out[start..].find(')') {
            Some(len) => out.replace_range(start..=start + len, ""),
            None => break,
        }
    }
    out
}

/// Makes text safe and single-line for a terminal: newlines become "; ", other control
/// characters are escaped. Error texts can carry names chosen by a (hostile) peer, which must
/// not be able to move the cursor or recolour the terminal.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.trim_end().chars() {
        match ch {
            '\n' => out.push_str("; "),
            '\r' | '\t' => out.push(' '),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

/// Makes a name from a peer or a file safe to print: every control character (newlines too)
/// is escaped, nothing is dropped.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Prints one informational line on stderr: `minitls: <text>`.
pub fn note(text: &str) {
    // stderr is unbuffered; a failed write to it has nowhere better to be reported.
    let _ = writeln!(io::stderr().lock(), "minitls: {}", one_line(text));
}

/// Prints the final error line on stderr.
pub fn report(err: &CliError) {
    if let CliError::Message(..) = err {
        let _ = writeln!(io::stderr().lock(), "minitls: error: {err}");
    }
}

/// Writes a line of the command's output to stdout; a closed pipe ends the command quietly.
pub fn out(line: &str) -> CliResult<()> {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .map_err(|e| {
            if e.kind() == io::ErrorKind::BrokenPipe {
                CliError::BrokenPipe
            } else {
                CliError::new(format!("cannot write to stdout: {e}"))
            }
        })
}

/// Replaces the default panic message and backtrace with one line asking for a bug report.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let _ = writeln!(
            io::stderr().lock(),
            "minitls: internal error: {}{location} (this is a bug; please report it)",
            one_line(&msg)
        );
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_flattens_newlines_and_escapes_terminal_controls() {
        assert_eq!(one_line("a\nb\n"), "a; b");
        assert_eq!(one_line("x\u{1b}[31mred"), "x\\u{1b}[31mred");
        assert_eq!(one_line("tab\there"), "tab here");
    }

    #[test]
    fn printable_escapes_every_control_character_and_keeps_spaces() {
        assert_eq!(printable("a b \n"), "a b \\n");
        assert_eq!(printable("\u{1b}x"), "\\u{1b}x");
    }

    #[test]
    fn os_error_numbers_are_dropped() {
        assert_eq!(
            without_os_error("x: Connection refused (os error 111); y"),
            "x: Connection refused; y"
        );
        assert_eq!(without_os_error("no suffix (here)"), "no suffix (here)");
    }

    #[test]
    fn context_prefixes_the_error() {
        let r: Result<(), &str> = Err("boom");
        let e = r.context(|| "doing x".to_string()).unwrap_err();
        assert_eq!(e.to_string(), "doing x: boom");
    }
}
