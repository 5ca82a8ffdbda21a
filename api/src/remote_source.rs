//! [`RemoteAmber`]: another Amber's HTTP API as a [`ReadSource`], so a querier answers recent
//! data from the ingesters that still hold it.
//!
//! Each call is one or two requests to the peer, with the tenant's name in `X-Scope-OrgID`
//! (the default tenant's too: a peer maps a request naming its default tenant to that tenant):
//! - float and histogram samples: `POST /api/v1/read`, remote read with `SAMPLES` answers, one
//!   query per selector in one request, series found by several queries kept once. Samples
//!   arrive without start timestamps (remote read carries none), so they have [`NO_START`].
//! - exemplars: `GET /api/v1/query_exemplars`, the selectors as one PromQL `or` of selectors.
//! - series, label names and values, exemplars by trace: the JSON endpoints, `match[]` one
//!   selector each.
//!
//! Times go as seconds with three decimals, which the peer parses back to the same millisecond.
//! An unreachable peer, a timeout, a 5xx, a 408 or a 429 is [`Error::Peer`] (retryable: the
//! API answers 503); any other 4xx is [`Error::PeerRefused`] with the peer's error text (422:
//! the same request would be refused again).

use std::collections::BTreeMap;
use std::time::Duration;

use amber_storage::labels::METRIC_NAME;
use amber_storage::querier::TracedExemplar;
use amber_storage::source::{Columns, ReadSource, SeriesData};
use amber_storage::{
    Error, Exemplar, Label, Labels, MatchOp, Matcher, MetricMetadata, MetricType, NO_START, Result, Sample,
};
use axum::body::Bytes;
use prost::Message;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::params::{MAX_TIME_MS, MIN_TIME_MS};
use crate::prompb;
use crate::remote_write::histogram::WireHistogram;
use crate::tenant::ORG_ID_HEADER;

/// Another Amber read over HTTP. Its methods block on the runtime they were given, so they are
/// called from blocking threads (`spawn_blocking`), as [`ReadSource`] is, never from async tasks.
pub struct RemoteAmber {
    /// The peer's base URL, as the errors name it.
    peer: String,
    base: reqwest::Url,
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

/// Matches every series: each has a non-empty metric name (writes refuse series without one).
/// A PromQL selector needs a matcher that does not match the empty string, so it also completes
/// selectors whose matchers all do.
fn every_series() -> Matcher {
    Matcher { name: METRIC_NAME.to_string(), op: MatchOp::NotEqual, value: String::new() }
}

/// `{"status":"success","data":...}`: the part a source reads.
#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

/// `{"status":"error","errorType":...,"error":"..."}`: the part an error message carries.
#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

/// One series' exemplars as `query_exemplars` and `exemplars/trace` answer (Amber's and
/// Prometheus's).
#[derive(Deserialize)]
pub struct SeriesExemplarsJson {
    #[serde(rename = "seriesLabels")]
    pub series_labels: BTreeMap<String, String>,
    pub exemplars: Vec<ExemplarJson>,
}

#[derive(Deserialize)]
pub struct ExemplarJson {
    labels: BTreeMap<String, String>,
    value: String,
    /// Seconds, with the milliseconds as a fraction; kept as text to parse it exactly.
    timestamp: Box<RawValue>,
}

impl ExemplarJson {
    /// The exemplar, its timestamp read exactly; what is not a time or a number, named.
    pub fn parse(self) -> std::result::Result<Exemplar, String> {
        let ts = crate::params::parse_time(self.timestamp.get())
            .ok_or_else(|| format!("exemplar timestamp {} is not a time", self.timestamp.get()))?;
        let value =
            parse_value(&self.value).ok_or_else(|| format!("exemplar value {:?} is not a number", self.value))?;
        Ok(Exemplar { ts, value, labels: labels_of(self.labels) })
    }
}

/// Labels from a JSON object, whose keys a `BTreeMap` holds sorted.
fn labels_of(map: BTreeMap<String, String>) -> Labels {
    Labels::from_sorted(map.into_iter().map(|(name, value)| Label { name, value }).collect())
}

impl RemoteAmber {
    /// A source reading the Amber at `base_url` (`http://host:port`, or with a path prefix),
    /// each request given at most `timeout`, run on `runtime`. That runtime must be
    /// multi-threaded: blocking on a current-thread runtime's handle from another thread never
    /// drives its I/O, so every request would hang.
    pub fn new(base_url: &str, timeout: Duration, runtime: tokio::runtime::Handle) -> Result<RemoteAmber> {
        let peer = base_url.trim_end_matches('/').to_string();
        let failed = |message: String| Error::Peer { peer: peer.clone(), message };
        if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread {
            return Err(failed("a current-thread runtime cannot serve requests blocked on from other threads".into()));
        }
        let base = reqwest::Url::parse(base_url).map_err(|e| failed(format!("invalid URL: {e}")))?;
        if base.cannot_be_a_base() {
            return Err(failed("invalid URL: not a base URL".into()));
        }
        // Marked as a peer's: an ingester that is also a querier answers from its own store.
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(crate::PEER_HEADER, reqwest::header::HeaderValue::from_static("querier"));
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .default_headers(headers)
            .build()
            .map_err(|e| failed(format!("building the HTTP client: {}", chain(&e))))?;
        Ok(RemoteAmber { peer, base, client, runtime })
    }

    fn failed(&self, message: String) -> Error {
        Error::Peer { peer: self.peer.clone(), message }
    }

    /// The URL of the peer's endpoint at `segments` below the base URL (each percent-encoded).
    fn url<'a>(&self, segments: impl IntoIterator<Item = &'a str>) -> reqwest::Url {
        let mut url = self.base.clone();
        url.path_segments_mut().expect("checked to be a base URL").pop_if_empty().extend(segments);
        url
    }

    /// Sends `request` for `tenant`; the body of a 2xx answer, or the error naming `what` and
    /// why.
    fn send(&self, what: &str, tenant: &str, request: reqwest::RequestBuilder) -> Result<Bytes> {
        let request = request.header(ORG_ID_HEADER, tenant);
        self.runtime.block_on(async {
            let response = request.send().await.map_err(|e| self.failed(format!("{what}: {}", chain(&e))))?;
            let status = response.status();
            let body = response.bytes().await.map_err(|e| self.failed(format!("{what}: {}", chain(&e))))?;
            if !status.is_success() {
                let text = match serde_json::from_slice::<ErrorBody>(&body) {
                    Ok(json) => json.error,
                    Err(_) => String::from_utf8_lossy(&body).trim().to_string(),
                };
                let message = format!("{what}: {status}: {text}");
                // A refusal for good is the client's to see, not a retryable outage.
                let retryable = status.is_server_error()
                    || status == reqwest::StatusCode::REQUEST_TIMEOUT
                    || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
                if !retryable {
                    return Err(Error::PeerRefused { peer: self.peer.clone(), status: status.as_u16(), message });
                }
                return Err(self.failed(message));
            }
            Ok(body)
        })
    }

    /// GETs a JSON endpoint and returns its `data`.
    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        tenant: &str,
        segments: &[&str],
        params: &[(&str, String)],
    ) -> Result<T> {
        let mut url = self.url(segments.iter().copied());
        if !params.is_empty() {
            url.query_pairs_mut().extend_pairs(params);
        }
        let what = format!("GET {}", url.path());
        let body = self.send(&what, tenant, self.client.get(url))?;
        let envelope: Envelope<T> =
            serde_json::from_slice(&body).map_err(|e| self.failed(format!("{what}: unreadable answer: {e}")))?;
        Ok(envelope.data)
    }

    /// Float and histogram samples of the selected series, by remote read.
    fn read_samples(
        &self,
        tenant: &str,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
        into: &mut BTreeMap<Labels, SeriesData>,
    ) -> Result<()> {
        let every = [vec![every_series()]];
        let selectors = if selectors.is_empty() { &every[..] } else { selectors };
        let request = prompb::ReadRequest {
            queries: selectors
                .iter()
                .map(|matchers| prompb::Query {
                    start_timestamp_ms: mint,
                    end_timestamp_ms: maxt,
                    matchers: matchers.iter().map(wire_matcher).collect(),
                    hints: None,
                })
                .collect(),
            accepted_response_types: vec![prompb::read_request::ResponseType::Samples as i32],
        };
        let what = "POST /api/v1/read";
        let body = snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .map_err(|e| self.failed(format!("{what}: snappy encode error: {e}")))?;
        let post = self
            .client
            .post(self.url(["api", "v1", "read"]))
            .header("content-type", "application/x-protobuf")
            .header("content-encoding", "snappy")
            .header("x-prometheus-remote-read-version", "0.1.0")
            .body(body);
        let compressed = self.send(what, tenant, post)?;
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&compressed)
            .map_err(|e| self.failed(format!("{what}: snappy decode error: {e}")))?;
        let response = prompb::ReadResponse::decode(raw.as_slice())
            .map_err(|e| self.failed(format!("{what}: invalid ReadResponse: {e}")))?;
        for series in response.results.into_iter().flat_map(|r| r.timeseries) {
            let labels = Labels::from_sorted(
                series.labels.into_iter().map(|l| Label { name: l.name, value: l.value }).collect(),
            );
            // A series matched by several selectors comes once per query, with the same data.
            if into.get(&labels).is_some_and(|s| !s.samples.is_empty() || !s.histograms.is_empty()) {
                continue;
            }
            let histograms = series
                .histograms
                .iter()
                .map(|h| {
                    WireHistogram::from(h).to_sample().map_err(|e| {
                        self.failed(format!("{what}: histogram sample at {} of series {labels}: {e}", h.timestamp))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let samples =
                series.samples.iter().map(|s| Sample { ts: s.timestamp, value: s.value, start_ts: NO_START }).collect();
            let entry = into.entry(labels.clone()).or_insert_with(|| SeriesData { labels, ..Default::default() });
            entry.samples = samples;
            entry.histograms = histograms;
        }
        Ok(())
    }

    /// Exemplars of the selected series, by `query_exemplars`.
    fn read_exemplars(
        &self,
        tenant: &str,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
        into: &mut BTreeMap<Labels, SeriesData>,
    ) -> Result<()> {
        let query = if selectors.is_empty() {
            promql_selector(&[])
        } else {
            selectors.iter().map(|m| promql_selector(m)).collect::<Vec<_>>().join(" or ")
        };
        let mut params = vec![("query", query)];
        params.extend(time_params(mint, maxt));
        let found: Vec<SeriesExemplarsJson> = self.get_json(tenant, &["api", "v1", "query_exemplars"], &params)?;
        for series in found {
            let labels = labels_of(series.series_labels);
            let exemplars = series
                .exemplars
                .into_iter()
                .map(|e| e.parse().map_err(|m| self.failed(m)))
                .collect::<Result<Vec<_>>>()?;
            into.entry(labels.clone()).or_insert_with(|| SeriesData { labels, ..Default::default() }).exemplars =
                exemplars;
        }
        Ok(())
    }
}

/// A storage matcher as remote read sends it.
pub fn wire_matcher(m: &Matcher) -> prompb::LabelMatcher {
    use prompb::label_matcher::Type;
    let r#type = match m.op {
        MatchOp::Equal => Type::Eq,
        MatchOp::NotEqual => Type::Neq,
        MatchOp::Regex(_) => Type::Re,
        MatchOp::NotRegex(_) => Type::Nre,
    };
    prompb::LabelMatcher { r#type: r#type as i32, name: m.name.clone(), value: m.value.clone() }
}

/// The PromQL selector of `matchers`: `{"name"="value", ...}`, every name quoted (the form any
/// label name may take, UTF-8 ones too) and every value escaped. Matchers that all match the
/// empty string get [`every_series`] added, since PromQL refuses such a selector.
fn promql_selector(matchers: &[Matcher]) -> String {
    let complete = matchers.iter().any(|m| !m.matches(""));
    let every = every_series();
    let all = matchers.iter().chain((!complete).then_some(&every));
    let parts: Vec<String> = all
        .map(|m| {
            let op = match m.op {
                MatchOp::Equal => "=",
                MatchOp::NotEqual => "!=",
                MatchOp::Regex(_) => "=~",
                MatchOp::NotRegex(_) => "!~",
            };
            let quote = promql_parser::util::escape_string;
            format!("\"{}\"{op}\"{}\"", quote(&m.name), quote(&m.value))
        })
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// `start` and `end` as the JSON endpoints take them; left out at the API's own limits, which
/// are their defaults.
pub fn time_params(mint: i64, maxt: i64) -> Vec<(&'static str, String)> {
    let seconds = |ms: i64| {
        let mut text = String::new();
        crate::response::write_timestamp(&mut text, ms);
        text
    };
    let mut out = Vec::with_capacity(2);
    if mint > MIN_TIME_MS {
        out.push(("start", seconds(mint)));
    }
    if maxt < MAX_TIME_MS {
        out.push(("end", seconds(maxt)));
    }
    out
}

/// `match[]` once per selector.
fn match_params(selectors: &[Vec<Matcher>]) -> Vec<(&'static str, String)> {
    selectors.iter().map(|m| ("match[]", promql_selector(m))).collect()
}

/// A sample value as Prometheus's JSON writes it: a decimal number, `NaN`, `+Inf` or `-Inf`.
fn parse_value(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok().filter(|v: &f64| v.is_finite()),
    }
}

/// An error with its causes: reqwest's own text names only the URL, its source why.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl ReadSource for RemoteAmber {
    fn select(
        &self,
        tenant: &str,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
        columns: Columns,
    ) -> Result<Vec<SeriesData>> {
        if mint > maxt {
            return Ok(Vec::new());
        }
        let mut by_labels = BTreeMap::new();
        if columns.samples || columns.histograms {
            self.read_samples(tenant, selectors, mint, maxt, &mut by_labels)?;
        }
        if columns.exemplars {
            self.read_exemplars(tenant, selectors, mint, maxt, &mut by_labels)?;
        }
        // Remote read answers floats and histograms together: the column not asked for goes.
        Ok(by_labels
            .into_values()
            .map(|mut s| {
                if !columns.samples {
                    s.samples.clear();
                }
                if !columns.histograms {
                    s.histograms.clear();
                }
                s
            })
            .filter(|s| !s.is_empty())
            .collect())
    }

    fn series(&self, tenant: &str, selectors: &[Vec<Matcher>], mint: i64, maxt: i64) -> Result<Vec<Labels>> {
        if mint > maxt {
            return Ok(Vec::new());
        }
        // The endpoint needs a `match[]`; none means every series.
        let every = [vec![every_series()]];
        let mut params = match_params(if selectors.is_empty() { &every[..] } else { selectors });
        params.extend(time_params(mint, maxt));
        let found: Vec<BTreeMap<String, String>> = self.get_json(tenant, &["api", "v1", "series"], &params)?;
        Ok(found.into_iter().map(labels_of).collect())
    }

    fn label_names(&self, tenant: &str, selectors: &[Vec<Matcher>], mint: i64, maxt: i64) -> Result<Vec<String>> {
        if mint > maxt {
            return Ok(Vec::new());
        }
        let mut params = match_params(selectors);
        params.extend(time_params(mint, maxt));
        self.get_json(tenant, &["api", "v1", "labels"], &params)
    }

    fn label_values(
        &self,
        tenant: &str,
        name: &str,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>> {
        if mint > maxt {
            return Ok(Vec::new());
        }
        let mut params = match_params(selectors);
        params.extend(time_params(mint, maxt));
        self.get_json(tenant, &["api", "v1", "label", name, "values"], &params)
    }

    fn exemplars_by_trace(&self, tenant: &str, trace_id: &str) -> Result<Vec<TracedExemplar>> {
        let found: Vec<SeriesExemplarsJson> =
            self.get_json(tenant, &["api", "v1", "exemplars", "trace", trace_id], &[])?;
        let mut out = Vec::new();
        for series in found {
            let labels = labels_of(series.series_labels);
            for e in series.exemplars {
                out.push(TracedExemplar { series: labels.clone(), exemplar: e.parse().map_err(|m| self.failed(m))? });
            }
        }
        // Oldest first, as the store orders them; the answer groups them by series.
        out.sort_by(|a, b| a.exemplar.ts.cmp(&b.exemplar.ts).then_with(|| a.series.cmp(&b.series)));
        Ok(out)
    }

    fn metadata(&self, tenant: &str, metric: Option<&str>) -> Result<BTreeMap<String, Vec<MetricMetadata>>> {
        #[derive(serde::Deserialize)]
        struct Entry {
            #[serde(rename = "type")]
            metric_type: String,
            help: String,
            unit: String,
        }
        let params: Vec<(&str, String)> = metric.map(|m| ("metric", m.to_string())).into_iter().collect();
        let found: BTreeMap<String, Vec<Entry>> = self.get_json(tenant, &["api", "v1", "metadata"], &params)?;
        Ok(found
            .into_iter()
            .map(|(family, entries)| {
                let mut entries: Vec<MetricMetadata> = entries
                    .into_iter()
                    .map(|e| MetricMetadata {
                        metric_family: family.clone(),
                        metric_type: MetricType::from_name(&e.metric_type),
                        help: e.help,
                        unit: e.unit,
                    })
                    .collect();
                entries.sort();
                (family, entries)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    /// A peer that answers one request with `response` and hands back the request it read.
    fn one_answer_peer(response: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let peer = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.ends_with(b"\r\n\r\n") {
                let n = conn.read(&mut buf).unwrap();
                assert!(n > 0, "the request ended early");
                request.extend_from_slice(&buf[..n]);
            }
            conn.write_all(response.as_bytes()).unwrap();
            String::from_utf8(request).unwrap()
        });
        (url, peer)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap()
    }

    #[test]
    fn a_current_thread_runtime_is_refused() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let Err(err) = RemoteAmber::new("http://127.0.0.1:1", Duration::from_secs(1), rt.handle().clone()) else {
            panic!("a current-thread runtime was taken")
        };
        assert_eq!(
            err.to_string(),
            "http://127.0.0.1:1: a current-thread runtime cannot serve requests blocked on from other threads"
        );
    }

    #[test]
    fn a_5xx_is_a_peer_error_with_the_peers_text_and_the_tenant_is_always_named() {
        let (url, peer) = one_answer_peer(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 17\r\nconnection: close\r\n\r\ntoo many queries\n",
        );
        let rt = runtime();
        let remote = RemoteAmber::new(&format!("{url}/"), Duration::from_secs(30), rt.handle().clone()).unwrap();
        let err = remote.label_names("anonymous", &[vec![Matcher::equal("job", "a b")]], 1500, 2000).unwrap_err();
        assert_eq!(err.to_string(), format!("{url}: GET /api/v1/labels: 503 Service Unavailable: too many queries"));
        let request = peer.join().unwrap();
        let first_line = request.lines().next().unwrap();
        assert_eq!(first_line, "GET /api/v1/labels?match%5B%5D=%7B%22job%22%3D%22a+b%22%7D&start=1.500&end=2 HTTP/1.1");
        assert!(request.to_ascii_lowercase().contains("\r\nx-scope-orgid: anonymous\r\n"), "{request}");
    }

    #[test]
    fn a_peer_that_does_not_answer_in_time_is_a_peer_error() {
        // Connections complete in the listen backlog; nothing ever reads or answers them.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let rt = runtime();
        let remote = RemoteAmber::new(&url, Duration::from_millis(200), rt.handle().clone()).unwrap();
        let err = remote.exemplars_by_trace("t", "abc").unwrap_err();
        let path = "/api/v1/exemplars/trace/abc";
        assert_eq!(
            err.to_string(),
            format!("{url}: GET {path}: error sending request for url ({url}{path}): operation timed out")
        );
    }

    /// Each selector, parsed back as the peer parses `match[]`, is the same matchers.
    #[test]
    fn selectors_parse_back_to_their_matchers() {
        let regex = |name: &str, pattern: &str, negate| Matcher::regex(name, pattern, negate).unwrap();
        let not_equal = |name: &str, value: &str| Matcher { op: MatchOp::NotEqual, ..Matcher::equal(name, value) };
        let cases: Vec<(Vec<Matcher>, &str)> = vec![
            (
                vec![Matcher::equal("__name__", "up"), not_equal("job", "a\"b\\c")],
                r#"{"__name__"="up", "job"!="a\"b\\c"}"#,
            ),
            (vec![regex("path", r"/api/v\d+\.json", false)], r#"{"path"=~"/api/v\\d+\\.json"}"#),
            (
                vec![regex("service.name", "ché\n", true), Matcher::equal("on", "x")],
                "{\"service.name\"!~\"ché\\n\", \"on\"=\"x\"}",
            ),
            // Matchers that all match the empty string: the metric name is required non-empty.
            (
                vec![regex("job", ".*", false), not_equal("env", "prod")],
                r#"{"job"=~".*", "env"!="prod", "__name__"!=""}"#,
            ),
            (vec![], r#"{"__name__"!=""}"#),
        ];
        for (matchers, want) in cases {
            let text = promql_selector(&matchers);
            assert_eq!(text, want);
            let Ok(promql_parser::parser::Expr::VectorSelector(vs)) = promql_parser::parser::parse(&text) else {
                panic!("{text} is not a selector")
            };
            let parsed = crate::params::selector_matchers(&vs).unwrap();
            let shape = |ms: &[Matcher]| {
                ms.iter().map(|m| (m.name.clone(), wire_matcher(m).r#type, m.value.clone())).collect::<Vec<_>>()
            };
            let expected = if matchers.iter().any(|m| !m.matches("")) {
                matchers.clone()
            } else {
                [matchers.clone(), vec![every_series()]].concat()
            };
            assert_eq!(parsed.len(), 1, "{text}");
            assert_eq!(shape(&parsed[0]), shape(&expected), "{text}");
        }
    }

    #[test]
    fn times_go_as_seconds_the_api_parses_back_to_the_same_millisecond() {
        assert_eq!(
            time_params(1_700_000_000_123, 1_700_000_001_000),
            [("start", "1700000000.123".to_string()), ("end", "1700000001".to_string())]
        );
        assert_eq!(time_params(-1500, 5), [("start", "-1.500".to_string()), ("end", "0.005".to_string())]);
        assert_eq!(time_params(MIN_TIME_MS, MAX_TIME_MS), []);
        for ms in [-1500, 0, 5, 999, 1_700_000_000_123, 253_402_300_799_999] {
            let (_, text) = &time_params(ms, MAX_TIME_MS)[0];
            assert_eq!(crate::params::parse_time(text), Some(ms), "{text}");
        }
    }

    #[test]
    fn values_parse_as_prometheus_writes_them() {
        assert_eq!(parse_value("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_value("-Inf"), Some(f64::NEG_INFINITY));
        assert!(parse_value("NaN").unwrap().is_nan());
        assert_eq!(parse_value("0.1"), Some(0.1));
        assert_eq!(parse_value("-1e-300"), Some(-1e-300));
        assert_eq!(parse_value("inf"), None);
        for v in [0.1, 1.0 / 3.0, 1e21, 5e-324, -123456.789] {
            assert_eq!(parse_value(&crate::response::format_value(v)), Some(v));
        }
    }
}
