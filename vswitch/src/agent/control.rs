//! The control side (tokio): controller connections feeding the datapath.
//!
//! Every connection gets an id; its messages (and decode failures) are
//! forwarded in order to the datapath thread as [`Ctl`] events, where the
//! [`Agent`](super::Agent) answers them. Active targets reconnect with
//! backoff; passive listeners accept any number of connections.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use plexus_openflow::conn::{
    Config, Connection, Listener, PassiveTarget, Reconnect, Target, TlsClient,
};
use plexus_pki::rustls::ServerConfig;

use crate::agent::Queued;
use crate::datapath::{Ctl, CtlSender};
use plexus_openflow::Message;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The switch's TLS identity (`--private-key`, `--certificate`, `--ca-cert`, or the
/// database's `SSL` row, `ovs-vsctl set-ssl`): `ssl:` controllers are connected to with
/// it (the controller is verified against the CA), `pssl:` listeners require a client
/// certificate of the CA. Connections started after a change use the new files.
type Tls = (TlsClient, Arc<ServerConfig>);
static TLS: RwLock<Option<Tls>> = RwLock::new(None);

fn tls() -> Option<Tls> {
    TLS.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Loads the TLS files for every `ssl:`/`pssl:` OpenFlow target started from now on
/// (and the OVSDB `pssl:` listeners of `plexus-vswitchd`).
pub fn set_tls(files: &plexus_pki::TlsFiles) -> Result<(), plexus_pki::Error> {
    let client = TlsClient {
        config: plexus_pki::client_config(files, &[])?,
        server_name: None,
    };
    let server = plexus_pki::server_config(files, plexus_pki::ClientAuth::Required, &[])?;
    *TLS.write().unwrap_or_else(|p| p.into_inner()) = Some((client, server));
    Ok(())
}

/// Forgets the TLS files (`ovs-vsctl del-ssl`).
pub fn clear_tls() {
    *TLS.write().unwrap_or_else(|p| p.into_inner()) = None;
}

/// The server configuration for `pssl:` listeners, if TLS is configured.
pub fn server_tls() -> Option<Arc<ServerConfig>> {
    tls().map(|t| t.1)
}

/// Connection settings for the switch side.
pub fn conn_config() -> Config {
    Config {
        probe_interval: Some(Duration::from_secs(15)),
        tls: tls().map(|t| t.0),
        ..Config::default()
    }
}

/// Forwards one connection's events until it closes.
pub async fn serve(conn: Connection, ctl: CtlSender) {
    serve_named(conn, ctl, String::new(), false).await
}

/// [`serve`], telling the agent who the peer is (`show`) and whether it is
/// an active (primary) controller connection.
pub async fn serve_named(conn: Connection, ctl: CtlSender, name: String, primary: bool) {
    let Connection {
        handle,
        mut incoming,
        ..
    } = conn;
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    if !ctl.send(Ctl::Connected {
        id,
        handle: handle.clone(),
    }) {
        return;
    }
    if !ctl.send(Ctl::Peer { id, name, primary }) {
        return;
    }
    drop(handle);
    // Disconnected is sent however this future ends (closed, or dropped
    // when its task is aborted, e.g. a Controller row was deleted).
    struct Gone(CtlSender, u64);
    impl Drop for Gone {
        fn drop(&mut self) {
            self.0.send(Ctl::Disconnected { id: self.1 });
        }
    }
    let gone = Gone(ctl, id);
    // `recv` takes one unit of tokio's cooperative budget per message, the
    // reader one per socket read (~30 messages): draining with `try_recv`
    // keeps this task as fast as the reader, so a burst (a 438k-message
    // bundle) does not pile up decoded in the connection's queue (it did:
    // ~300 MiB); `send_throttled` then holds the burst in the socket while
    // the datapath thread is behind.
    while let Some(first) = incoming.recv().await {
        let mut next = Some(first);
        while let Some((xid, ev)) = next.take() {
            if !gone.0.send_throttled(to_ctl(id, xid, ev)) {
                return;
            }
            next = incoming.try_recv();
        }
    }
}

/// A connection's event as the datapath thread takes it.
fn to_ctl(id: u64, xid: u32, ev: Result<Message, plexus_openflow::conn::DecodeFailure>) -> Ctl {
    match ev {
        Ok(Message::BundleAdd(ba))
            if ba.properties.is_empty() && matches!(*ba.message, Message::FlowMod(_)) =>
        {
            Ctl::BundleFlowMod {
                id,
                xid,
                bundle_id: ba.bundle_id,
                flags: ba.flags,
                queued: Queued::new(*ba.message),
            }
        }
        Ok(msg) => Ctl::Msg { id, xid, msg },
        Err(failure) => Ctl::Bad { id, failure },
    }
}

/// An active controller target: connect, serve, reconnect with backoff, forever.
pub async fn run_active(target: Target, ctl: CtlSender) {
    let mut rc = Reconnect::new(target.clone(), conn_config())
        .with_backoff(Duration::from_millis(200), Duration::from_secs(8));
    loop {
        let conn = rc.connect().await;
        eprintln!("connected to controller {target}");
        serve_named(conn, ctl.clone(), target.to_string(), true).await;
        eprintln!("controller {target} disconnected");
    }
}

/// A passive listener (`ptcp:PORT[:IP]`); returns once bound, serving in the background.
pub async fn start_passive(target: &PassiveTarget, ctl: CtlSender) -> std::io::Result<()> {
    let l = Listener::bind(target, server_tls()).await?;
    eprintln!("listening on {}", l.local_target());
    tokio::spawn(async move {
        loop {
            match l.accept().await {
                Ok((stream, peer)) => {
                    let ctl = ctl.clone();
                    tokio::spawn(async move {
                        match Connection::accept(stream, &conn_config()).await {
                            Ok(c) => serve_named(c, ctl, peer.to_string(), false).await,
                            Err(e) => eprintln!("{peer}: handshake failed: {e}"),
                        }
                    });
                }
                Err(e) => {
                    eprintln!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(())
}
