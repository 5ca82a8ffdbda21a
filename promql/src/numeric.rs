//! Float arithmetic as Prometheus does it, so results match bit for bit: compensated sums,
//! running means that survive overflow, quantiles by rank interpolation.

/// One step of compensated summation (Prometheus's `kahansum.Inc`); returns the new sum and
/// compensation. The histogram crate's, so float and histogram sums compensate alike.
pub(crate) use amber_histogram::kahan_inc as kahan_sum_inc;

/// Prometheus's `quantile`: linear interpolation between the closest ranks.
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // NaN sorts first, as in Prometheus's vectorByValueHeap.
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).expect("not NaN"),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// A mean computed like Prometheus's `avg` and `avg_over_time`: a compensated sum, switching to
/// an incremental mean if the sum would overflow.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RunningMean {
    count: f64,
    sum: f64,
    mean: f64,
    c: f64,
    incremental: bool,
}

impl RunningMean {
    pub(crate) fn add(&mut self, v: f64) {
        self.count += 1.0;
        if !self.incremental {
            let (sum, c) = kahan_sum_inc(v, self.sum, self.c);
            // The first value is always summed, even ±Inf, so the division below is defined.
            if self.count == 1.0 || !sum.is_infinite() {
                (self.sum, self.c) = (sum, c);
                return;
            }
            self.incremental = true;
            self.mean = self.sum / (self.count - 1.0);
            self.c /= self.count - 1.0;
        }
        let q = (self.count - 1.0) / self.count;
        (self.mean, self.c) = kahan_sum_inc(v / self.count, q * self.mean, q * self.c);
    }

    pub(crate) fn value(&self) -> f64 {
        if self.incremental { self.mean + self.c } else { self.sum / self.count + self.c / self.count }
    }
}

/// Go's `math.Max`: NaN wins, unlike `f64::max`.
pub(crate) fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() { f64::NAN } else { a.max(b) }
}

/// Go's `math.Min`: NaN wins, unlike `f64::min`.
pub(crate) fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() { f64::NAN } else { a.min(b) }
}
