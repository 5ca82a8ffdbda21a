//! `/api/v1/series`, `/api/v1/labels` and `/api/v1/label/<name>/values`.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;

use crate::AppState;
use crate::error::{ApiError, blocking};
use crate::params::Params;
use crate::response::success;

const TRUNCATED: &str = "results truncated due to limit";

/// Cuts `items` to `limit`, returning the warning Prometheus gives when it had to.
fn truncate<T>(items: &mut Vec<T>, limit: Option<usize>) -> Vec<String> {
    match limit {
        Some(l) if items.len() > l => {
            items.truncate(l);
            vec![TRUNCATED.to_string()]
        }
        _ => Vec::new(),
    }
}

pub async fn series(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = Params::from_request(&uri, &headers, &body);
    let tenant = crate::tenant::for_read(&state, &headers)?;
    let selectors = params.selectors()?;
    if selectors.is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let (start, end) = params.time_range()?;
    let limit = params.limit("limit")?;
    let source = state.source.clone();
    let mut data: Vec<BTreeMap<String, String>> = blocking(move || {
        Ok(source
            .series(&tenant, &selectors, start, end)?
            .into_iter()
            .map(|labels| labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect())
            .collect())
    })
    .await?;
    let warnings = truncate(&mut data, limit);
    Ok(success(data, warnings))
}

pub async fn label_names(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = Params::from_request(&uri, &headers, &body);
    let tenant = crate::tenant::for_read(&state, &headers)?;
    let selectors = params.selectors()?;
    let (start, end) = params.time_range()?;
    let limit = params.limit("limit")?;
    let source = state.source.clone();
    let mut names = blocking(move || Ok(source.label_names(&tenant, &selectors, start, end)?)).await?;
    let warnings = truncate(&mut names, limit);
    Ok(success(names, warnings))
}

pub async fn label_values(
    State(state): State<AppState>,
    Path(name): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let params = Params::from_request(&uri, &headers, &Bytes::new());
    let tenant = crate::tenant::for_read(&state, &headers)?;
    if name.is_empty()
        || !name.bytes().enumerate().all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()))
    {
        return Err(ApiError::bad_data(format!("invalid label name: {name:?}")));
    }
    let selectors = params.selectors()?;
    let (start, end) = params.time_range()?;
    let limit = params.limit("limit")?;
    let source = state.source.clone();
    let mut values = blocking(move || Ok(source.label_values(&tenant, &name, &selectors, start, end)?)).await?;
    let warnings = truncate(&mut values, limit);
    Ok(success(values, warnings))
}
