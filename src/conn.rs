//! Drives the handshake state machines over a byte stream and then carries application
//! messages in records. Generic over [`Transport`], so tests run it over in-memory pipes.

use std::io::{self, Read, Write};
use std::time::Instant;

use thiserror::Error;

use crate::crypto::Secret32;
use crate::handshake::{
    ClientConfig, ClientFinishedCheck, ClientState, Established, ExpectResumedClientFinished,
    HandshakeError, LocalIdentity, ResumableSession, ServerConfig, ServerState, TicketContents,
    TicketKeys,
};
use crate::pki::VerifiedCert;
use crate::record::{DirectionKeys, Opener, RecordError, Sealer};
use crate::wire::{
    Alert, AppMessage, AppType, Codec, DecodeError, FRAME_HEADER_LEN, FrameHeader, FrameType,
    MAX_RECORD_PAYLOAD, NewTicket, encode_frame,
};

/// Most bytes of early data (a returning client's requests before its Finished) a server
/// reads, or skips when it declines the ticket; a client sends no more than this early.
pub const MAX_EARLY_DATA: usize = 64 * 1024;

/// Outgoing records are collected up to this size before a write.
const WRITE_BUFFER: usize = 512 * 1024;

/// A byte stream with an optional absolute deadline for reads.
pub trait Transport: Read + Write {
    /// Reads after `deadline` fail with `TimedOut`. `None` clears it (idle timeouts, if the
    /// transport has them, still apply).
    fn set_deadline(&mut self, deadline: Option<Instant>) -> io::Result<()>;
}

/// Connection-level failures.
#[derive(Debug, Error)]
pub enum ConnError {
    #[error("network error: {0}")]
    Io(#[source] io::Error),
    #[error("timed out waiting for the peer")]
    Timeout,
    #[error("connection closed by the peer before the exchange was complete (truncated)")]
    Truncated,
    #[error("malformed message from the peer: {0}")]
    Decode(#[from] DecodeError),
    #[error("{0}")]
    Record(#[from] RecordError),
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("protocol violation by the peer: {0}")]
    Protocol(String),
    #[error("refused: already serving the most authenticated clients allowed")]
    Busy,
}

impl From<io::Error> for ConnError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Self::Timeout,
            io::ErrorKind::UnexpectedEof => Self::Truncated,
            _ => Self::Io(e),
        }
    }
}

/// Reads one frame into `buf` (resized to the body length, which the header check bounds).
/// Returns `None` on a clean EOF before the first header byte.
fn read_frame<R: Read>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> Result<Option<([u8; FRAME_HEADER_LEN], FrameHeader)>, ConnError> {
    let mut raw = [0u8; FRAME_HEADER_LEN];
    let mut got = 0;
    while got < FRAME_HEADER_LEN {
        match r.read(&mut raw[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(ConnError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let header = FrameHeader::parse(&raw)?;
    // Reused buffers are cut to size, not zeroed again: read_exact overwrites every byte (and
    // on an error the buffer is not looked at). Zeroing cost 1.5% of a 1 GiB fetch's CPU.
    if buf.len() < header.len {
        buf.resize(header.len, 0);
    } else {
        buf.truncate(header.len);
    }
    r.read_exact(buf)?;
    Ok(Some((raw, header)))
}

/// Reads the next handshake frame. With `early`, the early records of a ResumeHello the server
/// declined are skipped unread, counted against that budget ([`MAX_EARLY_DATA`] for the whole
/// handshake); without it an early record is a handshake frame out of place.
fn read_handshake_frame<R: Read>(
    r: &mut R,
    buf: &mut Vec<u8>,
    mut early: Option<&mut usize>,
) -> Result<FrameType, ConnError> {
    loop {
        match read_frame(r, buf)? {
            Some((_, h)) if h.typ == FrameType::Record => {
                return Err(ConnError::Protocol(
                    "encrypted record before the handshake finished".into(),
                ));
            }
            Some((_, h)) if h.typ == FrameType::EarlyRecord && early.is_some() => {
                let skipped = early.as_deref_mut().expect("checked above");
                *skipped += FRAME_HEADER_LEN + h.len;
                if *skipped > MAX_EARLY_DATA {
                    return Err(ConnError::Protocol("too much early data".into()));
                }
            }
            Some((_, h)) => return Ok(h.typ),
            None => return Err(ConnError::Truncated),
        }
    }
}

/// Sends the alert a failed handshake owes the peer, best effort: the same on both sides,
/// from the error alone (what failed, never why in detail). A peer's own alert, a cut
/// connection and an I/O error get none.
fn abort<S: Write>(stream: &mut S, e: &ConnError) {
    let alert = match e {
        ConnError::Handshake(h) => h.alert(),
        ConnError::Timeout => Some(Alert::Timeout),
        ConnError::Decode(_) | ConnError::Protocol(_) => Some(Alert::ProtocolError),
        ConnError::Io(_) | ConnError::Truncated | ConnError::Record(_) | ConnError::Busy => None,
    };
    if let Some(alert) = alert {
        send_alert(stream, alert);
    }
}

/// How long a server that refused a handshake reads what the client had already sent.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_millis(100);
/// And at most this much of it.
const DRAIN_MAX: usize = 256 * 1024;

/// After a refused handshake: reads (and drops) what the client already sent, its last
/// flight and, since its first requests travel with it, those too, until it closes or for a
/// moment. Closing a socket with unread data makes TCP reset the connection, and the client
/// would then lose the alert that says why it was refused.
fn drain<S: Transport>(stream: &mut S) {
    if stream
        .set_deadline(Some(Instant::now() + DRAIN_TIME))
        .is_err()
    {
        return;
    }
    let mut buf = [0u8; 4096];
    let mut left = DRAIN_MAX;
    while left > 0 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

fn send_alert<S: Write>(stream: &mut S, alert: Alert) {
    let _ = stream.write_all(&encode_frame(FrameType::Alert, &alert.to_bytes()));
    let _ = stream.flush();
}

/// Runs the client side of the handshake up to our own Finished, which is sent; reads must
/// finish by `deadline`. The first requests sent on the returned channel follow our Finished
/// at once, without waiting for the server's answer, encrypted under keys only the holder of
/// the server's key can derive. The server's CertificateVerify and Finished
/// are read and checked by the first [`Channel::recv`] (or [`Channel::complete_handshake`])
/// before any record is opened, so nothing the server sends is acted on before the server
/// proved its key and confirmed ours. A first contact thus costs two round trips after the
/// TCP connect: the hellos, then our flight with the requests against the server's flight
/// with the answers.
pub fn client_handshake<S: Transport>(
    mut stream: S,
    config: ClientConfig,
    deadline: Option<Instant>,
) -> Result<Channel<S>, ConnError> {
    let (state, hello) = ClientState::start(config);
    let run = |stream: &mut S| -> Result<ClientState, ConnError> {
        stream.set_deadline(deadline)?;
        stream.write_all(&hello)?;
        stream.flush()?;
        let mut buf = Vec::new();
        let mut state = state;
        while !state.awaits_server_finished() {
            let typ = read_handshake_frame(stream, &mut buf, None)?;
            let (next, out) = state.step(typ, &buf)?;
            stream.write_all(&out)?;
            state = next;
        }
        stream.flush()?;
        stream.set_deadline(None)?;
        Ok(state)
    };
    match run(&mut stream) {
        Ok(state) => Ok(Channel::pending(stream, state, deadline)),
        Err(e) => {
            abort(&mut stream, &e);
            Err(e)
        }
    }
}

/// Like [`client_handshake`], resuming `session` when it is given and still verifies: the
/// ResumeHello is only queued, so that the first requests (read requests only) go with it as
/// early data, one round trip in all. The server's answer is read by the first receive (or
/// [`Channel::complete_handshake`]); if the server declines the ticket, a full handshake
/// follows on the same connection and the early requests are sent again after it.
pub fn client_handshake_resuming<S: Transport>(
    stream: S,
    config: ClientConfig,
    session: Option<&ResumableSession>,
    deadline: Option<Instant>,
) -> Result<Channel<S>, ConnError> {
    let Some(session) = session else {
        return client_handshake(stream, config, deadline);
    };
    let log = config.log.clone();
    match ClientState::resume(config.clone(), session) {
        Ok((state, hello, early)) => Ok(Channel::resuming(stream, state, hello, early, deadline)),
        Err(e) => {
            log(&format!("not resuming: {e}; full handshake"));
            client_handshake(stream, config, deadline)
        }
    }
}

/// Runs the server side of the handshake; reads must finish by `deadline`.
pub fn server_handshake<S: Transport>(
    stream: S,
    config: ServerConfig,
    deadline: Option<Instant>,
) -> Result<Channel<S>, ConnError> {
    server_handshake_gated(stream, config, deadline, deadline, &mut AdmitAll)
}

/// The two points at which a server's accept loop decides about a connection in its
/// handshake (`net.rs`: unauthenticated peers must not hold authenticated clients' places).
pub trait Admission {
    /// The ClientHello has arrived and was valid; the first-flight deadline no longer applies.
    fn hello_received(&mut self) {}
    /// The client is authenticated (certificate, transcript signature and Finished verified);
    /// called before the server's Finished is sent. `false` refuses it with a `Busy` alert.
    fn admit(&mut self, peer: &VerifiedCert) -> bool;
}

/// Admits every authenticated client.
pub struct AdmitAll;
impl Admission for AdmitAll {
    fn admit(&mut self, _peer: &VerifiedCert) -> bool {
        true
    }
}

/// Runs the server side of the handshake: the ClientHello must be complete by `first_flight`
/// and the whole handshake by `deadline`; `gate` is told when the hello arrived and decides,
/// once the client is authenticated, whether it is served.
pub fn server_handshake_gated<S: Transport>(
    mut stream: S,
    config: ServerConfig,
    first_flight: Option<Instant>,
    deadline: Option<Instant>,
    gate: &mut dyn Admission,
) -> Result<Channel<S>, ConnError> {
    stream.set_deadline(earlier(first_flight, deadline))?;
    let mut buf = Vec::new();
    let tickets = config.tickets.clone();
    let identity = config.identity.clone();
    let run = |stream: &mut S, buf: &mut Vec<u8>| -> Result<(ServerState, Vec<u8>), ConnError> {
        let mut state = ServerState::start(config);
        // 1. The client's first flight, under the (shorter) first-flight deadline.
        let typ = read_handshake_frame(stream, buf, None)?;
        // After a ResumeHello, early records may precede the client's next handshake frame
        // (if we decline the ticket they are skipped unread, up to MAX_EARLY_DATA in all).
        let mut skipped = 0usize;
        let mut early = (typ == FrameType::ResumeHello).then_some(&mut skipped);
        let (next, mut out) = state.step(typ, buf)?;
        state = next;
        gate.hello_received();
        stream.set_deadline(deadline)?;
        // 2. Until the client is authenticated: by its certificate, signature and Finished,
        //    or by a ticket's secret (and its certificate verified again).
        while state.authenticated().is_none() {
            stream.write_all(&out)?;
            stream.flush()?;
            let typ = read_handshake_frame(stream, buf, early.as_deref_mut())?;
            (state, out) = state.step(typ, buf)?;
        }
        // 3. Served only if there is room for it.
        if let Some(peer) = state.authenticated()
            && !gate.admit(peer)
        {
            send_alert(stream, Alert::Busy);
            return Err(ConnError::Busy);
        }
        Ok((state, out))
    };
    match run(&mut stream, &mut buf) {
        Ok((state, out)) => {
            // Our last flight goes out at once, with a ticket for next time; the client's
            // first requests came with its own flight and are answered right behind them, in
            // the same round trip. (Holding them back for the first answer would save a
            // packet, but leave a client that sends nothing first waiting for the idle
            // timeout.)
            let mut chan = match state {
                ServerState::ResumedClientFinished(resumed) => {
                    Channel::resumed_server(stream, *resumed)
                }
                other => match other.established() {
                    Some(est) => Channel::new(stream, est),
                    None => unreachable!("the loop above ends once the client is authenticated"),
                },
            };
            chan.stream.write_all(&out)?;
            if let Some(ticket) = tickets
                .as_ref()
                .and_then(|keys| new_ticket(keys, &identity, &chan))
            {
                chan.send_msg(AppType::NewTicket, &ticket)?;
            }
            chan.flush()?;
            chan.stream.set_deadline(None)?;
            Ok(chan)
        }
        Err(e) => {
            abort(&mut stream, &e);
            drain(&mut stream);
            Err(e)
        }
    }
}

/// A ticket for the session `chan` just established: accepted for the server's ticket
/// lifetime, cut at the end of either certificate's validity. `None` if the client's chain is
/// too large for one (that client makes full handshakes).
fn new_ticket<S>(
    keys: &TicketKeys,
    identity: &LocalIdentity,
    chan: &Channel<S>,
) -> Option<NewTicket> {
    let now = crate::pki::now_unix();
    let mut id = [0u8; 16];
    rand::fill(&mut id[..]);
    let expires_at = (now + i64::from(keys.lifetime()))
        .min(chan.peer.not_after_unix)
        .min(identity.not_after());
    let ticket = keys.seal(&TicketContents {
        id,
        issued_at: now,
        expires_at,
        resumption: chan.resumption.clone(),
        server_fingerprint: identity.fingerprint(),
        client_cert: chan.peer_der.clone(),
        client_chain: chan.peer_chain.clone(),
    })?;
    Some(NewTicket {
        lifetime_secs: u32::try_from((expires_at - now).max(0)).unwrap_or(0),
        ticket,
    })
}

/// A decrypted message that owns its record buffer (see [`Channel::recv_owned`]).
pub struct OwnedMsg {
    buf: Vec<u8>,
    len: usize,
}

impl OwnedMsg {
    pub fn payload(&self) -> &[u8] {
        &self.buf[1..1 + self.len]
    }

    /// The buffer back, for reuse as a `spare`.
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }
}

/// Where a channel's handshake stands. A client's ends at its first receive.
enum Stage {
    /// Both sides proven; records may be opened.
    Established,
    /// Waiting for the server's CertificateVerify and Finished (by `deadline`).
    AwaitingServer(Box<(ClientState, Option<Instant>)>),
    /// A returning client waiting for the server's answer to its ResumeHello (by the
    /// deadline), with a copy of the early requests sent (to send again if the server makes a
    /// full handshake instead).
    AwaitingResume(Box<ResumePending>),
    /// A server that resumed a session: the client's early records may still come, then
    /// its Finished.
    EarlyData(Box<EarlyData>),
    /// The server's last flight did not verify: nothing is ever opened on this channel.
    Failed,
}

struct ResumePending {
    state: ClientState,
    deadline: Option<Instant>,
    sent: Vec<(AppType, Vec<u8>)>,
    sent_bytes: usize,
}

struct EarlyData {
    finished: ClientFinishedCheck,
    opener: Opener,
    bytes: usize,
}

/// Called with each session ticket a client receives, to keep it for a later connection.
pub type TicketSink = Box<dyn FnMut(ResumableSession) + Send>;

/// A mutually authenticated channel carrying application messages. On the client it may
/// still be waiting for the server's last handshake flight ([`client_handshake`]): it can
/// send, and completes the handshake before it opens anything.
pub struct Channel<S> {
    stream: S,
    sealer: Sealer,
    opener: Opener,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    peer: VerifiedCert,
    peer_der: Vec<u8>,
    stage: Stage,
    /// The read deadline set with [`Channel::set_deadline`], restored after the handshake's.
    deadline: Option<Instant>,
    peer_chain: Vec<Vec<u8>>,
    /// The secret a ticket for this session stands for.
    resumption: Secret32,
    resumed: bool,
    ticket_sink: Option<TicketSink>,
}

impl<S: Transport> Channel<S> {
    fn new(stream: S, est: Established) -> Self {
        Self {
            stream,
            sealer: Sealer::new(&est.send),
            opener: Opener::new(&est.recv),
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            peer: est.peer,
            peer_der: est.peer_der,
            stage: Stage::Established,
            deadline: None,
            peer_chain: est.peer_chain,
            resumption: est.resumption,
            resumed: est.resumed,
            ticket_sink: None,
        }
    }

    /// A server channel of a resumed session, before the client's Finished.
    fn resumed_server(stream: S, resumed: ExpectResumedClientFinished) -> Self {
        let ExpectResumedClientFinished {
            established,
            early,
            finished,
        } = resumed;
        let mut chan = Self::new(stream, established);
        chan.stage = Stage::EarlyData(Box::new(EarlyData {
            finished,
            opener: Opener::early(&early),
            bytes: 0,
        }));
        chan
    }

    /// A client channel whose ResumeHello is queued; its first records are early data.
    fn resuming(
        stream: S,
        state: ClientState,
        hello: Vec<u8>,
        early: DirectionKeys,
        deadline: Option<Instant>,
    ) -> Self {
        let (peer, peer_der, peer_chain) = match &state {
            ClientState::ServerHelloOrResume(s) => s.server(),
            _ => unreachable!("ClientState::resume starts here"),
        };
        Self {
            stream,
            sealer: Sealer::early(&early),
            // Replaced before anything is opened.
            opener: Opener::early(&early),
            rbuf: Vec::new(),
            wbuf: hello,
            peer,
            peer_der,
            stage: Stage::AwaitingResume(Box::new(ResumePending {
                state,
                deadline,
                sent: Vec::new(),
                sent_bytes: 0,
            })),
            deadline: None,
            peer_chain,
            resumption: Secret32([0; 32]),
            resumed: false,
            ticket_sink: None,
        }
    }

    /// A client channel whose handshake ends at the first receive.
    fn pending(stream: S, state: ClientState, deadline: Option<Instant>) -> Self {
        let (send, recv) = state
            .record_keys()
            .expect("client_handshake returns once our Finished is made");
        let (peer, peer_der) = match &state {
            ClientState::ServerCertificateVerify(s) => {
                let (peer, der) = s.unverified_server();
                (peer.clone(), der.to_vec())
            }
            _ => unreachable!("client_handshake returns once our Finished is made"),
        };
        Self {
            stream,
            sealer: Sealer::new(&send),
            opener: Opener::new(&recv),
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            peer,
            peer_der,
            stage: Stage::AwaitingServer(Box::new((state, deadline))),
            deadline: None,
            peer_chain: Vec::new(),
            resumption: Secret32([0; 32]),
            resumed: false,
            ticket_sink: None,
        }
    }

    /// Reads and checks the server's CertificateVerify and Finished if they are still due
    /// (sending what is queued first). Every receive does this before opening a record; call
    /// it to know the handshake's outcome without a request.
    pub fn complete_handshake(&mut self) -> Result<(), ConnError> {
        // Failed until proven otherwise: an error below leaves the channel unusable.
        let (state, handshake_deadline, early) =
            match std::mem::replace(&mut self.stage, Stage::Failed) {
                Stage::Established => {
                    self.stage = Stage::Established;
                    return Ok(());
                }
                // A server's session is established; the client's Finished is read with the
                // records (see `recv`).
                early @ Stage::EarlyData(_) => {
                    self.stage = early;
                    return Ok(());
                }
                Stage::Failed => {
                    return Err(ConnError::Protocol(
                        "the server's handshake did not verify; this channel is unusable".into(),
                    ));
                }
                Stage::AwaitingServer(p) => (p.0, p.1, Vec::new()),
                Stage::AwaitingResume(p) => (p.state, p.deadline, p.sent),
            };
        match self.finish_client(state, handshake_deadline, early) {
            Ok(()) => Ok(()),
            Err(e) => {
                abort(&mut self.stream, &e);
                Err(e)
            }
        }
    }

    /// Drives a client's handshake to its end: the server's last flight of a full handshake,
    /// or its answer to a ResumeHello (a resumed session, whose Finished of ours is queued
    /// before anything else; or a full handshake, after which the `early` requests are sent
    /// again under its keys).
    fn finish_client(
        &mut self,
        mut state: ClientState,
        handshake_deadline: Option<Instant>,
        early: Vec<(AppType, Vec<u8>)>,
    ) -> Result<(), ConnError> {
        self.flush()?;
        self.stream
            .set_deadline(earlier(handshake_deadline, self.deadline))?;
        let mut early = Some(early);
        let est = loop {
            let typ = read_handshake_frame(&mut self.stream, &mut self.rbuf, None)?;
            let declined = matches!(state, ClientState::ServerHelloOrResume(_));
            let (next, out) = state.step(typ, &self.rbuf)?;
            state = next;
            if let ClientState::Done(_) = state {
                // A resumed session's Finished of ours (a full one's went with our flight).
                self.wbuf.extend_from_slice(&out);
                break state.established().expect("matched Done");
            }
            if declined && let Some((send, recv)) = state.record_keys() {
                // The server declined the ticket: our certificate flight, then the early
                // requests again, under the full handshake's keys.
                self.stream.write_all(&out)?;
                self.sealer = Sealer::new(&send);
                self.opener = Opener::new(&recv);
                for (typ, payload) in early.take().unwrap_or_default() {
                    self.sealer.seal(typ as u8, &payload, &mut self.wbuf)?;
                }
                self.flush()?;
            } else {
                self.stream.write_all(&out)?;
            }
        };
        self.stream.set_deadline(self.deadline)?;
        if est.resumed {
            self.sealer = Sealer::new(&est.send);
            self.opener = Opener::new(&est.recv);
            self.resumed = true;
        }
        // (A full handshake's keys are those the first requests went under.)
        self.peer = est.peer;
        self.peer_der = est.peer_der;
        self.peer_chain = est.peer_chain;
        self.resumption = est.resumption;
        self.stage = Stage::Established;
        Ok(())
    }

    /// Whether this session was resumed from a ticket.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// On a server: whether the last message received came before the client's Finished
    /// (early data of a resumed session, which may be replayed: read requests only).
    pub fn in_early_data(&self) -> bool {
        matches!(self.stage, Stage::EarlyData(_))
    }

    /// Where the session tickets this client receives go (a session cache).
    pub fn set_ticket_sink(&mut self, sink: TicketSink) {
        self.ticket_sink = Some(sink);
    }

    /// True once the peer proved its key and confirmed ours (always on the server).
    pub fn is_established(&self) -> bool {
        matches!(self.stage, Stage::Established)
    }

    /// The peer's certificate. Validated (chain, validity, usage, name) in any case; on a
    /// client, the server has proven that it holds the key only once [`Self::is_established`]
    /// (the first receive makes sure of that before any answer is used).
    pub fn peer(&self) -> &VerifiedCert {
        &self.peer
    }

    /// The peer's certificate as it was sent (DER).
    pub fn peer_der(&self) -> &[u8] {
        &self.peer_der
    }

    /// Before a client's ResumeHello was answered, only read requests travel as early data
    /// (and no more than [`MAX_EARLY_DATA`]); anything else first completes the handshake.
    fn may_send_early(&mut self, typ: AppType, payload: Option<&[u8]>) -> Result<(), ConnError> {
        let Stage::AwaitingResume(p) = &mut self.stage else {
            return Ok(());
        };
        match payload {
            Some(payload)
                if typ == AppType::Request
                    && p.sent_bytes + payload.len() + FRAME_HEADER_LEN + 32 <= MAX_EARLY_DATA =>
            {
                p.sent_bytes += payload.len() + FRAME_HEADER_LEN + 32;
                p.sent.push((typ, payload.to_vec()));
                Ok(())
            }
            _ => self.complete_handshake(),
        }
    }

    /// Queues one message; writes when enough is buffered. `payload` must fit one record.
    pub fn send(&mut self, typ: AppType, payload: &[u8]) -> Result<(), ConnError> {
        self.may_send_early(typ, Some(payload))?;
        self.sealer.seal(typ as u8, payload, &mut self.wbuf)?;
        if self.wbuf.len() >= WRITE_BUFFER {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends one record whose payload `fill` reads straight into the send buffer (at most
    /// `max` bytes). Returns `fill`'s result; nothing is sent if it fails or returns 0.
    pub fn send_with(
        &mut self,
        typ: AppType,
        max: usize,
        fill: impl FnOnce(&mut [u8]) -> io::Result<usize>,
    ) -> Result<io::Result<usize>, ConnError> {
        self.may_send_early(typ, None)?;
        let n = self
            .sealer
            .seal_with(typ as u8, max, &mut self.wbuf, fill)?;
        if self.wbuf.len() >= WRITE_BUFFER {
            self.flush()?;
        }
        Ok(n)
    }

    pub fn send_msg<T: Codec>(&mut self, typ: AppType, msg: &T) -> Result<(), ConnError> {
        let bytes = msg.to_bytes();
        if bytes.len() > MAX_RECORD_PAYLOAD {
            return Err(RecordError::PayloadTooLarge(bytes.len()).into());
        }
        self.send(typ, &bytes)
    }

    /// Queues one typed message (its type byte comes from the message itself).
    pub fn send_app(&mut self, msg: &AppMessage<'_>) -> Result<(), ConnError> {
        if let AppMessage::Data(d) = msg {
            return self.send(AppType::Data, d);
        }
        let mut bytes = Vec::new();
        msg.encode(&mut bytes);
        if bytes.len() > MAX_RECORD_PAYLOAD {
            return Err(RecordError::PayloadTooLarge(bytes.len()).into());
        }
        self.send(msg.typ(), &bytes)
    }

    /// Receives and decodes the next message.
    pub fn recv_app(&mut self) -> Result<AppMessage<'_>, ConnError> {
        let (typ, payload) = self.recv()?;
        Ok(AppMessage::decode(typ, payload)?)
    }

    pub fn flush(&mut self) -> Result<(), ConnError> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf)?;
            self.wbuf.clear();
        }
        self.stream.flush()?;
        Ok(())
    }

    /// Receives the next message. An EOF without a prior Close is `Truncated`.
    pub fn recv(&mut self) -> Result<(AppType, &[u8]), ConnError> {
        let (typ, len) = self.recv_len()?;
        // `Opener::open` decrypts in place: the payload follows the inner type byte.
        Ok((typ, &self.rbuf[1..1 + len]))
    }

    /// Receives the next message: its type and the length of its payload, at `rbuf[1..]`.
    /// Session tickets (client) and the client's Finished after early data (server) are
    /// handled here and never returned.
    fn recv_len(&mut self) -> Result<(AppType, usize), ConnError> {
        if matches!(
            self.stage,
            Stage::AwaitingServer(_) | Stage::AwaitingResume(_) | Stage::Failed
        ) {
            self.complete_handshake()?;
        }
        loop {
            let (raw, header) = match read_frame(&mut self.stream, &mut self.rbuf)? {
                Some(v) => v,
                None => return Err(ConnError::Truncated),
            };
            let (inner, len) = match (header.typ, &mut self.stage) {
                (FrameType::Record, Stage::Established) => {
                    let (inner, payload) = self.opener.open(&raw, &mut self.rbuf)?;
                    (inner, payload.len())
                }
                (FrameType::EarlyRecord, Stage::EarlyData(early)) => {
                    early.bytes += FRAME_HEADER_LEN + header.len;
                    if early.bytes > MAX_EARLY_DATA {
                        return Err(ConnError::Protocol("too much early data".into()));
                    }
                    let (inner, payload) = early.opener.open(&raw, &mut self.rbuf)?;
                    (inner, payload.len())
                }
                (FrameType::ClientFinished, Stage::EarlyData(_)) => {
                    let Stage::EarlyData(early) = std::mem::replace(&mut self.stage, Stage::Failed)
                    else {
                        unreachable!("matched just above");
                    };
                    if let Err(e) = early.finished.check(FrameType::ClientFinished, &self.rbuf) {
                        let e = ConnError::Handshake(e);
                        abort(&mut self.stream, &e);
                        return Err(e);
                    }
                    self.stage = Stage::Established;
                    continue;
                }
                (FrameType::Record, Stage::EarlyData(_)) => {
                    return Err(ConnError::Protocol(
                        "a record before the client's Finished".into(),
                    ));
                }
                (other, _) => {
                    return Err(ConnError::Protocol(format!(
                        "unexpected {other:?} frame after the handshake"
                    )));
                }
            };
            let typ = AppType::from_u8(inner)
                .ok_or_else(|| ConnError::Protocol(format!("unknown message type {inner}")))?;
            if typ == AppType::NewTicket {
                self.keep_ticket(len)?;
                continue;
            }
            return Ok((typ, len));
        }
    }

    /// A session ticket from the server: handed to the sink with what resuming needs.
    fn keep_ticket(&mut self, len: usize) -> Result<(), ConnError> {
        // Without a sink (a server, or a client without a session cache) it is dropped.
        if self.ticket_sink.is_none() {
            return Ok(());
        }
        let msg = NewTicket::decode(&self.rbuf[1..1 + len])?;
        let session = ResumableSession {
            ticket: msg.ticket,
            resumption: self.resumption.clone(),
            server_der: self.peer_der.clone(),
            server_chain: self.peer_chain.clone(),
            expires_at: crate::pki::now_unix() + i64::from(msg.lifetime_secs),
        };
        if let Some(sink) = &mut self.ticket_sink {
            sink(session);
        }
        Ok(())
    }

    /// Like [`recv`](Self::recv), but hands over the buffer the message was decrypted in, so
    /// that it can go to another thread without a copy; `spare` (any capacity) takes its place
    /// for the next record.
    pub fn recv_owned(&mut self, spare: Vec<u8>) -> Result<(AppType, OwnedMsg), ConnError> {
        let (typ, len) = self.recv_len()?;
        // `Opener::open` returns the plaintext after the inner type byte.
        let buf = std::mem::replace(&mut self.rbuf, spare);
        Ok((typ, OwnedMsg { buf, len }))
    }

    /// Sends the authenticated end of stream and flushes.
    pub fn send_close(&mut self) -> Result<(), ConnError> {
        self.send(AppType::Close, &[])?;
        self.flush()
    }

    pub fn set_deadline(&mut self, deadline: Option<Instant>) -> Result<(), ConnError> {
        self.deadline = deadline;
        Ok(self.stream.set_deadline(deadline)?)
    }

    pub fn into_inner(self) -> S {
        self.stream
    }
}

/// The earlier of two optional deadlines.
fn earlier(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
