//! Prometheus's XOR chunk (`chunkenc.EncXOR`, Gorilla-style), the float encoding of remote read's
//! `STREAMED_XOR_CHUNKS` answers, written exactly as `tsdb/chunkenc/xor.go` writes it:
//!
//! ```text
//! ┌──────────────────┬───────────────┬──────────────┬────────────────┬─────────────────────────┐
//! │ num samples <2b> │ t0 <varint>   │ v0 <8b>      │ Δt1 <uvarint>  │ v1 <xor> │ (Δ²t, v <xor>)… │
//! └──────────────────┴───────────────┴──────────────┴────────────────┴─────────────────────────┘
//! ```
//!
//! Timestamps after the second are delta-of-deltas in bit buckets (`0`; `10`+14 bits; `110`+17;
//! `1110`+20; `1111`+64); values are XORed with the previous one: `0` when equal, else `1` and
//! either `0` plus the meaningful bits inside the previous leading/trailing-zero window, or `1`,
//! 5 bits of leading zeros (clamped to 31), 6 bits of meaningful-bit count (64 written as 0) and
//! the bits themselves. Bits are written most significant first; the last byte is zero-padded.

/// Samples per chunk, as Prometheus cuts its head chunks.
pub const SAMPLES_PER_CHUNK: usize = 120;

/// Bits appended most significant first.
#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits still free in the last byte.
    free: u8,
}

impl BitWriter {
    fn bit(&mut self, one: bool) {
        if self.free == 0 {
            self.bytes.push(0);
            self.free = 8;
        }
        self.free -= 1;
        if one {
            *self.bytes.last_mut().expect("a byte was pushed") |= 1 << self.free;
        }
    }

    /// The low `n` bits of `v`, most significant first.
    fn bits(&mut self, v: u64, n: u32) {
        for i in (0..n).rev() {
            self.bit((v >> i) & 1 == 1);
        }
    }

    fn byte(&mut self, b: u8) {
        self.bits(u64::from(b), 8);
    }
}

/// Go's `binary.PutUvarint`.
fn uvarint(w: &mut BitWriter, mut v: u64) {
    while v >= 0x80 {
        w.byte(v as u8 | 0x80);
        v >>= 7;
    }
    w.byte(v as u8);
}

/// Whether `x` fits the signed `n`-bit bucket of xor.go's `bitRange`.
fn fits(x: i64, n: u32) -> bool {
    -((1i64 << (n - 1)) - 1) <= x && x <= 1i64 << (n - 1)
}

/// Encodes `(timestamp, value)` pairs, at most [`SAMPLES_PER_CHUNK`] (any number up to 65535 is
/// valid), in time order.
pub fn encode(samples: &[(i64, f64)]) -> Vec<u8> {
    assert!(samples.len() <= usize::from(u16::MAX), "an XOR chunk holds at most 65535 samples");
    let mut w = BitWriter::default();
    w.bits(samples.len() as u64, 16);
    let (mut t_prev, mut delta_prev, mut v_prev) = (0i64, 0i64, 0u64);
    // 0xff: no window yet, the first XOR writes its own.
    let (mut leading, mut trailing) = (0xffu32, 0u32);
    for (i, &(t, v)) in samples.iter().enumerate() {
        let v = v.to_bits();
        match i {
            0 => {
                uvarint(&mut w, ((t << 1) ^ (t >> 63)) as u64);
                w.bits(v, 64);
            }
            1 => {
                delta_prev = t - t_prev;
                uvarint(&mut w, delta_prev as u64);
                xor(&mut w, v ^ v_prev, &mut leading, &mut trailing);
            }
            _ => {
                let delta = t - t_prev;
                let dod = delta - delta_prev;
                match dod {
                    0 => w.bit(false),
                    d if fits(d, 14) => {
                        w.bits(0b10, 2);
                        w.bits(d as u64, 14);
                    }
                    d if fits(d, 17) => {
                        w.bits(0b110, 3);
                        w.bits(d as u64, 17);
                    }
                    d if fits(d, 20) => {
                        w.bits(0b1110, 4);
                        w.bits(d as u64, 20);
                    }
                    d => {
                        w.bits(0b1111, 4);
                        w.bits(d as u64, 64);
                    }
                }
                delta_prev = delta;
                xor(&mut w, v ^ v_prev, &mut leading, &mut trailing);
            }
        }
        (t_prev, v_prev) = (t, v);
    }
    w.bytes
}

/// xor.go's `xorWrite`: one value as its XOR with the previous one.
fn xor(w: &mut BitWriter, delta: u64, leading: &mut u32, trailing: &mut u32) {
    if delta == 0 {
        w.bit(false);
        return;
    }
    w.bit(true);
    let new_leading = delta.leading_zeros().min(31);
    let new_trailing = delta.trailing_zeros();
    if *leading != 0xff && new_leading >= *leading && new_trailing >= *trailing {
        w.bit(false);
        w.bits(delta >> *trailing, 64 - *leading - *trailing);
        return;
    }
    (*leading, *trailing) = (new_leading, new_trailing);
    w.bit(true);
    w.bits(u64::from(new_leading), 5);
    let significant = 64 - new_leading - new_trailing;
    // 64 meaningful bits do not fit 6 bits: written as 0, read back as 64.
    w.bits(u64::from(significant), 6);
    w.bits(delta >> new_trailing, significant);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader written from xor.go's iterator, to check the encoder against.
    struct BitReader<'a> {
        bytes: &'a [u8],
        pos: usize,
    }

    impl BitReader<'_> {
        fn bit(&mut self) -> bool {
            let b = self.bytes[self.pos / 8] >> (7 - self.pos % 8) & 1 == 1;
            self.pos += 1;
            b
        }
        fn bits(&mut self, n: u32) -> u64 {
            (0..n).fold(0, |acc, _| acc << 1 | u64::from(self.bit()))
        }
        fn uvarint(&mut self) -> u64 {
            let (mut v, mut shift) = (0u64, 0);
            loop {
                let b = self.bits(8);
                v |= (b & 0x7f) << shift;
                if b < 0x80 {
                    return v;
                }
                shift += 7;
            }
        }
    }

    /// xor.go's reading of an `n`-bit delta-of-delta: above 2^(n-1) is negative, so the bucket
    /// holds -(2^(n-1) - 1) to 2^(n-1).
    fn bucket_value(v: u64, n: u32) -> i64 {
        if v > 1 << (n - 1) { v as i64 - (1i64 << n) } else { v as i64 }
    }

    fn decode(bytes: &[u8]) -> Vec<(i64, f64)> {
        let mut r = BitReader { bytes, pos: 0 };
        let n = r.bits(16) as usize;
        let mut out = Vec::with_capacity(n);
        let (mut t, mut delta, mut v, mut leading, mut trailing) = (0i64, 0i64, 0u64, 0u32, 0u32);
        for i in 0..n {
            match i {
                0 => {
                    let z = r.uvarint();
                    t = ((z >> 1) as i64) ^ -((z & 1) as i64);
                    v = r.bits(64);
                }
                _ => {
                    if i == 1 {
                        delta = r.uvarint() as i64;
                    } else {
                        let dod = if !r.bit() {
                            0
                        } else if !r.bit() {
                            bucket_value(r.bits(14), 14)
                        } else if !r.bit() {
                            bucket_value(r.bits(17), 17)
                        } else if !r.bit() {
                            bucket_value(r.bits(20), 20)
                        } else {
                            r.bits(64) as i64
                        };
                        delta += dod;
                    }
                    t += delta;
                    if r.bit() {
                        if r.bit() {
                            leading = r.bits(5) as u32;
                            let significant = match r.bits(6) as u32 {
                                0 => 64,
                                s => s,
                            };
                            trailing = 64 - leading - significant;
                        }
                        v ^= r.bits(64 - leading - trailing) << trailing;
                    }
                }
            }
            out.push((t, f64::from_bits(v)));
        }
        out
    }

    #[test]
    fn the_first_samples_have_xor_go_bytes() {
        // Header 0x0002, t0 = 1000 as zigzag varint (0xd0 0x0f), v0 = 1.0 (0x3ff0…), Δt = 15
        // (0x0f), then v1 = 1.0 again: one zero bit, padded.
        assert_eq!(
            encode(&[(1000, 1.0), (1015, 1.0)]),
            [0x00, 0x02, 0xd0, 0x0f, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0x0f, 0x00]
        );
    }

    #[test]
    fn every_timestamp_bucket_and_value_window_round_trips() {
        let mut samples = vec![(-5_000i64, 0.0f64), (10_000, 1.5)];
        let mut t = 10_000i64;
        let mut delta = 15_000i64;
        // Delta-of-deltas in each bucket, both signs, and values: repeated, in the old XOR window,
        // needing a new one, all 64 bits meaningful, NaN and infinities.
        for (i, dod) in [0i64, 1, -1, 8192, -8191, 8193, 65_536, -65_535, 65_537, 524_288, -524_287, 524_289, 1 << 40]
            .into_iter()
            .enumerate()
        {
            delta += dod;
            t += delta;
            let v = match i % 6 {
                0 => samples.last().unwrap().1,
                1 => 1.75,
                2 => -123_456.789,
                3 => f64::from_bits(0x8000_0000_0000_0001),
                4 => f64::NAN,
                _ => f64::INFINITY,
            };
            samples.push((t, v));
        }
        let decoded = decode(&encode(&samples));
        let bits = |s: &[(i64, f64)]| s.iter().map(|&(t, v)| (t, v.to_bits())).collect::<Vec<_>>();
        assert_eq!(bits(&decoded), bits(&samples));
    }

    #[test]
    fn a_full_chunk_of_scrapes_round_trips() {
        // A counter scraped every 15 s with a few milliseconds of jitter.
        let samples: Vec<(i64, f64)> =
            (0..SAMPLES_PER_CHUNK as i64).map(|i| (1_700_000_000_000 + i * 15_000 + i % 3, (i * 15) as f64)).collect();
        let bytes = encode(&samples);
        assert_eq!(decode(&bytes), samples);
        assert!(bytes.len() < samples.len() * 4, "{} bytes", bytes.len());
    }
}
