//! plexus-vswitchd over TLS (`--private-key`, `--certificate`, `--ca-cert`, as for
//! ovs-vswitchd): an `ssl:` controller connection verified both ways (a controller
//! listening on `pssl:` sees the switch's datapath id; a switch with another CA's
//! certificate never gets a session), and the OVSDB `pssl:` listener used by a real
//! `ovs-vsctl --db=ssl:…` (skipped without ovs-vsctl; fails under `CI=true`).

use plexus_openflow::Message;
use plexus_openflow::conn::{Config, Connection, Listener};
use plexus_pki::{ClientAuth, TlsFiles, ca, server_config};
use plexus_tests::prereq;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        // SIGTERM first: the switch removes its control socket.
        plexus_tests::proc::terminate(&mut self.0, Duration::from_secs(3));
    }
}

fn vswitchd(dir: &std::path::Path, f: &TlsFiles, args: &[&str]) -> Kill {
    Kill(
        Command::new(env!("CARGO_BIN_EXE_plexus-vswitchd"))
            .args(args)
            .arg("--ctl")
            .arg(dir.join(format!("sw-{}.ctl", std::process::id())))
            .arg("--private-key")
            .arg(&f.private_key)
            .arg("--certificate")
            .arg(&f.certificate)
            .arg("--ca-cert")
            .arg(&f.ca_cert)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_controller_connection_is_mutual() {
    let d = tempfile::tempdir().unwrap();
    ca::init(d.path(), false).unwrap();
    let ctl = ca::issue(d.path(), "controller", &[]).unwrap();
    let sw = ca::issue(d.path(), "switch", &[]).unwrap();
    let other = tempfile::tempdir().unwrap();
    ca::init(other.path(), false).unwrap();
    let foreign = TlsFiles {
        ca_cert: sw.ca_cert.clone(),
        ..ca::issue(other.path(), "switch", &[]).unwrap()
    };
    let cfg = server_config(&ctl, ClientAuth::Required, &[]).unwrap();
    let l = Listener::bind(&"pssl:0:127.0.0.1".parse().unwrap(), Some(cfg))
        .await
        .unwrap();
    let target = l.connect_target().to_string();

    // Another CA's switch: every handshake fails, no session.
    let bad = vswitchd(
        d.path(),
        &foreign,
        &["--dpid", "5e1", "--controller", &target],
    );
    let r = tokio::time::timeout(Duration::from_secs(4), async {
        loop {
            if let Ok(x) = l.accept().await {
                return x;
            }
        }
    })
    .await;
    assert!(r.is_err(), "a switch with a foreign certificate got in");
    drop(bad);

    let _good = vswitchd(d.path(), &sw, &["--dpid", "5e2", "--controller", &target]);
    let (stream, peer) = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if let Ok(x) = l.accept().await {
                return x;
            }
        }
    })
    .await
    .expect("the switch did not connect over ssl:");
    assert!(peer.starts_with("ssl:"), "{peer}");
    let conn = Connection::accept(stream, &Config::default())
        .await
        .unwrap();
    match conn
        .handle
        .request(&Message::FeaturesRequest)
        .await
        .unwrap()
    {
        Message::FeaturesReply(f) => assert_eq!(f.datapath_id, 0x5e2),
        m => panic!("{m:?}"),
    }
}

/// The switch's own `pssl:` listener (`--listen pssl:…`, as for a passive
/// Controller row) handshakes off its accept loop: clients that connect and
/// never speak do not hold up a real controller behind them (the inline
/// handshake held every later client for 10 s per silent one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pssl_silent_clients_do_not_block_a_controller() {
    let d = tempfile::tempdir().unwrap();
    ca::init(d.path(), false).unwrap();
    let ctl = ca::issue(d.path(), "controller", &[]).unwrap();
    let sw = ca::issue(d.path(), "switch", &[]).unwrap();
    let mut k = vswitchd(
        d.path(),
        &sw,
        &["--dpid", "5e3", "--listen", "pssl:0:127.0.0.1"],
    );
    let err = k.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if let Some(a) = line.strip_prefix("listening on pssl:") {
                let _ = tx.send(a.to_string());
            }
        }
    });
    let port: u16 = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(15)))
        .await
        .unwrap()
        .expect("no pssl listener")
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap(),
        );
    }
    let cfg = Config {
        tls: Some(plexus_openflow::conn::TlsClient {
            config: plexus_pki::client_config(&ctl, &[]).unwrap(),
            server_name: None,
        }),
        ..Config::default()
    };
    let target: plexus_openflow::conn::Target = format!("ssl:127.0.0.1:{port}").parse().unwrap();
    // Well under the 10 s handshake bound of the first silent client.
    let conn = tokio::time::timeout(
        plexus_openflow::conn::TLS_ACCEPT_TIMEOUT / 2,
        Connection::connect_to(&target, &cfg),
    )
    .await
    .expect("silent clients blocked the pssl: listener")
    .unwrap();
    match conn
        .handle
        .request(&Message::FeaturesRequest)
        .await
        .unwrap()
    {
        Message::FeaturesReply(f) => assert_eq!(f.datapath_id, 0x5e3),
        m => panic!("{m:?}"),
    }
    drop(silent);
}

#[test]
fn ovsdb_pssl_with_ovs_vsctl() {
    if !prereq::require_tool("ovs-vsctl") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    ca::init(d.path(), false).unwrap();
    let sw = ca::issue(d.path(), "switch", &[]).unwrap();
    let cli = ca::issue(d.path(), "vsctl", &[]).unwrap();
    let mut k = vswitchd(d.path(), &sw, &["--ovsdb-listen", "pssl:0:127.0.0.1"]);
    let err = k.0.stderr.take().unwrap();
    // Keep draining stderr after the address line (the switch logs on).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if let Some(a) = line.strip_prefix("ovsdb: listening on ssl:") {
                let _ = tx.send(a.to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(15))
        .expect("no ssl listener");
    let vsctl = |f: &TlsFiles, args: &[&str]| {
        Command::new("timeout")
            .arg("10")
            .arg("ovs-vsctl")
            .arg(format!("--db=ssl:{addr}"))
            .arg(format!("--private-key={}", f.private_key.display()))
            .arg(format!("--certificate={}", f.certificate.display()))
            .arg(format!("--ca-cert={}", f.ca_cert.display()))
            .args(["--timeout=5", "--no-wait"])
            .args(args)
            .output()
            .unwrap()
    };
    for args in [&["init"][..], &["add-br", "br-tls"]] {
        let o = vsctl(&cli, args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let o = vsctl(&cli, &["list-br"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "br-tls");
}

/// OVSDB mode takes its TLS identity from the database like ovs-vswitchd:
/// `ovs-vsctl set-ssl KEY CERT CA` then `set-controller br0 ssl:…` gets an OpenFlow
/// session over mutual TLS (needs root for the bridge's datapath, in a private netns).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_ssl_from_the_database() {
    if !prereq::require_root() || !prereq::require_tool("ovs-vsctl") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    ca::init(d.path(), false).unwrap();
    let ctl = ca::issue(d.path(), "controller", &[]).unwrap();
    let sw = ca::issue(d.path(), "switch", &[]).unwrap();
    let ns =
        plexus_tests::netns::Netns::create(&plexus_tests::netns::unique_name("plxsecs")).unwrap();
    let sock = d.path().join("db.sock");
    let _k = Kill(
        Command::new(env!("CARGO_BIN_EXE_plexus-vswitchd"))
            .args(["--ovsdb-listen", &format!("punix:{}", sock.display())])
            .args(["--netns", ns.name(), "--port-type", "afpacket"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.path().join("vswitchd.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let cfg = server_config(&ctl, ClientAuth::Required, &[]).unwrap();
    let l = Listener::bind(&"pssl:0:127.0.0.1".parse().unwrap(), Some(cfg))
        .await
        .unwrap();
    let target = l.connect_target().to_string();
    let s = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let db = format!("--db=unix:{}", sock.display());
    let (key, cert, cacert) = (s(&sw.private_key), s(&sw.certificate), s(&sw.ca_cert));
    tokio::task::spawn_blocking(move || {
        let t0 = std::time::Instant::now();
        while !sock.exists() {
            assert!(t0.elapsed() < Duration::from_secs(15), "no database socket");
            std::thread::sleep(Duration::from_millis(50));
        }
        for args in [
            vec!["init"],
            vec!["set-ssl", &key, &cert, &cacert],
            vec![
                "add-br",
                "br0",
                "--",
                "set",
                "bridge",
                "br0",
                "other_config:datapath-id=0000000000005e53",
                "fail_mode=secure",
            ],
            vec!["set-controller", "br0", &target],
        ] {
            let o = Command::new("timeout")
                .args(["10", "ovs-vsctl", &db, "--no-wait"])
                .args(&args)
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    })
    .await
    .unwrap();
    let (stream, _) = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if let Ok(x) = l.accept().await {
                return x;
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "no ssl: session from the SSL row: {}",
            std::fs::read_to_string(d.path().join("vswitchd.log")).unwrap_or_default()
        )
    });
    let conn = Connection::accept(stream, &Config::default())
        .await
        .unwrap();
    match conn
        .handle
        .request(&Message::FeaturesRequest)
        .await
        .unwrap()
    {
        Message::FeaturesReply(f) => assert_eq!(f.datapath_id, 0x5e53),
        m => panic!("{m:?}"),
    }
}
