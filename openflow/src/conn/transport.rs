//! Transports: TCP, unix sockets and TLS behind one stream type, targets in
//! the OVS connection-string syntax, and passive listeners.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, ServerConfig};

use crate::text::ParseError;

/// The IANA OpenFlow port, used when a target omits the port.
pub const DEFAULT_PORT: u16 = 6653;

/// Upper bound for a server-side TLS handshake of a `pssl:` [`Listener`] (each runs in
/// its own task, so a slow or silent client holds up only itself).
pub const TLS_ACCEPT_TIMEOUT: std::time::Duration = plexus_pki::HANDSHAKE_TIMEOUT;

/// Anything the connection layer can run over.
pub trait AsyncStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> AsyncStream for T {}

/// A connected byte stream of any transport.
pub type Stream = Box<dyn AsyncStream>;

/// An active connection target: `tcp:HOST[:PORT]`, `ssl:HOST[:PORT]`, `unix:PATH`.
/// IPv6 hosts are written in brackets (`tcp:[::1]:6653`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Tcp { host: String, port: u16 },
    Ssl { host: String, port: u16 },
    Unix(PathBuf),
}

/// A passive (listening) target: `ptcp:[PORT][:IP]`, `pssl:[PORT][:IP]`, `punix:PATH`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PassiveTarget {
    Tcp(SocketAddr),
    Ssl(SocketAddr),
    Unix(PathBuf),
}

fn strip_brackets(s: &str) -> &str {
    s.strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(s)
}

fn parse_port(s: &str, whole: &str) -> Result<u16, ParseError> {
    s.parse()
        .map_err(|_| ParseError::new(format!("{whole}: bad port {s:?}")))
}

/// Splits `HOST[:PORT]` where an IPv6 HOST is bracketed.
fn host_port(rest: &str, whole: &str) -> Result<(String, u16), ParseError> {
    let (host, port) = if let Some(r) = rest.strip_prefix('[') {
        let end = r
            .find(']')
            .ok_or_else(|| ParseError::new(format!("{whole}: unterminated '['")))?;
        let after = &r[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => parse_port(p, whole)?,
            None if after.is_empty() => DEFAULT_PORT,
            None => return Err(ParseError::new(format!("{whole}: junk after host"))),
        };
        (r[..end].to_string(), port)
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h.to_string(), parse_port(p, whole)?),
            None => (rest.to_string(), DEFAULT_PORT),
        }
    };
    if host.is_empty() {
        return Err(ParseError::new(format!("{whole}: missing host")));
    }
    Ok((host, port))
}

fn parse_path(rest: &str, whole: &str) -> Result<PathBuf, ParseError> {
    if rest.is_empty() {
        Err(ParseError::new(format!("{whole}: missing path")))
    } else {
        Ok(PathBuf::from(rest))
    }
}

impl std::str::FromStr for Target {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let (kind, rest) = s
            .split_once(':')
            .ok_or_else(|| ParseError::new(format!("{s}: missing connection method")))?;
        match kind {
            "tcp" => host_port(rest, s).map(|(host, port)| Target::Tcp { host, port }),
            "ssl" => host_port(rest, s).map(|(host, port)| Target::Ssl { host, port }),
            "unix" => parse_path(rest, s).map(Target::Unix),
            _ => Err(ParseError::new(format!(
                "{s}: unknown connection method {kind:?}"
            ))),
        }
    }
}

impl std::str::FromStr for PassiveTarget {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let (kind, rest) = s.split_once(':').map_or((s, ""), |(k, r)| (k, r));
        let sock = |rest: &str| -> Result<SocketAddr, ParseError> {
            let (port, ip) = rest.split_once(':').unwrap_or((rest, ""));
            let port = if port.is_empty() {
                DEFAULT_PORT
            } else {
                parse_port(port, s)?
            };
            let ip: IpAddr = if ip.is_empty() {
                IpAddr::from([0, 0, 0, 0])
            } else {
                strip_brackets(ip)
                    .parse()
                    .map_err(|_| ParseError::new(format!("{s}: bad IP address {ip:?}")))?
            };
            Ok(SocketAddr::new(ip, port))
        };
        match kind {
            "ptcp" => sock(rest).map(PassiveTarget::Tcp),
            "pssl" => sock(rest).map(PassiveTarget::Ssl),
            "punix" => parse_path(rest, s).map(PassiveTarget::Unix),
            _ => Err(ParseError::new(format!(
                "{s}: unknown passive connection method {kind:?}"
            ))),
        }
    }
}

fn fmt_host(f: &mut fmt::Formatter<'_>, host: &str) -> fmt::Result {
    if host.contains(':') {
        write!(f, "[{host}]")
    } else {
        f.write_str(host)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp { host, port } | Target::Ssl { host, port } => {
                f.write_str(if matches!(self, Target::Tcp { .. }) {
                    "tcp:"
                } else {
                    "ssl:"
                })?;
                fmt_host(f, host)?;
                write!(f, ":{port}")
            }
            Target::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl fmt::Display for PassiveTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PassiveTarget::Tcp(a) | PassiveTarget::Ssl(a) => {
                let k = if matches!(self, PassiveTarget::Tcp(_)) {
                    "ptcp"
                } else {
                    "pssl"
                };
                write!(f, "{k}:{}:", a.port())?;
                fmt_host(f, &a.ip().to_string())
            }
            PassiveTarget::Unix(p) => write!(f, "punix:{}", p.display()),
        }
    }
}

/// TLS client settings for `ssl:` targets.
#[derive(Debug, Clone)]
pub struct TlsClient {
    pub config: Arc<ClientConfig>,
    /// Name to verify in the server certificate; defaults to the target host
    /// (an IP address host is verified as an IP SAN).
    pub server_name: Option<String>,
}

fn tls_err(e: impl fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
}

/// Opens a byte stream to `target`. `tls` is required for `ssl:` targets.
pub async fn connect_stream(target: &Target, tls: Option<&TlsClient>) -> io::Result<Stream> {
    match target {
        Target::Tcp { host, port } => {
            let s = TcpStream::connect((host.as_str(), *port)).await?;
            s.set_nodelay(true)?;
            Ok(Box::new(s))
        }
        Target::Unix(p) => Ok(Box::new(UnixStream::connect(p).await?)),
        Target::Ssl { host, port } => {
            let tls =
                tls.ok_or_else(|| tls_err(format!("{target}: no TLS client configuration")))?;
            let name = tls.server_name.as_deref().unwrap_or(host);
            let name = ServerName::try_from(name.to_string()).map_err(tls_err)?;
            let s = TcpStream::connect((host.as_str(), *port)).await?;
            s.set_nodelay(true)?;
            let s = TlsConnector::from(tls.config.clone())
                .connect(name, s)
                .await?;
            Ok(Box::new(s))
        }
    }
}

/// A listening socket for a [`PassiveTarget`].
pub struct Listener {
    inner: ListenerInner,
    target: PassiveTarget,
}

enum ListenerInner {
    Tcp(TcpListener),
    /// `pssl:`: handshakes run in the background ([`plexus_pki::TlsListener`]), off the
    /// accept path, each bounded by [`TLS_ACCEPT_TIMEOUT`].
    Ssl(plexus_pki::TlsListener),
    Unix(UnixListener),
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("target", &self.target)
            .finish()
    }
}

impl Listener {
    /// Binds `target`. `tls` is required for `pssl:`. For `punix:` a stale
    /// socket file at the path is removed first (other file types are not).
    pub async fn bind(target: &PassiveTarget, tls: Option<Arc<ServerConfig>>) -> io::Result<Self> {
        let inner = match target {
            PassiveTarget::Tcp(a) => ListenerInner::Tcp(TcpListener::bind(a).await?),
            PassiveTarget::Ssl(a) => {
                let cfg =
                    tls.ok_or_else(|| tls_err(format!("{target}: no TLS server configuration")))?;
                ListenerInner::Ssl(plexus_pki::TlsListener::bind(*a, cfg).await?)
            }
            PassiveTarget::Unix(p) => {
                use std::os::unix::fs::FileTypeExt;
                if let Ok(m) = std::fs::symlink_metadata(p)
                    && m.file_type().is_socket()
                {
                    std::fs::remove_file(p)?;
                }
                ListenerInner::Unix(UnixListener::bind(p)?)
            }
        };
        let mut target = target.clone();
        match (&inner, &mut target) {
            // Resolves port 0.
            (ListenerInner::Tcp(l), PassiveTarget::Tcp(a)) => *a = l.local_addr()?,
            (ListenerInner::Ssl(l), PassiveTarget::Ssl(a)) => *a = l.local_addr(),
            _ => {}
        }
        Ok(Self { inner, target })
    }

    /// The bound target (with the actual port when bound to port 0).
    pub fn local_target(&self) -> &PassiveTarget {
        &self.target
    }

    /// The active target that connects to this listener (an unspecified bind
    /// address is replaced with loopback).
    pub fn connect_target(&self) -> Target {
        let host_of = |a: &SocketAddr| {
            let ip = a.ip();
            match ip {
                IpAddr::V4(v) if v.is_unspecified() => "127.0.0.1".to_string(),
                IpAddr::V6(v) if v.is_unspecified() => "::1".to_string(),
                ip => ip.to_string(),
            }
        };
        match &self.target {
            PassiveTarget::Tcp(a) => Target::Tcp {
                host: host_of(a),
                port: a.port(),
            },
            PassiveTarget::Ssl(a) => Target::Ssl {
                host: host_of(a),
                port: a.port(),
            },
            PassiveTarget::Unix(p) => Target::Unix(p.clone()),
        }
    }

    /// Accepts one connection. Returns the stream and a description of the
    /// peer. For `pssl:` it returns the next connection whose TLS handshake
    /// succeeded: handshakes run in the background, each bounded by
    /// [`TLS_ACCEPT_TIMEOUT`], so a client that connects and never speaks
    /// does not hold up the others; failed ones are counted
    /// ([`Listener::failed_handshakes`]) and logged, not returned.
    pub async fn accept(&self) -> io::Result<(Stream, String)> {
        match &self.inner {
            ListenerInner::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                s.set_nodelay(true)?;
                Ok((Box::new(s), format!("tcp:{peer}")))
            }
            ListenerInner::Ssl(l) => {
                let (s, peer) = l.accept().await?;
                Ok((Box::new(s), format!("ssl:{peer}")))
            }
            ListenerInner::Unix(l) => {
                let (s, _) = l.accept().await?;
                Ok((Box::new(s), format!("unix:{}", self.target_path())))
            }
        }
    }

    /// `pssl:` handshakes that failed or timed out so far (0 for other listeners).
    pub fn failed_handshakes(&self) -> u64 {
        match &self.inner {
            ListenerInner::Ssl(l) => l.failed_handshakes(),
            _ => 0,
        }
    }

    fn target_path(&self) -> String {
        match &self.target {
            PassiveTarget::Unix(p) => p.display().to_string(),
            t => t.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_targets() {
        let t: Target = "tcp:127.0.0.1:6633".parse().unwrap();
        assert_eq!(
            t,
            Target::Tcp {
                host: "127.0.0.1".into(),
                port: 6633
            }
        );
        assert_eq!(t.to_string(), "tcp:127.0.0.1:6633");
        let t: Target = "ssl:[::1]".parse().unwrap();
        assert_eq!(
            t,
            Target::Ssl {
                host: "::1".into(),
                port: DEFAULT_PORT
            }
        );
        assert_eq!(t.to_string(), "ssl:[::1]:6653");
        assert_eq!(
            "unix:/run/br0.sock".parse::<Target>().unwrap(),
            Target::Unix("/run/br0.sock".into())
        );
        for bad in [
            "tcp:",
            "tcp:1.2.3.4:x",
            "udp:1.2.3.4:1",
            "unix:",
            "tcp:[::1",
            "nothing",
        ] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
    }

    #[test]
    fn parse_passive_targets() {
        let p: PassiveTarget = "ptcp:6633".parse().unwrap();
        assert_eq!(p, PassiveTarget::Tcp("0.0.0.0:6633".parse().unwrap()));
        let p: PassiveTarget = "ptcp:6633:127.0.0.1".parse().unwrap();
        assert_eq!(p, PassiveTarget::Tcp("127.0.0.1:6633".parse().unwrap()));
        assert_eq!(p.to_string(), "ptcp:6633:127.0.0.1");
        let p: PassiveTarget = "pssl:0:[::1]".parse().unwrap();
        assert_eq!(p, PassiveTarget::Ssl("[::1]:0".parse().unwrap()));
        assert_eq!(p.to_string(), "pssl:0:[::1]");
        let p: PassiveTarget = "pssl:6653:::1".parse().unwrap();
        assert_eq!(p, PassiveTarget::Ssl("[::1]:6653".parse().unwrap()));
        assert_eq!(
            "ptcp".parse::<PassiveTarget>().unwrap(),
            PassiveTarget::Tcp("0.0.0.0:6653".parse().unwrap())
        );
        assert_eq!(
            "punix:/tmp/x".parse::<PassiveTarget>().unwrap(),
            PassiveTarget::Unix("/tmp/x".into())
        );
        for bad in ["ptcp:x", "ptcp:1:notanip", "punix:", "tcp:1"] {
            assert!(bad.parse::<PassiveTarget>().is_err(), "{bad}");
        }
    }
}
