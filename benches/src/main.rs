//! `amber-bench`: Amber, VictoriaMetrics and Prometheus side by side, in one run, on one
//! generated workload. Prints one table and the ratios Amber ÷ peer.
//!
//! For each system in turn (alone on the machine while it is measured): start it on a free port
//! with a temporary data directory, push the workload as remote-write 1.0 from several
//! concurrent clients (each waits for its response), read its RSS, make it persist its data
//! and measure the bytes, time a fixed set of range queries and `query_exemplars`, stop it.
//! With `--remote-write-version 2.0` (or `both`) Amber is sent the same requests as remote write
//! 2.0 (fresh, once per version); the peers here only receive 1.0. The same payloads decoded
//! alone (snappy + protobuf, no storage) give the ceiling ingest is measured against.
//!
//! `amber-bench bucket` measures Amber alone past one disk instead: uploads to a real Ceph RADOS
//! Gateway and queriers reading them back (`bucket.rs`). `amber-bench cluster` measures a
//! distributor and three ingesters on a ring in etcd beside one node (`cluster.rs`).
//! `amber-bench soak` runs one Amber under steady load for an hour, killed every ten minutes, and
//! fails if anything acknowledged is lost or grows without bound (`soak.rs`). See
//! docs/BENCHMARKS.md.

use std::path::PathBuf;

use amber_bench::measure::{self, Mode};
use amber_bench::systems::Kind;
use amber_bench::workload::{self, Protocol};
use amber_bench::{bucket, cluster, import, soak};
use anyhow::Context;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "amber-bench", about = "Amber beside VictoriaMetrics and Prometheus on one workload")]
struct Cli {
    #[arg(value_enum, default_value = "all")]
    mode: Mode,
    /// A small workload that finishes in well under 3 minutes (CI smoke test).
    #[arg(long)]
    quick: bool,
    /// Scrape targets; each has 78 series [default: 128, quick: 20].
    #[arg(long)]
    targets: Option<usize>,
    /// Scrapes, 15 s apart [default: 200, quick: 40].
    #[arg(long)]
    scrapes: Option<usize>,
    /// Concurrent remote-write clients [default: 4, quick: 2].
    #[arg(long)]
    clients: Option<usize>,
    /// Runs of each query [default: 20, quick: 3].
    #[arg(long)]
    runs: Option<usize>,
    /// Systems to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "amber,victoriametrics,prometheus")]
    systems: Vec<String>,
    /// Native histograms (schema 3, eight series per target) instead of node-exporter series;
    /// VictoriaMetrics is left out, as it does not store remote write's native histograms.
    #[arg(long)]
    native_histograms: bool,
    /// The remote write versions Amber is sent the workload in, each on a fresh instance:
    /// 1.0, 2.0, or both side by side. VictoriaMetrics 1.79 and Prometheus 2.42 receive only 1.0.
    #[arg(long, value_enum, default_value = "1.0")]
    remote_write_version: Versions,
    /// Minutes between now and the workload's last scrape. The default, four hours, puts every
    /// sample past Amber's out-of-order window; 60 reproduces a backfill ending an hour ago, 0 a
    /// live workload (then the newest chunk of every series is still in the head and its log).
    #[arg(long, default_value_t = 240)]
    last_scrape_minutes_ago: i64,
    /// Leave out the Amber run with `--wal-fsync=false`.
    #[arg(long)]
    no_wal_fsync_off_run: bool,
    /// Soak: minutes to run.
    #[arg(long, default_value_t = 60)]
    soak_minutes: u64,
    /// Soak: minutes between kills, churns and the slots latency is compared over.
    #[arg(long, default_value_t = 10)]
    soak_period_minutes: u64,
    /// The amber binary [default: beside this one].
    #[arg(long)]
    amber_bin: Option<PathBuf>,
}

/// `--remote-write-version`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Versions {
    #[value(name = "1.0")]
    V1,
    #[value(name = "2.0")]
    V2,
    Both,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let pick = |v: Option<usize>, full: usize, quick: usize| v.unwrap_or(if cli.quick { quick } else { full });
    let (targets, scrapes) = (pick(cli.targets, 128, 20), pick(cli.scrapes, 200, 40));
    let (clients, runs) = (pick(cli.clients, 4, 2), pick(cli.runs, 20, 3));
    let amber_bin = match cli.amber_bin {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("amber"),
    };
    anyhow::ensure!(amber_bin.exists(), "no amber binary at {} (build it: cargo build --release)", amber_bin.display());
    let kinds: Vec<Kind> = cli
        .systems
        .iter()
        .filter(|s| !(cli.native_histograms && s.as_str() == "victoriametrics"))
        .map(|s| match s.as_str() {
            "amber" => Ok(Kind::Amber),
            "victoriametrics" => Ok(Kind::VictoriaMetrics),
            "prometheus" => Ok(Kind::Prometheus),
            other => anyhow::bail!("unknown system {other:?}"),
        })
        .collect::<anyhow::Result<_>>()?;

    if cli.mode == Mode::Soak {
        let options = soak::Options { minutes: cli.soak_minutes, period_minutes: cli.soak_period_minutes };
        return soak::run(&amber_bin, &options);
    }

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let amber_protocols = match cli.remote_write_version {
        Versions::V1 => vec![Protocol::V1],
        Versions::V2 => vec![Protocol::V2],
        Versions::Both => vec![Protocol::V1, Protocol::V2],
    };
    let last_scrape = now - cli.last_scrape_minutes_ago * 60_000;
    let mut w = if cli.native_histograms {
        workload::generate_native_histograms(targets, scrapes, clients, last_scrape)
    } else {
        workload::generate(targets, scrapes, clients, last_scrape)
    };
    if amber_protocols.contains(&Protocol::V2) {
        w.add_v2_payloads();
    }
    let payload_bytes: usize = w.payloads.iter().flatten().map(Vec::len).sum();
    let requests: usize = w.payloads.iter().map(Vec::len).sum();
    println!(
        "workload: {} series ({targets} targets × {}), {scrapes} scrapes 15 s apart, {} {}s, {} exemplars; \
         {requests} requests ({} MiB snappy) from {clients} clients",
        w.series,
        w.series / targets.max(1),
        w.samples,
        w.sample_kind,
        w.exemplars,
        payload_bytes >> 20
    );
    if !w.payloads_v2.is_empty() {
        let v2_bytes: usize = w.payloads_v2.iter().flatten().map(Vec::len).sum();
        let ratio = v2_bytes as f64 / payload_bytes as f64;
        println!("as remote write 2.0: {:.1} MiB snappy, {ratio:.2}× the 1.0 bytes", v2_bytes as f64 / 1048576.0);
    }
    println!("machine: {}", measure::machine());
    if cli.mode == Mode::Bucket {
        let r = bucket::run(&amber_bin, &w, runs).context("measuring amber against the bucket")?;
        println!("{}", bucket::table(&w, &r));
        return bucket::check_complete(&w, &r);
    }
    if cli.mode == Mode::Import {
        let r = import::run(&amber_bin, &w).context("measuring imports and snapshots")?;
        println!("{}", import::table(&w, &r));
        return Ok(());
    }
    if cli.mode == Mode::Cluster {
        let r = cluster::run(&amber_bin, &w).context("measuring a cluster beside one node")?;
        println!("{}", cluster::table(&w, &r));
        return cluster::check_complete(&w, &r);
    }

    // Amber once per remote write version with its defaults, then (remote write 1.0) without
    // the WAL fsync, as the peers run.
    let fsync_off: &[&str] = &["--wal-fsync=false"];
    let runs_of: Vec<(Kind, Protocol, &[&str])> = kinds
        .into_iter()
        .flat_map(|kind| match kind {
            Kind::Amber => {
                let mut runs: Vec<(Kind, Protocol, &[&str])> =
                    amber_protocols.iter().map(|&p| (kind, p, &[][..])).collect();
                if !cli.no_wal_fsync_off_run {
                    runs.push((kind, Protocol::V1, fsync_off));
                }
                runs
            }
            _ => vec![(kind, Protocol::V1, &[][..])],
        })
        .collect();
    let mut decode: Vec<(Protocol, f64)> = Vec::new();
    for &(_, protocol, _) in &runs_of {
        if !decode.iter().any(|(p, _)| *p == protocol) {
            decode.push((protocol, measure::decode_only(&w, protocol)));
        }
    }
    let mut results = Vec::new();
    for (kind, protocol, flags) in runs_of {
        eprintln!("== {} {} (remote write {})", kind.name(), flags.join(" "), protocol.name());
        let r = measure::system(kind, protocol, flags, &amber_bin, &w, cli.mode != Mode::Ingest, runs)
            .with_context(|| format!("measuring {} with remote write {}", kind.name(), protocol.name()))?;
        results.push(r);
    }
    let table = measure::table(&w, &decode, &results, cli.mode);
    println!("{table}");
    measure::check_complete(&w, &results, cli.mode)
}
