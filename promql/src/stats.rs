//! Query statistics: what Prometheus reports under `stats` in a query answer
//! (`util/stats/query_stats.go`), measured on Amber's evaluator.
//!
//! - `totalQueryableSamples` follows Prometheus's definition exactly: at every step, each
//!   selector counts the samples it reads for that step. An instant selector counts one per
//!   series with a value at the step; a range selector (and a subquery passed to a function)
//!   counts the points in its window, again at every step whose window holds them, stale
//!   markers left out; a subquery at the top of an instant query counts what its inner steps
//!   read. A native histogram counts as Prometheus's `HPoint.size()`: its size in bytes plus 8,
//!   divided by 16 (a float sample's size), except under `timestamp()` and `start_timestamp()`
//!   of a selector, which count one per series as Prometheus does. The `smoothed` instant
//!   selector counts nothing, as in Prometheus. A range query's total is the sum over its steps,
//!   whichever way Amber evaluates it (step by step, series by series, or on several threads).
//! - `peakSamples` is what Amber holds at its peak, in the same unit (see
//!   [`QuerySamples::peak_samples`]); Prometheus's own peak counts what its evaluator
//!   materialises, which Amber does differently (it loads the selected data once, before
//!   evaluation), so the two are comparable in size but not equal.
//!
//! Counting is off unless a query asks for it ([`StatsLevel`]): the evaluator then carries no
//! counters at all, and every counting site is a check of an `Option` beside work it does anyway.

use std::time::Duration;

use crate::value::{Histogram, HistogramPoint, Sample, Series, Value};

/// Which statistics a query gathers: the API's `stats` parameter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StatsLevel {
    /// None (no `stats` parameter).
    #[default]
    Off,
    /// Timings and sample counts (any non-empty `stats`).
    Totals,
    /// Also the samples of every step (`stats=all`).
    PerStep,
}

/// A query's statistics, in Prometheus's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryStats {
    pub timings: QueryTimings,
    pub samples: QuerySamples,
}

/// Where a query's time went. `eval_total` is the engine's whole call: `query_preparation`
/// (parsing, and loading every selector's data from storage), then `inner_eval` (evaluation),
/// then `result_sort` (sorting a range query's series; an instant query's result is not sorted,
/// so 0). The engine leaves `exec_queue` at 0 and `exec_total` equal to `eval_total`; the caller
/// that queues the query sets both (the API: the wait for its evaluation thread, and the whole
/// request's query time).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryTimings {
    pub eval_total: Duration,
    pub result_sort: Duration,
    pub query_preparation: Duration,
    pub inner_eval: Duration,
    pub exec_queue: Duration,
    pub exec_total: Duration,
}

/// Sample counts of a query (see the module documentation).
#[derive(Debug, Clone, PartialEq)]
pub struct QuerySamples {
    /// Samples the query's selectors read, summed over its steps.
    pub total_queryable_samples: u64,
    /// The same per step, as (step time in milliseconds, samples); `None` unless
    /// [`StatsLevel::PerStep`] was asked for. An instant query has one step.
    pub total_queryable_samples_per_step: Option<Vec<(i64, u64)>>,
    /// The most samples Amber held at once: every sample loaded from storage for the query
    /// (held from loading to the end), plus the values evaluation held beside them: at each
    /// evaluation of an expression node, its result together with the results of its operands
    /// still held while it was computed, and the results of the nodes above it still waiting
    /// for it; in a range query also the result points gathered from earlier steps (or, series
    /// by series, each stage's points beside the stage it feeds). Windows of a range selector
    /// read in place are not copies and count nothing; a subquery holds its inner steps'
    /// results. When a range query's steps are split between threads, the threads' peaks are
    /// added, as they may coincide. Histograms count in the unit of
    /// [`QuerySamples::total_queryable_samples`].
    pub peak_samples: u64,
}

/// Samples a native histogram counts for: Prometheus's `HPoint.size()`, its
/// `FloatHistogram.Size()` (168 bytes of struct plus 8 per span, bucket and custom bound) plus
/// the 8 bytes of its timestamp, in units of a float sample's 16 bytes.
pub(crate) fn histogram_samples(h: &Histogram) -> u64 {
    let parts = h.positive_spans.len()
        + h.negative_spans.len()
        + h.positive_buckets.len()
        + h.negative_buckets.len()
        + h.custom_values.len();
    (168 + 8 * parts as u64 + 8) / 16
}

pub(crate) fn histograms_samples(histograms: &[HistogramPoint]) -> u64 {
    histograms.iter().map(|p| histogram_samples(&p.h)).sum()
}

/// Samples of one element of an instant vector.
pub(crate) fn sample_samples(s: &Sample) -> u64 {
    s.h.as_deref().map_or(1, histogram_samples)
}

/// Samples of a series' points, floats and histograms.
pub(crate) fn series_samples(s: &Series) -> u64 {
    s.points.len() as u64 + histograms_samples(&s.histograms)
}

/// Samples a value holds: a scalar is one, a string none.
pub(crate) fn value_samples(v: &Value) -> u64 {
    match v {
        Value::Scalar(_) => 1,
        Value::String { .. } => 0,
        Value::Vector(samples) => samples.iter().map(sample_samples).sum(),
        Value::Matrix(series) => series.iter().map(series_samples).sum(),
    }
}

/// The counters an evaluator carries when its query asks for statistics.
#[derive(Debug, Clone)]
pub(crate) struct Counters {
    /// Whether reads count: off while a subquery passed to a function evaluates its inner steps
    /// (Prometheus counts that subquery's result in the function's windows instead).
    pub(crate) counting: bool,
    /// The address of the subquery at the top of an instant query, whose inner reads count.
    pub(crate) top_subquery: Option<usize>,
    /// The first step's time and the step (1 for an instant query), to place a step's counts.
    start: i64,
    interval: i64,
    /// The step being evaluated, as an index into `per_step`.
    step: usize,
    per_step: Vec<u64>,
    /// Samples loaded from storage.
    loaded: u64,
    /// Samples held now, and the most held at once (see [`QuerySamples::peak_samples`]).
    live: u64,
    peak: u64,
    /// What the evaluator held when it forked (set when the first fork is taken back), and the
    /// forks' peaks above it, added up.
    fork_base: Option<u64>,
    forked: u64,
}

impl Counters {
    /// Counters for `steps` steps from `start`, `interval` apart.
    pub(crate) fn new(start: i64, interval: i64, steps: usize) -> Counters {
        Counters {
            counting: true,
            top_subquery: None,
            start,
            interval: interval.max(1),
            step: 0,
            per_step: vec![0; steps.max(1)],
            loaded: 0,
            live: 0,
            peak: 0,
            fork_base: None,
            forked: 0,
        }
    }

    /// The index of the step at `t` (a step of the query), clamped to the steps there are.
    fn index(&self, t: i64) -> usize {
        let i = usize::try_from((t - self.start) / self.interval).unwrap_or(0);
        i.min(self.per_step.len() - 1)
    }

    /// Makes the step at `t` the one reads are counted for.
    pub(crate) fn at_step(&mut self, t: i64) {
        self.step = self.index(t);
    }

    /// Counts `n` samples read at the current step.
    pub(crate) fn read(&mut self, n: u64) {
        if self.counting {
            self.per_step[self.step] += n;
        }
    }

    /// Counts `n` samples read at the step at `t`.
    pub(crate) fn read_at(&mut self, t: i64, n: u64) {
        if self.counting {
            let i = self.index(t);
            self.per_step[i] += n;
        }
    }

    /// Counts samples loaded from storage, held until the query ends.
    pub(crate) fn loaded(&mut self, n: u64) {
        self.loaded += n;
        self.live += n;
        self.peak = self.peak.max(self.live);
    }

    /// Samples held now.
    pub(crate) fn live(&self) -> u64 {
        self.live
    }

    /// A node's result of `size` samples was computed while its operands' results were held
    /// (what was held beyond `before`): both count towards the peak, then only the result stays.
    pub(crate) fn hold(&mut self, before: u64, size: u64) {
        self.peak = self.peak.max(self.live + size);
        self.live = before + size;
    }

    /// What was held beyond `before` was moved elsewhere (a subquery's inner results into its
    /// own), so it is counted there instead.
    pub(crate) fn release_to(&mut self, before: u64) {
        self.live = before;
    }

    /// Fresh counters for a fork that evaluates some of the same query's steps over the same
    /// loaded data.
    pub(crate) fn fork(&self) -> Counters {
        Counters {
            step: 0,
            per_step: vec![0; self.per_step.len()],
            peak: self.live,
            fork_base: None,
            forked: 0,
            ..self.clone()
        }
    }

    /// Takes a fork's counts back. The forks ran at once, so their peaks above what was held
    /// when they forked are added.
    pub(crate) fn absorb(&mut self, fork: &Counters) {
        for (mine, theirs) in self.per_step.iter_mut().zip(&fork.per_step) {
            *mine += theirs;
        }
        let base = *self.fork_base.get_or_insert(self.live);
        self.forked += fork.peak.saturating_sub(base);
        self.live += fork.live.saturating_sub(base);
        self.peak = self.peak.max(base + self.forked).max(self.live);
    }

    /// Puts back counters saved before an attempt whose work is thrown away (and done again
    /// another way), keeping the peak it reached: what it held, it held.
    pub(crate) fn restore(&mut self, saved: Counters) {
        let peak = self.peak;
        *self = saved;
        self.peak = self.peak.max(peak);
    }

    /// The statistics, with `timings`.
    pub(crate) fn finish(self, level: StatsLevel, timings: QueryTimings) -> QueryStats {
        let total = self.per_step.iter().sum();
        let per_step = (level == StatsLevel::PerStep).then(|| {
            self.per_step.iter().enumerate().map(|(i, &n)| (self.start + i as i64 * self.interval, n)).collect()
        });
        QueryStats {
            timings,
            samples: QuerySamples {
                total_queryable_samples: total,
                total_queryable_samples_per_step: per_step,
                peak_samples: self.peak.max(self.live),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Engine, EngineOptions, Labels, MemoryStorage, Point, QueryContext, STALE_NAN_BITS};
    use amber_histogram::Span;

    const S: i64 = 1000;

    /// Three series `x` with a sample every 15 s from 5 s to 590 s, one (`i="3"`) with a single
    /// sample at 100 s, one (`i="4"`) that goes stale at 20 s, classic buckets `b_bucket` (two
    /// of them the same bound written differently) and native histograms `h` of 3 spans and
    /// buckets (12 samples each), on the same times.
    fn storage() -> (MemoryStorage, Vec<Vec<Point>>) {
        let mut storage = MemoryStorage::default();
        let times: Vec<i64> = (0..40).map(|k| 5 * S + k * 15 * S).collect();
        let mut floats = Vec::new();
        for i in 0..3 {
            let points: Vec<Point> =
                times.iter().enumerate().map(|(k, &t)| Point { t, v: (k * (i + 1)) as f64 }).collect();
            storage.add(Labels::from_pairs(&[("__name__", "x"), ("i", &i.to_string())]), &points);
            floats.push(points);
        }
        let once = vec![Point { t: 100 * S, v: 1.0 }];
        storage.add(Labels::from_pairs(&[("__name__", "x"), ("i", "3")]), &once);
        floats.push(once);
        let stale = vec![Point { t: 5 * S, v: 1.0 }, Point { t: 20 * S, v: f64::from_bits(STALE_NAN_BITS) }];
        storage.add(Labels::from_pairs(&[("__name__", "x"), ("i", "4")]), &stale);
        floats.push(stale);
        for le in ["1", "1.0", "+Inf"] {
            let points: Vec<Point> = times.iter().enumerate().map(|(k, &t)| Point { t, v: k as f64 }).collect();
            storage.add(Labels::from_pairs(&[("__name__", "b_bucket"), ("le", le)]), &points);
        }
        let histogram = |k: usize| Histogram {
            count: 3.0 * k as f64,
            sum: k as f64,
            positive_spans: vec![Span { offset: 0, length: 2 }],
            positive_buckets: vec![k as f64, 2.0 * k as f64],
            ..Default::default()
        };
        storage.add_histograms(
            Labels::from_pairs(&[("__name__", "h")]),
            times.iter().enumerate().map(|(k, &t)| (t, histogram(k))),
        );
        (storage, floats)
    }

    fn stats_ctx(level: StatsLevel) -> QueryContext {
        QueryContext { stats: level, ..QueryContext::default() }
    }

    fn instant(engine: &Engine, storage: &MemoryStorage, query: &str, t: i64) -> QuerySamples {
        let out = engine.instant_query(storage, query, t, &stats_ctx(StatsLevel::PerStep)).expect(query);
        out.stats.expect("asked for").samples
    }

    fn range(engine: &Engine, storage: &MemoryStorage, query: &str, [start, end, step]: [i64; 3]) -> QuerySamples {
        let out = engine.range_query(storage, query, start, end, step, &stats_ctx(StatsLevel::PerStep)).expect(query);
        out.stats.expect("asked for").samples
    }

    /// The live (not stale) float samples of `x` in `(t - range, t]`.
    fn in_window(floats: &[Vec<Point>], t: i64, range: i64) -> u64 {
        let live = |p: &&Point| p.t > t - range && p.t <= t && p.v.to_bits() != STALE_NAN_BITS;
        floats.iter().map(|points| points.iter().filter(live).count() as u64).sum()
    }

    #[test]
    fn no_statistics_unless_asked() {
        let (storage, _) = storage();
        let engine = Engine::default();
        let out = engine.instant_query(&storage, "x", 500 * S, &QueryContext::default()).unwrap();
        assert_eq!(out.stats, None);
        let out = engine.range_query(&storage, "x", 0, 600 * S, 60 * S, &QueryContext::default()).unwrap();
        assert_eq!(out.stats, None);
        let out = engine.instant_query(&storage, "x", 500 * S, &stats_ctx(StatsLevel::Totals)).unwrap();
        assert_eq!(out.stats.unwrap().samples.total_queryable_samples_per_step, None);
    }

    /// An instant selector reads one sample per series with a value: not the series whose
    /// newest sample is older than the lookback, nor the one that went stale. The peak is what
    /// was loaded (every sample in `[t - 5m, t]`: 21 per live series) plus the result.
    #[test]
    fn instant_selector_counts_series_with_a_value() {
        let (storage, _) = storage();
        let samples = instant(&Engine::default(), &storage, "x", 500 * S);
        assert_eq!(
            samples,
            QuerySamples {
                total_queryable_samples: 3,
                total_queryable_samples_per_step: Some(vec![(500 * S, 3)]),
                peak_samples: 63 + 3,
            }
        );
    }

    /// A range function counts its whole window at every step, `(t - 1m, t]`, however the range
    /// query is evaluated: series by series, step by step, on one thread or several.
    #[test]
    fn range_functions_count_their_window_at_every_step() {
        let (storage, floats) = storage();
        let steps: Vec<i64> = (1..=11).map(|k| k * 60 * S).collect();
        // Samples at 5 s + 15 s·k: four per full window; `i="3"` at 120 s, `i="4"` at 60 s.
        let want: Vec<(i64, u64)> = steps.iter().map(|&t| (t, in_window(&floats, t, 60 * S))).collect();
        assert_eq!(want[..3], [(60 * S, 13), (120 * S, 13), (180 * S, 12)]);
        assert_eq!(want[10], (660 * S, 0));
        for parallel_min_samples in [0, usize::MAX] {
            let engine = Engine::new(EngineOptions { parallel_min_samples, ..EngineOptions::default() });
            for query in ["sum(rate(x[1m]))", "sum(rate(x[1m])) * 1", "rate(x[1m])", "count_over_time(x[1m])"] {
                let samples = range(&engine, &storage, query, [60 * S, 660 * S, 60 * S]);
                assert_eq!(samples.total_queryable_samples_per_step.as_ref(), Some(&want), "{query}");
                assert_eq!(samples.total_queryable_samples, want.iter().map(|(_, n)| n).sum::<u64>(), "{query}");
            }
        }
        // A window's left end is open (Prometheus 3): at a step 60 s after a sample, that sample
        // is out; at the sample's own time it is in.
        let engine = Engine::default();
        assert_eq!(range(&engine, &storage, "rate(x[1m])", [65 * S, 65 * S, S]).total_queryable_samples, 3 * 4);
    }

    /// A range query's count at each step is what the instant query at that step counts, as
    /// Prometheus defines it, for every path of the evaluator.
    #[test]
    fn range_query_steps_count_as_instant_queries() {
        let (storage, _) = storage();
        for parallel_min_samples in [0, usize::MAX] {
            let engine = Engine::new(EngineOptions { parallel_min_samples, ..EngineOptions::default() });
            for query in [
                "x",
                "x offset 1m",
                "x @ 300",
                "sum by (i) (x)",
                "x + on(i) x",
                "topk(2, x)",
                "timestamp(x)",
                "rate(x[1m] @ 300)",
                "rate(x[1m] offset 30s)",
                "max_over_time(x[2m:30s])",
                "max_over_time(rate(x[1m])[3m:1m])",
                "absent_over_time(x[1m])",
                "rate(x[1m] anchored)",
                "increase(x[1m] smoothed)",
                "histogram_quantile(0.5, rate(b_bucket[1m]))",
                "histogram_quantile(0.5, sum by (le) (rate(b_bucket[1m])))",
                "h",
                "timestamp(h)",
                "count_over_time(h[1m])",
                "histogram_count(rate(h[1m]))",
                "label_replace(x, \"j\", \"$1\", \"i\", \"(.*)\")",
            ] {
                let samples = range(&engine, &storage, query, [30 * S, 630 * S, 45 * S]);
                let per_step = samples.total_queryable_samples_per_step.unwrap();
                assert_eq!(per_step.len(), 14, "{query}");
                let mut any = 0;
                for (t, n) in per_step {
                    assert_eq!(n, instant(&engine, &storage, query, t).total_queryable_samples, "{query} at {t}");
                    any += n;
                }
                assert!(any > 0, "{query} read nothing");
                assert_eq!(samples.total_queryable_samples, any, "{query}");
            }
        }
    }

    /// A subquery passed to a function counts its result's points in the function's window; at
    /// the top of an instant query it counts what its inner steps read.
    #[test]
    fn subqueries_count_as_prometheus_counts_them() {
        let (storage, _) = storage();
        let engine = Engine::default();
        let t = 500 * S;
        // Inner steps at 390, 420, 450 and 480 s; each `rate(x[1m])` reads 4 samples of each of
        // the three live series.
        assert_eq!(instant(&engine, &storage, "max_over_time(rate(x[1m])[2m:30s])", t).total_queryable_samples, 4 * 3);
        assert_eq!(instant(&engine, &storage, "rate(x[1m])[2m:30s]", t).total_queryable_samples, 4 * 4 * 3);
        // `x` at the inner steps: the three live series, and `i="3"` (100 s) still within the
        // lookback at 390 s.
        assert_eq!(instant(&engine, &storage, "(x[2m:30s])", t).total_queryable_samples, 4 * 3 + 1);
        // Nested (over the three live series): the outer subquery's function counts the outer
        // result only.
        let nested = r#"max_over_time(max_over_time(x{i=~"[012]"}[1m:15s])[2m:30s])"#;
        assert_eq!(instant(&engine, &storage, nested, t).total_queryable_samples, 4 * 3);
        // At the top, the inner function's subquery counts as its window: 4 points at 15 s steps
        // in each 1 m, at each of the 4 outer steps.
        let top = r#"max_over_time(x{i=~"[012]"}[1m:15s])[2m:30s]"#;
        assert_eq!(instant(&engine, &storage, top, t).total_queryable_samples, 4 * 4 * 3);
    }

    /// Native histograms count by their size, except where only their timestamps are read.
    #[test]
    fn histograms_count_by_size() {
        let (storage, _) = storage();
        let engine = Engine::default();
        let t = 500 * S;
        assert_eq!(instant(&engine, &storage, "h", t).total_queryable_samples, 12);
        assert_eq!(instant(&engine, &storage, "timestamp(h)", t).total_queryable_samples, 1);
        assert_eq!(instant(&engine, &storage, "timestamp((h))", t).total_queryable_samples, 1);
        assert_eq!(instant(&engine, &storage, "count_over_time(h[1m])", t).total_queryable_samples, 4 * 12);
        assert_eq!(instant(&engine, &storage, "h[1m]", t).total_queryable_samples, 4 * 12);
    }

    #[test]
    fn peak_counts_what_is_loaded_and_what_evaluation_holds() {
        let (storage, _) = storage();
        let engine = Engine::default();
        // Loaded: x's samples in [440 s, 500 s], both ends in (5 per live series); then the rate
        // vector (3) beside its sum (1).
        assert_eq!(instant(&engine, &storage, "sum(rate(x[1m]))", 500 * S).peak_samples, 15 + 3 + 1);
        // A range query holds its result points too: series by series, the rate points of the
        // three series at every step (11 steps from 60 s to 600 s, none at 660 s) beside their sum.
        let samples = range(&engine, &storage, "sum(rate(x[1m]))", [60 * S, 660 * S, 60 * S]);
        let loaded = 3 * 40 + 1 + 2;
        assert_eq!(samples.peak_samples, loaded + 3 * 10 + 10);
    }

    #[test]
    fn histograms_count_as_prometheus_hpoint_size() {
        // No spans or buckets: (168 + 8) / 16.
        assert_eq!(histogram_samples(&Histogram::default()), 11);
        let h = Histogram {
            positive_spans: vec![Span { offset: 0, length: 3 }],
            positive_buckets: vec![1.0, 2.0, 3.0],
            negative_spans: vec![Span { offset: 1, length: 1 }],
            negative_buckets: vec![1.0],
            ..Default::default()
        };
        // 6 parts: (168 + 48 + 8) / 16 = 14.
        assert_eq!(histogram_samples(&h), 14);
    }
}
