//! Shared drivers of the fuzz targets (and of the seed writer, `examples/gen_seeds.rs`).
//!
//! Handshake targets read their input as a sequence of pieces, `type: u8 | len: u16 | body`
//! (a short last piece takes what is left). `type` is a frame type (`src/wire.rs`); with the
//! high bit ([`REAL`]) set, the harness fills in what a fuzzer cannot invent, so that the
//! deeper states are reachable at all:
//!
//! - server target, `0x83` ClientCertificate: the test PKI's real client certificate and an
//!   empty chain (count 0), then the fuzzer's bytes (meant to be `vec16<wrapped secret>`);
//! - server target, `0x84` ClientCertificateVerify: a valid client signature over the
//!   transcript so far (what a client holding `client.key` would send);
//! - client target, `0x82` ServerHello: the fuzzer's bytes (meant to be
//!   `version | random | x25519`), then `vec16<the real server certificate>` and an empty
//!   chain (count 0);
//! - client target, `0x86` ServerCertificateVerify: a valid server signature over the
//!   client's transcript.
//!
//! Neither side can then complete: the last step is a Finished MAC under keys derived from a
//! secret the fuzzer never sees. Reaching `Established` is therefore a bug, and the drivers
//! panic on it.

use minitls::crypto::{self, CLIENT_SIGNATURE_CONTEXT, SERVER_SIGNATURE_CONTEXT};
use minitls::handshake::{ClientState, ServerState};
use minitls::record::DirectionKeys;
use minitls::testkit;
use minitls::wire::{CertificateVerify, Codec, FRAME_HEADER_LEN, FrameType};

/// High bit of a piece type: the harness supplies the part the fuzzer cannot.
pub const REAL: u8 = 0x80;

/// Splits fuzzer input into `(type, body)` pieces.
pub fn pieces(mut data: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while data.len() >= 3 {
        let typ = data[0];
        let len = u16::from_be_bytes([data[1], data[2]]) as usize;
        let rest = &data[3..];
        let body = &rest[..len.min(rest.len())];
        out.push((typ, body));
        data = &rest[body.len()..];
    }
    out
}

/// Appends one piece (the inverse of [`pieces`]).
pub fn put_piece(out: &mut Vec<u8>, typ: u8, body: &[u8]) {
    let len = u16::try_from(body.len()).expect("seed pieces are below 64 KiB");
    out.push(typ);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
}

/// A frame as the receiving side hashes it. Built by hand rather than with
/// `wire::encode_frame`, whose debug assertion expects bodies within the type's maximum.
fn frame(typ: FrameType, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(FRAME_HEADER_LEN + body.len());
    f.push(typ as u8);
    f.extend_from_slice(&(body.len() as u32).to_be_bytes());
    f.extend_from_slice(body);
    f
}

fn vec16(bytes: &[u8]) -> Vec<u8> {
    let mut v = (bytes.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(bytes);
    v
}

/// How far a driver got: the number of frames its state machine accepted.
pub type Depth = usize;

/// Feeds the pieces to a fresh server handshake. Panics if the server reaches Established.
pub fn run_server(data: &[u8]) -> Depth {
    let p = testkit::pki();
    let mut state = ServerState::start(p.server_config());
    // Every frame the server hashed so far (what a real client would have seen too).
    let mut transcript = Vec::new();
    let mut depth = 0;
    for (raw, fuzz_body) in pieces(data) {
        let Some(typ) = FrameType::from_u8(raw & !REAL) else {
            // The driver refuses an unknown frame type from its header.
            return depth;
        };
        let real = raw & REAL != 0;
        let body = match typ {
            FrameType::ClientCertificate if real => {
                let mut b = vec16(&p.client.cert_der);
                b.push(0); // no intermediates
                b.extend_from_slice(fuzz_body);
                b
            }
            FrameType::ClientCertificateVerify if real => CertificateVerify {
                signature: crypto::sign(
                    p.client.signer(),
                    CLIENT_SIGNATURE_CONTEXT,
                    &crypto::sha256(&transcript),
                )
                .expect("signing with the test key works"),
            }
            .to_bytes(),
            _ => fuzz_body.to_vec(),
        };
        // What the server hashes: the first frame and its answer, then the certificate.
        let hashes_frame = matches!(
            state,
            ServerState::ClientHello(_) | ServerState::ClientCertificate(_)
        );
        let first = matches!(state, ServerState::ClientHello(_));
        state = match state.step(typ, &body) {
            Ok((ServerState::Done(_), _)) => {
                panic!("the server reached Established with fuzzed client input")
            }
            Ok((ServerState::ResumedClientFinished(_), _)) => {
                panic!("the server resumed a session without a ticket of its own")
            }
            Ok((next, out)) => {
                if hashes_frame {
                    transcript.extend_from_slice(&frame(typ, &body));
                }
                if first {
                    transcript.extend_from_slice(&out);
                }
                next
            }
            Err(_) => return depth,
        };
        depth += 1;
    }
    depth
}

/// A ClientFinished frame: header and a 32-byte MAC.
const CLIENT_FINISHED_FRAME_LEN: usize = minitls::wire::FRAME_HEADER_LEN + 32;

/// Feeds the pieces to a client handshake (after its ClientHello). Panics if the client
/// reaches Established.
pub fn run_client(data: &[u8]) -> Depth {
    let p = testkit::pki();
    let (mut state, hello) = ClientState::start(p.client_config());
    let mut transcript = hello;
    let mut signed_len = 0;
    let mut depth = 0;
    for (raw, fuzz_body) in pieces(data) {
        let Some(typ) = FrameType::from_u8(raw & !REAL) else {
            return depth;
        };
        let real = raw & REAL != 0;
        let body = match typ {
            FrameType::ServerHello if real => {
                let mut b = fuzz_body.to_vec();
                b.extend_from_slice(&vec16(&p.server.cert_der));
                b.push(0); // no intermediates
                b
            }
            FrameType::ServerCertificateVerify if real => CertificateVerify {
                signature: crypto::sign(
                    p.server.signer(),
                    SERVER_SIGNATURE_CONTEXT,
                    // The server signs the transcript through ClientCertificateVerify: the
                    // client's last frame, its Finished, is not covered.
                    &crypto::sha256(&transcript[..signed_len]),
                )
                .expect("signing with the test key works"),
            }
            .to_bytes(),
            _ => fuzz_body.to_vec(),
        };
        let first = matches!(state, ClientState::ServerHello(_));
        state = match state.step(typ, &body) {
            Ok((ClientState::Done(_), _)) => {
                panic!("the client reached Established with fuzzed server input")
            }
            Ok((next, out)) => {
                if first {
                    transcript.extend_from_slice(&frame(typ, &body));
                    transcript.extend_from_slice(&out);
                    signed_len = transcript.len().saturating_sub(CLIENT_FINISHED_FRAME_LEN);
                }
                next
            }
            Err(_) => return depth,
        };
        depth += 1;
    }
    depth
}

/// The fixed keys of the `record_open` target (and its seeds).
pub fn record_keys() -> DirectionKeys {
    DirectionKeys {
        key: [0x11; 32],
        iv: [0x22; 12],
    }
}

/// `record_open` modes, chosen by the first input byte's low bit.
pub const MODE_STREAM: u8 = 0;
pub const MODE_ROUND_TRIP: u8 = 1;
