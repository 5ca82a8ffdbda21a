//! Every kind of bad remote-write input gets its 4xx with a message naming the problem, and the
//! store keeps answering for what was written before.

mod common;

use amber_api::prompb;
use common::native_histograms::Shape;
use common::{Amber, encode, request, series};
use prost::Message;
use serde_json::json;

/// One bad request and the answer it must get.
struct Case {
    name: &'static str,
    body: Vec<u8>,
    content_type: &'static str,
    content_encoding: &'static str,
    status: u16,
    expected: Expected,
}

enum Expected {
    Exact(String),
    Prefix(&'static str),
}

fn rejected(series_text: &str, why: &str) -> Expected {
    Expected::Exact(format!(
        "1 samples and 0 exemplars rejected; 0 samples and 0 exemplars written. series {series_text}: {why}"
    ))
}

fn one(labels: &[(&str, &str)], ts: i64) -> Vec<u8> {
    encode(&request(vec![series(labels, &[(ts, 1.0)], &[])]))
}

fn case(name: &'static str, body: Vec<u8>, status: u16, expected: Expected) -> Case {
    Case { name, body, content_type: "application/x-protobuf", content_encoding: "snappy", status, expected }
}

#[test]
fn bad_input_gets_a_4xx_naming_the_problem_and_the_store_is_unaffected() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &["--max-body-bytes", "100000", "--out-of-order-window", "1m"]);
    let t0 = common::now_ms() - 600_000;
    let good = [("__name__", "good"), ("job", "x")];
    let good_req = request(vec![series(&good, &[(t0, 1.0)], &[(t0, 1.0, &[("trace_id", "aa")])])]);
    assert_eq!(amber.write(&good_req).0, 204);

    // A label value that is not UTF-8: protobuf strings must be UTF-8, so the message is invalid.
    let mut bad_utf8 = request(vec![series(&[("__name__", "m"), ("job", "XX")], &[(t0, 1.0)], &[])]).encode_to_vec();
    let at = bad_utf8.windows(2).position(|w| w == b"XX").unwrap();
    bad_utf8[at] = 0xff;
    let long_name = "n".repeat(1025);
    let long_value = "v".repeat(2049);
    let many: Vec<(String, String)> = (0..30).map(|i| (format!("l{i:02}"), "v".to_string())).collect();
    let mut many_labels: Vec<(&str, &str)> = vec![("__name__", "m")];
    many_labels.extend(many.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let long_trace = "t".repeat(121);

    let cases = vec![
        case("bad snappy", b"definitely not snappy".to_vec(), 400, Expected::Prefix("snappy decode error: ")),
        case(
            "garbage protobuf",
            snap::raw::Encoder::new().compress_vec(&[0xff; 16]).unwrap(),
            400,
            Expected::Prefix("protobuf decode error: "),
        ),
        case(
            "truncated protobuf",
            snap::raw::Encoder::new().compress_vec(&good_req.encode_to_vec()[..20]).unwrap(),
            400,
            Expected::Prefix("protobuf decode error: "),
        ),
        case(
            "invalid UTF-8",
            snap::raw::Encoder::new().compress_vec(&bad_utf8).unwrap(),
            400,
            Expected::Exact("protobuf decode error: failed to decode Protobuf message: Label.value: TimeSeries.labels: WriteRequest.timeseries: invalid string value: data is not UTF-8 encoded".into()),
        ),
        case("missing metric name", one(&[("job", "x")], t0), 400, rejected(r#"{job="x"}"#, "series has no metric name (__name__ label)")),
        case("empty metric name", one(&[("__name__", ""), ("job", "x")], t0), 400, rejected(r#"{__name__="", job="x"}"#, "series has no metric name (__name__ label)")),
        case("invalid metric name", one(&[("__name__", "a b")], t0), 400, rejected(r#"{__name__="a b"}"#, r#"invalid metric name "a b": must match [a-zA-Z_:][a-zA-Z0-9_:]*"#)),
        case("unsorted labels", one(&[("__name__", "m"), ("z", "1"), ("a", "2")], t0), 400, rejected(r#"{__name__="m", z="1", a="2"}"#, r#"label names are not sorted: "a" comes after "z""#)),
        case("duplicate label names", one(&[("__name__", "m"), ("a", "1"), ("a", "2")], t0), 400, rejected(r#"{__name__="m", a="1", a="2"}"#, r#"duplicate label name "a""#)),
        case(
            "label name too long",
            one(&[("__name__", "m"), (&long_name, "1")], t0),
            400,
            rejected(&format!(r#"{{__name__="m", {long_name}="1"}}"#), &format!(r#"label name "{long_name}" is 1025 bytes long, over the limit of 1024"#)),
        ),
        case(
            "label value too long",
            one(&[("__name__", "m"), ("a", &long_value)], t0),
            400,
            rejected(&format!(r#"{{__name__="m", a="{long_value}"}}"#), r#"value of label "a" is 2049 bytes long, over the limit of 2048"#),
        ),
        case(
            "too many labels",
            one(&many_labels, t0),
            400,
            Expected::Prefix("1 samples and 0 exemplars rejected; 0 samples and 0 exemplars written. series {__name__=\"m\", l00=\"v\""),
        ),
        case(
            "body too large",
            vec![0u8; 100_001],
            413,
            Expected::Exact("request body is over the limit of 100000 bytes".into()),
        ),
        case(
            "same timestamp, different value",
            encode(&request(vec![series(&good, &[(t0, 2.0)], &[])])),
            400,
            Expected::Exact(format!("1 samples and 0 exemplars rejected; 0 samples and 0 exemplars written. sample at {t0} for series {{__name__=\"good\", job=\"x\"}}: duplicate sample for timestamp with a different value")),
        ),
        case(
            "out of order outside the window",
            encode(&request(vec![series(&good, &[(t0 - 120_000, 2.0)], &[])])),
            400,
            Expected::Exact(format!("1 samples and 0 exemplars rejected; 0 samples and 0 exemplars written. sample at {} for series {{__name__=\"good\", job=\"x\"}}: out of order: older than the series' newest sample by more than the out-of-order window", t0 - 120_000)),
        ),
        case(
            "far in the future",
            one(&[("__name__", "m")], t0 + 3_600_000 + 600_000),
            400,
            Expected::Exact(format!(
                "1 samples and 0 exemplars rejected; 0 samples and 0 exemplars written. sample at {} for series {{__name__=\"m\"}}: too far in the future",
                t0 + 3_600_000 + 600_000
            )),
        ),
        case(
            "before retention",
            one(&[("__name__", "m")], 1000),
            400,
            Expected::Exact("1 samples and 0 exemplars rejected; 0 samples and 0 exemplars written. sample at 1000 for series {__name__=\"m\"}: too old: before the retention period".into()),
        ),
        case(
            "exemplar labels too long",
            encode(&request(vec![series(&[("__name__", "m")], &[], &[(t0, 1.0, &[("trace_id", &long_trace)])])])),
            400,
            Expected::Exact(format!("0 samples and 1 exemplars rejected; 0 samples and 0 exemplars written. exemplar at {t0} for series {{__name__=\"m\"}}: label length for exemplar exceeds maximum of 128 UTF-8 characters")),
        ),
        Case {
            name: "wrong content type",
            body: encode(&good_req),
            content_type: "application/json",
            content_encoding: "snappy",
            status: 415,
            expected: Expected::Exact(r#"unsupported Content-Type "application/json": expected application/x-protobuf"#.into()),
        },
        Case {
            name: "wrong content encoding",
            body: good_req.encode_to_vec(),
            content_type: "application/x-protobuf",
            content_encoding: "gzip",
            status: 415,
            expected: Expected::Exact(r#"unsupported Content-Encoding "gzip": remote write bodies must be snappy-compressed"#.into()),
        },
        Case {
            name: "unknown protobuf message",
            body: encode(&good_req),
            content_type: "application/x-protobuf;proto=io.prometheus.write.v3.Request",
            content_encoding: "snappy",
            status: 415,
            expected: Expected::Exact(r#"unsupported remote write protobuf message "io.prometheus.write.v3.Request": accepted are prometheus.WriteRequest (remote write 1.0) and io.prometheus.write.v2.Request (remote write 2.0)"#.into()),
        },
    ];

    let http = reqwest::blocking::Client::new();
    for c in cases {
        let r = http
            .post(amber.url("/api/v1/write"))
            .header("Content-Type", c.content_type)
            .header("Content-Encoding", c.content_encoding)
            .body(c.body)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().unwrap();
        assert_eq!(status, c.status, "{}: {text}", c.name);
        match c.expected {
            Expected::Exact(m) => assert_eq!(text, m, "{}", c.name),
            Expected::Prefix(p) => assert!(text.starts_with(p), "{}: {text:?} does not start with {p:?}", c.name),
        }
    }

    // NaN and ±Inf are valid values: stored and returned as Prometheus spells them.
    let specials =
        [("v_nan", f64::NAN, "NaN"), ("v_pinf", f64::INFINITY, "+Inf"), ("v_ninf", f64::NEG_INFINITY, "-Inf")];
    for (name, v, _) in specials {
        assert_eq!(amber.write(&request(vec![series(&[("__name__", name)], &[(t0, v)], &[])])).0, 204);
    }
    for (name, _, text) in specials {
        let data = amber.data(&format!("/api/v1/query?query={name}&time={}", t0 / 1000));
        assert_eq!(data["result"][0]["value"], json!([t0 / 1000, text]), "{name}");
    }

    // A batch mixing a bad series with a good one writes the good one.
    let (status, text) = amber.write(&request(vec![
        series(&[("job", "nameless")], &[(t0, 1.0)], &[]),
        series(&[("__name__", "fine")], &[(t0, 1.0)], &[(t0, 2.0, &[("trace_id", "bb")])]),
    ]));
    assert_eq!(status, 400);
    assert_eq!(
        text,
        "1 samples and 0 exemplars rejected; 1 samples and 1 exemplars written. series {job=\"nameless\"}: series has no metric name (__name__ label)"
    );
    assert_eq!(amber.data("/api/v1/exemplars/trace/bb")[0]["seriesLabels"], json!({"__name__": "fine"}));

    // The data written first is intact, and nothing of the bad requests leaked in.
    assert_eq!(
        amber.data("/api/v1/exemplars/trace/aa"),
        json!([{"seriesLabels": {"__name__": "good", "job": "x"}, "exemplars": [{"labels": {"trace_id": "aa"}, "value": "1", "timestamp": t0 / 1000}]}])
    );
    assert_eq!(amber.data("/api/v1/label/__name__/values"), json!(["fine", "good", "v_nan", "v_ninf", "v_pinf"]));
}

/// A valid integer histogram: the remote write compliance suite's layout.
fn histogram(ts: i64) -> prompb::Histogram {
    common::native_histograms::wire(&Shape::IntegerSchema0.at(0), true, ts)
}

/// Bad native histograms over remote write 1.0: each refused with a 400 naming its series and
/// the problem, while the rest of the request is written.
#[test]
fn bad_native_histograms_are_refused_and_the_rest_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &[]);
    let t0 = common::now_ms() - 600_000;
    let with_histogram = |name: &str, h: prompb::Histogram| {
        let mut s = series(&[("__name__", name)], &[], &[]);
        s.histograms.push(h);
        s
    };
    let mut mismatch = histogram(t0);
    mismatch.positive_deltas.pop();
    let mut negative_length = histogram(t0);
    negative_length.negative_spans[0].length = -1i32 as u32;
    let mut schema = histogram(t0);
    schema.schema = 9;
    let nan_count = prompb::Histogram {
        count: Some(prompb::histogram::Count::CountFloat(f64::NAN)),
        timestamp: t0,
        ..Default::default()
    };
    let mut negative_count = histogram(t0);
    negative_count.positive_deltas = vec![1, 2, -4, 3, 1];
    let mut clash = series(&[("__name__", "h_clash")], &[(t0, 1.0)], &[]);
    clash.histograms.push(histogram(t0));
    let req = request(vec![
        with_histogram("h_mismatch", mismatch),
        with_histogram("h_negative_length", negative_length),
        with_histogram("h_schema", schema),
        with_histogram("h_nan", nan_count),
        with_histogram("h_negative_count", negative_count),
        clash,
        series(&[("__name__", "fine")], &[(t0, 1.0)], &[(t0, 2.0, &[("trace_id", "cc")])]),
    ]);
    let r = reqwest::blocking::Client::new()
        .post(amber.url("/api/v1/write"))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .body(encode(&req))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let written =
        |kind: &str| r.headers()[format!("x-prometheus-remote-write-{kind}-written")].to_str().unwrap().to_string();
    assert_eq!([written("samples"), written("histograms"), written("exemplars")], ["1", "0", "1"]);
    let expected = [
        format!(
            "histogram sample at {t0} for series {{__name__=\"h_mismatch\"}}: positive side: spans need 5 buckets, have 4 buckets: histogram spans specify different number of buckets than provided"
        ),
        format!(
            "histogram sample at {t0} for series {{__name__=\"h_negative_length\"}}: negative side: span number 1 has length 4294967295, more buckets than a bucket index can address (a negative length?)"
        ),
        format!(
            "histogram sample at {t0} for series {{__name__=\"h_schema\"}}: histogram has unsupported schema 9 (valid: -4 to 8, or -53 for custom buckets)"
        ),
        format!("histogram sample at {t0} for series {{__name__=\"h_nan\"}}: observation count NaN is negative or NaN"),
        format!(
            "histogram sample at {t0} for series {{__name__=\"h_negative_count\"}}: positive side: bucket 2 has count -1: histogram has a bucket whose observation count is negative or NaN"
        ),
        format!(
            "float sample and histogram sample at {t0} for series {{__name__=\"h_clash\"}}: a series holds one or the other at a timestamp"
        ),
    ];
    assert_eq!(
        r.text().unwrap(),
        format!(
            "1 samples, 6 histogram samples and 0 exemplars rejected; 1 samples, 0 histogram samples and 1 exemplars written. {}",
            expected.join("; ")
        )
    );
    assert_eq!(amber.data("/api/v1/exemplars/trace/cc")[0]["seriesLabels"], json!({"__name__": "fine"}));
    let metrics = reqwest::blocking::get(amber.url("/metrics")).unwrap().text().unwrap();
    assert!(metrics.contains("amber_histograms_rejected_total{reason=\"invalid_histogram\"} 5\n"), "{metrics}");
    assert!(
        metrics.contains("amber_histograms_rejected_total{reason=\"float_and_histogram_at_same_timestamp\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("amber_samples_rejected_total{reason=\"float_and_histogram_at_same_timestamp\"} 1\n"),
        "{metrics}"
    );
}

/// The read API's own bad input: Prometheus's error JSON and status codes.
#[test]
fn read_api_errors_are_prometheus_json() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &[]);
    let cases = [
        ("/api/v1/series", "no match[] parameter provided"),
        (
            "/api/v1/series?match[]=rate(x[5m])",
            r#"invalid parameter "match[]": "rate(x[5m])" is not a series selector"#,
        ),
        ("/api/v1/query_exemplars?query=up&start=10&end=5", "end timestamp must not be before start time"),
        (
            "/api/v1/query_exemplars?query=up&start=yesterday",
            r#"invalid parameter "start": cannot parse "yesterday" to a valid timestamp"#,
        ),
        ("/api/v1/query_exemplars", r#"invalid parameter "query": query is empty"#),
        ("/api/v1/label/a-b/values", r#"invalid label name: "a-b""#),
        ("/api/v1/labels?limit=x", r#"invalid parameter "limit": cannot parse "x" to a valid integer"#),
    ];
    for (path, message) in cases {
        let (status, body) = amber.get(path);
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body, json!({"status": "error", "errorType": "bad_data", "error": message}), "{path}");
    }
    let (status, body) = amber.get("/api/v1/query_exemplars?query=sum(");
    assert_eq!(status, 400);
    assert_eq!(body["errorType"], "bad_data");
    assert!(body["error"].as_str().unwrap().starts_with("invalid parameter \"query\": "), "{body}");
}

/// More concurrent writes than the server takes are shed with a retryable 503 naming the limit,
/// and every write that got a 204 is stored.
#[test]
fn overload_is_shed_with_a_retryable_503() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &["--max-inflight-writes", "1"]);
    let t0 = common::now_ms() - 600_000;
    let results: Vec<(usize, u16, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|client| {
                let amber = &amber;
                scope.spawn(move || {
                    let batch: Vec<_> = (0..2000)
                        .map(|s| {
                            series(
                                &[("__name__", "load"), ("c", &client.to_string()), ("s", &s.to_string())],
                                &[(t0, 1.0)],
                                &[],
                            )
                        })
                        .collect();
                    let (status, body) = amber.write(&request(batch));
                    (client, status, body)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let shed: Vec<_> = results.iter().filter(|r| r.1 == 503).collect();
    assert!(!shed.is_empty(), "no request was shed: {:?}", results.iter().map(|r| r.1).collect::<Vec<_>>());
    for (_, _, body) in &shed {
        assert_eq!(body, "too many write requests in progress (limit max_inflight_writes=1); retry later");
    }
    for (client, status, _) in &results {
        assert!(*status == 204 || *status == 503, "client {client} got {status}");
        let count = amber.data(&format!("/api/v1/query?query=count(load%7Bc%3D%22{client}%22%7D)&time={}", t0 / 1000));
        let stored = if *status == 204 {
            serde_json::json!([{"metric": {}, "value": [t0 / 1000, "2000"]}])
        } else {
            serde_json::json!([])
        };
        assert_eq!(count["result"], stored, "client {client}");
    }
}
