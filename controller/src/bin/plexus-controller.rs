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
    let store = RedbStore::open(&args.db)
        .with_context(|| format!("opening store {}", args.db.display()))?;
    let tls = plexus_pki::TlsFiles::from_options(
        args.private_key.as_deref(),
        args.certificate.as_deref(),
        args.ca_cert.as_deref(),
    )?;
    let southbound =
        Southbound::start_with_tls(store.clone(), args.openflow_listen.as_deref(), tls.as_ref())
            .await?;
    let mut state = AppState::new(store, tokens);
    if let Some(p) = &args.audit_log {
        let log = plexus_controller::api::AuditLog::open(p)
            .with_context(|| format!("opening audit log {}", p.display()))?;
        state.audit = Some(std::sync::Arc::new(log));
    }
    state.sync = southbound.status();
    state.switch_ports = southbound.switch_ports();
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
    drop(southbound);
    Ok(())
}
