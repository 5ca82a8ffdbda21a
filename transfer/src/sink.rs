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

use crate::progress::Journal;

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

/// Batches series into import requests and sends them. One worker thread sends while the
/// source goes on reading, with at most [`IN_FLIGHT`] batches waiting: parsing and the server's
/// writing overlap, memory stays bounded. (One sender is enough: Amber writes backfills one at a
/// time, under its sealing lock.)
pub struct Sink {
    batch: prompb::WriteRequest,
    entries: usize,
    jobs: Option<std::sync::mpsc::SyncSender<Job>>,
    worker: Option<std::thread::JoinHandle<()>>,
    state: std::sync::Arc<std::sync::Mutex<State>>,
}

/// Encoded batches queued for the worker beyond the one it is sending.
pub const IN_FLIGHT: usize = 2;

enum Job {
    /// A snappy-compressed body and the entries it holds.
    Send(Vec<u8>, u64),
    /// A unit of the import whose data is in the jobs before it: journalled once they are done.
    EndUnit(String),
    /// Answered once every job before it is done.
    Barrier(std::sync::mpsc::Sender<()>),
}

struct State {
    totals: Totals,
    journal: Journal,
    /// The first error that stopped the worker; every later call returns it.
    failed: Option<String>,
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
    /// A sink to `target` recording finished units in `journal`.
    pub fn new(target: Target, journal: Journal) -> anyhow::Result<Sink> {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).build()?;
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(IN_FLIGHT);
        let state = State { totals: Totals::default(), journal, failed: None };
        let state = std::sync::Arc::new(std::sync::Mutex::new(state));
        let worker_state = state.clone();
        let worker = std::thread::Builder::new().name("import-sender".into()).spawn(move || {
            let sender = Sender { target, client };
            for job in queue {
                match job {
                    Job::Send(body, sent) => {
                        if worker_state.lock().expect("not poisoned").failed.is_some() {
                            continue;
                        }
                        let outcome = sender.send(&body, sent);
                        let mut state = worker_state.lock().expect("not poisoned");
                        match outcome {
                            Ok(answer) => answer.add_to(&mut state.totals, sent),
                            Err(e) => state.failed = Some(format!("{e:#}")),
                        }
                    }
                    Job::EndUnit(unit) => {
                        let mut state = worker_state.lock().expect("not poisoned");
                        if state.failed.is_none() {
                            if let Err(e) = state.journal.mark_done(&unit) {
                                state.failed = Some(format!("{e:#}"));
                            }
                        }
                    }
                    Job::Barrier(done) => {
                        let _ = done.send(());
                    }
                }
            }
        })?;
        Ok(Sink { batch: prompb::WriteRequest::default(), entries: 0, jobs: Some(jobs), worker: Some(worker), state })
    }

    /// What Amber acknowledged so far.
    pub fn totals(&self) -> Totals {
        self.state.lock().expect("not poisoned").totals.clone()
    }

    /// Whether `unit` was imported before (by the journal), or by this run.
    pub fn is_done(&self, unit: &str) -> bool {
        self.state.lock().expect("not poisoned").journal.is_done(unit)
    }

    /// Sends what is batched; `unit` goes into the journal once Amber acknowledged it and
    /// everything before it. Does not wait.
    pub fn end_unit(&mut self, unit: &str) -> anyhow::Result<()> {
        self.send_batch()?;
        self.queue(Job::EndUnit(unit.to_string()))
    }

    fn check(&self) -> anyhow::Result<()> {
        match &self.state.lock().expect("not poisoned").failed {
            Some(e) => bail!("{e}"),
            None => Ok(()),
        }
    }

    fn queue(&self, job: Job) -> anyhow::Result<()> {
        let jobs = self.jobs.as_ref().expect("present until finish");
        jobs.send(job).map_err(|_| anyhow::anyhow!("the import's sender thread stopped"))
    }

    /// Adds a series' data, queueing the batch once it is full. A long series is split across
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
            self.send_batch()?;
        }
        if self.entries >= BATCH_ENTRIES {
            self.send_batch()?;
        }
        Ok(())
    }

    /// Adds metric metadata (sent with the next request).
    pub fn push_metadata(&mut self, metadata: prompb::MetricMetadata) {
        self.batch.metadata.push(metadata);
    }

    /// Queues what is batched for the worker.
    fn send_batch(&mut self) -> anyhow::Result<()> {
        self.check()?;
        if self.batch.timeseries.is_empty() && self.batch.metadata.is_empty() {
            return Ok(());
        }
        let request = std::mem::take(&mut self.batch);
        let sent = std::mem::take(&mut self.entries) as u64;
        let body = snap::raw::Encoder::new().compress_vec(&request.encode_to_vec())?;
        self.queue(Job::Send(body, sent))
    }

    /// Sends what is batched and waits for every request so far: when it returns `Ok`, Amber
    /// holds all of it durably.
    fn flush(&mut self) -> anyhow::Result<()> {
        self.send_batch()?;
        let (done, wait) = std::sync::mpsc::channel();
        self.queue(Job::Barrier(done))?;
        wait.recv().map_err(|_| anyhow::anyhow!("the import's sender thread stopped"))?;
        self.check()
    }

    /// Sends what is left and returns the totals.
    pub fn finish(mut self) -> anyhow::Result<Totals> {
        self.flush().context("sending the last batch")?;
        drop(self.jobs.take());
        if let Some(worker) = self.worker.take() {
            worker.join().map_err(|_| anyhow::anyhow!("the import's sender thread panicked"))?;
        }
        Ok(self.totals())
    }
}

/// What one acknowledged request wrote.
struct Answer {
    written: [u64; 3],
    /// The body of a 400: what can never be written.
    refusal: Option<String>,
}

impl Answer {
    fn add_to(self, t: &mut Totals, sent: u64) {
        t.samples_written += self.written[0];
        t.histograms_written += self.written[1];
        t.exemplars_written += self.written[2];
        t.entries_sent += sent;
        t.requests += 1;
        if let Some(text) = self.refusal {
            t.refused_requests += 1;
            if t.refusals.len() < KEPT_REFUSALS {
                t.refusals.push(text);
            }
        }
    }
}

/// The worker's side: one request at a time, retried.
struct Sender {
    target: Target,
    client: reqwest::blocking::Client,
}

impl Sender {
    fn send(&self, body: &[u8], sent: u64) -> anyhow::Result<Answer> {
        let url = format!("{}/api/v1/import", self.target.url.trim_end_matches('/'));
        let mut backoff = Duration::from_millis(250);
        for attempt in 1..=ATTEMPTS {
            let mut post = self
                .client
                .post(&url)
                .header("content-type", "application/x-protobuf")
                .header("content-encoding", "snappy")
                .header("x-prometheus-remote-write-version", "0.1.0")
                .body(body.to_vec());
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
                        count("x-prometheus-remote-write-samples-written").unwrap_or(0),
                        count("x-prometheus-remote-write-histograms-written").unwrap_or(0),
                        count("x-prometheus-remote-write-exemplars-written").unwrap_or(0),
                    ];
                    if status.is_success() {
                        return Ok(Answer { written, refusal: None });
                    }
                    let text = answer.text().unwrap_or_default();
                    if status == reqwest::StatusCode::BAD_REQUEST {
                        return Ok(Answer { written, refusal: Some(text) });
                    }
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
            eprintln!("import: {url}: {why}; retrying in {backoff:?} ({sent} entries)");
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
        unreachable!("the loop returns or fails on its last attempt")
    }
}
