//! `rate`, `increase`, `delta` (extrapolated over the range) and `irate`, `idelta` (last two
//! samples).

use promql_parser::parser::Expr;

use super::{Out, metric_name, per_series_mixed, without_parens};
use crate::error::Result;
use crate::eval::{Evaluator, duration_ms};
use crate::labels::LabelsMap;
use crate::value::{Histogram, HistogramPoint};
use crate::value::{Point, Value};
use amber_histogram::CounterResetHint;

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
    per_series_mixed(ev, arg, t, false, |labels, points, histograms, notes| {
        if histograms.is_empty() {
            return compute(name, points, end - range, end).map(Out::Float);
        }
        let metric = metric_name(labels);
        if !points.is_empty() {
            notes
                .push(format!("PromQL warning: encountered a mix of histograms and floats for metric name {metric:?}"));
            return None;
        }
        let h = match name {
            "rate" => histogram_extrapolated_rate(histograms, end - range, end, true, true, metric, notes),
            "increase" => histogram_extrapolated_rate(histograms, end - range, end, true, false, metric, notes),
            "delta" => histogram_extrapolated_rate(histograms, end - range, end, false, false, metric, notes),
            "irate" => histogram_instant_value(histograms, true, metric, notes),
            _ => histogram_instant_value(histograms, false, metric, notes),
        };
        h.map(Out::Histogram)
    })
}

fn not_counter(metric: &str) -> String {
    format!("PromQL warning: this native histogram metric is not a counter: {metric:?}")
}

fn not_gauge(metric: &str) -> String {
    format!("PromQL warning: this native histogram metric is not a gauge: {metric:?}")
}

fn mixed_schemas(metric: &str) -> String {
    format!(
        "PromQL warning: vector contains a mix of histograms with exponential and custom buckets schemas for metric name {metric:?}"
    )
}

/// Prometheus's `histogramRate`: the last histogram less the first, counter resets added back.
fn histogram_rate(
    points: &[HistogramPoint],
    is_counter: bool,
    metric: &str,
    notes: &mut Vec<String>,
) -> Option<Histogram> {
    let mut prev: Histogram = Histogram::clone(&points[0].h);
    let last = &points[points.len() - 1].h;
    let mut custom = prev.uses_custom_buckets();
    if is_counter && (prev.is_gauge() || last.is_gauge()) {
        notes.push(not_counter(metric));
    }
    if is_counter {
        let second = &points[1].h;
        if second.detect_reset(&prev) {
            prev =
                Histogram { schema: second.schema, custom_values: second.custom_values.clone(), ..Default::default() };
            custom = second.uses_custom_buckets();
        }
    }
    if last.uses_custom_buckets() != custom {
        notes.push(mixed_schemas(metric));
        return None;
    }
    let mut min_schema = last.schema.min(prev.schema);
    for p in &points[1..points.len() - 1] {
        if !is_counter {
            continue;
        }
        if p.h.is_gauge() {
            notes.push(not_counter(metric));
        }
        min_schema = min_schema.min(p.h.schema);
        if p.h.uses_custom_buckets() != custom {
            notes.push(mixed_schemas(metric));
            return None;
        }
    }
    let mut h = Histogram::clone(last);
    h.reduce_resolution(min_schema);
    match h.sub(&prev) {
        Err(_) => {
            notes.push(mixed_schemas(metric));
            return None;
        }
        Ok(c) if c.custom_bounds_reconciled => {
            notes.push("PromQL info: mismatched custom buckets were reconciled during subtraction".into())
        }
        Ok(_) => {}
    }
    if is_counter {
        for p in &points[1..] {
            if p.h.detect_reset(&prev) {
                match h.add(&prev) {
                    Err(_) => {
                        notes.push(mixed_schemas(metric));
                        return None;
                    }
                    Ok(c) if c.custom_bounds_reconciled => {
                        notes.push("PromQL info: mismatched custom buckets were reconciled during addition".into())
                    }
                    Ok(_) => {}
                }
            }
            prev = Histogram::clone(&p.h);
        }
    } else if !points[0].h.is_gauge() || !last.is_gauge() {
        notes.push(not_gauge(metric));
    }
    h.counter_reset_hint = CounterResetHint::Gauge;
    h.compact();
    Some(h)
}

/// Prometheus's `extrapolatedRate` over histograms.
fn histogram_extrapolated_rate(
    points: &[HistogramPoint],
    range_start: i64,
    range_end: i64,
    is_counter: bool,
    is_rate: bool,
    metric: &str,
    notes: &mut Vec<String>,
) -> Option<Histogram> {
    if points.len() < 2 {
        return None;
    }
    let mut result = histogram_rate(points, is_counter, metric, notes)?;
    let (first, last) = (&points[0], &points[points.len() - 1]);
    let mut to_start = (first.t - range_start) as f64 / 1000.0;
    let mut to_end = (range_end - last.t) as f64 / 1000.0;
    let sampled = (last.t - first.t) as f64 / 1000.0;
    let average_gap = sampled / (points.len() - 1) as f64;
    let threshold = average_gap * 1.1;
    if to_start >= threshold {
        to_start = average_gap / 2.0;
    }
    if is_counter {
        let mut to_zero = to_start;
        if result.count > 0.0 && first.h.count >= 0.0 {
            to_zero = sampled * (first.h.count / result.count);
        }
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = average_gap / 2.0;
    }
    let mut factor = if sampled != 0.0 { (sampled + to_start + to_end) / sampled } else { 1.0 };
    if is_rate {
        factor /= (range_end - range_start) as f64 / 1000.0;
    }
    result.mul(factor);
    Some(result)
}

/// Prometheus's `instantValue` over the last two histograms.
fn histogram_instant_value(
    points: &[HistogramPoint],
    is_rate: bool,
    metric: &str,
    notes: &mut Vec<String>,
) -> Option<Histogram> {
    if points.len() < 2 {
        return None;
    }
    let (prev, last) = (&points[points.len() - 2], &points[points.len() - 1]);
    let interval = last.t - prev.t;
    if interval == 0 {
        return None;
    }
    let mut h = Histogram::clone(&last.h);
    if is_rate && (last.h.is_gauge() || prev.h.is_gauge()) {
        notes.push(not_counter(metric));
    }
    if !is_rate && (!last.h.is_gauge() || !prev.h.is_gauge()) {
        notes.push(not_gauge(metric));
    }
    if !is_rate || !last.h.detect_reset(&prev.h) {
        match h.sub(&prev.h) {
            Err(_) => {
                notes.push(mixed_schemas(metric));
                return None;
            }
            Ok(c) if c.custom_bounds_reconciled => {
                notes.push("PromQL info: mismatched custom buckets were reconciled during subtraction".into())
            }
            Ok(_) => {}
        }
    }
    h.counter_reset_hint = CounterResetHint::Gauge;
    h.compact();
    if is_rate {
        h.div(interval as f64 / 1000.0);
    }
    Some(h)
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
    // Histograms go step by step.
    if ms.vs.at.is_some() || ev.series_of(&ms.vs).iter().any(|s| !s.histograms.is_empty()) {
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
                ev.note(
                    arg.position_range(),
                    format!(
                        "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {metric:?}"
                    ),
                );
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
