//! Start-timestamp column: runs of equal differences between consecutive start timestamps.
//!
//! A start timestamp (the time a counter last started from zero) rarely changes: a cumulative
//! counter keeps one until it resets, so the difference from the previous sample's is 0 for run
//! after run. Delta series (start = the previous sample's timestamp) and "start = timestamp minus
//! a constant" both move by the scrape interval, again one difference repeated. Either way a
//! window of samples is a handful of runs: a few bytes for the whole column.
//!
//! Layout: `runs <uvarint> | (length <uvarint> | difference <varint>) × runs`. The first
//! difference is from 0, so the first run starts with the first start timestamp itself; 0 means
//! "no start timestamp" (as in remote write 2.0) and is encoded like any other value. The
//! lengths add up to the number of samples, which the block stores, not this column.

use super::DecodeError;
use super::varint::{Reader, put_uvarint, put_varint};

/// Encodes `starts` as runs of equal differences.
pub fn encode(starts: &[i64], out: &mut Vec<u8>) {
    let mut runs: Vec<(u64, i64)> = Vec::new();
    let mut prev = 0i64;
    for &st in starts {
        let diff = st.wrapping_sub(prev);
        match runs.last_mut() {
            Some((len, d)) if *d == diff => *len += 1,
            _ => runs.push((1, diff)),
        }
        prev = st;
    }
    put_uvarint(out, runs.len() as u64);
    for (len, diff) in runs {
        put_uvarint(out, len);
        put_varint(out, diff);
    }
}

/// Decodes the `n` start timestamps of a column that is all of `bytes`. `n` must be a count
/// already checked against real data (the block's timestamp column, decoded first), since runs
/// expand to up to `n` values.
pub fn decode(bytes: &[u8], n: usize) -> Result<Vec<i64>, DecodeError> {
    let mut r = Reader::new(bytes);
    let runs = r.uvarint()?;
    let mut out = Vec::with_capacity(n);
    let mut prev = 0i64;
    for _ in 0..runs {
        let len = r.uvarint()?;
        let diff = r.varint()?;
        if len == 0 || len > (n - out.len()) as u64 {
            return Err(DecodeError::Invalid("start-timestamp runs do not add up to the sample count"));
        }
        for _ in 0..len {
            prev = prev.wrapping_add(diff);
            out.push(prev);
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

    fn round_trip(starts: &[i64]) -> usize {
        let mut buf = Vec::new();
        encode(starts, &mut buf);
        assert_eq!(decode(&buf, starts.len()).unwrap(), starts);
        buf.len()
    }

    #[test]
    fn a_constant_start_costs_a_few_bytes_for_the_whole_column() {
        let start = 1_700_000_000_000;
        // Two runs: the start itself, then 479 zero differences.
        assert_eq!(round_trip(&[start; 480]), 1 + (1 + 6) + (2 + 1));
        // A counter that resets twice in the window: two more runs.
        let resets: Vec<i64> = (0..480).map(|i| start + (i / 160) * 2_400_000).collect();
        assert_eq!(round_trip(&resets), 1 + (1 + 6) + 3 * (2 + 1) + 2 * (1 + 4));
    }

    #[test]
    fn delta_starts_on_a_regular_interval_are_two_runs() {
        let starts: Vec<i64> = (0..480).map(|i| 1_700_000_000_000 + (i - 1) * 15_000).collect();
        assert_eq!(round_trip(&starts), 1 + (1 + 6) + (2 + 3));
    }

    #[test]
    fn unset_jittered_and_extreme_starts_round_trip() {
        round_trip(&[]);
        round_trip(&[0, 0, 5, 0, i64::MIN, i64::MAX, -1]);
        let jittered: Vec<i64> = (0..100).map(|i| i * 15_000 + (i * 7919 % 11)).collect();
        round_trip(&jittered);
    }

    #[test]
    fn runs_that_do_not_add_up_are_errors_not_panics() {
        let mut buf = Vec::new();
        encode(&[7, 7, 7], &mut buf);
        assert!(decode(&buf, 2).is_err());
        assert!(decode(&buf, 4).is_err());
        assert!(decode(&buf[..buf.len() - 1], 3).is_err());
        let mut trailing = buf.clone();
        trailing.push(0);
        assert!(decode(&trailing, 3).is_err());
        // A run of length 0 and a run count far beyond the bytes.
        assert!(decode(&[1, 0, 0], 0).is_err());
        assert!(decode(&[0xff, 0xff, 0xff, 0x0f], 1).is_err());
    }
}
