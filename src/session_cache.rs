//! The client's session cache: tickets kept between commands so that a returning client
//! resumes in one round trip (SPEC §2.12, PROTOCOL.md §2.5).
//!
//! One file (mode 0600, in a directory of mode 0700), one line per session:
//! `minitls-session-v1 BASE64`, the base64 (constant-time, `base64ct`: the lines hold secrets)
//! of `key [32] | expires_at i64 | resumption secret [32] | vec16<ticket> | vec16<server
//! certificate> | u8 count | count x vec16<intermediate>`. The key is the SHA-256 of the
//! server address, the server name and the client certificate's fingerprint, so a ticket is
//! only offered to the server and by the identity it was issued for, and the file does not
//! list the servers in clear.
//!
//! A ticket is used once: [`SessionCache::take`] removes it, and the session it resumes
//! brings a new one. Anything unreadable (a corrupt line, a file of another version, a
//! missing directory) means "no session": a full handshake, never an error. Writes go to a
//! temporary file renamed over the old one, so a reader never sees half a file; two commands
//! running at once may lose a ticket to each other, which costs a full handshake.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use base64ct::{Base64, Encoding};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::crypto::Secret32;
use crate::handshake::ResumableSession;
use crate::wire::{MAX_CERT_LEN, MAX_CHAIN_LEN, MAX_TICKET_LEN, Reader, put_u64, put_vec_u16};

/// Most sessions kept (the ones expiring last win).
pub const MAX_SESSIONS: usize = 64;
/// Largest cache file read.
const MAX_FILE: u64 = 4 << 20;
const MAGIC: &str = "minitls-session-v1";

/// A session cache file.
#[derive(Clone, Debug)]
pub struct SessionCache {
    path: PathBuf,
}

struct Entry {
    key: [u8; 32],
    session: ResumableSession,
}

impl SessionCache {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `$XDG_CACHE_HOME/minitls/sessions`, else `$HOME/.cache/minitls/sessions`; `None`
    /// without either.
    pub fn default_path() -> Option<PathBuf> {
        let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => {
                PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".cache")
            }
        };
        Some(base.join("minitls").join("sessions"))
    }

    /// The key a session is filed under.
    pub fn key(server: &str, server_name: &str, client_fingerprint: &[u8; 32]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"minitls session cache v1\0");
        h.update(server.as_bytes());
        h.update([0]);
        h.update(server_name.as_bytes());
        h.update([0]);
        h.update(client_fingerprint);
        h.finalize().into()
    }

    /// Removes and returns the session filed under `key`, if there is one that has not
    /// expired at `now`.
    pub fn take(&self, key: &[u8; 32], now: i64) -> Option<ResumableSession> {
        let mut entries = self.load(now);
        let at = entries.iter().position(|e| &e.key == key)?;
        let entry = entries.remove(at);
        // Best effort: if the file cannot be rewritten, the server still accepts the
        // ticket only once.
        let _ = self.save(&entries);
        Some(entry.session)
    }

    /// Files `session` under `key` (replacing what was there).
    pub fn store(&self, key: &[u8; 32], session: ResumableSession, now: i64) -> io::Result<()> {
        let mut entries = self.load(now);
        entries.retain(|e| &e.key != key);
        entries.push(Entry { key: *key, session });
        entries.sort_by_key(|e| std::cmp::Reverse(e.session.expires_at));
        entries.truncate(MAX_SESSIONS);
        self.save(&entries)
    }

    /// Every readable, unexpired entry.
    fn load(&self, now: i64) -> Vec<Entry> {
        let Ok(file) = fs::File::open(&self.path) else {
            return Vec::new();
        };
        let mut text = Zeroizing::new(String::new());
        if io::Read::read_to_string(&mut io::Read::take(file, MAX_FILE), &mut text).is_err() {
            return Vec::new();
        }
        text.lines()
            .filter_map(|line| {
                let b64 = line.strip_prefix(MAGIC)?.strip_prefix(' ')?;
                let bytes = Zeroizing::new(Base64::decode_vec(b64.trim_end()).ok()?);
                decode_entry(&bytes)
            })
            .filter(|e| e.session.expires_at > now)
            .collect()
    }

    fn save(&self, entries: &[Entry]) -> io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        if !dir.as_os_str().is_empty() {
            create_private_dir(dir)?;
        }
        let mut text = Zeroizing::new(String::new());
        for e in entries {
            let bytes = Zeroizing::new(encode_entry(e));
            text.push_str(MAGIC);
            text.push(' ');
            text.push_str(&Base64::encode_string(&bytes));
            text.push('\n');
        }
        let mut tmp = tempfile::Builder::new().prefix(".sessions.").tempfile_in(
            if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            },
        )?;
        // tempfile creates it with mode 0600.
        tmp.write_all(text.as_bytes())?;
        tmp.as_file().sync_all()?;
        tmp.persist(&self.path).map_err(|e| e.error)?;
        Ok(())
    }
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    }
    #[cfg(not(unix))]
    {
        fs::create_dir_all(dir)
    }
}

fn encode_entry(e: &Entry) -> Vec<u8> {
    let s = &e.session;
    let mut out = Vec::new();
    out.extend_from_slice(&e.key);
    put_u64(&mut out, s.expires_at as u64);
    out.extend_from_slice(&s.resumption.0);
    put_vec_u16(&mut out, &s.ticket);
    put_vec_u16(&mut out, &s.server_der);
    let count = s.server_chain.len().min(MAX_CHAIN_LEN);
    out.push(count as u8);
    for cert in &s.server_chain[..count] {
        put_vec_u16(&mut out, cert);
    }
    out
}

fn decode_entry(bytes: &[u8]) -> Option<Entry> {
    let mut r = Reader::new(bytes);
    let key = r.array("key").ok()?;
    let expires_at = r.i64("expiry").ok()?;
    let resumption = Secret32(r.array("secret").ok()?);
    let ticket = r.vec_u16(MAX_TICKET_LEN, "ticket").ok()?.to_vec();
    let server_der = r.vec_u16(MAX_CERT_LEN, "certificate").ok()?.to_vec();
    let count = r.u8("chain").ok()? as usize;
    if count > MAX_CHAIN_LEN {
        return None;
    }
    let mut server_chain = Vec::with_capacity(count);
    for _ in 0..count {
        server_chain.push(r.vec_u16(MAX_CERT_LEN, "chain").ok()?.to_vec());
    }
    r.expect_end().ok()?;
    Some(Entry {
        key,
        session: ResumableSession {
            ticket,
            resumption,
            server_der,
            server_chain,
            expires_at,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(expires_at: i64, b: u8) -> ResumableSession {
        ResumableSession {
            ticket: vec![b; 40],
            resumption: Secret32([b; 32]),
            server_der: vec![b; 10],
            server_chain: vec![vec![b; 5]],
            expires_at,
        }
    }

    #[test]
    fn a_session_is_taken_once_and_expired_or_corrupt_ones_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let cache = SessionCache::new(dir.path().join("sub/sessions"));
        let k1 = SessionCache::key("h:1", "h", &[1; 32]);
        let k2 = SessionCache::key("h:1", "h", &[2; 32]);
        assert!(cache.take(&k1, 0).is_none());
        cache.store(&k1, session(100, 1), 0).unwrap();
        cache.store(&k2, session(5, 2), 0).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(cache.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let mode = fs::metadata(dir.path().join("sub"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        // Expired at 10: gone.
        assert!(cache.take(&k2, 10).is_none());
        let got = cache.take(&k1, 10).unwrap();
        assert_eq!(got.ticket, vec![1; 40]);
        assert_eq!(got.resumption.0, [1; 32]);
        assert_eq!(got.server_chain, vec![vec![1; 5]]);
        assert!(cache.take(&k1, 10).is_none(), "taken once");
        // Garbage in the file: no session, no error.
        fs::write(cache.path(), "minitls-session-v1 !!!\nnonsense\n").unwrap();
        assert!(cache.take(&k1, 0).is_none());
        cache.store(&k1, session(100, 3), 0).unwrap();
        assert!(cache.take(&k1, 0).is_some());
    }

    #[test]
    fn the_key_separates_servers_names_and_client_identities() {
        let k = SessionCache::key("a:1", "a", &[1; 32]);
        assert_ne!(k, SessionCache::key("a:2", "a", &[1; 32]));
        assert_ne!(k, SessionCache::key("a:1", "b", &[1; 32]));
        assert_ne!(k, SessionCache::key("a:1", "a", &[2; 32]));
    }
}
