//! Reading data back: a series' samples or exemplars in a time range (sealed blocks merged with
//! the head), and every exemplar that carries a trace id.

use rocksdb::{Direction, IteratorMode};

use crate::block;
use crate::db::Storage;
use crate::error::{Error, Result};
use crate::keys;
use crate::labels::Labels;
use crate::tenant::TenantId;
use crate::{Exemplar, Sample, SeriesId};

/// An exemplar found by trace id, with the series it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct TracedExemplar {
    pub series: Labels,
    pub exemplar: Exemplar,
}

impl Storage {
    /// Sealed blocks of one series overlapping `[mint, maxt]`, in window order.
    fn blocks_overlapping(&self, cf: &str, id: SeriesId, mint: i64, maxt: i64) -> Result<Vec<Vec<u8>>> {
        let windows = self.windows_overlapping(mint, maxt);
        let keys: Vec<[u8; 16]> = windows.iter().map(|&w| keys::block(w, id)).collect();
        let cf = self.cf(cf);
        let mut out = Vec::new();
        for got in self.db.multi_get_cf(keys.iter().map(|k| (cf, k.as_slice()))) {
            if let Some(b) = got? {
                out.push(b);
            }
        }
        Ok(out)
    }

    /// A series' samples with `mint <= ts <= maxt`, sorted by timestamp, stale markers included.
    ///
    /// The head is read before the blocks: sealing writes a block before it removes the data from
    /// the head, so whatever the interleaving, each sample is found in one or the other.
    pub fn samples(&self, id: SeriesId, mint: i64, maxt: i64) -> Result<Vec<Sample>> {
        let mut head = Vec::new();
        if let Some(series) = self.head.get(id) {
            series.lock().samples_into(mint, maxt, &mut head);
        }
        let mut sealed = Vec::new();
        for b in self.blocks_overlapping(keys::CF_BLOCKS, id, mint, maxt)? {
            let samples = block::decode_samples(&b).map_err(|source| Error::CorruptBlock {
                what: "sample block",
                series: id,
                source,
            })?;
            sealed.extend(samples.into_iter().filter(|s| s.ts >= mint && s.ts <= maxt));
        }
        Ok(merge_by_time(sealed, head, |s| s.ts))
    }

    /// A series' exemplars with `mint <= ts <= maxt`, sorted by timestamp (head first, as for
    /// samples).
    pub fn exemplars(&self, id: SeriesId, mint: i64, maxt: i64) -> Result<Vec<Exemplar>> {
        let head = self.head.get(id).map(|s| s.lock().exemplars(mint, maxt)).unwrap_or_default();
        let mut sealed = Vec::new();
        for b in self.blocks_overlapping(keys::CF_EXEMPLAR_BLOCKS, id, mint, maxt)? {
            let exemplars = block::decode_exemplars(&b).map_err(|source| Error::CorruptBlock {
                what: "exemplar block",
                series: id,
                source,
            })?;
            sealed.extend(exemplars.into_iter().filter(|e| e.ts >= mint && e.ts <= maxt));
        }
        Ok(merge_by_time(sealed, head, |e| e.ts))
    }

    /// Every exemplar of `tenant` whose trace-id label equals `trace_id`, oldest first.
    pub fn exemplars_by_trace(&self, tenant: TenantId, trace_id: &str) -> Result<Vec<TracedExemplar>> {
        let windows: Vec<i64> = self.windows.read().iter().copied().collect();
        let trace_cf = self.cf(keys::CF_TRACE_INDEX);
        let mut hits: Vec<(SeriesId, i64)> = Vec::new();
        for w in windows {
            let Some(prefix) = keys::trace_prefix(w, tenant, trace_id) else { return Ok(Vec::new()) };
            for item in self.db.iterator_cf(trace_cf, IteratorMode::From(&prefix, Direction::Forward)) {
                let (k, _) = item?;
                if !k.starts_with(&prefix) || k.len() != prefix.len() + 16 {
                    break;
                }
                hits.push((keys::read_u64(&k[prefix.len()..]), keys::read_ordered_i64(&k[prefix.len() + 8..])));
            }
        }
        let mut out = Vec::with_capacity(hits.len());
        let ids: Vec<SeriesId> = hits.iter().map(|h| h.0).collect();
        let labels = self.series_labels(&ids)?;
        for ((id, ts), (_, series)) in hits.into_iter().zip(labels) {
            // An exemplar may carry several trace-id labels; keep those that match this one.
            for exemplar in self.exemplars(id, ts, ts)? {
                if exemplar.labels.iter().any(|l| self.opts.trace_id_labels.contains(&l.name) && l.value == trace_id) {
                    out.push(TracedExemplar { series: series.clone(), exemplar });
                }
            }
        }
        out.sort_by(|a, b| a.exemplar.ts.cmp(&b.exemplar.ts).then_with(|| a.series.cmp(&b.series)));
        out.dedup();
        Ok(out)
    }
}

/// Merges sealed entries (blocks of disjoint windows, read in window order, so already sorted)
/// with head entries (sorted by key); at the same timestamp the head entry wins, as the write
/// path keeps them equal. Linear, where a map would cost a tree insert per sample.
fn merge_by_time<T>(sealed: Vec<T>, head: Vec<T>, ts: impl Fn(&T) -> i64) -> Vec<T> {
    if head.is_empty() {
        return sealed;
    }
    let mut out = Vec::with_capacity(sealed.len() + head.len());
    let mut head = head.into_iter().peekable();
    for entry in sealed {
        while let Some(h) = head.next_if(|h| ts(h) < ts(&entry)) {
            out.push(h);
        }
        match head.peek() {
            Some(h) if ts(h) == ts(&entry) => out.push(head.next().expect("peeked")),
            _ => out.push(entry),
        }
    }
    out.extend(head);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn merge_keeps_time_order_and_prefers_the_head() {
        let merged =
            super::merge_by_time(vec![(1, 'b'), (3, 'b'), (5, 'b')], vec![(0, 'h'), (3, 'h'), (6, 'h')], |e| e.0);
        assert_eq!(merged, vec![(0, 'h'), (1, 'b'), (3, 'h'), (5, 'b'), (6, 'h')]);
    }
}
