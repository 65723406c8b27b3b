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

// ---------------------------------------------------------------------------------------------
// The config file
// ---------------------------------------------------------------------------------------------

/// Writes `$XDG_CONFIG_HOME/minitls/config.toml` of the workspace (tests/common points
/// XDG_CONFIG_HOME at `<workspace>/.config`).
fn write_config(w: &Workspace, text: &str) -> std::path::PathBuf {
    let dir = w.join(".config/minitls");
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.toml");
    fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_config_file_supplies_server_credentials_and_out_under_env_and_flags() {
    let w = Workspace::new();
    let server = w.serve(&[]);
    // Credentials named relative to the config file's own directory.
    let creds = w.join(".config/minitls/creds");
    fs::create_dir_all(&creds).unwrap();
    for f in ["client.crt", "client.key", "ca.crt"] {
        fs::copy(w.join("ca").join(f), creds.join(f)).unwrap();
    }
    fs::remove_dir_all(w.join("ca")).unwrap();
    write_config(
        &w,
        &format!(
            "# fetch and ls defaults\nserver = \"{}\"\nserver-name = \"localhost\"\n\
             cert = \"creds/client.crt\"\nkey = \"creds/client.key\"\nca-cert = \"creds/ca.crt\"\n\
             out = \"{}\"\n",
            server.addr,
            w.join("inbox").display()
        ),
    );
    // No flag at all: everything from the file (and no ca/ is created).
    let o = w.run(&["-v", "fetch", "hello.txt"]);
    let printed = ok(&o);
    assert_eq!(
        printed,
        format!("{}\n", w.join("inbox/hello.txt").display())
    );
    assert!(
        stderr(&o).contains(&format!(
            "config: {}",
            w.join(".config/minitls/config.toml").display()
        )),
        "{}",
        stderr(&o)
    );
    assert!(
        !w.join("ca").exists(),
        "the file's credentials were not used"
    );
    ok(&w.run(&["ls"]));
    // verify takes the CA certificate from the file too.
    ok(&w.run(&["verify", "inbox/hello.txt"]));

    // A flag beats the file: --out, and --server (nothing listens there: exit 3).
    ok(&w.run(&["fetch", "hello.txt", "--out", "elsewhere"]));
    assert!(w.join("elsewhere/hello.txt").is_file());
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let line = fails_with(&w.run(&["fetch", "hello.txt", "--server", &closed]), 3);
    assert!(line.contains(&closed), "{line}");
    // An environment variable beats the file too.
    let o = common::minitls(w.path())
        .args(["fetch", "hello.txt"])
        .env("MINITLS_SERVER", &closed)
        .output()
        .unwrap();
    assert!(fails_with(&o, 3).contains(&closed));
    // Credentials are one group: a --ca-dir on the command line drops the file's cert/key.
    let line = fails_with(&w.run(&["fetch", "hello.txt", "--ca-dir", "nowhere-ca"]), 4);
    assert!(w.join("nowhere-ca/ca.crt").exists(), "{line}");
    // --no-config: the file is not read (the default --out is used; the server is named).
    ok(&w.run(&[
        "fetch",
        "hello.txt",
        "--no-config",
        "--server",
        &server.addr,
        "--ca-cert",
        ".config/minitls/creds/ca.crt",
        "--cert",
        ".config/minitls/creds/client.crt",
        "--key",
        ".config/minitls/creds/client.key",
    ]));
    assert!(w.join("client_received/hello.txt").is_file());
}

#[test]
fn a_config_file_with_an_unknown_key_or_that_is_missing_is_a_clear_usage_error() {
    let w = Workspace::new();
    let path = write_config(&w, "server = \"127.0.0.1\"\nsever = \"typo.example.org\"\n");
    let line = fails_with(&w.run(&["fetch", "hello.txt"]), 2);
    assert!(line.contains(&path.display().to_string()), "{line}");
    assert!(line.contains("line 2"), "{line}");
    assert!(line.contains("unknown key `sever`"), "{line}");
    assert!(line.contains("--no-config"), "{line}");
    // ca and serve do not read the client's config file.
    ok(&w.run(&["ca", "show"]));
    // cert without key and ca-cert.
    write_config(&w, "cert = \"a.crt\"\n");
    let line = fails_with(&w.run(&["ls"]), 2);
    assert!(line.contains("cert, key and ca-cert go together"), "{line}");

    // --config and MINITLS_CONFIG name another file, which must exist.
    let line = fails_with(&w.run(&["ls", "--config", "nope.toml"]), 2);
    assert!(line.contains("nope.toml"), "{line}");
    assert!(line.contains("does not exist"), "{line}");
    fs::write(w.join("other.toml"), "out = 3\n").unwrap();
    let o = common::minitls(w.path())
        .args(["fetch", "hello.txt"])
        .env("MINITLS_CONFIG", "other.toml")
        .output()
        .unwrap();
    let line = fails_with(&o, 2);
    assert!(line.contains("other.toml: line 1"), "{line}");
}
