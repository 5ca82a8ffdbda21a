//! The series index: label set ↔ series id, postings per label pair, and selection by matchers.
//!
//! Postings are roaring sets of series ids, one per `name=value` pair per tenant, written with a
//! union merge so concurrent writers never read-modify-write. The pair with the empty name holds
//! every series of the tenant. Time ranges are applied through the per-window activity sets
//! (`prefix::ACTIVITY`), so "series with data between start and end" costs one set per window.

use std::collections::HashMap;

use regex::Regex;
use roaring::RoaringTreemap;
use rocksdb::{Direction, IteratorMode, WriteBatch};

use crate::SeriesId;
use crate::append::{RejectReason, SeriesCreation};
use crate::chunkenc::varint::Reader;
use crate::db::Storage;
use crate::error::{Error, Result};
use crate::keys::{self, prefix};
use crate::labels::Labels;
use crate::tenant::TenantId;

/// How a [`Matcher`] compares a label's value.
#[derive(Debug, Clone)]
pub enum MatchOp {
    Equal,
    NotEqual,
    /// A fully anchored regular expression, as in PromQL.
    Regex(Regex),
    NotRegex(Regex),
}

/// A PromQL label matcher. A series without the label matches as if its value were empty.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
}

impl Matcher {
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Matcher { name: name.into(), op: MatchOp::Equal, value: value.into() }
    }

    /// Builds a regex matcher, anchoring the expression at both ends as PromQL does.
    pub fn regex(name: impl Into<String>, pattern: &str, negate: bool) -> Result<Self, regex::Error> {
        let re = Regex::new(&format!("^(?s:{pattern})$"))?;
        let op = if negate { MatchOp::NotRegex(re) } else { MatchOp::Regex(re) };
        Ok(Matcher { name: name.into(), op, value: pattern.to_string() })
    }

    pub fn matches(&self, v: &str) -> bool {
        match &self.op {
            MatchOp::Equal => v == self.value,
            MatchOp::NotEqual => v != self.value,
            MatchOp::Regex(re) => re.is_match(v),
            MatchOp::NotRegex(re) => !re.is_match(v),
        }
    }
}

pub(crate) fn decode_postings(bytes: &[u8]) -> Result<RoaringTreemap> {
    RoaringTreemap::deserialize_from(bytes).map_err(|_| Error::CorruptIndex {
        what: "postings",
        source: crate::chunkenc::DecodeError::Invalid("not a roaring set"),
    })
}

pub(crate) fn encode_postings(set: &RoaringTreemap) -> Vec<u8> {
    let mut out = Vec::with_capacity(set.serialized_size());
    set.serialize_into(&mut out).expect("writing to a Vec cannot fail");
    out
}

impl Storage {
    /// Returns the id of every label set, creating the series that don't exist yet within
    /// `limits`; a refused new series gets the reason instead.
    ///
    /// New series are written (index entry, reverse entry, postings, next id) in one synced batch
    /// before any of their samples, so a sample on disk never names a series that isn't.
    pub fn resolve_series(
        &self,
        tenant: TenantId,
        series: &[&Labels],
        limits: SeriesCreation<'_>,
    ) -> Result<Vec<std::result::Result<SeriesId, RejectReason>>> {
        // Every series of a request is usually known: look them up with one key buffer, and
        // build each key to keep only when one is not.
        let mut ids: Vec<Option<SeriesId>> = Vec::with_capacity(series.len());
        {
            let cache = self.series_cache.read();
            let mut key = Vec::new();
            for labels in series {
                keys::series_by_labels_into(&mut key, tenant, labels);
                ids.push(cache.get(&keys::series_cache_key(&key)).copied());
            }
        }
        if ids.iter().all(Option::is_some) {
            return Ok(ids.into_iter().map(|id| Ok(id.expect("all found"))).collect());
        }
        let keys: Vec<Vec<u8>> = series.iter().map(|l| keys::series_by_labels(tenant, l)).collect();
        // Held until the new series are durable: creation is serialised, so the series count
        // and the rate budget below are exact.
        let mut next = self.next_series_id.lock();
        let index = self.cf(keys::CF_INDEX);
        let missing: Vec<usize> = (0..keys.len()).filter(|&i| ids[i].is_none()).collect();
        let found = self.db.multi_get_cf(missing.iter().map(|&i| (index, keys[i].as_slice())));
        // The first request position of each label set that does not exist yet, in request
        // order, and each such label set's rank in it: the first `granted` are created.
        let mut new: Vec<usize> = Vec::new();
        let mut rank: HashMap<&[u8], usize> = HashMap::new();
        for (&i, got) in missing.iter().zip(found) {
            match got? {
                Some(v) => ids[i] = Some(keys::read_u64(&v)),
                None => {
                    rank.entry(&keys[i]).or_insert_with(|| {
                        new.push(i);
                        new.len() - 1
                    });
                }
            }
        }
        let room = match limits.max_series {
            Some(max) => max.saturating_sub(self.series_count(tenant)?),
            None => u64::MAX,
        };
        let wanted = (new.len() as u64).min(room);
        let granted = match limits.new_series_budget {
            Some(grant) if wanted > 0 => grant(wanted).min(wanted),
            _ => wanted,
        };
        let mut batch = WriteBatch::default();
        let mut all = RoaringTreemap::new();
        for &i in &new[..granted as usize] {
            let id = *next;
            *next += 1;
            ids[i] = Some(id);
            batch.put_cf(index, &keys[i], id.to_be_bytes());
            let mut reverse = tenant.0.to_be_bytes().to_vec();
            series[i].encode_into(&mut reverse);
            batch.put_cf(index, keys::labels_by_series(id), reverse);
            let mut one = RoaringTreemap::new();
            one.insert(id);
            let one = encode_postings(&one);
            for l in series[i] {
                batch.merge_cf(index, keys::postings(tenant, &l.name, &l.value), &one);
            }
            all.insert(id);
        }
        if granted > 0 {
            batch.merge_cf(index, keys::postings(tenant, "", ""), encode_postings(&all));
            batch.put_cf(index, [prefix::NEXT_SERIES_ID], next.to_be_bytes());
            self.write_synced(batch)?;
            *self.series_counts.lock().entry(tenant).or_insert(0) += granted;
        }
        drop(next);
        let mut out = Vec::with_capacity(keys.len());
        let mut cache = self.series_cache.write();
        for (i, k) in keys.iter().enumerate() {
            let resolved = match ids[i] {
                Some(id) => Ok(id),
                None => {
                    let r = rank[k.as_slice()];
                    match ids[new[r]] {
                        Some(id) => Ok(id),
                        None if (r as u64) < wanted => Err(RejectReason::NewSeriesRate),
                        None => Err(RejectReason::SeriesLimit(limits.max_series.unwrap_or(0))),
                    }
                }
            };
            if let Ok(id) = resolved {
                cache.insert(keys::series_cache_key(k), id);
            }
            out.push(resolved);
        }
        Ok(out)
    }

    /// How many series `tenant` has (counted once from its all-series postings, then kept).
    pub fn series_count(&self, tenant: TenantId) -> Result<u64> {
        if let Some(&n) = self.series_counts.lock().get(&tenant) {
            return Ok(n);
        }
        let n = self.postings(&keys::postings(tenant, "", ""))?.len();
        Ok(*self.series_counts.lock().entry(tenant).or_insert(n))
    }

    /// The tenant and labels of each series id (a missing id is an index corruption).
    pub fn series_labels(&self, ids: &[SeriesId]) -> Result<Vec<(TenantId, Labels)>> {
        self.series_labels_if_indexed(ids)?
            .into_iter()
            .map(|l| {
                l.ok_or(Error::CorruptIndex {
                    what: "labels of a series",
                    source: crate::chunkenc::DecodeError::Invalid("series id without labels"),
                })
            })
            .collect()
    }

    /// The tenant and labels of each series id, `None` for an id not in the index.
    pub(crate) fn series_labels_if_indexed(&self, ids: &[SeriesId]) -> Result<Vec<Option<(TenantId, Labels)>>> {
        self.map_labels_entries(ids, |r, tenant| Ok((tenant, Labels::decode(r)?)))
    }

    /// The tenant of each of `ids`, `None` for an id no longer in the index: the labels
    /// entries' first four bytes, without decoding the labels.
    pub(crate) fn series_tenants_if_indexed(&self, ids: &[SeriesId]) -> Result<Vec<Option<TenantId>>> {
        self.map_labels_entries(ids, |_, tenant| Ok(tenant))
    }

    /// `f` of the labels entry (tenant read, reader at the labels) of each of `ids`, in order.
    fn map_labels_entries<T>(
        &self,
        ids: &[SeriesId],
        mut f: impl FnMut(&mut Reader<'_>, TenantId) -> std::result::Result<T, crate::chunkenc::DecodeError>,
    ) -> Result<Vec<Option<T>>> {
        let mut entry = |v: &[u8]| {
            let corrupt = |source| Error::CorruptIndex { what: "labels of a series", source };
            let mut r = Reader::new(v);
            let tenant = TenantId(u32::from_be_bytes(r.bytes(4).map_err(corrupt)?.try_into().expect("4 bytes")));
            f(&mut r, tenant).map_err(corrupt)
        };
        let index = self.cf(keys::CF_INDEX);
        // Ascending ids that are most of the range they span (replay asks for every series in
        // the head, and ids are handed out in order): one forward scan of the range reads each
        // entry once, at a fraction of a point lookup's cost each (at 100k series, 650 ms of
        // lookups in a restart).
        let ascending = ids.windows(2).all(|w| w[0] < w[1]);
        if let (true, Some(&first), Some(&last)) = (ascending, ids.first(), ids.last())
            && (last - first) / 2 < ids.len() as u64
        {
            let mut out: Vec<Option<T>> = ids.iter().map(|_| None).collect();
            let mut next = 0;
            let from = keys::labels_by_series(first);
            for item in self.db.iterator_cf(index, IteratorMode::From(&from, Direction::Forward)) {
                let (k, v) = item?;
                if k.len() != 9 || k[0] != prefix::LABELS_BY_SERIES {
                    break;
                }
                let id = keys::read_u64(&k[1..]);
                while next < ids.len() && ids[next] < id {
                    next += 1;
                }
                if next == ids.len() {
                    break;
                }
                if ids[next] == id {
                    out[next] = Some(entry(&v)?);
                    next += 1;
                }
            }
            return Ok(out);
        }
        let keys: Vec<[u8; 9]> = ids.iter().map(|&id| keys::labels_by_series(id)).collect();
        let mut out = Vec::with_capacity(ids.len());
        for got in self.db.batched_multi_get_cf(index, keys.iter(), false) {
            out.push(match got? {
                Some(v) => Some(entry(&v)?),
                None => None,
            });
        }
        Ok(out)
    }

    pub(crate) fn postings(&self, key: &[u8]) -> Result<RoaringTreemap> {
        match self.db.get_pinned_cf(self.cf(keys::CF_INDEX), key)? {
            Some(v) => decode_postings(&v),
            None => Ok(RoaringTreemap::new()),
        }
    }

    /// Calls `f(value, postings)` for every value of label `name`, in value order.
    fn for_each_value(
        &self,
        tenant: TenantId,
        name: &str,
        mut f: impl FnMut(&[u8], RoaringTreemap) -> bool,
    ) -> Result<()> {
        let prefix = keys::postings_name_prefix(tenant, name);
        let index = self.cf(keys::CF_INDEX);
        for item in self.db.iterator_cf(index, IteratorMode::From(&prefix, Direction::Forward)) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            if !f(&k[prefix.len()..], decode_postings(&v)?) {
                break;
            }
        }
        Ok(())
    }

    /// Series ids of `tenant` that match every matcher of one selector.
    fn select_one(&self, tenant: TenantId, matchers: &[Matcher]) -> Result<RoaringTreemap> {
        let mut result: Option<RoaringTreemap> = None;
        // Equality matchers first: they are one lookup each and usually the most selective.
        let mut ordered: Vec<&Matcher> = matchers.iter().collect();
        let is_lookup = |m: &Matcher| matches!(m.op, MatchOp::Equal) && !m.value.is_empty();
        ordered.sort_by_key(|m| !is_lookup(m));
        for m in ordered {
            if result.as_ref().is_some_and(RoaringTreemap::is_empty) {
                break;
            }
            let set = if is_lookup(m) {
                self.postings(&keys::postings(tenant, &m.name, &m.value))?
            } else {
                let mut matched = RoaringTreemap::new();
                let mut with_label = RoaringTreemap::new();
                let mut bad_utf8 = false;
                self.for_each_value(tenant, &m.name, |value, set| {
                    match std::str::from_utf8(value) {
                        Ok(v) if m.matches(v) => matched |= &set,
                        Ok(_) => {}
                        Err(_) => bad_utf8 = true,
                    }
                    with_label |= set;
                    true
                })?;
                if bad_utf8 {
                    return Err(Error::CorruptIndex {
                        what: "postings key",
                        source: crate::chunkenc::DecodeError::Invalid("label value is not UTF-8"),
                    });
                }
                if m.matches("") {
                    matched |= self.postings(&keys::postings(tenant, "", ""))? - with_label;
                }
                matched
            };
            result = Some(match result {
                Some(r) => r & set,
                None => set,
            });
        }
        Ok(result.unwrap_or_default())
    }

    /// Series ids with samples or exemplars in a window overlapping `[mint, maxt]`.
    pub fn active_series(&self, tenant: TenantId, mint: i64, maxt: i64) -> Result<RoaringTreemap> {
        let index = self.cf(keys::CF_INDEX);
        let windows = self.windows_overlapping(mint, maxt);
        let keys: Vec<[u8; 13]> = windows.iter().map(|&w| keys::activity(w, tenant)).collect();
        let mut set = RoaringTreemap::new();
        for got in self.db.multi_get_cf(keys.iter().map(|k| (index, k.as_slice()))) {
            if let Some(v) = got? {
                set |= decode_postings(&v)?;
            }
        }
        Ok(set)
    }

    /// Series ids matching any of the selectors (each a list of matchers, all of which must match)
    /// and holding data in a window overlapping `[mint, maxt]`. No selectors means every series.
    pub fn select(&self, tenant: TenantId, selectors: &[Vec<Matcher>], mint: i64, maxt: i64) -> Result<RoaringTreemap> {
        let mut matched = RoaringTreemap::new();
        if selectors.is_empty() {
            matched = self.postings(&keys::postings(tenant, "", ""))?;
        }
        for s in selectors {
            matched |= self.select_one(tenant, s)?;
        }
        Ok(matched & self.active_series(tenant, mint, maxt)?)
    }

    /// Like [`Storage::select`], returning label sets sorted as Prometheus sorts series.
    pub fn select_labels(
        &self,
        tenant: TenantId,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(SeriesId, Labels)>> {
        self.sorted_labels(self.select(tenant, selectors, mint, maxt)?)
    }

    /// The selected series with a float or histogram sample in `[mint, maxt]` itself, not only in
    /// a window overlapping it, sorted as Prometheus sorts series: `/api/v1/series`.
    pub fn series_with_data(
        &self,
        tenant: TenantId,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(SeriesId, Labels)>> {
        self.sorted_labels(self.select_with_data(tenant, selectors, mint, maxt)?)
    }

    fn sorted_labels(&self, ids: RoaringTreemap) -> Result<Vec<(SeriesId, Labels)>> {
        let ids: Vec<SeriesId> = ids.iter().collect();
        let labels = self.series_labels(&ids)?;
        let mut out: Vec<(SeriesId, Labels)> = ids.into_iter().zip(labels.into_iter().map(|(_, l)| l)).collect();
        out.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(out)
    }

    /// [`Storage::select`] narrowed to series with a float or histogram sample in `[mint, maxt]`.
    /// A window the range covers whole needs only its activity set; series seen only in windows it
    /// covers in part have their data looked at, a bounded batch at a time.
    fn select_with_data(
        &self,
        tenant: TenantId,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<RoaringTreemap> {
        let selected = self.select(tenant, selectors, mint, maxt)?;
        let block = self.opts.block_duration_ms;
        let windows = self.windows_overlapping(mint, maxt);
        let whole: Vec<[u8; 13]> = windows
            .iter()
            .filter(|&&w| w >= mint && w.saturating_add(block - 1) <= maxt)
            .map(|&w| keys::activity(w, tenant))
            .collect();
        if whole.len() == windows.len() || selected.is_empty() {
            return Ok(selected);
        }
        let index = self.cf(keys::CF_INDEX);
        let mut sure = RoaringTreemap::new();
        for got in self.db.multi_get_cf(whole.iter().map(|k| (index, k.as_slice()))) {
            if let Some(v) = got? {
                sure |= decode_postings(&v)?;
            }
        }
        sure &= &selected;
        let unsure: Vec<SeriesId> = (selected - &sure).iter().collect();
        for batch in unsure.chunks(1024) {
            let mut without_floats = Vec::new();
            for (&id, samples) in batch.iter().zip(self.samples_of(batch, mint, maxt)?) {
                if samples.is_empty() {
                    without_floats.push(id);
                } else {
                    sure.insert(id);
                }
            }
            for (&id, histograms) in without_floats.iter().zip(self.histograms_of(&without_floats, mint, maxt)?) {
                if !histograms.is_empty() {
                    sure.insert(id);
                }
            }
        }
        Ok(sure)
    }

    /// Label names used by the selected series with data in `[mint, maxt]`, sorted.
    pub fn label_names(
        &self,
        tenant: TenantId,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>> {
        let candidates = self.select_with_data(tenant, selectors, mint, maxt)?;
        let mut names = Vec::new();
        if candidates.is_empty() {
            return Ok(names);
        }
        let tenant_prefix = keys::postings_prefix(tenant);
        let index = self.cf(keys::CF_INDEX);
        let mut iter = self.db.raw_iterator_cf(index);
        iter.seek(&tenant_prefix);
        while let (Some(k), Some(v)) = (iter.key(), iter.value()) {
            if !k.starts_with(&tenant_prefix) {
                break;
            }
            let Some((name, _)) = keys::split_postings(k, tenant_prefix.len()) else { break };
            let name = name.to_vec();
            if !name.is_empty() && !(decode_postings(v)? & &candidates).is_empty() {
                names.push(String::from_utf8_lossy(&name).into_owned());
                // Skip the rest of this name's values: `name 0x01` sorts after all of them.
                let mut next = tenant_prefix.clone();
                next.extend_from_slice(&name);
                next.push(1);
                iter.seek(&next);
            } else {
                iter.next();
            }
        }
        iter.status()?;
        Ok(names)
    }

    /// Values of label `name` among the selected series with data in `[mint, maxt]`, sorted.
    pub fn label_values(
        &self,
        tenant: TenantId,
        name: &str,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>> {
        let candidates = self.select_with_data(tenant, selectors, mint, maxt)?;
        let mut values = Vec::new();
        if candidates.is_empty() || name.is_empty() {
            return Ok(values);
        }
        self.for_each_value(tenant, name, |value, set| {
            if !(set & &candidates).is_empty() {
                values.push(String::from_utf8_lossy(value).into_owned());
            }
            true
        })?;
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use crate::bucket_source::tests::{sample, series, write};
    use crate::db::{Options, Storage};
    use crate::tenant::TenantId;

    /// Dense ascending ids are read by one scan, others by point lookups: the same answers,
    /// `None` for ids the index does not hold, whichever way.
    #[test]
    fn labels_entries_read_by_scan_and_by_lookup_agree() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path(), Options::default()).unwrap();
        let team = storage.register_tenant("team").unwrap();
        let now = crate::now_ms();
        for i in 0..10u64 {
            let tenant = if i.is_multiple_of(3) { team } else { TenantId::DEFAULT };
            write(
                &storage,
                tenant,
                vec![series(&[("__name__", "m"), ("i", &i.to_string())], vec![sample(now, 1.0)], vec![], vec![])],
            );
        }
        let tenant_of = |id: u64| Some(if id.is_multiple_of(3) { team } else { TenantId::DEFAULT });
        // Dense: a scan of ids 0 to 11, the last two not in the index.
        let dense: Vec<u64> = (0..12).collect();
        let want: Vec<_> = dense.iter().map(|&id| if id < 10 { tenant_of(id) } else { None }).collect();
        assert_eq!(storage.series_tenants_if_indexed(&dense).unwrap(), want);
        // Sparse, and unordered: point lookups.
        for ids in [vec![1, 9, 40], vec![7, 2, 5]] {
            let want: Vec<_> = ids.iter().map(|&id| if id < 10 { tenant_of(id) } else { None }).collect();
            assert_eq!(storage.series_tenants_if_indexed(&ids).unwrap(), want);
        }
        let labels = storage.series_labels_if_indexed(&[3, 4, 5, 6]).unwrap();
        let values: Vec<_> = labels.iter().map(|l| l.as_ref().unwrap().1.get("i").unwrap().to_string()).collect();
        assert_eq!(values, ["3", "4", "5", "6"]);
    }
}
