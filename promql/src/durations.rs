//! Duration expressions (`[5m * 2]`, `offset (1h - 5m)`, `[step() + 1s]`, `min_of`/`max_of`),
//! resolved to plain durations before evaluation, as Prometheus's `durationVisitor` does: the
//! parser keeps them as written (`range_expr`, `step_expr`, `offset_expr`), and this pre-pass
//! writes their values into the `range`, `step` and `offset` the evaluator reads. Only `step()`
//! and `range()` need the query; everything else could be folded, but is resolved the same way
//! so errors come out where Prometheus gives them, before any data is read.

use std::borrow::Cow;
use std::time::Duration;

use promql_parser::parser::token::{T_ADD, T_DIV, T_MOD, T_MUL, T_POW, T_SUB};
use promql_parser::parser::{DurationExpr, Expr, Offset};

use crate::error::{Error, Result};

/// `expr` with every duration expression resolved for a query with `step_ms` between its steps
/// (0 for an instant query) spanning `range_ms`; borrowed as it is when it has none.
pub(crate) fn resolve(expr: &Expr, step_ms: i64, range_ms: i64) -> Result<Cow<'_, Expr>> {
    if !has_duration_exprs(expr) {
        return Ok(Cow::Borrowed(expr));
    }
    let mut resolved = expr.clone();
    let query = Query { step: step_ms as f64 / 1000.0, range: range_ms as f64 / 1000.0 };
    query.resolve_in(&mut resolved)?;
    Ok(Cow::Owned(resolved))
}

fn has_duration_exprs(expr: &Expr) -> bool {
    match expr {
        Expr::VectorSelector(vs) => vs.offset_expr.is_some(),
        Expr::MatrixSelector(ms) => ms.range_expr.is_some() || ms.vs.offset_expr.is_some(),
        Expr::Subquery(sq) => {
            sq.range_expr.is_some()
                || sq.step_expr.is_some()
                || sq.offset_expr.is_some()
                || has_duration_exprs(&sq.expr)
        }
        Expr::Aggregate(a) => has_duration_exprs(&a.expr) || a.param.as_deref().is_some_and(has_duration_exprs),
        Expr::Unary(u) => has_duration_exprs(&u.expr),
        Expr::Binary(b) => has_duration_exprs(&b.lhs) || has_duration_exprs(&b.rhs),
        Expr::Paren(p) => has_duration_exprs(&p.expr),
        Expr::Call(c) => c.args.args.iter().any(|a| has_duration_exprs(a)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => false,
    }
}

/// What `step()` and `range()` stand for, in seconds.
struct Query {
    step: f64,
    range: f64,
}

impl Query {
    fn resolve_in(&self, expr: &mut Expr) -> Result<()> {
        match expr {
            Expr::VectorSelector(vs) => {
                if let Some(d) = &vs.offset_expr {
                    vs.offset = Some(self.offset(d)?);
                }
            }
            Expr::MatrixSelector(ms) => {
                if let Some(d) = &ms.vs.offset_expr {
                    ms.vs.offset = Some(self.offset(d)?);
                }
                if let Some(d) = &ms.range_expr {
                    ms.range = self.positive(d)?;
                }
            }
            Expr::Subquery(sq) => {
                if let Some(d) = &sq.offset_expr {
                    sq.offset = Some(self.offset(d)?);
                }
                if let Some(d) = &sq.step_expr {
                    sq.step = Some(self.positive(d)?);
                }
                if let Some(d) = &sq.range_expr {
                    sq.range = self.positive(d)?;
                }
                self.resolve_in(&mut sq.expr)?;
            }
            Expr::Aggregate(a) => {
                self.resolve_in(&mut a.expr)?;
                if let Some(p) = a.param.as_deref_mut() {
                    self.resolve_in(p)?;
                }
            }
            Expr::Unary(u) => self.resolve_in(&mut u.expr)?,
            Expr::Binary(b) => {
                self.resolve_in(&mut b.lhs)?;
                self.resolve_in(&mut b.rhs)?;
            }
            Expr::Paren(p) => self.resolve_in(&mut p.expr)?,
            Expr::Call(c) => {
                for arg in c.args.args.iter_mut() {
                    self.resolve_in(arg)?;
                }
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
        Ok(())
    }

    fn offset(&self, d: &DurationExpr) -> Result<Offset> {
        let ms = self.millis(d, true)?;
        let magnitude = Duration::from_millis(ms.unsigned_abs());
        Ok(if ms < 0 { Offset::Neg(magnitude) } else { Offset::Pos(magnitude) })
    }

    fn positive(&self, d: &DurationExpr) -> Result<Duration> {
        Ok(Duration::from_millis(self.millis(d, false)?.unsigned_abs()))
    }

    /// Prometheus's `calculateDuration`: the value in whole milliseconds (truncated), refused
    /// when NaN or infinite, not positive where it must be, or beyond what a duration holds.
    fn millis(&self, d: &DurationExpr, negative_allowed: bool) -> Result<i64> {
        let seconds = self.seconds(d)?;
        let fail = |why: &str| {
            let at = d.position_range();
            Err(Error::BadQuery(format!("{}:{}: {why}", at.start, at.end)))
        };
        if !seconds.is_finite() {
            return fail("duration is NaN or infinite");
        }
        if seconds <= 0.0 && !negative_allowed {
            return fail("duration must be greater than 0");
        }
        if seconds.abs() > i64::MAX as f64 / 1e9 {
            return fail("duration is out of range");
        }
        Ok((seconds * 1000.0) as i64)
    }

    /// Prometheus's `evaluateDurationExpr`, in seconds.
    fn seconds(&self, d: &DurationExpr) -> Result<f64> {
        Ok(match d {
            DurationExpr::Number { seconds, .. } => *seconds,
            DurationExpr::Step(_) => self.step,
            DurationExpr::Range(_) => self.range,
            DurationExpr::MinOf(a, b, _) => self.seconds(a)?.min(self.seconds(b)?),
            DurationExpr::MaxOf(a, b, _) => self.seconds(a)?.max(self.seconds(b)?),
            DurationExpr::Neg(d, _) => -self.seconds(d)?,
            DurationExpr::Paren(d, _) => self.seconds(d)?,
            DurationExpr::Binary { op, lhs, rhs } => {
                let (l, r) = (self.seconds(lhs)?, self.seconds(rhs)?);
                let at = d.position_range();
                match op.id() {
                    T_ADD => l + r,
                    T_SUB => l - r,
                    T_MUL => l * r,
                    T_DIV if r == 0.0 => {
                        return Err(Error::BadQuery(format!("{}:{}: division by zero", at.start, at.end)));
                    }
                    T_DIV => l / r,
                    T_MOD if r == 0.0 => {
                        return Err(Error::BadQuery(format!("{}:{}: modulo by zero", at.start, at.end)));
                    }
                    T_MOD => l % r,
                    T_POW => l.powf(r),
                    _ => return Err(Error::BadQuery(format!("unexpected duration expression operator {op}"))),
                }
            }
        })
    }
}
