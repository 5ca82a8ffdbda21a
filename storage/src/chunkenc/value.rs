//! Value column: Gorilla XOR compression of float64 bit patterns (Facebook's Gorilla paper, as in
//! Prometheus's `chunkenc/xor.go`).
//!
//! Each value is XORed with the previous one. An unchanged value costs one bit; a change whose
//! meaningful bits fit the previous leading/trailing-zero window costs two bits plus those bits;
//! otherwise `11`, 5 bits of leading-zero count, 6 bits of significant-bit count (64 written as 0)
//! and the significant bits. Bit patterns are kept exactly, so stale markers (a special NaN) and
//! every other NaN survive a round trip.

use super::DecodeError;
use super::bitstream::{BitReader, BitWriter};

/// Encodes `values`; the count is stored by the block.
pub fn encode(values: &[f64], out: &mut Vec<u8>) {
    let mut e = Encoder::default();
    for &v in values {
        e.push(v);
    }
    e.write_to(out);
}

/// The state of an encoding in progress, so a column can grow one value at a time (the head's
/// open chunk) and still be bit-for-bit what [`encode`] writes.
#[derive(Debug, Clone)]
pub struct Encoder {
    w: BitWriter,
    n: u64,
    prev: u64,
    /// `u8::MAX`: no window yet.
    leading: u8,
    trailing: u8,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder { w: BitWriter::default(), n: 0, prev: 0, leading: u8::MAX, trailing: 0 }
    }
}

impl Encoder {
    pub fn push(&mut self, v: f64) {
        let bits = v.to_bits();
        let first = self.n == 0;
        self.n += 1;
        if first {
            self.w.write_bits(bits, 64);
            self.prev = bits;
            return;
        }
        let xor = bits ^ self.prev;
        self.prev = bits;
        if xor == 0 {
            self.w.write_bit(false);
            return;
        }
        self.w.write_bit(true);
        // The 5-bit field holds at most 31 leading zeros.
        let lz = (xor.leading_zeros() as u8).min(31);
        let tz = xor.trailing_zeros() as u8;
        if self.leading != u8::MAX && lz >= self.leading && tz >= self.trailing {
            self.w.write_bit(false);
            self.w.write_bits(xor >> self.trailing, 64 - self.leading - self.trailing);
        } else {
            self.leading = lz;
            self.trailing = tz;
            let sig = 64 - lz - tz;
            self.w.write_bit(true);
            self.w.write_bits(u64::from(lz), 5);
            self.w.write_bits(u64::from(sig % 64), 6);
            self.w.write_bits(xor >> tz, sig);
        }
    }

    /// Appends the column so far (a partial last byte is padded with zero bits).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        self.w.write_to(out);
    }

    /// Bytes of the column so far.
    pub fn encoded_len(&self) -> usize {
        self.w.encoded_len()
    }
}

/// Decodes `n` values from `bytes`.
pub fn decode(bytes: &[u8], n: usize) -> Result<Vec<f64>, DecodeError> {
    let mut out = Vec::new();
    decode_into(bytes, n, &mut out)?;
    Ok(out)
}

/// [`decode`], appending to `out` (on an error, `out` may hold some of the values).
pub fn decode_into(bytes: &[u8], n: usize, out: &mut Vec<f64>) -> Result<(), DecodeError> {
    let mut r = BitReader::new(bytes);
    // Every value after the first takes at least one bit.
    out.reserve(n.min(bytes.len() * 8 + 1));
    let mut prev = 0u64;
    let mut leading = 0u8;
    let mut trailing = 0u8;
    for i in 0..n {
        if i == 0 {
            prev = r.read_bits(64)?;
        } else if r.read_bit()? {
            if r.read_bit()? {
                leading = r.read_bits(5)? as u8;
                let sig = match r.read_bits(6)? as u8 {
                    0 => 64,
                    s => s,
                };
                if u16::from(leading) + u16::from(sig) > 64 {
                    return Err(DecodeError::Invalid("xor window wider than 64 bits"));
                }
                trailing = 64 - leading - sig;
            } else if i == 1 {
                return Err(DecodeError::Invalid("xor window reused before it was set"));
            }
            let sig = 64 - leading - trailing;
            prev ^= r.read_bits(sig)? << trailing;
        }
        out.push(f64::from_bits(prev));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prometheus's stale marker: the value a sender writes when a series disappears.
    const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

    fn round_trip(values: &[f64]) -> usize {
        let mut buf = Vec::new();
        encode(values, &mut buf);
        let got = decode(&buf, values.len()).unwrap();
        let want: Vec<u64> = values.iter().map(|v| v.to_bits()).collect();
        let got: Vec<u64> = got.iter().map(|v| v.to_bits()).collect();
        assert_eq!(got, want);
        buf.len()
    }

    #[test]
    fn constant_series_costs_one_bit_per_value() {
        let values = vec![3.5; 481];
        assert_eq!(round_trip(&values), 8 + 480 / 8);
    }

    #[test]
    fn counters_gauges_and_special_values_round_trip_bit_exactly() {
        let counter: Vec<f64> = (0..480).map(|i| (i * 37) as f64).collect();
        round_trip(&counter);
        let gauge: Vec<f64> = (0..480).map(|i| ((i * 7919) % 1000) as f64 / 100.0).collect();
        round_trip(&gauge);
        round_trip(&[
            f64::from_bits(STALE_NAN),
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            0.0,
            f64::MIN_POSITIVE,
            f64::MAX,
            1.0,
            f64::from_bits(STALE_NAN),
        ]);
        round_trip(&[]);
        round_trip(&[1.0, -1.0]);
        round_trip(&[f64::from_bits(1), f64::from_bits(u64::MAX)]);
    }

    #[test]
    fn corrupt_columns_are_errors_not_panics() {
        let mut buf = Vec::new();
        encode(&[1.0, 2.0, 3.0], &mut buf);
        assert!(decode(&buf[..buf.len() - 1], 3).is_err());
        assert!(decode(&[], 1).is_err());
        // A second value that reuses a window that was never set.
        let mut bad = vec![0u8; 8];
        bad.push(0b1000_0000);
        assert_eq!(decode(&bad, 2), Err(DecodeError::Invalid("xor window reused before it was set")));
        for len in 0..buf.len() {
            let _ = decode(&buf[..len], 1000);
        }
    }
}
