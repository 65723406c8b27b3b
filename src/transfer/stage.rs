//! A received tree, staged in one hidden directory and put in place all at once.
//!
//! Every entry lands first in a fresh hidden directory `OUT/.<16 hex>.minitls-tmp`, under its
//! real name (so long names fit wherever they fit at all). Names are checked as they arrive:
//! each is sent once, and each entry's parent must have been sent as a directory before it, so
//! no name can be both a file and a directory. Only after the manifest's signature verified
//! does [`TreeStage::commit`] move the tree into place:
//! - if `OUT/NAME` does not exist, the staging directory is renamed to it (one rename, and
//!   then the manifest beside it: undone if the second fails);
//! - if it exists, each directory is made and each file renamed into it in manifest order; a
//!   file that was there is first moved into a second hidden directory, and any failure undoes
//!   every step taken, in reverse, so the tree is as it was before.
//!
//! On any failure before or during the commit, nothing remains at the final paths and both
//! hidden directories are removed, except after a network cut: then the staging directory is
//! kept as `OUT/.NAME.minitls-partial` ([`TreeStage::keep_as_partial`]), and `fetch -r
//! --resume` takes it back as its staging directory ([`TreeStage::resume`]), continuing the
//! files the server sends from where they stopped and removing what the tree no longer lists
//! before the commit. All of it goes through held directory handles (see [`super::land`]).
//!
//! Leftovers of a fetch that could not clean up are removed too:
//! - each hidden directory is held under an exclusive `flock` while in use, which the kernel
//!   drops when the process ends however it ends; the next tree fetched into OUT removes
//!   every `.<16 hex>.minitls-tmp` directory there whose lock it can take (a killed fetch's,
//!   never one another process is still using);
//! - on Ctrl-C (or SIGTERM, SIGHUP) the command line calls [`remove_staging_in_progress`],
//!   which removes this process's own; a commit under way is let finish first, so a tree is
//!   never left half merged.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::TransferError;
use super::land::{Dir, Kind, LandHook, LandStep, Staged, walk};
use crate::paths::{self, PathError};
use crate::wire::{EntryKind, ManifestEntry};

fn io_err(path: PathBuf) -> impl FnOnce(io::Error) -> TransferError {
    move |source| TransferError::Io { path, source }
}

fn unsafe_name(name: &str, source: PathError) -> TransferError {
    TransferError::UnsafeName {
        name: name.escape_debug().to_string(),
        source,
    }
}

fn in_place(path: &Path, kind: Kind) -> TransferError {
    TransferError::Refused(format!(
        "{} already exists and is {}; move it away first",
        path.display(),
        kind.describe()
    ))
}

/// Splits a name a server sent for an entry of a tree and checks it is canonical.
fn split(name: &str) -> Result<Vec<&str>, TransferError> {
    let parts = paths::parse_relative(name, false).map_err(|e| unsafe_name(name, e))?;
    if parts.join("/") != name {
        return Err(unsafe_name(name, PathError::EmptyComponent));
    }
    Ok(parts)
}

/// The staging directories of this process's trees in progress (paths as the user named
/// OUT, which stays valid: the working directory never changes).
static IN_PROGRESS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
/// Held while a verified tree is moved into place: an interrupt waits for it.
static COMMITTING: Mutex<()> = Mutex::new(());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere cannot leave these lists inconsistent: a plain push or retain.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes the staging directories of every tree this process has in progress, after any
/// commit under way has finished, and returns them; for a signal handler that then exits.
/// Later commits of this process wait forever: call it only on the way out.
pub fn remove_staging_in_progress() -> Vec<PathBuf> {
    std::mem::forget(lock(&COMMITTING));
    let dirs = std::mem::take(&mut *lock(&IN_PROGRESS));
    for d in &dirs {
        // The receiving thread may add a file meanwhile: try again a few times.
        for _ in 0..5 {
            match std::fs::remove_dir_all(d) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => continue,
                _ => break,
            }
        }
    }
    dirs
}

/// True for the names of hidden temporary entries, `.<16 hex>.minitls-tmp`.
fn is_temp_name(name: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|n| n.strip_suffix(super::land::TMP_SUFFIX))
        .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Takes the exclusive lock that marks a hidden directory as in use (see the module doc).
fn try_lock(dir: &Dir) -> io::Result<bool> {
    use rustix::fs::{FlockOperation, flock};
    match flock(dir.as_fd(), FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// A new hidden directory in `out`, locked as in use.
fn create_locked_temp_dir(out: &Dir) -> Result<(String, Dir), TransferError> {
    for _ in 0..8 {
        let (name, dir) = out
            .create_temp_dir()
            .map_err(io_err(out.path().to_path_buf()))?;
        // Another fetch's clean-up may have taken it between mkdir and flock (it saw an
        // unlocked directory): then it is gone or going, and we make another. A file system
        // without flock (some network ones) refuses it: the directory is used unlocked, and
        // clean-ups there leave every staging directory alone (they cannot lock it either).
        let locked = try_lock(&dir).unwrap_or(true);
        if locked && out.still_holds(&name, &dir) {
            return Ok((name, dir));
        }
    }
    Err(TransferError::Refused(format!(
        "could not make a staging directory in {} that stays ours",
        out.path().display()
    )))
}

/// Removes the hidden directories in `out` that no process holds (a killed or crashed
/// fetch's) and returns their names. Best effort: what cannot be examined is left alone.
fn remove_stale_staging(out: &Dir) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(out.path()) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !is_temp_name(&name) {
            continue;
        }
        // Only a directory (never followed if it is a link), and only if its lock is free.
        let Ok(Some(dir)) = out.open_child(&name) else {
            continue;
        };
        if let Ok(true) = try_lock(&dir) {
            out.remove_tree(&name);
            removed.push(name);
        }
    }
    removed
}

/// One step of a commit into an existing tree, remembered so that it can be undone.
enum Done {
    /// Made the directory `name` below `parent` (components from the tree root).
    MadeDir { parent: Vec<String>, name: String },
    /// Moved the file `name` below `parent` into place; what was there went to the backup
    /// directory as `backup`.
    Moved {
        parent: Vec<String>,
        name: String,
        backup: Option<String>,
    },
}

/// A tree being received into `OUT/NAME`.
pub struct TreeStage<'a> {
    out: &'a Dir,
    root_name: String,
    /// `OUT/NAME` when it already existed: the tree is merged into it.
    existing: Option<Dir>,
    stage_name: String,
    stage: Dir,
    /// Every entry so far and its kind.
    names: HashMap<String, EntryKind>,
    /// The staging directory the last file went into (a directory's files arrive together).
    last_dir: Option<(String, Dir)>,
    hook: LandHook,
    committed: bool,
    /// The staging directory is a tree kept from a cut fetch (`--resume`): it may hold
    /// entries already, and anything in it that the tree does not list is removed before the
    /// commit.
    adopted: bool,
}

impl Drop for TreeStage<'_> {
    fn drop(&mut self) {
        if !self.committed {
            self.out.remove_tree(&self.stage_name);
        }
        let path = self.out.display(&self.stage_name);
        lock(&IN_PROGRESS).retain(|p| *p != path);
    }
}

impl<'a> TreeStage<'a> {
    /// Checks `OUT/NAME` (a directory to merge into, or nothing) and makes the staging
    /// directory beside it.
    pub fn begin(out: &'a Dir, root_name: &str, hook: LandHook) -> Result<Self, TransferError> {
        // What an interrupted fetch into OUT could not remove goes first.
        remove_stale_staging(out);
        let existing = match out
            .kind(root_name)
            .map_err(io_err(out.display(root_name)))?
        {
            None => None,
            Some(Kind::Dir) => out
                .open_child(root_name)
                .map_err(io_err(out.display(root_name)))?,
            Some(k) => return Err(in_place(&out.display(root_name), k)),
        };
        let (stage_name, stage) = create_locked_temp_dir(out)?;
        lock(&IN_PROGRESS).push(out.display(&stage_name));
        if existing.is_none() {
            // The staging directory becomes the tree root: give it the allocator hint now.
            super::client::spread_subdirectories(&stage);
        }
        Ok(Self {
            out,
            root_name: root_name.to_string(),
            existing,
            stage_name,
            stage,
            names: HashMap::new(),
            last_dir: None,
            hook,
            committed: false,
            adopted: false,
        })
    }

    /// [`TreeStage::begin`], continuing in the directory `partial_name` in OUT that a cut
    /// fetch of this tree kept (see [`TreeStage::keep_as_partial`]): it is renamed to a fresh
    /// staging name first (and locked as in use), so that it is ours alone. Without such a
    /// directory, a fresh one.
    pub fn resume(
        out: &'a Dir,
        root_name: &str,
        partial_name: &str,
        hook: LandHook,
    ) -> Result<Self, TransferError> {
        let mut stage = Self::begin(out, root_name, hook)?;
        if out.kind(partial_name).ok().flatten() != Some(Kind::Dir) {
            return Ok(stage);
        }
        // Swap the fresh (empty) staging directory for the kept one, under the same name.
        let kept = super::land::temp_name();
        let taken = out
            .rename_noreplace(partial_name, out, &kept)
            .and_then(|()| out.open_child(&kept))
            .map_err(io_err(out.display(partial_name)))?;
        let Some(dir) = taken else {
            return Ok(stage);
        };
        if !try_lock(&dir).unwrap_or(true) || !out.still_holds(&kept, &dir) {
            // Another fetch holds it: leave it and start afresh.
            return Ok(stage);
        }
        out.remove_tree(&stage.stage_name);
        out.rename(&kept, out, &stage.stage_name)
            .map_err(io_err(out.display(&stage.stage_name)))?;
        stage.stage = dir.renamed(out.display(&stage.stage_name));
        stage.adopted = true;
        Ok(stage)
    }

    /// After a network cut: keeps what arrived as `partial_name` in OUT (replacing an older
    /// one), for `fetch -r --resume`. What is there was each checked against the server's
    /// digest as it arrived (but not yet against a signature); the file being received when
    /// the connection was cut holds what arrived of it. Best effort: on failure the staging
    /// directory is removed as usual.
    pub fn keep_as_partial(mut self, partial_name: &str) {
        let out = self.out;
        if out.kind(partial_name).ok().flatten() == Some(Kind::Dir) {
            out.remove_tree(partial_name);
        }
        if out.still_holds(&self.stage_name, &self.stage)
            && out
                .rename_noreplace(&self.stage_name, out, partial_name)
                .is_ok()
        {
            self.committed = true;
        }
    }

    /// The final path of the tree.
    pub fn root(&self) -> PathBuf {
        self.out.display(&self.root_name)
    }

    /// Accepts the name of a new entry: canonical, not seen before, its parent a directory
    /// sent before it; and where the tree root exists, nothing in the way of it there.
    fn admit<'n>(&mut self, name: &'n str, kind: EntryKind) -> Result<Vec<&'n str>, TransferError> {
        let parts = split(name)?;
        if self.names.contains_key(name) {
            return Err(TransferError::Protocol(format!(
                "server sent '{}' twice",
                name.escape_debug()
            )));
        }
        if parts.len() > 1 {
            let parent = parts[..parts.len() - 1].join("/");
            match self.names.get(&parent) {
                Some(EntryKind::Dir) => {}
                Some(EntryKind::File) => {
                    return Err(TransferError::Protocol(format!(
                        "'{}' is inside '{}', which the server sent as a file",
                        name.escape_debug(),
                        parent.escape_debug()
                    )));
                }
                None => {
                    return Err(TransferError::Protocol(format!(
                        "'{}' arrived before its directory '{}'",
                        name.escape_debug(),
                        parent.escape_debug()
                    )));
                }
            }
        }
        if let Some(existing) = &self.existing {
            check_in_the_way(existing, &parts, kind)?;
        }
        self.names.insert(name.to_string(), kind);
        Ok(parts)
    }

    /// The staging directory for the entries below `parent` (which exists: it was admitted).
    fn staging_dir(&mut self, parent: &[&str]) -> Result<&Dir, TransferError> {
        let key = parent.join("/");
        if self.last_dir.as_ref().is_none_or(|(k, _)| *k != key) {
            let d = walk(&self.stage, parent).map_err(io_err(self.stage.display(&key)))?;
            self.last_dir = Some((key, d));
        }
        Ok(&self.last_dir.as_ref().expect("just set").1)
    }

    /// A directory entry of the tree.
    pub fn add_dir(&mut self, name: &str) -> Result<(), TransferError> {
        let parts = self.admit(name, EntryKind::Dir)?;
        let (last, parent) = parts.split_last().expect("split gives a name");
        let adopted = self.adopted;
        let dir = self.staging_dir(parent)?;
        if adopted {
            match dir.kind(last).map_err(io_err(dir.display(last)))? {
                Some(Kind::Dir) => return Ok(()),
                Some(Kind::File | Kind::Symlink | Kind::Other) => dir.remove_tree(last),
                None => {}
            }
        }
        dir.create_child(last).map_err(io_err(dir.display(last)))?;
        Ok(())
    }

    /// A file entry of the tree: a new file in the staging directory, removed if dropped.
    /// With `append` (a tree kept from a cut fetch, whose file the server continues), the
    /// file already there is opened to be continued instead.
    pub fn add_file(&mut self, name: &str, append: bool) -> Result<Staged, TransferError> {
        let parts = self.admit(name, EntryKind::File)?;
        let (last, parent) = parts.split_last().expect("split gives a name");
        let hook = self.hook.clone();
        let adopted = self.adopted;
        let dir = self.staging_dir(parent)?;
        hook.call(LandStep::Create {
            dir: dir.path(),
            name: last,
        });
        if append && adopted && dir.kind(last).ok().flatten() == Some(Kind::File) {
            let file = dir.open_append(last).map_err(io_err(dir.display(last)))?;
            return Staged::new(dir, last.to_string(), file).map_err(io_err(dir.display(last)));
        }
        if adopted {
            // What a cut fetch left under this name is replaced, never written through.
            match dir.kind(last).map_err(io_err(dir.display(last)))? {
                Some(Kind::Dir) => dir.remove_tree(last),
                Some(_) => dir.remove_file(last).map_err(io_err(dir.display(last)))?,
                None => {}
            }
        }
        let file = dir.create_file(last).map_err(io_err(dir.display(last)))?;
        Staged::new(dir, last.to_string(), file).map_err(io_err(dir.display(last)))
    }

    /// Copies the first `len` bytes of the file `name` of the tree in place (`OUT/NAME`) into
    /// `into` (its new staged file), refusing if their SHA-256 is not `digest` (the file
    /// changed since it was offered to the server). Never through a symbolic link.
    pub fn copy_in_place(
        &self,
        name: &str,
        into: &mut Staged,
        len: u64,
        digest: &[u8; 32],
    ) -> Result<(), TransferError> {
        use sha2::{Digest, Sha256};
        use std::io::Read;
        let parts = split(name)?;
        let (last, parent) = parts.split_last().expect("split gives a name");
        let Some(existing) = &self.existing else {
            return Err(TransferError::Refused(format!(
                "{} is gone since the fetch began; fetch the tree again",
                self.root().display()
            )));
        };
        let shown = self.root().join(name);
        let file = walk(existing, parent)
            .and_then(|d| d.open_read(last))
            .map_err(io_err(shown.clone()))?;
        let mut h = Sha256::new();
        let mut left = len;
        let mut buf = vec![0u8; 256 * 1024];
        let mut file = file.take(len);
        while left > 0 {
            let n = file.read(&mut buf).map_err(io_err(shown.clone()))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            into.write_all(&buf[..n]).map_err(io_err(into.path()))?;
            left -= n as u64;
        }
        if left > 0 || <[u8; 32]>::from(h.finalize()) != *digest {
            return Err(TransferError::Refused(format!(
                "{} changed while the fetch resumed; fetch the tree again",
                shown.display()
            )));
        }
        Ok(())
    }

    /// In a tree kept from a cut fetch, removes what the tree does not list (entries the
    /// server no longer has), so that only the signed entries are put in place.
    fn prune_unlisted(&self) -> Result<(), TransferError> {
        let mut walk = walkdir::WalkDir::new(self.stage.path())
            .min_depth(1)
            .follow_links(false)
            .into_iter();
        let mut unlisted = Vec::new();
        while let Some(entry) = walk.next() {
            let entry = entry.map_err(|e| TransferError::Io {
                path: self.stage.path().to_path_buf(),
                source: e
                    .into_io_error()
                    .unwrap_or_else(|| io::Error::other("a loop")),
            })?;
            let rel = entry
                .path()
                .strip_prefix(self.stage.path())
                .ok()
                .and_then(Path::to_str)
                .map(|r| r.replace(std::path::MAIN_SEPARATOR, "/"));
            let listed = rel.as_ref().and_then(|r| self.names.get(r));
            let keep = matches!(
                (
                    listed,
                    entry.file_type().is_dir(),
                    entry.file_type().is_file()
                ),
                (Some(EntryKind::Dir), true, _) | (Some(EntryKind::File), _, true)
            );
            if !keep {
                unlisted.push(entry.path().to_path_buf());
                if entry.file_type().is_dir() {
                    walk.skip_current_dir();
                }
            }
        }
        for p in unlisted {
            let gone = match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p),
                Ok(_) => std::fs::remove_file(&p),
                Err(e) => Err(e),
            };
            gone.map_err(io_err(p))?;
        }
        Ok(())
    }

    /// Puts the verified tree in place with its manifest (`manifest_name` in OUT, written from
    /// `manifest_text`), all or nothing; `entries` are the tree's entries in order.
    pub fn commit(
        mut self,
        entries: &[ManifestEntry],
        manifest_name: &str,
        manifest_text: &[u8],
    ) -> Result<(), TransferError> {
        let _committing = lock(&COMMITTING);
        if self.adopted {
            self.prune_unlisted()?;
        }
        let out = self.out;
        let (m_name, m_file) = out
            .create_temp_file()
            .map_err(io_err(out.path().to_path_buf()))?;
        let mut manifest = Staged::new(out, m_name, m_file).map_err(io_err(out.display("")))?;
        manifest
            .write_all(manifest_text)
            .map_err(io_err(manifest.path()))?;
        manifest.close();
        match self.existing.take() {
            None => self.commit_new(manifest, manifest_name)?,
            Some(existing) => self.commit_merge(&existing, entries, manifest, manifest_name)?,
        }
        self.committed = true;
        Ok(())
    }

    /// The tree root did not exist: rename the staging directory to it, then the manifest.
    fn commit_new(&mut self, manifest: Staged, manifest_name: &str) -> Result<(), TransferError> {
        let out = self.out;
        let root = self.root();
        self.hook.call(LandStep::Rename {
            dir: out.path(),
            name: &self.root_name,
        });
        if !out.still_holds(&self.stage_name, &self.stage) {
            return Err(TransferError::Refused(format!(
                "the staging directory {} was replaced while the tree arrived",
                out.display(&self.stage_name).display()
            )));
        }
        out.rename_noreplace(&self.stage_name, out, &self.root_name)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => TransferError::Refused(format!(
                    "{} appeared while the tree arrived; move it away first",
                    root.display()
                )),
                _ => io_err(root.clone())(e),
            })?;
        if let Err(e) = manifest.persist(manifest_name) {
            // Undo: the tree goes back to its staging name (removed on drop).
            let _ = out.rename(&self.root_name, out, &self.stage_name);
            return Err(io_err(out.display(manifest_name))(e));
        }
        Ok(())
    }

    /// The tree root existed: move every entry into it, undoing everything on a failure.
    fn commit_merge(
        &mut self,
        existing: &Dir,
        entries: &[ManifestEntry],
        manifest: Staged,
        manifest_name: &str,
    ) -> Result<(), TransferError> {
        let out = self.out;
        let (backup_name, backup) = create_locked_temp_dir(out)?;
        let mut done = Vec::new();
        let mut result = entries
            .iter()
            .enumerate()
            .try_for_each(|(i, e)| self.merge_one(existing, &backup, i, e, &mut done));
        if result.is_ok() {
            result = manifest
                .persist(manifest_name)
                .map_err(io_err(out.display(manifest_name)));
        }
        if result.is_err() {
            for step in done.iter().rev() {
                undo(existing, &self.stage, &backup, step);
            }
        }
        out.remove_tree(&backup_name);
        result
    }

    fn merge_one(
        &self,
        existing: &Dir,
        backup: &Dir,
        index: usize,
        e: &ManifestEntry,
        done: &mut Vec<Done>,
    ) -> Result<(), TransferError> {
        let parts = split(&e.path)?;
        let (last, parent) = parts.split_last().expect("split gives a name");
        let target = walk(existing, parent).map_err(io_err(existing.display(&e.path)))?;
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let here = target.kind(last).map_err(io_err(target.display(last)))?;
        match e.kind {
            EntryKind::Dir => match here {
                Some(Kind::Dir) => Ok(()),
                Some(k) => Err(in_place(&target.display(last), k)),
                None => {
                    target
                        .create_child(last)
                        .map_err(io_err(target.display(last)))?;
                    done.push(Done::MadeDir {
                        parent: owned(parent),
                        name: last.to_string(),
                    });
                    Ok(())
                }
            },
            EntryKind::File => {
                let from = walk(&self.stage, parent).map_err(io_err(self.stage.display(last)))?;
                self.hook.call(LandStep::Rename {
                    dir: target.path(),
                    name: last,
                });
                let backup_as = match here {
                    None => None,
                    // A file, or a link (the link itself is replaced, never followed).
                    Some(Kind::File | Kind::Symlink) => {
                        let b = index.to_string();
                        target
                            .rename_noreplace(last, backup, &b)
                            .map_err(io_err(target.display(last)))?;
                        Some(b)
                    }
                    Some(k) => return Err(in_place(&target.display(last), k)),
                };
                if let Err(err) = from.rename_noreplace(last, &target, last) {
                    // Only the backup happened: put the old file back.
                    if let Some(b) = &backup_as {
                        let _ = backup.rename(b, &target, last);
                    }
                    return Err(io_err(target.display(last))(err));
                }
                done.push(Done::Moved {
                    parent: owned(parent),
                    name: last.to_string(),
                    backup: backup_as,
                });
                Ok(())
            }
        }
    }
}

/// Refuses an entry whose place in the existing tree holds something else (checked as the
/// entry arrives, and again at the commit).
fn check_in_the_way(existing: &Dir, parts: &[&str], kind: EntryKind) -> Result<(), TransferError> {
    let (last, parent) = parts.split_last().expect("split gives a name");
    let mut cur = existing
        .try_clone()
        .map_err(io_err(existing.path().into()))?;
    for p in parent {
        match cur.kind(p).map_err(io_err(cur.display(p)))? {
            None => return Ok(()),
            Some(Kind::Dir) => {}
            Some(k) => return Err(in_place(&cur.display(p), k)),
        }
        match cur.open_child(p).map_err(io_err(cur.display(p)))? {
            Some(d) => cur = d,
            None => return Ok(()),
        }
    }
    match (cur.kind(last).map_err(io_err(cur.display(last)))?, kind) {
        (None, _) | (Some(Kind::Dir), EntryKind::Dir) => Ok(()),
        (Some(Kind::File | Kind::Symlink), EntryKind::File) => Ok(()),
        (Some(k), _) => Err(in_place(&cur.display(last), k)),
    }
}

/// Undoes one commit step, best effort.
fn undo(existing: &Dir, stage: &Dir, backup: &Dir, step: &Done) {
    match step {
        Done::MadeDir { parent, name } => {
            let parent: Vec<&str> = parent.iter().map(String::as_str).collect();
            if let Ok(d) = walk(existing, &parent) {
                let _ = d.remove_dir(name);
            }
        }
        Done::Moved {
            parent,
            name,
            backup: b,
        } => {
            let parent: Vec<&str> = parent.iter().map(String::as_str).collect();
            let (Ok(target), Ok(from)) = (walk(existing, &parent), walk(stage, &parent)) else {
                return;
            };
            let _ = target.rename(name, &from, name);
            if let Some(b) = b {
                let _ = backup.rename(b, &target, name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hidden_temporary_names_are_taken_for_staging() {
        assert!(is_temp_name(".0123456789abcdef.minitls-tmp"));
        assert!(!is_temp_name("0123456789abcdef.minitls-tmp"));
        assert!(!is_temp_name(".0123456789abcdeg.minitls-tmp"));
        assert!(!is_temp_name(".0123.minitls-tmp"));
        assert!(!is_temp_name(".0123456789abcdef.minitls-partial"));
    }

    #[test]
    fn a_stale_staging_directory_is_removed_and_one_in_use_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let out = Dir::open(tmp.path()).unwrap();
        let (stale, stale_dir) = out.create_temp_dir().unwrap();
        std::fs::write(tmp.path().join(&stale).join("f"), "left over").unwrap();
        drop(stale_dir);
        let (used, used_dir) = create_locked_temp_dir(&out).unwrap();
        std::fs::create_dir(tmp.path().join("kept")).unwrap();
        assert_eq!(remove_stale_staging(&out), std::slice::from_ref(&stale));
        assert!(!tmp.path().join(&stale).exists());
        assert!(tmp.path().join(&used).is_dir());
        assert!(tmp.path().join("kept").is_dir());
        // Once its holder is gone, it is stale too.
        drop(used_dir);
        assert_eq!(remove_stale_staging(&out), [used]);
    }
}
