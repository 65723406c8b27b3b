//! `minitls shell [-b BATCH_FILE]`: one authenticated connection, then commands like sftp's
//! (`ls`, `cd`, `get`, `put`, `lcd`, `say`...), typed at a prompt with line editing, history
//! and tab completion of remote and local names, or read from a file or a pipe (batch:
//! the first command that fails ends the session with its exit status).
//!
//! `get` and `put` are the library's `transfer::fetch` and `transfer::push`, the very calls
//! behind `minitls fetch` and `minitls push`: the same signatures, checks, atomic landing,
//! resume, progress bars and summaries.
//!
//! While the shell waits (at its prompt, or for the next batch line), a keeper thread sends a
//! Ping about every second: the server's idle timeout sees a live session, and the Pong
//! brings the operator's messages (`say ID TEXT`) and, if the operator dropped us or the
//! session reached the server's `--max-session`, the Goodbye that says so.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use minitls::conn::Channel;
use minitls::control::check_say_text;
use minitls::handshake::LocalIdentity;
use minitls::net::TcpTransport;
use minitls::paths;
use minitls::pki::{self, Role};
use minitls::transfer::{self, PushOptions, TransferError};
use minitls::wire::{AppMessage, EntryKind, ListEntry, TextMsg, escape_text};

use super::args::{ServerArgs, ShellArgs};
use super::error::{CliError, CliResult, exit, note, out, printable};
use super::fetch::{count, file_summary, size_time_rate, tree_summary};
use super::progress::{Bars, human_bytes};
use super::{Global, connect, creds, describe_transfer_error, iso_utc};

/// How often the keeper polls the server while the shell waits.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// `minitls shell --help` ends with the commands.
pub const HELP_AFTER: &str = concat!(
    "Commands at the prompt (or in a batch):\n",
    "ls [-l] [PATH]  cd [PATH]  pwd  get [-r] [-a] PATH [LOCAL]  put [-r] [-f] LOCAL [REMOTE_DIR]\n",
    "lcd [DIR]  lls [-l] [DIR]  lpwd  say TEXT  help  exit\n",
    "`help` at the prompt says more. A batch stops at the first command that fails, with its\n",
    "exit status (see `minitls --help`)."
);

/// The help text of the shell's commands.
const HELP: &str = "\
ls [-l] [PATH]            list a remote directory (-l: type, size, time)
cd [PATH]                 change the remote directory (no PATH: the top)
pwd                       print the remote directory
get [-r] [-a] PATH [LOCAL]  fetch a file (-r: a directory tree; -a: resume a cut one) into
                          the local directory, or as LOCAL (a file name or a directory)
put [-r] [-f] LOCAL [REMOTE_DIR]  upload a file (-r: a tree; -f: replace) into the remote
                          directory, or into REMOTE_DIR (needs a write grant)
lcd [DIR]                 change the local directory (no DIR: the home directory)
lls [-l] [DIR]            list a local directory
lpwd                      print the local directory
say TEXT                  show TEXT to the server's operator (at most 1024 bytes)
help                      this list
exit, quit, bye           end the session (also Ctrl-D)";

/// What the connection and the keeper thread share.
struct Shared {
    chan: Mutex<Channel<TcpTransport>>,
    /// The last time the channel carried anything (the keeper polls only after a quiet
    /// second).
    last_used: Mutex<Instant>,
    /// Set once the session is over: the exit status and why.
    ended: Mutex<Option<(u8, String)>>,
    /// Tells the keeper to stop.
    done: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The keeper and the shell update these in single steps; a poisoned lock is still sound.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn chan(&self) -> MutexGuard<'_, Channel<TcpTransport>> {
        let g = lock(&self.chan);
        *lock(&self.last_used) = Instant::now();
        g
    }

    fn ended(&self) -> Option<(u8, String)> {
        lock(&self.ended).clone()
    }

    fn end(&self, code: u8, why: String) {
        lock(&self.ended).get_or_insert((code, why));
    }
}

/// Why a poll did not end with a Pong.
enum PollError {
    /// The server ended the session (Goodbye, or its Close when stopping).
    Ended(String),
    Transfer(TransferError),
}

/// Sends a Ping (or a Say with `said`) and reads up to the Pong; returns the operator's
/// messages that came before it.
fn poll(chan: &mut Channel<TcpTransport>, said: Option<&str>) -> Result<Vec<String>, PollError> {
    let msg = match said {
        Some(text) => AppMessage::Say(TextMsg {
            text: text.to_string(),
        }),
        None => AppMessage::Ping,
    };
    let conn = |e: minitls::conn::ConnError| PollError::Transfer(e.into());
    chan.send_app(&msg).map_err(conn)?;
    chan.flush().map_err(conn)?;
    let mut notices = Vec::new();
    loop {
        match chan.recv_app().map_err(conn)? {
            AppMessage::Notice(n) => notices.push(n.text),
            AppMessage::Pong => return Ok(notices),
            AppMessage::Goodbye(alert) => {
                return Err(PollError::Ended(format!(
                    "the server ended the session: {alert}"
                )));
            }
            AppMessage::Close => {
                return Err(PollError::Ended(
                    "the server closed the session (it is stopping)".into(),
                ));
            }
            other => {
                return Err(PollError::Transfer(TransferError::Protocol(format!(
                    "got {:?} while waiting for the answer to a keep-alive",
                    other.typ()
                ))));
            }
        }
    }
}

/// How an operator's message is shown: who sent it, and its text escaped.
fn notice_line(text: &str) -> String {
    format!(
        "minitls: message from the server's operator: {}",
        escape_text(text)
    )
}

/// Polls while the shell waits; shows what arrives with `show`. When the session ends,
/// records why and, in batch mode (no terminal to restore), ends the process with its status
/// at once: the batch may be waiting for input that never comes.
fn keeper(shared: Arc<Shared>, mut show: Box<dyn FnMut(String) + Send>, batch: bool) {
    while !shared.done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        if lock(&shared.last_used).elapsed() < POLL_INTERVAL {
            continue;
        }
        // Busy with a command: it is using the connection, no keep-alive needed.
        let Ok(mut chan) = shared.chan.try_lock() else {
            continue;
        };
        if shared.done.load(Ordering::SeqCst) || shared.ended().is_some() {
            return;
        }
        let result = poll(&mut chan, None);
        *lock(&shared.last_used) = Instant::now();
        drop(chan);
        let (code, why) = match result {
            Ok(notices) => {
                for n in notices {
                    show(notice_line(&n));
                }
                continue;
            }
            Err(PollError::Ended(why)) => (exit::UNREACHABLE, why),
            Err(PollError::Transfer(e)) => (
                exit::UNREACHABLE,
                format!("the connection to the server was lost: {e}"),
            ),
        };
        if batch {
            note(&format!("error: {why}"));
            std::process::exit(i32::from(code));
        }
        show(format!("minitls: {why} (press Enter to leave)"));
        shared.end(code, why);
        return;
    }
}

/// What the command wants next.
enum Next {
    Continue,
    Exit,
}

/// One shell session.
struct Shell {
    shared: Arc<Shared>,
    /// The remote directory, relative to the served root, `/`-separated, no leading `/`.
    cwd: Arc<Mutex<String>>,
    identity: Arc<LocalIdentity>,
    server: ServerArgs,
    global: Global,
}

pub fn run(args: &ShellArgs, global: Global) -> CliResult<()> {
    // 1. Where the commands come from: -b FILE, a pipe, or a person at a terminal.
    let batch: Option<Box<dyn BufRead>> = match &args.batch {
        Some(p) if p.as_os_str() == "-" => Some(Box::new(std::io::stdin().lock())),
        Some(p) => {
            let f = std::fs::File::open(p).map_err(|e| {
                CliError::usage(format!("-b {}: {e}; name a file of commands", p.display()))
            })?;
            Some(Box::new(std::io::BufReader::new(f)))
        }
        None if !std::io::stdin().is_terminal() => Some(Box::new(std::io::stdin().lock())),
        None => None,
    };
    // 2. One authenticated connection, checked before the first prompt.
    let creds = creds::load(&args.creds, Role::Client, global.quiet)?;
    let identity = creds.identity.clone();
    let me = pki::summarize_certificate_der(&identity.cert_der)
        .map(|s| s.common_name)
        .unwrap_or_default();
    let mut chan = connect(&args.server, creds, global)?;
    chan.complete_handshake().map_err(|e| {
        describe_transfer_error(
            format!("connect to {}", args.server.server),
            e.into(),
            &args.server,
        )
    })?;
    let shared = Arc::new(Shared {
        chan: Mutex::new(chan),
        // The first poll goes at once: the server knows us as a shell from the start.
        last_used: Mutex::new(
            Instant::now()
                .checked_sub(POLL_INTERVAL)
                .unwrap_or_else(Instant::now),
        ),
        ended: Mutex::new(None),
        done: AtomicBool::new(false),
    });
    let mut shell = Shell {
        shared: shared.clone(),
        cwd: Arc::new(Mutex::new(String::new())),
        identity,
        server: ServerArgs {
            server: args.server.server.clone(),
            server_name: args.server.server_name.clone(),
            session_cache: args.server.session_cache.clone(),
            no_session_cache: args.server.no_session_cache,
        },
        global,
    };
    // Ctrl-C during a get (the prompt itself reads Ctrl-C as a key): as with fetch, a tree
    // half-received is removed and a single file's data kept for `get -a`, then exit 130.
    super::fetch::on_interrupt(None, None);
    let host = super::args::split_host_port(&args.server.server).0;
    let result = match batch {
        Some(lines) => {
            let show = Box::new(|line: String| eprintln!("{line}"));
            let s = shared.clone();
            std::thread::spawn(move || keeper(s, show, true));
            shell.batch(lines)
        }
        None => shell.interactive(&me, &host),
    };
    shared.done.store(true, Ordering::SeqCst);
    if shared.ended().is_none() {
        // Our Close: the server logs a clean end, not a cut connection.
        let _ = transfer::close(&mut shared.chan());
    }
    result
}

impl Shell {
    /// Runs each line in turn; the first failure ends the batch with its exit status.
    fn batch(&mut self, lines: Box<dyn BufRead>) -> CliResult<()> {
        for line in lines.lines() {
            let line = line.map_err(|e| CliError::new(format!("reading the batch: {e}")))?;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if !self.global.quiet {
                note(&format!("> {line}"));
            }
            match self.exec(line) {
                Ok(Next::Continue) => {}
                Ok(Next::Exit) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The prompt, line editing, history and completion (rustyline).
    fn interactive(&mut self, me: &str, host: &str) -> CliResult<()> {
        use rustyline::error::ReadlineError;
        let config = rustyline::Config::builder()
            .auto_add_history(true)
            .completion_type(rustyline::CompletionType::List)
            .build();
        let mut rl: rustyline::Editor<Completion, rustyline::history::DefaultHistory> =
            rustyline::Editor::with_config(config)
                .map_err(|e| CliError::new(format!("cannot use the terminal: {e}")))?;
        rl.set_helper(Some(Completion {
            shared: self.shared.clone(),
            cwd: self.cwd.clone(),
        }));
        let show: Box<dyn FnMut(String) + Send> = match rl.create_external_printer() {
            Ok(mut p) => Box::new(move |line: String| {
                let _ = rustyline::ExternalPrinter::print(&mut p, format!("{line}\n"));
            }),
            Err(_) => Box::new(|line: String| eprintln!("{line}")),
        };
        let s = self.shared.clone();
        std::thread::spawn(move || keeper(s, show, false));
        note(&format!(
            "connected to {} as '{}'; `help` lists the commands",
            self.server.server,
            printable(me)
        ));
        loop {
            if let Some((code, why)) = self.shared.ended() {
                return Err(CliError::with_code(code, why));
            }
            let prompt = format!(
                "minitls {}@{host}:/{}> ",
                printable(me),
                printable(&lock(&self.cwd))
            );
            match rl.readline(&prompt) {
                Ok(line) => {
                    if let Some((code, why)) = self.shared.ended() {
                        return Err(CliError::with_code(code, why));
                    }
                    match self.exec(line.trim()) {
                        Ok(Next::Continue) => {}
                        Ok(Next::Exit) => return Ok(()),
                        Err(e) => {
                            super::error::report(&e);
                            if self.shared.ended().is_some() {
                                return Err(CliError::Reported(e.exit_status()));
                            }
                        }
                    }
                }
                // Ctrl-C clears the line, as in a shell.
                Err(ReadlineError::Interrupted) => {}
                Err(ReadlineError::Eof) => return Ok(()),
                Err(e) => return Err(CliError::new(format!("reading a command: {e}"))),
            }
        }
    }

    /// Runs one command line.
    fn exec(&mut self, line: &str) -> CliResult<Next> {
        if let Some((_, why)) = self.shared.ended() {
            return Err(CliError::with_code(exit::UNREACHABLE, why));
        }
        let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        // `say` takes the rest of the line as it is; everything else is words.
        if word == "say" {
            self.say(rest.trim())?;
            return Ok(Next::Continue);
        }
        let words = split_words(rest).map_err(CliError::usage)?;
        let (flags, args): (Vec<&str>, Vec<&str>) = words
            .iter()
            .map(String::as_str)
            .partition(|w| w.starts_with('-') && w.len() > 1);
        let allow = |ok: &[&str], max_args: usize| -> CliResult<()> {
            if let Some(f) = flags.iter().find(|f| !ok.contains(f)) {
                return Err(CliError::usage(format!(
                    "{word}: unknown option {f}; `help` lists the commands"
                )));
            }
            if args.len() > max_args {
                return Err(CliError::usage(format!(
                    "{word}: too many arguments; `help` lists the commands"
                )));
            }
            Ok(())
        };
        let has = |f: &str| flags.contains(&f);
        match word {
            "" => {}
            "ls" | "dir" => {
                allow(&["-l"], 1)?;
                self.ls(args.first().copied().unwrap_or(""), has("-l"))?;
            }
            "cd" => {
                allow(&[], 1)?;
                self.cd(args.first().copied().unwrap_or("/"))?;
            }
            "pwd" => {
                allow(&[], 0)?;
                out(&format!("/{}", lock(&self.cwd)))?;
            }
            "get" => {
                allow(&["-r", "-a"], 2)?;
                let Some(remote) = args.first() else {
                    return Err(CliError::usage("usage: get [-r] [-a] PATH [LOCAL]"));
                };
                self.get(remote, args.get(1).copied(), has("-r"), has("-a"))?;
            }
            "put" => {
                allow(&["-r", "-f"], 2)?;
                let Some(local) = args.first() else {
                    return Err(CliError::usage("usage: put [-r] [-f] LOCAL [REMOTE_DIR]"));
                };
                self.put(local, args.get(1).copied(), has("-r"), has("-f"))?;
            }
            "lcd" => {
                allow(&[], 1)?;
                let dir = match args.first() {
                    Some(d) => PathBuf::from(d),
                    None => {
                        std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from)
                    }
                };
                std::env::set_current_dir(&dir).map_err(|e| {
                    CliError::with_code(exit::LOCAL_IO, format!("lcd {}: {e}", dir.display()))
                })?;
            }
            "lpwd" => {
                allow(&[], 0)?;
                let d = std::env::current_dir()
                    .map_err(|e| CliError::with_code(exit::LOCAL_IO, format!("lpwd: {e}")))?;
                out(&d.display().to_string())?;
            }
            "lls" => {
                allow(&["-l"], 1)?;
                lls(Path::new(args.first().copied().unwrap_or(".")), has("-l"))?;
            }
            "help" | "?" => {
                for l in HELP.lines() {
                    out(l)?;
                }
            }
            "exit" | "quit" | "bye" => return Ok(Next::Exit),
            _ => {
                return Err(CliError::usage(format!(
                    "unknown command '{}'; `help` lists the commands",
                    printable(word)
                )));
            }
        }
        Ok(Next::Continue)
    }

    /// `PATH` against the remote directory: `/` starts at the top, `..` goes up (never above
    /// the top), and the result is a canonical relative path ("" is the top).
    fn resolve(&self, path: &str) -> CliResult<String> {
        resolve_remote(&lock(&self.cwd), path).map_err(CliError::usage)
    }

    /// A transfer error as the shell reports it. A refusal leaves the session usable; any
    /// other failure (a cut, altered data, a Goodbye) ends it.
    fn failed(&self, what: String, e: TransferError) -> CliError {
        let keeps = matches!(
            e,
            TransferError::Remote { .. } | TransferError::BadRequestPath { .. }
        );
        let err = describe_transfer_error(what, e, &self.server);
        if !keeps {
            self.shared.end(err.exit_status(), err.to_string());
        }
        err
    }

    fn list(&self, rel: &str) -> CliResult<Vec<ListEntry>> {
        let mut chan = self.shared.chan();
        transfer::list(&mut chan, rel, false).map_err(|e| {
            drop(chan);
            self.failed(format!("ls /{rel}"), e)
        })
    }

    fn ls(&self, path: &str, long: bool) -> CliResult<()> {
        let rel = self.resolve(path)?;
        let entries = self.list(&rel)?;
        let human = std::io::stdout().is_terminal();
        for e in entries {
            let name = e
                .path
                .strip_prefix(&rel)
                .map(|n| n.trim_start_matches('/'))
                .filter(|n| !n.is_empty())
                .unwrap_or(&e.path);
            let dir = if e.kind == EntryKind::Dir { "/" } else { "" };
            if long {
                let size = if human {
                    human_bytes(e.size)
                } else {
                    e.size.to_string()
                };
                let kind = if e.kind == EntryKind::Dir { 'd' } else { '-' };
                out(&format!(
                    "{kind} {size:>12} {} {}{dir}",
                    iso_utc(e.mtime),
                    printable(name)
                ))?;
            } else {
                out(&format!("{}{dir}", printable(name)))?;
            }
        }
        Ok(())
    }

    fn cd(&self, path: &str) -> CliResult<()> {
        let rel = self.resolve(path)?;
        if !rel.is_empty() && !self.is_dir(&rel)? {
            return Err(CliError::with_code(
                exit::REFUSED,
                format!("cd /{rel}: not a directory on the server (or not one you may read)"),
            ));
        }
        *lock(&self.cwd) = rel;
        Ok(())
    }

    /// Whether `rel` (not the top) is a directory the server lists for us.
    fn is_dir(&self, rel: &str) -> CliResult<bool> {
        let parent = rel.rsplit_once('/').map_or("", |(p, _)| p);
        let entries = match self.list(parent) {
            Ok(e) => e,
            Err(CliError::Message(_, code)) if code == exit::REFUSED => return Ok(false),
            Err(e) => return Err(e),
        };
        Ok(entries
            .iter()
            .any(|e| e.kind == EntryKind::Dir && e.path == rel))
    }

    fn get(
        &self,
        remote: &str,
        local: Option<&str>,
        recursive: bool,
        resume: bool,
    ) -> CliResult<()> {
        let rel = self.resolve(remote)?;
        if rel.is_empty() && !recursive {
            return Err(CliError::usage(
                "get /: the top is a directory; use get -r to fetch a tree",
            ));
        }
        // LOCAL: an existing directory to fetch into, or (one file) the name to save as.
        let (out_dir, save_as) = match local {
            None => (PathBuf::from("."), None),
            Some(l) if Path::new(l).is_dir() => (PathBuf::from(l), None),
            Some(_) if recursive => {
                return Err(CliError::usage(format!(
                    "get -r {remote} {}: name an existing local directory to fetch the tree into",
                    local.unwrap_or_default()
                )));
            }
            Some(l) => {
                let p = Path::new(l);
                let name = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .filter(|n| paths::check_component(n).is_ok())
                    .ok_or_else(|| {
                        CliError::usage(format!("get: {l}: name a local file or directory"))
                    })?;
                let dir = match p.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                (dir, Some(name.to_string()))
            }
        };
        let local_name = save_as
            .clone()
            .unwrap_or_else(|| rel.rsplit('/').next().unwrap_or(&rel).to_string());
        let opts = transfer::FetchOptions {
            recursive,
            resume,
            save_as,
            ..Default::default()
        };
        let mut bars = Bars::new(self.global.quiet, &local_name, !recursive, None);
        let started = Instant::now();
        let mut chan = self.shared.chan();
        let result = transfer::fetch(&mut chan, &rel, &out_dir, &opts, &mut bars);
        drop(chan);
        drop(bars);
        let elapsed = started.elapsed();
        let fetched = result.map_err(|e| self.failed(format!("get /{rel}"), e))?;
        match fetched {
            transfer::Fetch::File(f) => {
                out(&f.path.display().to_string())?;
                if !self.global.quiet {
                    note(&file_summary(&rel, &f, elapsed));
                }
            }
            transfer::Fetch::Tree(t) => {
                out(&t.dir.display().to_string())?;
                if !self.global.quiet {
                    note(&tree_summary(&rel, &t, elapsed));
                }
                for (path, reason) in &t.skipped {
                    note(&format!(
                        "skipped {}: {}",
                        printable(path),
                        printable(reason)
                    ));
                }
                if !t.skipped.is_empty() {
                    return Err(CliError::with_code(
                        exit::PARTIAL,
                        format!(
                            "get -r /{rel}: {} skipped; the rest is verified and in place",
                            count(t.skipped.len() as u64, "entry was", "entries were")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn put(
        &self,
        local: &str,
        remote_dir: Option<&str>,
        recursive: bool,
        force: bool,
    ) -> CliResult<()> {
        let to = self.resolve(remote_dir.unwrap_or("."))?;
        let path = Path::new(local);
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() && !recursive => {
                return Err(CliError::usage(format!(
                    "put {local}: a directory; use put -r to upload it and everything under it"
                )));
            }
            Ok(m) if m.is_dir() || m.is_file() => {}
            Ok(_) => {
                return Err(CliError::usage(format!(
                    "put {local}: not a regular file or directory"
                )));
            }
            Err(e) => {
                return Err(CliError::with_code(
                    exit::LOCAL_IO,
                    format!("put {local}: {e}"),
                ));
            }
        }
        let plain = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| paths::check_component(n).is_ok());
        if !plain {
            return Err(CliError::usage(format!(
                "put {local}: name a file or directory by a plain UTF-8 name (not . or ..)"
            )));
        }
        let opts = PushOptions { recursive, force };
        let started = Instant::now();
        let mut bars = Bars::new(self.global.quiet, "", false, None);
        let mut chan = self.shared.chan();
        let result = transfer::push(&mut chan, &self.identity, path, &to, opts, &mut bars);
        drop(chan);
        drop(bars);
        let shown = if to.is_empty() {
            "/".to_string()
        } else {
            format!("/{to}")
        };
        let pushed = result.map_err(|e| self.failed(format!("put {local} {shown}"), e))?;
        out(&format!("/{}", pushed.remote))?;
        for (path, reason) in &pushed.skipped {
            note(&format!(
                "skipped {}: {reason}",
                printable(&path.display().to_string())
            ));
        }
        if !self.global.quiet {
            let what = if pushed.dirs > 0 {
                format!(
                    "{}, {}, ",
                    count(pushed.files, "file", "files"),
                    count(pushed.dirs, "directory", "directories")
                )
            } else {
                String::new()
            };
            note(&format!(
                "{} -> /{}: {what}{}",
                printable(local),
                pushed.remote,
                size_time_rate(pushed.bytes, pushed.bytes, started.elapsed())
            ));
        }
        Ok(())
    }

    fn say(&self, text: &str) -> CliResult<()> {
        check_say_text(text).map_err(|e| CliError::usage(format!("say: {e}")))?;
        let mut chan = self.shared.chan();
        match poll(&mut chan, Some(text)) {
            Ok(notices) => {
                drop(chan);
                for n in notices {
                    eprintln!("{}", notice_line(&n));
                }
                Ok(())
            }
            Err(PollError::Ended(why)) => {
                self.shared.end(exit::UNREACHABLE, why.clone());
                Err(CliError::with_code(exit::UNREACHABLE, why))
            }
            Err(PollError::Transfer(e)) => {
                drop(chan);
                Err(self.failed("say".into(), e))
            }
        }
    }
}

/// `lls [-l] [DIR]`: names sorted, directories with a `/`.
fn lls(dir: &Path, long: bool) -> CliResult<()> {
    let io = |e: std::io::Error| {
        CliError::with_code(exit::LOCAL_IO, format!("lls {}: {e}", dir.display()))
    };
    let mut entries: Vec<(String, std::fs::Metadata)> = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io)? {
        let e = e.map_err(io)?;
        let Ok(m) = e.metadata() else { continue };
        entries.push((e.file_name().to_string_lossy().into_owned(), m));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, m) in entries {
        let slash = if m.is_dir() { "/" } else { "" };
        if long {
            let kind = if m.is_dir() { 'd' } else { '-' };
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs() as i64);
            out(&format!(
                "{kind} {:>12} {} {}{slash}",
                m.len(),
                iso_utc(mtime),
                printable(&name)
            ))?;
        } else {
            out(&format!("{}{slash}", printable(&name)))?;
        }
    }
    Ok(())
}

/// `path` against the remote directory `cwd` (see [`Shell::resolve`]).
fn resolve_remote(cwd: &str, path: &str) -> Result<String, String> {
    let mut parts: Vec<&str> = if path.starts_with('/') {
        Vec::new()
    } else {
        cwd.split('/').filter(|c| !c.is_empty()).collect()
    };
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!(
                        "{path}: goes above the top of the served directory"
                    ));
                }
            }
            c => parts.push(c),
        }
    }
    let joined = parts.join("/");
    paths::parse_relative(&joined, true)
        .map(|p| p.join("/"))
        .map_err(|e| format!("'{}' is not a valid remote path: {e}", printable(path)))
}

/// Splits a command's arguments into words: spaces separate them, and `"..."`, `'...'` and
/// a backslash keep spaces in a name, as in a POSIX shell.
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' | '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some('\\') if c == '"' => match chars.next() {
                            Some(n) => cur.push(n),
                            None => return Err("a backslash at the end of the line".into()),
                        },
                        Some(o) => cur.push(o),
                        None => return Err(format!("a {c} is not closed")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(n) => cur.push(n),
                    None => return Err("a backslash at the end of the line".into()),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// A name as typed back on the command line: spaces and quotes escaped with a backslash.
fn quote_word(name: &str) -> String {
    let mut s = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_whitespace() || matches!(c, '\'' | '"' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

/// Tab completion: remote names for the remote arguments (`ls`, `cd`, `get`'s PATH,
/// `put`'s REMOTE_DIR), local names for the local ones (`lcd`, `lls`, `get`'s LOCAL, `put`'s
/// LOCAL), command names for the first word.
struct Completion {
    shared: Arc<Shared>,
    cwd: Arc<Mutex<String>>,
}

const COMMANDS: &[&str] = &[
    "bye", "cd", "exit", "get", "help", "lcd", "lls", "lpwd", "ls", "put", "pwd", "quit", "say",
];

impl Completion {
    /// Remote names under the directory part of `word` that start with its last part.
    fn remote(&self, word: &str) -> Vec<(String, bool)> {
        let (dir, _) = word.rsplit_once('/').unwrap_or(("", word));
        let dir_typed = if word.contains('/') {
            format!("{dir}/")
        } else {
            String::new()
        };
        let cwd = lock(&self.cwd).clone();
        let Ok(rel) = resolve_remote(
            &cwd,
            if dir_typed.is_empty() {
                "."
            } else {
                &dir_typed
            },
        ) else {
            return Vec::new();
        };
        // The keeper may hold the channel for a moment; a busy channel completes nothing.
        let Ok(mut chan) = self.shared.chan.try_lock() else {
            return Vec::new();
        };
        if self.shared.ended().is_some() {
            return Vec::new();
        }
        let listed = transfer::list(&mut chan, &rel, false);
        *lock(&self.shared.last_used) = Instant::now();
        match listed {
            Ok(entries) => entries
                .into_iter()
                .filter_map(|e| {
                    let name = e.path.rsplit('/').next()?.to_string();
                    Some((format!("{dir_typed}{name}"), e.kind == EntryKind::Dir))
                })
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Local names under the directory part of `word`.
    fn local(word: &str) -> Vec<(String, bool)> {
        let (dir_typed, dir) = match word.rsplit_once('/') {
            Some((d, _)) => (
                format!("{d}/"),
                if d.is_empty() {
                    "/".to_string()
                } else {
                    d.to_string()
                },
            ),
            None => (String::new(), ".".to_string()),
        };
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        rd.filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
                Some((format!("{dir_typed}{name}"), is_dir))
            })
            .collect()
    }
}

impl rustyline::completion::Completer for Completion {
    type Candidate = rustyline::completion::Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Self::Candidate>)> {
        let before = &line[..pos];
        // The word being completed starts after the last unescaped space.
        let start = before
            .char_indices()
            .rfind(|&(i, c)| c == ' ' && !before[..i].ends_with('\\'))
            .map(|(i, _)| i + 1)
            .unwrap_or(0);
        let typed = before[start..].replace('\\', "");
        let words = split_words(&before[..start]).unwrap_or_default();
        let pair = |(name, dir): (String, bool)| rustyline::completion::Pair {
            display: name.rsplit('/').next().unwrap_or(&name).to_string()
                + if dir { "/" } else { "" },
            replacement: quote_word(&name) + if dir { "/" } else { " " },
        };
        let mut candidates: Vec<(String, bool)> = match words.first().map(String::as_str) {
            None => COMMANDS.iter().map(|c| (c.to_string(), false)).collect(),
            Some(cmd) => {
                let nth = words.iter().skip(1).filter(|w| !w.starts_with('-')).count();
                let remote = match cmd {
                    "ls" | "dir" | "cd" => true,
                    "get" => nth == 0,
                    "put" => nth >= 1,
                    "lcd" | "lls" => false,
                    _ => return Ok((start, Vec::new())),
                };
                if remote {
                    self.remote(&typed)
                } else {
                    Self::local(&typed)
                }
            }
        };
        candidates.retain(|(n, _)| n.starts_with(&typed));
        candidates.sort();
        Ok((start, candidates.into_iter().map(pair).collect()))
    }
}

impl rustyline::hint::Hinter for Completion {
    type Hint = String;
}
impl rustyline::highlight::Highlighter for Completion {}
impl rustyline::validate::Validator for Completion {}
impl rustyline::Helper for Completion {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_paths_resolve_against_the_remote_directory_and_never_above_the_top() {
        assert_eq!(resolve_remote("", "docs").unwrap(), "docs");
        assert_eq!(resolve_remote("docs", "a.txt").unwrap(), "docs/a.txt");
        assert_eq!(resolve_remote("docs/sub", "..").unwrap(), "docs");
        assert_eq!(resolve_remote("docs", "/").unwrap(), "");
        assert_eq!(resolve_remote("docs", "/x/./y").unwrap(), "x/y");
        assert!(resolve_remote("", "..").is_err());
        assert!(resolve_remote("docs", "../..").is_err());
    }

    #[test]
    fn words_split_on_spaces_and_keep_quoted_or_escaped_ones() {
        assert_eq!(split_words("a  b").unwrap(), ["a", "b"]);
        assert_eq!(
            split_words("'a b' \"c d\" e\\ f").unwrap(),
            ["a b", "c d", "e f"]
        );
        assert_eq!(split_words("").unwrap(), Vec::<String>::new());
        assert!(split_words("'open").is_err());
        assert_eq!(quote_word("a b's"), "a\\ b\\'s");
    }

    #[test]
    fn an_operators_message_is_shown_escaped() {
        let line = notice_line("hi\u{1b}[2J\u{9b}");
        assert!(line.ends_with("hi\\x1b[2J\\x9b"), "{line}");
        assert!(!line.contains('\u{1b}'));
    }
}
