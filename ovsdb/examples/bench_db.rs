//! Sans-IO core cost: `Database::transact` alone (no sockets), the same workloads as `bench`.
//!
//! `cargo run --release -p plexus-ovsdb --example bench_db -- [N]`

use std::time::Instant;

use plexus_ovsdb::db::Database;
use plexus_ovsdb::schema::DatabaseSchema;
use serde_json::{Value, json};

fn port_ops(i: usize) -> Vec<Value> {
    vec![
        json!({"op":"insert","table":"Port","uuid-name":format!("p{i}"),"row":{"name":format!("p{i}"),"interfaces":["named-uuid",format!("i{i}")]}}),
        json!({"op":"insert","table":"Interface","uuid-name":format!("i{i}"),"row":{"name":format!("p{i}"),"type":"internal","external_ids":["map",[["iface-id",format!("vm{i}")]]]}}),
    ]
}

fn setup() -> Database {
    let mut db = Database::new(DatabaseSchema::vswitch());
    let o = db.transact(
        &[
            json!({"op":"insert","table":"Open_vSwitch","row":{"bridges":["named-uuid","b"]}}),
            json!({"op":"insert","table":"Bridge","uuid-name":"b","row":{"name":"br0"}}),
        ],
        &|_| false,
    );
    assert!(o.ok);
    db
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let mut db = setup();
    let mut ops = Vec::new();
    let mut names = Vec::new();
    for i in 0..n {
        ops.extend(port_ops(i));
        names.push(json!(["named-uuid", format!("p{i}")]));
    }
    ops.push(json!({"op":"mutate","table":"Bridge","where":[],"mutations":[["ports","insert",["set",names]]]}));
    let t = Instant::now();
    let o = db.transact(&ops, &|_| false);
    assert!(o.ok);
    println!(
        "core: {n} ports in one transaction: {:.3} s",
        t.elapsed().as_secs_f64()
    );

    if std::env::args().nth(2).as_deref() == Some("bulk") {
        return;
    }
    let mut db = setup();
    let t = Instant::now();
    let mut last = Instant::now();
    for i in 0..n {
        let mut ops = port_ops(i);
        ops.push(json!({"op":"mutate","table":"Bridge","where":[["name","==","br0"]],"mutations":[["ports","insert",["named-uuid",format!("p{i}")]]]}));
        assert!(db.transact(&ops, &|_| false).ok);
        if (i + 1) % (n / 5).max(1) == 0 {
            println!(
                "  txns {}..{}: {:.1} µs/txn",
                i + 1 - (n / 5).max(1),
                i + 1,
                last.elapsed().as_secs_f64() * 1e6 / (n / 5).max(1) as f64
            );
            last = Instant::now();
        }
    }
    println!(
        "core: {n} ports one per transaction: {:.3} s",
        t.elapsed().as_secs_f64()
    );
}
