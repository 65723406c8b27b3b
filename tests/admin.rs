//! The server's operator (issue 15): `serve --control SOCKET` and `minitls admin`: listing
//! connected shells with their identities, messages both ways (escaped, bounded), dropping a
//! connection (its shell says why), stopping the server, and a socket only the server's own
//! user may use.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Workspace, assert_no_panic, fails_with, minitls, ok, stdout};

/// A client certificate NAME.crt / NAME.key issued by the workspace's CA.
fn issue(w: &Workspace, name: &str) {
    ok(&w.run(&[
        "ca",
        "issue",
        "--role",
        "client",
        name,
        "--key-bits",
        "2048",
        "--out-cert",
        &format!("{name}.crt"),
        "--out-key",
        &format!("{name}.key"),
    ]));
}

/// A `minitls shell` waiting on a pipe that stays open: an idle session. Killed on drop.
struct IdleShell {
    child: Child,
    _stdin: Option<ChildStdin>,
    stderr: Arc<Mutex<String>>,
}

impl IdleShell {
    fn start(w: &Workspace, addr: &str, name: &str) -> Self {
        let mut child = minitls(w.path())
            .args(["shell", "--server", addr, "--ca-cert", "ca/ca.crt"])
            .args([
                "--cert",
                &format!("{name}.crt"),
                "--key",
                &format!("{name}.key"),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let err = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Self {
            child,
            _stdin: stdin,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (generously) until its stderr holds `needle`.
    fn wait_for(&self, needle: &str) -> bool {
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if self.stderr().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Waits (generously) for it to exit; its status code.
    fn wait_exit(&mut self) -> Option<i32> {
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for IdleShell {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn admin(w: &Workspace, args: &[&str]) -> std::process::Output {
    let mut all = vec!["admin"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--control", "ctl.sock"]);
    w.run(&all)
}

/// `admin clients --json`, waited for (generously) until it lists `n` connections, every one
/// known as a shell (a shell polls at once, then every second).
fn clients(w: &Workspace, n: usize) -> Vec<String> {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let out = ok(&admin(w, &["clients", "--json"]));
        let lines: Vec<String> = out.lines().map(str::to_string).collect();
        let shells = lines.iter().all(|l| l.contains("\"shell\":true"));
        if (lines.len() == n && shells) || Instant::now() >= end {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `"id":N` of the JSON line for `client`.
fn id_of(lines: &[String], client: &str) -> String {
    let line = lines
        .iter()
        .find(|l| l.contains(&format!("\"client\":\"CN={client}\"")))
        .unwrap_or_else(|| panic!("{client} not in {lines:?}"));
    let rest = line.strip_prefix("{\"id\":").unwrap();
    rest[..rest.find(',').unwrap()].to_string()
}

#[test]
fn admin_lists_two_shells_messages_one_drops_the_other_and_stops_the_server() {
    let w = Workspace::new();
    issue(&w, "alice");
    issue(&w, "bob");
    let mut server = w.serve(&["--control", "ctl.sock"]);
    let mode = fs::metadata(w.join("ctl.sock")).unwrap();
    assert!(mode.file_type().is_socket());
    assert_eq!(mode.permissions().mode() & 0o777, 0o600);

    let alice = IdleShell::start(&w, &server.addr, "alice");
    let mut bob = IdleShell::start(&w, &server.addr, "bob");
    // 1. Both listed, with the identities the handshake authenticated.
    let listed = clients(&w, 2);
    assert_eq!(listed.len(), 2, "{listed:?}");
    for l in &listed {
        assert!(l.contains("\"shell\":true"), "{l}");
        assert!(l.contains("\"peer\":\"127.0.0.1:"), "{l}");
        assert!(l.contains("\"op\":null"), "{l}");
    }
    let (a, b) = (id_of(&listed, "alice"), id_of(&listed, "bob"));
    let table = ok(&admin(&w, &["clients"]));
    assert!(table.starts_with("ID   CLIENT"), "{table}");
    assert!(
        table.contains("CN=alice") && table.contains("CN=bob"),
        "{table}"
    );
    assert!(table.contains("idle (shell)"), "{table}");

    // 2. A message with escape sequences arrives in alice's shell escaped; it is audited.
    ok(&admin(&w, &["say", &a, "hi \u{1b}[2J\u{1b}[31mred\u{9b}"]));
    assert!(
        alice.wait_for("message from the server's operator: hi \\x1b[2J\\x1b[31mred\\x9b"),
        "{}",
        alice.stderr()
    );
    assert!(!alice.stderr().contains('\u{1b}'), "{}", alice.stderr());
    assert!(server.wait_for_log("op=notice"), "{}", server.log());
    // Oversized: refused before it is sent (usage, 2), and nothing is queued.
    let line = fails_with(&admin(&w, &["say", &a, &"x".repeat(1025)]), 2);
    assert!(line.contains("more than the 1024"), "{line}");
    // Unknown connection: the server says so (1).
    let line = fails_with(&admin(&w, &["drop", "999"]), 1);
    assert!(line.contains("no connection 999"), "{line}");

    // 3. drop: bob's shell ends, saying why; alice stays.
    let dropped = ok(&admin(&w, &["drop", &b]));
    assert!(
        dropped.contains(&format!("connection {b} dropped")),
        "{dropped}"
    );
    assert_eq!(bob.wait_exit(), Some(3), "{}", bob.stderr());
    let err = bob.stderr();
    assert_no_panic(&err);
    assert!(
        err.contains("the server ended the session: dropped by the operator"),
        "{err}"
    );
    assert!(server.wait_for_log("op=drop"), "{}", server.log());
    let left = clients(&w, 1);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].contains("CN=alice"), "{left:?}");
    drop(bob);

    // 4. stop: the server stops at once (the idle shell is told), and the socket goes.
    let stopping = ok(&admin(&w, &["stop"]));
    assert!(stopping.contains("stopping"), "{stopping}");
    let status = server.wait_exit_within(Duration::from_secs(20));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(alice.wait_for("the server closed the session (it is stopping)"));
    assert!(!w.join("ctl.sock").exists());
    // Nothing answers any more: status 3.
    let line = fails_with(&admin(&w, &["clients"]), 3);
    assert!(line.contains("cannot reach the control socket"), "{line}");
}

/// `nobody`: another user than the server's (these tests run as root in CI).
const NOBODY: u32 = 65534;

#[test]
fn the_control_socket_refuses_other_users() {
    if !rustix_is_root() {
        eprintln!("note: skipping: needs root to run a command as another user");
        return;
    }
    let w = Workspace::new();
    let _server = w.serve(&["--control", "ctl.sock"]);
    // The working directory must be reachable by nobody.
    fs::set_permissions(w.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = || {
        minitls(w.path())
            .args(["admin", "clients", "--control", "ctl.sock"])
            .uid(NOBODY)
            .gid(NOBODY)
            .output()
            .unwrap()
    };
    // Mode 0600: the file system keeps nobody out (3: the socket cannot be reached).
    let line = fails_with(&as_nobody(), 3);
    assert!(line.contains("ermission denied"), "{line}");
    // Even with the mode opened up, the server checks the peer's credentials.
    fs::set_permissions(w.join("ctl.sock"), fs::Permissions::from_mode(0o666)).unwrap();
    let o = as_nobody();
    let line = fails_with(&o, 1);
    assert!(
        line.contains("refused: the control socket takes commands only from the server's own user"),
        "{line}"
    );
    assert!(stdout(&o).is_empty());
    // The server's own user still gets in.
    ok(&admin(&w, &["clients"]));
}

fn rustix_is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[test]
fn a_stale_socket_is_replaced_and_anything_else_is_refused() {
    let w = Workspace::new();
    // A socket file nobody listens on any more (a server that died).
    drop(std::os::unix::net::UnixListener::bind(w.join("ctl.sock")).unwrap());
    assert!(w.join("ctl.sock").exists());
    let server = w.serve(&["--control", "ctl.sock"]);
    ok(&admin(&w, &["clients"]));
    // A second server may not take over a live socket.
    let o = minitls(w.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--control", "ctl.sock"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let line = fails_with(&o, 1);
    assert!(line.contains("in use by another running server"), "{line}");
    drop(server);
    // A regular file is never removed.
    fs::write(w.join("notes.txt"), "mine").unwrap();
    let o = minitls(w.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--control", "notes.txt"])
        .output()
        .unwrap();
    let line = fails_with(&o, 1);
    assert!(line.contains("exists and is not a socket"), "{line}");
    assert_eq!(fs::read_to_string(w.join("notes.txt")).unwrap(), "mine");
}

/// `serve` on a terminal reads the same commands on its standard input: the console.
#[test]
fn on_a_terminal_serve_takes_console_commands() {
    let w = Workspace::new();
    issue(&w, "alice");
    let mut cmd = minitls(w.path());
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .env("TERM", "dumb");
    let mut console = rexpect::session::spawn_command(cmd, Some(30_000)).unwrap();
    let (_, addr) = console
        .exp_regex(r"127\.0\.0\.1:[0-9]+")
        .expect("the serving line");
    console.exp_string("console: type `help`").unwrap();
    // A message from the shell shows on the console, escaped, with the sender's identity.
    let mut said = minitls(w.path())
        .args(["shell", "--server", &addr, "--ca-cert", "ca/ca.crt"])
        .args(["--cert", "alice.crt", "--key", "alice.key"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut said.stdin.take().unwrap(), b"say ready \x1b[2J\n").unwrap();
    assert!(said.wait().unwrap().success());
    console.exp_string("'CN=alice' (serial ").unwrap();
    console.exp_string("says: ready \\x1b[2J").unwrap();
    let alice = IdleShell::start(&w, &addr, "alice");
    console
        .exp_string("client 'CN=alice' authenticated")
        .unwrap();
    // clients, then a message to the idle shell, then drop it.
    console.send_line("clients").unwrap();
    console.exp_string("ID   CLIENT").unwrap();
    let (_, id) = console.exp_regex(r"\n[0-9]+ +CN=alice").unwrap();
    let id = id.split_whitespace().next().unwrap().to_string();
    // Known as a shell from its first poll, which may still be on its way: ask again until
    // the server takes the message (generously bounded).
    let mut queued = false;
    for _ in 0..200 {
        console
            .send_line(&format!("say {id} hello from the console"))
            .unwrap();
        let (_, answer) = console
            .exp_regex("message queued for connection|is not a shell")
            .unwrap();
        if answer.starts_with("message queued") {
            queued = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(queued, "the console never queued the message");
    assert!(
        alice.wait_for("message from the server's operator: hello from the console"),
        "{}",
        alice.stderr()
    );
    console.send_line("frobnicate").unwrap();
    console.exp_string("unknown command 'frobnicate'").unwrap();
    console.send_line(&format!("drop {id}")).unwrap();
    console
        .exp_string(&format!("connection {id} dropped"))
        .unwrap();
    assert!(
        alice.wait_for("dropped by the operator"),
        "{}",
        alice.stderr()
    );
    console.send_line("stop").unwrap();
    console.exp_string("stopping").unwrap();
    console.exp_eof().unwrap();
}

/// `drop` also ends a connection in the middle of a transfer to a client that reads slowly,
/// within moments, whether its thread is between records or blocked inside one (then the
/// connection is cut: a fetch keeps what arrived, for --resume).
#[test]
fn drop_ends_a_connection_blocked_in_a_transfer() {
    let w = Workspace::new();
    fs::write(w.join("server_public/big.bin"), vec![7u8; 32 << 20]).unwrap();
    let server = w.serve(&["--control", "ctl.sock"]);
    let mut fetch = minitls(w.path())
        .args([
            "fetch",
            "big.bin",
            "--limit-rate",
            "8K",
            "--server",
            &server.addr,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Listed while it sends (generously waited for), then dropped.
    let end = Instant::now() + Duration::from_secs(20);
    let id = loop {
        let out = ok(&admin(&w, &["clients", "--json"]));
        if let Some(l) = out.lines().find(|l| l.contains("\"op\":\"get big.bin\"")) {
            let rest = l.strip_prefix("{\"id\":").unwrap();
            break rest[..rest.find(',').unwrap()].to_string();
        }
        assert!(Instant::now() < end, "never listed as sending: {out}");
        std::thread::sleep(Duration::from_millis(50));
    };
    ok(&admin(&w, &["drop", &id]));
    // At a record boundary the Goodbye follows what was queued; stuck in the middle of a
    // record, the connection is cut ("cut in the middle of a transfer"). Either way it ends.
    assert!(
        server.wait_for_log("conn 1 client 'CN=client': dropped by the operator"),
        "{}",
        server.log()
    );
    assert!(server.wait_for_log("op=drop"));
    assert!(clients(&w, 0).is_empty());
    let _ = fetch.kill();
    let _ = fetch.wait();
}

/// `minitls serve &` from an interactive shell (the README's first example, typed at a
/// terminal): a background job that read its terminal would be stopped by SIGTTIN, the whole
/// server with it. The console waits instead, and works once `fg` brings the server back.
#[test]
fn a_server_started_in_the_background_of_a_terminal_keeps_serving() {
    let w = Workspace::new();
    let mut bash = rexpect::spawn_bash(Some(30_000)).unwrap();
    bash.send_line(&format!(
        "cd {} && export XDG_CONFIG_HOME=$PWD/.config && unset ${{!MINITLS_@}}",
        w.path().display()
    ))
    .unwrap();
    bash.wait_for_prompt().unwrap();
    bash.send_line(&format!(
        "{} serve --listen 127.0.0.1:0 2>serve.log &",
        common::bin()
    ))
    .unwrap();
    bash.wait_for_prompt().unwrap();
    // Its address, once it listens (generously waited for).
    let end = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        let log = fs::read_to_string(w.join("serve.log")).unwrap_or_default();
        if let Some(a) = log
            .lines()
            .find_map(|l| l.strip_prefix("minitls: serving "))
            .and_then(|r| r.rsplit_once(" on "))
        {
            break a.1.to_string();
        }
        assert!(Instant::now() < end, "no serving line: {log}");
        std::thread::sleep(Duration::from_millis(50));
    };
    // Served while in the background: not stopped by its console.
    bash.send_line(&format!(
        "{} ls --server {addr}; echo ls-exit=$?",
        common::bin()
    ))
    .unwrap();
    bash.exp_string("hello.txt").unwrap();
    bash.exp_string("ls-exit=0").unwrap();
    bash.wait_for_prompt().unwrap();
    // In the foreground, the console answers.
    bash.send_line("fg").unwrap();
    bash.exp_string("serve").unwrap();
    bash.send_line("clients").unwrap();
    bash.exp_string("ID   CLIENT").unwrap();
    bash.send_line("stop").unwrap();
    bash.exp_string("stopping").unwrap();
    bash.wait_for_prompt().unwrap();
    bash.send_line("exit").unwrap();
}
