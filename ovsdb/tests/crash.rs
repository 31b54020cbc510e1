//! Crash safety: kill -9 the server in a loop while clients transact; after every restart each
//! acknowledged transaction is present and the database is consistent.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::SyncRpc;
use serde_json::{Value, json};

fn start(db: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_plexus-ovsdb-server"))
        .arg("--db")
        .arg(db)
        .args(["--remote", "ptcp:0:127.0.0.1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on tcp:")
        .unwrap_or_else(|| panic!("unexpected output {line:?}"))
        .to_string();
    (child, addr)
}

fn tx(c: &mut SyncRpc, ops: Value) -> Option<Value> {
    let mut p = vec![json!("Open_vSwitch")];
    p.extend(ops.as_array().unwrap().iter().cloned());
    c.call("transact", Value::Array(p)).ok()
}

/// A transaction on a fresh connection; None if the server died.
fn try_tx(addr: &str, ops: Value) -> Option<Value> {
    let mut c = SyncRpc::try_tcp(addr)?;
    let mut p = vec![json!("Open_vSwitch")];
    p.extend(ops.as_array().unwrap().iter().cloned());
    c.try_call("transact", Value::Array(p))?.ok()
}

#[test]
fn kill_dash_nine_loop_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("conf.db");
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::new(Mutex::new(BTreeSet::new()));
    let mut seq = 0u64;
    for round in 0..8 {
        let (mut child, addr) = start(&db);
        // Verify everything acknowledged so far survived, and consistency.
        let mut c = SyncRpc::tcp(&addr);
        let r = tx(
            &mut c,
            json!([
            {"op":"select","table":"Open_vSwitch","where":[],"columns":["bridges"]},
            {"op":"select","table":"Bridge","where":[],"columns":["_uuid","name"]}]),
        )
        .unwrap();
        let ovs_rows = r[0]["rows"].as_array().unwrap();
        if round == 0 {
            assert!(ovs_rows.is_empty());
            tx(
                &mut c,
                json!([{"op":"insert","table":"Open_vSwitch","row":{}}]),
            )
            .unwrap();
            tx(&mut c, json!([{"op":"commit","durable":true}])).unwrap();
        } else {
            assert_eq!(ovs_rows.len(), 1, "root row lost");
            let refs: BTreeSet<String> = match &ovs_rows[0]["bridges"] {
                Value::Array(a) if a[0] == "set" => a[1]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|u| u[1].as_str().unwrap().to_string())
                    .collect(),
                Value::Array(a) => BTreeSet::from([a[1].as_str().unwrap().to_string()]),
                other => panic!("{other}"),
            };
            let rows = r[1]["rows"].as_array().unwrap();
            let uuids: BTreeSet<String> = rows
                .iter()
                .map(|r| r["_uuid"][1].as_str().unwrap().to_string())
                .collect();
            assert_eq!(
                refs, uuids,
                "Bridge rows and Open_vSwitch.bridges disagree (dangling ref or orphan)"
            );
            let names: BTreeSet<String> = rows
                .iter()
                .map(|r| r["name"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(names.len(), rows.len(), "duplicate names");
            let missing: Vec<String> = acked
                .lock()
                .unwrap()
                .iter()
                .filter(|n| !names.contains(*n))
                .cloned()
                .collect();
            assert!(
                missing.is_empty(),
                "round {round}: acknowledged transactions lost: {missing:?}"
            );
        }
        drop(c);
        // Two writers transact until the kill.
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..2 {
            let (addr, acked, stop) = (addr.clone(), acked.clone(), stop.clone());
            let base = seq + w * 1_000_000;
            writers.push(std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let name = format!("br-{base}-{i}");
                    i += 1;
                    let ops = json!([
                        {"op":"insert","table":"Bridge","uuid-name":"b","row":{"name":name,"external_ids":["map",[["round",round.to_string()]]]}},
                        {"op":"mutate","table":"Open_vSwitch","where":[],"mutations":[["bridges","insert",["named-uuid","b"]]]},
                        {"op":"commit","durable":true}]);
                    match try_tx(&addr, ops) {
                        Some(r) if r.as_array().is_some_and(|a| a.len() == 3 && a.iter().all(|x| x.get("error").is_none())) => {
                            acked.lock().unwrap().insert(name);
                        }
                        Some(r) => panic!("transaction failed: {r}"),
                        None => break,
                    }
                }
            }));
        }
        seq += 10_000_000;
        std::thread::sleep(Duration::from_millis(150 + 97 * (round % 4)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().unwrap();
        }
    }
    assert!(
        acked.lock().unwrap().len() > 20,
        "too few transactions to mean anything: {}",
        acked.lock().unwrap().len()
    );
    eprintln!("acknowledged transactions: {}", acked.lock().unwrap().len());
    // Final check with the storage layer directly.
    let (_, dbase) = plexus_ovsdb::storage::Storage::open(&db).unwrap();
    let names: BTreeSet<String> = dbase
        .rows("Bridge")
        .unwrap()
        .values()
        .map(|r| {
            r.cols["name"]
                .as_scalar()
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for n in acked.lock().unwrap().iter() {
        assert!(names.contains(n), "lost {n}");
    }
}
