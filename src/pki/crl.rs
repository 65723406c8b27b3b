//! Certificate revocation lists (RFC 5280 §5): reading and checking one, and making one.
//!
//! A CRL is only used after its signature verified with the CA's key and its issuer name is
//! the CA's subject: a list anyone could write would let anyone un-revoke a certificate (by
//! handing over an empty list) or revoke the server for everybody. Parsing is x509-parser's;
//! the signature is checked with the same code as certificate signatures, over the exact
//! received to-be-signed bytes. rcgen writes the CRLs `ca revoke` makes.
//!
//! What is refused rather than ignored: a critical CRL or entry extension we do not understand
//! (an issuingDistributionPoint could limit the list to some certificates, a deltaCRLIndicator
//! makes it a partial list, a certificateIssuer entry makes it an indirect CRL), and a list
//! whose nextUpdate has passed (see [`Crl::check_current`]): an attacker who can keep an old
//! list in place must not be able to hide a newer revocation forever.

use std::collections::HashMap;

use rcgen::{CertificateRevocationListParams, Issuer, KeyIdMethod, RevokedCertParams};
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::time::ASN1Time;

use super::error::{CertError, CrlError, PkiError};
use super::issue::CaKeyPair;
use super::pem::{X509_CRL_LABEL, decode_blocks, is_one_der_sequence};
use super::verify::{
    TrustAnchor, VerifiedCert, name_to_string, normalize_serial, parse_single, sig_alg, sig_valid,
};

/// Largest CRL accepted, DER or PEM: about 40,000 entries, far beyond a small private CA, and
/// a bound on what a file can make us allocate and hash.
pub const MAX_CRL_BYTES: usize = 1 << 20;

/// OIDs of the CRL extensions we understand well enough to honour when critical.
const OID_CRL_NUMBER: &str = "2.5.29.20";
const OID_AUTHORITY_KEY_IDENTIFIER: &str = "2.5.29.35";
/// Entry extensions: reasonCode and invalidityDate.
const OID_REASON_CODE: &str = "2.5.29.21";
const OID_INVALIDITY_DATE: &str = "2.5.29.24";

/// A CRL whose signature verified with a trust anchor: which serials that CA revoked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crl {
    issuer: String,
    /// SHA-256 of the CA certificate that signed the list: it speaks only for what that
    /// certificate issued.
    issuer_fingerprint: [u8; 32],
    this_update_unix: i64,
    next_update_unix: Option<i64>,
    /// Serial (big-endian, without leading zero bytes) -> revocation time (Unix seconds).
    revoked: HashMap<Vec<u8>, i64>,
}

impl Crl {
    /// Parses a CRL (PEM `X509 CRL` block or DER) and checks that `anchor` issued it: issuer
    /// name, RSA PKCS#1 v1.5 signature over the received bytes, no unknown critical extension.
    /// Whether it is current is a separate question: [`Crl::check_current`].
    pub fn from_bytes(bytes: &[u8], anchor: &TrustAnchor) -> Result<Crl, CrlError> {
        Crl::from_bytes_any(bytes, &[anchor])
    }

    /// [`Crl::from_bytes`] for a CRL issued by whichever of `anchors` its issuer names (the
    /// CAs of a `--ca-cert` bundle).
    pub fn from_bytes_any(bytes: &[u8], anchors: &[&TrustAnchor]) -> Result<Crl, CrlError> {
        if bytes.len() > MAX_CRL_BYTES {
            return Err(CrlError::Malformed(format!(
                "it is {} bytes, more than the {MAX_CRL_BYTES} accepted",
                bytes.len()
            )));
        }
        // Binary DER is one SEQUENCE covering the input; anything else is read as PEM text.
        let der = if !is_one_der_sequence(bytes) {
            let text = std::str::from_utf8(bytes)
                .map_err(|_| CrlError::Malformed("PEM text that is not UTF-8".into()))?;
            let mut blocks = decode_blocks(text, X509_CRL_LABEL)
                .map_err(|e| CrlError::Malformed(e.to_string()))?;
            match blocks.len() {
                1 => blocks.remove(0),
                0 => {
                    return Err(CrlError::Malformed(
                        "no X509 CRL block found in the PEM text".into(),
                    ));
                }
                n => {
                    return Err(CrlError::Malformed(format!(
                        "found {n} X509 CRL blocks, expected exactly one"
                    )));
                }
            }
        } else {
            bytes.to_vec()
        };
        Crl::from_der_any(&der, anchors)
    }

    /// [`Crl::from_bytes`] for DER input.
    pub fn from_der(der: &[u8], anchor: &TrustAnchor) -> Result<Crl, CrlError> {
        Crl::from_der_any(der, &[anchor])
    }

    /// [`Crl::from_bytes_any`] for DER input.
    pub fn from_der_any(der: &[u8], anchors: &[&TrustAnchor]) -> Result<Crl, CrlError> {
        let crl = match CertificateRevocationList::from_der(der) {
            Ok(([], crl)) => crl,
            Ok((rest, _)) => {
                return Err(CrlError::Malformed(format!(
                    "{} trailing bytes after the CRL",
                    rest.len()
                )));
            }
            Err(e) => return Err(CrlError::Malformed(e.to_string())),
        };
        let tbs = &crl.tbs_cert_list;

        // 1. Issued by one of our CAs: the name, then the signature with its key.
        let Some(anchor) = anchors.iter().find(|a| a.is_subject(&tbs.issuer)) else {
            let names: Vec<&str> = anchors.iter().map(|a| a.subject()).collect();
            return Err(CrlError::WrongIssuer {
                issuer: name_to_string(&tbs.issuer),
                ca: names.join("\", \""),
            });
        };
        let alg = sig_alg(&crl.signature_algorithm, &tbs.signature)
            .map_err(|e| CrlError::Malformed(e.to_string()))?;
        if !sig_valid(tbs.as_ref(), &crl.signature_value, alg, anchor.public_key()) {
            return Err(CrlError::BadSignature {
                ca: anchor.subject().to_string(),
            });
        }

        // 2. Nothing that would change the meaning of the list without our noticing.
        for ext in tbs.extensions() {
            let oid = ext.oid.to_id_string();
            if ext.critical && oid != OID_CRL_NUMBER && oid != OID_AUTHORITY_KEY_IDENTIFIER {
                return Err(CrlError::UnsupportedCriticalExtension(oid));
            }
        }
        let mut revoked = HashMap::new();
        for entry in crl.iter_revoked_certificates() {
            for ext in entry.extensions() {
                let oid = ext.oid.to_id_string();
                if ext.critical && oid != OID_REASON_CODE && oid != OID_INVALIDITY_DATE {
                    return Err(CrlError::UnsupportedCriticalExtension(oid));
                }
            }
            revoked.insert(
                normalize_serial(entry.raw_serial()),
                entry.revocation_date.timestamp(),
            );
        }
        Ok(Crl {
            issuer: name_to_string(&tbs.issuer),
            issuer_fingerprint: anchor.fingerprint(),
            this_update_unix: tbs.this_update.timestamp(),
            next_update_unix: tbs.next_update.map(|t| t.timestamp()),
            revoked,
        })
    }

    /// Whether the list is current at `now_unix`: thisUpdate not in the future (with
    /// `CLOCK_SKEW_SECS` of tolerance) and nextUpdate, when given, not passed.
    pub fn check_current(&self, now_unix: i64) -> Result<(), CrlError> {
        if self.this_update_unix > now_unix.saturating_add(CLOCK_SKEW_SECS) {
            return Err(CrlError::NotYetValid {
                this_update: self.this_update_unix,
            });
        }
        match self.next_update_unix {
            Some(next) if next < now_unix => Err(CrlError::Stale { next_update: next }),
            _ => Ok(()),
        }
    }

    /// When the certificate with this serial (raw DER INTEGER bytes) was revoked, if it was.
    pub fn revoked_at(&self, raw_serial: &[u8]) -> Option<i64> {
        self.revoked.get(&normalize_serial(raw_serial)).copied()
    }

    /// Refuses a verified certificate if the list revokes it or an intermediate of its path,
    /// among those this list's CA issued (a serial means nothing under another issuer).
    pub fn check(&self, cert: &VerifiedCert) -> Result<(), CertError> {
        for link in &cert.path {
            if link.issuer_fingerprint != self.issuer_fingerprint {
                continue;
            }
            if let Some(revoked_at) = self.revoked_at(&link.serial) {
                return Err(CertError::Revoked {
                    serial: link.serial.iter().map(|b| format!("{b:02X}")).collect(),
                    revoked_at,
                });
            }
        }
        Ok(())
    }

    /// How many certificates the list revokes.
    pub fn len(&self) -> usize {
        self.revoked.len()
    }

    /// Whether the list revokes nothing.
    pub fn is_empty(&self) -> bool {
        self.revoked.is_empty()
    }

    /// The issuer's name, human readable.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// thisUpdate (Unix seconds).
    pub fn this_update_unix(&self) -> i64 {
        self.this_update_unix
    }

    /// nextUpdate (Unix seconds), if the list has one.
    pub fn next_update_unix(&self) -> Option<i64> {
        self.next_update_unix
    }
}

/// How far in the future a CRL's thisUpdate may lie (clocks of the CA machine and ours differ).
const CLOCK_SKEW_SECS: i64 = 300;

/// One entry of a CRL to make: the serial (big-endian bytes) and when it was revoked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    /// Serial number, big-endian, without leading zero bytes.
    pub serial: Vec<u8>,
    /// Revocation time (Unix seconds).
    pub revoked_at_unix: i64,
}

/// Makes a CRL (DER) signed by `ca` listing `entries`, valid from `this_update_unix` to
/// `next_update_unix`, with CRL number `number` (it must grow with each list).
pub fn make_crl(
    ca: &CaKeyPair,
    entries: &[Revocation],
    this_update_unix: i64,
    next_update_unix: i64,
    number: u64,
) -> Result<Vec<u8>, PkiError> {
    let to_time = |t: i64| {
        ASN1Time::from_timestamp(t)
            .map(|t| t.to_datetime())
            .map_err(|e| PkiError::Validity(format!("CRL date out of range: {e}")))
    };
    let revoked_certs = entries
        .iter()
        .map(|e| {
            Ok(RevokedCertParams {
                serial_number: rcgen::SerialNumber::from_slice(&normalize_serial(&e.serial)),
                revocation_time: to_time(e.revoked_at_unix)?,
                reason_code: None,
                invalidity_date: None,
            })
        })
        .collect::<Result<Vec<_>, PkiError>>()?;
    let params = CertificateRevocationListParams {
        this_update: to_time(this_update_unix)?,
        next_update: to_time(next_update_unix)?,
        // rcgen (yasna) writes these as positive INTEGERs, adding a zero byte where needed.
        crl_number: rcgen::SerialNumber::from_slice(&normalize_serial(&number.to_be_bytes())),
        issuing_distribution_point: None,
        revoked_certs,
        // The authority key identifier must be the CA certificate's subject key identifier,
        // which is how openssl (and RFC 5280 path building) matches a CRL to its issuer.
        key_identifier_method: match subject_key_id(&ca.cert_der) {
            Some(id) => KeyIdMethod::PreSpecified(id),
            None => KeyIdMethod::Sha256,
        },
    };
    let issuer = Issuer::from_ca_cert_der(&ca.cert_der.as_slice().into(), ca.signer())
        .map_err(|e| PkiError::Generate(format!("cannot read the CA certificate: {e}")))?;
    let crl = params
        .signed_by(&issuer)
        .map_err(|e| PkiError::Generate(format!("cannot sign the CRL: {e}")))?;
    Ok(crl.der().to_vec())
}

/// The subjectKeyIdentifier of a DER certificate, if it has one.
fn subject_key_id(cert_der: &[u8]) -> Option<Vec<u8>> {
    let cert = parse_single(cert_der).ok()?;
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
}
