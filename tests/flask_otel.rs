//! The Flask example end to end: the app in `examples/flask-otel/`, auto-instrumented by
//! `opentelemetry-instrument` with the pinned Python SDK, exports metrics over OTLP gRPC to Amber,
//! and real Prometheus scrapes its OpenMetrics `/metrics` (exemplar storage on) and remote-writes
//! to Amber with `send_exemplars: true`. The trace ids of its requests come back as exemplars from
//! both paths — by trace id and through `query_exemplars` — and again after Amber is killed and
//! restarted. With the SDK's exponential aggregation
//! (`OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION=base2_exponential_bucket_histogram`)
//! the same holds for the native histograms the OTLP histograms become. The Python packages are
//! installed by `examples/flask-otel/setup.sh` into a virtualenv outside the repository.

mod common;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Amber, eventually, free_port, urlencode};
use serde_json::Value;

/// How long each step may take: the app, the SDK's export interval, Prometheus's scrapes.
const WAIT: Duration = Duration::from_secs(60);

/// A child process killed when dropped (the app, Prometheus).
struct App(Child);

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn example_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/flask-otel")
}

/// One request to `/checkout`: the trace id it answers with.
fn checkout(port: u16) -> Option<String> {
    let r = reqwest::blocking::get(format!("http://127.0.0.1:{port}/checkout")).ok()?;
    let body: Value = serde_json::from_str(&r.text().ok()?).ok()?;
    body["trace_id"].as_str().map(str::to_string)
}

/// Trace ids of the exemplars Amber answers for `trace`, with the series they hang on.
fn by_trace(amber: &Amber, trace: &str) -> Value {
    amber.data(&format!("/api/v1/exemplars/trace/{trace}"))
}

/// The example's virtualenv, made by its `setup.sh`.
fn venv() -> String {
    let setup = Command::new(example_dir().join("setup.sh")).stderr(Stdio::inherit()).output().unwrap();
    assert!(setup.status.success(), "examples/flask-otel/setup.sh failed");
    String::from_utf8(setup.stdout).unwrap().trim().to_string()
}

/// The app on `port`, auto-instrumented, exporting its metrics every second over OTLP gRPC to
/// `amber`, with `env` added to its environment; its output goes to `app.log` in `dir`.
fn start_app(venv: &str, dir: &std::path::Path, amber: &Amber, port: u16, env: &[(&str, &str)]) -> App {
    let log = std::fs::File::create(dir.join("app.log")).unwrap();
    App(Command::new(format!("{venv}/bin/opentelemetry-instrument"))
        .args([&format!("{venv}/bin/flask"), "--app", "app", "run", "--port", &port.to_string()])
        .current_dir(example_dir())
        .env("OTEL_SERVICE_NAME", "shop")
        .env("OTEL_METRICS_EXPORTER", "otlp")
        .env("OTEL_TRACES_EXPORTER", "console")
        .env("OTEL_LOGS_EXPORTER", "none")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://127.0.0.1:{}", amber.grpc_port))
        .env("OTEL_EXPORTER_OTLP_INSECURE", "true")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "1000")
        .env("OTEL_EXEMPLAR_FILTER", "trace_based")
        .envs(env.iter().copied())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap())
}

/// Trace ids of the exemplars `query_exemplars` answers for `query` since `start`.
fn exemplar_traces(amber: &Amber, query: &str, start: i64) -> Vec<String> {
    let end = common::now_ms() / 1000 + 5;
    let data = amber.data(&format!("/api/v1/query_exemplars?query={}&start={start}&end={end}", urlencode(query)));
    data.as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["exemplars"].as_array().unwrap().iter())
        .map(|e| e["labels"]["trace_id"].as_str().unwrap().to_string())
        .collect()
}

/// Waits until Amber has exemplars of each of `families` (family, source).
fn wait_for_exemplars(amber: &Amber, families: &[(&str, &str)]) {
    eventually("exemplars of every histogram", WAIT, || {
        let rows = amber.data("/api/v1/status/exemplars");
        let with_exemplars = |(f, source): &(&str, &str)| {
            rows.as_array()
                .unwrap()
                .iter()
                .any(|r| r["family"] == *f && r["source"] == *source && r["exemplars"].as_u64() > Some(0))
        };
        families.iter().all(with_exemplars).then_some(())
    });
}

#[test]
fn trace_ids_of_flask_requests_come_back_from_amber_as_exemplars_across_a_restart() {
    let venv = venv();
    let dir = tempfile::tempdir().unwrap();
    let mut amber = Amber::start(dir.path(), &[]);
    let started = common::now_ms() / 1000 - 5;
    let port = free_port();
    let _app = start_app(&venv, dir.path(), &amber, port, &[]);
    let config = format!(
        "global:\n  scrape_interval: 1s\n\
         scrape_configs:\n  - job_name: shop-prometheus\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n\
         remote_write:\n  - url: http://127.0.0.1:{}/api/v1/write\n    send_exemplars: true\n    queue_config:\n      batch_send_deadline: 1s\n",
        amber.port
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let prometheus = App(Command::new("/usr/bin/prometheus")
        .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("prometheus-data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{}", free_port()))
        .arg("--enable-feature=exemplar-storage")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
        .spawn()
        .expect("starting prometheus (scripts/install-deps installs it)"));
    let mut ours: BTreeSet<String> = BTreeSet::new();
    ours.insert(eventually("the Flask app to answer", WAIT, || checkout(port)));
    for _ in 0..30 {
        ours.insert(checkout(port).expect("the app answers"));
    }

    // Every histogram gets exemplars: over OTLP the auto-instrumented request duration and the
    // business one, through Prometheus the client library's.
    let families = [
        ("http_server_duration_milliseconds", "otlp"),
        ("shop_basket_value_EUR", "otlp"),
        ("shop_checkout_duration_seconds", "remote_write"),
    ];
    wait_for_exemplars(&amber, &families);
    let now = common::now_ms() / 1000 + 5;
    let stored: Vec<(String, Value)> = families
        .iter()
        .map(|(f, _)| {
            // Arrival is counted before the write is durable: wait for the stored exemplars.
            let traces = eventually(&format!("{f}: exemplars from query_exemplars"), WAIT, || {
                Some(exemplar_traces(&amber, &format!("{f}_bucket"), started)).filter(|t| !t.is_empty())
            });
            // Every exemplar is one of our requests' traces.
            for t in &traces {
                assert!(ours.contains(t), "{f}: exemplar trace {t} is not one of the app's requests");
            }
            (f.to_string(), Value::String(traces[0].clone()))
        })
        .collect();
    let looked_up: Vec<(String, Value)> = stored
        .iter()
        .map(|(family, trace)| {
            let found = by_trace(&amber, trace.as_str().unwrap());
            let series: Vec<&str> =
                found.as_array().unwrap().iter().map(|s| s["seriesLabels"]["__name__"].as_str().unwrap()).collect();
            assert!(series.contains(&format!("{family}_bucket").as_str()), "{trace}: {found}");
            (trace.as_str().unwrap().to_string(), found)
        })
        .collect();

    // The example's dashboard shows data, with exemplars on its latency panels.
    // Rates need two exports of the cumulative histograms: wait for them.
    for expr in common::dashboard_queries("shop.json") {
        eventually(&format!("data for {expr}"), WAIT, || {
            let end = common::now_ms() / 1000 + 5;
            let q = format!("/api/v1/query_range?query={}&start={started}&end={end}&step=1", urlencode(&expr));
            (!amber.data(&q)["result"].as_array().unwrap().is_empty()).then_some(())
        });
        if expr.contains("_bucket") {
            let q = format!("/api/v1/query_exemplars?query={}&start={started}&end={now}", urlencode(&expr));
            assert!(!amber.data(&q).as_array().unwrap().is_empty(), "{expr}: no exemplars");
        }
    }

    // Its "slowest requests" table (Amber's exemplars/top, through the Infinity data source)
    // lists the largest exemplars of the dashboard's range, each one of our requests' traces,
    // largest first, the first the largest query_exemplars has.
    for url in common::dashboard_urls("shop.json") {
        let url = url
            .replace("${__from:date:seconds}", &started.to_string())
            .replace("${__to:date:seconds}", &now.to_string());
        let top = amber.data(&url);
        let ranked: Vec<(f64, String)> = top
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["exemplars"].as_array().unwrap().iter())
            .map(|e| {
                (e["value"].as_str().unwrap().parse().unwrap(), e["labels"]["trace_id"].as_str().unwrap().to_string())
            })
            .collect();
        assert!(!ranked.is_empty(), "{url}: {top}");
        for (_, trace) in &ranked {
            assert!(ours.contains(trace), "{url}: exemplar trace {trace} is not one of the app's requests");
        }
        let query = url.split("query=").nth(1).unwrap().split('&').next().unwrap();
        let all = amber.data(&format!("/api/v1/query_exemplars?query={query}&start={started}&end={now}"));
        let largest = all
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["exemplars"].as_array().unwrap().iter())
            .map(|e| e["value"].as_str().unwrap().parse::<f64>().unwrap())
            .fold(f64::NEG_INFINITY, f64::max);
        let best_in_each_series: Vec<f64> = top
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["exemplars"][0]["value"].as_str().unwrap().parse().unwrap())
            .collect();
        assert_eq!(best_in_each_series[0], largest, "{url}: {top}");
        assert!(best_in_each_series.is_sorted_by(|a, b| a >= b), "{url}: series not in rank order: {top}");
    }

    drop(prometheus);
    drop(_app);
    amber.kill9();
    amber.restart();
    for (trace, found) in looked_up {
        assert_eq!(by_trace(&amber, &trace), found, "trace {trace} after a restart");
    }
}

#[test]
fn trace_ids_of_exponential_histograms_come_back_from_the_native_histogram_series_across_a_crash() {
    let venv = venv();
    let dir = tempfile::tempdir().unwrap();
    let mut amber = Amber::start(dir.path(), &[]);
    let started = common::now_ms() / 1000 - 5;
    let port = free_port();
    let aggregation =
        [("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION", "base2_exponential_bucket_histogram")];
    let app = start_app(&venv, dir.path(), &amber, port, &aggregation);
    let mut ours: BTreeSet<String> = BTreeSet::new();
    ours.insert(eventually("the Flask app to answer", WAIT, || checkout(port)));
    for _ in 0..30 {
        ours.insert(checkout(port).expect("the app answers"));
    }
    let families = [("http_server_duration_milliseconds", "otlp"), ("shop_basket_value_EUR", "otlp")];
    wait_for_exemplars(&amber, &families);
    // The exemplars hang on the histogram series itself: no `_bucket` series exist.
    let looked_up: Vec<(String, Value)> = families
        .iter()
        .map(|(family, _)| {
            // Arrival is counted before the write is durable: wait for the stored exemplars.
            let traces = eventually(&format!("{family}: exemplars from query_exemplars"), WAIT, || {
                Some(exemplar_traces(&amber, family, started)).filter(|t| !t.is_empty())
            });
            for t in &traces {
                assert!(ours.contains(t), "{family}: exemplar trace {t} is not one of the app's requests");
            }
            let found = by_trace(&amber, &traces[0]);
            let series: Vec<&str> =
                found.as_array().unwrap().iter().map(|s| s["seriesLabels"]["__name__"].as_str().unwrap()).collect();
            assert!(series.contains(family), "{}: {found}", traces[0]);
            (traces[0].clone(), found)
        })
        .collect();
    let buckets = amber.data(&format!("/api/v1/series?match[]={}", urlencode("{__name__=~\".+_bucket\"}")));
    assert_eq!(buckets, serde_json::json!([]));
    // The native-histogram dashboard's panels show data (rates need two exports) and find their
    // exemplars.
    for expr in common::dashboard_queries("shop-native.json") {
        eventually(&format!("data for {expr}"), WAIT, || {
            let end = common::now_ms() / 1000 + 5;
            let q = format!("/api/v1/query_range?query={}&start={started}&end={end}&step=1", urlencode(&expr));
            (!amber.data(&q)["result"].as_array().unwrap().is_empty()).then_some(())
        });
        assert!(!exemplar_traces(&amber, &expr, started).is_empty(), "{expr}: no exemplars");
    }

    drop(app);
    amber.kill9();
    amber.restart();
    for (trace, found) in looked_up {
        assert_eq!(by_trace(&amber, &trace), found, "trace {trace} after kill -9");
    }
}
