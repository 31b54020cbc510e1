//! Leader election over etcd leases: of the controllers sharing an etcd store, exactly
//! one (the leader) programs switches; the others serve the API and wait.
//!
//! Each controller grants a lease (TTL `ttl`), keeps it alive every `ttl / 4`, and
//! campaigns with it on the election `PREFIX/leader` (etcd's v3election service: the
//! candidate whose key has the lowest create revision leads; a key goes away with its
//! lease). When the leader dies, its lease expires after at most `ttl` and the next
//! candidate is elected. A leader that cannot renew its lease steps down *before* the
//! lease can have expired on the server (the deadline counts from the send time of the
//! last renewed keepalive, minus a margin), so two leaders never program at once as
//! long as clocks run at the same rate.

use etcd_client::{Client, LeaderKey, ResignOptions};
use std::pin::pin;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::watch;

/// What this controller is in the election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// This controller's node id.
    pub node: String,
    /// This controller leads (programs the switches).
    pub leader: bool,
    /// The leader's node id, when known.
    pub leader_node: Option<String>,
    /// Leadership changes seen by this controller (became leader or stepped down).
    pub transitions: u64,
}

/// A running election campaign; dropping it stops campaigning (and resigns).
#[derive(Debug)]
pub struct Election {
    role: watch::Receiver<Role>,
    stop: watch::Sender<bool>,
    _task: tokio::task::JoinHandle<()>,
}

impl Drop for Election {
    fn drop(&mut self) {
        // The task resigns and revokes its lease on stop (if its runtime still runs).
        let _ = self.stop.send(true);
    }
}

impl Election {
    /// Starts campaigning as `node` on `PREFIX/leader` with leases of `ttl`, on `rt`
    /// (the etcd client's runtime).
    pub fn start(client: Client, rt: &Handle, prefix: &str, node: &str, ttl: Duration) -> Self {
        let role = Role {
            node: node.to_string(),
            leader: false,
            leader_node: None,
            transitions: 0,
        };
        let (tx, rx) = watch::channel(role);
        let (stop_tx, stop_rx) = watch::channel(false);
        let name = format!("{}/leader", prefix.trim_end_matches('/'));
        let task = rt.spawn(campaign_loop(
            client,
            name,
            node.to_string(),
            ttl.max(Duration::from_secs(2)),
            tx,
            stop_rx,
        ));
        Self {
            role: rx,
            stop: stop_tx,
            _task: task,
        }
    }

    /// The current role, as a watch.
    pub fn subscribe(&self) -> watch::Receiver<Role> {
        self.role.clone()
    }

    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }
}

fn set(tx: &watch::Sender<Role>, f: impl FnOnce(&mut Role)) {
    tx.send_if_modified(|r| {
        let before = r.clone();
        f(r);
        if r.leader != before.leader {
            r.transitions += 1;
        }
        *r != before
    });
}

async fn campaign_loop(
    client: Client,
    name: String,
    node: String,
    ttl: Duration,
    tx: watch::Sender<Role>,
    mut stop: watch::Receiver<bool>,
) {
    let ttl_s = ttl.as_secs() as i64;
    loop {
        if *stop.borrow() {
            return;
        }
        let lease = match client.clone().lease_grant(ttl_s, None).await {
            Ok(l) => l.id(),
            Err(e) => {
                tracing::warn!(error = %e, "election: lease grant failed");
                set(&tx, |r| r.leader_node = None);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = stop.changed() => return,
                }
                continue;
            }
        };
        let (lost_tx, mut lost) = watch::channel(false);
        let ka = tokio::spawn(keep_alive(client.clone(), lease, ttl, lost_tx));
        let outcome = campaign_once(&client, &name, &node, lease, &tx, &mut lost, &mut stop).await;
        // Not (or no longer) leading: say so first, then clean up.
        set(&tx, |r| r.leader = false);
        ka.abort();
        let mut c = client.clone();
        if let Some(key) = outcome {
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                c.resign(Some(ResignOptions::new().with_leader(key))),
            )
            .await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), c.lease_revoke(lease)).await;
        if *stop.borrow() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Campaigns with `lease` until elected, then leads until the lease is lost or stop;
/// returns the leader key if it led.
async fn campaign_once(
    client: &Client,
    name: &str,
    node: &str,
    lease: i64,
    tx: &watch::Sender<Role>,
    lost: &mut watch::Receiver<bool>,
    stop: &mut watch::Receiver<bool>,
) -> Option<LeaderKey> {
    let mut c = client.clone();
    let mut camp = pin!(c.campaign(name, node, lease));
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let key = loop {
        tokio::select! {
            r = &mut camp => match r {
                Ok(resp) => match resp.leader() {
                    Some(k) => break k.clone(),
                    None => {
                        tracing::warn!("election: campaign answered without a leader key");
                        return None;
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "election: campaign failed");
                    return None;
                }
            },
            _ = tick.tick() => {
                let l = client.clone().leader(name).await.ok().and_then(|l| {
                    l.kv().and_then(|kv| kv.value_str().ok().map(str::to_string))
                });
                set(tx, |r| r.leader_node = l);
            }
            _ = lost.changed() => {
                tracing::warn!("election: lease lost while campaigning");
                return None;
            }
            _ = stop.changed() => return None,
        }
    };
    tracing::info!(%node, "election: elected leader");
    set(tx, |r| {
        r.leader = true;
        r.leader_node = Some(node.to_string());
    });
    tokio::select! {
        _ = lost.changed() => tracing::warn!(%node, "election: lease lost; stepping down"),
        _ = stop.changed() => tracing::info!(%node, "election: stopping; resigning"),
    }
    Some(key)
}

/// Renews `lease` every `ttl / 4`; signals `lost` once renewal cannot be guaranteed
/// (server said the lease is gone, or no renewal confirmed for `ttl - margin` since the
/// request that last renewed it was sent). Reconnects the keepalive stream on errors (a
/// failed etcd member), as long as the deadline allows.
async fn keep_alive(client: Client, lease: i64, ttl: Duration, lost: watch::Sender<bool>) {
    let margin = (ttl / 4).min(Duration::from_millis(750));
    let mut deadline = Instant::now() + ttl - margin;
    let period = ttl / 4;
    'outer: loop {
        let mut c = client.clone();
        let stream = tokio::time::timeout(period, c.lease_keep_alive(lease)).await;
        let (mut keeper, mut responses) = match stream {
            Ok(Ok(s)) => s,
            _ => {
                if Instant::now() >= deadline {
                    break 'outer;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        loop {
            let sent = Instant::now();
            if keeper.keep_alive().await.is_err() {
                continue 'outer;
            }
            let until = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(until.min(period * 2), responses.message()).await {
                Ok(Ok(Some(r))) if r.ttl() > 0 => {
                    deadline = sent + ttl - margin;
                }
                Ok(Ok(Some(_))) => {
                    tracing::warn!(lease, "election: lease expired on the server");
                    break 'outer;
                }
                _ => {
                    if Instant::now() >= deadline {
                        break 'outer;
                    }
                    continue 'outer;
                }
            }
            let next = (sent + period).min(deadline);
            tokio::time::sleep_until(next.into()).await;
            if Instant::now() >= deadline {
                break 'outer;
            }
        }
    }
    let _ = lost.send(true);
}
