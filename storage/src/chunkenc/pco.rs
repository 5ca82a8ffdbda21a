//! Pcodec columns (the `pco` crate): timestamps as `i64` and values as `f64`, losslessly.
//!
//! Pcodec finds the common delta order, bin structure and float multipliers of a column, which
//! beats delta-of-delta and XOR by 2–7× on a sealed window of a few hundred samples. Its header
//! costs tens of bytes, so block encoders keep whichever of Pcodec, the classic codec and (for
//! values) the decimal one is smallest per column.

use super::DecodeError;

fn decode<T: pco::data_types::Number + Default>(bytes: &[u8], n: usize) -> Result<Vec<T>, DecodeError> {
    let mut out = Vec::new();
    decode_into(bytes, n, &mut out)?;
    Ok(out)
}

/// Most entries decoded straight into the caller's list: room for them is made before the
/// column is checked, so a corrupt count above it goes through Pcodec's own, growing list.
const MAX_IN_PLACE: usize = 1 << 16;

/// [`decode`], appending to `out` without a list of its own (on an error, `out` may be longer).
fn decode_into<T: pco::data_types::Number + Default>(
    bytes: &[u8],
    n: usize,
    out: &mut Vec<T>,
) -> Result<(), DecodeError> {
    let corrupt = |_| DecodeError::Invalid("corrupt pcodec column");
    let wrong_count = DecodeError::Invalid("pcodec column has the wrong number of entries");
    if n > MAX_IN_PLACE {
        let all: Vec<T> = pco::standalone::simple_decompress(bytes).map_err(corrupt)?;
        if all.len() != n {
            return Err(wrong_count);
        }
        out.extend_from_slice(&all);
        return Ok(());
    }
    let base = out.len();
    out.resize(base + n, T::default());
    let progress = pco::standalone::simple_decompress_into(bytes, &mut out[base..]).map_err(corrupt)?;
    if !progress.finished || progress.n_processed != n {
        return Err(wrong_count);
    }
    Ok(())
}

/// Encodes timestamps.
pub fn encode_timestamps(ts: &[i64]) -> Vec<u8> {
    pco::standalone::simple_compress(ts, &pco::ChunkConfig::default()).expect("pcodec encodes any i64 column")
}

/// Appends a timestamp column of `n` entries to `out`.
pub fn decode_timestamps_into(bytes: &[u8], n: usize, out: &mut Vec<i64>) -> Result<(), DecodeError> {
    decode_into(bytes, n, out)
}

/// Encodes values, keeping every bit pattern (stale-marker NaNs included); `None` when the
/// column would not come back bit for bit, so the caller keeps the XOR codec.
pub fn encode_values(values: &[f64]) -> Option<Vec<u8>> {
    let bytes = pco::standalone::simple_compress(values, &pco::ChunkConfig::default()).ok()?;
    let back: Vec<f64> = decode(&bytes, values.len()).ok()?;
    back.iter().zip(values).all(|(a, b)| a.to_bits() == b.to_bits()).then_some(bytes)
}

/// Appends a value column of `n` entries to `out`.
pub fn decode_values_into(bytes: &[u8], n: usize, out: &mut Vec<f64>) -> Result<(), DecodeError> {
    decode_into(bytes, n, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_round_trip_bit_for_bit() {
        let ts: Vec<i64> = (0..480).map(|i| 1_700_000_000_000 + i * 15_000 + (i * 7) % 5).collect();
        assert_eq!(decode::<i64>(&encode_timestamps(&ts), ts.len()).unwrap(), ts);
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let values = [1.5, f64::NAN, stale, -0.0, f64::INFINITY, 0.1 + 0.2, 42.0];
        let back = decode::<f64>(&encode_values(&values).unwrap(), values.len()).unwrap();
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&values));
    }

    #[test]
    fn a_two_decimal_gauge_takes_far_less_than_xor() {
        let values: Vec<f64> = (0..480).map(|i| ((i * 37 % 300) as f64 + 100.0) / 100.0).collect();
        let mut xor = Vec::new();
        super::super::value::encode(&values, &mut xor);
        let pco = encode_values(&values).unwrap();
        assert!(pco.len() * 2 < xor.len(), "pcodec {} bytes, xor {} bytes", pco.len(), xor.len());
    }

    #[test]
    fn corrupt_columns_are_errors() {
        let bytes = encode_timestamps(&[1, 2, 3]);
        assert!(decode::<i64>(&bytes, 4).is_err());
        for cut in 0..bytes.len() {
            assert!(decode::<i64>(&bytes[..cut], 3).is_err());
        }
    }
}
