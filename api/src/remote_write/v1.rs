//! Remote write 1.0's `prometheus.WriteRequest`, read in place ([`super::wire`]), turned into
//! storage writes: labels sent in full with every series (checked once per label bytes, through
//! the labels cache the decoder looked them up in), metadata per metric family in a list of its
//! own.

use amber_storage::labels::{self, Label, LabelError, Labels};
use amber_storage::{Exemplar, MetricMetadata, MetricType, NO_START, Sample, SeriesWrite};

use super::wire::{LabelRef, Series, WriteRequest};
use super::{Converted, SeriesStarts};
use crate::AppState;

/// Remote write 1.0 requires Prometheus's classic metric and label names.
const NAMES: labels::NameRules = labels::NameRules::Legacy;

fn to_labels(labels: &[LabelRef<'_>]) -> Vec<Label> {
    labels.iter().map(|l| Label::new(l.name, l.value)).collect()
}

/// The series' labels, checked (those not found in the labels cache).
fn validate(series: &Series<'_, '_>, state: &AppState) -> Result<Labels, (LabelError, Vec<Label>)> {
    let owned = to_labels(series.labels());
    match labels::check_series(&owned, &state.limits.labels, NAMES) {
        Ok(()) => Ok(labels::validate_series(owned, &state.limits.labels, NAMES).expect("checked just above")),
        Err(e) => Err((e, owned)),
    }
}

/// Converts a request; `starts` are its series' start timestamps (empty, or one per series).
pub(super) fn convert(req: &WriteRequest<'_>, starts: &[SeriesStarts], state: &AppState) -> Converted {
    let mut out = Converted { series: Vec::with_capacity(req.series().len()), ..Converted::default() };
    let metrics = &state.metrics;
    let no_starts = SeriesStarts::default();
    let mut validated = Vec::new();
    for (i, ts) in req.series().enumerate() {
        let starts = starts.get(i).unwrap_or(&no_starts);
        // Label bytes a sender sent before are labels checked before: the decoder looked them up.
        let checked = match ts.cached_labels() {
            Some(labels) => Ok(labels.clone()),
            None => {
                let checked = validate(&ts, state);
                if let (Ok(labels), Some(raw)) = (&checked, ts.raw_labels()) {
                    validated.push((raw, labels.clone()));
                }
                checked
            }
        };
        let series_labels = match checked {
            Ok(labels) => labels,
            Err((e, raw)) => {
                let counts = [ts.samples().len() as u64, ts.histograms().len() as u64, ts.exemplars().count() as u64];
                let message = format!("series {}: {e}", labels::format_list(&raw));
                out.refuse_series(metrics, e.reason(), counts, message);
                continue;
            }
        };
        let histograms = out.histograms(metrics, &series_labels, ts.histograms(), &starts.histograms);
        let start_of = |i: usize| starts.samples.get(i).copied().unwrap_or(NO_START);
        let samples = ts
            .samples()
            .iter()
            .enumerate()
            .map(|(i, s)| Sample { ts: s.timestamp, value: s.value, start_ts: start_of(i) })
            .collect();
        let mut exemplars = Vec::new();
        for (labels, e) in ts.exemplars() {
            match labels::validate_exemplar(to_labels(labels)) {
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
    state.labels_cache.insert_all(validated);
    out.refuse_float_histogram_clashes(metrics);
    out.metadata = req
        .metadata
        .iter()
        .map(|m| MetricMetadata {
            metric_family: m.metric_family_name.clone(),
            metric_type: MetricType::from_i32(m.r#type),
            help: m.help.clone(),
            unit: m.unit.clone(),
        })
        .collect();
    out
}
