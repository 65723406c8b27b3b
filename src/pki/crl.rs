//! Certificate revocation lists (RFC 5280 §5): reading and checking one, and making one.
//!
//! A CRL is only used after its signature verified with the CA's key and its issuer name is
//! the CA's subject: a list anyone could write would let anyone un-revoke a certificate (by
//! handing over an empty list) or revoke the server for everybody. A file may hold several
//! lists (a root's and its intermediates'): a trust anchor's is checked when read; an
//! intermediate's, whose certificate only a peer's chain brings, when a verified path holds
//! that CA, with that CA's key. Parsing is x509-parser's;
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
    TrustAnchor, VerifiedCert, issuer_key, name_to_string, names_equal, normalize_serial,
    parse_single, sig_alg, sig_valid,
};
use x509_parser::certificate::X509Certificate;

/// Largest CRL accepted, DER or PEM: about 40,000 entries, far beyond a small private CA, and
/// a bound on what a file can make us allocate and hash.
pub const MAX_CRL_BYTES: usize = 1 << 20;

/// OIDs of the CRL extensions we understand well enough to honour when critical.
const OID_CRL_NUMBER: &str = "2.5.29.20";
const OID_AUTHORITY_KEY_IDENTIFIER: &str = "2.5.29.35";
/// Entry extensions: reasonCode and invalidityDate.
const OID_REASON_CODE: &str = "2.5.29.21";
const OID_INVALIDITY_DATE: &str = "2.5.29.24";

/// The revocation lists of a CRL file: one per CA that issued one, each read and checked on
/// its own. A list signed by a trust anchor is checked when it is read; a list whose issuer is
/// no trust anchor is taken for an intermediate CA's and checked when a peer's verified path
/// holds a CA of that name: its signature with that certificate's key ([`Crl::check`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crl {
    lists: Vec<List>,
}

/// One CRL of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
struct List {
    issuer: String,
    signer: Signer,
    this_update_unix: i64,
    next_update_unix: Option<i64>,
    /// Serial (big-endian, without leading zero bytes) -> revocation time (Unix seconds).
    revoked: HashMap<Vec<u8>, i64>,
}

/// What vouches for a list.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Signer {
    /// This trust anchor (SHA-256 of its certificate) signed it: checked when it was read. It
    /// speaks only for what that certificate issued.
    Anchor([u8; 32]),
    /// Its issuer is no trust anchor: an intermediate CA's list, the whole CRL kept (DER) so
    /// that its signature can be checked with the key of the intermediate a peer's verified
    /// path holds under that name. Until then it vouches for nothing.
    Intermediate { der: Vec<u8> },
}

impl Crl {
    /// Parses a CRL (PEM `X509 CRL` block or DER) and checks that `anchor` issued it: issuer
    /// name, RSA PKCS#1 v1.5 signature over the received bytes, no unknown critical extension.
    /// Whether it is current is a separate question: [`Crl::check_current`].
    pub fn from_bytes(bytes: &[u8], anchor: &TrustAnchor) -> Result<Crl, CrlError> {
        Crl::from_bytes_any(bytes, &[anchor])
    }

    /// Reads every CRL of `bytes`: one DER CRL, or PEM text with one or more `X509 CRL` blocks
    /// (the lists of a root and of its intermediates, concatenated). A list whose issuer is one
    /// of `anchors` must verify with its key; a list of any other issuer is kept for an
    /// intermediate CA (see [`Crl::unanchored_issuers`]), but at least one list must be an
    /// anchor's. Each is checked for critical extensions we do not understand.
    pub fn from_bytes_any(bytes: &[u8], anchors: &[&TrustAnchor]) -> Result<Crl, CrlError> {
        if bytes.len() > MAX_CRL_BYTES {
            return Err(CrlError::Malformed(format!(
                "it is {} bytes, more than the {MAX_CRL_BYTES} accepted",
                bytes.len()
            )));
        }
        // Binary DER is one SEQUENCE covering the input; anything else is read as PEM text.
        if is_one_der_sequence(bytes) {
            return Crl::from_der_any(bytes, anchors);
        }
        let text = std::str::from_utf8(bytes)
            .map_err(|_| CrlError::Malformed("PEM text that is not UTF-8".into()))?;
        let blocks =
            decode_blocks(text, X509_CRL_LABEL).map_err(|e| CrlError::Malformed(e.to_string()))?;
        if blocks.is_empty() {
            return Err(CrlError::Malformed(
                "no X509 CRL block found in the PEM text".into(),
            ));
        }
        let count = blocks.len();
        let mut lists = Vec::with_capacity(count);
        for (i, der) in blocks.iter().enumerate() {
            let list = List::read(der, anchors).map_err(|e| {
                if count == 1 {
                    e
                } else {
                    CrlError::InList {
                        index: i + 1,
                        count,
                        source: Box::new(e),
                    }
                }
            })?;
            lists.push(list);
        }
        Crl::with_anchor_list(lists, anchors)
    }

    /// The lists, if a trust anchor issued at least one of them. A file of other CAs' lists
    /// only is refused: it may be another CA's file put in the wrong place, and taking it
    /// would drop the anchor's own revocations (a server re-reading its file would go from
    /// "these are revoked" to "nothing we know of is"). A root that revokes nothing still
    /// signs an empty list to go with its intermediates'.
    fn with_anchor_list(lists: Vec<List>, anchors: &[&TrustAnchor]) -> Result<Crl, CrlError> {
        if lists.iter().any(|l| matches!(l.signer, Signer::Anchor(_))) {
            return Ok(Crl { lists });
        }
        let issuers: Vec<&str> = lists.iter().map(|l| l.issuer.as_str()).collect();
        let names: Vec<&str> = anchors.iter().map(|a| a.subject()).collect();
        Err(CrlError::WrongIssuer {
            issuer: issuers.join("\", \""),
            ca: names.join("\", \""),
        })
    }

    /// [`Crl::from_bytes`] for DER input.
    pub fn from_der(der: &[u8], anchor: &TrustAnchor) -> Result<Crl, CrlError> {
        Crl::from_der_any(der, &[anchor])
    }

    /// [`Crl::from_bytes_any`] for one DER CRL.
    pub fn from_der_any(der: &[u8], anchors: &[&TrustAnchor]) -> Result<Crl, CrlError> {
        Crl::with_anchor_list(vec![List::read(der, anchors)?], anchors)
    }

    /// Whether every list is current at `now_unix`: thisUpdate not in the future (with
    /// `CLOCK_SKEW_SECS` of tolerance) and nextUpdate, when given, not passed. The first list
    /// that is not is the error.
    pub fn check_current(&self, now_unix: i64) -> Result<(), CrlError> {
        self.lists
            .iter()
            .try_for_each(|l| l.check_current(now_unix))
    }

    /// When the certificate with this serial (raw DER INTEGER bytes) was revoked, if one of the
    /// lists names it (whoever issued it).
    pub fn revoked_at(&self, raw_serial: &[u8]) -> Option<i64> {
        let serial = normalize_serial(raw_serial);
        self.lists
            .iter()
            .find_map(|l| l.revoked.get(&serial).copied())
    }

    /// Refuses a verified certificate if a list revokes it or an intermediate of its path,
    /// each list speaking only for what its CA issued (a serial means nothing under another
    /// issuer): a trust anchor's list for the link the anchor issued, an intermediate's list
    /// for the link that intermediate issued. An intermediate's list is used only once its
    /// signature verified with the key of the intermediate in `cert`'s path (whose own
    /// signature the path check verified); one that claims the intermediate's name but does
    /// not verify, or that a CA without cRLSign would have signed, is an error rather than
    /// ignored: the certificate cannot be shown not to be revoked.
    pub fn check(&self, cert: &VerifiedCert) -> Result<(), CertError> {
        for (i, link) in cert.path.iter().enumerate() {
            let issued_by_intermediate = cert.chain.get(i);
            for list in &self.lists {
                let speaks = match (&list.signer, issued_by_intermediate) {
                    (Signer::Anchor(fp), _) => *fp == link.issuer_fingerprint,
                    (Signer::Intermediate { .. }, None) => false,
                    (Signer::Intermediate { der }, Some(issuer)) => {
                        check_intermediate_list(der, issuer)?
                    }
                };
                if !speaks {
                    continue;
                }
                if let Some(&revoked_at) = list.revoked.get(&link.serial) {
                    return Err(CertError::Revoked {
                        serial: link.serial.iter().map(|b| format!("{b:02X}")).collect(),
                        revoked_at,
                    });
                }
            }
        }
        Ok(())
    }

    /// The issuers of the lists no trust anchor signed (intermediate CAs' lists, checked only
    /// against a peer's path that holds a CA of that name), except those whose issuer is the
    /// subject of one of `known` (DER certificates: our own chain's intermediates). What is
    /// left names a CA in no chain this end knows of: worth reporting, since such a list
    /// counts only if a peer ever presents its CA.
    pub fn unanchored_issuers(&self, known: &[Vec<u8>]) -> Vec<String> {
        let known: Vec<X509Certificate<'_>> =
            known.iter().filter_map(|d| parse_single(d).ok()).collect();
        self.lists
            .iter()
            .filter_map(|l| match &l.signer {
                Signer::Anchor(_) => None,
                Signer::Intermediate { der } => {
                    let named =
                        CertificateRevocationList::from_der(der)
                            .ok()
                            .is_some_and(|(_, crl)| {
                                known
                                    .iter()
                                    .any(|c| names_equal(c.subject(), &crl.tbs_cert_list.issuer))
                            });
                    (!named).then(|| l.issuer.clone())
                }
            })
            .collect()
    }

    /// How many certificates the lists revoke.
    pub fn len(&self) -> usize {
        self.lists.iter().map(|l| l.revoked.len()).sum()
    }

    /// Whether the lists revoke nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many lists were read.
    pub fn lists(&self) -> usize {
        self.lists.len()
    }

    /// The issuers' names, human readable, one per list.
    pub fn issuers(&self) -> Vec<&str> {
        self.lists.iter().map(|l| l.issuer.as_str()).collect()
    }

    /// The latest thisUpdate of the lists (Unix seconds).
    pub fn this_update_unix(&self) -> i64 {
        self.lists
            .iter()
            .map(|l| l.this_update_unix)
            .max()
            .unwrap_or(0)
    }

    /// The earliest nextUpdate (Unix seconds) of the lists that have one: when the file must
    /// be replaced.
    pub fn next_update_unix(&self) -> Option<i64> {
        self.lists.iter().filter_map(|l| l.next_update_unix).min()
    }
}

impl List {
    /// Reads one DER CRL: structure, extensions, and if an anchor is its issuer, the
    /// signature with that anchor's key.
    fn read(der: &[u8], anchors: &[&TrustAnchor]) -> Result<List, CrlError> {
        let crl = parse_crl(der)?;
        let tbs = &crl.tbs_cert_list;

        // 1. Issued by one of our CAs: the name, then the signature with its key. A list of
        //    another issuer waits for an intermediate of that name (see `Signer`).
        let signer = match anchors.iter().find(|a| a.is_subject(&tbs.issuer)) {
            Some(anchor) => {
                let alg = sig_alg(&crl.signature_algorithm, &tbs.signature)
                    .map_err(|e| CrlError::Malformed(e.to_string()))?;
                if !sig_valid(tbs.as_ref(), &crl.signature_value, alg, anchor.public_key()) {
                    return Err(CrlError::BadSignature {
                        ca: anchor.subject().to_string(),
                    });
                }
                Signer::Anchor(anchor.fingerprint())
            }
            None => Signer::Intermediate { der: der.to_vec() },
        };

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
        Ok(List {
            issuer: name_to_string(&tbs.issuer),
            signer,
            this_update_unix: tbs.this_update.timestamp(),
            next_update_unix: tbs.next_update.map(|t| t.timestamp()),
            revoked,
        })
    }

    fn check_current(&self, now_unix: i64) -> Result<(), CrlError> {
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
}

/// One DER CRL, with nothing after it.
fn parse_crl(der: &[u8]) -> Result<CertificateRevocationList<'_>, CrlError> {
    match CertificateRevocationList::from_der(der) {
        Ok(([], crl)) => Ok(crl),
        Ok((rest, _)) => Err(CrlError::Malformed(format!(
            "{} trailing bytes after the CRL",
            rest.len()
        ))),
        Err(e) => Err(CrlError::Malformed(e.to_string())),
    }
}

/// Whether the intermediate `issuer_der` (verified as part of a peer's path) issued the list
/// `crl_der`: `false` if the list names another issuer; an error if it names this one but its
/// signature does not verify with this one's key, or this CA may not sign CRLs.
fn check_intermediate_list(crl_der: &[u8], issuer_der: &[u8]) -> Result<bool, CertError> {
    // Both were parsed before (the list when read, the certificate by the path check).
    let crl = parse_crl(crl_der).map_err(|e| CertError::Malformed(e.to_string()))?;
    let issuer = parse_single(issuer_der)?;
    let tbs = &crl.tbs_cert_list;
    if !names_equal(issuer.subject(), &tbs.issuer) {
        return Ok(false);
    }
    let subject = name_to_string(issuer.subject());
    let forged = || CertError::CrlSignatureInvalid {
        issuer: subject.clone(),
    };
    let alg = sig_alg(&crl.signature_algorithm, &tbs.signature).map_err(|_| forged())?;
    let key = issuer_key(issuer.public_key()).map_err(|_| forged())?;
    if !sig_valid(tbs.as_ref(), &crl.signature_value, alg, &key) {
        return Err(forged());
    }
    // RFC 5280 §4.2.1.3: a CA whose keyUsage is present signs CRLs only with cRLSign.
    match issuer.key_usage() {
        Ok(Some(ku)) if !ku.value.crl_sign() => Err(CertError::IssuerCannotSignCrl { subject }),
        Ok(_) => Ok(true),
        Err(e) => Err(CertError::Malformed(format!("keyUsage: {e}"))),
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
