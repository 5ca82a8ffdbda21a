//! Native histograms as bytes: one histogram at a time (the write-ahead log and the head), and
//! the parts the columnar histogram block shares with it (layouts and bucket counts).
//!
//! A histogram's **layout** is what its buckets mean: schema, zero threshold, spans and custom
//! bounds. Consecutive samples of a series almost always share it, which the block codec uses.
//! Integer histograms (every count a whole number) store counts as varints, float histograms as
//! IEEE-754 bit patterns, so both come back bit for bit. Layouts are in `docs/format/wal.md` and
//! `docs/format/blocks.md`.

use amber_histogram::{CounterResetHint, Histogram, Span};

use super::DecodeError;
use super::varint::{Reader, put_uvarint, put_varint};

/// Flag bits of a histogram's header byte.
const FLAG_INTEGER: u8 = 1;
/// The counter-reset hint, two bits from this shift.
const HINT_SHIFT: u32 = 1;

/// Spans or bucket lists longer than this are refused when decoding: no valid histogram has
/// them, and a corrupt length must not allocate gigabytes.
const MAX_BUCKETS: usize = 1 << 20;

pub fn header(h: &Histogram, integer: bool) -> u8 {
    u8::from(integer) | (h.counter_reset_hint as u8) << HINT_SHIFT
}

/// Whether the header says integer counts, and the counter-reset hint.
pub fn read_header(b: u8) -> Result<(bool, CounterResetHint), DecodeError> {
    if b >> (HINT_SHIFT + 2) != 0 {
        return Err(DecodeError::Invalid("unknown histogram header bits"));
    }
    let hint = CounterResetHint::from_u8((b >> HINT_SHIFT) & 3).expect("two bits");
    Ok((b & FLAG_INTEGER != 0, hint))
}

/// Whether two histograms' buckets mean the same thing.
pub fn same_layout(a: &Histogram, b: &Histogram) -> bool {
    a.schema == b.schema
        && a.zero_threshold.to_bits() == b.zero_threshold.to_bits()
        && a.positive_spans == b.positive_spans
        && a.negative_spans == b.negative_spans
        && a.custom_values.len() == b.custom_values.len()
        && a.custom_values.iter().zip(&b.custom_values).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// `schema <varint> │ zero_threshold <8b LE> │ spans (positive) │ spans (negative) │ custom`,
/// `custom` (`count <uvarint> │ bound <8b LE> …`) only for schema −53.
pub fn put_layout(out: &mut Vec<u8>, h: &Histogram) {
    put_varint(out, h.schema as i64);
    out.extend_from_slice(&h.zero_threshold.to_bits().to_le_bytes());
    put_spans(out, &h.positive_spans);
    put_spans(out, &h.negative_spans);
    if h.uses_custom_buckets() {
        put_uvarint(out, h.custom_values.len() as u64);
        for v in &h.custom_values {
            out.extend_from_slice(&v.to_bits().to_le_bytes());
        }
    }
}

/// Reads a layout into `h` (schema, zero threshold, spans, custom bounds).
pub fn read_layout(r: &mut Reader<'_>, h: &mut Histogram) -> Result<(), DecodeError> {
    h.schema = i32::try_from(r.varint()?).map_err(|_| DecodeError::Invalid("histogram schema out of range"))?;
    h.zero_threshold = f64_le(r)?;
    h.positive_spans = read_spans(r)?;
    h.negative_spans = read_spans(r)?;
    h.custom_values.clear();
    if h.uses_custom_buckets() {
        let n = bounded_len(r)?;
        h.custom_values.reserve(n);
        for _ in 0..n {
            h.custom_values.push(f64_le(r)?);
        }
    }
    Ok(())
}

fn put_spans(out: &mut Vec<u8>, spans: &[Span]) {
    put_uvarint(out, spans.len() as u64);
    for s in spans {
        put_varint(out, s.offset as i64);
        put_uvarint(out, s.length as u64);
    }
}

fn read_spans(r: &mut Reader<'_>) -> Result<Vec<Span>, DecodeError> {
    let n = bounded_len(r)?;
    let mut spans = Vec::with_capacity(n);
    let mut total = 0usize;
    for _ in 0..n {
        let offset =
            i32::try_from(r.varint()?).map_err(|_| DecodeError::Invalid("histogram span offset out of range"))?;
        let length =
            u32::try_from(r.uvarint()?).map_err(|_| DecodeError::Invalid("histogram span length out of range"))?;
        total += length as usize;
        if total > MAX_BUCKETS {
            return Err(DecodeError::Invalid("histogram spans cover too many buckets"));
        }
        spans.push(Span { offset, length });
    }
    Ok(spans)
}

fn bounded_len(r: &mut Reader<'_>) -> Result<usize, DecodeError> {
    let n = r.len()?;
    if n > MAX_BUCKETS {
        return Err(DecodeError::Invalid("histogram list too long"));
    }
    Ok(n)
}

fn f64_le(r: &mut Reader<'_>) -> Result<f64, DecodeError> {
    Ok(f64::from_bits(u64::from_le_bytes(r.bytes(8)?.try_into().expect("8 bytes"))))
}

/// Buckets the spans of a side cover.
pub fn span_buckets(spans: &[Span]) -> usize {
    spans.iter().map(|s| s.length as usize).sum()
}

/// One count: a varint for integer histograms, the bit pattern otherwise.
pub fn put_count(out: &mut Vec<u8>, v: f64, integer: bool) {
    if integer {
        put_uvarint(out, v as u64);
    } else {
        out.extend_from_slice(&v.to_bits().to_le_bytes());
    }
}

pub fn read_count(r: &mut Reader<'_>, integer: bool) -> Result<f64, DecodeError> {
    if integer { Ok(r.uvarint()? as f64) } else { f64_le(r) }
}

/// A side's bucket counts: for integer histograms each as the signed difference from the
/// previous bucket (counts of neighbouring buckets are close, as in remote write's deltas),
/// otherwise bit patterns.
pub fn put_buckets(out: &mut Vec<u8>, counts: &[f64], integer: bool) {
    if integer {
        let mut prev = 0i64;
        for &c in counts {
            let c = c as i64;
            put_varint(out, c.wrapping_sub(prev));
            prev = c;
        }
    } else {
        for c in counts {
            out.extend_from_slice(&c.to_bits().to_le_bytes());
        }
    }
}

pub fn read_buckets(r: &mut Reader<'_>, n: usize, integer: bool) -> Result<Vec<f64>, DecodeError> {
    let mut out = Vec::with_capacity(n.min(MAX_BUCKETS));
    if integer {
        let mut prev = 0i64;
        for _ in 0..n {
            prev = prev.wrapping_add(r.varint()?);
            if prev < 0 {
                return Err(DecodeError::Invalid("negative histogram bucket count"));
            }
            out.push(prev as f64);
        }
    } else {
        for _ in 0..n {
            out.push(f64_le(r)?);
        }
    }
    Ok(out)
}

/// Writes one whole histogram: `header <1b> │ layout │ count │ zero_count │ sum <8b LE> │
/// positive buckets │ negative buckets`.
pub fn encode(out: &mut Vec<u8>, h: &Histogram) {
    let integer = h.is_integer();
    out.push(header(h, integer));
    put_layout(out, h);
    put_count(out, h.count, integer);
    put_count(out, h.zero_count, integer);
    out.extend_from_slice(&h.sum.to_bits().to_le_bytes());
    put_buckets(out, &h.positive_buckets, integer);
    put_buckets(out, &h.negative_buckets, integer);
}

/// Reads what [`encode`] wrote.
pub fn decode(r: &mut Reader<'_>) -> Result<Histogram, DecodeError> {
    let (integer, hint) = read_header(r.u8()?)?;
    let mut h = Histogram { counter_reset_hint: hint, ..Default::default() };
    read_layout(r, &mut h)?;
    h.count = read_count(r, integer)?;
    h.zero_count = read_count(r, integer)?;
    h.sum = f64_le(r)?;
    h.positive_buckets = read_buckets(r, span_buckets(&h.positive_spans), integer)?;
    h.negative_buckets = read_buckets(r, span_buckets(&h.negative_spans), integer)?;
    Ok(h)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use amber_histogram::CUSTOM_BUCKETS_SCHEMA;

    /// Histograms of every shape the codecs must keep bit for bit.
    pub(crate) fn shapes() -> Vec<Histogram> {
        let span = |offset, length| Span { offset, length };
        vec![
            Histogram {
                schema: 3,
                zero_threshold: 1e-128,
                zero_count: 2.0,
                count: 10.0,
                sum: 18.4,
                positive_spans: vec![span(-2, 2), span(3, 1)],
                positive_buckets: vec![1.0, 3.0, 2.0],
                negative_spans: vec![span(0, 1)],
                negative_buckets: vec![2.0],
                ..Default::default()
            },
            Histogram {
                counter_reset_hint: CounterResetHint::Gauge,
                schema: -4,
                count: 2.5,
                sum: f64::NAN,
                positive_spans: vec![span(1, 1)],
                positive_buckets: vec![2.5],
                ..Default::default()
            },
            Histogram {
                counter_reset_hint: CounterResetHint::Reset,
                schema: CUSTOM_BUCKETS_SCHEMA,
                count: 7.0,
                sum: 100.0,
                positive_spans: vec![span(0, 3)],
                positive_buckets: vec![1.0, 0.0, 6.0],
                custom_values: vec![0.5, 1.0],
                ..Default::default()
            },
            Histogram { sum: f64::from_bits(amber_histogram::STALE_NAN_BITS), ..Default::default() },
        ]
    }

    fn same(a: &Histogram, b: &Histogram) -> bool {
        same_layout(a, b)
            && a.counter_reset_hint == b.counter_reset_hint
            && a.count.to_bits() == b.count.to_bits()
            && a.zero_count.to_bits() == b.zero_count.to_bits()
            && a.sum.to_bits() == b.sum.to_bits()
            && a.positive_buckets == b.positive_buckets
            && a.negative_buckets == b.negative_buckets
    }

    pub(crate) fn assert_same(a: &[Histogram], b: &[Histogram]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!(same(x, y), "{x:?} != {y:?}");
        }
    }

    #[test]
    fn every_shape_round_trips_bit_for_bit() {
        for h in shapes() {
            let mut out = Vec::new();
            encode(&mut out, &h);
            let mut r = Reader::new(&out);
            let back = decode(&mut r).unwrap();
            assert!(r.is_empty());
            assert_same(&[h], &[back]);
        }
    }

    #[test]
    fn truncation_is_an_error_never_a_panic() {
        for h in shapes() {
            let mut out = Vec::new();
            encode(&mut out, &h);
            for cut in 0..out.len() {
                assert!(decode(&mut Reader::new(&out[..cut])).is_err(), "cut at {cut}");
            }
        }
    }
}
