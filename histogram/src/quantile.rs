//! Estimates from a histogram's buckets, as Prometheus's `promql/quantile.go` and
//! `promql/functions.go` make them: quantiles, fractions, variance.

use crate::arith::kahan_inc;
use crate::{Bucket, Histogram};

/// What an estimate noticed about the histogram, for PromQL's infos.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EstimateNotes {
    /// The quantile is NaN because NaN observations (a NaN sum) left the rank unreached.
    pub nan_result: bool,
    /// NaN observations skew the quantile higher.
    pub nan_skew: bool,
    /// NaN observations are left out of every fraction.
    pub nans_excluded: bool,
}

impl Bucket {
    /// Prometheus's `FractionBelow`: how much of the bucket lies below `v`, linearly or on a
    /// logarithmic scale.
    pub(crate) fn fraction_below(&self, v: f64, linear: bool) -> f64 {
        if linear {
            return (v - self.lower) / (self.upper - self.lower);
        }
        let log_lower = self.lower.abs().log2();
        let log_upper = self.upper.abs().log2();
        let log_v = v.abs().log2();
        if v > 0.0 {
            return (log_v - log_lower) / (log_upper - log_lower);
        }
        1.0 - ((log_v - log_upper) / (log_lower - log_upper))
    }
}

impl Histogram {
    /// Prometheus's `HistogramQuantile`.
    pub fn quantile(&self, q: f64) -> (f64, EstimateNotes) {
        let mut notes = EstimateNotes::default();
        if q < 0.0 {
            return (f64::NEG_INFINITY, notes);
        }
        if q > 1.0 {
            return (f64::INFINITY, notes);
        }
        if self.count == 0.0 || q.is_nan() {
            return (f64::NAN, notes);
        }
        let all = self.buckets();
        let forward = self.sum.is_nan() || q < 0.5;
        let mut rank = if forward { q * self.count } else { (1.0 - q) * self.count };
        let order: Box<dyn Iterator<Item = &Bucket>> =
            if forward { Box::new(all.iter()) } else { Box::new(all.iter().rev()) };
        let mut it = order.peekable();
        let mut bucket = Bucket { lower: 0.0, upper: 0.0, lower_inclusive: false, upper_inclusive: false, count: 0.0 };
        let mut count = 0.0;
        for b in it.by_ref() {
            bucket = *b;
            if bucket.count == 0.0 {
                continue;
            }
            count += bucket.count;
            if count >= rank {
                break;
            }
        }
        if !self.uses_custom_buckets() && bucket.lower < 0.0 && bucket.upper > 0.0 {
            if self.negative_buckets.is_empty() && !self.positive_buckets.is_empty() {
                bucket.lower = 0.0;
            } else if self.positive_buckets.is_empty() && !self.negative_buckets.is_empty() {
                bucket.upper = 0.0;
            }
        } else if self.uses_custom_buckets() {
            if bucket.lower == f64::NEG_INFINITY {
                if bucket.upper <= 0.0 {
                    return (bucket.upper, notes);
                }
                bucket.lower = 0.0;
            } else if bucket.upper == f64::INFINITY {
                return (bucket.lower, notes);
            }
        }
        if count > self.count {
            count = self.count;
        }
        if count < rank {
            if self.sum.is_nan() {
                notes.nan_result = true;
                return (f64::NAN, notes);
            }
            return (bucket.upper, notes);
        }
        if forward {
            rank -= count - bucket.count;
        } else {
            rank = count - rank;
        }
        if self.sum.is_nan() {
            for b in it {
                count += b.count;
            }
            notes.nan_skew = count < self.count;
        }
        let fraction = rank / bucket.count;
        if self.uses_custom_buckets() || (bucket.lower <= 0.0 && bucket.upper >= 0.0) {
            return (bucket.lower + (bucket.upper - bucket.lower) * fraction, notes);
        }
        let log_lower = bucket.lower.abs().log2();
        let log_upper = bucket.upper.abs().log2();
        if bucket.lower > 0.0 {
            return ((log_lower + (log_upper - log_lower) * fraction).exp2(), notes);
        }
        (-(log_upper + (log_lower - log_upper) * (1.0 - fraction)).exp2(), notes)
    }

    /// Prometheus's `HistogramFraction`: the estimated share of observations in `[lower, upper]`.
    pub fn fraction(&self, lower: f64, upper: f64) -> (f64, EstimateNotes) {
        let mut notes = EstimateNotes::default();
        if self.count == 0.0 || lower.is_nan() || upper.is_nan() {
            return (f64::NAN, notes);
        }
        if lower >= upper {
            return (0.0, notes);
        }
        let (mut count, mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0, 0.0);
        let (mut lower_set, mut upper_set) = (false, false);
        let all = self.buckets();
        let mut it = all.iter();
        for b in it.by_ref() {
            let mut b = *b;
            count += b.count;
            let mut zero_bucket = false;
            if b.lower <= 0.0 && b.upper >= 0.0 {
                zero_bucket = true;
                if self.negative_buckets.is_empty() && !self.positive_buckets.is_empty() {
                    b.lower = 0.0;
                } else if self.positive_buckets.is_empty() && !self.negative_buckets.is_empty() {
                    b.upper = 0.0;
                }
            }
            let linear = self.uses_custom_buckets() || zero_bucket;
            let interpolate = |v: f64| {
                if linear && b.lower == f64::NEG_INFINITY {
                    return b.count;
                }
                rank + b.count * b.fraction_below(v, linear)
            };
            if !lower_set && b.lower >= lower {
                lower_rank = rank;
                lower_set = true;
            }
            if !upper_set && b.lower >= upper {
                upper_rank = rank;
                upper_set = true;
            }
            if lower_set && upper_set {
                break;
            }
            if !lower_set && b.lower < lower && b.upper > lower {
                lower_rank = interpolate(lower);
                lower_set = true;
            }
            if !upper_set && b.lower < upper && b.upper > upper {
                upper_rank = interpolate(upper);
                upper_set = true;
            }
            if lower_set && upper_set {
                break;
            }
            rank += b.count;
        }
        if self.sum.is_nan() {
            for b in it {
                count += b.count;
            }
            notes.nans_excluded = count < self.count;
        } else {
            count = self.count;
        }
        if !lower_set || lower_rank > count {
            lower_rank = count;
        }
        if !upper_set || upper_rank > count {
            upper_rank = count;
        }
        ((upper_rank - lower_rank) / self.count, notes)
    }

    /// The estimated variance of the observations (Prometheus's `histogramVariance`): each
    /// bucket's observations at its midpoint (arithmetic for custom buckets and the zero bucket,
    /// geometric for exponential ones).
    pub fn variance(&self) -> f64 {
        let mean = self.sum / self.count;
        let (mut variance, mut c) = (0.0, 0.0);
        for b in self.buckets() {
            if b.count == 0.0 {
                continue;
            }
            let v = if self.uses_custom_buckets() {
                (b.upper + b.lower) / 2.0
            } else if b.lower <= 0.0 && b.upper >= 0.0 {
                0.0
            } else {
                let v = (b.upper * b.lower).sqrt();
                if b.upper < 0.0 { -v } else { v }
            };
            let delta = v - mean;
            (variance, c) = kahan_inc(b.count * delta * delta, variance, c);
        }
        (variance + c) / self.count
    }
}

#[cfg(test)]
mod tests {
    use crate::{Histogram, Span};

    fn h() -> Histogram {
        // Schema 0, buckets (0.5,1]: 1, (1,2]: 2, (2,4]: 1.
        Histogram {
            count: 4.0,
            sum: 6.0,
            positive_spans: vec![Span { offset: 0, length: 3 }],
            positive_buckets: vec![1.0, 2.0, 1.0],
            ..Default::default()
        }
    }

    #[test]
    fn quantiles_interpolate_on_a_log_scale() {
        assert_eq!(h().quantile(0.5).0, std::f64::consts::SQRT_2);
        assert_eq!(h().quantile(0.25).0, 1.0);
        assert_eq!(h().quantile(1.0).0, 4.0);
        assert!(h().quantile(f64::NAN).0.is_nan());
        assert_eq!(h().quantile(-1.0).0, f64::NEG_INFINITY);
    }

    #[test]
    fn fractions_cover_the_range() {
        assert_eq!(h().fraction(0.0, 1.0).0, 0.25);
        assert_eq!(h().fraction(f64::NEG_INFINITY, f64::INFINITY).0, 1.0);
        assert_eq!(h().fraction(2.0, 1.0).0, 0.0);
    }
}
