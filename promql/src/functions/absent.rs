//! `absent` and `absent_over_time`: a 1-valued sample when the argument has no data, labelled
//! with the selector's equality matchers.

use promql_parser::label::MatchOp;
use promql_parser::parser::Expr;

use crate::error::Result;
use crate::eval::Evaluator;
use crate::labels::{Labels, METRIC_NAME};
use crate::value::{Sample, Value};

pub(crate) fn eval(ev: &mut Evaluator<'_>, name: &str, args: &[&Expr], t: i64) -> Result<Value> {
    let present = if name == "absent" {
        !ev.eval_vector(args[0], t)?.is_empty()
    } else {
        !ev.eval_matrix(args[0], t)?.is_empty()
    };
    if present {
        return Ok(Value::Vector(Vec::new()));
    }
    Ok(Value::Vector(vec![Sample::float(absent_labels(args[0]), t, 1.0, false)]))
}

/// Labels from the equality matchers of the argument's selector, except the metric name; a
/// label matched twice is left out.
fn absent_labels(arg: &Expr) -> Labels {
    let vs = match arg {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::default(),
    };
    let mut all: Vec<(String, String)> =
        vs.matchers.matchers.iter().map(|m| (m.name.clone(), m.value.clone())).collect();
    if let Some(n) = &vs.name {
        all.push((METRIC_NAME.to_string(), n.clone()));
    }
    let equal: Vec<(String, String)> = vs
        .matchers
        .matchers
        .iter()
        .filter(|m| matches!(m.op, MatchOp::Equal))
        .map(|m| (m.name.clone(), m.value.clone()))
        .filter(|(n, _)| n != METRIC_NAME && all.iter().filter(|(a, _)| a == n).count() == 1)
        .collect();
    Labels::new(equal)
}
