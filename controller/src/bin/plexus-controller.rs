//! `plexus-controller`: the REST API over the embedded store.

use anyhow::{Context, bail};
use clap::Parser;
use plexus_controller::api::{AppState, Tokens, app};
use plexus_controller::southbound::Southbound;
use plexus_controller::store::RedbStore;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(version, about = "The Plexus controller")]
struct Args {
    /// Address of the REST API.
    #[arg(long, default_value = "127.0.0.1:8480")]
    listen: SocketAddr,
    /// The store file (created if missing).
    #[arg(long, default_value = "plexus.redb")]
    db: PathBuf,
    /// Bearer tokens, one `TOKEN SCOPE` per line (scope `admin` or `read`).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Serve without authentication (tests on loopback only).
    #[arg(long, conflicts_with = "token_file")]
    insecure_no_auth: bool,
    /// OpenFlow listener chassis switches connect to (e.g. `ptcp:6653:127.0.0.1`);
    /// chassis with `endpoint.openflow` are connected to in any case.
    #[arg(long)]
    openflow_listen: Option<String>,
    /// Serve xDS (ADS + per-type, SotW + delta) here, e.g. `127.0.0.1:18000`: services
    /// and their traffic policy reach every connected Envoy / proxyless gRPC client.
    #[arg(long)]
    xds_listen: Option<SocketAddr>,
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
    let store = RedbStore::open(&args.db)
        .with_context(|| format!("opening store {}", args.db.display()))?;
    let southbound = Southbound::start(store.clone(), args.openflow_listen.as_deref()).await?;
    let mut state = AppState::new(store, tokens);
    state.sync = southbound.status();
    state.switch_ports = southbound.switch_ports();
    let xds = match args.xds_listen {
        Some(a) => {
            let feed = plexus_controller::xds::XdsFeed::start(state.store.clone(), a)
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
    tracing::info!(listen = %listener.local_addr()?, db = %args.db.display(), "plexus-controller serving");
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    drop(xds);
    drop(southbound);
    Ok(())
}
