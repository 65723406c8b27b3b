//! The signature kept beside a received file (`NAME.minitls-sig`), and its offline check.
//!
//! The sidecar is text so a person can read it:
//!
//! ```text
//! minitls-signature v1
//! path: docs/report.pdf
//! size: 12345
//! sha256: 3a7b...
//! signed-at: 1795000000
//! signature: 9f0c...            (RSA-PSS-SHA256, hex)
//! -----BEGIN CERTIFICATE-----   (the server certificate that signed)
//! ...
//! -----END CERTIFICATE-----
//! ```
//!
//! `verify` re-encodes the statement from these fields, checks the signature with the
//! embedded certificate's key, checks that certificate chains to the CA and was valid when it
//! signed, then hashes the file and compares size and digest.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::crypto::{self, FILE_SIGNATURE_CONTEXT};
use crate::pki::{self, CertError, Role, TrustAnchor};
use crate::wire::{Codec, FileStatement};

const MAGIC: &str = "minitls-signature v1";
/// Suffix of the sidecar file.
pub const SIG_SUFFIX: &str = ".minitls-sig";
/// A sidecar larger than this is not ours.
const MAX_SIDECAR_LEN: u64 = 64 * 1024;

/// A signed statement with the certificate that signed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedStatement {
    pub statement: FileStatement,
    pub signature: Vec<u8>,
    pub signer_der: Vec<u8>,
}

/// The digest that the server signs for a statement.
pub fn statement_digest(st: &FileStatement) -> [u8; 32] {
    crypto::sha256(&st.to_bytes())
}

pub fn sidecar_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(SIG_SUFFIX);
    PathBuf::from(s)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl SignedStatement {
    pub fn to_text(&self) -> String {
        let st = &self.statement;
        format!(
            "{MAGIC}\npath: {}\nsize: {}\nsha256: {}\nsigned-at: {}\nsignature: {}\n{}",
            st.path,
            st.size,
            hex(&st.sha256),
            st.signed_at,
            hex(&self.signature),
            pki::der_to_pem(&self.signer_der)
        )
    }

    pub fn parse(text: &str) -> Result<Self, VerifyError> {
        let bad = |what: &str| VerifyError::BadSidecar(what.to_string());
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(bad("first line is not 'minitls-signature v1'"));
        }
        let mut field = |name: &str| -> Result<String, VerifyError> {
            let line = lines.next().ok_or_else(|| bad(name))?;
            line.strip_prefix(name)
                .and_then(|r| r.strip_prefix(": "))
                .map(str::to_string)
                .ok_or_else(|| bad(name))
        };
        let path = field("path")?;
        let size = field("size")?.parse().map_err(|_| bad("size"))?;
        let sha = unhex(&field("sha256")?).ok_or_else(|| bad("sha256"))?;
        let signed_at = field("signed-at")?.parse().map_err(|_| bad("signed-at"))?;
        let signature = unhex(&field("signature")?).ok_or_else(|| bad("signature"))?;
        let pem: String = lines.collect::<Vec<_>>().join("\n");
        let signer_der = pki::pem_to_der(&pem).map_err(|_| bad("server certificate"))?;
        Ok(Self {
            statement: FileStatement {
                path,
                size,
                sha256: sha.try_into().map_err(|_| bad("sha256"))?,
                signed_at,
            },
            signature,
            signer_der,
        })
    }
}

#[derive(Debug, Error)]
pub enum VerifyError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no signature found for {0} (expected {0}.minitls-sig beside it, written by `minitls fetch`)"
    )]
    NoSidecar(PathBuf),
    #[error("signature file is malformed ({0})")]
    BadSidecar(String),
    #[error("the signing certificate is not trusted: {0}")]
    Certificate(#[from] CertError),
    #[error("the signature does not match the statement: the signature file was altered")]
    BadSignature,
    #[error("file size is {actual} bytes but {expected} were signed: the file was altered")]
    SizeMismatch { expected: u64, actual: u64 },
    #[error("file content does not match the signed SHA-256: the file was altered")]
    DigestMismatch,
}

/// What a successful check established.
#[derive(Debug)]
pub struct Verified {
    pub statement: FileStatement,
    pub signer_subject: String,
    pub signer_fingerprint: [u8; 32],
}

/// Checks `file` against its sidecar, offline. The signing certificate must chain to
/// `anchor` and have been valid (with serverAuth) at the signing time.
pub fn verify_file(file: &Path, anchor: &TrustAnchor) -> Result<Verified, VerifyError> {
    let sidecar = sidecar_path(file);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| VerifyError::Io { path, source }
    };
    let meta = match fs::metadata(&sidecar) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(VerifyError::NoSidecar(file.to_path_buf()));
        }
        Err(e) => return Err(io(&sidecar)(e)),
    };
    if meta.len() > MAX_SIDECAR_LEN {
        return Err(VerifyError::BadSidecar("too large".into()));
    }
    let text = fs::read_to_string(&sidecar).map_err(io(&sidecar))?;
    let signed = SignedStatement::parse(&text)?;

    // 1. The signer must be a server certificate of our CA, valid when it signed.
    let signer = pki::verify_certificate(
        anchor,
        &signed.signer_der,
        Role::Server,
        None,
        signed.statement.signed_at,
    )?;
    // 2. The signature binds path, size, digest and time.
    if !crypto::verify(
        &signer.public_key,
        FILE_SIGNATURE_CONTEXT,
        &statement_digest(&signed.statement),
        &signed.signature,
    ) {
        return Err(VerifyError::BadSignature);
    }
    // 3. The file must be exactly what was signed.
    let mut f = fs::File::open(file).map_err(io(file))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io(file))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    if size != signed.statement.size {
        return Err(VerifyError::SizeMismatch {
            expected: signed.statement.size,
            actual: size,
        });
    }
    let digest: [u8; 32] = h.finalize().into();
    if digest != signed.statement.sha256 {
        return Err(VerifyError::DigestMismatch);
    }
    Ok(Verified {
        statement: signed.statement,
        signer_subject: signer.subject,
        signer_fingerprint: signer.fingerprint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_junk() {
        assert_eq!(
            unhex(&hex(&[0, 1, 0xab, 0xff])).unwrap(),
            [0, 1, 0xab, 0xff]
        );
        assert!(unhex("abc").is_none());
        assert!(unhex("zz").is_none());
        assert!(unhex("é1").is_none());
    }

    #[test]
    fn sidecar_parse_rejects_missing_or_reordered_fields() {
        assert!(SignedStatement::parse("").is_err());
        assert!(SignedStatement::parse("minitls-signature v1\nsize: 1\n").is_err());
        assert!(SignedStatement::parse("minitls-signature v1\npath: a\nsize: x\n").is_err());
    }
}
