//! The engine's view of storage: select series by label matchers and read their samples in a
//! time range. Amber's server implements it over RocksDB; tests use [`MemoryStorage`].

use regex::Regex;

use crate::error::Error;
use crate::labels::Labels;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use crate::value::{Histogram, HistogramPoint, Point, Series, StartTimestamps};

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
    /// `[mint, maxt]` (stale markers included) and, when storage has any, their start
    /// timestamps, sorted by labels. Fails with [`Error::Storage`], or [`Error::Unavailable`]
    /// when a source of the data did not answer and a retry may succeed.
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, Error>;

    /// The series [`Queryable::select`] would give, their samples read later, part by part
    /// ([`SelectedSeries::read_into`]), so that an evaluation that goes series by series holds one
    /// part at a time instead of every series' samples. The default selects everything now and
    /// hands it out in parts; a storage that can read a part on its own does.
    fn select_in_parts(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Box<dyn SelectedSeries + '_>, Error> {
        Ok(Box::new(SelectedAlready(Mutex::new(self.select(matchers, mint, maxt)?))))
    }
}

/// The series a [`Queryable::select_in_parts`] found, sorted by labels, read a part at a time.
pub trait SelectedSeries: Send + Sync {
    /// How many series were found: parts are ranges of positions below it.
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The series at positions `part`, with their samples, into `out`, one per position (a
    /// series without samples in the time range is there too, empty). `out`'s lists are reused,
    /// so reading part after part into the same `out` fills no fresh pages. Each part is read once.
    fn read_into(&self, part: Range<usize>, out: &mut Vec<Series>) -> Result<(), Error>;
}

/// A selection made whole, handed out in parts.
struct SelectedAlready(Mutex<Vec<Series>>);

impl SelectedSeries for SelectedAlready {
    fn len(&self) -> usize {
        self.0.lock().expect("not poisoned").len()
    }

    fn read_into(&self, part: Range<usize>, out: &mut Vec<Series>) -> Result<(), Error> {
        let mut all = self.0.lock().expect("not poisoned");
        out.clear();
        out.extend(all[part].iter_mut().map(std::mem::take));
        Ok(())
    }
}

/// Series held in memory: the engine's storage in tests and in the conformance runner.
#[derive(Debug, Default, Clone)]
pub struct MemoryStorage {
    series: Vec<Series>,
}

impl MemoryStorage {
    /// Adds points to a series (creating it); points must be appended in time order.
    pub fn add(&mut self, labels: Labels, points: &[Point]) {
        let series = self.series_mut(labels);
        series.points.extend_from_slice(points);
        if !series.start_timestamps.floats.is_empty() {
            series.start_timestamps.floats.resize(series.points.len(), 0);
        }
    }

    /// Adds histogram samples to a series (creating it), in time order.
    pub fn add_histograms(&mut self, labels: Labels, histograms: impl IntoIterator<Item = (i64, Histogram)>) {
        let series = self.series_mut(labels);
        series.histograms.extend(histograms.into_iter().map(|(t, h)| HistogramPoint { t, h: Arc::new(h) }));
        if !series.start_timestamps.histograms.is_empty() {
            series.start_timestamps.histograms.resize(series.histograms.len(), 0);
        }
    }

    /// Sets the start timestamps of a series' samples so far (each list empty, or as long as
    /// its float or histogram samples).
    pub fn set_start_timestamps(&mut self, labels: Labels, starts: StartTimestamps) {
        let series = self.series_mut(labels);
        assert!(starts.floats.is_empty() || starts.floats.len() == series.points.len(), "one start per float");
        assert!(
            starts.histograms.is_empty() || starts.histograms.len() == series.histograms.len(),
            "one start per histogram"
        );
        series.start_timestamps = starts;
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
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, Error> {
        Ok(self
            .series
            .iter()
            .filter(|s| matchers.iter().all(|m| m.matches_labels(&s.labels)))
            .map(|s| {
                let floats = s.points.partition_point(|p| p.t < mint)..s.points.partition_point(|p| p.t <= maxt);
                let histograms =
                    s.histograms.partition_point(|p| p.t < mint)..s.histograms.partition_point(|p| p.t <= maxt);
                let starts = &s.start_timestamps;
                Series {
                    labels: s.labels.clone(),
                    points: s.points[floats.clone()].to_vec(),
                    histograms: s.histograms[histograms.clone()].to_vec(),
                    start_timestamps: StartTimestamps {
                        floats: starts.floats.get(floats).map(<[i64]>::to_vec).unwrap_or_default(),
                        histograms: starts.histograms.get(histograms).map(<[i64]>::to_vec).unwrap_or_default(),
                    },
                    drop_name: false,
                }
            })
            .filter(|s| !s.is_empty())
            .collect())
    }
}
