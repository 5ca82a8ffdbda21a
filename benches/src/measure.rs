//! What is measured on each system, and the table that shows it.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::systems::{Kind, System};
use crate::workload::{Protocol, Workload};

/// What a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Ingest, bytes on disk and memory.
    Ingest,
    /// Query latency (the workload is ingested first).
    Query,
    /// Everything.
    All,
    /// Amber past one disk: uploads to a real Ceph RADOS Gateway, and a querier reading them back
    /// (see `bucket.rs`).
    Bucket,
    /// Amber past one machine: a distributor and three ingesters on a ring in etcd beside one
    /// node (see `cluster.rs`).
    Cluster,
    /// The workload brought in as history (`amber import` from OpenMetrics text and from
    /// promtool's blocks, `POST /api/v1/import`) beside promtool's own backfill, and snapshot
    /// times (see `import.rs`). Not part of `all`.
    Import,
    /// One Amber under steady load for an hour, killed every ten minutes: nothing lost, nothing
    /// growing without bound (see `soak.rs`). Not part of `all`.
    Soak,
}

pub struct Latency {
    pub p50: Duration,
    pub p99: Duration,
}

pub fn latency(mut times: Vec<Duration>) -> Latency {
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    Latency { p50: at(0.5), p99: at(0.99) }
}

pub struct SystemResult {
    pub kind: Kind,
    /// The remote write version the workload was sent in.
    pub protocol: Protocol,
    /// Flags Amber ran with beyond the benchmark's own.
    pub amber_flags: &'static [&'static str],
    pub samples_per_s: f64,
    pub write: Latency,
    /// Requests that did not get a 2xx, and the first such answer.
    pub write_errors: usize,
    pub first_error: Option<String>,
    pub rss_bytes: u64,
    /// The data directory [`RUNNING_DISK_AFTER`] after the last write, the system running and
    /// asked for nothing: what a user sees.
    pub running_bytes: u64,
    /// Amber: bytes of the exemplar column families at the same moment (part of `running_bytes`).
    pub running_exemplar_bytes: Option<u64>,
    /// Time from starting again after `kill -9` (just after `running_bytes`) to ready.
    pub restart: Duration,
    pub persisted_bytes: u64,
    /// Amber: bytes of the exemplar column families (part of `persisted_bytes`).
    pub exemplar_bytes: Option<u64>,
    /// Series the system answers for at the end of the window.
    pub series_visible: f64,
    pub queries: Vec<Latency>,
    /// `query_exemplars` over the whole window: latency and exemplars returned.
    pub exemplars: Option<(Latency, usize)>,
}

/// Cores and memory of this machine.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))
        .unwrap_or_default();
    format!("{cores} cores ({cpu}), {} GiB memory", mem_kb >> 20)
}

/// Snappy + protobuf decode of every payload in `protocol`, no storage: samples per second with
/// one thread per client, the ceiling the ingest rates are compared with.
pub fn decode_only(w: &Workload, protocol: Protocol) -> f64 {
    let started = Instant::now();
    std::thread::scope(|scope| {
        for payloads in w.payloads(protocol) {
            scope.spawn(move || {
                for p in payloads {
                    match protocol {
                        Protocol::V1 => {
                            let req = amber_api::remote_write::decode(p, usize::MAX);
                            std::hint::black_box(req.expect("the workload decodes"));
                        }
                        Protocol::V2 => {
                            let req = amber_api::remote_write::decode_v2(p, usize::MAX);
                            std::hint::black_box(req.expect("the workload decodes"));
                        }
                    }
                }
            });
        }
    });
    w.samples as f64 / started.elapsed().as_secs_f64()
}

/// Pushes every payload in `protocol`, one thread per client, each waiting for its answer.
pub fn ingest(system: &System, w: &Workload, protocol: Protocol) -> (f64, Latency, usize, Option<String>) {
    ingest_to(system, "/api/v1/write", w.payloads(protocol), protocol, w.samples)
}

/// [`ingest`] of other bodies holding `samples`, to another endpoint taking remote write bodies
/// (`/api/v1/import`).
pub fn ingest_to(
    system: &System,
    path: &str,
    payloads: &[Vec<Vec<u8>>],
    protocol: Protocol,
    samples: u64,
) -> (f64, Latency, usize, Option<String>) {
    let url = system.url(path);
    let started = Instant::now();
    let per_client: Vec<(Vec<Duration>, usize, Option<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = payloads
            .iter()
            .map(|payloads| {
                let url = url.clone();
                scope.spawn(move || {
                    let http = reqwest::blocking::Client::builder()
                        .timeout(Duration::from_secs(120))
                        .build()
                        .expect("http client");
                    let (mut times, mut errors, mut first) = (Vec::with_capacity(payloads.len()), 0, None);
                    for p in payloads {
                        let sent = Instant::now();
                        let mut post = http.post(&url);
                        for (name, value) in protocol.headers() {
                            post = post.header(name, value);
                        }
                        let answer = post.body(p.clone()).send();
                        times.push(sent.elapsed());
                        match answer {
                            Ok(r) if r.status().is_success() => {}
                            Ok(r) => {
                                errors += 1;
                                let status = r.status();
                                first.get_or_insert_with(|| format!("{status}: {}", r.text().unwrap_or_default()));
                            }
                            Err(e) => {
                                errors += 1;
                                first.get_or_insert_with(|| e.to_string());
                            }
                        }
                    }
                    (times, errors, first)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("client thread")).collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let errors = per_client.iter().map(|c| c.1).sum();
    let first = per_client.iter().find_map(|c| c.2.clone());
    let times = per_client.into_iter().flat_map(|c| c.0).collect();
    (samples as f64 / elapsed, latency(times), errors, first)
}

/// Fetches `url`, timing until the whole body has arrived; the JSON is parsed after the clock
/// stops, so the client's parsing does not count against the system measured.
pub fn timed_get(http: &reqwest::blocking::Client, url: &str) -> anyhow::Result<(Duration, serde_json::Value)> {
    let started = Instant::now();
    let r = http.get(url).send()?;
    let status = r.status();
    let body = r.bytes()?;
    let elapsed = started.elapsed();
    anyhow::ensure!(status.is_success(), "{url}: {status} {}", String::from_utf8_lossy(&body));
    Ok((elapsed, serde_json::from_slice(&body)?))
}

fn get_json(http: &reqwest::blocking::Client, url: &str) -> anyhow::Result<serde_json::Value> {
    Ok(timed_get(http, url)?.1)
}

/// A query string's value, percent-encoded.
pub(crate) fn encode(q: &str) -> String {
    form_urlencoded::byte_serialize(q.as_bytes()).collect()
}

/// The path of range query `q` over the workload's whole window at a 60 s step.
pub fn range_query_path(w: &Workload, q: &str) -> String {
    let (start, end) = (w.start_ms as f64 / 1000.0, w.end_ms as f64 / 1000.0);
    format!("/api/v1/query_range?query={}&start={start}&end={end}&step=60", encode(q))
}

/// The path of `query_exemplars` over the workload's whole window.
pub fn exemplars_path(w: &Workload) -> String {
    let (start, end) = (w.start_ms as f64 / 1000.0, w.end_ms as f64 / 1000.0);
    // An exemplar comes from within the scrape interval before its sample.
    format!("/api/v1/query_exemplars?query={}&start={}&end={end}", w.exemplar_metric, start - 15.0)
}

/// Exemplars in an answer of `query_exemplars` or of a trace lookup.
pub fn exemplars_returned(body: &serde_json::Value) -> usize {
    body["data"].as_array().map_or(0, |a| a.iter().map(|s| s["exemplars"].as_array().map_or(0, Vec::len)).sum())
}

/// Series the system at `base` (its URL without a path) answers for at the end of the window.
pub fn series_visible(http: &reqwest::blocking::Client, base: &str, w: &Workload) -> anyhow::Result<f64> {
    let end = w.end_ms as f64 / 1000.0;
    let count = get_json(http, &format!("{base}/api/v1/query?query={}&time={end}", encode("count({job=\"node\"})")))?;
    Ok(count["data"]["result"][0]["value"][1].as_str().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN))
}

/// How long after the last write the data directory is measured while the system runs: more
/// than a default maintenance interval of Amber (1 minute), so one sealing pass has run.
pub const RUNNING_DISK_AFTER: Duration = Duration::from_secs(75);

pub fn system(
    kind: Kind,
    protocol: Protocol,
    amber_flags: &'static [&'static str],
    amber_bin: &Path,
    w: &Workload,
    queries: bool,
    runs: usize,
) -> anyhow::Result<SystemResult> {
    let mut system = System::start(kind, amber_bin, amber_flags)?;
    let (samples_per_s, write, write_errors, first_error) = ingest(&system, w, protocol);
    let last_write = Instant::now();
    let rss_bytes = system.rss_bytes()?;
    // Not a wait for a condition: the measure is defined as the state this long after ingest.
    std::thread::sleep(RUNNING_DISK_AFTER.saturating_sub(last_write.elapsed()));
    let running_bytes = system.data_bytes();
    let running_exemplar_bytes = if kind == Kind::Amber { Some(system.amber_exemplar_bytes()?) } else { None };
    let restart = system.kill9_and_restart()?;
    let persisted_bytes = system.persisted_bytes(w.start_ms)?;
    let exemplar_bytes = if kind == Kind::Amber { Some(system.amber_exemplar_bytes()?) } else { None };
    let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(600)).build()?;
    let series_visible = series_visible(&http, &system.url(""), w)?;
    let mut latencies = Vec::new();
    let mut exemplars = None;
    if queries {
        for (_, q) in w.queries {
            let url = system.url(&range_query_path(w, q));
            let mut times = Vec::with_capacity(runs);
            for _ in 0..runs {
                times.push(timed_get(&http, &url)?.0);
            }
            latencies.push(latency(times));
        }
        if kind != Kind::VictoriaMetrics {
            let url = system.url(&exemplars_path(w));
            let (mut times, mut returned) = (Vec::with_capacity(runs), 0);
            for _ in 0..runs {
                let (elapsed, body) = timed_get(&http, &url)?;
                times.push(elapsed);
                returned = exemplars_returned(&body);
            }
            exemplars = Some((latency(times), returned));
        }
    }
    system.stop()?;
    Ok(SystemResult {
        kind,
        protocol,
        amber_flags,
        samples_per_s,
        write,
        write_errors,
        first_error,
        rss_bytes,
        running_bytes,
        running_exemplar_bytes,
        restart,
        persisted_bytes,
        exemplar_bytes,
        series_visible,
        queries: latencies,
        exemplars,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl SystemResult {
    /// The table's name for this column: the system, and the version when it is not 1.0.
    fn column(&self) -> String {
        let name = match self.amber_flags {
            [] => self.kind.name().to_string(),
            flags => format!("{} {}", self.kind.name(), flags.join(" ")),
        };
        match self.protocol {
            Protocol::V1 => name,
            Protocol::V2 => format!("{name} (remote write 2.0)"),
        }
    }
}

/// The ratio columns: Amber (its first column) ÷ each peer, and each further Amber column (the
/// same data in another remote write version, or with other flags) ÷ the first. Pairs of positions in `results`.
fn ratios(results: &[SystemResult]) -> Vec<(usize, usize)> {
    let Some(base) = results.iter().position(|r| r.kind == Kind::Amber) else { return Vec::new() };
    (0..results.len())
        .filter(|&i| i != base)
        .map(|i| if results[i].kind == Kind::Amber { (i, base) } else { (base, i) })
        .collect()
}

/// A table cell: whole numbers from 100 up, three decimals below, `n/a` where nothing applies.
pub fn cell(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.3}"),
        None => "n/a".into(),
    }
}

/// A ratio cell, `n/a` where either side is missing or the divisor is 0.
pub fn ratio_cell(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => format!("{:.2}", a / b),
        _ => "n/a".into(),
    }
}

/// One row: a label, a value per system (None where it does not apply) and the [`ratios`].
fn row(out: &mut String, results: &[SystemResult], label: &str, value: impl Fn(&SystemResult) -> Option<f64>) {
    let cells: Vec<String> = results.iter().map(|r| cell(value(r))).collect();
    let ratios: Vec<String> =
        ratios(results).into_iter().map(|(a, b)| ratio_cell(value(&results[a]), value(&results[b]))).collect();
    out.push_str(&format!("| {label} | {} | {} |\n", cells.join(" | "), ratios.join(" | ")));
}

/// The table of `results`; `decode` is the decode-only limit of each version sent.
pub fn table(w: &Workload, decode: &[(Protocol, f64)], results: &[SystemResult], mode: Mode) -> String {
    let mut out = String::new();
    let names: Vec<String> = results.iter().map(SystemResult::column).collect();
    let peers: Vec<String> = ratios(results).into_iter().map(|(a, b)| format!("{} ÷ {}", names[a], names[b])).collect();
    out.push_str(&format!("| measure | {} | {} |\n", names.join(" | "), peers.join(" | ")));
    out.push_str(&format!("|---|{}{}\n", "---:|".repeat(names.len()), "---:|".repeat(peers.len())));
    let limit = |p: Protocol| decode.iter().find(|(q, _)| *q == p).map(|(_, v)| *v);
    let kind = w.sample_kind;
    row(&mut out, results, &format!("ingest {kind}s/s"), |r| Some(r.samples_per_s));
    row(&mut out, results, "ingest ÷ decode-only limit", |r| limit(r.protocol).map(|d| r.samples_per_s / d));
    row(&mut out, results, "write p50 ms", |r| Some(ms(r.write.p50)));
    row(&mut out, results, "write p99 ms", |r| Some(ms(r.write.p99)));
    row(&mut out, results, "failed writes", |r| Some(r.write_errors as f64));
    let after = RUNNING_DISK_AFTER.as_secs();
    row(&mut out, results, &format!("bytes on disk per {kind} while running ({after} s after ingest)"), |r| {
        Some(r.running_bytes as f64 / w.samples as f64)
    });
    // Exemplars apart, as in the sealed figure below: the peers do not keep them.
    row(&mut out, results, &format!("bytes on disk per {kind} while running, exemplars apart"), |r| {
        Some((r.running_bytes - r.running_exemplar_bytes.unwrap_or(0)) as f64 / w.samples as f64)
    });
    row(&mut out, results, &format!("bytes on disk per {kind}, sealed / flushed and merged"), |r| {
        Some((r.persisted_bytes - r.exemplar_bytes.unwrap_or(0)) as f64 / w.samples as f64)
    });
    row(&mut out, results, "bytes on disk per exemplar", |r| r.exemplar_bytes.map(|b| b as f64 / w.exemplars as f64));
    row(&mut out, results, "RSS bytes per active series", |r| Some(r.rss_bytes as f64 / w.series as f64));
    row(&mut out, results, "restart after kill -9, s to ready", |r| Some(r.restart.as_secs_f64()));
    row(&mut out, results, "series visible", |r| Some(r.series_visible));
    if mode != Mode::Ingest {
        for (i, (name, _)) in w.queries.iter().enumerate() {
            row(&mut out, results, &format!("{name} p50 ms"), |r| r.queries.get(i).map(|l| ms(l.p50)));
            row(&mut out, results, &format!("{name} p99 ms"), |r| r.queries.get(i).map(|l| ms(l.p99)));
        }
        row(&mut out, results, "query_exemplars p50 ms", |r| r.exemplars.as_ref().map(|e| ms(e.0.p50)));
        row(&mut out, results, "exemplars returned", |r| r.exemplars.as_ref().map(|e| e.1 as f64));
    }
    out.push('\n');
    for (protocol, limit) in decode {
        out.push_str(&format!(
            "decode-only limit, remote write {} (snappy + protobuf, {} threads): {limit:.0} {kind}s/s\n",
            protocol.name(),
            w.payloads.len()
        ));
    }
    for r in results {
        if let Some(e) = &r.first_error {
            out.push_str(&format!("{}: first failed write: {e}\n", r.column()));
        }
    }
    out
}

/// The run is complete when every system took every write and answers for every series.
pub fn check_complete(w: &Workload, results: &[SystemResult], mode: Mode) -> anyhow::Result<()> {
    for r in results {
        let name = r.column();
        anyhow::ensure!(r.write_errors == 0, "{name}: {} writes failed", r.write_errors);
        anyhow::ensure!(
            r.series_visible == w.series as f64,
            "{name}: {} series visible of {}",
            r.series_visible,
            w.series
        );
        anyhow::ensure!(r.persisted_bytes > 0, "{name}: nothing on disk");
        if mode != Mode::Ingest {
            anyhow::ensure!(r.queries.len() == w.queries.len(), "{name}: queries missing");
        }
    }
    if mode != Mode::Ingest {
        for amber in results.iter().filter(|r| r.kind == Kind::Amber) {
            let returned = amber.exemplars.as_ref().map_or(0, |e| e.1);
            let name = amber.column();
            anyhow::ensure!(returned as u64 == w.exemplars, "{name} returned {returned} of {} exemplars", w.exemplars);
        }
    }
    Ok(())
}
