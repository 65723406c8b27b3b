//! Fault injection against the real `minitls` binary on 127.0.0.1: peers killed mid-transfer,
//! a full disk, files the server cannot read, and SIGTERM to the server.
//!
//! A transfer is caught "in flight" by polling the client's hidden partial file (or its temp
//! files) until data has arrived, and, where the fault is on the server's side, by stopping
//! the client with SIGSTOP first: the server then blocks with the rest of the file unsent, so
//! the fault always lands mid-transfer however fast the build is.

mod common;

use std::fs::{self, File};
use std::io::ErrorKind;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Server, Workspace, assert_no_panic, fails, ok, send_signal, stderr, stdout};

const MIB: usize = 1024 * 1024;

/// How long any single client may take in these tests before it counts as hung.
const CLIENT_LIMIT: Duration = Duration::from_secs(60);

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

/// Every entry under `dir` (files, directories, links), as paths relative to it with their
/// sizes; empty if `dir` does not exist.
fn walk(dir: &Path) -> Vec<(String, u64)> {
    fn go(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd {
            let e = e.unwrap();
            let Ok(m) = fs::symlink_metadata(e.path()) else {
                continue; // removed while we looked
            };
            let rel = e.path().strip_prefix(root).unwrap().display().to_string();
            out.push((rel, m.len()));
            if m.is_dir() {
                go(root, &e.path(), out);
            }
        }
    }
    let mut out = Vec::new();
    go(dir, dir, &mut out);
    out.sort();
    out
}

fn file_len(p: &Path) -> u64 {
    fs::metadata(p).map_or(0, |m| m.len())
}

/// A process started by a test: killed (SIGKILL works on stopped processes too) and reaped
/// when dropped, so a failing assertion never leaves it behind. stdout and stderr go to files
/// in the workspace so they cannot fill a pipe while the test is busy elsewhere.
struct Proc {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Proc {
    fn spawn(mut cmd: Command, w: &Workspace, tag: &str) -> Proc {
        let out = w.join(&format!("{tag}.stdout"));
        let err = w.join(&format!("{tag}.stderr"));
        let child = cmd
            .stdout(Stdio::from(File::create(&out).unwrap()))
            .stderr(Stdio::from(File::create(&err).unwrap()))
            .spawn()
            .expect("the client starts");
        Proc { child, out, err }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr_so_far(&self) -> String {
        fs::read_to_string(&self.err).unwrap_or_default()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits for the process to end (at most `limit`, else it is killed and the test fails)
    /// and returns what it printed.
    #[track_caller]
    fn finish(mut self, limit: Duration) -> Output {
        let end = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.exited() {
                break s;
            }
            assert!(
                Instant::now() < end,
                "the process did not end within {limit:?}; stderr so far:\n{}",
                self.stderr_so_far()
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        Output {
            status,
            stdout: fs::read(&self.out).unwrap_or_default(),
            stderr: fs::read(&self.err).unwrap_or_default(),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `minitls -q fetch ARGS --server ADDR` in the workspace.
fn spawn_fetch(w: &Workspace, server: &Server, args: &[&str], tag: &str) -> Proc {
    let mut cmd = common::minitls(w.path());
    cmd.args(["-q", "fetch"])
        .args(args)
        .args(["--server", &server.addr]);
    Proc::spawn(cmd, w, tag)
}

/// Polls until `cond` holds, failing the test if `client` ends first or `limit` passes.
#[track_caller]
fn wait_while_running(client: &mut Proc, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + CLIENT_LIMIT;
    while !cond() {
        if let Some(status) = client.exited() {
            panic!(
                "the client ended ({status}) before {what}; stderr:\n{}",
                client.stderr_so_far()
            );
        }
        assert!(Instant::now() < end, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until the client's partial file holds at least `bytes`, then freezes the client
/// with SIGSTOP and checks the transfer is really still in flight.
#[track_caller]
fn freeze_mid_file(client: &mut Proc, partial: &Path, bytes: u64, total: usize) {
    wait_while_running(client, "data arrived", || file_len(partial) >= bytes);
    send_signal(client.pid(), "STOP");
    assert!(client.exited().is_none(), "the fetch ended before SIGSTOP");
    let held = file_len(partial);
    assert!(
        held < total as u64,
        "the whole file ({held} bytes) arrived before the client was stopped"
    );
}

/// Asserts that `out` holds at most the hidden resume file of `name` (SPEC §2.6: only a
/// network cut may keep one) and that this file is a strict prefix of `source`.
#[track_caller]
fn only_a_prefix_partial_left(out: &Path, name: &str, source: &[u8]) {
    let partial_name = format!(".{name}.minitls-partial");
    let left = walk(out);
    assert!(
        left.iter().all(|(p, _)| *p == partial_name),
        "only {partial_name} may be left in {}, found {left:?}",
        out.display()
    );
    if let Ok(kept) = fs::read(out.join(&partial_name)) {
        assert!(
            kept.len() < source.len() && source.starts_with(&kept),
            "the partial file ({} bytes) is not a strict prefix of the source ({} bytes)",
            kept.len(),
            source.len()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 1. The server killed mid-transfer
// ---------------------------------------------------------------------------------------------

#[test]
fn the_server_killed_mid_file_leaves_nothing_but_a_prefix_of_it() {
    let w = Workspace::new();
    let big = pseudo_random(48 * MIB, 1);
    fs::write(w.join("server_public/big.bin"), &big).unwrap();
    let server = w.serve(&[]);
    let mut client = spawn_fetch(&w, &server, &["big.bin"], "client");
    let out = w.join("client_received");
    freeze_mid_file(
        &mut client,
        &out.join(".big.bin.minitls-partial"),
        MIB as u64,
        big.len(),
    );

    drop(server); // SIGKILL, and reaped
    send_signal(client.pid(), "CONT");
    let o = client.finish(CLIENT_LIMIT);

    let line = fails(&o);
    assert!(line.contains("fetch 'big.bin'"), "{line}");
    assert!(line.contains("hung up mid-transfer"), "{line}");
    assert!(line.contains("--resume"), "{line}");
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    assert!(!out.join("big.bin").exists());
    assert!(!out.join("big.bin.minitls-sig").exists());
    only_a_prefix_partial_left(&out, "big.bin", &big);
}

#[test]
fn the_server_killed_mid_tree_puts_nothing_in_place_and_keeps_what_arrived_for_resume() {
    let w = Workspace::new();
    let t = w.join("server_public/tree");
    fs::create_dir_all(t.join("sub/deeper")).unwrap();
    fs::create_dir_all(t.join("empty")).unwrap();
    fs::write(t.join("a.bin"), pseudo_random(2 * MIB, 2)).unwrap();
    fs::write(t.join("sub/b.bin"), pseudo_random(24 * MIB, 3)).unwrap();
    fs::write(t.join("sub/deeper/c.bin"), pseudo_random(8 * MIB, 4)).unwrap();
    let server = w.serve(&[]);
    let mut client = spawn_fetch(&w, &server, &["-r", "tree"], "client");
    let out = w.join("client_received");

    // a.bin is whole and staged, sub/ exists, and sub/b.bin is coming in, all in the hidden
    // staging directory `.<hex>.minitls-tmp/` that becomes the tree.
    let staged_as = |p: &str, name: &str| {
        p.starts_with('.')
            && p.split_once(".minitls-tmp/")
                .is_some_and(|(_, rest)| rest == name)
    };
    wait_while_running(&mut client, "a.bin arrived and b.bin is under way", || {
        walk(&out)
            .iter()
            .any(|(p, len)| staged_as(p, "sub/b.bin") && *len >= MIB as u64)
    });
    send_signal(client.pid(), "STOP");
    assert!(client.exited().is_none(), "the fetch ended before SIGSTOP");
    let staged = walk(&out);
    assert!(
        staged
            .iter()
            .any(|(p, len)| staged_as(p, "a.bin") && *len == 2 * MIB as u64),
        "a.bin should be staged by now: {staged:?}"
    );

    drop(server);
    send_signal(client.pid(), "CONT");
    let o = client.finish(CLIENT_LIMIT);

    let line = fails(&o);
    assert!(line.contains("fetch 'tree'"), "{line}");
    assert!(line.contains("`minitls fetch -r --resume tree"), "{line}");
    // Nothing is in place; what arrived is kept, hidden, for --resume: a.bin whole.
    assert!(!out.join("tree").exists());
    assert!(!out.join("tree.minitls-manifest").exists());
    let kept = walk(&out);
    assert!(
        kept.iter()
            .all(|(p, _)| p == ".tree.minitls-partial" || p.starts_with(".tree.minitls-partial/")),
        "only the kept partial tree may be left under --out: {kept:?}"
    );
    assert!(
        kept.contains(&(".tree.minitls-partial/a.bin".to_string(), 2 * MIB as u64)),
        "{kept:?}"
    );
    // A server again: the fetch continues and the tree verifies.
    let server = w.serve(&[]);
    ok(&w.run(&["fetch", "-r", "--resume", "tree", "--server", &server.addr]));
    ok(&w.run(&["verify", "client_received/tree"]));
    assert!(!out.join(".tree.minitls-partial").exists());
}

// ---------------------------------------------------------------------------------------------
// 2. The client killed mid-transfer
// ---------------------------------------------------------------------------------------------

#[test]
fn a_client_killed_mid_file_leaves_the_server_serving_others() {
    let w = Workspace::new();
    let big = pseudo_random(48 * MIB, 5);
    let other = pseudo_random(4 * MIB + 3, 6);
    fs::write(w.join("server_public/big.bin"), &big).unwrap();
    fs::write(w.join("server_public/other.bin"), &other).unwrap();
    // One client at a time: the next fetch only gets in if the killed client's connection
    // was cleaned up and its slot freed.
    let mut server = w.serve(&["--max-clients", "1"]);
    let mut client = spawn_fetch(&w, &server, &["big.bin"], "killed");
    let partial = w.join("client_received/.big.bin.minitls-partial");
    wait_while_running(&mut client, "data arrived", || {
        file_len(&partial) >= MIB as u64
    });
    drop(client); // SIGKILL, and reaped

    assert!(
        server.wait_for_log("network error"),
        "the server should log the cut connection:\n{}",
        server.log()
    );
    assert!(server.is_running(), "{}", server.log());

    // The slot is freed right after that log line; a "busy" answer in between is retried.
    let end = Instant::now() + Duration::from_secs(10);
    let o = loop {
        let o = w.run(&[
            "-q",
            "fetch",
            "other.bin",
            "--out",
            "second",
            "--server",
            &server.addr,
        ]);
        if o.status.success() || !stderr(&o).contains("--max-clients") || Instant::now() > end {
            break o;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(ok(&o), "second/other.bin\n");
    assert!(fs::read(w.join("second/other.bin")).unwrap() == other);
    ok(&w.run(&["verify", "second/other.bin"]));
    assert!(server.is_running(), "{}", server.log());
    assert_no_panic(&server.log());
}

// ---------------------------------------------------------------------------------------------
// 3. The client's disk fills up mid-file
// ---------------------------------------------------------------------------------------------

/// Checks the outcome of a fetch of `big.bin` that hit a local write error: one clean line
/// naming the file and `problem`, nothing at all left in `out` (a local error is not a
/// network cut: no partial file either), and a server that keeps serving.
#[track_caller]
fn a_local_write_error_left_nothing(
    o: &Output,
    out: &Path,
    problem: &str,
    w: &Workspace,
    server: &mut Server,
) {
    let line = fails(o);
    assert!(
        line.contains("big.bin"),
        "the error must name the file: {line}"
    );
    assert!(
        line.to_lowercase().contains(problem),
        "the error must say '{problem}': {line}"
    );
    assert!(
        !line.contains("--resume"),
        "a local write error is not resumable: {line}"
    );
    assert!(line.contains("the disk is full"), "the hint: {line}");
    assert_eq!(
        walk(out),
        Vec::<(String, u64)>::new(),
        "nothing, not even a partial file, may be left in {}",
        out.display()
    );
    assert!(server.is_running(), "{}", server.log());
    assert_eq!(
        ok(&w.run(&["-q", "fetch", "hello.txt", "--server", &server.addr])),
        "client_received/hello.txt\n"
    );
    assert_no_panic(&server.log());
}

#[test]
fn a_file_size_limit_hit_mid_file_is_a_clean_error_and_leaves_nothing() {
    let w = Workspace::new();
    fs::write(w.join("server_public/big.bin"), pseudo_random(16 * MIB, 7)).unwrap();
    let mut server = w.serve(&[]);
    // An ignored SIGXFSZ survives exec, so write() past the limit fails with EFBIG instead of
    // killing the process. dash counts 512-byte blocks (2 MiB), bash 1 KiB blocks (4 MiB):
    // either way well inside the 16 MiB file.
    let mut cmd = common::clean_command("sh", w.path());
    cmd.args([
        "-c",
        "trap '' XFSZ; ulimit -f 4096; exec \"$0\" \"$@\"",
        common::bin(),
        "-q",
        "fetch",
        "big.bin",
        "--out",
        "limited",
        "--server",
        &server.addr,
    ]);
    let o = Proc::spawn(cmd, &w, "client").finish(CLIENT_LIMIT);
    a_local_write_error_left_nothing(&o, &w.join("limited"), "file too large", &w, &mut server);
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (like `4m`) on `dir` (created), or says why it cannot.
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        fs::create_dir_all(dir).unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if o.status.success() {
            Ok(Tmpfs(dir.to_path_buf()))
        } else {
            Err(String::from_utf8_lossy(&o.stderr).trim().to_string())
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let done = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !done {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

#[test]
fn a_full_filesystem_mid_file_is_a_clean_error_and_leaves_nothing() {
    let w = Workspace::new();
    let small = w.join("small");
    let _mounted = match Tmpfs::mount(&small, "4m") {
        Ok(m) => m,
        Err(why) => {
            eprintln!("note: skipping the ENOSPC variant, cannot mount a tmpfs: {why}");
            return;
        }
    };
    fs::write(w.join("server_public/big.bin"), pseudo_random(16 * MIB, 8)).unwrap();
    let mut server = w.serve(&[]);
    let mut cmd = common::minitls(w.path());
    cmd.args([
        "-q",
        "fetch",
        "big.bin",
        "--out",
        "small",
        "--server",
        &server.addr,
    ]);
    let o = Proc::spawn(cmd, &w, "client").finish(CLIENT_LIMIT);
    a_local_write_error_left_nothing(&o, &small, "no space left on device", &w, &mut server);
}

#[test]
fn an_upload_to_a_full_server_disk_is_refused_cleanly_and_leaves_nothing() {
    let w = Workspace::new();
    let uploads = w.join("server_public/uploads");
    let _mounted = match Tmpfs::mount(&uploads, "4m") {
        Ok(m) => m,
        Err(why) => {
            eprintln!("note: skipping the server-side ENOSPC variant, cannot mount a tmpfs: {why}");
            return;
        }
    };
    fs::write(
        w.join("policy.toml"),
        "[[grant]]\nclients = [\"*\"]\nread = [\".\"]\nwrite = [\"uploads\"]\n",
    )
    .unwrap();
    fs::write(w.join("big.bin"), pseudo_random(16 * MIB, 11)).unwrap();
    fs::write(w.join("small.bin"), pseudo_random(1000, 12)).unwrap();
    let mut server = w.serve(&["--policy", "policy.toml"]);
    let push = |file: &str| {
        let mut cmd = common::minitls(w.path());
        cmd.args([
            "-q",
            "push",
            file,
            "--to",
            "uploads",
            "--server",
            &server.addr,
        ]);
        Proc::spawn(cmd, &w, "client").finish(CLIENT_LIMIT)
    };
    let o = push("big.bin");
    let line = common::fails_with(&o, 5);
    assert!(
        line.contains("uploads/big.bin") && line.contains("no space left on the server"),
        "{line}"
    );
    assert!(
        !line.contains("/tmp") && !line.contains("os error"),
        "{line}"
    );
    assert_eq!(walk(&uploads), Vec::<(String, u64)>::new(), "nothing left");
    // The server goes on; once there is room, an upload lands.
    ok(&push("small.bin"));
    assert_eq!(
        fs::read(uploads.join("small.bin")).unwrap(),
        pseudo_random(1000, 12)
    );
    assert!(server.is_running(), "{}", server.log());
    assert_no_panic(&server.log());
}

// ---------------------------------------------------------------------------------------------
// 4. Files the server cannot read
// ---------------------------------------------------------------------------------------------

/// The uid and gid of `nobody`, which the server runs as when the tests run as root (root
/// reads files whatever their mode).
const NOBODY: u32 = 65534;

fn running_as_root() -> bool {
    let o = Command::new("id").arg("-u").output().expect("id(1) runs");
    String::from_utf8_lossy(&o.stdout).trim() == "0"
}

fn chown_tree(p: &Path, uid: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(uid)).unwrap();
    if fs::symlink_metadata(p).unwrap().is_dir() {
        for e in fs::read_dir(p).unwrap() {
            chown_tree(&e.unwrap().path(), uid);
        }
    }
}

fn mkfifo(p: &Path) {
    let status = Command::new("mkfifo")
        .arg(p)
        .status()
        .expect("mkfifo(1) runs");
    assert!(status.success(), "mkfifo {}", p.display());
}

#[test]
fn files_the_server_cannot_read_are_refused_cleanly_and_the_server_goes_on() {
    let w = Workspace::new();
    let public = w.join("server_public");
    let other = pseudo_random(MIB + 5, 9);
    fs::write(public.join("secret.bin"), pseudo_random(MIB, 10)).unwrap();
    fs::write(public.join("other.bin"), &other).unwrap();
    mkfifo(&public.join("pipe"));
    let t = public.join("tree");
    fs::create_dir_all(t.join("locked")).unwrap();
    fs::write(t.join("ok.txt"), "readable\n").unwrap();
    fs::write(t.join("secret.bin"), "hidden\n").unwrap();
    fs::write(t.join("locked/inside.txt"), "hidden\n").unwrap();
    mkfifo(&t.join("pipe"));

    let as_root = running_as_root();
    if as_root {
        if let Err(e) = Command::new("true").uid(NOBODY).gid(NOBODY).status() {
            eprintln!("note: skipping: running as root and cannot switch to uid {NOBODY}: {e}");
            return;
        }
        // Everything the server needs belongs to nobody; the mode-000 files stay unreadable
        // even to their owner.
        chown_tree(w.path(), NOBODY);
    }
    for p in [
        public.join("secret.bin"),
        t.join("secret.bin"),
        t.join("locked"),
    ] {
        fs::set_permissions(&p, fs::Permissions::from_mode(0o000)).unwrap();
    }
    if !as_root && File::open(public.join("secret.bin")).is_ok() {
        eprintln!("note: skipping: this user reads mode-000 files (capabilities?)");
        return;
    }
    let mut server = Server::start_with(w.path(), &[], |cmd| {
        if as_root {
            cmd.uid(NOBODY).gid(NOBODY);
        }
    });
    let out = w.join("client_received");

    // A single file: one line naming it and the reason; nothing written.
    let line = fails(&w.run(&["fetch", "secret.bin", "--server", &server.addr]));
    assert!(line.contains("secret.bin"), "{line}");
    assert!(line.to_lowercase().contains("permission denied"), "{line}");
    assert_eq!(walk(&out), Vec::<(String, u64)>::new());

    // A FIFO is not served (and does not block the server's thread).
    let line = fails(&w.run(&["fetch", "pipe", "--server", &server.addr]));
    assert!(line.contains("'pipe' is not a regular file"), "{line}");
    assert_eq!(walk(&out), Vec::<(String, u64)>::new());

    // The server is unaffected: the next fetch brings the right bytes.
    assert_eq!(
        ok(&w.run(&["-q", "fetch", "other.bin", "--server", &server.addr])),
        "client_received/other.bin\n"
    );
    assert!(fs::read(out.join("other.bin")).unwrap() == other);

    // In a tree, what cannot be read is skipped and reported, the rest arrives signed.
    let o = w.run(&["-q", "fetch", "-r", "tree", "--server", &server.addr]);
    // In place and verified, but not whole: exit status 8 (SPEC 1.1).
    assert_eq!(o.status.code(), Some(8), "{}", stderr(&o));
    assert_eq!(common::stdout(&o), "client_received/tree\n");
    let err = stderr(&o);
    assert!(err.contains("skipped secret.bin: cannot open:"), "{err}");
    assert!(err.contains("skipped pipe: not a regular file"), "{err}");
    assert!(err.contains("skipped locked"), "{err}");
    // The server says what failed, never where it keeps its files or the OS's error numbers.
    let served = fs::canonicalize(&public).unwrap();
    assert!(
        !err.contains(&served.display().to_string()) && !err.contains("os error"),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(out.join("tree/ok.txt")).unwrap(),
        "readable\n"
    );
    assert!(!out.join("tree/secret.bin").exists());
    assert!(!out.join("tree/pipe").exists());
    assert!(!out.join("tree/locked/inside.txt").exists());
    ok(&w.run(&["verify", "client_received/tree"]));

    assert!(server.is_running(), "{}", server.log());
    assert_no_panic(&server.log());
}

// ---------------------------------------------------------------------------------------------
// 5. SIGTERM to the server
// ---------------------------------------------------------------------------------------------

/// Starts a fetch of `big.bin` (written from `data`) and freezes it mid-file.
fn frozen_fetch(w: &Workspace, server: &Server, data: &[u8]) -> Proc {
    let mut client = spawn_fetch(w, server, &["big.bin"], "client");
    freeze_mid_file(
        &mut client,
        &w.join("client_received/.big.bin.minitls-partial"),
        1,
        data.len(),
    );
    client
}

#[test]
fn sigterm_lets_the_transfer_in_flight_finish_refuses_new_clients_and_exits_0() {
    let w = Workspace::new();
    let big = pseudo_random(12 * MIB, 11);
    fs::write(w.join("server_public/big.bin"), &big).unwrap();
    let mut server = w.serve(&[]);
    let client = frozen_fetch(&w, &server, &big);

    send_signal(server.pid(), "TERM");
    assert!(server.wait_for_log("stopping: "), "{}", server.log());
    assert!(
        server.log().contains("1 connection(s) in flight"),
        "{}",
        server.log()
    );
    // The listener is closed before that line is logged: new clients are refused.
    let refused = TcpStream::connect(&server.addr).map(|_| ()).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused, "{refused}");
    let line = fails(&w.run(&[
        "fetch",
        "hello.txt",
        "--out",
        "late",
        "--server",
        &server.addr,
    ]));
    assert!(line.contains("is `minitls serve` running"), "{line}");

    // The transfer in flight completes, correctly, once the client runs again.
    send_signal(client.pid(), "CONT");
    let resumed_at = Instant::now();
    let o = client.finish(Duration::from_secs(20));
    assert_eq!(ok(&o), "client_received/big.bin\n");
    assert!(fs::read(w.join("client_received/big.bin")).unwrap() == big);
    ok(&w.run(&["verify", "client_received/big.bin"]));

    let status = server
        .wait_exit_within(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("the server did not exit:\n{}", server.log()));
    assert_eq!(status.code(), Some(0), "{}", server.log());
    // The log reader thread may still be catching up with the last line.
    assert!(server.wait_for_log(" stopped"), "{}", server.log());
    let log = server.log();
    assert!(log.contains("sent 'big.bin'"), "{log}");
    assert!(log.lines().last().unwrap().ends_with(" stopped"), "{log}");
    assert!(!log.contains("cut off"), "{log}");
    assert_no_panic(&log);
    eprintln!(
        "transfer finished and server exited {:?} after SIGCONT",
        resumed_at.elapsed()
    );
}

#[test]
fn sigterm_on_an_idle_server_exits_0_at_once() {
    let w = Workspace::new();
    let mut server = w.serve(&[]);
    // It has served someone before, and that connection is over.
    ok(&w.run(&["-q", "fetch", "hello.txt", "--server", &server.addr]));
    let start = Instant::now();
    send_signal(server.pid(), "TERM");
    let status = server
        .wait_exit_within(Duration::from_secs(2))
        .unwrap_or_else(|| panic!("the idle server did not exit within 2 s:\n{}", server.log()));
    eprintln!("idle server exited {:?} after SIGTERM", start.elapsed());
    assert_eq!(status.code(), Some(0), "{}", server.log());
    let log = server.log();
    assert!(log.lines().last().unwrap().ends_with(" stopped"), "{log}");
    // The last connection's thread may still be ending when the signal comes (the client has
    // its answer before the server's thread returns), so a "waiting up to" line may appear on
    // a loaded machine; the 2 s bound above is what shows that nothing was waited for.
}

#[test]
fn a_second_signal_while_stopping_exits_at_once() {
    let w = Workspace::new();
    let big = pseudo_random(12 * MIB, 12);
    fs::write(w.join("server_public/big.bin"), &big).unwrap();
    let mut server = w.serve(&[]);
    let client = frozen_fetch(&w, &server, &big);

    send_signal(server.pid(), "TERM");
    assert!(server.wait_for_log("stopping: waiting"), "{}", server.log());
    send_signal(server.pid(), "INT");
    let status = server
        .wait_exit_within(Duration::from_secs(2))
        .unwrap_or_else(|| panic!("a second signal did not stop the server:\n{}", server.log()));
    assert_eq!(status.code(), Some(130), "{}", server.log());

    // For the client that is a network cut: a clean error and at most a prefix partial.
    send_signal(client.pid(), "CONT");
    let o = client.finish(CLIENT_LIMIT);
    let line = fails(&o);
    assert!(line.contains("fetch 'big.bin'"), "{line}");
    only_a_prefix_partial_left(&w.join("client_received"), "big.bin", &big);
}

#[test]
fn sigterm_cuts_off_a_transfer_that_outlives_the_grace_period() {
    let w = Workspace::new();
    let big = pseudo_random(12 * MIB, 13);
    fs::write(w.join("server_public/big.bin"), &big).unwrap();
    let mut server = w.serve(&[]);
    let client = frozen_fetch(&w, &server, &big);

    let start = Instant::now();
    send_signal(server.pid(), "TERM");
    let status = server
        .wait_exit_within(Duration::from_secs(16))
        .unwrap_or_else(|| panic!("the server outlived its grace period:\n{}", server.log()));
    let took = start.elapsed();
    eprintln!("server with a stuck client exited {took:?} after SIGTERM");
    assert!(took >= Duration::from_secs(9), "{took:?}\n{}", server.log());
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(
        server.log().contains("stopped; 1 connection(s) cut off"),
        "{}",
        server.log()
    );

    send_signal(client.pid(), "CONT");
    let o = client.finish(CLIENT_LIMIT);
    fails(&o);
    assert!(!w.join("client_received/big.bin").exists());
    only_a_prefix_partial_left(&w.join("client_received"), "big.bin", &big);
}
