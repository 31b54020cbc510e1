//! `plexus port attach --tap` / `detach` / `status`, run as a user runs them:
//! the real `plexus` binary inside the namespace of a private userspace Open
//! vSwitch (the "host"), against an in-process controller listening on that
//! namespace's loopback. Checks the tap (created persistent `IFF_TAP|IFF_NO_PI`,
//! optionally multi-queue, or adopted), the OVS port with its external_ids,
//! the controller binding, rollback on errors, and that detach removes exactly
//! what attach made. Needs root, `ip`, OVS (SKIP outside CI, failure under CI=true).

use plexus_cni::netns::run_in;
use plexus_tests::ovs::Ovs;
use plexus_tests::prereq::{require_root, require_tool};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const TOKEN: &str = "attach-test-admin-token-0123456789";

struct Env {
    ovs: Ovs,
    url: String,
    _rt: tokio::runtime::Runtime,
    chassis: String,
    subnet: String,
}

/// Output of one CLI run.
struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Env {
    fn start() -> Option<Self> {
        if !require_root() || !require_tool("ip") || !require_tool("ovs-vswitchd") {
            return None;
        }
        let ovs = Ovs::builder().start().expect("starting OVS");
        let ns = Self::ns_path_of(&ovs);
        let dir = tempfile::tempdir().unwrap();
        let store = plexus_controller::store::RedbStore::open(&dir.path().join("db.redb")).unwrap();
        // The store keeps its file open; the directory may go.
        std::mem::forget(dir);
        let mut tokens = plexus_controller::api::Tokens::default();
        tokens.insert(TOKEN, plexus_controller::api::Scope::Admin);
        let l = run_in(&ns, || std::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap()
            .unwrap();
        l.set_nonblocking(true).unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        {
            let _g = rt.enter();
            let l = tokio::net::TcpListener::from_std(l).unwrap();
            let app = plexus_controller::api::app(plexus_controller::api::AppState::new(
                store,
                Some(tokens),
            ));
            rt.spawn(async move { axum::serve(l, app).await });
        }
        let mut e = Env {
            ovs,
            url,
            _rt: rt,
            chassis: String::new(),
            subnet: String::new(),
        };
        let t = e.api("POST", "/v1/tenants", Some(json!({"name": "t"})));
        let v = e.api(
            "POST",
            "/v1/vpcs",
            Some(json!({"tenant_id": t["id"], "name": "v", "cidrs": ["10.9.0.0/16"]})),
        );
        let s = e.api(
            "POST",
            "/v1/subnets",
            Some(json!({"vpc_id": v["id"], "name": "s", "cidr": "10.9.1.0/24"})),
        );
        let c = e.api(
            "POST",
            "/v1/chassis",
            Some(json!({"name": "node1", "vtep_ip": "192.0.2.1"})),
        );
        e.subnet = s["id"].as_str().unwrap().to_owned();
        e.chassis = c["id"].as_str().unwrap().to_owned();
        Some(e)
    }

    fn ns_path_of(ovs: &Ovs) -> PathBuf {
        Path::new("/run/netns").join(ovs.netns().unwrap().name())
    }

    fn ns(&self) -> &str {
        self.ovs.netns().unwrap().name()
    }

    fn api(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let c =
            plexus_cni::http::Client::new(&self.url, Some(TOKEN.into()), Duration::from_secs(5))
                .unwrap();
        let body = body.map(|b| b.to_string());
        let r = run_in(&Self::ns_path_of(&self.ovs), || {
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

    fn port(&self) -> Value {
        self.api(
            "POST",
            "/v1/ports",
            Some(json!({"subnet_id": self.subnet, "name": "vm"})),
        )
    }

    /// `plexus ARGS` in the host namespace.
    fn plexus(&self, args: &[&str]) -> Out {
        let o = Command::new("ip")
            .args(["netns", "exec", self.ns()])
            .arg(env!("CARGO_BIN_EXE_plexus"))
            .args(["--url", &self.url, "--token", TOKEN])
            .args(args)
            .output()
            .unwrap();
        Out {
            ok: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    fn attach(&self, port: &str, tap: &str, extra: &[&str]) -> Out {
        let db = self.ovs.db_target();
        let mut a = vec![
            "port",
            "attach",
            "--tap",
            tap,
            "--chassis",
            "node1",
            "--bridge",
            "br0",
            "--ovsdb",
            &db,
        ];
        a.extend_from_slice(extra);
        a.push(port);
        self.plexus(&a)
    }

    fn detach(&self, port: &str) -> Out {
        let db = self.ovs.db_target();
        self.plexus(&["port", "detach", "--ovsdb", &db, port])
    }

    /// `ip -d link show NAME` in the host namespace (None: no such device).
    fn link(&self, name: &str) -> Option<String> {
        plexus_tests::netns::ip(&["-n", self.ns(), "-d", "link", "show", name]).ok()
    }

    fn ovs_ports(&self) -> Vec<String> {
        self.ovs
            .vsctl(&["list-ports", "br0"])
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn binding(&self, port: &str) -> Value {
        self.api("GET", &format!("/v1/ports/{port}"), None)["binding"].clone()
    }
}

#[test]
fn attach_detach_created_and_adopted_taps() {
    let Some(e) = Env::start() else { return };
    let p = e.port();
    let pid = p["id"].as_str().unwrap();
    let mac = p["mac"].as_str().unwrap();

    // Attach creates a persistent tap without PI, plugs it, binds the port.
    let o = e.attach(pid, "vmt0", &[]);
    assert!(o.ok, "attach: {} {}", o.stdout, o.stderr);
    assert!(o.stdout.contains("(created)"), "{}", o.stdout);
    assert!(
        o.stdout.contains(&format!(
            "-netdev tap,id=n0,ifname=vmt0,script=no,downscript=no -device virtio-net-pci,netdev=n0,mac={mac}"
        )),
        "{}",
        o.stdout
    );
    let l = e.link("vmt0").expect("tap vmt0 exists");
    assert!(l.contains("tun type tap pi off"), "{l}");
    assert!(l.contains("persist on"), "{l}");
    assert!(l.contains("state") && l.contains(",UP"), "tap is up: {l}");
    assert_eq!(e.ovs_ports(), vec!["vmt0".to_string()]);
    let ids = e
        .ovs
        .vsctl(&["get", "interface", "vmt0", "external_ids"])
        .unwrap();
    assert!(ids.contains(&format!("iface-id=\"{pid}\"")), "{ids}");
    assert!(ids.contains("plexus-tap-created=\"true\""), "{ids}");
    let ofport = e
        .ovs
        .vsctl(&["get", "interface", "vmt0", "ofport"])
        .unwrap();
    assert!(
        ofport.trim().parse::<i64>().unwrap() > 0,
        "OVS opened the tap: ofport {ofport}"
    );
    assert_eq!(
        e.binding(pid),
        json!({"chassis_id": e.chassis, "iface": "vmt0"})
    );
    let st = e.plexus(&["-o", "json", "port", "status", pid]);
    assert!(st.ok, "{}", st.stderr);
    let st: Value = serde_json::from_str(&st.stdout).unwrap();
    // No southbound in this test: bound, not reported by a switch.
    assert_eq!(st["state"], "pending", "{st}");
    assert_eq!(st["binding"]["iface"], "vmt0");

    // Attaching again is idempotent and keeps "created".
    let o = e.attach(pid, "vmt0", &[]);
    assert!(o.ok, "re-attach: {}", o.stderr);
    assert!(o.stdout.contains("(created)"), "{}", o.stdout);
    assert_eq!(e.ovs_ports(), vec!["vmt0".to_string()]);

    // The same port on another tap: refused, nothing created.
    let o = e.attach(pid, "vmt9", &[]);
    assert!(!o.ok);
    assert!(o.stderr.contains("detach it first"), "{}", o.stderr);
    assert!(e.link("vmt9").is_none());

    // Another port on the same tap: refused by the switch's iface-id.
    let q = e.port();
    let qid = q["id"].as_str().unwrap();
    let o = e.attach(qid, "vmt0", &[]);
    assert!(!o.ok);
    assert!(
        o.stderr.contains("interface is plugged for another port"),
        "{}",
        o.stderr
    );
    assert_eq!(e.binding(qid), Value::Null);

    // A missing bridge: the new tap and the binding are rolled back.
    let db = e.ovs.db_target();
    let o = e.plexus(&[
        "port",
        "attach",
        "--tap",
        "vmt1",
        "--chassis",
        "node1",
        "--bridge",
        "nobr",
        "--ovsdb",
        &db,
        qid,
    ]);
    assert!(!o.ok);
    assert!(o.stderr.contains("bridge does not exist"), "{}", o.stderr);
    assert!(e.link("vmt1").is_none(), "tap rolled back");
    assert_eq!(e.binding(qid), Value::Null, "binding rolled back");

    // Not a tap / bad names / unknown chassis or port: clear errors.
    plexus_tests::netns::ip(&[
        "-n",
        e.ns(),
        "link",
        "add",
        "vmv0",
        "type",
        "veth",
        "peer",
        "vmv1",
    ])
    .unwrap();
    let o = e.attach(qid, "vmv0", &[]);
    assert!(!o.ok);
    assert!(
        o.stderr.contains("is not a tap (kind \"veth\")"),
        "{}",
        o.stderr
    );
    let o = e.attach(qid, "a/b", &[]);
    assert!(!o.ok);
    assert!(
        o.stderr.contains("not a valid interface name"),
        "{}",
        o.stderr
    );
    let o = e.plexus(&["port", "attach", "--tap", "vmt1", "--chassis", "nope", qid]);
    assert!(!o.ok);
    assert!(
        o.stderr.contains("no chassis with id or name"),
        "{}",
        o.stderr
    );
    let o = e.attach("no-such-port", "vmt1", &[]);
    assert!(!o.ok);
    assert!(o.stderr.contains("no such port"), "{}", o.stderr);
    assert!(e.link("vmt1").is_none());

    // Detach removes the port from the switch, deletes the tap attach
    // created, unbinds; a second detach has nothing to do.
    let o = e.detach(pid);
    assert!(o.ok, "detach: {}", o.stderr);
    assert!(o.stdout.contains("deleted the tap"), "{}", o.stdout);
    assert!(e.link("vmt0").is_none(), "tap deleted");
    assert_eq!(e.ovs_ports(), Vec::<String>::new());
    assert_eq!(e.binding(pid), Value::Null);
    let o = e.detach(pid);
    assert!(o.ok, "{}", o.stderr);
    assert!(o.stdout.contains("is not attached"), "{}", o.stdout);

    // An existing tap is adopted and survives detach.
    plexus_tests::netns::ip(&["-n", e.ns(), "tuntap", "add", "dev", "vmt2", "mode", "tap"])
        .unwrap();
    let o = e.attach(qid, "vmt2", &[]);
    assert!(o.ok, "{}", o.stderr);
    assert!(o.stdout.contains("(adopted)"), "{}", o.stdout);
    let o = e.detach(qid);
    assert!(o.ok, "{}", o.stderr);
    assert!(o.stdout.contains("tap kept"), "{}", o.stdout);
    assert!(e.link("vmt2").is_some(), "adopted tap kept");
    assert_eq!(e.ovs_ports(), Vec::<String>::new());
    // Single-queue tap, multi-queue asked: refused, nothing bound or plugged.
    let r = e.port();
    let rid = r["id"].as_str().unwrap();
    let o = e.attach(rid, "vmt2", &["--multi-queue"]);
    assert!(!o.ok);
    assert!(o.stderr.contains("single-queue tap"), "{}", o.stderr);
    assert_eq!(e.binding(rid), Value::Null);
    assert_eq!(e.ovs_ports(), Vec::<String>::new());

    // Multi-queue, MTU.
    let o = e.attach(rid, "vmt3", &["--multi-queue", "--mtu", "1400"]);
    assert!(o.ok, "{}", o.stderr);
    let l = e.link("vmt3").unwrap();
    assert!(l.contains("multi_queue"), "{l}");
    assert!(l.contains("mtu 1400"), "{l}");
    let o = e.detach(rid);
    assert!(o.ok, "{}", o.stderr);
    assert!(e.link("vmt3").is_none());
    assert_eq!(e.ovs_ports(), Vec::<String>::new());
}
