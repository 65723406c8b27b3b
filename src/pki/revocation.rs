//! Revocation in the CA directory: the list of revoked serials `ca revoke` keeps
//! (`DIR/revoked.txt`), the CRL made from it (`DIR/crl.pem`), and a CRL file that a server
//! re-reads when it changes.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::crl::{Crl, Revocation, make_crl};
use super::error::{CrlError, PkiError};
use super::pem::{X509_CRL_LABEL, encode_pem};
use super::store::{CaDir, write_public_file};
use super::time::{SECS_PER_DAY, now_unix};
use super::verify::{TrustAnchor, normalize_serial};

/// File in the CA directory that records every revocation (the source `crl.pem` is made from).
const REVOKED_FILE: &str = "revoked.txt";
/// The CRL `ca revoke` writes, and `serve`/`fetch` read when it exists.
const CRL_FILE: &str = "crl.pem";
/// Default validity of a CRL `ca revoke` writes, in days. After its nextUpdate a server refuses
/// to start with it, so the list is re-signed by any later `ca revoke` (also of a serial
/// already listed).
pub const DEFAULT_CRL_DAYS: u32 = 90;
/// First line of `revoked.txt`, then `crl-number N`, then `SERIAL_HEX UNIX_SECONDS` lines.
const REVOKED_HEADER: &str =
    "# minitls revocations: serial (hex) and revocation time (Unix seconds), one a line";
const CRL_NUMBER_KEY: &str = "crl-number";

/// What [`CaDir::revoke`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokeOutcome {
    /// Serials (hex) newly revoked.
    pub added: Vec<String>,
    /// Serials (hex) that were revoked already.
    pub already: Vec<String>,
    /// Every serial now revoked.
    pub total: usize,
    /// The CRL written.
    pub crl_path: PathBuf,
    /// Its nextUpdate (Unix seconds).
    pub next_update_unix: i64,
}

/// Upper-case hex of serial bytes (the form `openssl x509 -serial` prints).
pub fn serial_to_hex(serial: &[u8]) -> String {
    serial.iter().map(|b| format!("{b:02X}")).collect()
}

/// Parses a serial number given as hex (`3F2A...`, `3f:2a:...`, optional `0x`).
pub fn parse_serial_hex(text: &str) -> Result<Vec<u8>, PkiError> {
    let bad = |reason: &str| PkiError::BadSerial {
        input: text.to_string(),
        reason: reason.to_string(),
    };
    let t = text.trim();
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    let digits: String = t.chars().filter(|c| *c != ':').collect();
    if digits.is_empty() {
        return Err(bad("it is empty"));
    }
    if digits.len() > 42 {
        return Err(bad(
            "it is longer than the 20 bytes a serial number may have",
        ));
    }
    if !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad("it is not hexadecimal"));
    }
    let padded = if digits.len() % 2 == 1 {
        format!("0{digits}")
    } else {
        digits
    };
    let bytes: Vec<u8> = (0..padded.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&padded[i..i + 2], 16).unwrap_or(0))
        .collect();
    let serial = normalize_serial(&bytes);
    if serial.is_empty() {
        return Err(bad("serial numbers are positive"));
    }
    Ok(serial)
}

impl CaDir {
    /// Path of the CRL (`DIR/crl.pem`).
    pub fn crl_path(&self) -> PathBuf {
        self.dir.join(CRL_FILE)
    }

    /// Path of the revocation record (`DIR/revoked.txt`).
    pub fn revoked_path(&self) -> PathBuf {
        self.dir.join(REVOKED_FILE)
    }

    /// Every revocation recorded here, in the order made (empty if none).
    pub fn revocations(&self) -> Result<Vec<Revocation>, PkiError> {
        Ok(self.read_revoked()?.1)
    }

    fn read_revoked(&self) -> Result<(u64, Vec<Revocation>), PkiError> {
        let path = self.revoked_path();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, Vec::new())),
            Err(source) => {
                return Err(PkiError::Read { path, source });
            }
        };
        let mut number = 0;
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || {
                PkiError::Revocations(format!(
                    "line {} is not `SERIAL_HEX UNIX_SECONDS`: {line:?}",
                    i + 1
                ))
                .in_file(&path)
            };
            let (first, second) = line.split_once(' ').ok_or_else(bad)?;
            if first == CRL_NUMBER_KEY {
                number = second.trim().parse().map_err(|_| bad())?;
                continue;
            }
            out.push(Revocation {
                serial: parse_serial_hex(first).map_err(|_| bad())?,
                revoked_at_unix: second.trim().parse().map_err(|_| bad())?,
            });
        }
        Ok((number, out))
    }

    /// Revokes the certificates with these serials: records them in `DIR/revoked.txt` (with
    /// those revoked before) and writes `DIR/crl.pem`, signed by the CA here, valid for
    /// `days`. Serials revoked already keep their first revocation time; the list is re-signed
    /// either way (which is how an expiring CRL is renewed).
    pub fn revoke(&self, serials: &[Vec<u8>], days: u32) -> Result<RevokeOutcome, PkiError> {
        if days == 0 || days > 3650 {
            return Err(PkiError::Validity(format!(
                "a CRL validity of {days} days is out of range (1 to 3650)"
            )));
        }
        let ca = self.load_ca()?;
        let (number, mut list) = self.read_revoked()?;
        let now = now_unix();
        let (mut added, mut already) = (Vec::new(), Vec::new());
        for serial in serials {
            let serial = normalize_serial(serial);
            let hex = serial_to_hex(&serial);
            if list.iter().any(|r| r.serial == serial) {
                if !already.contains(&hex) {
                    already.push(hex);
                }
            } else {
                list.push(Revocation {
                    serial,
                    revoked_at_unix: now,
                });
                added.push(hex);
            }
        }
        let number = number.saturating_add(1);
        let next_update = (now + i64::from(days) * SECS_PER_DAY).min(ca.anchor().not_after_unix());
        if next_update <= now {
            return Err(PkiError::Validity(
                "the CA certificate has expired; a CRL it signs would be void".into(),
            ));
        }
        let der = make_crl(&ca, &list, now, next_update, number)?;
        // The record first: a CRL never lists more than the record, so re-running the command
        // after a failure reproduces it.
        let mut text = format!("{REVOKED_HEADER}\n{CRL_NUMBER_KEY} {number}\n");
        for r in &list {
            text.push_str(&format!(
                "{} {}\n",
                serial_to_hex(&r.serial),
                r.revoked_at_unix
            ));
        }
        write_public_file(&self.revoked_path(), text.as_bytes())?;
        write_public_file(
            &self.crl_path(),
            encode_pem(X509_CRL_LABEL, &der).as_bytes(),
        )?;
        Ok(RevokeOutcome {
            added,
            already,
            total: list.len(),
            crl_path: self.crl_path(),
            next_update_unix: next_update,
        })
    }
}

/// Reads a CRL file (PEM or DER, at most [`super::MAX_CRL_BYTES`]) and checks it against
/// `anchor` (issuer and signature; see [`Crl::from_bytes`]). Whether it is current is left to
/// the caller ([`Crl::check_current`]).
pub fn load_crl_file(path: &Path, anchor: &TrustAnchor) -> Result<Crl, PkiError> {
    load_crl_file_any(path, &[anchor])
}

/// [`load_crl_file`] for a CRL of any of `anchors` (a `--ca-cert` bundle).
pub fn load_crl_file_any(path: &Path, anchors: &[&TrustAnchor]) -> Result<Crl, PkiError> {
    let bytes = read_bounded(path)?;
    Crl::from_bytes_any(&bytes, anchors).map_err(|e| PkiError::Crl(e).in_file(path))
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, PkiError> {
    let read_err = |source| PkiError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    file.take(super::MAX_CRL_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    Ok(bytes)
}

/// What identifies one version of a file: a new file renamed into place, or one rewritten,
/// changes at least one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> io::Result<FileStamp> {
    let m = fs::metadata(path)?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let inode = 0;
    Ok(FileStamp {
        modified: m.modified().ok(),
        len: m.len(),
        inode,
    })
}

/// A CRL file a server keeps using: re-read when it changes (checked at each
/// [`CrlFile::current`], that is at each new connection) or on [`CrlFile::reload`] (SIGHUP).
///
/// A replacement that cannot be used (bad signature, unreadable, another CA, the file removed)
/// is reported and the list in force stays: it never falls back to "nothing is revoked".
pub struct CrlFile {
    path: PathBuf,
    /// The CAs whose CRL this may be.
    anchors: Vec<TrustAnchor>,
    state: Mutex<CrlState>,
}

struct CrlState {
    stamp: Option<FileStamp>,
    /// `None` until the file first exists (`DIR/crl.pem` before the first `ca revoke`).
    crl: Option<Arc<Crl>>,
    /// The file's last change was reported as unusable (so it is not reported at every
    /// connection).
    reported_bad: bool,
    /// Staleness was reported for the list in force.
    reported_stale: bool,
}

impl std::fmt::Debug for CrlFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrlFile").field("path", &self.path).finish()
    }
}

impl CrlFile {
    /// Loads the CRL at `path` for `anchor`. At start every problem is an error, a list past
    /// its nextUpdate too (SPEC §2.10). With `may_be_absent` (the CA directory's `crl.pem`
    /// before any revocation) a missing file means an empty list, watched for its creation.
    pub fn open(
        path: &Path,
        anchors: Vec<TrustAnchor>,
        may_be_absent: bool,
        now_unix: i64,
    ) -> Result<CrlFile, PkiError> {
        let before = match stamp(path) {
            Ok(s) => Some(s),
            Err(e) if may_be_absent && e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(PkiError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let crl = match before {
            None => None,
            Some(_) => {
                let crl = load_crl_file_any(path, &anchors.iter().collect::<Vec<_>>())?;
                crl.check_current(now_unix)
                    .map_err(|e| PkiError::Crl(e).in_file(path))?;
                Some(Arc::new(crl))
            }
        };
        Ok(CrlFile {
            path: path.to_path_buf(),
            anchors,
            state: Mutex::new(CrlState {
                stamp: before,
                crl,
                reported_bad: false,
                reported_stale: false,
            }),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The list to use now (`None`: no list yet), re-read first if the file changed, and what
    /// to log about it (a reload, a replacement that was refused, a list past its nextUpdate).
    pub fn current(&self, now_unix: i64) -> (Option<Arc<Crl>>, Vec<String>) {
        let mut notes = Vec::new();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now_stamp = stamp(&self.path).ok();
        if now_stamp != state.stamp {
            state.stamp = now_stamp;
            self.replace(&mut state, &mut notes);
        }
        self.note_stale(&mut state, now_unix, &mut notes);
        (state.crl.clone(), notes)
    }

    /// Re-reads the file now (SIGHUP), whether or not it looks changed.
    pub fn reload(&self, now_unix: i64) -> Vec<String> {
        let mut notes = Vec::new();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.stamp = stamp(&self.path).ok();
        state.reported_bad = false;
        if state.stamp.is_some() || state.crl.is_some() {
            self.replace(&mut state, &mut notes);
        }
        self.note_stale(&mut state, now_unix, &mut notes);
        notes
    }

    fn replace(&self, state: &mut CrlState, notes: &mut Vec<String>) {
        let anchors: Vec<&TrustAnchor> = self.anchors.iter().collect();
        match load_crl_file_any(&self.path, &anchors) {
            Ok(crl) => {
                let unanchored = crl.unanchored_issuers(&[]);
                let intermediates = if unanchored.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; lists of CAs that are no trust anchor, used only for peers whose \
                         chain holds that CA: \"{}\"",
                        unanchored.join("\", \"")
                    )
                };
                notes.push(format!(
                    "reloaded the CRL {} ({} revoked certificate(s){intermediates})",
                    self.path.display(),
                    crl.len()
                ));
                state.crl = Some(Arc::new(crl));
                state.reported_bad = false;
                state.reported_stale = false;
            }
            Err(e) => {
                if !state.reported_bad {
                    let kept = match &state.crl {
                        Some(crl) => format!("kept the previous CRL ({} revoked)", crl.len()),
                        None => "no CRL in force".to_string(),
                    };
                    notes.push(format!("warning: {kept}: {e}"));
                }
                state.reported_bad = true;
            }
        }
    }

    fn note_stale(&self, state: &mut CrlState, now_unix: i64, notes: &mut Vec<String>) {
        let Some(crl) = &state.crl else {
            return;
        };
        if state.reported_stale {
            return;
        }
        if let Err(e @ (CrlError::Stale { .. } | CrlError::NotYetValid { .. })) =
            crl.check_current(now_unix)
        {
            notes.push(format!(
                "warning: {}: {e}; revocations in it are still enforced, but a newer list \
                 may revoke more",
                self.path.display()
            ));
            state.reported_stale = true;
        }
    }
}
