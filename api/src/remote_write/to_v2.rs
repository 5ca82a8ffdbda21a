//! The remote write 2.0 request a 2.0 sender sends for the data of a 1.0 request: every string
//! interned once in `symbols` (`""` first, then in order of first use), each series' metadata
//! beside it rather than in a list of metric families.
//!
//! The benchmark and the tests use [`to_v2`] to send one workload as both versions, so that any
//! difference in what is stored or how fast is the version's alone. A distributor forwards
//! validated writes to ingesters with [`series_to_v2`]: 2.0 is the version that carries start
//! timestamps.

use std::collections::HashMap;

use amber_storage::{MetricMetadata, SeriesWrite};
use rustc_hash::FxHashMap;

use crate::prompb::{self, writev2};

/// A symbols table under construction, borrowing the strings it interns until the request is
/// built: a distributor builds one per ingester per write, and hashing and copying each label
/// twice was a fifth of its work.
struct Symbols<'a> {
    table: Vec<&'a str>,
    refs: FxHashMap<&'a str, u32>,
}

impl<'a> Symbols<'a> {
    fn new() -> Symbols<'a> {
        Symbols { table: vec![""], refs: FxHashMap::from_iter([("", 0)]) }
    }

    fn intern(&mut self, s: &'a str) -> u32 {
        let next = self.table.len() as u32;
        let r = *self.refs.entry(s).or_insert(next);
        if r == next {
            self.table.push(s);
        }
        r
    }

    fn labels(&mut self, labels: &'a [prompb::Label]) -> Vec<u32> {
        labels.iter().flat_map(|l| [self.intern(&l.name), self.intern(&l.value)]).collect()
    }

    /// The table as the request holds it.
    fn into_table(self) -> Vec<String> {
        self.table.into_iter().map(str::to_string).collect()
    }
}

/// 1.0's `Histogram` as 2.0's: the same fields (numbers 1 to 16), no start timestamp.
fn histogram(h: &prompb::Histogram) -> writev2::Histogram {
    use prompb::histogram::{Count as C1, ZeroCount as Z1};
    use writev2::histogram::{Count as C2, ZeroCount as Z2};
    let spans = |s: &[prompb::BucketSpan]| {
        s.iter().map(|s| writev2::BucketSpan { offset: s.offset, length: s.length }).collect()
    };
    writev2::Histogram {
        count: h.count.map(|c| match c {
            C1::CountInt(n) => C2::CountInt(n),
            C1::CountFloat(v) => C2::CountFloat(v),
        }),
        sum: h.sum,
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        zero_count: h.zero_count.map(|c| match c {
            Z1::ZeroCountInt(n) => Z2::ZeroCountInt(n),
            Z1::ZeroCountFloat(v) => Z2::ZeroCountFloat(v),
        }),
        negative_spans: spans(&h.negative_spans),
        negative_deltas: h.negative_deltas.clone(),
        negative_counts: h.negative_counts.clone(),
        positive_spans: spans(&h.positive_spans),
        positive_deltas: h.positive_deltas.clone(),
        positive_counts: h.positive_counts.clone(),
        reset_hint: h.reset_hint,
        timestamp: h.timestamp,
        custom_values: h.custom_values.clone(),
        start_timestamp: 0,
    }
}

/// The 2.0 request for `req`'s series, samples, histograms and exemplars. 1.0's metadata, one
/// entry per metric family, goes on every series of that family (`_bucket`, `_count` and `_sum`
/// series belong to their histogram's or summary's family, as Amber reads them back).
pub fn to_v2(req: &prompb::WriteRequest) -> writev2::Request {
    let mut symbols = Symbols::new();
    let metadata: HashMap<&str, &prompb::MetricMetadata> =
        req.metadata.iter().map(|m| (m.metric_family_name.as_str(), m)).collect();
    let timeseries = req
        .timeseries
        .iter()
        .map(|ts| {
            let labels_refs = symbols.labels(&ts.labels);
            let name = ts.labels.iter().find(|l| l.name == "__name__").map_or("", |l| l.value.as_str());
            let metadata = metadata.get(crate::diagnostics::family(name)).map(|m| writev2::Metadata {
                r#type: m.r#type,
                help_ref: symbols.intern(&m.help),
                unit_ref: symbols.intern(&m.unit),
            });
            writev2::TimeSeries {
                labels_refs,
                samples: ts
                    .samples
                    .iter()
                    .map(|s| writev2::Sample { value: s.value, timestamp: s.timestamp, start_timestamp: 0 })
                    .collect(),
                histograms: ts.histograms.iter().map(histogram).collect(),
                exemplars: ts
                    .exemplars
                    .iter()
                    .map(|e| writev2::Exemplar {
                        labels_refs: symbols.labels(&e.labels),
                        value: e.value,
                        timestamp: e.timestamp,
                    })
                    .collect(),
                metadata,
            }
        })
        .collect();
    writev2::Request { symbols: symbols.into_table(), timeseries }
}

/// The 2.0 request holding `series` and `metadata` as a receiver stores them, start timestamps
/// included. Each metadata entry goes on a series of its family's name with no samples, which
/// stores the metadata and creates no series: on a data series the receiver would name the
/// family after that series (`foo_total` for a counter `foo`), not as it was sent.
pub(crate) fn series_to_v2<'a>(
    series: impl IntoIterator<Item = &'a SeriesWrite>,
    metadata: &'a [MetricMetadata],
) -> writev2::Request {
    let mut symbols = Symbols::new();
    let intern_labels = |symbols: &mut Symbols<'a>, labels: &'a amber_storage::Labels| -> Vec<u32> {
        labels.iter().flat_map(|l| [symbols.intern(&l.name), symbols.intern(&l.value)]).collect()
    };
    let mut timeseries: Vec<writev2::TimeSeries> = series
        .into_iter()
        .map(|s| writev2::TimeSeries {
            labels_refs: intern_labels(&mut symbols, &s.labels),
            samples: s
                .samples
                .iter()
                .map(|x| writev2::Sample { value: x.value, timestamp: x.ts, start_timestamp: x.start_ts })
                .collect(),
            histograms: s
                .histograms
                .iter()
                .map(|h| writev2::Histogram {
                    start_timestamp: h.start_ts,
                    ..histogram(&crate::remote_read::wire_histogram(h))
                })
                .collect(),
            exemplars: s
                .exemplars
                .iter()
                .map(|e| writev2::Exemplar {
                    labels_refs: intern_labels(&mut symbols, &e.labels),
                    value: e.value,
                    timestamp: e.ts,
                })
                .collect(),
            metadata: None,
        })
        .collect();
    for m in metadata {
        timeseries.push(writev2::TimeSeries {
            labels_refs: vec![symbols.intern("__name__"), symbols.intern(&m.metric_family)],
            metadata: Some(writev2::Metadata {
                r#type: m.metric_type as i32,
                help_ref: symbols.intern(&m.help),
                unit_ref: symbols.intern(&m.unit),
            }),
            ..Default::default()
        });
    }
    writev2::Request { symbols: symbols.into_table(), timeseries }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(name: &str, value: &str) -> prompb::Label {
        prompb::Label { name: name.into(), value: value.into() }
    }

    /// Strings are interned once, in order of first use after `""`; the family's metadata goes on
    /// its `_bucket` series and on no other family's; histograms keep every field.
    #[test]
    fn one_request_as_both_versions() {
        let h = prompb::Histogram {
            count: Some(prompb::histogram::Count::CountFloat(2.5)),
            sum: 3.0,
            schema: -53,
            zero_count: Some(prompb::histogram::ZeroCount::ZeroCountFloat(0.0)),
            positive_spans: vec![prompb::BucketSpan { offset: 0, length: 2 }],
            positive_counts: vec![0.5, 2.0],
            custom_values: vec![1.0, 5.0],
            reset_hint: 3,
            timestamp: 7,
            ..Default::default()
        };
        let req = prompb::WriteRequest {
            timeseries: vec![
                prompb::TimeSeries {
                    labels: vec![label("__name__", "lat_bucket"), label("job", "api"), label("le", "1")],
                    samples: vec![prompb::Sample { value: 4.0, timestamp: 5 }],
                    exemplars: vec![prompb::Exemplar {
                        labels: vec![label("trace_id", "api")],
                        value: 0.5,
                        timestamp: 4,
                    }],
                    histograms: Vec::new(),
                },
                prompb::TimeSeries {
                    labels: vec![label("__name__", "size"), label("job", "api")],
                    samples: Vec::new(),
                    exemplars: Vec::new(),
                    histograms: vec![h.clone()],
                },
            ],
            metadata: vec![prompb::MetricMetadata {
                r#type: prompb::metric_metadata::MetricType::Histogram as i32,
                metric_family_name: "lat".into(),
                help: "Latency".into(),
                unit: "seconds".into(),
            }],
        };
        let v2 = to_v2(&req);
        assert_eq!(
            v2.symbols,
            ["", "__name__", "lat_bucket", "job", "api", "le", "1", "Latency", "seconds", "trace_id", "size"]
        );
        let [bucket, size] = &v2.timeseries[..] else { panic!("two series") };
        assert_eq!(bucket.labels_refs, [1, 2, 3, 4, 5, 6]);
        assert_eq!(bucket.metadata, Some(writev2::Metadata { r#type: 3, help_ref: 7, unit_ref: 8 }));
        assert_eq!(bucket.samples, [writev2::Sample { value: 4.0, timestamp: 5, start_timestamp: 0 }]);
        assert_eq!(bucket.exemplars, [writev2::Exemplar { labels_refs: vec![9, 4], value: 0.5, timestamp: 4 }]);
        assert_eq!((size.labels_refs.as_slice(), &size.metadata), ([1, 10, 3, 4].as_slice(), &None));
        // Field for field the same message: 1.0's bytes decode as 2.0's histogram.
        use prost::Message;
        assert_eq!(size.histograms, [writev2::Histogram::decode(h.encode_to_vec().as_slice()).unwrap()]);
    }
}
