//! Range queries evaluated series by series over all their steps, for the expression shapes
//! that allow it, instead of step by step.
//!
//! Step by step, every step of a range query builds an instant vector of every series (labels
//! shared, but a sample each), looks up each sample's group or output series, and throws the
//! vector away: for a day at a 60 s step that is 1,441 passes over every series. Series by
//! series, a selector, or a `rate`-family call over one, walks each series' points once across
//! all the steps (`rate` on several threads), an aggregation over it finds each input series' group once and
//! folds the inputs' points step by step into per-group points, and `histogram_quantile` over
//! that finds each bucket's histogram once. Each shape gives exactly what the step-by-step path
//! gives — the same values, in the same order of floating-point operations, and the same
//! annotations — and any other shape (or an input where the two could differ) is left to it.

use promql_parser::parser::Expr;

use crate::error::Result;
use crate::eval::Evaluator;
use crate::functions::without_parens;
use crate::labels::{Labels, LabelsMap};
use crate::value::Point;
use crate::{aggregate, functions};

/// One series of an expression evaluated series by series: its labels, whether its metric name
/// is still to be dropped, and its points (ascending, each at one of the query's steps).
pub(crate) struct SeriesPoints {
    pub(crate) labels: Labels,
    pub(crate) drop_name: bool,
    pub(crate) points: Vec<Point>,
}

/// `expr` evaluated series by series over `steps` on up to `threads` threads; `None` for the
/// shapes that go step by step.
pub(crate) fn eval(
    ev: &mut Evaluator<'_>,
    expr: &Expr,
    steps: &[i64],
    threads: usize,
) -> Option<Result<Vec<SeriesPoints>>> {
    held(ev, |ev| match without_parens(expr) {
        Expr::Call(c) => functions::call_by_series(ev, c, steps, threads),
        Expr::Aggregate(a) => aggregate::by_series(ev, a, steps, threads),
        Expr::VectorSelector(vs) => ev.instant_selector_by_series(vs, steps),
        _ => None,
    })
}

/// Like [`eval`], for the shapes whose series come out in the order the step-by-step path gives
/// its samples at every step (the order an aggregation folds them in): a `rate`-family call
/// over a selector, whose series are the selector's.
pub(crate) fn eval_in_step_order(
    ev: &mut Evaluator<'_>,
    expr: &Expr,
    steps: &[i64],
    threads: usize,
) -> Option<Result<Vec<SeriesPoints>>> {
    held(ev, |ev| match without_parens(expr) {
        Expr::Call(c) if functions::is_rate_family(c) => functions::call_by_series(ev, c, steps, threads),
        Expr::VectorSelector(vs) => ev.instant_selector_by_series(vs, steps),
        _ => None,
    })
}

/// The key of the matrix selector that [`eval`] of `expr` reads in parts
/// ([`crate::eval::Evaluator::read_in_parts`]), for the shapes that read one selector series by
/// series and keep only each series' points: a `rate`-family call over it, a folding
/// aggregation over that call, and `histogram_quantile` over either.
pub(crate) fn read_in_parts(expr: &Expr) -> Option<usize> {
    match without_parens(expr) {
        Expr::Call(c) if functions::is_rate_family(c) => {
            if !matches!(crate::extended::extended_argument(c), Ok(None)) {
                return None;
            }
            let [arg] = c.args.args.as_slice() else { return None };
            let Expr::MatrixSelector(ms) = without_parens(arg) else { return None };
            ms.vs.at.is_none().then(|| crate::eval::selector_key(&ms.vs))
        }
        Expr::Call(c) if c.func.name == "histogram_quantile" => match c.args.args.as_slice() {
            [q, arg] if matches!(without_parens(q), Expr::NumberLiteral(_)) => read_in_parts(arg),
            _ => None,
        },
        Expr::Aggregate(a) if aggregate::fold_op(a).is_some() => match without_parens(&a.expr) {
            Expr::Call(c) if functions::is_rate_family(c) => read_in_parts(&a.expr),
            _ => None,
        },
        _ => None,
    }
}

/// `f`'s points counted as held beside what its own inputs held while it computed them, for
/// `peakSamples` (see [`crate::stats::QuerySamples::peak_samples`]).
fn held(
    ev: &mut Evaluator<'_>,
    f: impl FnOnce(&mut Evaluator<'_>) -> Option<Result<Vec<SeriesPoints>>>,
) -> Option<Result<Vec<SeriesPoints>>> {
    let before = ev.held();
    let out = f(ev)?;
    if let Ok(series) = &out {
        ev.hold(before, || series.iter().map(|s| s.points.len() as u64).sum());
    }
    Some(out)
}

/// A whole range query evaluated series by series: the result series by labels (metric names
/// dropped where marked), series without points left out. `None` for the shapes that go step by
/// step, and when two result series would have the same labels (the step-by-step path then
/// merges them or reports the collision, step by step).
pub(crate) fn range_query(
    ev: &mut Evaluator<'_>,
    expr: &Expr,
    steps: &[i64],
    threads: usize,
) -> Option<Result<LabelsMap<Vec<Point>>>> {
    let series = match eval(ev, expr, steps, threads)? {
        Ok(series) => series,
        Err(e) => return Some(Err(e)),
    };
    let mut out: LabelsMap<Vec<Point>> = LabelsMap::default();
    for s in series.into_iter().filter(|s| !s.points.is_empty()) {
        let labels = if s.drop_name { s.labels.without_metric_name() } else { s.labels };
        let before = out.len();
        let i = out.index_or_insert_with(&labels, Vec::new);
        if out.len() == before {
            return None;
        }
        *out.value_at_mut(i) = s.points;
    }
    Some(Ok(out))
}

#[cfg(test)]
mod tests {
    use crate::{
        Engine, EngineOptions, Error, Labels, Matcher, MemoryStorage, Point, QueryContext, Queryable, STALE_NAN_BITS,
        SelectedSeries, Series, Value,
    };

    /// Counters with resets, gaps and a stale marker, gauges, and classic histogram buckets
    /// (one with a malformed `le`, one histogram whose counts are not monotonic), scraped
    /// irregularly so that series come and go between steps.
    fn storage() -> MemoryStorage {
        let mut storage = MemoryStorage::default();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for (i, (job, mode)) in
            [("a", "idle"), ("a", "user"), ("b", "idle"), ("b", "user"), ("c", "idle")].into_iter().enumerate()
        {
            let labels = Labels::from_pairs(&[("__name__", "cpu_total"), ("job", job), ("mode", mode)]);
            let mut v = 0.0;
            let mut points = Vec::new();
            for k in 0..400i64 {
                // Series 4 starts late; series 2 has a gap; every series skips some scrapes.
                if (i == 4 && k < 150) || (i == 2 && (200..260).contains(&k)) || next() % 7 == 0 {
                    continue;
                }
                v = if next() % 97 == 0 { 0.0 } else { v + (next() % 1000) as f64 / 7.0 };
                let v = if i == 1 && k == 300 { f64::from_bits(STALE_NAN_BITS) } else { v };
                points.push(Point { t: k * 15_000 + (next() % 5000) as i64, v });
            }
            storage.add(labels.clone(), &points);
            let gauge = Labels::from_pairs(&[("__name__", "mem_bytes"), ("job", job), ("mode", mode)]);
            let gauge_points: Vec<Point> = points.iter().map(|p| Point { t: p.t, v: (next() % 100) as f64 }).collect();
            storage.add(gauge, &gauge_points);
        }
        for handler in ["/a", "/b"] {
            for (j, le) in ["0.1", "0.5", "1", "+Inf", "oops"].into_iter().enumerate() {
                let labels = Labels::from_pairs(&[("__name__", "req_bucket"), ("handler", handler), ("le", le)]);
                let mut v = 0.0;
                let mut points = Vec::new();
                for k in 0..400i64 {
                    if next() % 11 == 0 {
                        continue;
                    }
                    // Handler /b's 0.5 bucket grows faster than its 1 bucket: not monotonic.
                    let grow = if handler == "/b" && j == 1 { 9.0 } else { (j + 1) as f64 };
                    v += grow * (next() % 10) as f64;
                    points.push(Point { t: k * 15_000, v });
                }
                storage.add(labels, &points);
            }
        }
        storage
    }

    /// Every step of a range query evaluated series by series equals, bit for bit and with the
    /// same annotations, the instant query at that step (which is evaluated step by step).
    #[test]
    fn series_by_series_range_queries_equal_instant_queries_at_every_step() {
        let storage = storage();
        for parallel_min_samples in [0, usize::MAX] {
            let engine = Engine::new(EngineOptions { parallel_min_samples, ..EngineOptions::default() });
            for query in [
                "cpu_total",
                "rate(cpu_total[1m])",
                "sum by (mode) (rate(cpu_total[2m]))",
                "sum without (mode) (rate(cpu_total[2m]))",
                "sum(rate(cpu_total[5m] offset 3m))",
                "avg by (job) (increase(cpu_total[2m]))",
                "min by (mode) (irate(cpu_total[2m]))",
                "max(delta(cpu_total[1m]))",
                "count by (job) (rate(cpu_total[1m]))",
                "group by (__name__) (rate(cpu_total[1m]))",
                "stddev by (mode) (rate(cpu_total[3m]))",
                "stdvar(rate(cpu_total[3m]))",
                "sum by (mode) (mem_bytes)",
                "max without (job) (mem_bytes)",
                "histogram_quantile(0.9, sum by (le) (rate(req_bucket[2m])))",
                "histogram_quantile(0.5, sum by (handler, le) (rate(req_bucket[2m])))",
                "histogram_quantile(0.99, rate(req_bucket[2m]))",
                "histogram_quantile(1.5, sum by (le, handler) (increase(req_bucket[5m])))",
            ] {
                let (start, end, step) = (0, 400 * 15_000, 45_000);
                let ctx = QueryContext::default();
                let range = engine.range_query(&storage, query, start, end, step, &ctx).expect(query);
                let Value::Matrix(matrix) = &range.value else { panic!("{query}: {:?}", range.value) };
                let mut warnings = std::collections::BTreeSet::new();
                let mut infos = std::collections::BTreeSet::new();
                let mut points = 0;
                for t in (start..=end).step_by(step as usize) {
                    let instant = engine.instant_query(&storage, query, t, &ctx).expect(query);
                    warnings.extend(instant.warnings);
                    infos.extend(instant.infos);
                    let Value::Vector(samples) = instant.value else { panic!("{query}: {:?}", instant.value) };
                    let at_t: Vec<(&Labels, u64)> = matrix
                        .iter()
                        .filter_map(|s| s.points.iter().find(|p| p.t == t).map(|p| (&s.labels, p.v.to_bits())))
                        .collect();
                    let mut want: Vec<(&Labels, u64)> = samples.iter().map(|s| (&s.labels, s.v.to_bits())).collect();
                    want.sort();
                    assert_eq!(at_t, want, "{query} at {t}");
                    points += want.len();
                }
                assert!(points > 0, "{query} gave no points");
                assert_eq!(range.warnings, warnings.into_iter().collect::<Vec<_>>(), "{query}");
                assert_eq!(range.infos, infos.into_iter().collect::<Vec<_>>(), "{query}");
            }
        }
    }

    /// A storage that reads selections in parts itself, and records what it was asked for: how
    /// many whole selections, and the size of every part read.
    #[derive(Default)]
    struct ReadsInParts {
        inner: MemoryStorage,
        wholes: std::sync::atomic::AtomicUsize,
        parts: std::sync::Mutex<Vec<usize>>,
    }

    impl ReadsInParts {
        /// Whole selections and the largest part since the last call.
        fn asked(&self) -> (usize, usize) {
            let wholes = self.wholes.swap(0, std::sync::atomic::Ordering::Relaxed);
            let parts = std::mem::take(&mut *self.parts.lock().unwrap());
            (wholes, parts.into_iter().max().unwrap_or(0))
        }
    }

    impl Queryable for ReadsInParts {
        fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, Error> {
            self.wholes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.inner.select(matchers, mint, maxt)
        }

        fn select_in_parts(
            &self,
            matchers: &[Matcher],
            mint: i64,
            maxt: i64,
        ) -> Result<Box<dyn SelectedSeries + '_>, Error> {
            Ok(Box::new(Found { found: self.inner.select(matchers, mint, maxt)?, parts: &self.parts }))
        }
    }

    struct Found<'a> {
        found: Vec<Series>,
        parts: &'a std::sync::Mutex<Vec<usize>>,
    }

    impl SelectedSeries for Found<'_> {
        fn len(&self) -> usize {
            self.found.len()
        }

        fn read_into(&self, part: std::ops::Range<usize>, out: &mut Vec<Series>) -> Result<(), Error> {
            self.parts.lock().unwrap().push(part.len());
            out.clear();
            out.extend_from_slice(&self.found[part]);
            Ok(())
        }
    }

    /// 200 counters in 4 groups, 20 classic histograms of 5 buckets, and 100 series of which one
    /// holds native histograms; 240 scrapes at 15 s.
    fn many_series() -> ReadsInParts {
        let mut storage = MemoryStorage::default();
        let points = |i: usize| -> Vec<Point> {
            (0..240i64).map(|k| Point { t: k * 15_000, v: (k * (i as i64 % 7 + 1)) as f64 }).collect()
        };
        for i in 0..200 {
            let group = (i % 4).to_string();
            let labels = Labels::from_pairs(&[("__name__", "c_total"), ("g", &group), ("i", &i.to_string())]);
            storage.add(labels, &points(i));
        }
        for i in 0..20 {
            for (j, le) in ["0.1", "0.5", "1", "5", "+Inf"].into_iter().enumerate() {
                let labels = Labels::from_pairs(&[("__name__", "b_bucket"), ("i", &i.to_string()), ("le", le)]);
                storage.add(labels, &points(i + j));
            }
        }
        for i in 0..100 {
            let labels = Labels::from_pairs(&[("__name__", "mixed_total"), ("i", &format!("{i:03}"))]);
            if i == 70 {
                let histogram = |k: i64| amber_histogram::Histogram {
                    count: 3.0 * k as f64,
                    sum: k as f64,
                    positive_spans: vec![amber_histogram::Span { offset: 0, length: 2 }],
                    positive_buckets: vec![k as f64, 2.0 * k as f64],
                    ..Default::default()
                };
                storage.add_histograms(labels, (0..240i64).map(|k| (k * 15_000, histogram(k))));
            } else {
                storage.add(labels, &points(i));
            }
        }
        ReadsInParts { inner: storage, ..ReadsInParts::default() }
    }

    /// A range query read in parts gives what loading its selector whole (as a query that asks
    /// for statistics does) gives, reads at most a part of series at a time, falls back to a
    /// whole load when a series holds histograms, and keeps the samples limit across its parts.
    #[test]
    fn range_queries_read_in_parts_equal_loading_whole() {
        let storage = many_series();
        let totals = QueryContext { stats: crate::StatsLevel::Totals, ..QueryContext::default() };
        let (start, end, step) = (600_000, 240 * 15_000, 60_000);
        for parallel_min_samples in [0, usize::MAX] {
            let engine = Engine::new(EngineOptions { parallel_min_samples, ..EngineOptions::default() });
            for (query, read_in_parts) in [
                ("rate(c_total[1m])", true),
                ("sum by (g) (rate(c_total[2m]))", true),
                ("avg(increase(c_total[5m]))", true),
                ("histogram_quantile(0.9, sum by (le) (rate(b_bucket[2m])))", true),
                ("histogram_quantile(0.5, rate(b_bucket[2m]))", true),
                // Read in parts until the series with histograms, then loaded whole.
                ("rate(mixed_total[1m])", false),
                ("max by (i) (rate(mixed_total[1m]))", false),
                // Not a shape that reads in parts.
                ("sum by (g) (rate(c_total[2m])) * 2", false),
            ] {
                let in_parts = engine.range_query(&storage, query, start, end, step, &QueryContext::default());
                let (wholes, largest_part) = storage.asked();
                let whole = engine.range_query(&storage, query, start, end, step, &totals).expect(query);
                assert_eq!(storage.asked(), (1, 0), "{query}: a query with statistics loads whole");
                let in_parts = in_parts.expect(query);
                assert_eq!(format!("{:?}", in_parts.value), format!("{:?}", whole.value), "{query}");
                assert!(matches!(&in_parts.value, Value::Matrix(m) if !m.is_empty()), "{query}");
                assert_eq!((in_parts.warnings, in_parts.infos), (whole.warnings, whole.infos), "{query}");
                if read_in_parts {
                    assert_eq!(wholes, 0, "{query}");
                    assert!((1..=crate::functions::rate::SERIES_PER_PART).contains(&largest_part), "{query}");
                } else {
                    assert_eq!(wholes, 1, "{query}");
                }
            }
        }
    }

    #[test]
    fn a_query_read_in_parts_stops_past_the_samples_limit() {
        let storage = many_series();
        let name = Matcher { name: "__name__".into(), op: crate::MatchOp::Equal, value: "c_total".into() };
        let c_total: usize =
            storage.inner.select(&[name], i64::MIN, i64::MAX).unwrap().iter().map(|s| s.points.len()).sum();
        let (start, end, step) = (0, 240 * 15_000, 60_000);
        for parallel_min_samples in [0, usize::MAX] {
            let engine = |max_samples| {
                let mut options = EngineOptions { parallel_min_samples, ..EngineOptions::default() };
                options.limits.max_samples = max_samples;
                Engine::new(options)
            };
            let query = "sum by (g) (rate(c_total[1m]))";
            let ctx = QueryContext::default();
            assert!(engine(c_total).range_query(&storage, query, start, end, step, &ctx).is_ok());
            let err = engine(c_total - 1).range_query(&storage, query, start, end, step, &ctx).unwrap_err();
            assert!(matches!(err, Error::TooManySamples("query execution")), "{err:?}");
            assert_eq!(storage.asked().0, 0);
        }
    }
}
