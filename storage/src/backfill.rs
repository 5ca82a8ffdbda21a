//! Backfill: history written straight into sealed blocks (`amber import`, `POST /api/v1/import`).
//!
//! The live write path ([`Storage::append`]) keeps each series in time order: a sample older than
//! the series' newest by more than the out-of-order window is refused, and everything passes
//! through the head and the log. History does neither. A backfill merges each (series, window)'s
//! entries into that window's block, the way a sealing pass merges the head, and writes the
//! blocks, their activity sets and trace-index keys in one synced batch: when it returns `Ok`,
//! what it accepted is durable, and the head and the log never saw it. Old data therefore costs
//! no head memory and no replay, whatever its age or order.
//!
//! Data the store already holds wins: an entry at a timestamp the block or the head has is a
//! duplicate when equal (ignored, so a rerun of an import writes nothing twice) and refused as
//! conflicting otherwise. Retention, the local horizon, the allowed future, the series limits and
//! the exemplar limit per series and window apply as they do to live writes.
//!
//! A backfill holds the sealing lock, so no sealing pass, snapshot or local-copy expiry rewrites a
//! block between its read and its write. It races with series garbage collection as
//! `Storage::append` does: ids resolved under an older collection epoch are resolved again, and the
//! epoch is checked under the series-creation lock that collection holds while it removes series.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;

use roaring::RoaringTreemap;
use rocksdb::WriteBatch;

use crate::append::{
    AppendReport, Bounds, RejectReason, Rejection, SeriesCreation, SeriesWrite, outside_bounds, refuse_all,
};
use crate::db::Storage;
use crate::error::Result;
use crate::head::MemSeries;
use crate::index::encode_postings;
use crate::keys;
use crate::labels::Labels;
use crate::metadata::MetricMetadata;
use crate::seal::{EXEMPLARS, HISTOGRAMS, Kind, SAMPLES};
use crate::tenant::TenantId;
use crate::{DataKind, Exemplar, HistogramSample, Sample, SeriesId};

/// What the store holds at one timestamp of a series, compared with a backfilled entry.
enum Held {
    Nothing,
    Same,
    Different,
}

/// One series' entries of one kind, checked and merged into their windows' blocks.
struct Merge<'a, T> {
    kind: &'a Kind<T>,
    data: DataKind,
    /// Whether two entries at one timestamp are the same (a duplicate, not a conflict).
    same: fn(&T, &T) -> bool,
    /// The refusal for an entry at a timestamp already holding a different one.
    conflict: RejectReason,
}

const MERGE_SAMPLES: Merge<'static, Sample> = Merge {
    kind: &SAMPLES,
    data: DataKind::Sample,
    same: |a, b| a.value.to_bits() == b.value.to_bits(),
    conflict: RejectReason::DuplicateTimestamp,
};

const MERGE_HISTOGRAMS: Merge<'static, HistogramSample> = Merge {
    kind: &HISTOGRAMS,
    data: DataKind::Histogram,
    same: |a, b| a.h == b.h,
    conflict: RejectReason::DuplicateTimestamp,
};

const MERGE_EXEMPLARS: Merge<'static, Exemplar> = Merge {
    kind: &EXEMPLARS,
    data: DataKind::Exemplar,
    same: |a, b| a.value.to_bits() == b.value.to_bits() && a.labels == b.labels,
    conflict: RejectReason::ConflictingExemplar,
};

/// What one backfill writes, gathered before the synced batch.
#[derive(Default)]
struct Gathered {
    batch: WriteBatch,
    touched: HashMap<i64, RoaringTreemap>,
    histogram_series: Vec<SeriesId>,
}

impl Storage {
    /// Writes `series` for `tenant` into sealed blocks, durably, whatever the age and order of
    /// their entries (see the module documentation). Returns `Err` only for failures of the
    /// store; entries that can never be written are in [`AppendReport::rejected`].
    pub fn backfill(
        &self,
        tenant: TenantId,
        series: &[SeriesWrite],
        metadata: &[MetricMetadata],
        limits: SeriesCreation<'_>,
    ) -> Result<AppendReport> {
        let _sealing = self.sealing.lock();
        let labels: Vec<&Labels> = series.iter().map(|s| &s.labels).collect();
        loop {
            let epoch = self.series_gc_epoch.load(Ordering::SeqCst);
            let next_before = *self.next_series_id.lock();
            let ids = self.resolve_series(tenant, &labels, limits)?;
            let mut report = AppendReport {
                series_created: ids.iter().flatten().map(|&id| (id + 1).saturating_sub(next_before)).max().unwrap_or(0),
                ..AppendReport::default()
            };
            let mut gathered = Gathered::default();
            let bounds = self.write_bounds();
            for (write, id) in series.iter().zip(&ids) {
                match *id {
                    Ok(id) => self.backfill_series(tenant, write, id, bounds, &mut report, &mut gathered)?,
                    Err(reason) => refuse_all(write, reason, &mut report),
                }
            }
            self.put_metadata(&mut gathered.batch, tenant, metadata);
            let index = self.cf(keys::CF_INDEX);
            for (window, set) in &gathered.touched {
                gathered.batch.merge_cf(index, keys::activity(*window, tenant), encode_postings(set));
            }
            // Before the blocks are visible: readers skip series not in the set, and windows
            // they do not list.
            if !gathered.histogram_series.is_empty() {
                self.histogram_series.write().extend(gathered.histogram_series.iter().copied());
            }
            self.windows.write().extend(gathered.touched.keys().copied());
            {
                // Collection removes series holding this lock: once the epoch is seen unchanged
                // under it, no series of ours can go before its activity is written.
                let _creating = self.next_series_id.lock();
                if self.series_gc_epoch.load(Ordering::SeqCst) != epoch {
                    continue;
                }
                if !gathered.batch.is_empty() {
                    self.write_synced(gathered.batch)?;
                }
            }
            let windows: BTreeSet<i64> = gathered.touched.keys().copied().collect();
            {
                let mut written = self.activity_written.lock();
                for (window, set) in gathered.touched {
                    *written.entry((window, tenant)).or_default() |= set;
                }
            }
            // Series in the head keep a cached write state; it may predate the new blocks.
            for id in ids.iter().flatten() {
                if let Some(mem) = self.head.get(*id) {
                    mem.lock().state = None;
                }
            }
            if self.opts.upload_sealed_windows {
                self.mark_pending_upload(windows)?;
            }
            return Ok(report);
        }
    }

    fn backfill_series(
        &self,
        tenant: TenantId,
        write: &SeriesWrite,
        id: SeriesId,
        bounds: Bounds,
        report: &mut AppendReport,
        out: &mut Gathered,
    ) -> Result<()> {
        let mem = self.head.get(id);
        let mem = mem.as_ref().map(|m| m.lock());
        let mem: Option<&MemSeries> = mem.as_deref();
        let mut refuse =
            |ts, kind, reason| report.rejected.push(Rejection { series: write.labels.clone(), ts, kind, reason });

        let samples = self.by_window(&write.samples, |s| s.ts, bounds, DataKind::Sample, &mut refuse);
        let histograms = self.by_window(&write.histograms, |h| h.ts, bounds, DataKind::Histogram, &mut refuse);
        let exemplars = self.by_window(&write.exemplars, |e| e.ts, bounds, DataKind::Exemplar, &mut refuse);
        let ever_histograms = self.histogram_series.read().contains(id) || !histograms.is_empty();

        for (window, items) in samples {
            // A series holds a float or a histogram at a timestamp, never both.
            let histogram_ts = if ever_histograms {
                let mut ts: Vec<i64> = self.block_entries(&HISTOGRAMS, window, id)?.iter().map(|h| h.ts).collect();
                ts.extend(
                    items.iter().filter(|s| mem.is_some_and(|m| m.histogram_bytes_at(s.ts).is_some())).map(|s| s.ts),
                );
                ts.extend(write.histograms.iter().map(|h| h.ts));
                ts
            } else {
                Vec::new()
            };
            let held = |s: &Sample| match mem.and_then(|m| m.sample_at(s.ts)) {
                Some(v) if v.to_bits() == s.value.to_bits() => Held::Same,
                Some(_) => Held::Different,
                None if histogram_ts.contains(&s.ts) => Held::Different,
                None => Held::Nothing,
            };
            let taken =
                self.merge_window(&MERGE_SAMPLES, id, window, items, held, usize::MAX, report, &write.labels, out)?;
            report.samples_written += taken.len() as u64;
        }
        for (window, items) in histograms {
            let float_ts: Vec<i64> = self.block_entries(&SAMPLES, window, id)?.iter().map(|s| s.ts).collect();
            let held = |h: &HistogramSample| match mem.and_then(|m| m.histogram_bytes_at(h.ts)) {
                Some(b) if b == crate::head::encode_histogram(&h.h).as_slice() => Held::Same,
                Some(_) => Held::Different,
                None if float_ts.contains(&h.ts) || mem.is_some_and(|m| m.sample_at(h.ts).is_some()) => Held::Different,
                None => Held::Nothing,
            };
            let taken =
                self.merge_window(&MERGE_HISTOGRAMS, id, window, items, held, usize::MAX, report, &write.labels, out)?;
            if !taken.is_empty() {
                out.histogram_series.push(id);
            }
            report.histograms_written += taken.len() as u64;
        }
        let mut trace_keys = Vec::new();
        for (window, items) in exemplars {
            let held = |e: &Exemplar| match mem.and_then(|m| m.exemplar_at(e.ts)) {
                Some(x) if (MERGE_EXEMPLARS.same)(&x, e) => Held::Same,
                Some(_) => Held::Different,
                None => Held::Nothing,
            };
            let in_head =
                mem.map_or(0, |m| m.exemplars_between(window, window.saturating_add(self.opts.block_duration_ms)));
            let room = self.opts.max_exemplars_per_series_per_window.saturating_sub(in_head) as usize;
            let taken =
                self.merge_window(&MERGE_EXEMPLARS, id, window, items.clone(), held, room, report, &write.labels, out)?;
            report.exemplars_written += taken.len() as u64;
            // `items` is sorted, and `taken` a subsequence of its timestamps.
            for e in items.iter().filter(|e| taken.binary_search(&e.ts).is_ok()) {
                self.gather_trace_keys(&mut trace_keys, tenant, id, e);
            }
        }
        self.put_trace_keys(&mut out.batch, trace_keys);
        Ok(())
    }

    /// `items` within the bounds, sorted by time and grouped by window; the rest refused.
    fn by_window<T: Clone>(
        &self,
        items: &[T],
        ts: fn(&T) -> i64,
        bounds: Bounds,
        kind: DataKind,
        refuse: &mut impl FnMut(i64, DataKind, RejectReason),
    ) -> BTreeMap<i64, Vec<T>> {
        let mut windows: BTreeMap<i64, Vec<T>> = BTreeMap::new();
        for item in items {
            match outside_bounds(ts(item), bounds) {
                Some(reason) => refuse(ts(item), kind, reason),
                None => windows.entry(self.window_of(ts(item))).or_default().push(item.clone()),
            }
        }
        for entries in windows.values_mut() {
            entries.sort_by_key(ts);
        }
        windows
    }

    /// A series' sealed entries of one kind in `window`.
    fn block_entries<T>(&self, kind: &Kind<T>, window: i64, id: SeriesId) -> Result<Vec<T>> {
        match self.db.get_pinned_cf(self.cf(kind.blocks_cf), keys::block(window, id))? {
            Some(b) => (kind.decode_block)(&b, id),
            None => Ok(Vec::new()),
        }
    }

    /// Merges `items` (sorted, all in `window`) into the series' block for the window: those at a
    /// timestamp the block, the head (`held`) or an earlier item holds are duplicates or
    /// conflicts, and at most `room` new entries are taken (the exemplar limit). Returns the
    /// timestamps of those taken.
    #[allow(clippy::too_many_arguments)]
    fn merge_window<T: Clone>(
        &self,
        merge: &Merge<'_, T>,
        id: SeriesId,
        window: i64,
        items: Vec<T>,
        held: impl Fn(&T) -> Held,
        room: usize,
        report: &mut AppendReport,
        labels: &Labels,
        out: &mut Gathered,
    ) -> Result<Vec<i64>> {
        let ts = merge.kind.ts;
        let existing = self.block_entries(merge.kind, window, id)?;
        let room = room.saturating_sub(existing.len());
        let mut taken: Vec<T> = Vec::new();
        let mut refuse =
            |t, reason| report.rejected.push(Rejection { series: labels.clone(), ts: t, kind: merge.data, reason });
        for item in items {
            let t = ts(&item);
            let held_here = match existing.binary_search_by_key(&t, ts) {
                Ok(i) => Some(&existing[i]),
                Err(_) => taken.last().filter(|last| ts(last) == t),
            };
            let verdict = match held_here {
                Some(x) if (merge.same)(x, &item) => Held::Same,
                Some(_) => Held::Different,
                None => held(&item),
            };
            match verdict {
                Held::Same => report.duplicates_ignored += 1,
                Held::Different => refuse(t, merge.conflict),
                Held::Nothing if taken.len() >= room => {
                    refuse(t, RejectReason::ExemplarLimit(self.opts.max_exemplars_per_series_per_window))
                }
                Held::Nothing => taken.push(item),
            }
        }
        if taken.is_empty() {
            return Ok(Vec::new());
        }
        let taken_ts = taken.iter().map(ts).collect();
        let mut merged = existing;
        merged.extend(taken);
        merged.sort_by_key(ts);
        out.batch.put_cf(self.cf(merge.kind.blocks_cf), keys::block(window, id), (merge.kind.encode_block)(&merged));
        out.touched.entry(window).or_default().insert(id);
        Ok(taken_ts)
    }
}
