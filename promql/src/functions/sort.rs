//! `sort`, `sort_desc`, `sort_by_label` and `sort_by_label_desc`. Only instant queries keep the
//! order; range query results are always sorted by labels.

use std::cmp::Ordering;

use promql_parser::parser::{Call, Expr};

use super::string_arg;
use crate::error::Result;
use crate::eval::Evaluator;
use crate::value::Value;

pub(crate) fn eval(ev: &mut Evaluator<'_>, c: &Call, args: &[&Expr], t: i64) -> Result<Value> {
    let name = c.func.name;
    if ev.start != ev.end {
        // Prometheus names `sort` in this warning whichever of the four was called.
        ev.note(
            c.pos_range,
            "PromQL warning: sort is ineffective for range queries since results are always ordered by labels".into(),
        );
    }
    let mut samples = ev.eval_vector(args[0], t)?;
    match name {
        // Histograms are left out and NaN sorts last either way, as in Prometheus.
        "sort" | "sort_desc" => {
            samples.retain(|s| s.h.is_none());
            samples.sort_by(|a, b| nan_last(a.v, b.v, name == "sort_desc"));
        }
        _ => {
            let mut names = Vec::new();
            for a in &args[1..] {
                names.push(string_arg(ev, a, t)?);
            }
            let desc = name == "sort_by_label_desc";
            samples.sort_by(|a, b| {
                for n in &names {
                    let o = natural_cmp(a.labels.get(n).unwrap_or(""), b.labels.get(n).unwrap_or(""));
                    if o != Ordering::Equal {
                        return if desc { o.reverse() } else { o };
                    }
                }
                let o = a.labels.cmp(&b.labels);
                if desc { o.reverse() } else { o }
            });
        }
    }
    Ok(Value::Vector(samples))
}

fn nan_last(a: f64, b: f64, desc: bool) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ if desc => b.partial_cmp(&a).expect("not NaN"),
        _ => a.partial_cmp(&b).expect("not NaN"),
    }
}

/// Natural order: runs of digits compare as numbers, the rest byte by byte.
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].is_ascii_digit() && b[j].is_ascii_digit() {
            let si = i;
            while i < a.len() && a[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let na = std::str::from_utf8(&a[si..i]).unwrap_or("").trim_start_matches('0');
            let nb = std::str::from_utf8(&b[sj..j]).unwrap_or("").trim_start_matches('0');
            let o = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if o != Ordering::Equal {
                return o;
            }
        } else {
            if a[i] != b[j] {
                return a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
    }
    (a.len() - i).cmp(&(b.len() - j))
}
