//! The engine's entry points: instant and range queries with their limits.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use promql_parser::parser::value::ValueType;
use promql_parser::parser::{self, Expr};

use crate::error::{Error, Result};
use crate::eval::Evaluator;
use crate::labels::LabelsMap;
use crate::stats::{QueryStats, QueryTimings, StatsLevel};
use crate::storage::Queryable;
use crate::value::{HistogramPoint, Point, Series, StartTimestamps, Value};

/// Settings of the engine, fixed for its life.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (Prometheus: 5m).
    pub lookback_delta_ms: i64,
    /// Step of a subquery that names none (Prometheus: the global evaluation interval, 1m).
    pub default_subquery_step_ms: i64,
    pub limits: QueryLimits,
    /// Range queries that load at least this many samples split their steps between threads
    /// (`usize::MAX`: never).
    pub parallel_min_samples: usize,
}

/// Per-query limits; each breach is a clear error.
#[derive(Debug, Clone)]
pub struct QueryLimits {
    /// Most samples a query may load from storage.
    pub max_samples: usize,
    pub timeout: Duration,
    /// Most points per series in a range query's result (Prometheus: 11,000).
    pub max_points_per_series: i64,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta_ms: 5 * 60 * 1000,
            default_subquery_step_ms: 60 * 1000,
            limits: QueryLimits {
                max_samples: 50_000_000,
                timeout: Duration::from_secs(120),
                max_points_per_series: 11_000,
            },
            parallel_min_samples: 100_000,
        }
    }
}

/// A query's result with the annotations Prometheus returns beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryOutput {
    pub value: Value,
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
    /// The query's statistics, when [`QueryContext::stats`] asked for them.
    pub stats: Option<QueryStats>,
}

#[derive(Debug, Clone, Default)]
pub struct Engine {
    pub options: EngineOptions,
}

/// What one query may override and how it can be stopped.
#[derive(Debug, Clone, Default)]
pub struct QueryContext {
    pub lookback_delta_ms: Option<i64>,
    pub timeout: Option<Duration>,
    /// Set by the caller to stop the query (client disconnected).
    pub cancel: Option<Arc<AtomicBool>>,
    /// Which statistics to gather and return in [`QueryOutput::stats`].
    pub stats: StatsLevel,
}

pub(crate) fn parse(query: &str) -> Result<Expr> {
    parser::parse(query).map_err(Error::BadQuery)
}

impl Engine {
    pub fn new(options: EngineOptions) -> Self {
        Engine { options }
    }

    fn evaluator<'a>(
        &'a self,
        storage: &'a dyn Queryable,
        ctx: &QueryContext,
        start: i64,
        end: i64,
        step: i64,
    ) -> Evaluator<'a> {
        let timeout = ctx.timeout.unwrap_or(self.options.limits.timeout);
        Evaluator::new(
            storage,
            &self.options,
            ctx.lookback_delta_ms.unwrap_or(self.options.lookback_delta_ms),
            start,
            end,
            step,
            Instant::now() + timeout,
            ctx.cancel.clone(),
        )
    }

    /// Evaluates `query` at time `t` (milliseconds).
    pub fn instant_query(
        &self,
        storage: &dyn Queryable,
        query: &str,
        t: i64,
        ctx: &QueryContext,
    ) -> Result<QueryOutput> {
        let started = Instant::now();
        self.instant_query_from(storage, query, &parse(query)?, t, ctx, started)
    }

    /// Evaluates an already parsed expression at time `t` (milliseconds). `query` is the text it
    /// was parsed from, which the positions in annotations refer to (empty: no positions).
    pub fn instant_query_expr(
        &self,
        storage: &dyn Queryable,
        query: &str,
        expr: &Expr,
        t: i64,
        ctx: &QueryContext,
    ) -> Result<QueryOutput> {
        self.instant_query_from(storage, query, expr, t, ctx, Instant::now())
    }

    /// [`Engine::instant_query_expr`] of a query whose handling began at `started`.
    fn instant_query_from(
        &self,
        storage: &dyn Queryable,
        query: &str,
        expr: &Expr,
        t: i64,
        ctx: &QueryContext,
        started: Instant,
    ) -> Result<QueryOutput> {
        let expr = &*crate::durations::resolve(expr, 0, 0)?;
        let mut ev = self.evaluator(storage, ctx, t, t, self.options.default_subquery_step_ms);
        if ctx.stats != StatsLevel::Off {
            ev.enable_stats(t, 1, 1);
            ev.set_top_subquery(expr);
        }
        ev.prepare(expr, t, t)?;
        let prepared = Instant::now();
        let value = ev.eval(expr, t)?;
        let value = ev.finish_instant(value)?;
        let evaluated = Instant::now();
        // An instant query's result is not sorted.
        Ok(output(ev, value, query, ctx, [started, prepared, evaluated, evaluated]))
    }

    /// Evaluates `query` at every `step` from `start` to `end` (milliseconds).
    pub fn range_query(
        &self,
        storage: &dyn Queryable,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
        ctx: &QueryContext,
    ) -> Result<QueryOutput> {
        let started = Instant::now();
        self.range_query_from(storage, query, &parse(query)?, [start, end, step], ctx, started)
    }

    /// Evaluates an already parsed expression at every `step` from `start` to `end`; `query` as
    /// for [`Engine::instant_query_expr`].
    #[allow(clippy::too_many_arguments)]
    pub fn range_query_expr(
        &self,
        storage: &dyn Queryable,
        query: &str,
        expr: &Expr,
        start: i64,
        end: i64,
        step: i64,
        ctx: &QueryContext,
    ) -> Result<QueryOutput> {
        self.range_query_from(storage, query, expr, [start, end, step], ctx, Instant::now())
    }

    /// [`Engine::range_query_expr`] of a query whose handling began at `started`.
    fn range_query_from(
        &self,
        storage: &dyn Queryable,
        query: &str,
        expr: &Expr,
        [start, end, step]: [i64; 3],
        ctx: &QueryContext,
        started: Instant,
    ) -> Result<QueryOutput> {
        match expr.value_type() {
            ValueType::Vector | ValueType::Scalar => {}
            other => {
                return Err(Error::BadQuery(format!(
                    "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                    match other {
                        ValueType::Matrix => "range vector",
                        ValueType::String => "string",
                        _ => "unknown",
                    }
                )));
            }
        }
        let points = (end - start) / step + 1;
        let max_points = self.options.limits.max_points_per_series;
        if points > max_points {
            // Prometheus prints the limit with a thousands separator: "11,000".
            let digits = max_points.to_string();
            let mut grouped = String::new();
            for (i, c) in digits.chars().enumerate() {
                if i > 0 && (digits.len() - i).is_multiple_of(3) {
                    grouped.push(',');
                }
                grouped.push(c);
            }
            return Err(Error::TooManyPoints(grouped));
        }
        let expr = &*crate::durations::resolve(expr, step, end - start)?;
        let mut ev = self.evaluator(storage, ctx, start, end, step);
        ev.query_step = step;
        if ctx.stats != StatsLevel::Off {
            ev.enable_stats(start, step, usize::try_from(points).unwrap_or(1));
        }
        // Statistics count what is loaded and held, so a query that asks for them loads whole.
        if ctx.stats == StatsLevel::Off {
            ev.read_in_parts(crate::by_series::read_in_parts(expr));
        }
        ev.prepare(expr, start, end)?;
        let prepared = Instant::now();
        let steps: Vec<i64> = (0..points).map(|i| start + i * step).collect();
        // Steps are independent: large queries split them between threads, each with its own
        // evaluator over the loaded data, and the series' points are joined in step order. A
        // selection in parts is not counted yet: its reader decides by its series.
        let parallel = eval_threads().min(steps.len());
        let threads_for = |ev: &Evaluator<'_>| {
            let large = ev.samples_loaded() >= self.options.parallel_min_samples;
            let in_parts = ev.has_parts() && self.options.parallel_min_samples < usize::MAX;
            if large || in_parts { parallel } else { 1 }
        };
        // Series by series when the shape allows; a shape that turns out not to leaves its counts
        // behind, loads what it was to read in parts, and goes step by step.
        let saved = ev.save_stats();
        let threads = threads_for(&ev);
        let by_series = crate::by_series::range_query(&mut ev, expr, &steps, threads);
        if by_series.is_none() {
            ev.restore_stats(saved);
            ev.load_in_parts_whole()?;
        }
        let threads = threads_for(&ev);
        let series = if let Some(by_series) = by_series {
            let floats = by_series?;
            let mut series = LabelsMap::default();
            for (labels, points) in floats.into_entries() {
                *series.get_or_insert_with(&labels, StepPoints::default) =
                    StepPoints { points, histograms: Vec::new() };
            }
            series
        } else if threads < 2 {
            eval_steps(&mut ev, expr, &steps)?
        } else {
            let per_thread = steps.len().div_ceil(threads);
            let parts: Vec<(Evaluator<'_>, Result<LabelsMap<StepPoints>>)> = std::thread::scope(|scope| {
                let handles: Vec<_> = steps
                    .chunks(per_thread)
                    .map(|part| {
                        let mut fork = ev.fork();
                        scope.spawn(move || {
                            let out = eval_steps(&mut fork, expr, part);
                            (fork, out)
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().expect("evaluation does not panic")).collect()
            });
            let mut series: LabelsMap<StepPoints> = LabelsMap::default();
            for (fork, part) in parts {
                ev.absorb(fork);
                for (labels, points) in part?.into_entries() {
                    let all = series.get_or_insert_with(&labels, StepPoints::default);
                    all.points.extend(points.points);
                    all.histograms.extend(points.histograms);
                }
            }
            series
        };
        // A series no step gave a point for (`rate(x[1s])` over sparser samples) is left out:
        // Prometheus's matrix never carries an empty series, whatever the expression.
        let mut matrix: Vec<Series> = series
            .into_entries()
            .into_iter()
            .filter(|(_, step_points)| !step_points.points.is_empty() || !step_points.histograms.is_empty())
            .map(|(labels, StepPoints { points, histograms })| Series {
                labels,
                points,
                histograms,
                start_timestamps: StartTimestamps::default(),
                drop_name: false,
            })
            .collect();
        let evaluated = Instant::now();
        matrix.sort_by(|a, b| a.labels.cmp(&b.labels));
        let sorted = Instant::now();
        Ok(output(ev, Value::Matrix(matrix), query, ctx, [started, prepared, evaluated, sorted]))
    }
}

/// The query's output with its statistics when asked for, the timings from the instants its
/// handling began, finished preparing (parsing and loading), evaluating and sorting.
fn output(
    mut ev: Evaluator<'_>,
    value: Value,
    query: &str,
    ctx: &QueryContext,
    [started, prepared, evaluated, sorted]: [Instant; 4],
) -> QueryOutput {
    let counters = ev.take_stats();
    let mut out = ev.output(value, query);
    out.stats = counters.map(|c| {
        let eval_total = started.elapsed();
        c.finish(
            ctx.stats,
            QueryTimings {
                eval_total,
                result_sort: sorted - evaluated,
                query_preparation: prepared - started,
                inner_eval: evaluated - prepared,
                exec_queue: Duration::ZERO,
                exec_total: eval_total,
            },
        )
    });
    out
}

/// Most threads that share the steps of one range query.
const EVAL_THREADS: usize = 4;

/// Threads that share the steps of one range query here: the cores, at most [`EVAL_THREADS`].
/// Asked once, as storage asks for its decoding threads: `available_parallelism` reads the
/// cgroup files each time, about 50 µs, a tenth of a small query.
fn eval_threads() -> usize {
    static THREADS: LazyLock<usize> =
        LazyLock::new(|| std::thread::available_parallelism().map_or(1, |n| n.get()).min(EVAL_THREADS));
    *THREADS
}

/// One result series' points of a range query, gathered step by step.
#[derive(Default)]
struct StepPoints {
    points: Vec<Point>,
    histograms: Vec<HistogramPoint>,
}

/// Evaluates `expr` at each of `steps` (ascending), collecting each result series' points.
fn eval_steps(ev: &mut Evaluator<'_>, expr: &Expr, steps: &[i64]) -> Result<LabelsMap<StepPoints>> {
    let mut series: LabelsMap<StepPoints> = LabelsMap::default();
    // The output series of each input label set, one map for samples whose metric name is to be
    // dropped and one for the rest: found by the labels' address at every later step, without
    // computing or cloning the result's labels again.
    let mut output_of: [LabelsMap<usize>; 2] = Default::default();
    for &t in steps {
        ev.check_deadline("expression evaluation")?;
        ev.at_step(t);
        match ev.eval(expr, t)? {
            Value::Scalar(p) => {
                series.get_or_insert_with(&Default::default(), StepPoints::default).points.push(Point { t, v: p.v })
            }
            Value::Vector(samples) => {
                for s in samples {
                    let i = *output_of[usize::from(s.drop_name)].get_or_insert_with(&s.labels, || {
                        let labels = if s.drop_name { s.labels.without_metric_name() } else { s.labels.clone() };
                        series.index_or_insert_with(&labels, StepPoints::default)
                    });
                    let out = series.value_at_mut(i);
                    if out.points.last().is_some_and(|p| p.t == t) || out.histograms.last().is_some_and(|p| p.t == t) {
                        return Err(Error::Execution("vector cannot contain metrics with the same labelset".into()));
                    }
                    match s.h {
                        Some(h) => out.histograms.push(HistogramPoint { t, h }),
                        None => out.points.push(Point { t, v: s.v }),
                    }
                }
            }
            other => return Err(Error::Execution(format!("unexpected {} in range query", other.type_name()))),
        }
    }
    Ok(series)
}
