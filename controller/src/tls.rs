//! TLS for the controller's endpoints: the REST API (`--https`), the OpenFlow listener
//! (`--openflow-listen pssl:…`) and active `ssl:` chassis connections, and xDS (mutual
//! TLS). Keys, certificates and the CA come from `--private-key`, `--certificate` and
//! `--ca-cert` ([`plexus_pki::TlsFiles`]; `plexus certs` makes them).

use plexus_pki::TlsListener;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// An HTTPS listener for `axum::serve` (handshakes run in the background).
#[derive(Debug)]
pub struct HttpsListener(pub TlsListener);

impl axum::serve::Listener for HttpsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok(x) => return x,
                // The acceptor task is gone (it never ends by itself): nothing more to serve.
                Err(_) => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.0.local_addr())
    }
}

/// A server-side TLS stream that tonic can serve gRPC on.
#[derive(Debug)]
pub struct GrpcTls(pub TlsStream<TcpStream>);

impl tonic::transport::server::Connected for GrpcTls {
    type ConnectInfo = Option<SocketAddr>;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.get_ref().0.peer_addr().ok()
    }
}

impl AsyncRead for GrpcTls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for GrpcTls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

/// The stream of TLS connections of a listener, for tonic's `serve_with_incoming`.
pub fn grpc_incoming(
    l: TlsListener,
) -> impl futures::Stream<Item = io::Result<GrpcTls>> + Send + 'static {
    futures::stream::unfold(l, |l| async move {
        match l.accept().await {
            Ok((s, _)) => Some((Ok(GrpcTls(s)), l)),
            Err(_) => None,
        }
    })
}
