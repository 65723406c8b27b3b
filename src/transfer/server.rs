//! The server's side of requests: single files (with resume), directory trees, listings.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::cache::{FileVersion, SignedEntry, StatementCache};
use super::plain_io;
use crate::conn::{Channel, ConnError, Transport};
use crate::crypto::{self, FILE_SIGNATURE_CONTEXT, MANIFEST_SIGNATURE_CONTEXT};
use crate::handshake::LocalIdentity;
use crate::paths::{self, ResolveError, ServeRoot};
use crate::pki;
use crate::policy::Access;
use crate::sigfile::{self, ManifestHasher};
use crate::wire::{
    AppMessage, AppType, Codec, EntryKind, ErrorCode, ErrorMsg, FileDone, FileEnd, FileStart,
    FileStatement, ListEnd, ListEntry, Listing, MAX_LIST_ENTRIES_PER_MSG, MAX_RECORD_PAYLOAD,
    ManifestEntry, PathMsg, PutStart, Request, RequestKind, SkippedMsg, TreeEnd, TreeStart,
};

/// Per-connection server settings.
pub struct ServeOptions<'a> {
    pub root: &'a ServeRoot,
    pub identity: &'a LocalIdentity,
    /// A connection with no complete request within this time is closed.
    pub idle_timeout: Duration,
    /// Signed statements of unchanged files, reused instead of hashing and signing again.
    /// Shared by every connection of a server; `None` hashes and signs every time.
    pub cache: Option<&'a Arc<StatementCache>>,
    pub log: &'a (dyn Fn(&str) + Sync),
    /// What this connection's client may read (and write), from the policy and the identity
    /// the handshake authenticated.
    pub access: &'a Access,
    /// Called once per request, after it was answered (the audit log).
    pub audit: &'a (dyn Fn(&RequestRecord) + Sync),
    /// The largest file a client may upload (`push`), checked before anything is written.
    pub max_upload: u64,
    /// The operator's view of this connection (issue 15), if the server has one: what it is
    /// doing, what its client says, the messages waiting for it.
    pub session: Option<&'a dyn Session>,
}

/// An interactive session's side of a connection, as the server's operator sees it.
pub trait Session: Sync {
    /// A request started (`Some("get docs/a.txt")`) or was answered (`None`).
    fn activity(&self, op: Option<String>);
    /// The client sent a Ping or a Say: it is a shell that polls for messages.
    fn interactive(&self);
    /// The client said `text` (the audit log has it already): show it to the operator.
    fn said(&self, text: &str);
    /// The operator's messages waiting for this client, oldest first (taken).
    fn take_notices(&self) -> Vec<String>;
}

/// What became of a request, for the audit log (SPEC §1.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestResult {
    Ok,
    /// The policy does not allow it.
    Denied,
    NotFound,
    /// Refused or failed otherwise; the text the client was sent.
    Error(String),
}

/// One answered request.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// `get` or `list` (`put` with uploads).
    pub op: &'static str,
    /// As requested.
    pub path: String,
    /// File bytes sent (for a tree, all of its files).
    pub bytes: u64,
    /// Of the file sent (not for trees or listings).
    pub sha256: Option<[u8; 32]>,
    pub result: RequestResult,
    pub duration: Duration,
}

/// Filled in while a request is answered.
pub(super) struct Outcome {
    pub(super) bytes: u64,
    pub(super) sha256: Option<[u8; 32]>,
    pub(super) result: RequestResult,
}

impl Outcome {
    fn new() -> Self {
        Self {
            bytes: 0,
            sha256: None,
            result: RequestResult::Ok,
        }
    }
}

/// The most a client may tell of the files it holds before one recursive Get (`TreeHave`
/// batches, counted as their paths' bytes plus 40 per entry): a bound on what one connection
/// makes the server keep (about 10,000 files of a tree with 60-byte names). A client that
/// holds more tells only that much; the rest is sent again.
pub const MAX_HAVE_BYTES: usize = 1 << 20;

/// What the client holds of a tree, from its `TreeHave` batches: path -> (size, SHA-256).
pub(super) type Have = std::collections::HashMap<String, (u64, [u8; 32])>;

/// The bytes an entry counts for against [`MAX_HAVE_BYTES`].
pub fn have_cost(path: &str) -> usize {
    path.len() + 40
}

/// Serves requests on an established channel until the client's Close.
pub fn serve_requests<S: Transport>(
    chan: &mut Channel<S>,
    opts: &ServeOptions<'_>,
) -> Result<(), ConnError> {
    let mut buf = vec![0u8; MAX_RECORD_PAYLOAD];
    let mut have = Have::new();
    let mut have_bytes = 0usize;
    loop {
        chan.set_deadline(Some(Instant::now() + opts.idle_timeout))?;
        let incoming = match chan.recv_app()? {
            // The client's goodbye after its last answer verified: nothing more to say (the
            // client does not wait for an answer; since version 2 Close is one-way).
            AppMessage::Close => return Ok(()),
            // What the client holds of the tree it asks for next: kept for that request.
            AppMessage::TreeHave(h) => {
                for e in h.entries {
                    have_bytes = have_bytes.saturating_add(have_cost(&e.path));
                    if have_bytes > MAX_HAVE_BYTES {
                        return Err(ConnError::Protocol(format!(
                            "client listed more than {MAX_HAVE_BYTES} bytes of files it holds"
                        )));
                    }
                    have.insert(e.path, (e.size, e.sha256));
                }
                continue;
            }
            AppMessage::Request(req) => Incoming::Request(req),
            AppMessage::Put(put) => Incoming::Put(put),
            // A shell's keep-alive, and its poll for the operator's messages.
            AppMessage::Ping => {
                answer_ping(chan, opts, None)?;
                continue;
            }
            AppMessage::Say(m) => {
                // A message is logged under the client's name: not from early data, which a
                // recorder could replay (only read requests travel early).
                if chan.in_early_data() {
                    return Err(ConnError::Protocol(
                        "a Say in early data, before the client's Finished".into(),
                    ));
                }
                answer_ping(chan, opts, Some(m.text))?;
                continue;
            }
            other => {
                return Err(ConnError::Protocol(format!(
                    "client sent {:?} instead of a request",
                    other.typ()
                )));
            }
        };
        // Early data of a resumed session may be a replay: only read requests are taken
        // from it; anything that changes state waits for the client's Finished.
        if chan.in_early_data() && !matches!(incoming, Incoming::Request(_)) {
            return Err(ConnError::Protocol(
                "a state-changing request in early data, before the client's Finished".into(),
            ));
        }
        chan.set_deadline(None)?;
        let started = Instant::now();
        let mut out = Outcome::new();
        // The list applies to this request only.
        let have = std::mem::take(&mut have);
        have_bytes = 0;
        if let Some(session) = opts.session {
            // The top of the served directory is "." (as `ls` shows it).
            let shown = |p: &str| {
                if p.is_empty() {
                    ".".to_string()
                } else {
                    p.to_string()
                }
            };
            session.activity(Some(match &incoming {
                Incoming::Request(r) if r.kind == RequestKind::Get => {
                    format!("get {}", shown(&r.path))
                }
                Incoming::Request(r) => format!("list {}", shown(&r.path)),
                Incoming::Put(p) => format!("put {}", shown(&p.path)),
            }));
        }
        let (op, path, answered) = match incoming {
            Incoming::Request(req) => {
                let (op, answered) = match req.kind {
                    RequestKind::Get => {
                        ("get", send_get(chan, opts, &req, &have, &mut buf, &mut out))
                    }
                    RequestKind::List => ("list", send_listing(chan, opts, &req, &mut out)),
                };
                (op, req.path, answered)
            }
            Incoming::Put(put) => {
                let answered = super::upload::receive_put(chan, opts, &put, &mut out);
                ("put", put.path, answered)
            }
        };
        // Logged before the end of the answer leaves: the client does not wait for anything
        // after it, so a log line written later could come after the client (or a script
        // watching the log) is done.
        audit(opts, op, path, out, started, &answered);
        answered?;
        chan.flush()?;
        if let Some(session) = opts.session {
            session.activity(None);
        }
    }
}

/// Answers a Ping, or a Say carrying `said`: the message goes to the audit log (with the
/// client's authenticated identity, like every request) and the operator, then the
/// operator's messages waiting for this client are sent, each audited, then a Pong. The
/// server sends Notices only here, in answer to the client, so that they can never cross a
/// request on the wire.
fn answer_ping<S: Transport>(
    chan: &mut Channel<S>,
    opts: &ServeOptions<'_>,
    said: Option<String>,
) -> Result<(), ConnError> {
    let record = |op, text: String| RequestRecord {
        op,
        path: text,
        bytes: 0,
        sha256: None,
        result: RequestResult::Ok,
        duration: Duration::ZERO,
    };
    if let Some(session) = opts.session {
        session.interactive();
    }
    if let Some(text) = said {
        (opts.audit)(&record("say", text.clone()));
        match opts.session {
            Some(session) => session.said(&text),
            None => (opts.log)(&format!(
                "the client says: {}",
                crate::wire::escape_text(&text)
            )),
        }
    }
    let notices = opts.session.map(|s| s.take_notices()).unwrap_or_default();
    for text in notices {
        chan.send_app(&AppMessage::Notice(crate::wire::TextMsg {
            text: text.clone(),
        }))?;
        (opts.audit)(&record("notice", text));
    }
    chan.send_app(&AppMessage::Pong)?;
    chan.flush()
}

/// A request that changes nothing (Get, List) or an upload.
enum Incoming {
    Request(Request),
    Put(PutStart),
}

/// Hands one answered request to the audit log.
fn audit(
    opts: &ServeOptions<'_>,
    op: &'static str,
    path: String,
    mut out: Outcome,
    started: Instant,
    answered: &Result<(), ConnError>,
) {
    if let Err(e) = answered {
        out.result = RequestResult::Error(e.to_string());
    }
    (opts.audit)(&RequestRecord {
        op,
        path,
        bytes: out.bytes,
        sha256: out.sha256,
        result: out.result,
        duration: started.elapsed(),
    });
}

/// Answers the request with an error, and notes why for the audit log.
pub(super) fn send_error<S: Transport>(
    chan: &mut Channel<S>,
    out: &mut Outcome,
    code: ErrorCode,
    text: String,
) -> Result<(), ConnError> {
    out.result = match code {
        ErrorCode::NotFound => RequestResult::NotFound,
        ErrorCode::PathRefused if text.ends_with(NOT_ALLOWED) => RequestResult::Denied,
        _ => RequestResult::Error(text.clone()),
    };
    chan.send_app(&AppMessage::Error(ErrorMsg { code, text }))
}

/// How a denial ends its message.
pub(super) const NOT_ALLOWED: &str = ": not allowed";

/// Resolves a request path, answering the client with an error message when refused.
/// What a request needs of the policy: to read a file, or to see (list, walk) a directory.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    Read,
    See,
}

fn permits(access: &Access, rel: &str, need: Need) -> bool {
    match need {
        Need::Read => access.can_read(rel),
        Need::See => access.can_see(rel),
    }
}

/// The policy's verdict on a path both as named and as it resolved (a symlink inside the root
/// may lead into a subtree the client may not read).
fn allowed(opts: &ServeOptions<'_>, rel: &str, canonical: &Path, need: Need) -> bool {
    let resolved = canonical
        .strip_prefix(opts.root.path())
        .ok()
        .and_then(Path::to_str)
        .map(|p| p.replace(std::path::MAIN_SEPARATOR, "/"));
    permits(opts.access, rel, need) && resolved.is_some_and(|r| permits(opts.access, &r, need))
}

/// Resolves a request path, answering the client with an error message when refused: by the
/// path rules, or by the policy (checked on the normalised path before the file system is
/// looked at, so a denied client learns nothing of what exists, and again on the resolved one).
fn resolve_or_refuse<S: Transport>(
    chan: &mut Channel<S>,
    opts: &ServeOptions<'_>,
    path: &str,
    need: Need,
    out: &mut Outcome,
) -> Result<Option<(PathBuf, String, fs::Metadata)>, ConnError> {
    let normalised = paths::parse_relative(path, true).map(|p| p.join("/"));
    let denied = || (ErrorCode::PathRefused, format!("'{path}'{NOT_ALLOWED}"));
    let (code, text) = match normalised {
        Ok(rel) if !permits(opts.access, &rel, need) => denied(),
        _ => match opts.root.resolve(path) {
            Ok((p, rel)) if !allowed(opts, &rel, &p, need) => denied(),
            Ok((p, rel)) => match fs::metadata(&p) {
                // Seeing is enough only for a directory: a file must be readable itself.
                Ok(m)
                    if need == Need::See && !m.is_dir() && !allowed(opts, &rel, &p, Need::Read) =>
                {
                    denied()
                }
                Ok(m) => return Ok(Some((p, rel, m))),
                Err(e) => (ErrorCode::ReadFailed, format!("{path}: {}", plain_io(&e))),
            },
            Err(ResolveError::Refused(e)) => (ErrorCode::PathRefused, format!("{path}: {e}")),
            Err(ResolveError::Io(e)) if e.kind() == io::ErrorKind::NotFound => (
                ErrorCode::NotFound,
                format!("{path}: no such file or directory"),
            ),
            Err(ResolveError::Io(e)) => {
                (ErrorCode::ReadFailed, format!("{path}: {}", plain_io(&e)))
            }
        },
    };
    (opts.log)(&format!("refused '{path}': {text}"));
    send_error(chan, out, code, text)?;
    Ok(None)
}

pub(crate) fn mtime(m: &fs::Metadata) -> i64 {
    m.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64)
}

fn send_get<S: Transport>(
    chan: &mut Channel<S>,
    opts: &ServeOptions<'_>,
    req: &Request,
    have: &Have,
    buf: &mut [u8],
    out: &mut Outcome,
) -> Result<(), ConnError> {
    // A recursive fetch may name a directory on the way to what the client may read (it gets
    // only that); anything else must be readable itself.
    let need = if req.recursive { Need::See } else { Need::Read };
    let Some((path, rel, meta)) = resolve_or_refuse(chan, opts, &req.path, need, out)? else {
        return Ok(());
    };
    if meta.is_dir() {
        if req.recursive {
            return send_tree(chan, opts, &path, &rel, have, buf, out);
        }
        return send_error(
            chan,
            out,
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
            out,
            ErrorCode::BadRequest,
            format!("'{}' is not a regular file", req.path),
        );
    }
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) => {
            return send_error(
                chan,
                out,
                ErrorCode::ReadFailed,
                format!("{}: {}", req.path, plain_io(&e)),
            );
        }
    };
    // The version of the file we opened (fstat, not the path: it may be replaced meanwhile).
    let meta = file.metadata().unwrap_or(meta);
    let size = meta.len();
    // Keyed by the name the statement carries (two names may lead to one file through a
    // symlink inside the root) and the identity of the file itself.
    let version = FileVersion::of(Path::new(&rel), &meta);
    let signer = opts.identity.fingerprint();
    let current = |c: &Arc<StatementCache>| c.get(&version).filter(|e| e.signer == signer);
    let cached = opts.cache.and_then(current);
    let mut hasher = Sha256::new();
    // Resume only if our file starts with exactly the bytes the client holds; otherwise
    // start over (the source changed since the interrupted transfer).
    let offset = match resume_offset(
        &mut file,
        req.offset,
        &req.prefix_sha256,
        size,
        &mut hasher,
        buf,
    ) {
        Ok(o) => o,
        Err(e) => {
            return send_error(
                chan,
                out,
                ErrorCode::ReadFailed,
                format!("{}: {}", req.path, plain_io(&e)),
            );
        }
    };
    chan.send_app(&AppMessage::FileStart(FileStart {
        path: rel.clone(),
        size,
        mtime: mtime(&meta),
        offset,
    }))?;
    // With a signed statement for this very version, the data need not be hashed again.
    // Otherwise, with a cache, a background job hashes the file (once for all connections
    // asking now) while we send it; without one, we hash what we send.
    let job = match (&cached, opts.cache) {
        (None, Some(cache)) => Some(cache.digest(&version, &path)),
        _ => None,
    };
    let hashing = if cached.is_some() || job.is_some() {
        None
    } else {
        Some(&mut hasher)
    };
    let sent = match stream_file(
        chan,
        &mut file,
        offset,
        size,
        hashing,
        &mut super::NoProgress,
    )? {
        Ok(n) => n,
        Err(e) => {
            return send_error(
                chan,
                out,
                ErrorCode::ReadFailed,
                format!("{}: read failed: {}", req.path, plain_io(&e)),
            );
        }
    };
    let unchanged = sent == size
        && file
            .metadata()
            .is_ok_and(|m| FileVersion::of(Path::new(&rel), &m) == version);
    if !unchanged && (cached.is_some() || job.is_some()) {
        // What we sent may not be what the cached statement or the background digest
        // describes: say so rather than sign something we did not hash.
        (opts.log)(&format!("'{rel}' changed while being sent"));
        return send_error(
            chan,
            out,
            ErrorCode::ReadFailed,
            format!(
                "{}: the file changed while it was being sent; fetch it again",
                req.path
            ),
        );
    }
    let (entry, reused) = match cached {
        Some(entry) => (entry, true),
        None => {
            let sha256 = match job.map(|j| j.wait()) {
                None => hasher.finalize().into(),
                Some(Ok(d)) => d,
                Some(Err(e)) => {
                    return send_error(
                        chan,
                        out,
                        ErrorCode::ReadFailed,
                        format!("{}: {e}", req.path),
                    );
                }
            };
            // Another connection may have signed this version while we waited.
            if let Some(entry) = opts.cache.and_then(current) {
                return finish_file(chan, opts, entry, offset, true, out);
            }
            let statement = FileStatement {
                path: rel,
                size: sent,
                sha256,
                signed_at: pki::now_unix(),
            };
            let signature = sign(
                opts,
                FILE_SIGNATURE_CONTEXT,
                &sigfile::statement_digest(&statement),
            )?;
            let entry = SignedEntry {
                statement,
                signature,
                signer,
            };
            if let Some(cache) = opts.cache.filter(|_| unchanged) {
                cache.insert(version, entry.clone());
            }
            (entry, false)
        }
    };
    finish_file(chan, opts, entry, offset, reused, out)
}

/// Logs the file as sent and sends its signed statement.
fn finish_file<S: Transport>(
    chan: &mut Channel<S>,
    opts: &ServeOptions<'_>,
    entry: SignedEntry,
    offset: u64,
    reused: bool,
    out: &mut Outcome,
) -> Result<(), ConnError> {
    out.bytes = entry.statement.size - offset;
    out.sha256 = Some(entry.statement.sha256);
    (opts.log)(&format!(
        "sent '{}' ({} bytes from offset {offset}, {})",
        entry.statement.path,
        entry.statement.size,
        if reused {
            "signature reused: file unchanged"
        } else {
            "signed"
        }
    ));
    chan.send_app(&AppMessage::FileEnd(FileEnd {
        statement: entry.statement,
        signature: entry.signature,
    }))
}

fn sign(opts: &ServeOptions<'_>, context: &[u8], digest: &[u8; 32]) -> Result<Vec<u8>, ConnError> {
    crypto::sign(opts.identity.signer(), context, digest)
        .map_err(|e| ConnError::Protocol(format!("signing failed: {e}")))
}

/// Hashes the first `offset` bytes into `hasher` and returns the offset to resume from:
/// `offset` if they match the client's prefix digest, else 0 (with the hasher and file
/// rewound).
fn resume_offset(
    file: &mut File,
    offset: u64,
    prefix_sha256: &[u8; 32],
    size: u64,
    hasher: &mut Sha256,
    buf: &mut [u8],
) -> io::Result<u64> {
    if offset == 0 || offset > size {
        return Ok(0);
    }
    let mut left = offset;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    if left == 0 && <[u8; 32]>::from(hasher.clone().finalize()) == *prefix_sha256 {
        return Ok(offset);
    }
    *hasher = Sha256::new();
    file.seek(SeekFrom::Start(0))?;
    Ok(0)
}

/// Sends the file from the current position (`pos`) up to `size` bytes as Data records,
/// read straight into the send buffer, hashing everything if `hasher` is given. Reads at most
/// `size` bytes so a file that grows while we send stays consistent with FileStart. The outer
/// error is the connection's, the inner the file's. Also the client's sending side of `push`.
pub(super) fn stream_file<S: Transport>(
    chan: &mut Channel<S>,
    file: &mut File,
    mut pos: u64,
    size: u64,
    mut hasher: Option<&mut Sha256>,
    progress: &mut dyn super::Progress,
) -> Result<io::Result<u64>, ConnError> {
    while pos < size {
        let want = (size - pos).min(MAX_RECORD_PAYLOAD as u64) as usize;
        let read = chan.send_with(AppType::Data, want, |buf| {
            loop {
                match file.read(buf) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Ok(n) => {
                        if let Some(h) = hasher.as_deref_mut() {
                            h.update(&buf[..n]);
                        }
                        return Ok(n);
                    }
                    r => return r,
                }
            }
        })?;
        match read {
            Ok(0) => break,
            Ok(n) => {
                pos += n as u64;
                progress.advance(n as u64);
            }
            Err(e) => return Ok(Err(e)),
        }
    }
    Ok(Ok(pos))
}

/// One entry of a tree, planned before anything is sent.
enum Planned {
    Dir(String),
    File(String, PathBuf, u64),
}

/// The served-root-relative name of `path`, found under the tree `dir` that was requested as
/// `rel`; `None` if not UTF-8.
fn tree_rel(rel: &str, dir: &Path, path: &Path) -> Option<String> {
    let sub = path.strip_prefix(dir).ok()?.to_str()?;
    let sub = sub.replace(std::path::MAIN_SEPARATOR, "/");
    Some(if rel.is_empty() {
        sub
    } else {
        format!("{rel}/{sub}")
    })
}

/// Walks `dir` (no symlinks followed, sorted by name), then sends every directory and
/// regular file, and one signature over the manifest of all of them. A file the client holds
/// (`have`) is sent from the end of what it holds when our file starts with exactly those
/// bytes: nothing but its FileStart and FileDone when it holds all of it. The manifest is the
/// same either way: every file's whole size and digest, hashed here from our own bytes.
#[allow(clippy::too_many_arguments)]
fn send_tree<S: Transport>(
    chan: &mut Channel<S>,
    opts: &ServeOptions<'_>,
    dir: &Path,
    rel: &str,
    have: &Have,
    buf: &mut [u8],
    out: &mut Outcome,
) -> Result<(), ConnError> {
    let mut planned = Vec::new();
    let mut skipped = Vec::new();
    let (mut files, mut dirs, mut bytes) = (0u64, 0u64, 0u64);
    let walker = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        // Staging files and the server's secrets are not part of any tree (nor is anything
        // below a hidden directory), nor is what the policy keeps from this client: entries
        // it may not see are left out without a word (a Skipped message would name them).
        .filter_entry(|e| {
            !opts.root.hides(e.path()) && {
                let full = tree_rel(rel, dir, e.path());
                match full {
                    Some(full) if e.file_type().is_dir() => opts.access.can_see(&full),
                    Some(full) => opts.access.can_read(&full),
                    // Not UTF-8: reported as skipped below, by its lossy name.
                    None => opts.access.can_see(rel),
                }
            }
        });
    for entry in walker {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let name = e
                    .path()
                    .and_then(|p| p.strip_prefix(dir).ok())
                    .map_or_else(String::new, |p| p.to_string_lossy().into_owned());
                // walkdir's text names the server's absolute path: only the kind goes out.
                let why = e
                    .io_error()
                    .map_or_else(|| "a file system loop".to_string(), plain_io);
                skipped.push((name, format!("cannot read: {why}")));
                continue;
            }
        };
        let sub = entry
            .path()
            .strip_prefix(dir)
            .expect("walkdir yields paths under its root");
        let Some(name) = sub
            .to_str()
            .map(|s| s.replace(std::path::MAIN_SEPARATOR, "/"))
        else {
            skipped.push((
                sub.to_string_lossy().into_owned(),
                "name is not UTF-8".into(),
            ));
            continue;
        };
        if let Err(e) = paths::parse_relative(&name, false) {
            skipped.push((name.escape_debug().to_string(), format!("unsafe name: {e}")));
            continue;
        }
        let ft = entry.file_type();
        if ft.is_dir() {
            dirs += 1;
            planned.push(Planned::Dir(name));
        } else if ft.is_file() {
            let size = entry.metadata().map_or(0, |m| m.len());
            files += 1;
            bytes += size;
            planned.push(Planned::File(name, entry.path().to_path_buf(), size));
        } else if ft.is_symlink() {
            skipped.push((name, "symbolic link, not followed".into()));
        } else {
            skipped.push((name, "not a regular file".into()));
        }
    }
    chan.send_app(&AppMessage::TreeStart(TreeStart {
        root: rel.to_string(),
        files,
        dirs,
        bytes,
    }))?;
    for (path, reason) in skipped {
        chan.send_app(&AppMessage::Skipped(SkippedMsg { path, reason }))?;
    }
    let mut manifest = ManifestHasher::new(rel);
    let mut sent_files = 0u64;
    for p in planned {
        match p {
            Planned::Dir(path) => {
                chan.send_app(&AppMessage::TreeDir(PathMsg { path: path.clone() }))?;
                manifest.add(&ManifestEntry {
                    kind: EntryKind::Dir,
                    path,
                    size: 0,
                    sha256: [0; 32],
                });
            }
            Planned::File(path, full, size) => {
                let mut file = match File::open(&full) {
                    Ok(f) => f,
                    Err(e) => {
                        chan.send_app(&AppMessage::Skipped(SkippedMsg {
                            path,
                            reason: format!("cannot open: {}", plain_io(&e)),
                        }))?;
                        continue;
                    }
                };
                let mut hasher = Sha256::new();
                let offset = match have.get(&path) {
                    Some((held, prefix)) => {
                        match resume_offset(&mut file, *held, prefix, size, &mut hasher, buf) {
                            Ok(o) => o,
                            Err(e) => {
                                chan.send_app(&AppMessage::Skipped(SkippedMsg {
                                    path,
                                    reason: format!("read failed: {}", plain_io(&e)),
                                }))?;
                                continue;
                            }
                        }
                    }
                    None => 0,
                };
                chan.send_app(&AppMessage::FileStart(FileStart {
                    path: path.clone(),
                    size,
                    mtime: file.metadata().map_or(0, |m| mtime(&m)),
                    offset,
                }))?;
                match stream_file(
                    chan,
                    &mut file,
                    offset,
                    size,
                    Some(&mut hasher),
                    &mut super::NoProgress,
                )? {
                    Ok(n) => {
                        // Only what crossed the network.
                        out.bytes += n - offset;
                        let sha256 = hasher.finalize().into();
                        chan.send_app(&AppMessage::FileDone(FileDone { sha256 }))?;
                        manifest.add(&ManifestEntry {
                            kind: EntryKind::File,
                            path,
                            size: n,
                            sha256,
                        });
                        sent_files += 1;
                    }
                    Err(e) => chan.send_app(&AppMessage::Skipped(SkippedMsg {
                        path,
                        reason: format!("read failed: {}", plain_io(&e)),
                    }))?,
                }
            }
        }
    }
    let signed_at = pki::now_unix();
    let signature = sign(
        opts,
        MANIFEST_SIGNATURE_CONTEXT,
        &manifest.finish(signed_at),
    )?;
    (opts.log)(&format!(
        "sent tree '{rel}' ({sent_files} files, {dirs} directories, one signature)"
    ));
    chan.send_app(&AppMessage::TreeEnd(TreeEnd {
        signed_at,
        signature,
    }))
}

fn send_listing<S: Transport>(
    chan: &mut Channel<S>,
    opts: &ServeOptions<'_>,
    req: &Request,
    out: &mut Outcome,
) -> Result<(), ConnError> {
    let Some((path, rel, meta)) = resolve_or_refuse(chan, opts, &req.path, Need::See, out)? else {
        return Ok(());
    };
    let mut entries = Vec::new();
    // Names left out because they cannot be served, where the policy would let this client
    // see them (a count of names it may not see would tell it they exist).
    let mut hidden = 0u32;
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
                // Not UTF-8: cannot be named on the wire. Counted if its directory is one
                // the client may read.
                let parent = entry.path().parent().and_then(|p| {
                    tree_rel(&rel, &path, p).or_else(|| (p == path).then(|| rel.clone()))
                });
                if parent.is_some_and(|p| opts.access.can_read(&p)) {
                    hidden = hidden.saturating_add(1);
                }
                continue;
            };
            let full = if rel.is_empty() {
                sub.to_string()
            } else {
                format!("{rel}/{sub}")
            };
            // Symlinks are listed as what they point to, and only if that stays in the root;
            // only what the policy lets this client see or read is listed.
            let unservable = |hidden: &mut u32| {
                if opts.access.can_read(&full) {
                    *hidden = hidden.saturating_add(1);
                }
            };
            let Ok((canonical, _)) = opts.root.resolve(&full) else {
                unservable(&mut hidden);
                continue;
            };
            let Ok(m) = fs::metadata(entry.path()) else {
                unservable(&mut hidden);
                continue;
            };
            let need = if m.is_dir() { Need::See } else { Need::Read };
            if !allowed(opts, &full, &canonical, need) {
                continue;
            }
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
            chan.send_app(&AppMessage::Listing(msg))?;
        } else {
            for e in chunk {
                chan.send_app(&AppMessage::Listing(Listing {
                    entries: vec![e.clone()],
                }))?;
            }
        }
    }
    chan.send_app(&AppMessage::ListEnd(ListEnd { hidden }))
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
