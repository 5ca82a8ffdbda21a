//! Series garbage collection: the index entries of series whose data has all left retention.
//!
//! A series is dead when no retained window's activity set holds it and the head has nothing of
//! it. Its label-set entry, its reverse entry and its id in every postings list are removed, so
//! the index, `/api/v1/series`, label names and label values shrink back after churn. Ids are
//! never reused: a label set that comes back later is a new series with a new id.
//!
//! Collection races with writers that looked a dead series up before it went: it runs holding the
//! series-creation lock (no new series, no postings merges) and the WAL writer (no head inserts),
//! checks the head again under them, and bumps [`Storage::series_gc_epoch`]; a write that
//! resolved its ids under an older epoch resolves them again before it touches the head (see
//! `Storage::append`). WAL replay skips data older than retention, so an old log segment never
//! brings a collected id back.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use roaring::RoaringTreemap;
use rocksdb::WriteBatch;

use crate::db::Storage;
use crate::error::Result;
use crate::index::{decode_postings, encode_postings};
use crate::keys;
use crate::tenant::TenantId;

impl Storage {
    /// Removes the index entries of every series without data in a retained window or the head.
    /// Returns how many series were removed.
    pub(crate) fn collect_dead_series(&self) -> Result<u64> {
        let mut removed = 0;
        for tenant in self.tenant_ids() {
            // Found without locks first: most passes find nothing and block no writer.
            let candidates = self.dead_series(tenant)?;
            if candidates.is_empty() {
                continue;
            }
            let _creating = self.next_series_id.lock();
            let _appending = self.wal.writer()?;
            let mut dead = self.dead_series(tenant)? & candidates;
            for id in dead.clone().iter() {
                if self.head.get(id).is_some() {
                    dead.remove(id);
                }
            }
            if dead.is_empty() {
                continue;
            }
            self.series_gc_epoch.fetch_add(1, Ordering::SeqCst);
            self.remove_series(tenant, &dead)?;
            removed += dead.len();
        }
        if removed > 0 {
            tracing::info!(series = removed, "removed series without data in retention from the index");
        }
        Ok(removed)
    }

    /// Series of `tenant` in no retained window's activity set.
    fn dead_series(&self, tenant: TenantId) -> Result<RoaringTreemap> {
        let mut dead = self.postings(&keys::postings(tenant, "", ""))?;
        if dead.is_empty() {
            return Ok(dead);
        }
        let index = self.cf(keys::CF_INDEX);
        let windows: Vec<[u8; 13]> = self.windows.read().iter().map(|&w| keys::activity(w, tenant)).collect();
        for got in self.db.multi_get_cf(windows.iter().map(|k| (index, k.as_slice()))) {
            if let Some(v) = got? {
                dead -= decode_postings(&v)?;
            }
        }
        Ok(dead)
    }

    /// Deletes `dead`'s entries from the index in one synced batch, then from the caches. The
    /// caller holds the series-creation lock, so postings are not merged into meanwhile.
    fn remove_series(&self, tenant: TenantId, dead: &RoaringTreemap) -> Result<()> {
        let ids: Vec<u64> = dead.iter().collect();
        let labels = self.series_labels(&ids)?;
        let index = self.cf(keys::CF_INDEX);
        let mut batch = WriteBatch::default();
        let mut label_keys = Vec::with_capacity(ids.len());
        let mut postings: HashMap<Vec<u8>, RoaringTreemap> = HashMap::new();
        for (&id, (_, labels)) in ids.iter().zip(&labels) {
            let key = keys::series_by_labels(tenant, labels);
            batch.delete_cf(index, &key);
            label_keys.push(key);
            batch.delete_cf(index, keys::labels_by_series(id));
            for l in labels {
                postings.entry(keys::postings(tenant, &l.name, &l.value)).or_default().insert(id);
            }
        }
        postings.insert(keys::postings(tenant, "", ""), dead.clone());
        for (key, gone) in &postings {
            // A put replaces the merged value and every merge operand before it.
            let left = self.postings(key)? - gone;
            if left.is_empty() {
                batch.delete_cf(index, key);
            } else {
                batch.put_cf(index, key, encode_postings(&left));
            }
        }
        self.write_synced(batch)?;
        let mut cache = self.series_cache.write();
        for key in &label_keys {
            cache.remove(&keys::series_cache_key(key));
        }
        drop(cache);
        if let Some(n) = self.series_counts.lock().get_mut(&tenant) {
            *n = n.saturating_sub(dead.len());
        }
        *self.histogram_series.write() -= dead;
        Ok(())
    }
}
