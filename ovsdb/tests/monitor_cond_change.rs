//! `monitor_cond_change` with a bad condition is answered with the RFC error object and the
//! monitor keeps working with its old condition (it used to be dropped).

use plexus_ovsdb::db::Database;
use plexus_ovsdb::rpc::Message;
use plexus_ovsdb::schema::DatabaseSchema;
use plexus_ovsdb::server::{Outgoing, ServerCore};
use serde_json::{Value, json};

const S: u64 = 1;

fn req(core: &mut ServerCore, id: u64, method: &str, params: Value) -> Vec<Outgoing> {
    core.handle(
        S,
        Message::Request {
            id: json!(id),
            method: method.into(),
            params,
        },
    )
}

fn add_bridge(core: &mut ServerCore, name: &str) -> Vec<Outgoing> {
    let (o, out) = core.transact_local(
        "Open_vSwitch",
        &[
            // Bridge is not a root table: keep it referenced from a root row.
            json!({"op": "insert", "table": "Bridge", "row": {"name": name}, "uuid-name": "b"}),
            json!({"op": "mutate", "table": "Open_vSwitch", "where": [],
                   "mutations": [["bridges", "insert", ["named-uuid", "b"]]]}),
        ],
    );
    assert!(o.ok, "{:?}", o.results);
    out
}

/// Names of the bridges inserted by `update2` notifications for monitor `mon` in `out`.
fn inserted(out: &[Outgoing], mon: &str) -> Vec<String> {
    let mut names = Vec::new();
    for o in out {
        if let Message::Notification { method, params } = &o.msg {
            assert_eq!(method, "update2");
            if params[0] != json!(mon) {
                continue;
            }
            for row in params[1]["Bridge"].as_object().into_iter().flatten() {
                if let Some(n) = row.1["insert"]["name"].as_str() {
                    names.push(n.to_string());
                }
            }
        }
    }
    names
}

#[test]
fn bad_condition_gets_error_and_monitor_survives() {
    let mut core = ServerCore::new();
    core.add_database(Database::new(DatabaseSchema::vswitch()));
    let (o, _) = core.transact_local(
        "Open_vSwitch",
        &[json!({"op": "insert", "table": "Open_vSwitch", "row": {}})],
    );
    assert!(o.ok);
    core.connect(S);
    let out = req(
        &mut core,
        1,
        "monitor_cond",
        json!(["Open_vSwitch", "m", {"Bridge": [{"columns": ["name"], "where": [["name", "!=", "skip"]]}]}]),
    );
    assert!(
        matches!(
            &out[..],
            [Outgoing {
                msg: Message::Response { .. },
                ..
            }]
        ),
        "{out:?}"
    );
    assert_eq!(inserted(&add_bridge(&mut core, "br0"), "m"), ["br0"]);

    // Unknown column, then a type mismatch, then a non-array condition: each an error object.
    for (i, bad) in [
        json!([["nosuchcolumn", "==", "x"]]),
        json!([["name", "==", 5]]),
        json!("garbage"),
    ]
    .into_iter()
    .enumerate()
    {
        let out = req(
            &mut core,
            10 + i as u64,
            "monitor_cond_change",
            json!(["m", "m", {"Bridge": [{"where": bad}]}]),
        );
        let [
            Outgoing {
                msg: Message::Error { id, error },
                ..
            },
        ] = &out[..]
        else {
            panic!("expected one error reply, got {out:?}");
        };
        assert_eq!(*id, json!(10 + i as u64));
        assert!(
            error.get("error").and_then(Value::as_str).is_some(),
            "RFC error object: {error}"
        );
    }

    // Still monitored, under the old condition.
    assert_eq!(inserted(&add_bridge(&mut core, "br1"), "m"), ["br1"]);
    assert!(inserted(&add_bridge(&mut core, "skip"), "m").is_empty());

    // A good change still works afterwards (and renames the monitor).
    let out = req(
        &mut core,
        20,
        "monitor_cond_change",
        json!(["m", "m2", {"Bridge": [{"where": [["name", "==", "br9"]]}]}]),
    );
    assert!(
        out.iter()
            .any(|o| matches!(&o.msg, Message::Response { id, .. } if *id == json!(20))),
        "{out:?}"
    );
    assert_eq!(inserted(&add_bridge(&mut core, "br9"), "m2"), ["br9"]);
    assert!(inserted(&add_bridge(&mut core, "br8"), "m2").is_empty());

    // Cancelling the old id fails; the new one succeeds.
    let out = req(&mut core, 30, "monitor_cancel", json!(["m"]));
    assert!(matches!(
        &out[..],
        [Outgoing {
            msg: Message::Error { .. },
            ..
        }]
    ));
    let out = req(&mut core, 31, "monitor_cancel", json!(["m2"]));
    assert!(matches!(
        &out[..],
        [Outgoing {
            msg: Message::Response { .. },
            ..
        }]
    ));
}
