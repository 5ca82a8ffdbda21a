//! A one-node Ceph cluster with the RADOS Gateway on loopback (`scripts/ceph-start.sh`,
//! memstore) and an S3 user `AK`/`SK` with the bucket `amber`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::eventually;

/// A one-node Ceph cluster with the RADOS Gateway, stopped on drop.
pub struct Ceph {
    dir: PathBuf,
    port: u16,
    /// A gateway this test restarted (the first one belongs to the script's daemons).
    restarted_rgw: Option<Child>,
}

impl Ceph {
    pub fn start(dir: &Path) -> Ceph {
        let port = super::free_port();
        let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ceph-start.sh"))
            .arg(dir)
            .arg(port.to_string())
            .env("S3_BUCKET", "amber")
            .env("WITH_MGR", "0")
            .env("STORE_BYTES", "1073741824")
            .env("MON_PORT", super::free_port().to_string())
            .output()
            .expect("running scripts/ceph-start.sh (scripts/install-deps installs Ceph)");
        assert!(
            out.status.success(),
            "ceph-start.sh failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ceph { dir: dir.to_path_buf(), port, restarted_rgw: None }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// How Amber's own client reaches the bucket `amber` under `prefix`, as the S3 user.
    pub fn bucket_config(&self, prefix: &str) -> amber_storage::objstore::BucketConfig {
        amber_storage::objstore::BucketConfig {
            url: format!("s3://amber/{prefix}"),
            endpoint: Some(self.endpoint()),
            region: Some("us-east-1".into()),
            access_key_id: Some("AK".into()),
            secret_access_key: Some("SK".into()),
            allow_http: true,
        }
    }

    /// The flags that point an Amber at the bucket `amber` under `prefix`.
    pub fn amber_flags(&self, prefix: &str) -> Vec<String> {
        let c = self.bucket_config(prefix);
        let flags = [
            ("--object-store-url", Some(c.url)),
            ("--object-store-endpoint", c.endpoint),
            ("--object-store-region", c.region),
            ("--object-store-access-key-id", c.access_key_id),
            ("--object-store-secret-access-key", c.secret_access_key),
        ];
        let mut out: Vec<String> =
            flags.into_iter().flat_map(|(flag, value)| [flag.to_string(), value.expect("set above")]).collect();
        out.push("--object-store-allow-http".into());
        out
    }

    fn rgw_answers(&self) -> bool {
        reqwest::blocking::get(self.endpoint()).is_ok()
    }

    /// Kills the gateway alone (SIGKILL); the OSD keeps the data.
    pub fn stop_gateway(&mut self) {
        match self.restarted_rgw.take() {
            Some(mut c) => {
                c.kill().unwrap();
                c.wait().unwrap();
            }
            None => {
                let pids = std::fs::read_to_string(self.dir.join("pids")).unwrap();
                let pid = pids.lines().find_map(|l| l.strip_prefix("rgw ")).expect("rgw in pids").trim().to_string();
                assert!(Command::new("kill").args(["-KILL", &pid]).status().unwrap().success());
            }
        }
        eventually("the gateway to stop answering", Duration::from_secs(20), || (!self.rgw_answers()).then_some(()));
    }

    /// Starts the gateway again on the same port, as ceph-start.sh does.
    pub fn start_gateway(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("log/rgw.out")).unwrap();
        let child = Command::new("radosgw")
            .args(["-n", "client.rgw.r", "-f"])
            .env("CEPH_CONF", self.dir.join("ceph.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting radosgw");
        // ceph-stop.sh stops what the pids file names: this gateway now.
        let pids = std::fs::read_to_string(self.dir.join("pids")).unwrap();
        let pids: String = pids
            .lines()
            .map(|l| if l.starts_with("rgw ") { format!("rgw {}\n", child.id()) } else { format!("{l}\n") })
            .collect();
        std::fs::write(self.dir.join("pids"), pids).unwrap();
        self.restarted_rgw = Some(child);
        eventually("the gateway to answer again", Duration::from_secs(60), || self.rgw_answers().then_some(()));
    }
}

impl Drop for Ceph {
    fn drop(&mut self) {
        let _ = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ceph-stop.sh")).arg(&self.dir).output();
        if let Some(mut c) = self.restarted_rgw.take() {
            let _ = c.wait();
        }
    }
}
