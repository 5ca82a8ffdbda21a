//! Micro-benchmarks of the hot path: remote-write decode (snappy + protobuf), the timestamp and
//! value column codecs, the exemplar block encoder, and series selection by postings.
//! Run with `cargo bench -p amber-bench --bench codecs`.

use amber_bench::workload;
use amber_storage::chunkenc::{timestamp, value, varint::Reader};
use amber_storage::{
    Exemplar, Label, Labels, MatchOp, Matcher, Options, Sample, SeriesCreation, SeriesWrite, Storage, TenantId,
};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

fn remote_write_decode(c: &mut Criterion) {
    // One scrape of 26 targets: one request of about 2000 samples, as Prometheus sends them.
    let w = workload::generate(26, 1, 1, 1_800_000_000_000 - 4 * 3_600_000);
    let payload = &w.payloads[0][0];
    let mut g = c.benchmark_group("remote_write");
    g.throughput(Throughput::Elements(w.samples));
    g.bench_function("decode snappy+protobuf 2k samples", |b| {
        b.iter(|| amber_api::remote_write::decode(payload, usize::MAX).unwrap())
    });
    g.finish();
}

/// A counter scraped every 15 s with a few ms of jitter, and its values.
fn column() -> (Vec<i64>, Vec<f64>) {
    let ts = (0..480).map(|i| 1_800_000_000_000 + i * 15_000 + (i * 7919) % 5).collect();
    let mut v = 1000.0;
    let values = (0..480)
        .map(|i| {
            v += ((i * 104_729) % 1000) as f64 / 100.0;
            v
        })
        .collect();
    (ts, values)
}

fn columns(c: &mut Criterion) {
    let (ts, values) = column();
    let mut g = c.benchmark_group("columns");
    g.throughput(Throughput::Elements(ts.len() as u64));
    g.bench_function("timestamp encode 480", |b| {
        b.iter(|| {
            let mut out = Vec::new();
            timestamp::encode(&ts, &mut out);
            out
        })
    });
    let mut ts_bytes = Vec::new();
    timestamp::encode(&ts, &mut ts_bytes);
    g.bench_function("timestamp decode 480", |b| b.iter(|| timestamp::decode(&mut Reader::new(&ts_bytes), ts.len())));
    g.bench_function("value encode 480", |b| {
        b.iter(|| {
            let mut out = Vec::new();
            value::encode(&values, &mut out);
            out
        })
    });
    let mut value_bytes = Vec::new();
    value::encode(&values, &mut value_bytes);
    g.bench_function("value decode 480", |b| b.iter(|| value::decode(&value_bytes, values.len())));
    g.finish();
}

fn exemplar_blocks(c: &mut Criterion) {
    let exemplars: Vec<Exemplar> = (0..240u64)
        .map(|i| Exemplar {
            ts: 1_800_000_000_000 + i as i64 * 15_000,
            value: 0.001 * i as f64,
            labels: Labels::from_sorted(vec![
                Label::new("span_id", format!("{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15))),
                Label::new(
                    "trace_id",
                    format!("{:032x}", u128::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)),
                ),
            ]),
        })
        .collect();
    let mut g = c.benchmark_group("exemplar_block");
    g.throughput(Throughput::Elements(exemplars.len() as u64));
    g.bench_function("encode 240", |b| b.iter(|| amber_storage::block::encode_exemplars(&exemplars)));
    let bytes = amber_storage::block::encode_exemplars(&exemplars);
    g.bench_function("decode 240", |b| b.iter(|| amber_storage::block::decode_exemplars(&bytes).unwrap()));
    g.finish();
}

fn postings(c: &mut Criterion) {
    // 128 node-exporter-like targets (about 10k series) in a real store.
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path(), Options::default()).unwrap();
    let w = workload::generate(128, 1, 1, amber_storage::now_ms() - 4 * 3_600_000);
    for p in &w.payloads[0] {
        let req = amber_api::remote_write::decode(p, usize::MAX).unwrap();
        let series: Vec<SeriesWrite> = req
            .timeseries
            .into_iter()
            .map(|ts| SeriesWrite {
                labels: Labels::from_unsorted(ts.labels.into_iter().map(|l| Label::new(l.name, l.value)).collect()),
                samples: ts.samples.iter().map(|s| Sample { ts: s.timestamp, value: s.value, start_ts: 0 }).collect(),
                exemplars: Vec::new(),
                histograms: Vec::new(),
            })
            .collect();
        storage.append(TenantId::DEFAULT, &series, &[], SeriesCreation::UNLIMITED).unwrap();
    }
    let eq = |n: &str, v: &str| Matcher { name: n.into(), op: MatchOp::Equal, value: v.into() };
    let selectors = vec![vec![eq("__name__", "node_cpu_seconds_total"), eq("mode", "idle"), eq("job", "node")]];
    let mut g = c.benchmark_group("postings");
    g.bench_function("select 3 matchers of 10k series", |b| {
        b.iter_batched(
            || (),
            |_| storage.select(TenantId::DEFAULT, &selectors, 0, i64::MAX).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, remote_write_decode, columns, exemplar_blocks, postings);
criterion_main!(benches);
