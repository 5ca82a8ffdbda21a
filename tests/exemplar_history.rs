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

/// `exemplars/top` ranks exemplars by value over a range that spans a sealed window and the head
/// ("the slowest requests of last week, and their traces"), in `query_exemplars`' shape, and gives
/// the same answer after a `kill -9`.
#[test]
fn top_exemplars_rank_by_value_across_sealed_windows_and_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let mut amber = Amber::start(dir.path(), &["--enable-admin-api", "--maintenance-interval", "1h"]);
    // The maintenance loop's pass at start-up, then none for an hour: the admin seal below is
    // the one that seals.
    common::eventually("the start-up sealing pass", std::time::Duration::from_secs(60), || {
        (amber.metric("amber_seal_passes_total") == Some(1.0)).then_some(())
    });
    // `old` starts a 2 h window at least four hours back (closed and past the out-of-order
    // window, so the admin seal writes it to a block); `new` is in the head.
    let old = (common::now_ms() - 4 * 3_600_000).div_euclid(7_200_000) * 7_200_000;
    let new = common::now_ms() - 600_000;
    let name = "http_request_duration_seconds_bucket";
    let cart_1 = [("__name__", name), ("le", "1"), ("route", "/cart")];
    let cart_inf = [("__name__", name), ("le", "+Inf"), ("route", "/cart")];
    let pay_inf = [("__name__", name), ("le", "+Inf"), ("route", "/pay")];
    let old_batch = request(vec![
        series(&cart_1, &[], &[(old, 0.9, &[("trace_id", "a1")])]),
        series(&cart_inf, &[], &[(old + 15_000, 7.5, &[("trace_id", "b1")])]),
    ]);
    let new_batch = request(vec![
        series(&cart_1, &[], &[(new, 0.3, &[("trace_id", "a2")]), (new + 5_000, f64::NAN, &[("trace_id", "a3")])]),
        series(&cart_inf, &[], &[(new + 15_000, 2.0, &[("trace_id", "b2")])]),
        series(
            &pay_inf,
            &[],
            &[(new + 30_000, 7.5, &[("trace_id", "c1")]), (new + 45_000, 0.1, &[("trace_id", "c2")])],
        ),
    ]);
    assert_eq!(amber.write(&old_batch).0, 204);
    assert_eq!(amber.write(&new_batch).0, 204);
    let sealed = reqwest::blocking::Client::new().post(amber.url("/api/v1/admin/tsdb/seal")).send().unwrap();
    assert_eq!(sealed.status().as_u16(), 200);
    let sealed: serde_json::Value = serde_json::from_str(&sealed.text().unwrap()).unwrap();
    assert_eq!(sealed["data"]["exemplarsSealed"], 2, "{sealed}");

    let (start, end) = (old / 1000 - 1, new / 1000 + 60);
    let top = |amber: &Amber, query: &str, extra: &str| {
        amber.data(&format!("/api/v1/exemplars/top?query={query}&start={start}&end={end}{extra}"))
    };
    let exemplar = |trace: &str, value: &str, ts: i64| json!({"labels": {"trace_id": trace}, "value": value, "timestamp": ts / 1000});
    let cart_1_json = json!({"__name__": name, "le": "1", "route": "/cart"});
    let cart_inf_json = json!({"__name__": name, "le": "+Inf", "route": "/cart"});
    let pay_inf_json = json!({"__name__": name, "le": "+Inf", "route": "/pay"});
    // The three largest: c1 and b1 tie at 7.5 and the newer ranks first; series follow their
    // best exemplar, each series' exemplars in rank order.
    let largest_three = json!([
        {"seriesLabels": pay_inf_json, "exemplars": [exemplar("c1", "7.5", new + 30_000)]},
        {"seriesLabels": cart_inf_json, "exemplars": [exemplar("b1", "7.5", old + 15_000), exemplar("b2", "2", new + 15_000)]},
    ]);
    assert_eq!(top(&amber, name, "&limit=3"), largest_three);
    let smallest_two = json!([
        {"seriesLabels": pay_inf_json, "exemplars": [exemplar("c2", "0.1", new + 45_000)]},
        {"seriesLabels": cart_1_json, "exemplars": [exemplar("a2", "0.3", new)]},
    ]);
    assert_eq!(top(&amber, name, "&limit=2&order=asc"), smallest_two);
    // No limit: all six ranked (the NaN has no rank); absent, the limit is 10.
    let all = json!([
        {"seriesLabels": pay_inf_json, "exemplars": [exemplar("c1", "7.5", new + 30_000), exemplar("c2", "0.1", new + 45_000)]},
        {"seriesLabels": cart_inf_json, "exemplars": [exemplar("b1", "7.5", old + 15_000), exemplar("b2", "2", new + 15_000)]},
        {"seriesLabels": cart_1_json, "exemplars": [exemplar("a1", "0.9", old), exemplar("a2", "0.3", new)]},
    ]);
    assert_eq!(top(&amber, name, "&limit=0"), all);
    assert_eq!(top(&amber, name, ""), all);
    // The selector narrows the series, and any expression's selectors count, as in query_exemplars.
    let cart_only = json!([{"seriesLabels": cart_inf_json, "exemplars": [exemplar("b1", "7.5", old + 15_000)]}]);
    let cart_rate = common::urlencode(&format!("sum(rate({name}{{route=\"/cart\"}}[5m]))"));
    assert_eq!(top(&amber, &cart_rate, "&limit=1"), cart_only);

    for (extra, error) in [
        ("&order=up", "invalid parameter \"order\": \"up\" is neither \"desc\" nor \"asc\""),
        ("&limit=many", "invalid parameter \"limit\": cannot parse \"many\" to a valid integer"),
    ] {
        let (status, body) = amber.get(&format!("/api/v1/exemplars/top?query={name}{extra}"));
        assert_eq!(status, 400, "{extra}: {body}");
        assert_eq!(body["errorType"], "bad_data");
        assert_eq!(body["error"], error);
    }
    let (status, body) = amber.get("/api/v1/exemplars/top");
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid parameter \"query\": query is empty")));

    amber.kill9();
    amber.restart();
    assert_eq!(top(&amber, name, "&limit=3"), largest_three);
    assert_eq!(top(&amber, name, "&limit=0"), all);
}
