//! Tests of the PKI module: verification failure cases as named vectors, generation, storage.

use std::sync::LazyLock;

use rsa::RsaPrivateKey;
use rsa::pkcs1::EncodeRsaPrivateKey;

use super::pem::encode_pem;
use super::*;

const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

/// 2048-bit keys, generated once per test binary (in parallel) and shared by every test.
struct Keys {
    ca: RsaPrivateKey,
    other_ca: RsaPrivateKey,
    server: RsaPrivateKey,
    client: RsaPrivateKey,
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| {
    let mut keys: Vec<RsaPrivateKey> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| generate_key(2048).expect("2048 is an allowed size")))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("key generation thread"))
            .collect()
    });
    Keys {
        client: keys.pop().unwrap(),
        server: keys.pop().unwrap(),
        other_ca: keys.pop().unwrap(),
        ca: keys.pop().unwrap(),
    }
});

fn now() -> i64 {
    now_unix()
}

/// The test CA, valid from an hour ago for ten years.
static CA: LazyLock<CaKeyPair> = LazyLock::new(|| {
    new_ca(
        "minitls test CA",
        KEYS.ca.clone(),
        now() - HOUR,
        now() + 3650 * DAY,
    )
    .unwrap()
});

/// A different CA with the same name as `CA` and another key.
static IMPOSTOR_CA: LazyLock<CaKeyPair> = LazyLock::new(|| {
    new_ca(
        "minitls test CA",
        KEYS.other_ca.clone(),
        now() - HOUR,
        now() + 3650 * DAY,
    )
    .unwrap()
});

fn anchor() -> TrustAnchor {
    CA.anchor().clone()
}

fn spec(role: Role) -> LeafSpec {
    LeafSpec {
        role,
        common_name: format!("{role}.example"),
        sans: match role {
            Role::Server => {
                let mut sans = San::default_server_names();
                sans.push(San::Dns("server.example".into()));
                sans
            }
            Role::Client => Vec::new(),
        },
        not_before_unix: now() - HOUR,
        not_after_unix: now() + 30 * DAY,
    }
}

fn key_for(role: Role) -> &'static RsaPrivateKey {
    match role {
        Role::Server => &KEYS.server,
        Role::Client => &KEYS.client,
    }
}

fn leaf(role: Role) -> Vec<u8> {
    issue_leaf(&CA, &spec(role), key_for(role)).unwrap()
}

fn leaf_with(role: Role, overrides: LeafOverrides) -> Vec<u8> {
    issue_leaf_with(&CA, &spec(role), key_for(role), &overrides).unwrap()
}

fn verify(der: &[u8], role: Role, name: Option<&str>) -> Result<VerifiedCert, CertError> {
    verify_certificate(&anchor(), der, role, name, now())
}

/// Replaces every occurrence of `from` in `der` with `to` (same length).
fn replace_all(der: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut out = der.to_vec();
    let mut i = 0;
    let mut hits = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
            hits += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    assert!(hits > 0, "pattern not found");
    out
}

fn positions(der: &[u8], pattern: &[u8]) -> Vec<usize> {
    (0..=der.len() - pattern.len())
        .filter(|&i| &der[i..i + pattern.len()] == pattern)
        .collect()
}

/// DER of the OID 1.2.840.113549.1.1.11 (sha256WithRSAEncryption), tag and length included.
const SHA256_RSA_OID: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b,
];
/// DER of the OID 1.2.840.113549.1.1.5 (sha1WithRSAEncryption).
const SHA1_RSA_OID: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05,
];

// ---- verification: accepted ----

#[test]
fn good_server_certificate_verifies_for_each_of_its_names() {
    let der = leaf(Role::Server);
    for name in [
        "localhost",
        "LOCALHOST",
        "server.example.",
        "127.0.0.1",
        "::1",
        "[::1]",
    ] {
        let v = verify(&der, Role::Server, Some(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(v.public_key.rsa(), Some(KEYS.server.as_public_key()));
        assert_eq!(v.subject, "CN=server.example");
        assert_eq!(v.fingerprint, super::verify::sha256_fingerprint(&der));
        assert!(v.not_before_unix < now() && now() < v.not_after_unix);
    }
}

#[test]
fn good_client_certificate_verifies_without_a_name() {
    let der = leaf(Role::Client);
    let v = verify(&der, Role::Client, None).unwrap();
    assert_eq!(v.public_key.rsa(), Some(KEYS.client.as_public_key()));
    assert_eq!(v.subject, "CN=client.example");
}

#[test]
fn certificate_is_valid_exactly_at_its_boundaries() {
    let mut s = spec(Role::Client);
    // Inside the CA's own validity, which began an hour ago.
    s.not_before_unix = now() - HOUR / 2;
    s.not_after_unix = now() + DAY;
    let der = issue_leaf(&CA, &s, &KEYS.client).unwrap();
    let a = anchor();
    assert!(verify_certificate(&a, &der, Role::Client, None, s.not_before_unix - 1).is_err());
    assert!(verify_certificate(&a, &der, Role::Client, None, s.not_after_unix + 1).is_err());
    assert!(verify_certificate(&a, &der, Role::Client, None, s.not_before_unix).is_ok());
    assert!(verify_certificate(&a, &der, Role::Client, None, s.not_after_unix).is_ok());
}

// ---- verification: chain ----

#[test]
fn certificate_from_another_ca_with_the_same_name_fails_the_signature_check() {
    let der = issue_leaf(&IMPOSTOR_CA, &spec(Role::Server), &KEYS.server).unwrap();
    let err = verify(&der, Role::Server, Some("localhost")).unwrap_err();
    assert_eq!(err, CertError::NotSignedByCa);
    assert!(
        err.to_string()
            .starts_with("certificate is not signed by the configured CA")
    );
}

#[test]
fn certificate_from_a_differently_named_ca_fails_the_issuer_check() {
    let other = new_ca(
        "someone else's CA",
        KEYS.other_ca.clone(),
        now() - HOUR,
        now() + DAY,
    )
    .unwrap();
    let der = issue_leaf(&other, &spec(Role::Client), &KEYS.client).unwrap();
    let err = verify(&der, Role::Client, None).unwrap_err();
    assert!(
        matches!(&err, CertError::WrongIssuer { issuer, .. } if issuer == "CN=someone else's CA")
    );
    assert!(
        err.to_string()
            .starts_with("certificate is not signed by the configured CA")
    );
}

#[test]
fn flipped_bit_in_the_signature_is_detected() {
    let mut der = leaf(Role::Server);
    let last = der.len() - 1;
    der[last] ^= 0x01;
    assert_eq!(
        verify(&der, Role::Server, None).unwrap_err(),
        CertError::NotSignedByCa
    );
}

#[test]
fn flipped_bit_in_the_signed_part_is_detected() {
    let der = leaf(Role::Server);
    // 's' -> 'r' in the DNS name "server.example": still well-formed, no longer what was signed.
    let pos = positions(&der, b"server.example");
    assert!(!pos.is_empty());
    let mut altered = der.clone();
    altered[pos[0]] ^= 0x01;
    assert_eq!(
        verify(&altered, Role::Server, None).unwrap_err(),
        CertError::NotSignedByCa
    );
}

#[test]
fn outer_algorithm_differing_from_the_signed_one_is_rejected() {
    let der = leaf(Role::Server);
    let pos = positions(&der, SHA256_RSA_OID);
    let outer = *pos.last().unwrap();
    let mut altered = der.clone();
    altered[outer..outer + SHA1_RSA_OID.len()].copy_from_slice(SHA1_RSA_OID);
    assert_eq!(
        verify(&altered, Role::Server, None).unwrap_err(),
        CertError::AlgorithmMismatch
    );
}

#[test]
fn sha1_signature_algorithm_is_unsupported() {
    let der = replace_all(&leaf(Role::Server), SHA256_RSA_OID, SHA1_RSA_OID);
    let err = verify(&der, Role::Server, None).unwrap_err();
    assert!(matches!(&err, CertError::UnsupportedAlgorithm(name) if name.contains("sha1")));
}

#[test]
fn trailing_bytes_after_the_certificate_are_rejected() {
    let mut der = leaf(Role::Server);
    der.push(0);
    assert_eq!(
        verify(&der, Role::Server, None).unwrap_err(),
        CertError::TrailingData(1)
    );
    let mut two = leaf(Role::Server);
    two.extend_from_slice(&leaf(Role::Server));
    assert!(matches!(
        verify(&two, Role::Server, None).unwrap_err(),
        CertError::TrailingData(_)
    ));
}

#[test]
fn garbage_empty_and_truncated_input_is_malformed() {
    let der = leaf(Role::Server);
    for input in [
        &[][..],
        b"hello",
        &der[..der.len() / 2],
        &der[..der.len() - 1],
    ] {
        assert!(matches!(
            verify(input, Role::Server, None).unwrap_err(),
            CertError::Malformed(_)
        ));
    }
}

#[test]
fn verification_never_panics_on_corrupted_certificates() {
    let der = leaf(Role::Server);
    let a = anchor();
    for i in 0..der.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut bad = der.clone();
            bad[i] ^= mask;
            // Only the absence of a panic matters; almost all of these must fail.
            let _ = verify_certificate(&a, &bad, Role::Server, Some("localhost"), now());
        }
        let _ = verify_certificate(&a, &der[..i], Role::Server, Some("localhost"), now());
    }
}

// ---- verification: validity ----

#[test]
fn expired_certificate_is_rejected() {
    let mut s = spec(Role::Server);
    s.not_before_unix = now() - 10 * DAY;
    s.not_after_unix = now() - DAY;
    let der = issue_leaf(&CA, &s, &KEYS.server).unwrap();
    let err = verify(&der, Role::Server, Some("localhost")).unwrap_err();
    assert_eq!(
        err,
        CertError::Expired {
            not_after: s.not_after_unix
        }
    );
    assert!(
        err.to_string().starts_with("certificate expired on "),
        "{err}"
    );
}

#[test]
fn not_yet_valid_certificate_is_rejected() {
    let mut s = spec(Role::Client);
    s.not_before_unix = now() + DAY;
    s.not_after_unix = now() + 10 * DAY;
    let der = issue_leaf(&CA, &s, &KEYS.client).unwrap();
    assert_eq!(
        verify(&der, Role::Client, None).unwrap_err(),
        CertError::NotYetValid {
            not_before: s.not_before_unix
        }
    );
}

#[test]
fn an_expired_or_not_yet_valid_ca_rejects_every_certificate() {
    let der = leaf(Role::Client);
    let a = anchor();
    assert_eq!(
        verify_certificate(&a, &der, Role::Client, None, a.not_after_unix() + 1).unwrap_err(),
        CertError::CaExpired {
            not_after: a.not_after_unix()
        }
    );
    assert_eq!(
        verify_certificate(&a, &der, Role::Client, None, a.not_before_unix() - 1).unwrap_err(),
        CertError::CaNotYetValid {
            not_before: a.not_before_unix()
        }
    );
}

// ---- verification: usage ----

#[test]
fn server_certificate_used_as_a_client_is_rejected() {
    let err = verify(&leaf(Role::Server), Role::Client, None).unwrap_err();
    assert_eq!(err, CertError::WrongUsage { role: Role::Client });
    assert!(err.to_string().contains("clientAuth"), "{err}");
}

#[test]
fn client_certificate_used_as_a_server_is_rejected() {
    let err = verify(&leaf(Role::Client), Role::Server, None).unwrap_err();
    assert_eq!(err, CertError::WrongUsage { role: Role::Server });
    assert!(err.to_string().contains("serverAuth"), "{err}");
}

#[test]
fn certificate_without_extended_key_usage_is_rejected_for_both_roles() {
    let none = LeafOverrides {
        extended_key_usage: Some(vec![]),
        ..Default::default()
    };
    let der = leaf_with(Role::Server, none);
    for role in [Role::Server, Role::Client] {
        assert_eq!(
            verify(&der, role, None).unwrap_err(),
            CertError::WrongUsage { role }
        );
    }
}

#[test]
fn any_or_unrelated_extended_key_usage_is_not_enough() {
    for eku in [ExtKeyUsage::Any, ExtKeyUsage::CodeSigning] {
        let der = leaf_with(
            Role::Server,
            LeafOverrides {
                extended_key_usage: Some(vec![eku]),
                ..Default::default()
            },
        );
        assert_eq!(
            verify(&der, Role::Server, None).unwrap_err(),
            CertError::WrongUsage { role: Role::Server }
        );
    }
}

#[test]
fn certificate_with_both_usages_serves_both_roles() {
    let der = leaf_with(
        Role::Server,
        LeafOverrides {
            extended_key_usage: Some(vec![ExtKeyUsage::ServerAuth, ExtKeyUsage::ClientAuth]),
            ..Default::default()
        },
    );
    assert!(verify(&der, Role::Server, Some("localhost")).is_ok());
    assert!(verify(&der, Role::Client, None).is_ok());
}

#[test]
fn ca_certificate_presented_as_a_leaf_is_rejected() {
    // The CA's own certificate: issued by the CA, correctly signed, but a CA.
    let err = verify(&CA.cert_der, Role::Server, None).unwrap_err();
    assert_eq!(err, CertError::IsCa { role: Role::Server });
    // A CA-flagged certificate that otherwise looks like a perfect server certificate.
    let der = leaf_with(
        Role::Server,
        LeafOverrides {
            ca: true,
            ..Default::default()
        },
    );
    assert_eq!(
        verify(&der, Role::Server, Some("localhost")).unwrap_err(),
        CertError::IsCa { role: Role::Server }
    );
}

#[test]
fn certificate_with_a_small_rsa_key_is_rejected() {
    let small = RsaPrivateKey::new(&mut rand::rng(), 1024).unwrap();
    let der = issue_leaf(&CA, &spec(Role::Client), &small).unwrap();
    assert_eq!(
        verify(&der, Role::Client, None).unwrap_err(),
        CertError::KeyTooSmall { bits: 1024 }
    );
}

// ---- verification: names ----

#[test]
fn wrong_dns_server_name_is_rejected_and_the_real_names_are_listed() {
    let err = verify(&leaf(Role::Server), Role::Server, Some("evil.example")).unwrap_err();
    match &err {
        CertError::NameMismatch { expected, found } => {
            assert_eq!(expected, "evil.example");
            assert!(found.contains(&"DNS:localhost".to_string()), "{found:?}");
            assert!(found.contains(&"IP:127.0.0.1".to_string()), "{found:?}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("DNS:server.example"), "{err}");
}

#[test]
fn wrong_ip_server_name_is_rejected() {
    let der = leaf(Role::Server);
    for name in ["127.0.0.2", "::2", "10.0.0.1"] {
        assert!(matches!(
            verify(&der, Role::Server, Some(name)).unwrap_err(),
            CertError::NameMismatch { .. }
        ));
    }
}

#[test]
fn an_ip_address_never_matches_a_dns_name_with_the_same_text() {
    let mut s = spec(Role::Server);
    s.sans = vec![San::Dns("localhost".into())];
    let der = issue_leaf(&CA, &s, &KEYS.server).unwrap();
    assert!(verify_certificate(&anchor(), &der, Role::Server, Some("localhost"), now()).is_ok());
    assert!(verify(&der, Role::Server, Some("127.0.0.1")).is_err());
}

#[test]
fn certificate_without_names_matches_no_server_name_and_the_cn_is_ignored() {
    let mut s = spec(Role::Server);
    s.common_name = "localhost".into();
    s.sans = Vec::new();
    let der = issue_leaf(&CA, &s, &KEYS.server).unwrap();
    assert_eq!(
        verify(&der, Role::Server, Some("localhost")).unwrap_err(),
        CertError::NoSubjectAltNames
    );
}

// ---- trust anchors ----

#[test]
fn trust_anchor_round_trips_through_pem() {
    let a = TrustAnchor::from_pem(&CA.cert_pem).unwrap();
    assert_eq!(a.subject(), "CN=minitls test CA");
    assert_eq!(
        a.fingerprint(),
        super::verify::sha256_fingerprint(&CA.cert_der)
    );
    assert_eq!(a.der(), CA.cert_der.as_slice());
}

#[test]
fn non_ca_certificate_is_refused_as_trust_anchor() {
    let err = TrustAnchor::from_der(&leaf(Role::Server)).unwrap_err();
    assert!(matches!(err, PkiError::BadAnchor(_)));
    assert!(err.to_string().contains("not a CA"), "{err}");
}

#[test]
fn ca_certificate_that_is_not_self_signed_is_refused_as_trust_anchor() {
    let der = leaf_with(
        Role::Server,
        LeafOverrides {
            ca: true,
            ..Default::default()
        },
    );
    let err = TrustAnchor::from_der(&der).unwrap_err().to_string();
    assert!(err.contains("not self-signed"), "{err}");
}

#[test]
fn altered_ca_certificate_is_refused_as_trust_anchor() {
    let pos = positions(&CA.cert_der, b"minitls test CA");
    let mut der = CA.cert_der.clone();
    der[pos[1]] ^= 0x01; // the subject; the issuer is pos[0]
    assert!(TrustAnchor::from_der(&der).is_err());
    let mut der = CA.cert_der.clone();
    der.push(0);
    assert!(TrustAnchor::from_der(&der).is_err());
}

// ---- identities and keys ----

#[test]
fn pkcs8_and_pkcs1_keys_both_load() {
    let cert_pem = der_to_pem(&leaf(Role::Server));
    let pkcs8 = private_key_to_pem(&KEYS.server).unwrap();
    assert!(pkcs8.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let pkcs1 = encode_pem(
        "RSA PRIVATE KEY",
        KEYS.server.to_pkcs1_der().unwrap().as_bytes(),
    );
    for key_pem in [&pkcs8, &pkcs1] {
        let id = Identity::from_pem(&cert_pem, key_pem).unwrap();
        assert!(id.key.rsa() == Some(&KEYS.server));
        assert_eq!(id.cert_der, pem_to_der(&cert_pem).unwrap());
    }
}

#[test]
fn key_that_does_not_match_the_certificate_is_refused() {
    let cert_pem = der_to_pem(&leaf(Role::Server));
    let other = private_key_to_pem(&KEYS.client).unwrap();
    assert!(matches!(
        Identity::from_pem(&cert_pem, &other).unwrap_err(),
        PkiError::KeyMismatch
    ));
    assert!(matches!(
        CaKeyPair::from_pem(&CA.cert_pem, &other).unwrap_err(),
        PkiError::KeyMismatch
    ));
}

#[test]
fn generate_key_allows_only_the_supported_sizes() {
    for bits in [0, 1024, 2047, 2049, 8192] {
        assert!(matches!(generate_key(bits), Err(PkiError::KeySize(b)) if b == bits));
    }
}

#[test]
fn ca_loaded_from_pem_issues_certificates_that_verify() {
    let ca_key = private_key_to_pem(&CA.key).unwrap();
    let loaded = CaKeyPair::from_pem(&CA.cert_pem, &ca_key).unwrap();
    let der = issue_leaf(&loaded, &spec(Role::Client), &KEYS.client).unwrap();
    assert!(verify(&der, Role::Client, None).is_ok());
}

#[test]
fn issued_certificates_have_random_positive_serials_of_16_bytes() {
    let a = leaf(Role::Client);
    let b = leaf(Role::Client);
    let serial = |der: &[u8]| {
        super::verify::parse_single(der)
            .unwrap()
            .raw_serial()
            .to_vec()
    };
    let (sa, sb) = (serial(&a), serial(&b));
    assert_ne!(sa, sb);
    assert_eq!(sa.len(), 16);
    assert!(sa[0] != 0 && sa[0] < 0x80);
}

#[test]
fn issuing_refuses_empty_or_unencodable_validity() {
    let mut s = spec(Role::Client);
    s.not_after_unix = s.not_before_unix;
    assert!(matches!(
        issue_leaf(&CA, &s, &KEYS.client),
        Err(PkiError::Validity(_))
    ));
    s.not_after_unix = i64::MAX;
    assert!(matches!(
        issue_leaf(&CA, &s, &KEYS.client),
        Err(PkiError::Validity(_))
    ));
}

// ---- names and formatting ----

#[test]
fn san_parses_typed_and_bare_names() {
    assert_eq!(
        "DNS:Example.COM".parse::<San>().unwrap(),
        San::Dns("example.com".into())
    );
    assert_eq!("dns:host".parse::<San>().unwrap(), San::Dns("host".into()));
    assert_eq!(
        "IP:127.0.0.1".parse::<San>().unwrap(),
        San::Ip("127.0.0.1".parse().unwrap())
    );
    assert_eq!(
        "IP:::1".parse::<San>().unwrap(),
        San::Ip("::1".parse().unwrap())
    );
    assert_eq!(
        "[::1]".parse::<San>().unwrap(),
        San::Ip("::1".parse().unwrap())
    );
    assert_eq!(
        "10.1.2.3".parse::<San>().unwrap(),
        San::Ip("10.1.2.3".parse().unwrap())
    );
    assert_eq!(
        "files.lan".parse::<San>().unwrap(),
        San::Dns("files.lan".into())
    );
    for bad in [
        "",
        "DNS:",
        "IP:nope",
        "*.example",
        "a..b",
        "-a.b",
        "DNS:10.0.0.1",
        "white space",
    ] {
        assert!(bad.parse::<San>().is_err(), "{bad:?} should be refused");
    }
    assert_eq!(San::Ip("::1".parse().unwrap()).to_string(), "IP:::1");
    assert_eq!(San::Dns("h".into()).to_string(), "DNS:h");
}

#[test]
fn role_displays_and_parses() {
    assert_eq!(Role::Server.to_string(), "server");
    assert_eq!(Role::Client.to_string(), "client");
    assert_eq!("client".parse::<Role>().unwrap(), Role::Client);
    assert!("admin".parse::<Role>().is_err());
    assert_eq!(Role::Server.peer(), Role::Client);
}

#[test]
fn fingerprints_print_as_colon_separated_upper_case_hex() {
    let mut fp = [0u8; 32];
    fp[0] = 0xab;
    fp[31] = 0x01;
    let hex = fingerprint_hex(&fp);
    assert!(hex.starts_with("AB:00:"));
    assert!(hex.ends_with(":00:01"));
    assert_eq!(hex.len(), 32 * 3 - 1);
}

#[test]
fn every_certificate_error_is_one_line_starting_lower_case() {
    let errors = [
        CertError::Malformed("x".into()),
        CertError::TrailingData(3),
        CertError::UnsupportedAlgorithm("sha1WithRSAEncryption".into()),
        CertError::AlgorithmMismatch,
        CertError::WrongIssuer {
            issuer: "CN=a".into(),
            ca: "CN=b".into(),
        },
        CertError::NotSignedByCa,
        CertError::CaExpired { not_after: 0 },
        CertError::CaNotYetValid { not_before: 0 },
        CertError::Expired { not_after: 0 },
        CertError::NotYetValid { not_before: 0 },
        CertError::IsCa { role: Role::Client },
        CertError::UnsupportedKey {
            role: Role::Server,
            kind: "an EC key on P-256".into(),
        },
        CertError::KeyTooSmall { bits: 1024 },
        CertError::KeyTooLarge { bits: 16384 },
        CertError::WrongUsage { role: Role::Server },
        CertError::KeyUsageForbids {
            role: Role::Server,
            needed: "keyEncipherment",
        },
        CertError::NameMismatch {
            expected: "x".into(),
            found: vec![],
        },
        CertError::UnsupportedCriticalExtension("1.2.3".into()),
        CertError::NoSubjectAltNames,
        CertError::Revoked {
            serial: "01".into(),
            revoked_at: 0,
        },
    ];
    for e in errors {
        let text = e.to_string();
        assert!(!text.contains('\n'), "{text}");
        let first = text.chars().next().unwrap();
        assert!(first.is_lowercase(), "{text}");
    }
}

#[test]
fn peer_supplied_names_are_made_safe_for_terminals() {
    assert_eq!(super::verify::printable("a\x1b[31mb"), "a\\u{1b}[31mb");
    assert!(super::verify::printable(&"x".repeat(1000)).len() < 300);
}

// ---- the CA directory ----

/// Key source for CaDir tests: the cached keys, in turn, instead of fresh (slow) ones.
fn cached_keys() -> impl FnMut(usize) -> Result<RsaPrivateKey, PkiError> {
    let mut i = 0;
    move |_bits| {
        let all = [&KEYS.ca, &KEYS.server, &KEYS.client];
        i += 1;
        Ok(all[(i - 1) % all.len()].clone())
    }
}

fn test_opts() -> InitOptions {
    InitOptions {
        key_bits: 2048,
        ..InitOptions::default()
    }
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_writes_a_working_set_with_private_keys_0600() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CaDir::new(tmp.path().join("ca"));
    let written = dir.init_with(&test_opts(), &mut cached_keys()).unwrap();
    assert_eq!(written.len(), 6);
    #[cfg(unix)]
    {
        for role in [Role::Server, Role::Client] {
            assert_eq!(mode(&dir.key_path(role)), 0o600);
            // 0644 less the umask: readable by the owner, never writable by others.
            let cert_mode = mode(&dir.cert_path(role));
            assert_eq!(cert_mode & 0o622, 0o600, "{cert_mode:o}");
        }
        assert_eq!(mode(&dir.ca_key_path()), 0o600);
        assert_eq!(mode(&dir.dir), 0o700);
    }
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(&dir.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");

    let anchor = dir.load_anchor().unwrap();
    assert!(anchor.subject().starts_with("CN=minitls CA "));
    let server = dir.load_identity(Role::Server).unwrap();
    let client = dir.load_identity(Role::Client).unwrap();
    for name in ["localhost", "127.0.0.1", "::1"] {
        verify_certificate(
            &anchor,
            &server.cert_der,
            Role::Server,
            Some(name),
            now_unix(),
        )
        .unwrap();
    }
    verify_certificate(&anchor, &client.cert_der, Role::Client, None, now_unix()).unwrap();
    let desc = describe_certificate_der(&client.cert_der).unwrap();
    assert!(desc.contains("CN=client"), "{desc}");
}

#[test]
fn init_refuses_to_overwrite_an_existing_ca_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CaDir::new(tmp.path());
    dir.init_with(&test_opts(), &mut cached_keys()).unwrap();
    let before = std::fs::read(dir.ca_cert_path()).unwrap();
    let err = dir.init_with(&test_opts(), &mut cached_keys()).unwrap_err();
    assert!(matches!(&err, PkiError::AlreadyExists { path, .. } if *path == dir.ca_cert_path()));
    assert!(matches!(&err, PkiError::AlreadyExists { action, .. } if *action == "replace the CA"));
    assert!(err.to_string().ends_with("ca.crt already exists"), "{err}");
    assert_eq!(std::fs::read(dir.ca_cert_path()).unwrap(), before);

    let forced = InitOptions {
        force: true,
        ..test_opts()
    };
    dir.init_with(&forced, &mut cached_keys()).unwrap();
    assert_ne!(std::fs::read(dir.ca_cert_path()).unwrap(), before);
    #[cfg(unix)]
    assert_eq!(mode(&dir.ca_key_path()), 0o600);
}

#[test]
fn init_with_a_lone_ca_key_still_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CaDir::new(tmp.path());
    std::fs::write(dir.ca_key_path(), "precious").unwrap();
    assert!(matches!(
        dir.init_with(&test_opts(), &mut cached_keys()),
        Err(PkiError::AlreadyExists { .. })
    ));
    assert_eq!(
        std::fs::read_to_string(dir.ca_key_path()).unwrap(),
        "precious"
    );
}

#[test]
fn init_validates_options_before_writing_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CaDir::new(tmp.path().join("ca"));
    for opts in [
        InitOptions {
            key_bits: 1024,
            ..test_opts()
        },
        InitOptions {
            days: 0,
            ..test_opts()
        },
        InitOptions {
            client_name: String::new(),
            ..test_opts()
        },
    ] {
        assert!(dir.init_with(&opts, &mut cached_keys()).is_err());
        assert!(!dir.dir.exists());
    }
}

#[test]
fn ensure_on_an_empty_directory_creates_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CaDir::new(tmp.path().join("ca"));
    let made = dir.ensure_with(Role::Server, &mut cached_keys()).unwrap();
    assert!(made.unwrap().contains("created a new CA"));
    assert_eq!(
        dir.ensure_with(Role::Server, &mut cached_keys()).unwrap(),
        None
    );
    assert_eq!(
        dir.ensure_with(Role::Client, &mut cached_keys()).unwrap(),
        None
    );
}

#[test]
fn a_ca_directory_that_cannot_be_read_is_an_error_and_never_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    // Something that is not a directory where the CA directory's parent should be: every
    // lookup fails with "not a directory", not "not found". (A mode-000 directory behaves the
    // same for other users; tests run as root, who may enter it.)
    std::fs::write(tmp.path().join("file"), b"x").unwrap();
    let dir = CaDir::new(tmp.path().join("file/ca"));
    let e = dir
        .ensure_with(Role::Client, &mut cached_keys())
        .unwrap_err();
    assert!(matches!(e, PkiError::Read { .. }), "{e:?}");
    assert!(e.to_string().starts_with("cannot read "), "{e}");
    assert_eq!(std::fs::read(tmp.path().join("file")).unwrap(), b"x");
}

#[test]
fn ensure_reissues_a_missing_leaf_from_the_existing_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CaDir::new(tmp.path());
    dir.init_with(&test_opts(), &mut cached_keys()).unwrap();
    let ca_before = std::fs::read(dir.ca_cert_path()).unwrap();
    std::fs::remove_file(dir.cert_path(Role::Client)).unwrap();
    std::fs::remove_file(dir.key_path(Role::Client)).unwrap();

    let made = dir.ensure_with(Role::Client, &mut cached_keys()).unwrap();
    assert!(made.unwrap().contains("client.crt"));
    assert_eq!(std::fs::read(dir.ca_cert_path()).unwrap(), ca_before);
    #[cfg(unix)]
    assert_eq!(mode(&dir.key_path(Role::Client)), 0o600);
    let anchor = dir.load_anchor().unwrap();
    let id = dir.load_identity(Role::Client).unwrap();
    verify_certificate(&anchor, &id.cert_der, Role::Client, None, now_unix()).unwrap();
}

#[test]
fn ensure_without_the_ca_key_uses_what_is_there_and_cannot_issue() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CaDir::new(tmp.path());
    dir.init_with(&test_opts(), &mut cached_keys()).unwrap();
    // A client machine: ca.crt, client.crt, client.key only.
    for p in [
        dir.ca_key_path(),
        dir.cert_path(Role::Server),
        dir.key_path(Role::Server),
    ] {
        std::fs::remove_file(p).unwrap();
    }
    assert_eq!(
        dir.ensure_with(Role::Client, &mut cached_keys()).unwrap(),
        None
    );
    let err = dir
        .ensure_with(Role::Server, &mut cached_keys())
        .unwrap_err();
    assert!(matches!(&err, PkiError::Missing { path, .. } if *path == dir.cert_path(Role::Server)));
    assert!(err.to_string().contains("ca.key"), "{err}");
}

#[test]
fn ensure_refuses_to_replace_leaves_left_without_a_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CaDir::new(tmp.path());
    dir.init_with(&test_opts(), &mut cached_keys()).unwrap();
    std::fs::remove_file(dir.ca_cert_path()).unwrap();
    std::fs::remove_file(dir.ca_key_path()).unwrap();
    let err = dir
        .ensure_with(Role::Server, &mut cached_keys())
        .unwrap_err();
    assert!(
        matches!(&err, PkiError::Missing { why: MissingReason::CaAbsentBeside { present }, .. }
            if *present == dir.cert_path(Role::Server)),
        "{err:?}"
    );
    assert!(err.to_string().contains("exists without it"), "{err}");
    assert!(dir.cert_path(Role::Server).exists());
}

#[test]
fn ensure_refuses_half_a_key_pair() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CaDir::new(tmp.path());
    dir.init_with(&test_opts(), &mut cached_keys()).unwrap();
    std::fs::remove_file(dir.key_path(Role::Server)).unwrap();
    let err = dir
        .ensure_with(Role::Server, &mut cached_keys())
        .unwrap_err();
    assert!(matches!(&err, PkiError::Missing { path, .. } if *path == dir.key_path(Role::Server)));
}

#[test]
fn issue_refuses_to_overwrite_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CaDir::new(tmp.path());
    dir.init_with(&test_opts(), &mut cached_keys()).unwrap();
    let before = std::fs::read(dir.cert_path(Role::Server)).unwrap();
    let err = dir
        .issue_with(
            Role::Server,
            "files.lan",
            &[],
            30,
            2048,
            false,
            &mut cached_keys(),
        )
        .unwrap_err();
    assert!(matches!(err, PkiError::AlreadyExists { .. }));
    assert!(err.to_string().ends_with("already exists"), "{err}");
    assert_eq!(std::fs::read(dir.cert_path(Role::Server)).unwrap(), before);
}

#[test]
fn issue_writes_a_server_certificate_named_after_the_host() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CaDir::new(tmp.path());
    dir.init_with(&test_opts(), &mut cached_keys()).unwrap();
    let mut server_key = |_| Ok(KEYS.server.clone());
    let written = dir
        .issue_with(
            Role::Server,
            "files.lan",
            &[],
            30,
            2048,
            true,
            &mut server_key,
        )
        .unwrap();
    assert_eq!(
        written,
        vec![dir.key_path(Role::Server), dir.cert_path(Role::Server)]
    );
    let anchor = dir.load_anchor().unwrap();
    let id = dir.load_identity(Role::Server).unwrap();
    let v = verify_certificate(
        &anchor,
        &id.cert_der,
        Role::Server,
        Some("files.lan"),
        now_unix(),
    )
    .unwrap();
    assert_eq!(v.subject, "CN=files.lan");
    assert!(v.not_after_unix <= now_unix() + 31 * DAY);
    assert!(
        verify_certificate(
            &anchor,
            &id.cert_der,
            Role::Server,
            Some("localhost"),
            now_unix()
        )
        .is_err()
    );
}

#[test]
fn load_errors_name_the_file_and_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CaDir::new(tmp.path().join("nowhere"));
    let err = dir.load_anchor().unwrap_err().to_string();
    assert!(err.starts_with("cannot read "), "{err}");
    assert!(
        err.contains("ca.crt") && err.contains("no such file or directory"),
        "{err}"
    );
    assert!(!err.contains("os error"), "{err}");

    let dir = CaDir::new(tmp.path());
    dir.init_with(&test_opts(), &mut cached_keys()).unwrap();
    std::fs::copy(dir.key_path(Role::Client), dir.key_path(Role::Server)).unwrap();
    let err = dir.load_identity(Role::Server).unwrap_err().to_string();
    assert!(
        err.contains("server.key") && err.contains("does not match"),
        "{err}"
    );

    std::fs::write(dir.ca_cert_path(), &CA.cert_der).unwrap();
    let err = dir.load_anchor().unwrap_err().to_string();
    assert!(
        err.contains("ca.crt") && err.contains("not PEM text"),
        "{err}"
    );

    std::fs::write(dir.ca_cert_path(), "not pem").unwrap();
    let err = dir.load_anchor().unwrap_err().to_string();
    assert!(
        err.contains("ca.crt") && err.contains("no CERTIFICATE block"),
        "{err}"
    );

    // A leaf given where the CA certificate belongs.
    std::fs::copy(dir.cert_path(Role::Client), dir.ca_cert_path()).unwrap();
    let err = load_anchor_file(&dir.ca_cert_path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a CA"), "{err}");
}

#[test]
fn describe_lists_the_fields_of_a_certificate() {
    let desc = describe_certificate_pem(&der_to_pem(&leaf(Role::Server))).unwrap();
    for needle in [
        "subject:",
        "CN=server.example",
        "issuer:",
        "CN=minitls test CA",
        "serial:",
        "not before:",
        "not after:",
        "DNS:localhost, IP:127.0.0.1, IP:::1, DNS:server.example",
        "extended key usage:",
        "serverAuth",
        "digitalSignature, keyEncipherment",
        "CA:",
        "RSA 2048 bits",
        "SHA-256 fingerprint:",
    ] {
        assert!(desc.contains(needle), "missing {needle:?} in\n{desc}");
    }
    assert_eq!(desc.lines().count(), 11);
    let ca = describe_certificate_pem(&CA.cert_pem).unwrap();
    assert!(ca.contains("yes (path length 0)"), "{ca}");
    assert!(ca.contains("keyCertSign, cRLSign"), "{ca}");
}

// ---------------------------------------------------------------------------------------------
// Revocation lists
// ---------------------------------------------------------------------------------------------

fn serial_of(der: &[u8]) -> Vec<u8> {
    verify_certificate(&anchor(), der, Role::Client, None, now())
        .or_else(|_| verify_certificate(&anchor(), der, Role::Server, None, now()))
        .unwrap()
        .serial
}

fn crl_revoking(ca: &CaKeyPair, serials: &[Vec<u8>], this: i64, next: i64) -> Vec<u8> {
    let entries: Vec<Revocation> = serials
        .iter()
        .map(|s| Revocation {
            serial: s.clone(),
            revoked_at_unix: this,
        })
        .collect();
    make_crl(ca, &entries, this, next, 7).unwrap()
}

#[test]
fn crl_from_our_ca_revokes_exactly_the_listed_certificates() {
    let client = leaf(Role::Client);
    let server = leaf(Role::Server);
    let der = crl_revoking(&CA, &[serial_of(&client)], now() - HOUR, now() + DAY);
    let crl = Crl::from_bytes(&der, &anchor()).unwrap();
    crl.check_current(now()).unwrap();
    assert_eq!(crl.len(), 1);
    let c = verify(&client, Role::Client, None).unwrap();
    let s = verify(&server, Role::Server, None).unwrap();
    let err = crl.check(&c).unwrap_err();
    assert!(matches!(err, CertError::Revoked { .. }), "{err:?}");
    assert!(err.to_string().contains("revoked"), "{err}");
    assert_eq!(err.reason(), CertRejection::Revoked);
    crl.check(&s).unwrap();
    // PEM works as well as DER.
    let pem = encode_pem("X509 CRL", &der);
    assert_eq!(Crl::from_bytes(pem.as_bytes(), &anchor()).unwrap(), crl);
}

#[test]
fn crl_signed_by_a_same_named_other_ca_fails_the_signature_check() {
    let der = crl_revoking(&IMPOSTOR_CA, &[], now() - HOUR, now() + DAY);
    let err = Crl::from_bytes(&der, &anchor()).unwrap_err();
    assert!(matches!(err, CrlError::BadSignature { .. }), "{err:?}");
}

#[test]
fn crl_of_a_differently_named_ca_is_refused_alone_and_beside_ours_reported_and_revokes_nothing_ours_issued()
 {
    let other = new_ca(
        "another CA",
        KEYS.other_ca.clone(),
        now() - HOUR,
        now() + DAY,
    )
    .unwrap();
    let client = leaf(Role::Client);
    let der = crl_revoking(&other, &[serial_of(&client)], now() - HOUR, now() + DAY);
    // Alone, it is not our CA's list: refused (it would stand for ours, revoking nothing).
    let err = Crl::from_bytes(&der, &anchor()).unwrap_err();
    assert!(matches!(err, CrlError::WrongIssuer { .. }), "{err:?}");
    assert!(
        err.to_string().contains("not by the configured CA"),
        "{err}"
    );
    // With our CA's list, it is kept for an intermediate of that name, which no chain we know
    // holds: reported.
    let ours = crl_revoking(&CA, &[], now() - HOUR, now() + DAY);
    let pem = format!(
        "{}{}",
        encode_pem("X509 CRL", &ours),
        encode_pem("X509 CRL", &der)
    );
    let crl = Crl::from_bytes(pem.as_bytes(), &anchor()).unwrap();
    assert_eq!(crl.lists(), 2);
    assert_eq!(crl.unanchored_issuers(&[]), ["CN=another CA"]);
    // It lists our client's serial, but speaks only for what "another CA" issued.
    let c = verify(&client, Role::Client, None).unwrap();
    crl.check(&c).unwrap();
}

#[test]
fn crl_with_an_altered_entry_fails_the_signature_check() {
    let client = leaf(Role::Client);
    let serial = serial_of(&client);
    let der = crl_revoking(
        &CA,
        std::slice::from_ref(&serial),
        now() - HOUR,
        now() + DAY,
    );
    // Change the revoked serial's last byte: the list would no longer revoke the client.
    let mut altered_serial = serial.clone();
    *altered_serial.last_mut().unwrap() ^= 1;
    let altered = replace_all(&der, &serial, &altered_serial);
    assert_ne!(altered, der);
    let err = Crl::from_bytes(&altered, &anchor()).unwrap_err();
    assert!(matches!(err, CrlError::BadSignature { .. }), "{err:?}");
}

#[test]
fn crl_is_current_until_its_next_update_and_stale_after() {
    let next = now() + HOUR;
    let der = crl_revoking(&CA, &[], now() - HOUR, next);
    let crl = Crl::from_bytes(&der, &anchor()).unwrap();
    crl.check_current(next).unwrap();
    let err = crl.check_current(next + 1).unwrap_err();
    assert_eq!(err, CrlError::Stale { next_update: next });
    assert!(err.to_string().contains("out of date"), "{err}");
}

#[test]
fn crl_garbage_and_oversized_input_are_errors_not_panics() {
    for bytes in [
        &b""[..],
        b"\x30",
        b"\x30\x82\xff\xff",
        b"-----BEGIN X509 CRL-----\n-----END X509 CRL-----\n",
        b"not a crl at all",
    ] {
        assert!(Crl::from_bytes(bytes, &anchor()).is_err());
    }
    let big = vec![0x30u8; MAX_CRL_BYTES + 1];
    assert!(matches!(
        Crl::from_bytes(&big, &anchor()),
        Err(CrlError::Malformed(_))
    ));
    let der = crl_revoking(&CA, &[], now() - HOUR, now() + DAY);
    let mut trailing = der.clone();
    trailing.push(0);
    assert!(Crl::from_bytes(&trailing, &anchor()).is_err());
}

#[test]
fn serials_parse_in_the_forms_openssl_prints() {
    assert_eq!(parse_serial_hex("3F2A").unwrap(), vec![0x3f, 0x2a]);
    assert_eq!(parse_serial_hex("3f:2a").unwrap(), vec![0x3f, 0x2a]);
    assert_eq!(parse_serial_hex("0x00F2A").unwrap(), vec![0x0f, 0x2a]);
    for bad in ["", "xyz", "00", &"1".repeat(43)] {
        assert!(parse_serial_hex(bad).is_err(), "{bad:?}");
    }
    assert_eq!(serial_to_hex(&[0x0f, 0x2a]), "0F2A");
}

#[test]
fn crl_file_is_reread_when_it_changes_and_a_bad_replacement_keeps_the_old_list() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("crl.pem");
    // Absent at start (the CA directory before its first revocation): no list yet.
    let file = CrlFile::open(&path, vec![anchor()], true, now()).unwrap();
    assert!(file.current(now()).0.is_none());
    // Absent but named explicitly: an error.
    assert!(CrlFile::open(&path, vec![anchor()], false, now()).is_err());

    let client = leaf(Role::Client);
    let der = crl_revoking(&CA, &[serial_of(&client)], now() - HOUR, now() + DAY);
    std::fs::write(&path, &der).unwrap();
    let (crl, notes) = file.current(now());
    assert_eq!(crl.unwrap().len(), 1);
    assert!(notes[0].contains("reloaded"), "{notes:?}");

    // A list from another CA replaces nothing; it is reported once.
    let forged = crl_revoking(&IMPOSTOR_CA, &[], now() - HOUR, now() + DAY);
    let tmp_path = tmp.path().join("new");
    std::fs::write(&tmp_path, &forged).unwrap();
    std::fs::rename(&tmp_path, &path).unwrap();
    let (crl, notes) = file.current(now());
    assert_eq!(crl.unwrap().len(), 1, "the revocation must stay in force");
    assert!(notes[0].contains("kept the previous CRL"), "{notes:?}");
    assert!(file.current(now()).1.is_empty(), "reported once");
}

#[test]
fn crl_file_past_its_next_update_is_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("crl.der");
    let der = crl_revoking(&CA, &[], now() - 2 * DAY, now() - DAY);
    std::fs::write(&path, &der).unwrap();
    let err = CrlFile::open(&path, vec![anchor()], false, now()).unwrap_err();
    assert!(err.to_string().contains("out of date"), "{err}");
}

#[test]
fn ca_dir_revoke_adds_to_the_list_and_keeps_the_first_revocation_time() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = CaDir::new(tmp.path().join("ca"));
    let mut keys = vec![KEYS.ca.clone(), KEYS.server.clone(), KEYS.client.clone()];
    ca.init_with(
        &InitOptions {
            key_bits: 2048,
            ..InitOptions::default()
        },
        &mut |_| Ok(keys.remove(0)),
    )
    .unwrap();
    let first = ca.revoke(&[vec![0x01, 0x02]], 30).unwrap();
    assert_eq!(first.added, vec!["0102".to_string()]);
    let second = ca
        .revoke(&[vec![0x00, 0x01, 0x02], vec![0x7f]], 30)
        .unwrap();
    assert_eq!(second.added, vec!["7F".to_string()]);
    assert_eq!(second.already, vec!["0102".to_string()]);
    assert_eq!(second.total, 2);
    let anchor = ca.load_anchor().unwrap();
    let crl = load_crl_file(&ca.crl_path(), &anchor).unwrap();
    assert!(crl.revoked_at(&[0x01, 0x02]).is_some());
    assert!(crl.revoked_at(&[0x00, 0x7f]).is_some());
    assert!(crl.revoked_at(&[0x03]).is_none());
    assert_eq!(ca.revocations().unwrap().len(), 2);
}

#[test]
fn pki_errors_say_what_failed_and_name_no_command_line_flag_or_command() {
    use std::path::PathBuf;
    let p = || PathBuf::from("ca/client.key");
    let errors = vec![
        PkiError::Read {
            path: p(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        },
        PkiError::Read {
            path: p(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        },
        PkiError::AlreadyExists {
            path: p(),
            action: "replace it",
        },
        PkiError::Missing {
            path: p(),
            why: MissingReason::CaAbsentBeside { present: p() },
        },
        PkiError::Missing {
            path: p(),
            why: MissingReason::NoCaKey { ca_key: p() },
        },
        PkiError::Missing {
            path: p(),
            why: MissingReason::NoCaCertificate,
        },
        PkiError::Missing {
            path: p(),
            why: MissingReason::HalfPair { present: p() },
        },
        PkiError::KeyMismatch,
        PkiError::Validity("x".into()),
        PkiError::KeyMismatch.in_file(p()),
    ];
    let mut texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
    texts.push(
        CertError::NameMismatch {
            expected: "a".into(),
            found: vec!["DNS:b".into()],
        }
        .to_string(),
    );
    // The library's own checks, as they reach users.
    let tmp = tempfile::tempdir().unwrap();
    let dir = CaDir::new(tmp.path());
    dir.init_with(&test_opts(), &mut cached_keys()).unwrap();
    texts.push(
        dir.init_with(&test_opts(), &mut cached_keys())
            .unwrap_err()
            .to_string(),
    );
    std::fs::remove_file(dir.key_path(Role::Client)).unwrap();
    texts.push(
        dir.ensure_with(Role::Client, &mut cached_keys())
            .unwrap_err()
            .to_string(),
    );
    texts.push(dir.load_identity(Role::Client).unwrap_err().to_string());
    for text in texts {
        assert!(!text.contains("--"), "a flag in a library error: {text}");
        assert!(
            !text.contains("minitls ca"),
            "a command in a library error: {text}"
        );
    }
    let denied = errors[0].to_string();
    assert_eq!(denied, "cannot read ca/client.key: permission denied");
}

// ---- names: RFC 6125 wildcards ----

#[test]
fn wildcard_matching_follows_rfc_6125_vectors() {
    use super::verify::dns_name_matches as m;
    // Positive: exact names, case and one trailing dot ignored; a whole-label wildcard for
    // exactly one label.
    for (pattern, host) in [
        ("files.example.org", "files.example.org"),
        ("Files.Example.ORG", "files.example.org"),
        ("files.example.org.", "files.example.org"),
        ("files.example.org", "files.example.org."),
        ("*.example.org", "files.example.org"),
        ("*.example.org", "FILES.example.org"),
        ("*.EXAMPLE.org", "x.example.org."),
        ("*.a.b", "c.a.b"),
        ("*.example.org", "xn--bcher-kva.example.org"),
    ] {
        assert!(m(pattern, host), "{pattern} should match {host}");
    }
    // Negative: a wildcard covers one label only, only as the whole leftmost label, never
    // a public-suffix-like `*.org`, never an IP address, never a host containing `*`.
    for (pattern, host) in [
        ("files.example.org", "other.example.org"),
        ("files.example.org", "files.example.org.evil"),
        ("*.example.org", "example.org"),
        ("*.example.org", "a.b.example.org"),
        ("*.example.org", ".example.org"),
        ("*.example.org", "files.example.com"),
        ("f*.example.org", "files.example.org"),
        ("*s.example.org", "files.example.org"),
        ("fi*es.example.org", "files.example.org"),
        ("www.*.org", "www.example.org"),
        ("*.*.org", "a.example.org"),
        ("*.org", "example.org"),
        ("*", "localhost"),
        ("*.0.0.1", "127.0.0.1"),
        ("*.example.org", "*.example.org"),
        ("*.example.org", "a..example.org"),
        ("files.example.org", ""),
        ("", ""),
    ] {
        assert!(!m(pattern, host), "{pattern} must not match {host}");
    }
}

#[test]
fn a_wildcard_certificate_verifies_for_one_label_and_ip_names_never_match_it() {
    let mut s = spec(Role::Server);
    s.sans = vec!["*.example.org".parse().unwrap()];
    let der = issue_leaf(&CA, &s, &KEYS.server).unwrap();
    verify(&der, Role::Server, Some("files.example.org")).unwrap();
    for refused in ["example.org", "a.files.example.org", "127.0.0.1"] {
        assert!(
            matches!(
                verify(&der, Role::Server, Some(refused)),
                Err(CertError::NameMismatch { .. })
            ),
            "{refused}"
        );
    }
    // Partial-label and too-broad wildcards cannot even be issued.
    for bad in ["DNS:f*.example.org", "DNS:*.org", "DNS:www.*.example.org"] {
        assert!(bad.parse::<San>().is_err(), "{bad}");
    }
}

#[test]
fn a_server_certificate_without_subject_alternative_names_is_refused_saying_so() {
    let mut s = spec(Role::Server);
    s.sans = Vec::new();
    let der = issue_leaf(&CA, &s, &KEYS.server).unwrap();
    let err = verify(&der, Role::Server, Some("server.example")).unwrap_err();
    assert_eq!(err, CertError::NoSubjectAltNames);
    assert_eq!(
        err.to_string(),
        "certificate has no subject alternative names (the CN is not used)"
    );
}

#[test]
fn a_crl_that_goes_stale_while_serving_is_still_enforced_and_reported_once() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("crl.pem");
    let client = leaf(Role::Client);
    let der = crl_revoking(&CA, &[serial_of(&client)], now() - HOUR, now() + HOUR);
    std::fs::write(&path, encode_pem("X509 CRL", &der)).unwrap();
    let file = CrlFile::open(&path, vec![anchor()], false, now()).unwrap();
    assert!(file.current(now()).1.is_empty());
    let later = now() + 2 * HOUR;
    let (crl, notes) = file.current(later);
    let crl = crl.expect("the list stays in force");
    assert!(
        notes.len() == 1 && notes[0].contains("out of date"),
        "{notes:?}"
    );
    let c = verify_certificate(&anchor(), &client, Role::Client, None, now()).unwrap();
    assert!(matches!(crl.check(&c), Err(CertError::Revoked { .. })));
    assert!(file.current(later).1.is_empty(), "reported once");
}
