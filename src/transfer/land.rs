//! Landing received files on disk, relative to directory handles.
//!
//! Everything a fetch creates, replaces or renames is named relative to a directory it holds
//! open ([`Dir`]), never by a path that is looked up again later: each directory below the
//! one the user named is opened with `O_NOFOLLOW | O_DIRECTORY`, files are created with
//! `O_CREAT | O_EXCL | O_NOFOLLOW`, and renames are `renameat` between two held directories.
//! So a directory that another local user swaps for a symbolic link between two of our steps
//! cannot redirect a write: the write goes to the directory we opened, wherever it has been
//! moved meanwhile (a user who can move a directory could write into it anyway), and never
//! through the link into a place that user could not write. `openat2(RESOLVE_BENEATH)` would
//! give the same for whole paths, but only on Linux 5.6 and later; a walk one component at a
//! time with `O_NOFOLLOW` works on every Unix.
//!
//! Temporary names are short and fixed in length (`.<16 hex>.minitls-tmp`), so they fit
//! wherever the name they stand for fits; names that must be derived from a file's name (the
//! partial file, the sidecar, the manifest) are shortened by [`fit_name`] when they would
//! pass the 255-byte limit of common file systems.
//!
//! `tempfile` is not used here: it creates files by path, and this module must create them
//! relative to a held directory.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

/// The longest file name (in bytes) that common file systems (ext4, xfs, btrfs, tmpfs) accept.
pub const NAME_MAX: usize = 255;
/// Suffix of every temporary file or directory a fetch makes.
pub const TMP_SUFFIX: &str = ".minitls-tmp";
/// Suffix of the hidden file that keeps the verified-so-far part of an interrupted fetch.
pub const PARTIAL_SUFFIX: &str = ".minitls-partial";

/// `prefix + name + suffix` if that fits in [`NAME_MAX`] bytes; otherwise `name` is cut (at a
/// character boundary) and `~` and 16 hex digits of its SHA-256 are put in its place, so the
/// result still fits, is the same every time (a resume finds its partial file again, `verify`
/// finds the sidecar) and differs for names that share their first 200-odd bytes.
pub fn fit_name(prefix: &str, name: &str, suffix: &str) -> String {
    if prefix.len() + name.len() + suffix.len() <= NAME_MAX {
        return format!("{prefix}{name}{suffix}");
    }
    let digest = crate::crypto::sha256(name.as_bytes());
    let tag = crate::sigfile::hex(&digest[..8]);
    let room = NAME_MAX.saturating_sub(prefix.len() + 1 + tag.len() + suffix.len());
    let mut cut = room.min(name.len());
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{prefix}{}~{tag}{suffix}", &name[..cut])
}

/// A fresh temporary name: `.<16 hex>.minitls-tmp` (31 bytes).
pub fn temp_name() -> String {
    let mut tag = [0u8; 8];
    rand::fill(&mut tag[..]);
    format!(".{}{TMP_SUFFIX}", crate::sigfile::hex(&tag))
}

/// What kind of thing a name in a directory is, without following a symbolic link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

impl Kind {
    pub fn describe(self) -> &'static str {
        match self {
            Kind::File => "a file",
            Kind::Dir => "a directory",
            Kind::Symlink => "a symbolic link",
            Kind::Other => "not a regular file or directory",
        }
    }
}

/// A directory held open; every operation is relative to it. `path` is only for messages.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

fn nofollow_dir() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

impl Dir {
    /// Opens the directory the user named (following symbolic links in it: the user chose it).
    pub fn open(path: &Path) -> io::Result<Self> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// Creates the directory the user named (and its parents) if missing, then opens it.
    pub fn create_all(path: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(path)?;
        Self::open(path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The same handle, named `path` from now on (after the directory was renamed).
    pub fn renamed(self, path: PathBuf) -> Self {
        Self { fd: self.fd, path }
    }

    /// The path of `name` in this directory, for messages.
    pub fn display(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Another handle on the same directory.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            fd: self.fd.try_clone()?,
            path: self.path.clone(),
        })
    }

    /// What `name` is here, or `None` if nothing has that name.
    pub fn kind(&self, name: &str) -> io::Result<Option<Kind>> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(
                match FileType::from_raw_mode(st.st_mode as rustix::fs::RawMode) {
                    FileType::RegularFile => Kind::File,
                    FileType::Directory => Kind::Dir,
                    FileType::Symlink => Kind::Symlink,
                    _ => Kind::Other,
                },
            )),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens the subdirectory `name` without following a symbolic link; `None` if missing.
    /// A link or a file in its place is an error of kind `NotADirectory`-like (`Other`).
    pub fn open_child(&self, name: &str) -> io::Result<Option<Dir>> {
        match rustix::fs::openat(&self.fd, name, nofollow_dir(), Mode::empty()) {
            Ok(fd) => Ok(Some(Dir {
                fd,
                path: self.path.join(name),
            })),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates the subdirectory `name` (it must not exist) and opens it.
    pub fn create_child(&self, name: &str) -> io::Result<Dir> {
        rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o777))?;
        self.open_child(name)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "directory vanished"))
    }

    /// Creates a new hidden temporary directory here; returns its name and handle.
    pub fn create_temp_dir(&self) -> io::Result<(String, Dir)> {
        let name = temp_name();
        let dir = self.create_child(&name)?;
        Ok((name, dir))
    }

    /// Creates the new file `name` for writing; an existing name (a link too) is an error.
    pub fn create_file(&self, name: &str) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o666),
        )?;
        Ok(File::from(fd))
    }

    /// Creates a new hidden temporary file here; returns its name and handle.
    pub fn create_temp_file(&self) -> io::Result<(String, File)> {
        let name = temp_name();
        let file = self.create_file(&name)?;
        Ok((name, file))
    }

    /// Opens the existing regular file `name` for reading, never through a link.
    pub fn open_read(&self, name: &str) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(File::from(fd))
    }

    /// Opens the existing regular file `name` to append to it, never through a link.
    pub fn open_append(&self, name: &str) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::WRONLY | OFlags::APPEND | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(File::from(fd))
    }

    /// Removes the file (or link) `name`; a missing name is not an error.
    pub fn remove_file(&self, name: &str) -> io::Result<()> {
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the empty directory `name`.
    pub fn remove_dir(&self, name: &str) -> io::Result<()> {
        rustix::fs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR).map_err(Into::into)
    }

    /// Removes the directory `name` and everything in it, best effort. Symbolic links inside
    /// are removed, never followed (std's `remove_dir_all` guarantees that).
    pub fn remove_tree(&self, name: &str) {
        let _ = std::fs::remove_dir_all(self.path.join(name));
        // Should the name have been swapped for a link meanwhile, the link itself goes.
        let _ = self.remove_file(name);
    }

    /// Renames `from` here to `to` in `dest`, replacing a file that is there.
    pub fn rename(&self, from: &str, dest: &Dir, to: &str) -> io::Result<()> {
        rustix::fs::renameat(&self.fd, from, &dest.fd, to).map_err(Into::into)
    }

    /// Renames `from` here to `to` in `dest`; fails with `AlreadyExists` if `to` exists.
    pub fn rename_noreplace(&self, from: &str, dest: &Dir, to: &str) -> io::Result<()> {
        #[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
        {
            use rustix::fs::RenameFlags;
            match rustix::fs::renameat_with(&self.fd, from, &dest.fd, to, RenameFlags::NOREPLACE) {
                Ok(()) => return Ok(()),
                // A file system without renameat2 flags: check, then rename (a small race).
                Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if dest.kind(to)?.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "destination exists",
            ));
        }
        self.rename(from, dest, to)
    }

    /// True if `name` here is still the directory `dir` (same device and inode).
    pub fn still_holds(&self, name: &str, dir: &Dir) -> bool {
        match (
            rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW),
            rustix::fs::fstat(&dir.fd),
        ) {
            (Ok(a), Ok(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
            _ => false,
        }
    }

    /// The handle, for ioctls on the directory itself.
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Opens `parts` below `base`, one component at a time, never following a link.
pub fn walk(base: &Dir, parts: &[&str]) -> io::Result<Dir> {
    let mut cur = base.try_clone()?;
    for p in parts {
        cur = cur.open_child(p)?.ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("{p}: no such directory"))
        })?;
    }
    Ok(cur)
}

/// A step of landing at which tests may act (rename a directory, plant a link) to prove
/// that what comes next cannot be redirected. Production code never sets a hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LandStep<'a> {
    /// About to create the file `name` in `dir` (a staging directory).
    Create { dir: &'a Path, name: &'a str },
    /// About to rename a verified file to `name` in `dir` (its destination directory).
    Rename { dir: &'a Path, name: &'a str },
}

type HookFn = dyn Fn(LandStep<'_>) + Send + Sync;

/// An optional callback at each [`LandStep`], for tests.
#[derive(Clone, Default)]
pub struct LandHook(Option<std::sync::Arc<HookFn>>);

impl LandHook {
    pub fn new(f: impl Fn(LandStep<'_>) + Send + Sync + 'static) -> Self {
        Self(Some(std::sync::Arc::new(f)))
    }

    pub fn call(&self, step: LandStep<'_>) {
        if let Some(f) = &self.0 {
            f(step);
        }
    }
}

impl std::fmt::Debug for LandHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "LandHook(set)"
        } else {
            "LandHook(none)"
        })
    }
}

/// A file being written under a name in a held directory. Removed on drop unless kept.
pub struct Staged {
    dir: Dir,
    name: String,
    pub(crate) file: Option<File>,
    keep: bool,
}

impl Staged {
    pub fn new(dir: &Dir, name: String, file: File) -> io::Result<Self> {
        Ok(Self {
            dir: dir.try_clone()?,
            name,
            file: Some(file),
            keep: false,
        })
    }

    /// Where it is, for messages.
    pub fn path(&self) -> PathBuf {
        self.dir.display(&self.name)
    }

    pub fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        use std::io::Write;
        self.file
            .as_mut()
            .expect("the file stays open until it is closed or persisted")
            .write_all(data)
    }

    /// Closes the handle (trees hold many staged files, not many descriptors). Like scp and
    /// curl, we do not force data to disk (fsync would cost more than the transfer on many
    /// disks); after a crash, `minitls verify` tells whether a file is whole.
    pub fn close(&mut self) {
        self.file.take();
    }

    /// Whether a drop leaves the file where it is (a network cut keeps a partial file).
    pub fn set_keep(&mut self, keep: bool) {
        self.keep = keep;
    }

    /// Renames it to `to` in the same directory, replacing what is there.
    pub fn persist(mut self, to: &str) -> io::Result<()> {
        self.close();
        self.dir.rename(&self.name, &self.dir, to)?;
        self.keep = true;
        Ok(())
    }

    /// Renames it to `to` in the same directory unless something has that name
    /// (`AlreadyExists`, and the staged file stays staged, removed on drop).
    pub fn persist_noreplace(&mut self, to: &str) -> io::Result<()> {
        self.close();
        self.dir.rename_noreplace(&self.name, &self.dir, to)?;
        self.keep = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        self.file.take();
        if !self.keep {
            let _ = self.dir.remove_file(&self.name);
        }
    }
}

/// Puts a verified file in place, with its signature sidecar beside it: the sidecar is
/// written to a temporary file first, then `staged` is renamed to `name` (over an existing
/// file only with `replace`; otherwise `AlreadyExists`), then the sidecar to `sidecar`,
/// replacing an older one. Both directions land a verified file this way: `fetch` on the
/// client, `push` on the server. On failure nothing new is left but what was already renamed.
pub fn persist_with_sidecar(
    dir: &Dir,
    mut staged: Staged,
    name: &str,
    sidecar: &str,
    sidecar_text: &[u8],
    replace: bool,
) -> io::Result<()> {
    let (tmp, file) = dir.create_temp_file()?;
    let mut sig = Staged::new(dir, tmp, file)?;
    sig.write_all(sidecar_text)?;
    if replace {
        staged.persist(name)?;
    } else {
        staged.persist_noreplace(name)?;
    }
    sig.persist(sidecar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_kept_and_long_ones_are_cut_to_fit_the_same_way_every_time() {
        assert_eq!(
            fit_name(".", "f.txt", PARTIAL_SUFFIX),
            ".f.txt.minitls-partial"
        );
        let long = "n".repeat(250);
        let a = fit_name(".", &long, PARTIAL_SUFFIX);
        assert_eq!(a.len(), NAME_MAX);
        assert_eq!(a, fit_name(".", &long, PARTIAL_SUFFIX));
        assert!(a.starts_with(".nnn") && a.ends_with(PARTIAL_SUFFIX));
        let other = format!("{}m", "n".repeat(249));
        assert_ne!(a, fit_name(".", &other, PARTIAL_SUFFIX));
        // Multi-byte characters are never split.
        let wide = "é".repeat(127);
        let w = fit_name("", &wide, ".minitls-sig");
        assert!(w.len() <= NAME_MAX);
        assert!(temp_name().len() < 32);
    }

    #[test]
    fn a_child_that_is_a_symlink_is_never_opened_or_written_through() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), t.path().join("link")).unwrap();
        let d = Dir::open(t.path()).unwrap();
        assert_eq!(d.kind("link").unwrap(), Some(Kind::Symlink));
        assert!(d.open_child("link").is_err());
        assert!(d.create_file("link").is_err());
        std::os::unix::fs::symlink(outside.path().join("f"), t.path().join("flink")).unwrap();
        assert!(d.create_file("flink").is_err());
        assert!(d.open_append("flink").is_err());
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
    }

    #[test]
    fn rename_noreplace_refuses_an_existing_name() {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::open(t.path()).unwrap();
        drop(d.create_file("a").unwrap());
        drop(d.create_file("b").unwrap());
        let e = d.rename_noreplace("a", &d, "b").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        d.rename_noreplace("a", &d, "c").unwrap();
        assert_eq!(d.kind("c").unwrap(), Some(Kind::File));
    }
}
