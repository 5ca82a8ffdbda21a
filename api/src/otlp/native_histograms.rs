//! OTLP histograms as Prometheus native histograms, as Prometheus 3's OTLP receiver converts them
//! (`otlptranslator/prometheusremotewrite/histograms.go`): exponential histograms become
//! exponential native histograms, explicit-bucket histograms (with `convert_histograms_to_nhcb`)
//! native histograms with custom buckets. Both are integer histograms in remote write's form
//! (spans and bucket deltas), so the remote-write conversion handles them like any other.
//!
//! What Prometheus drops is dropped: `min`, `max` and the start time. The counter reset hint is
//! always `UNKNOWN`, as Prometheus sends it, so PromQL detects resets by comparing samples.

use amber_histogram::{CUSTOM_BUCKETS_SCHEMA, MAX_SCHEMA, MIN_SCHEMA};

use super::proto::metrics::v1 as otlp;
use super::translate::{NO_RECORDED_VALUE, STALE_NAN, ms};
use crate::prompb;

/// The zero bucket's width when the point's is narrower: Prometheus's `defaultZeroThreshold`.
/// OTLP's zero bucket holds the values too small for the scale, so a wider threshold the SDK
/// sets is kept (Prometheus has a TODO to do the same).
const MIN_ZERO_THRESHOLD: f64 = 1e-128;

/// Buckets further apart than this start a new span; closer ones are joined by empty buckets
/// (client_golang's and Prometheus's OTLP receiver's rule).
const MAX_GAP_IN_SPAN: i64 = 2;

/// An exponential histogram point as a native histogram, or why it cannot be one.
///
/// OTLP bucket `i` of a side covers `(base^(offset+i), base^(offset+i+1)]` while Prometheus's
/// bucket `j` covers `(base^(j-1), base^j]`, so the Prometheus index is `offset + i + 1`. Scales
/// above 8 are reduced to schema 8 by merging `2^(scale-8)` neighbouring buckets; scales below −4
/// have no schema.
pub(super) fn from_exponential(p: &otlp::ExponentialHistogramDataPoint) -> Result<prompb::Histogram, String> {
    if p.scale < MIN_SCHEMA {
        return Err(format!(
            "an exponential histogram point has scale {}, below the lowest native histogram schema {MIN_SCHEMA}",
            p.scale
        ));
    }
    let scale_down = (p.scale - MAX_SCHEMA).max(0) as u32;
    let side = |b: &Option<otlp::exponential_histogram_data_point::Buckets>| match b {
        Some(b) => layout(&exponential_indices(b, scale_down)?),
        None => Ok((Vec::new(), Vec::new())),
    };
    let (positive_spans, positive_deltas) = side(&p.positive)?;
    let (negative_spans, negative_deltas) = side(&p.negative)?;
    Ok(with_values(
        prompb::Histogram {
            schema: p.scale.min(MAX_SCHEMA),
            zero_threshold: p.zero_threshold.max(MIN_ZERO_THRESHOLD),
            zero_count: Some(prompb::histogram::ZeroCount::ZeroCountInt(p.zero_count)),
            positive_spans,
            positive_deltas,
            negative_spans,
            negative_deltas,
            timestamp: ms(p.time_unix_nano),
            ..Default::default()
        },
        p.flags,
        p.count,
        p.sum,
    ))
}

/// An explicit-bucket histogram point as a native histogram with custom buckets: the explicit
/// bounds are its custom values (OTLP's implicit `+Inf` bucket is NHCB's too), bucket `i` is
/// custom bucket `i`. `bucket_counts` must have one count more than there are bounds (or none).
pub(super) fn from_explicit(p: &otlp::HistogramDataPoint) -> Result<prompb::Histogram, String> {
    let indexed = p.bucket_counts.iter().enumerate().map(|(i, &c)| (i as i64, c));
    let (positive_spans, positive_deltas) = layout(&indexed.collect::<Vec<_>>())?;
    Ok(with_values(
        prompb::Histogram {
            schema: CUSTOM_BUCKETS_SCHEMA,
            positive_spans,
            positive_deltas,
            custom_values: p.explicit_bounds.clone(),
            timestamp: ms(p.time_unix_nano),
            ..Default::default()
        },
        p.flags,
        p.count,
        p.sum,
    ))
}

/// Sets count and sum; a point without a recorded value becomes a stale marker exactly as
/// Prometheus writes one (stale NaN in the sum and, as its bits, in the integer count). A point
/// without a sum has sum 0, as in Prometheus.
fn with_values(mut h: prompb::Histogram, flags: u32, count: u64, sum: Option<f64>) -> prompb::Histogram {
    if flags & NO_RECORDED_VALUE != 0 {
        h.sum = f64::from_bits(STALE_NAN);
        h.count = Some(prompb::histogram::Count::CountInt(STALE_NAN));
    } else {
        h.sum = sum.unwrap_or(0.0);
        h.count = Some(prompb::histogram::Count::CountInt(count));
    }
    h
}

/// `(Prometheus bucket index, count)` of one side's buckets at schema `scale − scale_down`,
/// ascending; merged buckets share an index.
fn exponential_indices(
    b: &otlp::exponential_histogram_data_point::Buckets,
    scale_down: u32,
) -> Result<Vec<(i64, u64)>, String> {
    let last = b.offset as i64 + b.bucket_counts.len() as i64;
    if last > i32::MAX as i64 {
        return Err(format!(
            "an exponential histogram point has buckets up to index {last}, beyond the largest index {}",
            i32::MAX
        ));
    }
    Ok(b.bucket_counts
        .iter()
        .enumerate()
        .map(|(i, &c)| (((b.offset as i64 + i as i64) >> scale_down) + 1, c))
        .collect())
}

/// Spans and deltas of buckets given as ascending `(index, count)` pairs (equal indices are
/// merged). Empty buckets are left out except to join buckets at most two apart, as client_golang
/// lays out its own histograms. Indices fit in `i32` (the callers check), and so do the gaps
/// between them, which are at most the number of buckets.
fn layout(buckets: &[(i64, u64)]) -> Result<(Vec<prompb::BucketSpan>, Vec<i64>), String> {
    let mut merged: Vec<(i64, u64)> = Vec::new();
    for &(index, count) in buckets {
        match merged.last_mut() {
            Some((last, total)) if *last == index => {
                *total = total.checked_add(count).ok_or("a histogram point's bucket counts overflow")?;
            }
            _ => merged.push((index, count)),
        }
    }
    let mut spans: Vec<prompb::BucketSpan> = Vec::new();
    let mut counts: Vec<u64> = Vec::new();
    let mut next_index = 0i64;
    for (index, count) in merged.into_iter().filter(|&(_, c)| c != 0) {
        let gap = index - next_index;
        if let Some(span) = spans.last_mut().filter(|_| gap <= MAX_GAP_IN_SPAN) {
            span.length += gap as u32 + 1;
            counts.extend(std::iter::repeat_n(0, gap as usize));
        } else {
            let offset = if spans.is_empty() { index } else { gap };
            spans.push(prompb::BucketSpan { offset: offset as i32, length: 1 });
        }
        counts.push(count);
        next_index = index + 1;
    }
    let mut previous = 0i64;
    let mut deltas = Vec::with_capacity(counts.len());
    for count in counts {
        let count = i64::try_from(count).map_err(|_| format!("a histogram bucket count {count} is too large"))?;
        deltas.push(count - previous);
        previous = count;
    }
    Ok((spans, deltas))
}

#[cfg(test)]
mod tests {
    use super::*;
    use otlp::exponential_histogram_data_point::Buckets;
    use prompb::histogram::{Count, ZeroCount};

    fn spans(list: &[(i32, u32)]) -> Vec<prompb::BucketSpan> {
        list.iter().map(|&(offset, length)| prompb::BucketSpan { offset, length }).collect()
    }

    fn point(scale: i32, offset: i32, counts: &[u64]) -> otlp::ExponentialHistogramDataPoint {
        otlp::ExponentialHistogramDataPoint {
            time_unix_nano: 5_000_000_000,
            scale,
            count: counts.iter().sum(),
            sum: Some(10.0),
            positive: Some(Buckets { offset, bucket_counts: counts.to_vec() }),
            ..Default::default()
        }
    }

    /// Positive spans and deltas of the converted point.
    fn positive(scale: i32, offset: i32, counts: &[u64]) -> (i32, Vec<prompb::BucketSpan>, Vec<i64>) {
        let h = from_exponential(&point(scale, offset, counts)).unwrap();
        (h.schema, h.positive_spans, h.positive_deltas)
    }

    #[test]
    fn an_exponential_point_keeps_its_scale_counts_and_zero_bucket() {
        let mut p = point(3, -2, &[1, 2, 0, 0, 0, 4]);
        p.negative = Some(Buckets { offset: 0, bucket_counts: vec![5] });
        p.zero_count = 2;
        p.count = 14;
        p.min = Some(0.1);
        p.max = Some(30.0);
        let h = from_exponential(&p).unwrap();
        assert_eq!(
            h,
            prompb::Histogram {
                count: Some(Count::CountInt(14)),
                sum: 10.0,
                schema: 3,
                zero_threshold: 1e-128,
                zero_count: Some(ZeroCount::ZeroCountInt(2)),
                // OTLP index −2 is Prometheus index −1; three empty buckets start a new span.
                positive_spans: spans(&[(-1, 2), (3, 1)]),
                positive_deltas: vec![1, 1, 2],
                negative_spans: spans(&[(1, 1)]),
                negative_deltas: vec![5],
                timestamp: 5000,
                ..Default::default()
            }
        );
    }

    #[test]
    fn gaps_of_up_to_two_buckets_are_filled_with_empty_buckets() {
        assert_eq!(positive(0, 0, &[1, 0, 0, 3]), (0, spans(&[(1, 4)]), vec![1, -1, 0, 3]));
        assert_eq!(positive(0, 0, &[0, 0, 3]), (0, spans(&[(3, 1)]), vec![3]));
        assert_eq!(positive(0, 4, &[]), (0, spans(&[]), vec![]));
    }

    #[test]
    fn scales_above_eight_merge_buckets_down_to_schema_eight() {
        // Scale 10 → 8: four OTLP buckets per Prometheus bucket; OTLP 3..8 → Prometheus 1, 2 ×4, 3.
        assert_eq!(positive(10, 3, &[1, 1, 1, 1, 1, 1]), (8, spans(&[(1, 3)]), vec![1, 3, -3]));
        // Negative offsets round down: OTLP −3..0 at scale 9 → Prometheus −1, 0, 0, 1.
        assert_eq!(positive(9, -3, &[1, 2, 3, 4]), (8, spans(&[(-1, 3)]), vec![1, 4, -1]));
        // Empty buckets before merged ones do not shift the counts: OTLP 2 and 3 → Prometheus 2.
        assert_eq!(positive(9, 0, &[0, 0, 1, 1]), (8, spans(&[(2, 1)]), vec![2]));
    }

    #[test]
    fn scales_below_minus_four_are_refused_with_the_reason() {
        assert_eq!(
            from_exponential(&point(-5, 0, &[1])),
            Err("an exponential histogram point has scale -5, below the lowest native histogram schema -4".into())
        );
        assert_eq!(positive(-4, 0, &[1]), (-4, spans(&[(1, 1)]), vec![1]));
    }

    #[test]
    fn no_recorded_value_is_a_stale_marker_and_a_missing_sum_is_zero() {
        let mut p = point(0, 0, &[1]);
        p.flags = NO_RECORDED_VALUE;
        let h = from_exponential(&p).unwrap();
        assert_eq!(h.sum.to_bits(), STALE_NAN);
        assert_eq!(h.count, Some(Count::CountInt(STALE_NAN)));
        let mut p = point(0, 0, &[1]);
        p.sum = None;
        assert_eq!(from_exponential(&p).unwrap().sum, 0.0);
    }

    #[test]
    fn a_wider_zero_threshold_of_the_sender_is_kept() {
        let mut p = point(0, 0, &[1]);
        p.zero_threshold = 0.001;
        assert_eq!(from_exponential(&p).unwrap().zero_threshold, 0.001);
    }

    #[test]
    fn explicit_buckets_become_custom_buckets() {
        let p = otlp::HistogramDataPoint {
            time_unix_nano: 7_000_000_000,
            count: 5,
            sum: Some(21.0),
            bucket_counts: vec![0, 0, 3, 0, 2],
            explicit_bounds: vec![1.0, 2.0, 5.0, 10.0],
            ..Default::default()
        };
        assert_eq!(
            from_explicit(&p).unwrap(),
            prompb::Histogram {
                count: Some(Count::CountInt(5)),
                sum: 21.0,
                schema: CUSTOM_BUCKETS_SCHEMA,
                positive_spans: spans(&[(2, 3)]),
                positive_deltas: vec![3, -3, 2],
                custom_values: vec![1.0, 2.0, 5.0, 10.0],
                timestamp: 7000,
                ..Default::default()
            }
        );
    }
}
