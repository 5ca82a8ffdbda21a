//! PromQL over HTTP: `/api/v1/query` and `/api/v1/query_range` answer remote-written data in
//! Prometheus's exact JSON, honour stale markers, and report errors with Prometheus's types.

mod common;

use std::time::Duration;

use common::{Amber, request, series, urlencode};
use serde_json::{Value, json};

const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// Two counters scraped every 15 s for 10 minutes, starting at `t0` (a whole minute).
fn seed(amber: &Amber) -> i64 {
    let now = common::now_ms();
    let t0 = now - now % 60_000 - 3_600_000;
    let a: Vec<(i64, f64)> = (0..=40).map(|i| (t0 + i * 15_000, (i * 15) as f64)).collect();
    let b: Vec<(i64, f64)> = (0..=40).map(|i| (t0 + i * 15_000, (i * 30) as f64)).collect();
    let mut gone: Vec<(i64, f64)> = vec![(t0, 7.0)];
    gone.push((t0 + 15_000, f64::from_bits(STALE_NAN)));
    assert_eq!(
        amber.write(&request(vec![
            series(&[("__name__", "requests_total"), ("instance", "a"), ("job", "api")], &a, &[]),
            series(&[("__name__", "requests_total"), ("instance", "b"), ("job", "api")], &b, &[]),
            series(&[("__name__", "gone"), ("job", "api")], &gone, &[]),
        ])),
        (204, String::new())
    );
    t0
}

fn secs(ms: i64) -> i64 {
    ms / 1000
}

#[test]
fn instant_and_range_queries_answer_in_prometheus_json() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &[]);
    let t0 = seed(&amber);
    let at = secs(t0) + 300;
    let (_, body) = amber.get(&format!("/api/v1/query?query=requests_total&time={at}"));
    assert_eq!(
        body,
        json!({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"__name__": "requests_total", "instance": "a", "job": "api"}, "value": [at, "300"]},
            {"metric": {"__name__": "requests_total", "instance": "b", "job": "api"}, "value": [at, "600"]},
        ]}})
    );
    let q = |expr: &str| amber.data(&format!("/api/v1/query?query={}&time={at}", urlencode(expr)));
    assert_eq!(
        q("sum by (job) (requests_total) / 3"),
        json!({"resultType": "vector", "result": [{"metric": {"job": "api"}, "value": [at, "300"]}]})
    );
    assert_eq!(
        q(r#"requests_total{instance="b"} > bool 500"#),
        json!({"resultType": "vector", "result": [{"metric": {"instance": "b", "job": "api"}, "value": [at, "1"]}]})
    );
    assert_eq!(q("scalar(count(requests_total)) * 2"), json!({"resultType": "scalar", "result": [at, "4"]}));
    assert_eq!(q(r#""hello""#), json!({"resultType": "string", "result": [at, "hello"]}));
    assert_eq!(
        q(r#"max_over_time(requests_total{instance="a"}[1m])"#),
        json!({"resultType": "vector", "result": [{"metric": {"instance": "a", "job": "api"}, "value": [at, "300"]}]})
    );
    // A range selector at the top level: the raw samples in (t - 30s, t].
    assert_eq!(
        q(r#"requests_total{instance="a"}[30s]"#),
        json!({"resultType": "matrix", "result": [{
            "metric": {"__name__": "requests_total", "instance": "a", "job": "api"},
            "values": [[at - 15, "285"], [at, "300"]],
        }]})
    );
    // The stale marker ends `gone` at once instead of 5 minutes of lookback later.
    assert_eq!(q("gone"), json!({"resultType": "vector", "result": []}));
    let just_before = amber.data(&format!("/api/v1/query?query=gone&time={}", secs(t0) + 14));
    assert_eq!(just_before["result"][0]["value"], json!([secs(t0) + 14, "7"]));

    let range = amber.data(&format!(
        "/api/v1/query_range?query={}&start={}&end={}&step=60",
        urlencode(r#"requests_total{instance="a"} * 2"#),
        secs(t0),
        secs(t0) + 180
    ));
    assert_eq!(
        range,
        json!({"resultType": "matrix", "result": [{
            "metric": {"instance": "a", "job": "api"},
            "values": [[secs(t0), "0"], [secs(t0) + 60, "120"], [secs(t0) + 120, "240"], [secs(t0) + 180, "360"]],
        }]})
    );
}

/// A series for which no step has a point is left out of a range query's matrix, as Prometheus
/// leaves it out, whichever function or operator produced it.
#[test]
fn range_queries_leave_out_series_without_points() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &[]);
    let t0 = seed(&amber);
    let range = |expr: &str| {
        amber.data(&format!(
            "/api/v1/query_range?query={}&start={}&end={}&step=60",
            urlencode(expr),
            secs(t0),
            secs(t0) + 180
        ))
    };
    let empty = json!({"resultType": "matrix", "result": []});
    // 15 s between samples: no 10 s window holds the two that these need.
    for expr in [
        "rate(requests_total[10s])",
        "increase(requests_total[10s])",
        "delta(requests_total[10s])",
        "irate(requests_total[10s])",
        "idelta(requests_total[10s])",
        "deriv(requests_total[10s])",
        "rate(requests_total[10s]) * 2",
        "sum by (instance) (rate(requests_total[10s]))",
    ] {
        assert_eq!(range(expr), empty, "{expr}");
    }
    // Beside a series with points, the ones without are still left out.
    assert_eq!(
        range(r#"rate(requests_total[10s]) or requests_total{instance="a"} * 0"#),
        json!({"resultType": "matrix", "result": [{
            "metric": {"instance": "a", "job": "api"},
            "values": [[secs(t0), "0"], [secs(t0) + 60, "0"], [secs(t0) + 120, "0"], [secs(t0) + 180, "0"]],
        }]})
    );
}

#[test]
fn query_errors_have_prometheus_types_and_codes() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &["--query-max-samples", "50"]);
    let t0 = seed(&amber);
    let cases = [
        ("/api/v1/query?query=sum(", 400, "bad_data", "invalid parameter \"query\": unclosed left parenthesis".to_string()),
        ("/api/v1/query", 400, "bad_data", "invalid parameter \"query\": query is empty".to_string()),
        (
            "/api/v1/query_range?query=up&start=0&end=100000&step=1",
            400,
            "bad_data",
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
                .to_string(),
        ),
        (
            "/api/v1/query_range?query=up&start=10&end=20&step=-1",
            400,
            "bad_data",
            "zero or negative query resolution step widths are not accepted. Try a positive integer".to_string(),
        ),
        ("/api/v1/query_range?query=up&start=20&end=10&step=1", 400, "bad_data", "end timestamp must not be before start time".to_string()),
        (
            "/api/v1/query_range?query=up%5B5m%5D&start=10&end=20&step=1",
            400,
            "bad_data",
            "invalid parameter \"query\": invalid expression type \"range vector\" for range query, must be Scalar or instant Vector".to_string(),
        ),
        (
            &*format!("/api/v1/query?query=requests_total%5B1h%5D&time={}", secs(t0) + 600),
            422,
            "execution",
            "query processing would load too many samples into memory in query execution".to_string(),
        ),
        (
            &*format!("/api/v1/query?query=label_replace(requests_total,%22instance%22,%22x%22,%22%22,%22%22)*1&time={}", secs(t0) + 60),
            422,
            "execution",
            "vector cannot contain metrics with the same labelset".to_string(),
        ),
    ];
    for (path, status, kind, message) in cases {
        let (got_status, body) = amber.get(path);
        assert_eq!(got_status, status, "{path}: {body}");
        assert_eq!(body, json!({"status": "error", "errorType": kind, "error": message}), "{path}");
    }
}

#[test]
fn admin_seal_is_served_only_when_enabled_and_keeps_every_sample() {
    let closed = tempfile::tempdir().unwrap();
    let amber = Amber::start(closed.path(), &[]);
    let r = reqwest::blocking::Client::new().post(amber.url("/api/v1/admin/tsdb/seal")).send().unwrap();
    assert_eq!(r.status().as_u16(), 404);

    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &["--enable-admin-api", "--maintenance-interval", "1h"]);
    // At the start of a (2 h) window at least four hours back, so the window is closed and past
    // the out-of-order window, and the ten samples fall in that one window.
    let t = (common::now_ms() - 4 * 3_600_000).div_euclid(7_200_000) * 7_200_000;
    let samples: Vec<(i64, f64)> = (0..10).map(|i| (t + i * 15_000, i as f64)).collect();
    let req = request(vec![series(&[("__name__", "old"), ("job", "a")], &samples, &[(t, 7.0, &[("trace_id", "ab")])])]);
    // The maintenance loop's pass at start-up, then none for an hour.
    common::eventually("the start-up sealing pass", Duration::from_secs(60), || {
        (amber.metric("amber_seal_passes_total") == Some(1.0)).then_some(())
    });
    assert_eq!(amber.write(&req), (204, String::new()));
    let r = reqwest::blocking::Client::new().post(amber.url("/api/v1/admin/tsdb/seal")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: serde_json::Value = serde_json::from_str(&r.text().unwrap()).unwrap();
    assert_eq!(
        body,
        json!({"status": "success", "data": {
            "sampleBlocksWritten": 1, "samplesSealed": 10, "histogramBlocksWritten": 0, "histogramsSealed": 0,
            "exemplarBlocksWritten": 1, "exemplarsSealed": 1
        }})
    );
    assert_eq!(amber.metric("amber_seal_passes_total"), Some(2.0));
    assert_eq!(amber.metric("amber_seal_duration_seconds_count"), Some(2.0));
    let end = secs(t) + 150;
    let data = amber.data(&format!("/api/v1/query?query=count_over_time(old[3m])&time={end}"));
    assert_eq!(data["result"][0]["value"][1], "10");
}

/// The status and rules endpoints Grafana and Prometheus's tooling call answer in Prometheus's
/// shapes: the flags and configuration in force, runtime information, and empty rules, alerts
/// and targets.
#[test]
fn status_rules_alerts_and_targets_answer_in_prometheus_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(
        dir.path(),
        &[
            "--retention",
            "30d",
            "--new-series-rate",
            "500",
            "--labels-cache-bytes",
            "1048576",
            "--trace-url-template",
            "http://tempo:3200/trace/{trace_id}",
        ],
    );
    let flags = amber.data("/api/v1/status/flags");
    assert_eq!(flags["retention"], "30days");
    assert_eq!(flags["labels-cache-bytes"], "1048576");
    assert_eq!(flags["trace-url-template"], "http://tempo:3200/trace/{trace_id}");
    assert_eq!(flags["new-series-rate"], "500");
    assert_eq!(flags["new-series-burst"], "30000");
    assert_eq!(flags["listen"], format!("127.0.0.1:{}", amber.port));
    assert!(flags.as_object().unwrap().values().all(Value::is_string), "{flags}");
    // The same settings as the configuration file that sets them, as Prometheus serves its own.
    let config = amber.data("/api/v1/status/config");
    let yaml = config["yaml"].as_str().unwrap();
    for line in ["retention: \"30days\"\n", "new_series_rate: 500.0\n", "new_series_burst: 30000.0\n"] {
        assert!(yaml.contains(line), "{line:?} not in:\n{yaml}");
    }
    assert!(yaml.contains(&format!("listen: \"127.0.0.1:{}\"\n", amber.port)), "{yaml}");
    let runtime = amber.data("/api/v1/status/runtimeinfo");
    let keys: Vec<&str> = runtime.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "CWD",
            "GODEBUG",
            "GOGC",
            "GOMAXPROCS",
            "GOMEMLIMIT",
            "corruptionCount",
            "goroutineCount",
            "lastConfigTime",
            "reloadConfigSuccess",
            "startTime",
            "storageRetention"
        ]
    );
    assert_eq!(runtime["storageRetention"], "30days");
    assert_eq!(runtime["reloadConfigSuccess"], true);
    assert!(runtime["goroutineCount"].as_u64().unwrap() > 1);
    assert_eq!(amber.get("/api/v1/rules"), (200, json!({"status": "success", "data": {"groups": []}})));
    assert_eq!(amber.get("/api/v1/alerts"), (200, json!({"status": "success", "data": {"alerts": []}})));
    assert_eq!(
        amber.get("/api/v1/targets"),
        (
            200,
            json!({"status": "success", "data": {"activeTargets": [], "droppedTargets": [], "droppedTargetCounts": {}}})
        )
    );
    // Cardinality, top two of each list, largest first and ties by name.
    let t = common::now_ms() - 60_000;
    let written = amber.write(&request(vec![
        series(&[("__name__", "up"), ("job", "a")], &[(t, 1.0)], &[]),
        series(&[("__name__", "up"), ("job", "b")], &[(t, 1.0)], &[]),
        series(&[("__name__", "http"), ("code", "200"), ("job", "a")], &[(t, 1.0)], &[]),
    ]));
    assert_eq!(written, (204, String::new()));
    let tsdb = amber.data("/api/v1/status/tsdb?limit=2");
    let head = &tsdb["headStats"];
    assert_eq!((head["numSeries"].clone(), head["numLabelPairs"].clone()), (json!(3), json!(5)));
    assert!(head["chunkCount"].as_u64().unwrap() >= 3, "{head}");
    assert!(head["minTime"].as_i64().unwrap() <= t && t <= head["maxTime"].as_i64().unwrap(), "{head}");
    let pairs = |v: &[(&str, u64)]| Value::Array(v.iter().map(|(n, c)| json!({"name": n, "value": c})).collect());
    assert_eq!(tsdb["seriesCountByMetricName"], pairs(&[("up", 2), ("http", 1)]));
    assert_eq!(tsdb["labelValueCountByLabelName"], pairs(&[("__name__", 2), ("job", 2)]));
    // Bytes of values times their series: __name__ 2·2 + 4·1, code 3·1, job 1·2 + 1·1.
    assert_eq!(tsdb["memoryInBytesByLabelName"], pairs(&[("__name__", 8), ("code", 3)]));
    assert_eq!(tsdb["seriesCountByLabelValuePair"], pairs(&[("__name__=up", 2), ("job=a", 2)]));
}

/// `parse_query` gives the tree Prometheus's `translateAST` gives (`web/api/v1/translate_ast.go`;
/// Debian's 2.42 predates the endpoint, so the expected JSON is written from that source): name
/// matchers after the written ones, offsets and ranges in milliseconds, vector matching only
/// between two vectors, set operators many-to-many, duration expressions kept as trees.
#[test]
fn parse_query_answers_prometheus_syntax_tree() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &[]);
    let selector = |kind: &str, name: &str, matchers: Value| {
        json!({
            "type": kind, "name": name, "offset": 0, "offsetExpr": null, "matchers": matchers,
            "timestamp": null, "startOrEnd": null, "anchored": false, "smoothed": false,
        })
    };
    let foo = json!([{"name": "a", "value": "b", "type": "="}, {"name": "__name__", "value": "foo", "type": "="}]);
    let mut rate_arg = selector("matrixSelector", "foo", foo);
    rate_arg["range"] = json!(300_000);
    rate_arg["rangeExpr"] = Value::Null;
    rate_arg["offset"] = json!(60_000);
    let rate = json!({
        "type": "call",
        "func": {"name": "rate", "argTypes": ["matrix"], "variadic": 0, "returnType": "vector"},
        "args": [rate_arg],
    });
    let bar = selector("vectorSelector", "bar", json!([{"name": "__name__", "value": "bar", "type": "="}]));
    let query = "sum by (job) (rate(foo{a=\"b\"}[5m] offset 1m)) / on(job) group_left(x) bar > bool 2";
    let (status, body) = amber.get(&format!("/api/v1/parse_query?query={}", urlencode(query)));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"status": "success", "data": {
            "type": "binaryExpr", "op": ">", "bool": true, "matching": null,
            "lhs": {
                "type": "binaryExpr", "op": "/", "bool": false,
                "lhs": {"type": "aggregation", "op": "sum", "expr": rate, "param": null, "grouping": ["job"], "without": false},
                "rhs": bar,
                "matching": {
                    "card": "many-to-one", "labels": ["job"], "on": true, "include": ["x"],
                    "fillValues": {"lhs": null, "rhs": null},
                },
            },
            "rhs": {"type": "numberLiteral", "val": "2"},
        }})
    );

    // `@`, a subquery over parentheses, a negated literal, set operators, an anchored range,
    // duration expressions.
    let query =
        "-x{y=~\"z.*\"} @ 100 and last_over_time((x)[1m:(30s)] offset -step()) or rate(x[1m * 2] anchored) * -1.5";
    let (status, body) = amber.get(&format!("/api/v1/parse_query?query={}", urlencode(query)));
    assert_eq!(status, 200, "{body}");
    let x = |kind| selector(kind, "x", json!([{"name": "__name__", "value": "x", "type": "="}]));
    let mut at_100 = selector(
        "vectorSelector",
        "x",
        json!([{"name": "y", "value": "z.*", "type": "=~"}, {"name": "__name__", "value": "x", "type": "="}]),
    );
    at_100["timestamp"] = json!(100_000);
    let mut anchored = x("matrixSelector");
    anchored["anchored"] = json!(true);
    anchored["range"] = json!(0);
    anchored["rangeExpr"] = json!({
        "type": "durationExpr", "op": "*", "wrapped": false,
        "lhs": {"type": "numberLiteral", "val": "60", "duration": true},
        "rhs": {"type": "numberLiteral", "val": "2", "duration": false},
    });
    let set = json!({"card": "many-to-many", "labels": [], "on": false, "include": [], "fillValues": {"lhs": null, "rhs": null}});
    assert_eq!(
        body["data"],
        json!({
            "type": "binaryExpr", "op": "or", "bool": false, "matching": set,
            "lhs": {
                "type": "binaryExpr", "op": "and", "bool": false, "matching": set,
                "lhs": {"type": "unaryExpr", "op": "-", "expr": at_100},
                "rhs": {
                    "type": "call",
                    "func": {"name": "last_over_time", "argTypes": ["matrix"], "variadic": 0, "returnType": "vector"},
                    "args": [{
                    "type": "subquery", "expr": {"type": "parenExpr", "expr": x("vectorSelector")},
                    "range": 60_000, "rangeExpr": null,
                    "step": 0, "stepExpr": {
                        "type": "durationExpr", "op": "+", "lhs": null, "wrapped": true,
                        "rhs": {"type": "numberLiteral", "val": "30", "duration": true},
                    },
                    "offset": 0, "offsetExpr": {
                        "type": "durationExpr", "op": "-", "lhs": null, "wrapped": false,
                        "rhs": {"type": "durationExpr", "op": "step", "lhs": null, "rhs": null, "wrapped": false},
                    },
                    "timestamp": null, "startOrEnd": null,
                }]},
            },
            "rhs": {
                "type": "binaryExpr", "op": "*", "bool": false, "matching": null,
                "lhs": {
                    "type": "call",
                    "func": {"name": "rate", "argTypes": ["matrix"], "variadic": 0, "returnType": "vector"},
                    "args": [anchored],
                },
                "rhs": {"type": "numberLiteral", "val": "-1.5"},
            },
        })
    );

    let (status, body) = amber.get("/api/v1/parse_query?query=sum(");
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"status": "error", "errorType": "bad_data", "error": "invalid parameter \"query\": unclosed left parenthesis"})
    );
}
