//! `type=dummy` ports (OVS's `--enable-dummy` netdevs): an OpenFlow port with
//! no kernel device behind it. It never receives; transmitted frames are
//! counted and dropped. Used to attach thousands of logical ports to one
//! switch for control-plane scale runs without creating kernel interfaces.

use super::{LinkState, PacketBatch, Port, PortStats};
use std::os::fd::RawFd;

/// A port without a device.
#[derive(Debug)]
pub struct DummyPort {
    name: String,
    stats: PortStats,
}

impl DummyPort {
    pub fn new(name: &str) -> Self {
        DummyPort {
            name: name.to_string(),
            stats: PortStats::default(),
        }
    }
}

impl Port for DummyPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn rx_batch(&mut self, batch: &mut PacketBatch) -> usize {
        batch.clear();
        0
    }

    fn tx_batch(&mut self, batch: &mut PacketBatch) {
        self.stats.tx_drops += batch.len() as u64;
        batch.clear();
    }

    fn rx_fd(&self) -> Option<RawFd> {
        None
    }

    fn link_state(&self) -> LinkState {
        LinkState {
            admin_up: true,
            oper_up: true,
        }
    }

    fn stats(&self) -> PortStats {
        self.stats
    }

    fn kind(&self) -> &'static str {
        "dummy"
    }

    fn is_inert(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_receives_and_counts_dropped_transmits() {
        let mut p = DummyPort::new("d0");
        let mut b = PacketBatch::new(4);
        assert_eq!(p.rx_batch(&mut b), 0);
        assert!(b.push(&[1, 2, 3]) && b.push(&[4]));
        p.tx_batch(&mut b);
        assert!(b.is_empty());
        assert_eq!(p.stats().tx_drops, 2);
        assert!(p.link_state().oper_up);
        assert_eq!(p.rx_fd(), None);
        assert!(p.is_inert());
    }
}
