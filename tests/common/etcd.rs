//! A real etcd cluster of N members on loopback (Debian's etcd-server), for the ring's tests.
//! Depends on std alone: the workspace tests `mod` it from tests/common/mod.rs, and the ring
//! crate's own tests include it by path, where none of mod.rs's helpers exist.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct EtcdCluster {
    dir: PathBuf,
    client_ports: Vec<u16>,
    peer_ports: Vec<u16>,
    children: Vec<Option<Child>>,
}

impl EtcdCluster {
    /// Starts `members` members, each with its data directory `dir/mN` and log `dir/mN.log`, and
    /// waits until every one reports itself healthy.
    pub fn start(dir: &Path, members: usize) -> EtcdCluster {
        let ports = loopback_ports(2 * members);
        std::fs::create_dir_all(dir).unwrap();
        let mut cluster = EtcdCluster {
            dir: dir.to_path_buf(),
            client_ports: ports[..members].to_vec(),
            peer_ports: ports[members..].to_vec(),
            children: (0..members).map(|_| None).collect(),
        };
        for i in 0..members {
            cluster.spawn(i);
        }
        for i in 0..members {
            cluster.wait_healthy(i);
        }
        cluster
    }

    /// `127.0.0.1:port` of each member.
    pub fn endpoints(&self) -> Vec<String> {
        self.client_ports.iter().map(|port| format!("127.0.0.1:{port}")).collect()
    }

    /// Index of the current leader, as the first live member that knows one says.
    pub fn leader(&self) -> usize {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            for (i, &port) in self.client_ports.iter().enumerate() {
                if self.children[i].is_none() {
                    continue;
                }
                let Some(status) = http(port, "POST", "/v3/maintenance/status", "{}") else { continue };
                let (Some(member), Some(leader)) = (json_field(&status, "member_id"), json_field(&status, "leader"))
                else {
                    continue;
                };
                if member == leader {
                    return i;
                }
            }
            assert!(Instant::now() < deadline, "no etcd member is the leader; see {}", self.dir.display());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILLs member `i` and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Starts member `i` again on its data directory and waits until it is healthy.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_healthy(i);
    }

    fn spawn(&mut self, i: usize) {
        let name = format!("m{i}");
        let peer_url = |port: u16| format!("http://127.0.0.1:{port}");
        let initial_cluster: Vec<String> =
            self.peer_ports.iter().enumerate().map(|(j, &port)| format!("m{j}={}", peer_url(port))).collect();
        let client_url = peer_url(self.client_ports[i]);
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join(format!("{name}.log"))).unwrap();
        let child = Command::new("etcd")
            .args(["--name", &name])
            .arg("--data-dir")
            .arg(self.dir.join(&name))
            .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url(self.peer_ports[i])])
            .args(["--initial-advertise-peer-urls", &peer_url(self.peer_ports[i])])
            .args(["--initial-cluster", &initial_cluster.join(",")])
            // Ignored on a restart: the data directory already holds the cluster.
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &format!("t-{}", self.peer_ports[0])])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("etcd on PATH (Debian's etcd-server)");
        self.children[i] = Some(child);
    }

    fn wait_healthy(&mut self, i: usize) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let child = self.children[i].as_mut().unwrap();
            if let Some(status) = child.try_wait().unwrap() {
                panic!("etcd m{i} exited ({status}); see {}", self.dir.join(format!("m{i}.log")).display());
            }
            let health = http(self.client_ports[i], "GET", "/health", "");
            if health.is_some_and(|body| json_field(&body, "health").as_deref() == Some("true")) {
                return;
            }
            assert!(Instant::now() < deadline, "etcd m{i} not healthy after {START_TIMEOUT:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}

/// `count` distinct free ports: all bound at once, so that none is handed out twice.
fn loopback_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    listeners.iter().map(|listener| listener.local_addr().unwrap().port()).collect()
}

/// The body of an HTTP/1.0 request to etcd's gateway, or None when it does not answer 200.
fn http(port: u16, method: &str, path: &str, body: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    (head.split(' ').nth(1) == Some("200")).then(|| body.to_string())
}

/// The string value of the first `"name":"value"` in a JSON text (etcd's gateway writes 64-bit
/// ids as strings).
fn json_field(json: &str, name: &str) -> Option<String> {
    let start = json.find(&format!("\"{name}\":\""))? + name.len() + 4;
    let end = json[start..].find('"')?;
    Some(json[start..start + end].to_string())
}
