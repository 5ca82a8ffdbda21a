//! `deriv`, `predict_linear` (least-squares regression) and `double_exponential_smoothing`.

use promql_parser::parser::Expr;

use super::per_series;
use crate::error::{Error, Result};
use crate::eval::Evaluator;
use crate::numeric::kahan_sum_inc;
use crate::value::{Point, Value};

pub(crate) fn eval(ev: &mut Evaluator<'_>, name: &str, args: &[&Expr], t: i64) -> Result<Value> {
    match name {
        "deriv" => per_series(ev, args[0], t, false, |p| (p.len() >= 2).then(|| linear_regression(p, p[0].t).0)),
        "predict_linear" => {
            let seconds = ev.eval_scalar(args[1], t)?;
            // Predicts from the evaluation time, even when `@` or `offset` moved the range.
            per_series(ev, args[0], t, false, |p| {
                (p.len() >= 2).then(|| {
                    let (slope, intercept) = linear_regression(p, t);
                    slope * seconds + intercept
                })
            })
        }
        _ => {
            let sf = ev.eval_scalar(args[1], t)?;
            let tf = ev.eval_scalar(args[2], t)?;
            if sf <= 0.0 || sf >= 1.0 || sf.is_nan() {
                return Err(Error::Execution(format!("invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}")));
            }
            if tf <= 0.0 || tf >= 1.0 || tf.is_nan() {
                return Err(Error::Execution(format!("invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}")));
            }
            per_series(ev, args[0], t, false, |p| smooth(p, sf, tf))
        }
    }
}

/// Least-squares slope (per second) and intercept at `intercept_time`, with compensated sums.
fn linear_regression(points: &[Point], intercept_time: i64) -> (f64, f64) {
    let init_y = points[0].v;
    let const_y = points.iter().all(|p| p.v == init_y);
    if const_y {
        return if init_y.is_infinite() { (f64::NAN, f64::NAN) } else { (0.0, init_y) };
    }
    let (mut n, mut sum_x, mut cx, mut sum_y, mut cy, mut sum_xy, mut cxy, mut sum_x2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for p in points {
        n += 1.0;
        let x = (p.t - intercept_time) as f64 / 1e3;
        (sum_x, cx) = kahan_sum_inc(x, sum_x, cx);
        (sum_y, cy) = kahan_sum_inc(p.v, sum_y, cy);
        (sum_xy, cxy) = kahan_sum_inc(x * p.v, sum_xy, cxy);
        (sum_x2, cx2) = kahan_sum_inc(x * x, sum_x2, cx2);
    }
    let (sum_x, sum_y, sum_xy, sum_x2) = (sum_x + cx, sum_y + cy, sum_xy + cxy, sum_x2 + cx2);
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    (slope, sum_y / n - slope * sum_x / n)
}

/// Holt's linear (double exponential) smoothing; the last smoothed value.
fn smooth(points: &[Point], sf: f64, tf: f64) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (mut s0, mut s1) = (0.0, points[0].v);
    let mut b = points[1].v - points[0].v;
    for (i, p) in points.iter().enumerate().skip(1) {
        let x = sf * p.v;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        (s0, s1) = (s1, x + y);
    }
    Some(s1)
}
