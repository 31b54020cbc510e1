//! Plexus local responders, sans-IO: ARP replies, IPv6 neighbour advertisements, ICMP
//! and ICMPv6 echo replies, and a DHCPv4 server for one port, all parsed and built with
//! `smoltcp::wire` types.
//!
//! The controller decides what is answered by compiling flows whose action is
//! `controller(userdata=<Spec::encode()>)` ([`spec`]). `plexus-vswitchd` recognises the
//! [`spec::MAGIC`] in the action's userdata and answers on the datapath thread (reply out
//! of the ingress port, no PACKET_IN); Open vSwitch sends the same packet to the
//! controller as `NXT_PACKET_IN2` with the userdata, and the controller answers with a
//! PACKET_OUT built by the same [`Responder`]. Nothing here does I/O or allocates per
//! packet beyond the caller's reply buffer; no input panics.

pub mod ratelimit;
pub mod reply;
pub mod spec;

pub use reply::{Answer, DhcpEvent, DropReason, respond};
pub use spec::{Dhcp4Spec, Kind, Spec, SpecError, is_plexus};

use std::fmt::Write as _;

/// Counters of one responder kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindStats {
    /// Replies sent.
    pub replies: u64,
    /// Requests dropped, by [`DropReason::index`].
    pub drops: [u64; DropReason::ALL.len()],
}

/// Counters of a [`Responder`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// By [`Kind::index`].
    pub kinds: [KindStats; Kind::ALL.len()],
    /// DHCP exchanges by [`DhcpEvent::index`].
    pub dhcp: [u64; DhcpEvent::ALL.len()],
    /// Userdata with the Plexus magic that did not decode (a controller/switch mismatch).
    pub bad_spec: u64,
}

impl Stats {
    pub fn kind(&self, k: Kind) -> &KindStats {
        &self.kinds[k.index()]
    }

    pub fn replies(&self, k: Kind) -> u64 {
        self.kind(k).replies
    }

    pub fn drops(&self, k: Kind, r: DropReason) -> u64 {
        self.kind(k).drops[r.index()]
    }

    pub fn dhcp(&self, e: DhcpEvent) -> u64 {
        self.dhcp[e.index()]
    }

    /// Adds `o` into `self`.
    pub fn merge(&mut self, o: &Stats) {
        for (a, b) in self.kinds.iter_mut().zip(&o.kinds) {
            a.replies += b.replies;
            for (x, y) in a.drops.iter_mut().zip(&b.drops) {
                *x += y;
            }
        }
        for (a, b) in self.dhcp.iter_mut().zip(&o.dhcp) {
            *a += b;
        }
        self.bad_spec += o.bad_spec;
    }

    /// One line per kind: `arp replies=3 drops=wrong_target:1`, then `dhcp4 events …`
    /// and `bad_spec N` (the text form of `plexus-appctl responder/show`).
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for k in Kind::ALL {
            let ks = self.kind(k);
            let _ = write!(s, "{} replies={}", k.name(), ks.replies);
            let drops: Vec<String> = DropReason::ALL
                .iter()
                .filter(|r| ks.drops[r.index()] > 0)
                .map(|r| format!("{}:{}", r.name(), ks.drops[r.index()]))
                .collect();
            let _ = writeln!(
                s,
                " drops={}",
                if drops.is_empty() {
                    "0".to_string()
                } else {
                    drops.join(",")
                }
            );
        }
        let ev: Vec<String> = DhcpEvent::ALL
            .iter()
            .map(|e| format!("{}={}", e.name(), self.dhcp[e.index()]))
            .collect();
        let _ = writeln!(s, "dhcp4 events {}", ev.join(" "));
        let _ = writeln!(s, "bad_spec {}", self.bad_spec);
        s
    }

    /// JSON object (no serde dependency): `{"arp":{"replies":N,"drops":{…}},…,
    /// "dhcp4_events":{…},"bad_spec":N}`.
    pub fn to_json(&self) -> String {
        let mut s = String::from("{");
        for k in Kind::ALL {
            let ks = self.kind(k);
            let _ = write!(
                s,
                "\"{}\":{{\"replies\":{},\"drops\":{{",
                k.name(),
                ks.replies
            );
            let d: Vec<String> = DropReason::ALL
                .iter()
                .map(|r| format!("\"{}\":{}", r.name(), ks.drops[r.index()]))
                .collect();
            let _ = write!(s, "{}}}}},", d.join(","));
        }
        let ev: Vec<String> = DhcpEvent::ALL
            .iter()
            .map(|e| format!("\"{}\":{}", e.name(), self.dhcp[e.index()]))
            .collect();
        let _ = write!(
            s,
            "\"dhcp4_events\":{{{}}},\"bad_spec\":{}}}",
            ev.join(","),
            self.bad_spec
        );
        s
    }
}

/// Outcome of [`Responder::handle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Not Plexus userdata: an ordinary packet-in, for the controller.
    NotPlexus,
    /// Answered: the reply frame is in the responder's buffer ([`Responder::reply`]).
    Reply(Kind),
    /// Plexus userdata, counted, nothing to send (dropped request, DHCP RELEASE, or a
    /// spec that did not decode).
    Done,
}

/// A responder with its counters and reply buffer (one per datapath thread or
/// controller session).
#[derive(Debug, Default)]
pub struct Responder {
    stats: Stats,
    buf: Vec<u8>,
}

impl Responder {
    pub fn new() -> Self {
        Self {
            stats: Stats::default(),
            buf: Vec::with_capacity(1600),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The last reply built by [`Responder::handle`].
    pub fn reply(&self) -> &[u8] {
        &self.buf
    }

    /// Handles one packet that hit `controller(userdata)`; counts everything.
    pub fn handle(&mut self, userdata: &[u8], frame: &[u8]) -> Handled {
        if !is_plexus(userdata) {
            return Handled::NotPlexus;
        }
        let spec = match Spec::decode(userdata) {
            Ok(s) => s,
            Err(_) => {
                self.stats.bad_spec += 1;
                return Handled::Done;
            }
        };
        let k = spec.kind();
        match respond(&spec, frame, &mut self.buf) {
            Ok(Answer::Reply(ev)) => {
                self.stats.kinds[k.index()].replies += 1;
                if let Some(e) = ev {
                    self.stats.dhcp[e.index()] += 1;
                }
                Handled::Reply(k)
            }
            Ok(Answer::Consumed(e)) => {
                self.stats.dhcp[e.index()] += 1;
                Handled::Done
            }
            Err(r) => {
                self.stats.kinds[k.index()].drops[r.index()] += 1;
                Handled::Done
            }
        }
    }
}

#[cfg(test)]
mod tests;
