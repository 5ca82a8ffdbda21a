//! Packing of lower-case hex strings (trace and span ids) into the bytes they spell.

/// The bytes a lower-case, even-length, non-empty hex string spells; `None` for anything else,
/// so that [`unpack`] gives back exactly the original string.
pub fn pack(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() || !s.len().is_multiple_of(2) || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let nibble = |b: u8| if b <= b'9' { b - b'0' } else { b - b'a' + 10 };
    Some(s.as_bytes().chunks(2).map(|p| (nibble(p[0]) << 4) | nibble(p[1])).collect())
}

/// The lower-case hex string of `bytes`.
pub fn unpack(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_hex_is_packed() {
        assert_eq!(pack("00ff7a"), Some(vec![0x00, 0xff, 0x7a]));
        assert_eq!(unpack(&[0x00, 0xff, 0x7a]), "00ff7a");
        for s in ["", "0", "ABCD", "abcg", "0x12"] {
            assert_eq!(pack(s), None, "{s}");
        }
    }
}
