//! Sealing: moving head data into columnar blocks, so that the write-ahead log stays small.
//!
//! A pass seals every closed head chunk (120 samples, or cut at a window's end), whatever its
//! window, and everything older than the wall clock minus the out-of-order window (the open
//! chunk of a series that stopped, histogram samples, exemplars). A window is thus sealed
//! in steps while it fills: each step merges the new head data into the window's existing block,
//! as late out-of-order writes always have been. For each series the sealer copies that data out
//! of the head, merges it with the block, and writes the blocks in a synced batch. Only then does
//! it remove what it copied from the head, so a reader (which reads the head before the blocks)
//! always finds the data in one or the other; data a write changed meanwhile stays and is sealed
//! again next pass.
//!
//! The head's log segments are deleted last: a segment closed before the pass started holds only
//! data that was in the head then, so once the blocks (and RocksDB's own log, which holds the
//! unsynced trace-index and activity writes) are on disk, a segment whose newest timestamp is
//! older than everything left in the head is no longer needed. What the log holds is thus
//! bounded by time, not by ingest volume: the open chunks (about 120 scrapes) and at most the
//! out-of-order window of histograms and exemplars, plus one pass interval. A crash anywhere in
//! between replays the segments into the head, and the next pass merges the same data into the
//! same blocks again.
//!
//! With uploads on, each window the pass wrote is marked as waiting for upload
//! ([`crate::upload`]) before the segments go.

use rocksdb::WriteBatch;

use crate::block;
use crate::db::Storage;
use crate::error::Result;
use crate::head::{SealGroup, Taken};
use crate::keys;
use crate::querier::{decode_exemplar_block, decode_histogram_block, decode_sample_block};
use crate::{Exemplar, HistogramSample, Sample, SeriesId};

/// What one sealing pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SealReport {
    pub sample_blocks_written: u64,
    pub samples_sealed: u64,
    pub histogram_blocks_written: u64,
    pub histograms_sealed: u64,
    pub exemplar_blocks_written: u64,
    pub exemplars_sealed: u64,
    pub wal_segments_deleted: u64,
}

/// How one kind of entry (sample, histogram sample or exemplar) is merged into its block.
pub(crate) struct Kind<T> {
    pub(crate) blocks_cf: &'static str,
    pub(crate) ts: fn(&T) -> i64,
    pub(crate) decode_block: fn(&[u8], SeriesId) -> Result<Vec<T>>,
    pub(crate) encode_block: fn(&[T]) -> Vec<u8>,
}

pub(crate) const SAMPLES: Kind<Sample> = Kind {
    blocks_cf: keys::CF_BLOCKS,
    ts: |s| s.ts,
    decode_block: decode_sample_block,
    encode_block: block::encode_samples,
};

pub(crate) const HISTOGRAMS: Kind<HistogramSample> = Kind {
    blocks_cf: keys::CF_HISTOGRAM_BLOCKS,
    ts: |s| s.ts,
    decode_block: decode_histogram_block,
    encode_block: block::encode_histograms,
};

pub(crate) const EXEMPLARS: Kind<Exemplar> = Kind {
    blocks_cf: keys::CF_EXEMPLAR_BLOCKS,
    ts: |e| e.ts,
    decode_block: decode_exemplar_block,
    encode_block: |e| block::encode_exemplars(e),
};

/// Series written per batch: bounds the memory of one batch and the work a crash throws away.
const SERIES_PER_BATCH: usize = 256;

impl Storage {
    /// Seals every closed head chunk, and everything older than `now` minus the out-of-order
    /// window, then deletes the log segments the head no longer needs.
    pub fn seal(&self, now: i64) -> Result<SealReport> {
        let _sealing = self.sealing.lock();
        let horizon = now.saturating_sub(self.opts.out_of_order_window_ms);
        // Windows this old are rarely written again: stop remembering which series they hold.
        let forget_before = self.window_of(horizon).saturating_sub(self.opts.block_duration_ms);
        self.activity_written.lock().retain(|&(w, _), _| w >= forget_before);
        // Segments closed now hold only data already in the head, which this pass will see.
        let first_open_segment = self.wal.rotate_if_older(i64::MAX)?;

        let mut report = SealReport::default();
        let mut batch = WriteBatch::default();
        let mut pending: Vec<(SeriesId, Taken)> = Vec::new();
        let mut windows_written = std::collections::BTreeSet::new();
        for id in self.head.ids() {
            let Some(series) = self.head.get(id) else { continue };
            let sealable = series.lock().sealable(horizon);
            if sealable.is_empty() {
                continue;
            }
            windows_written.extend(sealable.samples.iter().map(|g| g.window));
            windows_written.extend(sealable.histograms.iter().map(|g| g.window));
            windows_written.extend(sealable.exemplars.iter().map(|g| g.window));
            for group in sealable.samples {
                report.samples_sealed += group.items.len() as u64;
                report.sample_blocks_written += 1;
                self.merge_into_block(&SAMPLES, &mut batch, id, group)?;
            }
            for group in sealable.histograms {
                report.histograms_sealed += group.items.len() as u64;
                report.histogram_blocks_written += 1;
                self.merge_into_block(&HISTOGRAMS, &mut batch, id, group)?;
            }
            for group in sealable.exemplars {
                report.exemplars_sealed += group.items.len() as u64;
                report.exemplar_blocks_written += 1;
                self.merge_into_block(&EXEMPLARS, &mut batch, id, group)?;
            }
            pending.push((id, sealable.taken));
            if pending.len() >= SERIES_PER_BATCH {
                self.write_blocks(std::mem::take(&mut batch), &mut pending)?;
            }
        }
        self.write_blocks(batch, &mut pending)?;
        self.head.remove_empty();
        // Synced before any log segment goes: a window's mark survives whatever follows.
        if self.opts.upload_sealed_windows {
            self.mark_pending_upload(windows_written)?;
        }
        // Everything a closed segment holds was in the head when the pass began; what is older
        // than the oldest thing left in the head is now in blocks (or past retention).
        let unsealed_from = self.head.oldest_ts().unwrap_or(i64::MAX);
        // The trace-index and activity writes of the data in those segments must be durable
        // before the segments go. Flushing the memtables makes them so, and lets RocksDB delete
        // its own log: a log file lives until every column family with writes in it is flushed,
        // so the small ingest-time families would otherwise pin the blocks just written there
        // too, uncompressed (on amber-bench's workload 12.8 MB of log beside 0.3 MB of tables).
        self.flush()?;
        report.wal_segments_deleted = self.wal.delete_sealed(first_open_segment, unsealed_from)? as u64;
        Ok(report)
    }

    /// Writes a batch of blocks, then removes what they hold from the head.
    fn write_blocks(&self, batch: WriteBatch, pending: &mut Vec<(SeriesId, Taken)>) -> Result<()> {
        if !batch.is_empty() {
            self.write_synced(batch)?;
        }
        for (id, taken) in pending.drain(..) {
            if let Some(series) = self.head.get(id) {
                series.lock().remove_sealed(&taken);
            }
        }
        Ok(())
    }

    fn merge_into_block<T>(
        &self,
        kind: &Kind<T>,
        batch: &mut WriteBatch,
        id: SeriesId,
        group: SealGroup<T>,
    ) -> Result<()> {
        let blocks_cf = self.cf(kind.blocks_cf);
        let block_key = keys::block(group.window, id);
        let head_items = group.items;
        let mut merged: Vec<T> = match self.db.get_pinned_cf(blocks_cf, block_key)? {
            Some(b) => (kind.decode_block)(&b, id)?,
            None => Vec::new(),
        };
        if merged.is_empty() {
            merged = head_items;
        } else {
            // Head entries win at equal timestamps, as they do for readers.
            merged.retain(|old| head_items.binary_search_by_key(&(kind.ts)(old), kind.ts).is_err());
            merged.extend(head_items);
            merged.sort_by_key(kind.ts);
        }
        batch.put_cf(blocks_cf, block_key, (kind.encode_block)(&merged));
        Ok(())
    }
}
