//! [`RingSource`]: the ingesters on the ring as one [`ReadSource`], for a querier's recent data.
//!
//! Each read asks every member the ring holds now (any state: a joining or leaving ingester
//! still holds what it was sent) through [`RemoteAmber`], as [`Replicas`]: answered once all
//! but `may_miss` have answered, `may_miss` being what a quorum write leaves out
//! (`replication_factor - quorum`). Members come and go with the watched ring; a peer's client
//! is kept while its address stays on the ring.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use amber_ring::RingWatch;
use amber_storage::querier::TracedExemplar;
use amber_storage::source::{Columns, ReadSource, Replicas, SeriesData};
use amber_storage::{Labels, Matcher, MetricMetadata, Result};
use parking_lot::Mutex;

use crate::remote_source::RemoteAmber;

pub struct RingSource {
    ring: Arc<RingWatch>,
    may_miss: usize,
    timeout: Duration,
    runtime: tokio::runtime::Handle,
    /// Clients by member address.
    peers: Mutex<HashMap<String, Arc<RemoteAmber>>>,
}

impl RingSource {
    /// Reads from the members of `ring`, each request given at most `timeout`, on `runtime` (a
    /// multi-threaded one, as [`RemoteAmber`] needs).
    pub fn new(
        ring: Arc<RingWatch>,
        may_miss: usize,
        timeout: Duration,
        runtime: tokio::runtime::Handle,
    ) -> RingSource {
        RingSource { ring, may_miss, timeout, runtime, peers: Mutex::default() }
    }

    /// The ring's members now, as replicas.
    fn replicas(&self) -> Result<Replicas> {
        let ring = self.ring.ring();
        let mut peers = self.peers.lock();
        peers.retain(|addr, _| ring.members().iter().any(|m| &m.addr == addr));
        let mut replicas: Vec<Arc<dyn ReadSource>> = Vec::with_capacity(ring.members().len());
        for member in ring.members() {
            let peer = match peers.get(&member.addr) {
                Some(p) => p.clone(),
                None => {
                    let p = Arc::new(RemoteAmber::new(&member.addr, self.timeout, self.runtime.clone())?);
                    peers.insert(member.addr.clone(), p.clone());
                    p
                }
            };
            replicas.push(peer);
        }
        Ok(Replicas { replicas, may_miss: self.may_miss })
    }
}

impl ReadSource for RingSource {
    fn select(
        &self,
        tenant: &str,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
        columns: Columns,
    ) -> Result<Vec<SeriesData>> {
        self.replicas()?.select(tenant, selectors, mint, maxt, columns)
    }

    fn series(&self, tenant: &str, selectors: &[Vec<Matcher>], mint: i64, maxt: i64) -> Result<Vec<Labels>> {
        self.replicas()?.series(tenant, selectors, mint, maxt)
    }

    fn label_names(&self, tenant: &str, selectors: &[Vec<Matcher>], mint: i64, maxt: i64) -> Result<Vec<String>> {
        self.replicas()?.label_names(tenant, selectors, mint, maxt)
    }

    fn label_values(
        &self,
        tenant: &str,
        name: &str,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>> {
        self.replicas()?.label_values(tenant, name, selectors, mint, maxt)
    }

    fn exemplars_by_trace(&self, tenant: &str, trace_id: &str) -> Result<Vec<TracedExemplar>> {
        self.replicas()?.exemplars_by_trace(tenant, trace_id)
    }

    fn metadata(&self, tenant: &str, metric: Option<&str>) -> Result<BTreeMap<String, Vec<MetricMetadata>>> {
        self.replicas()?.metadata(tenant, metric)
    }
}
