//! Binary operators: arithmetic, comparison (filtering or `bool`), set operators, the histogram
//! trim operators `</` and `>/`, and vector matching with `on`/`ignoring` and
//! `group_left`/`group_right`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use amber_histogram::{CounterResetHint, Histogram, Trim};

use promql_parser::parser::{BinModifier, BinaryExpr, LabelModifier, PositionRange, VectorMatchCardinality};

use crate::error::{Error, Result};
use crate::eval::Evaluator;
use crate::labels::{Labels, METRIC_NAME};
use crate::value::{Point, Sample, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
    /// `</`: a histogram without its observations above the right-hand value.
    TrimUpper,
    /// `>/`: a histogram without its observations below the right-hand value.
    TrimLower,
}

impl Op {
    fn parse(token: &str) -> Result<Op> {
        Ok(match token.to_ascii_lowercase().as_str() {
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "%" => Op::Mod,
            "^" => Op::Pow,
            "atan2" => Op::Atan2,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            "<" => Op::Lt,
            ">=" => Op::Ge,
            "<=" => Op::Le,
            "and" => Op::And,
            "or" => Op::Or,
            "unless" => Op::Unless,
            "</" => Op::TrimUpper,
            ">/" => Op::TrimLower,
            other => return Err(Error::BadQuery(format!("unknown binary operator {other:?}"))),
        })
    }

    fn is_comparison(self) -> bool {
        matches!(self, Op::Eq | Op::Ne | Op::Gt | Op::Lt | Op::Ge | Op::Le)
    }

    /// The trim operators, defined only for a histogram on the left and a float on the right.
    fn is_trim(self) -> bool {
        matches!(self, Op::TrimUpper | Op::TrimLower)
    }

    /// Arithmetic drops the metric name; comparisons that filter keep it.
    fn drops_name(self) -> bool {
        matches!(self, Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Mod | Op::Pow | Op::Atan2)
    }
}

/// `lhs op rhs` on floats: the value, and for comparisons whether the pair is kept. Set and trim
/// operators are not defined on two floats and never come here.
fn apply(op: Op, l: f64, r: f64) -> (f64, bool) {
    match op {
        Op::Add => (l + r, true),
        Op::Sub => (l - r, true),
        Op::Mul => (l * r, true),
        Op::Div => (l / r, true),
        // Go's math.Mod and Rust's % are both C's fmod.
        Op::Mod => (l % r, true),
        Op::Pow => (l.powf(r), true),
        Op::Atan2 => (l.atan2(r), true),
        Op::Eq => (l, l == r),
        Op::Ne => (l, l != r),
        Op::Gt => (l, l > r),
        Op::Lt => (l, l < r),
        Op::Ge => (l, l >= r),
        Op::Le => (l, l <= r),
        Op::And | Op::Or | Op::Unless | Op::TrimUpper | Op::TrimLower => {
            unreachable!("set and trim operators are not float operations")
        }
    }
}

/// One operand of an element-wise operation: a float or a histogram.
type Operand<'a> = (f64, Option<&'a Arc<Histogram>>);

/// The outcome of an element-wise operation where either side may be a histogram.
struct Applied {
    v: f64,
    h: Option<Arc<Histogram>>,
    keep: bool,
    /// An info that goes with the result.
    info: Option<String>,
}

/// `lhs op rhs` as Prometheus's `vectorElemBinop`. `Err` is the annotation of a pair Prometheus
/// drops: the operator is not defined for these types, the bucket schemas cannot be combined,
/// or counter-reset hints collide (the warnings among these, vector-scalar operations keep).
fn apply_sample(
    op: Op,
    token: &str,
    l: Operand<'_>,
    r: Operand<'_>,
) -> std::result::Result<Applied, (String, Applied)> {
    let type_name = |h: Option<&Arc<Histogram>>| if h.is_some() { "histogram" } else { "float" };
    let dropped = Applied { v: 0.0, h: None, keep: false, info: None };
    let incompatible = || {
        let text = format!(
            "PromQL info: incompatible sample types encountered for binary operator {token:?}: {} {token} {}",
            type_name(l.1),
            type_name(r.1)
        );
        Err((text, Applied { v: 0.0, h: None, keep: false, info: None }))
    };
    let scaled = |h: &Histogram, f: &dyn Fn(&mut Histogram)| {
        let mut h = h.clone();
        f(&mut h);
        h.compact();
        Ok(Applied { v: 0.0, h: Some(Arc::new(h)), keep: true, info: None })
    };
    match (l.1, r.1) {
        (None, None) if op.is_trim() => incompatible(),
        (None, None) => {
            let (v, keep) = apply(op, l.0, r.0);
            Ok(Applied { v, h: None, keep, info: None })
        }
        (None, Some(h)) => match op {
            Op::Mul => scaled(h, &|h| _ = h.mul(l.0)),
            _ => incompatible(),
        },
        (Some(h), None) => match op {
            Op::Mul => scaled(h, &|h| _ = h.mul(r.0)),
            Op::Div => scaled(h, &|h| _ = h.div(r.0)),
            Op::TrimUpper => scaled(h, &|h| _ = h.trim(r.0, Trim::Upper)),
            Op::TrimLower => scaled(h, &|h| _ = h.trim(r.0, Trim::Lower)),
            _ => incompatible(),
        },
        (Some(a), Some(b)) => match op {
            Op::Add | Op::Sub => {
                let mut h = Histogram::clone(a);
                let combined = if op == Op::Add { h.add(b) } else { h.sub(b) };
                let Ok(combined) = combined else {
                    let text =
                        format!("PromQL warning: incompatible bucket layout encountered for binary operator {token}");
                    return Err((text, dropped));
                };
                let operation = if op == Op::Add { "addition" } else { "subtraction" };
                if op == Op::Sub {
                    h.counter_reset_hint = CounterResetHint::Gauge;
                }
                h.compact();
                let info = combined
                    .custom_bounds_reconciled
                    .then(|| format!("PromQL info: mismatched custom buckets were reconciled during {operation}"));
                let applied = Applied { v: 0.0, h: Some(Arc::new(h)), keep: true, info };
                if combined.counter_reset_collision {
                    return Err((
                        format!("PromQL warning: conflicting counter resets during histogram {operation}"),
                        applied,
                    ));
                }
                Ok(applied)
            }
            Op::Eq | Op::Ne => {
                let equal = a.equals(b);
                Ok(Applied { v: 0.0, h: Some(a.clone()), keep: equal == (op == Op::Eq), info: None })
            }
            _ => incompatible(),
        },
    }
}

pub(crate) fn eval(ev: &mut Evaluator<'_>, b: &BinaryExpr, t: i64) -> Result<Value> {
    let token = b.op.to_string();
    let op = Op::parse(&token)?;
    let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    // Annotations point at the whole binary expression, which starts with its left operand.
    let at = PositionRange::new(b.lhs.position_range().start, b.rhs.position_range().end);
    let lhs = ev.eval(&b.lhs, t)?;
    let rhs = ev.eval(&b.rhs, t)?;
    match (lhs, rhs) {
        (Value::Scalar(_), Value::Scalar(_)) if op.is_trim() => {
            Err(Error::Execution(format!("operator {token:?} not allowed for Scalar operations")))
        }
        (Value::Scalar(l), Value::Scalar(r)) => {
            let (v, keep) = apply(op, l.v, r.v);
            let v = if op.is_comparison() { if keep { 1.0 } else { 0.0 } } else { v };
            Ok(Value::Scalar(Point { t, v }))
        }
        (Value::Vector(l), Value::Scalar(r)) => {
            let mut notes = Vec::new();
            let out = vector_scalar(op, &token, l, r.v, false, return_bool, &mut notes);
            ev.annotate(at, notes);
            Ok(Value::Vector(out))
        }
        (Value::Scalar(l), Value::Vector(r)) => {
            let mut notes = Vec::new();
            let out = vector_scalar(op, &token, r, l.v, true, return_bool, &mut notes);
            ev.annotate(at, notes);
            Ok(Value::Vector(out))
        }
        (Value::Vector(l), Value::Vector(r)) => {
            let default = BinModifier {
                card: VectorMatchCardinality::OneToOne,
                matching: None,
                return_bool: false,
                fill_values: Default::default(),
            };
            let m = b.modifier.as_ref().unwrap_or(&default);
            match op {
                Op::And | Op::Or | Op::Unless => Ok(Value::Vector(set_op(op, l, r, m))),
                _ => {
                    let mut notes = Vec::new();
                    let out = vector_vector(op, &token, l, r, m, return_bool, &mut notes)?;
                    ev.annotate(at, notes);
                    Ok(Value::Vector(out))
                }
            }
        }
        (l, r) => Err(Error::Execution(format!(
            "binary operator {} between {} and {} is not supported",
            b.op,
            l.type_name(),
            r.type_name()
        ))),
    }
}

fn vector_scalar(
    op: Op,
    token: &str,
    vector: Vec<Sample>,
    scalar: f64,
    scalar_on_left: bool,
    return_bool: bool,
    notes: &mut Vec<String>,
) -> Vec<Sample> {
    let mut out = Vec::with_capacity(vector.len());
    for s in vector {
        let (mut v, mut h, mut keep) = if s.h.is_none() && !op.is_trim() {
            let (l, r) = if scalar_on_left { (scalar, s.v) } else { (s.v, scalar) };
            let (v, keep) = apply(op, l, r);
            (v, None, keep)
        } else {
            let (sample, scalar) = ((s.v, s.h.as_ref()), (scalar, None));
            let (l, r) = if scalar_on_left { (scalar, sample) } else { (sample, scalar) };
            match apply_sample(op, token, l, r) {
                Ok(a) => (a.v, a.h, a.keep),
                // Warnings do not drop the element here, and are not reported.
                Err((note, a)) if note.starts_with("PromQL warning") => (a.v, a.h, a.keep),
                Err((note, _)) => {
                    notes.push(note);
                    continue;
                }
            }
        };
        // A comparison keeps the vector's value, whichever side it is on.
        if op.is_comparison() && scalar_on_left {
            v = s.v;
            h = s.h.clone();
        }
        if return_bool {
            v = if keep { 1.0 } else { 0.0 };
            h = None;
            keep = true;
        }
        if keep {
            let drop_name = s.drop_name || op.drops_name() || return_bool;
            out.push(Sample { v, h, drop_name, ..s });
        }
    }
    out
}

/// The labels two samples are matched on, as a label set. Only `__name__` is left out by
/// default: `__type__` and `__unit__` must match like any other label.
fn signature(labels: &Labels, matching: Option<&LabelModifier>) -> Labels {
    match matching {
        Some(LabelModifier::Include(on)) => labels.project(&on.labels, true),
        Some(LabelModifier::Exclude(ignoring)) => {
            labels.project(&ignoring.labels, false).project(&[METRIC_NAME.to_string()], false)
        }
        None => labels.project(&[METRIC_NAME.to_string()], false),
    }
}

fn set_op(op: Op, lhs: Vec<Sample>, rhs: Vec<Sample>, m: &BinModifier) -> Vec<Sample> {
    let matching = m.matching.as_ref();
    match op {
        Op::And => {
            let right: HashSet<Labels> = rhs.iter().map(|s| signature(&s.labels, matching)).collect();
            lhs.into_iter().filter(|s| right.contains(&signature(&s.labels, matching))).collect()
        }
        Op::Unless => {
            let right: HashSet<Labels> = rhs.iter().map(|s| signature(&s.labels, matching)).collect();
            lhs.into_iter().filter(|s| !right.contains(&signature(&s.labels, matching))).collect()
        }
        Op::Or => {
            let left: HashSet<Labels> = lhs.iter().map(|s| signature(&s.labels, matching)).collect();
            let mut out = lhs;
            out.extend(rhs.into_iter().filter(|s| !left.contains(&signature(&s.labels, matching))));
            out
        }
        _ => unreachable!("only set operators"),
    }
}

fn vector_vector(
    op: Op,
    token: &str,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    m: &BinModifier,
    return_bool: bool,
    notes: &mut Vec<String>,
) -> Result<Vec<Sample>> {
    let matching = m.matching.as_ref();
    let (include, one_to_many) = match &m.card {
        VectorMatchCardinality::ManyToOne(ls) => (ls.labels.clone(), false),
        VectorMatchCardinality::OneToMany(ls) => (ls.labels.clone(), true),
        _ => (Vec::new(), false),
    };
    let one_to_one = matches!(m.card, VectorMatchCardinality::OneToOne);
    let fill = &m.fill_values;
    if (lhs.is_empty() || rhs.is_empty()) && fill.lhs.is_none() && fill.rhs.is_none() {
        return Ok(Vec::new());
    }
    // The "many" side is iterated; the "one" side is hashed.
    let (many, one) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };
    let mut one_by_sig: HashMap<Labels, Sample> = HashMap::with_capacity(one.len());
    for s in one {
        let sig = signature(&s.labels, matching);
        if let Some(dup) = one_by_sig.get(&sig) {
            let side = if one_to_many { "left" } else { "right" };
            let group = match matching {
                Some(LabelModifier::Include(on)) => s.labels.project(&on.labels, true),
                Some(LabelModifier::Exclude(ignoring)) => {
                    let mut names = ignoring.labels.clone();
                    names.push(METRIC_NAME.into());
                    s.labels.project(&names, false)
                }
                None => s.labels.project(&[METRIC_NAME.to_string()], false),
            };
            // Sorted, so the message is the same whatever order storage returned them in.
            let (first, second) =
                if s.labels <= dup.labels { (&s.labels, &dup.labels) } else { (&dup.labels, &s.labels) };
            return Err(Error::Execution(format!(
                "found duplicate series for the match group {group} on the {side} hand-side of the operation: [{first}, {second}];many-to-many matching not allowed: matching labels must be unique on one side"
            )));
        }
        one_by_sig.insert(sig, s);
    }
    let mut matched: HashMap<Labels, HashSet<Labels>> = HashMap::new();
    let mut used_one: HashSet<Labels> = HashSet::new();
    let mut out = Vec::new();
    // As in Prometheus, `fill_right` stands in for a missing "one"-side sample and `fill_left`
    // for a missing "many"-side sample, with group_right as with group_left.
    let (fill_many, fill_one) = (fill.rhs, fill.lhs);
    for ms in &many {
        let sig = signature(&ms.labels, matching);
        let (one_value, one_histogram, one_labels) = match one_by_sig.get(&sig) {
            Some(os) => {
                used_one.insert(sig.clone());
                (os.v, os.h.as_ref(), Some(&os.labels))
            }
            None => match fill_many {
                Some(v) => (v, None, None),
                None => continue,
            },
        };
        // Ambiguous matches are errors even when the comparison would filter the sample out.
        let labels = result_labels(&ms.labels, one_labels, matching, one_to_one, &include);
        let seen = matched.entry(sig).or_default();
        if one_to_one {
            if !seen.is_empty() {
                return Err(Error::Execution(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
                        .into(),
                ));
            }
        } else if seen.contains(&labels) {
            return Err(Error::Execution(
                "multiple matches for labels: grouping labels must ensure unique matches".into(),
            ));
        }
        let (one, many) = ((one_value, one_histogram), (ms.v, ms.h.as_ref()));
        let (l, r) = if one_to_many { (one, many) } else { (many, one) };
        let Applied { mut v, mut h, keep, info } = match apply_sample(op, token, l, r) {
            Ok(a) => a,
            Err((note, _)) => {
                notes.push(note);
                continue;
            }
        };
        notes.extend(info);
        if return_bool {
            v = if keep { 1.0 } else { 0.0 };
            h = None;
        } else if !keep {
            seen.insert(labels);
            continue;
        }
        seen.insert(labels.clone());
        let drop_name = ms.drop_name || op.drops_name() || return_bool;
        out.push(Sample { labels, t: ms.t, v, h, drop_name });
    }
    if let Some(fill_value) = fill_one {
        for (sig, os) in &one_by_sig {
            if used_one.contains(sig) {
                continue;
            }
            let (one, fill) = ((os.v, os.h.as_ref()), (fill_value, None));
            let (l, r) = if one_to_many { (one, fill) } else { (fill, one) };
            let Applied { mut v, mut h, keep, info } = match apply_sample(op, token, l, r) {
                Ok(a) => a,
                Err((note, _)) => {
                    notes.push(note);
                    continue;
                }
            };
            notes.extend(info);
            if return_bool {
                v = if keep { 1.0 } else { 0.0 };
                h = None;
            } else if !keep {
                continue;
            }
            // There is no "many"-side series to name the result: it gets the match group's labels.
            out.push(Sample { labels: sig.clone(), t: os.t, v, h, drop_name: false });
        }
    }
    Ok(out)
}

/// The result's labels: the "many" side's, reduced to the matching labels for one-to-one `on`,
/// without the ignored ones for one-to-one `ignoring`, plus `group_x` labels from the "one" side.
fn result_labels(
    many: &Labels,
    one: Option<&Labels>,
    matching: Option<&LabelModifier>,
    one_to_one: bool,
    include: &[String],
) -> Labels {
    let mut labels = many.clone();
    if one_to_one {
        match matching {
            Some(LabelModifier::Include(on)) => labels = labels.project(&on.labels, true),
            Some(LabelModifier::Exclude(ignoring)) => labels = labels.project(&ignoring.labels, false),
            None => {}
        }
    }
    if let Some(one) = one {
        for name in include {
            labels.set(name, one.get(name).unwrap_or(""));
        }
    }
    labels
}
