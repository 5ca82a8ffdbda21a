//! Reading block files whole and merging them into one window's content.

use std::collections::{BTreeMap, BTreeSet};

use crate::blockfile::reader::TAIL_BYTES;
use crate::blockfile::{BlockFile, BlockFileError, Column, TraceEntry, WindowContent, WindowSeries};
use crate::objstore::ObjectStorage;
use crate::source::merge_by_ts;
use crate::upload::index::IndexedWindow;
use crate::{Exemplar, HistogramSample, Labels, Sample, block};

/// One series' data, merged from several files.
#[derive(Default)]
struct MergedSeries {
    samples: Vec<Sample>,
    histograms: Vec<HistogramSample>,
    exemplars: Vec<Exemplar>,
}

/// The merged content of `windows` (in index order) as one window `[start, end)` of `tenant`.
/// Series are merged by label set; samples, histograms and exemplars by timestamp, one per
/// timestamp, the first window's kept (as a reader of the overlapping windows answers). Trace
/// rows are kept for the exemplars that stay.
pub async fn merged_content(
    store: &dyn ObjectStorage,
    tenant: &str,
    start: i64,
    end: i64,
    windows: &[IndexedWindow],
) -> Result<WindowContent, MergeError> {
    let mut by_labels: BTreeMap<Labels, MergedSeries> = BTreeMap::new();
    let mut traces: BTreeSet<(String, Labels, i64)> = BTreeSet::new();
    for w in windows {
        let file = BlockFile::open(store, &w.object, w.bytes, TAIL_BYTES).await?;
        let series = file.series(store).await?;
        let samples = column(store, &file, Column::Samples, series.len(), block::decode_samples).await?;
        let histograms = column(store, &file, Column::Histograms, series.len(), block::decode_histograms).await?;
        let exemplars = column(store, &file, Column::Exemplars, series.len(), block::decode_exemplars).await?;
        for entry in file.trace_entries(store).await? {
            let labels = series.get(entry.ordinal as usize).ok_or_else(|| BlockFileError::Corrupt {
                key: w.object.clone(),
                what: "trace table names a series it does not hold".into(),
            })?;
            traces.insert((entry.trace_id, labels.clone(), entry.ts));
        }
        for (((labels, s), h), e) in series.into_iter().zip(samples).zip(histograms).zip(exemplars) {
            let into = by_labels.entry(labels).or_default();
            merge_by_ts(&mut into.samples, s, |x| x.ts);
            merge_by_ts(&mut into.histograms, h, |x| x.ts);
            merge_by_ts(&mut into.exemplars, e, |x| x.ts);
        }
    }
    by_labels.retain(|_, s| !(s.samples.is_empty() && s.histograms.is_empty() && s.exemplars.is_empty()));
    let ordinals: BTreeMap<&Labels, u32> = by_labels.keys().enumerate().map(|(i, l)| (l, i as u32)).collect();
    let mut rows: Vec<TraceEntry> = traces
        .iter()
        .filter_map(|(trace_id, labels, ts)| {
            let ordinal = *ordinals.get(labels)?;
            let kept = by_labels[labels].exemplars.binary_search_by_key(ts, |e| e.ts).is_ok();
            kept.then(|| TraceEntry { trace_id: trace_id.clone(), ordinal, ts: *ts })
        })
        .collect();
    rows.sort();
    let series = by_labels
        .into_iter()
        .map(|(labels, s)| WindowSeries {
            labels,
            samples: (!s.samples.is_empty()).then(|| block::encode_samples(&s.samples)),
            histograms: (!s.histograms.is_empty()).then(|| block::encode_histograms(&s.histograms)),
            exemplars: (!s.exemplars.is_empty()).then(|| block::encode_exemplars(&s.exemplars)),
        })
        .collect();
    Ok(WindowContent { tenant: tenant.to_string(), start, end, series, traces: rows })
}

/// Every series' decoded block of one column, by ordinal (empty for a series without one).
async fn column<T>(
    store: &dyn ObjectStorage,
    file: &BlockFile,
    column: Column,
    series: usize,
    decode: fn(&[u8]) -> Result<Vec<T>, block::BlockError>,
) -> Result<Vec<Vec<T>>, MergeError> {
    let index = file.column_index(store, column).await?;
    let with_block: Vec<u32> = (0..series as u32).filter(|&o| index.contains(o)).collect();
    let blocks = file.column_blocks(store, &index, &with_block).await?;
    let mut out: Vec<Vec<T>> = (0..series).map(|_| Vec::new()).collect();
    for (o, b) in with_block.into_iter().zip(blocks) {
        if let Some(b) = b {
            out[o as usize] = decode(&b).map_err(|e| MergeError::Block { key: file.key().to_string(), error: e })?;
        }
    }
    Ok(out)
}

/// Why windows could not be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error(transparent)]
    File(#[from] BlockFileError),
    #[error("block file {key}: {error}")]
    Block { key: String, error: block::BlockError },
}
