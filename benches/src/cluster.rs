//! `amber-bench cluster`: the workload pushed to a single-node Amber, then to a distributor in
//! front of three ingesters on a ring in a real etcd (replication factor 3), on the same machine.
//! Reports what a sender sees of each (samples/s, write latency p50/p99) and checks that the
//! cluster answers for every series.
//!
//! On one machine the cluster does three times the storage work of the single node, each
//! sample being written, synced and held by three ingesters: the ratio is the cost of
//! replication and the extra hop, not what more machines would add.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::measure::{self, Latency};
use crate::systems::{Kind, System, free_port};
use crate::workload::{Protocol, Workload};

/// Ingesters on the ring, and each series' replicas.
const INGESTERS: usize = 3;

/// A one-member etcd on loopback (the ring is read from a watch: requests never touch it, so one
/// member measures the same as three), killed on drop.
struct Etcd {
    child: Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    fn start() -> anyhow::Result<Etcd> {
        let dir = tempfile::Builder::new().prefix("amber-bench-etcd-").tempdir()?;
        let (client, peer) = (free_port()?, free_port()?);
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("default={peer_url}")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log"))?)
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting etcd (scripts/install-deps installs etcd-server): {e}"))?;
        let etcd = Etcd { child, endpoint: format!("127.0.0.1:{client}"), _dir: dir };
        wait_for("etcd to answer /health", Duration::from_secs(60), || {
            reqwest::blocking::get(format!("{client_url}/health"))
                .and_then(|r| r.text())
                .is_ok_and(|t| t.contains("\"health\":\"true\""))
        })?;
        Ok(etcd)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Polls `done` every 100 ms until it holds, for at most `within`.
fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while !done() {
        anyhow::ensure!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// What a sender saw of one setup.
pub struct Pushed {
    pub samples_per_s: f64,
    pub latency: Latency,
    pub series_visible: f64,
}

pub struct ClusterResult {
    pub single: Pushed,
    pub cluster: Pushed,
}

/// Pushes `w` and counts the series the setup answers for afterwards (through `reads`).
fn push(writes: &System, reads: &System, w: &Workload) -> anyhow::Result<Pushed> {
    let (samples_per_s, latency, errors, first) = measure::ingest(writes, w, Protocol::V1);
    anyhow::ensure!(errors == 0, "{errors} writes to {} failed, the first: {first:?}", writes.url(""));
    let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(600)).build()?;
    let series_visible = measure::series_visible(&http, &reads.url(""), w)?;
    Ok(Pushed { samples_per_s, latency, series_visible })
}

pub fn run(amber_bin: &Path, w: &Workload) -> anyhow::Result<ClusterResult> {
    eprintln!("== amber, one node");
    let node = System::start(Kind::Amber, amber_bin, &[])?;
    let single = push(&node, &node, w)?;
    node.stop()?;

    eprintln!("== etcd, {INGESTERS} ingesters and a distributor");
    let etcd = Etcd::start()?;
    let ring = |role: &'static str| vec!["--role", role, "--etcd-endpoints", etcd.endpoint.as_str()];
    let ids: Vec<String> = (0..INGESTERS).map(|n| format!("ingester-{n}")).collect();
    let ingesters = ids
        .iter()
        .map(|id| System::start(Kind::Amber, amber_bin, &[ring("ingester"), vec!["--instance-id", id]].concat()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let distributor = System::start(Kind::Amber, amber_bin, &ring("distributor"))?;
    wait_for("the distributor to see every ingester on the ring", Duration::from_secs(60), || {
        distributor.get("/api/v1/status/ring").is_ok_and(|body| body.matches("\"active\"").count() == INGESTERS)
    })?;
    // The distributor answers reads from the ring, as a querier does.
    let cluster = push(&distributor, &distributor, w)?;
    distributor.stop()?;
    for i in ingesters {
        i.stop()?;
    }
    Ok(ClusterResult { single, cluster })
}

pub fn table(w: &Workload, r: &ClusterResult) -> String {
    let ms = |d: Duration| format!("{:.3}", d.as_secs_f64() * 1000.0);
    let rows = [
        ("ingest samples/s", format!("{:.0}", r.single.samples_per_s), format!("{:.0}", r.cluster.samples_per_s)),
        ("write p50 ms", ms(r.single.latency.p50), ms(r.cluster.latency.p50)),
        ("write p99 ms", ms(r.single.latency.p99), ms(r.cluster.latency.p99)),
        ("series visible", format!("{}", r.single.series_visible), format!("{}", r.cluster.series_visible)),
    ];
    let mut out = format!(
        "| {} series, {} samples | one node | distributor + {INGESTERS} ingesters, rf {INGESTERS} | cluster ÷ node |\n|---|---|---|---|\n",
        w.series, w.samples
    );
    for (name, single, cluster) in rows {
        let ratio = match (single.parse::<f64>(), cluster.parse::<f64>()) {
            (Ok(a), Ok(b)) if a > 0.0 => format!("{:.2}", b / a),
            _ => "n/a".into(),
        };
        out.push_str(&format!("| {name} | {single} | {cluster} | {ratio} |\n"));
    }
    out
}

/// Both setups answered for every series of the workload.
pub fn check_complete(w: &Workload, r: &ClusterResult) -> anyhow::Result<()> {
    for (name, p) in [("one node", &r.single), ("cluster", &r.cluster)] {
        anyhow::ensure!(
            p.series_visible == w.series as f64,
            "{name} answers for {} series of {}",
            p.series_visible,
            w.series
        );
    }
    Ok(())
}
