//! The ring's membership in etcd: each ingester's entry under a lease, and a watched copy of all
//! entries for the members that route requests.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
    WatchOptions,
};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::ring::{Member, MemberState, Ring};

/// Where the ring lives in etcd.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// `host:port` or `http://host:port` of each etcd member.
    pub endpoints: Vec<String>,
    /// Prefix of the members' keys, e.g. "amber/ring/": a member's key is the prefix and its id.
    pub prefix: String,
    /// Time to live of a registration's lease: a member that stops keeping it alive (its process
    /// died) leaves the ring that long after its last keep-alive.
    pub lease_ttl: Duration,
}

impl EtcdConfig {
    pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("etcd at {endpoints}: {operation}: {source}")]
    Etcd { endpoints: String, operation: String, source: etcd_client::Error },
    #[error("etcd at {endpoints}: {operation}: no answer within {timeout:?}")]
    Timeout { endpoints: String, operation: String, timeout: Duration },
    #[error(
        "the replication factor here is {ours}, but the ring in etcd at {endpoints} is written with {theirs} ({key}): every distributor and querier of a ring must use the same --replication-factor (to change it, stop them all and delete the key)"
    )]
    ReplicationFactor { endpoints: String, key: String, ours: usize, theirs: String },
}

/// The key holding the replication factor of the ring under `prefix`: beside the members'
/// keys, not among them (`amber/ring/` → `amber/ring.replication-factor`).
pub fn replication_factor_key(prefix: &str) -> String {
    format!("{}.replication-factor", prefix.trim_end_matches('/'))
}

/// The prefix under which the distributors of the ring under `prefix` register, beside the
/// ring (`amber/ring/` → `amber/ring.distributors/`): they own no tokens, and are counted so that
/// each enforces its part of the ingestion rate.
pub fn distributors_prefix(prefix: &str) -> String {
    format!("{}.distributors/", prefix.trim_end_matches('/'))
}

/// Records `rf` as the ring's replication factor when none is recorded yet, else checks that
/// it is the one recorded. Distributors write each series to `rf` ingesters and queriers allow
/// `rf - quorum` of them to miss: a querier told a larger factor than the writes used would
/// answer with holes when it should fail, so a process with another factor refuses to start.
pub async fn agree_replication_factor(config: &EtcdConfig, rf: usize, timeout: Duration) -> Result<(), Error> {
    let etcd = Etcd::connect(config).await?;
    let key = replication_factor_key(&config.prefix);
    let ours = rf.to_string();
    let deadline = Some(Instant::now() + timeout);
    let response = etcd
        .retry(&format!("agree on {key}"), deadline, |mut client| {
            // Put if the key was never created, else read it: one transaction, so two processes
            // starting at once cannot both record theirs.
            let txn = Txn::new()
                .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key.as_str(), ours.as_str(), None)])
                .or_else([TxnOp::get(key.as_str(), None)]);
            async move { client.txn(txn).await }
        })
        .await?;
    if response.succeeded() {
        info!(key, replication_factor = rf, "recorded the ring's replication factor");
        return Ok(());
    }
    let theirs = response
        .op_responses()
        .into_iter()
        .find_map(|op| match op {
            TxnOpResponse::Get(get) => get.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
            _ => None,
        })
        .unwrap_or_default();
    if theirs == ours {
        Ok(())
    } else {
        Err(Error::ReplicationFactor { endpoints: etcd.endpoints, key, ours: rf, theirs })
    }
}

/// One etcd call is given up after this long and retried: a call to a killed leader would
/// otherwise wait on its connection.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A client of the cluster and the name its errors give it.
#[derive(Clone)]
struct Etcd {
    client: Client,
    endpoints: String,
}

impl Etcd {
    async fn connect(config: &EtcdConfig) -> Result<Etcd, Error> {
        let endpoints = config.endpoints.join(",");
        // The client connects lazily: this fails only on malformed endpoints. HTTP/2 keep-alives
        // find a dead connection (a partitioned member) that TCP alone would not notice for
        // minutes. Not more often than every 5 s: etcd closes the connection of a client that
        // pings more often (`--grpc-keepalive-min-time`, "too many pings"), which broke the
        // ring watch every few seconds.
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        match Client::connect(&config.endpoints, Some(options)).await {
            Ok(client) => Ok(Etcd { client, endpoints }),
            Err(source) => Err(Error::Etcd { endpoints, operation: "connect".into(), source }),
        }
    }

    /// Runs `call` until it succeeds, backing off between attempts; until `deadline`, or forever
    /// when there is none (background tasks, which keep the last state meanwhile).
    async fn retry<T, F, Fut>(&self, operation: &str, deadline: Option<Instant>, mut call: F) -> Result<T, Error>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let attempt = match deadline {
                Some(deadline) => ATTEMPT_TIMEOUT.min(deadline.saturating_duration_since(Instant::now())),
                None => ATTEMPT_TIMEOUT,
            };
            let failure = match tokio::time::timeout(attempt, call(self.client.clone())).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(source)) => {
                    Error::Etcd { endpoints: self.endpoints.clone(), operation: operation.into(), source }
                }
                Err(_) => {
                    Error::Timeout { endpoints: self.endpoints.clone(), operation: operation.into(), timeout: attempt }
                }
            };
            if deadline.is_some_and(|deadline| Instant::now() + backoff >= deadline) {
                return Err(failure);
            }
            warn!(%failure, ?backoff, "retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// All members under `prefix` and the revision they were read at.
    async fn list(&self, prefix: &str, deadline: Option<Instant>) -> Result<(BTreeMap<String, Member>, i64), Error> {
        let response = self
            .retry(&format!("list {prefix}"), deadline, |mut client| async move {
                client.get(prefix, Some(GetOptions::new().with_prefix())).await
            })
            .await?;
        let revision = response.header().map_or(0, |header| header.revision());
        let entries = response.kvs().iter().filter_map(|kv| parse_entry(kv.key(), kv.value())).collect();
        Ok((entries, revision))
    }
}

/// A member's entry: its key and the member it holds. An entry that is not a member (written by
/// hand, or by a newer version) is left out of the ring, with a warning.
fn parse_entry(key: &[u8], value: &[u8]) -> Option<(String, Member)> {
    let key = String::from_utf8_lossy(key).into_owned();
    match serde_json::from_slice(value) {
        Ok(member) => Some((key, member)),
        Err(error) => {
            warn!(key, %error, "ignoring a ring entry that is not a member");
            None
        }
    }
}

/// A cached, watched copy of the ring: requests read it and never wait on etcd.
pub struct RingWatch {
    ring: watch::Receiver<Arc<Ring>>,
    task: JoinHandle<()>,
}

impl RingWatch {
    /// Lists the prefix (retrying until `start_timeout`, an error after), then watches it in the
    /// background from the listed revision. On any watch or connection error the task lists and
    /// watches again, keeping the last ring meanwhile.
    pub async fn start(config: &EtcdConfig, start_timeout: Duration) -> Result<RingWatch, Error> {
        let etcd = Etcd::connect(config).await?;
        let (entries, revision) = etcd.list(&config.prefix, Some(Instant::now() + start_timeout)).await?;
        let (sender, ring) = watch::channel(Arc::new(Ring::new(entries.values().cloned())));
        info!(endpoints = etcd.endpoints, prefix = config.prefix, members = entries.len(), "watching the ring");
        let task = tokio::spawn(watch_ring(etcd, config.prefix.clone(), entries, revision, sender));
        Ok(RingWatch { ring, task })
    }

    /// The current ring (clones an `Arc`).
    pub fn ring(&self) -> Arc<Ring> {
        self.ring.borrow().clone()
    }

    /// Notified of every new ring.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Ring>> {
        self.ring.clone()
    }
}

impl Drop for RingWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn watch_ring(
    etcd: Etcd,
    prefix: String,
    mut entries: BTreeMap<String, Member>,
    mut revision: i64,
    sender: watch::Sender<Arc<Ring>>,
) {
    loop {
        let failure = follow(&etcd, &prefix, &mut entries, revision, &sender).await;
        warn!(endpoints = etcd.endpoints, prefix, failure, "ring watch broken; listing again");
        tokio::time::sleep(FIRST_BACKOFF).await;
        // Without a deadline this only returns once etcd answers.
        if let Ok((listed, listed_revision)) = etcd.list(&prefix, None).await {
            entries = listed;
            revision = listed_revision;
            sender.send_replace(Arc::new(Ring::new(entries.values().cloned())));
        }
    }
}

/// Applies the changes after `revision` to `entries`, publishing a ring after each batch, until
/// the watch breaks; returns why.
async fn follow(
    etcd: &Etcd,
    prefix: &str,
    entries: &mut BTreeMap<String, Member>,
    revision: i64,
    sender: &watch::Sender<Arc<Ring>>,
) -> String {
    let options = WatchOptions::new().with_prefix().with_start_revision(revision + 1);
    let (_watcher, mut stream) = match etcd.client.clone().watch(prefix, Some(options)).await {
        Ok(watch) => watch,
        Err(error) => return error.to_string(),
    };
    loop {
        let response = match stream.message().await {
            Ok(Some(response)) => response,
            Ok(None) => return "stream ended".into(),
            Err(error) => return error.to_string(),
        };
        if response.canceled() {
            return format!("canceled (compacted at {}): {}", response.compact_revision(), response.cancel_reason());
        }
        if response.events().is_empty() {
            continue;
        }
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            match event.event_type() {
                EventType::Put => match parse_entry(kv.key(), kv.value()) {
                    Some((key, member)) => entries.insert(key, member),
                    None => entries.remove(&*String::from_utf8_lossy(kv.key())),
                },
                EventType::Delete => entries.remove(&*String::from_utf8_lossy(kv.key())),
            };
        }
        sender.send_replace(Arc::new(Ring::new(entries.values().cloned())));
    }
}

/// This instance's entry in the ring, kept alive in the background. Dropping it without `leave`
/// (the process dying) stops the keep-alives: the entry goes when the lease expires.
pub struct Registration {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

struct Shared {
    etcd: Etcd,
    key: String,
    ttl: Duration,
    /// Held across every put, so that a state change and a re-registration cannot land out of order.
    entry: Mutex<Entry>,
}

struct Entry {
    member: Member,
    lease: i64,
}

impl Shared {
    async fn grant(&self, deadline: Option<Instant>) -> Result<i64, Error> {
        let ttl = self.ttl.as_secs().max(1) as i64;
        let response = self
            .etcd
            .retry(&format!("grant a lease for {}", self.key), deadline, |mut client| async move {
                client.lease_grant(ttl, None).await
            })
            .await?;
        Ok(response.id())
    }

    async fn put(&self, entry: &Entry, deadline: Option<Instant>) -> Result<(), Error> {
        let value = serde_json::to_vec(&entry.member).expect("a member serializes");
        let (key, lease) = (&self.key, entry.lease);
        self.etcd
            .retry(&format!("put {key}"), deadline, |mut client| {
                let value = value.clone();
                async move { client.put(key.as_str(), value, Some(PutOptions::new().with_lease(lease))).await }
            })
            .await?;
        Ok(())
    }

    /// A new lease and the entry put under it: after the old lease was lost.
    async fn register_again(&self) {
        let mut entry = self.entry.lock().await;
        // Without a deadline these only return once etcd answers.
        let Ok(lease) = self.grant(None).await else { return };
        entry.lease = lease;
        if self.put(&entry, None).await.is_ok() {
            info!(key = self.key, lease, "registered again under a new lease");
        }
    }
}

impl Registration {
    /// Grants a lease of `config.lease_ttl` and puts `member` at `config.prefix + member.id` under
    /// it (retrying until `start_timeout`), then keeps the lease alive every third of its TTL.
    pub async fn start(config: &EtcdConfig, member: Member, start_timeout: Duration) -> Result<Registration, Error> {
        let deadline = Some(Instant::now() + start_timeout);
        let etcd = Etcd::connect(config).await?;
        let key = format!("{}{}", config.prefix, member.id);
        let shared =
            Arc::new(Shared { etcd, key, ttl: config.lease_ttl, entry: Mutex::new(Entry { member, lease: 0 }) });
        {
            let mut entry = shared.entry.lock().await;
            entry.lease = shared.grant(deadline).await?;
            shared.put(&entry, deadline).await?;
            info!(key = shared.key, lease = entry.lease, state = ?entry.member.state, "registered");
        }
        let task = tokio::spawn(keep_alive(shared.clone()));
        Ok(Registration { shared, task })
    }

    /// Puts the entry with `state`, retrying until it lands or `timeout` passes.
    pub async fn set_state(&self, state: MemberState, timeout: Duration) -> Result<(), Error> {
        let deadline = Some(Instant::now() + timeout);
        let mut entry = self.shared.entry.lock().await;
        entry.member.state = state;
        self.shared.put(&entry, deadline).await?;
        info!(key = self.shared.key, ?state, "state changed");
        Ok(())
    }

    /// Revokes the lease, which deletes the entry, and stops the keep-alives.
    pub async fn leave(self, timeout: Duration) -> Result<(), Error> {
        // First, so that it does not register again once the lease is gone.
        self.task.abort();
        let deadline = Some(Instant::now() + timeout);
        let lease = self.shared.entry.lock().await.lease;
        let operation = format!("revoke lease {lease} of {}", self.shared.key);
        let revoked = self
            .shared
            .etcd
            .retry(&operation, deadline, |mut client| async move {
                match client.lease_revoke(lease).await {
                    // Already expired: the entry is gone as well.
                    Err(etcd_client::Error::GRpcStatus(status)) if status.message() == LEASE_NOT_FOUND => Ok(()),
                    other => other.map(drop),
                }
            })
            .await;
        revoked?;
        info!(key = self.shared.key, "left the ring");
        Ok(())
    }
}

/// etcd's answer to a call on a lease that does not exist (any more).
const LEASE_NOT_FOUND: &str = "etcdserver: requested lease not found";

impl Drop for Registration {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Keeps the lease alive; when etcd says it is gone (it expired while etcd was unreachable, or was
/// revoked), registers again under a new one.
async fn keep_alive(shared: Arc<Shared>) {
    let period = shared.ttl / 3;
    loop {
        let lease = shared.entry.lock().await.lease;
        let failure = match shared.etcd.client.clone().lease_keep_alive(lease).await {
            Err(error) => error.to_string(),
            Ok((mut keeper, mut stream)) => {
                let mut ticks = tokio::time::interval(period);
                loop {
                    ticks.tick().await;
                    if let Err(error) = keeper.keep_alive().await {
                        break error.to_string();
                    }
                    match tokio::time::timeout(ATTEMPT_TIMEOUT, stream.message()).await {
                        Ok(Ok(Some(response))) if response.ttl() > 0 => continue,
                        Ok(Ok(Some(_))) => {
                            warn!(key = shared.key, lease, "lease lost");
                            shared.register_again().await;
                            break "lease lost".to_string();
                        }
                        Ok(Ok(None)) => break "keep-alive stream ended".to_string(),
                        Ok(Err(error)) => break error.to_string(),
                        Err(_) => break format!("no keep-alive answer within {ATTEMPT_TIMEOUT:?}"),
                    }
                }
            }
        };
        warn!(key = shared.key, lease, failure, "keep-alive interrupted; reopening");
        tokio::time::sleep(FIRST_BACKOFF).await;
    }
}
