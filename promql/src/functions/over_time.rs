//! `<aggregation>_over_time`, `changes` and `resets`: one value per series from the samples of
//! a range.

use promql_parser::parser::Expr;

use super::per_series;
use crate::error::Result;
use crate::eval::Evaluator;
use crate::numeric::{RunningMean, kahan_sum_inc, quantile};
use crate::value::{Point, Value, format_float};

pub(crate) fn eval(ev: &mut Evaluator<'_>, name: &str, args: &[&Expr], t: i64) -> Result<Value> {
    match name {
        "quantile_over_time" => {
            let q = ev.eval_scalar(args[0], t)?;
            if q.is_nan() || !(0.0..=1.0).contains(&q) {
                ev.warnings.insert(format!(
                    "PromQL warning: quantile value should be between 0 and 1, got {}",
                    format_float(q)
                ));
            }
            per_series(ev, args[1], t, false, |p| Some(quantile(q, &mut values(p))))
        }
        "last_over_time" => per_series(ev, args[0], t, true, |p| p.last().map(|p| p.v)),
        "first_over_time" => per_series(ev, args[0], t, true, |p| p.first().map(|p| p.v)),
        _ => per_series(ev, args[0], t, false, |p| over(name, p)),
    }
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
        "ts_of_first_over_time" => first.t as f64 / 1000.0,
        "ts_of_last_over_time" => points[points.len() - 1].t as f64 / 1000.0,
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
