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
//! -----BEGIN CERTIFICATE-----   (only behind an intermediate CA: each intermediate of the
//! ...                            path the handshake verified, the signer's issuer first)
//! -----END CERTIFICATE-----
//! ```
//!
//! `verify` re-encodes the statement from these fields, checks the signature with the
//! embedded certificate's key, checks the path from that certificate through the intermediates
//! kept with it to the CA (the handshake's own chain validation, `pki::verify_chain`), valid
//! when it signed, then hashes the file and compares size and digest. A sidecar of a server
//! that the CA issued directly holds one certificate, as before intermediates were kept: old
//! sidecars are read unchanged. A tree's manifest ends with the same certificates.
//!
//! A file a client uploaded (`push`) has the same sidecar on the server, first line
//! `minitls-upload-signature v1`: the statement is signed by the uploading *client* under the
//! upload context string, and the certificate is the client's. `verify` then requires a client
//! certificate of the CA and says who uploaded the file.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::crypto::{
    self, FILE_SIGNATURE_CONTEXT, MANIFEST_SIGNATURE_CONTEXT, UPLOAD_SIGNATURE_CONTEXT,
};
use crate::paths;
use crate::pki::{self, CertError, Role, TrustAnchor, VerifiedCert};
use crate::wire::{Codec, EntryKind, FileStatement, ManifestEntry, put_u64, put_vec_u16};

const MAGIC: &str = "minitls-signature v1";
const UPLOAD_MAGIC: &str = "minitls-upload-signature v1";
const MANIFEST_MAGIC: &str = "minitls-manifest v1";
/// Suffix of the sidecar file.
pub const SIG_SUFFIX: &str = ".minitls-sig";
/// Suffix of a tree's manifest, kept beside the tree's top directory.
pub const MANIFEST_SUFFIX: &str = ".minitls-manifest";
/// A sidecar larger than this is not ours.
const MAX_SIDECAR_LEN: u64 = 64 * 1024;
/// A manifest larger than this is not ours (a million entries of long names).
const MAX_MANIFEST_LEN: u64 = 1 << 30;

/// A signed statement with the certificate that signed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedStatement {
    pub statement: FileStatement,
    pub signature: Vec<u8>,
    pub signer_der: Vec<u8>,
    /// The intermediate CA certificates between the signer and the CA (DER, the signer's
    /// issuer first), as the handshake verified them; empty when the CA issued the signer.
    pub signer_chain: Vec<Vec<u8>>,
    /// Who signed: the server that sent the file (a fetch), or the client that uploaded it
    /// (`push`; the sidecar's first line says which).
    pub signer_role: Role,
}

impl SignedStatement {
    /// The context string the signature is made under, by who made it.
    pub fn context(&self) -> &'static [u8] {
        match self.signer_role {
            Role::Server => FILE_SIGNATURE_CONTEXT,
            Role::Client => UPLOAD_SIGNATURE_CONTEXT,
        }
    }
}

/// The digest that the server signs for a statement.
pub fn statement_digest(st: &FileStatement) -> [u8; 32] {
    crypto::sha256(&st.to_bytes())
}

/// Where the signature of `file` is kept: beside it, `NAME.minitls-sig` (shortened by
/// [`fit_name`](crate::transfer::land::fit_name) when that would be too long a name).
pub fn sidecar_path(file: &Path) -> PathBuf {
    with_suffix(file, SIG_SUFFIX)
}

/// The sidecar's name for a file named `name`.
pub fn sidecar_name(name: &str) -> String {
    crate::transfer::land::fit_name("", name, SIG_SUFFIX)
}

/// Where the manifest of the tree rooted at `dir` is kept: beside it, `DIR.minitls-manifest`
/// (shortened as the sidecar's name is).
pub fn manifest_path(dir: &Path) -> PathBuf {
    with_suffix(dir, MANIFEST_SUFFIX)
}

/// The manifest's name for a tree root named `name`.
pub fn manifest_name(name: &str) -> String {
    crate::transfer::land::fit_name("", name, MANIFEST_SUFFIX)
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let name = p.file_name().unwrap_or_default();
    if name.len() + suffix.len() <= crate::transfer::land::NAME_MAX {
        let mut s = p.as_os_str().to_owned();
        s.push(suffix);
        return PathBuf::from(s);
    }
    let fitted = crate::transfer::land::fit_name("", &name.to_string_lossy(), suffix);
    p.with_file_name(fitted)
}

/// The manifest of a tree is hashed incrementally, entry by entry in transfer order, by the
/// server as it sends and by the client as it receives, so neither holds it to sign or check:
/// `vec16<root> | entries... | count u64 | signed_at i64`.
pub struct ManifestHasher {
    h: Sha256,
    count: u64,
    buf: Vec<u8>,
}

impl ManifestHasher {
    pub fn new(root: &str) -> Self {
        let mut buf = Vec::new();
        put_vec_u16(&mut buf, root.as_bytes());
        let mut h = Sha256::new();
        h.update(&buf);
        Self { h, count: 0, buf }
    }

    pub fn add(&mut self, e: &ManifestEntry) {
        self.buf.clear();
        e.encode(&mut self.buf);
        self.h.update(&self.buf);
        self.count += 1;
    }

    pub fn finish(mut self, signed_at: i64) -> [u8; 32] {
        self.buf.clear();
        put_u64(&mut self.buf, self.count);
        put_u64(&mut self.buf, signed_at as u64);
        self.h.update(&self.buf);
        self.h.finalize().into()
    }
}

/// A signed manifest with the certificate that signed it, as kept beside a received tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedManifest {
    pub root: String,
    pub signed_at: i64,
    pub entries: Vec<ManifestEntry>,
    pub signature: Vec<u8>,
    pub signer_der: Vec<u8>,
    /// As in [`SignedStatement::signer_chain`].
    pub signer_chain: Vec<Vec<u8>>,
}

impl SignedManifest {
    pub fn digest(&self) -> [u8; 32] {
        let mut h = ManifestHasher::new(&self.root);
        for e in &self.entries {
            h.add(e);
        }
        h.finish(self.signed_at)
    }

    /// `kind size sha256 path` a line; the path comes last because it may hold spaces
    /// (never a newline: control characters are refused in names).
    pub fn to_text(&self) -> String {
        let mut t = format!(
            "{MANIFEST_MAGIC}\nroot: {}\nsigned-at: {}\nsignature: {}\nentries: {}\n",
            self.root,
            self.signed_at,
            hex(&self.signature),
            self.entries.len()
        );
        for e in &self.entries {
            let k = match e.kind {
                EntryKind::File => 'f',
                EntryKind::Dir => 'd',
            };
            t.push_str(&format!("{k} {} {} {}\n", e.size, hex(&e.sha256), e.path));
        }
        t.push_str(&certificates_pem(&self.signer_der, &self.signer_chain));
        t
    }

    pub fn parse(text: &str) -> Result<Self, VerifyError> {
        let bad = |what: &str| VerifyError::BadSidecar(format!("manifest: {what}"));
        let mut lines = text.lines();
        if lines.next() != Some(MANIFEST_MAGIC) {
            return Err(bad("first line is not 'minitls-manifest v1'"));
        }
        let mut field = |name: &str| next_field(&mut lines, name).ok_or_else(|| bad(name));
        let root = field("root")?;
        let signed_at = field("signed-at")?.parse().map_err(|_| bad("signed-at"))?;
        let signature = unhex(&field("signature")?).ok_or_else(|| bad("signature"))?;
        let count: usize = field("entries")?.parse().map_err(|_| bad("entries"))?;
        let mut entries = Vec::new();
        for _ in 0..count {
            let line = lines.next().ok_or_else(|| bad("entry list ends early"))?;
            let mut parts = line.splitn(4, ' ');
            let kind = match parts.next() {
                Some("f") => EntryKind::File,
                Some("d") => EntryKind::Dir,
                _ => return Err(bad("entry kind")),
            };
            let size = parts
                .next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("entry size"))?;
            let sha = parts
                .next()
                .and_then(unhex)
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
                .ok_or_else(|| bad("entry digest"))?;
            let path = parts.next().ok_or_else(|| bad("entry path"))?.to_string();
            entries.push(ManifestEntry {
                kind,
                path,
                size,
                sha256: sha,
            });
        }
        let (signer_der, signer_chain) =
            certificates(lines).map_err(|why| bad(&format!("server certificate: {why}")))?;
        Ok(Self {
            root,
            signed_at,
            entries,
            signature,
            signer_der,
            signer_chain,
        })
    }

    /// Checks the signer and the signature (not the files).
    pub fn check_signature(&self, anchor: &TrustAnchor) -> Result<VerifiedCert, VerifyError> {
        let signer = pki::verify_chain(
            &[anchor],
            &self.signer_der,
            &self.signer_chain,
            Role::Server,
            None,
            self.signed_at,
        )?;
        if !crypto::verify(
            &signer.public_key,
            MANIFEST_SIGNATURE_CONTEXT,
            &self.digest(),
            &self.signature,
        ) {
            return Err(VerifyError::BadSignature);
        }
        Ok(signer)
    }
}

/// The signer's certificate, then each intermediate, as PEM blocks.
fn certificates_pem(signer_der: &[u8], chain: &[Vec<u8>]) -> String {
    let mut t = pki::der_to_pem(signer_der);
    for der in chain {
        t.push_str(&pki::der_to_pem(der));
    }
    t
}

/// The certificates that end a sidecar or manifest: the signer's, then its intermediates (at
/// most [`pki::MAX_INTERMEDIATES`], as a handshake accepts).
fn certificates(lines: std::str::Lines<'_>) -> Result<(Vec<u8>, Vec<Vec<u8>>), String> {
    let pem: String = lines.collect::<Vec<_>>().join("\n");
    let mut certs = pki::certificates_from_bytes(pem.as_bytes()).map_err(|e| e.to_string())?;
    if certs.len() > 1 + pki::MAX_INTERMEDIATES {
        return Err(format!(
            "{} intermediate certificates, more than the {} accepted",
            certs.len() - 1,
            pki::MAX_INTERMEDIATES
        ));
    }
    let signer = certs.remove(0);
    Ok((signer, certs))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value of the next line if it reads `NAME: value`.
fn next_field(lines: &mut std::str::Lines<'_>, name: &str) -> Option<String> {
    lines
        .next()?
        .strip_prefix(name)?
        .strip_prefix(": ")
        .map(str::to_string)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
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
        let magic = match self.signer_role {
            Role::Server => MAGIC,
            Role::Client => UPLOAD_MAGIC,
        };
        format!(
            "{magic}\npath: {}\nsize: {}\nsha256: {}\nsigned-at: {}\nsignature: {}\n{}",
            st.path,
            st.size,
            hex(&st.sha256),
            st.signed_at,
            hex(&self.signature),
            certificates_pem(&self.signer_der, &self.signer_chain)
        )
    }

    pub fn parse(text: &str) -> Result<Self, VerifyError> {
        let bad = |what: &str| VerifyError::BadSidecar(what.to_string());
        let mut lines = text.lines();
        let signer_role = match lines.next() {
            Some(MAGIC) => Role::Server,
            Some(UPLOAD_MAGIC) => Role::Client,
            _ => {
                return Err(bad(
                    "first line is not 'minitls-signature v1' or 'minitls-upload-signature v1'",
                ));
            }
        };
        let mut field = |name: &str| next_field(&mut lines, name).ok_or_else(|| bad(name));
        let path = field("path")?;
        let size = field("size")?.parse().map_err(|_| bad("size"))?;
        let sha = unhex(&field("sha256")?).ok_or_else(|| bad("sha256"))?;
        let signed_at = field("signed-at")?.parse().map_err(|_| bad("signed-at"))?;
        let signature = unhex(&field("signature")?).ok_or_else(|| bad("signature"))?;
        let (signer_der, signer_chain) =
            certificates(lines).map_err(|why| bad(&format!("signer's certificate: {why}")))?;
        Ok(Self {
            statement: FileStatement {
                path,
                size,
                sha256: sha.try_into().map_err(|_| bad("sha256"))?,
                signed_at,
            },
            signature,
            signer_der,
            signer_chain,
            signer_role,
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
    #[error("{0} is not listed in the tree's signed manifest")]
    NotInManifest(PathBuf),
    #[error("{0} is listed in the signed manifest but missing")]
    Missing(PathBuf),
    #[error("{0}: {1}")]
    Altered(PathBuf, String),
}

/// What a successful check established.
#[derive(Debug)]
pub struct Verified {
    pub statement: FileStatement,
    pub signer_subject: String,
    pub signer_fingerprint: [u8; 32],
    /// The server that sent the file, or the client that uploaded it.
    pub signer_role: Role,
}

/// Reads a sidecar or manifest of at most `max` bytes.
fn read_bounded(path: &Path, max: u64) -> Result<Option<String>, VerifyError> {
    let io = |source| VerifyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    if meta.len() > max {
        return Err(VerifyError::BadSidecar(format!(
            "{} is too large",
            path.display()
        )));
    }
    fs::read_to_string(path).map(Some).map_err(io)
}

/// Size and SHA-256 of a file's content.
pub fn hash_file(file: &Path) -> Result<(u64, [u8; 32]), VerifyError> {
    let io = |source| VerifyError::Io {
        path: file.to_path_buf(),
        source,
    };
    let mut f = fs::File::open(file).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((size, h.finalize().into()))
}

fn check_content(file: &Path, size: u64, sha256: &[u8; 32]) -> Result<(), VerifyError> {
    let (actual, digest) = hash_file(file)?;
    if actual != size {
        return Err(VerifyError::SizeMismatch {
            expected: size,
            actual,
        });
    }
    if &digest != sha256 {
        return Err(VerifyError::DigestMismatch);
    }
    Ok(())
}

/// Checks `file` offline against its own sidecar (`FILE.minitls-sig`, from a single-file
/// fetch) or, failing that, against the manifest of a tree it was fetched in
/// (`DIR.minitls-manifest` beside one of its parent directories). The signing certificate must
/// chain to `anchor` and have been valid (with serverAuth) when it signed.
pub fn verify_file(file: &Path, anchor: &TrustAnchor) -> Result<Verified, VerifyError> {
    let Some(text) = read_bounded(&sidecar_path(file), MAX_SIDECAR_LEN)? else {
        return verify_in_tree(file, anchor);
    };
    let signed = SignedStatement::parse(&text)?;

    // 1. The signer must be a certificate of our CA (directly, or through the intermediates
    //    kept with it) for the role the sidecar names (a server that sent the file, a client
    //    that uploaded it), the whole path valid when it signed.
    let signer = pki::verify_chain(
        &[anchor],
        &signed.signer_der,
        &signed.signer_chain,
        signed.signer_role,
        None,
        signed.statement.signed_at,
    )?;
    // 2. The signature binds path, size, digest and time, under that role's context string.
    if !crypto::verify(
        &signer.public_key,
        signed.context(),
        &statement_digest(&signed.statement),
        &signed.signature,
    ) {
        return Err(VerifyError::BadSignature);
    }
    // 3. The file must be exactly what was signed.
    check_content(file, signed.statement.size, &signed.statement.sha256)?;
    Ok(Verified {
        statement: signed.statement,
        signer_subject: signer.subject,
        signer_fingerprint: signer.fingerprint,
        signer_role: signed.signer_role,
    })
}

/// Finds the manifest of a tree containing `file` and checks the file against its entry.
fn verify_in_tree(file: &Path, anchor: &TrustAnchor) -> Result<Verified, VerifyError> {
    let mut rel: Vec<String> = Vec::new();
    let mut cur = file.to_path_buf();
    while let Some(name) = cur.file_name().map(|n| n.to_string_lossy().into_owned()) {
        rel.insert(0, name);
        let Some(parent) = cur.parent().map(Path::to_path_buf) else {
            break;
        };
        if parent.as_os_str().is_empty() {
            break;
        }
        if let Some(text) = read_bounded(&manifest_path(&parent), MAX_MANIFEST_LEN)? {
            let m = SignedManifest::parse(&text)?;
            let signer = m.check_signature(anchor)?;
            let wanted = rel.join("/");
            let entry = m
                .entries
                .iter()
                .find(|e| e.path == wanted && e.kind == EntryKind::File)
                .ok_or_else(|| VerifyError::NotInManifest(file.to_path_buf()))?;
            check_content(file, entry.size, &entry.sha256)?;
            return Ok(Verified {
                statement: FileStatement {
                    // The served directory itself is the root "".
                    path: if m.root.is_empty() {
                        entry.path.clone()
                    } else {
                        format!("{}/{}", m.root, entry.path)
                    },
                    size: entry.size,
                    sha256: entry.sha256,
                    signed_at: m.signed_at,
                },
                signer_subject: signer.subject,
                signer_fingerprint: signer.fingerprint,
                signer_role: Role::Server,
            });
        }
        cur = parent;
    }
    Err(VerifyError::NoSidecar(file.to_path_buf()))
}

/// What a tree check established.
#[derive(Debug)]
pub struct TreeVerified {
    pub root: String,
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    pub signed_at: i64,
    pub signer_subject: String,
}

/// What a full check of a tree found: every entry of the signed manifest that is missing or
/// differs, and every name in the directory that the manifest does not list.
#[derive(Debug)]
pub struct TreeReport {
    /// What the manifest signs (all of it, whatever was found on disk).
    pub signed: TreeVerified,
    /// Entries of the manifest with nothing at their place.
    pub missing: Vec<PathBuf>,
    /// Entries whose place holds something else: other bytes, another kind of file, or a
    /// file that cannot be read; with the reason.
    pub altered: Vec<(PathBuf, String)>,
    /// Names under the tree that the manifest does not list (for a directory, the directory
    /// only, not what is inside it).
    pub extra: Vec<PathBuf>,
}

impl TreeReport {
    /// True when the tree is exactly what was signed.
    pub fn is_intact(&self) -> bool {
        self.missing.is_empty() && self.altered.is_empty() && self.extra.is_empty()
    }
}

/// Checks every entry of the tree fetched into `dir` against `DIR.minitls-manifest`; the
/// first missing or altered entry is the error. Names the manifest does not list are not
/// looked at here (a tree merged into a directory leaves that directory's other files
/// alone); [`check_tree`] reports them too, with every difference.
pub fn verify_tree(dir: &Path, anchor: &TrustAnchor) -> Result<TreeVerified, VerifyError> {
    let report = check_tree(dir, anchor)?;
    if let Some(p) = report.missing.into_iter().next() {
        return Err(VerifyError::Missing(p));
    }
    if let Some((p, why)) = report.altered.into_iter().next() {
        return Err(VerifyError::Altered(p, why));
    }
    Ok(report.signed)
}

/// Checks the tree fetched into `dir` against `DIR.minitls-manifest` and reports every
/// missing, altered and extra entry. An error means the manifest itself could not be
/// trusted (missing, malformed, badly signed) or the directory could not be walked.
pub fn check_tree(dir: &Path, anchor: &TrustAnchor) -> Result<TreeReport, VerifyError> {
    let mpath = manifest_path(dir);
    let text = read_bounded(&mpath, MAX_MANIFEST_LEN)?
        .ok_or_else(|| VerifyError::NoSidecar(dir.to_path_buf()))?;
    let m = SignedManifest::parse(&text)?;
    let signer = m.check_signature(anchor)?;
    let mut report = TreeReport {
        signed: TreeVerified {
            root: m.root.clone(),
            files: 0,
            dirs: 0,
            bytes: 0,
            signed_at: m.signed_at,
            signer_subject: signer.subject,
        },
        missing: Vec::new(),
        altered: Vec::new(),
        extra: Vec::new(),
    };
    let mut listed = std::collections::HashSet::with_capacity(m.entries.len());
    for e in &m.entries {
        // A tampered manifest cannot get here (signature), but stay strict anyway.
        let parts = paths::parse_relative(&e.path, false)
            .map_err(|_| VerifyError::BadSidecar(format!("unsafe path {:?}", e.path)))?;
        listed.insert(parts.join("/"));
        let p = parts.iter().fold(dir.to_path_buf(), |p, c| p.join(c));
        // What is there, without following a symbolic link put in an entry's place.
        let here = match fs::symlink_metadata(&p) {
            Ok(meta) => Some(meta.file_type()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => {
                report
                    .altered
                    .push((p, format!("cannot be examined: {}", bare_io(&err))));
                continue;
            }
        };
        match e.kind {
            EntryKind::Dir => {
                report.signed.dirs += 1;
                match here {
                    None => report.missing.push(p),
                    Some(t) if t.is_dir() => {}
                    Some(t) => report
                        .altered
                        .push((p, format!("is {}, the tree had a directory", kind_of(t)))),
                }
            }
            EntryKind::File => {
                report.signed.files += 1;
                report.signed.bytes += e.size;
                match here {
                    None => report.missing.push(p),
                    Some(t) if t.is_file() => match check_content(&p, e.size, &e.sha256) {
                        Ok(()) => {}
                        Err(VerifyError::Io { source, .. }) => report
                            .altered
                            .push((p, format!("cannot be read: {}", bare_io(&source)))),
                        Err(err) => report.altered.push((p, err.to_string())),
                    },
                    Some(t) => report
                        .altered
                        .push((p, format!("is {}, the tree had a file", kind_of(t)))),
                }
            }
        }
    }
    // Every name the manifest does not list (an added directory once, not its content).
    let mut walk = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = walk.next() {
        let entry = entry.map_err(|e| VerifyError::Io {
            path: e.path().unwrap_or(dir).to_path_buf(),
            source: e
                .into_io_error()
                .unwrap_or_else(|| std::io::Error::other("a directory loop (symbolic links)")),
        })?;
        let rel = entry.path().strip_prefix(dir).unwrap_or(entry.path());
        let rel: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if !listed.contains(&rel.join("/")) {
            report.extra.push(entry.path().to_path_buf());
            if entry.file_type().is_dir() {
                walk.skip_current_dir();
            }
        }
    }
    Ok(report)
}

/// "a directory", "a symbolic link", ... for a message.
fn kind_of(t: fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_file() {
        "a file"
    } else {
        "a special file"
    }
}

/// An I/O error's text without Rust's " (os error N)".
fn bare_io(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
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
