//! Grafana against Amber, the way Grafana talks: the requests its Prometheus data source sends
//! (POST forms) get answers in the shapes it parses; the provisioned dashboards' queries parse as
//! PromQL, and every `amber_*` metric the Amber dashboard reads is on Amber's `/metrics`. (The
//! example service's dashboard is run against the example's data in `flask_otel.rs`.)

mod common;

use common::{Amber, dashboard_queries, request, series, urlencode};
use serde_json::{Value, json};

/// A POST with a form body, as Grafana's data source sends it (`httpMethod: POST`).
fn post_form(amber: &Amber, path: &str, form: &[(&str, String)]) -> Value {
    let body: Vec<String> = form.iter().map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v))).collect();
    let r = reqwest::blocking::Client::new()
        .post(amber.url(path))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body.join("&"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{path}");
    let v: Value = serde_json::from_str(&r.text().unwrap()).unwrap();
    assert_eq!(v["status"], "success", "{path}: {v}");
    v["data"].clone()
}

#[test]
fn the_requests_grafanas_prometheus_data_source_sends_get_the_answers_it_parses() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &[]);
    let t = common::now_ms() / 1000 * 1000 - 120_000;
    let samples: Vec<(i64, f64)> = (0..9).map(|i| (t + i * 15_000, i as f64)).collect();
    let mut req = request(vec![series(
        &[("__name__", "req_duration_seconds_bucket"), ("job", "api"), ("le", "+Inf")],
        &samples,
        &[(t + 15_000, 0.2, &[("trace_id", "abcd")])],
    )]);
    req.metadata = vec![amber_api::prompb::MetricMetadata {
        r#type: amber_api::prompb::metric_metadata::MetricType::Histogram as i32,
        metric_family_name: "req_duration_seconds".into(),
        help: "Request duration".into(),
        unit: String::new(),
    }];
    assert_eq!(amber.write(&req), (204, String::new()));
    let (start, end) = ((t / 1000).to_string(), (t / 1000 + 120).to_string());
    let range = post_form(
        &amber,
        "/api/v1/query_range",
        &[
            ("query", "rate(req_duration_seconds_bucket[1m])".into()),
            ("start", start.clone()),
            ("end", end.clone()),
            ("step", "15".into()),
        ],
    );
    assert_eq!(range["resultType"], "matrix");
    let values = range["result"][0]["values"].as_array().unwrap();
    assert!(values.iter().all(|p| p[0].is_number() && p[1].is_string()), "{range}");
    let exemplars = post_form(
        &amber,
        "/api/v1/query_exemplars",
        &[("query", "req_duration_seconds_bucket".into()), ("start", start.clone()), ("end", end.clone())],
    );
    assert_eq!(exemplars[0]["exemplars"][0]["labels"], json!({"trace_id": "abcd"}));
    assert!(exemplars[0]["exemplars"][0]["timestamp"].is_number());
    let matcher = "{job=\"api\"}".to_string();
    let labels = post_form(
        &amber,
        "/api/v1/labels",
        &[("start", start.clone()), ("end", end.clone()), ("match[]", matcher.clone())],
    );
    assert_eq!(labels, json!(["__name__", "job", "le"]));
    let names =
        amber.data(&format!("/api/v1/label/__name__/values?match[]={}&start={start}&end={end}", urlencode(&matcher)));
    assert_eq!(names, json!(["req_duration_seconds_bucket"]));
    let found = post_form(&amber, "/api/v1/series", &[("match[]", matcher), ("start", start), ("end", end)]);
    assert_eq!(found, json!([{"__name__": "req_duration_seconds_bucket", "job": "api", "le": "+Inf"}]));
    assert_eq!(
        amber.data("/api/v1/metadata"),
        json!({"req_duration_seconds": [{"type": "histogram", "help": "Request duration", "unit": ""}]})
    );
    let build = amber.data("/api/v1/status/buildinfo");
    assert!(build["version"].is_string(), "{build}");
}

#[test]
fn dashboard_queries_parse_and_read_metrics_amber_exposes() {
    let exprs = dashboard_queries("amber.json");
    assert!(exprs.len() >= 9, "{exprs:?}");
    for file in ["shop.json", "shop-native.json"] {
        for expr in dashboard_queries(file) {
            promql_parser::parser::parse(&expr).unwrap_or_else(|e| panic!("{file}: {expr}: {e}"));
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &[]);
    let t = common::now_ms() - 60_000;
    let req = request(vec![series(
        &[("__name__", "x_bucket"), ("le", "1")],
        &[(t, 1.0)],
        &[(t, 1.0, &[("trace_id", "ab")])],
    )]);
    assert_eq!(amber.write(&req), (204, String::new()));
    let metrics = reqwest::blocking::get(amber.url("/metrics")).unwrap().text().unwrap();
    for expr in exprs {
        promql_parser::parser::parse(&expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("amber_")) {
            // In the text format counters are typed with their _total, histograms without _bucket,
            // _sum, _count.
            let name = ["_bucket", "_sum", "_count"].iter().find_map(|s| word.strip_suffix(s)).unwrap_or(word);
            assert!(metrics.contains(&format!("# TYPE {name} ")), "{expr}: {name} is not on /metrics");
        }
    }
}
