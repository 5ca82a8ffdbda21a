//! Exemplar diagnostics: per tenant, metric family and source (remote write or OTLP), how many
//! samples and exemplars arrived and when the last exemplar came, so that "this histogram gets no
//! exemplars" shows at a glance — on `GET /api/v1/status/exemplars` (the request's tenant) and as
//! `amber_family_*` series on `/metrics` for the Amber dashboard. Counted since the process
//! started, from what arrived (before limits refuse anything).

use std::collections::BTreeMap;

use amber_storage::{SeriesWrite, TenantId};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use parking_lot::Mutex;
use serde::Serialize;

use crate::AppState;
use crate::error::ApiError;

/// Where data came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    RemoteWrite,
    Otlp,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::RemoteWrite => "remote_write",
            Source::Otlp => "otlp",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FamilyStats {
    pub samples: u64,
    pub exemplars: u64,
    /// Newest sample and exemplar timestamps seen, in milliseconds.
    pub last_sample_ms: Option<i64>,
    pub last_exemplar_ms: Option<i64>,
}

#[derive(Default)]
pub struct Diagnostics {
    families: Mutex<BTreeMap<(TenantId, String, Source), FamilyStats>>,
}

/// The family of a series name: histogram and summary parts count as their histogram.
pub fn family(name: &str) -> &str {
    ["_bucket", "_count", "_sum"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name)
}

impl Diagnostics {
    /// Counts what one request brought.
    pub fn record(&self, tenant: TenantId, source: Source, series: &[SeriesWrite]) -> Vec<(String, FamilyStats)> {
        let mut per_family: BTreeMap<&str, FamilyStats> = BTreeMap::new();
        for s in series {
            let f = per_family.entry(family(s.labels.metric_name().unwrap_or(""))).or_default();
            f.samples += s.samples.len() as u64;
            f.exemplars += s.exemplars.len() as u64;
            f.last_sample_ms = f.last_sample_ms.max(s.samples.iter().map(|x| x.ts).max());
            f.last_exemplar_ms = f.last_exemplar_ms.max(s.exemplars.iter().map(|x| x.ts).max());
        }
        let mut all = self.families.lock();
        per_family
            .into_iter()
            .map(|(name, add)| {
                let f = all.entry((tenant, name.to_string(), source)).or_default();
                f.samples += add.samples;
                f.exemplars += add.exemplars;
                f.last_sample_ms = f.last_sample_ms.max(add.last_sample_ms);
                f.last_exemplar_ms = f.last_exemplar_ms.max(add.last_exemplar_ms);
                (name.to_string(), f.clone())
            })
            .collect()
    }

    fn of_tenant(&self, tenant: TenantId) -> Vec<(String, Source, FamilyStats)> {
        let all = self.families.lock();
        all.iter().filter(|((t, _, _), _)| *t == tenant).map(|((_, f, s), v)| (f.clone(), *s, v.clone())).collect()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FamilyJson {
    family: String,
    source: &'static str,
    samples: u64,
    exemplars: u64,
    last_sample: Option<Box<serde_json::value::RawValue>>,
    last_exemplar: Option<Box<serde_json::value::RawValue>>,
}

/// `GET /api/v1/status/exemplars`: the request tenant's families, by name then source.
pub async fn exemplars(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let tenant = crate::tenant::for_local_read(&state, &headers)?;
    let rows = tenant.map(|t| state.diagnostics.of_tenant(t)).unwrap_or_default();
    let data: Vec<FamilyJson> = rows
        .into_iter()
        .map(|(family, source, f)| FamilyJson {
            family,
            source: source.as_str(),
            samples: f.samples,
            exemplars: f.exemplars,
            last_sample: f.last_sample_ms.map(crate::response::timestamp),
            last_exemplar: f.last_exemplar_ms.map(crate::response::timestamp),
        })
        .collect();
    Ok(crate::response::success(data, Vec::new()))
}
