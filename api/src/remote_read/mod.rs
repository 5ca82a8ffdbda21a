//! `POST /api/v1/read`: Prometheus's remote-read protocol, so a Prometheus with `remote_read`
//! pointing at Amber (or Thanos, or any remote-read client) reads Amber's raw data.
//!
//! Request: a snappy (block format) compressed `prometheus.ReadRequest`, one or more queries of
//! matchers and a time range. The answer type is the first of `accepted_response_types` Amber
//! speaks, `SAMPLES` when none is given (as Prometheus's own handler negotiates):
//! - `SAMPLES`: one snappy-compressed `ReadResponse`, raw float samples (stale markers included)
//!   and native histogram samples of every matching series, per query;
//! - `STREAMED_XOR_CHUNKS`: `ChunkedReadResponse` frames (`uvarint size`, `CRC32-C <4b>` of the
//!   message, the message), each at most [`MAX_BYTES_IN_FRAME`] of series whose floats are
//!   Prometheus XOR chunks of up to 120 samples ([`xor_chunk`]); native histograms are refused
//!   in this mode with a 400 naming the series (their chunk encodings are not written yet).
//!
//! A query loading more than the engine's `query_max_samples` fails with a 400, as Prometheus's
//! `--storage.remote.read-sample-limit` does; reads share the `max_concurrent_queries` slots.

pub mod xor_chunk;

use amber_storage::source::{Columns, ReadSource, SeriesData};
use amber_storage::{HistogramSample, Matcher, Sample};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use prost::Message;

use crate::AppState;
use crate::prompb;
use crate::remote_write::{WriteError, decompress, read_body};

/// Largest `ChunkedReadResponse` frame, as Prometheus's `--storage.remote.read-max-bytes-in-frame`.
pub const MAX_BYTES_IN_FRAME: usize = 1 << 20;

const STREAMED_CONTENT_TYPE: &str = "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse";

/// One series as a query read it.
struct ReadSeries {
    labels: Vec<prompb::Label>,
    samples: Vec<Sample>,
    histograms: Vec<HistogramSample>,
}

pub async fn handle(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match read(&state, &headers, body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

fn refused(status: StatusCode, message: String) -> WriteError {
    WriteError { status, message }
}

async fn read(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Response, WriteError> {
    let tenant = crate::tenant::for_read(state, headers)?;
    let _permit = crate::query::query_permit(state).map_err(|e| refused(StatusCode::SERVICE_UNAVAILABLE, e.message))?;
    let body = read_body(state, body).await?;
    let raw = decompress(&body, state.limits.max_decoded_bytes)?;
    let req = prompb::ReadRequest::decode(raw.as_slice())
        .map_err(|e| refused(StatusCode::BAD_REQUEST, format!("invalid ReadRequest: {e}")))?;
    let streamed = negotiate(&req.accepted_response_types)?;
    let source = state.source.clone();
    let max_samples = state.engine.options.limits.max_samples;
    let answers = tokio::task::spawn_blocking(move || {
        req.queries.iter().map(|q| query(source.as_ref(), &tenant, q, max_samples)).collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| refused(StatusCode::INTERNAL_SERVER_ERROR, format!("read task failed: {e}")))??;
    if streamed {
        let body = chunked_frames(answers)?;
        return Ok((StatusCode::OK, [("content-type", STREAMED_CONTENT_TYPE)], body).into_response());
    }
    let results = answers
        .into_iter()
        .map(|series| prompb::QueryResult { timeseries: series.into_iter().map(time_series).collect() })
        .collect();
    let encoded = prompb::ReadResponse { results }.encode_to_vec();
    let compressed = snap::raw::Encoder::new()
        .compress_vec(&encoded)
        .map_err(|e| refused(StatusCode::INTERNAL_SERVER_ERROR, format!("snappy encode error: {e}")))?;
    Ok((StatusCode::OK, [("content-type", "application/x-protobuf"), ("content-encoding", "snappy")], compressed)
        .into_response())
}

/// `true` for `STREAMED_XOR_CHUNKS`: the first accepted type Amber speaks; `SAMPLES` when the
/// request names none.
fn negotiate(accepted: &[i32]) -> Result<bool, WriteError> {
    use prompb::read_request::ResponseType;
    if accepted.is_empty() {
        return Ok(false);
    }
    for &t in accepted {
        match ResponseType::try_from(t) {
            Ok(ResponseType::Samples) => return Ok(false),
            Ok(ResponseType::StreamedXorChunks) => return Ok(true),
            Err(_) => {}
        }
    }
    Err(refused(
        StatusCode::BAD_REQUEST,
        format!(
            "server does not support any of the requested response types: {accepted:?}; supported: [SAMPLES STREAMED_XOR_CHUNKS]"
        ),
    ))
}

/// Every series matching one query's matchers with data in its range, sorted by labels.
fn query(
    source: &dyn ReadSource,
    tenant: &str,
    q: &prompb::Query,
    max_samples: usize,
) -> Result<Vec<ReadSeries>, WriteError> {
    let bad = |m: String| refused(StatusCode::BAD_REQUEST, m);
    let matchers = q.matchers.iter().map(matcher).collect::<Result<Vec<_>, _>>().map_err(bad)?;
    let (mint, maxt) = (q.start_timestamp_ms, q.end_timestamp_ms);
    let store = |e: amber_storage::Error| refused(StatusCode::INTERNAL_SERVER_ERROR, format!("storage error: {e}"));
    let found = source.select(tenant, &[matchers], mint, maxt, Columns::SAMPLES).map_err(store)?;
    let mut loaded = 0;
    let mut out = Vec::new();
    for SeriesData { labels, samples, histograms, .. } in found {
        loaded += samples.len() + histograms.len();
        if loaded > max_samples {
            return Err(bad(format!("exceeded sample limit ({max_samples})")));
        }
        let labels = labels.iter().map(|l| prompb::Label { name: l.name.clone(), value: l.value.clone() }).collect();
        out.push(ReadSeries { labels, samples, histograms });
    }
    Ok(out)
}

fn matcher(m: &prompb::LabelMatcher) -> Result<Matcher, String> {
    use prompb::label_matcher::Type;
    let regex = |negate| {
        Matcher::regex(m.name.clone(), &m.value, negate)
            .map_err(|e| format!("invalid regular expression {:?} for label {:?}: {e}", m.value, m.name))
    };
    match Type::try_from(m.r#type) {
        Ok(Type::Eq) => Ok(Matcher::equal(m.name.clone(), m.value.clone())),
        Ok(Type::Neq) => {
            Ok(Matcher { op: amber_storage::MatchOp::NotEqual, ..Matcher::equal(m.name.clone(), m.value.clone()) })
        }
        Ok(Type::Re) => regex(false),
        Ok(Type::Nre) => regex(true),
        Err(_) => Err(format!("unknown label matcher type {} for label {:?}", m.r#type, m.name)),
    }
}

fn time_series(s: ReadSeries) -> prompb::TimeSeries {
    prompb::TimeSeries {
        labels: s.labels,
        samples: s.samples.iter().map(|x| prompb::Sample { value: x.value, timestamp: x.ts }).collect(),
        histograms: s.histograms.iter().map(wire_histogram).collect(),
        ..Default::default()
    }
}

/// A stored histogram sample as remote write's float histogram (absolute counts).
pub(crate) fn wire_histogram(s: &HistogramSample) -> prompb::Histogram {
    use prompb::histogram::{Count, ZeroCount};
    let h = &s.h;
    let spans = |spans: &[amber_histogram::Span]| {
        spans.iter().map(|s| prompb::BucketSpan { offset: s.offset, length: s.length }).collect()
    };
    prompb::Histogram {
        count: Some(Count::CountFloat(h.count)),
        sum: h.sum,
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        zero_count: Some(ZeroCount::ZeroCountFloat(h.zero_count)),
        negative_spans: spans(&h.negative_spans),
        negative_counts: h.negative_buckets.clone(),
        positive_spans: spans(&h.positive_spans),
        positive_counts: h.positive_buckets.clone(),
        reset_hint: h.counter_reset_hint as i32,
        timestamp: s.ts,
        custom_values: h.custom_values.clone(),
        ..Default::default()
    }
}

/// The streamed answer: every query's series as XOR chunks, in frames of at most
/// [`MAX_BYTES_IN_FRAME`] (a series too large for one frame continues in the next, as
/// Prometheus splits it).
fn chunked_frames(answers: Vec<Vec<ReadSeries>>) -> Result<Vec<u8>, WriteError> {
    let mut out = Vec::new();
    for (query_index, series) in answers.into_iter().enumerate() {
        let mut frame = prompb::ChunkedReadResponse { chunked_series: Vec::new(), query_index: query_index as i64 };
        let mut frame_bytes = 0;
        for s in series {
            if !s.histograms.is_empty() {
                let labels = amber_storage::labels::format_list(
                    &s.labels.iter().map(|l| amber_storage::Label::new(&l.name, &l.value)).collect::<Vec<_>>(),
                );
                return Err(refused(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "series {labels} holds native histograms, which Amber returns only with the SAMPLES response type"
                    ),
                ));
            }
            let mut current = prompb::ChunkedSeries { labels: s.labels.clone(), chunks: Vec::new() };
            for chunk in s.samples.chunks(xor_chunk::SAMPLES_PER_CHUNK) {
                let pairs: Vec<(i64, f64)> = chunk.iter().map(|x| (x.ts, x.value)).collect();
                let c = prompb::Chunk {
                    min_time_ms: chunk[0].ts,
                    max_time_ms: chunk[chunk.len() - 1].ts,
                    r#type: prompb::chunk::Encoding::Xor as i32,
                    data: xor_chunk::encode(&pairs),
                };
                frame_bytes += c.encoded_len();
                current.chunks.push(c);
                if frame_bytes >= MAX_BYTES_IN_FRAME {
                    frame.chunked_series.push(std::mem::replace(
                        &mut current,
                        prompb::ChunkedSeries { labels: s.labels.clone(), chunks: Vec::new() },
                    ));
                    write_frame(&mut out, &frame);
                    frame.chunked_series.clear();
                    frame_bytes = 0;
                }
            }
            if !current.chunks.is_empty() {
                frame.chunked_series.push(current);
            }
        }
        if !frame.chunked_series.is_empty() {
            write_frame(&mut out, &frame);
        }
    }
    Ok(out)
}

/// `uvarint size`, CRC32-C (Castagnoli) of the message, big-endian, then the message.
fn write_frame(out: &mut Vec<u8>, frame: &prompb::ChunkedReadResponse) {
    let message = frame.encode_to_vec();
    prost::encoding::encode_varint(message.len() as u64, out);
    out.extend_from_slice(&crc32c::crc32c(&message).to_be_bytes());
    out.extend_from_slice(&message);
}
