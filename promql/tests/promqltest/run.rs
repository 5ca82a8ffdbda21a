//! Runs a parsed script against the engine and judges each eval as Prometheus's runner does.

use std::time::{Duration, UNIX_EPOCH};

use std::collections::BTreeMap;

use amber_histogram::{CounterResetHint, Span};
use amber_promql::{
    Engine, EngineOptions, Histogram, Labels, MemoryStorage, Point, QueryContext, QueryLimits, Sample, StartTimestamps,
    Value,
};
use promql_parser::parser::{self, AtModifier, Expr};

use crate::script::{self, Command, Eval, EvalKind, Expected, SeriesLine, Slot};

#[derive(Debug)]
pub enum Outcome {
    Passed,
    Failed(String),
    /// Fails because of a feature Amber lacks; the reason names it.
    Unsupported(String),
}

/// Runs every command of a file on fresh storage; returns each eval's line and outcome.
pub fn file(text: &str) -> Vec<(usize, Outcome)> {
    let script = match script::parse(text) {
        Ok(s) => s,
        Err(e) => {
            // Count every eval of the file as failed, so a script the runner cannot read shows.
            return text
                .lines()
                .enumerate()
                .filter(|(_, l)| l.trim_start().starts_with("eval"))
                .map(|(i, _)| (i + 1, Outcome::Failed(format!("script: {e}"))))
                .collect();
        }
    };
    let mut runner = Runner::default();
    let mut outcomes = Vec::new();
    for (line, command) in script {
        match command {
            Command::Clear => runner = Runner::default(),
            Command::Load { interval, series, with_nhcb } => runner.load(interval, &series, with_nhcb),
            Command::Eval(ev) => outcomes.push((line, runner.eval(&ev))),
        }
    }
    outcomes
}

struct Runner {
    storage: MemoryStorage,
    engine: Engine,
}

impl Default for Runner {
    /// The upstream test engine's settings (testdata/FORMAT.md §9).
    fn default() -> Self {
        let options = EngineOptions {
            lookback_delta_ms: 5 * 60_000,
            default_subquery_step_ms: 60_000,
            limits: QueryLimits {
                max_samples: 10_000,
                timeout: Duration::from_secs(100),
                max_points_per_series: 11_000,
            },
            // Every range query splits its steps between threads, so the whole suite checks
            // that forked evaluators agree with one evaluating every step.
            parallel_min_samples: 0,
        };
        Runner { storage: MemoryStorage::default(), engine: Engine::new(options) }
    }
}

/// Functions whose value depends on the evaluation time itself, so the `@` variants are skipped.
const TIME_FUNCTIONS: &[&str] = &[
    "time",
    "timestamp",
    "predict_linear",
    "year",
    "month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "hour",
    "minute",
    "start",
    "end",
    "range",
    "step",
];

fn calls_time_function(expr: &Expr) -> bool {
    match expr {
        Expr::Call(c) => TIME_FUNCTIONS.contains(&c.func.name) || c.args.args.iter().any(|a| calls_time_function(a)),
        Expr::Aggregate(a) => calls_time_function(&a.expr) || a.param.as_deref().is_some_and(calls_time_function),
        Expr::Unary(u) => calls_time_function(&u.expr),
        Expr::Binary(b) => calls_time_function(&b.lhs) || calls_time_function(&b.rhs),
        Expr::Paren(p) => calls_time_function(&p.expr),
        Expr::Subquery(s) => calls_time_function(&s.expr),
        _ => false,
    }
}

/// Pins every selector and subquery without an `@` to `t`, leaving the insides of subqueries.
fn pin_at(expr: &mut Expr, t: i64) {
    let at = || Some(AtModifier::At(UNIX_EPOCH + Duration::from_millis(t as u64)));
    match expr {
        Expr::VectorSelector(vs) if vs.at.is_none() => vs.at = at(),
        Expr::MatrixSelector(ms) if ms.vs.at.is_none() => ms.vs.at = at(),
        Expr::Subquery(sq) if sq.at.is_none() => sq.at = at(),
        Expr::Call(c) => c.args.args.iter_mut().for_each(|a| pin_at(a, t)),
        Expr::Aggregate(a) => {
            pin_at(&mut a.expr, t);
            if let Some(p) = a.param.as_deref_mut() {
                pin_at(p, t);
            }
        }
        Expr::Unary(u) => pin_at(&mut u.expr, t),
        Expr::Binary(b) => {
            pin_at(&mut b.lhs, t);
            pin_at(&mut b.rhs, t);
        }
        Expr::Paren(p) => pin_at(&mut p.expr, t),
        _ => {}
    }
}

/// The feature an expression the parser rejects relies on, when it is one Amber lacks.
fn unsupported_syntax(expr: &str, error: &str) -> Option<&'static str> {
    let has = |s: &str| expr.contains(s);
    // `offset` followed by an expression or a bare number of seconds rather than a duration.
    let computed_offset = expr.split("offset").skip(1).any(|rest| {
        let rest = rest.trim_start().trim_start_matches('-').trim_start();
        rest.starts_with('(')
            || rest.split(|c: char| !c.is_ascii_alphanumeric()).next().is_some_and(|w| w.parse::<f64>().is_ok())
    });
    if has("fill(") || has("fill_left(") || has("fill_right(") {
        Some("binary operator fill modifiers")
    } else if error.contains("inside brackets")
        || computed_offset
        || ["step()", "range()", "min_of(", "max_of(", "start()", "end()"].iter().any(|f| has(f))
    {
        Some("duration expressions (arithmetic in ranges, offsets and subquery steps)")
    } else {
        None
    }
}

/// Float equality of the reference runner (testdata/FORMAT.md §6.1).
fn float_eq(expected: f64, got: f64) -> bool {
    let stale = |v: f64| v.to_bits() == amber_promql::STALE_NAN_BITS;
    if stale(expected) || stale(got) {
        return stale(expected) && stale(got);
    }
    if expected.is_nan() && got.is_nan() {
        return true;
    }
    if expected.to_bits() == got.to_bits() || expected == got {
        return true;
    }
    const MIN_NORMAL: f64 = 2.2250738585072014e-308;
    const EPSILON: f64 = 1e-6;
    let sum = expected.abs() + got.abs();
    if expected == 0.0 || got == 0.0 || sum < MIN_NORMAL {
        return (expected - got).abs() < EPSILON * MIN_NORMAL;
    }
    (expected - got).abs() / sum.min(f64::MAX) < EPSILON
}

fn ms_to_time(t: i64) -> String {
    format!("{}s", t as f64 / 1000.0)
}

/// Passed, or why not.
type Check = Result<(), String>;

impl Runner {
    fn load(&mut self, interval: i64, series: &[SeriesLine], with_nhcb: bool) {
        // A later line with the same labels replaces an earlier one.
        let mut lines: Vec<&SeriesLine> = Vec::new();
        for s in series {
            lines.retain(|l| l.labels != s.labels);
            lines.push(s);
        }
        for s in &lines {
            let at = |k: usize| k as i64 * interval;
            let points: Vec<Point> = s
                .slots
                .iter()
                .enumerate()
                .filter_map(|(k, slot)| match slot {
                    Slot::Float(v) => Some(Point { t: at(k), v: *v }),
                    _ => None,
                })
                .collect();
            if !points.is_empty() {
                self.storage.add(s.labels.clone(), &points);
            }
            let histograms = read_back_hints(&s.slots);
            // A start timestamp is an offset from its sample's time; `_` is none (0).
            let start_at = |k: usize| s.start_offsets[k].map_or(0, |offset| at(k) + offset);
            let starts = (!s.start_offsets.is_empty()).then(|| StartTimestamps {
                floats: (0..s.slots.len()).filter(|&k| matches!(s.slots[k], Slot::Float(_))).map(start_at).collect(),
                histograms: histograms.iter().map(|(k, _)| start_at(*k)).collect(),
            });
            if !histograms.is_empty() {
                self.storage.add_histograms(
                    s.labels.clone(),
                    histograms.into_iter().map(|(k, h)| (at(k), h)).collect::<Vec<_>>(),
                );
            }
            if let Some(starts) = starts {
                self.storage.set_start_timestamps(s.labels.clone(), starts);
            }
        }
        if with_nhcb {
            for (labels, histograms) in nhcb_series(&lines) {
                let slots: Vec<Slot> = histograms
                    .into_iter()
                    .map(|h| h.map_or(Slot::Empty, |h| Slot::Histogram { h: Box::new(h), hint_set: false }))
                    .collect();
                let histograms = read_back_hints(&slots);
                self.storage.add_histograms(labels, histograms.into_iter().map(|(k, h)| (k as i64 * interval, h)));
            }
        }
    }

    fn eval(&self, ev: &Eval) -> Outcome {
        let expr = match parser::parse(&ev.expr) {
            Ok(e) => e,
            Err(e) => {
                return match unsupported_syntax(&ev.expr, &e) {
                    Some(feature) => Outcome::Unsupported(feature.into()),
                    None => Outcome::Failed(format!("parse error: {e}")),
                };
            }
        };
        let result = match ev.kind {
            EvalKind::Range { start, end, step } => self.range(ev, &expr, start, end, step),
            EvalKind::Instant { at } => self.instant(ev, &expr, at),
        };
        match result {
            Ok(()) => Outcome::Passed,
            Err(why) => match why.split_once("unexpected error: function ") {
                Some((_, f)) if why.ends_with("is not supported by Amber yet") => Outcome::Unsupported(format!(
                    "the function {}",
                    f.trim_end_matches(" is not supported by Amber yet")
                )),
                _ => Outcome::Failed(why),
            },
        }
    }

    fn range(&self, ev: &Eval, expr: &Expr, start: i64, end: i64, step: i64) -> Check {
        let out =
            self.engine.range_query_expr(&self.storage, &ev.expr, expr, start, end, step, &QueryContext::default());
        let Some(out) = expected_outcome(ev, out)? else { return Ok(()) };
        check_annotations(ev, &out.warnings, &out.infos)?;
        match &out.value {
            Value::Matrix(series) => check_matrix(ev, series, start, step),
            other => Err(format!("range query gave a {}", other.type_name())),
        }
    }

    fn instant(&self, ev: &Eval, expr: &Expr, at: i64) -> Check {
        let t = ev.range_vector.map_or(at, |(_, end, _)| end);
        self.instant_at(ev, expr, t)?;
        if calls_time_function(expr) {
            return Ok(());
        }
        let mut pinned = expr.clone();
        pin_at(&mut pinned, t);
        let times = if t == 0 { vec![-1000, 0, 1000] } else { vec![-10 * t, 0, t / 5, t, 10 * t] };
        for t2 in times {
            self.instant_at(ev, &pinned, t2)
                .map_err(|why| format!("with @ {} at {}: {why}", ms_to_time(t), ms_to_time(t2)))?;
        }
        Ok(())
    }

    fn instant_at(&self, ev: &Eval, expr: &Expr, t: i64) -> Check {
        let out = self.engine.instant_query_expr(&self.storage, &ev.expr, expr, t, &QueryContext::default());
        let Some(out) = expected_outcome(ev, out)? else { return Ok(()) };
        check_annotations(ev, &out.warnings, &out.infos)?;
        match (&ev.expected, &out.value) {
            (Expected::String(want), Value::String { s, .. }) if want == s => {}
            (Expected::Series(lines), Value::String { s, .. }) if lines.is_empty() && s.is_empty() => {}
            (Expected::String(want), got) => return Err(format!("expected string {want:?}, got {got:?}")),
            (Expected::Scalar(want), Value::Scalar(p)) => {
                if !float_eq(*want, p.v) {
                    return Err(format!("expected scalar {want}, got {}", p.v));
                }
            }
            (Expected::Series(lines), Value::Vector(samples)) if ev.range_vector.is_none() => {
                let got: Vec<(&Labels, Got<'_>)> = samples.iter().map(|s| (&s.labels, got(s))).collect();
                check_vector(lines, &got, ev.ordered)?;
            }
            (Expected::Series(_), Value::Matrix(series)) if ev.range_vector.is_some() => {
                let (start, _, step) = ev.range_vector.expect("checked");
                check_matrix(ev, series, start, step)?;
            }
            (_, got) => return Err(format!("unexpected result type {}", got.type_name())),
        }
        self.cross_check(ev, expr, t, &out.value)
    }

    /// The same expression as a range query around `t` must give the same value at `t` (§5.3).
    fn cross_check(&self, ev: &Eval, expr: &Expr, t: i64, instant: &Value) -> Check {
        let text = &ev.expr;
        let skip = ev.range_vector.is_some()
            || matches!(ev.expected, Expected::String(_))
            || ["start()", "end()", "range()", "step()"].iter().any(|f| text.contains(f));
        if skip {
            return Ok(());
        }
        let out = self
            .engine
            .range_query_expr(&self.storage, &ev.expr, expr, t - 60_000, t + 60_000, 60_000, &QueryContext::default())
            .map_err(|e| format!("range-mode cross-check at {}: {e}", ms_to_time(t)))?;
        if ev.ordered {
            return Ok(());
        }
        let Value::Matrix(series) = out.value else {
            return Err(format!("range-mode cross-check gave a {}", out.value.type_name()));
        };
        check_sorted(&series)?;
        let at_t: Vec<(&Labels, Got<'_>)> = series
            .iter()
            .filter_map(|s| {
                let float = s.points.iter().find(|p| p.t == t).map(|p| Got::Float(p.v));
                let histogram = || s.histograms.iter().find(|p| p.t == t).map(|p| Got::Histogram(&p.h));
                float.or_else(histogram).map(|g| (&s.labels, g))
            })
            .collect();
        let checked = match (instant, &ev.expected) {
            (Value::Scalar(_), Expected::Scalar(want)) => match at_t.first() {
                Some((_, Got::Float(v))) if float_eq(*want, *v) => Ok(()),
                got => Err(format!("expected scalar {want}, got {got:?}")),
            },
            (_, Expected::Series(lines)) => check_vector(lines, &at_t, false),
            _ => Ok(()),
        };
        checked.map_err(|e| format!("range-mode cross-check at {}: {e}", ms_to_time(t)))
    }
}

/// Matches the query's success or failure against `expect fail`; `None` when an expected
/// failure happened and there is nothing more to check.
fn expected_outcome(
    ev: &Eval,
    out: amber_promql::Result<amber_promql::QueryOutput>,
) -> Result<Option<amber_promql::QueryOutput>, String> {
    match (out, &ev.fail) {
        (Ok(out), None) => Ok(Some(out)),
        (Ok(_), Some(_)) => Err("expected the query to fail, it succeeded".to_string()),
        (Err(e), None) => Err(format!("unexpected error: {e}")),
        (Err(e), Some(m)) if m.matches(&e.to_string()) => Ok(None),
        (Err(e), Some(m)) => Err(format!("error {:?} does not match {m:?}", e.to_string())),
    }
}

/// Checks warnings or infos against the eval's expectations (§8). Expected texts end with the
/// ` (line:column)` of the expression they are about; for the `@` variants the positions are
/// those of the original text.
fn check_annotations(ev: &Eval, warnings: &[String], infos: &[String]) -> Check {
    let kinds = [
        ("warning", warnings, &ev.warn, ev.no_warn, ev.need_warn),
        ("info", infos, &ev.info, ev.no_info, ev.need_info),
    ];
    for (kind, got, expects, none, need) in kinds {
        if none && !got.is_empty() {
            return Err(format!("expected no {kind}, got {got:?}"));
        }
        if need && got.is_empty() {
            return Err(format!("expected a {kind}, got none"));
        }
        if expects.is_empty() {
            continue;
        }
        for m in expects.iter() {
            if !got.iter().any(|g| m.matches(g)) {
                return Err(format!("expected {kind} {m:?}, got {got:?}"));
            }
        }
        for g in got {
            if !expects.iter().any(|m| m.matches(g)) {
                return Err(format!("unexpected {kind} {g:?}"));
            }
        }
    }
    Ok(())
}

/// A value of a result: a float or a histogram.
#[derive(Debug, Clone, Copy)]
enum Got<'a> {
    Float(f64),
    Histogram(&'a Histogram),
}

fn got(s: &Sample) -> Got<'_> {
    match &s.h {
        Some(h) => Got::Histogram(h),
        None => Got::Float(s.v),
    }
}

/// An instant vector against the expected series lines (§6.2).
fn check_vector(lines: &[SeriesLine], got: &[(&Labels, Got<'_>)], ordered: bool) -> Result<(), String> {
    let mut seen = vec![false; lines.len()];
    for (pos, (labels, v)) in got.iter().enumerate() {
        let i = lines
            .iter()
            .position(|l| &l.labels == *labels)
            .ok_or_else(|| format!("unexpected series {labels} {v:?}"))?;
        if seen[i] {
            return Err(format!("series {labels} appears twice"));
        }
        seen[i] = true;
        if ordered && i != pos {
            return Err(format!("series {labels} at position {}, expected at {}", pos + 1, i + 1));
        }
        match (lines[i].slots.as_slice(), v) {
            ([Slot::Float(want)], Got::Float(v)) if float_eq(*want, *v) => {}
            ([Slot::Histogram { h, hint_set }], Got::Histogram(g)) => {
                histogram_eq(h, *hint_set, g).map_err(|why| format!("{labels}: expected {h:?}, got {g:?}: {why}"))?
            }
            ([want], v) => return Err(format!("{labels}: expected {want:?}, got {v:?}")),
            (other, _) => return Err(format!("{labels}: an instant result line needs one value, has {other:?}")),
        }
    }
    if let Some(i) = seen.iter().position(|s| !s) {
        return Err(format!("missing series {}", lines[i].labels));
    }
    Ok(())
}

/// Histogram equality of the reference runner (§6.4), on compacted histograms.
fn histogram_eq(want: &Histogram, hint_set: bool, got: &Histogram) -> Result<(), String> {
    let buckets = |spans: &[Span], counts: &[f64]| -> BTreeMap<i32, f64> {
        amber_histogram::indexed(spans, counts).filter(|&(_, v)| v != 0.0).collect()
    };
    let same = |a: &BTreeMap<i32, f64>, b: &BTreeMap<i32, f64>| {
        a.len() == b.len() && a.iter().zip(b).all(|((ia, va), (ib, vb))| ia == ib && float_eq(*va, *vb))
    };
    if want.schema != got.schema {
        return Err("schema".into());
    }
    if !float_eq(want.count, got.count) || !float_eq(want.sum, got.sum) || !float_eq(want.zero_count, got.zero_count) {
        return Err("count, sum or zero count".into());
    }
    if want.zero_threshold != got.zero_threshold {
        return Err("zero threshold".into());
    }
    if want.uses_custom_buckets() && want.custom_values != got.custom_values {
        return Err("custom bounds".into());
    }
    if !same(
        &buckets(&want.positive_spans, &want.positive_buckets),
        &buckets(&got.positive_spans, &got.positive_buckets),
    ) || !same(
        &buckets(&want.negative_spans, &want.negative_buckets),
        &buckets(&got.negative_spans, &got.negative_buckets),
    ) {
        return Err("buckets".into());
    }
    if hint_set && want.counter_reset_hint != got.counter_reset_hint {
        return Err("counter reset hint".into());
    }
    Ok(())
}

/// The histograms of a value sequence (slot index, histogram) with the counter-reset hints the
/// TSDB reads back (FORMAT.md §9): a new chunk starts at a detected reset, a change of schema,
/// zero threshold or custom bounds, a float or gauge in between; in a gauge chunk every histogram
/// is a gauge, otherwise the first of a chunk is "unknown" and the rest "not reset".
fn read_back_hints(slots: &[Slot]) -> Vec<(usize, Histogram)> {
    let mut out: Vec<(usize, Histogram)> = Vec::new();
    // The previous sample, when it was a histogram.
    let mut previous: Option<Histogram> = None;
    for (k, slot) in slots.iter().enumerate() {
        match slot {
            Slot::Float(_) => previous = None,
            Slot::Empty => {}
            Slot::Histogram { h, .. } => {
                let mut h = Histogram::clone(h);
                if h.is_stale_marker() {
                    previous = None;
                    out.push((k, h));
                    continue;
                }
                let gauge = h.counter_reset_hint == CounterResetHint::Gauge;
                let continues = previous.as_ref().is_some_and(|p| {
                    let same_layout = p.schema == h.schema
                        && p.zero_threshold == h.zero_threshold
                        && p.custom_values == h.custom_values
                        && p.is_gauge() == gauge;
                    let mut probe = h.clone();
                    probe.counter_reset_hint = CounterResetHint::Unknown;
                    same_layout
                        && (gauge || (h.counter_reset_hint != CounterResetHint::Reset && !probe.detect_reset(p)))
                });
                if !gauge {
                    h.counter_reset_hint =
                        if continues { CounterResetHint::NotReset } else { CounterResetHint::Unknown };
                }
                previous = Some(h.clone());
                out.push((k, h));
            }
        }
    }
    out
}

/// `load_with_nhcb`: the native histograms with custom buckets built from the classic histogram
/// series among `lines` (§3), by labels, one optional histogram per slot.
fn nhcb_series(lines: &[&SeriesLine]) -> Vec<(Labels, Vec<Option<Histogram>>)> {
    #[derive(Default)]
    struct Parts<'a> {
        buckets: Vec<(f64, &'a [Slot])>,
        count: Option<&'a [Slot]>,
        sum: Option<&'a [Slot]>,
    }
    let mut groups: BTreeMap<Labels, Parts<'_>> = BTreeMap::new();
    for line in lines {
        let name = line.labels.get("__name__").unwrap_or("");
        let Some((base, suffix)) =
            ["_bucket", "_count", "_sum"].iter().find_map(|x| name.strip_suffix(x).map(|b| (b.to_string(), *x)))
        else {
            continue;
        };
        let mut labels = line.labels.clone();
        labels.set("__name__", &base);
        labels.set("le", "");
        let parts = groups.entry(labels).or_default();
        match suffix {
            "_bucket" => {
                let Some(le) = line.labels.get("le").and_then(crate::script::float) else { continue };
                if le.is_nan() {
                    continue;
                }
                parts.buckets.push((le, &line.slots));
            }
            "_count" => parts.count = Some(&line.slots),
            _ => parts.sum = Some(&line.slots),
        }
    }
    let value = |slots: &[Slot], k: usize| match slots.get(k) {
        Some(Slot::Float(v)) => Some(*v),
        _ => None,
    };
    let mut out = Vec::new();
    for (labels, mut parts) in groups {
        if parts.buckets.is_empty() {
            continue;
        }
        parts.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let len = parts
            .buckets
            .iter()
            .map(|b| b.1.len())
            .chain(parts.count.map(<[Slot]>::len))
            .chain(parts.sum.map(<[Slot]>::len))
            .max()
            .unwrap_or(0);
        let histograms = (0..len)
            .map(|k| {
                let mut cumulative: Vec<(f64, f64)> =
                    parts.buckets.iter().filter_map(|(le, slots)| value(slots, k).map(|v| (*le, v))).collect();
                let count = parts.count.and_then(|c| value(c, k));
                let sum = parts.sum.and_then(|s| value(s, k));
                if cumulative.is_empty() && count.is_none() && sum.is_none() {
                    return None;
                }
                if cumulative.last().is_none_or(|b| b.0 != f64::INFINITY) {
                    let total = count.or(cumulative.last().map(|b| b.1)).unwrap_or(0.0);
                    cumulative.push((f64::INFINITY, total));
                }
                let mut h = Histogram {
                    schema: amber_histogram::CUSTOM_BUCKETS_SCHEMA,
                    count: count.unwrap_or(cumulative[cumulative.len() - 1].1),
                    sum: sum.unwrap_or(0.0),
                    custom_values: cumulative.iter().map(|b| b.0).filter(|le| le.is_finite()).collect(),
                    ..Default::default()
                };
                let mut previous = 0.0;
                let counts: Vec<f64> = cumulative
                    .iter()
                    .map(|&(_, c)| {
                        let d = c - previous;
                        previous = c;
                        d
                    })
                    .collect();
                h.positive_spans = vec![Span { offset: 0, length: counts.len() as u32 }];
                h.positive_buckets = counts;
                h.compact();
                Some(h)
            })
            .collect();
        out.push((labels, histograms));
    }
    out
}

/// Series must be sorted by label set, compared pair by pair.
fn check_sorted(series: &[amber_promql::Series]) -> Result<(), String> {
    for pair in series.windows(2) {
        let key = |l: &Labels| l.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect::<Vec<_>>();
        if key(&pair[0].labels) > key(&pair[1].labels) {
            return Err(format!("matrix not sorted: {} before {}", pair[0].labels, pair[1].labels));
        }
    }
    Ok(())
}

/// A matrix against the expected series lines, value i at `start + i·step` (§6.3).
fn check_matrix(ev: &Eval, series: &[amber_promql::Series], start: i64, step: i64) -> Check {
    if ev.ordered {
        return Err("an ordered eval cannot have a matrix result".to_string());
    }
    let Expected::Series(lines) = &ev.expected else {
        return Err(format!("expected {:?}, got a matrix", ev.expected));
    };
    check_sorted(series)?;
    let mut seen = vec![false; lines.len()];
    for s in series {
        let i = lines
            .iter()
            .position(|l| l.labels == s.labels)
            .ok_or_else(|| format!("unexpected series {} {:?}", s.labels, s.points))?;
        seen[i] = true;
        let at = |k: usize| start + k as i64 * step;
        let want: Vec<(i64, f64)> = lines[i]
            .slots
            .iter()
            .enumerate()
            .filter_map(|(k, slot)| match slot {
                Slot::Float(v) => Some((at(k), *v)),
                _ => None,
            })
            .collect();
        let same = want.len() == s.points.len()
            && want.iter().zip(&s.points).all(|((t, v), p)| *t == p.t && float_eq(*v, p.v));
        if !same {
            let got: Vec<(i64, f64)> = s.points.iter().map(|p| (p.t, p.v)).collect();
            return Err(format!("{}: expected {want:?}, got {got:?}", s.labels));
        }
        let want: Vec<(i64, &Histogram, bool)> = lines[i]
            .slots
            .iter()
            .enumerate()
            .filter_map(|(k, slot)| match slot {
                Slot::Histogram { h, hint_set } => Some((at(k), h.as_ref(), *hint_set)),
                _ => None,
            })
            .collect();
        if want.len() != s.histograms.len() {
            return Err(format!("{}: expected {} histograms, got {}", s.labels, want.len(), s.histograms.len()));
        }
        for ((t, h, hint_set), p) in want.iter().zip(&s.histograms) {
            if *t != p.t {
                return Err(format!("{}: expected a histogram at {t}, got one at {}", s.labels, p.t));
            }
            histogram_eq(h, *hint_set, &p.h)
                .map_err(|why| format!("{} at {t}: expected {h:?}, got {:?}: {why}", s.labels, p.h))?;
        }
    }
    if let Some(i) = seen.iter().position(|s| !s) {
        return Err(format!("missing series {}", lines[i].labels));
    }
    Ok(())
}
