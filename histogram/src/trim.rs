//! The trim operators `</` and `>/`: a histogram without the observations above (or below) a
//! value, as Prometheus's `FloatHistogram.TrimBuckets` in `model/histogram/float_histogram.go`
//! makes it.
//!
//! A bucket wholly on the kept side stays; one wholly on the other side is emptied; the bucket the
//! cut falls into keeps its share, interpolated like `histogram_fraction` does (linearly for
//! custom buckets and the zero bucket, on a log scale for exponential ones). Buckets reaching to
//! ±Inf are kept or dropped whole, as nothing is known of where their observations lie. When a
//! bucket changed, the count becomes the kept buckets' total and the sum is re-estimated from each
//! kept bucket's midpoint; otherwise count and sum stay as they were.

use crate::{Bucket, Histogram, bucket_bounds, indexed};

/// Which observations a trim removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trim {
    /// `h </ x` (Prometheus's `TRIM_UPPER`): removes the observations above `x`.
    Upper,
    /// `h >/ x` (Prometheus's `TRIM_LOWER`): removes the observations below `x`.
    Lower,
}

impl Histogram {
    /// Removes the observations on the `trim` side of `cut` (Prometheus's `TrimBuckets`), then
    /// compacts when a bucket changed.
    pub fn trim(&mut self, cut: f64, trim: Trim) -> &mut Self {
        let upper = trim == Trim::Upper;
        let custom = self.uses_custom_buckets();
        let (mut count, mut sum) = (0.0, 0.0);
        let mut trimmed = false;
        let mut populated = [false; 2];
        for (positive, spans, counts) in [
            (true, &self.positive_spans, &mut self.positive_buckets),
            (false, &self.negative_spans, &mut self.negative_buckets),
        ] {
            let buckets: Vec<(i32, f64)> = indexed(spans, counts).collect();
            for (k, (index, bucket_count)) in buckets.into_iter().enumerate() {
                if bucket_count == 0.0 {
                    continue;
                }
                populated[usize::from(!positive)] = true;
                let (lower, upper_bound) = bucket_bounds(self.schema, index, &self.custom_values);
                let (lower, upper_bound) = if positive { (lower, upper_bound) } else { (-upper_bound, -lower) };
                let bucket = Bucket {
                    lower,
                    upper: upper_bound,
                    lower_inclusive: false,
                    upper_inclusive: true,
                    count: bucket_count,
                };
                let (kept_whole, cut_inside) =
                    if upper { (upper_bound <= cut, lower < cut) } else { (lower >= cut, upper_bound > cut) };
                if kept_whole {
                    count += bucket_count;
                    sum += midpoint(lower, upper_bound, positive, custom) * bucket_count;
                } else if cut_inside {
                    let (kept, mid) = bucket_trim(&bucket, cut, upper, positive, custom);
                    count += kept;
                    sum += mid * kept;
                    if counts[k] != kept {
                        counts[k] = kept;
                        trimmed = true;
                    }
                } else {
                    counts[k] = 0.0;
                    trimmed = true;
                }
            }
        }
        if self.zero_count > 0.0 {
            let [has_positive, has_negative] = populated;
            let (kept, mid) = zero_bucket_trim(self, cut, has_negative, has_positive, upper);
            if self.zero_count != kept {
                self.zero_count = kept;
                trimmed = true;
            }
            sum += mid * kept;
            count += kept;
        }
        if trimmed {
            self.count = count;
            self.sum = sum;
            self.compact();
        }
        self
    }
}

/// The kept count of a bucket the cut falls into, and the midpoint of its kept part
/// (Prometheus's `computeBucketTrim`).
fn bucket_trim(b: &Bucket, cut: f64, upper: bool, positive: bool, custom: bool) -> (f64, f64) {
    if b.lower == f64::NEG_INFINITY || b.upper == f64::INFINITY {
        return infinite_bucket_trim(b, cut, upper);
    }
    let below = if cut <= b.lower {
        0.0
    } else if cut >= b.upper {
        b.count
    } else {
        b.count * b.fraction_below(cut, custom)
    };
    if upper {
        (below, midpoint(b.lower, cut, positive, custom))
    } else {
        (b.count - below, midpoint(cut, b.upper, positive, custom))
    }
}

/// A bucket reaching to -Inf or +Inf, which only custom buckets have (Prometheus's
/// `handleInfinityBuckets`): kept or dropped whole, except that a first bucket ending at a
/// positive bound is taken to start at 0 and interpolated linearly.
fn infinite_bucket_trim(b: &Bucket, cut: f64, upper: bool) -> (f64, f64) {
    let finite_or_zero = |x: f64| if x.is_infinite() { 0.0 } else { x };
    if b.lower == f64::NEG_INFINITY {
        if upper {
            if cut >= b.upper {
                return (b.count, 0.0);
            }
            if cut > 0.0 && b.upper > 0.0 && b.upper != f64::INFINITY {
                return (b.count * cut / b.upper, cut / 2.0);
            }
            if b.upper <= 0.0 {
                return (b.count, cut);
            }
            return (0.0, finite_or_zero(b.upper));
        }
        if cut <= b.lower {
            return (b.count, 0.0);
        }
        if cut >= 0.0 && b.upper > cut && b.upper != f64::INFINITY {
            return (b.count * (1.0 - cut / b.upper), (cut + b.upper) / 2.0);
        }
        return (0.0, finite_or_zero(b.upper));
    }
    // The bucket ends at +Inf.
    if !upper && cut >= b.lower {
        return (b.count, cut);
    }
    (0.0, finite_or_zero(b.lower))
}

/// The kept count of the zero bucket and the midpoint of its kept part (Prometheus's
/// `computeZeroBucketTrim`). With buckets on one side only, the zero bucket is taken to hold
/// observations of that sign only.
fn zero_bucket_trim(h: &Histogram, cut: f64, has_negative: bool, has_positive: bool, upper: bool) -> (f64, f64) {
    let (mut lower, mut upper_bound) = (-h.zero_threshold, h.zero_threshold);
    if has_negative && !has_positive {
        upper_bound = 0.0;
    }
    if has_positive && !has_negative {
        lower = 0.0;
    }
    let (fraction, mid) = if upper {
        if cut <= lower {
            return (0.0, 0.0);
        }
        if cut >= upper_bound {
            return (h.zero_count, (lower + upper_bound) / 2.0);
        }
        ((cut - lower) / (upper_bound - lower), (lower + cut) / 2.0)
    } else {
        if cut <= lower {
            return (h.zero_count, (lower + upper_bound) / 2.0);
        }
        if cut >= upper_bound {
            return (0.0, 0.0);
        }
        ((upper_bound - cut) / (upper_bound - lower), (cut + upper_bound) / 2.0)
    };
    (h.zero_count * fraction, mid)
}

/// Where the observations of `[lower, upper]` are taken to lie on average (Prometheus's
/// `computeMidpoint`): the arithmetic middle for linear buckets, the geometric one for
/// exponential buckets, and the finite bound (or half of it) for an infinite interval.
fn midpoint(lower: f64, upper: f64, positive: bool, linear: bool) -> f64 {
    if lower.is_infinite() {
        if upper.is_infinite() {
            return 0.0;
        }
        return if upper > 0.0 { upper / 2.0 } else { upper };
    }
    if upper.is_infinite() {
        return lower;
    }
    if linear {
        return (lower + upper) / 2.0;
    }
    let geometric = (lower * upper).abs().sqrt();
    if positive { geometric } else { -geometric }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CUSTOM_BUCKETS_SCHEMA, Span};

    fn custom(bounds: &[f64], buckets: &[f64], sum: f64) -> Histogram {
        Histogram {
            schema: CUSTOM_BUCKETS_SCHEMA,
            count: buckets.iter().sum(),
            sum,
            positive_spans: vec![Span { offset: 0, length: buckets.len() as u32 }],
            positive_buckets: buckets.to_vec(),
            custom_values: bounds.to_vec(),
            ..Default::default()
        }
    }

    fn kept(h: &Histogram) -> Vec<(i32, f64)> {
        indexed(&h.positive_spans, &h.positive_buckets).collect()
    }

    #[test]
    fn custom_buckets_interpolate_linearly() {
        // native_histograms.test: cbh </ 13 and cbh >/ 13.
        let cbh = custom(&[5.0, 10.0, 15.0, 20.0], &[1.0, 6.0, 4.0, 3.0, 1.0], 172.5);
        let mut below = cbh.clone();
        below.trim(13.0, Trim::Upper);
        assert_eq!(kept(&below), vec![(0, 1.0), (1, 6.0), (2, 2.4)]);
        assert_eq!((below.count, below.sum), (9.4, 75.1));
        let mut above = cbh;
        above.trim(13.0, Trim::Lower);
        assert_eq!(kept(&above), vec![(2, 1.6), (3, 3.0), (4, 1.0)]);
        assert_eq!(above.count, 5.6);
    }

    #[test]
    fn infinite_buckets_go_whole_and_untouched_histograms_keep_their_sum() {
        let mut h = custom(&[5.0], &[1.0, 100.0], 33.0);
        h.trim(10.0, Trim::Upper);
        assert_eq!((h.count, h.sum), (1.0, 2.5));
        let mut h = custom(&[5.0], &[1.0, 100.0], 33.0);
        h.trim(0.0, Trim::Lower);
        assert_eq!((h.count, h.sum), (101.0, 33.0));
    }

    #[test]
    fn the_zero_bucket_leans_to_the_populated_side() {
        // native_histograms.test: h_positive_buckets >/ 0.1.
        let mut h = Histogram {
            count: 12.0,
            sum: 8.021_067_811_865_475,
            zero_threshold: 0.5,
            zero_count: 2.0,
            positive_spans: vec![Span { offset: 0, length: 1 }],
            positive_buckets: vec![10.0],
            ..Default::default()
        };
        h.trim(0.1, Trim::Lower);
        assert_eq!(h.zero_count, 1.6);
        assert_eq!(h.count, 11.6);
    }
}
