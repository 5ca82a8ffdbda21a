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
    #[error("the store at {path} was created with {stored}, but was opened with {requested}")]
    IncompatibleOptions { path: String, stored: String, requested: String },
}
