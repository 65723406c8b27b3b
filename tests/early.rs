//! The two-round-trip first contact (issue 13): the client's first request travels with its
//! Finished, and nothing the server sends is released before the server's CertificateVerify
//! and Finished verified. The server side is driven by hand with the handshake state machine,
//! so the test decides exactly what the client receives.

use std::io::Read;

use minitls::conn::{self, Channel, ConnError};
use minitls::handshake::{self, Established, HandshakeError};
use minitls::mem::{self, MemEnd};
use minitls::pki::Role;
use minitls::record::Sealer;
use minitls::testkit::pki as test_pki;
use minitls::wire::{
    AppMessage, AppType, Codec, ErrorCode, ErrorMsg, FRAME_HEADER_LEN, FrameHeader, FrameType,
    Request, RequestKind,
};

/// Reads one whole frame from the server's end of the pipe.
fn read_frame(end: &mut MemEnd) -> (FrameType, Vec<u8>) {
    let mut h = [0u8; FRAME_HEADER_LEN];
    end.read_exact(&mut h).unwrap();
    let header = FrameHeader::parse(&h).unwrap();
    let mut body = vec![0u8; header.len];
    end.read_exact(&mut body).unwrap();
    (header.typ, body)
}

fn request() -> AppMessage<'static> {
    AppMessage::Request(Request {
        kind: RequestKind::Get,
        recursive: false,
        offset: 0,
        prefix_sha256: [0; 32],
        path: "hello.txt".into(),
    })
}

/// A client that has sent its flight with one request, the server's state having read it all;
/// returns the client (not yet established), the server's end, the server's keys and flight.
fn client_flight_with_a_request() -> (
    Channel<MemEnd>,
    MemEnd,
    Established,
    Vec<u8>,
    Vec<FrameType>,
) {
    let (a, mut b) = mem::pair();
    let client = std::thread::spawn(move || {
        let mut c = conn::client_handshake(a, test_pki().client_config(), None).unwrap();
        assert!(!c.is_established());
        c.send_app(&request()).unwrap();
        c.flush().unwrap();
        c
    });
    let (typ, body) = read_frame(&mut b);
    let (state, hello) = handshake::server_start(test_pki().server_config())
        .handle(typ, &body)
        .unwrap();
    std::io::Write::write_all(&mut b, &hello).unwrap();
    let client = client.join().unwrap();
    // Everything the client sent after the ServerHello, in order, read before any answer.
    let mut seen = Vec::new();
    let (typ, body) = read_frame(&mut b);
    seen.push(typ);
    let state = state.handle(typ, &body).unwrap();
    let (typ, body) = read_frame(&mut b);
    seen.push(typ);
    let state = state.handle(typ, &body).unwrap();
    let (typ, body) = read_frame(&mut b);
    seen.push(typ);
    let (est, flight) = state.handle(typ, &body).unwrap();
    let (typ, _) = read_frame(&mut b);
    seen.push(typ);
    assert!(b.inbox.is_empty(), "nothing else was sent");
    (client, b, est, flight, seen)
}

/// The server's answer, sealed under the server's real keys.
fn sealed_answer(est: &Established) -> Vec<u8> {
    let mut out = Vec::new();
    let err = ErrorMsg {
        code: ErrorCode::NotFound,
        text: "hello.txt: no such file or directory".into(),
    };
    Sealer::new(&est.send)
        .seal(AppType::Error as u8, &err.to_bytes(), &mut out)
        .unwrap();
    out
}

#[test]
fn the_first_request_travels_in_the_same_flight_as_the_clients_finished() {
    let (_client, _b, _est, _flight, seen) = client_flight_with_a_request();
    assert_eq!(
        seen,
        [
            FrameType::ClientCertificate,
            FrameType::ClientCertificateVerify,
            FrameType::ClientFinished,
            FrameType::Record,
        ]
    );
}

#[test]
fn the_answer_is_released_only_after_the_servers_signature_and_finished_verified() {
    // The genuine flight and answer: released, and the channel is then established.
    let (mut client, mut b, est, flight, _) = client_flight_with_a_request();
    let mut bytes = flight.clone();
    bytes.extend(sealed_answer(&est));
    std::io::Write::write_all(&mut b, &bytes).unwrap();
    match client.recv_app().unwrap() {
        AppMessage::Error(e) => assert_eq!(e.code, ErrorCode::NotFound),
        other => panic!("{:?}", other.typ()),
    }
    assert!(client.is_established());

    // A Finished that does not verify, with a well-sealed answer behind it: no answer.
    let (mut client, mut b, est, flight, _) = client_flight_with_a_request();
    let mut bytes = flight.clone();
    let last = bytes.len() - 1;
    bytes[last] ^= 1; // the last byte of ServerFinished's MAC
    bytes.extend(sealed_answer(&est));
    std::io::Write::write_all(&mut b, &bytes).unwrap();
    let e = client.recv_app().map(|m| m.typ()).unwrap_err();
    assert!(
        matches!(
            e,
            ConnError::Handshake(HandshakeError::BadFinished(Role::Server))
        ),
        "{e:?}"
    );
    assert!(!client.is_established());
    // Asking again does not open the answer that came behind the bad Finished.
    assert!(client.recv_app().is_err());
    assert!(!client.is_established());

    // No server flight at all, only a record: refused as a record before the handshake ended.
    let (mut client, mut b, est, _flight, _) = client_flight_with_a_request();
    std::io::Write::write_all(&mut b, &sealed_answer(&est)).unwrap();
    assert!(client.recv_app().is_err());
    assert!(!client.is_established());
}

#[test]
fn a_server_signature_that_does_not_verify_releases_nothing() {
    let (mut client, mut b, est, flight, _) = client_flight_with_a_request();
    let mut bytes = flight.clone();
    bytes[FRAME_HEADER_LEN + 10] ^= 1; // inside ServerCertificateVerify's signature
    bytes.extend(sealed_answer(&est));
    std::io::Write::write_all(&mut b, &bytes).unwrap();
    let e = client.recv_app().map(|m| m.typ()).unwrap_err();
    assert!(
        matches!(
            e,
            ConnError::Handshake(HandshakeError::BadSignature(Role::Server))
        ),
        "{e:?}"
    );
}
