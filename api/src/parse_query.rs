//! `GET|POST /api/v1/parse_query`: a query's syntax tree in the JSON Prometheus gives
//! (`web/api/v1/translate_ast.go`), which its query explainer, Grafana's query builder and
//! PromLens-style tools read.
//!
//! The tree is the parser's, before evaluation: durations written as expressions are still
//! expressions (`range` is 0 beside a `rangeExpr`), `@ start()` has no timestamp yet. Two shapes
//! differ from Prometheus's because our parser does not keep them: a unary plus is not a node (its
//! operand stands alone), and a negated number literal is the negative number (as Prometheus
//! folds it too).

use amber_promql::value::format_float;
use axum::body::Bytes;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use promql_parser::label::Matcher;
use promql_parser::parser::token::{T_LAND, T_LOR, T_LUNLESS};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{
    self, AtModifier, BinaryExpr, DurationExpr, Expr, LabelModifier, Offset, VectorMatchCardinality, VectorSelector,
};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::params::Params;

pub async fn handler(uri: Uri, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let params = Params::from_request(&uri, &headers, &body);
    let query = crate::query::query_string(&params)?;
    let expr = parser::parse(&query).map_err(|e| ApiError::bad_data(format!("invalid parameter \"query\": {e}")))?;
    Ok(crate::response::success(tree(&expr)?, Vec::new()))
}

/// Prometheus's `translateAST`.
fn tree(expr: &Expr) -> Result<Value, ApiError> {
    Ok(match expr {
        Expr::Aggregate(a) => {
            let (grouping, without) = match &a.modifier {
                Some(LabelModifier::Include(l)) => (l.labels.clone(), false),
                Some(LabelModifier::Exclude(l)) => (l.labels.clone(), true),
                None => (Vec::new(), false),
            };
            json!({
                "type": "aggregation",
                "op": a.op.to_string(),
                "expr": tree(&a.expr)?,
                "param": a.param.as_deref().map(tree).transpose()?,
                "grouping": grouping,
                "without": without,
            })
        }
        Expr::Binary(b) => json!({
            "type": "binaryExpr",
            "op": b.op.to_string(),
            "lhs": tree(&b.lhs)?,
            "rhs": tree(&b.rhs)?,
            "matching": matching(b),
            "bool": b.modifier.as_ref().is_some_and(|m| m.return_bool),
        }),
        Expr::Call(c) => json!({
            "type": "call",
            "func": {
                "name": c.func.name,
                "argTypes": c.func.arg_types.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "variadic": c.func.variadic,
                "returnType": c.func.return_type.to_string(),
            },
            "args": c.args.args.iter().map(|a| tree(a)).collect::<Result<Vec<_>, _>>()?,
        }),
        Expr::MatrixSelector(ms) => {
            let mut node = selector(&ms.vs, "matrixSelector")?;
            node["range"] = json!(ms.range.as_millis() as i64);
            node["rangeExpr"] = duration_tree(ms.range_expr.as_ref());
            node
        }
        Expr::Subquery(sq) => {
            let (timestamp, start_or_end) = at(sq.at.as_ref());
            json!({
                "type": "subquery",
                "expr": tree(&sq.expr)?,
                "range": sq.range.as_millis() as i64,
                "rangeExpr": duration_tree(sq.range_expr.as_ref()),
                "offset": offset_ms(sq.offset.as_ref()),
                "offsetExpr": duration_tree(sq.offset_expr.as_ref()),
                "step": sq.step.map_or(0, |s| s.as_millis() as i64),
                "stepExpr": duration_tree(sq.step_expr.as_ref()),
                "timestamp": timestamp,
                "startOrEnd": start_or_end,
            })
        }
        Expr::NumberLiteral(n) => json!({ "type": "numberLiteral", "val": format_float(n.val) }),
        Expr::Paren(p) => json!({ "type": "parenExpr", "expr": tree(&p.expr)? }),
        Expr::StringLiteral(s) => json!({ "type": "stringLiteral", "val": s.val }),
        Expr::Unary(u) => json!({ "type": "unaryExpr", "op": "-", "expr": tree(&u.expr)? }),
        Expr::VectorSelector(vs) => selector(vs, "vectorSelector")?,
        Expr::Extension(_) => return Err(ApiError::bad_data("invalid parameter \"query\": unsupported expression")),
    })
}

/// A vector selector's node (a matrix selector adds its range).
fn selector(vs: &VectorSelector, kind: &str) -> Result<Value, ApiError> {
    if !vs.matchers.or_matchers.is_empty() {
        // Prometheus has no `or` between matchers, so its tree has no place for one.
        return Err(ApiError::bad_data(
            "invalid parameter \"query\": a selector with `or` between its matchers has no Prometheus syntax tree",
        ));
    }
    // Prometheus adds the matcher for a name written outside the braces after the others.
    let mut matchers: Vec<Value> = vs.matchers.matchers.iter().map(matcher).collect();
    if let Some(name) = &vs.name {
        matchers.push(json!({ "name": "__name__", "value": name, "type": "=" }));
    }
    let (timestamp, start_or_end) = at(vs.at.as_ref());
    Ok(json!({
        "type": kind,
        "name": vs.name.as_deref().unwrap_or(""),
        "offset": offset_ms(vs.offset.as_ref()),
        "offsetExpr": duration_tree(vs.offset_expr.as_ref()),
        "matchers": matchers,
        "timestamp": timestamp,
        "startOrEnd": start_or_end,
        "anchored": vs.anchored,
        "smoothed": vs.smoothed,
    }))
}

fn matcher(m: &Matcher) -> Value {
    json!({ "name": m.name, "value": m.value, "type": m.op.to_string() })
}

/// Vector matching, for a binary expression between two vectors (`null` otherwise): set
/// operators match many to many.
fn matching(b: &BinaryExpr) -> Value {
    if b.lhs.value_type() != ValueType::Vector || b.rhs.value_type() != ValueType::Vector {
        return Value::Null;
    }
    let set_operator = matches!(b.op.id(), T_LAND | T_LOR | T_LUNLESS);
    let modifier = b.modifier.as_ref();
    let card = modifier.map_or(&VectorMatchCardinality::OneToOne, |m| &m.card);
    let card_name = match card {
        VectorMatchCardinality::OneToOne if set_operator => "many-to-many",
        VectorMatchCardinality::OneToOne => "one-to-one",
        VectorMatchCardinality::ManyToOne(_) => "many-to-one",
        VectorMatchCardinality::OneToMany(_) => "one-to-many",
        VectorMatchCardinality::ManyToMany => "many-to-many",
    };
    let (labels, on) = match modifier.and_then(|m| m.matching.as_ref()) {
        Some(LabelModifier::Include(l)) => (l.labels.clone(), true),
        Some(LabelModifier::Exclude(l)) => (l.labels.clone(), false),
        None => (Vec::new(), false),
    };
    let fill = modifier.map(|m| &m.fill_values);
    json!({
        "card": card_name,
        "labels": labels,
        "on": on,
        "include": card.labels().map(|l| l.labels.clone()).unwrap_or_default(),
        "fillValues": {
            "lhs": fill.and_then(|f| f.lhs),
            "rhs": fill.and_then(|f| f.rhs),
        },
    })
}

/// Prometheus's `translateDurationExpr`: `null` when the duration was a plain literal.
fn duration_tree(d: Option<&DurationExpr>) -> Value {
    match d {
        None => Value::Null,
        Some(d) => duration_node(d, false),
    }
}

fn duration_node(d: &DurationExpr, wrapped: bool) -> Value {
    let op = |op: &str, lhs: Value, rhs: Value| json!({ "type": "durationExpr", "op": op, "lhs": lhs, "rhs": rhs, "wrapped": wrapped });
    match d {
        // Prometheus wraps a parenthesised literal in a unary plus to mark the parentheses.
        DurationExpr::Number { seconds, duration, .. } if wrapped => op(
            "+",
            Value::Null,
            json!({ "type": "numberLiteral", "val": format_float(*seconds), "duration": duration }),
        ),
        DurationExpr::Number { seconds, duration, .. } => {
            json!({ "type": "numberLiteral", "val": format_float(*seconds), "duration": duration })
        }
        DurationExpr::Step(_) => op("step", Value::Null, Value::Null),
        DurationExpr::Range(_) => op("range", Value::Null, Value::Null),
        DurationExpr::MinOf(a, b, _) => op("min_of", duration_node(a, false), duration_node(b, false)),
        DurationExpr::MaxOf(a, b, _) => op("max_of", duration_node(a, false), duration_node(b, false)),
        DurationExpr::Neg(x, _) => op("-", Value::Null, duration_node(x, false)),
        DurationExpr::Binary { op: o, lhs, rhs } => {
            op(&o.to_string(), duration_node(lhs, false), duration_node(rhs, false))
        }
        DurationExpr::Paren(inner, _) => duration_node(inner, true),
    }
}

/// `@`: the timestamp in milliseconds, or which end of the query (`start`, `end`).
fn at(at: Option<&AtModifier>) -> (Value, Value) {
    match at {
        None => (Value::Null, Value::Null),
        Some(AtModifier::Start) => (Value::Null, json!("start")),
        Some(AtModifier::End) => (Value::Null, json!("end")),
        Some(AtModifier::At(t)) => {
            let ms = match t.duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => d.as_millis() as i64,
                Err(e) => -(e.duration().as_millis() as i64),
            };
            (json!(ms), Value::Null)
        }
    }
}

fn offset_ms(offset: Option<&Offset>) -> i64 {
    match offset {
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        Some(Offset::Neg(d)) => -(d.as_millis() as i64),
        None => 0,
    }
}
