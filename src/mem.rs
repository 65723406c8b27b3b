//! In-memory byte pipes implementing [`Transport`], for tests and fuzzing without sockets.
//!
//! Each direction is a [`Queue`] that a test can also reach directly, to read, alter, drop or
//! reorder bytes in flight before the other side reads them.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use crate::conn::Transport;

#[derive(Default)]
struct Inner {
    buf: VecDeque<u8>,
    closed: bool,
}

/// One direction of a pipe.
#[derive(Default)]
pub struct Queue {
    inner: Mutex<Inner>,
    ready: Condvar,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread poisons the lock; the bytes are still fine to use.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes and returns everything queued.
    pub fn take_all(&self) -> Vec<u8> {
        self.lock().buf.drain(..).collect()
    }

    /// Appends bytes as if the writer had sent them.
    pub fn put(&self, bytes: &[u8]) {
        self.lock().buf.extend(bytes);
        self.ready.notify_all();
    }

    /// Marks the end of the stream: the reader sees EOF once the queue is drained.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    pub fn len(&self) -> usize {
        self.lock().buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One end of an in-memory pipe.
pub struct MemEnd {
    pub inbox: Arc<Queue>,
    pub outbox: Arc<Queue>,
    deadline: Option<Instant>,
}

/// Two connected ends.
pub fn pair() -> (MemEnd, MemEnd) {
    let a = Arc::new(Queue::default());
    let b = Arc::new(Queue::default());
    (
        MemEnd {
            inbox: a.clone(),
            outbox: b.clone(),
            deadline: None,
        },
        MemEnd {
            inbox: b,
            outbox: a,
            deadline: None,
        },
    )
}

impl Read for MemEnd {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut g = self.inbox.lock();
        loop {
            if !g.buf.is_empty() {
                return g.buf.read(out);
            }
            if g.closed {
                return Ok(0);
            }
            g = match self.deadline {
                None => self.inbox.ready.wait(g).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
                    }
                    self.inbox
                        .ready
                        .wait_timeout(g, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }
}

impl Write for MemEnd {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outbox.put(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for MemEnd {
    fn drop(&mut self) {
        self.outbox.close();
    }
}

impl Transport for MemEnd {
    fn set_deadline(&mut self, deadline: Option<Instant>) -> io::Result<()> {
        self.deadline = deadline;
        Ok(())
    }
}
