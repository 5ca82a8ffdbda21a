//! `label_replace` and `label_join`.

use promql_parser::parser::Expr;
use regex::Regex;

use super::string_arg;
use crate::error::{Error, Result};
use crate::eval::Evaluator;
use crate::labels::METRIC_NAME;
use crate::value::{Sample, Value};

pub(crate) fn eval(ev: &mut Evaluator<'_>, name: &str, args: &[&Expr], t: i64) -> Result<Value> {
    let samples = ev.eval_vector(args[0], t)?;
    let dst = string_arg(ev, args[1], t)?;
    if dst.is_empty() {
        return Err(Error::Execution(format!("invalid destination label name in {name}(): {dst}")));
    }
    let mut out: Vec<Sample> = Vec::with_capacity(samples.len());
    if name == "label_replace" {
        let replacement = string_arg(ev, args[2], t)?;
        let src = string_arg(ev, args[3], t)?;
        let pattern = string_arg(ev, args[4], t)?;
        let re = Regex::new(&format!("^(?s:{pattern})$"))
            .map_err(|_| Error::Execution(format!("invalid regular expression in label_replace(): {pattern}")))?;
        for mut s in samples {
            let value = s.labels.get(&src).unwrap_or("").to_string();
            if let Some(caps) = re.captures(&value) {
                let mut result = String::new();
                caps.expand(&replacement, &mut result);
                s.labels.set(&dst, &result);
                if dst == METRIC_NAME {
                    s.drop_name = false;
                }
            }
            out.push(s);
        }
    } else {
        let separator = string_arg(ev, args[2], t)?;
        let mut sources = Vec::new();
        for a in &args[3..] {
            sources.push(string_arg(ev, a, t)?);
        }
        for mut s in samples {
            let joined: Vec<&str> = sources.iter().map(|src| s.labels.get(src).unwrap_or("")).collect();
            let joined = joined.join(&separator);
            s.labels.set(&dst, &joined);
            if dst == METRIC_NAME {
                s.drop_name = false;
            }
            out.push(s);
        }
    }
    Ok(Value::Vector(out))
}
