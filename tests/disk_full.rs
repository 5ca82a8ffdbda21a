//! A full disk: writes get a retryable 507 before the file system is full (RocksDB meeting a
//! full disk stops the process), reads keep working, and once space returns Amber takes writes
//! again without a restart and without losing anything it acknowledged. The data directory is a
//! small tmpfs mounted by the test (it runs as root, as CI does), then grown in place.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Amber, request, series, urlencode};

/// A tmpfs mount that is unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let status =
            Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(path).status();
        assert!(status.is_ok_and(|s| s.success()), "mounting a tmpfs needs root (CI runs as root)");
        Tmpfs(path.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(&self.0).status().unwrap();
        assert!(ok.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// 1,000 series × 60 samples of incompressible values, at minute `batch` of the last hours
/// (600 KB of log a batch: the disk fills within the three hours of timestamps).
fn batch(base: i64, batch: i64) -> amber_api::prompb::WriteRequest {
    let mut x = (batch as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    let ts = |i: i64| base + batch * 60_000 + i * 1000;
    request(
        (0..1000)
            .map(|s| {
                let samples: Vec<(i64, f64)> = (0..60).map(|i| (ts(i), next())).collect();
                series(&[("__name__", "noise"), ("series", &s.to_string())], &samples, &[])
            })
            .collect(),
    )
}

#[test]
fn a_full_disk_gets_retryable_errors_reads_keep_working_and_writes_resume_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    // The data directory itself is the mount; the log stays outside it.
    let mnt = Tmpfs::mount(&dir.path().join("data"), "48m");
    let mut amber = Amber::start(
        dir.path(),
        &["--maintenance-interval", "1h", "--min-free-disk-bytes", &(16u64 << 20).to_string()],
    );
    let base = common::now_ms() - 3 * 3_600_000;

    let mut acked = 0;
    let refusal = loop {
        assert!(acked < 2000, "the disk never filled");
        let (status, body) =
            amber.try_write(&batch(base, acked)).unwrap_or_else(|e| panic!("{e}\n{}", amber.log_tail()));
        if status != 204 {
            break (status, body);
        }
        acked += 1;
    };
    assert!(acked > 0, "nothing was written before the disk filled");
    let (status, body) = refusal;
    assert_eq!(status, 507, "{body}");
    assert!(body.starts_with("storage is out of space, retry later: "), "{body}");
    assert!(
        body.ends_with(&format!("bytes free in {}, below min_free_disk_bytes=16777216", mnt.0.display())),
        "{body}"
    );

    // Reads keep working and see every acknowledged sample.
    let count = format!(
        "/api/v1/query?query={}&time={}",
        urlencode("sum(count_over_time(noise[1d]))"),
        (base + acked * 60_000) / 1000 + 60
    );
    assert_eq!(amber.data(&count)["result"][0]["value"][1], (acked * 60_000).to_string());

    // Space returns: the refused batch is taken on retry, without a restart.
    mnt.resize("512m");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = amber.write(&batch(base, acked));
        if status == 204 {
            break;
        }
        assert!(Instant::now() < deadline, "writes did not resume after space returned: {status} {body}");
        std::thread::sleep(Duration::from_millis(500));
    }
    acked += 1;
    assert_eq!(amber.write(&batch(base, acked)), (204, String::new()));
    acked += 1;

    // Nothing acknowledged was lost, across a crash too.
    amber.kill9();
    amber.restart();
    let count = format!(
        "/api/v1/query?query={}&time={}",
        urlencode("sum(count_over_time(noise[1d]))"),
        (base + acked * 60_000) / 1000 + 60
    );
    assert_eq!(amber.data(&count)["result"][0]["value"][1], (acked * 60_000).to_string());
}
