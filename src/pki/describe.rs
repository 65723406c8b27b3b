//! Human readable certificate summaries for `minitls ca show`.

use x509_parser::certificate::X509Certificate;

use super::error::PkiError;
use super::pem::pem_to_der;
use super::time::format_unix_utc;
use super::verify::{
    fingerprint_hex, modulus_bits, name_to_string, parse_single, san_strings, sha256_fingerprint,
};

/// Describes the single certificate in `pem`, one `field: value` a line: subject, issuer,
/// serial, validity, SANs, key usage, extended key usage, CA flag, key, SHA-256 fingerprint.
///
/// This describes, it does not verify: use `verify_certificate` for that.
pub fn describe_certificate_pem(pem: &str) -> Result<String, PkiError> {
    let der = pem_to_der(pem)?;
    describe_certificate_der(&der)
}

/// `describe_certificate_pem` for DER input.
pub fn describe_certificate_der(der: &[u8]) -> Result<String, PkiError> {
    let cert = parse_single(der).map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    let validity = cert.validity();
    let sans = san_strings(&cert);
    let lines = [
        ("subject", name_to_string(cert.subject())),
        ("issuer", name_to_string(cert.issuer())),
        ("serial", cert.raw_serial_as_string()),
        (
            "not before",
            format_unix_utc(validity.not_before.timestamp()),
        ),
        ("not after", format_unix_utc(validity.not_after.timestamp())),
        (
            "names",
            if sans.is_empty() {
                "(none)".to_string()
            } else {
                sans.join(", ")
            },
        ),
        ("key usage", key_usage(&cert)),
        ("extended key usage", extended_key_usage(&cert)),
        ("CA", ca_flag(&cert)),
        ("key", key_description(&cert)),
        (
            "SHA-256 fingerprint",
            fingerprint_hex(&sha256_fingerprint(der)),
        ),
    ];
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    let mut out = String::new();
    for (field, value) in lines {
        out.push_str(&format!("{:<width$} {value}\n", format!("{field}:")));
    }
    Ok(out)
}

/// The few facts of a certificate that `ca list` and policies need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertSummary {
    /// The subject's common name (empty if it has none).
    pub common_name: String,
    /// `server`, `client`, `server+client`, `CA` or `other`, from basicConstraints and EKU.
    pub role: &'static str,
    /// Upper-case hex, as `openssl x509 -serial` prints it.
    pub serial: String,
    pub not_after_unix: i64,
    pub sha256: [u8; 32],
    /// The subject, human readable (`CN=...`).
    pub subject: String,
    /// The issuer, human readable.
    pub issuer: String,
    pub not_before_unix: i64,
    /// Subject alternative names as `DNS:x` / `IP:y`.
    pub names: Vec<String>,
}

/// Summarises one DER certificate (describes, does not verify).
pub fn summarize_certificate_der(der: &[u8]) -> Result<CertSummary, PkiError> {
    let cert = parse_single(der).map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or("")
        .to_string();
    let is_ca = cert
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|b| b.value.ca);
    let (server, client) = match cert.extended_key_usage() {
        Ok(Some(e)) => (e.value.server_auth, e.value.client_auth),
        _ => (false, false),
    };
    let role = match (is_ca, server, client) {
        (true, _, _) => "CA",
        (false, true, true) => "server+client",
        (false, true, false) => "server",
        (false, false, true) => "client",
        _ => "other",
    };
    Ok(CertSummary {
        common_name,
        role,
        serial: cert
            .raw_serial()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect(),
        not_after_unix: cert.validity().not_after.timestamp(),
        sha256: sha256_fingerprint(der),
        subject: name_to_string(cert.subject()),
        issuer: name_to_string(cert.issuer()),
        not_before_unix: cert.validity().not_before.timestamp(),
        names: san_strings(&cert),
    })
}

fn key_usage(cert: &X509Certificate<'_>) -> String {
    match cert.key_usage() {
        Ok(Some(ku)) => {
            let v = ku.value;
            let names = [
                (v.digital_signature(), "digitalSignature"),
                (v.non_repudiation(), "nonRepudiation"),
                (v.key_encipherment(), "keyEncipherment"),
                (v.data_encipherment(), "dataEncipherment"),
                (v.key_agreement(), "keyAgreement"),
                (v.key_cert_sign(), "keyCertSign"),
                (v.crl_sign(), "cRLSign"),
                (v.encipher_only(), "encipherOnly"),
                (v.decipher_only(), "decipherOnly"),
            ];
            let set: Vec<&str> = names
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, n)| *n)
                .collect();
            if set.is_empty() {
                "(empty)".into()
            } else {
                set.join(", ")
            }
        }
        Ok(None) => "(none)".into(),
        Err(e) => format!("(invalid: {e})"),
    }
}

fn extended_key_usage(cert: &X509Certificate<'_>) -> String {
    match cert.extended_key_usage() {
        Ok(Some(eku)) => {
            let v = eku.value;
            let mut set: Vec<String> = [
                (v.server_auth, "serverAuth"),
                (v.client_auth, "clientAuth"),
                (v.code_signing, "codeSigning"),
                (v.email_protection, "emailProtection"),
                (v.time_stamping, "timeStamping"),
                (v.ocsp_signing, "OCSPSigning"),
                (v.any, "anyExtendedKeyUsage"),
            ]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| n.to_string())
            .collect();
            set.extend(v.other.iter().map(|oid| oid.to_id_string()));
            if set.is_empty() {
                "(empty)".into()
            } else {
                set.join(", ")
            }
        }
        Ok(None) => "(none)".into(),
        Err(e) => format!("(invalid: {e})"),
    }
}

fn ca_flag(cert: &X509Certificate<'_>) -> String {
    match cert.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => match bc.value.path_len_constraint {
            Some(n) => format!("yes (path length {n})"),
            None => "yes".into(),
        },
        Ok(_) => "no".into(),
        Err(e) => format!("(invalid: {e})"),
    }
}

fn key_description(cert: &X509Certificate<'_>) -> String {
    let spki = cert.public_key();
    match spki.parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(k)) => {
            format!("RSA {} bits", modulus_bits(k.modulus))
        }
        Ok(_) => format!("{} (not RSA)", spki.algorithm.algorithm.to_id_string()),
        Err(e) => format!("(invalid: {e})"),
    }
}
