//! OVSDB benchmark: the same workload against our server and a real `ovsdb-server`.
//!
//! ```text
//! cargo run --release -p plexus-ovsdb --example bench -- [ours|ours-durable|real] [N] [CLIENTS]
//! ```
//! Workloads: N ports (+interfaces) inserted in one transaction; N ports inserted one per
//! transaction (sequential request/response); monitor fan-out: time until CLIENTS monitoring
//! clients have all received one committed change (median of 20 changes).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use plexus_ovsdb::client::{Client, Op, cond};
use plexus_ovsdb::db::Database;
use plexus_ovsdb::schema::DatabaseSchema;
use plexus_ovsdb::server::{Server, ServerCore};
use serde_json::{Value, json};

struct Real(Child);
impl Drop for Real {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start(kind: &str, dir: &std::path::Path) -> (String, Option<Real>, Option<Server>) {
    match kind {
        "real" => {
            let db = dir.join("conf.db");
            let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/vswitch.ovsschema");
            assert!(
                Command::new("ovsdb-tool")
                    .arg("create")
                    .arg(&db)
                    .arg(schema)
                    .status()
                    .unwrap()
                    .success()
            );
            let sock = dir.join("db.sock");
            let child = Command::new("ovsdb-server")
                .arg(&db)
                .arg(format!("--remote=punix:{}", sock.display()))
                .arg(format!("--unixctl={}", dir.join("ctl").display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            while !sock.exists() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (format!("unix:{}", sock.display()), Some(Real(child)), None)
        }
        "ours-proc" | "ours-proc-durable" => {
            // Our server as a separate process (like ovsdb-server), built next to this example.
            let exe = std::env::current_exe().unwrap();
            let bin = exe
                .parent()
                .unwrap()
                .parent()
                .unwrap()
                .join("plexus-ovsdb-server");
            let sock = dir.join("db.sock");
            let mut cmd = Command::new(bin);
            cmd.arg("--remote").arg(format!("punix:{}", sock.display()));
            if kind.ends_with("durable") {
                cmd.arg("--db").arg(dir.join("conf.db"));
            }
            let child = cmd
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            while !sock.exists() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (format!("unix:{}", sock.display()), Some(Real(child)), None)
        }
        _ => {
            let mut core = ServerCore::new();
            if kind == "ours-durable" {
                core.add_durable_database(&dir.join("conf.db"), &DatabaseSchema::vswitch())
                    .unwrap();
            } else {
                core.add_database(Database::new(DatabaseSchema::vswitch()));
            }
            let srv = Server::new(core);
            let sock = dir.join("db.sock");
            srv.listen_unix(&sock).await.unwrap();
            (format!("unix:{}", sock.display()), None, Some(srv))
        }
    }
}

async fn setup_bridge(c: &Client) {
    c.transact(
        "Open_vSwitch",
        &[
            Op::insert(
                "Open_vSwitch",
                [("bridges", json!(["named-uuid", "b"]))],
                None,
            ),
            Op::insert("Bridge", [("name", json!("br0"))], Some("b")),
        ],
    )
    .await
    .unwrap();
}

fn port_ops(prefix: &str, i: usize) -> Vec<Op> {
    let (p, ifc) = (format!("p{i}"), format!("i{i}"));
    vec![
        Op::insert(
            "Port",
            [
                ("name", json!(format!("{prefix}{i}"))),
                ("interfaces", json!(["named-uuid", ifc])),
            ],
            Some(&p),
        ),
        Op::insert(
            "Interface",
            [
                ("name", json!(format!("{prefix}{i}"))),
                ("type", json!("internal")),
                (
                    "external_ids",
                    json!(["map", [["iface-id", format!("vm{i}")]]]),
                ),
            ],
            Some(&ifc),
        ),
    ]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let kind = args.get(1).map(String::as_str).unwrap_or("ours");
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let clients: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(100);
    let one_by_one: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(n);

    // 1. N ports in one transaction.
    let dir = tempfile::tempdir().unwrap();
    let (remote, _real, _srv) = start(kind, dir.path()).await;
    let c = Client::connect(&remote).await.unwrap();
    setup_bridge(&c).await;
    let mut ops = Vec::new();
    let mut names = Vec::new();
    for i in 0..n {
        ops.extend(port_ops("a", i));
        names.push(json!(["named-uuid", format!("p{i}")]));
    }
    ops.push(Op::Mutate {
        table: "Bridge".into(),
        conds: vec![],
        mutations: vec![json!(["ports", "insert", ["set", names]])],
    });
    let t = Instant::now();
    c.transact("Open_vSwitch", &ops).await.unwrap();
    let bulk = t.elapsed();
    println!(
        "{kind}: {n} ports in one transaction: {:.3} s",
        bulk.as_secs_f64()
    );
    drop(c);
    drop(_srv);
    drop(_real);

    // 2. One port per transaction (fresh database).
    let dir = tempfile::tempdir().unwrap();
    let (remote, _real, _srv) = start(kind, dir.path()).await;
    let c = Client::connect(&remote).await.unwrap();
    setup_bridge(&c).await;
    let t = Instant::now();
    for i in 0..one_by_one {
        let mut ops = port_ops("b", i);
        ops.push(Op::Mutate {
            table: "Bridge".into(),
            conds: vec![cond("name", "==", json!("br0"))],
            mutations: vec![json!(["ports", "insert", ["named-uuid", format!("p{i}")]])],
        });
        c.transact("Open_vSwitch", &ops).await.unwrap();
    }
    let seq = t.elapsed();
    println!(
        "{kind}: {one_by_one} ports one per transaction: {:.3} s ({:.0} txn/s, {:.3} ms/txn)",
        seq.as_secs_f64(),
        one_by_one as f64 / seq.as_secs_f64(),
        seq.as_secs_f64() * 1000.0 / one_by_one as f64
    );

    // 3. Monitor fan-out on the same database.
    let mut rxs = Vec::new();
    let mut keep = Vec::new();
    for k in 0..clients {
        let m = Client::connect(&remote).await.unwrap();
        let rx = m.notifications();
        m.call("monitor_cond", json!(["Open_vSwitch", format!("m{k}"), {"Interface": [{"columns": ["name", "external_ids"]}]}])).await.unwrap();
        rxs.push(rx);
        keep.push(m);
    }
    let mut samples = Vec::new();
    for r in 0..20 {
        let t = Instant::now();
        let mut ops = port_ops("c", r);
        ops.push(Op::Mutate {
            table: "Bridge".into(),
            conds: vec![cond("name", "==", json!("br0"))],
            mutations: vec![json!(["ports", "insert", ["named-uuid", format!("p{r}")]])],
        });
        c.transact("Open_vSwitch", &ops).await.unwrap();
        for rx in &mut rxs {
            loop {
                let (method, params): (String, Value) = rx.recv().await.unwrap();
                if method.starts_with("update") && params.to_string().contains(&format!("\"c{r}\""))
                {
                    break;
                }
            }
        }
        samples.push(t.elapsed());
    }
    samples.sort();
    println!(
        "{kind}: monitor fan-out to {clients} clients (commit → all notified): median {:.2} ms, max {:.2} ms",
        samples[samples.len() / 2].as_secs_f64() * 1000.0,
        samples[samples.len() - 1].as_secs_f64() * 1000.0
    );
}
