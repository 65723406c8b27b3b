//! Receiving one file's Data records into a staged file while hashing them, for both
//! directions: the client's side of `fetch` and the server's side of `push` land files the
//! same way (a hidden staged file, hashed as it arrives, written with direct I/O when large,
//! renamed into place only once verified).

use std::io;

use sha2::{Digest, Sha256};

use super::land::Staged;
use super::{Progress, TransferError};
use crate::conn::{Channel, OwnedMsg, Transport};
use crate::wire::AppType;

fn io_err(path: &std::path::Path) -> impl FnOnce(io::Error) -> TransferError + '_ {
    move |source| TransferError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Files at least this large are hashed on a second thread (see [`RecordHasher`]);
/// smaller ones are not worth starting a thread for.
const HASH_THREAD_MIN: u64 = 4 << 20;

/// Receives Data records into `sink` until another message arrives, which is returned.
/// Every byte is hashed into `hasher` and counted in `received`, which may not exceed `limit`.
/// For a large file the hashing runs on a second thread while this one reads, decrypts and
/// writes: SHA-256 costs about as much as the other three together. From [`DIRECT_MIN`] on,
/// the writing goes through [`DirectWriter`] (direct I/O on a third thread). Before this
/// returns, on success or failure, every authenticated byte that arrived is in the file (what
/// `--resume` continues from) and the hashing is finished.
///
/// With `drain`, a failure to write (a full disk) does not stop the reading: the rest of the
/// data is read and dropped up to the next message, so that the peer, still sending, can be
/// answered in turn (the server's side of `push`). The write error is returned then, and the
/// message after the data is consumed.
pub(super) fn receive_data<S: Transport>(
    chan: &mut Channel<S>,
    sink: &mut Staged,
    hasher: &mut Sha256,
    received: &mut u64,
    limit: u64,
    drain: bool,
    progress: &mut dyn Progress,
) -> Result<(AppType, Vec<u8>), TransferError> {
    let remaining = limit.saturating_sub(*received);
    let threaded = remaining >= HASH_THREAD_MIN;
    let mut direct = if remaining >= DIRECT_MIN {
        sink.file
            .as_ref()
            .and_then(|f| DirectWriter::open(f, *received))
    } else {
        None
    };
    let sink_path = sink.path();
    let mut records = RecordHasher::start(std::mem::take(hasher), threaded);
    let mut write_failed: Option<TransferError> = None;
    let result = loop {
        let (typ, msg) = match chan.recv_owned(records.spare()) {
            Ok(v) => v,
            Err(e) => break Err(e.into()),
        };
        if typ != AppType::Data {
            break Ok((typ, msg.payload().to_vec()));
        }
        let n = msg.payload().len();
        if let Err(e) = count(received, n, limit) {
            break Err(e);
        }
        if write_failed.is_some() {
            continue;
        }
        let written = match direct.as_mut() {
            Some(w) => w.write(msg.payload()).map_err(io_err(&sink_path)),
            None => sink.write_all(msg.payload()).map_err(io_err(&sink_path)),
        };
        if let Err(e) = written {
            if drain {
                write_failed = Some(e);
                continue;
            }
            break Err(e);
        }
        records.push(msg);
        progress.advance(n as u64);
    };
    // Everything that arrived is written out before returning, on success and on a cut alike.
    let flushed = direct.map_or(Ok(0), |w| w.finish().map_err(io_err(&sink_path)));
    *hasher = records.finish();
    let out = result?;
    if let Some(e) = write_failed {
        return Err(e);
    }
    flushed?;
    Ok(out)
}

/// Files with at least this much left to receive are written with direct I/O where the file
/// system allows it (see [`super::direct`]); below it the page cache is the faster way.
pub(super) const DIRECT_MIN: u64 = 16 << 20;

#[cfg(target_os = "linux")]
use super::direct::DirectWriter;

/// Without Linux's `O_DIRECT`, every file goes through the page cache: no writer can exist.
#[cfg(not(target_os = "linux"))]
enum DirectWriter {}

#[cfg(not(target_os = "linux"))]
impl DirectWriter {
    fn open(_file: &std::fs::File, _offset: u64) -> Option<Self> {
        None
    }
    fn write(&mut self, _data: &[u8]) -> io::Result<()> {
        match *self {}
    }
    fn finish(self) -> io::Result<u64> {
        match self {}
    }
}

fn count(received: &mut u64, n: usize, limit: u64) -> Result<(), TransferError> {
    *received += n as u64;
    if *received > limit {
        return Err(TransferError::Integrity(format!(
            "more data arrived than the announced {limit} bytes"
        )));
    }
    Ok(())
}

/// Hashes received records, on a second thread or (small files, or no thread to be had) on
/// this one. Record buffers are reused: the thread gives them back through a small channel, so
/// at most a few records (about a MiB) are in flight.
struct RecordHasher {
    jobs: Option<std::sync::mpsc::SyncSender<OwnedMsg>>,
    spares: Option<std::sync::mpsc::Receiver<Vec<u8>>>,
    worker: Option<std::thread::JoinHandle<Sha256>>,
    /// Hashing on this thread: the hash so far, and the last record's buffer.
    inline: Option<(Sha256, Vec<u8>)>,
}

impl RecordHasher {
    /// Records queued for the hashing thread (up to 256 KiB each). Deeper queues let the
    /// three busy threads of a fetch (the server's, this one, the hasher) share two cores with
    /// less waiting: see [`super::direct::CHUNKS`].
    const DEPTH: usize = 8;

    fn start(hasher: Sha256, threaded: bool) -> Self {
        let inline = Self {
            jobs: None,
            spares: None,
            worker: None,
            inline: Some((hasher.clone(), Vec::new())),
        };
        if !threaded {
            return inline;
        }
        let (jobs, inbox) = std::sync::mpsc::sync_channel::<OwnedMsg>(Self::DEPTH);
        let (give_back, spares) = std::sync::mpsc::sync_channel(Self::DEPTH + 2);
        let mut h = hasher;
        let spawned = std::thread::Builder::new()
            .name("sha256".into())
            .spawn(move || {
                for msg in inbox {
                    h.update(msg.payload());
                    let _ = give_back.try_send(msg.into_buffer());
                }
                h
            });
        match spawned {
            Ok(worker) => Self {
                jobs: Some(jobs),
                spares: Some(spares),
                worker: Some(worker),
                inline: None,
            },
            Err(_) => inline,
        }
    }

    /// A buffer that is free again, or a new one.
    fn spare(&mut self) -> Vec<u8> {
        match (&mut self.inline, &self.spares) {
            (Some((_, buf)), _) => std::mem::take(buf),
            (None, Some(spares)) => spares.try_recv().unwrap_or_default(),
            (None, None) => Vec::new(),
        }
    }

    fn push(&mut self, msg: OwnedMsg) {
        if let Some((h, buf)) = self.inline.as_mut() {
            h.update(msg.payload());
            *buf = msg.into_buffer();
        } else if let Some(jobs) = &self.jobs {
            // The worker only stops when `jobs` is dropped (it does not fail otherwise).
            let _ = jobs.send(msg);
        }
    }

    /// Waits until everything pushed is hashed; returns the hash of all of it.
    fn finish(mut self) -> Sha256 {
        if let Some((h, _)) = self.inline.take() {
            return h;
        }
        self.jobs.take();
        match self.worker.take().map(std::thread::JoinHandle::join) {
            Some(Ok(h)) => h,
            // Unreachable in practice (hashing does not panic); a wrong digest then fails the
            // signature check, never passes it.
            _ => Sha256::new(),
        }
    }
}

impl Drop for RecordHasher {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}
