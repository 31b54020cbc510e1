//! A reconnecting active client (the switch side of a controller connection).

use std::time::Duration;

use tokio::time::Instant;

use super::{Config, Connection, Target};

/// Connects to a target again and again with exponential backoff, like OVS's
/// rconn: failed attempts wait `backoff` (doubling from `min_backoff` up to
/// `max_backoff`); a connection that lived shorter than the current backoff
/// also counts as a failure, one that lived longer resets the backoff.
///
/// ```no_run
/// # async fn run() {
/// use plexus_openflow::conn::{Config, Reconnect};
/// let mut rc = Reconnect::new("tcp:127.0.0.1:6653".parse().unwrap(), Config::default());
/// loop {
///     let conn = rc.connect().await;
///     // ... serve `conn` until it closes ...
///     conn.handle.closed().await;
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Reconnect {
    target: Target,
    cfg: Config,
    min_backoff: Duration,
    max_backoff: Duration,
    backoff: Duration,
    last_up: Option<Instant>,
}

impl Reconnect {
    /// Backoff 1 s .. 8 s (OVS's defaults).
    pub fn new(target: Target, cfg: Config) -> Self {
        Self {
            target,
            cfg,
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(8),
            backoff: Duration::from_secs(1),
            last_up: None,
        }
    }

    /// Sets the backoff range (`max` is raised to `min` if smaller).
    pub fn with_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max.max(min);
        self.backoff = min;
        self
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The wait before the next retry.
    pub fn current_backoff(&self) -> Duration {
        self.backoff
    }

    fn grow(&mut self) {
        self.backoff = (self.backoff * 2).min(self.max_backoff);
    }

    /// Returns the next established connection, retrying until one succeeds.
    pub async fn connect(&mut self) -> Connection {
        if let Some(up) = self.last_up.take() {
            if up.elapsed() < self.backoff {
                tokio::time::sleep(self.backoff).await;
                self.grow();
            } else {
                self.backoff = self.min_backoff;
            }
        }
        loop {
            match Connection::connect_to(&self.target, &self.cfg).await {
                Ok(c) => {
                    self.last_up = Some(Instant::now());
                    return c;
                }
                Err(e) => {
                    tracing::debug!(target = %self.target, error = %e, backoff = ?self.backoff, "connect failed");
                    tokio::time::sleep(self.backoff).await;
                    self.grow();
                }
            }
        }
    }
}
