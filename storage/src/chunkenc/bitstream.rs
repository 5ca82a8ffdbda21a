//! A big-endian bit writer and reader, the substrate of the XOR and decimal value codecs.

use super::DecodeError;

/// Collects bits in a register and moves them to `bytes` eight bytes at a time: writing a byte
/// at a time showed as a tenth of the ingest profile.
#[derive(Debug, Clone, Default)]
pub struct BitWriter {
    bytes: Vec<u8>,
    /// The last `pending` bits written, in the low bits.
    acc: u128,
    pending: u8,
}

impl BitWriter {
    pub fn write_bit(&mut self, bit: bool) {
        self.write_bits(u64::from(bit), 1);
    }

    /// Writes the low `n` bits of `v`, most significant first. `n` is at most 64.
    pub fn write_bits(&mut self, v: u64, n: u8) {
        debug_assert!(n <= 64);
        if n == 0 {
            return;
        }
        let v = if n == 64 { v } else { v & ((1u64 << n) - 1) };
        // At most 63 bits are pending, so 127 fit.
        self.acc = (self.acc << n) | u128::from(v);
        self.pending += n;
        if self.pending >= 64 {
            self.pending -= 64;
            self.bytes.extend_from_slice(&((self.acc >> self.pending) as u64).to_be_bytes());
            self.acc &= (1u128 << self.pending) - 1;
        }
    }

    /// Bytes written so far, counting a partial last byte.
    pub fn encoded_len(&self) -> usize {
        self.bytes.len() + usize::from(self.pending).div_ceil(8)
    }

    /// Appends everything written, the last byte padded with zero bits.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.bytes);
        if self.pending > 0 {
            let aligned = (self.acc << (64 - self.pending)) as u64;
            out.extend_from_slice(&aligned.to_be_bytes()[..usize::from(self.pending).div_ceil(8)]);
        }
    }
}

pub struct BitReader<'a> {
    bytes: &'a [u8],
    /// Position in bits from the start of `bytes`.
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        BitReader { bytes, pos: 0 }
    }

    pub fn read_bit(&mut self) -> Result<bool, DecodeError> {
        Ok(self.read_bits(1)? == 1)
    }

    /// Reads `n` bits (at most 64), most significant first.
    #[inline]
    pub fn read_bits(&mut self, n: u8) -> Result<u64, DecodeError> {
        debug_assert!(n <= 64);
        let (byte, offset) = (self.pos / 8, (self.pos % 8) as u32);
        // Most reads lie within the eight bytes from the current one: one load and two shifts.
        if let (Some(word), true) = (self.bytes.get(byte..byte + 8), u32::from(n) + offset <= 64) {
            self.pos += usize::from(n);
            if n == 0 {
                return Ok(0);
            }
            let word = u64::from_be_bytes(word.try_into().expect("eight bytes"));
            return Ok((word << offset) >> (64 - u32::from(n)));
        }
        self.read_bits_bytewise(n)
    }

    /// [`BitReader::read_bits`] near the end of the bytes, or across more than eight of them.
    #[cold]
    fn read_bits_bytewise(&mut self, n: u8) -> Result<u64, DecodeError> {
        let end = self.pos + usize::from(n);
        if end > self.bytes.len() * 8 {
            return Err(DecodeError::Truncated { wanted: (end - self.bytes.len() * 8).div_ceil(8) });
        }
        let mut v: u64 = 0;
        let mut left = n;
        while left > 0 {
            let byte = self.bytes[self.pos / 8];
            let offset = (self.pos % 8) as u8;
            let avail = 8 - offset;
            let take = left.min(avail);
            let chunk = (byte >> (avail - take)) & (((1u16 << take) - 1) as u8);
            v = (v << take) | u64::from(chunk);
            self.pos += usize::from(take);
            left -= take;
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_round_trip_across_byte_boundaries() {
        let mut w = BitWriter::default();
        w.write_bit(true);
        w.write_bits(0b1011, 4);
        w.write_bits(u64::MAX, 64);
        w.write_bits(0, 3);
        w.write_bits(0x1234_5678, 32);
        let mut bytes = Vec::new();
        w.write_to(&mut bytes);
        assert_eq!(bytes.len(), (1 + 4 + 64 + 3 + 32usize).div_ceil(8));
        assert_eq!(w.encoded_len(), bytes.len());
        let mut r = BitReader::new(&bytes);
        assert!(r.read_bit().unwrap());
        assert_eq!(r.read_bits(4).unwrap(), 0b1011);
        assert_eq!(r.read_bits(64).unwrap(), u64::MAX);
        assert_eq!(r.read_bits(3).unwrap(), 0);
        assert_eq!(r.read_bits(32).unwrap(), 0x1234_5678);
    }

    #[test]
    fn reading_past_the_end_is_an_error() {
        let mut r = BitReader::new(&[0xff]);
        assert_eq!(r.read_bits(8).unwrap(), 0xff);
        assert!(r.read_bit().is_err());
    }
}
