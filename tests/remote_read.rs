//! Remote read (`POST /api/v1/read`): real Prometheus (Debian's 2.42) with `remote_read`
//! pointing at Amber answers PromQL over Amber's data exactly as Amber does; the `SAMPLES`
//! answer carries raw samples, stale markers and native histograms; `STREAMED_XOR_CHUNKS`
//! answers CRC-checked frames of XOR chunks of at most 120 samples.

mod common;

use common::prometheus::Prometheus;
use common::{Amber, labels, request, series, urlencode};
use prost::Message;

use amber_api::prompb;

const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// Two counters scraped every 15 s for an hour (one with a reset), and a gauge that went stale.
fn seed(amber: &Amber) -> i64 {
    let now = common::now_ms();
    let t0 = now - now % 60_000 - 2 * 3_600_000;
    let counter = |rate: i64, reset_at: i64| -> Vec<(i64, f64)> {
        (0..240)
            .map(|i| (t0 + i * 15_000 + i % 4, (if i >= reset_at { i - reset_at } else { i } * rate) as f64))
            .collect()
    };
    let mut gauge: Vec<(i64, f64)> = (0..100).map(|i| (t0 + i * 15_000, (i % 7) as f64)).collect();
    gauge.push((t0 + 100 * 15_000, f64::from_bits(STALE_NAN)));
    let written = amber.write(&request(vec![
        series(&[("__name__", "requests_total"), ("instance", "a"), ("job", "api")], &counter(3, 1000), &[]),
        series(&[("__name__", "requests_total"), ("instance", "b"), ("job", "api")], &counter(5, 120), &[]),
        series(&[("__name__", "queue_depth"), ("job", "worker")], &gauge, &[]),
    ]));
    assert_eq!(written, (204, String::new()));
    t0
}

/// Posts a `ReadRequest` and returns the status, the content type and the (raw) body.
fn post_read(amber: &Amber, req: &prompb::ReadRequest) -> (u16, String, Vec<u8>) {
    let body = snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap();
    let r = reqwest::blocking::Client::new()
        .post(amber.url("/api/v1/read"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Read-Version", "0.1.0")
        .body(body)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let content_type = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, content_type, r.bytes().unwrap().to_vec())
}

fn query(start: i64, end: i64, matchers: Vec<prompb::LabelMatcher>) -> prompb::Query {
    prompb::Query { start_timestamp_ms: start, end_timestamp_ms: end, matchers, hints: None }
}

fn equal(name: &str, value: &str) -> prompb::LabelMatcher {
    prompb::LabelMatcher { r#type: prompb::label_matcher::Type::Eq as i32, name: name.into(), value: value.into() }
}

#[test]
fn prometheus_reading_amber_remotely_answers_as_amber_does() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &[]);
    let t0 = seed(&amber);
    let config = format!(
        "global:\n  scrape_interval: 1h\nremote_read:\n  - url: http://127.0.0.1:{}/api/v1/read\n    read_recent: true\n",
        amber.port
    );
    let prometheus = Prometheus::start(dir.path(), &config, &[]);
    // Query times fall between samples: Prometheus 2.42's windows are closed on the left, Amber's
    // (Prometheus 3's) open, which only differs for a sample exactly at a window's start.
    let (start, end) = ((t0 + 600_000 + 7_000) / 1000, (t0 + 3_000_000 + 7_000) / 1000);
    for q in [
        "requests_total",
        "rate(requests_total[5m])",
        "sum by (job) (increase(requests_total[10m]))",
        "queue_depth",
        "max_over_time(queue_depth[2m])",
    ] {
        let path = format!("/api/v1/query_range?query={}&start={start}&end={end}&step=60", urlencode(q));
        let ours = amber.data(&path);
        let theirs = prometheus.get(&path);
        assert_eq!(theirs["status"], "success", "{q}: {theirs}");
        assert!(!ours["result"].as_array().unwrap().is_empty(), "{q}: no data");
        assert_eq!(
            common::prometheus::sorted_by_series(theirs["data"].clone()),
            common::prometheus::sorted_by_series(ours),
            "{q}"
        );
    }
    let series = format!("/api/v1/series?match[]={}&start={start}&end={end}", urlencode("{job=~\"api|worker\"}"));
    assert_eq!(prometheus.get(&series)["data"], amber.data(&series));
}

#[test]
fn samples_answers_carry_raw_samples_stale_markers_and_native_histograms() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &[]);
    let t0 = seed(&amber);
    let span = |offset, length| prompb::BucketSpan { offset, length };
    let histogram = prompb::Histogram {
        count: Some(prompb::histogram::Count::CountFloat(6.0)),
        sum: 12.5,
        schema: 1,
        zero_threshold: 0.001,
        zero_count: Some(prompb::histogram::ZeroCount::ZeroCountFloat(1.0)),
        positive_spans: vec![span(-1, 2), span(3, 1)],
        positive_counts: vec![1.0, 2.0, 2.0],
        timestamp: t0 + 30_000,
        ..Default::default()
    };
    let native = prompb::TimeSeries {
        labels: labels(&[("__name__", "latency_seconds"), ("job", "api")]),
        histograms: vec![histogram.clone()],
        ..Default::default()
    };
    assert_eq!(amber.write(&request(vec![native])), (204, String::new()));
    let req = prompb::ReadRequest {
        queries: vec![
            query(t0 + 1_000_000, t0 + 2_000_000, vec![equal("__name__", "queue_depth")]),
            query(t0, t0 + 60_000, vec![equal("job", "api"), equal("__name__", "latency_seconds")]),
            query(t0, t0 + 60_000, vec![equal("__name__", "nothing_here")]),
        ],
        accepted_response_types: vec![],
    };
    let (status, content_type, body) = post_read(&amber, &req);
    assert_eq!((status, content_type.as_str()), (200, "application/x-protobuf"));
    let answer =
        prompb::ReadResponse::decode(snap::raw::Decoder::new().decompress_vec(&body).unwrap().as_slice()).unwrap();
    assert_eq!(answer.results.len(), 3);
    let gauge = &answer.results[0].timeseries;
    assert_eq!(gauge.len(), 1);
    assert_eq!(gauge[0].labels, labels(&[("__name__", "queue_depth"), ("job", "worker")]));
    let got: Vec<(i64, u64)> = gauge[0].samples.iter().map(|s| (s.timestamp, s.value.to_bits())).collect();
    let want: Vec<(i64, u64)> =
        (67..=100).map(|i| (t0 + i * 15_000, if i == 100 { STALE_NAN } else { ((i % 7) as f64).to_bits() })).collect();
    assert_eq!(got, want);
    let native = &answer.results[1].timeseries;
    assert_eq!(native.len(), 1);
    assert!(native[0].samples.is_empty());
    assert_eq!(native[0].histograms, [histogram]);
    assert!(answer.results[2].timeseries.is_empty());
    // An unknown matcher type or a bad regex is the client's mistake.
    let bad = prompb::ReadRequest {
        queries: vec![query(
            t0,
            t0 + 60_000,
            vec![prompb::LabelMatcher { r#type: 2, name: "job".into(), value: "(".into() }],
        )],
        accepted_response_types: vec![],
    };
    let (status, _, body) = post_read(&amber, &bad);
    assert_eq!(status, 400);
    assert!(String::from_utf8(body).unwrap().starts_with("invalid regular expression \"(\" for label \"job\""));
}

#[test]
fn streamed_answers_are_crc_checked_frames_of_xor_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &[]);
    let t0 = seed(&amber);
    let req = prompb::ReadRequest {
        queries: vec![query(t0, t0 + 3_600_000, vec![equal("__name__", "requests_total")])],
        accepted_response_types: vec![prompb::read_request::ResponseType::StreamedXorChunks as i32],
    };
    let (status, content_type, body) = post_read(&amber, &req);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(content_type, "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse");
    let mut rest = body.as_slice();
    let mut series: Vec<prompb::ChunkedSeries> = Vec::new();
    while !rest.is_empty() {
        let len = prost::encoding::decode_varint(&mut rest).unwrap() as usize;
        let crc = u32::from_be_bytes(rest[..4].try_into().unwrap());
        let message = &rest[4..4 + len];
        assert_eq!(crc, crc32c::crc32c(message), "frame checksum");
        let frame = prompb::ChunkedReadResponse::decode(message).unwrap();
        assert_eq!(frame.query_index, 0);
        series.extend(frame.chunked_series);
        rest = &rest[4 + len..];
    }
    assert_eq!(series.len(), 2);
    for (s, instance) in series.iter().zip(["a", "b"]) {
        assert_eq!(s.labels, labels(&[("__name__", "requests_total"), ("instance", instance), ("job", "api")]));
        // 240 samples in the hour: chunks of 120 and 120, each chunk's header counting them.
        let spans: Vec<(i64, i64, u16)> = s
            .chunks
            .iter()
            .map(|c| {
                assert_eq!(c.r#type, prompb::chunk::Encoding::Xor as i32);
                (c.min_time_ms, c.max_time_ms, u16::from_be_bytes([c.data[0], c.data[1]]))
            })
            .collect();
        assert_eq!(spans, [(t0, t0 + 119 * 15_000 + 3, 120), (t0 + 120 * 15_000, t0 + 239 * 15_000 + 3, 120)]);
    }
}
