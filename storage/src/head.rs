//! The write path: accepting samples and exemplars into the head.
//!
//! Each accepted sample is one `head` key (`series ts` → value), each exemplar one
//! `exemplar_head` key plus its trace-index keys, and every window touched gets the series added to
//! its activity set. All of a request's accepted data goes into one RocksDB write batch whose WAL
//! is fsynced before [`Storage::append`] returns: a caller that is told "written" can crash the next
//! instant and lose nothing. The same key for the same timestamp makes retries idempotent.
//!
//! Ordering and duplicate checks use a small per-series [`HeadState`] in memory (newest timestamp
//! and value), loaded from disk the first time a series is written after a restart. A sample newer
//! than the series' newest needs no disk read; an older one (out of order, or a retry) is looked
//! up in the head and, failing that, in its window's sealed block.

use std::collections::HashMap;

use roaring::RoaringTreemap;
use rocksdb::{Direction, IteratorMode, WriteBatch};

use crate::block;
use crate::chunkenc::varint::Reader;
use crate::db::Storage;
use crate::error::{Error, Result};
use crate::index::encode_postings;
use crate::keys;
use crate::labels::Labels;
use crate::metadata::MetricMetadata;
use crate::tenant::TenantId;
use crate::{Exemplar, Sample, SeriesId};

/// One series' data in a write request; `labels` must already be validated.
#[derive(Debug, Clone)]
pub struct SeriesWrite {
    pub labels: Labels,
    pub samples: Vec<Sample>,
    pub exemplars: Vec<Exemplar>,
}

/// Why one sample or exemplar was refused. The rest of its request is still written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// Older than the series' newest sample by more than the out-of-order window.
    OutOfOrder,
    /// A sample already exists at this timestamp with a different value.
    DuplicateTimestamp,
    /// An exemplar already exists at this timestamp with a different value or labels.
    ConflictingExemplar,
    /// Older than the retention period.
    TooOld,
    /// A new series would take its tenant past this many series.
    SeriesLimit(u64),
    /// The series already has this many exemplars in the exemplar's block window.
    ExemplarLimit(u64),
    /// Further in the future than allowed.
    TooFarInFuture,
}

impl RejectReason {
    /// A short, stable name for metrics (`reason` label).
    pub fn as_str(&self) -> &'static str {
        match self {
            RejectReason::OutOfOrder => "out_of_order",
            RejectReason::DuplicateTimestamp => "duplicate_timestamp",
            RejectReason::ConflictingExemplar => "conflicting_exemplar",
            RejectReason::TooOld => "too_old",
            RejectReason::TooFarInFuture => "too_far_in_future",
            RejectReason::SeriesLimit(_) => "series_limit",
            RejectReason::ExemplarLimit(_) => "exemplar_limit",
        }
    }
}

/// One refused sample or exemplar.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub series: Labels,
    pub ts: i64,
    pub exemplar: bool,
    pub reason: RejectReason,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.exemplar { "exemplar" } else { "sample" };
        if let RejectReason::SeriesLimit(limit) = self.reason {
            return write!(
                f,
                "{what} at {} for series {}: the tenant has reached its limit of {limit} series (max_series_per_tenant)",
                self.ts, self.series
            );
        }
        if let RejectReason::ExemplarLimit(limit) = self.reason {
            return write!(
                f,
                "{what} at {} for series {}: the series has reached its limit of {limit} exemplars in this block window (max_exemplars_per_series_per_window)",
                self.ts, self.series
            );
        }
        let why = match self.reason {
            RejectReason::OutOfOrder => {
                "out of order: older than the series' newest sample by more than the out-of-order window"
            }
            RejectReason::DuplicateTimestamp => "duplicate sample for timestamp with a different value",
            RejectReason::ConflictingExemplar => {
                "an exemplar with a different value or labels exists at this timestamp"
            }
            RejectReason::TooOld => "too old: before the retention period",
            RejectReason::TooFarInFuture => "too far in the future",
            RejectReason::SeriesLimit(_) | RejectReason::ExemplarLimit(_) => unreachable!("written above"),
        };
        write!(f, "{what} at {} for series {}: {why}", self.ts, self.series)
    }
}

/// What [`Storage::append`] did.
#[derive(Debug, Clone, Default)]
pub struct AppendReport {
    pub samples_written: u64,
    pub exemplars_written: u64,
    /// Samples and exemplars already stored with the same value (retries); not written again.
    pub duplicates_ignored: u64,
    pub rejected: Vec<Rejection>,
    /// Series created by this request.
    pub series_created: u64,
}

/// What the write path remembers about a series between requests.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadState {
    sample_max_ts: i64,
    sample_max_bits: u64,
    exemplar_max_ts: i64,
    /// The window of the newest exemplar and how many exemplars that window holds, for
    /// `Options::max_exemplars_per_series_per_window`.
    exemplar_window: i64,
    exemplars_in_window: u64,
}

const NONE_YET: i64 = i64::MIN;

pub(crate) fn decode_head_sample(ts: i64, v: &[u8]) -> Option<Sample> {
    Some(Sample { ts, value: f64::from_bits(u64::from_be_bytes(v.try_into().ok()?)) })
}

pub(crate) fn encode_head_exemplar(e: &Exemplar) -> Vec<u8> {
    let mut v = e.value.to_bits().to_be_bytes().to_vec();
    e.labels.encode_into(&mut v);
    v
}

pub(crate) fn decode_head_exemplar(ts: i64, v: &[u8]) -> Option<Exemplar> {
    let mut r = Reader::new(v);
    let value = f64::from_bits(r.u64_be().ok()?);
    let labels = Labels::decode(&mut r).ok()?;
    Some(Exemplar { ts, value, labels })
}

impl Storage {
    /// Writes a request's series, samples, exemplars and metadata, durably.
    ///
    /// Returns `Err` only for failures of the store (the caller should retry); samples or
    /// exemplars that can never be written are listed in [`AppendReport::rejected`] while the rest
    /// of the request is written. New series beyond `max_series` for the tenant are refused.
    pub fn append(
        &self,
        tenant: TenantId,
        series: &[SeriesWrite],
        metadata: &[MetricMetadata],
        max_series: Option<u64>,
    ) -> Result<AppendReport> {
        let now = crate::now_ms();
        let min_ts = now.saturating_sub(self.opts.retention_ms);
        let max_ts = now.saturating_add(self.opts.max_future_ms);
        let mut report = AppendReport::default();
        let next_before = *self.next_series_id.lock();
        let labels: Vec<&Labels> = series.iter().map(|s| &s.labels).collect();
        let ids = self.resolve_series(tenant, &labels, max_series)?;

        let mut batch = WriteBatch::default();
        let head_cf = self.cf(keys::CF_HEAD);
        let exemplar_cf = self.cf(keys::CF_EXEMPLAR_HEAD);
        let trace_cf = self.cf(keys::CF_TRACE_INDEX);
        let mut touched: HashMap<i64, RoaringTreemap> = HashMap::new();
        let mut heads = self.heads.lock();
        for (write, &id) in series.iter().zip(&ids) {
            let Some(id) = id else {
                let reason = RejectReason::SeriesLimit(max_series.unwrap_or(0));
                let samples = write.samples.iter().map(|s| (s.ts, false));
                for (ts, exemplar) in samples.chain(write.exemplars.iter().map(|e| (e.ts, true))) {
                    report.rejected.push(Rejection { series: write.labels.clone(), ts, exemplar, reason });
                }
                continue;
            };
            let state = match heads.get(&id) {
                Some(s) => *s,
                None if id >= next_before => HeadState {
                    sample_max_ts: NONE_YET,
                    sample_max_bits: 0,
                    exemplar_max_ts: NONE_YET,
                    exemplar_window: NONE_YET,
                    exemplars_in_window: 0,
                },
                None => self.load_head_state(id)?,
            };
            let mut state = state;
            // Out-of-order samples of this request, so a batch cannot contradict itself.
            let mut pending: HashMap<i64, u64> = HashMap::new();
            for s in &write.samples {
                let bits = s.value.to_bits();
                let reject = |reason| Rejection { series: write.labels.clone(), ts: s.ts, exemplar: false, reason };
                if s.ts < min_ts {
                    report.rejected.push(reject(RejectReason::TooOld));
                    continue;
                }
                if s.ts > max_ts {
                    report.rejected.push(reject(RejectReason::TooFarInFuture));
                    continue;
                }
                if s.ts > state.sample_max_ts {
                    state.sample_max_ts = s.ts;
                    state.sample_max_bits = bits;
                } else if s.ts == state.sample_max_ts {
                    if bits != state.sample_max_bits {
                        report.rejected.push(reject(RejectReason::DuplicateTimestamp));
                    } else {
                        report.duplicates_ignored += 1;
                    }
                    continue;
                } else if s.ts < state.sample_max_ts.saturating_sub(self.opts.out_of_order_window_ms) {
                    report.rejected.push(reject(RejectReason::OutOfOrder));
                    continue;
                } else {
                    let existing = match pending.get(&s.ts) {
                        Some(&b) => Some(b),
                        None => self.stored_sample(id, s.ts)?.map(|v| v.to_bits()),
                    };
                    match existing {
                        Some(b) if b == bits => {
                            report.duplicates_ignored += 1;
                            continue;
                        }
                        Some(_) => {
                            report.rejected.push(reject(RejectReason::DuplicateTimestamp));
                            continue;
                        }
                        None => {
                            pending.insert(s.ts, bits);
                        }
                    }
                }
                batch.put_cf(head_cf, keys::head(id, s.ts), bits.to_be_bytes());
                touched.entry(self.window_of(s.ts)).or_default().insert(id);
                report.samples_written += 1;
            }
            let mut pending_exemplars: HashMap<i64, &Exemplar> = HashMap::new();
            for e in &write.exemplars {
                let reject = |reason| Rejection { series: write.labels.clone(), ts: e.ts, exemplar: true, reason };
                if e.ts < min_ts {
                    report.rejected.push(reject(RejectReason::TooOld));
                    continue;
                }
                if e.ts > max_ts {
                    report.rejected.push(reject(RejectReason::TooFarInFuture));
                    continue;
                }
                if e.ts <= state.exemplar_max_ts {
                    let existing = match pending_exemplars.get(&e.ts) {
                        Some(&p) => Some(p.clone()),
                        None => self.stored_exemplar(id, e.ts)?,
                    };
                    match existing {
                        Some(x) if x.value.to_bits() == e.value.to_bits() && x.labels == e.labels => {
                            report.duplicates_ignored += 1;
                            continue;
                        }
                        Some(_) => {
                            report.rejected.push(reject(RejectReason::ConflictingExemplar));
                            continue;
                        }
                        None => {}
                    }
                }
                // Checked after duplicates, so a retried batch is still recognised as written.
                let window = self.window_of(e.ts);
                let limit = self.opts.max_exemplars_per_series_per_window;
                if window == state.exemplar_window && state.exemplars_in_window >= limit {
                    report.rejected.push(reject(RejectReason::ExemplarLimit(limit)));
                    continue;
                }
                state.exemplar_max_ts = state.exemplar_max_ts.max(e.ts);
                pending_exemplars.insert(e.ts, e);
                if window > state.exemplar_window {
                    state.exemplar_window = window;
                    state.exemplars_in_window = 0;
                }
                if window == state.exemplar_window {
                    state.exemplars_in_window += 1;
                }
                batch.put_cf(exemplar_cf, keys::head(id, e.ts), encode_head_exemplar(e));
                for l in e.labels.iter().filter(|l| self.opts.trace_id_labels.contains(&l.name)) {
                    if let Some(key) = keys::trace(window, tenant, &l.value, id, e.ts) {
                        batch.put_cf(trace_cf, key, []);
                    }
                }
                touched.entry(window).or_default().insert(id);
                report.exemplars_written += 1;
            }
            heads.insert(id, state);
        }
        drop(heads);

        let index = self.cf(keys::CF_INDEX);
        {
            let written = self.activity_written.lock();
            for (window, set) in touched.iter_mut() {
                if let Some(already) = written.get(&(*window, tenant)) {
                    *set -= already;
                }
                if !set.is_empty() {
                    batch.merge_cf(index, keys::activity(*window, tenant), encode_postings(set));
                }
            }
        }
        self.put_metadata(&mut batch, tenant, metadata);
        report.series_created = ids.iter().flatten().filter(|&&id| id >= next_before).count() as u64;
        if !batch.is_empty() {
            if let Err(e) = self.write_synced(batch) {
                // What we remembered as written was not: forget it so a retry is checked afresh.
                let mut heads = self.heads.lock();
                for id in ids.iter().flatten() {
                    heads.remove(id);
                }
                return Err(e);
            }
        }
        if !touched.is_empty() {
            self.windows.write().extend(touched.keys().copied());
            let mut written = self.activity_written.lock();
            for (window, set) in touched {
                *written.entry((window, tenant)).or_default() |= set;
            }
        }
        Ok(report)
    }

    /// Reads a series' newest sample and exemplar timestamps from disk (first write after start).
    fn load_head_state(&self, id: SeriesId) -> Result<HeadState> {
        let (sample_max_ts, sample_max_bits) = match self.newest(id, keys::CF_HEAD, keys::CF_BLOCKS)? {
            Some((ts, v)) => {
                let s = match v {
                    Newest::Head(v) => decode_head_sample(ts, &v),
                    Newest::Block(b) => block::decode_samples(&b)
                        .map_err(|source| Error::CorruptBlock { what: "sample block", series: id, source })?
                        .last()
                        .copied(),
                };
                let s = s.ok_or(Error::CorruptIndex {
                    what: "head sample",
                    source: crate::chunkenc::DecodeError::Invalid("not 8 bytes"),
                })?;
                (s.ts, s.value.to_bits())
            }
            None => (NONE_YET, 0),
        };
        let exemplar_max_ts = match self.newest(id, keys::CF_EXEMPLAR_HEAD, keys::CF_EXEMPLAR_BLOCKS)? {
            Some((ts, Newest::Head(_))) => ts,
            Some((_, Newest::Block(b))) => block::decode_exemplars(&b)
                .map_err(|source| Error::CorruptBlock { what: "exemplar block", series: id, source })?
                .last()
                .map_or(NONE_YET, |e| e.ts),
            None => NONE_YET,
        };
        let (exemplar_window, exemplars_in_window) = match exemplar_max_ts {
            NONE_YET => (NONE_YET, 0),
            ts => {
                let window = self.window_of(ts);
                (window, self.head_entries(keys::CF_EXEMPLAR_HEAD, id, window, window + self.opts.block_duration_ms))
            }
        };
        Ok(HeadState { sample_max_ts, sample_max_bits, exemplar_max_ts, exemplar_window, exemplars_in_window })
    }

    /// How many head entries of series `id` in column family `cf` lie in `[from, to)`.
    fn head_entries(&self, cf: &str, id: SeriesId, from: i64, to: i64) -> u64 {
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_iterate_upper_bound(keys::head(id, to));
        let mut iter = self.db.raw_iterator_cf_opt(self.cf(cf), opts);
        iter.seek(keys::head(id, from));
        let mut n = 0;
        while iter.valid() {
            n += 1;
            iter.next();
        }
        n
    }

    /// The newest head entry of a series, or else its newest sealed block.
    fn newest(&self, id: SeriesId, head_cf: &str, blocks_cf: &str) -> Result<Option<(i64, Newest)>> {
        let last = keys::head(id, i64::MAX);
        let mut iter = self.db.iterator_cf(self.cf(head_cf), IteratorMode::From(&last, Direction::Reverse));
        if let Some(item) = iter.next() {
            let (k, v) = item?;
            if k[..8] == id.to_be_bytes() {
                return Ok(Some((keys::read_ordered_i64(&k[8..]), Newest::Head(v.to_vec()))));
            }
        }
        let windows: Vec<i64> = self.windows.read().iter().rev().copied().collect();
        for w in windows {
            if let Some(b) = self.db.get_cf(self.cf(blocks_cf), keys::block(w, id))? {
                return Ok(Some((w, Newest::Block(b))));
            }
        }
        Ok(None)
    }

    /// The value stored for a series at exactly `ts`, in the head or a sealed block.
    fn stored_sample(&self, id: SeriesId, ts: i64) -> Result<Option<f64>> {
        if let Some(v) = self.db.get_pinned_cf(self.cf(keys::CF_HEAD), keys::head(id, ts))? {
            return Ok(decode_head_sample(ts, &v).map(|s| s.value));
        }
        match self.db.get_pinned_cf(self.cf(keys::CF_BLOCKS), keys::block(self.window_of(ts), id))? {
            Some(b) => {
                let samples = block::decode_samples(&b).map_err(|source| Error::CorruptBlock {
                    what: "sample block",
                    series: id,
                    source,
                })?;
                Ok(samples.binary_search_by_key(&ts, |s| s.ts).ok().map(|i| samples[i].value))
            }
            None => Ok(None),
        }
    }

    /// The exemplar stored for a series at exactly `ts`, in the head or a sealed block.
    fn stored_exemplar(&self, id: SeriesId, ts: i64) -> Result<Option<Exemplar>> {
        if let Some(v) = self.db.get_pinned_cf(self.cf(keys::CF_EXEMPLAR_HEAD), keys::head(id, ts))? {
            return Ok(decode_head_exemplar(ts, &v));
        }
        match self.db.get_pinned_cf(self.cf(keys::CF_EXEMPLAR_BLOCKS), keys::block(self.window_of(ts), id))? {
            Some(b) => {
                let mut exemplars = block::decode_exemplars(&b).map_err(|source| Error::CorruptBlock {
                    what: "exemplar block",
                    series: id,
                    source,
                })?;
                Ok(exemplars.binary_search_by_key(&ts, |e| e.ts).ok().map(|i| exemplars.swap_remove(i)))
            }
            None => Ok(None),
        }
    }
}

enum Newest {
    Head(Vec<u8>),
    Block(Vec<u8>),
}
