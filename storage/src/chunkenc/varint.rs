//! LEB128 unsigned varints and zigzag signed varints, as protobuf and Prometheus's index use them.

use super::DecodeError;

/// Appends `v` as an unsigned LEB128 varint.
pub fn put_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Appends `v` zigzag-encoded, so small negative numbers stay small.
pub fn put_varint(buf: &mut Vec<u8>, v: i64) {
    put_uvarint(buf, ((v << 1) ^ (v >> 63)) as u64);
}

/// A cursor over bytes that reads varints and fixed-size fields without panicking.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub fn remaining(&self) -> &'a [u8] {
        self.buf
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn uvarint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for (i, &b) in self.buf.iter().enumerate() {
            if i == 9 && b > 1 {
                return Err(DecodeError::VarintOverflow);
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.buf = &self.buf[i + 1..];
                return Ok(v);
            }
        }
        Err(DecodeError::Truncated { wanted: 1 })
    }

    pub fn varint(&mut self) -> Result<i64, DecodeError> {
        let u = self.uvarint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    /// Reads a length (uvarint) that must fit in the bytes that are left.
    pub fn len(&mut self) -> Result<usize, DecodeError> {
        let n = self.uvarint()?;
        if n > self.buf.len() as u64 {
            return Err(DecodeError::Truncated { wanted: (n - self.buf.len() as u64) as usize });
        }
        Ok(n as usize)
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Truncated { wanted: n - self.buf.len() });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Reads a uvarint length followed by that many bytes.
    pub fn len_prefixed(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.len()?;
        self.bytes(n)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.bytes(1)?[0])
    }

    pub fn u64_be(&mut self) -> Result<u64, DecodeError> {
        let b = self.bytes(8)?;
        Ok(u64::from_be_bytes(b.try_into().expect("8 bytes")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uvarint_round_trips_edges() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut buf = Vec::new();
            put_uvarint(&mut buf, v);
            let mut r = Reader::new(&buf);
            assert_eq!(r.uvarint().unwrap(), v);
            assert!(r.is_empty());
        }
    }

    #[test]
    fn varint_zigzag_keeps_small_negatives_small() {
        let mut buf = Vec::new();
        put_varint(&mut buf, -1);
        assert_eq!(buf, [1]);
        for v in [0i64, -1, 1, -64, 64, i64::MIN, i64::MAX] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(Reader::new(&buf).varint().unwrap(), v);
        }
    }

    #[test]
    fn truncated_and_overflowing_varints_are_errors() {
        assert_eq!(Reader::new(&[0x80]).uvarint(), Err(DecodeError::Truncated { wanted: 1 }));
        assert_eq!(Reader::new(&[0xff; 10]).uvarint(), Err(DecodeError::VarintOverflow));
        assert_eq!(Reader::new(&[5, 1]).len(), Err(DecodeError::Truncated { wanted: 4 }));
    }
}
