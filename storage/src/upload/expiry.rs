//! Local copies: once a window is in the bucket, its blocks need not stay on local disk for the
//! whole retention. With `local_retention_ms` set, [`Storage::expire_local_copies`] moves the
//! *local horizon* forward: windows before it are read from the bucket only
//! ([`crate::source`]), and writes into them are refused (a re-sealed window would be uploaded
//! without the data that left, and its block file would replace the complete one).
//!
//! The horizon only passes windows that are safe to drop: uploaded (`0x0A` mark), not waiting
//! for a new upload (`0x09`), and older than everything in the head. It is written (synced)
//! before any block is deleted, so a crash in between leaves blocks that nobody reads, deleted
//! again by the next pass.

use std::sync::atomic::Ordering;

use rocksdb::WriteBatch;

use crate::db::Storage;
use crate::error::Result;
use crate::keys::{self, prefix};

impl Storage {
    /// Windows starting before this are in the bucket only; `i64::MIN` when none are.
    pub fn local_horizon(&self) -> i64 {
        self.local_horizon.load(Ordering::Acquire)
    }

    /// Deletes the local blocks of uploaded windows older than `now` minus the local retention.
    /// Returns the number of windows deleted.
    pub fn expire_local_copies(&self, now: i64) -> Result<usize> {
        let Some(keep) = self.opts.local_retention_ms.filter(|_| self.opts.upload_sealed_windows) else {
            return Ok(0);
        };
        // No sealing pass meanwhile: one could write blocks of a window checked here as clean.
        let _sealing = self.sealing.lock();
        let (horizon, doomed) = {
            // Nor any write: the head stays as checked, and every later write sees the new horizon.
            let _appends = self.wal.writer()?;
            let mut horizon = self.window_of(now.saturating_sub(keep));
            if let Some(oldest) = self.head.oldest_ts() {
                horizon = horizon.min(self.window_of(oldest));
            }
            let index = self.cf(keys::CF_INDEX);
            let candidates: Vec<i64> = self.windows.read().range(..horizon).copied().collect();
            // Up to the end of the last clean window: writes into windows after it (empty here,
            // as in a backfill still under way) stay accepted.
            let mut clean_until = None;
            let mut doomed = 0;
            for w in candidates {
                let uploaded = self.db.get_pinned_cf(index, keys::window_mark(prefix::UPLOADED, w))?.is_some();
                let pending = self.db.get_pinned_cf(index, keys::window_mark(prefix::PENDING_UPLOAD, w))?.is_some();
                if !uploaded || pending {
                    break;
                }
                clean_until = Some(w + self.opts.block_duration_ms);
                doomed += 1;
            }
            let Some(horizon) = clean_until.filter(|&h| h > self.local_horizon()) else { return Ok(0) };
            let mut mark = WriteBatch::default();
            mark.put_cf(index, [prefix::LOCAL_HORIZON], keys::ordered_i64(horizon));
            self.write_synced(mark)?;
            self.local_horizon.store(horizon, Ordering::Release);
            (horizon, doomed)
        };
        self.delete_windows_before(horizon, WriteBatch::default())?;
        tracing::info!(windows = doomed, before = horizon, "local copies of uploaded windows deleted");
        self.collect_dead_series()?;
        Ok(doomed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::objstore::Bucket;
    use crate::source::{Columns, Local, ReadSource};
    use crate::tenant::TenantId;
    use crate::upload::upload_pending;
    use crate::{Label, Labels, Options, RejectReason, Sample, SeriesCreation, SeriesWrite, Storage};

    const HOUR: i64 = 3600 * 1000;

    /// One sample of a series of its own (so that no write is out of order).
    fn write(storage: &Storage, ts: i64) -> Vec<RejectReason> {
        let s = SeriesWrite {
            labels: Labels::from_unsorted(vec![Label::new("__name__", "up"), Label::new("at", ts.to_string())]),
            samples: vec![Sample { ts, value: 1.0, start_ts: crate::NO_START }],
            histograms: vec![],
            exemplars: vec![],
        };
        storage
            .append(TenantId::DEFAULT, &[s], &[], SeriesCreation::UNLIMITED)
            .unwrap()
            .rejected
            .into_iter()
            .map(|r| r.reason)
            .collect()
    }

    fn local_samples(storage: &Arc<Storage>) -> Vec<i64> {
        let local = Local::new(storage.clone(), "anonymous");
        let found = local.select("anonymous", &[], i64::MIN, i64::MAX, Columns::SAMPLES).unwrap();
        let mut ts: Vec<i64> = found.iter().flat_map(|s| s.samples.iter().map(|x| x.ts)).collect();
        ts.sort();
        ts
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn uploaded_windows_leave_local_disk_after_the_local_retention_and_take_no_more_writes() {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options { upload_sealed_windows: true, local_retention_ms: Some(12 * HOUR), ..Default::default() };
        let storage = Arc::new(Storage::open(dir.path(), opts.clone()).unwrap());
        let now = crate::now_ms();
        let old = storage.window_of(now - 30 * HOUR);
        let older_pending = old - 2 * HOUR;
        let recent = storage.window_of(now - 4 * HOUR);
        for ts in [older_pending, old, recent] {
            assert_eq!(write(&storage, ts), []);
        }
        storage.seal(now).unwrap();

        // Nothing uploaded yet: nothing may go.
        assert_eq!(storage.expire_local_copies(now).unwrap(), 0);
        let bucket = Bucket::in_memory();
        upload_pending(&storage, &bucket, "anonymous", None, now).await.unwrap();
        // A late sample re-marks the oldest window: it holds the horizon there.
        assert_eq!(write(&storage, older_pending + 1000), []);
        storage.seal(now).unwrap();
        assert_eq!(storage.expire_local_copies(now).unwrap(), 0);
        assert_eq!(storage.local_horizon(), i64::MIN);

        upload_pending(&storage, &bucket, "anonymous", None, now).await.unwrap();
        assert_eq!(storage.expire_local_copies(now).unwrap(), 2);
        // Up to the end of the last window deleted: writes after it are still taken.
        let horizon = old + 2 * HOUR;
        assert_eq!(storage.local_horizon(), horizon);
        assert_eq!(local_samples(&storage), [recent]);
        assert_eq!(write(&storage, horizon + 5), []);
        assert_eq!(write(&storage, old + 5), [RejectReason::InObjectStorageOnly]);
        assert_eq!(write(&storage, recent + 5), []);
        // The recent window stays: it is younger than the local retention.
        assert_eq!(storage.expire_local_copies(now).unwrap(), 0);

        drop(storage);
        let storage = Arc::new(Storage::open(dir.path(), opts).unwrap());
        assert_eq!(storage.local_horizon(), horizon);
        assert_eq!(write(&storage, old + 6), [RejectReason::InObjectStorageOnly]);
    }
}
