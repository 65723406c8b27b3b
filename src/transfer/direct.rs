//! Writing a large received file with direct I/O (`O_DIRECT`), on a writer thread.
//!
//! Why: writing a GiB through the page cache costs the client 0.6 to 4 s of kernel CPU here
//! (copying every byte into freshly allocated cache pages; in a VM the first touch of those
//! pages is what varies), on a machine whose two cores are already busy decrypting, hashing
//! and serving. A direct write goes from our buffer to the device: `dd` measured 0.1-0.3 s of
//! CPU per GiB direct against 0.6-4.2 s buffered, in about the same wall time, and the wait
//! for the device happens on a thread that needs no CPU meanwhile. A side effect, also wanted
//! for big downloads: the file does not push everything else out of the page cache.
//!
//! How: received plaintext is copied into [`ALIGN`]-aligned chunks of [`CHUNK`] bytes; each
//! full chunk goes to the writer thread, which writes it at its offset through a second,
//! `O_DIRECT` handle and gives it back (at most [`CHUNKS`] exist: memory stays bounded and the
//! receiver waits when the disk is slower than the network). The bytes that do not fill an
//! aligned block (the last few, and after a resume from an unaligned offset the first few)
//! are written through an ordinary handle. Where direct I/O is refused (a file system without
//! it, a device with stricter alignment) the same thread writes through the ordinary handle
//! instead, so the result is the same file.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// Alignment of buffers, offsets and lengths for direct writes: the largest logical block
/// size in common use (disks have 512 or 4096).
pub const ALIGN: usize = 4096;
/// Bytes per direct write (`dd` here: 1 GiB in 0.77-0.91 s with 2 MiB writes, 0.86-1.07 s
/// with 1 MiB, 1.05-1.09 s with 256 KiB; the disk is not what limits a fetch).
pub const CHUNK: usize = 1 << 20;
/// Chunks in existence: one filling, one being written, two queued. With the hash queue of
/// the client, the memory is best spent on queues: 1 GiB fetches took (median of 4,
/// interleaved) 1.65 s with 4 x 1 MiB here and 8 records queued for hashing, 1.78 s with
/// 3 x 2 MiB and 4 records, at 11.7 and 12.7 MiB peak RSS.
pub const CHUNKS: usize = 4;

/// An aligned buffer of `CHUNK` bytes, `len` of them filled.
struct Chunk {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl Chunk {
    fn new() -> Option<Self> {
        let buf = vec![0u8; CHUNK + ALIGN];
        let start = buf.as_ptr().align_offset(ALIGN);
        (start < ALIGN).then_some(Self { buf, start, len: 0 })
    }

    fn filled(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }

    /// Copies as much of `data` as fits below `cap` (at most CHUNK) bytes; returns how much.
    fn fill(&mut self, data: &[u8], cap: usize) -> usize {
        let space = &mut self.buf[self.start + self.len..self.start + cap.min(CHUNK)];
        let n = space.len().min(data.len());
        space[..n].copy_from_slice(&data[..n]);
        self.len += n;
        n
    }
}

/// One write for the writer thread: the chunk's bytes at `at`; the first `direct` of them
/// (a multiple of ALIGN) may go through the direct handle, the rest go through the ordinary one.
struct Job {
    chunk: Chunk,
    at: u64,
    direct: usize,
}

/// Writes the bytes of a received file, from a given offset on, through the writer thread.
pub struct DirectWriter {
    current: Option<Chunk>,
    /// File offset of `current`'s first byte.
    offset: u64,
    jobs: Option<SyncSender<Job>>,
    done: Receiver<io::Result<Chunk>>,
    allocated: usize,
    in_flight: usize,
    /// Gives the number of bytes that went through the direct handle.
    worker: Option<JoinHandle<u64>>,
}

/// The writer thread's handles: `direct` until the file system refuses a direct write.
struct Handles {
    direct: Option<File>,
    plain: File,
    /// Bytes written through `direct`.
    direct_bytes: u64,
}

impl Handles {
    fn write(&mut self, job: &Job) -> io::Result<()> {
        let data = job.chunk.filled();
        let mut split = job.direct.min(data.len());
        if split > 0
            && let Some(d) = &self.direct
        {
            match d.write_all_at(&data[..split], job.at) {
                Ok(()) => self.direct_bytes += split as u64,
                // EINVAL: the device wants a larger alignment, or the file system only
                // pretended to support O_DIRECT. Fall back for good; the ordinary handle
                // writes the same bytes at the same place.
                Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                    self.direct = None;
                    split = 0;
                }
                Err(e) => return Err(e),
            }
        } else {
            split = 0;
        }
        self.plain
            .write_all_at(&data[split..], job.at + split as u64)
    }
}

impl DirectWriter {
    /// A writer for `file` (open for writing) whose next byte goes at `offset`, or None where
    /// direct I/O cannot be used: then write through `file` itself. From an offset that is not
    /// a multiple of ALIGN (a resumed partial file), the bytes up to the next multiple go
    /// through the ordinary handle and the rest direct.
    ///
    /// The writer's own two handles are opened through `/proc/self/fd`, i.e. on the very file
    /// `file` is open on, never by its name again: a name in the target directory swapped for
    /// a symlink meanwhile cannot redirect the writes.
    pub fn open(file: &File, offset: u64) -> Option<Self> {
        let same_file = format!("/proc/self/fd/{}", file.as_raw_fd());
        let direct = OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
            .open(&same_file)
            .ok()?;
        let plain = OpenOptions::new().write(true).open(&same_file).ok()?;
        let first = Chunk::new()?;
        let (jobs, inbox) = sync_channel::<Job>(CHUNKS);
        let (give_back, done) = sync_channel(CHUNKS);
        let mut handles = Handles {
            direct: Some(direct),
            plain,
            direct_bytes: 0,
        };
        let worker = std::thread::Builder::new()
            .name("writer".into())
            .spawn(move || {
                for job in inbox {
                    let r = handles.write(&job).map(|()| job.chunk);
                    let failed = r.is_err();
                    if give_back.send(r).is_err() || failed {
                        break;
                    }
                }
                handles.direct_bytes
            })
            .ok()?;
        Some(Self {
            current: Some(first),
            offset,
            jobs: Some(jobs),
            done,
            allocated: 1,
            in_flight: 0,
            worker: Some(worker),
        })
    }

    /// Queues `data` to be written after everything before it. May return the error of an
    /// earlier write that failed meanwhile ([`finish`](Self::finish) returns it at the latest).
    pub fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let chunk = match self.current.as_mut() {
                Some(c) => c,
                None => {
                    let c = self.free_chunk()?;
                    self.current.insert(c)
                }
            };
            let (cap, direct) = match self.offset % ALIGN as u64 {
                0 => (CHUNK, CHUNK),
                // Up to the next aligned offset, through the ordinary handle.
                r => (ALIGN - r as usize, 0),
            };
            let n = chunk.fill(data, cap);
            data = &data[n..];
            if chunk.len == cap {
                let full = self.current.take().expect("filled just now");
                self.submit(full, direct)?;
            }
        }
        Ok(())
    }

    /// Writes what is still buffered and waits for every write: afterwards the file holds all
    /// the bytes given to [`write`](Self::write), or the first error is returned. Returns how
    /// many of them went through direct I/O.
    pub fn finish(mut self) -> io::Result<u64> {
        if let Some(last) = self.current.take()
            && last.len > 0
        {
            let direct = if self.offset.is_multiple_of(ALIGN as u64) {
                last.len / ALIGN * ALIGN
            } else {
                0
            };
            self.submit(last, direct)?;
        }
        self.jobs.take();
        while self.in_flight > 0 {
            self.take_back()?;
        }
        Ok(self.worker.take().and_then(|w| w.join().ok()).unwrap_or(0))
    }

    fn submit(&mut self, chunk: Chunk, direct: usize) -> io::Result<()> {
        let at = self.offset;
        self.offset += chunk.len as u64;
        let job = Job { chunk, at, direct };
        let sent = self.jobs.as_ref().map(|j| j.send(job));
        match sent {
            Some(Ok(())) => {
                self.in_flight += 1;
                Ok(())
            }
            // The thread stopped after a failed write: report that write's error.
            _ => loop {
                self.take_back()?;
            },
        }
    }

    /// A new chunk while fewer than CHUNKS exist, else the next one the writer is done with.
    fn free_chunk(&mut self) -> io::Result<Chunk> {
        if self.allocated < CHUNKS
            && let Some(c) = Chunk::new()
        {
            self.allocated += 1;
            return Ok(c);
        }
        let mut c = self.take_back()?;
        c.len = 0;
        Ok(c)
    }

    /// The next finished write's chunk, or its error.
    fn take_back(&mut self) -> io::Result<Chunk> {
        match self.done.recv() {
            Ok(r) => {
                self.in_flight = self.in_flight.saturating_sub(1);
                r
            }
            Err(_) => {
                self.in_flight = 0;
                Err(io::Error::other("the writer thread ended early"))
            }
        }
    }
}

impl Drop for DirectWriter {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn pattern(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 12) as u8)
            .collect()
    }

    /// A writer for the file at `path`, opened for appending as a resumed partial file is.
    fn open_at(path: &Path, offset: u64) -> Option<DirectWriter> {
        let f = OpenOptions::new().append(true).open(path).unwrap();
        DirectWriter::open(&f, offset)
    }

    /// Writes `data` in pieces of the given sizes (cycled) from `offset` on; returns how many
    /// bytes went through direct I/O.
    fn write_in_pieces(path: &Path, offset: u64, data: &[u8], pieces: &[usize]) -> u64 {
        let mut w = open_at(path, offset).expect("direct I/O in the test's temp dir");
        let mut rest = data;
        for &p in pieces.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let n = p.min(rest.len());
            w.write(&rest[..n]).unwrap();
            rest = &rest[n..];
        }
        w.finish().unwrap()
    }

    #[test]
    fn bytes_in_any_pieces_arrive_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        for (i, len) in [0, 1, ALIGN - 1, ALIGN, CHUNK, CHUNK + 1, 3 * CHUNK + 12_345]
            .into_iter()
            .enumerate()
        {
            let path = dir.path().join(format!("f{i}"));
            File::create(&path).unwrap();
            if open_at(&path, 0).is_none() {
                eprintln!("note: no O_DIRECT on this file system, nothing to test");
                return;
            }
            let data = pattern(len, i as u8);
            let direct = write_in_pieces(&path, 0, &data, &[1, 4095, 70_000, CHUNK + 7, 262_144]);
            assert_eq!(std::fs::read(&path).unwrap(), data, "{len} bytes");
            // Every whole block went direct; only the tail through the page cache.
            assert_eq!(direct, (len / ALIGN * ALIGN) as u64, "{len} bytes");
        }
    }

    #[test]
    fn writing_after_a_prefix_keeps_it_from_aligned_and_unaligned_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let prefix = pattern(5 * ALIGN, 1);
        std::fs::write(&path, &prefix).unwrap();
        if open_at(&path, 0).is_none() {
            eprintln!("note: no O_DIRECT on this file system, nothing to test");
            return;
        }
        let rest = pattern(CHUNK + 999, 2);
        write_in_pieces(&path, prefix.len() as u64, &rest, &[65_536]);
        let whole = [prefix, rest].concat();
        assert_eq!(std::fs::read(&path).unwrap(), whole);
        // A partial file cut off the block grid: a short head, then whole blocks.
        for (len, pieces) in [(4097, &[100_000][..]), (ALIGN + 1, &[1, 2, ALIGN][..])] {
            std::fs::write(&path, &whole[..len]).unwrap();
            let direct = write_in_pieces(&path, len as u64, &whole[len..], pieces);
            assert_eq!(std::fs::read(&path).unwrap(), whole, "resumed at {len}");
            let aligned_end = whole.len() / ALIGN * ALIGN;
            let head_end = len.next_multiple_of(ALIGN);
            assert_eq!(direct, (aligned_end - head_end) as u64, "resumed at {len}");
        }
    }

    #[test]
    fn dropping_a_writer_without_finishing_does_not_hang() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        File::create(&path).unwrap();
        let Some(mut w) = open_at(&path, 0) else {
            return;
        };
        w.write(&pattern(2 * CHUNK + 5, 3)).unwrap();
        drop(w);
        // The full chunks were handed over and are written by the time the thread is joined.
        assert!(std::fs::metadata(&path).unwrap().len() >= CHUNK as u64);
    }
}
