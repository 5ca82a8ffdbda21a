//! Reading data back: a series' samples or exemplars in a time range (sealed blocks merged with
//! the head), and every exemplar that carries a trace id.

use std::sync::LazyLock;

use rocksdb::{Direction, IteratorMode};

use crate::block;
use crate::db::Storage;
use crate::error::{Error, Result};
use crate::keys;
use crate::labels::Labels;
use crate::tenant::TenantId;
use crate::{Exemplar, HistogramSample, Sample, SampleColumns, SeriesId};

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
    pub fn samples(&self, id: SeriesId, mint: i64, maxt: i64) -> Result<Vec<Sample>> {
        Ok(self.samples_of(&[id], mint, maxt)?.pop().expect("one list per id"))
    }

    /// The samples of each series in `ids` (any order) with `mint <= ts <= maxt`, sorted by
    /// timestamp, stale markers included; one list per id, in the order of `ids`.
    ///
    /// The head is read before the blocks: sealing writes a block before it removes the data from
    /// the head, so whatever the interleaving, each sample is found in one or the other. Blocks
    /// are read window by window with one iterator walking the series in id order (a selector's
    /// series sit close together in a window, so most steps are a `next`, not a lookup), then
    /// decoded, on every core (at most four threads) once there are enough blocks to share.
    pub fn samples_of(&self, ids: &[SeriesId], mint: i64, maxt: i64) -> Result<Vec<Vec<Sample>>> {
        let mut out: Vec<Vec<Sample>> = (0..ids.len()).map(|_| Vec::new()).collect();
        self.samples_of_into(ids, mint, maxt, &mut out)?;
        Ok(out)
    }

    /// [`Storage::samples_of`] into `out` (one list per id), reusing its lists: a reader that
    /// reads part after part of a selection into the same lists fills no fresh pages.
    pub fn samples_of_into(&self, ids: &[SeriesId], mint: i64, maxt: i64, out: &mut [Vec<Sample>]) -> Result<()> {
        let heads = self.read_sample_blocks_into(ids, mint, maxt, out, decode_threads())?;
        for (list, head) in out.iter_mut().zip(heads) {
            *list = merge_by_time(std::mem::take(list), head, |s| s.ts);
        }
        Ok(())
    }

    /// [`Storage::samples_of_into`] as columns ([`SampleColumns`]), which blocks decode into
    /// without rows in between, on the calling thread: its callers read a selection in parts,
    /// one reader per core.
    pub fn sample_columns_of_into(
        &self,
        ids: &[SeriesId],
        mint: i64,
        maxt: i64,
        out: &mut [SampleColumns],
    ) -> Result<()> {
        let heads = self.read_sample_blocks_into(ids, mint, maxt, out, 1)?;
        for (columns, head) in out.iter_mut().zip(heads) {
            merge_head_into_columns(columns, head);
        }
        Ok(())
    }

    /// The sealed samples of `ids` in `[mint, maxt]` decoded into `out` (emptied first, one list
    /// per id) on up to `threads` threads, and the head's samples of each, read first, to merge
    /// in.
    fn read_sample_blocks_into<L: SampleList>(
        &self,
        ids: &[SeriesId],
        mint: i64,
        maxt: i64,
        out: &mut [L],
        threads: usize,
    ) -> Result<Vec<Vec<Sample>>> {
        assert_eq!(ids.len(), out.len(), "one list per id");
        out.iter_mut().for_each(L::clear);
        let mut heads: Vec<Vec<Sample>> = Vec::with_capacity(ids.len());
        for &id in ids {
            let mut head = Vec::new();
            if let Some(series) = self.head.get(id) {
                series.lock().samples_into(mint, maxt, &mut head);
            }
            heads.push(head);
        }
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_unstable_by_key(|&i| ids[i]);
        // (position in `ids`, block bytes), in window order for each series.
        let mut raw: Vec<(usize, Vec<u8>)> = Vec::new();
        let cf = self.cf(keys::CF_BLOCKS);
        // Series far apart in id (one per target of a dashboard's selector) are each a seek of
        // the walk below: one batched lookup per window finds them with fewer index and filter
        // reads.
        let sparse = match (order.first(), order.last()) {
            (Some(&first), Some(&last)) => (ids[last] - ids[first]) / (order.len() as u64) > SPARSE_ID_GAP,
            _ => false,
        };
        for window in self.windows_overlapping(mint, maxt) {
            if sparse {
                let keys: Vec<[u8; 16]> = order.iter().map(|&i| keys::block(window, ids[i])).collect();
                for (&i, got) in order.iter().zip(self.db.batched_multi_get_cf(cf, keys.iter(), true)) {
                    if let Some(v) = got? {
                        raw.push((i, v.to_vec()));
                    }
                }
                continue;
            }
            let (Some(&first), Some(&last)) = (order.first(), order.last()) else { break };
            let mut opts = rocksdb::ReadOptions::default();
            opts.set_iterate_upper_bound(keys::block(window, ids[last].saturating_add(1)).to_vec());
            let mut iter = self.db.raw_iterator_cf_opt(cf, opts);
            iter.seek(keys::block(window, ids[first]));
            for &i in &order {
                let want = keys::block(window, ids[i]);
                // A few `next`s are cheaper than a seek; further away, seek.
                let mut steps = 0;
                while iter.key().is_some_and(|k| k < want.as_slice()) {
                    if steps == 8 {
                        iter.seek(want);
                        break;
                    }
                    iter.next();
                    steps += 1;
                }
                match (iter.key(), iter.value()) {
                    (Some(k), Some(v)) if k == want.as_slice() => raw.push((i, v.to_vec())),
                    (Some(_), _) => {}
                    _ => break,
                }
            }
            iter.status()?;
        }
        raw.sort_by_key(|(i, _)| *i);
        decode_blocks_into(&raw, ids, &heads, mint, maxt, out, threads)?;
        Ok(heads)
    }

    /// The native histogram samples of each series in `ids` with `mint <= ts <= maxt`, sorted by
    /// timestamp, stale markers included; one list per id, in the order of `ids`. The head is read
    /// before the blocks, as for float samples. Series that never held a histogram cost a bit-set
    /// lookup.
    pub fn histograms_of(&self, ids: &[SeriesId], mint: i64, maxt: i64) -> Result<Vec<Vec<HistogramSample>>> {
        let mut out = Vec::with_capacity(ids.len());
        let with_histograms = self.histogram_series.read();
        for &id in ids {
            if !with_histograms.contains(id) {
                out.push(Vec::new());
                continue;
            }
            let head = self.head.get(id).map(|s| s.lock().histograms(mint, maxt)).unwrap_or_default();
            let mut sealed = Vec::new();
            for b in self.blocks_overlapping(keys::CF_HISTOGRAM_BLOCKS, id, mint, maxt)? {
                let samples = decode_histogram_block(&b, id)?;
                sealed.extend(samples.into_iter().filter(|s| s.ts >= mint && s.ts <= maxt));
            }
            out.push(merge_by_time(sealed, head, |s| s.ts));
        }
        Ok(out)
    }

    /// A series' exemplars with `mint <= ts <= maxt`, sorted by timestamp (head first, as for
    /// samples).
    pub fn exemplars(&self, id: SeriesId, mint: i64, maxt: i64) -> Result<Vec<Exemplar>> {
        let head = self.head.get(id).map(|s| s.lock().exemplars(mint, maxt)).unwrap_or_default();
        let mut sealed = Vec::new();
        for b in self.blocks_overlapping(keys::CF_EXEMPLAR_BLOCKS, id, mint, maxt)? {
            let exemplars = decode_exemplar_block(&b, id)?;
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

/// A sealed sample block of series `id`, decoded; corruption is an error naming the series.
pub(crate) fn decode_sample_block(bytes: &[u8], id: SeriesId) -> Result<Vec<Sample>> {
    block::decode_samples(bytes).map_err(corrupt_sample_block(id))
}

fn corrupt_sample_block(id: SeriesId) -> impl FnOnce(block::BlockError) -> Error {
    move |source| Error::CorruptBlock { what: "sample block", series: id, source }
}

/// A sealed histogram block of series `id`, decoded; corruption is an error naming the series.
pub(crate) fn decode_histogram_block(bytes: &[u8], id: SeriesId) -> Result<Vec<HistogramSample>> {
    block::decode_histograms(bytes).map_err(|source| Error::CorruptBlock {
        what: "histogram block",
        series: id,
        source,
    })
}

/// A sealed exemplar block of series `id`, decoded; corruption is an error naming the series.
pub(crate) fn decode_exemplar_block(bytes: &[u8], id: SeriesId) -> Result<Vec<Exemplar>> {
    block::decode_exemplars(bytes).map_err(|source| Error::CorruptBlock { what: "exemplar block", series: id, source })
}

/// Most threads that decode the blocks of one read: decoding is most of a query's storage time,
/// and a query is otherwise single-threaded.
const DECODE_THREADS: usize = 4;

/// Threads that decode the blocks of one read here: the cores, at most [`DECODE_THREADS`].
/// Asked once: `available_parallelism` reads the cgroup files each time (50 µs on the benchmark
/// machine), and it was asked for every part a query read.
pub(crate) fn decode_threads() -> usize {
    static THREADS: LazyLock<usize> =
        LazyLock::new(|| std::thread::available_parallelism().map_or(1, |n| n.get()).min(DECODE_THREADS));
    *THREADS
}

/// The mean gap in series id above which a read looks its blocks up in one batch per window
/// instead of walking the window's blocks: past it, most steps of the walk would be seeks.
const SPARSE_ID_GAP: u64 = 8;

/// Reads below this many blocks are decoded on the calling thread alone. A dashboard's selector
/// over a hundred series reads a block or two of each: a thread costs tens of microseconds, the
/// blocks a few each.
const PARALLEL_DECODE_BLOCKS: usize = 128;

/// The most samples a block's unchecked header may make a reader reserve room for: more than
/// a two-hour window holds at one sample a second.
const MAX_RESERVED_PER_BLOCK: usize = 1 << 16;

/// A series' list of float samples that blocks decode into: rows, or columns.
trait SampleList: Send {
    fn clear(&mut self);
    /// Makes room for `n` more samples.
    fn reserve_exact(&mut self, n: usize);
    /// Appends a block's samples in `[mint, maxt]`.
    fn decode_block(&mut self, bytes: &[u8], mint: i64, maxt: i64) -> std::result::Result<(), block::BlockError>;
}

impl SampleList for Vec<Sample> {
    fn clear(&mut self) {
        Vec::clear(self);
    }

    fn reserve_exact(&mut self, n: usize) {
        Vec::reserve_exact(self, n);
    }

    fn decode_block(&mut self, bytes: &[u8], mint: i64, maxt: i64) -> std::result::Result<(), block::BlockError> {
        block::decode_samples_into(bytes, mint, maxt, self)
    }
}

impl SampleList for SampleColumns {
    fn clear(&mut self) {
        SampleColumns::clear(self);
    }

    fn reserve_exact(&mut self, n: usize) {
        self.ts.reserve_exact(n);
        self.values.reserve_exact(n);
    }

    fn decode_block(&mut self, bytes: &[u8], mint: i64, maxt: i64) -> std::result::Result<(), block::BlockError> {
        block::decode_sample_columns_into(bytes, mint, maxt, self)
    }
}

/// Decodes sample blocks (sorted by position in `ids`, in window order within each) into
/// `sealed`, one list per position, keeping the samples in `[mint, maxt]`; in parallel when
/// there are many, each thread taking whole series, so every list is sized once and written by
/// one thread. Each list is reserved for its head's samples too, which the merge with the head
/// then appends without moving the list.
fn decode_blocks_into<L: SampleList>(
    raw: &[(usize, Vec<u8>)],
    ids: &[SeriesId],
    heads: &[Vec<Sample>],
    mint: i64,
    maxt: i64,
    sealed: &mut [L],
    threads: usize,
) -> Result<()> {
    // `sealed` holds the lists of positions `first..`.
    let decode = |part: &[(usize, Vec<u8>)], sealed: &mut [L], first: usize| -> Result<()> {
        for series in part.chunk_by(|a, b| a.0 == b.0) {
            let out = &mut sealed[series[0].0 - first];
            let blocks: usize = series.iter().map(|(_, b)| block::sample_count_hint(b, MAX_RESERVED_PER_BLOCK)).sum();
            out.reserve_exact(blocks + heads[series[0].0].len());
            for (i, b) in series {
                out.decode_block(b, mint, maxt).map_err(corrupt_sample_block(ids[*i]))?;
            }
        }
        Ok(())
    };
    if raw.len() < PARALLEL_DECODE_BLOCKS || threads < 2 {
        return decode(raw, sealed, 0);
    }
    std::thread::scope(|scope| {
        let (mut raw, mut sealed, mut first) = (raw, sealed, 0);
        let mut parts = Vec::with_capacity(threads);
        for left in (1..=threads).rev() {
            // About an equal share of the blocks left, ending at a series' last block.
            let mut end = raw.len().div_ceil(left);
            while end > 0 && end < raw.len() && raw[end].0 == raw[end - 1].0 {
                end += 1;
            }
            let (part, rest) = raw.split_at(end);
            let next = rest.first().map_or(first + sealed.len(), |(i, _)| *i);
            let (lists, rest_lists) = std::mem::take(&mut sealed).split_at_mut(next - first);
            parts.push(scope.spawn(move || decode(part, lists, first)));
            (raw, sealed, first) = (rest, rest_lists, next);
        }
        for part in parts {
            part.join().expect("decoding does not panic")?;
        }
        Ok(())
    })
}

/// Merges sealed entries (blocks of disjoint windows, read in window order, so already sorted)
/// with head entries (sorted by key); at the same timestamp the head entry wins, as the write
/// path keeps them equal. In place: the sealed windows end about where the head begins, so only
/// the sealed entries from the head's first timestamp on (late samples sealed into a window the
/// head holds too) are merged; the rest stay where they are, and a list reserved for the head
/// (as `samples_of` reserves it) takes the head without moving. A new list per series would fill
/// fresh pages with every sample of a day-long read a second time.
fn merge_by_time<T>(mut sealed: Vec<T>, head: Vec<T>, ts: impl Fn(&T) -> i64) -> Vec<T> {
    let Some(first_head) = head.first().map(&ts) else { return sealed };
    if sealed.is_empty() {
        // A reused list keeps its pages.
        if sealed.capacity() < head.len() {
            return head;
        }
        sealed.extend(head);
        return sealed;
    }
    let tail = sealed.split_off(sealed.partition_point(|e| ts(e) < first_head));
    sealed.reserve(tail.len() + head.len());
    let mut head = head.into_iter().peekable();
    for entry in tail {
        while let Some(h) = head.next_if(|h| ts(h) < ts(&entry)) {
            sealed.push(h);
        }
        match head.peek() {
            Some(h) if ts(h) == ts(&entry) => sealed.push(head.next().expect("peeked")),
            _ => sealed.push(entry),
        }
    }
    sealed.extend(head);
    sealed
}

/// [`merge_by_time`] for columns: the head appended when it starts after the sealed samples,
/// as it does unless late samples were sealed into a window the head holds too; those few are
/// merged as rows.
fn merge_head_into_columns(columns: &mut SampleColumns, head: Vec<Sample>) {
    let Some(first_head) = head.first().map(|s| s.ts) else { return };
    if columns.ts.last().is_some_and(|&t| t >= first_head) {
        let sealed: Vec<Sample> = columns.samples().collect();
        columns.clear();
        columns.extend(merge_by_time(sealed, head, |s| s.ts));
    } else {
        columns.extend(head);
    }
}

#[cfg(test)]
mod tests {
    use crate::{Sample, SampleColumns};

    /// A head merged into columns is the head merged into rows, start timestamps and all: the
    /// first sample with one, one after samples without, and a head that overlaps the blocks.
    #[test]
    fn a_head_merges_into_columns_as_into_rows() {
        let s = |ts: i64, start_ts: i64| Sample { ts, value: ts as f64 * 1.5, start_ts };
        for (sealed, head) in [
            (vec![], vec![s(1, 5), s(2, 0), s(3, 7)]),
            (vec![s(1, 0), s(2, 0)], vec![s(3, 9), s(4, 0)]),
            (vec![s(1, 4), s(3, 0)], vec![s(2, 0), s(3, 8), s(5, 0)]),
            (vec![s(1, 0)], vec![s(2, 0)]),
        ] {
            let mut columns = SampleColumns::default();
            columns.extend(sealed.clone());
            super::merge_head_into_columns(&mut columns, head.clone());
            let rows = super::merge_by_time(sealed, head, |s| s.ts);
            assert_eq!(columns.samples().collect::<Vec<_>>(), rows);
            let any_start = rows.iter().any(|s| s.start_ts != crate::NO_START);
            assert_eq!(columns.starts.len(), if any_start { rows.len() } else { 0 });
        }
    }

    #[test]
    fn merge_keeps_time_order_and_prefers_the_head() {
        let merged =
            super::merge_by_time(vec![(1, 'b'), (3, 'b'), (5, 'b')], vec![(0, 'h'), (3, 'h'), (6, 'h')], |e| e.0);
        assert_eq!(merged, vec![(0, 'h'), (1, 'b'), (3, 'h'), (5, 'b'), (6, 'h')]);
    }

    #[test]
    fn merge_appends_a_head_that_follows_the_blocks_in_place() {
        let mut sealed = Vec::with_capacity(5);
        sealed.extend([(1, 'b'), (2, 'b'), (4, 'b')]);
        let at = sealed.as_ptr();
        let merged = super::merge_by_time(sealed, vec![(4, 'h'), (5, 'h')], |e| e.0);
        assert_eq!(merged, vec![(1, 'b'), (2, 'b'), (4, 'h'), (5, 'h')]);
        assert_eq!(merged.as_ptr(), at, "the reserved list took the head where it was");
        let head_only = super::merge_by_time(Vec::new(), vec![(7, 'h')], |e| e.0);
        assert_eq!(head_only, vec![(7, 'h')]);
        let sealed_only = super::merge_by_time(vec![(7, 'b')], Vec::new(), |e| e.0);
        assert_eq!(sealed_only, vec![(7, 'b')]);
    }
}
