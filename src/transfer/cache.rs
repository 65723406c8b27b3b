//! The server's cache of signed file statements.
//!
//! Hashing a large file costs more CPU than encrypting it, and an RSA signature costs more
//! than sending a small file. Files are served far more often than they change, so the server
//! remembers, per file, the statement it signed (path, size, SHA-256, time) and the signature,
//! keyed by the served name, the file's identity and every field that changes when it is
//! written: device, inode, size, modification and status-change times (nanoseconds). A later request for the
//! same unchanged file streams it without hashing and reuses the signature, as long as the
//! signature was made with the key in use now (SIGHUP may have renewed the certificate).
//!
//! A file rewritten while it is being sent from a cached entry would reach the client with a
//! stale digest; the server checks the file's metadata again after sending and answers with an
//! error instead of the stale statement (and the client's own digest check stands behind that).
//! The cache holds at most [`MAX_ENTRIES`] entries and is emptied when full: it is a speed-up,
//! never a source of truth, and its memory stays bounded (under about 1 KiB per entry).

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use sha2::{Digest, Sha256};

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
    /// SHA-256 of the certificate whose key made the signature: after SIGHUP puts a renewed
    /// certificate in use, entries signed with the old key are not served under the new one
    /// (the client checks the signature against the certificate of its handshake).
    pub signer: [u8; 32],
}

/// Signed statements of files as they were when signed, and the digests being computed right
/// now. Shared by all connections.
#[derive(Default)]
pub struct StatementCache {
    entries: Mutex<HashMap<FileVersion, SignedEntry>>,
    jobs: Mutex<HashMap<FileVersion, Arc<DigestJob>>>,
}

/// The SHA-256 of one version of a file, computed once on a thread of its own, for every
/// connection that asks while it runs.
pub struct DigestJob {
    result: Mutex<Option<Result<[u8; 32], String>>>,
    ready: Condvar,
}

impl DigestJob {
    /// Waits for the digest. An error means the file could not be read or changed meanwhile.
    pub fn wait(&self) -> Result<[u8; 32], String> {
        let mut r = lock(&self.result);
        loop {
            if let Some(r) = r.as_ref() {
                return r.clone();
            }
            r = self.ready.wait(r).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn set(&self, r: Result<[u8; 32], String>) {
        *lock(&self.result) = Some(r);
        self.ready.notify_all();
    }
}

/// Hashes the file at `full` if it is still `version` before and after.
fn hash_version(full: &Path, version: &FileVersion) -> Result<[u8; 32], String> {
    let mut f = File::open(full).map_err(|e| super::plain_io(&e))?;
    let unchanged = |f: &File| {
        f.metadata()
            .is_ok_and(|m| FileVersion::of(&version.path, &m) == *version)
    };
    if !unchanged(&f) {
        return Err("the file changed while it was being sent".into());
    }
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(super::plain_io(&e)),
        }
    }
    if !unchanged(&f) {
        return Err("the file changed while it was being sent".into());
    }
    Ok(h.finalize().into())
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

    /// The digest of `version` of the file at `full` (the path it resolves to), computed by a
    /// background thread: one per version however many connections ask while it runs, so
    /// that 50 clients fetching a new file at once cost one pass of SHA-256, and a single
    /// client's first fetch hashes on another core while the file is sent. If no thread can
    /// be started, the digest is computed here before returning.
    pub fn digest(self: &Arc<Self>, version: &FileVersion, full: &Path) -> Arc<DigestJob> {
        let mut jobs = lock(&self.jobs);
        if let Some(job) = jobs.get(version) {
            return job.clone();
        }
        let job = Arc::new(DigestJob {
            result: Mutex::new(None),
            ready: Condvar::new(),
        });
        jobs.insert(version.clone(), job.clone());
        drop(jobs);
        let (cache, v, path, j) = (
            self.clone(),
            version.clone(),
            full.to_path_buf(),
            job.clone(),
        );
        let run = move || {
            j.set(hash_version(&path, &v));
            let mut jobs = lock(&cache.jobs);
            if jobs.get(&v).is_some_and(|x| Arc::ptr_eq(x, &j)) {
                jobs.remove(&v);
            }
        };
        let spawned = std::thread::Builder::new()
            .name("sha256-file".into())
            .spawn({
                let run = run.clone();
                move || run()
            });
        if spawned.is_err() {
            run();
        }
        job
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<FileVersion, SignedEntry>> {
        lock(&self.entries)
    }
}

/// A panic while holding one of these locks cannot leave a half-updated value that matters
/// (entries and results are whole values): keep using it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
            signer: [0; 32],
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
    fn one_digest_job_per_version_and_a_changed_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let v = FileVersion::of(Path::new("f"), &std::fs::metadata(&p).unwrap());
        let cache = Arc::new(StatementCache::new());
        let a = cache.digest(&v, &p);
        let b = cache.digest(&v, &p);
        let want: [u8; 32] = Sha256::digest(&data).into();
        assert_eq!(a.wait(), Ok(want));
        assert_eq!(b.wait(), Ok(want));
        // The job is forgotten once done; a version that no longer matches the file fails.
        std::thread::sleep(std::time::Duration::from_millis(5));
        std::fs::write(&p, b"other").unwrap();
        assert!(cache.digest(&v, &p).wait().is_err());
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
