//! Writing a block file: a window's content, gathered from the sealed blocks, to bytes.

use std::collections::BTreeMap;

use roaring::RoaringBitmap;
use xorf::{BinaryFuse8, DmaSerializable};

use super::{MAGIC, TraceEntry, VERSION, WindowMeta, section, trace_key};
use crate::Labels;
use crate::block::{self, BlockError};
use crate::chunkenc::varint::{put_uvarint, put_varint};

/// One series of a window with its sealed blocks, as [`crate::block`] encoded them.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowSeries {
    pub labels: Labels,
    pub samples: Option<Vec<u8>>,
    pub histograms: Option<Vec<u8>>,
    pub exemplars: Option<Vec<u8>>,
}

/// Everything one block file holds: a tenant's window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowContent {
    pub tenant: String,
    pub start: i64,
    pub end: i64,
    /// Sorted by label set; a series' index is its ordinal.
    pub series: Vec<WindowSeries>,
    /// Sorted; ordinals index `series`.
    pub traces: Vec<TraceEntry>,
}

/// Encodes `content` as a block file, returning it with what its META section says. Deterministic: the same content gives the same bytes,
/// which is what lets an upload name the object by its content. Decodes every block on the way,
/// to count and bound what the file holds (META), so a corrupt block is refused here rather than
/// shipped.
pub fn encode(content: &WindowContent) -> Result<(Vec<u8>, WindowMeta), BlockError> {
    debug_assert!(content.series.windows(2).all(|w| w[0].labels < w[1].labels));
    debug_assert!(content.traces.windows(2).all(|w| w[0] <= w[1]));
    let mut meta = WindowMeta {
        tenant: content.tenant.clone(),
        start: content.start,
        end: content.end,
        min_ts: i64::MAX,
        max_ts: i64::MIN,
        series: content.series.len() as u64,
        traces: content.traces.len() as u64,
        ..Default::default()
    };
    let mut bound = |lo: Option<i64>, hi: Option<i64>| {
        if let (Some(lo), Some(hi)) = (lo, hi) {
            meta.min_ts = meta.min_ts.min(lo);
            meta.max_ts = meta.max_ts.max(hi);
        }
    };
    let (mut samples, mut histograms, mut exemplars) = (0u64, 0u64, 0u64);
    for s in &content.series {
        if let Some(b) = &s.samples {
            let d = block::decode_samples(b)?;
            samples += d.len() as u64;
            bound(d.first().map(|x| x.ts), d.last().map(|x| x.ts));
        }
        if let Some(b) = &s.histograms {
            let d = block::decode_histograms(b)?;
            histograms += d.len() as u64;
            bound(d.first().map(|x| x.ts), d.last().map(|x| x.ts));
        }
        if let Some(b) = &s.exemplars {
            let d = block::decode_exemplars(b)?;
            exemplars += d.len() as u64;
            bound(d.first().map(|x| x.ts), d.last().map(|x| x.ts));
        }
    }
    (meta.samples, meta.histograms, meta.exemplars) = (samples, histograms, exemplars);
    if meta.min_ts > meta.max_ts {
        (meta.min_ts, meta.max_ts) = (content.start, content.start);
    }

    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    let mut toc: Vec<(u8, u64, u64, u32)> = Vec::new();
    let mut put_section = |out: &mut Vec<u8>, kind: u8, body: &[u8]| {
        toc.push((kind, out.len() as u64, body.len() as u64, crc32c::crc32c(body)));
        out.extend_from_slice(body);
    };

    put_section(&mut out, section::META, &encode_meta(&meta));

    let mut series = Vec::new();
    put_uvarint(&mut series, content.series.len() as u64);
    for s in &content.series {
        s.labels.encode_into(&mut series);
    }
    put_section(&mut out, section::SERIES, &series);

    let mut postings: BTreeMap<(&str, &str), RoaringBitmap> = BTreeMap::new();
    for (ordinal, s) in content.series.iter().enumerate() {
        for l in &s.labels {
            postings.entry((&l.name, &l.value)).or_default().insert(ordinal as u32);
        }
    }
    let mut body = Vec::new();
    put_uvarint(&mut body, postings.len() as u64);
    let mut bitmap = Vec::new();
    for ((name, value), set) in &postings {
        put_bytes(&mut body, name.as_bytes());
        put_bytes(&mut body, value.as_bytes());
        bitmap.clear();
        set.serialize_into(&mut bitmap).expect("writing to a Vec");
        put_bytes(&mut body, &bitmap);
    }
    put_section(&mut out, section::POSTINGS, &body);

    let columns: [(u8, u8, ColumnOf); 3] = [
        (section::SAMPLE_INDEX, section::SAMPLE_DATA, |s| s.samples.as_ref()),
        (section::HISTOGRAM_INDEX, section::HISTOGRAM_DATA, |s| s.histograms.as_ref()),
        (section::EXEMPLAR_INDEX, section::EXEMPLAR_DATA, |s| s.exemplars.as_ref()),
    ];
    for (index_kind, data_kind, column) in columns {
        let mut index = Vec::new();
        let mut data = Vec::new();
        let with: Vec<(usize, &Vec<u8>)> =
            content.series.iter().enumerate().filter_map(|(i, s)| column(s).map(|b| (i, b))).collect();
        put_uvarint(&mut index, with.len() as u64);
        for (ordinal, b) in with {
            put_uvarint(&mut index, ordinal as u64);
            put_uvarint(&mut index, data.len() as u64);
            put_uvarint(&mut index, b.len() as u64);
            data.extend_from_slice(b);
        }
        put_section(&mut out, index_kind, &index);
        put_section(&mut out, data_kind, &data);
    }

    if !content.traces.is_empty() {
        let mut keys: Vec<u64> = content.traces.iter().map(|t| trace_key(&t.trace_id)).collect();
        keys.sort_unstable();
        keys.dedup();
        // Construction retries seeds internally; it fails only for duplicate keys, removed above.
        let filter = BinaryFuse8::try_from(&keys).expect("a binary fuse filter of distinct keys");
        let mut body = vec![0u8; BinaryFuse8::DESCRIPTOR_LEN];
        filter.dma_copy_descriptor_to(&mut body);
        body.extend_from_slice(filter.dma_fingerprints());
        put_section(&mut out, section::TRACE_FILTER, &body);

        let mut table = Vec::new();
        put_uvarint(&mut table, content.traces.len() as u64);
        for t in &content.traces {
            put_bytes(&mut table, t.trace_id.as_bytes());
            put_uvarint(&mut table, t.ordinal as u64);
            put_varint(&mut table, t.ts);
        }
        put_section(&mut out, section::TRACE_TABLE, &table);
    }

    let toc_offset = out.len() as u64;
    let mut toc_bytes = Vec::new();
    put_uvarint(&mut toc_bytes, toc.len() as u64);
    for (kind, offset, len, crc) in &toc {
        toc_bytes.push(*kind);
        put_uvarint(&mut toc_bytes, *offset);
        put_uvarint(&mut toc_bytes, *len);
        toc_bytes.extend_from_slice(&crc.to_be_bytes());
    }
    out.extend_from_slice(&toc_bytes);
    out.extend_from_slice(&toc_offset.to_be_bytes());
    out.extend_from_slice(&(toc_bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&toc_bytes).to_be_bytes());
    out.extend_from_slice(MAGIC);
    Ok((out, meta))
}

/// One column's block of a series, if it has one.
type ColumnOf = fn(&WindowSeries) -> Option<&Vec<u8>>;

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_uvarint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn encode_meta(m: &WindowMeta) -> Vec<u8> {
    let mut out = Vec::new();
    put_bytes(&mut out, m.tenant.as_bytes());
    for v in [m.start, m.end, m.min_ts, m.max_ts] {
        put_varint(&mut out, v);
    }
    for v in [m.series, m.samples, m.histograms, m.exemplars, m.traces] {
        put_uvarint(&mut out, v);
    }
    out
}
