//! `minitls shell` end to end (issue 15): batch sessions (`-b` and a pipe) with their exit
//! statuses, keep-alives against the idle timeout, `--max-session`, and the shell driven
//! through a real pseudo-terminal (tab completion of a remote name, history).

mod common;

use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Workspace, assert_no_panic, fails_with, minitls, ok, stderr, stdout};

/// Every client may read everything and write under uploads/ only.
const POLICY: &str = "[[grant]]\nclients = [\"*\"]\nread = [\".\"]\nwrite = [\"uploads\"]\n";

fn workspace() -> Workspace {
    let w = Workspace::new();
    fs::create_dir(w.join("server_public/docs")).unwrap();
    fs::write(w.join("server_public/docs/readme.txt"), "a document\n").unwrap();
    fs::write(w.join("policy.toml"), POLICY).unwrap();
    fs::write(w.join("local.txt"), "uploaded by the shell\n").unwrap();
    w
}

fn shell_batch(w: &Workspace, server: &common::Server, batch: &str) -> std::process::Output {
    fs::write(w.join("batch.txt"), batch).unwrap();
    w.run(&["shell", "-b", "batch.txt", "--server", &server.addr])
}

#[test]
fn a_batch_session_lists_changes_directory_gets_puts_and_stops_at_a_refused_put() {
    let w = workspace();
    let server = w.serve(&["--policy", "policy.toml"]);
    let o = shell_batch(
        &w,
        &server,
        "# a comment, then commands\n\
         ls\n\
         cd docs\n\
         pwd\n\
         ls -l\n\
         get readme.txt\n\
         cd ..\n\
         put local.txt uploads\n\
         ls uploads\n\
         put local.txt docs\n\
         pwd\n",
    );
    // The refused put ends the batch with the server's refusal (5), as its one error line.
    let line = fails_with(&o, 5);
    assert!(line.contains("put local.txt /docs"), "{line}");
    assert!(line.contains("not allowed"), "{line}");
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.contains(&"docs/"), "{out}");
    assert!(lines.contains(&"hello.txt"), "{out}");
    assert!(lines.contains(&"/docs"), "{out}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with('-') && l.ends_with(" readme.txt")),
        "ls -l: {out}"
    );
    assert!(lines.contains(&"/uploads/local.txt"), "{out}");
    assert!(lines.contains(&"local.txt"), "ls uploads: {out}");
    // The last pwd (which would print "/") never ran: the batch stopped at the failure.
    assert!(!lines.contains(&"/"), "{out}");
    // get: verified, in place, with its signature beside it (as fetch leaves it), and the
    // same one-line summary.
    assert_eq!(
        fs::read_to_string(w.join("readme.txt")).unwrap(),
        "a document\n"
    );
    ok(&w.run(&["verify", "readme.txt"]));
    let err = stderr(&o);
    assert!(err.contains("minitls: docs/readme.txt: 11 B in "), "{err}");
    // put: stored under the write grant, signed by the client; refused elsewhere.
    assert_eq!(
        fs::read_to_string(w.join("server_public/uploads/local.txt")).unwrap(),
        "uploaded by the shell\n"
    );
    assert!(!w.join("server_public/docs/local.txt").exists());
    assert!(server.wait_for_log("op=put path=docs/local.txt"));
    assert!(server.log().contains("result=denied"), "{}", server.log());
}

#[test]
fn batch_exit_statuses_follow_the_failed_command() {
    let w = workspace();
    let server = w.serve(&[]);
    // Not found on the server: 5.
    let line = fails_with(&shell_batch(&w, &server, "get nope.txt\n"), 5);
    assert!(line.contains("no such file"), "{line}");
    // An unknown command, a bad option, a path above the top: usage, 2.
    let line = fails_with(&shell_batch(&w, &server, "pwd\nfrobnicate\n"), 2);
    assert!(line.contains("unknown command 'frobnicate'"), "{line}");
    fails_with(&shell_batch(&w, &server, "ls -z\n"), 2);
    let line = fails_with(&shell_batch(&w, &server, "cd ..\n"), 2);
    assert!(line.contains("above the top"), "{line}");
    // cd into a file: refused, 5.
    fails_with(&shell_batch(&w, &server, "cd hello.txt\n"), 5);
    // A get -r of a directory works; without -r it is refused (5).
    fails_with(&shell_batch(&w, &server, "get docs\n"), 5);
    fs::create_dir(w.join("into")).unwrap();
    ok(&shell_batch(&w, &server, "get -r docs into\nexit\nls\n"));
    assert!(w.join("into/docs/readme.txt").is_file());
    ok(&w.run(&["verify", "into/docs"]));
    // Every command ran: exit 0.
    ok(&shell_batch(&w, &server, "lpwd\nlls\nhelp\n"));
    // A missing batch file: usage, before connecting.
    fails_with(&w.run(&["shell", "-b", "missing.txt"]), 2);
}

#[test]
fn standard_input_that_is_not_a_terminal_is_a_batch_and_keep_alives_outlast_the_idle_timeout() {
    let w = workspace();
    // An idle timeout of 2 s: a shell that waits 4 s between commands stays connected only
    // because it keeps the session alive.
    let server = w.serve(&["--idle-timeout", "2"]);
    let mut child = minitls(w.path())
        .args(["shell", "--server", &server.addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"cd docs\n").unwrap();
    std::thread::sleep(Duration::from_secs(4));
    stdin.write_all(b"pwd\nget readme.txt\n").unwrap();
    drop(stdin);
    let o = child.wait_with_output().unwrap();
    let out = ok(&o);
    assert!(out.lines().any(|l| l == "/docs"), "{out}");
    assert!(w.join("readme.txt").is_file());
    // The server saw one connection, ended cleanly.
    assert!(!server.log().contains("timed out"), "{}", server.log());
}

#[test]
fn a_shell_past_the_servers_max_session_is_ended_and_says_why() {
    let w = workspace();
    let server = w.serve(&["--max-session", "2s"]);
    let mut child = minitls(w.path())
        .args(["shell", "--server", &server.addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"pwd\n").unwrap();
    // stdin stays open: the shell waits, polling, until the server ends the session.
    let o = child.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let err = stderr(&o);
    assert_no_panic(&err);
    assert!(err.contains("session time limit reached"), "{err}");
    assert!(server.wait_for_log("op=session-limit"), "{}", server.log());
}

#[test]
fn an_oversized_message_is_refused_before_it_is_sent() {
    let w = workspace();
    let server = w.serve(&[]);
    let long = "x".repeat(1025);
    let line = fails_with(&shell_batch(&w, &server, &format!("say {long}\n")), 2);
    assert!(line.contains("1025 bytes, more than the 1024"), "{line}");
    // 1024 bytes is fine, and arrives.
    ok(&shell_batch(
        &w,
        &server,
        &format!("say {}\n", "y".repeat(1024)),
    ));
    assert!(server.wait_for_log(&"y".repeat(1024)));
}

#[test]
fn a_message_with_escape_sequences_reaches_the_server_escaped_with_the_senders_identity() {
    let w = workspace();
    let server = w.serve(&[]);
    ok(&shell_batch(
        &w,
        &server,
        "say hello \u{1b}[2J\u{1b}]0;owned\u{7} done\n",
    ));
    assert!(
        server.wait_for_log("says: hello \\x1b[2J\\x1b]0;owned\\x07 done"),
        "{}",
        server.log()
    );
    let log = server.log();
    assert!(log.contains("conn 1 'CN=client' (serial "), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "a raw ESC reached the console: {log}"
    );
    // And the audit log has it, attributed to the authenticated client.
    assert!(
        log.lines()
            .any(|l| l.contains("client=CN=client") && l.contains("op=say")),
        "{log}"
    );
}

/// The shell on a real pseudo-terminal: the prompt, tab completion of a remote name, and the
/// history (up arrow).
#[test]
fn on_a_terminal_the_shell_completes_remote_names_and_keeps_a_history() {
    let w = workspace();
    let server = w.serve(&[]);
    let mut cmd: Command = minitls(w.path());
    cmd.args(["shell", "--server", &server.addr])
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .env("TERM", "xterm");
    let mut p = rexpect::session::spawn_command(cmd, Some(30_000)).unwrap();
    let prompt = "minitls client@127.0.0.1:/> ";
    p.exp_string(prompt).unwrap();
    // "hel" + Tab completes to the only remote name that starts so: hello.txt.
    p.send("get hel").unwrap();
    p.send("\t").unwrap();
    p.flush().unwrap();
    p.exp_string("hello.txt").unwrap();
    p.send("\r").unwrap();
    p.flush().unwrap();
    p.exp_string("./hello.txt").unwrap();
    p.exp_string(prompt).unwrap();
    assert_eq!(
        fs::read_to_string(w.join("hello.txt")).unwrap(),
        common::HELLO
    );
    // "do" + Tab completes a directory (with its slash).
    p.send("cd do\t").unwrap();
    p.flush().unwrap();
    p.exp_string("docs/").unwrap();
    p.send("\r").unwrap();
    p.flush().unwrap();
    p.exp_string("minitls client@127.0.0.1:/docs> ").unwrap();
    // History: pwd, then up arrow and Enter runs it again.
    p.send_line("pwd").unwrap();
    p.exp_string("/docs\r\n").unwrap();
    p.exp_string("/docs> ").unwrap();
    p.send("\u{1b}[A").unwrap();
    p.flush().unwrap();
    p.exp_string("pwd").unwrap();
    p.send("\r").unwrap();
    p.flush().unwrap();
    p.exp_string("/docs\r\n").unwrap();
    p.exp_string("/docs> ").unwrap();
    p.send_line("exit").unwrap();
    p.exp_eof().unwrap();
    assert!(server.wait_for_log("op=get path=hello.txt"));
}

/// Ctrl-C during a `get -r` on a terminal: as with fetch, the tree half-received is removed
/// (nothing is left but what was there), and the shell exits 130. At the prompt, Ctrl-C only
/// clears the line.
#[test]
fn ctrl_c_during_a_get_removes_the_half_received_tree() {
    let w = workspace();
    let many = w.join("server_public/many");
    fs::create_dir(&many).unwrap();
    for i in 0..5000 {
        fs::write(many.join(format!("f{i}.txt")), [b'x'; 4096]).unwrap();
    }
    let server = w.serve(&[]);
    fs::create_dir(w.join("dl")).unwrap();
    let mut cmd: Command = minitls(&w.join("dl"));
    cmd.args(["shell", "--server", &server.addr, "--ca-dir", "../ca"])
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .env("TERM", "xterm");
    let mut p = rexpect::session::spawn_command(cmd, Some(30_000)).unwrap();
    let prompt = "minitls client@127.0.0.1:/> ";
    p.exp_string(prompt).unwrap();
    p.send_control('c').unwrap();
    p.exp_string(prompt).unwrap();
    p.send_line("get -r many").unwrap();
    // The progress bar of the tree: the transfer is under way.
    p.exp_string("many").unwrap();
    p.exp_string("/5000").unwrap();
    p.send_control('c').unwrap();
    p.exp_string("interrupted; the tree's staging directory was removed")
        .unwrap();
    p.exp_eof().unwrap();
    // rexpect reports nix's WaitStatus: Exited(pid, 130).
    let status = format!("{:?}", p.process_mut().wait().unwrap());
    assert!(
        status.starts_with("Exited(") && status.ends_with(", 130)"),
        "{status}"
    );
    // (`.cache` is the session cache common::minitls points into the command's directory.)
    let left: Vec<_> = fs::read_dir(w.join("dl"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != ".cache")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
