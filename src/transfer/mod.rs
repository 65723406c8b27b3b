//! Requests and signed file streams over an established [`Channel`](crate::conn::Channel).
//!
//! Server ([`server`]): answers `Get` with `FileStart`, `Data`..., `FileEnd` (a signed statement
//! binding path, size and SHA-256), a recursive `Get` of a directory with a tree (one signature
//! over the manifest of all entries), and `List` with `Listing`... `ListEnd`; anything it
//! refuses is an `Error` message. Client ([`client`]): streams into hidden files beside the
//! destination while hashing, checks digests and signatures, keeps the signature for
//! `minitls verify`, and only then renames into place. The two files mirror each other.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

use crate::conn::ConnError;
use crate::paths::PathError;
use crate::wire::ErrorCode;

pub mod cache;
pub mod client;
#[cfg(target_os = "linux")]
pub mod direct;
pub mod land;
pub mod push;
mod receive;
pub mod server;
mod stage;
pub mod upload;

pub use cache::StatementCache;
pub use client::{
    Fetch, FetchOptions, Fetched, MAX_LIST_ENTRIES_TOTAL, PIPELINE_WINDOW, TreeFetched, close,
    fetch, fetch_all, fetch_file, list, list_counted,
};
pub use push::{PushOptions, Pushed, push};
pub use server::{RequestRecord, RequestResult, ServeOptions, Session, serve_requests};
pub use stage::remove_staging_in_progress;

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
    #[error("refusing to write: {0}")]
    Refused(String),
    /// The server ended the connection and said why, in an authenticated Goodbye.
    #[error("the server ended the connection: {0}")]
    Ended(crate::wire::Alert),
    /// The server closed the session (its authenticated Close) instead of answering: it is
    /// stopping.
    #[error("the server closed the session (it is stopping)")]
    Closed,
}

impl TransferError {
    /// True when the transfer was cut off by the network and `fetch --resume` can continue it.
    pub fn is_resumable(&self) -> bool {
        matches!(
            self,
            Self::Conn(ConnError::Truncated | ConnError::Timeout | ConnError::Io(_))
        )
    }
}

/// Receives progress of a transfer (the CLI draws bars; the library stays quiet).
pub trait Progress {
    fn begin(&mut self, _name: &str, _total_bytes: u64) {}
    fn advance(&mut self, _bytes: u64) {}
    /// For trees: `done` of `total` files are in.
    fn file_done(&mut self, _done: u64, _total: u64) {}
    fn end(&mut self) {}
}

/// Progress that shows nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

/// An I/O error's text without Rust's "(os error N)" and without any path: the client is
/// told what failed, never where the server keeps its files.
pub(crate) fn plain_io(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::StorageFull => "no space left on the server".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        io::ErrorKind::NotFound => "no such file or directory".into(),
        io::ErrorKind::FileTooLarge => "file too large for the server's file system".into(),
        _ => {
            let text = e.to_string();
            match text.find(" (os error") {
                Some(i) => text[..i].to_string(),
                None => text,
            }
        }
    }
}
