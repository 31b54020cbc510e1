//! `plexus`: command-line client of the controller's REST API.
//!
//! ```text
//! plexus [--url URL] [--token T | --token-file F] [-o table|json] RESOURCE VERB [ID] [ARGS]
//!   RESOURCE: tenants vpcs subnets routers ports security-groups services chassis
//!   VERB:     list | get ID | create (--data JSON | --file F) | update ID (--data|--file) [--if-match ETAG] | delete ID
//! plexus status
//! plexus xds bootstrap --node ID [--xds HOST:PORT] [--cluster C] [--delta] [--grpc]
//! plexus xds status
//! ```

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
    /// Store revision and object counts.
    Status,
    /// xDS: `bootstrap` (print a proxy bootstrap) and `status` (per-proxy ACK/NACK).
    Xds {
        #[command(subcommand)]
        cmd: XdsCmd,
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
    let cols = columns(kind);
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
    let token = match (&cli.token, &cli.token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(f)) => Some(token_from_file(f)?),
        (None, None) => None,
    };
    let c = Client {
        http: reqwest::Client::new(),
        base: cli.url.trim_end_matches('/').to_string(),
        token,
    };
    let (kind, verb) = match cli.cmd {
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
            let b = if grpc {
                plexus_xds::bootstrap::grpc(&o)
            } else {
                plexus_xds::bootstrap::envoy(&o)
            };
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
