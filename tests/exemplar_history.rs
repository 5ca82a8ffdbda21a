//! Exemplars are kept like samples: far more than Prometheus's 100k in-memory ring holds, and
//! across restarts.

mod common;

use common::{Amber, ExemplarSpec, request, series};
use serde_json::json;

#[test]
fn two_hundred_thousand_exemplars_are_all_kept_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut amber = Amber::start(dir.path(), &[]);
    let (n_series, per_series) = (1000, 200);
    let t0 = common::now_ms() - 3_600_000;
    let trace = |s: i64, i: i64| format!("{s:016x}{i:016x}");
    for chunk in 0..(n_series / 50) {
        let mut batch = Vec::new();
        for s in chunk * 50..(chunk + 1) * 50 {
            let traces: Vec<String> = (0..per_series).map(|i| trace(s, i)).collect();
            let labels: Vec<Vec<(&str, &str)>> = traces.iter().map(|t| vec![("trace_id", t.as_str())]).collect();
            let exemplars: Vec<ExemplarSpec> =
                (0..per_series).map(|i| (t0 + i * 15_000, i as f64, labels[i as usize].as_slice())).collect();
            batch.push(series(&[("__name__", "rpc_seconds_bucket"), ("shard", &s.to_string())], &[], &exemplars));
        }
        assert_eq!(amber.write(&request(batch)).0, 204);
    }
    let first = json!([{
        "seriesLabels": {"__name__": "rpc_seconds_bucket", "shard": "0"},
        "exemplars": [{"labels": {"trace_id": trace(0, 0)}, "value": "0", "timestamp": t0 / 1000}],
    }]);
    let first_query = format!(
        "/api/v1/query_exemplars?query=rpc_seconds_bucket{{shard=%220%22}}&start={}&end={}",
        t0 / 1000,
        t0 / 1000
    );
    let all_query =
        format!("/api/v1/query_exemplars?query=rpc_seconds_bucket&start={}&end={}", t0 / 1000 - 1, t0 / 1000 + 4000);
    let count = |data: &serde_json::Value| -> usize {
        data.as_array().unwrap().iter().map(|s| s["exemplars"].as_array().unwrap().len()).sum()
    };
    assert_eq!(amber.data(&first_query), first);
    let all = amber.data(&all_query);
    assert_eq!(count(&all), (n_series * per_series) as usize);
    assert_eq!(amber.data(&format!("/api/v1/exemplars/trace/{}", trace(0, 0))), first);

    amber.stop();
    amber.restart();
    assert_eq!(amber.data(&first_query), first);
    assert_eq!(amber.data(&all_query), all);
}
