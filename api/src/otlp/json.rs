//! OTLP/JSON: the JSON encoding of `ExportMetricsServiceRequest` (proto3 JSON mapping with OTLP's
//! deviations: lowerCamelCase names, trace and span ids as hex rather than base64, enums as
//! integers), decoded into the protobuf types so both encodings share one translation.
//! 64-bit integers are accepted as JSON strings or numbers, doubles also as `"NaN"`/`"Infinity"`.

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::proto::collector::metrics::v1 as collector;
use super::proto::common::v1 as common;
use super::proto::metrics::v1 as metrics;
use super::proto::resource::v1 as resource;

/// A number that proto3 JSON may write as a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Num {
    Int(i64),
    UInt(u64),
    Float(f64),
    Text(String),
}

impl Num {
    fn as_f64(&self) -> Result<f64, String> {
        match self {
            Num::Int(i) => Ok(*i as f64),
            Num::UInt(u) => Ok(*u as f64),
            Num::Float(f) => Ok(*f),
            Num::Text(s) => match s.as_str() {
                "NaN" => Ok(f64::NAN),
                "Infinity" => Ok(f64::INFINITY),
                "-Infinity" => Ok(f64::NEG_INFINITY),
                _ => s.parse().map_err(|_| format!("invalid number {s:?}")),
            },
        }
    }

    fn as_u64(&self) -> Result<u64, String> {
        match self {
            Num::Int(i) => u64::try_from(*i).map_err(|_| format!("negative value {i}")),
            Num::UInt(u) => Ok(*u),
            Num::Float(f) if f.fract() == 0.0 && *f >= 0.0 => Ok(*f as u64),
            Num::Float(f) => Err(format!("invalid integer {f}")),
            Num::Text(s) => s.parse().map_err(|_| format!("invalid integer {s:?}")),
        }
    }

    fn as_i64(&self) -> Result<i64, String> {
        match self {
            Num::Int(i) => Ok(*i),
            Num::UInt(u) => i64::try_from(*u).map_err(|_| format!("integer {u} out of range")),
            Num::Float(f) if f.fract() == 0.0 => Ok(*f as i64),
            Num::Float(f) => Err(format!("invalid integer {f}")),
            Num::Text(s) => s.parse().map_err(|_| format!("invalid integer {s:?}")),
        }
    }
}

fn u64_of<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Num::deserialize(d)?.as_u64().map_err(de::Error::custom)
}

fn u64s_of<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    Vec::<Num>::deserialize(d)?.iter().map(|n| n.as_u64().map_err(de::Error::custom)).collect()
}

fn f64s_of<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    Vec::<Num>::deserialize(d)?.iter().map(|n| n.as_f64().map_err(de::Error::custom)).collect()
}

fn hex_of<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = String::deserialize(d)?;
    // Checked byte by byte first: slicing a non-ASCII character in two would panic.
    if s.len() % 2 != 0 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(de::Error::custom(format!("invalid hex id {s:?}")));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| de::Error::custom(format!("invalid hex id {s:?}"))))
        .collect()
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct AnyValue {
    string_value: Option<String>,
    bool_value: Option<bool>,
    int_value: Option<Num>,
    double_value: Option<Num>,
    array_value: Option<Values>,
    kvlist_value: Option<KeyValues>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Values {
    values: Vec<AnyValue>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct KeyValues {
    values: Vec<KeyValue>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct KeyValue {
    key: String,
    value: Option<AnyValue>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Exemplar {
    filtered_attributes: Vec<KeyValue>,
    #[serde(deserialize_with = "u64_of")]
    time_unix_nano: u64,
    as_double: Option<Num>,
    as_int: Option<Num>,
    #[serde(deserialize_with = "hex_of")]
    span_id: Vec<u8>,
    #[serde(deserialize_with = "hex_of")]
    trace_id: Vec<u8>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct NumberDataPoint {
    attributes: Vec<KeyValue>,
    #[serde(deserialize_with = "u64_of")]
    start_time_unix_nano: u64,
    #[serde(deserialize_with = "u64_of")]
    time_unix_nano: u64,
    as_double: Option<Num>,
    as_int: Option<Num>,
    exemplars: Vec<Exemplar>,
    flags: u32,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct HistogramDataPoint {
    attributes: Vec<KeyValue>,
    #[serde(deserialize_with = "u64_of")]
    start_time_unix_nano: u64,
    #[serde(deserialize_with = "u64_of")]
    time_unix_nano: u64,
    #[serde(deserialize_with = "u64_of")]
    count: u64,
    sum: Option<Num>,
    #[serde(deserialize_with = "u64s_of")]
    bucket_counts: Vec<u64>,
    #[serde(deserialize_with = "f64s_of")]
    explicit_bounds: Vec<f64>,
    exemplars: Vec<Exemplar>,
    flags: u32,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ExponentialBuckets {
    offset: i32,
    #[serde(deserialize_with = "u64s_of")]
    bucket_counts: Vec<u64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ExponentialHistogramDataPoint {
    attributes: Vec<KeyValue>,
    #[serde(deserialize_with = "u64_of")]
    start_time_unix_nano: u64,
    #[serde(deserialize_with = "u64_of")]
    time_unix_nano: u64,
    #[serde(deserialize_with = "u64_of")]
    count: u64,
    sum: Option<Num>,
    scale: i32,
    #[serde(deserialize_with = "u64_of")]
    zero_count: u64,
    positive: Option<ExponentialBuckets>,
    negative: Option<ExponentialBuckets>,
    flags: u32,
    exemplars: Vec<Exemplar>,
    min: Option<Num>,
    max: Option<Num>,
    zero_threshold: Option<Num>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Quantile {
    quantile: Option<Num>,
    value: Option<Num>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct SummaryDataPoint {
    attributes: Vec<KeyValue>,
    #[serde(deserialize_with = "u64_of")]
    start_time_unix_nano: u64,
    #[serde(deserialize_with = "u64_of")]
    time_unix_nano: u64,
    #[serde(deserialize_with = "u64_of")]
    count: u64,
    sum: Option<Num>,
    quantile_values: Vec<Quantile>,
    flags: u32,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Points<P> {
    data_points: Vec<P>,
    aggregation_temporality: i32,
    is_monotonic: bool,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Metric {
    name: String,
    description: String,
    unit: String,
    gauge: Option<Points<NumberDataPoint>>,
    sum: Option<Points<NumberDataPoint>>,
    histogram: Option<Points<HistogramDataPoint>>,
    exponential_histogram: Option<Points<ExponentialHistogramDataPoint>>,
    summary: Option<Points<SummaryDataPoint>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Resource {
    attributes: Vec<KeyValue>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ScopeMetrics {
    metrics: Vec<Metric>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ResourceMetrics {
    resource: Option<Resource>,
    scope_metrics: Vec<ScopeMetrics>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Request {
    resource_metrics: Vec<ResourceMetrics>,
}

fn any_value(v: AnyValue) -> Result<common::AnyValue, String> {
    use common::any_value::Value;
    let value = if let Some(s) = v.string_value {
        Value::StringValue(s)
    } else if let Some(b) = v.bool_value {
        Value::BoolValue(b)
    } else if let Some(i) = v.int_value {
        Value::IntValue(i.as_i64()?)
    } else if let Some(d) = v.double_value {
        Value::DoubleValue(d.as_f64()?)
    } else if let Some(a) = v.array_value {
        Value::ArrayValue(common::ArrayValue { values: a.values.into_iter().map(any_value).collect::<Result<_, _>>()? })
    } else if let Some(kv) = v.kvlist_value {
        Value::KvlistValue(common::KeyValueList { values: key_values(kv.values)? })
    } else {
        return Ok(common::AnyValue { value: None });
    };
    Ok(common::AnyValue { value: Some(value) })
}

fn key_values(kvs: Vec<KeyValue>) -> Result<Vec<common::KeyValue>, String> {
    kvs.into_iter()
        .map(|kv| {
            Ok(common::KeyValue { key: kv.key, value: kv.value.map(any_value).transpose()?, ..Default::default() })
        })
        .collect()
}

fn number(as_double: Option<Num>, as_int: Option<Num>) -> Result<Option<metrics::number_data_point::Value>, String> {
    use metrics::number_data_point::Value;
    Ok(match (as_double, as_int) {
        (Some(d), _) => Some(Value::AsDouble(d.as_f64()?)),
        (None, Some(i)) => Some(Value::AsInt(i.as_i64()?)),
        (None, None) => None,
    })
}

fn exemplars(list: Vec<Exemplar>) -> Result<Vec<metrics::Exemplar>, String> {
    list.into_iter()
        .map(|e| {
            let value = match number(e.as_double, e.as_int)? {
                Some(metrics::number_data_point::Value::AsDouble(d)) => Some(metrics::exemplar::Value::AsDouble(d)),
                Some(metrics::number_data_point::Value::AsInt(i)) => Some(metrics::exemplar::Value::AsInt(i)),
                None => None,
            };
            Ok(metrics::Exemplar {
                filtered_attributes: key_values(e.filtered_attributes)?,
                time_unix_nano: e.time_unix_nano,
                span_id: e.span_id,
                trace_id: e.trace_id,
                value,
            })
        })
        .collect()
}

fn number_points(points: Vec<NumberDataPoint>) -> Result<Vec<metrics::NumberDataPoint>, String> {
    points
        .into_iter()
        .map(|p| {
            Ok(metrics::NumberDataPoint {
                attributes: key_values(p.attributes)?,
                start_time_unix_nano: p.start_time_unix_nano,
                time_unix_nano: p.time_unix_nano,
                value: number(p.as_double, p.as_int)?,
                exemplars: exemplars(p.exemplars)?,
                flags: p.flags,
            })
        })
        .collect()
}

fn metric(m: Metric) -> Result<metrics::Metric, String> {
    use metrics::metric::Data;
    let data = if let Some(g) = m.gauge {
        Some(Data::Gauge(metrics::Gauge { data_points: number_points(g.data_points)? }))
    } else if let Some(s) = m.sum {
        Some(Data::Sum(metrics::Sum {
            data_points: number_points(s.data_points)?,
            aggregation_temporality: s.aggregation_temporality,
            is_monotonic: s.is_monotonic,
        }))
    } else if let Some(h) = m.histogram {
        let data_points = h
            .data_points
            .into_iter()
            .map(|p| {
                Ok(metrics::HistogramDataPoint {
                    attributes: key_values(p.attributes)?,
                    start_time_unix_nano: p.start_time_unix_nano,
                    time_unix_nano: p.time_unix_nano,
                    count: p.count,
                    sum: p.sum.map(|s| s.as_f64()).transpose()?,
                    bucket_counts: p.bucket_counts,
                    explicit_bounds: p.explicit_bounds,
                    exemplars: exemplars(p.exemplars)?,
                    flags: p.flags,
                    ..Default::default()
                })
            })
            .collect::<Result<_, String>>()?;
        Some(Data::Histogram(metrics::Histogram { data_points, aggregation_temporality: h.aggregation_temporality }))
    } else if let Some(e) = m.exponential_histogram {
        use metrics::exponential_histogram_data_point::Buckets;
        let buckets =
            |b: Option<ExponentialBuckets>| b.map(|b| Buckets { offset: b.offset, bucket_counts: b.bucket_counts });
        let data_points = e
            .data_points
            .into_iter()
            .map(|p| {
                Ok(metrics::ExponentialHistogramDataPoint {
                    attributes: key_values(p.attributes)?,
                    start_time_unix_nano: p.start_time_unix_nano,
                    time_unix_nano: p.time_unix_nano,
                    count: p.count,
                    sum: p.sum.map(|s| s.as_f64()).transpose()?,
                    scale: p.scale,
                    zero_count: p.zero_count,
                    positive: buckets(p.positive),
                    negative: buckets(p.negative),
                    flags: p.flags,
                    exemplars: exemplars(p.exemplars)?,
                    min: p.min.map(|v| v.as_f64()).transpose()?,
                    max: p.max.map(|v| v.as_f64()).transpose()?,
                    zero_threshold: p.zero_threshold.map_or(Ok(0.0), |v| v.as_f64())?,
                })
            })
            .collect::<Result<_, String>>()?;
        Some(Data::ExponentialHistogram(metrics::ExponentialHistogram {
            data_points,
            aggregation_temporality: e.aggregation_temporality,
        }))
    } else if let Some(s) = m.summary {
        let data_points = s
            .data_points
            .into_iter()
            .map(|p| {
                let quantile_values = p
                    .quantile_values
                    .into_iter()
                    .map(|q| {
                        Ok(metrics::summary_data_point::ValueAtQuantile {
                            quantile: q.quantile.map_or(Ok(0.0), |v| v.as_f64())?,
                            value: q.value.map_or(Ok(0.0), |v| v.as_f64())?,
                        })
                    })
                    .collect::<Result<_, String>>()?;
                Ok(metrics::SummaryDataPoint {
                    attributes: key_values(p.attributes)?,
                    start_time_unix_nano: p.start_time_unix_nano,
                    time_unix_nano: p.time_unix_nano,
                    count: p.count,
                    sum: p.sum.map_or(Ok(0.0), |v| v.as_f64())?,
                    quantile_values,
                    flags: p.flags,
                })
            })
            .collect::<Result<_, String>>()?;
        Some(Data::Summary(metrics::Summary { data_points }))
    } else {
        None
    };
    Ok(metrics::Metric { name: m.name, description: m.description, unit: m.unit, data, ..Default::default() })
}

/// Decodes an OTLP/JSON export request.
pub fn decode(body: &[u8]) -> Result<collector::ExportMetricsServiceRequest, String> {
    let req: Request = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let resource_metrics = req
        .resource_metrics
        .into_iter()
        .map(|rm| {
            let scope_metrics = rm
                .scope_metrics
                .into_iter()
                .map(|sm| {
                    let metrics = sm.metrics.into_iter().map(metric).collect::<Result<_, String>>()?;
                    Ok(metrics::ScopeMetrics { metrics, ..Default::default() })
                })
                .collect::<Result<_, String>>()?;
            let resource = rm
                .resource
                .map(|r| {
                    Ok::<_, String>(resource::Resource { attributes: key_values(r.attributes)?, ..Default::default() })
                })
                .transpose()?;
            Ok(metrics::ResourceMetrics { resource, scope_metrics, ..Default::default() })
        })
        .collect::<Result<_, String>>()?;
    Ok(collector::ExportMetricsServiceRequest { resource_metrics })
}

/// The JSON encoding of an export response.
pub fn encode_response(r: &collector::ExportMetricsServiceResponse) -> Vec<u8> {
    let body = match &r.partial_success {
        Some(p) => serde_json::json!({"partialSuccess": {
            "rejectedDataPoints": p.rejected_data_points.to_string(),
            "errorMessage": p.error_message,
        }}),
        None => serde_json::json!({}),
    };
    body.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_histogram_points_decode_every_field() {
        let body = br#"{"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": "d", "exponentialHistogram": {
            "aggregationTemporality": 2, "dataPoints": [{"timeUnixNano": "5000000000", "count": "6", "sum": 2.5,
            "scale": -2, "zeroCount": "1", "zeroThreshold": 0.001, "min": 0, "max": "Infinity", "flags": 1,
            "positive": {"offset": 3, "bucketCounts": ["2", 3]}, "negative": {"bucketCounts": ["0"]},
            "exemplars": [{"timeUnixNano": "4000000000", "asInt": "7", "traceId": "0a0b", "spanId": "0c"}]}]}}]}]}]}"#;
        let req = decode(body).unwrap();
        let Some(metrics::metric::Data::ExponentialHistogram(h)) =
            &req.resource_metrics[0].scope_metrics[0].metrics[0].data
        else {
            panic!("{req:?}")
        };
        use metrics::exponential_histogram_data_point::Buckets;
        assert_eq!(h.aggregation_temporality, 2);
        assert_eq!(
            h.data_points,
            [metrics::ExponentialHistogramDataPoint {
                time_unix_nano: 5_000_000_000,
                count: 6,
                sum: Some(2.5),
                scale: -2,
                zero_count: 1,
                zero_threshold: 0.001,
                min: Some(0.0),
                max: Some(f64::INFINITY),
                flags: 1,
                positive: Some(Buckets { offset: 3, bucket_counts: vec![2, 3] }),
                negative: Some(Buckets { offset: 0, bucket_counts: vec![0] }),
                exemplars: vec![metrics::Exemplar {
                    time_unix_nano: 4_000_000_000,
                    value: Some(metrics::exemplar::Value::AsInt(7)),
                    trace_id: vec![0x0a, 0x0b],
                    span_id: vec![0x0c],
                    ..Default::default()
                }],
                ..Default::default()
            }]
        );
    }

    /// Found by `fuzz/` (target `otlp`): a non-ASCII character in a hex id panicked the decoder
    /// (the request got no answer) instead of being refused.
    #[test]
    fn hex_ids_with_non_ascii_characters_are_refused() {
        for id in ["4bf92f3577b34daʖ3ce929d0e0e4736", "éé", "0g"] {
            let body = format!(
                r#"{{"resourceMetrics": [{{"scopeMetrics": [{{"metrics": [{{"name": "g", "gauge": {{"dataPoints": [
                {{"timeUnixNano": "1", "asInt": "1", "exemplars": [{{"timeUnixNano": "1", "asInt": "1", "traceId": "{id}"}}]}}]}}}}]}}]}}]}}"#
            );
            let err = decode(body.as_bytes()).expect_err(id);
            assert!(err.contains(&format!("invalid hex id {id:?}")), "{id}: {err}");
        }
    }
}
