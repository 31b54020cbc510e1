//! `plexus-controller`: the REST API over the embedded store (or, with
//! `--store etcd://…`, over etcd with leader election: only the leader programs switches).

use anyhow::{Context, bail};
use clap::Parser;
use plexus_controller::api::{AppState, Tokens, app};
use plexus_controller::ha::Election;
use plexus_controller::southbound::Southbound;
use plexus_controller::store::{AnyStore, RedbStore};
use plexus_controller::store_etcd::{EtcdStore, parse_endpoints};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(version, about = "The Plexus controller")]
struct Args {
    /// Address of the REST API.
    #[arg(long, default_value = "127.0.0.1:8480")]
    listen: SocketAddr,
    /// The store file (created if missing) of the embedded redb store.
    #[arg(long, default_value = "plexus.redb")]
    db: PathBuf,
    /// Store backend: `redb` (embedded, `--db`) or `etcd://HOST:PORT[,HOST:PORT...]`
    /// (shared by several controllers; leader election decides which one programs the
    /// switches, the others serve the API and take over when it dies).
    #[arg(long, default_value = "redb")]
    store: String,
    /// Key prefix of the model and the election in etcd.
    #[arg(long, default_value = "/plexus")]
    etcd_prefix: String,
    /// This controller's name in the leader election (default: hostname:API port).
    #[arg(long)]
    node_id: Option<String>,
    /// Lease TTL of the leader election, in seconds (a dead leader is replaced within
    /// about this long; etcd's minimum is 2).
    #[arg(long, default_value_t = 3)]
    election_ttl: u64,
    /// Bearer tokens, one `TOKEN SCOPE [NAME]` per line (scope `admin`, `read` or
    /// `tenant:<tenant id>`; TOKEN plain or `sha256:HEX`).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Serve without authentication (tests on loopback only).
    #[arg(long, conflicts_with = "token_file")]
    insecure_no_auth: bool,
    /// OpenFlow listener chassis switches connect to (e.g. `ptcp:6653:127.0.0.1`);
    /// chassis with `endpoint.openflow` are connected to in any case.
    #[arg(long)]
    openflow_listen: Option<String>,
    /// Responder packet-ins (ARP/ND/ICMP/DHCP that Open vSwitch chassis send up as
    /// NXT_PACKET_IN2) answered per second per chassis and ingress port; the rest are
    /// counted (`responder_rate_limited`) and dropped. Burst: a quarter, at least 25.
    /// 0: unlimited.
    #[arg(long, default_value_t = plexus_controller::southbound::DEFAULT_PACKET_IN_RATE)]
    packet_in_rate: u32,
    /// Serve xDS (ADS + per-type, SotW + delta) here, e.g. `127.0.0.1:18000`: services
    /// and their traffic policy reach every connected Envoy / proxyless gRPC client.
    #[arg(long)]
    xds_listen: Option<SocketAddr>,
    /// Append one JSON line per API change (who, method, path, object, result) here.
    #[arg(long)]
    audit_log: Option<PathBuf>,
    /// PEM private key for TLS (REST with --https, OpenFlow pssl:/ssl:, xDS).
    #[arg(long, requires_all = ["certificate", "ca_cert"])]
    private_key: Option<PathBuf>,
    /// PEM certificate (chain) matching --private-key.
    #[arg(long, requires_all = ["private_key", "ca_cert"])]
    certificate: Option<PathBuf>,
    /// PEM CA certificate that switches' and proxies' certificates must chain to
    /// (OpenFlow `pssl:` and xDS require one: mutual TLS). `plexus certs` makes a CA.
    #[arg(long, requires_all = ["private_key", "certificate"])]
    ca_cert: Option<PathBuf>,
    /// Serve the REST API over HTTPS (client certificates optional: tokens authenticate).
    #[arg(long, requires = "private_key")]
    https: bool,
    /// Serve xDS over mutual TLS (needs the TLS files).
    #[arg(long, requires_all = ["private_key", "xds_listen"])]
    xds_tls: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let tokens = match (&args.token_file, args.insecure_no_auth) {
        (Some(p), _) => Some(Tokens::load(p).map_err(anyhow::Error::msg)?),
        (None, true) => {
            tracing::warn!("authentication disabled (--insecure-no-auth)");
            None
        }
        (None, false) => bail!("--token-file is required (or --insecure-no-auth)"),
    };
    let (store, election): (AnyStore, Option<Election>) = if args.store == "redb" {
        let s = RedbStore::open(&args.db)
            .with_context(|| format!("opening store {}", args.db.display()))?;
        (s.into(), None)
    } else {
        let eps = parse_endpoints(&args.store).map_err(|e| anyhow::anyhow!("--store {e}"))?;
        let prefix = args.etcd_prefix.clone();
        let eps2 = eps.clone();
        let s = tokio::task::spawn_blocking(move || EtcdStore::connect(&eps2, &prefix))
            .await?
            .with_context(|| format!("connecting to etcd {eps:?}"))?;
        let node = match &args.node_id {
            Some(n) => n.clone(),
            None => format!("{}:{}", hostname(), args.listen.port()),
        };
        let e = Election::start(
            s.client(),
            &s.handle(),
            &args.etcd_prefix,
            &node,
            Duration::from_secs(args.election_ttl),
        );
        tracing::info!(%node, endpoints = ?eps, "etcd store; campaigning for leadership");
        (s.into(), Some(e))
    };
    let tls = plexus_pki::TlsFiles::from_options(
        args.private_key.as_deref(),
        args.certificate.as_deref(),
        args.ca_cert.as_deref(),
    )?;
    let mut state = AppState::new(store.clone(), tokens);
    if let Some(p) = &args.audit_log {
        let log = plexus_controller::api::AuditLog::open(p)
            .with_context(|| format!("opening audit log {}", p.display()))?;
        state.audit = Some(std::sync::Arc::new(log));
    }
    let openflow_listen = args.openflow_listen.clone();
    // The southbound runs while this controller leads (always, with the embedded store).
    let southbound = match &election {
        None => {
            let sb = Southbound::start_with_options(
                store.clone(),
                openflow_listen.as_deref(),
                tls.as_ref(),
                Default::default(),
                args.packet_in_rate,
            )
            .await?;
            state.sync = sb.status();
            state.switch_ports = sb.switch_ports();
            tokio::spawn(async move {
                let _sb = sb;
                std::future::pending::<()>().await
            })
        }
        Some(e) => {
            let mut role = e.subscribe();
            state.role = Some(role.clone());
            let status = state.sync.clone();
            let store = store.clone();
            let tls = tls.clone();
            let packet_in_rate = args.packet_in_rate;
            tokio::spawn(async move {
                let mut sb: Option<Southbound> = None;
                loop {
                    let leader = role.borrow_and_update().leader;
                    if leader && sb.is_none() {
                        tracing::info!("leader: starting the southbound (reconcile, no flush)");
                        match Southbound::start_with_options(
                            store.clone(),
                            openflow_listen.as_deref(),
                            tls.as_ref(),
                            status.clone(),
                            packet_in_rate,
                        )
                        .await
                        {
                            Ok(s) => sb = Some(s),
                            Err(e) => {
                                tracing::error!(error = %e, "starting the southbound");
                                tokio::time::sleep(Duration::from_millis(500)).await;
                                continue;
                            }
                        }
                    } else if !leader && let Some(s) = sb.take() {
                        tracing::warn!("not leader: stopping the southbound");
                        drop(s);
                        status.clear();
                    }
                    if role.changed().await.is_err() {
                        return;
                    }
                }
            })
        }
    };
    let xds = match args.xds_listen {
        Some(a) => {
            let xtls = if args.xds_tls { tls.as_ref() } else { None };
            let feed =
                plexus_controller::xds::XdsFeed::start_with_tls(state.store.clone(), a, xtls)
                    .await
                    .with_context(|| format!("starting xDS on {a}"))?;
            state.xds = Some(feed.state.clone());
            Some(feed)
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match (&tls, args.https) {
        (Some(f), true) => {
            let cfg = plexus_pki::server_config(
                f,
                plexus_pki::ClientAuth::Optional,
                &[b"h2", b"http/1.1"],
            )?;
            let l = plexus_controller::tls::HttpsListener(plexus_pki::TlsListener::from_tcp(
                listener, cfg,
            )?);
            tracing::info!(listen = %l.0.local_addr(), db = %args.db.display(), "plexus-controller serving (https)");
            axum::serve(l, app(state))
                .with_graceful_shutdown(shutdown)
                .await?;
        }
        _ => {
            tracing::info!(listen = %listener.local_addr()?, db = %args.db.display(), "plexus-controller serving");
            axum::serve(listener, app(state))
                .with_graceful_shutdown(shutdown)
                .await?;
        }
    }
    drop(xds);
    southbound.abort();
    drop(election);
    // Give the election a moment to resign, so that a follower takes over at once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "controller".into())
}
