//! Configuration: command-line flags, each also an `AMBER_*` environment variable, over an
//! optional TOML file (`--config`), over defaults. Durations are written like `15d`, `2h`, `30s`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

#[derive(Debug, clap::Parser)]
#[command(name = "amber", version, about = "A Prometheus remote-write target that keeps samples and exemplars durably")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<crate::commands::Command>,
    /// TOML file with any of the settings below (flags and environment win over it).
    #[arg(long, env = "AMBER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory of the RocksDB store [default: ./data].
    #[arg(long, env = "AMBER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to serve the HTTP API on [default: 0.0.0.0:9201].
    #[arg(long, env = "AMBER_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// How long samples and exemplars are kept [default: 15d].
    #[arg(long, env = "AMBER_RETENTION")]
    pub retention: Option<String>,
    /// How far behind a series' newest sample an older one is still accepted [default: 1h].
    #[arg(long, env = "AMBER_OUT_OF_ORDER_WINDOW")]
    pub out_of_order_window: Option<String>,
    /// Width of a block's time window; fixed when the store is created [default: 2h].
    #[arg(long, env = "AMBER_BLOCK_DURATION")]
    pub block_duration: Option<String>,
    /// How often head data is sealed into blocks and retention is enforced [default: 1m].
    #[arg(long, env = "AMBER_MAINTENANCE_INTERVAL")]
    pub maintenance_interval: Option<String>,
    /// Largest remote-write body, compressed, in bytes [default: 33554432].
    #[arg(long, env = "AMBER_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Remote-write requests processed at once; more get a retryable 503 [default: 16].
    #[arg(long, env = "AMBER_MAX_INFLIGHT_WRITES")]
    pub max_inflight_writes: Option<usize>,
    /// Series a tenant may have; samples of further new series get a 400. In a cluster, across
    /// it: each ingester enforces its part [default: 1000000].
    #[arg(long, env = "AMBER_MAX_SERIES_PER_TENANT")]
    pub max_series_per_tenant: Option<u64>,
    /// Samples plus exemplars per second a tenant may write, 0 for no limit; more get a 429. In a
    /// cluster, across it: each distributor enforces its part [default: 0].
    #[arg(long, env = "AMBER_INGESTION_RATE")]
    pub ingestion_rate: Option<f64>,
    /// Largest burst above the ingestion rate, in samples plus exemplars [default: 10 × the rate].
    #[arg(long, env = "AMBER_INGESTION_BURST")]
    pub ingestion_burst: Option<f64>,
    /// New series per second a tenant may create, 0 for no limit; samples of further new series
    /// get a retryable 429 while the rest of the request is written [default: 0].
    #[arg(long, env = "AMBER_NEW_SERIES_RATE")]
    pub new_series_rate: Option<f64>,
    /// Largest burst of new series above the new-series rate [default: 60 × the rate].
    #[arg(long, env = "AMBER_NEW_SERIES_BURST")]
    pub new_series_burst: Option<f64>,
    /// Largest remote-write or OTLP body once decompressed, in bytes [default: 134217728].
    #[arg(long, env = "AMBER_MAX_DECODED_BODY_BYTES")]
    pub max_decoded_body_bytes: Option<usize>,
    /// Bytes of write bodies (compressed plus decoded) held at once; writes beyond get a retryable 503 [default: 536870912].
    #[arg(long, env = "AMBER_MAX_INFLIGHT_WRITE_BYTES")]
    pub max_inflight_write_bytes: Option<usize>,
    /// Memory for the labels of series remote write senders send, validated once: about 600
    /// bytes an active series; beyond it series are validated on every write [default: a
    /// sixteenth of the machine's memory, at least 536870912].
    #[arg(long, env = "AMBER_LABELS_CACHE_BYTES")]
    pub labels_cache_bytes: Option<usize>,
    /// Longest a client may take to send a request's headers, counted from the connection's start
    /// or the end of its previous response, so idle keep-alive connections close too [default: 1m].
    #[arg(long, env = "AMBER_HTTP_HEADER_READ_TIMEOUT")]
    pub http_header_read_timeout: Option<String>,
    /// Longest a write's body may take to arrive; slower ones get a 408 [default: 1m].
    #[arg(long, env = "AMBER_HTTP_BODY_READ_TIMEOUT")]
    pub http_body_read_timeout: Option<String>,
    /// Queries evaluated at once; more get a retryable 503 [default: 20].
    #[arg(long, env = "AMBER_MAX_CONCURRENT_QUERIES")]
    pub max_concurrent_queries: Option<usize>,
    /// Writes get a retryable 507 while the data directory's file system has less free space [default: 268435456].
    #[arg(long, env = "AMBER_MIN_FREE_DISK_BYTES")]
    pub min_free_disk_bytes: Option<u64>,
    /// Exemplars a series may have in one block window; more are refused with a 400 [default: 10000].
    #[arg(long, env = "AMBER_MAX_EXEMPLARS_PER_SERIES_PER_WINDOW")]
    pub max_exemplars_per_series_per_window: Option<u64>,
    /// Most labels a series may have [default: 30].
    #[arg(long, env = "AMBER_MAX_LABELS_PER_SERIES")]
    pub max_labels_per_series: Option<usize>,
    /// Longest label name in bytes [default: 1024].
    #[arg(long, env = "AMBER_MAX_LABEL_NAME_LENGTH")]
    pub max_label_name_length: Option<usize>,
    /// Longest label value in bytes [default: 2048].
    #[arg(long, env = "AMBER_MAX_LABEL_VALUE_LENGTH")]
    pub max_label_value_length: Option<usize>,
    /// How far back PromQL looks for a sample of an instant selector [default: 5m].
    #[arg(long, env = "AMBER_QUERY_LOOKBACK_DELTA")]
    pub query_lookback_delta: Option<String>,
    /// Most samples one query may load [default: 50000000].
    #[arg(long, env = "AMBER_QUERY_MAX_SAMPLES")]
    pub query_max_samples: Option<usize>,
    /// Longest a query may run [default: 2m].
    #[arg(long, env = "AMBER_QUERY_TIMEOUT")]
    pub query_timeout: Option<String>,
    /// Tenant of requests without an X-Scope-OrgID header [default: anonymous].
    #[arg(long, env = "AMBER_DEFAULT_TENANT")]
    pub default_tenant: Option<String>,
    /// Refuse requests without an X-Scope-OrgID header (401) instead of using the default tenant.
    #[arg(long, env = "AMBER_REQUIRE_TENANT")]
    pub require_tenant: bool,
    /// `fdatasync` the write-ahead log before answering a write [default: true]. With false a
    /// write is answered once it is written to the log file (`write(2)`, as Prometheus does):
    /// it survives Amber being killed, not a power loss or an operating-system crash.
    #[arg(long, env = "AMBER_WAL_FSYNC", action = clap::ArgAction::Set, value_name = "BOOL")]
    pub wal_fsync: Option<bool>,
    /// Serve `POST /api/v1/admin/tsdb/seal` (seal and compact now; used by the benchmark).
    #[arg(long, env = "AMBER_ENABLE_ADMIN_API")]
    pub enable_admin_api: bool,
    /// Address of the OTLP gRPC receiver; an empty value disables it [default: 0.0.0.0:4317].
    #[arg(long, env = "AMBER_OTLP_GRPC_LISTEN")]
    pub otlp_grpc_listen: Option<String>,
    /// OTLP resource attributes to add as labels to every series of the resource (comma-separated).
    #[arg(long, env = "AMBER_OTLP_PROMOTE_RESOURCE_ATTRIBUTES", value_delimiter = ',')]
    pub otlp_promote_resource_attributes: Option<Vec<String>>,
    /// Write OTLP histograms with explicit buckets as native histograms with custom buckets
    /// (NHCB, schema -53) instead of classic `_bucket`/`_sum`/`_count` series.
    #[arg(long, env = "AMBER_OTLP_CONVERT_HISTOGRAMS_TO_NHCB")]
    pub otlp_convert_histograms_to_nhcb: bool,
    /// PEM certificate chain to serve HTTPS with (needs --tls-key-file).
    #[arg(long, env = "AMBER_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of the certificate.
    #[arg(long, env = "AMBER_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// `text` or `json` [default: text].
    #[arg(long, env = "AMBER_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Link from an exemplar in the web UI to your trace UI; `{trace_id}` is replaced by the
    /// exemplar's trace id, e.g. `http://tempo:3200/trace/{trace_id}` [default: no link].
    #[arg(long, env = "AMBER_TRACE_URL_TEMPLATE")]
    pub trace_url_template: Option<String>,
    /// Bucket that sealed windows are uploaded to: `s3://bucket/prefix` (S3 or an S3-compatible
    /// store such as Ceph's RADOS Gateway) or `file:///dir`. Unset: nothing leaves the machine.
    #[arg(long, env = "AMBER_OBJECT_STORE_URL")]
    pub object_store_url: Option<String>,
    /// How long a window's blocks stay on local disk once uploaded; older windows are read from
    /// the bucket (needs --object-store-url) [default: the whole retention].
    #[arg(long, env = "AMBER_LOCAL_RETENTION")]
    pub local_retention: Option<String>,
    /// `all` (one process does everything), `distributor` (sends writes on to the ingesters on
    /// the ring, answers reads from them and the bucket; keeps no data), `ingester` (stores what
    /// distributors send, on the ring), `querier` (answers the read API from the bucket, the
    /// ring and the Ambers of --ingester-urls; accepts no writes and keeps no data) or
    /// `compactor` [default: all].
    #[arg(long, env = "AMBER_ROLE")]
    pub role: Option<String>,
    /// etcd endpoints holding the ring, comma-separated `host:port` (roles distributor,
    /// ingester and querier).
    #[arg(long, env = "AMBER_ETCD_ENDPOINTS", value_delimiter = ',')]
    pub etcd_endpoints: Option<Vec<String>>,
    /// Key prefix of the ring's entries in etcd, one key per ingester [default: amber/ring/].
    #[arg(long, env = "AMBER_ETCD_PREFIX")]
    pub etcd_prefix: Option<String>,
    /// How long an ingester stays on the ring after its keep-alives stop [default: 10s].
    #[arg(long, env = "AMBER_RING_LEASE_TTL")]
    pub ring_lease_ttl: Option<String>,
    /// This ingester's name on the ring, stable across restarts: its tokens derive from it
    /// [default: the host name].
    #[arg(long, env = "AMBER_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Base URL distributors and queriers reach this ingester at [default: http://<listen> when
    /// it names one address, else http://<host name>:<listen port>].
    #[arg(long, env = "AMBER_INSTANCE_ADDR")]
    pub instance_addr: Option<String>,
    /// Ingesters each series is written to; a write is acknowledged once a majority of them
    /// have it [default: 3].
    #[arg(long, env = "AMBER_REPLICATION_FACTOR")]
    pub replication_factor: Option<usize>,
    /// How long an ingester has to answer a distributor's write before it counts as failed [default: 10s].
    #[arg(long, env = "AMBER_INGESTER_WRITE_TIMEOUT")]
    pub ingester_write_timeout: Option<String>,
    /// Base URLs of the Ambers a querier asks for recent data, comma-separated
    /// (e.g. `http://ingester-1:9201`).
    #[arg(long, env = "AMBER_INGESTER_URLS", value_delimiter = ',')]
    pub ingester_urls: Option<Vec<String>>,
    /// Bytes of block-file ranges a querier keeps on local disk, under the data directory [default: 1073741824].
    #[arg(long, env = "AMBER_BUCKET_CACHE_BYTES")]
    pub bucket_cache_bytes: Option<u64>,
    /// How often the compactor merges the bucket's windows and applies --retention to it (role
    /// compactor, and role all with --object-store-url; one process per bucket works at a time,
    /// under a lease in the bucket); 0s turns it off in role all [default: 5m].
    #[arg(long, env = "AMBER_COMPACTION_INTERVAL")]
    pub compaction_interval: Option<String>,
    /// Length of a compacted window, a multiple of --block-duration aligned to the epoch (1d:
    /// UTC days) [default: 1d].
    #[arg(long, env = "AMBER_COMPACTION_WINDOW")]
    pub compaction_window: Option<String>,
    /// S3 endpoint, e.g. `http://127.0.0.1:7480` [default: AWS_ENDPOINT_URL, else Amazon's].
    #[arg(long, env = "AMBER_OBJECT_STORE_ENDPOINT")]
    pub object_store_endpoint: Option<String>,
    /// S3 region [default: AWS_REGION, else us-east-1].
    #[arg(long, env = "AMBER_OBJECT_STORE_REGION")]
    pub object_store_region: Option<String>,
    /// S3 access key id [default: AWS_ACCESS_KEY_ID].
    #[arg(long, env = "AMBER_OBJECT_STORE_ACCESS_KEY_ID")]
    pub object_store_access_key_id: Option<String>,
    /// S3 secret access key [default: AWS_SECRET_ACCESS_KEY].
    #[arg(long, env = "AMBER_OBJECT_STORE_SECRET_ACCESS_KEY")]
    pub object_store_secret_access_key: Option<String>,
    /// Allow a plain-HTTP endpoint (also AWS_ALLOW_HTTP=true).
    #[arg(long, env = "AMBER_OBJECT_STORE_ALLOW_HTTP")]
    pub object_store_allow_http: bool,
}

/// The TOML file: the same settings as the flags, in snake_case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    retention: Option<String>,
    out_of_order_window: Option<String>,
    block_duration: Option<String>,
    maintenance_interval: Option<String>,
    max_body_bytes: Option<usize>,
    max_inflight_writes: Option<usize>,
    max_series_per_tenant: Option<u64>,
    ingestion_rate: Option<f64>,
    ingestion_burst: Option<f64>,
    new_series_rate: Option<f64>,
    new_series_burst: Option<f64>,
    max_decoded_body_bytes: Option<usize>,
    max_inflight_write_bytes: Option<usize>,
    labels_cache_bytes: Option<usize>,
    http_header_read_timeout: Option<String>,
    http_body_read_timeout: Option<String>,
    max_concurrent_queries: Option<usize>,
    min_free_disk_bytes: Option<u64>,
    max_exemplars_per_series_per_window: Option<u64>,
    max_labels_per_series: Option<usize>,
    max_label_name_length: Option<usize>,
    max_label_value_length: Option<usize>,
    query_lookback_delta: Option<String>,
    query_max_samples: Option<usize>,
    query_timeout: Option<String>,
    default_tenant: Option<String>,
    require_tenant: Option<bool>,
    enable_admin_api: Option<bool>,
    wal_fsync: Option<bool>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    otlp_promote_resource_attributes: Option<Vec<String>>,
    otlp_convert_histograms_to_nhcb: Option<bool>,
    otlp_grpc_listen: Option<String>,
    /// Per-tenant settings: `[tenants.NAME]` with credentials (`bearer_token`, or
    /// `basic_auth_username` and `basic_auth_password`) and limits (`max_series_per_tenant`,
    /// `ingestion_rate`, `new_series_rate`).
    #[serde(default)]
    tenants: std::collections::BTreeMap<String, TenantConfig>,
    log_format: Option<String>,
    trace_url_template: Option<String>,
    object_store_url: Option<String>,
    object_store_endpoint: Option<String>,
    object_store_region: Option<String>,
    object_store_access_key_id: Option<String>,
    object_store_secret_access_key: Option<String>,
    object_store_allow_http: Option<bool>,
    local_retention: Option<String>,
    role: Option<String>,
    etcd_endpoints: Option<Vec<String>>,
    etcd_prefix: Option<String>,
    ring_lease_ttl: Option<String>,
    instance_id: Option<String>,
    instance_addr: Option<String>,
    replication_factor: Option<usize>,
    ingester_write_timeout: Option<String>,
    ingester_urls: Option<Vec<String>>,
    bucket_cache_bytes: Option<u64>,
    compaction_interval: Option<String>,
    compaction_window: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantConfig {
    bearer_token: Option<String>,
    basic_auth_username: Option<String>,
    basic_auth_password: Option<String>,
    max_series_per_tenant: Option<u64>,
    ingestion_rate: Option<f64>,
    new_series_rate: Option<f64>,
}

impl TenantConfig {
    /// The credentials the tenant's requests must carry, if any.
    fn credentials(&self, tenant: &str) -> anyhow::Result<Option<amber_api::tenant::Credentials>> {
        use amber_api::tenant::Credentials;
        match (&self.bearer_token, &self.basic_auth_username, &self.basic_auth_password) {
            (None, None, None) => Ok(None),
            (Some(token), None, None) => Ok(Some(Credentials::Bearer(token.clone()))),
            (None, Some(username), Some(password)) => {
                Ok(Some(Credentials::Basic { username: username.clone(), password: password.clone() }))
            }
            _ => anyhow::bail!(
                "tenant {tenant:?}: set either bearer_token, or both basic_auth_username and basic_auth_password"
            ),
        }
    }
}

/// The settings in force.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub storage: amber_storage::Options,
    pub api: amber_api::ApiLimits,
    pub engine: amber_promql::EngineOptions,
    pub tenants: amber_api::tenant::TenantSettings,
    pub maintenance_interval: Duration,
    pub log_format: String,
    /// The web UI's link from an exemplar to a trace (`{trace_id}` replaced); empty for none.
    pub trace_url_template: String,
    pub admin_api: bool,
    /// How long a client may take to send a request's headers (or to start the next request on a
    /// kept-alive connection).
    pub http_header_read_timeout: Duration,
    /// Certificate chain and key files: serve HTTPS instead of HTTP.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Where the OTLP gRPC receiver listens; `None` when disabled.
    pub otlp_grpc_listen: Option<SocketAddr>,
    /// The bucket sealed windows are uploaded to; `None`: they stay local only.
    pub object_store: Option<amber_storage::objstore::BucketConfig>,
    pub role: Roles,
    /// The ring of ingesters: where a distributor sends writes, an ingester registers and a
    /// querier reads recent data; `None` without etcd.
    pub ring: Option<RingSettings>,
    /// What a querier reads besides the bucket: other Ambers' HTTP APIs.
    pub ingester_urls: Vec<String>,
    /// Budget of a querier's on-disk cache of block-file ranges.
    pub bucket_cache_bytes: u64,
    /// How often the compactor runs; `None` when this process runs none.
    pub compaction_interval: Option<Duration>,
    /// Length of a compacted window.
    pub compaction_window_ms: i64,
}

/// The ring in etcd and this process's part in it.
#[derive(Debug, Clone)]
pub struct RingSettings {
    pub etcd: amber_ring::EtcdConfig,
    /// This ingester's entry: its id and the URL it is reached at.
    pub instance_id: String,
    pub instance_addr: String,
    pub replication_factor: usize,
    pub ingester_write_timeout: Duration,
}

/// What a process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Ingest, store, seal, upload and answer reads: the single-node Amber (and, with a
    /// bucket, its compactor).
    All,
    /// Validate writes and send each series on to a quorum of its ingesters on the ring; answer
    /// reads from the ring and the bucket. No data of its own.
    Distributor,
    /// Store, seal and upload what distributors send, registered on the ring; answer the reads
    /// queriers send.
    Ingester,
    /// Answer the read API from the bucket and other Ambers; no writes, no data of its own.
    Querier,
    /// Compact the bucket (merge windows, apply retention); answers reads from the bucket,
    /// accepts no writes.
    Compactor,
}

impl Role {
    const EVERY: [Role; 5] = [Role::All, Role::Distributor, Role::Ingester, Role::Querier, Role::Compactor];

    pub fn name(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Distributor => "distributor",
            Role::Ingester => "ingester",
            Role::Querier => "querier",
            Role::Compactor => "compactor",
        }
    }
}

/// The roles of one process (`--role distributor,ingester,querier`): `all` alone, or any of the
/// others together. A process that is an ingester and also a distributor or a querier answers
/// its peers' requests (marked with `amber_api::PEER_HEADER`) from its own store, and everyone
/// else's through the ring, so it never forwards to itself in a loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles(u8);

impl Roles {
    /// The single node.
    pub const ALL: Roles = Roles::of(Role::All);

    pub const fn of(role: Role) -> Roles {
        Roles(1 << role as u8)
    }

    /// Parses `--role`: role names separated by commas.
    pub fn parse(text: &str) -> anyhow::Result<Roles> {
        let mut roles = Roles(0);
        for name in text.split(',').map(str::trim) {
            let Some(role) = Role::EVERY.into_iter().find(|r| r.name() == name) else {
                anyhow::bail!(
                    "role must be all, or one or more of distributor, ingester, querier and compactor separated by commas, not {name:?}"
                )
            };
            roles.0 |= Roles::of(role).0;
        }
        anyhow::ensure!(
            !roles.has(Role::All) || roles == Roles::ALL,
            "role = all is the single node: it does not combine with other roles ({text:?})"
        );
        Ok(roles)
    }

    pub fn has(self, role: Role) -> bool {
        self.0 & Roles::of(role).0 != 0
    }

    /// Whether this process stores data: the single node and ingesters.
    pub fn holds_data(self) -> bool {
        self.has(Role::All) || self.has(Role::Ingester)
    }

    /// Whether reads are answered from the ring (a distributor's and a querier's), not this store.
    pub fn reads_elsewhere(self) -> bool {
        self.has(Role::Distributor) || self.has(Role::Querier)
    }

    pub fn accepts_writes(self) -> bool {
        self.has(Role::All) || self.has(Role::Distributor) || self.has(Role::Ingester)
    }

    /// The names, as `--role` takes them.
    pub fn name(self) -> String {
        let names: Vec<&str> = Role::EVERY.into_iter().filter(|&r| self.has(r)).map(Role::name).collect();
        names.join(",")
    }
}

impl Config {
    /// The settings in force as the TOML file that would set them (keys in snake_case, per-tenant
    /// settings under `tenants`, secrets shown as `<secret>`, as Prometheus shows them): the one
    /// list of settings that `/api/v1/status/config` and `/api/v1/status/flags` both serve.
    pub fn file_settings(&self) -> toml::Table {
        use toml::Value::{Boolean, Float, Integer, String as Str};
        let ms_text = |v: i64| humantime::format_duration(Duration::from_millis(v.max(0) as u64)).to_string();
        let ms = |v: i64| Str(ms_text(v));
        let d = |v: Duration| Str(humantime::format_duration(v).to_string());
        let int = |v: u64| Integer(i64::try_from(v).unwrap_or(i64::MAX));
        let path = |p: &std::path::Path| Str(p.display().to_string());
        let (api, storage, engine) = (&self.api, &self.storage, &self.engine);
        let mut table: toml::Table = [
            ("data_dir", path(&self.data_dir)),
            ("listen", Str(self.listen.to_string())),
            ("retention", ms(storage.retention_ms)),
            ("out_of_order_window", ms(storage.out_of_order_window_ms)),
            ("block_duration", ms(storage.block_duration_ms)),
            ("maintenance_interval", d(self.maintenance_interval)),
            ("max_body_bytes", int(api.max_body_bytes as u64)),
            ("max_decoded_body_bytes", int(api.max_decoded_bytes as u64)),
            ("max_inflight_writes", int(api.max_inflight_writes as u64)),
            ("max_inflight_write_bytes", int(api.max_inflight_write_bytes as u64)),
            ("labels_cache_bytes", int(api.labels_cache_bytes as u64)),
            ("max_series_per_tenant", int(api.max_series_per_tenant)),
            ("ingestion_rate", Float(api.ingestion_rate)),
            ("ingestion_burst", Float(api.ingestion_burst)),
            ("new_series_rate", Float(api.new_series_rate)),
            ("new_series_burst", Float(api.new_series_burst)),
            ("max_concurrent_queries", int(api.max_concurrent_queries as u64)),
            ("min_free_disk_bytes", int(api.min_free_disk_bytes)),
            ("max_exemplars_per_series_per_window", int(storage.max_exemplars_per_series_per_window)),
            ("max_labels_per_series", int(api.labels.max_labels_per_series as u64)),
            ("max_label_name_length", int(api.labels.max_label_name_length as u64)),
            ("max_label_value_length", int(api.labels.max_label_value_length as u64)),
            ("http_header_read_timeout", d(self.http_header_read_timeout)),
            ("http_body_read_timeout", d(api.body_read_timeout)),
            ("query_lookback_delta", ms(engine.lookback_delta_ms)),
            ("query_max_samples", int(engine.limits.max_samples as u64)),
            ("query_timeout", d(engine.limits.timeout)),
            ("default_tenant", Str(self.tenants.default_tenant.clone())),
            ("require_tenant", Boolean(self.tenants.require_tenant)),
            ("enable_admin_api", Boolean(self.admin_api)),
            ("wal_fsync", Boolean(storage.wal_fsync)),
            ("role", Str(self.role.name())),
            // Empty: local copies stay for the whole retention.
            ("local_retention", Str(self.storage.local_retention_ms.map(ms_text).unwrap_or_default())),
            ("ingester_urls", toml::Value::Array(self.ingester_urls.iter().cloned().map(Str).collect())),
            (
                "etcd_endpoints",
                toml::Value::Array(self.ring.iter().flat_map(|r| r.etcd.endpoints.iter().cloned().map(Str)).collect()),
            ),
            ("bucket_cache_bytes", int(self.bucket_cache_bytes)),
            // 0s: no compactor in this process.
            ("compaction_interval", d(self.compaction_interval.unwrap_or(Duration::ZERO))),
            ("compaction_window", ms(self.compaction_window_ms)),
            // Empty: the receiver is off.
            ("otlp_grpc_listen", Str(self.otlp_grpc_listen.map(|a| a.to_string()).unwrap_or_default())),
            ("otlp_convert_histograms_to_nhcb", Boolean(api.otlp.convert_histograms_to_nhcb)),
            (
                "otlp_promote_resource_attributes",
                toml::Value::Array(api.otlp.promote_resource_attributes.iter().cloned().map(Str).collect()),
            ),
            ("log_format", Str(self.log_format.clone())),
            // Empty: exemplars link to no trace UI.
            ("trace_url_template", Str(self.trace_url_template.clone())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let Some((cert, key)) = &self.tls {
            table.insert("tls_cert_file".into(), path(cert));
            table.insert("tls_key_file".into(), path(key));
        }
        if let Some(ring) = &self.ring {
            table.insert("etcd_prefix".into(), Str(ring.etcd.prefix.clone()));
            table.insert("ring_lease_ttl".into(), d(ring.etcd.lease_ttl));
            table.insert("instance_id".into(), Str(ring.instance_id.clone()));
            table.insert("instance_addr".into(), Str(ring.instance_addr.clone()));
            table.insert("replication_factor".into(), int(ring.replication_factor as u64));
            table.insert("ingester_write_timeout".into(), d(ring.ingester_write_timeout));
        }
        if let Some(bucket) = &self.object_store {
            table.insert("object_store_url".into(), Str(bucket.url.clone()));
            let optional = [
                ("object_store_endpoint", &bucket.endpoint),
                ("object_store_region", &bucket.region),
                ("object_store_access_key_id", &bucket.access_key_id),
            ];
            for (key, value) in optional {
                if let Some(v) = value {
                    table.insert(key.into(), Str(v.clone()));
                }
            }
            if bucket.secret_access_key.is_some() {
                table.insert("object_store_secret_access_key".into(), Str("<secret>".into()));
            }
            table.insert("object_store_allow_http".into(), Boolean(bucket.allow_http));
        }
        let mut tenants = toml::Table::new();
        fn tenant<'t>(tenants: &'t mut toml::Table, name: &str) -> &'t mut toml::Table {
            tenants
                .entry(name.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .expect("tenant entries are tables")
        }
        let secret = || Str("<secret>".into());
        for (name, credentials) in &self.tenants.credentials {
            match credentials {
                amber_api::tenant::Credentials::Bearer(_) => {
                    tenant(&mut tenants, name).insert("bearer_token".into(), secret());
                }
                amber_api::tenant::Credentials::Basic { username, .. } => {
                    let t = tenant(&mut tenants, name);
                    t.insert("basic_auth_username".into(), Str(username.clone()));
                    t.insert("basic_auth_password".into(), secret());
                }
            }
        }
        for (name, &max) in &self.tenants.max_series {
            tenant(&mut tenants, name).insert("max_series_per_tenant".into(), int(max));
        }
        for (name, &rate) in &self.tenants.ingestion_rate {
            tenant(&mut tenants, name).insert("ingestion_rate".into(), Float(rate));
        }
        for (name, &rate) in &self.tenants.new_series_rate {
            tenant(&mut tenants, name).insert("new_series_rate".into(), Float(rate));
        }
        if !tenants.is_empty() {
            table.insert("tenants".into(), toml::Value::Table(tenants));
        }
        table
    }

    /// The settings in force by flag name, as `/api/v1/status/flags` serves them: the top-level
    /// keys of [`Config::file_settings`] (per-tenant settings are left out), values as a flag
    /// would be written.
    pub fn flags(&self) -> std::collections::BTreeMap<String, String> {
        self.file_settings()
            .into_iter()
            .filter_map(|(key, value)| {
                let text = match value {
                    toml::Value::String(s) => s,
                    // f64's Display, not TOML's: `500`, as the flag is written, not `500.0`.
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    toml::Value::Array(items) => {
                        items.iter().filter_map(toml::Value::as_str).collect::<Vec<_>>().join(",")
                    }
                    toml::Value::Table(_) | toml::Value::Datetime(_) => return None,
                };
                Some((key.replace('_', "-"), text))
            })
            .collect()
    }

    /// [`Config::file_settings`] as YAML, for `/api/v1/status/config` (Prometheus serves its
    /// configuration file there as YAML, and clients parse it as such): a mapping per table, each
    /// value written as JSON, which YAML reads as the same scalar or list.
    pub fn settings_yaml(&self) -> String {
        fn write(table: &toml::Table, indent: usize, out: &mut String) {
            for (key, value) in table {
                // Setting names as they are; tenant names, which may be anything, quoted.
                let plain = key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                let key = if plain { key.clone() } else { serde_json::to_string(key).expect("a string serializes") };
                match value {
                    toml::Value::Table(inner) => {
                        out.push_str(&format!("{:indent$}{key}:\n", ""));
                        write(inner, indent + 2, out);
                    }
                    scalar => {
                        let json = serde_json::to_string(scalar).expect("TOML values serialize");
                        out.push_str(&format!("{:indent$}{key}: {json}\n", ""));
                    }
                }
            }
        }
        let mut out = String::new();
        write(&self.file_settings(), 0, &mut out);
        out
    }
}

/// The labels cache's budget when none is set: a sixteenth of the machine's memory (as
/// VictoriaMetrics sizes its caches by the memory there is), and never less than `floor`. A
/// budget smaller than the active series' labels makes every write miss: series cycle through
/// the cache in scrape order, and each is validated and inserted again (at a million series
/// and 512 MiB, ingest spent 40 % of its time in the allocator). The cache takes only what its
/// series need.
fn default_labels_cache_bytes(floor: usize) -> usize {
    let total_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines().find_map(|l| l.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?.trim().parse::<usize>().ok())
    });
    total_kib.map_or(floor, |kib| (kib.saturating_mul(1024) / 16).max(floor))
}

fn duration(name: &str, v: Option<String>, default: &str) -> anyhow::Result<Duration> {
    let text = v.unwrap_or_else(|| default.to_string());
    let d = humantime::parse_duration(&text).with_context(|| format!("invalid duration for {name}: {text:?}"))?;
    anyhow::ensure!(!d.is_zero(), "{name} must be longer than zero");
    Ok(d)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Config {
    pub fn load(cli: Cli) -> anyhow::Result<Config> {
        let file: FileConfig = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let mut storage = amber_storage::Options {
            retention_ms: millis(duration("retention", cli.retention.or(file.retention), "15d")?),
            out_of_order_window_ms: millis(duration(
                "out_of_order_window",
                cli.out_of_order_window.or(file.out_of_order_window),
                "1h",
            )?),
            block_duration_ms: millis(duration("block_duration", cli.block_duration.or(file.block_duration), "2h")?),
            ..amber_storage::Options::default()
        };
        anyhow::ensure!(storage.block_duration_ms >= 1000, "block_duration must be at least 1s");
        if let Some(v) = cli.max_exemplars_per_series_per_window.or(file.max_exemplars_per_series_per_window) {
            storage.max_exemplars_per_series_per_window = v;
        }
        storage.retention_ms = storage.retention_ms.max(storage.block_duration_ms);
        storage.wal_fsync = cli.wal_fsync.or(file.wal_fsync).unwrap_or(true);
        let mut api = amber_api::ApiLimits::default();
        if let Some(v) = cli.max_body_bytes.or(file.max_body_bytes) {
            api.max_body_bytes = v;
        }
        if let Some(v) = cli.max_inflight_writes.or(file.max_inflight_writes) {
            anyhow::ensure!(v > 0, "max_inflight_writes must be at least 1");
            api.max_inflight_writes = v;
        }
        if let Some(v) = cli.max_series_per_tenant.or(file.max_series_per_tenant) {
            api.max_series_per_tenant = v;
        }
        if let Some(v) = cli.ingestion_rate.or(file.ingestion_rate) {
            anyhow::ensure!(v >= 0.0 && v.is_finite(), "ingestion_rate must be a non-negative number");
            api.ingestion_rate = v;
        }
        api.ingestion_burst = cli.ingestion_burst.or(file.ingestion_burst).unwrap_or(10.0 * api.ingestion_rate);
        if let Some(v) = cli.new_series_rate.or(file.new_series_rate) {
            anyhow::ensure!(v >= 0.0 && v.is_finite(), "new_series_rate must be a non-negative number");
            api.new_series_rate = v;
        }
        // A restarted target brings all its series at once: a minute's worth by default.
        api.new_series_burst = cli.new_series_burst.or(file.new_series_burst).unwrap_or(60.0 * api.new_series_rate);
        if let Some(v) = cli.max_decoded_body_bytes.or(file.max_decoded_body_bytes) {
            api.max_decoded_bytes = v;
        }
        if let Some(v) = cli.max_inflight_write_bytes.or(file.max_inflight_write_bytes) {
            api.max_inflight_write_bytes = v;
        }
        api.labels_cache_bytes = match cli.labels_cache_bytes.or(file.labels_cache_bytes) {
            Some(v) => v,
            None => default_labels_cache_bytes(api.labels_cache_bytes),
        };
        anyhow::ensure!(
            api.max_inflight_write_bytes >= api.max_body_bytes + api.max_decoded_bytes,
            "max_inflight_write_bytes ({}) must hold at least one body of max_body_bytes plus max_decoded_body_bytes ({})",
            api.max_inflight_write_bytes,
            api.max_body_bytes + api.max_decoded_bytes
        );
        api.body_read_timeout =
            duration("http_body_read_timeout", cli.http_body_read_timeout.or(file.http_body_read_timeout), "1m")?;
        let http_header_read_timeout =
            duration("http_header_read_timeout", cli.http_header_read_timeout.or(file.http_header_read_timeout), "1m")?;
        if let Some(v) = cli.max_concurrent_queries.or(file.max_concurrent_queries) {
            anyhow::ensure!(v > 0, "max_concurrent_queries must be at least 1");
            api.max_concurrent_queries = v;
        }
        if let Some(v) = cli.min_free_disk_bytes.or(file.min_free_disk_bytes) {
            api.min_free_disk_bytes = v;
        }
        if let Some(v) = cli.otlp_promote_resource_attributes.or(file.otlp_promote_resource_attributes) {
            api.otlp.promote_resource_attributes = v;
        }
        api.otlp.convert_histograms_to_nhcb =
            cli.otlp_convert_histograms_to_nhcb || file.otlp_convert_histograms_to_nhcb.unwrap_or(false);
        if let Some(v) = cli.max_labels_per_series.or(file.max_labels_per_series) {
            api.labels.max_labels_per_series = v;
        }
        if let Some(v) = cli.max_label_name_length.or(file.max_label_name_length) {
            api.labels.max_label_name_length = v;
        }
        if let Some(v) = cli.max_label_value_length.or(file.max_label_value_length) {
            api.labels.max_label_value_length = v;
        }
        let mut engine = amber_promql::EngineOptions {
            lookback_delta_ms: millis(duration(
                "query_lookback_delta",
                cli.query_lookback_delta.or(file.query_lookback_delta),
                "5m",
            )?),
            ..amber_promql::EngineOptions::default()
        };
        engine.limits.timeout = duration("query_timeout", cli.query_timeout.or(file.query_timeout), "2m")?;
        if let Some(v) = cli.query_max_samples.or(file.query_max_samples) {
            engine.limits.max_samples = v;
        }
        let mut credentials = std::collections::HashMap::new();
        let mut max_series = std::collections::HashMap::new();
        let mut ingestion_rate = std::collections::HashMap::new();
        let mut new_series_rate = std::collections::HashMap::new();
        for (name, tenant) in file.tenants {
            if let Some(c) = tenant.credentials(&name)? {
                credentials.insert(name.clone(), c);
            }
            if let Some(v) = tenant.ingestion_rate {
                ingestion_rate.insert(name.clone(), v);
            }
            if let Some(v) = tenant.new_series_rate {
                anyhow::ensure!(
                    v >= 0.0 && v.is_finite(),
                    "tenant {name:?}: new_series_rate must be a non-negative number"
                );
                new_series_rate.insert(name.clone(), v);
            }
            if let Some(v) = tenant.max_series_per_tenant {
                max_series.insert(name, v);
            }
        }
        let tenants = amber_api::tenant::TenantSettings {
            default_tenant: cli.default_tenant.or(file.default_tenant).unwrap_or_else(|| "anonymous".into()),
            require_tenant: cli.require_tenant || file.require_tenant.unwrap_or(false),
            credentials,
            max_series,
            ingestion_rate,
            new_series_rate,
        };
        let object_store = match cli.object_store_url.or(file.object_store_url) {
            None => None,
            Some(url) => {
                anyhow::ensure!(
                    url.starts_with("s3://") || url.starts_with("file://"),
                    "object_store_url must be s3://bucket[/prefix] or file:///dir, not {url:?}"
                );
                Some(amber_storage::objstore::BucketConfig {
                    url,
                    endpoint: cli.object_store_endpoint.or(file.object_store_endpoint),
                    region: cli.object_store_region.or(file.object_store_region),
                    access_key_id: cli.object_store_access_key_id.or(file.object_store_access_key_id),
                    secret_access_key: cli.object_store_secret_access_key.or(file.object_store_secret_access_key),
                    allow_http: cli.object_store_allow_http || file.object_store_allow_http.unwrap_or(false),
                })
            }
        };
        let role = match cli.role.or(file.role) {
            None => Roles::ALL,
            Some(text) => Roles::parse(&text)?,
        };
        let listen = cli.listen.or(file.listen).unwrap_or_else(|| "0.0.0.0:9201".parse().expect("valid address"));
        let etcd_endpoints = cli.etcd_endpoints.or(file.etcd_endpoints).unwrap_or_default();
        let ring = if etcd_endpoints.is_empty() {
            anyhow::ensure!(
                !role.has(Role::Distributor) && !role.has(Role::Ingester),
                "role = {} works on the ring: set etcd_endpoints",
                role.name()
            );
            None
        } else {
            anyhow::ensure!(
                role.has(Role::Distributor) || role.has(Role::Ingester) || role.has(Role::Querier),
                "etcd_endpoints is a setting of roles distributor, ingester and querier"
            );
            let host = || {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_string())
                    .context("reading the host name for instance_id and instance_addr: set them")
            };
            let instance_id = match cli.instance_id.or(file.instance_id) {
                Some(id) => id,
                None => host()?,
            };
            // Listening on one address: that is where others reach it; on all of them: the host name.
            let instance_addr = match cli.instance_addr.or(file.instance_addr) {
                Some(addr) => addr,
                None if !listen.ip().is_unspecified() => format!("http://{listen}"),
                None => format!("http://{}:{}", host()?, listen.port()),
            };
            anyhow::ensure!(
                instance_addr.starts_with("http://") || instance_addr.starts_with("https://"),
                "instance_addr: {instance_addr:?} is not an http:// or https:// URL"
            );
            let replication_factor = cli.replication_factor.or(file.replication_factor).unwrap_or(3);
            anyhow::ensure!(replication_factor >= 1, "replication_factor must be at least 1");
            Some(RingSettings {
                etcd: amber_ring::EtcdConfig {
                    endpoints: etcd_endpoints,
                    prefix: cli.etcd_prefix.or(file.etcd_prefix).unwrap_or_else(|| "amber/ring/".into()),
                    lease_ttl: duration("ring_lease_ttl", cli.ring_lease_ttl.or(file.ring_lease_ttl), "10s")?,
                },
                instance_id,
                instance_addr,
                replication_factor,
                ingester_write_timeout: duration(
                    "ingester_write_timeout",
                    cli.ingester_write_timeout.or(file.ingester_write_timeout),
                    "10s",
                )?,
            })
        };
        let ingester_urls = cli.ingester_urls.or(file.ingester_urls).unwrap_or_default();
        for url in &ingester_urls {
            anyhow::ensure!(
                url.starts_with("http://") || url.starts_with("https://"),
                "ingester_urls: {url:?} is not an http:// or https:// URL"
            );
        }
        if role.has(Role::Querier) {
            anyhow::ensure!(
                object_store.is_some() || !ingester_urls.is_empty() || ring.is_some(),
                "a querier reads the bucket (object_store_url), the ring (etcd_endpoints) or other Ambers (ingester_urls): set at least one"
            );
        } else {
            anyhow::ensure!(ingester_urls.is_empty(), "ingester_urls is a setting of role = querier");
        }
        anyhow::ensure!(
            !role.has(Role::Compactor) || object_store.is_some(),
            "role = compactor compacts a bucket: set object_store_url"
        );
        let compaction_interval = match cli.compaction_interval.or(file.compaction_interval) {
            Some(text) if humantime::parse_duration(&text).is_ok_and(|d| d.is_zero()) => {
                anyhow::ensure!(
                    !role.has(Role::Compactor),
                    "compaction_interval must be longer than zero in role = compactor"
                );
                None
            }
            text => Some(duration("compaction_interval", text, "5m")?),
        };
        // A single node with a bucket compacts it too (behind the lease): one process suffices.
        let compaction_interval = compaction_interval
            .filter(|_| object_store.is_some() && (role.has(Role::All) || role.has(Role::Compactor)));
        let compaction_window_ms =
            millis(duration("compaction_window", cli.compaction_window.or(file.compaction_window), "1d")?);
        anyhow::ensure!(
            compaction_window_ms > storage.block_duration_ms && compaction_window_ms % storage.block_duration_ms == 0,
            "compaction_window must be a multiple of block_duration, longer than it"
        );
        // Only a role that holds data uploads it; an ingester uploads its copies under its
        // instance id (`<start>.<instance_id>` folders, one index entry per replica).
        storage.upload_sealed_windows = object_store.is_some() && role.holds_data();
        if let (Some(ring), true, true) = (&ring, storage.upload_sealed_windows, role.has(Role::Ingester)) {
            anyhow::ensure!(
                amber_storage::upload::is_valid_replica_name(&ring.instance_id),
                "instance_id {:?} names this ingester's block files in the bucket: use 1 to 128 of a-z A-Z 0-9 - _ .",
                ring.instance_id
            );
        }
        // Empty, as `status/config` shows the default: unset.
        if let Some(text) = cli.local_retention.or(file.local_retention).filter(|t| !t.is_empty()) {
            anyhow::ensure!(
                storage.upload_sealed_windows,
                "local_retention needs object_store_url (and role = all or ingester)"
            );
            let keep = millis(duration("local_retention", Some(text), "0s")?);
            // Sealing must be done with a window before its local copy can go.
            anyhow::ensure!(
                keep >= storage.block_duration_ms + storage.out_of_order_window_ms,
                "local_retention must be at least block_duration plus out_of_order_window"
            );
            storage.local_retention_ms = Some(keep);
        }
        let log_format = cli.log_format.or(file.log_format).unwrap_or_else(|| "text".into());
        anyhow::ensure!(matches!(log_format.as_str(), "text" | "json"), "log_format must be text or json");
        Ok(Config {
            data_dir: cli.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("./data")),
            listen,
            storage,
            api,
            engine,
            tenants,
            maintenance_interval: duration(
                "maintenance_interval",
                cli.maintenance_interval.or(file.maintenance_interval),
                "1m",
            )?,
            log_format,
            trace_url_template: cli.trace_url_template.or(file.trace_url_template).unwrap_or_default(),
            admin_api: cli.enable_admin_api || file.enable_admin_api.unwrap_or(false),
            http_header_read_timeout,
            otlp_grpc_listen: match cli.otlp_grpc_listen.or(file.otlp_grpc_listen).as_deref() {
                None => Some("0.0.0.0:4317".parse().expect("a valid address")),
                Some("") => None,
                Some(addr) => Some(addr.parse().with_context(|| format!("invalid otlp_grpc_listen {addr:?}"))?),
            },
            tls: match (cli.tls_cert_file.or(file.tls_cert_file), cli.tls_key_file.or(file.tls_key_file)) {
                (Some(cert), Some(key)) => Some((cert, key)),
                (None, None) => None,
                _ => anyhow::bail!("tls_cert_file and tls_key_file go together"),
            },
            object_store,
            role,
            ring,
            ingester_urls,
            bucket_cache_bytes: cli.bucket_cache_bytes.or(file.bucket_cache_bytes).unwrap_or(1 << 30),
            compaction_interval,
            compaction_window_ms,
        })
    }
}

/// Structured logs on stderr; `RUST_LOG` filters (default `info`).
pub fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn load(args: &[&str]) -> anyhow::Result<Config> {
        Config::load(Cli::try_parse_from(std::iter::once("amber").chain(args.iter().copied()))?)
    }

    #[test]
    fn defaults_are_the_embedded_setup() {
        let c = load(&[]).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.listen, "0.0.0.0:9201".parse().unwrap());
        assert_eq!(c.storage.retention_ms, 15 * 24 * 3600 * 1000);
        assert_eq!(c.storage.block_duration_ms, 2 * 3600 * 1000);
        assert_eq!(c.storage.out_of_order_window_ms, 3600 * 1000);
        assert_eq!(c.maintenance_interval, Duration::from_secs(60));
        assert!(!c.api.otlp.convert_histograms_to_nhcb);
        assert!(c.object_store.is_none());
        assert!(!c.storage.upload_sealed_windows);
        assert!(c.storage.wal_fsync);
    }

    #[test]
    fn object_store_settings_come_from_flags_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("amber.toml");
        std::fs::write(
            &file,
            "object_store_url = \"s3://metrics/amber\"\nobject_store_region = \"eu-west-1\"\nobject_store_allow_http = true\n",
        )
        .unwrap();
        let c =
            load(&["--config", file.to_str().unwrap(), "--object-store-endpoint", "http://127.0.0.1:7480"]).unwrap();
        let b = c.object_store.unwrap();
        assert_eq!(
            (b.url.as_str(), b.endpoint.as_deref(), b.region.as_deref(), b.allow_http),
            ("s3://metrics/amber", Some("http://127.0.0.1:7480"), Some("eu-west-1"), true)
        );
        assert!(c.storage.upload_sealed_windows);
        let err = load(&["--object-store-url", "gs://x"]).unwrap_err();
        assert_eq!(err.to_string(), "object_store_url must be s3://bucket[/prefix] or file:///dir, not \"gs://x\"");
    }

    #[test]
    fn a_querier_needs_something_to_read_and_ingester_urls_need_a_querier() {
        let c = load(&["--role", "querier", "--ingester-urls", "http://a:9201,http://b:9201"]).unwrap();
        assert_eq!(c.role, Roles::of(Role::Querier));
        assert_eq!(c.ingester_urls, ["http://a:9201", "http://b:9201"]);
        assert!(!c.storage.upload_sealed_windows);
        let err = |args: &[&str]| load(args).unwrap_err().to_string();
        assert_eq!(
            err(&["--role", "querier"]),
            "a querier reads the bucket (object_store_url), the ring (etcd_endpoints) or other Ambers (ingester_urls): set at least one"
        );
        assert_eq!(err(&["--ingester-urls", "http://a:9201"]), "ingester_urls is a setting of role = querier");
        assert_eq!(
            err(&["--role", "store-gateway"]),
            "role must be all, or one or more of distributor, ingester, querier and compactor separated by commas, not \"store-gateway\""
        );
        assert_eq!(
            err(&["--role", "all,querier"]),
            "role = all is the single node: it does not combine with other roles (\"all,querier\")"
        );
        // Several roles in one process: each brings its own settings and checks.
        let one = ["--etcd-endpoints", "a:2379", "--instance-id", "node-1", "--instance-addr", "http://node-1:9201"];
        let c = load(&[&["--role", "distributor, ingester,querier"][..], &one].concat()).unwrap();
        assert_eq!(c.role.name(), "distributor,ingester,querier");
        assert!(c.role.holds_data() && c.role.reads_elsewhere() && c.role.accepts_writes());
        assert!(!c.role.has(Role::Compactor) && !c.role.has(Role::All));
        assert_eq!(c.file_settings()["role"].as_str(), Some("distributor,ingester,querier"));
        assert_eq!(
            err(&["--role", "querier,compactor"]),
            "a querier reads the bucket (object_store_url), the ring (etcd_endpoints) or other Ambers (ingester_urls): set at least one"
        );
        assert_eq!(
            err(&["--role", "compactor,ingester"]),
            "role = ingester,compactor works on the ring: set etcd_endpoints"
        );
        assert_eq!(err(&["--role", "ingester"]), "role = ingester works on the ring: set etcd_endpoints");
        assert_eq!(
            err(&["--etcd-endpoints", "127.0.0.1:2379"]),
            "etcd_endpoints is a setting of roles distributor, ingester and querier"
        );
        let ring = ["--etcd-endpoints", "a:2379,b:2379", "--instance-id", "i-1", "--instance-addr", "http://i-1:9201"];
        let c = load(&[&["--role", "ingester"][..], &ring].concat()).unwrap();
        let r = c.ring.expect("a ring");
        assert_eq!(
            (r.etcd.endpoints, r.etcd.prefix.as_str()),
            (vec!["a:2379".to_string(), "b:2379".into()], "amber/ring/")
        );
        assert_eq!(
            (r.instance_id.as_str(), r.instance_addr.as_str(), r.replication_factor),
            ("i-1", "http://i-1:9201", 3)
        );
        assert_eq!((r.etcd.lease_ttl, r.ingester_write_timeout), (Duration::from_secs(10), Duration::from_secs(10)));
        // An ingester uploads its own copies, named by its instance id.
        let uploading = load(&[&["--role", "ingester", "--object-store-url", "s3://b/p"][..], &ring].concat()).unwrap();
        assert!(uploading.storage.upload_sealed_windows);
        let named = |id: &str| {
            let flags = ["--role", "ingester", "--object-store-url", "s3://b/p", "--etcd-endpoints", "a:2379"];
            load(&[&flags[..], &["--instance-id", id, "--instance-addr", "http://i:9201"]].concat())
        };
        assert_eq!(
            named("ingester 1/a").unwrap_err().to_string(),
            "instance_id \"ingester 1/a\" names this ingester's block files in the bucket: use 1 to 128 of a-z A-Z 0-9 - _ ."
        );
        assert!(named("ingester-1.zone_a").is_ok());
        // Without a bucket, any name does.
        assert!(
            load(
                &[
                    &["--role", "ingester"][..],
                    &ring[..2],
                    &["--instance-id", "a b", "--instance-addr", "http://i:9201"]
                ]
                .concat()
            )
            .is_ok()
        );
        assert_eq!(
            err(&["--role", "querier", "--ingester-urls", "a:9201"]),
            "ingester_urls: \"a:9201\" is not an http:// or https:// URL"
        );
        assert_eq!(load(&[]).unwrap().role, Roles::ALL);
    }

    #[test]
    fn a_compactor_needs_a_bucket_and_a_single_node_with_one_compacts_it() {
        let err = |args: &[&str]| load(args).unwrap_err().to_string();
        assert_eq!(err(&["--role", "compactor"]), "role = compactor compacts a bucket: set object_store_url");
        let bucket = ["--object-store-url", "s3://metrics/amber"];
        let c = load(&[&["--role", "compactor"][..], &bucket].concat()).unwrap();
        assert_eq!(c.role, Roles::of(Role::Compactor));
        assert_eq!(c.compaction_interval, Some(Duration::from_secs(300)));
        assert_eq!(c.compaction_window_ms, 24 * 3600 * 1000);
        assert!(!c.storage.upload_sealed_windows, "a compactor holds no data");
        assert_eq!(
            err(&[&["--role", "compactor", "--compaction-interval", "0s"][..], &bucket].concat()),
            "compaction_interval must be longer than zero in role = compactor"
        );
        assert_eq!(load(&bucket).unwrap().compaction_interval, Some(Duration::from_secs(300)));
        let off = load(&[&["--compaction-interval", "0s"][..], &bucket].concat()).unwrap();
        assert_eq!((off.compaction_interval, off.flags()["compaction-interval"].as_str()), (None, "0s"));
        assert_eq!(load(&[]).unwrap().compaction_interval, None, "no bucket, nothing to compact");
        let q = load(&[&["--role", "querier"][..], &bucket].concat()).unwrap();
        assert_eq!(q.compaction_interval, None);
        let c = load(&[&["--compaction-window", "12h", "--compaction-interval", "1m"][..], &bucket].concat()).unwrap();
        assert_eq!((c.compaction_window_ms, c.compaction_interval), (12 * 3600 * 1000, Some(Duration::from_secs(60))));
        assert_eq!(
            err(&["--compaction-window", "3h"]),
            "compaction_window must be a multiple of block_duration, longer than it"
        );
    }

    #[test]
    fn wal_fsync_is_set_by_flag_or_file() {
        assert!(!load(&["--wal-fsync=false"]).unwrap().storage.wal_fsync);
        assert!(load(&["--wal-fsync", "true"]).unwrap().storage.wal_fsync);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("amber.toml");
        std::fs::write(&file, "wal_fsync = false\n").unwrap();
        let c = load(&["--config", file.to_str().unwrap()]).unwrap();
        assert!(!c.storage.wal_fsync);
        assert_eq!(c.flags()["wal-fsync"], "false");
        assert!(load(&["--config", file.to_str().unwrap(), "--wal-fsync=true"]).unwrap().storage.wal_fsync);
        assert!(load(&["--wal-fsync=maybe"]).is_err());
    }

    #[test]
    fn flags_win_over_the_file_which_wins_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("amber.toml");
        std::fs::write(
            &file,
            "data_dir = \"/var/lib/amber\"\nlisten = \"127.0.0.1:1234\"\nretention = \"30d\"\nmax_labels_per_series = 40\notlp_convert_histograms_to_nhcb = true\n",
        )
        .unwrap();
        let c = load(&["--config", file.to_str().unwrap(), "--listen", "127.0.0.1:5678"]).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/amber"));
        assert_eq!(c.listen, "127.0.0.1:5678".parse().unwrap());
        assert_eq!(c.storage.retention_ms, 30 * 24 * 3600 * 1000);
        assert_eq!(c.api.labels.max_labels_per_series, 40);
        assert!(c.api.otlp.convert_histograms_to_nhcb);
    }

    /// The effective settings, written as a file, load back to the same settings (secrets aside,
    /// which are redacted): every setting has its key, under the name the file uses.
    /// Unset, the labels cache gets a sixteenth of the machine's memory (never below the
    /// floor); set, exactly what was asked.
    #[test]
    fn the_labels_cache_budget_follows_the_machine_unless_set() {
        let floor = 512 << 20;
        let unset = load(&[]).unwrap().api.labels_cache_bytes;
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
        let kib: usize = meminfo.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert_eq!(unset, (kib * 1024 / 16).max(floor));
        assert_eq!(load(&["--labels-cache-bytes", "1048576"]).unwrap().api.labels_cache_bytes, 1 << 20);
    }

    #[test]
    fn file_settings_are_the_file_that_gives_the_same_settings() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("amber.toml");
        std::fs::write(
            &file,
            "retention = \"30d\"\ningestion_rate = 2500.5\notlp_grpc_listen = \"\"\notlp_promote_resource_attributes = [\"service.instance.id\"]\n\
             object_store_url = \"s3://metrics/amber\"\nobject_store_endpoint = \"http://127.0.0.1:7480\"\nobject_store_secret_access_key = \"SK\"\n\
             [tenants.team-a]\nmax_series_per_tenant = 5000\nbasic_auth_username = \"a\"\nbasic_auth_password = \"hunter2\"\n",
        )
        .unwrap();
        let c = load(&["--config", file.to_str().unwrap(), "--new-series-rate", "500"]).unwrap();
        let settings = c.file_settings();
        let mut written = settings.clone();
        // Redacted secrets cannot come back; give the file its password again.
        written["tenants"]["team-a"].as_table_mut().unwrap().insert("basic_auth_password".into(), "hunter2".into());
        written.insert("object_store_secret_access_key".into(), "SK".into());
        let again = dir.path().join("again.toml");
        std::fs::write(&again, toml::to_string(&written).unwrap()).unwrap();
        let reloaded = load(&["--config", again.to_str().unwrap()]).unwrap();
        assert_eq!(reloaded.file_settings(), settings);
        assert_eq!(reloaded.flags(), c.flags());

        let flags = c.flags();
        assert_eq!(flags["retention"], "30days");
        assert_eq!(flags["new-series-rate"], "500");
        assert_eq!(flags["otlp-grpc-listen"], "");
        assert!(!flags.contains_key("tenants"));
        let yaml = c.settings_yaml();
        for line in [
            "retention: \"30days\"\n",
            "ingestion_rate: 2500.5\n",
            "new_series_rate: 500.0\n",
            "otlp_promote_resource_attributes: [\"service.instance.id\"]\n",
            "require_tenant: false\n",
            "tenants:\n  \"team-a\":\n    basic_auth_password: \"<secret>\"\n    basic_auth_username: \"a\"\n    max_series_per_tenant: 5000\n",
        ] {
            assert!(yaml.contains(line), "{line:?} not in:\n{yaml}");
        }
        assert!(yaml.contains("object_store_secret_access_key: \"<secret>\"\n"), "{yaml}");
        assert!(!yaml.contains("hunter2") && !yaml.contains("\"SK\""), "{yaml}");
        assert_eq!(flags["object-store-url"], "s3://metrics/amber");
    }

    #[test]
    fn bad_settings_are_named() {
        let err = load(&["--retention", "forever"]).unwrap_err();
        assert_eq!(err.to_string(), "invalid duration for retention: \"forever\"");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("amber.toml");
        std::fs::write(&file, "retension = \"1d\"\n").unwrap();
        let err = load(&["--config", file.to_str().unwrap()]).unwrap_err();
        assert!(format!("{err:#}").contains("unknown field `retension`"), "{err:#}");
    }
}
