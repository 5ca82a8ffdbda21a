//! `time`, `timestamp`, `start_timestamp`, the calendar functions (`hour`, `day_of_week`, …, all
//! in UTC), and the query's own bounds: `start()`, `end()`, `range()` and `step()`, in seconds.

use chrono::{DateTime, Datelike, Timelike};
use promql_parser::parser::Expr;

use crate::error::Result;
use crate::eval::Evaluator;
use crate::labels::Labels;
use crate::value::{Point, Sample, Value};

pub(crate) fn eval(ev: &mut Evaluator<'_>, name: &str, args: &[&Expr], t: i64) -> Result<Value> {
    match name {
        "time" => Ok(Value::Scalar(Point { t, v: t as f64 / 1000.0 })),
        "start" => Ok(Value::Scalar(Point { t, v: ev.start as f64 / 1000.0 })),
        "end" => Ok(Value::Scalar(Point { t, v: ev.end as f64 / 1000.0 })),
        "range" => Ok(Value::Scalar(Point { t, v: (ev.end - ev.start) as f64 / 1000.0 })),
        "step" => Ok(Value::Scalar(Point { t, v: ev.query_step as f64 / 1000.0 })),
        "timestamp" => {
            let samples = ev.eval_vector_with_sample_times(args[0], t)?;
            Ok(Value::Vector(
                samples
                    .into_iter()
                    .map(|(s, sample_t)| Sample { v: sample_t as f64 / 1000.0, h: None, drop_name: true, ..s })
                    .collect(),
            ))
        }
        "start_timestamp" => {
            // Only a selector's samples have start timestamps: of any other expression the
            // answer is empty, as in Prometheus.
            let Expr::VectorSelector(vs) = args[0] else { return Ok(Value::Vector(Vec::new())) };
            Ok(Value::Vector(
                ev.instant_selector_start_timestamps(vs, t)
                    .into_iter()
                    .map(|(s, start)| Sample { v: start as f64 / 1000.0, h: None, drop_name: true, ..s })
                    .collect(),
            ))
        }
        _ => {
            let samples = match args.first() {
                Some(arg) => ev.eval_vector(arg, t)?,
                None => vec![Sample::float(Labels::default(), t, t as f64 / 1000.0, false)],
            };
            let f = calendar(name);
            Ok(Value::Vector(
                samples
                    .into_iter()
                    .filter(|s| s.h.is_none())
                    .map(|s| Sample { v: f(s.v), drop_name: true, ..s })
                    .collect(),
            ))
        }
    }
}

/// The calendar field `name` of a Unix time in seconds; NaN for times that are not finite.
fn calendar(name: &str) -> impl Fn(f64) -> f64 {
    let name = name.to_string();
    move |secs: f64| {
        if !secs.is_finite() {
            return f64::NAN;
        }
        let Some(d) = DateTime::from_timestamp(secs as i64, 0) else { return f64::NAN };
        match name.as_str() {
            "day_of_month" => d.day() as f64,
            "day_of_week" => d.weekday().num_days_from_sunday() as f64,
            "day_of_year" => d.ordinal() as f64,
            "days_in_month" => {
                let (y, m) = (d.year(), d.month());
                let next = if m == 12 {
                    chrono::NaiveDate::from_ymd_opt(y + 1, 1, 1)
                } else {
                    chrono::NaiveDate::from_ymd_opt(y, m + 1, 1)
                };
                let first = chrono::NaiveDate::from_ymd_opt(y, m, 1);
                match (first, next) {
                    (Some(f), Some(n)) => (n - f).num_days() as f64,
                    _ => f64::NAN,
                }
            }
            "hour" => d.hour() as f64,
            "minute" => d.minute() as f64,
            "month" => d.month() as f64,
            "year" => d.year() as f64,
            _ => unreachable!("dispatched by name"),
        }
    }
}
