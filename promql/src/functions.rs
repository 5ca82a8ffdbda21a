//! PromQL functions: the dispatch from a call to its family, one file per family.

mod absent;
mod histogram;
pub(crate) mod info;
mod labels;
mod math;
mod native;
pub(crate) mod over_time;
pub(crate) mod rate;
mod regression;
mod sort;
mod time;

use promql_parser::parser::{Call, Expr};

use std::sync::Arc;

use crate::by_series::SeriesPoints;
use crate::error::{Error, Result};
use crate::eval::Evaluator;
use crate::labels::{Labels, METRIC_NAME};
use crate::value::{Histogram, HistogramPoint, Point, Sample, Series, Starts, Value};

pub(crate) fn call(ev: &mut Evaluator<'_>, c: &Call, t: i64) -> Result<Value> {
    let args: Vec<&Expr> = c.args.args.iter().map(|a| a.as_ref()).collect();
    let name = c.func.name;
    if let Some(ms) = crate::extended::extended_argument(c)? {
        if matches!(name, "rate" | "increase") {
            rate::warn_if_not_counter(ev, args[0], t, name)?;
        }
        return crate::extended::call(ev, name, args[0], ms, t);
    }
    match name {
        "rate" | "increase" | "delta" | "irate" | "idelta" => rate::eval(ev, name, &args, t),
        "avg_over_time"
        | "sum_over_time"
        | "count_over_time"
        | "min_over_time"
        | "max_over_time"
        | "stddev_over_time"
        | "stdvar_over_time"
        | "last_over_time"
        | "first_over_time"
        | "present_over_time"
        | "quantile_over_time"
        | "mad_over_time"
        | "changes"
        | "resets"
        | "ts_of_min_over_time"
        | "ts_of_max_over_time"
        | "ts_of_first_over_time"
        | "ts_of_last_over_time" => over_time::eval(ev, name, &args, t),
        "deriv" | "predict_linear" | "double_exponential_smoothing" | "holt_winters" => {
            regression::eval(ev, name, &args, t)
        }
        "abs" | "ceil" | "floor" | "exp" | "sqrt" | "ln" | "log2" | "log10" | "sgn" | "round" | "clamp"
        | "clamp_min" | "clamp_max" | "sin" | "cos" | "tan" | "asin" | "acos" | "atan" | "sinh" | "cosh" | "tanh"
        | "asinh" | "acosh" | "atanh" | "deg" | "rad" | "pi" | "vector" | "scalar" | "min_of" | "max_of" => {
            math::eval(ev, name, &args, t)
        }
        "time" | "timestamp" | "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "hour" | "minute"
        | "month" | "year" | "start" | "end" | "range" | "step" | "start_timestamp" => time::eval(ev, name, &args, t),
        "label_replace" | "label_join" => labels::eval(ev, name, &args, t),
        "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc" => sort::eval(ev, c, &args, t),
        "absent" | "absent_over_time" => absent::eval(ev, name, &args, t),
        "histogram_quantile" | "histogram_quantiles" | "histogram_fraction" => histogram::eval(ev, name, &args, t),
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev" | "histogram_stdvar" => {
            native::eval(ev, name, &args, t)
        }
        "info" => info::eval(ev, c, &args, t),
        other => Err(Error::Execution(format!("function {other:?} is not supported by Amber yet"))),
    }
}

/// `expr` without the parentheses around it.
pub(crate) fn without_parens(mut expr: &Expr) -> &Expr {
    while let Expr::Paren(p) = expr {
        expr = &p.expr;
    }
    expr
}

/// Whether a call is one of the `rate` family (`rate`, `increase`, `delta`, `irate`, `idelta`).
pub(crate) fn is_rate_family(c: &Call) -> bool {
    matches!(c.func.name, "rate" | "increase" | "delta" | "irate" | "idelta")
}

/// A call evaluated series by series over all of a range query's steps (see [`crate::by_series`]),
/// for the calls that allow it: a `rate`-family function over a plain matrix selector, and
/// `histogram_quantile` with a literal quantile over an expression that allows it. `None` for
/// every other call.
pub(crate) fn call_by_series(
    ev: &mut Evaluator<'_>,
    c: &Call,
    steps: &[i64],
    threads: usize,
) -> Option<Result<Vec<SeriesPoints>>> {
    let args: Vec<&Expr> = c.args.args.iter().map(|a| a.as_ref()).collect();
    if !matches!(crate::extended::extended_argument(c), Ok(None)) {
        return None;
    }
    match (c.func.name, args.as_slice()) {
        (name, [arg]) if is_rate_family(c) => rate::series_points(ev, name, arg, steps, threads),
        ("histogram_quantile", [q, arg]) => histogram::quantile_by_series(ev, q, arg, steps, threads),
        _ => None,
    }
}

/// What a function gives for one series or sample.
pub(crate) enum Out {
    Float(f64),
    Histogram(Histogram),
}

impl Out {
    pub(crate) fn sample(self, labels: Labels, t: i64, drop_name: bool) -> Sample {
        match self {
            Out::Float(v) => Sample::float(labels, t, v, drop_name),
            Out::Histogram(h) => Sample { labels, t, v: 0.0, h: Some(Arc::new(h)), drop_name },
        }
    }
}

/// The metric name of a label set, for annotations.
pub(crate) fn metric_name(labels: &Labels) -> &str {
    labels.get(METRIC_NAME).unwrap_or("")
}

/// Applies `f` to every series of a range-vector argument; `None` drops the series.
/// `keeps_name` is for the few functions (`last_over_time`, `first_over_time`) whose result is
/// still a sample of the input metric. Only float samples are looked at; series without any are
/// left out, and histograms beside them are ignored with Prometheus's info.
pub(crate) fn per_series(
    ev: &mut Evaluator<'_>,
    arg: &Expr,
    t: i64,
    keeps_name: bool,
    mut f: impl FnMut(&[Point]) -> Option<f64>,
) -> Result<Value> {
    per_series_mixed(ev, arg, t, keeps_name, |labels, points, histograms, notes| {
        if points.is_empty() {
            return None;
        }
        if !histograms.is_empty() {
            notes.push(format!(
                "PromQL info: ignored histograms in a range containing both floats and histograms for metric name {:?}",
                metric_name(labels)
            ));
        }
        f(points).map(Out::Float)
    })
}

/// Like [`per_series`] for functions defined on histograms too: `f` gets the series' labels, its
/// float and histogram samples in the range, and a list for the annotations it gives.
pub(crate) fn per_series_mixed(
    ev: &mut Evaluator<'_>,
    arg: &Expr,
    t: i64,
    keeps_name: bool,
    mut f: impl FnMut(&Labels, &[Point], &[HistogramPoint], &mut Vec<String>) -> Option<Out>,
) -> Result<Value> {
    per_series_with_starts(ev, arg, t, keeps_name, |labels, points, histograms, _, notes| {
        f(labels, points, histograms, notes)
    })
}

/// Like [`per_series_mixed`] for the functions that read start timestamps (`rate`, `increase`,
/// `irate`, `resets`): `f` also gets the window's start timestamps. Only a matrix selector
/// argument has them; a subquery's series have none, which is how Prometheus cuts their
/// propagation.
pub(crate) fn per_series_with_starts(
    ev: &mut Evaluator<'_>,
    arg: &Expr,
    t: i64,
    keeps_name: bool,
    mut f: impl FnMut(&Labels, &[Point], &[HistogramPoint], Starts<'_>, &mut Vec<String>) -> Option<Out>,
) -> Result<Value> {
    let mut notes = Vec::new();
    let mut out = Vec::new();
    if let Expr::MatrixSelector(ms) = without_parens(arg) {
        // Borrow the loaded points instead of building a matrix for this step.
        out.reserve(ev.series_of(&ms.vs).len());
        ev.for_each_range(ms, t, |s, points, histograms, starts| {
            if let Some(v) = f(&s.labels, points, histograms, starts, &mut notes) {
                let drop_name = if keeps_name { s.drop_name } else { true };
                out.push(v.sample(s.labels.clone(), t, drop_name));
            }
        });
    } else {
        let matrix: Vec<Series> = ev.eval_matrix(arg, t)?;
        out.reserve(matrix.len());
        for s in matrix {
            let starts = Starts { floats: &s.start_timestamps.floats, histograms: &s.start_timestamps.histograms };
            if let Some(v) = f(&s.labels, &s.points, &s.histograms, starts, &mut notes) {
                let drop_name = if keeps_name { s.drop_name } else { true };
                out.push(v.sample(s.labels, t, drop_name));
            }
        }
    }
    ev.annotate(arg.position_range(), notes);
    Ok(Value::Vector(out))
}

/// Applies `f` to every sample of an instant-vector argument, dropping the metric name.
/// Histogram samples are left out, as Prometheus's float functions leave them.
pub(crate) fn per_sample(ev: &mut Evaluator<'_>, arg: &Expr, t: i64, f: impl Fn(f64) -> f64) -> Result<Value> {
    let samples = ev.eval_vector(arg, t)?;
    Ok(Value::Vector(
        samples.into_iter().filter(|s| s.h.is_none()).map(|s| Sample { v: f(s.v), drop_name: true, ..s }).collect(),
    ))
}

/// The value of a string argument (a literal).
pub(crate) fn string_arg(ev: &mut Evaluator<'_>, arg: &Expr, t: i64) -> Result<String> {
    match ev.eval(arg, t)? {
        Value::String { s, .. } => Ok(s),
        other => Err(Error::Execution(format!("expected string, got {}", other.type_name()))),
    }
}
