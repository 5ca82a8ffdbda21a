//! Retention: whole windows older than the retention period are deleted with range deletes.
//!
//! Blocks, exemplar blocks, trace-index keys and activity sets all start with their window, so
//! dropping everything before a window is four range deletes in one atomic batch, whatever the
//! number of series. Head data older than the cutoff (normally sealed long before; not when the
//! out-of-order window is longer than retention) is dropped from memory, and log segments holding
//! only such data are deleted. Series left without data then leave the index ([`crate::gc`]).

use rocksdb::WriteBatch;

use crate::db::Storage;
use crate::error::Result;
use crate::keys::{self, prefix};
use crate::tenant::TenantId;

impl Storage {
    /// Deletes every window that ended before `now` minus the retention period. Returns the
    /// number of windows deleted.
    pub fn enforce_retention(&self, now: i64) -> Result<usize> {
        let cutoff = now.saturating_sub(self.opts.retention_ms);
        // The first window that still holds data younger than the cutoff.
        let keep_from = self.window_of(cutoff);
        let doomed = self.windows.read().range(..keep_from).count();
        if doomed == 0 {
            return Ok(0);
        }
        let first_open_segment = self.wal.rotate_if_older(keep_from)?;
        for id in self.head.ids() {
            if let Some(series) = self.head.get(id) {
                series.lock().drop_before(keep_from);
            }
        }
        self.head.remove_empty();
        // Marks of deleted windows go with them: nothing is left to upload or to expire.
        let mut batch = WriteBatch::default();
        let index = self.cf(keys::CF_INDEX);
        for mark in [prefix::PENDING_UPLOAD, prefix::UPLOADED] {
            batch.delete_range_cf(index, keys::window_mark(mark, i64::MIN), keys::window_mark(mark, keep_from));
        }
        self.delete_windows_before(keep_from, batch)?;
        self.wal.delete_sealed(first_open_segment, keep_from)?;
        tracing::info!(windows = doomed, before = keep_from, "retention deleted windows");
        self.collect_dead_series()?;
        Ok(doomed)
    }

    /// Deletes the blocks, trace-index keys and activity sets of every window before `keep_from`
    /// in one synced batch with `batch`, then stops listing those windows. Head data and log
    /// segments are the caller's.
    pub(crate) fn delete_windows_before(&self, keep_from: i64, mut batch: WriteBatch) -> Result<()> {
        let ranges = [
            (keys::CF_BLOCKS, keys::block(i64::MIN, 0).to_vec(), keys::block(keep_from, 0).to_vec()),
            (keys::CF_EXEMPLAR_BLOCKS, keys::block(i64::MIN, 0).to_vec(), keys::block(keep_from, 0).to_vec()),
            (keys::CF_HISTOGRAM_BLOCKS, keys::block(i64::MIN, 0).to_vec(), keys::block(keep_from, 0).to_vec()),
            (keys::CF_TRACE_INDEX, keys::ordered_i64(i64::MIN).to_vec(), keys::ordered_i64(keep_from).to_vec()),
            (
                keys::CF_INDEX,
                keys::activity(i64::MIN, TenantId(0)).to_vec(),
                keys::activity(keep_from, TenantId(0)).to_vec(),
            ),
        ];
        for (cf, from, to) in &ranges {
            batch.delete_range_cf(self.cf(cf), from, to);
        }
        self.write_synced(batch)?;
        self.windows.write().retain(|&w| w >= keep_from);
        for (cf, from, to) in &ranges {
            self.compact_range(cf, Some(from), Some(to));
        }
        Ok(())
    }
}
