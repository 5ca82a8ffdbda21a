//! Cardinality of a tenant's index, as Prometheus's `/api/v1/status/tsdb` reports it (its
//! `index.MemPostings.Stats`): series per metric name, values per label name, bytes of label
//! values per label name (each value's length times its series), series per label pair — each
//! the top `limit`, largest first.

use rocksdb::{Direction, IteratorMode};

use crate::db::Storage;
use crate::error::Result;
use crate::index::decode_postings;
use crate::keys;
use crate::tenant::TenantId;

/// One entry of a top list: a name (or `name=value`) and its count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub name: String,
    pub count: u64,
}

/// What `/api/v1/status/tsdb` lists of one tenant's index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cardinality {
    pub series: u64,
    /// Distinct `name=value` pairs.
    pub label_pairs: u64,
    pub series_by_metric_name: Vec<Stat>,
    pub values_by_label_name: Vec<Stat>,
    pub value_bytes_by_label_name: Vec<Stat>,
    pub series_by_label_pair: Vec<Stat>,
}

/// The `limit` largest, largest first, ties by name.
fn top(mut stats: Vec<Stat>, limit: usize) -> Vec<Stat> {
    stats.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    stats.truncate(limit);
    stats
}

impl Storage {
    /// One pass over `tenant`'s postings.
    pub fn cardinality(&self, tenant: TenantId, limit: usize) -> Result<Cardinality> {
        let prefix = keys::postings_prefix(tenant);
        let index = self.cf(keys::CF_INDEX);
        let (mut by_metric, mut values, mut bytes, mut pairs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut label_pairs = 0;
        // The label name being counted: (name, values, bytes).
        let mut current: Option<(String, u64, u64)> = None;
        let mut flush = |current: &mut Option<(String, u64, u64)>| {
            if let Some((name, n, b)) = current.take() {
                values.push(Stat { name: name.clone(), count: n });
                bytes.push(Stat { name, count: b });
            }
        };
        for item in self.db.iterator_cf(index, IteratorMode::From(&prefix, Direction::Forward)) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            let Some((name, value)) = keys::split_postings(&k, prefix.len()) else { break };
            if name.is_empty() {
                continue;
            }
            let (name, value) = (String::from_utf8_lossy(name).into_owned(), String::from_utf8_lossy(value));
            let series = decode_postings(&v)?.len();
            if current.as_ref().is_none_or(|(n, _, _)| *n != name) {
                flush(&mut current);
                current = Some((name.clone(), 0, 0));
            }
            let (_, n, b) = current.as_mut().expect("set just above");
            *n += 1;
            *b += value.len() as u64 * series;
            label_pairs += 1;
            if name == crate::labels::METRIC_NAME {
                by_metric.push(Stat { name: value.to_string(), count: series });
            }
            pairs.push(Stat { name: format!("{name}={value}"), count: series });
        }
        flush(&mut current);
        Ok(Cardinality {
            series: self.series_count(tenant)?,
            label_pairs,
            series_by_metric_name: top(by_metric, limit),
            values_by_label_name: top(values, limit),
            value_bytes_by_label_name: top(bytes, limit),
            series_by_label_pair: top(pairs, limit),
        })
    }
}
