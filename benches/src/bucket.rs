//! `amber-bench bucket`: Amber past one disk, against a real Ceph RADOS Gateway
//! (`scripts/ceph-start.sh`, one node, memstore).
//!
//! An Amber with the object store on takes the workload, is told to seal, and uploads every
//! sealed window to the bucket: upload throughput, bytes per sample in the bucket (from the
//! bucket index) and the bucket requests the upload made. Then the workload's queries, its
//! `query_exemplars` and a trace lookup run on Ambers with `--role querier` that read the bucket
//! alone: each question on a fresh querier (empty data directory, so an empty cache) once
//! **cold**, then `runs` times **warm**, beside the same questions on the uploading Amber's local
//! blocks, with the bucket requests each costs. See docs/BENCHMARKS.md, "Past one disk".

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::measure::{self, Latency};
use crate::systems::{Kind, System, free_port};
use crate::workload::{Protocol, SCRAPE_INTERVAL_MS, Workload};

/// The bucket `ceph-start.sh` creates, the prefix Amber writes under, and the S3 user's keys.
const BUCKET: &str = "amber";
const OBJECT_STORE_URL: &str = "s3://amber/bench";
const ACCESS_KEY: &str = "AK";
const SECRET_KEY: &str = "SK";
const REGION: &str = "us-east-1";
/// Amber's default tenant: where remote write without a tenant header lands.
const TENANT: &str = "anonymous";
/// The operations `amber_object_store_requests_total` counts, in its order.
const OPERATIONS: [&str; 5] = ["put", "get", "get_range", "list", "delete"];
/// How long the upload of the sealed windows may take before the run fails.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// A one-node Ceph cluster with the RADOS Gateway on loopback, stopped on drop.
struct Ceph {
    dir: PathBuf,
    port: u16,
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts").join(name)
}

impl Ceph {
    fn start(dir: &Path) -> anyhow::Result<Ceph> {
        let port = free_port()?;
        let out = Command::new(script("ceph-start.sh"))
            .arg(dir)
            .arg(port.to_string())
            .env("S3_BUCKET", BUCKET)
            .env("S3_ACCESS_KEY", ACCESS_KEY)
            .env("S3_SECRET_KEY", SECRET_KEY)
            // Without the manager: it is not needed for RGW and costs ~300 MB of memory.
            .env("WITH_MGR", "0")
            // memstore: the cluster's data is in memory, this is only its ceiling.
            .env("STORE_BYTES", (4u64 << 30).to_string())
            .env("MON_PORT", free_port()?.to_string())
            .output()
            .context("running scripts/ceph-start.sh (scripts/install-deps installs Ceph)")?;
        anyhow::ensure!(
            out.status.success(),
            "ceph-start.sh failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(Ceph { dir: dir.to_path_buf(), port })
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn bucket_config(&self) -> amber_storage::objstore::BucketConfig {
        amber_storage::objstore::BucketConfig {
            url: OBJECT_STORE_URL.into(),
            endpoint: Some(self.endpoint()),
            region: Some(REGION.into()),
            access_key_id: Some(ACCESS_KEY.into()),
            secret_access_key: Some(SECRET_KEY.into()),
            allow_http: true,
        }
    }

    /// Amber's flags for this bucket.
    fn amber_flags(&self) -> Vec<String> {
        let c = self.bucket_config();
        let mut flags = vec!["--object-store-url".to_string(), c.url, "--object-store-allow-http".into()];
        for (flag, value) in [
            ("--object-store-endpoint", c.endpoint),
            ("--object-store-region", c.region),
            ("--object-store-access-key-id", c.access_key_id),
            ("--object-store-secret-access-key", c.secret_access_key),
        ] {
            flags.extend([flag.to_string(), value.expect("set above")]);
        }
        flags
    }
}

impl Drop for Ceph {
    fn drop(&mut self) {
        let _ = Command::new(script("ceph-stop.sh")).arg(&self.dir).output();
    }
}

/// `amber_object_store_requests_total` by operation (in [`OPERATIONS`] order).
#[derive(Debug, Clone, Copy, Default)]
struct Requests([f64; OPERATIONS.len()]);

impl Requests {
    fn of(system: &System) -> anyhow::Result<Requests> {
        let text = system.get("/metrics")?;
        let mut r = Requests::default();
        for (i, op) in OPERATIONS.iter().enumerate() {
            r.0[i] = metric(&text, &format!("amber_object_store_requests_total{{operation=\"{op}\"}}")).unwrap_or(0.0);
        }
        Ok(r)
    }

    fn since(self, before: Requests) -> Requests {
        Requests(std::array::from_fn(|i| self.0[i] - before.0[i]))
    }

    fn per(self, n: usize) -> Requests {
        Requests(self.0.map(|v| v / n as f64))
    }

    fn total(self) -> f64 {
        self.0.iter().sum()
    }

    /// "put 3, get 2": the operations with any requests.
    fn describe(self) -> String {
        let parts: Vec<String> = OPERATIONS
            .iter()
            .zip(self.0)
            .filter(|(_, n)| *n > 0.0)
            .map(|(op, n)| format!("{op} {}", cell(Some(n))))
            .collect();
        if parts.is_empty() { "none".into() } else { parts.join(", ") }
    }
}

/// A table cell, counts without decimals.
fn cell(v: Option<f64>) -> String {
    match v {
        Some(v) if v.fract() == 0.0 => format!("{v:.0}"),
        v => measure::cell(v),
    }
}

/// The value of the sample `series` (name and labels exactly as exposed) in a /metrics text.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// One question asked of every Amber: its name in the table and its API path.
struct Question {
    name: String,
    path: String,
}

fn questions(w: &Workload) -> Vec<Question> {
    let mut out: Vec<Question> = w
        .queries
        .iter()
        .map(|(name, q)| Question { name: name.to_string(), path: measure::range_query_path(w, q) })
        .collect();
    out.push(Question { name: "query_exemplars".into(), path: measure::exemplars_path(w) });
    if let Some(id) = &w.first_trace_id {
        out.push(Question { name: "trace lookup".into(), path: format!("/api/v1/exemplars/trace/{id}") });
    }
    out
}

/// One question's figures.
struct Answered {
    /// The querier's first answer after start, its cache empty.
    cold: Duration,
    cold_requests: Requests,
    /// The querier's next `runs` answers.
    warm: Latency,
    warm_requests: Requests,
    /// The uploading Amber's answers from its local blocks.
    local: Latency,
    local_requests: Requests,
    /// Whether the querier's cold answer was the same data as the local one.
    same_as_local: bool,
    /// Exemplars in the local answer (exemplar questions).
    exemplars: usize,
}

/// What one `amber-bench bucket` run measured.
pub struct BucketResult {
    samples_per_s: f64,
    write_errors: usize,
    seal: Duration,
    /// From the seal request to no window pending and the block files counted as uploaded: the
    /// uploader starts on a window as soon as the pass marked it, while the pass goes on.
    seal_and_upload: Duration,
    /// The upload passes alone, as the uploader logged them.
    upload: Duration,
    upload_bytes: f64,
    block_files: f64,
    upload_requests: Requests,
    /// Windows, bytes and samples (floats and histograms) the bucket index lists.
    index_windows: usize,
    /// Length of a window, from the index.
    window_ms: i64,
    index_bytes: u64,
    index_samples: u64,
    index_exemplars: u64,
    local_bytes: u64,
    questions: Vec<(Question, Answered)>,
    series_visible_querier: f64,
    series_visible_local: f64,
}

fn wait_uploaded(ingester: &System) -> anyhow::Result<()> {
    let deadline = Instant::now() + UPLOAD_TIMEOUT;
    loop {
        let text = ingester.get("/metrics")?;
        let pending = metric(&text, "amber_upload_pending_windows");
        let uploaded = metric(&text, "amber_upload_block_files_total").unwrap_or(0.0);
        // The seal marked its windows pending before it answered: none pending now means done.
        if pending == Some(0.0) && uploaded > 0.0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "windows still pending upload after {UPLOAD_TIMEOUT:?}: {pending:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The time of every upload pass that uploaded something, from the JSON log lines
/// `{"fields":{"message":"uploaded","elapsed_ms":…}}` of Amber's uploader.
fn upload_time(log: &str) -> Duration {
    let ms: u64 = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["fields"]["message"] == "uploaded")
        .filter_map(|l| l["fields"]["elapsed_ms"].as_u64())
        .sum();
    Duration::from_millis(ms)
}

/// Times `path` on `system` `runs` times; returns the latency and the bucket requests per run.
fn repeat(
    http: &reqwest::blocking::Client,
    system: &System,
    path: &str,
    runs: usize,
) -> anyhow::Result<(Latency, Requests, serde_json::Value)> {
    let before = Requests::of(system)?;
    let mut times = Vec::with_capacity(runs);
    let mut last = serde_json::Value::Null;
    for _ in 0..runs {
        let (elapsed, body) = measure::timed_get(http, &system.url(path))?;
        times.push(elapsed);
        last = body;
    }
    Ok((measure::latency(times), Requests::of(system)?.since(before).per(runs), last))
}

pub fn run(amber_bin: &Path, w: &Workload, runs: usize) -> anyhow::Result<BucketResult> {
    let dir = tempfile::Builder::new().prefix("amber-bench-bucket-").tempdir()?;
    eprintln!("== ceph (scripts/ceph-start.sh)");
    let ceph = Ceph::start(&dir.path().join("ceph"))?;
    let bucket_flags = ceph.amber_flags();
    let mut ingester_flags: Vec<&str> = bucket_flags.iter().map(String::as_str).collect();
    // No sealing pass during the push: each window is uploaded once, as live, where a window
    // goes up once after it closes. JSON logs: the upload passes' times.
    ingester_flags.extend(["--maintenance-interval", "1h", "--log-format", "json"]);
    eprintln!("== amber, uploading to {OBJECT_STORE_URL}");
    let ingester = System::start(Kind::Amber, amber_bin, &ingester_flags)?;
    let (samples_per_s, _, write_errors, first_error) = measure::ingest(&ingester, w, Protocol::V1);
    anyhow::ensure!(write_errors == 0, "{write_errors} writes failed, the first: {first_error:?}");

    let before = Requests::of(&ingester)?;
    let started = Instant::now();
    ingester.post("/api/v1/admin/tsdb/seal")?;
    let seal = started.elapsed();
    wait_uploaded(&ingester)?;
    let seal_and_upload = started.elapsed();
    let upload = upload_time(&ingester.log()?);
    let upload_requests = Requests::of(&ingester)?.since(before);
    let text = ingester.get("/metrics")?;
    let upload_bytes = metric(&text, "amber_upload_bytes_total").unwrap_or(0.0);
    let block_files = metric(&text, "amber_upload_block_files_total").unwrap_or(0.0);
    let local_bytes = ingester.data_bytes();

    let index = tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
        let bucket = amber_storage::objstore::Bucket::open(&ceph.bucket_config())?;
        amber_storage::upload::index::read(&bucket, TENANT).await
    })?;
    let index_bytes = index.windows.iter().map(|x| x.bytes).sum();
    let index_samples = index.windows.iter().map(|x| x.samples + x.histograms).sum();
    let index_exemplars = index.windows.iter().map(|x| x.exemplars).sum();

    let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(600)).build()?;
    let mut querier_flags: Vec<&str> = bucket_flags.iter().map(String::as_str).collect();
    querier_flags.extend(["--role", "querier"]);
    let mut answered = Vec::new();
    let mut series_visible_querier = f64::NAN;
    let questions = questions(w);
    let last = questions.len() - 1;
    for (i, q) in questions.into_iter().enumerate() {
        eprintln!("== {}: local, then a fresh querier", q.name);
        let (local, local_requests, local_answer) = repeat(&http, &ingester, &q.path, runs)?;
        let querier = System::start(Kind::Amber, amber_bin, &querier_flags)?;
        let (cold, cold_requests, cold_answer) = repeat(&http, &querier, &q.path, 1)?;
        let (warm, warm_requests, _) = repeat(&http, &querier, &q.path, runs)?;
        if i == last {
            series_visible_querier = measure::series_visible(&http, &querier.url(""), w)?;
        }
        querier.stop()?;
        answered.push((
            q,
            Answered {
                cold: cold.p50,
                cold_requests,
                warm,
                warm_requests,
                local,
                local_requests,
                same_as_local: cold_answer["data"] == local_answer["data"],
                exemplars: measure::exemplars_returned(&local_answer),
            },
        ));
    }
    let series_visible_local = measure::series_visible(&http, &ingester.url(""), w)?;
    ingester.stop()?;
    Ok(BucketResult {
        samples_per_s,
        write_errors,
        seal,
        seal_and_upload,
        upload,
        upload_bytes,
        block_files,
        upload_requests,
        index_windows: index.windows.len(),
        window_ms: index.windows.first().map_or(0, |x| x.end - x.start),
        index_bytes,
        index_samples,
        index_exemplars,
        local_bytes,
        questions: answered,
        series_visible_querier,
        series_visible_local,
    })
}

/// Hours of data the workload covers: its scrapes, each standing for one interval.
fn data_hours(w: &Workload) -> f64 {
    (w.end_ms - w.start_ms + SCRAPE_INTERVAL_MS) as f64 / 3_600_000.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn table(w: &Workload, r: &BucketResult) -> String {
    let mut out = String::new();
    out.push_str(
        "| measure | querier, cold | querier, warm | ingester, local blocks | cold ÷ local | warm ÷ local |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    let mut row = |label: &str, cold: Option<f64>, warm: Option<f64>, local: Option<f64>| {
        out.push_str(&format!(
            "| {label} | {} | {} | {} | {} | {} |\n",
            cell(cold),
            cell(warm),
            cell(local),
            measure::ratio_cell(cold, local),
            measure::ratio_cell(warm, local)
        ));
    };
    let kind = w.sample_kind;
    let upload_s = r.seal_and_upload.as_secs_f64();
    row(&format!("ingest {kind}s/s"), None, None, Some(r.samples_per_s));
    row("seal (POST /api/v1/admin/tsdb/seal) s", None, None, Some(r.seal.as_secs_f64()));
    row("seal request → all uploaded s", None, None, Some(upload_s));
    row("block files uploaded", None, None, Some(r.block_files));
    row("seal + upload bytes/s", None, None, Some(r.upload_bytes / upload_s));
    row(&format!("seal + upload {kind}s/s"), None, None, Some(w.samples as f64 / upload_s));
    let upload_alone = r.upload.as_secs_f64();
    row("upload passes alone s (uploader's log)", None, None, Some(upload_alone));
    row("upload bytes/s", None, None, Some(r.upload_bytes / upload_alone));
    row(&format!("upload {kind}s/s"), None, None, Some(w.samples as f64 / upload_alone));
    // Both with the exemplars (block files hold them beside the samples).
    let per_sample = |bytes: u64| Some(bytes as f64 / w.samples as f64);
    row(&format!("bytes per {kind} in the bucket, exemplars included"), None, None, per_sample(r.index_bytes));
    row(&format!("bytes per {kind} on local disk, sealed, exemplars included"), None, None, per_sample(r.local_bytes));
    row("bucket requests, upload", None, None, Some(r.upload_requests.total()));
    let per_window = r.upload_requests.total() / r.index_windows as f64;
    row("bucket requests per window uploaded", None, None, Some(per_window));
    row("bucket requests per hour of data, upload", None, None, Some(r.upload_requests.total() / data_hours(w)));
    // Live, data arrives as fast as time passes and one window closes per window length.
    let window_hours = r.window_ms as f64 / 3_600_000.0;
    row("bucket requests per hour of live ingest, upload", None, None, Some(per_window / window_hours));
    for (q, a) in &r.questions {
        row(
            &format!("{} ms (warm, local: p50)", q.name),
            Some(ms(a.cold)),
            Some(ms(a.warm.p50)),
            Some(ms(a.local.p50)),
        );
    }
    for (q, a) in &r.questions {
        row(
            &format!("{} bucket requests per query", q.name),
            Some(a.cold_requests.total()),
            Some(a.warm_requests.total()),
            Some(a.local_requests.total()),
        );
    }
    for (q, a) in r.questions.iter().filter(|(q, _)| q.name == "query_exemplars" || q.name == "trace lookup") {
        row(&format!("{} exemplars returned", q.name), None, None, Some(a.exemplars as f64));
    }
    row("series visible", None, Some(r.series_visible_querier), Some(r.series_visible_local));
    out.push('\n');
    out.push_str(&format!(
        "{:.2} h of data in {} windows in the bucket index ({} bytes, {} {kind}s); upload requests: {}\n",
        data_hours(w),
        r.index_windows,
        r.index_bytes,
        r.index_samples,
        r.upload_requests.describe()
    ));
    for (q, a) in &r.questions {
        out.push_str(&format!(
            "{}: cold {}; warm per query {}\n",
            q.name,
            a.cold_requests.describe(),
            a.warm_requests.describe()
        ));
    }
    out
}

/// The run is complete when every write was taken, the bucket index holds every sample and
/// exemplar, and the querier answered every question as the ingester's local blocks did.
pub fn check_complete(w: &Workload, r: &BucketResult) -> anyhow::Result<()> {
    anyhow::ensure!(r.write_errors == 0, "{} writes failed", r.write_errors);
    anyhow::ensure!(!r.upload.is_zero(), "the uploader logged no upload pass");
    anyhow::ensure!(
        r.index_samples == w.samples,
        "the bucket index lists {} of {} samples",
        r.index_samples,
        w.samples
    );
    anyhow::ensure!(
        r.block_files == r.index_windows as f64,
        "{} block files uploaded, {} windows",
        r.block_files,
        r.index_windows
    );
    for (q, a) in &r.questions {
        anyhow::ensure!(a.same_as_local, "{}: the querier's answer differs from the local one", q.name);
    }
    anyhow::ensure!(
        r.index_exemplars == w.exemplars,
        "the bucket index lists {} of {} exemplars",
        r.index_exemplars,
        w.exemplars
    );
    let exemplars_of = |name: &str| r.questions.iter().find(|(q, _)| q.name == name).map_or(0, |(_, a)| a.exemplars);
    anyhow::ensure!(exemplars_of("query_exemplars") > 0, "query_exemplars returned nothing");
    if let Some(id) = &w.first_trace_id {
        anyhow::ensure!(exemplars_of("trace lookup") >= 1, "the trace lookup of {id} found nothing");
    }
    anyhow::ensure!(
        r.series_visible_querier == w.series as f64 && r.series_visible_local == w.series as f64,
        "series visible: querier {}, local {}, of {}",
        r.series_visible_querier,
        r.series_visible_local,
        w.series
    );
    Ok(())
}
