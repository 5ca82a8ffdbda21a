//! Native histograms end to end with real Prometheus (Debian's 2.42, started with
//! `--enable-feature=native-histograms,exemplar-storage`): it scrapes a target this test serves in
//! the protobuf exposition format (client_model's `MetricFamily`, encoded here with prost) and
//! remote-writes what it scraped to Amber (RW 1.0 with its `histograms` field,
//! `send_native_histograms` and `send_exemplars` on). Amber's answers to `query`, `query_range`,
//! `query_exemplars` and `series` must then equal Prometheus's own for the same times.
//!
//! The data: four histogram series in three families — schema 0 with a gap between its spans (two
//! series, for `sum by`), schema 3 with negative and positive buckets, schema -1 whose zero bucket
//! holds most observations — and a counter reset part-way, where every count drops to a low value.
//! Each sample carries an exemplar with a trace id.
//!
//! The target sets every sample's timestamp itself, 10 s apart, and serves sample k at its k-th
//! scrape (the last one again and again afterwards, which Prometheus ignores as a duplicate). So
//! the data is the same whatever the scrape timing, and twenty one-second scrapes produce three
//! minutes of it. Those minutes start a minute ahead of the clock: Prometheus 2.42's remote write
//! (its WAL watcher) sends only samples newer than its own start, and Amber takes samples up to ten
//! minutes ahead.
//!
//! Prometheus 2.42 reads a native histogram's exemplars only from the classic `bucket` list
//! (`model/textparse/protobufparse.go`, `Exemplar`), and its scrape loop takes one exemplar per
//! histogram per scrape; client_model's newer `Histogram.exemplars` field, which later versions
//! read first, it does not know. The target puts each exemplar in both places.
//!
//! Where Prometheus 2.42 and Prometheus 3 deliberately differ, the test keeps 3.x's semantics:
//! - Range windows are left-open in 3.x and closed in 2.x. Every evaluation time sits 5 s after a
//!   sample, so no window starts on one and the two agree.
//! - `histogram_quantile` interpolates linearly in 2.42 and exponentially within exponential
//!   buckets in 3.x, which also walks the buckets from the top for q ≥ 0.5. Its expected answers
//!   are 3.x's rule (`promql/quantile.go`, `HistogramQuantile`) applied to Prometheus's own `rate`
//!   answer, which must itself equal Amber's. Below the median in the zero bucket both versions
//!   compute the same, and that quantile is compared with Prometheus's answer directly.
//! - 3.x extrapolates a histogram `rate` towards the zero point of the count, 2.42 does not; every
//!   window's first sample here holds a count high enough that the rule never applies.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use amber_api::response::format_value;
use common::Amber;
use common::client_model::{self, Bucket, BucketSpan, Exemplar, LabelPair, Metric, MetricFamily, Timestamp};
use common::prometheus::{Prometheus, get_json, sorted_by_series};
use serde_json::{Value, json};

/// Samples per series.
const SAMPLES: usize = 20;
/// Seconds between a series' samples.
const SPACING_S: i64 = 10;
/// The sample at which every count drops to a low value: a counter reset.
const RESET_AT: usize = 12;

/// One histogram series of the target: its layout, and how much each bucket holds per unit of
/// [`scale`].
struct Series {
    family: &'static str,
    labels: &'static [(&'static str, &'static str)],
    schema: i32,
    zero_threshold: f64,
    zero: u64,
    /// `(bucket index, count per unit)`, by ascending index.
    positive: &'static [(i32, u64)],
    negative: &'static [(i32, u64)],
    /// Sum per unit; a multiple of a power of two, so that sums and their differences are exact.
    sum: f64,
}

const SERIES: [Series; 4] = [
    Series {
        family: "e2e_rpc_seconds",
        labels: &[("method", "get")],
        schema: 0,
        zero_threshold: 0.0,
        zero: 0,
        positive: &[(-1, 3), (0, 4), (1, 2), (3, 1)],
        negative: &[],
        sum: 9.75,
    },
    Series {
        family: "e2e_rpc_seconds",
        labels: &[("method", "put")],
        schema: 0,
        zero_threshold: 0.0,
        zero: 0,
        positive: &[(0, 1), (1, 5), (2, 2)],
        negative: &[],
        sum: 14.5,
    },
    Series {
        family: "e2e_drift_seconds",
        labels: &[("clock", "a")],
        schema: 3,
        zero_threshold: 0.0,
        zero: 0,
        positive: &[(2, 2), (3, 1), (7, 3)],
        negative: &[(-2, 1), (0, 2), (1, 1)],
        sum: 2.625,
    },
    Series {
        family: "e2e_queue_wait_seconds",
        labels: &[("queue", "main")],
        schema: -1,
        zero_threshold: 0.001,
        zero: 20,
        positive: &[(0, 1), (1, 1)],
        negative: &[],
        sum: 3.0625,
    },
];

/// Units of observations in sample `k`: growing, then starting again low at [`RESET_AT`].
fn scale(k: usize) -> u64 {
    if k < RESET_AT { 100 + k as u64 } else { (k - RESET_AT + 1) as u64 }
}

/// The upper bound of bucket `index` of a standard exponential schema.
fn upper_bound(schema: i32, index: i32) -> f64 {
    2f64.powf(index as f64 * 2f64.powi(-schema))
}

/// Bucket counts of sample `k`: each bucket's count per unit times [`scale`]. The highest
/// positive bucket holds `scale²/100` more, so that the shape of the distribution, and with it every
/// quantile, changes over time and differs after the reset.
fn counts(buckets: &[(i32, u64)], k: usize, positive: bool) -> Vec<(i32, u64)> {
    let units = scale(k);
    let mut counts: Vec<(i32, u64)> = buckets.iter().map(|&(index, per_unit)| (index, per_unit * units)).collect();
    if let Some(highest) = counts.last_mut().filter(|_| positive) {
        highest.1 += skew(k);
    }
    counts
}

fn skew(k: usize) -> u64 {
    scale(k) * scale(k) / 100
}

/// The spans and count deltas of buckets `(index, count)`, by ascending index.
fn spans_and_deltas(buckets: &[(i32, u64)]) -> (Vec<BucketSpan>, Vec<i64>) {
    let mut spans: Vec<BucketSpan> = Vec::new();
    let mut deltas = Vec::new();
    let (mut next_index, mut previous) = (0, 0);
    for (n, &(index, count)) in buckets.iter().enumerate() {
        match spans.last_mut() {
            Some(span) if index == next_index => span.length += 1,
            _ => spans.push(BucketSpan { offset: if n == 0 { index } else { index - next_index }, length: 1 }),
        }
        deltas.push(count as i64 - previous);
        (next_index, previous) = (index + 1, count as i64);
    }
    (spans, deltas)
}

fn label_pairs(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs.iter().map(|(n, v)| LabelPair { name: n.to_string(), value: v.to_string() }).collect()
}

/// Sample `k` of series `s` (the `n`-th of [`SERIES`]), with its exemplar in a positive bucket.
fn metric(n: usize, s: &Series, k: usize, base_s: i64) -> Metric {
    let units = scale(k);
    let (positive, negative) = (counts(s.positive, k, true), counts(s.negative, k, false));
    let count = s.zero * units + positive.iter().chain(&negative).map(|b| b.1).sum::<u64>();
    let (positive_span, positive_delta) = spans_and_deltas(&positive);
    let (negative_span, negative_delta) = spans_and_deltas(&negative);
    let t = base_s + k as i64 * SPACING_S;
    let (index, _) = s.positive[k % s.positive.len()];
    let exemplar = Exemplar {
        label: label_pairs(&[("trace_id", &format!("{:016x}{:016x}", 0xe2e_0000 + n, k))]),
        value: upper_bound(s.schema, index),
        timestamp: Some(Timestamp { seconds: t, nanos: 0 }),
    };
    let histogram = client_model::Histogram {
        sample_count: count,
        sample_sum: s.sum * units as f64 + skew(k) as f64,
        bucket: vec![Bucket { cumulative_count: 0, upper_bound: exemplar.value, exemplar: Some(exemplar.clone()) }],
        schema: s.schema,
        zero_threshold: s.zero_threshold,
        zero_count: s.zero * units,
        negative_span,
        negative_delta,
        positive_span,
        positive_delta,
        exemplars: vec![exemplar],
    };
    Metric { label: label_pairs(s.labels), histogram: Some(histogram), timestamp_ms: t * 1000 }
}

/// The scrape answer holding sample `k` of every series.
fn page(k: usize, base_s: i64) -> Vec<u8> {
    let mut families: Vec<MetricFamily> = Vec::new();
    for (n, s) in SERIES.iter().enumerate() {
        if families.last().is_none_or(|f| f.name != s.family) {
            families.push(MetricFamily {
                name: s.family.to_string(),
                help: format!("{} of the e2e test.", s.family),
                r#type: client_model::HISTOGRAM,
                metric: Vec::new(),
            });
        }
        families.last_mut().unwrap().metric.push(metric(n, s, k, base_s));
    }
    client_model::encode_delimited(&families)
}

/// Serves sample k at the k-th scrape, the last sample after that.
fn serve_target(listener: TcpListener, base_s: i64, scrapes: Arc<AtomicUsize>) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let mut request = [0u8; 4096];
        let _ = stream.read(&mut request);
        let k = scrapes.fetch_add(1, Ordering::SeqCst).min(SAMPLES - 1);
        let body = page(k, base_s);
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            client_model::CONTENT_TYPE,
            body.len()
        );
        let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&body));
    }
}

/// The JSON Prometheus answers for sample `k` of a schema-0 series without a zero bucket (whose
/// bucket bounds are powers of two, so the expected strings are plain).
fn sample_json(s: &Series, k: usize) -> Value {
    let positive = counts(s.positive, k, true);
    let count: u64 = positive.iter().map(|b| b.1).sum();
    let buckets: Vec<Value> = positive
        .iter()
        .map(|&(index, count)| {
            json!([
                0,
                format_value(upper_bound(s.schema, index - 1)),
                format_value(upper_bound(s.schema, index)),
                format_value(count as f64)
            ])
        })
        .collect();
    let sum = s.sum * scale(k) as f64 + skew(k) as f64;
    json!({"count": format_value(count as f64), "sum": format_value(sum), "buckets": buckets})
}

fn parse(v: &Value) -> f64 {
    v.as_str().expect("a value string").parse().expect("a number")
}

/// `histogram_quantile(q, h)` by Prometheus 3's rule (`promql/quantile.go`, `HistogramQuantile`,
/// standard exponential schemas), for `h` in the JSON form of the HTTP API: walk the non-empty
/// buckets from the bottom for q < 0.5 and from the top otherwise; interpolate linearly in the zero
/// bucket (taking 0 as its lower bound when there are no negative buckets) and exponentially in
/// every other bucket.
fn prometheus3_quantile(q: f64, h: &Value) -> f64 {
    let count = parse(&h["count"]);
    let sum = parse(&h["sum"]);
    let buckets: Vec<(f64, f64, f64)> = h["buckets"]
        .as_array()
        .map(|b| b.iter().map(|b| (parse(&b[1]), parse(&b[2]), parse(&b[3]))).collect())
        .unwrap_or_default();
    if count == 0.0 || q.is_nan() {
        return f64::NAN;
    }
    let forward = sum.is_nan() || q < 0.5;
    let mut rank = if forward { q * count } else { (1.0 - q) * count };
    let ordered: Vec<&(f64, f64, f64)> =
        if forward { buckets.iter().collect() } else { buckets.iter().rev().collect() };
    let (mut seen, mut bucket) = (0.0, (0.0, 0.0, 0.0));
    for b in ordered {
        bucket = *b;
        seen += b.2;
        if seen >= rank {
            break;
        }
    }
    let (mut lower, mut upper, in_bucket) = bucket;
    // The zero bucket straddles 0; negative buckets end at or below it, positive ones start at or above.
    let has_negative = buckets.iter().any(|b| b.1 <= 0.0);
    let has_positive = buckets.iter().any(|b| b.0 >= 0.0);
    if lower < 0.0 && upper > 0.0 {
        if !has_negative && has_positive {
            lower = 0.0;
        } else if !has_positive && has_negative {
            upper = 0.0;
        }
    }
    seen = seen.min(count);
    if seen < rank {
        return upper;
    }
    rank = if forward { rank - (seen - in_bucket) } else { seen - rank };
    let fraction = rank / in_bucket;
    if lower <= 0.0 && upper >= 0.0 {
        return lower + (upper - lower) * fraction;
    }
    let (log_lower, log_upper) = (lower.abs().log2(), upper.abs().log2());
    if lower > 0.0 {
        (log_lower + (log_upper - log_lower) * fraction).exp2()
    } else {
        -(log_upper + (log_lower - log_upper) * (1.0 - fraction)).exp2()
    }
}

/// Prometheus 3's answer to `histogram_quantile(q, <expr>)`, given Prometheus's answer (`data`)
/// to `<expr>`: the same series and times, each histogram replaced by its quantile.
fn quantile_of(q: f64, data: &Value) -> Value {
    let point = |p: &Value| json!([p[0], format_value(prometheus3_quantile(q, &p[1]))]);
    let result: Vec<Value> = data["result"]
        .as_array()
        .expect("a result")
        .iter()
        .map(|s| match data["resultType"].as_str() {
            Some("vector") => json!({"metric": s["metric"], "value": point(&s["histogram"])}),
            _ => json!({
                "metric": s["metric"],
                "values": s["histograms"].as_array().expect("histograms").iter().map(point).collect::<Vec<_>>()
            }),
        })
        .collect();
    json!({"resultType": data["resultType"], "result": result})
}

/// `data` with a result's series (or a list of series or exemplars) in label order: Prometheus
/// does not promise an order.
fn normalised(mut data: Value) -> Value {
    if let Some(result) = data.get_mut("result").and_then(Value::as_array_mut) {
        result.sort_by_key(|s| s["metric"].to_string());
        return data;
    }
    if data.as_array().is_some_and(|a| a.iter().all(|s| s.get("seriesLabels").is_some())) {
        return sorted_by_series(data);
    }
    if let Some(list) = data.as_array_mut() {
        list.sort_by_key(Value::to_string);
    }
    data
}

fn encode(expr: &str) -> String {
    common::urlencode(expr)
}

#[test]
fn amber_answers_native_histogram_queries_as_prometheus_does() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &[]);
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    let target_port = target.local_addr().unwrap().port();
    let now_s = common::now_ms() / 1000;
    // Ahead of the clock (see the module comment), and after Prometheus has started.
    let base_s = now_s + 60 - (now_s + 60) % SPACING_S;
    let scrapes = Arc::new(AtomicUsize::new(0));
    {
        let scrapes = scrapes.clone();
        std::thread::spawn(move || serve_target(target, base_s, scrapes));
    }
    let config = format!(
        "global:\n  scrape_interval: 1s\n\
         scrape_configs:\n  - job_name: e2e\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n\
         remote_write:\n  - url: http://127.0.0.1:{amber_port}/api/v1/write\n    send_exemplars: true\n    \
         send_native_histograms: true\n    queue_config:\n      batch_send_deadline: 1s\n",
        amber_port = amber.port
    );
    let prometheus = Prometheus::start(dir.path(), &config, &["--enable-feature=native-histograms,exemplar-storage"]);

    // Prometheus has every sample once every series has all its exemplars (one a scrape).
    let (start, end) = (base_s, base_s + SAMPLES as i64 * SPACING_S);
    let all_exemplars = format!("/api/v1/query_exemplars?query={}&start={start}&end={end}", encode("{job=\"e2e\"}"));
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let data = prometheus.get(&all_exemplars)["data"].clone();
        let per_series: Vec<usize> = data
            .as_array()
            .map(|a| a.iter().map(|s| s["exemplars"].as_array().map_or(0, Vec::len)).collect())
            .unwrap_or_default();
        if per_series == [SAMPLES; SERIES.len()] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after {} scrapes Prometheus holds exemplars {per_series:?}:\n{}",
            scrapes.load(Ordering::SeqCst),
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Every evaluation time is 5 s after a sample (see the module comment): one with a whole
    // window before the reset, one whose window holds it, one with a whole window after it.
    let at = |k: usize| base_s + k as i64 * SPACING_S + 5;
    let instants = [at(RESET_AT - 1), at(RESET_AT + 1), at(SAMPLES - 1)];
    let (range_start, range_end) = (at(6), at(SAMPLES - 1));
    let query = |expr: &str, t: i64| format!("/api/v1/query?query={}&time={t}", encode(expr));
    let query_range = |expr: &str| {
        format!("/api/v1/query_range?query={}&start={range_start}&end={range_end}&step={SPACING_S}", encode(expr))
    };

    // Prometheus itself read the protobuf target as native histograms.
    let get_series = &SERIES[0];
    let latest = prometheus.get(&query("e2e_rpc_seconds{method=\"get\"}", at(SAMPLES - 1)));
    assert_eq!(
        latest["data"]["result"][0]["histogram"],
        json!([at(SAMPLES - 1), sample_json(get_series, SAMPLES - 1)]),
        "{latest}"
    );

    // (path, Prometheus's answer) for everything both versions compute alike.
    let mut expected: Vec<(String, Value)> = Vec::new();
    let mut compare = |path: String| {
        let answer = prometheus.get(&path);
        assert_eq!(answer["status"], "success", "{path}: {answer}");
        expected.push((path, answer["data"].clone()));
    };
    let families = ["e2e_rpc_seconds", "e2e_drift_seconds", "e2e_queue_wait_seconds"];
    let mut exprs: Vec<String> = Vec::new();
    for family in families {
        exprs.push(family.to_string());
        exprs.push(format!("rate({family}[1m])"));
        exprs.push(format!("histogram_count(rate({family}[1m]))"));
        exprs.push(format!("sum by (job) (rate({family}[1m]))"));
    }
    exprs.push("histogram_quantile(0.1, rate(e2e_queue_wait_seconds[1m]))".to_string());
    for expr in &exprs {
        for t in instants {
            compare(query(expr, t));
        }
        compare(query_range(expr));
    }
    compare(query("e2e_drift_seconds[1m]", at(RESET_AT + 1)));
    compare(all_exemplars.clone());
    compare(format!("/api/v1/query_exemplars?query=e2e_rpc_seconds&start={start}&end={end}"));
    compare(format!(
        "/api/v1/query_exemplars?query={}&start={}&end={}",
        encode("histogram_quantile(0.9, sum by (job) (rate(e2e_drift_seconds[1m])))"),
        at(RESET_AT),
        at(SAMPLES - 3)
    ));
    // Amber finds series by index windows, Prometheus by chunks, so a range that ends before the
    // scrape loop's own series (`up`, …) began or starts after they ended is answered differently;
    // this one covers the whole run.
    compare(format!("/api/v1/series?match[]={}&start={}&end={end}", encode("{job=\"e2e\"}"), now_s - 10));
    compare(format!("/api/v1/series?match[]=e2e_queue_wait_seconds&match[]=e2e_rpc_seconds&start={start}&end={end}"));

    // histogram_quantile by Prometheus 3's rule, from Prometheus's own rate answers.
    let mut quantile_exprs: Vec<String> = families.iter().map(|f| format!("rate({f}[1m])")).collect();
    quantile_exprs.push("sum by (job) (rate(e2e_rpc_seconds[1m]))".to_string());
    for inner in &quantile_exprs {
        let outer = format!("histogram_quantile(0.9, {inner})");
        for t in instants {
            expected.push((query(&outer, t), quantile_of(0.9, &prometheus.get(&query(inner, t))["data"])));
        }
        expected.push((query_range(&outer), quantile_of(0.9, &prometheus.get(&query_range(inner))["data"])));
    }

    // Remote write is asynchronous: wait until Amber has caught up, then demand equality of every
    // answer, naming all that differ.
    let expected: Vec<(String, Value)> = expected.into_iter().map(|(path, want)| (path, normalised(want))).collect();
    for (path, want) in &expected {
        let non_empty = want["result"].as_array().or(want.as_array()).is_some_and(|r| !r.is_empty());
        assert!(non_empty, "Prometheus has nothing for {path}: {want}");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut pending: Vec<&(String, Value)> = expected.iter().collect();
    loop {
        pending.retain(|(path, want)| normalised(get_json(amber.port, path)["data"].clone()) != *want);
        if pending.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let report: Vec<String> = pending
                .iter()
                .map(|(path, want)| {
                    let got = normalised(get_json(amber.port, path)["data"].clone());
                    format!("{path}\n  prometheus: {want}\n  amber:      {got}")
                })
                .collect();
            panic!(
                "{} of {} answers differ from Prometheus's:\n{}\n{}",
                pending.len(),
                expected.len(),
                report.join("\n"),
                amber.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    println!("all {} answers equal to Prometheus's", expected.len());
    prometheus.stop();
}
