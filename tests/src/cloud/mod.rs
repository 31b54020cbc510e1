//! Controller-driven ("cloud") topologies for `plexus-topo`.
//!
//! A cloud topology (see `topologies/single-switch.toml`) has a `[controller]`
//! — `plexus-controller` on loopback with its embedded redb store — and
//! `[[chassis]]`, each a switch (private userspace Open vSwitch or
//! `plexus-vswitchd`) in its own namespace that connects to the controller
//! over OpenFlow. Tenants, VPCs, subnets and security groups are created
//! through the controller's REST API, every `[[host]]` is a namespace cabled
//! to its chassis and bound to a controller port, and nothing forwards until
//! the controller has compiled and installed the flows. The checks then test
//! what the model promises: a reachability matrix, installed flows, and a
//! controller kill -9 under a ping flood.
//!
//! Everything a run creates is recorded in its state directory *before* it
//! is created ([`state`]), so `plexus-topo down --all` removes it even after
//! the runner was killed.

pub mod attack;
pub mod dhcp;
pub mod frames;
mod l3;
pub mod soak;
pub use l3::{name_client, name_server};
pub mod overlay;
mod sidecar;
pub mod spec;
pub mod state;
pub mod tools;
pub mod workload;

use crate::netns::{self, Netns};
use crate::ovs::{NetnsMode, Ovs};
use crate::proc::{run_ok, run_with_timeout};
use crate::topo::Outcome;
use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use spec::{CheckSpec, Cloud, Expect, HostKind, Proto, SwitchKind};
use state::{ChassisState, HostState, Proc, State, TapState, remove_run, state_dir};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Interface name of a gateway chassis' port on the external network (the
/// controller's `EXTERNAL_IFACE`).
const EXTERNAL_IFACE: &str = "plx-ext";
/// MAC of the external network's host (the routers' nexthop).
const EXTERNAL_MAC: &str = "02:e0:00:00:00:01";

/// Cookie prefix of the controller's flows (`0x504c58 << 40`).
const COOKIE_PREFIX: &str = "cookie=0x504c58";

/// Loads a cloud topology file (errors name file, line and field).
pub fn load(path: &Path) -> Result<Cloud> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Cloud::parse(&text, path)
}

/// True when the file is a cloud topology (it has a `[controller]` table).
pub fn is_cloud(path: &Path) -> Result<bool> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: toml::Table = match toml::from_str(&text) {
        Ok(v) => v,
        // Let the real parser report the syntax error with its position.
        Err(_) => return Ok(text.contains("[controller]") || text.contains("[[chassis]]")),
    };
    Ok(v.contains_key("controller") || v.contains_key("chassis"))
}

/// Finds a Plexus binary: `$PLEXUS_BIN_DIR/NAME`, then beside this executable
/// (and its parent, for test binaries in `target/*/deps`).
pub fn find_bin(name: &str) -> Result<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(d) = std::env::var("PLEXUS_BIN_DIR") {
        dirs.push(PathBuf::from(d));
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(d) = exe.parent()
    {
        dirs.push(d.to_path_buf());
        if let Some(p) = d.parent() {
            dirs.push(p.to_path_buf());
        }
    }
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| {
            format!("{name} not found in {dirs:?}: build it (cargo build --release --bins) or set PLEXUS_BIN_DIR")
        })
}

/// A free loopback TCP port for a listener *below* the kernel's ephemeral
/// range. A port from that range can be taken, while its listener is down (the
/// controller's kill -9 + restart), as the source port of a client connecting
/// to it — a switch reconnecting every 200 ms, the health probe — which then
/// connects to itself (TCP simultaneous open) and keeps the port, so the
/// restarted listener cannot bind.
fn free_port() -> Result<u16> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let base = 10_000u16.min(low / 2);
    let span = u32::from(low - base).max(1);
    let seed = rand_u128();
    for i in 0..256u32 {
        let off = ((seed >> (i % 64)) as u32).wrapping_add(i.wrapping_mul(7919)) % span;
        let port = base + off as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free loopback port in {base}..{low}")
}

/// A blocking client of the controller's REST API. With several controllers
/// (HA) it fails over to the next one when one does not answer, and reads the
/// southbound status from the leader.
#[derive(Debug)]
pub struct Api {
    bases: Vec<String>,
    /// Index into `bases` of the controller that answered last.
    current: std::sync::atomic::AtomicUsize,
    token: String,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

impl Api {
    pub fn new(port: u16, token: &str) -> Result<Self> {
        Self::new_multi(&[port], token)
    }

    /// A client of several controllers sharing one model (HA).
    pub fn new_multi(ports: &[u16], token: &str) -> Result<Self> {
        Self::with_ca(ports, token, None)
    }

    /// A client of the controllers' REST APIs; with `ca` (a PEM CA certificate)
    /// over HTTPS, verifying the controllers' certificates against it.
    pub fn with_ca(ports: &[u16], token: &str, ca: Option<&Path>) -> Result<Self> {
        let scheme = if ca.is_some() { "https" } else { "http" };
        let mut http = reqwest::Client::builder().timeout(Duration::from_secs(10));
        if let Some(ca) = ca {
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            http = http
                .use_rustls_tls()
                .tls_built_in_root_certs(false)
                .add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
        }
        Ok(Self {
            bases: ports
                .iter()
                .map(|p| format!("{scheme}://127.0.0.1:{p}"))
                .collect(),
            current: Default::default(),
            token: token.to_owned(),
            http: http.build()?,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        })
    }

    fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<Value> {
        use std::sync::atomic::Ordering;
        let n = self.bases.len();
        let first = self.current.load(Ordering::Relaxed) % n;
        let mut last_err = None;
        for k in 0..n {
            let i = (first + k) % n;
            match self.send_to(i, method.clone(), path, body) {
                Ok(v) => {
                    self.current.store(i, Ordering::Relaxed);
                    return Ok(v);
                }
                // Not answering (killed): try the next controller.
                Err(e) if e.downcast_ref::<reqwest::Error>().is_some() => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow!("no controller")))
    }

    fn send_to(
        &self,
        i: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        self.rt.block_on(async {
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.bases[i]))
                .bearer_auth(&self.token);
            if let Some(b) = body {
                req = req.json(b);
            }
            let r = req.send().await?;
            let status = r.status();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                bail!("{method} {path}: {status}: {v}");
            }
            Ok(v)
        })
    }

    /// `/v1/status` of each controller (None: not answering).
    pub fn statuses(&self) -> Vec<Option<Value>> {
        (0..self.bases.len())
            .map(|i| {
                self.send_to(i, reqwest::Method::GET, "/v1/status", None)
                    .ok()
            })
            .collect()
    }

    /// `/v1/status` of the controller that programs the switches (the only one,
    /// or the elected leader); the index of that controller.
    pub fn leader_status(&self) -> Result<(usize, Value)> {
        let all = self.statuses();
        all.into_iter()
            .enumerate()
            .find_map(|(i, s)| {
                let s = s?;
                (s["controller"]["role"] != "follower").then_some((i, s))
            })
            .context("no controller leads (election in progress?)")
    }

    pub fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.send(reqwest::Method::POST, path, Some(&body))
    }
    pub fn put(&self, path: &str, body: Value) -> Result<Value> {
        self.send(reqwest::Method::PUT, path, Some(&body))
    }
    pub fn delete(&self, path: &str) -> Result<Value> {
        self.send(reqwest::Method::DELETE, path, None)
    }
    pub fn get(&self, path: &str) -> Result<Value> {
        self.send(reqwest::Method::GET, path, None)
    }

    fn healthy(&self, i: usize) -> bool {
        self.rt.block_on(async {
            self.http
                .get(format!("{}/healthz", self.bases[i]))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
    }

    /// Waits up to `timeout` for `/healthz` of every controller.
    pub fn wait_up(&self, timeout: Duration) -> Result<()> {
        let all = || (0..self.bases.len()).all(|i| self.healthy(i));
        if crate::proc::wait_until(timeout, all) {
            Ok(())
        } else {
            bail!("controller not healthy within {timeout:?}")
        }
    }

    /// Waits until every chassis in `ids` is connected and has realized
    /// revision `rev`; returns `/v1/status`.
    pub fn wait_realized(&self, ids: &[String], rev: u64, timeout: Duration) -> Result<Value> {
        let t0 = Instant::now();
        loop {
            let s = match self.leader_status() {
                Ok((_, s)) => s,
                Err(e) if t0.elapsed() < timeout => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let behind: Vec<String> = ids
                .iter()
                .filter(|id| {
                    let c = &s["chassis"][id.as_str()];
                    c["connected"] != true || c["realized_revision"].as_u64().unwrap_or(0) < rev
                })
                .map(|id| format!("{id}: {}", s["chassis"][id.as_str()]))
                .collect();
            if behind.is_empty() {
                return Ok(s);
            }
            if t0.elapsed() > timeout {
                bail!(
                    "revision {rev} not realized within {timeout:?}: {}",
                    behind.join("; ")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn spawn_logged(cmd: &mut Command, log: &Path) -> Result<std::process::Child> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    Ok(cmd
        .stdin(Stdio::null())
        .stdout(f.try_clone()?)
        .stderr(f)
        .spawn()?)
}

/// `plexus certs ca` in the run's `pki` directory and `plexus certs issue` for
/// `controller` and `chassis-NAME` (SANs localhost, 127.0.0.1, ::1); returns the
/// CA certificate.
fn make_certs(dir: &Path, cloud: &Cloud) -> Result<PathBuf> {
    let pki = state::pki_dir(dir);
    let bin = find_bin("plexus")?;
    let certs = |args: &[&str]| {
        run_ok(
            Command::new(&bin).arg("certs").args(args),
            Duration::from_secs(30),
        )
        .map(|_| ())
    };
    let p = pki.to_string_lossy().into_owned();
    certs(&["ca", &p])?;
    let mut names = vec!["controller".to_string()];
    names.extend(
        cloud
            .chassis
            .iter()
            .map(|c| format!("chassis-{}", c.name.get_ref())),
    );
    for n in &names {
        certs(&["issue", &p, n])?;
    }
    Ok(plexus_pki::TlsFiles::in_dir(&pki, "controller").ca_cert)
}

/// The TLS files of `name` (`controller`, `chassis-NAME`) of a TLS run.
fn tls_files(dir: &Path, name: &str) -> plexus_pki::TlsFiles {
    plexus_pki::TlsFiles::in_dir(&state::pki_dir(dir), name)
}

/// In a TLS run the controller must not speak cleartext: a plain HTTP request to the
/// REST port gets no HTTP answer, and an OpenFlow 1.3 HELLO to the OpenFlow port gets
/// no HELLO back (the TLS server answers with an alert or closes).
fn check_tls_only(st: &State) -> Result<String> {
    use std::io::{Read, Write};
    let plain = |port: u16, req: &[u8]| -> Result<Vec<u8>> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.write_all(req)?;
        let mut buf = vec![0u8; 64];
        let n = match s.read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                0
            }
            Err(e) => return Err(e.into()),
        };
        buf.truncate(n);
        Ok(buf)
    };
    let http = plain(
        st.api_port,
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )?;
    if http.starts_with(b"HTTP/") {
        bail!(
            "the REST port answered cleartext HTTP: {:?}",
            String::from_utf8_lossy(&http)
        );
    }
    // OFPT_HELLO, version 0x04, length 8, xid 1.
    let of = plain(st.openflow_port, &[4, 0, 0, 8, 0, 0, 0, 1])?;
    if of.len() >= 2 && of[1] == 0 && (1..=6).contains(&of[0]) {
        bail!("the OpenFlow port answered a cleartext HELLO: {of:02x?}");
    }
    Ok(format!(
        "http:// got {} bytes, no HTTP; HELLO got {} bytes{}",
        http.len(),
        of.len(),
        if of.first() == Some(&0x15) {
            " (a TLS alert)"
        } else {
            ""
        }
    ))
}

/// Starts `plexus-controller` number `i` for the run in `dir` (with the embedded
/// store: the only one, which the switches connect to; with etcd: one of the
/// replicas, which connect to the switches while they lead); returns its record.
fn start_controller(dir: &Path, st: &State, i: usize) -> Result<Proc> {
    let bin = find_bin("plexus-controller")?;
    let mut cmd = Command::new(&bin);
    let api = st.api_ports.get(i).copied().unwrap_or(st.api_port);
    cmd.args(["--listen", &format!("127.0.0.1:{api}")])
        .arg("--token-file")
        .arg(dir.join("tokens"))
        .env(
            "RUST_LOG",
            std::env::var("PLEXUS_TOPO_LOG").unwrap_or_else(|_| "info".into()),
        );
    if let Some(rate) = st.packet_in_rate {
        cmd.args(["--packet-in-rate", &rate.to_string()]);
    }
    if st.tls {
        let f = tls_files(dir, "controller");
        cmd.arg("--private-key")
            .arg(&f.private_key)
            .arg("--certificate")
            .arg(&f.certificate)
            .arg("--ca-cert")
            .arg(&f.ca_cert)
            .arg("--https");
    }
    let (log, role) = match &st.etcd {
        None => {
            let of = if st.tls { "pssl" } else { "ptcp" };
            cmd.arg("--db").arg(dir.join("plexus.redb")).args([
                "--openflow-listen",
                &format!("{of}:{}:127.0.0.1", st.openflow_port),
            ]);
            // xDS for sidecars (the embedded-store controller only), mutual TLS
            // in a TLS run.
            cmd.args(["--xds-listen", &format!("127.0.0.1:{}", st.xds_port)]);
            if st.tls {
                cmd.arg("--xds-tls");
            }
            (dir.join("controller.log"), "controller".to_string())
        }
        Some(url) => {
            cmd.args(["--store", url, "--node-id", &format!("ctl{i}")])
                .args(["--election-ttl", "2"]);
            (
                dir.join(format!("controller-{i}.log")),
                format!("controller {i}"),
            )
        }
    };
    let child =
        spawn_logged(&mut cmd, &log).with_context(|| format!("starting {}", bin.display()))?;
    Ok(Proc {
        pid: child.id(),
        comm: "plexus-controller".into(),
        role,
    })
}

/// Starts the run's etcd cluster (`n` members, data under `dir/etcd`), recording
/// each member's PID; returns the `etcd://…` store URL once all are healthy.
fn start_etcd(r: &mut Running, n: usize) -> Result<String> {
    let bin = crate::prereq::which("etcd").context("etcd not found (scripts/install-deps.sh)")?;
    let name = r.cloud.name().to_owned();
    let edir = r.dir.join("etcd");
    std::fs::create_dir_all(&edir)?;
    let mut members = Vec::new();
    for i in 0..n {
        members.push(crate::etcd::MemberSpec {
            name: format!("plx-{name}-etcd{i}"),
            client_port: free_port()?,
            peer_port: free_port()?,
            data_dir: edir.join(format!("member{i}")),
            log: edir.join(format!("member{i}.log")),
        });
    }
    let token = format!("plx-{name}-{:08x}", rand_u128() as u32);
    for i in 0..n {
        let mut cmd = crate::etcd::member_command(&bin, &members, i, &token);
        let child = spawn_logged(&mut cmd, &edir.join(format!("member{i}.out")))
            .context("starting etcd")?;
        let p = Proc {
            pid: child.id(),
            comm: "etcd".into(),
            role: format!("etcd member {i}"),
        };
        r.record(|s| s.procs.push(p))?;
    }
    for m in &members {
        if !crate::proc::wait_until(Duration::from_secs(30), || {
            crate::etcd::healthy(m.client_port)
        }) {
            bail!("etcd member {} not healthy within 30 s", m.name);
        }
    }
    let eps: Vec<String> = members
        .iter()
        .map(|m| format!("127.0.0.1:{}", m.client_port))
        .collect();
    Ok(format!("etcd://{}", eps.join(",")))
}

fn dpid_of(index: usize) -> u64 {
    0x504c_0000_0000 + index as u64 + 1
}

/// A running cloud topology; dropping it tears everything down unless
/// [`Running::persist`] was called.
#[derive(Debug)]
pub struct Running {
    pub cloud: Cloud,
    pub dir: PathBuf,
    pub state: State,
    pub api: Api,
    ovs: Vec<Ovs>,
    persist: bool,
}

impl Running {
    fn record(&mut self, f: impl FnOnce(&mut State)) -> Result<()> {
        f(&mut self.state);
        self.state.save(&self.dir)
    }

    /// Leaves the topology up (`plexus-topo up`).
    pub fn persist(mut self) {
        self.persist = true;
        for o in self.ovs.drain(..) {
            o.persist();
        }
    }

    /// Tears down now.
    pub fn teardown(mut self) -> Result<()> {
        self.persist = true; // Drop does nothing more
        for o in self.ovs.drain(..) {
            o.persist();
        }
        remove_run(&self.dir)
    }

    fn chassis_ids(&self) -> Vec<String> {
        self.state.chassis.iter().map(|c| c.id.clone()).collect()
    }

    fn host(&self, name: &str) -> Result<&HostState> {
        self.state
            .hosts
            .iter()
            .find(|h| h.name == name)
            .with_context(|| format!("no host {name}"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.persist {
            for o in self.ovs.drain(..) {
                o.persist();
            }
            if let Err(e) = remove_run(&self.dir) {
                eprintln!("warning: tearing down {}: {e:#}", self.dir.display());
            }
        }
    }
}

/// Reattaches to a topology brought up by `up`.
pub fn attach(cloud: Cloud) -> Result<Running> {
    let dir = state_dir(cloud.name());
    let state = State::load(&dir).with_context(|| format!("is topology {} up?", cloud.name()))?;
    let ports = if state.api_ports.is_empty() {
        vec![state.api_port]
    } else {
        state.api_ports.clone()
    };
    let ca = state.tls.then(|| tls_files(&dir, "controller").ca_cert);
    let api = Api::with_ca(&ports, &state.token, ca.as_deref())?;
    Ok(Running {
        cloud,
        dir,
        state,
        api,
        ovs: Vec::new(),
        persist: true,
    })
}

/// Brings `cloud` up; `progress` gets one line per step.
pub fn up(cloud: &Cloud, file: &Path, progress: &mut dyn FnMut(&str)) -> Result<Running> {
    let dir = state_dir(cloud.name());
    remove_run(&dir).context("removing an earlier run of this topology")?;
    std::fs::create_dir_all(&dir)?;
    let token = format!("plx-{:032x}", rand_u128());
    // The controller's token file holds only the token's SHA-256 (`sha256:HEX SCOPE`);
    // the token itself is kept in the run's state for the REST client.
    std::fs::write(
        dir.join("tokens"),
        format!("{} admin\n", token_hash(&token)),
    )?;
    let st = State {
        file: file.to_path_buf(),
        api_port: free_port()?,
        openflow_port: free_port()?,
        xds_port: free_port()?,
        token: token.clone(),
        packet_in_rate: cloud
            .controller
            .packet_in_rate
            .as_ref()
            .map(|r| *r.get_ref()),
        tls: cloud.controller.tls(),
        ..State::default()
    };
    st.save(&dir)?;
    let ca = if st.tls {
        progress("TLS: plexus certs ca + a certificate for the controller and each chassis");
        Some(make_certs(&dir, cloud)?)
    } else {
        None
    };
    let api = Api::with_ca(&[st.api_port], &token, ca.as_deref())?;
    let mut r = Running {
        cloud: cloud.clone(),
        dir: dir.clone(),
        state: st,
        api,
        ovs: Vec::new(),
        persist: false,
    };
    let name = cloud.name().to_owned();

    let ha = cloud.controller.etcd();
    if ha {
        let (n, members) = (cloud.controller.replicas(), cloud.controller.etcd_members());
        progress(&format!(
            "starting etcd ({members} member(s), data in the run's directory)"
        ));
        let url = start_etcd(&mut r, members)?;
        let ports = (0..n).map(|_| free_port()).collect::<Result<Vec<u16>>>()?;
        r.record(|s| {
            s.etcd = Some(url);
            s.api_port = ports[0];
            s.api_ports = ports.clone();
        })?;
        r.api = Api::new_multi(&ports, &token)?;
        progress(&format!(
            "starting {n} plexus-controller(s) on etcd (leader election; the leader programs the switches)"
        ));
        for i in 0..n {
            let ctl = start_controller(&dir, &r.state, i)?;
            r.record(|s| s.procs.push(ctl))?;
        }
        r.api.wait_up(Duration::from_secs(20))?;
        if !crate::proc::wait_until(Duration::from_secs(20), || r.api.leader_status().is_ok()) {
            bail!("no controller was elected leader within 20 s");
        }
    } else {
        progress("starting plexus-controller (embedded redb store)");
        let ctl = start_controller(&dir, &r.state, 0)?;
        r.record(|s| s.procs.push(ctl))?;
        r.api.wait_up(Duration::from_secs(20))?;
    }

    // Namespaces and cables first: plexus-vswitchd takes its ports at start.
    let ch_ns: HashMap<&str, String> = cloud
        .chassis
        .iter()
        .map(|c| {
            (
                c.name.get_ref().as_str(),
                format!("plx-{name}-{}", c.name.get_ref()),
            )
        })
        .collect();
    for c in &cloud.chassis {
        let ns = ch_ns[c.name.get_ref().as_str()].clone();
        r.record(|s| s.netns.push(ns.clone()))?;
        Netns::create(&ns)?.persist();
    }
    // The underlay: a Linux bridge `ul` in its own namespace and one veth per
    // chassis (`u<i>` on the bridge, `ul0` in the chassis) for its VTEP /24.
    let ul_name = format!("plx-{name}-ul");
    r.record(|s| {
        s.netns.push(ul_name.clone());
        s.underlay_netns = ul_name.clone();
    })?;
    Netns::create(&ul_name)?.persist();
    let ul = Netns::existing(&ul_name)?;
    ul.ip(&["link", "add", "ul", "type", "bridge"])?;
    ul.ip(&["link", "set", "ul", "up"])?;
    for (i, c) in cloud.chassis.iter().enumerate() {
        let cns = Netns::existing(&ch_ns[c.name.get_ref().as_str()])?;
        let port = format!("u{i}");
        netns::veth(&port, &ul, "ul0", &cns)?;
        ul.ip(&["link", "set", &port, "master", "ul"])?;
    }
    let mut ports: HashMap<&str, Vec<(String, u32)>> = HashMap::new();
    for h in &cloud.hosts {
        let hn = h.name.get_ref();
        let ns = format!("plx-{name}-{hn}");
        r.record(|s| s.netns.push(ns.clone()))?;
        let hns = Netns::create(&ns)?;
        let hns_name = hns.persist();
        if h.kind() != HostKind::Veth {
            // Pods and VMs are attached after the switch is up.
            continue;
        }
        let hns = Netns::existing(&hns_name)?;
        let cns = Netns::existing(&ch_ns[h.chassis.get_ref().as_str()])?;
        let sif = format!("{name}-{hn}");
        netns::veth(&sif, &cns, "eth0", &hns)?;
        // A userspace switch forwards frames as they are: with TX checksum
        // offload the kernel leaves TCP checksums unfinished.
        run_ok(
            hns.command("ethtool").args(["-K", "eth0", "tx", "off"]),
            Duration::from_secs(10),
        )
        .with_context(|| format!("ethtool -K eth0 tx off in {hns_name}"))?;
        // Room for the VXLAN encapsulation (50 bytes) on the 1500-byte underlay.
        hns.ip(&["link", "set", "eth0", "mtu", "1450"])?;
        let list = ports.entry(h.chassis.get_ref().as_str()).or_default();
        let ofport = list.len() as u32 + 1;
        list.push((sif, ofport));
    }

    // The external network: a namespace cabled to port `plx-ext` of the
    // gateway chassis (its address is the routers' nexthop).
    let external = match &cloud.external {
        None => None,
        Some(x) => {
            let xn = format!("plx-{name}-ext");
            r.record(|s| s.netns.push(xn.clone()))?;
            Netns::create(&xn)?.persist();
            let xns = Netns::existing(&xn)?;
            let cn = x.chassis.get_ref().as_str();
            let cns = Netns::existing(&ch_ns[cn])?;
            netns::veth(EXTERNAL_IFACE, &cns, "eth0", &xns)?;
            xns.ip(&["link", "set", "eth0", "address", EXTERNAL_MAC])?;
            xns.ip(&["addr", "add", x.ip.get_ref(), "dev", "eth0"])?;
            run_ok(
                xns.command("ethtool").args(["-K", "eth0", "tx", "off"]),
                Duration::from_secs(10),
            )?;
            let list = ports.entry(cn).or_default();
            let ofport = list.len() as u32 + 1;
            list.push((EXTERNAL_IFACE.to_string(), ofport));
            let ip = x.ip.get_ref().split('/').next().unwrap_or("").to_owned();
            let hs = HostState {
                name: x.name.get_ref().clone(),
                netns: xn,
                ip,
                mac: EXTERNAL_MAC.into(),
                chassis: cn.to_owned(),
                vni: 0,
            };
            r.record(|s| s.hosts.push(hs.clone()))?;
            Some(hs)
        }
    };

    let workloads = cloud.hosts.iter().any(|h| h.kind() != HostKind::Veth);
    if workloads {
        // Pods' plugin and VMs' attach CLI run in chassis namespaces and
        // read the client token from a file, as on a real node.
        let tf = workload::token_file(&dir);
        std::fs::write(&tf, format!("{token}\n"))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tf, std::fs::Permissions::from_mode(0o600))?;
        let p = workload::start_api_bridge(&dir, r.state.api_port)?;
        r.record(|s| s.procs.push(p))?;
    }
    // chassis name -> OVSDB target of its switch (chassis with pods or VMs)
    let mut ovsdb_of: HashMap<String, String> = HashMap::new();
    let mut chassis_ids = Vec::new();
    for (i, c) in cloud.chassis.iter().enumerate() {
        let cn = c.name.get_ref();
        let ns = ch_ns[cn.as_str()].clone();
        let dpid = dpid_of(i);
        let plist = ports.get(cn.as_str()).cloned().unwrap_or_default();
        let target = format!(
            "{}:127.0.0.1:{}",
            if r.state.tls { "ssl" } else { "tcp" },
            r.state.openflow_port
        );
        let vtep = c.vtep(i);
        let cns = Netns::existing(&ns)?;
        let (ofctl_target, ovsdb) = match c.switch {
            SwitchKind::Ovs => {
                progress(&format!(
                    "chassis {cn}: private userspace Open vSwitch in {ns}"
                ));
                let odir = dir.join(format!("ovs-{cn}"));
                r.record(|s| s.ovs_dirs.push(odir.clone()))?;
                let mut b = Ovs::builder()
                    .netns(NetnsMode::Named(ns.clone()))
                    .state_dir(&odir)
                    .dpid(dpid);
                if !ha {
                    b = b.controller(&target);
                }
                // OVS protects the controller from the chassis as a whole; the
                // controller then limits each ingress port.
                // (1000: plexus-controller's default --packet-in-rate.)
                let per_port = r.state.packet_in_rate.unwrap_or(1000);
                if per_port > 0 {
                    let rate = per_port.saturating_mul(5);
                    b = b.controller_rate_limit(rate, rate / 4);
                }
                let ovs = b
                    .start()
                    .with_context(|| format!("chassis {cn}: starting Open vSwitch"))?;
                if let Some(pid) = ovs.socat_pid() {
                    let p = Proc {
                        pid,
                        comm: "socat".into(),
                        role: format!("controller bridge of chassis {cn}"),
                    };
                    r.record(|s| s.procs.push(p))?;
                }
                for (ifname, ofport) in &plist {
                    ovs.add_port(ifname, *ofport)?;
                }
                // Userspace tunnelling: the VTEP address lives on the internal
                // port of a bridge that holds the underlay interface.
                ovs.vsctl(&[
                    "add-br",
                    "br-phy",
                    "--",
                    "set",
                    "bridge",
                    "br-phy",
                    "datapath_type=netdev",
                    "fail_mode=standalone",
                    "--",
                    "add-port",
                    "br-phy",
                    "ul0",
                ])
                .with_context(|| format!("chassis {cn}: underlay bridge br-phy"))?;
                cns.ip(&["addr", "add", &format!("{vtep}/24"), "dev", "br-phy"])?;
                cns.ip(&["link", "set", "br-phy", "up"])?;
                ovsdb_of.insert(cn.clone(), ovs.db_target());
                let t = format!("unix:{}", ovs.mgmt_socket().display());
                let db = ovs.db_target();
                r.ovs.push(ovs);
                (t, db)
            }
            SwitchKind::Plexus => {
                progress(&format!(
                    "chassis {cn}: plexus-vswitchd (AF_PACKET ports) in {ns}"
                ));
                // OVSDB mode: the daemon serves the Open_vSwitch database on a
                // unix socket and is configured through it like ovs-vswitchd
                // (ovs-vsctl here, the controller for the tunnel port).
                let bin = find_bin("plexus-vswitchd")?;
                let listen = free_port()?;
                let sock = dir.join(format!("ovsdb-{cn}.sock"));
                let rundir = dir.join(format!("run-{cn}"));
                std::fs::create_dir_all(&rundir)?;
                let mut cmd = Command::new(&bin);
                if r.state.tls {
                    // The switch's identity for its ssl: controller connection.
                    let f = tls_files(&dir, &format!("chassis-{cn}"));
                    cmd.arg("--private-key")
                        .arg(&f.private_key)
                        .arg("--certificate")
                        .arg(&f.certificate)
                        .arg("--ca-cert")
                        .arg(&f.ca_cert);
                }
                cmd.args(["--netns", &ns, "--port-type", "afpacket"])
                    .arg("--ovsdb-listen")
                    .arg(format!("punix:{}", sock.display()))
                    // The configuration survives a restart of the daemon (as OVS's conf.db).
                    .arg("--db")
                    .arg(dir.join(format!("conf-{cn}.db")))
                    .arg("--ovs-rundir")
                    .arg(&rundir);
                let log = dir.join(format!("vswitchd-{cn}.log"));
                let child = spawn_logged(&mut cmd, &log)
                    .with_context(|| format!("starting {}", bin.display()))?;
                let p = Proc {
                    pid: child.id(),
                    comm: "plexus-vswitchd".into(),
                    role: format!("chassis {cn}"),
                };
                r.record(|s| s.procs.push(p))?;
                if !crate::proc::wait_until(Duration::from_secs(20), || sock.exists()) {
                    bail!(
                        "chassis {cn}: no OVSDB socket {}; log:\n{}",
                        sock.display(),
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                let db = format!("unix:{}", sock.display());
                let passive = format!("ptcp:{listen}:127.0.0.1");
                let dpid_cfg = format!("other_config:datapath-id={dpid:016x}");
                let mut args = vec![
                    "add-br",
                    "br0",
                    "--",
                    "set",
                    "bridge",
                    "br0",
                    &dpid_cfg,
                    "fail_mode=secure",
                    "--",
                    "set-controller",
                    "br0",
                ];
                // With several controllers the leader connects to the switch.
                if !ha {
                    args.push(&target);
                }
                args.push(&passive);
                vsctl(&db, &args).with_context(|| format!("chassis {cn}: bridge br0"))?;
                // The bridge's control socket (plexus-appctl), where the harness
                // looks for a chassis' (`vswitchd-NAME.ctl` in the run's dir).
                let ctl = rundir.join("br0.ctl");
                if !crate::proc::wait_until(Duration::from_secs(10), || ctl.exists()) {
                    bail!(
                        "chassis {cn}: plexus-vswitchd did not create {}",
                        ctl.display()
                    );
                }
                std::os::unix::fs::symlink(&ctl, dir.join(format!("vswitchd-{cn}.ctl")))?;
                ovsdb_of.insert(cn.clone(), db.clone());
                for (ifname, ofport) in &plist {
                    vsctl(
                        &db,
                        &[
                            "add-port",
                            "br0",
                            ifname,
                            "--",
                            "set",
                            "Interface",
                            ifname,
                            &format!("ofport_request={ofport}"),
                        ],
                    )
                    .with_context(|| format!("chassis {cn}: port {ifname}"))?;
                }
                cns.ip(&["addr", "add", &format!("{vtep}/24"), "dev", "ul0"])?;
                (format!("tcp:127.0.0.1:{listen}"), db)
            }
        };
        let mut endpoint = json!({"datapath_id": format!("{dpid:#x}"), "ovsdb": ovsdb});
        if ha {
            // Whoever leads connects to the switch (OVS: its management socket).
            endpoint["openflow"] = json!(ofctl_target);
        }
        let obj = r.api.post(
            "/v1/chassis",
            json!({"name": cn, "vtep_ip": vtep.to_string(), "endpoint": endpoint}),
        )?;
        let id = obj["id"].as_str().context("chassis id")?.to_owned();
        chassis_ids.push((cn.clone(), id.clone()));
        let kind = match c.switch {
            SwitchKind::Ovs => "ovs",
            SwitchKind::Plexus => "plexus-vswitchd",
        };
        if cloud.has_workloads(cn) {
            let p = workload::start_chassis_api_bridge(&dir, &ns, r.state.api_port)?;
            r.record(|s| s.procs.push(p))?;
        }
        r.record(|s| {
            s.chassis.push(ChassisState {
                name: cn.clone(),
                id,
                netns: ns,
                ofctl_target,
                kind: kind.into(),
                vtep: vtep.to_string(),
                underlay_port: format!("u{i}"),
                ovsdb: ovsdb_of.get(cn.as_str()).cloned().unwrap_or_default(),
            })
        })?;
    }

    progress("creating tenants, VPCs, subnets and security groups through the REST API");
    let mut last_rev = 0u64;
    // (tenant, vpc, subnet) -> (subnet id, prefix len); (tenant, group) -> id
    let mut subnets: HashMap<(String, String, String), (String, String)> = HashMap::new();
    let mut groups: HashMap<(String, String), String> = HashMap::new();
    let mut vpc_ids: HashMap<(String, String), String> = HashMap::new();
    let mut vnis: HashMap<(String, String), u32> = HashMap::new();
    let mut gateways: HashMap<(String, String, String), String> = HashMap::new();
    let mut port_ids: HashMap<String, String> = HashMap::new();
    for t in &cloud.tenants {
        let tn = t.name.get_ref().clone();
        let tenant = r.api.post("/v1/tenants", json!({"name": tn}))?;
        let tid = tenant["id"].as_str().context("tenant id")?.to_owned();
        for v in &t.vpcs {
            let cidrs: Vec<&str> = v.cidrs.iter().map(|c| c.get_ref().as_str()).collect();
            let vpc = r.api.post(
                "/v1/vpcs",
                json!({"tenant_id": tid, "name": v.name.get_ref(), "cidrs": cidrs}),
            )?;
            let vpc_id = vpc["id"].as_str().context("vpc id")?.to_owned();
            vpc_ids.insert((tn.clone(), v.name.get_ref().clone()), vpc_id.clone());
            vnis.insert(
                (tn.clone(), v.name.get_ref().clone()),
                vpc["vni"].as_u64().context("vpc vni")? as u32,
            );
            let mut subnet_ids = HashMap::new();
            for s in &v.subnets {
                let mut body = json!({"vpc_id": vpc["id"], "name": s.name.get_ref(), "cidr": s.cidr.get_ref()});
                if let Some(d) = &s.dhcp {
                    body["dhcp"] = serde_json::to_value(d)?;
                }
                let sn = r.api.post("/v1/subnets", body)?;
                if let Some(gw) = sn["gateway"].as_str() {
                    gateways.insert(
                        (
                            tn.clone(),
                            v.name.get_ref().clone(),
                            s.name.get_ref().clone(),
                        ),
                        gw.to_owned(),
                    );
                }
                subnet_ids.insert(
                    s.name.get_ref().clone(),
                    sn["id"].as_str().context("subnet id")?.to_owned(),
                );
                let prefix = s
                    .cidr
                    .get_ref()
                    .split('/')
                    .nth(1)
                    .unwrap_or("24")
                    .to_owned();
                subnets.insert(
                    (
                        tn.clone(),
                        v.name.get_ref().clone(),
                        s.name.get_ref().clone(),
                    ),
                    (sn["id"].as_str().context("subnet id")?.to_owned(), prefix),
                );
            }
            let gw = external.as_ref().map(|x| l3::ExternalGw {
                chassis_id: chassis_ids
                    .iter()
                    .find(|(n, _)| *n == x.chassis)
                    .map(|(_, id)| id.clone())
                    .unwrap_or_default(),
                nexthop: x.ip.clone(),
                nexthop_mac: x.mac.clone(),
            });
            last_rev = last_rev.max(l3::create_routers(
                &r.api,
                &vpc_id,
                v,
                &subnet_ids,
                gw.as_ref(),
            )?);
        }
        // Groups first without rules (rules may name each other), then the rules.
        for g in &t.security_groups {
            let obj = r.api.post(
                "/v1/security-groups",
                json!({"tenant_id": tid, "name": g.name.get_ref(), "rules": []}),
            )?;
            groups.insert(
                (tn.clone(), g.name.get_ref().clone()),
                obj["id"].as_str().context("group id")?.to_owned(),
            );
        }
        for g in &t.security_groups {
            let id = &groups[&(tn.clone(), g.name.get_ref().clone())];
            let rules: Option<Vec<Value>> = g.rules.as_ref().map(|rs| {
                rs.iter()
                    .map(|r| {
                        let r = r.get_ref();
                        let mut o = json!({"direction": r.direction.get_ref()});
                        if let Some(p) = &r.protocol {
                            o["protocol"] = json!(p.get_ref());
                        }
                        if let Some(p) = r.port_min {
                            o["port_min"] = json!(p);
                        }
                        if let Some(p) = r.port_max {
                            o["port_max"] = json!(p);
                        }
                        if let Some(c) = &r.remote_cidr {
                            o["remote_cidr"] = json!(c.get_ref());
                        }
                        if let Some(rg) = &r.remote_group {
                            o["remote_group_id"] =
                                json!(groups[&(tn.clone(), rg.get_ref().clone())]);
                        }
                        o
                    })
                    .collect()
            });
            let mut body = json!({"tenant_id": tid, "name": g.name.get_ref()});
            if let Some(rules) = rules {
                body["rules"] = Value::Array(rules);
            }
            let obj = r.api.put(&format!("/v1/security-groups/{id}"), body)?;
            last_rev = last_rev.max(obj["revision"].as_u64().unwrap_or(0));
        }
    }

    progress("creating ports and wiring the hosts");
    for h in &cloud.hosts {
        let hn = h.name.get_ref().clone();
        let tn = h.tenant.get_ref().clone();
        let (subnet_id, prefix) = subnets
            .get(&(
                tn.clone(),
                h.vpc.get_ref().clone(),
                h.subnet.get_ref().clone(),
            ))
            .cloned()
            .context("subnet")?;
        let chassis_id = chassis_ids
            .iter()
            .find(|(n, _)| n == h.chassis.get_ref())
            .map(|(_, id)| id.clone())
            .context("chassis")?;
        let sgs: Vec<&String> = h
            .security_groups
            .iter()
            .map(|g| &groups[&(tn.clone(), g.get_ref().clone())])
            .collect();
        if h.kind() != HostKind::Veth {
            let cns = ch_ns[h.chassis.get_ref().as_str()].clone();
            let at = workload::Attach {
                dir: &dir,
                api_port: r.state.api_port,
                chassis_ns: &cns,
                chassis_id: &chassis_id,
                ovsdb: ovsdb_of[h.chassis.get_ref()].clone(),
                bridge: workload::BRIDGE,
            };
            let hns = format!("plx-{name}-{hn}");
            let (pid, ip, mac) = match h.kind() {
                HostKind::Pod => {
                    progress(&format!("pod {hn}: plexus-cni ADD into {hns}"));
                    let sgs: Vec<String> = sgs.iter().map(|s| s.to_string()).collect();
                    let (ip, mac) = workload::cni_add(
                        &at,
                        &hn,
                        &hns,
                        &subnet_id,
                        &sgs,
                        h.ip.as_ref().map(|i| i.get_ref().as_str()),
                        h.mac.as_ref().map(|m| m.get_ref().as_str()),
                    )?;
                    // A userspace switch forwards frames as they are (see above).
                    run_ok(
                        Command::new("ip")
                            .args(["netns", "exec", &hns, "ethtool", "-K", "eth0", "tx", "off"]),
                        Duration::from_secs(10),
                    )?;
                    let want = format!("cni/plexus-topo/topo-{hn}/eth0");
                    let ports = r.api.get("/v1/ports?limit=1000")?;
                    let p = ports["items"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|p| p["name"] == want.as_str())
                        .with_context(|| format!("pod {hn}: no controller port {want}"))?;
                    last_rev = last_rev.max(p["revision"].as_u64().unwrap_or(0));
                    (p["id"].as_str().unwrap_or_default().to_owned(), ip, mac)
                }
                _ => {
                    // The VM's port: address from IPAM, served by DHCP later.
                    let mut body =
                        json!({"subnet_id": subnet_id, "name": hn, "security_groups": sgs});
                    if let Some(ip) = &h.ip {
                        body["ips"] = json!([ip.get_ref()]);
                    }
                    if let Some(m) = &h.mac {
                        body["mac"] = json!(m.get_ref());
                    }
                    let p = r.api.post("/v1/ports", body)?;
                    let pid = p["id"].as_str().context("port id")?.to_owned();
                    let mac = p["mac"].as_str().context("port mac")?.to_owned();
                    let ip = p["ips"][0].as_str().context("port ip")?.to_owned();
                    let tap = workload::tap_name(&hn);
                    let ts = TapState {
                        netns: cns.clone(),
                        name: tap.clone(),
                    };
                    r.record(|s| s.taps.push(ts))?;
                    progress(&format!("vm {hn}: plexus port attach --tap {tap} in {cns}"));
                    workload::attach_tap(&at, &tap, &pid)?;
                    let exe = find_bin("plexus-topo")?;
                    let relay = workload::start_relay(&dir, &exe, &hn, &tap, &cns, &hns, &mac)?;
                    r.record(|s| s.procs.push(relay))?;
                    let bound = r.api.get(&format!("/v1/ports/{pid}"))?;
                    last_rev = last_rev.max(bound["revision"].as_u64().unwrap_or(0));
                    (pid, ip, mac)
                }
            };
            port_ids.insert(hn.clone(), pid);
            let hs = HostState {
                name: hn,
                netns: hns,
                ip,
                mac,
                chassis: h.chassis.get_ref().clone(),
                vni: vnis[&(tn.clone(), h.vpc.get_ref().clone())],
            };
            r.record(|s| s.hosts.push(hs))?;
            continue;
        }
        let mut body = json!({"subnet_id": subnet_id, "name": hn, "security_groups": sgs,
            "binding": {"chassis_id": chassis_id, "iface": format!("{name}-{hn}")}});
        if let Some(ip) = &h.ip {
            body["ips"] = json!([ip.get_ref()]);
        }
        if let Some(m) = &h.mac {
            body["mac"] = json!(m.get_ref());
        }
        let p = r.api.post("/v1/ports", body)?;
        last_rev = last_rev.max(p["revision"].as_u64().unwrap_or(0));
        let mac = p["mac"].as_str().context("port mac")?.to_owned();
        let ip = p["ips"][0].as_str().context("port ip")?.to_owned();
        let ns = Netns::existing(&format!("plx-{name}-{hn}"))?;
        ns.ip(&["link", "set", "eth0", "address", &mac])?;
        // A `dhcp` host gets its address from the switch once the flows are in.
        if !h.dhcp {
            ns.ip(&["addr", "add", &format!("{ip}/{prefix}"), "dev", "eth0"])?;
            if let Some(gw) = gateways.get(&(
                tn.clone(),
                h.vpc.get_ref().clone(),
                h.subnet.get_ref().clone(),
            )) {
                ns.ip(&["route", "add", "default", "via", gw])?;
            }
        }
        port_ids.insert(hn.clone(), p["id"].as_str().context("port id")?.to_owned());
        let hs = HostState {
            name: hn,
            netns: ns.name().to_owned(),
            ip,
            mac,
            chassis: h.chassis.get_ref().clone(),
            vni: vnis[&(tn.clone(), h.vpc.get_ref().clone())],
        };
        r.record(|s| s.hosts.push(hs))?;
    }

    if cloud.tenants.iter().any(|t| !t.services.is_empty()) {
        progress("creating services through the REST API");
        last_rev = last_rev.max(l3::create_services(&mut r, &vpc_ids, &port_ids)?);
    }

    progress(&format!(
        "waiting until every chassis realized revision {last_rev}"
    ));
    let ids = r.chassis_ids();
    let t0 = Instant::now();
    // Pods and VMs: their switch port must be up (the controller knows its
    // ofport) before their flows can be complete.
    for h in cloud.hosts.iter().filter(|h| h.kind() != HostKind::Veth) {
        let pid = &port_ids[h.name.get_ref()];
        let mut st = Value::Null;
        let up = crate::proc::wait_until(Duration::from_secs(30), || {
            st = r
                .api
                .get(&format!("/v1/ports/{pid}/status"))
                .unwrap_or(Value::Null);
            st["state"] == "up"
        });
        if !up {
            bail!(
                "host {}: port {pid} not up on its switch: {st}",
                h.name.get_ref()
            );
        }
    }
    let rev = r.api.get("/v1/status")?["revision"].as_u64().unwrap_or(0);
    r.api
        .wait_realized(&ids, last_rev.max(rev), Duration::from_secs(60))?;
    progress(&format!(
        "flows installed on every chassis in {:?}",
        t0.elapsed()
    ));
    progress("waiting for every chassis' VXLAN port (created by the controller over OVSDB)");
    let t0 = Instant::now();
    wait_tunnels(&r, Duration::from_secs(60))?;
    progress(&format!(
        "tunnel ports up and in the flows in {:?}",
        t0.elapsed()
    ));
    for h in cloud
        .hosts
        .iter()
        .filter(|h| h.dhcp || h.kind() == HostKind::Vm)
    {
        let hs = r.host(h.name.get_ref())?.clone();
        let got =
            dhcp::configure_host(&r, &hs).with_context(|| format!("host {}: DHCP", hs.name))?;
        progress(&format!("host {}: {got} by DHCP from the switch", hs.name));
    }
    sidecar::start(&mut r, progress)?;
    Ok(r)
}

/// After a change is realized (acknowledged by every switch's barrier): lets
/// each Open vSwitch chassis finish revalidating its datapath flow cache, which
/// OVS does asynchronously after flow/group changes (`ovs-appctl
/// revalidator/wait`); until then a new connection can still hit a cached
/// megaflow of the old select group. plexus-vswitchd needs no wait: its cache
/// entries carry the table generation, so nothing after FLOW_MOD + BARRIER
/// uses an old one.
pub(crate) fn settle_datapaths(r: &Running) -> Result<()> {
    for c in r.state.chassis.iter().filter(|c| c.kind == "ovs") {
        let dir = r.dir.join(format!("ovs-{}", c.name));
        run_ok(
            Command::new("ovs-appctl")
                .env("OVS_RUNDIR", &dir)
                .arg("-t")
                .arg(dir.join("ovs-vswitchd.ctl"))
                .arg("revalidator/wait"),
            Duration::from_secs(20),
        )
        .with_context(|| format!("chassis {}: revalidator/wait", c.name))?;
    }
    Ok(())
}

/// `ovs-vsctl --db=DB ARGS` (waits until the switch applied the change).
fn vsctl(db: &str, args: &[&str]) -> Result<String> {
    run_ok(
        Command::new("ovs-vsctl")
            .args(["--timeout=20", &format!("--db={db}")])
            .args(args),
        Duration::from_secs(30),
    )
}

/// Waits until the controller reports every chassis' tunnel port (`tunnel` in
/// `/v1/status`) and the switches' flows use it: none still names the
/// placeholder port the compiler uses before the switch reported it.
fn wait_tunnels(r: &Running, timeout: Duration) -> Result<()> {
    let placeholder = plexus_controller_placeholder();
    let t0 = Instant::now();
    loop {
        // The tunnel ports are the southbound's: only the controller that
        // programs the switches (the elected leader in HA) reports them.
        let st = match r.api.leader_status() {
            Ok((_, st)) => st,
            Err(_) if t0.elapsed() <= timeout => {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut behind = Vec::new();
        for c in &r.state.chassis {
            let tun = st["chassis"][c.id.as_str()]["tunnel"]
                .as_str()
                .unwrap_or("");
            if !tun.starts_with("plx-vxlan") {
                behind.push(format!("{}: tunnel {tun:?}", c.name));
                continue;
            }
            let flows = dump_flows(&c.ofctl_target)?;
            let stale = |f: &&String| {
                f.contains(&format!("output:{placeholder}"))
                    || f.contains(&format!("in_port={placeholder}"))
            };
            if let Some(f) = flows.iter().find(stale) {
                behind.push(format!(
                    "{}: flow still on the placeholder port: {f}",
                    c.name
                ));
            }
        }
        if behind.is_empty() {
            return Ok(());
        }
        if t0.elapsed() > timeout {
            bail!(
                "tunnels not ready within {timeout:?}: {}",
                behind.join("; ")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How flows name the compiler's placeholder tunnel port (`NO_TUNNEL_OFPORT`, 0xff00).
fn plexus_controller_placeholder() -> String {
    format!("{}", 0xff00)
}

/// `sha256:` + the hex SHA-256 of `token` (the controller's hashed token-file form).
fn token_hash(token: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn rand_u128() -> u128 {
    let mut b = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    u128::from_le_bytes(b) ^ u128::from(std::process::id())
}

fn ping_once(ns: &str, ip: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-c", "1", "-W", "1", ip])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A reachability probe: ICMP, or a TCP echo through `plexus-topo`'s
/// internal echo server/client.
fn probe(
    from: &HostState,
    to: &HostState,
    proto: Proto,
    port: u16,
    expect: Expect,
    exe: &Path,
) -> Result<bool> {
    match proto {
        // Must reach: 3 tries (the first may wait for ARP). Must not: 2 tries.
        Proto::Icmp => Ok(match expect {
            Expect::Reach => (0..3).any(|_| ping_once(&from.netns, &to.ip)),
            Expect::Deny => (0..2).any(|_| ping_once(&from.netns, &to.ip)),
        }),
        Proto::Tcp => {
            let addr = format!("{}:{port}", to.ip);
            let exe = exe.to_string_lossy().into_owned();
            let mut server = Command::new("ip");
            server
                .args(["netns", "exec", &to.netns, &exe, "tcp-echo-server", &addr])
                .args(["--timeout-secs", "6"]);
            let server =
                std::thread::spawn(move || run_with_timeout(&mut server, Duration::from_secs(10)));
            std::thread::sleep(Duration::from_millis(200));
            let client = run_with_timeout(
                Command::new("ip")
                    .args(["netns", "exec", &from.netns, &exe, "tcp-echo-client", &addr])
                    .args(["--bytes", "65536", "--timeout-secs", "4"]),
                Duration::from_secs(8),
            )?;
            let _ = server.join();
            Ok(client.success())
        }
    }
}

/// Runs every check; `exe` is a `plexus-topo` binary (TCP echo helper).
pub fn verify(r: &mut Running, exe: &Path) -> Vec<Outcome> {
    let checks = r.cloud.checks.clone();
    let mut out = Vec::new();
    for c in &checks {
        match c.get_ref() {
            CheckSpec::Reach {
                from,
                to,
                proto,
                port,
                expect,
            } => {
                for a in from.names() {
                    for b in to.names() {
                        if a == b {
                            continue;
                        }
                        let what = format!(
                            "{a} -> {b} {} {}",
                            match proto {
                                Proto::Icmp => "icmp".to_string(),
                                Proto::Tcp => format!("tcp/{}", port.unwrap_or(0)),
                            },
                            match expect {
                                Expect::Reach => "reaches",
                                Expect::Deny => "is denied",
                            }
                        );
                        let result = (|| -> Result<String> {
                            let (ha, hb) = (r.host(a)?, r.host(b)?);
                            let got = probe(ha, hb, *proto, port.unwrap_or(0), *expect, exe)?;
                            let evidence = format!("{} -> {}", ha.ip, hb.ip);
                            match (expect, got) {
                                (Expect::Reach, true) => Ok(format!("{evidence}: answered")),
                                (Expect::Deny, false) => Ok(format!("{evidence}: no answer")),
                                (Expect::Reach, false) => bail!("{evidence}: no answer"),
                                (Expect::Deny, true) => {
                                    bail!("{evidence}: ANSWERED (isolation violated)")
                                }
                            }
                        })();
                        out.push(Outcome {
                            what,
                            result: result.map_err(|e| format!("{e:#}")),
                        });
                    }
                }
            }
            CheckSpec::FlowsInstalled => {
                let result = check_flows(r);
                out.push(Outcome {
                    what: "every chassis holds exactly the controller's flows".into(),
                    result: result.map_err(|e| format!("{e:#}")),
                });
            }
            CheckSpec::Attack {
                attacker,
                victim,
                attacks,
                count,
                blocked_port,
                allowed_port,
            } => {
                out.extend(attack::run_check(
                    r,
                    exe,
                    &attack::AttackCheck {
                        attacker,
                        victim,
                        attacks: attacks.as_deref(),
                        count: *count,
                        blocked_port: *blocked_port,
                        allowed_port: *allowed_port,
                    },
                ));
            }
            CheckSpec::Vxlan { from, to } => {
                out.push(overlay::check_vxlan(r, exe, from, to));
            }
            CheckSpec::VxlanForge { to, count } => {
                out.push(attack::vxlan_forge(r, exe, to, *count));
            }
            CheckSpec::Affinity {
                from,
                service,
                connections,
            } => {
                out.push(l3::check_affinity(
                    r,
                    exe,
                    &from.names(),
                    service,
                    *connections,
                ));
            }
            CheckSpec::Gateway { from } => {
                for h in from.names() {
                    out.push(l3::check_gateway(r, h));
                }
            }
            CheckSpec::Dhcp { from } => {
                for h in from.names() {
                    out.push(dhcp::check(r, exe, h));
                }
            }
            CheckSpec::Service {
                from,
                service,
                connections,
                tolerance_pct,
                remove,
            } => {
                out.extend(l3::check_service(
                    r,
                    exe,
                    from,
                    service,
                    *connections,
                    *tolerance_pct,
                    remove.as_deref(),
                ));
            }
            CheckSpec::LeaderFailover {
                from,
                to,
                seconds,
                interval_ms,
                max_takeover_s,
                max_loss_pct,
            } => {
                let result = check_failover(
                    r,
                    from,
                    to,
                    *seconds,
                    *interval_ms,
                    *max_takeover_s,
                    *max_loss_pct,
                );
                out.push(Outcome {
                    what: format!(
                        "leader kill -9 under a {seconds} s ping flood {from} -> {to} every {interval_ms} ms: takeover ≤ {max_takeover_s} s, loss ≤ {max_loss_pct} %, flows untouched"
                    ),
                    result: result.map_err(|e| format!("{e:#}")),
                });
            }
            CheckSpec::Sidecar {
                from,
                service,
                requests,
                tolerance_pct,
                then,
            } => {
                out.extend(sidecar::check(
                    r,
                    exe,
                    from,
                    service,
                    *requests,
                    *tolerance_pct,
                    then.as_deref(),
                ));
            }
            CheckSpec::ControllerRestart {
                from,
                to,
                seconds,
                interval_ms,
                down_seconds,
            } => {
                let result = check_restart(r, from, to, *seconds, *interval_ms, *down_seconds);
                let down = if *down_seconds > 0 {
                    format!(", switches disconnected for {down_seconds} s")
                } else {
                    String::new()
                };
                out.push(Outcome {
                    what: format!(
                        "controller kill -9 + restart{down} under a {seconds} s ping flood {from} -> {to} every {interval_ms} ms"
                    ),
                    result: result.map_err(|e| format!("{e:#}")),
                });
            }
            CheckSpec::PacketInFlood { from, to, seconds } => {
                let result = check_packet_in_flood(r, exe, from, to, *seconds);
                out.push(Outcome {
                    what: format!(
                        "packet-in flood {from} -> {to} for {seconds} s: rate-limited per port, API responsive"
                    ),
                    result: result.map_err(|e| format!("{e:#}")),
                });
            }
            CheckSpec::SwitchRestart {
                from,
                to,
                seconds,
                interval_ms,
            } => {
                let result = check_switch_restart(r, from, to, *seconds, *interval_ms);
                out.push(Outcome {
                    what: format!(
                        "plexus-vswitchd kill -9 + restart under a {seconds} s ping flood {from} -> {to} every {interval_ms} ms"
                    ),
                    result: result.map_err(|e| format!("{e:#}")),
                });
            }
        }
    }
    out
}

fn dump_flows(target: &str) -> Result<Vec<String>> {
    let out = run_ok(
        Command::new("ovs-ofctl").args(["-O", "OpenFlow13", "--no-names", "dump-flows", target]),
        Duration::from_secs(20),
    )?;
    Ok(out
        .lines()
        .filter(|l| l.contains(COOKIE_PREFIX))
        .map(|l| l.trim().to_owned())
        .collect())
}

fn check_flows(r: &Running) -> Result<String> {
    let rev = r.api.get("/v1/status")?["revision"].as_u64().unwrap_or(0);
    let st = r
        .api
        .wait_realized(&r.chassis_ids(), rev, Duration::from_secs(30))?;
    let mut parts = Vec::new();
    for c in &r.state.chassis {
        let want = st["chassis"][c.id.as_str()]["flow_count"]
            .as_u64()
            .unwrap_or(0);
        let have = dump_flows(&c.ofctl_target)?.len() as u64;
        if want != have || want == 0 {
            bail!(
                "chassis {} ({}): controller reports {want} flows, switch holds {have}",
                c.name,
                c.kind
            );
        }
        parts.push(format!(
            "{} ({}): {have} flows at revision {rev}",
            c.name, c.kind
        ));
    }
    Ok(parts.join("; "))
}

/// `plexus-appctl show --format json` of a plexus-vswitchd chassis.
fn appctl_show(r: &Running, chassis: &str) -> Result<Value> {
    let ctl = r.dir.join(format!("vswitchd-{chassis}.ctl"));
    let out = run_ok(
        Command::new(find_bin("plexus-appctl")?)
            .arg("-t")
            .arg(&ctl)
            .args(["--format", "json", "show"]),
        Duration::from_secs(10),
    )?;
    Ok(serde_json::from_str(&out)?)
}

/// Whether any controller of a plexus-vswitchd chassis is connected.
/// Whether a controller session is up on the chassis' switch: an active target
/// connected, or (HA: controllers connect to the switch's passive listener) a
/// passive connection that has lasted a second (an `ovs-ofctl` call does not).
fn switch_connected(r: &Running, chassis: &str) -> Result<bool> {
    let v = appctl_show(r, chassis)?;
    let active = v["controllers"]
        .as_array()
        .is_some_and(|a| a.iter().any(|c| c["connected"] == json!(true)));
    let passive = v["connections"].as_array().is_some_and(|a| {
        a.iter()
            .any(|c| c["primary"] == json!(false) && c["connected_secs"].as_u64() >= Some(1))
    });
    Ok(active || passive)
}

fn check_restart(
    r: &mut Running,
    from: &str,
    to: &str,
    seconds: u32,
    interval_ms: u32,
    down_seconds: u32,
) -> Result<String> {
    let (a, b) = (r.host(from)?.clone(), r.host(to)?.clone());
    let before: Vec<Vec<String>> = r
        .state
        .chassis
        .iter()
        .map(|c| dump_flows(&c.ofctl_target))
        .collect::<Result<_>>()?;
    // Warm the path first (neighbour entries, OVS's tunnel ARP cache, which drops
    // the first encapsulated packet to a VTEP it has not resolved): the check is
    // about the restart, not about a cold start.
    for _ in 0..3 {
        if ping_once(&a.netns, &b.ip) {
            break;
        }
    }
    let count = (u64::from(seconds) * 1000 / u64::from(interval_ms)).max(1);
    let interval = format!("{:.3}", f64::from(interval_ms) / 1000.0);
    let flood = Command::new("ip")
        .args([
            "netns", "exec", &a.netns, "ping", "-q", "-i", &interval, "-W", "1",
        ])
        .args(["-c", &count.to_string(), &b.ip])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("ping flood")?;
    if down_seconds > 0 {
        std::thread::sleep(Duration::from_secs(1));
    } else {
        std::thread::sleep(Duration::from_millis(u64::from(seconds) * 250));
    }
    // kill -9 the recorded controller, restart it on the same store.
    let old = r
        .state
        .procs
        .iter()
        .position(|p| p.role == "controller")
        .context("no controller recorded")?;
    let p = r.state.procs[old].clone();
    if !crate::ovs::process_alive(p.pid, &p.comm) {
        bail!("controller [{}] is not running", p.pid);
    }
    let _ = Command::new("kill")
        .args(["-KILL", &p.pid.to_string()])
        .status();
    // The store's file lock goes with the process: start the new one only then.
    if !crate::proc::wait_until(Duration::from_secs(20), || {
        !crate::ovs::process_alive(p.pid, &p.comm)
    }) {
        bail!("controller [{}] still alive 20 s after SIGKILL", p.pid);
    }
    let mut outage = String::new();
    if down_seconds > 0 {
        // The switches are disconnected for `down_seconds`: each
        // plexus-vswitchd must say so (fail-secure, installed flows kept).
        let killed = Instant::now();
        std::thread::sleep(Duration::from_secs(2));
        let mut disconnected = Vec::new();
        for c in r
            .state
            .chassis
            .iter()
            .filter(|c| c.kind == "plexus-vswitchd")
        {
            if switch_connected(r, &c.name)? {
                bail!("chassis {} still reports a connected controller", c.name);
            }
            disconnected.push(c.name.clone());
        }
        let rest = Duration::from_secs(u64::from(down_seconds)).saturating_sub(killed.elapsed());
        std::thread::sleep(rest);
        outage = format!(
            "; controller down {:.1?} ({} disconnected, fail-secure)",
            killed.elapsed(),
            disconnected.join(", ")
        );
    }
    let t0 = Instant::now();
    let newp = start_controller(&r.dir, &r.state, 0)?;
    r.record(|s| s.procs[old] = newp)?;
    if let Err(e) = r.api.wait_up(Duration::from_secs(20)) {
        let log = std::fs::read_to_string(r.dir.join("controller.log")).unwrap_or_default();
        // The error itself (a panic or an `Error:` line), not only the backtrace.
        let tail: Vec<&str> = log
            .lines()
            .rev()
            .filter(|l| {
                l.contains("panicked")
                    || l.contains("Error")
                    || l.contains("error")
                    || !l.starts_with(' ')
            })
            .take(8)
            .collect();
        let alive = crate::ovs::process_alive(r.state.procs[old].pid, "plexus-controller");
        bail!(
            "{e:#} (restarted controller alive: {alive}); controller.log ends:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    let rev = r.api.get("/v1/status")?["revision"].as_u64().unwrap_or(0);
    let st = r
        .api
        .wait_realized(&r.chassis_ids(), rev, Duration::from_secs(30))?;
    let resync = t0.elapsed();
    let out = flood.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or("")
        .trim()
        .to_owned();
    let churn = flow_churn(r, &st, &before)?;
    if !summary.contains(" 0% packet loss") {
        bail!("lost pings: {summary}");
    }
    if !churn.is_empty() {
        bail!("flow churn after restart: {}", churn.join("; "));
    }
    Ok(format!(
        "{summary}{outage}; resynced {resync:.1?} after restart; 0 flow adds/deletes"
    ))
}

/// Per chassis with churn since `before` (flows on the switch differ, or the
/// controller in status `st` sent adds/deletes): a description.
fn flow_churn(r: &Running, st: &Value, before: &[Vec<String>]) -> Result<Vec<String>> {
    let mut churn = Vec::new();
    for (c, before) in r.state.chassis.iter().zip(before) {
        let s = &st["chassis"][c.id.as_str()];
        let (adds, dels) = (
            s["flow_adds"].as_u64().unwrap_or(u64::MAX),
            s["flow_deletes"].as_u64().unwrap_or(u64::MAX),
        );
        let after = dump_flows(&c.ofctl_target)?;
        let norm = |v: &[String]| {
            let mut v: Vec<String> = v
                .iter()
                .map(|l| plexus_openflow::text::flow::strip_flow_stats(l))
                .collect();
            v.sort();
            v
        };
        if adds != 0 || dels != 0 || norm(&after) != norm(before) {
            churn.push(format!(
                "{}: {adds} adds, {dels} deletes, {} -> {} flows",
                c.name,
                before.len(),
                after.len()
            ));
        }
    }
    Ok(churn)
}

/// (transmitted, received) of a ping summary line.
fn ping_counts(summary: &str) -> Option<(u64, u64)> {
    let mut it = summary.split(", ");
    let tx = it.next()?.split_whitespace().next()?.parse().ok()?;
    let rx = it.next()?.split_whitespace().next()?.parse().ok()?;
    Some((tx, rx))
}

/// The `leader-failover` check (see [`spec::CheckSpec::LeaderFailover`]).
#[allow(clippy::too_many_arguments)]
fn check_failover(
    r: &mut Running,
    from: &str,
    to: &str,
    seconds: u32,
    interval_ms: u32,
    max_takeover_s: u32,
    max_loss_pct: u32,
) -> Result<String> {
    let (a, b) = (r.host(from)?.clone(), r.host(to)?.clone());
    let (old, st0) = r.api.leader_status()?;
    let rev = st0["revision"].as_u64().unwrap_or(0);
    let objects = st0["objects"].clone();
    r.api
        .wait_realized(&r.chassis_ids(), rev, Duration::from_secs(30))?;
    let before: Vec<Vec<String>> = r
        .state
        .chassis
        .iter()
        .map(|c| dump_flows(&c.ofctl_target))
        .collect::<Result<_>>()?;
    let role = format!("controller {old}");
    let pos = r
        .state
        .procs
        .iter()
        .position(|p| p.role == role)
        .with_context(|| format!("no {role} recorded"))?;
    let p = r.state.procs[pos].clone();
    let count = (u64::from(seconds) * 1000 / u64::from(interval_ms)).max(1);
    let interval = format!("{:.3}", f64::from(interval_ms) / 1000.0);
    let flood = Command::new("ip")
        .args([
            "netns", "exec", &a.netns, "ping", "-q", "-i", &interval, "-W", "1",
        ])
        .args(["-c", &count.to_string(), &b.ip])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("ping flood")?;
    std::thread::sleep(Duration::from_millis(u64::from(seconds) * 250));
    if !crate::ovs::process_alive(p.pid, &p.comm) {
        bail!("leader ctl{old} [{}] is not running", p.pid);
    }
    let _ = Command::new("kill")
        .args(["-KILL", &p.pid.to_string()])
        .status();
    let t0 = Instant::now();
    crate::proc::wait_until(Duration::from_secs(5), || {
        !crate::ovs::process_alive(p.pid, &p.comm)
    });
    let limit = Duration::from_secs(u64::from(max_takeover_s));
    let mut elected = None;
    crate::proc::wait_until(limit, || match r.api.leader_status() {
        Ok((i, _)) if i != old => {
            elected = Some((i, t0.elapsed()));
            true
        }
        _ => false,
    });
    let (new, elected) = elected.with_context(|| {
        format!("no follower became leader within {max_takeover_s} s after killing ctl{old}")
    })?;
    let st = r
        .api
        .wait_realized(&r.chassis_ids(), rev, limit.saturating_sub(t0.elapsed()))
        .context("new leader did not reconcile every switch in time")?;
    let takeover = t0.elapsed();
    // Bring the killed controller back: it must rejoin as a follower.
    let newp = start_controller(&r.dir, &r.state, old)?;
    r.record(|s| s.procs[pos] = newp)?;
    let rejoined = crate::proc::wait_until(Duration::from_secs(20), || {
        r.api.statuses()[old]
            .as_ref()
            .is_some_and(|s| s["controller"]["role"] == "follower")
    });
    let out = flood.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or("")
        .trim()
        .to_owned();
    let (tx, rx) = ping_counts(&summary).with_context(|| format!("ping summary: {summary:?}"))?;
    let churn = flow_churn(r, &st, &before)?;
    let after = r.api.get("/v1/status")?;
    if tx == 0 || (tx - rx) * 100 > u64::from(max_loss_pct) * tx {
        bail!(
            "lost {} of {tx} pings (> {max_loss_pct} %): {summary}",
            tx - rx
        );
    }
    if !churn.is_empty() {
        bail!("flow churn after failover: {}", churn.join("; "));
    }
    if after["objects"] != objects || after["revision"].as_u64() != Some(rev) {
        bail!(
            "model changed across the failover: {objects} @{rev} -> {} @{}",
            after["objects"],
            after["revision"]
        );
    }
    if !rejoined {
        bail!("restarted ctl{old} did not rejoin as a follower");
    }
    for c in r
        .state
        .chassis
        .iter()
        .filter(|c| c.kind == "plexus-vswitchd")
    {
        if !crate::proc::wait_until(Duration::from_secs(20), || {
            switch_connected(r, &c.name).unwrap_or(false)
        }) {
            bail!("chassis {} did not reconnect", c.name);
        }
    }
    Ok(format!(
        "ctl{old} killed -9; ctl{new} elected after {elected:.1?}, every switch reconciled after {takeover:.1?}; {} lost of {tx} ({summary}); 0 flow adds/deletes; {} objects kept; ctl{old} rejoined as follower",
        tx - rx,
        objects
            .as_object()
            .map_or(0, |o| o.values().filter_map(Value::as_u64).sum::<u64>())
    ))
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort_unstable();
    v.get(((v.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or_default()
}

/// Times `GET /v1/status`; `Err` if it failed.
fn api_latency(r: &Running) -> Result<Duration> {
    let t = Instant::now();
    r.api.get("/v1/status")?;
    Ok(t.elapsed())
}

/// The chassis of `host`, which must run plexus-vswitchd (the checks need its
/// control socket).
fn plexus_chassis_of(r: &Running, host: &HostState) -> Result<ChassisState> {
    let c = r
        .state
        .chassis
        .iter()
        .find(|c| c.name == host.chassis)
        .context("chassis of the source host")?
        .clone();
    if c.kind != "plexus-vswitchd" {
        bail!("chassis {} is {}, not plexus-vswitchd", c.name, c.kind);
    }
    Ok(c)
}

fn check_packet_in_flood(
    r: &mut Running,
    exe: &Path,
    from: &str,
    to: &str,
    seconds: u32,
) -> Result<String> {
    let (a, b) = (r.host(from)?.clone(), r.host(to)?.clone());
    if r.state
        .chassis
        .iter()
        .any(|c| c.name == a.chassis && c.kind == "ovs")
    {
        return check_responder_flood_ovs(r, exe, &a, seconds);
    }
    let c = plexus_chassis_of(r, &a)?;
    let iface = format!("{}-{}", r.cloud.name(), a.name);
    let port_of = |v: &Value| -> Option<Value> {
        v["ports"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == json!(iface))
            .cloned()
    };
    let before = port_of(&appctl_show(r, &c.name)?).context("port of the source host")?;
    let mut base = Vec::new();
    for _ in 0..50 {
        base.push(api_latency(r)?);
    }
    // A foreign flow punting the source's UDP to the controller.
    let flow = format!(
        "cookie=0x1,table=0,priority=65535,udp,dl_src={},actions=controller",
        a.mac
    );
    run_ok(
        Command::new("ovs-ofctl").args(["-O", "OpenFlow13", "add-flow", &c.ofctl_target, &flow]),
        Duration::from_secs(10),
    )?;
    let _ = Command::new("ip")
        .args([
            "netns", "exec", &a.netns, "ip", "neigh", "replace", &b.ip, "lladdr", &b.mac, "dev",
            "eth0",
        ])
        .status();
    let t0 = Instant::now();
    let flood = Command::new("ip")
        .args(["netns", "exec", &a.netns])
        .arg(exe)
        .args([
            "udp-flood",
            &format!("{}:9", b.ip),
            "--secs",
            &seconds.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("udp flood")?;
    let mut during = Vec::new();
    let mut failed = 0;
    while t0.elapsed() < Duration::from_secs(u64::from(seconds)) {
        match api_latency(r) {
            Ok(d) => during.push(d),
            Err(_) => failed += 1,
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = flood.wait_with_output()?;
    let elapsed = t0.elapsed();
    let sent_line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let after = port_of(&appctl_show(r, &c.name)?).context("port of the source host")?;
    let _ = run_ok(
        Command::new("ovs-ofctl").args([
            "-O",
            "OpenFlow13",
            "del-flows",
            &c.ofctl_target,
            "cookie=0x1/-1",
        ]),
        Duration::from_secs(10),
    );
    let n = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
    let (pins, dropped) = (
        n(&after, "packet_ins_sent") - n(&before, "packet_ins_sent"),
        n(&after, "packet_ins_dropped") - n(&before, "packet_ins_dropped"),
    );
    let (rate, burst) = (n(&after, "packet_in_rate"), n(&after, "packet_in_burst"));
    if failed > 0 {
        bail!("{failed} API requests failed during the flood");
    }
    if rate == 0 {
        bail!("the port has no packet-in rate limit");
    }
    if dropped == 0 {
        bail!("no packet-in dropped: the flood ({sent_line}) never exceeded {rate}/s");
    }
    let allowed = (rate as f64 * (elapsed.as_secs_f64() + 1.0)) as u64 + burst;
    if pins > allowed {
        bail!("{pins} packet-ins passed in {elapsed:.1?}, limit {rate}/s + burst {burst}");
    }
    if !switch_connected(r, &c.name)? {
        bail!("the switch lost its controller during the flood");
    }
    let (b50, b99) = (percentile(&mut base, 0.5), percentile(&mut base, 0.99));
    let (d50, d99) = (percentile(&mut during, 0.5), percentile(&mut during, 0.99));
    let dmax = during.iter().max().copied().unwrap_or_default();
    Ok(format!(
        "{sent_line}; packet-ins {pins} passed, {dropped} dropped (limit {rate}/s, burst {burst}); GET /v1/status p50/p99 {b50:.1?}/{b99:.1?} before, {d50:.1?}/{d99:.1?} (max {dmax:.1?}, {} requests, 0 failed) during",
        during.len()
    ))
}

/// A responder packet-in flood on an Open vSwitch chassis: `from` broadcasts
/// ARP requests for its subnet's gateway (answered by the controller: OVS sends
/// each up as `NXT_PACKET_IN2`) as fast as it can for `seconds`. The controller
/// must answer at most its per-port rate (`--packet-in-rate`) + burst, count the
/// rest (`responder_rate_limited`), answer every API request meanwhile, and keep
/// programming: a security group change made during the flood is realized on
/// every chassis.
fn check_responder_flood_ovs(
    r: &mut Running,
    exe: &Path,
    a: &HostState,
    seconds: u32,
) -> Result<String> {
    let c = r
        .state
        .chassis
        .iter()
        .find(|c| c.name == a.chassis)
        .context("chassis of the source host")?
        .clone();
    let ports = r.api.get("/v1/ports?limit=1000")?;
    let port = ports["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["ips"][0].as_str() == Some(a.ip.as_str()))
        .with_context(|| format!("no port with {}'s address", a.name))?;
    let subnet = r.api.get(&format!(
        "/v1/subnets/{}",
        port["subnet_id"].as_str().unwrap_or_default()
    ))?;
    let gw = subnet["gateway"]
        .as_str()
        .context("the source's subnet has no gateway (the ARP responder's address)")?
        .to_owned();
    let rate = u64::from(r.state.packet_in_rate.unwrap_or(1000));
    let burst = (rate / 4).max(25);
    let counters = |r: &Running| -> Result<(u64, u64, u64)> {
        let s = r.api.get("/v1/status")?;
        let x = &s["chassis"][c.id.as_str()];
        let n = |k: &str| x[k].as_u64().unwrap_or(0);
        Ok((
            n("responder_replies"),
            n("responder_drops"),
            n("responder_rate_limited"),
        ))
    };
    let mut base = Vec::new();
    for _ in 0..50 {
        base.push(api_latency(r)?);
    }
    let before = counters(r)?;
    let t0 = Instant::now();
    let flood = Command::new("ip")
        .args(["netns", "exec", &a.netns])
        .arg(exe)
        .args(["arp-flood", &gw, "--sender", &a.ip, "--secs"])
        .arg(seconds.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("arp flood")?;
    let mut during = Vec::new();
    let mut failed = 0;
    let mut realized = None;
    while t0.elapsed() < Duration::from_secs(u64::from(seconds)) {
        if realized.is_none() && t0.elapsed() > Duration::from_secs(1) {
            // Programming goes on: a group change reaches every chassis.
            let t = Instant::now();
            let res = sg_roundtrip(r);
            realized = Some(res.map(|()| t.elapsed()));
        }
        match api_latency(r) {
            Ok(d) => during.push(d),
            Err(_) => failed += 1,
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = flood.wait_with_output()?;
    let elapsed = t0.elapsed();
    // Packet-ins still queued in the switch and the session arrive a little later.
    std::thread::sleep(Duration::from_millis(500));
    let after = counters(r)?;
    let sent_line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() {
        bail!(
            "arp-flood failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let (replies, drops, limited) = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
    if failed > 0 {
        bail!("{failed} API requests failed during the flood");
    }
    let took = realized
        .context("the flood ended before the security group change")?
        .context("security group change during the flood")?;
    if replies == 0 {
        bail!("the controller answered none of the flood ({sent_line}): no responder at {gw}?");
    }
    if limited == 0 {
        bail!(
            "no responder packet-in rate-limited: {replies} answered ({sent_line}), limit {rate}/s"
        );
    }
    let allowed = (rate as f64 * (elapsed.as_secs_f64() + 1.0)) as u64 + burst;
    if replies > allowed {
        bail!("{replies} answered in {elapsed:.1?}, limit {rate}/s + burst {burst}");
    }
    let st = r.api.get("/v1/status")?;
    if st["chassis"][c.id.as_str()]["connected"] != true {
        bail!("chassis {} lost its session during the flood", c.name);
    }
    let (b50, b99) = (percentile(&mut base, 0.5), percentile(&mut base, 0.99));
    let (d50, d99) = (percentile(&mut during, 0.5), percentile(&mut during, 0.99));
    Ok(format!(
        "{sent_line} for {gw}; controller answered {replies}, dropped {drops}, rate-limited {limited} \
         (limit {rate}/s per port, burst {burst}); a security group change was realized on all {} \
         chassis in {took:.1?} during the flood; GET /v1/status p50/p99 {b50:.1?}/{b99:.1?} before, \
         {d50:.1?}/{d99:.1?} ({} requests, 0 failed) during",
        r.state.chassis.len(),
        during.len()
    ))
}

/// Adds a rule to the first security group, waits until every chassis realized
/// it, then restores the group's rules and waits again.
fn sg_roundtrip(r: &Running) -> Result<()> {
    let groups = r.api.get("/v1/security-groups?limit=1000")?;
    let g = groups["items"]
        .as_array()
        .and_then(|a| a.first())
        .context("no security group")?
        .clone();
    let id = g["id"].as_str().context("group id")?.to_owned();
    let mut orig = json!({});
    for k in ["tenant_id", "name", "description", "rules"] {
        if let Some(v) = g.get(k) {
            orig[k] = v.clone();
        }
    }
    let mut changed = orig.clone();
    let extra = json!({"direction": "ingress", "protocol": "tcp",
        "port_min": 7999, "port_max": 7999, "remote_cidr": "192.0.2.0/24"});
    match changed["rules"].as_array_mut() {
        Some(a) => a.push(extra),
        None => changed["rules"] = json!([extra]),
    }
    let ids = r.chassis_ids();
    for body in [changed, orig] {
        let v = r.api.put(&format!("/v1/security-groups/{id}"), body)?;
        let rev = v["revision"].as_u64().unwrap_or(0);
        r.api.wait_realized(&ids, rev, Duration::from_secs(30))?;
    }
    Ok(())
}

/// kill -9 `from`'s plexus-vswitchd under a ping flood, restart it with the
/// same command line, and wait until the controller restored its flows.
fn check_switch_restart(
    r: &mut Running,
    from: &str,
    to: &str,
    seconds: u32,
    interval_ms: u32,
) -> Result<String> {
    let (a, b) = (r.host(from)?.clone(), r.host(to)?.clone());
    let c = plexus_chassis_of(r, &a)?;
    let role = format!("chassis {}", c.name);
    let idx = r
        .state
        .procs
        .iter()
        .position(|p| p.role == role)
        .context("no plexus-vswitchd recorded for the chassis")?;
    let p = r.state.procs[idx].clone();
    if !crate::ovs::process_alive(p.pid, &p.comm) {
        bail!("plexus-vswitchd [{}] is not running", p.pid);
    }
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", p.pid))?;
    let argv: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let before = dump_flows(&c.ofctl_target)?;
    let rev = r.api.get("/v1/status")?["revision"].as_u64().unwrap_or(0);
    let st = r
        .api
        .wait_realized(std::slice::from_ref(&c.id), rev, Duration::from_secs(30))?;
    let want = st["chassis"][c.id.as_str()]["flow_count"]
        .as_u64()
        .unwrap_or(0);
    if want == 0 || before.len() as u64 != want {
        bail!(
            "before the kill: switch holds {}, controller wants {want}",
            before.len()
        );
    }
    let count = (u64::from(seconds) * 1000 / u64::from(interval_ms)).max(1);
    let interval = format!("{:.3}", f64::from(interval_ms) / 1000.0);
    let flood = Command::new("ip")
        .args([
            "netns", "exec", &a.netns, "ping", "-q", "-i", &interval, "-W", "1",
        ])
        .args(["-c", &count.to_string(), &b.ip])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("ping flood")?;
    std::thread::sleep(Duration::from_secs(1));
    let _ = Command::new("kill")
        .args(["-KILL", &p.pid.to_string()])
        .status();
    if !crate::proc::wait_until(Duration::from_secs(5), || {
        !crate::ovs::process_alive(p.pid, &p.comm)
    }) {
        bail!("plexus-vswitchd [{}] survived SIGKILL", p.pid);
    }
    let t0 = Instant::now();
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    let child = spawn_logged(&mut cmd, &r.dir.join(format!("vswitchd-{}.log", c.name)))
        .context("restarting plexus-vswitchd")?;
    let newp = Proc {
        pid: child.id(),
        comm: p.comm.clone(),
        role: role.clone(),
    };
    r.record(|s| s.procs[idx] = newp)?;
    // Converged: the switch holds exactly the controller's flows again and
    // a ping goes through.
    let mut restored = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if dump_flows(&c.ofctl_target).is_ok_and(|f| f.len() as u64 == want) {
            restored = Some(t0.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let Some(restored) = restored else {
        bail!(
            "flows not restored within 60 s: switch holds {:?}, controller wants {want}",
            dump_flows(&c.ofctl_target).map(|f| f.len())
        );
    };
    if !(0..20).any(|_| ping_once(&a.netns, &b.ip)) {
        bail!("no ping {from} -> {to} after the flows were restored");
    }
    let converged = t0.elapsed();
    let out = flood.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or("")
        .trim()
        .to_owned();
    let after = dump_flows(&c.ofctl_target)?;
    let norm = |v: &[String]| {
        let mut v: Vec<String> = v
            .iter()
            .map(|l| plexus_openflow::text::flow::strip_flow_stats(l))
            .collect();
        v.sort();
        v
    };
    if norm(&after) != norm(&before) {
        bail!(
            "restored flows differ from the ones before the kill ({} vs {})",
            after.len(),
            before.len()
        );
    }
    // Traffic flows again, both ways, after the flood.
    if !(0..3).all(|_| ping_once(&b.netns, &a.ip)) {
        bail!("{to} -> {from} does not reach after the restart");
    }
    Ok(format!(
        "{summary}; {want} flows restored {restored:.1?} after the restart, traffic through {converged:.1?} after it; flows identical to before the kill"
    ))
}

/// `plexus-topo run` for a cloud topology. Returns the number of failed items.
pub fn run(cloud: &Cloud, file: &Path, exe: &Path) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    let t0 = Instant::now();
    let mut view = crate::progress::Progress::new();
    let brought_up = up(cloud, file, &mut |s: &str| view.step(s));
    view.finish();
    match brought_up {
        Err(e) => {
            outcomes.push(Outcome {
                what: format!("bring up topology {}", cloud.name()),
                result: Err(format!("{e:#}")),
            });
            let _ = remove_run(&state_dir(cloud.name()));
        }
        Ok(mut running) => {
            outcomes.push(Outcome {
                what: format!(
                    "bring up topology {} ({} chassis, {} tenants, {} hosts)",
                    cloud.name(),
                    cloud.chassis.len(),
                    cloud.tenants.len(),
                    cloud.hosts.len()
                ),
                result: Ok(format!("in {:.1?}", t0.elapsed())),
            });
            if running.state.tls {
                outcomes.push(Outcome {
                    what: "TLS only: REST refuses http://, OpenFlow refuses a cleartext HELLO"
                        .into(),
                    result: check_tls_only(&running.state).map_err(|e| format!("{e:#}")),
                });
            }
            outcomes.extend(verify(&mut running, exe));
            let namespaces = running.state.netns.clone();
            let dir = running.dir.clone();
            let td = running.teardown().map_err(|e| format!("{e:#}"));
            let leftovers: Vec<&String> = namespaces.iter().filter(|n| netns::exists(n)).collect();
            let td = td.and_then(|_| {
                if leftovers.is_empty() && !dir.exists() {
                    Ok(format!("{} namespaces removed", namespaces.len()))
                } else {
                    Err(format!("left behind: {leftovers:?}"))
                }
            });
            outcomes.push(Outcome {
                what: "tear down".into(),
                result: td,
            });
        }
    }
    outcomes
}

/// Runs `cmd` inside host `node`'s namespace (or a chassis's) of a running topology.
pub fn exec(cloud: &Cloud, node: &str, cmd: &[String]) -> Result<std::process::ExitStatus> {
    let st = State::load(&state_dir(cloud.name()))
        .with_context(|| format!("is topology {} up?", cloud.name()))?;
    let ns = st
        .hosts
        .iter()
        .find(|h| h.name == node)
        .map(|h| h.netns.clone())
        .or_else(|| {
            st.chassis
                .iter()
                .find(|c| c.name == node)
                .map(|c| c.netns.clone())
        })
        .ok_or_else(|| anyhow!("no host or chassis {node} in topology {}", cloud.name()))?;
    let (prog, args) = cmd.split_first().context("no command")?;
    Ok(Command::new("ip")
        .args(["netns", "exec", &ns, prog])
        .args(args)
        .status()?)
}

/// Pings every host from every other host; (pairs that answered, pairs tried, lines).
pub fn ping_all(cloud: &Cloud) -> Result<(usize, usize, Vec<String>)> {
    let st = State::load(&state_dir(cloud.name()))
        .with_context(|| format!("is topology {} up?", cloud.name()))?;
    let mut lines = Vec::new();
    let (mut ok, mut n) = (0, 0);
    for a in &st.hosts {
        let mut row = format!("{:>8} ->", a.name);
        for b in &st.hosts {
            if a.name == b.name {
                continue;
            }
            n += 1;
            if (0..2).any(|_| ping_once(&a.netns, &b.ip)) {
                ok += 1;
                row.push_str(&format!(" {}", b.name));
            } else {
                row.push_str(&format!(" X({})", b.name));
            }
        }
        lines.push(row);
    }
    Ok((ok, n, lines))
}
