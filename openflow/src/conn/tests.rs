//! Connection-layer tests: a scripted raw peer on the far end of an in-memory
//! duplex stream, plus loopback TCP, a unix socket and TLS.

use super::*;
use crate::error::BadRequestCode;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

const OF13_HELLO: [u8; 16] = [4, 0, 0, 16, 0, 0, 0, 1, 0, 1, 0, 8, 0, 0, 0, 0x10];

/// The far end, speaking raw bytes.
struct Peer {
    s: DuplexStream,
    buf: BytesMut,
}

impl Peer {
    async fn send(&mut self, f: &[u8]) {
        self.s.write_all(f).await.unwrap();
    }

    /// Next frame, or `None` at EOF. Panics after 10 s (of runtime time).
    async fn recv(&mut self) -> Option<Vec<u8>> {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Ok(Frame::Complete(n)) = split_frame(&self.buf) {
                    return Some(self.buf.split_to(n).to_vec());
                }
                match self.s.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("peer recv timed out")
    }
}

fn frame(t: u8, xid: u32, body: &[u8]) -> Vec<u8> {
    raw::build(4, t, xid, body)
}

fn xid_of(f: &[u8]) -> u32 {
    u32::from_be_bytes([f[4], f[5], f[6], f[7]])
}

fn cfg() -> Config {
    Config {
        probe_interval: None,
        ..Config::default()
    }
}

/// A handshaken connection and its raw peer.
async fn pair_with(cfg: Config) -> (Connection, Peer) {
    let (a, b) = duplex(1 << 16);
    let mut peer = Peer {
        s: b,
        buf: BytesMut::new(),
    };
    peer.send(&OF13_HELLO).await;
    let conn = Connection::accept(a, &cfg).await.unwrap();
    let hello = peer.recv().await.unwrap();
    assert_eq!(hello, raw::hello(0x10, 0));
    (conn, peer)
}

async fn pair() -> (Connection, Peer) {
    pair_with(cfg()).await
}

#[track_caller]
fn assert_echo_reply(m: Message, data: &[u8]) {
    assert!(
        matches!(&m, Message::EchoReply(d) if d == data),
        "expected echo reply {data:?}, got {m:?}"
    );
}

fn echo_req(p: &[u8]) -> Message {
    Message::EchoRequest(p.to_vec())
}

#[tokio::test]
async fn negotiates_of13() {
    let (conn, _peer) = pair().await;
    assert_eq!(conn.version, 4);
    assert_eq!(conn.handle.version(), 4);
    // A peer offering 1.0..1.5 via bitmap (header 1.5) also lands on 1.3.
    let (a, mut b) = duplex(4096);
    b.write_all(&raw::hello(0b111_1110, 9)).await.unwrap();
    let c = Connection::accept(a, &cfg()).await.unwrap();
    assert_eq!(c.version, 4);
}

#[tokio::test]
async fn of10_only_peer_gets_hello_failed_and_close() {
    let (a, b) = duplex(4096);
    let mut peer = Peer {
        s: b,
        buf: BytesMut::new(),
    };
    // OpenFlow 1.0 HELLO without a bitmap.
    peer.send(&[1, 0, 0, 8, 0, 0, 0, 1]).await;
    let err = Connection::accept(a, &cfg()).await.unwrap_err();
    assert_eq!(
        err,
        ConnError::Incompatible {
            ours: 0x10,
            theirs: 0x02
        }
    );
    assert_eq!(peer.recv().await.unwrap(), raw::hello(0x10, 0));
    let e = peer.recv().await.unwrap();
    // OFPT_ERROR in the peer's version, HELLO_FAILED/INCOMPATIBLE, ASCII text.
    assert_eq!(&e[..2], &[1, raw::OFPT_ERROR]);
    assert_eq!(&e[8..12], &[0, 0, 0, 0]);
    assert_eq!(
        std::str::from_utf8(&e[12..]).unwrap(),
        "We support OpenFlow 1.3, you support OpenFlow 1.0, no common versions."
    );
    assert_eq!(
        peer.recv().await,
        None,
        "connection closed after HELLO_FAILED"
    );
}

#[tokio::test]
async fn first_message_not_hello_fails() {
    let (a, b) = duplex(4096);
    let mut peer = Peer {
        s: b,
        buf: BytesMut::new(),
    };
    peer.send(&frame(raw::OFPT_ECHO_REQUEST, 1, &[])).await;
    assert!(matches!(
        Connection::accept(a, &cfg()).await,
        Err(ConnError::Handshake(_))
    ));
    peer.recv().await.unwrap(); // our hello
    let e = peer.recv().await.unwrap();
    assert_eq!(e[1], raw::OFPT_ERROR);
    assert_eq!(peer.recv().await, None);
}

#[tokio::test]
async fn peer_error_instead_of_hello() {
    let (a, mut b) = duplex(4096);
    let e = raw::error(4, 0, OfpError::HelloFailed(HelloFailedCode::Eperm), b"no");
    b.write_all(&e).await.unwrap();
    assert_eq!(
        Connection::accept(a, &cfg()).await.unwrap_err(),
        ConnError::Ofp {
            error: OfpError::HelloFailed(HelloFailedCode::Eperm),
            data: b"no".to_vec()
        }
    );
}

#[tokio::test]
async fn hello_timeout() {
    let (a, _b) = duplex(4096);
    let cfg = Config {
        hello_timeout: Duration::from_millis(50),
        ..cfg()
    };
    assert_eq!(
        Connection::accept(a, &cfg).await.unwrap_err(),
        ConnError::HelloTimeout
    );
}

#[tokio::test]
async fn echo_request_is_answered() {
    let (mut conn, mut peer) = pair().await;
    peer.send(&frame(raw::OFPT_ECHO_REQUEST, 0x77, b"ping"))
        .await;
    assert_eq!(
        peer.recv().await.unwrap(),
        frame(raw::OFPT_ECHO_REPLY, 0x77, b"ping")
    );
    // Echo requests are not surfaced as incoming messages.
    assert!(conn.incoming.try_recv().is_none());
}

const PROBE: Duration = Duration::from_millis(200);

#[tokio::test]
async fn keepalive_probes_then_times_out() {
    let cfg = Config {
        probe_interval: Some(PROBE),
        ..Config::default()
    };
    let (conn, mut peer) = pair_with(cfg).await;
    let t0 = Instant::now();
    // Idle: a probe arrives after the interval; answering keeps the connection.
    let probe = peer.recv().await.unwrap();
    assert_eq!(probe[1], raw::OFPT_ECHO_REQUEST);
    assert!(t0.elapsed() >= PROBE);
    peer.send(&frame(raw::OFPT_ECHO_REPLY, xid_of(&probe), &[]))
        .await;
    let probe2 = peer.recv().await.unwrap();
    assert_eq!(probe2[1], raw::OFPT_ECHO_REQUEST);
    assert_ne!(xid_of(&probe), xid_of(&probe2));
    assert!(!conn.handle.is_closed());
    // Unanswered: closed one probe timeout later.
    let t1 = Instant::now();
    assert_eq!(conn.handle.closed().await, ConnError::ProbeTimeout);
    assert!(t1.elapsed() >= PROBE);
    assert_eq!(peer.recv().await, None);
}

#[tokio::test]
async fn any_traffic_defers_probe() {
    let cfg = Config {
        probe_interval: Some(PROBE),
        ..Config::default()
    };
    let (mut conn, mut peer) = pair_with(cfg).await;
    let mut last = Instant::now();
    for _ in 0..4 {
        tokio::time::sleep(PROBE / 2).await;
        peer.send(&frame(raw::OFPT_BARRIER_REPLY, 9, &[])).await;
        last = Instant::now();
        assert!(conn.incoming.recv().await.is_some());
    }
    // Traffic every half interval: the first probe comes one interval after
    // the last received frame, not one interval after the handshake.
    let probe = peer.recv().await.unwrap();
    assert_eq!(probe[1], raw::OFPT_ECHO_REQUEST);
    assert!(last.elapsed() >= PROBE);
}

#[tokio::test]
async fn requests_match_out_of_order_replies() {
    let (conn, mut peer) = pair().await;
    let r1 = conn.handle.request(&echo_req(b"one"));
    let r2 = conn.handle.request(&echo_req(b"two"));
    let f1 = peer.recv().await.unwrap();
    let f2 = peer.recv().await.unwrap();
    assert_eq!((xid_of(&f1), xid_of(&f2)), (r1.xid(), r2.xid()));
    assert_ne!(r1.xid(), r2.xid());
    assert_eq!(&f1[8..], b"one");
    // Answer in reverse order.
    peer.send(&frame(raw::OFPT_ECHO_REPLY, xid_of(&f2), b"TWO"))
        .await;
    peer.send(&frame(raw::OFPT_ECHO_REPLY, xid_of(&f1), b"ONE"))
        .await;
    assert_echo_reply(r1.await.unwrap(), b"ONE");
    assert_echo_reply(r2.await.unwrap(), b"TWO");
}

fn mp_reply(xid: u32, more: bool, n: u8) -> Vec<u8> {
    // ofp_multipart_reply: type OFPMP_FLOW (1), flags, pad, then a body byte.
    frame(
        raw::OFPT_MULTIPART_REPLY,
        xid,
        &[0, 1, 0, more as u8, 0, 0, 0, 0, n],
    )
}

#[tokio::test]
async fn multipart_reassembles_three_parts() {
    let (mut conn, mut peer) = pair().await;
    // OFPT_MULTIPART_REQUEST, OFPMP_FLOW, empty body (framing is what matters here).
    let req = frame(18, 0, &[0, 1, 0, 0, 0, 0, 0, 0]);
    let r = conn.handle.multipart_raw(req);
    let f = peer.recv().await.unwrap();
    let x = xid_of(&f);
    assert_eq!(x, r.xid());
    // An unrelated message in between goes to incoming, not into the reply.
    peer.send(&mp_reply(x, true, 1)).await;
    peer.send(&frame(raw::OFPT_BARRIER_REPLY, x.wrapping_add(100), &[]))
        .await;
    peer.send(&mp_reply(x, true, 2)).await;
    peer.send(&mp_reply(x, false, 3)).await;
    let parts = r.await.unwrap();
    assert_eq!(
        parts,
        vec![
            mp_reply(x, true, 1),
            mp_reply(x, true, 2),
            mp_reply(x, false, 3)
        ]
    );
    let (ix, m) = conn.incoming.recv().await.unwrap();
    assert_eq!(ix, x.wrapping_add(100));
    assert!(matches!(m, Ok(Message::BarrierReply)));
}

#[tokio::test]
async fn multipart_single_frame_reply_and_error() {
    let (conn, mut peer) = pair().await;
    let r = conn
        .handle
        .multipart_raw(frame(18, 0, &[0, 1, 0, 0, 0, 0, 0, 0]));
    let x = xid_of(&peer.recv().await.unwrap());
    peer.send(&mp_reply(x, true, 1)).await;
    let e = raw::error(
        4,
        x,
        OfpError::BadRequest(BadRequestCode::MultipartBufferOverflow),
        &[],
    );
    peer.send(&e).await;
    assert_eq!(
        r.await.unwrap_err(),
        ConnError::Ofp {
            error: OfpError::BadRequest(BadRequestCode::MultipartBufferOverflow),
            data: vec![]
        }
    );
}

#[tokio::test]
async fn error_reply_resolves_the_right_request() {
    let (mut conn, mut peer) = pair().await;
    let r1 = conn.handle.request(&echo_req(b"a"));
    let r2 = conn.handle.request(&echo_req(b"b"));
    let f1 = peer.recv().await.unwrap();
    let f2 = peer.recv().await.unwrap();
    let err = OfpError::BadRequest(BadRequestCode::BadType);
    peer.send(&raw::error(4, xid_of(&f2), err, &f2)).await;
    peer.send(&frame(raw::OFPT_ECHO_REPLY, xid_of(&f1), b"a"))
        .await;
    assert_eq!(
        r2.await.unwrap_err(),
        ConnError::Ofp {
            error: err,
            data: f2.clone()
        }
    );
    assert_echo_reply(r1.await.unwrap(), b"a");
    // An error for an xid nobody waits for is unsolicited.
    peer.send(&raw::error(4, 4242, err, &[])).await;
    let (x, _) = conn.incoming.recv().await.unwrap();
    assert_eq!(x, 4242);
}

#[tokio::test]
async fn barrier_confirms_earlier_messages() {
    let (conn, mut peer) = pair().await;
    let h = &conn.handle;
    // Stand-ins for flow-mods: messages without replies.
    let ok = h.send_checked(&Message::BarrierReply);
    let bad = h.send_checked(&Message::BarrierReply);
    let b = h.barrier();
    let later = h.send_checked(&Message::BarrierReply);
    let f_ok = peer.recv().await.unwrap();
    let f_bad = peer.recv().await.unwrap();
    let f_b = peer.recv().await.unwrap();
    let f_later = peer.recv().await.unwrap();
    // Wire order is call order, xids increase.
    assert_eq!(f_b[1], raw::OFPT_BARRIER_REQUEST);
    assert!(xid_of(&f_ok) < xid_of(&f_bad) && xid_of(&f_bad) < xid_of(&f_b));
    assert_eq!(xid_of(&f_later), later.xid());
    let err = OfpError::from_type_code(5, 1);
    peer.send(&raw::error(4, xid_of(&f_bad), err, &f_bad)).await;
    peer.send(&frame(raw::OFPT_BARRIER_REPLY, xid_of(&f_b), &[]))
        .await;
    b.await.unwrap();
    assert_eq!(ok.await, Ok(()));
    assert!(matches!(bad.await, Err(ConnError::Ofp { error, .. }) if error == err));
    // The message sent after the barrier is not confirmed by it.
    let mut later = later;
    assert!(futures_poll_once(&mut later).is_none());
    let b2 = h.barrier();
    let f_b2 = peer.recv().await.unwrap();
    peer.send(&frame(raw::OFPT_BARRIER_REPLY, xid_of(&f_b2), &[]))
        .await;
    b2.await.unwrap();
    assert_eq!(later.await, Ok(()));
}

/// Polls a future once with a no-op waker.
fn futures_poll_once<F: Future + Unpin>(f: &mut F) -> Option<F::Output> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match Pin::new(f).poll(&mut cx) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

#[tokio::test]
async fn undecodable_frame_is_reported_and_connection_continues() {
    let (mut conn, mut peer) = pair().await;
    let bad = frame(99, 5, &[1, 2, 3]);
    peer.send(&bad).await;
    peer.send(&frame(raw::OFPT_ECHO_REQUEST, 6, b"x")).await;
    let (x, r) = conn.incoming.recv().await.unwrap();
    assert_eq!(x, 5);
    let failure = r.unwrap_err();
    assert_eq!(failure.xid, 5);
    assert_eq!(failure.raw, bad);
    assert_eq!(failure.error, DecodeError::UnknownType(99));
    // The switch side answers with the mapped OFPT_ERROR...
    conn.handle.reply_error(&failure).unwrap();
    // ...the echo after the bad frame was answered, and so on.
    assert_eq!(
        peer.recv().await.unwrap(),
        frame(raw::OFPT_ECHO_REPLY, 6, b"x")
    );
    let e = peer.recv().await.unwrap();
    assert_eq!(
        e,
        raw::error(4, 5, OfpError::BadRequest(BadRequestCode::BadType), &bad)
    );
    assert!(!conn.handle.is_closed());
    let r = conn.handle.request(&echo_req(b"still"));
    let f = peer.recv().await.unwrap();
    peer.send(&frame(raw::OFPT_ECHO_REPLY, xid_of(&f), b"up"))
        .await;
    assert_echo_reply(r.await.unwrap(), b"up");
}

#[tokio::test]
async fn framing_corruption_closes() {
    let (mut conn, mut peer) = pair().await;
    let pending = conn.handle.request(&echo_req(b""));
    peer.recv().await.unwrap();
    // A good frame, then a header claiming 4 bytes.
    peer.send(&frame(raw::OFPT_BARRIER_REPLY, 1000, &[])).await;
    peer.send(&[4, 0, 0, 4, 0, 0, 0, 1]).await;
    assert_eq!(conn.incoming.recv().await.unwrap().0, 1000);
    assert!(conn.incoming.recv().await.is_none());
    assert!(matches!(
        conn.handle.closed().await,
        ConnError::Framing(DecodeError::BadLength { .. })
    ));
    assert_eq!(pending.await.err(), Some(ConnError::ConnectionClosed));
    assert_eq!(peer.recv().await, None);
    assert_eq!(
        conn.handle.send(&Message::BarrierRequest),
        Err(ConnError::ConnectionClosed)
    );
}

#[tokio::test]
async fn close_flushes_and_wakes_pending() {
    let (mut conn, mut peer) = pair().await;
    let r = conn.handle.request(&echo_req(b"never answered"));
    let b = conn.handle.barrier();
    for i in 0..50u8 {
        conn.handle.send(&echo_req(&[i])).unwrap();
    }
    conn.handle.close().await;
    assert_eq!(r.await.err(), Some(ConnError::ConnectionClosed));
    assert_eq!(b.await, Err(ConnError::ConnectionClosed));
    assert_eq!(conn.handle.closed().await, ConnError::ConnectionClosed);
    // Everything queued before close() was written, then EOF.
    let mut n = 0;
    while let Some(_f) = peer.recv().await {
        n += 1;
    }
    assert_eq!(n, 52);
    assert!(conn.incoming.recv().await.is_none());
    // Requests after close fail immediately.
    assert_eq!(
        conn.handle.request(&echo_req(b"")).await.err(),
        Some(ConnError::ConnectionClosed)
    );
}

#[tokio::test]
async fn dropping_handles_closes() {
    let (conn, mut peer) = pair().await;
    let Connection {
        handle,
        mut incoming,
        ..
    } = conn;
    let h2 = handle.clone();
    let weak = Arc::downgrade(&handle.shared);
    drop(handle);
    assert!(!h2.is_closed());
    drop(h2);
    assert_eq!(peer.recv().await, None);
    assert!(incoming.recv().await.is_none());
    // Both tasks exit and release the shared state.
    for _ in 0..100 {
        if weak.strong_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(weak.strong_count(), 0, "connection tasks leaked");
}

#[tokio::test]
async fn peer_eof_closes() {
    let (mut conn, mut peer) = pair().await;
    let r = conn.handle.request(&echo_req(b""));
    peer.recv().await.unwrap();
    drop(peer);
    assert_eq!(r.await.err(), Some(ConnError::ConnectionClosed));
    assert_eq!(conn.handle.closed().await, ConnError::PeerClosed);
    assert!(conn.incoming.recv().await.is_none());
}

#[tokio::test]
async fn dropped_reply_future_discards_reply() {
    let (mut conn, mut peer) = pair().await;
    let r = conn.handle.request(&echo_req(b""));
    let x = r.xid();
    drop(r);
    peer.recv().await.unwrap();
    peer.send(&frame(raw::OFPT_BARRIER_REPLY, x, &[])).await;
    // Nobody waits for the xid any more: it is delivered as unsolicited.
    let (ix, m) = conn.incoming.recv().await.unwrap();
    assert_eq!(ix, x);
    assert!(matches!(m, Ok(Message::BarrierReply)));
}

/// Counts write calls to check that bursts are batched.
struct CountingStream {
    inner: DuplexStream,
    writes: Arc<std::sync::atomic::AtomicUsize>,
}

impl AsyncRead for CountingStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountingStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn writes_are_batched_per_burst() {
    let (a, b) = duplex(1 << 20);
    let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut peer = Peer {
        s: b,
        buf: BytesMut::new(),
    };
    peer.send(&OF13_HELLO).await;
    let s = CountingStream {
        inner: a,
        writes: writes.clone(),
    };
    let conn = Connection::accept(s, &cfg()).await.unwrap();
    peer.recv().await.unwrap();
    let before = writes.load(std::sync::atomic::Ordering::SeqCst);
    for i in 0..200u32 {
        conn.handle.send(&echo_req(&i.to_be_bytes())).unwrap();
    }
    for i in 0..200u32 {
        assert_eq!(&peer.recv().await.unwrap()[8..], i.to_be_bytes());
    }
    let n = writes.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert!(n <= 2, "200 queued frames took {n} writes");
}

// --- real transports -------------------------------------------------------

/// Accepts one connection on `l` and serves it: the server side only answers
/// echoes (automatically) and barriers.
async fn serve_one(l: Listener) {
    let (s, _peer) = l.accept().await.unwrap();
    let mut c = Connection::accept(s, &cfg()).await.unwrap();
    while let Some((xid, m)) = c.incoming.recv().await {
        if matches!(m, Ok(Message::BarrierRequest)) {
            c.handle.send_with_xid(&Message::BarrierReply, xid).unwrap();
        }
    }
}

async fn roundtrip(conn: Connection) {
    let r = conn
        .handle
        .request(&echo_req(b"over the wire"))
        .await
        .unwrap();
    assert_echo_reply(r, b"over the wire");
    conn.handle.barrier().await.unwrap();
    conn.handle.close().await;
}

#[tokio::test]
async fn tcp_loopback() {
    let l = Listener::bind(&"ptcp:0:127.0.0.1".parse().unwrap(), None)
        .await
        .unwrap();
    let target = l.connect_target().to_string();
    assert!(target.starts_with("tcp:127.0.0.1:"));
    let server = tokio::spawn(serve_one(l));
    let conn = Connection::connect(&target, &cfg()).await.unwrap();
    assert_eq!(conn.version, 4);
    roundtrip(conn).await;
    server.await.unwrap();
}

#[tokio::test]
async fn unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("br0.mgmt");
    let l = Listener::bind(&format!("punix:{}", path.display()).parse().unwrap(), None)
        .await
        .unwrap();
    let server = tokio::spawn(serve_one(l));
    let conn = Connection::connect(&format!("unix:{}", path.display()), &cfg())
        .await
        .unwrap();
    roundtrip(conn).await;
    server.await.unwrap();
    // Rebinding over the stale socket file works.
    Listener::bind(&PassiveTarget::Unix(path), None)
        .await
        .unwrap();
}

fn tls_configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

#[tokio::test]
async fn tls_loopback() {
    let (server_cfg, client_cfg) = tls_configs();
    let l = Listener::bind(&"pssl:0:127.0.0.1".parse().unwrap(), Some(server_cfg))
        .await
        .unwrap();
    let target = l.connect_target();
    assert!(matches!(target, Target::Ssl { .. }));
    let server = tokio::spawn(serve_one(l));
    let cfg = Config {
        tls: Some(TlsClient {
            config: client_cfg,
            server_name: Some("localhost".into()),
        }),
        ..cfg()
    };
    let conn = Connection::connect_to(&target, &cfg).await.unwrap();
    roundtrip(conn).await;
    server.await.unwrap();
}

#[tokio::test]
async fn tls_rejects_wrong_name_and_missing_config() {
    let (server_cfg, client_cfg) = tls_configs();
    let l = Listener::bind(&"pssl:0:127.0.0.1".parse().unwrap(), Some(server_cfg))
        .await
        .unwrap();
    let target = l.connect_target();
    let bad = Config {
        tls: Some(TlsClient {
            config: client_cfg,
            server_name: Some("not-localhost".into()),
        }),
        ..cfg()
    };
    assert!(matches!(
        Connection::connect_to(&target, &bad).await,
        Err(ConnError::Io { .. })
    ));
    // The handshake fails on the server side too: counted, not returned.
    let t0 = std::time::Instant::now();
    while l.failed_handshakes() < 1 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "failure not counted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(Connection::connect_to(&target, &cfg()).await.is_err());
}

#[tokio::test]
async fn tls_silent_client_does_not_block_others() {
    // Clients that connect to a pssl: listener and never send a byte must not
    // hold up a real switch behind them: handshakes run off the accept path.
    let (server_cfg, client_cfg) = tls_configs();
    let l = Listener::bind(&"pssl:0:127.0.0.1".parse().unwrap(), Some(server_cfg))
        .await
        .unwrap();
    let target = l.connect_target();
    let Target::Ssl { port, .. } = target else {
        panic!("{target:?}")
    };
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap(),
        );
    }
    let server = tokio::spawn(serve_one(l));
    let cfg = Config {
        tls: Some(TlsClient {
            config: client_cfg,
            server_name: Some("localhost".into()),
        }),
        ..cfg()
    };
    // The inline handshake held each silent client for TLS_ACCEPT_TIMEOUT
    // (10 s) before the next accept; the real client must get through well
    // before the first of them times out.
    let conn = tokio::time::timeout(
        TLS_ACCEPT_TIMEOUT / 2,
        Connection::connect_to(&target, &cfg),
    )
    .await
    .expect("a silent client blocked the listener")
    .unwrap();
    roundtrip(conn).await;
    server.await.unwrap();
    drop(silent);
}

#[tokio::test]
async fn reconnect_retries_with_backoff() {
    // Find a free port, then release it so the first attempts fail.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let target: Target = format!("tcp:127.0.0.1:{port}").parse().unwrap();
    let mut rc = Reconnect::new(target, cfg())
        .with_backoff(Duration::from_millis(10), Duration::from_millis(40));
    // Nothing listens: attempts fail and the backoff grows to its maximum
    // (10 + 20 + 40 ms of waiting fit easily in the 500 ms).
    assert!(
        tokio::time::timeout(Duration::from_millis(500), rc.connect())
            .await
            .is_err()
    );
    assert_eq!(rc.current_backoff(), Duration::from_millis(40));
    let listener = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let l = Listener::bind(&format!("ptcp:{port}:127.0.0.1").parse().unwrap(), None)
            .await
            .unwrap();
        for _ in 0..2 {
            let (s, _) = l.accept().await.unwrap();
            let c = Connection::accept(s, &cfg()).await.unwrap();
            c.handle.close().await;
        }
    });
    let c = tokio::time::timeout(Duration::from_secs(10), rc.connect())
        .await
        .unwrap();
    assert_eq!(
        rc.current_backoff(),
        Duration::from_millis(40),
        "backoff grew to max"
    );
    assert_eq!(c.handle.closed().await, ConnError::PeerClosed);
    // Second connection (the first one died young, so it waits a backoff first).
    let c2 = tokio::time::timeout(Duration::from_secs(10), rc.connect())
        .await
        .unwrap();
    assert_eq!(c2.version, 4);
    listener.await.unwrap();
}

#[tokio::test]
async fn decoded_multipart_and_undecodable_reply() {
    let (conn, mut peer) = pair().await;
    // A non-multipart reply ends a multipart request after one part.
    let r = conn.handle.multipart(&echo_req(b"m"));
    let f = peer.recv().await.unwrap();
    peer.send(&frame(raw::OFPT_ECHO_REPLY, xid_of(&f), b"m"))
        .await;
    let parts = r.await.unwrap();
    assert_eq!(parts.len(), 1);
    assert!(matches!(&parts[0], Message::EchoReply(d) if d == b"m"));
    // A reply that does not decode fails the request, not the connection.
    let r = conn.handle.request(&echo_req(b""));
    let f = peer.recv().await.unwrap();
    let bad = frame(99, xid_of(&f), &[7]);
    peer.send(&bad).await;
    match r.await {
        Err(ConnError::Decode(d)) => {
            assert_eq!(d.raw, bad);
            assert_eq!(d.error, DecodeError::UnknownType(99));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!conn.handle.is_closed());
}

#[tokio::test]
async fn send_raw_rejects_bad_frames() {
    let (conn, mut peer) = pair().await;
    let h = &conn.handle;
    assert_eq!(h.send_raw(vec![4, 0, 0]), Err(ConnError::BadFrame));
    assert_eq!(
        h.send_raw(vec![4, 0, 0, 16, 0, 0, 0, 1]),
        Err(ConnError::BadFrame)
    );
    assert_eq!(
        h.send_raw(vec![4, 0, 0, 4, 0, 0, 0, 1]),
        Err(ConnError::BadFrame)
    );
    h.send_raw(frame(raw::OFPT_BARRIER_REQUEST, 0xabcd, &[]))
        .unwrap();
    assert_eq!(
        peer.recv().await.unwrap(),
        frame(raw::OFPT_BARRIER_REQUEST, 0xabcd, &[])
    );
}

/// Regression: a bundle-add's inner message must carry the outer xid (the
/// one assigned here), or OVS answers every add with ONFBFC_MSG_BAD_XID.
#[tokio::test]
async fn bundle_add_inner_message_gets_the_outer_xid() {
    use crate::message::{BundleAdd, bundle_flags};
    let (conn, mut peer) = pair().await;
    let _ = conn.handle.send(&Message::EchoRequest(Vec::new())).unwrap();
    let add = Message::BundleAdd(BundleAdd {
        bundle_id: 7,
        flags: bundle_flags::ATOMIC,
        message: Box::new(Message::FlowMod(crate::message::FlowMod::add(
            crate::oxm::Match::new(),
            Vec::new(),
        ))),
        properties: Vec::new(),
    });
    let r = conn.handle.send_checked(&add);
    let _ = peer.recv().await.unwrap();
    let f = peer.recv().await.unwrap();
    assert_eq!(xid_of(&f), r.xid());
    assert_eq!(xid_of(&f[24..]), r.xid(), "inner xid");
    let (xid, m) = Message::decode(&f).unwrap();
    assert_eq!(xid, r.xid());
    assert!(matches!(m, Message::BundleAdd(_)));
}
