//! Helpers for end-to-end tests of the real `minitls` binary: a temporary working directory
//! with credentials copied from a CA made once per test binary, and servers on 127.0.0.1 with
//! an ephemeral port that are killed when the test ends.

#![allow(dead_code)] // each test binary uses a different subset

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a server may take to print its `serving` line (it may be generating keys).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

pub const HELLO: &str = "Hello from minitls!\nThis file travelled encrypted and signed.\n";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_minitls")
}

/// A `minitls` command run in `dir`, with no stdin, none of the MINITLS_* variables a
/// developer's shell might have set, and XDG_CONFIG_HOME pointed into `dir` (so the developer's
/// own `~/.config/minitls/config.toml` is never read), and XDG_CACHE_HOME into `dir` too (its
/// session tickets stay in the test's directory).
pub fn minitls(dir: &Path) -> Command {
    clean_command(bin(), dir)
}

/// `program` run in `dir` with no stdin, without the MINITLS_* and backtrace variables and with
/// XDG_CONFIG_HOME=`dir`/.config (for wrappers such as `sh -c '...; exec minitls ...'`).
pub fn clean_command(program: impl AsRef<std::ffi::OsStr>, dir: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(dir).stdin(Stdio::null());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MINITLS_") {
            cmd.env_remove(key);
        }
    }
    cmd.env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .env("XDG_CONFIG_HOME", dir.join(".config"))
        .env("XDG_CACHE_HOME", dir.join(".cache"));
    cmd
}

/// Runs `minitls ARGS` in `dir` and returns its output.
pub fn run(dir: &Path, args: &[&str]) -> Output {
    minitls(dir)
        .args(args)
        .output()
        .expect("the minitls binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout.
#[track_caller]
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "expected success, got {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

/// Asserts the failure shape every error must have: exit status 1, exactly one line on stderr
/// of the form `minitls: error: ...`, and no panic text. Returns that line.
/// Like [`fails`], with exactly the exit status `code` (SPEC §1.1).
#[track_caller]
pub fn fails_with(o: &Output, code: i32) -> String {
    assert_eq!(o.status.code(), Some(code), "stderr: {}", stderr(o));
    fails(o)
}

#[track_caller]
pub fn fails(o: &Output) -> String {
    let err = stderr(o);
    assert!(
        matches!(o.status.code(), Some(1..=8)),
        "expected an exit status of SPEC 1.1 (1-8), got {:?}\nstdout: {}\nstderr: {err}",
        o.status.code(),
        stdout(o)
    );
    assert_no_panic(&err);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("minitls: error:"))
        .collect();
    assert_eq!(lines.len(), 1, "expected one error line, got:\n{err}");
    assert!(
        err.lines().last() == Some(lines[0]),
        "the error must be the last line on stderr:\n{err}"
    );
    lines[0].to_string()
}

#[track_caller]
pub fn assert_no_panic(text: &str) {
    for bad in [
        "panicked",
        "RUST_BACKTRACE",
        "internal error",
        "stack backtrace",
    ] {
        assert!(
            !text.contains(bad),
            "panic text ({bad}) reached the user:\n{text}"
        );
    }
}

/// A CA made by `minitls ca init --key-bits 2048` into a directory that lives as long as the
/// test binary; `ca_template(0)` and `ca_template(1)` are two unrelated CAs.
///
/// Statics are never dropped, so the templates live under cargo's per-target temporary
/// directory rather than in /tmp.
pub fn ca_template(which: usize) -> &'static Path {
    static TEMPLATES: [OnceLock<(TempDir, PathBuf)>; 2] = [OnceLock::new(), OnceLock::new()];
    let (_, ca) = TEMPLATES[which].get_or_init(|| {
        let t = tempfile::Builder::new()
            .prefix("ca-template-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("a temporary directory");
        let o = run(
            t.path(),
            &["ca", "init", "--key-bits", "2048", "--dir", "ca"],
        );
        ok(&o);
        let ca = t.path().join("ca");
        (t, ca)
    });
    ca
}

/// Copies the files of directory `from` into `to` (created), keeping permissions.
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// A working directory for one test: `ca/` from the shared template (unless empty) and
/// `server_public/hello.txt`.
pub struct Workspace {
    pub tmp: TempDir,
}

impl Workspace {
    /// With `ca/` copied from CA template 0.
    pub fn new() -> Self {
        let w = Self::without_ca();
        copy_dir(ca_template(0), &w.path().join("ca"));
        w
    }

    /// With no `ca/` at all.
    pub fn without_ca() -> Self {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let public = tmp.path().join("server_public");
        fs::create_dir(&public).unwrap();
        fs::write(public.join("hello.txt"), HELLO).unwrap();
        Self { tmp }
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }

    pub fn run(&self, args: &[&str]) -> Output {
        run(self.path(), args)
    }

    /// Starts `minitls serve ARGS --listen 127.0.0.1:0` here.
    pub fn serve(&self, args: &[&str]) -> Server {
        Server::start(self.path(), args)
    }
}

/// A running `minitls serve`; killed and reaped on drop. Its stderr is collected.
pub struct Server {
    child: Child,
    pub addr: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn start(dir: &Path, args: &[&str]) -> Server {
        Self::start_with(dir, args, |_| {})
    }

    /// Like [`Server::start`], with `adjust` applied to the command before it is spawned
    /// (for example to run the server under another uid).
    pub fn start_with(dir: &Path, args: &[&str], adjust: impl FnOnce(&mut Command)) -> Server {
        let mut cmd = minitls(dir);
        cmd.arg("serve")
            .args(args)
            .args(["--listen", "127.0.0.1:0"]);
        adjust(&mut cmd);
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("minitls serve starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        // Keep draining stderr for the server's whole life so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let addr = line
                    .strip_prefix("minitls: serving ")
                    .and_then(|rest| rest.rsplit_once(" on "))
                    .map(|(_, addr)| addr.to_string());
                // Logged before announced, so a test that got the address also sees the line.
                sink.lock().unwrap().push(line);
                if let Some(addr) = addr {
                    let _ = tx.send(addr);
                }
            }
        });
        let mut server = Server {
            child,
            addr: String::new(),
            log,
        };
        match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(addr) => server.addr = addr,
            Err(_) => panic!(
                "the server did not print its serving line; stderr:\n{}",
                server.log()
            ),
        }
        server
    }

    /// Everything the server printed on stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits until the server log contains `needle` (it is written asynchronously).
    pub fn wait_for_log(&self, needle: &str) -> bool {
        self.wait_for_log_within(needle, Duration::from_secs(10))
    }

    /// Waits at most `limit` for the server log to contain `needle`.
    pub fn wait_for_log_within(&self, needle: &str, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The server's process id, to send it signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits at most `limit` for the server to exit and returns its status, or `None` if it
    /// is still running.
    pub fn wait_exit_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("the server can be waited for") {
                return Some(status);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// Sends signal `name` (`TERM`, `STOP`, `CONT`, ...) to process `pid` with kill(1).
pub fn send_signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .status()
        .expect("kill(1) runs");
    assert!(status.success(), "kill -s {name} {pid} failed");
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
