//! Remote write 1.0 in, Prometheus API out: exact JSON for exemplars, series, labels, metadata
//! and trace lookups, idempotent retries, and out-of-order handling.

mod common;

use amber_api::prompb;
use common::{Amber, request, series, urlencode};
use serde_json::json;

const TRACE_A: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn seed(amber: &Amber, t0: i64) {
    let mut req = request(vec![
        series(
            &[("__name__", "http_request_duration_seconds_bucket"), ("job", "api"), ("le", "0.5")],
            &[(t0, 1.0), (t0 + 15_000, 3.0)],
            &[(t0 + 15_000, 0.42, &[("span_id", "00f067aa0ba902b7"), ("trace_id", TRACE_A)])],
        ),
        series(
            &[("__name__", "http_requests_total"), ("job", "api"), ("method", "GET")],
            &[(t0, 10.0)],
            &[(t0, 1.0, &[("trace_id", "abc")])],
        ),
        series(&[("__name__", "up"), ("job", "node")], &[(t0, 1.0)], &[]),
    ]);
    req.metadata = vec![prompb::MetricMetadata {
        r#type: prompb::metric_metadata::MetricType::Counter as i32,
        metric_family_name: "http_requests_total".into(),
        help: "Requests served.".into(),
        unit: String::new(),
    }];
    assert_eq!(amber.write(&req), (204, String::new()));
}

/// Everything a Grafana data source reads back after one remote-write request, as exact JSON.
#[test]
fn written_exemplars_series_labels_and_metadata_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &[]);
    let t0 = common::now_ms() - 60_000;
    seed(&amber, t0);
    let (s, e) = ((t0 - 1000) as f64 / 1000.0, (t0 + 60_000) as f64 / 1000.0);
    let bucket_exemplars = json!({
        "seriesLabels": {"__name__": "http_request_duration_seconds_bucket", "job": "api", "le": "0.5"},
        "exemplars": [{
            "labels": {"span_id": "00f067aa0ba902b7", "trace_id": TRACE_A},
            "value": "0.42",
            "timestamp": (t0 + 15_000) / 1000,
        }],
    });
    let counter_exemplars = json!({
        "seriesLabels": {"__name__": "http_requests_total", "job": "api", "method": "GET"},
        "exemplars": [{"labels": {"trace_id": "abc"}, "value": "1", "timestamp": t0 / 1000}],
    });
    assert_eq!(
        amber.data(&format!("/api/v1/query_exemplars?query=http_request_duration_seconds_bucket&start={s}&end={e}")),
        json!([bucket_exemplars])
    );
    // Every selector of an expression counts, with all four matcher types.
    let expr = r#"sum(rate(http_requests_total{method!="POST"}[5m])) / sum(rate(http_request_duration_seconds_bucket{le=~"0.5|1",job!~"x.*"}[5m]))"#;
    let q = format!("/api/v1/query_exemplars?query={}&start={s}&end={e}", urlencode(expr));
    assert_eq!(amber.data(&q), json!([bucket_exemplars, counter_exemplars]));
    // A range that ends before the bucket's exemplar holds only the counter's.
    let before = format!("/api/v1/query_exemplars?query={{job=%22api%22}}&start={s}&end={}", (t0 + 1000) / 1000);
    assert_eq!(amber.data(&before), json!([counter_exemplars]));

    assert_eq!(
        amber.data("/api/v1/series?match[]={job=%22api%22}"),
        json!([
            {"__name__": "http_request_duration_seconds_bucket", "job": "api", "le": "0.5"},
            {"__name__": "http_requests_total", "job": "api", "method": "GET"},
        ])
    );
    assert_eq!(amber.data("/api/v1/labels"), json!(["__name__", "job", "le", "method"]));
    assert_eq!(amber.data("/api/v1/labels?match[]=up"), json!(["__name__", "job"]));
    assert_eq!(
        amber.data("/api/v1/label/__name__/values"),
        json!(["http_request_duration_seconds_bucket", "http_requests_total", "up"])
    );
    assert_eq!(amber.data("/api/v1/label/job/values?match[]=up"), json!(["node"]));
    let (status, body) = amber.get("/api/v1/label/__name__/values?limit=1");
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"status": "success", "data": ["http_request_duration_seconds_bucket"], "warnings": ["results truncated due to limit"]})
    );
    assert_eq!(
        amber.data("/api/v1/metadata"),
        json!({"http_requests_total": [{"type": "counter", "help": "Requests served.", "unit": ""}]})
    );
    assert_eq!(amber.data(&format!("/api/v1/exemplars/trace/{TRACE_A}")), json!([bucket_exemplars]));
    assert_eq!(amber.data("/api/v1/exemplars/trace/0000"), json!([]));
}

/// A sender that retries an acknowledged batch must not create duplicates.
#[test]
fn retried_identical_batch_is_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &[]);
    let t0 = common::now_ms() - 60_000;
    seed(&amber, t0);
    seed(&amber, t0);
    let metrics = reqwest::blocking::get(amber.url("/metrics")).unwrap().text().unwrap();
    assert!(metrics.contains("amber_samples_ingested_total 4\n"), "{metrics}");
    assert!(metrics.contains("amber_exemplars_ingested_total 2\n"), "{metrics}");
    let exemplars =
        amber.data(&format!("/api/v1/query_exemplars?query={{job=%22api%22}}&start=0&end={}", t0 / 1000 + 60));
    let count: usize = exemplars.as_array().unwrap().iter().map(|s| s["exemplars"].as_array().unwrap().len()).sum();
    assert_eq!(count, 2);
}

/// Out-of-order samples inside the window are accepted; outside it, or contradicting a stored
/// sample, they get a 400 naming the series, and the rest of the batch is still written.
#[test]
fn out_of_order_window_and_conflicting_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &["--out-of-order-window", "10m"]);
    let t0 = common::now_ms() - 60_000;
    let up = [("__name__", "up"), ("job", "node")];
    assert_eq!(amber.write(&request(vec![series(&up, &[(t0, 1.0)], &[])])).0, 204);
    // 5 minutes behind the newest sample: inside the 10 minute window.
    assert_eq!(amber.write(&request(vec![series(&up, &[(t0 - 300_000, 0.0)], &[])])).0, 204);
    // Resending both, unchanged, is a no-op.
    assert_eq!(amber.write(&request(vec![series(&up, &[(t0 - 300_000, 0.0), (t0, 1.0)], &[])])).0, 204);
    let other = [("__name__", "other"), ("job", "node")];
    let (status, body) = amber.write(&request(vec![
        series(&up, &[(t0 - 900_000, 5.0), (t0, 2.0), (t0 - 300_000, 7.0)], &[]),
        series(&other, &[(t0, 1.0)], &[(t0, 1.0, &[("trace_id", "feed")])]),
    ]));
    assert_eq!(status, 400);
    assert_eq!(
        body,
        format!(
            "3 samples and 0 exemplars rejected; 1 samples and 1 exemplars written. \
             sample at {} for series {{__name__=\"up\", job=\"node\"}}: out of order: older than the series' newest sample by more than the out-of-order window; \
             sample at {t0} for series {{__name__=\"up\", job=\"node\"}}: duplicate sample for timestamp with a different value; \
             sample at {} for series {{__name__=\"up\", job=\"node\"}}: duplicate sample for timestamp with a different value",
            t0 - 900_000,
            t0 - 300_000
        )
    );
    assert_eq!(amber.data("/api/v1/exemplars/trace/feed")[0]["seriesLabels"]["__name__"], "other");
}
