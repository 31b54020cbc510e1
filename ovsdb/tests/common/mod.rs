//! Shared test helpers: tool checks, a real ovsdb-server in a tempdir, a tiny sync JSON-RPC client.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use plexus_ovsdb::rpc::{Frame, Framer, Message};
use serde_json::{Value, json};

/// True if `tool` is on PATH. Under CI=true a missing tool panics; otherwise prints SKIP.
pub fn require_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("required tool `{tool}` is not installed (CI=true)");
        }
        eprintln!("SKIP: `{tool}` not installed");
    }
    found
}

pub const VSWITCH_SCHEMA_PATH: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/vswitch.ovsschema");

/// A real `ovsdb-server` serving a fresh database in a tempdir; killed (by its PID) on drop.
pub struct RealServer {
    pub dir: tempfile::TempDir,
    child: Child,
    pub sock: PathBuf,
}

impl RealServer {
    pub fn start() -> Option<RealServer> {
        if !require_tool("ovsdb-server") || !require_tool("ovsdb-tool") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("conf.db");
        let st = Command::new("ovsdb-tool")
            .arg("create")
            .arg(&db)
            .arg(VSWITCH_SCHEMA_PATH)
            .status()
            .unwrap();
        assert!(st.success(), "ovsdb-tool create failed");
        let sock = dir.path().join("db.sock");
        let child = Command::new("ovsdb-server")
            .arg(&db)
            .arg(format!("--remote=punix:{}", sock.display()))
            .arg(format!("--unixctl={}", dir.path().join("ctl").display()))
            .arg(format!("--pidfile={}", dir.path().join("pid").display()))
            .arg(format!("--log-file={}", dir.path().join("log").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            assert!(
                Instant::now() < deadline,
                "ovsdb-server did not create its socket"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(RealServer { dir, child, sock })
    }
}

impl Drop for RealServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// Minimal blocking JSON-RPC client for tests.
pub struct SyncRpc {
    s: Box<dyn Stream>,
    framer: Framer,
    queue: Vec<Message>,
    next: u64,
    pub notes: Vec<Message>,
}

impl SyncRpc {
    pub fn unix(p: &Path) -> SyncRpc {
        let s = std::os::unix::net::UnixStream::connect(p).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        SyncRpc {
            s: Box::new(s),
            framer: Framer::default(),
            queue: vec![],
            next: 1,
            notes: vec![],
        }
    }
    pub fn tcp(addr: &str) -> SyncRpc {
        let s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        SyncRpc {
            s: Box::new(s),
            framer: Framer::default(),
            queue: vec![],
            next: 1,
            notes: vec![],
        }
    }
    pub fn send_raw(&mut self, b: &[u8]) {
        self.s.write_all(b).unwrap();
    }
    pub fn try_tcp(addr: &str) -> Option<SyncRpc> {
        let s = std::net::TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
        Some(SyncRpc {
            s: Box::new(s),
            framer: Framer::default(),
            queue: vec![],
            next: 1,
            notes: vec![],
        })
    }
    pub fn recv(&mut self) -> Message {
        self.try_recv().expect("connection closed or read failed")
    }
    /// Next message, or None if the connection failed.
    pub fn try_recv(&mut self) -> Option<Message> {
        loop {
            if !self.queue.is_empty() {
                return Some(self.queue.remove(0));
            }
            let mut buf = [0u8; 65536];
            let n = self.s.read(&mut buf).ok()?;
            if n == 0 {
                return None;
            }
            for f in self.framer.feed(&buf[..n]) {
                match f {
                    Frame::Value(v) => self.queue.push(Message::from_value(v).unwrap()),
                    Frame::Invalid(e) => panic!("bad frame {e}"),
                }
            }
        }
    }
    /// A call that returns None if the connection fails.
    pub fn try_call(&mut self, method: &str, params: Value) -> Option<Result<Value, Value>> {
        let id = self.next;
        self.next += 1;
        let m = Message::Request {
            id: json!(id),
            method: method.into(),
            params,
        };
        self.s.write_all(&m.to_bytes()).ok()?;
        loop {
            match self.try_recv()? {
                Message::Response { id: i, result } if i == json!(id) => return Some(Ok(result)),
                Message::Error { id: i, error } if i == json!(id) => return Some(Err(error)),
                other => self.notes.push(other),
            }
        }
    }
    /// Call and return (result, error) skipping (and keeping) notifications.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        let id = self.next;
        self.next += 1;
        let m = Message::Request {
            id: json!(id),
            method: method.into(),
            params,
        };
        self.s.write_all(&m.to_bytes()).unwrap();
        loop {
            match self.recv() {
                Message::Response { id: i, result } if i == json!(id) => return Ok(result),
                Message::Error { id: i, error } if i == json!(id) => return Err(error),
                Message::Request { id, method, .. } if method == "echo" => {
                    let r = Message::Response {
                        id,
                        result: json!([]),
                    };
                    self.s.write_all(&r.to_bytes()).unwrap();
                }
                other => self.notes.push(other),
            }
        }
    }
}

/// Replace UUIDs by `U<n>` in order of first appearance; reduce error objects to their `error`.
pub fn normalize(v: &Value, map: &mut HashMap<String, String>) -> Value {
    match v {
        Value::Array(a) if a.len() == 2 && a[0] == "uuid" && a[1].is_string() => {
            let n = map.len();
            let s = map
                .entry(a[1].as_str().unwrap().to_string())
                .or_insert_with(|| format!("U{n}"))
                .clone();
            json!(["uuid", s])
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| normalize(x, map)).collect()),
        Value::String(s) if uuid::Uuid::parse_str(s).is_ok() => {
            let n = map.len();
            json!(
                map.entry(s.clone())
                    .or_insert_with(|| format!("U{n}"))
                    .clone()
            )
        }
        Value::Object(o) if !o.is_empty() && o.keys().all(|k| uuid::Uuid::parse_str(k).is_ok()) => {
            // Rows keyed by UUID: order-independent normalization.
            let mut e: Vec<(&String, &Value)> = o.iter().collect();
            e.sort_by_key(|(_, v)| normalize(v, &mut HashMap::new()).to_string());
            let mut out = serde_json::Map::new();
            for (k, v) in e {
                let n = map.len();
                let k = map
                    .entry(k.clone())
                    .or_insert_with(|| format!("U{n}"))
                    .clone();
                out.insert(format!("{:06}:{k}", out.len()), normalize(v, map));
            }
            Value::Object(out)
        }
        Value::Object(o)
            if o.contains_key("error") && o.get("error").is_some_and(Value::is_string) =>
        {
            json!({"error": o["error"]})
        }
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| {
                    if k == "rows"
                        && let Value::Array(rows) = x
                    {
                        // Row order is unspecified: sort by content with UUIDs blanked.
                        let mut rows = rows.clone();
                        rows.sort_by_key(|r| normalize(r, &mut HashMap::new()).to_string());
                        return (
                            k.clone(),
                            Value::Array(rows.iter().map(|r| normalize(r, map)).collect()),
                        );
                    }
                    (k.clone(), normalize(x, map))
                })
                .collect(),
        ),
        other => other.clone(),
    }
}
