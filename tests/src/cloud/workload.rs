//! Pods and VMs of cloud topologies (`kind = "pod"` / `kind = "vm"` hosts).
//!
//! Both attach through the chassis' switch over OVSDB, so a chassis with such
//! hosts runs `plexus-vswitchd` in OVSDB mode (bridge, controller and the
//! veth hosts' ports set with real `ovs-vsctl`) or a private OVS.
//!
//! * pod: the real `plexus-cni` binary, run in the chassis' namespace the way
//!   a container runtime runs it (`CNI_*` environment, network configuration
//!   on stdin), ADDs the pod into the host's namespace; the result JSON gives
//!   its address.
//! * vm: a controller port is created over REST, then the real
//!   `plexus port attach --tap` (in the chassis' namespace) creates the tap,
//!   plugs it and binds the port. qemu is replaced by [`relay`]: a process
//!   that holds the tap's queue (as qemu would) and copies frames to and from
//!   a second tap whose netdev is the guest's `eth0` in the host's namespace,
//!   so a real kernel stack with a real DHCP client (`busybox udhcpc`, run
//!   by [`super::dhcp`]) is the guest. The guest's address comes from the
//!   switch's DHCP answer.
//!
//! The controller listens on the caller's loopback; processes in a chassis'
//! namespace reach it at the same `127.0.0.1:PORT` through two `socat`s
//! (TCP in the chassis namespace → a unix socket in the state directory →
//! TCP on the caller's loopback), all recorded.

use super::state::Proc;
use super::{find_bin, spawn_logged};
use crate::proc::{run_ok, wait_until};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The bridge name of OVSDB-configured chassis.
pub const BRIDGE: &str = "br0";

/// OVSDB socket of chassis `cn` in run directory `dir`.
pub fn ovsdb_sock(dir: &Path, cn: &str) -> PathBuf {
    dir.join(format!("ovsdb-{cn}.sock"))
}

/// The token file the CNI plugin and the CLI read (the controller's holds only hashes).
pub fn token_file(dir: &Path) -> PathBuf {
    dir.join("client-token")
}

fn netns_path(ns: &str) -> PathBuf {
    Path::new("/run/netns").join(ns)
}

/// Tap name of VM host `host` (in its chassis' namespace).
pub fn tap_name(host: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in host.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("vt{h:08x}")
}

/// The caller-side half of the controller bridge: `DIR/api.sock` → TCP.
pub fn start_api_bridge(dir: &Path, api_port: u16) -> Result<Proc> {
    let sock = dir.join("api.sock");
    let child = spawn_logged(
        Command::new("socat")
            .arg(format!("UNIX-LISTEN:{},fork", sock.display()))
            .arg(format!("TCP:127.0.0.1:{api_port}")),
        &dir.join("socat-api.log"),
    )
    .context("starting socat (controller bridge)")?;
    if !wait_until(Duration::from_secs(5), || sock.exists()) {
        bail!("socat did not create {}", sock.display());
    }
    Ok(Proc {
        pid: child.id(),
        comm: "socat".into(),
        role: "controller bridge (unix side)".into(),
    })
}

/// The chassis-side half: `127.0.0.1:API_PORT` in namespace `ns` → `DIR/api.sock`.
pub fn start_chassis_api_bridge(dir: &Path, ns: &str, api_port: u16) -> Result<Proc> {
    let child = spawn_logged(
        Command::new("ip")
            .args(["netns", "exec", ns, "socat"])
            .arg(format!(
                "TCP-LISTEN:{api_port},bind=127.0.0.1,fork,reuseaddr"
            ))
            .arg(format!("UNIX-CONNECT:{}", dir.join("api.sock").display())),
        &dir.join(format!("socat-{ns}.log")),
    )
    .context("starting socat (controller bridge, chassis side)")?;
    let p = Proc {
        pid: child.id(),
        comm: "socat".into(),
        role: format!("controller bridge in {ns}"),
    };
    let up = wait_until(Duration::from_secs(5), || {
        plexus_cni::netns::run_in(&netns_path(ns), || {
            std::net::TcpStream::connect(("127.0.0.1", api_port)).is_ok()
        })
        .unwrap_or(false)
    });
    if !up {
        bail!("the controller is not reachable at 127.0.0.1:{api_port} in {ns}");
    }
    Ok(p)
}

/// Where a pod or VM attaches.
#[derive(Debug, Clone)]
pub struct Attach<'a> {
    pub dir: &'a Path,
    pub api_port: u16,
    /// The chassis' namespace (the "node" the plugin / CLI run on).
    pub chassis_ns: &'a str,
    pub chassis_id: &'a str,
    /// `unix:PATH` of the chassis' OVSDB.
    pub ovsdb: String,
    pub bridge: &'a str,
}

/// Runs the real plexus-cni binary for pod `host` (container id `topo-HOST`,
/// `eth0` in `host_ns`) in the chassis' namespace: `command` (`ADD`, `DEL`)
/// with the network configuration on stdin; returns its stdout.
fn cni_exec(
    a: &Attach<'_>,
    command: &str,
    host: &str,
    host_ns: &str,
    conf: &Value,
) -> Result<String> {
    let bin = find_bin("plexus-cni")?;
    let mut child = Command::new("ip")
        .args(["netns", "exec", a.chassis_ns])
        .arg(&bin)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", format!("topo-{host}"))
        .env("CNI_NETNS", netns_path(host_ns))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", bin.parent().unwrap_or(Path::new("/")))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", bin.display()))?;
    child
        .stdin
        .take()
        .context("plugin stdin")?
        .write_all(conf.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "plexus-cni {command} of pod {host} failed: {} {}",
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(stdout)
}

/// The network configuration plexus-topo gives the plugin.
fn cni_conf(a: &Attach<'_>, subnet_id: &str, security_groups: &[String]) -> Value {
    json!({
        "cniVersion": "1.1.0", "name": "plexus-topo", "type": "plexus-cni",
        "controller": {"url": format!("http://127.0.0.1:{}", a.api_port),
                       "token_file": token_file(a.dir)},
        "subnet": subnet_id, "chassis": a.chassis_id, "security_groups": security_groups,
        "mtu": 1500, "bridge": a.bridge, "ovsdb": a.ovsdb,
    })
}

/// DELs pod `host` (as ADDed by [`cni_add`]) with the real plexus-cni binary:
/// its controller port, switch port and veth go.
pub fn cni_del(
    a: &Attach<'_>,
    host: &str,
    host_ns: &str,
    subnet_id: &str,
    security_groups: &[String],
) -> Result<()> {
    cni_exec(
        a,
        "DEL",
        host,
        host_ns,
        &cni_conf(a, subnet_id, security_groups),
    )
    .map(|_| ())
}

/// ADDs pod `host` into namespace `host_ns` with the real plexus-cni binary;
/// returns (address, MAC) from the result JSON.
pub fn cni_add(
    a: &Attach<'_>,
    host: &str,
    host_ns: &str,
    subnet_id: &str,
    security_groups: &[String],
    ip: Option<&str>,
    mac: Option<&str>,
) -> Result<(String, String)> {
    let mut rc = json!({});
    if let Some(ip) = ip {
        rc["ips"] = json!([ip]);
    }
    if let Some(m) = mac {
        rc["mac"] = json!(m);
    }
    let mut conf = cni_conf(a, subnet_id, security_groups);
    conf["runtimeConfig"] = rc;
    let stdout = cni_exec(a, "ADD", host, host_ns, &conf)?;
    let r: Value = serde_json::from_str(&stdout)
        .with_context(|| format!("plexus-cni ADD result is not JSON: {stdout}"))?;
    let addr = r["ips"][0]["address"]
        .as_str()
        .context("no ips[0].address in the CNI result")?;
    let ip = addr.split('/').next().unwrap_or(addr).to_owned();
    let iface = r["ips"][0]["interface"].as_u64().unwrap_or(1) as usize;
    let mac = r["interfaces"][iface]["mac"]
        .as_str()
        .context("no MAC of the pod interface in the CNI result")?
        .to_owned();
    Ok((ip, mac))
}

/// `plexus port attach --tap TAP PORT` in the chassis' namespace.
pub fn attach_tap(a: &Attach<'_>, tap: &str, port_id: &str) -> Result<String> {
    let bin = find_bin("plexus")?;
    run_ok(
        Command::new("ip")
            .args(["netns", "exec", a.chassis_ns])
            .arg(&bin)
            .args(["--url", &format!("http://127.0.0.1:{}", a.api_port)])
            .arg("--token-file")
            .arg(token_file(a.dir))
            .args(["port", "attach", "--tap", tap, "--chassis", a.chassis_id])
            .args(["--bridge", a.bridge, "--ovsdb", &a.ovsdb, port_id]),
        Duration::from_secs(30),
    )
    .with_context(|| format!("plexus port attach --tap {tap} {port_id}"))
}

/// Starts the qemu stand-in for VM `host`: `plexus-topo tap-relay` holding
/// `tap` (in `chassis_ns`) and the guest's `eth0` (in `vm_ns`, MAC `mac`).
/// Returns once the guest's interface exists.
pub fn start_relay(
    dir: &Path,
    exe: &Path,
    host: &str,
    tap: &str,
    chassis_ns: &str,
    vm_ns: &str,
    mac: &str,
) -> Result<Proc> {
    let ready = dir.join(format!("relay-{host}.ready"));
    let child = spawn_logged(
        Command::new(exe)
            .args([
                "tap-relay",
                "--tap",
                tap,
                "--tap-netns",
                chassis_ns,
                "--guest-netns",
                vm_ns,
                "--guest-mac",
                mac,
            ])
            .arg("--ready-file")
            .arg(&ready),
        &dir.join(format!("relay-{host}.log")),
    )
    .context("starting the tap relay")?;
    let p = Proc {
        pid: child.id(),
        comm: exe
            .file_name()
            .map(|n| n.to_string_lossy().chars().take(15).collect())
            .unwrap_or_else(|| "plexus-topo".into()),
        role: format!("tap relay of vm {host}"),
    };
    let up = wait_until(Duration::from_secs(10), || ready.exists());
    if !up {
        bail!("the relay of vm {host} did not bring up eth0 in {vm_ns}");
    }
    Ok(p)
}

/// `plexus-topo tap-relay`: the qemu stand-in. Opens a queue of `tap` in
/// `tap_ns` (as qemu's `-netdev tap,ifname=` does) and creates the guest's
/// `eth0` as a tap in `guest_ns` (MAC `guest_mac`, up), then copies every
/// frame between the two queues until killed (the guest's tap goes with it).
/// `ready` is created once both queues are open and the guest's `eth0` is up.
pub fn relay(
    tap: &str,
    tap_ns: &str,
    guest_ns: &str,
    guest_mac: &str,
    ready: Option<&Path>,
) -> Result<()> {
    let host_q = plexus_cni::netns::run_in(&netns_path(tap_ns), || {
        plexus_cni::tun::open_queue(tap, false)
    })?
    .with_context(|| format!("opening tap {tap} in {tap_ns}"))?;
    let guest_q = plexus_cni::netns::run_in(&netns_path(guest_ns), || {
        plexus_cni::tun::open_queue("eth0", false)
    })?
    .with_context(|| format!("creating eth0 in {guest_ns}"))?;
    let gns = crate::netns::Netns::existing(guest_ns)?;
    gns.ip(&["link", "set", "lo", "up"])?;
    gns.ip(&["link", "set", "eth0", "address", guest_mac, "up"])?;
    if let Some(p) = ready {
        std::fs::write(p, format!("{}\n", std::process::id()))?;
    }
    let a = File::from(host_q);
    let b = File::from(guest_q);
    let (a2, b2) = (a.try_clone()?, b.try_clone()?);
    let t1 = std::thread::spawn(move || copy_frames(a, b2));
    let t2 = std::thread::spawn(move || copy_frames(b, a2));
    let r1 = t1.join();
    let r2 = t2.join();
    match (r1, r2) {
        (Ok(Err(e)), _) | (_, Ok(Err(e))) => Err(e),
        _ => Ok(()),
    }
}

/// Copies frames (one read = one frame on a tap queue) from `from` to `to`.
fn copy_frames(mut from: File, mut to: File) -> Result<()> {
    let mut buf = vec![0u8; 65536];
    loop {
        let n = from.read(&mut buf).context("reading a tap queue")?;
        if n == 0 {
            return Ok(());
        }
        // A full queue on the far side drops the frame, as a NIC would.
        match to.write(&buf[..n]) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EIO) => {}
            Err(e) => return Err(e).context("writing a tap queue"),
        }
    }
}
