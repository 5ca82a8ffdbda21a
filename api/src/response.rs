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

#[cfg(test)]
mod tests {
    use super::*;

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
