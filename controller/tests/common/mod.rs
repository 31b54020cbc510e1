//! What the controller's system tests share: a `plexus-controller` subprocess
//! (killed with SIGKILL on drop, only the PID the test started) and a small
//! REST client that asserts success.

#![allow(dead_code)] // each test binary uses its own part

use plexus_tests::ovs::Ovs;
use serde_json::Value;
use std::ffi::OsStr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `plexus-controller` started by the test.
pub struct Controller {
    child: Child,
}

impl Controller {
    /// Starts `plexus-controller ARGS` with `RUST_LOG=rust_log`, stderr
    /// appended to `log`.
    pub fn start<I, S>(args: I, rust_log: &str, log: &Path) -> Controller
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_plexus-controller"))
            .args(args)
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn plexus-controller");
        Controller { child }
    }

    /// kill -9 (only the PID this test started).
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A TCP port free on loopback right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// REST client of one controller; every call but [`Api::status`] asserts a
/// 2xx answer.
pub struct Api {
    pub base: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(port: u16) -> Api {
        Api {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
        }
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(b) = &body {
            req = req.json(b);
        }
        let r = req.send().await.expect("request");
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert!(
            status.is_success(),
            "{method} {path} {body:?}: {status} {v}"
        );
        v
    }
    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Value {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }
    pub async fn get(&self, path: &str) -> Value {
        self.send(reqwest::Method::GET, path, None).await
    }

    /// `/v1/status`, or None while the controller does not answer.
    pub async fn status(&self) -> Option<Value> {
        let r = self
            .http
            .get(format!("{}/v1/status", self.base))
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }

    /// Waits up to 20 s until `probe` (`/healthz`, `/readyz`) answers 2xx.
    pub async fn wait_up(&self, probe: &str) {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            if let Ok(r) = self.http.get(format!("{}{probe}", self.base)).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("controller {} did not come up ({probe})", self.base);
    }

    /// Waits up to 20 s until `chassis` is connected with realized revision
    /// ≥ `rev`; returns its status and how long that took.
    pub async fn wait_realized(&self, chassis: &str, rev: u64) -> (Value, Duration) {
        let t0 = Instant::now();
        let mut last = Value::Null;
        while t0.elapsed() < Duration::from_secs(20) {
            let s = self.get("/v1/status").await;
            last = s["chassis"][chassis].clone();
            if last["connected"] == true && last["realized_revision"].as_u64().unwrap_or(0) >= rev {
                return (last, t0.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("chassis {chassis} did not realize revision {rev}: {last}");
    }
}

/// The Plexus flows (cookie 0x504c58…) of `ovs`, as `ovs-ofctl dump-flows` prints them.
pub fn plexus_flows(ovs: &Ovs) -> Vec<String> {
    ovs.ofctl(&["dump-flows", "--no-names"])
        .unwrap()
        .lines()
        .filter(|l| l.contains("cookie=0x504c58"))
        .map(|l| l.trim().to_string())
        .collect()
}

/// The `duration=` of a dumped flow in seconds (-1 if it has none).
pub fn duration_of(line: &str) -> f64 {
    line.split(", ")
        .find_map(|p| p.strip_prefix("duration="))
        .and_then(|d| d.trim_end_matches('s').parse().ok())
        .unwrap_or(-1.0)
}
