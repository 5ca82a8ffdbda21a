//! Reading a store without writing to it, beside the Amber that may be running on it:
//! [`ReadOnlyStore`], and `amber inspect`'s report of it ([`Inspection`]): per tenant the
//! cardinality of the index, the churn of series from window to window and the sealed exemplars
//! per metric name; store-wide the blocks per kind and the bytes per column family and of the
//! write-ahead log. [`crate::verify`] checks the same handle's blocks and log.
//!
//! # Why a secondary instance
//!
//! A running Amber flushes and compacts, and so deletes SST files and replaces its manifest and
//! RocksDB's log, at any time. RocksDB's read-only mode (`open_cf_for_read_only`) is for a store
//! nobody writes: its header (`rocksdb/db.h`, `OpenForReadOnly`) says a read-only instance of a
//! database that is open read-write at the same time "has undefined behavior". A **secondary
//! instance** (`open_cf_descriptors_as_secondary`, in the pinned crate 0.20.1 and RocksDB 7.8) is
//! RocksDB's way to read beside a live primary: it keeps its info log in a directory of its own
//! (a temporary directory here), replays the primary's manifest and log into its own memory, and
//! with `max_open_files = -1` (what RocksDB asks of a secondary) it opens every table file at
//! start, so a file the primary deletes afterwards stays readable through the open descriptor.
//! It never calls `try_catch_up_with_primary`, so the whole report reads one point in time. Any
//! write through it fails in RocksDB ("not supported in secondary mode"), and its write-ahead log
//! refuses every append (`wal::Wal::refusing`): nothing here writes to the store, which
//! works the same on an offline copy or a snapshot.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64};

use parking_lot::{Mutex, RwLock};
use roaring::RoaringTreemap;
use rocksdb::{Cache, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options as RocksOptions, ReadOptions};
use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::block::kind;
use crate::chunkenc::varint::Reader;
use crate::db::{Options, STORE_FORMAT_VERSION, Storage, cf_options};
use crate::error::Result;
use crate::head::Head;
use crate::index::decode_postings;
use crate::keys::{self, prefix};
use crate::labels::{Labels, METRIC_NAME};
use crate::tenant::TenantId;
use crate::wal::{self, Wal};
use crate::{SeriesId, cardinality};

/// Why a store could not be opened for reading.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0} is not an Amber data directory (it has no RocksDB CURRENT file)")]
    NotAStore(PathBuf),
    #[error("{path} lacks the column families {missing:?} (an older Amber made it; start this version on it once)")]
    MissingColumnFamilies { path: PathBuf, missing: Vec<&'static str> },
    #[error("{path} holds store format {found}; this amber reads format {STORE_FORMAT_VERSION}")]
    Format { path: PathBuf, found: u8 },
    #[error("creating a temporary directory for RocksDB's secondary instance: {0}")]
    Secondary(std::io::Error),
    #[error(transparent)]
    Storage(#[from] crate::Error),
}

/// Told how a long scan advances, to draw a progress bar. `()` draws nothing.
pub trait Progress: Sync {
    /// A new phase begins: what it reads, and about how many items (`None`: not known).
    fn begin(&self, what: &str, total: Option<u64>);
    /// `n` more items of the phase are done.
    fn advance(&self, n: u64);
}

impl Progress for () {
    fn begin(&self, _what: &str, _total: Option<u64>) {}
    fn advance(&self, _n: u64) {}
}

/// Items between two [`Progress::advance`] calls: a call per block would cost more than the
/// block.
pub(crate) const PROGRESS_STEP: u64 = 1024;

/// A store opened read-only: RocksDB as a secondary instance (see the module documentation),
/// the index state rebuilt in memory, an empty head and a log that refuses appends.
pub struct ReadOnlyStore {
    pub(crate) storage: Storage,
    pub(crate) data_dir: PathBuf,
    /// What the report calls tenant 0 (`--default-tenant`).
    pub(crate) default_tenant: String,
    /// The secondary instance's own directory (its info log); removed after `storage` is dropped
    /// (fields drop in declaration order).
    _secondary: tempfile::TempDir,
}

/// How many times opening is tried: a primary replacing its manifest or log file between the
/// secondary's reading `CURRENT` and opening what it names makes one attempt fail.
const OPEN_ATTEMPTS: u32 = 5;

impl ReadOnlyStore {
    /// Opens the store in `data_dir` for reading, whether an Amber runs on it or not.
    /// `default_tenant` is the name reports give tenant 0.
    pub fn open(data_dir: &Path, default_tenant: &str) -> std::result::Result<ReadOnlyStore, OpenError> {
        // RocksDB would create a missing directory; a mistyped path must not become a store.
        if !data_dir.join("CURRENT").is_file() {
            return Err(OpenError::NotAStore(data_dir.to_path_buf()));
        }
        let mut db_opts = RocksOptions::default();
        db_opts.set_max_open_files(-1);
        db_opts.set_log_level(rocksdb::LogLevel::Warn);
        let present = DB::list_cf(&db_opts, data_dir).map_err(crate::Error::from)?;
        let missing: Vec<&'static str> =
            keys::ALL_CFS.iter().copied().filter(|cf| !present.iter().any(|p| p == cf)).collect();
        if !missing.is_empty() {
            return Err(OpenError::MissingColumnFamilies { path: data_dir.to_path_buf(), missing });
        }
        let secondary = tempfile::Builder::new().prefix("amber-read-only-").tempdir().map_err(OpenError::Secondary)?;
        // Scans read with `fill_cache(false)`; the cache only holds index and filter blocks.
        let cache = Cache::new_lru_cache(32 << 20).map_err(crate::Error::from)?;
        let mut attempt = 1;
        let db = loop {
            // The column families' own options, for the index's merge operator: postings and
            // activity sets are merge operands until compacted, and reading them needs it.
            let cfs = keys::ALL_CFS.iter().map(|&name| ColumnFamilyDescriptor::new(name, cf_options(name, &cache)));
            match DB::open_cf_descriptors_as_secondary(&db_opts, data_dir, secondary.path(), cfs) {
                Ok(db) => break db,
                Err(e) if attempt < OPEN_ATTEMPTS => {
                    tracing::debug!(error = %e, attempt, "opening the secondary instance failed; retrying");
                    std::thread::sleep(std::time::Duration::from_millis(100 * u64::from(attempt)));
                    attempt += 1;
                }
                Err(e) => return Err(crate::Error::from(e).into()),
            }
        };
        let stored = db
            .get_cf(db.cf_handle(keys::CF_INDEX).expect("opened above"), [prefix::OPTIONS])
            .map_err(crate::Error::from)?
            .ok_or_else(|| OpenError::NotAStore(data_dir.to_path_buf()))?;
        // `format_version <1b> │ block_duration_ms <8b>` (docs/format/index.md, OPTIONS).
        let mut r = Reader::new(&stored);
        let parsed = (|| Ok::<_, crate::chunkenc::DecodeError>((r.u8()?, r.u64_be()? as i64)))();
        let (version, block_ms) = parsed.map_err(|source| crate::Error::CorruptIndex { what: "options", source })?;
        if version != STORE_FORMAT_VERSION {
            return Err(OpenError::Format { path: data_dir.to_path_buf(), found: version });
        }
        let opts = Options { block_duration_ms: block_ms, ..Options::default() };
        let mut storage = Storage {
            db,
            head: Head::new(block_ms),
            wal: Wal::refusing(&data_dir.join("wal"), "the store is open read-only")?,
            opts,
            series_cache: RwLock::new(FxHashMap::default()),
            next_series_id: Mutex::new(0),
            windows: RwLock::new(Default::default()),
            activity_written: Mutex::new(HashMap::new()),
            series_counts: Mutex::new(HashMap::new()),
            tenants: RwLock::new(HashMap::new()),
            histogram_series: RwLock::new(RoaringTreemap::new()),
            series_gc_epoch: AtomicU64::new(0),
            upload_marks: Mutex::new(()),
            local_horizon: AtomicI64::new(i64::MIN),
            sealing: Mutex::new(()),
        };
        storage.load_state()?;
        storage.load_tenants()?;
        Ok(ReadOnlyStore {
            storage,
            data_dir: data_dir.to_path_buf(),
            default_tenant: default_tenant.to_string(),
            _secondary: secondary,
        })
    }

    /// The store, for its read methods (`cardinality`, `series_labels`, `samples`, …). Every
    /// write through it fails.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Width of the store's windows.
    pub fn block_duration_ms(&self) -> i64 {
        self.storage.opts.block_duration_ms
    }

    /// The tenant named `name` (the default tenant by its `default_tenant` name).
    pub fn tenant(&self, name: &str) -> Option<TenantId> {
        if name == self.default_tenant { Some(TenantId::DEFAULT) } else { self.storage.tenant_id(name) }
    }

    /// Every tenant with its name, by id.
    pub fn tenants(&self) -> Vec<(TenantId, String)> {
        let mut out: Vec<(TenantId, String)> =
            self.storage.tenants.read().iter().map(|(name, &id)| (id, name.clone())).collect();
        out.push((TenantId::DEFAULT, self.default_tenant.clone()));
        out.sort();
        out
    }

    /// The name of tenant `id` (its number for an id no name maps to).
    pub fn tenant_name(&self, id: TenantId) -> String {
        if id == TenantId::DEFAULT {
            return self.default_tenant.clone();
        }
        let tenants = self.storage.tenants.read();
        tenants.iter().find(|(_, t)| **t == id).map_or_else(|| format!("#{}", id.0), |(name, _)| name.clone())
    }

    /// The tenant and labels of each id, `None` where the index has none or they do not decode.
    pub(crate) fn labels_of(&self, ids: &[SeriesId]) -> Vec<Option<(TenantId, Labels)>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(1024) {
            match self.storage.series_labels_if_indexed(chunk) {
                Ok(labels) => out.extend(labels),
                // One undecodable entry: ask one by one, so only it goes without labels.
                Err(_) => out.extend(
                    chunk
                        .iter()
                        .map(|&id| self.storage.series_labels_if_indexed(&[id]).ok().and_then(|mut l| l.pop()?)),
                ),
            }
        }
        out
    }

    /// `amber inspect`: one pass over the activity sets, one over each tenant's postings, one
    /// over every block.
    pub fn inspect(&self, opts: &InspectOptions, progress: &dyn Progress) -> Result<Inspection> {
        let tenants: Vec<(TenantId, String)> = match opts.tenant {
            Some(t) => vec![(t, self.tenant_name(t))],
            None => self.tenants(),
        };
        progress.begin("activity sets", None);
        let mut churn = self.churn(&tenants)?;
        let (block_kinds, exemplars_by_series) = self.scan_blocks(progress)?;
        progress.begin("exemplar series", Some(exemplars_by_series.len() as u64));
        let mut exemplars: HashMap<TenantId, BTreeMap<String, u64>> = HashMap::new();
        let ids: Vec<SeriesId> = exemplars_by_series.keys().copied().collect();
        for (id, labels) in ids.iter().zip(self.labels_of(&ids)) {
            // An exemplar block of a series the index lacks belongs to no tenant: verify reports it.
            let Some((tenant, labels)) = labels else { continue };
            let name = labels.get(METRIC_NAME).unwrap_or("").to_string();
            *exemplars.entry(tenant).or_default().entry(name).or_default() += exemplars_by_series[id];
        }
        progress.advance(ids.len() as u64);
        let mut reports = Vec::with_capacity(tenants.len());
        for (id, name) in tenants {
            progress.begin(&format!("postings of tenant {name}"), None);
            let c = self.storage.cardinality(id, opts.limit)?;
            let by_name = exemplars.remove(&id).unwrap_or_default();
            let sealed_exemplars = by_name.values().sum();
            let by_name: Vec<Count> = by_name.into_iter().map(|(name, count)| Count { name, count }).collect();
            reports.push(TenantReport {
                name,
                id: id.0,
                series: c.series,
                label_pairs: c.label_pairs,
                series_by_metric_name: counts(c.series_by_metric_name),
                values_by_label_name: counts(c.values_by_label_name),
                value_bytes_by_label_name: counts(c.value_bytes_by_label_name),
                series_by_label_pair: counts(c.series_by_label_pair),
                windows: churn.remove(&id).unwrap_or_default(),
                sealed_exemplars,
                exemplars_by_metric_name: top(by_name, opts.limit),
            });
        }
        Ok(Inspection {
            block_duration_ms: self.block_duration_ms(),
            tenants: reports,
            block_kinds,
            column_families: self.column_families(),
            wal: self.wal_stats(),
        })
    }

    /// Series per window and series new in each window, from the activity sets (`0x07 window
    /// tenant`, in window order), of each of `tenants`. A set is dropped as soon as it is
    /// counted: only the union of what came before is kept per tenant.
    fn churn(&self, tenants: &[(TenantId, String)]) -> Result<HashMap<TenantId, Vec<WindowChurn>>> {
        let index = self.storage.cf(keys::CF_INDEX);
        let block = self.block_duration_ms();
        let mut seen: HashMap<TenantId, RoaringTreemap> =
            tenants.iter().map(|(t, _)| (*t, RoaringTreemap::new())).collect();
        let mut out: HashMap<TenantId, Vec<WindowChurn>> = HashMap::new();
        let start = [prefix::ACTIVITY];
        for item in
            self.storage.db.iterator_cf_opt(index, scan_options(), IteratorMode::From(&start, Direction::Forward))
        {
            let (k, v) = item?;
            if k[0] != prefix::ACTIVITY {
                break;
            }
            if k.len() != 13 {
                continue;
            }
            let tenant = TenantId(u32::from_be_bytes(k[9..13].try_into().expect("4 bytes")));
            let Some(before) = seen.get_mut(&tenant) else { continue };
            let set = decode_postings(&v)?;
            let window = keys::read_ordered_i64(&k[1..9]);
            let new_series = set.len() - set.intersection_len(before);
            *before |= &set;
            out.entry(tenant).or_default().push(WindowChurn {
                start_ms: window,
                end_ms: window.saturating_add(block),
                series: set.len(),
                new_series,
            });
        }
        Ok(out)
    }

    /// Blocks, entries and bytes per (column family, kind), and the exemplars in each series'
    /// exemplar blocks. Reads each block's header only (`version kind count`,
    /// docs/format/blocks.md): checking them is [`crate::verify`]'s work.
    fn scan_blocks(&self, progress: &dyn Progress) -> Result<(Vec<BlockKindStats>, FxHashMap<SeriesId, u64>)> {
        progress.begin("blocks", Some(self.estimated_blocks()));
        let mut kinds: BTreeMap<(&'static str, u8), BlockKindStats> = BTreeMap::new();
        let mut exemplars: FxHashMap<SeriesId, u64> = FxHashMap::default();
        let mut since_progress = 0;
        for cf in BLOCK_CFS {
            let mut iter = self.storage.db.raw_iterator_cf_opt(self.storage.cf(cf), scan_options());
            iter.seek_to_first();
            while let (Some(k), Some(v)) = (iter.key(), iter.value()) {
                let (block_kind, entries) = header(v);
                let stats = kinds.entry((cf, block_kind)).or_insert_with(|| BlockKindStats {
                    kind: block_kind,
                    name: kind_name(block_kind),
                    column_family: cf,
                    blocks: 0,
                    entries: 0,
                    bytes: 0,
                });
                stats.blocks += 1;
                stats.entries += entries;
                stats.bytes += v.len() as u64;
                if cf == keys::CF_EXEMPLAR_BLOCKS && block_kind == kind::EXEMPLARS && k.len() == 16 {
                    *exemplars.entry(keys::read_u64(&k[8..16])).or_default() += entries;
                }
                since_progress += 1;
                if since_progress == PROGRESS_STEP {
                    progress.advance(since_progress);
                    since_progress = 0;
                }
                iter.next();
            }
            iter.status()?;
        }
        progress.advance(since_progress);
        Ok((kinds.into_values().collect(), exemplars))
    }

    /// RocksDB's estimate of the keys in the block column families: the length of a block scan.
    pub(crate) fn estimated_blocks(&self) -> u64 {
        BLOCK_CFS.iter().map(|cf| self.property(cf, "rocksdb.estimate-num-keys")).sum()
    }

    fn property(&self, cf: &str, name: &str) -> u64 {
        self.storage.db.property_int_value_cf(self.storage.cf(cf), name).ok().flatten().unwrap_or(0)
    }

    fn column_families(&self) -> Vec<ColumnFamilyStats> {
        keys::ALL_CFS
            .iter()
            .map(|&cf| ColumnFamilyStats {
                name: cf,
                sst_bytes: self.property(cf, "rocksdb.live-sst-files-size"),
                live_data_bytes: self.property(cf, "rocksdb.estimate-live-data-size"),
                memtable_bytes: self.property(cf, "rocksdb.cur-size-all-mem-tables"),
                estimated_keys: self.property(cf, "rocksdb.estimate-num-keys"),
            })
            .collect()
    }

    /// Segments and bytes of the head's log now (a segment the running Amber deletes meanwhile
    /// is left out).
    fn wal_stats(&self) -> WalStats {
        let dir = self.data_dir.join("wal");
        let sizes: Vec<u64> = wal::segment_numbers(&dir)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|n| std::fs::metadata(wal::segment_path(&dir, n)).ok())
            .map(|m| m.len())
            .collect();
        WalStats { segments: sizes.len() as u64, bytes: sizes.iter().sum() }
    }
}

/// The column families of sealed blocks, in the order they are scanned.
pub(crate) const BLOCK_CFS: [&str; 3] = [keys::CF_BLOCKS, keys::CF_HISTOGRAM_BLOCKS, keys::CF_EXEMPLAR_BLOCKS];

/// Read options of a whole-column-family scan: checksums verified, the block cache left to the
/// running Amber's reads (a secondary has its own cache, but a scan would only churn it).
pub(crate) fn scan_options() -> ReadOptions {
    let mut o = ReadOptions::default();
    o.fill_cache(false);
    o.set_verify_checksums(true);
    o.set_readahead_size(2 << 20);
    o
}

/// A block's kind and entry count from its header, `(0, 0)` for one too short or of another
/// format version to have one.
fn header(block: &[u8]) -> (u8, u64) {
    if block.len() < 3 || block[0] != crate::block::FORMAT_VERSION {
        return (0, 0);
    }
    (block[1], Reader::new(&block[2..]).uvarint().unwrap_or(0))
}

/// What a block of `kind` holds, as the report names it.
pub fn kind_name(k: u8) -> &'static str {
    match k {
        kind::FLOAT_SAMPLES => "float samples",
        kind::EXEMPLARS => "exemplars",
        kind::HISTOGRAMS => "native histograms",
        kind::FLOAT_SAMPLES_WITH_STARTS => "float samples with start timestamps",
        kind::HISTOGRAMS_WITH_STARTS => "native histograms with start timestamps",
        _ => "unknown",
    }
}

/// What `amber inspect` reports on.
#[derive(Debug, Clone, Default)]
pub struct InspectOptions {
    /// Only this tenant; `None`: every tenant. Block and byte figures are always store-wide.
    pub tenant: Option<TenantId>,
    /// Length of every top list.
    pub limit: usize,
}

/// `amber inspect`'s report.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub block_duration_ms: i64,
    pub tenants: Vec<TenantReport>,
    /// Sealed blocks per column family and kind (store-wide), in column family, then kind order.
    pub block_kinds: Vec<BlockKindStats>,
    pub column_families: Vec<ColumnFamilyStats>,
    pub wal: WalStats,
}

/// One tenant's figures.
#[derive(Debug, Clone, Serialize)]
pub struct TenantReport {
    pub name: String,
    pub id: u32,
    pub series: u64,
    /// Distinct `name=value` pairs.
    pub label_pairs: u64,
    pub series_by_metric_name: Vec<Count>,
    /// Distinct values per label name.
    pub values_by_label_name: Vec<Count>,
    /// Bytes of label values per label name (each value's length times its series).
    pub value_bytes_by_label_name: Vec<Count>,
    pub series_by_label_pair: Vec<Count>,
    /// Every window with data (head included: activity sets are written on ingest), oldest first.
    pub windows: Vec<WindowChurn>,
    /// Exemplars in the tenant's exemplar blocks (the head's are not counted).
    pub sealed_exemplars: u64,
    /// Sealed exemplars per `__name__` of their series.
    pub exemplars_by_metric_name: Vec<Count>,
}

/// An entry of a top list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Count {
    pub name: String,
    pub count: u64,
}

/// Churn in one window: `[start_ms, end_ms)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WindowChurn {
    pub start_ms: i64,
    pub end_ms: i64,
    /// Series with data in the window.
    pub series: u64,
    /// Of them, series with data in no earlier retained window.
    pub new_series: u64,
}

/// Sealed blocks of one kind in one column family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockKindStats {
    /// The header's kind byte (`block::kind`); 0 for a block without a readable header.
    pub kind: u8,
    pub name: &'static str,
    pub column_family: &'static str,
    pub blocks: u64,
    /// Samples, histogram samples or exemplars, as the headers count them.
    pub entries: u64,
    /// Bytes of the blocks as Amber encodes them, before RocksDB's compression.
    pub bytes: u64,
}

/// One column family's size, from RocksDB's properties.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnFamilyStats {
    pub name: &'static str,
    /// `rocksdb.live-sst-files-size`: table files on disk (compressed).
    pub sst_bytes: u64,
    /// `rocksdb.estimate-live-data-size`.
    pub live_data_bytes: u64,
    /// `rocksdb.cur-size-all-mem-tables`: what the secondary replayed from RocksDB's log.
    pub memtable_bytes: u64,
    /// `rocksdb.estimate-num-keys`.
    pub estimated_keys: u64,
}

/// The head's write-ahead log on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WalStats {
    pub segments: u64,
    pub bytes: u64,
}

fn counts(stats: Vec<cardinality::Stat>) -> Vec<Count> {
    stats.into_iter().map(|s| Count { name: s.name, count: s.count }).collect()
}

/// The `limit` largest, largest first, ties by name (as [`cardinality`]'s lists).
fn top(mut stats: Vec<Count>, limit: usize) -> Vec<Count> {
    stats.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    stats.truncate(limit);
    stats
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::append::{SeriesCreation, SeriesWrite};
    use crate::labels::Label;
    use crate::{Exemplar, HistogramSample, Sample};

    pub(crate) const BLOCK: i64 = 2 * 3600 * 1000;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_unsorted(pairs.iter().map(|(n, v)| Label::new(*n, *v)).collect())
    }

    fn floats(labels: Labels, from: i64, n: i64, start_ts: i64) -> SeriesWrite {
        let samples = (0..n).map(|i| Sample { ts: from + i * 15_000, value: i as f64, start_ts }).collect();
        SeriesWrite { labels, samples, histograms: Vec::new(), exemplars: Vec::new() }
    }

    /// A sealed store: in window `w` (six hours ago) four `requests_total` series (one with start
    /// timestamps), two `latency_bucket` series with three exemplars between them, a native
    /// histogram series, and tenant `team-b`'s one series; in window `w + 1` two of the
    /// `requests_total` series and a new `up` series. Returns the open store and `w`.
    pub(crate) fn fixture(dir: &Path) -> (Storage, i64) {
        let storage = Storage::open(dir, Options::default()).unwrap();
        let now = crate::now_ms();
        let w = storage.window_of(now - 6 * 3600 * 1000);
        let mut writes: Vec<SeriesWrite> = ["a", "b", "c"]
            .iter()
            .map(|p| floats(labels(&[("__name__", "requests_total"), ("path", p)]), w, 10, 0))
            .collect();
        writes.push(floats(labels(&[("__name__", "requests_total"), ("path", "d")]), w, 10, w - 1000));
        for (le, n) in [("1", 2), ("+Inf", 1)] {
            let mut s = floats(labels(&[("__name__", "latency_bucket"), ("le", le)]), w, 10, 0);
            s.exemplars = (0..n)
                .map(|i| Exemplar {
                    ts: w + i * 15_000,
                    value: 0.5,
                    labels: labels(&[("trace_id", &format!("{i:032x}"))]),
                })
                .collect();
            writes.push(s);
        }
        let h = crate::chunkenc::histogram::tests::shapes().remove(0);
        writes.push(SeriesWrite {
            labels: labels(&[("__name__", "rpc_seconds")]),
            samples: Vec::new(),
            histograms: (0..5).map(|i| HistogramSample { ts: w + i * 15_000, start_ts: 0, h: h.clone() }).collect(),
            exemplars: Vec::new(),
        });
        storage.append(TenantId::DEFAULT, &writes, &[], SeriesCreation::UNLIMITED).unwrap();
        let next: Vec<SeriesWrite> = ["a", "b"]
            .iter()
            .map(|p| floats(labels(&[("__name__", "requests_total"), ("path", p)]), w + BLOCK, 10, 0))
            .chain([floats(labels(&[("__name__", "up")]), w + BLOCK, 10, 0)])
            .collect();
        storage.append(TenantId::DEFAULT, &next, &[], SeriesCreation::UNLIMITED).unwrap();
        let team_b = storage.register_tenant("team-b").unwrap();
        storage
            .append(team_b, &[floats(labels(&[("__name__", "up")]), w, 3, 0)], &[], SeriesCreation::UNLIMITED)
            .unwrap();
        storage.seal(now).unwrap();
        (storage, w)
    }

    fn count(name: &str, count: u64) -> Count {
        Count { name: name.into(), count }
    }

    #[test]
    fn inspect_reads_a_running_store_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (storage, w) = fixture(dir.path());

        // The primary is still open, as a running Amber would be.
        let ro = ReadOnlyStore::open(dir.path(), "anonymous").unwrap();
        let report = ro.inspect(&InspectOptions { tenant: None, limit: 3 }, &()).unwrap();
        assert_eq!(report.block_duration_ms, BLOCK);
        let names: Vec<(&str, u32, u64)> = report.tenants.iter().map(|t| (t.name.as_str(), t.id, t.series)).collect();
        assert_eq!(names, [("anonymous", 0, 8), ("team-b", 1, 1)]);
        let t = &report.tenants[0];
        assert_eq!(t.label_pairs, 1 + 4 + 1 + 2 + 1 + 1, "__name__ values, paths, le values");
        assert_eq!(
            t.series_by_metric_name,
            [count("requests_total", 4), count("latency_bucket", 2), count("rpc_seconds", 1)]
        );
        assert_eq!(t.values_by_label_name, [count("__name__", 4), count("path", 4), count("le", 2)]);
        assert_eq!(t.series_by_label_pair[0], count("__name__=requests_total", 4));
        assert_eq!(
            t.windows,
            [
                WindowChurn { start_ms: w, end_ms: w + BLOCK, series: 7, new_series: 7 },
                WindowChurn { start_ms: w + BLOCK, end_ms: w + 2 * BLOCK, series: 3, new_series: 1 },
            ]
        );
        assert_eq!((t.sealed_exemplars, t.exemplars_by_metric_name.clone()), (3, vec![count("latency_bucket", 3)]));
        assert_eq!(report.tenants[1].windows.len(), 1);
        assert_eq!(report.tenants[1].sealed_exemplars, 0);

        let kinds: Vec<(&str, u8, &str, u64, u64)> =
            report.block_kinds.iter().map(|k| (k.column_family, k.kind, k.name, k.blocks, k.entries)).collect();
        assert_eq!(
            kinds,
            [
                ("blocks", 1, "float samples", 3 + 2 + 2 + 1 + 1, 30 + 20 + 20 + 10 + 3),
                ("blocks", 4, "float samples with start timestamps", 1, 10),
                ("exemplar_blocks", 2, "exemplars", 2, 3),
                ("histogram_blocks", 3, "native histograms", 1, 5),
            ]
        );
        assert!(report.block_kinds.iter().all(|k| k.bytes > 0));
        let cfs: Vec<&str> = report.column_families.iter().map(|c| c.name).collect();
        assert_eq!(cfs, keys::ALL_CFS);
        assert!(report.column_families.iter().any(|c| c.sst_bytes + c.memtable_bytes > 0));
        // Everything was sealed: the sealed segments are gone, the one being appended to is empty.
        assert_eq!(report.wal, WalStats { segments: 1, bytes: 0 });

        let only_b = ro.inspect(&InspectOptions { tenant: ro.tenant("team-b"), limit: 3 }, &()).unwrap();
        assert_eq!(only_b.tenants.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["team-b"]);
        assert_eq!(ro.tenant("nobody"), None);

        // Writing through the read-only store fails, in RocksDB and in the log.
        let write = floats(labels(&[("__name__", "new")]), crate::now_ms(), 1, 0);
        assert!(ro.storage().append(TenantId::DEFAULT, &[write], &[], SeriesCreation::UNLIMITED).is_err());
        assert!(ro.storage().seal(crate::now_ms()).is_err());
        drop(ro);

        // Offline, opening and reading leave every file of the store as it was.
        drop(storage);
        let listing = || -> Vec<(PathBuf, u64, std::time::SystemTime)> {
            let mut out = Vec::new();
            for sub in [dir.path().to_path_buf(), dir.path().join("wal")] {
                for e in std::fs::read_dir(sub).unwrap() {
                    let e = e.unwrap();
                    let m = e.metadata().unwrap();
                    out.push((e.path(), m.len(), m.modified().unwrap()));
                }
            }
            out.sort();
            out
        };
        let before = listing();
        let ro = ReadOnlyStore::open(dir.path(), "anonymous").unwrap();
        ro.inspect(&InspectOptions { tenant: None, limit: 10 }, &()).unwrap();
        assert_eq!(ro.verify(&()).unwrap().problems(), 0);
        drop(ro);
        assert_eq!(listing(), before);
    }

    #[test]
    fn a_directory_that_is_not_a_store_is_refused_and_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("typo");
        assert!(matches!(ReadOnlyStore::open(&missing, "anonymous"), Err(OpenError::NotAStore(_))));
        assert!(!missing.exists());
    }
}
