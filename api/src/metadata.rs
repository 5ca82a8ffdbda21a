//! `GET /api/v1/metadata`: metric type, help and unit per metric family, as senders reported them.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use serde::Serialize;

use crate::AppState;
use crate::error::{ApiError, blocking};
use crate::params::Params;
use crate::response::success;

#[derive(Serialize)]
struct MetadataJson {
    #[serde(rename = "type")]
    metric_type: &'static str,
    help: String,
    unit: String,
}

pub async fn metadata(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Result<Response, ApiError> {
    let params = Params::from_request(&uri, &headers, &Bytes::new());
    let tenant = crate::tenant::for_read(&state, &headers)?;
    let limit = params.limit("limit")?;
    let limit_per_metric = params.limit("limit_per_metric")?;
    let metric = params.get("metric").map(str::to_string);
    let source = state.source.clone();
    let found = blocking(move || Ok(source.metadata(&tenant, metric.as_deref())?)).await?;
    let data: BTreeMap<String, Vec<MetadataJson>> = found
        .into_iter()
        .take(limit.unwrap_or(usize::MAX))
        .map(|(family, entries)| {
            let entries = entries
                .into_iter()
                .take(limit_per_metric.unwrap_or(usize::MAX))
                .map(|m| MetadataJson { metric_type: m.metric_type.as_str(), help: m.help, unit: m.unit })
                .collect();
            (family, entries)
        })
        .collect();
    Ok(success(data, Vec::new()))
}
