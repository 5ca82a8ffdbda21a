//! End to end with real Prometheus (Debian's `prometheus`): it scrapes an OpenMetrics target
//! whose counter and histogram buckets carry exemplars, remote-writes to Amber with
//! `send_exemplars: true`, and Amber's answers must equal Prometheus's own for the same range:
//! `query_exemplars`, `series`, `labels`, label values and metadata, then every raw sample.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use amber_storage::{Options, Storage, TenantId};
use common::Amber;
use common::prometheus::{Prometheus, get_json, sorted_by_series};
use serde_json::Value;

/// The OpenMetrics page of scrape `n`: counters grow, and every exemplar has a new trace id.
fn page(n: u64) -> String {
    let trace = |k: u64| format!("{:016x}{:016x}", 0xa3b_e2e, n * 10 + k);
    let ts = format!("{}.{:03}", common::now_ms() / 1000, n % 1000);
    format!(
        "# TYPE e2e_requests counter\n\
         # HELP e2e_requests Requests handled.\n\
         e2e_requests_total{{path=\"/a\"}} {c} # {{trace_id=\"{t0}\"}} 1 {ts}\n\
         e2e_requests_total{{path=\"/b\"}} {c2}\n\
         # TYPE e2e_latency_seconds histogram\n\
         # HELP e2e_latency_seconds Request latency.\n\
         # UNIT e2e_latency_seconds seconds\n\
         e2e_latency_seconds_bucket{{le=\"0.1\"}} {b1} # {{trace_id=\"{t1}\",span_id=\"{s1:016x}\"}} 0.05 {ts}\n\
         e2e_latency_seconds_bucket{{le=\"1.0\"}} {b2} # {{trace_id=\"{t2}\"}} 0.5 {ts}\n\
         e2e_latency_seconds_bucket{{le=\"+Inf\"}} {b3} # {{trace_id=\"{t3}\"}} 2.5 {ts}\n\
         e2e_latency_seconds_sum {sum}\n\
         e2e_latency_seconds_count {b3}\n\
         # TYPE e2e_temperature gauge\n\
         e2e_temperature {g}\n\
         # EOF\n",
        c = n * 3,
        c2 = n,
        t0 = trace(0),
        b1 = n,
        b2 = n * 2,
        b3 = n * 3,
        t1 = trace(1),
        s1 = n,
        t2 = trace(2),
        t3 = trace(3),
        sum = n as f64 * 1.25,
        g = 20.0 + (n % 7) as f64 / 4.0,
    )
}

/// Serves `page(n)` for scrape n until `up` turns false, then answers 503 (so Prometheus ends the
/// series with stale markers).
fn serve_target(listener: TcpListener, up: Arc<AtomicBool>, scrapes: Arc<AtomicU64>) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf);
        let response = if up.load(Ordering::SeqCst) {
            let n = scrapes.fetch_add(1, Ordering::SeqCst) + 1;
            let body = page(n);
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        } else {
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
        };
        let _ = stream.write_all(response.as_bytes());
    }
}

/// Prometheus scraping the OpenMetrics target with exemplar storage on, remote-writing to Amber.
fn start_prometheus(dir: &std::path::Path, target_port: u16, amber_port: u16) -> Prometheus {
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: e2e\n    scrape_interval: 1s\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n\
         remote_write:\n  - url: http://127.0.0.1:{amber_port}/api/v1/write\n    send_exemplars: true\n    \
         queue_config:\n      batch_send_deadline: 1s\n    metadata_config:\n      send: true\n      send_interval: 1s\n"
    );
    Prometheus::start(dir, &config, &["--enable-feature=exemplar-storage"])
}

#[test]
fn amber_answers_what_prometheus_answers_for_the_same_scrapes() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &[]);
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    let target_port = target.local_addr().unwrap().port();
    let (up, scrapes) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicU64::new(0)));
    {
        let (up, scrapes) = (up.clone(), scrapes.clone());
        std::thread::spawn(move || serve_target(target, up, scrapes));
    }
    let start = common::now_ms() / 1000 - 60;
    let prometheus = start_prometheus(dir.path(), target_port, amber.port);
    let deadline = Instant::now() + Duration::from_secs(60);
    while scrapes.load(Ordering::SeqCst) < 8 {
        assert!(Instant::now() < deadline, "prometheus scraped {} times", scrapes.load(Ordering::SeqCst));
        std::thread::sleep(Duration::from_millis(200));
    }
    // Take the target down: Prometheus writes stale markers and no more exemplars arrive.
    up.store(false, Ordering::SeqCst);
    let end = common::now_ms() / 1000 + 60;

    let paths = [
        format!("/api/v1/query_exemplars?query=e2e_latency_seconds_bucket&start={start}&end={end}"),
        format!(
            "/api/v1/query_exemplars?query=sum(rate(e2e_requests_total[1m]))%20or%20e2e_temperature&start={start}&end={end}"
        ),
        format!("/api/v1/query_exemplars?query={{job=%22e2e%22,le!~%220.1%22}}&start={start}&end={end}"),
        format!("/api/v1/series?match[]={{job=%22e2e%22}}&start={start}&end={end}"),
        format!("/api/v1/series?match[]=e2e_latency_seconds_bucket&match[]=up&start={start}&end={end}"),
        format!("/api/v1/labels?match[]={{job=%22e2e%22}}&start={start}&end={end}"),
        format!("/api/v1/label/__name__/values?match[]={{job=%22e2e%22}}&start={start}&end={end}"),
        format!("/api/v1/label/le/values?match[]={{job=%22e2e%22}}&start={start}&end={end}"),
        "/api/v1/metadata?metric=e2e_requests".to_string(),
        "/api/v1/metadata?metric=e2e_latency_seconds".to_string(),
    ];
    // Remote write is asynchronous: wait until Amber has caught up, then demand equality.
    let deadline = Instant::now() + Duration::from_secs(60);
    for path in &paths {
        loop {
            let want = sorted_by_series(prometheus.get(path)["data"].clone());
            let got = sorted_by_series(get_json(amber.port, path)["data"].clone());
            let non_empty =
                want.as_array().is_some_and(|a| !a.is_empty()) || want.as_object().is_some_and(|o| !o.is_empty());
            if non_empty && want == got {
                println!("equal to Prometheus ({} bytes of JSON): {path}", want.to_string().len());
                break;
            }
            assert!(Instant::now() < deadline, "{path}\nprometheus: {want}\namber:      {got}\n{}", amber.log_tail());
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let exemplars = get_json(amber.port, &paths[0])["data"].clone();
    let n: usize = exemplars.as_array().unwrap().iter().map(|s| s["exemplars"].as_array().unwrap().len()).sum();
    assert!(n >= 3 * 8, "only {n} bucket exemplars arrived");

    // Every raw sample Prometheus holds for the job is in Amber's store, value for value. Prometheus
    // keeps scraping (`up` of the downed target), so compare up to the newest sample it returned,
    // once it has flushed its remote-write queue on shutdown.
    let raw = prometheus.get(&format!("/api/v1/query?query=%7Bjob%3D%22e2e%22%7D%5B10m%5D&time={end}"));
    prometheus.stop();
    let mut amber = amber;
    amber.stop();
    let storage = Storage::open(&amber.data_dir, Options::default()).unwrap();
    let matrix = raw["data"]["result"].as_array().expect("a matrix");
    assert!(matrix.len() >= 10, "{raw}");
    for series in matrix {
        let matchers: Vec<amber_storage::Matcher> = series["metric"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| amber_storage::Matcher::equal(k.clone(), v.as_str().unwrap()))
            .collect();
        let found = storage.select_labels(TenantId::DEFAULT, &[matchers], i64::MIN / 2, i64::MAX / 2).unwrap();
        assert_eq!(found.len(), 1, "{}", series["metric"]);
        let newest = series["values"].as_array().unwrap().last().unwrap()[0].as_f64().unwrap();
        let got: Vec<(i64, String)> = storage
            .samples(found[0].0, i64::MIN, (newest * 1000.0).round() as i64)
            .unwrap()
            .into_iter()
            .filter(|s| !s.is_stale_marker())
            .map(|s| (s.ts, amber_api::response::format_value(s.value)))
            .collect();
        let want: Vec<(i64, String)> = series["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| ((p[0].as_f64().unwrap() * 1000.0).round() as i64, p[1].as_str().unwrap().to_string()))
            .collect();
        assert_eq!(got, want, "{}", series["metric"]);
    }
}

/// Amber's own `/metrics` follows Prometheus's conventions: real Prometheus scrapes it, remote-
/// writes it back into Amber (the setup `grafana/README.md` describes), and every query of the
/// Amber dashboard returns data, in Prometheus and in Amber alike.
#[test]
fn the_amber_dashboard_works_when_prometheus_scrapes_amber() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &["--max-body-bytes", "100000"]);
    let config = format!(
        "global:\n  scrape_interval: 1s\n\
         scrape_configs:\n  - job_name: amber\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n\
         remote_write:\n  - url: http://127.0.0.1:{port}/api/v1/write\n    queue_config:\n      batch_send_deadline: 1s\n",
        port = amber.port
    );
    let prometheus = Prometheus::start(dir.path(), &config, &[]);
    // Something for every panel: samples with an exemplar, a rejected sample and exemplar, a
    // breached limit, a query.
    let t = common::now_ms() - 60_000;
    let req = common::request(vec![common::series(
        &[("__name__", "x_bucket"), ("le", "1")],
        &[(t, 1.0)],
        &[(t, 1.0, &[("trace_id", "ab")])],
    )]);
    assert_eq!(amber.write(&req), (204, String::new()));
    let conflicting = common::request(vec![common::series(&[("__name__", "x_bucket"), ("le", "1")], &[(t, 2.0)], &[])]);
    assert_eq!(amber.write(&conflicting).0, 400);
    let long = "f".repeat(200);
    let bad_exemplar =
        common::request(vec![common::series(&[("__name__", "y")], &[], &[(t, 1.0, &[("trace_id", &long)])])]);
    assert_eq!(amber.write(&bad_exemplar).0, 400);
    assert_eq!(amber.write_raw(vec![0; 200_000]).0, 413);
    amber.data(&format!("/api/v1/query?query=x_bucket&time={}", t / 1000));

    let exprs = common::dashboard_queries("amber.json");
    let deadline = Instant::now() + Duration::from_secs(90);
    for expr in exprs {
        let path = format!("/api/v1/query?query={}", common::urlencode(&expr));
        loop {
            // Keep the write and query rates above zero while Prometheus scrapes.
            amber.write(&req);
            amber.data(&format!("/api/v1/query?query=x_bucket&time={}", t / 1000));
            let in_prometheus = prometheus.get(&path);
            let (status, in_amber) = amber.get(&path);
            let has_data = |v: &Value| v["data"]["result"].as_array().is_some_and(|r| !r.is_empty());
            if has_data(&in_prometheus) && status == 200 && has_data(&in_amber) {
                break;
            }
            assert!(Instant::now() < deadline, "{expr}: no data (Prometheus {in_prometheus}, Amber {in_amber})");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    prometheus.stop();
}

/// Amber's own `/metrics` pass `promtool check metrics` (help text, names, types) in the text
/// format; a scraper that accepts OpenMetrics gets OpenMetrics.
#[test]
fn amber_metrics_pass_promtool_check_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &[]);
    // Something written and something refused, so labelled counters have samples too.
    let t = common::now_ms();
    let ok = common::series(&[("__name__", "up")], &[(t, 1.0)], &[]);
    let too_old = common::series(&[("__name__", "up")], &[(t - 400 * 24 * 3_600_000, 1.0)], &[]);
    assert_eq!(amber.write(&common::request(vec![ok, too_old])).0, 400);
    let text = reqwest::blocking::get(amber.url("/metrics")).unwrap();
    assert_eq!(text.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let text = text.text().unwrap();
    assert!(text.contains("amber_samples_rejected_total{reason=\"too_old\"} 1"), "{text}");
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package) is installed");
    promtool.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.is_empty(), "promtool check metrics: {said}");
    let openmetrics = reqwest::blocking::Client::new()
        .get(amber.url("/metrics"))
        .header("Accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
        .send()
        .unwrap();
    assert_eq!(openmetrics.headers()["content-type"], "application/openmetrics-text; version=1.0.0; charset=utf-8");
    assert!(openmetrics.text().unwrap().ends_with("# EOF\n"));
}
