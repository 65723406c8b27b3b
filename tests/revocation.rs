//! Revocation (SPEC §2.10) and the reasons a refused certificate is given to its owner: in
//! memory through the real handshake over a pipe, and end to end with the real binary
//! (`ca revoke`, a running `serve` that picks up a new CRL without a restart).

mod common;

use std::fs;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Workspace, fails, fails_with, ok};
use minitls::conn::{self, ConnError};
use minitls::handshake::{ClientConfig, HandshakeError, ServerConfig};
use minitls::mem;
use minitls::pki::{self, CaKeyPair, CertError, Crl, Revocation, Role};
use minitls::testkit::{self, pki as test_pki};
use minitls::wire::Alert;

const DAY: i64 = 86_400;

/// Runs the real handshake of both ends over an in-memory pipe.
fn handshake(
    client: ClientConfig,
    server: ServerConfig,
) -> (Result<(), ConnError>, Result<(), ConnError>) {
    let (a, b) = mem::pair();
    let deadline = Some(Instant::now() + Duration::from_secs(20));
    let server = std::thread::spawn(move || conn::server_handshake(b, server, deadline).map(drop));
    // The client's handshake ends when it reads the server's last flight (or its alert).
    let client =
        conn::client_handshake(a, client, deadline).and_then(|mut c| c.complete_handshake());
    (
        client,
        server.join().expect("the server thread does not panic"),
    )
}

fn crl_revoking(ca: &CaKeyPair, serials: &[&[u8]]) -> Arc<Crl> {
    let now = pki::now_unix();
    let entries: Vec<Revocation> = serials
        .iter()
        .map(|s| Revocation {
            serial: s.to_vec(),
            revoked_at_unix: now - 60,
        })
        .collect();
    let der = pki::make_crl(ca, &entries, now - 60, now + DAY, 1).unwrap();
    Arc::new(Crl::from_der(&der, &ca.anchor().clone()).unwrap())
}

fn serial(der: &[u8]) -> Vec<u8> {
    pki::parse_serial_hex(&pki::serial_hex(der).unwrap()).unwrap()
}

fn handshake_err(r: &Result<(), ConnError>) -> &HandshakeError {
    match r {
        Err(ConnError::Handshake(h)) => h,
        other => panic!("expected a handshake error, got {other:?}"),
    }
}

#[test]
fn a_revoked_client_is_refused_and_both_ends_say_revoked() {
    let p = test_pki();
    let crl = crl_revoking(&p.ca, &[&serial(&p.client.cert_der)]);
    let mut server = p.server_config();
    server.crl = Some(crl);
    let (c, s) = handshake(p.client_config(), server);
    assert!(matches!(
        handshake_err(&s),
        HandshakeError::PeerCertificate {
            role: Role::Client,
            source: CertError::Revoked { .. }
        }
    ));
    assert!(handshake_err(&s).to_string().contains("revoked"));
    assert!(matches!(
        handshake_err(&c),
        HandshakeError::PeerAlert(Alert::CertificateRevoked)
    ));
    assert!(handshake_err(&c).to_string().contains("revoked"));
    // Without the list the same client gets in.
    let (c, s) = handshake(p.client_config(), p.server_config());
    c.unwrap();
    s.unwrap();
}

#[test]
fn a_revoked_server_is_refused_by_the_client() {
    let p = test_pki();
    let mut client = p.client_config();
    client.crl = Some(crl_revoking(&p.ca, &[&serial(&p.server.cert_der)]));
    let (c, s) = handshake(client, p.server_config());
    let err = handshake_err(&c);
    assert!(
        matches!(
            err,
            HandshakeError::PeerCertificate {
                role: Role::Server,
                source: CertError::Revoked { .. }
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("revoked"), "{err}");
    assert!(matches!(
        handshake_err(&s),
        HandshakeError::PeerAlert(Alert::CertificateRevoked)
    ));
}

#[test]
fn a_refused_client_is_told_the_class_of_the_reason() {
    let p = test_pki();
    let now = pki::now_unix();
    let expired = testkit::leaf(
        &p.ca,
        Role::Client,
        "client",
        now - 10 * DAY,
        now - DAY,
        &Default::default(),
    );
    let cases = [
        (expired, Alert::CertificateExpired, "expired"),
        (p.server.clone(), Alert::CertificateWrongRole, "role"),
        (
            testkit::other_pki().client.clone(),
            Alert::UnknownCa,
            "trusted CA",
        ),
    ];
    for (identity, alert, words) in cases {
        let mut client = p.client_config();
        client.identity = identity;
        let (c, s) = handshake(client, p.server_config());
        assert!(s.is_err());
        let err = handshake_err(&c);
        assert!(
            matches!(err, HandshakeError::PeerAlert(a) if *a == alert),
            "{err:?}"
        );
        assert!(err.to_string().contains(words), "{err}");
    }
    // The server's own log line names the expiry too.
    let mut client = p.client_config();
    client.identity = testkit::leaf(
        &p.ca,
        Role::Client,
        "client",
        now - 10 * DAY,
        now - DAY,
        &Default::default(),
    );
    let (_, s) = handshake(client, p.server_config());
    assert!(s.unwrap_err().to_string().contains("expired"));
}

// ---------------------------------------------------------------------------------------------
// End to end
// ---------------------------------------------------------------------------------------------

fn fetch(w: &Workspace, server: &common::Server) -> std::process::Output {
    w.run(&[
        "fetch",
        "hello.txt",
        "--server",
        &server.addr,
        "--out",
        "got",
    ])
}

#[test]
fn a_revoked_client_is_refused_on_its_next_connection_without_a_server_restart() {
    let w = Workspace::new();
    let server = w.serve(&[]);
    ok(&fetch(&w, &server));

    ok(&w.run(&["ca", "revoke", "ca/client.crt"]));
    let line = fails_with(&fetch(&w, &server), 4);
    assert!(line.contains("revoked"), "{line}");
    assert!(
        server.wait_for_log("certificate is revoked"),
        "{}",
        server.log()
    );

    // `ca list` shows it (Workspace copies the CA's files, not its issued/ record).
    common::copy_dir(&common::ca_template(0).join("issued"), &w.join("ca/issued"));
    let list = ok(&w.run(&["ca", "list"]));
    let client_line = list.lines().find(|l| l.starts_with("client")).unwrap();
    assert!(client_line.ends_with("revoked"), "{list}");

    // A replacement CRL from another CA is not taken for "nothing is revoked" by the server
    // (the client, with a copy of the credentials and no CRL, does not refuse it first).
    common::copy_dir(common::ca_template(0), &w.join("client_ca"));
    let other = Workspace::new();
    common::copy_dir(common::ca_template(1), &other.join("ca"));
    ok(&other.run(&["ca", "revoke", "--serial", "01"]));
    let tmp = w.join("ca/crl.pem.new");
    fs::copy(other.join("ca/crl.pem"), &tmp).unwrap();
    fs::rename(&tmp, w.join("ca/crl.pem")).unwrap();
    let line = fails_with(
        &w.run(&[
            "fetch",
            "hello.txt",
            "--server",
            &server.addr,
            "--ca-dir",
            "client_ca",
        ]),
        4,
    );
    assert!(line.contains("revoked"), "{line}");
    assert!(
        server.wait_for_log("kept the previous CRL"),
        "{}",
        server.log()
    );
}

#[test]
fn a_revoked_server_is_refused_by_fetch() {
    let w = Workspace::new();
    let server = w.serve(&[]);
    ok(&w.run(&["ca", "revoke", "ca/server.crt"]));
    let line = fails_with(&fetch(&w, &server), 4);
    assert!(line.contains("server certificate rejected"), "{line}");
    assert!(line.contains("revoked"), "{line}");
}

#[test]
fn serve_refuses_a_crl_from_another_ca_or_past_its_next_update() {
    let w = Workspace::new();
    // Another CA's list, named with --crl or in place of ca/crl.pem.
    let other = Workspace::new();
    common::copy_dir(common::ca_template(1), &other.join("ca"));
    ok(&other.run(&["ca", "revoke", "--serial", "01"]));
    fs::copy(other.join("ca/crl.pem"), w.join("other.crl")).unwrap();
    let line = fails(&w.run(&["serve", "--crl", "other.crl", "--listen", "127.0.0.1:0"]));
    assert!(line.contains("not by the configured CA"), "{line}");
    fs::copy(other.join("ca/crl.pem"), w.join("ca/crl.pem")).unwrap();
    let line = fails(&w.run(&["serve", "--listen", "127.0.0.1:0"]));
    assert!(line.contains("ca/crl.pem"), "{line}");
    // fetch refuses it too.
    let line = fails(&w.run(&["fetch", "hello.txt", "--server", "127.0.0.1:9"]));
    assert!(line.contains("CRL"), "{line}");
    fs::remove_file(w.join("ca/crl.pem")).unwrap();

    // Our CA's list, out of date (DER, as `openssl crl -outform DER` writes).
    let ca = CaKeyPair::from_pem(
        &fs::read_to_string(w.join("ca/ca.crt")).unwrap(),
        &fs::read_to_string(w.join("ca/ca.key")).unwrap(),
    )
    .unwrap();
    let now = pki::now_unix();
    let stale = pki::make_crl(&ca, &[], now - 2 * DAY, now - DAY, 1).unwrap();
    fs::write(w.join("stale.crl"), stale).unwrap();
    let line = fails(&w.run(&["serve", "--crl", "stale.crl", "--listen", "127.0.0.1:0"]));
    assert!(line.contains("out of date"), "{line}");
    // A current one is fine.
    let fresh = pki::make_crl(&ca, &[], now - DAY, now + DAY, 2).unwrap();
    fs::write(w.join("fresh.crl"), fresh).unwrap();
    let server = w.serve(&["--crl", "fresh.crl"]);
    ok(&w.run(&[
        "fetch",
        "hello.txt",
        "--server",
        &server.addr,
        "--crl",
        "fresh.crl",
        "--out",
        "got",
    ]));
}

#[test]
fn sighup_rereads_the_crl() {
    let w = Workspace::new();
    let server = w.serve(&[]);
    ok(&w.run(&["ca", "revoke", "ca/client.crt"]));
    common::send_signal(server.pid(), "HUP");
    assert!(
        server.wait_for_log("SIGHUP: reloaded the CRL"),
        "{}",
        server.log()
    );
    let line = fails_with(&fetch(&w, &server), 4);
    assert!(line.contains("revoked"), "{line}");
}

#[test]
fn a_crl_of_any_anchor_of_a_bundle_is_read_and_speaks_only_for_that_anchor() {
    let (ours, other) = (test_pki(), testkit::other_pki());
    // The other CA revokes the serial of *our* client: with both anchors trusted, the list
    // is read, but it does not revoke a certificate our CA issued.
    let now = pki::now_unix();
    let entries = [Revocation {
        serial: serial(&ours.client.cert_der),
        revoked_at_unix: now - 60,
    }];
    let der = pki::make_crl(&other.ca, &entries, now - 60, now + DAY, 1).unwrap();
    let anchors = [&*ours.anchor, &*other.anchor];
    let crl = Crl::from_bytes_any(&der, &anchors).unwrap();
    assert!(Crl::from_bytes(&der, &ours.anchor).is_err());
    let mut server = ours.server_config();
    server.crl = Some(Arc::new(crl));
    let (c, s) = handshake(ours.client_config(), server);
    c.unwrap();
    s.unwrap();
    // The same serial revoked by our own CA is refused.
    let mut server = ours.server_config();
    server.crl = Some(crl_revoking(&ours.ca, &[&serial(&ours.client.cert_der)]));
    let (_, s) = handshake(ours.client_config(), server);
    assert!(s.is_err());
}

/// The sha256 fingerprint `-v` names for the server's certificate.
fn server_fingerprint_seen(w: &Workspace, server: &common::Server) -> String {
    // A full handshake each time (a resumed one shows no ServerHello).
    let out = w.run(&[
        "-v",
        "fetch",
        "hello.txt",
        "--no-session-cache",
        "--server",
        &server.addr,
        "--out",
        "got",
    ]);
    ok(&out);
    let err = common::stderr(&out);
    let line = err
        .lines()
        .find(|l| l.contains("ServerHello: certificate"))
        .unwrap_or_else(|| panic!("no ServerHello line in {err}"));
    let fp = line.split("(sha256 ").nth(1).unwrap();
    fp[..fp.find(')').unwrap()].to_string()
}

#[test]
fn sighup_puts_a_renewed_server_certificate_in_use_without_dropping_connections() {
    let w = Workspace::new();
    std::fs::write(w.join("server_public/big.bin"), vec![7u8; 3 << 20]).unwrap();
    let server = w.serve(&[]);
    let before = server_fingerprint_seen(&w, &server);
    // A slow transfer is in flight across the reload.
    let mut slow = common::minitls(w.path())
        .args([
            "-q",
            "fetch",
            "big.bin",
            "--server",
            &server.addr,
            "--out",
            "slow",
            "--limit-rate",
            "1M",
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    ok(&w.run(&["ca", "issue", "--role", "server", "localhost", "--force"]));
    common::send_signal(server.pid(), "HUP");
    assert!(
        server.wait_for_log("SIGHUP: reloaded the server certificate"),
        "{}",
        server.log()
    );
    let after = server_fingerprint_seen(&w, &server);
    assert_ne!(before, after);
    assert!(server.log().contains(&after), "{}", server.log());
    assert!(slow.wait().unwrap().success());
    assert_eq!(
        std::fs::read(w.join("slow/big.bin")).unwrap().len(),
        3 << 20
    );

    // A certificate that does not load is reported and the one in use stays.
    std::fs::write(w.join("ca/server.crt"), "not a certificate").unwrap();
    common::send_signal(server.pid(), "HUP");
    assert!(
        server.wait_for_log("SIGHUP: kept the previous server certificate"),
        "{}",
        server.log()
    );
    assert_eq!(server_fingerprint_seen(&w, &server), after);
}
