//! Metric metadata (type, help, unit) as senders report it, per metric family.
//!
//! Every distinct metadata of a family is kept (as Prometheus keeps one per target), keyed
//! `0x05 tenant family 0x00 type unit help` with an empty value, so a repeat write is a no-op.

use std::collections::BTreeMap;

use rocksdb::{Direction, IteratorMode, WriteBatch};

use crate::chunkenc::varint::{Reader, put_uvarint};
use crate::db::Storage;
use crate::error::{Error, Result};
use crate::keys;
use crate::tenant::TenantId;

/// Prometheus's metric types; numbers follow remote write's `MetricMetadata.MetricType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MetricType {
    Unknown = 0,
    Counter = 1,
    Gauge = 2,
    Histogram = 3,
    GaugeHistogram = 4,
    Summary = 5,
    Info = 6,
    StateSet = 7,
}

impl MetricType {
    pub fn from_i32(v: i32) -> MetricType {
        match v {
            1 => MetricType::Counter,
            2 => MetricType::Gauge,
            3 => MetricType::Histogram,
            4 => MetricType::GaugeHistogram,
            5 => MetricType::Summary,
            6 => MetricType::Info,
            7 => MetricType::StateSet,
            _ => MetricType::Unknown,
        }
    }

    /// The type `/api/v1/metadata` names `name`; `Unknown` for any other name.
    pub fn from_name(name: &str) -> MetricType {
        [
            MetricType::Counter,
            MetricType::Gauge,
            MetricType::Histogram,
            MetricType::GaugeHistogram,
            MetricType::Summary,
            MetricType::Info,
            MetricType::StateSet,
        ]
        .into_iter()
        .find(|t| t.as_str() == name)
        .unwrap_or(MetricType::Unknown)
    }

    /// The name `/api/v1/metadata` uses.
    pub fn as_str(&self) -> &'static str {
        match self {
            MetricType::Unknown => "unknown",
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MetricMetadata {
    pub metric_family: String,
    pub metric_type: MetricType,
    pub help: String,
    pub unit: String,
}

fn metadata_key(tenant: TenantId, m: &MetricMetadata) -> Vec<u8> {
    let mut k = keys::metadata_prefix(tenant);
    k.extend_from_slice(m.metric_family.as_bytes());
    k.push(0);
    k.push(m.metric_type as u8);
    put_uvarint(&mut k, m.unit.len() as u64);
    k.extend_from_slice(m.unit.as_bytes());
    k.extend_from_slice(m.help.as_bytes());
    k
}

fn parse_metadata_key(tail: &[u8]) -> Option<MetricMetadata> {
    let sep = tail.iter().position(|&b| b == 0)?;
    let metric_family = String::from_utf8(tail[..sep].to_vec()).ok()?;
    let mut r = Reader::new(&tail[sep + 1..]);
    let metric_type = MetricType::from_i32(i32::from(r.u8().ok()?));
    let unit = String::from_utf8(r.len_prefixed().ok()?.to_vec()).ok()?;
    let help = String::from_utf8(r.remaining().to_vec()).ok()?;
    Some(MetricMetadata { metric_family, metric_type, help, unit })
}

impl Storage {
    pub(crate) fn put_metadata(&self, batch: &mut WriteBatch, tenant: TenantId, metadata: &[MetricMetadata]) {
        let index = self.cf(keys::CF_INDEX);
        for m in metadata.iter().filter(|m| !m.metric_family.is_empty() && !m.metric_family.contains('\0')) {
            batch.put_cf(index, metadata_key(tenant, m), []);
        }
    }

    /// Metadata by metric family, at most `limit` families (`None`: all) and `limit_per_metric`
    /// entries each, optionally only for `metric`.
    pub fn metadata(
        &self,
        tenant: TenantId,
        metric: Option<&str>,
        limit: Option<usize>,
        limit_per_metric: Option<usize>,
    ) -> Result<BTreeMap<String, Vec<MetricMetadata>>> {
        let mut prefix = keys::metadata_prefix(tenant);
        if let Some(m) = metric {
            prefix.extend_from_slice(m.as_bytes());
            prefix.push(0);
        }
        let tenant_len = keys::metadata_prefix(tenant).len();
        let mut out: BTreeMap<String, Vec<MetricMetadata>> = BTreeMap::new();
        for item in self.db.iterator_cf(self.cf(keys::CF_INDEX), IteratorMode::From(&prefix, Direction::Forward)) {
            let (k, _) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            let m = parse_metadata_key(&k[tenant_len..]).ok_or(Error::CorruptIndex {
                what: "metadata key",
                source: crate::chunkenc::DecodeError::Invalid("unparsable metadata"),
            })?;
            if !out.contains_key(&m.metric_family) && limit.is_some_and(|l| out.len() >= l) {
                break;
            }
            let entries = out.entry(m.metric_family.clone()).or_default();
            if limit_per_metric.is_none_or(|l| entries.len() < l) {
                entries.push(m);
            }
        }
        Ok(out)
    }
}
