//! Error types of the PKI module: `CertError` for a rejected certificate, `PkiError` for the rest.

use std::io;
use std::path::PathBuf;

use super::Role;
use super::time::format_unix_utc;

/// Why a certificate was rejected.
///
/// One variant per check, so the message names the check that failed. The input comes from the
/// network; building this error never panics and its messages never echo raw peer bytes beyond
/// names already parsed as strings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// The bytes are not a DER X.509 certificate.
    #[error("certificate is malformed: {0}")]
    Malformed(String),
    /// Something follows the certificate inside the same buffer.
    #[error("certificate is malformed: {0} trailing bytes after the DER certificate")]
    TrailingData(usize),
    /// The signature algorithm is not RSA PKCS#1 v1.5 with SHA-256, SHA-384 or SHA-512.
    #[error(
        "certificate is signed with {0}, which minitls does not accept (it accepts RSA PKCS#1 \
         v1.5, RSA-PSS and ECDSA signatures with SHA-256, SHA-384 or SHA-512)"
    )]
    UnsupportedAlgorithm(String),
    /// A CA key of a kind this verifier cannot check signatures with.
    #[error(
        "the issuing CA has {0}, which minitls cannot verify signatures with (CA keys may be \
         RSA of 2048 to 8192 bits, or EC on P-256 or P-384)"
    )]
    UnsupportedIssuerKey(String),
    /// The algorithm inside the signed part differs from the one outside it.
    #[error("certificate is malformed: the signed and the outer signature algorithms differ")]
    AlgorithmMismatch,
    /// The issuer name is not the configured CA's subject.
    #[error(
        "certificate is not signed by the configured CA: it was issued by \"{issuer}\", \
         the CA is \"{ca}\""
    )]
    WrongIssuer {
        /// Issuer named in the certificate.
        issuer: String,
        /// Subject of the configured CA.
        ca: String,
    },
    /// The signature does not verify with the CA's public key.
    #[error("certificate is not signed by the configured CA (signature check failed)")]
    NotSignedByCa,
    /// The configured CA certificate is past its notAfter date.
    #[error("the configured CA certificate expired on {}", format_unix_utc(*not_after))]
    CaExpired {
        /// The CA's notAfter (Unix seconds).
        not_after: i64,
    },
    /// The configured CA certificate is not valid yet.
    #[error("the configured CA certificate is not valid before {}", format_unix_utc(*not_before))]
    CaNotYetValid {
        /// The CA's notBefore (Unix seconds).
        not_before: i64,
    },
    /// The certificate is past its notAfter date.
    #[error("certificate expired on {}", format_unix_utc(*not_after))]
    Expired {
        /// The certificate's notAfter (Unix seconds).
        not_after: i64,
    },
    /// The certificate's notBefore date is in the future.
    #[error("certificate is not valid before {}", format_unix_utc(*not_before))]
    NotYetValid {
        /// The certificate's notBefore (Unix seconds).
        not_before: i64,
    },
    /// A CA certificate was presented where an end-entity certificate belongs.
    #[error("certificate is a CA certificate (basicConstraints CA=true), not a {role} certificate")]
    IsCa {
        /// The role the certificate was presented for.
        role: Role,
    },
    /// The key is of a kind this role may not have.
    #[error("certificate holds {kind}; {}", supported_leaf_keys(*role))]
    UnsupportedKey {
        /// The role the certificate was presented for.
        role: Role,
        /// What the key is ("an EC key on P-384").
        kind: String,
    },
    /// The RSA key is shorter than 2048 bits.
    #[error("certificate RSA key is too small: {bits} bits (at least 2048 required)")]
    KeyTooSmall {
        /// Size of the modulus.
        bits: usize,
    },
    /// The RSA key is longer than 8192 bits.
    #[error("certificate RSA key is too large: {bits} bits (at most 8192 accepted)")]
    KeyTooLarge {
        /// Size of the modulus.
        bits: usize,
    },
    /// The extended key usage does not allow this role.
    #[error(
        "certificate is not allowed for use as a {role}: its extended key usage lacks {}",
        role.eku_name()
    )]
    WrongUsage {
        /// The role the certificate was presented for.
        role: Role,
    },
    /// The keyUsage extension is present and forbids what this role does with the key.
    #[error("certificate key usage does not allow {needed}, which a {role} certificate needs")]
    KeyUsageForbids {
        /// The role the certificate was presented for.
        role: Role,
        /// The missing key usage bit(s).
        needed: &'static str,
    },
    /// No subject alternative name matches the expected server name.
    #[error(
        "certificate does not name \"{expected}\" (its names: {})",
        if found.is_empty() { "none".to_string() } else { found.join(", ") }
    )]
    NameMismatch {
        /// The name the client asked for.
        expected: String,
        /// The subject alternative names in the certificate.
        found: Vec<String>,
    },
    /// More intermediate CA certificates than accepted.
    #[error(
        "the certificate chain has {count} intermediate CA certificates; at most 3 are accepted"
    )]
    TooManyIntermediates {
        /// How many were sent.
        count: usize,
    },
    /// The chain's last certificate is issued by no configured CA and by nothing sent.
    #[error(
        "the certificate chain does not lead to a configured CA: nothing sent or trusted is \
         \"{issuer}\" (trusted: \"{ca}\")"
    )]
    NoPathToAnchor {
        /// The issuer no certificate was found for.
        issuer: String,
        /// The configured CAs.
        ca: String,
    },
    /// An issuer's signature over a certificate of the chain does not verify.
    #[error("a certificate of the chain is not signed by \"{subject}\" (signature check failed)")]
    IssuerSignatureInvalid {
        /// The issuing CA.
        subject: String,
    },
    /// An intermediate without basicConstraints CA=true.
    #[error(
        "\"{subject}\" is used as an issuer but is not a CA (basicConstraints CA=true is \
         missing)"
    )]
    IssuerNotCa {
        /// The certificate used as an issuer.
        subject: String,
    },
    /// An intermediate whose keyUsage lacks keyCertSign.
    #[error("intermediate CA \"{subject}\" may not sign certificates (keyUsage lacks keyCertSign)")]
    IssuerCannotSign {
        /// The intermediate.
        subject: String,
    },
    /// More intermediates below a CA than its pathLenConstraint allows.
    #[error(
        "CA \"{subject}\" allows {path_len} intermediate CA(s) below it (pathLenConstraint), \
         the chain has {below}"
    )]
    PathLenExceeded {
        /// The constraining CA.
        subject: String,
        /// Its pathLenConstraint.
        path_len: u32,
        /// Intermediates below it in the chain.
        below: usize,
    },
    /// An intermediate is past its notAfter date.
    #[error("intermediate CA \"{subject}\" expired on {}", format_unix_utc(*not_after))]
    IssuerExpired {
        /// The intermediate.
        subject: String,
        /// Its notAfter (Unix seconds).
        not_after: i64,
    },
    /// An intermediate is not valid yet.
    #[error("intermediate CA \"{subject}\" is not valid before {}", format_unix_utc(*not_before))]
    IssuerNotYetValid {
        /// The intermediate.
        subject: String,
        /// Its notBefore (Unix seconds).
        not_before: i64,
    },
    /// An intermediate with name constraints, which are not enforced here.
    #[error(
        "intermediate CA \"{subject}\" has name constraints, which minitls does not enforce \
         (refused rather than ignored)"
    )]
    NameConstraints {
        /// The intermediate.
        subject: String,
    },
    /// A server name was asked for, but the certificate has no subjectAltName extension.
    #[error("certificate has no subject alternative names (the CN is not used)")]
    NoSubjectAltNames,
    /// A critical extension this verifier does not understand.
    #[error("certificate has an unsupported critical extension {0}")]
    UnsupportedCriticalExtension(String),
    /// The issuing CA's revocation list names the certificate.
    #[error(
        "certificate is revoked (serial {serial}, revoked on {})",
        format_unix_utc(*revoked_at)
    )]
    Revoked {
        /// The certificate's serial, upper-case hex.
        serial: String,
        /// When it was revoked (Unix seconds).
        revoked_at: i64,
    },
    /// A revocation list in the CRL file names an intermediate CA of the path as its issuer,
    /// but its signature does not verify with that CA's key: forged, altered or misfiled.
    #[error(
        "the CRL that names intermediate CA \"{issuer}\" as its issuer is not signed by that CA's \
         key (forged, altered, or another CA's of the same name), so revocation cannot be checked"
    )]
    CrlSignatureInvalid {
        /// The intermediate the list claims to come from.
        issuer: String,
    },
    /// An intermediate CA's revocation list, but the CA's keyUsage lacks cRLSign.
    #[error(
        "intermediate CA \"{subject}\" may not sign CRLs (keyUsage lacks cRLSign), yet a CRL names it"
    )]
    IssuerCannotSignCrl {
        /// The intermediate.
        subject: String,
    },
}

impl CertError {
    /// The broad reason, for telling a peer why its certificate was refused without echoing
    /// details: expired (or not yet valid), revoked, not for this use, or not from our CA.
    pub fn reason(&self) -> CertRejection {
        match self {
            CertError::Expired { .. } | CertError::NotYetValid { .. } => CertRejection::Expired,
            CertError::Revoked { .. } => CertRejection::Revoked,
            CertError::IsCa { .. }
            | CertError::WrongUsage { .. }
            | CertError::KeyUsageForbids { .. } => CertRejection::WrongRole,
            CertError::WrongIssuer { .. }
            | CertError::NotSignedByCa
            | CertError::NoPathToAnchor { .. } => CertRejection::UnknownCa,
            _ => CertRejection::Other,
        }
    }
}

/// Why a certificate was refused, in the few classes a peer is told (see
/// [`CertError::reason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertRejection {
    /// Outside its validity period.
    Expired,
    /// On the issuing CA's revocation list.
    Revoked,
    /// Not allowed for the role it was presented for (EKU, key usage, a CA certificate).
    WrongRole,
    /// Not issued by a CA this end trusts.
    UnknownCa,
    /// Anything else: malformed, unsupported algorithm or key, wrong name.
    Other,
}

/// Why a certificate revocation list cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CrlError {
    /// Not a DER or PEM X.509 CRL.
    #[error("not a valid CRL: {0}")]
    Malformed(String),
    /// No list of the file was issued by a configured CA (a trust anchor).
    #[error("the CRL was issued by \"{issuer}\", not by the configured CA \"{ca}\"")]
    WrongIssuer {
        /// Issuer named in the CRL (the issuers of a file of several lists).
        issuer: String,
        /// Subject of the configured CA.
        ca: String,
    },
    /// One list of a file of several was refused.
    #[error("CRL {index} of {count} in the file: {source}")]
    InList {
        /// Which list, from 1.
        index: usize,
        /// How many the file holds.
        count: usize,
        /// Why it was refused.
        source: Box<CrlError>,
    },
    /// The signature does not verify with the CA's key.
    #[error(
        "the CRL's signature does not verify with the key of CA \"{ca}\" (altered, or signed by another CA)"
    )]
    BadSignature {
        /// Subject of the configured CA.
        ca: String,
    },
    /// Its nextUpdate has passed: a newer list may revoke more.
    #[error("the CRL is out of date: its nextUpdate was {}", format_unix_utc(*next_update))]
    Stale {
        /// The CRL's nextUpdate (Unix seconds).
        next_update: i64,
    },
    /// Its thisUpdate lies in the future.
    #[error("the CRL is not valid before {}", format_unix_utc(*this_update))]
    NotYetValid {
        /// The CRL's thisUpdate (Unix seconds).
        this_update: i64,
    },
    /// A critical extension that would change what the list means.
    #[error(
        "the CRL has an unsupported critical extension {0} (partial, delta or indirect CRLs are not supported)"
    )]
    UnsupportedCriticalExtension(String),
}

/// Errors of loading, generating and storing keys and certificates.
///
/// Each message names the file or input concerned and, where there is one, the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// A file could not be read (missing, not permitted, ...: see `source.kind()`).
    #[error("cannot read {}: {}", path.display(), io_reason(source))]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A file or directory could not be written.
    #[error("cannot write {}: {}", path.display(), io_reason(source))]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Refusing to overwrite a file (unless forced).
    #[error("{} already exists", path.display())]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
        /// What forcing would do, e.g. "replace the CA" (for the caller's hint).
        action: &'static str,
    },
    /// A credential file is missing and cannot be made here.
    #[error("{} is missing: {why}", path.display())]
    Missing {
        /// The missing file.
        path: PathBuf,
        /// Why it cannot be made.
        why: MissingReason,
    },
    /// PEM text could not be decoded.
    #[error("invalid PEM: {0}")]
    Pem(String),
    /// A certificate could not be parsed or is unusable.
    #[error("invalid certificate: {0}")]
    BadCertificate(String),
    /// The CA certificate is not usable as a trust anchor.
    #[error("not a usable CA certificate: {0}")]
    BadAnchor(String),
    /// A private key could not be parsed or is unusable.
    #[error("invalid private key: {0}")]
    BadKey(String),
    /// The private key belongs to a different certificate.
    #[error("the private key does not match the certificate")]
    KeyMismatch,
    /// An RSA key size other than 2048, 3072 or 4096 bits was requested.
    #[error("unsupported RSA key size {0} bits; use 2048, 3072 or 4096")]
    KeySize(usize),
    /// A subject alternative name could not be parsed.
    #[error("invalid name {input:?}: {reason}; use DNS:host or IP:address")]
    BadSan {
        /// The text given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A validity period that cannot be encoded or is empty.
    #[error("invalid validity period: {0}")]
    Validity(String),
    /// RSA key generation failed.
    #[error("RSA key generation failed: {0}")]
    KeyGeneration(String),
    /// Building or signing a certificate failed.
    #[error("certificate generation failed: {0}")]
    Generate(String),
    /// A certificate revocation list cannot be used.
    #[error("{0}")]
    Crl(#[from] CrlError),
    /// The revocation record of a CA directory is damaged.
    #[error("invalid revocation record: {0}")]
    Revocations(String),
    /// A serial number that cannot be parsed.
    #[error(
        "invalid serial number {input:?}: {reason}; give it in hex as `openssl x509 -serial` prints it"
    )]
    BadSerial {
        /// The text given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An error about the contents of a particular file.
    #[error("{}: {source}", path.display())]
    InFile {
        /// The file whose contents are wrong.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: Box<PkiError>,
    },
}

/// Why a missing credential file cannot be made where it was looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissingReason {
    /// The CA is absent but this other credential file of the directory exists.
    CaAbsentBeside {
        /// The file that exists without its CA.
        present: PathBuf,
    },
    /// A leaf would be issued here, but the CA's private key is not here.
    NoCaKey {
        /// Where the CA key was looked for.
        ca_key: PathBuf,
    },
    /// The CA key exists without its certificate.
    NoCaCertificate,
    /// The other half of a certificate/key pair exists without it.
    HalfPair {
        /// The half that exists.
        present: PathBuf,
    },
}

impl std::fmt::Display for MissingReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MissingReason::CaAbsentBeside { present } => {
                write!(f, "{} exists without it", present.display())
            }
            MissingReason::NoCaKey { ca_key } => write!(
                f,
                "it cannot be issued here because {} is missing",
                ca_key.display()
            ),
            MissingReason::NoCaCertificate => f.write_str("the CA key exists without it"),
            MissingReason::HalfPair { present } => {
                write!(f, "{} exists without it", present.display())
            }
        }
    }
}

impl PkiError {
    /// The error inside any [`PkiError::InFile`] wrappers.
    pub fn innermost(&self) -> &PkiError {
        match self {
            PkiError::InFile { source, .. } => source.innermost(),
            other => other,
        }
    }

    /// Attaches the file the error is about.
    pub(crate) fn in_file(self, path: impl Into<PathBuf>) -> PkiError {
        PkiError::InFile {
            path: path.into(),
            source: Box::new(self),
        }
    }
}

/// The OS error text without Rust's " (os error 2)" suffix, which means nothing to users.
fn io_reason(err: &io::Error) -> String {
    let text = err.to_string();
    let text = match text.find(" (os error ") {
        Some(pos) => text[..pos].to_string(),
        None => text,
    };
    // "permission denied", not "Permission denied": it follows a colon mid-sentence.
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

/// The keys a leaf certificate of `role` may hold (SPEC §2.9), as a sentence.
pub fn supported_leaf_keys(role: Role) -> &'static str {
    match role {
        Role::Server => {
            "a server certificate needs an RSA key of 2048 to 8192 bits (it receives the \
             wrapped session secret)"
        }
        Role::Client => {
            "a client certificate needs an RSA key of 2048 to 8192 bits or an EC key on P-256"
        }
    }
}
