//! tokio connection layer shared by the controller and the switch.
//!
//! # Shape
//!
//! - [`Connection::connect`] opens a [`Target`] (`tcp:`, `unix:`, `ssl:`) and
//!   [`Connection::accept`] takes any already-connected stream (for example
//!   one returned by [`Listener::accept`] for `ptcp:`/`punix:`/`pssl:`). Both
//!   run the HELLO handshake and return a [`Connection`]: a cloneable
//!   [`ConnHandle`], the [`Incoming`] receiver and the negotiated version.
//! - [`ConnHandle`] sends messages and correlates replies by xid:
//!   [`ConnHandle::request`], [`ConnHandle::multipart`] (collects replies
//!   while `OFPMPF_REPLY_MORE` is set), [`ConnHandle::barrier`],
//!   [`ConnHandle::send_checked`] (a message that only answers with errors;
//!   resolves at the next barrier reply), and `_raw` variants working on whole
//!   frames. Requests are queued when the method is *called* (not when the
//!   returned [`Reply`] is first polled), so the wire order is the call order.
//!   An OFPT_ERROR carrying a request's xid resolves it with
//!   [`ConnError::Ofp`].
//! - [`Incoming`] yields every frame that is not a reply to a pending request:
//!   `(xid, Ok(Message))`, or `(xid, Err(DecodeFailure))` when the frame is
//!   well framed but does not decode (the connection stays up; a switch
//!   answers with [`ConnHandle::reply_error`]). Echo requests are answered
//!   automatically, HELLOs after the handshake and echo replies that match no
//!   request are consumed.
//!
//! # Lifecycle
//!
//! Two tasks per connection: a reader (framing, correlation, echo, keepalive)
//! and a writer (batches every frame queued since its last write into one
//! write and one flush). The connection closes on [`ConnHandle::close`]
//! (flushes queued frames first), when the last [`ConnHandle`] clone is
//! dropped, on EOF or I/O error, on framing corruption (a header length < 8),
//! and when an echo probe goes unanswered (see [`Config::probe_interval`]).
//! Closing wakes every pending request with [`ConnError::ConnectionClosed`],
//! ends [`Incoming`], and both tasks exit; [`ConnHandle::closed`] reports why.
//!
//! The incoming queue is unbounded so that a consumer awaiting a reply can
//! never deadlock the reader; consumers are expected to drain it.
//!
//! Not handled here: reassembly of *incoming* multipart requests that use
//! `OFPMPF_REQ_MORE` (each part is delivered on [`Incoming`] as is), and
//! rewriting the version byte of user messages ([`Message::encode`] writes
//! OpenFlow 1.3; offering other versions in [`Config::versions`] only affects
//! negotiation).
//!
//! # Example
//!
//! ```no_run
//! # async fn run() -> Result<(), plexus_openflow::conn::ConnError> {
//! use plexus_openflow::Message;
//! use plexus_openflow::conn::{Config, Connection, Listener};
//!
//! // Controller side: listen, accept, talk.
//! let l = Listener::bind(&"ptcp:6653".parse()?, None).await?;
//! let (stream, _peer) = l.accept().await?;
//! let Connection { handle, mut incoming, .. } = Connection::accept(stream, &Config::default()).await?;
//! let _reply = handle.request(&Message::EchoRequest(b"hi".to_vec())).await?;
//! handle.barrier().await?;
//! while let Some((xid, msg)) = incoming.recv().await {
//!     match msg {
//!         Ok(_m) => { /* packet-in, port-status, ... */ }
//!         Err(bad) => handle.reply_error(&bad)?, // answer with OFPT_ERROR, keep going
//!     }
//!     let _ = xid;
//! }
//! # Ok(()) }
//! ```

mod raw;
mod reconnect;
#[cfg(test)]
mod tests;
mod transport;

pub use raw::{
    ERROR_DATA_MAX, PeerHello, error as error_frame, hello as hello_frame, negotiate,
    parse_error as parse_error_frame, version_bitmap,
};
pub use reconnect::Reconnect;
pub use transport::{
    AsyncStream, DEFAULT_PORT, Listener, PassiveTarget, Stream, TLS_ACCEPT_TIMEOUT, Target,
    TlsClient, connect_stream,
};

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::error::{DecodeError, HelloFailedCode, OfpError};
use crate::message::Message;
use crate::wire::{Frame, OFP_HEADER_LEN, frame as split_frame};

/// Connection settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Wire versions offered in HELLO (default: OpenFlow 1.3 only, `[0x04]`).
    pub versions: Vec<u8>,
    /// Send an echo request after this long without receiving anything
    /// (OVS's `inactivity_probe`); `None` disables probing. Default 5 s.
    pub probe_interval: Option<Duration>,
    /// Close when nothing arrives this long after a probe was sent
    /// (default: `probe_interval`).
    pub probe_timeout: Option<Duration>,
    /// Deadline for the peer's HELLO. Default 10 s.
    pub hello_timeout: Duration,
    /// How long closing may wait for queued frames to be written. Default 5 s.
    pub close_timeout: Duration,
    /// TLS client settings for `ssl:` targets.
    pub tls: Option<TlsClient>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            versions: vec![crate::wire::OFP_VERSION],
            probe_interval: Some(Duration::from_secs(5)),
            probe_timeout: None,
            hello_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            tls: None,
        }
    }
}

/// A frame that was framed correctly but failed to decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeFailure {
    pub xid: u32,
    /// The whole frame, header included.
    pub raw: Vec<u8>,
    pub error: DecodeError,
}

impl DecodeFailure {
    /// The OFPT_ERROR type/code a switch answers this frame with.
    pub fn ofp_error(&self) -> OfpError {
        self.error.ofp_error()
    }
}

impl std::fmt::Display for DecodeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "xid {:#x}: {}", self.xid, self.error)
    }
}

/// Why an operation failed or a connection closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnError {
    /// The connection is closed (locally, or for a reason [`ConnHandle::closed`] reports).
    #[error("connection closed")]
    ConnectionClosed,
    /// The peer closed the connection.
    #[error("connection closed by peer")]
    PeerClosed,
    /// The peer answered with OFPT_ERROR (to a request, or instead of HELLO).
    #[error("peer replied with error {error}")]
    Ofp { error: OfpError, data: Vec<u8> },
    /// A reply arrived but does not decode.
    #[error("reply does not decode: {0}")]
    Decode(Box<DecodeFailure>),
    /// No common version; OFPT_ERROR HELLO_FAILED/INCOMPATIBLE was sent.
    #[error("no common OpenFlow version: we support {}, peer supports {}", raw::describe(*ours), raw::describe(*theirs))]
    Incompatible { ours: u32, theirs: u32 },
    /// Any other handshake failure (first message not a HELLO, no versions configured).
    #[error("handshake failed: {0}")]
    Handshake(String),
    #[error("timed out waiting for the peer's HELLO")]
    HelloTimeout,
    /// Framing corruption (header length < 8): the stream cannot be resynced.
    #[error("framing error: {0}")]
    Framing(DecodeError),
    /// An echo probe went unanswered.
    #[error("inactivity probe timed out")]
    ProbeTimeout,
    #[error("I/O error: {msg}")]
    Io { kind: io::ErrorKind, msg: String },
    /// A frame handed to a `_raw` method is not one whole frame.
    #[error("not a single OpenFlow frame")]
    BadFrame,
    #[error("bad target: {0}")]
    Target(#[from] crate::text::ParseError),
}

impl From<io::Error> for ConnError {
    fn from(e: io::Error) -> Self {
        ConnError::Io {
            kind: e.kind(),
            msg: e.to_string(),
        }
    }
}

/// One item from [`Incoming`]: the xid and the decoded message or the failure.
pub type Event = (u32, Result<Message, DecodeFailure>);

/// An established connection.
#[derive(Debug)]
pub struct Connection {
    pub handle: ConnHandle,
    pub incoming: Incoming,
    /// The negotiated wire version.
    pub version: u8,
}

impl Connection {
    /// Connects to an OVS-style target (`tcp:IP:PORT`, `unix:PATH`, `ssl:IP:PORT`)
    /// and runs the handshake.
    pub async fn connect(target: &str, cfg: &Config) -> Result<Connection, ConnError> {
        let t: Target = target.parse()?;
        Self::connect_to(&t, cfg).await
    }

    /// Like [`Connection::connect`] with a parsed target.
    pub async fn connect_to(target: &Target, cfg: &Config) -> Result<Connection, ConnError> {
        let s = tokio::time::timeout(cfg.hello_timeout, connect_stream(target, cfg.tls.as_ref()))
            .await
            .map_err(|_| ConnError::Io {
                kind: io::ErrorKind::TimedOut,
                msg: format!("connecting to {target} timed out"),
            })??;
        Self::accept(s, cfg).await
    }

    /// Runs the handshake over an already-connected stream (either side) and
    /// starts the connection's tasks. Must be called within a tokio runtime.
    pub async fn accept<S: AsyncStream>(
        mut stream: S,
        cfg: &Config,
    ) -> Result<Connection, ConnError> {
        let (version, buf) = handshake(&mut stream, cfg).await?;
        let (rd, wr) = tokio::io::split(stream);
        let (wtx, wrx) = mpsc::unbounded_channel();
        let (itx, irx) = mpsc::unbounded_channel();
        let (closed_tx, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            version,
            state: Mutex::new(State {
                next_xid: 1,
                seq: 0,
                pending: HashMap::new(),
                writer: Some(wtx),
            }),
            closed: closed_tx,
        });
        tokio::spawn(writer_task(wr, wrx, shared.clone(), cfg.close_timeout));
        let probe = cfg
            .probe_interval
            .map(|i| (i, cfg.probe_timeout.unwrap_or(i)));
        tokio::spawn(reader_task(rd, buf, shared.clone(), itx, probe));
        Ok(Connection {
            handle: ConnHandle {
                _guard: Arc::new(DropGuard(shared.clone())),
                shared,
            },
            incoming: Incoming { rx: irx },
            version,
        })
    }
}

/// Unsolicited messages (and frames that failed to decode), in arrival order.
/// Ends (`None`) once the connection is closed and everything was received.
#[derive(Debug)]
pub struct Incoming {
    rx: mpsc::UnboundedReceiver<Event>,
}

impl Incoming {
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

// ---------------------------------------------------------------------------
// Shared state

enum WriteCmd {
    Frame(Vec<u8>),
    Close(oneshot::Sender<()>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Resolves with the first frame carrying the xid.
    One,
    /// Collects frames while the multipart REPLY_MORE flag is set.
    Multi,
    /// Resolves with the BARRIER_REPLY; completes earlier `Checked` entries.
    Barrier,
    /// Resolves `Ok` at a later barrier reply, or with the error sent for it.
    Checked,
}

type Frames = Vec<Vec<u8>>;
type ReplyRx = oneshot::Receiver<Result<Frames, ConnError>>;

struct Pending {
    seq: u64,
    kind: Kind,
    parts: Frames,
    tx: oneshot::Sender<Result<Frames, ConnError>>,
}

struct State {
    next_xid: u32,
    seq: u64,
    pending: HashMap<u32, Pending>,
    /// `None` once closed.
    writer: Option<mpsc::UnboundedSender<WriteCmd>>,
}

impl State {
    fn alloc_xid(&mut self) -> u32 {
        loop {
            let x = self.next_xid;
            self.next_xid = self.next_xid.wrapping_add(1).max(1);
            if !self.pending.contains_key(&x) {
                return x;
            }
        }
    }
}

struct Shared {
    version: u8,
    state: Mutex<State>,
    closed: watch::Sender<Option<ConnError>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `frame` (xid patched in unless `xid` is given), registering a
    /// waiter under the same lock so wire order equals xid/seq order.
    fn submit(
        &self,
        mut frame: Vec<u8>,
        xid: Option<u32>,
        kind: Option<Kind>,
    ) -> Result<(u32, u64, Option<ReplyRx>), ConnError> {
        if !matches!(split_frame(&frame), Ok(Frame::Complete(n)) if n == frame.len()) {
            return Err(ConnError::BadFrame);
        }
        let mut st = self.lock();
        if st.writer.is_none() {
            return Err(ConnError::ConnectionClosed);
        }
        let xid = match xid {
            Some(x) => x,
            None => st.alloc_xid(),
        };
        frame[4..8].copy_from_slice(&xid.to_be_bytes());
        patch_bundle_inner_xid(&mut frame, xid);
        st.seq += 1;
        let seq = st.seq;
        let rx = kind.map(|kind| {
            let (tx, rx) = oneshot::channel();
            let p = Pending {
                seq,
                kind,
                parts: Vec::new(),
                tx,
            };
            if let Some(old) = st.pending.insert(xid, p) {
                let _ = old.tx.send(Err(ConnError::ConnectionClosed));
            }
            rx
        });
        if let Some(w) = &st.writer {
            let _ = w.send(WriteCmd::Frame(frame));
        }
        Ok((xid, seq, rx))
    }

    /// Closes the connection for `reason` (first reason wins). Returns a
    /// receiver that fires when the writer has flushed and shut down.
    fn shutdown(&self, reason: ConnError) -> Option<oneshot::Receiver<()>> {
        let (pending, writer) = {
            let mut st = self.lock();
            let w = st.writer.take()?;
            (std::mem::take(&mut st.pending), w)
        };
        tracing::debug!(%reason, "openflow connection closing");
        for (_, p) in pending {
            let _ = p.tx.send(Err(ConnError::ConnectionClosed));
        }
        let (ack_tx, ack_rx) = oneshot::channel();
        let _ = writer.send(WriteCmd::Close(ack_tx));
        self.closed.send_replace(Some(reason));
        Some(ack_rx)
    }

    fn is_closed(&self) -> bool {
        self.closed.borrow().is_some()
    }
}

/// An ONF bundle-add message carries its inner message with the *outer*
/// xid (OVS rejects anything else with `ONFBFC_MSG_BAD_XID`); the xid is
/// only known here, so patch the inner header too.
fn patch_bundle_inner_xid(frame: &mut [u8], xid: u32) {
    use crate::message::onft;
    use crate::wire::ONF_VENDOR_ID;
    // ofp_header, experimenter, exp_type, bundle_id, pad, flags, inner ofp_header.
    const INNER: usize = OFP_HEADER_LEN + 16;
    let be32 = |f: &[u8], at: usize| u32::from_be_bytes([f[at], f[at + 1], f[at + 2], f[at + 3]]);
    if frame.len() >= INNER + OFP_HEADER_LEN
        && frame[1] == crate::message::msg_type::EXPERIMENTER
        && be32(frame, 8) == ONF_VENDOR_ID
        && be32(frame, 12) == onft::BUNDLE_ADD_MESSAGE
    {
        frame[INNER + 4..INNER + 8].copy_from_slice(&xid.to_be_bytes());
    }
}

/// Closes the connection when the last [`ConnHandle`] clone is dropped.
struct DropGuard(Arc<Shared>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        let _ = self.0.shutdown(ConnError::ConnectionClosed);
    }
}

// ---------------------------------------------------------------------------
// Handle and reply futures

/// Cloneable handle to a connection. Dropping the last clone closes it.
#[derive(Clone)]
pub struct ConnHandle {
    shared: Arc<Shared>,
    _guard: Arc<DropGuard>,
}

impl std::fmt::Debug for ConnHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnHandle")
            .field("version", &self.shared.version)
            .field("closed", &self.shared.is_closed())
            .finish()
    }
}

fn encode(msg: &Message) -> Vec<u8> {
    let mut v = Vec::new();
    msg.encode(0, &mut v);
    v
}

fn decode_one(frame: &[u8]) -> Result<Message, DecodeFailure> {
    Message::decode(frame)
        .map(|(_, m)| m)
        .map_err(|error| DecodeFailure {
            xid: raw::header(frame).map_or(0, |h| h.xid),
            raw: frame.to_vec(),
            error,
        })
}

fn decode_all(frames: Frames) -> Result<Vec<Message>, ConnError> {
    frames
        .iter()
        .map(|f| decode_one(f).map_err(|e| ConnError::Decode(Box::new(e))))
        .collect()
}

fn first(frames: Frames) -> Result<Vec<u8>, ConnError> {
    frames.into_iter().next().ok_or(ConnError::ConnectionClosed)
}

impl ConnHandle {
    /// The negotiated wire version.
    pub fn version(&self) -> u8 {
        self.shared.version
    }

    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Waits until the connection is closed and returns why.
    pub async fn closed(&self) -> ConnError {
        let mut rx = self.shared.closed.subscribe();
        loop {
            if let Some(r) = rx.borrow_and_update().clone() {
                return r;
            }
            if rx.changed().await.is_err() {
                return ConnError::ConnectionClosed;
            }
        }
    }

    /// Sends `msg` with a fresh xid (returned). Replies, if any, arrive on [`Incoming`].
    pub fn send(&self, msg: &Message) -> Result<u32, ConnError> {
        self.shared
            .submit(encode(msg), None, None)
            .map(|(x, _, _)| x)
    }

    /// Sends `msg` with the given xid (e.g. a reply to a request from the peer).
    pub fn send_with_xid(&self, msg: &Message, xid: u32) -> Result<(), ConnError> {
        self.shared.submit(encode(msg), Some(xid), None).map(|_| ())
    }

    /// Sends one pre-encoded frame as is (its xid is kept).
    pub fn send_raw(&self, frame: Vec<u8>) -> Result<(), ConnError> {
        let xid = raw::header(&frame).ok_or(ConnError::BadFrame)?.xid;
        self.shared.submit(frame, Some(xid), None).map(|_| ())
    }

    /// Sends OFPT_ERROR `err` with `xid`; `data` is the offending frame
    /// (truncated to [`ERROR_DATA_MAX`] bytes).
    pub fn send_error(&self, xid: u32, err: OfpError, data: &[u8]) -> Result<(), ConnError> {
        let f = raw::error(self.shared.version, xid, err, data);
        self.shared.submit(f, Some(xid), None).map(|_| ())
    }

    /// Answers a frame that failed to decode with the OFPT_ERROR its error maps to.
    pub fn reply_error(&self, failure: &DecodeFailure) -> Result<(), ConnError> {
        self.send_error(failure.xid, failure.ofp_error(), &failure.raw)
    }

    fn register<T>(
        &self,
        frame: Vec<u8>,
        kind: Kind,
        map: fn(Frames) -> Result<T, ConnError>,
    ) -> Reply<T> {
        match self.shared.submit(frame, None, Some(kind)) {
            Ok((xid, seq, Some(rx))) => Reply {
                xid,
                inner: Ok((
                    rx,
                    Cancel {
                        shared: self.shared.clone(),
                        xid,
                        seq,
                        armed: true,
                    },
                )),
                map,
            },
            Ok(_) => Reply::failed(ConnError::ConnectionClosed, map),
            Err(e) => Reply::failed(e, map),
        }
    }

    /// Sends `msg` and resolves with the first message carrying its xid (an
    /// OFPT_ERROR resolves with [`ConnError::Ofp`]). Use
    /// [`ConnHandle::multipart`] for multipart requests.
    pub fn request(&self, msg: &Message) -> Reply<Message> {
        self.register(encode(msg), Kind::One, |f| {
            decode_one(&first(f)?).map_err(|e| ConnError::Decode(Box::new(e)))
        })
    }

    /// Sends a multipart request and resolves with every reply part (all
    /// frames up to the one without `OFPMPF_REPLY_MORE`), in order.
    pub fn multipart(&self, msg: &Message) -> Reply<Vec<Message>> {
        self.register(encode(msg), Kind::Multi, decode_all)
    }

    /// Like [`ConnHandle::request`] on whole frames (the xid is assigned here).
    pub fn request_raw(&self, frame: Vec<u8>) -> Reply<Vec<u8>> {
        self.register(frame, Kind::One, first)
    }

    /// Like [`ConnHandle::multipart`] on whole frames (the xid is assigned here).
    pub fn multipart_raw(&self, frame: Vec<u8>) -> Reply<Vec<Vec<u8>>> {
        self.register(frame, Kind::Multi, Ok)
    }

    /// Sends OFPT_BARRIER_REQUEST; resolves when its reply arrives, i.e. once
    /// the peer has processed everything sent before it.
    pub fn barrier(&self) -> Reply<()> {
        let f = raw::build(self.shared.version, raw::OFPT_BARRIER_REQUEST, 0, &[]);
        self.register(f, Kind::Barrier, |_| Ok(()))
    }

    /// Sends a message that produces no reply unless it fails (flow-mod,
    /// group-mod, ...). Resolves `Err(ConnError::Ofp)` if the peer sends an
    /// error for it, `Ok(())` when the reply to a *later* [`ConnHandle::barrier`]
    /// arrives without one. It never resolves `Ok` without a later barrier.
    pub fn send_checked(&self, msg: &Message) -> Reply<()> {
        self.register(encode(msg), Kind::Checked, |_| Ok(()))
    }

    /// Flushes queued frames, closes the connection and wakes pending requests
    /// with [`ConnError::ConnectionClosed`]. Returns once the writer is done
    /// (or immediately if the connection was already closed).
    pub async fn close(&self) {
        if let Some(ack) = self.shared.shutdown(ConnError::ConnectionClosed) {
            let _ = ack.await;
        }
    }
}

/// Removes a request's waiter when its [`Reply`] is dropped unresolved.
struct Cancel {
    shared: Arc<Shared>,
    xid: u32,
    seq: u64,
    armed: bool,
}

impl Drop for Cancel {
    fn drop(&mut self) {
        if self.armed {
            let mut st = self.shared.lock();
            if st.pending.get(&self.xid).is_some_and(|p| p.seq == self.seq) {
                st.pending.remove(&self.xid);
            }
        }
    }
}

/// The reply to a request: a future. The request was already queued when the
/// `Reply` was created; dropping it forgets the reply (it is then discarded).
#[must_use = "the reply future resolves the request; drop it to ignore the reply"]
pub struct Reply<T> {
    xid: u32,
    inner: Result<(ReplyRx, Cancel), Option<ConnError>>,
    map: fn(Frames) -> Result<T, ConnError>,
}

impl<T> std::fmt::Debug for Reply<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply").field("xid", &self.xid).finish()
    }
}

impl<T> Reply<T> {
    fn failed(e: ConnError, map: fn(Frames) -> Result<T, ConnError>) -> Self {
        Reply {
            xid: 0,
            inner: Err(Some(e)),
            map,
        }
    }

    /// The xid the request was sent with (0 if it could not be sent).
    pub fn xid(&self) -> u32 {
        self.xid
    }
}

impl<T> Future for Reply<T> {
    type Output = Result<T, ConnError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let map = self.map;
        match &mut self.inner {
            Err(e) => Poll::Ready(Err(e.take().unwrap_or(ConnError::ConnectionClosed))),
            Ok((rx, cancel)) => match Pin::new(rx).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(r) => {
                    cancel.armed = false;
                    Poll::Ready(match r {
                        Ok(Ok(frames)) => map(frames),
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err(ConnError::ConnectionClosed),
                    })
                }
            },
        }
    }
}

// ---------------------------------------------------------------------------
// Handshake

async fn read_frame<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
) -> Result<Vec<u8>, ConnError> {
    loop {
        match split_frame(buf) {
            Err(e) => return Err(ConnError::Framing(e)),
            Ok(Frame::Complete(n)) => return Ok(buf.split_to(n).to_vec()),
            Ok(Frame::Incomplete(_)) => {}
        }
        if s.read_buf(buf).await? == 0 {
            return Err(ConnError::PeerClosed);
        }
    }
}

async fn fail_hello<S: AsyncWrite + Unpin>(s: &mut S, version: u8, text: &str) {
    let e = raw::error(
        version.max(1),
        0,
        OfpError::HelloFailed(HelloFailedCode::Incompatible),
        text.as_bytes(),
    );
    let _ = s.write_all(&e).await;
    let _ = s.flush().await;
    let _ = s.shutdown().await;
}

async fn handshake<S: AsyncStream>(s: &mut S, cfg: &Config) -> Result<(u8, BytesMut), ConnError> {
    let ours = raw::version_bitmap(&cfg.versions);
    if ours & !1 == 0 {
        return Err(ConnError::Handshake(
            "no OpenFlow versions configured".into(),
        ));
    }
    s.write_all(&raw::hello(ours, 0)).await?;
    s.flush().await?;
    let mut buf = BytesMut::with_capacity(4096);
    let f = tokio::time::timeout(cfg.hello_timeout, read_frame(s, &mut buf))
        .await
        .map_err(|_| ConnError::HelloTimeout)??;
    let Some(h) = raw::header(&f) else {
        return Err(ConnError::BadFrame);
    };
    match h.msg_type {
        raw::OFPT_HELLO => {
            let peer = PeerHello::parse(&f).ok_or(ConnError::BadFrame)?;
            match negotiate(ours, &peer) {
                Some(v) => {
                    tracing::debug!(version = v, "openflow version negotiated");
                    Ok((v, buf))
                }
                None => {
                    let theirs = peer.versions();
                    let text = format!(
                        "We support {}, you support {}, no common versions.",
                        raw::describe(ours),
                        raw::describe(theirs)
                    );
                    fail_hello(s, h.version, &text).await;
                    Err(ConnError::Incompatible { ours, theirs })
                }
            }
        }
        raw::OFPT_ERROR => {
            let (error, data) = raw::parse_error(&f).ok_or(ConnError::BadFrame)?;
            Err(ConnError::Ofp { error, data })
        }
        t => {
            let text = format!("Expected OFPT_HELLO, received message of type {t}.");
            fail_hello(s, h.version, &text).await;
            Err(ConnError::Handshake(text))
        }
    }
}

// ---------------------------------------------------------------------------
// Tasks

/// Upper bound of one batched write.
const MAX_BATCH: usize = 256 * 1024;

async fn writer_task<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::UnboundedReceiver<WriteCmd>,
    shared: Arc<Shared>,
    close_timeout: Duration,
) {
    let mut closed_rx = shared.closed.subscribe();
    // Resolves `close_timeout` after the connection was marked closed: bounds
    // how long a stalled peer can keep this task alive.
    let hard_stop = async move {
        while closed_rx.borrow_and_update().is_none() {
            if closed_rx.changed().await.is_err() {
                break;
            }
        }
        tokio::time::sleep(close_timeout).await;
    };
    tokio::pin!(hard_stop);
    let mut buf: Vec<u8> = Vec::new();
    let mut ack = None;
    loop {
        let cmd = tokio::select! {
            c = rx.recv() => c,
            _ = &mut hard_stop => None,
        };
        let Some(cmd) = cmd else { break };
        let mut next = Some(cmd);
        while let Some(cmd) = next.take() {
            match cmd {
                WriteCmd::Frame(f) if buf.is_empty() => buf = f,
                WriteCmd::Frame(f) => buf.extend_from_slice(&f),
                WriteCmd::Close(a) => {
                    ack = Some(a);
                    break;
                }
            }
            if buf.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        let io = async {
            if !buf.is_empty() {
                wr.write_all(&buf).await?;
            }
            wr.flush().await
        };
        let res = tokio::select! {
            r = io => r,
            _ = &mut hard_stop => Err(io::Error::new(io::ErrorKind::TimedOut, "close timed out")),
        };
        buf.clear();
        if let Err(e) = res {
            let _ = shared.shutdown(e.into());
            break;
        }
        if ack.is_some() {
            break;
        }
    }
    let _ = tokio::time::timeout(close_timeout, wr.shutdown()).await;
    if let Some(a) = ack {
        let _ = a.send(());
    }
}

async fn reader_task<R: AsyncRead + Unpin>(
    mut rd: R,
    mut buf: BytesMut,
    shared: Arc<Shared>,
    incoming: mpsc::UnboundedSender<Event>,
    probe: Option<(Duration, Duration)>,
) {
    let mut closed_rx = shared.closed.subscribe();
    let mut last_rx = Instant::now();
    let mut probe_sent: Option<Instant> = None;
    let reason = loop {
        loop {
            match split_frame(&buf) {
                Err(_) => break,
                Ok(Frame::Complete(n)) => {
                    let f = buf.split_to(n);
                    dispatch(&f, &shared, &incoming);
                }
                Ok(Frame::Incomplete(_)) => break,
            }
        }
        if let Err(e) = split_frame(&buf) {
            break ConnError::Framing(e);
        }
        if closed_rx.borrow_and_update().is_some() {
            return;
        }
        let deadline = match (probe, probe_sent) {
            (Some((_, timeout)), Some(sent)) => Some(sent + timeout),
            (Some((interval, _)), None) => Some(last_rx + interval),
            (None, _) => None,
        };
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = closed_rx.changed() => {}
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) => break ConnError::PeerClosed,
                Ok(_) => {
                    last_rx = Instant::now();
                    probe_sent = None;
                }
                Err(e) => break e.into(),
            },
            _ = sleep => {
                if probe_sent.is_some() {
                    break ConnError::ProbeTimeout;
                }
                let f = raw::build(shared.version, raw::OFPT_ECHO_REQUEST, 0, &[]);
                let _ = shared.submit(f, None, None);
                probe_sent = Some(Instant::now());
            }
        }
    };
    let _ = shared.shutdown(reason);
}

/// Handles one complete frame from the peer.
fn dispatch(frame: &[u8], shared: &Shared, incoming: &mpsc::UnboundedSender<Event>) {
    let Some(h) = raw::header(frame) else { return };
    let body = frame.get(OFP_HEADER_LEN..).unwrap_or_default();
    match h.msg_type {
        raw::OFPT_ECHO_REQUEST => {
            let f = raw::build(shared.version, raw::OFPT_ECHO_REPLY, h.xid, body);
            let _ = shared.submit(f, Some(h.xid), None);
            return;
        }
        raw::OFPT_HELLO => return,
        _ => {}
    }
    let mut st = shared.lock();
    let Some(mut p) = st.pending.remove(&h.xid) else {
        drop(st);
        if h.msg_type != raw::OFPT_ECHO_REPLY {
            let _ = incoming.send((h.xid, decode_one(frame)));
        }
        return;
    };
    if h.msg_type == raw::OFPT_ERROR {
        let r = match raw::parse_error(frame) {
            Some((error, data)) => ConnError::Ofp { error, data },
            None => ConnError::Decode(Box::new(DecodeFailure {
                xid: h.xid,
                raw: frame.to_vec(),
                error: DecodeError::Truncated {
                    what: "ofp_error_msg",
                    need: OFP_HEADER_LEN + 4,
                    have: frame.len(),
                },
            })),
        };
        let _ = p.tx.send(Err(r));
        return;
    }
    match p.kind {
        Kind::One => {
            let _ = p.tx.send(Ok(vec![frame.to_vec()]));
        }
        Kind::Multi => {
            p.parts.push(frame.to_vec());
            if raw::reply_more(frame) {
                st.pending.insert(h.xid, p);
            } else {
                let _ = p.tx.send(Ok(p.parts));
            }
        }
        Kind::Barrier if h.msg_type == raw::OFPT_BARRIER_REPLY => {
            let done: Vec<u32> = st
                .pending
                .iter()
                .filter(|(_, q)| q.kind == Kind::Checked && q.seq < p.seq)
                .map(|(x, _)| *x)
                .collect();
            for x in done {
                if let Some(q) = st.pending.remove(&x) {
                    let _ = q.tx.send(Ok(Vec::new()));
                }
            }
            let _ = p.tx.send(Ok(vec![frame.to_vec()]));
        }
        Kind::Barrier | Kind::Checked => {
            // Not the answer this waiter wants: keep waiting, deliver the frame.
            st.pending.insert(h.xid, p);
            drop(st);
            let _ = incoming.send((h.xid, decode_one(frame)));
        }
    }
}
