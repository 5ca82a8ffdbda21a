//! Decoding of XOR chunks, the float sample encoding of Prometheus (encoding 1, `tsdb/chunkenc/
//! xor.go`; "XOR chunk data" in `tsdb/docs/format/chunks.md`), a variant of Facebook's Gorilla.
//!
//! ```text
//! num_samples <uint16> │ ts_0 <varint> │ v_0 <float64> │ ts_1_delta <uvarint> │ v_1_xor <varbit_xor>
//!                      │ ts_2_dod <varbit_ts> │ v_2_xor <varbit_xor> │ ... │ padding to a byte
//! ```
//!
//! After the first two samples a timestamp is stored as the change of its delta (the "delta of
//! delta", zero for regular scrapes) in a prefix-coded bucket, and a value as the XOR of its
//! bits with the previous value's, keeping only the bits between the XOR's leading and
//! trailing zeros. The input is untrusted: every read is bounds-checked and a malformed stream
//! is an error, never a panic.

/// Why an XOR chunk could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum XorError {
    #[error("chunk data of {0} bytes has no room for its 2-byte sample count")]
    NoHeader(usize),
    #[error("chunk data ends before its {declared} samples (decoded {decoded})")]
    Truncated { declared: u16, decoded: u16 },
    #[error("varint overflows 64 bits at sample {0}")]
    VarintOverflow(u16),
    #[error("value window of {leading} leading zeros and {sigbits} significant bits is wider than 64 bits")]
    BadWindow { leading: u8, sigbits: u8 },
}

/// Something that stops a bit read; `decode` turns it into an [`XorError`] naming the sample.
enum Stop {
    End,
    Overflow,
    BadWindow { leading: u8, sigbits: u8 },
}

/// Decodes the XOR chunk `data` (the bytes after the chunk's encoding byte) and appends its
/// samples, `(timestamp ms, value)`, to `out`.
pub(crate) fn decode(data: &[u8], out: &mut Vec<(i64, f64)>) -> Result<(), XorError> {
    let Some((header, stream)) = data.split_first_chunk::<2>() else {
        return Err(XorError::NoHeader(data.len()));
    };
    let declared = u16::from_be_bytes(*header);
    let mut decoded = 0u16;
    let mut state = State { bits: BitReader::new(stream), t: 0, t_delta: 0, value: 0, leading: 0, trailing: 0 };
    out.reserve(usize::from(declared));
    while decoded < declared {
        let sample = match decoded {
            0 => state.first(),
            1 => state.second(),
            _ => state.next(),
        };
        match sample {
            Ok(sample) => out.push(sample),
            Err(Stop::End) => return Err(XorError::Truncated { declared, decoded }),
            Err(Stop::Overflow) => return Err(XorError::VarintOverflow(decoded)),
            Err(Stop::BadWindow { leading, sigbits }) => return Err(XorError::BadWindow { leading, sigbits }),
        }
        decoded += 1;
    }
    Ok(())
}

/// What decoding the next sample needs to remember of the previous ones.
struct State<'a> {
    bits: BitReader<'a>,
    t: i64,
    /// The previous timestamp delta. Go keeps it as a `uint64` and lets arithmetic wrap; so do we,
    /// which gives the same timestamps for any input and cannot overflow-panic.
    t_delta: u64,
    /// The previous value's IEEE-754 bits.
    value: u64,
    /// The window of the last XOR written with explicit widths, reused by later XORs. It starts
    /// as all 64 bits, as in Go's reader (a writer always sets it before reusing it).
    leading: u8,
    trailing: u8,
}

impl State<'_> {
    /// Sample 0: the timestamp as a varint, the value as its 64 raw bits.
    fn first(&mut self) -> Result<(i64, f64), Stop> {
        self.t = super::encoding::zigzag(self.bits.uvarint()?);
        self.value = self.bits.read(64)?;
        Ok((self.t, f64::from_bits(self.value)))
    }

    /// Sample 1: the timestamp as a uvarint delta, the value as an XOR.
    fn second(&mut self) -> Result<(i64, f64), Stop> {
        self.t_delta = self.bits.uvarint()?;
        self.t = self.t.wrapping_add(self.t_delta as i64);
        self.read_value()?;
        Ok((self.t, f64::from_bits(self.value)))
    }

    /// Samples 2 and on: the timestamp as a delta of delta, the value as an XOR.
    fn next(&mut self) -> Result<(i64, f64), Stop> {
        let dod = self.read_dod()?;
        self.t_delta = self.t_delta.wrapping_add(dod as u64);
        self.t = self.t.wrapping_add(self.t_delta as i64);
        self.read_value()?;
        Ok((self.t, f64::from_bits(self.value)))
    }

    /// A delta of delta: a prefix of up to four 1 bits ended by a 0 picks the bucket.
    ///
    /// | prefix | dod                                   |
    /// |--------|---------------------------------------|
    /// | `0`    | 0                                     |
    /// | `10`   | 14-bit two's complement               |
    /// | `110`  | 17-bit                                |
    /// | `1110` | 20-bit                                |
    /// | `1111` | 64 bits as they are                   |
    ///
    /// Prometheus uses wider buckets than Gorilla's (7, 9, 12 bits) because its timestamps are
    /// milliseconds, not seconds.
    fn read_dod(&mut self) -> Result<i64, Stop> {
        let mut ones = 0;
        while ones < 4 && self.bits.bit()? {
            ones += 1;
        }
        let width = match ones {
            0 => return Ok(0),
            1 => 14,
            2 => 17,
            3 => 20,
            _ => return Ok(self.bits.read(64)? as i64),
        };
        Ok(signed(self.bits.read(width)?, width))
    }

    /// An XOR with the previous value: `0` for no change; `10` then the significant bits in the
    /// previous window; `11`, 5 bits of leading zeros, 6 bits of significant-bit count (0 meaning
    /// 64, which does not fit 6 bits and is never needed as a zero count), then those bits.
    fn read_value(&mut self) -> Result<(), Stop> {
        if !self.bits.bit()? {
            return Ok(());
        }
        let sigbits = if !self.bits.bit()? {
            64 - self.leading - self.trailing
        } else {
            let leading = self.bits.read(5)? as u8;
            let sigbits = match self.bits.read(6)? as u8 {
                0 => 64,
                n => n,
            };
            // Only a corrupt stream can say this; Go would wrap the trailing count around.
            if leading + sigbits > 64 {
                return Err(Stop::BadWindow { leading, sigbits });
            }
            self.leading = leading;
            self.trailing = 64 - leading - sigbits;
            sigbits
        };
        self.value ^= self.bits.read(u32::from(sigbits))? << self.trailing;
        Ok(())
    }
}

/// Reads the `width`-bit two's complement number `raw`.
///
/// Go's writer puts a dod `d` in a bucket of `n` bits when `-(2^(n-1) - 1) <= d <= 2^(n-1)`: the
/// range is shifted by one from the usual two's complement one, so `2^(n-1)` (whose top bit is
/// set) is positive and only raw values above it are negative.
fn signed(raw: u64, width: u32) -> i64 {
    if raw > 1 << (width - 1) { raw as i64 - (1i64 << width) } else { raw as i64 }
}

/// Reads bits most significant first from a byte slice.
struct BitReader<'a> {
    bytes: &'a [u8],
    /// Bits consumed so far.
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn new(bytes: &'a [u8]) -> BitReader<'a> {
        BitReader { bytes, pos: 0 }
    }

    fn bit(&mut self) -> Result<bool, Stop> {
        Ok(self.read(1)? == 1)
    }

    /// The next `n` bits (at most 64) as the low bits of a `u64`.
    fn read(&mut self, n: u32) -> Result<u64, Stop> {
        debug_assert!(n <= 64);
        if self.bytes.len() * 8 - self.pos < n as usize {
            return Err(Stop::End);
        }
        let mut out = 0u64;
        let mut left = n;
        while left > 0 {
            let byte = u32::from(self.bytes[self.pos / 8]);
            let unread = 8 - (self.pos % 8) as u32;
            let take = unread.min(left);
            let chunk = (byte >> (unread - take)) & ((1 << take) - 1);
            // `out` holds fewer than `n - take` bits here, so the shift never loses any.
            out = (out << take) | u64::from(chunk);
            left -= take;
            self.pos += take as usize;
        }
        Ok(out)
    }

    /// A uvarint written byte by byte into the bit stream (not necessarily byte-aligned in
    /// general, though XOR chunks only write them at aligned positions).
    fn uvarint(&mut self) -> Result<u64, Stop> {
        let mut value = 0u64;
        for i in 0..10 {
            let byte = self.read(8)? as u8;
            if i == 9 && byte > 1 {
                return Err(Stop::Overflow);
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(Stop::Overflow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An XOR chunk encoder following `xorAppender` in Prometheus's `xor.go` step by step, so the
    /// decoder can be checked on inputs chosen to hit every bucket boundary. (The integration
    /// tests check it against chunks Prometheus itself wrote.)
    fn encode(samples: &[(i64, f64)]) -> Vec<u8> {
        let mut w = BitWriter::default();
        let (mut t, mut t_delta, mut value) = (0i64, 0u64, 0u64);
        let (mut leading, mut trailing) = (0xffu8, 0u8);
        for (i, &(ts, v)) in samples.iter().enumerate() {
            let bits = v.to_bits();
            match i {
                0 => {
                    w.uvarint(((ts << 1) ^ (ts >> 63)) as u64);
                    w.write(bits, 64);
                }
                1 => {
                    t_delta = ts.wrapping_sub(t) as u64;
                    w.uvarint(t_delta);
                    write_xor(&mut w, bits ^ value, &mut leading, &mut trailing);
                }
                _ => {
                    let delta = ts.wrapping_sub(t) as u64;
                    let dod = delta.wrapping_sub(t_delta) as i64;
                    let fits = |n: u32| -((1i64 << (n - 1)) - 1) <= dod && dod <= 1i64 << (n - 1);
                    if dod == 0 {
                        w.write(0, 1);
                    } else if fits(14) {
                        w.write(0b10, 2);
                        w.write(dod as u64, 14);
                    } else if fits(17) {
                        w.write(0b110, 3);
                        w.write(dod as u64, 17);
                    } else if fits(20) {
                        w.write(0b1110, 4);
                        w.write(dod as u64, 20);
                    } else {
                        w.write(0b1111, 4);
                        w.write(dod as u64, 64);
                    }
                    t_delta = delta;
                    write_xor(&mut w, bits ^ value, &mut leading, &mut trailing);
                }
            }
            t = ts;
            value = bits;
        }
        let mut out = (samples.len() as u16).to_be_bytes().to_vec();
        out.extend(w.bytes);
        out
    }

    fn write_xor(w: &mut BitWriter, delta: u64, leading: &mut u8, trailing: &mut u8) {
        if delta == 0 {
            w.write(0, 1);
            return;
        }
        w.write(1, 1);
        let new_leading = (delta.leading_zeros() as u8).min(31);
        let new_trailing = delta.trailing_zeros() as u8;
        if *leading != 0xff && new_leading >= *leading && new_trailing >= *trailing {
            w.write(0, 1);
            w.write(delta >> *trailing, 64 - u32::from(*leading) - u32::from(*trailing));
            return;
        }
        (*leading, *trailing) = (new_leading, new_trailing);
        w.write(1, 1);
        w.write(u64::from(new_leading), 5);
        let sigbits = 64 - new_leading - new_trailing;
        w.write(u64::from(sigbits), 6); // 64 is written as 0: only the low 6 bits go out.
        w.write(delta >> new_trailing, u32::from(sigbits));
    }

    #[derive(Default)]
    struct BitWriter {
        bytes: Vec<u8>,
        /// Bits used in the last byte; 8 (or no byte) means the next bit starts a new byte.
        used: u32,
    }

    impl BitWriter {
        /// The low `n` bits of `value`, most significant first.
        fn write(&mut self, value: u64, n: u32) {
            for i in (0..n).rev() {
                if self.bytes.is_empty() || self.used == 8 {
                    self.bytes.push(0);
                    self.used = 0;
                }
                let bit = ((value >> i) & 1) as u8;
                *self.bytes.last_mut().unwrap() |= bit << (7 - self.used);
                self.used += 1;
            }
        }

        fn uvarint(&mut self, mut v: u64) {
            while v >= 0x80 {
                self.write((v as u8 | 0x80).into(), 8);
                v >>= 7;
            }
            self.write(v, 8);
        }
    }

    fn same(a: &[(i64, f64)], b: &[(i64, f64)]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0 && x.1.to_bits() == y.1.to_bits())
    }

    fn round_trip(samples: &[(i64, f64)]) {
        let chunk = encode(samples);
        let mut out = Vec::new();
        decode(&chunk, &mut out).unwrap();
        assert!(same(&out, samples), "decoded {out:?}\nwanted {samples:?}");
    }

    #[test]
    fn every_dod_bucket_and_its_edges() {
        // The edges of each bucket, as Go's bitRange draws them: 2^(n-1) is the largest value of
        // an n-bit bucket, -(2^(n-1) - 1) the smallest.
        let mut dods = vec![0i64, 1, -1, 7, -7];
        for n in [14u32, 17, 20] {
            let top = 1i64 << (n - 1);
            dods.extend([top, top + 1, -(top - 1), -top, -(top + 1)]);
        }
        dods.extend([1 << 40, -(1 << 40), i64::MAX / 4]);
        let mut samples: Vec<(i64, f64)> = vec![(1_000_000, 1.0), (1_015_000, 2.0)];
        let mut delta = 15_000i64;
        for (i, dod) in dods.into_iter().enumerate() {
            delta += dod;
            let t = samples.last().unwrap().0.wrapping_add(delta);
            samples.push((t, i as f64));
        }
        round_trip(&samples);
    }

    #[test]
    fn every_value_window() {
        let values = [
            0.0,
            -0.0, // Only the sign bit differs: one significant bit.
            1.0,
            1.0,                                   // Unchanged: a single 0 bit.
            f64::from_bits(0x3ff0_0000_0000_0001), // XOR 1: 63 leading zeros, written as 31.
            f64::from_bits(0xbff0_0000_0000_0000), // XOR 0x8000..01: 64 significant bits, written as 0.
            2.0,
            3.0,
            2.0, // The same XOR as the step before: its window is reused.
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            5e-324,
            f64::MAX,
            -123.456,
            -123.457,
            0.1,
            1e300,
            -1e-300,
            f64::from_bits(0x7ff0_0000_0000_0002), // A NaN with a payload: kept bit for bit.
            42.0,
        ];
        let samples: Vec<_> = values.iter().enumerate().map(|(i, &v)| (i as i64 * 15_000 - 50_000, v)).collect();
        round_trip(&samples);
        // One sample, two samples, negative and extreme timestamps.
        round_trip(&[(i64::MIN, 1.5)]);
        round_trip(&[(-5, 1.5), (i64::MAX, -1.5)]);
        round_trip(&[]);
    }

    #[test]
    fn regular_series_of_a_full_chunk() {
        let samples: Vec<_> = (0..120).map(|i| (1_700_000_000_000 + i * 15_000, (i / 7) as f64)).collect();
        round_trip(&samples);
    }

    #[test]
    fn truncation_is_an_error() {
        let samples: Vec<_> = (0..50).map(|i| (i * 1_000 + (i * i) % 7, (i as f64).sqrt())).collect();
        let chunk = encode(&samples);
        // Every byte holds at least one bit of a sample (the writer starts a byte only to write
        // into it), so any truncation loses part of one.
        for len in 0..chunk.len() {
            assert!(decode(&chunk[..len], &mut Vec::new()).is_err(), "decoded {len} of {} bytes", chunk.len());
        }
    }

    #[test]
    fn a_too_wide_window_is_an_error() {
        // Two samples; the second XOR says 31 leading zeros and 40 significant bits.
        let mut w = BitWriter::default();
        w.uvarint(0);
        w.write(0, 64);
        w.uvarint(1);
        w.write(0b11, 2);
        w.write(31, 5);
        w.write(40, 6);
        w.write(0, 40);
        let mut chunk = 2u16.to_be_bytes().to_vec();
        chunk.extend(w.bytes);
        assert_eq!(decode(&chunk, &mut Vec::new()), Err(XorError::BadWindow { leading: 31, sigbits: 40 }));
    }

    #[test]
    fn garbage_never_panics() {
        // A xorshift generator: deterministic, so a failure reproduces.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let len = (next() % 64) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = decode(&bytes, &mut Vec::new());
        }
        // And every single-bit flip of a real chunk.
        let samples: Vec<_> = (0..30).map(|i| (i * 30_000 + i % 3, (i as f64) * 0.25 - 3.0)).collect();
        let chunk = encode(&samples);
        for bit in 0..chunk.len() * 8 {
            let mut bad = chunk.clone();
            bad[bit / 8] ^= 0x80 >> (bit % 8);
            let _ = decode(&bad, &mut Vec::new());
        }
    }
}
