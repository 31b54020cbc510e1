//! A private userspace Open vSwitch for tests: `ovsdb-server` + `ovs-vswitchd`
//! with the `netdev` datapath, started and stopped directly with `std::process`
//! (the Rust form of `../shared/peers/ovs-up.sh` / `ovs-down.sh`).
//!
//! - State (database, pid files, sockets, logs) lives in a unique temp dir, or
//!   in a fixed dir for long-lived topologies ([`OvsBuilder::state_dir`]).
//! - `ovs-vswitchd` runs in a private network namespace by default: each
//!   userspace OVS creates an `ovs-netdev` tap, and only one fits per netns.
//!   `ovsdb-server` always runs in the caller's namespace.
//! - `other_config:flow-limit=0` (no datapath flow cache: every packet takes
//!   the OpenFlow tables, which keeps OVS deterministic as a reference);
//!   bridge with `datapath_type=netdev`, `fail_mode=secure`,
//!   `protocols=OpenFlow13` unless told otherwise.
//! - Only the PIDs recorded in the state dir are killed (after checking the
//!   process name); [`Drop`] stops everything this handle started and removes
//!   its state dir and the namespace it created.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! let ovs = plexus_tests::ovs::Ovs::builder().start()?;
//! ovs.add_port("p1", 1)?;
//! ovs.ofctl(&["add-flow", "in_port=1,actions=drop"])?;
//! println!("{}", ovs.ofctl(&["dump-flows"])?);
//! # Ok(()) }
//! ```

use crate::netns::{self, Netns};
use crate::proc::{run_ok, wait_until};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";
const CMD_TIMEOUT: Duration = Duration::from_secs(30);

/// Where `ovs-vswitchd` runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetnsMode {
    /// A fresh namespace with a unique name, deleted on stop (the default).
    Private,
    /// This namespace; created (and then deleted on stop) if it does not exist.
    Named(String),
    /// The caller's namespace (only one userspace OVS per namespace).
    Caller,
}

/// Options for [`Ovs`]; start with [`Ovs::builder`].
#[derive(Debug, Clone)]
pub struct OvsBuilder {
    bridge: String,
    netns: NetnsMode,
    controller: Option<String>,
    dpid: Option<u64>,
    fail_mode: String,
    protocols: String,
    flow_limit: u32,
    ovsdb_tcp_port: Option<u16>,
    state_dir: Option<PathBuf>,
    bridge_enabled: bool,
    ssl_from_db: bool,
    /// `controller_rate_limit`/`controller_burst_limit` of the Controller row.
    controller_rate: Option<(u32, u32)>,
}

impl Default for OvsBuilder {
    fn default() -> Self {
        Self {
            bridge: "br0".into(),
            netns: NetnsMode::Private,
            controller: None,
            dpid: None,
            fail_mode: "secure".into(),
            protocols: "OpenFlow13".into(),
            flow_limit: 0,
            ovsdb_tcp_port: None,
            state_dir: None,
            bridge_enabled: true,
            ssl_from_db: false,
            controller_rate: None,
        }
    }
}

impl OvsBuilder {
    /// Bridge name (default `br0`).
    pub fn bridge(mut self, name: &str) -> Self {
        self.bridge = name.into();
        self
    }
    /// Where ovs-vswitchd runs (default [`NetnsMode::Private`]).
    pub fn netns(mut self, mode: NetnsMode) -> Self {
        self.netns = mode;
        self
    }
    /// OpenFlow controller target: `tcp:IP:PORT` (OVS connects out),
    /// `ptcp:PORT` (OVS listens, inside its namespace) or `unix:PATH`.
    /// A `tcp:127.x.x.x:P` target from a namespaced OVS is bridged to the
    /// caller's loopback through a unix socket + `socat`.
    pub fn controller(mut self, target: &str) -> Self {
        self.controller = Some(target.into());
        self
    }
    /// Packet-ins per second (and burst) OVS sends the controller
    /// (`controller_rate_limit`/`controller_burst_limit` of its Controller
    /// row; OVS's minimums are 100 and 25). Unset: OVS's default, unlimited.
    pub fn controller_rate_limit(mut self, rate: u32, burst: u32) -> Self {
        self.controller_rate = Some((rate.max(100), burst.max(25)));
        self
    }
    /// Datapath id announced in FEATURES_REPLY.
    pub fn dpid(mut self, dpid: u64) -> Self {
        self.dpid = Some(dpid);
        self
    }
    /// `secure` (default) or `standalone`.
    pub fn fail_mode(mut self, mode: &str) -> Self {
        self.fail_mode = mode.into();
        self
    }
    /// Comma-separated OpenFlow versions (default `OpenFlow13`).
    pub fn protocols(mut self, p: &str) -> Self {
        self.protocols = p.into();
        self
    }
    /// `other_config:flow-limit` (default 0: no datapath flow cache).
    pub fn flow_limit(mut self, n: u32) -> Self {
        self.flow_limit = n;
        self
    }
    /// Also serve OVSDB on `tcp:127.0.0.1:PORT` (caller's namespace).
    pub fn ovsdb_tcp_port(mut self, port: u16) -> Self {
        self.ovsdb_tcp_port = Some(port);
        self
    }
    /// Keep state in this fixed directory (created; removed on stop) instead of
    /// a fresh temp dir, so that [`cleanup_stale`] can find a crashed run.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }
    /// Start the daemons without creating a bridge.
    pub fn no_bridge(mut self) -> Self {
        self.bridge_enabled = false;
        self
    }

    /// Starts ovsdb-server and ovs-vswitchd and configures the bridge.
    /// Starts ovs-vswitchd as `ovs-ctl` does, taking its TLS key, certificate and CA
    /// from the database's SSL table (`ovs-vsctl set-ssl KEY CERT CA`), for `ssl:`
    /// controllers.
    pub fn ssl_from_db(mut self) -> Self {
        self.ssl_from_db = true;
        self
    }

    pub fn start(self) -> Result<Ovs> {
        Ovs::start(self)
    }
}

#[derive(Debug)]
enum StateDir {
    Temp(tempfile::TempDir),
    Fixed(PathBuf),
}

impl StateDir {
    fn path(&self) -> &Path {
        match self {
            StateDir::Temp(t) => t.path(),
            StateDir::Fixed(p) => p,
        }
    }
}

/// A running private Open vSwitch. Stopped (and cleaned up) on drop.
#[derive(Debug)]
pub struct Ovs {
    state: Option<StateDir>,
    netns: Option<Netns>,
    bridge: Option<String>,
    socat: Option<Child>,
}

impl Ovs {
    /// Options with the defaults described in the module docs.
    pub fn builder() -> OvsBuilder {
        OvsBuilder::default()
    }

    fn start(b: OvsBuilder) -> Result<Ovs> {
        if crate::prereq::which("ovs-vswitchd").is_none() {
            bail!("ovs-vswitchd not installed (apt-get install openvswitch-switch)");
        }
        let state = match &b.state_dir {
            Some(d) => {
                cleanup_stale(d)?;
                std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
                StateDir::Fixed(d.clone())
            }
            None => StateDir::Temp(short_tempdir("plx-ovs-")?),
        };
        let mut ovs = Ovs {
            state: Some(state),
            netns: None,
            bridge: None,
            socat: None,
        };
        // From here on, an error drops `ovs`, which stops whatever did start.
        ovs.netns = match &b.netns {
            NetnsMode::Caller => None,
            NetnsMode::Private => Some(Netns::create(&netns::unique_name("plxovs"))?),
            NetnsMode::Named(n) if netns::exists(n) => Some(Netns::existing(n)?),
            NetnsMode::Named(n) => Some(Netns::create(n)?),
        };
        ovs.start_daemons(&b)?;
        if b.bridge_enabled {
            ovs.create_bridge(&b)?;
        }
        Ok(ovs)
    }

    fn start_daemons(&mut self, b: &OvsBuilder) -> Result<()> {
        let st = self.state_dir().to_path_buf();
        let db = st.join("conf.db");
        run_ok(
            self.ovs_cmd("ovsdb-tool")
                .arg("create")
                .arg(&db)
                .arg(SCHEMA),
            CMD_TIMEOUT,
        )?;
        let mut c = self.ovs_cmd("ovsdb-server");
        c.arg(&db)
            .arg(format!("--remote=punix:{}", st.join("db.sock").display()))
            .arg("--remote=db:Open_vSwitch,Open_vSwitch,manager_options");
        if let Some(p) = b.ovsdb_tcp_port {
            c.arg(format!("--remote=ptcp:{p}:127.0.0.1"));
        }
        c.args(daemon_args(&st, "ovsdb-server"));
        run_ok(&mut c, CMD_TIMEOUT).context("starting ovsdb-server")?;
        self.vsctl(&["--no-wait", "init"])?;

        let mut c = match &self.netns {
            Some(ns) => {
                let mut c = ns.command("ovs-vswitchd");
                self.ovs_env(&mut c);
                c
            }
            None => self.ovs_cmd("ovs-vswitchd"),
        };
        c.arg(format!("unix:{}", st.join("db.sock").display()))
            .args(daemon_args(&st, "ovs-vswitchd"));
        if b.ssl_from_db {
            c.args([
                "--private-key=db:Open_vSwitch,SSL,private_key",
                "--certificate=db:Open_vSwitch,SSL,certificate",
                "--ca-cert=db:Open_vSwitch,SSL,ca_cert",
            ]);
        }
        run_ok(&mut c, CMD_TIMEOUT).context("starting ovs-vswitchd")?;
        self.vsctl(&[
            "set",
            "Open_vSwitch",
            ".",
            &format!("other_config:flow-limit={}", b.flow_limit),
        ])?;
        Ok(())
    }

    fn create_bridge(&mut self, b: &OvsBuilder) -> Result<()> {
        let br = b.bridge.as_str();
        self.vsctl(&[
            "--may-exist",
            "add-br",
            br,
            "--",
            "set",
            "bridge",
            br,
            "datapath_type=netdev",
            &format!("fail_mode={}", b.fail_mode),
            &format!("protocols={}", b.protocols),
        ])?;
        self.bridge = Some(br.to_owned());
        if let Some(dpid) = b.dpid {
            self.vsctl(&[
                "set",
                "bridge",
                br,
                &format!("other_config:datapath-id={dpid:016x}"),
            ])?;
        }
        if let Some(target) = &b.controller {
            let target = self.controller_target(target)?;
            let limits = b.controller_rate.map(|(r, bu)| {
                [
                    format!("controller_rate_limit={r}"),
                    format!("controller_burst_limit={bu}"),
                ]
            });
            let mut args = vec![
                "set-controller",
                br,
                &target,
                "--",
                "set",
                "controller",
                br,
                "max_backoff=1000",
                "inactivity_probe=0",
            ];
            if let Some(l) = &limits {
                args.extend(l.iter().map(String::as_str));
            }
            self.vsctl(&args)?;
        }
        let mgmt = self.mgmt_socket();
        if !wait_until(Duration::from_secs(20), || mgmt.exists()) {
            bail!(
                "bridge {br}: management socket {} did not appear",
                mgmt.display()
            );
        }
        Ok(())
    }

    /// For a namespaced OVS, bridges `tcp:127.x.x.x:P` to the caller's loopback.
    fn controller_target(&mut self, target: &str) -> Result<String> {
        let loopback_tcp = target
            .strip_prefix("tcp:127.")
            .and_then(|rest| rest.rsplit_once(':'))
            .is_some();
        if self.netns.is_none() || !loopback_tcp {
            return Ok(target.to_owned());
        }
        let sock = self.state_dir().join("ctl-bridge.sock");
        let tcp = target.trim_start_matches("tcp:");
        use std::os::unix::process::CommandExt;
        let child = Command::new("socat")
            .arg(format!("UNIX-LISTEN:{},fork", sock.display()))
            .arg(format!("TCP:{tcp}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("starting socat (apt-get install socat)")?;
        self.socat = Some(child);
        if !wait_until(Duration::from_secs(5), || sock.exists()) {
            bail!("socat controller bridge {} did not appear", sock.display());
        }
        Ok(format!("unix:{}", sock.display()))
    }

    /// The state directory (db.sock, pid files, logs, `BRIDGE.mgmt`).
    pub fn state_dir(&self) -> &Path {
        self.state
            .as_ref()
            .map(StateDir::path)
            .unwrap_or(Path::new("/nonexistent"))
    }

    /// The namespace ovs-vswitchd runs in (None: the caller's).
    pub fn netns(&self) -> Option<&Netns> {
        self.netns.as_ref()
    }

    /// The bridge name (None with [`OvsBuilder::no_bridge`]).
    pub fn bridge(&self) -> Option<&str> {
        self.bridge.as_deref()
    }

    /// `unix:` path of the bridge's OpenFlow management socket.
    pub fn mgmt_socket(&self) -> PathBuf {
        let br = self.bridge.as_deref().unwrap_or("br0");
        self.state_dir().join(format!("{br}.mgmt"))
    }

    /// `ovs-vsctl` connection string for this instance's database.
    pub fn db_target(&self) -> String {
        format!("unix:{}", self.state_dir().join("db.sock").display())
    }

    /// PIDs of the running daemons (ovsdb-server, ovs-vswitchd), as recorded.
    pub fn pids(&self) -> Vec<u32> {
        DAEMONS
            .iter()
            .filter_map(|d| read_pid(self.state_dir(), d))
            .collect()
    }

    fn ovs_env(&self, c: &mut Command) {
        let st = self.state_dir();
        for k in ["OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR", "OVS_SYSCONFDIR"] {
            c.env(k, st);
        }
    }

    fn ovs_cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        self.ovs_env(&mut c);
        c
    }

    /// Runs `ovs-vsctl --db=unix:STATE/db.sock --timeout=20 ARGS...`; returns stdout.
    pub fn vsctl(&self, args: &[&str]) -> Result<String> {
        vsctl_at(self.state_dir(), args)
    }

    /// Runs `ovs-ofctl -O OpenFlow13 CMD unix:BRIDGE.mgmt REST...` where
    /// `args` = `[options..., CMD, REST...]` (the switch target is inserted
    /// after the first argument that does not start with `-`; give option
    /// values with `=`). Returns stdout.
    pub fn ofctl(&self, args: &[&str]) -> Result<String> {
        ofctl_at(
            self.state_dir(),
            self.bridge.as_deref().unwrap_or("br0"),
            args,
        )
    }

    /// Runs `ovs-appctl -t STATE/ovs-vswitchd.ctl ARGS...` (e.g. `ofproto/trace`).
    pub fn appctl(&self, args: &[&str]) -> Result<String> {
        let ctl = self.state_dir().join("ovs-vswitchd.ctl");
        run_ok(
            self.ovs_cmd("ovs-appctl").arg("-t").arg(ctl).args(args),
            CMD_TIMEOUT,
        )
    }

    /// Adds interface `name` (already present in OVS's namespace) as a port
    /// with OpenFlow port number `ofport` (`ofport_request`), and waits until
    /// OVS has assigned that number.
    pub fn add_port(&self, name: &str, ofport: u32) -> Result<()> {
        self.add_port_with(name, ofport, &[])
    }

    /// Like [`Ovs::add_port`] with extra `Interface` column settings such as
    /// `type=internal` or `options:n_rxq=1`.
    pub fn add_port_with(&self, name: &str, ofport: u32, settings: &[&str]) -> Result<()> {
        let br = self.bridge.as_deref().context("no bridge")?;
        let req = format!("ofport_request={ofport}");
        let mut args = vec![
            "add-port",
            br,
            name,
            "--",
            "set",
            "interface",
            name,
            req.as_str(),
        ];
        args.extend_from_slice(settings);
        self.vsctl(&args)?;
        let mut last = String::new();
        let ok = wait_until(Duration::from_secs(10), || {
            last = self
                .vsctl(&["get", "interface", name, "ofport"])
                .unwrap_or_default()
                .trim()
                .to_owned();
            last == ofport.to_string()
        });
        if !ok {
            let err = self
                .vsctl(&["get", "interface", name, "error"])
                .unwrap_or_default();
            bail!(
                "port {name}: ofport is {last:?}, wanted {ofport} (error: {})",
                err.trim()
            );
        }
        Ok(())
    }

    /// Replaces the bridge's controller target with `target` and stops the
    /// socat bridge to the old one, if any. Keep `target` an *active* one
    /// (`tcp:`/`unix:`): OVS flushes every flow when a bridge goes from having
    /// primary controllers to none (`del-controller`, or only passive
    /// `ptcp:`/`punix:` targets), so a process that installed flows and exits
    /// hands over to an active target nobody serves yet.
    pub fn replace_controller(&mut self, target: &str) -> Result<()> {
        if let Some(br) = self.bridge.clone() {
            self.vsctl(&["set-controller", &br, target])?;
        }
        if let Some(mut c) = self.socat.take() {
            kill_own_group(&mut c);
        }
        Ok(())
    }

    /// Stops everything now and reports errors (drop does the same silently).
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    /// PID of the `socat` bridging the controller into the namespace, if any
    /// (a run that persists this handle records it to stop it later).
    pub fn socat_pid(&self) -> Option<u32> {
        self.socat.as_ref().map(Child::id)
    }

    /// Leaves the daemons running (and a fixed state dir in place) after this
    /// handle is gone; returns the state dir. Stop them later with
    /// [`cleanup_stale`]. A temp state dir is kept on disk too.
    pub fn persist(mut self) -> PathBuf {
        let dir = match self.state.take() {
            Some(StateDir::Temp(t)) => t.keep(),
            Some(StateDir::Fixed(p)) => p,
            None => PathBuf::new(),
        };
        if let Some(ns) = self.netns.take() {
            ns.persist();
        }
        self.socat.take(); // dropping a Child neither kills nor waits
        dir
    }

    fn shutdown(&mut self) -> Result<()> {
        let Some(state) = self.state.take() else {
            return Ok(());
        };
        let dir = state.path().to_path_buf();
        let mut errors = Vec::new();
        // Deleting the bridge first makes vswitchd remove its netdev taps.
        if let Some(br) = self.bridge.take()
            && read_pid(&dir, "ovs-vswitchd").is_some_and(|p| process_alive(p, "ovs-vswitchd"))
            && let Err(e) = vsctl_at(&dir, &["--if-exists", "del-br", &br])
        {
            errors.push(format!("del-br {br}: {e:#}"));
        }
        if let Err(e) = stop_daemons(&dir) {
            errors.push(format!("{e:#}"));
        }
        if let Some(mut c) = self.socat.take() {
            kill_own_group(&mut c);
        }
        if let Some(ns) = self.netns.take()
            && let Err(e) = ns.delete()
        {
            errors.push(format!("{e:#}"));
        }
        match state {
            StateDir::Temp(t) => {
                if let Err(e) = t.close() {
                    errors.push(format!("removing state dir: {e}"));
                }
            }
            StateDir::Fixed(p) => {
                if let Err(e) = std::fs::remove_dir_all(&p) {
                    errors.push(format!("removing {}: {e}", p.display()));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            bail!("stopping OVS: {}", errors.join("; "))
        }
    }
}

impl Drop for Ovs {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!("warning: {e:#}");
        }
    }
}

const DAEMONS: [&str; 2] = ["ovsdb-server", "ovs-vswitchd"];

/// [`Ovs::ofctl`] for the OVS whose state dir is `dir` (e.g. one left up by
/// `plexus-topo up`): target `unix:DIR/BRIDGE.mgmt`.
pub fn ofctl_at(dir: &Path, bridge: &str, args: &[&str]) -> Result<String> {
    let target = format!("unix:{}", dir.join(format!("{bridge}.mgmt")).display());
    let full = insert_target(args, &target);
    run_ok(
        Command::new("ovs-ofctl")
            .args(["-O", "OpenFlow13"])
            .args(&full),
        CMD_TIMEOUT,
    )
}

/// `ovs-vsctl` against the database of the OVS whose state dir is `dir`.
fn vsctl_at(dir: &Path, args: &[&str]) -> Result<String> {
    run_ok(
        Command::new("ovs-vsctl")
            .env("OVS_RUNDIR", dir)
            .arg(format!("--db=unix:{}", dir.join("db.sock").display()))
            .arg("--timeout=20")
            .args(args),
        CMD_TIMEOUT,
    )
}

fn daemon_args(st: &Path, name: &str) -> Vec<String> {
    vec![
        format!("--pidfile={}", st.join(format!("{name}.pid")).display()),
        format!("--unixctl={}", st.join(format!("{name}.ctl")).display()),
        format!("--log-file={}", st.join(format!("{name}.log")).display()),
        "-vconsole:off".into(),
        "--detach".into(),
    ]
}

/// Inserts `target` after the first argument that does not start with `-`
/// (the ovs-ofctl command), e.g. `["--bundle", "add-flows", "f"]` →
/// `["--bundle", "add-flows", target, "f"]`. Appended when there is none.
pub fn insert_target(args: &[&str], target: &str) -> Vec<String> {
    let mut v: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    match args.iter().position(|a| !a.starts_with('-')) {
        Some(i) => v.insert(i + 1, target.to_owned()),
        None => v.push(target.to_owned()),
    }
    v
}

/// A temp dir with a short path (unix socket paths must stay under 108 bytes).
pub(crate) fn short_tempdir(prefix: &str) -> Result<tempfile::TempDir> {
    let base = std::env::temp_dir();
    let base = if base.as_os_str().len() > 60 {
        PathBuf::from("/tmp")
    } else {
        base
    };
    Ok(tempfile::Builder::new().prefix(prefix).tempdir_in(base)?)
}

fn read_pid(dir: &Path, daemon: &str) -> Option<u32> {
    std::fs::read_to_string(dir.join(format!("{daemon}.pid")))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// True when `pid` is a process named `comm` that still runs: its main
/// thread, or any other of its threads. After SIGKILL the main thread turns
/// zombie first while the others are still exiting (tearing down packet
/// rings, taps, sockets); the process's files are released only when the last
/// thread is gone, so a restarted daemon that tried to bind the same sockets
/// before then found them taken.
pub fn process_alive(pid: u32, comm: &str) -> bool {
    let Some((name, state)) = task_stat(&format!("/proc/{pid}/stat")) else {
        return false;
    };
    // /proc comm is truncated to 15 bytes.
    let want: String = comm.chars().take(15).collect();
    if name != want {
        return false;
    }
    if state != "Z" && state != "X" {
        return true;
    }
    std::fs::read_dir(format!("/proc/{pid}/task")).is_ok_and(|tasks| {
        tasks.flatten().any(|t| {
            task_stat(&format!("{}/stat", t.path().display()))
                .is_some_and(|(_, st)| st != "Z" && st != "X")
        })
    })
}

/// (comm, state) from a `/proc/…/stat` file.
fn task_stat(path: &str) -> Option<(String, String)> {
    let stat = std::fs::read_to_string(path).ok()?;
    let (head, tail) = stat.rsplit_once(')')?;
    let name = head.split_once('(').map(|(_, n)| n).unwrap_or("");
    let state = tail.split_whitespace().next().unwrap_or("");
    Some((name.to_owned(), state.to_owned()))
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Stops the daemons whose PIDs are recorded in `dir` (SIGTERM, then SIGKILL
/// after 5 s). A PID is only signalled if that process still has the daemon's
/// name, so a recycled PID is never hit.
fn stop_daemons(dir: &Path) -> Result<()> {
    let mut stuck = Vec::new();
    // vswitchd first: it is a client of ovsdb-server.
    for daemon in DAEMONS.iter().rev() {
        let Some(pid) = read_pid(dir, daemon) else {
            continue;
        };
        if !process_alive(pid, daemon) {
            continue;
        }
        signal(pid, "-TERM");
        if !wait_until(Duration::from_secs(5), || !process_alive(pid, daemon)) {
            signal(pid, "-KILL");
            if !wait_until(Duration::from_secs(5), || !process_alive(pid, daemon)) {
                stuck.push(format!("{daemon}[{pid}]"));
            }
        }
    }
    if stuck.is_empty() {
        Ok(())
    } else {
        bail!("still running: {}", stuck.join(", "))
    }
}

fn kill_own_group(c: &mut Child) {
    let pid = c.id();
    let _ = Command::new("kill")
        .args(["-TERM", "--", &format!("-{pid}")])
        .stderr(Stdio::null())
        .status();
    let _ = c.kill();
    let _ = c.wait();
}

/// Stops a private OVS left behind in the fixed state dir `dir` (by a crashed
/// run or [`Ovs::persist`]): kills only the PIDs recorded there, then removes
/// the directory. Does nothing when `dir` does not exist.
pub fn cleanup_stale(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if read_pid(dir, "ovs-vswitchd").is_some_and(|p| process_alive(p, "ovs-vswitchd"))
        && read_pid(dir, "ovsdb-server").is_some_and(|p| process_alive(p, "ovsdb-server"))
    {
        // Remove the bridges so vswitchd deletes its taps before it exits.
        if let Ok(brs) = vsctl_at(dir, &["list-br"]) {
            for br in brs.lines() {
                let _ = vsctl_at(dir, &["--if-exists", "del-br", br]);
            }
        }
    }
    stop_daemons(dir)?;
    std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_goes_after_the_command() {
        assert_eq!(
            insert_target(&["add-flow", "in_port=1,actions=drop"], "unix:s"),
            ["add-flow", "unix:s", "in_port=1,actions=drop"]
        );
        assert_eq!(
            insert_target(&["--bundle", "add-flows", "f.txt"], "unix:s"),
            ["--bundle", "add-flows", "unix:s", "f.txt"]
        );
        assert_eq!(insert_target(&["--strict"], "t"), ["--strict", "t"]);
    }

    #[test]
    fn process_alive_checks_the_name() {
        let me = std::process::id();
        let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
        assert!(process_alive(me, comm.trim()));
        assert!(!process_alive(me, "ovs-vswitchd"));
        assert!(!process_alive(u32::MAX, "x"));
    }
}
