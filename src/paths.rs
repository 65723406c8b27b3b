//! Path rules for names that cross the network, on both sides.
//!
//! A peer-supplied path is a `/`-separated relative path. Only normal components are
//! accepted; everything else is refused with an error rather than silently cleaned up.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::wire::MAX_PATH_LEN;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PathError {
    #[error("path is empty")]
    Empty,
    #[error("path is longer than {MAX_PATH_LEN} bytes")]
    TooLong,
    #[error("absolute paths are refused")]
    Absolute,
    #[error("'..' components are refused")]
    ParentDir,
    #[error("'.' and empty components are refused")]
    EmptyComponent,
    #[error("NUL, control characters and backslashes are refused in names")]
    BadCharacter,
    #[error("a drive or device prefix is refused")]
    DrivePrefix,
    #[error("path leads outside the served directory")]
    OutsideRoot,
}

/// Splits and checks a peer-supplied relative path. A single trailing `/` is tolerated
/// (`ls dir/`); `""` and `"."` mean the root and give an empty list only if `allow_root`.
pub fn parse_relative(path: &str, allow_root: bool) -> Result<Vec<&str>, PathError> {
    if path.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    if allow_root && (path.is_empty() || path == ".") {
        return Ok(Vec::new());
    }
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    if path.starts_with('/') {
        return Err(PathError::Absolute);
    }
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    let mut parts = Vec::new();
    for c in trimmed.split('/') {
        check_component(c)?;
        parts.push(c);
    }
    Ok(parts)
}

/// Checks one name component (also used for each component of a name a server sends).
pub fn check_component(c: &str) -> Result<(), PathError> {
    match c {
        "" | "." => return Err(PathError::EmptyComponent),
        ".." => return Err(PathError::ParentDir),
        _ => {}
    }
    if c.chars()
        .any(|ch| ch == '\0' || ch == '\\' || ch.is_control())
    {
        return Err(PathError::BadCharacter);
    }
    // "C:" style prefixes mean something on Windows; refuse them everywhere for one rule.
    let b = c.as_bytes();
    if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
        return Err(PathError::DrivePrefix);
    }
    Ok(())
}

/// Whether `name` is one of minitls's own staging files (`.NAME.minitls-partial`,
/// `.XXXX.minitls-tmp`): half-received data that is never served or listed.
pub fn is_staging_name(name: &str) -> bool {
    use crate::transfer::land::{PARTIAL_SUFFIX, TMP_SUFFIX};
    name.starts_with('.') && (name.ends_with(PARTIAL_SUFFIX) || name.ends_with(TMP_SUFFIX))
}

/// The directory a server serves, canonicalised once at start, and what it never serves.
#[derive(Clone, Debug)]
pub struct ServeRoot {
    root: PathBuf,
    /// Canonical paths never served or listed, nor anything below them (the server's own
    /// secrets, should they appear under the root after the start-up check).
    hidden: Vec<PathBuf>,
}

impl ServeRoot {
    pub fn new(dir: &Path) -> std::io::Result<Self> {
        Ok(Self {
            root: dir.canonicalize()?,
            hidden: Vec::new(),
        })
    }

    /// Never serves or lists `path` (or anything below it), however it is reached.
    pub fn hide(&mut self, path: &Path) {
        let p = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        self.hidden.push(p);
    }

    /// True for a canonical path that is never served: a staging file, or a hidden path.
    pub fn hides(&self, canonical: &Path) -> bool {
        canonical
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(is_staging_name)
            || self.hidden.iter().any(|h| canonical.starts_with(h))
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Maps a requested path to a file system path under the root. Symlinks are resolved and
    /// the result must still be under the root; staging files and hidden paths are "not
    /// found". Returns the canonical path and the request's
    /// normalised relative form. `NotFound` I/O errors pass through.
    pub fn resolve(&self, requested: &str) -> Result<(PathBuf, String), ResolveError> {
        let parts = parse_relative(requested, true)?;
        let not_found = || ResolveError::Io(std::io::ErrorKind::NotFound.into());
        if parts.iter().any(|c| is_staging_name(c)) {
            return Err(not_found());
        }
        let mut p = self.root.clone();
        for c in &parts {
            p.push(c);
        }
        let canonical = p.canonicalize().map_err(ResolveError::Io)?;
        if !canonical.starts_with(&self.root) {
            return Err(PathError::OutsideRoot.into());
        }
        // Answered as if absent: a client learns nothing of what is kept from it.
        if self.hides(&canonical) {
            return Err(not_found());
        }
        Ok((canonical, parts.join("/")))
    }
}

#[derive(Debug, Error)]
pub enum ResolveError {
    #[error("{0}")]
    Refused(#[from] PathError),
    #[error("{0}")]
    Io(std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_and_odd_components_are_refused() {
        assert_eq!(parse_relative("../x", false), Err(PathError::ParentDir));
        assert_eq!(
            parse_relative("a/../../x", false),
            Err(PathError::ParentDir)
        );
        assert_eq!(
            parse_relative("/etc/passwd", false),
            Err(PathError::Absolute)
        );
        assert_eq!(
            parse_relative("a//b", false),
            Err(PathError::EmptyComponent)
        );
        assert_eq!(
            parse_relative("a/./b", false),
            Err(PathError::EmptyComponent)
        );
        assert_eq!(parse_relative("a\0b", false), Err(PathError::BadCharacter));
        assert_eq!(
            parse_relative("a\\..\\b", false),
            Err(PathError::BadCharacter)
        );
        assert_eq!(parse_relative("C:x", false), Err(PathError::DrivePrefix));
        assert_eq!(parse_relative("", false), Err(PathError::Empty));
        assert_eq!(
            parse_relative(&"a".repeat(MAX_PATH_LEN + 1), false),
            Err(PathError::TooLong)
        );
    }

    #[test]
    fn normal_paths_are_accepted() {
        assert_eq!(
            parse_relative("a/b c/é.txt", false).unwrap(),
            ["a", "b c", "é.txt"]
        );
        assert_eq!(parse_relative("dir/", false).unwrap(), ["dir"]);
        assert!(parse_relative("", true).unwrap().is_empty());
        assert!(parse_relative(".", true).unwrap().is_empty());
        assert_eq!(parse_relative("..hidden", false).unwrap(), ["..hidden"]);
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_out_of_the_root_are_refused_and_inside_ones_work() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(t.path().join("secret"), b"s").unwrap();
        std::fs::write(root.join("ok"), b"o").unwrap();
        std::os::unix::fs::symlink(t.path().join("secret"), root.join("out")).unwrap();
        std::os::unix::fs::symlink(t.path(), root.join("outdir")).unwrap();
        std::os::unix::fs::symlink(root.join("ok"), root.join("in")).unwrap();
        let r = ServeRoot::new(&root).unwrap();
        assert!(matches!(
            r.resolve("out"),
            Err(ResolveError::Refused(PathError::OutsideRoot))
        ));
        assert!(matches!(
            r.resolve("outdir/secret"),
            Err(ResolveError::Refused(PathError::OutsideRoot))
        ));
        assert_eq!(r.resolve("in").unwrap().1, "in");
        assert!(matches!(r.resolve("missing"), Err(ResolveError::Io(_))));
    }
}
