//! The client's side of `push`: uploads files and trees, each file signed with the client's own
//! key, so that the server can prove later which client stored it.
//!
//! Per file: `Put` (path, size, force) and wait for `PutReady` (the server refuses before any
//! data flows: no write grant, too large, exists), then the data as `Data` records, hashed
//! while it is read, then `FileEnd` with the statement (path, size, SHA-256, time) signed under
//! [`UPLOAD_SIGNATURE_CONTEXT`], and wait for `PutDone` with the server's digest of what it
//! stored. A directory is one `Put` answered by `PutDone`. A tree is pushed file by file: each
//! file is in place and signed on the server, or not there at all; the first refusal stops
//! the push.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::client::remote_or_protocol;
use super::server::{mtime, stream_file};
use super::{Progress, TransferError};
use crate::conn::{Channel, Transport};
use crate::crypto::{self, UPLOAD_SIGNATURE_CONTEXT};
use crate::handshake::LocalIdentity;
use crate::paths;
use crate::pki;
use crate::sigfile;
use crate::wire::{AppMessage, EntryKind, FileEnd, FileStatement, PutStart};

/// How to push.
#[derive(Clone, Copy, Debug, Default)]
pub struct PushOptions {
    /// Upload directories as trees (`-r`).
    pub recursive: bool,
    /// Replace files that exist on the server (`--force`).
    pub force: bool,
}

/// What one `push` of a local path stored.
#[derive(Debug, Default)]
pub struct Pushed {
    /// Where it went on the server (relative to the served root).
    pub remote: String,
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    /// For a single file: the SHA-256 the client signed and the server confirmed.
    pub sha256: Option<[u8; 32]>,
    /// Local entries not uploaded (symbolic links, sockets...), with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> TransferError + '_ {
    move |source| TransferError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Joins a canonical remote directory (`""` = the root) and a relative name.
fn remote_join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Uploads `local` (a file, or with `recursive` a directory) into `remote_dir` on the server:
/// `a/b.txt` becomes `REMOTE_DIR/b.txt`, a directory `a/d` becomes `REMOTE_DIR/d/...`.
pub fn push<S: Transport>(
    chan: &mut Channel<S>,
    identity: &LocalIdentity,
    local: &Path,
    remote_dir: &str,
    opts: PushOptions,
    progress: &mut dyn Progress,
) -> Result<Pushed, TransferError> {
    let dir = paths::parse_relative(remote_dir, true)
        .map_err(|source| TransferError::BadRequestPath {
            path: remote_dir.to_string(),
            source,
        })?
        .join("/");
    let name = local
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| paths::check_component(n).is_ok())
        .ok_or_else(|| {
            TransferError::Refused(format!(
                "{}: name a file or directory with a plain UTF-8 name",
                local.display()
            ))
        })?;
    let remote = remote_join(&dir, name);
    // The path the user named is followed if it is a link (as scp and cp do); links inside a
    // tree are not.
    let meta = std::fs::metadata(local).map_err(io_err(local))?;
    let mut pushed = Pushed {
        remote: remote.clone(),
        ..Default::default()
    };
    if meta.is_dir() {
        if !opts.recursive {
            return Err(TransferError::Refused(format!(
                "{} is a directory; use -r to upload it and everything under it",
                local.display()
            )));
        }
        push_tree(chan, identity, local, &remote, opts, progress, &mut pushed)?;
    } else if meta.is_file() {
        let file = File::open(local).map_err(io_err(local))?;
        progress.begin(name, meta.len());
        let sha256 = push_file(chan, identity, file, local, &remote, opts.force, progress);
        progress.end();
        let sha256 = sha256?;
        pushed.files = 1;
        pushed.bytes = meta.len();
        pushed.sha256 = Some(sha256);
    } else {
        return Err(TransferError::Refused(format!(
            "{} is not a regular file or directory",
            local.display()
        )));
    }
    Ok(pushed)
}

/// Waits for the server's answer to a `Put` or a `FileEnd`.
fn expect_reply<S: Transport>(
    chan: &mut Channel<S>,
    waiting_for: &str,
) -> Result<AppMessage<'static>, TransferError> {
    match chan.recv_app()? {
        AppMessage::PutReady => Ok(AppMessage::PutReady),
        AppMessage::PutDone(d) => Ok(AppMessage::PutDone(d)),
        other => remote_or_protocol(other, waiting_for),
    }
}

fn push_dir<S: Transport>(chan: &mut Channel<S>, remote: &str) -> Result<(), TransferError> {
    chan.send_app(&AppMessage::Put(PutStart {
        kind: EntryKind::Dir,
        force: false,
        path: remote.to_string(),
        size: 0,
        mtime: 0,
    }))?;
    chan.flush()?;
    match expect_reply(chan, "the directory to be made")? {
        AppMessage::PutDone(_) => Ok(()),
        _ => Err(TransferError::Protocol(
            "server answered a directory with PutReady".into(),
        )),
    }
}

/// Uploads one open file as `remote`; returns the SHA-256 signed and confirmed.
fn push_file<S: Transport>(
    chan: &mut Channel<S>,
    identity: &LocalIdentity,
    mut file: File,
    local: &Path,
    remote: &str,
    force: bool,
    progress: &mut dyn Progress,
) -> Result<[u8; 32], TransferError> {
    // The size and time of the file we opened, not of whatever the name leads to now.
    let meta = file.metadata().map_err(io_err(local))?;
    let size = meta.len();
    chan.send_app(&AppMessage::Put(PutStart {
        kind: EntryKind::File,
        force,
        path: remote.to_string(),
        size,
        mtime: mtime(&meta),
    }))?;
    chan.flush()?;
    match expect_reply(chan, "the server to accept the upload")? {
        AppMessage::PutReady => {}
        _ => {
            return Err(TransferError::Protocol(
                "server answered an upload with PutDone before any data".into(),
            ));
        }
    }
    let mut hasher = Sha256::new();
    let sent = stream_file(chan, &mut file, 0, size, Some(&mut hasher), progress);
    // A read error or a file that shrank still ends the upload with an honest statement (the
    // server then refuses it: it does not match what was announced), so the session stays in
    // step; the local error is what the user is told.
    let (sent, local_problem) = match sent? {
        Ok(n) if n == size => (n, None),
        Ok(n) => (
            n,
            Some(io::Error::other(format!(
                "the file shrank from {size} to {n} bytes while it was being uploaded"
            ))),
        ),
        Err(e) => (0, Some(e)),
    };
    let statement = FileStatement {
        path: remote.to_string(),
        size: sent,
        sha256: hasher.finalize().into(),
        signed_at: pki::now_unix(),
    };
    let signature = crypto::sign(
        identity.signer(),
        UPLOAD_SIGNATURE_CONTEXT,
        &sigfile::statement_digest(&statement),
    )
    .map_err(|e| TransferError::Protocol(format!("signing the upload failed: {e}")))?;
    let sha256 = statement.sha256;
    chan.send_app(&AppMessage::FileEnd(FileEnd {
        statement,
        signature,
    }))?;
    chan.flush()?;
    let reply = expect_reply(chan, "the server to store the upload");
    if let Some(e) = local_problem {
        return Err(io_err(local)(e));
    }
    match reply? {
        AppMessage::PutDone(d) if d.sha256 == sha256 => Ok(sha256),
        AppMessage::PutDone(_) => Err(TransferError::Integrity(format!(
            "the server's digest of '{remote}' is not the one we signed"
        ))),
        _ => Err(TransferError::Protocol(
            "server answered the end of an upload with PutReady".into(),
        )),
    }
}

/// One entry of a local tree, planned before anything is sent.
enum Planned {
    Dir(String),
    File(String, PathBuf),
}

/// Uploads the directory `local` as `remote` with everything under it (sorted by name, links
/// not followed). The tree is walked first, so that one progress bar covers it (bytes, and
/// files done of all); directories are made before what they contain.
fn push_tree<S: Transport>(
    chan: &mut Channel<S>,
    identity: &LocalIdentity,
    local: &Path,
    remote: &str,
    opts: PushOptions,
    progress: &mut dyn Progress,
    pushed: &mut Pushed,
) -> Result<(), TransferError> {
    let mut planned = Vec::new();
    let (mut total_files, mut total_bytes) = (0u64, 0u64);
    let walker = walkdir::WalkDir::new(local)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name();
    for entry in walker {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(local).to_path_buf();
            let source = e
                .into_io_error()
                .unwrap_or_else(|| io::Error::other("file system loop"));
            TransferError::Io { path, source }
        })?;
        let sub = entry
            .path()
            .strip_prefix(local)
            .expect("walkdir yields paths under its root");
        let Some(rel) = sub
            .to_str()
            .map(|s| s.replace(std::path::MAIN_SEPARATOR, "/"))
        else {
            pushed
                .skipped
                .push((entry.path().to_path_buf(), "name is not UTF-8".into()));
            continue;
        };
        if let Err(e) = paths::parse_relative(&rel, false) {
            pushed
                .skipped
                .push((entry.path().to_path_buf(), format!("unusable name: {e}")));
            continue;
        }
        let ft = entry.file_type();
        if ft.is_dir() {
            planned.push(Planned::Dir(rel));
        } else if ft.is_file() {
            total_files += 1;
            total_bytes += entry.metadata().map_or(0, |m| m.len());
            planned.push(Planned::File(rel, entry.path().to_path_buf()));
        } else if ft.is_symlink() {
            pushed.skipped.push((
                entry.path().to_path_buf(),
                "symbolic link, not followed".into(),
            ));
        } else {
            pushed
                .skipped
                .push((entry.path().to_path_buf(), "not a regular file".into()));
        }
    }
    let name = local
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    progress.begin(&name, total_bytes);
    let result = push_planned(
        chan,
        identity,
        remote,
        planned,
        opts,
        progress,
        pushed,
        total_files,
    );
    progress.end();
    result
}

#[allow(clippy::too_many_arguments)]
fn push_planned<S: Transport>(
    chan: &mut Channel<S>,
    identity: &LocalIdentity,
    remote: &str,
    planned: Vec<Planned>,
    opts: PushOptions,
    progress: &mut dyn Progress,
    pushed: &mut Pushed,
    total_files: u64,
) -> Result<(), TransferError> {
    push_dir(chan, remote)?;
    pushed.dirs += 1;
    for p in planned {
        match p {
            Planned::Dir(rel) => {
                push_dir(chan, &remote_join(remote, &rel))?;
                pushed.dirs += 1;
            }
            Planned::File(rel, path) => {
                let file = File::open(&path).map_err(io_err(&path))?;
                let size = file.metadata().map_err(io_err(&path))?.len();
                let target = remote_join(remote, &rel);
                push_file(chan, identity, file, &path, &target, opts.force, progress)?;
                pushed.files += 1;
                pushed.bytes += size;
                progress.file_done(pushed.files, total_files);
            }
        }
    }
    Ok(())
}
