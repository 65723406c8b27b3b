//! The on-disk CA directory (`ca.crt`, `ca.key`, `server.*`, `client.*`) and credential files.
//!
//! Keys are created with mode 0600 from the start (never chmod-ed afterwards, so there is no
//! window in which they are readable by others) and every file is written to a temporary name
//! in the same directory, synced, then renamed over the target: a crash leaves either the old
//! file or the new one, never half of one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use rand::Rng;
use rsa::RsaPrivateKey;
use zeroize::Zeroizing;

use super::Role;
use super::error::{MissingReason, PkiError};
use super::identity::Identity;
use super::issue::{
    CaKeyPair, LeafSpec, San, generate_key, issue_leaf, new_ca, validate_common_name,
};
use super::pem::{CERTIFICATE_LABEL, decode_blocks};
use super::pem::{
    der_to_pem, leaf_private_key_from_pem, pem_to_der, private_key_from_pem, private_key_to_pem,
};
use super::time::{SECS_PER_DAY, now_unix};
use super::verify::{MAX_INTERMEDIATES, TrustAnchor};

/// Default CA directory, relative to the working directory.
pub const DEFAULT_CA_DIR: &str = "ca";
/// Default RSA key size for generated keys.
pub const DEFAULT_KEY_BITS: usize = 3072;
/// Default validity of leaf certificates, in days (the CA/Browser Forum's former maximum).
pub const DEFAULT_LEAF_DAYS: u32 = 825;
/// Minimum validity of the CA certificate, in days: it outlives several rounds of leaves.
pub const DEFAULT_CA_DAYS: u32 = 3650;
/// Default common name of the client certificate.
pub const DEFAULT_CLIENT_NAME: &str = "client";
/// Default common name of the server certificate.
pub const DEFAULT_SERVER_NAME: &str = "localhost";
/// Common name prefix of generated CAs; a random suffix tells different CAs apart in messages.
const CA_NAME_PREFIX: &str = "minitls CA";
/// Subdirectory of the CA directory with a copy of every certificate issued.
const ISSUED_DIR: &str = "issued";
/// Certificates start this far in the past so that a peer whose clock is a little behind
/// accepts a certificate made a moment ago.
const BACKDATE_SECS: i64 = 300;
/// File mode of private keys.
const KEY_MODE: u32 = 0o600;
/// File mode of certificates.
const CERT_MODE: u32 = 0o644;
/// Mode of a CA directory we create: it holds the CA key.
const DIR_MODE: u32 = 0o700;
/// Largest credential file read; PEM certificates and keys are a few KiB.
const MAX_CREDENTIAL_FILE: u64 = 1 << 20;

/// File names inside the CA directory.
const CA_CERT_FILE: &str = "ca.crt";
const CA_KEY_FILE: &str = "ca.key";

/// Options of `CaDir::init`. The default is what `minitls ca init` does without flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitOptions {
    /// RSA key size for all three keys: 2048, 3072 (default) or 4096.
    pub key_bits: usize,
    /// Validity of the server and client certificates in days (default 825). The CA is valid
    /// for this long or `DEFAULT_CA_DAYS` (3650), whichever is longer.
    pub days: u32,
    /// The server certificate's names (default `DNS:localhost`, `IP:127.0.0.1`, `IP:::1`;
    /// an empty list means the default). Its CN is the first name.
    pub server_names: Vec<San>,
    /// CN of the client certificate (default `client`).
    pub client_name: String,
    /// Replace existing files.
    pub force: bool,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            key_bits: DEFAULT_KEY_BITS,
            days: DEFAULT_LEAF_DAYS,
            server_names: San::default_server_names(),
            client_name: DEFAULT_CLIENT_NAME.to_string(),
            force: false,
        }
    }
}

/// Makes an RSA key of the given size; swapped for cached keys in tests.
pub(super) type KeyGen<'a> = &'a mut dyn FnMut(usize) -> Result<RsaPrivateKey, PkiError>;

/// The CA directory: `ca.crt`, `ca.key`, `server.crt`, `server.key`, `client.crt`, `client.key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaDir {
    /// The directory.
    pub dir: PathBuf,
}

impl CaDir {
    /// A CA directory at `dir` (nothing is read or created yet).
    pub fn new(dir: impl Into<PathBuf>) -> CaDir {
        CaDir { dir: dir.into() }
    }

    /// Path of the CA certificate.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.join(CA_CERT_FILE)
    }

    /// Path of the CA private key.
    pub fn ca_key_path(&self) -> PathBuf {
        self.dir.join(CA_KEY_FILE)
    }

    /// Path of the certificate for `role` (`server.crt` / `client.crt`).
    pub fn cert_path(&self, role: Role) -> PathBuf {
        self.dir.join(format!("{role}.crt"))
    }

    /// Path of the private key for `role` (`server.key` / `client.key`).
    pub fn key_path(&self, role: Role) -> PathBuf {
        self.dir.join(format!("{role}.key"))
    }

    /// Where a copy of every certificate this CA issued is kept: `DIR/issued/SERIAL.crt`
    /// (as `openssl ca` keeps `newcerts/`), so that later commands can list and revoke them
    /// by name or serial wherever the certificate itself was written.
    pub fn issued_dir(&self) -> PathBuf {
        self.dir.join(ISSUED_DIR)
    }

    /// Every certificate recorded in [`CaDir::issued_dir`], as DER, in serial order.
    pub fn issued(&self) -> Result<Vec<Vec<u8>>, PkiError> {
        let dir = self.issued_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(PkiError::Read { path: dir, source });
            }
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "crt"))
            .collect();
        paths.sort();
        let mut out = Vec::with_capacity(paths.len());
        for p in paths {
            let text = read_text(&p)?;
            out.push(super::pem::pem_to_der(&text)?);
        }
        Ok(out)
    }

    /// Keeps a copy of an issued certificate, named by its serial.
    fn record(&self, der: &[u8]) -> Result<(), PkiError> {
        let serial = super::serial_hex(der)?;
        create_dir(&self.issued_dir())?;
        let path = self.issued_dir().join(format!("{serial}.crt"));
        write_file(&path, der_to_pem(der).as_bytes(), CERT_MODE)
    }

    fn all_paths(&self) -> [PathBuf; 6] {
        [
            self.ca_cert_path(),
            self.ca_key_path(),
            self.cert_path(Role::Server),
            self.key_path(Role::Server),
            self.cert_path(Role::Client),
            self.key_path(Role::Client),
        ]
    }

    /// Creates a new CA and a server and a client certificate signed by it, returning the files
    /// written. Refuses to replace any existing file unless `opts.force`. Creates the directory
    /// (mode 0700) if needed.
    pub fn init(&self, opts: &InitOptions) -> Result<Vec<PathBuf>, PkiError> {
        self.init_with(opts, &mut generate_key)
    }

    pub(super) fn init_with(
        &self,
        opts: &InitOptions,
        keygen: KeyGen<'_>,
    ) -> Result<Vec<PathBuf>, PkiError> {
        // Validate everything before generating keys or touching the disk.
        check_key_bits(opts.key_bits)?;
        check_days(opts.days)?;
        validate_common_name(&opts.client_name)?;
        let server_names = if opts.server_names.is_empty() {
            San::default_server_names()
        } else {
            opts.server_names.clone()
        };
        let server_cn = match server_names.iter().find(|s| matches!(s, San::Dns(_))) {
            Some(San::Dns(name)) => name.clone(),
            _ => match &server_names[0] {
                San::Dns(name) => name.clone(),
                San::Ip(ip) => ip.to_string(),
            },
        };
        if !opts.force {
            for path in self.all_paths() {
                if exists(&path)? {
                    let action = if path == self.ca_cert_path() || path == self.ca_key_path() {
                        "replace the CA"
                    } else {
                        "replace all credentials"
                    };
                    return Err(PkiError::AlreadyExists { path, action });
                }
            }
        }
        create_dir(&self.dir)?;

        let now = now_unix();
        let not_before = now - BACKDATE_SECS;
        let ca_days = opts.days.max(DEFAULT_CA_DAYS);
        let ca_not_after = now + i64::from(ca_days) * SECS_PER_DAY;
        let leaf_not_after = (now + i64::from(opts.days) * SECS_PER_DAY).min(ca_not_after);
        let ca_name = format!("{CA_NAME_PREFIX} {:08x}", rand::rng().next_u32());

        let ca = new_ca(&ca_name, keygen(opts.key_bits)?, not_before, ca_not_after)?;
        let server_key = keygen(opts.key_bits)?;
        let server = issue_leaf(
            &ca,
            &LeafSpec {
                role: Role::Server,
                common_name: server_cn,
                sans: server_names,
                not_before_unix: not_before,
                not_after_unix: leaf_not_after,
            },
            &server_key,
        )?;
        let client_key = keygen(opts.key_bits)?;
        let client = issue_leaf(
            &ca,
            &LeafSpec {
                role: Role::Client,
                common_name: opts.client_name.clone(),
                sans: Vec::new(),
                not_before_unix: not_before,
                not_after_unix: leaf_not_after,
            },
            &client_key,
        )?;

        let mut written = Vec::with_capacity(6);
        write_key(&self.ca_key_path(), &ca.key)?;
        written.push(self.ca_key_path());
        write_file(&self.ca_cert_path(), ca.cert_pem.as_bytes(), CERT_MODE)?;
        written.push(self.ca_cert_path());
        for (role, key, der) in [
            (Role::Server, &server_key, &server),
            (Role::Client, &client_key, &client),
        ] {
            write_key(&self.key_path(role), key)?;
            written.push(self.key_path(role));
            write_file(&self.cert_path(role), der_to_pem(der).as_bytes(), CERT_MODE)?;
            written.push(self.cert_path(role));
            self.record(der)?;
        }
        Ok(written)
    }

    /// Issues `<role>.crt` and `<role>.key` from the CA in this directory, with CN `name`,
    /// returning the files written. A server certificate without `sans` gets `DNS:name`
    /// (`IP:name` if it is an address; the three defaults for `localhost`). Refuses to replace
    /// existing files unless `force`. The validity is capped at the CA's own.
    pub fn issue(
        &self,
        role: Role,
        name: &str,
        sans: &[San],
        days: u32,
        key_bits: usize,
        force: bool,
    ) -> Result<Vec<PathBuf>, PkiError> {
        self.issue_with(role, name, sans, days, key_bits, force, &mut generate_key)
    }

    /// Like [`CaDir::issue`], writing the certificate and key to `cert_path` and `key_path`
    /// instead of `<role>.crt` and `<role>.key` in this directory (for several clients or
    /// servers from one CA).
    #[allow(clippy::too_many_arguments)] // `issue` plus where to write
    pub fn issue_to(
        &self,
        role: Role,
        name: &str,
        sans: &[San],
        days: u32,
        key_bits: usize,
        force: bool,
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<Vec<PathBuf>, PkiError> {
        self.issue_into(
            role,
            name,
            sans,
            (days, key_bits, force),
            (cert_path.to_path_buf(), key_path.to_path_buf()),
            &mut generate_key,
        )
    }

    #[allow(clippy::too_many_arguments)] // the public `issue` plus the key source
    pub(super) fn issue_with(
        &self,
        role: Role,
        name: &str,
        sans: &[San],
        days: u32,
        key_bits: usize,
        force: bool,
        keygen: KeyGen<'_>,
    ) -> Result<Vec<PathBuf>, PkiError> {
        let to = (self.cert_path(role), self.key_path(role));
        self.issue_into(role, name, sans, (days, key_bits, force), to, keygen)
    }

    fn issue_into(
        &self,
        role: Role,
        name: &str,
        sans: &[San],
        (days, key_bits, force): (u32, usize, bool),
        (cert_path, key_path): (PathBuf, PathBuf),
        keygen: KeyGen<'_>,
    ) -> Result<Vec<PathBuf>, PkiError> {
        check_key_bits(key_bits)?;
        check_days(days)?;
        validate_common_name(name)?;
        let sans = if !sans.is_empty() || role == Role::Client {
            sans.to_vec()
        } else if name.eq_ignore_ascii_case(DEFAULT_SERVER_NAME) {
            San::default_server_names()
        } else {
            vec![San::for_host(name)?]
        };
        if !force {
            for path in [&cert_path, &key_path] {
                if exists(path)? {
                    return Err(PkiError::AlreadyExists {
                        path: path.clone(),
                        action: "replace it",
                    });
                }
            }
        }
        let ca = self.load_ca()?;
        let now = now_unix();
        let not_after = (now + i64::from(days) * SECS_PER_DAY).min(ca.anchor().not_after_unix());
        let key = keygen(key_bits)?;
        let spec = LeafSpec {
            role,
            common_name: name.to_string(),
            sans,
            not_before_unix: now - BACKDATE_SECS,
            not_after_unix: not_after,
        };
        let der = issue_leaf(&ca, &spec, &key)?;
        write_key(&key_path, &key)?;
        write_file(&cert_path, der_to_pem(&der).as_bytes(), CERT_MODE)?;
        self.record(&der)?;
        Ok(vec![key_path, cert_path])
    }

    /// SPEC §1 auto-regeneration for `serve` and `fetch`. With no CA here (neither `ca.crt` nor
    /// `ca.key`), makes the whole set as `ca init` would; with a CA but no certificate for
    /// `role`, issues one from it. Returns a description of what was made, `None` if nothing
    /// was needed. Never replaces an existing file: half-present sets are errors with a fix.
    pub fn ensure(&self, role: Role) -> Result<Option<String>, PkiError> {
        self.ensure_with(role, &mut generate_key)
    }

    pub(super) fn ensure_with(
        &self,
        role: Role,
        keygen: KeyGen<'_>,
    ) -> Result<Option<String>, PkiError> {
        let (ca_crt, ca_key) = (self.ca_cert_path(), self.ca_key_path());
        let dir = self.dir.display();
        if !exists(&ca_crt)? && !exists(&ca_key)? {
            let mut orphan = None;
            for p in self.all_paths() {
                if exists(&p)? {
                    orphan = Some(p);
                    break;
                }
            }
            if let Some(present) = orphan {
                return Err(PkiError::Missing {
                    path: ca_crt,
                    why: MissingReason::CaAbsentBeside { present },
                });
            }
            let written = self.init_with(&InitOptions::default(), keygen)?;
            let names: Vec<String> = written
                .iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect();
            return Ok(Some(format!(
                "no CA found in {dir}: created a new CA and credentials ({})",
                names.join(", ")
            )));
        }
        let (crt, key) = (self.cert_path(role), self.key_path(role));
        match (exists(&crt)?, exists(&key)?) {
            (true, true) => Ok(None),
            (false, false) => {
                if !exists(&ca_key)? {
                    return Err(PkiError::Missing {
                        path: crt,
                        why: MissingReason::NoCaKey { ca_key },
                    });
                }
                if !exists(&ca_crt)? {
                    return Err(PkiError::Missing {
                        path: ca_crt,
                        why: MissingReason::NoCaCertificate,
                    });
                }
                let name = match role {
                    Role::Server => DEFAULT_SERVER_NAME,
                    Role::Client => DEFAULT_CLIENT_NAME,
                };
                self.issue_with(
                    role,
                    name,
                    &[],
                    DEFAULT_LEAF_DAYS,
                    DEFAULT_KEY_BITS,
                    false,
                    keygen,
                )?;
                Ok(Some(format!(
                    "no {role} certificate found: issued {} and {} from the CA in {dir}",
                    crt.display(),
                    key.display()
                )))
            }
            (true, false) => Err(half_pair(&key, &crt)),
            (false, true) => Err(half_pair(&crt, &key)),
        }
    }

    /// Loads `<role>.crt` and `<role>.key`.
    pub fn load_identity(&self, role: Role) -> Result<Identity, PkiError> {
        load_identity_files(&self.cert_path(role), &self.key_path(role))
    }

    /// Loads and checks `ca.crt`.
    pub fn load_anchor(&self) -> Result<TrustAnchor, PkiError> {
        load_anchor_file(&self.ca_cert_path())
    }

    /// Loads `ca.crt` and `ca.key`, checking that they belong together.
    pub fn load_ca(&self) -> Result<CaKeyPair, PkiError> {
        let (crt, key) = (self.ca_cert_path(), self.ca_key_path());
        let cert_der = pem_to_der(&read_text(&crt)?).map_err(|e| e.in_file(&crt))?;
        let ca_key = private_key_from_pem(&read_text(&key)?).map_err(|e| e.in_file(&key))?;
        CaKeyPair::from_parts(cert_der, ca_key).map_err(|e| match e {
            PkiError::KeyMismatch => PkiError::KeyMismatch.in_file(&key),
            other => other.in_file(&crt),
        })
    }
}

/// Loads a certificate, or a chain file (our certificate first, then up to
/// [`MAX_INTERMEDIATES`] intermediate CA certificates, issuer first), and its private key;
/// errors name the file.
pub fn load_identity_files(cert: &Path, key: &Path) -> Result<Identity, PkiError> {
    let mut certs =
        decode_blocks(&read_text(cert)?, CERTIFICATE_LABEL).map_err(|e| e.in_file(cert))?;
    if certs.is_empty() {
        return Err(PkiError::Pem("no CERTIFICATE block found".into()).in_file(cert));
    }
    if certs.len() > 1 + MAX_INTERMEDIATES {
        return Err(PkiError::BadCertificate(format!(
            "the chain file holds {} certificates; at most ours and {MAX_INTERMEDIATES} \
             intermediates are accepted",
            certs.len()
        ))
        .in_file(cert));
    }
    let cert_der = certs.remove(0);
    let private = leaf_private_key_from_pem(&read_text(key)?).map_err(|e| e.in_file(key))?;
    let mut identity = Identity::from_parts(cert_der, private).map_err(|e| match e {
        PkiError::KeyMismatch | PkiError::BadKey(_) => e.in_file(key),
        other => other.in_file(cert),
    })?;
    identity.chain = certs;
    Ok(identity)
}

/// Loads the trust anchors of a CA file: one CA certificate or a bundle of them.
pub fn load_anchor_bundle_file(path: &Path) -> Result<Vec<TrustAnchor>, PkiError> {
    TrustAnchor::bundle_from_pem(&read_text(path)?).map_err(|e| e.in_file(path))
}

/// Loads and checks a CA certificate; errors name the file.
pub fn load_anchor_file(path: &Path) -> Result<TrustAnchor, PkiError> {
    TrustAnchor::from_pem(&read_text(path)?).map_err(|e| e.in_file(path))
}

fn half_pair(missing: &Path, present: &Path) -> PkiError {
    PkiError::Missing {
        path: missing.to_path_buf(),
        why: MissingReason::HalfPair {
            present: present.to_path_buf(),
        },
    }
}

fn check_key_bits(bits: usize) -> Result<(), PkiError> {
    if super::issue::ALLOWED_KEY_BITS.contains(&bits) {
        Ok(())
    } else {
        Err(PkiError::KeySize(bits))
    }
}

fn check_days(days: u32) -> Result<(), PkiError> {
    // 100 years keeps every date inside what X.509 can express.
    const MAX_DAYS: u32 = 36_500;
    if (1..=MAX_DAYS).contains(&days) {
        Ok(())
    } else {
        Err(PkiError::Validity(format!(
            "a validity of {days} days is out of range; use 1 to {MAX_DAYS}"
        )))
    }
}

/// Whether anything (even a dangling symlink) is at `path`.
/// Whether `path` exists. Anything but "not found" (a directory we may not enter, a file where
/// a directory should be) is an error: an unreadable CA directory is never taken for a missing
/// CA, which would be replaced by a new one.
fn exists(path: &Path) -> Result<bool, PkiError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(PkiError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Reads a small text file; the buffer is wiped on drop since it may be a private key.
fn read_text(path: &Path) -> Result<Zeroizing<String>, PkiError> {
    let read_err = |source| PkiError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    let mut text = Zeroizing::new(String::new());
    if let Err(e) = file.take(MAX_CREDENTIAL_FILE + 1).read_to_string(&mut text) {
        if e.kind() == std::io::ErrorKind::InvalidData {
            return Err(PkiError::Pem(
                "the file is not PEM text (binary DER? convert it with \
                 `openssl x509 -inform DER -in FILE -out FILE.pem` or `openssl pkey -inform DER ...`)"
                    .into(),
            )
            .in_file(path));
        }
        return Err(read_err(e));
    }
    if text.len() as u64 > MAX_CREDENTIAL_FILE {
        return Err(PkiError::Pem(format!(
            "the file is larger than {MAX_CREDENTIAL_FILE} bytes; it is not a PEM certificate or key"
        ))
        .in_file(path));
    }
    Ok(text)
}

fn create_dir(dir: &Path) -> Result<(), PkiError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(DIR_MODE);
    }
    builder.create(dir).map_err(|source| PkiError::Write {
        path: dir.to_path_buf(),
        source,
    })
}

/// Writes a public file of the CA directory (certificate, CRL, revocation record) atomically.
pub(super) fn write_public_file(path: &Path, contents: &[u8]) -> Result<(), PkiError> {
    write_file(path, contents, CERT_MODE)
}

fn write_key(path: &Path, key: &RsaPrivateKey) -> Result<(), PkiError> {
    let pem = Zeroizing::new(private_key_to_pem(key)?);
    write_file(path, pem.as_bytes(), KEY_MODE)
}

/// Writes `contents` to a fresh temporary file created with `mode`, syncs it and renames it
/// over `path`. On failure the temporary file is removed and `path` is untouched.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let write_err = |source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{:016x}",
        std::process::id(),
        rand::rng().next_u64()
    ));
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let result = options.open(&tmp).and_then(|mut file| {
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)
    });
    if let Err(source) = result {
        // Best effort: the temporary file may not even exist.
        let _ = fs::remove_file(&tmp);
        return Err(write_err(source));
    }
    // Make the rename durable too; not all platforms can sync a directory, so best effort.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
