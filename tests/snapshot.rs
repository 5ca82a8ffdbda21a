//! `POST /api/v1/admin/tsdb/snapshot` at the wire: taken while a client keeps writing, the
//! snapshot, opened as a data directory elsewhere, holds every write acknowledged before the
//! request and none sent after its answer, sealed blocks and head alike; `kill -9` during a
//! snapshot leaves the store opening as before and no snapshot under a final name that does not
//! open.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use common::{Amber, request, series};

const BLOCK_MS: i64 = 2 * 3600 * 1000;

fn snapshot(amber: &Amber) -> String {
    let r = reqwest::blocking::Client::new().post(amber.url("/api/v1/admin/tsdb/snapshot")).send().unwrap();
    let status = r.status().as_u16();
    let body: serde_json::Value = serde_json::from_str(&r.text().unwrap()).unwrap();
    assert_eq!(status, 200, "{body}");
    let name = body["data"]["name"].as_str().unwrap().to_string();
    // Prometheus's form: 20171210T211224Z-2be650b6d019eb54.
    assert_eq!((name.len(), &name[8..9], &name[15..17]), (33, "T", "Z-"), "{name}");
    name
}

/// The batches whose series an Amber holds.
fn batches(amber: &Amber) -> BTreeSet<i64> {
    let values = amber.data("/api/v1/label/batch/values?match[]=snap_total");
    values.as_array().unwrap().iter().map(|v| v.as_str().unwrap().parse().unwrap()).collect()
}

/// Moves a snapshot out of its store and starts an Amber on it, as a restore elsewhere would.
fn open_snapshot(store: &Path, name: &str, at: &Path) -> Amber {
    std::fs::create_dir_all(at).unwrap();
    std::fs::rename(store.join("snapshots").join(name), at.join("data")).unwrap();
    Amber::start(at, &[])
}

#[test]
fn a_snapshot_taken_under_writes_holds_exactly_what_was_acknowledged_before_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("live")).unwrap();
    let mut amber = Amber::start(&dir.path().join("live"), &["--enable-admin-api"]);
    let now = common::now_ms();
    // A sealed window first, so the snapshot holds blocks as well as the head's log.
    let old = (now - 6 * 3600 * 1000).div_euclid(BLOCK_MS) * BLOCK_MS;
    let sealed = request(vec![series(&[("__name__", "snap_sealed")], &[(old, 1.0), (old + 60_000, 2.0)], &[])]);
    assert_eq!(amber.write(&sealed).0, 204);
    let r = reqwest::blocking::Client::new().post(amber.url("/api/v1/admin/tsdb/seal")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // One client writes batch after batch: `acked` is the last batch answered 204, `sending` the
    // one on the wire.
    let (acked, sending) = (Arc::new(AtomicI64::new(-1)), Arc::new(AtomicI64::new(0)));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, sending, stop) = (acked.clone(), sending.clone(), stop.clone());
        let url = amber.url("/api/v1/write");
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::new();
            let mut batch = 0i64;
            while !stop.load(Ordering::SeqCst) {
                sending.store(batch, Ordering::SeqCst);
                let b = batch.to_string();
                let req = request(vec![series(
                    &[("__name__", "snap_total"), ("batch", &b)],
                    &[(now - 60_000 + batch, batch as f64)],
                    &[],
                )]);
                let r = client
                    .post(&url)
                    .header("Content-Encoding", "snappy")
                    .header("Content-Type", "application/x-protobuf")
                    .body(common::encode(&req))
                    .send()
                    .unwrap();
                assert_eq!(r.status().as_u16(), 204);
                acked.store(batch, Ordering::SeqCst);
                batch += 1;
            }
        })
    };
    common::eventually("a few batches acknowledged", Duration::from_secs(30), || {
        (acked.load(Ordering::SeqCst) >= 20).then_some(())
    });
    let acked_before = acked.load(Ordering::SeqCst);
    let name = snapshot(&amber);
    let sent_after = sending.load(Ordering::SeqCst) + 1;
    common::eventually("writes after the snapshot", Duration::from_secs(30), || {
        (acked.load(Ordering::SeqCst) >= sent_after + 20).then_some(())
    });
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let live = batches(&amber);
    assert!(live.len() as i64 > sent_after + 20, "the live store has every batch");
    amber.kill9();

    let restored = open_snapshot(&dir.path().join("live/data"), &name, &dir.path().join("restored"));
    let got = batches(&restored);
    for b in 0..=acked_before {
        assert!(got.contains(&b), "batch {b}, acknowledged before the snapshot, is missing");
    }
    assert!(got.iter().all(|&b| b < sent_after), "batches sent after the snapshot's answer: {got:?}");
    let sealed_points = restored.data(&format!(
        "/api/v1/query_range?query=snap_sealed&start={}&end={}&step=60",
        old / 1000,
        old / 1000 + 60
    ));
    assert_eq!(sealed_points["result"][0]["values"], serde_json::json!([[old / 1000, "1"], [old / 1000 + 60, "2"]]));
    drop(restored);

    // kill -9 while snapshots are being taken: the store opens as before, and every snapshot
    // under a final name opens with the sealed data.
    amber.restart();
    for round in 0..3u64 {
        let url = amber.url("/api/v1/admin/tsdb/snapshot");
        let taking = std::thread::spawn(move || reqwest::blocking::Client::new().post(url).send().is_ok());
        // Fault injection at a varying point of the snapshot, not a wait for a condition.
        std::thread::sleep(Duration::from_millis(round * 7));
        amber.kill9();
        let _ = taking.join();
        amber.restart();
        assert_eq!(batches(&amber), live, "round {round}: the store after kill -9 during a snapshot");
    }
    let snapshots = dir.path().join("live/data/snapshots");
    let complete: Vec<String> = std::fs::read_dir(&snapshots)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".tmp"))
        .collect();
    amber.stop();
    for (i, name) in complete.iter().enumerate() {
        let opened = open_snapshot(&dir.path().join("live/data"), name, &dir.path().join(format!("check-{i}")));
        assert_eq!(batches(&opened), live, "snapshot {name}, taken after the writes stopped");
    }
}
