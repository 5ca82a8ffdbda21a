//! Bounds-checked decoding of the primitives every TSDB file is made of: big-endian integers,
//! Go's `encoding/binary` varints, length-prefixed strings, and the CRC32-Castagnoli checksums
//! that guard each section (Prometheus's `tsdb/encoding`).
//!
//! Every read names the absolute file offset it failed at, so an error about a corrupt block
//! points at the byte to look at.

use anyhow::{Result, bail};

/// The longest uvarint Go writes for a 64-bit value.
const MAX_VARINT_LEN64: usize = 10;

/// A cursor over bytes read from a file at offset `base`.
pub(crate) struct Decbuf<'a> {
    bytes: &'a [u8],
    pos: usize,
    base: u64,
}

impl<'a> Decbuf<'a> {
    /// Decodes `bytes`, which were read from file offset `base`.
    pub(crate) fn new(bytes: &'a [u8], base: u64) -> Decbuf<'a> {
        Decbuf { bytes, pos: 0, base }
    }

    /// The absolute file offset of the next byte.
    pub(crate) fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// How many bytes are left.
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// The next `n` bytes.
    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            bail!("offset {}: wanted {n} bytes, only {} left", self.offset(), self.remaining());
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn be32(&mut self) -> Result<u32> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn be64(&mut self) -> Result<u64> {
        let b = self.bytes(8)?;
        Ok(u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }

    /// An unsigned LEB128 varint as Go's `binary.Uvarint` reads it: at most 10 bytes, and an
    /// error rather than silent truncation when the value does not fit 64 bits.
    pub(crate) fn uvarint(&mut self) -> Result<u64> {
        let start = self.offset();
        match uvarint(&self.bytes[self.pos..]) {
            Some((value, len)) => {
                self.pos += len;
                Ok(value)
            }
            None => bail!("offset {start}: truncated or overlong varint"),
        }
    }

    /// A uvarint that must fit 32 bits (symbol references, lengths of `<uvarint32>` fields).
    pub(crate) fn uvarint32(&mut self) -> Result<u32> {
        let start = self.offset();
        let value = self.uvarint()?;
        u32::try_from(value).map_err(|_| anyhow::anyhow!("offset {start}: {value} does not fit 32 bits"))
    }

    /// A zigzag-encoded signed varint (Go's `binary.Varint`).
    pub(crate) fn varint(&mut self) -> Result<i64> {
        Ok(zigzag(self.uvarint()?))
    }

    /// A uvarint length followed by that many bytes.
    pub(crate) fn uvarint_bytes(&mut self) -> Result<&'a [u8]> {
        let start = self.offset();
        let len = self.uvarint()?;
        if len > self.remaining() as u64 {
            bail!("offset {start}: string of {len} bytes, only {} left", self.remaining());
        }
        self.bytes(len as usize)
    }
}

/// Decodes a uvarint at the start of `bytes`: its value and length, or `None` when `bytes` ends
/// inside it or it overflows 64 bits.
pub(crate) fn uvarint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().take(MAX_VARINT_LEN64).enumerate() {
        // The tenth byte may only hold the 64th bit.
        if i == MAX_VARINT_LEN64 - 1 && byte > 1 {
            return None;
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Undoes zigzag encoding, which maps small negative numbers to small unsigned ones.
pub(crate) fn zigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Checks the big-endian CRC32-Castagnoli `stored` after `data`; `what` names the section and
/// where it is, for the error.
pub(crate) fn check_crc(data: &[u8], stored: &[u8], what: impl FnOnce() -> String) -> Result<()> {
    let Ok(stored) = <[u8; 4]>::try_from(stored) else {
        bail!("{}: checksum missing", what());
    };
    let stored = u32::from_be_bytes(stored);
    let computed = crc32c::crc32c(data);
    if stored != computed {
        bail!("{}: checksum mismatch (stored {stored:08x}, computed {computed:08x})", what());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uvarint_matches_go() {
        assert_eq!(uvarint(&[0]), Some((0, 1)));
        assert_eq!(uvarint(&[0x96, 0x01]), Some((150, 2)));
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(uvarint(&max), Some((u64::MAX, 10)));
        // A tenth byte above 1 overflows; so does an eleventh byte.
        let mut overflow = max;
        overflow[9] = 0x02;
        assert_eq!(uvarint(&overflow), None);
        assert_eq!(uvarint(&[0x80; 11]), None);
        // Truncated: the continuation bit is set on the last byte.
        assert_eq!(uvarint(&[0x80]), None);
        assert_eq!(uvarint(&[]), None);
    }

    #[test]
    fn zigzag_matches_go() {
        assert_eq!(zigzag(0), 0);
        assert_eq!(zigzag(1), -1);
        assert_eq!(zigzag(2), 1);
        assert_eq!(zigzag(u64::MAX), i64::MIN);
        assert_eq!(zigzag(u64::MAX - 1), i64::MAX);
    }

    #[test]
    fn reads_are_bounds_checked_and_name_the_offset() {
        let mut d = Decbuf::new(&[0, 0, 0, 7, 3, b'a', b'b'], 100);
        assert_eq!(d.be32().unwrap(), 7);
        let err = d.uvarint_bytes().unwrap_err().to_string();
        assert!(err.contains("offset 104"), "{err}");
        let mut d = Decbuf::new(&[1, 2], 0);
        assert!(d.be32().is_err());
        assert!(Decbuf::new(&[0x80, 0x80, 0x80, 0x80, 0x10], 0).uvarint32().is_err());
    }

    #[test]
    fn crc_mismatch_names_the_section() {
        let data = b"hello";
        let crc = crc32c::crc32c(data).to_be_bytes();
        check_crc(data, &crc, || "x".into()).unwrap();
        let err = check_crc(b"hellp", &crc, || "symbol table".into()).unwrap_err().to_string();
        assert!(err.contains("symbol table: checksum mismatch"), "{err}");
    }
}
