//! The PromQL engine's storage trait over a read source, for one tenant.

use std::sync::Arc;

use amber_promql::{
    HistogramPoint, Labels, MatchOp as PromMatchOp, Matcher as PromMatcher, Point, Queryable, Series, StartTimestamps,
};
use amber_storage::source::{Columns, ReadSource};
use amber_storage::{MatchOp, Matcher, NO_START};

pub struct TenantQueryable {
    pub source: Arc<dyn ReadSource>,
    pub tenant: String,
    /// The query's sample limit: a selection past it stops loading and fails.
    pub max_samples: usize,
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
    fn select(&self, matchers: &[PromMatcher], mint: i64, maxt: i64) -> Result<Vec<Series>, amber_promql::Error> {
        let matchers: Vec<Matcher> = matchers.iter().map(convert).collect();
        let found =
            self.source.select_at_most(&self.tenant, &[matchers], mint, maxt, Columns::SAMPLES, self.max_samples);
        let found = found.map_err(|e| {
            if let amber_storage::Error::TooManySamples(_) = e {
                // Prometheus's own message, which clients match.
                amber_promql::Error::TooManySamples("query execution")
            } else if e.is_unavailable() {
                amber_promql::Error::Unavailable(e.to_string())
            } else if let amber_storage::Error::PeerRefused { .. } = e {
                amber_promql::Error::Execution(e.to_string())
            } else {
                amber_promql::Error::Storage(e.to_string())
            }
        })?;
        let mut out = Vec::with_capacity(found.len());
        for series in found {
            let (samples, histograms) = (series.samples, series.histograms);
            // Start timestamps only for series that have any: the rest cost two empty vectors.
            let start_timestamps = StartTimestamps {
                floats: starts_of(samples.iter().map(|s| s.start_ts)),
                histograms: starts_of(histograms.iter().map(|s| s.start_ts)),
            };
            let labels = Labels::new(series.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect());
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
