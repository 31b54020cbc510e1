//! TLS for every Plexus endpoint (REST, OpenFlow `ssl:`/`pssl:`, OVSDB `ssl:`/`pssl:`,
//! xDS): one place that loads PEM files and builds rustls configurations, and a local
//! certificate authority for tests and small deployments (`plexus certs`).
//!
//! Like Open vSwitch (`--private-key`, `--certificate`, `--ca-cert`, or
//! `ovs-vsctl set-ssl KEY CERT CA`), a TLS endpoint has three files: its private key,
//! its certificate and the CA certificate that peers' certificates must chain to. Servers
//! built with [`ClientAuth::Required`] accept only clients that present a certificate
//! signed by that CA (mutual TLS); clients always verify the server against the CA, and
//! present their own certificate.
//!
//! The key may be PKCS#8, SEC1 (EC) or PKCS#1 (RSA) PEM; the certificate file may hold a
//! chain (leaf first). rustls with the *ring* provider, TLS 1.2 and 1.3.

pub mod ca;
mod listener;

pub use listener::{HANDSHAKE_TIMEOUT, TlsListener};
pub use rustls;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What went wrong, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("certificate generation: {0}")]
    Generate(String),
}

fn file_err(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::File {
        path: path.to_path_buf(),
        msg: msg.to_string(),
    }
}

/// An endpoint's private key, certificate (chain) and CA certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub private_key: PathBuf,
    pub certificate: PathBuf,
    pub ca_cert: PathBuf,
}

impl TlsFiles {
    /// `DIR/NAME-key.pem`, `DIR/NAME-cert.pem` and `DIR/ca-cert.pem`: the layout
    /// [`ca::issue`] writes.
    pub fn in_dir(dir: &Path, name: &str) -> Self {
        Self {
            private_key: dir.join(format!("{name}-key.pem")),
            certificate: dir.join(format!("{name}-cert.pem")),
            ca_cert: dir.join(ca::CA_CERT),
        }
    }

    /// From three optional paths (command-line flags): all three or none.
    pub fn from_options(
        private_key: Option<&Path>,
        certificate: Option<&Path>,
        ca_cert: Option<&Path>,
    ) -> Result<Option<Self>, Error> {
        match (private_key, certificate, ca_cert) {
            (None, None, None) => Ok(None),
            (Some(k), Some(c), Some(a)) => Ok(Some(Self {
                private_key: k.to_path_buf(),
                certificate: c.to_path_buf(),
                ca_cert: a.to_path_buf(),
            })),
            _ => Err(Error::Tls(
                "TLS needs all three of --private-key, --certificate and --ca-cert".into(),
            )),
        }
    }
}

/// Whether a server asks clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// A client certificate signed by the CA is required (OVS's behaviour).
    Required,
    /// A client certificate is verified if presented (REST: bearer tokens authenticate).
    Optional,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate of a PEM file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let data = std::fs::read(path).map_err(|e| file_err(path, e))?;
    let certs = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(file_err(path, "no CERTIFICATE in the file"));
    }
    Ok(certs)
}

/// Reads the first private key of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    let data = std::fs::read(path).map_err(|e| file_err(path, e))?;
    PrivateKeyDer::from_pem_slice(&data)
        .map_err(|e| file_err(path, format!("no usable private key: {e}")))
}

fn roots(ca: &Path) -> Result<RootCertStore, Error> {
    let mut r = RootCertStore::empty();
    for c in load_certs(ca)? {
        r.add(c)
            .map_err(|e| file_err(ca, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(r)
}

/// A server configuration: our key and certificate, clients verified against the CA.
/// `alpn` lists the protocols offered (e.g. `h2` and `http/1.1` for HTTPS, `h2` for
/// gRPC; empty for OpenFlow and OVSDB).
pub fn server_config(
    files: &TlsFiles,
    auth: ClientAuth,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, Error> {
    let certs = load_certs(&files.certificate)?;
    let key = load_key(&files.private_key)?;
    let roots = Arc::new(roots(&files.ca_cert)?);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
    let verifier = match auth {
        ClientAuth::Required => verifier,
        ClientAuth::Optional => verifier.allow_unauthenticated(),
    }
    .build()
    .map_err(|e| Error::Tls(e.to_string()))?;
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| file_err(&files.private_key, format!("key and certificate: {e}")))?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// A client configuration: the server verified against the CA, our certificate
/// presented when the server asks.
pub fn client_config(files: &TlsFiles, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, Error> {
    let certs = load_certs(&files.certificate)?;
    let key = load_key(&files.private_key)?;
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots(&files.ca_cert)?)
        .with_client_auth_cert(certs, key)
        .map_err(|e| file_err(&files.private_key, format!("key and certificate: {e}")))?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// A client configuration without a client certificate (for servers that do not ask).
pub fn client_config_no_auth(ca_cert: &Path, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, Error> {
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots(ca_cert)?)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests;
