//! Remote write 2.0's `io.prometheus.write.v2.Request` turned into storage writes: strings are
//! references into the request's `symbols` table, and each series carries its own metadata
//! (type, help, unit), exemplars and start timestamps.
//!
//! Start timestamps (`start_timestamp` of samples and histograms) are stored as sent, 0 meaning
//! none, as Prometheus's TSDB stores them: one after its sample's timestamp is not refused (the
//! spec leaves validity to the receiver, and Prometheus's receiver takes it), and PromQL ignores
//! it as Prometheus does.

use amber_storage::labels::{self, Label, Labels};
use amber_storage::{DataKind, Exemplar, MetricMetadata, MetricType, Sample, SeriesWrite};
use axum::http::StatusCode;

use super::{Converted, WriteError};
use crate::AppState;
use crate::prompb::writev2;

/// Remote write 2.0 allows any UTF-8 metric and label names.
const NAMES: labels::NameRules = labels::NameRules::Utf8;

/// Resolves symbol references, naming the bad one.
struct Symbols<'a>(&'a [String]);

impl<'a> Symbols<'a> {
    fn get(&self, field: &dyn std::fmt::Display, r: u32) -> Result<&'a str, String> {
        self.0.get(r as usize).map(String::as_str).ok_or_else(|| {
            format!(
                "{field} = {r} is not a symbol: the request has {} symbols (0 to {})",
                self.0.len(),
                self.0.len().saturating_sub(1)
            )
        })
    }

    /// Appends the labels cache's key of `refs` to `keys` and returns where it is: `None` when a
    /// reference is bad (the series is refused, and nothing is cached). The key is 0xff, then
    /// each name and value as sent, each followed by 0xff: UTF-8 holds no 0xff, so no two label
    /// lists have one key, and no remote write 1.0 key (label fields as sent, whose first byte
    /// is a field tag) is one of these (1.0 and 2.0 check names under different rules).
    fn cache_key(&self, refs: &[u32], keys: &mut Vec<u8>) -> Option<std::ops::Range<usize>> {
        if !refs.len().is_multiple_of(2) {
            return None;
        }
        let start = keys.len();
        keys.push(0xff);
        for &r in refs {
            let Some(s) = self.0.get(r as usize) else {
                keys.truncate(start);
                return None;
            };
            keys.extend_from_slice(s.as_bytes());
            keys.push(0xff);
        }
        Some(start..keys.len())
    }

    /// `labels_refs` (name/value pairs) as labels, in the order sent.
    fn labels(&self, field: &str, refs: &[u32]) -> Result<Vec<Label>, String> {
        if !refs.len().is_multiple_of(2) {
            return Err(format!("{field} has odd length {}: it must hold name/value reference pairs", refs.len()));
        }
        let mut out = Vec::with_capacity(refs.len() / 2);
        for (i, pair) in refs.chunks_exact(2).enumerate() {
            let name = self.get(&format_args!("{field}[{}]", 2 * i), pair[0])?;
            let value = self.get(&format_args!("{field}[{}]", 2 * i + 1), pair[1])?;
            out.push(Label { name: name.to_string(), value: value.to_string() });
        }
        Ok(out)
    }
}

/// A series' labels from its references, checked; else the reason (for `/metrics`) and the message.
fn validate(symbols: &Symbols<'_>, refs: &[u32], state: &AppState) -> Result<Labels, (&'static str, String)> {
    let mut raw = symbols.labels("labels_refs", refs).map_err(|e| ("invalid_symbol_reference", e))?;
    // Senders need not sort (the compliance suite's do not); a stable sort keeps duplicate
    // names adjacent for the check to name.
    raw.sort_by(|a, b| a.name.cmp(&b.name));
    match labels::check_series(&raw, &state.limits.labels, NAMES) {
        Ok(()) => Ok(labels::validate_series(raw, &state.limits.labels, NAMES).expect("checked just above")),
        Err(e) => Err((e.reason(), format!("series {}: {e}", labels::format_list(&raw)))),
    }
}

/// A series' metadata as a metric family's: histogram and summary series (`_bucket`, `_count`,
/// `_sum`) belong to their family's name. `None` when the sender said nothing.
fn metadata(symbols: &Symbols<'_>, m: &writev2::Metadata, metric_name: &str) -> Result<Option<MetricMetadata>, String> {
    let help = symbols.get(&"metadata.help_ref", m.help_ref)?;
    let unit = symbols.get(&"metadata.unit_ref", m.unit_ref)?;
    let metric_type = MetricType::from_i32(m.r#type);
    if metric_type == MetricType::Unknown && help.is_empty() && unit.is_empty() {
        return Ok(None);
    }
    let family = match metric_type {
        MetricType::Histogram | MetricType::GaugeHistogram | MetricType::Summary => {
            crate::diagnostics::family(metric_name)
        }
        _ => metric_name,
    };
    Ok(Some(MetricMetadata {
        metric_family: family.to_string(),
        metric_type,
        help: help.to_string(),
        unit: unit.to_string(),
    }))
}

/// Converts a request; a symbols table not starting with `""` refuses it whole (every reference
/// would be suspect), any other problem refuses only the series, sample or exemplar it is in.
pub(super) fn convert(req: writev2::Request, state: &AppState) -> Result<Converted, WriteError> {
    if !req.timeseries.is_empty() {
        match req.symbols.first() {
            Some(s) if s.is_empty() => {}
            Some(s) => {
                return Err(WriteError::new(
                    StatusCode::BAD_REQUEST,
                    format!("symbols[0] is {s:?}: the symbols table must start with the empty string"),
                ));
            }
            None => {
                return Err(WriteError::new(
                    StatusCode::BAD_REQUEST,
                    "the symbols table is empty: it must start with the empty string",
                ));
            }
        }
    }
    let symbols = Symbols(&req.symbols);
    let metrics = &state.metrics;
    let mut out = Converted { series: Vec::with_capacity(req.timeseries.len()), ..Converted::default() };
    let mut metadata = std::collections::BTreeSet::new();
    // Labels a sender sent before are labels checked before: looked up by their strings, as
    // the references resolve them, in one buffer for the whole request.
    let mut keys = Vec::new();
    let ranges: Vec<Option<std::ops::Range<usize>>> =
        req.timeseries.iter().map(|ts| symbols.cache_key(&ts.labels_refs, &mut keys)).collect();
    let cached = state.labels_cache.get_all(ranges.iter().map(|r| r.clone().map(|r| &keys[r])));
    let mut validated = Vec::new();
    for ((index, ts), cached) in req.timeseries.iter().enumerate().zip(cached) {
        let counts = [ts.samples.len() as u64, ts.histograms.len() as u64, ts.exemplars.len() as u64];
        let series_labels = match cached {
            Some(labels) => labels,
            None => match validate(&symbols, &ts.labels_refs, state) {
                Ok(labels) => {
                    if let Some(range) = ranges[index].clone() {
                        validated.push((&keys[range], labels.clone()));
                    }
                    labels
                }
                Err((reason, message)) => {
                    out.refuse_series(metrics, reason, counts, format!("timeseries[{index}]: {message}"));
                    continue;
                }
            },
        };
        if let Some(m) = &ts.metadata {
            let name = series_labels.metric_name().expect("validated series have a metric name");
            match self::metadata(&symbols, m, name) {
                Ok(Some(m)) => {
                    metadata.insert(m);
                }
                Ok(None) => {}
                Err(e) => {
                    out.refuse_series(
                        metrics,
                        "invalid_symbol_reference",
                        counts,
                        format!("timeseries[{index}]: series {series_labels}: {e}"),
                    );
                    continue;
                }
            }
        }
        let starts: Vec<i64> = ts.histograms.iter().map(|h| h.start_timestamp).collect();
        let histograms = out.histograms(metrics, &series_labels, &ts.histograms, &starts);
        let samples: Vec<Sample> = ts
            .samples
            .iter()
            .map(|s| Sample { ts: s.timestamp, value: s.value, start_ts: s.start_timestamp })
            .collect();
        let mut exemplars = Vec::with_capacity(ts.exemplars.len());
        for (n, e) in ts.exemplars.iter().enumerate() {
            let checked = symbols
                .labels(&format!("exemplars[{n}].labels_refs"), &e.labels_refs)
                .and_then(|l| labels::validate_exemplar(l).map_err(|err| err.to_string()));
            match checked {
                Ok(l) => exemplars.push(Exemplar { ts: e.timestamp, value: e.value, labels: l }),
                Err(err) => {
                    metrics.rejected(DataKind::Exemplar, "invalid_exemplar_labels", 1);
                    out.exemplars_refused += 1;
                    out.errors.push(format!(
                        "timeseries[{index}]: exemplar at {} for series {series_labels}: {err}",
                        e.timestamp
                    ));
                }
            }
        }
        // A series with metadata only creates nothing.
        if samples.is_empty() && histograms.is_empty() && exemplars.is_empty() {
            continue;
        }
        out.series.push(SeriesWrite { labels: series_labels, samples, histograms, exemplars });
    }
    state.labels_cache.insert_all(validated);
    out.refuse_float_histogram_clashes(metrics);
    out.metadata = metadata.into_iter().collect();
    Ok(out)
}
