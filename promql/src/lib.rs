//! Amber's PromQL engine: evaluates parsed PromQL (the `promql-parser` crate) over any
//! [`Queryable`] storage, giving the answers Prometheus gives.
//!
//! The engine knows nothing of HTTP or RocksDB: it asks its storage for series by label
//! matchers and time range, and returns [`Value`]s plus warnings and infos. It runs on
//! [`MemoryStorage`] in tests and on Amber's storage in the server.
//!
//! # Layout
//! - [`engine`] — options, instant and range queries, limits, cancellation.
//! - `durations` — duration expressions (`[5m * 2]`, `offset step()`) resolved before evaluation.
//! - `eval` — the evaluator: selectors, lookback and staleness, `offset`, `@`, subqueries.
//! - `extended` — the experimental `anchored` and `smoothed` selectors.
//! - `binary` — binary operators and vector matching.
//! - `aggregate` — aggregation operators.
//! - `by_series` — range queries evaluated series by series over all steps, where the shape allows.
//! - `functions` — functions, one file per family.
//! - [`stats`] — query statistics (Prometheus's `stats`): samples read per step, peak samples
//!   held, timings.
//! - [`labels`], [`value`], [`storage`] — the data the engine works on.

mod aggregate;
mod binary;
mod by_series;
mod durations;
pub mod engine;
mod error;
mod eval;
mod extended;
mod functions;
pub mod labels;
mod numeric;
pub mod stats;
pub mod storage;
pub mod value;

pub use engine::{Engine, EngineOptions, QueryContext, QueryLimits, QueryOutput};
pub use error::{Error, Result};
pub use labels::Labels;
pub use stats::{QuerySamples, QueryStats, QueryTimings, StatsLevel};
pub use storage::{MatchOp, Matcher, MemoryStorage, Queryable, SelectedSeries};
pub use value::{Histogram, HistogramPoint, Point, Sample, Series, StartTimestamps, Value};

/// Prometheus's staleness marker: the NaN bit pattern a sender writes when a series ends.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}
