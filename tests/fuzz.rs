//! Fuzzing of everything that parses untrusted bytes, on the stable toolchain: remote-write 1.0
//! and 2.0 bodies (snappy + protobuf + label validation), OTLP metrics (protobuf and JSON,
//! translated), query parameters (times, durations, PromQL), and Amber's own on-disk decoders
//! (sample, exemplar and histogram blocks, label sets, columns). The coverage-guided fuzzer in
//! `fuzz/` (cargo fuzz, nightly) covers the same decoders and the private ones. Inputs are the seed
//! corpus in `tests/fuzz-corpus/` plus random mutations of it (bit flips, truncation, splices,
//! random bytes). A decoder must return an error or a value; a panic fails the test.
//!
//! CI runs a few seconds. For an hour: `AMBER_FUZZ_SECONDS=3600 cargo test --release --test fuzz
//! -- --nocapture`; it prints the executions. `AMBER_FUZZ_WRITE_CORPUS=1` rewrites the seed files.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use amber_storage::block;
use amber_storage::chunkenc::varint::Reader;
use amber_storage::labels::{self, Label, LabelLimits, Labels};
use amber_storage::{Exemplar, Sample};
use common::{encode, request, series};
use prost::Message;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus")
}

/// The seed inputs, by target: valid encodings the mutator starts from.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let write = request(vec![
        series(
            &[("__name__", "http_requests_total"), ("job", "api")],
            &[(1_700_000_000_000, 1.0), (1_700_000_015_000, 2.0)],
            &[(1_700_000_015_000, 0.5, &[("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736")])],
        ),
        series(&[("__name__", "up")], &[(1_700_000_000_000, f64::from_bits(0x7ff0_0000_0000_0002))], &[]),
    ]);
    let samples: Vec<Sample> =
        (0..50).map(|i| Sample { ts: 1_700_000_000_000 + i * 15_000, value: i as f64 * 1.5, start_ts: 0 }).collect();
    let exemplars = vec![Exemplar {
        ts: 1,
        value: 2.0,
        labels: Labels::from_unsorted(vec![Label::new("trace_id", "00ff"), Label::new("user", "é")]),
    }];
    let otlp_json = std::fs::read(corpus_dir().join("../../fuzz/corpus/otlp/seed.json")).unwrap_or_default();
    let histograms = vec![amber_storage::HistogramSample {
        ts: 1_700_000_000_000,
        start_ts: 0,
        h: amber_storage::Histogram {
            count: 3.0,
            sum: 7.5,
            positive_spans: vec![amber_storage::histogram::Span { offset: 0, length: 2 }],
            positive_buckets: vec![1.0, 2.0],
            ..Default::default()
        },
    }];
    vec![
        (
            "remote_write_v2",
            snap::raw::Encoder::new().compress_vec(&amber_api::remote_write::to_v2(&write).encode_to_vec()).unwrap(),
        ),
        ("otlp_json", otlp_json),
        ("histogram_block", block::encode_histograms(&histograms)),
        ("remote_write", encode(&write)),
        ("remote_write_raw_proto", write.encode_to_vec()),
        ("sample_block", block::encode_samples(&samples)),
        ("exemplar_block", block::encode_exemplars(&exemplars)),
        ("labels", Labels::from_unsorted(vec![Label::new("__name__", "up"), Label::new("job", "x")]).encode()),
        ("query", br#"sum by (job) (rate(http_requests_total{code=~"5.."}[5m] offset 1m @ 100)) > bool 0.5"#.to_vec()),
        ("time", b"2020-09-14T15:22:25.479Z".to_vec()),
    ]
}

/// Feeds one input to the target named `target`; a panic is a finding.
fn run(target: &str, data: &[u8]) {
    match target {
        "remote_write" | "remote_write_raw_proto" => {
            let body = if target == "remote_write" {
                data.to_vec()
            } else {
                snap::raw::Encoder::new().compress_vec(data).unwrap()
            };
            if let Ok(req) = amber_api::remote_write::decode(&body, 1 << 20) {
                for ts in req.timeseries {
                    let raw = ts.labels.into_iter().map(|l| Label::new(l.name, l.value)).collect();
                    let _ = labels::validate_series(raw, &LabelLimits::default(), labels::NameRules::Legacy);
                    for e in ts.exemplars {
                        let _ = labels::validate_exemplar(
                            e.labels.into_iter().map(|l| Label::new(l.name, l.value)).collect(),
                        );
                    }
                }
            }
        }
        "remote_write_v2" => {
            let _ = amber_api::remote_write::decode_v2(data, 1 << 20);
        }
        "otlp_json" => {
            use amber_api::otlp::proto::collector::metrics::v1::ExportMetricsServiceRequest;
            let settings = amber_api::otlp::translate::Translation::default();
            for req in [ExportMetricsServiceRequest::decode(data).ok(), amber_api::otlp::json::decode(data).ok()]
                .into_iter()
                .flatten()
            {
                let _ = amber_api::otlp::translate::translate(req, &settings);
            }
        }
        "histogram_block" => {
            let _ = block::decode_histograms(data);
        }
        "sample_block" => {
            let _ = block::decode_samples(data);
        }
        "exemplar_block" => {
            let _ = block::decode_exemplars(data);
        }
        "labels" => {
            let _ = Labels::decode(&mut Reader::new(data));
        }
        "query" => {
            let text = String::from_utf8_lossy(data);
            let _ = promql_parser::parser::parse(&text);
            let _ = amber_api::params::parse_duration_ms(&text);
        }
        "time" => {
            let _ = amber_api::params::parse_time(&String::from_utf8_lossy(data));
        }
        other => unreachable!("unknown target {other}"),
    }
}

/// xorshift64: a repeatable mutation stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(6) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] = rng.next() as u8;
            }
            2 => data.truncate(rng.below(data.len() + 1)),
            3 => {
                let at = rng.below(data.len() + 1);
                let from = rng.below(other.len() + 1);
                let piece: Vec<u8> = other[from..].iter().take(rng.below(16) + 1).copied().collect();
                data.splice(at..at, piece);
            }
            4 => data.extend((0..rng.below(32)).map(|_| rng.next() as u8)),
            _ => data = (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
        }
    }
    data
}

#[test]
fn decoders_never_panic_on_mutated_input() {
    let seeds = seeds();
    let dir = corpus_dir();
    if std::env::var_os("AMBER_FUZZ_WRITE_CORPUS").is_some() {
        for (name, data) in &seeds {
            std::fs::write(dir.join(format!("{name}.bin")), data).unwrap();
        }
    }
    // Seeds from the checked-in corpus (so findings added there are replayed), then the built-in ones.
    let mut inputs: Vec<(&str, Vec<u8>)> = Vec::new();
    for (name, data) in &seeds {
        if let Ok(file) = std::fs::read(dir.join(format!("{name}.bin"))) {
            inputs.push((name, file));
        }
        inputs.push((name, data.clone()));
    }
    let seconds: u64 = std::env::var("AMBER_FUZZ_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let mut executions = 0u64;
    for (name, data) in &inputs {
        run(name, data);
    }
    while Instant::now() < deadline {
        for _ in 0..256 {
            let (name, seed) = &inputs[rng.below(inputs.len())];
            let (_, other) = &inputs[rng.below(inputs.len())];
            run(name, &mutate(&mut rng, seed, other));
            executions += 1;
        }
    }
    println!("fuzz: {executions} executions in {seconds}s over {} seeds, no panics", inputs.len());
    assert!(executions > 0);
}
