//! `histogram_quantile` over classic histograms (`_bucket` series with an `le` label).

use std::collections::HashMap;

use promql_parser::parser::Expr;

use crate::error::Result;
use crate::eval::Evaluator;
use crate::labels::{Labels, METRIC_NAME};
use crate::value::{Sample, Value, format_float};

/// Relative differences below this between adjacent buckets are float noise, not decreases.
const SMALL_DELTA_TOLERANCE: f64 = 1e-12;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    upper: f64,
    count: f64,
}

pub(crate) fn eval(ev: &mut Evaluator<'_>, _name: &str, args: &[&Expr], t: i64) -> Result<Value> {
    let q = ev.eval_scalar(args[0], t)?;
    if q.is_nan() || !(0.0..=1.0).contains(&q) {
        ev.warnings
            .insert(format!("PromQL warning: quantile value should be between 0 and 1, got {}", format_float(q)));
    }
    let samples = ev.eval_vector(args[1], t)?;
    let mut order: Vec<Labels> = Vec::new();
    let mut groups: HashMap<Labels, (Vec<Bucket>, bool)> = HashMap::new();
    for s in samples {
        let le = s.labels.get("le").unwrap_or("");
        let Some(upper) = parse_le(le) else {
            ev.warnings.insert(format!(
                "PromQL warning: bucket label \"le\" is missing or has a malformed value of {le:?} for metric name {:?}",
                s.labels.get(METRIC_NAME).unwrap_or("")
            ));
            continue;
        };
        let key = s.labels.project(&["le".to_string()], false);
        let entry = groups.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            (Vec::new(), false)
        });
        entry.0.push(Bucket { upper, count: s.v });
        entry.1 |= s.drop_name;
    }
    let mut out = Vec::with_capacity(order.len());
    for labels in order {
        let (mut buckets, _) = groups.remove(&labels).expect("every key has a group");
        let name = labels.get(METRIC_NAME).unwrap_or("").to_string();
        let (v, forced_monotonic) = bucket_quantile(q, &mut buckets);
        if forced_monotonic {
            ev.infos.insert(format!(
                "PromQL info: input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name {name:?}"
            ));
        }
        out.push(Sample { labels, t, v, drop_name: true });
    }
    Ok(Value::Vector(out))
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
