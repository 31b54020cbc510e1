//! The receive side shared by the vxlan ports of one `local_ip:dst_port`
//! (in one network namespace): one UDP socket, demultiplexed like OVS's
//! tunnel port lookup: a port whose fixed `remote_ip` equals the outer
//! source wins over a `remote_ip=flow` port; the `key` must match (fixed
//! VNI equal, or `flow`). A datagram read by one port but belonging to
//! another is queued for it (bounded; buffers are reused).

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::{Key, Remote};
use crate::flow::TunnelMeta;
use crate::sys;

/// Frames queued per port for delivery by its own `rx_batch`.
const MAX_QUEUED: usize = 256;

/// Datagrams taken per `recvmmsg` (the receive batch).
pub(crate) const RX_BATCH: usize = 64;

/// Receive buffer per datagram: a full inner frame behind the 8-byte VXLAN
/// header. A longer datagram arrives truncated and is dropped (as an inner
/// frame over `FRAME_BUF` always was).
pub(crate) const RX_STRIDE: usize = crate::port::FRAME_BUF + 8;

#[derive(Debug)]
struct Member {
    id: u64,
    remote: Remote,
    key: Key,
    queue: VecDeque<(Vec<u8>, TunnelMeta)>,
}

/// Where a received datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Port(u64),
    /// Some port takes this source but none this VNI.
    UnknownVni,
    /// No port takes this source.
    UnknownRemote,
}

/// One UDP socket and the ports sharing it.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub sock: UdpSocket,
    /// `RX_BATCH` receive buffers of `RX_STRIDE` bytes.
    pub scratch: Box<[u8]>,
    /// The `recvmmsg` state (taken out while a port receives).
    pub rx: Option<sys::udp::UdpBatch>,
    /// Per-datagram results of the last `recvmmsg`.
    pub rx_slots: Vec<sys::udp::Datagram>,
    members: Vec<Member>,
    spare: Vec<Vec<u8>>,
}

type Registry = Vec<((u64, SocketAddrV4), Weak<Mutex<Endpoint>>)>;
static REGISTRY: Mutex<Registry> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn key_ok(k: Key, vni: u32) -> bool {
    match k {
        Key::Fixed(x) => x == vni,
        Key::Flow => true,
    }
}

impl Endpoint {
    /// Joins (or creates) the endpoint for `addr` in the calling thread's
    /// network namespace as port `id`. Two ports with the same remote and
    /// key on one endpoint are ambiguous: refused.
    pub fn join(
        addr: SocketAddrV4,
        id: u64,
        remote: Remote,
        key: Key,
    ) -> io::Result<Arc<Mutex<Endpoint>>> {
        let ns = std::fs::metadata("/proc/thread-self/ns/net").map_or(0, |m| m.ino());
        let mut reg = lock(&REGISTRY);
        reg.retain(|(_, w)| w.strong_count() > 0);
        let found = reg
            .iter()
            .find(|(k, _)| *k == (ns, addr))
            .and_then(|(_, w)| w.upgrade());
        let ep = match found {
            Some(ep) => ep,
            None => {
                let sock = UdpSocket::bind(addr)?;
                sock.set_nonblocking(true)?;
                let _ = sys::setsockopt_int(
                    sock.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    4 << 20,
                );
                let ep = Arc::new(Mutex::new(Endpoint {
                    sock,
                    scratch: vec![0; RX_BATCH * RX_STRIDE].into_boxed_slice(),
                    rx: Some(sys::udp::UdpBatch::new(RX_BATCH)),
                    rx_slots: vec![
                        sys::udp::Datagram {
                            len: 0,
                            src: Ipv4Addr::UNSPECIFIED,
                        };
                        RX_BATCH
                    ],
                    members: Vec::new(),
                    spare: Vec::new(),
                }));
                reg.push(((ns, addr), Arc::downgrade(&ep)));
                ep
            }
        };
        {
            let mut e = lock(&ep);
            if e.members.iter().any(|m| m.remote == remote && m.key == key) {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("another vxlan port on {addr} has the same remote_ip and key"),
                ));
            }
            e.members.push(Member {
                id,
                remote,
                key,
                queue: VecDeque::new(),
            });
        }
        Ok(ep)
    }

    /// Removes port `id` (its queued frames are dropped).
    pub fn leave(&mut self, id: u64) {
        self.members.retain(|m| m.id != id);
    }

    /// The port a datagram from `src` with `vni` belongs to.
    pub fn route(&self, src: Ipv4Addr, vni: u32) -> Route {
        for want in [Remote::Fixed(src), Remote::Flow] {
            if let Some(m) = self
                .members
                .iter()
                .find(|m| m.remote == want && key_ok(m.key, vni))
            {
                return Route::Port(m.id);
            }
        }
        if self
            .members
            .iter()
            .any(|m| m.remote == Remote::Fixed(src) || m.remote == Remote::Flow)
        {
            Route::UnknownVni
        } else {
            Route::UnknownRemote
        }
    }

    /// Queues a copy of `frame` for port `id`; false if its queue is full.
    pub fn enqueue(&mut self, id: u64, frame: &[u8], meta: TunnelMeta) -> bool {
        let mut buf = self.spare.pop().unwrap_or_default();
        let Some(m) = self.members.iter_mut().find(|m| m.id == id) else {
            return false;
        };
        if m.queue.len() >= MAX_QUEUED {
            self.spare.push(buf);
            return false;
        }
        buf.clear();
        buf.extend_from_slice(frame);
        m.queue.push_back((buf, meta));
        true
    }

    /// Takes the next frame queued for port `id`.
    pub fn dequeue(&mut self, id: u64) -> Option<(Vec<u8>, TunnelMeta)> {
        self.members
            .iter_mut()
            .find(|m| m.id == id)
            .and_then(|m| m.queue.pop_front())
    }

    /// Returns a buffer from [`Endpoint::dequeue`] for reuse.
    pub fn recycle(&mut self, v: Vec<u8>) {
        if self.spare.len() < MAX_QUEUED {
            self.spare.push(v);
        }
    }
}
