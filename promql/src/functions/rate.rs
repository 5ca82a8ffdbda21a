//! `rate`, `increase`, `delta` (extrapolated over the range) and `irate`, `idelta` (last two
//! samples).

use promql_parser::parser::Expr;

use super::{per_series, without_parens};
use crate::error::Result;
use crate::eval::{Evaluator, duration_ms};
use crate::labels::LabelsMap;
use crate::value::{Point, Value};

/// The range of a range-vector argument in milliseconds (a selector's or a subquery's).
pub(crate) fn range_ms(arg: &Expr) -> i64 {
    match arg {
        Expr::MatrixSelector(ms) => duration_ms(&ms.range),
        Expr::Subquery(sq) => duration_ms(&sq.range),
        Expr::Paren(p) => range_ms(&p.expr),
        _ => 0,
    }
}

/// Where the range of a range-vector argument ends, evaluated at `t` (`offset` and `@` applied).
pub(crate) fn range_end(ev: &Evaluator<'_>, arg: &Expr, t: i64) -> i64 {
    let (at, offset) = match arg {
        Expr::MatrixSelector(ms) => (ms.vs.at.as_ref(), ms.vs.offset.as_ref()),
        Expr::Subquery(sq) => (sq.at.as_ref(), sq.offset.as_ref()),
        Expr::Paren(p) => return range_end(ev, &p.expr, t),
        _ => (None, None),
    };
    let off = match offset {
        Some(promql_parser::parser::Offset::Pos(d)) => duration_ms(d),
        Some(promql_parser::parser::Offset::Neg(d)) => -duration_ms(d),
        None => 0,
    };
    ev.at_ms(at).unwrap_or(t) - off
}

pub(crate) fn eval(ev: &mut Evaluator<'_>, name: &str, args: &[&Expr], t: i64) -> Result<Value> {
    let arg = args[0];
    let range = range_ms(arg);
    let end = range_end(ev, arg, t);
    if matches!(name, "rate" | "increase") {
        warn_if_not_counter(ev, arg, t, name)?;
    }
    per_series(ev, arg, t, false, |p| compute(name, p, end - range, end))
}

/// The function `name` of this family over one window that lies in `(range_start, range_end]`.
fn compute(name: &str, points: &[Point], range_start: i64, range_end: i64) -> Option<f64> {
    match name {
        "rate" => extrapolated_rate(points, range_start, range_end, true, true),
        "increase" => extrapolated_rate(points, range_start, range_end, true, false),
        "delta" => extrapolated_rate(points, range_start, range_end, false, false),
        "irate" => instant_value(points, true),
        _ => instant_value(points, false),
    }
}

/// A whole range query of one of these functions over a plain matrix selector, series by series
/// across all steps (see [`Evaluator::for_each_series_range`]), the series shared out between
/// `threads`: the result series by labels. `None` when the query has another shape, or when two
/// input series would have the same labels once the metric name is dropped (the step-by-step path
/// then reports the collision).
pub(crate) fn range_by_series(
    ev: &mut Evaluator<'_>,
    name: &str,
    arg: &Expr,
    steps: &[i64],
    threads: usize,
) -> Option<Result<LabelsMap<Vec<Point>>>> {
    let Expr::MatrixSelector(ms) = without_parens(arg) else { return None };
    if ms.vs.at.is_some() {
        return None;
    }
    if matches!(name, "rate" | "increase") {
        if let Err(e) = warn_if_not_counter(ev, arg, steps.first().copied().unwrap_or_default(), name) {
            return Some(Err(e));
        }
    }
    let mut out: LabelsMap<Vec<Point>> = LabelsMap::default();
    let series = ev.series_of(&ms.vs);
    let output: Vec<usize> =
        series.iter().map(|s| out.index_or_insert_with(&s.labels.without_metric_name(), Vec::new)).collect();
    if out.len() != series.len() {
        return None;
    }
    let range = duration_ms(&ms.range);
    let ev: &Evaluator<'_> = ev;
    // The points of the series at positions `which`, in that order.
    let points_of = |which: std::ops::Range<usize>| -> Result<Vec<Vec<Point>>> {
        let first = which.start;
        let mut points = vec![Vec::new(); which.len()];
        ev.for_each_series_range(ms, steps, which, |i, t, window| {
            let end = range_end(ev, arg, t);
            if let Some(v) = compute(name, window, end - range, end) {
                points[i - first].push(Point { t, v });
            }
        })?;
        Ok(points)
    };
    let n = output.len();
    let parts: Vec<Result<Vec<Vec<Point>>>> = if threads < 2 || n < 2 {
        vec![points_of(0..n)]
    } else {
        let per_thread = n.div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..n)
                .step_by(per_thread)
                .map(|lo| {
                    let points_of = &points_of;
                    scope.spawn(move || points_of(lo..(lo + per_thread).min(n)))
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("evaluation does not panic")).collect()
        })
    };
    let mut position = 0;
    for part in parts {
        match part {
            Ok(points) => {
                for p in points {
                    *out.value_at_mut(output[position]) = p;
                    position += 1;
                }
            }
            Err(e) => return Some(Err(e)),
        }
    }
    Some(Ok(out))
}

/// The info Prometheus gives when `rate`/`increase` is applied to a metric whose name does not
/// look like a counter's.
fn warn_if_not_counter(ev: &mut Evaluator<'_>, arg: &Expr, _t: i64, _name: &str) -> Result<()> {
    if let Expr::MatrixSelector(ms) = arg {
        if let Some(metric) = &ms.vs.name {
            let counter_like = ["_total", "_sum", "_count", "_bucket"].iter().any(|s| metric.ends_with(s));
            if !counter_like {
                ev.infos.insert(format!(
                    "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {metric:?}"
                ));
            }
        }
    }
    Ok(())
}

/// Prometheus's `extrapolatedRate`: the increase between the first and last sample in
/// `(range_start, range_end]` (counter resets added back for counters), extrapolated towards
/// the range's edges when the samples come close enough to them.
fn extrapolated_rate(
    points: &[Point],
    range_start: i64,
    range_end: i64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let first = points[0];
    let last = points[points.len() - 1];
    let mut result = last.v - first.v;
    if is_counter {
        let mut prev = first.v;
        for p in &points[1..] {
            if p.v < prev {
                result += prev;
            }
            prev = p.v;
        }
    }
    let mut to_start = (first.t - range_start) as f64 / 1000.0;
    let mut to_end = (range_end - last.t) as f64 / 1000.0;
    let sampled = (last.t - first.t) as f64 / 1000.0;
    let average_gap = sampled / (points.len() - 1) as f64;
    let threshold = average_gap * 1.1;
    if to_start >= threshold {
        to_start = average_gap / 2.0;
    }
    if is_counter {
        // A counter is never negative: do not extrapolate to before its zero point.
        let mut to_zero = to_start;
        if result > 0.0 && first.v >= 0.0 {
            to_zero = sampled * (first.v / result);
        }
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = average_gap / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if is_rate {
        factor /= (range_end - range_start) as f64 / 1000.0;
    }
    Some(result * factor)
}

/// Prometheus's `instantValue`: from the last two samples.
fn instant_value(points: &[Point], is_rate: bool) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let last = points[points.len() - 1];
    let prev = points[points.len() - 2];
    let mut v = if is_rate && last.v < prev.v { last.v } else { last.v - prev.v };
    let interval = last.t - prev.t;
    if interval == 0 {
        return None;
    }
    if is_rate {
        v /= interval as f64 / 1000.0;
    }
    Some(v)
}
