//! Expiry and inventory (issue 12 item 5): `ca check` exit statuses at the boundary, `ca show`
//! statuses for bundles and DER, warnings about our own certificate, and an expired client
//! certificate stopped before it is sent.

mod common;

use std::fs;

use common::{Workspace, fails_with, ok, stderr};
use minitls::pki::{self, CaKeyPair, LeafSpec, Role, San};

const DAY: i64 = 86_400;

/// Issues a certificate for the workspace's `ca/<role>.key` from its CA, valid until
/// `not_after`, and writes it to `name`.
fn issue(w: &Workspace, role: Role, not_before: i64, not_after: i64, name: &str) {
    let ca = CaKeyPair::from_pem(
        &fs::read_to_string(w.join("ca/ca.crt")).unwrap(),
        &fs::read_to_string(w.join("ca/ca.key")).unwrap(),
    )
    .unwrap();
    let key =
        pki::private_key_from_pem(&fs::read_to_string(w.join(&format!("ca/{role}.key"))).unwrap())
            .unwrap();
    let spec = LeafSpec {
        role,
        common_name: format!("short-{role}"),
        sans: match role {
            Role::Server => San::default_server_names(),
            Role::Client => Vec::new(),
        },
        not_before_unix: not_before,
        not_after_unix: not_after,
    };
    let der = pki::issue_leaf(&ca, &spec, &key).unwrap();
    fs::write(w.join(name), pki::der_to_pem(&der)).unwrap();
}

#[test]
fn ca_check_exit_status_turns_at_the_within_boundary() {
    let w = Workspace::new();
    let now = pki::now_unix();
    // Two minutes either side of exactly 10 days from now (the test takes far less).
    issue(
        &w,
        Role::Client,
        now - DAY,
        now + 10 * DAY + 120,
        "after.crt",
    );
    issue(
        &w,
        Role::Client,
        now - DAY,
        now + 10 * DAY - 120,
        "before.crt",
    );
    let o = w.run(&["ca", "check", "--within", "10", "after.crt"]);
    assert!(ok(&o).contains("nothing expires within 10 days"));
    let o = w.run(&["ca", "check", "--within", "10", "before.crt"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let listed = common::stdout(&o);
    assert!(
        listed.contains("before.crt") && listed.contains("in 9 days"),
        "{listed}"
    );
    // Several files: the one inside the window is listed, the other not.
    let o = w.run(&["ca", "check", "--within", "10", "after.crt", "before.crt"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!common::stdout(&o).contains("after.crt"));
    // An expired certificate counts whatever the window.
    issue(&w, Role::Client, now - 10 * DAY, now - DAY, "expired.crt");
    let o = w.run(&["ca", "check", "--within", "0", "expired.crt"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(common::stdout(&o).contains("expired on"));
}

#[test]
fn ca_check_of_a_ca_directory_covers_its_certificates_and_crl() {
    let w = Workspace::new();
    // The template's leaves last 825 days, the CA ten years.
    assert!(ok(&w.run(&["ca", "check"])).contains("nothing expires within 30 days"));
    let o = w.run(&["ca", "check", "--within", "900"]);
    assert_eq!(o.status.code(), Some(1));
    let listed = common::stdout(&o);
    assert!(listed.contains("server certificate"), "{listed}");
    assert!(listed.contains("client certificate"), "{listed}");
    assert!(!listed.contains("CA certificate"), "{listed}");
    // A CRL valid for 5 days is listed under a 30-day window; a revoked client is not.
    ok(&w.run(&["ca", "revoke", "ca/client.crt", "--days", "5"]));
    let o = w.run(&["ca", "check"]);
    assert_eq!(o.status.code(), Some(1));
    let listed = common::stdout(&o);
    assert!(listed.contains("CRL"), "{listed}");
    assert!(!listed.contains("client certificate"), "{listed}");
}

#[test]
fn ca_show_gives_a_status_for_each_certificate_of_a_bundle_and_of_der() {
    let w = Workspace::new();
    let now = pki::now_unix();
    issue(
        &w,
        Role::Client,
        now - DAY,
        now + 5 * DAY + 3600,
        "soon.crt",
    );
    issue(&w, Role::Client, now - 10 * DAY, now - DAY, "old.crt");
    let bundle = fs::read_to_string(w.join("soon.crt")).unwrap()
        + &fs::read_to_string(w.join("old.crt")).unwrap();
    fs::write(w.join("bundle.pem"), bundle).unwrap();
    let der = pki::pem_to_der(&fs::read_to_string(w.join("ca/server.crt")).unwrap()).unwrap();
    fs::write(w.join("server.der"), der).unwrap();
    let text = ok(&w.run(&["ca", "show", "bundle.pem", "server.der"]));
    assert!(text.contains("bundle.pem (certificate 1 of 2)"), "{text}");
    assert!(
        text.contains("status:              expires in 5 days"),
        "{text}"
    );
    assert!(text.contains("status:              expired"), "{text}");
    assert!(text.contains("status:              valid"), "{text}");

    ok(&w.run(&["ca", "revoke", "ca/client.crt"]));
    let json = ok(&w.run(&["ca", "show", "--json", "ca/client.crt", "bundle.pem"]));
    let lines: Vec<&str> = json.lines().collect();
    assert_eq!(lines.len(), 3, "{json}");
    assert!(lines[0].contains("\"status\":\"revoked\""), "{json}");
    assert!(
        lines[1].contains("\"status\":\"expires in 5 days\""),
        "{json}"
    );
    assert!(lines[2].contains("\"index\":1") && lines[2].contains("\"status\":\"expired\""));
}

#[test]
fn an_expired_client_certificate_is_refused_before_the_handshake_saying_so() {
    let w = Workspace::new();
    let server = w.serve(&[]);
    let now = pki::now_unix();
    issue(&w, Role::Client, now - 10 * DAY, now - DAY, "expired.crt");
    let o = w.run(&[
        "fetch",
        "hello.txt",
        "--server",
        &server.addr,
        "--cert",
        "expired.crt",
        "--key",
        "ca/client.key",
        "--ca-cert",
        "ca/ca.crt",
    ]);
    let line = fails_with(&o, 4);
    assert!(line.contains("expired.crt expired on"), "{line}");
    // Nothing reached the server.
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!server.log().contains("handshake"), "{}", server.log());
}

#[test]
fn serve_and_fetch_warn_when_their_own_certificate_expires_within_30_days() {
    let w = Workspace::new();
    let now = pki::now_unix();
    issue(
        &w,
        Role::Server,
        now - DAY,
        now + 5 * DAY + 3600,
        "short-server.crt",
    );
    issue(
        &w,
        Role::Client,
        now - DAY,
        now + 5 * DAY + 3600,
        "short-client.crt",
    );
    let server = w.serve(&[
        "--cert",
        "short-server.crt",
        "--key",
        "ca/server.key",
        "--ca-cert",
        "ca/ca.crt",
    ]);
    assert!(
        server
            .log()
            .contains("warning: our server certificate short-server.crt expires in 5 day(s)"),
        "{}",
        server.log()
    );
    let o = w.run(&[
        "fetch",
        "hello.txt",
        "--server",
        &server.addr,
        "--cert",
        "short-client.crt",
        "--key",
        "ca/client.key",
        "--ca-cert",
        "ca/ca.crt",
    ]);
    ok(&o);
    assert!(
        stderr(&o).contains("warning: our client certificate short-client.crt expires in 5 day(s)"),
        "{}",
        stderr(&o)
    );
    // A certificate with months left says nothing.
    let o = w.run(&["fetch", "hello.txt", "--server", &server.addr]);
    ok(&o);
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
}
