//! `histogram_quantile`, `histogram_quantiles` and `histogram_fraction` over native histograms and
//! over classic ones (`_bucket` series with an `le` label).

use std::collections::HashMap;

use promql_parser::parser::Expr;

use super::{metric_name, string_arg, without_parens};
use crate::by_series::{self, SeriesPoints};
use crate::error::Result;
use crate::eval::Evaluator;
use crate::labels::{Labels, LabelsMap, METRIC_NAME};
use crate::value::{Point, Sample, Value, format_float};

/// Relative differences below this between adjacent buckets are float noise, not decreases.
const SMALL_DELTA_TOLERANCE: f64 = 1e-12;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    upper: f64,
    count: f64,
}

/// A classic histogram: its labels without `le`, and its buckets.
type Classic = (Labels, Vec<Bucket>);

pub(crate) fn eval(ev: &mut Evaluator<'_>, name: &str, args: &[&Expr], t: i64) -> Result<Value> {
    if name == "histogram_fraction" {
        let (lower, upper) = (ev.eval_scalar(args[0], t)?, ev.eval_scalar(args[1], t)?);
        let (native, classic) = histograms_of(ev, args[2], t)?;
        let mut out = Vec::with_capacity(native.len());
        for s in native {
            let h = s.h.as_deref().expect("native");
            let (v, notes) = h.fraction(lower, upper);
            if notes.nans_excluded {
                ev.note(
                    args[2].position_range(),
                    format!(
                        "PromQL info: input to histogram_fraction has NaN observations, which are excluded from all fractions for metric name {:?}",
                        metric_name(&s.labels)
                    ),
                );
            }
            out.push(Sample { v, h: None, drop_name: true, ..s });
        }
        out.extend(
            classic.into_iter().map(|(labels, mut buckets)| {
                Sample::float(labels, t, bucket_fraction(lower, upper, &mut buckets), true)
            }),
        );
        return Ok(Value::Vector(out));
    }
    if name == "histogram_quantiles" {
        // histogram_quantiles(v, "label", q0, q1, ...): one series per histogram and quantile,
        // named by the quantile in `label`, quantile by quantile.
        let label = string_arg(ev, args[1], t)?;
        let mut qs = Vec::with_capacity(args.len() - 2);
        for arg in &args[2..] {
            let q = ev.eval_scalar(arg, t)?;
            check_quantile(ev, arg, q);
            qs.push(q);
        }
        let (native, mut classic) = histograms_of(ev, args[0], t)?;
        let mut out = Vec::with_capacity(qs.len() * (native.len() + classic.len()));
        for q in qs {
            let value = open_metrics_float(q);
            let with_quantile = |labels: &Labels| {
                let mut labels = labels.clone();
                labels.set(&label, &value);
                labels
            };
            quantiles(ev, q, args[0], t, &native, &mut classic, with_quantile, &mut out);
        }
        return Ok(Value::Vector(out));
    }
    let q = ev.eval_scalar(args[0], t)?;
    check_quantile(ev, args[0], q);
    let (native, mut classic) = histograms_of(ev, args[1], t)?;
    let mut out = Vec::with_capacity(native.len() + classic.len());
    quantiles(ev, q, args[1], t, &native, &mut classic, Labels::clone, &mut out);
    Ok(Value::Vector(out))
}

/// Warns of a quantile outside `[0, 1]`, pointing at its argument.
fn check_quantile(ev: &mut Evaluator<'_>, arg: &Expr, q: f64) {
    if q.is_nan() || !(0.0..=1.0).contains(&q) {
        ev.note(
            arg.position_range(),
            format!("PromQL warning: quantile value should be between 0 and 1, got {}", format_float(q)),
        );
    }
}

/// A quantile as the label value `histogram_quantiles` gives it (Prometheus's
/// `FormatOpenMetricsFloat`): like any float, with `.0` after a whole number.
fn open_metrics_float(q: f64) -> String {
    let text = format_float(q);
    if q.is_finite() && !text.contains(['e', '.']) { format!("{text}.0") } else { text }
}

/// Appends the `q` quantile of every native histogram in `native`, then of every classic one in
/// `classic`, to `out`, each labelled by `labels` of its input's labels. Annotations point at
/// `arg`, the histograms' argument.
#[allow(clippy::too_many_arguments)]
fn quantiles(
    ev: &mut Evaluator<'_>,
    q: f64,
    arg: &Expr,
    t: i64,
    native: &[Sample],
    classic: &mut [Classic],
    labels: impl Fn(&Labels) -> Labels,
    out: &mut Vec<Sample>,
) {
    let at = arg.position_range();
    for s in native {
        let h = s.h.as_deref().expect("native");
        let (v, notes) = h.quantile(q);
        let name = metric_name(&s.labels);
        if notes.nan_result {
            ev.note(
                at,
                format!(
                    "PromQL info: input to histogram_quantile has NaN observations, result is NaN for metric name {name:?}"
                ),
            );
        }
        if notes.nan_skew {
            ev.note(
                at,
                format!(
                    "PromQL info: input to histogram_quantile has NaN observations, result is skewed higher for metric name {name:?}"
                ),
            );
        }
        out.push(Sample { labels: labels(&s.labels), t: s.t, v, h: None, drop_name: true });
    }
    for (series, buckets) in classic.iter_mut() {
        let (v, forced_monotonic) = bucket_quantile(q, buckets);
        if forced_monotonic {
            ev.note(at, not_monotonic(series));
        }
        out.push(Sample::float(labels(series), t, v, true));
    }
}

/// The info for a classic histogram whose bucket counts had to be made monotonic.
fn not_monotonic(histogram: &Labels) -> String {
    format!(
        "PromQL info: input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name {:?}",
        metric_name(histogram)
    )
}

/// The warning for a bucket series whose `le` label is missing or not a number.
fn malformed_le(le: &str, labels: &Labels) -> String {
    format!(
        "PromQL warning: bucket label \"le\" is missing or has a malformed value of {le:?} for metric name {:?}",
        labels.get(METRIC_NAME).unwrap_or("")
    )
}

/// The native histograms among the values of `arg` at `t`, and the buckets of each classic
/// histogram, by its labels without `le` in order of first appearance (Prometheus's
/// `resetHistograms`). Float samples without a valid `le` are left out with a warning; so are a
/// native histogram and a classic one with the same labels, which cannot both be answered.
fn histograms_of(ev: &mut Evaluator<'_>, arg: &Expr, t: i64) -> Result<(Vec<Sample>, Vec<Classic>)> {
    let samples = ev.eval_vector(arg, t)?;
    let (native, floats): (Vec<Sample>, Vec<Sample>) = samples.into_iter().partition(|s| s.h.is_some());
    let mut order: Vec<Labels> = Vec::new();
    let mut groups: HashMap<Labels, Vec<Bucket>> = HashMap::new();
    for s in floats {
        let le = s.labels.get("le").unwrap_or("");
        let Some(upper) = parse_le(le) else {
            ev.note(arg.position_range(), malformed_le(le, &s.labels));
            continue;
        };
        let key = s.labels.project(&["le".to_string()], false);
        groups
            .entry(key.clone())
            .or_insert_with(|| {
                order.push(key);
                Vec::new()
            })
            .push(Bucket { upper, count: s.v });
    }
    let native: Vec<Sample> = native
        .into_iter()
        .filter(|s| {
            if groups.remove(&s.labels).is_none() {
                return true;
            }
            ev.note(
                arg.position_range(),
                format!(
                    "PromQL warning: vector contains a mix of classic and native histograms for metric name {:?}",
                    metric_name(&s.labels)
                ),
            );
            false
        })
        .collect();
    let classic =
        order.into_iter().filter_map(|labels| groups.remove(&labels).map(|buckets| (labels, buckets))).collect();
    Ok((native, classic))
}

/// The estimated fraction of observations in `[lower, upper]`, interpolating linearly within
/// buckets as `histogram_quantile` does (the lowest bucket starts at 0 when its bound is positive).
fn bucket_fraction(lower: f64, upper: f64, buckets: &mut Vec<Bucket>) -> f64 {
    buckets.sort_by(|a, b| a.upper.partial_cmp(&b.upper).unwrap_or(std::cmp::Ordering::Equal));
    if buckets.last().is_none_or(|b| b.upper != f64::INFINITY) {
        return f64::NAN;
    }
    coalesce(buckets);
    ensure_monotonic(buckets);
    let count = buckets[buckets.len() - 1].count;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    (rank_at(upper, buckets) - rank_at(lower, buckets)) / count
}

/// Observations at or below `v`, interpolated within its bucket. A bucket of infinite width
/// (below a non-positive lowest bound, or the `+Inf` bucket) cannot be interpolated: a finite
/// `v` inside it stands at the bucket's finite end, so the bucket counts only when the range
/// reaches its infinite end.
fn rank_at(v: f64, buckets: &[Bucket]) -> f64 {
    if v == f64::INFINITY {
        return buckets[buckets.len() - 1].count;
    }
    if v == f64::NEG_INFINITY {
        return 0.0;
    }
    let i = buckets.partition_point(|b| b.upper < v);
    let below = if i == 0 { 0.0 } else { buckets[i - 1].count };
    let b = buckets[i];
    if v == b.upper {
        return b.count;
    }
    if b.upper == f64::INFINITY {
        return below;
    }
    if i == 0 && b.upper <= 0.0 {
        return b.count;
    }
    let start = if i == 0 { 0.0 } else { buckets[i - 1].upper };
    if v <= start {
        return below;
    }
    below + (b.count - below) * (v - start) / (b.upper - start)
}

/// `le` as Prometheus parses it (Go's `strconv.ParseFloat`: `+Inf`, `Inf`, `1e3`, …).
fn parse_le(le: &str) -> Option<f64> {
    match le.to_ascii_lowercase().trim_start_matches('+') {
        "inf" | "infinity" => Some(if le.starts_with('-') { f64::NEG_INFINITY } else { f64::INFINITY }),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        _ => le.parse().ok(),
    }
}

/// Prometheus's `BucketQuantile`; also reports whether counts had to be made monotonic.
fn bucket_quantile(q: f64, buckets: &mut Vec<Bucket>) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    buckets.sort_by(|a, b| a.upper.partial_cmp(&b.upper).unwrap_or(std::cmp::Ordering::Equal));
    if buckets.last().is_none_or(|b| b.upper != f64::INFINITY) {
        return (f64::NAN, false);
    }
    coalesce(buckets);
    let forced = ensure_monotonic(buckets);
    if buckets.len() < 2 {
        return (f64::NAN, forced);
    }
    let observations = buckets[buckets.len() - 1].count;
    if observations == 0.0 {
        return (f64::NAN, forced);
    }
    let mut rank = q * observations;
    let b = buckets[..buckets.len() - 1].partition_point(|x| x.count < rank);
    if b == buckets.len() - 1 {
        return (buckets[buckets.len() - 2].upper, forced);
    }
    if b == 0 && buckets[0].upper <= 0.0 {
        return (buckets[0].upper, forced);
    }
    let (mut start, end, mut count) = (0.0, buckets[b].upper, buckets[b].count);
    if b > 0 {
        start = buckets[b - 1].upper;
        count -= buckets[b - 1].count;
        rank -= buckets[b - 1].count;
    }
    (start + (end - start) * (rank / count), forced)
}

/// Merges buckets with the same upper bound.
fn coalesce(buckets: &mut Vec<Bucket>) {
    let mut out: Vec<Bucket> = Vec::with_capacity(buckets.len());
    for b in buckets.iter() {
        match out.last_mut() {
            Some(last) if last.upper == b.upper => last.count += b.count,
            _ => out.push(*b),
        }
    }
    *buckets = out;
}

/// Removes decreases (and float noise) between adjacent buckets; true if a real decrease was fixed.
fn ensure_monotonic(buckets: &mut [Bucket]) -> bool {
    let mut forced = false;
    let mut prev = buckets[0].count;
    for b in buckets.iter_mut().skip(1) {
        let curr = b.count;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, SMALL_DELTA_TOLERANCE) {
            b.count = prev;
            continue;
        }
        if curr < prev {
            b.count = prev;
            forced = true;
            continue;
        }
        prev = curr;
    }
    forced
}

fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    const MIN_NORMAL: f64 = f64::MIN_POSITIVE;
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < epsilon * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

/// A whole range query of `histogram_quantile(q, arg)` with a literal `q` over classic histograms,
/// `arg` evaluated series by series ([`by_series::eval`]): each bucket series' histogram (its
/// labels without `le`) and upper bound are found once, then each step takes the quantile of the
/// buckets that have a point there, as the step-by-step path does. `None` for other shapes, and
/// when a histogram has two buckets with the same upper bound (their counts are added in the
/// order of the step's vector, which only the step-by-step path knows).
pub(crate) fn quantile_by_series(
    ev: &mut Evaluator<'_>,
    q_arg: &Expr,
    arg: &Expr,
    steps: &[i64],
    threads: usize,
) -> Option<Result<Vec<SeriesPoints>>> {
    let Expr::NumberLiteral(q) = without_parens(q_arg) else { return None };
    let q = q.val;
    let input = match by_series::eval(ev, arg, steps, threads)? {
        Ok(input) => input,
        Err(e) => return Some(Err(e)),
    };
    // Each histogram's buckets: the input series and its upper bound.
    let mut histograms: LabelsMap<Vec<(usize, f64)>> = LabelsMap::default();
    for (i, s) in input.iter().enumerate().filter(|(_, s)| !s.points.is_empty()) {
        let le = s.labels.get("le").unwrap_or("");
        let Some(upper) = parse_le(le) else {
            ev.note(arg.position_range(), malformed_le(le, &s.labels));
            continue;
        };
        histograms.get_or_insert_with(&s.labels.project(&["le".to_string()], false), Vec::new).push((i, upper));
    }
    let histograms = histograms.into_entries();
    for (_, buckets) in &histograms {
        let mut uppers: Vec<f64> = buckets.iter().map(|&(_, upper)| upper).collect();
        uppers.sort_by(f64::total_cmp);
        if uppers.windows(2).any(|w| w[0] == w[1]) {
            return None;
        }
    }
    if !steps.is_empty() {
        check_quantile(ev, q_arg, q);
    }
    let mut out: Vec<SeriesPoints> = histograms
        .iter()
        .map(|(labels, _)| SeriesPoints { labels: labels.clone(), drop_name: true, points: Vec::new() })
        .collect();
    let mut next = vec![0usize; input.len()];
    let mut at_step: Vec<Bucket> = Vec::new();
    let mut forced_monotonic = vec![false; histograms.len()];
    for (k, &t) in steps.iter().enumerate() {
        if k % 64 == 0 {
            if let Err(e) = ev.check_deadline("expression evaluation") {
                return Some(Err(e));
            }
        }
        for (h, (_, buckets)) in histograms.iter().enumerate() {
            at_step.clear();
            for &(i, upper) in buckets {
                if let Some(p) = input[i].points.get(next[i]).filter(|p| p.t == t) {
                    at_step.push(Bucket { upper, count: p.v });
                    next[i] += 1;
                }
            }
            if at_step.is_empty() {
                continue;
            }
            let (v, forced) = bucket_quantile(q, &mut at_step);
            forced_monotonic[h] |= forced;
            out[h].points.push(Point { t, v });
        }
    }
    for (_, (labels, _)) in forced_monotonic.iter().zip(&histograms).filter(|(forced, _)| **forced) {
        ev.note(arg.position_range(), not_monotonic(labels));
    }
    Some(Ok(out))
}
