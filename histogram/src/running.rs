//! Running sums and means of histograms as Prometheus's `sum`, `avg`, `sum_over_time` and
//! `avg_over_time` compute them (`promql/engine.go`, `aggregation`; `promql/functions.go`,
//! `funcAvgOverTime`): a Kahan-compensated sum, which a mean divides at the end, switching to an
//! incremental mean once the sum would overflow, so that histograms with counts near `f64::MAX`
//! still average to a finite value.

use crate::Histogram;
use crate::arith::{Combined, IncompatibleSchemas};

/// A running sum or mean of histograms.
#[derive(Debug, Clone)]
pub struct Running {
    count: f64,
    /// The compensated sum, or once `incremental`, the running mean.
    value: Histogram,
    compensation: Histogram,
    mean: bool,
    incremental: bool,
}

impl Running {
    /// The sum of `first` alone.
    pub fn sum(first: Histogram) -> Self {
        Running { count: 1.0, value: first, compensation: Histogram::default(), mean: false, incremental: false }
    }

    /// The mean of `first` alone.
    pub fn mean(first: Histogram) -> Self {
        Running { mean: true, ..Running::sum(first) }
    }

    /// Takes `h` into the sum or mean. After an error (exponential and custom buckets mixed) the
    /// result has no meaning.
    pub fn add(&mut self, h: &Histogram) -> Result<Combined, IncompatibleSchemas> {
        self.count += 1.0;
        if !self.mean {
            return self.value.kahan_add(h, &mut self.compensation);
        }
        let mut combined = Combined::default();
        if !self.incremental {
            let (mut sum, mut compensation) = (self.value.clone(), self.compensation.clone());
            combined = sum.kahan_add(h, &mut compensation)?;
            if !sum.has_overflow() {
                (self.value, self.compensation) = (sum, compensation);
                return Ok(combined);
            }
            // The sum would overflow: from here on, keep the mean instead.
            self.incremental = true;
            self.value.div(self.count - 1.0);
            self.compensation.div(self.count - 1.0);
        }
        let q = (self.count - 1.0) / self.count;
        self.compensation.mul(q);
        let mut share = h.clone();
        share.div(self.count);
        self.value.mul(q);
        let more = self.value.kahan_add(&share, &mut self.compensation)?;
        combined.counter_reset_collision |= more.counter_reset_collision;
        combined.custom_bounds_reconciled |= more.custom_bounds_reconciled;
        Ok(combined)
    }

    /// The sum or mean of everything added.
    pub fn value(mut self) -> Histogram {
        if self.mean && !self.incremental {
            self.value.div(self.count);
            self.compensation.div(self.count);
        }
        self.value.add_compensation(&self.compensation);
        self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(count: f64, sum: f64) -> Histogram {
        Histogram { count, sum, ..Default::default() }
    }

    #[test]
    fn means_survive_sums_that_overflow() {
        // native_histograms.test: avg_over_time(histogram_sum_over_time_incremental_6[4m:1m]).
        let mut mean = Running::mean(h(f64::MAX, 1.0));
        for (count, sum) in [(1e308, 1e100), (1e-6, 1.0), (1e-6, -1e100)] {
            mean.add(&h(count, sum)).unwrap();
        }
        let m = mean.value();
        assert_eq!((m.count, m.sum), (6.99423283715579e307, 0.5));
    }

    #[test]
    fn sums_compensate_and_small_means_divide_them() {
        let (mut sum, mut mean) = (Running::sum(h(1.0, 1.0)), Running::mean(h(1.0, 1.0)));
        for (count, total) in [(2.0, 1e100), (3.0, 1.0), (4.0, -1e100)] {
            sum.add(&h(count, total)).unwrap();
            mean.add(&h(count, total)).unwrap();
        }
        let (s, m) = (sum.value(), mean.value());
        assert_eq!((s.count, s.sum), (10.0, 2.0));
        assert_eq!((m.count, m.sum), (2.5, 0.5));
    }
}
