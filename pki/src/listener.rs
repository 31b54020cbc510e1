//! A TLS listener that handshakes in the background: a slow or broken client never
//! holds up the next one.

use rustls::ServerConfig;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Upper bound for one server-side handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts TCP connections and yields those whose TLS handshake succeeded.
#[derive(Debug)]
pub struct TlsListener {
    rx: tokio::sync::Mutex<mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>>,
    local: SocketAddr,
    failed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub async fn bind(addr: SocketAddr, cfg: Arc<ServerConfig>) -> io::Result<Self> {
        Self::from_tcp(TcpListener::bind(addr).await?, cfg)
    }

    /// Takes over a bound listener (must be called inside a tokio runtime).
    pub fn from_tcp(l: TcpListener, cfg: Arc<ServerConfig>) -> io::Result<Self> {
        let local = l.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        let failed = Arc::new(AtomicU64::new(0));
        let f2 = failed.clone();
        let acceptor = TlsAcceptor::from(cfg);
        let task = tokio::spawn(async move {
            loop {
                let (s, peer) = match l.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "TLS listener accept");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = s.set_nodelay(true);
                let (acc, tx, failed) = (acceptor.clone(), tx.clone(), f2.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acc.accept(s)).await {
                        Ok(Ok(t)) => {
                            let _ = tx.send((t, peer)).await;
                        }
                        Ok(Err(e)) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(%peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(%peer, "TLS handshake timed out");
                        }
                    }
                });
            }
        });
        Ok(Self {
            rx: tokio::sync::Mutex::new(rx),
            local,
            failed,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Handshakes that failed or timed out so far (bad or missing client certificate,
    /// not TLS at all, …).
    pub fn failed_handshakes(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// The next connection whose handshake succeeded (concurrent callers
    /// take turns).
    pub async fn accept(&self) -> io::Result<(TlsStream<TcpStream>, SocketAddr)> {
        self.rx
            .lock()
            .await
            .recv()
            .await
            .ok_or_else(|| io::Error::other("TLS listener stopped"))
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}
