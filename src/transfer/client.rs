//! The client's side: fetching single files (with resume) and trees, listing, closing.
//!
//! Nothing reaches a final path before it is verified. A single file streams into a hidden
//! partial file `.NAME.minitls-partial` beside its destination; a tree streams into one hidden
//! staging directory ([`super::stage`]). Integrity or protocol failures remove them; only a
//! transfer cut off by the network keeps its partial file (or a tree its partial directory),
//! for `--resume`. Every file operation is relative to a held directory handle
//! ([`super::land`]).

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
    AppMessage, AppType, EntryKind, FileStart, HaveEntry, ListEntry, MAX_HAVE_ENTRIES_PER_MSG,
    ManifestEntry, Request, RequestKind, SkippedMsg, TreeEnd, TreeHave, TreeStart,
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
    /// partial file is replaced. For a tree, `.NAME.minitls-partial` is the directory a cut
    /// fetch kept: its files are offered to the server (`TreeHave`), which sends only what
    /// they lack.
    pub resume: bool,
    /// The local name in `out_dir` instead of the remote path's last component (`-o FILE`);
    /// one plain name, checked like a name from the network.
    pub save_as: Option<String>,
    /// The local name of the served directory itself, fetched recursively as `.` (it has no
    /// name of its own on the wire); one plain name, checked like `save_as`. Without it, a
    /// recursive fetch of `.` is refused.
    pub root_name: Option<String>,
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
    /// Files that were here whole already (kept from a cut fetch, `--resume`): checked
    /// against the signed manifest, not sent again.
    pub already_here: u64,
    /// Bytes of `bytes` that were here already (whole files and the start of partial ones)
    /// and did not cross the network.
    pub resumed_bytes: u64,
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
    for m in wanted.messages(opts) {
        chan.send_app(&m)?;
    }
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
            let messages = wanted.messages(opts);
            let len = messages.iter().map(request_len).sum();
            if let Err(e) = messages.iter().try_for_each(|m| chan.send_app(m)) {
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
    /// For a tree with `--resume`: the files of the kept partial tree, by path.
    have: Held,
}

/// The files a resumed tree fetch holds, by path: what a cut fetch kept, and the files of the
/// tree already in place (`OUT/NAME` from an earlier fetch).
type Held = std::collections::HashMap<String, HeldFile>;

/// One file a resumed tree fetch holds.
struct HeldFile {
    /// Bytes held (the whole file, or its start).
    len: u64,
    /// SHA-256 state of those bytes.
    hasher: Sha256,
    /// In the tree in place rather than in the kept partial tree: copied into the staging
    /// directory (and checked again) when the server says it holds the right bytes, so that
    /// nothing in place changes before the tree is verified.
    in_place: bool,
}

/// Hashes the regular files below `top` in `out` (the kept partial tree, or the tree in
/// place), adding those not in `held` yet (symlinks and anything else are not offered; the
/// server sends those entries whole), while `budget` (of
/// [`super::server::MAX_HAVE_BYTES`]) lasts.
fn held_files(
    out: &Dir,
    top: &str,
    in_place: bool,
    held: &mut Held,
    budget: &mut usize,
    progress: &mut dyn Progress,
) -> Result<(), TransferError> {
    if out.kind(top).ok().flatten() != Some(land::Kind::Dir) {
        return Ok(());
    }
    let root = out.display(top);
    progress.begin(&format!("checking {top}"), 0);
    let walker = walkdir::WalkDir::new(&root)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name();
    for entry in walker.into_iter().filter_map(Result::ok) {
        if !entry.file_type().is_file() {
            continue;
        }
        let Some(rel) = entry
            .path()
            .strip_prefix(&root)
            .ok()
            .and_then(Path::to_str)
            .map(|r| r.replace(std::path::MAIN_SEPARATOR, "/"))
        else {
            continue;
        };
        let cost = super::server::have_cost(&rel);
        if paths::parse_relative(&rel, false).is_err() || cost > *budget || held.contains_key(&rel)
        {
            continue;
        }
        // Opened without following a link put in the file's place meanwhile.
        let f = match walk_open(out, top, &rel) {
            Ok(f) => f,
            Err(_) => continue,
        };
        let (len, hasher) = hash_prefix(f, entry.path(), progress)?;
        if len == 0 {
            continue;
        }
        *budget -= cost;
        held.insert(
            rel,
            HeldFile {
                len,
                hasher,
                in_place,
            },
        );
    }
    progress.end();
    Ok(())
}

/// Opens `rel` below `top` in `out` for reading, one component at a time, no links followed.
fn walk_open(out: &Dir, top: &str, rel: &str) -> io::Result<File> {
    let mut parts: Vec<&str> = vec![top];
    parts.extend(rel.split('/'));
    let (last, dirs) = parts.split_last().expect("at least the top");
    land::walk(out, dirs)?.open_read(last)
}

/// Checks `remote`, opens the output directory and, with `--resume`, hashes a partial file.
fn prepare(
    remote: &str,
    out_dir: &Path,
    opts: &FetchOptions,
    progress: &mut dyn Progress,
) -> Result<Wanted, TransferError> {
    // `.` (the served directory itself) only as a tree: it has no bytes of its own.
    let parts = paths::parse_relative(remote, opts.recursive).map_err(|source| {
        TransferError::BadRequestPath {
            path: remote.to_string(),
            source,
        }
    })?;
    let requested = parts.join("/");
    let checked = |n: &String| {
        paths::check_component(n).map_err(|source| TransferError::BadRequestPath {
            path: n.clone(),
            source,
        })?;
        Ok::<_, TransferError>(n.clone())
    };
    let name = match (&opts.save_as, parts.last(), &opts.root_name) {
        (Some(n), _, _) => checked(n)?,
        (None, Some(last), _) => last.to_string(),
        (None, None, Some(n)) => checked(n)?,
        (None, None, None) => {
            return Err(TransferError::Refused(
                "the served directory itself has no name: give its local copy one".into(),
            ));
        }
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
    // A tree kept from a cut fetch, then the tree in place: what they hold, to be offered to
    // the server (what a cut fetch kept first: it is the newer).
    let mut have = Held::new();
    if opts.resume && opts.recursive {
        let mut budget = super::server::MAX_HAVE_BYTES;
        held_files(&out, &partial_name, false, &mut have, &mut budget, progress)?;
        held_files(&out, &name, true, &mut have, &mut budget, progress)?;
    }
    Ok(Wanted {
        requested,
        name,
        out,
        partial_name,
        prefix,
        have,
    })
}

/// Have batches this large (encoded) at most, well inside one record.
const HAVE_BATCH_BYTES: usize = 128 * 1024;

impl Wanted {
    /// What goes to the server for this path: any `TreeHave` batches, then the request.
    fn messages(&self, opts: &FetchOptions) -> Vec<AppMessage<'static>> {
        let mut messages = Vec::new();
        let mut batch: Vec<HaveEntry> = Vec::new();
        let mut batch_bytes = 0;
        let mut held: Vec<(&String, &HeldFile)> = self.have.iter().collect();
        held.sort_by(|a, b| a.0.cmp(b.0));
        for (path, HeldFile { len, hasher: h, .. }) in held {
            if batch.len() == MAX_HAVE_ENTRIES_PER_MSG
                || batch_bytes + path.len() > HAVE_BATCH_BYTES
            {
                messages.push(AppMessage::TreeHave(TreeHave {
                    entries: std::mem::take(&mut batch),
                }));
                batch_bytes = 0;
            }
            batch_bytes += path.len() + 42;
            batch.push(HaveEntry {
                path: path.clone(),
                size: *len,
                sha256: h.clone().finalize().into(),
            });
        }
        if !batch.is_empty() {
            messages.push(AppMessage::TreeHave(TreeHave { entries: batch }));
        }
        let (offset, prefix_sha256) = match &self.prefix {
            Some((len, h)) => (*len, h.clone().finalize().into()),
            None => (0, [0; 32]),
        };
        messages.push(AppMessage::Request(Request {
            kind: RequestKind::Get,
            recursive: opts.recursive,
            offset,
            prefix_sha256,
            path: self.requested.clone(),
        }));
        messages
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
                &self.partial_name,
                self.have,
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
            // Start over: a stale partial (or anything else at that name, a tree a cut fetch
            // of a directory of this name kept too) is replaced, never written through.
            if out.kind(partial_name).ok().flatten() == Some(land::Kind::Dir) {
                out.remove_tree(partial_name);
            }
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
        signer_chain: chan.peer().chain.clone(),
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

#[allow(clippy::too_many_arguments)]
fn receive_tree<S: Transport>(
    chan: &mut Channel<S>,
    start: TreeStart,
    requested: &str,
    out: &Dir,
    name: &str,
    partial_name: &str,
    have: Held,
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
    let mut stage = if opts.resume {
        TreeStage::resume(out, name, partial_name, opts.hook.clone())?
    } else {
        // A plain fetch replaces what a cut one kept.
        if out.kind(partial_name).ok().flatten() == Some(land::Kind::Dir) {
            out.remove_tree(partial_name);
        }
        TreeStage::begin(out, name, opts.hook.clone())?
    };
    progress.begin(name, start.bytes);
    let received = receive_entries(chan, &start, &mut stage, have, progress);
    progress.end();
    let (end, got) = match received {
        Ok(v) => v,
        Err(e) => {
            // Only a network cut keeps what arrived, for --resume; anything else removes it.
            if e.is_resumable() {
                stage.keep_as_partial(partial_name);
            }
            return Err(e);
        }
    };
    // One signature covers the whole manifest: every path, size and digest, in order.
    if !crypto::verify(
        &chan.peer().public_key,
        MANIFEST_SIGNATURE_CONTEXT,
        &got.manifest.finish(end.signed_at),
        &end.signature,
    ) {
        return Err(TransferError::Integrity(
            "the server's signature over the tree's manifest does not verify".into(),
        ));
    }
    let signed = SignedManifest {
        root: start.root,
        signed_at: end.signed_at,
        entries: got.entries,
        signature: end.signature,
        signer_der: chan.peer_der().to_vec(),
        signer_chain: chan.peer().chain.clone(),
    };
    let manifest_name = sigfile::manifest_name(name);
    stage.commit(&signed.entries, &manifest_name, signed.to_text().as_bytes())?;
    Ok(TreeFetched {
        dir: out.display(name),
        manifest_path: out.display(&manifest_name),
        files: got.files,
        dirs: got.dirs,
        bytes: got.bytes,
        skipped: got.skipped,
        already_here: got.already_here,
        resumed_bytes: got.resumed_bytes,
    })
}

/// What the entries of a tree added up to, before its signature is checked.
struct Entries {
    manifest: ManifestHasher,
    entries: Vec<ManifestEntry>,
    skipped: Vec<(String, String)>,
    files: u64,
    dirs: u64,
    bytes: u64,
    already_here: u64,
    resumed_bytes: u64,
}

/// Receives the entries of a tree into `stage` up to its TreeEnd. A file the server continues
/// (`offset` > 0) must be one of `have`, from exactly the bytes we hold of it.
fn receive_entries<S: Transport>(
    chan: &mut Channel<S>,
    start: &TreeStart,
    stage: &mut TreeStage<'_>,
    mut have: Held,
    progress: &mut dyn Progress,
) -> Result<(TreeEnd, Entries), TransferError> {
    let mut got = Entries {
        manifest: ManifestHasher::new(&start.root),
        entries: Vec::new(),
        skipped: Vec::new(),
        files: 0,
        dirs: 0,
        bytes: 0,
        already_here: 0,
        resumed_bytes: 0,
    };
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
                got.manifest.add(&e);
                got.entries.push(e);
                got.dirs += 1;
            }
            AppMessage::FileStart(fs_msg) => {
                // From the start, or from the end of what we hold of it (all of it: no data).
                let held = have.remove(&fs_msg.path);
                let (mut hasher, mut received, in_place) = match (fs_msg.offset, held) {
                    (0, _) => (Sha256::new(), 0, false),
                    (offset, Some(h)) if offset == h.len && offset <= fs_msg.size => {
                        (h.hasher, h.len, h.in_place)
                    }
                    (offset, _) => {
                        return Err(TransferError::Protocol(format!(
                            "server continued '{}' from offset {offset}, which is not what we \
                             hold of it",
                            fs_msg.path.escape_debug()
                        )));
                    }
                };
                let resumed_from = received;
                let mut tmp = stage.add_file(&fs_msg.path, resumed_from > 0 && !in_place)?;
                if in_place {
                    // The file in place holds the bytes: a copy of them starts the staged one
                    // (they must still be the bytes offered).
                    let offered: [u8; 32] = hasher.clone().finalize().into();
                    stage.copy_in_place(&fs_msg.path, &mut tmp, resumed_from, &offered)?;
                    progress.advance(resumed_from);
                } else if resumed_from > 0 {
                    // The bytes hashed when we offered them must be those still there.
                    let len = tmp
                        .file
                        .as_ref()
                        .and_then(|f| f.metadata().ok())
                        .map(|m| m.len());
                    if len != Some(resumed_from) {
                        return Err(TransferError::Refused(format!(
                            "{} changed while the fetch resumed; fetch the tree again without \
                             --resume",
                            tmp.path().display()
                        )));
                    }
                    progress.advance(resumed_from);
                }
                let data = receive_data(
                    chan,
                    &mut tmp,
                    &mut hasher,
                    &mut received,
                    fs_msg.size,
                    false,
                    progress,
                );
                let (t, p) = match data {
                    Ok(v) => v,
                    Err(e) => {
                        // A cut keeps what arrived of this file too, for --resume.
                        tmp.set_keep(e.is_resumable() && received > 0);
                        return Err(e);
                    }
                };
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
                        got.manifest.add(&e);
                        got.entries.push(e);
                        got.files += 1;
                        got.bytes += received;
                        got.resumed_bytes += resumed_from;
                        if resumed_from > 0 && resumed_from == received {
                            got.already_here += 1;
                        }
                        progress.file_done(got.files, start.files);
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
                        got.skipped.push(checked_skip(s)?);
                    }
                    other => return remote_or_protocol(other, "the end of a file"),
                }
            }
            AppMessage::Skipped(s) => got.skipped.push(checked_skip(s)?),
            AppMessage::TreeEnd(end) => break end,
            other => return remote_or_protocol(other, "the tree"),
        }
        if got.files + got.dirs > MAX_TREE_ENTRIES || got.skipped.len() as u64 > MAX_TREE_ENTRIES {
            return Err(TransferError::Protocol(format!(
                "tree has more than {MAX_TREE_ENTRIES} entries"
            )));
        }
    };
    Ok((end, got))
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
