//! Requests and signed file streams over an established [`Channel`].
//!
//! Server: answers `Get` with `FileStart`, `Data`..., `FileEnd` (a signed statement binding
//! path, size and SHA-256), and `List` with `Listing`... `ListEnd`; anything it refuses is an
//! `Error` message. Client: streams into a temporary file in the target directory while
//! hashing, checks the statement and its signature, writes the signature sidecar, and only then
//! renames the file into place. On any failure nothing is left at the final path.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::conn::{Channel, ConnError, Transport};
use crate::crypto::{self, FILE_SIGNATURE_CONTEXT};
use crate::handshake::LocalIdentity;
use crate::paths::{self, PathError, ResolveError, ServeRoot};
use crate::pki;
use crate::sigfile::{self, SignedStatement};
use crate::wire::{
    AppType, Codec, EntryKind, ErrorCode, ErrorMsg, FileEnd, FileStart, FileStatement, ListEntry,
    Listing, MAX_LIST_ENTRIES_PER_MSG, MAX_RECORD_PAYLOAD, Request, RequestKind,
};

/// A hostile server cannot make a client hold more listing entries than this.
pub const MAX_LIST_ENTRIES_TOTAL: usize = 1_000_000;

// ---------------------------------------------------------------------------------------------
// Server side
// ---------------------------------------------------------------------------------------------

/// Per-connection server settings.
pub struct ServeOptions<'a> {
    pub root: &'a ServeRoot,
    pub identity: &'a LocalIdentity,
    /// A connection with no complete request within this time is closed.
    pub idle_timeout: Duration,
    pub log: &'a (dyn Fn(&str) + Sync),
}

/// Serves requests on an established channel until the client's Close.
pub fn serve_requests<S: Transport>(
    chan: &mut Channel<S>,
    opts: &ServeOptions<'_>,
) -> Result<(), ConnError> {
    loop {
        chan.set_deadline(Some(Instant::now() + opts.idle_timeout))?;
        let (typ, payload) = chan.recv()?;
        match typ {
            AppType::Close => {
                chan.send_close()?;
                return Ok(());
            }
            AppType::Request => {
                let req = Request::decode(payload)?;
                chan.set_deadline(None)?;
                match req.kind {
                    RequestKind::Get => send_file(chan, opts, &req)?,
                    RequestKind::List => send_listing(chan, opts, &req)?,
                }
                chan.flush()?;
            }
            other => {
                return Err(ConnError::Protocol(format!(
                    "client sent {other:?} instead of a request"
                )));
            }
        }
    }
}

fn send_error<S: Transport>(
    chan: &mut Channel<S>,
    code: ErrorCode,
    text: String,
) -> Result<(), ConnError> {
    chan.send_msg(AppType::Error, &ErrorMsg { code, text })
}

/// Resolves a request path, answering the client with an error message when refused.
fn resolve_or_refuse<S: Transport>(
    chan: &mut Channel<S>,
    opts: &ServeOptions<'_>,
    path: &str,
) -> Result<Option<(PathBuf, String, fs::Metadata)>, ConnError> {
    let (code, text) = match opts.root.resolve(path) {
        Ok((p, rel)) => match fs::metadata(&p) {
            Ok(m) => return Ok(Some((p, rel, m))),
            Err(e) => (ErrorCode::ReadFailed, format!("{path}: {e}")),
        },
        Err(ResolveError::Refused(e)) => (ErrorCode::PathRefused, format!("{path}: {e}")),
        Err(ResolveError::Io(e)) if e.kind() == io::ErrorKind::NotFound => (
            ErrorCode::NotFound,
            format!("{path}: no such file or directory"),
        ),
        Err(ResolveError::Io(e)) => (ErrorCode::ReadFailed, format!("{path}: {e}")),
    };
    (opts.log)(&format!("refused '{path}': {text}"));
    send_error(chan, code, text)?;
    Ok(None)
}

fn mtime(m: &fs::Metadata) -> i64 {
    m.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64)
}

fn send_file<S: Transport>(
    chan: &mut Channel<S>,
    opts: &ServeOptions<'_>,
    req: &Request,
) -> Result<(), ConnError> {
    let Some((path, rel, meta)) = resolve_or_refuse(chan, opts, &req.path)? else {
        return Ok(());
    };
    if meta.is_dir() {
        return send_error(
            chan,
            ErrorCode::IsDirectory,
            format!(
                "'{}' is a directory; use -r to fetch it recursively",
                req.path
            ),
        );
    }
    if !meta.is_file() {
        return send_error(
            chan,
            ErrorCode::BadRequest,
            format!("'{}' is not a regular file", req.path),
        );
    }
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) => return send_error(chan, ErrorCode::ReadFailed, format!("{}: {e}", req.path)),
    };
    let size = meta.len();
    let offset = req.offset.min(size);
    chan.send_msg(
        AppType::FileStart,
        &FileStart {
            path: rel.clone(),
            size,
            mtime: mtime(&meta),
            offset,
        },
    )?;
    // Hash everything (the signature covers the whole file), send from `offset` on. Read at
    // most `size` bytes so a file that grows while we send stays consistent with FileStart.
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; MAX_RECORD_PAYLOAD];
    let mut pos = 0u64;
    while pos < size {
        let want = (size - pos).min(buf.len() as u64) as usize;
        let n = match file.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return send_error(
                    chan,
                    ErrorCode::ReadFailed,
                    format!("{}: read failed: {e}", req.path),
                );
            }
        };
        hasher.update(&buf[..n]);
        let end = pos + n as u64;
        if end > offset {
            let skip = offset.saturating_sub(pos) as usize;
            chan.send(AppType::Data, &buf[skip..n])?;
        }
        pos = end;
    }
    let statement = FileStatement {
        path: rel,
        size: pos,
        sha256: hasher.finalize().into(),
        signed_at: pki::now_unix(),
    };
    let signature = crypto::sign(
        opts.identity.signer(),
        FILE_SIGNATURE_CONTEXT,
        &sigfile::statement_digest(&statement),
    )
    .map_err(|e| ConnError::Protocol(format!("signing failed: {e}")))?;
    (opts.log)(&format!(
        "sent '{}' ({} bytes, signed)",
        statement.path, statement.size
    ));
    chan.send_msg(
        AppType::FileEnd,
        &FileEnd {
            statement,
            signature,
        },
    )
}

fn send_listing<S: Transport>(
    chan: &mut Channel<S>,
    opts: &ServeOptions<'_>,
    req: &Request,
) -> Result<(), ConnError> {
    let Some((path, rel, meta)) = resolve_or_refuse(chan, opts, &req.path)? else {
        return Ok(());
    };
    let mut entries = Vec::new();
    if meta.is_dir() {
        let walker = walkdir::WalkDir::new(&path)
            .min_depth(1)
            .max_depth(if req.recursive { usize::MAX } else { 1 })
            .follow_links(false)
            .sort_by_file_name();
        for entry in walker.into_iter().filter_map(Result::ok) {
            let Ok(sub) = entry.path().strip_prefix(&path) else {
                continue;
            };
            let Some(sub) = sub.to_str() else {
                continue; // not UTF-8: cannot be named on the wire
            };
            let full = if rel.is_empty() {
                sub.to_string()
            } else {
                format!("{rel}/{sub}")
            };
            // Symlinks are listed as what they point to, and only if that stays in the root.
            let Ok((_, _)) = opts.root.resolve(&full) else {
                continue;
            };
            let Ok(m) = fs::metadata(entry.path()) else {
                continue;
            };
            entries.push(list_entry(full, &m));
        }
    } else {
        entries.push(list_entry(rel, &meta));
    }
    for chunk in entries.chunks(MAX_LIST_ENTRIES_PER_MSG) {
        let msg = Listing {
            entries: chunk.to_vec(),
        };
        // A batch of long names could exceed one record: split further if it does.
        if msg.to_bytes().len() <= MAX_RECORD_PAYLOAD {
            chan.send_msg(AppType::Listing, &msg)?;
        } else {
            for e in chunk {
                chan.send_msg(
                    AppType::Listing,
                    &Listing {
                        entries: vec![e.clone()],
                    },
                )?;
            }
        }
    }
    chan.send(AppType::ListEnd, &[])
}

fn list_entry(path: String, m: &fs::Metadata) -> ListEntry {
    ListEntry {
        kind: if m.is_dir() {
            EntryKind::Dir
        } else {
            EntryKind::File
        },
        size: if m.is_dir() { 0 } else { m.len() },
        mtime: mtime(m),
        path,
    }
}

// ---------------------------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------------------------

/// Why a fetch or listing failed on the client.
#[derive(Debug, Error)]
pub enum TransferError {
    #[error("{0}")]
    Conn(#[from] ConnError),
    #[error("server refused: {text}")]
    Remote { code: ErrorCode, text: String },
    #[error("'{path}' is not a valid remote path: {source}")]
    BadRequestPath {
        path: String,
        #[source]
        source: PathError,
    },
    #[error("server sent an unsafe name '{name}': {source}")]
    UnsafeName {
        name: String,
        #[source]
        source: PathError,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("integrity check failed: {0}; nothing was written")]
    Integrity(String),
    #[error("protocol violation by the server: {0}")]
    Protocol(String),
}

/// Receives progress of a transfer (the CLI draws bars; the library stays quiet).
pub trait Progress {
    fn begin(&mut self, _name: &str, _total: u64) {}
    fn advance(&mut self, _bytes: u64) {}
    fn end(&mut self) {}
}

/// Progress that shows nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

/// A file that arrived, verified and in place.
#[derive(Debug)]
pub struct Fetched {
    pub path: PathBuf,
    pub signature_path: PathBuf,
    pub size: u64,
    pub sha256: [u8; 32],
}

/// A temporary file that is removed unless `persist` renames it into place.
struct TempFile {
    path: PathBuf,
    file: Option<File>,
}

impl TempFile {
    fn create(dir: &Path, name: &str) -> Result<Self, TransferError> {
        let mut tag = [0u8; 8];
        rand::fill(&mut tag[..]);
        let path = dir.join(format!(".{name}.{}.minitls-tmp", sigfile::hex(&tag)));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| TransferError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(Self {
            path,
            file: Some(file),
        })
    }

    fn io_err(&self, source: io::Error) -> TransferError {
        TransferError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn write_all(&mut self, data: &[u8]) -> Result<(), TransferError> {
        let f = self
            .file
            .as_mut()
            .expect("the file is open until persist or drop");
        f.write_all(data).map_err(|e| self.io_err(e))
    }

    /// Flushes to disk and renames over `dest`.
    fn persist(mut self, dest: &Path) -> Result<(), TransferError> {
        let f = self
            .file
            .take()
            .expect("the file is open until persist or drop");
        f.sync_all().map_err(|e| self.io_err(e))?;
        drop(f);
        fs::rename(&self.path, dest).map_err(|e| self.io_err(e))?;
        self.path = PathBuf::new();
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        self.file.take();
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn expect_error<T>(typ: AppType, payload: &[u8], waiting_for: &str) -> Result<T, TransferError> {
    if typ == AppType::Error {
        let e = ErrorMsg::decode(payload).map_err(ConnError::from)?;
        return Err(TransferError::Remote {
            code: e.code,
            text: e.text,
        });
    }
    Err(TransferError::Protocol(format!(
        "got {typ:?} while waiting for {waiting_for}"
    )))
}

/// Fetches one file into `out_dir` under its last path component.
pub fn fetch_file<S: Transport>(
    chan: &mut Channel<S>,
    remote: &str,
    out_dir: &Path,
    progress: &mut dyn Progress,
) -> Result<Fetched, TransferError> {
    let parts =
        paths::parse_relative(remote, false).map_err(|source| TransferError::BadRequestPath {
            path: remote.to_string(),
            source,
        })?;
    let requested = parts.join("/");
    let name = parts
        .last()
        .expect("parse_relative(.., false) returns at least one component")
        .to_string();
    chan.send_msg(
        AppType::Request,
        &Request {
            kind: RequestKind::Get,
            recursive: false,
            offset: 0,
            prefix_sha256: [0; 32],
            path: requested.clone(),
        },
    )?;
    chan.flush()?;

    let (typ, payload) = chan.recv()?;
    if typ != AppType::FileStart {
        return expect_error(typ, payload, "the file");
    }
    let start = FileStart::decode(payload).map_err(ConnError::from)?;
    // The server must answer with the file we asked for, from the beginning.
    if start.path != requested || start.offset != 0 {
        return Err(TransferError::Protocol(format!(
            "asked for '{requested}' from offset 0, server sent '{}' from offset {}",
            start.path, start.offset
        )));
    }
    fs::create_dir_all(out_dir).map_err(|source| TransferError::Io {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let dest = out_dir.join(&name);
    let mut tmp = TempFile::create(out_dir, &name)?;
    let mut hasher = Sha256::new();
    let mut received = 0u64;
    progress.begin(&name, start.size);
    let end = loop {
        let (typ, payload) = chan.recv()?;
        match typ {
            AppType::Data => {
                received += payload.len() as u64;
                if received > start.size {
                    return Err(TransferError::Integrity(format!(
                        "server sent more than the announced {} bytes",
                        start.size
                    )));
                }
                hasher.update(payload);
                tmp.write_all(payload)?;
                progress.advance(payload.len() as u64);
            }
            AppType::FileEnd => break FileEnd::decode(payload).map_err(ConnError::from)?,
            _ => return expect_error(typ, payload, "file data"),
        }
    };
    progress.end();
    let digest: [u8; 32] = hasher.finalize().into();
    let st = &end.statement;
    // 1. The statement must describe exactly what we received...
    if st.path != requested {
        return Err(TransferError::Integrity(format!(
            "signed path '{}' is not the requested '{requested}'",
            st.path
        )));
    }
    if st.size != received {
        return Err(TransferError::Integrity(format!(
            "received {received} bytes but the server signed {}",
            st.size
        )));
    }
    if st.sha256 != digest {
        return Err(TransferError::Integrity(
            "SHA-256 of the received data does not match the signed digest".into(),
        ));
    }
    // 2. ...and be signed by the server we authenticated in the handshake.
    if !crypto::verify(
        &chan.peer().public_key,
        FILE_SIGNATURE_CONTEXT,
        &sigfile::statement_digest(st),
        &end.signature,
    ) {
        return Err(TransferError::Integrity(
            "the server's signature over the file does not verify".into(),
        ));
    }
    // 3. Keep the signature for `minitls verify`, then move the file into place.
    let signed = SignedStatement {
        statement: end.statement.clone(),
        signature: end.signature,
        signer_der: chan.peer_der().to_vec(),
    };
    let sig_dest = sigfile::sidecar_path(&dest);
    let mut sig_tmp = TempFile::create(out_dir, &format!("{name}{}", sigfile::SIG_SUFFIX))?;
    sig_tmp.write_all(signed.to_text().as_bytes())?;
    sig_tmp.persist(&sig_dest)?;
    tmp.persist(&dest)?;
    Ok(Fetched {
        path: dest,
        signature_path: sig_dest,
        size: received,
        sha256: digest,
    })
}

/// Lists a remote path.
pub fn list<S: Transport>(
    chan: &mut Channel<S>,
    remote: &str,
    recursive: bool,
) -> Result<Vec<ListEntry>, TransferError> {
    let parts =
        paths::parse_relative(remote, true).map_err(|source| TransferError::BadRequestPath {
            path: remote.to_string(),
            source,
        })?;
    chan.send_msg(
        AppType::Request,
        &Request {
            kind: RequestKind::List,
            recursive,
            offset: 0,
            prefix_sha256: [0; 32],
            path: parts.join("/"),
        },
    )?;
    chan.flush()?;
    let mut entries = Vec::new();
    loop {
        let (typ, payload) = chan.recv()?;
        match typ {
            AppType::Listing => {
                let l = Listing::decode(payload).map_err(ConnError::from)?;
                if entries.len() + l.entries.len() > MAX_LIST_ENTRIES_TOTAL {
                    return Err(TransferError::Protocol(format!(
                        "listing has more than {MAX_LIST_ENTRIES_TOTAL} entries"
                    )));
                }
                for e in &l.entries {
                    paths::parse_relative(&e.path, false).map_err(|source| {
                        TransferError::UnsafeName {
                            name: e.path.clone(),
                            source,
                        }
                    })?;
                }
                entries.extend(l.entries);
            }
            AppType::ListEnd => return Ok(entries),
            _ => return expect_error(typ, payload, "the listing"),
        }
    }
}

/// Ends the session: our Close, then the server's.
pub fn close<S: Transport>(chan: &mut Channel<S>) -> Result<(), TransferError> {
    chan.send_close()?;
    match chan.recv()? {
        (AppType::Close, _) => Ok(()),
        (typ, _) => Err(TransferError::Protocol(format!(
            "got {typ:?} instead of the server's Close"
        ))),
    }
}
