//! Arithmetic on native histograms, following Prometheus's `model/histogram/float_histogram.go`
//! step for step (the order of additions matters, because answers are compared exactly): scaling,
//! addition and subtraction with schema reduction to the coarser schema and widening of the zero
//! bucket, Kahan-compensated addition for aggregations, compaction, and counter-reset detection.
//!
//! Buckets are worked on as maps from bucket index to count; the spans of a result describe its
//! buckets exactly (empty buckets stay until [`Histogram::compact`] removes them), so bucket
//! layouts may differ from Prometheus's while every bucket's count is the same.

use std::collections::BTreeMap;

use thiserror::Error;

use crate::{CounterResetHint, Histogram, Span, exponential_upper_bound, indexed};

/// Prometheus's `ErrHistogramsIncompatibleSchema`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("cannot apply this operation on histograms with a mix of exponential and custom bucket schemas")]
pub struct IncompatibleSchemas;

/// What an addition or subtraction had to reconcile, for the annotations PromQL gives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Combined {
    /// One side said "counter reset", the other "no counter reset".
    pub counter_reset_collision: bool,
    /// Custom bucket bounds differed and the result has the bounds both share.
    pub custom_bounds_reconciled: bool,
}

/// One side's buckets: index → (count, Kahan compensation).
type Side = BTreeMap<i32, (f64, f64)>;

/// Prometheus's `kahansum.Inc`.
pub fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

fn side_of(spans: &[Span], counts: &[f64], comp: Option<&[f64]>) -> Side {
    indexed(spans, counts)
        .enumerate()
        .map(|(k, (index, v))| (index, (v, comp.and_then(|c| c.get(k)).copied().unwrap_or(0.0))))
        .collect()
}

/// Spans, counts and compensations describing `side`, consecutive indices in one span.
fn store_side(side: &Side) -> (Vec<Span>, Vec<f64>, Vec<f64>) {
    let mut spans: Vec<Span> = Vec::new();
    let mut counts = Vec::with_capacity(side.len());
    let mut comps = Vec::with_capacity(side.len());
    let mut last: Option<i32> = None;
    for (&index, &(v, c)) in side {
        match last {
            Some(l) if index == l + 1 => spans.last_mut().expect("a span is open").length += 1,
            Some(l) => spans.push(Span { offset: index - l - 1, length: 1 }),
            None => spans.push(Span { offset: index, length: 1 }),
        }
        last = Some(index);
        counts.push(v);
        comps.push(c);
    }
    (spans, counts, comps)
}

/// Prometheus's `targetIdx`: the index in `to` of bucket `index` of schema `from`.
fn target_index(index: i32, from: i32, to: i32) -> i32 {
    ((index - 1) >> (from - to)) + 1
}

/// Merges buckets into the coarser schema `to`.
fn reduce_side(side: Side, from: i32, to: i32) -> Side {
    if from == to {
        return side;
    }
    let mut out = Side::new();
    for (index, (v, c)) in side {
        let e = out.entry(target_index(index, from, to)).or_insert((0.0, 0.0));
        let (sum, comp) = kahan_inc(v, e.0, e.1);
        *e = (sum, comp + c);
    }
    out
}

/// The working form of a histogram (and of its Kahan compensation) during an operation.
struct Work {
    zero: (f64, f64),
    zero_threshold: f64,
    positive: Side,
    negative: Side,
}

impl Work {
    fn of(h: &Histogram, c: Option<&Histogram>) -> Work {
        Work {
            zero: (h.zero_count, c.map_or(0.0, |c| c.zero_count)),
            zero_threshold: h.zero_threshold,
            positive: side_of(&h.positive_spans, &h.positive_buckets, c.map(|c| c.positive_buckets.as_slice())),
            negative: side_of(&h.negative_spans, &h.negative_buckets, c.map(|c| c.negative_buckets.as_slice())),
        }
    }

    /// Prometheus's `zeroCountForLargerThreshold`: the zero count (with its compensation) once
    /// the zero bucket is widened to `larger`, and the threshold that takes, moved up to the
    /// upper bound of a populated bucket the threshold would cut.
    fn zero_for_larger_threshold(&self, schema: i32, mut larger: f64) -> ((f64, f64), f64) {
        if larger == self.zero_threshold {
            return (self.zero, larger);
        }
        'outer: loop {
            let mut zero = self.zero;
            for (side, restart) in [(&self.positive, false), (&self.negative, true)] {
                for (&index, &(v, c)) in side {
                    let lower = exponential_upper_bound(schema, index - 1);
                    if lower >= larger {
                        break;
                    }
                    zero = kahan_inc(v, zero.0, zero.1);
                    zero = kahan_inc(c, zero.0, zero.1);
                    let upper = exponential_upper_bound(schema, index);
                    if upper > larger {
                        if v != 0.0 {
                            larger = upper;
                            if restart {
                                continue 'outer;
                            }
                        }
                        break;
                    }
                }
            }
            return (zero, larger);
        }
    }

    /// Widens the zero bucket to `threshold`, dropping the buckets it now holds.
    fn widen_zero_bucket(&mut self, schema: i32, threshold: f64) {
        let (zero, threshold) = self.zero_for_larger_threshold(schema, threshold);
        self.zero = zero;
        self.zero_threshold = threshold;
        for side in [&mut self.positive, &mut self.negative] {
            side.retain(|&index, _| exponential_upper_bound(schema, index - 1) >= threshold);
            // Prometheus compacts here, dropping every empty bucket.
            side.retain(|_, (v, c)| *v != 0.0 || *c != 0.0);
        }
    }

    fn store(self, h: &mut Histogram, c: Option<&mut Histogram>) {
        h.zero_threshold = self.zero_threshold;
        h.zero_count = self.zero.0;
        let (ps, pb, pc) = store_side(&self.positive);
        let (ns, nb, nc) = store_side(&self.negative);
        if let Some(c) = c {
            c.schema = h.schema;
            c.zero_threshold = self.zero_threshold;
            c.zero_count = self.zero.1;
            c.positive_spans = ps.clone();
            c.positive_buckets = pc;
            c.negative_spans = ns.clone();
            c.negative_buckets = nc;
            c.custom_values = h.custom_values.clone();
        }
        (h.positive_spans, h.positive_buckets) = (ps, pb);
        (h.negative_spans, h.negative_buckets) = (ns, nb);
    }
}

/// Prometheus's `intersectCustomBucketBounds`.
fn intersect_bounds(a: &[f64], b: &[f64]) -> Vec<f64> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            out.push(a[i]);
            i += 1;
            j += 1;
        } else if a[i] < b[j] {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// Custom buckets mapped to the coarser `target` bounds (each bucket into the first target
/// bucket whose bound is at least its own; beyond them, the `+Inf` bucket).
fn map_custom(side: &Side, bounds: &[f64], target: &[f64]) -> Side {
    let mut out = Side::new();
    for (&index, &(v, c)) in side {
        let to = match usize::try_from(index).ok().and_then(|i| bounds.get(i)) {
            Some(&bound) => target.iter().position(|&t| t >= bound).unwrap_or(target.len()),
            None => target.len(),
        } as i32;
        let e = out.entry(to).or_insert((0.0, 0.0));
        let (sum, comp) = kahan_inc(v, e.0, e.1);
        *e = (sum, comp + c);
    }
    out
}

/// Adds (or subtracts) `b` into `a`, bucket by bucket; with `kahan`, compensated.
fn add_side(a: &mut Side, b: &Side, negate: bool, kahan: bool) {
    for (&index, &(v, c)) in b {
        let v = if negate { -v } else { v };
        let e = a.entry(index).or_insert((0.0, 0.0));
        if kahan {
            *e = kahan_inc(v, e.0, e.1);
            if c != 0.0 {
                *e = kahan_inc(c, e.0, e.1);
            }
        } else {
            e.0 += v;
        }
    }
}

impl Histogram {
    /// Multiplies every count and the sum by `factor` (Prometheus's `Mul`); a negative factor
    /// makes it a gauge histogram.
    pub fn mul(&mut self, factor: f64) -> &mut Self {
        self.zero_count *= factor;
        self.count *= factor;
        self.sum *= factor;
        self.positive_buckets.iter_mut().for_each(|b| *b *= factor);
        self.negative_buckets.iter_mut().for_each(|b| *b *= factor);
        if factor < 0.0 {
            self.counter_reset_hint = CounterResetHint::Gauge;
        }
        self
    }

    /// Divides every count and the sum by `scalar` (Prometheus's `Div`); division by zero
    /// removes every bucket.
    pub fn div(&mut self, scalar: f64) -> &mut Self {
        self.zero_count /= scalar;
        self.count /= scalar;
        self.sum /= scalar;
        if scalar == 0.0 {
            self.positive_spans.clear();
            self.positive_buckets.clear();
            self.negative_spans.clear();
            self.negative_buckets.clear();
            return self;
        }
        self.positive_buckets.iter_mut().for_each(|b| *b /= scalar);
        self.negative_buckets.iter_mut().for_each(|b| *b /= scalar);
        if scalar < 0.0 {
            self.counter_reset_hint = CounterResetHint::Gauge;
        }
        self
    }

    /// Adds `other` (Prometheus's `Add`), in the coarser schema and the wider zero bucket.
    pub fn add(&mut self, other: &Histogram) -> Result<Combined, IncompatibleSchemas> {
        self.combine(other, false, None)
    }

    /// Subtracts `other` (Prometheus's `Sub`). The `-` operator makes the result a gauge.
    pub fn sub(&mut self, other: &Histogram) -> Result<Combined, IncompatibleSchemas> {
        self.combine(other, true, None)
    }

    /// Adds `other` with Kahan compensation kept in `c` (Prometheus's `KahanAdd`); `c` starts as
    /// [`Histogram::default`] and the sum is `self` plus `c` ([`Histogram::add_compensation`]).
    pub fn kahan_add(&mut self, other: &Histogram, c: &mut Histogram) -> Result<Combined, IncompatibleSchemas> {
        if c.schema != self.schema || c.custom_values != self.custom_values {
            *c = Histogram {
                schema: self.schema,
                zero_threshold: self.zero_threshold,
                custom_values: self.custom_values.clone(),
                ..Default::default()
            };
        }
        self.combine(other, false, Some(c))
    }

    /// Folds a Kahan compensation histogram back into the sum, as Prometheus does at the end of
    /// an aggregation.
    pub fn add_compensation(&mut self, c: &Histogram) {
        if c.count == 0.0
            && c.sum == 0.0
            && c.zero_count == 0.0
            && c.positive_buckets.iter().all(|&v| v == 0.0)
            && c.negative_buckets.iter().all(|&v| v == 0.0)
        {
            return;
        }
        let hint = self.counter_reset_hint;
        let mut c = c.clone();
        c.counter_reset_hint = hint;
        self.add(&c).expect("the compensation has the sum's schema and bounds");
        self.counter_reset_hint = hint;
    }

    fn combine(
        &mut self,
        other: &Histogram,
        negate: bool,
        mut comp: Option<&mut Histogram>,
    ) -> Result<Combined, IncompatibleSchemas> {
        if self.uses_custom_buckets() != other.uses_custom_buckets() {
            return Err(IncompatibleSchemas);
        }
        let kahan = comp.is_some();
        let mut out = Combined { counter_reset_collision: self.adjust_counter_reset(other), ..Default::default() };
        let mut work = Work::of(self, comp.as_deref());
        let (count_c, sum_c) = comp.as_deref().map_or((0.0, 0.0), |c| (c.count, c.sum));
        let sign = if negate { -1.0 } else { 1.0 };
        let ((count, count_c), (sum, sum_c)) = if kahan {
            (kahan_inc(other.count, self.count, count_c), kahan_inc(other.sum, self.sum, sum_c))
        } else {
            ((self.count + sign * other.count, 0.0), (self.sum + sign * other.sum, 0.0))
        };
        (self.count, self.sum) = (count, sum);
        let other_positive = side_of(&other.positive_spans, &other.positive_buckets, None);
        if self.uses_custom_buckets() {
            if self.custom_values == other.custom_values {
                add_side(&mut work.positive, &other_positive, negate, kahan);
            } else {
                out.custom_bounds_reconciled = true;
                let target = intersect_bounds(&self.custom_values, &other.custom_values);
                let mut mapped = map_custom(&work.positive, &self.custom_values, &target);
                add_side(&mut mapped, &map_custom(&other_positive, &other.custom_values, &target), negate, kahan);
                mapped.retain(|_, (v, c)| *v != 0.0 || *c != 0.0);
                work.positive = mapped;
                self.custom_values = target;
            }
        } else {
            let other_work = Work::of(other, None);
            // Prometheus's `reconcileZeroBuckets`.
            let (mut other_zero, mut other_threshold) = (other.zero_count, other.zero_threshold);
            while other_threshold != work.zero_threshold {
                if work.zero_threshold > other_threshold {
                    let (zero, threshold) = other_work.zero_for_larger_threshold(other.schema, work.zero_threshold);
                    (other_zero, other_threshold) = (zero.0, threshold);
                }
                if other_threshold > work.zero_threshold {
                    work.widen_zero_bucket(self.schema, other_threshold);
                }
            }
            work.zero = if kahan {
                kahan_inc(other_zero, work.zero.0, work.zero.1)
            } else {
                (work.zero.0 + sign * other_zero, 0.0)
            };
            let schema = self.schema.min(other.schema);
            work.positive = reduce_side(std::mem::take(&mut work.positive), self.schema, schema);
            work.negative = reduce_side(std::mem::take(&mut work.negative), self.schema, schema);
            self.schema = schema;
            let threshold = work.zero_threshold;
            // Buckets of `other` inside the zero bucket are already in its zero count.
            let outside = |side: Side| -> Side {
                let mut side = reduce_side(side, other.schema, schema);
                side.retain(|&index, _| exponential_upper_bound(schema, index) > threshold);
                side
            };
            add_side(&mut work.positive, &outside(other_work.positive), negate, kahan);
            add_side(&mut work.negative, &outside(other_work.negative), negate, kahan);
        }
        if let Some(c) = comp.as_deref_mut() {
            (c.count, c.sum) = (count_c, sum_c);
        }
        work.store(self, comp);
        Ok(out)
    }

    /// Prometheus's `adjustCounterReset`: the hint of a sum or difference; true on a collision of
    /// "reset" with "not reset".
    fn adjust_counter_reset(&mut self, other: &Histogram) -> bool {
        use CounterResetHint::*;
        match (self.counter_reset_hint, other.counter_reset_hint) {
            (a, b) if a == b => false,
            (Gauge, _) => false,
            (_, Gauge) => {
                self.counter_reset_hint = Gauge;
                false
            }
            (Unknown, _) => false,
            (_, Unknown) => {
                self.counter_reset_hint = Unknown;
                false
            }
            _ => {
                self.counter_reset_hint = Unknown;
                true
            }
        }
    }

    /// Drops empty buckets and merges adjacent spans (Prometheus's `Compact(0)`).
    pub fn compact(&mut self) -> &mut Self {
        for (spans, counts) in [
            (&mut self.positive_spans, &mut self.positive_buckets),
            (&mut self.negative_spans, &mut self.negative_buckets),
        ] {
            let mut side = side_of(spans, counts, None);
            side.retain(|_, (v, _)| *v != 0.0);
            let (s, b, _) = store_side(&side);
            (*spans, *counts) = (s, b);
        }
        self
    }

    /// The same histogram in the coarser `schema` (Prometheus's `ReduceResolution`); custom
    /// buckets and finer schemas are left as they are.
    pub fn reduce_resolution(&mut self, schema: i32) {
        if self.uses_custom_buckets() || schema >= self.schema {
            return;
        }
        let mut work = Work::of(self, None);
        work.positive = reduce_side(work.positive, self.schema, schema);
        work.negative = reduce_side(work.negative, self.schema, schema);
        self.schema = schema;
        work.store(self, None);
    }

    /// Whether a counter reset happened between `previous` and this histogram (Prometheus's
    /// `DetectReset`): the hint when it says, otherwise any count that went down, a bucket that
    /// vanished, a finer schema or a narrower zero bucket.
    pub fn detect_reset(&self, previous: &Histogram) -> bool {
        match self.counter_reset_hint {
            CounterResetHint::Reset => return true,
            CounterResetHint::NotReset => return false,
            _ => {}
        }
        if self.count < previous.count {
            return true;
        }
        if self.uses_custom_buckets() {
            if !previous.uses_custom_buckets() {
                return true;
            }
            if self.custom_values != previous.custom_values {
                return self.reset_with_mismatched_bounds(previous);
            }
        }
        if self.schema > previous.schema {
            return true;
        }
        if self.zero_threshold < previous.zero_threshold {
            return true;
        }
        let prev = Work::of(previous, None);
        let custom = self.uses_custom_buckets();
        let (prev_zero, threshold) = if custom {
            ((previous.zero_count, 0.0), self.zero_threshold)
        } else {
            prev.zero_for_larger_threshold(previous.schema, self.zero_threshold)
        };
        if threshold != self.zero_threshold {
            return true;
        }
        if self.zero_count < prev_zero.0 {
            return true;
        }
        let curr = Work::of(self, None);
        let skip = |schema: i32, index: i32| !custom && exponential_upper_bound(schema, index) <= self.zero_threshold;
        for (now, before) in [(&curr.positive, prev.positive), (&curr.negative, prev.negative)] {
            let before = if custom { before } else { reduce_side(before, previous.schema, self.schema) };
            for (index, (count, _)) in before {
                if skip(self.schema, index) {
                    continue;
                }
                match now.get(&index) {
                    Some(&(c, _)) if c < count => return true,
                    None if count != 0.0 => return true,
                    _ => {}
                }
            }
        }
        false
    }

    /// Prometheus's `detectResetWithMismatchedCustomBounds`: cumulative counts at the bounds
    /// both histograms share must not go down.
    fn reset_with_mismatched_bounds(&self, previous: &Histogram) -> bool {
        let shared = intersect_bounds(&self.custom_values, &previous.custom_values);
        let now =
            map_custom(&side_of(&self.positive_spans, &self.positive_buckets, None), &self.custom_values, &shared);
        let before = map_custom(
            &side_of(&previous.positive_spans, &previous.positive_buckets, None),
            &previous.custom_values,
            &shared,
        );
        (0..=shared.len() as i32).any(|i| now.get(&i).map_or(0.0, |v| v.0) < before.get(&i).map_or(0.0, |v| v.0))
    }

    /// Whether both hold the same data (Prometheus's `Equals`, which the `==` operator uses on
    /// compacted histograms): counts and sum compared bit for bit, the same non-empty buckets.
    pub fn equals(&self, other: &Histogram) -> bool {
        let bits = |v: f64| v.to_bits();
        let buckets = |spans: &[Span], counts: &[f64]| -> Vec<(i32, u64)> {
            indexed(spans, counts).filter(|&(_, v)| v != 0.0).map(|(i, v)| (i, bits(v))).collect()
        };
        self.schema == other.schema
            && bits(self.count) == bits(other.count)
            && bits(self.sum) == bits(other.sum)
            && if self.uses_custom_buckets() {
                self.custom_values == other.custom_values
            } else {
                self.zero_threshold == other.zero_threshold
                    && bits(self.zero_count) == bits(other.zero_count)
                    && buckets(&self.negative_spans, &self.negative_buckets)
                        == buckets(&other.negative_spans, &other.negative_buckets)
            }
            && buckets(&self.positive_spans, &self.positive_buckets)
                == buckets(&other.positive_spans, &other.positive_buckets)
    }

    /// Whether any count, the sum or a custom bound is infinite (an aggregation overflowed).
    pub fn has_overflow(&self) -> bool {
        [self.zero_count, self.count, self.sum].iter().any(|v| v.is_infinite())
            || self
                .positive_buckets
                .iter()
                .chain(&self.negative_buckets)
                .chain(&self.custom_values)
                .any(|v| v.is_infinite())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp(schema: i32, offset: i32, buckets: &[f64]) -> Histogram {
        Histogram {
            schema,
            count: buckets.iter().sum(),
            sum: 10.0,
            positive_spans: vec![Span { offset, length: buckets.len() as u32 }],
            positive_buckets: buckets.to_vec(),
            ..Default::default()
        }
    }

    fn by_index(h: &Histogram) -> Vec<(i32, f64)> {
        indexed(&h.positive_spans, &h.positive_buckets).filter(|&(_, v)| v != 0.0).collect()
    }

    #[test]
    fn addition_reduces_to_the_coarser_schema() {
        // Schema 1 buckets 1..=4 fold pairwise into schema 0 buckets 1 and 2.
        let mut a = exp(0, 0, &[1.0, 2.0]);
        let b = exp(1, 1, &[1.0, 1.0, 1.0, 1.0]);
        a.add(&b).unwrap();
        assert_eq!(a.schema, 0);
        assert_eq!(by_index(&a), vec![(0, 1.0), (1, 4.0), (2, 2.0)]);
        assert_eq!(a.count, 7.0);
        assert_eq!(a.sum, 20.0);
    }

    #[test]
    fn subtraction_and_scaling() {
        let mut a = exp(0, 0, &[3.0, 2.0]);
        a.sub(&exp(0, 1, &[2.0])).unwrap();
        a.compact();
        assert_eq!(by_index(&a), vec![(0, 3.0)]);
        a.mul(-2.0);
        assert_eq!(a.counter_reset_hint, CounterResetHint::Gauge);
        assert_eq!(by_index(&a), vec![(0, -6.0)]);
        a.div(0.0);
        assert!(a.positive_buckets.is_empty());
    }

    #[test]
    fn zero_buckets_widen_to_the_larger_threshold() {
        let mut a = Histogram { zero_threshold: 1.0, zero_count: 1.0, count: 1.0, ..Default::default() };
        // Bucket 0 of schema 0 is (0.5, 1]: inside the zero bucket of `a`.
        let b = exp(0, 0, &[2.0, 3.0]);
        a.add(&b).unwrap();
        assert_eq!(a.zero_count, 3.0);
        assert_eq!(by_index(&a), vec![(1, 3.0)]);
    }

    #[test]
    fn mixing_exponential_and_custom_buckets_fails() {
        let mut a = exp(0, 0, &[1.0]);
        let mut b = exp(crate::CUSTOM_BUCKETS_SCHEMA, 0, &[1.0]);
        b.custom_values = vec![1.0];
        assert_eq!(a.add(&b), Err(IncompatibleSchemas));
    }

    #[test]
    fn mismatched_custom_bounds_reconcile_to_the_shared_ones() {
        let mut a = exp(crate::CUSTOM_BUCKETS_SCHEMA, 0, &[1.0, 2.0, 3.0]);
        a.custom_values = vec![1.0, 2.0];
        let mut b = exp(crate::CUSTOM_BUCKETS_SCHEMA, 0, &[1.0, 1.0]);
        b.custom_values = vec![2.0];
        let combined = a.add(&b).unwrap();
        assert!(combined.custom_bounds_reconciled);
        assert_eq!(a.custom_values, vec![2.0]);
        assert_eq!(by_index(&a), vec![(0, 4.0), (1, 4.0)]);
    }

    #[test]
    fn resets_are_detected_per_bucket() {
        let prev = exp(0, 0, &[1.0, 2.0]);
        assert!(!exp(0, 0, &[1.0, 3.0]).detect_reset(&prev));
        assert!(exp(0, 0, &[2.0, 1.0]).detect_reset(&prev));
        assert!(exp(0, 1, &[5.0]).detect_reset(&prev));
        assert!(exp(1, 0, &[1.0, 2.0]).detect_reset(&prev));
        let mut hinted = exp(0, 0, &[0.0]);
        hinted.counter_reset_hint = CounterResetHint::NotReset;
        assert!(!hinted.detect_reset(&prev));
    }

    #[test]
    fn kahan_addition_keeps_what_plain_addition_loses() {
        let mut sum = exp(0, 0, &[1e16]);
        let mut c = Histogram::default();
        for _ in 0..10 {
            sum.kahan_add(&exp(0, 0, &[1.0]), &mut c).unwrap();
        }
        sum.add_compensation(&c);
        assert_eq!(by_index(&sum), vec![(0, 1e16 + 10.0)]);
    }
}
