//! TCP: a transport with deadlines, the accept loop with bounded concurrency, and connecting.
//!
//! Admission (issue 10): a connection is first a *handshake in progress*, held against a large,
//! cheap budget ([`ServerSettings::max_handshakes`], at most
//! [`ServerSettings::max_handshakes_per_source`] from one source address); only an
//! authenticated client takes one of the `--max-clients` places. When a handshake budget is
//! full the newcomer is admitted and the oldest handshake of the source holding the most is
//! cut (one that has not sent its ClientHello yet before one that has), so peers that connect
//! and trickle bytes can delay but never lock out a client whose handshake takes milliseconds.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs,
};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::audit::{AuditEvent, Peer};
use crate::conn::{self, Admission, Channel, ConnError, Transport};
use crate::handshake::{ClientConfig, ServerConfig};
use crate::paths::ServeRoot;
use crate::pki::VerifiedCert;
use crate::policy::{Access, ClientId, Policy};
use crate::transfer::{self, ServeOptions, StatementCache};
use crate::transfer::{RequestRecord, RequestResult};
use crate::wire::{FRAME_HEADER_LEN, FrameHeader, FrameType};

/// Default time a peer has to complete the handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a connection may sit without progress.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default most authenticated clients served at once.
pub const DEFAULT_MAX_CLIENTS: usize = 64;
/// Default most handshakes in progress at once, all sources together. A handshake in progress
/// costs a thread that mostly sleeps (measured: see bench/flood.sh) and at most one handshake
/// frame (~18 KiB); 512 of them stay within a few tens of MiB.
pub const DEFAULT_MAX_HANDSHAKES: usize = 512;
/// Default most handshakes in progress from one source (an IPv4 address, an IPv6 /64).
pub const DEFAULT_MAX_HANDSHAKES_PER_SOURCE: usize = 32;
/// Default time a new connection has to deliver its whole ClientHello (one small frame that
/// an honest client sends at once). Tricklers are cut after this, not the whole-handshake
/// deadline.
pub const DEFAULT_FIRST_FLIGHT_TIMEOUT: Duration = Duration::from_secs(3);
/// A handshake in progress younger than this is not cut for its own address's limit: it may
/// not have had time to send its ClientHello (an accepted connection's thread may not have
/// run yet). Meanwhile its address may go over --max-handshakes-per-source; the total budget
/// still cuts regardless of age, from the address holding the most. Without this, 40
/// tricklers reconnecting at once on the honest client's address (limit 32) cut its
/// connection within milliseconds, before its thread had read the ClientHello.
const EVICTION_MIN_AGE: Duration = Duration::from_millis(250);
/// How often the log summarises the handshakes cut for the budgets and the first-flight
/// deadline: a flood of connections must not become a flood of log lines.
const FLOOD_SUMMARY_INTERVAL: Duration = Duration::from_secs(5);
/// After a stop signal, how long transfers in flight may take to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// SIGTERM and SIGINT set `stop`; a second one while stopping exits at once (status 130).
pub fn stop_on_signals(stop: &Arc<AtomicBool>) -> io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    for sig in [SIGTERM, SIGINT] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())?;
        signal_hook::flag::register(sig, stop.clone())?;
    }
    Ok(())
}

/// A TCP stream whose reads obey an absolute deadline (if set) and an idle timeout.
/// The deadline is what stops a peer that trickles one byte at a time: a per-read timeout
/// alone would be reset by every byte.
pub struct TcpTransport {
    stream: TcpStream,
    idle: Duration,
    deadline: Option<Instant>,
    current_timeout: Option<Duration>,
    /// On a server with an operator: the connection's entry, which counts its bytes and may
    /// ask it to end (see [`crate::control`]).
    #[cfg(unix)]
    watch: Option<Arc<crate::control::ConnControl>>,
}

impl TcpTransport {
    pub fn new(stream: TcpStream, idle: Duration) -> io::Result<Self> {
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(idle))?;
        stream.set_read_timeout(Some(idle))?;
        Ok(Self {
            stream,
            idle,
            deadline: None,
            current_timeout: Some(idle),
            #[cfg(unix)]
            watch: None,
        })
    }

    /// A server's transport that counts its bytes in `watch` and fails its reads (within
    /// [`crate::control::WATCH_INTERVAL`]) and its writes (before a buffer starts) once
    /// `watch` says the connection is to end.
    #[cfg(unix)]
    pub fn watched(
        stream: TcpStream,
        idle: Duration,
        watch: Arc<crate::control::ConnControl>,
    ) -> io::Result<Self> {
        let mut t = Self::new(stream, idle)?;
        // Writes too wait in slices, so that a thread blocked sending to a client that does
        // not read notices the operator (see write_all).
        t.stream
            .set_write_timeout(Some(crate::control::WATCH_INTERVAL))?;
        t.watch = Some(watch);
        Ok(t)
    }

    /// A read in slices of WATCH_INTERVAL, so that a thread blocked waiting for its client
    /// notices the operator's `drop`; the idle timeout and the deadline still count from
    /// the start of the read, as one long read would.
    #[cfg(unix)]
    fn read_watched(
        &mut self,
        watch: &crate::control::ConnControl,
        buf: &mut [u8],
    ) -> io::Result<usize> {
        let began = Instant::now();
        loop {
            if let Some(why) = watch.ending() {
                return Err(io::Error::other(why.to_string()));
            }
            let now = Instant::now();
            let mut left = self.idle.saturating_sub(now - began);
            if let Some(d) = self.deadline {
                left = left.min(d.saturating_duration_since(now));
            }
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
            }
            let slice = left.min(crate::control::WATCH_INTERVAL);
            if self.current_timeout != Some(slice) {
                self.stream.set_read_timeout(Some(slice))?;
                self.current_timeout = Some(slice);
            }
            match self.stream.read(buf) {
                Ok(n) => {
                    watch.count_in(n);
                    return Ok(n);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn arm(&mut self) -> io::Result<()> {
        let timeout = match self.deadline {
            None => self.idle,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
                }
                left.min(self.idle)
            }
        };
        if self.current_timeout != Some(timeout) {
            self.stream.set_read_timeout(Some(timeout))?;
            self.current_timeout = Some(timeout);
        }
        Ok(())
    }

    pub fn shutdown(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

impl Read for TcpTransport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        #[cfg(unix)]
        if let Some(watch) = self.watch.take() {
            let read = self.read_watched(&watch, buf);
            self.watch = Some(watch);
            return read;
        }
        self.arm()?;
        self.stream.read(buf)
    }
}

impl Write for TcpTransport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.stream.write(buf)?;
        #[cfg(unix)]
        if let Some(watch) = &self.watch {
            watch.count_out(n);
        }
        Ok(n)
    }

    /// A channel writes whole records with one `write_all`: a connection the operator ends
    /// is stopped here, before a buffer starts, so that the stream stays record-aligned and
    /// the Goodbye that follows can still be read by the client. A write stuck in the middle
    /// of a buffer (the client does not read) is abandoned once the connection is to end,
    /// and marked torn: no Goodbye can follow it, the connection is cut.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        #[cfg(unix)]
        if let Some(why) = self.watch.as_ref().and_then(|w| w.ending()) {
            return Err(io::Error::other(why.to_string()));
        }
        let mut rest = buf;
        let mut progress = Instant::now();
        while !rest.is_empty() {
            match self.write(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    rest = &rest[n..];
                    progress = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Only a watched transport writes in slices: still within the idle timeout?
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) && self.watched_slice() =>
                {
                    #[cfg(unix)]
                    if let Some(w) = &self.watch
                        && let Some(why) = w.ending()
                    {
                        w.mark_torn();
                        return Err(io::Error::other(why.to_string()));
                    }
                    #[cfg(unix)]
                    if self.watch.as_ref().is_some_and(|w| w.saying_goodbye())
                        && progress.elapsed() >= crate::control::GOODBYE_WRITE_BUDGET
                    {
                        return Err(e);
                    }
                    if progress.elapsed() >= self.idle {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

impl TcpTransport {
    /// Whether writes time out in slices (a watched transport) rather than after the whole
    /// idle timeout.
    fn watched_slice(&self) -> bool {
        #[cfg(unix)]
        return self.watch.is_some();
        #[cfg(not(unix))]
        return false;
    }
}

impl Transport for TcpTransport {
    fn set_deadline(&mut self, deadline: Option<Instant>) -> io::Result<()> {
        self.deadline = deadline;
        Ok(())
    }
}

/// Connects and runs the client handshake.
pub fn connect(
    addr: &str,
    config: ClientConfig,
    timeout: Duration,
) -> Result<Channel<TcpTransport>, ConnError> {
    connect_resuming(addr, config, None, timeout)
}

/// Connects and runs the client handshake, resuming `session` if one is given (see
/// [`conn::client_handshake_resuming`]).
pub fn connect_resuming(
    addr: &str,
    config: ClientConfig,
    session: Option<&crate::handshake::ResumableSession>,
    timeout: Duration,
) -> Result<Channel<TcpTransport>, ConnError> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs().map_err(ConnError::Io)?.collect();
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "address resolved to nothing");
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                let t = TcpTransport::new(s, DEFAULT_IDLE_TIMEOUT).map_err(ConnError::Io)?;
                return conn::client_handshake_resuming(
                    t,
                    config,
                    session,
                    Some(Instant::now() + timeout),
                );
            }
            Err(e) => last = e,
        }
    }
    Err(ConnError::Io(last))
}

/// Server settings, validated before the listener starts.
pub struct ServerSettings {
    pub root: ServeRoot,
    /// Our certificate, key and trust anchors for handshakes: SIGHUP may replace them (see
    /// [`ServerSettings::config`]); a connection keeps those of its own handshake.
    pub config: std::sync::RwLock<ServerConfig>,
    /// Most authenticated clients at once; one more is told `Busy` after its handshake.
    pub max_clients: usize,
    /// Most handshakes in progress at once (see the module docs).
    pub max_handshakes: usize,
    /// Most handshakes in progress from one source address.
    pub max_handshakes_per_source: usize,
    /// Time from accept to a complete ClientHello.
    pub first_flight_timeout: Duration,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    /// `--policy`: who may read and write what. `None`: every client reads all, none writes.
    pub policy: Option<std::sync::RwLock<Arc<Policy>>>,
    /// The audit log: one event per request and per failed handshake.
    pub audit: Arc<dyn Fn(&AuditEvent) + Send + Sync>,
    /// `--max-upload-size`: the largest file a client may `push`.
    pub max_upload: u64,
    /// The CA's revocation list, re-read when its file changes: each connection's handshake
    /// uses the list current when it was accepted (`config.crl` is replaced by it).
    pub crl: Option<Arc<crate::pki::CrlFile>>,
    /// The operator's registry of connections (`serve --control`, the console), which also
    /// applies `--max-session`. `None`: no operator (tests, embedders).
    #[cfg(unix)]
    pub registry: Option<Arc<crate::control::Registry>>,
}

impl ServerSettings {
    /// The handshake settings in force now (cheap: a few `Arc`s).
    pub fn config(&self) -> ServerConfig {
        self.config
            .read()
            .map_or_else(|e| e.into_inner().clone(), |c| c.clone())
    }

    /// Puts new handshake settings in force for the connections accepted from now on.
    pub fn replace_config(&self, config: ServerConfig) {
        match self.config.write() {
            Ok(mut c) => *c = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
    }

    /// What the client holding the certificate `der` (verified by the handshake) may do, under
    /// the policy in force now.
    pub fn access_for(&self, der: &[u8]) -> Access {
        let Some(policy) = &self.policy else {
            return Access::default_read_all();
        };
        let policy = policy
            .read()
            .map_or_else(|e| e.into_inner().clone(), |p| p.clone());
        match ClientId::from_der(der) {
            Some(id) => policy.access_for(&id),
            None => Access::none(),
        }
    }
}

/// Decrements a count however the thread holding it ends.
struct Slot(Arc<AtomicUsize>);
impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Where a connection comes from, for the per-source budget: an IPv4 address (also when
/// IPv4-mapped), or an IPv6 /64, the smallest block a host is usually given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Source {
    V4(Ipv4Addr),
    V6Prefix(u64),
}

impl Source {
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => Self::V4(a),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4),
                None => Self::V6Prefix((u128::from(a) >> 64) as u64),
            },
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::V4(a) => write!(f, "{a}"),
            Self::V6Prefix(p) => write!(f, "{}/64", Ipv6Addr::from(u128::from(*p) << 64)),
        }
    }
}

/// One handshake in progress: a second handle on its socket, so that evicting it can shut the
/// socket down and wake its thread.
struct PendingEntry {
    source: Source,
    stream: TcpStream,
    hello: bool,
    since: Instant,
}

#[derive(Default)]
struct PendingTable {
    next_id: u64,
    /// By id, which grows with time: the first entries are the oldest.
    entries: BTreeMap<u64, PendingEntry>,
    per_source: HashMap<Source, usize>,
    /// Since the last log summary: handshakes cut to make room, and cut by the first-flight
    /// deadline, per source.
    evicted: HashMap<Source, u64>,
    slow_hello: HashMap<Source, u64>,
    /// Closed or reset by the peer before its ClientHello was complete.
    closed_early: HashMap<Source, u64>,
}

impl PendingTable {
    /// The handshake of `source` to cut first: the oldest that has not sent its ClientHello,
    /// else the oldest; with `cutoff`, only among those registered by then.
    fn oldest_of(&self, source: Source, cutoff: Option<Instant>) -> Option<u64> {
        let mut oldest = None;
        for (id, e) in &self.entries {
            if cutoff.is_some_and(|c| e.since > c) {
                break; // by id is by age: the rest are younger still
            }
            if e.source != source {
                continue;
            }
            if !e.hello {
                return Some(*id);
            }
            oldest.get_or_insert(*id);
        }
        oldest
    }

    fn take(&mut self, id: u64) -> Option<PendingEntry> {
        let e = self.entries.remove(&id)?;
        if let Some(n) = self.per_source.get_mut(&e.source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&e.source);
            }
        }
        Some(e)
    }
}

/// The handshakes in progress, with the two budgets.
struct Handshakes {
    table: Mutex<PendingTable>,
    max_total: usize,
    max_per_source: usize,
}

impl Handshakes {
    fn new(max_total: usize, max_per_source: usize) -> Self {
        Self {
            table: Mutex::new(PendingTable::default()),
            max_total: max_total.max(1),
            max_per_source: max_per_source.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PendingTable> {
        // A panic while holding the lock leaves the table consistent (every update is one
        // step), so a poisoned lock is still usable.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new connection from `source` (`hello`: its ClientHello is already here);
    /// if that would exceed a budget, first cuts
    /// one handshake: from `source` itself when it is at its own limit, otherwise from the
    /// source holding the most. Within that source, the oldest that has not sent its
    /// ClientHello goes first, else the oldest. Returns the new entry's id.
    fn register(&self, source: Source, stream: TcpStream, hello: bool) -> u64 {
        let mut t = self.lock();
        let now = Instant::now();
        let mut victim = None;
        if t.per_source.get(&source).copied().unwrap_or(0) >= self.max_per_source {
            victim = t.oldest_of(source, now.checked_sub(EVICTION_MIN_AGE));
        }
        if victim.is_none() && t.entries.len() >= self.max_total {
            let biggest = t
                .per_source
                .iter()
                .max_by_key(|(_, n)| **n)
                .map(|(s, _)| *s);
            victim = biggest.and_then(|s| t.oldest_of(s, None));
        }
        if let Some(victim) = victim.and_then(|id| t.take(id)) {
            let _ = victim.stream.shutdown(Shutdown::Both);
            *t.evicted.entry(victim.source).or_default() += 1;
        }
        let id = t.next_id;
        t.next_id += 1;
        *t.per_source.entry(source).or_default() += 1;
        t.entries.insert(
            id,
            PendingEntry {
                source,
                stream,
                hello,
                since: now,
            },
        );
        id
    }

    fn hello_received(&self, id: u64) {
        if let Some(e) = self.lock().entries.get_mut(&id) {
            e.hello = true;
        }
    }

    /// Removes entry `id`; `false` if it was not there any more (it was evicted).
    fn remove(&self, id: u64) -> bool {
        self.lock().take(id).is_some()
    }

    fn count_slow_hello(&self, source: Source) {
        *self.lock().slow_hello.entry(source).or_default() += 1;
    }

    fn count_closed_early(&self, source: Source) {
        *self.lock().closed_early.entry(source).or_default() += 1;
    }

    /// Cuts every handshake in progress (the server is stopping).
    fn cut_all(&self) {
        let mut t = self.lock();
        for (_, e) in std::mem::take(&mut t.entries) {
            let _ = e.stream.shutdown(Shutdown::Both);
        }
        t.per_source.clear();
    }

    /// The log lines for what was cut since the last call (none if nothing was).
    fn take_summary(&self, first_flight: Duration) -> Vec<String> {
        let mut t = self.lock();
        let mut lines = Vec::new();
        let evicted = std::mem::take(&mut t.evicted);
        if !evicted.is_empty() {
            lines.push(format!(
                "handshake budget full: cut {} to admit newer connections ({})",
                summarise(&evicted).0,
                summarise(&evicted).1
            ));
        }
        let slow = std::mem::take(&mut t.slow_hello);
        if !slow.is_empty() {
            lines.push(format!(
                "cut {} that sent no complete ClientHello within {} s ({})",
                summarise(&slow).0,
                first_flight.as_secs_f64(),
                summarise(&slow).1
            ));
        }
        let closed = std::mem::take(&mut t.closed_early);
        if !closed.is_empty() {
            lines.push(format!(
                "{} closed by the peer before a complete ClientHello ({})",
                summarise(&closed).0,
                summarise(&closed).1
            ));
        }
        lines
    }
}

/// "N pending handshake(s)" and "n from A, m from B, ... and k more sources", largest first.
fn summarise(counts: &HashMap<Source, u64>) -> (String, String) {
    const SHOWN: usize = 3;
    let total: u64 = counts.values().sum();
    let mut by_count: Vec<_> = counts.iter().collect();
    by_count.sort_by(|a, b| {
        b.1.cmp(a.1)
            .then_with(|| a.0.to_string().cmp(&b.0.to_string()))
    });
    let mut parts: Vec<String> = by_count
        .iter()
        .take(SHOWN)
        .map(|(s, n)| format!("{n} from {s}"))
        .collect();
    if by_count.len() > SHOWN {
        parts.push(format!("and {} more sources", by_count.len() - SHOWN));
    }
    let noun = if total == 1 {
        "handshake"
    } else {
        "handshakes"
    };
    (format!("{total} pending {noun}"), parts.join(", "))
}

/// One connection's view of the admission control, told by the handshake when the ClientHello
/// arrived and asked whether the authenticated client may be served.
struct Gate<'a> {
    handshakes: &'a Handshakes,
    id: u64,
    /// Still registered as a handshake in progress (by us; eviction removes it too).
    pending: bool,
    hello: bool,
    evicted: bool,
    authenticated: &'a Arc<AtomicUsize>,
    max_clients: usize,
    /// Held while the authenticated client is served.
    slot: Option<Slot>,
    refused: Option<String>,
    /// The audit event of a failed handshake, written by the accept loop's thread unless the
    /// handshake was one of those it summarises (cut for the budget or the first flight).
    failed: Option<AuditEvent>,
}

impl Gate<'_> {
    /// Leaves the handshake budget (if still in it); notes whether we had been evicted.
    fn leave_pending(&mut self) {
        if self.pending {
            self.pending = false;
            self.evicted = !self.handshakes.remove(self.id);
        }
    }
}

impl Admission for Gate<'_> {
    fn hello_received(&mut self) {
        self.hello = true;
        self.handshakes.hello_received(self.id);
    }

    fn admit(&mut self, peer: &VerifiedCert) -> bool {
        self.leave_pending();
        if self.evicted {
            return false; // its socket is shut down already
        }
        if self.authenticated.fetch_add(1, Ordering::SeqCst) >= self.max_clients {
            self.authenticated.fetch_sub(1, Ordering::SeqCst);
            self.refused = Some(format!(
                "client '{}' refused: already serving {} authenticated clients (--max-clients)",
                peer.subject, self.max_clients
            ));
            return false;
        }
        self.slot = Some(Slot(self.authenticated.clone()));
        true
    }
}

/// How often an idle accept loop looks at the stop flag.
const STOP_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// Waits until `listener` has a connection to accept, or at most `max`. A connection is
/// accepted the moment it arrives: the accept loop used to sleep 5 ms between tries, which
/// made a fresh client wait 2.5 ms on average (a fifth of a 1 KiB fetch).
#[cfg(target_os = "linux")]
fn wait_for_connection(listener: &TcpListener, max: Duration) {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let timeout = Timespec {
        tv_sec: max.as_secs() as _,
        tv_nsec: max.subsec_nanos() as _,
    };
    let mut fds = [PollFd::new(listener, PollFlags::IN)];
    match poll(&mut fds, Some(&timeout)) {
        // A signal (maybe the stop flag's) ends the wait early, as it should.
        Ok(_) | Err(rustix::io::Errno::INTR) => {}
        // Not expected on a listening socket; never spin on it.
        Err(_) => std::thread::sleep(Duration::from_millis(5)),
    }
}

/// Whether `stream`'s whole first frame, a ClientHello, has already arrived (looked at without
/// reading or waiting). Under a flood a connection waits in the accept queue long enough for an
/// honest client's ClientHello (71 bytes, sent at once) to be there: such a connection is
/// registered as past its first flight and is not cut before the tricklers.
#[cfg(target_os = "linux")]
fn first_flight_waiting(stream: &TcpStream) -> bool {
    use rustix::net::{RecvFlags, recv};
    // Larger than a ClientHello frame; anything longer is not one.
    let mut buf = [0u8; 128];
    let Ok((n, _)) = recv(stream, &mut buf[..], RecvFlags::PEEK | RecvFlags::DONTWAIT) else {
        return false;
    };
    let Some(header) = buf[..n].first_chunk::<FRAME_HEADER_LEN>() else {
        return false;
    };
    matches!(FrameHeader::parse(header), Ok(h) if h.typ == FrameType::ClientHello
        && n >= FRAME_HEADER_LEN + h.len)
}

#[cfg(not(target_os = "linux"))]
fn first_flight_waiting(_stream: &TcpStream) -> bool {
    false
}

/// Room in the kernel's accept queue. std listens with a backlog of 128; under a flood of
/// connections the queue overflowed and the kernel dropped honest clients' SYNs, which cost
/// them a 1 s (then 3 s, 7 s) retransmission (measured with bench/flood.sh). The kernel caps
/// it at net.core.somaxconn (4096 by default).
const LISTEN_BACKLOG: i32 = 4096;

/// Listens again with [`LISTEN_BACKLOG`] (Linux updates the backlog of a listening socket).
#[cfg(target_os = "linux")]
fn deepen_backlog(listener: &TcpListener) {
    // Best effort: the listener keeps working with std's backlog if this fails.
    let _ = rustix::net::listen(listener, LISTEN_BACKLOG);
}

#[cfg(not(target_os = "linux"))]
fn deepen_backlog(_listener: &TcpListener) {}

/// Without poll: try again shortly.
#[cfg(not(target_os = "linux"))]
fn wait_for_connection(_listener: &TcpListener, max: Duration) {
    std::thread::sleep(max.min(Duration::from_millis(5)));
}

/// Accepts connections until `stop` is set, each on its own thread. A new connection is a
/// handshake in progress, within the handshake budgets (see the module docs: when one is full
/// an older handshake is cut, never the newcomer refused); an authenticated client takes one
/// of `max_clients` places, and one more is told `Busy` and closed. A failing connection never
/// stops the server. Once stopped, cuts the handshakes in progress and waits up to
/// [`SHUTDOWN_GRACE`] for authenticated connections to finish.
pub fn serve(
    listener: TcpListener,
    settings: Arc<ServerSettings>,
    stop: Arc<AtomicBool>,
    log: Arc<dyn Fn(&str) + Send + Sync>,
) -> io::Result<()> {
    // Connection threads alive (for the shutdown grace), authenticated clients served.
    let threads = Arc::new(AtomicUsize::new(0));
    let authenticated = Arc::new(AtomicUsize::new(0));
    let handshakes = Arc::new(Handshakes::new(
        settings.max_handshakes,
        settings.max_handshakes_per_source,
    ));
    let cache = Arc::new(StatementCache::new());
    let mut last_summary = Instant::now();
    deepen_backlog(&listener);
    listener.set_nonblocking(true)?;
    while !stop.load(Ordering::SeqCst) {
        if last_summary.elapsed() >= FLOOD_SUMMARY_INTERVAL {
            for line in handshakes.take_summary(settings.first_flight_timeout) {
                log(&line);
            }
            last_summary = Instant::now();
        }
        let (stream, peer) = match listener.accept() {
            Ok(v) => v,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait_for_connection(&listener, STOP_CHECK_INTERVAL);
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Out of file descriptors and the like: wait, then go on serving.
                log(&format!("accept failed: {e}"));
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let _ = stream.set_nonblocking(false);
        // The registry's handle on the socket, for eviction. Without one (out of file
        // descriptors) the connection could not be cut, so it is not admitted.
        let handle = match stream.try_clone() {
            Ok(h) => h,
            Err(e) => {
                log(&format!("{peer}: refused: {e}"));
                continue;
            }
        };
        let source = Source::of(peer.ip());
        let id = handshakes.register(source, handle, first_flight_waiting(&stream));
        let thread_slot = Slot(threads.clone());
        threads.fetch_add(1, Ordering::SeqCst);
        let settings = settings.clone();
        let cache = cache.clone();
        let thread_log = log.clone();
        let thread_handshakes = handshakes.clone();
        let thread_authenticated = authenticated.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("conn-{peer}"))
            .spawn(move || {
                let _slot = thread_slot;
                let mut gate = Gate {
                    handshakes: &thread_handshakes,
                    id,
                    pending: true,
                    hello: false,
                    evicted: false,
                    authenticated: &thread_authenticated,
                    max_clients: settings.max_clients,
                    slot: None,
                    refused: None,
                    failed: None,
                };
                let result = handle_connection(stream, &settings, &cache, &*thread_log, &mut gate);
                gate.leave_pending();
                let failed = gate.failed.take();
                if let Some(why) = gate.refused.take() {
                    thread_log(&format!("{peer}: {why}"));
                    if let Some(event) = &failed {
                        (settings.audit)(event);
                    }
                } else if let Err(e) = result {
                    // Cut connections are summarised, not logged one by one; an evicted one
                    // was counted when it was cut.
                    let before_hello = !gate.hello && !gate.evicted;
                    if before_hello && matches!(e, ConnError::Timeout) {
                        thread_handshakes.count_slow_hello(source);
                    } else if before_hello && matches!(e, ConnError::Truncated | ConnError::Io(_)) {
                        thread_handshakes.count_closed_early(source);
                    } else if !gate.evicted {
                        thread_log(&format!("{peer}: {e}"));
                        if let Some(event) = &failed {
                            (settings.audit)(event);
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            // The closure (and with it the thread slot and the stream) is dropped.
            handshakes.remove(id);
            log(&format!("{peer}: cannot start a thread: {e}"));
        }
    }
    drop(listener);
    handshakes.cut_all();
    #[cfg(unix)]
    if let Some(registry) = &settings.registry {
        registry.end_idle_shells();
    }
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    let mut announced = false;
    while threads.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        if !announced {
            log(&format!(
                "stopping: waiting up to {} s for {} connection(s) in flight",
                SHUTDOWN_GRACE.as_secs(),
                threads.load(Ordering::SeqCst)
            ));
            announced = true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for line in handshakes.take_summary(settings.first_flight_timeout) {
        log(&line);
    }
    let left = threads.load(Ordering::SeqCst);
    if left > 0 {
        log(&format!("stopped; {left} connection(s) cut off"));
    } else {
        log("stopped");
    }
    Ok(())
}

/// Connection ids for the audit log, counted from 1.
static NEXT_CONN_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn handle_connection(
    stream: TcpStream,
    settings: &ServerSettings,
    cache: &Arc<StatementCache>,
    log: &(dyn Fn(&str) + Sync),
    gate: &mut Gate<'_>,
) -> Result<(), ConnError> {
    let conn_id = NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed);
    let peer = stream
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    // The operator's entry for this connection: counts its bytes, and may end it.
    #[cfg(unix)]
    let control = settings
        .registry
        .as_ref()
        .map(|r| (r.as_ref(), r.open(conn_id, peer)));
    #[cfg(unix)]
    let transport = match &control {
        Some((_, c)) => TcpTransport::watched(stream, settings.idle_timeout, c.clone()),
        None => TcpTransport::new(stream, settings.idle_timeout),
    }
    .map_err(ConnError::Io)?;
    #[cfg(not(unix))]
    let transport = TcpTransport::new(stream, settings.idle_timeout).map_err(ConnError::Io)?;
    let started = Instant::now();
    let first_flight = started + settings.first_flight_timeout;
    let deadline = started + settings.handshake_timeout;
    let event = |client: Option<Peer>, op, record: Option<&RequestRecord>, result| AuditEvent {
        ts: crate::pki::now_unix(),
        peer,
        conn: conn_id,
        client,
        op,
        path: record.map(|r| r.path.clone()),
        bytes: record.map_or(0, |r| r.bytes),
        sha256: record.and_then(|r| r.sha256),
        result,
        duration: record.map_or_else(|| started.elapsed(), |r| r.duration),
    };
    let mut config = settings.config();
    let identity = config.identity.clone();
    if let Some(crl) = &settings.crl {
        let (current, notes) = crl.current(crate::pki::now_unix());
        for line in notes {
            log(&line);
        }
        config.crl = current;
    }
    let mut chan = match conn::server_handshake_gated(
        transport,
        config,
        Some(first_flight),
        Some(deadline),
        gate,
    ) {
        Ok(c) => c,
        Err(e) => {
            gate.failed = Some(event(
                None,
                "handshake",
                None,
                RequestResult::Error(e.to_string()),
            ));
            return Err(e);
        }
    };
    let access = settings.access_for(chan.peer_der());
    let client = Peer {
        subject: chan.peer().subject.clone(),
        serial: crate::pki::serial_hex(chan.peer_der()).unwrap_or_default(),
    };
    let audit = |r: &RequestRecord| {
        (settings.audit)(&event(
            Some(client.clone()),
            r.op,
            Some(r),
            r.result.clone(),
        ));
    };
    #[cfg(unix)]
    let _listed = control.as_ref().map(|(r, c)| {
        r.authenticated(c, client.clone());
        Listed(r, conn_id)
    });
    // Said once the operator can see it (`clients` lists it from here on).
    let how = if chan.resumed() {
        " (resumed a session: ticket, certificate verified again)"
    } else {
        ""
    };
    log(&format!(
        "client '{}' authenticated{how}",
        chan.peer().subject
    ));
    #[cfg(unix)]
    let session = control
        .as_ref()
        .map(|(registry, conn)| ConnSession { registry, conn });
    let opts = ServeOptions {
        access: &access,
        audit: &audit,
        root: &settings.root,
        identity: &identity,
        idle_timeout: settings.idle_timeout,
        cache: Some(cache),
        log,
        max_upload: settings.max_upload,
        #[cfg(unix)]
        session: session.as_ref().map(|s| s as &dyn transfer::Session),
        #[cfg(not(unix))]
        session: None,
    };
    let result = transfer::serve_requests(&mut chan, &opts);
    // A request loop cut short by the operator (or --max-session, or a stop) ends with the
    // client told why.
    #[cfg(unix)]
    if result.is_err()
        && let Some((_, conn)) = &control
        && let Some(why) = conn.begin_goodbye()
    {
        log(&format!(
            "conn {conn_id} client '{}': {why}{}",
            crate::wire::escape_text(&client.subject),
            if conn.is_torn() {
                " (cut in the middle of a transfer it was not reading)"
            } else {
                ""
            }
        ));
        (settings.audit)(&event(
            Some(client.clone()),
            why.op(),
            None,
            RequestResult::Ok,
        ));
        // Not listed while it says goodbye: it is no longer served.
        drop(_listed);
        say_goodbye(chan, why, conn.is_torn());
        return Ok(());
    }
    chan.into_inner().shutdown();
    result
}

/// Unlists a connection from the operator's registry when its thread ends.
#[cfg(unix)]
struct Listed<'a>(&'a crate::control::Registry, u64);

#[cfg(unix)]
impl Drop for Listed<'_> {
    fn drop(&mut self) {
        self.0.close(self.1);
    }
}

/// The operator's view of one connection, as the request loop reports to it.
#[cfg(unix)]
struct ConnSession<'a> {
    registry: &'a crate::control::Registry,
    conn: &'a crate::control::ConnControl,
}

#[cfg(unix)]
impl transfer::Session for ConnSession<'_> {
    fn activity(&self, op: Option<String>) {
        self.conn.set_op(op);
    }
    fn interactive(&self) {
        self.conn.mark_interactive();
    }
    fn said(&self, text: &str) {
        self.registry.show_said(self.conn, text);
    }
    fn take_notices(&self) -> Vec<String> {
        self.conn.take_notices()
    }
}

/// How long a server that said Goodbye reads what the client still sends, so that closing
/// with unread bytes does not reset the connection before the client read why.
const GOODBYE_DRAIN: Duration = Duration::from_secs(1);

/// Sends the Goodbye for `why` (a stop: the authenticated Close), then half-closes and
/// drains briefly before closing. A `torn` stream (a write abandoned mid-record) is only
/// cut: the client sees a cut connection, and a fetch can be resumed.
#[cfg(unix)]
fn say_goodbye(mut chan: Channel<TcpTransport>, why: crate::control::EndReason, torn: bool) {
    use crate::wire::AppMessage;
    if torn {
        // Cut in the middle of a record: nothing more can be read after it.
        chan.into_inner().shutdown();
        return;
    }
    let sent = match why.alert() {
        Some(alert) => chan.send_app(&AppMessage::Goodbye(alert)),
        None => chan.send_app(&AppMessage::Close),
    };
    if sent.and_then(|()| chan.flush()).is_err() {
        chan.into_inner().shutdown();
        return;
    }
    let mut t = chan.into_inner();
    let _ = t.stream.shutdown(Shutdown::Write);
    let _ = t.stream.set_read_timeout(Some(GOODBYE_DRAIN));
    let end = Instant::now() + GOODBYE_DRAIN;
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        match t.stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    t.shutdown();
}
