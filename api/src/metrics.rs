//! Amber's own metrics, served at `/metrics`: in OpenMetrics text to scrapers that accept it (as
//! Prometheus does), else in the Prometheus text format 0.0.4 that `promtool check metrics` and
//! older clients read.

use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IngesterOutcome {
    ingester: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Limit {
    limit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FamilyLabels {
    tenant: String,
    family: String,
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Code {
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ColumnFamily {
    cf: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Operation {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Direction {
    direction: &'static str,
}

pub struct Metrics {
    registry: Registry,
    samples_ingested: Counter,
    histograms_ingested: Counter,
    exemplars_ingested: Counter,
    series_created: Counter,
    samples_rejected: Family<Reason, Counter>,
    histograms_rejected: Family<Reason, Counter>,
    exemplars_rejected: Family<Reason, Counter>,
    write_requests: Family<Code, Counter>,
    limits_exceeded: Family<Limit, Counter>,
    ingester_writes: Family<IngesterOutcome, Counter>,
    family_samples: Family<FamilyLabels, Gauge>,
    family_exemplars: Family<FamilyLabels, Gauge>,
    family_last_exemplar: Family<FamilyLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    write_duration: Histogram,
    query_duration: Family<Kind, Histogram, fn() -> Histogram>,
    series: Gauge,
    sst_bytes: Family<ColumnFamily, Gauge>,
    memtable_bytes: Family<ColumnFamily, Gauge>,
    head_series: Gauge,
    head_samples: Gauge,
    head_histograms: Gauge,
    head_exemplars: Gauge,
    head_chunk_bytes: Gauge,
    wal_bytes: Gauge,
    seal_passes: Counter,
    seal_duration: Histogram,
    queries_in_progress: Gauge,
    upload_pending_windows: Gauge,
    upload_block_files: Counter,
    upload_bytes: Counter,
    upload_failures: Counter,
    local_horizon: Gauge,
    object_store_requests: Family<Operation, Counter>,
    object_store_failures: Counter,
    object_store_bytes: Family<Direction, Counter>,
    bucket_cache_hits: Counter,
    bucket_cache_misses: Counter,
    bucket_cache_bytes: Gauge,
    compaction_windows_merged: Counter,
    compaction_block_files: Counter,
    compaction_bytes: Counter,
    compaction_windows_expired: Counter,
    compaction_objects_deleted: Counter,
    compaction_failures: Counter,
    compactor_lease_held: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("amber");
        let m = Metrics {
            samples_ingested: Counter::default(),
            histograms_ingested: Counter::default(),
            exemplars_ingested: Counter::default(),
            series_created: Counter::default(),
            samples_rejected: Family::default(),
            histograms_rejected: Family::default(),
            exemplars_rejected: Family::default(),
            write_requests: Family::default(),
            limits_exceeded: Family::default(),
            ingester_writes: Family::default(),
            family_samples: Family::default(),
            family_exemplars: Family::default(),
            family_last_exemplar: Family::default(),
            write_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            query_duration: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 16))),
            series: Gauge::default(),
            sst_bytes: Family::default(),
            memtable_bytes: Family::default(),
            head_series: Gauge::default(),
            head_samples: Gauge::default(),
            head_histograms: Gauge::default(),
            head_exemplars: Gauge::default(),
            head_chunk_bytes: Gauge::default(),
            wal_bytes: Gauge::default(),
            seal_passes: Counter::default(),
            seal_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            queries_in_progress: Gauge::default(),
            upload_pending_windows: Gauge::default(),
            upload_block_files: Counter::default(),
            upload_bytes: Counter::default(),
            upload_failures: Counter::default(),
            local_horizon: Gauge::default(),
            object_store_requests: Family::default(),
            object_store_failures: Counter::default(),
            object_store_bytes: Family::default(),
            bucket_cache_hits: Counter::default(),
            bucket_cache_misses: Counter::default(),
            bucket_cache_bytes: Gauge::default(),
            compaction_windows_merged: Counter::default(),
            compaction_block_files: Counter::default(),
            compaction_bytes: Counter::default(),
            compaction_windows_expired: Counter::default(),
            compaction_objects_deleted: Counter::default(),
            compaction_failures: Counter::default(),
            compactor_lease_held: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("samples_ingested", "Samples written durably", m.samples_ingested.clone());
        registry.register(
            "histograms_ingested",
            "Native histogram samples written durably",
            m.histograms_ingested.clone(),
        );
        registry.register("exemplars_ingested", "Exemplars written durably", m.exemplars_ingested.clone());
        registry.register("series_created", "Series created", m.series_created.clone());
        registry.register("samples_rejected", "Samples refused, by reason", m.samples_rejected.clone());
        registry.register(
            "histograms_rejected",
            "Native histogram samples refused, by reason",
            m.histograms_rejected.clone(),
        );
        registry.register("exemplars_rejected", "Exemplars refused, by reason", m.exemplars_rejected.clone());
        registry.register("remote_write_requests", "Remote-write requests, by status code", m.write_requests.clone());
        registry.register(
            "limits_exceeded",
            "Requests refused (or series, for max_series_per_tenant) because a limit was reached, by limit",
            m.limits_exceeded.clone(),
        );
        registry.register(
            "distributor_ingester_writes",
            "Writes a distributor sent on to each ingester, by outcome: durable there (2xx or 400) or missed",
            m.ingester_writes.clone(),
        );
        registry.register(
            "remote_write_duration_seconds",
            "Time to answer a remote-write request",
            m.write_duration.clone(),
        );
        registry.register(
            "query_duration_seconds",
            "Time to answer a PromQL query, by kind (instant, range)",
            m.query_duration.clone(),
        );
        registry.register("series", "Series in the index", m.series.clone());
        registry.register(
            "family_samples_arrived",
            "Samples that arrived since start, by tenant, metric family and source (remote_write, otlp)",
            m.family_samples.clone(),
        );
        registry.register(
            "family_exemplars_arrived",
            "Exemplars that arrived since start, by tenant, metric family and source",
            m.family_exemplars.clone(),
        );
        registry.register(
            "family_last_exemplar_timestamp_seconds",
            "Timestamp of the newest exemplar that arrived, by tenant, metric family and source",
            m.family_last_exemplar.clone(),
        );
        registry.register("rocksdb_sst_bytes", "Bytes of RocksDB SST files, by column family", m.sst_bytes.clone());
        registry.register(
            "rocksdb_memtable_bytes",
            "Bytes of RocksDB memtables, by column family",
            m.memtable_bytes.clone(),
        );
        registry.register(
            "head_series",
            "Series with data or write state in the in-memory head",
            m.head_series.clone(),
        );
        registry.register("head_samples", "Samples in the in-memory head, not yet sealed", m.head_samples.clone());
        registry.register(
            "head_histograms",
            "Native histogram samples in the in-memory head, not yet sealed",
            m.head_histograms.clone(),
        );
        registry.register(
            "head_exemplars",
            "Exemplars in the in-memory head, not yet sealed",
            m.head_exemplars.clone(),
        );
        registry.register(
            "head_chunk_bytes",
            "Bytes of compressed sample chunks in the in-memory head",
            m.head_chunk_bytes.clone(),
        );
        registry.register("wal_bytes", "Bytes of the head's write-ahead log on disk", m.wal_bytes.clone());
        registry.register(
            "seal_passes",
            "Sealing passes that finished (maintenance loop and admin API): each writes the closed head chunks, and \
             everything older than the out-of-order window, into blocks",
            m.seal_passes.clone(),
        );
        registry.register(
            "seal_duration_seconds",
            "Time one sealing pass took, from reading the head to deleting the WAL segments it made redundant",
            m.seal_duration.clone(),
        );
        registry.register(
            "queries_in_progress",
            "PromQL queries being evaluated now (each holds one of max_concurrent_queries)",
            m.queries_in_progress.clone(),
        );
        registry.register(
            "upload_pending_windows",
            "Closed sealed windows waiting on local disk for upload to the object store (grows while the store is unreachable; the open window goes up once it closes)",
            m.upload_pending_windows.clone(),
        );
        registry.register(
            "upload_block_files",
            "Block files (one tenant's sealed window each) uploaded to the object store",
            m.upload_block_files.clone(),
        );
        registry.register("upload_bytes", "Bytes of block files uploaded to the object store", m.upload_bytes.clone());
        registry.register(
            "upload_failures",
            "Upload passes that stopped on an object-store error; their windows are retried",
            m.upload_failures.clone(),
        );
        registry.register(
            "local_horizon_timestamp_seconds",
            "Windows before this time are kept in the object store only (local_retention); 0 while all are local",
            m.local_horizon.clone(),
        );
        registry.register(
            "object_store_requests",
            "Requests to the object store by operation (put, get, get_range, list, delete): what a bucket bills",
            m.object_store_requests.clone(),
        );
        registry.register(
            "object_store_request_failures",
            "Object-store requests that failed (unreachable, refused, timed out)",
            m.object_store_failures.clone(),
        );
        registry.register(
            "object_store_bytes",
            "Bytes to the object store (direction=out: puts) and from it (direction=in: gets)",
            m.object_store_bytes.clone(),
        );
        registry.register(
            "bucket_cache_hits",
            "Block-file reads answered from the local cache of fetched ranges",
            m.bucket_cache_hits.clone(),
        );
        registry.register(
            "bucket_cache_misses",
            "Block-file reads that went to the object store (not cached, evicted or unreadable)",
            m.bucket_cache_misses.clone(),
        );
        registry.register(
            "bucket_cache_bytes",
            "Bytes of fetched block-file ranges cached on local disk (at most bucket_cache_bytes)",
            m.bucket_cache_bytes.clone(),
        );
        registry.register(
            "compaction_windows_merged",
            "Bucket index entries the compactor merged into compacted windows",
            m.compaction_windows_merged.clone(),
        );
        registry.register(
            "compaction_block_files",
            "Compacted block files the compactor wrote and committed to the bucket index",
            m.compaction_block_files.clone(),
        );
        registry.register(
            "compaction_bytes",
            "Bytes of the compacted block files committed",
            m.compaction_bytes.clone(),
        );
        registry.register(
            "compaction_windows_expired",
            "Bucket index entries the compactor dropped for retention",
            m.compaction_windows_expired.clone(),
        );
        registry.register(
            "compaction_objects_deleted",
            "Objects the compactor deleted: merged, expired, and ones no index names",
            m.compaction_objects_deleted.clone(),
        );
        registry.register(
            "compaction_failures",
            "Compaction passes that stopped on an error; what they committed stays, the rest is retried",
            m.compaction_failures.clone(),
        );
        registry.register(
            "compactor_lease_held",
            "1 while this process holds the bucket's compactor lease (exactly one compactor works at a time)",
            m.compactor_lease_held.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts one upload pass: what it uploaded, or that it failed.
    pub fn observe_upload(&self, block_files: u64, bytes: u64, failed: bool) {
        self.upload_block_files.inc_by(block_files);
        self.upload_bytes.inc_by(bytes);
        if failed {
            self.upload_failures.inc();
        }
    }

    pub fn ingested(&self, report: &amber_storage::AppendReport) {
        self.samples_ingested.inc_by(report.samples_written);
        self.histograms_ingested.inc_by(report.histograms_written);
        self.exemplars_ingested.inc_by(report.exemplars_written);
        self.series_created.inc_by(report.series_created);
    }

    pub fn rejected(&self, kind: amber_storage::DataKind, reason: &str, n: u64) {
        if n == 0 {
            return;
        }
        let family = match kind {
            amber_storage::DataKind::Sample => &self.samples_rejected,
            amber_storage::DataKind::Histogram => &self.histograms_rejected,
            amber_storage::DataKind::Exemplar => &self.exemplars_rejected,
        };
        family.get_or_create(&Reason { reason: reason.to_string() }).inc_by(n);
    }

    /// Publishes one family's running totals.
    pub fn family(&self, tenant: &str, family: &str, source: &str, stats: &crate::diagnostics::FamilyStats) {
        let labels = FamilyLabels { tenant: tenant.into(), family: family.into(), source: source.into() };
        self.family_samples.get_or_create(&labels).set(stats.samples as i64);
        self.family_exemplars.get_or_create(&labels).set(stats.exemplars as i64);
        if let Some(ms) = stats.last_exemplar_ms {
            self.family_last_exemplar.get_or_create(&labels).set(ms as f64 / 1000.0);
        }
    }

    /// Counts one breach of the limit named as in the configuration (e.g. `query_max_samples`).
    /// A distributor's write sent on to `ingester`: durable there (a 2xx or 400) or missed.
    pub fn ingester_write(&self, ingester: &str, durable: bool) {
        let outcome = if durable { "durable" } else { "missed" };
        self.ingester_writes.get_or_create(&IngesterOutcome { ingester: ingester.to_string(), outcome }).inc();
    }

    pub fn limit_exceeded(&self, limit: &str) {
        self.limits_exceeded.get_or_create(&Limit { limit: limit.to_string() }).inc();
    }

    pub fn observe_query(&self, kind: &str, elapsed: Duration) {
        self.query_duration.get_or_create(&Kind { kind: kind.to_string() }).observe(elapsed.as_secs_f64());
    }

    /// Counts one finished sealing pass and how long it took.
    pub fn observe_seal(&self, elapsed: Duration) {
        self.seal_passes.inc();
        self.seal_duration.observe(elapsed.as_secs_f64());
    }

    /// Brings the object-store counters up to `requests` and the cache's figures to `cache`
    /// (both counted where the requests pass, read at each scrape).
    pub fn observe_object_store(
        &self,
        requests: &amber_storage::objstore::ObjectStoreRequests,
        cache: Option<&amber_storage::bucket_source::RangeCacheStats>,
    ) {
        let up_to = |c: &Counter, total: u64| {
            c.inc_by(total.saturating_sub(c.get()));
        };
        for (operation, total) in [
            ("put", requests.puts),
            ("get", requests.gets),
            ("get_range", requests.get_ranges),
            ("list", requests.lists),
            ("delete", requests.deletes),
        ] {
            up_to(&self.object_store_requests.get_or_create(&Operation { operation }), total);
        }
        up_to(&self.object_store_failures, requests.failures);
        up_to(&self.object_store_bytes.get_or_create(&Direction { direction: "out" }), requests.bytes_out);
        up_to(&self.object_store_bytes.get_or_create(&Direction { direction: "in" }), requests.bytes_in);
        if let Some(c) = cache {
            up_to(&self.bucket_cache_hits, c.hits);
            up_to(&self.bucket_cache_misses, c.misses);
            self.bucket_cache_bytes.set(c.bytes as i64);
        }
    }

    /// Brings the compaction counters up to `counts` (counted by the compactor, read at each
    /// scrape).
    pub fn observe_compactor(&self, counts: &amber_storage::compactor::CompactorCounts) {
        let up_to = |c: &Counter, total: u64| {
            c.inc_by(total.saturating_sub(c.get()));
        };
        up_to(&self.compaction_windows_merged, counts.windows_merged);
        up_to(&self.compaction_block_files, counts.files_written);
        up_to(&self.compaction_bytes, counts.bytes_written);
        up_to(&self.compaction_windows_expired, counts.windows_expired);
        up_to(&self.compaction_objects_deleted, counts.objects_deleted);
        up_to(&self.compaction_failures, counts.passes_failed);
        self.compactor_lease_held.set(i64::from(counts.lease_held));
    }

    pub fn observe_write(&self, status: u16, elapsed: Duration) {
        self.write_requests.get_or_create(&Code { code: status.to_string() }).inc();
        self.write_duration.observe(elapsed.as_secs_f64());
    }
}

pub async fn handle(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let storage = state.storage.clone();
    let stats = tokio::task::spawn_blocking(move || storage.stats()).await.unwrap_or_default();
    let m = &state.metrics;
    m.series.set(stats.series as i64);
    for (cf, bytes) in stats.sst_bytes {
        m.sst_bytes.get_or_create(&ColumnFamily { cf: cf.to_string() }).set(bytes as i64);
    }
    for (cf, bytes) in stats.memtable_bytes {
        m.memtable_bytes.get_or_create(&ColumnFamily { cf: cf.to_string() }).set(bytes as i64);
    }
    m.head_series.set(stats.head.series as i64);
    m.head_samples.set(stats.head.samples as i64);
    m.head_histograms.set(stats.head.histograms as i64);
    m.head_exemplars.set(stats.head.exemplars as i64);
    m.head_chunk_bytes.set(stats.head.chunk_bytes as i64);
    m.wal_bytes.set(stats.wal_bytes as i64);
    m.upload_pending_windows.set(stats.pending_upload_windows as i64);
    m.local_horizon.set(if stats.local_horizon == i64::MIN { 0 } else { stats.local_horizon.div_euclid(1000) });
    if let Some(bucket) = &state.bucket {
        m.observe_object_store(&bucket.requests.requests(), bucket.cache.as_ref().map(|c| c.stats()).as_ref());
        if let Some(compactor) = &bucket.compactor {
            m.observe_compactor(&compactor.counts());
        }
    }
    let free_query_slots = state.query_permits.available_permits();
    m.queries_in_progress.set(state.limits.max_concurrent_queries.saturating_sub(free_query_slots) as i64);
    let mut body = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, &m.registry) {
        return crate::error::ApiError::internal(format!("encoding metrics: {e}")).into_response();
    }
    let accept = headers.get("accept").and_then(|v| v.to_str().ok()).unwrap_or("");
    if accept.contains("application/openmetrics-text") {
        return ([("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
            .into_response();
    }
    ([("content-type", "text/plain; version=0.0.4; charset=utf-8")], text_format(&body)).into_response()
}

/// OpenMetrics text as the Prometheus text format 0.0.4: a counter family's `HELP` and `TYPE`
/// name its samples' `_total` name, and there is no `# EOF`.
fn text_format(openmetrics: &str) -> String {
    let lines: Vec<&str> = openmetrics.lines().collect();
    let mut counters = std::collections::HashSet::new();
    for line in &lines {
        if let Some(name) = line.strip_prefix("# TYPE ").and_then(|rest| rest.strip_suffix(" counter")) {
            counters.insert(name);
        }
    }
    let mut out = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in lines {
        if line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "].into_iter().find(|p| line.starts_with(p));
        match meta.map(|p| (p, &line[p.len()..])) {
            Some((prefix, rest)) if counters.contains(rest.split(' ').next().unwrap_or("")) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(&format!("{prefix}{name}_total {tail}\n"));
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_by_their_samples_in_the_text_format() {
        let openmetrics = "# HELP amber_samples_ingested Samples written durably.\n\
                           # TYPE amber_samples_ingested counter\n\
                           amber_samples_ingested_total 3\n\
                           # HELP amber_series Series in the index.\n\
                           # TYPE amber_series gauge\n\
                           amber_series 2\n\
                           # EOF\n";
        assert_eq!(
            text_format(openmetrics),
            "# HELP amber_samples_ingested_total Samples written durably.\n\
             # TYPE amber_samples_ingested_total counter\n\
             amber_samples_ingested_total 3\n\
             # HELP amber_series Series in the index.\n\
             # TYPE amber_series gauge\n\
             amber_series 2\n"
        );
    }
}
