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
    /// Series a tenant may have; samples of further new series get a 400 [default: 1000000].
    #[arg(long, env = "AMBER_MAX_SERIES_PER_TENANT")]
    pub max_series_per_tenant: Option<u64>,
    /// Samples plus exemplars per second a tenant may write, 0 for no limit; more get a 429 [default: 0].
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
    pub admin_api: bool,
    /// How long a client may take to send a request's headers (or to start the next request on a
    /// kept-alive connection).
    pub http_header_read_timeout: Duration,
    /// Certificate chain and key files: serve HTTPS instead of HTTP.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Where the OTLP gRPC receiver listens; `None` when disabled.
    pub otlp_grpc_listen: Option<SocketAddr>,
}

impl Config {
    /// The settings in force by flag name, as `/api/v1/status/flags` serves them (credentials
    /// and per-tenant settings are left out).
    pub fn flags(&self) -> std::collections::BTreeMap<String, String> {
        let ms = |v: i64| humantime::format_duration(Duration::from_millis(v.max(0) as u64)).to_string();
        let d = |v: Duration| humantime::format_duration(v).to_string();
        let (api, storage, engine) = (&self.api, &self.storage, &self.engine);
        [
            ("data-dir", self.data_dir.display().to_string()),
            ("listen", self.listen.to_string()),
            ("retention", ms(storage.retention_ms)),
            ("out-of-order-window", ms(storage.out_of_order_window_ms)),
            ("block-duration", ms(storage.block_duration_ms)),
            ("maintenance-interval", d(self.maintenance_interval)),
            ("max-body-bytes", api.max_body_bytes.to_string()),
            ("max-decoded-body-bytes", api.max_decoded_bytes.to_string()),
            ("max-inflight-writes", api.max_inflight_writes.to_string()),
            ("max-inflight-write-bytes", api.max_inflight_write_bytes.to_string()),
            ("max-series-per-tenant", api.max_series_per_tenant.to_string()),
            ("ingestion-rate", api.ingestion_rate.to_string()),
            ("ingestion-burst", api.ingestion_burst.to_string()),
            ("new-series-rate", api.new_series_rate.to_string()),
            ("new-series-burst", api.new_series_burst.to_string()),
            ("max-concurrent-queries", api.max_concurrent_queries.to_string()),
            ("min-free-disk-bytes", api.min_free_disk_bytes.to_string()),
            ("max-exemplars-per-series-per-window", storage.max_exemplars_per_series_per_window.to_string()),
            ("max-labels-per-series", api.labels.max_labels_per_series.to_string()),
            ("max-label-name-length", api.labels.max_label_name_length.to_string()),
            ("max-label-value-length", api.labels.max_label_value_length.to_string()),
            ("http-header-read-timeout", d(self.http_header_read_timeout)),
            ("http-body-read-timeout", d(api.body_read_timeout)),
            ("query-lookback-delta", ms(engine.lookback_delta_ms)),
            ("query-max-samples", engine.limits.max_samples.to_string()),
            ("query-timeout", d(engine.limits.timeout)),
            ("default-tenant", self.tenants.default_tenant.clone()),
            ("require-tenant", self.tenants.require_tenant.to_string()),
            ("enable-admin-api", self.admin_api.to_string()),
            ("wal-fsync", storage.wal_fsync.to_string()),
            ("otlp-grpc-listen", self.otlp_grpc_listen.map(|a| a.to_string()).unwrap_or_default()),
            ("otlp-convert-histograms-to-nhcb", api.otlp.convert_histograms_to_nhcb.to_string()),
            ("otlp-promote-resource-attributes", api.otlp.promote_resource_attributes.join(",")),
            ("tls", self.tls.is_some().to_string()),
            ("log-format", self.log_format.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
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
        let log_format = cli.log_format.or(file.log_format).unwrap_or_else(|| "text".into());
        anyhow::ensure!(matches!(log_format.as_str(), "text" | "json"), "log_format must be text or json");
        Ok(Config {
            data_dir: cli.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("./data")),
            listen: cli.listen.or(file.listen).unwrap_or_else(|| "0.0.0.0:9201".parse().expect("valid address")),
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
        assert!(c.storage.wal_fsync);
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
