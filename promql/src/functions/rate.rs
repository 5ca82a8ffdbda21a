//! `rate`, `increase`, `delta` (extrapolated over the range) and `irate`, `idelta` (last two
//! samples).
//!
//! `rate`, `increase` and `irate` read start timestamps, as Prometheus 3 does with
//! `--enable-feature=use-start-timestamps`: a start timestamp after the previous sample is a
//! counter reset even when the value did not drop, and the first sample's start inside the range
//! replaces extrapolation towards the range's start (the counter was 0 then).

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

use promql_parser::parser::Expr;

use super::{Out, metric_name, per_series_with_starts, without_parens};
use crate::by_series::SeriesPoints;
use crate::error::{Error, Result};
use crate::eval::{Evaluator, duration_ms, offset_ms};
use crate::value::{Histogram, HistogramPoint, Series, Starts};
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
    ev.at_ms(at).unwrap_or(t) - offset_ms(offset)
}

pub(crate) fn eval(ev: &mut Evaluator<'_>, name: &str, args: &[&Expr], t: i64) -> Result<Value> {
    let arg = args[0];
    let range = range_ms(arg);
    let end = range_end(ev, arg, t);
    if matches!(name, "rate" | "increase") {
        warn_if_not_counter(ev, arg, t, name)?;
    }
    let reads_starts = reads_start_timestamps(name);
    per_series_with_starts(ev, arg, t, false, |labels, points, histograms, starts, notes| {
        let starts = if reads_starts { starts } else { Starts::default() };
        let metric = metric_name(labels);
        // `irate` and `idelta` look at the newest two samples only: a mix of kinds elsewhere in
        // the range does not matter (Prometheus's `instantValue`).
        let newest_two = if matches!(name, "irate" | "idelta") && !points.is_empty() && !histograms.is_empty() {
            newest_two_kinds(points, histograms)
        } else {
            Vec::new()
        };
        if histograms.is_empty() || newest_two == [false, false] {
            let mut overlap = false;
            let v = compute(name, points, starts.floats, end - range, end, &mut overlap);
            if overlap {
                notes.push(start_overlap(metric));
            }
            return v.map(Out::Float);
        }
        if !points.is_empty() && newest_two != [true, true] {
            notes.push(mixed_floats_and_histograms(metric));
            return None;
        }
        let (range_start, window) = (end - range, HistogramWindow { points: histograms, starts: starts.histograms });
        let h = match name {
            "rate" => histogram_extrapolated_rate(window, range_start, end, true, true, metric, notes),
            "increase" => histogram_extrapolated_rate(window, range_start, end, true, false, metric, notes),
            "delta" => histogram_extrapolated_rate(window, range_start, end, false, false, metric, notes),
            "irate" => histogram_instant_value(window, true, metric, notes),
            _ => histogram_instant_value(window, false, metric, notes),
        };
        h.map(Out::Histogram)
    })
}

/// The kinds of a window's newest two samples, newest first: `true` for a histogram.
fn newest_two_kinds(points: &[Point], histograms: &[HistogramPoint]) -> Vec<bool> {
    let mut newest: Vec<(i64, bool)> = points.iter().rev().take(2).map(|p| (p.t, false)).collect();
    newest.extend(histograms.iter().rev().take(2).map(|h| (h.t, true)));
    newest.sort_by_key(|&(t, _)| std::cmp::Reverse(t));
    newest.into_iter().take(2).map(|(_, histogram)| histogram).collect()
}

/// Whether the function reads start timestamps: Prometheus hands them to `rate`, `increase`,
/// `irate` and `resets` only.
fn reads_start_timestamps(name: &str) -> bool {
    matches!(name, "rate" | "increase" | "irate")
}

/// Prometheus's `isStartTimestampReset`: whether a sample's start timestamp says its counter was
/// reset since the previous sample. 0 is no start timestamp; a start at or after the sample's own
/// time is invalid or OTel's "unknown start" (start = time) and says nothing.
pub(crate) fn is_start_reset(prev_start: i64, prev_t: i64, start: i64, t: i64) -> bool {
    if start == 0 || start >= t || start < prev_t {
        return false;
    }
    if start > prev_t {
        return true;
    }
    // The start is the previous sample's time: a delta series (a reset every sample), unless the
    // previous sample's start was unknown (OTel's cumulative series of unknown start) or invalid.
    if prev_start > prev_t {
        return false;
    }
    prev_start != 0 && prev_start != prev_t
}

/// Prometheus's `checkStartTimeOverlap`: a start timestamp before the previous sample that is
/// not the previous sample's own start (neither a delta nor the same cumulative run).
fn start_overlaps(prev_start: i64, prev_t: i64, start: i64) -> bool {
    start != 0 && start < prev_t && start != prev_start
}

fn start_overlap(metric: &str) -> String {
    format!("PromQL warning: sample has start time that overlaps with previous sample timestamp for metric {metric:?}")
}

/// Whether sample `i + 1` of a window is a counter reset by its start timestamp; `starts` is
/// empty or one per sample.
fn start_reset_at(starts: &[i64], times: impl Fn(usize) -> i64, i: usize) -> bool {
    i + 1 < starts.len() && is_start_reset(starts[i], times(i), starts[i + 1], times(i + 1))
}

/// Whether any sample of a window has a start timestamp overlapping the previous sample.
fn any_start_overlap(starts: &[i64], times: impl Fn(usize) -> i64) -> bool {
    (1..starts.len()).any(|i| start_overlaps(starts[i - 1], times(i - 1), starts[i]))
}

/// A window of histogram samples and their start timestamps (empty, or one per sample).
#[derive(Clone, Copy)]
struct HistogramWindow<'a> {
    points: &'a [HistogramPoint],
    starts: &'a [i64],
}

/// The extrapolation of Prometheus's `extrapolatedRate`, shared by floats and histograms: the
/// factor the increase between the first and the last sample of a window is multiplied by.
struct Extrapolation {
    range_start: i64,
    range_end: i64,
    first_t: i64,
    last_t: i64,
    samples: usize,
    is_counter: bool,
    is_rate: bool,
}

impl Extrapolation {
    /// The first sample's start timestamp, when Prometheus assumes a zero sample there instead of
    /// extrapolating to the left: a counter's start inside the range (whose start is exclusive)
    /// and before the first sample.
    fn start_inside(&self, starts: &[i64]) -> Option<i64> {
        let st = *starts.first()?;
        (self.is_counter && st != 0 && st > self.range_start && st < self.first_t).then_some(st)
    }

    /// The factor, given the start from [`Extrapolation::start_inside`] (the caller has added the
    /// first sample to the increase) and, for counters, the first sample's share of the increase
    /// when the counter's zero point can be extrapolated. `None` for a single sample without a
    /// usable start.
    fn factor(&self, start: Option<i64>, zero_share: Option<f64>) -> Option<f64> {
        let mut to_start = (self.first_t - self.range_start) as f64 / 1000.0;
        let mut to_end = (self.range_end - self.last_t) as f64 / 1000.0;
        let mut sampled = (self.last_t - self.first_t) as f64 / 1000.0;
        let average_gap = if self.samples > 1 { sampled / (self.samples - 1) as f64 } else { 0.0 };
        let threshold = average_gap * 1.1;
        if let Some(st) = start {
            // A single sample loses extrapolation to the right too: the threshold is 0.
            to_start = 0.0;
            sampled = (self.last_t - st) as f64 / 1000.0;
        } else if self.samples < 2 {
            return None;
        } else {
            if to_start >= threshold {
                to_start = average_gap / 2.0;
            }
            if self.is_counter {
                // A counter is never negative: do not extrapolate to before its zero point.
                let to_zero = zero_share.map_or(to_start, |share| sampled * share);
                if to_zero < to_start {
                    to_start = to_zero;
                }
            }
        }
        if to_end >= threshold {
            to_end = average_gap / 2.0;
        }
        let mut factor = if sampled != 0.0 { (sampled + to_start + to_end) / sampled } else { 1.0 };
        if self.is_rate {
            factor /= (self.range_end - self.range_start) as f64 / 1000.0;
        }
        Some(factor)
    }
}

pub(crate) fn not_counter(metric: &str) -> String {
    format!("PromQL warning: this native histogram metric is not a counter: {metric:?}")
}

pub(crate) fn not_gauge(metric: &str) -> String {
    format!("PromQL warning: this native histogram metric is not a gauge: {metric:?}")
}

pub(crate) fn mixed_floats_and_histograms(metric: &str) -> String {
    format!("PromQL warning: encountered a mix of histograms and floats for metric name {metric:?}")
}

pub(crate) fn mixed_schemas(metric: &str) -> String {
    format!(
        "PromQL warning: vector contains a mix of histograms with exponential and custom buckets schemas for metric name {metric:?}"
    )
}

/// Prometheus's `histogramRate`: the last histogram less the first, counter resets (by bucket
/// counts or by start timestamp) added back. `window` holds at least two samples.
fn histogram_rate(
    window: HistogramWindow<'_>,
    is_counter: bool,
    metric: &str,
    notes: &mut Vec<String>,
) -> Option<Histogram> {
    let (points, starts) = (window.points, window.starts);
    let time = |i: usize| points[i].t;
    let mut prev: Histogram = Histogram::clone(&points[0].h);
    let last = &points[points.len() - 1].h;
    let mut custom = prev.uses_custom_buckets();
    if is_counter && (prev.is_gauge() || last.is_gauge()) {
        notes.push(not_counter(metric));
    }
    if is_counter {
        let second = &points[1].h;
        if start_reset_at(starts, time, 0) || second.detect_reset(&prev) {
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
    combined(h.sub(&prev), "subtraction", metric, notes)?;
    if is_counter {
        if any_start_overlap(starts, time) {
            notes.push(start_overlap(metric));
        }
        for (i, p) in points.iter().enumerate().skip(1) {
            if start_reset_at(starts, time, i - 1) || p.h.detect_reset(&prev) {
                combined(h.add(&prev), "addition", metric, notes)?;
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
    window: HistogramWindow<'_>,
    range_start: i64,
    range_end: i64,
    is_counter: bool,
    is_rate: bool,
    metric: &str,
    notes: &mut Vec<String>,
) -> Option<Histogram> {
    let points = window.points;
    let (first, last) = (points.first()?, &points[points.len() - 1]);
    let mut result = if points.len() > 1 { Some(histogram_rate(window, is_counter, metric, notes)?) } else { None };
    let x = Extrapolation {
        range_start,
        range_end,
        first_t: first.t,
        last_t: last.t,
        samples: points.len(),
        is_counter,
        is_rate,
    };
    let start = x.start_inside(window.starts);
    if start.is_some() {
        // The counter was empty at its start: the first sample is all increase.
        match &mut result {
            None => result = Some(Histogram::clone(&first.h)),
            Some(r) => combined(r.add(&first.h), "addition", metric, notes)?,
        }
    }
    let mut result = result?;
    let zero_share = (result.count > 0.0 && first.h.count >= 0.0).then(|| first.h.count / result.count);
    result.mul(x.factor(start, zero_share)?);
    Some(result)
}

/// Prometheus's `instantValue` over the last two histograms.
fn histogram_instant_value(
    window: HistogramWindow<'_>,
    is_rate: bool,
    metric: &str,
    notes: &mut Vec<String>,
) -> Option<Histogram> {
    let points = window.points;
    if points.len() < 2 {
        return None;
    }
    let n = points.len();
    let (prev, last) = (&points[n - 2], &points[n - 1]);
    let start_reset = start_reset_at(window.starts, |i| points[i].t, n - 2);
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
    if !is_rate || (!start_reset && !last.h.detect_reset(&prev.h)) {
        combined(h.sub(&prev.h), "subtraction", metric, notes)?;
    }
    h.counter_reset_hint = CounterResetHint::Gauge;
    h.compact();
    if is_rate {
        h.div(interval as f64 / 1000.0);
    }
    Some(h)
}

/// The function `name` of this family over one window that lies in `(range_start, range_end]`,
/// with the window's start timestamps (empty, or one per point); sets `overlap` when a start
/// timestamp overlaps the previous sample.
fn compute(
    name: &str,
    points: &[Point],
    starts: &[i64],
    range_start: i64,
    range_end: i64,
    overlap: &mut bool,
) -> Option<f64> {
    compute_with_drops(name, points, starts, None, range_start, range_end, overlap)
}

/// [`compute`] given, when known, where the window's counter drops by value are.
fn compute_with_drops(
    name: &str,
    points: &[Point],
    starts: &[i64],
    drops: Option<Drops<'_>>,
    range_start: i64,
    range_end: i64,
    overlap: &mut bool,
) -> Option<f64> {
    match name {
        "rate" => extrapolated_rate(points, starts, drops, range_start, range_end, true, true, overlap),
        "increase" => extrapolated_rate(points, starts, drops, range_start, range_end, true, false, overlap),
        "delta" => extrapolated_rate(points, &[], None, range_start, range_end, false, false, overlap),
        "irate" => instant_value(points, starts, true),
        _ => instant_value(points, &[], false),
    }
}

/// What one thread made of its share of the series: their points, the annotations, and the
/// samples read per step when counting.
type SeriesPart = (Vec<SeriesPoints>, Vec<String>, Option<Vec<u64>>);

/// Series a thread reads at a time from a selection in parts: a day of 15 s samples is about
/// 100 KiB a series, so a part stays within a few MiB, reused from part to part.
pub(crate) const SERIES_PER_PART: usize = 32;

/// A whole range query of one of these functions over a plain matrix selector, series by series
/// across all steps (see [`Evaluator::for_each_series_range`]), the series shared out between
/// `threads`: each series of the selector with its points, in the selector's order. The series
/// come from the loaded selector, or from its selection in parts, read [`SERIES_PER_PART`] at a
/// time on each thread. `None` when the query has another shape (a series with histograms
/// among them: those go step by step).
pub(crate) fn series_points(
    ev: &mut Evaluator<'_>,
    name: &str,
    arg: &Expr,
    steps: &[i64],
    threads: usize,
) -> Option<Result<Vec<SeriesPoints>>> {
    let Expr::MatrixSelector(ms) = without_parens(arg) else { return None };
    let in_parts = ev.parts_of(&ms.vs).is_some();
    // Histograms go step by step.
    if ms.vs.at.is_some() || ev.series_of(&ms.vs).iter().any(|s| !s.histograms.is_empty()) {
        return None;
    }
    let counts_resets = matches!(name, "rate" | "increase");
    if counts_resets {
        if let Err(e) = warn_if_not_counter(ev, arg, steps.first().copied().unwrap_or_default(), name) {
            return Some(Err(e));
        }
    }
    let range = duration_ms(&ms.range);
    let reads_starts = reads_start_timestamps(name);
    let counting = ev.counting();
    let shared: &Evaluator<'_> = ev;
    // The points of `series` and the annotations about them, added to `part`.
    let eval_series = |series: &[Series], part: &mut SeriesPart| -> Result<()> {
        // A point per step at most: each list is sized once.
        let mut points: Vec<Vec<Point>> = (0..series.len()).map(|_| Vec::with_capacity(steps.len())).collect();
        let mut overlaps = vec![false; series.len()];
        // The drops of the series the windows are of, found only where they are used: by `rate`
        // and `increase` over a series without start timestamps (those reset by start too).
        let (mut drops_of, mut drops, mut drops_known) = (None, Vec::new(), false);
        shared.for_each_series_range(ms, steps, series, part.2.as_deref_mut(), |i, t, window, starts, run| {
            let end = range_end(shared, arg, t);
            let starts = if reads_starts { starts } else { &[] };
            if drops_of != Some(i) {
                drops_of = Some(i);
                drops_known = counts_resets && series[i].start_timestamps.floats.is_empty();
                if drops_known {
                    Drops::of(&series[i].points, &mut drops);
                }
            }
            let known = run.filter(|_| drops_known).map(|from| Drops { at: &drops, from });
            if let Some(v) = compute_with_drops(name, window, starts, known, end - range, end, &mut overlaps[i]) {
                points[i].push(Point { t, v });
            }
        })?;
        for ((s, points), overlap) in series.iter().zip(points).zip(overlaps) {
            if overlap {
                part.1.push(start_overlap(metric_name(&s.labels)));
            }
            part.0.push(SeriesPoints { labels: s.labels.clone(), drop_name: true, points });
        }
        Ok(())
    };
    let new_part = || -> SeriesPart { (Vec::new(), Vec::new(), counting.then(|| vec![0u64; steps.len()])) };
    let read = AtomicUsize::new(0);
    let max_samples = shared.opts.limits.max_samples.saturating_sub(shared.samples_loaded());
    // The series at positions `which`, in that order; `None` when one has histograms.
    let points_of = |which: Range<usize>| -> Result<Option<SeriesPart>> {
        let mut part = new_part();
        let Some(parts) = shared.parts_of(&ms.vs) else {
            eval_series(&shared.series_of(&ms.vs)[which], &mut part)?;
            return Ok(Some(part));
        };
        let mut series = Vec::new();
        for lo in which.clone().step_by(SERIES_PER_PART) {
            parts.series.read_into(lo..(lo + SERIES_PER_PART).min(which.end), &mut series)?;
            if series.iter().any(|s| !s.histograms.is_empty()) {
                return Ok(None);
            }
            let n: usize = series.iter().map(|s| s.points.len()).sum();
            if read.fetch_add(n, Ordering::Relaxed) + n > max_samples {
                return Err(Error::TooManySamples("query execution"));
            }
            eval_series(&series, &mut part)?;
        }
        Ok(Some(part))
    };
    let n = match shared.parts_of(&ms.vs) {
        Some(parts) => parts.series.len(),
        None => shared.series_of(&ms.vs).len(),
    };
    // A selection in parts goes on threads only when each gets a few parts.
    let threads = if in_parts && n < 2 * SERIES_PER_PART { 1 } else { threads };
    let parts: Vec<Result<Option<SeriesPart>>> = if threads < 2 || n < 2 {
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
    let mut out = Vec::with_capacity(n);
    let mut notes = Vec::new();
    let mut counts = counting.then(|| vec![0u64; steps.len()]);
    for part in parts {
        match part {
            Ok(Some((points, part_notes, part_counts))) => {
                out.extend(points);
                notes.extend(part_notes);
                if let (Some(counts), Some(part_counts)) = (counts.as_mut(), part_counts) {
                    counts.iter_mut().zip(part_counts).for_each(|(r, c)| *r += c);
                }
            }
            Ok(None) => return None,
            Err(e) => return Some(Err(e)),
        }
    }
    ev.add_loaded(read.into_inner());
    if let Some(counts) = counts {
        ev.count_reads_at(steps, &counts);
    }
    ev.annotate(arg.position_range(), notes);
    Some(Ok(out))
}

/// Notes what adding or subtracting (`operation`) two histograms of `metric` reported: `None`
/// (and the warning) when their schemas cannot be combined, else the reconciliation info if custom
/// bounds had to be reconciled.
pub(crate) fn combined(
    result: Result<amber_histogram::Combined, amber_histogram::IncompatibleSchemas>,
    operation: &str,
    metric: &str,
    notes: &mut Vec<String>,
) -> Option<()> {
    match result {
        Err(_) => {
            notes.push(mixed_schemas(metric));
            None
        }
        Ok(c) => {
            if c.custom_bounds_reconciled {
                notes.push(format!("PromQL info: mismatched custom buckets were reconciled during {operation}"));
            }
            Some(())
        }
    }
}

/// The info Prometheus gives when `rate`/`increase` is applied to a metric whose name does not
/// look like a counter's.
pub(crate) fn warn_if_not_counter(ev: &mut Evaluator<'_>, arg: &Expr, _t: i64, _name: &str) -> Result<()> {
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

/// Where a series' counter drops by value (the next point's value is lower), found once per
/// series, and where a window of it starts: a day-long `rate` at a 60 s step over 5 m windows
/// would otherwise compare every point twenty times.
#[derive(Clone, Copy)]
struct Drops<'a> {
    /// Positions `i` in the series' points with `points[i + 1].v < points[i].v`, ascending.
    at: &'a [usize],
    /// The window's first position in the series' points.
    from: usize,
}

impl Drops<'_> {
    /// The series' drop positions for a series' points.
    fn of(points: &[Point], at: &mut Vec<usize>) {
        at.clear();
        at.extend(points.windows(2).enumerate().filter(|(_, p)| p[1].v < p[0].v).map(|(i, _)| i));
    }

    /// The drops between points of a window of `len` points, as positions in the window.
    fn within(self, len: usize) -> impl Iterator<Item = usize> {
        let lo = self.at.partition_point(|&i| i < self.from);
        let hi = self.at.partition_point(|&i| i + 1 < self.from + len);
        self.at[lo..hi.max(lo)].iter().map(move |&i| i - self.from)
    }
}

/// Prometheus's `extrapolatedRate`: the increase between the first and last sample in
/// `(range_start, range_end]` (counter resets, by value or start timestamp, added back for
/// counters), extrapolated towards the range's edges when the samples come close enough to them,
/// or counted from zero at the first sample's start timestamp when that lies in the range.
/// `starts` is empty or one per point; `overlap` is set when one overlaps the previous sample.
#[allow(clippy::too_many_arguments)]
fn extrapolated_rate(
    points: &[Point],
    starts: &[i64],
    drops: Option<Drops<'_>>,
    range_start: i64,
    range_end: i64,
    is_counter: bool,
    is_rate: bool,
    overlap: &mut bool,
) -> Option<f64> {
    let first = *points.first()?;
    let last = points[points.len() - 1];
    let mut result = last.v - first.v;
    if is_counter {
        let time = |i: usize| points[i].t;
        *overlap |= any_start_overlap(starts, time);
        match drops {
            // The same resets added in the same order as the scan below, found without it.
            Some(drops) if starts.is_empty() => {
                for i in drops.within(points.len()) {
                    result += points[i].v;
                }
            }
            _ => {
                for (i, pair) in points.windows(2).enumerate() {
                    if pair[1].v < pair[0].v || start_reset_at(starts, time, i) {
                        result += pair[0].v;
                    }
                }
            }
        }
    }
    let x = Extrapolation {
        range_start,
        range_end,
        first_t: first.t,
        last_t: last.t,
        samples: points.len(),
        is_counter,
        is_rate,
    };
    let start = x.start_inside(starts);
    let zero_share = (result > 0.0 && first.v >= 0.0).then(|| first.v / result);
    if start.is_some() {
        // The counter was 0 at its start: the first sample is all increase.
        result += first.v;
    }
    Some(result * x.factor(start, zero_share)?)
}

/// Prometheus's `instantValue`: from the last two samples; a counter reset is a drop in value
/// or, for `irate`, a start timestamp after the earlier sample (`starts`: empty or one per point).
fn instant_value(points: &[Point], starts: &[i64], is_rate: bool) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len();
    let last = points[n - 1];
    let prev = points[n - 2];
    let reset = last.v < prev.v || start_reset_at(starts, |i| points[i].t, n - 2);
    let mut v = if is_rate && reset { last.v } else { last.v - prev.v };
    let interval = last.t - prev.t;
    if interval == 0 {
        return None;
    }
    if is_rate {
        v /= interval as f64 / 1000.0;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Over every window of a counter with resets, `rate` from the series' drops is bit for bit
    /// the `rate` of the scan, and the drops are those between the window's own points.
    #[test]
    fn drops_found_once_give_the_scans_rate_in_every_window() {
        let values = [5.0, 7.0, 1.0, 1.0, 9.0, 0.5, 0.25, 3.0, 3.0, 2.0, 8.0];
        let points: Vec<Point> = values.iter().enumerate().map(|(i, &v)| Point { t: i as i64 * 15_000, v }).collect();
        let mut at = Vec::new();
        Drops::of(&points, &mut at);
        assert_eq!(at, [1, 4, 5, 8]);
        for from in 0..points.len() {
            for to in from + 1..=points.len() {
                let window = &points[from..to];
                let within: Vec<usize> = Drops { at: &at, from }.within(window.len()).collect();
                let scanned: Vec<usize> = (0..window.len() - 1).filter(|&i| window[i + 1].v < window[i].v).collect();
                assert_eq!(within, scanned, "window {from}..{to}");
                let (lo, hi) = (from as i64 * 15_000 - 7_000, to as i64 * 15_000);
                let (mut a, mut b) = (false, false);
                let known = extrapolated_rate(window, &[], Some(Drops { at: &at, from }), lo, hi, true, true, &mut a);
                let scan = extrapolated_rate(window, &[], None, lo, hi, true, true, &mut b);
                assert_eq!(known.map(f64::to_bits), scan.map(f64::to_bits), "window {from}..{to}");
            }
        }
    }
}
