//! The write path: validating a request's samples and exemplars against what each series already
//! holds, putting the accepted ones into the head, and making them durable.
//!
//! All of a request's accepted data becomes one write-ahead-log record, appended while the
//! append lock is held (so record order is head order) and fsynced, shared with concurrent
//! requests, before [`Storage::append`] returns: a caller that is told "written" can crash the
//! next instant and lose nothing. The same timestamp with the same value is a duplicate, ignored,
//! so retries are idempotent.
//!
//! Ordering and duplicate checks use each series' [`HeadState`] (newest timestamp and value),
//! loaded from the head and the newest sealed block the first time a series is written after it
//! entered the head. A sample newer than the series' newest needs no lookup; an older one (out of
//! order, or a retry) is looked up in the head and, failing that, in its window's sealed block.
//! Trace-index keys, window activity and metadata go to RocksDB unsynced: replay rewrites the
//! first two from the log, and sealing flushes RocksDB's memtables before a WAL segment is deleted.

use std::borrow::Cow;
use std::sync::atomic::Ordering;

use roaring::RoaringTreemap;
use rocksdb::{WriteBatch, WriteOptions};
use rustc_hash::FxHashMap;

use crate::db::Storage;
use crate::error::Result;
use crate::head::{HeadState, MemSeries, NONE_YET};
use crate::index::encode_postings;
use crate::keys;
use crate::labels::Labels;
use crate::metadata::MetricMetadata;
use crate::querier::{decode_exemplar_block, decode_histogram_block, decode_sample_block};
use crate::tenant::TenantId;
use crate::wal::SeriesData;
use crate::{Exemplar, HistogramSample, Sample, SeriesId};

/// One series' data in a write request; `labels` must already be validated.
#[derive(Debug, Clone)]
pub struct SeriesWrite {
    pub labels: Labels,
    pub samples: Vec<Sample>,
    /// Native histogram samples; each must pass [`amber_histogram::Histogram::validate`].
    pub histograms: Vec<HistogramSample>,
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
    /// In a window whose local copy was deleted after upload (before the local horizon).
    InObjectStorageOnly,
    /// A new series would take its tenant past this many series.
    SeriesLimit(u64),
    /// A new series beyond what the tenant's new-series rate limit lets it create now; the
    /// same write succeeds later.
    NewSeriesRate,
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
            RejectReason::InObjectStorageOnly => "in_object_storage_only",
            RejectReason::TooFarInFuture => "too_far_in_future",
            RejectReason::SeriesLimit(_) => "series_limit",
            RejectReason::NewSeriesRate => "new_series_rate",
            RejectReason::ExemplarLimit(_) => "exemplar_limit",
        }
    }
}

/// What a refused entry was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    Sample,
    Histogram,
    Exemplar,
}

impl DataKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            DataKind::Sample => "sample",
            DataKind::Histogram => "histogram sample",
            DataKind::Exemplar => "exemplar",
        }
    }
}

/// One refused sample, histogram sample or exemplar.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub series: Labels,
    pub ts: i64,
    pub kind: DataKind,
    pub reason: RejectReason,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = self.kind.as_str();
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
            RejectReason::InObjectStorageOnly => {
                "too old: its window is kept in object storage only (older than local_retention)"
            }
            RejectReason::TooFarInFuture => "too far in the future",
            RejectReason::NewSeriesRate => {
                "a new series beyond the tenant's new-series rate limit (new_series_rate, new_series_burst); retry later"
            }
            RejectReason::SeriesLimit(_) | RejectReason::ExemplarLimit(_) => unreachable!("written above"),
        };
        write!(f, "{what} at {} for series {}: {why}", self.ts, self.series)
    }
}

/// The timestamps a write may have now.
#[derive(Clone, Copy)]
pub(crate) struct Bounds {
    /// The oldest within retention.
    retained_from: i64,
    /// The start of the oldest window with a local copy (the local horizon).
    local_from: i64,
    /// The newest accepted.
    until: i64,
}

impl Storage {
    /// What a write may hold now: retention, the local horizon, the allowed future.
    pub(crate) fn write_bounds(&self) -> Bounds {
        let now = crate::now_ms();
        Bounds {
            retained_from: now.saturating_sub(self.opts.retention_ms),
            local_from: self.local_horizon(),
            until: now.saturating_add(self.opts.max_future_ms),
        }
    }
}

/// Why a timestamp is outside what the store takes now, if it is.
pub(crate) fn outside_bounds(ts: i64, bounds: Bounds) -> Option<RejectReason> {
    if ts < bounds.retained_from {
        Some(RejectReason::TooOld)
    } else if ts < bounds.local_from {
        Some(RejectReason::InObjectStorageOnly)
    } else if ts > bounds.until {
        Some(RejectReason::TooFarInFuture)
    } else {
        None
    }
}

/// Refuses every entry of a series that could not be created.
pub(crate) fn refuse_all(write: &SeriesWrite, reason: RejectReason, report: &mut AppendReport) {
    let samples = write.samples.iter().map(|s| (s.ts, DataKind::Sample));
    let histograms = write.histograms.iter().map(|h| (h.ts, DataKind::Histogram));
    let exemplars = write.exemplars.iter().map(|e| (e.ts, DataKind::Exemplar));
    for (ts, kind) in samples.chain(histograms).chain(exemplars) {
        report.rejected.push(Rejection { series: write.labels.clone(), ts, kind, reason });
    }
}

/// Notes that series `id` is active in `window`, once per run of entries in one window: entries
/// come in time order, so `last_window` saves an entry per sample.
fn mark_touched(touched: &mut Vec<(i64, SeriesId)>, last_window: &mut i64, window: i64, id: SeriesId) {
    if window != *last_window {
        touched.push((window, id));
        *last_window = window;
    }
}

/// Adds `all[i]` to the accepted `kept`, a subsequence of `all`: a prefix of `all` stays
/// borrowed, and the first gap makes it a copy.
fn keep<'a, T: Clone>(kept: &mut Cow<'a, [T]>, all: &'a [T], i: usize) {
    match kept {
        Cow::Borrowed(prefix) if prefix.len() == i => *kept = Cow::Borrowed(&all[..=i]),
        _ => kept.to_mut().push(all[i].clone()),
    }
}

/// Bounds on the series one [`Storage::append`] may create for its tenant.
#[derive(Clone, Copy, Default)]
pub struct SeriesCreation<'a> {
    /// Series the tenant may have in all (`max_series_per_tenant`); `None`: no limit.
    pub max_series: Option<u64>,
    /// Asked, while series creation is serialised, how many of the `n` series the append would
    /// create it may create now; answers at most `n` and takes them from the tenant's budget
    /// (the new-series rate limit). `None`: no limit.
    pub new_series_budget: Option<&'a (dyn Fn(u64) -> u64 + Sync)>,
}

impl SeriesCreation<'_> {
    /// No limit on new series.
    pub const UNLIMITED: SeriesCreation<'static> = SeriesCreation { max_series: None, new_series_budget: None };

    /// At most `max` series for the tenant, created at any rate.
    pub fn at_most(max: u64) -> Self {
        SeriesCreation { max_series: Some(max), new_series_budget: None }
    }
}

/// What [`Storage::append`] did.
#[derive(Debug, Clone, Default)]
pub struct AppendReport {
    pub samples_written: u64,
    pub histograms_written: u64,
    pub exemplars_written: u64,
    /// Samples and exemplars already stored with the same value (retries); not written again.
    pub duplicates_ignored: u64,
    pub rejected: Vec<Rejection>,
    /// Series created by this request.
    pub series_created: u64,
}

/// One series' accepted data, waiting for the log record.
struct Accepted<'a> {
    id: SeriesId,
    /// Borrowed from the request while every sample so far was accepted (the usual case).
    samples: Cow<'a, [Sample]>,
    histograms: Vec<HistogramSample>,
    exemplars: Vec<&'a Exemplar>,
}

impl Storage {
    /// Writes a request's series, samples, exemplars and metadata, durably.
    ///
    /// Returns `Err` only for failures of the store (the caller should retry); samples or
    /// exemplars that can never be written are listed in [`AppendReport::rejected`] while the rest
    /// of the request is written. New series beyond `limits` for the tenant are refused.
    pub fn append(
        &self,
        tenant: TenantId,
        series: &[SeriesWrite],
        metadata: &[MetricMetadata],
        limits: SeriesCreation<'_>,
    ) -> Result<AppendReport> {
        let mut report = AppendReport::default();
        let labels: Vec<&Labels> = series.iter().map(|s| &s.labels).collect();
        // Ids resolved before a series garbage collection may name removed series: resolve again.
        let (ids, next_before, mut wal) = loop {
            let epoch = self.series_gc_epoch.load(Ordering::SeqCst);
            let next_before = *self.next_series_id.lock();
            let ids = self.resolve_series(tenant, &labels, limits)?;
            let wal = self.wal.writer()?;
            if self.series_gc_epoch.load(Ordering::SeqCst) == epoch {
                break (ids, next_before, wal);
            }
        };
        // New ids are handed out in order from `next_before`: the newest one tells how many.
        report.series_created = ids.iter().flatten().map(|&id| (id + 1).saturating_sub(next_before)).max().unwrap_or(0);

        let mut touched: Vec<(i64, SeriesId)> = Vec::new();
        let mut trace_keys: Vec<Vec<u8>> = Vec::new();
        let mut accepted: Vec<Accepted<'_>> = Vec::new();
        // Whatever went into the head goes into the log, even when a later series fails: the head
        // must never hold data a retry would take as already written but that is not durable.
        let checked =
            self.accept(tenant, series, &ids, next_before, &mut report, &mut accepted, &mut touched, &mut trace_keys);
        let data: Vec<SeriesData<'_>> = accepted
            .iter()
            .filter(|a| !a.samples.is_empty() || !a.histograms.is_empty() || !a.exemplars.is_empty())
            .map(|a| SeriesData { id: a.id, samples: &a.samples, histograms: &a.histograms, exemplars: &a.exemplars })
            .collect();
        if !data.is_empty() {
            self.wal.append(&mut wal, &data)?;
        }
        // Duplicates count as written only once the record that wrote them is durable: sync up
        // to the newest record, ours or not.
        let upto = wal.appended();
        drop(wal);
        checked?;

        let mut batch = WriteBatch::default();
        self.put_trace_keys(&mut batch, trace_keys);
        let index = self.cf(keys::CF_INDEX);
        // Only series not yet in a window's activity set are merged into it: once a series is
        // active in the window, a lookup per series and write, with nothing built.
        let mut activity: FxHashMap<i64, RoaringTreemap> = FxHashMap::default();
        {
            let written = self.activity_written.lock();
            for &(window, id) in &touched {
                if !written.get(&(window, tenant)).is_some_and(|already| already.contains(id)) {
                    activity.entry(window).or_default().insert(id);
                }
            }
        }
        for (window, set) in &activity {
            batch.merge_cf(index, keys::activity(*window, tenant), encode_postings(set));
        }
        self.put_metadata(&mut batch, tenant, metadata);
        if !batch.is_empty() {
            let mut opts = WriteOptions::default();
            // Metadata is not in the head's log: make it durable on its own (Prometheus sends it
            // in requests of its own, about once a minute).
            opts.set_sync(!metadata.is_empty());
            self.db.write_opt(batch, &opts)?;
        }
        self.wal.sync(upto)?;
        if !activity.is_empty() {
            self.windows.write().extend(activity.keys().copied());
            let mut written = self.activity_written.lock();
            for (window, set) in activity {
                *written.entry((window, tenant)).or_default() |= set;
            }
        }
        Ok(report)
    }

    /// Checks every sample and exemplar of a request and puts the accepted ones into the head,
    /// collecting them for the log, the windows they touch, and their trace-index keys.
    #[allow(clippy::too_many_arguments)]
    fn accept<'a>(
        &self,
        tenant: TenantId,
        series: &'a [SeriesWrite],
        ids: &[std::result::Result<SeriesId, RejectReason>],
        next_before: SeriesId,
        report: &mut AppendReport,
        accepted: &mut Vec<Accepted<'a>>,
        touched: &mut Vec<(i64, SeriesId)>,
        trace_keys: &mut Vec<Vec<u8>>,
    ) -> Result<()> {
        let bounds = self.write_bounds();
        let head = self.head.series_for_write(ids.iter().flatten().copied());
        for (write, &id) in series.iter().zip(ids) {
            let id = match id {
                Ok(id) => id,
                Err(reason) => {
                    refuse_all(write, reason, report);
                    continue;
                }
            };
            let mem = head.get(&id).expect("series_for_write added every id");
            let mut mem = mem.lock();
            accepted.push(Accepted { id, samples: Cow::Borrowed(&[]), histograms: Vec::new(), exemplars: Vec::new() });
            let out = accepted.last_mut().expect("just pushed");
            let state = match mem.state {
                Some(s) => s,
                None if id >= next_before => HeadState::NEW_SERIES,
                None => self.load_head_state(id, &mem)?,
            };
            let checked =
                self.accept_series(tenant, write, id, bounds, state, &mut mem, out, report, touched, trace_keys);
            // After a failure part-way, what the head holds is the truth: reload it next time.
            mem.state = checked.as_ref().ok().copied();
            checked?;
        }
        Ok(())
    }

    /// [`Storage::accept`] for one series, starting from its write state; returns the new state.
    #[allow(clippy::too_many_arguments)]
    fn accept_series<'a>(
        &self,
        tenant: TenantId,
        write: &'a SeriesWrite,
        id: SeriesId,
        bounds: Bounds,
        mut state: HeadState,
        mem: &mut MemSeries,
        out: &mut Accepted<'a>,
        report: &mut AppendReport,
        touched: &mut Vec<(i64, SeriesId)>,
        trace_keys: &mut Vec<Vec<u8>>,
    ) -> Result<HeadState> {
        // The window the series was last added to `touched` for: once per window, not per sample.
        let mut last_window = NONE_YET;
        for (i, s) in write.samples.iter().enumerate() {
            let bits = s.value.to_bits();
            let reject = |reason| Rejection { series: write.labels.clone(), ts: s.ts, kind: DataKind::Sample, reason };
            if let Some(reason) = outside_bounds(s.ts, bounds) {
                report.rejected.push(reject(reason));
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
                match self.float_at(id, mem, s.ts)?.map(f64::to_bits) {
                    Some(b) if b == bits => {
                        report.duplicates_ignored += 1;
                        continue;
                    }
                    Some(_) => {
                        report.rejected.push(reject(RejectReason::DuplicateTimestamp));
                        continue;
                    }
                    None => {}
                }
            }
            if s.ts <= state.histogram_max_ts && self.histogram_at(id, mem, s.ts)?.is_some() {
                report.rejected.push(reject(RejectReason::DuplicateTimestamp));
                continue;
            }
            mem.insert_sample(*s);
            keep(&mut out.samples, &write.samples, i);
            mark_touched(touched, &mut last_window, self.window_of(s.ts), id);
            report.samples_written += 1;
        }
        for h in &write.histograms {
            let reject =
                |reason| Rejection { series: write.labels.clone(), ts: h.ts, kind: DataKind::Histogram, reason };
            if let Some(reason) = outside_bounds(h.ts, bounds) {
                report.rejected.push(reject(reason));
                continue;
            }
            if h.ts <= state.histogram_max_ts {
                if h.ts < state.histogram_max_ts.saturating_sub(self.opts.out_of_order_window_ms) {
                    report.rejected.push(reject(RejectReason::OutOfOrder));
                    continue;
                }
                match self.histogram_at(id, mem, h.ts)? {
                    Some(bytes) if bytes == crate::head::encode_histogram(&h.h) => {
                        report.duplicates_ignored += 1;
                        continue;
                    }
                    Some(_) => {
                        report.rejected.push(reject(RejectReason::DuplicateTimestamp));
                        continue;
                    }
                    None => {}
                }
            }
            // A series switching between float and histogram samples, as Prometheus allows, but
            // never both at one timestamp.
            if h.ts <= state.sample_max_ts && self.float_at(id, mem, h.ts)?.is_some() {
                report.rejected.push(reject(RejectReason::DuplicateTimestamp));
                continue;
            }
            if state.histogram_max_ts == NONE_YET && !self.histogram_series.read().contains(id) {
                // Before the head holds it, so that no reader skips the series.
                self.histogram_series.write().insert(id);
            }
            state.histogram_max_ts = state.histogram_max_ts.max(h.ts);
            mem.insert_histogram(h);
            out.histograms.push(h.clone());
            mark_touched(touched, &mut last_window, self.window_of(h.ts), id);
            report.histograms_written += 1;
        }
        for e in &write.exemplars {
            let reject =
                |reason| Rejection { series: write.labels.clone(), ts: e.ts, kind: DataKind::Exemplar, reason };
            if let Some(reason) = outside_bounds(e.ts, bounds) {
                report.rejected.push(reject(reason));
                continue;
            }
            if e.ts <= state.exemplar_max_ts {
                let existing = match mem.exemplar_at(e.ts) {
                    Some(x) => Some(x),
                    None => self.sealed_exemplar(id, e.ts)?,
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
            if window > state.exemplar_window {
                state.exemplar_window = window;
                state.exemplars_in_window = 0;
            }
            if window == state.exemplar_window {
                state.exemplars_in_window += 1;
            }
            mem.insert_exemplar(e);
            out.exemplars.push(e);
            self.gather_trace_keys(trace_keys, tenant, id, e);
            touched.push((window, id));
            report.exemplars_written += 1;
        }
        Ok(state)
    }

    /// Adds the trace-index keys of an exemplar (one per trace-id label it carries) to `out`.
    pub(crate) fn gather_trace_keys(&self, out: &mut Vec<Vec<u8>>, tenant: TenantId, id: SeriesId, e: &Exemplar) {
        let window = self.window_of(e.ts);
        for l in e.labels.iter().filter(|l| self.opts.trace_id_labels.contains(&l.name)) {
            out.extend(keys::trace(window, tenant, &l.value, id, e.ts));
        }
    }

    /// Puts trace-index keys into `batch` sorted. The memtable's skip list inserts a key from
    /// where the previous insert left off: in key order each insert is a short walk, where
    /// trace ids' random order searches from the top every time.
    pub(crate) fn put_trace_keys(&self, batch: &mut WriteBatch, mut trace_keys: Vec<Vec<u8>>) {
        trace_keys.sort_unstable();
        let trace_cf = self.cf(keys::CF_TRACE_INDEX);
        for key in trace_keys {
            batch.put_cf(trace_cf, key, []);
        }
    }

    /// Works out a series' write state from its head data and its newest sealed blocks (the
    /// first write after the series entered the head).
    fn load_head_state(&self, id: SeriesId, mem: &MemSeries) -> Result<HeadState> {
        let mut state = HeadState::NEW_SERIES;
        if let Some(s) = mem.newest_sample() {
            state.sample_max_ts = s.ts;
            state.sample_max_bits = s.value.to_bits();
        }
        // A sealed block can only hold something newer if its window is no older than the head's.
        let from = if state.sample_max_ts == NONE_YET { i64::MIN } else { self.window_of(state.sample_max_ts) };
        if let Some((_, b)) = self.newest_block(keys::CF_BLOCKS, id, from)? {
            let newest = decode_sample_block(&b, id)?.last().copied();
            if let Some(s) = newest.filter(|s| s.ts > state.sample_max_ts) {
                state.sample_max_ts = s.ts;
                state.sample_max_bits = s.value.to_bits();
            }
        }
        state.histogram_max_ts = mem.newest_histogram_ts().unwrap_or(NONE_YET);
        if self.histogram_series.read().contains(id) {
            let from =
                if state.histogram_max_ts == NONE_YET { i64::MIN } else { self.window_of(state.histogram_max_ts) };
            if let Some((_, b)) = self.newest_block(keys::CF_HISTOGRAM_BLOCKS, id, from)? {
                if let Some(newest) = decode_histogram_block(&b, id)?.last().filter(|h| h.ts > state.histogram_max_ts) {
                    state.histogram_max_ts = newest.ts;
                }
            }
        }
        state.exemplar_max_ts = mem.newest_exemplar_ts().unwrap_or(NONE_YET);
        let from = if state.exemplar_max_ts == NONE_YET { i64::MIN } else { self.window_of(state.exemplar_max_ts) };
        let mut sealed_in_window = 0;
        if let Some((window, b)) = self.newest_block(keys::CF_EXEMPLAR_BLOCKS, id, from)? {
            let sealed = decode_exemplar_block(&b, id)?;
            if let Some(newest) = sealed.last().filter(|e| e.ts > state.exemplar_max_ts) {
                state.exemplar_max_ts = newest.ts;
            }
            if window == self.window_of(state.exemplar_max_ts) {
                sealed_in_window = sealed.len() as u64;
            }
        }
        if state.exemplar_max_ts != NONE_YET {
            let window = self.window_of(state.exemplar_max_ts);
            state.exemplar_window = window;
            state.exemplars_in_window =
                sealed_in_window + mem.exemplars_between(window, window.saturating_add(self.opts.block_duration_ms));
        }
        Ok(state)
    }

    /// The newest sealed block of a series in a window starting at or after `from`.
    fn newest_block(&self, cf: &str, id: SeriesId, from: i64) -> Result<Option<(i64, Vec<u8>)>> {
        let windows: Vec<i64> = self.windows.read().range(from..).rev().copied().collect();
        for w in windows {
            if let Some(b) = self.db.get_cf(self.cf(cf), keys::block(w, id))? {
                return Ok(Some((w, b)));
            }
        }
        Ok(None)
    }

    /// The float value a series holds at exactly `ts`: in the head, else in its sealed block.
    fn float_at(&self, id: SeriesId, mem: &MemSeries, ts: i64) -> Result<Option<f64>> {
        match mem.sample_at(ts) {
            Some(v) => Ok(Some(v)),
            None => self.sealed_sample(id, ts),
        }
    }

    /// The histogram a series holds at exactly `ts`, encoded as the head encodes it (equal bytes,
    /// equal histograms): in the head, else in its sealed block.
    fn histogram_at(&self, id: SeriesId, mem: &MemSeries, ts: i64) -> Result<Option<Vec<u8>>> {
        if let Some(bytes) = mem.histogram_bytes_at(ts) {
            return Ok(Some(bytes.to_vec()));
        }
        let key = keys::block(self.window_of(ts), id);
        match self.db.get_pinned_cf(self.cf(keys::CF_HISTOGRAM_BLOCKS), key)? {
            Some(b) => {
                let sealed = decode_histogram_block(&b, id)?;
                let found = sealed.binary_search_by_key(&ts, |h| h.ts).ok();
                Ok(found.map(|i| crate::head::encode_histogram(&sealed[i].h)))
            }
            None => Ok(None),
        }
    }

    /// The value sealed for a series at exactly `ts`.
    fn sealed_sample(&self, id: SeriesId, ts: i64) -> Result<Option<f64>> {
        match self.db.get_pinned_cf(self.cf(keys::CF_BLOCKS), keys::block(self.window_of(ts), id))? {
            Some(b) => {
                let samples = decode_sample_block(&b, id)?;
                Ok(samples.binary_search_by_key(&ts, |s| s.ts).ok().map(|i| samples[i].value))
            }
            None => Ok(None),
        }
    }

    /// The exemplar sealed for a series at exactly `ts`.
    fn sealed_exemplar(&self, id: SeriesId, ts: i64) -> Result<Option<Exemplar>> {
        match self.db.get_pinned_cf(self.cf(keys::CF_EXEMPLAR_BLOCKS), keys::block(self.window_of(ts), id))? {
            Some(b) => {
                let mut exemplars = decode_exemplar_block(&b, id)?;
                Ok(exemplars.binary_search_by_key(&ts, |e| e.ts).ok().map(|i| exemplars.swap_remove(i)))
            }
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepted entries borrow the request until one is left out, then are a copy.
    #[test]
    fn kept_entries_borrow_a_prefix_and_copy_after_a_gap() {
        let all = [1, 2, 3, 4];
        let mut kept: Cow<'_, [i32]> = Cow::Borrowed(&[]);
        keep(&mut kept, &all, 0);
        keep(&mut kept, &all, 1);
        assert!(matches!(kept, Cow::Borrowed(&[1, 2])));
        keep(&mut kept, &all, 3);
        assert!(matches!(&kept, Cow::Owned(v) if v == &[1, 2, 4]));
    }
}
