//! `GET|POST /api/v1/query` and `/api/v1/query_range`: PromQL over the stored samples, answered
//! in Prometheus's JSON (`vector`, `matrix`, `scalar`, `string`), with its errors and limits,
//! and with a non-empty `stats` parameter the query's statistics in `data.stats`, as Prometheus
//! gives them (`stats=all`: with the samples of every step; see [`amber_promql::stats`]).
//! A query whose client goes away is cancelled.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use amber_promql::{Error as QueryError, QueryContext, QueryOutput, QueryStats, Series, StatsLevel, Value};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::AppState;
use crate::error::{ApiError, ErrorType};
use crate::params::{Params, parse_duration_ms};
use crate::queryable::TenantQueryable;
use crate::response::{format_value, histogram, timestamp, write_histogram, write_timestamp};

/// Sets the query's cancel flag when dropped: axum drops the handler when the client disconnects.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The API error of a failed query, counting breaches of the query limits. Messages are
/// Prometheus's own, so clients that match on them keep working.
fn query_error(state: &AppState, e: QueryError) -> ApiError {
    match &e {
        QueryError::TooManySamples(_) => state.metrics.limit_exceeded("query_max_samples"),
        QueryError::TooManyPoints(_) => state.metrics.limit_exceeded("max_points_per_series"),
        QueryError::Timeout(_) => state.metrics.limit_exceeded("query_timeout"),
        _ => {}
    }
    let kind = match &e {
        QueryError::BadQuery(m) => return ApiError::bad_data(format!("invalid parameter \"query\": {m}")),
        QueryError::TooManyPoints(_) => ErrorType::BadData,
        QueryError::Execution(_) | QueryError::TooManySamples(_) => ErrorType::Execution,
        QueryError::Timeout(_) => ErrorType::Timeout,
        QueryError::Canceled(_) => ErrorType::Canceled,
        QueryError::Storage(_) => ErrorType::Internal,
        QueryError::Unavailable(_) => ErrorType::Unavailable,
    };
    ApiError { kind, message: e.to_string() }
}

/// One element of a vector answer: a float `value` or a native `histogram`.
#[derive(Serialize)]
struct VectorItem {
    metric: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<(Box<RawValue>, String)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    histogram: Option<(Box<RawValue>, Box<RawValue>)>,
}

#[derive(Serialize)]
struct Data<T> {
    #[serde(rename = "resultType")]
    result_type: &'static str,
    result: T,
    #[serde(skip_serializing_if = "Option::is_none")]
    stats: Option<Box<RawValue>>,
}

/// A float as Go's `encoding/json` writes it, as Prometheus's statistics come out: the shortest
/// text that reads back the same, without a fraction when there is none, in exponent form below
/// 1e-6 or from 1e21 up (`1.5e-7`, `0.000123`, `12`, `0`).
fn write_go_float(out: &mut String, v: f64) {
    use std::fmt::Write;
    let abs = v.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let _ = write!(out, "{v:e}");
    } else {
        let _ = write!(out, "{v}");
    }
}

/// `data.stats` of a query answer: Prometheus's `stats.BuiltinStats` (`util/stats/query_stats.go`),
/// its fields in its order, times in seconds, a step's time in Unix seconds.
fn stats_json(stats: &QueryStats) -> String {
    let t = &stats.timings;
    let mut out = String::with_capacity(320);
    out.push_str(r#"{"timings":{"#);
    for (i, (name, d)) in [
        ("evalTotalTime", t.eval_total),
        ("resultSortTime", t.result_sort),
        ("queryPreparationTime", t.query_preparation),
        ("innerEvalTime", t.inner_eval),
        ("execQueueTime", t.exec_queue),
        ("execTotalTime", t.exec_total),
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        out.push_str(name);
        out.push_str("\":");
        write_go_float(&mut out, d.as_secs_f64());
    }
    out.push_str(r#"},"samples":{"#);
    let samples = &stats.samples;
    if let Some(per_step) = samples.total_queryable_samples_per_step.as_ref().filter(|s| !s.is_empty()) {
        out.push_str(r#""totalQueryableSamplesPerStep":["#);
        for (i, &(t, n)) in per_step.iter().enumerate() {
            out.push_str(if i > 0 { ",[" } else { "[" });
            write_go_float(&mut out, t as f64 / 1000.0);
            out.push(',');
            out.push_str(itoa::Buffer::new().format(n));
            out.push(']');
        }
        out.push_str("],");
    }
    out.push_str(r#""totalQueryableSamples":"#);
    out.push_str(itoa::Buffer::new().format(samples.total_queryable_samples));
    out.push_str(r#","peakSamples":"#);
    out.push_str(itoa::Buffer::new().format(samples.peak_samples));
    out.push_str("}}");
    out
}

fn stats_value(stats: Option<&QueryStats>) -> Option<Box<RawValue>> {
    stats.map(|s| RawValue::from_string(stats_json(s)).expect("written as valid JSON"))
}

fn metric(labels: &amber_promql::Labels) -> BTreeMap<String, String> {
    labels.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
}

/// A matrix answer, written straight into the body: a range query can return millions of points,
/// and a serde tree of them would cost several allocations per point. Byte for byte what
/// serializing the envelope would give.
fn matrix_body(
    series: &[Series],
    stats: Option<&QueryStats>,
    warnings: &[String],
    infos: &[String],
) -> serde_json::Result<String> {
    let points: usize = series.iter().map(|s| s.points.len()).sum();
    let mut out = String::with_capacity(128 + series.len() * 128 + points * 24);
    out.push_str(r#"{"status":"success","data":{"resultType":"matrix","result":["#);
    for (i, s) in series.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(r#"{"metric":"#);
        out.push_str(&serde_json::to_string(&metric(&s.labels))?);
        // As Prometheus: `values` for float points, `histograms` for histogram points.
        if !s.points.is_empty() || s.histograms.is_empty() {
            out.push_str(r#","values":["#);
            for (j, p) in s.points.iter().enumerate() {
                out.push_str(if j > 0 { ",[" } else { "[" });
                write_timestamp(&mut out, p.t);
                out.push_str(",\"");
                amber_promql::value::write_float(&mut out, p.v);
                out.push_str("\"]");
            }
            out.push(']');
        }
        if !s.histograms.is_empty() {
            out.push_str(r#","histograms":["#);
            for (j, p) in s.histograms.iter().enumerate() {
                out.push_str(if j > 0 { ",[" } else { "[" });
                write_timestamp(&mut out, p.t);
                out.push(',');
                write_histogram(&mut out, &p.h);
                out.push(']');
            }
            out.push(']');
        }
        out.push('}');
    }
    out.push(']');
    if let Some(stats) = stats {
        out.push_str(r#","stats":"#);
        out.push_str(&stats_json(stats));
    }
    out.push('}');
    for (key, list) in [("warnings", warnings), ("infos", infos)] {
        if !list.is_empty() {
            out.push_str(&format!(",\"{key}\":"));
            out.push_str(&serde_json::to_string(list)?);
        }
    }
    out.push('}');
    Ok(out)
}

/// The success body with `warnings` and `infos` when there are any.
fn respond(out: QueryOutput) -> Response {
    #[derive(Serialize)]
    struct Envelope<T> {
        status: &'static str,
        data: T,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        warnings: Vec<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        infos: Vec<String>,
    }
    let QueryOutput { value, warnings, infos, stats } = out;
    let body = match value {
        Value::Scalar(p) => serde_json::to_string(&Envelope {
            status: "success",
            data: Data {
                result_type: "scalar",
                result: (timestamp(p.t), format_value(p.v)),
                stats: stats_value(stats.as_ref()),
            },
            warnings,
            infos,
        }),
        Value::String { t, s } => serde_json::to_string(&Envelope {
            status: "success",
            data: Data { result_type: "string", result: (timestamp(t), s), stats: stats_value(stats.as_ref()) },
            warnings,
            infos,
        }),
        Value::Vector(samples) => serde_json::to_string(&Envelope {
            status: "success",
            data: Data {
                result_type: "vector",
                result: samples
                    .iter()
                    .map(|s| VectorItem {
                        metric: metric(&s.labels),
                        value: s.h.is_none().then(|| (timestamp(s.t), format_value(s.v))),
                        histogram: s.h.as_deref().map(|h| (timestamp(s.t), histogram(h))),
                    })
                    .collect::<Vec<_>>(),
                stats: stats_value(stats.as_ref()),
            },
            warnings,
            infos,
        }),
        Value::Matrix(series) => matrix_body(&series, stats.as_ref(), &warnings, &infos),
    };
    match body {
        Ok(b) => (StatusCode::OK, [("content-type", "application/json")], b).into_response(),
        Err(e) => ApiError::internal(format!("encoding the response: {e}")).into_response(),
    }
}

/// A slot among the queries evaluated at once, or a retryable 503 naming the limit.
pub(crate) fn query_permit(state: &AppState) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    state.query_permits.clone().try_acquire_owned().map_err(|_| {
        state.metrics.limit_exceeded("max_concurrent_queries");
        ApiError {
            kind: ErrorType::Unavailable,
            message: format!(
                "too many queries in progress (limit max_concurrent_queries={}); retry later",
                state.limits.max_concurrent_queries
            ),
        }
    })
}

fn context(params: &Params, cancel: &Arc<AtomicBool>) -> Result<QueryContext, ApiError> {
    let timeout = match params.get("timeout") {
        Some(v) => Some(Duration::from_millis(parse_duration_ms(v).filter(|&ms| ms > 0).ok_or_else(|| {
            ApiError::bad_data(format!("invalid parameter \"timeout\": cannot parse \"{v}\" to a valid duration"))
        })? as u64)),
        None => None,
    };
    let lookback_delta_ms = match params.get("lookback_delta") {
        Some(v) => Some(parse_duration_ms(v).filter(|&ms| ms > 0).ok_or_else(|| {
            ApiError::bad_data(format!(
                "invalid parameter \"lookback_delta\": cannot parse \"{v}\" to a valid duration"
            ))
        })?),
        None => None,
    };
    // As Prometheus: any non-empty value asks for statistics, `all` for those of every step too.
    let stats = match params.get("stats") {
        None | Some("") => StatsLevel::Off,
        Some("all") => StatsLevel::PerStep,
        Some(_) => StatsLevel::Totals,
    };
    Ok(QueryContext { lookback_delta_ms, timeout, cancel: Some(cancel.clone()), stats })
}

pub(crate) fn query_string(params: &Params) -> Result<String, ApiError> {
    params
        .get("query")
        .map(str::to_string)
        .ok_or_else(|| ApiError::bad_data("invalid parameter \"query\": query is empty"))
}

/// Cuts a result to `limit` series, with Prometheus's warning when it had to.
fn apply_limit(mut out: QueryOutput, limit: Option<usize>) -> QueryOutput {
    let Some(limit) = limit else { return out };
    let truncated = match &mut out.value {
        Value::Vector(v) if v.len() > limit => {
            v.truncate(limit);
            true
        }
        Value::Matrix(m) if m.len() > limit => {
            m.truncate(limit);
            true
        }
        _ => false,
    };
    if truncated {
        out.warnings.push("results truncated due to limit".to_string());
    }
    out
}

pub async fn instant(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = Params::from_request(&uri, &headers, &body);
    let query = query_string(&params)?;
    let t = params.time("time", amber_storage::now_ms())?;
    evaluate(&state, &headers, &params, "instant", move |engine, storage, ctx| {
        engine.instant_query(storage, &query, t, ctx)
    })
    .await
}

pub async fn range(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = Params::from_request(&uri, &headers, &body);
    let query = query_string(&params)?;
    let required = |name: &str| -> Result<i64, ApiError> {
        if params.get(name).is_none() {
            return Err(ApiError::bad_data(format!(
                "invalid parameter \"{name}\": cannot parse \"\" to a valid timestamp"
            )));
        }
        params.time(name, 0)
    };
    let start = required("start")?;
    let end = required("end")?;
    if end < start {
        return Err(ApiError::bad_data("end timestamp must not be before start time"));
    }
    let step_text = params.get("step").unwrap_or("");
    let step = parse_duration_ms(step_text).ok_or_else(|| {
        ApiError::bad_data(format!("invalid parameter \"step\": cannot parse \"{step_text}\" to a valid duration"))
    })?;
    if step <= 0 {
        return Err(ApiError::bad_data(
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    evaluate(&state, &headers, &params, "range", move |engine, storage, ctx| {
        engine.range_query(storage, &query, start, end, step, ctx)
    })
    .await
}

/// Runs a parsed request's query for its tenant under the query limits (a concurrency slot,
/// timeout, cancellation when the client goes away), times it, and answers with its result.
async fn evaluate(
    state: &AppState,
    headers: &HeaderMap,
    params: &Params,
    kind: &'static str,
    run: impl FnOnce(&amber_promql::Engine, &TenantQueryable, &QueryContext) -> amber_promql::Result<QueryOutput>
    + Send
    + 'static,
) -> Result<Response, ApiError> {
    let limit = params.limit("limit")?;
    let cancel = Arc::new(AtomicBool::new(false));
    let ctx = context(params, &cancel)?;
    let _guard = CancelOnDrop(cancel);
    let storage = TenantQueryable {
        source: state.source.clone(),
        tenant: crate::tenant::for_read(state, headers)?,
        max_samples: state.engine.options.limits.max_samples,
    };
    let engine = state.engine.clone();
    // The query's execution starts with asking for its slot. The slot never makes it wait (a
    // query over the limit is refused, above), so what it waits for, `execQueueTime`, is a
    // thread of the blocking pool to evaluate on.
    let asked = Instant::now();
    let _permit = query_permit(state)?;
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        let queued = asked.elapsed();
        let mut out = run(&engine, &storage, &ctx);
        if let Ok(QueryOutput { stats: Some(stats), .. }) = &mut out {
            stats.timings.exec_queue = queued;
            stats.timings.exec_total = asked.elapsed();
        }
        out
    })
    .await
    .map_err(|e| ApiError::internal(format!("query task failed: {e}")))?;
    state.metrics.observe_query(kind, started.elapsed());
    let out = out.map_err(|e| query_error(state, e))?;
    Ok(respond(apply_limit(out, limit)))
}

/// `GET|POST /api/v1/format_query`: the query, parsed and printed back in canonical form.
pub async fn format(uri: Uri, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let params = Params::from_request(&uri, &headers, &body);
    let query = query_string(&params)?;
    let expr = promql_parser::parser::parse(&query)
        .map_err(|e| ApiError::bad_data(format!("invalid parameter \"query\": {e}")))?;
    Ok(crate::response::success(expr.prettify(), Vec::new()))
}
