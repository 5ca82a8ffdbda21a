//! The bucket index: per tenant, one small JSON object listing the windows in the bucket, their
//! time ranges, counts and sizes, and the block file that holds each (docs/format/bucket.md).
//!
//! It is the only object ever rewritten, and it is rewritten with conditional puts (create if
//! absent, else replace only the version read), so a reader always sees a whole index and two
//! writers can never lose each other's entries: the loser re-reads and applies its change again.

use serde::{Deserialize, Serialize};

use crate::blockfile::WindowMeta;
use crate::objstore::{ObjectStorage, ObjectStoreError, PutCondition};

/// Version of the index's JSON layout.
pub const INDEX_VERSION: u32 = 1;

/// Attempts at a conditional update before giving up for this pass (each loss means another
/// writer changed the index in between).
const UPDATE_ATTEMPTS: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketIndex {
    pub version: u32,
    pub tenant: String,
    /// Sorted by `(start, end, replica)` ([`IndexedWindow::key`]); at most one entry per such
    /// key. Entries may overlap: the copies of one window uploaded by each ingester holding it
    /// (one entry per replica), and a window uploaded again after the compactor merged it into a
    /// longer one sits beside the longer one, until the next compaction merges them (readers
    /// merge overlapping entries).
    pub windows: Vec<IndexedWindow>,
}

/// One window in the bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedWindow {
    pub start: i64,
    pub end: i64,
    /// Key of the block file, relative to the bucket's prefix.
    pub object: String,
    pub bytes: u64,
    pub min_ts: i64,
    pub max_ts: i64,
    pub series: u64,
    pub samples: u64,
    pub histograms: u64,
    pub exemplars: u64,
    pub traces: u64,
    /// The ingester whose copy of the window this is, when ingesters on a ring upload (each its
    /// own: `--instance-id`); absent for a single node's windows and for compacted ones, which
    /// hold every replica's data merged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
}

impl IndexedWindow {
    pub fn new(meta: &WindowMeta, object: String, bytes: u64) -> IndexedWindow {
        IndexedWindow {
            start: meta.start,
            end: meta.end,
            object,
            bytes,
            min_ts: meta.min_ts,
            max_ts: meta.max_ts,
            series: meta.series,
            samples: meta.samples,
            histograms: meta.histograms,
            exemplars: meta.exemplars,
            traces: meta.traces,
            replica: None,
        }
    }

    /// What identifies an entry in the index: its span and whose copy it is.
    pub fn key(&self) -> (i64, i64, Option<&str>) {
        (self.start, self.end, self.replica.as_deref())
    }
}

/// Key of a tenant's index.
pub fn index_key(tenant: &str) -> String {
    format!("{tenant}/index.json")
}

/// A tenant's index; an empty one if the tenant has none yet.
pub async fn read(store: &dyn ObjectStorage, tenant: &str) -> Result<BucketIndex, ObjectStoreError> {
    Ok(read_versioned(store, tenant).await?.0)
}

/// A tenant's index with the condition under which a put replaces exactly the version read.
pub(crate) async fn read_versioned(
    store: &dyn ObjectStorage,
    tenant: &str,
) -> Result<(BucketIndex, PutCondition), ObjectStoreError> {
    let key = index_key(tenant);
    match store.get(&key).await? {
        None => Ok((
            BucketIndex { version: INDEX_VERSION, tenant: tenant.to_string(), windows: Vec::new() },
            PutCondition::Create,
        )),
        Some(o) => {
            let index: BucketIndex = serde_json::from_slice(&o.bytes)
                .map_err(|e| ObjectStoreError::Unavailable(format!("bucket index {key} is not valid: {e}")))?;
            if index.version != INDEX_VERSION {
                return Err(ObjectStoreError::Unavailable(format!(
                    "bucket index {key} has version {}, this Amber reads {INDEX_VERSION}",
                    index.version
                )));
            }
            Ok((index, PutCondition::Replace(o.version)))
        }
    }
}

/// Records `window` in the tenant's index, replacing the window's earlier entry (same start,
/// end and replica; a compacted entry that covers it, and other replicas' copies, stay). Returns the entry it replaced, whose object the
/// caller may now delete. A no-op when the index already says exactly this (a retried upload).
pub async fn record(
    store: &dyn ObjectStorage,
    tenant: &str,
    window: IndexedWindow,
) -> Result<Option<IndexedWindow>, ObjectStoreError> {
    for _ in 0..UPDATE_ATTEMPTS {
        let (mut index, condition) = read_versioned(store, tenant).await?;
        let replaced = match index.windows.binary_search_by(|w| w.key().cmp(&window.key())) {
            Ok(i) if index.windows[i] == window => return Ok(None),
            Ok(i) => Some(std::mem::replace(&mut index.windows[i], window.clone())),
            Err(i) => {
                index.windows.insert(i, window.clone());
                None
            }
        };
        match put(store, tenant, &index, condition).await {
            Ok(()) => return Ok(replaced),
            Err(ObjectStoreError::Conflict(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(too_many_changes(tenant))
}

/// What [`replace`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replaced {
    /// The index now has `added` instead of `removed`; this is the index written.
    Done(BucketIndex),
    /// Some of `removed` is no longer in the index exactly as given (an upload replaced it
    /// meanwhile): nothing was changed.
    Stale,
}

/// Replaces the entries `removed` of the tenant's index by `added` in one conditional put
/// (the compactor's commit), re-reading and checking again when another writer got in between.
pub async fn replace(
    store: &dyn ObjectStorage,
    tenant: &str,
    removed: &[IndexedWindow],
    added: Option<&IndexedWindow>,
) -> Result<Replaced, ObjectStoreError> {
    for _ in 0..UPDATE_ATTEMPTS {
        let (mut index, condition) = read_versioned(store, tenant).await?;
        if !removed.iter().all(|r| index.windows.contains(r)) {
            return Ok(Replaced::Stale);
        }
        index.windows.retain(|w| !removed.contains(w));
        if let Some(added) = added {
            match index.windows.binary_search_by(|w| w.key().cmp(&added.key())) {
                Ok(i) => index.windows[i] = added.clone(),
                Err(i) => index.windows.insert(i, added.clone()),
            }
        }
        match put(store, tenant, &index, condition).await {
            Ok(()) => return Ok(Replaced::Done(index)),
            Err(ObjectStoreError::Conflict(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(too_many_changes(tenant))
}

async fn put(
    store: &dyn ObjectStorage,
    tenant: &str,
    index: &BucketIndex,
    condition: PutCondition,
) -> Result<(), ObjectStoreError> {
    let bytes = serde_json::to_vec_pretty(index).expect("an index serializes");
    store.put(&index_key(tenant), bytes.into(), condition).await
}

fn too_many_changes(tenant: &str) -> ObjectStoreError {
    ObjectStoreError::Unavailable(format!(
        "bucket index of tenant {tenant:?} changed {UPDATE_ATTEMPTS} times while being updated"
    ))
}
