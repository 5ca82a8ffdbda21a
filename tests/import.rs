//! `amber import` from the three sources, against real Prometheus: a day of history written as
//! OpenMetrics text, turned into real TSDB blocks by `promtool tsdb create-blocks-from
//! openmetrics`, served by a real Prometheus on those blocks. Amber imports it from the blocks
//! (`tsdb`), over remote read (`prometheus`) and from the text (`openmetrics`, exemplars
//! included), and each answers the same PromQL and series questions as Prometheus, exactly.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::prometheus::{Prometheus, sorted_by_series};
use common::{Amber, eventually, now_ms, request, series, urlencode};
use serde_json::Value;

const MINUTE: i64 = 60_000;
/// Samples per series: a day at one a minute.
const POINTS: i64 = 1440;

fn amber_bin() -> &'static str {
    env!("CARGO_BIN_EXE_amber")
}

/// Runs `amber` with `args` in `cwd` (where the default journal goes).
fn amber_cli(cwd: &Path, args: &[&str]) -> Output {
    let out = Command::new(amber_bin()).args(args).current_dir(cwd).output().expect("running amber");
    eprintln!(
        "amber {}:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// An Amber with its data directory in `dir/name`.
fn start_amber(dir: &Path, name: &str, args: &[&str]) -> Amber {
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    Amber::start(&dir, args)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The history: six request counters (with a reset) carrying an exemplar every 10 minutes, and two
/// temperature gauges, a sample a minute at :30 past (off the step grid, so that Prometheus 2's
/// closed range windows and Prometheus 3's left-open ones select the same samples).
/// Returns the text and the exemplars it holds as `(trace_id, ts_ms)`.
fn history(start: i64) -> (String, Vec<(String, i64)>) {
    let mut text = String::new();
    let mut exemplars = Vec::new();
    let secs = |ms: i64| format!("{}.{:03}", ms / 1000, ms % 1000);
    text.push_str("# HELP import_requests Requests served.\n# TYPE import_requests counter\n");
    for (code, path) in [("200", "/"), ("200", "/api"), ("500", "/"), ("500", "/api"), ("404", "/"), ("404", "/api")] {
        for i in 0..POINTS {
            let ts = start + i * MINUTE + 30_000;
            // A restart halfway through: the counter starts again from 0.
            let n = if i < POINTS / 2 { i } else { i - POINTS / 2 };
            let value = n as f64 * code.len() as f64 * (path.len() as f64 + 0.5);
            let labels = format!(r#"code="{code}",path="{path}""#);
            if i % 10 == 0 {
                let trace = format!("{code}{}{i:04}", path.len());
                text.push_str(&format!(
                    "import_requests_total{{{labels}}} {value} {} # {{trace_id=\"{trace}\"}} 0.{i:04} {}\n",
                    secs(ts),
                    secs(ts - 1000)
                ));
                exemplars.push((trace, ts - 1000));
            } else {
                text.push_str(&format!("import_requests_total{{{labels}}} {value} {}\n", secs(ts)));
            }
        }
    }
    text.push_str("# HELP import_temperature_celsius Room temperature.\n# TYPE import_temperature_celsius gauge\n# UNIT import_temperature_celsius celsius\n");
    for room in ["attic", "cellar"] {
        for i in 0..POINTS {
            let ts = start + i * MINUTE + 30_000;
            let value = if room == "attic" { 20.0 + (i % 37) as f64 * 0.125 } else { -3.5 + (i % 11) as f64 * 1e-3 };
            text.push_str(&format!("import_temperature_celsius{{room=\"{room}\"}} {value} {}\n", secs(ts)));
        }
    }
    text.push_str("# EOF\n");
    (text, exemplars)
}

/// The questions every Amber must answer as Prometheus does, over the day of history.
fn questions(start: i64) -> Vec<String> {
    let (s, e) = (start / 1000, (start + POINTS * MINUTE) / 1000);
    let range =
        |q: &str, step: u32| format!("/api/v1/query_range?query={}&start={s}&end={e}&step={step}", urlencode(q));
    vec![
        range(r#"{__name__=~"import_.+"}"#, 60),
        range("sum by (code) (rate(import_requests_total[5m]))", 300),
        range("max_over_time(import_temperature_celsius[1h])", 3600),
        range("increase(import_requests_total[1h])", 1800),
        format!("/api/v1/series?match[]={}&start={s}&end={e}", urlencode(r#"{__name__=~"import_.+"}"#)),
        format!("/api/v1/label/code/values?start={s}&end={e}"),
    ]
}

fn prometheus_answers(p: &Prometheus, questions: &[String]) -> Vec<(String, Value)> {
    questions
        .iter()
        .map(|q| {
            let body = p.get(q);
            assert_eq!(body["status"], "success", "prometheus {q}: {body}");
            (q.clone(), sort_series(body["data"].clone()))
        })
        .collect()
}

/// Series lists and matrices in label order: neither server promises an order for `/series`.
fn sort_series(mut data: Value) -> Value {
    let list = if data["result"].is_array() { &mut data["result"] } else { &mut data };
    if let Some(items) = list.as_array_mut() {
        items.sort_by_key(|v| if v["metric"].is_null() { v.to_string() } else { v["metric"].to_string() });
    }
    data
}

fn amber_answers(amber: &Amber, questions: &[String]) -> Vec<(String, Value)> {
    questions.iter().map(|q| (q.clone(), sort_series(amber.data(q)))).collect()
}

fn assert_same_answers(what: &str, got: &[(String, Value)], want: &[(String, Value)]) {
    for ((q, g), (_, w)) in got.iter().zip(want) {
        assert_eq!(g, w, "{what}: {q}");
    }
}

#[test]
fn history_from_blocks_remote_read_and_openmetrics_answers_as_prometheus_does() {
    let dir = tempfile::tempdir().unwrap();
    let start = (now_ms() / (24 * 60 * MINUTE) - 2) * (24 * 60 * MINUTE);
    let (text, exemplars) = history(start);
    let om = dir.path().join("history.om");
    std::fs::write(&om, &text).unwrap();

    // Real blocks, written by promtool where Prometheus will read them.
    let blocks = dir.path().join("prometheus-data");
    let made = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om)
        .arg(&blocks)
        .output()
        .expect("promtool is installed by scripts/install-deps");
    assert!(made.status.success(), "promtool: {}", String::from_utf8_lossy(&made.stderr));

    // From the blocks, before Prometheus starts (it compacts them once it runs).
    let from_blocks = start_amber(dir.path(), "from-blocks", &[]);
    let out = amber_cli(dir.path(), &["import", "tsdb", blocks.to_str().unwrap(), "--url", &from_blocks.url("")]);
    assert!(out.status.success());
    let all_samples = 8 * POINTS;
    assert!(
        stdout(&out).starts_with(&format!("imported {all_samples} samples, 0 histogram samples and 0 exemplars")),
        "{}",
        stdout(&out)
    );

    let prometheus = Prometheus::start(
        dir.path(),
        "global:\n  scrape_interval: 1h\n",
        &["--web.enable-remote-write-receiver", "--enable-feature=exemplar-storage"],
    );
    // Recent data with exemplars, which Prometheus keeps in memory: remote read gives the
    // samples, query_exemplars the exemplars.
    let now = now_ms() / 1000 * 1000;
    let recent: Vec<(i64, f64)> = (0..20).map(|i| (now - (20 - i) * 15_000, i as f64)).collect();
    let recent_exemplars: Vec<common::ExemplarSpec<'_>> =
        vec![(now - 200_000, 0.3, &[("trace_id", "feedbeef01")]), (now - 100_000, 0.7, &[("trace_id", "feedbeef02")])];
    let req = request(vec![series(
        &[("__name__", "import_latency_seconds_bucket"), ("le", "0.5")],
        &recent,
        &recent_exemplars,
    )]);
    let body = common::encode(&req);
    let posted = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{}/api/v1/write", prometheus.port))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .unwrap();
    assert!(posted.status().is_success(), "{:?}", posted.text());
    let questions = questions(start);
    let want = eventually("Prometheus to load the blocks", Duration::from_secs(30), || {
        let answers = prometheus_answers(&prometheus, &questions);
        (answers[0].1["result"].as_array().map_or(0, Vec::len) == 8).then_some(answers)
    });
    assert_same_answers("imported from blocks", &amber_answers(&from_blocks, &questions), &want);

    // Over remote read, a 6 h slice at a time, with Prometheus's exemplars.
    let from_remote = start_amber(dir.path(), "from-remote-read", &[]);
    let prom_url = format!("http://127.0.0.1:{}", prometheus.port);
    let since = (start / 1000).to_string();
    let args = ["import", "prometheus", "--prometheus-url", &prom_url, "--start", &since, "--slice", "6h", "--url"];
    let out = amber_cli(dir.path(), &[&args[..], &[&from_remote.url("")]].concat());
    assert!(out.status.success());
    assert!(
        stdout(&out)
            .starts_with(&format!("imported {} samples, 0 histogram samples and 2 exemplars", all_samples + 20)),
        "{}",
        stdout(&out)
    );
    assert_same_answers("imported over remote read", &amber_answers(&from_remote, &questions), &want);
    let exemplar_query = format!(
        "/api/v1/query_exemplars?query=import_latency_seconds_bucket&start={}&end={}",
        now / 1000 - 3600,
        now / 1000 + 60
    );
    let want_exemplars = sorted_by_series(prometheus.get(&exemplar_query)["data"].clone());
    assert_eq!(want_exemplars.as_array().map(Vec::len), Some(1), "{want_exemplars}");
    assert_eq!(sorted_by_series(from_remote.data(&exemplar_query)), want_exemplars);
    // A rerun finds every slice in the journal.
    let out = amber_cli(dir.path(), &[&args[..], &[&from_remote.url("")]].concat());
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("resuming"));
    assert!(stdout(&out).starts_with("imported 0 samples"), "{}", stdout(&out));

    // From the text, into a store that already has live data for one of its series: history
    // goes into sealed blocks, not the head, whatever the live series' newest sample.
    let from_text = start_amber(dir.path(), "from-openmetrics", &[]);
    let live =
        request(vec![series(&[("__name__", "import_temperature_celsius"), ("room", "attic")], &[(now, 21.0)], &[])]);
    assert_eq!(from_text.write(&live).0, 204);
    let head_samples = from_text.metric("amber_head_samples");
    let out = amber_cli(dir.path(), &["import", "openmetrics", om.to_str().unwrap(), "--url", &from_text.url("")]);
    assert!(out.status.success());
    let n = exemplars.len();
    assert!(
        stdout(&out).starts_with(&format!("imported {all_samples} samples, 0 histogram samples and {n} exemplars")),
        "{}",
        stdout(&out)
    );
    assert_eq!(from_text.metric("amber_head_samples"), head_samples, "the import went into the head");
    assert_same_answers("imported from OpenMetrics", &amber_answers(&from_text, &questions), &want);
    // The exemplars Prometheus's blocks cannot hold: all of them, with their trace ids.
    let (s, e) = (start / 1000, (start + POINTS * MINUTE) / 1000);
    let got = from_text.data(&format!("/api/v1/query_exemplars?query=import_requests_total&start={s}&end={e}"));
    let mut got_traces: Vec<(String, i64)> = got
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["exemplars"].as_array().unwrap().clone())
        .map(|x| {
            (
                x["labels"]["trace_id"].as_str().unwrap().to_string(),
                (x["timestamp"].as_f64().unwrap() * 1000.0).round() as i64,
            )
        })
        .collect();
    got_traces.sort();
    let mut want_traces = exemplars.clone();
    want_traces.sort();
    assert_eq!(got_traces, want_traces);
    let by_trace = from_text.data(&format!("/api/v1/exemplars/trace/{}", exemplars[7].0));
    assert_eq!(by_trace.as_array().map(Vec::len), Some(1), "{by_trace}");
    let metadata = from_text.data("/api/v1/metadata?metric=import_temperature_celsius");
    assert_eq!(metadata["import_temperature_celsius"][0]["unit"], "celsius", "{metadata}");
    assert_eq!(metadata["import_temperature_celsius"][0]["type"], "gauge", "{metadata}");
    // Imported again from the start (--fresh): everything is already held, nothing is written twice.
    let out =
        amber_cli(dir.path(), &["import", "openmetrics", om.to_str().unwrap(), "--fresh", "--url", &from_text.url("")]);
    assert!(out.status.success());
    assert!(stdout(&out).starts_with("imported 0 samples, 0 histogram samples and 0 exemplars"), "{}", stdout(&out));
    assert_same_answers("imported twice", &amber_answers(&from_text, &questions), &want);
    // Still there after a restart: the import's 2xx meant durable.
    let mut from_text = from_text;
    from_text.kill9();
    from_text.restart();
    assert_same_answers("after kill -9", &amber_answers(&from_text, &questions), &want);
}

/// What retention would delete is refused, named, and the rest written; the exit code says so.
#[test]
fn import_refuses_history_older_than_retention_and_writes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let start = (now_ms() / (24 * 60 * MINUTE) - 2) * (24 * 60 * MINUTE);
    // Retention ends halfway through the day of history.
    let cutoff = start + 12 * 60 * MINUTE;
    let retention = format!("{}s", (now_ms() - cutoff) / 1000);
    let amber = start_amber(dir.path(), "amber", &["--retention", &retention]);
    let (text, _) = history(start);
    let om = dir.path().join("history.om");
    std::fs::write(&om, text).unwrap();
    let out = amber_cli(dir.path(), &["import", "openmetrics", om.to_str().unwrap(), "--url", &amber.url("")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("too old: before the retention period"));
    let kept_from = (cutoff + 60 * MINUTE) / 1000;
    let q = format!("/api/v1/query?query=count(import_temperature_celsius)&time={kept_from}");
    assert_eq!(amber.data(&q)["result"][0]["value"][1], "2");
    let q = format!("/api/v1/query?query=count(import_temperature_celsius)&time={}", start / 1000 + 120);
    assert_eq!(amber.data(&q)["result"], Value::Array(vec![]));
}

/// An import to a URL that is not an Amber stops with the answer, not retries forever.
#[test]
fn import_to_a_wrong_url_stops_with_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let amber = start_amber(dir.path(), "amber", &[]);
    let om = dir.path().join("one.om");
    std::fs::write(&om, "up 1 100\n# EOF\n").unwrap();
    let out = amber_cli(dir.path(), &["import", "openmetrics", om.to_str().unwrap(), "--url", &amber.url("/nothing")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(&om, "up 1\n# EOF\n").unwrap();
    let out = amber_cli(dir.path(), &["import", "openmetrics", om.to_str().unwrap(), "--url", &amber.url("")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("one.om:1: a sample without a timestamp"));
}
