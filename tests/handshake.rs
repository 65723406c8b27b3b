//! The handshake's security properties, in memory: the two state machines exchange frames
//! through a hook that can alter, drop or replace any of them.

use std::collections::VecDeque;
use std::sync::Arc;

use minitls::crypto;
use minitls::handshake::{
    self, ClientConfig, ClientState, Established, HandshakeError, ServerConfig, ServerState,
};
use minitls::pki::{self, CertError, LeafOverrides, Role};
use minitls::testkit::{self, pki as test_pki};
use minitls::wire::{
    Alert, CertificateVerify, ClientCertificate, Codec, FRAME_HEADER_LEN, Finished, FrameHeader,
    FrameType, encode_frame,
};

const DAY: i64 = 86_400;

/// Splits concatenated frames.
fn frames(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        out.push(rest[..FRAME_HEADER_LEN + len].to_vec());
        rest = &rest[FRAME_HEADER_LEN + len..];
    }
    out
}

/// Parses a (possibly altered) frame as the receiving side would.
fn parse(frame: &[u8]) -> Result<(FrameType, Vec<u8>), HandshakeError> {
    if frame.len() < FRAME_HEADER_LEN {
        return Err(HandshakeError::Decode(
            minitls::wire::DecodeError::Truncated("header"),
        ));
    }
    let mut h = [0u8; FRAME_HEADER_LEN];
    h.copy_from_slice(&frame[..FRAME_HEADER_LEN]);
    let header = FrameHeader::parse(&h)?;
    let body = &frame[FRAME_HEADER_LEN..];
    if body.len() != header.len {
        return Err(HandshakeError::Decode(
            minitls::wire::DecodeError::Truncated("body"),
        ));
    }
    Ok((header.typ, body.to_vec()))
}

struct Outcome {
    client: Result<Established, HandshakeError>,
    server: Result<Established, HandshakeError>,
    /// Every frame as sent by its author, in order (0 = ClientHello ... 6 = ServerFinished).
    sent: Vec<Vec<u8>>,
}

impl Outcome {
    fn both_ok(&self) -> bool {
        self.client.is_ok() && self.server.is_ok()
    }
}

const PENDING: &str = "not reached";

/// Runs one handshake through the library's two state machines ([`ClientState`],
/// [`ServerState`]), frame by frame, frames to the server first. `hook(index, frame)` may alter
/// each frame in flight (index as in [`Outcome::sent`]). A side that never completes is
/// `Local("not reached")`.
fn run(
    client: ClientConfig,
    server: ServerConfig,
    mut hook: impl FnMut(usize, &mut Vec<u8>),
) -> Outcome {
    let mut sent = Vec::new();
    let (c, hello) = ClientState::start(client);
    let (mut c, mut s) = (Some(c), Some(ServerState::start(server)));
    let mut to_server: VecDeque<Vec<u8>> = frames(&hello).into();
    let mut to_client: VecDeque<Vec<u8>> = VecDeque::new();
    let mut client = Err(HandshakeError::Local(PENDING.into()));
    let mut server = Err(HandshakeError::Local(PENDING.into()));
    loop {
        let (frame, to_server_side) = match (to_server.pop_front(), s.is_some()) {
            (Some(f), true) => (f, true),
            _ => match to_client.pop_front() {
                Some(f) if c.is_some() => (f, false),
                _ => break,
            },
        };
        let mut f = frame.clone();
        hook(sent.len(), &mut f);
        sent.push(frame);
        let parsed = parse(&f);
        if to_server_side {
            let state = s.take().expect("checked above");
            match parsed.and_then(|(t, b)| state.step(t, &b)) {
                Ok((ServerState::Done(est), out)) => {
                    server = Ok(*est);
                    to_client.extend(frames(&out));
                }
                Ok((next, out)) => {
                    s = Some(next);
                    to_client.extend(frames(&out));
                }
                Err(e) => {
                    server = Err(e);
                    break;
                }
            }
        } else {
            let state = c.take().expect("checked above");
            match parsed.and_then(|(t, b)| state.step(t, &b)) {
                Ok((ClientState::Done(est), _)) => client = Ok(*est),
                Ok((next, out)) => {
                    c = Some(next);
                    to_server.extend(frames(&out));
                }
                Err(e) => {
                    client = Err(e);
                    break;
                }
            }
        }
    }
    Outcome {
        client,
        server,
        sent,
    }
}

fn good() -> (ClientConfig, ServerConfig) {
    (test_pki().client_config(), test_pki().server_config())
}

#[test]
fn a_good_handshake_agrees_on_keys_and_authenticates_both_sides() {
    let (c, s) = good();
    let o = run(c, s, |_, _| {});
    let client = o.client.unwrap();
    let server = o.server.unwrap();
    assert_eq!(client.send.key, server.recv.key);
    assert_eq!(client.send.iv, server.recv.iv);
    assert_eq!(client.recv.key, server.send.key);
    assert_ne!(client.send.key, client.recv.key);
    assert!(
        client.peer.subject.contains("localhost"),
        "{}",
        client.peer.subject
    );
    assert!(
        server.peer.subject.contains("client"),
        "{}",
        server.peer.subject
    );
    assert_eq!(client.peer_der, test_pki().server.cert_der);
    assert_eq!(server.peer_der, test_pki().client.cert_der);
    assert_eq!(o.sent.len(), 7);
}

#[test]
fn two_handshakes_never_share_keys() {
    let (c, s) = good();
    let a = run(c.clone(), s.clone(), |_, _| {}).client.unwrap();
    let b = run(c, s, |_, _| {}).client.unwrap();
    assert_ne!(a.send.key, b.send.key);
    assert_ne!(a.recv.iv, b.recv.iv);
}

fn server_err(o: &Outcome) -> &HandshakeError {
    o.server.as_ref().err().expect("server must refuse")
}

fn client_err(o: &Outcome) -> &HandshakeError {
    o.client.as_ref().err().expect("client must refuse")
}

fn is_foreign_ca(e: &HandshakeError, role: Role) -> bool {
    matches!(e, HandshakeError::PeerCertificate { role: r, source: CertError::NotSignedByCa | CertError::WrongIssuer { .. } } if *r == role)
}

#[test]
fn a_client_certificate_from_another_ca_is_refused_by_the_server() {
    // Another CA, and an impostor CA that copies our CA's name (only the signature differs).
    for other in [testkit::other_pki(), testkit::impostor_pki()] {
        let mut c = test_pki().client_config();
        c.identity = other.client.clone();
        let o = run(c, test_pki().server_config(), |_, _| {});
        assert!(
            is_foreign_ca(server_err(&o), Role::Client),
            "{:?}",
            server_err(&o)
        );
        assert_eq!(server_err(&o).alert(), Some(Alert::UnknownCa));
    }
    let mut c = test_pki().client_config();
    c.identity = testkit::impostor_pki().client.clone();
    let o = run(c, test_pki().server_config(), |_, _| {});
    assert!(matches!(
        server_err(&o),
        HandshakeError::PeerCertificate {
            source: CertError::NotSignedByCa,
            ..
        }
    ));
}

#[test]
fn a_server_certificate_from_another_ca_is_refused_by_the_client() {
    for other in [testkit::other_pki(), testkit::impostor_pki()] {
        let mut s = test_pki().server_config();
        s.identity = other.server.clone();
        let o = run(test_pki().client_config(), s, |_, _| {});
        assert!(
            is_foreign_ca(client_err(&o), Role::Server),
            "{:?}",
            client_err(&o)
        );
        assert!(o.server.is_err(), "server never completes");
    }
}

#[test]
fn expired_and_not_yet_valid_certificates_are_refused_both_ways() {
    let p = test_pki();
    let now = pki::now_unix();
    let expired_c = testkit::leaf(
        &p.ca,
        Role::Client,
        "client",
        now - 10 * DAY,
        now - DAY,
        &Default::default(),
    );
    let future_c = testkit::leaf(
        &p.ca,
        Role::Client,
        "client",
        now + DAY,
        now + 10 * DAY,
        &Default::default(),
    );
    for id in [expired_c, future_c] {
        let mut c = p.client_config();
        c.identity = id;
        let o = run(c, p.server_config(), |_, _| {});
        assert!(
            matches!(
                server_err(&o),
                HandshakeError::PeerCertificate {
                    source: CertError::Expired { .. } | CertError::NotYetValid { .. },
                    ..
                }
            ),
            "{:?}",
            server_err(&o)
        );
    }
    let expired_s = testkit::leaf(
        &p.ca,
        Role::Server,
        "localhost",
        now - 10 * DAY,
        now - DAY,
        &Default::default(),
    );
    let mut s = p.server_config();
    s.identity = expired_s;
    let o = run(p.client_config(), s, |_, _| {});
    assert!(matches!(
        client_err(&o),
        HandshakeError::PeerCertificate {
            source: CertError::Expired { .. },
            ..
        }
    ));
    // The client's clock matters too: a valid certificate checked a year later fails.
    let mut c = p.client_config();
    c.now_unix = Some(now + 400 * DAY);
    assert!(run(c, p.server_config(), |_, _| {}).client.is_err());
}

#[test]
fn a_server_certificate_used_as_a_client_is_refused() {
    let p = test_pki();
    let mut c = p.client_config();
    c.identity = p.server.clone();
    let o = run(c, p.server_config(), |_, _| {});
    assert!(matches!(
        server_err(&o),
        HandshakeError::PeerCertificate {
            source: CertError::WrongUsage { .. },
            ..
        }
    ));
    // And a client certificate used as a server.
    let mut s = p.server_config();
    s.identity = p.client.clone();
    let o = run(p.client_config(), s, |_, _| {});
    assert!(matches!(
        client_err(&o),
        HandshakeError::PeerCertificate {
            source: CertError::WrongUsage { .. } | CertError::NameMismatch { .. },
            ..
        }
    ));
}

#[test]
fn a_leaf_without_extended_key_usage_is_refused() {
    let p = test_pki();
    let now = pki::now_unix();
    let no_eku = LeafOverrides {
        extended_key_usage: Some(vec![]),
        ..Default::default()
    };
    let mut c = p.client_config();
    c.identity = testkit::leaf(&p.ca, Role::Client, "client", now - DAY, now + DAY, &no_eku);
    assert!(run(c, p.server_config(), |_, _| {}).server.is_err());
}

#[test]
fn a_wrong_server_name_is_refused_by_the_client() {
    let mut c = test_pki().client_config();
    c.server_name = "files.example.com".into();
    let o = run(c, test_pki().server_config(), |_, _| {});
    assert!(matches!(
        client_err(&o),
        HandshakeError::PeerCertificate {
            source: CertError::NameMismatch { .. },
            ..
        }
    ));
    // The default names work: DNS localhost, IP 127.0.0.1 and ::1.
    for name in ["localhost", "127.0.0.1", "::1"] {
        let mut c = test_pki().client_config();
        c.server_name = name.into();
        assert!(
            run(c, test_pki().server_config(), |_, _| {}).both_ok(),
            "{name}"
        );
    }
}

#[test]
fn a_client_holding_only_a_copy_of_the_certificate_is_refused_by_the_server() {
    let p = test_pki();
    let mut c = p.client_config();
    // The attacker has client.crt but not client.key: it signs with a key of its own.
    c.identity = testkit::stolen_certificate(&p.client, testkit::other_ca_key());
    let o = run(c, p.server_config(), |_, _| {});
    assert!(matches!(
        server_err(&o),
        HandshakeError::BadSignature(Role::Client)
    ));
    assert_eq!(server_err(&o).alert(), Some(Alert::HandshakeFailure));
}

#[test]
fn a_server_holding_only_a_copy_of_the_certificate_cannot_complete() {
    let p = test_pki();
    let mut s = p.server_config();
    s.identity = testkit::stolen_certificate(&p.server, testkit::other_ca_key());
    let o = run(p.client_config(), s, |_, _| {});
    // It cannot unwrap the client's secret, so it fails key confirmation; even if it went on,
    // the client would refuse its signature.
    assert!(!o.both_ok());
    assert!(o.client.is_err());
}

#[test]
fn a_recorded_client_flight_replayed_to_a_new_handshake_is_refused() {
    let p = test_pki();
    let recorded = run(p.client_config(), p.server_config(), |_, _| {});
    assert!(recorded.both_ok());
    // The attacker replays ClientHello, ClientCertificate, CertificateVerify and Finished.
    let s = handshake::server_start(p.server_config());
    let (t, b) = parse(&recorded.sent[0]).unwrap();
    let (s, _fresh_server_hello) = s.handle(t, &b).unwrap();
    let (t, b) = parse(&recorded.sent[2]).unwrap();
    let s = s.handle(t, &b).expect("the certificate itself is valid");
    let (t, b) = parse(&recorded.sent[3]).unwrap();
    match s.handle(t, &b) {
        Err(HandshakeError::BadSignature(Role::Client)) => {}
        Err(e) => panic!("unexpected {e:?}"),
        Ok(_) => panic!("replayed handshake accepted"),
    }
}

#[test]
fn a_flipped_bit_anywhere_in_any_handshake_message_stops_the_handshake() {
    let (c, s) = good();
    let reference = run(c.clone(), s.clone(), |_, _| {});
    for (i, frame) in reference.sent.iter().enumerate() {
        let len = frame.len();
        // Header bytes, the first and last body byte, and a spread of positions in between.
        let mut positions: Vec<usize> = vec![0, 1, 4, 5, len / 2, len - 1];
        positions.extend((5..len).step_by((len / 7).max(1)));
        positions.sort_unstable();
        positions.dedup();
        for pos in positions {
            let o = run(c.clone(), s.clone(), |j, f| {
                if j == i {
                    f[pos] ^= 0x10;
                }
            });
            assert!(
                !o.both_ok(),
                "flip in message {i} at byte {pos} went unnoticed"
            );
            if i <= 4 {
                // Anything the client sends altered: the server never completes, so it never
                // serves a request.
                assert!(
                    o.server.is_err(),
                    "server accepted altered message {i} byte {pos}"
                );
            }
        }
    }
}

#[test]
fn dropped_or_reordered_handshake_messages_are_refused() {
    let (c, s) = good();
    let reference = run(c.clone(), s.clone(), |_, _| {});
    // Replace each message by the next one (a drop) or by the previous one (a reorder).
    for i in 1..reference.sent.len() - 1 {
        let next = reference.sent[i + 1].clone();
        let prev = reference.sent[i - 1].clone();
        for replacement in [next, prev] {
            let o = run(c.clone(), s.clone(), |j, f| {
                if j == i {
                    *f = replacement.clone();
                }
            });
            assert!(!o.both_ok(), "substitution at message {i} went unnoticed");
        }
    }
}

/// Builds the client's third flight by hand, so the test controls the wrapped secret while
/// still producing a valid certificate signature.
fn hand_made_flight3(
    p: &testkit::TestPki,
    wrapped: Vec<u8>,
) -> Result<Established, HandshakeError> {
    let mut transcript = Vec::new();
    let s = handshake::server_start(p.server_config());
    let ch = minitls::wire::ClientHello {
        version: minitls::wire::PROTOCOL_VERSION,
        random: [1; 32],
        x25519: x25519_public(),
    };
    let ch_frame = encode_frame(FrameType::ClientHello, &ch.to_bytes());
    transcript.extend_from_slice(&ch_frame);
    let (s, sh) = s.handle(FrameType::ClientHello, &ch.to_bytes())?;
    transcript.extend_from_slice(&sh);
    let cc = ClientCertificate {
        certificate: p.client.cert_der.clone(),
        chain: vec![],
        wrapped_secret: wrapped,
    };
    transcript.extend_from_slice(&encode_frame(FrameType::ClientCertificate, &cc.to_bytes()));
    let s = s.handle(FrameType::ClientCertificate, &cc.to_bytes())?;
    let sig = crypto::sign(
        p.client.signer(),
        crypto::CLIENT_SIGNATURE_CONTEXT,
        &crypto::sha256(&transcript),
    )
    .unwrap();
    let cv = CertificateVerify { signature: sig };
    let s = s.handle(FrameType::ClientCertificateVerify, &cv.to_bytes())?;
    let (est, _) = s.handle(
        FrameType::ClientFinished,
        &Finished { mac: [0; 32] }.to_bytes(),
    )?;
    Ok(est)
}

fn x25519_public() -> [u8; 32] {
    let secret = x25519_dalek::StaticSecret::from([7u8; 32]);
    x25519_dalek::PublicKey::from(&secret).to_bytes()
}

#[test]
fn key_unwrap_failures_look_exactly_like_a_wrong_finished_mac() {
    let p = test_pki();
    let server_pub = pki::verify_certificate(
        &p.anchor,
        &p.server.cert_der,
        Role::Server,
        None,
        pki::now_unix(),
    )
    .unwrap()
    .public_key;
    let server_pub = server_pub.rsa().unwrap();
    let good_wrap = crypto::wrap_secret(server_pub, &crypto::Secret32([9; 32])).unwrap();
    let garbage = vec![0x42; good_wrap.len()];
    let wrong_len =
        crypto::wrap_secret(server_pub, &crypto::Secret32([9; 32])).unwrap()[..100].to_vec();
    let errors: Vec<String> = [good_wrap, garbage, wrong_len]
        .into_iter()
        .map(|w| {
            let e = hand_made_flight3(p, w)
                .err()
                .expect("the Finished MAC is wrong");
            assert_eq!(e.alert(), Some(Alert::HandshakeFailure));
            e.to_string()
        })
        .collect();
    assert!(errors.iter().all(|e| e == &errors[0]), "{errors:?}");
}

#[test]
fn an_unsupported_version_is_refused() {
    let s = handshake::server_start(test_pki().server_config());
    let ch = minitls::wire::ClientHello {
        version: 99,
        random: [1; 32],
        x25519: x25519_public(),
    };
    assert!(matches!(
        s.handle(FrameType::ClientHello, &ch.to_bytes()),
        Err(HandshakeError::UnsupportedVersion(99))
    ));
}

#[test]
fn a_low_order_key_share_is_refused() {
    let s = handshake::server_start(test_pki().server_config());
    let ch = minitls::wire::ClientHello {
        version: minitls::wire::PROTOCOL_VERSION,
        random: [1; 32],
        x25519: [0; 32],
    };
    assert!(matches!(
        s.handle(FrameType::ClientHello, &ch.to_bytes()),
        Err(HandshakeError::BadKeyShare)
    ));
}

#[test]
fn an_alert_from_the_peer_is_reported_as_such() {
    let (c, _) = good();
    let (c, _) = handshake::client_start(c);
    let alert = Alert::BadCertificate.to_bytes();
    assert!(matches!(
        c.handle(FrameType::Alert, &alert),
        Err(HandshakeError::PeerAlert(Alert::BadCertificate))
    ));
}

#[test]
fn the_handshake_log_names_each_step_and_fingerprint() {
    let lines = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (mut c, s) = good();
    let l = lines.clone();
    c.log = Arc::new(move |m| l.lock().unwrap().push(m.to_string()));
    assert!(run(c, s, |_, _| {}).both_ok());
    let lines = lines.lock().unwrap();
    let fp = pki::fingerprint_hex(&crypto::sha256(&test_pki().server.cert_der));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("ServerHello") && l.contains(&fp))
    );
    assert!(lines.iter().any(|l| l.contains("ServerFinished")));
}

// ---------------------------------------------------------------------------------------------
// ECDSA P-256 client keys (SPEC §2.9)
// ---------------------------------------------------------------------------------------------

fn p256_client_config() -> ClientConfig {
    let p = test_pki();
    let key = testkit::p256_key();
    let mut c = p.client_config();
    c.identity = testkit::p256_client(&p.ca, "ec-client", &key);
    c
}

#[test]
fn a_client_with_an_ecdsa_p256_key_completes_the_handshake() {
    let o = run(p256_client_config(), test_pki().server_config(), |_, _| {});
    let server = o.server.unwrap();
    assert!(o.client.is_ok());
    assert!(matches!(server.peer.public_key, pki::PeerKey::P256(_)));
    assert!(server.peer.subject.contains("ec-client"));
    // Its CertificateVerify is the 64-byte r || s of ECDSA-SHA256.
    let (_, cv) = parse(&o.sent[3]).unwrap();
    let cv = CertificateVerify::decode(&cv).unwrap();
    assert_eq!(cv.signature.len(), 64);
}

#[test]
fn an_ecdsa_client_must_prove_it_holds_its_key() {
    let p = test_pki();
    let victim = testkit::p256_client(&p.ca, "ec-client", &testkit::p256_key());
    // The attacker has the EC certificate and signs with another P-256 key.
    let mut c = p.client_config();
    c.identity = Arc::new(handshake::LocalIdentity::new(pki::Identity {
        cert_der: victim.cert_der.clone(),
        key: pki::PrivateKey::P256(testkit::p256_key()),
        chain: Vec::new(),
    }));
    let o = run(c, p.server_config(), |_, _| {});
    assert!(matches!(
        server_err(&o),
        HandshakeError::BadSignature(Role::Client)
    ));
    // And any altered bit of its signature is caught.
    let c = p256_client_config();
    for pos in [5, 20, 40, 68] {
        let o = run(c.clone(), p.server_config(), |i, f| {
            if i == 3 {
                f[pos] ^= 1;
            }
        });
        assert!(o.server.is_err(), "flip at {pos} accepted");
    }
}

#[test]
fn an_ecdsa_key_is_refused_for_a_server_in_words() {
    let p = test_pki();
    let key = testkit::p256_key();
    let now = pki::now_unix();
    let spec = pki::LeafSpec {
        role: Role::Server,
        common_name: "localhost".into(),
        sans: pki::San::default_server_names(),
        not_before_unix: now - DAY,
        not_after_unix: now + DAY,
    };
    let der = pki::issue_leaf_for(
        &p.ca,
        &spec,
        &pki::PeerKey::P256(*key.verifying_key()),
        &LeafOverrides::default(),
    )
    .unwrap();
    let err =
        pki::verify_certificate(&p.anchor, &der, Role::Server, Some("localhost"), now).unwrap_err();
    assert!(matches!(err, CertError::UnsupportedKey { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("an EC key on P-256") && text.contains("needs an RSA key"),
        "{text}"
    );
    // A server configured with it fails the client's check of its certificate.
    let mut s = p.server_config();
    s.identity = Arc::new(handshake::LocalIdentity::new(
        pki::Identity::from_parts(der, pki::PrivateKey::P256(key)).unwrap(),
    ));
    let o = run(p.client_config(), s, |_, _| {});
    assert!(matches!(
        client_err(&o),
        HandshakeError::PeerCertificate {
            role: Role::Server,
            ..
        }
    ));
}
