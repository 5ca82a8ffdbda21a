//! [`RangeCache`]: block-file bytes kept on local disk, so repeated queries over the same windows
//! do not go back to the object store.
//!
//! Only block files are cached (`<tenant>/windows/<start>/<hash>.block`): they are immutable and
//! named by their content, so a cached range can never be stale. The bucket index, the one
//! object that is rewritten, always goes to the store.
//!
//! Each cached read is one file in the cache directory, named by the hash of (key, range), holding
//! a header (key, range, version, payload length, payload CRC-32C) and the bytes. A file that is
//! missing, unreadable, for another key (a hash collision) or whose payload fails its checksum is
//! dropped and the read goes to the store: the cache is never a source of errors. Files are
//! written to a temporary name and renamed, so concurrent readers see a whole file or none.
//! Least-recently-used files are deleted while the directory holds more than its byte budget;
//! on open, files already in the directory are kept, the oldest modified counted least recent.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::future::BoxFuture;
use parking_lot::Mutex;

use crate::objstore::{ObjectInfo, ObjectStorage, ObjectStoreError, ObjectVersion, PutCondition, Versioned};

const FILE_MAGIC: &[u8; 4] = b"AMRC";
const FILE_SUFFIX: &str = ".range";
const TEMP_SUFFIX: &str = ".tmp";
/// Marks an absent e-tag or version in a cache file's header.
const ABSENT: u32 = u32::MAX;

/// What a cache file holds: a range of an object, or the whole object (a `get`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extent {
    Range(u64, u64),
    Whole,
}

impl Extent {
    fn encode(self) -> (u8, u64, u64) {
        match self {
            Extent::Range(start, end) => (0, start, end),
            Extent::Whole => (1, 0, 0),
        }
    }
}

/// Counts since the cache was opened, and its size now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RangeCacheStats {
    /// Block-file reads answered from disk.
    pub hits: u64,
    /// Block-file reads that went to the store (absent, evicted or unreadable cache file).
    pub misses: u64,
    /// Files deleted to stay within the byte budget.
    pub evictions: u64,
    pub files: u64,
    pub bytes: u64,
}

struct CachedFile {
    bytes: u64,
    /// Value of [`LruState::clock`] at the last use.
    used: u64,
}

#[derive(Default)]
struct LruState {
    files: HashMap<String, CachedFile>,
    bytes: u64,
    clock: u64,
}

/// An [`ObjectStorage`] that keeps block-file reads of another on local disk, within a byte
/// budget. Writes, lists and deletes pass straight through.
pub struct RangeCache {
    inner: Arc<dyn ObjectStorage>,
    dir: PathBuf,
    budget_bytes: u64,
    state: Mutex<LruState>,
    /// Makes temporary file names unique among concurrent writers of one name.
    writes: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

impl RangeCache {
    /// A cache of `inner`'s block-file reads in `dir` (created if missing), holding at most
    /// `budget_bytes` of files. Files a previous run left are kept (within the budget).
    pub fn open(inner: Arc<dyn ObjectStorage>, dir: &Path, budget_bytes: u64) -> std::io::Result<RangeCache> {
        std::fs::create_dir_all(dir)?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(TEMP_SUFFIX) {
                // Left by a write that did not finish.
                let _ = std::fs::remove_file(entry.path());
            } else if name.ends_with(FILE_SUFFIX) {
                let meta = entry.metadata()?;
                found.push((meta.modified().ok(), name, meta.len()));
            }
        }
        found.sort();
        let mut state = LruState::default();
        for (_, name, bytes) in found {
            state.clock += 1;
            state.bytes += bytes;
            state.files.insert(name, CachedFile { bytes, used: state.clock });
        }
        let cache = RangeCache {
            inner,
            dir: dir.to_path_buf(),
            budget_bytes,
            state: Mutex::new(state),
            writes: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        };
        let victims = cache.evict_over_budget(&mut cache.state.lock());
        cache.remove_files(&victims);
        Ok(cache)
    }

    pub fn stats(&self) -> RangeCacheStats {
        let state = self.state.lock();
        RangeCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            files: state.files.len() as u64,
            bytes: state.bytes,
        }
    }

    fn file_name(key: &str, extent: Extent) -> String {
        let (kind, start, end) = extent.encode();
        let mut id = key.as_bytes().to_vec();
        id.push(0);
        id.push(kind);
        id.extend_from_slice(&start.to_be_bytes());
        id.extend_from_slice(&end.to_be_bytes());
        format!("{:016x}{FILE_SUFFIX}", xxhash_rust::xxh64::xxh64(&id, 0))
    }

    /// The cached read of `key` over `extent`, if the cache holds a sound one.
    async fn lookup(&self, key: &str, extent: Extent) -> Option<Versioned> {
        let name = Self::file_name(key, extent);
        {
            let mut state = self.state.lock();
            state.clock += 1;
            let clock = state.clock;
            state.files.get_mut(&name)?.used = clock;
        }
        let path = self.dir.join(&name);
        let (key_owned, read_path) = (key.to_string(), path.clone());
        let read = tokio::task::spawn_blocking(move || {
            let file = std::fs::read(&read_path).ok()?;
            decode_file(&file, &key_owned, extent)
        })
        .await
        .ok()
        .flatten();
        if read.is_none() {
            // Missing, unreadable or corrupt: forget it, and read from the store.
            let mut state = self.state.lock();
            if let Some(f) = state.files.remove(&name) {
                state.bytes -= f.bytes;
            }
            drop(state);
            let _ = std::fs::remove_file(&path);
        }
        read
    }

    /// Keeps `value` as the read of `key` over `extent`, evicting older files past the budget.
    async fn store(&self, key: &str, extent: Extent, value: &Versioned) {
        let file = encode_file(key, extent, value);
        let bytes = file.len() as u64;
        if bytes > self.budget_bytes {
            return;
        }
        let name = Self::file_name(key, extent);
        let path = self.dir.join(&name);
        let temp = self.dir.join(format!("{name}.{}{TEMP_SUFFIX}", self.writes.fetch_add(1, Ordering::Relaxed)));
        let written = tokio::task::spawn_blocking(move || {
            std::fs::write(&temp, &file).and_then(|()| std::fs::rename(&temp, &path)).inspect_err(|_| {
                let _ = std::fs::remove_file(&temp);
            })
        })
        .await;
        if !matches!(written, Ok(Ok(()))) {
            // A full or failing disk makes the cache useless, not the read wrong.
            return;
        }
        let victims = {
            let mut state = self.state.lock();
            state.clock += 1;
            let used = state.clock;
            if let Some(old) = state.files.insert(name.clone(), CachedFile { bytes, used }) {
                state.bytes -= old.bytes;
            }
            state.bytes += bytes;
            self.evict_over_budget(&mut state)
        };
        self.remove_files(&victims);
    }

    /// Takes least-recently-used files out of `state` until it fits the budget; returns their
    /// names, for the caller to delete once the lock is released.
    fn evict_over_budget(&self, state: &mut LruState) -> Vec<String> {
        let mut victims = Vec::new();
        while state.bytes > self.budget_bytes {
            let Some(oldest) = state.files.iter().min_by_key(|(_, f)| f.used).map(|(n, _)| n.clone()) else { break };
            let f = state.files.remove(&oldest).expect("just found");
            state.bytes -= f.bytes;
            victims.push(oldest);
        }
        self.evictions.fetch_add(victims.len() as u64, Ordering::Relaxed);
        victims
    }

    fn remove_files(&self, names: &[String]) {
        for name in names {
            let _ = std::fs::remove_file(self.dir.join(name));
        }
    }

    async fn cached(&self, key: &str, extent: Extent) -> Result<Versioned, ObjectStoreError> {
        if let Some(hit) = self.lookup(key, extent).await {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(hit);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let value = match extent {
            Extent::Range(start, end) => Versioned {
                bytes: self.inner.get_range(key, start..end).await?,
                version: ObjectVersion { e_tag: None, version: None },
            },
            Extent::Whole => self.inner.get(key).await?.ok_or_else(|| ObjectStoreError::NotFound(key.to_string()))?,
        };
        self.store(key, extent, &value).await;
        Ok(value)
    }
}

/// Whether `key` names a block file, `<tenant>/windows/<start>/<stem>.block` (an upload),
/// `<tenant>/windows/<start>.<replica>/<stem>.block` (an ingester's upload) or
/// `<tenant>/windows/<start>_<end>/<stem>.block` (a compacted window), the stem being the hash
/// and the attempt, `<16 hex digits>-<16 hex digits>`, or (written before attempts were) the
/// hash alone.
pub fn is_block_file_key(key: &str) -> bool {
    let mut parts = key.rsplitn(4, '/');
    let (Some(file), Some(start), Some(windows), Some(tenant)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let hash = file.strip_suffix(".block").unwrap_or("");
    !tenant.is_empty()
        && windows == "windows"
        && match (start.split_once('.'), start.split_once('_')) {
            (Some((start, replica)), _) => {
                start.parse::<i64>().is_ok() && crate::upload::is_valid_replica_name(replica)
            }
            (None, Some((start, end))) => start.parse::<i64>().is_ok() && end.parse::<i64>().is_ok(),
            (None, None) => start.parse::<i64>().is_ok(),
        }
        && match hash.split_once('-') {
            Some((hash, attempt)) => is_hex16(hash) && is_hex16(attempt),
            None => is_hex16(hash),
        }
}

fn is_hex16(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn put_opt(out: &mut Vec<u8>, s: &Option<String>) {
    match s {
        Some(s) => {
            out.extend_from_slice(&(s.len() as u32).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        None => out.extend_from_slice(&ABSENT.to_be_bytes()),
    }
}

/// magic, kind <1b>, start <8b>, end <8b>, key (u32 length, bytes), e-tag and version (u32 length
/// or `ABSENT`, bytes), payload length <8b>, payload CRC-32C <4b>, payload.
fn encode_file(key: &str, extent: Extent, value: &Versioned) -> Vec<u8> {
    let (kind, start, end) = extent.encode();
    let mut out = Vec::with_capacity(value.bytes.len() + key.len() + 64);
    out.extend_from_slice(FILE_MAGIC);
    out.push(kind);
    out.extend_from_slice(&start.to_be_bytes());
    out.extend_from_slice(&end.to_be_bytes());
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key.as_bytes());
    put_opt(&mut out, &value.version.e_tag);
    put_opt(&mut out, &value.version.version);
    out.extend_from_slice(&(value.bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&value.bytes).to_be_bytes());
    out.extend_from_slice(&value.bytes);
    out
}

/// The read a cache file holds, if it is whole, sound and for `key` over `extent`.
fn decode_file(file: &[u8], key: &str, extent: Extent) -> Option<Versioned> {
    let mut rest = file;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, tail) = rest.split_at_checked(n)?;
        rest = tail;
        Some(head)
    };
    let u32_at = |b: &[u8]| u32::from_be_bytes(b.try_into().expect("4 bytes"));
    let u64_at = |b: &[u8]| u64::from_be_bytes(b.try_into().expect("8 bytes"));
    if take(4)? != FILE_MAGIC {
        return None;
    }
    let (kind, start, end) = extent.encode();
    if take(1)?[0] != kind || u64_at(take(8)?) != start || u64_at(take(8)?) != end {
        return None;
    }
    let key_len = u32_at(take(4)?) as usize;
    if take(key_len)? != key.as_bytes() {
        return None;
    }
    let mut opt = || -> Option<Option<String>> {
        let len = u32_at(take(4)?);
        if len == ABSENT {
            return Some(None);
        }
        Some(Some(String::from_utf8(take(len as usize)?.to_vec()).ok()?))
    };
    let (e_tag, version) = (opt()?, opt()?);
    let len = u64_at(take(8)?) as usize;
    let crc = u32_at(take(4)?);
    let payload = take(len)?;
    if crc32c::crc32c(payload) != crc {
        return None;
    }
    Some(Versioned { bytes: Bytes::copy_from_slice(payload), version: ObjectVersion { e_tag, version } })
}

impl ObjectStorage for RangeCache {
    fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: Bytes,
        condition: PutCondition,
    ) -> BoxFuture<'a, Result<(), ObjectStoreError>> {
        self.inner.put(key, bytes, condition)
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Versioned>, ObjectStoreError>> {
        if !is_block_file_key(key) {
            return self.inner.get(key);
        }
        Box::pin(async move {
            match self.cached(key, Extent::Whole).await {
                Ok(v) => Ok(Some(v)),
                Err(ObjectStoreError::NotFound(_)) => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    fn get_range<'a>(&'a self, key: &'a str, range: Range<u64>) -> BoxFuture<'a, Result<Bytes, ObjectStoreError>> {
        if !is_block_file_key(key) {
            return self.inner.get_range(key, range);
        }
        Box::pin(async move { Ok(self.cached(key, Extent::Range(range.start, range.end)).await?.bytes) })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<ObjectInfo>, ObjectStoreError>> {
        self.inner.list(prefix)
    }

    /// Passes through. Cached reads of a deleted block file are not removed: its name is its
    /// content's hash, so no other bytes can ever appear under it, and readers only ask for the
    /// files the bucket index names. Eviction deletes them in time.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), ObjectStoreError>> {
        self.inner.delete(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objstore::{Bucket, Metered};

    const A: &str = "t/windows/0/00000000000000aa.block";
    const B: &str = "t/windows/7200000/00000000000000bb.block";
    const C: &str = "t/windows/14400000/00000000000000cc.block";

    fn payload(seed: u8) -> Bytes {
        (0..1000u32).map(|i| (i as u8).wrapping_mul(seed)).collect::<Vec<u8>>().into()
    }

    async fn stored() -> Arc<Metered> {
        let bucket = Bucket::in_memory();
        for (key, seed) in [(A, 3), (B, 5), (C, 7)] {
            bucket.put(key, payload(seed), PutCondition::Create).await.unwrap();
        }
        bucket.put("t/index.json", Bytes::from_static(b"{}"), PutCondition::Create).await.unwrap();
        Arc::new(Metered::new(Arc::new(bucket)))
    }

    fn cache_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        files
    }

    #[test]
    fn only_block_file_keys_are_cacheable() {
        assert!(is_block_file_key(A));
        assert!(is_block_file_key("team-a/windows/-7200000/8a3f0c9d12e4b7aa.block"));
        assert!(is_block_file_key("team-a/windows/-86400000_0/8a3f0c9d12e4b7aa.block"));
        assert!(is_block_file_key("team-a/windows/0/8a3f0c9d12e4b7aa-187d5c2a9b3e0f11.block"));
        assert!(!is_block_file_key("team-a/windows/0/8a3f0c9d12e4b7aa-187d5c.block"));
        assert!(is_block_file_key("team-a/windows/7200000.ingester-0/8a3f0c9d12e4b7aa-187d5c2a9b3e0f11.block"));
        assert!(is_block_file_key("team-a/windows/-7200000.ingester_0.b/8a3f0c9d12e4b7aa-187d5c2a9b3e0f11.block"));
        for key in [
            "t/windows/0./00000000000000aa.block",
            "t/windows/x.ingester-0/00000000000000aa.block",
            "t/windows/0.ingester 0/00000000000000aa.block",
            "t/index.json",
            "windows/0/00000000000000aa.block",
            "t/windows/x/00000000000000aa.block",
            "t/windows/0/00000000000000aa.blocks",
            "t/windows/0/0aa.block",
            "t/other/0/00000000000000aa.block",
        ] {
            assert!(!is_block_file_key(key), "{key}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_repeated_read_is_answered_from_disk_and_the_index_never_is() {
        let dir = tempfile::tempdir().unwrap();
        let inner = stored().await;
        let cache = RangeCache::open(inner.clone(), dir.path(), 1 << 20).unwrap();
        assert_eq!(cache.get_range(A, 10..20).await.unwrap(), payload(3).slice(10..20));
        assert_eq!(cache.get(A).await.unwrap().unwrap().bytes, payload(3));
        assert_eq!(cache.get("t/index.json").await.unwrap().unwrap().bytes, Bytes::from_static(b"{}"));
        let first = inner.requests();
        assert_eq!((first.get_ranges, first.gets), (1, 2));

        assert_eq!(cache.get_range(A, 10..20).await.unwrap(), payload(3).slice(10..20));
        assert_eq!(cache.get(A).await.unwrap().unwrap().bytes, payload(3));
        assert_eq!(cache.get("t/index.json").await.unwrap().unwrap().bytes, Bytes::from_static(b"{}"));
        let second = inner.requests();
        assert_eq!((second.get_ranges, second.gets), (1, 3), "only the index went to the store again");
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.files), (2, 2, 2));

        // A missing block file is an error from the store, and not cached.
        let missing = "t/windows/0/00000000000000ff.block";
        assert!(matches!(cache.get_range(missing, 0..1).await, Err(ObjectStoreError::NotFound(_))));
        assert!(cache.get(missing).await.unwrap().is_none());
        assert_eq!(cache.stats().files, 2);

        // Another cache over the same directory (a restart) starts warm.
        let reopened = RangeCache::open(inner.clone(), dir.path(), 1 << 20).unwrap();
        assert_eq!(reopened.get_range(A, 10..20).await.unwrap(), payload(3).slice(10..20));
        assert_eq!(inner.requests().get_ranges, 2, "the missing file's request only");
        assert_eq!(reopened.stats().hits, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_least_recently_used_files_are_evicted_to_stay_within_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let inner = stored().await;
        // Room for two 1000-byte reads with their headers, not three.
        let cache = RangeCache::open(inner.clone(), dir.path(), 2 * 1100).unwrap();
        cache.get_range(A, 0..1000).await.unwrap();
        cache.get_range(B, 0..1000).await.unwrap();
        cache.get_range(A, 0..1000).await.unwrap(); // A is now more recent than B
        cache.get_range(C, 0..1000).await.unwrap(); // evicts B
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.evictions, stats.files), (1, 3, 1, 2));
        assert!(stats.bytes <= 2 * 1100, "{stats:?}");
        let on_disk: u64 = cache_files(dir.path()).iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();
        assert_eq!(on_disk, stats.bytes);

        let before = inner.requests().get_ranges;
        assert_eq!(cache.get_range(A, 0..1000).await.unwrap(), payload(3));
        assert_eq!(cache.get_range(C, 0..1000).await.unwrap(), payload(7));
        assert_eq!(inner.requests().get_ranges, before, "A and C were kept");
        assert_eq!(cache.get_range(B, 0..1000).await.unwrap(), payload(5));
        assert_eq!(inner.requests().get_ranges, before + 1, "B was evicted");

        // A read larger than the whole budget is passed through, not cached.
        let small = RangeCache::open(inner.clone(), tempfile::tempdir().unwrap().path(), 500).unwrap();
        small.get_range(A, 0..1000).await.unwrap();
        assert_eq!((small.stats().files, small.stats().bytes), (0, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_corrupt_or_missing_cache_file_is_fetched_again() {
        let dir = tempfile::tempdir().unwrap();
        let inner = stored().await;
        let cache = RangeCache::open(inner.clone(), dir.path(), 1 << 20).unwrap();
        cache.get_range(A, 0..1000).await.unwrap();
        let files = cache_files(dir.path());
        assert_eq!(files.len(), 1);
        let mut bytes = std::fs::read(&files[0]).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        std::fs::write(&files[0], bytes).unwrap();

        assert_eq!(cache.get_range(A, 0..1000).await.unwrap(), payload(3));
        assert_eq!(inner.requests().get_ranges, 2, "the corrupt file was not served");
        assert_eq!(cache.get_range(A, 0..1000).await.unwrap(), payload(3));
        assert_eq!(inner.requests().get_ranges, 2, "the refetched bytes were cached again");

        std::fs::remove_file(&cache_files(dir.path())[0]).unwrap();
        assert_eq!(cache.get_range(A, 0..1000).await.unwrap(), payload(3));
        assert_eq!(inner.requests().get_ranges, 3);
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.files), (1, 3, 1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_readers_get_the_right_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let inner = stored().await;
        let cache = Arc::new(RangeCache::open(inner, dir.path(), 3000).unwrap());
        let mut tasks = Vec::new();
        for t in 0..8u64 {
            let cache = cache.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..50u64 {
                    let (key, seed) = [(A, 3), (B, 5), (C, 7)][((t + i) % 3) as usize];
                    let start = (i * 7) % 900;
                    assert_eq!(
                        cache.get_range(key, start..start + 100).await.unwrap(),
                        payload(seed).slice(start as usize..start as usize + 100)
                    );
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let stats = cache.stats();
        assert_eq!(stats.hits + stats.misses, 400);
        assert!(stats.bytes <= 3000, "{stats:?}");
    }
}
