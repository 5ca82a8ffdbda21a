//! Reading a stored block file with range requests: the tail first (trailer, table of contents
//! and, for small files, everything), then only the sections and series asked for.
//!
//! [`BlockFile`] is what opening parses (the table of contents and the tail's bytes), owned and
//! independent of the store, so a reader may keep it for an immutable file and read on with any
//! store handle; [`BlockFileReader`] pairs it with a store.

use std::ops::Range;

use bytes::Bytes;
use roaring::RoaringBitmap;
use xorf::{BinaryFuse8Ref, DmaSerializable, Filter, FilterRef};

use super::{BlockFileError, MAGIC, TRAILER_LEN, TraceEntry, VERSION, WindowMeta, section, trace_key};
use crate::block;
use crate::chunkenc::DecodeError;
use crate::chunkenc::varint::Reader;
use crate::objstore::ObjectStorage;
use crate::{Exemplar, HistogramSample, Labels, Sample};

/// Bytes fetched from the end on open: the trailer and table of contents with one request, and
/// every section of a small file with it.
pub const TAIL_BYTES: u64 = 64 * 1024;

/// Column blocks closer than this in a data section are fetched with one range request: a
/// request costs more than a few kilobytes of transfer.
const COALESCE_GAP_BYTES: u64 = 16 * 1024;

#[derive(Debug, Clone, Copy)]
struct SectionRef {
    kind: u8,
    offset: u64,
    len: u64,
    crc: u32,
}

/// The column sections of a block file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Samples,
    Histograms,
    Exemplars,
}

impl Column {
    fn sections(self) -> (u8, u8) {
        match self {
            Column::Samples => (section::SAMPLE_INDEX, section::SAMPLE_DATA),
            Column::Histograms => (section::HISTOGRAM_INDEX, section::HISTOGRAM_DATA),
            Column::Exemplars => (section::EXEMPLAR_INDEX, section::EXEMPLAR_DATA),
        }
    }
}

/// One column's index: where each series' block lies in the column's data section.
#[derive(Debug, Clone, Default)]
pub struct ColumnIndex {
    /// (ordinal, offset in the data section, length), by ordinal.
    entries: Vec<(u32, u64, u64)>,
    /// The data section's offset in the file.
    data_offset: u64,
}

impl ColumnIndex {
    /// Whether series `ordinal` has a block in this column.
    pub fn contains(&self, ordinal: u32) -> bool {
        self.entries.binary_search_by_key(&ordinal, |e| e.0).is_ok()
    }

    /// Bytes this index takes in memory, for caches that bound their size.
    pub fn memory_bytes(&self) -> usize {
        self.entries.len() * std::mem::size_of::<(u32, u64, u64)>()
    }
}

/// A block file's trace filter, read whole.
#[derive(Debug, Clone)]
pub struct TraceFilter(Bytes);

impl TraceFilter {
    /// Whether the window may hold `trace_id`: `false` is certain, `true` is wrong for about
    /// 0.4% of absent ids.
    pub fn may_contain(&self, trace_id: &str) -> bool {
        let d = xorf::BinaryFuse8::DESCRIPTOR_LEN;
        BinaryFuse8Ref::from_dma(&self.0[..d], &self.0[d..]).contains(&trace_key(trace_id))
    }

    pub fn memory_bytes(&self) -> usize {
        self.0.len()
    }
}

/// An opened block file: its table of contents and last bytes, without a store.
#[derive(Debug, Clone)]
pub struct BlockFile {
    key: String,
    toc: Vec<SectionRef>,
    /// The last bytes of the file, from `tail_start`.
    tail: Bytes,
    tail_start: u64,
}

impl BlockFile {
    /// Opens the block file `key` of `size` bytes (the size the bucket index records), reading its
    /// last `tail_bytes` (at least the trailer) with the first request.
    pub async fn open<S: ObjectStorage + ?Sized>(
        store: &S,
        key: &str,
        size: u64,
        tail_bytes: u64,
    ) -> Result<Self, BlockFileError> {
        let corrupt = |what: &str| BlockFileError::Corrupt { key: key.to_string(), what: what.to_string() };
        if size < (MAGIC.len() + 1 + TRAILER_LEN) as u64 {
            return Err(corrupt("shorter than header and trailer"));
        }
        let tail_start = size.saturating_sub(tail_bytes.max(TRAILER_LEN as u64));
        let tail = store.get_range(key, tail_start..size).await?;
        if tail.len() as u64 != size - tail_start {
            return Err(corrupt("shorter than its recorded size"));
        }
        let t = &tail[tail.len() - TRAILER_LEN..];
        if &t[16..20] != MAGIC {
            return Err(corrupt("no trailing magic"));
        }
        let toc_offset = u64::from_be_bytes(t[0..8].try_into().expect("8 bytes"));
        let toc_len = u32::from_be_bytes(t[8..12].try_into().expect("4 bytes")) as u64;
        let toc_crc = u32::from_be_bytes(t[12..16].try_into().expect("4 bytes"));
        if toc_offset.checked_add(toc_len + TRAILER_LEN as u64) != Some(size) {
            return Err(corrupt("table of contents out of bounds"));
        }
        let mut file = BlockFile { key: key.to_string(), toc: Vec::new(), tail, tail_start };
        let toc_bytes = file.fetch(store, toc_offset..toc_offset + toc_len).await?;
        if crc32c::crc32c(&toc_bytes) != toc_crc {
            return Err(corrupt("table of contents checksum mismatch"));
        }
        let mut r = Reader::new(&toc_bytes);
        let parse = |r: &mut Reader<'_>| -> Result<Vec<SectionRef>, DecodeError> {
            let n = r.uvarint()?;
            let mut toc = Vec::new();
            for _ in 0..n {
                let kind = r.bytes(1)?[0];
                let offset = r.uvarint()?;
                let len = r.uvarint()?;
                let crc = u32::from_be_bytes(r.bytes(4)?.try_into().expect("4 bytes"));
                toc.push(SectionRef { kind, offset, len, crc });
            }
            Ok(toc)
        };
        file.toc = parse(&mut r).map_err(|e| corrupt(&format!("table of contents: {e}")))?;
        if file.toc.iter().any(|s| s.offset.checked_add(s.len).is_none_or(|end| end > toc_offset)) {
            return Err(corrupt("a section lies outside the file"));
        }
        let head = file.fetch(store, 0..5).await?;
        if &head[..4] != MAGIC || head[4] != VERSION {
            return Err(corrupt(&format!("unsupported header {:?}", &head[..])));
        }
        Ok(file)
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// Bytes this opened file keeps in memory (mostly its tail), for caches that bound their size.
    pub fn memory_bytes(&self) -> usize {
        self.tail.len() + self.key.len() + self.toc.len() * std::mem::size_of::<SectionRef>()
    }

    fn corrupt(&self, what: impl std::fmt::Display) -> BlockFileError {
        BlockFileError::Corrupt { key: self.key.clone(), what: what.to_string() }
    }

    /// Bytes `range` of the file, from the tail when it holds them.
    async fn fetch<S: ObjectStorage + ?Sized>(&self, store: &S, range: Range<u64>) -> Result<Bytes, BlockFileError> {
        if range.start >= self.tail_start {
            let s = (range.start - self.tail_start) as usize;
            return Ok(self.tail.slice(s..s + (range.end - range.start) as usize));
        }
        Ok(store.get_range(&self.key, range).await?)
    }

    fn section_ref(&self, kind: u8) -> Option<SectionRef> {
        self.toc.iter().find(|s| s.kind == kind).copied()
    }

    /// A whole section, checksum verified; `None` when the file has none of that kind.
    async fn section<S: ObjectStorage + ?Sized>(&self, store: &S, kind: u8) -> Result<Option<Bytes>, BlockFileError> {
        let Some(s) = self.section_ref(kind) else { return Ok(None) };
        let bytes = self.fetch(store, s.offset..s.offset + s.len).await?;
        if crc32c::crc32c(&bytes) != s.crc {
            return Err(self.corrupt(format!("section {kind} checksum mismatch")));
        }
        Ok(Some(bytes))
    }

    async fn required<S: ObjectStorage + ?Sized>(&self, store: &S, kind: u8) -> Result<Bytes, BlockFileError> {
        self.section(store, kind).await?.ok_or_else(|| self.corrupt(format!("no section {kind}")))
    }

    pub async fn meta<S: ObjectStorage + ?Sized>(&self, store: &S) -> Result<WindowMeta, BlockFileError> {
        let b = self.required(store, section::META).await?;
        let mut r = Reader::new(&b);
        let parse = |r: &mut Reader<'_>| -> Result<WindowMeta, DecodeError> {
            let tenant = String::from_utf8(r.len_prefixed()?.to_vec()).map_err(|_| DecodeError::Invalid("tenant"))?;
            let (start, end, min_ts, max_ts) = (r.varint()?, r.varint()?, r.varint()?, r.varint()?);
            let (series, samples, histograms, exemplars, traces) =
                (r.uvarint()?, r.uvarint()?, r.uvarint()?, r.uvarint()?, r.uvarint()?);
            Ok(WindowMeta { tenant, start, end, min_ts, max_ts, series, samples, histograms, exemplars, traces })
        };
        parse(&mut r).map_err(|e| self.corrupt(format!("meta: {e}")))
    }

    /// Every series' label set; a series' position is its ordinal.
    pub async fn series<S: ObjectStorage + ?Sized>(&self, store: &S) -> Result<Vec<Labels>, BlockFileError> {
        let b = self.required(store, section::SERIES).await?;
        let mut r = Reader::new(&b);
        let parse = |r: &mut Reader<'_>| -> Result<Vec<Labels>, DecodeError> {
            let n = r.uvarint()?;
            let mut out = Vec::with_capacity((n as usize).min(b.len()));
            for _ in 0..n {
                out.push(Labels::decode(r)?);
            }
            Ok(out)
        };
        parse(&mut r).map_err(|e| self.corrupt(format!("series: {e}")))
    }

    /// The ordinals of the series with label `name="value"`.
    pub async fn postings<S: ObjectStorage + ?Sized>(
        &self,
        store: &S,
        name: &str,
        value: &str,
    ) -> Result<RoaringBitmap, BlockFileError> {
        let b = self.required(store, section::POSTINGS).await?;
        let mut r = Reader::new(&b);
        let n = r.uvarint().map_err(|e| self.corrupt(e))?;
        for _ in 0..n {
            let (nm, v, set) = (|| Ok::<_, DecodeError>((r.len_prefixed()?, r.len_prefixed()?, r.len_prefixed()?)))()
                .map_err(|e| self.corrupt(format!("postings: {e}")))?;
            if nm == name.as_bytes() && v == value.as_bytes() {
                return RoaringBitmap::deserialize_from(set).map_err(|e| self.corrupt(format!("postings: {e}")));
            }
        }
        Ok(RoaringBitmap::new())
    }

    /// A column's index section, parsed.
    pub async fn column_index<S: ObjectStorage + ?Sized>(
        &self,
        store: &S,
        column: Column,
    ) -> Result<ColumnIndex, BlockFileError> {
        let (index_kind, data_kind) = column.sections();
        let index = self.required(store, index_kind).await?;
        let data = self.section_ref(data_kind).ok_or_else(|| self.corrupt(format!("no section {data_kind}")))?;
        let mut r = Reader::new(&index);
        let parse = |r: &mut Reader<'_>| -> Result<Vec<(u32, u64, u64)>, DecodeError> {
            let n = r.uvarint()?;
            let mut out = Vec::with_capacity((n as usize).min(index.len()));
            for _ in 0..n {
                let (o, offset, len) = (r.uvarint()?, r.uvarint()?, r.uvarint()?);
                out.push((u32::try_from(o).map_err(|_| DecodeError::Invalid("ordinal"))?, offset, len));
            }
            Ok(out)
        };
        let entries = parse(&mut r).map_err(|e| self.corrupt(format!("column index: {e}")))?;
        if entries.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(self.corrupt("column index not in ordinal order"));
        }
        if entries.iter().any(|&(_, offset, len)| offset.checked_add(len).is_none_or(|end| end > data.len)) {
            return Err(self.corrupt("column entry outside its section"));
        }
        Ok(ColumnIndex { entries, data_offset: data.offset })
    }

    /// The column blocks of `ordinals` (ascending) in the column `index` describes, one per
    /// ordinal (`None` for a series without a block). Blocks lying close together are fetched
    /// with one range request; each block carries its own checksum, verified as it is decoded.
    pub async fn column_blocks<S: ObjectStorage + ?Sized>(
        &self,
        store: &S,
        index: &ColumnIndex,
        ordinals: &[u32],
    ) -> Result<Vec<Option<Bytes>>, BlockFileError> {
        debug_assert!(ordinals.windows(2).all(|w| w[0] < w[1]));
        let located: Vec<Option<(u64, u64)>> = ordinals
            .iter()
            .map(|o| {
                let i = index.entries.binary_search_by_key(o, |e| e.0).ok()?;
                let (_, offset, len) = index.entries[i];
                Some((index.data_offset + offset, len))
            })
            .collect();
        // Runs of blocks (offsets ascend with ordinals) whose gaps are small, one request each.
        let mut out = vec![None; ordinals.len()];
        let mut run: Vec<(usize, u64, u64)> = Vec::new();
        let present = located.iter().enumerate().filter_map(|(i, l)| l.map(|(o, n)| (i, o, n)));
        for (i, offset, len) in present {
            if let Some(&(_, last_offset, last_len)) = run.last() {
                if offset > last_offset + last_len + COALESCE_GAP_BYTES {
                    self.fetch_run(store, &run, &mut out).await?;
                    run.clear();
                }
            }
            run.push((i, offset, len));
        }
        if !run.is_empty() {
            self.fetch_run(store, &run, &mut out).await?;
        }
        Ok(out)
    }

    async fn fetch_run<S: ObjectStorage + ?Sized>(
        &self,
        store: &S,
        run: &[(usize, u64, u64)],
        out: &mut [Option<Bytes>],
    ) -> Result<(), BlockFileError> {
        let start = run[0].1;
        let end = run.iter().map(|&(_, o, n)| o + n).max().expect("a run is not empty");
        let bytes = self.fetch(store, start..end).await?;
        if bytes.len() as u64 != end - start {
            return Err(self.corrupt("a range read returned fewer bytes than asked"));
        }
        for &(i, offset, len) in run {
            let s = (offset - start) as usize;
            out[i] = Some(bytes.slice(s..s + len as usize));
        }
        Ok(())
    }

    /// The column block of series `ordinal` in one column, fetched alone; `None` if it has none.
    async fn column<S: ObjectStorage + ?Sized>(
        &self,
        store: &S,
        column: Column,
        ordinal: u32,
    ) -> Result<Option<Bytes>, BlockFileError> {
        let index = self.column_index(store, column).await?;
        Ok(self.column_blocks(store, &index, &[ordinal]).await?.pop().flatten())
    }

    pub async fn samples<S: ObjectStorage + ?Sized>(
        &self,
        store: &S,
        ordinal: u32,
    ) -> Result<Vec<Sample>, BlockFileError> {
        match self.column(store, Column::Samples, ordinal).await? {
            Some(b) => block::decode_samples(&b).map_err(|e| self.corrupt(e)),
            None => Ok(Vec::new()),
        }
    }

    pub async fn histograms<S: ObjectStorage + ?Sized>(
        &self,
        store: &S,
        ordinal: u32,
    ) -> Result<Vec<HistogramSample>, BlockFileError> {
        match self.column(store, Column::Histograms, ordinal).await? {
            Some(b) => block::decode_histograms(&b).map_err(|e| self.corrupt(e)),
            None => Ok(Vec::new()),
        }
    }

    pub async fn exemplars<S: ObjectStorage + ?Sized>(
        &self,
        store: &S,
        ordinal: u32,
    ) -> Result<Vec<Exemplar>, BlockFileError> {
        match self.column(store, Column::Exemplars, ordinal).await? {
            Some(b) => block::decode_exemplars(&b).map_err(|e| self.corrupt(e)),
            None => Ok(Vec::new()),
        }
    }

    /// The trace filter; `None` for a window without trace ids. Reads the filter section only.
    pub async fn trace_filter<S: ObjectStorage + ?Sized>(
        &self,
        store: &S,
    ) -> Result<Option<TraceFilter>, BlockFileError> {
        let Some(b) = self.section(store, section::TRACE_FILTER).await? else { return Ok(None) };
        if b.len() < xorf::BinaryFuse8::DESCRIPTOR_LEN {
            return Err(self.corrupt("trace filter shorter than its descriptor"));
        }
        Ok(Some(TraceFilter(b)))
    }

    /// Whether the window may hold `trace_id` (see [`TraceFilter::may_contain`]).
    pub async fn may_contain_trace<S: ObjectStorage + ?Sized>(
        &self,
        store: &S,
        trace_id: &str,
    ) -> Result<bool, BlockFileError> {
        Ok(self.trace_filter(store).await?.is_some_and(|f| f.may_contain(trace_id)))
    }

    /// The exemplars' (series ordinal, timestamp) pairs carrying `trace_id`, in table order.
    /// Consults the filter first, so a window without the trace costs one small read.
    pub async fn trace<S: ObjectStorage + ?Sized>(
        &self,
        store: &S,
        trace_id: &str,
    ) -> Result<Vec<TraceEntry>, BlockFileError> {
        if !self.may_contain_trace(store, trace_id).await? {
            return Ok(Vec::new());
        }
        self.trace_table(store, trace_id).await
    }

    /// The trace table's rows for `trace_id`, without asking the filter first (for a caller that
    /// already did).
    pub async fn trace_table<S: ObjectStorage + ?Sized>(
        &self,
        store: &S,
        trace_id: &str,
    ) -> Result<Vec<TraceEntry>, BlockFileError> {
        let Some(b) = self.section(store, section::TRACE_TABLE).await? else { return Ok(Vec::new()) };
        let mut r = Reader::new(&b);
        let parse = |r: &mut Reader<'_>| -> Result<Vec<TraceEntry>, DecodeError> {
            let n = r.uvarint()?;
            let mut out = Vec::new();
            for _ in 0..n {
                let id = r.len_prefixed()?;
                let (ordinal, ts) = (r.uvarint()? as u32, r.varint()?);
                if id == trace_id.as_bytes() {
                    out.push(TraceEntry { trace_id: trace_id.to_string(), ordinal, ts });
                } else if id > trace_id.as_bytes() {
                    break;
                }
            }
            Ok(out)
        };
        parse(&mut r).map_err(|e| self.corrupt(format!("trace table: {e}")))
    }

    /// The whole trace table, in its order (what the compactor rebuilds a merged table from).
    pub async fn trace_entries<S: ObjectStorage + ?Sized>(&self, store: &S) -> Result<Vec<TraceEntry>, BlockFileError> {
        let Some(b) = self.section(store, section::TRACE_TABLE).await? else { return Ok(Vec::new()) };
        let mut r = Reader::new(&b);
        let parse = |r: &mut Reader<'_>| -> Result<Vec<TraceEntry>, DecodeError> {
            let n = r.uvarint()?;
            let mut out = Vec::with_capacity((n as usize).min(b.len()));
            for _ in 0..n {
                let id = r.len_prefixed()?;
                let trace_id = std::str::from_utf8(id).map_err(|_| DecodeError::Invalid("trace id"))?.to_string();
                let (ordinal, ts) = (r.uvarint()? as u32, r.varint()?);
                out.push(TraceEntry { trace_id, ordinal, ts });
            }
            Ok(out)
        };
        parse(&mut r).map_err(|e| self.corrupt(format!("trace table: {e}")))
    }
}

/// An open block file in a bucket: a [`BlockFile`] and the store it reads from.
pub struct BlockFileReader<'a, S: ObjectStorage + ?Sized> {
    store: &'a S,
    file: BlockFile,
}

impl<'a, S: ObjectStorage + ?Sized> BlockFileReader<'a, S> {
    /// Opens the block file `key` of `size` bytes (the size the bucket index records).
    pub async fn open(store: &'a S, key: &str, size: u64) -> Result<Self, BlockFileError> {
        Ok(BlockFileReader { store, file: BlockFile::open(store, key, size, TAIL_BYTES).await? })
    }

    pub async fn meta(&self) -> Result<WindowMeta, BlockFileError> {
        self.file.meta(self.store).await
    }

    /// Every series' label set; a series' position is its ordinal.
    pub async fn series(&self) -> Result<Vec<Labels>, BlockFileError> {
        self.file.series(self.store).await
    }

    /// The ordinals of the series with label `name="value"`.
    pub async fn postings(&self, name: &str, value: &str) -> Result<RoaringBitmap, BlockFileError> {
        self.file.postings(self.store, name, value).await
    }

    pub async fn samples(&self, ordinal: u32) -> Result<Vec<Sample>, BlockFileError> {
        self.file.samples(self.store, ordinal).await
    }

    pub async fn histograms(&self, ordinal: u32) -> Result<Vec<HistogramSample>, BlockFileError> {
        self.file.histograms(self.store, ordinal).await
    }

    pub async fn exemplars(&self, ordinal: u32) -> Result<Vec<Exemplar>, BlockFileError> {
        self.file.exemplars(self.store, ordinal).await
    }

    /// Whether the window may hold `trace_id`: `false` is certain, `true` is wrong for about
    /// 0.4% of absent ids. Reads the filter section only.
    pub async fn may_contain_trace(&self, trace_id: &str) -> Result<bool, BlockFileError> {
        self.file.may_contain_trace(self.store, trace_id).await
    }

    /// The exemplars' (series ordinal, timestamp) pairs carrying `trace_id`, in table order.
    /// Consults the filter first, so a window without the trace costs one small read.
    pub async fn trace(&self, trace_id: &str) -> Result<Vec<TraceEntry>, BlockFileError> {
        self.file.trace(self.store, trace_id).await
    }
}
