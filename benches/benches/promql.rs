//! The PromQL engine on in-memory data: the range query of the engine's performance criterion,
//! `rate(x[5m])` over 1,000 series × 24 h at 15 s resolution with a 60 s step.
//! Run with `cargo bench -p amber-bench --bench promql`.

use amber_promql::{Engine, Labels, MemoryStorage, Point, QueryContext};
use criterion::{Criterion, criterion_group, criterion_main};

const DAY_MS: i64 = 86_400_000;

fn day_of_counters(series: usize) -> MemoryStorage {
    let mut storage = MemoryStorage::default();
    for i in 0..series {
        let labels = Labels::from_pairs(&[
            ("__name__", "http_requests_total"),
            ("instance", &format!("10.0.{}.{}:9100", i / 256, i % 256)),
            ("job", "api"),
        ]);
        let mut v = 0.0;
        let points: Vec<Point> = (0..DAY_MS / 15_000)
            .map(|k| {
                v += ((k * 7 + i as i64) % 13) as f64;
                Point { t: k * 15_000, v }
            })
            .collect();
        storage.add(labels, &points);
    }
    storage
}

fn range_rate(c: &mut Criterion) {
    let storage = day_of_counters(1000);
    let engine = Engine::default();
    let mut g = c.benchmark_group("promql");
    g.sample_size(10);
    g.bench_function("rate(x[5m]) 1000 series x 24h, step 60s", |b| {
        b.iter(|| {
            engine
                .range_query(&storage, "rate(http_requests_total[5m])", 0, DAY_MS, 60_000, &QueryContext::default())
                .unwrap()
        })
    });
    g.bench_function("sum(rate(x[5m])) 1000 series x 24h, step 60s", |b| {
        b.iter(|| {
            engine
                .range_query(
                    &storage,
                    "sum(rate(http_requests_total[5m]))",
                    0,
                    DAY_MS,
                    60_000,
                    &QueryContext::default(),
                )
                .unwrap()
        })
    });
    g.bench_function("sum by (instance) (rate(x[5m])) 1000 series x 24h, step 60s", |b| {
        b.iter(|| {
            let q = "sum by (instance) (rate(http_requests_total[5m]))";
            engine.range_query(&storage, q, 0, DAY_MS, 60_000, &QueryContext::default()).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, range_rate);
criterion_main!(benches);
