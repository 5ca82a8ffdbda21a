//! Columns that one number describes: timestamps a fixed step apart, and values that keep the
//! same bits for a whole block.
//!
//! Both are common. Prometheus aligns the timestamps of a regular scrape to its interval
//! (`--scrape.timestamp-tolerance`), and `up`, info metrics, limits and gauges at rest keep one
//! value for hours. Pcodec stores such a column in a few dozen bytes, but decoding it still
//! builds Pcodec's tables, a few microseconds a column: on a dashboard's selector over a
//! hundred series, most of the read. Here the column is its first timestamp and step, or its
//! value, and decoding is a fill. VictoriaMetrics keeps both cases as encodings of their own
//! (`MarshalTypeDeltaConst`, `MarshalTypeConst`).

use super::DecodeError;
use super::varint::{Reader, put_varint};

/// Most entries a constant column holds. The payload does not grow with the count, so a
/// corrupt count could otherwise ask for any amount of memory; encoders keep a longer column in
/// another codec.
pub const MAX_COUNT: usize = 1 << 24;

/// The step between consecutive timestamps, when there are at least two, at most
/// [`MAX_COUNT`], and every step is the same.
pub fn step(ts: &[i64]) -> Option<i64> {
    let [a, b, ..] = *ts else { return None };
    if ts.len() > MAX_COUNT {
        return None;
    }
    let step = b.wrapping_sub(a);
    ts.windows(2).all(|w| w[1].wrapping_sub(w[0]) == step).then_some(step)
}

/// Encodes timestamps `first + i × step`: `first <varint> | step <varint>`.
pub fn encode_steps(first: i64, step: i64, out: &mut Vec<u8>) {
    put_varint(out, first);
    put_varint(out, step);
}

/// Appends the `n` timestamps of an [`encode_steps`] column to `out`.
pub fn decode_steps_into(bytes: &[u8], n: usize, out: &mut Vec<i64>) -> Result<(), DecodeError> {
    let mut r = Reader::new(bytes);
    let (first, step) = (r.varint()?, r.varint()?);
    if !r.is_empty() {
        return Err(DecodeError::Invalid("trailing bytes in constant-step timestamp column"));
    }
    if n > MAX_COUNT {
        return Err(DecodeError::Invalid("constant column longer than its codec allows"));
    }
    let last = i64::try_from(n.saturating_sub(1)).ok().and_then(|i| step.checked_mul(i)?.checked_add(first));
    if last.is_none() {
        return Err(DecodeError::Invalid("constant-step timestamps overflow"));
    }
    out.extend((0..n as i64).map(|i| first + i * step));
    Ok(())
}

/// The bit pattern every value has, when there is at least one value and at most
/// [`MAX_COUNT`]. Bits, not `==`: a stale marker is a NaN, and `-0.0` is not `0.0` here.
pub fn same_bits(values: &[f64]) -> Option<u64> {
    let first = values.first()?.to_bits();
    (values.len() <= MAX_COUNT && values.iter().all(|v| v.to_bits() == first)).then_some(first)
}

/// Encodes a column of one repeated value: its bits, 8 bytes little-endian.
pub fn encode_same(bits: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(&bits.to_le_bytes());
}

/// Appends the `n` values of an [`encode_same`] column to `out`.
pub fn decode_same_into(bytes: &[u8], n: usize, out: &mut Vec<f64>) -> Result<(), DecodeError> {
    let bits: [u8; 8] = bytes.try_into().map_err(|_| DecodeError::Invalid("constant value column is not 8 bytes"))?;
    if n > MAX_COUNT {
        return Err(DecodeError::Invalid("constant column longer than its codec allows"));
    }
    out.resize(out.len() + n, f64::from_bits(u64::from_le_bytes(bits)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_timestamps_round_trip_and_irregular_ones_are_not_taken() {
        let ts: Vec<i64> = (0..480).map(|i| 1_800_000_000_000 + i * 15_000).collect();
        assert_eq!(step(&ts), Some(15_000));
        let mut bytes = Vec::new();
        encode_steps(ts[0], 15_000, &mut bytes);
        assert!(bytes.len() <= 10, "{} bytes", bytes.len());
        let mut out = vec![7];
        decode_steps_into(&bytes, ts.len(), &mut out).unwrap();
        assert_eq!((out[0], &out[1..]), (7, ts.as_slice()), "appended");

        let mut jittered = ts.clone();
        jittered[100] += 1;
        assert_eq!(step(&jittered), None);
        assert_eq!(step(&ts[..1]), None, "one timestamp has no step");
        assert_eq!(step(&[]), None);
    }

    #[test]
    fn one_value_round_trips_bit_for_bit() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        for v in [1.5, stale, -0.0, f64::INFINITY] {
            let values = vec![v; 300];
            let bits = same_bits(&values).unwrap();
            let mut bytes = Vec::new();
            encode_same(bits, &mut bytes);
            let mut out = Vec::new();
            decode_same_into(&bytes, values.len(), &mut out).unwrap();
            assert_eq!(out.len(), 300);
            assert!(out.iter().all(|x| x.to_bits() == v.to_bits()));
        }
        assert_eq!(same_bits(&[0.0, -0.0]), None, "different bits");
        assert_eq!(same_bits(&[]), None);
    }

    #[test]
    fn corrupt_columns_are_errors() {
        let mut bytes = Vec::new();
        encode_steps(i64::MAX - 10, 5, &mut bytes);
        let mut out = Vec::new();
        assert!(decode_steps_into(&bytes, 3, &mut out).is_ok());
        assert!(decode_steps_into(&bytes, 4, &mut out).is_err(), "overflow");
        assert!(decode_steps_into(&bytes[..1], 4, &mut out).is_err(), "truncated");
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode_steps_into(&trailing, 2, &mut out).is_err());
        let mut small = Vec::new();
        encode_steps(0, 1, &mut small);
        assert!(decode_steps_into(&small, MAX_COUNT + 1, &mut out).is_err(), "too long");

        let mut values = Vec::new();
        assert!(decode_same_into(&[0; 7], 2, &mut values).is_err());
        assert!(decode_same_into(&[0; 9], 2, &mut values).is_err());
        assert!(decode_same_into(&[0; 8], MAX_COUNT + 1, &mut values).is_err());
        assert!(values.is_empty());
    }
}
