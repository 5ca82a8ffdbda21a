//! Native histograms for the tests: a few shapes that between them take every path the wire
//! format and the codecs distinguish (integer and float counts, two exponential schemas, custom
//! buckets, negative and zero buckets, a gauge histogram), as the value Amber stores
//! ([`amber_storage::Histogram`]) and as remote write sends it.

use amber_api::prompb;
use amber_storage::Histogram;
use amber_storage::histogram::{CounterResetHint, Span};

/// The shapes a test can write; [`Shape::at`] gives the histogram at a step of its series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The remote write compliance suite's layout: schema 0, positive spans {0,3},{2,2}, negative
    /// span {0,2}, a zero bucket; integer counts.
    IntegerSchema0,
    /// Schema 3 (client_golang's default factor), one span below index 0 and one above; integer.
    IntegerSchema3,
    /// Schema −2 with fractional counts and a wide zero bucket: a float gauge histogram.
    FloatGaugeSchemaMinus2,
    /// Custom buckets (schema −53) over bounds 0.1…10, `+Inf` included; integer.
    CustomBuckets,
}

impl Shape {
    pub const ALL: [Shape; 4] =
        [Shape::IntegerSchema0, Shape::IntegerSchema3, Shape::FloatGaugeSchemaMinus2, Shape::CustomBuckets];

    /// Integer histograms go on the wire as deltas (`count_int`), float ones as absolute counts.
    pub fn is_integer(self) -> bool {
        self != Shape::FloatGaugeSchemaMinus2
    }

    /// The histogram at `step` of a series: every count is `step + 1` times the shape's base
    /// counts, so each sample of a series differs from the others and counts only grow.
    pub fn at(self, step: u64) -> Histogram {
        let n = step as f64 + 1.0;
        let span = |offset, length| Span { offset, length };
        let scaled = |base: &[f64]| base.iter().map(|c| c * n).collect::<Vec<f64>>();
        let mut h = match self {
            Shape::IntegerSchema0 => Histogram {
                schema: 0,
                zero_threshold: 1e-128,
                zero_count: n,
                sum: n,
                positive_spans: vec![span(0, 3), span(2, 2)],
                positive_buckets: scaled(&[1.0, 3.0, 4.0, 7.0, 8.0]),
                negative_spans: vec![span(0, 2)],
                negative_buckets: scaled(&[1.0, 2.0]),
                ..Histogram::default()
            },
            Shape::IntegerSchema3 => Histogram {
                schema: 3,
                zero_threshold: 1e-128,
                sum: 0.375 * n,
                positive_spans: vec![span(-6, 2), span(3, 1)],
                positive_buckets: scaled(&[2.0, 5.0, 1.0]),
                ..Histogram::default()
            },
            Shape::FloatGaugeSchemaMinus2 => Histogram {
                counter_reset_hint: CounterResetHint::Gauge,
                schema: -2,
                zero_threshold: 0.001,
                zero_count: 0.5 * n,
                sum: -3.25 * n,
                positive_spans: vec![span(1, 2)],
                positive_buckets: scaled(&[0.25, 1.75]),
                negative_spans: vec![span(0, 1)],
                negative_buckets: scaled(&[0.125]),
                ..Histogram::default()
            },
            Shape::CustomBuckets => Histogram {
                schema: amber_storage::histogram::CUSTOM_BUCKETS_SCHEMA,
                sum: 4.5 * n,
                positive_spans: vec![span(0, 7)],
                positive_buckets: scaled(&[2.0, 3.0, 5.0, 8.0, 7.0, 5.0, 1.0]),
                custom_values: vec![0.1, 0.5, 1.0, 2.5, 5.0, 10.0],
                ..Histogram::default()
            },
        };
        h.count = h.zero_count + h.positive_buckets.iter().sum::<f64>() + h.negative_buckets.iter().sum::<f64>();
        h
    }
}

/// `h` at `ts` as remote write 1.0 sends it: deltas and `count_int` when `integer`, absolute
/// counts and `count_float` otherwise. (2.0's message has the same fields:
/// `amber_api::remote_write::to_v2` carries it over.)
pub fn wire(h: &Histogram, integer: bool, ts: i64) -> prompb::Histogram {
    use prompb::histogram::{Count, ZeroCount};
    let spans = |s: &[Span]| s.iter().map(|s| prompb::BucketSpan { offset: s.offset, length: s.length }).collect();
    let deltas = |counts: &[f64]| {
        let mut previous = 0i64;
        counts
            .iter()
            .map(|&c| {
                let delta = c as i64 - previous;
                previous = c as i64;
                delta
            })
            .collect()
    };
    let mut out = prompb::Histogram {
        sum: h.sum,
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        negative_spans: spans(&h.negative_spans),
        positive_spans: spans(&h.positive_spans),
        reset_hint: h.counter_reset_hint as i32,
        timestamp: ts,
        custom_values: h.custom_values.clone(),
        ..Default::default()
    };
    if integer {
        out.count = Some(Count::CountInt(h.count as u64));
        out.zero_count = Some(ZeroCount::ZeroCountInt(h.zero_count as u64));
        out.negative_deltas = deltas(&h.negative_buckets);
        out.positive_deltas = deltas(&h.positive_buckets);
    } else {
        out.count = Some(Count::CountFloat(h.count));
        out.zero_count = Some(ZeroCount::ZeroCountFloat(h.zero_count));
        out.negative_counts = h.negative_buckets.clone();
        out.positive_counts = h.positive_buckets.clone();
    }
    out
}
