//! `amber import prometheus`: history read from a running Prometheus (or anything serving
//! Prometheus's remote read) the way `vmctl` migrates, one time slice at a time.
//!
//! Each slice is one remote read request (`SAMPLES` responses: float and native histogram
//! samples, exactly as stored), plus, by default, the slice's exemplars from
//! `/api/v1/query_exemplars` (Prometheus keeps them in memory only, so only its recent ones
//! exist). A slice is recorded in the journal once Amber acknowledged all of it.

use std::collections::BTreeMap;
use std::time::Duration;

use amber_api::prompb;
use amber_api::remote_source::SeriesExemplarsJson;
use anyhow::{Context, bail};
use indicatif::ProgressBar;
use prost::Message;
use serde::Deserialize;

use crate::sink::Sink;

/// What to read from Prometheus.
#[derive(Debug, Clone)]
pub struct Source {
    /// Base URL of the Prometheus, e.g. `http://localhost:9090`.
    pub url: String,
    /// Series selectors in PromQL (`{__name__=~".+"}` for everything).
    pub selectors: Vec<String>,
    /// First and last millisecond to read, both included.
    pub start: i64,
    pub end: i64,
    /// Width of one remote read request: Prometheus holds a whole answer in memory, and a
    /// slice is the unit a rerun skips.
    pub slice_ms: i64,
    /// Also copy the slice's exemplars (`/api/v1/query_exemplars`).
    pub exemplars: bool,
}

/// The slices of `[start, end]`, each `[a, b]` with both ends included.
fn slices(start: i64, end: i64, width: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut a = start;
    while a <= end {
        let b = a.saturating_add(width - 1).min(end);
        out.push((a, b));
        if b == i64::MAX {
            break;
        }
        a = b + 1;
    }
    out
}

/// Copies every slice not yet imported (the sink's journal) from Prometheus into `sink`.
pub fn import(source: &Source, sink: &mut Sink, bar: &ProgressBar) -> anyhow::Result<()> {
    if source.slice_ms <= 0 {
        bail!("the slice width must be positive");
    }
    let mut matchers = Vec::new();
    for s in &source.selectors {
        let sets = amber_api::params::parse_selector(s).map_err(|e| anyhow::anyhow!("selector {s:?}: {e}"))?;
        matchers.extend(sets);
    }
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(300)).build()?;
    let base = source.url.trim_end_matches('/');
    let all = slices(source.start, source.end, source.slice_ms);
    bar.set_length(all.len() as u64);
    for (a, b) in all {
        let unit = format!("prometheus {base} {} {a}..{b}", source.selectors.join(" or "));
        if sink.is_done(&unit) {
            bar.inc(1);
            continue;
        }
        let mut series = read_slice(&client, base, &matchers, a, b)?;
        if source.exemplars {
            for selector in &source.selectors {
                add_exemplars(&client, base, selector, a, b, &mut series)?;
            }
        }
        for ts in series.into_values() {
            sink.push(ts)?;
        }
        sink.end_unit(&unit)?;
        bar.inc(1);
        bar.set_message(format!("{} samples written", sink.totals().samples_written));
    }
    Ok(())
}

type ByLabels = BTreeMap<Vec<(String, String)>, prompb::TimeSeries>;

fn key(labels: &[prompb::Label]) -> Vec<(String, String)> {
    labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect()
}

/// One remote read of `[a, b]`: each series once, however many selectors matched it.
fn read_slice(
    client: &reqwest::blocking::Client,
    base: &str,
    matchers: &[Vec<amber_storage::Matcher>],
    a: i64,
    b: i64,
) -> anyhow::Result<ByLabels> {
    let request = prompb::ReadRequest {
        queries: matchers
            .iter()
            .map(|set| prompb::Query {
                start_timestamp_ms: a,
                end_timestamp_ms: b,
                matchers: set.iter().map(amber_api::remote_source::wire_matcher).collect(),
                hints: None,
            })
            .collect(),
        accepted_response_types: vec![prompb::read_request::ResponseType::Samples as i32],
    };
    let url = format!("{base}/api/v1/read");
    let body = snap::raw::Encoder::new().compress_vec(&request.encode_to_vec())?;
    let answer = client
        .post(&url)
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "snappy")
        .header("x-prometheus-remote-read-version", "0.1.0")
        .body(body)
        .send()
        .with_context(|| format!("POST {url}"))?;
    let status = answer.status();
    let bytes = answer.bytes()?;
    if !status.is_success() {
        bail!("POST {url} answered {status}: {}", String::from_utf8_lossy(&bytes).trim());
    }
    let raw = snap::raw::Decoder::new().decompress_vec(&bytes).with_context(|| format!("POST {url}: snappy"))?;
    let response = prompb::ReadResponse::decode(raw.as_slice()).with_context(|| format!("POST {url}: ReadResponse"))?;
    let mut out = ByLabels::new();
    for ts in response.results.into_iter().flat_map(|r| r.timeseries) {
        out.entry(key(&ts.labels)).or_insert(ts);
    }
    Ok(out)
}

#[derive(Deserialize)]
struct Envelope {
    data: Vec<SeriesExemplarsJson>,
}

fn wire_labels(labels: impl IntoIterator<Item = (String, String)>) -> Vec<prompb::Label> {
    labels.into_iter().map(|(name, value)| prompb::Label { name, value }).collect()
}

/// The exemplars of `selector` in `[a, b]`, added to their series (or as series of their own).
fn add_exemplars(
    client: &reqwest::blocking::Client,
    base: &str,
    selector: &str,
    a: i64,
    b: i64,
    series: &mut ByLabels,
) -> anyhow::Result<()> {
    let url = format!("{base}/api/v1/query_exemplars");
    let mut params = vec![("query", selector.to_string())];
    params.extend(amber_api::remote_source::time_params(a, b));
    let answer = client.get(&url).query(&params).send().with_context(|| format!("GET {url}"))?;
    let status = answer.status();
    let text = answer.text()?;
    if !status.is_success() {
        bail!("GET {url} answered {status}: {}", text.trim());
    }
    let envelope: Envelope = serde_json::from_str(&text).with_context(|| format!("GET {url}: unreadable answer"))?;
    for s in envelope.data {
        let labels = wire_labels(s.series_labels);
        let entry = series
            .entry(key(&labels))
            .or_insert_with(|| prompb::TimeSeries { labels: labels.clone(), ..Default::default() });
        for e in s.exemplars {
            let e = e.parse().map_err(|m| anyhow::anyhow!("GET {url}: {m}"))?;
            // Prometheus's query_exemplars includes both ends, as slices do: keep each once.
            if e.ts < a || e.ts > b {
                continue;
            }
            let labels = wire_labels(e.labels.iter().map(|l| (l.name.clone(), l.value.clone())));
            entry.exemplars.push(prompb::Exemplar { labels, value: e.value, timestamp: e.ts });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_cover_the_range_once_with_both_ends_included() {
        assert_eq!(slices(0, 9, 4), [(0, 3), (4, 7), (8, 9)]);
        assert_eq!(slices(5, 5, 10), [(5, 5)]);
        assert!(slices(6, 5, 10).is_empty());
    }
}
