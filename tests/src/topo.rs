//! Topology files and the runner behind `plexus-topo`.
//!
//! A topology (TOML, see `topologies/demo.toml`) names a switch in its own
//! network namespace, hosts (each a namespace with one `eth0` veth to the
//! switch) and the checks that must pass. [`run`] brings it up, installs the
//! flows, runs the checks, prints `OK   <what>` / `FAIL <what>` lines and a
//! final `N passed, M failed` line, then tears down exactly what it created.
//!
//! The switch is a private userspace Open vSwitch whose bridge connects to
//! a controller listener in this process; the flows are installed over
//! OpenFlow 1.3 by Plexus's own codec ([`crate::controller`], one atomic
//! bundle + barrier: [`install_flows`]). The `flow-counters` check reads the
//! flows back with our flow-stats multipart (and with `ovs-ofctl` as an
//! oracle): every topology flow must be there and have counted packets
//! during the checks.

use crate::controller::{ControllerListener, Switch};
use crate::netns::{self, Netns};
use crate::ovs::{NetnsMode, Ovs, cleanup_stale};
use crate::proc::{run_ok, run_with_timeout};
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A topology file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Short name (used for the OVS state dir and default interface names).
    pub name: String,
    pub switch: SwitchSpec,
    #[serde(rename = "host")]
    pub hosts: Vec<HostSpec>,
    #[serde(rename = "check", default)]
    pub checks: Vec<Check>,
}

/// The switch between the hosts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchSpec {
    /// `ovs` (a private userspace Open vSwitch); the only kind so far.
    #[serde(default = "default_kind")]
    pub kind: String,
    /// Namespace the switch runs in.
    pub netns: String,
    #[serde(default = "default_bridge")]
    pub bridge: String,
    /// Flows in `ovs-ofctl` syntax, installed by [`install_flows`].
    #[serde(default)]
    pub flows: Vec<String>,
}

fn default_kind() -> String {
    "ovs".into()
}
fn default_bridge() -> String {
    "br0".into()
}

/// One host: a namespace with `eth0` cabled to switch port `port`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    pub name: String,
    pub netns: String,
    /// Address with prefix length, e.g. `10.0.0.1/24`.
    pub ip: String,
    /// OpenFlow port number on the switch (`ofport_request`).
    pub port: u32,
    /// Switch-side interface name (default `<topology>-<host>`, ≤ 15 chars).
    #[serde(default)]
    pub switch_if: Option<String>,
}

impl HostSpec {
    /// The address without the prefix length.
    pub fn addr(&self) -> &str {
        self.ip.split('/').next().unwrap_or(&self.ip)
    }
}

/// A verification step.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Check {
    /// `ping -c COUNT` from one host to another's address.
    Ping {
        from: String,
        to: String,
        #[serde(default = "default_count")]
        count: u32,
    },
    /// A TCP echo of `bytes` bytes from `from` to a server on `to:port`.
    Tcp {
        from: String,
        to: String,
        #[serde(default = "default_port")]
        port: u16,
        #[serde(default = "default_bytes")]
        bytes: usize,
    },
    /// Every flow in the switch's table has `n_packets > 0` (`ovs-ofctl`),
    /// and every topology flow is in our flow-stats reply with a packet count
    /// that grew while the checks ran.
    FlowCounters,
}

fn default_count() -> u32 {
    3
}
fn default_port() -> u16 {
    5201
}
fn default_bytes() -> usize {
    1 << 20
}

impl Topology {
    /// Reads and validates a topology file.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Parses and validates topology TOML.
    pub fn parse(text: &str) -> Result<Self> {
        let t: Topology = toml::from_str(text)?;
        t.validate()?;
        Ok(t)
    }

    fn validate(&self) -> Result<()> {
        if self.switch.kind != "ovs" {
            bail!(
                "switch.kind {:?}: only \"ovs\" is supported so far",
                self.switch.kind
            );
        }
        let mut names = std::collections::HashSet::new();
        for h in &self.hosts {
            if !names.insert(h.name.as_str()) {
                bail!("duplicate host {}", h.name);
            }
            if self.switch_if(h).len() > 15 {
                bail!(
                    "host {}: switch-side interface name longer than 15 chars",
                    h.name
                );
            }
            if !h.ip.contains('/') {
                bail!("host {}: ip {:?} needs a prefix length", h.name, h.ip);
            }
        }
        for c in &self.checks {
            if let Check::Ping { from, to, .. } | Check::Tcp { from, to, .. } = c {
                for h in [from, to] {
                    self.host(h)?;
                }
            }
        }
        Ok(())
    }

    /// The host named `name`.
    pub fn host(&self, name: &str) -> Result<&HostSpec> {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .with_context(|| format!("no host named {name}"))
    }

    /// Switch-side interface name of `h`.
    pub fn switch_if(&self, h: &HostSpec) -> String {
        h.switch_if
            .clone()
            .unwrap_or_else(|| format!("{}-{}", self.name, h.name))
    }

    /// Fixed OVS state directory of this topology (so `down` finds a crashed run).
    pub fn state_dir(&self) -> PathBuf {
        PathBuf::from("/tmp").join(format!("plexus-topo-{}", self.name))
    }

    /// Every namespace this topology creates.
    pub fn namespaces(&self) -> Vec<&str> {
        std::iter::once(self.switch.netns.as_str())
            .chain(self.hosts.iter().map(|h| h.netns.as_str()))
            .collect()
    }
}

/// A topology that is up; dropping it tears everything down.
#[derive(Debug)]
pub struct Running {
    pub topo: Topology,
    /// Our OpenFlow connection to the switch (closed before OVS stops).
    controller: Option<Switch>,
    ovs: Option<Ovs>,
    // Dropped after `ovs` (field order): the switch's netns outlives OVS.
    namespaces: Vec<Netns>,
}

impl Running {
    /// The switch.
    pub fn ovs(&self) -> &Ovs {
        self.ovs.as_ref().expect("ovs present until drop")
    }

    /// Our controller connection to the switch.
    pub fn controller(&self) -> Option<&Switch> {
        self.controller.as_ref()
    }

    /// Leaves everything up after this handle is gone (`plexus-topo up`).
    /// The switch keeps its flows but stops looking for this process's
    /// controller: its controller target becomes the unix socket
    /// [`controller_socket`], where nobody listens (a later controller may).
    /// `check` talks to the switch over the bridge's management socket.
    pub fn persist(mut self) -> Result<()> {
        if let Some(c) = self.controller.take() {
            c.close();
        }
        let mut r = Ok(());
        if let Some(mut o) = self.ovs.take() {
            let idle = format!("unix:{}", controller_socket(&self.topo).display());
            r = o.replace_controller(&idle);
            o.persist();
        }
        for ns in self.namespaces.drain(..) {
            ns.persist();
        }
        r
    }

    /// Tears down now, reporting errors.
    pub fn teardown(mut self) -> Result<()> {
        if let Some(c) = self.controller.take() {
            c.close();
        }
        let mut errs = Vec::new();
        if let Some(o) = self.ovs.take()
            && let Err(e) = o.stop()
        {
            errs.push(format!("{e:#}"));
        }
        for ns in self.namespaces.drain(..).rev() {
            if let Err(e) = ns.delete() {
                errs.push(format!("{e:#}"));
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            bail!("teardown: {}", errs.join("; "))
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Stop OVS before its namespace goes.
        drop(self.controller.take());
        drop(self.ovs.take());
        while let Some(ns) = self.namespaces.pop() {
            drop(ns);
        }
    }
}

/// Removes what a previous run of `topo` may have left: the OVS recorded in
/// its state dir, then its namespaces (by the names in the file).
pub fn down(topo: &Topology) -> Result<()> {
    cleanup_stale(&topo.state_dir())?;
    for ns in topo.namespaces() {
        if netns::exists(ns) {
            netns::ip(&["netns", "del", ns])?;
        }
    }
    Ok(())
}

/// Brings `topo` up: namespaces, the switch, veth cables, addresses, ports,
/// flows. Leftovers of an earlier run of the same topology are removed first.
pub fn up(topo: &Topology) -> Result<Running> {
    down(topo).context("cleaning up an earlier run")?;
    let mut running = Running {
        topo: topo.clone(),
        controller: None,
        ovs: None,
        namespaces: Vec::new(),
    };
    let sw = Netns::create(&topo.switch.netns)?;
    let sw_name = sw.name().to_owned();
    running.namespaces.push(sw);
    for h in &topo.hosts {
        running.namespaces.push(Netns::create(&h.netns)?);
    }
    let listener = ControllerListener::bind().context("controller listener")?;
    let ovs = Ovs::builder()
        .bridge(&topo.switch.bridge)
        .netns(NetnsMode::Named(sw_name.clone()))
        .state_dir(topo.state_dir())
        .controller(&listener.target())
        .start()
        .context("starting Open vSwitch")?;
    running.ovs = Some(ovs);
    running.controller = Some(
        listener
            .accept(Duration::from_secs(20))
            .context("waiting for the switch to connect to our controller")?,
    );
    let sw_ns = Netns::existing(&sw_name)?;
    for h in &topo.hosts {
        let hns = Netns::existing(&h.netns)?;
        let sif = topo.switch_if(h);
        netns::veth(&sif, &sw_ns, "eth0", &hns)?;
        hns.ip(&["addr", "add", &h.ip, "dev", "eth0"])?;
        // A userspace switch forwards frames as they are: with TX checksum
        // offload the kernel leaves TCP checksums unfinished and the peer
        // drops every segment.
        run_ok(
            hns.command("ethtool").args(["-K", "eth0", "tx", "off"]),
            Duration::from_secs(10),
        )
        .with_context(|| format!("ethtool -K eth0 tx off in {}", h.netns))?;
        running.ovs().add_port(&sif, h.port)?;
    }
    let sw = running.controller().context("controller connection")?;
    install_flows(sw, &topo.switch.flows)?;
    Ok(running)
}

/// Installs the topology's flows through our controller connection: parsed
/// with `plexus_openflow::text`, sent as one atomic ONF bundle (as
/// `ovs-ofctl --bundle add-flows` does), confirmed with a barrier.
pub fn install_flows(sw: &Switch, flows: &[String]) -> Result<()> {
    if flows.is_empty() {
        return Ok(());
    }
    let flows: Vec<&str> = flows.iter().map(String::as_str).collect();
    sw.add_flows(&flows)
        .context("installing the topology's flows")
}

/// The controller target (`unix:` + this path) of a topology left up by
/// `plexus-topo up`. The bridge keeps an *active* controller target: OVS
/// flushes all flows when a bridge goes from having primary controllers to
/// none (`del-controller`, or only `punix:`/`ptcp:` targets).
pub fn controller_socket(topo: &Topology) -> PathBuf {
    topo.state_dir()
        .join(format!("{}.controller", topo.switch.bridge))
}

/// The management socket of the bridge of a topology that is up: a
/// controller ([`Switch::connect`]) or `ovs-ofctl` target.
pub fn mgmt_target(topo: &Topology) -> String {
    format!(
        "unix:{}",
        topo.state_dir()
            .join(format!("{}.mgmt", topo.switch.bridge))
            .display()
    )
}

/// Per-flow packet counts of the topology's flows, from our flow-stats
/// multipart; a flow missing from the switch is an error.
fn topo_flow_packets(topo: &Topology, sw: &Switch) -> Result<Vec<(String, u64)>> {
    use plexus_openflow::message::FlowModCommand;
    use plexus_openflow::text::flow::{format_match_with_priority, parse_flow_mod};
    let key = |table: u8, m: &str, i: &[plexus_openflow::Instruction]| {
        format!(
            "table={table},{m} actions={}",
            plexus_openflow::instruction::format_instructions(i)
        )
    };
    let stats = sw.flow_stats().context("flow stats")?;
    let have: Vec<(String, u64)> = stats
        .iter()
        .map(|f| {
            let m = format_match_with_priority(&f.match_, f.priority);
            (key(f.table_id, &m, &f.instructions), f.packet_count)
        })
        .collect();
    topo.switch
        .flows
        .iter()
        .map(|text| {
            let fm = parse_flow_mod(text, FlowModCommand::Add)
                .with_context(|| format!("parsing flow {text}"))?;
            let k = key(
                fm.table_id,
                &format_match_with_priority(&fm.match_, fm.priority),
                &fm.instructions,
            );
            let n = have
                .iter()
                .find(|(h, _)| *h == k)
                .map(|(_, n)| *n)
                .with_context(|| format!("flow {k} is not in the switch's flow stats"))?;
            Ok((text.clone(), n))
        })
        .collect()
}

/// The outcome of one check.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub what: String,
    pub result: Result<String, String>,
}

/// Runs every check of `topo` against the switch whose OFCTL target is `ovs`.
/// `self_exe` is a `plexus-topo` binary (used as the TCP echo server/client
/// inside the host namespaces).
pub fn verify(
    topo: &Topology,
    ofctl: &dyn Fn(&[&str]) -> Result<String>,
    sw: &Switch,
    self_exe: &Path,
) -> Vec<Outcome> {
    // Counters before the traffic checks: `flow-counters` wants them to grow.
    let before = topo_flow_packets(topo, sw);
    topo.checks
        .iter()
        .map(|c| {
            let (what, result) = match c {
                Check::Ping { from, to, count } => (
                    format!("ping {from} -> {to}"),
                    check_ping(topo, from, to, *count),
                ),
                Check::Tcp {
                    from,
                    to,
                    port,
                    bytes,
                } => (
                    format!("tcp {from} -> {to}:{port} ({bytes} bytes echoed)"),
                    check_tcp(topo, from, to, *port, *bytes, self_exe),
                ),
                Check::FlowCounters => (
                    "flow counters increased".to_owned(),
                    check_counters(ofctl).and_then(|oracle| {
                        let ours = check_flow_stats(topo, sw, &before)?;
                        Ok(format!("{oracle}; flow stats: {ours}"))
                    }),
                ),
            };
            Outcome {
                what,
                result: result.map_err(|e| format!("{e:#}")),
            }
        })
        .collect()
}

fn check_ping(topo: &Topology, from: &str, to: &str, count: u32) -> Result<String> {
    let src = Netns::existing(&topo.host(from)?.netns)?;
    let dst = topo.host(to)?.addr().to_owned();
    let out = run_with_timeout(
        src.command("ping")
            .args(["-c", &count.to_string(), "-i", "0.2", "-W", "2", &dst]),
        Duration::from_secs(5 + u64::from(count) * 3),
    )?;
    if out.success() {
        let summary = out
            .stdout
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .unwrap_or("")
            .to_owned();
        Ok(summary)
    } else {
        bail!("ping {dst}: {:?}\n{}{}", out.status, out.stdout, out.stderr)
    }
}

fn check_tcp(
    topo: &Topology,
    from: &str,
    to: &str,
    port: u16,
    bytes: usize,
    self_exe: &Path,
) -> Result<String> {
    let src = Netns::existing(&topo.host(from)?.netns)?;
    let dst_host = topo.host(to)?;
    let dst = Netns::existing(&dst_host.netns)?;
    let addr = format!("{}:{port}", dst_host.addr());
    let exe = self_exe.to_string_lossy().into_owned();
    let mut server_cmd = dst.command(&exe);
    server_cmd.args(["tcp-echo-server", &addr, "--timeout-secs", "15"]);
    let server =
        std::thread::spawn(move || run_with_timeout(&mut server_cmd, Duration::from_secs(20)));
    let client = run_with_timeout(
        src.command(&exe).args([
            "tcp-echo-client",
            &addr,
            "--bytes",
            &bytes.to_string(),
            "--timeout-secs",
            "10",
        ]),
        Duration::from_secs(15),
    )?;
    let server = server
        .join()
        .map_err(|_| anyhow::anyhow!("server thread panicked"))??;
    if !client.success() {
        bail!(
            "client {:?}: {}{}; server: {}",
            client.status,
            client.stdout,
            client.stderr,
            server.stderr
        );
    }
    if !server.success() {
        bail!("server {:?}: {}", server.status, server.stderr);
    }
    Ok(client.stdout.trim().to_owned())
}

/// Every topology flow is in our flow-stats reply and counted packets since `before`.
fn check_flow_stats(
    topo: &Topology,
    sw: &Switch,
    before: &Result<Vec<(String, u64)>>,
) -> Result<String> {
    let before = match before {
        Ok(b) => b,
        Err(e) => bail!("before the checks: {e:#}"),
    };
    let after = topo_flow_packets(topo, sw)?;
    let stuck: Vec<String> = before
        .iter()
        .zip(&after)
        .filter(|((_, b), (_, a))| a <= b)
        .map(|((f, b), (_, a))| format!("{f} ({b} -> {a})"))
        .collect();
    if !stuck.is_empty() {
        bail!("flow counters did not increase: {}", stuck.join("; "));
    }
    let deltas: Vec<String> = before
        .iter()
        .zip(&after)
        .map(|((_, b), (_, a))| format!("+{}", a - b))
        .collect();
    Ok(format!(
        "{} flows present, {}",
        after.len(),
        deltas.join(", ")
    ))
}

fn check_counters(ofctl: &dyn Fn(&[&str]) -> Result<String>) -> Result<String> {
    let dump = ofctl(&["dump-flows"])?;
    let counts: Vec<(u64, String)> = dump
        .lines()
        .filter_map(|l| {
            let n = l
                .split(|c: char| c == ',' || c.is_whitespace())
                .find_map(|kv| kv.strip_prefix("n_packets="))?
                .parse()
                .ok()?;
            let actions = l.split_whitespace().last().unwrap_or("").to_owned();
            Some((n, actions))
        })
        .collect();
    if counts.is_empty() {
        bail!("no flows in the table:\n{dump}");
    }
    let idle: Vec<&String> = counts
        .iter()
        .filter(|(n, _)| *n == 0)
        .map(|(_, a)| a)
        .collect();
    if !idle.is_empty() {
        bail!("flows without packets: {idle:?}\n{dump}");
    }
    let ns: Vec<String> = counts.iter().map(|(n, _)| n.to_string()).collect();
    Ok(format!(
        "{} flows, n_packets {}",
        counts.len(),
        ns.join(", ")
    ))
}

/// Prints each outcome as `OK   <what>` / `FAIL <what>: <why>` and the
/// closing `N passed, M failed` line; returns the number of failures.
pub fn report(outcomes: &[Outcome]) -> usize {
    let mut failed = 0;
    for o in outcomes {
        match &o.result {
            Ok(detail) if detail.is_empty() => println!("OK   {}", o.what),
            Ok(detail) => println!("OK   {} ({detail})", o.what),
            Err(e) => {
                failed += 1;
                println!("FAIL {}: {e}", o.what);
            }
        }
    }
    println!("{} passed, {failed} failed", outcomes.len() - failed);
    failed
}

/// `plexus-topo run`: up, verify, report, tear down. Returns the number of
/// failed items (setup and teardown failures count as items).
pub fn run(topo: &Topology, self_exe: &Path) -> usize {
    let mut outcomes = Vec::new();
    match up(topo) {
        Err(e) => outcomes.push(Outcome {
            what: format!("bring up topology {}", topo.name),
            result: Err(format!("{e:#}")),
        }),
        Ok(running) => {
            outcomes.push(Outcome {
                what: format!(
                    "bring up topology {} ({} hosts, {} flows)",
                    topo.name,
                    topo.hosts.len(),
                    topo.switch.flows.len()
                ),
                result: Ok(String::new()),
            });
            let ofctl = |a: &[&str]| running.ovs().ofctl(a);
            match running.controller() {
                Some(sw) => outcomes.extend(verify(topo, &ofctl, sw, self_exe)),
                None => outcomes.push(Outcome {
                    what: "controller connection".into(),
                    result: Err("no controller connection".into()),
                }),
            }
            let td = running.teardown().map_err(|e| format!("{e:#}"));
            let leftovers: Vec<&str> = topo
                .namespaces()
                .into_iter()
                .filter(|n| netns::exists(n))
                .collect();
            let td = td.and_then(|_| {
                if leftovers.is_empty() && !topo.state_dir().exists() {
                    Ok(String::new())
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
    report(&outcomes)
}

/// `tcp-echo-server ADDR`: accepts one connection and echoes it until EOF.
pub fn tcp_echo_server(addr: SocketAddr, timeout: Duration) -> Result<u64> {
    let l = TcpListener::bind(addr).with_context(|| format!("bind {addr}"))?;
    l.set_nonblocking(true)?;
    let deadline = Instant::now() + timeout;
    let mut s = loop {
        match l.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    bail!("no connection within {timeout:?}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e.into()),
        }
    };
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        s.write_all(&buf[..n])?;
        total += n as u64;
    }
    Ok(total)
}

/// `tcp-echo-client ADDR`: sends `bytes` bytes of a pattern, reads them back
/// and compares. Retries the connect until `timeout` (the server may still be
/// starting).
pub fn tcp_echo_client(addr: SocketAddr, bytes: usize, timeout: Duration) -> Result<Duration> {
    let t0 = Instant::now();
    let deadline = t0 + timeout;
    let s = loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e).with_context(|| format!("connect {addr}")),
        }
    };
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let data: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
    let mut w = s.try_clone()?;
    let to_send = data.clone();
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        w.write_all(&to_send)?;
        w.shutdown(std::net::Shutdown::Write)
    });
    let mut back = Vec::with_capacity(bytes);
    let mut r = s;
    r.read_to_end(&mut back)?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer panicked"))??;
    if back != data {
        bail!(
            "echo mismatch: sent {} bytes, got {} back",
            data.len(),
            back.len()
        );
    }
    Ok(t0.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEMO: &str = include_str!("../../topologies/demo.toml");

    #[test]
    fn demo_topology_parses() {
        let t = Topology::parse(DEMO).unwrap();
        assert_eq!(t.name, "demo");
        assert_eq!(t.hosts.len(), 2);
        assert_eq!(t.hosts[0].addr(), "10.0.0.1");
        assert_eq!(t.switch_if(&t.hosts[1]), "demo-h2");
        assert_eq!(
            t.namespaces(),
            ["plx-demo-sw", "plx-demo-h1", "plx-demo-h2"]
        );
        assert!(t.checks.iter().any(|c| matches!(c, Check::FlowCounters)));
    }

    #[test]
    fn bad_topologies_are_rejected() {
        let bad_host = DEMO.replace("to = \"h2\"", "to = \"h9\"");
        assert!(Topology::parse(&bad_host).is_err());
        let no_prefix = DEMO.replace("10.0.0.1/24", "10.0.0.1");
        assert!(Topology::parse(&no_prefix).is_err());
        assert!(Topology::parse("name = \"x\"").is_err());
    }

    #[test]
    fn tcp_echo_over_loopback() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let srv = std::thread::spawn(move || tcp_echo_server(addr, Duration::from_secs(10)));
        tcp_echo_client(addr, 300_000, Duration::from_secs(10)).unwrap();
        assert_eq!(srv.join().unwrap().unwrap(), 300_000);
    }

    #[test]
    fn counters_parse_dump_flows() {
        let dump = " cookie=0x0, duration=1.2s, table=0, n_packets=5, n_bytes=490, priority=100,in_port=1 actions=output:2\n cookie=0x0, duration=1.2s, table=0, n_packets=0, n_bytes=0, priority=100,in_port=2 actions=output:1\n";
        let f = |_: &[&str]| Ok(dump.to_owned());
        let e = check_counters(&f).unwrap_err();
        assert!(format!("{e}").contains("actions=output:1"), "{e}");
        let ok = dump.replace("n_packets=0", "n_packets=3");
        let f = |_: &[&str]| Ok(ok.clone());
        assert_eq!(check_counters(&f).unwrap(), "2 flows, n_packets 5, 3");
    }
}
