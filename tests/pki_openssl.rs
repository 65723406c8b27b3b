//! Interoperability of the PKI module with the `openssl` command line tool, both directions.
//!
//! Skipped, with a note on stderr, when `openssl` is not installed.

use std::fs;
use std::path::Path;
use std::process::Command;

use minitls::pki::{
    CaDir, CaKeyPair, CertError, Identity, InitOptions, LeafSpec, Role, San, TrustAnchor,
    der_to_pem, fingerprint_hex, generate_key, issue_leaf, now_unix, verify_certificate,
};

fn have_openssl() -> bool {
    let found = Command::new("openssl")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        eprintln!("note: `openssl` not found; skipping the openssl interoperability test");
    }
    found
}

/// Runs `openssl args...` in `dir`, failing the test with openssl's stderr if it fails.
fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read(dir: &Path, name: &str) -> String {
    fs::read_to_string(dir.join(name)).unwrap()
}

#[test]
fn openssl_verifies_and_reads_what_ca_dir_init_writes() {
    if !have_openssl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ca = CaDir::new(tmp.path().join("ca"));
    ca.init(&InitOptions {
        key_bits: 2048,
        ..InitOptions::default()
    })
    .unwrap();
    let dir = ca.dir.as_path();

    let out = openssl(
        dir,
        &["verify", "-CAfile", "ca.crt", "server.crt", "client.crt"],
    );
    assert!(out.contains("server.crt: OK"), "{out}");
    assert!(out.contains("client.crt: OK"), "{out}");
    // openssl's own purpose checks: EKU and key usage fit a TLS server / client.
    openssl(
        dir,
        &[
            "verify",
            "-CAfile",
            "ca.crt",
            "-purpose",
            "sslserver",
            "server.crt",
        ],
    );
    openssl(
        dir,
        &[
            "verify",
            "-CAfile",
            "ca.crt",
            "-purpose",
            "sslclient",
            "client.crt",
        ],
    );
    openssl(
        dir,
        &[
            "verify",
            "-CAfile",
            "ca.crt",
            "-verify_hostname",
            "localhost",
            "server.crt",
        ],
    );
    openssl(
        dir,
        &[
            "verify",
            "-CAfile",
            "ca.crt",
            "-verify_ip",
            "127.0.0.1",
            "server.crt",
        ],
    );
    openssl(
        dir,
        &[
            "verify",
            "-CAfile",
            "ca.crt",
            "-verify_ip",
            "::1",
            "server.crt",
        ],
    );

    for key in ["ca.key", "server.key", "client.key"] {
        assert!(read(dir, key).starts_with("-----BEGIN PRIVATE KEY-----\n"));
        openssl(dir, &["pkey", "-in", key, "-noout"]);
        openssl(dir, &["rsa", "-in", key, "-check", "-noout"]);
    }
    for cert in ["ca.crt", "server.crt", "client.crt"] {
        openssl(dir, &["x509", "-in", cert, "-noout", "-text"]);
    }
    let text = openssl(dir, &["x509", "-in", "ca.crt", "-noout", "-text"]);
    assert!(text.contains("CA:TRUE"), "{text}");
    let text = openssl(dir, &["x509", "-in", "server.crt", "-noout", "-text"]);
    assert!(text.contains("TLS Web Server Authentication"), "{text}");
    assert!(
        text.contains("DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1"),
        "{text}"
    );
    assert!(text.contains("X509v3 Authority Key Identifier"), "{text}");

    // Our fingerprint format matches openssl's.
    let out = openssl(
        dir,
        &["x509", "-in", "ca.crt", "-noout", "-fingerprint", "-sha256"],
    );
    let anchor = ca.load_anchor().unwrap();
    assert_eq!(
        out.trim(),
        format!(
            "sha256 Fingerprint={}",
            fingerprint_hex(&anchor.fingerprint())
        )
    );
}

/// Writes a CA, a server and a client certificate made only with the openssl CLI.
fn openssl_pki(dir: &Path) {
    fs::write(
        dir.join("req.cnf"),
        "[req]\ndistinguished_name = dn\nprompt = no\nx509_extensions = v3_ca\n\
         [dn]\nO = minitls tests\nCN = OpenSSL Test CA\n\
         [v3_ca]\nbasicConstraints = critical, CA:TRUE\n\
         keyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n",
    )
    .unwrap();
    let common = "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n";
    fs::write(
        dir.join("server.ext"),
        format!(
            "basicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature, keyEncipherment\n\
             extendedKeyUsage = serverAuth\nsubjectAltName = DNS:localhost, IP:127.0.0.1\n{common}"
        ),
    )
    .unwrap();
    fs::write(
        dir.join("client.ext"),
        format!(
            "basicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature\n\
             extendedKeyUsage = clientAuth\n{common}"
        ),
    )
    .unwrap();
    fs::write(
        dir.join("odd.ext"),
        format!(
            "basicConstraints = CA:FALSE\nextendedKeyUsage = serverAuth\n\
             subjectAltName = DNS:localhost\n1.3.6.1.4.1.55555.1 = critical, ASN1:NULL\n{common}"
        ),
    )
    .unwrap();
    fs::write(
        dir.join("wild.ext"),
        format!(
            "basicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature, keyEncipherment\n\
             extendedKeyUsage = serverAuth\nsubjectAltName = DNS:*.example.org\n{common}"
        ),
    )
    .unwrap();

    openssl(
        dir,
        &[
            "req", "-x509", "-config", "req.cnf", "-newkey", "rsa:2048", "-nodes", "-keyout",
            "ca.key", "-out", "ca.crt", "-days", "30", "-sha256",
        ],
    );
    for (name, cn, hash, ext) in [
        ("server", "localhost", "-sha256", "server.ext"),
        ("client", "openssl client", "-sha512", "client.ext"),
        ("odd", "odd", "-sha384", "odd.ext"),
        ("wild", "wildcard", "-sha256", "wild.ext"),
    ] {
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-config",
                "req.cnf",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={cn}"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.crt"),
                "-days",
                "30",
                hash,
                "-extfile",
                ext,
            ],
        );
        openssl(
            dir,
            &[
                "rsa",
                "-in",
                &format!("{name}.key"),
                "-traditional",
                "-out",
                &format!("{name}.pkcs1.key"),
            ],
        );
    }
}

#[test]
fn pki_made_with_openssl_loads_and_verifies() {
    if !have_openssl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    openssl_pki(dir);

    let anchor = TrustAnchor::from_pem(&read(dir, "ca.crt")).unwrap();
    assert!(
        anchor.subject().contains("CN=OpenSSL Test CA"),
        "{}",
        anchor.subject()
    );
    let now = now_unix();

    for role in [Role::Server, Role::Client] {
        let cert_pem = read(dir, &format!("{role}.crt"));
        let pkcs8 = read(dir, &format!("{role}.key"));
        let pkcs1 = read(dir, &format!("{role}.pkcs1.key"));
        assert!(pkcs8.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        let a = Identity::from_pem(&cert_pem, &pkcs8).unwrap();
        let b = Identity::from_pem(&cert_pem, &pkcs1).unwrap();
        assert_eq!(a.key.public_key(), b.key.public_key());
        let name = (role == Role::Server).then_some("localhost");
        let verified = verify_certificate(&anchor, &a.cert_der, role, name, now)
            .unwrap_or_else(|e| panic!("{role}: {e}"));
        assert_eq!(verified.public_key, a.key.public_key());
        // And not for the other role.
        assert_eq!(
            verify_certificate(&anchor, &a.cert_der, role.peer(), None, now).unwrap_err(),
            CertError::WrongUsage { role: role.peer() }
        );
    }

    let server = Identity::from_pem(&read(dir, "server.crt"), &read(dir, "server.key")).unwrap();
    verify_certificate(
        &anchor,
        &server.cert_der,
        Role::Server,
        Some("127.0.0.1"),
        now,
    )
    .unwrap();
    assert!(matches!(
        verify_certificate(&anchor, &server.cert_der, Role::Server, Some("::1"), now),
        Err(CertError::NameMismatch { .. })
    ));
    // The key of one certificate does not pass for another's.
    assert!(Identity::from_pem(&read(dir, "server.crt"), &read(dir, "client.key")).is_err());
    // A leaf is not a trust anchor.
    assert!(TrustAnchor::from_pem(&read(dir, "server.crt")).is_err());
}

#[test]
fn certificate_with_an_unknown_critical_extension_is_rejected() {
    if !have_openssl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    openssl_pki(dir);
    let anchor = TrustAnchor::from_pem(&read(dir, "ca.crt")).unwrap();
    let odd = Identity::from_pem(&read(dir, "odd.crt"), &read(dir, "odd.key")).unwrap();
    let err =
        verify_certificate(&anchor, &odd.cert_der, Role::Server, None, now_unix()).unwrap_err();
    assert_eq!(
        err,
        CertError::UnsupportedCriticalExtension("1.3.6.1.4.1.55555.1".into())
    );
}

#[test]
fn ca_made_with_openssl_issues_certificates_that_openssl_accepts() {
    if !have_openssl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    openssl_pki(dir);
    // The PKCS#1 form of the CA key works for issuing too.
    openssl(
        dir,
        &[
            "rsa",
            "-in",
            "ca.key",
            "-traditional",
            "-out",
            "ca.pkcs1.key",
        ],
    );
    let ca = CaKeyPair::from_pem(&read(dir, "ca.crt"), &read(dir, "ca.pkcs1.key")).unwrap();
    let key = generate_key(2048).unwrap();
    let now = now_unix();
    let der = issue_leaf(
        &ca,
        &LeafSpec {
            role: Role::Server,
            common_name: "files.lan".into(),
            sans: vec!["DNS:files.lan".parse::<San>().unwrap()],
            not_before_unix: now - 60,
            not_after_unix: now + 86_400,
        },
        &key,
    )
    .unwrap();
    fs::write(dir.join("ours.crt"), der_to_pem(&der)).unwrap();
    let out = openssl(
        dir,
        &[
            "verify",
            "-CAfile",
            "ca.crt",
            "-purpose",
            "sslserver",
            "-verify_hostname",
            "files.lan",
            "ours.crt",
        ],
    );
    assert!(out.contains("ours.crt: OK"), "{out}");
    verify_certificate(ca.anchor(), &der, Role::Server, Some("files.lan"), now).unwrap();
}

#[test]
fn openssl_reads_and_enforces_the_crl_ca_revoke_writes() {
    if !have_openssl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ca = CaDir::new(tmp.path().join("ca"));
    ca.init(&InitOptions {
        key_bits: 2048,
        ..InitOptions::default()
    })
    .unwrap();
    let dir = ca.dir.as_path();
    let client = minitls::pki::pem_to_der(&read(dir, "client.crt")).unwrap();
    let serial = minitls::pki::serial_hex(&client).unwrap();
    let outcome = ca
        .revoke(
            &[minitls::pki::parse_serial_hex(&serial).unwrap()],
            minitls::pki::DEFAULT_CRL_DAYS,
        )
        .unwrap();
    assert_eq!(outcome.added, vec![serial.clone()]);

    let text = openssl(dir, &["crl", "-in", "crl.pem", "-noout", "-text"]);
    assert!(text.contains(&format!("Serial Number: {serial}")), "{text}");
    assert!(text.contains("CRL Number"), "{text}");
    // openssl checks the CRL's signature against the CA.
    let checked = Command::new("openssl")
        .args(["crl", "-in", "crl.pem", "-noout", "-CAfile", "ca.crt"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&checked.stderr).contains("verify OK")
            || String::from_utf8_lossy(&checked.stdout).contains("verify OK"),
        "{checked:?}"
    );
    // And enforces it: the client is revoked, the server is not.
    let out = Command::new("openssl")
        .args([
            "verify",
            "-crl_check",
            "-CAfile",
            "ca.crt",
            "-CRLfile",
            "crl.pem",
            "client.crt",
        ])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("certificate revoked"), "{said}");
    openssl(
        dir,
        &[
            "verify",
            "-crl_check",
            "-CAfile",
            "ca.crt",
            "-CRLfile",
            "crl.pem",
            "server.crt",
        ],
    );
}

#[test]
fn a_crl_made_by_openssl_ca_is_honoured_in_pem_and_der() {
    if !have_openssl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ca = CaDir::new(tmp.path().join("ca"));
    ca.init(&InitOptions {
        key_bits: 2048,
        ..InitOptions::default()
    })
    .unwrap();
    let dir = ca.dir.as_path();
    fs::write(dir.join("index.txt"), "").unwrap();
    fs::write(dir.join("crlnumber"), "1000\n").unwrap();
    fs::write(
        dir.join("openssl-ca.cnf"),
        "[ca]\ndefault_ca = minitls\n[minitls]\ndatabase = index.txt\ncrlnumber = crlnumber\n\
         certificate = ca.crt\nprivate_key = ca.key\ndefault_md = sha256\ndefault_crl_days = 7\n",
    )
    .unwrap();
    openssl(
        dir,
        &["ca", "-config", "openssl-ca.cnf", "-revoke", "client.crt"],
    );
    openssl(
        dir,
        &[
            "ca",
            "-config",
            "openssl-ca.cnf",
            "-gencrl",
            "-out",
            "openssl-crl.pem",
        ],
    );
    openssl(
        dir,
        &[
            "crl",
            "-in",
            "openssl-crl.pem",
            "-outform",
            "DER",
            "-out",
            "openssl-crl.der",
        ],
    );
    let anchor = TrustAnchor::from_pem(&read(dir, "ca.crt")).unwrap();
    let client = minitls::pki::pem_to_der(&read(dir, "client.crt")).unwrap();
    let server = minitls::pki::pem_to_der(&read(dir, "server.crt")).unwrap();
    let now = now_unix();
    let client_v = verify_certificate(&anchor, &client, Role::Client, None, now).unwrap();
    let server_v = verify_certificate(&anchor, &server, Role::Server, None, now).unwrap();
    for file in ["openssl-crl.pem", "openssl-crl.der"] {
        let crl = minitls::pki::load_crl_file(&dir.join(file), &anchor).unwrap();
        crl.check_current(now).unwrap();
        assert!(
            matches!(crl.check(&client_v), Err(CertError::Revoked { .. })),
            "{file}"
        );
        crl.check(&server_v).unwrap();
    }
}

#[test]
fn an_openssl_made_wildcard_certificate_names_one_label_as_openssl_says() {
    if !have_openssl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    openssl_pki(dir);
    let anchor = TrustAnchor::from_pem(&read(dir, "ca.crt")).unwrap();
    let der = minitls::pki::pem_to_der(&read(dir, "wild.crt")).unwrap();
    let now = now_unix();
    for (host, ok) in [
        ("files.example.org", true),
        ("example.org", false),
        ("a.files.example.org", false),
    ] {
        // openssl's own hostname check agrees with ours on each name.
        let out = Command::new("openssl")
            .args([
                "verify",
                "-CAfile",
                "ca.crt",
                "-verify_hostname",
                host,
                "wild.crt",
            ])
            .current_dir(dir)
            .output()
            .unwrap();
        assert_eq!(out.status.success(), ok, "openssl on {host}: {out:?}");
        let ours = verify_certificate(&anchor, &der, Role::Server, Some(host), now);
        assert_eq!(ours.is_ok(), ok, "{host}: {ours:?}");
    }
}
