//! Element-wise math (`abs`, `ceil`, `round`, `clamp*`, logarithms, trigonometry), `pi`,
//! `vector` and `scalar`.

use promql_parser::parser::Expr;

use super::per_sample;
use crate::error::Result;
use crate::eval::Evaluator;
use crate::labels::Labels;
use crate::numeric::{go_max, go_min};
use crate::value::{Point, Sample, Value};

pub(crate) fn eval(ev: &mut Evaluator<'_>, name: &str, args: &[&Expr], t: i64) -> Result<Value> {
    let f: fn(f64) -> f64 = match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sgn" => |v| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        },
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "deg" => |v| v * 180.0 / std::f64::consts::PI,
        "rad" => |v| v * std::f64::consts::PI / 180.0,
        "pi" => return Ok(Value::Scalar(Point { t, v: std::f64::consts::PI })),
        "min_of" | "max_of" => {
            let (a, b) = (ev.eval_scalar(args[0], t)?, ev.eval_scalar(args[1], t)?);
            // Go's math.Min/Max: NaN wins over any number.
            let v = if a.is_nan() || b.is_nan() {
                f64::NAN
            } else if name == "min_of" {
                a.min(b)
            } else {
                a.max(b)
            };
            return Ok(Value::Scalar(Point { t, v }));
        }
        "vector" => {
            let v = ev.eval_scalar(args[0], t)?;
            return Ok(Value::Vector(vec![Sample::float(Labels::default(), t, v, false)]));
        }
        "scalar" => {
            // The one float sample's value; histograms do not count.
            let samples = ev.eval_vector(args[0], t)?;
            let mut floats = samples.iter().filter(|s| s.h.is_none());
            let v = match (floats.next(), floats.next()) {
                (Some(s), None) => s.v,
                _ => f64::NAN,
            };
            return Ok(Value::Scalar(Point { t, v }));
        }
        "round" => {
            let to_nearest = if args.len() > 1 { ev.eval_scalar(args[1], t)? } else { 1.0 };
            // Dividing by the inverse is what Prometheus does; it keeps e.g. round(x, 0.1) exact.
            let inverse = 1.0 / to_nearest;
            return per_sample(ev, args[0], t, move |v| (v * inverse + 0.5).floor() / inverse);
        }
        "clamp" => {
            let min = ev.eval_scalar(args[1], t)?;
            let max = ev.eval_scalar(args[2], t)?;
            if max < min {
                return Ok(Value::Vector(Vec::new()));
            }
            return per_sample(ev, args[0], t, move |v| go_max(min, go_min(max, v)));
        }
        "clamp_min" => {
            let min = ev.eval_scalar(args[1], t)?;
            return per_sample(ev, args[0], t, move |v| go_max(min, v));
        }
        "clamp_max" => {
            let max = ev.eval_scalar(args[1], t)?;
            return per_sample(ev, args[0], t, move |v| go_min(max, v));
        }
        _ => unreachable!("dispatched by name"),
    };
    per_sample(ev, args[0], t, f)
}
