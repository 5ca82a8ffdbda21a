//! Amber's wire formats and HTTP API: the remote-write receiver and the Prometheus-compatible
//! read endpoints, served with axum over [`amber_storage::Storage`].
//!
//! # Layout
//! One module per endpoint family, like mini-redis's one file per command:
//! - [`remote_write`] — `POST /api/v1/write` (Prometheus remote write 1.0 and 2.0) and
//!   `POST /api/v1/import` (the same bodies of history, written into sealed blocks).
//! - [`remote_read`] — `POST /api/v1/read` (Prometheus remote read: samples or XOR chunks).
//! - [`query`] — `/api/v1/query`, `/api/v1/query_range`, `/api/v1/format_query` (PromQL, through
//!   [`queryable`], the engine's view of the store); [`parse_query`] — `/api/v1/parse_query`, the
//!   syntax tree.
//! - [`exemplars`] — `/api/v1/query_exemplars`, `/api/v1/exemplars/trace/<trace_id>` and
//!   `/api/v1/exemplars/top`.
//! - [`series`] — `/api/v1/series`, `/api/v1/labels`, `/api/v1/label/<name>/values`.
//! - [`metadata`] — `/api/v1/metadata`.
//! - [`status`] — build info, flags, runtime info, health and readiness, and the empty rules,
//!   alerts and targets of a store that neither scrapes nor evaluates rules.
//! - [`metrics`] — Amber's own metrics at `/metrics`.
//! - [`ui`] — Amber's web UI at `/` (embedded HTML, CSS and ES modules over this same API).
//!
//! Shared pieces: [`tenant`] (which tenant a request acts for, and its credentials), [`params`] (Prometheus's parameter parsing: times, `match[]`), [`response`]
//! (the JSON envelope and float/timestamp formatting), [`error`] (errors → status and JSON).

pub mod admin;
pub mod diagnostics;
pub mod distributor;
pub mod error;
pub mod exemplars;
pub mod export;
pub mod limit_share;
pub mod metadata;
pub mod metrics;
pub mod otlp;
pub mod params;
pub mod parse_query;
pub mod prompb;
pub mod query;
pub mod queryable;
pub mod rate_limit;
pub mod remote_read;
pub mod remote_source;
pub mod remote_write;
pub mod response;
pub mod ring_source;
pub mod series;
pub mod status;
pub mod tenant;
pub mod ui;

use std::sync::Arc;

use amber_storage::Storage;
use amber_storage::labels::LabelLimits;
use axum::Router;
use axum::routing::{get, post};

/// Limits the API enforces on requests.
#[derive(Debug, Clone)]
pub struct ApiLimits {
    /// Largest remote-write body accepted, compressed.
    pub max_body_bytes: usize,
    /// Largest remote-write body accepted once snappy-decoded.
    pub max_decoded_bytes: usize,
    /// Longest a write's body may take to arrive once its headers have (408 after it).
    pub body_read_timeout: std::time::Duration,
    /// Remote-write requests processed at once; more are shed with a retryable 503, so memory
    /// stays bounded (at most this many bodies) however hard senders push.
    pub max_inflight_writes: usize,
    /// Series a tenant may have; samples of further new series are refused with a 400. Tenants may
    /// have their own value in [`tenant::TenantSettings::max_series`].
    pub max_series_per_tenant: u64,
    /// Samples plus exemplars per second a tenant may write (0: no limit), with bursts of up to
    /// `ingestion_burst`; requests beyond it get a retryable 429. Tenants may have their own
    /// rate in [`tenant::TenantSettings::ingestion_rate`].
    pub ingestion_rate: f64,
    pub ingestion_burst: f64,
    /// New series per second a tenant may create (0: no limit), with bursts of up to
    /// `new_series_burst`; samples of series beyond it get a retryable 429 while the rest of the
    /// request is written, so a cardinality explosion cannot outgrow memory before
    /// `max_series_per_tenant` stops it. Tenants may have their own rate in
    /// [`tenant::TenantSettings::new_series_rate`].
    pub new_series_rate: f64,
    pub new_series_burst: f64,
    /// Bytes of write bodies, compressed plus decoded, held at once across all requests; a
    /// request that would go over waits for none and gets a retryable 503.
    pub max_inflight_write_bytes: usize,
    /// Queries (instant and range) evaluated at once; more get a retryable 503.
    pub max_concurrent_queries: usize,
    /// How OTLP metrics are translated to series.
    pub otlp: otlp::translate::Translation,
    /// Writes are refused with a retryable 507 while the store's file system has less free space
    /// than this, so RocksDB never meets a full disk (it cannot recover from one in place).
    pub min_free_disk_bytes: u64,
    pub labels: LabelLimits,
    /// Memory the remote-write labels cache may hold (`remote_write::labels_cache`); about 600
    /// bytes an active series.
    pub labels_cache_bytes: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_body_bytes: 32 << 20,
            max_decoded_bytes: 128 << 20,
            body_read_timeout: std::time::Duration::from_secs(60),
            max_inflight_writes: 16,
            max_series_per_tenant: 1_000_000,
            ingestion_rate: 0.0,
            ingestion_burst: 0.0,
            new_series_rate: 0.0,
            new_series_burst: 0.0,
            max_inflight_write_bytes: 512 << 20,
            max_concurrent_queries: 20,
            min_free_disk_bytes: 256 << 20,
            otlp: otlp::translate::Translation::default(),
            labels: LabelLimits::default(),
            labels_cache_bytes: 512 << 20,
        }
    }
}

/// Where the cost of the object store is counted.
#[derive(Clone)]
pub struct BucketMeters {
    pub requests: Arc<amber_storage::objstore::Metered>,
    pub cache: Option<Arc<amber_storage::bucket_source::RangeCache>>,
    /// The compactor's counts, where this process runs one.
    pub compactor: Option<Arc<amber_storage::compactor::CompactorMetrics>>,
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub storage: Arc<Storage>,
    pub engine: Arc<amber_promql::Engine>,
    pub limits: Arc<ApiLimits>,
    pub tenants: Arc<tenant::TenantSettings>,
    pub metrics: Arc<metrics::Metrics>,
    /// One permit per remote-write request in progress (`ApiLimits::max_inflight_writes`).
    pub write_permits: Arc<tokio::sync::Semaphore>,
    /// One permit per query being evaluated (`ApiLimits::max_concurrent_queries`).
    pub query_permits: Arc<tokio::sync::Semaphore>,
    /// Per-tenant token buckets of the ingestion rate limit.
    pub ingestion: Arc<rate_limit::TokenBuckets>,
    /// Per-tenant token buckets of the new-series rate limit.
    pub new_series: Arc<rate_limit::TokenBuckets>,
    /// One permit per KiB of write bodies held (`ApiLimits::max_inflight_write_bytes`).
    pub write_bytes: Arc<tokio::sync::Semaphore>,
    /// Validated labels of the series remote write senders send, by their bytes.
    pub labels_cache: Arc<remote_write::labels_cache::LabelsCache>,
    /// What arrived per metric family and source, for exemplar diagnostics.
    pub diagnostics: Arc<diagnostics::Diagnostics>,
    /// Where reads come from: this store, or (a querier) the bucket and other Ambers.
    pub source: Arc<dyn amber_storage::source::ReadSource>,
    /// The ring this process watches (a distributor's or a querier's), for `/api/v1/status/ring`.
    pub ring: Option<Arc<amber_ring::RingWatch>>,
    /// Where writes go when this process is a distributor: the ingesters on the ring, not this store.
    pub distributor: Option<Arc<distributor::Distributor>>,
    /// Which part of each tenant's limits this process enforces: all of them on one node.
    pub limit_share: limit_share::LimitShare,
    /// The object store's request counters and the cache of fetched ranges, for `/metrics`.
    pub bucket: Option<BucketMeters>,
    /// The settings in force by flag name, for `/api/v1/status/flags`.
    pub flags: Arc<std::collections::BTreeMap<String, String>>,
    /// The effective configuration as YAML, for `/api/v1/status/config`.
    pub config_yaml: Arc<str>,
    /// When the process started serving, for `/api/v1/status/runtimeinfo`.
    pub started: chrono::DateTime<chrono::Utc>,
    /// What the web UI is told at start (`/ui/settings.json`).
    pub ui: Arc<ui::UiSettings>,
}

impl AppState {
    pub fn new(
        storage: Arc<Storage>,
        engine: amber_promql::EngineOptions,
        limits: ApiLimits,
        tenants: tenant::TenantSettings,
    ) -> Self {
        let ui = Arc::new(ui::UiSettings {
            trace_url_template: String::new(),
            trace_id_labels: storage.options().trace_id_labels.clone(),
        });
        AppState {
            source: Arc::new(amber_storage::source::Local::new(storage.clone(), tenants.default_tenant.clone())),
            bucket: None,
            distributor: None,
            limit_share: limit_share::LimitShare::Whole,
            ring: None,
            storage,
            engine: Arc::new(amber_promql::Engine::new(engine)),
            write_permits: Arc::new(tokio::sync::Semaphore::new(limits.max_inflight_writes)),
            query_permits: Arc::new(tokio::sync::Semaphore::new(limits.max_concurrent_queries)),
            ingestion: Arc::new(rate_limit::TokenBuckets::default()),
            new_series: Arc::new(rate_limit::TokenBuckets::default()),
            write_bytes: Arc::new(tokio::sync::Semaphore::new(limits.max_inflight_write_bytes.div_ceil(1024))),
            diagnostics: Arc::new(diagnostics::Diagnostics::default()),
            labels_cache: Arc::new(remote_write::labels_cache::LabelsCache::new(limits.labels_cache_bytes)),
            flags: Arc::default(),
            config_yaml: Arc::from(""),
            started: chrono::Utc::now(),
            ui,
            limits: Arc::new(limits),
            tenants: Arc::new(tenants),
            metrics: Arc::new(metrics::Metrics::new()),
        }
    }
}

impl AppState {
    /// The object store's meters `/metrics` reports.
    pub fn with_bucket_meters(mut self, meters: BucketMeters) -> Self {
        self.bucket = Some(meters);
        self
    }

    /// Reads come from `source` instead of this store.
    pub fn with_source(mut self, source: Arc<dyn amber_storage::source::ReadSource>) -> Self {
        self.source = source;
        self
    }

    /// Writes go to the ingesters on the ring through `distributor`, not to this store.
    pub fn with_distributor(mut self, distributor: Arc<distributor::Distributor>) -> Self {
        self.distributor = Some(distributor);
        self
    }

    /// Enforces `share` of each tenant's limits, as a member of a cluster.
    pub fn with_limit_share(mut self, share: limit_share::LimitShare) -> Self {
        self.limit_share = share;
        self
    }

    /// `/api/v1/status/ring` reports `ring`.
    pub fn with_ring(mut self, ring: Arc<amber_ring::RingWatch>) -> Self {
        self.ring = Some(ring);
        self
    }

    /// The settings `/api/v1/status/flags` reports.
    pub fn with_flags(mut self, flags: std::collections::BTreeMap<String, String>) -> Self {
        self.flags = Arc::new(flags);
        self
    }

    /// Exemplars link to the user's trace UI through `template` (`{trace_id}` replaced).
    pub fn with_trace_url_template(mut self, template: String) -> Self {
        self.ui = Arc::new(ui::UiSettings { trace_url_template: template, ..(*self.ui).clone() });
        self
    }

    /// The configuration `/api/v1/status/config` reports, as YAML.
    pub fn with_config_yaml(mut self, yaml: String) -> Self {
        self.config_yaml = Arc::from(yaml);
        self
    }
}

/// The header Ambers mark their requests to each other with: a distributor's forwarded writes
/// and a querier's reads of an ingester. A process that is an ingester and also a distributor
/// or a querier answers these from its own store, and everything else through the ring.
pub const PEER_HEADER: &str = "x-amber-peer";

/// `public`, except that requests carrying [`PEER_HEADER`] are answered by `peers` (a router over
/// this process's own store): without it, an ingester that is also a distributor would forward
/// its distributor's writes back to itself, and one that is also a querier would fan a peer's
/// read out over the ring again, for ever.
pub fn answer_peers_with(public: Router, peers: Router) -> Router {
    use tower::ServiceExt;
    // Chosen before either router matches a route (a layer on `public` would run after its
    // match, and `peers` would find the path parameters extracted twice).
    Router::new().fallback_service(tower::service_fn(move |request: axum::extract::Request| {
        let router = if request.headers().contains_key(PEER_HEADER) { peers.clone() } else { public.clone() };
        router.oneshot(request)
    }))
}

/// Every route Amber serves; the admin routes only when `admin_api` is on, and the write routes
/// only when `accepts_writes` (a querier answers them with a 404 saying where writes go).
pub fn router(state: AppState, admin_api: bool, accepts_writes: bool) -> Router {
    let router = if admin_api {
        Router::new()
            .route("/api/v1/admin/tsdb/seal", post(admin::seal))
            .route("/api/v1/admin/tsdb/snapshot", post(admin::snapshot))
    } else {
        Router::new()
    };
    let router = if accepts_writes {
        router
            .route("/api/v1/write", post(remote_write::handle))
            .route("/api/v1/import", post(remote_write::import))
            .route("/otlp/v1/metrics", post(otlp::handle))
            .route("/api/v1/otlp/v1/metrics", post(otlp::handle))
    } else {
        router
            .route("/api/v1/write", post(refuse_write))
            .route("/api/v1/import", post(refuse_write))
            .route("/otlp/v1/metrics", post(refuse_write))
            .route("/api/v1/otlp/v1/metrics", post(refuse_write))
    };
    router
        .route("/api/v1/read", post(remote_read::handle))
        .route("/api/v1/query", get(query::instant).post(query::instant))
        .route("/api/v1/query_range", get(query::range).post(query::range))
        .route("/api/v1/format_query", get(query::format).post(query::format))
        .route("/api/v1/parse_query", get(parse_query::handler).post(parse_query::handler))
        .route("/api/v1/query_exemplars", get(exemplars::query).post(exemplars::query))
        .route("/api/v1/exemplars/trace/{trace_id}", get(exemplars::by_trace))
        .route("/api/v1/exemplars/top", get(exemplars::top).post(exemplars::top))
        .route("/api/v1/series", get(series::series).post(series::series))
        .route("/api/v1/export", get(export::export).post(export::export))
        .route("/api/v1/labels", get(series::label_names).post(series::label_names))
        .route("/api/v1/label/{name}/values", get(series::label_values))
        .route("/api/v1/metadata", get(metadata::metadata))
        .route("/api/v1/status/buildinfo", get(status::buildinfo))
        .route("/api/v1/status/flags", get(status::flags))
        .route("/api/v1/status/config", get(status::config))
        .route("/api/v1/status/tsdb", get(status::tsdb))
        .route("/api/v1/status/runtimeinfo", get(status::runtimeinfo))
        .route("/api/v1/status/ring", get(status::ring))
        .route("/api/v1/rules", get(status::rules))
        .route("/api/v1/alerts", get(status::alerts))
        .route("/api/v1/targets", get(status::targets))
        .route("/api/v1/status/exemplars", get(diagnostics::exemplars))
        .route("/-/healthy", get(status::healthy))
        .route("/-/ready", get(status::ready))
        .route("/metrics", get(metrics::handle))
        .route("/", get(ui::index))
        .route("/ui/settings.json", get(ui::settings))
        .route("/ui/exemplar-checklist.html", get(ui::checklist))
        .route("/ui/{*path}", get(ui::asset))
        .with_state(state)
}

/// A write sent to a querier: a 4xx, so that the sender does not retry a misconfiguration.
async fn refuse_write() -> (axum::http::StatusCode, &'static str) {
    (
        axum::http::StatusCode::NOT_FOUND,
        "this Amber runs with --role querier and accepts no writes: send them to an Amber with --role all\n",
    )
}
