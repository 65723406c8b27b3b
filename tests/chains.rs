//! Certificate chains (SPEC §2.9, issue 12 item 1): a PKI made with the openssl CLI the way
//! organisations have them (a root, an issuing intermediate, leaves), used end to end, and each
//! broken link refused with its own reason.
//!
//! Skipped, with a note on stderr, when `openssl` is not installed.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{Workspace, fails, ok};
use minitls::pki::{self, CertError, Role, TrustAnchor};

const DAY: i64 = 86_400;

fn have_openssl() -> bool {
    let found = Command::new("openssl")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        eprintln!("note: `openssl` not found; skipping the chain tests");
    }
    found
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

const CA_EXT: &str = "basicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\n\
                      subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n";

/// Extension files by kind.
fn write_exts(dir: &Path) {
    let exts = [
        ("root", CA_EXT.to_string()),
        ("ca", CA_EXT.to_string()),
        ("ca0", CA_EXT.replace("CA:TRUE", "CA:TRUE, pathlen:0")),
        (
            "noca",
            "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, keyCertSign\n".into(),
        ),
        (
            "nosign",
            "basicConstraints = critical, CA:TRUE\nkeyUsage = critical, digitalSignature\n".into(),
        ),
        (
            "nc",
            format!("{CA_EXT}nameConstraints = permitted;DNS:example.org\n"),
        ),
        (
            "server",
            "basicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature, keyEncipherment\n\
             extendedKeyUsage = serverAuth\nsubjectAltName = DNS:localhost, IP:127.0.0.1\n"
                .into(),
        ),
        (
            "client",
            "basicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature\n\
             extendedKeyUsage = clientAuth\n"
                .into(),
        ),
    ];
    for (name, text) in exts {
        fs::write(dir.join(format!("{name}.ext")), text).unwrap();
    }
}

/// `name.crt` for CN `name`, with key `key`, issued by `issuer` (`None`: self-signed) with the
/// extensions of `ext`, valid for `days`.
fn cert(dir: &Path, name: &str, key: &str, issuer: Option<&str>, ext: &str, days: u32) {
    cert_hashed(dir, name, key, issuer, ext, days, "-sha256");
}

/// [`cert`] with the issuer's signature made with `hash` (`-sha384`, ...).
fn cert_hashed(
    dir: &Path,
    name: &str,
    key: &str,
    issuer: Option<&str>,
    ext: &str,
    days: u32,
    hash: &str,
) {
    let days = days.to_string();
    let ext_file = format!("{ext}.ext");
    match issuer {
        None => openssl(
            dir,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                key,
                "-subj",
                &format!("/CN={name}"),
                "-days",
                &days,
                hash,
                "-out",
                &format!("{name}.crt"),
                "-extensions",
                "v3",
                "-config",
                &format!("{ext}.cnf"),
            ],
        ),
        Some(issuer) => {
            openssl(
                dir,
                &[
                    "req",
                    "-new",
                    "-key",
                    key,
                    "-subj",
                    &format!("/CN={name}"),
                    "-out",
                    &format!("{name}.csr"),
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
                    &format!("{issuer}.crt"),
                    "-CAkey",
                    &format!("{issuer}.key"),
                    "-CAcreateserial",
                    "-days",
                    &days,
                    hash,
                    "-extfile",
                    &ext_file,
                    "-out",
                    &format!("{name}.crt"),
                ],
            );
        }
    }
}

fn key(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            &format!("{name}.key"),
        ],
    );
}

/// root -> int (10 days) -> server, client (30 days); and the broken variants.
fn chain_pki(dir: &Path) {
    write_exts(dir);
    for name in ["root", "other", "int", "leaf"] {
        key(dir, name);
    }
    for (name, key) in [("root", "root.key"), ("other", "other.key")] {
        fs::write(
            dir.join(format!("{name}.cnf")),
            format!("[req]\ndistinguished_name = dn\n[dn]\n[v3]\n{CA_EXT}"),
        )
        .unwrap();
        cert(dir, &format!("{name}-root"), key, None, name, 60);
        fs::rename(
            dir.join(format!("{name}-root.crt")),
            dir.join(format!("{name}.crt")),
        )
        .unwrap();
    }
    // int.key signs as each intermediate; leaf.key is every leaf's key.
    fs::copy(dir.join("int.key"), dir.join("int0.key")).unwrap();
    cert(dir, "int", "int.key", Some("root"), "ca", 10);
    cert(dir, "server", "leaf.key", Some("int"), "server", 30);
    cert(dir, "client", "leaf.key", Some("int"), "client", 30);
    // Broken links.
    for (name, ext) in [
        ("noca", "noca"),
        ("nosign", "nosign"),
        ("nc", "nc"),
        ("int0", "ca0"),
    ] {
        fs::copy(dir.join("int.key"), dir.join(format!("{name}.key"))).unwrap();
        cert(dir, name, "int.key", Some("root"), ext, 10);
        cert(
            dir,
            &format!("{name}-leaf"),
            "leaf.key",
            Some(name),
            "client",
            30,
        );
    }
    // Below int0 (pathlen 0): another CA, and a leaf under it.
    cert(dir, "sub", "int.key", Some("int0"), "ca", 10);
    fs::copy(dir.join("int.key"), dir.join("sub.key")).unwrap();
    cert(dir, "sub-leaf", "leaf.key", Some("sub"), "client", 30);
    // An intermediate of another root.
    cert(dir, "foreign", "int.key", Some("other"), "ca", 10);
    fs::copy(dir.join("int.key"), dir.join("foreign.key")).unwrap();
    cert(
        dir,
        "foreign-leaf",
        "leaf.key",
        Some("foreign"),
        "client",
        30,
    );
    // A leaf used as an issuer.
    fs::copy(dir.join("leaf.key"), dir.join("client.key")).unwrap();
    cert(dir, "under-leaf", "leaf.key", Some("client"), "client", 30);
}

fn der(dir: &Path, name: &str) -> Vec<u8> {
    pki::pem_to_der(&fs::read_to_string(dir.join(format!("{name}.crt"))).unwrap()).unwrap()
}

fn check(dir: &Path, leaf: &str, chain: &[&str], role: Role, at: i64) -> Result<(), CertError> {
    let root = TrustAnchor::from_pem(&fs::read_to_string(dir.join("root.crt")).unwrap()).unwrap();
    let chain: Vec<Vec<u8>> = chain.iter().map(|n| der(dir, n)).collect();
    pki::verify_chain(&[&root], &der(dir, leaf), &chain, role, None, at).map(drop)
}

#[test]
fn each_broken_link_of_an_openssl_chain_is_refused_with_its_own_reason() {
    if !have_openssl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    chain_pki(dir);
    let now = pki::now_unix();
    // The good path, and openssl agrees.
    check(dir, "client", &["int"], Role::Client, now).unwrap();
    check(dir, "server", &["int"], Role::Server, now).unwrap();
    openssl(
        dir,
        &[
            "verify",
            "-CAfile",
            "root.crt",
            "-untrusted",
            "int.crt",
            "client.crt",
        ],
    );
    // Without the intermediate there is no path.
    assert!(matches!(
        check(dir, "client", &[], Role::Client, now),
        Err(CertError::WrongIssuer { .. })
    ));
    // Wrong issuer: an intermediate of another root.
    assert!(matches!(
        check(dir, "foreign-leaf", &["foreign"], Role::Client, now),
        Err(CertError::NoPathToAnchor { .. })
    ));
    // Expired intermediate (10 days) while the leaf (30 days) is still valid.
    let e = check(dir, "client", &["int"], Role::Client, now + 20 * DAY).unwrap_err();
    assert!(matches!(e, CertError::IssuerExpired { .. }), "{e:?}");
    assert!(
        e.to_string().contains("intermediate CA \"CN=int\" expired"),
        "{e}"
    );
    // An intermediate without the CA flag, and a leaf used as an issuer.
    for (leaf, chain) in [
        ("noca-leaf", vec!["noca"]),
        ("under-leaf", vec!["client", "int"]),
    ] {
        let e = check(dir, leaf, &chain, Role::Client, now).unwrap_err();
        assert!(matches!(e, CertError::IssuerNotCa { .. }), "{leaf}: {e:?}");
        assert!(e.to_string().contains("is not a CA"), "{e}");
    }
    // Without keyCertSign.
    assert!(matches!(
        check(dir, "nosign-leaf", &["nosign"], Role::Client, now),
        Err(CertError::IssuerCannotSign { .. })
    ));
    // pathLenConstraint 0 with another CA below it.
    let e = check(dir, "sub-leaf", &["sub", "int0"], Role::Client, now).unwrap_err();
    assert!(
        matches!(
            e,
            CertError::PathLenExceeded {
                path_len: 0,
                below: 1,
                ..
            }
        ),
        "{e:?}"
    );
    // Name constraints are refused, not ignored.
    assert!(matches!(
        check(dir, "nc-leaf", &["nc"], Role::Client, now),
        Err(CertError::NameConstraints { .. })
    ));
    // More than 3 intermediates, whatever they are.
    assert!(matches!(
        check(
            dir,
            "client",
            &["int", "int", "int", "int"],
            Role::Client,
            now
        ),
        Err(CertError::TooManyIntermediates { count: 4 })
    ));
    // The order of the intermediates does not matter; a tampered one breaks the signature.
    assert!(matches!(
        check(dir, "sub-leaf", &["int0", "sub"], Role::Client, now),
        Err(CertError::PathLenExceeded { .. })
    ));
    let mut bad = der(dir, "int");
    let n = bad.len();
    bad[n - 10] ^= 1;
    let root = TrustAnchor::from_pem(&fs::read_to_string(dir.join("root.crt")).unwrap()).unwrap();
    assert!(matches!(
        pki::verify_chain(
            &[&root],
            &der(dir, "client"),
            &[bad],
            Role::Client,
            None,
            now
        ),
        Err(CertError::IssuerSignatureInvalid { .. })
    ));
}

#[test]
fn serve_and_fetch_work_with_chain_files_and_a_bundle_of_roots() {
    if !have_openssl() {
        return;
    }
    let w = Workspace::without_ca();
    let dir = w.path();
    chain_pki(dir);
    let cat = |parts: &[&str], to: &str| {
        let text: String = parts
            .iter()
            .map(|p| fs::read_to_string(dir.join(p)).unwrap())
            .collect();
        fs::write(dir.join(to), text).unwrap();
    };
    cat(&["server.crt", "int.crt"], "server-chain.pem");
    cat(&["client.crt", "int.crt"], "client-chain.pem");
    // The client trusts a bundle: another root first, then ours.
    cat(&["other.crt", "root.crt"], "roots.pem");
    let server = w.serve(&[
        "--cert",
        "server-chain.pem",
        "--key",
        "leaf.key",
        "--ca-cert",
        "root.crt",
    ]);
    ok(&w.run(&[
        "fetch",
        "hello.txt",
        "--server",
        &server.addr,
        "--cert",
        "client-chain.pem",
        "--key",
        "leaf.key",
        "--ca-cert",
        "roots.pem",
    ]));
    // The leaf alone: the server cannot find the path, and says so to the client. (A full
    // handshake: the session of the fetch above, resumed, would carry the chain it verified.)
    let line = fails(&w.run(&[
        "fetch",
        "hello.txt",
        "--no-session-cache",
        "--server",
        &server.addr,
        "--cert",
        "client.crt",
        "--key",
        "leaf.key",
        "--ca-cert",
        "root.crt",
    ]));
    assert!(line.contains("rejected our client certificate"), "{line}");
    assert!(
        server.wait_for_log("it was issued by \"CN=int\""),
        "{}",
        server.log()
    );

    // A server whose own chain is incomplete refuses to start, saying what is wrong.
    let line = fails(&w.run(&[
        "serve",
        "--cert",
        "server.crt",
        "--key",
        "leaf.key",
        "--ca-cert",
        "root.crt",
        "--listen",
        "127.0.0.1:0",
    ]));
    assert!(
        line.contains("our server certificate does not verify"),
        "{line}"
    );
}

fn ec_key(dir: &Path, name: &str, curve: &str) {
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            &format!("ec_paramgen_curve:{curve}"),
            "-out",
            &format!("{name}.key"),
        ],
    );
}

#[test]
fn ecdsa_cas_sign_leaves_a_p256_client_key_works_and_other_ec_leaf_keys_are_refused_in_words() {
    if !have_openssl() {
        return;
    }
    let w = Workspace::without_ca();
    let dir = w.path();
    write_exts(dir);
    // RSA root -> EC P-384 intermediate (signing with SHA-384) -> RSA server and client.
    key(dir, "root");
    fs::write(
        dir.join("root.cnf"),
        format!("[req]\ndistinguished_name = dn\n[dn]\n[v3]\n{CA_EXT}"),
    )
    .unwrap();
    cert(dir, "rsa-root", "root.key", None, "root", 60);
    fs::rename(dir.join("rsa-root.crt"), dir.join("root.crt")).unwrap();
    ec_key(dir, "ec384", "P-384");
    cert(dir, "ec384", "ec384.key", Some("root"), "ca", 30);
    key(dir, "leaf");
    cert_hashed(
        dir,
        "server",
        "leaf.key",
        Some("ec384"),
        "server",
        30,
        "-sha384",
    );
    cert_hashed(
        dir,
        "client",
        "leaf.key",
        Some("ec384"),
        "client",
        30,
        "-sha384",
    );
    // An EC P-256 root signing an RSA client directly (ecdsa-with-SHA256).
    ec_key(dir, "ec256", "P-256");
    fs::write(
        dir.join("ec256.cnf"),
        format!("[req]\ndistinguished_name = dn\n[dn]\n[v3]\n{CA_EXT}"),
    )
    .unwrap();
    cert(dir, "ec256", "ec256.key", None, "ec256", 60);
    cert(dir, "client256", "leaf.key", Some("ec256"), "client", 30);
    // An EC P-256 leaf key.
    ec_key(dir, "eckey", "P-256");
    cert(dir, "ecleaf", "eckey.key", Some("ec384"), "client", 30);

    let now = pki::now_unix();
    check(dir, "server", &["ec384"], Role::Server, now).unwrap();
    check(dir, "client", &["ec384"], Role::Client, now).unwrap();
    let ec_root =
        TrustAnchor::from_pem(&fs::read_to_string(dir.join("ec256.crt")).unwrap()).unwrap();
    pki::verify_chain(
        &[&ec_root],
        &der(dir, "client256"),
        &[],
        Role::Client,
        None,
        now,
    )
    .unwrap();
    // A flipped bit in an ECDSA signature is caught.
    let mut bad = der(dir, "client256");
    let n = bad.len();
    bad[n - 5] ^= 1;
    assert!(pki::verify_chain(&[&ec_root], &bad, &[], Role::Client, None, now).is_err());
    // A CRL signed by the EC root (openssl ca -gencrl) is read and revokes the client.
    fs::write(dir.join("index.txt"), "").unwrap();
    fs::write(dir.join("crlnumber"), "01\n").unwrap();
    fs::write(
        dir.join("ec-ca.cnf"),
        "[ca]\ndefault_ca = ec\n[ec]\ndatabase = index.txt\ncrlnumber = crlnumber\n\
         certificate = ec256.crt\nprivate_key = ec256.key\ndefault_md = sha256\n\
         default_crl_days = 7\n",
    )
    .unwrap();
    openssl(
        dir,
        &["ca", "-config", "ec-ca.cnf", "-revoke", "client256.crt"],
    );
    openssl(
        dir,
        &["ca", "-config", "ec-ca.cnf", "-gencrl", "-out", "ec.crl"],
    );
    let crl = pki::load_crl_file(&dir.join("ec.crl"), &ec_root).unwrap();
    let verified = pki::verify_chain(
        &[&ec_root],
        &der(dir, "client256"),
        &[],
        Role::Client,
        None,
        now,
    )
    .unwrap();
    assert!(matches!(
        crl.check(&verified),
        Err(CertError::Revoked { .. })
    ));
    // The EC P-256 leaf: a client may hold it; a server may not, which is said in words, as
    // is a client key on P-384; no bare OID.
    check(dir, "ecleaf", &["ec384"], Role::Client, now).unwrap();
    let e = check(dir, "ecleaf", &["ec384"], Role::Server, now).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("an EC key on P-256"), "{text}");
    assert!(text.contains("needs an RSA key"), "{text}");
    assert!(!text.contains("1.2.840"), "{text}");
    ec_key(dir, "eckey384", "P-384");
    cert(
        dir,
        "ecleaf384",
        "eckey384.key",
        Some("ec384"),
        "client",
        30,
    );
    let text = check(dir, "ecleaf384", &["ec384"], Role::Client, pki::now_unix())
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("an EC key on P-384") && text.contains("or an EC key on P-256"),
        "{text}"
    );

    // End to end through the EC intermediate.
    let cat = |parts: &[&str], to: &str| {
        let text: String = parts
            .iter()
            .map(|p| fs::read_to_string(dir.join(p)).unwrap())
            .collect();
        fs::write(dir.join(to), text).unwrap();
    };
    cat(&["server.crt", "ec384.crt"], "server-chain.pem");
    cat(&["client.crt", "ec384.crt"], "client-chain.pem");
    let server = w.serve(&[
        "--cert",
        "server-chain.pem",
        "--key",
        "leaf.key",
        "--ca-cert",
        "root.crt",
    ]);
    ok(&w.run(&[
        "fetch",
        "hello.txt",
        "--server",
        &server.addr,
        "--cert",
        "client-chain.pem",
        "--key",
        "leaf.key",
        "--ca-cert",
        "root.crt",
    ]));
    // The EC P-256 client (its key as openssl genpkey writes it, PKCS#8) fetches through the
    // EC intermediate, and the same key as SEC1 (`BEGIN EC PRIVATE KEY`) works too.
    cat(&["ecleaf.crt", "ec384.crt"], "ec-chain.pem");
    openssl(dir, &["ec", "-in", "eckey.key", "-out", "eckey-sec1.key"]);
    assert!(
        fs::read_to_string(dir.join("eckey-sec1.key"))
            .unwrap()
            .contains("BEGIN EC PRIVATE KEY")
    );
    for key in ["eckey.key", "eckey-sec1.key"] {
        ok(&w.run(&[
            "fetch",
            "hello.txt",
            "--server",
            &server.addr,
            "--cert",
            "ec-chain.pem",
            "--key",
            key,
            "--ca-cert",
            "root.crt",
        ]));
    }
    // It uploads too (the server checked its ECDSA statement signature before storing).
    fs::write(
        dir.join("policy.toml"),
        "[[grant]]\nclients = [\"*\"]\nread = [\".\"]\nwrite = [\"uploads\"]\n",
    )
    .unwrap();
    fs::write(dir.join("note.txt"), "from an EC key\n").unwrap();
    let writable = w.serve(&[
        "--cert",
        "server-chain.pem",
        "--key",
        "leaf.key",
        "--ca-cert",
        "root.crt",
        "--policy",
        "policy.toml",
    ]);
    ok(&w.run(&[
        "push",
        "note.txt",
        "--to",
        "uploads",
        "--server",
        &writable.addr,
        "--cert",
        "ec-chain.pem",
        "--key",
        "eckey.key",
        "--ca-cert",
        "root.crt",
    ]));
    drop(writable);
    assert_eq!(
        fs::read_to_string(dir.join("server_public/uploads/note.txt")).unwrap(),
        "from an EC key\n"
    );
    let sidecar =
        fs::read_to_string(dir.join("server_public/uploads/note.txt.minitls-sig")).unwrap();
    assert!(sidecar.contains("minitls-upload-signature v1"), "{sidecar}");
    // Checked offline through the EC intermediate, the ECDSA statement signature names the
    // client.
    let said = ok(&w.run(&[
        "verify",
        "server_public/uploads/note.txt",
        "--ca-cert",
        "root.crt",
    ]));
    assert!(said.contains("signed by client 'CN=ecleaf'"), "{said}");
    // A P-384 client key is refused before connecting, in words.
    cat(&["ecleaf384.crt", "ec384.crt"], "ec384-chain.pem");
    let line = fails(&w.run(&[
        "fetch",
        "hello.txt",
        "--server",
        &server.addr,
        "--cert",
        "ec384-chain.pem",
        "--key",
        "eckey384.key",
        "--ca-cert",
        "root.crt",
    ]));
    assert!(!line.contains("1.2.840"), "{line}");
    assert!(line.contains("P-384") && line.contains("P-256"), "{line}");
    // An EC server key: serve refuses to start and says why.
    cert(dir, "ecserver", "eckey.key", Some("ec384"), "server", 30);
    cat(&["ecserver.crt", "ec384.crt"], "ecserver-chain.pem");
    let out = w.run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--cert",
        "ecserver-chain.pem",
        "--key",
        "eckey.key",
        "--ca-cert",
        "root.crt",
    ]);
    let line = fails(&out);
    assert!(
        line.contains("an EC key on P-256") && line.contains("needs an RSA key"),
        "{line}"
    );
}

#[test]
fn rsa_pss_certificate_signatures_verify_and_sha1_pss_is_refused_in_words() {
    if !have_openssl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_exts(dir);
    key(dir, "root");
    fs::write(
        dir.join("root.cnf"),
        format!("[req]\ndistinguished_name = dn\n[dn]\n[v3]\n{CA_EXT}"),
    )
    .unwrap();
    cert(dir, "rsa-root", "root.key", None, "root", 60);
    fs::rename(dir.join("rsa-root.crt"), dir.join("root.crt")).unwrap();
    key(dir, "leaf");
    openssl(
        dir,
        &[
            "req", "-new", "-key", "leaf.key", "-subj", "/CN=pss", "-out", "pss.csr",
        ],
    );
    let sign = |out: &str, hash: &str, salt: &str| {
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "pss.csr",
                "-CA",
                "root.crt",
                "-CAkey",
                "root.key",
                "-CAcreateserial",
                "-days",
                "30",
                hash,
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                &format!("rsa_pss_saltlen:{salt}"),
                "-sigopt",
                &format!("rsa_mgf1_md:{}", &hash[1..]),
                "-extfile",
                "client.ext",
                "-out",
                out,
            ],
        );
    };
    sign("pss256.crt", "-sha256", "digest");
    sign("pss384.crt", "-sha384", "20");
    sign("pss1.crt", "-sha1", "digest");
    let now = pki::now_unix();
    check(dir, "pss256", &[], Role::Client, now).unwrap();
    check(dir, "pss384", &[], Role::Client, now).unwrap();
    let e = check(dir, "pss1", &[], Role::Client, now).unwrap_err();
    assert!(matches!(e, CertError::UnsupportedAlgorithm(_)), "{e:?}");
    assert!(
        e.to_string()
            .contains("RSASSA-PSS with a hash other than SHA-256/384/512"),
        "{e}"
    );
    // A flipped bit in a PSS signature is caught.
    let mut bad = der(dir, "pss256");
    let n = bad.len();
    bad[n - 3] ^= 1;
    let root = TrustAnchor::from_pem(&fs::read_to_string(dir.join("root.crt")).unwrap()).unwrap();
    assert!(matches!(
        pki::verify_chain(&[&root], &bad, &[], Role::Client, None, now),
        Err(CertError::NotSignedByCa)
    ));
}

#[test]
fn files_from_a_server_behind_an_intermediate_verify_offline_with_the_chain_kept_beside_them() {
    if !have_openssl() {
        return;
    }
    let w = Workspace::without_ca();
    let dir = w.path();
    chain_pki(dir);
    let cat = |parts: &[&str], to: &str| {
        let text: String = parts
            .iter()
            .map(|p| fs::read_to_string(dir.join(p)).unwrap())
            .collect();
        fs::write(dir.join(to), text).unwrap();
    };
    cat(&["server.crt", "int.crt"], "server-chain.pem");
    cat(&["client.crt", "int.crt"], "client-chain.pem");
    fs::create_dir_all(w.join("server_public/docs")).unwrap();
    fs::write(w.join("server_public/docs/a.txt"), "a").unwrap();
    fs::write(
        w.join("policy.toml"),
        "[[grant]]\nclients = [\"*\"]\nread = [\".\"]\nwrite = [\"up\"]\n",
    )
    .unwrap();
    let server = w.serve(&[
        "--cert",
        "server-chain.pem",
        "--key",
        "leaf.key",
        "--ca-cert",
        "root.crt",
        "--policy",
        "policy.toml",
    ]);
    let creds = [
        "--server",
        &server.addr,
        "--cert",
        "client-chain.pem",
        "--key",
        "leaf.key",
        "--ca-cert",
        "root.crt",
    ];
    let with_creds = |args: &[&str]| {
        let mut v: Vec<&str> = args.to_vec();
        v.extend_from_slice(&creds);
        w.run(&v)
    };
    ok(&with_creds(&["fetch", "hello.txt"]));
    ok(&with_creds(&["fetch", "-r", "docs"]));
    // The sidecar and the manifest hold the server's certificate, then the intermediate.
    let sidecar = fs::read_to_string(w.join("client_received/hello.txt.minitls-sig")).unwrap();
    assert_eq!(sidecar.matches("BEGIN CERTIFICATE").count(), 2, "{sidecar}");
    let manifest = fs::read_to_string(w.join("client_received/docs.minitls-manifest")).unwrap();
    assert_eq!(
        manifest.matches("BEGIN CERTIFICATE").count(),
        2,
        "{manifest}"
    );
    // Checked offline against the root alone, link by link.
    let verify = |what: &str| {
        w.run(&[
            "verify",
            "--ca-cert",
            "root.crt",
            &format!("client_received/{what}"),
        ])
    };
    assert!(ok(&verify("hello.txt")).contains("signed by 'CN=server'"));
    assert!(ok(&verify("docs")).starts_with("OK client_received/docs (1 file"));
    ok(&verify("docs/a.txt"));

    // An upload's sidecar on the server keeps the client's chain the same way.
    fs::write(w.join("note.txt"), "from the client").unwrap();
    ok(&with_creds(&["push", "note.txt", "--to", "up"]));
    let o = w.run(&[
        "verify",
        "--ca-cert",
        "root.crt",
        "server_public/up/note.txt",
    ]);
    assert!(
        ok(&o).contains("uploaded and signed by client 'CN=client'"),
        "{}",
        common::stdout(&o)
    );

    // Without the intermediate there is no path to the root: refused, naming the issuer.
    let leaf_only: String = sidecar
        .split_inclusive("-----END CERTIFICATE-----\n")
        .take(1)
        .collect();
    fs::write(w.join("client_received/hello.txt.minitls-sig"), &leaf_only).unwrap();
    let line = common::fails_with(&verify("hello.txt"), 7);
    assert!(line.contains("CN=int"), "{line}");
    // Nor does an intermediate of another root stand in for it.
    let foreign = format!(
        "{leaf_only}{}",
        fs::read_to_string(dir.join("foreign.crt")).unwrap()
    );
    fs::write(w.join("client_received/hello.txt.minitls-sig"), foreign).unwrap();
    let line = common::fails_with(&verify("hello.txt"), 7);
    assert!(line.contains("CN=int"), "{line}");
    // The intermediate back in place: it verifies again.
    fs::write(w.join("client_received/hello.txt.minitls-sig"), &sidecar).unwrap();
    ok(&verify("hello.txt"));
}

/// `NAME.crl` (PEM): a CRL issued by `ca` (`ca.crt`, `ca.key` in `dir`) revoking `revoke`
/// (certificate files), made with `openssl ca -gencrl`; `dates` sets lastUpdate and
/// nextUpdate (YYYYMMDDHHMMSSZ).
fn gencrl(dir: &Path, name: &str, ca: &str, revoke: &[&str], dates: Option<(&str, &str)>) {
    let db = dir.join(format!("db-{name}"));
    fs::create_dir(&db).unwrap();
    fs::write(db.join("index.txt"), "").unwrap();
    fs::write(db.join("crlnumber"), "1000\n").unwrap();
    fs::write(
        db.join("ca.cnf"),
        format!(
            "[ca]\ndefault_ca = x\n[x]\ndatabase = index.txt\ncrlnumber = crlnumber\n\
             certificate = {root}/{ca}.crt\nprivate_key = {root}/{ca}.key\ndefault_md = sha256\n\
             default_crl_days = 7\n",
            root = dir.display()
        ),
    )
    .unwrap();
    for cert in revoke {
        let path = dir.join(cert).display().to_string();
        openssl(&db, &["ca", "-config", "ca.cnf", "-revoke", &path]);
    }
    let out = dir.join(format!("{name}.crl")).display().to_string();
    let mut args = vec!["ca", "-config", "ca.cnf", "-gencrl", "-out", &out];
    if let Some((last, next)) = dates {
        args.extend(["-crl_lastupdate", last, "-crl_nextupdate", next]);
    }
    openssl(&db, &args);
}

#[test]
fn a_leaf_revoked_by_its_intermediates_crl_is_refused_both_ways_and_a_forged_one_is_not_used() {
    if !have_openssl() {
        return;
    }
    let w = Workspace::without_ca();
    let dir = w.path();
    chain_pki(dir);
    let cat = |parts: &[&str], to: &str| {
        let text: String = parts
            .iter()
            .map(|p| fs::read_to_string(dir.join(p)).unwrap())
            .collect();
        fs::write(dir.join(to), text).unwrap();
    };
    cat(&["server.crt", "int.crt"], "server-chain.pem");
    cat(&["client.crt", "int.crt"], "client-chain.pem");
    // The root's list (revoking nothing) and the intermediate's lists.
    gencrl(dir, "root", "root", &[], None);
    gencrl(dir, "int-none", "int", &[], None);
    gencrl(dir, "int-server", "int", &["server.crt"], None);
    gencrl(dir, "int-client", "int", &["client.crt"], None);
    // A list that claims to be the intermediate's, signed by another key: "CN=int",
    // self-signed with the other root's key.
    fs::write(
        dir.join("fake.cnf"),
        format!("[req]\ndistinguished_name = dn\n[dn]\n[v3]\n{CA_EXT}"),
    )
    .unwrap();
    fs::copy(dir.join("other.key"), dir.join("fake-int.key")).unwrap();
    let subject = |name: &str| {
        let o = Command::new("openssl")
            .args(["x509", "-noout", "-subject", "-in", name])
            .current_dir(dir)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "other.key",
            "-subj",
            "/CN=int",
            "-days",
            "10",
            "-sha256",
            "-out",
            "fake-int.crt",
            "-extensions",
            "v3",
            "-config",
            "fake.cnf",
        ],
    );
    assert_eq!(subject("fake-int.crt"), subject("int.crt"));
    gencrl(dir, "forged", "fake-int", &["server.crt"], None);
    // The intermediate's list, past its nextUpdate.
    gencrl(
        dir,
        "int-stale",
        "int",
        &[],
        Some(("20200101000000Z", "20200102000000Z")),
    );

    let fetch = |server: &str, crl: &str| {
        w.run(&[
            "fetch",
            "hello.txt",
            "--server",
            server,
            "--cert",
            "client-chain.pem",
            "--key",
            "leaf.key",
            "--ca-cert",
            "root.crt",
            "--crl",
            crl,
        ])
    };
    let serve = |crl: &str| {
        w.serve(&[
            "--cert",
            "server-chain.pem",
            "--key",
            "leaf.key",
            "--ca-cert",
            "root.crt",
            "--crl",
            crl,
        ])
    };

    // Client side: the server's leaf, revoked by the intermediate (in a file with the root's
    // list), is refused as revoked.
    cat(&["root.crl", "int-none.crl"], "none.pem");
    cat(&["root.crl", "int-server.crl"], "server-revoked.pem");
    cat(&["root.crl", "int-client.crl"], "client-revoked.pem");
    cat(&["root.crl", "forged.crl"], "forged.pem");
    let server = serve("none.pem");
    // No warning: the intermediate's list names a CA of the server's own chain.
    assert!(
        !server.log().contains("from no CA we know"),
        "{}",
        server.log()
    );
    ok(&fetch(&server.addr, "none.pem"));
    let line = common::fails_with(&fetch(&server.addr, "server-revoked.pem"), 4);
    assert!(line.contains("server certificate rejected"), "{line}");
    assert!(line.contains("revoked"), "{line}");

    // A forged list is not used: it does not revoke the server, and the fetch stops saying
    // which list failed (revocation cannot be checked), not "revoked".
    let line = common::fails_with(&fetch(&server.addr, "forged.pem"), 4);
    assert!(line.contains("not signed by that CA's key"), "{line}");
    assert!(!line.contains("is revoked"), "{line}");
    drop(server);

    // Server side: the client's leaf, revoked by the intermediate, is refused.
    let server = serve("client-revoked.pem");
    let line = common::fails_with(&fetch(&server.addr, "none.pem"), 4);
    assert!(line.contains("revoked"), "{line}");
    assert!(server.wait_for_log("revoked"), "{}", server.log());
    drop(server);

    // The intermediate's list past its nextUpdate: the server refuses to start, the client
    // goes on with a warning, as with the root's list.
    cat(&["root.crl", "int-stale.crl"], "stale.pem");
    let line = common::fails(&w.run(&[
        "serve",
        "--cert",
        "server-chain.pem",
        "--key",
        "leaf.key",
        "--ca-cert",
        "root.crt",
        "--crl",
        "stale.pem",
        "--listen",
        "127.0.0.1:0",
    ]));
    assert!(line.contains("out of date"), "{line}");
    let server = serve("none.pem");
    let o = fetch(&server.addr, "stale.pem");
    ok(&o);
    assert!(
        common::stderr(&o).contains("out of date"),
        "{}",
        common::stderr(&o)
    );
    drop(server);

    // A list whose issuer is in no chain we know is reported, not silently kept.
    gencrl(dir, "foreign", "foreign", &[], None);
    cat(&["root.crl", "foreign.crl"], "foreign.pem");
    let server = serve("foreign.pem");
    assert!(
        server
            .log()
            .contains("the list of \"CN=foreign\" is from no CA we know"),
        "{}",
        server.log()
    );
    let o = fetch(&server.addr, "foreign.pem");
    ok(&o);
    assert!(
        common::stderr(&o).contains("the list of \"CN=foreign\" is from no CA we know"),
        "{}",
        common::stderr(&o)
    );
}
