//! Functions of native histogram samples: `histogram_count`, `histogram_sum`, `histogram_avg`,
//! `histogram_stddev`, `histogram_stdvar`. Float samples are left out.

use promql_parser::parser::Expr;

use crate::error::Result;
use crate::eval::Evaluator;
use crate::value::{Histogram, Sample, Value};

pub(crate) fn eval(ev: &mut Evaluator<'_>, name: &str, args: &[&Expr], t: i64) -> Result<Value> {
    let f: fn(&Histogram) -> f64 = match name {
        "histogram_count" => |h| h.count,
        "histogram_sum" => |h| h.sum,
        "histogram_avg" => |h| h.sum / h.count,
        "histogram_stddev" => |h| h.variance().sqrt(),
        _ => Histogram::variance,
    };
    let samples = ev.eval_vector(args[0], t)?;
    Ok(Value::Vector(
        samples
            .into_iter()
            .filter_map(|s| {
                let v = f(s.h.as_deref()?);
                Some(Sample { v, h: None, drop_name: true, ..s })
            })
            .collect(),
    ))
}
