//! `GET /api/v1/export` at the wire: exact JSON lines (samples, exemplars, a sealed window and the
//! head in one series), then the export imported into a real VictoriaMetrics (`/api/v1/import`),
//! whose own export gives back the same series, values and timestamps.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Amber, eventually, request, series};
use serde_json::Value;

const BLOCK_MS: i64 = 2 * 3600 * 1000;

/// A VictoriaMetrics single node on a free port, killed on drop.
struct Victoria {
    child: Child,
    port: u16,
}

impl Victoria {
    fn start(dir: &std::path::Path) -> Victoria {
        let port = common::free_port();
        let child = Command::new("victoria-metrics")
            .arg(format!("-storageDataPath={}", dir.display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg("-retentionPeriod=100y")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting victoria-metrics (scripts/install-deps installs it)");
        let v = Victoria { child, port };
        eventually("VictoriaMetrics to answer", Duration::from_secs(60), || {
            reqwest::blocking::get(v.url("/health")).ok().filter(|r| r.status().is_success())
        });
        v
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Victoria {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn export_lines(url: &str) -> Vec<String> {
    let r = reqwest::blocking::get(url).unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut lines: Vec<String> = r.text().unwrap().lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// Metric, values and timestamps of each line, as VictoriaMetrics reads them.
fn series_of(lines: &[String]) -> Vec<(Value, Value, Value)> {
    let mut out: Vec<(Value, Value, Value)> = lines
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            (v["metric"].clone(), v["values"].clone(), v["timestamps"].clone())
        })
        .collect();
    out.sort_by_key(|s| s.0.to_string());
    out
}

#[test]
fn export_is_victoriametrics_json_lines_that_victoriametrics_imports() {
    let dir = tempfile::tempdir().unwrap();
    let amber = Amber::start(dir.path(), &["--enable-admin-api"]);
    let now = common::now_ms();
    let old = (now - 6 * 3600 * 1000).div_euclid(BLOCK_MS) * BLOCK_MS;
    let trace: [(&str, &str); 1] = [("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736")];
    let sealed = request(vec![
        series(
            &[("__name__", "http_requests_total"), ("job", "api")],
            &[(old, 1.0), (old + 15_000, 2.5)],
            &[(old + 15_000, 0.25, &trace)],
        ),
        series(&[("__name__", "http_requests_total"), ("job", "web")], &[(old, 7.0)], &[]),
        series(&[("__name__", "other")], &[(old, 1.0)], &[]),
    ]);
    assert_eq!(amber.write(&sealed).0, 204);
    let r = reqwest::blocking::Client::new().post(amber.url("/api/v1/admin/tsdb/seal")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let head = request(vec![series(&[("__name__", "http_requests_total"), ("job", "api")], &[(now - 1000, 4.0)], &[])]);
    assert_eq!(amber.write(&head).0, 204);

    let (status, body) = amber.get("/api/v1/export");
    assert_eq!((status, body["error"].as_str()), (400, Some("no match[] parameter provided")));

    let lines = export_lines(&amber.url("/api/v1/export?match[]=http_requests_total"));
    assert_eq!(
        lines,
        [
            format!(
                r#"{{"metric":{{"__name__":"http_requests_total","job":"api"}},"values":[1,2.5,4],"timestamps":[{old},{},{}],"exemplars":[{{"labels":{{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}},"value":0.25,"timestamp":{}}}]}}"#,
                old + 15_000,
                now - 1000,
                old + 15_000
            ),
            format!(
                r#"{{"metric":{{"__name__":"http_requests_total","job":"web"}},"values":[7],"timestamps":[{old}]}}"#
            ),
        ]
    );
    // A range leaves the rest out.
    let recent = export_lines(
        &amber.url(&format!("/api/v1/export?match[]=http_requests_total&start={}", (now - 60_000) / 1000)),
    );
    assert_eq!(
        recent,
        [format!(
            r#"{{"metric":{{"__name__":"http_requests_total","job":"api"}},"values":[4],"timestamps":[{}]}}"#,
            now - 1000
        )]
    );

    // VictoriaMetrics imports it, and its export gives the same series back.
    let every = common::urlencode("{__name__=~\".+\"}");
    let everything = export_lines(&amber.url(&format!("/api/v1/export?match[]={every}")));
    assert_eq!(everything.len(), 3);
    let vm = Victoria::start(&dir.path().join("vm"));
    let r = reqwest::blocking::Client::new()
        .post(vm.url("/api/v1/import"))
        .body(everything.join("\n") + "\n")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204, "{}", r.text().unwrap());
    let back = eventually("the import to be searchable", Duration::from_secs(60), || {
        let _ = reqwest::blocking::get(vm.url("/internal/force_flush"));
        let back = export_lines(&vm.url(&format!("/api/v1/export?match[]={every}")));
        (back.len() == 3).then_some(back)
    });
    assert_eq!(series_of(&back), series_of(&everything));
}
