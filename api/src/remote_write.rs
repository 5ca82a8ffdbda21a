//! `POST /api/v1/write`: the Prometheus remote-write 1.0 receiver.
//!
//! Request: a snappy (block format) compressed `prometheus.WriteRequest`. Answers:
//! - `204` once every sample, exemplar and metadata entry is durably written;
//! - `400` naming what was wrong for input that can never succeed; valid series of the same
//!   request are still written (the spec allows it) and the body says how many were;
//! - `413` for a body over the limit, `415` for a content type or encoding other than remote
//!   write 1.0's;
//! - `503` when more requests are in progress than `max_inflight_writes` (shed, retryable), and
//!   other `5xx` only when the store failed and the sender should retry.

use amber_storage::labels::{self, Label};
use amber_storage::{Exemplar, MetricMetadata, MetricType, Sample, SeriesWrite};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use prost::Message;

use crate::AppState;
use crate::prompb;

/// Rejection messages listed in a 400 body; the rest are counted.
const MAX_LISTED_ERRORS: usize = 10;

/// A refused request: its status and the plain-text message naming what was wrong, as
/// Prometheus's own receiver answers.
#[derive(Debug)]
pub struct WriteError {
    pub status: StatusCode,
    pub message: String,
}

impl WriteError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        WriteError { status, message: message.into() }
    }
}

impl From<crate::tenant::TenantError> for WriteError {
    fn from(e: crate::tenant::TenantError) -> Self {
        WriteError { status: e.status, message: e.message }
    }
}

impl IntoResponse for WriteError {
    fn into_response(self) -> Response {
        (self.status, self.message).into_response()
    }
}

/// Checks `Content-Type` and `Content-Encoding` when present (old senders omit them).
fn check_headers(headers: &HeaderMap) -> Result<(), WriteError> {
    if let Some(enc) = headers.get("content-encoding") {
        let enc = enc.to_str().unwrap_or("");
        if !enc.eq_ignore_ascii_case("snappy") {
            return Err(WriteError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported Content-Encoding {enc:?}: remote write 1.0 bodies must be snappy-compressed"),
            ));
        }
    }
    if let Some(ct) = headers.get("content-type") {
        let ct = ct.to_str().unwrap_or("");
        let mut parts = ct.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        if !media.eq_ignore_ascii_case("application/x-protobuf") {
            return Err(WriteError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported Content-Type {ct:?}: expected application/x-protobuf"),
            ));
        }
        if let Some(proto) = parts.find_map(|p| p.strip_prefix("proto=")) {
            if proto != "prometheus.WriteRequest" {
                return Err(WriteError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!(
                        "unsupported remote write protobuf message {proto:?}: only prometheus.WriteRequest (remote write 1.0) is accepted"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Decodes the body into a `WriteRequest`, or the 4xx answer saying why not.
pub fn decode(body: &[u8], max_decoded_bytes: usize) -> Result<prompb::WriteRequest, WriteError> {
    let len = snap::raw::decompress_len(body)
        .map_err(|e| WriteError::new(StatusCode::BAD_REQUEST, format!("snappy decode error: {e}")))?;
    if len > max_decoded_bytes {
        return Err(WriteError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("decompressed body is {len} bytes, over the limit of {max_decoded_bytes}"),
        ));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| WriteError::new(StatusCode::BAD_REQUEST, format!("snappy decode error: {e}")))?;
    prompb::WriteRequest::decode(raw.as_slice())
        .map_err(|e| WriteError::new(StatusCode::BAD_REQUEST, format!("protobuf decode error: {e}")))
}

/// A request turned into storage writes, with what had to be refused before storage saw it.
struct Converted {
    series: Vec<SeriesWrite>,
    metadata: Vec<MetricMetadata>,
    errors: Vec<String>,
    samples_refused: u64,
    exemplars_refused: u64,
}

fn to_labels(labels: Vec<prompb::Label>) -> Vec<Label> {
    labels.into_iter().map(|l| Label { name: l.name, value: l.value }).collect()
}

fn convert(req: prompb::WriteRequest, state: &AppState) -> Converted {
    let mut out = Converted {
        series: Vec::with_capacity(req.timeseries.len()),
        metadata: Vec::new(),
        errors: Vec::new(),
        samples_refused: 0,
        exemplars_refused: 0,
    };
    let metrics = &state.metrics;
    for ts in req.timeseries {
        let raw = to_labels(ts.labels);
        let series_labels = match labels::check_series(&raw, &state.limits.labels) {
            Ok(()) => labels::validate_series(raw, &state.limits.labels).expect("checked just above"),
            Err(e) => {
                let shown = labels::format_list(&raw);
                metrics.rejected(false, e.reason(), ts.samples.len() as u64);
                metrics.rejected(true, e.reason(), ts.exemplars.len() as u64);
                out.samples_refused += ts.samples.len() as u64;
                out.exemplars_refused += ts.exemplars.len() as u64;
                out.errors.push(format!("series {shown}: {e}"));
                continue;
            }
        };
        if !ts.histograms.is_empty() {
            metrics.rejected(false, "native_histogram", ts.histograms.len() as u64);
            out.samples_refused += ts.histograms.len() as u64;
            out.errors.push(format!("series {series_labels}: native histogram samples are not supported yet"));
        }
        let samples = ts.samples.iter().map(|s| Sample { ts: s.timestamp, value: s.value }).collect();
        let mut exemplars = Vec::with_capacity(ts.exemplars.len());
        for e in ts.exemplars {
            match labels::validate_exemplar(to_labels(e.labels)) {
                Ok(l) => exemplars.push(Exemplar { ts: e.timestamp, value: e.value, labels: l }),
                Err(err) => {
                    metrics.rejected(true, "invalid_exemplar_labels", 1);
                    out.exemplars_refused += 1;
                    out.errors.push(format!("exemplar at {} for series {series_labels}: {err}", e.timestamp));
                }
            }
        }
        out.series.push(SeriesWrite { labels: series_labels, samples, histograms: Vec::new(), exemplars });
    }
    out.metadata = req
        .metadata
        .into_iter()
        .map(|m| MetricMetadata {
            metric_family: m.metric_family_name,
            metric_type: MetricType::from_i32(m.r#type),
            help: m.help,
            unit: m.unit,
        })
        .collect();
    out
}

/// Refuses the write while free space is below `min_free_disk_bytes` (507, retryable): RocksDB
/// meeting a full disk stops the process, and reads must keep working.
fn check_free_space(state: &AppState) -> Result<(), WriteError> {
    let min = state.limits.min_free_disk_bytes;
    match state.storage.free_disk_bytes() {
        Ok(free) if free < min => {
            state.metrics.limit_exceeded("min_free_disk_bytes");
            Err(WriteError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                format!(
                    "storage is out of space, retry later: {free} bytes free in {}, below min_free_disk_bytes={min}",
                    state.storage.path().display()
                ),
            ))
        }
        Ok(_) => Ok(()),
        Err(e) => Err(WriteError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read the free space of the store, retry: {e}"),
        )),
    }
}

pub async fn handle(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let started = std::time::Instant::now();
    let response = write(&state, &headers, body).await.unwrap_or_else(IntoResponse::into_response);
    state.metrics.observe_write(response.status().as_u16(), started.elapsed());
    response
}

async fn write(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Response, WriteError> {
    check_headers(headers)?;
    let tenant = crate::tenant::for_write(state, headers)?;
    let _permit = write_permit(state)?;
    let body = read_body(state, body).await?;
    let req = decode(&body, state.limits.max_decoded_bytes)?;
    let done = ingest(state, &tenant, req, Vec::new(), crate::diagnostics::Source::RemoteWrite).await?;
    if done.errors.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Err(WriteError::new(StatusCode::BAD_REQUEST, done.summary()))
}

/// A slot among the writes processed at once, or a retryable 503. Writes are shed rather than
/// queued: a queue would hold bodies in memory without bound.
pub(crate) fn write_permit(state: &AppState) -> Result<tokio::sync::OwnedSemaphorePermit, WriteError> {
    state.write_permits.clone().try_acquire_owned().map_err(|_| {
        state.metrics.limit_exceeded("max_inflight_writes");
        WriteError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many write requests in progress (limit max_inflight_writes={}); retry later",
                state.limits.max_inflight_writes
            ),
        )
    })
}

/// The request body, up to `max_body_bytes` (413 beyond).
pub(crate) async fn read_body(state: &AppState, body: Body) -> Result<Bytes, WriteError> {
    let limit = state.limits.max_body_bytes;
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        state.metrics.limit_exceeded("max_body_bytes");
        WriteError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("request body is over the limit of {limit} bytes"))
    })
}

/// What a write did: counts, and a message per refused series, sample or exemplar.
pub(crate) struct Ingested {
    pub samples_written: u64,
    pub exemplars_written: u64,
    pub samples_rejected: u64,
    pub exemplars_rejected: u64,
    pub errors: Vec<String>,
}

impl Ingested {
    /// `N samples and M exemplars rejected; K samples and L exemplars written. ` and the first
    /// messages.
    pub fn summary(&self) -> String {
        let listed = self.errors.len().min(MAX_LISTED_ERRORS);
        let mut message = format!(
            "{} samples and {} exemplars rejected; {} samples and {} exemplars written. ",
            self.samples_rejected, self.exemplars_rejected, self.samples_written, self.exemplars_written
        );
        message.push_str(&self.errors[..listed].join("; "));
        if self.errors.len() > listed {
            message.push_str(&format!("; and {} more errors", self.errors.len() - listed));
        }
        message
    }
}

/// Validates and writes a decoded request for `tenant` under its limits; shared by remote write
/// and OTLP (which translates to the same form). `refused` are messages of points the caller
/// already refused, each counted as one rejected sample.
pub(crate) async fn ingest(
    state: &AppState,
    tenant: &crate::tenant::WriteTenant,
    req: prompb::WriteRequest,
    refused: Vec<String>,
    source: crate::diagnostics::Source,
) -> Result<Ingested, WriteError> {
    check_free_space(state)?;
    let Converted { series, metadata, mut errors, samples_refused, exemplars_refused } = convert(req, state);
    for (family, stats) in state.diagnostics.record(tenant.id, source, &series) {
        state.metrics.family(&tenant.name, &family, source.as_str(), &stats);
    }
    if tenant.ingestion_rate > 0.0 {
        let entries: usize = series.iter().map(|s| s.samples.len() + s.exemplars.len()).sum();
        let burst = state.limits.ingestion_burst.max(tenant.ingestion_rate);
        let now = std::time::Instant::now();
        if !state.ingestion.allow(&tenant.name, entries as f64, tenant.ingestion_rate, burst, now) {
            state.metrics.limit_exceeded("ingestion_rate");
            return Err(WriteError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "ingestion rate limit of {} samples/s with bursts of {} (ingestion_rate, ingestion_burst) exceeded by tenant {:?} writing {entries} samples and exemplars; retry later",
                    tenant.ingestion_rate, burst, tenant.name
                ),
            ));
        }
    }
    let storage = state.storage.clone();
    let (id, max_series) = (tenant.id, tenant.max_series);
    let report = tokio::task::spawn_blocking(move || storage.append(id, &series, &metadata, Some(max_series)))
        .await
        .map_err(|e| WriteError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("write task failed, retry: {e}")))?
        .map_err(|e| {
            tracing::error!(error = %e, "write failed in storage");
            WriteError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("storage error, retry: {e}"))
        })?;
    let metrics = &state.metrics;
    metrics.ingested(report.samples_written, report.exemplars_written, report.series_created);
    let mut done = Ingested {
        samples_written: report.samples_written,
        exemplars_written: report.exemplars_written,
        samples_rejected: samples_refused + refused.len() as u64,
        exemplars_rejected: exemplars_refused,
        errors: refused,
    };
    done.errors.append(&mut errors);
    if report.rejected.iter().any(|r| matches!(r.reason, amber_storage::RejectReason::SeriesLimit(_))) {
        metrics.limit_exceeded("max_series_per_tenant");
    }
    if report.rejected.iter().any(|r| matches!(r.reason, amber_storage::RejectReason::ExemplarLimit(_))) {
        metrics.limit_exceeded("max_exemplars_per_series_per_window");
    }
    for r in &report.rejected {
        let exemplar = r.kind == amber_storage::DataKind::Exemplar;
        metrics.rejected(exemplar, r.reason.as_str(), 1);
        if exemplar {
            done.exemplars_rejected += 1;
        } else {
            done.samples_rejected += 1;
        }
        done.errors.push(r.to_string());
    }
    Ok(done)
}
