//! The provisioned Grafana dashboard queries what Amber serves: every panel query parses as
//! PromQL, and every `amber_*` metric it reads is on Amber's `/metrics` once data has arrived.

mod common;

use common::{Amber, request, series};

#[test]
fn dashboard_queries_parse_and_read_metrics_amber_exposes() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/grafana/dashboards/amber.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap().to_string()))
        .collect();
    assert!(exprs.len() >= 7, "{exprs:?}");

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
            // Counters are typed without their _total, histograms without _bucket, _sum, _count.
            let name =
                ["_total", "_bucket", "_sum", "_count"].iter().find_map(|s| word.strip_suffix(s)).unwrap_or(word);
            assert!(metrics.contains(&format!("# TYPE {name} ")), "{expr}: {name} is not on /metrics");
        }
    }
}
