//! Crash loop under load: concurrent remote-write clients push float samples, native histograms
//! (every [`Shape`]) and exemplars on both, as remote write 1.0 and 2.0 by turns, while the
//! server is killed with SIGKILL at random moments (it seals 2 s windows and enforces a 4 s
//! retention every 50 ms, so kills land in the middle of sealing, of retention's range deletes and
//! of RocksDB flushes and compactions) and restarted; the clients keep going, retrying
//! unacknowledged batches as Prometheus does. At the end every acknowledged sample, histogram
//! sample and exemplar still inside retention is read back exactly, older ones are either exactly
//! there or wholly gone with their window, and no timestamp appears twice.
//!
//! CI runs 20 cycles. For a long run: `AMBER_CRASH_CYCLES=200 cargo test --release --test crash_loop
//! -- --nocapture`; it prints `cycles=N acked=N (histogram samples: N) lost=0 duplicated=0`.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amber_storage::{Histogram, Matcher, Options, Storage, TenantId};
use common::native_histograms::Shape;
use common::{Amber, histogram_series, request, series};

const CLIENTS: usize = 4;
const SERIES_PER_CLIENT: usize = 25;
/// Histogram series per client: one of each shape.
const HISTOGRAM_SERIES_PER_CLIENT: usize = Shape::ALL.len();
const RETENTION_MS: i64 = 4000;
const BLOCK_MS: i64 = 2000;

/// A sample as sent: a float or a native histogram.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Float(f64),
    Histogram(Histogram),
}

/// What the clients were told is written: per series, value and exemplar trace id by timestamp.
type Acked = BTreeMap<String, BTreeMap<i64, (Value, String)>>;

/// One sender: owns its series, sends one sample (float or histogram) and one exemplar per series
/// per batch, remote write 1.0 and 2.0 on alternate batches, and retries a batch until it is
/// acknowledged.
fn client(port: u16, id: usize, stop: Arc<AtomicBool>, acked: Arc<Mutex<Acked>>) {
    let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let url = format!("http://127.0.0.1:{port}/api/v1/write");
    let mut last_ts = 0i64;
    let mut step = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let ts = common::now_ms().max(last_ts + 1);
        last_ts = ts;
        step += 1;
        let mut batch: Vec<(String, Value, String)> = Vec::new();
        let mut timeseries = Vec::new();
        for s in 0..SERIES_PER_CLIENT + HISTOGRAM_SERIES_PER_CLIENT {
            let trace = format!("{id:08x}{s:08x}{step:016x}");
            let exemplars = [(ts, 1.0, &[("trace_id", trace.as_str())][..])];
            let (name, value) = match s.checked_sub(SERIES_PER_CLIENT) {
                None => {
                    let (name, v) = (format!("crash_c{id}_s{s}"), (step * 10 + s as u64) as f64);
                    timeseries.push(series(&[("__name__", &name)], &[(ts, v)], &exemplars));
                    (name, Value::Float(v))
                }
                Some(i) => {
                    let shape = Shape::ALL[i];
                    let (name, h) = (format!("crash_c{id}_{shape:?}"), shape.at(step));
                    timeseries.push(histogram_series(
                        &[("__name__", &name)],
                        &[(ts, &h, shape.is_integer())],
                        &exemplars,
                    ));
                    (name, Value::Histogram(h))
                }
            };
            batch.push((name, value, trace));
        }
        let req = request(timeseries);
        let (body, headers) = if step.is_multiple_of(2) {
            (common::encode(&req), common::RW1_HEADERS)
        } else {
            (common::encode_v2(&req), common::RW2_HEADERS)
        };
        loop {
            let mut post = http.post(&url);
            for (k, v) in headers {
                post = post.header(k, v);
            }
            match post.body(body.clone()).send() {
                Ok(r) if r.status().as_u16() == 204 => {
                    let mut acked = acked.lock().unwrap();
                    for (name, v, trace) in &batch {
                        acked.entry(name.clone()).or_default().insert(ts, (v.clone(), trace.clone()));
                    }
                    break;
                }
                Ok(r) if r.status().is_client_error() => {
                    let text = r.text().unwrap();
                    // A batch retried for longer than the retention is refused for good: not acknowledged.
                    if text.contains("too old: before the retention period") {
                        break;
                    }
                    panic!("batch refused: {text}")
                }
                // Down, restarting, or a retryable error: try the same batch again.
                _ => {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    // A sender's pause between retries, as Prometheus backs off; not a wait for a condition.
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        // The sender's pace: about a hundred batches a second from each client.
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// xorshift64 for repeatable kill delays.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn acknowledged_writes_survive_a_crash_loop_under_load() {
    let cycles: usize = std::env::var("AMBER_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--block-duration",
        "2s",
        "--retention",
        "4s",
        "--out-of-order-window",
        "1m",
        "--maintenance-interval",
        "50ms",
    ];
    let mut amber = Amber::start(dir.path(), &args);
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Acked>> = Arc::default();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (stop, acked, port) = (stop.clone(), acked.clone(), amber.port);
            std::thread::spawn(move || client(port, id, stop, acked))
        })
        .collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..cycles {
        // Load for a random while, then crash: the random moment is the behaviour under test.
        std::thread::sleep(Duration::from_millis(100 + next(&mut seed) % 500));
        amber.restart();
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    amber.kill9();
    // Windows ending before this may have been deleted by retention; later ones must be whole.
    let kept_from = (common::now_ms() - RETENTION_MS) / BLOCK_MS * BLOCK_MS + BLOCK_MS;

    let acked = acked.lock().unwrap();
    let storage =
        Storage::open(&amber.data_dir, Options { block_duration_ms: BLOCK_MS, ..Options::default() }).unwrap();
    let (mut total, mut histogram_samples, mut lost, mut duplicated, mut expired) = (0usize, 0usize, 0, 0, 0);
    for (name, want) in acked.iter() {
        let found = storage
            .select_labels(
                TenantId::DEFAULT,
                &[vec![Matcher::equal("__name__", name.clone())]],
                i64::MIN / 2,
                i64::MAX / 2,
            )
            .unwrap();
        assert!(found.len() <= 1, "series {name}");
        let Some(&(id, _)) = found.first() else {
            assert!(want.keys().all(|&ts| ts < kept_from), "series {name} is gone with data inside retention");
            expired += want.len();
            continue;
        };
        let samples = storage.samples(id, i64::MIN, i64::MAX).unwrap();
        let histograms = storage.histograms_of(&[id], i64::MIN, i64::MAX).unwrap().remove(0);
        let exemplars = storage.exemplars(id, i64::MIN, i64::MAX).unwrap();
        duplicated += samples.windows(2).filter(|w| w[0].ts >= w[1].ts).count();
        duplicated += histograms.windows(2).filter(|w| w[0].ts >= w[1].ts).count();
        duplicated += exemplars.windows(2).filter(|w| w[0].ts >= w[1].ts).count();
        let mut stored: BTreeMap<i64, Value> = samples.into_iter().map(|s| (s.ts, Value::Float(s.value))).collect();
        for h in histograms {
            // A float and a histogram sample at one timestamp would be one sample stored twice.
            duplicated += usize::from(stored.insert(h.ts, Value::Histogram(h.h)).is_some());
        }
        let exemplars: BTreeMap<i64, String> =
            exemplars.into_iter().map(|e| (e.ts, e.labels.get("trace_id").unwrap_or("").to_string())).collect();
        for (ts, (v, trace)) in want {
            total += 1;
            histogram_samples += usize::from(matches!(v, Value::Histogram(_)));
            let (sample, exemplar) = (stored.get(ts), exemplars.get(ts));
            if *ts < kept_from && sample.is_none() && exemplar.is_none() {
                expired += 1;
            } else if sample != Some(v) || exemplar != Some(trace) {
                lost += 1;
            }
        }
    }
    println!(
        "cycles={cycles} acked={total} (histogram samples: {histogram_samples}) lost={lost} duplicated={duplicated} (expired by retention: {expired})"
    );
    assert!(total > expired, "no acknowledged batch was left inside retention");
    assert!(histogram_samples > 0, "no histogram sample was acknowledged");
    assert_eq!((lost, duplicated), (0, 0));
}
