//! Sealed windows in a real S3 store: a one-node Ceph with the RADOS Gateway
//! (`scripts/ceph-start.sh`, memstore), Amber uploading to it. Checks the bucket through the
//! block-file reader (series, samples, exemplars, the trace filter), `kill -9` of Amber while it
//! uploads (the index stays consistent, nothing duplicated), and a gateway outage under ingest
//! (writes keep succeeding, windows wait on /metrics, uploads catch up).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use amber_storage::blockfile::{BlockFileReader, TraceEntry};
use amber_storage::objstore::{Bucket, ObjectStorage};
use amber_storage::upload::index::{self, BucketIndex};
use amber_storage::{Label, Labels, Sample};
use common::ceph::Ceph;
use common::{Amber, eventually, request, series};

/// A block file's series, each with its samples and its exemplars' (timestamp, trace id).
type WindowData = BTreeMap<Labels, (Vec<Sample>, Vec<(i64, String)>)>;

const BLOCK_MS: i64 = 2 * 3600 * 1000;
const TENANT: &str = "anonymous";

/// The bucket as the test reads it: the same client and reader a querier would use.
struct View {
    rt: tokio::runtime::Runtime,
    bucket: Bucket,
}

impl View {
    fn new(ceph: &Ceph) -> View {
        let bucket = Bucket::open(&ceph.bucket_config("cluster-1")).unwrap();
        View { rt: tokio::runtime::Runtime::new().unwrap(), bucket }
    }

    fn keys(&self) -> Vec<String> {
        self.rt.block_on(self.bucket.list("")).unwrap().into_iter().map(|o| o.key).collect()
    }

    fn index(&self) -> BucketIndex {
        self.rt.block_on(index::read(&self.bucket, TENANT)).unwrap()
    }

    /// Every series of the window's block file with its samples and exemplars' trace ids.
    fn window(&self, object: &str, bytes: u64) -> WindowData {
        self.rt.block_on(async {
            let r = BlockFileReader::open(&self.bucket, object, bytes).await.unwrap();
            let mut out = BTreeMap::new();
            for (ordinal, labels) in r.series().await.unwrap().into_iter().enumerate() {
                let samples = r.samples(ordinal as u32).await.unwrap();
                let exemplars = r.exemplars(ordinal as u32).await.unwrap();
                let traces = exemplars.iter().map(|e| (e.ts, e.labels.get("trace_id").unwrap().to_string())).collect();
                out.insert(labels, (samples, traces));
            }
            out
        })
    }

    /// The index names, for each window, exactly the one block file stored under it, and every
    /// object in the bucket is either an index or such a file.
    fn assert_consistent(&self) -> BucketIndex {
        let idx = self.index();
        let mut expected = vec![format!("{TENANT}/index.json")];
        expected.extend(idx.windows.iter().map(|w| w.object.clone()));
        expected.sort();
        assert_eq!(self.keys(), expected, "bucket objects against the index {idx:#?}");
        for w in &idx.windows {
            assert!(w.object.starts_with(&format!("{TENANT}/windows/{}/", w.start)), "{w:?}");
            assert_eq!(w.end, w.start + BLOCK_MS);
        }
        idx
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_unsorted(pairs.iter().map(|(n, v)| Label::new(*n, *v)).collect())
}

/// Amber with the object store on; credentials and region come from the standard AWS variables
/// (see [`set_aws_environment`]), as in a user's environment.
fn start_amber(dir: &Path, ceph: &Ceph) -> Amber {
    std::fs::create_dir_all(dir).unwrap();
    Amber::start(
        dir,
        &[
            "--enable-admin-api",
            "--object-store-url",
            "s3://amber/cluster-1",
            "--object-store-endpoint",
            &ceph.endpoint(),
            "--object-store-allow-http",
        ],
    )
}

/// The AWS variables Amber's processes inherit from the test.
fn set_aws_environment() {
    for (k, v) in [("AWS_ACCESS_KEY_ID", "AK"), ("AWS_SECRET_ACCESS_KEY", "SK"), ("AWS_REGION", "us-east-1")] {
        // SAFETY: called first thing in the only test of this binary, before it starts any thread.
        unsafe { std::env::set_var(k, v) };
    }
}

fn seal(amber: &Amber) {
    let r = reqwest::blocking::Client::new().post(amber.url("/api/v1/admin/tsdb/seal")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap());
}

fn pending(amber: &Amber) -> f64 {
    amber.metric("amber_upload_pending_windows").expect("amber_upload_pending_windows on /metrics")
}

/// Waits until no window is pending; on timeout, shows Amber's log.
fn wait_for_uploads(amber: &Amber, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while pending(amber) > 0.0 {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}:\n{}", amber.log_tail());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sample(ts: i64, value: f64) -> Sample {
    Sample { ts, value, start_ts: amber_storage::NO_START }
}

#[test]
fn sealed_windows_reach_ceph_survive_crashes_and_outages() {
    set_aws_environment();
    let dir = tempfile::tempdir().unwrap();
    let mut ceph = Ceph::start(&dir.path().join("ceph"));
    let view = View::new(&ceph);
    let mut amber = start_amber(&dir.path().join("amber"), &ceph);

    // Two series in one sealed window; one carries exemplars with trace ids.
    let now = common::now_ms();
    let w0 = (now - 4 * 3600 * 1000).div_euclid(BLOCK_MS) * BLOCK_MS;
    let trace_a = "4bf92f3577b34da6a3ce929d0e0e4736";
    let trace_b = "00f067aa0ba902b7";
    let api: Vec<(i64, f64)> = (0..20).map(|i| (w0 + i * 15_000, i as f64)).collect();
    let web: Vec<(i64, f64)> = (0..5).map(|i| (w0 + i * 60_000, 100.0 + i as f64)).collect();
    let ex_a: [(&str, &str); 1] = [("trace_id", trace_a)];
    let ex_b: [(&str, &str); 1] = [("trace_id", trace_b)];
    let req = request(vec![
        series(
            &[("__name__", "http_requests_total"), ("job", "api")],
            &api,
            &[(w0 + 15_000, 1.0, &ex_a), (w0 + 30_000, 2.0, &ex_b)],
        ),
        series(&[("__name__", "http_requests_total"), ("job", "web")], &web, &[]),
    ]);
    assert_eq!(amber.write(&req).0, 204);
    seal(&amber);
    let idx = eventually("the window in the bucket index", Duration::from_secs(60), || {
        let idx = view.index();
        (idx.windows.len() == 1).then_some(idx)
    });
    eventually("no pending windows", Duration::from_secs(30), || (pending(&amber) == 0.0).then_some(()));
    let w = &idx.windows[0];
    assert_eq!(
        (w.start, w.min_ts, w.max_ts, w.series, w.samples, w.histograms, w.exemplars, w.traces),
        (w0, w0, w0 + 19 * 15_000, 2, 25, 0, 2, 2)
    );
    assert_eq!(view.assert_consistent(), idx);
    let got = view.window(&w.object, w.bytes);
    let want: WindowData = [
        (
            labels(&[("__name__", "http_requests_total"), ("job", "api")]),
            (
                api.iter().map(|&(t, v)| sample(t, v)).collect(),
                vec![(w0 + 15_000, trace_a.to_string()), (w0 + 30_000, trace_b.to_string())],
            ),
        ),
        (
            labels(&[("__name__", "http_requests_total"), ("job", "web")]),
            (web.iter().map(|&(t, v)| sample(t, v)).collect(), vec![]),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want);
    view.rt.block_on(async {
        let r = BlockFileReader::open(&view.bucket, &w.object, w.bytes).await.unwrap();
        assert_eq!(
            r.trace(trace_a).await.unwrap(),
            [TraceEntry { trace_id: trace_a.into(), ordinal: 0, ts: w0 + 15_000 }]
        );
        assert!(!r.may_contain_trace("0af7651916cd43dd8448eb211c80319c").await.unwrap());
    });
    assert!(amber.metric("amber_upload_bytes_total").unwrap() >= w.bytes as f64);

    // kill -9 while uploading: each round adds a series to six more windows and kills Amber as
    // soon as the first of the round's block files is in the bucket.
    let windows: Vec<i64> = (0..6).map(|i| w0 - (i + 1) * BLOCK_MS).collect();
    let mut written: BTreeMap<i64, BTreeMap<Labels, Vec<Sample>>> = BTreeMap::new();
    let mut caught_mid_upload = 0;
    for round in 0..3 {
        let before = view.keys();
        let name = format!("crash_round_{round}");
        let points: Vec<(i64, f64)> = windows
            .iter()
            .rev()
            .flat_map(|&w| (0..30).map(move |i| (w + i * 10_000, (round * 1000 + i) as f64)))
            .collect();
        for (t, v) in &points {
            let l = labels(&[("__name__", &name)]);
            written.entry(t.div_euclid(BLOCK_MS) * BLOCK_MS).or_default().entry(l).or_default().push(sample(*t, *v));
        }
        assert_eq!(amber.write(&request(vec![series(&[("__name__", &name)], &points, &[])])).0, 204);
        seal(&amber);
        eventually("a block file of this round", Duration::from_secs(60), || {
            view.keys().iter().any(|k| !before.contains(k) && k.ends_with(".block")).then_some(())
        });
        amber.kill9();
        let still_pending = {
            let s = amber_storage::Storage::open(&amber.data_dir, amber_storage::Options::default()).unwrap();
            s.pending_uploads(common::now_ms()).unwrap().len()
        };
        if still_pending > 0 {
            caught_mid_upload += 1;
        }
        amber.restart();
    }
    assert!(caught_mid_upload > 0, "no kill landed while windows were still waiting for upload");
    wait_for_uploads(&amber, "uploads to finish after the crashes");
    let idx = view.assert_consistent();
    assert_eq!(
        idx.windows.iter().map(|w| w.start).collect::<Vec<_>>(),
        [windows.iter().rev().copied().collect(), vec![w0]].concat()
    );
    for w in idx.windows.iter().filter(|w| w.start != w0) {
        let got: BTreeMap<Labels, Vec<Sample>> =
            view.window(&w.object, w.bytes).into_iter().map(|(l, (s, _))| (l, s)).collect();
        assert_eq!(got, written[&w.start], "window {}", w.start);
        assert_eq!((w.series, w.samples), (3, 90));
    }

    // The gateway goes away under ingest: writes are still acknowledged, sealed windows wait.
    ceph.stop_gateway();
    let outage_w = w0 - 8 * BLOCK_MS;
    let outage: Vec<(i64, f64)> = (0..40).map(|i| (outage_w + i * 30_000, i as f64)).collect();
    for chunk in outage.chunks(10) {
        assert_eq!(amber.write(&request(vec![series(&[("__name__", "during_outage")], chunk, &[])])).0, 204);
    }
    seal(&amber);
    eventually("the outage window counted as pending", Duration::from_secs(30), || {
        (pending(&amber) > 0.0).then_some(())
    });
    eventually("a failed upload counted", Duration::from_secs(60), || {
        (amber.metric("amber_upload_failures_total").unwrap_or(0.0) > 0.0).then_some(())
    });
    let (code, _) = amber.write(&request(vec![series(&[("__name__", "during_outage")], &[(now - 1000, 1.0)], &[])]));
    assert_eq!(code, 204);
    ceph.start_gateway();
    wait_for_uploads(&amber, "uploads to catch up after the outage");
    let idx = view.assert_consistent();
    let w = idx.windows.iter().find(|w| w.start == outage_w).expect("the outage window in the index");
    let got = view.window(&w.object, w.bytes);
    assert_eq!(
        got[&labels(&[("__name__", "during_outage")])].0,
        outage.iter().map(|&(t, v)| sample(t, v)).collect::<Vec<_>>()
    );
    amber.stop();
}
