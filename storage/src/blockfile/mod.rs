//! Block files: one tenant's sealed window as one immutable object, the form that leaves the
//! machine for object storage. Byte layout in `docs/format/blockfile.md`.
//!
//! A block file holds the window's series (label sets, in label order: a series' position is
//! its *ordinal*), postings from label pairs to ordinals, the sealed column blocks of samples,
//! native histograms and exemplars exactly as [`crate::block`] encodes them, and a trace-id
//! filter (a binary fuse filter) beside a sorted trace table. Sections are checksummed one by
//! one and listed in a table of contents at the end of the file, so a reader fetches the last
//! bytes first and then only the sections (and, within the column sections, only the series) it
//! needs, with range requests.
//!
//! - [`writer`] — [`WindowContent`] to bytes.
//! - [`reader`] — range reads of a stored block file through [`crate::objstore::ObjectStorage`].

pub mod reader;
pub mod writer;

pub use reader::{BlockFile, BlockFileReader, Column, ColumnIndex, TraceFilter};
pub use writer::{WindowContent, WindowSeries, encode};

/// The file's first four bytes, and its last four.
pub const MAGIC: &[u8; 4] = b"AMBW";
/// Version byte after the leading magic.
pub const VERSION: u8 = 1;
/// Fixed trailer: TOC offset (u64), TOC length (u32), TOC CRC-32C (u32), magic.
pub const TRAILER_LEN: usize = 20;

/// Section kinds. Numbers are never reused.
pub mod section {
    pub const META: u8 = 1;
    pub const SERIES: u8 = 2;
    pub const POSTINGS: u8 = 3;
    pub const SAMPLE_INDEX: u8 = 4;
    pub const SAMPLE_DATA: u8 = 5;
    pub const HISTOGRAM_INDEX: u8 = 6;
    pub const HISTOGRAM_DATA: u8 = 7;
    pub const EXEMPLAR_INDEX: u8 = 8;
    pub const EXEMPLAR_DATA: u8 = 9;
    pub const TRACE_FILTER: u8 = 10;
    pub const TRACE_TABLE: u8 = 11;
}

/// What the META section says about the window.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct WindowMeta {
    pub tenant: String,
    /// The window is `[start, end)` in milliseconds.
    pub start: i64,
    pub end: i64,
    /// Oldest and newest timestamp of any sample, histogram or exemplar in the file.
    pub min_ts: i64,
    pub max_ts: i64,
    pub series: u64,
    pub samples: u64,
    pub histograms: u64,
    pub exemplars: u64,
    pub traces: u64,
}

/// One row of the trace table: an exemplar of series `ordinal` at `ts` carries `trace_id`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TraceEntry {
    pub trace_id: String,
    pub ordinal: u32,
    pub ts: i64,
}

/// The key a trace id has in the filter.
pub fn trace_key(trace_id: &str) -> u64 {
    xxhash_rust::xxh64::xxh64(trace_id.as_bytes(), 0)
}

/// Why a block file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BlockFileError {
    #[error("block file {key}: {what}")]
    Corrupt { key: String, what: String },
    #[error(transparent)]
    Store(#[from] crate::objstore::ObjectStoreError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objstore::{Bucket, ObjectStorage, PutCondition};
    use crate::{Exemplar, HistogramSample, Label, Labels, Sample, block};
    use amber_histogram::{Histogram, Span};

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_unsorted(pairs.iter().map(|(n, v)| Label::new(*n, *v)).collect())
    }

    fn samples(from: i64, n: i64) -> Vec<Sample> {
        (0..n).map(|i| Sample { ts: from + i * 15_000, value: i as f64 * 0.5, start_ts: crate::NO_START }).collect()
    }

    fn exemplar(ts: i64, trace: &str) -> Exemplar {
        Exemplar { ts, value: 0.25, labels: labels(&[("trace_id", trace)]) }
    }

    fn content() -> WindowContent {
        let h = Histogram {
            schema: 0,
            count: 3.0,
            sum: 4.5,
            positive_spans: vec![Span { offset: 0, length: 2 }],
            positive_buckets: vec![1.0, 2.0],
            ..Default::default()
        };
        let hist = vec![HistogramSample { ts: 7_200_000, start_ts: crate::NO_START, h }];
        let ex_a =
            vec![exemplar(7_215_000, "4bf92f3577b34da6a3ce929d0e0e4736"), exemplar(7_230_000, "00f067aa0ba902b7")];
        let ex_b = vec![exemplar(7_245_000, "4bf92f3577b34da6a3ce929d0e0e4736")];
        let series = vec![
            WindowSeries {
                labels: labels(&[("__name__", "http_requests_total"), ("job", "api")]),
                samples: Some(block::encode_samples(&samples(7_200_000, 40))),
                histograms: None,
                exemplars: Some(block::encode_exemplars(&ex_a)),
            },
            WindowSeries {
                labels: labels(&[("__name__", "http_requests_total"), ("job", "web")]),
                samples: Some(block::encode_samples(&samples(7_203_000, 3))),
                histograms: None,
                exemplars: Some(block::encode_exemplars(&ex_b)),
            },
            WindowSeries {
                labels: labels(&[("__name__", "latency"), ("job", "api")]),
                samples: None,
                histograms: Some(block::encode_histograms(&hist)),
                exemplars: None,
            },
        ];
        let mut traces = vec![
            TraceEntry { trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(), ordinal: 0, ts: 7_215_000 },
            TraceEntry { trace_id: "00f067aa0ba902b7".into(), ordinal: 0, ts: 7_230_000 },
            TraceEntry { trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(), ordinal: 1, ts: 7_245_000 },
        ];
        traces.sort();
        WindowContent { tenant: "team-a".into(), start: 7_200_000, end: 14_400_000, series, traces }
    }

    async fn stored(bytes: Vec<u8>) -> (Bucket, u64) {
        let b = Bucket::in_memory();
        let n = bytes.len() as u64;
        b.put("team-a/w.block", bytes.into(), PutCondition::Create).await.unwrap();
        (b, n)
    }

    #[tokio::test]
    async fn round_trip_gives_back_every_series_column_and_trace() {
        let c = content();
        let (bytes, meta) = encode(&c).unwrap();
        assert_eq!(encode(&c).unwrap().0, bytes, "encoding is deterministic");
        assert_eq!(
            meta,
            WindowMeta {
                tenant: "team-a".into(),
                start: 7_200_000,
                end: 14_400_000,
                min_ts: 7_200_000,
                max_ts: 7_200_000 + 39 * 15_000,
                series: 3,
                samples: 43,
                histograms: 1,
                exemplars: 3,
                traces: 3,
            }
        );
        let (bucket, size) = stored(bytes).await;
        let r = BlockFileReader::open(&bucket, "team-a/w.block", size).await.unwrap();
        assert_eq!(r.meta().await.unwrap(), meta);
        let series = r.series().await.unwrap();
        assert_eq!(series, c.series.iter().map(|s| s.labels.clone()).collect::<Vec<_>>());
        assert_eq!(series.binary_search(&c.series[1].labels), Ok(1), "ordinals follow label order");
        assert_eq!(r.postings("job", "api").await.unwrap().iter().collect::<Vec<_>>(), [0, 2]);
        assert_eq!(r.postings("__name__", "latency").await.unwrap().iter().collect::<Vec<_>>(), [2]);
        assert!(r.postings("job", "db").await.unwrap().is_empty());
        assert_eq!(r.samples(0).await.unwrap(), samples(7_200_000, 40));
        assert_eq!(r.samples(1).await.unwrap(), samples(7_203_000, 3));
        assert_eq!(r.samples(2).await.unwrap(), []);
        assert_eq!(
            r.histograms(2).await.unwrap(),
            block::decode_histograms(c.series[2].histograms.as_ref().unwrap()).unwrap()
        );
        assert_eq!(r.histograms(0).await.unwrap(), []);
        assert_eq!(
            r.exemplars(0).await.unwrap(),
            [exemplar(7_215_000, "4bf92f3577b34da6a3ce929d0e0e4736"), exemplar(7_230_000, "00f067aa0ba902b7")]
        );
        assert_eq!(r.exemplars(1).await.unwrap(), [exemplar(7_245_000, "4bf92f3577b34da6a3ce929d0e0e4736")]);
        assert_eq!(
            r.trace("4bf92f3577b34da6a3ce929d0e0e4736").await.unwrap(),
            [
                TraceEntry { trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(), ordinal: 0, ts: 7_215_000 },
                TraceEntry { trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(), ordinal: 1, ts: 7_245_000 },
            ]
        );
        assert!(r.may_contain_trace("00f067aa0ba902b7").await.unwrap());
        for absent in ["0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", "not-a-trace"] {
            assert!(!r.may_contain_trace(absent).await.unwrap(), "{absent}");
            assert_eq!(r.trace(absent).await.unwrap(), []);
        }
    }

    #[tokio::test]
    async fn a_window_without_exemplars_has_no_filter_and_answers_no_trace() {
        let mut c = content();
        c.series.truncate(1);
        c.series[0].exemplars = None;
        c.traces.clear();
        let (bytes, meta) = encode(&c).unwrap();
        assert_eq!((meta.series, meta.samples, meta.exemplars, meta.traces), (1, 40, 0, 0));
        let (bucket, size) = stored(bytes).await;
        let r = BlockFileReader::open(&bucket, "team-a/w.block", size).await.unwrap();
        assert!(!r.may_contain_trace("4bf92f3577b34da6a3ce929d0e0e4736").await.unwrap());
        assert_eq!(r.exemplars(0).await.unwrap(), []);
        assert_eq!(r.samples(0).await.unwrap(), samples(7_200_000, 40));
    }

    #[tokio::test]
    async fn a_flipped_byte_is_reported_as_corruption() {
        let (bytes, _) = encode(&content()).unwrap();
        // Byte 10 lies in the META section, which starts right after the 5-byte header.
        let mut bad = bytes.clone();
        bad[10] ^= 0x40;
        let (bucket, size) = stored(bad).await;
        let r = BlockFileReader::open(&bucket, "team-a/w.block", size).await.unwrap();
        let err = r.meta().await.unwrap_err().to_string();
        assert_eq!(err, "block file team-a/w.block: section 1 checksum mismatch");

        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 6] ^= 0x01; // the TOC's checksum in the trailer
        let (bucket, size) = stored(bad).await;
        let err = BlockFileReader::open(&bucket, "team-a/w.block", size).await.err().unwrap().to_string();
        assert_eq!(err, "block file team-a/w.block: table of contents checksum mismatch");
    }
}
