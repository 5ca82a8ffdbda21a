//! Remote write 1.0's `prometheus.WriteRequest` read in place. prost decodes every label name and
//! value into a `String` of its own, two allocations per label and most of the write path's
//! allocations; here they are `&str`s borrowed from the decompressed body, and every series'
//! labels, samples and exemplars go into a few flat vectors for the whole request (the way
//! VictoriaMetrics' `lib/prompb` reads it). Histograms and metadata, far rarer, are decoded by
//! prost. Each series also keeps the bytes its labels arrived as, the key of the
//! [`super::labels_cache::LabelsCache`]; [`WriteRequest::decode`] looks them up as it reads,
//! and a series the cache knows keeps its validated labels instead of having its label fields
//! read and checked as UTF-8 again (6 % of the write path's CPU when every label was checked).
//!
//! The layout is `api/proto/remote.proto` and `types.proto`; unknown fields are skipped, as
//! prost skips them.

use std::borrow::Cow;
use std::ops::Range;

use amber_storage::labels::Labels;
use prost::Message;
use prost::bytes::Buf;
use prost::encoding::{DecodeContext, WireType, check_wire_type, decode_key, decode_varint, skip_field};

use crate::prompb;

/// One label, borrowed from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelRef<'a> {
    pub name: &'a str,
    pub value: &'a str,
}

/// One exemplar; its labels are [`WriteRequest::exemplar_labels`] of it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExemplarRef {
    labels: Range<usize>,
    pub value: f64,
    pub timestamp: i64,
}

/// Where one series' entries sit in the request's flat vectors.
#[derive(Debug, Clone, Default)]
struct SeriesRanges<'a> {
    labels: Range<usize>,
    /// The series' label fields as sent, when they sit side by side (as every sender writes them).
    raw_labels: Option<&'a [u8]>,
    /// The labels validated before for `raw_labels`, when the lookup of
    /// [`WriteRequest::decode`] knew them; `labels` is empty then.
    cached: Option<Labels>,
    samples: Range<usize>,
    exemplars: Range<usize>,
    histograms: Range<usize>,
}

/// A decoded `WriteRequest`, borrowing from the body (or, [`WriteRequest::from_owned`], from
/// prost's owned form).
#[derive(Debug, Default)]
pub struct WriteRequest<'a> {
    series: Vec<SeriesRanges<'a>>,
    labels: Vec<LabelRef<'a>>,
    samples: Vec<prompb::Sample>,
    exemplars: Vec<ExemplarRef>,
    exemplar_labels: Vec<LabelRef<'a>>,
    histograms: Vec<Cow<'a, prompb::Histogram>>,
    pub metadata: Vec<prompb::MetricMetadata>,
}

/// One series of a [`WriteRequest`].
#[derive(Clone, Copy)]
pub struct Series<'r, 'a> {
    req: &'r WriteRequest<'a>,
    ranges: &'r SeriesRanges<'a>,
}

impl<'r, 'a> Series<'r, 'a> {
    /// The labels as sent; empty for a series with [`Series::cached_labels`].
    pub fn labels(&self) -> &'r [LabelRef<'a>] {
        &self.req.labels[self.ranges.labels.clone()]
    }

    /// The validated labels the lookup of [`WriteRequest::decode`] gave for the series'
    /// raw labels.
    pub fn cached_labels(&self) -> Option<&'r Labels> {
        self.ranges.cached.as_ref()
    }

    /// The label fields' bytes as sent, if contiguous: equal bytes are equal label lists.
    pub fn raw_labels(&self) -> Option<&'a [u8]> {
        self.ranges.raw_labels
    }

    pub fn samples(&self) -> &'r [prompb::Sample] {
        &self.req.samples[self.ranges.samples.clone()]
    }

    pub fn exemplars(&self) -> impl Iterator<Item = (&'r [LabelRef<'a>], &'r ExemplarRef)> + use<'r, 'a> {
        let req = self.req;
        req.exemplars[self.ranges.exemplars.clone()].iter().map(move |e| (&req.exemplar_labels[e.labels.clone()], e))
    }

    pub fn histograms(&self) -> &'r [Cow<'a, prompb::Histogram>] {
        &self.req.histograms[self.ranges.histograms.clone()]
    }
}

impl<'a> WriteRequest<'a> {
    /// Reads a decompressed `WriteRequest`, asking `lookup` for the validated labels of each
    /// series' raw labels (`|_| None` reads every series' labels): a series it knows is not read
    /// into [`Series::labels`], its label fields (equal to bytes that were read and checked
    /// before) are only skipped. Errors read as prost's would, for bytes prost refuses.
    pub fn decode(body: &'a [u8], mut lookup: impl FnMut(&[u8]) -> Option<Labels>) -> Result<Self, prost::DecodeError> {
        let mut req = WriteRequest::default();
        // The label fields of the series being read, one list for the whole request.
        let mut label_fields = Vec::new();
        let mut buf = body;
        while !buf.is_empty() {
            let (tag, wire_type) = decode_key(&mut buf)?;
            match tag {
                1 => within("WriteRequest", "timeseries", || {
                    req.read_series(message(wire_type, &mut buf)?, &mut lookup, &mut label_fields)
                })?,
                3 => within("WriteRequest", "metadata", || {
                    req.metadata.push(prompb::MetricMetadata::decode(message(wire_type, &mut buf)?)?);
                    Ok(())
                })?,
                _ => skip_field(wire_type, tag, &mut buf, DecodeContext::default())?,
            }
        }
        Ok(req)
    }

    /// The same form over a request built in memory (OTLP translates to it).
    pub fn from_owned(owned: &'a prompb::WriteRequest) -> Self {
        let mut req = WriteRequest { metadata: owned.metadata.clone(), ..WriteRequest::default() };
        let borrow = |l: &'a prompb::Label| LabelRef { name: &l.name, value: &l.value };
        for ts in &owned.timeseries {
            let mut ranges = SeriesRanges { labels: req.labels.len()..0, ..SeriesRanges::default() };
            req.labels.extend(ts.labels.iter().map(borrow));
            ranges.labels.end = req.labels.len();
            ranges.samples = extended(&mut req.samples, ts.samples.iter().cloned());
            let first_exemplar = req.exemplars.len();
            for e in &ts.exemplars {
                let labels = extended(&mut req.exemplar_labels, e.labels.iter().map(borrow));
                req.exemplars.push(ExemplarRef { labels, value: e.value, timestamp: e.timestamp });
            }
            ranges.exemplars = first_exemplar..req.exemplars.len();
            ranges.histograms = extended(&mut req.histograms, ts.histograms.iter().map(Cow::Borrowed));
            req.series.push(ranges);
        }
        req
    }

    pub fn series(&self) -> impl ExactSizeIterator<Item = Series<'_, 'a>> {
        self.series.iter().map(move |ranges| Series { req: self, ranges })
    }

    /// Reads one `TimeSeries` message; its labels from `lookup` when it knows the raw labels,
    /// else from its label fields, collected in `label_fields` until the raw labels are known.
    fn read_series(
        &mut self,
        message: &'a [u8],
        lookup: &mut impl FnMut(&[u8]) -> Option<Labels>,
        label_fields: &mut Vec<&'a [u8]>,
    ) -> Result<(), prost::DecodeError> {
        let mut ranges = SeriesRanges {
            labels: self.labels.len()..self.labels.len(),
            samples: self.samples.len()..self.samples.len(),
            exemplars: self.exemplars.len()..self.exemplars.len(),
            histograms: self.histograms.len()..self.histograms.len(),
            raw_labels: None,
            cached: None,
        };
        label_fields.clear();
        // The label fields' span in `message`, while they follow one another.
        let (mut raw, mut contiguous) = (None::<Range<usize>>, true);
        let mut buf = message;
        while !buf.is_empty() {
            let field_start = message.len() - buf.len();
            let (tag, wire_type) = decode_key(&mut buf)?;
            match tag {
                1 => {
                    let field = within("TimeSeries", "labels", || self::message(wire_type, &mut buf))?;
                    label_fields.push(field);
                    let field_end = message.len() - buf.len();
                    match &mut raw {
                        Some(span) if span.end == field_start => span.end = field_end,
                        Some(_) => contiguous = false,
                        None => raw = Some(field_start..field_end),
                    }
                }
                2 => {
                    let s = within("TimeSeries", "samples", || sample(self::message(wire_type, &mut buf)?))?;
                    self.samples.push(s);
                }
                3 => {
                    let e = within("TimeSeries", "exemplars", || self.exemplar(self::message(wire_type, &mut buf)?))?;
                    self.exemplars.push(e);
                }
                4 => {
                    let h = within("TimeSeries", "histograms", || {
                        prompb::Histogram::decode(self::message(wire_type, &mut buf)?)
                    })?;
                    self.histograms.push(Cow::Owned(h));
                }
                _ => skip_field(wire_type, tag, &mut buf, DecodeContext::default())?,
            }
        }
        ranges.raw_labels = if contiguous { Some(raw.map_or(&message[..0], |span| &message[span])) } else { None };
        ranges.cached = ranges.raw_labels.and_then(lookup);
        if ranges.cached.is_none() {
            for &field in label_fields.iter() {
                self.labels.push(within("TimeSeries", "labels", || label(field))?);
            }
        }
        ranges.labels.end = self.labels.len();
        ranges.samples.end = self.samples.len();
        ranges.exemplars.end = self.exemplars.len();
        ranges.histograms.end = self.histograms.len();
        self.series.push(ranges);
        Ok(())
    }

    /// Reads one `Exemplar` message, its labels into `exemplar_labels`.
    fn exemplar(&mut self, message: &'a [u8]) -> Result<ExemplarRef, prost::DecodeError> {
        let mut e = ExemplarRef { labels: self.exemplar_labels.len()..0, value: 0.0, timestamp: 0 };
        let mut buf = message;
        while !buf.is_empty() {
            let (tag, wire_type) = decode_key(&mut buf)?;
            match tag {
                1 => {
                    let l = within("Exemplar", "labels", || label(self::message(wire_type, &mut buf)?))?;
                    self.exemplar_labels.push(l);
                }
                2 => e.value = within("Exemplar", "value", || double(wire_type, &mut buf))?,
                3 => e.timestamp = within("Exemplar", "timestamp", || int64(wire_type, &mut buf))?,
                _ => skip_field(wire_type, tag, &mut buf, DecodeContext::default())?,
            }
        }
        e.labels.end = self.exemplar_labels.len();
        Ok(e)
    }
}

/// Appends `items` to `v`, returning where they went.
fn extended<T>(v: &mut Vec<T>, items: impl IntoIterator<Item = T>) -> Range<usize> {
    let start = v.len();
    v.extend(items);
    start..v.len()
}

/// Runs `read`, naming the field in its error as prost does (innermost first).
fn within<T>(
    message: &'static str,
    field: &'static str,
    read: impl FnOnce() -> Result<T, prost::DecodeError>,
) -> Result<T, prost::DecodeError> {
    read().map_err(|mut e| {
        e.push(message, field);
        e
    })
}

/// A length-delimited field's payload: a message, a string or bytes.
fn message<'a>(wire_type: WireType, buf: &mut &'a [u8]) -> Result<&'a [u8], prost::DecodeError> {
    check_wire_type(WireType::LengthDelimited, wire_type)?;
    let len = decode_varint(buf)?;
    if len > buf.len() as u64 {
        return Err(prost::DecodeError::new("buffer underflow"));
    }
    let (payload, rest) = buf.split_at(len as usize);
    *buf = rest;
    Ok(payload)
}

fn double(wire_type: WireType, buf: &mut &[u8]) -> Result<f64, prost::DecodeError> {
    check_wire_type(WireType::SixtyFourBit, wire_type)?;
    if buf.len() < 8 {
        return Err(prost::DecodeError::new("buffer underflow"));
    }
    Ok(buf.get_f64_le())
}

fn int64(wire_type: WireType, buf: &mut &[u8]) -> Result<i64, prost::DecodeError> {
    check_wire_type(WireType::Varint, wire_type)?;
    Ok(decode_varint(buf)? as i64)
}

fn string<'a>(wire_type: WireType, buf: &mut &'a [u8]) -> Result<&'a str, prost::DecodeError> {
    std::str::from_utf8(message(wire_type, buf)?)
        .map_err(|_| prost::DecodeError::new("invalid string value: data is not UTF-8 encoded"))
}

fn label(message: &[u8]) -> Result<LabelRef<'_>, prost::DecodeError> {
    let mut l = LabelRef { name: "", value: "" };
    let mut buf = message;
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        match tag {
            1 => l.name = within("Label", "name", || string(wire_type, &mut buf))?,
            2 => l.value = within("Label", "value", || string(wire_type, &mut buf))?,
            _ => skip_field(wire_type, tag, &mut buf, DecodeContext::default())?,
        }
    }
    Ok(l)
}

fn sample(message: &[u8]) -> Result<prompb::Sample, prost::DecodeError> {
    let mut s = prompb::Sample::default();
    let mut buf = message;
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        match tag {
            1 => s.value = within("Sample", "value", || double(wire_type, &mut buf))?,
            2 => s.timestamp = within("Sample", "timestamp", || int64(wire_type, &mut buf))?,
            _ => skip_field(wire_type, tag, &mut buf, DecodeContext::default())?,
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> prompb::WriteRequest {
        let label = |name: &str, value: &str| prompb::Label { name: name.into(), value: value.into() };
        prompb::WriteRequest {
            timeseries: vec![
                prompb::TimeSeries {
                    labels: vec![label("__name__", "up"), label("job", "node")],
                    samples: vec![
                        prompb::Sample { value: 1.0, timestamp: 1000 },
                        prompb::Sample { value: -0.5, timestamp: -2 },
                    ],
                    exemplars: vec![prompb::Exemplar {
                        labels: vec![label("trace_id", "ab12")],
                        value: 0.25,
                        timestamp: 1000,
                    }],
                    histograms: vec![prompb::Histogram { sum: 3.5, schema: 1, timestamp: 7, ..Default::default() }],
                },
                prompb::TimeSeries { labels: vec![label("__name__", "empty")], ..Default::default() },
            ],
            metadata: vec![prompb::MetricMetadata {
                r#type: 1,
                metric_family_name: "up".into(),
                help: "h".into(),
                unit: String::new(),
            }],
        }
    }

    /// Everything prost decodes, read in place to the same values.
    #[test]
    fn reads_what_prost_reads() {
        let owned = request();
        let body = owned.encode_to_vec();
        for (req, in_place) in
            [(WriteRequest::decode(&body, |_| None).unwrap(), true), (WriteRequest::from_owned(&owned), false)]
        {
            assert_eq!(req.metadata, owned.metadata);
            assert_eq!(req.series().len(), 2);
            for (series, want) in req.series().zip(&owned.timeseries) {
                let labels: Vec<(&str, &str)> = series.labels().iter().map(|l| (l.name, l.value)).collect();
                let want_labels: Vec<(&str, &str)> =
                    want.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())).collect();
                assert_eq!(labels, want_labels);
                assert_eq!(series.samples(), want.samples.as_slice());
                let exemplars: Vec<prompb::Exemplar> = series
                    .exemplars()
                    .map(|(labels, e)| prompb::Exemplar {
                        labels: labels
                            .iter()
                            .map(|l| prompb::Label { name: l.name.into(), value: l.value.into() })
                            .collect(),
                        value: e.value,
                        timestamp: e.timestamp,
                    })
                    .collect();
                assert_eq!(exemplars, want.exemplars);
                let histograms: Vec<prompb::Histogram> =
                    series.histograms().iter().map(|h| h.as_ref().clone()).collect();
                assert_eq!(histograms, want.histograms);
                // The raw labels are exactly the label fields as prost writes them.
                let raw = series.raw_labels();
                if in_place {
                    let label_fields = prompb::TimeSeries { labels: want.labels.clone(), ..Default::default() };
                    assert_eq!(raw, Some(label_fields.encode_to_vec().as_slice()));
                } else {
                    assert_eq!(raw, None);
                }
            }
        }
    }

    /// A series whose raw labels the lookup knows keeps the labels it gave and is not read
    /// into `labels()`; the others are read, and checked, as `decode` reads them.
    #[test]
    fn known_series_keep_the_looked_up_labels_and_the_rest_are_read() {
        let owned = request();
        let body = owned.encode_to_vec();
        let first_raw = prompb::TimeSeries { labels: owned.timeseries[0].labels.clone(), ..Default::default() };
        let first_raw = first_raw.encode_to_vec();
        let known = Labels::from_sorted(vec![amber_storage::labels::Label::new("__name__", "up")]);
        let mut asked = Vec::new();
        let req = WriteRequest::decode(&body, |raw| {
            asked.push(raw.to_vec());
            (raw == first_raw.as_slice()).then(|| known.clone())
        })
        .unwrap();
        assert_eq!(asked.len(), 2);
        assert_eq!(asked[0], first_raw);
        let (first, second) = (req.series().next().unwrap(), req.series().nth(1).unwrap());
        assert_eq!((first.labels(), first.cached_labels()), (&[][..], Some(&known)));
        assert_eq!(first.samples(), owned.timeseries[0].samples.as_slice());
        assert_eq!(first.exemplars().count(), 1);
        assert_eq!(second.labels(), [LabelRef { name: "__name__", value: "empty" }]);
        assert_eq!(second.cached_labels(), None);

        // Bytes the lookup does not know are checked: a label value that is not UTF-8.
        refused_as_prost_refuses(2, &[0xff]);
    }

    /// A request of one series with one label whose field `tag` (1 name, 2 value) holds
    /// `bytes` that are not UTF-8: refused with prost's error.
    fn refused_as_prost_refuses(tag: u32, bytes: &[u8]) {
        let mut not_utf8 = Vec::new();
        prost::encoding::bytes::encode(tag, &bytes.to_vec(), &mut not_utf8);
        let mut label_field = Vec::new();
        prost::encoding::bytes::encode(1, &not_utf8, &mut label_field);
        let mut bad = Vec::new();
        prost::encoding::bytes::encode(1, &label_field, &mut bad);
        assert_eq!(
            WriteRequest::decode(&bad, |_| None).unwrap_err().to_string(),
            prompb::WriteRequest::decode(bad.as_slice()).unwrap_err().to_string()
        );
    }

    /// Label fields split by another field have no raw form (no cache key), and bad bytes are
    /// the errors prost gives.
    #[test]
    fn split_labels_have_no_raw_form_and_bad_bytes_are_errors() {
        let series = |labels: &[prompb::Label]| prompb::TimeSeries { labels: labels.to_vec(), ..Default::default() };
        let (a, b) = (
            prompb::Label { name: "a".into(), value: "1".into() },
            prompb::Label { name: "b".into(), value: "2".into() },
        );
        let sample =
            prompb::TimeSeries { samples: vec![prompb::Sample { value: 1.0, timestamp: 1 }], ..Default::default() };
        // a, a sample, then b: the same message prost reads as one series.
        let mut ts = series(std::slice::from_ref(&a)).encode_to_vec();
        ts.extend(sample.encode_to_vec());
        ts.extend(series(std::slice::from_ref(&b)).encode_to_vec());
        let mut body = Vec::new();
        prost::encoding::bytes::encode(1, &ts, &mut body);
        let req = WriteRequest::decode(&body, |_| None).unwrap();
        let s = req.series().next().unwrap();
        assert_eq!(s.labels(), [LabelRef { name: "a", value: "1" }, LabelRef { name: "b", value: "2" }]);
        assert_eq!(s.samples().len(), 1);
        assert_eq!(s.raw_labels(), None);

        // Every truncation and every one-byte change of a valid request: accepted or refused as
        // prost accepts or refuses it, and read to the same values when accepted.
        let valid = request().encode_to_vec();
        let mut bodies: Vec<Vec<u8>> = (0..valid.len()).map(|n| valid[..n].to_vec()).collect();
        for i in 0..valid.len() {
            for byte in [0x00, 0x01, 0x0a, 0x7f, 0x80, 0xff] {
                let mut changed = valid.clone();
                changed[i] = byte;
                bodies.push(changed);
            }
        }
        for body in &bodies {
            match (WriteRequest::decode(body, |_| None), prompb::WriteRequest::decode(body.as_slice())) {
                (Ok(ours), Ok(theirs)) => {
                    let ours: Vec<Vec<LabelRef<'_>>> = ours.series().map(|s| s.labels().to_vec()).collect();
                    let theirs: Vec<Vec<LabelRef<'_>>> = theirs
                        .timeseries
                        .iter()
                        .map(|t| t.labels.iter().map(|l| LabelRef { name: &l.name, value: &l.value }).collect())
                        .collect();
                    assert_eq!(ours, theirs, "{body:?}");
                }
                (Err(_), Err(_)) => {}
                (ours, theirs) => panic!("{body:?}: ours {:?}, prost's {:?}", ours.map(|_| ()), theirs.map(|_| ())),
            }
        }
        refused_as_prost_refuses(1, &[0xff, 0xfe]);
    }
}
