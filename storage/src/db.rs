//! Opening the store: RocksDB column families, their options, the merge operator, and the
//! in-memory state rebuilt at startup.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::AtomicU64;

use parking_lot::{Mutex, RwLock};
use roaring::RoaringTreemap;
use rocksdb::{
    BlockBasedOptions, BottommostLevelCompaction, Cache, ColumnFamily, ColumnFamilyDescriptor, CompactOptions, DB,
    DBCompressionType, Direction, IteratorMode, MergeOperands, Options as RocksOptions, WriteBatch, WriteOptions,
};
use rustc_hash::FxHashMap;

use crate::SeriesId;
use crate::chunkenc::varint::Reader;
use crate::error::{Error, Result};
use crate::head::{Head, HeadStats};
use crate::keys::{self, prefix};
use crate::tenant::TenantId;
use crate::wal::Wal;

/// The on-disk format version of the key layouts in `docs/format/`. Version 2 moved the head
/// from RocksDB (`head`, `exemplar_head` column families) to memory and the WAL.
pub const STORE_FORMAT_VERSION: u8 = 2;

/// Threads applying the log to the head on open, at most: beyond this the head's map lock and
/// the reading thread, not the appliers, set the pace.
const MAX_REPLAY_THREADS: usize = 8;

/// How the store behaves. `block_duration_ms` is fixed when a store is created (it is part of
/// the key layout); the others may change between runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Width of a time window: samples of one series in one window seal into one block.
    pub block_duration_ms: i64,
    /// How far behind a series' newest sample an older sample may still be accepted.
    pub out_of_order_window_ms: i64,
    /// Samples and exemplars older than this are deleted, and refused on write.
    pub retention_ms: i64,
    /// Samples and exemplars further than this ahead of the wall clock are refused.
    pub max_future_ms: i64,
    /// Exemplar labels whose values are indexed as trace ids.
    pub trace_id_labels: Vec<String>,
    /// RocksDB block cache size, shared by all column families.
    pub block_cache_bytes: usize,
    /// Bytes of memtables (recent writes not yet flushed) across all column families.
    pub memtable_bytes: usize,
    /// Exemplars a series may have in one block window; more are refused.
    pub max_exemplars_per_series_per_window: u64,
    /// Mark every window a sealing pass writes as waiting for upload to object storage
    /// ([`crate::upload`]); off without an object store.
    pub upload_sealed_windows: bool,
    /// With uploads on, how long a window's blocks stay on local disk once it is in the bucket
    /// ([`crate::upload`]); `None` keeps them for the whole retention.
    pub local_retention_ms: Option<i64>,
    /// `fdatasync` the head's log before a write is acknowledged. Off, an acknowledged write
    /// has been handed to the kernel (`write(2)`, as Prometheus does): it survives the process
    /// being killed, not a power loss or a kernel crash.
    pub wal_fsync: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            block_duration_ms: 2 * 3600 * 1000,
            out_of_order_window_ms: 3600 * 1000,
            retention_ms: 15 * 24 * 3600 * 1000,
            max_future_ms: 10 * 60 * 1000,
            trace_id_labels: vec!["trace_id".into(), "traceID".into()],
            block_cache_bytes: 128 << 20,
            memtable_bytes: 64 << 20,
            max_exemplars_per_series_per_window: 10_000,
            upload_sealed_windows: false,
            local_retention_ms: None,
            wal_fsync: true,
        }
    }
}

/// The storage engine. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Storage {
    pub(crate) db: DB,
    pub(crate) opts: Options,
    /// Series ids by the digest of their `SERIES_BY_LABELS` key ([`keys::series_cache_key`]),
    /// filled as series are written or looked up.
    pub(crate) series_cache: RwLock<FxHashMap<u128, SeriesId>>,
    /// Held while new series are created, so two writers never give one label set two ids.
    pub(crate) next_series_id: Mutex<SeriesId>,
    /// Samples and exemplars not yet sealed, in memory, with each series' write state.
    pub(crate) head: Head,
    /// What makes the head durable.
    pub(crate) wal: Wal,
    /// Start of every window that holds data, for any tenant.
    pub(crate) windows: RwLock<BTreeSet<i64>>,
    /// Series already added to each recent window's activity set, so a series costs one merge
    /// per window rather than one per request. Pruned by [`Storage::seal`]; a miss only costs a
    /// redundant (idempotent) merge.
    pub(crate) activity_written: Mutex<HashMap<(i64, TenantId), RoaringTreemap>>,
    /// Series per tenant, for the series limit; filled on first use.
    pub(crate) series_counts: Mutex<HashMap<TenantId, u64>>,
    /// Registered tenants by name (the default tenant is not among them).
    pub(crate) tenants: RwLock<HashMap<String, TenantId>>,
    /// Series that hold native histogram samples (in the head or in blocks), so reads of the
    /// many float-only series never look for histograms. Rebuilt at open from the histogram
    /// blocks' keys and the replayed head; only grows while running (retention may leave ids of
    /// series whose histograms are gone, which costs a lookup, never a wrong answer).
    pub(crate) histogram_series: RwLock<RoaringTreemap>,
    /// Bumped by every series garbage collection that removed series (see [`crate::gc`]): a
    /// write whose ids were resolved under an older value resolves them again.
    pub(crate) series_gc_epoch: AtomicU64,
    /// Held while pending-upload marks are written or removed, so an upload never removes a
    /// mark that a sealing pass renewed after the upload read it.
    pub(crate) upload_marks: Mutex<()>,
    /// Windows before this start are in the bucket only (`LOCAL_HORIZON`; `i64::MIN`: none).
    pub(crate) local_horizon: std::sync::atomic::AtomicI64,
    /// Held by a sealing pass and by [`Storage::expire_local_copies`], which must not interleave.
    pub(crate) sealing: Mutex<()>,
}

/// Sizes for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct StorageStats {
    pub series: u64,
    /// (column family, bytes of SST files on disk).
    pub sst_bytes: Vec<(&'static str, u64)>,
    /// (column family, bytes of live memtables).
    pub memtable_bytes: Vec<(&'static str, u64)>,
    pub head: HeadStats,
    /// Bytes of the head's write-ahead log on disk.
    pub wal_bytes: u64,
    /// Sealed windows waiting for upload to object storage.
    pub pending_upload_windows: u64,
    /// Windows before this start are in the bucket only ([`Storage::local_horizon`]).
    pub local_horizon: i64,
}

/// Merge operator of postings and activity keys: the union of serialized roaring treemaps.
fn union_merge(_key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands) -> Option<Vec<u8>> {
    let mut set = match existing {
        Some(b) => RoaringTreemap::deserialize_from(b).ok()?,
        None => RoaringTreemap::new(),
    };
    for op in operands {
        set |= RoaringTreemap::deserialize_from(op).ok()?;
    }
    let mut out = Vec::with_capacity(set.serialized_size());
    set.serialize_into(&mut out).ok()?;
    Some(out)
}

pub(crate) fn cf_options(name: &str, cache: &Cache) -> RocksOptions {
    let mut o = RocksOptions::default();
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    // Index and filter blocks of every open table count against the block cache instead of
    // growing the heap with the number of SST files.
    table.set_cache_index_and_filter_blocks(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    table.set_bloom_filter(10.0, false);
    // Both partitioned into blocks of about 4 KiB, found through a small top-level index kept
    // pinned. A whole-file filter grows with the keys of the file (about 1.25 bytes a key: 4 MB
    // for an index file of a million series), and one larger than a block-cache shard (the
    // cache is split in 64) is never kept: every lookup read it again from the file. At a
    // million series that made each series lookup a multi-megabyte read, and a restart or the
    // first scrape took minutes (BENCHMARKS.md, "The cost curve").
    table.set_index_type(rocksdb::BlockBasedIndexType::TwoLevelIndexSearch);
    table.set_partition_filters(true);
    table.set_metadata_block_size(4096);
    table.set_pin_top_level_index_and_filter(true);
    if name == keys::CF_BLOCKS || name == keys::CF_HISTOGRAM_BLOCKS {
        // zstd over Amber's own column codecs: series scraped together sit side by side (their
        // ids are adjacent) and share timestamp columns and value patterns that one series' codec
        // cannot see. Level 9, 16 KiB table blocks and a dictionary trained per file took
        // amber-bench from 2.7 to 1.21 bytes per sample; larger blocks or levels gained < 1 %.
        table.set_block_size(16 << 10);
        o.set_compression_options(-14, 9, 0, 16 << 10);
        o.set_zstd_max_train_bytes(100 * (16 << 10));
    }
    o.set_block_based_table_factory(&table);
    // Small memtables for the column families written on ingest (new series, trace ids): they
    // count in resident memory until flushed, and flushing a few MiB costs little.
    o.set_write_buffer_size(4 << 20);
    o.set_compression_type(DBCompressionType::Zstd);
    if name == keys::CF_INDEX {
        o.set_merge_operator_associative("roaring_union", union_merge);
    }
    o
}

impl Storage {
    /// Opens (or creates) the store in `path`, replaying RocksDB's WAL.
    pub fn open(path: &Path, opts: Options) -> Result<Storage> {
        let started = std::time::Instant::now();
        let cache = Cache::new_lru_cache(opts.block_cache_bytes)?;
        let mut db_opts = RocksOptions::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(2);
        db_opts.set_keep_log_file_num(4);
        db_opts.set_log_level(rocksdb::LogLevel::Warn);
        // One memtable budget for all column families (RocksDB's default is 64 MiB × 2 per family,
        // which let resident memory grow with ingest volume rather than with active series).
        db_opts.set_db_write_buffer_size(opts.memtable_bytes);
        let cfs = keys::ALL_CFS.iter().map(|&name| ColumnFamilyDescriptor::new(name, cf_options(name, &cache)));
        let db = DB::open_cf_descriptors(&db_opts, path, cfs)?;
        tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "RocksDB open");
        let head = Head::new(opts.block_duration_ms);
        let histogram_series = Mutex::new(RoaringTreemap::new());
        // Data in windows retention deleted is not brought back: its series may have been
        // garbage-collected from the index since (a log segment lives until all of it is sealed).
        let block = opts.block_duration_ms;
        let keep_from = crate::now_ms().saturating_sub(opts.retention_ms).div_euclid(block).saturating_mul(block);
        let appliers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_REPLAY_THREADS);
        let wal = Wal::open(&path.join("wal"), opts.wal_fsync, appliers, |record, shard| {
            let retained = |ts: i64| ts >= keep_from;
            let kept = |s: &crate::wal::ReplayedSeries<'_>| {
                shard.holds(s.id)
                    && (s.samples.iter().any(|x| retained(x.ts))
                        || s.histograms.iter().any(|h| retained(h.ts))
                        || s.exemplars.iter().any(|e| retained(e.ts)))
            };
            // One lock of the head's map per record, not per series.
            let map = head.series_for_write(record.series().filter(kept).map(|s| s.id));
            for s in record.series().filter(kept) {
                let mut series = map[&s.id].lock();
                for sample in s.samples.iter().filter(|x| retained(x.ts)) {
                    series.insert_sample(*sample);
                }
                if s.histograms.iter().any(|h| retained(h.ts)) {
                    histogram_series.lock().insert(s.id);
                }
                for h in s.histograms.iter().filter(|h| retained(h.ts)) {
                    series.insert_histogram(h);
                }
                for e in s.exemplars.iter().filter(|e| retained(e.ts)) {
                    series.insert_exemplar(e);
                }
            }
        })?;
        let mut storage = Storage {
            db,
            opts,
            series_cache: RwLock::new(FxHashMap::default()),
            next_series_id: Mutex::new(0),
            head,
            wal,
            windows: RwLock::new(BTreeSet::new()),
            activity_written: Mutex::new(HashMap::new()),
            tenants: RwLock::new(HashMap::new()),
            series_counts: Mutex::new(HashMap::new()),
            histogram_series: RwLock::new(histogram_series.into_inner()),
            series_gc_epoch: AtomicU64::new(0),
            upload_marks: Mutex::new(()),
            local_horizon: std::sync::atomic::AtomicI64::new(i64::MIN),
            sealing: Mutex::new(()),
        };
        tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "WAL read into the head");
        storage.check_options(path)?;
        storage.load_state()?;
        storage.load_tenants()?;
        tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "store state loaded");
        storage.index_replayed_head()?;
        tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "store opened");
        Ok(storage)
    }

    /// Rewrites the trace-index keys and window activity of everything replayed into the head:
    /// they were written unsynced, so a crash may have lost them. They are written unsynced again,
    /// as at ingest: the log segments they come from stay until a seal has flushed the memtables,
    /// and a crash before that replays them once more.
    fn index_replayed_head(&self) -> Result<()> {
        let started = std::time::Instant::now();
        let mut ids = self.head.ids();
        let mut tenants = self.series_tenants_if_indexed(&ids)?;
        tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "replayed series' tenants read");
        // Only a series garbage-collected after its data left retention, with the clock set back
        // since, has replayed data and no index entry: that data was past retention.
        let collected: Vec<SeriesId> =
            ids.iter().zip(&tenants).filter(|(_, t)| t.is_none()).map(|(&id, _)| id).collect();
        if !collected.is_empty() {
            tracing::warn!(series = collected.len(), "dropped replayed data of series no longer in the index");
            self.head.remove(&collected);
            ids.retain(|id| collected.binary_search(id).is_err());
            tenants.retain(Option::is_some);
        }
        let mut trace_keys = Vec::new();
        let mut activity: HashMap<(i64, TenantId), RoaringTreemap> = HashMap::new();
        let mut batch = WriteBatch::default();
        for (&id, tenant) in ids.iter().zip(tenants.iter().flatten()) {
            let Some(series) = self.head.get(id) else { continue };
            let series = series.lock();
            for window in series.windows() {
                activity.entry((window, *tenant)).or_default().insert(id);
            }
            for e in series.exemplars(i64::MIN, i64::MAX) {
                self.gather_trace_keys(&mut trace_keys, *tenant, id, &e);
            }
        }
        self.put_trace_keys(&mut batch, trace_keys);
        let index = self.cf(keys::CF_INDEX);
        for ((window, tenant), set) in &activity {
            batch.merge_cf(index, keys::activity(*window, *tenant), crate::index::encode_postings(set));
        }
        tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "replayed trace keys and activity gathered");
        self.db.write(batch)?;
        self.windows.write().extend(activity.keys().map(|(w, _)| *w));
        if !ids.is_empty() {
            tracing::info!(series = ids.len(), "head replayed from the WAL");
        }
        Ok(())
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    pub(crate) fn cf(&self, name: &str) -> &ColumnFamily {
        self.db.cf_handle(name).expect("every column family is opened")
    }

    /// Records the fixed options on first open; refuses to open with a different block duration.
    fn check_options(&mut self, path: &Path) -> Result<()> {
        let key = [prefix::OPTIONS];
        let index = self.cf(keys::CF_INDEX);
        match self.db.get_cf(index, key)? {
            Some(stored) => {
                let mut r = Reader::new(&stored);
                let parsed = (|| Ok::<_, crate::chunkenc::DecodeError>((r.u8()?, r.u64_be()? as i64)))();
                let (version, block_ms) = parsed.map_err(|source| Error::CorruptIndex { what: "options", source })?;
                if version != STORE_FORMAT_VERSION || block_ms != self.opts.block_duration_ms {
                    return Err(Error::IncompatibleOptions {
                        path: path.display().to_string(),
                        stored: format!("format {version}, block duration {block_ms}ms"),
                        requested: format!(
                            "format {STORE_FORMAT_VERSION}, block duration {}ms",
                            self.opts.block_duration_ms
                        ),
                    });
                }
            }
            None => {
                let mut value = vec![STORE_FORMAT_VERSION];
                value.extend_from_slice(&(self.opts.block_duration_ms as u64).to_be_bytes());
                self.db.put_cf_opt(index, key, value, &synced())?;
            }
        }
        Ok(())
    }

    /// Rebuilds what is kept in memory: the next series id and the set of windows with data.
    pub(crate) fn load_state(&mut self) -> Result<()> {
        let index = self.cf(keys::CF_INDEX);
        let next_series_id = self.db.get_cf(index, [prefix::NEXT_SERIES_ID])?.map(|v| keys::read_u64(&v));
        let mut windows = BTreeSet::new();
        let start = [prefix::ACTIVITY];
        for item in self.db.iterator_cf(index, IteratorMode::From(&start, Direction::Forward)) {
            let (k, _) = item?;
            if k[0] != prefix::ACTIVITY {
                break;
            }
            windows.insert(keys::read_ordered_i64(&k[1..9]));
        }
        let local_horizon = self.db.get_cf(index, [prefix::LOCAL_HORIZON])?.map(|v| keys::read_ordered_i64(&v));
        *self.windows.get_mut() = windows;
        if let Some(h) = local_horizon {
            *self.local_horizon.get_mut() = h;
        }
        let mut histogram_series = RoaringTreemap::new();
        for item in self.db.iterator_cf(self.cf(keys::CF_HISTOGRAM_BLOCKS), IteratorMode::Start) {
            let (k, _) = item?;
            if k.len() == 16 {
                histogram_series.insert(keys::read_u64(&k[8..16]));
            }
        }
        *self.histogram_series.get_mut() |= histogram_series;
        if let Some(id) = next_series_id {
            *self.next_series_id.get_mut() = id;
        }
        Ok(())
    }

    /// The start of the window that holds `ts`.
    pub fn window_of(&self, ts: i64) -> i64 {
        ts.div_euclid(self.opts.block_duration_ms).saturating_mul(self.opts.block_duration_ms)
    }

    /// The start of the oldest window with data and the end of the newest, any tenant's.
    pub fn data_time_range(&self) -> Option<(i64, i64)> {
        let windows = self.windows.read();
        Some((*windows.first()?, windows.last()?.saturating_add(self.opts.block_duration_ms - 1)))
    }

    /// Windows with data that overlap `[mint, maxt]`.
    pub(crate) fn windows_overlapping(&self, mint: i64, maxt: i64) -> Vec<i64> {
        let first = self.window_of(mint);
        self.windows.read().range(first..=maxt).copied().collect()
    }

    pub(crate) fn write_synced(&self, batch: WriteBatch) -> Result<()> {
        self.db.write_opt(batch, &synced())?;
        Ok(())
    }

    /// Bytes available to Amber on the file system of the store (`statvfs`'s `f_bavail`).
    pub fn free_disk_bytes(&self) -> std::io::Result<u64> {
        let st = rustix::fs::statvfs(self.db.path())?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }

    /// The directory of the store.
    pub fn path(&self) -> &Path {
        self.db.path()
    }

    pub fn stats(&self) -> StorageStats {
        let prop = |cf: &str, name: &str| self.db.property_int_value_cf(self.cf(cf), name).ok().flatten().unwrap_or(0);
        StorageStats {
            head: self.head.stats(),
            wal_bytes: self.wal.disk_bytes(),
            pending_upload_windows: self.pending_uploads(crate::now_ms()).map(|p| p.len() as u64).unwrap_or(0),
            local_horizon: self.local_horizon(),
            series: self.series_in_index(),
            sst_bytes: keys::ALL_CFS.iter().map(|&cf| (cf, prop(cf, "rocksdb.live-sst-files-size"))).collect(),
            memtable_bytes: keys::ALL_CFS.iter().map(|&cf| (cf, prop(cf, "rocksdb.cur-size-all-mem-tables"))).collect(),
        }
    }

    /// Series in the index across tenants (series garbage collection makes it shrink); a tenant
    /// whose count cannot be read is left out.
    fn series_in_index(&self) -> u64 {
        self.tenant_ids().into_iter().filter_map(|t| self.series_count(t).ok()).sum()
    }

    /// Flushes every memtable to SST files (for measuring bytes on disk, and for tests).
    pub fn flush(&self) -> Result<()> {
        for cf in keys::ALL_CFS {
            self.db.flush_cf(self.cf(cf))?;
        }
        Ok(())
    }

    /// Compacts every column family fully (for measuring bytes on disk after sealing).
    pub fn compact(&self) {
        for cf in keys::ALL_CFS {
            self.compact_range(cf, None, None);
        }
    }

    /// Rewrites a key range so that deleted entries and their tombstones are dropped, even when
    /// RocksDB could otherwise just move a lone file down a level.
    pub(crate) fn compact_range(&self, cf: &str, from: Option<&[u8]>, to: Option<&[u8]>) {
        let mut opts = CompactOptions::default();
        opts.set_bottommost_level_compaction(BottommostLevelCompaction::Force);
        self.db.compact_range_cf_opt(self.cf(cf), from, to, &opts);
    }
}

/// Write options of every write that a caller is told succeeded: fsync the WAL before returning.
/// Concurrent synced writers share one fsync (RocksDB's group commit).
pub(crate) fn synced() -> WriteOptions {
    let mut o = WriteOptions::default();
    o.set_sync(true);
    o
}
