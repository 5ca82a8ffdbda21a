//! How a tenant's limits, configured for the whole cluster, are shared out among the processes
//! that enforce them, as Mimir's "global" limits are.
//!
//! On one node every limit is enforced whole. In a cluster no process sees all of a tenant's
//! writes, and none asks another on a request's path; each enforces its part, read off the rings
//! it watches:
//! - an ingester holds about `replication_factor / active ingesters` of each tenant's series
//!   (each series is on `replication_factor` of them), so it enforces that part of
//!   `max_series_per_tenant` and of the new-series rate and burst;
//! - a distributor sees about `1 / distributors` of the writes, senders being spread over the
//!   distributors (by a load balancer, or each sender given one), so it enforces that part of the
//!   ingestion rate. Its burst is not divided, as Mimir's is not: a request larger than its part of
//!   the burst could never pass;
//! - an ingester leaves the ingestion rate to the distributors: every sample it gets came through
//!   one.
//!
//! A part follows the rings as members come and go, within the watch's delay. It is as even as
//! the ring's tokens share the series out (128 tokens an ingester: a few per cent apart) and as
//! the senders' spread over the distributors.

use std::fmt::Display;
use std::sync::Arc;

use amber_ring::RingWatch;

/// Which part of the cluster's limits this process enforces.
#[derive(Clone, Default)]
pub enum LimitShare {
    /// One node, or a process no cluster limit reaches: every limit whole.
    #[default]
    Whole,
    /// An ingester on `ring`, each series written to `replication_factor` ingesters.
    Ingester { ring: Arc<RingWatch>, replication_factor: usize },
    /// A distributor among those registered on `distributors`.
    Distributor { distributors: Arc<RingWatch> },
}

impl LimitShare {
    /// The part of the series limit and of the new-series rate enforced here.
    pub fn series(&self) -> Part {
        match self {
            LimitShare::Ingester { ring, replication_factor } => {
                let active = ring.ring().active().max(1);
                Part {
                    fraction: (*replication_factor).min(active) as f64 / active as f64,
                    holder: Holder::Ingester { active, replication_factor: *replication_factor },
                }
            }
            LimitShare::Whole | LimitShare::Distributor { .. } => Part::WHOLE,
        }
    }

    /// The part of the ingestion rate enforced here; `None` where the distributors enforce it.
    pub fn ingestion(&self) -> Option<Part> {
        match self {
            LimitShare::Whole => Some(Part::WHOLE),
            LimitShare::Ingester { .. } => None,
            LimitShare::Distributor { distributors } => {
                let count = distributors.ring().members().len().max(1);
                Some(Part { fraction: 1.0 / count as f64, holder: Holder::Distributor { count } })
            }
        }
    }
}

/// A process's part of a limit, at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Part {
    /// What a configured limit is multiplied by here: 1 on one node.
    fraction: f64,
    holder: Holder,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Holder {
    Node,
    Ingester { active: usize, replication_factor: usize },
    Distributor { count: usize },
}

impl Part {
    pub const WHOLE: Part = Part { fraction: 1.0, holder: Holder::Node };

    /// This process's part of a rate.
    pub fn of_rate(&self, limit: f64) -> f64 {
        limit * self.fraction
    }

    /// Whether this is the whole of every limit (one node, or a cluster member holding it all).
    pub fn is_whole(&self) -> bool {
        self.fraction == 1.0
    }

    /// This process's part of a count, rounded up: a tenant allowed any series may always have one.
    pub fn of_count(&self, limit: u64) -> u64 {
        if self.is_whole() { limit } else { ((limit as f64 * self.fraction).ceil() as u64).min(limit) }
    }

    /// How a limit here comes from the configured `limit` (with its `unit`), for refusals:
    /// formats as nothing where it is the whole limit, and only when a refusal formats it.
    pub fn explain(&self, limit: f64, unit: &'static str) -> Explained {
        Explained { part: *self, limit, unit }
    }
}

/// [`Part::explain`]'s answer.
#[derive(Debug, Clone, Copy)]
pub struct Explained {
    part: Part,
    limit: f64,
    unit: &'static str,
}

impl Explained {
    /// Whether this explains anything: whether the limit here is a part of the configured one.
    pub fn is_part(&self) -> bool {
        !self.part.is_whole()
    }
}

impl Display for Explained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Explained { part, limit, unit } = self;
        if part.is_whole() {
            return Ok(());
        }
        match part.holder {
            Holder::Node => Ok(()),
            Holder::Ingester { active, replication_factor } => write!(
                f,
                " (this ingester's part of the cluster's {limit} {unit}: {active} active ingesters on the ring, each series on {} of them)",
                replication_factor.min(active)
            ),
            Holder::Distributor { count } => {
                write!(f, " (this distributor's part of the cluster's {limit} {unit}: one of {count} distributors)")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ingester_enforces_its_replicas_share_and_never_more_than_the_whole() {
        let part = |active: usize, replication_factor: usize| {
            let fraction = replication_factor.min(active) as f64 / active as f64;
            Part { fraction, holder: Holder::Ingester { active, replication_factor } }
        };
        assert_eq!(part(6, 3).of_count(1000), 500);
        assert_eq!(part(3, 1).of_count(100), 34);
        // Fewer ingesters than replicas: each holds every series.
        assert_eq!(part(2, 3).of_count(1000), 1000);
        assert_eq!(part(4, 3).of_rate(100.0), 75.0);
        assert_eq!(part(1000, 3).of_count(1), 1);
        assert_eq!(Part::WHOLE.of_count(u64::MAX), u64::MAX);
        assert_eq!(
            part(4, 3).explain(1000.0, "series").to_string(),
            " (this ingester's part of the cluster's 1000 series: 4 active ingesters on the ring, each series on 3 of them)"
        );
        assert_eq!(Part::WHOLE.explain(1000.0, "series").to_string(), "");
        assert_eq!(part(3, 3).explain(1000.0, "series").to_string(), "");
        assert!(!part(3, 3).explain(1000.0, "series").is_part());
    }
}
