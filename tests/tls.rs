//! HTTPS: with a certificate and key configured, Amber serves remote write and the API over TLS
//! only, and refuses to start with one of the two files missing.

mod common;

use common::{Amber, request, series};

#[test]
fn tls_serves_writes_and_queries_and_plain_http_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let args = ["--tls-cert-file", cert_path.to_str().unwrap(), "--tls-key-file", key_path.to_str().unwrap()];
    let amber = Amber::start_tls(dir.path(), &args, cert.cert.pem().as_bytes());

    let t = common::now_ms() - 60_000;
    assert_eq!(amber.write(&request(vec![series(&[("__name__", "up")], &[(t, 1.0)], &[])])), (204, String::new()));
    assert_eq!(amber.data(&format!("/api/v1/query?query=up&time={}", t / 1000))["result"][0]["value"][1], "1");

    // The same port does not speak plain HTTP.
    let plain = reqwest::blocking::get(format!("http://127.0.0.1:{}/-/ready", amber.port));
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
}

#[test]
fn a_certificate_without_its_key_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_amber"))
        .args(["--data-dir", dir.path().join("data").to_str().unwrap(), "--tls-cert-file", "/nonexistent.pem"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tls_cert_file and tls_key_file go together"), "{stderr}");
}
