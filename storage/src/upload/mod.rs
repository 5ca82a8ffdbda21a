//! Upload: every sealed window leaves the machine as one block file per tenant, recorded in the
//! tenant's bucket index. Local blocks stay; reads still use them. Ingesters on a ring each
//! upload their own copy (the *replica*, named by the ingester's instance id: a folder and an
//! index entry of its own), since each holds the series the ring gave it; the compactor merges
//! the copies.
//!
//! A sealing pass that writes blocks of a window also writes the window's *pending mark*
//! (`0x09 window` → generation, synced before the pass deletes any log segment), so a window
//! waits for upload across restarts and outages. [`upload_pending`] then, for each marked
//! window and each tenant with data in it:
//! 1. builds the block file from the sealed blocks; its key ends in the hash of its bytes and a
//!    stamp of the attempt,
//! 2. puts it (a retry puts the same bytes under the same key: no duplicate),
//! 3. records it in the tenant's index with a conditional put (old index or new, never half),
//! 4. deletes the window's other block files (the one the index no longer names, and any left
//!    by a crash between 2 and 3),
//!
//! and finally removes the mark if no sealing pass re-marked the window meanwhile. A crash or
//! an outage anywhere leaves the mark, and the next attempt repeats the same steps to the same
//! result. Writes never wait on any of this.

mod expiry;
pub mod index;

use std::sync::Arc;

use rocksdb::{Direction, IteratorMode, WriteBatch};

use crate::blockfile::{self, TraceEntry, WindowContent, WindowSeries};
use crate::db::Storage;
use crate::error::{Error, Result};
use crate::keys::{self, prefix};
use crate::objstore::{ObjectStorage, ObjectStoreError, PutCondition};
use crate::tenant::TenantId;
use index::IndexedWindow;

/// What one [`upload_pending`] call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadReport {
    pub windows_uploaded: u64,
    pub block_files_uploaded: u64,
    pub bytes_uploaded: u64,
    pub objects_deleted: u64,
}

/// Why an upload pass stopped; the windows not yet done stay pending.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(transparent)]
    Storage(#[from] Error),
    #[error(transparent)]
    ObjectStore(#[from] ObjectStoreError),
    #[error("building a block file: {0}")]
    Block(#[from] crate::block::BlockError),
}

/// Key of a block file: the tenant, the window's start (and the replica, for an ingester's
/// copy), the hash of the file's bytes and the attempt ([`attempt_stamp`]). A key is never put
/// twice: a retried upload of the same bytes gets a key of its own, so a compactor deleting a
/// merged window's object can never delete the object a later upload of that window recorded
/// (the old, hash-only names allowed that).
pub fn block_file_key(tenant: &str, window_start: i64, replica: Option<&str>, bytes: &[u8], attempt: u64) -> String {
    format!("{}/{}.block", window_prefix(tenant, window_start, replica), file_stem(bytes, attempt))
}

/// `<xxh64 of the bytes>-<attempt>`, both as 16 hex digits.
pub(crate) fn file_stem(bytes: &[u8], attempt: u64) -> String {
    format!("{:016x}-{attempt:016x}", xxhash_rust::xxh64::xxh64(bytes, 0))
}

/// A stamp distinct for every put of a block file: nanoseconds since the epoch, and never the
/// same twice in one process.
pub(crate) fn attempt_stamp() -> u64 {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let previous = LAST.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
    if now > previous { now } else { LAST.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 }
}

/// The folder of one window's block files: `<tenant>/windows/<start>`, or for one replica's copy
/// `<tenant>/windows/<start>.<replica>`, a folder of its own, so that each uploader's clean-up
/// lists and deletes only its own files.
pub fn window_prefix(tenant: &str, window_start: i64, replica: Option<&str>) -> String {
    match replica {
        None => format!("{tenant}/windows/{window_start}"),
        Some(r) => format!("{tenant}/windows/{window_start}.{r}"),
    }
}

/// Whether `name` may name a replica in the bucket's keys ([`window_prefix`]): 1 to 128 of
/// `a-z A-Z 0-9 - _ .`, characters every S3 implementation takes as they are.
pub fn is_valid_replica_name(name: &str) -> bool {
    (1..=128).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn pending_key(window: i64) -> [u8; 9] {
    keys::window_mark(prefix::PENDING_UPLOAD, window)
}

impl Storage {
    /// Marks `windows` as waiting for upload (called by sealing, when uploads are on). The mark's
    /// value changes with every pass, so an upload that started before it keeps the mark.
    pub(crate) fn mark_pending_upload(&self, windows: impl IntoIterator<Item = i64>) -> Result<()> {
        let generation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mut batch = WriteBatch::default();
        let index = self.cf(keys::CF_INDEX);
        for w in windows {
            batch.put_cf(index, pending_key(w), generation.to_be_bytes());
        }
        if batch.is_empty() {
            return Ok(());
        }
        let _marks = self.upload_marks.lock();
        self.write_synced(batch)
    }

    /// Windows waiting for upload at `now`, oldest first, with their mark's generation: marked
    /// windows that have closed. Sealing writes a window in steps while it fills (every closed
    /// head chunk); uploading each step would rewrite the window's block file every pass, so an
    /// open window keeps its mark and goes up once, when its end passes the out-of-order window.
    pub fn pending_uploads(&self, now: i64) -> Result<Vec<(i64, u64)>> {
        let closed_before = now.saturating_sub(self.opts.out_of_order_window_ms);
        let index = self.cf(keys::CF_INDEX);
        let start = [prefix::PENDING_UPLOAD];
        let mut out = Vec::new();
        for item in self.db.iterator_cf(index, IteratorMode::From(&start, Direction::Forward)) {
            let (k, v) = item?;
            if k[0] != prefix::PENDING_UPLOAD {
                break;
            }
            if k.len() == 9 && v.len() == 8 {
                let window = keys::read_ordered_i64(&k[1..]);
                if window.saturating_add(self.opts.block_duration_ms) <= closed_before {
                    out.push((window, keys::read_u64(&v)));
                }
            }
        }
        Ok(out)
    }

    /// Removes `window`'s mark unless a sealing pass renewed it since `generation` was read.
    fn finish_upload(&self, window: i64, generation: u64) -> Result<bool> {
        let _marks = self.upload_marks.lock();
        let index = self.cf(keys::CF_INDEX);
        let current = self.db.get_cf(index, pending_key(window))?;
        if current.as_deref() != Some(&generation.to_be_bytes()[..]) {
            return Ok(false);
        }
        let mut batch = WriteBatch::default();
        batch.delete_cf(index, pending_key(window));
        batch.put_cf(index, keys::window_mark(prefix::UPLOADED, window), []);
        self.write_synced(batch)?;
        Ok(true)
    }

    /// The sealed content of `window` for every tenant with data in it, from the local blocks.
    pub fn window_contents(&self, window: i64) -> Result<Vec<(TenantId, WindowContent)>> {
        let index = self.cf(keys::CF_INDEX);
        let mut out = Vec::new();
        for tenant in self.tenant_ids() {
            let Some(set) = self.db.get_pinned_cf(index, keys::activity(window, tenant))? else { continue };
            let ids: Vec<u64> = crate::index::decode_postings(&set)?.iter().collect();
            if let Some(content) = self.tenant_window_content(window, tenant, &ids)? {
                out.push((tenant, content));
            }
        }
        Ok(out)
    }

    fn tenant_window_content(&self, window: i64, tenant: TenantId, ids: &[u64]) -> Result<Option<WindowContent>> {
        let labels = self.series_labels_if_indexed(ids)?;
        let get = |cf: &str, id: u64| -> Result<Option<Vec<u8>>> {
            Ok(self.db.get_cf(self.cf(cf), keys::block(window, id))?)
        };
        let mut series: Vec<(u64, WindowSeries)> = Vec::new();
        for (&id, l) in ids.iter().zip(labels) {
            let Some((_, labels)) = l else { continue };
            let s = WindowSeries {
                labels,
                samples: get(keys::CF_BLOCKS, id)?,
                histograms: get(keys::CF_HISTOGRAM_BLOCKS, id)?,
                exemplars: get(keys::CF_EXEMPLAR_BLOCKS, id)?,
            };
            if s.samples.is_some() || s.histograms.is_some() || s.exemplars.is_some() {
                series.push((id, s));
            }
        }
        if series.is_empty() {
            return Ok(None);
        }
        series.sort_by(|a, b| a.1.labels.cmp(&b.1.labels));
        let ordinal: rustc_hash::FxHashMap<u64, u32> =
            series.iter().enumerate().map(|(i, (id, _))| (*id, i as u32)).collect();

        // Trace-index keys: window tenant header trace series ts (see keys::trace_prefix).
        let mut prefix = keys::ordered_i64(window).to_vec();
        prefix.extend_from_slice(&tenant.0.to_be_bytes());
        let mut traces = Vec::new();
        for item in self.db.iterator_cf(self.cf(keys::CF_TRACE_INDEX), IteratorMode::From(&prefix, Direction::Forward))
        {
            let (k, _) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            let rest = &k[prefix.len()..];
            let header = rest[0];
            let len = (header >> 1) as usize;
            if rest.len() != 1 + len + 16 {
                continue;
            }
            let stored = &rest[1..1 + len];
            let trace_id = if header & 1 == 1 {
                crate::chunkenc::hex::unpack(stored)
            } else {
                String::from_utf8_lossy(stored).into_owned()
            };
            let id = keys::read_u64(&rest[1 + len..]);
            let ts = keys::read_ordered_i64(&rest[1 + len + 8..]);
            // Series without sealed blocks here (their exemplars still in the head) are left out.
            if let Some(&ordinal) = ordinal.get(&id) {
                traces.push(TraceEntry { trace_id, ordinal, ts });
            }
        }
        traces.sort();
        traces.dedup();
        Ok(Some(WindowContent {
            tenant: self.tenant_name(tenant).unwrap_or_default(),
            start: window,
            end: window.saturating_add(self.opts.block_duration_ms),
            series: series.into_iter().map(|(_, s)| s).collect(),
            traces,
        }))
    }

    /// The registered name of `tenant`; `None` for the default tenant, which has none.
    fn tenant_name(&self, tenant: TenantId) -> Option<String> {
        self.tenants.read().iter().find(|(_, id)| **id == tenant).map(|(n, _)| n.clone())
    }
}

/// Uploads every window waiting for upload at `now`, oldest first; stops at the first failure (the rest
/// wait for the next call). `default_tenant` names the tenant of requests that named none;
/// `replica` names this store's copies when it is one of several ingesters holding the same
/// series (each uploads its own, the compactor merges them), `None` on a single node.
pub async fn upload_pending(
    storage: &Arc<Storage>,
    store: &dyn ObjectStorage,
    default_tenant: &str,
    replica: Option<&str>,
    now: i64,
) -> Result<UploadReport, UploadError> {
    let mut report = UploadReport::default();
    let pending = {
        let s = storage.clone();
        tokio::task::spawn_blocking(move || s.pending_uploads(now)).await.expect("pending_uploads panicked")?
    };
    for (window, generation) in pending {
        let s = storage.clone();
        let contents =
            tokio::task::spawn_blocking(move || s.window_contents(window)).await.expect("window_contents panicked")?;
        for (tenant, mut content) in contents {
            if tenant == TenantId::DEFAULT {
                content.tenant = default_tenant.to_string();
            }
            let (bytes, meta) = blockfile::encode(&content)?;
            let key = block_file_key(&content.tenant, window, replica, &bytes, attempt_stamp());
            let size = bytes.len() as u64;
            store.put(&key, bytes.into(), PutCondition::Overwrite).await?;
            let entry =
                IndexedWindow { replica: replica.map(str::to_string), ..IndexedWindow::new(&meta, key.clone(), size) };
            index::record(store, &content.tenant, entry).await?;
            report.block_files_uploaded += 1;
            report.bytes_uploaded += size;
            for stale in store.list(&window_prefix(&content.tenant, window, replica)).await? {
                if stale.key != key {
                    store.delete(&stale.key).await?;
                    report.objects_deleted += 1;
                }
            }
        }
        let s = storage.clone();
        tokio::task::spawn_blocking(move || s.finish_upload(window, generation))
            .await
            .expect("finish_upload panicked")?;
        report.windows_uploaded += 1;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockfile::BlockFileReader;
    use crate::objstore::Bucket;
    use crate::{Exemplar, Label, Labels, Options, Sample, SeriesCreation, SeriesWrite};

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_unsorted(pairs.iter().map(|(n, v)| Label::new(*n, *v)).collect())
    }

    fn write(storage: &Storage, tenant: TenantId, name: &str, samples: Vec<Sample>, exemplars: Vec<Exemplar>) {
        let s = SeriesWrite { labels: labels(&[("__name__", name)]), samples, histograms: vec![], exemplars };
        let report = storage.append(tenant, &[s], &[], SeriesCreation::UNLIMITED).unwrap();
        assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    }

    fn sample(ts: i64, value: f64) -> Sample {
        Sample { ts, value, start_ts: crate::NO_START }
    }

    async fn keys(bucket: &Bucket) -> Vec<String> {
        bucket.list("").await.unwrap().into_iter().map(|o| o.key).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sealed_windows_reach_the_bucket_once_and_resealing_replaces_them() {
        let dir = tempfile::tempdir().unwrap();
        let storage =
            Arc::new(Storage::open(dir.path(), Options { upload_sealed_windows: true, ..Default::default() }).unwrap());
        let now = crate::now_ms();
        let w = storage.window_of(now - 3 * 3600 * 1000);
        let team_b = storage.register_tenant("team-b").unwrap();
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let ex = Exemplar { ts: w + 15_000, value: 1.0, labels: labels(&[("trace_id", trace)]) };
        write(
            &storage,
            TenantId::DEFAULT,
            "up",
            (0..10).map(|i| sample(w + i * 15_000, i as f64)).collect(),
            vec![ex.clone()],
        );
        write(&storage, team_b, "rss", vec![sample(w, 7.0)], vec![]);
        storage.seal(now).unwrap();
        assert_eq!(storage.pending_uploads(now).unwrap().iter().map(|p| p.0).collect::<Vec<_>>(), [w]);

        let bucket = Bucket::in_memory();
        let report = upload_pending(&storage, &bucket, "anonymous", None, now).await.unwrap();
        assert_eq!((report.windows_uploaded, report.block_files_uploaded, report.objects_deleted), (1, 2, 0));
        assert_eq!(storage.pending_uploads(now).unwrap(), []);
        let listed = keys(&bucket).await;
        assert_eq!(listed.len(), 4, "{listed:?}");
        assert_eq!(listed[0], "anonymous/index.json");
        assert!(listed[1].starts_with(&format!("anonymous/windows/{w}/")), "{listed:?}");
        assert_eq!(listed[2], "team-b/index.json");

        let idx = index::read(&bucket, "anonymous").await.unwrap();
        assert_eq!(idx.windows.len(), 1);
        let entry = &idx.windows[0];
        assert_eq!(
            (
                entry.start,
                entry.end,
                entry.min_ts,
                entry.max_ts,
                entry.series,
                entry.samples,
                entry.exemplars,
                entry.traces
            ),
            (w, w + 2 * 3600 * 1000, w, w + 9 * 15_000, 1, 10, 1, 1)
        );
        assert_eq!(entry.object, listed[1]);
        let r = BlockFileReader::open(&bucket, &entry.object, entry.bytes).await.unwrap();
        assert_eq!(r.series().await.unwrap(), [labels(&[("__name__", "up")])]);
        assert_eq!(r.samples(0).await.unwrap(), (0..10).map(|i| sample(w + i * 15_000, i as f64)).collect::<Vec<_>>());
        assert_eq!(r.exemplars(0).await.unwrap(), [ex]);
        assert_eq!(r.trace(trace).await.unwrap(), [TraceEntry { trace_id: trace.into(), ordinal: 0, ts: w + 15_000 }]);
        let idx_b = index::read(&bucket, "team-b").await.unwrap();
        assert_eq!((idx_b.windows.len(), idx_b.windows[0].samples), (1, 1));

        // A retry (the mark renewed as if a crash had kept it) puts the same bytes under a key
        // of its own, records it and deletes the old one: still one file for the window, named
        // by the index, never a key put twice.
        storage.mark_pending_upload([w]).unwrap();
        let again = upload_pending(&storage, &bucket, "anonymous", None, now).await.unwrap();
        assert_eq!((again.windows_uploaded, again.objects_deleted), (1, 2));
        let relisted = keys(&bucket).await;
        assert_eq!(relisted.len(), listed.len());
        assert!(!relisted.contains(&entry.object));
        let retried = index::read(&bucket, "anonymous").await.unwrap();
        assert_eq!(retried.windows.len(), 1);
        assert_eq!(retried.windows[0].object, relisted[1]);
        assert_eq!(IndexedWindow { object: entry.object.clone(), ..retried.windows[0].clone() }, *entry);

        // A late sample re-seals the window: a new block file replaces the old one in the index
        // (and team-b's, unchanged, goes up again under a new key, its old file deleted).
        write(&storage, TenantId::DEFAULT, "up", vec![sample(w + 10 * 15_000, 10.0)], vec![]);
        storage.seal(now).unwrap();
        let resealed = upload_pending(&storage, &bucket, "anonymous", None, now).await.unwrap();
        assert_eq!((resealed.windows_uploaded, resealed.objects_deleted), (1, 2));
        let idx = index::read(&bucket, "anonymous").await.unwrap();
        assert_eq!((idx.windows.len(), idx.windows[0].samples), (1, 11));
        let blocks: Vec<String> =
            keys(&bucket).await.into_iter().filter(|k| k.starts_with("anonymous/windows/")).collect();
        assert_eq!(blocks, [idx.windows[0].object.clone()]);
    }

    /// The open window is sealed chunk by chunk as it fills; it goes up once, when it closes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_open_window_waits_until_it_closes() {
        let dir = tempfile::tempdir().unwrap();
        let storage =
            Arc::new(Storage::open(dir.path(), Options { upload_sealed_windows: true, ..Default::default() }).unwrap());
        let hour = 3600 * 1000;
        let w = storage.window_of(crate::now_ms());
        // 240 samples: two closed chunks of 120, sealed by the next pass whatever the clock.
        write(&storage, TenantId::DEFAULT, "up", (0..240).map(|i| sample(w + i * 1000, i as f64)).collect(), vec![]);
        let report = storage.seal(w + 5 * 60 * 1000).unwrap();
        assert!(report.samples_sealed >= 120, "{report:?}");
        let bucket = Bucket::in_memory();
        let open = w + 10 * 60 * 1000;
        assert_eq!(storage.pending_uploads(open).unwrap(), []);
        let report = upload_pending(&storage, &bucket, "anonymous", None, open).await.unwrap();
        assert_eq!(report.windows_uploaded, 0);
        assert_eq!(keys(&bucket).await, Vec::<String>::new());
        // The window's end plus the out-of-order window: closed, uploaded.
        let closed = w + 2 * hour + hour;
        assert_eq!(storage.pending_uploads(closed).unwrap().iter().map(|p| p.0).collect::<Vec<_>>(), [w]);
        let report = upload_pending(&storage, &bucket, "anonymous", None, closed).await.unwrap();
        assert_eq!((report.windows_uploaded, report.block_files_uploaded), (1, 1));
    }

    /// Two ingesters holding the same series upload a copy each: an entry per replica, in a
    /// folder per replica, and a retry by one replaces its own copy and leaves the other's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_replica_uploads_its_own_copy() {
        let now = crate::now_ms();
        let bucket = Bucket::in_memory();
        let mut stores = Vec::new();
        for _ in 0..2 {
            let dir = tempfile::tempdir().unwrap();
            let storage = Arc::new(
                Storage::open(dir.path(), Options { upload_sealed_windows: true, ..Default::default() }).unwrap(),
            );
            stores.push((dir, storage));
        }
        let w = stores[0].1.window_of(now - 3 * 3600 * 1000);
        for (_, storage) in &stores {
            write(
                storage,
                TenantId::DEFAULT,
                "up",
                (0..10).map(|i| sample(w + i * 15_000, i as f64)).collect(),
                vec![],
            );
            storage.seal(now).unwrap();
        }
        for ((_, storage), replica) in stores.iter().zip(["ingester-a", "ingester-b"]) {
            let report = upload_pending(storage, &bucket, "anonymous", Some(replica), now).await.unwrap();
            assert_eq!((report.windows_uploaded, report.objects_deleted), (1, 0));
        }
        let idx = index::read(&bucket, "anonymous").await.unwrap();
        let entries: Vec<(i64, Option<&str>, u64)> =
            idx.windows.iter().map(|e| (e.start, e.replica.as_deref(), e.samples)).collect();
        assert_eq!(entries, [(w, Some("ingester-a"), 10), (w, Some("ingester-b"), 10)]);
        for e in &idx.windows {
            let folder = format!("anonymous/windows/{w}.{}/", e.replica.as_deref().unwrap());
            assert!(e.object.starts_with(&folder), "{e:?}");
        }
        // The JSON names the replica; a single node's entry has no such field.
        let json =
            String::from_utf8(bucket.get("anonymous/index.json").await.unwrap().unwrap().bytes.to_vec()).unwrap();
        assert!(json.contains("\"replica\": \"ingester-a\""), "{json}");

        // b retries: its copy is replaced, a's stays.
        stores[1].1.mark_pending_upload([w]).unwrap();
        let again = upload_pending(&stores[1].1, &bucket, "anonymous", Some("ingester-b"), now).await.unwrap();
        assert_eq!((again.windows_uploaded, again.objects_deleted), (1, 1));
        let retried = index::read(&bucket, "anonymous").await.unwrap();
        assert_eq!(retried.windows[0], idx.windows[0]);
        assert_ne!(retried.windows[1].object, idx.windows[1].object);
        let blocks: Vec<String> =
            keys(&bucket).await.into_iter().filter(|k| k.starts_with("anonymous/windows/")).collect();
        assert_eq!(blocks, [retried.windows[0].object.clone(), retried.windows[1].object.clone()]);
    }

    #[tokio::test]
    async fn without_uploads_nothing_is_marked() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path(), Options::default()).unwrap();
        let now = crate::now_ms();
        let w = storage.window_of(now - 3 * 3600 * 1000);
        write(&storage, TenantId::DEFAULT, "up", vec![sample(w, 1.0)], vec![]);
        assert_eq!(storage.seal(now).unwrap().samples_sealed, 1);
        assert_eq!(storage.pending_uploads(now).unwrap(), []);
    }
}
