//! The validated labels of the series remote write 1.0 senders send, by the bytes their label
//! fields arrive as. A sender repeats every active series' labels in every request, byte for
//! byte; checking and copying them each time was most of the write path after decoding. A hit
//! skips both: equal bytes are an equal label list, which passed the same checks before (the
//! label limits do not change while the process runs).
//!
//! Bounded by two generations (as VictoriaMetrics bounds its caches): when the current one is
//! full it becomes the previous one and a new one starts; a hit in the previous generation moves
//! the entry back. Series still being sent stay; series that stopped go with their generation.

use std::mem;

use amber_storage::labels::Labels;
use parking_lot::RwLock;
use rustc_hash::FxHashMap;

/// Entries per generation: about 600 bytes each for a node-exporter series, so at most about
/// 1.2 GiB for two full generations, at a million active series.
const GENERATION_ENTRIES: usize = 1 << 20;

pub struct LabelsCache {
    generations: RwLock<Generations>,
    capacity: usize,
}

#[derive(Default)]
struct Generations {
    current: FxHashMap<Box<[u8]>, Labels>,
    previous: FxHashMap<Box<[u8]>, Labels>,
}

impl Default for LabelsCache {
    fn default() -> Self {
        LabelsCache::with_capacity(GENERATION_ENTRIES)
    }
}

impl LabelsCache {
    fn with_capacity(capacity: usize) -> Self {
        LabelsCache { generations: RwLock::new(Generations::default()), capacity }
    }

    /// The labels validated for each of a request's series (`None` where unknown, or where the
    /// series has no raw form), under one lock for the whole request.
    pub fn get_all<'a>(&self, raws: impl Iterator<Item = Option<&'a [u8]>>) -> Vec<Option<Labels>> {
        let mut promoted = Vec::new();
        let found = {
            let g = self.generations.read();
            raws.map(|raw| {
                let raw = raw?;
                if let Some(labels) = g.current.get(raw) {
                    return Some(labels.clone());
                }
                let labels = g.previous.get(raw)?.clone();
                promoted.push((raw, labels.clone()));
                Some(labels)
            })
            .collect()
        };
        self.insert_all(promoted);
        found
    }

    /// Remembers each `(raw, labels)`: `labels` is the validated form of `raw`.
    pub fn insert_all<'a>(&self, entries: impl IntoIterator<Item = (&'a [u8], Labels)>) {
        let mut entries = entries.into_iter().peekable();
        if entries.peek().is_none() {
            return;
        }
        let mut g = self.generations.write();
        for (raw, labels) in entries {
            if g.current.len() >= self.capacity {
                g.previous = mem::take(&mut g.current);
            }
            g.current.insert(raw.into(), labels);
        }
    }
}

#[cfg(test)]
mod tests {
    use amber_storage::labels::Label;

    use super::*;

    fn labels(value: &str) -> Labels {
        Labels::from_sorted(vec![Label::new("job", value)])
    }

    /// Entries survive while used; unused ones go two generations on.
    #[test]
    fn keeps_what_is_used_and_drops_what_is_not() {
        let cache = LabelsCache::with_capacity(2);
        let get = |raw: &[u8]| cache.get_all([Some(raw)].into_iter()).pop().unwrap();
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
    }
}
