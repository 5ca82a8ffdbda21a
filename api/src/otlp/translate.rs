//! OTLP metrics to Prometheus series, as Prometheus's own OTLP receiver translates them
//! (`UnderscoreEscapingWithSuffixes`): names get unit and `_total` suffixes, attributes become
//! labels, `service.name`/`service.namespace`/`service.instance.id` become `job` and `instance`,
//! the other resource attributes go to a `target_info` series, histograms with explicit buckets
//! become classic `_bucket`/`_sum`/`_count` series (or, with `convert_histograms_to_nhcb`, native
//! histograms with custom buckets), exponential histograms become native histograms
//! (`native_histograms`), and exemplars keep their trace and span ids as lower-case hex
//! `trace_id`/`span_id` labels. A native histogram's exemplars belong to its own series.

use std::collections::BTreeMap;

use super::native_histograms;
use super::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use super::proto::common::v1::{AnyValue, KeyValue, any_value};
use super::proto::metrics::v1::{self as otlp, AggregationTemporality, metric::Data};
use crate::prompb;
use crate::remote_write::SeriesStarts;

/// `DataPointFlags.FLAG_NO_RECORDED_VALUE`: the point marks the end of a series.
pub(super) const NO_RECORDED_VALUE: u32 = 1;
pub(super) const STALE_NAN: u64 = amber_histogram::STALE_NAN_BITS;

/// A translated request and the points that could not be translated, each with its reason.
/// Remote write 1.0 has no field for the points' start times (`start_time_unix_nano`), so they
/// come beside it: `starts[i]` belongs to `request.timeseries[i]`.
pub struct Translated {
    pub request: prompb::WriteRequest,
    pub starts: Vec<SeriesStarts>,
    pub refused: Vec<String>,
}

/// Settings of the translation.
#[derive(Debug, Clone, Default)]
pub struct Translation {
    /// Resource attributes also added as labels to every series of the resource.
    pub promote_resource_attributes: Vec<String>,
    /// Histograms with explicit buckets become native histograms with custom buckets (schema
    /// −53) instead of classic series: Prometheus's `convert_histograms_to_nhcb`.
    pub convert_histograms_to_nhcb: bool,
}

fn unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        _ => return None,
    })
}

fn per_unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

/// The words of `s` between characters that are not ASCII letters or digits.
fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_string).collect()
}

/// A unit's own words: `ms` → `milliseconds`, `m/s` → `meters_per_second`; annotations in braces
/// (`{request}`) are dropped, unknown units are kept as written.
fn unit_words(unit: &str, gauge: bool) -> Vec<String> {
    let unit: String = {
        let mut out = String::new();
        let mut depth = 0;
        for c in unit.chars() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ if depth == 0 => out.push(c),
                _ => {}
            }
        }
        out
    };
    let unit = unit.trim();
    if unit == "1" {
        return if gauge { vec!["ratio".into()] } else { Vec::new() };
    }
    let (main, per) = match unit.split_once('/') {
        Some((m, p)) => (m.trim(), Some(p.trim())),
        None => (unit, None),
    };
    let mut out = match unit_word(main) {
        Some(w) => vec![w.to_string()],
        None => words(main),
    };
    if let Some(per) = per.filter(|p| !p.is_empty()) {
        out.push("per".into());
        match per_unit_word(per) {
            Some(w) => out.push(w.into()),
            None => out.extend(words(per)),
        }
    }
    out
}

/// The Prometheus name of an OTLP metric: words of the name, then the unit's words and `total`
/// for counters unless already there.
pub fn metric_name(name: &str, unit: &str, counter: bool, gauge: bool) -> String {
    let mut parts = words(name);
    if counter {
        parts.retain(|w| w != "total");
    }
    let unit = unit_words(unit, gauge);
    if !unit.is_empty() && !parts.ends_with(&unit) {
        parts.extend(unit);
    }
    if counter {
        parts.push("total".into());
    }
    let joined = parts.join("_");
    if joined.starts_with(|c: char| c.is_ascii_digit()) { format!("_{joined}") } else { joined }
}

/// A Prometheus label name for an attribute key: invalid characters become `_`, and a leading
/// digit or single underscore gets a `key` prefix.
pub fn label_name(key: &str) -> String {
    let clean: String = key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if clean.starts_with(|c: char| c.is_ascii_digit()) {
        format!("key_{clean}")
    } else if clean.starts_with('_') && !clean.starts_with("__") {
        format!("key{clean}")
    } else {
        clean
    }
}

/// An attribute value as label text (arrays and maps as JSON, bytes as hex).
fn value_text(v: &Option<AnyValue>) -> String {
    let Some(AnyValue { value: Some(v) }) = v else { return String::new() };
    match v {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::DoubleValue(d) => crate::response::format_value(*d),
        any_value::Value::BytesValue(b) => hex(b),
        // An index into a profiles string table; metrics have none.
        any_value::Value::StringValueStrindex(_) => String::new(),
        any_value::Value::ArrayValue(a) => {
            let items: Vec<serde_json::Value> =
                a.values.iter().map(|x| serde_json::Value::String(value_text(&Some(x.clone())))).collect();
            serde_json::Value::Array(items).to_string()
        }
        any_value::Value::KvlistValue(kv) => {
            let map: serde_json::Map<String, serde_json::Value> =
                kv.values.iter().map(|x| (x.key.clone(), serde_json::Value::String(value_text(&x.value)))).collect();
            serde_json::Value::Object(map).to_string()
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Labels from attributes; keys that become the same label name join their values with `;` in
/// key order, as Prometheus does.
fn attribute_labels(attrs: &[KeyValue], into: &mut BTreeMap<String, String>) {
    let mut by_key: Vec<&KeyValue> = attrs.iter().collect();
    by_key.sort_by(|a, b| a.key.cmp(&b.key));
    for kv in by_key {
        let text = value_text(&kv.value);
        if text.is_empty() {
            continue;
        }
        into.entry(label_name(&kv.key)).and_modify(|v| *v = format!("{v};{text}")).or_insert(text);
    }
}

fn attribute(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs.iter().find(|kv| kv.key == key).map(|kv| value_text(&kv.value)).filter(|v| !v.is_empty())
}

pub(super) fn ms(nanos: u64) -> i64 {
    (nanos / 1_000_000) as i64
}

fn value_of(v: &Option<otlp::number_data_point::Value>) -> f64 {
    match v {
        Some(otlp::number_data_point::Value::AsDouble(d)) => *d,
        Some(otlp::number_data_point::Value::AsInt(i)) => *i as f64,
        None => 0.0,
    }
}

/// An OTLP exemplar as a remote-write one.
fn exemplar(e: &otlp::Exemplar) -> prompb::Exemplar {
    let mut labels = BTreeMap::new();
    attribute_labels(&e.filtered_attributes, &mut labels);
    if !e.trace_id.is_empty() {
        labels.insert("trace_id".into(), hex(&e.trace_id));
    }
    if !e.span_id.is_empty() {
        labels.insert("span_id".into(), hex(&e.span_id));
    }
    let value = match e.value {
        Some(otlp::exemplar::Value::AsDouble(d)) => d,
        Some(otlp::exemplar::Value::AsInt(i)) => i as f64,
        None => 0.0,
    };
    prompb::Exemplar { labels: to_prompb(&labels), value, timestamp: ms(e.time_unix_nano) }
}

fn to_prompb(labels: &BTreeMap<String, String>) -> Vec<prompb::Label> {
    labels.iter().map(|(n, v)| prompb::Label { name: n.clone(), value: v.clone() }).collect()
}

/// Collects series by label set, so that points of one series arrive as one time series, with
/// each sample's and histogram's start timestamp (0 for none) beside it.
#[derive(Default)]
struct Series {
    by_labels: BTreeMap<Vec<(String, String)>, (prompb::TimeSeries, SeriesStarts)>,
}

impl Series {
    fn series(&mut self, labels: BTreeMap<String, String>) -> &mut (prompb::TimeSeries, SeriesStarts) {
        let key: Vec<(String, String)> = labels.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
        self.by_labels.entry(key).or_insert_with(|| {
            (prompb::TimeSeries { labels: to_prompb(&labels), ..Default::default() }, SeriesStarts::default())
        })
    }

    fn add(&mut self, labels: BTreeMap<String, String>, point: Point, value: f64, exemplars: Vec<prompb::Exemplar>) {
        let (series, starts) = self.series(labels);
        series.samples.push(prompb::Sample { value, timestamp: point.ts });
        starts.samples.push(point.start_ts);
        series.exemplars.extend(exemplars);
    }

    fn add_histogram(
        &mut self,
        labels: BTreeMap<String, String>,
        h: prompb::Histogram,
        start_ts: i64,
        exemplars: Vec<prompb::Exemplar>,
    ) {
        let (series, starts) = self.series(labels);
        series.histograms.push(h);
        starts.histograms.push(start_ts);
        series.exemplars.extend(exemplars);
    }

    /// The time series, each sorted by time, and their start timestamps (none for a series
    /// whose points have no start time).
    fn finish(self) -> (Vec<prompb::TimeSeries>, Vec<SeriesStarts>) {
        self.by_labels
            .into_values()
            .map(|(mut ts, starts)| {
                let (samples, sample_starts) =
                    sorted_with_starts(std::mem::take(&mut ts.samples), starts.samples, |s| s.timestamp);
                let (histograms, histogram_starts) =
                    sorted_with_starts(std::mem::take(&mut ts.histograms), starts.histograms, |h| h.timestamp);
                (ts.samples, ts.histograms) = (samples, histograms);
                ts.exemplars.sort_by_key(|e| e.timestamp);
                (ts, SeriesStarts { samples: sample_starts, histograms: histogram_starts })
            })
            .unzip()
    }
}

/// `items` sorted by time with their start timestamps beside them; the start timestamps are
/// dropped when all are 0.
fn sorted_with_starts<T>(items: Vec<T>, starts: Vec<i64>, ts: impl Fn(&T) -> i64) -> (Vec<T>, Vec<i64>) {
    let mut paired: Vec<(T, i64)> = items.into_iter().zip(starts).collect();
    paired.sort_by_key(|(item, _)| ts(item));
    let (items, starts): (Vec<T>, Vec<i64>) = paired.into_iter().unzip();
    let any = starts.iter().any(|&st| st != 0);
    (items, if any { starts } else { Vec::new() })
}

/// A data point's time and start time in milliseconds (0 when the point has no start time).
#[derive(Clone, Copy)]
struct Point {
    ts: i64,
    start_ts: i64,
}

impl Point {
    fn of(time_unix_nano: u64, start_time_unix_nano: u64) -> Point {
        Point { ts: ms(time_unix_nano), start_ts: ms(start_time_unix_nano) }
    }
}

fn with(base: &BTreeMap<String, String>, name: &str, extra: &[(&str, String)]) -> BTreeMap<String, String> {
    let mut labels = base.clone();
    labels.insert("__name__".into(), name.into());
    for (n, v) in extra {
        labels.insert((*n).into(), v.clone());
    }
    labels
}

fn point_value(flags: u32, v: f64) -> f64 {
    if flags & NO_RECORDED_VALUE != 0 { f64::from_bits(STALE_NAN) } else { v }
}

/// Adds gauge or sum points as samples of `name`.
fn add_numbers(
    out: &mut Series,
    base: &BTreeMap<String, String>,
    name: &str,
    points: Vec<otlp::NumberDataPoint>,
    newest: &mut Option<i64>,
) {
    for p in points {
        let mut labels = base.clone();
        attribute_labels(&p.attributes, &mut labels);
        let point = Point::of(p.time_unix_nano, p.start_time_unix_nano);
        *newest = (*newest).max(Some(point.ts));
        let ex = p.exemplars.iter().map(exemplar).collect();
        out.add(with(&labels, name, &[]), point, point_value(p.flags, value_of(&p.value)), ex);
    }
}

/// Refuses each of `points` points of a metric with delta temporality.
fn refuse_delta(refused: &mut Vec<String>, metric: &str, kind: &str, points: usize) {
    for _ in 0..points {
        refused.push(format!(
            "metric {metric:?}: only cumulative {kind} are supported; set the exporter's temporality preference to cumulative (OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=cumulative)"
        ));
    }
}

/// Translates an export request; what cannot be translated is listed in `refused`, one entry
/// per data point.
pub fn translate(req: ExportMetricsServiceRequest, settings: &Translation) -> Translated {
    let mut out = Series::default();
    let mut metadata = Vec::new();
    let mut refused = Vec::new();
    for rm in req.resource_metrics {
        let resource = rm.resource.map(|r| r.attributes).unwrap_or_default();
        let mut base = BTreeMap::new();
        let service = attribute(&resource, "service.name");
        if let Some(name) = &service {
            let job = match attribute(&resource, "service.namespace") {
                Some(ns) => format!("{ns}/{name}"),
                None => name.clone(),
            };
            base.insert("job".to_string(), job);
        }
        if let Some(instance) = attribute(&resource, "service.instance.id") {
            base.insert("instance".to_string(), instance);
        }
        for key in &settings.promote_resource_attributes {
            if let Some(v) = attribute(&resource, key) {
                base.insert(label_name(key), v);
            }
        }
        let mut newest = None;
        for sm in rm.scope_metrics {
            for metric in sm.metrics {
                let Some(data) = metric.data else { continue };
                let help = metric.description.clone();
                let unit = metric.unit.clone();
                let mut meta = |name: &str, kind: prompb::metric_metadata::MetricType| {
                    metadata.push(prompb::MetricMetadata {
                        r#type: kind as i32,
                        metric_family_name: name.to_string(),
                        help: help.clone(),
                        unit: unit.clone(),
                    });
                };
                match data {
                    Data::Gauge(g) => {
                        let name = metric_name(&metric.name, &metric.unit, false, true);
                        meta(&name, prompb::metric_metadata::MetricType::Gauge);
                        add_numbers(&mut out, &base, &name, g.data_points, &mut newest);
                    }
                    Data::Sum(s) => {
                        if s.aggregation_temporality != AggregationTemporality::Cumulative as i32 {
                            refuse_delta(&mut refused, &metric.name, "sums", s.data_points.len());
                            continue;
                        }
                        let counter = s.is_monotonic;
                        let name = metric_name(&metric.name, &metric.unit, counter, !counter);
                        let kind = if counter {
                            prompb::metric_metadata::MetricType::Counter
                        } else {
                            prompb::metric_metadata::MetricType::Gauge
                        };
                        meta(&name, kind);
                        add_numbers(&mut out, &base, &name, s.data_points, &mut newest);
                    }
                    Data::Histogram(h) => {
                        if h.aggregation_temporality != AggregationTemporality::Cumulative as i32 {
                            refuse_delta(&mut refused, &metric.name, "histograms", h.data_points.len());
                            continue;
                        }
                        let name = metric_name(&metric.name, &metric.unit, false, false);
                        meta(&name, prompb::metric_metadata::MetricType::Histogram);
                        for p in h.data_points {
                            if !p.bucket_counts.is_empty() && p.bucket_counts.len() != p.explicit_bounds.len() + 1 {
                                refused.push(format!(
                                    "metric {:?}: a histogram point has {} bucket counts for {} bounds",
                                    metric.name,
                                    p.bucket_counts.len(),
                                    p.explicit_bounds.len()
                                ));
                                continue;
                            }
                            let mut labels = base.clone();
                            attribute_labels(&p.attributes, &mut labels);
                            let point = Point::of(p.time_unix_nano, p.start_time_unix_nano);
                            if settings.convert_histograms_to_nhcb {
                                match native_histograms::from_explicit(&p) {
                                    Ok(h) => {
                                        newest = newest.max(Some(point.ts));
                                        let ex = p.exemplars.iter().map(exemplar).collect();
                                        out.add_histogram(with(&labels, &name, &[]), h, point.start_ts, ex);
                                    }
                                    Err(e) => refused.push(format!("metric {:?}: {e}", metric.name)),
                                }
                                continue;
                            }
                            newest = newest.max(Some(point.ts));
                            let value = |v: f64| point_value(p.flags, v);
                            // Each exemplar goes to the bucket its value falls in.
                            let mut exemplars: Vec<Vec<prompb::Exemplar>> = vec![Vec::new(); p.bucket_counts.len()];
                            for e in &p.exemplars {
                                let ex = exemplar(e);
                                let i = p
                                    .explicit_bounds
                                    .iter()
                                    .position(|b| ex.value <= *b)
                                    .unwrap_or(p.explicit_bounds.len());
                                if let Some(slot) = exemplars.get_mut(i) {
                                    slot.push(ex);
                                }
                            }
                            let mut cumulative = 0u64;
                            for (i, count) in p.bucket_counts.iter().enumerate() {
                                cumulative += count;
                                let le = match p.explicit_bounds.get(i) {
                                    Some(b) => crate::response::format_value(*b),
                                    None => "+Inf".to_string(),
                                };
                                let bucket = with(&labels, &format!("{name}_bucket"), &[("le", le)]);
                                out.add(bucket, point, value(cumulative as f64), std::mem::take(&mut exemplars[i]));
                            }
                            if let Some(sum) = p.sum {
                                out.add(with(&labels, &format!("{name}_sum"), &[]), point, value(sum), Vec::new());
                            }
                            out.add(
                                with(&labels, &format!("{name}_count"), &[]),
                                point,
                                value(p.count as f64),
                                Vec::new(),
                            );
                        }
                    }
                    Data::Summary(s) => {
                        let name = metric_name(&metric.name, &metric.unit, false, false);
                        meta(&name, prompb::metric_metadata::MetricType::Summary);
                        for p in s.data_points {
                            let mut labels = base.clone();
                            attribute_labels(&p.attributes, &mut labels);
                            let point = Point::of(p.time_unix_nano, p.start_time_unix_nano);
                            newest = newest.max(Some(point.ts));
                            let value = |v: f64| point_value(p.flags, v);
                            for q in &p.quantile_values {
                                let quantile = crate::response::format_value(q.quantile);
                                out.add(
                                    with(&labels, &name, &[("quantile", quantile)]),
                                    point,
                                    value(q.value),
                                    Vec::new(),
                                );
                            }
                            out.add(with(&labels, &format!("{name}_sum"), &[]), point, value(p.sum), Vec::new());
                            out.add(
                                with(&labels, &format!("{name}_count"), &[]),
                                point,
                                value(p.count as f64),
                                Vec::new(),
                            );
                        }
                    }
                    Data::ExponentialHistogram(h) => {
                        if h.aggregation_temporality != AggregationTemporality::Cumulative as i32 {
                            refuse_delta(&mut refused, &metric.name, "exponential histograms", h.data_points.len());
                            continue;
                        }
                        let name = metric_name(&metric.name, &metric.unit, false, false);
                        meta(&name, prompb::metric_metadata::MetricType::Histogram);
                        for p in h.data_points {
                            let h = match native_histograms::from_exponential(&p) {
                                Ok(h) => h,
                                Err(e) => {
                                    refused.push(format!("metric {:?}: {e}", metric.name));
                                    continue;
                                }
                            };
                            let mut labels = base.clone();
                            attribute_labels(&p.attributes, &mut labels);
                            newest = newest.max(Some(h.timestamp));
                            let ex = p.exemplars.iter().map(exemplar).collect();
                            out.add_histogram(with(&labels, &name, &[]), h, ms(p.start_time_unix_nano), ex);
                        }
                    }
                }
            }
        }
        // The resource's other attributes, once per resource, at its newest point.
        let identifying = ["service.name", "service.namespace", "service.instance.id"];
        let others: Vec<KeyValue> =
            resource.iter().filter(|kv| !identifying.contains(&kv.key.as_str())).cloned().collect();
        if let (Some(ts), false) = (newest, others.is_empty()) {
            let mut labels = base.clone();
            attribute_labels(&others, &mut labels);
            out.add(with(&labels, "target_info", &[]), Point { ts, start_ts: 0 }, 1.0, Vec::new());
        }
    }
    let (timeseries, starts) = out.finish();
    Translated { request: prompb::WriteRequest { timeseries, metadata }, starts, refused }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_get_unit_and_total_suffixes_as_prometheus_translates_them() {
        assert_eq!(metric_name("http.server.duration", "ms", false, false), "http_server_duration_milliseconds");
        assert_eq!(metric_name("http.server.requests", "{request}", true, false), "http_server_requests_total");
        assert_eq!(metric_name("system.memory.usage", "By", false, true), "system_memory_usage_bytes");
        assert_eq!(metric_name("cpu.utilization", "1", false, true), "cpu_utilization_ratio");
        assert_eq!(metric_name("speed", "m/s", false, true), "speed_meters_per_second");
        assert_eq!(metric_name("requests_total", "", true, false), "requests_total");
        assert_eq!(metric_name("duration_seconds", "s", false, false), "duration_seconds");
        assert_eq!(metric_name("2xx.count", "", true, false), "_2xx_count_total");
    }

    #[test]
    fn attribute_keys_become_valid_label_names() {
        assert_eq!(label_name("http.route"), "http_route");
        assert_eq!(label_name("2xx"), "key_2xx");
        assert_eq!(label_name("_private"), "key_private");
        assert_eq!(label_name("__reserved"), "__reserved");
    }

    fn export(data: Data) -> ExportMetricsServiceRequest {
        use super::super::proto::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics};
        let metric = Metric { name: "rpc.duration".into(), unit: "s".into(), data: Some(data), ..Default::default() };
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics { metrics: vec![metric], ..Default::default() }],
                ..Default::default()
            }],
        }
    }

    fn traced_exemplar(value: f64) -> otlp::Exemplar {
        otlp::Exemplar {
            time_unix_nano: 4_000_000_000,
            trace_id: vec![0xab; 16],
            span_id: vec![0xcd; 8],
            value: Some(otlp::exemplar::Value::AsDouble(value)),
            ..Default::default()
        }
    }

    fn labels(ts: &prompb::TimeSeries) -> Vec<(&str, &str)> {
        ts.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())).collect()
    }

    /// Start times come beside the request, in the order of each series' samples after sorting;
    /// a series whose points have none gets none.
    #[test]
    fn start_times_of_sums_and_histograms_are_kept_beside_their_samples() {
        let cumulative = AggregationTemporality::Cumulative as i32;
        let sum_point = |t: u64, start: u64, v: f64| otlp::NumberDataPoint {
            time_unix_nano: t * 1_000_000,
            start_time_unix_nano: start * 1_000_000,
            value: Some(otlp::number_data_point::Value::AsDouble(v)),
            ..Default::default()
        };
        // Out of time order, and the counter restarted between the two points.
        let points = vec![sum_point(20_000, 15_000, 1.0), sum_point(10_000, 1_000, 7.0)];
        let data =
            Data::Sum(otlp::Sum { data_points: points, aggregation_temporality: cumulative, is_monotonic: true });
        let out = translate(export(data), &Translation::default());
        let [series] = out.request.timeseries.as_slice() else { panic!("{:?}", out.request.timeseries) };
        assert_eq!(
            series.samples.iter().map(|s| (s.timestamp, s.value)).collect::<Vec<_>>(),
            [(10_000, 7.0), (20_000, 1.0)]
        );
        assert_eq!(out.starts, [SeriesStarts { samples: vec![1_000, 15_000], histograms: vec![] }]);

        let histogram = otlp::HistogramDataPoint {
            time_unix_nano: 30_000_000_000,
            start_time_unix_nano: 5_000_000_000,
            count: 2,
            sum: Some(1.5),
            bucket_counts: vec![1, 1],
            explicit_bounds: vec![1.0],
            ..Default::default()
        };
        let data =
            Data::Histogram(otlp::Histogram { data_points: vec![histogram], aggregation_temporality: cumulative });
        let nhcb = Translation { convert_histograms_to_nhcb: true, ..Translation::default() };
        let out = translate(export(data.clone()), &nhcb);
        assert_eq!(out.starts, [SeriesStarts { samples: vec![], histograms: vec![5_000] }]);
        // Classic series: every `_bucket`, `_sum` and `_count` sample has the point's start.
        let out = translate(export(data), &Translation::default());
        assert_eq!(out.starts.len(), 4);
        assert!(out.starts.iter().all(|s| s.samples == [5_000] && s.histograms.is_empty()), "{:?}", out.starts);

        let gauge = Data::Gauge(otlp::Gauge { data_points: vec![sum_point(10_000, 0, 1.0)] });
        assert_eq!(translate(export(gauge), &Translation::default()).starts, [SeriesStarts::default()]);
    }

    #[test]
    fn exponential_histograms_are_one_native_histogram_series_with_the_exemplars() {
        let point = otlp::ExponentialHistogramDataPoint {
            time_unix_nano: 5_000_000_000,
            count: 3,
            sum: Some(0.7),
            scale: 1,
            positive: Some(otlp::exponential_histogram_data_point::Buckets { offset: 0, bucket_counts: vec![1, 2] }),
            exemplars: vec![traced_exemplar(0.2), traced_exemplar(0.4)],
            ..Default::default()
        };
        let cumulative = AggregationTemporality::Cumulative as i32;
        let data = Data::ExponentialHistogram(otlp::ExponentialHistogram {
            data_points: vec![point.clone()],
            aggregation_temporality: cumulative,
        });
        let out = translate(export(data), &Translation::default());
        assert_eq!(out.refused, Vec::<String>::new());
        let [series] = out.request.timeseries.as_slice() else { panic!("{:?}", out.request.timeseries) };
        assert_eq!(labels(series), [("__name__", "rpc_duration_seconds")]);
        assert_eq!(series.samples, []);
        assert_eq!(series.histograms, [native_histograms::from_exponential(&point).unwrap()]);
        let trace: Vec<_> = series.exemplars.iter().map(|e| (e.value, e.timestamp, labels_of(&e.labels))).collect();
        let ids = vec![("span_id".to_string(), "cd".repeat(8)), ("trace_id".to_string(), "ab".repeat(16))];
        assert_eq!(trace, [(0.2, 4000, ids.clone()), (0.4, 4000, ids)]);
        assert_eq!(out.request.metadata[0].r#type, prompb::metric_metadata::MetricType::Histogram as i32);
        assert_eq!(out.request.metadata[0].metric_family_name, "rpc_duration_seconds");

        let delta = Data::ExponentialHistogram(otlp::ExponentialHistogram {
            data_points: vec![point],
            aggregation_temporality: AggregationTemporality::Delta as i32,
        });
        let out = translate(export(delta), &Translation::default());
        assert_eq!(out.request.timeseries, []);
        assert_eq!(
            out.refused,
            [
                "metric \"rpc.duration\": only cumulative exponential histograms are supported; set the exporter's temporality preference to cumulative (OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=cumulative)"
            ]
        );
    }

    fn labels_of(l: &[prompb::Label]) -> Vec<(String, String)> {
        l.iter().map(|l| (l.name.clone(), l.value.clone())).collect()
    }

    #[test]
    fn explicit_histograms_become_custom_buckets_when_configured() {
        let point = otlp::HistogramDataPoint {
            time_unix_nano: 5_000_000_000,
            count: 3,
            sum: Some(4.0),
            bucket_counts: vec![1, 2],
            explicit_bounds: vec![1.0],
            exemplars: vec![traced_exemplar(2.5)],
            ..Default::default()
        };
        let data = || {
            Data::Histogram(otlp::Histogram {
                data_points: vec![point.clone()],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })
        };
        let nhcb = Translation { convert_histograms_to_nhcb: true, ..Default::default() };
        let out = translate(export(data()), &nhcb);
        let [series] = out.request.timeseries.as_slice() else { panic!("{:?}", out.request.timeseries) };
        assert_eq!(labels(series), [("__name__", "rpc_duration_seconds")]);
        assert_eq!(series.histograms, [native_histograms::from_explicit(&point).unwrap()]);
        assert_eq!(series.exemplars.len(), 1);
        // Without the setting: classic series, the exemplar on the bucket it falls in.
        let out = translate(export(data()), &Translation::default());
        let names: Vec<_> = out.request.timeseries.iter().map(|ts| labels(ts)).collect();
        assert_eq!(
            names,
            [
                vec![("__name__", "rpc_duration_seconds_bucket"), ("le", "+Inf")],
                vec![("__name__", "rpc_duration_seconds_bucket"), ("le", "1")],
                vec![("__name__", "rpc_duration_seconds_count")],
                vec![("__name__", "rpc_duration_seconds_sum")],
            ]
        );
        assert_eq!(out.request.timeseries[0].exemplars.len(), 1);
    }
}
