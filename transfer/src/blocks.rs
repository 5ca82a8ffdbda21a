//! `amber import tsdb`: the blocks of a Prometheus data directory or snapshot ([`crate::tsdb`]),
//! series by series. A block is the unit of the journal: recorded once Amber acknowledged all of
//! its series. The head (`wal/`, `chunks_head/`) is not read: a snapshot
//! (`POST /api/v1/admin/tsdb/snapshot` on Prometheus) writes it out as a block first.

use std::path::Path;

use amber_api::prompb;
use indicatif::ProgressBar;

use crate::sink::Sink;

/// What was read beside what was sent.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BlocksRead {
    pub blocks: u64,
    pub blocks_skipped: u64,
    /// Native histogram chunks, which this reader does not decode yet.
    pub chunks_skipped: u64,
}

pub fn import(dir: &Path, sink: &mut Sink, bar: &ProgressBar) -> anyhow::Result<BlocksRead> {
    let blocks = crate::tsdb::blocks_in(dir)?;
    if blocks.is_empty() {
        anyhow::bail!("{} holds no Prometheus blocks (directories with a meta.json)", dir.display());
    }
    bar.set_length(blocks.iter().map(|b| b.meta().num_series).sum());
    let mut read = BlocksRead::default();
    for block in &blocks {
        let meta = block.meta();
        let unit = format!("tsdb block {}", meta.ulid);
        if sink.is_done(&unit) {
            read.blocks_skipped += 1;
            bar.inc(meta.num_series);
            continue;
        }
        for series in block.series() {
            let series = series?;
            read.chunks_skipped += u64::from(series.skipped_chunks);
            sink.push(prompb::TimeSeries {
                labels: series.labels.into_iter().map(|(name, value)| prompb::Label { name, value }).collect(),
                samples: series
                    .samples
                    .into_iter()
                    .map(|(timestamp, value)| prompb::Sample { value, timestamp })
                    .collect(),
                ..Default::default()
            })?;
            bar.inc(1);
        }
        sink.end_unit(&unit)?;
        read.blocks += 1;
        bar.set_message(format!("{} samples written", sink.totals().samples_written));
    }
    Ok(read)
}
