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

impl FamilyStats {
    fn add(&mut self, other: &FamilyStats) {
        self.samples += other.samples;
        self.exemplars += other.exemplars;
        self.last_sample_ms = self.last_sample_ms.max(other.last_sample_ms);
        self.last_exemplar_ms = self.last_exemplar_ms.max(other.last_exemplar_ms);
    }
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
        // Senders send a family's series one after another (a histogram's buckets, a target's
        // metrics in exposition order): each run of them is counted apart and looked up once.
        let mut run: Option<(&str, FamilyStats)> = None;
        for s in series {
            let name = family(s.labels.metric_name().unwrap_or(""));
            if run.as_ref().is_none_or(|(current, _)| *current != name) {
                if let Some((done, stats)) = run.replace((name, FamilyStats::default())) {
                    per_family.entry(done).or_default().add(&stats);
                }
            }
            let f = &mut run.as_mut().expect("set above").1;
            f.samples += s.samples.len() as u64;
            f.exemplars += s.exemplars.len() as u64;
            f.last_sample_ms = f.last_sample_ms.max(s.samples.iter().map(|x| x.ts).max());
            f.last_exemplar_ms = f.last_exemplar_ms.max(s.exemplars.iter().map(|x| x.ts).max());
        }
        if let Some((done, stats)) = run {
            per_family.entry(done).or_default().add(&stats);
        }
        let mut all = self.families.lock();
        per_family
            .into_iter()
            .map(|(name, add)| {
                let f = all.entry((tenant, name.to_string(), source)).or_default();
                f.add(&add);
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

#[cfg(test)]
mod tests {
    use super::*;
    use amber_storage::{Exemplar, Label, Labels, Sample};

    fn write(name: &str, ts: i64, exemplars: usize) -> SeriesWrite {
        let labels = Labels::from_unsorted(vec![Label::new("__name__", name), Label::new("job", "a")]);
        let exemplar = Exemplar { ts, value: 1.0, labels: Labels::default() };
        SeriesWrite {
            labels,
            samples: vec![Sample { ts, value: 1.0, start_ts: 0 }],
            histograms: Vec::new(),
            exemplars: vec![exemplar; exemplars],
        }
    }

    /// A family's series counted together wherever they come in the request, and across requests.
    #[test]
    fn families_are_counted_across_runs_and_requests() {
        let d = Diagnostics::default();
        let first = [write("h_bucket", 10, 1), write("h_sum", 20, 0), write("up", 5, 0), write("h_count", 15, 2)];
        let got = d.record(TenantId::DEFAULT, Source::RemoteWrite, &first);
        let stats = |samples, exemplars, last_sample, last_exemplar| FamilyStats {
            samples,
            exemplars,
            last_sample_ms: Some(last_sample),
            last_exemplar_ms: last_exemplar,
        };
        assert_eq!(got, [("h".to_string(), stats(3, 3, 20, Some(15))), ("up".to_string(), stats(1, 0, 5, None))]);
        let got = d.record(TenantId::DEFAULT, Source::RemoteWrite, &[write("up", 30, 1)]);
        assert_eq!(got, [("up".to_string(), stats(2, 1, 30, Some(30)))]);
    }
}
