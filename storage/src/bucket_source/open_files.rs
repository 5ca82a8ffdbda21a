//! Opened block files kept in memory by object key: their table of contents and tail, and what
//! queries parse from them once (series list, column indexes, trace filter). Block files are
//! immutable and named by their content, so an entry never goes stale; the memory it takes is
//! bounded by a byte budget, least-recently-used entries leaving first.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::OnceCell;

use crate::Labels;
use crate::blockfile::{BlockFile, ColumnIndex, TraceFilter};

/// One opened block file and the parts of it parsed so far.
pub(super) struct OpenFile {
    pub file: BlockFile,
    pub series: OnceCell<Arc<Vec<Labels>>>,
    pub samples: OnceCell<Arc<ColumnIndex>>,
    pub histograms: OnceCell<Arc<ColumnIndex>>,
    pub exemplars: OnceCell<Arc<ColumnIndex>>,
    pub trace_filter: OnceCell<Option<TraceFilter>>,
}

impl OpenFile {
    pub fn new(file: BlockFile) -> OpenFile {
        OpenFile {
            file,
            series: OnceCell::new(),
            samples: OnceCell::new(),
            histograms: OnceCell::new(),
            exemplars: OnceCell::new(),
            trace_filter: OnceCell::new(),
        }
    }

    /// Bytes this entry holds, roughly: what the budget counts.
    fn memory_bytes(&self) -> usize {
        let string = std::mem::size_of::<String>();
        let series = self.series.get().map_or(0, |s| {
            s.iter().map(|l| 24 + l.iter().map(|l| 2 * string + l.name.len() + l.value.len()).sum::<usize>()).sum()
        });
        let indexes: usize = [&self.samples, &self.histograms, &self.exemplars]
            .iter()
            .filter_map(|c| c.get())
            .map(|c| c.memory_bytes())
            .sum();
        let filter = self.trace_filter.get().and_then(Option::as_ref).map_or(0, TraceFilter::memory_bytes);
        self.file.memory_bytes() + series + indexes + filter
    }
}

struct Entry {
    file: Arc<OpenFile>,
    bytes: usize,
    /// Value of [`State::clock`] at the last use.
    used: u64,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    bytes: usize,
    clock: u64,
}

pub(super) struct OpenFiles {
    budget_bytes: usize,
    state: Mutex<State>,
}

impl OpenFiles {
    pub fn new(budget_bytes: usize) -> OpenFiles {
        OpenFiles { budget_bytes, state: Mutex::new(State::default()) }
    }

    pub fn get(&self, key: &str) -> Option<Arc<OpenFile>> {
        let mut state = self.state.lock();
        state.clock += 1;
        let clock = state.clock;
        let entry = state.entries.get_mut(key)?;
        entry.used = clock;
        Some(entry.file.clone())
    }

    /// Keeps `file` under `key` (replacing an entry another reader opened meanwhile).
    pub fn insert(&self, key: &str, file: Arc<OpenFile>) {
        let mut state = self.state.lock();
        state.clock += 1;
        let (bytes, used) = (file.memory_bytes(), state.clock);
        if let Some(old) = state.entries.insert(key.to_string(), Entry { file, bytes, used }) {
            state.bytes -= old.bytes;
        }
        state.bytes += bytes;
        self.evict(&mut state);
    }

    /// Counts what `file` holds now, after a part of it was parsed.
    pub fn grew(&self, key: &str, file: &Arc<OpenFile>) {
        let mut state = self.state.lock();
        let Some(entry) = state.entries.get_mut(key) else { return };
        if !Arc::ptr_eq(&entry.file, file) {
            return;
        }
        let (old, new) = (entry.bytes, file.memory_bytes());
        entry.bytes = new;
        state.bytes = state.bytes - old + new;
        self.evict(&mut state);
    }

    /// Bytes held, and entries.
    pub fn size(&self) -> (usize, usize) {
        let state = self.state.lock();
        (state.bytes, state.entries.len())
    }

    fn evict(&self, state: &mut State) {
        while state.bytes > self.budget_bytes {
            let Some(oldest) = state.entries.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| k.clone()) else { break };
            let e = state.entries.remove(&oldest).expect("just found");
            state.bytes -= e.bytes;
        }
    }
}
