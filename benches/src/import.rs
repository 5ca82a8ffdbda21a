//! `amber-bench import`: bringing the workload in as history, and snapshotting it.
//!
//! The workload is written out as OpenMetrics text (with its exemplars), then:
//! - `promtool tsdb create-blocks-from openmetrics` makes Prometheus blocks of it (Prometheus's
//!   own backfill, offline, the peer figure);
//! - `amber import openmetrics` sends the same file to a running Amber;
//! - `amber import tsdb` sends promtool's blocks to another;
//! - the workload, whole series per request as `amber import` sends it, goes to
//!   `POST /api/v1/import` from 4 clients (the server side alone), and the workload's own remote
//!   write bodies to `/api/v1/write` of a third Amber (live ingest), for comparison;
//! - `POST /api/v1/admin/tsdb/snapshot` is timed on the live Amber (head and log) and on the
//!   imported one (sealed blocks).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use amber_api::prompb;
use anyhow::Context;
use prost::Message;

use crate::measure;
use crate::systems::{Kind, System, dir_bytes};
use crate::workload::{Protocol, Workload};

pub struct ImportResult {
    pub file_bytes: u64,
    pub promtool_seconds: f64,
    pub openmetrics_samples_per_s: f64,
    pub tsdb_samples_per_s: f64,
    pub endpoint_samples_per_s: f64,
    pub live_samples_per_s: f64,
    pub snapshot_live: (f64, u64),
    pub snapshot_imported: (f64, u64),
}

type BySeries = BTreeMap<Vec<(String, String)>, (Vec<prompb::Sample>, Vec<prompb::Exemplar>)>;

/// The workload's data series by series, in time order.
fn by_series(w: &Workload) -> anyhow::Result<BySeries> {
    let mut by_series = BySeries::new();
    for payload in w.payloads.iter().flatten() {
        let raw = snap::raw::Decoder::new().decompress_vec(payload)?;
        for ts in prompb::WriteRequest::decode(raw.as_slice())?.timeseries {
            let key = ts.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect();
            let entry = by_series.entry(key).or_default();
            entry.0.extend(ts.samples);
            entry.1.extend(ts.exemplars);
        }
    }
    Ok(by_series)
}

/// The data as `amber import` sends it: whole series per request, up to its batch size, the
/// requests dealt to `clients` senders.
fn import_bodies(by_series: &BySeries, clients: usize) -> Vec<Vec<Vec<u8>>> {
    let mut bodies: Vec<Vec<Vec<u8>>> = vec![Vec::new(); clients.max(1)];
    let mut request = prompb::WriteRequest::default();
    let mut entries = 0;
    let mut flush = |request: &mut prompb::WriteRequest, n: &mut usize| {
        let body = snap::raw::Encoder::new().compress_vec(&std::mem::take(request).encode_to_vec()).expect("snappy");
        let total: usize = bodies.iter().map(Vec::len).sum();
        bodies[total % clients.max(1)].push(body);
        *n = 0;
    };
    for (labels, (samples, exemplars)) in by_series {
        request.timeseries.push(prompb::TimeSeries {
            labels: labels
                .iter()
                .map(|(name, value)| prompb::Label { name: name.clone(), value: value.clone() })
                .collect(),
            samples: samples.clone(),
            exemplars: exemplars.clone(),
            histograms: Vec::new(),
        });
        entries += samples.len() + exemplars.len();
        if entries >= amber_transfer::sink::BATCH_ENTRIES {
            flush(&mut request, &mut entries);
        }
    }
    if !request.timeseries.is_empty() {
        flush(&mut request, &mut entries);
    }
    bodies
}

/// Writes the workload as OpenMetrics text: each series' samples in time order, a family's
/// series together, timestamps in seconds, exemplars after their sample.
fn write_openmetrics(by_series: BySeries, path: &Path) -> anyhow::Result<u64> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let secs = |ms: i64| format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000));
    // The metric name first, so that a family's series are together.
    let mut series: Vec<_> = by_series.into_iter().collect();
    let name_of = |labels: &[(String, String)]| labels.iter().find(|(n, _)| n == "__name__").map(|(_, v)| v.clone());
    series.sort_by_key(|(labels, _)| name_of(labels));
    for (labels, (samples, exemplars)) in series {
        let name = name_of(&labels).context("a series without a name")?;
        let rest: Vec<String> =
            labels.iter().filter(|(n, _)| n != "__name__").map(|(n, v)| format!("{n}={v:?}")).collect();
        let head = if rest.is_empty() { name } else { format!("{name}{{{}}}", rest.join(",")) };
        let mut exemplars = exemplars.into_iter().peekable();
        for s in samples {
            write!(out, "{head} {} {}", s.value, secs(s.timestamp))?;
            // An exemplar rides on the first sample line at or after it (a line holds one).
            if exemplars.peek().is_some_and(|e| e.timestamp <= s.timestamp) {
                let e = exemplars.next().expect("peeked");
                let l: Vec<String> = e.labels.iter().map(|l| format!("{}={:?}", l.name, l.value)).collect();
                write!(out, " # {{{}}} {} {}", l.join(","), e.value, secs(e.timestamp))?;
            }
            writeln!(out)?;
        }
    }
    writeln!(out, "# EOF")?;
    out.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

/// Runs `amber import …` against `system`; returns samples per second as the import reports.
fn amber_import(amber_bin: &Path, system: &System, args: &[&str], cwd: &Path, samples: u64) -> anyhow::Result<f64> {
    let started = Instant::now();
    let out = Command::new(amber_bin)
        .arg("import")
        .args(args)
        .args(["--url", &system.url("")])
        .current_dir(cwd)
        .output()
        .context("running amber import")?;
    let seconds = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(out.status.success(), "amber import {args:?}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    let expected = format!("imported {samples} samples");
    anyhow::ensure!(stdout.starts_with(&expected), "amber import {args:?} did not write every sample: {stdout}");
    Ok(samples as f64 / seconds)
}

/// Times a snapshot; returns seconds and the snapshot's bytes (hard links counted in full).
fn snapshot(system: &System) -> anyhow::Result<(f64, u64)> {
    let started = Instant::now();
    let body = system.post("/api/v1/admin/tsdb/snapshot")?;
    let seconds = started.elapsed().as_secs_f64();
    let answer: serde_json::Value = serde_json::from_str(&body)?;
    let name = answer["data"]["name"].as_str().context("a snapshot name")?;
    Ok((seconds, dir_bytes(&system.data_dir().join("snapshots").join(name))))
}

pub fn run(amber_bin: &Path, w: &Workload) -> anyhow::Result<ImportResult> {
    let dir = tempfile::Builder::new().prefix("amber-bench-import-").tempdir()?;
    let om = dir.path().join("workload.om");
    let series = by_series(w)?;
    let bodies = import_bodies(&series, 4);
    let file_bytes = write_openmetrics(series, &om)?;
    eprintln!("== promtool tsdb create-blocks-from openmetrics ({} MiB of text)", file_bytes >> 20);
    let blocks = dir.path().join("prometheus-blocks");
    let started = Instant::now();
    let made = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om)
        .arg(&blocks)
        .output()
        .context("running promtool (scripts/install-deps installs it)")?;
    anyhow::ensure!(made.status.success(), "promtool: {}", String::from_utf8_lossy(&made.stderr));
    let promtool_seconds = started.elapsed().as_secs_f64();

    eprintln!("== amber import openmetrics");
    let from_text = System::start(Kind::Amber, amber_bin, &[])?;
    let om_arg = om.to_str().context("a UTF-8 path")?;
    let openmetrics_samples_per_s =
        amber_import(amber_bin, &from_text, &["openmetrics", om_arg], dir.path(), w.samples)?;
    let snapshot_imported = snapshot(&from_text)?;
    from_text.stop()?;

    eprintln!("== amber import tsdb");
    let from_blocks = System::start(Kind::Amber, amber_bin, &[])?;
    let blocks_arg = blocks.to_str().context("a UTF-8 path")?;
    let tsdb_samples_per_s = amber_import(amber_bin, &from_blocks, &["tsdb", blocks_arg], dir.path(), w.samples)?;
    from_blocks.stop()?;

    eprintln!("== POST /api/v1/import, then /api/v1/write");
    let endpoint = System::start(Kind::Amber, amber_bin, &[])?;
    let (endpoint_samples_per_s, _, errors, first) =
        measure::ingest_to(&endpoint, "/api/v1/import", &bodies, Protocol::V1, w.samples);
    anyhow::ensure!(errors == 0, "{errors} import requests failed, the first: {first:?}");
    endpoint.stop()?;
    let live = System::start(Kind::Amber, amber_bin, &[])?;
    let (live_samples_per_s, _, errors, first) = measure::ingest(&live, w, Protocol::V1);
    anyhow::ensure!(errors == 0, "{errors} writes failed, the first: {first:?}");
    let snapshot_live = snapshot(&live)?;
    live.stop()?;
    Ok(ImportResult {
        file_bytes,
        promtool_seconds,
        openmetrics_samples_per_s,
        tsdb_samples_per_s,
        endpoint_samples_per_s,
        live_samples_per_s,
        snapshot_live,
        snapshot_imported,
    })
}

pub fn table(w: &Workload, r: &ImportResult) -> String {
    let rate = |v: f64| format!("{:.0}", v);
    let promtool = w.samples as f64 / r.promtool_seconds;
    let mut t = String::new();
    t.push_str(&format!("OpenMetrics text: {:.1} MiB\n\n", r.file_bytes as f64 / 1048576.0));
    t.push_str("| path | samples/s | vs promtool |\n|---|---|---|\n");
    t.push_str(&format!(
        "| promtool tsdb create-blocks-from openmetrics (offline, no fsync per batch) | {} | 1.00× |\n",
        rate(promtool)
    ));
    for (name, v) in [
        ("amber import openmetrics (the file → a running Amber)", r.openmetrics_samples_per_s),
        ("amber import tsdb (promtool's blocks → a running Amber)", r.tsdb_samples_per_s),
        ("POST /api/v1/import (whole series per body, 4 clients)", r.endpoint_samples_per_s),
        ("POST /api/v1/write (live ingest, for comparison)", r.live_samples_per_s),
    ] {
        t.push_str(&format!("| {name} | {} | {:.2}× |\n", rate(v), v / promtool));
    }
    t.push_str("\n| snapshot (POST /api/v1/admin/tsdb/snapshot) | seconds | bytes linked |\n|---|---|---|\n");
    t.push_str(&format!("| after live ingest (head + log) | {:.3} | {} |\n", r.snapshot_live.0, r.snapshot_live.1));
    t.push_str(&format!(
        "| after the import (sealed blocks) | {:.3} | {} |\n",
        r.snapshot_imported.0, r.snapshot_imported.1
    ));
    t
}
