//! Native histogram samples as remote write sends them (1.0's `histograms` field and 2.0's; the
//! same message on the wire, two generated types) turned into [`amber_histogram::Histogram`]:
//! integer histograms arrive with delta-encoded buckets, float histograms with absolute counts.

use amber_histogram::{CounterResetHint, Histogram, Span};
use amber_storage::{HistogramSample, NO_START};

use crate::prompb;
use crate::prompb::writev2;

/// `count` and `zero_count`: integer for integer histograms, float for float histograms.
#[derive(Debug, Clone, Copy)]
enum Count {
    Int(u64),
    Float(f64),
}

/// One side's buckets as sent.
struct Side<'a> {
    name: &'static str,
    spans: Vec<Span>,
    deltas: &'a [i64],
    counts: &'a [f64],
}

/// The fields both remote write versions' `Histogram` messages share.
pub(crate) struct WireHistogram<'a> {
    pub timestamp: i64,
    count: Option<Count>,
    zero_count: Option<Count>,
    sum: f64,
    schema: i32,
    zero_threshold: f64,
    negative: Side<'a>,
    positive: Side<'a>,
    reset_hint: i32,
    custom_values: &'a [f64],
}

/// Remote write 1.0 and 2.0 generate one `Histogram` message each, with the same fields: one
/// conversion for both.
macro_rules! wire_histogram_from {
    ($proto:ident) => {
        impl<'a> From<&'a $proto::Histogram> for WireHistogram<'a> {
            fn from(h: &'a $proto::Histogram) -> Self {
                use $proto::histogram::{Count as C, ZeroCount as Z};
                let spans =
                    |s: &[$proto::BucketSpan]| s.iter().map(|s| Span { offset: s.offset, length: s.length }).collect();
                WireHistogram {
                    timestamp: h.timestamp,
                    count: h.count.map(|c| match c {
                        C::CountInt(n) => Count::Int(n),
                        C::CountFloat(v) => Count::Float(v),
                    }),
                    zero_count: h.zero_count.map(|c| match c {
                        Z::ZeroCountInt(n) => Count::Int(n),
                        Z::ZeroCountFloat(v) => Count::Float(v),
                    }),
                    sum: h.sum,
                    schema: h.schema,
                    zero_threshold: h.zero_threshold,
                    negative: Side {
                        name: "negative",
                        spans: spans(&h.negative_spans),
                        deltas: &h.negative_deltas,
                        counts: &h.negative_counts,
                    },
                    positive: Side {
                        name: "positive",
                        spans: spans(&h.positive_spans),
                        deltas: &h.positive_deltas,
                        counts: &h.positive_counts,
                    },
                    reset_hint: h.reset_hint,
                    custom_values: &h.custom_values,
                }
            }
        }
    };
}

wire_histogram_from!(prompb);
wire_histogram_from!(writev2);

/// Remote write 1.0's in-place reading keeps histograms decoded (or, from OTLP, borrowed).
impl<'a> From<&'a std::borrow::Cow<'_, prompb::Histogram>> for WireHistogram<'a> {
    fn from(h: &'a std::borrow::Cow<'_, prompb::Histogram>) -> Self {
        WireHistogram::from(h.as_ref())
    }
}

impl WireHistogram<'_> {
    /// The stored sample, or why it can never be stored. A histogram is a float histogram when
    /// its count is `count_float` (as in Prometheus), an integer one otherwise. Its start
    /// timestamp is left to the caller (remote write 1.0 has none).
    pub fn to_sample(&self) -> Result<HistogramSample, String> {
        let float = matches!(self.count, Some(Count::Float(_)));
        let counter_reset_hint = u8::try_from(self.reset_hint)
            .ok()
            .and_then(CounterResetHint::from_u8)
            .ok_or_else(|| format!("unknown reset_hint {}", self.reset_hint))?;
        let (count, zero_count) = if float {
            (self.float_count(self.count)?, self.float_count(self.zero_count)?)
        } else {
            (self.int_count(self.count, "count")?, self.int_count(self.zero_count, "zero count")?)
        };
        let (positive_spans, positive_buckets) = side(&self.positive, float)?;
        let (negative_spans, negative_buckets) = side(&self.negative, float)?;
        let h = Histogram {
            counter_reset_hint,
            schema: self.schema,
            zero_threshold: self.zero_threshold,
            zero_count,
            count,
            sum: self.sum,
            positive_spans,
            positive_buckets,
            negative_spans,
            negative_buckets,
            custom_values: self.custom_values.to_vec(),
        };
        h.validate(!float).map_err(|e| e.to_string())?;
        Ok(HistogramSample { ts: self.timestamp, start_ts: NO_START, h })
    }

    fn int_count(&self, c: Option<Count>, what: &str) -> Result<f64, String> {
        match c {
            None => Ok(0.0),
            Some(Count::Int(n)) => Ok(n as f64),
            Some(Count::Float(v)) => Err(format!("integer histogram (count_int) with a float {what} ({v})")),
        }
    }

    fn float_count(&self, c: Option<Count>) -> Result<f64, String> {
        match c {
            None => Ok(0.0),
            Some(Count::Float(v)) => Ok(v),
            Some(Count::Int(n)) => Err(format!("float histogram (count_float) with an integer zero count ({n})")),
        }
    }
}

/// One side's spans, checked to address 32-bit bucket indexes, and its absolute bucket counts.
fn side(s: &Side<'_>, float: bool) -> Result<(Vec<Span>, Vec<f64>), String> {
    let name = s.name;
    let mut index: i64 = 0;
    for (n, span) in s.spans.iter().enumerate() {
        // A negative length encoded as protobuf's uint32 arrives as a length near 2^32.
        if span.length > i32::MAX as u32 {
            return Err(format!(
                "{name} side: span number {} has length {}, more buckets than a bucket index can address (a negative length?)",
                n + 1,
                span.length
            ));
        }
        index = if n == 0 { i64::from(span.offset) } else { index + i64::from(span.offset) };
        let last = index + i64::from(span.length) - 1;
        if index < i64::from(i32::MIN) || (span.length > 0 && last > i64::from(i32::MAX)) {
            return Err(format!(
                "{name} side: span number {} with offset {} and length {} reaches beyond the 32-bit bucket indexes",
                n + 1,
                span.offset,
                span.length
            ));
        }
        index += i64::from(span.length);
    }
    let buckets = if float {
        if !s.deltas.is_empty() {
            return Err(format!(
                "float histogram (count_float) with {name}_deltas: float histograms carry absolute {name}_counts"
            ));
        }
        s.counts.to_vec()
    } else {
        if !s.counts.is_empty() {
            return Err(format!(
                "integer histogram (count_int) with {name}_counts: integer histograms carry {name}_deltas"
            ));
        }
        let mut running: i64 = 0;
        let mut out = Vec::with_capacity(s.deltas.len());
        for (i, &d) in s.deltas.iter().enumerate() {
            running = running
                .checked_add(d)
                .ok_or_else(|| format!("{name} side: bucket {i}: the deltas overflow a 64-bit count"))?;
            out.push(running as f64);
        }
        out
    };
    Ok((s.spans.clone(), buckets))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(offset: i32, length: u32) -> prompb::BucketSpan {
        prompb::BucketSpan { offset, length }
    }

    /// The compliance suite's histogram: positive counts 1,3,4,7,8, negative 1,2, zero 1.
    fn integer() -> prompb::Histogram {
        prompb::Histogram {
            count: Some(prompb::histogram::Count::CountInt(27)),
            sum: 1.0,
            schema: 0,
            zero_threshold: 1e-128,
            zero_count: Some(prompb::histogram::ZeroCount::ZeroCountInt(1)),
            negative_spans: vec![span(0, 2)],
            negative_deltas: vec![1, 1],
            positive_spans: vec![span(0, 3), span(2, 2)],
            positive_deltas: vec![1, 2, 1, 3, 1],
            reset_hint: 2,
            timestamp: 1000,
            ..Default::default()
        }
    }

    fn convert(h: &prompb::Histogram) -> Result<HistogramSample, String> {
        WireHistogram::from(h).to_sample()
    }

    #[test]
    fn integer_deltas_become_absolute_counts() {
        let s = convert(&integer()).unwrap();
        assert_eq!(s.ts, 1000);
        assert_eq!(s.h.positive_buckets, vec![1.0, 3.0, 4.0, 7.0, 8.0]);
        assert_eq!(s.h.negative_buckets, vec![1.0, 2.0]);
        assert_eq!((s.h.count, s.h.zero_count, s.h.sum), (27.0, 1.0, 1.0));
        assert_eq!(s.h.counter_reset_hint, CounterResetHint::NotReset);
        assert_eq!(s.h.positive_spans, vec![Span { offset: 0, length: 3 }, Span { offset: 2, length: 2 }]);
    }

    #[test]
    fn float_counts_are_kept_and_custom_buckets_carry_their_bounds() {
        let h = prompb::Histogram {
            count: Some(prompb::histogram::Count::CountFloat(2.5)),
            sum: 3.0,
            schema: -53,
            positive_spans: vec![span(0, 2)],
            positive_counts: vec![0.5, 2.0],
            custom_values: vec![1.0, 5.0],
            reset_hint: 3,
            ..Default::default()
        };
        let s = convert(&h).unwrap();
        assert_eq!(s.h.positive_buckets, vec![0.5, 2.0]);
        assert_eq!(s.h.custom_values, vec![1.0, 5.0]);
        assert!(s.h.is_gauge());
    }

    #[test]
    fn bad_histograms_are_refused_naming_the_problem() {
        let mut cases: Vec<(prompb::Histogram, &str)> = Vec::new();
        let mut h = integer();
        h.positive_deltas.pop();
        cases.push((
            h,
            "positive side: spans need 5 buckets, have 4 buckets: histogram spans specify different number of buckets than provided",
        ));
        let mut h = integer();
        h.negative_spans = vec![span(0, u32::MAX)];
        cases.push((
            h,
            "negative side: span number 1 has length 4294967295, more buckets than a bucket index can address (a negative length?)",
        ));
        let mut h = integer();
        h.positive_spans = vec![span(i32::MAX, 3), span(2, 2)];
        cases.push((
            h,
            "positive side: span number 1 with offset 2147483647 and length 3 reaches beyond the 32-bit bucket indexes",
        ));
        let mut h = integer();
        h.schema = 9;
        cases.push((h, "histogram has unsupported schema 9 (valid: -4 to 8, or -53 for custom buckets)"));
        let mut h = integer();
        h.count = Some(prompb::histogram::Count::CountInt(99));
        cases.push((
            h,
            "27 observations found in buckets, but the Count field is 99: histogram's observation count should equal the number of observations found in the buckets (in absence of NaN)",
        ));
        let mut h = integer();
        h.positive_deltas = vec![1, 2, -4, 3, 1];
        cases.push((
            h,
            "positive side: bucket 2 has count -1: histogram has a bucket whose observation count is negative or NaN",
        ));
        let nan_count =
            prompb::Histogram { count: Some(prompb::histogram::Count::CountFloat(f64::NAN)), ..Default::default() };
        cases.push((nan_count, "observation count NaN is negative or NaN"));
        let nan_bucket = prompb::Histogram {
            count: Some(prompb::histogram::Count::CountFloat(1.0)),
            positive_spans: vec![span(0, 1)],
            positive_counts: vec![f64::NAN],
            ..Default::default()
        };
        cases.push((
            nan_bucket,
            "positive side: bucket 0 has count NaN: histogram has a bucket whose observation count is negative or NaN",
        ));
        let mut h = integer();
        h.positive_counts = vec![1.0];
        cases.push((h, "integer histogram (count_int) with positive_counts: integer histograms carry positive_deltas"));
        let mut h = integer();
        h.reset_hint = 7;
        cases.push((h, "unknown reset_hint 7"));
        for (h, want) in cases {
            assert_eq!(convert(&h).unwrap_err(), want);
        }
    }
}
