//! Key and certificate generation: RSA keys, the CA certificate and the leaves it signs.
//!
//! rcgen writes the certificates (signing through ring, which wants the CA key as PKCS#8).
//! Everything rcgen would otherwise leave out or derive deterministically is set here: random
//! serial numbers, validity, key usages, extended key usage and the authority key identifier.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use rand::Rng;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rsa::RsaPrivateKey;
use rsa::pkcs8::EncodePublicKey;
use rsa::traits::PublicKeyParts;
use x509_parser::time::ASN1Time;
use zeroize::Zeroizing;

use super::Role;
use super::error::PkiError;
use super::pem::{der_to_pem, pem_to_der, private_key_from_pem, private_key_to_pem};
use super::verify::{MAX_RSA_BITS, MIN_RSA_BITS, PeerKey, TrustAnchor, parse_single};

/// RSA key sizes minitls generates.
pub const ALLOWED_KEY_BITS: [usize; 3] = [2048, 3072, 4096];
/// Bytes of randomness in a serial number (RFC 5280 allows up to 20 octets; CA/B asks for 64+ bits).
const SERIAL_LEN: usize = 16;
/// Longest common name (X.520 ub-common-name; openssl refuses longer ones).
const MAX_COMMON_NAME_LEN: usize = 64;
/// Earliest and latest instants a validity date may take: 1950-01-01 and 9999-12-31T23:59:59,
/// the range X.509 UTCTime/GeneralizedTime can express.
const MIN_CERT_TIME: i64 = -631_152_000;
const MAX_CERT_TIME: i64 = 253_402_300_799;

/// Generates an RSA private key of 2048, 3072 or 4096 bits.
pub fn generate_key(bits: usize) -> Result<RsaPrivateKey, PkiError> {
    if !ALLOWED_KEY_BITS.contains(&bits) {
        return Err(PkiError::KeySize(bits));
    }
    RsaPrivateKey::new(&mut rand::rng(), bits).map_err(|e| PkiError::KeyGeneration(e.to_string()))
}

/// A subject alternative name of a leaf certificate.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum San {
    /// A DNS host name, matched case-insensitively.
    Dns(String),
    /// An IP address.
    Ip(IpAddr),
}

impl San {
    /// The SANs a server certificate gets when none are given: `DNS:localhost`,
    /// `IP:127.0.0.1`, `IP:::1`.
    pub fn default_server_names() -> Vec<San> {
        vec![
            San::Dns("localhost".to_string()),
            San::Ip(IpAddr::from([127, 0, 0, 1])),
            San::Ip(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])),
        ]
    }

    /// The name for a host given without a type: an IP SAN if it parses as an address.
    pub fn for_host(host: &str) -> Result<San, PkiError> {
        host.parse()
    }
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(name) => write!(f, "DNS:{name}"),
            San::Ip(ip) => write!(f, "IP:{ip}"),
        }
    }
}

impl FromStr for San {
    type Err = PkiError;

    /// Parses `DNS:host`, `IP:addr` (prefixes case-insensitive) or a bare host or IP address.
    fn from_str(s: &str) -> Result<San, PkiError> {
        let bad = |reason| PkiError::BadSan {
            input: s.to_string(),
            reason,
        };
        let (kind, value) = match s.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("DNS") => (Some("DNS"), v),
            Some((k, v)) if k.eq_ignore_ascii_case("IP") => (Some("IP"), v),
            _ => (None, s),
        };
        let value = value.trim();
        let unbracketed = value
            .strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'))
            .unwrap_or(value);
        match kind {
            Some("IP") => unbracketed
                .parse()
                .map(San::Ip)
                .map_err(|_| bad("not an IP address")),
            Some(_) => {
                if unbracketed.parse::<IpAddr>().is_ok() {
                    return Err(bad("an IP address must be given as IP:address"));
                }
                validate_dns_name(value).map_err(bad)?;
                Ok(San::Dns(value.to_ascii_lowercase()))
            }
            None => {
                if let Ok(ip) = unbracketed.parse() {
                    return Ok(San::Ip(ip));
                }
                validate_dns_name(value).map_err(bad)?;
                Ok(San::Dns(value.to_ascii_lowercase()))
            }
        }
    }
}

/// Host names as RFC 1123 allows (letters, digits, hyphens, underscores tolerated), no wildcards.
fn validate_dns_name(name: &str) -> Result<(), &'static str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err("empty host name");
    }
    if name.len() > 253 {
        return Err("host name longer than 253 characters");
    }
    // A wildcard only as the whole leftmost label, before at least two more (what clients
    // accept, see `verify::dns_name_matches`).
    let name = match name.strip_prefix("*.") {
        Some(rest) if rest.split('.').count() >= 2 => rest,
        Some(_) => return Err("a wildcard needs at least two labels after it (*.example.org)"),
        None => name,
    };
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each dot-separated part must have 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(
                "only letters, digits, '-', '_' and '.' are allowed (and '*' as the whole first \
                 label)",
            );
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a part of a host name cannot start or end with '-'");
        }
    }
    Ok(())
}

/// Checks a common name: 1 to 64 characters, no control characters.
pub(crate) fn validate_common_name(name: &str) -> Result<(), PkiError> {
    let reason = if name.trim().is_empty() {
        "it is empty"
    } else if name.chars().count() > MAX_COMMON_NAME_LEN {
        "it is longer than 64 characters"
    } else if name.chars().any(char::is_control) {
        "it contains control characters"
    } else {
        return Ok(());
    };
    Err(PkiError::Generate(format!(
        "cannot use {name:?} as a certificate name: {reason}"
    )))
}

/// What a leaf certificate says. `issue_leaf` derives key usage, EKU and the rest from `role`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafSpec {
    /// Server (EKU serverAuth) or client (EKU clientAuth).
    pub role: Role,
    /// Subject CN.
    pub common_name: String,
    /// Subject alternative names (a server's names are checked by clients).
    pub sans: Vec<San>,
    /// Start of validity (Unix seconds).
    pub not_before_unix: i64,
    /// End of validity (Unix seconds).
    pub not_after_unix: i64,
}

/// An extended key usage purpose, for `LeafOverrides`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExtKeyUsage {
    /// id-kp-serverAuth
    ServerAuth,
    /// id-kp-clientAuth
    ClientAuth,
    /// id-kp-codeSigning
    CodeSigning,
    /// anyExtendedKeyUsage
    Any,
}

/// Deviations from what `issue_leaf` makes, for tests and tooling that need odd certificates
/// (wrong or missing EKU, a CA flag on a leaf). The default changes nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeafOverrides {
    /// Replaces the role's EKU: `Some(vec![])` omits the extension entirely.
    pub extended_key_usage: Option<Vec<ExtKeyUsage>>,
    /// Marks the certificate as a CA (basicConstraints CA=true, keyCertSign).
    pub ca: bool,
}

/// A CA certificate with its private key, able to issue leaves.
pub struct CaKeyPair {
    /// The CA certificate, DER.
    pub cert_der: Vec<u8>,
    /// The CA certificate, PEM.
    pub cert_pem: String,
    /// The CA private key.
    pub key: RsaPrivateKey,
    signer: KeyPair,
    anchor: TrustAnchor,
}

impl fmt::Debug for CaKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaKeyPair")
            .field("subject", &self.anchor.subject())
            .field("key", &"[elided]")
            .finish()
    }
}

impl CaKeyPair {
    /// Loads a CA from its PEM certificate and PEM private key (PKCS#8 or PKCS#1).
    ///
    /// The certificate must pass the trust-anchor checks and the key must match it.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<CaKeyPair, PkiError> {
        let cert_der = pem_to_der(cert_pem)?;
        let key = private_key_from_pem(key_pem)?;
        CaKeyPair::from_parts(cert_der, key)
    }

    pub(crate) fn from_parts(cert_der: Vec<u8>, key: RsaPrivateKey) -> Result<CaKeyPair, PkiError> {
        let anchor = TrustAnchor::from_der(&cert_der)?;
        if anchor.public_key().rsa() != Some(key.as_public_key()) {
            return Err(PkiError::KeyMismatch);
        }
        check_issuer_name_reproducible(&cert_der)?;
        let signer = rcgen_signer(&key)?;
        Ok(CaKeyPair {
            cert_pem: der_to_pem(&cert_der),
            cert_der,
            key,
            signer,
            anchor,
        })
    }

    /// The CA certificate as a checked trust anchor.
    pub fn anchor(&self) -> &TrustAnchor {
        &self.anchor
    }

    /// rcgen's signer for the CA key (certificates and CRLs).
    pub(super) fn signer(&self) -> &KeyPair {
        &self.signer
    }
}

/// rcgen copies the CA's subject into each leaf's issuer field by re-encoding it, and only
/// handles names whose every RDN holds exactly one attribute (it panics on an empty one).
fn check_issuer_name_reproducible(cert_der: &[u8]) -> Result<(), PkiError> {
    let cert = parse_single(cert_der).map_err(|e| PkiError::BadAnchor(e.to_string()))?;
    if cert.subject().iter().any(|rdn| rdn.iter().count() != 1) {
        return Err(PkiError::BadAnchor(
            "its subject has multi-valued or empty name components, which minitls cannot \
             issue certificates under"
                .into(),
        ));
    }
    Ok(())
}

/// Loads a key into rcgen's ring-backed signer (which accepts RSA keys only as PKCS#8).
fn rcgen_signer(key: &RsaPrivateKey) -> Result<KeyPair, PkiError> {
    let pem = Zeroizing::new(private_key_to_pem(key)?);
    KeyPair::from_pkcs8_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256)
        .map_err(|e| PkiError::BadKey(format!("cannot use the key for signing: {e}")))
}

/// A random positive serial number of `SERIAL_LEN` bytes with no leading zero byte.
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; SERIAL_LEN];
    rand::rng().fill_bytes(&mut bytes);
    // Clear the sign bit (positive INTEGER) and keep the first byte non-zero so the encoding
    // is always the full length.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}

/// Fills in the validity period, refusing empty or unencodable ones.
fn set_validity(
    params: &mut CertificateParams,
    not_before: i64,
    not_after: i64,
) -> Result<(), PkiError> {
    if not_before >= not_after {
        return Err(PkiError::Validity(format!(
            "notBefore ({not_before}) must be earlier than notAfter ({not_after})"
        )));
    }
    for t in [not_before, not_after] {
        if !(MIN_CERT_TIME..=MAX_CERT_TIME).contains(&t) {
            return Err(PkiError::Validity(format!(
                "{t} is outside the years 1950 to 9999 that certificates can express"
            )));
        }
    }
    let to_time = |t: i64| {
        ASN1Time::from_timestamp(t)
            .map(|t| t.to_datetime())
            .map_err(|e| PkiError::Validity(format!("{t}: {e}")))
    };
    params.not_before = to_time(not_before)?;
    params.not_after = to_time(not_after)?;
    Ok(())
}

fn subject(common_name: &str) -> Result<DistinguishedName, PkiError> {
    validate_common_name(common_name)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    Ok(dn)
}

fn key_bits(key: &RsaPrivateKey) -> usize {
    key.n().bits_vartime() as usize
}

/// Makes a self-signed CA certificate: basicConstraints CA=true (critical, pathLen 0: it signs
/// leaves only), keyUsage keyCertSign + cRLSign, a random serial, a subject key identifier.
pub fn new_ca(
    common_name: &str,
    key: RsaPrivateKey,
    not_before_unix: i64,
    not_after_unix: i64,
) -> Result<CaKeyPair, PkiError> {
    let bits = key_bits(&key);
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(PkiError::BadKey(format!(
            "a CA key must have 2048 to 8192 bits, this one has {bits}"
        )));
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(common_name)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.serial_number = Some(random_serial());
    set_validity(&mut params, not_before_unix, not_after_unix)?;
    let signer = rcgen_signer(&key)?;
    let cert = params
        .self_signed(&signer)
        .map_err(|e| PkiError::Generate(e.to_string()))?;
    CaKeyPair::from_parts(cert.der().to_vec(), key)
}

/// Issues a leaf certificate for `key`: random serial, keyUsage digitalSignature +
/// keyEncipherment, EKU serverAuth or clientAuth by role, the given SANs, basicConstraints
/// CA=false, subject and authority key identifiers, the validity as given.
pub fn issue_leaf(
    ca: &CaKeyPair,
    spec: &LeafSpec,
    key: &RsaPrivateKey,
) -> Result<Vec<u8>, PkiError> {
    issue_leaf_with(ca, spec, key, &LeafOverrides::default())
}

/// `issue_leaf` with deviations (see `LeafOverrides`); for tests and tooling.
///
/// Unlike `generate_key`, any RSA key the `rsa` crate accepts may be certified here, so that
/// tests can show the verifier refusing small keys.
pub fn issue_leaf_with(
    ca: &CaKeyPair,
    spec: &LeafSpec,
    key: &RsaPrivateKey,
    overrides: &LeafOverrides,
) -> Result<Vec<u8>, PkiError> {
    issue_leaf_for(ca, spec, &PeerKey::Rsa(key.to_public_key()), overrides)
}

/// Issues a leaf for any public key a leaf may hold: RSA, or EC P-256 for a client (whose
/// key usage is then digitalSignature alone: an EC key enciphers nothing here).
pub fn issue_leaf_for(
    ca: &CaKeyPair,
    spec: &LeafSpec,
    key: &PeerKey,
    overrides: &LeafOverrides,
) -> Result<Vec<u8>, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(&spec.common_name)?;
    params.subject_alt_names = spec
        .sans
        .iter()
        .map(|san| match san {
            San::Dns(name) => {
                name.as_str()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|e| PkiError::BadSan {
                        input: name.clone(),
                        reason: if matches!(e, rcgen::Error::InvalidAsn1String(_)) {
                            "not an ASCII host name"
                        } else {
                            "cannot be encoded"
                        },
                    })
            }
            San::Ip(ip) => Ok(SanType::IpAddress(*ip)),
        })
        .collect::<Result<_, _>>()?;
    params.key_usages = match key {
        PeerKey::Rsa(_) => vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ],
        PeerKey::P256(_) => vec![KeyUsagePurpose::DigitalSignature],
    };
    if overrides.ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages.push(KeyUsagePurpose::KeyCertSign);
    } else {
        // Writes basicConstraints CA=false and the subject key identifier.
        params.is_ca = IsCa::ExplicitNoCa;
    }
    params.extended_key_usages = match &overrides.extended_key_usage {
        Some(list) => list
            .iter()
            .map(|eku| match eku {
                ExtKeyUsage::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
                ExtKeyUsage::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
                ExtKeyUsage::CodeSigning => ExtendedKeyUsagePurpose::CodeSigning,
                ExtKeyUsage::Any => ExtendedKeyUsagePurpose::Any,
            })
            .collect(),
        None => vec![match spec.role {
            Role::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Role::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }],
    };
    params.serial_number = Some(random_serial());
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, spec.not_before_unix, spec.not_after_unix)?;

    let encode =
        |e: rsa::pkcs8::spki::Error| PkiError::BadKey(format!("cannot encode the public key: {e}"));
    let spki_der = match key {
        PeerKey::Rsa(k) => k.to_public_key_der().map_err(encode)?,
        PeerKey::P256(k) => k.to_public_key_der().map_err(encode)?,
    };
    let public = rcgen::SubjectPublicKeyInfo::from_der(spki_der.as_bytes())
        .map_err(|e| PkiError::BadKey(format!("cannot use the public key: {e}")))?;
    // The issuer name and key identifier come from the CA certificate itself, so the leaf's
    // issuer field and authority key identifier match it.
    let issuer = Issuer::from_ca_cert_der(&ca.cert_der.as_slice().into(), &ca.signer)
        .map_err(|e| PkiError::Generate(format!("cannot read the CA certificate: {e}")))?;
    let cert = params
        .signed_by(&public, &issuer)
        .map_err(|e| PkiError::Generate(e.to_string()))?;
    let der = cert.der().to_vec();

    // rcgen re-encodes the CA's name; make sure our own verifier will recognise it.
    let parsed = parse_single(&der).map_err(|e| PkiError::Generate(e.to_string()))?;
    if !ca.anchor.is_subject(parsed.issuer()) {
        return Err(PkiError::Generate(
            "the CA's subject name could not be reproduced in the issued certificate".into(),
        ));
    }
    Ok(der)
}
