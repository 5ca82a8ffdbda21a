//! `amber-bench soak`: one Amber under a steady load for an hour (or `--soak-minutes`), killed
//! with SIGKILL every ten minutes, checking that nothing acknowledged is lost and that nothing
//! grows without bound.
//!
//! - **Load**: remote write 1.0 at half the rate measured at the start (a 20 s push as fast as two
//!   clients go), with exemplars on a tenth of the series; OTLP/HTTP (JSON: a gauge and a
//!   histogram with exemplars) every second; a query every second, rotating through range
//!   queries, `query_exemplars`, a trace-id lookup and `series`.
//! - **Writes are retried until acknowledged**, as Prometheus's remote write retries 5xx and
//!   connection errors, so every series holds a sample at every multiple of its interval from its
//!   first one: what must be there is known without remembering it.
//! - **Churn**: every ten minutes a tenth of the series stop and as many new ones start.
//! - **Retention**: 20 minutes over 10-minute windows, so windows are deleted from the
//!   half-hour mark on.
//! - **Checks**: after every restart and at the end, `count_over_time` of sampled live series
//!   over the last five acknowledged minutes equals what was acknowledged, and the trace of an
//!   acknowledged exemplar is found. Every 10 s: RSS, bytes on disk, the WAL's bytes, open files,
//!   threads, write and query latency.
//! - **Bounds**: with retention and churn fixed, what Amber holds stops growing once the first
//!   windows expire (retention plus a window, 30 minutes): the run fails if RSS or disk in its
//!   last third exceeds 1.5× their highest value in its second third, or if a ten-minute slot's
//!   write or query p50/p99 is more than 2× the first slot's.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use amber_api::prompb;
use anyhow::bail;
use prost::Message;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::measure::encode;
use crate::systems::{Kind, System, dir_bytes};
use crate::workload::Protocol;

const SERIES: usize = 10_000;
const SAMPLES_PER_REQUEST: usize = 2_000;
const WRITERS: usize = 2;
const RETENTION_MINUTES: u64 = 20;
const WINDOW_MINUTES: u64 = 10;
const METRIC: &str = "soak_requests_total";

/// What the soak was asked for.
pub struct Options {
    pub minutes: u64,
    /// Minutes between kills, churns and slots (10 for the hour).
    pub period_minutes: u64,
}

/// One 10-second record of the run.
#[derive(Debug, Clone)]
struct Record {
    minute: f64,
    rss: u64,
    disk: u64,
    wal: u64,
    open_files: usize,
    threads: usize,
    samples_per_s: f64,
    write_p50_ms: f64,
    write_p99_ms: f64,
    query_p50_ms: f64,
    query_p99_ms: f64,
}

/// A series being written: its labels and the time of its first sample; it holds one sample
/// every `interval_ms` from then on, value = the sample's index.
#[derive(Clone)]
struct SoakSeries {
    id: usize,
    generation: u64,
    first_ms: i64,
}

/// State shared by the threads.
struct Shared {
    base: String,
    http: reqwest::blocking::Client,
    stop: AtomicBool,
    samples_acked: AtomicU64,
    /// Every round is acknowledged up to this time (ms); 0 before the first.
    acked_until: AtomicU64,
    write_latencies: Mutex<Vec<f64>>,
    query_latencies: Mutex<Vec<f64>>,
    /// Trace ids of acknowledged exemplars, newest last (a bounded ring).
    traces: Mutex<Vec<(i64, String)>>,
    series: Mutex<Vec<SoakSeries>>,
    failures: Mutex<Vec<String>>,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as i64
}

pub fn run(amber_bin: &Path, o: &Options) -> anyhow::Result<()> {
    let retention = format!("{}m", RETENTION_MINUTES.min(o.period_minutes * 2).max(1));
    let window = format!("{}m", WINDOW_MINUTES.min(o.period_minutes).max(1));
    let flags = ["--retention", &retention, "--block-duration", &window, "--out-of-order-window", "1m"];
    let system = System::start(Kind::Amber, amber_bin, &flags)?;
    let shared = Arc::new(Shared {
        base: system.url(""),
        http: reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build()?,
        stop: AtomicBool::new(false),
        samples_acked: AtomicU64::new(0),
        acked_until: AtomicU64::new(0),
        write_latencies: Mutex::default(),
        query_latencies: Mutex::default(),
        traces: Mutex::default(),
        series: Mutex::new((0..SERIES).map(|id| SoakSeries { id, generation: 0, first_ms: 0 }).collect()),
        failures: Mutex::default(),
    });

    let max_rate = calibrate(&shared)?;
    let rate = max_rate / 2.0;
    let interval_ms = ((SERIES as f64 * 1000.0 / rate).round() as i64).max(1);
    println!(
        "soak: measured {max_rate:.0} samples/s for 20 s; writing {SERIES} series, one sample each every {interval_ms} ms \
         ({:.0} samples/s), for {} minutes; kill -9, churn and slot every {} minutes; retention {retention}, windows {window}",
        SERIES as f64 * 1000.0 / interval_ms as f64,
        o.minutes,
        o.period_minutes
    );

    let system = Arc::new(Mutex::new(system));
    let started = Instant::now();
    let start_ms = now_ms();
    {
        let mut series = shared.series.lock().unwrap();
        for s in series.iter_mut() {
            s.first_ms = start_ms - start_ms % interval_ms + interval_ms;
        }
    }
    let mut threads = Vec::new();
    {
        let shared = shared.clone();
        threads.push(std::thread::spawn(move || write_loop(&shared, interval_ms)));
    }
    {
        let shared = shared.clone();
        threads.push(std::thread::spawn(move || otlp_loop(&shared)));
    }
    {
        let shared = shared.clone();
        threads.push(std::thread::spawn(move || query_loop(&shared)));
    }

    let mut records: Vec<Record> = Vec::new();
    let period = Duration::from_secs(o.period_minutes * 60);
    // Five minutes of every checked series, or less when the period is shorter.
    let check_window = (o.period_minutes as i64 * 30_000).min(300_000);
    let end = started + Duration::from_secs(o.minutes * 60);
    let mut next_event = started + period;
    let mut last_acked = 0u64;
    let mut last_record = Instant::now();
    let mut restarts = Vec::new();
    while Instant::now() < end {
        std::thread::sleep(Duration::from_secs(10).min(end.saturating_duration_since(Instant::now())));
        let elapsed = last_record.elapsed().as_secs_f64();
        last_record = Instant::now();
        let acked = shared.samples_acked.load(Ordering::Relaxed);
        let record = {
            let system = system.lock().unwrap();
            sample_process(&system, started, (acked - last_acked) as f64 / elapsed, &shared)?
        };
        last_acked = acked;
        println!(
            "soak: {:5.1} min  rss {:6.1} MiB  disk {:7.1} MiB  wal {:6.1} MiB  fds {:4}  threads {:3}  {:7.0} samples/s  \
             write p50/p99 {:6.1}/{:6.1} ms  query p50/p99 {:6.1}/{:6.1} ms",
            record.minute,
            record.rss as f64 / 1048576.0,
            record.disk as f64 / 1048576.0,
            record.wal as f64 / 1048576.0,
            record.open_files,
            record.threads,
            record.samples_per_s,
            record.write_p50_ms,
            record.write_p99_ms,
            record.query_p50_ms,
            record.query_p99_ms
        );
        records.push(record);
        if Instant::now() >= next_event && Instant::now() + Duration::from_secs(30) < end {
            next_event += period;
            churn(&shared, interval_ms);
            let took = system.lock().unwrap().kill9_and_restart()?;
            restarts.push(took);
            println!(
                "soak: kill -9 and restart, ready after {:.2} s; a tenth of the series replaced",
                took.as_secs_f64()
            );
            check(&shared, interval_ms, check_window, "after the restart")?;
        }
    }
    check(&shared, interval_ms, check_window, "at the end")?;
    shared.stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("soak threads do not panic")?;
    }
    let system = Arc::try_unwrap(system).map_err(|_| anyhow::anyhow!("system still shared"))?.into_inner().unwrap();
    let log = system.log().unwrap_or_default();
    system.stop()?;
    summary(&records, &restarts, &shared, o, &log)
}

/// Pushes as fast as two clients go for 20 s and returns samples/s, in the soak's own shape:
/// requests of 2,000 series with one sample each, as Prometheus sends a scrape (a metric of its
/// own, 5,000 series per client, time moving on by 10 ms each time a client has sent them all).
fn calibrate(shared: &Shared) -> anyhow::Result<f64> {
    let t0 = now_ms() - 30_000;
    let deadline = Instant::now() + Duration::from_secs(20);
    let samples = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..WRITERS)
            .map(|w| {
                let samples = &samples;
                scope.spawn(move || -> anyhow::Result<()> {
                    let blocks = SERIES / WRITERS / SAMPLES_PER_REQUEST;
                    let (mut k, mut block) = (0i64, 0);
                    while Instant::now() < deadline {
                        let first = block * SAMPLES_PER_REQUEST;
                        let series: Vec<prompb::TimeSeries> = (first..first + SAMPLES_PER_REQUEST)
                            .map(|i| prompb::TimeSeries {
                                labels: labels("soak_calibration", &format!("{w}-{i}"), 0),
                                samples: vec![prompb::Sample { value: k as f64, timestamp: t0 + k * 10 }],
                                ..Default::default()
                            })
                            .collect();
                        block = (block + 1) % blocks;
                        if block == 0 {
                            k += 1;
                        }
                        send(shared, &prompb::WriteRequest { timeseries: series, ..Default::default() })?;
                        samples.fetch_add(SAMPLES_PER_REQUEST as u64, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().expect("calibration threads do not panic")?;
        }
        Ok(())
    })?;
    Ok(samples.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

fn labels(metric: &str, series: &str, generation: u64) -> Vec<prompb::Label> {
    let label = |name: &str, value: &str| prompb::Label { name: name.into(), value: value.into() };
    vec![label("__name__", metric), label("generation", &generation.to_string()), label("series", series)]
}

/// Sends one request, retrying connection errors and 5xx until it is acknowledged; a 4xx is a
/// failure of the soak. Returns the latency of the attempt that succeeded.
fn send(shared: &Shared, req: &prompb::WriteRequest) -> anyhow::Result<Duration> {
    let body = snap::raw::Encoder::new().compress_vec(&req.encode_to_vec())?;
    loop {
        let mut r = shared.http.post(format!("{}/api/v1/write", shared.base)).body(body.clone());
        for (name, value) in Protocol::V1.headers() {
            r = r.header(name, value);
        }
        let started = Instant::now();
        match r.send() {
            Ok(resp) if resp.status().is_success() => return Ok(started.elapsed()),
            Ok(resp) if resp.status().is_client_error() => {
                bail!("remote write refused: {} {}", resp.status(), resp.text().unwrap_or_default())
            }
            // Down for a restart, or a retryable answer: as Prometheus, try again shortly.
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Writes every live series' samples up to now in rounds of about 200 ms, each round split into
/// requests of about 2,000 samples sent by two clients, the next round only once all are
/// acknowledged.
fn write_loop(shared: &Shared, interval_ms: i64) -> anyhow::Result<()> {
    let mut rng = SmallRng::seed_from_u64(7);
    // Acknowledged up to here; before the first round, every series from its first sample.
    let mut until: Option<i64> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        let round_end = now_ms();
        let series = shared.series.lock().unwrap().clone();
        let mut requests: Vec<prompb::WriteRequest> = Vec::new();
        let mut current = prompb::WriteRequest::default();
        let mut in_current = 0;
        let mut traces = Vec::new();
        for s in &series {
            // Multiples of the interval after the series' first sample, in (from, round_end].
            let from = until.unwrap_or(s.first_ms - 1);
            let first_k = ((from - s.first_ms).div_euclid(interval_ms) + 1).max(0);
            let last_k = (round_end - s.first_ms).div_euclid(interval_ms);
            if last_k < first_k {
                continue;
            }
            let samples: Vec<prompb::Sample> = (first_k..=last_k)
                .map(|k| prompb::Sample { value: k as f64, timestamp: s.first_ms + k * interval_ms })
                .collect();
            let mut exemplars = Vec::new();
            if s.id % 10 == 0 {
                let last = samples.last().expect("at least one sample");
                let trace = format!("{:032x}", rng.r#gen::<u128>());
                exemplars.push(prompb::Exemplar {
                    labels: vec![prompb::Label { name: "trace_id".into(), value: trace.clone() }],
                    value: last.value,
                    timestamp: last.timestamp,
                });
                traces.push((last.timestamp, trace));
            }
            in_current += samples.len();
            current.timeseries.push(prompb::TimeSeries {
                labels: labels(METRIC, &s.id.to_string(), s.generation),
                samples,
                exemplars,
                ..Default::default()
            });
            if in_current >= SAMPLES_PER_REQUEST {
                requests.push(std::mem::take(&mut current));
                in_current = 0;
            }
        }
        if !current.timeseries.is_empty() {
            requests.push(current);
        }
        let samples: usize = requests.iter().flat_map(|r| &r.timeseries).map(|t| t.samples.len()).sum();
        let latencies = std::thread::scope(|scope| -> anyhow::Result<Vec<f64>> {
            let chunk = requests.len().div_ceil(WRITERS).max(1);
            let handles: Vec<_> = requests
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || -> anyhow::Result<Vec<f64>> {
                        part.iter().map(|r| Ok(send(shared, r)?.as_secs_f64() * 1000.0)).collect()
                    })
                })
                .collect();
            let mut all = Vec::new();
            for h in handles {
                all.extend(h.join().expect("writers do not panic")?);
            }
            Ok(all)
        })?;
        shared.write_latencies.lock().unwrap().extend(latencies);
        shared.samples_acked.fetch_add(samples as u64, Ordering::Relaxed);
        shared.acked_until.store(round_end as u64, Ordering::Relaxed);
        {
            let mut known = shared.traces.lock().unwrap();
            known.extend(traces);
            let excess = known.len().saturating_sub(10_000);
            known.drain(..excess);
        }
        until = Some(round_end);
        let spent = (now_ms() - round_end).max(0) as u64;
        std::thread::sleep(Duration::from_millis(200u64.saturating_sub(spent)));
    }
    Ok(())
}

/// Replaces a tenth of the series by new ones that start with the next round.
fn churn(shared: &Shared, interval_ms: i64) {
    let next = now_ms() + 1_000;
    let mut series = shared.series.lock().unwrap();
    let generation = series.iter().map(|s| s.generation).max().unwrap_or(0) + 1;
    for s in series.iter_mut().filter(|s| s.id % 10 == (generation % 10) as usize) {
        *s = SoakSeries { id: s.id, generation, first_ms: next - next % interval_ms + interval_ms };
    }
}

/// OTLP/HTTP JSON every second: a gauge and a histogram with an exemplar.
fn otlp_loop(shared: &Shared) -> anyhow::Result<()> {
    let mut i = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        let t = (now_ms() as u128 * 1_000_000).to_string();
        let body = serde_json::json!({"resourceMetrics": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "soak"}}]},
            "scopeMetrics": [{"metrics": [
                {"name": "soak_otlp_queue", "gauge": {"dataPoints": [{"timeUnixNano": t, "asInt": (i % 50).to_string()}]}},
                {"name": "soak_otlp_latency", "unit": "s", "histogram": {"aggregationTemporality": 2, "dataPoints": [{
                    "startTimeUnixNano": "1700000000000000000", "timeUnixNano": t,
                    "count": (i * 3).to_string(), "sum": i as f64 * 0.75,
                    "bucketCounts": [i.to_string(), (i * 2).to_string()], "explicitBounds": [0.25],
                    "exemplars": [{"timeUnixNano": t, "asDouble": 0.2, "traceId": format!("{:032x}", i + 1), "spanId": "00f067aa0ba902b7"}],
                }]}},
            ]}],
        }]});
        let r = shared
            .http
            .post(format!("{}/otlp/v1/metrics", shared.base))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send();
        if let Ok(resp) = r {
            if resp.status().is_client_error() {
                shared.failures.lock().unwrap().push(format!("OTLP refused: {}", resp.status()));
            }
        }
        i += 1;
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok(())
}

/// One query a second, rotating through range queries, exemplars, trace lookups and series.
fn query_loop(shared: &Shared) -> anyhow::Result<()> {
    let mut rng = SmallRng::seed_from_u64(11);
    let mut i = 0usize;
    // Every query reads the last five minutes at most, so that its cost is the same from the
    // fifth minute on and a later slot's latency compares with the first's.
    while !shared.stop.load(Ordering::Relaxed) {
        let end = now_ms() / 1000;
        let id = rng.gen_range(0..SERIES);
        let path = match i % 5 {
            // About a hundred series: the sum over all of them would read every sample written.
            0 => format!(
                "/api/v1/query_range?query=sum(rate({METRIC}{{series=~\"1..\"}}[1m]))&start={}&end={end}&step=15",
                end - 240
            ),
            1 => format!(
                "/api/v1/query_range?query=rate({METRIC}{{series=\"{id}\"}}[1m])&start={}&end={end}&step=15",
                end - 240
            ),
            2 => format!("/api/v1/query_exemplars?query={METRIC}{{series=~\"1.0\"}}&start={}&end={end}", end - 300),
            3 => match shared.traces.lock().unwrap().last() {
                Some((_, trace)) => format!("/api/v1/exemplars/trace/{trace}"),
                None => format!("/api/v1/series?match[]={METRIC}{{series=\"{id}\"}}"),
            },
            _ => format!("/api/v1/series?match[]={METRIC}{{series=\"{id}\"}}&start={}&end={end}", end - 300),
        };
        let started = Instant::now();
        if let Ok(resp) = shared.http.get(format!("{}{path}", shared.base)).send() {
            if resp.status().is_success() && resp.bytes().is_ok() {
                shared.query_latencies.lock().unwrap().push(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
        i += 1;
        std::thread::sleep(Duration::from_secs(1).saturating_sub(started.elapsed()));
    }
    Ok(())
}

fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * q).round() as usize]
}

fn sample_process(system: &System, started: Instant, samples_per_s: f64, shared: &Shared) -> anyhow::Result<Record> {
    let pid = system.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let threads = status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse().ok());
    let open_files = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
    let mut writes = std::mem::take(&mut *shared.write_latencies.lock().unwrap());
    let mut queries = std::mem::take(&mut *shared.query_latencies.lock().unwrap());
    Ok(Record {
        minute: started.elapsed().as_secs_f64() / 60.0,
        rss: system.rss_bytes().unwrap_or(0),
        disk: system.data_bytes(),
        wal: dir_bytes(&system.data_dir().join("wal")),
        open_files,
        threads: threads.unwrap_or(0),
        samples_per_s,
        write_p50_ms: percentile(&mut writes, 0.5),
        write_p99_ms: percentile(&mut writes, 0.99),
        query_p50_ms: percentile(&mut queries, 0.5),
        query_p99_ms: percentile(&mut queries, 0.99),
    })
}

/// Nothing acknowledged is lost: sampled live series hold every sample of the last `window`
/// acknowledged milliseconds, and the trace of an exemplar acknowledged a minute ago is found.
fn check(shared: &Shared, interval_ms: i64, window: i64, when: &str) -> anyhow::Result<()> {
    // Let the writers catch up after a restart, so the checked range is acknowledged.
    let wanted = now_ms();
    let deadline = Instant::now() + Duration::from_secs(120);
    while (shared.acked_until.load(Ordering::Relaxed) as i64) < wanted {
        anyhow::ensure!(Instant::now() < deadline, "writes not acknowledged for two minutes {when}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let at = shared.acked_until.load(Ordering::Relaxed) as i64;
    let series = shared.series.lock().unwrap().clone();
    let mut rng = SmallRng::seed_from_u64(at as u64);
    let mut checked = 0;
    for _ in 0..50 {
        let s = &series[rng.gen_range(0..series.len())];
        if s.first_ms > at - window {
            continue;
        }
        let expected = (at - s.first_ms).div_euclid(interval_ms) - (at - window - s.first_ms).div_euclid(interval_ms);
        let q = format!("count_over_time({METRIC}{{series=\"{}\",generation=\"{}\"}}[{window}ms])", s.id, s.generation);
        let url = format!("{}/api/v1/query?query={}&time={}", shared.base, encode(&q), at as f64 / 1000.0);
        let body: serde_json::Value = serde_json::from_str(&shared.http.get(url).send()?.text()?)?;
        let got = body["data"]["result"][0]["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        if got as i64 != expected {
            let lost = format!("series {} generation {}: {got} samples of {expected} {when}", s.id, s.generation);
            shared.failures.lock().unwrap().push(lost);
        }
        checked += 1;
    }
    let trace = shared.traces.lock().unwrap().iter().rev().find(|(t, _)| *t < at - 60_000).cloned();
    if let Some((_, trace)) = trace {
        let url = format!("{}/api/v1/exemplars/trace/{trace}", shared.base);
        let body: serde_json::Value = serde_json::from_str(&shared.http.get(url).send()?.text()?)?;
        if body["data"].as_array().is_none_or(|a| a.is_empty()) {
            shared.failures.lock().unwrap().push(format!("trace {trace} not found {when}"));
        }
    }
    println!("soak: checked {checked} series and a trace {when}");
    Ok(())
}

/// The summary table by slot, and the verdict.
fn summary(records: &[Record], restarts: &[Duration], shared: &Shared, o: &Options, log: &str) -> anyhow::Result<()> {
    let slot_of = |r: &Record| (r.minute / o.period_minutes as f64) as usize;
    let slots = records.last().map_or(0, |r| slot_of(r) + 1);
    println!(
        "\n| minutes | RSS MiB (max) | disk MiB (max) | WAL MiB (max) | open files (max) | threads (max) | samples/s | write p50 / p99 ms | query p50 / p99 ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut by_slot = Vec::new();
    for slot in 0..slots {
        let rs: Vec<&Record> = records.iter().filter(|r| slot_of(r) == slot).collect();
        let max = |f: &dyn Fn(&Record) -> f64| rs.iter().map(|r| f(r)).fold(0.0, f64::max);
        let mean = |f: &dyn Fn(&Record) -> f64| {
            let v: Vec<f64> = rs.iter().map(|r| f(r)).filter(|v| v.is_finite()).collect();
            v.iter().sum::<f64>() / v.len().max(1) as f64
        };
        let row = (
            max(&|r| r.rss as f64),
            max(&|r| r.disk as f64),
            mean(&|r| r.write_p50_ms),
            mean(&|r| r.write_p99_ms),
            mean(&|r| r.query_p50_ms),
            mean(&|r| r.query_p99_ms),
        );
        println!(
            "| {}–{} | {:.1} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0} | {:.1} / {:.1} | {:.1} / {:.1} |",
            slot as u64 * o.period_minutes,
            (slot as u64 + 1) * o.period_minutes,
            row.0 / 1048576.0,
            row.1 / 1048576.0,
            max(&|r| r.wal as f64) / 1048576.0,
            max(&|r| r.open_files as f64),
            max(&|r| r.threads as f64),
            mean(&|r| r.samples_per_s),
            row.2,
            row.3,
            row.4,
            row.5
        );
        by_slot.push(row);
    }
    let restart_s: Vec<String> = restarts.iter().map(|d| format!("{:.2}", d.as_secs_f64())).collect();
    println!("\nrestarts after kill -9, s to ready: {}", restart_s.join(", "));
    println!("acknowledged samples: {}", shared.samples_acked.load(Ordering::Relaxed));
    let mut failures = shared.failures.lock().unwrap().clone();
    let panics = log.lines().filter(|l| l.contains("panicked")).count();
    if panics > 0 {
        failures.push(format!("amber logged {panics} panics"));
    }
    // Growth: the last third against the second, once retention has started deleting.
    if slots >= 3 {
        let third = slots / 3;
        let peak = |range: std::ops::Range<usize>, rss: bool| {
            by_slot[range].iter().map(|r| if rss { r.0 } else { r.1 }).fold(0.0, f64::max)
        };
        for (what, rss) in [("RSS", true), ("disk", false)] {
            let (middle, last) = (peak(third..2 * third, rss), peak(2 * third..slots, rss));
            if last > 1.5 * middle {
                failures.push(format!(
                    "{what} grew from {middle:.0} to {last:.0} bytes between the middle and last thirds"
                ));
            }
        }
        let first = by_slot[0];
        for (slot, row) in by_slot.iter().enumerate().skip(1) {
            for (what, a, b) in [
                ("write p50", first.2, row.2),
                ("write p99", first.3, row.3),
                ("query p50", first.4, row.4),
                ("query p99", first.5, row.5),
            ] {
                if b > 2.0 * a {
                    failures
                        .push(format!("{what} {b:.1} ms in slot {slot}, more than twice the first slot's {a:.1} ms"));
                }
            }
        }
    }
    if failures.is_empty() {
        println!("soak: passed: nothing lost, nothing grew without bound, no latency drift");
        Ok(())
    } else {
        for f in &failures {
            println!("soak: FAILED: {f}");
        }
        bail!("the soak failed {} checks", failures.len())
    }
}
