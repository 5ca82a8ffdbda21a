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
    use crate::{Engine, EngineOptions, Labels, MemoryStorage, Point, QueryContext, STALE_NAN_BITS, Value};

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
}
