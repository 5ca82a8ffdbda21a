//! Wiring: open the store, start the maintenance loop (sealing, retention), the uploader and
//! the compactor, serve HTTP, and shut down cleanly on SIGTERM or Ctrl-C.

use std::sync::Arc;

use amber_storage::Storage;
use amber_storage::bucket_source::{BucketSource, BucketSourceOptions, RangeCache};
use amber_storage::compactor::{Compactor, CompactorMetrics, CompactorOptions};
use amber_storage::objstore::{Metered, ObjectStorage};
use amber_storage::source::{Merged, ReadSource};
use anyhow::Context;
use tokio::sync::watch;

use amber_api::distributor::{Distributor, DistributorOptions};
use amber_api::limit_share::LimitShare;
use amber_api::ring_source::RingSource;
use amber_ring::{Member, MemberState, Registration, RingWatch};

use crate::config::{Config, RingSettings, Role};

/// How long a start waits for etcd before it fails.
const ETCD_START_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// What a querier (or a distributor) reads: the ingesters on the ring and the Ambers of
/// `--ingester-urls` for recent data (asked first: at a timestamp both hold, theirs wins), then
/// the bucket.
fn querier_source(
    config: &Config,
    ring: Option<&Arc<RingWatch>>,
    bucket: Option<Arc<BucketSource>>,
) -> anyhow::Result<Arc<dyn ReadSource>> {
    let runtime = tokio::runtime::Handle::current();
    let mut sources: Vec<Arc<dyn ReadSource>> = Vec::new();
    if let (Some(ring), Some(settings)) = (ring, &config.ring) {
        let may_miss = settings.replication_factor - (settings.replication_factor / 2 + 1);
        let timeout = config.engine.limits.timeout;
        sources.push(Arc::new(RingSource::new(ring.clone(), may_miss, timeout, runtime.clone())));
    }
    for url in &config.ingester_urls {
        let peer = amber_api::remote_source::RemoteAmber::new(url, config.engine.limits.timeout, runtime.clone())
            .with_context(|| format!("ingester_urls: {url}"))?;
        sources.push(Arc::new(peer));
    }
    tracing::info!(ring = ring.is_some(), ingesters = config.ingester_urls.len(), bucket = bucket.is_some(), "reads");
    if let Some(b) = bucket {
        sources.push(b);
    }
    Ok(Arc::new(Merged(sources)))
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)?;
    let data_dir = config.data_dir.clone();
    let options = config.storage.clone();
    // Every request to the bucket, uploads and reads, is counted (`amber_object_store_*`).
    let bucket = match &config.object_store {
        Some(b) => {
            let opened: Arc<dyn ObjectStorage> = Arc::new(amber_storage::objstore::Bucket::open(b)?);
            tracing::info!(url = %b.url, role = config.role.name(), "object store");
            Some(Arc::new(Metered::new(opened)))
        }
        None => None,
    };
    let storage = Arc::new(tokio::task::spawn_blocking(move || Storage::open(&data_dir, options)).await??);
    tracing::info!(data_dir = %config.data_dir.display(), "store open");

    let mut state =
        amber_api::AppState::new(storage.clone(), config.engine.clone(), config.api.clone(), config.tenants.clone())
            .with_flags(config.flags())
            .with_config_yaml(config.settings_yaml())
            .with_trace_url_template(config.trace_url_template.clone());
    let roles = config.role;
    // Reads from the ring: a querier's, and a distributor's too; an ingester counts its members
    // for its part of the tenants' limits.
    let ring = match &config.ring {
        Some(r) if roles.reads_elsewhere() || roles.has(Role::Ingester) => {
            amber_ring::agree_replication_factor(&r.etcd, r.replication_factor, ETCD_START_TIMEOUT)
                .await
                .context("checking the ring's replication factor in etcd")?;
            let watch = RingWatch::start(&r.etcd, ETCD_START_TIMEOUT).await.context("watching the ring in etcd")?;
            tracing::info!(endpoints = ?r.etcd.endpoints, members = watch.ring().members().len(), "ring");
            Some(Arc::new(watch))
        }
        _ => None,
    };
    let compactor_metrics = config.compaction_interval.map(|_| Arc::new(CompactorMetrics::default()));
    let bucket_reads = match &bucket {
        Some(b) => {
            // Cached on local disk: block files never change once written.
            let cache = Arc::new(
                RangeCache::open(b.clone(), &config.data_dir.join("bucket-cache"), config.bucket_cache_bytes)
                    .context("opening the bucket cache")?,
            );
            state = state.with_bucket_meters(amber_api::BucketMeters {
                requests: b.clone(),
                cache: Some(cache.clone()),
                compactor: compactor_metrics.clone(),
            });
            let options =
                BucketSourceOptions { trace_id_labels: config.storage.trace_id_labels.clone(), ..Default::default() };
            Some(move || BucketSource::new(cache.clone(), tokio::runtime::Handle::current(), options.clone()))
        }
        None => None,
    };
    // This store's own answers: with local copies expired, the bucket for the windows before
    // the local horizon.
    if let (true, Some(_), Some(reads)) = (roles.holds_data(), config.storage.local_retention_ms, &bucket_reads) {
        let horizon = storage.clone();
        let reads = reads().with_windows_before(Arc::new(move || horizon.local_horizon()));
        let local = amber_storage::source::Local::new(storage.clone(), config.tenants.default_tenant.clone());
        state = state.with_source(Arc::new(Merged(vec![Arc::new(local), Arc::new(reads)])));
    }
    if let (Some(watch), Some(r), true) = (&ring, &config.ring, roles.has(Role::Ingester)) {
        let replication_factor = r.replication_factor;
        state = state.with_limit_share(LimitShare::Ingester { ring: watch.clone(), replication_factor });
    }
    // An ingester that also reads or writes through the ring answers its peers (distributors
    // forwarding writes, queriers fanning out) from that store, never through the ring again.
    let peers_state = (roles.holds_data() && roles.reads_elsewhere()).then(|| state.clone());
    if let Some(watch) = &ring {
        state = state.with_ring(watch.clone());
        if roles.reads_elsewhere() {
            let bucket = bucket_reads.as_ref().map(|reads| Arc::new(reads()));
            state = state.with_source(querier_source(&config, Some(watch), bucket)?);
        }
    } else if roles.reads_elsewhere() || !roles.holds_data() {
        // A querier of --ingester-urls and the bucket, or a compactor reading the bucket.
        let bucket = bucket_reads.as_ref().map(|reads| Arc::new(reads()));
        state = state.with_source(querier_source(&config, None, bucket)?);
    }
    if let (Some(watch), Some(r), true) = (&ring, &config.ring, roles.has(Role::Distributor)) {
        let options =
            DistributorOptions { replication_factor: r.replication_factor, timeout: r.ingester_write_timeout };
        state = state.with_distributor(Arc::new(Distributor::new(watch.clone(), options)));
    }
    // Distributors count each other, each enforcing its part of the ingestion rate.
    let distributors = match (&config.ring, roles.has(Role::Distributor)) {
        (Some(r), true) => {
            let (registration, watch) = register_distributor(r).await?;
            state = state.with_limit_share(LimitShare::Distributor { distributors: Arc::new(watch) });
            Some(registration)
        }
        _ => None,
    };
    // None holds data of its own: nothing to seal, upload or expire.
    let no_data = !roles.holds_data();
    let (stop_tx, stop_rx) = watch::channel(false);
    let compaction = match (&bucket, config.compaction_interval, compactor_metrics) {
        (Some(b), Some(interval), Some(metrics)) => {
            let opts = compactor_options(&config, interval);
            tracing::info!(holder = %opts.holder, ?interval, window_ms = opts.window_ms, "compactor");
            Some(tokio::spawn(compact(b.clone(), opts, interval, metrics, stop_rx.clone())))
        }
        _ => None,
    };
    // An ingester's copies are one replica's among several: named by its instance id.
    let replica = config.ring.as_ref().filter(|_| roles.has(Role::Ingester)).map(|r| r.instance_id.clone());
    let uploader = bucket.filter(|_| !no_data).map(|bucket| Uploader {
        storage: storage.clone(),
        bucket,
        default_tenant: config.tenants.default_tenant.clone(),
        replica,
        metrics: state.metrics.clone(),
    });
    let uploads = uploader.clone().map(|u| tokio::spawn(u.run(stop_rx.clone())));
    let maintenance = (!no_data)
        .then(|| tokio::spawn(maintain(storage.clone(), state.metrics.clone(), config.maintenance_interval, stop_rx)));

    let accepts_writes = roles.accepts_writes();
    let app = amber_api::router(state.clone(), config.admin_api, accepts_writes);
    let app = match peers_state {
        Some(peers) => amber_api::answer_peers_with(app, amber_api::router(peers, config.admin_api, accepts_writes)),
        None => app,
    };
    // One signal stops every listener.
    let (stopping_tx, stopping) = watch::channel(false);
    let stopping_tx = Arc::new(stopping_tx);
    let signalled = stopping_tx.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        signalled.send(true).ok();
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|&v| v).await;
    };
    let grpc = match config.otlp_grpc_listen.filter(|_| accepts_writes) {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the OTLP gRPC listener on {addr} (--otlp-grpc-listen)"))?;
            tracing::info!(addr = %listener.local_addr()?, "listening (OTLP gRPC)");
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let server = tonic::transport::Server::builder()
                .add_service(amber_api::otlp::grpc::service(state.clone()))
                .serve_with_incoming_shutdown(incoming, stopped(stopping.clone()));
            Some(tokio::spawn(server))
        }
        None => None,
    };
    // One server for HTTP and HTTPS: axum_server exposes hyper's connection settings, and its
    // handle drains connections on shutdown.
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    let stop = stopped(stopping.clone());
    tokio::spawn(async move {
        stop.await;
        stopper.graceful_shutdown(Some(std::time::Duration::from_secs(30)));
    });
    // An ingester joins the ring once it listens, and leaves it when it stops.
    let registration = match (&config.ring, roles.has(Role::Ingester)) {
        (Some(r), true) => {
            Some(tokio::spawn(register(r.clone(), handle.clone(), stopping.clone(), stopping_tx.clone())))
        }
        _ => None,
    };
    let app = app.into_make_service();
    match &config.tls {
        None => {
            let mut server = axum_server::bind(config.listen).handle(handle);
            limit_connections(server.http_builder(), config.http_header_read_timeout);
            tracing::info!(addr = %config.listen, "listening");
            server.serve(app).await?;
        }
        Some((cert, key)) => {
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .with_context(|| format!("loading TLS certificate {} and key {}", cert.display(), key.display()))?;
            let mut server = axum_server::bind_rustls(config.listen, tls).handle(handle);
            limit_connections(server.http_builder(), config.http_header_read_timeout);
            tracing::info!(addr = %config.listen, "listening (TLS)");
            server.serve(app).await?;
        }
    }

    if let Some(grpc) = grpc {
        grpc.await??;
    }
    let registration = match registration {
        Some(r) => Some(r.await?.context("registering on the ring")?),
        None => None,
    };
    tracing::info!("shutting down");
    stop_tx.send(true).ok();
    if let Some(m) = maintenance {
        m.await?;
    }
    if let Some(u) = uploads {
        u.await?;
    }
    if let Some(c) = compaction {
        c.await?;
    }
    if let Some(d) = distributors {
        d.leave(ETCD_START_TIMEOUT).await.context("leaving the distributors")?;
    }
    if let Some(r) = registration {
        if let Some(u) = uploader {
            u.upload_everything().await;
        }
        // Sealed and uploaded what it could: its replicas and its WAL hold the rest.
        r.leave(ETCD_START_TIMEOUT).await.context("leaving the ring")?;
        tracing::info!("left the ring");
    }
    // Every acknowledged write is already synced; dropping the last handle closes RocksDB.
    drop(storage);
    Ok(())
}

/// Registers this distributor beside the ring, where distributors count each other, and watches
/// them.
async fn register_distributor(settings: &RingSettings) -> anyhow::Result<(Registration, RingWatch)> {
    let etcd = amber_ring::EtcdConfig {
        prefix: amber_ring::distributors_prefix(&settings.etcd.prefix),
        ..settings.etcd.clone()
    };
    let member = Member {
        id: settings.instance_id.clone(),
        addr: settings.instance_addr.clone(),
        state: MemberState::Active,
        tokens: Vec::new(),
    };
    let registration =
        Registration::start(&etcd, member, ETCD_START_TIMEOUT).await.context("registering this distributor in etcd")?;
    let watch = RingWatch::start(&etcd, ETCD_START_TIMEOUT).await.context("watching the distributors in etcd")?;
    tracing::info!(id = %settings.instance_id, distributors = watch.ring().members().len(), "registered as a distributor");
    Ok((registration, watch))
}

/// Puts this ingester on the ring, Active, once its HTTP server listens; marks it Leaving when
/// the process starts to stop, so distributors send it nothing new while it drains. A failure
/// to register stops the process. Returns the registration to leave with at the end.
async fn register(
    settings: RingSettings,
    server: axum_server::Handle<std::net::SocketAddr>,
    mut stopping: watch::Receiver<bool>,
    stop: Arc<watch::Sender<bool>>,
) -> anyhow::Result<Registration> {
    let registered = async {
        server.listening().await.context("the HTTP server did not start")?;
        let member = Member {
            tokens: amber_ring::tokens_for(&settings.instance_id, amber_ring::DEFAULT_TOKENS),
            id: settings.instance_id.clone(),
            addr: settings.instance_addr.clone(),
            state: MemberState::Active,
        };
        let registration = Registration::start(&settings.etcd, member, ETCD_START_TIMEOUT).await?;
        tracing::info!(id = %settings.instance_id, addr = %settings.instance_addr, "joined the ring");
        anyhow::Ok(registration)
    };
    let registration = match registered.await {
        Ok(r) => r,
        Err(e) => {
            stop.send(true).ok();
            return Err(e);
        }
    };
    let _ = stopping.wait_for(|&v| v).await;
    if let Err(e) = registration.set_state(MemberState::Leaving, ETCD_START_TIMEOUT).await {
        tracing::warn!(error = %e, "could not mark this ingester leaving; its lease ends its entry");
    }
    Ok(registration)
}

/// Seals head data into blocks and enforces retention every `interval` until told to stop; each
/// finished sealing pass is counted on `/metrics` (`amber_seal_passes_total`, with its duration).
async fn maintain(
    storage: Arc<Storage>,
    metrics: Arc<amber_api::metrics::Metrics>,
    interval: std::time::Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let s = storage.clone();
        let metrics = metrics.clone();
        let started = std::time::Instant::now();
        let result = tokio::task::spawn_blocking(move || {
            let now = amber_storage::now_ms();
            let sealed = s.seal(now)?;
            metrics.observe_seal(started.elapsed());
            let deleted = s.enforce_retention(now)?;
            let expired = s.expire_local_copies(now)?;
            Ok::<_, amber_storage::Error>((sealed, deleted, expired))
        })
        .await;
        match result {
            Ok(Ok((sealed, deleted, expired))) => {
                if sealed.sample_blocks_written + sealed.exemplar_blocks_written > 0 || deleted + expired > 0 {
                    tracing::info!(
                        ?sealed,
                        windows_deleted = deleted,
                        local_copies_deleted = expired,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "maintenance"
                    );
                }
            }
            Ok(Err(e)) => tracing::error!(error = %e, "maintenance failed; retrying next interval"),
            Err(e) => tracing::error!(error = %e, "maintenance task panicked"),
        }
    }
}

/// How often the uploader looks for sealed windows waiting for upload, and the longest it waits
/// after failures (it doubles the wait from the first on each failure in a row).
const UPLOAD_POLL: std::time::Duration = std::time::Duration::from_secs(1);
const UPLOAD_MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(8);

/// Uploads this store's sealed windows to the bucket.
#[derive(Clone)]
struct Uploader {
    storage: Arc<Storage>,
    bucket: Arc<Metered>,
    default_tenant: String,
    /// This ingester's instance id on a ring; `None` on a single node.
    replica: Option<String>,
    metrics: Arc<amber_api::metrics::Metrics>,
}

/// How long a leaving ingester tries to upload what it holds before it goes anyway.
const LEAVE_UPLOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

impl Uploader {
    /// One upload of every window waiting for it at `now`.
    async fn pass(&self, now: i64) -> Result<amber_storage::upload::UploadReport, amber_storage::upload::UploadError> {
        let replica = self.replica.as_deref();
        let result = amber_storage::upload::upload_pending(
            &self.storage,
            self.bucket.as_ref(),
            &self.default_tenant,
            replica,
            now,
        )
        .await;
        match &result {
            Ok(r) => self.metrics.observe_upload(r.block_files_uploaded, r.bytes_uploaded, false),
            Err(_) => self.metrics.observe_upload(0, 0, true),
        }
        result
    }

    /// Uploads sealed windows until told to stop. Nothing here can hold up a write: windows
    /// wait on local disk (`amber_upload_pending_windows`) while the store is down.
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut wait = UPLOAD_POLL;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
            let started = std::time::Instant::now();
            // A pass stopped by shutdown leaves its window marked: the next start repeats it.
            let result = tokio::select! {
                r = self.pass(amber_storage::now_ms()) => r,
                _ = stop.changed() => return,
            };
            match result {
                Ok(r) => {
                    if r.windows_uploaded > 0 {
                        tracing::info!(?r, elapsed_ms = started.elapsed().as_millis() as u64, "uploaded");
                    }
                    wait = UPLOAD_POLL;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?wait, "upload failed; sealed windows wait locally");
                    wait = (wait * 2).min(UPLOAD_MAX_BACKOFF);
                }
            }
        }
    }

    /// A leaving ingester's last act: seals its whole head, open windows included, and uploads
    /// every window it holds, so that its copy is in the bucket when it goes. Retried until
    /// [`LEAVE_UPLOAD_TIMEOUT`]; what is left then waits for its next start, while its
    /// replicas hold the same series. If it comes back, later writes to those windows are
    /// sealed into the same blocks and its copy is uploaded again, whole.
    async fn upload_everything(&self) {
        let started = std::time::Instant::now();
        let s = self.storage.clone();
        match tokio::task::spawn_blocking(move || s.seal(i64::MAX)).await {
            Ok(Ok(r)) => tracing::info!(?r, "sealed the whole head before leaving"),
            Ok(Err(e)) => tracing::warn!(error = %e, "sealing before leaving failed; the WAL keeps the head"),
            Err(e) => tracing::warn!(error = %e, "sealing before leaving panicked"),
        }
        let mut wait = UPLOAD_POLL;
        let deadline = tokio::time::Instant::now() + LEAVE_UPLOAD_TIMEOUT;
        loop {
            // Every marked window, whether or not it has closed: nothing more is coming here.
            match tokio::time::timeout_at(deadline, self.pass(i64::MAX)).await {
                Ok(Ok(r)) => {
                    tracing::info!(?r, elapsed_ms = started.elapsed().as_millis() as u64, "uploaded before leaving");
                    return;
                }
                Ok(Err(e)) if tokio::time::Instant::now() + wait < deadline => {
                    tracing::warn!(error = %e, retry_in = ?wait, "upload before leaving failed");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(UPLOAD_MAX_BACKOFF);
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "upload before leaving failed; leaving the rest to the next start");
                    return;
                }
                Err(_) => {
                    tracing::warn!(timeout = ?LEAVE_UPLOAD_TIMEOUT, "upload before leaving timed out");
                    return;
                }
            }
        }
    }
}

/// How long the compactor keeps an object no index names before deleting it: far longer than an
/// upload takes from putting its file to recording it in the index.
const ORPHAN_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// The compactor's settings from the configuration.
fn compactor_options(config: &Config, interval: std::time::Duration) -> CompactorOptions {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let millis = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    CompactorOptions {
        // Unique per process: a restarted compactor waits for its predecessor's lease to expire
        // rather than assume it is the same one.
        holder: format!("{}:{}:{}", host.trim(), std::process::id(), amber_storage::now_ms()),
        window_ms: config.compaction_window_ms,
        settle_ms: 2 * config.storage.out_of_order_window_ms,
        retention_ms: config.storage.retention_ms,
        orphan_grace_ms: millis(ORPHAN_GRACE),
        // Three passes (at least 10 s): a holder that misses two renewals in a row keeps it.
        lease_ms: millis(interval * 3).max(10_000),
    }
}

/// Runs a compaction pass every `interval` (the first one interval after the start) until told
/// to stop. A pass cut short by shutdown or a failure leaves the bucket consistent; the next
/// pass finishes it.
async fn compact(
    bucket: Arc<Metered>,
    opts: CompactorOptions,
    interval: std::time::Duration,
    metrics: Arc<CompactorMetrics>,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let started = std::time::Instant::now();
        let compactor = Compactor::new(bucket.as_ref(), opts.clone(), &metrics);
        let result = tokio::select! {
            r = compactor.run_pass(amber_storage::now_ms()) => r,
            _ = stop.changed() => return,
        };
        match result {
            Ok(r) if !r.failures.is_empty() => {
                tracing::warn!(failures = ?r.failures, ?r, "compaction left tenants for the next pass")
            }
            Ok(r) if r.windows_merged + r.windows_expired + r.objects_deleted > 0 => {
                tracing::info!(?r, elapsed_ms = started.elapsed().as_millis() as u64, "compacted");
            }
            Ok(r) if !r.lease_held => tracing::debug!("another compactor holds the lease"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "compaction pass failed; retrying next interval"),
        }
    }
}

/// Closes connections whose client takes longer than `header_read_timeout` to send a request's
/// headers — counted from the connection's start and, on a kept-alive connection, from the end of
/// the previous response — so slow or idle clients (slowloris) cannot hold sockets and tasks.
fn limit_connections(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    header_read_timeout: std::time::Duration,
) {
    builder.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_read_timeout);
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
