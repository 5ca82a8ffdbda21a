//! The engine's view of storage: select series by label matchers and read their samples in a
//! time range. Amber's server implements it over RocksDB; tests use [`MemoryStorage`].

use regex::Regex;

use crate::labels::Labels;
use std::sync::Arc;

use crate::value::{Histogram, HistogramPoint, Point, Series};

/// How a [`Matcher`] compares a label's value.
#[derive(Debug, Clone)]
pub enum MatchOp {
    Equal,
    NotEqual,
    /// Fully anchored, as in PromQL.
    Regex(Regex),
    NotRegex(Regex),
}

/// A label matcher. A series without the label matches as if its value were empty.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
}

impl Matcher {
    pub fn matches(&self, v: &str) -> bool {
        match &self.op {
            MatchOp::Equal => v == self.value,
            MatchOp::NotEqual => v != self.value,
            MatchOp::Regex(re) => re.is_match(v),
            MatchOp::NotRegex(re) => !re.is_match(v),
        }
    }

    pub fn matches_labels(&self, labels: &Labels) -> bool {
        self.matches(labels.get(&self.name).unwrap_or(""))
    }
}

/// Read access to stored series.
pub trait Queryable: Send + Sync {
    /// Series matching every matcher, each with its float and histogram samples in
    /// `[mint, maxt]` (stale markers included), sorted by labels.
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, String>;
}

/// Series held in memory: the engine's storage in tests and in the conformance runner.
#[derive(Debug, Default, Clone)]
pub struct MemoryStorage {
    series: Vec<Series>,
}

impl MemoryStorage {
    /// Adds points to a series (creating it); points must be appended in time order.
    pub fn add(&mut self, labels: Labels, points: &[Point]) {
        self.series_mut(labels).points.extend_from_slice(points);
    }

    /// Adds histogram samples to a series (creating it), in time order.
    pub fn add_histograms(&mut self, labels: Labels, histograms: impl IntoIterator<Item = (i64, Histogram)>) {
        let series = self.series_mut(labels);
        series.histograms.extend(histograms.into_iter().map(|(t, h)| HistogramPoint { t, h: Arc::new(h) }));
    }

    fn series_mut(&mut self, labels: Labels) -> &mut Series {
        let i = match self.series.binary_search_by(|s| s.labels.cmp(&labels)) {
            Ok(i) => i,
            Err(i) => {
                self.series.insert(i, Series::floats(labels, Vec::new(), false));
                i
            }
        };
        &mut self.series[i]
    }

    pub fn clear(&mut self) {
        self.series.clear();
    }
}

impl Queryable for MemoryStorage {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, String> {
        Ok(self
            .series
            .iter()
            .filter(|s| matchers.iter().all(|m| m.matches_labels(&s.labels)))
            .map(|s| Series {
                labels: s.labels.clone(),
                points: s.points.iter().filter(|p| p.t >= mint && p.t <= maxt).copied().collect(),
                histograms: s.histograms.iter().filter(|p| p.t >= mint && p.t <= maxt).cloned().collect(),
                drop_name: false,
            })
            .filter(|s| !s.is_empty())
            .collect())
    }
}
