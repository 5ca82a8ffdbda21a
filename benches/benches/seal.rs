//! One sealing pass over the head that `tests/durability.rs` builds: 480 series with 60 s of
//! 100 ms samples and one exemplar a second, in 2 s windows — 14,400 (series, window) pairs of
//! samples and as many of exemplars, written into blocks by a single `Storage::seal`.
//! Run with `cargo bench -p amber-bench --bench seal` (release), or add `--profile dev` for the
//! debug build the tests use. Each run seals a fresh store; the report gives every run's time.

use std::time::Instant;

use amber_storage::labels::{Label, Labels};
use amber_storage::{Exemplar, Options, Sample, SeriesCreation, SeriesWrite, Storage, TenantId};

const SERIES: usize = 480;
const RUNS: usize = 3;

/// The durability test's batches: 40 series each, 600 samples and 60 exemplars per series.
fn head(storage: &Storage, end: i64) {
    for batch in 0..SERIES / 40 {
        let writes: Vec<SeriesWrite> = (0..40)
            .map(|s| SeriesWrite {
                labels: Labels::from_unsorted(vec![Label::new("__name__", format!("m_{batch}_{s}"))]),
                samples: (0..600)
                    .map(|i| Sample { ts: end - 60_000 + i * 100, value: (i * (s + 1)) as f64, start_ts: 0 })
                    .collect(),
                histograms: Vec::new(),
                exemplars: (0..60)
                    .map(|i| Exemplar {
                        ts: end - 60_000 + i * 1000,
                        value: 0.5,
                        labels: Labels::from_unsorted(vec![Label::new(
                            "trace_id",
                            format!("{batch:08x}{s:08x}{i:016x}"),
                        )]),
                    })
                    .collect(),
            })
            .collect();
        storage.append(TenantId::DEFAULT, &writes, &[], SeriesCreation::UNLIMITED).expect("append");
    }
}

fn main() {
    let opts = Options { block_duration_ms: 2_000, out_of_order_window_ms: 1_000, ..Options::default() };
    for run in 1..=RUNS {
        let dir = tempfile::tempdir().expect("temporary directory");
        let storage = Storage::open(dir.path(), opts.clone()).expect("open");
        let end = amber_storage::now_ms() - 2_000;
        head(&storage, end);
        // A horizon past every written window: the pass seals the whole head.
        let started = Instant::now();
        let report = storage.seal(end + 10_000).expect("seal");
        let elapsed = started.elapsed();
        println!(
            "run {run}: sealed {} sample and {} exemplar (series, window) pairs ({} samples, {} exemplars) in {:.3} s",
            report.sample_blocks_written,
            report.exemplar_blocks_written,
            report.samples_sealed,
            report.exemplars_sealed,
            elapsed.as_secs_f64()
        );
    }
}
