//! Prometheus 3's experimental `anchored` and `smoothed` selectors
//! (`--enable-feature=promql-extended-range-selectors`), as its `engine.go` and `functions.go`
//! define them.
//!
//! - `x[5m] anchored` also reads, looking back as far as the lookback delta, the last sample at or
//!   before the range's start, and uses it as the range's start value: `increase` is then the
//!   plain difference between that sample and the last one (counter resets added back), with no
//!   extrapolation, and `changes`/`resets` count the step from it into the range.
//! - `x[5m] smoothed` reads as far as the lookback delta past both ends of the range and
//!   interpolates the values at the two ends between the samples either side of them.
//! - `x smoothed` is an instant selector whose value is interpolated the same way between the
//!   samples either side of the evaluation time (or the last one, carried forward).
//!
//! Only a few functions may take them; the others are refused at evaluation, as in Prometheus.

use std::sync::Arc;

use promql_parser::parser::{Call, Expr, MatrixSelector, VectorSelector};

use crate::error::{Error, Result};
use crate::eval::{Evaluator, WindowScratch, duration_ms, histogram_window, live_window, starts_in};
use crate::functions::over_time::changes_or_resets;
use crate::functions::rate::{combined, mixed_floats_and_histograms, mixed_schemas, not_counter, not_gauge};
use crate::functions::{Out, metric_name};
use crate::value::{Histogram, HistogramPoint, Point, Sample, Series, StartTimestamps, Starts, Value};
use amber_histogram::CounterResetHint;

/// The functions a range selector with `anchored` may be passed to, sorted as Prometheus lists
/// them in its error.
const ANCHORED_FUNCTIONS: &[&str] = &["changes", "delta", "increase", "rate", "resets"];
/// The same for `smoothed`.
const SMOOTHED_FUNCTIONS: &[&str] = &["delta", "increase", "rate"];

/// How much further than usual a selector's data reaches: before its range (or lookback window)
/// and after its evaluation time, in milliseconds.
pub(crate) fn widening(vs: &VectorSelector, is_range: bool, lookback_ms: i64) -> (i64, i64) {
    match (vs.anchored, vs.smoothed) {
        (true, _) if is_range => (lookback_ms, 0),
        (_, true) => (if is_range { lookback_ms } else { 0 }, lookback_ms),
        _ => (0, 0),
    }
}

/// The matrix-selector argument of a call when it is `anchored` or `smoothed`; an error when the
/// function may not take it.
pub(crate) fn extended_argument(c: &Call) -> Result<Option<&MatrixSelector>> {
    let Some(ms) = c.args.args.iter().find_map(|a| match a.as_ref() {
        Expr::MatrixSelector(ms) if ms.vs.anchored || ms.vs.smoothed => Some(ms),
        _ => None,
    }) else {
        return Ok(None);
    };
    let (modifier, allowed) =
        if ms.vs.anchored { ("anchored", ANCHORED_FUNCTIONS) } else { ("smoothed", SMOOTHED_FUNCTIONS) };
    let name = c.func.name;
    if !allowed.contains(&name) {
        return Err(Error::Execution(format!(
            "{modifier} modifier can only be used with: {} - not with {name}",
            allowed.join(", ")
        )));
    }
    Ok(Some(ms))
}

/// Where a matrix selector's range starts and ends at evaluation time `t` (`@` and `offset`
/// applied), and the window of samples it reads: `(from, to]`.
struct Bounds {
    range_start: i64,
    range_end: i64,
    from: i64,
    to: i64,
}

fn bounds(ev: &Evaluator<'_>, ms: &MatrixSelector, t: i64) -> Bounds {
    let (range_end, _) = ev.shifted(ms.vs.at.as_ref(), ms.vs.offset.as_ref(), t, t);
    let range_start = range_end - duration_ms(&ms.range);
    let (before, after) = widening(&ms.vs, true, ev.lookback_ms);
    Bounds { range_start, range_end, from: range_start - before, to: range_end + after }
}

/// A series' samples in `(from, to]`, stale markers left out, with their start timestamps
/// (borrowed from the loaded series, or copied into the scratch buffers when some are stale).
struct Window<'w> {
    floats: &'w [Point],
    float_starts: &'w [i64],
    histograms: &'w [HistogramPoint],
    histogram_starts: &'w [i64],
}

fn window<'w>(s: &'w Series, from: i64, to: i64, scratch: &'w mut WindowScratch) -> Window<'w> {
    let WindowScratch { points, point_starts, histograms, histogram_starts } = scratch;
    let range = s.points.partition_point(|p| p.t <= from)..s.points.partition_point(|p| p.t <= to);
    let starts = starts_in(&s.start_timestamps.floats, range.clone());
    let (floats, float_starts) = live_window(&s.points[range], starts, true, points, point_starts).unwrap_or_default();
    let (histograms, histogram_starts) =
        histogram_window(&s.histograms, &s.start_timestamps.histograms, from, to, histograms, histogram_starts);
    Window { floats, float_starts, histograms, histogram_starts }
}

/// `rate`, `increase`, `delta`, `changes` or `resets` over an `anchored` or `smoothed` selector.
pub(crate) fn call(ev: &mut Evaluator<'_>, name: &str, arg: &Expr, ms: &MatrixSelector, t: i64) -> Result<Value> {
    let b = bounds(ev, ms, t);
    let range_seconds = duration_ms(&ms.range) as f64 / 1000.0;
    let smoothed = ms.vs.smoothed;
    let mut notes = Vec::new();
    let mut out = Vec::new();
    let mut scratch = WindowScratch::default();
    // Prometheus counts the whole widened window a function reads.
    let counting = ev.counting();
    let mut read = 0;
    for s in ev.series_of(&ms.vs) {
        let w = window(s, b.from, b.to, &mut scratch);
        if counting {
            read += w.floats.len() as u64 + crate::stats::histograms_samples(w.histograms);
        }
        let metric = metric_name(&s.labels);
        let value = match name {
            "changes" | "resets" => anchored_transitions(name, &w, b.range_start).map(Out::Float),
            _ => {
                let (is_counter, is_rate) = (name != "delta", name == "rate");
                let divisor = if is_rate { range_seconds } else { 1.0 };
                match (w.floats.is_empty(), w.histograms.is_empty()) {
                    (false, false) => {
                        notes.push(mixed_floats_and_histograms(metric));
                        None
                    }
                    (false, true) => extended_rate(w.floats, &b, smoothed, is_counter).map(|v| Out::Float(v / divisor)),
                    (true, false) => {
                        extended_histogram_rate(w.histograms, &b, smoothed, is_counter, metric, &mut notes).map(
                            |mut h| {
                                h.div(divisor);
                                Out::Histogram(h)
                            },
                        )
                    }
                    (true, true) => None,
                }
            }
        };
        if let Some(v) = value {
            out.push(v.sample(s.labels.clone(), t, true));
        }
    }
    ev.count_read(read);
    ev.annotate(arg.position_range(), notes);
    Ok(Value::Vector(out))
}

/// `changes` or `resets` from the anchor on: the last sample, float or histogram, at or before
/// the range's start (Prometheus's `pickFirstSampleIndices`). `None` without a sample in the range.
fn anchored_transitions(name: &str, w: &Window<'_>, range_start: i64) -> Option<f64> {
    let last_float_before = w.floats.partition_point(|p| p.t <= range_start);
    let last_histogram_before = w.histograms.partition_point(|p| p.t <= range_start);
    if last_float_before == w.floats.len() && last_histogram_before == w.histograms.len() {
        return None;
    }
    // The anchor is the later of the two candidates; the other kind's samples before the range
    // come before it and are skipped.
    let (first_float, first_histogram) = match (last_float_before.checked_sub(1), last_histogram_before.checked_sub(1))
    {
        (None, None) => (0, 0),
        (Some(f), None) => (f, last_histogram_before),
        (Some(f), Some(h)) if w.floats[f].t >= w.histograms[h].t => (f, last_histogram_before),
        (_, Some(h)) => (last_float_before, h),
    };
    let starts = Starts {
        floats: w.float_starts.get(first_float..).unwrap_or(&[]),
        histograms: w.histogram_starts.get(first_histogram..).unwrap_or(&[]),
    };
    changes_or_resets(name, &w.floats[first_float..], &w.histograms[first_histogram..], starts)
}

/// The indices of the samples that stand for a range's start and end (Prometheus's
/// `firstSampleIndex`/`lastSampleIndex`): the last sample at or before the start (else the
/// first), and the last sample, or when smoothed the first at or after the end. `None` when no
/// sample lies in the range.
fn boundary_samples<T>(s: &[T], time: impl Fn(&T) -> i64, b: &Bounds, smoothed: bool) -> Option<(usize, usize)> {
    let mut last = s.len() - 1;
    let first = s[..last].partition_point(|x| time(x) <= b.range_start).saturating_sub(1);
    if smoothed {
        last = s[..last].partition_point(|x| time(x) < b.range_end);
    }
    if time(&s[last]) <= b.range_start || (smoothed && time(&s[first]) > b.range_end) {
        return None;
    }
    Some((first, last))
}

/// Linear interpolation between two samples at `t`; a counter that dropped is taken to have
/// restarted from zero.
fn interpolate(p1: Point, p2: Point, t: i64, is_counter: bool) -> f64 {
    let y1 = if is_counter && p2.v < p1.v { 0.0 } else { p1.v };
    y1 + (p2.v - y1) * (t - p1.t) as f64 / (p2.t - p1.t) as f64
}

/// The values at a range's two ends (Prometheus's `pickOrInterpolateLeft`/`Right`): the boundary
/// samples', or when smoothed interpolated at the ends between the samples either side.
fn end_values(f: &[Point], (first, last): (usize, usize), b: &Bounds, smoothed: bool, is_counter: bool) -> (f64, f64) {
    let left = if smoothed && f[first].t < b.range_start {
        interpolate(f[first], f[first + 1], b.range_start, is_counter)
    } else {
        f[first].v
    };
    let right = if smoothed && last > 0 && f[last].t > b.range_end {
        interpolate(f[last - 1], f[last], b.range_end, is_counter)
    } else {
        f[last].v
    };
    (left, right)
}

/// The samples strictly inside a range, between its boundary samples.
fn inside<'f>(f: &'f [Point], (first, last): (usize, usize), b: &Bounds) -> &'f [Point] {
    let from = if f[first].t <= b.range_start { first + 1 } else { first };
    let to = if f[last].t >= b.range_end { last } else { last + 1 };
    f.get(from..to).unwrap_or(&[])
}

/// Prometheus's `extendedRate` before the division by the range: the difference between the
/// values at the range's ends (interpolated when smoothed), counter resets in between added back.
fn extended_rate(f: &[Point], b: &Bounds, smoothed: bool, is_counter: bool) -> Option<f64> {
    let bounds = boundary_samples(f, |p| p.t, b, smoothed)?;
    let (left, right) = end_values(f, bounds, b, smoothed, is_counter);
    let mut result = right - left;
    if is_counter {
        // Resets at the boundaries are in the interpolation already: look only inside.
        let mut prev = left;
        for p in inside(f, bounds, b) {
            if p.v < prev {
                result += prev;
            }
            prev = p.v;
        }
        if right < prev {
            result += prev;
        }
    }
    Some(result)
}

/// Interpolation between two histograms at `t` (Prometheus's `interpolateHistograms`); `None`
/// (and the warning) when their schemas cannot be combined.
fn interpolate_histograms(
    (t1, h1): (i64, &Histogram),
    (t2, h2): (i64, &Histogram),
    t: i64,
    is_counter: bool,
    metric: &str,
    notes: &mut Vec<String>,
) -> Option<Histogram> {
    if t == t1 {
        return Some(h1.clone());
    }
    if t == t2 {
        return Some(h2.clone());
    }
    let fraction = (t - t1) as f64 / (t2 - t1) as f64;
    let mut result = h2.clone();
    if is_counter && h2.detect_reset(h1) {
        // The counter restarted from zero.
        result.mul(fraction);
        return Some(result);
    }
    combined(result.sub(h1), "subtraction", metric, notes)?;
    result.mul(fraction);
    combined(result.add(h1), "addition", metric, notes)?;
    Some(result)
}

/// Prometheus's `extendedHistogramRate` before the division by the range.
fn extended_histogram_rate(
    h: &[HistogramPoint],
    b: &Bounds,
    smoothed: bool,
    is_counter: bool,
    metric: &str,
    notes: &mut Vec<String>,
) -> Option<Histogram> {
    let (first, last) = boundary_samples(h, |p| p.t, b, smoothed)?;
    let custom = h[first].h.uses_custom_buckets();
    for p in &h[first..=last] {
        if p.h.uses_custom_buckets() != custom {
            notes.push(mixed_schemas(metric));
            return None;
        }
        if is_counter && p.h.is_gauge() {
            notes.push(not_counter(metric));
        }
    }
    let point = |i: usize| (h[i].t, &*h[i].h);
    let left = if smoothed && h[first].t < b.range_start {
        interpolate_histograms(point(first), point(first + 1), b.range_start, is_counter, metric, notes)?
    } else {
        Histogram::clone(&h[first].h)
    };
    let right = if smoothed && last > 0 && h[last].t > b.range_end {
        interpolate_histograms(point(last - 1), point(last), b.range_end, is_counter, metric, notes)?
    } else {
        Histogram::clone(&h[last].h)
    };
    if !is_counter && (!left.is_gauge() || !right.is_gauge()) {
        notes.push(not_gauge(metric));
    }
    let mut result = right.clone();
    combined(result.sub(&left), "subtraction", metric, notes)?;
    if is_counter {
        if let Some(correction) =
            histogram_resets(h, first, last, &left, &right, b.range_start, smoothed, metric, notes)?
        {
            combined(result.add(&correction), "addition", metric, notes)?;
        }
    }
    result.counter_reset_hint = CounterResetHint::Gauge;
    result.compact();
    Some(result)
}

/// What counter resets between the boundary samples add back (Prometheus's
/// `correctForCounterResetsHistogram`): `Some(None)` when nothing, `None` when the histograms
/// could not be combined.
#[allow(clippy::too_many_arguments)]
fn histogram_resets(
    h: &[HistogramPoint],
    first_index: usize,
    last_index: usize,
    left: &Histogram,
    right: &Histogram,
    range_start: i64,
    smoothed: bool,
    metric: &str,
    notes: &mut Vec<String>,
) -> Option<Option<Histogram>> {
    // `left` stands for the first boundary sample, so the loop starts after it.
    let mut first = first_index + 1;
    let mut prev = left;
    if smoothed && h[first_index].t < range_start && h[first_index + 1].h.detect_reset(&h[first_index].h) {
        // The left interpolation spanned the reset into the next sample: that reset is counted,
        // and the next sample is what a reset right after it is measured against.
        prev = &h[first_index + 1].h;
        first += 1;
    }
    // The last boundary sample is `right` (or what it was interpolated towards, whose reset hint
    // it inherits): left out, so that `right` is not compared with itself.
    let end = last_index; // exclusive
    if first > end {
        return Some(None);
    }
    let mut correction: Option<Histogram> = None;
    let add = |c: &mut Option<Histogram>, h: &Histogram, notes: &mut Vec<String>| -> Option<()> {
        match c {
            None => *c = Some(h.clone()),
            Some(sum) => combined(sum.add(h), "addition", metric, notes)?,
        }
        Some(())
    };
    for p in &h[first..end] {
        if p.h.detect_reset(prev) {
            add(&mut correction, prev, notes)?;
        }
        prev = &p.h;
    }
    if right.detect_reset(prev) {
        add(&mut correction, prev, notes)?;
    }
    Some(correction)
}

/// A bare `anchored` or `smoothed` range selector (Prometheus's `extendFloats`): each series'
/// samples inside the range with the values at its two ends added at the ends' times.
pub(crate) fn range_selector(ev: &Evaluator<'_>, ms: &MatrixSelector, t: i64) -> Result<Vec<Series>> {
    let b = bounds(ev, ms, t);
    let modifier = if ms.vs.anchored { "anchored" } else { "smoothed" };
    let mut out = Vec::new();
    let mut scratch = WindowScratch::default();
    for s in ev.series_of(&ms.vs) {
        let w = window(s, b.from, b.to, &mut scratch);
        if !w.histograms.is_empty() {
            return Err(Error::Execution(format!("{modifier} modifier is not supported with histograms")));
        }
        let f = w.floats;
        let Some(bounds) = (!f.is_empty()).then(|| boundary_samples(f, |p| p.t, &b, ms.vs.smoothed)).flatten() else {
            continue;
        };
        let (left, right) = end_values(f, bounds, &b, ms.vs.smoothed, false);
        let mut points = vec![Point { t: b.range_start, v: left }];
        points.extend_from_slice(inside(f, bounds, &b));
        points.push(Point { t: b.range_end, v: right });
        out.push(Series {
            labels: s.labels.clone(),
            points,
            histograms: Vec::new(),
            start_timestamps: StartTimestamps::default(),
            drop_name: false,
        });
    }
    Ok(out)
}

/// A `smoothed` instant selector at `t` (Prometheus's `smoothSeries`): each series' value at the
/// evaluation time, interpolated between the samples either side of it within the lookback
/// delta, or the last one before it carried forward. Not counted in `totalQueryableSamples`:
/// Prometheus's `smoothSeries` counts nothing.
pub(crate) fn smoothed_selector(ev: &mut Evaluator<'_>, vs: &VectorSelector, t: i64) -> Vec<Sample> {
    let (data_t, _) = ev.shifted(vs.at.as_ref(), vs.offset.as_ref(), t, t);
    let lookback = ev.lookback_ms;
    let mut notes = Vec::new();
    let mut out = Vec::new();
    let mut scratch = WindowScratch::default();
    for s in ev.series_of(vs) {
        let w = window(s, data_t - lookback, data_t + lookback, &mut scratch);
        let metric = metric_name(&s.labels);
        let sample = |v: f64, h: Option<Histogram>| Sample {
            labels: s.labels.clone(),
            t,
            v,
            h: h.map(Arc::new),
            drop_name: false,
        };
        match (w.floats.is_empty(), w.histograms.is_empty()) {
            (true, true) => {}
            (false, false) => notes.push(mixed_floats_and_histograms(metric)),
            (false, true) => {
                let f = w.floats;
                let i = f.partition_point(|p| p.t < data_t);
                if i < f.len() && f[i].t == data_t {
                    out.push(sample(f[i].v, None));
                } else if i > 0 && i < f.len() {
                    out.push(sample(interpolate(f[i - 1], f[i], data_t, false), None));
                } else if i > 0 {
                    out.push(sample(f[i - 1].v, None));
                }
            }
            (true, false) => {
                let h = w.histograms;
                let i = h.partition_point(|p| p.t < data_t);
                if i < h.len() && h[i].t == data_t {
                    out.push(sample(0.0, Some(Histogram::clone(&h[i].h))));
                } else if i > 0 && i < h.len() {
                    let (prev, next) = (&h[i - 1], &h[i]);
                    if prev.h.uses_custom_buckets() != next.h.uses_custom_buckets() {
                        notes.push(mixed_schemas(metric));
                        continue;
                    }
                    // A counter unless both samples say gauge.
                    let is_counter = !prev.h.is_gauge() || !next.h.is_gauge();
                    if let Some(v) = interpolate_histograms(
                        (prev.t, &prev.h),
                        (next.t, &next.h),
                        data_t,
                        is_counter,
                        metric,
                        &mut notes,
                    ) {
                        out.push(sample(0.0, Some(v)));
                    }
                } else if i > 0 {
                    // The hint told how a sample relates to the one before it; carried forward,
                    // it no longer does.
                    let mut v = Histogram::clone(&h[i - 1].h);
                    v.counter_reset_hint = CounterResetHint::Unknown;
                    out.push(sample(0.0, Some(v)));
                }
            }
        }
    }
    ev.annotate(vs.pos_range, notes);
    out
}
