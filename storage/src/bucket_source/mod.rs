//! [`BucketSource`]: a tenant's uploaded windows, read from the bucket, as a [`ReadSource`] —
//! what a querier with no local data answers from.
//!
//! A request reads the tenant's bucket index (kept for [`BucketSourceOptions::index_refresh`]),
//! picks the windows whose data overlaps the asked range, and reads from each block file only
//! what it needs (`docs/format/bucket.md`, "Reading a block file"): the tail (trailer and table
//! of contents), the series list, the index of each asked-for column, then the blocks of the
//! matching series, neighbouring blocks in one range request. What is parsed from a file once —
//! table of contents, series, column indexes, trace filter — is kept in memory by object key
//! within [`BucketSourceOptions::open_files_bytes`]: block files never change. Windows are read
//! [`BucketSourceOptions::concurrency`] at a time.
//!
//! Selectors are matched against each window's series list with [`Matcher::matches`] (a series
//! without a label matches as if its value were empty), as the local index matches them.
//!
//! # Blocking
//! [`ReadSource`] is synchronous and called from blocking threads (`spawn_blocking`); the object
//! store is asynchronous. Each call blocks on the runtime whose [`Handle`] the source was made
//! with, which must be a multi-thread runtime (its workers drive the I/O), and must not be made
//! from one of that runtime's worker threads (`Handle::block_on` panics there).

pub mod cache;
mod open_files;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::OnceCell;

use crate::blockfile::reader::TAIL_BYTES;
use crate::blockfile::{BlockFile, BlockFileError, Column, ColumnIndex, TraceFilter};
use crate::error::{Error, Result};
use crate::index::Matcher;
use crate::labels::Labels;
use crate::objstore::{ObjectStorage, ObjectStoreError};
use crate::querier::TracedExemplar;
use crate::source::{Columns, ReadSource, SeriesData, merge_by_ts};
use crate::upload::index::{self, BucketIndex, IndexedWindow};
use crate::{Exemplar, HistogramSample, Sample, block};
use open_files::{OpenFile, OpenFiles};

pub use cache::{RangeCache, RangeCacheStats};

/// How a [`BucketSource`] reads.
#[derive(Debug, Clone)]
pub struct BucketSourceOptions {
    /// How long a tenant's bucket index is used before it is read again: an upload becomes
    /// visible to queries at most this late.
    pub index_refresh: Duration,
    /// Memory for opened block files (tails, series lists, column indexes, trace filters).
    pub open_files_bytes: usize,
    /// Bytes read from a block file's end when it is opened: trailer and table of contents, and
    /// every section of a file this small.
    pub tail_bytes: u64,
    /// Windows read at once by one request.
    pub concurrency: usize,
    /// Exemplar labels whose values are trace ids (the writers' `trace_id_labels`).
    pub trace_id_labels: Vec<String>,
}

impl Default for BucketSourceOptions {
    fn default() -> Self {
        BucketSourceOptions {
            index_refresh: Duration::from_secs(10),
            open_files_bytes: 256 << 20,
            tail_bytes: TAIL_BYTES,
            concurrency: 16,
            trace_id_labels: crate::Options::default().trace_id_labels,
        }
    }
}

/// The bucket as a read source; see the module documentation.
pub struct BucketSource {
    store: Arc<dyn ObjectStorage>,
    runtime: Handle,
    opts: BucketSourceOptions,
    /// Bucket indexes by tenant, with when they were read.
    indexes: Mutex<HashMap<String, (Instant, Arc<BucketIndex>)>>,
    files: OpenFiles,
    /// Only windows starting before this are read (a store reading its own uploads: later ones
    /// are still on its disk).
    windows_before: Option<WindowsBefore>,
}

/// The start of the first window a [`BucketSource`] leaves to another source, asked per read.
pub type WindowsBefore = Arc<dyn Fn() -> i64 + Send + Sync>;

impl BucketSource {
    /// Reads `store`'s windows, blocking on `runtime` (a multi-thread runtime; see the module
    /// documentation).
    pub fn new(store: Arc<dyn ObjectStorage>, runtime: Handle, opts: BucketSourceOptions) -> BucketSource {
        let files = OpenFiles::new(opts.open_files_bytes);
        BucketSource { store, runtime, opts, indexes: Mutex::new(HashMap::new()), files, windows_before: None }
    }

    /// Reads only the windows starting before `before()`: a single node with local copies of its
    /// recent windows (`Storage::local_horizon`) reads the bucket for the rest only.
    pub fn with_windows_before(mut self, before: WindowsBefore) -> BucketSource {
        self.windows_before = Some(before);
        self
    }

    /// Bytes and entries held for opened block files.
    pub fn open_files(&self) -> (usize, usize) {
        self.files.size()
    }

    /// Runs `read` with the tenant's index; if it fails on the object store, once more with the
    /// index read again: a window re-sealed and uploaded again since the index was read has its
    /// old block file deleted.
    fn with_index<T, F, Fut>(&self, tenant: &str, read: F) -> Result<T>
    where
        F: Fn(Arc<BucketIndex>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.runtime.block_on(async {
            let index = self.index(tenant, false).await?;
            match read(self.limited(index)).await {
                Err(Error::ObjectStore { .. }) => read(self.limited(self.index(tenant, true).await?)).await,
                done => done,
            }
        })
    }

    /// `index` without the windows left to another source.
    fn limited(&self, index: Arc<BucketIndex>) -> Arc<BucketIndex> {
        let Some(before) = &self.windows_before else { return index };
        let before = before();
        if index.windows.iter().all(|w| w.start < before) {
            return index;
        }
        let windows = index.windows.iter().filter(|w| w.start < before).cloned().collect();
        Arc::new(BucketIndex { windows, ..(*index).clone() })
    }

    async fn index(&self, tenant: &str, fresh: bool) -> Result<Arc<BucketIndex>> {
        if !fresh {
            if let Some((at, index)) = self.indexes.lock().get(tenant) {
                if at.elapsed() < self.opts.index_refresh {
                    return Ok(index.clone());
                }
            }
        }
        let read = index::read(&*self.store, tenant).await.map_err(|e| store_error(&index::index_key(tenant), e))?;
        let read = Arc::new(read);
        let mut indexes = self.indexes.lock();
        // Expired entries go, so the map holds only tenants asked about recently.
        indexes.retain(|_, (at, _)| at.elapsed() < self.opts.index_refresh);
        indexes.insert(tenant.to_string(), (Instant::now(), read.clone()));
        Ok(read)
    }

    async fn open(&self, window: &IndexedWindow) -> Result<Arc<OpenFile>> {
        if let Some(f) = self.files.get(&window.object) {
            return Ok(f);
        }
        let file = BlockFile::open(&*self.store, &window.object, window.bytes, self.opts.tail_bytes)
            .await
            .map_err(|e| block_error(&window.object, e))?;
        let f = Arc::new(OpenFile::new(file));
        self.files.insert(&window.object, f.clone());
        Ok(f)
    }

    /// A part of `f` parsed once into `cell`, counted against the memory budget when first read.
    async fn parsed<'c, T, Fut>(&self, f: &Arc<OpenFile>, cell: &'c OnceCell<T>, read: Fut) -> Result<&'c T>
    where
        Fut: Future<Output = std::result::Result<T, BlockFileError>>,
    {
        let first = !cell.initialized();
        let value = cell.get_or_try_init(|| read).await.map_err(|e| block_error(f.file.key(), e))?;
        if first {
            self.files.grew(f.file.key(), f);
        }
        Ok(value)
    }

    async fn series_list(&self, f: &Arc<OpenFile>) -> Result<Arc<Vec<Labels>>> {
        let read = async { f.file.series(&*self.store).await.map(Arc::new) };
        Ok(self.parsed(f, &f.series, read).await?.clone())
    }

    async fn column_index(&self, f: &Arc<OpenFile>, column: Column) -> Result<Arc<ColumnIndex>> {
        let cell = match column {
            Column::Samples => &f.samples,
            Column::Histograms => &f.histograms,
            Column::Exemplars => &f.exemplars,
        };
        let read = async { f.file.column_index(&*self.store, column).await.map(Arc::new) };
        Ok(self.parsed(f, cell, read).await?.clone())
    }

    async fn trace_filter(&self, f: &Arc<OpenFile>) -> Result<Option<TraceFilter>> {
        let read = f.file.trace_filter(&*self.store);
        Ok(self.parsed(f, &f.trace_filter, read).await?.clone())
    }

    /// The column blocks of `ordinals` (ascending), decoded with `decode`, each cut to
    /// `[mint, maxt]`; an empty list for a series without a block.
    async fn column_of<T: Timestamped>(
        &self,
        f: &Arc<OpenFile>,
        column: Column,
        ordinals: &[u32],
        mint: i64,
        maxt: i64,
        decode: fn(&[u8]) -> std::result::Result<Vec<T>, block::BlockError>,
    ) -> Result<Vec<Vec<T>>> {
        let index = self.column_index(f, column).await?;
        let with_block: Vec<u32> = ordinals.iter().copied().filter(|&o| index.contains(o)).collect();
        let key = f.file.key();
        let blocks = f.file.column_blocks(&*self.store, &index, &with_block).await.map_err(|e| block_error(key, e))?;
        let mut by_ordinal: HashMap<u32, Bytes> =
            with_block.into_iter().zip(blocks).filter_map(|(o, b)| b.map(|b| (o, b))).collect();
        let mut out = Vec::with_capacity(ordinals.len());
        for o in ordinals {
            let Some(b) = by_ordinal.remove(o) else {
                out.push(Vec::new());
                continue;
            };
            let mut decoded = decode(&b).map_err(|e| Error::CorruptObject(format!("block file {key}: {e}")))?;
            // A block's timestamps increase strictly: the range is one slice of it.
            let (lo, hi) = (decoded.partition_point(|x| x.ts() < mint), decoded.partition_point(|x| x.ts() <= maxt));
            decoded.truncate(hi);
            decoded.drain(..lo);
            out.push(decoded);
        }
        Ok(out)
    }

    /// The selected series of one window with their data in `[mint, maxt]`, by labels.
    async fn select_window(
        &self,
        window: &IndexedWindow,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
        columns: Columns,
    ) -> Result<Vec<SeriesData>> {
        let f = self.open(window).await?;
        let series = self.series_list(&f).await?;
        let ordinals = matching(&series, selectors);
        if ordinals.is_empty() {
            return Ok(Vec::new());
        }
        let mut out: Vec<SeriesData> =
            ordinals.iter().map(|&o| SeriesData { labels: series[o as usize].clone(), ..Default::default() }).collect();
        if columns.samples && window.samples > 0 {
            let got = self.column_of(&f, Column::Samples, &ordinals, mint, maxt, block::decode_samples).await?;
            out.iter_mut().zip(got).for_each(|(s, got)| s.samples = got);
        }
        if columns.histograms && window.histograms > 0 {
            let got = self.column_of(&f, Column::Histograms, &ordinals, mint, maxt, block::decode_histograms);
            out.iter_mut().zip(got.await?).for_each(|(s, got)| s.histograms = got);
        }
        if columns.exemplars && window.exemplars > 0 {
            let got = self.column_of(&f, Column::Exemplars, &ordinals, mint, maxt, block::decode_exemplars);
            out.iter_mut().zip(got.await?).for_each(|(s, got)| s.exemplars = got);
        }
        out.retain(|s| !s.is_empty());
        Ok(out)
    }

    async fn select_in(
        &self,
        index: &BucketIndex,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
        columns: Columns,
    ) -> Result<Vec<SeriesData>> {
        let per_window: Vec<Vec<SeriesData>> = futures::stream::iter(overlapping(index, mint, maxt))
            .map(|w| self.select_window(w, selectors, mint, maxt, columns))
            .buffered(self.opts.concurrency.max(1))
            .try_collect()
            .await?;
        // Windows may overlap (a window uploaded again beside the compacted one that holds it):
        // a series' data is merged by timestamp, the entry of the window first in the index
        // kept at a shared timestamp, as the compactor keeps it.
        let mut by_labels: BTreeMap<Labels, SeriesData> = BTreeMap::new();
        for s in per_window.into_iter().flatten() {
            let into = by_labels.entry(s.labels).or_default();
            merge_by_ts(&mut into.samples, s.samples, |x| x.ts);
            merge_by_ts(&mut into.histograms, s.histograms, |x| x.ts);
            merge_by_ts(&mut into.exemplars, s.exemplars, |x| x.ts);
        }
        Ok(by_labels.into_iter().map(|(labels, s)| SeriesData { labels, ..s }).collect())
    }

    /// The selected series of one window with a float or histogram sample in `[mint, maxt]`.
    async fn series_window(
        &self,
        window: &IndexedWindow,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>> {
        let f = self.open(window).await?;
        let series = self.series_list(&f).await?;
        let ordinals = matching(&series, selectors);
        if ordinals.is_empty() {
            return Ok(Vec::new());
        }
        let (floats, histograms) =
            (self.column_index(&f, Column::Samples).await?, self.column_index(&f, Column::Histograms).await?);
        let with_samples: Vec<u32> =
            ordinals.into_iter().filter(|&o| floats.contains(o) || histograms.contains(o)).collect();
        if window.min_ts >= mint && window.max_ts <= maxt {
            // All of the window's data is in range: a block is a sample in range.
            return Ok(with_samples.into_iter().map(|o| series[o as usize].clone()).collect());
        }
        let mut found = Vec::new();
        let got = self.column_of(&f, Column::Samples, &with_samples, mint, maxt, block::decode_samples);
        let mut without_floats = Vec::new();
        for (o, samples) in with_samples.iter().zip(got.await?) {
            if samples.is_empty() {
                without_floats.push(*o);
            } else {
                found.push(*o);
            }
        }
        let got = self.column_of(&f, Column::Histograms, &without_floats, mint, maxt, block::decode_histograms);
        for (o, samples) in without_floats.iter().zip(got.await?) {
            if !samples.is_empty() {
                found.push(*o);
            }
        }
        Ok(found.into_iter().map(|o| series[o as usize].clone()).collect())
    }

    async fn series_in(
        &self,
        index: &BucketIndex,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<BTreeSet<Labels>> {
        let per_window: Vec<Vec<Labels>> = futures::stream::iter(overlapping(index, mint, maxt))
            .map(|w| self.series_window(w, selectors, mint, maxt))
            .buffered(self.opts.concurrency.max(1))
            .try_collect()
            .await?;
        Ok(per_window.into_iter().flatten().collect())
    }

    /// The exemplars of one window whose trace-id label equals `trace_id`: the filter first, the
    /// trace table only if it admits the id, the series list and exemplar blocks only if the
    /// table names some.
    async fn trace_window(&self, window: &IndexedWindow, trace_id: &str) -> Result<Vec<TracedExemplar>> {
        let f = self.open(window).await?;
        if !self.trace_filter(&f).await?.is_some_and(|filter| filter.may_contain(trace_id)) {
            return Ok(Vec::new());
        }
        let key = f.file.key();
        let entries = f.file.trace_table(&*self.store, trace_id).await.map_err(|e| block_error(key, e))?;
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let series = self.series_list(&f).await?;
        let mut ordinals: Vec<u32> = entries.iter().map(|e| e.ordinal).collect();
        ordinals.sort_unstable();
        ordinals.dedup();
        if ordinals.iter().any(|&o| o as usize >= series.len()) {
            return Err(Error::CorruptObject(format!("block file {key}: trace table names a series it does not hold")));
        }
        let (all_from, all_to) = (i64::MIN, i64::MAX);
        let got = self.column_of(&f, Column::Exemplars, &ordinals, all_from, all_to, block::decode_exemplars);
        let mut out = Vec::new();
        for (o, exemplars) in ordinals.iter().zip(got.await?) {
            let at: BTreeSet<i64> = entries.iter().filter(|e| e.ordinal == *o).map(|e| e.ts).collect();
            for exemplar in exemplars {
                // An exemplar may carry several trace-id labels; keep those where this one matches.
                let traced =
                    exemplar.labels.iter().any(|l| self.opts.trace_id_labels.contains(&l.name) && l.value == trace_id);
                if at.contains(&exemplar.ts) && traced {
                    out.push(TracedExemplar { series: series[*o as usize].clone(), exemplar });
                }
            }
        }
        Ok(out)
    }

    async fn exemplars_by_trace_in(&self, index: &BucketIndex, trace_id: &str) -> Result<Vec<TracedExemplar>> {
        let per_window: Vec<Vec<TracedExemplar>> = futures::stream::iter(index.windows.iter().filter(|w| w.traces > 0))
            .map(|w| self.trace_window(w, trace_id))
            .buffered(self.opts.concurrency.max(1))
            .try_collect()
            .await?;
        let mut out: Vec<TracedExemplar> = per_window.into_iter().flatten().collect();
        // Stable: of overlapping windows' copies of one exemplar, the first window's stays.
        out.sort_by(|a, b| a.exemplar.ts.cmp(&b.exemplar.ts).then_with(|| a.series.cmp(&b.series)));
        out.dedup_by(|a, b| a.exemplar.ts == b.exemplar.ts && a.series == b.series);
        Ok(out)
    }
}

impl ReadSource for BucketSource {
    fn select(
        &self,
        tenant: &str,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
        columns: Columns,
    ) -> Result<Vec<SeriesData>> {
        self.with_index(tenant, |index| async move { self.select_in(&index, selectors, mint, maxt, columns).await })
    }

    fn series(&self, tenant: &str, selectors: &[Vec<Matcher>], mint: i64, maxt: i64) -> Result<Vec<Labels>> {
        let found =
            self.with_index(tenant, |index| async move { self.series_in(&index, selectors, mint, maxt).await })?;
        Ok(found.into_iter().collect())
    }

    fn label_names(&self, tenant: &str, selectors: &[Vec<Matcher>], mint: i64, maxt: i64) -> Result<Vec<String>> {
        let found =
            self.with_index(tenant, |index| async move { self.series_in(&index, selectors, mint, maxt).await })?;
        let names: BTreeSet<&str> = found.iter().flat_map(|l| l.iter().map(|l| l.name.as_str())).collect();
        Ok(names.into_iter().map(str::to_string).collect())
    }

    fn label_values(
        &self,
        tenant: &str,
        name: &str,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>> {
        if name.is_empty() {
            return Ok(Vec::new());
        }
        let found =
            self.with_index(tenant, |index| async move { self.series_in(&index, selectors, mint, maxt).await })?;
        let values: BTreeSet<&str> = found.iter().filter_map(|l| l.get(name)).collect();
        Ok(values.into_iter().map(str::to_string).collect())
    }

    fn exemplars_by_trace(&self, tenant: &str, trace_id: &str) -> Result<Vec<TracedExemplar>> {
        self.with_index(tenant, |index| async move { self.exemplars_by_trace_in(&index, trace_id).await })
    }

    /// None: block files hold data, not what senders say about it; metadata comes from the
    /// stores that received it (a querier asks its ingesters).
    fn metadata(
        &self,
        _tenant: &str,
        _metric: Option<&str>,
    ) -> Result<std::collections::BTreeMap<String, Vec<crate::MetricMetadata>>> {
        Ok(std::collections::BTreeMap::new())
    }
}

/// The windows of `index` with data in `[mint, maxt]`, oldest first.
fn overlapping(index: &BucketIndex, mint: i64, maxt: i64) -> impl Iterator<Item = &IndexedWindow> {
    index.windows.iter().filter(move |w| w.series > 0 && w.min_ts <= maxt && w.max_ts >= mint)
}

/// Ordinals of the series any selector matches (all series for no selectors), ascending. A
/// selector without matchers matches nothing, as in the local index.
fn matching(series: &[Labels], selectors: &[Vec<Matcher>]) -> Vec<u32> {
    let selected = |labels: &Labels| {
        selectors.is_empty()
            || selectors.iter().any(|s| !s.is_empty() && s.iter().all(|m| m.matches(labels.get(&m.name).unwrap_or(""))))
    };
    series.iter().enumerate().filter(|(_, l)| selected(l)).map(|(o, _)| o as u32).collect()
}

/// An entry of a column block, by its timestamp.
trait Timestamped {
    fn ts(&self) -> i64;
}

impl Timestamped for Sample {
    fn ts(&self) -> i64 {
        self.ts
    }
}

impl Timestamped for HistogramSample {
    fn ts(&self) -> i64 {
        self.ts
    }
}

impl Timestamped for Exemplar {
    fn ts(&self) -> i64 {
        self.ts
    }
}

fn store_error(key: &str, e: ObjectStoreError) -> Error {
    let message = match e {
        ObjectStoreError::NotFound(_) => "not found (replaced by a newer upload?)".to_string(),
        e => e.to_string(),
    };
    Error::ObjectStore { key: key.to_string(), message }
}

fn block_error(key: &str, e: BlockFileError) -> Error {
    match e {
        BlockFileError::Store(e) => store_error(key, e),
        e @ BlockFileError::Corrupt { .. } => Error::CorruptObject(e.to_string()),
    }
}
