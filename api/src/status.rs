//! Build information, flags, runtime information, health and readiness, in Prometheus's shapes;
//! and `rules`, `alerts` and `targets`, empty (Amber neither evaluates rules nor scrapes), in
//! Prometheus's shapes rather than a 404, as Grafana and Prometheus's own tooling call them.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use crate::AppState;
use crate::response::success;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BuildInfo {
    version: &'static str,
    revision: &'static str,
    branch: &'static str,
    build_user: &'static str,
    build_date: &'static str,
    go_version: &'static str,
}

/// `GET /api/v1/status/buildinfo`, in Prometheus's shape (Grafana reads `version` from it).
pub async fn buildinfo() -> Response {
    success(
        BuildInfo {
            version: env!("CARGO_PKG_VERSION"),
            revision: option_env!("AMBER_GIT_REVISION").unwrap_or("unknown"),
            branch: "",
            build_user: "",
            build_date: "",
            go_version: "",
        },
        Vec::new(),
    )
}

/// `GET /-/healthy`: the process is up.
pub async fn healthy() -> Response {
    "Amber is Healthy.\n".into_response()
}

/// `GET /-/ready`: the store is open and requests are served (the router exists only then).
pub async fn ready() -> Response {
    "Amber is Ready.\n".into_response()
}

/// `GET /api/v1/status/flags`: the settings in force, by flag name.
pub async fn flags(State(state): State<AppState>) -> Response {
    success(&*state.flags, Vec::new())
}

/// `GET /api/v1/status/config`: the effective configuration in Prometheus's shape
/// (`{"yaml": …}`); Amber's is the settings of its TOML file, with secrets redacted.
pub async fn config(State(state): State<AppState>) -> Response {
    success(serde_json::json!({ "yaml": &*state.config_yaml }), Vec::new())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RuntimeInfo {
    start_time: String,
    #[serde(rename = "CWD")]
    cwd: String,
    reload_config_success: bool,
    last_config_time: String,
    corruption_count: u64,
    /// Threads of the process: Prometheus's field name, Amber's nearest count.
    goroutine_count: usize,
    #[serde(rename = "GOMAXPROCS")]
    gomaxprocs: usize,
    #[serde(rename = "GOMEMLIMIT")]
    gomemlimit: i64,
    #[serde(rename = "GOGC")]
    gogc: String,
    #[serde(rename = "GODEBUG")]
    godebug: String,
    storage_retention: String,
}

/// Threads of this process, from `/proc/self/status` (0 where there is none).
fn thread_count() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
}

/// `GET /api/v1/status/runtimeinfo`, in Prometheus's shape; the Go runtime's fields hold
/// Amber's nearest equivalents (threads, cores, no memory limit).
pub async fn runtimeinfo(State(state): State<AppState>) -> Response {
    let started = state.started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    success(
        RuntimeInfo {
            start_time: started.clone(),
            cwd: std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default(),
            reload_config_success: true,
            last_config_time: started,
            corruption_count: 0,
            goroutine_count: thread_count(),
            gomaxprocs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            gomemlimit: i64::MAX,
            gogc: String::new(),
            godebug: String::new(),
            storage_retention: state.flags.get("retention").cloned().unwrap_or_default(),
        },
        Vec::new(),
    )
}

/// `GET /api/v1/rules`: no rule groups.
pub async fn rules() -> Response {
    success(json!({"groups": []}), Vec::new())
}

/// `GET /api/v1/alerts`: no alerts.
pub async fn alerts() -> Response {
    success(json!({"alerts": []}), Vec::new())
}

/// `GET /api/v1/targets`: no targets (Amber is written to, it does not scrape).
pub async fn targets() -> Response {
    success(json!({"activeTargets": [], "droppedTargets": [], "droppedTargetCounts": {}}), Vec::new())
}

/// `GET /api/v1/status/ring`: the ring as this process sees it (a distributor or querier;
/// `{"members": []}` elsewhere): each member's id, address, state and number of tokens, by id.
pub async fn ring(State(state): State<AppState>) -> Response {
    let members: Vec<serde_json::Value> = match &state.ring {
        Some(watch) => watch
            .ring()
            .members()
            .iter()
            .map(|m| json!({"id": m.id, "addr": m.addr, "state": m.state, "tokens": m.tokens.len()}))
            .collect(),
        None => Vec::new(),
    };
    success(json!({ "members": members }), Vec::new())
}

#[derive(Serialize)]
struct Stat {
    name: String,
    value: u64,
}

fn stats(list: Vec<amber_storage::cardinality::Stat>) -> Vec<Stat> {
    list.into_iter().map(|s| Stat { name: s.name, value: s.count }).collect()
}

/// `GET /api/v1/status/tsdb[?limit=N]`: the tenant's cardinality in Prometheus's shape, top
/// `limit` (10) of each list. `headStats` counts the whole index (Amber keeps every series
/// there), the head's chunks, and the time range of the data.
pub async fn tsdb(
    State(state): State<AppState>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> Result<Response, crate::error::ApiError> {
    let params = crate::params::Params::from_request(&uri, &headers, &axum::body::Bytes::new());
    let limit = params.limit("limit")?.unwrap_or(10);
    let tenant = crate::tenant::for_local_read(&state, &headers)?;
    let storage = state.storage.clone();
    let (cardinality, head, range) = crate::error::blocking(move || {
        let cardinality = match tenant {
            Some(t) => storage.cardinality(t, limit)?,
            None => Default::default(),
        };
        Ok((cardinality, storage.stats().head, storage.data_time_range()))
    })
    .await?;
    let (min_time, max_time) = range.unwrap_or((i64::MAX, i64::MIN));
    Ok(success(
        json!({
            "headStats": {
                "numSeries": cardinality.series,
                "numLabelPairs": cardinality.label_pairs,
                "chunkCount": head.chunks,
                "minTime": min_time,
                "maxTime": max_time,
            },
            "seriesCountByMetricName": stats(cardinality.series_by_metric_name),
            "labelValueCountByLabelName": stats(cardinality.values_by_label_name),
            "memoryInBytesByLabelName": stats(cardinality.value_bytes_by_label_name),
            "seriesCountByLabelValuePair": stats(cardinality.series_by_label_pair),
        }),
        Vec::new(),
    ))
}
