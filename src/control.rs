//! The server's operator side (issue 15): a registry of the authenticated connections, the
//! commands that act on them (`clients`, `drop ID`, `say ID TEXT`, `stop`), and the Unix
//! control socket that takes those commands from `minitls admin`.
//!
//! How a connection is told to end while its thread is blocked: only the connection's own
//! thread holds the channel's keys, so only it can send the (encrypted, authenticated)
//! Goodbye that tells the client why. Each connection's transport ([`crate::net::TcpTransport`]
//! with a [`ConnControl`]) reads in slices of [`WATCH_INTERVAL`] and, between slices and
//! before each write of whole records, asks [`ConnControl::ending`] whether the operator
//! dropped it, the server is stopping, or it is past `--max-session`. If so the read or write
//! fails, the request loop returns, and the thread sends the Goodbye on a channel that is
//! still record-aligned (writes are refused before a buffer of whole records starts, never
//! in its middle). The socket is never shut down under the thread, so the reason is never
//! lost to a reset. The idle timeout and deadlines keep their meaning: the slices add up.
//!
//! Messages from the operator (`say ID TEXT`) wait in the connection's mailbox until its
//! client (a `minitls shell`) next sends a Ping, which it does every second while it waits
//! at its prompt: a server never sends anything unasked between answers, so a request and a
//! message can never cross on the wire.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::audit::{Peer, json_string};
use crate::wire::{Alert, MAX_SAY_LEN, escape_text};

/// How often a connection's thread looks at its [`ConnControl`] while it waits for bytes.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(200);
/// Default `--max-session`: the longest any connection may last. A working day: a shell
/// left open over lunch survives, one forgotten overnight does not hold a --max-clients place
/// (and its authentication, which a revocation would otherwise only reach at reconnect)
/// forever.
pub const DEFAULT_MAX_SESSION: Duration = Duration::from_secs(8 * 3600);
/// How long a Goodbye (with whatever records were still queued before it) may wait for a
/// client that does not read before the connection is cut instead.
pub const GOODBYE_WRITE_BUDGET: Duration = Duration::from_secs(2);
/// Most operator messages waiting for one connection; more are refused until it polls.
pub const MAX_MAILBOX: usize = 32;
/// Longest command line the control socket reads.
const MAX_COMMAND_LINE: usize = 4096;
/// How long a control-socket client has to send its command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the server ends a connection on its own initiative.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// `drop ID`: the client is told [`Alert::DroppedByOperator`].
    Dropped,
    /// Past `--max-session`: [`Alert::SessionTimeLimit`].
    SessionLimit,
    /// The server stops; an idle shell is told so and the session closed.
    Stopping,
}

impl EndReason {
    /// The alert a Goodbye carries, if this reason has one.
    pub fn alert(self) -> Option<Alert> {
        match self {
            Self::Dropped => Some(Alert::DroppedByOperator),
            Self::SessionLimit => Some(Alert::SessionTimeLimit),
            Self::Stopping => None,
        }
    }

    /// The audit log's operation for it.
    pub fn op(self) -> &'static str {
        match self {
            Self::Dropped => "drop",
            Self::SessionLimit => "session-limit",
            Self::Stopping => "stop",
        }
    }
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Dropped => "dropped by the operator",
            Self::SessionLimit => "session time limit reached (--max-session)",
            Self::Stopping => "the server is stopping",
        })
    }
}

const END_NONE: u8 = 0;
const END_DROPPED: u8 = 1;
const END_STOPPING: u8 = 2;
/// The Goodbye is being sent: nothing interrupts the thread any more.
const END_SAYING_GOODBYE: u8 = 3;

/// One connection as the operator sees it, shared by its thread, its transport and the
/// registry.
pub struct ConnControl {
    /// The connection id of the audit log.
    pub id: u64,
    pub peer: SocketAddr,
    started: Instant,
    /// Unix seconds at accept.
    since: i64,
    max_session: Option<Duration>,
    end: AtomicU8,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// It has sent a Ping or a Say: a `minitls shell`, which polls for messages.
    interactive: AtomicBool,
    /// A request is being answered (`op` says which).
    busy: AtomicBool,
    op: Mutex<Option<String>>,
    mailbox: Mutex<VecDeque<String>>,
    /// Who it is, once the handshake authenticated it.
    client: OnceLock<Peer>,
    /// A write to the client was abandoned in the middle of a record (it was ending while
    /// the client did not read): no Goodbye can follow.
    torn: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is one step, so a poisoned lock is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ConnControl {
    /// What should end the connection now, if anything. Checked by its transport between
    /// read slices and before writes.
    pub fn ending(&self) -> Option<EndReason> {
        match self.end.load(Ordering::SeqCst) {
            END_DROPPED => Some(EndReason::Dropped),
            END_STOPPING => Some(EndReason::Stopping),
            END_SAYING_GOODBYE => None,
            _ if self
                .max_session
                .is_some_and(|m| self.started.elapsed() >= m) =>
            {
                Some(EndReason::SessionLimit)
            }
            _ => None,
        }
    }

    /// Called by the connection's thread once its request loop returned with an error: if
    /// the server is ending the connection, says why and stops interrupting the thread, so
    /// that it can send the Goodbye.
    pub fn begin_goodbye(&self) -> Option<EndReason> {
        let why = self.ending()?;
        self.end.store(END_SAYING_GOODBYE, Ordering::SeqCst);
        Some(why)
    }

    /// The thread is sending its Goodbye: its writes get only [`GOODBYE_WRITE_BUDGET`]
    /// without progress, not the whole idle timeout.
    pub fn saying_goodbye(&self) -> bool {
        self.end.load(Ordering::SeqCst) == END_SAYING_GOODBYE
    }

    /// See [`ConnControl::is_torn`].
    pub fn mark_torn(&self) {
        self.torn.store(true, Ordering::SeqCst);
    }

    /// A write was abandoned mid-record: the connection can only be cut.
    pub fn is_torn(&self) -> bool {
        self.torn.load(Ordering::SeqCst)
    }

    pub fn count_in(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn count_out(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// A request started (`Some("get docs/a.txt")`) or was answered (`None`).
    pub fn set_op(&self, op: Option<String>) {
        self.busy.store(op.is_some(), Ordering::SeqCst);
        *lock(&self.op) = op;
    }

    /// The client polls for messages (it is a shell).
    pub fn mark_interactive(&self) {
        self.interactive.store(true, Ordering::SeqCst);
    }

    /// Operator messages waiting for this client, oldest first (the mailbox is emptied).
    pub fn take_notices(&self) -> Vec<String> {
        lock(&self.mailbox).drain(..).collect()
    }

    /// The authenticated client.
    pub fn client(&self) -> Option<&Peer> {
        self.client.get()
    }
}

/// One line of `clients`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientInfo {
    pub id: u64,
    pub client: Peer,
    pub peer: SocketAddr,
    /// Unix seconds.
    pub since: i64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// What it is doing: `get PATH`, `list PATH`, `put PATH`, or `None` between requests.
    pub op: Option<String>,
    /// A shell (it polls for messages).
    pub shell: bool,
}

impl ClientInfo {
    /// One JSON object: `id`, `client`, `serial`, `peer`, `since` (ISO 8601 UTC),
    /// `bytes_in`, `bytes_out` (as the server counts them: received from and sent to the
    /// client, handshake and record overhead included), `op` (null when idle), `shell`.
    pub fn json(&self) -> String {
        format!(
            "{{\"id\":{},\"client\":{},\"serial\":{},\"peer\":{},\"since\":{},\"bytes_in\":{},\"bytes_out\":{},\"op\":{},\"shell\":{}}}",
            self.id,
            json_string(&self.client.subject),
            json_string(&self.client.serial),
            json_string(&self.peer.to_string()),
            json_string(&crate::pki::format_unix_iso(self.since)),
            self.bytes_in,
            self.bytes_out,
            self.op
                .as_deref()
                .map_or_else(|| "null".into(), json_string),
            self.shell
        )
    }

    /// One line of the text table (see [`CLIENTS_HEADER`]).
    pub fn line(&self) -> String {
        let op = match (&self.op, self.shell) {
            (Some(op), _) => escape_text(op),
            (None, true) => "idle (shell)".into(),
            (None, false) => "idle".into(),
        };
        format!(
            "{:<4} {:<20} {:<18} {:<21} {:<20} {:>10} {:>10}  {op}",
            self.id,
            escape_text(&self.client.subject),
            self.client.serial.get(..16).unwrap_or(&self.client.serial),
            self.peer,
            crate::pki::format_unix_iso(self.since),
            self.bytes_in,
            self.bytes_out,
        )
    }
}

/// The header of the `clients` table.
pub const CLIENTS_HEADER: &str = "ID   CLIENT               SERIAL             PEER                  SINCE                  BYTES IN  BYTES OUT  OPERATION";

/// The authenticated connections of one server, and what its operator may do with them.
pub struct Registry {
    conns: Mutex<BTreeMap<u64, Arc<ConnControl>>>,
    max_session: Option<Duration>,
    stop: Arc<AtomicBool>,
    /// Where a client's `say` is shown (the server's log on its terminal).
    console: Arc<dyn Fn(&str) + Send + Sync>,
}

impl Registry {
    /// `stop` is the flag the accept loop watches; `max_session` bounds every connection's
    /// age (`None`: unbounded, for tests); `console` shows what clients say.
    pub fn new(
        stop: Arc<AtomicBool>,
        max_session: Option<Duration>,
        console: Arc<dyn Fn(&str) + Send + Sync>,
    ) -> Self {
        Self {
            conns: Mutex::new(BTreeMap::new()),
            max_session,
            stop,
            console,
        }
    }

    /// A new connection, not listed until [`Self::authenticated`].
    pub fn open(&self, id: u64, peer: SocketAddr) -> Arc<ConnControl> {
        Arc::new(ConnControl {
            id,
            peer,
            started: Instant::now(),
            since: crate::pki::now_unix(),
            max_session: self.max_session,
            end: AtomicU8::new(END_NONE),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            interactive: AtomicBool::new(false),
            busy: AtomicBool::new(false),
            op: Mutex::new(None),
            mailbox: Mutex::new(VecDeque::new()),
            client: OnceLock::new(),
            torn: AtomicBool::new(false),
        })
    }

    /// The handshake authenticated `client` on `conn`: it is listed from now on.
    pub fn authenticated(&self, conn: &Arc<ConnControl>, client: Peer) {
        let _ = conn.client.set(client);
        lock(&self.conns).insert(conn.id, conn.clone());
    }

    /// The connection ended.
    pub fn close(&self, id: u64) {
        lock(&self.conns).remove(&id);
    }

    /// Shows a client's message on the console: who said it (the handshake's identity) and
    /// the text with its control characters escaped.
    pub fn show_said(&self, conn: &ConnControl, text: &str) {
        let who = conn.client().map_or_else(
            || "an unauthenticated client".to_string(),
            |c| format!("'{}' (serial {})", escape_text(&c.subject), c.serial),
        );
        (self.console)(&format!(
            "conn {} {who} says: {}",
            conn.id,
            escape_text(text)
        ));
    }

    pub fn clients(&self) -> Vec<ClientInfo> {
        lock(&self.conns)
            .values()
            .filter_map(|c| {
                Some(ClientInfo {
                    id: c.id,
                    client: c.client()?.clone(),
                    peer: c.peer,
                    since: c.since,
                    bytes_in: c.bytes_in.load(Ordering::Relaxed),
                    bytes_out: c.bytes_out.load(Ordering::Relaxed),
                    op: lock(&c.op).clone(),
                    shell: c.interactive.load(Ordering::SeqCst),
                })
            })
            .collect()
    }

    fn get(&self, id: u64) -> Result<Arc<ConnControl>, String> {
        lock(&self.conns)
            .get(&id)
            .cloned()
            .ok_or_else(|| format!("no connection {id}; `clients` lists them"))
    }

    /// Ends connection `id`: its thread sends the client a Goodbye saying it was dropped by
    /// the operator, within [`WATCH_INTERVAL`] if it is waiting, or before its next write.
    pub fn drop_conn(&self, id: u64) -> Result<(), String> {
        let c = self.get(id)?;
        // Not over a Goodbye already being said.
        let _ = c
            .end
            .compare_exchange(END_NONE, END_DROPPED, Ordering::SeqCst, Ordering::SeqCst);
        Ok(())
    }

    /// Queues `text` for the shell on connection `id`; it shows at the shell's next poll
    /// (within a second or so while it waits at its prompt).
    pub fn say(&self, id: u64, text: &str) -> Result<(), String> {
        check_say_text(text)?;
        let c = self.get(id)?;
        if !c.interactive.load(Ordering::SeqCst) {
            return Err(format!(
                "connection {id} is not a shell (`minitls shell`); only shells show messages"
            ));
        }
        let mut mailbox = lock(&c.mailbox);
        if mailbox.len() >= MAX_MAILBOX {
            return Err(format!(
                "connection {id} has {MAX_MAILBOX} messages waiting already; try again later"
            ));
        }
        mailbox.push_back(text.to_string());
        Ok(())
    }

    /// Stops the server as SIGTERM does.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.end_idle_shells();
    }

    /// The server is stopping: shells waiting at their prompt are told so and closed at once
    /// (they would otherwise hold the shutdown for its whole grace period); connections
    /// answering a request finish it.
    pub fn end_idle_shells(&self) {
        for c in lock(&self.conns).values() {
            if c.interactive.load(Ordering::SeqCst) && !c.busy.load(Ordering::SeqCst) {
                let _ = c.end.compare_exchange(
                    END_NONE,
                    END_STOPPING,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                );
            }
        }
    }

    /// Runs one operator command (the console's and the control socket's language):
    /// `clients [--json]`, `drop ID`, `say ID TEXT`, `stop`, `help`. Returns the lines to
    /// show, or the error.
    pub fn command(&self, line: &str) -> Result<Vec<String>, String> {
        let line = line.trim();
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim_start();
        let id = |s: &str| -> Result<u64, String> {
            s.parse().map_err(|_| {
                format!(
                    "'{}' is not a connection id; `clients` lists them",
                    escape_text(s)
                )
            })
        };
        match word {
            "clients" => match rest {
                "" => {
                    let mut lines = vec![CLIENTS_HEADER.to_string()];
                    lines.extend(self.clients().iter().map(ClientInfo::line));
                    Ok(lines)
                }
                "--json" => Ok(self.clients().iter().map(ClientInfo::json).collect()),
                _ => Err("usage: clients [--json]".into()),
            },
            "drop" if !rest.is_empty() && !rest.contains(' ') => {
                let n = id(rest)?;
                self.drop_conn(n)?;
                Ok(vec![format!("connection {n} dropped")])
            }
            "drop" => Err("usage: drop ID".into()),
            "say" => {
                let Some((n, text)) = rest.split_once(' ') else {
                    return Err("usage: say ID TEXT".into());
                };
                let n = id(n)?;
                self.say(n, text)?;
                Ok(vec![format!("message queued for connection {n}")])
            }
            "stop" if rest.is_empty() => {
                self.stop();
                Ok(vec!["stopping".into()])
            }
            "help" | "?" => Ok(vec![
                "clients [--json]   the authenticated connections".into(),
                "drop ID            end connection ID (its client is told why)".into(),
                "say ID TEXT        show TEXT in the shell on connection ID".into(),
                "stop               stop the server (as SIGTERM)".into(),
            ]),
            "" => Ok(vec![]),
            _ => Err(format!(
                "unknown command '{}'; `help` lists clients, drop, say, stop",
                escape_text(word)
            )),
        }
    }
}

/// Whether standard input is a terminal of which this process is the foreground job. A
/// background job (`minitls serve &`) that reads its terminal is stopped by SIGTTIN, the whole
/// server with it: the console reads only while this holds.
pub fn stdin_is_foreground_terminal() -> bool {
    let stdin = io::stdin();
    rustix::termios::tcgetpgrp(&stdin).is_ok_and(|pg| pg == rustix::process::getpgrp())
}

/// A `say` text is one line of at most [`MAX_SAY_LEN`] bytes, checked where it is typed.
pub fn check_say_text(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("nothing to say".into());
    }
    if text.len() > MAX_SAY_LEN {
        return Err(format!(
            "the message is {} bytes, more than the {MAX_SAY_LEN} allowed; shorten it",
            text.len()
        ));
    }
    Ok(())
}

/// The listening control socket; the socket file is removed when this is dropped.
pub struct ControlSocket {
    path: PathBuf,
    stop: Arc<AtomicBool>,
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Why the control socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{0} exists and is not a socket; name another path (or remove it)")]
    NotASocket(PathBuf),
    #[error("{0} is in use by another running server; name another path")]
    InUse(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0} was created with mode {1:o}, not 0600; refusing to take commands on it")]
    Mode(PathBuf, u32),
}

/// Listens on the Unix socket `path` (mode 0600, owned by this process's user) and runs each
/// command it receives against `registry` on a thread of its own. A stale socket left by a
/// server that died is replaced; a live one, or any other file, is an error. Connections from
/// another user are refused whatever the file's mode says (their credentials are checked).
pub fn listen(path: &Path, registry: Arc<Registry>) -> Result<ControlSocket, ControlError> {
    let io_err = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => {
            return Err(ControlError::NotASocket(path.to_path_buf()));
        }
        Ok(_) => match UnixStream::connect(path) {
            Ok(_) => return Err(ControlError::InUse(path.to_path_buf())),
            // Nothing answers: a server that died left it.
            Err(_) => std::fs::remove_file(path).map_err(io_err)?,
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    // The socket file is created by bind with the mode the umask leaves: 0600 from the
    // start, so there is no moment at which another user could connect. (The umask is
    // process-wide; serve sets the socket up before it starts serving connections.)
    let old = rustix::process::umask(rustix::fs::Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    rustix::process::umask(old);
    let listener = bound.map_err(io_err)?;
    let mode = std::fs::metadata(path)
        .map_err(io_err)?
        .permissions()
        .mode()
        & 0o777;
    if mode != 0o600 {
        let _ = std::fs::remove_file(path);
        return Err(ControlError::Mode(path.to_path_buf(), mode));
    }
    listener.set_nonblocking(true).map_err(io_err)?;
    let stop = Arc::new(AtomicBool::new(false));
    let thread_stop = stop.clone();
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || accept_commands(listener, registry, thread_stop))
        .map_err(io_err)?;
    Ok(ControlSocket {
        path: path.to_path_buf(),
        stop,
    })
}

fn accept_commands(listener: UnixListener, registry: Arc<Registry>, stop: Arc<AtomicBool>) {
    let me = rustix::process::geteuid();
    while !stop.load(Ordering::SeqCst) {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Err(_) => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let registry = registry.clone();
        // One command at a time is plenty for an operator; a slow client is cut by the
        // timeout, so it cannot hold the socket for long.
        let _ = answer(stream, &registry, me);
    }
}

fn answer(mut stream: UnixStream, registry: &Registry, me: rustix::process::Uid) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(COMMAND_TIMEOUT))?;
    stream.set_write_timeout(Some(COMMAND_TIMEOUT))?;
    let cred = rustix::net::sockopt::socket_peercred(&stream)?;
    if cred.uid != me {
        writeln!(
            stream,
            "error: refused: the control socket takes commands only from the server's own user (uid {}), not uid {}",
            me.as_raw(),
            cred.uid.as_raw()
        )?;
        return Ok(());
    }
    let mut line = Vec::new();
    BufReader::new(io::Read::take(&stream, MAX_COMMAND_LINE as u64))
        .read_until(b'\n', &mut line)?;
    let reply = match std::str::from_utf8(&line) {
        Ok(l) => registry.command(l.trim_end_matches(['\n', '\r'])),
        Err(_) => Err("the command is not UTF-8".into()),
    };
    let mut out = String::new();
    match reply {
        Ok(lines) => {
            for l in lines {
                out.push_str(&l);
                out.push('\n');
            }
            out.push_str("ok\n");
        }
        Err(e) => out.push_str(&format!("error: {e}\n")),
    }
    stream.write_all(out.as_bytes())
}

/// Sends one command to the control socket at `path` and returns the lines of its answer,
/// or the server's error. Used by `minitls admin`.
pub fn send_command(path: &Path, command: &str) -> Result<Result<Vec<String>, String>, io::Error> {
    let mut stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(format!("{command}\n").as_bytes())?;
    let mut lines = Vec::new();
    for line in BufReader::new(stream).lines() {
        let line = line?;
        if line == "ok" {
            return Ok(Ok(lines));
        }
        if let Some(e) = line.strip_prefix("error: ") {
            return Ok(Err(e.to_string()));
        }
        lines.push(line);
    }
    Err(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the server closed the control connection without an answer",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        Registry::new(
            Arc::new(AtomicBool::new(false)),
            None,
            Arc::new(|_: &str| {}),
        )
    }

    fn peer() -> SocketAddr {
        "127.0.0.1:5000".parse().unwrap()
    }

    fn alice() -> Peer {
        Peer {
            subject: "CN=alice".into(),
            serial: "0A".into(),
        }
    }

    #[test]
    fn only_authenticated_connections_are_listed() {
        let r = registry();
        let c = r.open(7, peer());
        assert!(r.clients().is_empty());
        r.authenticated(&c, alice());
        let list = r.clients();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].id, 7);
        assert_eq!(list[0].client, alice());
        r.close(7);
        assert!(r.clients().is_empty());
    }

    #[test]
    fn drop_marks_the_connection_and_begin_goodbye_stops_interrupting_it() {
        let r = registry();
        let c = r.open(1, peer());
        r.authenticated(&c, alice());
        assert_eq!(c.ending(), None);
        r.command("drop 1").unwrap();
        assert_eq!(c.ending(), Some(EndReason::Dropped));
        assert_eq!(c.begin_goodbye(), Some(EndReason::Dropped));
        assert_eq!(
            c.ending(),
            None,
            "the Goodbye itself must not be interrupted"
        );
        assert!(r.command("drop 2").unwrap_err().contains("no connection 2"));
        assert!(
            r.command("drop x")
                .unwrap_err()
                .contains("not a connection id")
        );
    }

    #[test]
    fn a_connection_past_its_maximum_age_is_ended() {
        let r = Registry::new(
            Arc::new(AtomicBool::new(false)),
            Some(Duration::ZERO),
            Arc::new(|_: &str| {}),
        );
        let c = r.open(1, peer());
        assert_eq!(c.ending(), Some(EndReason::SessionLimit));
        assert_eq!(
            EndReason::SessionLimit.alert(),
            Some(Alert::SessionTimeLimit)
        );
    }

    #[test]
    fn messages_go_only_to_shells_and_are_bounded() {
        let r = registry();
        let c = r.open(1, peer());
        r.authenticated(&c, alice());
        assert!(r.say(1, "hi").unwrap_err().contains("not a shell"));
        c.mark_interactive();
        r.command("say 1 hello there").unwrap();
        assert!(
            r.say(1, &"x".repeat(MAX_SAY_LEN + 1))
                .unwrap_err()
                .contains("more than")
        );
        assert_eq!(c.take_notices(), vec!["hello there".to_string()]);
        assert!(c.take_notices().is_empty());
        for _ in 0..MAX_MAILBOX {
            r.say(1, "m").unwrap();
        }
        assert!(r.say(1, "m").is_err());
    }

    #[test]
    fn stop_sets_the_flag_and_ends_only_idle_shells() {
        let stop = Arc::new(AtomicBool::new(false));
        let r = Registry::new(stop.clone(), None, Arc::new(|_: &str| {}));
        let idle = r.open(1, peer());
        let busy = r.open(2, peer());
        let plain = r.open(3, peer());
        for c in [&idle, &busy, &plain] {
            r.authenticated(c, alice());
        }
        idle.mark_interactive();
        busy.mark_interactive();
        busy.set_op(Some("get big.iso".into()));
        r.command("stop").unwrap();
        assert!(stop.load(Ordering::SeqCst));
        assert_eq!(idle.ending(), Some(EndReason::Stopping));
        assert_eq!(busy.ending(), None);
        assert_eq!(plain.ending(), None);
    }

    #[test]
    fn client_lines_escape_what_a_peer_chose() {
        let r = registry();
        let c = r.open(4, peer());
        r.authenticated(
            &c,
            Peer {
                subject: "CN=evil\u{1b}[2J".into(),
                serial: "01".into(),
            },
        );
        let lines = r.command("clients").unwrap();
        assert_eq!(lines[0], CLIENTS_HEADER);
        assert!(lines[1].contains("CN=evil\\x1b[2J"), "{}", lines[1]);
        let json = r.command("clients --json").unwrap();
        assert!(
            json[0].contains("\"client\":\"CN=evil\\u001b[2J\""),
            "{}",
            json[0]
        );
        assert!(json[0].contains("\"op\":null"));
        assert!(r.command("frobnicate").is_err());
    }
}
