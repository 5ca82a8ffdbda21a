//! The PromQL engine's storage trait over a read source, for one tenant.

use std::ops::Range;
use std::sync::Arc;

use amber_promql::{HistogramPoint, Labels, MatchOp as PromMatchOp, Matcher as PromMatcher, Point, Queryable, Series};
use amber_storage::source::{Columns, ReadSource, SelectedSeries, SeriesData, SeriesSamples};
use amber_storage::{HistogramSample, MatchOp, Matcher, NO_START};
use parking_lot::Mutex;

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
        let found = found.map_err(engine_error)?;
        let mut out = Vec::with_capacity(found.len());
        for mut data in found {
            let mut series = Series::default();
            fill(&mut series, &mut data);
            out.push(series);
        }
        Ok(out)
    }

    fn select_in_parts(
        &self,
        matchers: &[PromMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Box<dyn amber_promql::SelectedSeries + '_>, amber_promql::Error> {
        let matchers: Vec<Matcher> = matchers.iter().map(convert).collect();
        let parts = self
            .source
            .select_in_parts(&self.tenant, &[matchers], mint, maxt, self.max_samples)
            .map_err(engine_error)?;
        Ok(Box::new(TenantParts { parts, read: Mutex::new(Vec::new()) }))
    }
}

/// A selection in parts, read through storage's own: each part is read into storage's lists,
/// then copied into the engine's, both reused from part to part.
struct TenantParts<'a> {
    parts: Box<dyn SelectedSeries + 'a>,
    /// Storage's lists, one set per reading thread, kept for the next part.
    read: Mutex<Vec<Vec<SeriesSamples>>>,
}

impl amber_promql::SelectedSeries for TenantParts<'_> {
    fn len(&self) -> usize {
        self.parts.len()
    }

    fn read_into(&self, part: Range<usize>, out: &mut Vec<Series>) -> Result<(), amber_promql::Error> {
        let mut read = self.read.lock().pop().unwrap_or_default();
        self.parts.read_into(part, &mut read).map_err(engine_error)?;
        out.resize_with(read.len(), Series::default);
        for (series, data) in out.iter_mut().zip(&mut read) {
            series.labels = engine_labels(&data.labels);
            series.points.clear();
            let samples = &data.samples;
            series.points.extend(samples.ts.iter().zip(&samples.values).map(|(&t, &v)| Point { t, v }));
            fill_starts_and_histograms(series, samples.starts.iter().copied(), &mut data.histograms);
        }
        self.read.lock().push(read);
        Ok(())
    }
}

/// Storage's error as the engine reports it.
fn engine_error(e: amber_storage::Error) -> amber_promql::Error {
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
}

/// `series` made the engine's copy of `data`, reusing its lists; `data`'s histograms are moved.
fn fill(series: &mut Series, data: &mut SeriesData) {
    series.labels = engine_labels(&data.labels);
    series.points.clear();
    series.points.extend(data.samples.iter().map(|s| Point { t: s.ts, v: s.value }));
    fill_starts_and_histograms(series, data.samples.iter().map(|s| s.start_ts), &mut data.histograms);
}

fn engine_labels(labels: &amber_storage::Labels) -> Labels {
    Labels::new(labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect())
}

/// The rest of [`fill`] once the points are in: the float samples' start timestamps
/// (`float_starts`, one per point or none), and the histograms, moved.
fn fill_starts_and_histograms(
    series: &mut Series,
    float_starts: impl Iterator<Item = i64> + Clone,
    histograms: &mut Vec<HistogramSample>,
) {
    // Start timestamps only for series that have any: the rest cost two empty vectors.
    let starts = &mut series.start_timestamps;
    starts_into(&mut starts.floats, float_starts);
    starts_into(&mut starts.histograms, histograms.iter().map(|s| s.start_ts));
    series.histograms.clear();
    series.histograms.extend(histograms.drain(..).map(|s| HistogramPoint { t: s.ts, h: Arc::new(s.h) }));
    series.drop_name = false;
}

/// Every start timestamp of a series' samples into `into`, or none when no sample has one.
fn starts_into(into: &mut Vec<i64>, starts: impl Iterator<Item = i64> + Clone) {
    into.clear();
    if !starts.clone().all(|st| st == NO_START) {
        into.extend(starts);
    }
}
