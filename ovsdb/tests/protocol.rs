//! Protocol suite (monitors, update/update2/update3, locks, wait, echo) run against both our
//! server and a real ovsdb-server; plus bad-input robustness of our server.

mod common;

use std::collections::HashMap;

use common::{RealServer, SyncRpc, normalize};
use plexus_ovsdb::db::Database;
use plexus_ovsdb::rpc::Message;
use plexus_ovsdb::schema::DatabaseSchema;
use plexus_ovsdb::server::{Server, ServerCore};
use serde_json::{Value, json};

fn tx(c: &mut SyncRpc, ops: Value) -> Value {
    let mut p = vec![json!("Open_vSwitch")];
    p.extend(ops.as_array().unwrap().iter().cloned());
    c.call("transact", Value::Array(p)).expect("transact")
}

fn next_note(c: &mut SyncRpc) -> Message {
    if !c.notes.is_empty() {
        return c.notes.remove(0);
    }
    c.recv()
}

/// Runs the suite; returns the transcript (normalized) so two servers can be compared.
fn suite(connect: &dyn Fn() -> SyncRpc) -> Vec<Value> {
    let mut t = Vec::new();
    let mut map = HashMap::new();
    let mut a = connect();
    let mut b = connect();
    let mut rec = |v: Value| t.push(normalize(&v, &mut map));
    rec(tx(
        &mut a,
        json!([{"op":"insert","table":"Open_vSwitch","row":{}}]),
    ));
    // Three monitor flavours on session b.
    rec(b
        .call(
            "monitor",
            json!(["Open_vSwitch", "m1", {"Bridge": {"columns": ["name", "external_ids"]}}]),
        )
        .unwrap());
    rec(b.call("monitor_cond", json!(["Open_vSwitch", "m2", {"Bridge": [{"columns": ["name", "fail_mode", "external_ids"], "where": [["name", "==", "br1"]]}]}])).unwrap());
    rec(b.call("monitor_cond_since", json!(["Open_vSwitch", "m3", {"Bridge": [{"columns": ["name", "ports"]}]}, "00000000-0000-0000-0000-000000000000"])).unwrap()[2].clone());
    let r = tx(
        &mut a,
        json!([
        {"op":"insert","table":"Bridge","uuid-name":"b1","row":{"name":"br1","external_ids":["map",[["k","v"]]]}},
        {"op":"insert","table":"Bridge","uuid-name":"b2","row":{"name":"br2"}},
        {"op":"mutate","table":"Open_vSwitch","where":[],"mutations":[["bridges","insert",["set",[["named-uuid","b1"],["named-uuid","b2"]]]]]}]),
    );
    rec(r);
    let mut notes: Vec<Value> = (0..3).map(|_| next_note(&mut b).to_value()).collect();
    notes.sort_by_key(|n| n["method"].to_string());
    for n in notes {
        rec(n["params"].clone());
        rec(n["method"].clone());
    }
    tx(
        &mut a,
        json!([{"op":"update","table":"Bridge","where":[["name","==","br1"]],"row":{"fail_mode":"secure","external_ids":["map",[["k","w"],["x","y"]]]}}]),
    );
    let mut notes: Vec<Value> = (0..2).map(|_| next_note(&mut b).to_value()).collect();
    notes.sort_by_key(|n| n["method"].to_string());
    for n in notes {
        rec(n["params"][1].clone());
    }
    // Cancel m1 and m3: the next change only reaches m2 (br1 matches), deletion of br2 reaches nobody.
    rec(b.call("monitor_cancel", json!(["m1"])).unwrap());
    rec(b.call("monitor_cancel", json!(["m3"])).unwrap());
    rec(b.call("monitor_cancel", json!(["m3"])).unwrap_err());
    // Change m2's condition: br1 leaves (delete), br2 enters (insert).
    rec(b
        .call(
            "monitor_cond_change",
            json!(["m2", "m2b", {"Bridge": [{"where": [["name", "==", "br2"]]}]}]),
        )
        .unwrap());
    let n = next_note(&mut b).to_value();
    rec(n["method"].clone());
    rec(n["params"].clone());
    tx(
        &mut a,
        json!([{"op":"update","table":"Open_vSwitch","where":[],"row":{"bridges":["set",[]]}}]),
    );
    let n = next_note(&mut b).to_value();
    rec(n["method"].clone());
    rec(n["params"][1].clone());
    // Locks.
    rec(a.call("lock", json!(["L"])).unwrap());
    rec(b.call("lock", json!(["L"])).unwrap());
    rec(tx(&mut b, json!([{"op":"assert","lock":"L"}])));
    rec(tx(&mut a, json!([{"op":"assert","lock":"L"}])));
    rec(b.call("steal", json!(["L"])).unwrap_err()["error"].clone());
    rec(b.call("unlock", json!(["L"])).unwrap());
    rec(b.call("steal", json!(["L"])).unwrap());
    rec(next_note(&mut a).to_value());
    rec(tx(&mut b, json!([{"op":"assert","lock":"L"}])));
    rec(b.call("unlock", json!(["L"])).unwrap());
    rec(next_note(&mut a).to_value());
    rec(a.call("unlock", json!(["L"])).unwrap());
    // A blocking wait released by another session's commit.
    let id = json!(777);
    let m = Message::Request {
        id: id.clone(),
        method: "transact".into(),
        params: json!(["Open_vSwitch", {"op":"wait","table":"Open_vSwitch","where":[],"columns":["external_ids"],"until":"==","rows":[{"external_ids":["map",[["go","1"]]]}],"timeout":10000},
                        {"op":"select","table":"Open_vSwitch","where":[],"columns":["external_ids"]}]),
    };
    a.send_raw(&m.to_bytes());
    tx(
        &mut b,
        json!([{"op":"update","table":"Open_vSwitch","where":[],"row":{"external_ids":["map",[["go","1"]]]}}]),
    );
    match a.recv() {
        Message::Response { id: i, result } if i == id => rec(result),
        other => panic!("unexpected {other:?}"),
    }
    rec(a.call("echo", json!(["x", 1])).unwrap());
    rec(a.call("nosuch", json!([])).unwrap_err());
    rec(a.call("get_schema", json!(["nope"])).unwrap_err()["error"].clone());
    t
}

async fn our_server() -> (Server, std::net::SocketAddr) {
    let mut core = ServerCore::new();
    core.add_database(Database::new(DatabaseSchema::vswitch()));
    let srv = Server::new(core);
    let addr = srv.listen_tcp("127.0.0.1:0").await.unwrap();
    (srv, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_suite_matches_ovsdb_server() {
    let (_srv, addr) = our_server().await;
    let ours = tokio::task::spawn_blocking(move || suite(&|| SyncRpc::tcp(&addr.to_string())))
        .await
        .unwrap();
    // Spot checks on our own transcript (independent of the peer).
    let text = serde_json::to_string(&ours).unwrap();
    for want in [
        r#""update""#,
        r#""update2""#,
        r#""update3""#,
        r#"{"locked":true}"#,
        r#"{"locked":false}"#,
        r#""stolen""#,
        r#""unknown monitor""#,
        r#""not owner""#,
    ] {
        assert!(text.contains(want), "transcript lacks {want}: {text}");
    }
    let Some(real) = RealServer::start() else {
        return;
    };
    let sock = real.sock.clone();
    let theirs = tokio::task::spawn_blocking(move || suite(&|| SyncRpc::unix(&sock)))
        .await
        .unwrap();
    let diffs: Vec<String> = ours
        .iter()
        .zip(&theirs)
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, (a, b))| format!("#{i}\n  ours:   {a}\n  theirs: {b}"))
        .collect();
    assert_eq!(ours.len(), theirs.len());
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_error_objects_and_session_lives() {
    let (srv, addr) = our_server().await;
    tokio::task::spawn_blocking(move || {
        let mut c = SyncRpc::tcp(&addr.to_string());
        let expect_err = |c: &mut SyncRpc, raw: &[u8]| -> Value {
            c.send_raw(raw);
            match c.recv() {
                Message::Error { error, .. } => error,
                other => panic!("expected error for {}, got {other:?}", String::from_utf8_lossy(raw)),
            }
        };
        assert_eq!(expect_err(&mut c, br#"{"id":1,"method":}"#)["error"], "syntax error");
        assert_eq!(expect_err(&mut c, br#"{"id":2,"method":"transact","params":3}"#)["error"], "syntax error");
        assert_eq!(expect_err(&mut c, br#"{"id":3,"method":"transact","params":[]}"#)["error"], "syntax error");
        assert_eq!(expect_err(&mut c, br#"{"id":4,"method":"transact","params":["Nope"]}"#)["error"], "unknown database");
        assert_eq!(expect_err(&mut c, br#"{"id":5,"method":"monitor","params":["Open_vSwitch",1,{"Nope":{}}]}"#)["error"], "syntax error");
        assert_eq!(expect_err(&mut c, br#"garbage"#)["error"], "syntax error");
        // Schema violations and dangling references inside transactions.
        let r = tx(&mut c, json!([{"op":"insert","table":"Bridge","row":{"name":"x","fail_mode":"bogus"}}]));
        assert_eq!(r[0]["error"], "constraint violation");
        let r = tx(&mut c, json!([{"op":"insert","table":"Open_vSwitch","row":{"bridges":["uuid","01234567-0000-0000-0000-000000000000"]}}]));
        assert_eq!(r[1]["error"], "referential integrity violation");
        let r = tx(&mut c, json!([{"op":"insert","table":"Open_vSwitch","row":{"bridges":"notauuid"}}]));
        assert_eq!(r[0]["error"], "syntax error");
        // 10 MB of junk between messages (no JSON structure) is discarded; the session lives on.
        let mut x: u32 = 12345;
        let mut junk = Vec::with_capacity(10 << 20);
        while junk.len() < 10 << 20 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            junk.push(b"abcdefgh0123:,. \n\t"[(x % 18) as usize]);
        }
        c.send_raw(&junk);
        // The junk is reported as one "syntax error" (id null) per run; then the echo is answered.
        let mut errors = 0;
        c.send_raw(&Message::Request { id: json!("e"), method: "echo".into(), params: json!(["alive"]) }.to_bytes());
        loop {
            match c.recv() {
                Message::Error { id, error } if id.is_null() => {
                    assert_eq!(error["error"], "syntax error");
                    errors += 1;
                }
                Message::Response { id, result } if id == json!("e") => {
                    assert_eq!(result, json!(["alive"]));
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(errors >= 1);
        // A 10 MB never-terminated string: this session is stuck inside a value, the server and other sessions are fine.
        let mut c2 = SyncRpc::tcp(&addr.to_string());
        let mut big = br#"{"id":1,"method":"echo","params":[""#.to_vec();
        big.extend_from_slice(&junk);
        c2.send_raw(&big);
        let mut c3 = SyncRpc::tcp(&addr.to_string());
        assert_eq!(c3.call("list_dbs", json!([])).unwrap(), json!(["Open_vSwitch", "_Server"]));
        assert_eq!(c.call("echo", json!([1])).unwrap(), json!([1]));
    })
    .await
    .unwrap();
    drop(srv);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_never_reads_is_disconnected_not_buffered_forever() {
    let (srv, addr) = our_server().await;
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let big = "x".repeat(1 << 20);
        // ~100 MB of echo replies requested, none read: more than MAX_OUTGOING_BYTES plus socket buffers.
        let mut sent = 0;
        for i in 0..100 {
            let m = Message::Request {
                id: json!(i),
                method: "echo".into(),
                params: json!([big]),
            };
            if s.write_all(&m.to_bytes()).is_err() {
                break;
            }
            sent += 1;
        }
        assert!(sent > 64, "server stopped reading too early ({sent})");
        // Other sessions are unaffected.
        let mut c = SyncRpc::tcp(&addr.to_string());
        assert_eq!(c.call("echo", json!([1])).unwrap(), json!([1]));
        // The greedy session is closed: draining it reaches EOF well before 100 replies.
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let mut total = 0usize;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => total += n,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("expected EOF, got {e}"),
            }
        }
        assert!(
            total < 100 << 20,
            "all replies were buffered ({total} bytes)"
        );
    })
    .await
    .unwrap();
    drop(srv);
}
