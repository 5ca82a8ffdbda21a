//! The storage crate's error type. Every variant here is a failure of the store, not of the
//! caller's input: input problems are reported per series in [`crate::AppendReport`].

use crate::block::BlockError;
use crate::chunkenc::DecodeError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("corrupt {what} of series {series}: {source}")]
    CorruptBlock { what: &'static str, series: u64, source: BlockError },
    #[error("corrupt index entry {what}: {source}")]
    CorruptIndex { what: &'static str, source: DecodeError },
    #[error("write-ahead log: {0}")]
    Wal(String),
    #[error("the write-ahead log failed earlier ({0}); writes are refused until Amber restarts and replays it")]
    WalFailed(String),
    /// A request to the object store failed (unreachable, refused, timed out, or an object the
    /// bucket index names is gone because a newer upload replaced it). Retryable.
    #[error("object store unavailable reading {key}: {message}")]
    ObjectStore { key: String, message: String },
    /// A block file (or the bucket index) in the object store cannot be decoded.
    #[error("corrupt object in the object store: {0}")]
    CorruptObject(String),
    #[error("the store at {path} was created with {stored}, but was opened with {requested}")]
    IncompatibleOptions { path: String, stored: String, requested: String },
    /// A read would hold more than this many samples ([`crate::source::ReadSource::select_at_most`]).
    #[error("query processing would load too many samples into memory (more than {0})")]
    TooManySamples(usize),
    /// Another Amber read over its API did not answer, or answered that it cannot now:
    /// unreachable, timed out, a 5xx, a 408 or a 429 (the peer's own error text in `message`).
    /// Retryable.
    #[error("{peer}: {message}")]
    Peer { peer: String, message: String },
    /// Another Amber read over its API refused the request for good: any other 4xx (a limit of
    /// its own, credentials it wants). Not retryable: the same request gets the same answer.
    #[error("{peer}: {message}")]
    PeerRefused { peer: String, status: u16, message: String },
}

impl Error {
    /// Whether the error is another process's (a peer, the object store) and a retry may
    /// succeed: the API answers it with a 503, not a 500.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Peer { .. } | Error::ObjectStore { .. })
    }
}
