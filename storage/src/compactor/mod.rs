//! The compactor: merges a tenant's uploaded windows into longer ones (2 h → 1 day by default)
//! for fewer objects and better compression, removes duplicates (the ingesters' replicas of a
//! window, overlapping entries, windows uploaded again), applies retention to the bucket, and
//! deletes objects no index names.
//! Layout and protocol in `docs/format/bucket.md` ("Compaction", "The compactor lease").
//!
//! A pass ([`Compactor::run_pass`]), under the lease:
//! 1. lists the bucket once: the tenants (`<tenant>/index.json`) and every block file;
//! 2. per tenant, reads the index, deletes the listed block files it does not name that were
//!    last written more than `orphan_grace_ms` ago (what a crash between put and commit, or
//!    between commit and delete, left behind; the grace keeps an upload's file that is put but
//!    not yet recorded), and plans ([`plan`]): entries whose end is older than the
//!    retention expire; the other entries fall into *groups*, the compaction windows
//!    (`window_ms`, aligned to the epoch: UTC days for 1 d) that contain them, and a group whose
//!    whole span ended more than `settle_ms` ago (the uploader is done with it) and has two or
//!    more entries is merged; in a compaction window not settled yet, entries of the same span
//!    that ended more than `settle_ms` ago (the ingesters' copies of one block window) are
//!    merged into one entry of that span, so that a read reads one copy before the day is merged;
//! 3. per merged group: reads its block files whole, merges them ([`merge::merged_content`]),
//!    puts the result under `<tenant>/windows/<start>_<end>/<hash>.block` (content-hashed like an
//!    upload, in a folder of its own so the uploader's clean-up of `<tenant>/windows/<start>/`
//!    never touches it), then commits: one conditional put of the index that replaces exactly
//!    the merged entries by the new one ([`index::replace`]; re-read and re-checked when the
//!    uploader got in between; if an upload replaced one of the merged entries meanwhile, the
//!    group is dropped for this pass and its file deleted), then deletes the merged objects;
//! 4. drops expired entries with one more such commit, then deletes their objects.
//!
//! A group is merged in memory (one tenant's compaction window, decoded) and written as one put.
//!
//! A crash anywhere leaves the old index (and an unnamed file, deleted by a later pass) or the
//! new one (and unnamed old files, likewise). A reader holding an old index that finds an object
//! gone retries with a fresh index (`BucketSource` does).
//!
//! # Why a lease in the bucket, not etcd
//! Exactly one compactor may change a bucket's windows. The bucket already offers what a lease
//! needs, conditional writes (create-if-absent, replace-if-ETag-matches), and every compactor
//! already depends on it; etcd would be a second system to run, secure and monitor for one role.
//! The lease is `compactor-lease.json` ([`lease`]), taken over only once expired, renewed before
//! every commit. Correctness does not rest on it: commits are conditional puts that check what
//! they replace, so two compactors at once (clock skew past the lease) waste work but lose
//! nothing. etcd comes with the replicated write path's ring, and the lease can move there then.
//!
//! # Deleting merged objects
//! The merged objects are deleted after the commit, once a fresh read of the index shows it no
//! longer names them. An uploader may record the same window again meanwhile (a retried upload
//! after a crash between its record and its local mark's removal): it records an object of its
//! own, since no key is ever put twice (`upload::block_file_key`), so what is deleted here is
//! never what the index names.

pub mod lease;
pub mod merge;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::blockfile;
use crate::objstore::{ObjectInfo, ObjectStorage, ObjectStoreError, PutCondition};
use crate::upload::index::{self, BucketIndex, IndexedWindow, Replaced};
use merge::MergeError;

/// How the compactor works.
#[derive(Debug, Clone)]
pub struct CompactorOptions {
    /// This compactor's name in the lease: unique per process.
    pub holder: String,
    /// Length of a compacted window, aligned to the epoch (1 day: UTC days).
    pub window_ms: i64,
    /// A group is merged once its end is older than this: twice the out-of-order window, so the
    /// uploader is done with its windows.
    pub settle_ms: i64,
    /// Windows whose end is older than this are deleted from the bucket.
    pub retention_ms: i64,
    /// Unnamed objects are deleted once last written longer ago than this.
    pub orphan_grace_ms: i64,
    /// How long a taken or renewed lease lasts.
    pub lease_ms: i64,
}

/// Counts since the compactor started, for `/metrics`.
#[derive(Debug, Default)]
pub struct CompactorMetrics {
    windows_merged: AtomicU64,
    files_written: AtomicU64,
    bytes_written: AtomicU64,
    windows_expired: AtomicU64,
    objects_deleted: AtomicU64,
    passes_failed: AtomicU64,
    lease_held: AtomicBool,
}

/// A snapshot of [`CompactorMetrics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactorCounts {
    /// Index entries merged into compacted windows.
    pub windows_merged: u64,
    /// Compacted block files committed.
    pub files_written: u64,
    /// Bytes of the compacted block files committed.
    pub bytes_written: u64,
    /// Index entries dropped by retention.
    pub windows_expired: u64,
    /// Objects deleted: merged, expired and unnamed ones.
    pub objects_deleted: u64,
    /// Passes that stopped on an error, or left a tenant's compaction to the next pass.
    pub passes_failed: u64,
    /// Whether this compactor held the lease at its last pass.
    pub lease_held: bool,
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    pub lease_held: bool,
    pub windows_merged: u64,
    pub files_written: u64,
    pub bytes_written: u64,
    pub windows_expired: u64,
    pub objects_deleted: u64,
    /// Groups dropped because an upload changed one of their entries during the pass.
    pub groups_stale: u64,
    /// Tenants whose compaction stopped on an error, with it (the other tenants are compacted;
    /// these are retried next pass).
    pub failures: Vec<String>,
}

/// Why a pass stopped; what it committed so far stays, the rest is redone by the next pass.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error(transparent)]
    ObjectStore(#[from] ObjectStoreError),
    #[error(transparent)]
    Merge(#[from] MergeError),
    #[error("encoding a compacted block file: {0}")]
    Encode(#[from] crate::block::BlockError),
}

/// What a pass does to one tenant's index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Entries whose end is older than the retention.
    pub expired: Vec<IndexedWindow>,
    /// Groups to merge, oldest first.
    pub groups: Vec<Group>,
}

/// Entries of one compaction window to merge into one block file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub start: i64,
    pub end: i64,
    /// In index order.
    pub windows: Vec<IndexedWindow>,
}

/// Plans a pass over `index` at `now`; see the module documentation.
pub fn plan(index: &BucketIndex, opts: &CompactorOptions, now: i64) -> Plan {
    let expire_before = now.saturating_sub(opts.retention_ms);
    let settled_before = now.saturating_sub(opts.settle_ms);
    let mut out = Plan::default();
    let mut groups: BTreeMap<i64, Vec<IndexedWindow>> = BTreeMap::new();
    // Entries of a compaction window not settled yet, by their span: the ingesters' copies of
    // one settled block window, merged into one before their day is, so that until then a read
    // reads one copy, not one per replica (as Mimir compacts 2 h blocks first).
    let mut unsettled: BTreeMap<(i64, i64), Vec<IndexedWindow>> = BTreeMap::new();
    for w in &index.windows {
        if w.end <= expire_before {
            out.expired.push(w.clone());
            continue;
        }
        let start = w.start.div_euclid(opts.window_ms).saturating_mul(opts.window_ms);
        let end = start.saturating_add(opts.window_ms);
        // An entry longer than a compaction window, or across two, stays as it is.
        if w.end > end {
            continue;
        }
        if end <= settled_before {
            groups.entry(start).or_default().push(w.clone());
        } else if w.end <= settled_before {
            unsettled.entry((w.start, w.end)).or_default().push(w.clone());
        }
    }
    let merged = |windows: &Vec<IndexedWindow>| windows.len() >= 2;
    let days = groups.into_iter().filter(|(_, windows)| merged(windows));
    let days = days.map(|(start, windows)| Group { start, end: start.saturating_add(opts.window_ms), windows });
    let copies = unsettled.into_iter().filter(|(_, windows)| merged(windows));
    let copies = copies.map(|((start, end), windows)| Group { start, end, windows });
    out.groups = days.chain(copies).collect();
    out.groups.sort_by_key(|g| (g.start, g.end));
    out
}

/// Key of a compacted block file, never put twice (as [`crate::upload::block_file_key`]).
pub fn compacted_key(tenant: &str, start: i64, end: i64, bytes: &[u8], attempt: u64) -> String {
    format!("{tenant}/windows/{start}_{end}/{}.block", crate::upload::file_stem(bytes, attempt))
}

/// The compactor of one bucket.
pub struct Compactor<'a> {
    store: &'a dyn ObjectStorage,
    opts: CompactorOptions,
    metrics: &'a CompactorMetrics,
}

impl<'a> Compactor<'a> {
    pub fn new(store: &'a dyn ObjectStorage, opts: CompactorOptions, metrics: &'a CompactorMetrics) -> Self {
        Compactor { store, opts, metrics }
    }

    /// One pass at `now`, if this compactor holds (or takes) the lease.
    pub async fn run_pass(&self, now: i64) -> Result<PassReport, CompactError> {
        let result = self.pass(now).await;
        match &result {
            Ok(report) => {
                if !report.failures.is_empty() {
                    self.metrics.passes_failed.fetch_add(1, Ordering::Relaxed);
                }
                let m = self.metrics;
                m.lease_held.store(report.lease_held, Ordering::Relaxed);
                m.windows_merged.fetch_add(report.windows_merged, Ordering::Relaxed);
                m.files_written.fetch_add(report.files_written, Ordering::Relaxed);
                m.bytes_written.fetch_add(report.bytes_written, Ordering::Relaxed);
                m.windows_expired.fetch_add(report.windows_expired, Ordering::Relaxed);
                m.objects_deleted.fetch_add(report.objects_deleted, Ordering::Relaxed);
            }
            Err(_) => {
                self.metrics.passes_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    async fn pass(&self, now: i64) -> Result<PassReport, CompactError> {
        let mut report = PassReport::default();
        if !self.renew_lease(now).await? {
            return Ok(report);
        }
        report.lease_held = true;
        // Listed before any index is read: an object listed and recorded since is named by the
        // index read after, so it is never taken for an orphan.
        let listed = self.store.list("").await?;
        let mut by_tenant: BTreeMap<&str, Vec<&ObjectInfo>> = BTreeMap::new();
        let mut tenants = Vec::new();
        for o in &listed {
            let Some((tenant, rest)) = o.key.split_once('/') else { continue };
            if rest == "index.json" {
                tenants.push(tenant);
            } else if rest.starts_with("windows/") {
                by_tenant.entry(tenant).or_default().push(o);
            }
        }
        for tenant in tenants {
            let objects = by_tenant.get(tenant).map(Vec::as_slice).unwrap_or(&[]);
            match self.tenant(tenant, objects, now, &mut report).await {
                Ok(true) => {}
                Ok(false) => {
                    report.lease_held = false;
                    break;
                }
                // One tenant's trouble (an unreadable file, say) does not hold up the others.
                Err(e) => report.failures.push(format!("tenant {tenant:?}: {e}")),
            }
        }
        Ok(report)
    }

    /// Takes or renews the lease; `false` when another compactor holds it.
    async fn renew_lease(&self, now: i64) -> Result<bool, ObjectStoreError> {
        lease::acquire(self.store, &self.opts.holder, now, self.opts.lease_ms).await
    }

    /// Compacts one tenant; `false` if the lease was lost on the way.
    async fn tenant(
        &self,
        tenant: &str,
        objects: &[&ObjectInfo],
        now: i64,
        report: &mut PassReport,
    ) -> Result<bool, CompactError> {
        let index = index::read(self.store, tenant).await?;
        report.objects_deleted += self.delete_orphans(&index, objects, now).await?;
        let plan = plan(&index, &self.opts, now);
        for group in &plan.groups {
            let (bytes, new) = self.write_group(tenant, group).await?;
            if !self.renew_lease(now).await? {
                self.store.delete(&new.object).await?;
                return Ok(false);
            }
            match self.commit(tenant, &group.windows, Some(&new)).await? {
                Some(deleted) => {
                    report.windows_merged += group.windows.len() as u64;
                    report.files_written += 1;
                    report.bytes_written += bytes;
                    report.objects_deleted += deleted;
                }
                None => {
                    report.groups_stale += 1;
                    self.store.delete(&new.object).await?;
                }
            }
        }
        if !plan.expired.is_empty() {
            if !self.renew_lease(now).await? {
                return Ok(false);
            }
            if let Some(deleted) = self.commit(tenant, &plan.expired, None).await? {
                report.windows_expired += plan.expired.len() as u64;
                report.objects_deleted += deleted;
            } else {
                report.groups_stale += 1;
            }
        }
        Ok(true)
    }

    /// Step one of a group: merges its windows and puts the result. Returns its size and its
    /// index entry, not yet in the index.
    pub async fn write_group(&self, tenant: &str, group: &Group) -> Result<(u64, IndexedWindow), CompactError> {
        let content = merge::merged_content(self.store, tenant, group.start, group.end, &group.windows).await?;
        let (bytes, meta) = blockfile::encode(&content)?;
        let key = compacted_key(tenant, group.start, group.end, &bytes, crate::upload::attempt_stamp());
        let size = bytes.len() as u64;
        self.store.put(&key, bytes.into(), PutCondition::Overwrite).await?;
        Ok((size, IndexedWindow::new(&meta, key, size)))
    }

    /// Step two and three: replaces `removed` by `added` in the index, then deletes the objects of
    /// `removed` the index no longer names. `None`: an entry of `removed` changed meanwhile and
    /// nothing was done; else the objects deleted.
    pub async fn commit(
        &self,
        tenant: &str,
        removed: &[IndexedWindow],
        added: Option<&IndexedWindow>,
    ) -> Result<Option<u64>, CompactError> {
        let written = match index::replace(self.store, tenant, removed, added).await? {
            Replaced::Done(index) => index,
            Replaced::Stale => return Ok(None),
        };
        Ok(Some(self.delete_unnamed(tenant, &written, removed).await?))
    }

    /// Deletes the objects of `removed` that neither `written` nor a fresh read of the index
    /// names (an upload may have put the same bytes under the same key since).
    async fn delete_unnamed(
        &self,
        tenant: &str,
        written: &BucketIndex,
        removed: &[IndexedWindow],
    ) -> Result<u64, ObjectStoreError> {
        let fresh = index::read(self.store, tenant).await?;
        let named: HashSet<&str> = written.windows.iter().chain(&fresh.windows).map(|w| w.object.as_str()).collect();
        let mut deleted = 0;
        let mut seen = HashSet::new();
        for w in removed {
            if !named.contains(w.object.as_str()) && seen.insert(w.object.as_str()) {
                self.store.delete(&w.object).await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Deletes the tenant's listed block files that `index` (read after the listing) does not
    /// name and that were last written more than the grace period ago.
    async fn delete_orphans(
        &self,
        index: &BucketIndex,
        objects: &[&ObjectInfo],
        now: i64,
    ) -> Result<u64, ObjectStoreError> {
        let old_before = now.saturating_sub(self.opts.orphan_grace_ms);
        let named: HashSet<&str> = index.windows.iter().map(|w| w.object.as_str()).collect();
        let mut deleted = 0;
        for o in objects {
            if o.modified_ms < old_before && !named.contains(o.key.as_str()) {
                self.store.delete(&o.key).await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

impl CompactorMetrics {
    pub fn counts(&self) -> CompactorCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CompactorCounts {
            windows_merged: get(&self.windows_merged),
            files_written: get(&self.files_written),
            bytes_written: get(&self.bytes_written),
            windows_expired: get(&self.windows_expired),
            objects_deleted: get(&self.objects_deleted),
            passes_failed: get(&self.passes_failed),
            lease_held: self.lease_held.load(Ordering::Relaxed),
        }
    }
}
