//! The OTLP metrics receiver: over HTTP at `POST /otlp/v1/metrics` (also
//! `/api/v1/otlp/v1/metrics`, Prometheus 3's path), and over gRPC as
//! `opentelemetry.proto.collector.metrics.v1.MetricsService/Export` (`grpc`, port 4317 by default).
//!
//! Request: an `ExportMetricsServiceRequest`, protobuf or JSON (`json`), optionally
//! gzip-compressed; the answer uses the request's encoding. It is translated
//! to Prometheus series (`translate`) and written exactly as a remote write is, under the same
//! tenant, limits and durability. Answers follow the OTLP specification: `200` with an
//! `ExportMetricsServiceResponse` once written, whose `partial_success` counts and explains the
//! data points that were refused; `400` for a body that is not OTLP; `413`, `415`; retryable
//! `429`/`503`/`507`/`5xx` as for remote write. Error bodies are `google.rpc.Status` messages.

pub mod grpc;
pub mod json;
mod native_histograms;
pub mod proto;
pub mod translate;

use std::io::Read;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use prost::Message;

use crate::AppState;
use crate::remote_write::wire::WriteRequest;
use crate::remote_write::{WriteError, hold_write_bytes, ingest, read_body, write_permit};
use proto::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// `google.rpc.Status`, the body of OTLP/HTTP error responses.
#[derive(Clone, PartialEq, Message)]
pub struct Status {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

fn error_response(e: WriteError, is_json: bool) -> Response {
    // gRPC codes: INVALID_ARGUMENT for what cannot succeed, UNAVAILABLE for what may on retry.
    let code = if e.status.is_client_error() && e.status != StatusCode::TOO_MANY_REQUESTS { 3 } else { 14 };
    if is_json {
        let body = serde_json::json!({"code": code, "message": e.message}).to_string();
        return (e.status, [("content-type", JSON)], body).into_response();
    }
    let body = Status { code, message: e.message }.encode_to_vec();
    (e.status, [("content-type", PROTOBUF)], body).into_response()
}

fn bad(status: StatusCode, message: String) -> WriteError {
    WriteError { status, message }
}

pub async fn handle(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let started = std::time::Instant::now();
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    let is_json = content_type.starts_with(JSON);
    let response = export(&state, &headers, body, is_json).await.unwrap_or_else(|e| error_response(e, is_json));
    state.metrics.observe_write(response.status().as_u16(), started.elapsed());
    response
}

/// The request body, gunzipped when it says so, up to `max_decoded_bytes`.
fn decompress(headers: &HeaderMap, body: &[u8], max: usize) -> Result<Vec<u8>, WriteError> {
    match headers.get("content-encoding").map(|v| v.to_str().unwrap_or("").to_ascii_lowercase()) {
        None => Ok(body.to_vec()),
        Some(e) if e == "identity" => Ok(body.to_vec()),
        Some(e) if e == "gzip" => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body)
                .take(max as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| bad(StatusCode::BAD_REQUEST, format!("invalid gzip body: {e}")))?;
            if out.len() > max {
                return Err(bad(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("decompressed body is over the limit of {max} bytes"),
                ));
            }
            Ok(out)
        }
        Some(other) => Err(bad(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Encoding {other:?}: OTLP bodies may be gzip-compressed or not compressed"),
        )),
    }
}

async fn export(state: &AppState, headers: &HeaderMap, body: Body, is_json: bool) -> Result<Response, WriteError> {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !is_json && !content_type.starts_with(PROTOBUF) {
        return Err(bad(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Type {content_type:?}: send OTLP metrics as {PROTOBUF} or {JSON}"),
        ));
    }
    let tenant = crate::tenant::for_write(state, headers)?;
    let _permit = write_permit(state)?;
    let body = read_body(state, body).await?;
    let bytes = decompress(headers, &body, state.limits.max_decoded_bytes)?;
    let _held = hold_write_bytes(state, body.len() + bytes.len())?;
    drop(body);
    let req = if is_json {
        json::decode(&bytes)
            .map_err(|e| bad(StatusCode::BAD_REQUEST, format!("invalid OTLP/JSON ExportMetricsServiceRequest: {e}")))?
    } else {
        ExportMetricsServiceRequest::decode(bytes.as_slice())
            .map_err(|e| bad(StatusCode::BAD_REQUEST, format!("invalid OTLP ExportMetricsServiceRequest: {e}")))?
    };
    let answer = write(state, &tenant, req).await?;
    if is_json {
        return Ok((StatusCode::OK, [("content-type", JSON)], json::encode_response(&answer)).into_response());
    }
    Ok((StatusCode::OK, [("content-type", PROTOBUF)], answer.encode_to_vec()).into_response())
}

/// Translates and writes one export, for either transport; refused points are reported in
/// `partial_success`.
pub(crate) async fn write(
    state: &AppState,
    tenant: &crate::tenant::WriteTenant,
    req: ExportMetricsServiceRequest,
) -> Result<ExportMetricsServiceResponse, WriteError> {
    let translated = translate::translate(req, &state.limits.otlp);
    let source = crate::diagnostics::Source::Otlp;
    let done = ingest(
        state,
        tenant,
        &WriteRequest::from_owned(&translated.request),
        &translated.starts,
        translated.refused,
        source,
    )
    .await?;
    if done.retry_later {
        // OTLP senders retry a 429 (UNAVAILABLE over gRPC) and drop a partial success.
        return Err(bad(StatusCode::TOO_MANY_REQUESTS, done.summary()));
    }
    let partial_success = (!done.errors.is_empty()).then(|| ExportMetricsPartialSuccess {
        rejected_data_points: done.samples_rejected as i64,
        error_message: done.summary(),
    });
    Ok(ExportMetricsServiceResponse { partial_success })
}
