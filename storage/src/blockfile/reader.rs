//! Reading a stored block file with range requests: the tail first (trailer, table of contents
//! and, for small files, everything), then only the sections and series asked for.

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
const TAIL_BYTES: u64 = 64 * 1024;

#[derive(Debug, Clone, Copy)]
struct SectionRef {
    kind: u8,
    offset: u64,
    len: u64,
    crc: u32,
}

/// An open block file in a bucket.
pub struct BlockFileReader<'a, S: ObjectStorage + ?Sized> {
    store: &'a S,
    key: String,
    toc: Vec<SectionRef>,
    /// The last bytes of the file, from `tail_start`.
    tail: Bytes,
    tail_start: u64,
}

impl<'a, S: ObjectStorage + ?Sized> BlockFileReader<'a, S> {
    /// Opens the block file `key` of `size` bytes (the size the bucket index records).
    pub async fn open(store: &'a S, key: &str, size: u64) -> Result<Self, BlockFileError> {
        let corrupt = |what: &str| BlockFileError::Corrupt { key: key.to_string(), what: what.to_string() };
        if size < (MAGIC.len() + 1 + TRAILER_LEN) as u64 {
            return Err(corrupt("shorter than header and trailer"));
        }
        let tail_start = size.saturating_sub(TAIL_BYTES);
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
        if toc_offset + toc_len + TRAILER_LEN as u64 != size {
            return Err(corrupt("table of contents out of bounds"));
        }
        let mut reader = BlockFileReader { store, key: key.to_string(), toc: Vec::new(), tail, tail_start };
        let toc_bytes = reader.fetch(toc_offset..toc_offset + toc_len).await?;
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
        reader.toc = parse(&mut r).map_err(|e| corrupt(&format!("table of contents: {e}")))?;
        if reader.toc.iter().any(|s| s.offset.checked_add(s.len).is_none_or(|end| end > toc_offset)) {
            return Err(corrupt("a section lies outside the file"));
        }
        let head = reader.fetch(0..5).await?;
        if &head[..4] != MAGIC || head[4] != VERSION {
            return Err(corrupt(&format!("unsupported header {:?}", &head[..])));
        }
        Ok(reader)
    }

    fn corrupt(&self, what: impl std::fmt::Display) -> BlockFileError {
        BlockFileError::Corrupt { key: self.key.clone(), what: what.to_string() }
    }

    /// Bytes `range` of the file, from the tail when it holds them.
    async fn fetch(&self, range: Range<u64>) -> Result<Bytes, BlockFileError> {
        if range.start >= self.tail_start {
            let s = (range.start - self.tail_start) as usize;
            return Ok(self.tail.slice(s..s + (range.end - range.start) as usize));
        }
        Ok(self.store.get_range(&self.key, range).await?)
    }

    fn section_ref(&self, kind: u8) -> Option<SectionRef> {
        self.toc.iter().find(|s| s.kind == kind).copied()
    }

    /// A whole section, checksum verified; `None` when the file has none of that kind.
    async fn section(&self, kind: u8) -> Result<Option<Bytes>, BlockFileError> {
        let Some(s) = self.section_ref(kind) else { return Ok(None) };
        let bytes = self.fetch(s.offset..s.offset + s.len).await?;
        if crc32c::crc32c(&bytes) != s.crc {
            return Err(self.corrupt(format!("section {kind} checksum mismatch")));
        }
        Ok(Some(bytes))
    }

    async fn required(&self, kind: u8) -> Result<Bytes, BlockFileError> {
        self.section(kind).await?.ok_or_else(|| self.corrupt(format!("no section {kind}")))
    }

    pub async fn meta(&self) -> Result<WindowMeta, BlockFileError> {
        let b = self.required(section::META).await?;
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
    pub async fn series(&self) -> Result<Vec<Labels>, BlockFileError> {
        let b = self.required(section::SERIES).await?;
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
    pub async fn postings(&self, name: &str, value: &str) -> Result<RoaringBitmap, BlockFileError> {
        let b = self.required(section::POSTINGS).await?;
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

    /// The column block of series `ordinal` in one column, fetched alone; `None` if it has none.
    async fn column(&self, index_kind: u8, data_kind: u8, ordinal: u32) -> Result<Option<Bytes>, BlockFileError> {
        let index = self.required(index_kind).await?;
        let data = self.section_ref(data_kind).ok_or_else(|| self.corrupt(format!("no section {data_kind}")))?;
        let mut r = Reader::new(&index);
        let find = |r: &mut Reader<'_>| -> Result<Option<(u64, u64)>, DecodeError> {
            let n = r.uvarint()?;
            for _ in 0..n {
                let (o, offset, len) = (r.uvarint()?, r.uvarint()?, r.uvarint()?);
                if o == ordinal as u64 {
                    return Ok(Some((offset, len)));
                }
            }
            Ok(None)
        };
        let Some((offset, len)) = find(&mut r).map_err(|e| self.corrupt(format!("column index: {e}")))? else {
            return Ok(None);
        };
        if offset + len > data.len {
            return Err(self.corrupt("column entry outside its section"));
        }
        // Each block carries its own checksum, verified as it is decoded.
        Ok(Some(self.fetch(data.offset + offset..data.offset + offset + len).await?))
    }

    pub async fn samples(&self, ordinal: u32) -> Result<Vec<Sample>, BlockFileError> {
        match self.column(section::SAMPLE_INDEX, section::SAMPLE_DATA, ordinal).await? {
            Some(b) => block::decode_samples(&b).map_err(|e| self.corrupt(e)),
            None => Ok(Vec::new()),
        }
    }

    pub async fn histograms(&self, ordinal: u32) -> Result<Vec<HistogramSample>, BlockFileError> {
        match self.column(section::HISTOGRAM_INDEX, section::HISTOGRAM_DATA, ordinal).await? {
            Some(b) => block::decode_histograms(&b).map_err(|e| self.corrupt(e)),
            None => Ok(Vec::new()),
        }
    }

    pub async fn exemplars(&self, ordinal: u32) -> Result<Vec<Exemplar>, BlockFileError> {
        match self.column(section::EXEMPLAR_INDEX, section::EXEMPLAR_DATA, ordinal).await? {
            Some(b) => block::decode_exemplars(&b).map_err(|e| self.corrupt(e)),
            None => Ok(Vec::new()),
        }
    }

    /// Whether the window may hold `trace_id`: `false` is certain, `true` is wrong for about
    /// 0.4% of absent ids. Reads the filter section only.
    pub async fn may_contain_trace(&self, trace_id: &str) -> Result<bool, BlockFileError> {
        let Some(b) = self.section(section::TRACE_FILTER).await? else { return Ok(false) };
        let d = xorf::BinaryFuse8::DESCRIPTOR_LEN;
        if b.len() < d {
            return Err(self.corrupt("trace filter shorter than its descriptor"));
        }
        Ok(BinaryFuse8Ref::from_dma(&b[..d], &b[d..]).contains(&trace_key(trace_id)))
    }

    /// The exemplars' (series ordinal, timestamp) pairs carrying `trace_id`, in table order.
    /// Consults the filter first, so a window without the trace costs one small read.
    pub async fn trace(&self, trace_id: &str) -> Result<Vec<TraceEntry>, BlockFileError> {
        if !self.may_contain_trace(trace_id).await? {
            return Ok(Vec::new());
        }
        let b = self.required(section::TRACE_TABLE).await?;
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
}
