//! `GET|POST /api/v1/query_exemplars` (Prometheus's API) and Amber's own
//! `GET /api/v1/exemplars/trace/<trace_id>` and `GET|POST /api/v1/exemplars/top`.
//!
//! As in Prometheus, `query` is any PromQL expression and exemplars are returned for the series
//! of every vector selector in it. Unlike Prometheus, they come from durable storage, so any
//! range within retention answers, after restarts too.

use std::collections::BTreeMap;

use amber_storage::source::{Columns, ReadSource};
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

/// What `query_exemplars` and `exemplars/top` select: the tenant, the time range, and the
/// matcher sets of every vector selector in `query`.
struct Selection {
    tenant: String,
    start: i64,
    end: i64,
    selectors: Vec<Vec<Matcher>>,
}

impl Selection {
    fn from_request(state: &AppState, params: &Params, headers: &HeaderMap) -> Result<Selection, ApiError> {
        let tenant = crate::tenant::for_read(state, headers)?;
        let (start, end) = params.time_range()?;
        let q = params.get("query").ok_or_else(|| ApiError::bad_data("invalid parameter \"query\": query is empty"))?;
        let expr = parser::parse(q).map_err(|e| ApiError::bad_data(format!("invalid parameter \"query\": {e}")))?;
        let mut selectors = Selectors(Vec::new());
        walk_expr(&mut selectors, &expr)?;
        Ok(Selection { tenant, start, end, selectors: selectors.0 })
    }

    /// Calls `each` with every selected series that has exemplars in the range, in Prometheus's
    /// series order, and its exemplars oldest first.
    fn for_each_series(
        &self,
        source: &dyn ReadSource,
        mut each: impl FnMut(Labels, Vec<Exemplar>),
    ) -> Result<(), ApiError> {
        // A query without selectors selects nothing (to a source, no selectors is every series).
        if self.selectors.is_empty() {
            return Ok(());
        }
        for series in source.select(&self.tenant, &self.selectors, self.start, self.end, Columns::EXEMPLARS)? {
            each(series.labels, series.exemplars);
        }
        Ok(())
    }
}

pub async fn query(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = Params::from_request(&uri, &headers, &body);
    let selection = Selection::from_request(&state, &params, &headers)?;
    let source = state.source.clone();
    let data = blocking(move || {
        let mut out = Vec::new();
        selection.for_each_series(source.as_ref(), |labels, exemplars| {
            out.push(SeriesExemplars {
                series_labels: label_map(&labels),
                exemplars: exemplars.iter().map(exemplar_json).collect(),
            })
        })?;
        Ok(out)
    })
    .await?;
    Ok(success(data, Vec::new()))
}

/// Exemplars `exemplars/top` returns when the request names no `limit`.
const DEFAULT_TOP_EXEMPLARS: usize = 10;

/// `GET|POST /api/v1/exemplars/top?query=<expr>&start&end&limit=N&order=desc|asc`: the `limit`
/// exemplars with the largest (`desc`, the default) or smallest values among those
/// `query_exemplars` would return for the same `query` and range — "the slowest requests of last
/// week, and their traces". In `query_exemplars`' shape: series ordered by their best exemplar,
/// each series' exemplars in rank order. Ties rank the newer exemplar first. NaN values have no
/// rank and are left out. `limit` defaults to 10; 0 returns every exemplar, ranked. Memory is a
/// heap of `limit` exemplars plus one series' exemplars at a time, however long the range.
pub async fn top(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = Params::from_request(&uri, &headers, &body);
    let selection = Selection::from_request(&state, &params, &headers)?;
    let limit = match params.get("limit") {
        None => Some(DEFAULT_TOP_EXEMPLARS),
        Some(_) => params.limit("limit")?,
    };
    let descending = match params.get("order").unwrap_or("desc") {
        "desc" => true,
        "asc" => false,
        other => {
            return Err(ApiError::bad_data(format!(
                "invalid parameter \"order\": \"{other}\" is neither \"desc\" nor \"asc\""
            )));
        }
    };
    let source = state.source.clone();
    let data = blocking(move || {
        let mut series: Vec<Labels> = Vec::new();
        let mut top = TopExemplars::new(limit, descending);
        selection.for_each_series(source.as_ref(), |labels, exemplars| {
            let index = series.len();
            series.push(labels);
            for e in exemplars {
                top.offer(index, e);
            }
        })?;
        // Group the ranked exemplars by series, keeping the order of each series' best one.
        let mut out: Vec<SeriesExemplars> = Vec::new();
        let mut position: BTreeMap<usize, usize> = BTreeMap::new();
        for (index, exemplar) in top.into_ranked() {
            let at = *position.entry(index).or_insert_with(|| {
                out.push(SeriesExemplars { series_labels: label_map(&series[index]), exemplars: Vec::new() });
                out.len() - 1
            });
            out[at].exemplars.push(exemplar_json(&exemplar));
        }
        Ok(out)
    })
    .await?;
    Ok(success(data, Vec::new()))
}

/// A bounded selection of the best-ranked exemplars: a min-heap of at most `limit` entries whose
/// root is the worst kept, so each offer costs O(log limit).
struct TopExemplars {
    limit: Option<usize>,
    descending: bool,
    heap: std::collections::BinaryHeap<std::cmp::Reverse<Ranked>>,
}

/// An exemplar with its rank: `key` is its value, negated for ascending order, so a larger key
/// always ranks higher; a newer timestamp breaks ties.
struct Ranked {
    key: f64,
    ts: i64,
    series: usize,
    exemplar: Exemplar,
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key
            .total_cmp(&other.key)
            .then(self.ts.cmp(&other.ts))
            // Earlier series (Prometheus's order) rank higher among exact ties.
            .then(other.series.cmp(&self.series))
    }
}

impl TopExemplars {
    fn new(limit: Option<usize>, descending: bool) -> TopExemplars {
        TopExemplars { limit, descending, heap: std::collections::BinaryHeap::new() }
    }

    fn offer(&mut self, series: usize, exemplar: Exemplar) {
        if exemplar.value.is_nan() {
            return;
        }
        let key = if self.descending { exemplar.value } else { -exemplar.value };
        let ranked = Ranked { key, ts: exemplar.ts, series, exemplar };
        match self.limit {
            Some(limit) if self.heap.len() >= limit => {
                // Full: the new one replaces the worst kept, if it ranks above it.
                if let Some(mut worst) = self.heap.peek_mut()
                    && ranked > worst.0
                {
                    *worst = std::cmp::Reverse(ranked);
                }
            }
            _ => self.heap.push(std::cmp::Reverse(ranked)),
        }
    }

    /// The kept exemplars, best first, with the index of their series.
    fn into_ranked(self) -> impl Iterator<Item = (usize, Exemplar)> {
        // Ascending order of `Reverse` is descending rank.
        self.heap.into_sorted_vec().into_iter().map(|r| (r.0.series, r.0.exemplar))
    }
}

pub async fn by_trace(
    State(state): State<AppState>,
    Path(trace_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = crate::tenant::for_read(&state, &headers)?;
    let source = state.source.clone();
    let data = blocking(move || {
        let mut by_series: BTreeMap<Labels, Vec<ExemplarJson>> = BTreeMap::new();
        for hit in source.exemplars_by_trace(&tenant, &trace_id)? {
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
