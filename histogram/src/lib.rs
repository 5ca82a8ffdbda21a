//! Prometheus native histograms (`shared/specs/native_histograms.md`): the data model Amber keeps,
//! its validation rules and the boundaries of its buckets.
//!
//! One type, [`Histogram`], holds both integer and float histograms in the float form: absolute
//! bucket counts, not the deltas of the wire format. Integer histograms stay recognisable (every
//! count is a whole number), which the block codecs use to store them as varints; PromQL works on
//! the float form anyway, as Prometheus converts every histogram it reads to a `FloatHistogram`.
//!
//! Storage, the PromQL engine and the API all use this crate, so a histogram means the same thing
//! on the wire, on disk and in a query.

use thiserror::Error;

mod arith;
mod bounds_table;
mod quantile;
mod running;
mod trim;

pub use arith::{Combined, IncompatibleSchemas, kahan_inc};
pub use quantile::EstimateNotes;
pub use running::Running;
pub use trim::Trim;

/// The lowest and highest standard exponential schemas.
pub const MIN_SCHEMA: i32 = -4;
pub const MAX_SCHEMA: i32 = 8;
/// The schema of histograms with custom bucket boundaries (NHCB).
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;

/// Prometheus's staleness marker, carried by a histogram in its `sum`.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// A run of consecutive buckets. The first span's offset is the index of its first bucket; each
/// later span's offset is the gap of empty buckets since the previous span ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Span {
    pub offset: i32,
    pub length: u32,
}

/// What the sender says about counter resets (remote write's `ResetHint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum CounterResetHint {
    /// Nothing said: PromQL compares with the previous sample to find a reset.
    #[default]
    Unknown = 0,
    /// A counter reset happened before this sample.
    Reset = 1,
    /// No counter reset happened.
    NotReset = 2,
    /// A gauge histogram: counts go up and down, there are no resets.
    Gauge = 3,
}

impl CounterResetHint {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Unknown,
            1 => Self::Reset,
            2 => Self::NotReset,
            3 => Self::Gauge,
            _ => return None,
        })
    }
}

/// A native histogram sample's value.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Histogram {
    pub counter_reset_hint: CounterResetHint,
    pub schema: i32,
    /// Observations with an absolute value at most this fall in the zero bucket.
    pub zero_threshold: f64,
    pub zero_count: f64,
    pub count: f64,
    pub sum: f64,
    pub positive_spans: Vec<Span>,
    /// Absolute counts, one per bucket the positive spans cover.
    pub positive_buckets: Vec<f64>,
    pub negative_spans: Vec<Span>,
    pub negative_buckets: Vec<f64>,
    /// Upper bounds of the custom buckets (schema −53 only), ascending; `+Inf` implied last.
    pub custom_values: Vec<f64>,
}

/// Why a histogram can never be stored. The texts follow Prometheus's where it has one.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum HistogramError {
    #[error("histogram has unsupported schema {0} (valid: -4 to 8, or -53 for custom buckets)")]
    SchemaOutOfRange(i32),
    #[error(
        "{side} side: spans need {spans} buckets, have {buckets} buckets: histogram spans specify different number of buckets than provided"
    )]
    SpanBucketMismatch { side: &'static str, spans: u64, buckets: usize },
    #[error("{side} side: span number {span} with offset {offset}: histogram has a span whose offset is negative")]
    NegativeSpanOffset { side: &'static str, span: usize, offset: i32 },
    #[error(
        "{side} side: bucket {bucket} has count {count}: histogram has a bucket whose observation count is negative or NaN"
    )]
    BadBucketCount { side: &'static str, bucket: usize, count: f64 },
    #[error("zero bucket count {0} is negative or NaN")]
    BadZeroCount(f64),
    #[error("zero threshold {0} is negative or NaN")]
    BadZeroThreshold(f64),
    #[error("observation count {0} is negative or NaN")]
    BadCount(f64),
    #[error(
        "{count} observations found in buckets, but the Count field is {field}: histogram's observation count should be at least the number of observations found in the buckets"
    )]
    CountBelowBuckets { count: f64, field: f64 },
    #[error(
        "{count} observations found in buckets, but the Count field is {field}: histogram's observation count should equal the number of observations found in the buckets (in absence of NaN)"
    )]
    CountNotBuckets { count: f64, field: f64 },
    #[error("custom buckets: must be ascending, and at least one custom bound is needed per bucket ({0})")]
    BadCustomBounds(String),
    #[error("histogram with custom buckets must not have negative buckets or a zero bucket")]
    CustomWithNegative,
}

impl Histogram {
    /// Whether this is a staleness marker (Prometheus writes it in `sum`).
    pub fn is_stale_marker(&self) -> bool {
        self.sum.to_bits() == STALE_NAN_BITS
    }

    pub fn uses_custom_buckets(&self) -> bool {
        self.schema == CUSTOM_BUCKETS_SCHEMA
    }

    /// A gauge histogram (counts may go down).
    pub fn is_gauge(&self) -> bool {
        self.counter_reset_hint == CounterResetHint::Gauge
    }

    /// Whether every count is a whole number: an integer histogram, as senders of the integer
    /// form (`count_int`, delta-encoded buckets) send them.
    pub fn is_integer(&self) -> bool {
        let whole = |v: f64| v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < 9.0e15;
        whole(self.count)
            && whole(self.zero_count)
            && self.positive_buckets.iter().all(|&v| whole(v))
            && self.negative_buckets.iter().all(|&v| whole(v))
    }

    /// Checks the rules Prometheus's `histogram.Validate` checks, so that nothing stored breaks a
    /// query later. `integer` adds the rule of integer histograms that the count equals the
    /// buckets' total when the sum is not NaN (float histograms may lose observations to rounding
    /// and only need at least that many).
    pub fn validate(&self, integer: bool) -> Result<(), HistogramError> {
        if self.is_stale_marker() {
            return Ok(());
        }
        let custom = self.uses_custom_buckets();
        if !custom && !(MIN_SCHEMA..=MAX_SCHEMA).contains(&self.schema) {
            return Err(HistogramError::SchemaOutOfRange(self.schema));
        }
        let mut total = 0.0;
        total += check_side("positive", &self.positive_spans, &self.positive_buckets)?;
        total += check_side("negative", &self.negative_spans, &self.negative_buckets)?;
        if custom {
            if !self.negative_buckets.is_empty() || !self.negative_spans.is_empty() || self.zero_count != 0.0 {
                return Err(HistogramError::CustomWithNegative);
            }
            check_custom_bounds(&self.custom_values, &self.positive_spans)?;
        } else {
            if negative_or_nan(self.zero_threshold) {
                return Err(HistogramError::BadZeroThreshold(self.zero_threshold));
            }
            if negative_or_nan(self.zero_count) {
                return Err(HistogramError::BadZeroCount(self.zero_count));
            }
        }
        total += self.zero_count;
        if negative_or_nan(self.count) {
            return Err(HistogramError::BadCount(self.count));
        }
        if self.sum.is_nan() {
            if total > self.count && integer {
                return Err(HistogramError::CountBelowBuckets { count: total, field: self.count });
            }
        } else if integer && total != self.count {
            return Err(HistogramError::CountNotBuckets { count: total, field: self.count });
        } else if !integer && total > self.count * (1.0 + 1e-9) + 1e-9 {
            return Err(HistogramError::CountBelowBuckets { count: total, field: self.count });
        }
        Ok(())
    }

    /// Every bucket with its boundaries and count, from the lowest up, as Prometheus's
    /// `AllBucketIterator` gives them (the API, quantiles and fractions walk this list): negative
    /// buckets from the most negative, the zero bucket when it has a count, then positive buckets.
    /// Empty buckets inside spans are included; a bucket reaching into the zero bucket ends at
    /// the zero threshold.
    pub fn buckets(&self) -> Vec<Bucket> {
        let mut out = Vec::with_capacity(self.positive_buckets.len() + self.negative_buckets.len() + 1);
        let custom = self.uses_custom_buckets();
        let threshold = self.zero_threshold;
        let negative: Vec<(i32, f64)> = indexed(&self.negative_spans, &self.negative_buckets).collect();
        for &(index, count) in negative.iter().rev() {
            let (lower, upper) = bucket_bounds(self.schema, index, &self.custom_values);
            let (lower, mut upper) = (-upper, -lower);
            if upper < 0.0 && upper > -threshold {
                upper = -threshold;
            }
            out.push(Bucket { lower, upper, lower_inclusive: lower < 0.0, upper_inclusive: upper > 0.0, count });
        }
        if !custom && self.zero_count > 0.0 {
            out.push(Bucket {
                lower: -threshold,
                upper: threshold,
                lower_inclusive: true,
                upper_inclusive: true,
                count: self.zero_count,
            });
        }
        for (index, count) in indexed(&self.positive_spans, &self.positive_buckets) {
            let (mut lower, upper) = bucket_bounds(self.schema, index, &self.custom_values);
            if custom {
                out.push(Bucket { lower, upper, lower_inclusive: index == 0, upper_inclusive: true, count });
                continue;
            }
            if lower > 0.0 && lower < threshold {
                lower = threshold;
            }
            out.push(Bucket { lower, upper, lower_inclusive: lower < 0.0, upper_inclusive: upper > 0.0, count });
        }
        out
    }
}

/// The histogram as Prometheus's `FloatHistogram.String()` writes it (what `count_values` puts
/// in its label): `{count:20, sum:10, [-2,-1):2, [-0.001,0.001]:2, (1,2]:2}`, the buckets with a
/// count, from the lowest up.
impl std::fmt::Display for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{{count:{}, sum:{}", GoFloat(self.count), GoFloat(self.sum))?;
        for b in self.buckets().iter().filter(|b| b.count != 0.0) {
            let (open, close) = (if b.lower_inclusive { '[' } else { '(' }, if b.upper_inclusive { ']' } else { ')' });
            write!(f, ", {open}{},{}{close}:{}", GoFloat(b.lower), GoFloat(b.upper), GoFloat(b.count))?;
        }
        f.write_str("}")
    }
}

/// A float as Go's `%g` (and `%v`) writes it: the shortest digits, in exponent form (`1e+06`,
/// `1.5e-07`) when the exponent is below -4 or at least 6.
struct GoFloat(f64);

impl std::fmt::Display for GoFloat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.0;
        if v.is_nan() {
            return f.write_str("NaN");
        }
        if v.is_infinite() {
            return f.write_str(if v > 0.0 { "+Inf" } else { "-Inf" });
        }
        let scientific = format!("{v:e}");
        let (mantissa, exponent) = scientific.split_once('e').expect("`{:e}` writes an exponent");
        let exponent: i32 = exponent.parse().expect("`{:e}` writes an integer exponent");
        if (-4..6).contains(&exponent) {
            write!(f, "{v}")
        } else {
            let sign = if exponent < 0 { '-' } else { '+' };
            write!(f, "{mantissa}e{sign}{:02}", exponent.abs())
        }
    }
}

/// One bucket of [`Histogram::buckets`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub lower: f64,
    pub upper: f64,
    pub lower_inclusive: bool,
    pub upper_inclusive: bool,
    pub count: f64,
}

impl Bucket {
    /// The `boundary_rule` of Prometheus's JSON: 0 open left, 1 open right, 2 open both, 3 closed
    /// both.
    pub fn boundary_rule(&self) -> u8 {
        match (self.lower_inclusive, self.upper_inclusive) {
            (false, true) => 0,
            (true, false) => 1,
            (false, false) => 2,
            (true, true) => 3,
        }
    }
}

/// `(bucket index, count)` for every bucket the spans cover, in index order.
pub fn indexed<'a>(spans: &'a [Span], counts: &'a [f64]) -> impl Iterator<Item = (i32, f64)> + 'a {
    let mut index = 0i32;
    let mut at = 0usize;
    spans.iter().enumerate().flat_map(move |(n, span)| {
        index = if n == 0 { span.offset } else { index.saturating_add(span.offset) };
        let first = index;
        index = index.saturating_add(span.length as i32);
        let from = at;
        at += span.length as usize;
        (0..span.length as usize).filter_map(move |k| counts.get(from + k).map(|&c| (first + k as i32, c)))
    })
}

/// The `(lower, upper]` boundaries of positive bucket `index` under `schema` (for custom buckets,
/// `custom` holds the upper bounds). Negative buckets mirror these.
pub fn bucket_bounds(schema: i32, index: i32, custom: &[f64]) -> (f64, f64) {
    if schema == CUSTOM_BUCKETS_SCHEMA {
        let upper = usize::try_from(index).ok().and_then(|i| custom.get(i)).copied().unwrap_or(f64::INFINITY);
        let lower = match index {
            i if i <= 0 => f64::NEG_INFINITY,
            i => custom.get(i as usize - 1).copied().unwrap_or(f64::INFINITY),
        };
        return (lower, upper);
    }
    (exponential_upper_bound(schema, index - 1), exponential_upper_bound(schema, index))
}

/// The upper bound of exponential bucket `index`: `2^(index · 2^-schema)`, exactly as
/// Prometheus's `getBoundExponential` computes it (a fraction from its table, scaled by a power of
/// two), so boundaries equal Prometheus's to the bit. The last bucket of finite numbers ends at
/// `f64::MAX` rather than `+Inf`, which only the bucket of infinite observations reaches.
pub fn exponential_upper_bound(schema: i32, index: i32) -> f64 {
    if schema < 0 {
        let exp = i64::from(index) << (-schema) as u32;
        if exp == 1024 {
            return f64::MAX;
        }
        return ldexp(1.0, exp);
    }
    let frac_idx = index & ((1 << schema) - 1);
    let frac = bounds_table::EXPONENTIAL_BOUNDS[schema as usize][frac_idx as usize];
    let exp = i64::from(index >> schema) + 1;
    if frac == 0.5 && exp == 1025 {
        return f64::MAX;
    }
    ldexp(frac, exp)
}

/// `frac · 2^exp` rounded once, as Go's `math.Ldexp`: infinite above the largest float, zero
/// below the smallest subnormal.
fn ldexp(frac: f64, exp: i64) -> f64 {
    let pow2 = |e: i64| f64::from_bits(((e + 1023) as u64) << 52);
    if exp > 1023 {
        return if exp > 1100 { f64::INFINITY } else { frac * pow2(1023) * pow2(exp - 1023) };
    }
    if exp < -1022 {
        // Scale into the normal range first so that the one rounding is the last multiply.
        return if exp < -1200 { 0.0 } else { frac * pow2(exp + 1074) * f64::from_bits(1) };
    }
    frac * pow2(exp)
}

fn negative_or_nan(v: f64) -> bool {
    v.is_nan() || v < 0.0
}

/// Checks one side's spans against its bucket counts; returns the side's total count.
fn check_side(side: &'static str, spans: &[Span], counts: &[f64]) -> Result<f64, HistogramError> {
    let mut needed: u64 = 0;
    for (n, span) in spans.iter().enumerate() {
        if n > 0 && span.offset < 0 {
            return Err(HistogramError::NegativeSpanOffset { side, span: n + 1, offset: span.offset });
        }
        needed += span.length as u64;
    }
    if needed != counts.len() as u64 {
        return Err(HistogramError::SpanBucketMismatch { side, spans: needed, buckets: counts.len() });
    }
    let mut total = 0.0;
    for (bucket, &count) in counts.iter().enumerate() {
        if negative_or_nan(count) {
            return Err(HistogramError::BadBucketCount { side, bucket, count });
        }
        total += count;
    }
    Ok(total)
}

fn check_custom_bounds(custom: &[f64], spans: &[Span]) -> Result<(), HistogramError> {
    if custom.iter().any(|v| v.is_nan()) || custom.windows(2).any(|w| w[0] >= w[1]) {
        return Err(HistogramError::BadCustomBounds(format!("{custom:?} are not strictly ascending")));
    }
    let highest = indexed(spans, &vec![0.0; spans.iter().map(|s| s.length as usize).sum()]).map(|(i, _)| i).max();
    if let Some(highest) = highest {
        if highest < 0 {
            return Err(HistogramError::BadCustomBounds(format!("bucket index {highest} is negative")));
        }
        // Index len(custom) is the +Inf bucket.
        if highest as usize > custom.len() {
            return Err(HistogramError::BadCustomBounds(format!(
                "bucket index {highest} needs more than the {} custom bounds given",
                custom.len()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(schema: i32, spans: &[(i32, u32)], buckets: &[f64]) -> Histogram {
        Histogram {
            schema,
            count: buckets.iter().sum(),
            sum: 1.0,
            positive_spans: spans.iter().map(|&(offset, length)| Span { offset, length }).collect(),
            positive_buckets: buckets.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn floats_print_as_go_percent_g() {
        let cases = [
            (1.0, "1"),
            (-0.5, "-0.5"),
            (123456.0, "123456"),
            (1e6, "1e+06"),
            (1.5e-7, "1.5e-07"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.25e21, "1.25e+21"),
            (f64::INFINITY, "+Inf"),
            (f64::NAN, "NaN"),
        ];
        for (v, want) in cases {
            assert_eq!(GoFloat(v).to_string(), want);
        }
    }

    #[test]
    fn histograms_print_as_prometheus_strings() {
        let mut histogram = h(0, &[(0, 2)], &[1.0, 2.0]);
        histogram.count = 20.0;
        histogram.sum = 10.0;
        histogram.zero_threshold = 0.001;
        histogram.zero_count = 2.0;
        histogram.negative_spans = vec![Span { offset: 0, length: 2 }];
        histogram.negative_buckets = vec![1.0, 2.0];
        assert_eq!(
            histogram.to_string(),
            "{count:20, sum:10, [-2,-1):2, [-1,-0.5):1, [-0.001,0.001]:2, (0.5,1]:1, (1,2]:2}"
        );
    }

    #[test]
    fn bounds_follow_the_schema() {
        assert_eq!(bucket_bounds(0, 1, &[]), (1.0, 2.0));
        assert_eq!(bucket_bounds(0, 0, &[]), (0.5, 1.0));
        assert_eq!(bucket_bounds(-1, 1, &[]), (1.0, 4.0));
        // Prometheus's table, one ulp below `SQRT_2`: 0.7071067811865475 · 2.
        assert_eq!(bucket_bounds(1, 2, &[]), (f64::from_bits(std::f64::consts::SQRT_2.to_bits() - 1), 2.0));
        assert_eq!(exponential_upper_bound(0, 1024), f64::MAX);
        assert_eq!(exponential_upper_bound(0, 1025), f64::INFINITY);
        assert_eq!(exponential_upper_bound(-2, 256), f64::MAX);
        assert_eq!(exponential_upper_bound(0, -1074), 5e-324);
        assert_eq!(exponential_upper_bound(3, -1), 0.9170040432046711);
        assert_eq!(bucket_bounds(CUSTOM_BUCKETS_SCHEMA, 0, &[1.0, 5.0]), (f64::NEG_INFINITY, 1.0));
        assert_eq!(bucket_bounds(CUSTOM_BUCKETS_SCHEMA, 2, &[1.0, 5.0]), (5.0, f64::INFINITY));
    }

    #[test]
    fn buckets_list_every_index_of_the_spans() {
        let x = h(0, &[(0, 2), (1, 1)], &[1.0, 2.0, 3.0]);
        let b: Vec<(f64, f64, f64)> = x.buckets().iter().map(|b| (b.lower, b.upper, b.count)).collect();
        assert_eq!(b, vec![(0.5, 1.0, 1.0), (1.0, 2.0, 2.0), (4.0, 8.0, 3.0)]);
    }

    #[test]
    fn validation_names_the_problem() {
        assert_eq!(h(9, &[], &[]).validate(true), Err(HistogramError::SchemaOutOfRange(9)));
        assert!(matches!(
            h(0, &[(0, 3)], &[1.0]).validate(true),
            Err(HistogramError::SpanBucketMismatch { spans: 3, buckets: 1, .. })
        ));
        assert!(matches!(
            h(0, &[(0, 1), (-2, 1)], &[1.0, 1.0]).validate(true),
            Err(HistogramError::NegativeSpanOffset { offset: -2, .. })
        ));
        assert!(matches!(h(0, &[(0, 1)], &[f64::NAN]).validate(false), Err(HistogramError::BadBucketCount { .. })));
        let mut x = h(0, &[(0, 1)], &[2.0]);
        x.count = 1.0;
        assert!(matches!(x.validate(true), Err(HistogramError::CountNotBuckets { .. })));
        assert_eq!(h(0, &[(0, 2)], &[1.0, 2.0]).validate(true), Ok(()));
        assert!(matches!(
            h(CUSTOM_BUCKETS_SCHEMA, &[(0, 2)], &[1.0, 2.0]).validate(true),
            Err(HistogramError::BadCustomBounds(_))
        ));
        let mut c = h(CUSTOM_BUCKETS_SCHEMA, &[(0, 2)], &[1.0, 2.0]);
        c.custom_values = vec![1.0];
        assert_eq!(c.validate(true), Ok(()));
    }
}
