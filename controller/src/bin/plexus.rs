//! `plexus`: command-line client of the controller's REST API.
//!
//! ```text
//! plexus [--url URL] [--token T | --token-file F] [-o table|json] RESOURCE VERB [ID] [ARGS]
//!   RESOURCE: tenants vpcs subnets routers ports security-groups services chassis
//!   VERB:     list | get ID | create (--data JSON | --file F) | update ID (--data|--file) [--if-match ETAG] | delete ID
//! plexus status
//! plexus port attach --tap NAME --chassis ID|NAME [--bridge BR] [--ovsdb EP] [--multi-queue] [--owner UID] [--mtu N] PORT
//! plexus port detach [--tap NAME] [--ovsdb EP] PORT
//! plexus port status PORT
//! plexus xds bootstrap --node ID [--xds HOST:PORT] [--cluster C] [--delta] [--grpc]
//! plexus xds status
//! plexus certs ca DIR [--force]                 # DIR/ca-key.pem, DIR/ca-cert.pem
//! plexus certs issue DIR NAME [--san NAME|IP]…  # DIR/NAME-key.pem, DIR/NAME-cert.pem
//! ```
//!
//! An `https://` URL is verified against `--cacert` (the CA of `plexus certs`);
//! `--cert`/`--key` present a client certificate.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use plexus_api::Problem;
use serde_json::Value;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Debug, Parser)]
#[command(version, about = "Plexus command-line client")]
struct Cli {
    /// Controller base URL.
    #[arg(long, env = "PLEXUS_URL", default_value = "http://127.0.0.1:8480")]
    url: String,
    /// Bearer token.
    #[arg(long, env = "PLEXUS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File whose first token is used (same format as the controller's token file).
    #[arg(long, env = "PLEXUS_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    #[arg(short, long, value_enum, default_value = "table")]
    output: Output,
    /// CA certificate that verifies an https:// controller.
    #[arg(long, env = "PLEXUS_CACERT")]
    cacert: Option<PathBuf>,
    /// Client certificate (with --key and --cacert) for an https:// controller.
    #[arg(long, requires_all = ["key", "cacert"])]
    cert: Option<PathBuf>,
    #[arg(long, requires_all = ["cert", "cacert"])]
    key: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    Tenants(Verb),
    Vpcs(Verb),
    Subnets(Verb),
    Routers(Verb),
    Ports(Verb),
    #[command(name = "security-groups", alias = "sg")]
    SecurityGroups(Verb),
    Services(Verb),
    Chassis(Verb),
    /// Attach a VM's tap to a port on this host's switch, detach it, show its state.
    Port {
        #[command(subcommand)]
        cmd: PortCmd,
    },
    /// Store revision and object counts.
    Status,
    /// xDS: `bootstrap` (print a proxy bootstrap) and `status` (per-proxy ACK/NACK).
    Xds {
        #[command(subcommand)]
        cmd: XdsCmd,
    },
    /// A local CA and certificates for TLS (REST, OpenFlow, OVSDB, xDS).
    Certs {
        #[command(subcommand)]
        cmd: CertsCmd,
    },
}

#[derive(Debug, Subcommand)]
enum CertsCmd {
    /// Create the CA: DIR/ca-key.pem (0600) and DIR/ca-cert.pem. An existing CA is kept
    /// unless --force.
    Ca {
        dir: PathBuf,
        #[arg(long)]
        force: bool,
    },
    /// Issue DIR/NAME-key.pem and DIR/NAME-cert.pem, signed by the CA in DIR, for TLS
    /// server and client use; subject alternative names NAME, localhost, 127.0.0.1, ::1
    /// and every --san.
    Issue {
        dir: PathBuf,
        name: String,
        /// Extra DNS name or IP address (repeatable).
        #[arg(long = "san")]
        sans: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum XdsCmd {
    /// Print an Envoy bootstrap (or with `--grpc` a gRPC xDS bootstrap) that points at
    /// the controller's ADS server (`plexus-controller --xds-listen`).
    Bootstrap {
        /// Node id of the proxy.
        #[arg(long)]
        node: String,
        /// ADS server address `HOST:PORT`, or `unix:PATH` (Envoy) for a node-local
        /// socket that reaches the controller from any network namespace.
        #[arg(long, default_value = "127.0.0.1:18000")]
        xds: String,
        /// Node cluster.
        #[arg(long, default_value = "plexus")]
        cluster: String,
        /// Incremental (delta) xDS.
        #[arg(long)]
        delta: bool,
        /// Envoy admin port on 127.0.0.1 (0 = no admin listener).
        #[arg(long, default_value_t = 15000)]
        admin_port: u16,
        /// A gRPC xDS bootstrap (`GRPC_XDS_BOOTSTRAP`) instead of an Envoy one.
        #[arg(long)]
        grpc: bool,
    },
    /// The controller's xDS feed status and each proxy's ACK/NACK state.
    Status,
}

#[derive(Debug, Subcommand)]
enum PortCmd {
    /// Create (or adopt) tap NAME, plug it into the local switch bound to PORT, and bind
    /// PORT to this chassis + NAME. Boot the VM with
    /// `-netdev tap,id=n0,ifname=NAME,script=no,downscript=no -device virtio-net-pci,netdev=n0,mac=<port MAC>`.
    Attach {
        /// Port id.
        port: String,
        /// Tap device name (created persistent if it does not exist).
        #[arg(long)]
        tap: String,
        /// This host's chassis (id or name).
        #[arg(long, env = "PLEXUS_CHASSIS")]
        chassis: String,
        /// The switch's bridge.
        #[arg(long, default_value = "br-int")]
        bridge: String,
        /// The switch's OVSDB (`unix:PATH` or `tcp:IP:PORT`).
        #[arg(long, env = "PLEXUS_OVSDB", default_value = plexus_cni::ovs::DEFAULT_DB)]
        ovsdb: String,
        /// Wait until the switch applied the new port (`cur_cfg`).
        #[arg(long)]
        wait: bool,
        /// Create the tap multi-queue (qemu `queues=N`).
        #[arg(long)]
        multi_queue: bool,
        /// Owner uid of a created tap (qemu not running as root).
        #[arg(long)]
        owner: Option<u32>,
        /// MTU of the tap.
        #[arg(long)]
        mtu: Option<u32>,
    },
    /// Unplug the port's tap, delete it if `attach` created it, unbind the port.
    Detach {
        port: String,
        /// The tap (default: the port's binding).
        #[arg(long)]
        tap: Option<String>,
        #[arg(long, env = "PLEXUS_OVSDB", default_value = plexus_cni::ovs::DEFAULT_DB)]
        ovsdb: String,
    },
    /// Binding and switch state of a port.
    Status { port: String },
}

#[derive(Debug, clap::Args)]
struct Verb {
    #[command(subcommand)]
    verb: VerbCmd,
}

#[derive(Debug, clap::Args)]
struct Body {
    /// The spec as JSON.
    #[arg(long, conflicts_with = "file")]
    data: Option<String>,
    /// A file holding the spec as JSON (`-` for stdin).
    #[arg(long)]
    file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum VerbCmd {
    /// List all (follows pagination).
    List {
        #[arg(long, default_value_t = 500)]
        page_size: usize,
    },
    Get {
        id: String,
    },
    Create {
        #[command(flatten)]
        body: Body,
    },
    /// Replace the spec.
    Update {
        id: String,
        #[command(flatten)]
        body: Body,
        #[arg(long)]
        if_match: Option<String>,
    },
    Delete {
        id: String,
        #[arg(long)]
        if_match: Option<String>,
    },
}

/// Table columns per resource (JSON keys; nested with `.`; arrays joined).
fn columns(kind: &str) -> &'static [&'static str] {
    match kind {
        "tenants" => &["id", "name", "revision"],
        "vpcs" => &["id", "name", "tenant_id", "cidrs", "vni", "revision"],
        "subnets" => &["id", "name", "vpc_id", "cidr", "gateway", "revision"],
        "routers" => &["id", "name", "vpc_id", "subnet_ids", "revision"],
        "ports" => &[
            "id",
            "name",
            "subnet_id",
            "mac",
            "ips",
            "binding.chassis_id",
            "binding.iface",
            "revision",
        ],
        "security-groups" => &["id", "name", "tenant_id", "rules", "revision"],
        "services" => &[
            "id", "name", "vpc_id", "vip", "port", "protocol", "backends", "revision",
        ],
        "chassis" => &["id", "name", "vtep_ip", "endpoint.openflow", "revision"],
        _ => &["id"],
    }
}

fn cell(v: &Value, path: &str) -> String {
    let mut cur = v;
    for p in path.split('.') {
        match cur.get(p) {
            Some(x) => cur = x,
            None => return "-".into(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        Value::Array(a) if a.iter().all(|x| x.is_string()) => a
            .iter()
            .map(|x| x.as_str().unwrap())
            .collect::<Vec<_>>()
            .join(","),
        Value::Array(a) => format!("[{}]", a.len()),
        other => other.to_string(),
    }
}

fn table(kind: &str, items: &[Value]) -> String {
    table_with(columns(kind), items)
}

fn table_with(cols: &[&str], items: &[Value]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|it| cols.iter().map(|c| cell(it, c)).collect())
        .collect();
    let heads: Vec<String> = cols.iter().map(|c| c.to_uppercase()).collect();
    let widths: Vec<usize> = (0..cols.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([heads[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |r: &[String]| {
        r.iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(&heads);
    for r in &rows {
        out.push('\n');
        out.push_str(&line(r));
    }
    out
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        if_match: Option<&str>,
    ) -> anyhow::Result<Value> {
        let mut rb = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        if let Some(m) = if_match {
            let m = if m.starts_with('"') || m == "*" {
                m.to_string()
            } else {
                format!("\"{m}\"")
            };
            rb = rb.header("If-Match", m);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb
            .send()
            .await
            .with_context(|| format!("contacting {}", self.base))?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            if let Ok(p) = serde_json::from_str::<Problem>(&text) {
                bail!("{p}");
            }
            bail!("{status}: {text}");
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_str(&text)?)
    }
}

fn read_body(b: &Body) -> anyhow::Result<Value> {
    let text = match (&b.data, &b.file) {
        (Some(d), _) => d.clone(),
        (None, Some(f)) if f.as_os_str() == "-" => std::io::read_to_string(std::io::stdin())?,
        (None, Some(f)) => std::fs::read_to_string(f).with_context(|| f.display().to_string())?,
        (None, None) => bail!("give the spec with --data JSON or --file PATH"),
    };
    serde_json::from_str(&text).context("the spec is not valid JSON")
}

fn token_from_file(p: &PathBuf) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(p).with_context(|| p.display().to_string())?;
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .find(|l| !l.is_empty())
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_string)
        .context("no token in the token file")
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Err(e) = run(Cli::parse()).await {
        eprintln!("plexus: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Cmd::Certs { cmd } = &cli.cmd {
        match cmd {
            CertsCmd::Ca { dir, force } => {
                let p = plexus_pki::ca::init(dir, *force)?;
                println!("{}", p.display());
            }
            CertsCmd::Issue { dir, name, sans } => {
                let f = plexus_pki::ca::issue(dir, name, sans)?;
                println!("{}", f.private_key.display());
                println!("{}", f.certificate.display());
            }
        }
        return Ok(());
    }
    let mut http = reqwest::Client::builder();
    if let Some(ca) = &cli.cacert {
        let cfg = match (&cli.cert, &cli.key) {
            (Some(c), Some(k)) => plexus_pki::client_config(
                &plexus_pki::TlsFiles {
                    private_key: k.clone(),
                    certificate: c.clone(),
                    ca_cert: ca.clone(),
                },
                &[b"http/1.1"],
            )?,
            _ => plexus_pki::client_config_no_auth(ca, &[b"http/1.1"])?,
        };
        http = http.use_preconfigured_tls((*cfg).clone());
    }
    let http = http.build().context("HTTP client")?;
    let token = match (&cli.token, &cli.token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(f)) => Some(token_from_file(f)?),
        (None, None) => None,
    };
    let c = Client {
        http,
        base: cli.url.trim_end_matches('/').to_string(),
        token,
    };
    let (kind, verb) = match cli.cmd {
        Cmd::Port { cmd } => return port_cmd(&c, cli.output, cmd).await,
        Cmd::Xds {
            cmd:
                XdsCmd::Bootstrap {
                    node,
                    xds,
                    cluster,
                    delta,
                    admin_port,
                    grpc,
                },
        } => {
            let o = plexus_xds::bootstrap::BootstrapOptions {
                node_id: node,
                cluster,
                xds,
                delta,
                admin_port,
            };
            let mut b = if grpc {
                plexus_xds::bootstrap::grpc(&o)
            } else {
                plexus_xds::bootstrap::envoy(&o)
            };
            // --cert/--key/--cacert: Envoy reaches an --xds-tls controller over mTLS.
            if let (Some(cert), Some(key), Some(ca)) = (&cli.cert, &cli.key, &cli.cacert) {
                if grpc {
                    bail!("--cert/--key/--cacert apply to Envoy bootstraps only");
                }
                let abs =
                    |p: &PathBuf| std::path::absolute(p).map(|p| p.to_string_lossy().into_owned());
                let host = o.xds.rsplit_once(':').map_or(o.xds.as_str(), |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let sni = if host.parse::<std::net::IpAddr>().is_ok() {
                    "localhost"
                } else {
                    host
                };
                plexus_xds::bootstrap::with_mtls(&mut b, &abs(cert)?, &abs(key)?, &abs(ca)?, sni);
            }
            println!("{}", serde_json::to_string_pretty(&b)?);
            return Ok(());
        }
        Cmd::Xds {
            cmd: XdsCmd::Status,
        } => {
            let v = c
                .send(reqwest::Method::GET, "/v1/xds/status", None, None)
                .await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            return Ok(());
        }
        Cmd::Status => {
            let v = c
                .send(reqwest::Method::GET, "/v1/status", None, None)
                .await?;
            match cli.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                Output::Table => {
                    println!("revision  {}", v["revision"]);
                    let ctl = &v["controller"];
                    if ctl.is_object() {
                        let s = |k: &str| ctl[k].as_str().unwrap_or("-").to_string();
                        println!(
                            "controller  store={} role={} node={} leader={}",
                            s("store"),
                            s("role"),
                            s("node"),
                            s("leader")
                        );
                    }
                    if let Some(o) = v["objects"].as_object() {
                        for (k, n) in o {
                            println!("{k:<16}{n}");
                        }
                    }
                    match v["chassis"].as_object() {
                        Some(ch) if !ch.is_empty() => {
                            println!(
                                "{:<38} {:<9} {:>9} {:>7} {:>6} {:>6}  error",
                                "chassis", "connected", "realized", "flows", "adds", "dels"
                            );
                            for (id, c) in ch {
                                println!(
                                    "{:<38} {:<9} {:>9} {:>7} {:>6} {:>6}  {}",
                                    id,
                                    c["connected"],
                                    c["realized_revision"],
                                    c["flow_count"],
                                    c["flow_adds"],
                                    c["flow_deletes"],
                                    c["last_error"].as_str().unwrap_or("")
                                );
                            }
                        }
                        _ => println!(
                            "chassis sync state: none (no switch session{})",
                            if ctl["role"] == "follower" {
                                ": a follower does not program switches"
                            } else {
                                ""
                            }
                        ),
                    }
                }
            }
            return Ok(());
        }
        Cmd::Tenants(v) => ("tenants", v.verb),
        Cmd::Vpcs(v) => ("vpcs", v.verb),
        Cmd::Subnets(v) => ("subnets", v.verb),
        Cmd::Routers(v) => ("routers", v.verb),
        Cmd::Ports(v) => ("ports", v.verb),
        Cmd::SecurityGroups(v) => ("security-groups", v.verb),
        Cmd::Services(v) => ("services", v.verb),
        Cmd::Chassis(v) => ("chassis", v.verb),
        Cmd::Certs { .. } => bail!("certs is handled before connecting"),
    };
    use reqwest::Method;
    let one = match verb {
        VerbCmd::List { page_size } => {
            let mut items = Vec::new();
            let mut tok: Option<String> = None;
            loop {
                let mut path = format!("/v1/{kind}?limit={page_size}");
                if let Some(t) = &tok {
                    path.push_str(&format!("&page_token={t}"));
                }
                let v = c.send(Method::GET, &path, None, None).await?;
                items.extend(v["items"].as_array().cloned().unwrap_or_default());
                match v["next_page_token"].as_str() {
                    Some(t) => tok = Some(t.to_string()),
                    None => break,
                }
            }
            match cli.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&items)?),
                Output::Table => println!("{}", table(kind, &items)),
            }
            return Ok(());
        }
        VerbCmd::Get { id } => {
            c.send(Method::GET, &format!("/v1/{kind}/{id}"), None, None)
                .await?
        }
        VerbCmd::Create { body } => {
            c.send(
                Method::POST,
                &format!("/v1/{kind}"),
                Some(read_body(&body)?),
                None,
            )
            .await?
        }
        VerbCmd::Update { id, body, if_match } => {
            c.send(
                Method::PUT,
                &format!("/v1/{kind}/{id}"),
                Some(read_body(&body)?),
                if_match.as_deref(),
            )
            .await?
        }
        VerbCmd::Delete { id, if_match } => {
            c.send(
                Method::DELETE,
                &format!("/v1/{kind}/{id}"),
                None,
                if_match.as_deref(),
            )
            .await?;
            println!("deleted {kind} {id}");
            return Ok(());
        }
    };
    match cli.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&one)?),
        Output::Table => println!("{}", table(kind, std::slice::from_ref(&one))),
    }
    Ok(())
}

/// A chassis given by id or name → its id.
async fn chassis_id(c: &Client, s: &str) -> anyhow::Result<String> {
    if let Ok(v) = c
        .send(
            reqwest::Method::GET,
            &format!("/v1/chassis/{s}"),
            None,
            None,
        )
        .await
    {
        return Ok(v["id"].as_str().unwrap_or(s).to_string());
    }
    let v = c
        .send(reqwest::Method::GET, "/v1/chassis?limit=1000", None, None)
        .await?;
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|x| x["name"] == s)
        .and_then(|x| x["id"].as_str().map(str::to_string))
        .with_context(|| format!("no chassis with id or name {s:?}"))
}

/// Runs the blocking attach/detach plumbing off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, plexus_cni::error::CniError> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await?
        .map_err(|e| anyhow::anyhow!("{}: {}", e.msg, e.details))
}

async fn port_cmd(c: &Client, out: Output, cmd: PortCmd) -> anyhow::Result<()> {
    use plexus_cni::controller::Controller;
    let ctl = Controller::with_token(&c.base, c.token.clone(), std::time::Duration::from_secs(10))
        .map_err(|e| anyhow::anyhow!("{}: {}", e.msg, e.details))?;
    match cmd {
        PortCmd::Attach {
            port,
            tap,
            chassis,
            bridge,
            ovsdb,
            wait,
            multi_queue,
            owner,
            mtu,
        } => {
            let chassis = chassis_id(c, &chassis).await?;
            let a = blocking(move || {
                plexus_cni::vm::attach(
                    &ctl,
                    &plexus_cni::vm::TapAttach {
                        tap: &tap,
                        port_id: &port,
                        chassis_id: &chassis,
                        bridge: &bridge,
                        ovsdb: Some(&ovsdb),
                        ovs_wait: wait,
                        multi_queue,
                        owner,
                        mtu,
                    },
                )
            })
            .await?;
            let b = a
                .port
                .spec
                .binding
                .clone()
                .unwrap_or_else(|| plexus_api::PortBinding {
                    chassis_id: String::new(),
                    iface: String::new(),
                });
            match out {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "port": a.port, "tap": b.iface, "created": a.created,
                    }))?
                ),
                Output::Table => {
                    let mac = a.port.spec.mac.as_deref().unwrap_or("-");
                    println!(
                        "attached tap {} ({}) to port {} on chassis {}: MAC {mac}, IPs {}",
                        b.iface,
                        if a.created { "created" } else { "adopted" },
                        a.port.id,
                        b.chassis_id,
                        a.port.spec.ips.join(",")
                    );
                    println!(
                        "qemu: -netdev tap,id=n0,ifname={},script=no,downscript=no -device virtio-net-pci,netdev=n0,mac={mac}",
                        b.iface
                    );
                }
            }
        }
        PortCmd::Detach { port, tap, ovsdb } => {
            let p = port.clone();
            let d =
                blocking(move || plexus_cni::vm::detach(&ctl, &p, tap.as_deref(), Some(&ovsdb)))
                    .await?;
            match (out, &d.iface) {
                (Output::Json, _) => println!(
                    "{}",
                    serde_json::json!({"port": port, "iface": d.iface, "tap_deleted": d.tap_deleted})
                ),
                (Output::Table, None) => println!("port {port} is not attached"),
                (Output::Table, Some(i)) => println!(
                    "detached {i} from port {port}{}",
                    if d.tap_deleted {
                        " and deleted the tap"
                    } else {
                        " (tap kept: attach did not create it)"
                    }
                ),
            }
        }
        PortCmd::Status { port } => {
            let v = c
                .send(
                    reqwest::Method::GET,
                    &format!("/v1/ports/{port}/status"),
                    None,
                    None,
                )
                .await?;
            match out {
                Output::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                Output::Table => println!(
                    "{}",
                    table_with(
                        &[
                            "id",
                            "state",
                            "binding.chassis_id",
                            "binding.iface",
                            "chassis_connected",
                            "ofport"
                        ],
                        std::slice::from_ref(&v)
                    )
                ),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn table_cells() {
        let p = json!({"id": "p1", "name": "vm", "subnet_id": "s", "mac": "02:00:00:00:00:01",
                       "ips": ["10.0.0.2", "10.0.0.3"], "binding": {"chassis_id": "c", "iface": "tap0"}, "revision": 4});
        let t = table("ports", &[p]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("ID"));
        assert!(lines[1].contains("10.0.0.2,10.0.0.3"));
        assert!(lines[1].contains("tap0"));
    }
}
