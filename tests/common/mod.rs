//! Test harness: starts the real `amber` binary on a free port with its own data directory and
//! speaks the real wire formats to it.
#![allow(dead_code)] // Each test binary uses its own subset of these helpers.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use amber_api::prompb;
use prost::Message;
use serde_json::Value;

pub mod ceph;
pub mod client_model;
pub mod etcd;
pub mod native_histograms;
pub mod prometheus;

/// The headers a remote write 1.0 sender (Prometheus) sends with a body.
pub const RW1_HEADERS: [(&str, &str); 3] = [
    ("Content-Encoding", "snappy"),
    ("Content-Type", "application/x-protobuf"),
    ("X-Prometheus-Remote-Write-Version", "0.1.0"),
];

/// The headers a remote write 2.0 sender sends with a body.
pub const RW2_HEADERS: [(&str, &str); 3] = [
    ("Content-Encoding", "snappy"),
    ("Content-Type", "application/x-protobuf;proto=io.prometheus.write.v2.Request"),
    ("X-Prometheus-Remote-Write-Version", "2.0.0"),
];

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `amber` process.
pub struct Amber {
    pub data_dir: PathBuf,
    pub port: u16,
    /// Port of the OTLP gRPC receiver.
    pub grpc_port: u16,
    pub extra_args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
    /// `http`, or `https` when started with TLS.
    scheme: &'static str,
    http: reqwest::blocking::Client,
}

impl Amber {
    /// Starts Amber on a fresh data directory inside `dir`.
    pub fn start(dir: &Path, extra_args: &[&str]) -> Amber {
        let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        Amber::start_with(dir, extra_args, "http", http)
    }

    /// Starts Amber in `dir` (made if missing) with `extra_args` given as owned strings.
    pub fn start_in(dir: &Path, extra_args: &[String]) -> Amber {
        std::fs::create_dir_all(dir).unwrap();
        let args: Vec<&str> = extra_args.iter().map(String::as_str).collect();
        Amber::start(dir, &args)
    }

    /// Starts Amber serving HTTPS (its TLS flags in `extra_args`), trusting `root_pem`.
    pub fn start_tls(dir: &Path, extra_args: &[&str], root_pem: &[u8]) -> Amber {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .use_rustls_tls()
            .add_root_certificate(reqwest::Certificate::from_pem(root_pem).unwrap())
            .build()
            .unwrap();
        Amber::start_with(dir, extra_args, "https", http)
    }

    fn start_with(dir: &Path, extra_args: &[&str], scheme: &'static str, http: reqwest::blocking::Client) -> Amber {
        let mut amber = Amber {
            data_dir: dir.join("data"),
            port: free_port(),
            grpc_port: free_port(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            child: None,
            log: dir.join("amber.log"),
            scheme,
            http,
        };
        amber.spawn();
        amber
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_amber"))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--otlp-grpc-listen")
            .arg(format!("127.0.0.1:{}", self.grpc_port))
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting amber");
        self.child = Some(child);
        // Opening replays the WAL: generous for a debug build on a loaded machine; the loop ends
        // as soon as the server answers.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(r) = self.http.get(self.url("/-/ready")).send() {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("amber exited with {status}:\n{}", self.log_tail());
            }
            assert!(Instant::now() < deadline, "amber did not become ready:\n{}", self.log_tail());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://127.0.0.1:{}{path}", self.scheme, self.port)
    }

    /// The value of `amber_limits_exceeded_total{limit="<limit>"}`, 0 when absent.
    pub fn limit_exceeded(&self, limit: &str) -> u64 {
        self.metric(&format!("amber_limits_exceeded_total{{limit=\"{limit}\"}}")).map_or(0, |n| n as u64)
    }

    /// The largest resident set the running process has had (`VmHWM`), in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        let pid = self.child.as_ref().expect("amber is running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let kib = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).expect("VmHWM in /proc/<pid>/status");
        kib.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap() * 1024
    }

    /// SIGKILL: no shutdown code runs, as in a crash or OOM kill.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            Command::new("kill").arg("-TERM").arg(c.id().to_string()).status().unwrap();
            let status = c.wait().unwrap();
            assert!(status.success(), "amber exited with {status} after SIGTERM:\n{}", self.log_tail());
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Posts a remote-write body with the headers Prometheus sends; returns status and body.
    pub fn write_raw(&self, body: Vec<u8>) -> (u16, String) {
        self.try_write_raw(body).expect("remote write request")
    }

    /// Like [`Amber::write_raw`], but a failed connection is returned rather than a panic.
    pub fn try_write_raw(&self, body: Vec<u8>) -> reqwest::Result<(u16, String)> {
        self.post_write(body, &[])
    }

    /// A remote write with extra headers (tenant, credentials); returns status and body.
    pub fn write_with(&self, headers: &[(&str, &str)], req: &prompb::WriteRequest) -> (u16, String) {
        self.post_write(encode(req), headers).expect("remote write request")
    }

    /// Sends the data of `req` as remote write 2.0 ([`amber_api::remote_write::to_v2`]);
    /// returns status and body.
    pub fn write_v2(&self, req: &prompb::WriteRequest) -> (u16, String) {
        self.post(encode_v2(req), &RW2_HEADERS).expect("remote write 2.0 request")
    }

    fn post_write(&self, body: Vec<u8>, headers: &[(&str, &str)]) -> reqwest::Result<(u16, String)> {
        self.post(body, &[&RW1_HEADERS[..], headers].concat())
    }

    fn post(&self, body: Vec<u8>, headers: &[(&str, &str)]) -> reqwest::Result<(u16, String)> {
        let mut request = self.http.post(self.url("/api/v1/write"));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let r = request.body(body).send()?;
        Ok((r.status().as_u16(), r.text()?))
    }

    pub fn try_write(&self, req: &prompb::WriteRequest) -> reqwest::Result<(u16, String)> {
        self.try_write_raw(encode(req))
    }

    pub fn write(&self, req: &prompb::WriteRequest) -> (u16, String) {
        self.write_raw(encode(req))
    }

    /// The value `/metrics` shows for `series`, written as it appears there (name, then labels if
    /// any: `amber_limits_exceeded_total{limit="ingestion_rate"}`); `None` when it is not there.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let text = self.http.get(self.url("/metrics")).send().expect("GET /metrics").text().unwrap();
        let prefix = format!("{series} ");
        text.lines().find_map(|l| l.strip_prefix(&prefix)).map(|v| v.trim().parse().unwrap())
    }

    /// GETs a JSON API path; returns status and parsed body.
    pub fn get(&self, path_and_query: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path_and_query)).send().expect("GET");
        let status = r.status().as_u16();
        let text = r.text().unwrap();
        (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path_and_query}: {e}: {text}")))
    }

    /// GETs a path and asserts success; returns `data`.
    pub fn data(&self, path_and_query: &str) -> Value {
        let (status, body) = self.get(path_and_query);
        assert_eq!(status, 200, "{path_and_query}: {body}");
        assert_eq!(body["status"], "success", "{path_and_query}: {body}");
        body["data"].clone()
    }
}

impl Drop for Amber {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Polls `f` until it returns a value, for at most `timeout`; panics naming `what` after that.
/// Tests wait for a condition this way, never for a fixed time.
pub fn eventually<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `amber`'s `data` for each API path, with the path.
pub fn answers(amber: &Amber, questions: &[String]) -> Vec<(String, Value)> {
    questions.iter().map(|q| (q.clone(), amber.data(q))).collect()
}

/// Asserts two sets of answers are equal, question by question, and that they are not all empty.
pub fn assert_same(what: &str, got: &[(String, Value)], want: &[(String, Value)]) {
    for ((q, g), (_, w)) in got.iter().zip(want) {
        assert_eq!(g, w, "{what}: {q}");
    }
    let non_empty = want.iter().filter(|(_, v)| v.as_array().is_none_or(|a| !a.is_empty())).count();
    assert!(non_empty >= want.len() - 1, "{what}: the reference answered mostly nothing: {want:#?}");
}

/// Snappy-compresses a protobuf `WriteRequest`, as remote write 1.0 sends it.
pub fn encode(req: &prompb::WriteRequest) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap()
}

/// The same data as remote write 2.0 sends it: interned, then snappy-compressed.
pub fn encode_v2(req: &prompb::WriteRequest) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(&amber_api::remote_write::to_v2(req).encode_to_vec()).unwrap()
}

pub fn labels(pairs: &[(&str, &str)]) -> Vec<prompb::Label> {
    pairs.iter().map(|(n, v)| prompb::Label { name: n.to_string(), value: v.to_string() }).collect()
}

/// An exemplar as tests write it: timestamp, value, labels.
pub type ExemplarSpec<'a> = (i64, f64, &'a [(&'a str, &'a str)]);

pub fn series(pairs: &[(&str, &str)], samples: &[(i64, f64)], exemplars: &[ExemplarSpec<'_>]) -> prompb::TimeSeries {
    prompb::TimeSeries {
        labels: labels(pairs),
        samples: samples.iter().map(|&(timestamp, value)| prompb::Sample { value, timestamp }).collect(),
        exemplars: exemplars
            .iter()
            .map(|&(timestamp, value, l)| prompb::Exemplar { labels: labels(l), value, timestamp })
            .collect(),
        histograms: Vec::new(),
    }
}

/// A series of native histogram samples (`(timestamp, histogram, integer)`, sent as
/// [`native_histograms::wire`] makes them) and exemplars.
pub fn histogram_series(
    pairs: &[(&str, &str)],
    histograms: &[(i64, &amber_storage::Histogram, bool)],
    exemplars: &[ExemplarSpec<'_>],
) -> prompb::TimeSeries {
    prompb::TimeSeries {
        histograms: histograms.iter().map(|&(ts, h, integer)| native_histograms::wire(h, integer, ts)).collect(),
        ..series(pairs, &[], exemplars)
    }
}

pub fn request(timeseries: Vec<prompb::TimeSeries>) -> prompb::WriteRequest {
    prompb::WriteRequest { timeseries, metadata: Vec::new() }
}

/// Now, in milliseconds, rounded down to a whole second so expected JSON timestamps are simple.
pub fn now_ms() -> i64 {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    ms - ms % 1000
}

/// Percent-encodes a query parameter.
pub fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Every query of a provisioned Grafana dashboard (`grafana/dashboards/<file>`).
pub fn dashboard_queries(file: &str) -> Vec<String> {
    dashboard_targets(file, "prometheus").map(|t| t["expr"].as_str().unwrap().to_string()).collect()
}

/// The URLs of a provisioned dashboard's panels that read Amber's own JSON endpoints through
/// Grafana's Infinity data source, with Grafana's `${__from}`/`${__to}` variables left in.
pub fn dashboard_urls(file: &str) -> Vec<String> {
    dashboard_targets(file, "yesoreyeram-infinity-datasource").map(|t| t["url"].as_str().unwrap().to_string()).collect()
}

/// The targets of a provisioned dashboard's panels whose data source is of `datasource_type`.
fn dashboard_targets(file: &str, datasource_type: &str) -> impl Iterator<Item = Value> {
    let path = format!("{}/grafana/dashboards/{file}", env!("CARGO_MANIFEST_DIR"));
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let panels = dashboard["panels"].as_array().unwrap().clone();
    let datasource_type = datasource_type.to_string();
    panels
        .into_iter()
        .filter(move |p| p["datasource"]["type"] == datasource_type.as_str())
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
}
