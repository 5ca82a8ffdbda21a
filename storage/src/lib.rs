//! Amber's storage engine: series, float samples and exemplars, kept durably on RocksDB.
//!
//! The engine knows nothing of HTTP or wire formats: callers hand it validated label sets,
//! samples and exemplars ([`Storage::append`]) and read them back by label matchers and time range.
//! On-disk layouts are documented in `docs/format/`; the write path, sealing and retention in
//! `docs/ARCHITECTURE.md`.
//!
//! # Layout
//! - [`chunkenc`] — column codecs (timestamps, values).
//! - [`block`] — sealed columnar blocks of samples and of exemplars.
//! - [`keys`] — every RocksDB key layout and column family.
//! - [`labels`] — label sets, their encoding and validation rules.
//! - [`index`] — series ids, postings, matchers, label names and values.
//! - [`append`] — the write path: checking samples and exemplars and accepting them into the head.
//! - [`head`] — samples and exemplars not yet sealed, in memory.
//! - [`wal`] — the head's write-ahead log.
//! - [`querier`] — reading samples and exemplars back, and trace-id lookups.
//! - [`seal`] — moving head data into sealed blocks.
//! - [`retention`] — deleting whole windows older than the retention period.
//! - [`metadata`] — metric metadata (type, help, unit).
//! - [`blockfile`] — a tenant's sealed window as one immutable, range-readable file.
//! - [`objstore`] — the object-storage trait and its `object_store`-backed bucket.
//! - [`upload`] — sealed windows to block files in the bucket, and the bucket index.
//! - [`source`] — the read side as the read API asks for it, by tenant name and series labels.
//! - [`compactor`] — merging uploaded windows into longer ones, bucket retention, the lease.
//! - [`bucket_source`] — uploaded windows read back from the bucket as a read source, and the
//!   local-disk cache of block-file reads.
//! - [`inspect`] — a store opened read-only beside a running Amber, and `amber inspect`'s report.
//! - [`verify`] — `amber verify`: every block and log record of a read-only store checked.

pub mod append;
pub mod backfill;
pub mod block;
pub mod blockfile;
pub mod bucket_source;
pub mod cardinality;
pub mod chunkenc;
pub mod compactor;
mod db;
mod error;
mod gc;
pub mod head;
pub mod index;
pub mod inspect;
pub mod keys;
pub mod labels;
pub mod metadata;
pub mod objstore;
pub mod querier;
pub mod retention;
pub mod seal;
pub mod snapshot;
pub mod source;
pub mod tenant;
pub mod upload;
pub mod verify;
mod wal;
#[cfg(fuzzing)]
pub use wal::fuzz_record as fuzz_wal_record;

pub use amber_histogram::{self as histogram, Histogram};
pub use append::{AppendReport, DataKind, RejectReason, Rejection, SeriesCreation, SeriesWrite};
pub use db::{Options, Storage, StorageStats};
pub use error::{Error, Result};
pub use head::HeadStats;
pub use index::{MatchOp, Matcher};
pub use labels::{Label, Labels};
pub use metadata::{MetricMetadata, MetricType};
pub use tenant::TenantId;

/// A series' id: handed out once, in increasing order, and never reused.
pub type SeriesId = u64;

/// Prometheus's staleness marker: the NaN bit pattern a sender writes when a series ends.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// No start timestamp: remote write 2.0 and the block and log formats use 0 for "unknown".
pub const NO_START: i64 = 0;

/// One float sample. `ts` is milliseconds since the Unix epoch. `start_ts` is its start
/// timestamp (remote write 2.0's `start_timestamp`, OTLP's `start_time_unix_nano`): when the
/// counter it belongs to last started from zero, or [`NO_START`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub ts: i64,
    pub value: f64,
    pub start_ts: i64,
}

impl Sample {
    pub fn is_stale_marker(&self) -> bool {
        self.value.to_bits() == STALE_NAN_BITS
    }
}

/// Float samples as columns, as a reader that goes series by series keeps them: times and
/// values apart, so a block's columns decode straight into them and a reader's own (time, value)
/// pairs are one pass away. `starts` is empty when no sample has a start timestamp, else one per
/// sample ([`NO_START`] where one has none).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SampleColumns {
    pub ts: Vec<i64>,
    pub values: Vec<f64>,
    pub starts: Vec<i64>,
}

impl SampleColumns {
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// Empties the columns, keeping their room.
    pub fn clear(&mut self) {
        self.truncate(0);
    }

    /// Keeps the first `len` samples.
    pub fn truncate(&mut self, len: usize) {
        self.ts.truncate(len);
        self.values.truncate(len);
        self.starts.truncate(len);
    }

    /// The samples one by one.
    pub fn samples(&self) -> impl Iterator<Item = Sample> + '_ {
        let start = |i: usize| self.starts.get(i).copied().unwrap_or(NO_START);
        (0..self.len()).map(move |i| Sample { ts: self.ts[i], value: self.values[i], start_ts: start(i) })
    }

    /// Appends samples (after the ones held, in time order).
    pub fn extend(&mut self, samples: impl IntoIterator<Item = Sample>) {
        for s in samples {
            // The first start timestamp gives the samples before it theirs: none.
            if s.start_ts != NO_START || !self.starts.is_empty() {
                self.starts.resize(self.len(), NO_START);
                self.starts.push(s.start_ts);
            }
            self.ts.push(s.ts);
            self.values.push(s.value);
        }
    }
}

/// One native histogram sample. `ts` is milliseconds since the Unix epoch; `start_ts` as for
/// [`Sample`].
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSample {
    pub ts: i64,
    pub start_ts: i64,
    pub h: Histogram,
}

/// One exemplar: a sample of the request that produced it, with labels such as `trace_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    pub ts: i64,
    pub value: f64,
    pub labels: Labels,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
