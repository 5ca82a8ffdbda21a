//! Label sets as the engine sees them: sorted by name, unique names.

use std::fmt;
use std::sync::Arc;

/// The label that holds a series' metric name.
pub const METRIC_NAME: &str = "__name__";

/// Shared, so that the per-step samples of a range query copy a pointer, not every label.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Arc<Vec<(String, String)>>);

impl Labels {
    /// The address of the shared label list: equal addresses mean equal label sets.
    fn addr(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }

    /// Sorts by name; with repeated names the last one wins; empty values are dropped.
    pub fn new(mut pairs: Vec<(String, String)>) -> Self {
        pairs.reverse();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        pairs.dedup_by(|a, b| a.0 == b.0);
        pairs.retain(|(_, v)| !v.is_empty());
        Labels(Arc::new(pairs))
    }

    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Labels::new(pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.binary_search_by(|(n, _)| n.as_str().cmp(name)).ok().map(|i| self.0[i].1.as_str())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sets (or, with an empty value, removes) one label.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.0.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) if value.is_empty() => {
                Arc::make_mut(&mut self.0).remove(i);
            }
            Ok(i) if self.0[i].1 == value => {}
            Ok(i) => Arc::make_mut(&mut self.0)[i].1 = value.to_string(),
            Err(_) if value.is_empty() => {}
            Err(i) => Arc::make_mut(&mut self.0).insert(i, (name.to_string(), value.to_string())),
        }
    }

    /// The labels without the metric name and the type and unit labels that go with it
    /// (`__type__`, `__unit__`, as Prometheus's type-and-unit labels drop them together).
    pub fn without_metric_name(&self) -> Labels {
        let reserved = |n: &str| matches!(n, METRIC_NAME | "__type__" | "__unit__");
        if !self.0.iter().any(|(n, _)| reserved(n)) {
            return self.clone();
        }
        Labels(Arc::new(self.0.iter().filter(|(n, _)| !reserved(n)).cloned().collect()))
    }

    /// Only the labels named in `names` (`include`), or all but those (`!include`).
    pub fn project(&self, names: &[String], include: bool) -> Labels {
        Labels(Arc::new(self.0.iter().filter(|(n, _)| names.iter().any(|x| x == n) == include).cloned().collect()))
    }
}

/// Prints labels the way Prometheus does: `{__name__="up", job="node"}`.
impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (n, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{n}={v:?}")?;
        }
        f.write_str("}")
    }
}

/// Prometheus's `labels.Hash`: XXH64 over `name 0xff value 0xff` for each label.
pub fn hash(labels: &Labels) -> u64 {
    let mut buf = Vec::with_capacity(labels.0.iter().map(|(n, v)| n.len() + v.len() + 2).sum());
    for (n, v) in labels.0.iter() {
        buf.extend_from_slice(n.as_bytes());
        buf.push(0xff);
        buf.extend_from_slice(v.as_bytes());
        buf.push(0xff);
    }
    xxhash_rust::xxh64::xxh64(&buf, 0)
}

/// A map keyed by label set, in insertion order, that looks keys up by the address of their
/// shared list first. A range query hands the engine the same series' labels (the same `Arc`) at
/// every step; hashing an address instead of every name and value was most of the per-step
/// cost of aggregations and of assembling the result.
///
/// Only the address of the key kept in the map is remembered: it cannot be reused for another
/// label set while the map holds it. Equal label sets behind other addresses are found by value.
#[derive(Debug)]
pub(crate) struct LabelsMap<V> {
    by_addr: rustc_hash::FxHashMap<usize, usize>,
    by_value: rustc_hash::FxHashMap<Labels, usize>,
    entries: Vec<(Labels, V)>,
}

impl<V> Default for LabelsMap<V> {
    fn default() -> Self {
        LabelsMap { by_addr: Default::default(), by_value: Default::default(), entries: Vec::new() }
    }
}

impl<V> LabelsMap<V> {
    /// The position of `labels` in insertion order, inserting `make()` if it is new.
    pub fn index_or_insert_with(&mut self, labels: &Labels, make: impl FnOnce() -> V) -> usize {
        if let Some(&i) = self.by_addr.get(&labels.addr()) {
            return i;
        }
        if let Some(&i) = self.by_value.get(labels) {
            return i;
        }
        let i = self.entries.len();
        self.entries.push((labels.clone(), make()));
        self.by_addr.insert(labels.addr(), i);
        self.by_value.insert(labels.clone(), i);
        i
    }

    pub fn get_or_insert_with(&mut self, labels: &Labels, make: impl FnOnce() -> V) -> &mut V {
        let i = self.index_or_insert_with(labels, make);
        &mut self.entries[i].1
    }

    pub fn entry_at(&self, i: usize) -> &(Labels, V) {
        &self.entries[i]
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn value_at_mut(&mut self, i: usize) -> &mut V {
        &mut self.entries[i].1
    }

    pub fn into_entries(self) -> Vec<(Labels, V)> {
        self.entries
    }
}

#[cfg(test)]
mod labels_map_tests {
    use super::*;

    #[test]
    fn finds_keys_by_address_and_by_value_in_insertion_order() {
        let mut m: LabelsMap<u32> = LabelsMap::default();
        let a = Labels::from_pairs(&[("job", "a")]);
        let b = Labels::from_pairs(&[("job", "b")]);
        *m.get_or_insert_with(&a, || 0) += 1;
        *m.get_or_insert_with(&b, || 10) += 1;
        *m.get_or_insert_with(&a.clone(), || 0) += 1;
        // An equal label set in another allocation is the same key.
        *m.get_or_insert_with(&Labels::from_pairs(&[("job", "a")]), || 0) += 1;
        assert_eq!(m.into_entries(), vec![(a, 3), (b, 11)]);
    }
}
