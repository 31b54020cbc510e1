//! Fabric topologies: many `plexus-vswitchd` switches cabled to each other,
//! programmed with static destination-MAC routes computed here — the
//! `fat-tree-k4.toml` scale topology (k = 4: 4 core, 8 aggregation, 8 edge
//! switches, 16 hosts), as Mininet's fat-tree examples build it with OVS.
//!
//! Routing is up/down: an edge switch delivers to its own hosts and sends
//! everything else up to one of its aggregation switches (chosen by a hash
//! of the destination, so paths spread over the fabric); an aggregation
//! switch delivers down within its pod and sends the rest up to one of its
//! core switches; a core switch sends down to the destination's pod. Hosts
//! get static ARP entries, so no broadcast ever needs a loop-free tree.
//!
//! Everything is recorded in the run's state dir (see [`crate::cloud::state`])
//! before it is created, so `plexus-topo down --all` cleans up after a crash.

use crate::cloud::find_bin;
use crate::cloud::state::{Proc, State, remove_run, state_dir};
use crate::netns::{self, Netns};
use crate::proc::{run_ok, wait_until};
use crate::topo::Outcome;
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use toml::Spanned;

/// A fabric topology file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FabricFile {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: String,
    pub fabric: FabricSpec,
    #[serde(rename = "check", default)]
    pub checks: Vec<FabricCheck>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FabricSpec {
    /// `fat-tree` (the only kind).
    pub kind: Spanned<String>,
    /// Fat-tree arity (even, 2..=8).
    pub k: Spanned<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum FabricCheck {
    /// Every host pings every other host.
    PingAll,
}

/// True when the file is a fabric topology (it has a `[fabric]` table).
pub fn is_fabric(text: &str) -> bool {
    toml::from_str::<toml::Table>(text).is_ok_and(|t| t.contains_key("fabric"))
}

/// Parses and checks a fabric file; errors name file, line and field.
pub fn load(path: &Path) -> Result<FabricFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let f: FabricFile = toml::from_str(&text).map_err(|e| match e.span() {
        Some(s) => anyhow::anyhow!("{}: {}", pos(&text, path, s.start, "syntax"), e.message()),
        None => anyhow::anyhow!("{}: {}", path.display(), e.message()),
    })?;
    let name = f.name.get_ref();
    if name.is_empty() || name.len() > 4 || !name.chars().all(|c| c.is_ascii_lowercase()) {
        bail!(
            "{}: {name:?} must be 1-4 lowercase letters (it prefixes interface names)",
            pos(&text, path, f.name.span().start, "name")
        );
    }
    if f.fabric.kind.get_ref() != "fat-tree" {
        bail!(
            "{}: {:?}: only \"fat-tree\"",
            pos(&text, path, f.fabric.kind.span().start, "fabric.kind"),
            f.fabric.kind.get_ref()
        );
    }
    let k = *f.fabric.k.get_ref();
    if !(2..=8).contains(&k) || !k.is_multiple_of(2) {
        bail!(
            "{}: {k}: must be even, 2..=8",
            pos(&text, path, f.fabric.k.span().start, "fabric.k")
        );
    }
    Ok(f)
}

fn pos(text: &str, file: &Path, at: usize, field: &str) -> String {
    let upto = &text[..at.min(text.len())];
    let line = upto.matches('\n').count() + 1;
    let col = upto.rfind('\n').map_or(upto.len(), |i| upto.len() - i - 1) + 1;
    format!("{}:{line}:{col}: {field}", file.display())
}

/// A switch of the fabric and its ports (port number → peer).
#[derive(Debug, Clone)]
pub struct Switch {
    pub name: String,
    /// Interface names by OpenFlow port number.
    pub ports: BTreeMap<u32, String>,
}

/// A host: namespace, address, MAC, edge switch and port there.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub ip: String,
    pub mac: String,
    pub pod: u32,
    pub edge: u32,
}

/// One cable: (switch or host name, interface) ↔ (switch name, interface).
#[derive(Debug, Clone)]
pub struct Link {
    pub a: (String, String),
    pub b: (String, String),
}

/// A fat-tree, fully computed: switches, hosts, links and per-switch flows.
#[derive(Debug, Clone)]
pub struct FatTree {
    pub k: u32,
    pub switches: Vec<Switch>,
    pub hosts: Vec<Host>,
    pub links: Vec<Link>,
    pub flows: BTreeMap<String, Vec<String>>,
}

impl FatTree {
    /// Builds the k-ary fat-tree with interface names prefixed by `p`.
    pub fn new(k: u32, p: &str) -> Self {
        let half = k / 2;
        let core = |c: u32| format!("c{c}");
        let agg = |pod: u32, i: u32| format!("a{pod}{i}");
        let edge = |pod: u32, i: u32| format!("e{pod}{i}");
        let mut sw: BTreeMap<String, Switch> = BTreeMap::new();
        let mut links = Vec::new();
        let mut hosts = Vec::new();
        // port(switch, peer) so flows can name the way to a neighbour.
        let mut port_to: BTreeMap<(String, String), u32> = BTreeMap::new();
        let mut add_port = |sw: &mut BTreeMap<String, Switch>, s: &str, peer: &str| -> String {
            let e = sw.entry(s.to_string()).or_insert_with(|| Switch {
                name: s.to_string(),
                ports: BTreeMap::new(),
            });
            let n = e.ports.len() as u32 + 1;
            let ifname = format!("{p}{s}p{n}");
            e.ports.insert(n, ifname.clone());
            port_to.insert((s.to_string(), peer.to_string()), n);
            ifname
        };
        for c in 0..half * half {
            sw.insert(
                core(c),
                Switch {
                    name: core(c),
                    ports: BTreeMap::new(),
                },
            );
        }
        for pod in 0..k {
            for i in 0..half {
                let (e, a) = (edge(pod, i), agg(pod, i));
                for j in 0..half {
                    let h = format!("h{pod}{i}{j}");
                    let ifs = add_port(&mut sw, &e, &h);
                    links.push(Link {
                        a: (h.clone(), "eth0".into()),
                        b: (e.clone(), ifs),
                    });
                    hosts.push(Host {
                        name: h,
                        ip: format!("10.{pod}.{i}.{}", j + 2),
                        mac: format!("02:00:00:{pod:02x}:{i:02x}:{:02x}", j + 2),
                        pod,
                        edge: i,
                    });
                }
                let _ = a;
            }
            for i in 0..half {
                for j in 0..half {
                    let (e, a) = (edge(pod, i), agg(pod, j));
                    let ie = add_port(&mut sw, &e, &a);
                    let ia = add_port(&mut sw, &a, &e);
                    links.push(Link {
                        a: (e, ie),
                        b: (a, ia),
                    });
                }
            }
            for j in 0..half {
                for m in 0..half {
                    let (a, c) = (agg(pod, j), core(j * half + m));
                    let ia = add_port(&mut sw, &a, &c);
                    let ic = add_port(&mut sw, &c, &a);
                    links.push(Link {
                        a: (a, ia),
                        b: (c, ic),
                    });
                }
            }
        }
        // Flows: one per destination host on every switch.
        let mut flows: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let spread = |h: &Host, n: u32| -> u32 {
            let x: u32 = h.mac.bytes().fold(2166136261u32, |a, b| {
                (a ^ u32::from(b)).wrapping_mul(16777619)
            });
            (x >> 7) % n
        };
        for h in &hosts {
            let hname = &h.name;
            for pod in 0..k {
                for i in 0..half {
                    let e = edge(pod, i);
                    let out = if pod == h.pod && i == h.edge {
                        port_to[&(e.clone(), hname.clone())]
                    } else {
                        port_to[&(e.clone(), agg(pod, spread(h, half)))]
                    };
                    flows.entry(e).or_default().push(format!(
                        "priority=100,dl_dst={},actions=output:{out}",
                        h.mac
                    ));
                    let a = agg(pod, i);
                    let out = if pod == h.pod {
                        port_to[&(a.clone(), edge(pod, h.edge))]
                    } else {
                        port_to[&(a.clone(), core(i * half + spread(h, half)))]
                    };
                    flows.entry(a).or_default().push(format!(
                        "priority=100,dl_dst={},actions=output:{out}",
                        h.mac
                    ));
                }
            }
            for c in 0..half * half {
                let a = agg(h.pod, c / half);
                let out = port_to[&(core(c), a)];
                flows.entry(core(c)).or_default().push(format!(
                    "priority=100,dl_dst={},actions=output:{out}",
                    h.mac
                ));
            }
        }
        FatTree {
            k,
            switches: sw.into_values().collect(),
            hosts,
            links,
            flows,
        }
    }
}

fn ns_of(topo: &str, node: &str) -> String {
    format!("plx-{topo}-{node}")
}

/// The fabric while it is up; dropped → torn down.
#[derive(Debug)]
pub struct Running {
    pub name: String,
    pub dir: PathBuf,
    pub tree: FatTree,
    pub state: State,
    pub up_time: Duration,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Err(e) = remove_run(&self.dir) {
            eprintln!("warning: tearing down {}: {e:#}", self.dir.display());
        }
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Brings the fabric up: namespaces, cables, one plexus-vswitchd per switch
/// (AF_PACKET ports, passive OpenFlow listener), flows, static ARP.
pub fn up(f: &FabricFile, file: &Path, progress: &mut dyn FnMut(&str)) -> Result<Running> {
    let name = f.name.get_ref().clone();
    let dir = state_dir(&name);
    remove_run(&dir).context("removing an earlier run")?;
    std::fs::create_dir_all(&dir)?;
    let t0 = Instant::now();
    let tree = FatTree::new(*f.fabric.k.get_ref(), &name);
    let mut r = Running {
        name: name.clone(),
        dir: dir.clone(),
        tree: tree.clone(),
        state: State {
            file: file.to_path_buf(),
            ..State::default()
        },
        up_time: Duration::ZERO,
    };
    r.state.save(&dir)?;
    progress(&format!(
        "fat-tree k={}: {} switches, {} hosts, {} links",
        tree.k,
        tree.switches.len(),
        tree.hosts.len(),
        tree.links.len()
    ));
    let nodes: Vec<String> = tree
        .switches
        .iter()
        .map(|s| s.name.clone())
        .chain(tree.hosts.iter().map(|h| h.name.clone()))
        .collect();
    for n in &nodes {
        let ns = ns_of(&name, n);
        r.state.netns.push(ns.clone());
        r.state.save(&dir)?;
        Netns::create(&ns)?.persist();
    }
    for l in &tree.links {
        let a = Netns::existing(&ns_of(&name, &l.a.0))?;
        let b = Netns::existing(&ns_of(&name, &l.b.0))?;
        netns::veth(&l.a.1, &a, &l.b.1, &b)?;
    }
    for h in &tree.hosts {
        let ns = Netns::existing(&ns_of(&name, &h.name))?;
        ns.ip(&["link", "set", "eth0", "address", &h.mac])?;
        ns.ip(&["addr", "add", &format!("{}/8", h.ip), "dev", "eth0"])?;
        for o in &tree.hosts {
            if o.name != h.name {
                ns.ip(&[
                    "neigh",
                    "replace",
                    &o.ip,
                    "lladdr",
                    &o.mac,
                    "dev",
                    "eth0",
                    "nud",
                    "permanent",
                ])?;
            }
        }
        run_ok(
            ns.command("ethtool").args(["-K", "eth0", "tx", "off"]),
            Duration::from_secs(10),
        )?;
    }
    progress(&format!(
        "{} namespaces and cables in {:.1?}",
        nodes.len(),
        t0.elapsed()
    ));
    let bin = find_bin("plexus-vswitchd")?;
    let mut listeners = BTreeMap::new();
    for (i, s) in tree.switches.iter().enumerate() {
        let listen = free_port()?;
        let mut cmd = Command::new(&bin);
        cmd.args(["--dpid", &format!("{:x}", 0x5046_0000_0000u64 + i as u64)])
            .args(["--netns", &ns_of(&name, &s.name)])
            .args(["--port-type", "afpacket", "--fail-mode", "secure"])
            .args(["--bridge", &s.name])
            .arg("--ctl")
            .arg(dir.join(format!("{}.ctl", s.name)))
            .args(["--listen", &format!("ptcp:{listen}:127.0.0.1")]);
        for (n, ifname) in &s.ports {
            cmd.args(["--port", &format!("{ifname}={n}")]);
        }
        let log = std::fs::File::create(dir.join(format!("{}.log", s.name)))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        r.state.procs.push(Proc {
            pid: child.id(),
            comm: "plexus-vswitchd".into(),
            role: format!("switch {}", s.name),
        });
        r.state.save(&dir)?;
        listeners.insert(s.name.clone(), format!("tcp:127.0.0.1:{listen}"));
    }
    for s in &tree.switches {
        let target = &listeners[&s.name];
        let file = dir.join(format!("{}.flows", s.name));
        std::fs::write(&file, tree.flows[&s.name].join("\n") + "\n")?;
        let ok = wait_until(Duration::from_secs(20), || {
            Command::new("ovs-ofctl")
                .args(["-O", "OpenFlow13", "--bundle", "add-flows", target])
                .arg(&file)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        if !ok {
            bail!("switch {}: could not install flows over {target}", s.name);
        }
    }
    r.up_time = t0.elapsed();
    progress(&format!(
        "{} switches running with {} flows in {:.1?}",
        tree.switches.len(),
        tree.flows.values().map(Vec::len).sum::<usize>(),
        r.up_time
    ));
    Ok(r)
}

/// Resident memory (kB) of the recorded processes.
pub fn rss_kb(state: &State) -> u64 {
    state
        .procs
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{}/status", p.pid)).ok())
        .filter_map(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .sum()
}

fn ping_all(r: &Running) -> Result<String> {
    let hosts = &r.tree.hosts;
    // Each host pings all others in parallel (bounded: -c 1 -W 2 each).
    let t0 = Instant::now();
    let mut children = Vec::new();
    for a in hosts {
        for b in hosts {
            if a.name == b.name {
                continue;
            }
            let c = Command::new("ip")
                .args(["netns", "exec", &ns_of(&r.name, &a.name)])
                .args(["ping", "-c", "1", "-W", "2", &b.ip])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            children.push((a.name.clone(), b.name.clone(), c));
        }
        // At most one source host's pings in flight per batch of hosts.
        if children.len() >= 60 {
            for (_, _, c) in children.iter_mut() {
                let _ = c.wait();
            }
        }
    }
    let mut failed = Vec::new();
    let mut n = 0;
    for (a, b, mut c) in children {
        n += 1;
        let ok = c.wait().is_ok_and(|s| s.success());
        if !ok {
            // One retry, sequential.
            let again = Command::new("ip")
                .args(["netns", "exec", &ns_of(&r.name, &a)])
                .args(["ping", "-c", "1", "-W", "2"])
                .arg(
                    hosts
                        .iter()
                        .find(|h| h.name == b)
                        .map(|h| h.ip.clone())
                        .unwrap_or_default(),
                )
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !again {
                failed.push(format!("{a}->{b}"));
            }
        }
    }
    if failed.is_empty() {
        Ok(format!("{n}/{n} pairs answered in {:.1?}", t0.elapsed()))
    } else {
        bail!("{} of {n} pairs failed: {}", failed.len(), failed.join(" "))
    }
}

/// `plexus-topo run` for a fabric topology.
pub fn run(f: &FabricFile, file: &Path) -> Vec<Outcome> {
    let t0 = Instant::now();
    let mut progress = |s: &str| eprintln!("[{:>5.1}s] {s}", t0.elapsed().as_secs_f64());
    let mut out = Vec::new();
    match up(f, file, &mut progress) {
        Err(e) => {
            out.push(Outcome {
                what: format!("bring up fabric {}", f.name.get_ref()),
                result: Err(format!("{e:#}")),
            });
            let _ = remove_run(&state_dir(f.name.get_ref()));
        }
        Ok(r) => {
            let rss = rss_kb(&r.state);
            out.push(Outcome {
                what: format!(
                    "bring up fat-tree k={} ({} switches, {} hosts)",
                    r.tree.k,
                    r.tree.switches.len(),
                    r.tree.hosts.len()
                ),
                result: Ok(format!(
                    "in {:.1?}; {} plexus-vswitchd processes use {:.1} MiB RSS in total",
                    r.up_time,
                    r.state.procs.len(),
                    rss as f64 / 1024.0
                )),
            });
            for c in &f.checks {
                match c {
                    FabricCheck::PingAll => out.push(Outcome {
                        what: "ping-all".into(),
                        result: ping_all(&r).map_err(|e| format!("{e:#}")),
                    }),
                }
            }
            let netns = r.state.netns.clone();
            let dir = r.dir.clone();
            drop(r);
            let left: Vec<&String> = netns.iter().filter(|n| netns::exists(n)).collect();
            out.push(Outcome {
                what: "tear down".into(),
                result: if left.is_empty() && !dir.exists() {
                    Ok(format!("{} namespaces removed", netns.len()))
                } else {
                    Err(format!("left behind: {left:?}"))
                },
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fat_tree_k4_shape() {
        let t = FatTree::new(4, "ft");
        assert_eq!(t.switches.len(), 20);
        assert_eq!(t.hosts.len(), 16);
        // 16 host links + 16 edge-agg + 16 agg-core.
        assert_eq!(t.links.len(), 48);
        for s in &t.switches {
            assert_eq!(s.ports.len(), 4, "{} has k ports", s.name);
            assert_eq!(t.flows[&s.name].len(), 16, "one flow per host");
            for i in s.ports.values() {
                assert!(i.len() <= 15, "{i}");
            }
        }
    }

    /// Follow the flows hop by hop from every host to every other: each
    /// path ends at the destination's port within 5 switches, no loops.
    #[test]
    fn every_path_delivers() {
        let t = FatTree::new(4, "ft");
        // (switch, port) -> peer (switch or host) and its port
        let mut peer: BTreeMap<(String, u32), String> = BTreeMap::new();
        let mut ifs: BTreeMap<String, (String, u32)> = BTreeMap::new();
        for s in &t.switches {
            for (n, i) in &s.ports {
                ifs.insert(i.clone(), (s.name.clone(), *n));
            }
        }
        for l in &t.links {
            let other = |x: &(String, String)| ifs.get(&x.1).cloned();
            match (other(&l.a), other(&l.b)) {
                (Some(a), Some(b)) => {
                    peer.insert(a.clone(), b.0.clone());
                    peer.insert(b, a.0);
                }
                (None, Some(b)) => {
                    peer.insert(b, l.a.0.clone());
                }
                _ => unreachable!(),
            }
        }
        for src in &t.hosts {
            for dst in &t.hosts {
                if src.name == dst.name {
                    continue;
                }
                let mut at = format!("e{}{}", src.pod, src.edge);
                let mut hops = 0;
                loop {
                    hops += 1;
                    assert!(hops <= 5, "{} -> {} loops", src.name, dst.name);
                    let f = t.flows[&at].iter().find(|f| f.contains(&dst.mac)).unwrap();
                    let out: u32 = f.rsplit(':').next().unwrap().parse().unwrap();
                    let next = &peer[&(at.clone(), out)];
                    if next.starts_with('h') {
                        assert_eq!(next, &dst.name);
                        break;
                    }
                    at = next.clone();
                }
            }
        }
    }
}
