//! Series garbage collection at the wire: series churned out through a short retention leave
//! `/api/v1/series`, label names, label values and `amber_series`, while the series a sender keeps
//! writing answer exactly, across a restart too.

mod common;

use std::time::Duration;

use common::{Amber, request, series, urlencode};
use serde_json::json;

/// One generation of 100 pods plus a steady series, written at the current time.
fn write_generation(amber: &Amber, generation: &str) -> i64 {
    let t = common::now_ms();
    let pods: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    let mut batch: Vec<_> = pods
        .iter()
        .map(|pod| {
            let mut labels = vec![("__name__", "churn"), ("generation", generation), ("pod", pod.as_str())];
            if generation == "old" {
                labels.push(("zone", "gone"));
            }
            series(&labels, &[(t, 1.0)], &[])
        })
        .collect();
    batch.push(series(&[("__name__", "steady")], &[(t, 2.0)], &[]));
    assert_eq!(amber.write(&request(batch)), (204, String::new()));
    t
}

#[test]
fn churned_series_leave_the_index_once_their_data_leaves_retention() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--block-duration",
        "1s",
        "--retention",
        "6s",
        "--out-of-order-window",
        "1s",
        "--maintenance-interval",
        "200ms",
    ];
    let mut amber = Amber::start(dir.path(), &args);
    write_generation(&amber, "old");
    write_generation(&amber, "new");
    assert_eq!(amber.metric("amber_series"), Some(201.0));
    // The sender keeps writing the new generation; the old one stops and ages out.
    let mut last = 0;
    common::eventually("the old generation to leave the index", Duration::from_secs(60), || {
        last = write_generation(&amber, "new");
        (amber.metric("amber_series") == Some(101.0)).then_some(())
    });
    let values = amber.data("/api/v1/label/generation/values");
    assert_eq!(values, json!(["new"]));
    assert_eq!(amber.data("/api/v1/labels"), json!(["__name__", "generation", "pod"]));
    let listed = amber.data(&format!("/api/v1/series?match[]={}", urlencode("churn")));
    assert_eq!(listed.as_array().unwrap().len(), 100);
    assert!(listed.as_array().unwrap().iter().all(|s| s["generation"] == "new"), "{listed}");
    let count = format!("/api/v1/query?query={}&time={}", urlencode("count(churn)"), last as f64 / 1000.0);
    assert_eq!(amber.data(&count)["result"][0]["value"][1], "100");
    // A crash and a replay of the log bring nothing back.
    amber.restart();
    assert_eq!(amber.metric("amber_series"), Some(101.0));
    assert_eq!(amber.data("/api/v1/label/generation/values"), json!(["new"]));
    let steady = format!("/api/v1/query?query=steady&time={}", last as f64 / 1000.0);
    assert_eq!(amber.data(&steady)["result"][0]["value"][1], "2");
}
