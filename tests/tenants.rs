//! Multi-tenancy by `X-Scope-OrgID`: a tenant never sees another's series, labels, samples,
//! metadata or exemplars (by query or by trace id); tenants with credentials get a 401 without
//! them; tenants survive restarts.

mod common;

use amber_api::prompb;
use common::{Amber, request, series, urlencode};
use serde_json::{Value, json};

const CONFIG: &str = r#"
[tenants.team-b]
bearer_token = "s3cret"

[tenants.team-c]
basic_auth_username = "carol"
basic_auth_password = "pa55"
"#;

/// Sends a request with the given extra headers; returns status and body.
fn send(amber: &Amber, method: &str, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, String) {
    let client = reqwest::blocking::Client::new();
    let mut req = if method == "POST" { client.post(amber.url(path)).body(body) } else { client.get(amber.url(path)) };
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn read_as(amber: &Amber, headers: &[(&str, &str)], path: &str) -> Value {
    let (status, body) = send(amber, "GET", path, headers, Vec::new());
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str::<Value>(&body).unwrap()["data"].clone()
}

fn tenant_data(name: &str, trace: &str, t: i64) -> prompb::WriteRequest {
    let mut req = request(vec![series(
        &[("__name__", &format!("{name}_requests_total")), ("job", name)],
        &[(t, 1.0)],
        &[(t, 1.0, &[("trace_id", trace)])],
    )]);
    req.metadata = vec![prompb::MetricMetadata {
        r#type: 1,
        metric_family_name: format!("{name}_requests"),
        help: format!("{name} requests"),
        unit: String::new(),
    }];
    req
}

#[test]
fn tenants_are_isolated_on_every_read_endpoint_and_credentials_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("amber.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let mut amber = Amber::start(dir.path(), &["--config", config.to_str().unwrap()]);
    let t = common::now_ms() - 60_000;
    let a = [("X-Scope-OrgID", "team-a")];
    let b = [("X-Scope-OrgID", "team-b"), ("Authorization", "Bearer s3cret")];
    assert_eq!(amber.write_with(&a, &tenant_data("a", "aaaa", t)), (204, String::new()));
    assert_eq!(amber.write_with(&b, &tenant_data("b", "bbbb", t)), (204, String::new()));

    for (headers, own, other) in [(&a[..], "a", "b"), (&b[..], "b", "a")] {
        let when = format!("time={}", t / 1000 + 1);
        let q = |expr: &str| read_as(&amber, headers, &format!("/api/v1/query?query={}&{when}", urlencode(expr)));
        let result = q(r#"{__name__=~".+"}"#)["result"].clone();
        assert_eq!(result.as_array().unwrap().len(), 1, "{own}: {result}");
        assert_eq!(result[0]["metric"]["job"], own);
        assert_eq!(q(&format!("{other}_requests_total"))["result"], json!([]));
        assert_eq!(read_as(&amber, headers, "/api/v1/labels"), json!(["__name__", "job"]));
        assert_eq!(read_as(&amber, headers, "/api/v1/label/job/values"), json!([own]));
        let series = read_as(&amber, headers, "/api/v1/series?match[]={job!=%22%22}");
        assert_eq!(series, json!([{"__name__": format!("{own}_requests_total"), "job": own}]));
        let metadata = read_as(&amber, headers, "/api/v1/metadata");
        assert_eq!(metadata.as_object().unwrap().keys().collect::<Vec<_>>(), [&format!("{own}_requests")]);
        let exemplars = read_as(&amber, headers, "/api/v1/query_exemplars?query={job!=%22%22}&start=0&end=9999999999");
        assert_eq!(exemplars.as_array().unwrap().len(), 1);
        assert_eq!(exemplars[0]["seriesLabels"]["job"], own);
        let own_trace = if own == "a" { "aaaa" } else { "bbbb" };
        let other_trace = if own == "a" { "bbbb" } else { "aaaa" };
        assert_eq!(
            read_as(&amber, headers, &format!("/api/v1/exemplars/trace/{own_trace}")).as_array().unwrap().len(),
            1
        );
        assert_eq!(read_as(&amber, headers, &format!("/api/v1/exemplars/trace/{other_trace}")), json!([]));
    }
    // The default tenant and a tenant that never wrote see nothing.
    assert_eq!(read_as(&amber, &[], "/api/v1/labels"), json!([]));
    assert_eq!(read_as(&amber, &[("X-Scope-OrgID", "team-z")], "/api/v1/exemplars/trace/aaaa"), json!([]));

    // Credentials: missing or wrong → 401, on writes and reads; basic auth works.
    let unauthorized =
        r#"{"status":"error","errorType":"unauthorized","error":"missing or wrong credentials for tenant \"team-b\""}"#;
    assert_eq!(
        send(&amber, "GET", "/api/v1/labels", &[("X-Scope-OrgID", "team-b")], Vec::new()),
        (401, unauthorized.to_string())
    );
    let wrong = [("X-Scope-OrgID", "team-b"), ("Authorization", "Bearer nope")];
    assert_eq!(send(&amber, "GET", "/api/v1/labels", &wrong, Vec::new()).0, 401);
    assert_eq!(
        amber.write_with(&wrong, &tenant_data("b", "b2", t)),
        (401, "missing or wrong credentials for tenant \"team-b\"".to_string())
    );
    let carol = [("X-Scope-OrgID", "team-c"), ("Authorization", "Basic Y2Fyb2w6cGE1NQ==")];
    assert_eq!(amber.write_with(&carol, &tenant_data("c", "cccc", t)).0, 204);
    let mallory = [("X-Scope-OrgID", "team-c"), ("Authorization", "Basic bWFsbG9yeTpwYTU1")];
    assert_eq!(send(&amber, "GET", "/api/v1/labels", &mallory, Vec::new()).0, 401);

    // An invalid tenant name is a 400.
    let (status, body) = send(&amber, "GET", "/api/v1/labels", &[("X-Scope-OrgID", "a/b")], Vec::new());
    assert_eq!(status, 400, "{body}");

    // Tenants and their data survive a crash.
    amber.restart();
    assert_eq!(read_as(&amber, &a, "/api/v1/label/job/values"), json!(["a"]));
    assert_eq!(read_as(&amber, &carol, "/api/v1/label/job/values"), json!(["c"]));
}

#[test]
fn a_required_tenant_header_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &["--require-tenant"]);
    let (status, body) = amber.write(&tenant_data("a", "aaaa", common::now_ms()));
    assert_eq!((status, body.as_str()), (401, "no org id"));
    let (status, body) = amber.get("/api/v1/labels");
    assert_eq!(status, 401);
    assert_eq!(body, json!({"status": "error", "errorType": "unauthorized", "error": "no org id"}));
}

#[test]
fn series_limit_is_per_tenant_names_its_value_and_keeps_existing_series_writable() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("amber.toml");
    std::fs::write(&config, "max_series_per_tenant = 3\n\n[tenants.small]\nmax_series_per_tenant = 2\n").unwrap();
    let amber = Amber::start(dir.path(), &["--config", config.to_str().unwrap()]);
    let t = common::now_ms() - 60_000;
    let batch = |ts: i64| {
        let names = ["one", "two", "three"];
        request(names.iter().map(|n| series(&[("__name__", "up"), ("job", n)], &[(ts, 1.0)], &[])).collect())
    };
    let small = [("X-Scope-OrgID", "small")];
    let (status, body) = amber.write_with(&small, &batch(t));
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body,
        "1 samples and 0 exemplars rejected; 2 samples and 0 exemplars written. sample at \
         {ts} for series {__name__=\"up\", job=\"three\"}: the tenant has reached its limit of 2 series \
         (max_series_per_tenant)"
            .replace("{ts}", &t.to_string())
    );
    // Series that exist keep taking samples at the limit.
    let existing = request(vec![series(&[("__name__", "up"), ("job", "one")], &[(t + 15_000, 2.0)], &[])]);
    assert_eq!(amber.write_with(&small, &existing), (204, String::new()));
    // Another tenant has the global limit and its own count.
    assert_eq!(amber.write_with(&[("X-Scope-OrgID", "big")], &batch(t)), (204, String::new()));
    let series_of =
        |headers: &[(&str, &str)]| read_as(&amber, headers, "/api/v1/series?match[]=up").as_array().unwrap().len();
    assert_eq!(series_of(&small), 2);
    assert_eq!(series_of(&[("X-Scope-OrgID", "big")]), 3);
    let (_, metrics) = send(&amber, "GET", "/metrics", &[], Vec::new());
    assert!(
        metrics.lines().any(|l| l.contains("reason=\"series_limit\"") && l.ends_with(" 1")),
        "no series_limit counter in /metrics:\n{metrics}"
    );
}
