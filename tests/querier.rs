//! Past one disk, at the wire: an Amber uploading sealed windows to a real Ceph RADOS Gateway, a
//! separate `--role querier` process reading the bucket plus that Amber for recent data, and a
//! single-node Amber without an object store holding the same data as the reference. The querier
//! answers exactly as the reference does — PromQL, `query_exemplars`, trace lookup, series, label
//! names and values — across a `kill -9` with its cache wiped, with a bucket-only querier for the
//! sealed past, and with the ingester's own local copies expired (`--local-retention`), so that
//! it reads its past back from the bucket. A trace lookup over the sealed windows touches the
//! block files whose filter matches only (counted on the querier's `/metrics`).

mod common;

use std::time::Duration;

use common::ceph::Ceph;
use common::{Amber, ExemplarSpec, answers, assert_same, eventually, request, series, urlencode};

const BLOCK_MS: i64 = 2 * 3600 * 1000;

fn bucket_flags(ceph: &Ceph) -> Vec<String> {
    ceph.amber_flags("querier-test")
}

/// Every question the test asks, as API paths with their queries, over `[start, end]` seconds.
fn questions(start: i64, end: i64, trace_ids: &[&str]) -> Vec<String> {
    let range = |q: &str| format!("/api/v1/query_range?query={}&start={start}&end={end}&step=300", urlencode(q));
    let mut out: Vec<String> = [
        "http_requests_total",
        "rate(http_requests_total[10m])",
        "sum by (job) (rate(http_requests_total[10m]))",
        "http_requests_total{job=~\"a.*\", code!=\"500\"}",
        "histogram_quantile(0.9, sum by (le) (rate(latency_seconds_bucket[10m])))",
        "count_over_time(up[1h])",
    ]
    .into_iter()
    .map(range)
    .collect();
    out.push(format!("/api/v1/query?query={}&time={end}", urlencode("sum_over_time(http_requests_total[1d])")));
    let sel = urlencode("{__name__=~\"http_requests_total|latency_seconds_bucket\"}");
    out.push(format!("/api/v1/query_exemplars?query={sel}&start={start}&end={end}"));
    out.push(format!("/api/v1/series?match[]={sel}&start={start}&end={end}"));
    out.push(format!("/api/v1/series?match[]={}&start={start}&end={end}", urlencode("up")));
    out.push(format!("/api/v1/labels?start={start}&end={end}"));
    out.push(format!("/api/v1/label/job/values?start={start}&end={end}"));
    out.push(format!("/api/v1/label/__name__/values?start={start}&end={end}"));
    out.push("/api/v1/metadata".to_string());
    for t in trace_ids {
        out.push(format!("/api/v1/exemplars/trace/{t}"));
    }
    out
}

/// The answers of `amber` to every question, each with its path, so a difference names it.
#[test]
fn a_querier_answers_from_the_bucket_and_the_ingester_as_one_node_does() {
    let dir = tempfile::tempdir().unwrap();
    let ceph = Ceph::start(&dir.path().join("ceph"));
    let ingester_flags: Vec<String> = bucket_flags(&ceph)
        .into_iter()
        .chain(["--enable-admin-api", "--maintenance-interval", "1s", "--local-retention", "3h"].map(String::from))
        .collect();
    let mut ingester = Amber::start_in(&dir.path().join("ingester"), &ingester_flags);
    let reference = Amber::start_in(&dir.path().join("reference"), &[]);

    // Ten hours of data ending now: five sealed windows and an open one, with exemplars.
    let now = common::now_ms();
    let from = now - 10 * 3600 * 1000;
    let steps: Vec<i64> = (0..).map(|i| from + i * 60_000).take_while(|&t| t <= now).collect();
    let traces: Vec<String> = (0..6).map(|i| format!("{:032x}", 0xabc0 + i)).collect();
    // One request: all of it is in the ingester's head before any maintenance pass can seal,
    // upload or expire a window (a write into a window whose local copy is gone is refused).
    let mut ts = Vec::new();
    let minutes = |t: i64| ((t - from) / 60_000) as f64;
    for (job, code, rate) in [("api", "200", 3.0), ("api", "500", 0.5), ("auth", "200", 1.0), ("web", "200", 7.0)] {
        let points: Vec<(i64, f64)> = steps.iter().map(|&t| (t, minutes(t) * rate)).collect();
        // On the api 200 series, an exemplar an hour, each with its own trace id.
        let ex: Vec<[(&str, &str); 1]> = traces.iter().map(|t| [("trace_id", t.as_str())]).collect();
        let exemplars: Vec<ExemplarSpec<'_>> = if job == "api" && code == "200" {
            ex.iter().enumerate().map(|(i, l)| (from + i as i64 * 3_600_000, 0.25, &l[..])).collect()
        } else {
            vec![]
        };
        ts.push(series(&[("__name__", "http_requests_total"), ("code", code), ("job", job)], &points, &exemplars));
    }
    for (le, share) in [("0.1", 0.5), ("0.5", 0.9), ("+Inf", 1.0)] {
        let points: Vec<(i64, f64)> = steps.iter().map(|&t| (t, (minutes(t) * 10.0 * share).floor())).collect();
        ts.push(series(&[("__name__", "latency_seconds_bucket"), ("le", le)], &points, &[]));
    }
    let up: Vec<(i64, f64)> = steps.iter().map(|&t| (t, 1.0)).collect();
    ts.push(series(&[("__name__", "up"), ("job", "api")], &up, &[]));
    let mut all = request(ts);
    all.metadata = [("http_requests_total", 1, "Requests served."), ("latency_seconds", 3, "Request latency.")]
        .into_iter()
        .map(|(family, kind, help)| amber_api::prompb::MetricMetadata {
            r#type: kind,
            metric_family_name: family.into(),
            help: help.into(),
            unit: String::new(),
        })
        .collect();
    for amber in [&ingester, &reference] {
        let (code, body) = amber.write(&all);
        assert_eq!(code, 204, "{body}");
    }
    let seal = || {
        let r = reqwest::blocking::Client::new().post(ingester.url("/api/v1/admin/tsdb/seal")).send().unwrap();
        assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap());
    };
    seal();
    // Every closed window in the bucket: those ending an out-of-order window (1h) ago.
    let closed = (now - 3600 * 1000 - BLOCK_MS).div_euclid(BLOCK_MS) * BLOCK_MS + BLOCK_MS;
    let windows_closed = (closed - from.div_euclid(BLOCK_MS) * BLOCK_MS) / BLOCK_MS;
    eventually("the closed windows uploaded", Duration::from_secs(120), || {
        let uploaded = ingester.metric("amber_upload_block_files_total").unwrap_or(0.0);
        (uploaded >= windows_closed as f64 && ingester.metric("amber_upload_pending_windows") == Some(0.0))
            .then_some(())
    });

    let (start_s, end_s) = (from / 1000, now / 1000);
    let trace_ids: Vec<&str> = traces.iter().map(String::as_str).collect();
    let qs = questions(start_s, end_s, &trace_ids);
    let want = answers(&reference, &qs);

    // The ingester itself, once its copies older than the local retention are gone, reads them
    // back from the bucket.
    eventually("the ingester's old local copies expired", Duration::from_secs(60), || {
        (ingester.metric("amber_local_horizon_timestamp_seconds").unwrap_or(0.0) > 0.0).then_some(())
    });
    assert_same("ingester after local expiry", &answers(&ingester, &qs), &want);
    assert!(ingester.metric("amber_object_store_requests_total{operation=\"get_range\"}").unwrap() > 0.0);
    let old = series(&[("__name__", "up"), ("job", "api")], &[(from + 30_000, 1.0)], &[]);
    let (code, body) = ingester.write(&request(vec![old]));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("kept in object storage only"), "{body}");

    // A querier over the bucket and the ingester.
    let querier_flags: Vec<String> = bucket_flags(&ceph)
        .into_iter()
        .chain(["--role".into(), "querier".into(), "--ingester-urls".into(), ingester.url("")])
        .collect();
    let querier_dir = dir.path().join("querier");
    let mut querier = Amber::start_in(&querier_dir, &querier_flags);
    assert_same("querier", &answers(&querier, &qs), &want);
    // It takes no writes, and says where they go.
    let (code, body) = querier.write(&all);
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("--role querier"), "{body}");

    // Stateless: killed, its data directory (the cache) wiped, started again: the same answers.
    querier.kill9();
    std::fs::remove_dir_all(&querier_dir).unwrap();
    let mut querier = Amber::start_in(&querier_dir, &querier_flags);
    assert_same("querier after kill -9 and a wiped cache", &answers(&querier, &qs), &want);
    // Warm, the same answers without reading a block file from the bucket again.
    let range_reads = |q: &Amber| q.metric("amber_object_store_requests_total{operation=\"get_range\"}").unwrap();
    let cold_reads = range_reads(&querier);
    assert!(cold_reads > 0.0);
    assert_same("querier, warm", &answers(&querier, &qs), &want);
    assert_eq!(range_reads(&querier), cold_reads);
    // Restarted on its cache: block-file ranges come from local disk, none from the bucket.
    querier.kill9();
    querier.restart();
    assert_same("querier restarted on its cache", &answers(&querier, &qs), &want);
    assert_eq!(range_reads(&querier), 0.0);
    assert!(querier.metric("amber_bucket_cache_hits_total").unwrap() > 0.0);

    // A bucket-only querier answers the sealed past as the reference does.
    let sealed_end = closed / 1000 - 1;
    // Metadata is what senders told a store, not data: the bucket has none.
    let mut past = questions(start_s, sealed_end, &[]);
    past.retain(|q| q != "/api/v1/metadata");
    let bucket_only = Amber::start_in(
        &dir.path().join("bucket-only"),
        &bucket_flags(&ceph).into_iter().chain(["--role".into(), "querier".into()]).collect::<Vec<_>>(),
    );
    let want_past = answers(&reference, &past);
    assert_same("bucket-only querier", &answers(&bucket_only, &past), &want_past);
    assert_eq!(bucket_only.data("/api/v1/metadata"), serde_json::json!({}));
    // A trace id found in one sealed window (that reads touch only the windows whose filter
    // matches is counted in storage's bucket_source tests, over 360 windows).
    let one = &traces[1];
    let found = bucket_only.data(&format!("/api/v1/exemplars/trace/{one}"));
    assert_eq!(found, reference.data(&format!("/api/v1/exemplars/trace/{one}")));
    assert_eq!(found.as_array().map(Vec::len), Some(1), "{found}");

    // A dead ingester: the querier says so with a retryable error rather than half an answer.
    ingester.kill9();
    let (status, body) = querier.get(&qs[0]);
    assert_eq!((status, body["errorType"].as_str()), (503, Some("unavailable")), "{body}");
    querier.stop();
}
