//! Real Prometheus (Debian's 2.42, `/usr/bin/prometheus`) as the reference the end-to-end tests
//! compare Amber with: started on a free port with a test's own configuration and data directory.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::free_port;

const BINARY: &str = "/usr/bin/prometheus";

/// A running `prometheus` process; killed on drop.
pub struct Prometheus {
    child: Child,
    pub port: u16,
}

impl Prometheus {
    /// Starts Prometheus with `config` (its YAML) and extra command-line `flags`, its TSDB and log
    /// (`prometheus.log`) inside `dir`, and waits until it is ready.
    pub fn start(dir: &Path, config: &str, flags: &[&str]) -> Prometheus {
        assert!(
            Path::new(BINARY).exists(),
            "{BINARY} is missing: install Debian's prometheus package (scripts/install-deps)"
        );
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(BINARY)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("prometheus-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(flags)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting prometheus");
        let prometheus = Prometheus { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        let ready =
            || reqwest::blocking::get(format!("http://127.0.0.1:{port}/-/ready")).is_ok_and(|r| r.status() == 200);
        while !ready() {
            assert!(Instant::now() < deadline, "prometheus did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        prometheus
    }

    /// GETs a JSON API path; `Null` when Prometheus does not answer with JSON.
    pub fn get(&self, path_and_query: &str) -> Value {
        get_json(self.port, path_and_query)
    }

    /// SIGTERM: Prometheus flushes its remote-write queues before it exits.
    pub fn stop(mut self) {
        Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap();
        let _ = self.child.wait();
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GETs `http://127.0.0.1:{port}{path_and_query}` as JSON; `Null` on any failure, so that a
/// polling loop can retry.
pub fn get_json(port: u16, path_and_query: &str) -> Value {
    let url = format!("http://127.0.0.1:{port}{path_and_query}");
    let text = reqwest::blocking::get(&url).and_then(|r| r.text()).unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// `data` of a query_exemplars answer with series in label order (Prometheus does not sort them).
pub fn sorted_by_series(mut data: Value) -> Value {
    if let Some(list) = data.as_array_mut() {
        list.sort_by_key(|s| s["seriesLabels"].to_string());
    }
    data
}
