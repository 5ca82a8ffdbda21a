//! Where imported data goes: a running Amber's `POST /api/v1/import`, in remote write 1.0 bodies
//! of a bounded number of samples.
//!
//! A request is retried, with backoff, for as long as the answer is retryable (a 5xx, a 429, no
//! answer): the import endpoint is idempotent (what is already held is a duplicate, ignored), so a
//! retry after a lost answer writes nothing twice. A 400 means some entries can never be written
//! (too old for the retention, a conflicting value): the rest were written, the refusals are
//! counted and the import goes on. Any other answer stops it.

use std::time::Duration;

use amber_api::prompb;
use anyhow::{Context, bail};
use prost::Message;

/// Samples (floats, histogram samples and exemplars) per request: about 1 MB of protobuf, far
/// below Amber's body limits, and enough per request that the round trip is not what costs.
pub const BATCH_ENTRIES: usize = 50_000;

/// Attempts at one request before the import stops; with the backoff, about five minutes.
const ATTEMPTS: u32 = 14;

/// How to reach the Amber that receives an import.
#[derive(Debug, Clone)]
pub struct Target {
    /// Base URL, e.g. `http://localhost:9201`.
    pub url: String,
    /// `X-Scope-OrgID`: the tenant written to; `None` is the default tenant.
    pub tenant: Option<String>,
    /// Sent as `Authorization: Bearer …` when set.
    pub bearer_token: Option<String>,
}

/// What an import wrote, from Amber's answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    pub samples_written: u64,
    pub histograms_written: u64,
    pub exemplars_written: u64,
    /// Entries sent, written or not (duplicates of what Amber held, refusals).
    pub entries_sent: u64,
    pub requests: u64,
    /// Refusal messages of 400 answers (what can never be written), the first few of them.
    pub refusals: Vec<String>,
    pub refused_requests: u64,
}

impl Totals {
    /// Entries Amber took as already held (a rerun) or refused.
    pub fn not_written(&self) -> u64 {
        self.entries_sent - self.samples_written - self.histograms_written - self.exemplars_written
    }
}

/// Refusal messages kept for the summary.
const KEPT_REFUSALS: usize = 10;

/// Batches series into import requests and sends them.
pub struct Sink {
    target: Target,
    client: reqwest::blocking::Client,
    batch: prompb::WriteRequest,
    entries: usize,
    pub totals: Totals,
}

/// Takes up to `left` entries off the front of `v`.
fn take<T>(v: &mut Vec<T>, left: &mut usize) -> Vec<T> {
    let n = v.len().min(*left);
    *left -= n;
    v.drain(..n).collect()
}

fn entries(ts: &prompb::TimeSeries) -> usize {
    ts.samples.len() + ts.histograms.len() + ts.exemplars.len()
}

impl Sink {
    pub fn new(target: Target) -> anyhow::Result<Sink> {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).build()?;
        Ok(Sink { target, client, batch: prompb::WriteRequest::default(), entries: 0, totals: Totals::default() })
    }

    /// Adds a series' data, sending the batch once it is full. A long series is split across
    /// requests.
    pub fn push(&mut self, mut series: prompb::TimeSeries) -> anyhow::Result<()> {
        while entries(&series) > 0 {
            let room = BATCH_ENTRIES.saturating_sub(self.entries).max(1);
            if entries(&series) <= room {
                self.entries += entries(&series);
                self.batch.timeseries.push(series);
                break;
            }
            // Split off what fits: samples first, then histograms, then exemplars.
            let mut part = prompb::TimeSeries { labels: series.labels.clone(), ..Default::default() };
            let mut left = room;
            part.samples = take(&mut series.samples, &mut left);
            part.histograms = take(&mut series.histograms, &mut left);
            part.exemplars = take(&mut series.exemplars, &mut left);
            self.entries += entries(&part);
            self.batch.timeseries.push(part);
            self.flush()?;
        }
        if self.entries >= BATCH_ENTRIES {
            self.flush()?;
        }
        Ok(())
    }

    /// Adds metric metadata (sent with the next request).
    pub fn push_metadata(&mut self, metadata: prompb::MetricMetadata) {
        self.batch.metadata.push(metadata);
    }

    /// Sends what is batched; when it returns, Amber holds it durably.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        if self.batch.timeseries.is_empty() && self.batch.metadata.is_empty() {
            return Ok(());
        }
        let request = std::mem::take(&mut self.batch);
        let sent = std::mem::take(&mut self.entries) as u64;
        let body = snap::raw::Encoder::new().compress_vec(&request.encode_to_vec())?;
        let url = format!("{}/api/v1/import", self.target.url.trim_end_matches('/'));
        let mut backoff = Duration::from_millis(250);
        for attempt in 1..=ATTEMPTS {
            let mut post = self
                .client
                .post(&url)
                .header("content-type", "application/x-protobuf")
                .header("content-encoding", "snappy")
                .header("x-prometheus-remote-write-version", "0.1.0")
                .body(body.clone());
            if let Some(tenant) = &self.target.tenant {
                post = post.header("X-Scope-OrgID", tenant);
            }
            if let Some(token) = &self.target.bearer_token {
                post = post.bearer_auth(token);
            }
            let why = match post.send() {
                Ok(answer) => {
                    let status = answer.status();
                    let count = |name: &str| {
                        answer.headers().get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
                    };
                    let written = [
                        count("x-prometheus-remote-write-samples-written"),
                        count("x-prometheus-remote-write-histograms-written"),
                        count("x-prometheus-remote-write-exemplars-written"),
                    ];
                    if status.is_success() || status == reqwest::StatusCode::BAD_REQUEST {
                        let t = &mut self.totals;
                        t.samples_written += written[0].unwrap_or(0);
                        t.histograms_written += written[1].unwrap_or(0);
                        t.exemplars_written += written[2].unwrap_or(0);
                        t.entries_sent += sent;
                        t.requests += 1;
                        if status == reqwest::StatusCode::BAD_REQUEST {
                            t.refused_requests += 1;
                            let text = answer.text().unwrap_or_default();
                            if t.refusals.len() < KEPT_REFUSALS {
                                t.refusals.push(text);
                            }
                        }
                        return Ok(());
                    }
                    let text = answer.text().unwrap_or_default();
                    if !(status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS) {
                        bail!("{url} answered {status}: {}", text.trim());
                    }
                    format!("{status}: {}", text.trim())
                }
                Err(e) => format!("{e:#}"),
            };
            if attempt == ATTEMPTS {
                bail!("{url}: gave up after {ATTEMPTS} attempts; last: {why}");
            }
            eprintln!("import: {url}: {why}; retrying in {backoff:?}");
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
        unreachable!("the loop returns or fails on its last attempt")
    }

    /// Sends what is left and returns the totals.
    pub fn finish(mut self) -> anyhow::Result<Totals> {
        self.flush().context("sending the last batch")?;
        Ok(self.totals)
    }
}
