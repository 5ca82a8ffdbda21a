//! `GET|POST /api/v1/query_exemplars` (Prometheus's API) and Amber's own
//! `GET /api/v1/exemplars/trace/<trace_id>`.
//!
//! As in Prometheus, `query` is any PromQL expression and exemplars are returned for the series
//! of every vector selector in it. Unlike Prometheus, they come from durable storage, so any
//! range within retention answers, after restarts too.

use std::collections::BTreeMap;

use amber_storage::{Exemplar, Labels, Matcher};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use promql_parser::parser::{self, Expr};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::AppState;
use crate::error::{ApiError, blocking};
use crate::params::{Params, selector_matchers};
use crate::response::{format_value, success, timestamp};

/// One series' exemplars, in Prometheus's JSON shape.
#[derive(Serialize)]
pub struct SeriesExemplars {
    #[serde(rename = "seriesLabels")]
    pub series_labels: BTreeMap<String, String>,
    pub exemplars: Vec<ExemplarJson>,
}

#[derive(Serialize)]
pub struct ExemplarJson {
    pub labels: BTreeMap<String, String>,
    pub value: String,
    pub timestamp: Box<RawValue>,
}

fn label_map(labels: &Labels) -> BTreeMap<String, String> {
    labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect()
}

fn exemplar_json(e: &Exemplar) -> ExemplarJson {
    ExemplarJson { labels: label_map(&e.labels), value: format_value(e.value), timestamp: timestamp(e.ts) }
}

/// Collects the matcher sets of every vector selector in an expression.
struct Selectors(Vec<Vec<Matcher>>);

impl ExprVisitor for Selectors {
    type Error = ApiError;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, ApiError> {
        match expr {
            Expr::VectorSelector(vs) => self.0.extend(selector_matchers(vs)?),
            Expr::MatrixSelector(ms) => self.0.extend(selector_matchers(&ms.vs)?),
            _ => {}
        }
        Ok(true)
    }
}

pub async fn query(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = Params::from_request(&uri, &headers, &body);
    let tenant = crate::tenant::for_read(&state, &headers)?;
    let (start, end) = params.time_range()?;
    let q = params.get("query").ok_or_else(|| ApiError::bad_data("invalid parameter \"query\": query is empty"))?;
    let expr = parser::parse(q).map_err(|e| ApiError::bad_data(format!("invalid parameter \"query\": {e}")))?;
    let mut selectors = Selectors(Vec::new());
    walk_expr(&mut selectors, &expr)?;
    let storage = state.storage.clone();
    let data = blocking(move || {
        let Some(tenant) = tenant.filter(|_| !selectors.0.is_empty()) else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for (id, labels) in storage.select_labels(tenant, &selectors.0, start, end)? {
            let exemplars = storage.exemplars(id, start, end)?;
            if !exemplars.is_empty() {
                out.push(SeriesExemplars {
                    series_labels: label_map(&labels),
                    exemplars: exemplars.iter().map(exemplar_json).collect(),
                });
            }
        }
        Ok(out)
    })
    .await?;
    Ok(success(data, Vec::new()))
}

pub async fn by_trace(
    State(state): State<AppState>,
    Path(trace_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = crate::tenant::for_read(&state, &headers)?;
    let storage = state.storage.clone();
    let data = blocking(move || {
        let Some(tenant) = tenant else { return Ok(Vec::new()) };
        let mut by_series: BTreeMap<Labels, Vec<ExemplarJson>> = BTreeMap::new();
        for hit in storage.exemplars_by_trace(tenant, &trace_id)? {
            by_series.entry(hit.series).or_default().push(exemplar_json(&hit.exemplar));
        }
        Ok(by_series
            .into_iter()
            .map(|(labels, exemplars)| SeriesExemplars { series_labels: label_map(&labels), exemplars })
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(success(data, Vec::new()))
}
