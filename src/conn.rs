//! Drives the handshake state machines over a byte stream and then carries application
//! messages in records. Generic over [`Transport`], so tests run it over in-memory pipes.

use std::io::{self, Read, Write};
use std::time::Instant;

use thiserror::Error;

use crate::handshake::{self, ClientConfig, Established, HandshakeError, ServerConfig};
use crate::pki::VerifiedCert;
use crate::record::{Opener, RecordError, Sealer};
use crate::wire::{
    Alert, AppMessage, AppType, Codec, DecodeError, FRAME_HEADER_LEN, FrameHeader, FrameType,
    MAX_RECORD_PAYLOAD, encode_frame,
};

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

fn read_handshake_frame<R: Read>(r: &mut R, buf: &mut Vec<u8>) -> Result<FrameType, ConnError> {
    match read_frame(r, buf)? {
        Some((_, h)) if h.typ == FrameType::Record => Err(ConnError::Protocol(
            "encrypted record before the handshake finished".into(),
        )),
        Some((_, h)) => Ok(h.typ),
        None => Err(ConnError::Truncated),
    }
}

/// Sends the alert for a failed handshake, best effort, and passes the error on.
fn fail<S: Write>(stream: &mut S, err: HandshakeError) -> ConnError {
    if let Some(alert) = err.alert() {
        let _ = stream.write_all(&encode_frame(FrameType::Alert, &alert.to_bytes()));
        let _ = stream.flush();
    }
    ConnError::Handshake(err)
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
    stream.set_deadline(deadline)?;
    let mut buf = Vec::new();
    let (state, out) = handshake::client_start(config);
    stream.write_all(&out)?;
    stream.flush()?;
    let typ = read_handshake_frame(&mut stream, &mut buf)?;
    let (state, out) = match state.handle(typ, &buf) {
        Ok(v) => v,
        Err(e) => return Err(fail(&mut stream, e)),
    };
    stream.write_all(&out)?;
    stream.flush()?;
    stream.set_deadline(None)?;
    Ok(Channel::pending(stream, state, deadline))
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
    let earliest = match (first_flight, deadline) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    stream.set_deadline(earliest)?;
    let mut buf = Vec::new();
    let run = |stream: &mut S, buf: &mut Vec<u8>| -> Result<(Established, Vec<u8>), ConnError> {
        let state = handshake::server_start(config);
        // 1. The client's first flight, under the (shorter) first-flight deadline.
        let typ = read_handshake_frame(stream, buf)?;
        let (state, out) = state.handle(typ, buf).map_err(|e| fail(stream, e))?;
        gate.hello_received();
        stream.set_deadline(deadline)?;
        stream.write_all(&out)?;
        stream.flush()?;
        // 2. Its certificate, transcript signature and Finished.
        let typ = read_handshake_frame(stream, buf)?;
        let state = state.handle(typ, buf).map_err(|e| fail(stream, e))?;
        let typ = read_handshake_frame(stream, buf)?;
        let state = state.handle(typ, buf).map_err(|e| fail(stream, e))?;
        let typ = read_handshake_frame(stream, buf)?;
        let (est, out) = state.handle(typ, buf).map_err(|e| fail(stream, e))?;
        // 3. Authenticated: served only if there is room for it.
        if !gate.admit(&est.peer) {
            send_alert(stream, Alert::Busy);
            return Err(ConnError::Busy);
        }
        Ok((est, out))
    };
    match run(&mut stream, &mut buf) {
        Ok((est, out)) => {
            // Our CertificateVerify and Finished go out at once; the client's first requests
            // came with its Finished and are answered right behind them, in the same round
            // trip. (Holding them back for the first answer would save a packet, but leave a
            // client that sends nothing first waiting for the idle timeout.)
            stream.write_all(&out)?;
            stream.flush()?;
            stream.set_deadline(None)?;
            Ok(Channel::new(stream, est))
        }
        Err(e) => {
            match &e {
                ConnError::Timeout => send_alert(&mut stream, Alert::Timeout),
                ConnError::Decode(_) | ConnError::Protocol(_) => {
                    send_alert(&mut stream, Alert::ProtocolError)
                }
                _ => {}
            }
            drain(&mut stream);
            Err(e)
        }
    }
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
    AwaitingServer(Box<(handshake::ExpectServerCertificateVerify, Option<Instant>)>),
    /// The server's last flight did not verify: nothing is ever opened on this channel.
    Failed,
}

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
        }
    }

    /// A client channel whose handshake ends at the first receive.
    fn pending(
        stream: S,
        state: handshake::ExpectServerCertificateVerify,
        deadline: Option<Instant>,
    ) -> Self {
        let (send, recv) = state.record_keys();
        let (peer, der) = state.unverified_server();
        let (peer, peer_der) = (peer.clone(), der.to_vec());
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
        }
    }

    /// Reads and checks the server's CertificateVerify and Finished if they are still due
    /// (sending what is queued first). Every receive does this before opening a record; call
    /// it to know the handshake's outcome without a request.
    pub fn complete_handshake(&mut self) -> Result<(), ConnError> {
        // Failed until proven otherwise: an error below leaves the channel unusable.
        let (state, handshake_deadline) = match std::mem::replace(&mut self.stage, Stage::Failed) {
            Stage::Established => {
                self.stage = Stage::Established;
                return Ok(());
            }
            Stage::Failed => {
                return Err(ConnError::Protocol(
                    "the server's handshake did not verify; this channel is unusable".into(),
                ));
            }
            Stage::AwaitingServer(p) => *p,
        };
        self.flush()?;
        // The earlier of the handshake's deadline and the caller's.
        let deadline = match (handshake_deadline, self.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.stream.set_deadline(deadline)?;
        let typ = read_handshake_frame(&mut self.stream, &mut self.rbuf)?;
        let state = state
            .handle(typ, &self.rbuf)
            .map_err(|e| fail(&mut self.stream, e))?;
        let typ = read_handshake_frame(&mut self.stream, &mut self.rbuf)?;
        let est = state
            .handle(typ, &self.rbuf)
            .map_err(|e| fail(&mut self.stream, e))?;
        self.stream.set_deadline(self.deadline)?;
        // The same keys as the early ones (one key schedule); the peer is now proven.
        self.peer = est.peer;
        self.peer_der = est.peer_der;
        self.stage = Stage::Established;
        Ok(())
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

    /// Queues one message; writes when enough is buffered. `payload` must fit one record.
    pub fn send(&mut self, typ: AppType, payload: &[u8]) -> Result<(), ConnError> {
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
        if !self.is_established() {
            self.complete_handshake()?;
        }
        let (raw, header) = match read_frame(&mut self.stream, &mut self.rbuf)? {
            Some(v) => v,
            None => return Err(ConnError::Truncated),
        };
        if header.typ != FrameType::Record {
            return Err(ConnError::Protocol(format!(
                "unencrypted {:?} frame after the handshake",
                header.typ
            )));
        }
        let (inner, payload) = self.opener.open(&raw, &mut self.rbuf)?;
        let typ = AppType::from_u8(inner)
            .ok_or_else(|| ConnError::Protocol(format!("unknown message type {inner}")))?;
        Ok((typ, payload))
    }

    /// Like [`recv`](Self::recv), but hands over the buffer the message was decrypted in, so
    /// that it can go to another thread without a copy; `spare` (any capacity) takes its place
    /// for the next record.
    pub fn recv_owned(&mut self, spare: Vec<u8>) -> Result<(AppType, OwnedMsg), ConnError> {
        let (typ, len) = {
            let (typ, payload) = self.recv()?;
            (typ, payload.len())
        };
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
