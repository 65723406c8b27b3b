//! The client's side: fetching single files (with resume) and trees, listing, closing.
//!
//! Nothing reaches a final path before it is verified. A single file streams into a hidden
//! partial file `.NAME.minitls-partial` beside its destination; a tree streams into one hidden
//! staging directory ([`super::stage`]). Integrity or protocol failures remove them; only a
//! single-file transfer cut off by the network keeps its partial file, for `--resume`. Every
//! file operation is relative to a held directory handle ([`super::land`]).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::land::{self, Dir, LandHook, Staged};
use super::receive::receive_data;
use super::stage::TreeStage;
use super::{Progress, TransferError};
use crate::conn::{Channel, ConnError, Transport};
use crate::crypto::{self, FILE_SIGNATURE_CONTEXT, MANIFEST_SIGNATURE_CONTEXT};
use crate::paths::{self, PathError};
use crate::sigfile::{self, ManifestHasher, SignedManifest, SignedStatement};
use crate::wire::{
    AppMessage, AppType, EntryKind, FileStart, ListEntry, ManifestEntry, Request, RequestKind,
    SkippedMsg, TreeEnd, TreeStart,
};

/// A hostile server cannot make a client hold more listing entries than this.
pub const MAX_LIST_ENTRIES_TOTAL: usize = 1_000_000;
/// Nor more entries in one tree.
pub const MAX_TREE_ENTRIES: u64 = 1_000_000;

/// How to fetch.
#[derive(Clone, Debug, Default)]
pub struct FetchOptions {
    /// Fetch a directory as a tree (`-r`).
    pub recursive: bool,
    /// Continue from `.NAME.minitls-partial` if one is there (`--resume`); otherwise any
    /// partial file is replaced.
    pub resume: bool,
    /// The local name in `out_dir` instead of the remote path's last component (`-o FILE`);
    /// one plain name, checked like a name from the network.
    pub save_as: Option<String>,
    /// Called at each landing step; only tests set it (see [`land::LandStep`]).
    pub hook: LandHook,
}

/// A file that arrived, verified and in place.
#[derive(Debug)]
pub struct Fetched {
    pub path: PathBuf,
    pub signature_path: PathBuf,
    pub size: u64,
    pub sha256: [u8; 32],
    /// Bytes that were already here from an interrupted transfer and not sent again.
    pub resumed_from: u64,
}

/// A tree that arrived, verified and in place.
#[derive(Debug)]
pub struct TreeFetched {
    pub dir: PathBuf,
    pub manifest_path: PathBuf,
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    /// Entries the server did not send, with its reason (symlinks, unreadable files).
    pub skipped: Vec<(String, String)>,
}

/// What a fetch produced.
#[derive(Debug)]
pub enum Fetch {
    File(Fetched),
    Tree(TreeFetched),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> TransferError + '_ {
    move |source| TransferError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The error for a message that is not what we wait for: the server's refusal if it is an
/// Error, a protocol violation otherwise.
pub(super) fn remote_or_protocol<T>(
    msg: AppMessage<'_>,
    waiting_for: &str,
) -> Result<T, TransferError> {
    match msg {
        AppMessage::Error(e) => Err(TransferError::Remote {
            code: e.code,
            text: e.text,
        }),
        // The server ended the connection, and said why (the operator dropped it, or it
        // reached the server's --max-session).
        AppMessage::Goodbye(alert) => Err(TransferError::Ended(alert)),
        // A stopping server closes the sessions of idle shells; a request that crossed it
        // gets this instead of its answer.
        AppMessage::Close => Err(TransferError::Closed),
        other => Err(TransferError::Protocol(format!(
            "got {:?} while waiting for {waiting_for}",
            other.typ()
        ))),
    }
}

/// Decodes the message that ended a file's data ([`receive_data`] hands it back raw).
fn after_data(typ: AppType, payload: &[u8]) -> Result<AppMessage<'_>, TransferError> {
    Ok(AppMessage::decode(typ, payload).map_err(ConnError::from)?)
}

/// Fetches one regular file into `out_dir` under its last path component.
pub fn fetch_file<S: Transport>(
    chan: &mut Channel<S>,
    remote: &str,
    out_dir: &Path,
    progress: &mut dyn Progress,
) -> Result<Fetched, TransferError> {
    match fetch(chan, remote, out_dir, &FetchOptions::default(), progress)? {
        Fetch::File(f) => Ok(f),
        Fetch::Tree(_) => Err(TransferError::Protocol(
            "server sent a tree for a non-recursive request".into(),
        )),
    }
}

/// Fetches `remote` (a file, or with `recursive` a directory tree) into `out_dir`:
/// `a/b.txt` becomes `OUT/b.txt`, a directory `a/d` becomes `OUT/d/...`.
pub fn fetch<S: Transport>(
    chan: &mut Channel<S>,
    remote: &str,
    out_dir: &Path,
    opts: &FetchOptions,
    progress: &mut dyn Progress,
) -> Result<Fetch, TransferError> {
    let wanted = prepare(remote, out_dir, opts, progress)?;
    chan.send_app(&wanted.request(opts))?;
    chan.flush()?;
    wanted.receive(chan, opts, progress)
}

/// Requests sent ahead of their answers, at most this many bytes of them. The server reads
/// the next request only once it has answered the last, so requests beyond what the two
/// sockets' buffers hold would wait for the answers we are not yet reading; 32 KiB (a few
/// hundred paths) fits in any TCP buffer.
pub const PIPELINE_WINDOW: usize = 32 * 1024;

/// Fetches several paths over one connection, pipelined: the requests go out together (up to
/// [`PIPELINE_WINDOW`] bytes ahead of the answers), so N small files cost the round trips of
/// one. Each outcome is handed to `each` in order, with its path. A refusal by the server
/// (not found, not allowed...) or a path that is not valid goes on to the next path; anything
/// that leaves the session unusable (a cut, a bad record, an integrity failure, a local write
/// error) is handed to `each` and ends the fetch. Returns how many paths were not attempted
/// because of that (0 when every path was). `opts.save_as` must be `None` with several paths
/// (one name cannot serve several files; they are refused as bad paths).
pub fn fetch_all<S: Transport>(
    chan: &mut Channel<S>,
    remotes: &[String],
    out_dir: &Path,
    opts: &FetchOptions,
    progress: &mut dyn Progress,
    each: &mut dyn FnMut(&str, Result<Fetch, TransferError>),
) -> usize {
    let mut queue: std::collections::VecDeque<(&str, Wanted, usize)> = Default::default();
    let mut in_flight = 0usize;
    let mut next = remotes.iter().enumerate().peekable();
    let not_fetched = |i: usize| remotes.len() - i;
    loop {
        // Send what the window allows (at least one: a long path still goes).
        let mut sent_any = false;
        while in_flight < PIPELINE_WINDOW || queue.is_empty() {
            let Some((i, remote)) = next.next() else {
                break;
            };
            let wanted = if opts.save_as.is_some() && remotes.len() > 1 {
                Err(TransferError::Refused(
                    "one local name cannot be given to several files".into(),
                ))
            } else {
                prepare(remote, out_dir, opts, progress)
            };
            let wanted = match wanted {
                Ok(w) => w,
                Err(e @ (TransferError::BadRequestPath { .. } | TransferError::Refused(_))) => {
                    each(remote, Err(e));
                    continue;
                }
                Err(e) => {
                    each(remote, Err(e));
                    return not_fetched(i + 1) + queue.len();
                }
            };
            let request = wanted.request(opts);
            let len = request_len(&request);
            if let Err(e) = chan.send_app(&request) {
                each(remote, Err(e.into()));
                return not_fetched(i + 1) + queue.len();
            }
            in_flight += len;
            queue.push_back((remote, wanted, len));
            sent_any = true;
        }
        if sent_any && let Err(e) = chan.flush() {
            let Some((remote, _, _)) = queue.pop_front() else {
                return 0;
            };
            each(remote, Err(e.into()));
            return queue.len() + next.count();
        }
        let Some((remote, wanted, len)) = queue.pop_front() else {
            return 0;
        };
        in_flight -= len;
        match wanted.receive(chan, opts, progress) {
            Ok(f) => each(remote, Ok(f)),
            Err(e @ TransferError::Remote { .. }) => each(remote, Err(e)),
            Err(e) => {
                each(remote, Err(e));
                return queue.len() + next.count();
            }
        }
    }
}

/// The bytes a request takes on the wire, for the pipeline window.
fn request_len(request: &AppMessage<'_>) -> usize {
    let mut b = Vec::new();
    request.encode(&mut b);
    b.len() + crate::wire::FRAME_HEADER_LEN + 1 + crate::wire::TAG_LEN
}

/// One path to fetch, checked and with its resume state, before its request is sent.
struct Wanted {
    requested: String,
    name: String,
    out: Dir,
    partial_name: String,
    prefix: Option<(u64, Sha256)>,
}

/// Checks `remote`, opens the output directory and, with `--resume`, hashes a partial file.
fn prepare(
    remote: &str,
    out_dir: &Path,
    opts: &FetchOptions,
    progress: &mut dyn Progress,
) -> Result<Wanted, TransferError> {
    let parts =
        paths::parse_relative(remote, false).map_err(|source| TransferError::BadRequestPath {
            path: remote.to_string(),
            source,
        })?;
    let requested = parts.join("/");
    let name = match &opts.save_as {
        Some(n) => {
            paths::check_component(n).map_err(|source| TransferError::BadRequestPath {
                path: n.clone(),
                source,
            })?;
            n.clone()
        }
        None => parts
            .last()
            .expect("parse_relative(.., false) returns at least one component")
            .to_string(),
    };
    let out = Dir::create_all(out_dir).map_err(io_err(out_dir))?;
    let partial_name = land::fit_name(".", &name, land::PARTIAL_SUFFIX);

    // A partial file from an interrupted transfer: hash it, and ask for the rest.
    let mut prefix = None;
    if opts.resume
        && let Ok(Some(land::Kind::File)) = out.kind(&partial_name)
        && let Ok(f) = out.open_read(&partial_name)
        && let Ok(m) = f.metadata()
        && m.len() > 0
    {
        progress.begin(&format!("checking {name} (partial)"), m.len());
        let (len, hasher) = hash_prefix(f, &out.display(&partial_name), progress)?;
        progress.end();
        prefix = Some((len, hasher));
    }
    Ok(Wanted {
        requested,
        name,
        out,
        partial_name,
        prefix,
    })
}

impl Wanted {
    fn request(&self, opts: &FetchOptions) -> AppMessage<'static> {
        let (offset, prefix_sha256) = match &self.prefix {
            Some((len, h)) => (*len, h.clone().finalize().into()),
            None => (0, [0; 32]),
        };
        AppMessage::Request(Request {
            kind: RequestKind::Get,
            recursive: opts.recursive,
            offset,
            prefix_sha256,
            path: self.requested.clone(),
        })
    }

    /// Receives the answer to this path's request.
    fn receive<S: Transport>(
        self,
        chan: &mut Channel<S>,
        opts: &FetchOptions,
        progress: &mut dyn Progress,
    ) -> Result<Fetch, TransferError> {
        match chan.recv_app()? {
            AppMessage::FileStart(start) => receive_single(
                chan,
                start,
                &self.requested,
                &self.out,
                &self.name,
                &self.partial_name,
                self.prefix,
                progress,
            )
            .map(Fetch::File),
            AppMessage::TreeStart(start) if opts.recursive => receive_tree(
                chan,
                start,
                &self.requested,
                &self.out,
                &self.name,
                opts,
                progress,
            )
            .map(Fetch::Tree),
            other => remote_or_protocol(other, "the file"),
        }
    }
}

fn hash_prefix(
    mut f: File,
    path: &Path,
    progress: &mut dyn Progress,
) -> Result<(u64, Sha256), TransferError> {
    use std::io::Read;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            return Ok((len, h));
        }
        h.update(&buf[..n]);
        len += n as u64;
        progress.advance(n as u64);
    }
}

#[allow(clippy::too_many_arguments)]
fn receive_single<S: Transport>(
    chan: &mut Channel<S>,
    start: FileStart,
    requested: &str,
    out: &Dir,
    name: &str,
    partial_name: &str,
    prefix: Option<(u64, Sha256)>,
    progress: &mut dyn Progress,
) -> Result<Fetched, TransferError> {
    // The server must answer with the file we asked for, from where we asked or from 0.
    let resume_at = prefix.as_ref().map_or(0, |(len, _)| *len);
    if start.path != requested || (start.offset != 0 && start.offset != resume_at) {
        return Err(TransferError::Protocol(format!(
            "asked for '{requested}' from offset {resume_at}, server sent '{}' from offset {}",
            start.path, start.offset
        )));
    }
    let partial_path = out.display(partial_name);
    let (mut hasher, mut received, file) = match prefix {
        // The partial file was checked to be a regular file when it was hashed; a symlink
        // put in its place since then is refused rather than followed.
        Some((len, h)) if start.offset == len => {
            let f = out
                .open_append(partial_name)
                .map_err(io_err(&partial_path))?;
            (h, len, f)
        }
        _ => {
            // Start over: a stale partial (or anything else at that name) is replaced,
            // never written through.
            out.remove_file(partial_name)
                .map_err(io_err(&partial_path))?;
            let f = out
                .create_file(partial_name)
                .map_err(io_err(&partial_path))?;
            (Sha256::new(), 0, f)
        }
    };
    let resumed_from = received;
    let mut staged =
        Staged::new(out, partial_name.to_string(), file).map_err(io_err(&partial_path))?;
    progress.begin(name, start.size);
    progress.advance(received);
    let result = receive_data(
        chan,
        &mut staged,
        &mut hasher,
        &mut received,
        start.size,
        false,
        progress,
    );
    progress.end();
    let (typ, payload) = match result {
        Ok(v) => v,
        Err(e) => {
            // Only a network cut keeps the data, for --resume.
            staged.set_keep(e.is_resumable() && received > 0);
            return Err(e);
        }
    };
    let end = match after_data(typ, &payload)? {
        AppMessage::FileEnd(end) => end,
        other => return remote_or_protocol(other, "file data"),
    };
    let digest: [u8; 32] = hasher.finalize().into();
    let st = &end.statement;
    // 1. The statement must describe exactly what we hold...
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
    // 3. Move the file into place, with the signature beside it for `minitls verify`.
    let signed = SignedStatement {
        statement: end.statement.clone(),
        signature: end.signature,
        signer_der: chan.peer_der().to_vec(),
        signer_role: crate::pki::Role::Server,
    };
    let sig_name = sigfile::sidecar_name(name);
    land::persist_with_sidecar(
        out,
        staged,
        name,
        &sig_name,
        signed.to_text().as_bytes(),
        true,
    )
    .map_err(io_err(&out.display(name)))?;
    let dest = out.display(name);
    let sig_dest = out.display(&sig_name);
    Ok(Fetched {
        path: dest,
        signature_path: sig_dest,
        size: received,
        sha256: digest,
        resumed_from,
    })
}

/// Marks a tree root this fetch just created as a "top directory" (`chattr +T`): on ext2/3/4
/// the allocator then spreads its subdirectories over block groups with free inodes instead
/// of packing them next to the parent. This matters when a tree is fetched again soon after
/// the previous copy was deleted: on ext4 without a journal the inode allocator skips inodes
/// freed in the last minute one by one, so 10,000 new files next to 10,000 just-deleted ones
/// cost seconds of kernel time (measured: 1.3 s, then 2.1, 2.7 s on the 2nd, 3rd, 4th fetch
/// of a 10,000-file tree; 0.12-0.21 s with the hint). Only a hint: other file systems refuse
/// the ioctl or ignore the flag, and any error is ignored.
pub(super) fn spread_subdirectories(root: &Dir) {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{IFlags, ioctl_getflags, ioctl_setflags};
        if let Ok(flags) = ioctl_getflags(root.as_fd()) {
            let _ = ioctl_setflags(root.as_fd(), flags | IFlags::TOPDIR);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = root;
}

fn unsafe_name(name: &str, source: PathError) -> TransferError {
    TransferError::UnsafeName {
        name: name.escape_debug().to_string(),
        source,
    }
}

fn receive_tree<S: Transport>(
    chan: &mut Channel<S>,
    start: TreeStart,
    requested: &str,
    out: &Dir,
    name: &str,
    opts: &FetchOptions,
    progress: &mut dyn Progress,
) -> Result<TreeFetched, TransferError> {
    if start.root != requested {
        return Err(TransferError::Protocol(format!(
            "asked for '{requested}', server sent the tree '{}'",
            start.root.escape_debug()
        )));
    }
    if start.files.saturating_add(start.dirs) > MAX_TREE_ENTRIES {
        return Err(TransferError::Protocol(format!(
            "tree has more than {MAX_TREE_ENTRIES} entries"
        )));
    }
    let mut stage = TreeStage::begin(out, name, opts.hook.clone())?;
    let mut manifest = ManifestHasher::new(&start.root);
    let mut entries: Vec<ManifestEntry> = Vec::new();
    let mut skipped = Vec::new();
    let (mut files, mut dirs, mut bytes) = (0u64, 0u64, 0u64);
    progress.begin(name, start.bytes);
    let end: TreeEnd = loop {
        match chan.recv_app()? {
            AppMessage::TreeDir(m) => {
                stage.add_dir(&m.path)?;
                let e = ManifestEntry {
                    kind: EntryKind::Dir,
                    path: m.path,
                    size: 0,
                    sha256: [0; 32],
                };
                manifest.add(&e);
                entries.push(e);
                dirs += 1;
            }
            AppMessage::FileStart(fs_msg) => {
                if fs_msg.offset != 0 {
                    return Err(TransferError::Protocol("tree file with an offset".into()));
                }
                let mut tmp = stage.add_file(&fs_msg.path)?;
                let mut hasher = Sha256::new();
                let mut received = 0u64;
                let (t, p) = receive_data(
                    chan,
                    &mut tmp,
                    &mut hasher,
                    &mut received,
                    fs_msg.size,
                    false,
                    progress,
                )?;
                match after_data(t, &p)? {
                    AppMessage::FileDone(done) => {
                        let sha256: [u8; 32] = hasher.finalize().into();
                        if done.sha256 != sha256 {
                            return Err(TransferError::Integrity(format!(
                                "'{}' does not match the server's digest",
                                fs_msg.path.escape_debug()
                            )));
                        }
                        tmp.close();
                        tmp.set_keep(true);
                        let e = ManifestEntry {
                            kind: EntryKind::File,
                            path: fs_msg.path,
                            size: received,
                            sha256,
                        };
                        manifest.add(&e);
                        entries.push(e);
                        files += 1;
                        bytes += received;
                        progress.file_done(files, start.files);
                    }
                    AppMessage::Skipped(s) => {
                        // The server could not finish reading it: what came is dropped (with
                        // `tmp`). The skip must name this entry, whose name stays taken.
                        if s.path != fs_msg.path {
                            return Err(TransferError::Protocol(format!(
                                "'{}' was cut short by a skip of another entry, '{}'",
                                fs_msg.path.escape_debug(),
                                s.path.escape_debug()
                            )));
                        }
                        skipped.push(checked_skip(s)?);
                    }
                    other => return remote_or_protocol(other, "the end of a file"),
                }
            }
            AppMessage::Skipped(s) => skipped.push(checked_skip(s)?),
            AppMessage::TreeEnd(end) => break end,
            other => return remote_or_protocol(other, "the tree"),
        }
        if files + dirs > MAX_TREE_ENTRIES || skipped.len() as u64 > MAX_TREE_ENTRIES {
            return Err(TransferError::Protocol(format!(
                "tree has more than {MAX_TREE_ENTRIES} entries"
            )));
        }
    };
    progress.end();
    // One signature covers the whole manifest: every path, size and digest, in order.
    if !crypto::verify(
        &chan.peer().public_key,
        MANIFEST_SIGNATURE_CONTEXT,
        &manifest.finish(end.signed_at),
        &end.signature,
    ) {
        return Err(TransferError::Integrity(
            "the server's signature over the tree's manifest does not verify".into(),
        ));
    }
    let signed = SignedManifest {
        root: start.root,
        signed_at: end.signed_at,
        entries,
        signature: end.signature,
        signer_der: chan.peer_der().to_vec(),
    };
    let manifest_name = sigfile::manifest_name(name);
    stage.commit(&signed.entries, &manifest_name, signed.to_text().as_bytes())?;
    Ok(TreeFetched {
        dir: out.display(name),
        manifest_path: out.display(&manifest_name),
        files,
        dirs,
        bytes,
        skipped,
    })
}

/// A skipped entry is only reported, but its name is still checked: it will be printed.
fn checked_skip(s: SkippedMsg) -> Result<(String, String), TransferError> {
    if s.path.chars().any(char::is_control) || s.reason.chars().any(char::is_control) {
        return Err(unsafe_name(&s.path, PathError::BadCharacter));
    }
    Ok((s.path, s.reason))
}

/// Lists a remote path.
pub fn list<S: Transport>(
    chan: &mut Channel<S>,
    remote: &str,
    recursive: bool,
) -> Result<Vec<ListEntry>, TransferError> {
    list_counted(chan, remote, recursive).map(|(entries, _)| entries)
}

/// Lists a remote path; also returns how many names the server left out because they cannot
/// be served (see [`crate::wire::ListEnd`]).
pub fn list_counted<S: Transport>(
    chan: &mut Channel<S>,
    remote: &str,
    recursive: bool,
) -> Result<(Vec<ListEntry>, u32), TransferError> {
    let parts =
        paths::parse_relative(remote, true).map_err(|source| TransferError::BadRequestPath {
            path: remote.to_string(),
            source,
        })?;
    chan.send_app(&AppMessage::Request(Request {
        kind: RequestKind::List,
        recursive,
        offset: 0,
        prefix_sha256: [0; 32],
        path: parts.join("/"),
    }))?;
    chan.flush()?;
    let mut entries = Vec::new();
    loop {
        match chan.recv_app()? {
            AppMessage::Listing(l) => {
                if entries.len() + l.entries.len() > MAX_LIST_ENTRIES_TOTAL {
                    return Err(TransferError::Protocol(format!(
                        "listing has more than {MAX_LIST_ENTRIES_TOTAL} entries"
                    )));
                }
                for e in &l.entries {
                    paths::parse_relative(&e.path, false)
                        .map_err(|err| unsafe_name(&e.path, err))?;
                }
                entries.extend(l.entries);
            }
            AppMessage::ListEnd(end) => return Ok((entries, end.hidden)),
            other => return remote_or_protocol(other, "the listing"),
        }
    }
}

/// Ends the session with our Close. Every answer we act on was complete and authenticated
/// when it arrived, so we do not wait for a reply: the server ends the connection when it
/// reads the Close (a round trip less for every command).
pub fn close<S: Transport>(chan: &mut Channel<S>) -> Result<(), TransferError> {
    chan.send_close()?;
    Ok(())
}
