//! `<aggregation>_over_time`, `changes` and `resets`: one value per series from the samples of
//! a range.

use amber_histogram::{Combined, CounterResetHint, IncompatibleSchemas, Running};
use promql_parser::parser::Expr;

use super::rate::{is_start_reset, mixed_floats_and_histograms};
use super::{Out, metric_name, per_series, per_series_mixed, per_series_with_starts};
use crate::error::Result;
use crate::eval::Evaluator;
use crate::numeric::{RunningMean, kahan_sum_inc, quantile};
use crate::value::{Histogram, HistogramPoint, Point, Starts, Value, format_float};

pub(crate) fn eval(ev: &mut Evaluator<'_>, name: &str, args: &[&Expr], t: i64) -> Result<Value> {
    match name {
        "quantile_over_time" => {
            let q = ev.eval_scalar(args[0], t)?;
            if q.is_nan() || !(0.0..=1.0).contains(&q) {
                ev.note(
                    args[0].position_range(),
                    format!("PromQL warning: quantile value should be between 0 and 1, got {}", format_float(q)),
                );
            }
            per_series(ev, args[1], t, false, |p| Some(quantile(q, &mut values(p))))
        }
        "last_over_time" => per_series_mixed(ev, args[0], t, true, |_, p, h, _| match (p.last(), h.last()) {
            (Some(p), Some(h)) if h.t > p.t => Some(Out::Histogram(Histogram::clone(&h.h))),
            (Some(p), _) => Some(Out::Float(p.v)),
            (None, h) => h.map(|h| Out::Histogram(Histogram::clone(&h.h))),
        }),
        "first_over_time" => per_series_mixed(ev, args[0], t, true, |_, p, h, _| match (p.first(), h.first()) {
            (Some(p), Some(h)) if h.t < p.t => Some(Out::Histogram(Histogram::clone(&h.h))),
            (Some(p), _) => Some(Out::Float(p.v)),
            (None, h) => h.map(|h| Out::Histogram(Histogram::clone(&h.h))),
        }),
        "count_over_time" | "present_over_time" => per_series_mixed(ev, args[0], t, false, |_, p, h, _| {
            let n = p.len() + h.len();
            (n > 0).then(|| Out::Float(if name == "count_over_time" { n as f64 } else { 1.0 }))
        }),
        "sum_over_time" | "avg_over_time" => per_series_mixed(ev, args[0], t, false, |labels, p, h, notes| {
            if h.is_empty() {
                return if p.is_empty() { None } else { over(name, p).map(Out::Float) };
            }
            let metric = metric_name(labels);
            if !p.is_empty() {
                notes.push(mixed_floats_and_histograms(metric));
                return None;
            }
            sum_histograms(h, name == "avg_over_time", metric, notes).map(Out::Histogram)
        }),
        // `resets` also counts a start timestamp after the previous sample as a reset.
        "changes" | "resets" => per_series_with_starts(ev, args[0], t, false, |_, p, h, starts, _| {
            changes_or_resets(name, p, h, starts).map(Out::Float)
        }),
        // The first or last sample of either kind.
        "ts_of_first_over_time" => per_series_mixed(ev, args[0], t, false, |_, p, h, _| {
            let first = p.first().map(|p| p.t).into_iter().chain(h.first().map(|h| h.t)).min()?;
            Some(Out::Float(first as f64 / 1000.0))
        }),
        "ts_of_last_over_time" => per_series_mixed(ev, args[0], t, false, |_, p, h, _| {
            let last = p.last().map(|p| p.t).into_iter().chain(h.last().map(|h| h.t)).max()?;
            Some(Out::Float(last as f64 / 1000.0))
        }),
        _ => per_series(ev, args[0], t, false, |p| over(name, p)),
    }
}

/// `sum_over_time` (or with `mean`, `avg_over_time`) of histograms, Kahan-compensated as in
/// Prometheus, the mean switching to an incremental one where the sum would overflow.
fn sum_histograms(points: &[HistogramPoint], mean: bool, metric: &str, notes: &mut Vec<String>) -> Option<Histogram> {
    let (mut reset_seen, mut not_reset_seen, mut reconciled) = (false, false, false);
    let mut take = |h: &Histogram, added: Result<Combined, IncompatibleSchemas>| {
        match h.counter_reset_hint {
            CounterResetHint::Reset => reset_seen = true,
            CounterResetHint::NotReset => not_reset_seen = true,
            _ => {}
        }
        added.map(|c| reconciled |= c.custom_bounds_reconciled).is_ok()
    };
    let first = Histogram::clone(&points[0].h);
    take(&first, Ok(Combined::default()));
    let mut running = if mean { Running::mean(first) } else { Running::sum(first) };
    let all_added = points[1..].iter().all(|p| take(&p.h, running.add(&p.h)));
    if !all_added {
        notes.push(format!(
            "PromQL warning: vector contains a mix of histograms with exponential and custom buckets schemas for metric name {metric:?}"
        ));
        return None;
    }
    if reset_seen && not_reset_seen {
        notes.push("PromQL warning: conflicting counter resets during histogram aggregation".into());
    }
    if reconciled {
        notes.push("PromQL info: mismatched custom buckets were reconciled during aggregation".into());
    }
    Some(running.value())
}

/// A sample of a window of floats and histograms: its float value or its histogram.
type MixedValue<'a> = (Option<f64>, Option<&'a Histogram>);

/// `changes` or `resets` over a window of samples (`resets` also counts a start timestamp after
/// the previous sample as a reset); `None` for an empty window.
pub(crate) fn changes_or_resets(name: &str, p: &[Point], h: &[HistogramPoint], starts: Starts<'_>) -> Option<f64> {
    let starts = if name == "resets" { starts } else { Starts::default() };
    if h.is_empty() && starts.floats.is_empty() {
        return if p.is_empty() { None } else { over(name, p) };
    }
    Some(transitions(name == "resets", p, h, starts))
}

/// `changes` or `resets` over a range holding histograms or start timestamps (and maybe floats),
/// in time order: a change of sample type counts as both, and for `resets` so does a start
/// timestamp after the previous sample (`starts`: each list empty or one per sample).
fn transitions(resets: bool, floats: &[Point], histograms: &[HistogramPoint], starts: Starts<'_>) -> f64 {
    let (mut i, mut j) = (0, 0);
    // The previous sample: float value or histogram, time and start timestamp.
    let mut previous: Option<(MixedValue<'_>, i64, i64)> = None;
    let mut n = 0.0;
    while i < floats.len() || j < histograms.len() {
        let (current, t, start) = if j >= histograms.len() || (i < floats.len() && floats[i].t < histograms[j].t) {
            i += 1;
            ((Some(floats[i - 1].v), None), floats[i - 1].t, starts.floats.get(i - 1).copied().unwrap_or(0))
        } else {
            j += 1;
            let h = &histograms[j - 1];
            ((None, Some(h.h.as_ref())), h.t, starts.histograms.get(j - 1).copied().unwrap_or(0))
        };
        if let Some((prev, prev_t, prev_start)) = previous {
            let start_reset = || is_start_reset(prev_start, prev_t, start, t);
            let counted = match (prev, current) {
                ((Some(a), _), (Some(b), _)) if resets => b < a || start_reset(),
                ((Some(a), _), (Some(b), _)) => b != a && !(a.is_nan() && b.is_nan()),
                ((_, Some(a)), (_, Some(b))) if resets => start_reset() || b.detect_reset(a),
                ((_, Some(a)), (_, Some(b))) => !b.equals(a),
                _ => true,
            };
            if counted {
                n += 1.0;
            }
        }
        previous = Some((current, t, start));
    }
    n
}

fn values(points: &[Point]) -> Vec<f64> {
    points.iter().map(|p| p.v).collect()
}

/// The aggregate `name` of a non-empty run of points.
fn over(name: &str, points: &[Point]) -> Option<f64> {
    let first = points.first()?;
    Some(match name {
        "avg_over_time" => {
            let mut mean = RunningMean::default();
            points.iter().for_each(|p| mean.add(p.v));
            mean.value()
        }
        "sum_over_time" => {
            let (sum, c) = points.iter().fold((0.0, 0.0), |(s, c), p| kahan_sum_inc(p.v, s, c));
            sum + c
        }
        "count_over_time" => points.len() as f64,
        "present_over_time" => 1.0,
        "max_over_time" => points[1..].iter().fold(first.v, |m, p| if p.v > m || m.is_nan() { p.v } else { m }),
        "min_over_time" => points[1..].iter().fold(first.v, |m, p| if p.v < m || m.is_nan() { p.v } else { m }),
        "stdvar_over_time" => variance(points),
        "stddev_over_time" => variance(points).sqrt(),
        // A NaN sample makes the deviation NaN, as in Prometheus, rather than sorting first.
        "mad_over_time" if points.iter().any(|p| p.v.is_nan()) => f64::NAN,
        "mad_over_time" => {
            let mut v = values(points);
            let median = quantile(0.5, &mut v);
            let mut deviations: Vec<f64> = points.iter().map(|p| (p.v - median).abs()).collect();
            quantile(0.5, &mut deviations)
        }
        "changes" => {
            let mut changes = 0.0;
            for w in points.windows(2) {
                if w[1].v != w[0].v && !(w[1].v.is_nan() && w[0].v.is_nan()) {
                    changes += 1.0;
                }
            }
            changes
        }
        "resets" => points.windows(2).filter(|w| w[1].v < w[0].v).count() as f64,
        // The last occurrence of the extreme value, as Prometheus reports it.
        "ts_of_max_over_time" => {
            let best = points[1..].iter().fold(*first, |m, p| if p.v >= m.v || m.v.is_nan() { *p } else { m });
            best.t as f64 / 1000.0
        }
        "ts_of_min_over_time" => {
            let best = points[1..].iter().fold(*first, |m, p| if p.v <= m.v || m.v.is_nan() { *p } else { m });
            best.t as f64 / 1000.0
        }
        _ => unreachable!("dispatched by name"),
    })
}

/// Population variance with compensated running sums, as Prometheus's `stdvar_over_time`.
fn variance(points: &[Point]) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for p in points {
        count += 1.0;
        let delta = p.v - (mean + c_mean);
        (mean, c_mean) = kahan_sum_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_sum_inc(delta * (p.v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}
