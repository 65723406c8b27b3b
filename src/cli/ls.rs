//! `minitls ls [PATH]`: one line per entry (`d`/`-`, size, mtime, path), or `--json`.

use std::io::IsTerminal;

use minitls::paths;
use minitls::pki::Role;
use minitls::transfer;
use minitls::wire::{EntryKind, ListEntry};

use super::args::LsArgs;
use super::error::{CliError, CliResult, note, out, printable};
use super::progress::human_bytes;
use super::{Global, connect, creds, iso_utc, transfer_error};

pub fn run(args: &LsArgs, global: Global) -> CliResult<()> {
    let path = args.path.as_deref().unwrap_or("");
    paths::parse_relative(path, true).map_err(|e| {
        CliError::usage(format!(
            "'{path}' is not a valid remote path: {e}; name a directory relative to the served \
             directory, or nothing for its top"
        ))
    })?;

    let creds = creds::load(&args.creds, Role::Client, global.quiet)?;
    let mut chan = connect(&args.server, creds, global)?;
    let (entries, hidden) =
        transfer::list_counted(&mut chan, path, args.recursive).map_err(|e| {
            let shown = if path.is_empty() { "." } else { path };
            transfer_error(
                format!("list '{shown}' on {}", args.server.server),
                e,
                &mut chan,
                &args.server,
            )
        })?;
    let closed = transfer::close(&mut chan);
    if let (Err(e), true) = (closed, global.verbose) {
        note(&format!("warning: the session did not end cleanly: {e}"));
    }
    if hidden > 0 && !global.quiet {
        // Said, not silently done (names the policy keeps from us are never counted).
        note(&format!(
            "{hidden} {} not listed: the server does not serve links leading outside its \
             directory, names that are not UTF-8, or minitls's own staging files",
            if hidden == 1 { "name" } else { "names" }
        ));
    }

    if args.json {
        out(&to_json(&entries))
    } else {
        // A person at a terminal reads 1.5 MiB; a script reading a pipe gets exact bytes.
        let human = !args.bytes && std::io::stdout().is_terminal();
        for e in &entries {
            out(&to_line(e, human))?;
        }
        Ok(())
    }
}

fn to_line(e: &ListEntry, human: bool) -> String {
    let kind = match e.kind {
        EntryKind::Dir => 'd',
        EntryKind::File => '-',
    };
    let size = if human {
        human_bytes(e.size)
    } else {
        e.size.to_string()
    };
    // Names come from the server: make them harmless for a terminal.
    format!(
        "{kind} {size:>12} {} {}",
        iso_utc(e.mtime),
        printable(&e.path)
    )
}

/// A JSON array of `{"name","type","size","mtime"}`, one object per line.
fn to_json(entries: &[ListEntry]) -> String {
    if entries.is_empty() {
        return "[]".to_string();
    }
    let objects: Vec<String> = entries
        .iter()
        .map(|e| {
            let kind = match e.kind {
                EntryKind::Dir => "dir",
                EntryKind::File => "file",
            };
            format!(
                "  {{\"name\":{},\"type\":\"{kind}\",\"size\":{},\"mtime\":\"{}\"}}",
                json_string(&e.path),
                e.size,
                iso_utc(e.mtime)
            )
        })
        .collect();
    format!("[\n{}\n]", objects.join(",\n"))
}

pub(super) use minitls::audit::json_string;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape_quotes_backslashes_and_controls() {
        assert_eq!(json_string("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(json_string("x\ny\u{1b}"), r#""x\ny\u001b""#);
        assert_eq!(json_string("é"), "\"é\"");
    }

    #[test]
    fn listings_render_as_lines_and_json() {
        let e = ListEntry {
            kind: EntryKind::File,
            size: 12,
            mtime: 0,
            path: "a b.txt".into(),
        };
        assert_eq!(
            to_line(&e, false),
            "-           12 1970-01-01T00:00:00Z a b.txt"
        );
        assert_eq!(
            to_line(&e, true),
            "-         12 B 1970-01-01T00:00:00Z a b.txt"
        );
        let big = ListEntry {
            size: 3 << 20,
            ..e.clone()
        };
        assert_eq!(
            to_line(&big, true),
            "-      3.0 MiB 1970-01-01T00:00:00Z a b.txt"
        );
        assert_eq!(
            to_json(std::slice::from_ref(&e)),
            "[\n  {\"name\":\"a b.txt\",\"type\":\"file\",\"size\":12,\"mtime\":\"1970-01-01T00:00:00Z\"}\n]"
        );
        assert_eq!(to_json(&[]), "[]");
    }
}
