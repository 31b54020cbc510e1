//! Differential test: the same transactions against our `Database` and a real `ovsdb-server`
//! give the same results (UUIDs normalized, errors compared by their RFC `error` string).

mod common;

use std::collections::HashMap;

use common::{RealServer, SyncRpc, normalize};
use plexus_ovsdb::db::Database;
use plexus_ovsdb::schema::DatabaseSchema;
use serde_json::{Value, json};

/// Transactions (ops arrays). `$name` strings are replaced by the UUID returned by an earlier insert
/// with that uuid-name in the same script (tracked per implementation).
fn script() -> Vec<Value> {
    vec![
        json!([{"op":"insert","table":"Open_vSwitch","row":{},"uuid-name":"ovs"}]),
        // Forward named-uuid reference (Port before its Interface), as ovs-vsctl emits.
        json!([
            {"op":"insert","table":"Bridge","uuid-name":"br","row":{"name":"br0","ports":["named-uuid","p1"]}},
            {"op":"insert","table":"Port","uuid-name":"p1","row":{"name":"p1","interfaces":["named-uuid","i1"]}},
            {"op":"insert","table":"Interface","uuid-name":"i1","row":{"name":"p1","type":"vxlan","options":["map",[["remote_ip","flow"],["key","flow"]]]}},
            {"op":"mutate","table":"Open_vSwitch","where":[],"mutations":[["bridges","insert",["set",[["named-uuid","br"]]]]]},
            {"op":"comment","comment":"add-br"}
        ]),
        json!([{"op":"select","table":"Interface","where":[["name","==","p1"]],"columns":["name","type","options","ofport_request"]}]),
        json!([{"op":"select","table":"Bridge","where":[],"columns":["name","ports"]}]),
        // Errors, each the RFC/ovsdb-server error string.
        json!([{"op":"insert","table":"Bridge","row":{"nosuch":1}}]),
        json!([{"op":"insert","table":"Nosuch","row":{}}]),
        json!([{"op":"insert","table":"Port","row":{"name":"x","tag":5000}}]),
        json!([{"op":"insert","table":"Port","row":{"name":"x","tag":["set",[1,2]]}}]),
        json!([{"op":"insert","table":"Port","row":{"name":"x","interfaces":["uuid","ffffffff-0000-0000-0000-000000000001"]}}]),
        json!([{"op":"insert","table":"Port","row":{"name":"x","interfaces":["named-uuid","nope"]}}]),
        json!([{"op":"insert","table":"Bridge","row":{"name":"x","fail_mode":"foo"}}]),
        json!([{"op":"insert","table":"Port","row":{"name":"x"}}]),
        json!([{"op":"insert","table":"Port","row":{"name":1}}]),
        json!([{"op":"wait","table":"Bridge","where":[],"until":"==","rows":[{"name":"zz"}],"columns":["name"],"timeout":0}]),
        json!([{"op":"wait","table":"Bridge","where":[],"until":"==","rows":[{"name":"br0"}],"columns":["name"],"timeout":0}]),
        json!([{"op":"wait","table":"Bridge","where":[],"until":"!=","rows":[{"name":"br0"}],"columns":["name"],"timeout":0}]),
        json!([{"op":"frob","table":"Bridge"}]),
        json!([{"op":"select","table":"Bridge","where":[["name","<","a"]]}]),
        json!([{"op":"select","table":"Bridge","where":[["name","~~","a"]]}]),
        json!([{"op":"select","table":"Bridge"}]),
        json!([{"op":"mutate","table":"Bridge","where":[],"mutations":[["name","+=",1]]}]),
        json!([{"op":"mutate","table":"Interface","where":[],"mutations":[["ofport_request","frob",1]]}]),
        json!([{"op":"mutate","table":"Interface","where":[],"mutations":[["external_ids","+=",1]]}]),
        json!([{"op":"mutate","table":"Interface","where":[],"mutations":[["ofport_request","insert",["set",[1,2]]]]}]),
        json!([{"op":"mutate","table":"Interface","where":[],"mutations":[["ofport_request","insert",70000]]}]),
        json!([{"op":"update","table":"Bridge","where":[],"row":{"_uuid":["uuid","ffffffff-0000-0000-0000-000000000001"]}}]),
        json!([{"op":"update","table":"Bridge","where":[],"row":{"name":"x"}}]),
        json!([{"op":"delete","table":"Interface","where":[]}]),
        json!([{"op":"abort"}]),
        json!([{"op":"assert","lock":"foo"}]),
        json!([{"op":"commit","durable":false}]),
        json!([{"op":"insert","table":"Open_vSwitch","row":{}}]),
        json!([{"op":"select","table":"Bridge","where":[],"columns":["nosuch"]}]),
        json!([{"op":"insert","table":"Bridge","row":{"name":"a"},"uuid-name":"a"},{"op":"insert","table":"Bridge","row":{"name":"b"},"uuid-name":"a"}]),
        // Arithmetic mutations.
        json!([{"op":"mutate","table":"Interface","where":[],"mutations":[["ofport_request","insert",10]]}]),
        json!([{"op":"mutate","table":"Interface","where":[],"mutations":[["ofport_request","+=",5],["ofport_request","*=",2]]},
               {"op":"select","table":"Interface","where":[],"columns":["ofport_request"]}]),
        json!([{"op":"mutate","table":"Interface","where":[],"mutations":[["ofport_request","/=",0]]}]),
        json!([{"op":"mutate","table":"Interface","where":[],"mutations":[["ofport_request","+=",70000]]}]),
        json!([{"op":"select","table":"Interface","where":[["ofport_request",">=",30]],"columns":["name"]},
               {"op":"select","table":"Interface","where":[["ofport_request","<",30]],"columns":["name"]},
               {"op":"select","table":"Interface","where":[["options","includes",["map",[["key","flow"]]]]],"columns":["name"]},
               {"op":"select","table":"Interface","where":[["options","excludes",["map",[["key","flow"]]]]],"columns":["name"]}]),
        // Map mutations: insert keeps existing keys; delete by key set and by pair.
        json!([{"op":"mutate","table":"Interface","where":[],"mutations":[["options","insert",["map",[["key","5"],["local_ip","1.2.3.4"]]]]]},
               {"op":"select","table":"Interface","where":[],"columns":["options"]}]),
        json!([{"op":"mutate","table":"Interface","where":[],"mutations":[["options","delete",["set",["key"]]],["options","delete",["map",[["local_ip","9.9.9.9"]]]]]},
               {"op":"select","table":"Interface","where":[],"columns":["options"]}]),
        // Unique index on Port.name: a second "p1" port.
        json!([{"op":"insert","table":"Port","uuid-name":"p2","row":{"name":"p1","interfaces":["named-uuid","i2"]}},
               {"op":"insert","table":"Interface","uuid-name":"i2","row":{"name":"p2"}},
               {"op":"mutate","table":"Bridge","where":[],"mutations":[["ports","insert",["named-uuid","p2"]]]}]),
        // A mirror with a weak reference to the port; deleting the port from the bridge garbage-collects
        // Port and Interface and clears the weak reference.
        json!([{"op":"insert","table":"Mirror","uuid-name":"m","row":{"name":"m0","select_src_port":["named-uuid","p3"]}},
               {"op":"insert","table":"Port","uuid-name":"p3","row":{"name":"p3","interfaces":["named-uuid","i3"]}},
               {"op":"insert","table":"Interface","uuid-name":"i3","row":{"name":"p3"}},
               {"op":"mutate","table":"Bridge","where":[],"mutations":[["ports","insert",["named-uuid","p3"]],["mirrors","insert",["named-uuid","m"]]]}]),
        json!([{"op":"select","table":"Mirror","where":[],"columns":["name","select_src_port"]},
               {"op":"select","table":"Port","where":[["name","==","p3"]],"columns":["name"]}]),
        json!([{"op":"mutate","table":"Bridge","where":[],"mutations":[["ports","delete",["set",[]]]]},
               {"op":"select","table":"Port","where":[],"columns":["name"]}]),
        json!([{"op":"select","table":"Port","where":[["name","==","p3"]],"columns":["name"]}]),
        // Remove p3 via its uuid found by name: delete op directly → referential integrity (still in bridge).
        json!([{"op":"delete","table":"Port","where":[["name","==","p3"]]}]),
        // Now remove all ports from the bridge except p1: p3 is collected, mirror weak ref cleared.
        json!([{"op":"update","table":"Bridge","where":[],"row":{"ports":["set",[]]}},
               {"op":"select","table":"Port","where":[],"columns":["name"]},
               {"op":"select","table":"Mirror","where":[],"columns":["name","select_src_port"]}]),
        json!([{"op":"select","table":"Port","where":[],"columns":["name"]},
               {"op":"select","table":"Interface","where":[],"columns":["name"]},
               {"op":"select","table":"Mirror","where":[],"columns":["name","select_src_port"]}]),
        // Delete a whole bridge: everything below it is collected.
        json!([{"op":"update","table":"Open_vSwitch","where":[],"row":{"bridges":["set",[]]}}]),
        json!([{"op":"select","table":"Bridge","where":[],"columns":["name"]},{"op":"select","table":"Mirror","where":[],"columns":["name"]}]),
        // Too many elements through mutation; delete from a min-1 set.
        json!([{"op":"insert","table":"Bridge","uuid-name":"b","row":{"name":"b9"}},
               {"op":"mutate","table":"Open_vSwitch","where":[],"mutations":[["bridges","insert",["named-uuid","b"]]]},
               {"op":"insert","table":"Port","uuid-name":"p","row":{"name":"p9","interfaces":["named-uuid","i"]}},
               {"op":"insert","table":"Interface","uuid-name":"i","row":{"name":"i9"}},
               {"op":"mutate","table":"Bridge","where":[["name","==","b9"]],"mutations":[["ports","insert",["named-uuid","p"]]]}]),
        json!([{"op":"mutate","table":"Port","where":[],"mutations":[["interfaces","delete",["set",[]]]]}]),
        json!([{"op":"mutate","table":"Port","where":[],"mutations":[["tag","insert",["set",[1]]],["tag","insert",["set",[2]]]]}]),
    ]
}

#[test]
fn same_results_as_ovsdb_server() {
    let Some(real) = RealServer::start() else {
        return;
    };
    let mut rpc = SyncRpc::unix(&real.sock);
    let mut ours = Database::new(DatabaseSchema::vswitch());
    let (mut m1, mut m2) = (HashMap::new(), HashMap::new());
    let mut mismatches = Vec::new();
    for (i, ops) in script().into_iter().enumerate() {
        let mut params = vec![json!("Open_vSwitch")];
        params.extend(ops.as_array().unwrap().iter().cloned());
        let theirs = rpc
            .call("transact", Value::Array(params))
            .expect("transact");
        let mine = Value::Array(ours.transact(ops.as_array().unwrap(), &|_| false).results);
        let (a, b) = (normalize(&theirs, &mut m1), normalize(&mine, &mut m2));
        if a != b {
            mismatches.push(format!(
                "#{i} {ops}\n  ovsdb-server: {theirs}\n  ours:         {mine}"
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
