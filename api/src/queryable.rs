//! The PromQL engine's storage trait over Amber's store, for one tenant.

use std::sync::Arc;

use amber_promql::{Labels, MatchOp as PromMatchOp, Matcher as PromMatcher, Point, Queryable, Series};
use amber_storage::{MatchOp, Matcher, Storage, TenantId};

pub struct TenantQueryable {
    pub storage: Arc<Storage>,
    /// `None` for a tenant that never wrote: it sees no series.
    pub tenant: Option<TenantId>,
}

fn convert(m: &PromMatcher) -> Matcher {
    let op = match &m.op {
        PromMatchOp::Equal => MatchOp::Equal,
        PromMatchOp::NotEqual => MatchOp::NotEqual,
        PromMatchOp::Regex(re) => MatchOp::Regex(re.clone()),
        PromMatchOp::NotRegex(re) => MatchOp::NotRegex(re.clone()),
    };
    Matcher { name: m.name.clone(), op, value: m.value.clone() }
}

impl Queryable for TenantQueryable {
    fn select(&self, matchers: &[PromMatcher], mint: i64, maxt: i64) -> Result<Vec<Series>, String> {
        let Some(tenant) = self.tenant else { return Ok(Vec::new()) };
        let matchers: Vec<Matcher> = matchers.iter().map(convert).collect();
        let found = self.storage.select_labels(tenant, &[matchers], mint, maxt).map_err(|e| e.to_string())?;
        let ids: Vec<_> = found.iter().map(|(id, _)| *id).collect();
        let samples = self.storage.samples_of(&ids, mint, maxt).map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(found.len());
        for ((_, labels), samples) in found.into_iter().zip(samples) {
            let points: Vec<Point> = samples.into_iter().map(|s| Point { t: s.ts, v: s.value }).collect();
            if points.is_empty() {
                continue;
            }
            let labels = Labels::new(labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect());
            out.push(Series { labels, points, drop_name: false });
        }
        Ok(out)
    }
}
