//! CNI conformance and end-to-end tests, driving plugins exactly as container
//! runtimes do: one exec per call, `CNI_*` in the environment, the network
//! configuration on stdin, result or error JSON on stdout.
//!
//! The "host" of every plugin run is a private namespace: for plexus-cni the
//! namespace of a private userspace OVS (`plexus_tests::ovs::Ovs`), where an
//! in-process controller also listens on 127.0.0.1; for the reference
//! `bridge` + `host-local` plugins a scratch namespace. Nothing touches the
//! caller's namespace. Needs root, `ip`, OVS; the reference run needs
//! containernetworking-plugins (SKIP outside CI, failure under CI=true).

use plexus_cni::http::Client;
use plexus_cni::netns::run_in;
use plexus_tests::netns::{Netns, unique_name};
use plexus_tests::ovs::Ovs;
use plexus_tests::prereq::{require_root, require_tool, unmet};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const TOKEN: &str = "cni-test-admin-token-0123456789";
const REF_BRIDGE: &str = "/usr/lib/cni/bridge";

fn ns_path(name: &str) -> String {
    format!("/run/netns/{name}")
}

/// One plugin, run inside a host namespace.
struct Plugin {
    bin: PathBuf,
    host_ns: String,
}

/// Exit code and stdout of one call.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }
    fn assert_ok_empty(&self, what: &str) {
        assert_eq!(self.code, 0, "{what}: {}", self.stdout);
        assert!(self.stdout.trim().is_empty(), "{what}: {}", self.stdout);
    }
    /// A spec error: non-zero exit, `{code, msg}` (cniVersion/details optional in the spec).
    fn assert_error(&self, code: u64, what: &str) -> Value {
        assert_ne!(
            self.code, 0,
            "{what}: expected failure, got {}",
            self.stdout
        );
        let v = self.json();
        assert_eq!(v["code"].as_u64(), Some(code), "{what}: {v}");
        assert!(
            v["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {v}"
        );
        v
    }
}

impl Plugin {
    fn call(&self, env: &[(&str, &str)], stdin: &str) -> Out {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.host_ns])
            .arg(&self.bin)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CNI_PATH", "/usr/lib/cni")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = c.spawn().expect("spawning plugin");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        }
    }

    fn verb(&self, cmd: &str, cid: &str, netns: &str, ifname: &str, conf: &Value) -> Out {
        self.call(
            &[
                ("CNI_COMMAND", cmd),
                ("CNI_CONTAINERID", cid),
                ("CNI_NETNS", netns),
                ("CNI_IFNAME", ifname),
            ],
            &conf.to_string(),
        )
    }
}

fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}

/// Checks an ADD result against the spec's result schema and the namespace.
fn validate_result(r: &Value, version: &str, netns: &str, ifname: &str) -> String {
    assert_eq!(r["cniVersion"], version, "{r}");
    let ifs = r["interfaces"].as_array().expect("interfaces array");
    for i in ifs {
        assert!(i["name"].as_str().is_some_and(|n| !n.is_empty()), "{i}");
        if let Some(m) = i.get("mac") {
            let m = m.as_str().unwrap();
            assert_eq!(m.len(), 17, "mac {m}");
        }
    }
    let ips = r["ips"].as_array().expect("ips array");
    assert!(!ips.is_empty(), "{r}");
    let ip = &ips[0];
    let idx = ip["interface"].as_u64().expect("ips[0].interface") as usize;
    let pod_if = &ifs[idx];
    assert_eq!(pod_if["name"], ifname, "{r}");
    assert_eq!(pod_if["sandbox"], netns, "{r}");
    let addr = ip["address"].as_str().expect("ips[0].address");
    let (a, len) = addr.split_once('/').expect("address is CIDR");
    a.parse::<std::net::IpAddr>().expect("address");
    len.parse::<u8>().expect("prefix");
    if let Some(gw) = ip.get("gateway") {
        gw.as_str().unwrap().parse::<std::net::IpAddr>().unwrap();
    }
    for rt in r["routes"].as_array().into_iter().flatten() {
        assert!(rt["dst"].as_str().is_some_and(|d| d.contains('/')), "{rt}");
    }
    if let Some(d) = r.get("dns") {
        assert!(d.is_object(), "{r}");
    }
    // The address is really on the interface in the namespace.
    let ns = netns.trim_start_matches("/run/netns/");
    let shown = plexus_tests::netns::ip(&["-n", ns, "-br", "addr", "show", "dev", ifname]).unwrap();
    assert!(shown.contains(addr), "{shown} lacks {addr}");
    addr.to_owned()
}

/// The verbs both plugins support, checked the same way.
fn common_conformance(p: &Plugin, conf: &Value, cid: &str) {
    let version = conf["cniVersion"].as_str().unwrap().to_owned();
    let pod = Netns::create(&unique_name("plxpod")).unwrap();
    let netns = ns_path(pod.name());

    let v = p.verb("VERSION", "", "", "", &json!({"cniVersion": version}));
    assert_eq!(v.code, 0, "{}", v.stdout);
    let v = v.json();
    assert!(
        v["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!(version)),
        "{v}"
    );

    let add = p.verb("ADD", cid, &netns, "eth0", conf);
    assert_eq!(add.code, 0, "ADD: {}", add.stdout);
    let result = add.json();
    validate_result(&result, &version, &netns, "eth0");

    let prev = with_prev(conf, &result);
    p.verb("CHECK", cid, &netns, "eth0", &prev)
        .assert_ok_empty("CHECK");
    p.verb("DEL", cid, &netns, "eth0", &prev)
        .assert_ok_empty("DEL");
    p.verb("DEL", cid, &netns, "eth0", &prev)
        .assert_ok_empty("second DEL");
    let gone = plexus_tests::netns::ip(&["-n", pod.name(), "-br", "link"]).unwrap();
    assert!(!gone.contains("eth0"), "eth0 left after DEL: {gone}");
    // CHECK after DEL fails with an error JSON.
    let c = p.verb("CHECK", cid, &netns, "eth0", &prev);
    assert_ne!(c.code, 0, "CHECK after DEL succeeded");
    assert!(c.json()["code"].as_u64().is_some());

    // Error paths both plugins share.
    let mut bad = conf.clone();
    bad["cniVersion"] = json!("9.9.9");
    p.verb("ADD", cid, &netns, "eth0", &bad)
        .assert_error(1, "incompatible version");
    p.call(
        &[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", cid),
            ("CNI_NETNS", &netns),
            ("CNI_IFNAME", "eth0"),
        ],
        "{",
    )
    .assert_error(6, "undecodable config");
    // DEL with the namespace already gone is fine.
    pod.delete().unwrap();
    p.verb("DEL", cid, &netns, "eth0", conf)
        .assert_ok_empty("DEL without netns");
}

#[test]
fn conformance_reference_bridge_host_local() {
    if !require_root() || !require_tool("ip") {
        return;
    }
    if !Path::new(REF_BRIDGE).exists() {
        unmet("containernetworking-plugins not installed (scripts/install-deps.sh)");
        return;
    }
    let host = Netns::create(&unique_name("plxrefh")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for version in ["0.4.0", "1.0.0"] {
        let conf = json!({
            "cniVersion": version, "name": "refnet", "type": "bridge", "bridge": "cniref0",
            "isGateway": true, "ipMasq": false,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.251.0/24"}]],
                     "routes": [{"dst": "0.0.0.0/0"}],
                     "dataDir": dir.path().join("ipam").display().to_string()}
        });
        let p = Plugin {
            bin: REF_BRIDGE.into(),
            host_ns: host.name().to_owned(),
        };
        common_conformance(&p, &conf, "ref-ctr-1");
    }
}

/// A private OVS + an in-process controller listening inside OVS's namespace.
struct Env {
    ovs: Ovs,
    url: String,
    /// Dropped before the runtime it runs on.
    _southbound: Option<plexus_controller::southbound::Southbound>,
    _rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    subnet: String,
    chassis: String,
    store: plexus_controller::store::RedbStore,
}

/// Datapath id of the test switch when the controller programs it.
const DPID: u64 = 0x504c_0000_0c01;

impl Env {
    /// OVS forwarding with NORMAL (no southbound): the plugin's plumbing alone.
    fn start() -> Option<Self> {
        Self::start_with(false)
    }

    /// With `programmed`, the controller's southbound runs in process and OVS
    /// (fail-mode secure, no NORMAL flow) forwards only by its flows: the
    /// VPC/security-group model decides who reaches whom.
    fn start_with(programmed: bool) -> Option<Self> {
        if !require_root() || !require_tool("ip") || !require_tool("ovs-vswitchd") {
            return None;
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = plexus_controller::store::RedbStore::open(&dir.path().join("db.redb")).unwrap();
        let southbound = programmed.then(|| {
            rt.block_on(plexus_controller::southbound::Southbound::start(
                store.clone(),
                Some("ptcp:0:127.0.0.1"),
            ))
            .unwrap()
        });
        let ovs = match &southbound {
            Some(sb) => Ovs::builder()
                .controller(&sb.openflow_target().unwrap().to_string())
                .dpid(DPID)
                .start()
                .expect("starting OVS"),
            None => {
                let ovs = Ovs::builder().start().expect("starting OVS");
                ovs.ofctl(&["add-flow", "priority=0,actions=NORMAL"])
                    .unwrap();
                ovs
            }
        };
        let ns = ns_path(ovs.netns().unwrap().name());
        let mut tokens = plexus_controller::api::Tokens::default();
        tokens.insert(TOKEN, plexus_controller::api::Scope::Admin);
        std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
        // The socket is created in OVS's namespace and stays there. Backlog
        // 1024 as `plexus-controller`'s own listener (tokio's bind): std's
        // 128 overflows when 100 concurrent ADDs connect twice each, and a
        // dropped SYN costs the caller a 1 s retransmission.
        let l = run_in(
            Path::new(&ns),
            || -> std::io::Result<tokio::net::TcpListener> {
                let _g = rt.enter();
                let s = tokio::net::TcpSocket::new_v4()?;
                s.bind("127.0.0.1:0".parse().unwrap())?;
                s.listen(1024)
            },
        )
        .unwrap()
        .unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        {
            let _g = rt.enter();
            let mut st = plexus_controller::api::AppState::new(store.clone(), Some(tokens));
            if let Some(sb) = &southbound {
                st.sync = sb.status();
                st.switch_ports = sb.switch_ports();
            }
            let app = plexus_controller::api::app(st);
            rt.spawn(async move { axum::serve(l, app).await });
        }
        let mut e = Env {
            ovs,
            url,
            _southbound: southbound,
            _rt: rt,
            dir,
            subnet: String::new(),
            chassis: String::new(),
            store,
        };
        let t = e.api("POST", "/v1/tenants", Some(json!({"name": "t1"})));
        let v = e.api(
            "POST",
            "/v1/vpcs",
            Some(json!({"tenant_id": t["id"], "name": "v1", "cidrs": ["10.77.0.0/16"]})),
        );
        let s = e.api(
            "POST",
            "/v1/subnets",
            Some(json!({"vpc_id": v["id"], "name": "s1", "cidr": "10.77.1.0/24"})),
        );
        let c = e.api(
            "POST",
            "/v1/chassis",
            Some(json!({"name": "node1", "vtep_ip": "192.0.2.1",
                        "endpoint": {"datapath_id": format!("{DPID:#x}")}})),
        );
        e.subnet = s["id"].as_str().unwrap().to_owned();
        e.chassis = c["id"].as_str().unwrap().to_owned();
        Some(e)
    }

    fn ns(&self) -> &str {
        self.ovs.netns().unwrap().name()
    }

    fn api(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let c = Client::new(&self.url, Some(TOKEN.into()), Duration::from_secs(5)).unwrap();
        let body = body.map(|b| b.to_string());
        let r = run_in(Path::new(&ns_path(self.ns())), || {
            c.request(method, path, body.as_deref().map(str::as_bytes))
        })
        .unwrap()
        .unwrap();
        assert!(
            r.status < 400,
            "{method} {path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        serde_json::from_slice(&r.body).unwrap_or(Value::Null)
    }

    fn conf(&self, version: &str) -> Value {
        json!({
            "cniVersion": version, "name": "plexus", "type": "plexus-cni",
            "controller": {"url": self.url,
                           "token_file": self.dir.path().join("token").display().to_string()},
            "subnet": self.subnet, "chassis": self.chassis, "mtu": 1400,
            "bridge": "br0", "ovsdb": self.ovs.db_target(),
        })
    }

    fn plugin(&self) -> Plugin {
        Plugin {
            bin: plugin_bin(),
            host_ns: self.ns().to_owned(),
        }
    }

    fn controller_ports(&self) -> Vec<Value> {
        self.api("GET", "/v1/ports", None)["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn ovs_ports(&self) -> Vec<String> {
        self.ovs
            .vsctl(&["list-ports", "br0"])
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn host_veths(&self) -> Vec<String> {
        plexus_tests::netns::ip(&["-n", self.ns(), "-o", "link", "show"])
            .unwrap()
            .lines()
            .filter(|l| l.contains(": plx"))
            .map(str::to_owned)
            .collect()
    }

    /// IPAM leases of the test subnet (read from the controller's store).
    fn leases(&self) -> Vec<(String, String)> {
        use plexus_controller::store::Store;
        self.store.ipam_list(&self.subnet).unwrap()
    }

    /// Waits up to 10 s for the host link `name` to exist.
    fn await_host_link(&self, name: &str) -> bool {
        for _ in 0..200 {
            if plexus_tests::netns::ip(&["-n", self.ns(), "link", "show", name]).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn assert_clean(&self) {
        assert_eq!(self.leases(), Vec::new(), "IPAM leases left");
        assert_eq!(
            self.controller_ports(),
            Vec::<Value>::new(),
            "controller ports left"
        );
        assert_eq!(self.ovs_ports(), Vec::<String>::new(), "OVS ports left");
        assert_eq!(self.host_veths(), Vec::<String>::new(), "host veths left");
    }
}

/// A `plexus-cni daemon` in the host namespace of an [`Env`] (its socket in
/// the Env's temp dir), killed with SIGKILL on drop.
struct Daemon {
    child: std::process::Child,
    sock: PathBuf,
}

impl Daemon {
    fn pid(&self) -> u32 {
        // `ip netns exec` execs the daemon: the child's pid is the daemon's.
        self.child.id()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Env {
    /// Starts the daemon (with `extra` environment) and waits until it accepts.
    fn daemon(&self, extra: &[(&str, &str)]) -> Daemon {
        self.daemon_with(extra, &[])
    }

    /// [`Env::daemon`] with more arguments for `plexus-cni daemon`.
    fn daemon_with(&self, extra: &[(&str, &str)], args: &[&str]) -> Daemon {
        let sock = self.dir.path().join("cni.sock");
        let child = Command::new("ip")
            .args(["netns", "exec", self.ns()])
            .arg(plugin_bin())
            .arg("daemon")
            .arg("--socket")
            .arg(&sock)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning the daemon");
        let mut d = Daemon { child, sock };
        for _ in 0..200 {
            if std::os::unix::net::UnixStream::connect(&d.sock).is_ok() {
                return d;
            }
            if let Ok(Some(st)) = d.child.try_wait() {
                panic!("the daemon exited: {st}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        d.kill();
        panic!("the daemon never listened on {}", d.sock.display());
    }

    /// [`Env::conf`] whose calls go through the daemon.
    fn daemon_conf(&self, version: &str, d: &Daemon) -> Value {
        let mut c = self.conf(version);
        c["daemon_socket"] = json!(d.sock.display().to_string());
        c
    }
}

/// The per-node daemon (`"daemon_socket"`): every verb through it
/// (conformance), 20 concurrent ADDs with distinct addresses whose DELs leave
/// nothing, then a daemon killed with SIGKILL in the middle of an ADD: the
/// plugin answers 11 (try again later) while the daemon is down and STATUS
/// 50; after a restart the ADD succeeds and DEL leaves nothing.
#[test]
fn daemon_serves_every_verb_and_an_add_after_a_killed_daemon_leaks_nothing() {
    let Some(e) = Env::start() else { return };
    let p = e.plugin();
    {
        let d = e.daemon(&[]);
        for version in ["0.4.0", "1.1.0"] {
            common_conformance(&p, &e.daemon_conf(version, &d), "plx-dmn-1");
            e.assert_clean();
        }
        let conf = e.daemon_conf("1.1.0", &d);
        p.verb("STATUS", "", "", "", &conf)
            .assert_ok_empty("STATUS through the daemon");
        let nss: Vec<Netns> = (0..20)
            .map(|_| Netns::create(&unique_name("plxdm")).unwrap())
            .collect();
        // A switch row left by a crashed ADD of dmn7: its ADD replaces it.
        let stale = plexus_cni::plugin::host_ifname("dmn7", "eth0");
        e.ovs.vsctl(&["add-port", "br0", &stale]).unwrap();
        let results: Vec<Value> = std::thread::scope(|s| {
            let hs: Vec<_> = nss
                .iter()
                .enumerate()
                .map(|(i, ns)| {
                    let (p, conf) = (&p, &conf);
                    s.spawn(move || {
                        let netns = ns_path(ns.name());
                        let r = p.verb("ADD", &format!("dmn{i}"), &netns, "eth0", conf);
                        assert_eq!(r.code, 0, "ADD dmn{i}: {}", r.stdout);
                        let r = r.json();
                        validate_result(&r, "1.1.0", &netns, "eth0");
                        r
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let ips: HashSet<String> = results
            .iter()
            .map(|r| r["ips"][0]["address"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ips.len(), 20, "duplicate addresses: {ips:?}");
        assert_eq!(e.ovs_ports().len(), 20);
        std::thread::scope(|s| {
            for (i, ns) in nss.iter().enumerate() {
                let (p, conf) = (&p, &conf);
                s.spawn(move || {
                    p.verb("DEL", &format!("dmn{i}"), &ns_path(ns.name()), "eth0", conf)
                        .assert_ok_empty("concurrent DEL through the daemon");
                });
            }
        });
        e.assert_clean();
    }

    // Killed mid-ADD: the daemon pauses after the veth, then dies.
    let mut d = e.daemon(&[("PLEXUS_CNI_TEST_PAUSE", "after-veth")]);
    let conf = e.daemon_conf("1.1.0", &d);
    let pod = Netns::create(&unique_name("plxdm")).unwrap();
    let netns = ns_path(pod.name());
    let host = plexus_cni::plugin::host_ifname("dmn-crash", "eth0");
    let crashed = std::thread::scope(|s| {
        let add = s.spawn(|| p.verb("ADD", "dmn-crash", &netns, "eth0", &conf));
        let seen = e.await_host_link(&host);
        d.kill();
        assert!(seen, "the paused ADD never created {host}");
        add.join().unwrap()
    });
    crashed.assert_error(11, "ADD whose daemon was killed");
    p.verb("ADD", "dmn-crash", &netns, "eth0", &conf)
        .assert_error(11, "ADD while the daemon is down");
    p.verb("STATUS", "", "", "", &conf)
        .assert_error(50, "STATUS while the daemon is down");
    let _d = e.daemon(&[]);
    let r = p.verb("ADD", "dmn-crash", &netns, "eth0", &conf);
    assert_eq!(r.code, 0, "ADD after the daemon's restart: {}", r.stdout);
    let r = r.json();
    validate_result(&r, "1.1.0", &netns, "eth0");
    assert_eq!(e.controller_ports().len(), 1, "{:?}", e.controller_ports());
    assert_eq!(e.leases().len(), 1);
    assert_eq!(e.host_veths().len(), 1, "{:?}", e.host_veths());
    p.verb("CHECK", "dmn-crash", &netns, "eth0", &with_prev(&conf, &r))
        .assert_ok_empty("CHECK after the re-ADD");
    p.verb("DEL", "dmn-crash", &netns, "eth0", &conf)
        .assert_ok_empty("DEL");
    e.assert_clean();
}

#[test]
fn conformance_plexus_all_verbs() {
    let Some(e) = Env::start() else { return };
    let p = e.plugin();
    for version in ["0.4.0", "1.0.0", "1.1.0"] {
        common_conformance(&p, &e.conf(version), "plx-ctr-1");
        e.assert_clean();
    }
    let conf = e.conf("1.1.0");
    let pod = Netns::create(&unique_name("plxpod")).unwrap();
    let netns = ns_path(pod.name());

    // VERSION lists every version we claim.
    let v = p
        .verb("VERSION", "", "", "", &json!({"cniVersion": "1.1.0"}))
        .json();
    assert_eq!(
        v["supportedVersions"],
        json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    );
    // 0.3.1 result: ips carry "version".
    let r = p.verb("ADD", "c031", &netns, "eth0", &e.conf("0.3.1"));
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.json()["ips"][0]["version"], "4");
    p.verb("DEL", "c031", &netns, "eth0", &e.conf("0.3.1"))
        .assert_ok_empty("DEL 0.3.1");

    // STATUS: up; controller down → 50; bridge missing → 50.
    p.verb("STATUS", "", "", "", &conf)
        .assert_ok_empty("STATUS");
    let mut down = conf.clone();
    down["controller"]["url"] = json!("http://127.0.0.1:1");
    p.verb("STATUS", "", "", "", &down)
        .assert_error(50, "STATUS controller down");
    let mut nobr = conf.clone();
    nobr["bridge"] = json!("nosuchbr");
    p.verb("STATUS", "", "", "", &nobr)
        .assert_error(50, "STATUS no bridge");

    // Error paths.
    p.call(&[], &conf.to_string())
        .assert_error(4, "no CNI_COMMAND");
    p.call(&[("CNI_COMMAND", "FROB")], &conf.to_string())
        .assert_error(4, "unknown command");
    p.call(
        &[
            ("CNI_COMMAND", "ADD"),
            ("CNI_NETNS", &netns),
            ("CNI_IFNAME", "eth0"),
        ],
        &conf.to_string(),
    )
    .assert_error(4, "no CNI_CONTAINERID");
    p.verb("ADD", "c1", &netns, "this-name-is-too-long", &conf)
        .assert_error(4, "bad CNI_IFNAME");
    p.verb("ADD", "c1", "/run/netns/plx-no-such-ns", "eth0", &conf)
        .assert_error(3, "missing netns");
    let mut pm = conf.clone();
    pm["runtimeConfig"] = json!({"portMappings": [{"hostPort": 80, "containerPort": 80}]});
    p.verb("ADD", "c1", &netns, "eth0", &pm)
        .assert_error(2, "portMappings");
    let mut nosub = conf.clone();
    nosub.as_object_mut().unwrap().remove("subnet");
    p.verb("ADD", "c1", &netns, "eth0", &nosub)
        .assert_error(7, "no subnet");
    p.verb(
        "ADD",
        "c1",
        &netns,
        "eth0",
        &json!({"cniVersion": "1.1.0", "type": "x"}),
    )
    .assert_error(7, "no name");
    let mut badsub = conf.clone();
    badsub["subnet"] = json!("no-such-subnet");
    p.verb("ADD", "c1", &netns, "eth0", &badsub)
        .assert_error(101, "unknown subnet");
    p.verb("ADD", "c1", &netns, "eth0", &down)
        .assert_error(100, "controller down");
    let mut badtok = conf.clone();
    badtok["controller"]["token_file"] = json!("/nonexistent/token");
    p.verb("ADD", "c1", &netns, "eth0", &badtok)
        .assert_error(5, "token file");
    p.verb("CHECK", "c1", &netns, "eth0", &conf)
        .assert_error(7, "CHECK without prevResult");
    e.assert_clean();

    // runtimeConfig ips/mac are honoured; CHECK detects drift.
    let mut fixed = conf.clone();
    fixed["runtimeConfig"] = json!({"ips": ["10.77.1.77/24"], "mac": "02:00:00:00:77:77"});
    let r = p.verb("ADD", "c2", &netns, "eth0", &fixed);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let r = r.json();
    assert_eq!(r["ips"][0]["address"], "10.77.1.77/24");
    assert_eq!(r["interfaces"][1]["mac"], "02:00:00:00:77:77");
    assert_eq!(r["interfaces"][1]["mtu"], 1400);
    let prev = with_prev(&conf, &r);
    p.verb("CHECK", "c2", &netns, "eth0", &prev)
        .assert_ok_empty("CHECK");
    pod.ip(&["addr", "flush", "dev", "eth0"]).unwrap();
    p.verb("CHECK", "c2", &netns, "eth0", &prev)
        .assert_error(104, "CHECK drift");
    p.verb("DEL", "c2", &netns, "eth0", &prev)
        .assert_ok_empty("DEL");

    // Chaining: our result appends to a previous plugin's.
    let before = json!({"cniVersion": "1.1.0", "interfaces": [{"name": "lo0"}],
                        "ips": [], "routes": [], "dns": {"nameservers": ["10.0.0.53"]}});
    let r = p.verb("ADD", "c3", &netns, "eth0", &with_prev(&conf, &before));
    assert_eq!(r.code, 0, "{}", r.stdout);
    let r = r.json();
    assert_eq!(r["interfaces"][0]["name"], "lo0");
    assert_eq!(r["ips"][0]["interface"], 2);
    assert_eq!(r["dns"]["nameservers"][0], "10.0.0.53");
    p.verb("DEL", "c3", &netns, "eth0", &conf)
        .assert_ok_empty("DEL");
    e.assert_clean();

    // GC: keep c4, plant leaks c5 (full attachment) and a bare controller port.
    for c in ["c4", "c5"] {
        let ns = Netns::create(&unique_name("plxgc")).unwrap();
        let r = p.verb("ADD", c, &ns_path(ns.name()), "eth0", &conf);
        assert_eq!(r.code, 0, "{}", r.stdout);
        let _ = ns.persist();
    }
    e.api(
        "POST",
        "/v1/ports",
        Some(json!({"subnet_id": e.subnet, "name": "cni/plexus/c6/eth0",
                    "binding": {"chassis_id": e.chassis, "iface": "c6/eth0"}})),
    );
    assert_eq!(e.controller_ports().len(), 3);
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "c4", "ifname": "eth0"}]);
    p.verb("GC", "", "", "", &gc).assert_ok_empty("GC");
    let left = e.controller_ports();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["name"], "cni/plexus/c4/eth0");
    assert_eq!(e.ovs_ports().len(), 1);
    gc["cni.dev/valid-attachments"] = json!([]);
    p.verb("GC", "", "", "", &gc).assert_ok_empty("GC all");
    e.assert_clean();
    for n in plexus_tests::netns::list().unwrap() {
        if n.starts_with("plxgc") && n.contains(&format!("{}x", std::process::id() % 100_000)) {
            let _ = plexus_tests::netns::ip(&["netns", "del", &n]);
        }
    }
}

#[test]
fn e2e_two_pods_ping_then_del_leaves_nothing() {
    let Some(e) = Env::start() else { return };
    let p = e.plugin();
    let conf = e.conf("1.1.0");
    let pods: Vec<Netns> = (0..2)
        .map(|_| Netns::create(&unique_name("plxpod")).unwrap())
        .collect();
    let mut addrs = Vec::new();
    for (i, pod) in pods.iter().enumerate() {
        let r = p.verb(
            "ADD",
            &format!("pod{i}"),
            &ns_path(pod.name()),
            "eth0",
            &conf,
        );
        assert_eq!(r.code, 0, "{}", r.stdout);
        let a = validate_result(&r.json(), "1.1.0", &ns_path(pod.name()), "eth0");
        addrs.push(a.split('/').next().unwrap().to_owned());
        let mtu = pod.ip(&["-o", "link", "show", "eth0"]).unwrap();
        assert!(mtu.contains("mtu 1400"), "{mtu}");
        let rt = pod.ip(&["route", "show", "default"]).unwrap();
        assert!(rt.contains("via 10.77.1.1"), "{rt}");
    }
    assert_eq!(e.ovs_ports().len(), 2);
    let ids = e
        .ovs
        .vsctl(&["--columns=external_ids", "list", "Interface"])
        .unwrap();
    for port in e.controller_ports() {
        assert!(ids.contains(port["id"].as_str().unwrap()), "{ids}");
        assert_eq!(port["binding"]["chassis_id"], json!(e.chassis));
    }
    // The host sides are switch ports: up, without IPv6 link-local addresses.
    for i in 0..2 {
        let host = plexus_cni::plugin::host_ifname(&format!("pod{i}"), "eth0");
        let l = plexus_tests::netns::ip(&["-n", e.ns(), "link", "show", &host]).unwrap();
        assert!(l.contains(",UP"), "{l}");
        let v6 =
            plexus_tests::netns::ip(&["-n", e.ns(), "-6", "addr", "show", "dev", &host]).unwrap();
        assert!(!v6.contains("inet6"), "{v6}");
    }
    for (from, to) in [(0, 1), (1, 0)] {
        let out = pods[from]
            .command("ping")
            .args(["-c", "3", "-i", "0.2", "-W", "2", &addrs[to]])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ping {} -> {}: {}",
            from,
            addrs[to],
            String::from_utf8_lossy(&out.stdout)
        );
    }
    for (i, pod) in pods.iter().enumerate() {
        p.verb(
            "DEL",
            &format!("pod{i}"),
            &ns_path(pod.name()),
            "eth0",
            &conf,
        )
        .assert_ok_empty("DEL");
        let links = pod.ip(&["-o", "link", "show"]).unwrap();
        assert!(!links.contains("eth0"), "{links}");
    }
    e.assert_clean();
}

/// Issue 8's scale acceptance: 100 concurrent ADDs into 100 netns (one exec
/// each, all started together), no duplicate address, every pod has its
/// address, MTU and default route; reachability follows the VPC/SG model
/// (the controller's southbound programs the switch, fail-mode secure, no
/// NORMAL flow): every pod is in one VPC, 90 in security group "open"
/// (ICMP from members of "open") and every 10th in "closed" (no ingress), so
/// open → open must answer and any pair with a "closed" end must not —
/// checked on sampled pairs of every class; then 100 concurrent DELs and
/// nothing left: no pod interface, no host veth, no OVS port, no controller
/// port, no IPAM lease. `CNI_CONCURRENT` overrides 100.
#[test]
fn scale_concurrent_adds_reach_per_security_groups_and_dels_leave_nothing() {
    let Some(e) = Env::start_with(true) else {
        return;
    };
    let n: usize = std::env::var("CNI_CONCURRENT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100)
        .max(20);
    let tenant = e.api("GET", &format!("/v1/subnets/{}", e.subnet), None)["vpc_id"].clone();
    let tenant = e.api(
        "GET",
        &format!("/v1/vpcs/{}", tenant.as_str().unwrap()),
        None,
    )["tenant_id"]
        .clone();
    let open = e.api(
        "POST",
        "/v1/security-groups",
        Some(json!({"tenant_id": tenant, "name": "open", "rules": []})),
    );
    let open_id = open["id"].as_str().unwrap().to_owned();
    e.api(
        "PUT",
        &format!("/v1/security-groups/{open_id}"),
        Some(json!({"tenant_id": tenant, "name": "open", "rules": [
            {"direction": "ingress", "protocol": "icmp", "remote_group_id": open_id},
            {"direction": "egress"}]})),
    );
    let closed = e.api(
        "POST",
        "/v1/security-groups",
        Some(json!({"tenant_id": tenant, "name": "closed"})),
    );
    let is_closed = |i: usize| i % 10 == 9;
    let conf_for = |i: usize| {
        let mut c = e.conf("1.0.0");
        c["security_groups"] = json!([if is_closed(i) {
            &closed["id"]
        } else {
            &open["id"]
        }]);
        c
    };
    let pods: Vec<Netns> = (0..n)
        .map(|_| Netns::create(&unique_name("plxcc")).unwrap())
        .collect();
    let results: Vec<Value> = std::thread::scope(|s| {
        let hs: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, pod)| {
                let (p, conf) = (e.plugin(), conf_for(i));
                s.spawn(move || {
                    let r = p.verb(
                        "ADD",
                        &format!("cc{i}"),
                        &ns_path(pod.name()),
                        "eth0",
                        &conf,
                    );
                    assert_eq!(r.code, 0, "ADD {i}: {}", r.stdout);
                    r.json()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let addrs: Vec<String> = results
        .iter()
        .zip(&pods)
        .map(|(r, pod)| validate_result(r, "1.0.0", &ns_path(pod.name()), "eth0"))
        .collect();
    let ips: HashSet<&String> = addrs.iter().collect();
    assert_eq!(ips.len(), n, "duplicate addresses: {addrs:?}");
    let ports = e.controller_ports();
    assert_eq!(ports.len(), n);
    assert_eq!(e.ovs_ports().len(), n);
    assert_eq!(e.host_veths().len(), n);
    let leases = e.leases();
    assert_eq!(leases.len(), n, "{leases:?}");
    for (a, _) in &leases {
        assert!(
            ips.contains(&format!("{a}/24")),
            "lease {a} is no pod's address"
        );
    }
    // The controller has every pod's switch port, and the switch holds the
    // flows computed with all of them (realized, flow count settled).
    let t0 = std::time::Instant::now();
    let mut last_count = None;
    loop {
        let up = ports
            .iter()
            .filter(|p| {
                e.api(
                    "GET",
                    &format!("/v1/ports/{}/status", p["id"].as_str().unwrap()),
                    None,
                )["state"]
                    == "up"
            })
            .count();
        let st = e.api("GET", "/v1/status", None);
        let c = &st["chassis"][e.chassis.as_str()];
        let count = c["flow_count"].as_u64();
        if up == n
            && c["realized_revision"].as_u64() >= st["revision"].as_u64()
            && last_count == Some(count)
        {
            break;
        }
        last_count = (up == n).then_some(count);
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{up}/{n} ports up, chassis {c}, revision {}",
            st["revision"]
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Sampled pairs of every class: open→open (a ring over every 7th pod and
    // first/last), open→closed, closed→open, closed→closed.
    let plain: Vec<&str> = addrs.iter().map(|a| a.split('/').next().unwrap()).collect();
    let open_pods: Vec<usize> = (0..n).filter(|&i| !is_closed(i)).collect();
    let closed_pods: Vec<usize> = (0..n).filter(|&i| is_closed(i)).collect();
    let mut reach: Vec<(usize, usize)> = open_pods
        .iter()
        .enumerate()
        .step_by(7)
        .map(|(k, &i)| (i, open_pods[(k + 11) % open_pods.len()]))
        .collect();
    reach.push((open_pods[0], *open_pods.last().unwrap()));
    let mut deny = Vec::new();
    for (k, &c) in closed_pods.iter().enumerate() {
        let o = open_pods[(k * 13) % open_pods.len()];
        deny.extend([
            (o, c),
            (c, o),
            (c, closed_pods[(k + 1) % closed_pods.len()]),
        ]);
    }
    let ping = |from: usize, to: usize| {
        pods[from]
            .command("ping")
            .args(["-c", "1", "-W", "1", plain[to]])
            .output()
            .unwrap()
            .status
            .success()
    };
    let class = |i: usize| if is_closed(i) { "closed" } else { "open" };
    // Must reach: up to 10 one-second tries (ARP and a loaded machine).
    let failures: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = reach
            .iter()
            .map(|&(a, b)| s.spawn(move || (!(0..10).any(|_| ping(a, b))).then_some((a, b))))
            .collect();
        hs.into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    })
    .into_iter()
    .map(|(a, b)| format!("pod {a} (open) -> pod {b} ({}, open): no answer", plain[b]))
    .collect();
    assert!(
        failures.is_empty(),
        "{} of {} open -> open pairs do not reach: {failures:#?}",
        failures.len(),
        reach.len()
    );
    // Must not reach (the switch is converged: the pairs above answered).
    let failures: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = deny
            .iter()
            .map(|&(a, b)| s.spawn(move || (0..2).any(|_| ping(a, b)).then_some((a, b))))
            .collect();
        hs.into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    })
    .into_iter()
    .map(|(a, b)| {
        format!(
            "pod {a} ({}) -> pod {b} ({}, {}): ANSWERED",
            class(a),
            plain[b],
            class(b)
        )
    })
    .collect();
    assert!(
        failures.is_empty(),
        "{} of {} pairs with a closed end answered: {failures:#?}",
        failures.len(),
        deny.len()
    );
    eprintln!(
        "{} sampled pairs follow the VPC/SG model ({} must reach, {} must not)",
        reach.len() + deny.len(),
        reach.len(),
        deny.len()
    );
    std::thread::scope(|s| {
        for (i, pod) in pods.iter().enumerate() {
            let (p, conf) = (e.plugin(), conf_for(i));
            s.spawn(move || {
                p.verb(
                    "DEL",
                    &format!("cc{i}"),
                    &ns_path(pod.name()),
                    "eth0",
                    &conf,
                )
                .assert_ok_empty("DEL");
            });
        }
    });
    for pod in &pods {
        let links = pod.ip(&["-o", "link", "show"]).unwrap();
        assert!(!links.contains("eth0"), "{}: {links}", pod.name());
    }
    e.assert_clean();
}

/// The plugin under test: `PLEXUS_CNI_BIN` (e.g. the static musl build that
/// `BUILD=1 cni-plugin/install.sh` installs) or this workspace's build.
fn plugin_bin() -> PathBuf {
    std::env::var_os("PLEXUS_CNI_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_plexus-cni").into())
}

/// Spawns an ADD that pauses right after creating the veth, waits until the
/// host-side veth exists, and kills it with SIGKILL.
fn crash_add_after_veth(e: &Env, cid: &str, netns: &str, conf: &Value) {
    let host = plexus_cni::plugin::host_ifname(cid, "eth0");
    let mut child = Command::new("ip")
        .args(["netns", "exec", e.ns()])
        .arg(plugin_bin())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs([
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", cid),
            ("CNI_NETNS", netns),
            ("CNI_IFNAME", "eth0"),
            ("PLEXUS_CNI_TEST_PAUSE", "after-veth"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    // `ip netns exec` execs the plugin: the child's pid is the plugin's.
    let seen = e.await_host_link(&host);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(seen, "the paused ADD never created {host}");
}

/// Issue 8's crash acceptance: kill -9 mid-ADD (after the veth exists, before
/// the switch port), ADD again succeeds and DEL then leaves nothing; GC
/// removes planted leaks: a crashed half-ADD (veth + controller port, no
/// switch port), a complete attachment that is no longer valid (veth, OVS
/// port, controller port, lease) and a bare controller port (lease), while
/// the valid attachment stays intact.
#[test]
fn crash_mid_add_then_add_again_and_gc_removes_planted_leaks() {
    let Some(e) = Env::start() else { return };
    let p = e.plugin();
    let conf = e.conf("1.1.0");
    let pod = Netns::create(&unique_name("plxcr")).unwrap();
    let netns = ns_path(pod.name());

    crash_add_after_veth(&e, "crash1", &netns, &conf);
    assert_eq!(e.host_veths().len(), 1, "{:?}", e.host_veths());
    assert_eq!(e.ovs_ports().len(), 0);
    let r = p.verb("ADD", "crash1", &netns, "eth0", &conf);
    assert_eq!(r.code, 0, "ADD after crash: {}", r.stdout);
    let r = r.json();
    validate_result(&r, "1.1.0", &netns, "eth0");
    assert_eq!(e.controller_ports().len(), 1, "{:?}", e.controller_ports());
    assert_eq!(e.leases().len(), 1);
    assert_eq!(e.ovs_ports().len(), 1);
    assert_eq!(e.host_veths().len(), 1);
    p.verb("CHECK", "crash1", &netns, "eth0", &with_prev(&conf, &r))
        .assert_ok_empty("CHECK after re-ADD");
    p.verb("DEL", "crash1", &netns, "eth0", &conf)
        .assert_ok_empty("DEL");
    e.assert_clean();

    // GC: keep "keep", plant three kinds of leak.
    let nss: Vec<Netns> = (0..3)
        .map(|_| Netns::create(&unique_name("plxcr")).unwrap())
        .collect();
    let keep = p.verb("ADD", "keep", &ns_path(nss[0].name()), "eth0", &conf);
    assert_eq!(keep.code, 0, "{}", keep.stdout);
    let leak = p.verb("ADD", "leak-full", &ns_path(nss[1].name()), "eth0", &conf);
    assert_eq!(leak.code, 0, "{}", leak.stdout);
    crash_add_after_veth(&e, "leak-half", &ns_path(nss[2].name()), &conf);
    e.api(
        "POST",
        "/v1/ports",
        Some(
            json!({"subnet_id": e.subnet, "name": "cni/plexus/leak-bare/eth0",
                    "binding": {"chassis_id": e.chassis, "iface": "leak-bare/eth0"}}),
        ),
    );
    assert_eq!(e.host_veths().len(), 3, "{:?}", e.host_veths());
    assert_eq!(e.ovs_ports().len(), 2);
    assert_eq!(e.leases().len(), 4, "{:?}", e.leases());
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    p.verb("GC", "", "", "", &gc).assert_ok_empty("GC");
    let left = e.controller_ports();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["name"], "cni/plexus/keep/eth0");
    assert_eq!(e.leases().len(), 1, "{:?}", e.leases());
    assert_eq!(
        e.ovs_ports(),
        vec![plexus_cni::plugin::host_ifname("keep", "eth0")]
    );
    let veths = e.host_veths();
    assert_eq!(veths.len(), 1, "{veths:?}");
    assert!(veths[0].contains(&plexus_cni::plugin::host_ifname("keep", "eth0")));
    let keep_prev = with_prev(&conf, &keep.json());
    p.verb("CHECK", "keep", &ns_path(nss[0].name()), "eth0", &keep_prev)
        .assert_ok_empty("CHECK of the valid attachment after GC");
    gc["cni.dev/valid-attachments"] = json!([]);
    p.verb("GC", "", "", "", &gc).assert_ok_empty("GC all");
    e.assert_clean();
}

/// User + system CPU time of waited-for children so far (ms), from
/// `/proc/self/stat` (cutime, cstime; USER_HZ = 100). The kernel sums it in
/// nanoseconds, so a difference over many children is exact to 10 ms.
fn children_cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    // Fields after the command: state(3) ... cutime(16) cstime(17).
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (f.get(13).copied().unwrap_or(0.0) + f.get(14).copied().unwrap_or(0.0)) * 10.0
}

/// Before a timed phase: deleted namespaces are torn down by the kernel
/// afterwards (`cleanup_net` in a workqueue, under the RTNL lock), which
/// would otherwise run during the next phase's ADDs. Untimed; bench only.
fn settle(bench: bool) {
    if bench {
        std::thread::sleep(Duration::from_secs(3));
    }
}

/// `(step, ms after the spawn)` of the `PLEXUS_CNI_TRACE` lines in `stderr`.
fn trace_steps(stderr: &[u8], spawned_us: f64) -> Vec<(String, f64)> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter_map(|l| {
            let mut w = l.strip_prefix("plexus-cni trace ")?.split_whitespace();
            let step = w.next()?.to_owned();
            let at: f64 = w.nth(1)?.strip_prefix('@')?.parse().ok()?;
            Some((step, (at - spawned_us) / 1e3))
        })
        .collect()
}

/// One latency-bench call as a runtime execs it: `CNI_*` only, stdio piped.
fn bench_call(bin: &Path, trace: bool, cmd: &str, cid: &str, netns: &str) -> Command {
    let mut c = Command::new(bin);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs([
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", cid),
            ("CNI_NETNS", netns),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/usr/lib/cni"),
        ])
        .envs(trace.then_some(("PLEXUS_CNI_TRACE", "1")))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// One call, driven as a runtime does (CNI_* env, config on stdin, one
/// exec). In a concurrent round it is started by [`Call::start`] on the
/// round's spawning thread and awaited by [`Call::finish`] on a waiter thread
/// of its own, as a runtime's per-call goroutine blocks in its own wait: a
/// call's exit is seen when it happens, not when the spawning thread is free
/// again.
struct Call {
    child: std::process::Child,
    t0: std::time::Instant,
    spawned_us: f64,
    cmd: &'static str,
    cid: String,
    trace: bool,
}

impl Call {
    fn start(
        bin: &Path,
        conf: &str,
        trace: bool,
        cmd: &'static str,
        cid: String,
        netns: String,
    ) -> Self {
        let spawned_us = unix_us();
        let t0 = std::time::Instant::now();
        // The configuration is in the child's stdin pipe before the child
        // runs, as when a runtime's per-call goroutine writes it right after
        // the start. A configuration is far below the pipe's 64 KiB, so the
        // write does not block.
        let (stdin, mut fill) = std::io::pipe().unwrap();
        fill.write_all(conf.as_bytes()).unwrap();
        drop(fill);
        let mut call = bench_call(bin, trace, cmd, &cid, &netns);
        call.stdin(stdin);
        Call {
            child: call.spawn().unwrap(),
            t0,
            spawned_us,
            cmd,
            cid,
            trace,
        }
    }

    /// The call's latency from the spawn to the exit and its trace steps.
    /// Panics when the call fails.
    fn finish(self) -> (f64, Vec<(String, f64)>) {
        let Call {
            child,
            t0,
            spawned_us,
            cmd,
            cid,
            trace,
        } = self;
        let o = child.wait_with_output().unwrap();
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        assert!(
            o.status.success(),
            "{cmd} {cid}: {} {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        if trace {
            // On the daemon's timeline (its lines carry the same call label).
            println!(
                "harness {cmd} {cid} spawned @{spawned_us:.0} reaped @{:.0}",
                unix_us()
            );
        }
        (ms, trace_steps(&o.stderr, spawned_us))
    }
}

fn unix_us() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as f64)
        .unwrap_or_default()
}

/// utime+stime of a process in ms (10 ms ticks), 0 when it is gone.
fn proc_cpu_ms(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) * 10.0
}

/// Where the CPU time of a phase went: the plugin processes (reaped
/// children), this process (the in-process controller and the harness),
/// OVS (ovsdb-server + ovs-vswitchd), and the whole machine (busy = not
/// idle/iowait, every CPU, from /proc/stat).
#[derive(Debug, Clone, Copy, Default)]
struct CpuSnapshot {
    plugins: f64,
    this: f64,
    ovs: f64,
    daemon: f64,
    machine_busy: f64,
}

impl CpuSnapshot {
    fn take(ovs_pids: &[u32], daemon: Option<u32>) -> Self {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let cpu: Vec<f64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().unwrap_or(0.0))
            .collect();
        let total: f64 = cpu.iter().take(8).sum();
        let idle = cpu.get(3).copied().unwrap_or(0.0) + cpu.get(4).copied().unwrap_or(0.0);
        Self {
            plugins: children_cpu_ms(),
            this: proc_cpu_ms("self"),
            ovs: ovs_pids.iter().map(|p| proc_cpu_ms(&p.to_string())).sum(),
            daemon: daemon.map_or(0.0, |p| proc_cpu_ms(&p.to_string())),
            machine_busy: (total - idle) * 10.0,
        }
    }
    fn since(&self, before: &Self) -> Self {
        Self {
            plugins: self.plugins - before.plugins,
            this: self.this - before.this,
            ovs: self.ovs - before.ovs,
            daemon: self.daemon - before.daemon,
            machine_busy: self.machine_busy - before.machine_busy,
        }
    }
    fn per_call(&self, n: usize) -> String {
        let n = n as f64;
        format!(
            "plugin={:.2} daemon={:.2} controller+harness={:.2} ovs={:.2} machine_busy={:.2}",
            self.plugins / n,
            self.daemon / n,
            self.this / n,
            self.ovs / n,
            self.machine_busy / n
        )
    }
}

/// p50/p99 of each traced step's time after the spawn (PLEXUS_CNI_TRACE).
fn print_steps(what: &str, calls: &[Vec<(String, f64)>]) {
    let mut by: Vec<(String, Vec<f64>)> = Vec::new();
    for call in calls {
        for (step, at) in call {
            match by.iter_mut().find(|(s, _)| s == step) {
                Some((_, v)) => v.push(*at),
                None => by.push((step.clone(), vec![*at])),
            }
        }
    }
    for (step, mut v) in by {
        v.sort_by(|a, b| a.total_cmp(b));
        let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        println!(
            "  {what} step {step:<28} after spawn p50={:.2} p99={:.2} ms",
            at(0.5),
            at(0.99)
        );
    }
}

/// Latency beside `../shared/bench/cni-ref-latency.sh`: N sequential ADD+DEL
/// and C concurrent ADDs then DELs, each a fresh netns (netns setup not timed;
/// timed span = one plugin exec incl. process start, spawned directly from a
/// thread inside OVS's namespace). `CNI_BENCH_BIN` selects the binary (use
/// the release build), `CNI_BENCH_N`/`CNI_BENCH_C` the counts.
/// Without `CNI_BENCH=1` it runs as a small functional check (5 sequential,
/// 3 concurrent) in CI; figures are printed, never asserted.
/// Run: `CNI_BENCH=1 cargo test -p plexus-cni --test cni latency_bench -- --nocapture`.
#[test]
fn latency_bench() {
    let Some(e) = Env::start() else { return };
    let bin: PathBuf = std::env::var("CNI_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| plugin_bin());
    let get = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(d)
    };
    let bench = std::env::var("CNI_BENCH").is_ok();
    let (n, c) = if bench {
        (get("CNI_BENCH_N", 100), get("CNI_BENCH_C", 100))
    } else {
        (5, 3)
    };
    let trace = std::env::var_os("PLEXUS_CNI_TRACE").is_some();
    // CNI_BENCH_DAEMON=1: calls go through a `plexus-cni daemon` (which
    // prints its own steps of each call with PLEXUS_CNI_TRACE).
    let daemon_env: &[(&str, &str)] = if trace {
        &[("PLEXUS_CNI_TRACE", "1")]
    } else {
        &[]
    };
    // CNI_BENCH_MAX_CALLS=N: the daemon's --max-calls (0: no bound).
    let max_calls = std::env::var("CNI_BENCH_MAX_CALLS").ok();
    let daemon_args: Vec<&str> = match &max_calls {
        Some(n) => vec!["--max-calls", n],
        None => vec![],
    };
    let daemon =
        std::env::var_os("CNI_BENCH_DAEMON").map(|_| e.daemon_with(daemon_env, &daemon_args));
    let daemon_pid = daemon.as_ref().map(Daemon::pid);
    let mut conf = match &daemon {
        Some(d) => e.daemon_conf("1.0.0", d),
        None => e.conf("1.0.0"),
    };
    if std::env::var("CNI_BENCH_NO_WAIT").is_ok() {
        conf["ovs_no_wait"] = json!(true);
    }
    let conf = conf.to_string();
    let host = ns_path(e.ns());
    // One sequential call, from a thread inside the host namespace: its
    // latency and (with PLEXUS_CNI_TRACE) its steps as (step, ms after the
    // spawn).
    let exec = |cmd: &'static str, cid: &str, netns: &str| {
        run_in(Path::new(&host), || {
            Call::start(&bin, &conf, trace, cmd, cid.to_owned(), netns.to_owned()).finish()
        })
        .unwrap()
    };
    let pctl = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        format!(
            "p50={:.2} p99={:.2} max={:.2} n={}",
            at(0.5),
            at(0.99),
            v[v.len() - 1],
            v.len()
        )
    };
    // warm-up
    let w = Netns::create(&unique_name("plxlat")).unwrap();
    exec("ADD", "lat-0", &ns_path(w.name()));
    exec("DEL", "lat-0", &ns_path(w.name()));
    let ovs_pids = e.ovs.pids();
    drop(w);
    let (mut add, mut del) = (Vec::new(), Vec::new());
    // Namespaces made up front so that only plugin runs are children in the loop.
    let seq: Vec<Netns> = (0..n)
        .map(|_| Netns::create(&unique_name("plxlat")).unwrap())
        .collect();
    settle(bench);
    let (mut add_steps, mut del_steps) = (Vec::new(), Vec::new());
    let cpu0 = CpuSnapshot::take(&ovs_pids, daemon_pid);
    for (i, ns) in seq.iter().enumerate() {
        let (ms, st) = exec("ADD", &format!("lat-{i}"), &ns_path(ns.name()));
        add.push(ms);
        add_steps.push(st);
        let (ms, st) = exec("DEL", &format!("lat-{i}"), &ns_path(ns.name()));
        del.push(ms);
        del_steps.push(st);
    }
    let cpu = CpuSnapshot::take(&ovs_pids, daemon_pid).since(&cpu0);
    drop(seq);
    println!("seq_add_ms {}", pctl(&mut add));
    print_steps("seq_add", &add_steps);
    println!("seq_del_ms {}", pctl(&mut del));
    print_steps("seq_del", &del_steps);
    println!(
        "cpu_ms_per_call (plugin user+sys, sequential ADD+DEL average) {:.2}",
        cpu.plugins / (2 * n) as f64
    );
    println!("seq_cpu_ms_per_add+del {}", cpu.per_call(n));
    let nss: Vec<Netns> = (0..c)
        .map(|_| Netns::create(&unique_name("plxlat")).unwrap())
        .collect();
    settle(bench);
    for (verb, key) in [("ADD", "add"), ("DEL", "del")] {
        let commits0 = e.store.commits();
        let cpu0 = CpuSnapshot::take(&ovs_pids, daemon_pid);
        let t0 = std::time::Instant::now();
        // All calls started from one thread inside the host namespace (a
        // runtime's spawns, not a thread per call: 100 caller threads that
        // each enter the namespace cost the machine more than the calls' own
        // process starts), each awaited by a waiter thread of its own.
        let (mut v, steps): (Vec<f64>, Vec<_>) = run_in(Path::new(&host), || {
            std::thread::scope(|s| {
                let waiters: Vec<_> = nss
                    .iter()
                    .enumerate()
                    .map(|(i, ns)| {
                        let call = Call::start(
                            &bin,
                            &conf,
                            trace,
                            verb,
                            format!("lat-c{i}"),
                            ns_path(ns.name()),
                        );
                        std::thread::Builder::new()
                            .name("bench-wait".into())
                            .stack_size(64 << 10)
                            .spawn_scoped(s, move || call.finish())
                            .unwrap()
                    })
                    .collect();
                waiters
                    .into_iter()
                    .map(|w| w.join().unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .unwrap()
        .into_iter()
        .unzip();
        let wall = t0.elapsed().as_secs_f64() * 1e3;
        let cpu = CpuSnapshot::take(&ovs_pids, daemon_pid).since(&cpu0);
        println!(
            "conc{c}_{key}_ms {} wall={wall:.1} store_commits={}",
            pctl(&mut v),
            e.store.commits() - commits0
        );
        print_steps(&format!("conc{c}_{key}"), &steps);
        println!("conc{c}_{key}_cpu_ms_per_call {}", cpu.per_call(c));
    }
    e.assert_clean();
}
