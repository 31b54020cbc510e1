//! Acceptance: real `ovs-vsctl` and `ovsdb-client` (OVS 3.1) against our server over TCP and unix.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use plexus_ovsdb::db::Database;
use plexus_ovsdb::schema::DatabaseSchema;
use plexus_ovsdb::server::{Server, ServerCore};

fn run(tool: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("timeout")
        .arg("10")
        .arg(tool)
        .args(args)
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        eprintln!(
            "{tool} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (out.status.success(), s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ovs_vsctl_and_ovsdb_client_against_our_server() {
    if !common::require_tool("ovs-vsctl") || !common::require_tool("ovsdb-client") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut core = ServerCore::new();
    core.add_database(Database::new(DatabaseSchema::vswitch()));
    let srv = Server::new(core);
    let addr = srv.listen_tcp("127.0.0.1:0").await.unwrap();
    let sock = dir.path().join("db.sock");
    srv.listen_unix(&sock).await.unwrap();
    let tcp = format!("--db=tcp:{addr}");
    let unix = format!("--db=unix:{}", sock.display());
    let tcp_remote = format!("tcp:{addr}");
    let srv2 = srv.clone();
    tokio::task::spawn_blocking(move || {
        let vsctl = |db: &str, args: &[&str]| {
            let mut a = vec![db, "--no-wait"];
            a.extend_from_slice(args);
            let (ok, out) = run("ovs-vsctl", &a);
            assert!(ok, "ovs-vsctl {args:?} failed");
            out
        };
        vsctl(&tcp, &["init"]);
        vsctl(&tcp, &["add-br", "br0"]);
        vsctl(&tcp, &["add-port", "br0", "veth0"]);
        vsctl(
            &unix,
            &[
                "add-port",
                "br0",
                "tap0",
                "--",
                "set",
                "Interface",
                "tap0",
                "type=tap",
            ],
        );
        vsctl(
            &tcp,
            &[
                "add-port",
                "br0",
                "vx0",
                "--",
                "set",
                "Interface",
                "vx0",
                "type=vxlan",
                "options:remote_ip=flow",
                "options:key=flow",
                "ofport_request=10",
            ],
        );
        vsctl(&tcp, &["set-controller", "br0", "tcp:127.0.0.1:6653"]);
        vsctl(&tcp, &["set-fail-mode", "br0", "secure"]);
        vsctl(&tcp, &["set", "Bridge", "br0", "external_ids:owner=plexus"]);
        let show = vsctl(&unix, &["show"]);
        for want in [
            "Bridge br0",
            "Controller \"tcp:127.0.0.1:6653\"",
            "fail_mode: secure",
            "Port vx0",
            "type: vxlan",
            "options: {key=flow, remote_ip=flow}",
            "type: tap",
            "Port veth0",
        ] {
            assert!(show.contains(want), "show lacks {want:?}:\n{show}");
        }
        assert_eq!(
            vsctl(&tcp, &["list-ports", "br0"])
                .lines()
                .collect::<Vec<_>>(),
            ["tap0", "veth0", "vx0"]
        );
        assert_eq!(
            vsctl(&tcp, &["get", "Interface", "vx0", "options:remote_ip"]).trim(),
            "flow"
        );
        assert_eq!(
            vsctl(&tcp, &["get", "Interface", "vx0", "ofport_request"]).trim(),
            "10"
        );
        assert_eq!(
            vsctl(&tcp, &["get", "Bridge", "br0", "external_ids:owner"]).trim(),
            "plexus"
        );
        let found = vsctl(&tcp, &["--columns=name", "find", "Interface", "type=vxlan"]);
        assert!(found.contains("vx0") && !found.contains("tap0"), "{found}");
        let list = vsctl(&tcp, &["list", "Bridge", "br0"]);
        assert!(list.contains("fail_mode           : secure"), "{list}");
        // A live monitor sees the next change.
        let mut mon = Command::new("ovsdb-client")
            .args([
                "monitor",
                &tcp_remote,
                "Open_vSwitch",
                "Interface",
                "name,type",
                "--format=csv",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(mon.stdout.take().unwrap()).lines();
        let mut initial = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while initial.len() < 5 && Instant::now() < deadline {
            initial.push(lines.next().unwrap().unwrap());
        }
        assert!(
            initial
                .iter()
                .any(|l| l.contains("initial") && l.contains("vx0")),
            "{initial:?}"
        );
        vsctl(&tcp, &["add-port", "br0", "late0"]);
        let mut seen = false;
        while !seen && Instant::now() < deadline {
            let l = lines.next().unwrap().unwrap();
            seen = l.contains("insert") && l.contains("late0");
        }
        let _ = mon.kill();
        let _ = mon.wait();
        assert!(seen, "monitor did not report the inserted interface");
        vsctl(&tcp, &["del-port", "br0", "vx0"]);
        assert_eq!(
            vsctl(&tcp, &["list-ports", "br0"])
                .lines()
                .collect::<Vec<_>>(),
            ["late0", "tap0", "veth0"]
        );
        // Garbage collection removed the Interface row with its Port.
        assert!(!vsctl(&tcp, &["--columns=name", "list", "Interface"]).contains("vx0"));
        let (ok, dump) = run("ovsdb-client", &["dump", &tcp_remote]);
        assert!(ok);
        for want in [
            "Bridge table",
            "Interface table",
            "Open_vSwitch table",
            "late0",
            "tcp:127.0.0.1:6653",
        ] {
            assert!(dump.contains(want), "dump lacks {want:?}");
        }
        let (ok, dbs) = run("ovsdb-client", &["list-dbs", &tcp_remote]);
        assert!(ok && dbs.contains("Open_vSwitch"));
        vsctl(&unix, &["del-br", "br0"]);
        assert_eq!(vsctl(&tcp, &["list-br"]).trim(), "");
    })
    .await
    .unwrap();
    assert_eq!(
        srv2.core()
            .database("Open_vSwitch")
            .unwrap()
            .rows("Interface")
            .unwrap()
            .len(),
        0
    );
}
