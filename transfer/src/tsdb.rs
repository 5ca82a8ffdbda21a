//! Prometheus TSDB blocks, read: the on-disk format of Prometheus 2.x and 3.x, which `amber
//! import tsdb DIR` backfills from a Prometheus data directory or snapshot.
//!
//! A block is a directory, named by its ULID, holding:
//!
//! - `meta.json`: its time range and counts ([`BlockMeta`]);
//! - `index`: its series, their labels, and where their chunks are (`index`);
//! - `chunks/000001`, …: the chunks, up to 512 MiB a file (`chunks`); XOR chunks of float
//!   samples are decoded by `xor`;
//! - `tombstones`: time ranges deleted from series but not yet compacted away (`tombstones`).
//!
//! The byte layouts are Prometheus's, documented in its repository in `tsdb/docs/format/`
//! (`index.md`, `chunks.md`, `tombstones.md`) and implemented in `tsdb/index/index.go`,
//! `tsdb/chunks/chunks.go`, `tsdb/chunkenc/xor.go`, `tsdb/tombstones/tombstones.go` and
//! `tsdb/encoding/encoding.go`; each module's doc comment draws its part. Where the documents
//! and the code disagree, this follows the code, which is what wrote the blocks.
//!
//! # What is read
//!
//! Float samples. Chunks of any other encoding (native histograms, float histograms, and
//! Prometheus 3's opt-in XOR2 and start-timestamp encodings) are not decoded: each series says
//! how many it skipped ([`Series::skipped_chunks`]) so an importer can report them.
//!
//! # Memory
//!
//! Opening a block reads its symbol table (every label string, once) and the ids of its series;
//! iterating it holds one series at a time, reading the index and the chunks through a 1 MiB
//! window each (`window`). Nothing scales with the size of the chunk files.
//!
//! # Corrupt blocks
//!
//! Every section, series entry, chunk and tombstones file carries a CRC32-C, checked before
//! its contents are used, and every decoder is bounds-checked: a corrupt block gives an error
//! naming the file and offset, never a panic or made-up samples.
//!
//! # Layout
//!
//! - `encoding`: integers, varints and checksums, bounds-checked.
//! - `window`: positioned reads of a file through one buffered window.
//! - `index`, `chunks`, `xor`, `tombstones`: one module per file type.

mod chunks;
mod encoding;
mod index;
mod tombstones;
mod window;
mod xor;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use chunks::{ChunkReader, ENC_NONE, ENC_XOR, Segments};
use index::Index;
use tombstones::Tombstones;
use window::FileWindow;

const META_FILE: &str = "meta.json";
/// The only `meta.json` version Prometheus writes and reads.
const META_VERSION_1: u32 = 1;

/// A block's meta.json, the parts an importer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockMeta {
    pub ulid: String,
    /// The block's time range in milliseconds: `min_time` inclusive, `max_time` exclusive.
    pub min_time: i64,
    pub max_time: i64,
    /// As Prometheus counted them when it wrote the block (before any tombstones).
    pub num_series: u64,
    pub num_samples: u64,
}

/// `meta.json` as Prometheus writes it; fields an importer does not need are ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetaFile {
    ulid: String,
    min_time: i64,
    max_time: i64,
    /// Absent from some blocks written by other tools.
    #[serde(default)]
    stats: MetaStats,
    version: u32,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct MetaStats {
    num_samples: u64,
    num_series: u64,
}

/// An opened block directory: its meta, index and tombstones read, its chunk segments checked.
pub struct Block {
    dir: PathBuf,
    meta: BlockMeta,
    index: Index,
    segments: Segments,
    tombstones: Tombstones,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block").field("dir", &self.dir).field("meta", &self.meta).finish_non_exhaustive()
    }
}

/// A series of a block, with its float samples.
///
/// `==` compares values as `f64`s, so a series holding a NaN is not equal to itself; compare
/// `f64::to_bits` to check samples are identical.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// As in the index: sorted by name, `__name__` among them.
    pub labels: Vec<(String, String)>,
    /// `(timestamp ms, value)`, ascending, from the block's XOR chunks, tombstoned ranges
    /// removed. Values are bit for bit as stored: Prometheus's stale marker is a NaN with
    /// payload 2 (`0x7ff0000000000002`), distinct from other NaNs.
    pub samples: Vec<(i64, f64)>,
    /// Chunks of encodings this reader does not decode (native histogram chunks, encodings 2
    /// and 3, and any other but XOR), so the caller can report them.
    pub skipped_chunks: u32,
}

impl Block {
    /// Opens the block in `dir`: reads `meta.json`, the index's symbol table and series ids,
    /// and `tombstones`, and checks the header of every chunk segment file.
    pub fn open(dir: &Path) -> Result<Block> {
        Block::open_parts(dir).with_context(|| format!("opening block {}", dir.display()))
    }

    fn open_parts(dir: &Path) -> Result<Block> {
        let meta_path = dir.join(META_FILE);
        let meta = std::fs::read(&meta_path).with_context(|| format!("reading {}", meta_path.display()))?;
        let meta: MetaFile =
            serde_json::from_slice(&meta).with_context(|| format!("parsing {}", meta_path.display()))?;
        if meta.version != META_VERSION_1 {
            bail!("{}: unknown meta version {}", meta_path.display(), meta.version);
        }
        Ok(Block {
            dir: dir.to_owned(),
            meta: BlockMeta {
                ulid: meta.ulid,
                min_time: meta.min_time,
                max_time: meta.max_time,
                num_series: meta.stats.num_series,
                num_samples: meta.stats.num_samples,
            },
            index: Index::open(&dir.join("index"))?,
            segments: Segments::open(&dir.join("chunks"))?,
            tombstones: Tombstones::read(&dir.join("tombstones"))?,
        })
    }

    /// The block's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    /// Every series of the block, in the index's order (sorted by labels), with its samples
    /// (tombstoned ranges removed), one at a time so memory stays bounded by one series.
    ///
    /// Series left with nothing (every sample deleted by tombstones, or no chunks at all) are
    /// left out, as Prometheus's queries leave them out. The first error ends the iteration:
    /// an error means the block is corrupt or unreadable, and what follows it is suspect too.
    pub fn series(&self) -> impl Iterator<Item = Result<Series>> + '_ {
        SeriesIter { block: self, next: 0, index: None, chunks: self.segments.reader(), failed: false }
    }
}

/// The blocks under a Prometheus data directory or snapshot directory (subdirectories holding
/// a meta.json, sorted by min_time), or `dir` itself when it is one block. Directories without
/// meta.json (wal/, chunks_head/, *.tmp) are not blocks and are ignored.
///
/// So are directories whose name contains `.tmp` even with a meta.json: Prometheus writes a
/// new block as `<ULID>.tmp-for-creation` and renames one it is deleting to
/// `<ULID>.tmp-for-deletion`, and neither holds data a query would see. A snapshot's blocks
/// sit in its own directory (`snapshots/<name>/`), not beside those of the data directory, so
/// they are not picked up twice.
pub fn blocks_in(dir: &Path) -> Result<Vec<Block>> {
    if dir.join(META_FILE).is_file() {
        return Ok(vec![Block::open(dir)?]);
    }
    let mut blocks = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry.with_context(|| format!("listing {}", dir.display()))?.path();
        let temporary = path.file_name().is_some_and(|name| name.to_string_lossy().contains(".tmp"));
        if !temporary && path.is_dir() && path.join(META_FILE).is_file() {
            blocks.push(Block::open(&path)?);
        }
    }
    blocks.sort_by(|a, b| (a.meta.min_time, &a.meta.ulid).cmp(&(b.meta.min_time, &b.meta.ulid)));
    Ok(blocks)
}

/// Walks a block's series ids, reading each series' entry and chunks.
struct SeriesIter<'a> {
    block: &'a Block,
    /// Position in the block's series ids.
    next: usize,
    /// Opened on the first series, so that `series()` itself cannot fail.
    index: Option<FileWindow>,
    chunks: ChunkReader<'a>,
    failed: bool,
}

impl Iterator for SeriesIter<'_> {
    type Item = Result<Series>;

    fn next(&mut self) -> Option<Result<Series>> {
        while !self.failed {
            let id = *self.block.index.series_ids().get(self.next)?;
            self.next += 1;
            match self.read(id) {
                Ok(Some(series)) => return Some(Ok(series)),
                Ok(None) => {}
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e.context(format!("reading block {}", self.block.dir.display()))));
                }
            }
        }
        None
    }
}

impl SeriesIter<'_> {
    /// Series `id` with its samples; `None` when nothing of it is left.
    fn read(&mut self, id: u32) -> Result<Option<Series>> {
        let index = match &mut self.index {
            Some(window) => window,
            None => self.index.insert(self.block.index.window()?),
        };
        let entry = self.block.index.read_series(index, id)?;
        let deleted = self.block.tombstones.get(u64::from(id));

        let mut samples = Vec::new();
        let mut skipped_chunks = 0u32;
        for meta in &entry.chunks {
            // A chunk wholly deleted need not be read (nor, if not XOR, reported).
            if deleted.iter().any(|d| d.min_time <= meta.min_time && meta.max_time <= d.max_time) {
                continue;
            }
            let what = || format!("series {} (id {id}), chunk {:#x}", display_labels(&entry.labels), meta.chunk_ref);
            let chunk = self.chunks.read(meta.chunk_ref).with_context(what)?;
            match chunk.encoding {
                ENC_XOR => xor::decode(chunk.data, &mut samples).with_context(what)?,
                // Encoding 0 is "none": never written, so only corruption the CRC missed.
                ENC_NONE => bail!("{}: chunk encoding 0", what()),
                _ => skipped_chunks += 1,
            }
        }
        if !deleted.is_empty() {
            samples.retain(|&(t, _)| !deleted.iter().any(|d| d.contains(t)));
        }
        // The format requires a series' chunks not to overlap, so this holds for any block
        // Prometheus wrote; should another tool's not, keep the promise of ascending samples
        // (the sort is stable: of equal timestamps, the earlier chunk's sample stays).
        if !samples.is_sorted_by(|a, b| a.0 < b.0) {
            samples.sort_by_key(|&(t, _)| t);
            samples.dedup_by_key(|&mut (t, _)| t);
        }
        if samples.is_empty() && skipped_chunks == 0 {
            return Ok(None);
        }
        Ok(Some(Series { labels: entry.labels, samples, skipped_chunks }))
    }
}

/// `{name="value", …}`, for error messages.
fn display_labels(labels: &[(String, String)]) -> String {
    let pairs: Vec<String> = labels.iter().map(|(name, value)| format!("{name}={value:?}")).collect();
    format!("{{{}}}", pairs.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_json_as_prometheus_writes_it() {
        let dir = tempfile::tempdir().unwrap();
        let json = r#"{
            "ulid": "01M8XPVX4H1CYSJYTPNQQ7H36F",
            "minTime": 1600000000000,
            "maxTime": 1600003600001,
            "stats": { "numSamples": 5, "numSeries": 2, "numChunks": 2 },
            "compaction": { "level": 1, "sources": ["01M8XPVX4H1CYSJYTPNQQ7H36F"] },
            "version": 1
        }"#;
        std::fs::write(dir.path().join(META_FILE), json).unwrap();
        let err = format!("{:#}", Block::open(dir.path()).unwrap_err());
        // meta.json parses; the index is what is missing.
        assert!(err.contains("index") && !err.contains("meta.json"), "{err}");

        std::fs::write(dir.path().join(META_FILE), json.replace(r#""version": 1"#, r#""version": 2"#)).unwrap();
        let err = format!("{:#}", Block::open(dir.path()).unwrap_err());
        assert!(err.contains("unknown meta version 2"), "{err}");
    }

    #[test]
    fn labels_display_escaped() {
        let labels = [("__name__".to_string(), "up".to_string()), ("path".to_string(), "a\"b".to_string())];
        assert_eq!(display_labels(&labels), r#"{__name__="up", path="a\"b"}"#);
    }
}
