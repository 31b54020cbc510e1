//! Packet-in buffering (OpenFlow 1.3 §7.4.1/§7.3.7): a truncated packet-in
//! keeps the whole packet in a numbered buffer; a PACKET_OUT or FLOW_MOD
//! naming that `buffer_id` takes it back out (once). Bounded: at most `cap`
//! packets, each reusable after [`BUFFER_TTL`] (OVS `pktbuf`: 256 buffers,
//! overwritten after 5 s); when every buffer is younger the packet-in goes
//! out whole with `OFP_NO_BUFFER`. Ids carry a rolling cookie in the high
//! bits so a stale id does not name a reused slot's new packet.
//!
//! Off by default (`n_buffers` 0, `OFP_NO_BUFFER` always), as in Open
//! vSwitch 3.x; `--packet-in-buffers N` turns it on.

use std::time::{Duration, Instant};

use plexus_openflow::error::{BadRequestCode, OfpError};

/// How long a buffered packet is kept before its slot may be reused.
pub const BUFFER_TTL: Duration = Duration::from_secs(5);
/// The largest buffer count accepted (ids keep 16 bits of slot number).
pub const MAX_BUFFERS: usize = 1 << 16;

#[derive(Debug)]
struct Slot {
    cookie: u16,
    data: Vec<u8>,
    in_port: u32,
    stored: Instant,
    used: bool,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct PacketBuffers {
    slots: Vec<Slot>,
    cap: usize,
    next: usize,
    cookie: u16,
}

impl PacketBuffers {
    /// A store of `cap` buffers (0: buffering off).
    pub fn new(cap: usize) -> Self {
        Self {
            slots: Vec::new(),
            cap: cap.min(MAX_BUFFERS),
            next: 0,
            cookie: 0,
        }
    }

    /// The buffer count (FEATURES_REPLY `n_buffers`).
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Buffers `data` received on `in_port`; returns its id, or gives
    /// `data` back when buffering is off or every buffer holds a packet
    /// younger than [`BUFFER_TTL`].
    pub fn store(&mut self, data: Vec<u8>, in_port: u32, now: Instant) -> Result<u32, Vec<u8>> {
        if self.cap == 0 {
            return Err(data);
        }
        // Round robin from the last slot used: the first free, taken or expired one.
        let n = self.slots.len();
        let slot = if n < self.cap {
            self.slots.push(Slot {
                cookie: 0,
                data: Vec::new(),
                in_port: 0,
                stored: now,
                used: true,
            });
            n
        } else {
            let mut found = None;
            for k in 0..n {
                let i = (self.next + k) % n;
                let s = &self.slots[i];
                if s.used || now.saturating_duration_since(s.stored) >= BUFFER_TTL {
                    found = Some(i);
                    break;
                }
            }
            match found {
                Some(i) => i,
                None => return Err(data),
            }
        };
        self.next = (slot + 1) % self.cap;
        // Cookie 0xffff is skipped: no id is ever OFP_NO_BUFFER.
        self.cookie = (self.cookie + 1) % 0xffff;
        self.slots[slot] = Slot {
            cookie: self.cookie,
            data,
            in_port,
            stored: now,
            used: false,
        };
        let id = (u32::from(self.cookie) << 16) | slot as u32;
        Ok(id)
    }

    /// Takes buffer `id` out: the packet and the port it came in on.
    /// `OFPBRC_BUFFER_UNKNOWN` for an id never handed out, already
    /// released or expired.
    pub fn take(&mut self, id: u32, now: Instant) -> Result<(Vec<u8>, u32), OfpError> {
        let unknown = OfpError::BadRequest(BadRequestCode::BufferUnknown);
        let slot = (id & 0xffff) as usize;
        let cookie = (id >> 16) as u16;
        let Some(s) = self.slots.get_mut(slot) else {
            return Err(unknown);
        };
        if s.used || s.cookie != cookie || now.saturating_duration_since(s.stored) >= BUFFER_TTL {
            return Err(unknown);
        }
        s.used = true;
        Ok((std::mem::take(&mut s.data), s.in_port))
    }

    /// Buffers holding a packet not yet taken nor expired.
    pub fn in_use(&self, now: Instant) -> usize {
        self.slots
            .iter()
            .filter(|s| !s.used && now.saturating_duration_since(s.stored) < BUFFER_TTL)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_openflow::message::OFP_NO_BUFFER;

    #[test]
    fn off_by_default() {
        let mut b = PacketBuffers::new(0);
        assert_eq!(b.store(vec![1], 1, Instant::now()), Err(vec![1]));
        assert!(b.take(0, Instant::now()).is_err());
    }

    #[test]
    fn store_take_once() {
        let now = Instant::now();
        let mut b = PacketBuffers::new(4);
        let id = b.store(vec![1, 2, 3], 7, now).unwrap();
        assert_ne!(id, OFP_NO_BUFFER);
        assert_eq!(b.in_use(now), 1);
        assert_eq!(b.take(id, now).unwrap(), (vec![1, 2, 3], 7));
        assert_eq!(
            b.take(id, now),
            Err(OfpError::BadRequest(BadRequestCode::BufferUnknown))
        );
        assert_eq!(b.in_use(now), 0);
        // An id never handed out.
        assert!(b.take(0x1234_0003, now).is_err());
    }

    #[test]
    fn bounded_and_expiring() {
        let t0 = Instant::now();
        let mut b = PacketBuffers::new(2);
        let a = b.store(vec![1], 1, t0).unwrap();
        let c = b.store(vec![2], 1, t0).unwrap();
        // Full with young packets: no buffer.
        assert_eq!(b.store(vec![3], 1, t0), Err(vec![3]));
        // Releasing one frees its slot.
        b.take(a, t0).unwrap();
        let d = b.store(vec![4], 1, t0).unwrap();
        assert_ne!(d, a, "a reused slot gets a new id");
        assert!(b.take(a, t0).is_err());
        // After the TTL old packets are gone and slots reusable.
        let later = t0 + BUFFER_TTL;
        assert!(b.take(c, later).is_err());
        assert!(b.store(vec![5], 1, later).is_ok());
        assert!(b.store(vec![6], 1, later).is_ok());
        assert_eq!(
            b.take(d, later).map(|x| x.0),
            Err(OfpError::BadRequest(BadRequestCode::BufferUnknown))
        );
    }
}
