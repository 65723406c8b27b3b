//! The server's cache of signed file statements.
//!
//! Hashing a large file costs more CPU than encrypting it, and an RSA signature costs more
//! than sending a small file. Files are served far more often than they change, so the server
//! remembers, per file, the statement it signed (path, size, SHA-256, time) and the signature,
//! keyed by the served name, the file's identity and every field that changes when it is
//! written: device, inode, size, modification and status-change times (nanoseconds). A later request for the
//! same unchanged file streams it without hashing and reuses the signature.
//!
//! A file rewritten while it is being sent from a cached entry would reach the client with a
//! stale digest; the server checks the file's metadata again after sending and answers with an
//! error instead of the stale statement (and the client's own digest check stands behind that).
//! The cache holds at most [`MAX_ENTRIES`] entries and is emptied when full: it is a speed-up,
//! never a source of truth, and its memory stays bounded (under about 1 KiB per entry).

use std::collections::HashMap;
use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::wire::FileStatement;

pub const MAX_ENTRIES: usize = 4096;

/// What identifies one version of a file on disk, under the name it is served as.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FileVersion {
    path: PathBuf,
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileVersion {
    pub fn of(path: &Path, m: &Metadata) -> Self {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
            Self {
                path: path.to_path_buf(),
                dev: m.dev(),
                ino: m.ino(),
                size: m.len(),
                mtime_ns: ns(m.mtime(), m.mtime_nsec()),
                ctime_ns: ns(m.ctime(), m.ctime_nsec()),
            }
        }
        #[cfg(not(unix))]
        {
            let ns = |t: std::io::Result<std::time::SystemTime>| {
                t.ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos() as i128)
            };
            Self {
                path: path.to_path_buf(),
                dev: 0,
                ino: 0,
                size: m.len(),
                mtime_ns: ns(m.modified()),
                ctime_ns: ns(m.created()),
            }
        }
    }
}

/// A statement and the server's signature over it.
#[derive(Clone, Debug)]
pub struct SignedEntry {
    pub statement: FileStatement,
    pub signature: Vec<u8>,
}

/// Signed statements of files as they were when signed. Shared by all connections.
#[derive(Default)]
pub struct StatementCache {
    entries: Mutex<HashMap<FileVersion, SignedEntry>>,
}

impl StatementCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, version: &FileVersion) -> Option<SignedEntry> {
        self.lock().get(version).cloned()
    }

    pub fn insert(&self, version: FileVersion, entry: SignedEntry) {
        let mut map = self.lock();
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(version, entry);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<FileVersion, SignedEntry>> {
        // A panic while holding the lock cannot leave the map half-updated in a way that
        // matters (entries are whole values): keep using it.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8) -> SignedEntry {
        SignedEntry {
            statement: FileStatement {
                path: format!("f{n}"),
                size: 1,
                sha256: [n; 32],
                signed_at: 0,
            },
            signature: vec![n],
        }
    }

    #[test]
    fn a_rewritten_file_is_a_different_version() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"one").unwrap();
        let v1 = FileVersion::of(&p, &std::fs::metadata(&p).unwrap());
        assert_eq!(v1, FileVersion::of(&p, &std::fs::metadata(&p).unwrap()));
        // Same size, rewritten: the status-change time moves even if the mtime were reset.
        std::thread::sleep(std::time::Duration::from_millis(5));
        std::fs::write(&p, b"two").unwrap();
        let v2 = FileVersion::of(&p, &std::fs::metadata(&p).unwrap());
        assert_ne!(v1, v2);
        let cache = StatementCache::new();
        cache.insert(v1.clone(), entry(1));
        assert!(cache.get(&v2).is_none());
        assert_eq!(cache.get(&v1).unwrap().signature, vec![1]);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = StatementCache::new();
        for i in 0..(MAX_ENTRIES + 10) {
            let v = FileVersion {
                path: PathBuf::from(format!("f{i}")),
                dev: 0,
                ino: i as u64,
                size: 1,
                mtime_ns: 0,
                ctime_ns: 0,
            };
            cache.insert(v, entry(0));
            assert!(cache.len() <= MAX_ENTRIES);
        }
        assert!(!cache.is_empty());
    }
}
