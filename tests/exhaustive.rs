//! Exhaustive tampering with a complete handshake (issue 4): every byte of all seven frames,
//! in both directions, is altered in turn, and the handshake must fail. At the end, the same
//! for the encoding of the one application message version 3 added (`TreeHave`).
//!
//! The two sans-IO state machines talk through two byte streams (client -> server and
//! server -> client), split into frames by the receiver exactly as `conn::read_frame` does:
//! a 5-byte header checked by `FrameHeader::parse`, then that many body bytes. So an altered
//! type or length byte is seen the way a real receiver sees it (unknown type, oversized
//! frame, a body that swallows the next header, or a wait for bytes that never come: in the
//! real driver the handshake deadline ends that wait, here it is reported as `Stalled`).
//!
//! What is asserted for every altered byte:
//! - the server never reaches Established with altered client input (so it never serves a
//!   request, and no file data is ever released to anyone);
//! - the client never reaches Established with altered input, whichever direction was altered
//!   (so it never sends a request or accepts file data);
//! - the only case where one side completes is an altered byte in the server's final flight
//!   (ServerCertificateVerify, ServerFinished): the server finished before the alteration, and
//!   the client refuses.
//!
//! The full sweep of the state machines runs in the normal suite (two bit patterns, about
//! 5,400 handshakes, under 10 s on two threads); every single-bit flip and 0xff is an
//! `--ignored` test. A sample of the same alterations also goes through the real connection
//! driver (`conn::client_handshake` / `conn::server_handshake` over `mem` pipes with a
//! tampering relay), where a wait for missing bytes really ends at the handshake deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use minitls::conn::{self, ConnError};
use minitls::crypto::Secret32;
use minitls::handshake::{
    ClientConfig, ClientState, Established, HandshakeError, ServerConfig, ServerState, TicketKeys,
};
use minitls::wire::{FRAME_HEADER_LEN, FrameHeader, FrameType};
use minitls::{mem, testkit};

/// Why one side did not complete.
#[derive(Debug)]
enum Fail {
    /// The state machine refused a frame.
    Handshake(HandshakeError),
    /// The frame header was refused before its body was read (unknown type, oversized).
    Header(minitls::wire::DecodeError),
    /// An encrypted record before the handshake finished (the driver refuses it).
    RecordTooEarly,
    /// Waiting for bytes the peer will never send: the handshake deadline ends it.
    Stalled,
    /// The peer gave up first (it sent an alert or closed the connection).
    PeerFailed,
}

type Side = Result<Established, Fail>;

struct Outcome {
    client: Side,
    server: Side,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Dir {
    ClientToServer,
    ServerToClient,
}

/// One altered byte: `stream[offset] ^= xor` in direction `dir`.
#[derive(Clone, Copy, Debug)]
struct Tamper {
    dir: Dir,
    offset: usize,
    xor: u8,
}

/// Where a frame lies in its stream: (start offset, length).
type Span = (usize, usize);

/// One direction of the connection: bytes written by one side, read by the other.
struct Stream {
    /// Bytes delivered so far, after tampering.
    bytes: Vec<u8>,
    /// How many of them the receiver has consumed.
    read: usize,
    /// Every byte written, before tampering (the reference transcript).
    sent: Vec<u8>,
    /// Frame boundaries as written.
    frames: Vec<Span>,
    tamper: Option<Tamper>,
}

impl Stream {
    fn new(dir: Dir, tamper: Option<Tamper>) -> Self {
        Self {
            bytes: Vec::new(),
            read: 0,
            sent: Vec::new(),
            frames: Vec::new(),
            tamper: tamper.filter(|t| t.dir == dir),
        }
    }

    /// The writer sends `out` (one or more whole frames); the tamper applies on the way.
    fn write(&mut self, out: &[u8]) {
        let mut rest = out;
        while !rest.is_empty() {
            let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            self.frames.push((
                self.sent.len() + out.len() - rest.len(),
                FRAME_HEADER_LEN + len,
            ));
            rest = &rest[FRAME_HEADER_LEN + len..];
        }
        let start = self.bytes.len();
        self.sent.extend_from_slice(out);
        self.bytes.extend_from_slice(out);
        if let Some(t) = self.tamper
            && (start..self.bytes.len()).contains(&t.offset)
        {
            self.bytes[t.offset] ^= t.xor;
        }
    }

    /// The receiver reads the next handshake frame, as `conn::read_handshake_frame` does.
    fn read_frame(&mut self) -> Result<(FrameType, Vec<u8>), Fail> {
        let avail = &self.bytes[self.read..];
        if avail.len() < FRAME_HEADER_LEN {
            return Err(Fail::Stalled);
        }
        let mut raw = [0u8; FRAME_HEADER_LEN];
        raw.copy_from_slice(&avail[..FRAME_HEADER_LEN]);
        let header = FrameHeader::parse(&raw).map_err(Fail::Header)?;
        if avail.len() < FRAME_HEADER_LEN + header.len {
            return Err(Fail::Stalled);
        }
        let body = avail[FRAME_HEADER_LEN..FRAME_HEADER_LEN + header.len].to_vec();
        self.read += FRAME_HEADER_LEN + header.len;
        if header.typ == FrameType::Record {
            return Err(Fail::RecordTooEarly);
        }
        Ok((header.typ, body))
    }
}

/// Runs one handshake with at most one altered byte. Returns the outcome and both streams.
fn run(
    client: ClientConfig,
    server: ServerConfig,
    tamper: Option<Tamper>,
) -> (Outcome, Stream, Stream) {
    let mut c2s = Stream::new(Dir::ClientToServer, tamper);
    let mut s2c = Stream::new(Dir::ServerToClient, tamper);
    let outcome = drive(
        ClientState::start(client),
        ServerState::start(server),
        &mut c2s,
        &mut s2c,
    );
    (outcome, c2s, s2c)
}

/// The ticket key of the resumption sweep (one for the whole test binary).
fn ticket_keys() -> Arc<TicketKeys> {
    static KEYS: std::sync::LazyLock<Arc<TicketKeys>> =
        std::sync::LazyLock::new(|| Arc::new(TicketKeys::with_capacity(3600, 1 << 20)));
    KEYS.clone()
}

/// Runs one resumed handshake (a fresh ticket, minted for the test client) with at most one
/// altered byte.
fn run_resumed(tamper: Option<Tamper>) -> (Outcome, Stream, Stream) {
    let p = testkit::pki();
    let keys = ticket_keys();
    let session = testkit::mint_session(&keys, &Secret32([0x5a; 32]));
    let (client, hello, _early) =
        ClientState::resume(p.client_config(), &session).expect("the session verifies");
    let mut server = p.server_config();
    server.tickets = Some(keys);
    let mut c2s = Stream::new(Dir::ClientToServer, tamper);
    let mut s2c = Stream::new(Dir::ServerToClient, tamper);
    let outcome = drive(
        (client, hello),
        ServerState::start(server),
        &mut c2s,
        &mut s2c,
    );
    (outcome, c2s, s2c)
}

/// Runs the library's two state machines ([`ClientState`], [`ServerState`]) against each
/// other over the two streams: each side reads every frame available to it, in turn, until
/// both are done or one fails (or waits for bytes that never come).
fn drive(
    client: (ClientState, Vec<u8>),
    server: ServerState,
    c2s: &mut Stream,
    s2c: &mut Stream,
) -> Outcome {
    // When one side fails, the other is left waiting: the driver sends it an alert (or the
    // deadline passes), either way it fails too.
    let client_fails = |e: Fail, server: Option<Established>| Outcome {
        client: Err(e),
        server: server.ok_or(Fail::PeerFailed),
    };
    let server_fails = |e: Fail| Outcome {
        client: Err(Fail::PeerFailed),
        server: Err(e),
    };
    let hs = |e: HandshakeError| Fail::Handshake(e);

    let (c, hello) = client;
    c2s.write(&hello);
    let (mut c, mut s) = (Some(c), Some(server));
    let mut server_est: Option<Established> = None;
    let mut client_est: Option<Established> = None;
    // What the client sent beyond what the server read when it completed: nothing may be left.
    let mut leftover = 0;
    loop {
        let mut moved = false;
        while let Some(state) = s.take() {
            if c2s.read == c2s.bytes.len() {
                s = Some(state);
                break;
            }
            moved = true;
            match c2s
                .read_frame()
                .and_then(|(t, b)| state.step(t, &b).map_err(hs))
            {
                Ok((ServerState::Done(est), out)) => {
                    leftover = c2s.bytes.len() - c2s.read;
                    server_est = Some(*est);
                    s2c.write(&out);
                }
                Ok((next, out)) => {
                    s2c.write(&out);
                    s = Some(next);
                }
                Err(e) => return server_fails(e),
            }
        }
        while let Some(state) = c.take() {
            if s2c.read == s2c.bytes.len() {
                c = Some(state);
                break;
            }
            moved = true;
            match s2c
                .read_frame()
                .and_then(|(t, b)| state.step(t, &b).map_err(hs))
            {
                Ok((ClientState::Done(est), out)) => {
                    // (A resumed client's Finished goes last; the server still reads it.)
                    c2s.write(&out);
                    client_est = Some(*est);
                }
                Ok((next, out)) => {
                    c2s.write(&out);
                    c = Some(next);
                }
                Err(e) => return client_fails(e, server_est),
            }
        }
        if s.is_none() && c.is_none() {
            // Both complete: every byte each side sent was consumed.
            assert_eq!(leftover, 0, "server left client bytes unread");
            assert_eq!(s2c.read, s2c.bytes.len(), "client left server bytes unread");
            return Outcome {
                client: client_est.ok_or(Fail::PeerFailed),
                server: server_est.ok_or(Fail::PeerFailed),
            };
        }
        if !moved {
            // One waits for bytes the other will not send.
            return match (client_est, server_est) {
                (Some(est), None) => Outcome {
                    client: Ok(est),
                    server: Err(Fail::Stalled),
                },
                (_, est) => client_fails(Fail::Stalled, est),
            };
        }
    }
}

fn configs() -> (ClientConfig, ServerConfig) {
    let p = testkit::pki();
    (p.client_config(), p.server_config())
}

/// The untampered handshake: both complete; returns the frame layout of each direction.
fn reference() -> (Vec<Span>, Vec<Span>) {
    let (c, s) = configs();
    let (o, c2s, s2c) = run(c, s, None);
    let client = o.client.expect("untampered client completes");
    let server = o.server.expect("untampered server completes");
    assert_eq!(client.send.key, server.recv.key);
    assert_eq!(client.recv.key, server.send.key);
    assert_eq!(
        c2s.frames.len(),
        4,
        "ClientHello + the client's third flight"
    );
    assert_eq!(
        s2c.frames.len(),
        3,
        "ServerHello + the server's final flight"
    );
    (c2s.frames, s2c.frames)
}

const FRAME_NAMES_C2S: [&str; 4] = [
    "ClientHello",
    "ClientCertificate",
    "ClientCertificateVerify",
    "ClientFinished",
];
const FRAME_NAMES_S2C: [&str; 3] = ["ServerHello", "ServerCertificateVerify", "ServerFinished"];

/// Checks one altered byte; returns a description of the violation, if any.
fn check(t: Tamper, s2c_final_flight_start: usize) -> Result<String, String> {
    let (c, s) = configs();
    let (o, _, _) = run(c, s, Some(t));
    let why = |side: &Side| -> String {
        use minitls::wire::DecodeError;
        match side {
            Ok(_) => "established",
            Err(Fail::Handshake(e)) => match e {
                HandshakeError::Decode(_) => "malformed message",
                HandshakeError::Unexpected { .. } => "unexpected message type",
                HandshakeError::UnsupportedVersion(_) => "unsupported version",
                HandshakeError::PeerCertificate { .. } => "certificate rejected",
                HandshakeError::BadSignature(_) => "transcript signature invalid",
                HandshakeError::BadFinished(_) => "Finished MAC mismatch",
                HandshakeError::BadBinder => "ticket binder invalid",
                HandshakeError::BadKeyShare => "bad key share",
                HandshakeError::PeerAlert(_) => "alert",
                HandshakeError::Local(_) => "local failure",
            },
            Err(Fail::Header(DecodeError::UnknownType(_))) => "unknown frame type",
            Err(Fail::Header(DecodeError::TooLong { .. })) => "oversized frame",
            Err(Fail::Header(_)) => "bad frame header",
            Err(Fail::RecordTooEarly) => "record before the handshake ended",
            Err(Fail::Stalled) => "stalled until the deadline",
            Err(Fail::PeerFailed) => "its peer refused first",
        }
        .to_string()
    };
    if o.client.is_ok() {
        return Err(format!(
            "{t:?}: the client reached Established with altered input (server: {})",
            why(&o.server)
        ));
    }
    match t.dir {
        Dir::ClientToServer if o.server.is_ok() => Err(format!(
            "{t:?}: the server reached Established with altered client input"
        )),
        // An altered ServerHello: the transcripts differ, so the server must refuse too.
        Dir::ServerToClient if t.offset < s2c_final_flight_start && o.server.is_ok() => Err(
            format!("{t:?}: the server completed although its ServerHello was altered"),
        ),
        _ => Ok(why(if t.dir == Dir::ClientToServer {
            &o.server
        } else {
            &o.client
        })),
    }
}

/// Every `stride`-th byte of both directions, XORed with each of `patterns`, on 2 threads.
fn sweep(stride: usize, patterns: &[u8]) {
    let started = Instant::now();
    let (c2s, s2c) = reference();
    let c2s_len: usize = c2s.iter().map(|f| f.1).sum();
    let s2c_len: usize = s2c.iter().map(|f| f.1).sum();
    let final_flight = s2c[1].0;
    let mut cases = Vec::new();
    for &xor in patterns {
        for offset in (0..c2s_len).step_by(stride) {
            cases.push(Tamper {
                dir: Dir::ClientToServer,
                offset,
                xor,
            });
        }
        for offset in (0..s2c_len).step_by(stride) {
            cases.push(Tamper {
                dir: Dir::ServerToClient,
                offset,
                xor,
            });
        }
    }
    // Every frame of both directions is hit (header and body), even with a stride.
    for (frames, dir, names) in [
        (&c2s, Dir::ClientToServer, &FRAME_NAMES_C2S[..]),
        (&s2c, Dir::ServerToClient, &FRAME_NAMES_S2C[..]),
    ] {
        for (i, &(start, len)) in frames.iter().enumerate() {
            assert!(
                cases
                    .iter()
                    .any(|t| t.dir == dir && (start..start + len).contains(&t.offset)),
                "no case alters {}",
                names[i]
            );
        }
    }

    let cases = Arc::new(cases);
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let cases = cases.clone();
            let next = next.clone();
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                let mut tally = std::collections::BTreeMap::<(Dir, String), usize>::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&t) = cases.get(i) else { break };
                    match check(t, final_flight) {
                        Ok(why) => *tally.entry((t.dir, why)).or_default() += 1,
                        Err(msg) => failures.push(msg),
                    }
                }
                (failures, tally)
            })
        })
        .collect();
    let mut failures = Vec::new();
    let mut tally = std::collections::BTreeMap::<(Dir, String), usize>::new();
    for w in workers {
        let (f, t) = w.join().expect("worker does not panic");
        failures.extend(f);
        for (k, v) in t {
            *tally.entry(k).or_default() += v;
        }
    }
    eprintln!(
        "altered {} bytes (c2s {c2s_len} B, s2c {s2c_len} B, stride {stride}, patterns {patterns:02x?}) in {:.1?}; how the receiver of the altered byte failed: {tally:?}",
        cases.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} altered bytes went unnoticed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every byte of a resumed handshake (ResumeHello, ServerResume, ServerFinished,
/// ClientFinished), in its lowest and highest bit. Neither side may complete with altered
/// input, except the client when only its own last frame (ClientFinished) was altered: it had
/// verified the server's Finished before sending it, and the server refuses it.
#[test]
fn every_altered_byte_of_a_resumed_handshake_is_refused() {
    let started = Instant::now();
    let (o, c2s, s2c) = run_resumed(None);
    let (client, server) = (o.client.expect("resumes"), o.server.expect("resumes"));
    assert!(client.resumed && server.resumed);
    assert_eq!(client.send.key, server.recv.key);
    assert_eq!(c2s.frames.len(), 2, "ResumeHello, ClientFinished");
    assert_eq!(s2c.frames.len(), 2, "ServerResume, ServerFinished");
    let client_finished = c2s.frames[1].0;
    let mut n = 0;
    for xor in [0x01, 0x80] {
        for (dir, len) in [
            (Dir::ClientToServer, c2s.sent.len()),
            (Dir::ServerToClient, s2c.sent.len()),
        ] {
            for offset in 0..len {
                let t = Tamper { dir, offset, xor };
                let (o, _, _) = run_resumed(Some(t));
                n += 1;
                assert!(o.server.is_err(), "{t:?}: the server completed");
                let own_last = dir == Dir::ClientToServer && offset >= client_finished;
                assert!(
                    o.client.is_err() || own_last,
                    "{t:?}: the client completed with altered input"
                );
            }
        }
    }
    eprintln!(
        "altered {n} bytes of resumed handshakes in {:.1?}",
        started.elapsed()
    );
}

#[test]
fn the_reference_handshake_completes_with_seven_frames() {
    reference();
}

/// The full sweep: every byte of all seven frames, in both directions, flipped in its lowest
/// and in its highest bit (about 5,400 handshakes, a few seconds on 2 threads).
#[test]
fn every_altered_handshake_byte_is_refused() {
    sweep(1, &[0x01, 0x80]);
}

/// Every byte with each of the eight single-bit flips and the all-ones pattern (about 24,000
/// handshakes): longer, so run on demand with `cargo test --test exhaustive -- --ignored`.
#[test]
#[ignore = "about half a minute; the two-pattern sweep above runs in the normal suite"]
fn every_bit_of_every_handshake_byte_is_refused() {
    sweep(1, &[0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff]);
}

// ---------------------------------------------------------------------------------------------
// The same through the real connection driver
// ---------------------------------------------------------------------------------------------

/// The client's and the server's driver results.
type DriverResults = (Result<(), ConnError>, Result<(), ConnError>);

/// One handshake through `conn::client_handshake` / `conn::server_handshake` over in-memory
/// pipes, with a relay in the middle that alters one byte. Returns both drivers' results.
fn through_driver(t: Tamper, deadline: Duration) -> DriverResults {
    let (client_end, relay_c) = mem::pair();
    let (relay_s, server_end) = mem::pair();
    let deadline = Instant::now() + deadline;
    let (cc, sc) = configs();
    // The client's last flight goes out with its first request; here there is none, so it
    // sends the flight as it is and waits for the server's (`complete_handshake`).
    let client = std::thread::spawn(move || {
        conn::client_handshake(client_end, cc, Some(deadline))
            .and_then(|mut c| c.complete_handshake())
    });
    let server = std::thread::spawn(move || {
        conn::server_handshake(server_end, sc, Some(deadline)).map(drop)
    });
    let mut forwarded = [0usize; 2];
    while !(client.is_finished() && server.is_finished()) {
        let legs = [
            (Dir::ClientToServer, &relay_c.inbox, &relay_s.outbox),
            (Dir::ServerToClient, &relay_s.inbox, &relay_c.outbox),
        ];
        for (i, (dir, from, to)) in legs.into_iter().enumerate() {
            let mut bytes = from.take_all();
            if bytes.is_empty() {
                continue;
            }
            let start = forwarded[i];
            if t.dir == dir && (start..start + bytes.len()).contains(&t.offset) {
                bytes[t.offset - start] ^= t.xor;
            }
            forwarded[i] += bytes.len();
            to.put(&bytes);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    (
        client.join().expect("client driver does not panic"),
        server.join().expect("server driver does not panic"),
    )
}

/// A sample of altered bytes through the real driver: each frame's type byte, the low byte of
/// its length (a body one byte longer or shorter: swallowing the next header, or waiting
/// for a byte that never comes until the deadline), its first and last body byte. The driver
/// agrees with the model above: nobody reaches Established with altered input.
#[test]
fn the_connection_driver_refuses_altered_handshake_bytes_too() {
    let (c2s, s2c) = reference();
    let final_flight = s2c[1].0;
    let mut cases = Vec::new();
    for (frames, dir) in [(&c2s, Dir::ClientToServer), (&s2c, Dir::ServerToClient)] {
        for &(start, len) in frames.iter() {
            for at in [0, 4, FRAME_HEADER_LEN, len - 1] {
                cases.push(Tamper {
                    dir,
                    offset: start + at,
                    xor: 0x01,
                });
            }
        }
    }
    // All at once: the cases that wait for the deadline then wait together.
    let started = Instant::now();
    let runs: Vec<_> = cases
        .into_iter()
        .map(|t| {
            (
                t,
                std::thread::spawn(move || through_driver(t, Duration::from_secs(5))),
            )
        })
        .collect();
    let mut timeouts = 0;
    for (t, run) in runs {
        let (client, server) = run.join().expect("case does not panic");
        assert!(
            client.is_err(),
            "{t:?}: the client driver completed with altered input"
        );
        if t.dir == Dir::ClientToServer || t.offset < final_flight {
            assert!(
                server.is_err(),
                "{t:?}: the server driver completed with altered client input"
            );
        }
        for r in [&client, &server] {
            if matches!(r, Err(ConnError::Timeout)) {
                timeouts += 1;
            }
        }
    }
    eprintln!(
        "driver sample: {} altered bytes in {:.1?}; {timeouts} sides ended by the deadline",
        c2s.len() * 4 + s2c.len() * 4,
        started.elapsed()
    );
}

/// The one message a client may send before a recursive Get besides the Request (version 3):
/// every truncation of an encoded `TreeHave` is refused, and every byte altered to every other
/// value either is refused or decodes to another batch that re-encodes to exactly the altered
/// bytes (one value, one encoding), never a panic. What a client says it holds is only ever a
/// hint to the server, which checks it against its own bytes before it sends less.
#[test]
fn every_truncation_and_altered_byte_of_a_tree_have_batch_decodes_canonically_or_not_at_all() {
    use minitls::wire::{AppMessage, AppType, Codec, HaveEntry, TreeHave};
    let have = TreeHave {
        entries: vec![
            HaveEntry {
                path: "a/b.bin".into(),
                size: 1 << 20,
                sha256: [0x11; 32],
            },
            HaveEntry {
                path: "c".into(),
                size: 3,
                sha256: [0x22; 32],
            },
        ],
    };
    let bytes = have.to_bytes();
    for cut in 0..bytes.len() {
        assert!(
            TreeHave::decode(&bytes[..cut]).is_err(),
            "prefix of {cut} bytes"
        );
    }
    let mut decoded = 0usize;
    for i in 0..bytes.len() {
        for v in 0..=255u8 {
            if v == bytes[i] {
                continue;
            }
            let mut altered = bytes.clone();
            altered[i] = v;
            if let Ok(m) = AppMessage::decode(AppType::TreeHave, &altered) {
                let AppMessage::TreeHave(h) = &m else {
                    panic!("type {:?}", m.typ());
                };
                assert_ne!(h, &have, "byte {i} = {v} decoded to the original");
                assert_eq!(h.to_bytes(), altered, "byte {i} = {v}: not canonical");
                decoded += 1;
            }
        }
    }
    // Sizes, digests and name bytes may take any value; counts and lengths may not.
    assert!(decoded > 0);
}

/// Issue 15's messages travel in records like every other application message: every bit
/// flip and every 0xff of a sealed Say, Ping, Pong, Notice or Goodbye is refused (by the
/// frame header check or by the AEAD tag), so nobody on the path can forge "dropped by the
/// operator" or alter a message between people; the unaltered record opens to the same
/// message.
#[test]
fn every_altered_byte_of_an_interactive_message_record_is_refused() {
    use minitls::record::{DirectionKeys, Opener, Sealer};
    use minitls::wire::{Alert, AppMessage, AppType, TextMsg};
    let keys = DirectionKeys {
        key: [0x5a; 32],
        iv: [0xa5; 12],
    };
    let text = TextMsg {
        text: "hi \u{1b}[2J".into(),
    };
    let messages = [
        AppMessage::Say(text.clone()),
        AppMessage::Ping,
        AppMessage::Pong,
        AppMessage::Notice(text),
        AppMessage::Goodbye(Alert::DroppedByOperator),
        AppMessage::Goodbye(Alert::SessionTimeLimit),
    ];
    let opens = |frame: &[u8]| -> Option<(u8, Vec<u8>)> {
        let header: [u8; FRAME_HEADER_LEN] = frame[..FRAME_HEADER_LEN].try_into().unwrap();
        let h = FrameHeader::parse(&header).ok()?;
        if h.typ != FrameType::Record || h.len != frame.len() - FRAME_HEADER_LEN {
            return None;
        }
        let mut body = frame[FRAME_HEADER_LEN..].to_vec();
        let (inner, payload) = Opener::new(&keys).open(&header, &mut body).ok()?;
        Some((inner, payload.to_vec()))
    };
    let mut refused = 0usize;
    for m in &messages {
        let mut payload = Vec::new();
        m.encode(&mut payload);
        let mut frame = Vec::new();
        Sealer::new(&keys)
            .seal(m.typ() as u8, &payload, &mut frame)
            .unwrap();
        let (inner, opened) = opens(&frame).expect("the unaltered record opens");
        let typ = AppType::from_u8(inner).unwrap();
        assert_eq!(&AppMessage::decode(typ, &opened).unwrap(), m);
        for i in 0..frame.len() {
            for pattern in [0x01u8, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff] {
                let mut altered = frame.clone();
                altered[i] ^= pattern;
                assert!(
                    opens(&altered).is_none(),
                    "{:?}: byte {i} ^ {pattern:#04x} was accepted",
                    m.typ()
                );
                refused += 1;
            }
        }
    }
    assert!(refused > 0);
}
