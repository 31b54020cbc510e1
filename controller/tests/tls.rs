//! TLS end to end. `plexus certs` makes a CA and certificates; the controller serves the
//! REST API over HTTPS, OpenFlow on `pssl:` (mutual TLS) and xDS over mutual TLS.
//!
//! - A real Open vSwitch (`ovs-vsctl set-ssl KEY CERT CA`, `set-controller ssl:…`)
//!   connects and is synced; switched to cleartext `tcp:` against the same port, it is
//!   not (needs root and Open vSwitch: skips otherwise, fails under `CI=true`).
//! - The `plexus` CLI talks HTTPS with `--cacert`; without it, or over plain HTTP, it
//!   fails; every change lands in the audit log.
//! - An ADS client with a certificate of the CA gets xDS responses; one without a
//!   certificate, or with another CA's, gets none.

use plexus_controller::store::RedbStore;
use plexus_controller::xds::XdsFeed;
use plexus_pki::{TlsFiles, ca, client_config, client_config_no_auth};
use plexus_tests::ovs::Ovs;
use plexus_tests::prereq;
use plexus_xds::envoy_types::pb::envoy::config::core::v3::Node;
use plexus_xds::envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use plexus_xds::envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use plexus_xds::resource::CLUSTER_TYPE;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_stream::wrappers::ReceiverStream;

mod common;
use common::free_port;

const TOKEN: &str = "tls-admin-token-0123456789";

/// `plexus certs ca DIR` and `plexus certs issue DIR NAME` for each name.
fn make_certs(dir: &Path, names: &[&str]) {
    let plexus = env!("CARGO_BIN_EXE_plexus");
    let out = Command::new(plexus)
        .args(["certs", "ca"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    for n in names {
        let out = Command::new(plexus)
            .args(["certs", "issue"])
            .arg(dir)
            .arg(n)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(printed.contains(&format!("{n}-cert.pem")), "{printed}");
    }
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn real_ovs_over_ssl_and_https_rest() {
    if !prereq::require_root()
        || !prereq::require_tools(&["ovs-vswitchd", "ovsdb-server", "ovs-vsctl", "ip"])
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    make_certs(&pki, &["controller", "ovs"]);
    let (api, of) = (18480, 16653);
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        format!(
            "{} admin tls-test\n",
            plexus_controller::api::hash_token(TOKEN)
        ),
    )
    .unwrap();
    let audit = dir.path().join("audit.jsonl");
    let dpid = 0x504c_0000_7151u64;
    let ovs = Ovs::builder()
        .dpid(dpid)
        .ssl_from_db()
        .start()
        .expect("ovs");
    let ns = ovs.netns().expect("private netns");
    let c = TlsFiles::in_dir(&pki, "controller");
    let log = std::fs::File::create(dir.path().join("controller.log")).unwrap();
    let _ctl = Kill(
        ns.command(env!("CARGO_BIN_EXE_plexus-controller"))
            .args(["--listen", &format!("127.0.0.1:{api}")])
            .arg("--db")
            .arg(dir.path().join("db.redb"))
            .arg("--token-file")
            .arg(&tokens)
            .arg("--audit-log")
            .arg(&audit)
            .args(["--openflow-listen", &format!("pssl:{of}:127.0.0.1")])
            .arg("--private-key")
            .arg(&c.private_key)
            .arg("--certificate")
            .arg(&c.certificate)
            .arg("--ca-cert")
            .arg(&c.ca_cert)
            .arg("--https")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let cli = |url: &str, cacert: bool, args: &[&str]| -> Output {
        let mut cmd = ns.command(env!("CARGO_BIN_EXE_plexus"));
        cmd.args(["--url", url, "--token", TOKEN, "-o", "json"]);
        if cacert {
            cmd.arg("--cacert").arg(&c.ca_cert);
        }
        cmd.args(args).output().unwrap()
    };
    let https = format!("https://127.0.0.1:{api}");
    let json_of = |o: &Output| -> Value {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let t0 = Instant::now();
    while !cli(&https, true, &["status"]).status.success() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "controller did not come up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Without the CA, or in cleartext, the CLI gets nowhere.
    let o = cli(&https, false, &["status"]);
    assert!(!o.status.success());
    let o = cli(&format!("http://127.0.0.1:{api}"), false, &["status"]);
    assert!(!o.status.success());

    let ch = json_of(&cli(
        &https,
        true,
        &[
            "chassis",
            "create",
            "--data",
            &json!({"name": "ovs-tls", "vtep_ip": "192.0.2.1",
                    "endpoint": {"datapath_id": format!("{dpid:#x}")}})
            .to_string(),
        ],
    ));
    let cid = ch["id"].as_str().unwrap().to_string();
    let connected = || -> bool {
        let s = json_of(&cli(&https, true, &["status"]));
        s["chassis"][&cid]["connected"] == true
    };

    // OVS over ssl: with its own certificate of the CA.
    let o = TlsFiles::in_dir(&pki, "ovs");
    let s = |p: &Path| p.to_string_lossy().into_owned();
    ovs.vsctl(&[
        "set-ssl",
        &s(&o.private_key),
        &s(&o.certificate),
        &s(&o.ca_cert),
    ])
    .unwrap();
    ovs.vsctl(&["set-controller", "br0", &format!("ssl:127.0.0.1:{of}")])
        .unwrap();
    let t0 = Instant::now();
    while !connected() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "OVS did not connect over ssl: {}",
            std::fs::read_to_string(dir.path().join("controller.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // OVS's own view (it updates the Controller row lazily).
    let t0 = Instant::now();
    loop {
        let v = ovs
            .vsctl(&["--columns=is_connected", "list", "controller"])
            .unwrap();
        if v.contains("true") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(15), "{v}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Cleartext against the pssl: port: never a session.
    ovs.vsctl(&["set-controller", "br0", &format!("tcp:127.0.0.1:{of}")])
        .unwrap();
    let t0 = Instant::now();
    while connected() {
        assert!(t0.elapsed() < Duration::from_secs(30), "still connected");
        std::thread::sleep(Duration::from_millis(200));
    }
    let held = Instant::now();
    while held.elapsed() < Duration::from_secs(4) {
        assert!(!connected(), "a cleartext switch got a session");
        std::thread::sleep(Duration::from_millis(250));
    }

    // The chassis create is in the audit log, under the token's name.
    let text = std::fs::read_to_string(&audit).unwrap();
    let e: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        e.iter().any(|e| e["token"] == "tls-test"
            && e["method"] == "POST"
            && e["object"] == cid.as_str()
            && e["status"] == 201),
        "{text}"
    );
}

/// An ADS stream over TLS with `files` (or no client certificate).
async fn ads_response(
    addr: std::net::SocketAddr,
    cfg: Arc<plexus_pki::rustls::ClientConfig>,
) -> Result<usize, String> {
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        let cfg = cfg.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            let name = plexus_pki::rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let s = tokio_rustls::TlsConnector::from(cfg)
                .connect(name, tcp)
                .await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
        }
    });
    let ch = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(connector)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut c = AggregatedDiscoveryServiceClient::new(ch);
    let (tx, rx) = tokio::sync::mpsc::channel::<DiscoveryRequest>(4);
    tx.send(DiscoveryRequest {
        node: Some(Node {
            id: "proxy-tls".into(),
            cluster: "plexus".into(),
            ..Default::default()
        }),
        type_url: CLUSTER_TYPE.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut s = c
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .map_err(|e| format!("rpc: {e}"))?
        .into_inner();
    let r = s
        .message()
        .await
        .map_err(|e| format!("stream: {e}"))?
        .ok_or("stream ended")?;
    Ok(r.resources.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xds_over_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    ca::init(&pki, false).unwrap();
    let srv = ca::issue(&pki, "xds", &[]).unwrap();
    let proxy = ca::issue(&pki, "proxy", &[]).unwrap();
    let other = dir.path().join("other");
    ca::init(&other, false).unwrap();
    let foreign = ca::issue(&other, "proxy", &[]).unwrap();
    let store = RedbStore::open(&dir.path().join("db.redb")).unwrap();
    let feed = XdsFeed::start_with_tls(store, "127.0.0.1:0".parse().unwrap(), Some(&srv))
        .await
        .unwrap();
    let within = |f| tokio::time::timeout(Duration::from_secs(10), f);

    let n = within(ads_response(
        feed.addr,
        client_config(&proxy, &[b"h2"]).unwrap(),
    ))
    .await
    .expect("no xDS response over mTLS");
    assert_eq!(n, Ok(0), "an empty store has no clusters");

    let r = within(ads_response(
        feed.addr,
        client_config_no_auth(&proxy.ca_cert, &[b"h2"]).unwrap(),
    ))
    .await;
    assert!(
        !matches!(r, Ok(Ok(_))),
        "served without a client certificate: {r:?}"
    );
    let mixed = TlsFiles {
        ca_cert: proxy.ca_cert.clone(),
        ..foreign
    };
    let r = within(ads_response(
        feed.addr,
        client_config(&mixed, &[b"h2"]).unwrap(),
    ))
    .await;
    assert!(!matches!(r, Ok(Ok(_))), "served another CA's client: {r:?}");
}

/// Real Envoy as an xDS client over mutual TLS: `plexus --cert/--key/--cacert xds
/// bootstrap` adds the TLS transport socket; Envoy ACKs CDS and LDS over it. An Envoy
/// with a cleartext bootstrap never shows up. Skips without Envoy
/// (scripts/install-peers.sh).
#[test]
fn envoy_over_mutual_tls() {
    let envoy = std::env::var_os("PEERS_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/var/tmp/plexus-peers-venv".into())
        .join("bin/envoy");
    if !envoy.exists() {
        prereq::unmet(&format!("envoy not found at {}", envoy.display()));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    make_certs(&pki, &["xds", "envoy"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = RedbStore::open(&dir.path().join("db.redb")).unwrap();
    let srv = TlsFiles::in_dir(&pki, "xds");
    let feed = rt
        .block_on(XdsFeed::start_with_tls(
            store,
            "127.0.0.1:0".parse().unwrap(),
            Some(&srv),
        ))
        .unwrap();
    let cli = TlsFiles::in_dir(&pki, "envoy");
    let bootstrap = |node: &str, tls: bool| -> std::path::PathBuf {
        let mut c = Command::new(env!("CARGO_BIN_EXE_plexus"));
        if tls {
            c.arg("--cert")
                .arg(&cli.certificate)
                .arg("--key")
                .arg(&cli.private_key)
                .arg("--cacert")
                .arg(&cli.ca_cert);
        }
        let o = c
            .args(["xds", "bootstrap", "--node", node, "--admin-port", "0"])
            .args(["--xds", &feed.addr.to_string()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        let text = String::from_utf8(o.stdout).unwrap();
        assert_eq!(text.contains("UpstreamTlsContext"), tls, "{text}");
        let p = dir.path().join(format!("{node}.json"));
        std::fs::write(&p, text).unwrap();
        p
    };
    let spawn = |node: &str, boot: &Path, id: u32| {
        let log = std::fs::File::create(dir.path().join(format!("{node}.log"))).unwrap();
        Kill(
            Command::new(&envoy)
                .arg("-c")
                .arg(boot)
                .args(["--base-id", &(std::process::id() % 50000 + id).to_string()])
                .args(["--log-level", "warn"])
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    };
    let acked = |node: &str| {
        let st = feed.state.status_json();
        ["CDS", "LDS"]
            .iter()
            .all(|t| st["nodes"][node]["types"][t]["last_acked_version"].is_string())
    };
    let mut plain = spawn("envoy-plain", &bootstrap("envoy-plain", false), 11);
    let mut tls = spawn("envoy-mtls", &bootstrap("envoy-mtls", true), 12);
    let t0 = Instant::now();
    while !acked("envoy-mtls") {
        assert!(
            matches!(tls.0.try_wait(), Ok(None)),
            "envoy exited: {}",
            std::fs::read_to_string(dir.path().join("envoy-mtls.log")).unwrap_or_default()
        );
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no ACKs over mTLS: {}\n{}",
            feed.state.status_json(),
            std::fs::read_to_string(dir.path().join("envoy-mtls.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The cleartext Envoy started first and has had longer: it never got a stream.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        matches!(plain.0.try_wait(), Ok(None)),
        "the cleartext envoy exited"
    );
    let st = feed.state.status_json();
    assert!(st["nodes"]["envoy-plain"].is_null(), "{st}");
    drop(plain);
    drop(tls);
}

/// plexus-vswitchd ↔ plexus-controller over `ssl:`/`pssl:` with certificates of the same
/// CA: the chassis connects and realizes the store revision. A client that opens a TCP
/// connection to the `pssl:` port and never speaks TLS does not hold the switch up (the
/// handshakes run in the background; the bound is 10 s per handshake: five silent clients
/// would cost 50 s if they were handshaked one after another). A plexus-vswitchd
/// with another CA's certificate never gets a session. Needs the plexus-vswitchd binary
/// (built by `cargo test --workspace`).
#[test]
fn plexus_vswitchd_to_controller_over_ssl() {
    let Ok(vswitchd) = plexus_tests::cloud::find_bin("plexus-vswitchd") else {
        prereq::unmet("plexus-vswitchd is not built (cargo build -p plexus-vswitch)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    make_certs(&pki, &["controller", "switch"]);
    let other = dir.path().join("other");
    ca::init(&other, false).unwrap();
    let foreign = ca::issue(&other, "switch", &[]).unwrap();
    let (api, of) = (free_port(), free_port());
    let c = TlsFiles::in_dir(&pki, "controller");
    let log = std::fs::File::create(dir.path().join("controller.log")).unwrap();
    let _ctl = Kill(
        Command::new(env!("CARGO_BIN_EXE_plexus-controller"))
            .args(["--listen", &format!("127.0.0.1:{api}")])
            .arg("--db")
            .arg(dir.path().join("db.redb"))
            .arg("--insecure-no-auth")
            .args(["--openflow-listen", &format!("pssl:{of}:127.0.0.1")])
            .arg("--private-key")
            .arg(&c.private_key)
            .arg("--certificate")
            .arg(&c.certificate)
            .arg("--ca-cert")
            .arg(&c.ca_cert)
            .arg("--https")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(
            (*client_config_no_auth(&c.ca_cert, &[b"http/1.1"]).unwrap()).clone(),
        )
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{api}");
    let send = |m: reqwest::Method, path: &str, body: Option<Value>| -> Option<Value> {
        rt.block_on(async {
            let mut r = http.request(m, format!("{base}{path}"));
            if let Some(b) = body {
                r = r.json(&b);
            }
            let r = r.send().await.ok()?;
            if !r.status().is_success() {
                return None;
            }
            r.json().await.ok()
        })
    };
    let t0 = Instant::now();
    while send(reqwest::Method::GET, "/v1/status", None).is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "controller did not come up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut ids = Vec::new();
    for (name, dpid) in [("sw-good", 0x7151_0001u64), ("sw-foreign", 0x7151_0002)] {
        let ch = send(
            reqwest::Method::POST,
            "/v1/chassis",
            Some(
                json!({"name": name, "vtep_ip": format!("192.0.2.{}", dpid & 0xff),
                        "endpoint": {"datapath_id": format!("{dpid:#x}")}}),
            ),
        )
        .expect("chassis create");
        ids.push(ch["id"].as_str().unwrap().to_string());
    }
    let status = || send(reqwest::Method::GET, "/v1/status", None).unwrap_or(Value::Null);

    // Five silent TCP clients on the pssl: port, held open throughout: handshaking them
    // one after another would hold the switch up for 5 × 10 s.
    let _silent: Vec<_> = (0..5)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", of)).unwrap())
        .collect();
    let switch = |f: &TlsFiles, dpid: u64, tag: &str| {
        let log = std::fs::File::create(dir.path().join(format!("{tag}.log"))).unwrap();
        Kill(
            Command::new(&vswitchd)
                .args(["--dpid", &format!("{dpid:x}")])
                .args(["--controller", &format!("ssl:127.0.0.1:{of}")])
                .arg("--ctl")
                .arg(dir.path().join(format!("{tag}.ctl")))
                .arg("--private-key")
                .arg(&f.private_key)
                .arg("--certificate")
                .arg(&f.certificate)
                .arg("--ca-cert")
                .arg(&f.ca_cert)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    };
    let mixed = TlsFiles {
        ca_cert: c.ca_cert.clone(),
        ..foreign
    };
    let _bad = switch(&mixed, 0x7151_0002, "sw-foreign");
    let _good = switch(&TlsFiles::in_dir(&pki, "switch"), 0x7151_0001, "sw-good");
    let t0 = Instant::now();
    loop {
        let st = status();
        let good = &st["chassis"][&ids[0]];
        if good["connected"] == true
            && good["realized_revision"].as_u64() >= st["revision"].as_u64()
        {
            break;
        }
        // Well inside the 50 s that serial handshakes with the silent clients would cost.
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "plexus-vswitchd did not connect over ssl: {st}\n{}",
            std::fs::read_to_string(dir.path().join("controller.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let held = Instant::now();
    while held.elapsed() < Duration::from_secs(3) {
        let st = status();
        assert_ne!(
            st["chassis"][&ids[1]]["connected"], true,
            "a foreign certificate got a session"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}
