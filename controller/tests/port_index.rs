//! The port indexes (MAC per VPC, interface per chassis; addresses per subnet are the IPAM
//! pools) stay consistent with the stored ports through REST creates, updates, deletes
//! and controller restarts, on redb and on etcd, and a store written before the indexes
//! existed gets them built by its first port write. A proptest drives random operations
//! and compares every answer (201/200/204 or 409 naming the field) and the index contents
//! with a reference model after each step.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use plexus_controller::api::{AppState, app, port_index};
use plexus_controller::store::{AnyStore, RedbStore, Store, StoreError};
use plexus_controller::store_etcd::EtcdStore;
use plexus_tests::etcd::EtcdCluster;
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tower::ServiceExt;

/// Opens (and reopens: a restarted controller) one store.
trait Backend {
    fn open(&mut self) -> AnyStore;
}

struct Redb(tempfile::TempDir);

impl Backend for Redb {
    fn open(&mut self) -> AnyStore {
        RedbStore::open(&self.0.path().join("db")).unwrap().into()
    }
}

struct Etcd {
    cluster: EtcdCluster,
    prefix: String,
}

impl Backend for Etcd {
    fn open(&mut self) -> AnyStore {
        EtcdStore::connect(&self.cluster.endpoints(), &self.prefix)
            .unwrap()
            .into()
    }
}

struct Api {
    app: axum::Router,
    store: AnyStore,
    rt: tokio::runtime::Runtime,
}

impl Api {
    fn new(store: AnyStore) -> Self {
        Api {
            app: app(AppState::new(store.clone(), None)),
            store,
            rt: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    fn req(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let b = Request::builder().method(method).uri(uri);
        let req = match body {
            Some(v) => b
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(v.to_string()))
                .unwrap(),
            None => b.body(Body::empty()).unwrap(),
        };
        self.rt.block_on(async {
            let r = self.app.clone().oneshot(req).await.unwrap();
            let status = r.status();
            let bytes = r.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            )
        })
    }

    fn create(&self, kind: &str, body: Value) -> String {
        let (s, v) = self.req("POST", &format!("/v1/{kind}"), Some(body));
        assert_eq!(s, StatusCode::CREATED, "{kind}: {v}");
        v["id"].as_str().unwrap().to_string()
    }
}

/// Ids of the fixed objects the ports refer to.
#[derive(Debug, Clone)]
struct Fixture {
    /// (vpc id, subnet id) of two VPCs with the same CIDRs.
    vpcs: [(String, String); 2],
    chassis: [String; 2],
}

fn fixture(api: &Api) -> Fixture {
    let t = api.create("tenants", json!({"name": "t"}));
    let mut vpcs = Vec::new();
    for n in ["a", "b"] {
        let v = api.create(
            "vpcs",
            json!({"tenant_id": t, "name": n, "cidrs": ["10.0.0.0/16"]}),
        );
        let s = api.create(
            "subnets",
            json!({"vpc_id": v, "name": n, "cidr": "10.0.1.0/24"}),
        );
        vpcs.push((v, s));
    }
    let c: Vec<String> = (1..=2)
        .map(|i| {
            api.create(
                "chassis",
                json!({"name": format!("c{i}"), "vtep_ip": format!("192.0.2.{i}")}),
            )
        })
        .collect();
    Fixture {
        vpcs: [vpcs[0].clone(), vpcs[1].clone()],
        chassis: [c[0].clone(), c[1].clone()],
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Want {
    vpc: usize,
    /// One of four fixed MACs, or generated.
    mac: Option<u8>,
    /// (chassis, interface) out of 2 × 3.
    bind: Option<(usize, u8)>,
}

#[derive(Debug, Clone)]
enum Step {
    Create(usize, Want),
    /// A PUT of slot's port with another MAC/binding (the VPC cannot change).
    Update(usize, Option<u8>, Option<(usize, u8)>),
    Delete(usize),
    Restart,
}

fn want() -> impl Strategy<Value = Want> {
    (
        0..2usize,
        prop::option::of(0..4u8),
        prop::option::of((0..2usize, 0..3u8)),
    )
        .prop_map(|(vpc, mac, bind)| Want { vpc, mac, bind })
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..6usize, want()).prop_map(|(s, w)| Step::Create(s, w)),
        3 => (0..6usize, prop::option::of(0..4u8), prop::option::of((0..2usize, 0..3u8)))
            .prop_map(|(s, m, b)| Step::Update(s, m, b)),
        2 => (0..6usize).prop_map(Step::Delete),
        1 => Just(Step::Restart),
    ]
}

fn mac(i: u8) -> String {
    format!("02:aa:00:00:00:{i:02x}")
}

fn iface(i: u8) -> String {
    format!("tap{i}")
}

/// A live port as the reference model has it.
#[derive(Debug, Clone)]
struct Live {
    id: String,
    vpc: usize,
    mac: String,
    bind: Option<(usize, u8)>,
}

fn port_body(f: &Fixture, vpc: usize, mac_: Option<String>, bind: Option<(usize, u8)>) -> Value {
    let mut b = json!({"subnet_id": f.vpcs[vpc].1});
    if let Some(m) = mac_ {
        b["mac"] = json!(m);
    }
    if let Some((c, i)) = bind {
        b["binding"] = json!({"chassis_id": f.chassis[c], "iface": iface(i)});
    }
    b
}

/// The index contents the live ports imply, and what the store holds.
fn check_index(store: &AnyStore, f: &Fixture, live: &BTreeMap<usize, Live>) {
    for (v, (vpc_id, _)) in f.vpcs.iter().enumerate() {
        let want: Vec<(String, String)> = {
            let mut w: Vec<_> = live
                .values()
                .filter(|l| l.vpc == v)
                .map(|l| (l.mac.clone(), l.id.clone()))
                .collect();
            w.sort();
            w
        };
        assert_eq!(
            store.ipam_list(&port_index::mac_pool(vpc_id)).unwrap(),
            want,
            "MAC index of vpc {v}"
        );
    }
    for (c, cid) in f.chassis.iter().enumerate() {
        let mut want: Vec<(String, String)> = live
            .values()
            .filter_map(|l| match l.bind {
                Some((lc, i)) if lc == c => Some((iface(i), l.id.clone())),
                _ => None,
            })
            .collect();
        want.sort();
        assert_eq!(
            store.ipam_list(&port_index::binding_pool(cid)).unwrap(),
            want,
            "binding index of chassis {c}"
        );
    }
}

fn run_steps(b: &mut dyn Backend, steps: &[Step]) {
    let mut api = Api::new(b.open());
    let f = fixture(&api);
    let mut live: BTreeMap<usize, Live> = BTreeMap::new();
    let taken = |live: &BTreeMap<usize, Live>, me: Option<usize>, vpc: usize, m: &str| {
        live.iter()
            .any(|(s, l)| Some(*s) != me && l.vpc == vpc && l.mac == m)
    };
    let bound = |live: &BTreeMap<usize, Live>, me: Option<usize>, bd: Option<(usize, u8)>| {
        bd.is_some() && live.iter().any(|(s, l)| Some(*s) != me && l.bind == bd)
    };
    for st in steps {
        match st {
            Step::Create(slot, w) => {
                if live.contains_key(slot) {
                    continue;
                }
                let m = w.mac.map(mac);
                let (s, v) = api.req(
                    "POST",
                    "/v1/ports",
                    Some(port_body(&f, w.vpc, m.clone(), w.bind)),
                );
                let dup_mac = m.as_deref().is_some_and(|m| taken(&live, None, w.vpc, m));
                let dup_bind = bound(&live, None, w.bind);
                if dup_mac || dup_bind {
                    assert_eq!(s, StatusCode::CONFLICT, "{st:?}: {v}");
                    let field = v["field"].as_str().unwrap_or_default();
                    let expect = if dup_mac { "mac" } else { "binding.iface" };
                    assert_eq!(field, expect, "{st:?}: {v}");
                } else {
                    assert_eq!(s, StatusCode::CREATED, "{st:?}: {v}");
                    live.insert(
                        *slot,
                        Live {
                            id: v["id"].as_str().unwrap().into(),
                            vpc: w.vpc,
                            mac: v["mac"].as_str().unwrap().into(),
                            bind: w.bind,
                        },
                    );
                }
            }
            Step::Update(slot, m, bd) => {
                let Some(l) = live.get(slot).cloned() else {
                    continue;
                };
                let m = m.map(mac);
                let (s, v) = api.req(
                    "PUT",
                    &format!("/v1/ports/{}", l.id),
                    Some(port_body(&f, l.vpc, m.clone(), *bd)),
                );
                let new_mac = m.clone().unwrap_or(l.mac.clone());
                let dup_mac = taken(&live, Some(*slot), l.vpc, &new_mac);
                let dup_bind = bound(&live, Some(*slot), *bd);
                if dup_mac || dup_bind {
                    assert_eq!(s, StatusCode::CONFLICT, "{st:?}: {v}");
                } else {
                    assert_eq!(s, StatusCode::OK, "{st:?}: {v}");
                    assert_eq!(v["mac"].as_str(), Some(new_mac.as_str()));
                    live.insert(
                        *slot,
                        Live {
                            mac: new_mac,
                            bind: *bd,
                            ..l
                        },
                    );
                }
            }
            Step::Delete(slot) => {
                let Some(l) = live.remove(slot) else {
                    continue;
                };
                let (s, v) = api.req("DELETE", &format!("/v1/ports/{}", l.id), None);
                assert_eq!(s, StatusCode::NO_CONTENT, "{st:?}: {v}");
            }
            Step::Restart => {
                drop(api);
                api = Api::new(b.open());
            }
        }
        check_index(&api.store, &f, &live);
    }
    // Every address in a subnet pool belongs to a live port of that subnet (the IP index).
    for (v, (_, sid)) in f.vpcs.iter().enumerate() {
        let owners: Vec<String> = api
            .store
            .ipam_list(sid)
            .unwrap()
            .into_iter()
            .map(|(_, o)| o)
            .collect();
        let mut want: Vec<String> = live
            .values()
            .filter(|l| l.vpc == v)
            .map(|l| l.id.clone())
            .collect();
        let mut got = owners;
        got.sort();
        want.sort();
        assert_eq!(got, want, "address pool of vpc {v}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn redb_index_follows_ports(steps in prop::collection::vec(step(), 1..30)) {
        run_steps(&mut Redb(tempfile::tempdir().unwrap()), &steps);
    }
}

/// The same on etcd (one cluster, a fresh key prefix per case).
#[test]
fn etcd_index_follows_ports() {
    if !plexus_tests::require_tool("etcd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cluster = EtcdCluster::start("plxidx", 1, &dir.path().join("etcd")).unwrap();
    let b = std::cell::RefCell::new(Etcd {
        cluster,
        prefix: String::new(),
    });
    let case = std::cell::Cell::new(0);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(8));
    runner
        .run(&prop::collection::vec(step(), 1..25), |steps| {
            case.set(case.get() + 1);
            let mut b = b.borrow_mut();
            b.prefix = format!("/plexus-idx-{}", case.get());
            run_steps(&mut *b, &steps);
            Ok(())
        })
        .unwrap();
}

/// A store written before the indexes existed: the first port write builds them, so a
/// duplicate MAC or interface among the old ports is found.
#[test]
fn legacy_store_gets_its_index_on_the_first_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = Redb(dir);
    let api = Api::new(b.open());
    let f = fixture(&api);
    // Ports written straight into the store, as a controller without indexes left them.
    let raw = |id: &str, m: &str, i: u8, ip: &str| {
        json!({"subnet_id": f.vpcs[0].1, "mac": m, "ips": [ip], "port_security": true,
               "binding": {"chassis_id": f.chassis[0], "iface": iface(i)}, "_id": id})
    };
    api.store
        .write::<_, StoreError>(&mut |t| {
            for (n, ip) in [(1u8, "10.0.1.10"), (2, "10.0.1.11")] {
                let mut v = raw(&format!("old{n}"), &mac(n), n, ip);
                v.as_object_mut().unwrap().remove("_id");
                t.put("ports", &format!("old{n}"), &v)?;
                t.ipam_put(&f.vpcs[0].1, ip, &format!("old{n}"))?;
            }
            Ok(())
        })
        .unwrap();
    assert!(
        api.store
            .ipam_list(&port_index::mac_pool(&f.vpcs[0].0))
            .unwrap()
            .is_empty()
    );
    let (s, v) = api.req(
        "POST",
        "/v1/ports",
        Some(port_body(&f, 0, Some(mac(1)), None)),
    );
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["field"], "mac", "{v}");
    assert!(v.to_string().contains("old1"), "{v}");
    let (s, v) = api.req(
        "POST",
        "/v1/ports",
        Some(port_body(&f, 0, None, Some((0, 2)))),
    );
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["field"], "binding.iface", "{v}");
    // A refused write rolls its index build back; the next successful one keeps it.
    let (s, v) = api.req(
        "POST",
        "/v1/ports",
        Some(port_body(&f, 0, Some(mac(3)), Some((1, 0)))),
    );
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let mut want = vec![
        (mac(1), "old1".to_string()),
        (mac(2), "old2".to_string()),
        (mac(3), id.clone()),
    ];
    want.sort();
    assert_eq!(
        api.store
            .ipam_list(&port_index::mac_pool(&f.vpcs[0].0))
            .unwrap(),
        want
    );
    assert_eq!(
        api.store
            .ipam_list(&port_index::binding_pool(&f.chassis[0]))
            .unwrap(),
        vec![
            (iface(1), "old1".to_string()),
            (iface(2), "old2".to_string())
        ]
    );
}
