//! `info(v, {selector})`: each sample of `v` with the data labels of the info series (by default
//! `target_info`) that share its identifying labels, `instance` and `job` — Prometheus 3's
//! experimental function, as its `promql/info.go` defines it, evaluated at one step at a time.
//!
//! The second argument picks the info metrics (its `__name__` matchers) and the data labels
//! (its other matchers): only labels it names are added, and the info series must match them.
//! A label the sample already has keeps its value. A sample no info series matches is kept
//! as it is, unless a data matcher needs a non-empty value. Samples that are info series
//! themselves are passed through.
//!
//! Prometheus finds the `instance`/`job` values to look for over every step of a range at once;
//! here each step uses the samples it has, which can differ only when a base series that is
//! absent at a step would bring in an info series that collides with another there.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use promql_parser::parser::{AtModifier, Call, Expr, SubqueryExpr, VectorSelector};
use regex::Regex;

use crate::error::{Error, Result};
use crate::eval::{Evaluator, newest_sample, offset_ms, selector_matchers};
use crate::labels::{Labels, METRIC_NAME};
use crate::storage::{MatchOp, Matcher};
use crate::value::{Sample, Value};

const TARGET_INFO: &str = "target_info";
const IDENTIFYING_LABELS: [&str; 2] = ["instance", "job"];
/// Any info metric, for a selection that only excludes names; built once, as every step of every
/// `info()` call reads the selection.
static ANY_INFO: LazyLock<Regex> = LazyLock::new(|| Regex::new("^(?:.+_info)$").expect("a valid regex"));

/// The key the info series of a call are loaded under (no selector has the call's address).
pub(crate) fn key(c: &Call) -> usize {
    c as *const Call as usize
}

/// The matchers of the second argument: the info metrics' `__name__` matchers, with the
/// default (`target_info`, or any `_info` metric when they only exclude), and the data-label
/// matchers.
struct Selection {
    names: Vec<Matcher>,
    data: Vec<Matcher>,
}

fn selection(c: &Call) -> Result<Selection> {
    let written = match c.args.args.get(1).map(|a| a.as_ref()) {
        Some(Expr::VectorSelector(vs)) => selector_matchers(vs)?.swap_remove(0),
        Some(_) => return Err(Error::BadQuery("expected label selectors only".into())),
        None => Vec::new(),
    };
    let (mut names, data): (Vec<Matcher>, Vec<Matcher>) = written.into_iter().partition(|m| m.name == METRIC_NAME);
    let positive = names.iter().any(|m| matches!(m.op, MatchOp::Equal | MatchOp::Regex(_)));
    if names.is_empty() {
        names.push(Matcher { name: METRIC_NAME.into(), op: MatchOp::Equal, value: TARGET_INFO.into() });
    } else if !positive {
        let any_info = ANY_INFO.clone();
        names.insert(0, Matcher { name: METRIC_NAME.into(), op: MatchOp::Regex(any_info), value: ".+_info".into() });
    }
    Ok(Selection { names, data })
}

/// What storage is asked for: the series of the info metrics that match the data matchers.
pub(crate) fn info_matchers(c: &Call) -> Result<Vec<Matcher>> {
    let s = selection(c)?;
    Ok(s.data.into_iter().chain(s.names).collect())
}

/// Where the info series are looked up, relative to a step: the `@` and `offset` of the first
/// selector of the first argument and of the subqueries around it inside the argument
/// (Prometheus's `infoSelectTimestampAndOffset`).
pub(crate) fn reference(arg: &Expr) -> (Option<&AtModifier>, i64) {
    let mut around = Vec::new();
    let Some(vs) = first_selector(arg, &mut around) else { return (None, 0) };
    let (mut at, mut offset) = (vs.at.as_ref(), offset_ms(vs.offset.as_ref()));
    for sq in around.iter().rev() {
        if at.is_some() {
            break;
        }
        offset += offset_ms(sq.offset.as_ref());
        at = sq.at.as_ref();
    }
    (at, offset)
}

/// The first vector selector of `expr` in pre-order, with the subqueries on the way to it.
fn first_selector<'e>(expr: &'e Expr, around: &mut Vec<&'e SubqueryExpr>) -> Option<&'e VectorSelector> {
    match expr {
        Expr::VectorSelector(vs) => Some(vs),
        Expr::MatrixSelector(ms) => Some(&ms.vs),
        Expr::Subquery(sq) => {
            around.push(sq);
            let found = first_selector(&sq.expr, around);
            if found.is_none() {
                around.pop();
            }
            found
        }
        Expr::Paren(p) => first_selector(&p.expr, around),
        Expr::Unary(u) => first_selector(&u.expr, around),
        Expr::Binary(b) => first_selector(&b.lhs, around).or_else(|| first_selector(&b.rhs, around)),
        Expr::Aggregate(a) => {
            first_selector(&a.expr, around).or_else(|| a.param.as_deref().and_then(|p| first_selector(p, around)))
        }
        Expr::Call(c) => c.args.args.iter().find_map(|a| first_selector(a, around)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => None,
    }
}

/// An info series' metric name and identifying labels, which a sample must share with it.
type Signature<'l> = (&'l str, Option<&'l str>, Option<&'l str>);

fn signature<'l>(name: &'l str, labels: &'l Labels) -> Signature<'l> {
    (name, labels.get(IDENTIFYING_LABELS[0]), labels.get(IDENTIFYING_LABELS[1]))
}

pub(crate) fn eval(ev: &mut Evaluator<'_>, c: &Call, args: &[&Expr], t: i64) -> Result<Value> {
    let base = ev.eval_vector(args[0], t)?;
    if base.is_empty() {
        return Ok(Value::Vector(base));
    }
    let Selection { names, data } = selection(c)?;
    let is_info = |labels: &Labels| names.iter().all(|m| m.matches(labels.get(METRIC_NAME).unwrap_or("")));
    let mut wanted: [HashSet<&str>; 2] = Default::default();
    for s in base.iter().filter(|s| !is_info(&s.labels)) {
        for (values, label) in wanted.iter_mut().zip(IDENTIFYING_LABELS) {
            values.extend(s.labels.get(label));
        }
    }

    // The info sample of each signature at this step: the newest, when two are visible.
    let (at, offset) = reference(args[0]);
    let lookup = ev.at_ms(at).unwrap_or(t) - offset;
    let mut chosen: HashMap<Signature<'_>, (&Labels, i64)> = HashMap::new();
    // Every info series looked at with a value at the step counts one read (Prometheus
    // evaluates the info series that share identifying labels with the base series of any step,
    // which at a step where they differ between steps can be more).
    let mut read = 0;
    if wanted.iter().any(|w| !w.is_empty()) {
        for s in ev.series_of_key(key(c)) {
            let shares_ids = wanted
                .iter()
                .zip(IDENTIFYING_LABELS)
                .all(|(values, label)| values.is_empty() || s.labels.get(label).is_some_and(|v| values.contains(v)));
            if !shares_ids {
                continue;
            }
            let Some(newest) = newest_sample(s, lookup, ev.lookback_ms) else { continue };
            read += 1;
            if newest.h.is_some() {
                return Err(Error::Execution(format!(
                    "this should be an info metric, with float samples: {}",
                    s.labels
                )));
            }
            let sig = signature(s.labels.get(METRIC_NAME).unwrap_or(""), &s.labels);
            match chosen.get(&sig) {
                Some(&(_, seen)) if seen > newest.t => {}
                Some(&(existing, seen)) if seen == newest.t => {
                    return Err(Error::Execution(format!(
                        "found duplicate series for info metric: existing {existing} @ {seen}, new {} @ {}",
                        s.labels, newest.t
                    )));
                }
                _ => {
                    chosen.insert(sig, (&s.labels, newest.t));
                }
            }
        }
    }
    let info_names: HashSet<&str> = chosen.keys().map(|sig| sig.0).collect();
    let data_names: HashSet<&str> = data.iter().map(|m| m.name.as_str()).collect();
    let needs_match = data.iter().any(|m| !m.matches(""));

    let mut out = Vec::with_capacity(base.len());
    let mut seen: HashSet<Labels> = HashSet::new();
    for s in &base {
        let labels = if is_info(&s.labels) {
            s.labels.clone()
        } else {
            let mut added: Vec<(&str, &str)> = Vec::new();
            let mut matched = false;
            for name in &info_names {
                let Some((info, _)) = chosen.get(&signature(name, &s.labels)) else { continue };
                matched = true;
                for (k, v) in info.iter() {
                    if k == METRIC_NAME || (!data_names.is_empty() && !data_names.contains(k)) {
                        continue;
                    }
                    match added.iter().find(|(n, _)| *n == k) {
                        Some((_, other)) if *other != v => {
                            return Err(Error::Execution(format!("conflicting label: {k}")));
                        }
                        Some(_) => {}
                        None if s.labels.get(k).is_some() => {}
                        None => added.push((k, v)),
                    }
                }
            }
            if !matched && needs_match {
                continue;
            }
            let mut labels = s.labels.clone();
            for (k, v) in added {
                labels.set(k, v);
            }
            labels
        };
        if !seen.insert(labels.clone()) {
            return Err(Error::Execution("vector cannot contain metrics with the same labelset".into()));
        }
        out.push(Sample { labels, ..s.clone() });
    }
    ev.count_read(read);
    Ok(Value::Vector(out))
}
