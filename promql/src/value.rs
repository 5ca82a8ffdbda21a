//! What expressions evaluate to.

use std::sync::Arc;

pub use amber_histogram::Histogram;

use crate::labels::Labels;

/// One float sample in time. `t` is milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub t: i64,
    pub v: f64,
}

/// One native histogram sample in time. Shared: selectors hand the stored histogram to every
/// step that reads it without copying its buckets.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramPoint {
    pub t: i64,
    pub h: Arc<Histogram>,
}

/// One element of an instant vector: a float, or a native histogram when `h` is set (`v` is then
/// meaningless).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub t: i64,
    pub v: f64,
    pub h: Option<Arc<Histogram>>,
    /// Set when the metric name must be dropped once the enclosing expression is done
    /// (Prometheus 3's delayed name removal).
    pub drop_name: bool,
}

/// A series with points: an element of a range vector or of a range query's result. Float and
/// histogram samples are kept apart, each list in time order, so that float-only work never
/// looks at histograms (the histogram list is empty and costs nothing). The default is empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub points: Vec<Point>,
    pub histograms: Vec<HistogramPoint>,
    /// The samples' start timestamps, as storage returns them for a selector; evaluated series
    /// (subqueries, function results) have none, which is how they cut their propagation.
    pub start_timestamps: StartTimestamps,
    pub drop_name: bool,
}

/// Start timestamps of a series' samples (milliseconds; 0 for a sample without one), as
/// Prometheus's `StartTimestamps`: each list is empty (no sample has one) or exactly as long as
/// the series' float or histogram samples, so series without them cost two empty vectors.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StartTimestamps {
    pub floats: Vec<i64>,
    pub histograms: Vec<i64>,
}

/// The start timestamps of a window of samples: each slice empty, or as long as the window's
/// float or histogram samples.
#[derive(Debug, Clone, Copy, Default)]
pub struct Starts<'a> {
    pub floats: &'a [i64],
    pub histograms: &'a [i64],
}

impl Sample {
    /// A float sample.
    pub fn float(labels: Labels, t: i64, v: f64, drop_name: bool) -> Sample {
        Sample { labels, t, v, h: None, drop_name }
    }
}

impl Series {
    /// A series of float points only.
    pub fn floats(labels: Labels, points: Vec<Point>, drop_name: bool) -> Series {
        Series { labels, points, histograms: Vec::new(), start_timestamps: StartTimestamps::default(), drop_name }
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty() && self.histograms.is_empty()
    }
}

/// The value of an expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(Point),
    String { t: i64, s: String },
    Vector(Vec<Sample>),
    Matrix(Vec<Series>),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::String { .. } => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// A float as Prometheus prints it: Go's `strconv.FormatFloat(v, 'f', -1, 64)`, with `NaN`,
/// `+Inf` and `-Inf` for the special values.
pub fn format_float(v: f64) -> String {
    let mut out = String::new();
    write_float(&mut out, v);
    out
}

/// 2^53: every whole number below it is exact as a double.
const MAX_EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

/// Appends [`format_float`]'s text to `out` (range queries write millions of values).
pub fn write_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else if v.fract() == 0.0 && v.abs() < MAX_EXACT_INTEGER && !(v == 0.0 && v.is_sign_negative()) {
        // A whole number below 2^53 has no shorter round-trip digits than its own (its
        // neighbours are at most 1 away), which is what Go writes.
        out.push_str(itoa::Buffer::new().format(v as i64));
    } else {
        // Ryu's shortest round-trip digits, when it writes them without an exponent, are Go's
        // 'f' -1 digits (less a trailing ".0"); otherwise Rust's Display, which never uses one.
        let mut buf = ryu::Buffer::new();
        let text = buf.format_finite(v);
        if text.contains('e') {
            use std::fmt::Write;
            write!(out, "{v}").expect("writing to a String cannot fail");
        } else {
            out.push_str(text.strip_suffix(".0").unwrap_or(text));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_format_like_go_strconv() {
        let cases = [
            (1.0, "1"),
            (0.1, "0.1"),
            (-0.0, "-0"),
            (1e21, "1000000000000000000000"),
            (1.5e-7, "0.00000015"),
            (123456.789, "123456.789"),
            (1e15, "1000000000000000"),
            (0.001, "0.001"),
            (-2.5, "-2.5"),
            (4_001_234_944.0, "4001234944"),
            (-3.0, "-3"),
            (0.0, "0"),
            (9_007_199_254_740_991.0, "9007199254740991"),
            (9_007_199_254_740_992.0, "9007199254740992"),
            (1e16, "10000000000000000"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ];
        for (v, want) in cases {
            assert_eq!(format_float(v), want);
        }
    }
}
