//! Prometheus's JSON success envelope and its number formats.

use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::value::RawValue;

/// `{"status":"success","data":...}`, with `warnings` when there are any.
pub fn success<T: Serialize>(data: T, warnings: Vec<String>) -> Response {
    #[derive(Serialize)]
    struct Envelope<T> {
        status: &'static str,
        data: T,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        warnings: Vec<String>,
    }
    match serde_json::to_string(&Envelope { status: "success", data, warnings }) {
        Ok(body) => ([("content-type", "application/json")], body).into_response(),
        Err(e) => crate::error::ApiError::internal(format!("encoding the response: {e}")).into_response(),
    }
}

/// A float as Prometheus writes sample values (see [`amber_promql::value::format_float`]).
pub use amber_promql::value::format_float as format_value;

/// A millisecond timestamp as the JSON number of seconds Prometheus writes
/// (`jsonutil.MarshalTimestamp`): the three-digit fraction only when it is non-zero, trailing
/// zeros kept, so 1500 ms is `1.500` and 2000 ms is `2`.
pub fn timestamp(ms: i64) -> Box<RawValue> {
    let mut text = String::with_capacity(16);
    write_timestamp(&mut text, ms);
    RawValue::from_string(text).expect("a number is valid JSON")
}

/// Appends [`timestamp`]'s text to `out`. Written by hand with `itoa`: a range query's answer
/// has one timestamp per point, and `write!` took several times as long.
pub fn write_timestamp(out: &mut String, ms: i64) {
    if ms < 0 {
        out.push('-');
    }
    let abs = ms.unsigned_abs();
    let (secs, frac) = (abs / 1000, abs % 1000);
    out.push_str(itoa::Buffer::new().format(secs));
    if frac != 0 {
        let digit = |d: u64| char::from(b'0' + d as u8);
        out.push('.');
        out.push(digit(frac / 100));
        out.push(digit(frac / 10 % 10));
        out.push(digit(frac % 10));
    }
}

/// A native histogram as Prometheus writes it (`jsonutil.MarshalHistogram`): `count`, `sum` and
/// the non-empty buckets as `[boundary_rule, "lower", "upper", "count"]`, lowest first, numbers
/// formatted like sample values; no `buckets` key when every bucket is empty.
pub fn write_histogram(out: &mut String, h: &amber_promql::Histogram) {
    let quoted = |out: &mut String, v: f64| {
        out.push('"');
        amber_promql::value::write_float(out, v);
        out.push('"');
    };
    out.push_str(r#"{"count":"#);
    quoted(out, h.count);
    out.push_str(r#","sum":"#);
    quoted(out, h.sum);
    let mut first = true;
    for b in h.buckets().iter().filter(|b| b.count != 0.0) {
        out.push_str(if first { r#","buckets":[["# } else { ",[" });
        first = false;
        out.push(char::from(b'0' + b.boundary_rule()));
        for v in [b.lower, b.upper, b.count] {
            out.push(',');
            quoted(out, v);
        }
        out.push(']');
    }
    if !first {
        out.push(']');
    }
    out.push('}');
}

/// [`write_histogram`]'s text as a JSON value.
pub fn histogram(h: &amber_promql::Histogram) -> Box<RawValue> {
    let mut text = String::with_capacity(64 + 48 * h.positive_buckets.len());
    write_histogram(&mut text, h);
    RawValue::from_string(text).expect("written as valid JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_format_like_prometheus_marshal_histogram() {
        use amber_histogram::Span;
        let h = amber_promql::Histogram {
            count: 5.0,
            sum: 7.5,
            zero_threshold: 0.001,
            zero_count: 1.0,
            positive_spans: vec![Span { offset: 0, length: 3 }],
            positive_buckets: vec![2.0, 0.0, 1.0],
            negative_spans: vec![Span { offset: 1, length: 1 }],
            negative_buckets: vec![1.0],
            ..Default::default()
        };
        let mut out = String::new();
        write_histogram(&mut out, &h);
        assert_eq!(
            out,
            r#"{"count":"5","sum":"7.5","buckets":[[1,"-2","-1","1"],[3,"-0.001","0.001","1"],[0,"0.5","1","2"],[0,"2","4","1"]]}"#
        );
        let empty = amber_promql::Histogram { count: 0.0, sum: 0.0, ..Default::default() };
        out.clear();
        write_histogram(&mut out, &empty);
        assert_eq!(out, r#"{"count":"0","sum":"0"}"#);
    }

    #[test]
    fn timestamps_format_like_prometheus_marshal_timestamp() {
        let cases = [
            (1600096945479, "1600096945.479"),
            (1500, "1.500"),
            (2000, "2"),
            (5, "0.005"),
            (-1500, "-1.500"),
            (-5, "-0.005"),
            (0, "0"),
            (i64::MIN, "-9223372036854775.808"),
        ];
        for (ms, want) in cases {
            assert_eq!(timestamp(ms).get(), want);
        }
    }
}
