//! End-to-end tests of the command line's user experience (issue 14): shell completions and
//! the man page, the config file, summaries and JSON output, tree verification, rate limits
//! and retries, staging clean-up, and the hints that point users the right way. Real
//! processes on 127.0.0.1 (ephemeral ports), a temporary working directory per test; every
//! command runs with XDG_CONFIG_HOME inside that directory (tests/common).

mod common;

use std::fs;
use std::process::Stdio;

use common::{Workspace, fails, fails_with, ok, stderr, stdout};

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

// ---------------------------------------------------------------------------------------------
// Output: summaries, JSON, sizes
// ---------------------------------------------------------------------------------------------

/// Deterministic bytes that do not compress or repeat in any simple way.
fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The value of `"key":` in a one-line JSON object, as written (a number or a quoted string).
fn json_value<'a>(line: &'a str, key: &str) -> &'a str {
    let start = line
        .find(&format!("\"{key}\":"))
        .unwrap_or_else(|| panic!("no key {key} in {line}"))
        + key.len()
        + 3;
    let rest = &line[start..];
    let end = if let Some(quoted) = rest.strip_prefix('"') {
        quoted.find('"').unwrap() + 2
    } else if rest.starts_with('[') {
        rest.find(']').unwrap() + 1
    } else {
        rest.find([',', '}']).unwrap()
    };
    &rest[..end]
}

#[test]
fn each_transfer_leaves_a_summary_line_and_quiet_leaves_none() {
    let w = Workspace::new();
    let t = w.join("server_public/tree");
    fs::create_dir_all(t.join("sub")).unwrap();
    fs::write(t.join("a.txt"), "a").unwrap();
    fs::write(t.join("sub/b.bin"), pseudo_random(3000, 1)).unwrap();
    let server = w.serve(&[]);
    let o = w.run(&["fetch", "hello.txt", "--server", &server.addr]);
    ok(&o);
    let err = stderr(&o);
    let line = err.lines().last().unwrap();
    assert!(
        line.starts_with(&format!(
            "minitls: hello.txt: {} B in ",
            common::HELLO.len()
        )),
        "{err}"
    );
    assert!(line.ends_with("/s"), "{err}");
    // A tree: files, directories, size, time, rate.
    let o = w.run(&["fetch", "-r", "tree", "--server", &server.addr]);
    ok(&o);
    assert!(
        stderr(&o).starts_with("minitls: tree: 2 files, 1 directory, 2.9 KiB in "),
        "{}",
        stderr(&o)
    );
    // --quiet: nothing on stderr.
    let o = w.run(&["-q", "fetch", "-r", "tree", "--server", &server.addr]);
    ok(&o);
    assert_eq!(stderr(&o), "");
}

#[test]
fn a_resumed_fetch_counts_only_the_bytes_that_crossed_the_network() {
    let w = Workspace::new();
    let data = pseudo_random(3 << 20, 5);
    fs::write(w.join("server_public/big.bin"), &data).unwrap();
    // What an interrupted fetch leaves: the first 2 MiB in the hidden partial file.
    fs::create_dir(w.join("client_received")).unwrap();
    fs::write(
        w.join("client_received/.big.bin.minitls-partial"),
        &data[..2 << 20],
    )
    .unwrap();
    let server = w.serve(&[]);
    let o = w.run(&[
        "fetch",
        "--resume",
        "--json",
        "big.bin",
        "--server",
        &server.addr,
    ]);
    let json = ok(&o);
    assert_eq!(fs::read(w.join("client_received/big.bin")).unwrap(), data);
    let err = stderr(&o);
    assert!(err.contains("minitls: big.bin: 3.0 MiB in "), "{err}");
    assert!(
        err.contains("(1.0 MiB received, 2.0 MiB were already here)"),
        "{err}"
    );
    // --json: one object on one line with the same facts.
    assert_eq!(json.lines().count(), 1, "{json}");
    assert_eq!(json_value(&json, "bytes"), (3 << 20).to_string());
    assert_eq!(json_value(&json, "network_bytes"), (1 << 20).to_string());
    assert_eq!(json_value(&json, "resumed_from"), (2 << 20).to_string());
}

#[test]
fn fetch_json_prints_one_object_per_transfer_with_the_documented_keys() {
    let w = Workspace::new();
    let t = w.join("server_public/tree");
    fs::create_dir_all(&t).unwrap();
    fs::write(t.join("a.txt"), "a").unwrap();
    std::os::unix::fs::symlink("a.txt", t.join("link")).unwrap();
    let server = w.serve(&[]);
    let o = w.run(&["fetch", "--json", "hello.txt", "--server", &server.addr]);
    let line = ok(&o);
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.starts_with('{') && line.trim_end().ends_with('}'),
        "{line}"
    );
    assert_eq!(json_value(&line, "remote"), "\"hello.txt\"");
    assert_eq!(json_value(&line, "type"), "\"file\"");
    assert_eq!(json_value(&line, "path"), "\"client_received/hello.txt\"");
    assert_eq!(
        json_value(&line, "signature"),
        "\"client_received/hello.txt.minitls-sig\""
    );
    assert_eq!(json_value(&line, "bytes"), common::HELLO.len().to_string());
    assert_eq!(json_value(&line, "sha256").len(), 66);
    assert_eq!(json_value(&line, "signer"), "\"CN=localhost\"");
    json_value(&line, "ms").parse::<u64>().unwrap();
    // A tree with a skipped entry: still one object, and exit status 8.
    let o = w.run(&["fetch", "--json", "-r", "tree", "--server", &server.addr]);
    assert_eq!(o.status.code(), Some(8), "{}", stderr(&o));
    let line = stdout(&o);
    assert_eq!(json_value(&line, "type"), "\"tree\"");
    assert_eq!(json_value(&line, "files"), "1");
    assert_eq!(
        json_value(&line, "manifest"),
        "\"client_received/tree.minitls-manifest\""
    );
    assert!(
        json_value(&line, "skipped").contains("\"path\":\"link\""),
        "{line}"
    );
    // --json with -o -: both want stdout.
    let line = fails_with(
        &w.run(&[
            "fetch",
            "--json",
            "hello.txt",
            "-o",
            "-",
            "--server",
            &server.addr,
        ]),
        2,
    );
    assert!(line.contains("-o FILE"), "{line}");
}

#[test]
fn ls_shows_human_sizes_on_a_terminal_and_exact_bytes_in_a_pipe_or_with_bytes() {
    let w = Workspace::new();
    fs::write(w.join("server_public/big.bin"), vec![0u8; 3 << 20]).unwrap();
    let server = w.serve(&[]);
    let piped = ok(&w.run(&["ls", "--server", &server.addr]));
    assert!(piped.contains(&format!(" {} ", 3 << 20)), "{piped}");
    // On a terminal (script(1) gives the command one): 3.0 MiB, unless --bytes.
    let on_tty = |extra: &str| {
        let cmd = format!("'{}' ls --server {} {extra}", common::bin(), server.addr);
        let o = common::clean_command("script", w.path())
            .args(["-qec", &cmd, "/dev/null"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    let human = on_tty("");
    assert!(human.contains("3.0 MiB"), "{human}");
    assert!(
        human.contains(&format!("{} B", common::HELLO.len())),
        "{human}"
    );
    let exact = on_tty("--bytes");
    assert!(exact.contains(&format!(" {} ", 3 << 20)), "{exact}");
    assert!(!exact.contains("MiB"), "{exact}");
    let json = ok(&w.run(&["ls", "--json", "--server", &server.addr]));
    assert!(json.contains(&format!("\"size\":{}", 3 << 20)), "{json}");
}

// ---------------------------------------------------------------------------------------------
// verify DIR: every difference
// ---------------------------------------------------------------------------------------------

#[test]
fn verify_dir_reports_every_missing_altered_and_extra_entry_and_exits_7() {
    let w = Workspace::new();
    let t = w.join("server_public/tree");
    fs::create_dir_all(t.join("sub")).unwrap();
    for (name, text) in [
        ("a.txt", "a"),
        ("b.txt", "b"),
        ("c.txt", "c"),
        ("sub/d.txt", "d"),
    ] {
        fs::write(t.join(name), text).unwrap();
    }
    let server = w.serve(&[]);
    ok(&w.run(&["fetch", "-r", "tree", "--server", &server.addr]));
    let out = ok(&w.run(&["verify", "client_received/tree"]));
    assert_eq!(
        out.lines().next().unwrap_or(""),
        out.trim_end(),
        "one line for an intact tree: {out}"
    );
    assert!(out.starts_with("OK client_received/tree (4 files, 1 directory, 4 bytes"));

    let got = w.join("client_received/tree");
    fs::remove_file(got.join("a.txt")).unwrap();
    fs::remove_file(got.join("sub/d.txt")).unwrap();
    fs::write(got.join("b.txt"), "B").unwrap();
    fs::remove_file(got.join("c.txt")).unwrap();
    std::os::unix::fs::symlink("b.txt", got.join("c.txt")).unwrap();
    fs::write(got.join("new.txt"), "added").unwrap();
    fs::create_dir_all(got.join("added/deeper")).unwrap();
    fs::write(got.join("added/deeper/x"), "x").unwrap();

    let o = w.run(&["verify", "client_received/tree"]);
    let line = fails_with(&o, 7);
    let mut lines: Vec<String> = stdout(&o).lines().map(str::to_string).collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "ALTERED client_received/tree/b.txt: file content does not match the signed \
             SHA-256: the file was altered",
            "ALTERED client_received/tree/c.txt: is a symbolic link, the tree had a file",
            "EXTRA client_received/tree/added (not in the signed manifest)",
            "EXTRA client_received/tree/new.txt (not in the signed manifest)",
            "MISSING client_received/tree/a.txt",
            "MISSING client_received/tree/sub/d.txt",
        ],
        "{}",
        stdout(&o)
    );
    assert!(line.contains("2 missing, 2 altered, 2 extra"), "{line}");
    assert!(
        line.contains("minitls fetch -r tree --out client_received"),
        "{line}"
    );

    // --json: one object with the same lists.
    let o = w.run(&[
        "verify",
        "--json",
        "client_received/tree",
        "client_received/tree/b.txt",
    ]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    // One error line per argument that failed, on stderr.
    assert_eq!(stderr(&o).lines().count(), 2, "{}", stderr(&o));
    let json = stdout(&o);
    let objects: Vec<&str> = json.lines().collect();
    assert_eq!(objects.len(), 2, "{json}");
    let tree = objects[0];
    assert_eq!(json_value(tree, "type"), "\"tree\"");
    assert_eq!(json_value(tree, "ok"), "false");
    assert_eq!(
        json_value(tree, "missing"),
        "[\"client_received/tree/a.txt\",\"client_received/tree/sub/d.txt\"]"
    );
    assert_eq!(
        json_value(tree, "extra"),
        "[\"client_received/tree/added\",\"client_received/tree/new.txt\"]"
    );
    assert!(
        tree.contains("\"altered\":[{\"path\":\"client_received/tree/b.txt\""),
        "{tree}"
    );
    assert_eq!(json_value(tree, "files"), "4");
    let file = objects[1];
    assert_eq!(json_value(file, "type"), "\"file\"");
    assert_eq!(json_value(file, "ok"), "false");
    assert!(json_value(file, "error").contains("altered"), "{file}");
}

#[test]
fn verify_json_prints_one_object_per_file_that_verified() {
    let w = Workspace::new();
    let server = w.serve(&[]);
    ok(&w.run(&["fetch", "hello.txt", "--server", &server.addr]));
    let line = ok(&w.run(&["verify", "--json", "client_received/hello.txt"]));
    assert_eq!(line.lines().count(), 1);
    assert_eq!(json_value(&line, "path"), "\"client_received/hello.txt\"");
    assert_eq!(json_value(&line, "ok"), "true");
    assert_eq!(json_value(&line, "bytes"), common::HELLO.len().to_string());
    assert_eq!(json_value(&line, "signer"), "\"CN=localhost\"");
    assert!(json_value(&line, "signed_at").ends_with("Z\""), "{line}");
    assert_eq!(json_value(&line, "error"), "null");
}

// ---------------------------------------------------------------------------------------------
// --limit-rate and --retry
// ---------------------------------------------------------------------------------------------

/// A TCP proxy on 127.0.0.1 to `target` that cuts its first connection once `cut_after`
/// bytes went from the server to the client, and passes later ones whole. Its threads end
/// with their connections; the listener's with the test process.
fn cutting_proxy(target: &str, cut_after: u64) -> String {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let target = target.to_string();
    std::thread::spawn(move || {
        for (i, conn) in listener.incoming().enumerate() {
            let Ok(client) = conn else { return };
            let Ok(server) = TcpStream::connect(&target) else {
                return;
            };
            let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_in, &mut s_out);
                let _ = s_out.shutdown(Shutdown::Write);
            });
            let limit = if i == 0 { cut_after } else { u64::MAX };
            std::thread::spawn(move || {
                let (mut s_in, mut c_out) = (server, client);
                let mut buf = vec![0u8; 64 * 1024];
                let mut sent = 0u64;
                while sent < limit {
                    let want = buf
                        .len()
                        .min((limit - sent).min(usize::MAX as u64) as usize);
                    match s_in.read(&mut buf[..want]) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if c_out.write_all(&buf[..n]).is_err() {
                                break;
                            }
                            sent += n as u64;
                        }
                    }
                }
                let _ = c_out.shutdown(Shutdown::Both);
                let _ = s_in.shutdown(Shutdown::Both);
            });
        }
    });
    addr
}

#[test]
fn a_cut_fetch_is_retried_from_what_arrived_and_the_hint_keeps_server_and_out() {
    let w = Workspace::new();
    let data = pseudo_random(3 << 20, 11);
    fs::write(w.join("server_public/big.bin"), &data).unwrap();
    let server = w.serve(&[]);

    // Without --retry: the error names the command that continues, with --server and --out.
    let proxy = cutting_proxy(&server.addr, 1 << 20);
    let o = w.run(&["fetch", "big.bin", "--server", &proxy, "--out", "dl"]);
    let line = fails(&o);
    let hint = format!("`minitls fetch --resume big.bin --server {proxy} --out dl`");
    assert!(line.contains(&hint), "{line}");
    assert!(w.join("dl/.big.bin.minitls-partial").is_file());
    // Typed as printed, it finishes the file (the proxy passes its second connection).
    let o = w.run(&[
        "fetch", "--resume", "big.bin", "--server", &proxy, "--out", "dl",
    ]);
    ok(&o);
    assert!(stderr(&o).contains("were already here)"), "{}", stderr(&o));
    assert_eq!(fs::read(w.join("dl/big.bin")).unwrap(), data);

    // With --retry: one command, which continues on its own after the cut.
    let proxy = cutting_proxy(&server.addr, 1 << 20);
    let o = w.run(&["fetch", "big.bin", "--retry", "2", "--server", &proxy]);
    ok(&o);
    let err = stderr(&o);
    assert!(
        err.contains("retrying in 1 s (retry 1 of 2), from what arrived"),
        "{err}"
    );
    assert!(err.contains("were already here) after 1 retry"), "{err}");
    assert_eq!(fs::read(w.join("client_received/big.bin")).unwrap(), data);
    ok(&w.run(&["verify", "client_received/big.bin"]));

    // A tree continues too, from what arrived of it.
    fs::create_dir(w.join("server_public/tree")).unwrap();
    fs::write(w.join("server_public/tree/big.bin"), &data).unwrap();
    let proxy = cutting_proxy(&server.addr, 1 << 20);
    let o = w.run(&["fetch", "-r", "tree", "--retry", "1", "--server", &proxy]);
    ok(&o);
    assert!(
        stderr(&o).contains("(retry 1 of 1), from what arrived"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        fs::read(w.join("client_received/tree/big.bin")).unwrap(),
        data
    );

    // A refusal is not retried.
    let o = w.run(&[
        "fetch",
        "missing.bin",
        "--retry",
        "3",
        "--server",
        &server.addr,
    ]);
    fails_with(&o, 5);
    assert!(!stderr(&o).contains("retrying"), "{}", stderr(&o));
}

#[test]
fn limit_rate_holds_a_fetch_to_the_rate_given() {
    let w = Workspace::new();
    fs::write(w.join("server_public/f.bin"), pseudo_random(600 << 10, 3)).unwrap();
    let server = w.serve(&[]);
    let started = std::time::Instant::now();
    let o = w.run(&[
        "fetch",
        "f.bin",
        "--limit-rate",
        "1M",
        "--server",
        &server.addr,
    ]);
    ok(&o);
    // 600 KiB at 1 MiB/s: at least 0.586 s, whatever else the machine is doing.
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(580),
        "{:?}",
        started.elapsed()
    );
    let err = stderr(&o);
    assert!(err.contains("f.bin: 600.0 KiB in "), "{err}");
    // Curl's syntax, and a clear refusal of the rest.
    let o = w.run(&[
        "fetch",
        "f.bin",
        "--limit-rate",
        "10X",
        "--server",
        &server.addr,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("500K, 2M or 1G"), "{}", stderr(&o));
    let o = w.run(&[
        "fetch",
        "f.bin",
        "--limit-rate",
        "1K",
        "--server",
        &server.addr,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("smallest rate, 8K"), "{}", stderr(&o));
}

// ---------------------------------------------------------------------------------------------
// Staging files of interrupted tree fetches
// ---------------------------------------------------------------------------------------------

/// The hidden staging directories in `dir`.
fn staging_dirs(dir: &std::path::Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.') && n.ends_with(".minitls-tmp"))
                .collect()
        })
        .unwrap_or_default()
}

/// Starts a slow (`--limit-rate 512K`) `fetch ARGS` and waits until `ready` holds.
fn slow_fetch(w: &Workspace, args: &[&str], ready: impl Fn() -> bool) -> std::process::Child {
    let mut child = common::minitls(w.path())
        .arg("fetch")
        .args(args)
        .args(["--limit-rate", "512K"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "the fetch never got going"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the fetch ended too early: {status}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child
}

fn big_tree(w: &Workspace) {
    let t = w.join("server_public/tree");
    fs::create_dir_all(&t).unwrap();
    for i in 0..4 {
        fs::write(t.join(format!("f{i}.bin")), pseudo_random(1 << 20, i)).unwrap();
    }
}

#[test]
fn a_killed_tree_fetch_leaves_staging_that_the_next_fetch_removes() {
    let w = Workspace::new();
    big_tree(&w);
    let server = w.serve(&[]);
    let out = w.join("client_received");
    let mut child = slow_fetch(&w, &["-r", "tree", "--server", &server.addr], || {
        !staging_dirs(&out).is_empty()
    });
    // SIGKILL: nothing of the client runs any more; its staging directory stays.
    child.kill().unwrap();
    child.wait().unwrap();
    let stale = staging_dirs(&out);
    assert_eq!(stale.len(), 1, "{stale:?}");
    // One more, as an older version or a crash would leave it.
    fs::create_dir_all(out.join(".0123456789abcdef.minitls-tmp/sub")).unwrap();
    ok(&w.run(&["fetch", "-r", "tree", "--server", &server.addr]));
    assert_eq!(staging_dirs(&out), Vec::<String>::new());
    ok(&w.run(&["verify", "client_received/tree"]));
}

#[test]
fn ctrl_c_during_a_tree_fetch_removes_its_staging_and_during_a_file_keeps_its_data() {
    let w = Workspace::new();
    big_tree(&w);
    fs::write(w.join("server_public/big.bin"), pseudo_random(4 << 20, 9)).unwrap();
    let server = w.serve(&[]);
    let out = w.join("client_received");
    // A tree: its staging directory goes, nothing is put in place.
    let child = slow_fetch(&w, &["-r", "tree", "--server", &server.addr], || {
        !staging_dirs(&out).is_empty()
    });
    common::send_signal(child.id(), "INT");
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert_eq!(staging_dirs(&out), Vec::<String>::new());
    assert!(!out.join("tree").exists());
    assert!(
        stderr(&o).contains(
            "minitls: interrupted; the tree's staging directory was removed; nothing was put \
             in place"
        ),
        "{}",
        stderr(&o)
    );
    common::assert_no_panic(&stderr(&o));
    // A single file: what arrived stays for --resume, and the hint says how.
    let partial = w.join("dl/.big.bin.minitls-partial");
    let child = slow_fetch(
        &w,
        &["big.bin", "--server", &server.addr, "--out", "dl"],
        || fs::metadata(&partial).is_ok_and(|m| m.len() > 0),
    );
    common::send_signal(child.id(), "INT");
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(partial.is_file());
    let hint = format!(
        "the data received so far is kept: run `minitls fetch --resume big.bin --server {} \
         --out dl` to continue",
        server.addr
    );
    assert!(stderr(&o).contains(&hint), "{}", stderr(&o));
    ok(&w.run(&[
        "fetch",
        "--resume",
        "big.bin",
        "--server",
        &server.addr,
        "--out",
        "dl",
    ]));
    assert_eq!(
        fs::read(w.join("dl/big.bin")).unwrap(),
        pseudo_random(4 << 20, 9)
    );
}

// ---------------------------------------------------------------------------------------------
// Hints that point the right way, and the README's examples
// ---------------------------------------------------------------------------------------------

#[test]
fn the_readme_using_it_block_works_in_an_empty_directory() {
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let block = readme
        .split("## Using it")
        .nth(1)
        .and_then(|rest| rest.split("```sh\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("README.md has a sh block under 'Using it'");
    assert!(block.contains("minitls serve"), "{block}");
    // A free port instead of 4041 (other servers may run on this machine), given to both ends
    // through their environment variables; and a wait for the server, which a person typing
    // the next line gives it anyway.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut script = String::from("set -eu\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n");
    for line in block.lines() {
        script.push_str(line);
        script.push('\n');
        if line.starts_with("minitls serve") {
            script.push_str(&format!(
                "for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && \
                 break; sleep 0.1; done\n"
            ));
        }
    }
    let empty = tempfile::tempdir().unwrap();
    let bin_dir = std::path::Path::new(common::bin()).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let o = common::clean_command("bash", empty.path())
        .args(["-c", &script])
        .env("PATH", path)
        .env("MINITLS_LISTEN", format!("127.0.0.1:{port}"))
        .env("MINITLS_SERVER", format!("127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "the README's block failed ({:?})\nscript:\n{script}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    common::assert_no_panic(&stderr(&o));
    let out = stdout(&o);
    for expected in [
        "client_received/hello.txt\n",
        "OK client_received/hello.txt (19 bytes",
        "OK client_received/docs (1 file, 0 directories",
        "client_received/big.iso\n",
        "greeting.txt\n",
        "19\n",
    ] {
        assert!(out.contains(expected), "{expected:?} not in\n{out}");
    }
    assert!(empty.path().join("alice.crt").is_file());
}

#[test]
fn wrong_direction_hints_of_issue_14_point_the_right_way() {
    let w = Workspace::new();
    fs::create_dir(w.join("server_public/docs")).unwrap();
    fs::write(w.join("server_public/docs/a.txt"), "a").unwrap();
    // Nothing listens: no advice to --resume what never started; the fix is a server.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let line = fails_with(&w.run(&["fetch", "hello.txt", "--server", &closed]), 3);
    assert!(line.contains("is `minitls serve` running at"), "{line}");
    assert!(!line.contains("--resume"), "{line}");
    // ... and --retry tries again, then says the same.
    let o = w.run(&["fetch", "hello.txt", "--retry", "1", "--server", &closed]);
    let line = fails_with(&o, 3);
    assert!(
        stderr(&o).contains("retrying in 1 s (retry 1 of 1)\n"),
        "{}",
        stderr(&o)
    );
    assert!(!line.contains("--resume"), "{line}");

    // --out - is not stdout (and makes no directory named -).
    let line = fails_with(&w.run(&["fetch", "hello.txt", "--out", "-"]), 2);
    assert_eq!(
        line,
        "minitls: error: --out names a directory to write into; to write the file to stdout, \
         use -o -"
    );
    assert!(!w.join("-").exists());

    // fetch . without -r names the served root: the advice is -r, and where it lands.
    for root in [".", ""] {
        let line = fails_with(&w.run(&["fetch", root]), 2);
        assert!(
            line.contains(
                "is the served directory itself; fetch it with -r (it lands in \
                           client_received/127.0.0.1)"
            ),
            "{line}"
        );
    }
    let line = fails_with(&w.run(&["fetch", "-r", "../x"]), 2);
    assert!(line.ends_with("name a directory relative to the served directory, like docs"));

    // -r --resume with nothing kept fetches the tree whole, saying nothing about it.
    let server = w.serve(&[]);
    let o = w.run(&["fetch", "-r", "--resume", "docs", "--server", &server.addr]);
    ok(&o);
    assert!(
        stderr(&o).starts_with("minitls: docs: 1 file"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn fetch_r_dot_fetches_what_the_policy_lets_the_client_read_into_out_named_after_the_server() {
    let w = Workspace::new();
    fs::create_dir_all(w.join("server_public/docs/sub")).unwrap();
    fs::write(w.join("server_public/docs/a.txt"), "a").unwrap();
    fs::write(w.join("server_public/docs/sub/b.txt"), "b").unwrap();
    fs::create_dir(w.join("server_public/secret")).unwrap();
    fs::write(w.join("server_public/secret/k.txt"), "k").unwrap();
    fs::write(
        w.join("policy.toml"),
        "[[grant]]\nclients = [\"*\"]\nread = [\"docs\", \"hello.txt\"]\n",
    )
    .unwrap();
    let server = w.serve(&["--policy", "policy.toml"]);

    let o = w.run(&["fetch", "-r", ".", "--server", &server.addr]);
    assert_eq!(ok(&o).trim(), "client_received/127.0.0.1");
    let root = w.join("client_received/127.0.0.1");
    assert_eq!(
        fs::read_to_string(root.join("hello.txt")).unwrap(),
        common::HELLO
    );
    assert_eq!(fs::read(root.join("docs/sub/b.txt")).unwrap(), b"b");
    // What the policy keeps from the client is not part of the tree.
    assert!(!root.join("secret").exists());
    assert!(
        w.join("client_received/127.0.0.1.minitls-manifest")
            .is_file()
    );
    // The tree and each file in it verify offline.
    let v = ok(&w.run(&["verify", "client_received/127.0.0.1"]));
    assert!(
        v.starts_with("OK client_received/127.0.0.1 (3 files, 2 directories"),
        "{v}"
    );
    let v = ok(&w.run(&["verify", "client_received/127.0.0.1/docs/a.txt"]));
    assert!(
        v.starts_with("OK client_received/127.0.0.1/docs/a.txt"),
        "{v}"
    );
    // An empty PATH is the root too; fetched again, the tree is merged into place.
    ok(&w.run(&["fetch", "-r", "", "--server", &server.addr]));
    ok(&w.run(&["verify", "client_received/127.0.0.1"]));

    // "." means the root only as the whole path: nothing that escapes it or hides in it.
    for bad in ["./docs", "docs/.", "./..", "./"] {
        let line = fails_with(&w.run(&["fetch", "-r", bad, "--server", &server.addr]), 2);
        assert!(line.contains("is not a valid remote path"), "{bad}: {line}");
    }
}

#[test]
fn retry_with_several_paths_continues_the_cut_file_and_fetches_only_what_is_left() {
    let w = Workspace::new();
    let big1 = pseudo_random(3 << 20, 21);
    let big2 = pseudo_random(2 << 20, 22);
    fs::write(w.join("server_public/a.txt"), "small").unwrap();
    fs::write(w.join("server_public/big1.bin"), &big1).unwrap();
    fs::write(w.join("server_public/big2.bin"), &big2).unwrap();
    let server = w.serve(&[]);

    // Cut 1 MiB into the answers: a.txt is in, big1.bin part-way.
    let proxy = cutting_proxy(&server.addr, 1 << 20);
    let o = w.run(&[
        "fetch", "a.txt", "big1.bin", "big2.bin", "--retry", "2", "--server", &proxy,
    ]);
    ok(&o);
    let err = stderr(&o);
    assert!(
        err.contains("(2 of 3 paths left); retrying in 1 s (retry 1 of 2), from what arrived"),
        "{err}"
    );
    assert!(err.contains("all 3 paths fetched after 1 retry"), "{err}");
    assert_eq!(
        fs::read_to_string(w.join("client_received/a.txt")).unwrap(),
        "small"
    );
    assert_eq!(fs::read(w.join("client_received/big1.bin")).unwrap(), big1);
    assert_eq!(fs::read(w.join("client_received/big2.bin")).unwrap(), big2);
    for f in ["a.txt", "big1.bin", "big2.bin"] {
        ok(&w.run(&["verify", &format!("client_received/{f}")]));
    }
    // The server saw a.txt once, and big1.bin resumed: its second answer sent less than the
    // whole file.
    assert!(server.wait_for_log("path=big2.bin"), "{}", server.log());
    let log = server.log();
    let ok_gets = |path: &str| -> Vec<u64> {
        log.lines()
            .filter(|l| l.contains(&format!(" path={path} ")) && l.contains("result=ok"))
            .map(|l| {
                let b = l.split(" bytes=").nth(1).unwrap();
                b.split(' ').next().unwrap().parse().unwrap()
            })
            .collect()
    };
    assert_eq!(ok_gets("a.txt"), [5], "{log}");
    let resumed = ok_gets("big1.bin");
    assert!(
        resumed.len() == 1 && resumed[0] < big1.len() as u64,
        "{resumed:?}\n{log}"
    );
    assert!(err.contains("were already here)"), "{err}");

    // Without --retry the cut ends the command, and says how many paths were not fetched.
    let proxy = cutting_proxy(&server.addr, 1 << 20);
    let o = w.run(&[
        "fetch", "a.txt", "big1.bin", "big2.bin", "--server", &proxy, "--out", "again",
    ]);
    let line = fails(&o);
    assert!(line.contains("2 of 3 paths failed"), "{line}");
}

#[test]
fn a_cut_tree_is_resumed_sending_only_what_is_missing_and_verifies() {
    let w = Workspace::new();
    fs::create_dir_all(w.join("server_public/tree/sub")).unwrap();
    let files = [
        ("tree/a.bin", pseudo_random(1 << 20, 31)),
        ("tree/b.bin", pseudo_random(1 << 20, 32)),
        ("tree/sub/c.bin", pseudo_random(1 << 20, 33)),
    ];
    for (name, data) in &files {
        fs::write(w.join(&format!("server_public/{name}")), data).unwrap();
    }
    let total = 3u64 << 20;
    let server = w.serve(&[]);

    // Cut 1.5 MiB in: a.bin is whole, b.bin part-way; what arrived is kept, and the hint
    // says how to continue.
    let proxy = cutting_proxy(&server.addr, 3 << 19);
    let line = fails(&w.run(&["fetch", "-r", "tree", "--server", &proxy]));
    let hint = format!("`minitls fetch -r --resume tree --server {proxy}`");
    assert!(line.contains(&hint), "{line}");
    let kept = w.join("client_received/.tree.minitls-partial");
    assert_eq!(fs::read(kept.join("a.bin")).unwrap(), files[0].1);
    assert!(!w.join("client_received/tree").exists());

    // Typed as printed: a.bin is not sent again, b.bin continues, c.bin comes whole.
    let o = w.run(&[
        "fetch", "-r", "--resume", "tree", "--server", &proxy, "--json",
    ]);
    let out = ok(&o);
    assert!(
        stderr(&o).contains("(1 file was already here, "),
        "{}",
        stderr(&o)
    );
    assert_eq!(json_value(out.trim(), "already_here"), "1");
    let network: u64 = json_value(out.trim(), "network_bytes").parse().unwrap();
    assert!(network <= total - (1 << 20), "{network}");
    // The server's own count of what it sent agrees.
    assert!(
        server.wait_for_log(&format!("bytes={network} ")),
        "{}",
        server.log()
    );
    for (name, data) in &files {
        assert_eq!(
            &fs::read(w.join(&format!("client_received/{name}"))).unwrap(),
            data
        );
    }
    assert!(!kept.exists());
    let v = ok(&w.run(&["verify", "client_received/tree"]));
    assert!(
        v.starts_with("OK client_received/tree (3 files, 1 directory"),
        "{v}"
    );

    // Against the tree in place: b.bin grew on the server and our sub/c.bin was altered. Only
    // b.bin's new bytes and the whole of c.bin cross the network; a.bin is not sent.
    let mut grown = files[1].1.clone();
    grown.extend_from_slice(b"more bytes");
    fs::write(w.join("server_public/tree/b.bin"), &grown).unwrap();
    let mut altered = files[2].1.clone();
    altered[7] ^= 1;
    fs::write(w.join("client_received/tree/sub/c.bin"), &altered).unwrap();
    let o = w.run(&[
        "fetch",
        "-r",
        "--resume",
        "tree",
        "--server",
        &server.addr,
        "--json",
    ]);
    let out = ok(&o);
    assert_eq!(json_value(out.trim(), "already_here"), "1");
    assert_eq!(
        json_value(out.trim(), "network_bytes"),
        (10 + (1u64 << 20)).to_string()
    );
    assert_eq!(
        fs::read(w.join("client_received/tree/b.bin")).unwrap(),
        grown
    );
    assert_eq!(
        fs::read(w.join("client_received/tree/sub/c.bin")).unwrap(),
        files[2].1
    );
    ok(&w.run(&["verify", "client_received/tree"]));
    fs::write(w.join("server_public/tree/b.bin"), &files[1].1).unwrap();

    // With --retry, one command continues on its own after the cut, from what arrived.
    let proxy = cutting_proxy(&server.addr, 3 << 19);
    let o = w.run(&[
        "fetch", "-r", "tree", "--retry", "1", "--server", &proxy, "--out", "again",
    ]);
    ok(&o);
    let err = stderr(&o);
    assert!(err.contains("(retry 1 of 1), from what arrived"), "{err}");
    assert!(err.contains("already here, "), "{err}");
    ok(&w.run(&["verify", "again/tree"]));

    // A plain fetch after a cut replaces what was kept: everything is sent.
    let proxy = cutting_proxy(&server.addr, 3 << 19);
    fails(&w.run(&["fetch", "-r", "tree", "--server", &proxy, "--out", "plain"]));
    assert!(w.join("plain/.tree.minitls-partial").is_dir());
    let o = w.run(&[
        "fetch", "-r", "tree", "--server", &proxy, "--out", "plain", "--json",
    ]);
    let out = ok(&o);
    assert_eq!(json_value(out.trim(), "network_bytes"), total.to_string());
    assert!(!w.join("plain/.tree.minitls-partial").exists());

    // A kept file altered since (same size, other bytes) is not taken for the server's: the
    // server's check of what the client holds fails, the file is sent whole, the tree
    // verifies.
    let proxy = cutting_proxy(&server.addr, 3 << 19);
    fails(&w.run(&[
        "fetch", "-r", "tree", "--server", &proxy, "--out", "altered",
    ]));
    let a = w.join("altered/.tree.minitls-partial/a.bin");
    let mut bytes = fs::read(&a).unwrap();
    bytes[100] ^= 1;
    fs::write(&a, &bytes).unwrap();
    let o = w.run(&[
        "fetch", "-r", "--resume", "tree", "--server", &proxy, "--out", "altered", "--json",
    ]);
    let out = ok(&o);
    assert_eq!(json_value(out.trim(), "already_here"), "0");
    assert_eq!(fs::read(w.join("altered/tree/a.bin")).unwrap(), files[0].1);
    ok(&w.run(&["verify", "altered/tree"]));
}
