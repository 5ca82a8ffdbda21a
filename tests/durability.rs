//! A 2xx means durable: data acknowledged before a `kill -9` is all there after a restart,
//! including when the kill lands in the middle of sealing head data into blocks.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use amber_storage::{Options, Storage, TenantId};
use common::{Amber, ExemplarSpec, request, series};

/// What the test was told is written: per series name, samples and exemplar trace ids by time.
#[derive(Default)]
struct Acked {
    samples: BTreeMap<String, BTreeMap<i64, f64>>,
    exemplars: BTreeMap<String, BTreeMap<i64, String>>,
}

impl Acked {
    /// Opens the store the killed server left behind and checks it holds exactly what was acked.
    fn verify_on_disk(&self, data_dir: &std::path::Path, block_duration_ms: i64) {
        let opts = Options { block_duration_ms, ..Options::default() };
        let storage = Storage::open(data_dir, opts).unwrap();
        for (name, want) in &self.samples {
            let matchers = vec![vec![amber_storage::Matcher::equal("__name__", name.clone())]];
            let found = storage.select_labels(TenantId::DEFAULT, &matchers, i64::MIN / 2, i64::MAX / 2).unwrap();
            assert_eq!(found.len(), 1, "series {name}");
            let got: BTreeMap<i64, f64> =
                storage.samples(found[0].0, i64::MIN, i64::MAX).unwrap().into_iter().map(|s| (s.ts, s.value)).collect();
            assert_eq!(&got, want, "samples of {name}");
            let got: BTreeMap<i64, String> = storage
                .exemplars(found[0].0, i64::MIN, i64::MAX)
                .unwrap()
                .into_iter()
                .map(|e| (e.ts, e.labels.get("trace_id").unwrap().to_string()))
                .collect();
            assert_eq!(&got, self.exemplars.get(name).unwrap_or(&BTreeMap::new()), "exemplars of {name}");
        }
    }
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

/// Kill -9 right after every acknowledged batch; every acknowledged sample and exemplar is found
/// again, through the HTTP API after restart and on disk.
#[test]
fn every_acknowledged_write_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut amber = Amber::start(dir.path(), &[]);
    let mut acked = Acked::default();
    let base = common::now_ms() - 600_000;
    for cycle in 0..6i64 {
        let mut batch = Vec::new();
        for s in 0..20 {
            let name = format!("metric_{s}");
            let samples: Vec<(i64, f64)> =
                (0..10).map(|i| (base + cycle * 10_000 + i * 1000, (cycle * 100 + i) as f64)).collect();
            let ts = base + cycle * 10_000;
            let trace = format!("{:016x}{:016x}", cycle, s);
            batch.push(series(
                &[("__name__", &name), ("job", "crash")],
                &samples,
                &[(ts, 1.0, &[("trace_id", &trace)])],
            ));
            acked.samples.entry(name.clone()).or_default().extend(samples);
            acked.exemplars.entry(name).or_default().insert(ts, trace);
        }
        assert_eq!(amber.write(&request(batch)), (204, String::new()));
        amber.restart();
    }
    for (name, exemplars) in &acked.exemplars {
        for (ts, trace) in exemplars {
            let data = amber.data(&format!("/api/v1/exemplars/trace/{trace}"));
            assert_eq!(data[0]["seriesLabels"]["__name__"], name.as_str());
            assert_eq!(data[0]["exemplars"][0]["timestamp"], ts / 1000);
        }
    }
    amber.kill9();
    acked.verify_on_disk(&amber.data_dir, Options::default().block_duration_ms);
}

/// Kill -9 at random moments while the server seals a large head into blocks (it seals at
/// start-up and every 50 ms, with 2 s windows); after each restart it resumes, and in the end
/// every acknowledged sample and exemplar is there exactly once.
#[test]
fn kill_9_during_sealing_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--block-duration", "2s", "--out-of-order-window", "1s", "--maintenance-interval", "50ms"];
    let mut amber = Amber::start(dir.path(), &args);
    let mut acked = Acked::default();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let cycles = 12;
    for cycle in 0..cycles {
        // Each cycle adds 40 series with 60 s of 100 ms samples: 30 windows each to seal.
        let end = common::now_ms() - 2_000;
        let mut batch = Vec::new();
        for s in 0..40 {
            let name = format!("m_{cycle}_{s}");
            let samples: Vec<(i64, f64)> = (0..600).map(|i| (end - 60_000 + i * 100, (i * (s + 1)) as f64)).collect();
            let exemplars: Vec<(i64, String)> =
                (0..60).map(|i| (end - 60_000 + i * 1000, format!("{cycle:08x}{s:08x}{i:016x}"))).collect();
            let trace_labels: Vec<[(&str, &str); 1]> =
                exemplars.iter().map(|(_, t)| [("trace_id", t.as_str())]).collect();
            let exemplar_args: Vec<ExemplarSpec> =
                exemplars.iter().zip(&trace_labels).map(|((ts, _), l)| (*ts, 0.5, &l[..])).collect();
            batch.push(series(&[("__name__", &name)], &samples, &exemplar_args));
            acked.samples.insert(name.clone(), samples.into_iter().collect());
            acked.exemplars.insert(name, exemplars.into_iter().collect());
        }
        assert_eq!(amber.write(&request(batch)).0, 204, "{}", amber.log_tail());
        // The restart seals at once; kill it somewhere in the middle of that. The random delay is
        // the behaviour under test (a kill at an arbitrary moment), not a wait for a condition.
        amber.restart();
        std::thread::sleep(Duration::from_millis(rng.below(400)));
        amber.restart();
    }
    // Let the last server finish sealing everything (its head is empty once every window is past
    // the out-of-order window and sealed), then crash it one more time. A debug build on two
    // loaded cores takes many seconds for these 14,400 (series, window) pairs: the deadline is
    // generous, the wait ends as soon as the head is empty.
    common::eventually("the last server to seal its whole head", Duration::from_secs(600), || {
        let sealed = amber.metric("amber_seal_passes_total").is_some_and(|n| n >= 1.0)
            && amber.metric("amber_head_samples") == Some(0.0)
            && amber.metric("amber_head_exemplars") == Some(0.0);
        sealed.then_some(())
    });
    amber.kill9();
    let log = std::fs::read_to_string(dir.path().join("amber.log")).unwrap();
    let passes = log.lines().filter(|l| l.contains("maintenance")).count();
    let starts = log.lines().filter(|l| l.contains("store open")).count();
    // Each start seals at once; passes < starts means kills landed before a pass could finish.
    println!("{starts} starts, {passes} sealing passes finished");
    assert!(passes > 0, "no sealing pass ever finished:\n{}", amber.log_tail());
    acked.verify_on_disk(&amber.data_dir, 2_000);
}
