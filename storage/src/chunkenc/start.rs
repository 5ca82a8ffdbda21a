//! Start-timestamp column: each start timestamp as a residual from a prediction, residuals in runs.
//!
//! Start timestamps follow one of three patterns, each a single repeated residual under its own
//! prediction, whatever the jitter of the sample timestamps:
//! - a cumulative counter keeps its start until it resets: predicted by the previous sample's
//!   start ([`PREVIOUS_START`], residual 0);
//! - a delta series starts where the previous sample was taken (OTel; GCP 1 ms later): predicted
//!   by the previous sample's timestamp ([`PREVIOUS_TIME`], residual 0 or 1);
//! - a start a fixed time before the sample itself: predicted by the sample's timestamp
//!   ([`OWN_TIME`], residual −1 for "1 ms before").
//!
//! The encoder writes the column under each prediction and keeps the smallest, so a window of
//! samples costs a handful of bytes, a few more per counter reset.
//!
//! Layout: `prediction <1b> | runs <uvarint> | (length <uvarint> | residual <varint>) × runs`.
//! For the first sample the "previous" start and timestamp are 0, so the first run starts with the
//! first start timestamp itself. A start of 0 means "none" (as in remote write 2.0) and is encoded
//! like any other value. The lengths add up to the number of samples, which the block stores.

use super::DecodeError;
use super::varint::{Reader, put_uvarint, put_varint};

/// Predicted by the previous sample's start timestamp.
pub const PREVIOUS_START: u8 = 0;
/// Predicted by the previous sample's timestamp.
pub const PREVIOUS_TIME: u8 = 1;
/// Predicted by the sample's own timestamp.
pub const OWN_TIME: u8 = 2;

/// What prediction `prediction` makes for sample `i`, given the samples' timestamps and the start
/// timestamps decoded so far.
fn predict(prediction: u8, i: usize, ts: &[i64], starts: &[i64]) -> i64 {
    match (prediction, i) {
        (OWN_TIME, _) => ts[i],
        (_, 0) => 0,
        (PREVIOUS_TIME, _) => ts[i - 1],
        _ => starts[i - 1],
    }
}

/// Encodes the start timestamps of samples at `ts` (as many of each) under the prediction that
/// makes them smallest.
pub fn encode(starts: &[i64], ts: &[i64], out: &mut Vec<u8>) {
    debug_assert_eq!(starts.len(), ts.len());
    let best = [PREVIOUS_START, PREVIOUS_TIME, OWN_TIME]
        .into_iter()
        .map(|prediction| encode_with(prediction, starts, ts))
        .min_by_key(Vec::len)
        .expect("three predictions");
    out.extend_from_slice(&best);
}

fn encode_with(prediction: u8, starts: &[i64], ts: &[i64]) -> Vec<u8> {
    let mut runs: Vec<(u64, i64)> = Vec::new();
    for (i, &st) in starts.iter().enumerate() {
        let residual = st.wrapping_sub(predict(prediction, i, ts, starts));
        match runs.last_mut() {
            Some((len, r)) if *r == residual => *len += 1,
            _ => runs.push((1, residual)),
        }
    }
    let mut out = Vec::with_capacity(2 + runs.len() * 4);
    out.push(prediction);
    put_uvarint(&mut out, runs.len() as u64);
    for (len, residual) in runs {
        put_uvarint(&mut out, len);
        put_varint(&mut out, residual);
    }
    out
}

/// Decodes the start timestamps of the samples at `ts` from a column that is all of `bytes`.
pub fn decode(bytes: &[u8], ts: &[i64]) -> Result<Vec<i64>, DecodeError> {
    let mut r = Reader::new(bytes);
    let prediction = r.u8()?;
    if prediction > OWN_TIME {
        return Err(DecodeError::Invalid("unknown start-timestamp prediction"));
    }
    let runs = r.uvarint()?;
    let n = ts.len();
    let mut out = Vec::with_capacity(n);
    for _ in 0..runs {
        let len = r.uvarint()?;
        let residual = r.varint()?;
        if len == 0 || len > (n - out.len()) as u64 {
            return Err(DecodeError::Invalid("start-timestamp runs do not add up to the sample count"));
        }
        for _ in 0..len {
            let st = predict(prediction, out.len(), ts, &out).wrapping_add(residual);
            out.push(st);
        }
    }
    if out.len() != n {
        return Err(DecodeError::Invalid("start-timestamp runs do not add up to the sample count"));
    }
    if !r.is_empty() {
        return Err(DecodeError::Invalid("trailing bytes in the start-timestamp column"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: i64 = 1_700_000_000_000;

    /// Timestamps 15 s apart with up to ±11 ms of jitter.
    fn jittered(n: i64) -> Vec<i64> {
        (0..n).map(|i| BASE + i * 15_000 + (i * 7919 % 23) - 11).collect()
    }

    fn round_trip(starts: &[i64], ts: &[i64]) -> (u8, usize) {
        let mut buf = Vec::new();
        encode(starts, ts, &mut buf);
        assert_eq!(decode(&buf, ts).unwrap(), starts);
        (buf[0], buf.len())
    }

    #[test]
    fn a_constant_start_costs_a_few_bytes_for_the_whole_column() {
        let ts = jittered(480);
        // Two runs: the start itself, then 479 zero residuals.
        assert_eq!(round_trip(&[BASE - 3_600_000; 480], &ts), (PREVIOUS_START, 1 + 1 + (1 + 6) + (2 + 1)));
        // A counter that resets twice in the window: two runs more each.
        let resets: Vec<i64> = (0..480).map(|i| BASE + (i / 160) * 2_400_000).collect();
        assert_eq!(round_trip(&resets, &ts), (PREVIOUS_START, 1 + 1 + (1 + 6) + 3 * (2 + 1) + 2 * (1 + 4)));
    }

    #[test]
    fn delta_and_fixed_offset_starts_are_two_runs_despite_jitter() {
        let ts = jittered(480);
        // OTel deltas: each start is the previous sample's time (the first one's is unknown here).
        let mut delta = vec![BASE - 15_000];
        delta.extend_from_slice(&ts[..479]);
        assert_eq!(round_trip(&delta, &ts), (PREVIOUS_TIME, 1 + 1 + (1 + 6) + (2 + 1)));
        // GCP deltas start 1 ms after the previous sample.
        let gcp: Vec<i64> = delta.iter().map(|st| st + 1).collect();
        assert_eq!(round_trip(&gcp, &ts), (PREVIOUS_TIME, 1 + 1 + (1 + 6) + (2 + 1)));
        // 1 ms before each sample: one run.
        let minimal: Vec<i64> = ts.iter().map(|t| t - 1).collect();
        assert_eq!(round_trip(&minimal, &ts), (OWN_TIME, 1 + 1 + (2 + 1)));
    }

    #[test]
    fn unset_and_extreme_starts_round_trip() {
        round_trip(&[], &[]);
        round_trip(&[0, 0, 5, 0, i64::MIN, i64::MAX, -1], &[1, 2, 3, 4, 5, 6, i64::MAX]);
        let ts = jittered(100);
        let mixed: Vec<i64> = ts.iter().enumerate().map(|(i, t)| if i % 3 == 0 { 0 } else { t - 7 }).collect();
        round_trip(&mixed, &ts);
    }

    #[test]
    fn runs_that_do_not_add_up_are_errors_not_panics() {
        let ts = [10, 20, 30];
        let mut buf = Vec::new();
        encode(&[7, 7, 7], &ts, &mut buf);
        assert!(decode(&buf, &ts[..2]).is_err());
        assert!(decode(&buf, &[10, 20, 30, 40]).is_err());
        assert!(decode(&buf[..buf.len() - 1], &ts).is_err());
        let mut trailing = buf.clone();
        trailing.push(0);
        assert!(decode(&trailing, &ts).is_err());
        // An unknown prediction, a run of length 0 and a run count far beyond the bytes.
        assert!(decode(&[3, 1, 3, 0], &ts).is_err());
        assert!(decode(&[0, 1, 0, 0], &[]).is_err());
        assert!(decode(&[0, 0xff, 0xff, 0xff, 0x0f], &ts[..1]).is_err());
        assert!(decode(&[], &ts).is_err());
    }
}
