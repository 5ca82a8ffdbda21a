//! Snapshots: a consistent copy of the store, taken while writes go on, that Amber opens as its
//! data directory (`amber --data-dir <snapshot>`) to give back exactly what was acknowledged
//! before the snapshot began.
//!
//! A snapshot is the head's log up to a point plus a RocksDB checkpoint taken after it. The log
//! is closed and its segments hard-linked under the append lock, so the snapshot holds every
//! acknowledged write up to then and none after. The checkpoint (SST files hard-linked, the
//! memtables flushed first) comes after, and may hold more: series created since (without data
//! in the snapshot's log, so invisible), trace-index and activity writes of later data (rebuilt
//! from the log on open anyway, and checked against the data by every read). No sealing pass
//! runs meanwhile, so no block of a window is missing whose head data left the linked log. The
//! copy is built under `<name>.tmp` and renamed when complete: a crash mid-way leaves no
//! directory under the final name.

use std::path::{Path, PathBuf};

use crate::db::Storage;
use crate::error::{Error, Result};

/// What a snapshot holds, for its caller's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotReport {
    pub dir: PathBuf,
    pub wal_segments: usize,
}

impl Storage {
    /// Writes a snapshot of the store into `dir`, which must not exist yet and must be on the
    /// same file system as the store (files are hard-linked, not copied).
    pub fn snapshot(&self, dir: &Path) -> Result<SnapshotReport> {
        let io = |what: &str, e: std::io::Error| Error::Wal(format!("snapshot: {what} {}: {e}", dir.display()));
        if dir.exists() {
            return Err(io("refusing to overwrite", std::io::ErrorKind::AlreadyExists.into()));
        }
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let partial = dir.with_file_name(format!("{name}.tmp"));
        if partial.exists() {
            std::fs::remove_dir_all(&partial).map_err(|e| io("removing an earlier partial snapshot at", e))?;
        }
        let parent = partial.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| io("creating the parent of", e))?;
        // No sealing pass (or local-copy expiry) meanwhile: it deletes log segments and writes
        // blocks, and the log and the blocks must agree.
        let _sealing = self.sealing.lock();
        // The checkpoint creates its directory itself; the log goes in beside its files after.
        let log = partial.join("wal.snapshot");
        let wal_segments = self.wal.link_closed_segments(&log)?;
        rocksdb::checkpoint::Checkpoint::new(&self.db)?.create_checkpoint(partial.join("db"))?;
        // The store's layout: RocksDB's files at the top, the log in `wal/`.
        for entry in std::fs::read_dir(partial.join("db")).map_err(|e| io("listing the checkpoint of", e))? {
            let entry = entry.map_err(|e| io("listing the checkpoint of", e))?;
            std::fs::rename(entry.path(), partial.join(entry.file_name()))
                .map_err(|e| io("moving the checkpoint of", e))?;
        }
        std::fs::remove_dir(partial.join("db")).map_err(|e| io("tidying the checkpoint of", e))?;
        std::fs::rename(&log, partial.join("wal")).map_err(|e| io("placing the log of", e))?;
        sync_dir(&partial).map_err(|e| io("syncing", e))?;
        std::fs::rename(&partial, dir).map_err(|e| io("completing", e))?;
        sync_dir(parent).map_err(|e| io("syncing the parent of", e))?;
        Ok(SnapshotReport { dir: dir.to_path_buf(), wal_segments })
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::source::{Columns, Local, ReadSource};
    use crate::tenant::TenantId;
    use crate::{Label, Labels, Options, Sample, SeriesCreation, SeriesWrite, Storage};

    fn write(storage: &Storage, name: &str, ts: &[i64]) {
        let s = SeriesWrite {
            labels: Labels::from_unsorted(vec![Label::new("__name__", name)]),
            samples: ts.iter().map(|&ts| Sample { ts, value: ts as f64, start_ts: crate::NO_START }).collect(),
            histograms: vec![],
            exemplars: vec![],
        };
        let report = storage.append(TenantId::DEFAULT, &[s], &[], SeriesCreation::UNLIMITED).unwrap();
        assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    }

    fn everything(storage: Arc<Storage>) -> Vec<(String, Vec<i64>)> {
        let found = Local::new(storage, "anonymous").select("anonymous", &[], i64::MIN, i64::MAX, Columns::SAMPLES);
        found
            .unwrap()
            .into_iter()
            .map(|s| (s.labels.get("__name__").unwrap().to_string(), s.samples.iter().map(|x| x.ts).collect()))
            .collect()
    }

    #[test]
    fn a_snapshot_opens_as_the_store_was_when_it_was_taken() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(Storage::open(&dir.path().join("data"), Options::default()).unwrap());
        let now = crate::now_ms();
        let old = storage.window_of(now - 6 * 3600 * 1000);
        write(&storage, "sealed", &[old, old + 1000]);
        storage.seal(now).unwrap();
        write(&storage, "sealed", &[now - 2000]);
        write(&storage, "head", &[now - 1000]);

        let at = dir.path().join("data/snapshots/s1");
        let report = storage.snapshot(&at).unwrap();
        assert!(report.wal_segments >= 1, "{report:?}");
        assert!(storage.snapshot(&at).is_err(), "a snapshot never overwrites another");
        write(&storage, "head", &[now]);
        write(&storage, "after", &[now]);
        storage.seal(now + 4 * 3600 * 1000).unwrap();
        let live = everything(storage.clone());
        assert_eq!(live.len(), 3);
        drop(storage);

        let copy = Arc::new(Storage::open(&at, Options::default()).unwrap());
        assert_eq!(
            everything(copy),
            [("head".to_string(), vec![now - 1000]), ("sealed".to_string(), vec![old, old + 1000, now - 2000])]
        );
        assert!(!dir.path().join("data/snapshots/s1.tmp").exists());
    }
}
