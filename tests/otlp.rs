//! The OTLP/HTTP metrics receiver over the real wire: a gzip-compressed protobuf export with a
//! counter, a gauge and a histogram (with exemplars) comes back from the Prometheus API with
//! Prometheus's OTLP names and labels, its exemplars are found by trace id (also after a crash),
//! and what cannot be stored is refused in `partial_success`, not silently dropped. Exponential
//! histograms (protobuf and JSON) and, with `--otlp-convert-histograms-to-nhcb`, explicit-bucket
//! ones are native histograms carrying their exemplars on their own series.

mod common;

use std::io::Write;

use amber_api::otlp::Status;
use amber_api::otlp::proto::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use amber_api::otlp::proto::common::v1::{AnyValue, KeyValue, any_value};
use amber_api::otlp::proto::metrics::v1::{
    AggregationTemporality, Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, exemplar,
    exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
};
use amber_api::otlp::proto::resource::v1::Resource;
use common::{Amber, urlencode};
use prost::Message;
use serde_json::json;

const TRACE: [u8; 16] =
    [0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36];
const SPAN: [u8; 8] = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

fn metric(name: &str, unit: &str, data: Data) -> Metric {
    Metric {
        name: name.into(),
        description: format!("{name} help"),
        unit: unit.into(),
        data: Some(data),
        ..Default::default()
    }
}

fn export(t_nanos: u64) -> ExportMetricsServiceRequest {
    let ex = |value: f64| Exemplar {
        time_unix_nano: t_nanos - 1_000_000_000,
        trace_id: TRACE.to_vec(),
        span_id: SPAN.to_vec(),
        filtered_attributes: vec![kv("user.id", "u7")],
        value: Some(exemplar::Value::AsDouble(value)),
    };
    let number = |v: number_data_point::Value, exemplars: Vec<Exemplar>| NumberDataPoint {
        attributes: vec![kv("http.route", "/pay")],
        time_unix_nano: t_nanos,
        value: Some(v),
        exemplars,
        ..Default::default()
    };
    let cumulative = AggregationTemporality::Cumulative as i32;
    let metrics = vec![
        metric(
            "http.server.requests",
            "{request}",
            Data::Sum(Sum {
                data_points: vec![number(number_data_point::Value::AsInt(42), vec![ex(1.0)])],
                aggregation_temporality: cumulative,
                is_monotonic: true,
            }),
        ),
        metric(
            "process.memory.usage",
            "By",
            Data::Gauge(Gauge { data_points: vec![number(number_data_point::Value::AsDouble(1024.5), vec![])] }),
        ),
        metric(
            "http.server.duration",
            "ms",
            Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    attributes: vec![kv("http.route", "/pay")],
                    time_unix_nano: t_nanos,
                    count: 10,
                    sum: Some(123.5),
                    bucket_counts: vec![1, 2, 3, 4],
                    explicit_bounds: vec![5.0, 10.0, 25.0],
                    exemplars: vec![ex(7.5)],
                    ..Default::default()
                }],
                aggregation_temporality: cumulative,
            }),
        ),
        metric(
            "queue.depth.delta",
            "",
            Data::Sum(Sum {
                data_points: vec![number(number_data_point::Value::AsInt(3), vec![])],
                aggregation_temporality: AggregationTemporality::Delta as i32,
                is_monotonic: true,
            }),
        ),
    ];
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "checkout"),
                    kv("service.namespace", "shop"),
                    kv("service.instance.id", "pod-1"),
                    kv("host.name", "node-a"),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics { metrics, ..Default::default() }],
            ..Default::default()
        }],
    }
}

fn post(amber: &Amber, path: &str, content_type: &str, gzip: bool, body: Vec<u8>) -> (u16, Vec<u8>) {
    let mut req = reqwest::blocking::Client::new().post(amber.url(path)).header("Content-Type", content_type);
    let body = if gzip {
        req = req.header("Content-Encoding", "gzip");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&body).unwrap();
        enc.finish().unwrap()
    } else {
        body
    };
    let r = req.body(body).send().unwrap();
    (r.status().as_u16(), r.bytes().unwrap().to_vec())
}

#[test]
fn otlp_metrics_with_exemplars_are_stored_as_prometheus_translates_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut amber = Amber::start(dir.path(), &[]);
    let t = common::now_ms() - 60_000;
    let body = export(t as u64 * 1_000_000).encode_to_vec();
    let (status, answer) = post(&amber, "/otlp/v1/metrics", "application/x-protobuf", true, body);
    assert_eq!(status, 200);
    let answer = ExportMetricsServiceResponse::decode(answer.as_slice()).unwrap();
    let partial = answer.partial_success.expect("refused points are reported");
    assert_eq!(partial.rejected_data_points, 1);
    assert!(partial.error_message.starts_with("1 samples and 0 exemplars rejected; 9 samples and 2 exemplars written. metric \"queue.depth.delta\": only cumulative sums are supported"), "{}", partial.error_message);

    let base = json!({"http_route": "/pay", "instance": "pod-1", "job": "shop/checkout"});
    let with = |name: &str, extra: &[(&str, &str)]| {
        let mut m = base.clone();
        m["__name__"] = json!(name);
        for (k, v) in extra {
            m[*k] = json!(v);
        }
        m
    };
    let series = amber.data("/api/v1/series?match[]={job=%22shop/checkout%22}");
    assert_eq!(
        series,
        json!([
            with("http_server_duration_milliseconds_bucket", &[("le", "+Inf")]),
            with("http_server_duration_milliseconds_bucket", &[("le", "10")]),
            with("http_server_duration_milliseconds_bucket", &[("le", "25")]),
            with("http_server_duration_milliseconds_bucket", &[("le", "5")]),
            with("http_server_duration_milliseconds_count", &[]),
            with("http_server_duration_milliseconds_sum", &[]),
            with("http_server_requests_total", &[]),
            with("process_memory_usage_bytes", &[]),
            json!({"__name__": "target_info", "host_name": "node-a", "instance": "pod-1", "job": "shop/checkout"}),
        ])
    );
    let value = |q: &str| {
        let data = amber.data(&format!("/api/v1/query?query={}&time={}", urlencode(q), t / 1000));
        data["result"][0]["value"][1].clone()
    };
    assert_eq!(value("http_server_requests_total"), "42");
    assert_eq!(value("process_memory_usage_bytes"), "1024.5");
    assert_eq!(value("http_server_duration_milliseconds_bucket{le=\"10\"}"), "3");
    assert_eq!(value("http_server_duration_milliseconds_bucket{le=\"+Inf\"}"), "10");
    assert_eq!(value("http_server_duration_milliseconds_sum"), "123.5");
    assert_eq!(value("target_info"), "1");

    let exemplar = |value: &str| {
        json!({"labels": {"span_id": "00f067aa0ba902b7", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "user_id": "u7"},
               "value": value, "timestamp": (t - 1000) / 1000})
    };
    let by_trace = json!([
        {"seriesLabels": with("http_server_duration_milliseconds_bucket", &[("le", "10")]), "exemplars": [exemplar("7.5")]},
        {"seriesLabels": with("http_server_requests_total", &[]), "exemplars": [exemplar("1")]},
    ]);
    assert_eq!(amber.data("/api/v1/exemplars/trace/4bf92f3577b34da6a3ce929d0e0e4736"), by_trace);

    // Diagnostics: per family and source, what arrived and when the last exemplar came.
    let (secs, ex_secs) = (json!(t / 1000), json!((t - 1000) / 1000));
    let row = |family: &str, samples: u64, exemplars: u64| {
        let last = if exemplars > 0 { ex_secs.clone() } else { serde_json::Value::Null };
        json!({"family": family, "source": "otlp", "samples": samples, "exemplars": exemplars,
               "lastSample": secs, "lastExemplar": last})
    };
    assert_eq!(
        amber.data("/api/v1/status/exemplars"),
        json!([
            row("http_server_duration_milliseconds", 6, 1),
            row("http_server_requests_total", 1, 1),
            row("process_memory_usage_bytes", 1, 0),
            row("target_info", 1, 0),
        ])
    );
    let metrics = reqwest::blocking::get(amber.url("/metrics")).unwrap().text().unwrap();
    let line =
        "amber_family_exemplars_arrived{tenant=\"anonymous\",family=\"http_server_requests_total\",source=\"otlp\"} 1";
    assert!(metrics.lines().any(|l| l == line), "{metrics}");
    amber.kill9();
    amber.restart();
    assert_eq!(amber.data("/api/v1/exemplars/trace/4bf92f3577b34da6a3ce929d0e0e4736"), by_trace);
    // Prometheus 3's path is the same receiver.
    let (status, _) = post(
        &amber,
        "/api/v1/otlp/v1/metrics",
        "application/x-protobuf",
        false,
        export(t as u64 * 1_000_000 + 15_000_000_000).encode_to_vec(),
    );
    assert_eq!(status, 200);
    assert_eq!(
        amber.data(&format!(
            "/api/v1/query?query=count_over_time(process_memory_usage_bytes[1m])&time={}",
            t / 1000 + 15
        ))["result"][0]["value"][1],
        "2"
    );
}

/// The trace of the JSON export's exemplar.
const JSON_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

/// An exponential histogram (scale 2, positive and negative buckets, a zero bucket) with one
/// exemplar, as protobuf.
fn exponential_export(t_nanos: u64) -> ExportMetricsServiceRequest {
    let point = ExponentialHistogramDataPoint {
        attributes: vec![kv("rpc.method", "Pay")],
        time_unix_nano: t_nanos,
        count: 9,
        sum: Some(4.5),
        scale: 2,
        zero_count: 1,
        positive: Some(Buckets { offset: -1, bucket_counts: vec![2, 0, 3, 1] }),
        negative: Some(Buckets { offset: 0, bucket_counts: vec![2] }),
        min: Some(-1.1),
        max: Some(1.6),
        exemplars: vec![Exemplar {
            time_unix_nano: t_nanos - 1_000_000_000,
            trace_id: TRACE.to_vec(),
            span_id: SPAN.to_vec(),
            value: Some(exemplar::Value::AsDouble(1.2)),
            ..Default::default()
        }],
        ..Default::default()
    };
    let histogram = ExponentialHistogram {
        data_points: vec![point],
        aggregation_temporality: AggregationTemporality::Cumulative as i32,
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource { attributes: vec![kv("service.name", "checkout")], ..Default::default() }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![metric("rpc.server.duration", "s", Data::ExponentialHistogram(histogram))],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// The same kind of point as OTLP/JSON, with 64-bit integers as strings and a scale above 8.
fn exponential_json(t_nanos: u64) -> Vec<u8> {
    let nanos = t_nanos.to_string();
    let exemplar_nanos = (t_nanos - 1_000_000_000).to_string();
    json!({"resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]},
        "scopeMetrics": [{"metrics": [{"name": "db.query.duration", "unit": "s", "exponentialHistogram": {
            "aggregationTemporality": 2,
            "dataPoints": [{"timeUnixNano": nanos, "count": "4", "sum": 0.8, "scale": 10, "zeroCount": "0",
                "positive": {"offset": -40, "bucketCounts": ["1", "1", "2"]},
                "exemplars": [{"timeUnixNano": exemplar_nanos, "asDouble": 0.2,
                               "traceId": JSON_TRACE, "spanId": "b7ad6b7169203331"}]}]}}]}]
    }]})
    .to_string()
    .into_bytes()
}

#[test]
fn exemplars_of_exponential_histograms_are_found_on_the_histogram_series_across_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut amber = Amber::start(dir.path(), &[]);
    let t = common::now_ms() - 60_000;
    let nanos = t as u64 * 1_000_000;
    let (status, _) =
        post(&amber, "/otlp/v1/metrics", "application/x-protobuf", true, exponential_export(nanos).encode_to_vec());
    assert_eq!(status, 200);
    let (status, _) = post(&amber, "/otlp/v1/metrics", "application/json", false, exponential_json(nanos));
    assert_eq!(status, 200);

    // Prometheus puts them on the histogram's own series: no `_bucket` suffix, no `le`.
    let protobuf_series = json!({"__name__": "rpc_server_duration_seconds", "job": "checkout", "rpc_method": "Pay"});
    let json_series = json!({"__name__": "db_query_duration_seconds", "job": "checkout"});
    let exemplar = |trace: &str, span: &str, value: &str| json!({"labels": {"span_id": span, "trace_id": trace}, "value": value, "timestamp": (t - 1000) / 1000});
    let protobuf_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let by_protobuf_trace =
        json!([{"seriesLabels": protobuf_series, "exemplars": [exemplar(protobuf_trace, "00f067aa0ba902b7", "1.2")]}]);
    let by_json_trace =
        json!([{"seriesLabels": json_series, "exemplars": [exemplar(JSON_TRACE, "b7ad6b7169203331", "0.2")]}]);
    let query_exemplars = |amber: &Amber| {
        let q = urlencode("{job=\"checkout\"}");
        amber.data(&format!("/api/v1/query_exemplars?query={q}&start={}&end={}", t / 1000 - 60, t / 1000 + 60))
    };
    let both = json!([by_json_trace[0], by_protobuf_trace[0]]);
    let check = |amber: &Amber| {
        assert_eq!(amber.data(&format!("/api/v1/exemplars/trace/{protobuf_trace}")), by_protobuf_trace);
        assert_eq!(amber.data(&format!("/api/v1/exemplars/trace/{JSON_TRACE}")), by_json_trace);
        assert_eq!(query_exemplars(amber), both);
    };
    check(&amber);
    amber.kill9();
    amber.restart();
    check(&amber);
}

#[test]
fn with_nhcb_conversion_explicit_histograms_are_one_series_with_their_exemplars() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &["--otlp-convert-histograms-to-nhcb"]);
    let t = common::now_ms() - 60_000;
    let (status, _) =
        post(&amber, "/otlp/v1/metrics", "application/x-protobuf", false, export(t as u64 * 1_000_000).encode_to_vec());
    assert_eq!(status, 200);
    let traced = amber.data("/api/v1/exemplars/trace/4bf92f3577b34da6a3ce929d0e0e4736");
    let series: Vec<&serde_json::Value> = traced.as_array().unwrap().iter().map(|s| &s["seriesLabels"]).collect();
    let labels =
        |name: &str| json!({"__name__": name, "http_route": "/pay", "instance": "pod-1", "job": "shop/checkout"});
    assert_eq!(series, [&labels("http_server_duration_milliseconds"), &labels("http_server_requests_total")]);
    let q = format!("/api/v1/series?match[]={}", urlencode("{__name__=~\"http_server_duration.*\"}"));
    assert_eq!(amber.data(&q), json!([labels("http_server_duration_milliseconds")]));
    // One histogram with the explicit bounds as its custom buckets.
    let histogram = json!({"count": "10", "sum": "123.5", "buckets": [
        [3, "-Inf", "5", "1"], [0, "5", "10", "2"], [0, "10", "25", "3"], [0, "25", "+Inf", "4"],
    ]});
    assert_eq!(
        amber.data(&format!("/api/v1/query?query=http_server_duration_milliseconds&time={}", t / 1000)),
        json!({"resultType": "vector", "result": [{"metric": labels("http_server_duration_milliseconds"), "histogram": [t / 1000, histogram]}]})
    );
}

#[test]
fn exponential_histograms_over_protobuf_and_json_are_stored_as_native_histograms_across_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut amber = Amber::start(dir.path(), &[]);
    let t = common::now_ms() - 60_000;
    let nanos = t as u64 * 1_000_000;
    let (status, answer) =
        post(&amber, "/otlp/v1/metrics", "application/x-protobuf", false, exponential_export(nanos).encode_to_vec());
    assert_eq!(status, 200);
    assert_eq!(ExportMetricsServiceResponse::decode(answer.as_slice()).unwrap().partial_success, None);
    let (status, answer) = post(&amber, "/otlp/v1/metrics", "application/json", false, exponential_json(nanos));
    assert_eq!((status, serde_json::from_slice::<serde_json::Value>(&answer).unwrap()), (200, json!({})));

    // Scale 2: OTLP bucket i is Prometheus bucket i + 1, so the positive OTLP buckets −1, 1, 2
    // are (2^-¼, 1], (2^¼, 2^½], (2^½, 2^¾] and the negative bucket 0 is [−2^¼, −1); the zero
    // bucket has Prometheus's threshold 1e-128; min and max are gone.
    let threshold = format!("0.{}1", "0".repeat(127));
    let protobuf_histogram = json!({"count": "9", "sum": "4.5", "buckets": [
        [1, "-1.189207115002721", "-1", "2"],
        [3, format!("-{threshold}"), threshold, "1"],
        [0, "0.8408964152537144", "1", "2"],
        [0, "1.189207115002721", "1.414213562373095", "3"],
        [0, "1.414213562373095", "1.6817928305074288", "1"],
    ]});
    // Scale 10 is merged down to schema 8: OTLP buckets −40…−38 all fall in Prometheus bucket −9.
    let json_histogram =
        json!({"count": "4", "sum": "0.8", "buckets": [[0, "0.9732872087896164", "0.9759260581154889", "4"]]});
    let expected = [
        (
            "rpc_server_duration_seconds",
            json!({"__name__": "rpc_server_duration_seconds", "job": "checkout", "rpc_method": "Pay"}),
            protobuf_histogram,
        ),
        (
            "db_query_duration_seconds",
            json!({"__name__": "db_query_duration_seconds", "job": "checkout"}),
            json_histogram,
        ),
    ];
    let check = |amber: &Amber| {
        for (query, metric, histogram) in &expected {
            assert_eq!(
                amber.data(&format!("/api/v1/query?query={query}&time={}", t / 1000)),
                json!({"resultType": "vector", "result": [{"metric": metric, "histogram": [t / 1000, histogram]}]}),
                "{query}"
            );
        }
    };
    check(&amber);
    amber.kill9();
    amber.restart();
    check(&amber);
}

#[test]
fn bodies_that_are_not_otlp_get_a_status_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &[]);
    let (status, body) = post(&amber, "/otlp/v1/metrics", "application/x-protobuf", false, b"\xff\xff\xff".to_vec());
    assert_eq!(status, 400);
    let s = Status::decode(body.as_slice()).unwrap();
    assert_eq!(s.code, 3);
    assert!(s.message.starts_with("invalid OTLP ExportMetricsServiceRequest: "), "{}", s.message);
    let (status, body) = post(&amber, "/otlp/v1/metrics", "text/plain", false, b"x".to_vec());
    assert_eq!(status, 415);
    assert_eq!(
        Status::decode(body.as_slice()).unwrap().message,
        "unsupported Content-Type \"text/plain\": send OTLP metrics as application/x-protobuf or application/json"
    );
    let (status, body) =
        post(&amber, "/otlp/v1/metrics", "application/json", false, b"{\"resourceMetrics\": 7}".to_vec());
    assert_eq!(status, 400);
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["code"], 3);
    assert!(
        error["message"].as_str().unwrap().starts_with("invalid OTLP/JSON ExportMetricsServiceRequest: "),
        "{error}"
    );
}

#[test]
fn otlp_json_with_hex_ids_and_string_integers_is_stored_like_protobuf() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &[]);
    let t = common::now_ms() - 60_000;
    let nanos = (t as u64 * 1_000_000).to_string();
    let body = json!({"resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]},
        "scopeMetrics": [{"metrics": [
            {"name": "queue.size", "unit": "1", "gauge": {"dataPoints": [
                {"timeUnixNano": nanos, "asInt": "17", "attributes": [{"key": "queue", "value": {"stringValue": "orders"}}]}]}},
            {"name": "http.server.duration", "unit": "ms", "histogram": {"aggregationTemporality": 2, "dataPoints": [{
                "timeUnixNano": nanos, "count": "3", "sum": 12.5, "bucketCounts": ["1", "2"], "explicitBounds": [10],
                "exemplars": [{"timeUnixNano": nanos, "asDouble": 9.5,
                               "traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "00f067aa0ba902b7"}]}]}},
            {"name": "jobs.done", "sum": {"aggregationTemporality": 1, "isMonotonic": true, "dataPoints": [{"timeUnixNano": nanos, "asInt": 1}]}}
        ]}]
    }]});
    let (status, answer) = post(&amber, "/otlp/v1/metrics", "application/json", false, body.to_string().into_bytes());
    assert_eq!(status, 200);
    let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["partialSuccess"]["rejectedDataPoints"], "1");
    let value = |q: &str| {
        amber.data(&format!("/api/v1/query?query={}&time={}", urlencode(q), t / 1000))["result"][0]["value"][1].clone()
    };
    assert_eq!(value("queue_size_ratio{job=\"checkout\",queue=\"orders\"}"), "17");
    assert_eq!(value("http_server_duration_milliseconds_bucket{le=\"10\"}"), "1");
    assert_eq!(value("http_server_duration_milliseconds_count"), "3");
    let traced = amber.data("/api/v1/exemplars/trace/4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(traced[0]["seriesLabels"]["le"], "10", "{traced}");
    assert_eq!(traced[0]["exemplars"][0]["labels"]["span_id"], "00f067aa0ba902b7");
}

#[test]
fn otlp_over_grpc_is_written_like_otlp_over_http_and_honours_the_tenant() {
    use amber_api::otlp::proto::collector::metrics::v1::metrics_service_client::MetricsServiceClient;

    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &[]);
    let t = common::now_ms() - 60_000;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (answer, tenant_answer) = runtime.block_on(async {
        let endpoint = format!("http://127.0.0.1:{}", amber.grpc_port);
        let mut client = MetricsServiceClient::connect(endpoint).await.unwrap();
        let answer = client.export(export(t as u64 * 1_000_000)).await.unwrap().into_inner();
        let mut request = tonic::Request::new(export(t as u64 * 1_000_000));
        request.metadata_mut().insert("x-scope-orgid", "team-g".parse().unwrap());
        (answer, client.export(request).await.unwrap().into_inner())
    });
    for a in [answer, tenant_answer] {
        assert_eq!(a.partial_success.unwrap().rejected_data_points, 1);
    }
    assert_eq!(
        amber.data(&format!("/api/v1/query?query=http_server_requests_total&time={}", t / 1000))["result"][0]["value"]
            [1],
        "42"
    );
    let traced = amber.data("/api/v1/exemplars/trace/4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(traced.as_array().unwrap().len(), 2, "{traced}");
    // The other tenant's copy is its own.
    let r = reqwest::blocking::Client::new()
        .get(amber.url("/api/v1/series?match[]=target_info"))
        .header("X-Scope-OrgID", "team-g")
        .send()
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(&r.text().unwrap()).unwrap();
    assert_eq!(
        body["data"],
        json!([{"__name__": "target_info", "host_name": "node-a", "instance": "pod-1", "job": "shop/checkout"}])
    );
}

/// A cumulative sum's start times (`start_time_unix_nano`) are stored: an SDK that restarted
/// between two exports without its value dropping (it had counted past the old value again) shows
/// the reset only through its new start time, and `increase` and `resets` count it, across a crash.
#[test]
fn start_times_of_cumulative_sums_reach_increase_and_resets() {
    let dir = tempfile::tempdir().unwrap();
    let mut amber = Amber::start(dir.path(), &[]);
    let base = (common::now_ms() - 10 * 60_000).div_euclid(60_000) * 60_000;
    let nanos = |ms: i64| ms as u64 * 1_000_000;
    // One export a minute: 10, 20, 30 since `base - 30s`, then 40, 50 since the restart at 2:30.
    let exports: Vec<(i64, i64, i64)> = (0..5)
        .map(|i| {
            let start = if i < 3 { base - 30_000 } else { base + 150_000 };
            (base + i * 60_000, start, 10 * (i + 1))
        })
        .collect();
    for &(t, start, value) in &exports {
        let point = NumberDataPoint {
            time_unix_nano: nanos(t),
            start_time_unix_nano: nanos(start),
            value: Some(number_data_point::Value::AsInt(value)),
            ..Default::default()
        };
        let sum = Sum {
            data_points: vec![point],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        };
        let req = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![metric("jobs.done", "", Data::Sum(sum))],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let (status, _) = post(&amber, "/otlp/v1/metrics", "application/x-protobuf", false, req.encode_to_vec());
        assert_eq!(status, 200);
    }
    let end = (base + 4 * 60_000) / 1000;
    let query = |amber: &Amber, expr: &str| {
        let data = amber.data(&format!("/api/v1/query?query={}&time={end}", urlencode(expr)));
        data["result"].clone()
    };
    // From 0 at the first start (inside the range, so no extrapolation): 30, then 50 after the
    // restart.
    let check = |amber: &Amber| {
        assert_eq!(query(amber, "increase(jobs_done_total[4m40s])"), json!([{"metric": {}, "value": [end, "80"]}]));
        assert_eq!(query(amber, "resets(jobs_done_total[4m40s])"), json!([{"metric": {}, "value": [end, "1"]}]));
    };
    check(&amber);
    amber.kill9();
    amber.restart();
    check(&amber);
}
