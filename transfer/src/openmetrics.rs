//! `amber import openmetrics`: history in OpenMetrics text, exemplars included (the form
//! `promtool tsdb create-blocks-from openmetrics` reads, and what a scrape of an OpenMetrics
//! endpoint, or `promtool tsdb dump-openmetrics`, writes).
//!
//! Every sample line must carry a timestamp (seconds, as OpenMetrics writes them); an exemplar
//! without one takes its sample's. `# TYPE`, `# HELP` and `# UNIT` become metric metadata. Metric
//! and label names may be quoted (`{"my.metric", "a.b"="c"}`), as Prometheus 3 writes UTF-8
//! names.
//!
//! The lines are read as a stream, never the whole file, and parsed here rather than with a
//! typed exposition parser: an importer needs each line as a series and a sample, not metric
//! families rebuilt from them, and files of history are larger than memory. Lines are taken in
//! units of [`LINES_PER_UNIT`]; a unit is recorded in the journal once Amber acknowledged it,
//! so a rerun skips the file's units already written without parsing them.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use amber_api::prompb;
use anyhow::{Context, bail};
use indicatif::ProgressBar;

use crate::sink::Sink;

/// Lines per resumable unit: about 10 MB of text, a few seconds of import.
pub const LINES_PER_UNIT: u64 = 100_000;

/// One line of the text, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// A sample: the series' labels (`__name__` included, sorted), its value, its timestamp in
    /// milliseconds if it has one, and its exemplar.
    Sample { labels: Vec<(String, String)>, value: f64, ts: Option<i64>, exemplar: Option<Exemplar> },
    /// `# TYPE`, `# HELP` or `# UNIT` of a metric family.
    Metadata { family: String, field: MetaField, text: String },
    /// `# EOF`: nothing after it is read.
    Eof,
    /// Blank lines and other comments.
    Nothing,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub ts: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaField {
    Type,
    Help,
    Unit,
}

/// A cursor over one line.
struct Cursor<'a> {
    s: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.at).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, b: u8) -> Result<(), String> {
        if self.eat(b) { Ok(()) } else { Err(format!("expected {:?} at column {}", b as char, self.at + 1)) }
    }

    fn spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.at += 1;
        }
    }

    /// A metric or label name: `[a-zA-Z_:][a-zA-Z0-9_:]*`, or any quoted string.
    fn name(&mut self) -> Result<String, String> {
        if self.peek() == Some(b'"') {
            return self.quoted();
        }
        let start = self.at;
        while let Some(b) = self.peek() {
            let ok = b.is_ascii_alphabetic() || b == b'_' || b == b':' || (self.at > start && b.is_ascii_digit());
            if !ok {
                break;
            }
            self.at += 1;
        }
        if self.at == start {
            return Err(format!("expected a name at column {}", start + 1));
        }
        Ok(self.s[start..self.at].to_string())
    }

    /// A double-quoted string with `\\`, `\"` and `\n` escapes.
    fn quoted(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut out = String::new();
        let rest = &self.s[self.at..];
        let mut chars = rest.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.at += i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, '\\')) => out.push('\\'),
                    Some((_, '"')) => out.push('"'),
                    Some((_, other)) => return Err(format!("unknown escape \\{other}")),
                    None => break,
                },
                c => out.push(c),
            }
        }
        Err("unterminated quoted string".to_string())
    }

    /// `{name="value", ...}`; a quoted string alone in the list is the metric name.
    fn labels(&mut self, metric_name: &mut Option<String>) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        self.expect(b'{')?;
        loop {
            self.spaces();
            if self.eat(b'}') {
                return Ok(out);
            }
            let quoted = self.peek() == Some(b'"');
            let name = self.name()?;
            self.spaces();
            if quoted && matches!(self.peek(), Some(b',') | Some(b'}')) {
                if metric_name.replace(name).is_some() {
                    return Err("two metric names".to_string());
                }
            } else {
                self.expect(b'=')?;
                self.spaces();
                out.push((name, self.quoted()?));
            }
            self.spaces();
            if !self.eat(b',') {
                self.spaces();
                self.expect(b'}')?;
                return Ok(out);
            }
        }
    }

    /// The next space-separated token.
    fn token(&mut self) -> &'a str {
        self.spaces();
        let start = self.at;
        while self.peek().is_some_and(|b| b != b' ') {
            self.at += 1;
        }
        &self.s[start..self.at]
    }

    fn done(&mut self) -> bool {
        self.spaces();
        self.at >= self.s.len()
    }
}

fn number(token: &str) -> Result<f64, String> {
    match token {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        t => t.parse::<f64>().map_err(|_| format!("{t:?} is not a number")),
    }
}

/// Seconds (with a fraction) to milliseconds.
fn timestamp(token: &str) -> Result<i64, String> {
    let secs = number(token)?;
    if !secs.is_finite() {
        return Err(format!("{token:?} is not a timestamp"));
    }
    Ok((secs * 1000.0).round() as i64)
}

/// Parses one line of OpenMetrics text (without its newline).
pub fn parse_line(line: &str) -> Result<Line, String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.trim().is_empty() {
        return Ok(Line::Nothing);
    }
    if let Some(comment) = line.strip_prefix('#') {
        let comment = comment.trim_start();
        if comment == "EOF" {
            return Ok(Line::Eof);
        }
        let (keyword, rest) = comment.split_once(' ').unwrap_or((comment, ""));
        let field = match keyword {
            "TYPE" => MetaField::Type,
            "HELP" => MetaField::Help,
            "UNIT" => MetaField::Unit,
            _ => return Ok(Line::Nothing),
        };
        let mut c = Cursor { s: rest, at: 0 };
        let family = c.name()?;
        c.spaces();
        let text = c.s[c.at..].to_string();
        let text = if field == MetaField::Help { unescape_help(&text) } else { text };
        return Ok(Line::Metadata { family, field, text });
    }
    let mut c = Cursor { s: line, at: 0 };
    let mut name = if c.peek() == Some(b'{') { None } else { Some(c.name()?) };
    let mut labels = if c.peek() == Some(b'{') { c.labels(&mut name)? } else { Vec::new() };
    let name = name.ok_or("a sample without a metric name")?;
    labels.push(("__name__".to_string(), name));
    labels.sort();
    if labels.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err("a label name appears twice".to_string());
    }
    if c.peek() != Some(b' ') {
        return Err(format!("expected a space before the value at column {}", c.at + 1));
    }
    let value = number(c.token())?;
    let mut ts = None;
    let mut exemplar = None;
    if !c.done() {
        if c.peek() != Some(b'#') {
            ts = Some(timestamp(c.token())?);
        }
        if !c.done() {
            c.expect(b'#')?;
            c.spaces();
            let mut none = None;
            let mut labels = c.labels(&mut none)?;
            if none.is_some() {
                return Err("an exemplar's labels have no metric name".to_string());
            }
            labels.sort();
            let value = number(c.token())?;
            let ts = if c.done() { None } else { Some(timestamp(c.token())?) };
            if !c.done() {
                return Err(format!("unexpected text after the exemplar at column {}", c.at + 1));
            }
            exemplar = Some(Exemplar { labels, value, ts });
        }
    }
    Ok(Line::Sample { labels, value, ts, exemplar })
}

fn unescape_help(text: &str) -> String {
    text.replace("\\n", "\n").replace("\\\\", "\\")
}

fn metric_type(text: &str) -> i32 {
    use prompb::metric_metadata::MetricType as T;
    (match text {
        "counter" => T::Counter,
        "gauge" => T::Gauge,
        "histogram" => T::Histogram,
        "gaugehistogram" => T::Gaugehistogram,
        "summary" => T::Summary,
        "info" => T::Info,
        "stateset" => T::Stateset,
        _ => T::Unknown,
    }) as i32
}

/// Imports the file at `path` into `sink`, unit by unit, skipping the units its journal holds.
pub fn import(path: &Path, sink: &mut Sink, bar: &ProgressBar) -> anyhow::Result<()> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    bar.set_length(file.metadata()?.len());
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let name = path.display().to_string();
    let mut metadata: HashMap<String, prompb::MetricMetadata> = HashMap::new();
    let mut series: HashMap<Vec<(String, String)>, prompb::TimeSeries> = HashMap::new();
    let (mut line_no, mut unit_start) = (0u64, 0u64);
    let unit_name = |start: u64| format!("openmetrics {name} lines {start}..");
    let mut unit = unit_name(0);
    let mut skipping = sink.is_done(&unit);
    let mut line = String::new();
    let mut ended = false;
    loop {
        line.clear();
        let read = reader.read_line(&mut line).with_context(|| format!("reading {name}"))?;
        bar.inc(read as u64);
        let at_end = read == 0 || ended;
        if !at_end {
            line_no += 1;
            // Metadata of skipped units is still read: it is sent once, with the first request.
            if !skipping || line.starts_with('#') {
                let parsed =
                    parse_line(line.trim_end_matches('\n')).map_err(|e| anyhow::anyhow!("{name}:{line_no}: {e}"))?;
                match parsed {
                    Line::Sample { .. } if skipping => {}
                    Line::Sample { labels, value, ts, exemplar } => {
                        let Some(ts) = ts else { bail!("{name}:{line_no}: a sample without a timestamp") };
                        let entry = series.entry(labels).or_insert_with_key(|labels| prompb::TimeSeries {
                            labels: labels
                                .iter()
                                .map(|(n, v)| prompb::Label { name: n.clone(), value: v.clone() })
                                .collect(),
                            ..Default::default()
                        });
                        entry.samples.push(prompb::Sample { value, timestamp: ts });
                        if let Some(e) = exemplar {
                            entry.exemplars.push(prompb::Exemplar {
                                labels: e
                                    .labels
                                    .into_iter()
                                    .map(|(name, value)| prompb::Label { name, value })
                                    .collect(),
                                value: e.value,
                                timestamp: e.ts.unwrap_or(ts),
                            });
                        }
                    }
                    Line::Metadata { family, field, text } => {
                        let m = metadata.entry(family.clone()).or_insert_with(|| prompb::MetricMetadata {
                            metric_family_name: family,
                            ..Default::default()
                        });
                        match field {
                            MetaField::Type => m.r#type = metric_type(&text),
                            MetaField::Help => m.help = text,
                            MetaField::Unit => m.unit = text,
                        }
                    }
                    Line::Eof => ended = true,
                    Line::Nothing => {}
                }
            }
        }
        if at_end && line_no == unit_start && metadata.is_empty() {
            return Ok(());
        }
        if at_end || line_no - unit_start == LINES_PER_UNIT {
            if !skipping {
                for m in metadata.drain().map(|(_, m)| m) {
                    sink.push_metadata(m);
                }
                for ts in series.drain().map(|(_, ts)| ts) {
                    sink.push(ts)?;
                }
                sink.end_unit(&unit)?;
            }
            unit_start = line_no;
            unit = unit_name(unit_start);
            skipping = sink.is_done(&unit);
            bar.set_message(format!("{} samples written", sink.totals().samples_written));
        }
        if at_end {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v: Vec<_> = pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        v.sort();
        v
    }

    #[test]
    fn sample_lines_with_labels_timestamps_and_exemplars() {
        assert_eq!(
            parse_line(
                r#"http_requests_total{code="200",path="/a \"b\"\n"} 1027 1700000000.5 # {trace_id="abc"} 0.25 1700000000.25"#
            ),
            Ok(Line::Sample {
                labels: l(&[("__name__", "http_requests_total"), ("code", "200"), ("path", "/a \"b\"\n")]),
                value: 1027.0,
                ts: Some(1_700_000_000_500),
                exemplar: Some(Exemplar {
                    labels: l(&[("trace_id", "abc")]),
                    value: 0.25,
                    ts: Some(1_700_000_000_250)
                }),
            })
        );
        let Ok(Line::Sample { value, ts, exemplar, .. }) = parse_line("up NaN 10 # {span_id=\"1\"} +Inf") else {
            panic!()
        };
        assert!(value.is_nan());
        assert_eq!(ts, Some(10_000));
        assert_eq!(exemplar.unwrap().ts, None);
        assert_eq!(
            parse_line(r#"{"my.metric", "a.b"="c"} -Inf"#),
            Ok(Line::Sample {
                labels: l(&[("__name__", "my.metric"), ("a.b", "c")]),
                value: f64::NEG_INFINITY,
                ts: None,
                exemplar: None
            })
        );
    }

    #[test]
    fn comments_give_metadata_and_eof() {
        assert_eq!(
            parse_line("# HELP rpc_seconds Time\\nper call."),
            Ok(Line::Metadata { family: "rpc_seconds".into(), field: MetaField::Help, text: "Time\nper call.".into() })
        );
        assert_eq!(
            parse_line("# TYPE rpc_seconds histogram"),
            Ok(Line::Metadata { family: "rpc_seconds".into(), field: MetaField::Type, text: "histogram".into() })
        );
        assert_eq!(parse_line("# EOF"), Ok(Line::Eof));
        assert_eq!(parse_line("# just a comment"), Ok(Line::Nothing));
        assert_eq!(parse_line(""), Ok(Line::Nothing));
    }

    #[test]
    fn malformed_lines_say_what_is_wrong() {
        assert!(parse_line("up{a=\"1\" 1").unwrap_err().contains("expected"));
        assert!(parse_line("up{a=\"1\",a=\"2\"} 1").unwrap_err().contains("twice"));
        assert!(parse_line("up one").unwrap_err().contains("not a number"));
        assert!(parse_line("up{a=\"\\x\"} 1").unwrap_err().contains("escape"));
        assert!(parse_line("up 1 2 # {a=\"b\"} 1 2 3").unwrap_err().contains("after the exemplar"));
    }
}
