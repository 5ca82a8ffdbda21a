//! The compactor against a real Ceph RADOS Gateway: a day of two-hour windows uploaded by an
//! Amber, compacted by a separate `--role compactor` process that is killed with `kill -9` while
//! it compacts and started again. Through all of it a bucket-only querier answers exactly as a
//! single-node Amber holding the same data does (PromQL, exemplars, trace lookups, series,
//! labels): nothing lost, nothing doubled; at the end the day is one entry of the bucket index.

mod common;

use std::time::Duration;

use amber_storage::objstore::{Bucket, ObjectStorage};
use common::ceph::Ceph;
use common::{Amber, ExemplarSpec, eventually, request, series, urlencode};
use serde_json::Value;

const DAY_MS: i64 = 24 * 3600 * 1000;
const PREFIX: &str = "compactor-test";

fn bucket_flags(ceph: &Ceph) -> Vec<String> {
    ceph.amber_flags(PREFIX)
}

/// The questions asked over `[start, end]` seconds.
fn questions(start: i64, end: i64, trace_ids: &[String]) -> Vec<String> {
    let range = |q: &str| format!("/api/v1/query_range?query={}&start={start}&end={end}&step=600", urlencode(q));
    let mut out: Vec<String> =
        ["http_requests_total", "sum by (job) (rate(http_requests_total[10m]))", "count_over_time(up[1h])"]
            .into_iter()
            .map(range)
            .collect();
    out.push(format!("/api/v1/query?query={}&time={end}", urlencode("sum_over_time(http_requests_total[1d])")));
    let sel = urlencode("{__name__=~\"http_requests_total|up\"}");
    out.push(format!("/api/v1/query_exemplars?query={sel}&start={start}&end={end}"));
    out.push(format!("/api/v1/series?match[]={sel}&start={start}&end={end}"));
    out.push(format!("/api/v1/labels?start={start}&end={end}"));
    out.push(format!("/api/v1/label/job/values?start={start}&end={end}"));
    out.extend(trace_ids.iter().map(|t| format!("/api/v1/exemplars/trace/{t}")));
    out
}

fn assert_same(what: &str, amber: &Amber, questions: &[String], want: &[Value]) {
    for (q, w) in questions.iter().zip(want) {
        assert_eq!(&amber.data(q), w, "{what}: {q}");
    }
}

/// The bucket as the test sees it, through Amber's own client.
struct BucketView {
    bucket: Bucket,
    runtime: tokio::runtime::Runtime,
}

impl BucketView {
    fn keys(&self) -> Vec<String> {
        self.runtime.block_on(self.bucket.list("")).unwrap().into_iter().map(|o| o.key).collect()
    }

    /// The default tenant's index entries as `(start, end)`.
    fn windows(&self) -> Vec<(i64, i64)> {
        let index = self.runtime.block_on(amber_storage::upload::index::read(&self.bucket, "anonymous")).unwrap();
        index.windows.iter().map(|w| (w.start, w.end)).collect()
    }

    /// Objects the index names that are missing from the bucket.
    fn missing(&self) -> Vec<String> {
        let index = self.runtime.block_on(amber_storage::upload::index::read(&self.bucket, "anonymous")).unwrap();
        let keys = self.keys();
        index.windows.into_iter().map(|w| w.object).filter(|o| !keys.contains(o)).collect()
    }
}

#[test]
fn a_compactor_killed_while_compacting_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ceph = Ceph::start(&dir.path().join("ceph"));
    // The ingester uploads but does not compact: the compactor is the separate process.
    let ingester_flags: Vec<String> = bucket_flags(&ceph)
        .into_iter()
        .chain(["--enable-admin-api", "--maintenance-interval", "1s", "--compaction-interval", "0s"].map(String::from))
        .collect();
    let ingester = Amber::start_in(&dir.path().join("ingester"), &ingester_flags);
    let reference = Amber::start_in(&dir.path().join("reference"), &[]);

    // The UTC day before yesterday, a sample a minute, an exemplar with a trace id every 3 hours.
    let day = common::now_ms().div_euclid(DAY_MS) * DAY_MS - 2 * DAY_MS;
    let steps: Vec<i64> = (0..24 * 60).map(|i| day + i * 60_000).collect();
    let traces: Vec<String> = (0..8).map(|i| format!("{:032x}", 0xfeed0 + i)).collect();
    let labels: Vec<[(&str, &str); 1]> = traces.iter().map(|t| [("trace_id", t.as_str())]).collect();
    let mut ts = Vec::new();
    for (job, rate) in [("api", 3.0), ("web", 7.0)] {
        let points: Vec<(i64, f64)> = steps.iter().map(|&t| (t, ((t - day) / 60_000) as f64 * rate)).collect();
        let exemplars: Vec<ExemplarSpec<'_>> = if job == "api" {
            labels.iter().enumerate().map(|(i, l)| (day + i as i64 * 3 * 3_600_000 + 60_000, 0.5, &l[..])).collect()
        } else {
            vec![]
        };
        ts.push(series(&[("__name__", "http_requests_total"), ("job", job)], &points, &exemplars));
    }
    let up: Vec<(i64, f64)> = steps.iter().map(|&t| (t, 1.0)).collect();
    ts.push(series(&[("__name__", "up"), ("job", "api")], &up, &[]));
    let all = request(ts);
    for amber in [&ingester, &reference] {
        let (code, body) = amber.write(&all);
        assert_eq!(code, 204, "{body}");
    }
    let r = reqwest::blocking::Client::new().post(ingester.url("/api/v1/admin/tsdb/seal")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    eventually("the day's twelve windows uploaded", Duration::from_secs(120), || {
        let uploaded = ingester.metric("amber_upload_block_files_total").unwrap_or(0.0);
        (uploaded >= 12.0 && ingester.metric("amber_upload_pending_windows") == Some(0.0)).then_some(())
    });

    let view = BucketView {
        bucket: Bucket::open(&ceph.bucket_config(PREFIX)).unwrap(),
        runtime: tokio::runtime::Runtime::new().unwrap(),
    };
    let windows: Vec<(i64, i64)> = (0..12).map(|i| (day + i * 7_200_000, day + (i + 1) * 7_200_000)).collect();
    assert_eq!(view.windows(), windows);

    let qs = questions(day / 1000, (day + DAY_MS) / 1000 - 1, &traces);
    let want: Vec<Value> = qs.iter().map(|q| reference.data(q)).collect();
    let found = want.iter().filter(|v| v.as_array().is_none_or(|a| !a.is_empty())).count();
    assert_eq!(found, want.len(), "the reference answers every question with something: {want:#?}");
    let querier_flags: Vec<String> =
        bucket_flags(&ceph).into_iter().chain(["--role".into(), "querier".into()]).collect();
    let querier = Amber::start_in(&dir.path().join("querier"), &querier_flags);
    assert_same("querier before compaction", &querier, &qs, &want);

    let compactor_flags: Vec<String> = bucket_flags(&ceph)
        .into_iter()
        .chain(["--role", "compactor", "--compaction-interval", "1s"].map(String::from))
        .collect();
    let mut compactor = Amber::start_in(&dir.path().join("compactor"), &compactor_flags);
    // Killed the moment its merged file is in the bucket: before, during or after its commit.
    eventually("the compacted file put", Duration::from_secs(60), || {
        view.keys().iter().any(|k| k.starts_with("anonymous/windows/") && k.contains('_')).then_some(())
    });
    compactor.kill9();
    let after_kill = view.windows();
    assert!(after_kill == windows || after_kill == [(day, day + DAY_MS)], "old index or new: {after_kill:?}");
    assert_eq!(view.missing(), Vec::<String>::new(), "the index names only objects that exist");
    assert_same("querier after the compactor's kill -9", &querier, &qs, &want);

    // Restarted (a new holder: it takes the lease once the killed one's expires), it finishes.
    compactor.restart();
    eventually("the day compacted into one window", Duration::from_secs(120), || {
        (view.windows() == [(day, day + DAY_MS)]).then_some(())
    });
    assert_eq!(view.missing(), Vec::<String>::new());
    assert_same("querier after compaction", &querier, &qs, &want);
    eventually("the lease held and counted on /metrics", Duration::from_secs(30), || {
        (compactor.metric("amber_compactor_lease_held") == Some(1.0)).then_some(())
    });
    let block_files = view.keys().iter().filter(|k| k.ends_with(".block")).count();
    // The merged file, plus (killed between commit and delete) old ones kept for the orphan grace.
    assert!((1..=13).contains(&block_files), "{:?}", view.keys());

    // A second compactor does not get the lease while the first renews it.
    let second = Amber::start_in(&dir.path().join("second"), &compactor_flags);
    eventually("the second compactor's first pass", Duration::from_secs(30), || {
        second.metric("amber_object_store_requests_total{operation=\"get\"}").filter(|&n| n >= 1.0)
    });
    assert_eq!(second.metric("amber_compactor_lease_held"), Some(0.0));
    assert_eq!(second.metric("amber_compaction_windows_merged_total"), Some(0.0));
    assert_same("querier at the end", &querier, &qs, &want);
}
