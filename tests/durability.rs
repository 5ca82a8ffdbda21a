//! A 2xx means durable: data acknowledged before a `kill -9` is all there after a restart,
//! including when the kill lands in the middle of sealing head data into blocks. Float samples,
//! native histograms of every [`Shape`] and exemplars on both, sent as remote write 1.0 and 2.0
//! by turns.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use amber_storage::{Histogram, Options, Storage, TenantId};
use common::native_histograms::Shape;
use common::{Amber, ExemplarSpec, histogram_series, request, series};

/// What the test was told is written: per series name, float samples, histogram samples and
/// exemplar trace ids by time.
#[derive(Default)]
struct Acked {
    samples: BTreeMap<String, BTreeMap<i64, f64>>,
    histograms: BTreeMap<String, BTreeMap<i64, Histogram>>,
    exemplars: BTreeMap<String, BTreeMap<i64, String>>,
}

impl Acked {
    /// Opens the store the killed server left behind and checks it holds exactly what was acked,
    /// each sample, histogram and exemplar once.
    fn verify_on_disk(&self, data_dir: &std::path::Path, block_duration_ms: i64) {
        let opts = Options { block_duration_ms, ..Options::default() };
        let storage = Storage::open(data_dir, opts).unwrap();
        let names: std::collections::BTreeSet<&String> = self.samples.keys().chain(self.histograms.keys()).collect();
        for name in names {
            let matchers = vec![vec![amber_storage::Matcher::equal("__name__", name.clone())]];
            let found = storage.select_labels(TenantId::DEFAULT, &matchers, i64::MIN / 2, i64::MAX / 2).unwrap();
            assert_eq!(found.len(), 1, "series {name}");
            let id = found[0].0;
            let got: Vec<(i64, f64)> =
                storage.samples(id, i64::MIN, i64::MAX).unwrap().into_iter().map(|s| (s.ts, s.value)).collect();
            let want: Vec<(i64, f64)> = self.samples.get(name).into_iter().flatten().map(|(&t, &v)| (t, v)).collect();
            assert_eq!(got, want, "samples of {name}");
            let got: Vec<(i64, Histogram)> = storage
                .histograms_of(&[id], i64::MIN, i64::MAX)
                .unwrap()
                .remove(0)
                .into_iter()
                .map(|s| (s.ts, s.h))
                .collect();
            let want: Vec<(i64, Histogram)> =
                self.histograms.get(name).into_iter().flatten().map(|(&t, h)| (t, h.clone())).collect();
            assert_eq!(got, want, "histogram samples of {name}");
            let got: Vec<(i64, String)> = storage
                .exemplars(id, i64::MIN, i64::MAX)
                .unwrap()
                .into_iter()
                .map(|e| (e.ts, e.labels.get("trace_id").unwrap().to_string()))
                .collect();
            let want: Vec<(i64, String)> =
                self.exemplars.get(name).into_iter().flatten().map(|(&t, v)| (t, v.clone())).collect();
            assert_eq!(got, want, "exemplars of {name}");
        }
    }
}

/// Sends a batch as remote write 1.0 on even cycles and 2.0 on odd ones; both must answer 204.
fn write_both_ways(amber: &Amber, cycle: usize, batch: Vec<amber_api::prompb::TimeSeries>) {
    let req = request(batch);
    let answer = if cycle.is_multiple_of(2) { amber.write(&req) } else { amber.write_v2(&req) };
    assert_eq!(answer, (204, String::new()), "cycle {cycle}:\n{}", amber.log_tail());
}

/// xorshift64: a repeatable source of kill delays without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Kill -9 right after every acknowledged batch; every acknowledged sample, histogram sample and
/// exemplar is found again, through the HTTP API after restart and on disk.
#[test]
fn every_acknowledged_write_survives_kill_9() {
    acknowledged_writes_survive_kill_9(&[]);
}

/// Without the fsync an answered write has still been handed to the kernel (`write(2)`), which
/// keeps it when the process dies: only a power loss or a kernel crash could lose it.
#[test]
fn with_wal_fsync_off_every_acknowledged_write_survives_kill_9() {
    acknowledged_writes_survive_kill_9(&["--wal-fsync=false"]);
}

fn acknowledged_writes_survive_kill_9(args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let mut amber = Amber::start(dir.path(), args);
    let mut acked = Acked::default();
    let base = common::now_ms() - 600_000;
    for cycle in 0..6usize {
        let c = cycle as i64;
        let mut batch = Vec::new();
        let ts = base + c * 10_000;
        for s in 0..20 {
            let name = format!("metric_{s}");
            let samples: Vec<(i64, f64)> = (0..10).map(|i| (ts + i * 1000, (c * 100 + i) as f64)).collect();
            let trace = format!("{cycle:016x}{s:016x}");
            batch.push(series(
                &[("__name__", &name), ("job", "crash")],
                &samples,
                &[(ts, 1.0, &[("trace_id", &trace)])],
            ));
            acked.samples.entry(name.clone()).or_default().extend(samples);
            acked.exemplars.entry(name).or_default().insert(ts, trace);
        }
        // Two series of each shape, ten histogram samples each per cycle.
        for s in 0..8 {
            let (name, shape) = (format!("histogram_{s}"), Shape::ALL[s % Shape::ALL.len()]);
            let histograms: Vec<(i64, Histogram)> =
                (0..10).map(|i| (ts + i * 1000, shape.at((c * 10 + i) as u64))).collect();
            let sent: Vec<(i64, &Histogram, bool)> =
                histograms.iter().map(|(t, h)| (*t, h, shape.is_integer())).collect();
            let trace = format!("{cycle:016x}{:016x}", 100 + s);
            batch.push(histogram_series(
                &[("__name__", &name), ("job", "crash")],
                &sent,
                &[(ts, 0.25, &[("trace_id", &trace)])],
            ));
            acked.histograms.entry(name.clone()).or_default().extend(histograms);
            acked.exemplars.entry(name).or_default().insert(ts, trace);
        }
        write_both_ways(&amber, cycle, batch);
        amber.restart();
    }
    for (name, exemplars) in &acked.exemplars {
        for (ts, trace) in exemplars {
            let data = amber.data(&format!("/api/v1/exemplars/trace/{trace}"));
            assert_eq!(data[0]["seriesLabels"]["__name__"], name.as_str());
            assert_eq!(data[0]["exemplars"][0]["timestamp"], ts / 1000);
        }
    }
    // One histogram of each shape through PromQL: count and sum as sent.
    let last = base + 5 * 10_000 + 9 * 1000;
    for (s, shape) in Shape::ALL.iter().enumerate() {
        let h = shape.at(59);
        for (function, want) in [("histogram_count", h.count), ("histogram_sum", h.sum)] {
            let query = format!("{function}(histogram_{s})");
            let data = amber.data(&format!("/api/v1/query?query={query}&time={}", last / 1000));
            assert_eq!(data["result"][0]["value"][1], want.to_string(), "{query}");
        }
    }
    amber.kill9();
    acked.verify_on_disk(&amber.data_dir, Options::default().block_duration_ms);
}

/// Kill -9 at random moments while the server seals a large head into blocks (it seals at
/// start-up and every 50 ms, with 2 s windows); after each restart it resumes, and in the end
/// every acknowledged sample, histogram sample and exemplar is there exactly once.
#[test]
fn kill_9_during_sealing_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--block-duration", "2s", "--out-of-order-window", "1s", "--maintenance-interval", "50ms"];
    let mut amber = Amber::start(dir.path(), &args);
    let mut acked = Acked::default();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let cycles = 12;
    // How long a start-up pass takes to seal one cycle's data with this build on this machine,
    // measured in the first cycle: later kills are spread over twice that. The pass starts before
    // the server answers `/-/ready`, so less of it is left to hit than it took: a kill that lands
    // after the pass halves the spread for the next one, so some kills land inside the pass
    // however fast, slow or unlucky the machine is.
    let mut pass_ms: Option<u64> = None;
    let mut spread_ms = 0;
    let mut kills_in_pass = 0;
    for cycle in 0..cycles {
        // Each cycle adds 40 float and 8 histogram series (two of each shape) with 60 s of
        // 100 ms samples and an exemplar a second: 30 windows each to seal.
        let end = common::now_ms() - 2_000;
        let mut batch = Vec::new();
        for s in 0..48 {
            let name = format!("m_{cycle}_{s}");
            let at = |i: i64| end - 60_000 + i * 100;
            let exemplars: Vec<(i64, String)> =
                (0..60).map(|i| (end - 60_000 + i * 1000, format!("{cycle:08x}{s:08x}{i:016x}"))).collect();
            let trace_labels: Vec<[(&str, &str); 1]> =
                exemplars.iter().map(|(_, t)| [("trace_id", t.as_str())]).collect();
            let exemplar_args: Vec<ExemplarSpec> =
                exemplars.iter().zip(&trace_labels).map(|((ts, _), l)| (*ts, 0.5, &l[..])).collect();
            if s < 40 {
                let samples: Vec<(i64, f64)> = (0..600).map(|i| (at(i), (i * (s + 1)) as f64)).collect();
                batch.push(series(&[("__name__", &name)], &samples, &exemplar_args));
                acked.samples.insert(name.clone(), samples.into_iter().collect());
            } else {
                let shape = Shape::ALL[s as usize % Shape::ALL.len()];
                let histograms: Vec<(i64, Histogram)> = (0..600).map(|i| (at(i), shape.at(i as u64))).collect();
                let sent: Vec<(i64, &Histogram, bool)> =
                    histograms.iter().map(|(t, h)| (*t, h, shape.is_integer())).collect();
                batch.push(histogram_series(&[("__name__", &name)], &sent, &exemplar_args));
                acked.histograms.insert(name.clone(), histograms.into_iter().collect());
            }
            acked.exemplars.insert(name, exemplars.into_iter().collect());
        }
        write_both_ways(&amber, cycle, batch);
        // The restart seals at once.
        amber.restart();
        match pass_ms {
            None => {
                wait_until_head_sealed(&amber);
                let seconds = amber.metric("amber_seal_duration_seconds_sum").unwrap();
                let ms = ((seconds * 1000.0) as u64).max(1);
                pass_ms = Some(ms);
                spread_ms = 2 * ms;
            }
            Some(_) => {
                // Kill it at a random moment: the delay is the behaviour under test, not a wait
                // for a condition.
                std::thread::sleep(Duration::from_millis(rng.below(spread_ms)));
                // The start-up pass finishes first: none finished yet means this kill lands in it.
                if amber.metric("amber_seal_passes_total") == Some(0.0) {
                    kills_in_pass += 1;
                } else {
                    spread_ms = (spread_ms / 2).max(1);
                }
            }
        }
        amber.restart();
    }
    // Let the last server seal everything, then crash it one more time.
    wait_until_head_sealed(&amber);
    amber.kill9();
    println!("a start-up pass takes {} ms; {kills_in_pass} of {} kills landed in one", pass_ms.unwrap(), cycles - 1);
    assert!(kills_in_pass > 0, "no kill landed in a sealing pass:\n{}", amber.log_tail());
    acked.verify_on_disk(&amber.data_dir, 2_000);
}

/// Waits until a sealing pass has finished and the head is empty (samples, histograms and
/// exemplars): every window is past the out-of-order window and sealed. A debug build on two loaded cores can take many seconds for a
/// large head: the deadline is generous, the wait ends as soon as the head is empty.
fn wait_until_head_sealed(amber: &Amber) {
    common::eventually("the server to seal its whole head", Duration::from_secs(600), || {
        let sealed = amber.metric("amber_seal_passes_total").is_some_and(|n| n >= 1.0)
            && amber.metric("amber_head_samples") == Some(0.0)
            && amber.metric("amber_head_histograms") == Some(0.0)
            && amber.metric("amber_head_exemplars") == Some(0.0);
        sealed.then_some(())
    });
}
