//! Packet-in rate limiting: a token bucket per ingress port, as Open vSwitch's
//! `controller_rate_limit`/`controller_burst_limit` but per port, so one flooding
//! port cannot starve the others or the controller. `plexus-vswitchd` applies it on
//! the datapath thread before a packet-in leaves the switch; the controller applies
//! it to the responder packet-ins (`NXT_PACKET_IN2`) an Open vSwitch chassis sends up.

use std::time::Instant;

/// Packets per second and burst (`rate` 0: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateLimit {
    pub rate: u32,
    pub burst: u32,
}

impl RateLimit {
    /// `rate` per second with OVS's default burst (a quarter of the rate, at least 25).
    pub fn per_second(rate: u32) -> Self {
        Self {
            rate,
            burst: (rate / 4).max(25),
        }
    }
}

/// What a [`TokenBucket`] let through and dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets passed.
    pub sent: u64,
    /// Packets dropped by the limit.
    pub dropped: u64,
}

/// A token bucket: refilled at `rate` per second up to `burst`, starting full.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    last: Instant,
    counters: Counters,
}

impl TokenBucket {
    pub fn new(limit: RateLimit, now: Instant) -> Self {
        Self {
            limit,
            tokens: f64::from(limit.burst),
            last: now,
            counters: Counters::default(),
        }
    }

    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Takes a token; false (counted as dropped): over the limit.
    pub fn take(&mut self, now: Instant) -> bool {
        if self.limit.rate == 0 {
            self.counters.sent += 1;
            return true;
        }
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens =
            (self.tokens + dt * f64::from(self.limit.rate)).min(f64::from(self.limit.burst.max(1)));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.counters.sent += 1;
            true
        } else {
            self.counters.dropped += 1;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(RateLimit::per_second(100), t0);
        assert_eq!(b.limit().burst, 25);
        // A burst of 25 at once, then nothing until tokens refill.
        assert_eq!((0..40).filter(|_| b.take(t0)).count(), 25);
        assert_eq!(
            b.counters(),
            Counters {
                sent: 25,
                dropped: 15
            }
        );
        // 100 ms later: 10 more.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!((0..40).filter(|_| b.take(t1)).count(), 10);
        // Never more than the burst, however long idle.
        let t2 = t1 + Duration::from_secs(3600);
        assert_eq!((0..100).filter(|_| b.take(t2)).count(), 25);
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(RateLimit::default(), t0);
        assert!((0..10_000).all(|_| b.take(t0)));
        assert_eq!(b.counters().dropped, 0);
    }
}
