//! Values that are decimals of a few places: each value as a whole number of 10^-d, stored as
//! the differences between consecutive ones, less the smallest difference, divided by their
//! greatest common divisor, and bit-packed at the width the largest needs.
//!
//! Exporters write decimal text: node_exporter's CPU seconds have two places, bytes, pages and
//! request counts none. Parsed, each is the double nearest its decimal, and that is the whole
//! number divided by 10^d, since IEEE division rounds correctly. On a sealed window of a few
//! hundred such samples this column is smaller than Pcodec's (whose bin tables cost tens of
//! bytes a column) and decodes without building tables: an add and a division a value, where
//! Pcodec spent most of a day-long aggregation's decoding setting up its tables. VictoriaMetrics
//! stores every value as a decimal mantissa and exponent for the same reason. Encoding checks
//! every value comes back bit for bit; a column that does not (a stale marker, `-0.0`, a value
//! past 2^53 units) keeps another codec.

use super::DecodeError;
use super::bitstream::{BitReader, BitWriter};
use super::constant::MAX_COUNT;
use super::varint::{Reader, put_uvarint, put_varint};

/// Most decimal places: 10^15 is exact in a double, and a value of 15 places is then below 9.
pub const MAX_DECIMALS: u8 = 15;

const POWERS: [f64; MAX_DECIMALS as usize + 1] =
    [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15];

/// Whole numbers of 10^-d a column may hold: every integer up to 2^53 is exact as a double.
const MAX_UNITS: f64 = 9_007_199_254_740_992.0;

/// `v` as a whole number of `10^-decimals`, when dividing that number by `10^decimals` gives
/// `v` back bit for bit.
fn units(v: f64, decimals: u8) -> Option<i64> {
    let scale = POWERS[usize::from(decimals)];
    let k = (v * scale).round();
    if k.is_nan() || k.abs() > MAX_UNITS {
        return None;
    }
    let k = k as i64;
    ((k as f64 / scale).to_bits() == v.to_bits()).then_some(k)
}

/// Encodes `values` when every one is a decimal of at most [`MAX_DECIMALS`] places within
/// 2^53 units, and there are at most [`MAX_COUNT`]:
/// `decimals <u8> | first <varint>`, then for two values or more
/// `min_delta <varint> | gcd <uvarint> | width <u8> | packed`, where `packed` holds, for each
/// value after the first, `(delta - min_delta) / gcd` in `width` bits, most significant first,
/// the last byte padded with zero bits.
pub fn encode(values: &[f64]) -> Option<Vec<u8>> {
    if values.is_empty() || values.len() > MAX_COUNT {
        return None;
    }
    // The fewest places that hold every value; each value's fewest are usually 0 or 2.
    let mut decimals = 0;
    for &v in values {
        while units(v, decimals).is_none() {
            decimals += 1;
            if decimals > MAX_DECIMALS {
                return None;
            }
        }
    }
    let units: Vec<i64> = values.iter().map(|&v| units(v, decimals)).collect::<Option<_>>()?;
    let mut out = Vec::with_capacity(16 + values.len());
    out.push(decimals);
    put_varint(&mut out, units[0]);
    if units.len() == 1 {
        return Some(out);
    }
    // Units are within ±2^53, so their differences fit with room to spare.
    let deltas: Vec<i64> = units.windows(2).map(|w| w[1] - w[0]).collect();
    let min = *deltas.iter().min().expect("two values or more");
    let gcd = deltas.iter().fold(0u64, |g, &d| gcd(g, d.abs_diff(min))).max(1);
    let widest = deltas.iter().map(|&d| d.abs_diff(min) / gcd).max().unwrap_or(0);
    let width = (u64::BITS - widest.leading_zeros()) as u8;
    put_varint(&mut out, min);
    put_uvarint(&mut out, gcd);
    out.push(width);
    let mut bits = BitWriter::default();
    for &d in &deltas {
        bits.write_bits(d.abs_diff(min) / gcd, width);
    }
    bits.write_to(&mut out);
    Some(out)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Appends the `n` values of an [`encode`] column to `out` (on an error, `out` may be longer).
pub fn decode_into(bytes: &[u8], n: usize, out: &mut Vec<f64>) -> Result<(), DecodeError> {
    if n == 0 || n > MAX_COUNT {
        return Err(DecodeError::Invalid("decimal column has no values or more than its codec allows"));
    }
    let mut r = Reader::new(bytes);
    let decimals = r.u8()?;
    if decimals > MAX_DECIMALS {
        return Err(DecodeError::Invalid("decimal column has too many decimal places"));
    }
    let scale = POWERS[usize::from(decimals)];
    let mut k = r.varint()?;
    out.reserve(n);
    out.push(k as f64 / scale);
    if n == 1 {
        return if r.is_empty() { Ok(()) } else { Err(DecodeError::Invalid("trailing bytes in decimal column")) };
    }
    let (min, gcd, width) = (r.varint()?, r.uvarint()?, r.u8()?);
    if width > 64 {
        return Err(DecodeError::Invalid("decimal column packs deltas wider than 64 bits"));
    }
    let packed = r.remaining();
    if packed.len() != ((n - 1) * usize::from(width)).div_ceil(8) {
        return Err(DecodeError::Invalid("decimal column's packed deltas have the wrong length"));
    }
    let mut bits = BitReader::new(packed);
    for _ in 1..n {
        // Wrapping: a corrupt column decodes to wrong values, never to a panic.
        let delta = min.wrapping_add(gcd.wrapping_mul(bits.read_bits(width)?) as i64);
        k = k.wrapping_add(delta);
        out.push(k as f64 / scale);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(values: &[f64]) -> Option<usize> {
        let bytes = encode(values)?;
        let mut back = vec![7.0];
        decode_into(&bytes, values.len(), &mut back).unwrap();
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back[1..]), bits(values));
        Some(bytes.len())
    }

    /// Two-decimal counters, integers, page-sized steps and text-parsed decimals come back bit
    /// for bit, at about the bits their differences need.
    #[test]
    fn decimal_columns_round_trip_in_the_bits_their_deltas_need() {
        // CPU seconds: 0.21 to 0.64 a scrape, two places: 44 steps of 0.01, 6 bits each.
        let mut v = 1000.0;
        let cpu: Vec<f64> = (0..480)
            .map(|i| {
                v = ((v + (21 + (i * 37) % 44) as f64 / 100.0) * 100.0_f64).round() / 100.0;
                v
            })
            .collect();
        assert_eq!(round_trip(&cpu), Some(1 + 3 + 1 + 1 + 1 + (479 * 6usize).div_ceil(8)));
        // Memory in pages: the common divisor 4096 is taken out.
        let pages: Vec<f64> = (0..480).map(|i| 4e9 + 4096.0 * ((i * 7919) % 201) as f64).collect();
        let len = round_trip(&pages).unwrap();
        assert!(len < 479, "{len} bytes: a page count fits in a byte");
        // Text a scrape parsed, and a single value, and a constant step.
        let parsed: Vec<f64> =
            ["0.1", "0.25", "1e-3", "12345.678", "-3.5"].iter().map(|s| s.parse().unwrap()).collect();
        round_trip(&parsed).unwrap();
        round_trip(&[42.0]).unwrap();
        let steps: Vec<f64> = (0..100).map(|i| i as f64).collect();
        assert_eq!(round_trip(&steps), Some(1 + 1 + 1 + 1 + 1));
        // The extremes of the unit range and of the places.
        round_trip(&[MAX_UNITS, -MAX_UNITS, 0.0]).unwrap();
        round_trip(&[1e-15, 2e-15]).unwrap();
    }

    #[test]
    fn values_that_are_not_short_decimals_keep_another_codec() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        for values in [
            vec![1.0, stale],
            vec![1.0, f64::NAN],
            vec![f64::INFINITY],
            vec![-0.0, 1.0],
            vec![0.1 + 0.2],
            vec![1.0 / 3.0],
            vec![100.0 / 3.0],
            vec![2.0 * MAX_UNITS],
            vec![],
        ] {
            assert_eq!(encode(&values), None, "{values:?}");
        }
    }

    #[test]
    fn corrupt_columns_are_errors() {
        let values: Vec<f64> = (0..50).map(|i| (i * i) as f64 / 100.0).collect();
        let bytes = encode(&values).unwrap();
        let mut out = Vec::new();
        for cut in 0..bytes.len() {
            assert!(decode_into(&bytes[..cut], values.len(), &mut out).is_err(), "cut at {cut}");
        }
        assert!(decode_into(&bytes, values.len() + 1, &mut out).is_err());
        assert!(decode_into(&bytes, 0, &mut out).is_err());
        let mut places = bytes.clone();
        places[0] = MAX_DECIMALS + 1;
        assert!(decode_into(&places, values.len(), &mut out).is_err());
    }
}
