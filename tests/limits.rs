//! Limits: each breach gets a clear, retryable error naming the limit and its value, leaves the
//! rest of the store alone, and is counted on `/metrics` as `amber_limits_exceeded_total{limit}`.
//! (The series limit is in `tenants.rs`, the body-size and in-flight limits in `bad_input.rs`.)
//! Hostile or runaway clients meet the same: a cardinality explosion is held to the new-series
//! rate with memory bounded, slow or idle connections are closed, and bodies that never finish
//! arriving, or that would together take too much memory, are refused.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Amber, request, series, urlencode};
use serde_json::json;

#[test]
fn ingestion_rate_refuses_bursts_beyond_the_bucket_per_tenant_with_a_429() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("amber.toml");
    std::fs::write(&config, "ingestion_rate = 1\ningestion_burst = 50\n\n[tenants.big]\ningestion_rate = 100000\n")
        .unwrap();
    let amber = Amber::start(dir.path(), &["--config", config.to_str().unwrap()]);
    let t = common::now_ms() - 600_000;
    let batch = |from: i64, n: i64| {
        let samples: Vec<(i64, f64)> = (0..n).map(|i| (t + (from + i) * 1000, i as f64)).collect();
        request(vec![series(&[("__name__", "x"), ("job", "a")], &samples, &[])])
    };
    assert_eq!(amber.write_with(&[("X-Scope-OrgID", "small")], &batch(0, 50)), (204, String::new()));
    let (status, body) = amber.write_with(&[("X-Scope-OrgID", "small")], &batch(50, 40));
    assert_eq!(status, 429, "{body}");
    assert_eq!(
        body,
        "ingestion rate limit of 1 samples/s with bursts of 50 (ingestion_rate, ingestion_burst) exceeded by tenant \
         \"small\" writing 40 samples and exemplars; retry later"
    );
    assert_eq!(amber.limit_exceeded("ingestion_rate"), 1);
    // Another tenant has its own bucket and its own rate.
    assert_eq!(amber.write_with(&[("X-Scope-OrgID", "big")], &batch(0, 90)), (204, String::new()));
    // Nothing of the refused request was written.
    let q = format!("/api/v1/query?query={}&time={}", urlencode("count_over_time(x[1h])"), (t + 100_000) / 1000);
    let get = |tenant: &str| {
        let r = reqwest::blocking::Client::new().get(amber.url(&q)).header("X-Scope-OrgID", tenant).send().unwrap();
        serde_json::from_str::<serde_json::Value>(&r.text().unwrap()).unwrap()["data"]["result"][0]["value"][1].clone()
    };
    assert_eq!(get("small"), json!("50"));
    assert_eq!(get("big"), json!("90"));
}

#[test]
fn queries_beyond_max_concurrent_queries_get_a_503_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &["--max-concurrent-queries", "1", "--query-timeout", "20s"]);
    let t = common::now_ms() - 60_000;
    assert_eq!(amber.write(&request(vec![series(&[("__name__", "up")], &[(t, 1.0)], &[])])), (204, String::new()));
    // A subquery evaluated at every millisecond of three hours keeps the only slot busy for seconds.
    let slow = format!("/api/v1/query?query={}&time={}", urlencode("count_over_time(up[3h:1ms])"), t / 1000);
    let url = amber.url(&slow);
    let busy = std::thread::spawn(move || reqwest::blocking::get(url).unwrap().status().as_u16());
    common::eventually("the slow query to take the only slot", Duration::from_secs(60), || {
        (amber.metric("amber_queries_in_progress") == Some(1.0)).then_some(())
    });
    let (status, body) = amber.get(&format!("/api/v1/query?query=up&time={}", t / 1000));
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body,
        json!({"status": "error", "errorType": "unavailable",
               "error": "too many queries in progress (limit max_concurrent_queries=1); retry later"})
    );
    assert_eq!(amber.limit_exceeded("max_concurrent_queries"), 1);
    busy.join().unwrap();
    // The slot is free again.
    assert_eq!(amber.data(&format!("/api/v1/query?query=up&time={}", t / 1000))["result"][0]["value"][1], "1");
}

/// The new-series rate holds a tenant to its bucket of new series: series beyond it are refused
/// with a retryable 429 naming the limit while the request's other series are written; a tenant
/// with its own rate is not held back, and a request that also has input that can never succeed
/// gets the 400 that says so.
#[test]
fn new_series_beyond_the_new_series_rate_get_a_429_while_the_rest_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("amber.toml");
    std::fs::write(&config, "new_series_rate = 0.001\nnew_series_burst = 3\n\n[tenants.big]\nnew_series_rate = 1000\n")
        .unwrap();
    let amber = Amber::start(dir.path(), &["--config", config.to_str().unwrap()]);
    let t = common::now_ms() - 60_000;
    let batch = |names: &[&str]| {
        request(names.iter().map(|n| series(&[("__name__", "x"), ("s", n)], &[(t, 1.0)], &[])).collect())
    };
    assert_eq!(amber.write(&batch(&["a", "b"])), (204, String::new()));
    // a is a retry (already stored, not written again), c takes the last token.
    let (status, body) = amber.write(&batch(&["a", "c", "d", "e"]));
    assert_eq!(status, 429, "{body}");
    let refused = |s: &str| {
        format!(
            "sample at {t} for series {{__name__=\"x\", s=\"{s}\"}}: a new series beyond the tenant's new-series rate limit (new_series_rate, new_series_burst); retry later"
        )
    };
    assert_eq!(
        body,
        format!(
            "2 samples and 0 exemplars rejected; 1 samples and 0 exemplars written. new-series rate limit of 0.001 series/s with bursts of 3 (new_series_rate, new_series_burst) reached by tenant \"anonymous\": 2 new series refused, retry later; {}; {}",
            refused("d"),
            refused("e")
        )
    );
    assert_eq!(amber.limit_exceeded("new_series_rate"), 1);
    let count = format!("/api/v1/query?query={}&time={}", urlencode("count(x)"), t / 1000);
    assert_eq!(amber.data(&count)["result"][0]["value"][1], "3");
    // Another tenant has its own bucket and its own rate.
    assert_eq!(amber.write_with(&[("X-Scope-OrgID", "big")], &batch(&["a", "b", "c", "d", "e"])), (204, String::new()));
    // A label value over its limit can never be written: the sender must not retry the request.
    let long = "v".repeat(2049);
    let mut mixed = batch(&["f"]);
    mixed.timeseries.push(series(&[("__name__", "x"), ("s", &long)], &[(t, 1.0)], &[]));
    let (status, body) = amber.write(&mixed);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("new-series rate limit of 0.001 series/s"), "{body}");
    assert!(body.contains(r#"value of label "s" is 2049 bytes long, over the limit of 2048"#), "{body}");
}

/// A sender creating new series as fast as it can (here 200,000 in a few seconds, with 10 MB label
/// values mixed in) gets the new-series rate and no more: the store keeps serving, holds the
/// series the bucket allowed, and its memory stays within a bound that does not grow with what
/// was sent.
#[test]
fn a_cardinality_explosion_is_held_to_the_new_series_rate_with_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &["--new-series-rate", "1000", "--new-series-burst", "1000"]);
    let t = common::now_ms() - 60_000;
    assert_eq!(amber.write(&request(vec![series(&[("__name__", "up")], &[(t, 1.0)], &[])])), (204, String::new()));
    let baseline = amber.peak_rss_bytes();
    let started = Instant::now();
    let pod = "p".repeat(40);
    for round in 0..4 {
        let batch: Vec<_> = (0..50_000)
            .map(|i| series(&[("__name__", "boom"), ("id", &format!("{round}-{i}")), ("pod", &pod)], &[(t, 1.0)], &[]))
            .collect();
        let (status, body) = amber.write(&request(batch));
        assert_eq!(status, 429, "{}", &body[..body.len().min(300)]);
        assert!(body.contains("new-series rate limit of 1000 series/s with bursts of 1000"), "{}", &body[..300]);
    }
    // Label values of 10 MB each, eight at once: refused by name, never stored.
    let huge = "h".repeat(10 << 20);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                let (status, body) =
                    amber.write(&request(vec![series(&[("__name__", "huge"), ("v", &huge)], &[(t, 1.0)], &[])]));
                assert_eq!(status, 400, "{}", &body[..body.len().min(300)]);
                assert!(body.contains(r#"value of label "v" is 10485760 bytes long, over the limit of 2048"#));
            });
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let count = format!("/api/v1/query?query={}&time={}", urlencode("count(boom)"), t / 1000);
    let stored: f64 = amber.data(&count)["result"][0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(stored >= 1000.0 && stored <= 1000.0 + 1000.0 * elapsed, "{stored} series after {elapsed:.1}s");
    assert_eq!(amber.data(&format!("/api/v1/query?query=up&time={}", t / 1000))["result"][0]["value"][1], "1");
    let grown = amber.peak_rss_bytes().saturating_sub(baseline);
    println!("peak RSS grew by {} MiB", grown >> 20);
    assert!(grown < 256 << 20, "peak RSS grew by {} MiB", grown >> 20);
}

/// Reads from `stream` until the peer closes it, for at most 10 s; what arrived and when it closed.
fn read_until_closed(stream: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let closed = stream.read_to_end(&mut got);
    assert!(closed.is_ok(), "the connection was still open after 10 s: {closed:?}");
    (String::from_utf8_lossy(&got).into_owned(), started.elapsed())
}

/// Slowloris: connections that send half a request header, and a kept-alive connection that goes
/// idle after its request, are closed once the header read timeout has passed, while other
/// clients are served all along.
#[test]
fn slow_and_idle_connections_are_closed_after_the_header_read_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &["--http-header-read-timeout", "1s"]);
    let addr = format!("127.0.0.1:{}", amber.port);
    let mut slow: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(b"POST /api/v1/write HTTP/1.1\r\nHost: amber\r\nContent-Type: application/x-protobuf\r\n")
                .unwrap();
            s
        })
        .collect();
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: amber\r\n\r\n").unwrap();
    // Held-open connections do not keep anyone else out.
    assert_eq!(amber.get("/api/v1/status/buildinfo").0, 200);
    let (answer, after) = read_until_closed(&mut idle);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(after >= Duration::from_millis(900), "closed after {after:?}, before the timeout");
    for s in &mut slow {
        let (answer, _) = read_until_closed(s);
        assert!(!answer.starts_with("HTTP/1.1 2"), "a half-sent request got {answer}");
    }
    // On a new connection: the harness's pooled one went idle past the timeout and was closed too.
    let fresh = reqwest::blocking::get(amber.url("/api/v1/status/buildinfo")).unwrap();
    assert_eq!(fresh.status().as_u16(), 200);
}

/// A write whose body trickles in slower than the body read timeout gets a 408 naming the timeout
/// instead of holding its write slot.
#[test]
fn a_body_that_does_not_arrive_within_the_body_read_timeout_gets_a_408() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &["--http-body-read-timeout", "1s"]);
    let mut s = TcpStream::connect(format!("127.0.0.1:{}", amber.port)).unwrap();
    s.write_all(
        b"POST /api/v1/write HTTP/1.1\r\nHost: amber\r\nContent-Type: application/x-protobuf\r\n\
          Content-Encoding: snappy\r\nContent-Length: 1000\r\n\r\n0123456789",
    )
    .unwrap();
    let (answer, after) = read_until_closed(&mut s);
    assert!(answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{answer}");
    assert!(answer.ends_with("the request body did not arrive within body_read_timeout=1s"), "{answer}");
    assert!(after >= Duration::from_millis(900), "answered after {after:?}, before the timeout");
    assert_eq!(amber.limit_exceeded("body_read_timeout"), 1);
}

/// Write bodies that would together hold more than `max_inflight_write_bytes` (compressed plus
/// decoded) are shed with a retryable 503 naming the limit before they are decoded; the others
/// are written whole.
#[test]
fn write_bodies_beyond_max_inflight_write_bytes_are_shed_with_a_503() {
    let dir = tempfile::tempdir().unwrap();
    let limit = 5 << 20;
    let amber = Amber::start(
        dir.path(),
        &[
            "--max-body-bytes",
            "1048576",
            "--max-decoded-body-bytes",
            "4194304",
            "--max-inflight-write-bytes",
            &limit.to_string(),
        ],
    );
    let t = common::now_ms() - 60_000;
    // About 3.5 MB decoded, well compressed: one body fits in the limit, two do not.
    let body = |client: usize| {
        let value = "v".repeat(1990);
        let batch: Vec<_> = (0..1750)
            .map(|i| {
                series(
                    &[("__name__", "big"), ("c", &client.to_string()), ("v", &format!("{value}{i}"))],
                    &[(t, 1.0)],
                    &[],
                )
            })
            .collect();
        common::encode(&request(batch))
    };
    let bodies: Vec<Vec<u8>> = (0..8).map(body).collect();
    let held = |b: &[u8]| b.len() + snap::raw::decompress_len(b).unwrap();
    assert!(held(&bodies[0]) < limit && 2 * held(&bodies[0]) > limit);
    let mut stored = [false; 8];
    common::eventually("a write to be shed", Duration::from_secs(120), || {
        let results: Vec<(u16, String)> = std::thread::scope(|scope| {
            let handles: Vec<_> = bodies.iter().map(|b| scope.spawn(|| amber.write_raw(b.clone()))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut shed = false;
        for (client, (status, answer)) in results.iter().enumerate() {
            match status {
                204 => stored[client] = true,
                503 => {
                    shed = true;
                    assert_eq!(
                        answer,
                        &format!(
                            "write bodies in progress hold too much memory to take {} more bytes (limit max_inflight_write_bytes={limit}); retry later",
                            held(&bodies[client])
                        )
                    );
                }
                _ => panic!("client {client} got {status}: {answer}"),
            }
        }
        shed.then_some(())
    });
    assert!(amber.limit_exceeded("max_inflight_write_bytes") >= 1);
    for (client, stored) in stored.iter().enumerate() {
        let q =
            format!("/api/v1/query?query={}&time={}", urlencode(&format!("count(big{{c=\"{client}\"}})")), t / 1000);
        let want = if *stored { json!([{"metric": {}, "value": [t / 1000, "1750"]}]) } else { json!([]) };
        assert_eq!(amber.data(&q)["result"], want, "client {client}");
    }
}
