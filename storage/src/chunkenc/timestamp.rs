//! Timestamp column: delta-of-delta with zigzag varints.
//!
//! Scrapes are regular, so the second difference is almost always 0 (one byte) or a few
//! milliseconds of jitter (one or two bytes). Byte-aligned varints decode faster than Gorilla's
//! bit-packed buckets and cost about the same for regular data.
//!
//! Layout: `first <varint> | first_delta <varint> | dod <varint> ...` with `len - 2` second
//! differences; the number of timestamps is stored by the block, not here.

use super::DecodeError;
use super::varint::{Reader, put_varint};

/// Encodes `ts` (any order, though sorted input is what compresses).
pub fn encode(ts: &[i64], out: &mut Vec<u8>) {
    let mut e = Encoder::default();
    for &t in ts {
        e.push(t, out);
    }
}

/// The state of an encoding in progress, so a column can grow one timestamp at a time (the
/// head's open chunk) and still be byte-for-byte what [`encode`] writes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Encoder {
    n: u64,
    prev: i64,
    prev_delta: i64,
}

impl Encoder {
    pub fn push(&mut self, t: i64, out: &mut Vec<u8>) {
        match self.n {
            0 => put_varint(out, t),
            1 => {
                self.prev_delta = t.wrapping_sub(self.prev);
                put_varint(out, self.prev_delta);
            }
            _ => {
                let delta = t.wrapping_sub(self.prev);
                put_varint(out, delta.wrapping_sub(self.prev_delta));
                self.prev_delta = delta;
            }
        }
        self.prev = t;
        self.n += 1;
    }
}

/// Decodes `n` timestamps from the front of `reader`.
pub fn decode(reader: &mut Reader<'_>, n: usize) -> Result<Vec<i64>, DecodeError> {
    let mut out = Vec::new();
    decode_into(reader, n, &mut out)?;
    Ok(out)
}

/// [`decode`], appending to `out` (on an error, `out` may hold some of the timestamps).
pub fn decode_into(reader: &mut Reader<'_>, n: usize, out: &mut Vec<i64>) -> Result<(), DecodeError> {
    // A corrupt count must not make us allocate gigabytes: every timestamp takes at least a byte.
    out.reserve(n.min(reader.remaining().len()));
    let mut prev = 0i64;
    let mut delta = 0i64;
    for i in 0..n {
        let t = match i {
            0 => reader.varint()?,
            1 => {
                delta = reader.varint()?;
                prev.wrapping_add(delta)
            }
            _ => {
                delta = delta.wrapping_add(reader.varint()?);
                prev.wrapping_add(delta)
            }
        };
        out.push(t);
        prev = t;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(ts: &[i64]) -> usize {
        let mut buf = Vec::new();
        encode(ts, &mut buf);
        let mut r = Reader::new(&buf);
        assert_eq!(decode(&mut r, ts.len()).unwrap(), ts);
        assert!(r.is_empty());
        buf.len()
    }

    #[test]
    fn regular_scrapes_cost_one_byte_per_timestamp() {
        let ts: Vec<i64> = (0..480).map(|i| 1_700_000_000_000 + i * 15_000).collect();
        let bytes = round_trip(&ts);
        // 6 bytes for the first timestamp, 3 for the first delta, then 1 per zero second difference.
        assert_eq!(bytes, 6 + 3 + 478);
    }

    #[test]
    fn jitter_extremes_and_empty_round_trip() {
        round_trip(&[]);
        round_trip(&[42]);
        round_trip(&[i64::MIN, i64::MAX, 0, -5, i64::MAX]);
        let jittered: Vec<i64> = (0..100).map(|i| i * 15_000 + (i * 7919 % 11) - 5).collect();
        round_trip(&jittered);
    }

    #[test]
    fn truncated_column_is_an_error_not_a_panic() {
        let mut buf = Vec::new();
        encode(&[1, 2, 3], &mut buf);
        buf.pop();
        assert!(decode(&mut Reader::new(&buf), 3).is_err());
        assert!(decode(&mut Reader::new(&[]), usize::MAX).is_err());
    }
}
