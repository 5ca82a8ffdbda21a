//! The three systems under test, each started on a free port with a temporary data directory
//! and stopped at the end: how to start it, when it is ready, how to make it write its data
//! out, and how many bytes that data takes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Amber,
    VictoriaMetrics,
    Prometheus,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Amber => "amber",
            Kind::VictoriaMetrics => "victoriametrics",
            Kind::Prometheus => "prometheus",
        }
    }
}

pub struct System {
    pub kind: Kind,
    pub port: u16,
    child: Child,
    /// How to start it again on the same data directory and port.
    command: Vec<std::ffi::OsString>,
    dir: tempfile::TempDir,
    http: reqwest::blocking::Client,
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Bytes of every file under `path`.
pub fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

impl System {
    /// Starts `kind`; `amber_flags` are added to Amber's command line.
    pub fn start(kind: Kind, amber_bin: &Path, amber_flags: &[&str]) -> anyhow::Result<System> {
        let port = free_port()?;
        let dir = tempfile::Builder::new().prefix(&format!("amber-bench-{}-", kind.name())).tempdir()?;
        let data = dir.path().join("data");
        let listen = format!("127.0.0.1:{port}");
        let cmd = match kind {
            Kind::Amber => {
                let mut c = Command::new(amber_bin);
                c.args(["--data-dir".as_ref(), data.as_os_str()]);
                // The default maintenance interval, so disk while running is what a user sees.
                c.args(["--listen", &listen, "--enable-admin-api", "--otlp-grpc-listen", ""]);
                // Its default per-tenant limit (a million series) would refuse the cost curve's
                // largest workload (1,000,038 series); the peers run without one.
                c.args(["--max-series-per-tenant", "100000000"]);
                c.args(amber_flags);
                c
            }
            Kind::VictoriaMetrics => {
                let mut c = Command::new("victoria-metrics");
                c.arg(format!("-storageDataPath={}", data.display()));
                c.arg(format!("-httpListenAddr={listen}"));
                // Repeated queries must be computed, not answered from the rollup cache.
                c.args(["-retentionPeriod=10y", "-search.disableCache", "-loggerLevel=ERROR"]);
                // Its default refuses a query matching more than 300,000 series: the cost curve's
                // million-series workload asks `count({job="node"})` over all of them.
                c.arg("-search.maxUniqueTimeseries=100000000");
                c
            }
            Kind::Prometheus => {
                let config = dir.path().join("prometheus.yml");
                std::fs::write(&config, "global:\n  scrape_interval: 15s\n")?;
                let mut c = Command::new("prometheus");
                c.arg(format!("--config.file={}", config.display()));
                c.arg(format!("--storage.tsdb.path={}", data.display()));
                c.arg(format!("--web.listen-address={listen}"));
                c.args([
                    "--web.enable-remote-write-receiver",
                    "--web.enable-admin-api",
                    "--enable-feature=exemplar-storage,native-histograms",
                    "--log.level=error",
                ]);
                c
            }
        };
        let command: Vec<std::ffi::OsString> =
            std::iter::once(cmd.get_program().to_owned()).chain(cmd.get_args().map(|a| a.to_owned())).collect();
        let child = spawn(&command, dir.path(), kind)?;
        let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(600)).build()?;
        let system = System { kind, port, child, command, dir, http };
        system.wait_ready(Duration::from_secs(60))?;
        Ok(system)
    }

    /// Kills the process with SIGKILL, starts it again on the same data and returns how long
    /// it took to be ready (Prometheus and Amber replay their write-ahead logs first).
    pub fn kill9_and_restart(&mut self) -> anyhow::Result<Duration> {
        self.child.kill()?;
        self.child.wait()?;
        let started = Instant::now();
        self.child = spawn(&self.command, self.dir.path(), self.kind)?;
        self.wait_ready(Duration::from_secs(1800))?;
        Ok(started.elapsed())
    }

    /// Bytes of the data directory as it is now, the system still running.
    pub fn data_bytes(&self) -> u64 {
        dir_bytes(&self.data_dir())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The process id of the running system (it changes with every restart).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let path = if self.kind == Kind::VictoriaMetrics { "/health" } else { "/-/ready" };
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.http.get(self.url(path)).send().is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
        bail!("{} did not become ready within {within:?}:\n{log}", self.kind.name())
    }

    /// What the process wrote to stderr so far.
    pub fn log(&self) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(self.dir.path().join("log"))?)
    }

    /// Resident memory of the process, in bytes.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .context("no VmRSS")?;
        Ok(kb * 1024)
    }

    pub fn post(&self, path: &str) -> anyhow::Result<String> {
        let r = self.http.post(self.url(path)).send()?;
        let status = r.status();
        let body = r.text()?;
        anyhow::ensure!(status.is_success(), "{} {path}: {status} {body}", self.kind.name());
        Ok(body)
    }

    pub fn get(&self, path: &str) -> anyhow::Result<String> {
        let r = self.http.get(self.url(path)).send()?;
        let status = r.status();
        let body = r.text()?;
        anyhow::ensure!(status.is_success(), "{} {path}: {status} {body}", self.kind.name());
        Ok(body)
    }

    /// Makes the system write what it ingested in its long-term form and returns the bytes
    /// that form takes: Amber seals and compacts; VictoriaMetrics flushes and merges;
    /// Prometheus snapshots its head into a block (its compacted form).
    pub fn persisted_bytes(&self, start_ms: i64) -> anyhow::Result<u64> {
        match self.kind {
            Kind::Amber => {
                self.post("/api/v1/admin/tsdb/seal")?;
                Ok(dir_bytes(&self.data_dir()))
            }
            Kind::VictoriaMetrics => {
                self.get("/internal/force_flush")?;
                let month = chrono_month(start_ms);
                self.get(&format!("/internal/force_merge?partition_prefix={month}"))?;
                // The merge runs in the background: wait until the directory stops changing.
                let mut last = dir_bytes(&self.data_dir());
                loop {
                    std::thread::sleep(Duration::from_secs(2));
                    let now = dir_bytes(&self.data_dir());
                    if now == last {
                        return Ok(now);
                    }
                    last = now;
                }
            }
            Kind::Prometheus => {
                let body: serde_json::Value = serde_json::from_str(&self.post("/api/v1/admin/tsdb/snapshot")?)?;
                let name = body["data"]["name"].as_str().context("snapshot name")?;
                Ok(dir_bytes(&self.data_dir().join("snapshots").join(name)))
            }
        }
    }

    /// Amber only: SST bytes of the exemplar column families, from its /metrics.
    pub fn amber_exemplar_bytes(&self) -> anyhow::Result<u64> {
        let metrics = self.get("/metrics")?;
        let mut total = 0;
        for line in metrics.lines() {
            if let Some(rest) = line.strip_prefix("amber_rocksdb_sst_bytes{cf=\"") {
                let (cf, value) = rest.split_once("\"} ").context("sst line")?;
                if ["exemplar_blocks", "trace_index"].contains(&cf) {
                    total += value.trim().parse::<u64>()?;
                }
            }
        }
        Ok(total)
    }

    pub fn stop(mut self) -> anyhow::Result<()> {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

/// Starts `command` with its stderr appended to `dir/log` (Amber logging warnings, and the few
/// lines of its server loop: one per sealing or upload pass that did something).
fn spawn(command: &[std::ffi::OsString], dir: &Path, kind: Kind) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("log"))?;
    Command::new(&command[0])
        .args(&command[1..])
        .env("RUST_LOG", "warn,amber::server=info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {} (is it installed? scripts/install-deps)", kind.name()))
}

/// VictoriaMetrics partitions by month, named `YYYY_MM`.
fn chrono_month(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).expect("a time in range").format("%Y_%m").to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn months_are_named_as_victoriametrics_partitions() {
        assert_eq!(super::chrono_month(0), "1970_01");
        assert_eq!(super::chrono_month(1_795_000_000_000), "2026_11");
        assert_eq!(super::chrono_month(951_782_400_000), "2000_02");
    }
}
