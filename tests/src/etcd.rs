//! A private etcd cluster (Debian's `etcd` 3.4) on loopback for tests and `plexus-topo`:
//! N members, each with its own data directory under a state directory, killed and
//! removed on drop. Members can be killed with SIGKILL and restarted on their data.

use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One member's addresses and files.
#[derive(Debug, Clone)]
pub struct MemberSpec {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

/// The command line of member `i` of `members` (`existing`: rejoin on its data).
pub fn member_command(bin: &Path, members: &[MemberSpec], i: usize, token: &str) -> Command {
    let m = &members[i];
    let cluster = members
        .iter()
        .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
        .collect::<Vec<_>>()
        .join(",");
    let client = format!("http://127.0.0.1:{}", m.client_port);
    let peer = format!("http://127.0.0.1:{}", m.peer_port);
    let mut c = Command::new(bin);
    c.args(["--name", &m.name])
        .arg("--data-dir")
        .arg(&m.data_dir)
        .args(["--listen-client-urls", &client])
        .args(["--advertise-client-urls", &client])
        .args(["--listen-peer-urls", &peer])
        .args(["--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &cluster])
        .args(["--initial-cluster-token", token])
        // `new` is ignored once the data dir holds a member (a restart rejoins).
        .args(["--initial-cluster-state", "new"])
        // Store transactions may touch many keys (a subnet's addresses).
        .args(["--max-txn-ops", "10000"])
        .args(["--logger", "zap", "--log-outputs"])
        .arg(&m.log);
    c
}

/// A GET on loopback HTTP; returns the body.
fn http_get(port: u16, path: &str) -> Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}

/// True when the member on `client_port` reports itself healthy (it has a leader).
pub fn healthy(client_port: u16) -> bool {
    http_get(client_port, "/health").is_ok_and(|b| b.contains("\"health\":\"true\""))
}

/// A running etcd cluster owned by a test.
#[derive(Debug)]
pub struct EtcdCluster {
    bin: PathBuf,
    token: String,
    members: Vec<MemberSpec>,
    children: Vec<Option<Child>>,
    dir: PathBuf,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl EtcdCluster {
    /// Starts `n` members named `PREFIX-I` with data under `dir` (created; removed on
    /// drop) and waits until every member is healthy.
    pub fn start(prefix: &str, n: usize, dir: &Path) -> Result<Self> {
        let bin =
            crate::prereq::which("etcd").context("etcd not found (apt-get install etcd-server)")?;
        std::fs::create_dir_all(dir)?;
        let mut members = Vec::new();
        for i in 0..n {
            members.push(MemberSpec {
                name: format!("{prefix}-{i}"),
                client_port: free_port()?,
                peer_port: free_port()?,
                data_dir: dir.join(format!("{prefix}-{i}.etcd")),
                log: dir.join(format!("{prefix}-{i}.log")),
            });
        }
        let mut c = EtcdCluster {
            bin,
            token: format!("{prefix}-{}", std::process::id()),
            children: (0..n).map(|_| None).collect(),
            members,
            dir: dir.to_path_buf(),
        };
        for i in 0..n {
            c.spawn(i)?;
        }
        for i in 0..n {
            c.wait_healthy(i, Duration::from_secs(30))?;
        }
        Ok(c)
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let child = member_command(&self.bin, &self.members, i, &self.token)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting etcd member {i}"))?;
        self.children[i] = Some(child);
        Ok(())
    }

    /// Waits until member `i` is healthy.
    pub fn wait_healthy(&mut self, i: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let port = self.members[i].client_port;
        while Instant::now() < deadline {
            if healthy(port) {
                return Ok(());
            }
            if let Some(c) = self.children[i].as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                let log = std::fs::read_to_string(&self.members[i].log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                bail!("etcd member {i} exited ({st}): {}", tail.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("etcd member {i} not healthy within {timeout:?}")
    }

    /// `etcd://127.0.0.1:P1,127.0.0.1:P2,...` for `plexus-controller --store`.
    pub fn store_url(&self) -> String {
        let eps: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect();
        format!("etcd://{}", eps.join(","))
    }

    /// Client URLs (`http://127.0.0.1:P`).
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client_port))
            .collect()
    }

    pub fn members(&self) -> &[MemberSpec] {
        &self.members
    }

    pub fn pid(&self, i: usize) -> Option<u32> {
        self.children[i].as_ref().map(Child::id)
    }

    /// SIGKILLs member `i` (a process this cluster started) and reaps it.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Restarts member `i` on its data directory and waits until it is healthy.
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.kill9(i);
        self.spawn(i)?;
        self.wait_healthy(i, Duration::from_secs(30))
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill9(i);
        }
        for m in &self.members {
            let _ = std::fs::remove_dir_all(&m.data_dir);
            let _ = std::fs::remove_file(&m.log);
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}
