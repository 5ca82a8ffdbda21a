//! `POST /api/v1/write`: the Prometheus remote-write receiver, 1.0 and 2.0 on one endpoint.
//!
//! Request: a snappy (block format) compressed protobuf message, chosen by `Content-Type`:
//! `application/x-protobuf` or `…;proto=prometheus.WriteRequest` is remote write 1.0 ([`v1`]),
//! `…;proto=io.prometheus.write.v2.Request` is 2.0 ([`v2`]). Both end in the same storage
//! writes. Answers:
//! - `204` once every sample, histogram sample, exemplar and metadata entry is durably written;
//! - `400` naming what was wrong for input that can never succeed; valid series of the same
//!   request are still written (the spec allows it) and the body says how many were;
//! - `413` for a body over the limit, `415` for a content type, protobuf message or encoding
//!   other than those above;
//! - `503` when more requests are in progress than `max_inflight_writes` (shed, retryable), and
//!   other `5xx` only when the store failed and the sender should retry.
//!
//! Every answer, of either version and errors included, carries
//! `X-Prometheus-Remote-Write-{Samples,Histograms,Exemplars}-Written` with what was written.

pub(crate) mod histogram;
pub mod labels_cache;
mod to_v2;
mod v1;
mod v2;
pub(crate) mod wire;

/// Entry points for the coverage-guided fuzzer (`fuzz/`, built with `--cfg fuzzing`) into the
/// decoders that are private to this module.
#[cfg(fuzzing)]
pub mod fuzzing {
    use amber_storage::labels::{self, Label, LabelLimits, NameRules};

    /// The in-place reader over a decompressed body, and label validation of what it read;
    /// whether the reader accepted the body.
    pub fn in_place(body: &[u8]) -> bool {
        let Ok(req) = super::wire::WriteRequest::decode(body, |_| None) else { return false };
        for series in req.series() {
            let raw = series.labels().iter().map(|l| Label::new(l.name, l.value)).collect();
            let _ = labels::validate_series(raw, &LabelLimits::default(), NameRules::Legacy);
            for (exemplar_labels, _) in series.exemplars() {
                let _ =
                    labels::validate_exemplar(exemplar_labels.iter().map(|l| Label::new(l.name, l.value)).collect());
            }
            for h in series.histograms() {
                let _ = super::histogram::WireHistogram::from(h).to_sample();
            }
        }
        true
    }

    /// A decoded remote write 2.0 request's histograms, as the receiver turns them into samples.
    pub fn v2_histograms(req: &crate::prompb::writev2::Request) {
        for ts in &req.timeseries {
            for h in &ts.histograms {
                let _ = super::histogram::WireHistogram::from(h).to_sample();
            }
        }
    }
}

pub(crate) use to_v2::series_to_v2;
pub use to_v2::to_v2;

use std::collections::{HashMap, HashSet};
use std::error::Error as _;
use std::time::Instant;

use amber_storage::{DataKind, HistogramSample, Labels, MetricMetadata, NO_START, SeriesCreation, SeriesWrite};
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
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
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

/// The protobuf message a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    /// `prometheus.WriteRequest`.
    V1,
    /// `io.prometheus.write.v2.Request`.
    V2,
}

/// Picks the message by `Content-Type` and checks `Content-Encoding`; both may be absent (old
/// 1.0 senders omit them).
fn negotiate(headers: &HeaderMap) -> Result<Version, WriteError> {
    if let Some(enc) = headers.get("content-encoding") {
        let enc = enc.to_str().unwrap_or("");
        if !enc.eq_ignore_ascii_case("snappy") {
            return Err(WriteError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported Content-Encoding {enc:?}: remote write bodies must be snappy-compressed"),
            ));
        }
    }
    let Some(ct) = headers.get("content-type") else {
        return Ok(Version::V1);
    };
    let ct = ct.to_str().unwrap_or("");
    let mut parts = ct.split(';').map(str::trim);
    let media = parts.next().unwrap_or("");
    if !media.eq_ignore_ascii_case("application/x-protobuf") {
        return Err(WriteError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Type {ct:?}: expected application/x-protobuf"),
        ));
    }
    let proto = parts.find_map(|p| {
        let (name, value) = p.split_once('=')?;
        name.trim().eq_ignore_ascii_case("proto").then(|| value.trim().trim_matches('"'))
    });
    match proto {
        None | Some("prometheus.WriteRequest") => Ok(Version::V1),
        Some("io.prometheus.write.v2.Request") => Ok(Version::V2),
        Some(other) => Err(WriteError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported remote write protobuf message {other:?}: accepted are prometheus.WriteRequest (remote write 1.0) and io.prometheus.write.v2.Request (remote write 2.0)"
            ),
        )),
    }
}

/// The snappy-decoded body, or the 4xx answer saying why not.
pub(crate) fn decompress(body: &[u8], max_decoded_bytes: usize) -> Result<Vec<u8>, WriteError> {
    let len = snap::raw::decompress_len(body)
        .map_err(|e| WriteError::new(StatusCode::BAD_REQUEST, format!("snappy decode error: {e}")))?;
    if len > max_decoded_bytes {
        return Err(WriteError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("decompressed body is {len} bytes, over the limit of {max_decoded_bytes}"),
        ));
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| WriteError::new(StatusCode::BAD_REQUEST, format!("snappy decode error: {e}")))
}

fn decode_message<M: Message + Default>(raw: &[u8]) -> Result<M, WriteError> {
    M::decode(raw).map_err(protobuf_error)
}

/// The 400 for a body that is not the message it claims to be.
fn protobuf_error(e: prost::DecodeError) -> WriteError {
    WriteError::new(StatusCode::BAD_REQUEST, format!("protobuf decode error: {e}"))
}

/// Decodes a remote write 1.0 body into a `WriteRequest`, or the 4xx answer saying why not.
pub fn decode(body: &[u8], max_decoded_bytes: usize) -> Result<prompb::WriteRequest, WriteError> {
    decode_message(&decompress(body, max_decoded_bytes)?)
}

/// Start timestamps of one series of a remote write 1.0 request translated from OTLP (1.0 has
/// no field for them): each list empty, or one per sample or histogram sample of the series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesStarts {
    pub samples: Vec<i64>,
    pub histograms: Vec<i64>,
}

/// Decodes a remote write 2.0 body into a `Request`, or the 4xx answer saying why not.
pub fn decode_v2(body: &[u8], max_decoded_bytes: usize) -> Result<prompb::writev2::Request, WriteError> {
    decode_message(&decompress(body, max_decoded_bytes)?)
}

/// A request turned into storage writes, with what had to be refused before storage saw it.
#[derive(Default)]
struct Converted {
    series: Vec<SeriesWrite>,
    metadata: Vec<MetricMetadata>,
    errors: Vec<String>,
    samples_refused: u64,
    histograms_refused: u64,
    exemplars_refused: u64,
}

impl Converted {
    /// Refuses a whole series whose labels can never be stored.
    fn refuse_series(&mut self, metrics: &crate::metrics::Metrics, reason: &str, counts: [u64; 3], message: String) {
        let [samples, histograms, exemplars] = counts;
        metrics.rejected(DataKind::Sample, reason, samples);
        metrics.rejected(DataKind::Histogram, reason, histograms);
        metrics.rejected(DataKind::Exemplar, reason, exemplars);
        self.samples_refused += samples;
        self.histograms_refused += histograms;
        self.exemplars_refused += exemplars;
        self.errors.push(message);
    }

    /// Converts a series' histogram samples with their start timestamps (`starts`: empty, or
    /// one per histogram), refusing (with a message naming the series) those that can never be
    /// stored.
    fn histograms<'a, H>(
        &mut self,
        metrics: &crate::metrics::Metrics,
        labels: &Labels,
        wire: &'a [H],
        starts: &[i64],
    ) -> Vec<HistogramSample>
    where
        histogram::WireHistogram<'a>: From<&'a H>,
    {
        let mut out = Vec::with_capacity(wire.len());
        for (i, h) in wire.iter().enumerate() {
            let h = histogram::WireHistogram::from(h);
            match h.to_sample() {
                Ok(s) => out.push(HistogramSample { start_ts: starts.get(i).copied().unwrap_or(NO_START), ..s }),
                Err(e) => {
                    metrics.rejected(DataKind::Histogram, "invalid_histogram", 1);
                    self.histograms_refused += 1;
                    self.errors.push(format!("histogram sample at {} for series {labels}: {e}", h.timestamp));
                }
            }
        }
        out
    }

    /// Refuses both a float and a histogram sample sent for one series at one timestamp: a
    /// series holds one or the other at a time, and nothing says which the sender meant. Only
    /// requests with histograms pay for the check.
    fn refuse_float_histogram_clashes(&mut self, metrics: &crate::metrics::Metrics) {
        if self.series.iter().all(|s| s.histograms.is_empty()) {
            return;
        }
        let mut histogram_ts: HashMap<Labels, HashSet<i64>> = HashMap::new();
        for s in self.series.iter().filter(|s| !s.histograms.is_empty()) {
            histogram_ts.entry(s.labels.clone()).or_default().extend(s.histograms.iter().map(|h| h.ts));
        }
        let mut clashes: HashMap<Labels, HashSet<i64>> = HashMap::new();
        for s in &mut self.series {
            let Some(hist) = histogram_ts.get(&s.labels) else { continue };
            s.samples.retain(|x| {
                let clash = hist.contains(&x.ts);
                if clash {
                    clashes.entry(s.labels.clone()).or_default().insert(x.ts);
                }
                !clash
            });
        }
        if clashes.is_empty() {
            return;
        }
        let reason = "float_and_histogram_at_same_timestamp";
        for s in &mut self.series {
            let Some(at) = clashes.get(&s.labels) else { continue };
            let before = s.histograms.len();
            s.histograms.retain(|h| !at.contains(&h.ts));
            let refused = (before - s.histograms.len()) as u64;
            metrics.rejected(DataKind::Histogram, reason, refused);
            self.histograms_refused += refused;
        }
        for (labels, at) in clashes {
            let mut at: Vec<i64> = at.into_iter().collect();
            at.sort_unstable();
            for ts in at {
                metrics.rejected(DataKind::Sample, reason, 1);
                self.samples_refused += 1;
                self.errors.push(format!(
                    "float sample and histogram sample at {ts} for series {labels}: a series holds one or the other at a timestamp"
                ));
            }
        }
    }
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

/// Where a write's data goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Destination {
    /// The head and its log, in each series' time order (`/api/v1/write`, OTLP).
    Head,
    /// Sealed blocks, whatever the age and order (`/api/v1/import`: history).
    Blocks,
}

pub async fn handle(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    respond(&state, &headers, body, Destination::Head).await
}

/// `POST /api/v1/import`: a remote write body of history, written into sealed blocks
/// ([`amber_storage::backfill`]); answered as remote write is.
pub async fn import(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    respond(&state, &headers, body, Destination::Blocks).await
}

async fn respond(state: &AppState, headers: &HeaderMap, body: Body, to: Destination) -> Response {
    let started = std::time::Instant::now();
    let (mut response, written) = match write(state, headers, body, to).await {
        Ok(done) if done.errors.is_empty() => (StatusCode::NO_CONTENT.into_response(), done.written),
        Ok(done) => {
            // Refused only for now (new-series rate): the sender retries, and what was written
            // already is a duplicate then.
            let status = if done.retry_later { StatusCode::TOO_MANY_REQUESTS } else { StatusCode::BAD_REQUEST };
            (WriteError::new(status, done.summary()).into_response(), done.written)
        }
        Err(e) => (e.into_response(), Written::default()),
    };
    written.set_headers(response.headers_mut());
    state.metrics.observe_write(response.status().as_u16(), started.elapsed());
    response
}

async fn write(state: &AppState, headers: &HeaderMap, body: Body, to: Destination) -> Result<Ingested, WriteError> {
    let version = negotiate(headers)?;
    let tenant = crate::tenant::for_write(state, headers)?;
    let _permit = write_permit(state)?;
    let body = read_body(state, body).await?;
    let decoded_len = snap::raw::decompress_len(&body)
        .map_err(|e| WriteError::new(StatusCode::BAD_REQUEST, format!("snappy decode error: {e}")))?;
    let _bytes = hold_write_bytes(state, body.len() + decoded_len.min(state.limits.max_decoded_bytes))?;
    let raw = decompress(&body, state.limits.max_decoded_bytes)?;
    drop(body);
    let source = crate::diagnostics::Source::RemoteWrite;
    match version {
        Version::V1 => {
            // In a block of its own: the lookup's read lock must not be held across an await.
            let req = {
                let mut known = state.labels_cache.lookup();
                let req = wire::WriteRequest::decode(&raw, |raw| known.get(raw));
                known.finish();
                req
            };
            let req = req.map_err(protobuf_error)?;
            check_free_space(state)?;
            let converted = v1::convert(&req, &[], state);
            store(state, &tenant, converted, Vec::new(), source, to).await
        }
        Version::V2 => {
            let req: prompb::writev2::Request = decode_message(&raw)?;
            check_free_space(state)?;
            let converted = v2::convert(req, state)?;
            store(state, &tenant, converted, Vec::new(), source, to).await
        }
    }
}

/// Holds `bytes` of the memory write bodies may take at once (`max_inflight_write_bytes`) until
/// the permit drops, or a retryable 503 when they are taken: a flood of large bodies is shed
/// before it is decoded, not after memory ran out.
pub(crate) fn hold_write_bytes(
    state: &AppState,
    bytes: usize,
) -> Result<tokio::sync::OwnedSemaphorePermit, WriteError> {
    let kib = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
    state.write_bytes.clone().try_acquire_many_owned(kib).map_err(|_| {
        state.metrics.limit_exceeded("max_inflight_write_bytes");
        WriteError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "write bodies in progress hold too much memory to take {bytes} more bytes (limit max_inflight_write_bytes={}); retry later",
                state.limits.max_inflight_write_bytes
            ),
        )
    })
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

/// The request body, up to `max_body_bytes` (413 beyond), received within `body_read_timeout`
/// (408 after it: a sender trickling its body must not hold a write slot forever).
pub(crate) async fn read_body(state: &AppState, body: Body) -> Result<Bytes, WriteError> {
    let limit = state.limits.max_body_bytes;
    let timeout = state.limits.body_read_timeout;
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) if e.source().is_some_and(|e| e.is::<http_body_util::LengthLimitError>()) => {
            state.metrics.limit_exceeded("max_body_bytes");
            Err(WriteError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is over the limit of {limit} bytes"),
            ))
        }
        Ok(Err(e)) => Err(WriteError::new(StatusCode::BAD_REQUEST, format!("reading the request body: {e}"))),
        Err(_) => {
            state.metrics.limit_exceeded("body_read_timeout");
            Err(WriteError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("the request body did not arrive within body_read_timeout={}s", timeout.as_secs_f64()),
            ))
        }
    }
}

/// What a write stored, as the `X-Prometheus-Remote-Write-*-Written` headers report it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Written {
    pub samples: u64,
    pub histograms: u64,
    pub exemplars: u64,
}

impl Written {
    fn set_headers(&self, headers: &mut HeaderMap) {
        let counts = [
            ("x-prometheus-remote-write-samples-written", self.samples),
            ("x-prometheus-remote-write-histograms-written", self.histograms),
            ("x-prometheus-remote-write-exemplars-written", self.exemplars),
        ];
        for (name, n) in counts {
            headers.insert(name, n.into());
        }
    }
}

/// What a write did: counts, and a message per refused series, sample or exemplar.
pub(crate) struct Ingested {
    pub written: Written,
    pub samples_rejected: u64,
    pub histograms_rejected: u64,
    pub exemplars_rejected: u64,
    pub errors: Vec<String>,
    /// Some entries were refused only for now, by a rate limit; nothing was refused for good.
    pub retry_later: bool,
}

impl Ingested {
    /// `N samples and M exemplars rejected; K samples and L exemplars written. ` (histogram
    /// samples listed too when the request had any) and the first messages.
    pub fn summary(&self) -> String {
        let listed = self.errors.len().min(MAX_LISTED_ERRORS);
        let w = &self.written;
        let mut message = if self.histograms_rejected + w.histograms == 0 {
            format!(
                "{} samples and {} exemplars rejected; {} samples and {} exemplars written. ",
                self.samples_rejected, self.exemplars_rejected, w.samples, w.exemplars
            )
        } else {
            format!(
                "{} samples, {} histogram samples and {} exemplars rejected; {} samples, {} histogram samples and {} exemplars written. ",
                self.samples_rejected,
                self.histograms_rejected,
                self.exemplars_rejected,
                w.samples,
                w.histograms,
                w.exemplars
            )
        };
        message.push_str(&self.errors[..listed].join("; "));
        if self.errors.len() > listed {
            message.push_str(&format!("; and {} more errors", self.errors.len() - listed));
        }
        message
    }
}

/// The refusals a `400` body written by [`Ingested::summary`] lists, one message each: what
/// follows its counts. A distributor reads them from its ingesters' answers.
pub(crate) fn refusals(body: &str) -> Vec<String> {
    let listed = body.split_once("written. ").map_or(body, |(_, rest)| rest).trim();
    listed.split("; ").filter(|m| !m.is_empty()).map(str::to_string).collect()
}

/// Validates and writes a decoded remote write 1.0 request for `tenant` under its limits; shared
/// by remote write and OTLP (which translates to the same form). `starts` are the start
/// timestamps of its series (empty, or one entry per series: only OTLP has them); `refused` are
/// messages of points the caller already refused, each counted as one rejected sample.
pub(crate) async fn ingest(
    state: &AppState,
    tenant: &crate::tenant::WriteTenant,
    req: &wire::WriteRequest<'_>,
    starts: &[SeriesStarts],
    refused: Vec<String>,
    source: crate::diagnostics::Source,
) -> Result<Ingested, WriteError> {
    check_free_space(state)?;
    let converted = v1::convert(req, starts, state);
    store(state, tenant, converted, refused, source, Destination::Head).await
}

/// Writes a converted request of either version for `tenant` under its limits.
async fn store(
    state: &AppState,
    tenant: &crate::tenant::WriteTenant,
    converted: Converted,
    refused: Vec<String>,
    source: crate::diagnostics::Source,
    to: Destination,
) -> Result<Ingested, WriteError> {
    let Converted { series, metadata, mut errors, samples_refused, histograms_refused, exemplars_refused } = converted;
    for (family, stats) in state.diagnostics.record(tenant.id, source, &series) {
        state.metrics.family(&tenant.name, &family, source.as_str(), &stats);
    }
    if let Some(limit) = &tenant.ingestion {
        // A histogram sample counts as one sample.
        let entries: usize = series.iter().map(|s| s.samples.len() + s.histograms.len() + s.exemplars.len()).sum();
        let now = std::time::Instant::now();
        if !state.ingestion.allow(&tenant.name, entries as f64, limit.rate, limit.burst, now) {
            state.metrics.limit_exceeded("ingestion_rate");
            return Err(WriteError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "ingestion rate limit of {} samples/s with bursts of {} (ingestion_rate, ingestion_burst){} exceeded by tenant {:?} writing {entries} samples and exemplars; retry later",
                    limit.rate, limit.burst, limit.explained, tenant.name
                ),
            ));
        }
    }
    if state.distributor.is_some() && to == Destination::Blocks {
        return Err(WriteError::new(
            StatusCode::NOT_IMPLEMENTED,
            "a distributor does not import history: import into a single node (role all) and let it upload, or into each ingester",
        ));
    }
    if let Some(distributor) = &state.distributor {
        let forwarded = distributor.forward(&tenant.name, &series, &metadata, &state.metrics).await?;
        let sent = |count: fn(&SeriesWrite) -> usize| series.iter().map(count).sum::<usize>() as u64;
        let w = forwarded.written;
        errors.extend(forwarded.refused);
        return Ok(Ingested {
            written: w,
            samples_rejected: samples_refused + refused.len() as u64 + sent(|s| s.samples.len()) - w.samples,
            histograms_rejected: histograms_refused + sent(|s| s.histograms.len()) - w.histograms,
            exemplars_rejected: exemplars_refused + sent(|s| s.exemplars.len()) - w.exemplars,
            errors: refused.into_iter().chain(errors).collect(),
            retry_later: false,
        });
    }
    let storage = state.storage.clone();
    let (id, max_series) = (tenant.id, tenant.max_series);
    let new_series =
        tenant.new_series.as_ref().map(|l| (state.new_series.clone(), tenant.name.clone(), l.rate, l.burst));
    let report = tokio::task::spawn_blocking(move || {
        let grant = |n| match &new_series {
            Some((buckets, tenant, rate, burst)) => buckets.take_up_to(tenant, n, *rate, *burst, Instant::now()),
            None => n,
        };
        let limits = SeriesCreation { max_series: Some(max_series), new_series_budget: Some(&grant) };
        match to {
            Destination::Head => storage.append(id, &series, &metadata, limits),
            Destination::Blocks => storage.backfill(id, &series, &metadata, limits),
        }
    })
    .await
    .map_err(|e| WriteError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("write task failed, retry: {e}")))?
    .map_err(|e| {
        tracing::error!(error = %e, "write failed in storage");
        WriteError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("storage error, retry: {e}"))
    })?;
    let metrics = &state.metrics;
    metrics.ingested(&report);
    let mut done = Ingested {
        written: Written {
            samples: report.samples_written,
            histograms: report.histograms_written,
            exemplars: report.exemplars_written,
        },
        samples_rejected: samples_refused + refused.len() as u64,
        histograms_rejected: histograms_refused,
        exemplars_rejected: exemplars_refused,
        errors: refused,
        retry_later: false,
    };
    done.errors.append(&mut errors);
    if report.rejected.iter().any(|r| matches!(r.reason, amber_storage::RejectReason::SeriesLimit(_))) {
        metrics.limit_exceeded("max_series_per_tenant");
        if tenant.max_series_explained.is_part() {
            done.errors.push(format!(
                "max_series_per_tenant here is {} series{}",
                tenant.max_series, tenant.max_series_explained
            ));
        }
    }
    let for_now = |r: &&amber_storage::Rejection| r.reason == amber_storage::RejectReason::NewSeriesRate;
    let rate_limited: HashSet<&Labels> = report.rejected.iter().filter(for_now).map(|r| &r.series).collect();
    if let (false, Some(limit)) = (rate_limited.is_empty(), &tenant.new_series) {
        metrics.limit_exceeded("new_series_rate");
        // A 429 makes the sender retry the whole request: only when nothing in it can never succeed.
        done.retry_later = done.errors.is_empty() && report.rejected.iter().all(|r| for_now(&r));
        done.errors.push(format!(
            "new-series rate limit of {} series/s with bursts of {} (new_series_rate, new_series_burst){} reached by tenant {:?}: {} new series refused, retry later",
            limit.rate,
            limit.burst,
            limit.explained,
            tenant.name,
            rate_limited.len()
        ));
    }
    if report.rejected.iter().any(|r| matches!(r.reason, amber_storage::RejectReason::ExemplarLimit(_))) {
        metrics.limit_exceeded("max_exemplars_per_series_per_window");
    }
    for r in &report.rejected {
        metrics.rejected(r.kind, r.reason.as_str(), 1);
        match r.kind {
            DataKind::Sample => done.samples_rejected += 1,
            DataKind::Histogram => done.histograms_rejected += 1,
            DataKind::Exemplar => done.exemplars_rejected += 1,
        }
        done.errors.push(r.to_string());
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A distributor reads back, one by one, the refusals an ingester's 400 listed.
    #[test]
    fn refusals_are_read_back_from_a_summary() {
        let done = Ingested {
            written: Written { samples: 3, histograms: 0, exemplars: 1 },
            samples_rejected: 2,
            histograms_rejected: 0,
            exemplars_rejected: 0,
            errors: vec![
                "series {__name__=\"a\"}: out of order sample".into(),
                "series {__name__=\"b\"}: too old".into(),
            ],
            retry_later: false,
        };
        assert_eq!(
            refusals(&done.summary()),
            ["series {__name__=\"a\"}: out of order sample", "series {__name__=\"b\"}: too old"]
        );
    }
}
