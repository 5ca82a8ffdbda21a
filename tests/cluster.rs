//! Past one machine, at the wire: a real three-member etcd holding the ring, three (then four)
//! `--role ingester` Ambers registered on it, a `--role distributor` taking remote writes and a
//! `--role querier` reading the ring, with a single-node Amber receiving the same writes as the
//! reference. A writer sends batches of samples, a native histogram and exemplars to the
//! distributor the whole time, while an ingester is killed with `kill -9` and restarted, the
//! etcd leader is killed, a fourth ingester joins and one leaves. Every write gets a 2xx, and the
//! querier answers every question exactly as the reference does: each acknowledged sample and
//! exemplar once.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::ceph::Ceph;
use common::etcd::EtcdCluster;
use common::native_histograms::Shape;
use common::{Amber, RW1_HEADERS, answers, assert_same, encode, eventually, histogram_series, series, urlencode};
use serde_json::Value;

const SERIES: usize = 12;

/// How many counter series hold samples of the last hour (the load writes ten minutes back).
const SERIES_NOW: &str = "count(count_over_time(cluster_requests_total[1h]))";

/// The ring flags of every role: the etcd cluster, and a short lease so that a killed
/// ingester leaves the ring within seconds.
fn ring_flags(etcd: &EtcdCluster, role: &str) -> Vec<String> {
    ["--role", role, "--etcd-endpoints", &etcd.endpoints().join(","), "--ring-lease-ttl", "3s"]
        .into_iter()
        .map(str::to_string)
        .collect()
}

fn start_ingester(root: &Path, etcd: &EtcdCluster, n: usize) -> Amber {
    let mut args = ring_flags(etcd, "ingester");
    args.extend(["--instance-id".to_string(), format!("ingester-{n}")]);
    Amber::start_in(&root.join(format!("ingester-{n}")), &args)
}

/// The ring as `amber` sees it: (id, state) of each member.
fn ring_of(amber: &Amber) -> Vec<(String, String)> {
    let data = amber.data("/api/v1/status/ring");
    let members = data["members"].as_array().unwrap();
    members.iter().map(|m| (m["id"].as_str().unwrap().to_string(), m["state"].as_str().unwrap().to_string())).collect()
}

fn wait_for_ring(amber: &Amber, want: &[(&str, &str)]) {
    let want: Vec<(String, String)> = want.iter().map(|(i, s)| (i.to_string(), s.to_string())).collect();
    eventually(&format!("the ring to be {want:?}"), Duration::from_secs(60), || (ring_of(amber) == want).then_some(()));
}

/// Batch `k` of the load: one sample of each counter series at `t0 + k` seconds, an exemplar on
/// each, one native histogram sample.
fn batch(t0: i64, k: u64) -> Vec<u8> {
    let ts = t0 + k as i64 * 1000;
    let mut timeseries: Vec<_> = (0..SERIES)
        .map(|s| {
            let instance = format!("i{s}");
            let trace = format!("{k:016x}{s:016x}");
            series(
                &[("__name__", "cluster_requests_total"), ("instance", &instance), ("job", "api")],
                &[(ts, (k * (s as u64 + 1)) as f64)],
                &[(ts, 0.25, &[("trace_id", &trace)])],
            )
        })
        .collect();
    let shape = Shape::ALL[0];
    timeseries.push(histogram_series(
        &[("__name__", "cluster_latency_seconds"), ("job", "api")],
        &[(ts, &shape.at(k), shape.is_integer())],
        &[],
    ));
    encode(&common::request(timeseries))
}

/// Sends batches to the distributor and the reference until stopped, or until one of them
/// refuses a batch: every batch must be acknowledged by both. Counts the batches sent.
struct Load {
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl Load {
    fn start(distributor: &Amber, reference: &Amber, t0: i64) -> Load {
        let (sent, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let urls = [distributor.url("/api/v1/write"), reference.url("/api/v1/write")];
        let (counter, stopping) = (sent.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
            let mut k = 0;
            while !stopping.load(Ordering::SeqCst) {
                let body = batch(t0, k);
                for url in &urls {
                    let mut request = http.post(url);
                    for (name, value) in RW1_HEADERS {
                        request = request.header(name, value);
                    }
                    match request.body(body.clone()).send() {
                        Ok(r) if r.status().is_success() => {}
                        Ok(r) => return Err(format!("batch {k} to {url}: {} {}", r.status(), r.text().unwrap())),
                        Err(e) => return Err(format!("batch {k} to {url}: {e}")),
                    }
                }
                k += 1;
                counter.store(k, Ordering::SeqCst);
            }
            Ok(())
        });
        Load { sent, stop, thread: Some(thread) }
    }

    /// Waits until `n` more batches were acknowledged than now.
    fn wait_for(&mut self, n: u64) {
        let target = self.sent.load(Ordering::SeqCst) + n;
        eventually(&format!("batch {target} to be acknowledged"), Duration::from_secs(300), || {
            if self.thread.as_ref().unwrap().is_finished() {
                panic!("a write was refused: {:?}", self.thread.take().unwrap().join().unwrap());
            }
            (self.sent.load(Ordering::SeqCst) >= target).then_some(())
        });
    }

    /// Stops the writer; asserts every batch was acknowledged. Returns how many were.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        let result = self.thread.take().unwrap().join().unwrap();
        assert_eq!(result, Ok(()), "a write was refused");
        self.sent.load(Ordering::SeqCst)
    }
}

/// Every question the test asks over the load's `[start, end]` seconds.
fn questions(start: i64, end: i64, batches: u64) -> Vec<String> {
    let range = |q: &str| format!("/api/v1/query_range?query={}&start={start}&end={end}&step=5", urlencode(q));
    let mut out: Vec<String> = [
        "cluster_requests_total",
        "sum by (job) (rate(cluster_requests_total[30s]))",
        "histogram_quantile(0.9, rate(cluster_latency_seconds[30s]))",
    ]
    .into_iter()
    .map(range)
    .collect();
    // Raw samples: a lost or doubled sample shows here.
    let window = end - start + 1;
    for q in [format!("cluster_requests_total[{window}s]"), format!("cluster_latency_seconds[{window}s]")] {
        out.push(format!("/api/v1/query?query={}&time={end}", urlencode(&q)));
    }
    out.push(format!("/api/v1/query?query={}&time={end}", urlencode("count(cluster_requests_total)")));
    let sel = urlencode("cluster_requests_total");
    out.push(format!("/api/v1/query_exemplars?query={sel}&start={start}&end={end}"));
    out.push(format!("/api/v1/series?match[]={sel}&start={start}&end={end}"));
    out.push(format!("/api/v1/labels?start={start}&end={end}"));
    out.push(format!("/api/v1/label/instance/values?start={start}&end={end}"));
    for k in [0, batches / 2, batches - 1] {
        out.push(format!("/api/v1/exemplars/trace/{k:016x}{:016x}", SERIES - 1));
    }
    out
}

/// The querier answers as the reference does, and the raw samples number exactly the batches.
fn assert_cluster_answers_as_one_node(querier: &Amber, reference: &Amber, t0: i64, batches: u64) {
    let (start, end) = (t0 / 1000, t0 / 1000 + batches as i64 - 1);
    let questions = questions(start, end, batches);
    let want = answers(reference, &questions);
    assert_same("querier over the ring", &answers(querier, &questions), &want);
    let raw: &Value = &want[3].1["result"];
    for s in raw.as_array().unwrap() {
        assert_eq!(s["values"].as_array().unwrap().len() as u64, batches, "{}", s["metric"]);
    }
    assert_eq!(raw.as_array().unwrap().len(), SERIES);
}

/// The ring of three ingesters, all active.
const THREE: [(&str, &str); 3] = [("ingester-0", "active"), ("ingester-1", "active"), ("ingester-2", "active")];

/// A 3-member etcd, three ingesters on it, a distributor and a querier that see all three, and
/// the single-node reference.
struct Cluster {
    etcd: EtcdCluster,
    ingesters: Vec<Amber>,
    distributor: Amber,
    querier: Amber,
    reference: Amber,
}

impl Cluster {
    fn start(root: &Path) -> Cluster {
        let etcd = EtcdCluster::start(&root.join("etcd"), 3);
        let ingesters: Vec<Amber> = (0..3).map(|n| start_ingester(root, &etcd, n)).collect();
        let distributor = Amber::start_in(&root.join("distributor"), &ring_flags(&etcd, "distributor"));
        let querier = Amber::start_in(&root.join("querier"), &ring_flags(&etcd, "querier"));
        let reference = Amber::start_in(&root.join("reference"), &[]);
        wait_for_ring(&distributor, &THREE);
        wait_for_ring(&querier, &THREE);
        Cluster { etcd, ingesters, distributor, querier, reference }
    }
}

#[test]
fn kill_9_of_an_ingester_under_load_loses_nothing_and_the_cluster_answers_as_one_node() {
    let dir = tempfile::tempdir().unwrap();
    let Cluster { etcd: _etcd, mut ingesters, distributor, querier, reference } = Cluster::start(dir.path());
    let three = THREE;

    let t0 = common::now_ms() - 600_000;
    let mut load = Load::start(&distributor, &reference, t0);
    load.wait_for(20);
    ingesters[1].kill9();
    // Its lease runs out: it leaves the ring on its own, and writes go on to the other two.
    wait_for_ring(&distributor, &[three[0], three[2]]);
    load.wait_for(20);
    // Reads go on without it too.
    let count = querier.data(&format!("/api/v1/query?query={}", urlencode(SERIES_NOW)));
    assert_eq!(count["result"][0]["value"][1], SERIES.to_string(), "{count}");
    // Writes sent to it while its lease ran are counted as missed there, and none elsewhere.
    let writes = |ingester: &str, outcome: &str| {
        distributor
            .metric(&format!(
                "amber_distributor_ingester_writes_total{{ingester=\"{ingester}\",outcome=\"{outcome}\"}}"
            ))
            .unwrap_or(0.0)
    };
    assert!(writes("ingester-1", "missed") > 0.0, "{}", distributor.get("/metrics").1);
    assert_eq!((writes("ingester-0", "missed"), writes("ingester-2", "missed")), (0.0, 0.0));
    assert!(writes("ingester-0", "durable") > 0.0 && writes("ingester-2", "durable") > 0.0);
    ingesters[1].restart();
    wait_for_ring(&distributor, &three);
    load.wait_for(20);
    let batches = load.finish();
    assert_cluster_answers_as_one_node(&querier, &reference, t0, batches);

    // Metadata in a request of its own, as Prometheus sends it, reaches the ingesters.
    let metadata = amber_api::prompb::WriteRequest {
        timeseries: Vec::new(),
        metadata: vec![amber_api::prompb::MetricMetadata {
            r#type: amber_api::prompb::metric_metadata::MetricType::Counter as i32,
            metric_family_name: "cluster_requests_total".into(),
            help: "Requests served.".into(),
            unit: String::new(),
        }],
    };
    for amber in [&distributor, &reference] {
        let (status, body) = amber.write(&metadata);
        assert_eq!(status, 204, "{body}");
    }
    let want = reference.data("/api/v1/metadata");
    assert_eq!(want["cluster_requests_total"][0]["help"], "Requests served.", "{want}");
    assert_eq!(querier.data("/api/v1/metadata"), want);

    // A sample every replica refuses (two hours before its series' newest, past the
    // out-of-order window) is a 400 naming it once; the valid rest of the write is stored.
    let old = series(
        &[("__name__", "cluster_requests_total"), ("instance", "i0"), ("job", "api")],
        &[(t0 - 7_200_000, 1.0)],
        &[],
    );
    let fresh = series(&[("__name__", "cluster_fresh"), ("job", "api")], &[(t0, 1.0)], &[]);
    let (status, body) = distributor.write(&common::request(vec![old, fresh]));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body.matches("instance=\"i0\"").count(), 1, "{body}");
    assert!(body.starts_with("1 samples and 0 exemplars rejected; 1 samples and 0 exemplars written. "), "{body}");
    let fresh = querier.data(&format!("/api/v1/query?query={}", urlencode("count_over_time(cluster_fresh[1h])")));
    assert_eq!(fresh["result"][0]["value"][1], "1", "{fresh}");
}

#[test]
fn the_cluster_rides_out_an_etcd_leader_kill_and_ingesters_joining_and_leaving() {
    let dir = tempfile::tempdir().unwrap();
    let Cluster { mut etcd, mut ingesters, distributor, querier, reference } = Cluster::start(dir.path());
    let three = THREE;

    let t0 = common::now_ms() - 600_000;
    let mut load = Load::start(&distributor, &reference, t0);
    load.wait_for(10);
    // No request touches etcd: writes and reads go on while it elects a new leader, and the
    // ingesters' leases survive it.
    let leader = etcd.leader();
    etcd.kill(leader);
    load.wait_for(20);
    let count = querier.data(&format!("/api/v1/query?query={}", urlencode(SERIES_NOW)));
    assert_eq!(count["result"][0]["value"][1], SERIES.to_string(), "{count}");
    etcd.restart(leader);
    assert_eq!(ring_of(&distributor), three.map(|(i, s)| (i.to_string(), s.to_string())));

    // A fourth ingester joins and takes its share of the series.
    ingesters.push(start_ingester(dir.path(), &etcd, 3));
    let four = [three[0], three[1], three[2], ("ingester-3", "active")];
    wait_for_ring(&distributor, &four);
    wait_for_ring(&querier, &four);
    let newcomer = &ingesters[3];
    let query = format!("/api/v1/query?query={}", urlencode(SERIES_NOW));
    eventually("the new ingester to receive series", Duration::from_secs(60), || {
        newcomer.data(&query)["result"].as_array().is_some_and(|r| !r.is_empty()).then_some(())
    });
    // One leaves gracefully: a clean exit, and its entry gone from the ring.
    ingesters[0].stop();
    wait_for_ring(&distributor, &[four[1], four[2], four[3]]);
    load.wait_for(20);
    let batches = load.finish();
    assert_cluster_answers_as_one_node(&querier, &reference, t0, batches);
}

/// A distributor or querier told another replication factor than the one the ring's writes use
/// refuses to start, naming both: a querier allowing more replicas to miss than the writes'
/// quorum leaves would answer with holes instead of failing.
#[test]
fn a_replication_factor_other_than_the_rings_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdCluster::start(&dir.path().join("etcd"), 1);
    let with_rf = |role: &str, rf: &str| {
        let mut flags = ring_flags(&etcd, role);
        flags.extend(["--replication-factor".to_string(), rf.to_string()]);
        flags
    };
    // The first records its factor; the same one is agreed to.
    let _distributor = Amber::start_in(&dir.path().join("distributor"), &with_rf("distributor", "3"));
    let _querier = Amber::start_in(&dir.path().join("querier"), &with_rf("querier", "3"));

    let data_dir = dir.path().join("other-querier");
    let listen = format!("127.0.0.1:{}", common::free_port());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_amber"))
        .args(with_rf("querier", "1"))
        .args(["--listen", &listen, "--otlp-grpc-listen", ""])
        .arg("--data-dir")
        .arg(&data_dir)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status =
        eventually("the querier with another factor to exit", Duration::from_secs(60), || child.try_wait().unwrap());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    let endpoints = etcd.endpoints().join(",");
    assert!(
        stderr.contains(&format!(
            "the replication factor here is 1, but the ring in etcd at {endpoints} is written with 3 (amber/ring.replication-factor)"
        )),
        "{stderr}"
    );
}

/// The bucket the ingesters upload to, as the test reads it: through Amber's own client.
struct BucketView {
    bucket: amber_storage::objstore::Bucket,
    runtime: tokio::runtime::Runtime,
}

impl BucketView {
    fn open(ceph: &Ceph) -> BucketView {
        let bucket = amber_storage::objstore::Bucket::open(&ceph.bucket_config(BUCKET_PREFIX)).unwrap();
        BucketView { bucket, runtime: tokio::runtime::Runtime::new().unwrap() }
    }

    /// The default tenant's index entries.
    fn windows(&self) -> Vec<amber_storage::upload::index::IndexedWindow> {
        self.runtime.block_on(amber_storage::upload::index::read(&self.bucket, "anonymous")).unwrap().windows
    }

    fn keys(&self) -> Vec<String> {
        use amber_storage::objstore::ObjectStorage;
        self.runtime.block_on(self.bucket.list("")).unwrap().into_iter().map(|o| o.key).collect()
    }
}

const BUCKET_PREFIX: &str = "cluster-test";

fn bucket_flags(ceph: &Ceph) -> Vec<String> {
    ceph.amber_flags(BUCKET_PREFIX)
}

/// Sends batches `0..n` from `t0` to the distributor and the reference; each must be a 204.
fn send_batches(distributor: &Amber, reference: &Amber, t0: i64, n: u64) {
    for k in 0..n {
        let body = batch(t0, k);
        for amber in [distributor, reference] {
            let (status, text) = amber.write_raw(body.clone());
            assert_eq!(status, 204, "batch {k}: {text}");
        }
    }
}

/// Ingesters on a ring upload to a real Ceph RADOS Gateway, each its own copy of a window (one
/// index entry per replica, under its instance id); a bucket-only querier answers from the
/// three copies exactly as the single node does (every sample once, not three times); a
/// `--role compactor` merges the replicas into one entry and deletes their files; and an
/// ingester stopped with SIGTERM seals its whole head, open window included, and uploads it
/// before it leaves the ring.
#[test]
fn ingesters_upload_their_replicas_the_compactor_merges_them_and_a_leaving_one_uploads_first() {
    const BATCHES: u64 = 30;
    let dir = tempfile::tempdir().unwrap();
    let ceph = Ceph::start(&dir.path().join("ceph"));
    let view = BucketView::open(&ceph);
    let etcd = EtcdCluster::start(&dir.path().join("etcd"), 1);
    // A short out-of-order window: a window five hours old is closed, and settled for the
    // compactor (twice the out-of-order window past its compaction window's end).
    let storage_flags = ["--out-of-order-window", "10m", "--maintenance-interval", "1s"].map(String::from);
    let mut ingesters: Vec<Amber> = (0..3)
        .map(|n| {
            let mut args = ring_flags(&etcd, "ingester");
            args.extend(["--instance-id".to_string(), format!("ingester-{n}")]);
            args.extend(bucket_flags(&ceph));
            args.extend(storage_flags.clone());
            Amber::start_in(&dir.path().join(format!("ingester-{n}")), &args)
        })
        .collect();
    let distributor = Amber::start_in(&dir.path().join("distributor"), &ring_flags(&etcd, "distributor"));
    let reference = Amber::start_in(&dir.path().join("reference"), &storage_flags);
    let querier_flags: Vec<String> =
        bucket_flags(&ceph).into_iter().chain(["--role", "querier"].map(String::from)).collect();
    // Reads the bucket alone: what it answers is what the uploads hold.
    let bucket_querier = Amber::start_in(&dir.path().join("bucket-querier"), &querier_flags);
    wait_for_ring(&distributor, &THREE);

    // A closed window: the two-hour window holding the time five hours ago.
    let window = (common::now_ms() - 5 * 3_600_000).div_euclid(7_200_000) * 7_200_000;
    let past = window + 60_000;
    send_batches(&distributor, &reference, past, BATCHES);
    // The window is sealed (and uploaded) in steps while the batches arrive: wait for each
    // replica's whole copy.
    let replicas = |view: &BucketView| -> Vec<(Option<String>, u64)> {
        view.windows().into_iter().filter(|w| w.start == window).map(|w| (w.replica, w.samples)).collect()
    };
    let three: Vec<(Option<String>, u64)> = (0..3).map(|n| (Some(format!("ingester-{n}")), 12 * BATCHES)).collect();
    eventually("each ingester's whole copy of the window in the index", Duration::from_secs(120), || {
        (replicas(&view) == three).then_some(())
    });
    for w in view.windows() {
        // Each copy is whole: every series of the load is on every one of three ingesters.
        assert_eq!(
            (w.end, w.series, w.samples, w.histograms, w.exemplars),
            (window + 7_200_000, 13, 12 * BATCHES, BATCHES, 12 * BATCHES),
            "{w:?}"
        );
        let folder = format!("anonymous/windows/{window}.{}/", w.replica.as_deref().unwrap());
        assert!(w.object.starts_with(&folder), "{w:?}");
    }
    let (start, end) = (past / 1000, past / 1000 + BATCHES as i64 - 1);
    let qs = questions(start, end, BATCHES);
    let want = answers(&reference, &qs);
    eventually("the bucket-only querier to answer from the copies as one node", Duration::from_secs(60), || {
        (answers(&bucket_querier, &qs) == want).then_some(())
    });
    assert_cluster_answers_as_one_node(&bucket_querier, &reference, past, BATCHES);

    // The compactor merges the three copies into one entry (4 h compaction windows here, so the
    // window's group is settled), and deletes the copies' files.
    let mut compactor_flags = bucket_flags(&ceph);
    compactor_flags.extend(
        [
            "--role",
            "compactor",
            "--compaction-interval",
            "1s",
            "--compaction-window",
            "4h",
            "--out-of-order-window",
            "10m",
        ]
        .map(String::from),
    );
    let compactor = Amber::start_in(&dir.path().join("compactor"), &compactor_flags);
    let group = window.div_euclid(4 * 3_600_000) * 4 * 3_600_000;
    eventually("the replicas merged into one entry", Duration::from_secs(120), || {
        let windows = view.windows();
        (windows.len() == 1 && windows[0].replica.is_none()).then_some(windows)
    });
    let merged = &view.windows()[0];
    assert_eq!(
        (merged.start, merged.end, merged.series, merged.samples, merged.histograms, merged.exemplars),
        (group, group + 4 * 3_600_000, 13, 12 * BATCHES, BATCHES, 12 * BATCHES),
        "one of each sample, exemplar and histogram: {merged:?}"
    );
    eventually("the copies' files deleted", Duration::from_secs(60), || {
        let blocks: Vec<String> = view.keys().into_iter().filter(|k| k.ends_with(".block")).collect();
        (blocks == [merged.object.clone()]).then_some(())
    });
    eventually("the bucket-only querier to answer from the merged window", Duration::from_secs(60), || {
        (answers(&bucket_querier, &qs) == want).then_some(())
    });
    drop(compactor);

    // Live data, in the open window and the head: a leaving ingester seals and uploads it.
    let live = common::now_ms() - 120_000;
    send_batches(&distributor, &reference, live, BATCHES);
    ingesters[2].stop();
    wait_for_ring(&distributor, &THREE[..2]);
    let leaver: Vec<_> =
        view.windows().into_iter().filter(|w| w.replica.as_deref() == Some("ingester-2") && w.max_ts >= live).collect();
    let held: u64 = leaver.iter().map(|w| w.samples).sum();
    assert_eq!(held, 12 * BATCHES, "its copy of the open window is in the bucket: {leaver:?}");
    let (start, end) = (live / 1000, live / 1000 + BATCHES as i64 - 1);
    let qs = questions(start, end, BATCHES);
    let want = answers(&reference, &qs);
    eventually("the bucket-only querier to answer the live data from its copy", Duration::from_secs(60), || {
        (answers(&bucket_querier, &qs) == want).then_some(())
    });
    assert_cluster_answers_as_one_node(&bucket_querier, &reference, live, BATCHES);
}

/// Three processes, each `--role distributor,ingester,querier` on one ring: a write sent to any
/// of them is forwarded to all three (to itself too, as a peer's write it stores rather than
/// forwards again), any of them answers as the single node does, each one's own store holds
/// every series (replication factor 3 of 3), and with one killed the other two go on writing
/// and answering.
#[test]
fn processes_with_every_cluster_role_answer_as_one_node() {
    const BATCHES: u64 = 20;
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdCluster::start(&dir.path().join("etcd"), 1);
    let mut nodes: Vec<Amber> = (0..3)
        .map(|n| {
            let mut args = ring_flags(&etcd, "distributor,ingester,querier");
            args.extend(["--instance-id".to_string(), format!("node-{n}")]);
            Amber::start_in(&dir.path().join(format!("node-{n}")), &args)
        })
        .collect();
    let reference = Amber::start_in(&dir.path().join("reference"), &[]);
    let three = [("node-0", "active"), ("node-1", "active"), ("node-2", "active")];
    for node in &nodes {
        wait_for_ring(node, &three);
    }
    let t0 = common::now_ms() - 600_000;
    let send = |nodes: &[Amber], ks: std::ops::Range<u64>| {
        for k in ks {
            let body = batch(t0, k);
            for amber in [&nodes[k as usize % nodes.len()], &reference] {
                let (status, text) = amber.write_raw(body.clone());
                assert_eq!(status, 204, "batch {k} to {}: {text}", amber.url(""));
            }
        }
    };
    send(&nodes, 0..BATCHES);
    for node in &nodes {
        assert_cluster_answers_as_one_node(node, &reference, t0, BATCHES);
    }
    // A peer's read is answered by the node's own store: every series is there.
    let count = format!("/api/v1/query?query={}", urlencode(SERIES_NOW));
    let http = reqwest::blocking::Client::new();
    for node in &nodes {
        let body = http.get(node.url(&count)).header("x-amber-peer", "querier").send().unwrap().text().unwrap();
        let own: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(own["data"]["result"][0]["value"][1], SERIES.to_string(), "{own}");
    }

    nodes[2].kill9();
    wait_for_ring(&nodes[0], &three[..2]);
    wait_for_ring(&nodes[1], &three[..2]);
    send(&nodes[..2], BATCHES..2 * BATCHES);
    for node in &nodes[..2] {
        assert_cluster_answers_as_one_node(node, &reference, t0, 2 * BATCHES);
    }
}

/// Limits configured for a tenant hold for the whole cluster, as Mimir's global limits do: each
/// ingester enforces its part of `max_series_per_tenant` (replication factor ÷ active ingesters)
/// and each distributor its part of the ingestion rate (one ÷ distributors), from the rings they
/// watch, so that the parts follow members coming and going. Every process gets the same flags,
/// as from one configuration file.
#[test]
fn tenant_limits_hold_for_the_whole_cluster_each_member_enforcing_its_part() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let etcd = EtcdCluster::start(&root.join("etcd"), 1);
    let flags = |role: &str, id: &str| {
        let mut flags = ring_flags(&etcd, role);
        let limits = ["--replication-factor", "1", "--max-series-per-tenant", "100", "--ingestion-rate", "1000"];
        flags.extend(limits.into_iter().chain(["--ingestion-burst", "1000", "--instance-id", id]).map(str::to_string));
        flags
    };
    let ingesters: Vec<Amber> = (0..2)
        .map(|n| Amber::start_in(&root.join(format!("ingester-{n}")), &flags("ingester", &format!("ingester-{n}"))))
        .collect();
    let distributor = Amber::start_in(&root.join("distributor-a"), &flags("distributor", "distributor-a"));
    let mut other = Amber::start_in(&root.join("distributor-b"), &flags("distributor", "distributor-b"));
    wait_for_ring(&distributor, &[("ingester-0", "active"), ("ingester-1", "active")]);

    // 150 new series in one write: each ingester holds the ones the ring gives it, and takes
    // 50 of them (100 × 1 replica ÷ 2 ingesters).
    let now = common::now_ms();
    let names: Vec<String> = (0..150).map(|i| format!("s{i:03}")).collect();
    let write: Vec<_> =
        names.iter().map(|n| series(&[("__name__", "limited"), ("n", n)], &[(now, 1.0)], &[])).collect();
    let (status, body) = distributor.write(&common::request(write));
    assert_eq!(status, 400, "{body}");
    let ring = amber_ring::Ring::new((0..2).map(|n| {
        let id = format!("ingester-{n}");
        amber_ring::Member {
            tokens: amber_ring::tokens_for(&id, amber_ring::DEFAULT_TOKENS),
            id,
            addr: String::new(),
            state: amber_ring::MemberState::Active,
        }
    }));
    let mut owned = [0usize; 2];
    let mut owner = Vec::new();
    for n in &names {
        ring.replicas_into(
            amber_ring::series_key("anonymous", [("__name__", "limited"), ("n", n.as_str())]),
            1,
            &mut owner,
        );
        owned[owner[0]] += 1;
    }
    let kept = owned.map(|o| o.min(50));
    let count = |amber: &Amber| {
        let data = amber.data(&format!("/api/v1/query?query={}", urlencode("count(limited)")));
        data["result"][0]["value"][1].as_str().unwrap().parse::<usize>().unwrap()
    };
    for (i, ingester) in ingesters.iter().enumerate() {
        assert_eq!(count(ingester), kept[i], "ingester-{i} owns {} of the series", owned[i]);
    }
    assert_eq!(count(&distributor), kept[0] + kept[1]);
    // The ring gives both more than 50 of these series: the cluster holds exactly the limit.
    assert_eq!(kept, [50, 50], "owned: {owned:?}");
    let rejected = 150 - 100;
    assert!(
        body.starts_with(&format!(
            "{rejected} samples and 0 exemplars rejected; 100 samples and 0 exemplars written. "
        )),
        "{body}"
    );
    assert!(
        body.contains(
            "max_series_per_tenant here is 50 series (this ingester's part of the cluster's 100 series: 2 active ingesters on the ring, each series on 1 of them)"
        ),
        "{body}"
    );

    // The ingestion rate: each of the two distributors takes 500 samples/s of the 1000; a
    // write larger than the (undivided) burst is refused, naming the part.
    let tenant = [("X-Scope-OrgID", "rated")];
    let samples: Vec<(i64, f64)> = (0..1001).map(|i| (now - 1001 + i, 1.0)).collect();
    let too_many = common::request(vec![series(&[("__name__", "rated")], &samples, &[])]);
    let refusal = |rate: &str, part: &str| {
        format!(
            "ingestion rate limit of {rate} samples/s with bursts of 1000 (ingestion_rate, ingestion_burst){part} exceeded by tenant \"rated\" writing 1001 samples and exemplars; retry later"
        )
    };
    let part = " (this distributor's part of the cluster's 1000 samples/s: one of 2 distributors)";
    let (status, body) = eventually("the distributors to count each other", Duration::from_secs(30), || {
        let (status, body) = distributor.write_with(&tenant, &too_many);
        body.contains("one of 2 distributors").then_some((status, body))
    });
    assert_eq!((status, body.trim()), (429, refusal("500", part).as_str()));
    let (status, body) = distributor
        .write_with(&tenant, &common::request(vec![series(&[("__name__", "rated")], &samples[..1000], &[])]));
    assert_eq!(status, 204, "{body}");
    // The other distributor leaves: this one takes the whole rate.
    other.stop();
    let body = eventually("the distributor to be the only one", Duration::from_secs(30), || {
        let (_, body) = distributor.write_with(&tenant, &too_many);
        (!body.contains("one of 2 distributors")).then_some(body)
    });
    assert_eq!(body.trim(), refusal("1000", ""));
}
