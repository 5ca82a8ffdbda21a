//! The distributor: a write's validated series sent on to the ingesters that own them on the
//! ring, each to `replication_factor` of them, acknowledged once a quorum of each series'
//! replicas has made it durable.
//!
//! A write arrives as on one node (remote write 1.0 or 2.0, OTLP) and is validated here, so a
//! bad input is answered exactly as one node answers it. Each series hashes, with its tenant,
//! onto the ring ([`amber_ring::series_key`]); the ring's Active members clockwise from that key
//! are its replicas. Metadata goes to every Active ingester, and needs a quorum of them. Every
//! ingester gets one remote write 2.0 request with its series (2.0 is the version that carries
//! start timestamps) and the tenant in `X-Scope-OrgID`, all at once.
//!
//! An ingester's answer counts for each of its series:
//! - `2xx`, and `400` (an ingester writes the valid rest of a request and names what it refused):
//!   the series is durable there;
//! - anything else (a `5xx`, a `429`, no answer within the timeout): it is not.
//!
//! A series durable on fewer than a quorum (`replication_factor / 2 + 1`) of its replicas fails
//! the write with a retryable `503` (a `429` when every miss was an ingester's rate limit), the
//! sender retries it whole, and what already landed is a duplicate then, which ingesters take
//! as written. Otherwise the write is a `204`, or a `400` listing what the ingesters refused
//! (each refusal once, though every replica refused it). Each ingester's outcomes are counted on
//! `/metrics` (`amber_distributor_ingester_writes_total{ingester, outcome}`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use amber_ring::{MemberState, RingWatch};
use amber_storage::{MetricMetadata, SeriesWrite};
use axum::body::Bytes;
use axum::http::StatusCode;
use prost::Message;

use crate::remote_write::{WriteError, Written};
use crate::tenant::ORG_ID_HEADER;

/// How a distributor sends writes on.
#[derive(Debug, Clone)]
pub struct DistributorOptions {
    /// Ingesters each series is written to (`--replication-factor`).
    pub replication_factor: usize,
    /// How long an ingester has to answer a forwarded write before it counts as failed.
    pub timeout: Duration,
}

pub struct Distributor {
    ring: Arc<RingWatch>,
    options: DistributorOptions,
    client: reqwest::Client,
}

/// What the ingesters did with a write that reached its quorum.
#[derive(Debug, Default)]
pub(crate) struct Forwarded {
    /// Estimated from the replicas' answers: exact when every replica answered.
    pub written: Written,
    /// What ingesters refused, each message once.
    pub refused: Vec<String>,
}

/// One ingester's answer to its part of a write.
enum Answer {
    /// `2xx`, or a `400` with the refusals: durable either way.
    Durable { written: Written, refused: Vec<String> },
    /// Not durable there: why, and whether only for now (the ingester's rate limit).
    Missed { why: String, rate_limited: bool },
}

impl Distributor {
    pub fn new(ring: Arc<RingWatch>, options: DistributorOptions) -> Distributor {
        let client = reqwest::Client::builder().timeout(options.timeout).build().expect("an HTTP client without TLS");
        Distributor { ring, options, client }
    }

    /// Replicas a series must be durable on before its write is acknowledged.
    pub fn quorum(&self) -> usize {
        self.options.replication_factor / 2 + 1
    }

    /// Replicas of a series a read may go without: an acknowledged write is on the others.
    pub fn may_miss(&self) -> usize {
        self.options.replication_factor - self.quorum()
    }

    /// Writes `series` for `tenant` on a quorum of each series' replicas.
    pub(crate) async fn forward(
        &self,
        tenant: &str,
        series: &[SeriesWrite],
        metadata: &[MetricMetadata],
        metrics: &crate::metrics::Metrics,
    ) -> Result<Forwarded, WriteError> {
        let ring = self.ring.ring();
        let quorum = self.quorum();
        // Each series' replicas, as indices into the ring's members.
        let mut replicas: Vec<Vec<usize>> = Vec::with_capacity(series.len());
        let mut by_member: Vec<Vec<usize>> = vec![Vec::new(); ring.members().len()];
        let mut owners = Vec::new();
        for (i, s) in series.iter().enumerate() {
            let key = amber_ring::series_key(tenant, s.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())));
            ring.replicas_into(key, self.options.replication_factor, &mut owners);
            if owners.len() < quorum {
                return Err(self.too_few_active(owners.len()));
            }
            for &m in &owners {
                by_member[m].push(i);
            }
            replicas.push(owners.clone());
        }
        // Metadata goes to every active ingester: a family's metadata arrives apart from its
        // series (Prometheus sends it in requests of its own), and reads union every member's.
        let active: Vec<usize> =
            (0..ring.members().len()).filter(|&m| ring.members()[m].state == MemberState::Active).collect();
        if !metadata.is_empty() && active.len() < quorum {
            return Err(self.too_few_active(active.len()));
        }
        let gets_request = |m: usize| !by_member[m].is_empty() || (!metadata.is_empty() && active.contains(&m));
        // Ingesters sent the same series get the same body, encoded once: with as many ingesters
        // as replicas, every one of them.
        let mut bodies: Vec<(&[usize], Bytes)> = Vec::new();
        let mut sends = Vec::new();
        for m in (0..ring.members().len()).filter(|&m| gets_request(m)) {
            let owned = by_member[m].as_slice();
            let body = match bodies.iter().find(|(o, _)| *o == owned) {
                Some((_, body)) => body.clone(),
                None => {
                    let body = Bytes::from(series_to_body(owned.iter().map(|&i| &series[i]), metadata));
                    bodies.push((owned, body.clone()));
                    body
                }
            };
            let addr = ring.members()[m].addr.clone();
            sends.push(async move { (m, self.send(&addr, tenant, body).await) });
        }
        let mut answers: Vec<Option<Answer>> = (0..ring.members().len()).map(|_| None).collect();
        for (m, answer) in futures::future::join_all(sends).await {
            metrics.ingester_write(&ring.members()[m].id, matches!(answer, Answer::Durable { .. }));
            answers[m] = Some(answer);
        }
        let durable_on = |m: usize| matches!(answers[m], Some(Answer::Durable { .. }));
        if let Some(short) = replicas.iter().position(|r| r.iter().filter(|&&m| durable_on(m)).count() < quorum) {
            let misses: Vec<(&str, &str, bool)> = replicas[short]
                .iter()
                .filter_map(|&m| match &answers[m] {
                    Some(Answer::Missed { why, rate_limited }) => {
                        Some((ring.members()[m].id.as_str(), why.as_str(), *rate_limited))
                    }
                    _ => None,
                })
                .collect();
            let status = if misses.iter().all(|(_, _, limited)| *limited) {
                StatusCode::TOO_MANY_REQUESTS
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let failed = replicas.iter().filter(|r| r.iter().filter(|&&m| durable_on(m)).count() < quorum).count();
            let why: Vec<String> = misses.iter().map(|(id, why, _)| format!("ingester {id}: {why}")).collect();
            return Err(WriteError::new(
                status,
                format!(
                    "{failed} series reached fewer than the write quorum of {quorum} of {} ingesters, {} among them; retry: {}",
                    replicas[short].len(),
                    series[short].labels,
                    why.join("; ")
                ),
            ));
        }
        let metadata_durable = active.iter().filter(|&&m| durable_on(m)).count();
        if !metadata.is_empty() && metadata_durable < quorum {
            let why: Vec<String> = active
                .iter()
                .filter_map(|&m| match &answers[m] {
                    Some(Answer::Missed { why, .. }) => Some(format!("ingester {}: {why}", ring.members()[m].id)),
                    _ => None,
                })
                .collect();
            return Err(WriteError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "metadata reached {metadata_durable} ingesters, fewer than the write quorum of {quorum}; retry: {}",
                    why.join("; ")
                ),
            ));
        }
        Ok(tally(series, &by_member, &answers))
    }

    /// The retryable refusal of a write the ring has too few active ingesters for.
    fn too_few_active(&self, active: usize) -> WriteError {
        WriteError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the ring has {active} active ingesters, fewer than the write quorum of {} (replication factor {}); retry later",
                self.quorum(),
                self.options.replication_factor
            ),
        )
    }

    /// Posts one ingester's part of a write and reads its answer.
    async fn send(&self, addr: &str, tenant: &str, body: Bytes) -> Answer {
        let request = self
            .client
            .post(format!("{}/api/v1/write", addr.trim_end_matches('/')))
            .header("content-type", "application/x-protobuf;proto=io.prometheus.write.v2.Request")
            .header("content-encoding", "snappy")
            .header("x-prometheus-remote-write-version", "2.0.0")
            .header(ORG_ID_HEADER, tenant)
            .header(crate::PEER_HEADER, "distributor")
            .body(body);
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Answer::Missed { why: format!("no answer from {addr}: {e}"), rate_limited: false },
        };
        let status = response.status();
        let count = |name: &str| {
            response.headers().get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0)
        };
        let written = Written {
            samples: count("x-prometheus-remote-write-samples-written"),
            histograms: count("x-prometheus-remote-write-histograms-written"),
            exemplars: count("x-prometheus-remote-write-exemplars-written"),
        };
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            Answer::Durable { written, refused: Vec::new() }
        } else if status == StatusCode::BAD_REQUEST {
            Answer::Durable { written, refused: crate::remote_write::refusals(&text) }
        } else {
            Answer::Missed {
                why: format!("{addr} answered {status}: {}", text.trim()),
                rate_limited: status == StatusCode::TOO_MANY_REQUESTS,
            }
        }
    }
}

/// The snappy-compressed remote write 2.0 body of `series`.
fn series_to_body<'a>(series: impl IntoIterator<Item = &'a SeriesWrite>, metadata: &'a [MetricMetadata]) -> Vec<u8> {
    let request = crate::remote_write::series_to_v2(series, metadata);
    snap::raw::Encoder::new().compress_vec(&request.encode_to_vec()).expect("snappy compresses any input")
}

/// What a write that reached its quorum wrote and what was refused. An entry refused by one
/// replica is refused by every replica that answered (they validate the same way), so the
/// written counts scale what the replicas that answered wrote by what they were sent.
fn tally(series: &[SeriesWrite], by_member: &[Vec<usize>], answers: &[Option<Answer>]) -> Forwarded {
    let sent = |owned: &[usize]| {
        owned.iter().fold([0u64; 3], |[s, h, e], &i| {
            let x = &series[i];
            [s + x.samples.len() as u64, h + x.histograms.len() as u64, e + x.exemplars.len() as u64]
        })
    };
    let total = sent(&(0..series.len()).collect::<Vec<_>>());
    let (mut sent_to_answering, mut written_by_answering) = ([0u64; 3], [0u64; 3]);
    let mut refused = BTreeSet::new();
    for (owned, answer) in by_member.iter().zip(answers) {
        if let Some(Answer::Durable { written, refused: r }) = answer {
            let s = sent(owned);
            let w = [written.samples, written.histograms, written.exemplars];
            for k in 0..3 {
                sent_to_answering[k] += s[k];
                written_by_answering[k] += w[k].min(s[k]);
            }
            refused.extend(r.iter().cloned());
        }
    }
    let estimate = |k: usize| {
        if sent_to_answering[k] == 0 {
            0
        } else {
            (total[k] as u128 * written_by_answering[k] as u128 / sent_to_answering[k] as u128) as u64
        }
    };
    Forwarded {
        written: Written { samples: estimate(0), histograms: estimate(1), exemplars: estimate(2) },
        refused: refused.into_iter().collect(),
    }
}
