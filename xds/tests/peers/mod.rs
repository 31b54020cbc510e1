#![allow(dead_code)]
//! Real peers for interop tests: Envoy / python from the peers venv, test HTTP backends.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The peers venv (`PEERS_VENV`, default as in scripts/install-peers.sh).
pub fn venv() -> PathBuf {
    std::env::var_os("PEERS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/var/tmp/plexus-peers-venv".into())
}

/// Finds a tool; `None` means skip (after printing `SKIP: why`), and under `CI=true` panics.
pub fn require(tool: &str, path: PathBuf) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    let why = format!(
        "{tool} not found at {} (run scripts/install-peers.sh or set PEERS_VENV)",
        path.display()
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why}");
    }
    println!("SKIP: {why}");
    None
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed (by its own PID) and reaped on drop.
pub struct ChildGuard {
    pub child: Child,
    pub name: String,
    pub log: PathBuf,
    /// The child's scratch directory (config, log), removed once the child
    /// is gone.
    pub dir: PathBuf,
}

impl ChildGuard {
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        s.lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // SIGTERM to our own child only, then SIGKILL if it lingers.
            // SAFETY: plain kill(2) on the PID of a child we spawned and have not reaped.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(5) {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Envoy bootstrap: only the ADS address (same shape as ../shared/peers/envoy-bootstrap.tmpl.yaml).
pub fn envoy_bootstrap(node: &str, ads_port: u16, admin_port: u16, api_type: &str) -> String {
    format!(
        r#"node: {{id: "{node}", cluster: test-cluster, locality: {{region: r1, zone: z1}}}}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin_port}}}}}
dynamic_resources:
  ads_config:
    api_type: {api_type}
    transport_api_version: V3
    set_node_on_first_message_only: true
    grpc_services:
    - envoy_grpc: {{cluster_name: xds_cluster}}
  cds_config: {{resource_api_version: V3, ads: {{}}}}
  lds_config: {{resource_api_version: V3, ads: {{}}}}
static_resources:
  clusters:
  - name: xds_cluster
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: xds_cluster
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{address: 127.0.0.1, port_value: {ads_port}}}
"#
    )
}

/// Starts Envoy as a direct child of this (long-lived) test process.
pub fn start_envoy(
    envoy: &PathBuf,
    node: &str,
    ads_port: u16,
    admin_port: u16,
    api_type: &str,
) -> ChildGuard {
    let dir = std::env::temp_dir().join(format!(
        "plexus-xds-envoy-{}-{admin_port}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let boot = dir.join("bootstrap.yaml");
    std::fs::write(&boot, envoy_bootstrap(node, ads_port, admin_port, api_type)).unwrap();
    let log = dir.join("envoy.log");
    let child = Command::new(envoy)
        .arg("-c")
        .arg(&boot)
        .args(["--use-dynamic-base-id", "-l", "info", "--log-path"])
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ChildGuard {
        child,
        name: "envoy".into(),
        log,
        dir,
    }
}

/// Blocking HTTP/1.1 GET; returns (status, body).
pub fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let status = buf
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok((status, dechunk(body)));
    }
    Ok((status, body.to_string()))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(len.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// Keep-alive HTTP/1.1 client (one connection, Content-Length responses).
pub struct HttpConn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl HttpConn {
    pub fn connect(addr: &str) -> std::io::Result<Self> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.set_nodelay(true)?;
        Ok(Self { s, buf: Vec::new() })
    }

    pub fn get(&mut self, path: &str) -> std::io::Result<(u16, String)> {
        write!(self.s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")?;
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
                let status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().to_string())
                    })
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                while self.buf.len() < end + 4 + len {
                    self.fill()?;
                }
                let body = String::from_utf8_lossy(&self.buf[end + 4..end + 4 + len]).to_string();
                self.buf.drain(..end + 4 + len);
                return Ok((status, body));
            }
            self.fill()?;
        }
    }

    fn fill(&mut self) -> std::io::Result<()> {
        let mut b = [0u8; 4096];
        let n = self.s.read(&mut b)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed",
            ));
        }
        self.buf.extend_from_slice(&b[..n]);
        Ok(())
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// A tiny HTTP/1.1 backend on 127.0.0.1 answering every request with its `id` as body.
pub struct HttpBackend {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl HttpBackend {
    pub fn start(id: &str) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let (id, st) = (id.to_string(), stop.clone());
        std::thread::spawn(move || {
            for c in l.incoming() {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(mut c) = c else { continue };
                let id = id.clone();
                std::thread::spawn(move || {
                    let mut buf = Vec::new();
                    let mut b = [0u8; 4096];
                    loop {
                        while let Some(end) = find(&buf, b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let r = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{}",
                                id.len(),
                                id
                            );
                            if c.write_all(r.as_bytes()).is_err() {
                                return;
                            }
                        }
                        match c.read(&mut b) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&b[..n]),
                        }
                    }
                });
            }
        });
        Self { port, stop }
    }
}

impl Drop for HttpBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Envoy admin `/stats` lines `name: value` with numeric values.
pub fn envoy_stats(admin: u16) -> BTreeMap<String, u64> {
    let (_, body) = http_get(&format!("127.0.0.1:{admin}"), "/stats").unwrap_or_default();
    body.lines()
        .filter_map(|l| l.split_once(": "))
        .filter_map(|(k, v)| v.trim().parse().ok().map(|v| (k.to_string(), v)))
        .collect()
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}
