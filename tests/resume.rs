//! Session resumption (SPEC §2.12, PROTOCOL.md §2.5), in memory: a returning client resumes
//! in one flight with no RSA; each check of the ticket, the binder and early data is pinned
//! by a test that fails without it; and every byte of both resumed flights is flipped.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use minitls::conn::{self, Channel, ConnError};
use minitls::crypto::{self, Secret32};
use minitls::handshake::{
    ClientConfig, HandshakeError, ResumableSession, ServerConfig, TicketKeys,
};
use minitls::mem::{self, MemEnd};
use minitls::paths::ServeRoot;
use minitls::pki::{self, Revocation};
use minitls::policy::{ClientId, Policy};
use minitls::record::Sealer;
use minitls::testkit::{self, pki as test_pki};
use minitls::transfer::{RequestRecord, ServeOptions};
use minitls::wire::{
    Alert, AppMessage, AppType, Codec, FRAME_HEADER_LEN, FrameHeader, FrameType, PutStart, Request,
    RequestKind,
};

const DAY: i64 = 86_400;

fn server_config(tickets: &Arc<TicketKeys>) -> ServerConfig {
    let mut s = test_pki().server_config();
    s.tickets = Some(tickets.clone());
    s
}

/// The frame types in `bytes` (whole frames, as queued on a pipe).
fn frame_types(bytes: &[u8]) -> Vec<FrameType> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= FRAME_HEADER_LEN {
        let mut h = [0u8; FRAME_HEADER_LEN];
        h.copy_from_slice(&rest[..FRAME_HEADER_LEN]);
        let header = FrameHeader::parse(&h).unwrap();
        out.push(header.typ);
        rest = &rest[FRAME_HEADER_LEN + header.len..];
    }
    out
}

/// Catches the tickets a client channel receives.
fn sink(chan: &mut Channel<MemEnd>) -> Arc<Mutex<Option<ResumableSession>>> {
    let got = Arc::new(Mutex::new(None));
    let slot = got.clone();
    chan.set_ticket_sink(Box::new(move |s| *slot.lock().unwrap() = Some(s)));
    got
}

/// A full handshake with `client`; returns the session ticket the client received.
fn full_session(client: ClientConfig, server: ServerConfig) -> ResumableSession {
    let (a, b) = mem::pair();
    let s = std::thread::spawn(move || {
        let mut chan = conn::server_handshake(b, server, None).unwrap();
        chan.send_close().unwrap();
    });
    let mut chan = conn::client_handshake(a, client, None).unwrap();
    let got = sink(&mut chan);
    assert!(matches!(chan.recv_app().unwrap(), AppMessage::Close));
    s.join().unwrap();
    assert!(!chan.resumed());
    let session = got.lock().unwrap().take();
    session.expect("the server sends a ticket after a full handshake")
}

fn get(path: &str) -> AppMessage<'static> {
    AppMessage::Request(Request {
        kind: RequestKind::Get,
        recursive: false,
        offset: 0,
        prefix_sha256: [0; 32],
        path: path.into(),
    })
}

struct Resumed {
    client: Result<Channel<MemEnd>, ConnError>,
    server: Result<Channel<MemEnd>, ConnError>,
    /// The client's first flight as it went out (before the server read it).
    first_flight: Vec<u8>,
    /// What the server received before the client's Finished (early data), and whether it
    /// was marked as early.
    early: Vec<(String, bool)>,
}

/// A returning client sends one early request; the server answers it with a Close.
fn resume(client: ClientConfig, server: ServerConfig, session: &ResumableSession) -> Resumed {
    let (a, b) = mem::pair();
    let to_server = a.outbox.clone();
    let mut chan = match conn::client_handshake_resuming(a, client, Some(session), None) {
        Ok(c) => c,
        Err(e) => {
            return Resumed {
                client: Err(e),
                server: Err(ConnError::Protocol("not reached".into())),
                first_flight: Vec::new(),
                early: Vec::new(),
            };
        }
    };
    chan.send_app(&get("early.txt")).unwrap();
    chan.flush().unwrap();
    let first_flight = to_server.take_all();
    to_server.put(&first_flight);
    let server = std::thread::spawn(move || {
        let mut early = Vec::new();
        let mut chan = conn::server_handshake(b, server, None)?;
        let msg = format!("{:?}", chan.recv_app()?);
        early.push((msg, chan.in_early_data()));
        chan.send_app(&AppMessage::Close)?;
        chan.flush()?;
        let msg = format!("{:?}", chan.recv_app()?);
        early.push((msg, chan.in_early_data()));
        Ok::<_, ConnError>((chan, early))
    });
    let client = chan.recv_app().map(|m| format!("{m:?}")).and_then(|m| {
        assert_eq!(m, "Close");
        chan.send_close()?;
        Ok(())
    });
    let (server, early) = match server.join().unwrap() {
        Ok((c, e)) => (Ok(c), e),
        Err(e) => (Err(e), Vec::new()),
    };
    Resumed {
        client: client.map(|()| chan),
        server,
        first_flight,
        early,
    }
}

/// A full handshake, then the same client resuming its session with the same server.
fn full_then_resumed() -> (Arc<TicketKeys>, Resumed) {
    let tickets = Arc::new(TicketKeys::new(3600));
    let session = full_session(test_pki().client_config(), server_config(&tickets));
    let r = resume(
        test_pki().client_config(),
        server_config(&tickets),
        &session,
    );
    (tickets, r)
}

#[test]
fn a_returning_client_resumes_in_one_flight_with_its_request_and_no_rsa() {
    let (_, r) = full_then_resumed();
    let client = r.client.unwrap();
    let server = r.server.unwrap();
    assert!(client.resumed() && server.resumed());
    // One flight: the ResumeHello and the request as early data (no certificate, no
    // signature, no wrapped secret).
    assert_eq!(
        frame_types(&r.first_flight),
        [FrameType::ResumeHello, FrameType::EarlyRecord]
    );
    // The server took the request as early data, and the Close after the client's Finished.
    assert!(r.early[0].0.contains("early.txt") && r.early[0].1);
    assert_eq!(r.early[1], ("Close".to_string(), false));
    // Both ends name the same peers as the full handshake did.
    assert_eq!(client.peer_der(), test_pki().server.cert_der.as_slice());
    assert_eq!(server.peer_der(), test_pki().client.cert_der.as_slice());
}

#[test]
fn a_replayed_first_flight_gets_nothing() {
    let (tickets, r) = full_then_resumed();
    assert!(r.server.unwrap().resumed());
    // An attacker replays the recorded ResumeHello and early request to the same server.
    let (attacker, b) = mem::pair();
    attacker.outbox.put(&r.first_flight);
    attacker.outbox.close();
    let served = conn::server_handshake(b, server_config(&tickets), None);
    // The ticket was used: the server answers with a full ServerHello (which the attacker
    // cannot continue without the client's key) and never reads the early request.
    let answer = attacker.inbox.take_all();
    assert_eq!(frame_types(&answer).first(), Some(&FrameType::ServerHello));
    assert!(served.is_err());
}

#[test]
fn a_ticket_presented_under_another_client_certificate_resumes_nothing() {
    let tickets = Arc::new(TicketKeys::new(3600));
    let session = full_session(test_pki().client_config(), server_config(&tickets));
    // Another client of the same CA (an ECDSA key, CN "mallory") offers the first client's
    // ticket and secret: the server makes a full handshake, which authenticates mallory as
    // mallory.
    let mut other = test_pki().client_config();
    other.identity = testkit::p256_client(&test_pki().ca, "mallory", &testkit::p256_key());
    let r = resume(other, server_config(&tickets), &session);
    let server = r.server.unwrap();
    assert!(!server.resumed());
    assert!(
        server.peer().subject.contains("mallory"),
        "{}",
        server.peer().subject
    );
}

#[test]
fn a_stolen_ticket_without_its_secret_is_refused() {
    let tickets = Arc::new(TicketKeys::new(3600));
    let mut stolen = full_session(test_pki().client_config(), server_config(&tickets));
    stolen.resumption = Secret32([7; 32]);
    let r = resume(test_pki().client_config(), server_config(&tickets), &stolen);
    match r.server {
        Err(ConnError::Handshake(e @ HandshakeError::BadBinder)) => {
            assert_eq!(e.alert(), Some(Alert::HandshakeFailure));
        }
        Err(e) => panic!("unexpected {e:?}"),
        Ok(_) => panic!("resumed without the ticket's secret"),
    }
    assert!(r.client.is_err());
}

#[test]
fn a_tampered_or_foreign_ticket_means_a_full_handshake() {
    let tickets = Arc::new(TicketKeys::new(3600));
    let mut session = full_session(test_pki().client_config(), server_config(&tickets));
    let n = session.ticket.len();
    session.ticket[n / 2] ^= 1;
    let r = resume(
        test_pki().client_config(),
        server_config(&tickets),
        &session,
    );
    let (client, server) = (r.client.unwrap(), r.server.unwrap());
    assert!(!client.resumed() && !server.resumed());
    // The early request was sent again after the full handshake, and answered.
    assert!(r.early[0].0.contains("early.txt") && !r.early[0].1);
    // A server restarted (a new ticket key) does the same, silently.
    let session = full_session(test_pki().client_config(), server_config(&tickets));
    let restarted = Arc::new(TicketKeys::new(3600));
    let r = resume(
        test_pki().client_config(),
        server_config(&restarted),
        &session,
    );
    assert!(!r.server.unwrap().resumed());
}

#[test]
fn an_expired_ticket_means_a_full_handshake() {
    let tickets = Arc::new(TicketKeys::new(3600));
    let session = full_session(test_pki().client_config(), server_config(&tickets));
    let mut later = server_config(&tickets);
    later.now_unix = Some(pki::now_unix() + 2 * 3600);
    let r = resume(test_pki().client_config(), later, &session);
    assert!(!r.server.unwrap().resumed());
    assert!(r.client.is_ok());
}

#[test]
fn a_client_revoked_since_its_ticket_is_refused_saying_so() {
    let tickets = Arc::new(TicketKeys::new(3600));
    let session = full_session(test_pki().client_config(), server_config(&tickets));
    let now = pki::now_unix();
    let entries = [Revocation {
        serial: pki::summarize_certificate_der(&test_pki().client.cert_der)
            .map(|s| {
                (0..s.serial.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&s.serial[i..i + 2], 16).unwrap())
                    .collect::<Vec<u8>>()
            })
            .unwrap(),
        revoked_at_unix: now - 60,
    }];
    let der = pki::make_crl(&test_pki().ca, &entries, now - 60, now + DAY, 1).unwrap();
    let mut server = server_config(&tickets);
    server.crl = Some(Arc::new(
        pki::Crl::from_der(&der, test_pki().ca.anchor()).unwrap(),
    ));
    let r = resume(test_pki().client_config(), server, &session);
    match r.server {
        Err(ConnError::Handshake(e)) => {
            assert_eq!(e.alert(), Some(Alert::CertificateRevoked), "{e}");
        }
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
    let client_err = r.client.err().expect("the client is told").to_string();
    assert!(client_err.contains("revoked"), "{client_err}");
}

/// The client's ResumeHello alone (no early request), as it goes out.
fn resume_hello(session: &ResumableSession) -> Vec<u8> {
    let (a, _b) = mem::pair();
    let out = a.outbox.clone();
    let mut chan =
        conn::client_handshake_resuming(a, test_pki().client_config(), Some(session), None)
            .unwrap();
    chan.flush().unwrap();
    out.take_all()
}

#[test]
fn early_data_that_tries_to_change_state_is_refused() {
    // Our client never sends an upload or a message early (it completes the handshake
    // first); a hostile one seals them under the early keys, which the ticket's secret gives
    // it. A recorder could replay them, so the server refuses both.
    let put = PutStart {
        path: "uploads/x".into(),
        size: 1,
        force: true,
        kind: minitls::wire::EntryKind::File,
        mtime: 0,
    };
    let say = minitls::wire::TextMsg {
        text: "replayed".into(),
    };
    for (typ, payload) in [
        (AppType::Put, put.to_bytes()),
        (AppType::Say, say.to_bytes()),
    ] {
        let tickets = Arc::new(TicketKeys::new(3600));
        let session = full_session(test_pki().client_config(), server_config(&tickets));
        let hello = resume_hello(&session);
        let early = minitls::handshake::key_schedule::early_keys(
            &session.resumption,
            &crypto::sha256(&hello),
        );
        let mut flight = hello;
        Sealer::early(&early)
            .seal(typ as u8, &payload, &mut flight)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("uploads")).unwrap();
        let root = ServeRoot::new(dir.path()).unwrap();
        let (attacker, b) = mem::pair();
        attacker.outbox.put(&flight);
        let mut chan = conn::server_handshake(b, server_config(&tickets), None).unwrap();
        assert!(chan.resumed());
        let audited = Mutex::new(Vec::new());
        let audit = |r: &RequestRecord| audited.lock().unwrap().push(r.op);
        let everything =
            Policy::parse("[[grant]]\nclients = [\"*\"]\nread = [\".\"]\nwrite = [\".\"]\n")
                .unwrap()
                .access_for(&ClientId::from_der(&test_pki().client.cert_der).unwrap());
        let opts = ServeOptions {
            root: &root,
            identity: &test_pki().server,
            idle_timeout: Duration::from_secs(5),
            cache: None,
            log: &|_| {},
            access: &everything,
            audit: &audit,
            max_upload: 1 << 20,
            session: None,
        };
        let r = minitls::transfer::serve_requests(&mut chan, &opts);
        assert!(
            matches!(&r, Err(ConnError::Protocol(m)) if m.contains("early data")),
            "{typ:?}: {r:?}"
        );
        assert!(!dir.path().join("uploads/x").exists());
        assert!(audited.lock().unwrap().is_empty(), "{typ:?}");
    }
}

#[test]
fn a_flipped_byte_anywhere_in_either_resumed_flight_never_resumes() {
    let tickets = Arc::new(TicketKeys::with_capacity(3600, 1 << 20));
    let res = Secret32([5; 32]);
    // The client's flight: every byte of the ResumeHello. The server either refuses or makes
    // a full handshake; it never resumes (nor takes an early request) from altered bytes.
    let hello = resume_hello(&testkit::mint_session(&tickets, &res));
    for i in 0..hello.len() {
        let mut bad = hello.clone();
        bad[i] ^= 0x01;
        let (attacker, b) = mem::pair();
        attacker.outbox.put(&bad);
        attacker.outbox.close();
        match conn::server_handshake(b, server_config(&tickets), None) {
            Ok(chan) => panic!(
                "byte {i}: a handshake (resumed: {}) from an altered ResumeHello",
                chan.resumed()
            ),
            Err(_) => {
                let answer = attacker.inbox.take_all();
                assert!(
                    !frame_types(&answer).contains(&FrameType::ServerResume),
                    "byte {i}: resumed"
                );
            }
        }
    }
    // The server's flight: every byte of ServerResume and ServerFinished. The client never
    // establishes (so it never acts on an answer).
    let mut i = 0;
    loop {
        let session = testkit::mint_session(&tickets, &res);
        let (a, b) = mem::pair();
        let to_client = a.inbox.clone();
        let mut client =
            conn::client_handshake_resuming(a, test_pki().client_config(), Some(&session), None)
                .unwrap();
        client.flush().unwrap();
        let server = conn::server_handshake(b, server_config(&tickets), None).unwrap();
        assert!(server.resumed());
        let mut answer = to_client.take_all();
        let types = frame_types(&answer);
        assert_eq!(
            &types[..2],
            [FrameType::ServerResume, FrameType::ServerFinished]
        );
        // ServerResume (5 + 66 bytes) and ServerFinished (5 + 32).
        let flight = FRAME_HEADER_LEN + 66 + FRAME_HEADER_LEN + 32;
        if i == flight {
            // Unaltered, the same exchange resumes: the loop above tested real flights.
            to_client.put(&answer);
            client.complete_handshake().unwrap();
            assert!(client.resumed());
            break;
        }
        answer[i] ^= 0x01;
        to_client.put(&answer);
        to_client.close();
        assert!(
            client.complete_handshake().is_err(),
            "byte {i} of the server's flight altered, and the client resumed"
        );
        i += 1;
    }
}

/// Reads one whole frame from an in-memory end.
fn read_one_frame(end: &mut MemEnd) -> (FrameType, Vec<u8>) {
    use std::io::Read;
    let mut h = [0u8; FRAME_HEADER_LEN];
    end.read_exact(&mut h).unwrap();
    let header = FrameHeader::parse(&h).unwrap();
    let mut body = vec![0u8; header.len];
    end.read_exact(&mut body).unwrap();
    (header.typ, body)
}

#[test]
fn a_declined_ticket_lets_through_at_most_64_kib_of_early_records_in_all() {
    // A restarted server (another ticket key) declines the ticket and skips the early records
    // unread: 60 KiB before the client's certificate flight and 30 KiB more inside it are over
    // the handshake's budget, however they are spread.
    let session = full_session(
        test_pki().client_config(),
        server_config(&Arc::new(TicketKeys::new(3600))),
    );
    let restarted = Arc::new(TicketKeys::new(3600));
    let (state, hello, _early) =
        minitls::handshake::ClientState::resume(test_pki().client_config(), &session).unwrap();
    let junk = minitls::wire::encode_frame(FrameType::EarlyRecord, &vec![0u8; 30 * 1024]);
    let (mut a, b) = mem::pair();
    let server =
        std::thread::spawn(move || conn::server_handshake(b, server_config(&restarted), None));
    a.outbox.put(&hello);
    a.outbox.put(&junk);
    a.outbox.put(&junk);
    let (typ, body) = read_one_frame(&mut a);
    assert_eq!(typ, FrameType::ServerHello);
    let (_, flight) = state.step(typ, &body).unwrap();
    let frames = frame_types(&flight).len();
    assert_eq!(frames, 3, "ClientCertificate, CertificateVerify, Finished");
    // The certificate, 30 KiB more early records, then the rest of the flight.
    let first_len = FRAME_HEADER_LEN
        + u32::from_be_bytes([flight[1], flight[2], flight[3], flight[4]]) as usize;
    a.outbox.put(&flight[..first_len]);
    a.outbox.put(&junk);
    a.outbox.put(&flight[first_len..]);
    match server.join().unwrap() {
        Err(ConnError::Protocol(m)) => assert!(m.contains("too much early data"), "{m}"),
        Err(e) => panic!("unexpected {e:?}"),
        Ok(_) => panic!("90 KiB of early records were skipped"),
    }
}
