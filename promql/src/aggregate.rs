//! Aggregation operators: `sum`, `avg`, `count`, `min`, `max`, `group`, `stddev`, `stdvar`,
//! `topk`, `bottomk`, `quantile`, `count_values`, `limitk`, `limit_ratio`, with `by`/`without`.
//!
//! Groups come out in the order their first sample went in, as in Prometheus. Sums use
//! Kahan-Neumaier compensation, because Prometheus does and its tests compare exactly.

use std::collections::HashMap;
use std::sync::Arc;

use amber_histogram::{CounterResetHint, Histogram, Running};

use promql_parser::parser::{AggregateExpr, Expr, LabelModifier};

use crate::by_series::{self, SeriesPoints};
use crate::error::{Error, Result};
use crate::eval::Evaluator;
use crate::labels::{Labels, LabelsMap};
use crate::numeric::{RunningMean, kahan_sum_inc, quantile};
use crate::value::{Point, Sample, Value};

/// The running state of one group.
struct Group {
    labels: Labels,
    fold: Fold,
    samples: Vec<Sample>,
    values: Vec<f64>,
    /// Whether any input still had a metric name to drop (it matters when grouping by it).
    drop_name: bool,
    histograms: Option<HistogramSum>,
    has_float: bool,
}

/// The running sum or mean of a group's native histograms (`sum`, `avg`).
struct HistogramSum {
    running: Running,
    /// Mixed exponential and custom buckets: the group has no result.
    incompatible: bool,
    reset_seen: bool,
    not_reset_seen: bool,
}

impl HistogramSum {
    fn note_hint(&mut self, h: &Histogram) {
        match h.counter_reset_hint {
            CounterResetHint::Reset => self.reset_seen = true,
            CounterResetHint::NotReset => self.not_reset_seen = true,
            _ => {}
        }
    }
}

/// The aggregations that fold a group's float values into one running state, in
/// [`Fold`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum FoldOp {
    Sum,
    Avg,
    Count,
    Group,
    Max,
    Min,
    Stddev,
    Stdvar,
}

impl FoldOp {
    fn of(op: &str) -> Option<FoldOp> {
        Some(match op {
            "sum" => FoldOp::Sum,
            "avg" => FoldOp::Avg,
            "count" => FoldOp::Count,
            "group" => FoldOp::Group,
            "max" => FoldOp::Max,
            "min" => FoldOp::Min,
            "stddev" => FoldOp::Stddev,
            "stdvar" => FoldOp::Stdvar,
            _ => return None,
        })
    }
}

/// The running state of a [`FoldOp`] over one group's values at one step.
#[derive(Debug, Clone, Copy, Default)]
struct Fold {
    count: f64,
    value: f64,
    kahan_c: f64,
    mean: f64,
    running_mean: RunningMean,
}

impl Fold {
    fn add(&mut self, op: FoldOp, v: f64) {
        self.count += 1.0;
        match op {
            FoldOp::Sum => (self.value, self.kahan_c) = kahan_sum_inc(v, self.value, self.kahan_c),
            FoldOp::Avg => self.running_mean.add(v),
            FoldOp::Count | FoldOp::Group => {}
            FoldOp::Max => {
                if self.count == 1.0 || self.value < v || self.value.is_nan() {
                    self.value = v;
                }
            }
            FoldOp::Min => {
                if self.count == 1.0 || self.value > v || self.value.is_nan() {
                    self.value = v;
                }
            }
            FoldOp::Stddev | FoldOp::Stdvar => {
                let delta = v - self.mean;
                self.mean += delta / self.count;
                self.value += delta * (v - self.mean);
            }
        }
    }

    fn value(&self, op: FoldOp) -> f64 {
        match op {
            FoldOp::Sum => self.value + self.kahan_c,
            FoldOp::Avg => self.running_mean.value(),
            FoldOp::Count => self.count,
            FoldOp::Group => 1.0,
            FoldOp::Max | FoldOp::Min => self.value,
            FoldOp::Stdvar => self.value / self.count,
            FoldOp::Stddev => (self.value / self.count).sqrt(),
        }
    }
}

/// The groups of one aggregation's input series, kept across the steps of a range query.
#[derive(Debug, Default)]
pub(crate) struct Grouping {
    /// Input series → index into `groups`.
    series: LabelsMap<usize>,
    groups: LabelsMap<()>,
}

fn grouping_labels(labels: &Labels, modifier: Option<&LabelModifier>) -> Labels {
    match modifier {
        Some(LabelModifier::Include(by)) => labels.project(&by.labels, true),
        Some(LabelModifier::Exclude(without)) => labels.project(&without.labels, false).without_metric_name(),
        None => Labels::default(),
    }
}

pub(crate) fn eval(ev: &mut Evaluator<'_>, a: &AggregateExpr, t: i64) -> Result<Value> {
    let op = a.op.to_string().to_ascii_lowercase();
    let param = match &a.param {
        Some(p) => Some(ev.eval(p, t)?),
        None => None,
    };
    let input = ev.eval_vector(&a.expr, t)?;
    let scalar_param = |name: &str| -> Result<f64> {
        match &param {
            Some(Value::Scalar(p)) => Ok(p.v),
            _ => Err(Error::Execution(format!("{name} requires a scalar parameter"))),
        }
    };
    let modifier = a.modifier.as_ref();
    // Prometheus's annotations point at the parameter, the aggregated expression or, for
    // histograms ignored by `topk`/`bottomk`, the aggregation itself.
    let param_at = a.param.as_deref().map_or(a.pos_range, Expr::position_range);
    let notes_at = if matches!(op.as_str(), "topk" | "bottomk") { a.pos_range } else { a.expr.position_range() };

    if op == "count_values" {
        let label = match &param {
            Some(Value::String { s, .. }) => s.clone(),
            _ => return Err(Error::Execution("count_values requires a string parameter".into())),
        };
        if !is_valid_label_name(&label) {
            return Err(Error::Execution(format!("invalid label name {label:?}")));
        }
        let mut order: Vec<Labels> = Vec::new();
        let mut counts: HashMap<Labels, f64> = HashMap::new();
        for s in &input {
            let mut labels = grouping_labels(&s.labels, modifier);
            let value = match &s.h {
                Some(h) => h.to_string(),
                None => crate::value::format_float(s.v),
            };
            labels.set(&label, &value);
            let c = counts.entry(labels.clone()).or_insert_with(|| {
                order.push(labels);
                0.0
            });
            *c += 1.0;
        }
        return Ok(Value::Vector(order.into_iter().map(|l| Sample::float(l.clone(), t, counts[&l], false)).collect()));
    }

    let k = match op.as_str() {
        "topk" | "bottomk" | "limitk" => {
            let v = scalar_param(&op)?;
            if v.is_nan() {
                return Err(Error::Execution("Parameter value is NaN".into()));
            }
            Some(if v >= i64::MAX as f64 {
                i64::MAX
            } else if v <= i64::MIN as f64 {
                i64::MIN
            } else {
                v as i64
            })
        }
        _ => None,
    };
    let ratio = if op == "limit_ratio" {
        let r = scalar_param(&op)?;
        if r.is_nan() {
            return Err(Error::Execution("Ratio value is NaN".into()));
        }
        if !(-1.0..=1.0).contains(&r) {
            let capped = r.clamp(-1.0, 1.0);
            ev.note(
                param_at,
                format!(
                    "PromQL warning: ratio value should be between -1 and 1, got {}, capping to {}",
                    crate::value::format_float(r),
                    crate::value::format_float(capped)
                ),
            );
            Some(capped)
        } else {
            Some(r)
        }
    } else {
        None
    };
    let q = if op == "quantile" {
        let q = scalar_param(&op)?;
        if q.is_nan() || !(0.0..=1.0).contains(&q) {
            ev.note(
                param_at,
                format!(
                    "PromQL warning: quantile value should be between 0 and 1, got {}",
                    crate::value::format_float(q)
                ),
            );
        }
        Some(q)
    } else {
        None
    };
    if k.is_some_and(|k| k < 1) {
        return Ok(Value::Vector(Vec::new()));
    }

    let fold_op = FoldOp::of(&op);
    let mut groups: Vec<Group> = Vec::new();
    // Index into `groups` by group id, for this step.
    let mut slot: Vec<usize> = Vec::new();
    let node = a as *const AggregateExpr as usize;
    let grouping = ev.groupings.entry(node).or_default();
    let mut notes: Vec<String> = Vec::new();
    for s in input {
        if s.h.is_some() && matches!(op.as_str(), "min" | "max" | "stddev" | "stdvar" | "quantile" | "topk" | "bottomk")
        {
            notes.push(format!("PromQL info: ignored histogram in {op} aggregation"));
            continue;
        }
        let Grouping { series, groups: keys } = &mut *grouping;
        let id = *series
            .get_or_insert_with(&s.labels, || keys.index_or_insert_with(&grouping_labels(&s.labels, modifier), || ()));
        if slot.len() <= id {
            slot.resize(id + 1, usize::MAX);
        }
        if slot[id] == usize::MAX {
            slot[id] = groups.len();
            groups.push(Group {
                labels: keys.entry_at(id).0.clone(),
                fold: Fold::default(),
                drop_name: false,
                samples: Vec::new(),
                values: Vec::new(),
                histograms: None,
                has_float: false,
            });
        }
        let i = slot[id];
        let g = &mut groups[i];
        g.drop_name |= s.drop_name;
        let v = s.v;
        if let (Some(h), "sum" | "avg") = (&s.h, op.as_str()) {
            match &mut g.histograms {
                None => {
                    let first = Histogram::clone(h);
                    let mut sum = HistogramSum {
                        running: if op == "avg" { Running::mean(first) } else { Running::sum(first) },
                        incompatible: false,
                        reset_seen: false,
                        not_reset_seen: false,
                    };
                    sum.note_hint(h);
                    g.histograms = Some(sum);
                }
                Some(sum) if sum.incompatible => {}
                Some(sum) => {
                    sum.note_hint(h);
                    match sum.running.add(h) {
                        Ok(combined) if combined.custom_bounds_reconciled => notes.push(
                            "PromQL info: mismatched custom buckets were reconciled during aggregation".to_string(),
                        ),
                        Ok(_) => {}
                        Err(_) => {
                            sum.incompatible = true;
                            notes.push(format!(
                                "PromQL warning: vector contains a mix of histograms with exponential and custom buckets schemas for metric name {:?}",
                                crate::functions::metric_name(&s.labels)
                            ));
                        }
                    }
                }
            }
            continue;
        }
        if let Some(fold_op) = fold_op {
            g.has_float |= matches!(fold_op, FoldOp::Sum | FoldOp::Avg);
            g.fold.add(fold_op, v);
            continue;
        }
        match op.as_str() {
            "quantile" => g.values.push(v),
            "topk" | "bottomk" | "limitk" | "limit_ratio" => g.samples.push(s),
            other => return Err(Error::BadQuery(format!("unknown aggregation {other:?}"))),
        }
    }

    let mut out = Vec::new();
    for mut g in groups {
        if let Some(sum) = g.histograms.take() {
            if g.has_float {
                notes.push("PromQL warning: encountered a mix of histograms and floats for aggregation".to_string());
                continue;
            }
            if sum.incompatible {
                continue;
            }
            if sum.reset_seen && sum.not_reset_seen {
                notes.push("PromQL warning: conflicting counter resets during histogram aggregation".to_string());
            }
            let mut h = sum.running.value();
            h.compact();
            out.push(Sample { labels: g.labels, t, v: 0.0, h: Some(Arc::new(h)), drop_name: g.drop_name });
            continue;
        }
        if let Some(fold_op) = fold_op {
            out.push(Sample::float(g.labels, t, g.fold.value(fold_op), g.drop_name));
            continue;
        }
        let v = match op.as_str() {
            "quantile" => quantile(q.expect("set for quantile"), &mut g.values),
            "topk" | "bottomk" => {
                let k = k.expect("set for topk") as usize;
                let top = op == "topk";
                // NaN ranks last either way, as in Prometheus.
                g.samples.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
                    (true, true) => std::cmp::Ordering::Equal,
                    (true, false) => std::cmp::Ordering::Greater,
                    (false, true) => std::cmp::Ordering::Less,
                    _ if top => b.v.partial_cmp(&a.v).expect("not NaN"),
                    _ => a.v.partial_cmp(&b.v).expect("not NaN"),
                });
                g.samples.truncate(k);
                out.extend(g.samples);
                continue;
            }
            "limitk" => {
                g.samples.truncate(k.expect("set for limitk") as usize);
                out.extend(g.samples);
                continue;
            }
            "limit_ratio" => {
                let r = ratio.expect("set for limit_ratio");
                out.extend(g.samples.into_iter().filter(|s| ratio_selects(r, &s.labels)));
                continue;
            }
            _ => unreachable!("checked above"),
        };
        out.push(Sample::float(g.labels, t, v, g.drop_name));
    }
    ev.annotate(notes_at, notes);
    Ok(Value::Vector(out))
}

/// Whether `limit_ratio(r, ...)` keeps a series: a stable choice by the hash of its labels,
/// so that `limit_ratio(r)` and `limit_ratio(-(1-r))` split the series between them.
fn ratio_selects(r: f64, labels: &Labels) -> bool {
    let h = crate::labels::hash(labels) as f64 / u64::MAX as f64;
    if r >= 0.0 { h < r } else { h >= 1.0 + r }
}

pub(crate) fn is_valid_label_name(name: &str) -> bool {
    !name.is_empty() && std::str::from_utf8(name.as_bytes()).is_ok()
}

/// The fold of an aggregation that [`by_series`] can evaluate: one without a parameter.
pub(crate) fn fold_op(a: &AggregateExpr) -> Option<FoldOp> {
    if a.param.is_some() {
        return None;
    }
    FoldOp::of(&a.op.to_string().to_ascii_lowercase())
}

/// A whole range query of a folding aggregation (`sum`, `avg`, `count`, `group`, `min`, `max`,
/// `stddev`, `stdvar`, with `by`/`without`) over a `rate`-family call, with the input evaluated
/// series by series over all steps ([`by_series::eval_in_step_order`]): each input series' group
/// is found once, then each step folds the inputs that have a point there, in input order as the
/// step-by-step path does, so sums come out bit for bit the same. `None` for other aggregations or
/// inputs, and when a group's inputs disagree on dropping the metric name (the step-by-step path
/// then decides step by step).
pub(crate) fn by_series(
    ev: &mut Evaluator<'_>,
    a: &AggregateExpr,
    steps: &[i64],
    threads: usize,
) -> Option<Result<Vec<SeriesPoints>>> {
    let op = fold_op(a)?;
    let input = match by_series::eval_in_step_order(ev, &a.expr, steps, threads)? {
        Ok(input) => input,
        Err(e) => return Some(Err(e)),
    };
    let mut keys: LabelsMap<Option<bool>> = LabelsMap::default();
    let mut group_of = Vec::with_capacity(input.len());
    for s in &input {
        let id = keys.index_or_insert_with(&grouping_labels(&s.labels, a.modifier.as_ref()), || None);
        group_of.push(id);
        if s.points.is_empty() {
            continue;
        }
        let drop_name = keys.value_at_mut(id);
        if drop_name.is_some_and(|d| d != s.drop_name) {
            return None;
        }
        *drop_name = Some(s.drop_name);
    }
    let points = match fold_by_series(ev, op, &input, &group_of, keys.len(), steps, threads, FOLDS_PER_BLOCK) {
        Ok(points) => points,
        Err(e) => return Some(Err(e)),
    };
    Some(Ok(keys
        .into_entries()
        .into_iter()
        .zip(points)
        .map(|((labels, drop_name), points)| SeriesPoints { labels, drop_name: drop_name.unwrap_or(false), points })
        .collect()))
}

/// Folds held at once by one thread of [`fold_by_series`]: a block of steps for every group.
/// Small enough to stay in cache (64 bytes a fold), large enough that a block of steps holds
/// several points of every series.
const FOLDS_PER_BLOCK: usize = 1 << 14;

/// Each group's points: at every step where one of its inputs has a point, the fold of those
/// points in input order (the order the step-by-step path adds them in, so sums are bit for bit
/// the same). Series by series within a block of steps, so each input's points are read in
/// order rather than one point of every input per step. Blocks hold about `folds_per_block`
/// folds; with at least `parallel_min_samples` input points they are shared between up to
/// `threads` threads, each a contiguous run of steps, joined in step order.
#[allow(clippy::too_many_arguments)]
fn fold_by_series(
    ev: &Evaluator<'_>,
    op: FoldOp,
    input: &[SeriesPoints],
    group_of: &[usize],
    groups: usize,
    steps: &[i64],
    threads: usize,
    folds_per_block: usize,
) -> Result<Vec<Vec<Point>>> {
    let block = (folds_per_block / groups.max(1)).max(1);
    // The points of each group at the steps `run` covers.
    let fold_run = |run: std::ops::Range<usize>| -> Result<Vec<Vec<Point>>> {
        let mut out: Vec<Vec<Point>> = vec![Vec::new(); groups];
        let Some(&first) = steps.get(run.start) else { return Ok(out) };
        // Where each input series is in its points: blocks only move forward.
        let mut next: Vec<usize> = input.iter().map(|s| s.points.partition_point(|p| p.t < first)).collect();
        let mut folds = vec![Fold::default(); groups * block.min(run.len())];
        for lo in run.clone().step_by(block) {
            let block_steps = &steps[lo..(lo + block).min(run.end)];
            let last = block_steps[block_steps.len() - 1];
            let width = block_steps.len();
            for (i, ((s, &g), next)) in input.iter().zip(group_of).zip(next.iter_mut()).enumerate() {
                // A block of one group's steps may span a whole query: checked by series too.
                if i % 1024 == 0 {
                    ev.check_deadline("expression evaluation")?;
                }
                let folds = &mut folds[g * width..(g + 1) * width];
                // A series' points are at some of the steps, in order.
                let mut k = 0;
                while let Some(p) = s.points.get(*next).filter(|p| p.t <= last) {
                    while block_steps[k] < p.t {
                        k += 1;
                    }
                    folds[k].add(op, p.v);
                    *next += 1;
                }
            }
            for (g, points) in out.iter_mut().enumerate() {
                for (fold, &t) in folds[g * width..(g + 1) * width].iter_mut().zip(block_steps) {
                    if fold.count > 0.0 {
                        points.push(Point { t, v: fold.value(op) });
                        *fold = Fold::default();
                    }
                }
            }
        }
        Ok(out)
    };
    let points: usize = input.iter().map(|s| s.points.len()).sum();
    let threads = if points < ev.opts.parallel_min_samples { 1 } else { threads.min(steps.len().div_ceil(block)) };
    if threads < 2 {
        return fold_run(0..steps.len());
    }
    let per_thread = steps.len().div_ceil(threads);
    let runs: Vec<Result<Vec<Vec<Point>>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..steps.len())
            .step_by(per_thread)
            .map(|lo| {
                let fold_run = &fold_run;
                scope.spawn(move || fold_run(lo..(lo + per_thread).min(steps.len())))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("folding does not panic")).collect()
    });
    let mut out: Vec<Vec<Point>> = vec![Vec::new(); groups];
    for run in runs {
        for (points, run_points) in out.iter_mut().zip(run?) {
            points.extend(run_points);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::{EngineOptions, MemoryStorage};

    /// Folded series by series in blocks of any size, on one thread or several, each group's
    /// points are bit for bit those of folding every input at every step in input order.
    #[test]
    fn folds_in_blocks_equal_folding_step_by_step() {
        let steps: Vec<i64> = (0..97).map(|k| k * 60_000).collect();
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        // Inputs come and go between steps; their values span magnitudes, so the order of
        // additions shows in the sums' low bits.
        let input: Vec<SeriesPoints> = (0..23)
            .map(|_| {
                let mut points = Vec::new();
                for &t in &steps {
                    if next() % 5 != 0 {
                        points.push(Point { t, v: (next() % 10_000) as f64 * 10f64.powi((next() % 12) as i32 - 6) });
                    }
                }
                SeriesPoints { labels: Labels::default(), drop_name: false, points }
            })
            .collect();
        let groups = 4;
        let group_of: Vec<usize> = (0..input.len()).map(|i| i * 7 % groups).collect();
        let storage = MemoryStorage::default();
        for op in [FoldOp::Sum, FoldOp::Avg, FoldOp::Stddev, FoldOp::Min, FoldOp::Count] {
            let mut want: Vec<Vec<Point>> = vec![Vec::new(); groups];
            for &t in &steps {
                let mut folds = vec![Fold::default(); groups];
                for (s, &g) in input.iter().zip(&group_of) {
                    if let Some(p) = s.points.iter().find(|p| p.t == t) {
                        folds[g].add(op, p.v);
                    }
                }
                for (fold, points) in folds.iter().zip(want.iter_mut()) {
                    if fold.count > 0.0 {
                        points.push(Point { t, v: fold.value(op) });
                    }
                }
            }
            let bits = |groups: &[Vec<Point>]| -> Vec<Vec<(i64, u64)>> {
                groups.iter().map(|g| g.iter().map(|p| (p.t, p.v.to_bits())).collect()).collect()
            };
            for parallel_min_samples in [0, usize::MAX] {
                let opts = EngineOptions { parallel_min_samples, ..EngineOptions::default() };
                let deadline = Instant::now() + Duration::from_secs(60);
                let ev = Evaluator::new(&storage, &opts, 300_000, 0, 0, 60_000, deadline, None);
                for folds_per_block in [1, 3, 4, 9, 40, 400, 1 << 20] {
                    let got = fold_by_series(&ev, op, &input, &group_of, groups, &steps, 3, folds_per_block).unwrap();
                    assert_eq!(bits(&got), bits(&want), "{op:?}, {folds_per_block} folds a block");
                }
            }
        }
    }
}
