use super::*;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

#[test]
fn ca_issue_and_configs() {
    let d = tempfile::tempdir().unwrap();
    let ca = ca::init(d.path(), false).unwrap();
    let before = std::fs::read(&ca).unwrap();
    // Kept without force.
    ca::init(d.path(), false).unwrap();
    assert_eq!(std::fs::read(&ca).unwrap(), before);
    let s = ca::issue(
        d.path(),
        "server",
        &["192.0.2.7".into(), "ctl.example".into()],
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&s.private_key)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(load_certs(&s.certificate).unwrap().len(), 1);
    server_config(&s, ClientAuth::Required, &[]).unwrap();
    client_config(&s, &[b"h2"]).unwrap();
    for bad in ["", "ca", "a/b", ".x", "a_b"] {
        assert!(ca::issue(d.path(), bad, &[]).is_err(), "{bad:?}");
    }
    // Errors name the file.
    let e = load_certs(&d.path().join("nope.pem"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope.pem"), "{e}");
    std::fs::write(d.path().join("empty.pem"), "").unwrap();
    let e = load_certs(&d.path().join("empty.pem"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no CERTIFICATE"), "{e}");
    let e = load_key(&s.certificate).unwrap_err().to_string();
    assert!(e.contains("private key"), "{e}");
    assert!(TlsFiles::from_options(Some(&s.private_key), None, None).is_err());
    assert_eq!(TlsFiles::from_options(None, None, None).unwrap(), None);
}

async fn roundtrip(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    name: &str,
) -> (Result<Vec<u8>, std::io::Error>, u64) {
    let l = TlsListener::bind("127.0.0.1:0".parse().unwrap(), server)
        .await
        .unwrap();
    let addr = l.local_addr();
    let srv = tokio::spawn(async move {
        let r = tokio::time::timeout(std::time::Duration::from_secs(2), l.accept()).await;
        if let Ok(Ok((mut s, _))) = r {
            let mut b = [0u8; 4];
            if s.read_exact(&mut b).await.is_ok() {
                let _ = s.write_all(&b).await;
                let _ = s.flush().await;
            }
        }
        l.failed_handshakes()
    });
    let res = async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let mut s = TlsConnector::from(client)
            .connect(ServerName::try_from(name.to_string()).unwrap(), tcp)
            .await?;
        s.write_all(b"ping").await?;
        let mut b = vec![0u8; 4];
        s.read_exact(&mut b).await?;
        Ok(b)
    }
    .await;
    (res, srv.await.unwrap())
}

/// Mutual TLS: a client with a certificate of the CA gets through; one without a
/// certificate, or with one of another CA, is refused and counted; a server name not in
/// the certificate is refused by the client.
#[tokio::test]
async fn mutual_tls_accepts_only_the_cas_clients() {
    let d = tempfile::tempdir().unwrap();
    ca::init(d.path(), false).unwrap();
    let s = ca::issue(d.path(), "server", &[]).unwrap();
    let c = ca::issue(d.path(), "client", &[]).unwrap();
    let other = tempfile::tempdir().unwrap();
    ca::init(other.path(), false).unwrap();
    let o = ca::issue(other.path(), "client", &[]).unwrap();
    let srv = server_config(&s, ClientAuth::Required, &[]).unwrap();

    let (r, failed) = roundtrip(srv.clone(), client_config(&c, &[]).unwrap(), "127.0.0.1").await;
    assert_eq!(r.unwrap(), b"ping");
    assert_eq!(failed, 0);

    let (r, failed) = roundtrip(
        srv.clone(),
        client_config_no_auth(&c.ca_cert, &[]).unwrap(),
        "localhost",
    )
    .await;
    assert!(r.is_err(), "no client certificate got through");
    assert_eq!(failed, 1);

    // Another CA's client certificate (it trusts our CA, so only the server refuses).
    let mixed = TlsFiles {
        ca_cert: c.ca_cert.clone(),
        ..o.clone()
    };
    let (r, failed) = roundtrip(
        srv.clone(),
        client_config(&mixed, &[]).unwrap(),
        "localhost",
    )
    .await;
    assert!(r.is_err(), "a foreign client certificate got through");
    assert_eq!(failed, 1);

    // The client refuses a server of another CA, and a name the certificate lacks.
    let (r, _) = roundtrip(srv.clone(), client_config(&o, &[]).unwrap(), "localhost").await;
    assert!(r.is_err());
    let (r, _) = roundtrip(
        srv.clone(),
        client_config(&c, &[]).unwrap(),
        "wrong.example",
    )
    .await;
    assert!(r.is_err());

    // Optional client auth: no certificate is fine.
    let opt = server_config(&s, ClientAuth::Optional, &[]).unwrap();
    let (r, failed) = roundtrip(
        opt,
        client_config_no_auth(&c.ca_cert, &[]).unwrap(),
        "server",
    )
    .await;
    assert_eq!(r.unwrap(), b"ping");
    assert_eq!(failed, 0);
}
