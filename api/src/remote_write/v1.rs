//! Remote write 1.0's `prometheus.WriteRequest` turned into storage writes: labels sent in full
//! with every series, metadata per metric family in a list of its own.

use amber_storage::labels::{self, Label};
use amber_storage::{Exemplar, MetricMetadata, MetricType, NO_START, Sample, SeriesWrite};

use super::{Converted, SeriesStarts};
use crate::AppState;
use crate::prompb;

/// Remote write 1.0 requires Prometheus's classic metric and label names.
const NAMES: labels::NameRules = labels::NameRules::Legacy;

fn to_labels(labels: Vec<prompb::Label>) -> Vec<Label> {
    labels.into_iter().map(|l| Label { name: l.name, value: l.value }).collect()
}

/// Converts a request; `starts` are its series' start timestamps (empty, or one per series).
pub(super) fn convert(req: prompb::WriteRequest, starts: &[SeriesStarts], state: &AppState) -> Converted {
    let mut out = Converted { series: Vec::with_capacity(req.timeseries.len()), ..Converted::default() };
    let metrics = &state.metrics;
    let no_starts = SeriesStarts::default();
    for (i, ts) in req.timeseries.into_iter().enumerate() {
        let starts = starts.get(i).unwrap_or(&no_starts);
        let raw = to_labels(ts.labels);
        let series_labels = match labels::check_series(&raw, &state.limits.labels, NAMES) {
            Ok(()) => labels::validate_series(raw, &state.limits.labels, NAMES).expect("checked just above"),
            Err(e) => {
                let counts = [ts.samples.len() as u64, ts.histograms.len() as u64, ts.exemplars.len() as u64];
                let message = format!("series {}: {e}", labels::format_list(&raw));
                out.refuse_series(metrics, e.reason(), counts, message);
                continue;
            }
        };
        let histograms = out.histograms(metrics, &series_labels, &ts.histograms, &starts.histograms);
        let start_of = |i: usize| starts.samples.get(i).copied().unwrap_or(NO_START);
        let samples = ts
            .samples
            .iter()
            .enumerate()
            .map(|(i, s)| Sample { ts: s.timestamp, value: s.value, start_ts: start_of(i) })
            .collect();
        let mut exemplars = Vec::with_capacity(ts.exemplars.len());
        for e in ts.exemplars {
            match labels::validate_exemplar(to_labels(e.labels)) {
                Ok(l) => exemplars.push(Exemplar { ts: e.timestamp, value: e.value, labels: l }),
                Err(err) => {
                    metrics.rejected(amber_storage::DataKind::Exemplar, "invalid_exemplar_labels", 1);
                    out.exemplars_refused += 1;
                    out.errors.push(format!("exemplar at {} for series {series_labels}: {err}", e.timestamp));
                }
            }
        }
        out.series.push(SeriesWrite { labels: series_labels, samples, histograms, exemplars });
    }
    out.refuse_float_histogram_clashes(metrics);
    out.metadata = req
        .metadata
        .into_iter()
        .map(|m| MetricMetadata {
            metric_family: m.metric_family_name,
            metric_type: MetricType::from_i32(m.r#type),
            help: m.help,
            unit: m.unit,
        })
        .collect();
    out
}
