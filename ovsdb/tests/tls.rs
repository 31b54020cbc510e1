//! OVSDB over TLS (`pssl:`/`ssl:`), mutual like `ovsdb-server --private-key …
//! --certificate … --ca-cert …`: real `ovs-vsctl --db=ssl:…` against our server, our
//! client against it, and clients without a certificate of the CA refused.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use plexus_ovsdb::client::Client;
use plexus_ovsdb::db::Database;
use plexus_ovsdb::schema::DatabaseSchema;
use plexus_ovsdb::server::{Server, ServerCore};
use plexus_pki::{ClientAuth, TlsFiles, ca, client_config, client_config_no_auth, server_config};

fn vsctl(addr: &str, f: &TlsFiles, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("timeout")
        .arg("10")
        .arg("ovs-vsctl")
        .arg(format!("--db=ssl:{addr}"))
        .arg(format!("--private-key={}", f.private_key.display()))
        .arg(format!("--certificate={}", f.certificate.display()))
        .arg(format!("--ca-cert={}", f.ca_cert.display()))
        .args(["--timeout=5", "--no-wait"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

async fn server(f: &TlsFiles) -> (Server, String) {
    let mut core = ServerCore::new();
    core.add_database(Database::new(DatabaseSchema::vswitch()));
    let srv = Server::new(core);
    let cfg = server_config(f, ClientAuth::Required, &[]).unwrap();
    let addr = srv.listen_tls("127.0.0.1:0", cfg).await.unwrap();
    (srv, addr.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_over_mutual_tls() {
    let d = tempfile::tempdir().unwrap();
    ca::init(d.path(), false).unwrap();
    let s = ca::issue(d.path(), "ovsdb", &[]).unwrap();
    let c = ca::issue(d.path(), "client", &[]).unwrap();
    let (_srv, addr) = server(&s).await;
    let remote = format!("ssl:{addr}");
    let cl = Client::connect_tls(&remote, client_config(&c, &[]).unwrap())
        .await
        .unwrap();
    let dbs = cl.list_dbs().await.unwrap();
    assert!(dbs.contains(&"Open_vSwitch".to_string()), "{dbs:?}");
    // Without a client certificate: the handshake may complete on the client's side
    // (TLS 1.3), but no request is ever answered.
    let nocert = client_config_no_auth(&c.ca_cert, &[]).unwrap();
    let r = match Client::connect_tls(&remote, nocert).await {
        Err(_) => true,
        Ok(cl) => tokio::time::timeout(Duration::from_secs(5), cl.list_dbs())
            .await
            .map_or(true, |r| r.is_err()),
    };
    assert!(r, "a client without a certificate was served");
    // A server name the certificate does not have: refused by our client.
    let wrong = Arc::new((*client_config(&c, &[]).unwrap()).clone());
    let port = addr.rsplit_once(':').unwrap().1;
    assert!(
        Client::connect_tls(&format!("ssl:wrong.invalid:{port}"), wrong)
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ovs_vsctl_over_ssl() {
    if !common::require_tool("ovs-vsctl") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    ca::init(d.path(), false).unwrap();
    let s = ca::issue(d.path(), "ovsdb", &[]).unwrap();
    let c = ca::issue(d.path(), "vsctl", &[]).unwrap();
    let (_srv, addr) = server(&s).await;
    let other = tempfile::tempdir().unwrap();
    ca::init(other.path(), false).unwrap();
    let o = ca::issue(other.path(), "intruder", &[]).unwrap();
    let (a2, c2, o2) = (addr.clone(), c.clone(), o.clone());
    tokio::task::spawn_blocking(move || {
        for args in [
            &["init"][..],
            &["add-br", "br0"],
            &["add-port", "br0", "p1"],
            &["set", "Open_vSwitch", ".", "external_ids:plexus=tls"],
        ] {
            let (ok, _, err) = vsctl(&a2, &c2, args);
            assert!(ok, "ovs-vsctl {args:?}: {err}");
        }
        let (ok, out, err) = vsctl(&a2, &c2, &["list-ports", "br0"]);
        assert!(ok, "{err}");
        assert_eq!(out.trim(), "p1");
        let (ok, out, _) = vsctl(
            &a2,
            &c2,
            &["get", "Open_vSwitch", ".", "external_ids:plexus"],
        );
        assert!(ok);
        assert_eq!(out.trim(), "tls");
        // A certificate of another CA (trusting ours): refused by our server.
        let intruder = TlsFiles {
            ca_cert: c2.ca_cert.clone(),
            ..o2
        };
        let (ok, out, err) = vsctl(&a2, &intruder, &["list-br"]);
        assert!(!ok, "a foreign certificate got in: {out}");
        eprintln!("intruder refused: {}", err.trim());
    })
    .await
    .unwrap();
}
