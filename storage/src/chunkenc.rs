//! Column codecs: how a column of timestamps or values is turned into bytes and back.
//!
//! Every encoded column starts with a one-byte codec number (see `docs/format/blocks.md`), so a
//! block can mix codecs and a better codec can be added later without rewriting old blocks.
//! Codec numbers are never reused.
//!
//! Decoders take untrusted bytes (a corrupt block on disk) and return [`DecodeError`], never panic.

mod bitstream;
pub mod constant;
pub mod decimal;
pub mod hex;
pub mod histogram;
pub mod pco;
pub mod start;
pub mod timestamp;
pub mod value;
pub mod varint;

/// Codec number of [`timestamp::encode`]: delta-of-delta, zigzag varints.
pub const CODEC_TIMESTAMP_DOD: u8 = 1;
/// Codec number of [`value::encode`]: Gorilla XOR of consecutive IEEE-754 bit patterns.
pub const CODEC_VALUE_XOR: u8 = 2;
// 3 is the exemplar label dictionary (`block::CODEC_LABELS_DICT`).
/// Codec number of [`pco::encode_timestamps`]: Pcodec over `i64` timestamps.
pub const CODEC_TIMESTAMP_PCO: u8 = 4;
/// Codec number of [`pco::encode_values`]: Pcodec over `f64` values.
pub const CODEC_VALUE_PCO: u8 = 5;
// 6 and 7 are the histogram layout and bucket columns (`block::CODEC_HISTOGRAM_*`).
/// Codec number of [`start::encode`]: start timestamps as residuals from a prediction, in runs.
pub const CODEC_START_PREDICTED: u8 = 8;
/// Codec number of [`constant::encode_steps`]: timestamps a fixed step apart.
pub const CODEC_TIMESTAMP_STEPS: u8 = 9;
/// Codec number of [`constant::encode_same`]: one value, repeated.
pub const CODEC_VALUE_SAME: u8 = 10;
/// Codec number of [`decimal::encode`]: decimals of a few places, as packed differences.
pub const CODEC_VALUE_DECIMAL: u8 = 11;

/// Why a column could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("column ends early: wanted {wanted} more bytes")]
    Truncated { wanted: usize },
    #[error("unknown codec {0}")]
    UnknownCodec(u8),
    #[error("varint overflows 64 bits")]
    VarintOverflow,
    #[error("{0}")]
    Invalid(&'static str),
}
