//! Read sources: one tenant's data as the read API asks for it, wherever it is held — this
//! store, the bucket, another Amber. Series are named by their labels, not by a store's own
//! series ids, so answers from several sources merge by label set ([`Merged`]).
//!
//! A tenant is named, not numbered: ids are private to one store. [`Local`] maps the name of
//! requests that name no tenant (`default_tenant`) to [`TenantId::DEFAULT`], as writes do.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap;

use crate::Error;
use crate::SeriesId;
use crate::db::Storage;
use crate::error::Result;
use crate::index::Matcher;
use crate::labels::Labels;
use crate::metadata::MetricMetadata;
use crate::querier::TracedExemplar;
use crate::tenant::TenantId;
use crate::{Exemplar, HistogramSample, Sample, SampleColumns};

/// Which of a series' columns a [`ReadSource::select`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Columns {
    pub samples: bool,
    pub histograms: bool,
    pub exemplars: bool,
}

impl Columns {
    /// Float and histogram samples: what PromQL and remote read need.
    pub const SAMPLES: Columns = Columns { samples: true, histograms: true, exemplars: false };
    pub const EXEMPLARS: Columns = Columns { samples: false, histograms: false, exemplars: true };
}

/// One series and the columns a select asked for, within its time range.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesData {
    pub labels: Labels,
    pub samples: Vec<Sample>,
    pub histograms: Vec<HistogramSample>,
    pub exemplars: Vec<Exemplar>,
}

impl SeriesData {
    /// Float and histogram samples held.
    pub fn sample_count(&self) -> usize {
        self.samples.len() + self.histograms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty() && self.histograms.is_empty() && self.exemplars.is_empty()
    }
}

/// The read side of a store. Selectors are lists of matchers, all of which must match; a series
/// matches if any selector does, and no selectors means every series. Called from blocking
/// threads: an implementation that does I/O may block on it.
pub trait ReadSource: Send + Sync {
    /// The selected series with data in the asked-for columns in `[mint, maxt]`, each with that
    /// data (oldest first), sorted by labels. A series with none of it is left out.
    fn select(
        &self,
        tenant: &str,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
        columns: Columns,
    ) -> Result<Vec<SeriesData>>;

    /// [`ReadSource::select`] that fails with [`Error::TooManySamples`] once the answer would hold
    /// more than `max_samples` float and histogram samples, so that a query over too much data
    /// fails before it holds all of it (PromQL's `--query-max-samples`). The default selects
    /// everything, then counts; a source that can stop early does.
    fn select_at_most(
        &self,
        tenant: &str,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
        columns: Columns,
        max_samples: usize,
    ) -> Result<Vec<SeriesData>> {
        let found = self.select(tenant, selectors, mint, maxt, columns)?;
        within(max_samples, found.iter().map(SeriesData::sample_count).sum())?;
        Ok(found)
    }

    /// The series [`ReadSource::select_at_most`] would answer with their float and histogram
    /// samples ([`Columns::SAMPLES`]), the samples read later, part by part
    /// ([`SelectedSeries::read_into`]), so that a reader that goes series by series holds one
    /// part at a time rather than every series' samples at once. Reads past `max_samples` in all
    /// fail with [`Error::TooManySamples`]. The default reads everything now and hands it out in
    /// parts; a source that can read a part on its own does.
    fn select_in_parts(
        &self,
        tenant: &str,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
        max_samples: usize,
    ) -> Result<Box<dyn SelectedSeries + '_>> {
        let found = self.select_at_most(tenant, selectors, mint, maxt, Columns::SAMPLES, max_samples)?;
        Ok(Box::new(ReadAlready(Mutex::new(found))))
    }

    /// The label sets of the selected series with a float or histogram sample in `[mint, maxt]`,
    /// sorted: `/api/v1/series`. The default reads the samples; a source with an index
    /// answers without them.
    fn series(&self, tenant: &str, selectors: &[Vec<Matcher>], mint: i64, maxt: i64) -> Result<Vec<Labels>> {
        Ok(self.select(tenant, selectors, mint, maxt, Columns::SAMPLES)?.into_iter().map(|s| s.labels).collect())
    }

    /// Label names of the selected series with data in `[mint, maxt]`, sorted.
    fn label_names(&self, tenant: &str, selectors: &[Vec<Matcher>], mint: i64, maxt: i64) -> Result<Vec<String>>;

    /// Values of label `name` among the selected series with data in `[mint, maxt]`, sorted.
    fn label_values(
        &self,
        tenant: &str,
        name: &str,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>>;

    /// Every exemplar whose trace-id label equals `trace_id`, oldest first.
    fn exemplars_by_trace(&self, tenant: &str, trace_id: &str) -> Result<Vec<TracedExemplar>>;

    /// Metadata (type, help, unit) by metric family, as senders reported it, each family's
    /// entries sorted; only `metric`'s when given.
    fn metadata(&self, tenant: &str, metric: Option<&str>) -> Result<BTreeMap<String, Vec<MetricMetadata>>>;
}

/// The series a [`ReadSource::select_in_parts`] found, sorted by labels, read a part at a time.
pub trait SelectedSeries: Send + Sync {
    /// How many series were found: parts are ranges of positions below it.
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The series at positions `part` into `out`, one entry per position (a series without
    /// samples in the time range is there too, empty). `out`'s lists are reused: a reader that
    /// reads part after part into the same `out` fills no fresh pages, where a list per series
    /// of a day-long read would. Each part is read once.
    fn read_into(&self, part: Range<usize>, out: &mut Vec<SeriesSamples>) -> Result<()>;
}

/// One series of a selection read in parts: its labels, its float samples as columns, and its
/// native histogram samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesSamples {
    pub labels: Labels,
    pub samples: SampleColumns,
    pub histograms: Vec<HistogramSample>,
}

/// A selection read whole, handed out in parts.
struct ReadAlready(Mutex<Vec<SeriesData>>);

impl SelectedSeries for ReadAlready {
    fn len(&self) -> usize {
        self.0.lock().len()
    }

    fn read_into(&self, part: Range<usize>, out: &mut Vec<SeriesSamples>) -> Result<()> {
        let mut found = self.0.lock();
        let found = &mut found[part];
        out.resize_with(found.len(), SeriesSamples::default);
        for (out, data) in out.iter_mut().zip(found) {
            out.labels = std::mem::take(&mut data.labels);
            out.samples.clear();
            out.samples.extend(std::mem::take(&mut data.samples));
            out.histograms = std::mem::take(&mut data.histograms);
        }
        Ok(())
    }
}

/// This store as a read source.
pub struct Local {
    storage: Arc<Storage>,
    /// The tenant name of requests that name none.
    default_tenant: String,
    labels: SeriesLabelsCache,
}

/// Series label sets by id. A series' labels never change and ids are never reused, so an entry
/// never goes stale. Reading and decoding them from the index for every query was as costly as
/// reading the samples of a large selector.
#[derive(Default)]
struct SeriesLabelsCache(RwLock<FxHashMap<SeriesId, Labels>>);

impl SeriesLabelsCache {
    /// The labels of each id, in order, reading the ones not cached yet from the store.
    fn get(&self, storage: &Storage, ids: &[SeriesId]) -> Result<Vec<Labels>> {
        let mut out: Vec<Option<Labels>> = {
            let cache = self.0.read();
            ids.iter().map(|id| cache.get(id).cloned()).collect()
        };
        let missing: Vec<SeriesId> = ids.iter().zip(&out).filter(|(_, l)| l.is_none()).map(|(id, _)| *id).collect();
        if !missing.is_empty() {
            let read = storage.series_labels(&missing)?;
            let mut cache = self.0.write();
            for (id, (_, labels)) in missing.iter().zip(read) {
                cache.insert(*id, labels);
            }
            for (slot, id) in out.iter_mut().zip(ids) {
                if slot.is_none() {
                    *slot = cache.get(id).cloned();
                }
            }
        }
        Ok(out.into_iter().map(|l| l.expect("every id was read")).collect())
    }
}

impl Local {
    pub fn new(storage: Arc<Storage>, default_tenant: impl Into<String>) -> Local {
        Local { storage, default_tenant: default_tenant.into(), labels: SeriesLabelsCache::default() }
    }

    /// The store's id of `tenant`; `None` for a tenant that never wrote here.
    pub fn tenant_id(&self, tenant: &str) -> Option<TenantId> {
        if tenant == self.default_tenant { Some(TenantId::DEFAULT) } else { self.storage.tenant_id(tenant) }
    }
}

/// Series whose samples a limited [`Local::select_at_most`] loads first, and at least at a time
/// after: the later loads are sized from what the series so far held, to what the rest of the
/// limit would hold, so a selection within it takes two loads and one past it stops after about
/// one limit's worth.
const SERIES_PER_LOAD: usize = 256;

/// `Ok` while `count` samples are within `max_samples`.
fn within(max_samples: usize, count: usize) -> Result<()> {
    if count > max_samples { Err(Error::TooManySamples(max_samples)) } else { Ok(()) }
}

impl Local {
    /// The ids and labels of the selected series, sorted by labels as Prometheus's storage
    /// returns series.
    fn found(&self, tenant: &str, selectors: &[Vec<Matcher>], mint: i64, maxt: i64) -> Result<Vec<(SeriesId, Labels)>> {
        let Some(tenant) = self.tenant_id(tenant) else { return Ok(Vec::new()) };
        let ids: Vec<SeriesId> = self.storage.select(tenant, selectors, mint, maxt)?.iter().collect();
        let labels = self.labels.get(&self.storage, &ids)?;
        let mut found: Vec<(SeriesId, Labels)> = ids.into_iter().zip(labels).collect();
        found.sort_unstable_by(|a, b| a.1.cmp(&b.1));
        Ok(found)
    }

    /// The selected series with their data, loaded `per_load` series first, then as many as the
    /// rest of `max_samples` would hold at the rate so far (at least `per_load`), and stopped with
    /// [`Error::TooManySamples`] past `max_samples`.
    #[allow(clippy::too_many_arguments)]
    fn select_loading(
        &self,
        tenant: &str,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
        columns: Columns,
        max_samples: usize,
        per_load: usize,
    ) -> Result<Vec<SeriesData>> {
        let found = self.found(tenant, selectors, mint, maxt)?;
        let mut out = Vec::with_capacity(found.len());
        let (mut loaded, mut start, mut take) = (0, 0, per_load.max(1));
        while start < found.len() {
            let part = &found[start..start.saturating_add(take).min(found.len())];
            start += part.len();
            let ids: Vec<SeriesId> = part.iter().map(|(id, _)| *id).collect();
            let mut samples = if columns.samples { self.storage.samples_of(&ids, mint, maxt)? } else { Vec::new() };
            let mut histograms =
                if columns.histograms { self.storage.histograms_of(&ids, mint, maxt)? } else { Vec::new() };
            loaded += samples.iter().map(Vec::len).sum::<usize>() + histograms.iter().map(Vec::len).sum::<usize>();
            within(max_samples, loaded)?;
            for (i, (id, labels)) in part.iter().enumerate() {
                let series = SeriesData {
                    labels: labels.clone(),
                    samples: samples.get_mut(i).map(std::mem::take).unwrap_or_default(),
                    histograms: histograms.get_mut(i).map(std::mem::take).unwrap_or_default(),
                    exemplars: if columns.exemplars { self.storage.exemplars(*id, mint, maxt)? } else { Vec::new() },
                };
                if !series.is_empty() {
                    out.push(series);
                }
            }
            let per_series = loaded.div_ceil(start).max(1);
            take = ((max_samples - loaded) / per_series).max(per_load.max(1));
        }
        Ok(out)
    }
}

/// A [`Local`] selection read part by part: each part's blocks are read and decoded when it is
/// read, into the reader's lists.
struct LocalParts<'a> {
    storage: &'a Storage,
    found: Vec<(SeriesId, Labels)>,
    mint: i64,
    maxt: i64,
    max_samples: usize,
    /// Samples read so far, by every reader.
    loaded: AtomicUsize,
}

impl SelectedSeries for LocalParts<'_> {
    fn len(&self) -> usize {
        self.found.len()
    }

    fn read_into(&self, part: Range<usize>, out: &mut Vec<SeriesSamples>) -> Result<()> {
        let found = &self.found[part];
        out.resize_with(found.len(), SeriesSamples::default);
        let ids: Vec<SeriesId> = found.iter().map(|(id, _)| *id).collect();
        let (mint, maxt) = (self.mint, self.maxt);
        let mut samples: Vec<SampleColumns> = out.iter_mut().map(|s| std::mem::take(&mut s.samples)).collect();
        self.storage.sample_columns_of_into(&ids, mint, maxt, &mut samples)?;
        let histograms = self.storage.histograms_of(&ids, mint, maxt)?;
        let read =
            samples.iter().map(SampleColumns::len).sum::<usize>() + histograms.iter().map(Vec::len).sum::<usize>();
        within(self.max_samples, self.loaded.fetch_add(read, Ordering::Relaxed).saturating_add(read))?;
        for ((data, samples), ((_, labels), histograms)) in
            out.iter_mut().zip(samples).zip(found.iter().zip(histograms))
        {
            data.labels.clone_from(labels);
            data.samples = samples;
            data.histograms = histograms;
        }
        Ok(())
    }
}

impl ReadSource for Local {
    fn select(
        &self,
        tenant: &str,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
        columns: Columns,
    ) -> Result<Vec<SeriesData>> {
        // Unlimited: all series in one load, which spreads windows across threads best.
        self.select_loading(tenant, selectors, mint, maxt, columns, usize::MAX, usize::MAX)
    }

    fn select_at_most(
        &self,
        tenant: &str,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
        columns: Columns,
        max_samples: usize,
    ) -> Result<Vec<SeriesData>> {
        self.select_loading(tenant, selectors, mint, maxt, columns, max_samples, SERIES_PER_LOAD)
    }

    fn select_in_parts(
        &self,
        tenant: &str,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
        max_samples: usize,
    ) -> Result<Box<dyn SelectedSeries + '_>> {
        let found = self.found(tenant, selectors, mint, maxt)?;
        Ok(Box::new(LocalParts { storage: &self.storage, found, mint, maxt, max_samples, loaded: AtomicUsize::new(0) }))
    }

    fn series(&self, tenant: &str, selectors: &[Vec<Matcher>], mint: i64, maxt: i64) -> Result<Vec<Labels>> {
        let Some(tenant) = self.tenant_id(tenant) else { return Ok(Vec::new()) };
        Ok(self.storage.series_with_data(tenant, selectors, mint, maxt)?.into_iter().map(|(_, l)| l).collect())
    }

    fn label_names(&self, tenant: &str, selectors: &[Vec<Matcher>], mint: i64, maxt: i64) -> Result<Vec<String>> {
        let Some(tenant) = self.tenant_id(tenant) else { return Ok(Vec::new()) };
        self.storage.label_names(tenant, selectors, mint, maxt)
    }

    fn label_values(
        &self,
        tenant: &str,
        name: &str,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>> {
        let Some(tenant) = self.tenant_id(tenant) else { return Ok(Vec::new()) };
        self.storage.label_values(tenant, name, selectors, mint, maxt)
    }

    fn exemplars_by_trace(&self, tenant: &str, trace_id: &str) -> Result<Vec<TracedExemplar>> {
        let Some(tenant) = self.tenant_id(tenant) else { return Ok(Vec::new()) };
        self.storage.exemplars_by_trace(tenant, trace_id)
    }

    fn metadata(&self, tenant: &str, metric: Option<&str>) -> Result<BTreeMap<String, Vec<MetricMetadata>>> {
        let Some(tenant) = self.tenant_id(tenant) else { return Ok(BTreeMap::new()) };
        self.storage.metadata(tenant, metric, None, None)
    }
}

/// Several sources read as one: series with equal labels are one series, and where sources
/// hold a sample (or exemplar) at the same timestamp the earlier source's wins. A series held by
/// an ingester and again in the bucket, or by two replicas, is thus answered once.
pub struct Merged(pub Vec<Arc<dyn ReadSource>>);

impl ReadSource for Merged {
    fn select(
        &self,
        tenant: &str,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
        columns: Columns,
    ) -> Result<Vec<SeriesData>> {
        let answers = self.0.iter().map(|s| s.select(tenant, selectors, mint, maxt, columns));
        Ok(merge_selected(answers.collect::<Result<Vec<_>>>()?))
    }

    fn select_at_most(
        &self,
        tenant: &str,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
        columns: Columns,
        max_samples: usize,
    ) -> Result<Vec<SeriesData>> {
        let answers = self.0.iter().map(|s| s.select_at_most(tenant, selectors, mint, maxt, columns, max_samples));
        let merged = merge_selected(answers.collect::<Result<Vec<_>>>()?);
        within(max_samples, merged.iter().map(SeriesData::sample_count).sum())?;
        Ok(merged)
    }

    fn series(&self, tenant: &str, selectors: &[Vec<Matcher>], mint: i64, maxt: i64) -> Result<Vec<Labels>> {
        Ok(union(self.0.iter().map(|s| s.series(tenant, selectors, mint, maxt)).collect::<Result<Vec<_>>>()?))
    }

    fn label_names(&self, tenant: &str, selectors: &[Vec<Matcher>], mint: i64, maxt: i64) -> Result<Vec<String>> {
        Ok(union(self.0.iter().map(|s| s.label_names(tenant, selectors, mint, maxt)).collect::<Result<Vec<_>>>()?))
    }

    fn label_values(
        &self,
        tenant: &str,
        name: &str,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>> {
        let answers = self.0.iter().map(|s| s.label_values(tenant, name, selectors, mint, maxt));
        Ok(union(answers.collect::<Result<Vec<_>>>()?))
    }

    fn exemplars_by_trace(&self, tenant: &str, trace_id: &str) -> Result<Vec<TracedExemplar>> {
        let answers = self.0.iter().map(|s| s.exemplars_by_trace(tenant, trace_id));
        Ok(merge_traced(answers.collect::<Result<Vec<_>>>()?))
    }

    fn metadata(&self, tenant: &str, metric: Option<&str>) -> Result<BTreeMap<String, Vec<MetricMetadata>>> {
        Ok(merge_metadata(self.0.iter().map(|s| s.metadata(tenant, metric)).collect::<Result<Vec<_>>>()?))
    }
}

/// Copies of the same data held by several stores — the ingesters of a ring, each series on
/// some of them — read as one. All are asked at once and their answers merged as [`Merged`]
/// merges them. Up to `may_miss` of them may fail to answer (down, or slower than their
/// timeout): a write acknowledged by a quorum is on more than `may_miss` of them, so the others'
/// answers hold all of it. More misses than that fail the read with the first error.
///
/// Every replica that answers is waited for, not only the quickest: once a member has left the
/// ring, some series are on fewer replicas than a quorum wrote, and only all answers hold them.
pub struct Replicas {
    pub replicas: Vec<Arc<dyn ReadSource>>,
    pub may_miss: usize,
}

impl Replicas {
    /// `call` on every replica, each on its own thread; the answers of those that answered.
    fn gather<T, F>(&self, call: F) -> Result<Vec<T>>
    where
        T: Send,
        F: Fn(&dyn ReadSource) -> Result<T> + Sync,
    {
        let results: Vec<Result<T>> = std::thread::scope(|scope| {
            let threads: Vec<_> = self.replicas.iter().map(|r| scope.spawn(|| call(r.as_ref()))).collect();
            threads.into_iter().map(|t| t.join().expect("a replica's read panicked")).collect()
        });
        let mut answers = Vec::with_capacity(results.len());
        let mut misses = 0;
        for result in results {
            match result {
                Ok(answer) => answers.push(answer),
                Err(e) if misses >= self.may_miss => return Err(e),
                Err(_) => misses += 1,
            }
        }
        Ok(answers)
    }
}

impl ReadSource for Replicas {
    fn select(
        &self,
        tenant: &str,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
        columns: Columns,
    ) -> Result<Vec<SeriesData>> {
        Ok(merge_selected(self.gather(|s| s.select(tenant, selectors, mint, maxt, columns))?))
    }

    fn series(&self, tenant: &str, selectors: &[Vec<Matcher>], mint: i64, maxt: i64) -> Result<Vec<Labels>> {
        Ok(union(self.gather(|s| s.series(tenant, selectors, mint, maxt))?))
    }

    fn label_names(&self, tenant: &str, selectors: &[Vec<Matcher>], mint: i64, maxt: i64) -> Result<Vec<String>> {
        Ok(union(self.gather(|s| s.label_names(tenant, selectors, mint, maxt))?))
    }

    fn label_values(
        &self,
        tenant: &str,
        name: &str,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>> {
        Ok(union(self.gather(|s| s.label_values(tenant, name, selectors, mint, maxt))?))
    }

    fn exemplars_by_trace(&self, tenant: &str, trace_id: &str) -> Result<Vec<TracedExemplar>> {
        Ok(merge_traced(self.gather(|s| s.exemplars_by_trace(tenant, trace_id))?))
    }

    fn metadata(&self, tenant: &str, metric: Option<&str>) -> Result<BTreeMap<String, Vec<MetricMetadata>>> {
        Ok(merge_metadata(self.gather(|s| s.metadata(tenant, metric))?))
    }
}

/// Several sources' selected series as one answer: each series once, sorted by labels, its
/// data merged by timestamp (at a timestamp several hold, the earliest answer's entry stays).
fn merge_selected(answers: Vec<Vec<SeriesData>>) -> Vec<SeriesData> {
    let mut by_labels: BTreeMap<Labels, SeriesData> = BTreeMap::new();
    for s in answers.into_iter().flatten() {
        match by_labels.entry(s.labels.clone()) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(s);
            }
            std::collections::btree_map::Entry::Occupied(mut o) => {
                let into = o.get_mut();
                merge_by_ts(&mut into.samples, s.samples, |x| x.ts);
                merge_by_ts(&mut into.histograms, s.histograms, |x| x.ts);
                merge_by_ts(&mut into.exemplars, s.exemplars, |x| x.ts);
            }
        }
    }
    by_labels.into_values().collect()
}

/// Several sources' exemplars of a trace, oldest first; the same exemplar from two sources once.
fn merge_traced(answers: Vec<Vec<TracedExemplar>>) -> Vec<TracedExemplar> {
    let mut out: Vec<TracedExemplar> = answers.into_iter().flatten().collect();
    out.sort_by(|a, b| a.exemplar.ts.cmp(&b.exemplar.ts).then_with(|| a.series.cmp(&b.series)));
    out.dedup_by(|a, b| a.exemplar.ts == b.exemplar.ts && a.series == b.series);
    out
}

/// Several sources' metadata: every family's distinct entries, sorted.
fn merge_metadata(answers: Vec<BTreeMap<String, Vec<MetricMetadata>>>) -> BTreeMap<String, Vec<MetricMetadata>> {
    let mut all: BTreeMap<String, std::collections::BTreeSet<MetricMetadata>> = BTreeMap::new();
    for (family, entries) in answers.into_iter().flatten() {
        all.entry(family).or_default().extend(entries);
    }
    all.into_iter().map(|(family, entries)| (family, entries.into_iter().collect())).collect()
}

/// Merges `more` into `into`, both oldest first; at equal timestamps `into`'s entry stays.
pub(crate) fn merge_by_ts<T>(into: &mut Vec<T>, more: Vec<T>, ts: impl Fn(&T) -> i64) {
    if more.is_empty() {
        return;
    }
    let old = std::mem::take(into);
    into.reserve(old.len() + more.len());
    let (mut a, mut b) = (old.into_iter().peekable(), more.into_iter().peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if ts(y) < ts(x) => b.next(),
            (Some(x), Some(y)) if ts(y) == ts(x) => {
                b.next();
                a.next()
            }
            (Some(_), _) => a.next(),
            (None, Some(_)) => b.next(),
            (None, None) => break,
        };
        into.extend(next);
    }
}

/// The sorted union of sorted lists.
fn union<T: Ord>(lists: Vec<Vec<T>>) -> Vec<T> {
    let all: std::collections::BTreeSet<T> = lists.into_iter().flatten().collect();
    all.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Label;

    /// A source holding fixed series, for merge tests.
    struct Fixed(Vec<SeriesData>);

    impl ReadSource for Fixed {
        fn select(&self, _: &str, _: &[Vec<Matcher>], mint: i64, maxt: i64, _: Columns) -> Result<Vec<SeriesData>> {
            Ok(self
                .0
                .iter()
                .map(|s| SeriesData {
                    labels: s.labels.clone(),
                    samples: s.samples.iter().filter(|x| x.ts >= mint && x.ts <= maxt).cloned().collect(),
                    ..Default::default()
                })
                .filter(|s| !s.is_empty())
                .collect())
        }
        fn label_names(&self, _: &str, _: &[Vec<Matcher>], _: i64, _: i64) -> Result<Vec<String>> {
            Ok(self.0.iter().flat_map(|s| s.labels.iter().map(|l| l.name.clone())).collect())
        }
        fn label_values(&self, _: &str, name: &str, _: &[Vec<Matcher>], _: i64, _: i64) -> Result<Vec<String>> {
            Ok(self.0.iter().filter_map(|s| s.labels.get(name).map(str::to_string)).collect())
        }
        fn exemplars_by_trace(&self, _: &str, _: &str) -> Result<Vec<TracedExemplar>> {
            Ok(Vec::new())
        }
        fn metadata(&self, _: &str, _: Option<&str>) -> Result<BTreeMap<String, Vec<MetricMetadata>>> {
            Ok(BTreeMap::new())
        }
    }

    fn series(job: &str, points: &[(i64, f64)]) -> SeriesData {
        SeriesData {
            labels: Labels::from_sorted(vec![Label::new("__name__", "up"), Label::new("job", job)]),
            samples: points.iter().map(|&(ts, value)| Sample { ts, value, start_ts: crate::NO_START }).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn merged_sources_answer_each_series_once_with_the_first_sources_value_at_a_shared_timestamp() {
        let ingester = Fixed(vec![series("a", &[(30, 3.0), (40, 4.0)]), series("c", &[(5, 1.0)])]);
        let bucket = Fixed(vec![series("a", &[(10, 1.0), (20, 2.0), (30, 99.0)]), series("b", &[(10, 7.0)])]);
        let merged = Merged(vec![Arc::new(ingester), Arc::new(bucket)]);
        let got = merged.select("t", &[], 0, 100, Columns::SAMPLES).unwrap();
        assert_eq!(
            got,
            [
                series("a", &[(10, 1.0), (20, 2.0), (30, 3.0), (40, 4.0)]),
                series("b", &[(10, 7.0)]),
                series("c", &[(5, 1.0)])
            ]
        );
        assert_eq!(merged.label_values("t", "job", &[], 0, 100).unwrap(), ["a", "b", "c"]);
        assert_eq!(merged.label_names("t", &[], 0, 100).unwrap(), ["__name__", "job"]);
        assert_eq!(merged.series("t", &[], 15, 100).unwrap(), [series("a", &[]).labels]);
    }

    /// A replica that does not answer.
    struct Down;

    impl ReadSource for Down {
        fn select(&self, _: &str, _: &[Vec<Matcher>], _: i64, _: i64, _: Columns) -> Result<Vec<SeriesData>> {
            Err(crate::Error::Peer { peer: "http://replica".into(), message: "down".into() })
        }
        fn label_names(&self, _: &str, _: &[Vec<Matcher>], _: i64, _: i64) -> Result<Vec<String>> {
            unreachable!()
        }
        fn label_values(&self, _: &str, _: &str, _: &[Vec<Matcher>], _: i64, _: i64) -> Result<Vec<String>> {
            unreachable!()
        }
        fn exemplars_by_trace(&self, _: &str, _: &str) -> Result<Vec<TracedExemplar>> {
            unreachable!()
        }
        fn metadata(&self, _: &str, _: Option<&str>) -> Result<BTreeMap<String, Vec<MetricMetadata>>> {
            unreachable!()
        }
    }

    #[test]
    fn replicas_answer_without_a_dead_one_and_fail_past_may_miss() {
        // Each series on two of three replicas, as a quorum of a replication factor of 3 wrote it.
        let r1 = || Fixed(vec![series("a", &[(10, 1.0), (20, 2.0)]), series("b", &[(10, 5.0)])]);
        let r2 = || Fixed(vec![series("a", &[(20, 2.0), (30, 3.0)]), series("c", &[(10, 6.0)])]);
        let want =
            [series("a", &[(10, 1.0), (20, 2.0), (30, 3.0)]), series("b", &[(10, 5.0)]), series("c", &[(10, 6.0)])];
        let with_dead = Replicas { replicas: vec![Arc::new(Down), Arc::new(r1()), Arc::new(r2())], may_miss: 1 };
        assert_eq!(with_dead.select("t", &[], 0, 100, Columns::SAMPLES).unwrap(), want);
        let two_dead = Replicas { replicas: vec![Arc::new(Down), Arc::new(r1()), Arc::new(Down)], may_miss: 1 };
        let err = two_dead.select("t", &[], 0, 100, Columns::SAMPLES).unwrap_err();
        assert!(err.is_unavailable(), "{err}");
    }
}

#[cfg(test)]
mod sample_limit_tests {
    use super::*;
    use crate::{Label, Options, SeriesCreation, SeriesWrite};

    /// A limited selection stops at the first load past the limit; within it, it is the
    /// unlimited selection.
    #[test]
    fn a_limited_selection_stops_loading_past_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(Storage::open(dir.path(), Options::default()).unwrap());
        let now = crate::now_ms();
        let writes: Vec<SeriesWrite> = (0..3)
            .map(|i| SeriesWrite {
                labels: Labels::from_unsorted(vec![Label::new("__name__", "x"), Label::new("i", i.to_string())]),
                samples: (0..10)
                    .map(|j| Sample { ts: now - 60_000 + j * 1000, value: j as f64, start_ts: 0 })
                    .collect(),
                histograms: Vec::new(),
                exemplars: Vec::new(),
            })
            .collect();
        storage.append(TenantId::DEFAULT, &writes, &[], SeriesCreation::UNLIMITED).unwrap();
        let local = Local::new(storage, "anonymous");
        let all = [vec![Matcher::equal("__name__", "x")]];
        let (from, to) = (now - 3_600_000, now);
        let one_at_a_time = |max| local.select_loading("anonymous", &all, from, to, Columns::SAMPLES, max, 1);
        assert!(matches!(one_at_a_time(15), Err(Error::TooManySamples(15))));
        assert!(matches!(
            local.select_at_most("anonymous", &all, from, to, Columns::SAMPLES, 29),
            Err(Error::TooManySamples(29))
        ));
        let within = one_at_a_time(30).unwrap();
        assert_eq!(within.iter().map(SeriesData::sample_count).sum::<usize>(), 30);
        assert_eq!(within, local.select("anonymous", &all, from, to, Columns::SAMPLES).unwrap());
        // A merge of sources is held to the limit too.
        let merged = Merged(vec![Arc::new(local)]);
        assert!(matches!(
            merged.select_at_most("anonymous", &all, from, to, Columns::SAMPLES, 29),
            Err(Error::TooManySamples(29))
        ));
    }

    /// A selection read in parts, part after part into the same lists, is the whole selection:
    /// sealed blocks and the head merged, every series once, in label order; and the reads as a
    /// whole are held to the limit.
    #[test]
    fn a_selection_in_parts_is_the_whole_selection_and_keeps_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(Storage::open(dir.path(), Options::default()).unwrap());
        let now = crate::now_ms();
        let write = |from: i64, to: i64| -> Vec<SeriesWrite> {
            (0..40usize)
                .map(|i| SeriesWrite {
                    labels: Labels::from_unsorted(vec![Label::new("__name__", "x"), Label::new("i", i.to_string())]),
                    // Series of every length, so a reused list is sometimes longer, sometimes shorter.
                    samples: (from..to)
                        .step_by(15_000)
                        .take(10 + (i * 37) % 100)
                        .map(|ts| Sample { ts, value: (ts / 1000 + i as i64) as f64, start_ts: crate::NO_START })
                        .collect(),
                    histograms: Vec::new(),
                    exemplars: Vec::new(),
                })
                .collect()
        };
        let first = write(now - 3 * 3_600_000, now - 2 * 3_600_000);
        let first_samples: usize = first.iter().map(|w| w.samples.len()).sum();
        storage.append(TenantId::DEFAULT, &first, &[], SeriesCreation::UNLIMITED).unwrap();
        assert_eq!(storage.seal(now + 24 * 3_600_000).unwrap().samples_sealed, first_samples as u64);
        storage.append(TenantId::DEFAULT, &write(now - 1_800_000, now), &[], SeriesCreation::UNLIMITED).unwrap();
        let local = Local::new(storage, "anonymous");
        let all = [vec![Matcher::equal("__name__", "x")]];
        let (from, to) = (now - 4 * 3_600_000, now);
        let whole = local.select("anonymous", &all, from, to, Columns::SAMPLES).unwrap();
        assert_eq!(whole.len(), 40);
        let total: usize = whole.iter().map(SeriesData::sample_count).sum();

        let parts = local.select_in_parts("anonymous", &all, from, to, total).unwrap();
        assert_eq!(parts.len(), 40);
        let (mut out, mut read) = (Vec::new(), Vec::new());
        for lo in (0..40).step_by(7) {
            parts.read_into(lo..(lo + 7).min(40), &mut out).unwrap();
            read.extend(out.iter().map(|s| (s.labels.clone(), s.samples.samples().collect::<Vec<_>>())));
        }
        let whole: Vec<(Labels, Vec<Sample>)> = whole.into_iter().map(|s| (s.labels, s.samples)).collect();
        assert_eq!(read, whole);

        // Series about twenty ids apart are looked up per window rather than walked to: the
        // same samples.
        let far_apart = [vec![Matcher::equal("__name__", "x"), Matcher::regex("i", "0|20|39", false).unwrap()]];
        let sparse = local.select_in_parts("anonymous", &far_apart, from, to, total).unwrap();
        sparse.read_into(0..sparse.len(), &mut out).unwrap();
        let got: Vec<(Labels, Vec<Sample>)> =
            out.iter().map(|s| (s.labels.clone(), s.samples.samples().collect())).collect();
        let want: Vec<(Labels, Vec<Sample>)> =
            whole.iter().filter(|(l, _)| matches!(l.get("i"), Some("0" | "20" | "39"))).cloned().collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got, want);

        let parts = local.select_in_parts("anonymous", &all, from, to, total - 1).unwrap();
        parts.read_into(0..20, &mut out).unwrap();
        assert!(matches!(parts.read_into(20..40, &mut out), Err(Error::TooManySamples(n)) if n == total - 1));
    }
}
