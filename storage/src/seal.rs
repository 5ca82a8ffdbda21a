//! Sealing: moving head entries of windows that can no longer change much into columnar blocks.
//!
//! A window is sealed once its end is older than the wall clock minus the out-of-order window.
//! For each (series, window) in the head past that horizon, the sealer merges the head entries
//! with the window's existing block, if any (late out-of-order writes land in the head like any
//! other), and writes one atomic batch: the new block, and a delete of exactly the head keys it
//! read. A crash before the batch leaves the head as it was; after it, the block holds every
//! entry. A write racing the sealer adds a head key the sealer did not read, so it survives and
//! is sealed on the next pass. Readers merge blocks with the head, so nothing is seen twice.

use rocksdb::WriteBatch;

use crate::block;
use crate::db::Storage;
use crate::error::{Error, Result};
use crate::head::{decode_head_exemplar, decode_head_sample};
use crate::keys;
use crate::{Exemplar, Sample, SeriesId};

/// What one sealing pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SealReport {
    pub sample_blocks_written: u64,
    pub samples_sealed: u64,
    pub exemplar_blocks_written: u64,
    pub exemplars_sealed: u64,
}

/// How one kind of entry (sample or exemplar) moves from head keys to blocks.
struct Kind<T> {
    head_cf: &'static str,
    blocks_cf: &'static str,
    what: &'static str,
    ts: fn(&T) -> i64,
    decode_head: fn(i64, &[u8]) -> Option<T>,
    decode_block: fn(&[u8]) -> Result<Vec<T>, block::BlockError>,
    encode_block: fn(&[T]) -> Vec<u8>,
}

const SAMPLES: Kind<Sample> = Kind {
    head_cf: keys::CF_HEAD,
    blocks_cf: keys::CF_BLOCKS,
    what: "sample block",
    ts: |s| s.ts,
    decode_head: decode_head_sample,
    decode_block: block::decode_samples,
    encode_block: block::encode_samples,
};

const EXEMPLARS: Kind<Exemplar> = Kind {
    head_cf: keys::CF_EXEMPLAR_HEAD,
    blocks_cf: keys::CF_EXEMPLAR_BLOCKS,
    what: "exemplar block",
    ts: |e| e.ts,
    decode_head: decode_head_exemplar,
    decode_block: block::decode_exemplars,
    encode_block: |e| block::encode_exemplars(e),
};

/// Groups written per batch: bounds the memory of one batch and the work a crash throws away.
const GROUPS_PER_BATCH: usize = 256;

impl Storage {
    /// Seals every window that ended before `now` minus the out-of-order window.
    pub fn seal(&self, now: i64) -> Result<SealReport> {
        let horizon = now.saturating_sub(self.opts.out_of_order_window_ms);
        // Windows this old are rarely written again: stop remembering which series they hold.
        let forget_before = horizon.saturating_sub(self.opts.block_duration_ms);
        self.activity_written.lock().retain(|&(w, _), _| w >= forget_before);
        let (sample_blocks_written, samples_sealed) = self.seal_kind(&SAMPLES, horizon)?;
        let (exemplar_blocks_written, exemplars_sealed) = self.seal_kind(&EXEMPLARS, horizon)?;
        Ok(SealReport { sample_blocks_written, samples_sealed, exemplar_blocks_written, exemplars_sealed })
    }

    fn seal_kind<T>(&self, kind: &Kind<T>, horizon: i64) -> Result<(u64, u64)> {
        let head_cf = self.cf(kind.head_cf);
        let dur = self.opts.block_duration_ms;
        let mut iter = self.db.raw_iterator_cf(head_cf);
        iter.seek_to_first();
        let mut batch = WriteBatch::default();
        let mut groups_in_batch = 0;
        let (mut blocks, mut entries) = (0u64, 0u64);
        // The (series, window) being collected, its entries and their keys.
        let mut group: Option<(SeriesId, i64)> = None;
        let mut items: Vec<T> = Vec::new();
        let mut item_keys: Vec<Vec<u8>> = Vec::new();
        loop {
            let next = match (iter.key(), iter.value()) {
                (Some(k), Some(v)) if k.len() == 16 => {
                    let id = keys::read_u64(&k[..8]);
                    let ts = keys::read_ordered_i64(&k[8..]);
                    Some((id, ts, k.to_vec(), v.to_vec()))
                }
                _ => None,
            };
            let next_group = next.as_ref().map(|(id, ts, _, _)| (*id, self.window_of(*ts)));
            if group.is_some() && group != next_group {
                let (id, window) = group.take().expect("checked");
                entries += items.len() as u64;
                self.seal_group(kind, &mut batch, id, window, std::mem::take(&mut items), &item_keys)?;
                item_keys.clear();
                blocks += 1;
                groups_in_batch += 1;
                if groups_in_batch >= GROUPS_PER_BATCH {
                    self.write_synced(std::mem::take(&mut batch))?;
                    groups_in_batch = 0;
                }
            }
            let Some((id, ts, k, v)) = next else { break };
            let window = self.window_of(ts);
            if window.saturating_add(dur) > horizon {
                // This series has nothing more to seal: skip to the next series.
                match id.checked_add(1) {
                    Some(next_id) => iter.seek(keys::head(next_id, i64::MIN)),
                    None => break,
                }
                continue;
            }
            let item = (kind.decode_head)(ts, &v).ok_or(Error::CorruptIndex {
                what: "head entry",
                source: crate::chunkenc::DecodeError::Invalid("undecodable head value"),
            })?;
            group = Some((id, window));
            items.push(item);
            item_keys.push(k);
            iter.next();
        }
        iter.status()?;
        if !batch.is_empty() {
            self.write_synced(batch)?;
        }
        Ok((blocks, entries))
    }

    fn seal_group<T>(
        &self,
        kind: &Kind<T>,
        batch: &mut WriteBatch,
        id: SeriesId,
        window: i64,
        head_items: Vec<T>,
        head_keys: &[Vec<u8>],
    ) -> Result<()> {
        let blocks_cf = self.cf(kind.blocks_cf);
        let block_key = keys::block(window, id);
        let mut merged: Vec<T> = match self.db.get_pinned_cf(blocks_cf, block_key)? {
            Some(b) => {
                (kind.decode_block)(&b).map_err(|source| Error::CorruptBlock { what: kind.what, series: id, source })?
            }
            None => Vec::new(),
        };
        // Head entries win at equal timestamps, as they do for readers.
        merged.retain(|old| head_items.binary_search_by_key(&(kind.ts)(old), kind.ts).is_err());
        merged.extend(head_items);
        merged.sort_by_key(kind.ts);
        batch.put_cf(blocks_cf, block_key, (kind.encode_block)(&merged));
        let head_cf = self.cf(kind.head_cf);
        for k in head_keys {
            batch.delete_cf(head_cf, k);
        }
        Ok(())
    }
}
