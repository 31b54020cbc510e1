//! The typed client and its replica: one suite, run against our server and a real ovsdb-server.

mod common;

use std::time::Duration;

use plexus_ovsdb::client::{Client, ClientError, Op, Replica, cond, uuid_is};
use plexus_ovsdb::datum::{Atom, Datum};
use plexus_ovsdb::db::Database;
use plexus_ovsdb::schema::DatabaseSchema;
use plexus_ovsdb::server::{Server, ServerCore};
use serde_json::json;

const T: Duration = Duration::from_secs(10);

async fn suite(remote: &str) {
    let a = Client::connect(remote).await.unwrap();
    let b = Client::connect(remote).await.unwrap();
    let dbs = a.list_dbs().await.unwrap();
    assert!(dbs.contains(&"Open_vSwitch".to_string()), "{dbs:?}");
    assert_eq!(a.echo(json!(["hi", 1])).await.unwrap(), json!(["hi", 1]));
    let ra = Replica::start(a.clone(), "Open_vSwitch").await.unwrap();
    let rb = Replica::start(b.clone(), "Open_vSwitch").await.unwrap();
    assert!(ra.schema().tables.contains_key("Interface"));
    assert!(ra.read(|d| d.values().all(|t| t.is_empty())));

    // Create root + bridge + vxlan port; both replicas converge.
    a.transact(
        "Open_vSwitch",
        &[
            Op::insert(
                "Open_vSwitch",
                [("bridges", json!(["named-uuid", "br"]))],
                None,
            ),
            Op::insert(
                "Bridge",
                [
                    ("name", json!("br-int")),
                    ("ports", json!(["named-uuid", "p"])),
                ],
                Some("br"),
            ),
            Op::insert(
                "Port",
                [
                    ("name", json!("vx0")),
                    ("interfaces", json!(["named-uuid", "i"])),
                ],
                Some("p"),
            ),
            Op::insert(
                "Interface",
                [
                    ("name", json!("vx0")),
                    ("type", json!("vxlan")),
                    (
                        "options",
                        json!(["map", [["remote_ip", "flow"], ["key", "flow"]]]),
                    ),
                ],
                Some("i"),
            ),
        ],
    )
    .await
    .unwrap();
    for r in [&ra, &rb] {
        assert!(
            r.wait_for(T, |d| d.get("Interface").is_some_and(|t| t.len() == 1))
                .await,
            "replica did not see the insert"
        );
    }
    let (iface, row) = rb.find("Interface", "name", "vx0").pop().unwrap();
    assert_eq!(
        row.cols["type"],
        Datum::scalar(Atom::String("vxlan".into()))
    );
    assert_eq!(
        row.cols["options"]
            .as_map()
            .unwrap()
            .get(&Atom::String("remote_ip".into())),
        Some(&Atom::String("flow".into()))
    );

    // The switch side reports ofport/link_state; the controller sees it through its replica.
    b.transact(
        "Open_vSwitch",
        &[Op::Update {
            table: "Interface".into(),
            conds: vec![uuid_is(iface)],
            row: [
                ("ofport".to_string(), json!(7)),
                ("link_state".to_string(), json!("up")),
            ]
            .into_iter()
            .collect(),
        }],
    )
    .await
    .unwrap();
    assert!(
        ra.wait_for(T, |d| d["Interface"][&iface].cols["ofport"]
            == Datum::scalar(Atom::Integer(7)))
            .await
    );

    // Optimistic concurrency: verify (wait until ==) on a stale row fails, then succeeds after the replica catches up.
    let (_, stale) = ra.find("Interface", "name", "vx0").pop().unwrap();
    b.transact(
        "Open_vSwitch",
        &[Op::Mutate {
            table: "Interface".into(),
            conds: vec![cond("name", "==", json!("vx0"))],
            mutations: vec![json!([
                "options",
                "insert",
                ["map", [["local_ip", "10.0.0.1"]]]
            ])],
        }],
    )
    .await
    .unwrap();
    let set_key = |row: &plexus_ovsdb::db::Row| {
        vec![
            Op::verify("Interface", iface, row, &["options"]),
            Op::Mutate {
                table: "Interface".into(),
                conds: vec![uuid_is(iface)],
                mutations: vec![json!(["options", "delete", ["set", ["key"]]])],
            },
        ]
    };
    match a.transact("Open_vSwitch", &set_key(&stale)).await {
        Err(ClientError::Txn { index: 0, error }) => assert_eq!(error.error, "timed out"),
        other => panic!("stale verify should fail: {other:?}"),
    }
    assert!(
        ra.wait_for(T, |d| d["Interface"][&iface].cols["options"].len() == 3)
            .await
    );
    let fresh = ra.read(|d| d["Interface"][&iface].clone());
    a.transact("Open_vSwitch", &set_key(&fresh)).await.unwrap();
    assert!(
        rb.wait_for(T, |d| d["Interface"][&iface].cols["options"].len() == 2)
            .await
    );

    // Locks and assert.
    assert!(a.lock("ctl").await.unwrap());
    assert!(!b.lock("ctl").await.unwrap());
    a.transact(
        "Open_vSwitch",
        &[Op::Assert("ctl".into()), Op::Comment("owner".into())],
    )
    .await
    .unwrap();
    match b
        .transact("Open_vSwitch", &[Op::Assert("ctl".into())])
        .await
    {
        Err(ClientError::Txn { error, .. }) => assert_eq!(error.error, "not owner"),
        other => panic!("{other:?}"),
    }
    a.unlock("ctl").await.unwrap();
    b.unlock("ctl").await.unwrap();

    // Errors come back typed.
    match a
        .transact(
            "Open_vSwitch",
            &[Op::insert(
                "Bridge",
                [("name", json!("x")), ("fail_mode", json!("bogus"))],
                None,
            )],
        )
        .await
    {
        Err(ClientError::Txn { index: 0, error }) => {
            assert_eq!(error.error, "constraint violation")
        }
        other => panic!("{other:?}"),
    }
    match a.transact("Open_vSwitch", &[Op::Abort]).await {
        Err(ClientError::Txn { error, .. }) => assert_eq!(error.error, "aborted"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        a.call("get_schema", json!(["nope"])).await,
        Err(ClientError::Rpc(_))
    ));

    // Removing the port from the bridge garbage-collects Port and Interface in both replicas.
    a.transact(
        "Open_vSwitch",
        &[Op::Update {
            table: "Bridge".into(),
            conds: vec![],
            row: [("ports".to_string(), json!(["set", []]))]
                .into_iter()
                .collect(),
        }],
    )
    .await
    .unwrap();
    for r in [&ra, &rb] {
        assert!(
            r.wait_for(T, |d| d["Interface"].is_empty()
                && d["Port"].is_empty()
                && d["Bridge"].len() == 1)
                .await
        );
    }
    let sel = a
        .transact(
            "Open_vSwitch",
            &[Op::Select {
                table: "Bridge".into(),
                conds: vec![],
                columns: Some(vec!["name".into()]),
            }],
        )
        .await
        .unwrap();
    assert_eq!(sel[0], json!({"rows": [{"name": "br-int"}]}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_suite_against_our_server() {
    let mut core = ServerCore::new();
    core.add_database(Database::new(DatabaseSchema::vswitch()));
    let srv = Server::new(core);
    let addr = srv.listen_tcp("127.0.0.1:0").await.unwrap();
    suite(&format!("tcp:{addr}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_suite_against_real_ovsdb_server() {
    let Some(real) = common::RealServer::start() else {
        return;
    };
    suite(&format!("unix:{}", real.sock.display())).await;
}
