//! Object storage: where sealed windows go when they leave the machine (docs/format/bucket.md).
//!
//! [`ObjectStorage`] is the whole of what Amber asks of a bucket. [`Bucket`] implements it over
//! the `object_store` crate, so one code path serves S3-compatible stores (Amazon S3, Ceph's
//! RADOS Gateway, MinIO), a local directory and memory (the unit tests).
//!
//! # Semantics every implementation keeps
//! - Keys are `/`-separated relative paths under the bucket's prefix.
//! - [`ObjectStorage::put`] is atomic: a reader sees the old object or the whole new one, never
//!   part of one. With [`PutCondition::Overwrite`] repeating a put is harmless (the same key ends
//!   with the same bytes), which is why Amber names block files by their content: a retried
//!   upload rewrites the same object instead of adding a second one.
//! - [`PutCondition::Create`] fails with [`ObjectStoreError::Conflict`] when the key exists;
//!   [`PutCondition::Replace`] fails with it when the object's version is no longer the one given
//!   (S3 `If-None-Match: *` and `If-Match: <etag>`). A conflict means "re-read and decide again",
//!   never "retry blindly". A local directory cannot compare versions atomically: there `Replace`
//!   checks then writes, which is safe for the single writer Amber runs per data directory.
//! - [`ObjectStorage::delete`] of a missing key succeeds, so deletes can be repeated.
//! - [`ObjectStorage::list`] may lag recent writes on stores with eventual listing; Amber reads
//!   what exists from its bucket index, never from a listing.
//!
//! [`Metered`] wraps any implementation and counts its requests and bytes.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use futures::future::BoxFuture;
use object_store::path::Path;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload, UpdateVersion};

/// Why an object-store request failed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectStoreError {
    #[error("object {0} not found")]
    NotFound(String),
    /// A conditional put lost: the key exists (create) or changed (replace).
    #[error("object {0} changed or exists: conditional write refused")]
    Conflict(String),
    /// Anything else: the store is unreachable, refused the credentials, or failed. Retryable.
    #[error("object store: {0}")]
    Unavailable(String),
}

/// An object's bytes and the version a [`PutCondition::Replace`] of it must name.
#[derive(Debug, Clone)]
pub struct Versioned {
    pub bytes: Bytes,
    pub version: ObjectVersion,
}

/// An object's version: its ETag where the store gives one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    pub e_tag: Option<String>,
    pub version: Option<String>,
}

/// When a put may happen.
#[derive(Debug, Clone)]
pub enum PutCondition {
    Overwrite,
    Create,
    Replace(ObjectVersion),
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key relative to the bucket's prefix.
    pub key: String,
    pub size: u64,
    /// When it was last written, in milliseconds since the epoch (what the compactor ages
    /// unreferenced objects by).
    pub modified_ms: i64,
}

type Result<T> = std::result::Result<T, ObjectStoreError>;

/// The operations Amber needs from object storage; see the module documentation for what each
/// guarantees.
pub trait ObjectStorage: Send + Sync {
    fn put<'a>(&'a self, key: &'a str, bytes: Bytes, condition: PutCondition) -> BoxFuture<'a, Result<()>>;
    /// The whole object and its version; `None` when it does not exist.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Versioned>>>;
    fn get_range<'a>(&'a self, key: &'a str, range: Range<u64>) -> BoxFuture<'a, Result<Bytes>>;
    /// Every object whose key starts with `prefix/` (or everything for an empty prefix), in key order.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<ObjectInfo>>>;
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>>;
}

/// How to reach a bucket: `--object-store-url` and the flags beside it.
#[derive(Debug, Clone, Default)]
pub struct BucketConfig {
    /// `s3://bucket/prefix` or `file:///absolute/dir`.
    pub url: String,
    /// S3 endpoint (for Ceph RGW, MinIO); else `AWS_ENDPOINT_URL`, else Amazon's.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Allow plain-HTTP endpoints (also `AWS_ALLOW_HTTP=true`).
    pub allow_http: bool,
}

/// [`ObjectStorage`] over an `object_store` backend, with every key under a prefix.
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    /// Whether the backend compares versions itself (S3, memory) or [`PutCondition::Replace`]
    /// must check then write (a local directory).
    atomic_replace: bool,
    /// Send `If-Match` with the bare ETag: Ceph RGW (16.2) compares the header to the ETag
    /// without its quotes and refuses the quoted form, which S3 also accepts unquoted.
    bare_if_match: bool,
    /// The URL it was opened from, for logs and errors.
    pub url: String,
}

/// How long one request may take before it counts as failed: an outage must turn into an error
/// (and a window waiting locally) quickly, not into a stuck uploader.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Bucket {
    /// Opens the bucket `config` names. Honours the usual AWS variables (`AWS_ENDPOINT_URL`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ALLOW_HTTP`); flags win.
    pub fn open(config: &BucketConfig) -> Result<Bucket> {
        let bad = |m: String| ObjectStoreError::Unavailable(format!("--object-store-url {}: {m}", config.url));
        if let Some(rest) = config.url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket name".into()));
            }
            let mut b = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch)
                .with_client_options(
                    object_store::ClientOptions::new()
                        .with_timeout(REQUEST_TIMEOUT)
                        .with_connect_timeout(CONNECT_TIMEOUT),
                )
                .with_retry(object_store::RetryConfig {
                    max_retries: 3,
                    retry_timeout: Duration::from_secs(20),
                    ..Default::default()
                });
            if let Some(e) = &config.endpoint {
                b = b.with_endpoint(e);
            }
            if let Some(r) = &config.region {
                b = b.with_region(r);
            }
            if let Some(k) = &config.access_key_id {
                b = b.with_access_key_id(k);
            }
            if let Some(k) = &config.secret_access_key {
                b = b.with_secret_access_key(k);
            }
            if config.allow_http {
                b = b.with_allow_http(true);
            }
            let store = b.build().map_err(|e| bad(e.to_string()))?;
            Ok(Bucket {
                store: Arc::new(store),
                prefix: Path::from(prefix),
                atomic_replace: true,
                bare_if_match: true,
                url: config.url.clone(),
            })
        } else if let Some(dir) = config.url.strip_prefix("file://") {
            std::fs::create_dir_all(dir).map_err(|e| bad(e.to_string()))?;
            let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
                .map_err(|e| bad(e.to_string()))?
                .with_automatic_cleanup(true);
            Ok(Bucket {
                store: Arc::new(store),
                prefix: Path::default(),
                atomic_replace: false,
                bare_if_match: false,
                url: config.url.clone(),
            })
        } else {
            Err(bad("expected s3://bucket[/prefix] or file:///dir".into()))
        }
    }

    /// A bucket in memory, for tests.
    pub fn in_memory() -> Bucket {
        Bucket {
            store: Arc::new(object_store::memory::InMemory::new()),
            prefix: Path::default(),
            atomic_replace: true,
            bare_if_match: false,
            url: "memory://".into(),
        }
    }

    fn path(&self, key: &str) -> Path {
        key.split('/').filter(|p| !p.is_empty()).fold(self.prefix.clone(), |p, part| p.child(part))
    }

    fn relative(&self, p: &Path) -> String {
        match p.prefix_match(&self.prefix) {
            Some(parts) => parts.map(|x| x.as_ref().to_string()).collect::<Vec<_>>().join("/"),
            None => p.to_string(),
        }
    }
}

fn map_err(key: &str, e: object_store::Error) -> ObjectStoreError {
    match e {
        object_store::Error::NotFound { .. } => ObjectStoreError::NotFound(key.to_string()),
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
            ObjectStoreError::Conflict(key.to_string())
        }
        e => ObjectStoreError::Unavailable(e.to_string()),
    }
}

impl ObjectStorage for Bucket {
    fn put<'a>(&'a self, key: &'a str, bytes: Bytes, condition: PutCondition) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let path = self.path(key);
            let mode = match condition {
                PutCondition::Overwrite => PutMode::Overwrite,
                PutCondition::Create => PutMode::Create,
                PutCondition::Replace(v) if self.atomic_replace => {
                    let e_tag = match v.e_tag {
                        Some(t) if self.bare_if_match => Some(t.trim_matches('"').to_string()),
                        t => t,
                    };
                    PutMode::Update(UpdateVersion { e_tag, version: v.version })
                }
                PutCondition::Replace(v) => {
                    let current = self.get(key).await?.map(|o| o.version);
                    if current.as_ref() != Some(&v) {
                        return Err(ObjectStoreError::Conflict(key.to_string()));
                    }
                    PutMode::Overwrite
                }
            };
            let opts = PutOptions { mode, ..Default::default() };
            self.store.put_opts(&path, PutPayload::from_bytes(bytes), opts).await.map_err(|e| map_err(key, e))?;
            Ok(())
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Versioned>>> {
        Box::pin(async move {
            let got = match self.store.get(&self.path(key)).await {
                Ok(g) => g,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(map_err(key, e)),
            };
            let version = ObjectVersion { e_tag: got.meta.e_tag.clone(), version: got.meta.version.clone() };
            let bytes = got.bytes().await.map_err(|e| map_err(key, e))?;
            Ok(Some(Versioned { bytes, version }))
        })
    }

    fn get_range<'a>(&'a self, key: &'a str, range: Range<u64>) -> BoxFuture<'a, Result<Bytes>> {
        Box::pin(async move { self.store.get_range(&self.path(key), range).await.map_err(|e| map_err(key, e)) })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<ObjectInfo>>> {
        Box::pin(async move {
            let p = self.path(prefix);
            let listed: Vec<_> = self.store.list(Some(&p)).try_collect().await.map_err(|e| map_err(prefix, e))?;
            let mut out: Vec<ObjectInfo> = listed
                .iter()
                .map(|m| ObjectInfo {
                    key: self.relative(&m.location),
                    size: m.size,
                    modified_ms: m.last_modified.timestamp_millis(),
                })
                .collect();
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            match self.store.delete(&self.path(key)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(map_err(key, e)),
            }
        })
    }
}

/// Requests and bytes a [`Metered`] store has seen, since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ObjectStoreRequests {
    pub puts: u64,
    pub gets: u64,
    pub get_ranges: u64,
    pub lists: u64,
    pub deletes: u64,
    /// Requests that failed (any operation; a missing object on `get` is an answer, not a failure).
    pub failures: u64,
    /// Bytes sent by puts.
    pub bytes_out: u64,
    /// Bytes received by gets and range gets.
    pub bytes_in: u64,
}

/// An [`ObjectStorage`] that counts the requests it passes on to another, by operation, and the
/// bytes they move: what `/metrics` exports, and what tests assert reads by.
pub struct Metered {
    inner: Arc<dyn ObjectStorage>,
    puts: AtomicU64,
    gets: AtomicU64,
    get_ranges: AtomicU64,
    lists: AtomicU64,
    deletes: AtomicU64,
    failures: AtomicU64,
    bytes_out: AtomicU64,
    bytes_in: AtomicU64,
}

impl Metered {
    pub fn new(inner: Arc<dyn ObjectStorage>) -> Metered {
        Metered {
            inner,
            puts: AtomicU64::new(0),
            gets: AtomicU64::new(0),
            get_ranges: AtomicU64::new(0),
            lists: AtomicU64::new(0),
            deletes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
        }
    }

    /// The counts so far (each read atomically; together a near-instant view).
    pub fn requests(&self) -> ObjectStoreRequests {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ObjectStoreRequests {
            puts: get(&self.puts),
            gets: get(&self.gets),
            get_ranges: get(&self.get_ranges),
            lists: get(&self.lists),
            deletes: get(&self.deletes),
            failures: get(&self.failures),
            bytes_out: get(&self.bytes_out),
            bytes_in: get(&self.bytes_in),
        }
    }

    fn count<T>(&self, operation: &AtomicU64, result: Result<T>) -> Result<T> {
        operation.fetch_add(1, Ordering::Relaxed);
        if result.is_err() {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

impl ObjectStorage for Metered {
    fn put<'a>(&'a self, key: &'a str, bytes: Bytes, condition: PutCondition) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let len = bytes.len() as u64;
            let result = self.count(&self.puts, self.inner.put(key, bytes, condition).await);
            if result.is_ok() {
                self.bytes_out.fetch_add(len, Ordering::Relaxed);
            }
            result
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Versioned>>> {
        Box::pin(async move {
            let result = self.count(&self.gets, self.inner.get(key).await);
            if let Ok(Some(o)) = &result {
                self.bytes_in.fetch_add(o.bytes.len() as u64, Ordering::Relaxed);
            }
            result
        })
    }

    fn get_range<'a>(&'a self, key: &'a str, range: Range<u64>) -> BoxFuture<'a, Result<Bytes>> {
        Box::pin(async move {
            let result = self.count(&self.get_ranges, self.inner.get_range(key, range).await);
            if let Ok(b) = &result {
                self.bytes_in.fetch_add(b.len() as u64, Ordering::Relaxed);
            }
            result
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<ObjectInfo>>> {
        Box::pin(async move { self.count(&self.lists, self.inner.list(prefix).await) })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { self.count(&self.deletes, self.inner.delete(key).await) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn conditional_puts(b: &Bucket) {
        b.put("t/index.json", Bytes::from_static(b"one"), PutCondition::Create).await.unwrap();
        let again = b.put("t/index.json", Bytes::from_static(b"two"), PutCondition::Create).await;
        assert!(matches!(again, Err(ObjectStoreError::Conflict(_))), "{again:?}");
        let first = b.get("t/index.json").await.unwrap().unwrap();
        assert_eq!(&first.bytes[..], b"one");
        b.put("t/index.json", Bytes::from_static(b"two"), PutCondition::Replace(first.version.clone())).await.unwrap();
        let stale = b.put("t/index.json", Bytes::from_static(b"three"), PutCondition::Replace(first.version)).await;
        assert!(matches!(stale, Err(ObjectStoreError::Conflict(_))), "{stale:?}");
        assert_eq!(&b.get("t/index.json").await.unwrap().unwrap().bytes[..], b"two");

        b.put("t/w/a", Bytes::from_static(b"0123456789"), PutCondition::Overwrite).await.unwrap();
        b.put("t/w/a", Bytes::from_static(b"0123456789"), PutCondition::Overwrite).await.unwrap();
        assert_eq!(&b.get_range("t/w/a", 2..5).await.unwrap()[..], b"234");
        let listed = b.list("t").await.unwrap();
        assert_eq!(
            listed.iter().map(|o| (o.key.as_str(), o.size)).collect::<Vec<_>>(),
            [("t/index.json", 3), ("t/w/a", 10)]
        );
        let now = crate::now_ms();
        assert!(listed.iter().all(|o| (now - 60_000..=now).contains(&o.modified_ms)), "{listed:?}");
        b.delete("t/w/a").await.unwrap();
        b.delete("t/w/a").await.unwrap();
        assert!(b.get("t/w/a").await.unwrap().is_none());
        assert!(matches!(b.get_range("t/w/a", 0..1).await, Err(ObjectStoreError::NotFound(_))));
    }

    #[tokio::test]
    async fn metered_counts_requests_by_operation_and_the_bytes_they_move() {
        let m = Metered::new(Arc::new(Bucket::in_memory()));
        m.put("t/a", Bytes::from_static(b"0123456789"), PutCondition::Overwrite).await.unwrap();
        assert!(m.put("t/a", Bytes::from_static(b"xy"), PutCondition::Create).await.is_err());
        assert_eq!(&m.get_range("t/a", 2..5).await.unwrap()[..], b"234");
        assert_eq!(m.get("t/a").await.unwrap().unwrap().bytes.len(), 10);
        assert!(m.get("t/missing").await.unwrap().is_none());
        assert_eq!(m.list("t").await.unwrap().len(), 1);
        m.delete("t/a").await.unwrap();
        assert_eq!(
            m.requests(),
            ObjectStoreRequests {
                puts: 2,
                gets: 2,
                get_ranges: 1,
                lists: 1,
                deletes: 1,
                failures: 1,
                bytes_out: 10,
                bytes_in: 13
            }
        );
    }

    #[tokio::test]
    async fn memory_bucket_keeps_the_semantics() {
        conditional_puts(&Bucket::in_memory()).await;
    }

    #[tokio::test]
    async fn local_directory_bucket_keeps_the_semantics() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().join("bucket").display());
        conditional_puts(&Bucket::open(&BucketConfig { url, ..Default::default() }).unwrap()).await;
    }
}
