//! Certificate verification: the trust anchor (our CA) and the checks a peer certificate must pass.
//!
//! Parsing is x509-parser's; every signature is checked with the `rsa` crate over the exact
//! to-be-signed bytes received, never over a re-encoding.

use std::net::IpAddr;

use rsa::RsaPublicKey;
use rsa::pkcs1v15::Pkcs1v15Sign;
use rsa::pkcs8::DecodePublicKey;
use sha2::{Digest, Sha256, Sha384, Sha512};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_PKCS1_RSAENCRYPTION, OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA,
    OID_PKCS1_SHA512WITHRSA, OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER, OID_X509_EXT_BASIC_CONSTRAINTS,
    OID_X509_EXT_EXTENDED_KEY_USAGE, OID_X509_EXT_KEY_USAGE, OID_X509_EXT_SUBJECT_ALT_NAME,
    OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
};
use x509_parser::prelude::FromDer;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo, X509Name};

use super::Role;
use super::error::{CertError, PkiError};
use super::pem::pem_to_der;

/// Smallest RSA modulus accepted in any certificate, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted in any certificate, in bits (bounds the cost of a verification).
pub const MAX_RSA_BITS: usize = 8192;

/// A parsed, checked CA certificate: basicConstraints CA=true, an RSA key of 2048 to 8192 bits,
/// a valid self-signature, and no critical extension we do not understand.
#[derive(Clone, Debug)]
pub struct TrustAnchor {
    der: Vec<u8>,
    subject: String,
    subject_raw: Vec<u8>,
    subject_normalized: NormalizedName,
    public_key: IssuerKey,
    fingerprint: [u8; 32],
    not_before_unix: i64,
    not_after_unix: i64,
    /// basicConstraints pathLenConstraint: most intermediates allowed below this CA.
    path_len: Option<u32>,
}

impl TrustAnchor {
    /// Parses and checks every `CERTIFICATE` block of PEM text (a bundle of trust anchors, as
    /// `--ca-cert` may hold); at least one.
    pub fn bundle_from_pem(pem: &str) -> Result<Vec<TrustAnchor>, PkiError> {
        let blocks = super::pem::decode_blocks(pem, super::pem::CERTIFICATE_LABEL)?;
        if blocks.is_empty() {
            return Err(PkiError::Pem("no CERTIFICATE block found".into()));
        }
        let count = blocks.len();
        blocks
            .iter()
            .enumerate()
            .map(|(i, der)| {
                TrustAnchor::from_der(der).map_err(|e| {
                    if count > 1 {
                        PkiError::BadAnchor(format!("certificate {} of {count}: {e}", i + 1))
                    } else {
                        e
                    }
                })
            })
            .collect()
    }

    /// Parses and checks a PEM CA certificate (exactly one `CERTIFICATE` block).
    pub fn from_pem(pem: &str) -> Result<TrustAnchor, PkiError> {
        TrustAnchor::from_der(&pem_to_der(pem)?)
    }

    /// Parses and checks a DER CA certificate.
    pub fn from_der(der: &[u8]) -> Result<TrustAnchor, PkiError> {
        let bad = |e: CertError| PkiError::BadAnchor(e.to_string());
        let cert = parse_single(der).map_err(bad)?;
        check_extensions(&cert).map_err(bad)?;
        let hash = signature_hash(&cert).map_err(bad)?;
        let path_len = match cert.basic_constraints() {
            Ok(Some(bc)) if bc.value.ca => bc.value.path_len_constraint,
            Ok(_) => {
                return Err(PkiError::BadAnchor(format!(
                    "\"{}\" is not a CA (basicConstraints CA=true is missing); \
                     pass the CA's own certificate (ca.crt), not a server or client certificate",
                    name_to_string(cert.subject())
                )));
            }
            Err(e) => return Err(PkiError::BadAnchor(format!("basicConstraints: {e}"))),
        };
        if cert
            .extensions()
            .iter()
            .any(|e| e.oid.to_id_string() == OID_NAME_CONSTRAINTS)
        {
            return Err(PkiError::BadAnchor(
                "it has name constraints, which minitls does not enforce (refused rather than \
                 ignored)"
                    .into(),
            ));
        }
        if let Ok(Some(ku)) = cert.key_usage()
            && !ku.value.key_cert_sign()
        {
            return Err(PkiError::BadAnchor(
                "its key usage does not allow signing certificates (keyCertSign)".into(),
            ));
        }
        let public_key = issuer_key(cert.public_key()).map_err(bad)?;
        if !names_equal(cert.issuer(), cert.subject()) {
            return Err(PkiError::BadAnchor(format!(
                "it is not self-signed (issued by \"{}\"); pass the root CA certificate",
                name_to_string(cert.issuer())
            )));
        }
        if !signature_valid(&cert, hash, &public_key) {
            return Err(PkiError::BadAnchor(
                "its self-signature does not verify (the file is corrupt or altered)".into(),
            ));
        }
        Ok(TrustAnchor {
            der: der.to_vec(),
            subject: name_to_string(cert.subject()),
            subject_raw: cert.subject().as_raw().to_vec(),
            subject_normalized: normalize_name(cert.subject()),
            public_key,
            fingerprint: sha256_fingerprint(der),
            not_before_unix: cert.validity().not_before.timestamp(),
            not_after_unix: cert.validity().not_after.timestamp(),
            path_len,
        })
    }

    /// The CA's subject as a human readable distinguished name, e.g. `CN=minitls CA 1a2b3c4d`.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// SHA-256 of the CA certificate's DER encoding.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// The CA certificate in DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The CA's public key.
    pub fn public_key(&self) -> &IssuerKey {
        &self.public_key
    }

    /// Start of the CA's validity period (Unix seconds).
    pub fn not_before_unix(&self) -> i64 {
        self.not_before_unix
    }

    /// End of the CA's validity period (Unix seconds).
    pub fn not_after_unix(&self) -> i64 {
        self.not_after_unix
    }

    /// Whether this CA signed the certificate `der` (issuer name and signature; nothing else
    /// is checked: an expired certificate of ours still counts, for revocation).
    pub fn signed(&self, der: &[u8]) -> bool {
        let Ok(cert) = parse_single(der) else {
            return false;
        };
        self.is_subject(cert.issuer())
            && signature_hash(&cert)
                .is_ok_and(|hash| signature_valid(&cert, hash, &self.public_key))
    }

    /// Whether `name` is this CA's subject, byte for byte or after RFC 5280-style normalisation.
    pub(crate) fn is_subject(&self, name: &X509Name<'_>) -> bool {
        name.as_raw() == self.subject_raw.as_slice()
            || normalize_name(name) == self.subject_normalized
    }
}

/// What a peer certificate that passed every check tells us.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCert {
    /// The peer's public key: what its transcript and statement signatures verify under.
    pub public_key: PeerKey,
    /// The peer's subject, human readable.
    pub subject: String,
    /// SHA-256 of the peer certificate's DER.
    pub fingerprint: [u8; 32],
    /// End of the validity period (Unix seconds).
    pub not_after_unix: i64,
    /// Start of the validity period (Unix seconds).
    pub not_before_unix: i64,
    /// The serial number, big-endian without leading zero bytes (for revocation checks).
    pub serial: Vec<u8>,
    /// The verified path, leaf first: each certificate's serial and issuer (for revocation).
    pub path: Vec<PathLink>,
    /// The subject of the trust anchor the path ends at.
    pub anchor_subject: String,
    /// The intermediate CA certificates of the verified path (DER, as received), the leaf's
    /// issuer first; empty when an anchor issued the leaf. `path[i]` was issued by `chain[i]`
    /// for every `i < chain.len()`, the last link by the anchor. Kept beside received files so
    /// that `minitls verify` can check the same path offline.
    pub chain: Vec<Vec<u8>>,
}

/// The anchors' subjects for a message: `"CN=a"` or `"CN=a" or "CN=b"`.
fn anchor_names(anchors: &[&TrustAnchor]) -> String {
    let names: Vec<&str> = anchors.iter().map(|a| a.subject.as_str()).collect();
    names.join("\" or \"")
}

/// Most intermediate CA certificates a peer may send with its own (SPEC §2.9).
pub const MAX_INTERMEDIATES: usize = 3;

/// OID of the nameConstraints extension, refused rather than ignored (RFC 5280 §4.2.1.10:
/// a verifier that does not enforce it must not accept what it would forbid).
const OID_NAME_CONSTRAINTS: &str = "2.5.29.30";

/// One certificate of a verified path, for revocation: its serial and which certificate
/// issued it (SHA-256 of the issuer's DER; for the last link, the trust anchor's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathLink {
    /// Serial number, big-endian, without leading zero bytes.
    pub serial: Vec<u8>,
    /// SHA-256 fingerprint of the issuing certificate.
    pub issuer_fingerprint: [u8; 32],
}

/// Checks a peer certificate (DER, from the network) against the anchor: [`verify_chain`]
/// with one anchor and no intermediates.
pub fn verify_certificate(
    anchor: &TrustAnchor,
    cert_der: &[u8],
    role: Role,
    server_name: Option<&str>,
    now_unix: i64,
) -> Result<VerifiedCert, CertError> {
    verify_chain(&[anchor], cert_der, &[], role, server_name, now_unix)
}

/// Checks a peer certificate and the intermediate CA certificates sent with it against the
/// trust anchors (DER, from the network).
///
/// In order: at most [`MAX_INTERMEDIATES`] intermediates; the leaf is exactly one well-formed
/// DER certificate with no trailing bytes, no duplicate or unparseable extensions and no
/// unknown critical ones, signed with RSA PKCS#1 v1.5 and SHA-256/384/512 (the same algorithm
/// inside and outside the signed part). Then the path, link by link from the leaf: if an anchor
/// is named as the issuer, that anchor must be valid now, its signature must verify and its
/// pathLenConstraint allow the intermediates used; otherwise an unused intermediate whose
/// subject is the issuer must verify the signature and be valid now, a CA (basicConstraints),
/// allowed to sign certificates (keyUsage keyCertSign if present), without name constraints,
/// with a pathLenConstraint that allows the intermediates below it. Then the leaf itself:
/// `now_unix` within [notBefore, notAfter]; not a CA; an RSA key of 2048..=8192 bits; extended
/// key usage serverAuth (server) or clientAuth (client); keyUsage, if present, allows
/// digitalSignature (and keyEncipherment for a server, whose key wraps the session secret);
/// and, when `server_name` is given, a matching DNS or IP subject alternative name (the common
/// name is never used).
pub fn verify_chain(
    anchors: &[&TrustAnchor],
    cert_der: &[u8],
    intermediates: &[Vec<u8>],
    role: Role,
    server_name: Option<&str>,
    now_unix: i64,
) -> Result<VerifiedCert, CertError> {
    if intermediates.len() > MAX_INTERMEDIATES {
        return Err(CertError::TooManyIntermediates {
            count: intermediates.len(),
        });
    }
    // 1. Structure: one certificate, sane extensions, an algorithm we accept.
    let cert = parse_single(cert_der)?;
    check_extensions(&cert)?;
    let parsed: Vec<X509Certificate<'_>> = intermediates
        .iter()
        .map(|der| parse_single(der))
        .collect::<Result<_, _>>()?;

    // 2. The path from the leaf to an anchor.
    let mut path = Vec::with_capacity(intermediates.len() + 1);
    let mut chain = Vec::with_capacity(intermediates.len());
    let mut used = [false; MAX_INTERMEDIATES];
    let mut child = &cert;
    let mut depth = 0; // intermediates between the leaf and `child`'s issuer
    let anchor_subject;
    loop {
        let hash = signature_hash(child)?;
        if let Some(anchor) = anchors.iter().find(|a| a.is_subject(child.issuer())) {
            // The CA itself must be valid now; nothing it signed counts otherwise.
            if now_unix < anchor.not_before_unix {
                return Err(CertError::CaNotYetValid {
                    not_before: anchor.not_before_unix,
                });
            }
            if now_unix > anchor.not_after_unix {
                return Err(CertError::CaExpired {
                    not_after: anchor.not_after_unix,
                });
            }
            if !signature_valid(child, hash, &anchor.public_key) {
                return Err(if depth == 0 {
                    CertError::NotSignedByCa
                } else {
                    CertError::IssuerSignatureInvalid {
                        subject: anchor.subject.clone(),
                    }
                });
            }
            if let Some(limit) = anchor.path_len
                && depth > limit as usize
            {
                return Err(CertError::PathLenExceeded {
                    subject: anchor.subject.clone(),
                    path_len: limit,
                    below: depth,
                });
            }
            path.push(PathLink {
                serial: normalize_serial(child.raw_serial()),
                issuer_fingerprint: anchor.fingerprint,
            });
            anchor_subject = anchor.subject.clone();
            break;
        }
        let next = (0..parsed.len())
            .find(|&i| !used[i] && names_equal(parsed[i].subject(), child.issuer()));
        let Some(i) = next else {
            return Err(if depth == 0 && parsed.is_empty() {
                CertError::WrongIssuer {
                    issuer: name_to_string(child.issuer()),
                    ca: anchor_names(anchors),
                }
            } else {
                CertError::NoPathToAnchor {
                    issuer: name_to_string(child.issuer()),
                    ca: anchor_names(anchors),
                }
            });
        };
        used[i] = true;
        let issuer = &parsed[i];
        let subject = name_to_string(issuer.subject());
        check_extensions(issuer)?;
        if issuer
            .extensions()
            .iter()
            .any(|e| e.oid.to_id_string() == OID_NAME_CONSTRAINTS)
        {
            return Err(CertError::NameConstraints { subject });
        }
        let key = issuer_key(issuer.public_key())?;
        if !signature_valid(child, hash, &key) {
            return Err(CertError::IssuerSignatureInvalid { subject });
        }
        let (not_before, not_after) = (
            issuer.validity().not_before.timestamp(),
            issuer.validity().not_after.timestamp(),
        );
        if now_unix < not_before {
            return Err(CertError::IssuerNotYetValid {
                subject,
                not_before,
            });
        }
        if now_unix > not_after {
            return Err(CertError::IssuerExpired { subject, not_after });
        }
        match issuer.basic_constraints() {
            Ok(Some(bc)) if bc.value.ca => {
                if let Some(limit) = bc.value.path_len_constraint
                    && depth > limit as usize
                {
                    return Err(CertError::PathLenExceeded {
                        subject,
                        path_len: limit,
                        below: depth,
                    });
                }
            }
            Ok(_) => return Err(CertError::IssuerNotCa { subject }),
            Err(e) => return Err(CertError::Malformed(format!("basicConstraints: {e}"))),
        }
        match issuer.key_usage() {
            Ok(Some(ku)) if !ku.value.key_cert_sign() => {
                return Err(CertError::IssuerCannotSign { subject });
            }
            Ok(_) => {}
            Err(e) => return Err(CertError::Malformed(format!("keyUsage: {e}"))),
        }
        path.push(PathLink {
            serial: normalize_serial(child.raw_serial()),
            issuer_fingerprint: sha256_fingerprint(&intermediates[i]),
        });
        chain.push(intermediates[i].clone());
        child = issuer;
        depth += 1;
    }

    // 4. Validity period.
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    if now_unix < not_before {
        return Err(CertError::NotYetValid { not_before });
    }
    if now_unix > not_after {
        return Err(CertError::Expired { not_after });
    }

    // 5. An end-entity certificate, not a CA.
    match cert.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => return Err(CertError::IsCa { role }),
        Ok(_) => {}
        Err(e) => return Err(CertError::Malformed(format!("basicConstraints: {e}"))),
    }

    // 6. The key: RSA for a server (it receives the wrapped secret), RSA or P-256 for a client.
    let public_key = leaf_key(cert.public_key(), role)?;

    // 7. What the key may be used for.
    let eku_ok = match cert.extended_key_usage() {
        Ok(Some(eku)) => match role {
            Role::Server => eku.value.server_auth,
            Role::Client => eku.value.client_auth,
        },
        Ok(None) => false,
        Err(e) => return Err(CertError::Malformed(format!("extendedKeyUsage: {e}"))),
    };
    if !eku_ok {
        return Err(CertError::WrongUsage { role });
    }
    match cert.key_usage() {
        Ok(Some(ku)) => {
            if !ku.value.digital_signature() {
                return Err(CertError::KeyUsageForbids {
                    role,
                    needed: "digitalSignature",
                });
            }
            if role == Role::Server && !ku.value.key_encipherment() {
                return Err(CertError::KeyUsageForbids {
                    role,
                    needed: "keyEncipherment",
                });
            }
        }
        Ok(None) => {}
        Err(e) => return Err(CertError::Malformed(format!("keyUsage: {e}"))),
    }

    // 8. The name the client asked for.
    if let Some(expected) = server_name {
        check_name(&cert, expected)?;
    }

    Ok(VerifiedCert {
        public_key,
        subject: name_to_string(cert.subject()),
        fingerprint: sha256_fingerprint(cert_der),
        not_after_unix: not_after,
        not_before_unix: not_before,
        serial: normalize_serial(cert.raw_serial()),
        path,
        anchor_subject,
        chain,
    })
}

/// Renders a SHA-256 fingerprint as upper-case hex pairs joined by colons, as
/// `openssl x509 -noout -fingerprint -sha256` prints it.
pub fn fingerprint_hex(fp: &[u8; 32]) -> String {
    let mut out = String::with_capacity(fp.len() * 3);
    for (i, b) in fp.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(&format!("{b:02X}"));
    }
    out
}

pub(crate) fn sha256_fingerprint(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// Hash functions allowed with RSA PKCS#1 v1.5 certificate signatures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SigHash {
    Sha256,
    Sha384,
    Sha512,
}

/// Parses exactly one DER certificate: anything after it is an error.
pub(crate) fn parse_single(der: &[u8]) -> Result<X509Certificate<'_>, CertError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok((rest, _)) => Err(CertError::TrailingData(rest.len())),
        Err(e) => Err(CertError::Malformed(e.to_string())),
    }
}

/// Extensions we understand well enough to honour when they are marked critical.
fn is_known_critical(oid: &x509_parser::der_parser::oid::Oid<'_>) -> bool {
    [
        OID_X509_EXT_BASIC_CONSTRAINTS,
        OID_X509_EXT_KEY_USAGE,
        OID_X509_EXT_EXTENDED_KEY_USAGE,
        OID_X509_EXT_SUBJECT_ALT_NAME,
        OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
        OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER,
    ]
    .iter()
    .any(|known| known == oid)
}

/// Rejects duplicate or unparseable extensions (x509-parser would otherwise treat a broken
/// basicConstraints as absent) and critical extensions we would silently ignore.
pub(crate) fn check_extensions(cert: &X509Certificate<'_>) -> Result<(), CertError> {
    cert.extensions_map()
        .map_err(|e| CertError::Malformed(format!("extensions: {e}")))?;
    for ext in cert.extensions() {
        if let ParsedExtension::ParseError { error } = ext.parsed_extension() {
            return Err(CertError::Malformed(format!(
                "extension {} cannot be parsed: {error}",
                ext.oid.to_id_string()
            )));
        }
        if ext.critical && !is_known_critical(&ext.oid) {
            return Err(CertError::UnsupportedCriticalExtension(
                ext.oid.to_id_string(),
            ));
        }
    }
    Ok(())
}

/// The certificate's signature algorithm, which must be the same inside and outside the signed
/// part (see [`sig_alg`]).
pub(crate) fn signature_hash(cert: &X509Certificate<'_>) -> Result<SigAlg, CertError> {
    sig_alg(&cert.signature_algorithm, &cert.tbs_certificate.signature)
}

/// A signature algorithm we verify: RSA PKCS#1 v1.5 or ECDSA, with SHA-256/384/512.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SigAlg {
    /// sha{256,384,512}WithRSAEncryption, parameters NULL or absent.
    Rsa(SigHash),
    /// ecdsa-with-SHA{256,384,512}, parameters absent (RFC 5758).
    Ecdsa(SigHash),
    /// RSASSA-PSS (RFC 4055) with SHA-256/384/512, MGF1 with the same hash, trailer 1.
    RsaPss {
        /// The message and MGF1 hash.
        hash: SigHash,
        /// The salt length the signer declared.
        salt_len: usize,
    },
}

/// OID of RSASSA-PSS, of MGF1 and of the SHA-2 hashes it may name.
const OID_RSASSA_PSS: &str = "1.2.840.113549.1.1.10";
const OID_MGF1: &str = "1.2.840.113549.1.1.8";
const OID_SHA256: &str = "2.16.840.1.101.3.4.2.1";
const OID_SHA384: &str = "2.16.840.1.101.3.4.2.2";
const OID_SHA512: &str = "2.16.840.1.101.3.4.2.3";
/// Largest PSS salt accepted (a hash length is usual; the bound keeps the check cheap).
const MAX_PSS_SALT: usize = 64;

/// The hash and salt length of RSASSA-PSS parameters, if they are ones we verify: SHA-2 for
/// the message and MGF1 alike (the SHA-1 defaults are refused), trailer field 1.
fn pss_params(alg: &AlgorithmIdentifier<'_>) -> Result<SigAlg, CertError> {
    use x509_parser::signature_algorithm::SignatureAlgorithm;
    let refused = |why: &str| CertError::UnsupportedAlgorithm(format!("RSASSA-PSS with {why}"));
    let Ok(SignatureAlgorithm::RSASSA_PSS(params)) = SignatureAlgorithm::try_from(alg) else {
        return Err(CertError::Malformed(
            "RSASSA-PSS parameters cannot be parsed".into(),
        ));
    };
    let hash_of = |oid: String| match oid.as_str() {
        OID_SHA256 => Some(SigHash::Sha256),
        OID_SHA384 => Some(SigHash::Sha384),
        OID_SHA512 => Some(SigHash::Sha512),
        _ => None,
    };
    let hash = hash_of(params.hash_algorithm_oid().to_id_string())
        .ok_or_else(|| refused("a hash other than SHA-256/384/512"))?;
    let mgf = params
        .mask_gen_algorithm()
        .map_err(|_| CertError::Malformed("RSASSA-PSS mask generation cannot be parsed".into()))?;
    if mgf.mgf.to_id_string() != OID_MGF1 || hash_of(mgf.hash.to_id_string()) != Some(hash) {
        return Err(refused(
            "a mask generation other than MGF1 with the same hash",
        ));
    }
    if params.trailer_field() != 1 {
        return Err(CertError::Malformed(
            "RSASSA-PSS trailer field is not 1".into(),
        ));
    }
    let salt_len = params.salt_length() as usize;
    if salt_len > MAX_PSS_SALT {
        return Err(refused("a salt longer than 64 bytes"));
    }
    Ok(SigAlg::RsaPss { hash, salt_len })
}

/// OIDs of ecdsa-with-SHA256/384/512.
const OID_ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
const OID_ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";
const OID_ECDSA_SHA512: &str = "1.2.840.10045.4.3.4";
/// id-ecPublicKey and the two curves accepted for CA keys.
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";

/// The signature algorithm named the same inside (`inner`) and outside (`outer`) the signed
/// part: the rule for certificates and for CRLs alike.
pub(crate) fn sig_alg(
    outer: &AlgorithmIdentifier<'_>,
    inner: &AlgorithmIdentifier<'_>,
) -> Result<SigAlg, CertError> {
    if !same_algorithm(outer, inner) {
        return Err(CertError::AlgorithmMismatch);
    }
    let id = outer.algorithm.to_id_string();
    let alg = if outer.algorithm == OID_PKCS1_SHA256WITHRSA {
        SigAlg::Rsa(SigHash::Sha256)
    } else if outer.algorithm == OID_PKCS1_SHA384WITHRSA {
        SigAlg::Rsa(SigHash::Sha384)
    } else if outer.algorithm == OID_PKCS1_SHA512WITHRSA {
        SigAlg::Rsa(SigHash::Sha512)
    } else if id == OID_ECDSA_SHA256 {
        SigAlg::Ecdsa(SigHash::Sha256)
    } else if id == OID_ECDSA_SHA384 {
        SigAlg::Ecdsa(SigHash::Sha384)
    } else if id == OID_ECDSA_SHA512 {
        SigAlg::Ecdsa(SigHash::Sha512)
    } else if id == OID_RSASSA_PSS {
        return pss_params(outer);
    } else {
        return Err(CertError::UnsupportedAlgorithm(algorithm_name(outer)));
    };
    let params_ok = match alg {
        SigAlg::Rsa(_) => params_null_or_absent(outer),
        SigAlg::Ecdsa(_) => outer.parameters.is_none(),
        SigAlg::RsaPss { .. } => true, // checked by pss_params
    };
    if !params_ok {
        return Err(CertError::Malformed(
            "unexpected signature algorithm parameters".into(),
        ));
    }
    Ok(alg)
}

/// The public key of a CA (trust anchor or intermediate): what verifies the signatures of the
/// certificates and CRLs it issues.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IssuerKey {
    /// RSA, 2048 to 8192 bits.
    Rsa(RsaPublicKey),
    /// ECDSA on NIST P-256.
    P256(p256::ecdsa::VerifyingKey),
    /// ECDSA on NIST P-384.
    P384(p384::ecdsa::VerifyingKey),
}

impl IssuerKey {
    /// The RSA key, if it is one.
    pub fn rsa(&self) -> Option<&RsaPublicKey> {
        match self {
            IssuerKey::Rsa(k) => Some(k),
            _ => None,
        }
    }
}

/// The public key of an end-entity certificate (SPEC §2.9): a server's is RSA, a client's
/// RSA or ECDSA P-256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerKey {
    /// RSA, 2048 to 8192 bits: RSA-PSS signatures (and, for a server, RSA-OAEP key transport).
    Rsa(RsaPublicKey),
    /// ECDSA on NIST P-256 (clients only): ECDSA-SHA256 signatures.
    P256(p256::ecdsa::VerifyingKey),
}

impl PeerKey {
    /// The RSA key, if it is one.
    pub fn rsa(&self) -> Option<&RsaPublicKey> {
        match self {
            PeerKey::Rsa(k) => Some(k),
            PeerKey::P256(_) => None,
        }
    }

    /// What kind of key this is, for messages and `-v` ("RSA-PSS", "ECDSA P-256").
    pub fn signature_name(&self) -> &'static str {
        match self {
            PeerKey::Rsa(_) => "RSA-PSS",
            PeerKey::P256(_) => "ECDSA P-256",
        }
    }
}

/// Extracts the key of a leaf certificate presented for `role`, refusing kinds that role
/// may not hold with a sentence naming what is supported.
pub(crate) fn leaf_key(spki: &SubjectPublicKeyInfo<'_>, role: Role) -> Result<PeerKey, CertError> {
    if spki.algorithm.algorithm == OID_PKCS1_RSAENCRYPTION {
        return rsa_public_key(spki).map(PeerKey::Rsa);
    }
    if role == Role::Client && ec_curve(spki).as_deref() == Some(OID_P256) {
        return p256::ecdsa::VerifyingKey::from_sec1_bytes(spki.subject_public_key.data.as_ref())
            .map(PeerKey::P256)
            .map_err(|e| CertError::Malformed(format!("EC public key: {e}")));
    }
    Err(CertError::UnsupportedKey {
        role,
        kind: key_kind(spki),
    })
}

/// Extracts a CA key: RSA of an accepted size, or EC on P-256 or P-384.
pub(crate) fn issuer_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<IssuerKey, CertError> {
    if spki.algorithm.algorithm == OID_PKCS1_RSAENCRYPTION {
        return rsa_public_key(spki).map(IssuerKey::Rsa);
    }
    let point = spki.subject_public_key.data.as_ref();
    let bad = |e: String| CertError::Malformed(format!("EC public key: {e}"));
    match ec_curve(spki).as_deref() {
        Some(OID_P256) => p256::ecdsa::VerifyingKey::from_sec1_bytes(point)
            .map(IssuerKey::P256)
            .map_err(|e| bad(e.to_string())),
        Some(OID_P384) => p384::ecdsa::VerifyingKey::from_sec1_bytes(point)
            .map(IssuerKey::P384)
            .map_err(|e| bad(e.to_string())),
        _ => Err(CertError::UnsupportedIssuerKey(key_kind(spki))),
    }
}

/// The named curve of an id-ecPublicKey key, if it is one.
fn ec_curve(spki: &SubjectPublicKeyInfo<'_>) -> Option<String> {
    if spki.algorithm.algorithm.to_id_string() != OID_EC_PUBLIC_KEY {
        return None;
    }
    let params = spki.algorithm.parameters.as_ref()?;
    params.as_oid().ok().map(|oid| oid.to_id_string())
}

/// What kind of key a SubjectPublicKeyInfo holds, as words: "an RSA key", "an EC key on
/// P-256", "an Ed25519 key", or "a key of an unknown kind (object identifier ...)".
pub(crate) fn key_kind(spki: &SubjectPublicKeyInfo<'_>) -> String {
    let id = spki.algorithm.algorithm.to_id_string();
    match id.as_str() {
        "1.2.840.113549.1.1.1" => "an RSA key".to_string(),
        OID_EC_PUBLIC_KEY => match ec_curve(spki).as_deref() {
            Some(OID_P256) => "an EC key on P-256".to_string(),
            Some(OID_P384) => "an EC key on P-384".to_string(),
            Some("1.3.132.0.35") => "an EC key on P-521".to_string(),
            Some("1.3.132.0.10") => "an EC key on secp256k1".to_string(),
            Some(curve) => format!("an EC key on an unknown curve (object identifier {curve})"),
            None => "an EC key without a named curve".to_string(),
        },
        "1.3.101.112" => "an Ed25519 key".to_string(),
        "1.3.101.113" => "an Ed448 key".to_string(),
        "1.2.840.113549.1.1.10" => "an RSA-PSS key".to_string(),
        "1.2.840.10040.4.1" => "a DSA key".to_string(),
        _ => format!("a key of an unknown kind (object identifier {id})"),
    }
}

/// A signature algorithm in words: its name when known, else "an algorithm with object
/// identifier ..." (never a bare OID).
fn algorithm_name(alg: &AlgorithmIdentifier<'_>) -> String {
    let id = alg.algorithm.to_id_string();
    let name = match id.as_str() {
        "1.2.840.113549.1.1.4" => "md5WithRSAEncryption",
        "1.2.840.113549.1.1.5" => "sha1WithRSAEncryption",
        "1.2.840.113549.1.1.14" => "sha224WithRSAEncryption",
        "1.2.840.10045.4.1" => "ecdsa-with-SHA1",
        "1.2.840.10045.4.3.1" => "ecdsa-with-SHA224",
        "1.3.101.112" => "Ed25519",
        "1.3.101.113" => "Ed448",
        "1.2.840.10040.4.3" => "dsa-with-SHA1",
        _ => return format!("an algorithm with object identifier {id}"),
    };
    name.to_string()
}

fn same_algorithm(a: &AlgorithmIdentifier<'_>, b: &AlgorithmIdentifier<'_>) -> bool {
    a.algorithm == b.algorithm
        && match (&a.parameters, &b.parameters) {
            (None, None) => true,
            (Some(x), Some(y)) => x.header.tag() == y.header.tag() && x.data == y.data,
            _ => false,
        }
}

fn params_null_or_absent(alg: &AlgorithmIdentifier<'_>) -> bool {
    match &alg.parameters {
        None => true,
        Some(p) => {
            p.header.tag() == x509_parser::der_parser::asn1_rs::Tag::Null && p.data.is_empty()
        }
    }
}

/// Verifies the certificate's signature over its raw TBS bytes with `key`.
pub(crate) fn signature_valid(cert: &X509Certificate<'_>, alg: SigAlg, key: &IssuerKey) -> bool {
    sig_valid(
        cert.tbs_certificate.as_ref(),
        &cert.signature_value,
        alg,
        key,
    )
}

/// Verifies a signature `sig` (RSA PKCS#1 v1.5, or ECDSA as a DER `Ecdsa-Sig-Value`) over the
/// raw signed bytes `tbs` with `key`; an algorithm that does not fit the key fails.
pub(crate) fn sig_valid(
    tbs: &[u8],
    sig: &x509_parser::der_parser::asn1_rs::BitString<'_>,
    alg: SigAlg,
    key: &IssuerKey,
) -> bool {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    if sig.unused_bits != 0 {
        return false;
    }
    let digest = |hash: SigHash| -> Vec<u8> {
        match hash {
            SigHash::Sha256 => Sha256::digest(tbs).to_vec(),
            SigHash::Sha384 => Sha384::digest(tbs).to_vec(),
            SigHash::Sha512 => Sha512::digest(tbs).to_vec(),
        }
    };
    match (alg, key) {
        (SigAlg::Rsa(hash), IssuerKey::Rsa(key)) => {
            let scheme = match hash {
                SigHash::Sha256 => Pkcs1v15Sign::new::<Sha256>(),
                SigHash::Sha384 => Pkcs1v15Sign::new::<Sha384>(),
                SigHash::Sha512 => Pkcs1v15Sign::new::<Sha512>(),
            };
            key.verify(scheme, &digest(hash), &sig.data).is_ok()
        }
        (SigAlg::RsaPss { hash, salt_len }, IssuerKey::Rsa(key)) => {
            use rsa::pss::Pss;
            let hashed = digest(hash);
            match hash {
                SigHash::Sha256 => {
                    key.verify(Pss::<Sha256>::new_with_salt(salt_len), &hashed, &sig.data)
                }
                SigHash::Sha384 => {
                    key.verify(Pss::<Sha384>::new_with_salt(salt_len), &hashed, &sig.data)
                }
                SigHash::Sha512 => {
                    key.verify(Pss::<Sha512>::new_with_salt(salt_len), &hashed, &sig.data)
                }
            }
            .is_ok()
        }
        (SigAlg::Ecdsa(hash), IssuerKey::P256(key)) => p256::ecdsa::Signature::from_der(&sig.data)
            .is_ok_and(|s| key.verify_prehash(&digest(hash), &s).is_ok()),
        (SigAlg::Ecdsa(hash), IssuerKey::P384(key)) => p384::ecdsa::Signature::from_der(&sig.data)
            .is_ok_and(|s| key.verify_prehash(&digest(hash), &s).is_ok()),
        _ => false,
    }
}

/// A serial number's big-endian bytes without leading zero bytes (DER adds one in front of a
/// high first byte; CRLs and certificates may differ in that), so equal serials compare equal.
pub(crate) fn normalize_serial(raw: &[u8]) -> Vec<u8> {
    let start = raw.iter().position(|&b| b != 0).unwrap_or(raw.len());
    raw[start..].to_vec()
}

/// Bit length of a big-endian unsigned integer (leading zero bytes allowed).
pub(crate) fn modulus_bits(bytes: &[u8]) -> usize {
    match bytes.iter().position(|&b| b != 0) {
        None => 0,
        Some(i) => (bytes.len() - i) * 8 - bytes[i].leading_zeros() as usize,
    }
}

/// Extracts an RSA public key of an accepted size from a SubjectPublicKeyInfo.
pub(crate) fn rsa_public_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<RsaPublicKey, CertError> {
    let not_rsa = || CertError::Malformed(format!("expected an RSA key, found {}", key_kind(spki)));
    if spki.algorithm.algorithm != OID_PKCS1_RSAENCRYPTION {
        return Err(not_rsa());
    }
    let bits = match spki.parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(k)) => modulus_bits(k.modulus),
        Ok(_) => return Err(not_rsa()),
        Err(e) => return Err(CertError::Malformed(format!("RSA public key: {e}"))),
    };
    if bits < MIN_RSA_BITS {
        return Err(CertError::KeyTooSmall { bits });
    }
    if bits > MAX_RSA_BITS {
        return Err(CertError::KeyTooLarge { bits });
    }
    RsaPublicKey::from_public_key_der(spki.raw)
        .map_err(|e| CertError::Malformed(format!("RSA public key: {e}")))
}

/// Subject alternative names as `DNS:x` / `IP:y` strings, for messages and `ca show`.
pub(crate) fn san_strings(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(d) => format!("DNS:{}", printable(d)),
            GeneralName::IPAddress(bytes) => match ip_from_bytes(bytes) {
                Some(ip) => format!("IP:{ip}"),
                None => "IP:<invalid>".to_string(),
            },
            GeneralName::RFC822Name(e) => format!("email:{}", printable(e)),
            GeneralName::URI(u) => format!("URI:{}", printable(u)),
            other => printable(&format!("{other:?}")),
        })
        .collect()
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Matches `expected` against the SANs: as an IP address if it parses as one (IP SANs only,
/// never a wildcard), else as a DNS name by [`dns_name_matches`]. The common name is never
/// used (RFC 6125 §6.4.4 allows it only without DNS SANs; RFC 9525 drops it).
fn check_name(cert: &X509Certificate<'_>, expected: &str) -> Result<(), CertError> {
    let mismatch = || CertError::NameMismatch {
        expected: expected.to_string(),
        found: san_strings(cert),
    };
    let san = match cert.subject_alternative_name() {
        Ok(Some(san)) => san,
        Ok(None) => return Err(CertError::NoSubjectAltNames),
        Err(e) => return Err(CertError::Malformed(format!("subjectAltName: {e}"))),
    };
    let bare = expected
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(expected);
    let names = &san.value.general_names;
    let found = if let Ok(ip) = bare.parse::<IpAddr>() {
        names.iter().any(|n| match n {
            GeneralName::IPAddress(bytes) => ip_from_bytes(bytes) == Some(ip),
            _ => false,
        })
    } else {
        names.iter().any(|n| match n {
            GeneralName::DNSName(d) => dns_name_matches(d, expected),
            _ => false,
        })
    };
    if found { Ok(()) } else { Err(mismatch()) }
}

/// Whether the DNS SAN `pattern` names `host` (RFC 6125 §6.4.3): ASCII case-insensitive, one
/// trailing dot ignored on either side. A wildcard is accepted only as the whole leftmost
/// label (`*.example.org`, never `f*.example.org` or `www.*.org`), matches exactly one
/// non-empty label (not `example.org`, not `a.b.example.org`), and needs at least two labels
/// after it (no `*.org`). An IP address never matches a DNS name (the caller compares those
/// with IP SANs only), and a host that contains `*` matches nothing.
pub(crate) fn dns_name_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.strip_suffix('.').unwrap_or(pattern);
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.contains('*') || host.parse::<IpAddr>().is_ok() {
        return false;
    }
    if host.split('.').any(str::is_empty) {
        return false;
    }
    let Some(rest) = pattern.strip_prefix("*.") else {
        return !pattern.contains('*') && pattern.eq_ignore_ascii_case(host);
    };
    if rest.contains('*') || rest.split('.').count() < 2 || rest.split('.').any(str::is_empty) {
        return false;
    }
    match host.split_once('.') {
        Some((first, host_rest)) => !first.is_empty() && host_rest.eq_ignore_ascii_case(rest),
        None => false,
    }
}

/// A distinguished name reduced for comparison: per RDN, sorted (attribute OID, value) pairs
/// with values case-folded and whitespace collapsed (RFC 5280 §7.1, simplified).
type NormalizedName = Vec<Vec<(String, String)>>;

fn normalize_name(name: &X509Name<'_>) -> NormalizedName {
    name.iter()
        .map(|rdn| {
            let mut attrs: Vec<(String, String)> = rdn
                .iter()
                .map(|atv| {
                    let value = match atv.as_str() {
                        Ok(s) => s
                            .split_whitespace()
                            .collect::<Vec<_>>()
                            .join(" ")
                            .to_lowercase(),
                        Err(_) => {
                            let hex: String =
                                atv.as_slice().iter().map(|b| format!("{b:02x}")).collect();
                            format!("#{hex}")
                        }
                    };
                    (atv.attr_type().to_id_string(), value)
                })
                .collect();
            attrs.sort();
            attrs
        })
        .collect()
}

/// Whether two names are equal, byte for byte or after normalisation.
pub(crate) fn names_equal(a: &X509Name<'_>, b: &X509Name<'_>) -> bool {
    a.as_raw() == b.as_raw() || normalize_name(a) == normalize_name(b)
}

/// Human readable DN (`CN=..., O=...`), made safe for a terminal.
pub(crate) fn name_to_string(name: &X509Name<'_>) -> String {
    let s = name.to_string();
    if s.is_empty() {
        "<empty name>".to_string()
    } else {
        printable(&s)
    }
}

/// Longest peer-supplied string echoed into a message.
const MAX_ECHOED_CHARS: usize = 200;

/// Peer-supplied text for messages: control characters escaped (no terminal escape
/// sequences from the network reach a user's screen) and the length bounded.
pub(crate) fn printable(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == MAX_ECHOED_CHARS {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}
