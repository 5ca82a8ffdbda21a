//! The generated workload: node-exporter-like targets scraped every 15 s, with counters,
//! gauges and a classic histogram per handler carrying about one exemplar per scrape, encoded
//! once as remote-write 1.0 payloads so that every system receives the very same bytes (and, when
//! asked, the same requests once more as remote write 2.0).

use amber_api::prompb;
use prost::Message;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

pub const SCRAPE_INTERVAL_MS: i64 = 15_000;
/// Prometheus's default `max_samples_per_send`.
const SAMPLES_PER_REQUEST: usize = 2000;
const CPU_MODES: [&str; 8] = ["idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user"];
const MEMORY: [&str; 10] =
    ["Active", "Buffers", "Cached", "Dirty", "Inactive", "Mapped", "MemAvailable", "MemFree", "Slab", "SwapFree"];
const BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const HANDLERS: [&str; 2] = ["/api/orders", "/api/users"];

/// How a series' value moves from one scrape to the next.
#[derive(Clone, Copy)]
enum Kind {
    /// CPU seconds: grows by a fraction of the interval, two decimals.
    CpuCounter {
        share: f64,
    },
    /// Bytes: grows by a random whole number.
    ByteCounter,
    /// Memory bytes: a random walk in pages.
    PageGauge,
    /// Load average: a two-decimal random walk.
    LoadGauge,
    Constant,
    /// Part of a histogram, filled in by [`Histogram`].
    Bucket {
        handler: usize,
        le: usize,
    },
    Sum {
        handler: usize,
    },
    Count {
        handler: usize,
    },
}

struct Series {
    labels: Vec<prompb::Label>,
    kind: Kind,
    value: f64,
}

/// The cumulative state of one target's histogram for one handler.
#[derive(Default, Clone)]
struct Histogram {
    /// Cumulative counts per bucket, `+Inf` last.
    buckets: [f64; BUCKETS.len() + 1],
    sum: f64,
    count: f64,
}

/// The remote write version a system is sent the workload in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    V1,
    V2,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::V1 => "1.0",
            Protocol::V2 => "2.0",
        }
    }

    /// The headers a sender of this version sends with a body.
    pub fn headers(self) -> [(&'static str, &'static str); 3] {
        match self {
            Protocol::V1 => [
                ("Content-Encoding", "snappy"),
                ("Content-Type", "application/x-protobuf"),
                ("X-Prometheus-Remote-Write-Version", "0.1.0"),
            ],
            Protocol::V2 => [
                ("Content-Encoding", "snappy"),
                ("Content-Type", "application/x-protobuf;proto=io.prometheus.write.v2.Request"),
                ("X-Prometheus-Remote-Write-Version", "2.0.0"),
            ],
        }
    }
}

pub struct Workload {
    pub series: usize,
    /// Samples sent: float samples, or native histogram samples in a native-histogram workload.
    pub samples: u64,
    pub exemplars: u64,
    pub scrapes: usize,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Per client, the snappy-compressed requests it sends, in order. Each client owns whole
    /// targets, so every series' samples arrive in time order.
    pub payloads: Vec<Vec<Vec<u8>>>,
    /// The same requests as remote write 2.0, once [`Workload::add_v2_payloads`] made them.
    pub payloads_v2: Vec<Vec<Vec<u8>>>,
    /// The trace id of the first exemplar written, for trace lookups (none in a workload so small
    /// that it has no exemplar).
    pub first_trace_id: Option<String>,
    /// What a sample is here, for the table: "sample" or "native histogram sample".
    pub sample_kind: &'static str,
    /// The range queries timed on every system (name, PromQL).
    pub queries: &'static [(&'static str, &'static str)],
    /// The metric whose exemplars `query_exemplars` reads.
    pub exemplar_metric: &'static str,
}

/// The range queries of the node-exporter workload, over the whole ingested window at a 60 s step.
pub const QUERIES: [(&str, &str); 4] = [
    ("rate", "rate(node_cpu_seconds_total[5m])"),
    ("sum by rate", "sum by (mode) (rate(node_cpu_seconds_total[5m]))"),
    ("histogram_quantile", "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))"),
    ("selector", "node_memory_MemFree_bytes"),
];

/// The range queries of the native-histogram workload.
pub const NATIVE_QUERIES: [(&str, &str); 3] = [
    ("histogram_quantile", "histogram_quantile(0.99, sum by (handler) (rate(http_request_duration_seconds[5m])))"),
    ("histogram_count rate", "histogram_count(rate(http_request_duration_seconds[5m]))"),
    ("selector", "http_request_duration_seconds{handler=\"/api/orders\"}"),
];

fn label(name: &str, value: &str) -> prompb::Label {
    prompb::Label { name: name.into(), value: value.into() }
}

/// The series of one target, labels sorted by name as remote write requires.
fn target_series(target: usize) -> Vec<Series> {
    let instance = format!("10.{}.{}.{}:9100", target / 65536, (target / 256) % 256, target % 256);
    let base = |name: &str, extra: &[(&str, &str)]| {
        let mut labels = vec![label("__name__", name)];
        labels.extend(extra.iter().map(|(n, v)| label(n, v)));
        labels.push(label("instance", &instance));
        labels.push(label("job", "node"));
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        labels
    };
    let mut out = Vec::new();
    for cpu in 0..4 {
        for mode in CPU_MODES {
            let share = if mode == "idle" { 0.8 } else { 0.2 / 7.0 };
            let labels = base("node_cpu_seconds_total", &[("cpu", &cpu.to_string()), ("mode", mode)]);
            out.push(Series { labels, kind: Kind::CpuCounter { share }, value: 1000.0 });
        }
    }
    for m in MEMORY {
        out.push(Series { labels: base(&format!("node_memory_{m}_bytes"), &[]), kind: Kind::PageGauge, value: 4e9 });
    }
    for dir in ["receive", "transmit"] {
        for device in ["eth0", "lo"] {
            let labels = base(&format!("node_network_{dir}_bytes_total"), &[("device", device)]);
            out.push(Series { labels, kind: Kind::ByteCounter, value: 1e6 });
        }
    }
    for load in ["node_load1", "node_load5", "node_load15"] {
        out.push(Series { labels: base(load, &[]), kind: Kind::LoadGauge, value: 1.0 });
    }
    for (handler, path) in HANDLERS.iter().enumerate() {
        let name = "http_request_duration_seconds";
        for le in 0..=BUCKETS.len() {
            let bound = BUCKETS.get(le).map_or("+Inf".to_string(), |b| b.to_string());
            let labels = base(&format!("{name}_bucket"), &[("handler", path), ("le", &bound)]);
            out.push(Series { labels, kind: Kind::Bucket { handler, le }, value: 0.0 });
        }
        out.push(Series {
            labels: base(&format!("{name}_sum"), &[("handler", path)]),
            kind: Kind::Sum { handler },
            value: 0.0,
        });
        out.push(Series {
            labels: base(&format!("{name}_count"), &[("handler", path)]),
            kind: Kind::Count { handler },
            value: 0.0,
        });
    }
    out.push(Series { labels: base("up", &[]), kind: Kind::Constant, value: 1.0 });
    out
}

/// Series per target (node exporter plus one instrumented service).
pub fn series_per_target() -> usize {
    target_series(0).len()
}

fn hex(rng: &mut SmallRng, bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rng.r#gen::<u8>())).collect()
}

/// An exemplar's labels: a random span id and trace id, as a tracer makes them; the first trace id
/// made is kept in `first`.
fn trace_labels(rng: &mut SmallRng, first: &mut Option<String>) -> Vec<prompb::Label> {
    let span_id = hex(rng, 8);
    let trace_id = hex(rng, 16);
    first.get_or_insert_with(|| trace_id.clone());
    vec![label("span_id", &span_id), label("trace_id", &trace_id)]
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Appends one scrape's requests to each client's payloads. Client c owns targets c,
/// c + clients, …, so every series' samples arrive in time order; a request groups whole targets.
fn add_requests(
    payloads: &mut [Vec<Vec<u8>>],
    mut scraped: Vec<Vec<prompb::TimeSeries>>,
    targets_per_request: usize,
    encoder: &mut snap::raw::Encoder,
) {
    let (clients, targets) = (payloads.len(), scraped.len());
    for (client, client_payloads) in payloads.iter_mut().enumerate() {
        let owned: Vec<usize> = (client..targets).step_by(clients).collect();
        for group in owned.chunks(targets_per_request) {
            let timeseries = group.iter().flat_map(|&t| std::mem::take(&mut scraped[t])).collect();
            let req = prompb::WriteRequest { timeseries, metadata: Vec::new() };
            client_payloads.push(encoder.compress_vec(&req.encode_to_vec()).expect("snappy compresses"));
        }
    }
}

/// Generates `targets` targets × `scrapes` scrapes, the last one at `last_scrape_ms` (rounded
/// down to the scrape interval), split over `clients`.
pub fn generate(targets: usize, scrapes: usize, clients: usize, last_scrape_ms: i64) -> Workload {
    let mut rng = SmallRng::seed_from_u64(42);
    let end_ms = last_scrape_ms / SCRAPE_INTERVAL_MS * SCRAPE_INTERVAL_MS;
    let start_ms = end_ms - (scrapes as i64 - 1) * SCRAPE_INTERVAL_MS;
    let mut state: Vec<Vec<Series>> = (0..targets).map(target_series).collect();
    let mut histograms = vec![vec![Histogram::default(); HANDLERS.len()]; targets];
    let per_target = series_per_target();
    let targets_per_request = (SAMPLES_PER_REQUEST / per_target).max(1);
    let mut payloads = vec![Vec::new(); clients];
    let (mut samples, mut exemplars) = (0u64, 0u64);
    let mut first_trace_id = None;
    let encoder = &mut snap::raw::Encoder::new();
    for scrape in 0..scrapes {
        let ts = start_ms + scrape as i64 * SCRAPE_INTERVAL_MS;
        let mut scraped: Vec<Vec<prompb::TimeSeries>> = Vec::with_capacity(targets);
        for (target, series) in state.iter_mut().enumerate() {
            // Observations of this interval, one of which per handler becomes the exemplar.
            let mut exemplar_of: Vec<Option<(usize, prompb::Exemplar)>> = Vec::new();
            for h in histograms[target].iter_mut() {
                let n = rng.gen_range(0..30);
                let mut picked = None;
                for i in 0..n {
                    let latency = -0.1 * (1.0 - rng.r#gen::<f64>()).ln();
                    for (b, bound) in BUCKETS.iter().enumerate() {
                        if latency <= *bound {
                            h.buckets[b] += 1.0;
                        }
                    }
                    h.buckets[BUCKETS.len()] += 1.0;
                    h.sum += latency;
                    h.count += 1.0;
                    if i == 0 {
                        let le = BUCKETS.iter().position(|b| latency <= *b).unwrap_or(BUCKETS.len());
                        let ex = prompb::Exemplar {
                            labels: trace_labels(&mut rng, &mut first_trace_id),
                            value: latency,
                            timestamp: ts - rng.gen_range(1..SCRAPE_INTERVAL_MS),
                        };
                        picked = Some((le, ex));
                    }
                }
                exemplar_of.push(picked);
            }
            let mut out = Vec::with_capacity(series.len());
            for s in series.iter_mut() {
                s.value = match s.kind {
                    Kind::CpuCounter { share } => round2(s.value + 15.0 * share * rng.gen_range(0.5..1.5)),
                    Kind::ByteCounter => s.value + rng.gen_range(0..200_000) as f64,
                    Kind::PageGauge => s.value + 4096.0 * rng.gen_range(-100..=100) as f64,
                    Kind::LoadGauge => round2((s.value + rng.gen_range(-0.2..0.2)).max(0.0)),
                    Kind::Constant => s.value,
                    Kind::Bucket { handler, le } => histograms[target][handler].buckets[le],
                    Kind::Sum { handler } => histograms[target][handler].sum,
                    Kind::Count { handler } => histograms[target][handler].count,
                };
                let exemplars_here = match s.kind {
                    Kind::Bucket { handler, le } => match &exemplar_of[handler] {
                        Some((at, ex)) if *at == le => vec![ex.clone()],
                        _ => Vec::new(),
                    },
                    _ => Vec::new(),
                };
                samples += 1;
                exemplars += exemplars_here.len() as u64;
                out.push(prompb::TimeSeries {
                    labels: s.labels.clone(),
                    samples: vec![prompb::Sample { value: s.value, timestamp: ts }],
                    exemplars: exemplars_here,
                    histograms: Vec::new(),
                });
            }
            scraped.push(out);
        }
        add_requests(&mut payloads, scraped, targets_per_request, encoder);
    }
    Workload {
        series: targets * per_target,
        samples,
        exemplars,
        scrapes,
        start_ms,
        end_ms,
        payloads,
        payloads_v2: Vec::new(),
        first_trace_id,
        sample_kind: "sample",
        queries: &QUERIES,
        exemplar_metric: "http_request_duration_seconds_bucket",
    }
}

impl Workload {
    /// Every 1.0 request again as a 2.0 sender sends the same data (symbols interned per
    /// request, as Prometheus's 2.0 sender does), in the same order per client.
    pub fn add_v2_payloads(&mut self) {
        let encoder = &mut snap::raw::Encoder::new();
        self.payloads_v2 = self
            .payloads
            .iter()
            .map(|client| {
                client
                    .iter()
                    .map(|p| {
                        let req = amber_api::remote_write::decode(p, usize::MAX).expect("the workload decodes");
                        let v2 = amber_api::remote_write::to_v2(&req).encode_to_vec();
                        encoder.compress_vec(&v2).expect("snappy compresses")
                    })
                    .collect()
            })
            .collect();
    }

    /// Each client's requests in `protocol`.
    pub fn payloads(&self, protocol: Protocol) -> &[Vec<Vec<u8>>] {
        match protocol {
            Protocol::V1 => &self.payloads,
            Protocol::V2 => &self.payloads_v2,
        }
    }
}

/// Native histogram families per target, each observed per handler.
const NATIVE_FAMILIES: [(&str, f64); 4] = [
    ("http_request_duration_seconds", 0.1),
    ("http_request_size_bytes", 2000.0),
    ("http_response_size_bytes", 20000.0),
    ("db_query_duration_seconds", 0.005),
];
/// The schema instrumented services use by default (client_golang's factor 1.1 gives 3).
const NATIVE_SCHEMA: i32 = 3;

/// Native histogram series per target.
pub fn native_series_per_target() -> usize {
    NATIVE_FAMILIES.len() * HANDLERS.len()
}

/// One native histogram series' cumulative state: count per bucket index of schema 3.
#[derive(Default)]
struct NativeState {
    buckets: std::collections::BTreeMap<i32, u64>,
    zero: u64,
    count: u64,
    sum: f64,
}

impl NativeState {
    fn observe(&mut self, v: f64) {
        self.count += 1;
        self.sum += v;
        if v <= 1e-128 {
            self.zero += 1;
            return;
        }
        let index = (v.log2() * f64::from(1 << NATIVE_SCHEMA)).ceil() as i32;
        *self.buckets.entry(index).or_default() += 1;
    }

    /// The remote-write form: integer counts as deltas, spans joining runs separated by at most
    /// two empty buckets (as client_golang does).
    fn to_prompb(&self, ts: i64) -> prompb::Histogram {
        let mut spans: Vec<prompb::BucketSpan> = Vec::new();
        let mut deltas = Vec::new();
        let (mut prev_index, mut prev_count) = (None::<i32>, 0i64);
        for (&index, &count) in &self.buckets {
            match prev_index {
                Some(p) if index - p <= 3 => {
                    for _ in p + 1..index {
                        deltas.push(-prev_count);
                        prev_count = 0;
                    }
                    spans.last_mut().expect("a span is open").length += (index - p) as u32;
                }
                Some(p) => spans.push(prompb::BucketSpan { offset: index - p - 1, length: 1 }),
                None => spans.push(prompb::BucketSpan { offset: index, length: 1 }),
            }
            deltas.push(count as i64 - prev_count);
            prev_count = count as i64;
            prev_index = Some(index);
        }
        prompb::Histogram {
            count: Some(prompb::histogram::Count::CountInt(self.count)),
            sum: self.sum,
            schema: NATIVE_SCHEMA,
            zero_threshold: 1e-128,
            zero_count: Some(prompb::histogram::ZeroCount::ZeroCountInt(self.zero)),
            positive_spans: spans,
            positive_deltas: deltas,
            timestamp: ts,
            ..Default::default()
        }
    }
}

/// Like [`generate`], with native histograms instead of node-exporter series: per target, four
/// histogram families × two handlers, schema 3, a few dozen observations per scrape drawn from
/// exponential distributions, one exemplar per series and scrape.
pub fn generate_native_histograms(targets: usize, scrapes: usize, clients: usize, last_scrape_ms: i64) -> Workload {
    let mut rng = SmallRng::seed_from_u64(42);
    let end_ms = last_scrape_ms / SCRAPE_INTERVAL_MS * SCRAPE_INTERVAL_MS;
    let start_ms = end_ms - (scrapes as i64 - 1) * SCRAPE_INTERVAL_MS;
    let per_target = native_series_per_target();
    let labels: Vec<Vec<Vec<prompb::Label>>> = (0..targets)
        .map(|target| {
            let instance = format!("10.{}.{}.{}:8080", target / 65536, (target / 256) % 256, target % 256);
            NATIVE_FAMILIES
                .iter()
                .flat_map(|(name, _)| HANDLERS.iter().map(move |h| (name, h)))
                .map(|(name, handler)| {
                    vec![
                        label("__name__", name),
                        label("handler", handler),
                        label("instance", &instance),
                        label("job", "node"),
                    ]
                })
                .collect()
        })
        .collect();
    let mut state: Vec<Vec<NativeState>> =
        (0..targets).map(|_| (0..per_target).map(|_| NativeState::default()).collect()).collect();
    // Prometheus's default of 2000 samples per request counts a histogram as one.
    let targets_per_request = (SAMPLES_PER_REQUEST / per_target).max(1);
    let mut payloads = vec![Vec::new(); clients];
    let (mut samples, mut exemplars) = (0u64, 0u64);
    let mut first_trace_id = None;
    let encoder = &mut snap::raw::Encoder::new();
    for scrape in 0..scrapes {
        let ts = start_ms + scrape as i64 * SCRAPE_INTERVAL_MS;
        let mut scraped: Vec<Vec<prompb::TimeSeries>> = Vec::with_capacity(targets);
        for target in 0..targets {
            let mut out = Vec::with_capacity(per_target);
            for (i, series) in state[target].iter_mut().enumerate() {
                let mean = NATIVE_FAMILIES[i / HANDLERS.len()].1;
                let mut exemplar = Vec::new();
                for k in 0..rng.gen_range(1..40) {
                    let v = -mean * (1.0 - rng.r#gen::<f64>()).ln();
                    series.observe(v);
                    if k == 0 {
                        exemplar.push(prompb::Exemplar {
                            labels: trace_labels(&mut rng, &mut first_trace_id),
                            value: v,
                            timestamp: ts - rng.gen_range(1..SCRAPE_INTERVAL_MS),
                        });
                    }
                }
                samples += 1;
                exemplars += exemplar.len() as u64;
                out.push(prompb::TimeSeries {
                    labels: labels[target][i].clone(),
                    samples: Vec::new(),
                    exemplars: exemplar,
                    histograms: vec![series.to_prompb(ts)],
                });
            }
            scraped.push(out);
        }
        add_requests(&mut payloads, scraped, targets_per_request, encoder);
    }
    Workload {
        series: targets * per_target,
        samples,
        exemplars,
        scrapes,
        start_ms,
        end_ms,
        payloads,
        payloads_v2: Vec::new(),
        first_trace_id,
        sample_kind: "native histogram sample",
        queries: &NATIVE_QUERIES,
        exemplar_metric: "http_request_duration_seconds",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The remote-write form spells the same buckets as the state: spans cover the deltas, and
    /// summing the deltas gives each bucket's count (zero for the filled gaps).
    #[test]
    fn native_histograms_are_encoded_as_spans_and_deltas() {
        let mut s = NativeState::default();
        for v in [0.0, 1.0, 1.0, 1.1, 1.5, 3.0, 100.0] {
            s.observe(v);
        }
        let h = s.to_prompb(0);
        assert_eq!(h.positive_spans.iter().map(|s| s.length as usize).sum::<usize>(), h.positive_deltas.len());
        let mut decoded = std::collections::BTreeMap::new();
        let (mut index, mut count) = (0, 0i64);
        let mut deltas = h.positive_deltas.iter();
        for (n, span) in h.positive_spans.iter().enumerate() {
            index = if n == 0 { span.offset } else { index + span.offset };
            for _ in 0..span.length {
                count += deltas.next().unwrap();
                if count > 0 {
                    decoded.insert(index, count as u64);
                }
                index += 1;
            }
        }
        assert_eq!(decoded, s.buckets);
        assert_eq!((s.zero, s.count), (1, 7));
        // 1.0 is the upper bound of bucket 0, 100 falls in bucket ceil(log2(100) * 8) = 54.
        assert_eq!(s.buckets.get(&0), Some(&2));
        assert_eq!(s.buckets.get(&54), Some(&1));
    }
}
