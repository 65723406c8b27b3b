//! PKI: the private CA, issuing and storing credentials, and verifying peer certificates.
//!
//! minitls trusts one CA, or a bundle of them (`--ca-cert`); a peer presents its certificate and
//! up to 3 intermediate CA certificates, and [`verify_chain`] checks the path link by link
//! (SPEC §2.9). Certificates are parsed with x509-parser and signatures verified with the `rsa`
//! crate (RSA PKCS#1 v1.5) or `p256`/`p384` (ECDSA, for EC CA keys) over the received
//! to-be-signed bytes; rcgen (ring backend) only writes certificates and CRLs. A server's key is
//! RSA (it receives the wrapped secret); a client's is RSA or ECDSA P-256 ([`PeerKey`],
//! [`PrivateKey`]): transcript and statement signatures are RSA-PSS or ECDSA-SHA256.
//!
//! Why path validation is written here rather than taken from `rustls-webpki`: webpki verifies
//! signatures through ring or aws-lc-rs and wants rustls' `pki-types` and its own error model,
//! while everything else here (CA generation, the handshake's RSA operations, the CLI's
//! messages) uses RustCrypto and needs one error variant per failed check, named in sentences
//! (`CertError`). webpki also has no notion of minitls' rules (RSA 2048-8192 only, a server key
//! that must allow keyEncipherment, nameConstraints refused). The path here is short (at most 3
//! intermediates, no path building across cross-signed CAs) and every check has a test in
//! `pki/tests.rs` and `tests/chains.rs`; if chains grow (cross-signing, policies), switching
//! to webpki is the better move.
//!
//! What the checks defend against:
//! - signature by the CA's key over the exact TBS bytes: certificates forged or altered in flight;
//! - issuer name and no trailing bytes: confusion about which certificate was checked;
//! - accepted algorithms only (RSA PKCS#1 v1.5, ECDSA on P-256/P-384; SHA-256/384/512), the
//!   same inside and outside the signed part: algorithm substitution (a signature checked under
//!   a weaker hash than the one signed);
//! - validity period (of the leaf and of the CA): use of stale credentials;
//! - not a CA, extended key usage by role: a client certificate used to impersonate the server
//!   (and the CA certificate used as anyone);
//! - subject alternative name against `--server-name`: a valid server certificate for another
//!   host;
//! - 2048..=8192-bit RSA keys: factorable keys, and verification cost an attacker could inflate;
//! - serial not on the CA's revocation list ([`Crl`], checked by the handshake after
//!   [`verify_certificate`]): a lost or stolen key. The list itself counts only if the CA signed
//!   it and it is complete (no unknown critical extension) and current.
//!
//! This module depends only on external crates and std; it has its own error types.

mod crl;
mod describe;
mod error;
mod identity;
mod issue;
mod pem;
mod revocation;
mod store;
mod time;
mod verify;

use std::fmt;
use std::str::FromStr;

pub use crl::{Crl, MAX_CRL_BYTES, Revocation, make_crl};
pub use describe::{
    CertSummary, describe_certificate_der, describe_certificate_pem, summarize_certificate_der,
};
pub use error::{CertError, CertRejection, CrlError, MissingReason, PkiError};
pub use identity::{Identity, PrivateKey};
pub use issue::{
    ALLOWED_KEY_BITS, CaKeyPair, ExtKeyUsage, LeafOverrides, LeafSpec, San, generate_key,
    issue_leaf, issue_leaf_for, issue_leaf_with, new_ca,
};
pub use pem::{
    certificates_from_bytes, der_to_pem, leaf_private_key_from_pem, pem_to_der,
    private_key_from_pem, private_key_to_pem,
};
pub use revocation::{
    CrlFile, DEFAULT_CRL_DAYS, RevokeOutcome, load_crl_file, load_crl_file_any, parse_serial_hex,
    serial_to_hex,
};
pub use store::{
    CaDir, DEFAULT_CA_DAYS, DEFAULT_CA_DIR, DEFAULT_CLIENT_NAME, DEFAULT_KEY_BITS,
    DEFAULT_LEAF_DAYS, DEFAULT_SERVER_NAME, InitOptions, load_anchor_bundle_file, load_anchor_file,
    load_identity_files,
};
pub use time::{format_unix_iso, format_unix_utc, now_unix};
pub use verify::{
    IssuerKey, MAX_INTERMEDIATES, MAX_RSA_BITS, MIN_RSA_BITS, PathLink, PeerKey, TrustAnchor,
    VerifiedCert, fingerprint_hex, verify_certificate, verify_chain,
};

/// Which end of a connection a certificate belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The serving end: extended key usage serverAuth, names checked by clients.
    Server,
    /// The fetching end: extended key usage clientAuth.
    Client,
}

impl Role {
    /// The extended key usage a certificate needs for this role.
    pub fn eku_name(self) -> &'static str {
        match self {
            Role::Server => "serverAuth",
            Role::Client => "clientAuth",
        }
    }

    /// The other end.
    pub fn peer(self) -> Role {
        match self {
            Role::Server => Role::Client,
            Role::Client => Role::Server,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Server => "server",
            Role::Client => "client",
        })
    }
}

impl FromStr for Role {
    type Err = String;

    /// Parses `server` or `client`.
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "server" => Ok(Role::Server),
            "client" => Ok(Role::Client),
            other => Err(format!("unknown role {other:?}; use server or client")),
        }
    }
}

#[cfg(test)]
mod tests;

/// The serial number of a DER certificate as upper-case hex (the form `openssl x509 -serial`
/// prints, and the `serial:` form a policy names).
pub fn serial_hex(der: &[u8]) -> Result<String, PkiError> {
    Ok(summarize_certificate_der(der)?.serial)
}
