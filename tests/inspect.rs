//! `amber inspect` and `amber verify` run against a store while Amber is running on it: the
//! exact figures of the data written through remote write (series, top metric, churn per window,
//! exemplars per metric name, blocks per kind) in `--format json`, and a clean verify (exit 0);
//! then, with Amber stopped and one sample block's bytes flipped on disk, verify exits 1 naming
//! that series' labels and window.

mod common;

use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use amber_storage::keys;
use amber_storage::labels::{Label, Labels};
use amber_storage::tenant::TenantId;
use common::native_histograms::Shape;
use common::{Amber, histogram_series, request, series};
use serde_json::{Value, json};

const BLOCK_MS: i64 = 2 * 3600 * 1000;

/// Runs the `amber` binary; returns its exit code, stdout and stderr.
fn amber(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_amber")).args(args).output().expect("running amber");
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.code().expect("exited"), text(out.stdout), text(out.stderr))
}

fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms as u64)).to_string()
}

/// Ten samples 15 s apart from `from`.
fn scrapes(from: i64) -> Vec<(i64, f64)> {
    (0..10).map(|i| (from + i * 15_000, i as f64)).collect()
}

/// The roaring union Amber merges postings and activity sets with: RocksDB may apply it when it
/// flushes or compacts the index while the test has the store open.
fn union(_key: &[u8], existing: Option<&[u8]>, operands: &rocksdb::MergeOperands) -> Option<Vec<u8>> {
    let mut set = existing
        .map_or_else(|| Some(roaring::RoaringTreemap::new()), |b| roaring::RoaringTreemap::deserialize_from(b).ok())?;
    for op in operands {
        set |= roaring::RoaringTreemap::deserialize_from(op).ok()?;
    }
    let mut out = Vec::new();
    set.serialize_into(&mut out).ok()?;
    Some(out)
}

/// Flips one byte in the middle of the sample block of the default tenant's series `pairs` in
/// `window`, in the store at `data` (no Amber running on it).
fn corrupt_sample_block(data: &std::path::Path, pairs: &[(&str, &str)], window: i64) {
    let cfs = keys::ALL_CFS.iter().map(|&name| {
        let mut o = rocksdb::Options::default();
        if name == keys::CF_INDEX {
            o.set_merge_operator_associative("roaring_union", union);
        }
        rocksdb::ColumnFamilyDescriptor::new(name, o)
    });
    let db = rocksdb::DB::open_cf_descriptors(&rocksdb::Options::default(), data, cfs).unwrap();
    let labels = Labels::from_unsorted(pairs.iter().map(|(n, v)| Label::new(*n, *v)).collect());
    let id = db.get_cf(db.cf_handle(keys::CF_INDEX).unwrap(), keys::series_by_labels(TenantId::DEFAULT, &labels));
    let id = keys::read_u64(&id.unwrap().expect("the series is in the index"));
    let blocks = db.cf_handle(keys::CF_BLOCKS).unwrap();
    let key = keys::block(window, id);
    let mut block = db.get_cf(blocks, key).unwrap().expect("the series has a block in the window");
    let middle = block.len() / 2;
    block[middle] ^= 0x01;
    db.put_cf(blocks, key, block).unwrap();
}

#[test]
fn inspect_and_verify_read_a_running_store_and_verify_names_a_corrupt_block() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Amber::start(dir.path(), &["--enable-admin-api"]);
    let data = server.data_dir.to_str().unwrap().to_string();
    // Remote write sends label names sorted. Two sealed windows: `w` six hours ago (whole, and older than the out-of-order window) and
    // the one after it.
    let w = (common::now_ms() - 6 * 3600 * 1000).div_euclid(BLOCK_MS) * BLOCK_MS;
    let w2 = w + BLOCK_MS;
    let trace = |i: u32| format!("{i:032x}");
    let (t1, t2, t3, t4, t5) = (trace(1), trace(2), trace(3), trace(4), trace(5));
    let req = |m: &'static str, c: &'static str| {
        [("__name__", "http_requests_total"), ("code", c), ("job", "api"), ("method", m)]
    };
    let bucket = |le: &'static str| [("__name__", "http_request_duration_seconds_bucket"), ("job", "api"), ("le", le)];
    let both = [scrapes(w), scrapes(w2)].concat();
    let h: Vec<_> = (0..5).map(|i| (w + i * 15_000, Shape::IntegerSchema0.at(i as u64))).collect();
    let hs: Vec<_> = h.iter().map(|(ts, h)| (*ts, h, true)).collect();
    let write = request(vec![
        series(&req("GET", "200"), &both, &[(w + 15_000, 0.2, &[("trace_id", &t1)])]),
        series(&req("GET", "500"), &both, &[]),
        series(&req("POST", "200"), &scrapes(w), &[]),
        series(&req("DELETE", "204"), &scrapes(w), &[]),
        series(
            &bucket("0.1"),
            &scrapes(w),
            &[(w, 0.05, &[("trace_id", &t2)]), (w + 30_000, 0.07, &[("trace_id", &t3)])],
        ),
        series(&bucket("1"), &scrapes(w), &[(w, 0.5, &[("trace_id", &t4)]), (w + 45_000, 0.7, &[("trace_id", &t5)])]),
        series(&bucket("+Inf"), &scrapes(w), &[]),
        series(&[("__name__", "up"), ("job", "api")], &scrapes(w), &[]),
        series(&[("__name__", "up"), ("job", "db")], &scrapes(w), &[]),
        series(&[("__name__", "up"), ("job", "cache")], &scrapes(w2), &[]),
        histogram_series(&[("__name__", "rpc_duration_seconds"), ("job", "api")], &hs, &[]),
    ]);
    assert_eq!(server.write(&write), (204, String::new()));
    let team_b = request(vec![series(&[("__name__", "up"), ("job", "b")], &scrapes(w)[..3], &[])]);
    assert_eq!(server.write_with(&[("X-Scope-OrgID", "team-b")], &team_b).0, 204);
    let sealed = reqwest::blocking::Client::new().post(server.url("/api/v1/admin/tsdb/seal")).send().unwrap();
    assert_eq!(sealed.status().as_u16(), 200);

    // Amber is still running.
    let started = std::time::Instant::now();
    let (code, out, err) = amber(&["inspect", "--data-dir", &data, "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(err, "", "no progress bar when stderr is not a terminal");
    eprintln!("inspect --format json took {:?}", started.elapsed());
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["block_duration_ms"], BLOCK_MS);
    let t = &report["tenants"][0];
    assert_eq!((&t["name"], &t["id"], &t["series"]), (&json!("anonymous"), &json!(0), &json!(11)));
    assert_eq!(report["tenants"][1]["name"], "team-b");
    assert_eq!(report["tenants"][1]["series"], 1);
    assert_eq!(report["tenants"].as_array().unwrap().len(), 2);
    assert_eq!(t["series_by_metric_name"][0], json!({"name": "http_requests_total", "count": 4}));
    assert_eq!(
        t["values_by_label_name"],
        json!([
            {"name": "__name__", "count": 4}, {"name": "code", "count": 3}, {"name": "job", "count": 3},
            {"name": "le", "count": 3}, {"name": "method", "count": 3}
        ])
    );
    assert_eq!(t["series_by_label_pair"][0], json!({"name": "job=api", "count": 9}));
    assert_eq!(
        t["windows"],
        json!([
            {"start_ms": w, "end_ms": w2, "series": 10, "new_series": 10},
            {"start_ms": w2, "end_ms": w2 + BLOCK_MS, "series": 3, "new_series": 1},
        ])
    );
    assert_eq!(t["sealed_exemplars"], 5);
    assert_eq!(
        t["exemplars_by_metric_name"],
        json!([{"name": "http_request_duration_seconds_bucket", "count": 4}, {"name": "http_requests_total", "count": 1}])
    );
    let kinds: Vec<Value> = report["block_kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| json!([k["column_family"], k["kind"], k["name"], k["blocks"], k["entries"]]))
        .collect();
    assert_eq!(
        kinds,
        [
            json!(["blocks", 1, "float samples", 13, 13 * 10 - 7]),
            json!(["exemplar_blocks", 2, "exemplars", 3, 5]),
            json!(["histogram_blocks", 3, "native histograms", 1, 5]),
        ]
    );
    let cfs: Vec<&str> =
        report["column_families"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(cfs, keys::ALL_CFS);

    let (code, text, err) = amber(&["inspect", "--data-dir", &data, "--tenant", "anonymous", "--limit", "3"]);
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("Tenant anonymous (id 0): 11 series"), "{text}");
    assert!(!text.contains("team-b"), "{text}");
    eprintln!("amber inspect --tenant anonymous --limit 3:\n{text}");
    let (code, _, err) = amber(&["inspect", "--data-dir", &data, "--tenant", "nobody"]);
    assert_ne!(code, 0);
    assert!(err.contains("no tenant \"nobody\"") && err.contains("anonymous, team-b"), "{err}");

    let (code, out, err) = amber(&["verify", "--data-dir", &data]);
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    let summary = out.lines().last().unwrap();
    assert!(summary.starts_with("verify: 17 blocks ("), "{out}");
    assert!(summary.ends_with("0 corrupt blocks, 0 corrupt WAL records, 0 other problems"), "{out}");
    server.stop();

    // Offline now: one flipped byte in up{job="db"}'s block of window `w`.
    corrupt_sample_block(&server.data_dir, &[("__name__", "up"), ("job", "db")], w);
    let (code, out, _) = amber(&["verify", "--data-dir", &data]);
    assert_eq!(code, 1, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let named = format!(
        r#"corrupt block in blocks: tenant anonymous, series {{__name__="up", job="db"}}, window {}..{}: block checksum mismatch"#,
        rfc3339(w),
        rfc3339(w2)
    );
    assert!(lines[0].starts_with(&named), "{out}");
    assert!(lines[1].contains("1 corrupt blocks"), "{out}");

    let (code, _, err) = amber(&["verify", "--data-dir", dir.path().join("nothing").to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not an Amber data directory"), "{err}");
}
