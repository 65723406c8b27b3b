//! End-to-end tests of the command line's user experience (issue 14): shell completions and
//! the man page, the config file, summaries and JSON output, tree verification, rate limits
//! and retries, staging clean-up, and the hints that point users the right way. Real
//! processes on 127.0.0.1 (ephemeral ports), a temporary working directory per test; every
//! command runs with XDG_CONFIG_HOME inside that directory (tests/common).

mod common;

use std::fs;
use std::process::Stdio;

use common::{Workspace, fails_with, ok, stderr, stdout};

// ---------------------------------------------------------------------------------------------
// Shell integration
// ---------------------------------------------------------------------------------------------

#[test]
fn completions_print_a_script_for_each_shell_that_names_the_commands_and_flags() {
    let w = Workspace::without_ca();
    for shell in ["bash", "zsh", "fish"] {
        let script = ok(&w.run(&["completions", shell]));
        // (fish names flags without their dashes: `-l resume`.)
        for word in ["fetch", "verify", "server-name", "resume"] {
            assert!(script.contains(word), "{shell} script lacks {word}");
        }
    }
    // The bash script is valid bash and registers a completion for minitls.
    let o = common::clean_command("bash", w.path())
        .args([
            "-c",
            "source <(\"$0\" completions bash) && complete -p minitls",
            common::bin(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("minitls"), "{}", stdout(&o));
    // An unknown shell is a usage error; nothing is created.
    assert_eq!(w.run(&["completions", "tcsh"]).status.code(), Some(2));
    assert!(!w.join("ca").exists());
}

#[test]
fn man_prints_roff_pages_for_minitls_and_each_command() {
    let w = Workspace::without_ca();
    let page = ok(&w.run(&["man"]));
    assert!(
        page.starts_with(".ie") || page.contains(".TH minitls 1"),
        "{page}"
    );
    assert!(page.contains(".TH minitls 1"), "{page}");
    // The exit statuses (SPEC 1.1) are part of the page.
    assert!(page.contains("integrity failed"), "{page}");
    let fetch = ok(&w.run(&["man", "fetch"]));
    assert!(fetch.contains(".TH minitls\\-fetch 1") || fetch.contains(".TH minitls-fetch 1"));
    assert!(fetch.contains("resume"), "{fetch}");
    // man(1) itself can render it, where it is installed.
    if std::path::Path::new("/usr/bin/man").exists() {
        fs::write(w.join("minitls.1"), &page).unwrap();
        let o = common::clean_command("man", w.path())
            .args(["-l", "minitls.1"])
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).contains("fetch"), "{}", stdout(&o));
    }
    let line = fails_with(&w.run(&["man", "fecth"]), 2);
    assert!(line.contains("no such command"), "{line}");
    assert!(line.contains("fetch"), "{line}");
}
