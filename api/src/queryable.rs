//! The PromQL engine's storage trait over Amber's store, for one tenant.

use std::sync::Arc;

use amber_promql::{
    HistogramPoint, Labels, MatchOp as PromMatchOp, Matcher as PromMatcher, Point, Queryable, Series, StartTimestamps,
};
use amber_storage::{MatchOp, Matcher, NO_START, SeriesId, Storage, TenantId};
use parking_lot::RwLock;
use rustc_hash::FxHashMap;

pub struct TenantQueryable {
    pub storage: Arc<Storage>,
    /// `None` for a tenant that never wrote: it sees no series.
    pub tenant: Option<TenantId>,
    pub labels: Arc<SeriesLabelsCache>,
}

/// Series label sets by id, as the engine uses them. A series' labels never change and ids are
/// never reused, so an entry never goes stale. Reading and decoding them from the index for
/// every query was as costly as reading the samples of a large selector.
#[derive(Default)]
pub struct SeriesLabelsCache(RwLock<FxHashMap<SeriesId, Labels>>);

impl SeriesLabelsCache {
    /// The labels of each id, in order, reading the ones not cached yet from the store.
    fn get(&self, storage: &Storage, ids: &[SeriesId]) -> amber_storage::Result<Vec<Labels>> {
        let mut out: Vec<Option<Labels>> = {
            let cache = self.0.read();
            ids.iter().map(|id| cache.get(id).cloned()).collect()
        };
        let missing: Vec<SeriesId> = ids.iter().zip(&out).filter(|(_, l)| l.is_none()).map(|(id, _)| *id).collect();
        if !missing.is_empty() {
            let read = storage.series_labels(&missing)?;
            let mut cache = self.0.write();
            for (id, (_, labels)) in missing.iter().zip(read) {
                let labels = Labels::new(labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect());
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

fn convert(m: &PromMatcher) -> Matcher {
    let op = match &m.op {
        PromMatchOp::Equal => MatchOp::Equal,
        PromMatchOp::NotEqual => MatchOp::NotEqual,
        PromMatchOp::Regex(re) => MatchOp::Regex(re.clone()),
        PromMatchOp::NotRegex(re) => MatchOp::NotRegex(re.clone()),
    };
    Matcher { name: m.name.clone(), op, value: m.value.clone() }
}

impl Queryable for TenantQueryable {
    fn select(&self, matchers: &[PromMatcher], mint: i64, maxt: i64) -> Result<Vec<Series>, String> {
        let Some(tenant) = self.tenant else { return Ok(Vec::new()) };
        let matchers: Vec<Matcher> = matchers.iter().map(convert).collect();
        let ids: Vec<SeriesId> =
            self.storage.select(tenant, &[matchers], mint, maxt).map_err(|e| e.to_string())?.iter().collect();
        let labels = self.labels.get(&self.storage, &ids).map_err(|e| e.to_string())?;
        // Sorted by labels, as Prometheus's storage returns series.
        let mut found: Vec<(SeriesId, Labels)> = ids.into_iter().zip(labels).collect();
        found.sort_unstable_by(|a, b| a.1.cmp(&b.1));
        let ids: Vec<SeriesId> = found.iter().map(|(id, _)| *id).collect();
        let samples = self.storage.samples_of(&ids, mint, maxt).map_err(|e| e.to_string())?;
        let histograms = self.storage.histograms_of(&ids, mint, maxt).map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(found.len());
        for (((_, labels), samples), histograms) in found.into_iter().zip(samples).zip(histograms) {
            if samples.is_empty() && histograms.is_empty() {
                continue;
            }
            // Start timestamps only for series that have any: the rest cost two empty vectors.
            let start_timestamps = StartTimestamps {
                floats: starts_of(samples.iter().map(|s| s.start_ts)),
                histograms: starts_of(histograms.iter().map(|s| s.start_ts)),
            };
            let points: Vec<Point> = samples.into_iter().map(|s| Point { t: s.ts, v: s.value }).collect();
            let histograms: Vec<HistogramPoint> =
                histograms.into_iter().map(|s| HistogramPoint { t: s.ts, h: Arc::new(s.h) }).collect();
            out.push(Series { labels, points, histograms, start_timestamps, drop_name: false });
        }
        Ok(out)
    }
}

/// Every start timestamp of a series' samples, or none when no sample has one.
fn starts_of(starts: impl Iterator<Item = i64> + Clone) -> Vec<i64> {
    if starts.clone().all(|st| st == NO_START) { Vec::new() } else { starts.collect() }
}
