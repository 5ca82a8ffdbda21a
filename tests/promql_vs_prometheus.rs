//! Differential test: the same remote-written data in Amber and in real Prometheus (Debian's
//! 2.42, as a remote-write receiver), the same PromQL, value-for-value equal answers (relative
//! tolerance 1e-6, NaN equals NaN).
//!
//! Debian's Prometheus is 2.x while Amber follows 3.x semantics. Where the two differ the data
//! steers clear: sample timestamps carry millisecond jitter so none sits exactly on a window
//! boundary (3.x windows are left-open, 2.x closed), and the queries avoid functions that 3.x
//! renamed (`holt_winters`) and name-dropping corner cases (3.x delays `__name__` removal, and
//! drops it for `atan2`, which 2.x keeps). Query times sit 13 s off the minute so that no
//! subquery step lands on a range's start (3.x leaves it out, 2.x takes it in).

mod common;

use std::collections::BTreeMap;

use amber_api::prompb;
use common::prometheus::Prometheus;
use common::{Amber, request, urlencode};
use serde_json::Value;

/// xorshift64: repeatable data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const STEP_MS: i64 = 15_000;
const POINTS: i64 = 480;

/// Counters (with a reset and a gap), gauges, a classic histogram and a series that goes stale,
/// scraped every 15 s (plus 1–9 ms of jitter) for two hours from `t0`.
fn dataset(t0: i64) -> Vec<prompb::TimeSeries> {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut out = Vec::new();
    let ts = |i: i64, rng: &mut Rng| t0 + i * STEP_MS + 1 + rng.below(9) as i64;
    let mut push = |labels: &[(&str, &str)], samples: Vec<(i64, f64)>| {
        out.push(common::series(labels, &samples, &[]));
    };
    for (instance, code) in [("i0", "200"), ("i0", "500"), ("i1", "200"), ("i1", "500")] {
        let mut v = 0.0;
        let mut samples = Vec::new();
        for i in 0..POINTS {
            if instance == "i1" && code == "200" && (200..220).contains(&i) {
                continue; // a 5-minute gap
            }
            v += rng.below(20) as f64;
            if instance == "i0" && code == "500" && i == 300 {
                v = 3.0; // a counter reset
            }
            samples.push((ts(i, &mut rng), v));
        }
        push(&[("__name__", "http_requests_total"), ("code", code), ("instance", instance), ("job", "api")], samples);
    }
    for instance in ["i0", "i1", "i2"] {
        let samples = (0..POINTS).map(|i| (ts(i, &mut rng), (rng.below(4000) as f64) / 100.0 - 5.0)).collect();
        push(&[("__name__", "node_temperature_celsius"), ("instance", instance), ("job", "node")], samples);
    }
    for instance in ["i0", "i1"] {
        let bounds = ["0.1", "0.5", "1", "+Inf"];
        let mut counts = [0.0f64; 4];
        let mut sum = 0.0;
        let mut series: Vec<Vec<(i64, f64)>> = vec![Vec::new(); 6];
        for i in 0..POINTS {
            let t = ts(i, &mut rng);
            if instance == "i1" && i == 240 {
                counts = [0.0; 4];
                sum = 0.0;
            }
            let observations = rng.below(10);
            for _ in 0..observations {
                let bucket = rng.below(4) as usize;
                for c in counts.iter_mut().skip(bucket) {
                    *c += 1.0;
                }
                sum += [0.05, 0.3, 0.7, 2.5][bucket];
            }
            for (b, c) in counts.iter().enumerate() {
                series[b].push((t, *c));
            }
            series[4].push((t, sum));
            series[5].push((t, counts[3]));
        }
        for (b, le) in bounds.iter().enumerate() {
            push(
                &[("__name__", "rpc_duration_seconds_bucket"), ("instance", instance), ("job", "rpc"), ("le", le)],
                series[b].clone(),
            );
        }
        push(&[("__name__", "rpc_duration_seconds_sum"), ("instance", instance), ("job", "rpc")], series[4].clone());
        push(&[("__name__", "rpc_duration_seconds_count"), ("instance", instance), ("job", "rpc")], series[5].clone());
    }
    // A target scraped every 5 s (with millisecond jitter) that goes down for three minutes (a
    // stale marker on each of its series, as Prometheus writes when a scrape fails) and comes back
    // restarted: its counter and its histogram's buckets from zero. Issue 15 reported rate and
    // histogram_quantile differing here by 1–20 %. The cause is a deliberate 2.x→3.x change
    // (prometheus/prometheus#13725, in 2.51 and 3.x): extrapolation towards a counter's zero
    // point is now capped at half a sample interval first, as the `dings`/`bumms` evals of
    // functions.test pin (Amber passes them); 2.42 extrapolated to the zero point whenever it lay
    // within 1.1 intervals. With a first sample after the restart above zero (0 < v ≤ 19 here)
    // the two disagree in the minute after the restart, and Amber keeps 3.x's answer. The data
    // here restarts at exactly 0, where both rules extrapolate nothing to the left, so the
    // instants and the fine range around the restart check everything else: stale markers, the
    // gap and the reset.
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    let mut restarted = Vec::new();
    let mut buckets: Vec<Vec<(i64, f64)>> = vec![Vec::new(); 3];
    let (mut v, mut counts) = (0.0, [0.0f64; 3]);
    for i in 0..1200i64 {
        let t = t0 + i * 5_000 + 1 + rng.below(9) as i64;
        match i {
            600 => {
                restarted.push((t, stale));
                buckets.iter_mut().for_each(|b| b.push((t, stale)));
                continue;
            }
            601..636 => continue,
            636 => (v, counts) = (0.0, [0.0; 3]),
            _ => {
                v += rng.below(20) as f64;
                for _ in 0..rng.below(6) {
                    let bucket = rng.below(3) as usize;
                    counts.iter_mut().skip(bucket).for_each(|c| *c += 1.0);
                }
            }
        }
        restarted.push((t, v));
        for (b, c) in buckets.iter_mut().zip(counts) {
            b.push((t, c));
        }
    }
    push(&[("__name__", "worker_jobs_total"), ("instance", "w0"), ("job", "worker")], restarted);
    for (le, b) in ["0.1", "1", "+Inf"].into_iter().zip(buckets) {
        push(&[("__name__", "worker_job_seconds_bucket"), ("instance", "w0"), ("job", "worker"), ("le", le)], b);
    }
    let mut short: Vec<(i64, f64)> = (0..100).map(|i| (ts(i, &mut rng), i as f64)).collect();
    short.push((ts(100, &mut rng), f64::from_bits(0x7ff0_0000_0000_0002)));
    push(&[("__name__", "batch_progress"), ("job", "batch")], short);
    out
}

/// Queries over every family: selectors, offsets, `@`, subqueries, operators, aggregations, functions.
const QUERIES: &[&str] = &[
    "http_requests_total",
    "http_requests_total offset 10m",
    r#"http_requests_total{code=~"5.."}"#,
    r#"http_requests_total{code!="200",instance=~"i.*"}"#,
    "batch_progress",
    "rate(http_requests_total[5m])",
    "irate(http_requests_total[5m])",
    "increase(http_requests_total[10m])",
    "delta(node_temperature_celsius[10m])",
    "idelta(node_temperature_celsius[5m])",
    "resets(http_requests_total[30m])",
    "changes(node_temperature_celsius[10m])",
    "deriv(node_temperature_celsius[10m])",
    "predict_linear(node_temperature_celsius[10m], 3600)",
    "avg_over_time(node_temperature_celsius[10m])",
    "sum_over_time(node_temperature_celsius[10m])",
    "min_over_time(node_temperature_celsius[10m])",
    "max_over_time(node_temperature_celsius[10m])",
    "count_over_time(http_requests_total[10m])",
    "stddev_over_time(node_temperature_celsius[10m])",
    "stdvar_over_time(node_temperature_celsius[10m])",
    "quantile_over_time(0.9, node_temperature_celsius[10m])",
    "last_over_time(node_temperature_celsius[10m])",
    "present_over_time(batch_progress[10m])",
    "absent_over_time(batch_progress[10m])",
    "absent(nonexistent_metric{job=\"x\"})",
    "sum(rate(http_requests_total[5m]))",
    "sum by (job, code) (rate(http_requests_total[5m]))",
    "sum without (instance) (rate(http_requests_total[5m]))",
    "avg by (job) (node_temperature_celsius)",
    "min(node_temperature_celsius)",
    "max by (job) (node_temperature_celsius)",
    "count(http_requests_total)",
    "group by (code) (http_requests_total)",
    "stddev(node_temperature_celsius)",
    "stdvar(node_temperature_celsius)",
    "topk(2, node_temperature_celsius)",
    "bottomk(1, rate(http_requests_total[5m]))",
    "quantile(0.75, node_temperature_celsius)",
    r#"count_values("value", round(node_temperature_celsius / 10))"#,
    "histogram_quantile(0.9, sum by (le) (rate(rpc_duration_seconds_bucket[5m])))",
    "histogram_quantile(0.5, rate(rpc_duration_seconds_bucket[10m]))",
    "rate(rpc_duration_seconds_sum[5m]) / rate(rpc_duration_seconds_count[5m])",
    "http_requests_total / ignoring(code) group_left sum without (code) (http_requests_total)",
    "sum by (instance) (http_requests_total) / on(instance) group_right sum by (instance, code) (http_requests_total)",
    r#"http_requests_total{code="500"} / on(instance) http_requests_total{code="200"}"#,
    "node_temperature_celsius > 10",
    "node_temperature_celsius > bool 10",
    "10 < node_temperature_celsius",
    "node_temperature_celsius == node_temperature_celsius",
    "node_temperature_celsius % 7",
    "node_temperature_celsius ^ 2",
    "-node_temperature_celsius",
    r#"http_requests_total{code="200"} and http_requests_total{instance="i0"}"#,
    r#"http_requests_total{code="200"} or node_temperature_celsius"#,
    r#"http_requests_total unless http_requests_total{code="500"}"#,
    "abs(node_temperature_celsius)",
    "ceil(node_temperature_celsius)",
    "floor(node_temperature_celsius)",
    "round(node_temperature_celsius, 0.5)",
    "sqrt(abs(node_temperature_celsius))",
    "exp(node_temperature_celsius / 10)",
    "ln(abs(node_temperature_celsius))",
    "log2(abs(node_temperature_celsius))",
    "log10(abs(node_temperature_celsius))",
    "sgn(node_temperature_celsius)",
    "clamp(node_temperature_celsius, 0, 20)",
    "clamp_min(node_temperature_celsius, 0)",
    "clamp_max(node_temperature_celsius, 20)",
    "sin(node_temperature_celsius) + cos(node_temperature_celsius) - tan(node_temperature_celsius / 100)",
    "asin(clamp(node_temperature_celsius / 40, -1, 1))",
    "deg(atan(node_temperature_celsius)) + rad(node_temperature_celsius)",
    "sinh(node_temperature_celsius / 40) * cosh(node_temperature_celsius / 40) * tanh(node_temperature_celsius)",
    "time()",
    "timestamp(node_temperature_celsius)",
    "vector(1) + 1",
    "scalar(sum(node_temperature_celsius))",
    "hour() + minute() + month() + year() + day_of_week() + day_of_month() + day_of_year() + days_in_month()",
    r#"label_replace(node_temperature_celsius, "host", "$1", "instance", "i(.*)")"#,
    r#"label_join(node_temperature_celsius, "both", "-", "instance", "job")"#,
    "max_over_time(rate(http_requests_total[5m])[30m:1m])",
    "avg_over_time(node_temperature_celsius[20m:2m] offset 5m)",
    "rate(http_requests_total[5m] offset -5m)",
    "node_temperature_celsius @ end()",
    "sum(rate(http_requests_total[5m] @ start()))",
    "rate(worker_jobs_total[1m])",
    "increase(worker_jobs_total[5m])",
    "irate(worker_jobs_total[1m])",
    "resets(worker_jobs_total[10m])",
    "histogram_quantile(0.9, rate(worker_job_seconds_bucket[1m]))",
    "histogram_quantile(0.5, sum by (le) (increase(worker_job_seconds_bucket[5m])))",
    // Windows too short to hold two samples: no series at all, not series without points.
    "rate(http_requests_total[1s])",
    "increase(http_requests_total[10s])",
    "irate(node_temperature_celsius[10s]) * 2",
];

/// An answer reduced to comparable form: series labels → points (time, value).
fn normalise(body: &Value) -> BTreeMap<String, Vec<(i64, f64)>> {
    let data = &body["data"];
    let parse = |v: &Value| -> f64 {
        match v.as_str().unwrap() {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            s => s.parse().unwrap(),
        }
    };
    let point = |p: &Value| ((p[0].as_f64().unwrap() * 1000.0).round() as i64, parse(&p[1]));
    let mut out = BTreeMap::new();
    match data["resultType"].as_str().unwrap() {
        "scalar" => {
            out.insert("scalar".into(), vec![point(&data["result"])]);
        }
        "vector" => {
            for s in data["result"].as_array().unwrap() {
                out.insert(s["metric"].to_string(), vec![point(&s["value"])]);
            }
        }
        "matrix" => {
            for s in data["result"].as_array().unwrap() {
                out.insert(s["metric"].to_string(), s["values"].as_array().unwrap().iter().map(point).collect());
            }
        }
        other => panic!("unexpected result type {other}"),
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-6 * a.abs().max(b.abs())
}

fn same(a: &BTreeMap<String, Vec<(i64, f64)>>, b: &BTreeMap<String, Vec<(i64, f64)>>) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((ka, va), (kb, vb))| {
            ka == kb && va.len() == vb.len() && va.iter().zip(vb).all(|(x, y)| x.0 == y.0 && close(x.1, y.1))
        })
}

#[test]
fn promql_answers_match_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &[]);
    let prometheus =
        Prometheus::start(dir.path(), "global:\n  scrape_interval: 1h\n", &["--web.enable-remote-write-receiver"]);
    let now = common::now_ms();
    let t0 = now - now % 60_000 - 3 * 3_600_000;
    let body = common::encode(&request(dataset(t0)));
    assert_eq!(amber.write_raw(body.clone()).0, 204);
    let r = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{}/api/v1/write", prometheus.port))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .body(body)
        .send()
        .unwrap();
    assert!(r.status().is_success(), "prometheus refused the data: {}", r.text().unwrap());

    let (start, end) = (t0 / 1000 + 913, t0 / 1000 + 6313);
    let mut failures = Vec::new();
    let mut compared = 0;
    for q in QUERIES {
        let instant = |at: i64| format!("/api/v1/query?query={}&time={at}", urlencode(q));
        let range = format!("/api/v1/query_range?query={}&start={start}&end={end}&step=150", urlencode(q));
        let mut paths = vec![instant(start + 1800), instant(end), range];
        if q.contains("worker_job") {
            // Around the restart (stale marker 3000 s after t0, back at 3180 s), finely.
            let restart = t0 / 1000 + 3180;
            paths.extend([-3, 2, 5, 17, 33, 61, 122, 244].map(|d| instant(restart + d)));
            let fine = format!(
                "/api/v1/query_range?query={}&start={}&end={}&step=7",
                urlencode(q),
                restart - 240,
                restart + 420
            );
            paths.push(fine);
        }
        for path in paths {
            let text =
                reqwest::blocking::get(format!("http://127.0.0.1:{}{path}", prometheus.port)).unwrap().text().unwrap();
            let want: Value = serde_json::from_str(&text).unwrap();
            let (status, got) = amber.get(&path);
            compared += 1;
            if want["status"] != "success" {
                panic!("prometheus failed {path}: {want}");
            }
            if status != 200 || !same(&normalise(&want), &normalise(&got)) {
                failures.push(format!("{q}\n  path: {path}\n  prometheus: {want}\n  amber:      {got}"));
            }
        }
    }
    println!("{} of {compared} answers equal to Prometheus's", compared - failures.len());
    assert!(failures.is_empty(), "{} answers differ:\n{}", failures.len(), failures.join("\n"));
}
