//! Label sets: the identity of a series (and the payload of an exemplar), their binary encoding
//! and the rules a label set must follow to be stored.

use std::fmt;
use std::sync::Arc;

use crate::chunkenc::DecodeError;
use crate::chunkenc::varint::{Reader, put_uvarint};

/// The label that holds a series' metric name.
pub const METRIC_NAME: &str = "__name__";

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    pub name: String,
    pub value: String,
}

impl Label {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Label { name: name.into(), value: value.into() }
    }
}

/// A set of labels sorted by name, with unique names. Construct it with [`Labels::from_sorted`]
/// after [`validate_series`], or with [`Labels::from_unsorted`] for trusted input.
///
/// Immutable and shared: a clone is a reference count, so the write path can hand out the labels
/// it validated once (remote write's labels cache) to every request that sends the series again.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels(Arc<[Label]>);

impl Default for Labels {
    fn default() -> Self {
        Labels(Arc::from([]))
    }
}

impl Labels {
    /// Wraps labels already known to be sorted by name and unique.
    pub fn from_sorted(labels: Vec<Label>) -> Self {
        debug_assert!(labels.windows(2).all(|w| w[0].name < w[1].name));
        Labels(labels.into())
    }

    /// Sorts `labels` by name; with repeated names the last one wins.
    pub fn from_unsorted(mut labels: Vec<Label>) -> Self {
        labels.reverse();
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        labels.dedup_by(|a, b| a.name == b.name);
        Labels(labels.into())
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|l| l.name == name).map(|l| l.value.as_str())
    }

    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    /// Appends the binary form: `count <uvarint>` then `name <len-prefixed> value <len-prefixed>`
    /// per label (see `docs/format/index.md`).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        put_uvarint(out, self.0.len() as u64);
        for l in self.0.iter() {
            put_uvarint(out, l.name.len() as u64);
            out.extend_from_slice(l.name.as_bytes());
            put_uvarint(out, l.value.len() as u64);
            out.extend_from_slice(l.value.as_bytes());
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.0.iter().map(|l| l.name.len() + l.value.len() + 2).sum::<usize>() + 1);
        self.encode_into(&mut out);
        out
    }

    /// Reads the binary form written by [`Labels::encode_into`].
    pub fn decode(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = reader.uvarint()?;
        // Each label takes at least two bytes, so a corrupt count cannot allocate much.
        let mut labels = Vec::with_capacity((n as usize).min(reader.remaining().len() / 2));
        for _ in 0..n {
            let name = utf8(reader.len_prefixed()?)?;
            let value = utf8(reader.len_prefixed()?)?;
            labels.push(Label { name, value });
        }
        Ok(Labels(labels.into()))
    }
}

fn utf8(bytes: &[u8]) -> Result<String, DecodeError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::Invalid("label is not UTF-8"))
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Prints labels the way Prometheus does, `{__name__="up", job="node"}`, in the order given
/// (for label lists a sender sent, which may be unsorted).
pub fn format_list(labels: &[Label]) -> String {
    let mut out = String::from("{");
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&format!("{}={:?}", clipped(&l.name), clipped(&l.value)));
    }
    out.push('}');
    out
}

/// Longest label name or value [`format_list`] writes out whole.
const MAX_FORMATTED_LEN: usize = 4096;

/// `s`, or for one longer than [`MAX_FORMATTED_LEN`] its first 64 bytes and its length: error
/// messages about a hostile 10 MB label value must not echo it back.
fn clipped(s: &str) -> std::borrow::Cow<'_, str> {
    if s.len() <= MAX_FORMATTED_LEN {
        return s.into();
    }
    let end = (0..=64).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
    format!("{}…({} bytes)", &s[..end], s.len()).into()
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_list(&self.0))
    }
}

/// Limits on the shape of a series' label set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelLimits {
    pub max_labels_per_series: usize,
    pub max_label_name_length: usize,
    pub max_label_value_length: usize,
}

impl Default for LabelLimits {
    /// Mimir's defaults.
    fn default() -> Self {
        LabelLimits { max_labels_per_series: 30, max_label_name_length: 1024, max_label_value_length: 2048 }
    }
}

/// Which metric and label names a sender may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRules {
    /// Metric names `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names `[a-zA-Z_][a-zA-Z0-9_]*`, as remote
    /// write 1.0 requires.
    Legacy,
    /// Any non-empty UTF-8 string, as remote write 2.0 requires (and Prometheus 3 accepts).
    Utf8,
}

/// Why a series' label set was refused. Messages name the rule and the offending label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("series has no metric name (__name__ label)")]
    MissingMetricName,
    #[error("invalid metric name {0:?}: must match [a-zA-Z_:][a-zA-Z0-9_:]*")]
    InvalidMetricName(String),
    #[error("invalid label name {0:?}: must match [a-zA-Z_][a-zA-Z0-9_]*")]
    InvalidLabelName(String),
    #[error("empty label name")]
    EmptyLabelName,
    #[error("label names are not sorted: {after:?} comes after {before:?}")]
    Unsorted { before: String, after: String },
    #[error("duplicate label name {0:?}")]
    DuplicateLabelName(String),
    #[error("label name {name:?} is {len} bytes long, over the limit of {limit}")]
    LabelNameTooLong { name: String, len: usize, limit: usize },
    #[error("value of label {name:?} is {len} bytes long, over the limit of {limit}")]
    LabelValueTooLong { name: String, len: usize, limit: usize },
    #[error("series has {count} labels, over the limit of {limit}")]
    TooManyLabels { count: usize, limit: usize },
}

impl LabelError {
    /// A short, stable name for metrics (`reason` label).
    pub fn reason(&self) -> &'static str {
        match self {
            LabelError::MissingMetricName => "missing_metric_name",
            LabelError::InvalidMetricName(_) => "invalid_metric_name",
            LabelError::InvalidLabelName(_) | LabelError::EmptyLabelName => "invalid_label_name",
            LabelError::Unsorted { .. } => "unsorted_labels",
            LabelError::DuplicateLabelName(_) => "duplicate_label_name",
            LabelError::LabelNameTooLong { .. } => "label_name_too_long",
            LabelError::LabelValueTooLong { .. } => "label_value_too_long",
            LabelError::TooManyLabels { .. } => "too_many_labels",
        }
    }
}

fn is_valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_' | b':'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b':'))
}

fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_'))
}

/// Checks a series' labels as a sender gave them (sorted, no duplicates, names by `names`, within
/// `limits`) and returns the stored label set. Labels with an empty value are dropped: in
/// Prometheus's data model an empty value is the same as an absent label.
pub fn validate_series(labels: Vec<Label>, limits: &LabelLimits, names: NameRules) -> Result<Labels, LabelError> {
    check_series(&labels, limits, names)?;
    Ok(Labels(labels.into_iter().filter(|l| !l.value.is_empty()).collect()))
}

/// The checks of [`validate_series`] without taking the labels, so a caller can still show them
/// in its error message (and need not format them when they are valid).
pub fn check_series(labels: &[Label], limits: &LabelLimits, names: NameRules) -> Result<(), LabelError> {
    let mut prev: Option<&str> = None;
    for l in labels {
        if let Some(p) = prev {
            match p.cmp(l.name.as_str()) {
                std::cmp::Ordering::Equal => return Err(LabelError::DuplicateLabelName(clipped(&l.name).into_owned())),
                std::cmp::Ordering::Greater => {
                    return Err(LabelError::Unsorted {
                        before: clipped(p).into_owned(),
                        after: clipped(&l.name).into_owned(),
                    });
                }
                std::cmp::Ordering::Less => {}
            }
        }
        prev = Some(&l.name);
        if l.name.len() > limits.max_label_name_length {
            return Err(LabelError::LabelNameTooLong {
                name: clipped(&l.name).into_owned(),
                len: l.name.len(),
                limit: limits.max_label_name_length,
            });
        }
        match names {
            NameRules::Legacy if !is_valid_label_name(&l.name) => {
                return Err(LabelError::InvalidLabelName(l.name.clone()));
            }
            NameRules::Utf8 if l.name.is_empty() => return Err(LabelError::EmptyLabelName),
            _ => {}
        }
        if l.value.len() > limits.max_label_value_length {
            return Err(LabelError::LabelValueTooLong {
                name: l.name.clone(),
                len: l.value.len(),
                limit: limits.max_label_value_length,
            });
        }
        if names == NameRules::Legacy && l.name == METRIC_NAME && !l.value.is_empty() && !is_valid_metric_name(&l.value)
        {
            return Err(LabelError::InvalidMetricName(l.value.clone()));
        }
    }
    let kept = || labels.iter().filter(|l| !l.value.is_empty());
    if !kept().any(|l| l.name == METRIC_NAME) {
        return Err(LabelError::MissingMetricName);
    }
    let count = kept().count();
    if count > limits.max_labels_per_series {
        return Err(LabelError::TooManyLabels { count, limit: limits.max_labels_per_series });
    }
    Ok(())
}

/// Prometheus's limit on an exemplar's label set: names plus values, in UTF-8 characters.
pub const EXEMPLAR_MAX_LABEL_SET_LENGTH: usize = 128;

/// Why an exemplar's label set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExemplarLabelError {
    #[error("label length for exemplar exceeds maximum of {EXEMPLAR_MAX_LABEL_SET_LENGTH} UTF-8 characters")]
    TooLong,
    #[error("invalid exemplar label name {0:?}")]
    InvalidName(String),
}

/// Checks an exemplar's labels and returns them sorted.
pub fn validate_exemplar(labels: Vec<Label>) -> Result<Labels, ExemplarLabelError> {
    let chars: usize = labels.iter().map(|l| l.name.chars().count() + l.value.chars().count()).sum();
    if chars > EXEMPLAR_MAX_LABEL_SET_LENGTH {
        return Err(ExemplarLabelError::TooLong);
    }
    if let Some(l) = labels.iter().find(|l| !is_valid_label_name(&l.name)) {
        return Err(ExemplarLabelError::InvalidName(l.name.clone()));
    }
    Ok(Labels::from_unsorted(labels.into_iter().filter(|l| !l.value.is_empty()).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Vec<Label> {
        pairs.iter().map(|(n, v)| Label::new(*n, *v)).collect()
    }

    #[test]
    fn messages_clip_names_and_values_over_4_kib() {
        let huge = format!("é{}", "x".repeat(10 << 20));
        let labels = l(&[("__name__", "m"), ("a", &"v".repeat(4096)), ("b", &huge)]);
        let text = format_list(&labels);
        // é is two bytes: the cut falls on a character boundary.
        let want =
            format!("{{__name__=\"m\", a=\"{}\", b=\"é{}…({} bytes)\"}}", "v".repeat(4096), "x".repeat(62), huge.len());
        assert_eq!(text, want);
        let limits = LabelLimits::default();
        let e = check_series(&l(&[("__name__", "m"), (&huge, "1")]), &limits, NameRules::Legacy).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "label name \"é{}…({} bytes)\" is {} bytes long, over the limit of 1024",
                "x".repeat(62),
                huge.len(),
                huge.len()
            )
        );
    }

    #[test]
    fn valid_series_keeps_order_and_drops_empty_values() {
        let got = validate_series(
            l(&[("__name__", "up"), ("empty", ""), ("job", "node")]),
            &LabelLimits::default(),
            NameRules::Legacy,
        );
        assert_eq!(got.unwrap().to_string(), r#"{__name__="up", job="node"}"#);
    }

    #[test]
    fn each_rule_names_the_offending_label() {
        let limits = LabelLimits { max_labels_per_series: 2, max_label_name_length: 8, max_label_value_length: 3 };
        let cases: Vec<(Vec<Label>, &str)> = vec![
            (l(&[("job", "x")]), "series has no metric name (__name__ label)"),
            (l(&[("__name__", "")]), "series has no metric name (__name__ label)"),
            (l(&[("__name__", "1up")]), r#"invalid metric name "1up": must match [a-zA-Z_:][a-zA-Z0-9_:]*"#),
            (l(&[("__name__", "up"), ("a-b", "x")]), r#"invalid label name "a-b": must match [a-zA-Z_][a-zA-Z0-9_]*"#),
            (l(&[("__name__", "up"), ("b", "x"), ("a", "y")]), r#"label names are not sorted: "a" comes after "b""#),
            (l(&[("__name__", "up"), ("a", "x"), ("a", "y")]), r#"duplicate label name "a""#),
            (
                l(&[("__name__", "up"), ("abcdefghi", "x")]),
                r#"label name "abcdefghi" is 9 bytes long, over the limit of 8"#,
            ),
            (l(&[("__name__", "up"), ("a", "wxyz")]), r#"value of label "a" is 4 bytes long, over the limit of 3"#),
            (l(&[("__name__", "up"), ("a", "x"), ("b", "y")]), "series has 3 labels, over the limit of 2"),
        ];
        for (labels, want) in cases {
            assert_eq!(validate_series(labels, &limits, NameRules::Legacy).unwrap_err().to_string(), want);
        }
    }

    #[test]
    fn utf8_names_take_any_non_empty_string() {
        let limits = LabelLimits::default();
        let dotted = l(&[("__name__", "resource.cpu.usage"), ("job name", "x")]);
        assert_eq!(
            validate_series(dotted, &limits, NameRules::Utf8).unwrap().to_string(),
            r#"{__name__="resource.cpu.usage", job name="x"}"#
        );
        let empty = l(&[("", "x"), ("__name__", "up")]);
        assert_eq!(validate_series(empty, &limits, NameRules::Utf8), Err(LabelError::EmptyLabelName));
    }

    #[test]
    fn exemplar_label_length_counts_characters_not_bytes() {
        let ok = "é".repeat(128 - "trace_id".len());
        assert!(validate_exemplar(l(&[("trace_id", &ok)])).is_ok());
        let too_long = format!("{ok}x");
        assert_eq!(validate_exemplar(l(&[("trace_id", &too_long)])), Err(ExemplarLabelError::TooLong));
    }

    #[test]
    fn binary_form_round_trips_and_rejects_garbage() {
        let labels = Labels::from_unsorted(l(&[("job", "node"), ("__name__", "up"), ("zone", "ü")]));
        let bytes = labels.encode();
        assert_eq!(Labels::decode(&mut Reader::new(&bytes)).unwrap(), labels);
        assert!(Labels::decode(&mut Reader::new(&bytes[..bytes.len() - 1])).is_err());
        assert!(Labels::decode(&mut Reader::new(&[1, 1, 0xff, 0])).is_err());
    }
}
