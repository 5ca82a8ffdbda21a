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

/// Three counters `requests_total{instance="a|b|c"}` with a sample every 15 s for 10 minutes
/// (5 s, 20 s, …, 590 s after `t0`, a whole minute), and `instance="d"`, whose four samples end
/// 50 s after `t0`. Queried at times 13 s past a minute after `t0`, no sample sits on the edge
/// of a window, a lookback or a subquery's range, where Prometheus 2.x (closed windows) and 3.x
/// (left-open) count differently.
fn seed_stats(amber: &Amber) -> (i64, Vec<Vec<i64>>) {
    let now = common::now_ms();
    let t0 = now - now % 60_000 - 3_600_000;
    let mut times: Vec<Vec<i64>> = (0..3).map(|_| (0..40).map(|k| t0 + 5_000 + k * 15_000).collect()).collect();
    times.push((0..4).map(|k| t0 + 5_000 + k * 15_000).collect());
    let written = amber.write(&stats_request(t0, &times));
    assert_eq!(written, (204, String::new()));
    (t0, times)
}

fn stats_request(_t0: i64, times: &[Vec<i64>]) -> amber_api::prompb::WriteRequest {
    request(
        times
            .iter()
            .zip(["a", "b", "c", "d"])
            .map(|(times, instance)| {
                let samples: Vec<(i64, f64)> = times.iter().enumerate().map(|(k, &t)| (t, (k * 10) as f64)).collect();
                series(&[("__name__", "requests_total"), ("instance", instance), ("job", "api")], &samples, &[])
            })
            .collect(),
    )
}

/// The samples of every series in `(t - range, t]` (milliseconds).
fn in_window(times: &[Vec<i64>], t: i64, range: i64) -> u64 {
    times.iter().map(|s| s.iter().filter(|&&x| x > t - range && x <= t).count() as u64).sum()
}

/// Checks `stats.timings` (Prometheus's six, in its order in `raw`, each a non-negative number
/// of seconds, the parts within the totals) and replaces them by `"checked"`.
fn checked_timings(raw: &str, body: &mut Value) {
    let names =
        ["evalTotalTime", "resultSortTime", "queryPreparationTime", "innerEvalTime", "execQueueTime", "execTotalTime"];
    let at: Vec<usize> = names.iter().map(|n| raw.find(&format!("\"{n}\":")).expect(n)).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "timings out of Prometheus's order: {raw}");
    let timings = body["data"]["stats"]["timings"].take();
    let keys: Vec<&str> = timings.as_object().expect("timings").keys().map(String::as_str).collect();
    assert_eq!(keys.len(), names.len(), "{timings}");
    let secs = |n: &str| timings[n].as_f64().filter(|v| *v >= 0.0).unwrap_or_else(|| panic!("{n}: {timings}"));
    let eps = 1e-6;
    let parts = secs("queryPreparationTime") + secs("innerEvalTime") + secs("resultSortTime");
    assert!(parts <= secs("evalTotalTime") + eps, "{timings}");
    assert!(secs("execQueueTime") + secs("evalTotalTime") <= secs("execTotalTime") + eps, "{timings}");
    assert!(secs("execTotalTime") < 60.0, "{timings}");
    body["data"]["stats"]["timings"] = json!("checked");
}

/// `stats` in a query answer, as Prometheus gives it (`util/stats/query_stats.go`): absent without
/// the parameter; with it, timings in seconds and the samples the selectors read at every step
/// (an instant selector: one per series with a value; a range function: its whole window at
/// every step, left-open as in Prometheus 3), and with `stats=all` the same per step; the peak
/// of samples held is what Amber loaded plus what evaluation held beside it.
#[test]
fn query_statistics_count_the_samples_each_step_reads() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &[]);
    let (t0, times) = seed_stats(&amber);
    let raw = |path: &str| {
        let r = reqwest::blocking::get(amber.url(path)).unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        let text = r.text().unwrap();
        let body: Value = serde_json::from_str(&text).unwrap();
        (text, body)
    };
    let at = secs(t0) + 433;
    let series_of = |instance: &str, value: &str| json!({"metric": {"__name__": "requests_total", "instance": instance, "job": "api"}, "value": [at, value]});
    let result = json!([series_of("a", "280"), series_of("b", "280"), series_of("c", "280")]);

    // No parameter (or an empty one): no `stats`.
    for path in [
        format!("/api/v1/query?query=requests_total&time={at}"),
        format!("/api/v1/query?query=requests_total&time={at}&stats="),
    ] {
        let (_, body) = raw(&path);
        assert_eq!(body, json!({"status": "success", "data": {"resultType": "vector", "result": result}}), "{path}");
    }

    // An instant selector reads one sample per series with a value: not `d`, gone for more than
    // the 5-minute lookback. Amber loaded the samples in [t - 5m, t] (20 of each live series)
    // and held the 3 of the result beside them.
    let (text, mut body) = raw(&format!("/api/v1/query?query=requests_total&time={at}&stats=all"));
    checked_timings(&text, &mut body);
    assert_eq!(
        body,
        json!({"status": "success", "data": {"resultType": "vector", "result": result, "stats": {
            "timings": "checked",
            "samples": {"totalQueryableSamplesPerStep": [[at, 3]], "totalQueryableSamples": 3, "peakSamples": 63},
        }}})
    );
    // Any other value: the totals, without the steps.
    let (text, mut body) = raw(&format!("/api/v1/query?query=requests_total&time={at}&stats=true"));
    checked_timings(&text, &mut body);
    assert_eq!(
        body["data"]["stats"],
        json!({"timings": "checked", "samples": {"totalQueryableSamples": 3, "peakSamples": 63}})
    );

    // `sum(rate(x[1m]))` over 12 steps, 13 s past each minute: every step counts the samples in
    // its window (t - 1m, t], the first step's four single samples too (no rate comes of them).
    let (start, end) = (t0 + 13_000, t0 + 673_000);
    let steps: Vec<i64> = (start..=end).step_by(60_000).collect();
    let per_step: Vec<(i64, u64)> = steps.iter().map(|&t| (t, in_window(&times, t, 60_000))).collect();
    assert_eq!(per_step[..3].iter().map(|s| s.1).collect::<Vec<_>>(), [4, 4 * 3 + 3, 4 * 3]);
    assert_eq!(per_step[10..].iter().map(|s| s.1).collect::<Vec<_>>(), [3 * 3, 0]);
    let total: u64 = per_step.iter().map(|s| s.1).sum();
    let range_path = |expr: &str, stats: &str| {
        format!(
            "/api/v1/query_range?query={}&start={}&end={}&step=60&stats={stats}",
            urlencode(expr),
            secs(start),
            secs(end)
        )
    };
    let (text, mut body) = raw(&range_path("sum(rate(requests_total[1m]))", "all"));
    checked_timings(&text, &mut body);
    // Two a second from a, b and c (10 every 15 s), d's extrapolated rate besides at the first
    // step with points, and extrapolation short of the window's end at the last (as Prometheus
    // gives them: the test below compares).
    let mut rates: Vec<Value> = steps[1..11].iter().map(|&t| json!([secs(t), "2"])).collect();
    rates[0][1] = json!("2.4944444444444445");
    rates[9][1] = json!("1.4833333333333334");
    // Held at the peak: all 124 samples loaded, the rate points of each series (10 steps of a,
    // b and c, one of d) beside their 10 sums.
    assert_eq!(
        body,
        json!({"status": "success", "data": {
            "resultType": "matrix",
            "result": [{"metric": {}, "values": rates}],
            "stats": {"timings": "checked", "samples": {
                "totalQueryableSamplesPerStep": per_step.iter().map(|&(t, n)| json!([secs(t), n])).collect::<Vec<_>>(),
                "totalQueryableSamples": total,
                "peakSamples": 124 + 31 + 10,
            }},
        }})
    );
    // Step by step (an operator above the sum) and series by series count the same.
    let (text, mut body) = raw(&range_path("sum(rate(requests_total[1m])) * 1", "all"));
    checked_timings(&text, &mut body);
    assert_eq!(body["data"]["stats"]["samples"]["totalQueryableSamples"], json!(total));
    assert_eq!(
        body["data"]["stats"]["samples"]["totalQueryableSamplesPerStep"],
        json!(per_step.iter().map(|&(t, n)| json!([secs(t), n])).collect::<Vec<_>>())
    );

    // The window is left-open: at steps on sample times, the sample a minute back is out.
    let on_samples = format!(
        "/api/v1/query_range?query={}&start={}&end={}&step=60&stats=all",
        urlencode(r#"rate(requests_total{instance="a"}[1m])"#),
        secs(t0) + 65,
        secs(t0) + 125
    );
    let (_, body) = raw(&on_samples);
    assert_eq!(
        body["data"]["stats"]["samples"]["totalQueryableSamplesPerStep"],
        json!([[secs(t0) + 65, 4], [secs(t0) + 125, 4]])
    );
}

/// Debian's Prometheus 2.42 (`--enable-feature=promql-per-step-stats`) counts the same
/// `totalQueryableSamples`, per step and in total, for the same data and queries: selectors,
/// range functions, aggregations, operators, offsets, `timestamp()` and subqueries. The data
/// and query times keep every sample off window edges, where 2.x (closed windows) and 3.x
/// (left-open) differ; `peakSamples` and the timings are each engine's own and not compared.
#[test]
fn query_statistics_match_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &[]);
    let prometheus = common::prometheus::Prometheus::start(
        dir.path(),
        "global:\n  scrape_interval: 1h\n",
        &["--web.enable-remote-write-receiver", "--enable-feature=promql-per-step-stats"],
    );
    let (t0, times) = seed_stats(&amber);
    let r = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{}/api/v1/write", prometheus.port))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .body(common::encode(&stats_request(t0, &times)))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "prometheus refused the data: {}", r.text().unwrap());
    let (start, end) = (secs(t0) + 13, secs(t0) + 673);
    let mut paths = Vec::new();
    for q in [
        "requests_total",
        "rate(requests_total[1m])",
        "sum(rate(requests_total[1m]))",
        "sum by (instance) (rate(requests_total[2m])) * 2",
        "count_over_time(requests_total[5m])",
        "requests_total offset 1m",
        "timestamp(requests_total)",
        r#"requests_total{instance="a"} + on(job) group_left sum by (job) (requests_total)"#,
        "topk(2, requests_total)",
        r#"label_replace(requests_total, "host", "$1", "instance", "(.*)")"#,
        "absent_over_time(requests_total[1m])",
        "requests_total @ end()",
        "sum(rate(requests_total[1m] @ start()))",
        "max_over_time(requests_total[2m:30s])",
        "max_over_time(rate(requests_total[1m])[3m:1m])",
    ] {
        for at in [start + 120, start + 420, end] {
            paths.push(format!("/api/v1/query?query={}&time={at}&stats=all", urlencode(q)));
        }
        paths.push(format!("/api/v1/query_range?query={}&start={start}&end={end}&step=60&stats=all", urlencode(q)));
    }
    // A subquery at the top of an instant query counts what its inner steps read.
    paths.push(format!(
        "/api/v1/query?query={}&time={}&stats=all",
        urlencode("rate(requests_total[1m])[2m:30s]"),
        start + 420
    ));
    for path in paths {
        let want = prometheus.get(&path);
        assert_eq!(want["status"], "success", "prometheus: {path}: {want}");
        let (status, got) = amber.get(&path);
        assert_eq!(status, 200, "{path}: {got}");
        let samples = |body: &Value| {
            let s = &body["data"]["stats"]["samples"];
            (s["totalQueryableSamples"].clone(), s["totalQueryableSamplesPerStep"].clone())
        };
        assert!(samples(&want).0.as_u64().is_some(), "{path}: {want}");
        assert_eq!(samples(&got), samples(&want), "{path}");
        assert_eq!(got["data"]["result"], want["data"]["result"], "{path}");
    }
}
