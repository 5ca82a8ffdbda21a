//! Limits: each breach gets a clear, retryable error naming the limit and its value, leaves the
//! rest of the store alone, and is counted on `/metrics` as `amber_limits_exceeded_total{limit}`.
//! (The series limit is in `tenants.rs`, the body-size and in-flight limits in `bad_input.rs`.)

mod common;

use std::time::Duration;

use common::{Amber, request, series, urlencode};
use serde_json::json;

/// The value of `amber_limits_exceeded_total{limit="<limit>"}`, 0 when absent.
fn exceeded(amber: &Amber, limit: &str) -> u64 {
    amber.metric(&format!("amber_limits_exceeded_total{{limit=\"{limit}\"}}")).map_or(0, |n| n as u64)
}

#[test]
fn ingestion_rate_refuses_bursts_beyond_the_bucket_per_tenant_with_a_429() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("amber.toml");
    std::fs::write(&config, "ingestion_rate = 1\ningestion_burst = 50\n\n[tenants.big]\ningestion_rate = 100000\n")
        .unwrap();
    let amber = Amber::start(dir.path(), &["--config", config.to_str().unwrap()]);
    let t = common::now_ms() - 600_000;
    let batch = |from: i64, n: i64| {
        let samples: Vec<(i64, f64)> = (0..n).map(|i| (t + (from + i) * 1000, i as f64)).collect();
        request(vec![series(&[("__name__", "x"), ("job", "a")], &samples, &[])])
    };
    assert_eq!(amber.write_with(&[("X-Scope-OrgID", "small")], &batch(0, 50)), (204, String::new()));
    let (status, body) = amber.write_with(&[("X-Scope-OrgID", "small")], &batch(50, 40));
    assert_eq!(status, 429, "{body}");
    assert_eq!(
        body,
        "ingestion rate limit of 1 samples/s with bursts of 50 (ingestion_rate, ingestion_burst) exceeded by tenant \
         \"small\" writing 40 samples and exemplars; retry later"
    );
    assert_eq!(exceeded(&amber, "ingestion_rate"), 1);
    // Another tenant has its own bucket and its own rate.
    assert_eq!(amber.write_with(&[("X-Scope-OrgID", "big")], &batch(0, 90)), (204, String::new()));
    // Nothing of the refused request was written.
    let q = format!("/api/v1/query?query={}&time={}", urlencode("count_over_time(x[1h])"), (t + 100_000) / 1000);
    let get = |tenant: &str| {
        let r = reqwest::blocking::Client::new().get(amber.url(&q)).header("X-Scope-OrgID", tenant).send().unwrap();
        serde_json::from_str::<serde_json::Value>(&r.text().unwrap()).unwrap()["data"]["result"][0]["value"][1].clone()
    };
    assert_eq!(get("small"), json!("50"));
    assert_eq!(get("big"), json!("90"));
}

#[test]
fn queries_beyond_max_concurrent_queries_get_a_503_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &["--max-concurrent-queries", "1", "--query-timeout", "20s"]);
    let t = common::now_ms() - 60_000;
    assert_eq!(amber.write(&request(vec![series(&[("__name__", "up")], &[(t, 1.0)], &[])])), (204, String::new()));
    // A subquery evaluated at every millisecond of three hours keeps the only slot busy for seconds.
    let slow = format!("/api/v1/query?query={}&time={}", urlencode("count_over_time(up[3h:1ms])"), t / 1000);
    let url = amber.url(&slow);
    let busy = std::thread::spawn(move || reqwest::blocking::get(url).unwrap().status().as_u16());
    common::eventually("the slow query to take the only slot", Duration::from_secs(60), || {
        (amber.metric("amber_queries_in_progress") == Some(1.0)).then_some(())
    });
    let (status, body) = amber.get(&format!("/api/v1/query?query=up&time={}", t / 1000));
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body,
        json!({"status": "error", "errorType": "unavailable",
               "error": "too many queries in progress (limit max_concurrent_queries=1); retry later"})
    );
    assert_eq!(exceeded(&amber, "max_concurrent_queries"), 1);
    busy.join().unwrap();
    // The slot is free again.
    assert_eq!(amber.data(&format!("/api/v1/query?query=up&time={}", t / 1000))["result"][0]["value"][1], "1");
}
