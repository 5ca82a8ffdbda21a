//! The validated labels of the series remote write senders send, by the bytes they arrive as:
//! 1.0's label fields as sent, and 2.0's label strings as its references resolve them
//! (`v2::Symbols::cache_key`, a key space of its own). A sender repeats every active series'
//! labels in every request; checking and copying them each time was most of the write path
//! after decoding. A hit
//! skips both: equal bytes are an equal label list, which passed the same checks before (the
//! label limits do not change while the process runs).
//!
//! Entries are keyed by the 128-bit xxh3 digest of those bytes, not the bytes: at a million
//! series the keys, held in both generations, were a fifth of the cache. Two different label
//! sets share a digest with a probability of about n²/2¹²⁹ for n series (10⁻²⁷ at a million),
//! far below the rate of undetected memory errors that would corrupt a byte-keyed cache too.
//!
//! Bounded in bytes by two generations (as VictoriaMetrics bounds its caches): when the current
//! one holds half the budget it becomes the previous one and a new one starts; a hit in the
//! previous generation moves the entry back. Series still being sent stay; series that stopped go
//! with their generation. With more active series than the budget holds, series are validated on
//! every write again: slower, never wrong.

use std::mem;

use amber_storage::labels::{Label, Labels};
use parking_lot::{RwLock, RwLockReadGuard};
use rustc_hash::FxHashMap;

pub struct LabelsCache {
    generations: RwLock<Generations>,
    /// Bytes one generation may hold: half the budget.
    generation_bytes: usize,
}

#[derive(Default)]
struct Generations {
    current: FxHashMap<u128, Labels>,
    current_bytes: usize,
    previous: FxHashMap<u128, Labels>,
}

/// An entry's key: the digest of the label bytes as sent.
fn key(raw: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(raw)
}

/// What an entry costs: its labels' strings and slots, and the map's own per-entry overhead
/// (the key, the value's pointer, the hash slot, the labels' reference counts and allocator
/// headers, about 48 bytes).
fn entry_bytes(labels: &Labels) -> usize {
    let strings: usize = labels.iter().map(|l| l.name.len() + l.value.len()).sum();
    48 + strings + labels.len() * mem::size_of::<Label>()
}

impl LabelsCache {
    /// A cache of at most `budget_bytes` (`labels_cache_bytes`) across both generations.
    pub fn new(budget_bytes: usize) -> Self {
        LabelsCache { generations: RwLock::new(Generations::default()), generation_bytes: budget_bytes / 2 }
    }

    /// Lookups under one read lock, for the series of one request as it is decoded.
    pub fn lookup(&self) -> Lookup<'_> {
        Lookup { cache: self, generations: self.generations.read(), promoted: Vec::new() }
    }

    /// The labels validated for each of a request's series (`None` where unknown, or where the
    /// series has no raw form), under one lock for the whole request.
    pub fn get_all<'a>(&self, raws: impl Iterator<Item = Option<&'a [u8]>>) -> Vec<Option<Labels>> {
        let mut lookup = self.lookup();
        let found = raws.map(|raw| lookup.get(raw?)).collect();
        lookup.finish();
        found
    }

    /// Remembers each `(raw, labels)`: `labels` is the validated form of `raw`.
    pub fn insert_all<'a>(&self, entries: impl IntoIterator<Item = (&'a [u8], Labels)>) {
        self.insert_keyed(entries.into_iter().map(|(raw, labels)| (key(raw), labels)));
    }

    fn insert_keyed(&self, entries: impl IntoIterator<Item = (u128, Labels)>) {
        let mut entries = entries.into_iter().peekable();
        if entries.peek().is_none() {
            return;
        }
        let mut g = self.generations.write();
        for (key, labels) in entries {
            let bytes = entry_bytes(&labels);
            if bytes > self.generation_bytes {
                continue;
            }
            if g.current_bytes + bytes > self.generation_bytes {
                g.previous = mem::take(&mut g.current);
                g.current_bytes = 0;
            }
            if g.current.insert(key, labels).is_none() {
                g.current_bytes += bytes;
            }
        }
    }
}

/// The lookups of one request under one read lock ([`LabelsCache::lookup`]).
pub struct Lookup<'c> {
    cache: &'c LabelsCache,
    generations: RwLockReadGuard<'c, Generations>,
    /// Entries found in the previous generation, moved back by [`Lookup::finish`].
    promoted: Vec<(u128, Labels)>,
}

impl Lookup<'_> {
    /// The labels validated for `raw`, the bytes a series' labels arrived as.
    pub fn get(&mut self, raw: &[u8]) -> Option<Labels> {
        let key = key(raw);
        if let Some(labels) = self.generations.current.get(&key) {
            return Some(labels.clone());
        }
        let labels = self.generations.previous.get(&key)?.clone();
        self.promoted.push((key, labels.clone()));
        Some(labels)
    }

    /// Releases the read lock and moves what was found in the previous generation back to the
    /// current one (dropped without it, those entries stay where they are).
    pub fn finish(self) {
        let Lookup { cache, generations, promoted } = self;
        drop(generations);
        cache.insert_keyed(promoted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(value: &str) -> Labels {
        Labels::from_sorted(vec![Label::new("job", value)])
    }

    /// Entries survive while used; unused ones go two generations on.
    #[test]
    fn keeps_what_is_used_and_drops_what_is_not() {
        // Room for two entries a generation.
        let cache = LabelsCache::new(2 * 2 * entry_bytes(&labels("a")));
        let get = |raw: &[u8]| {
            let mut lookup = cache.lookup();
            let found = lookup.get(raw);
            lookup.finish();
            found
        };
        cache.insert_all([(&b"a"[..], labels("a")), (b"b", labels("b"))]);
        // Full: "c" starts a generation, and "a" and "b" are the previous one.
        cache.insert_all([(&b"c"[..], labels("c"))]);
        assert_eq!(get(b"a"), Some(labels("a")), "moved back to the current generation");
        let g = cache.generations.read();
        assert_eq!((g.current.len(), g.previous.len()), (2, 2));
        drop(g);
        // "a" and "c" fill the current generation; "d" retires them and drops "b".
        cache.insert_all([(&b"d"[..], labels("d"))]);
        assert_eq!(get(b"b"), None);
        assert_eq!(get(b"a"), Some(labels("a")));
        assert_eq!(get(b"zz"), None);
        // A series without a raw form is never looked up.
        assert_eq!(cache.get_all([None, Some(&b"a"[..])].into_iter()), vec![None, Some(labels("a"))]);
        // An entry larger than a generation is not kept.
        let huge = Labels::from_sorted(vec![Label::new("job", "x".repeat(1000))]);
        cache.insert_all([(&b"h"[..], huge)]);
        assert_eq!(get(b"h"), None);
    }
}
