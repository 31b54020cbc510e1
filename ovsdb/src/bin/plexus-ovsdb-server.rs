//! `plexus-ovsdb-server`: serve an OVSDB database (durable log file or in-memory).
//!
//! ```text
//! plexus-ovsdb-server [--db FILE] [--schema FILE] [--remote ptcp:PORT[:IP] | pssl:PORT[:IP] | punix:PATH]...
//!                     [--private-key KEY.pem --certificate CERT.pem --ca-cert CA.pem]
//! ```
//! `pssl:` needs the three TLS files (as `ovsdb-server` does): clients must present a
//! certificate signed by the CA (`ovs-vsctl --db=ssl:… --private-key … --certificate …
//! --ca-cert …`). `plexus certs` makes a CA and certificates.
//! Without `--db` the database is in memory. `--schema` defaults to the bundled
//! `vswitch.ovsschema`. For each remote it prints `listening on tcp:IP:PORT` / `unix:PATH`.

use std::path::PathBuf;

use plexus_ovsdb::db::Database;
use plexus_ovsdb::schema::DatabaseSchema;
use plexus_ovsdb::server::{Server, ServerCore};

fn usage() -> ! {
    eprintln!(
        "usage: plexus-ovsdb-server [--db FILE] [--schema FILE] [--remote ptcp:PORT[:IP]|pssl:PORT[:IP]|punix:PATH]... [--private-key F --certificate F --ca-cert F]"
    );
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let mut db: Option<PathBuf> = None;
    let mut schema: Option<PathBuf> = None;
    let mut remotes = Vec::new();
    let (mut key, mut cert, mut ca): (Option<PathBuf>, Option<PathBuf>, Option<PathBuf>) =
        (None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--db" => db = Some(args.next().unwrap_or_else(|| usage()).into()),
            "--schema" => schema = Some(args.next().unwrap_or_else(|| usage()).into()),
            "--remote" => remotes.push(args.next().unwrap_or_else(|| usage())),
            "--private-key" => key = Some(args.next().unwrap_or_else(|| usage()).into()),
            "--certificate" => cert = Some(args.next().unwrap_or_else(|| usage()).into()),
            "--ca-cert" => ca = Some(args.next().unwrap_or_else(|| usage()).into()),
            _ => usage(),
        }
    }
    let schema = match schema {
        Some(p) => DatabaseSchema::parse(&std::fs::read_to_string(&p).expect("read schema"))
            .expect("parse schema"),
        None => DatabaseSchema::vswitch(),
    };
    let mut core = ServerCore::new();
    match db {
        Some(p) => core
            .add_durable_database(&p, &schema)
            .expect("open database"),
        None => core.add_database(Database::new(schema)),
    }
    let tls =
        match plexus_pki::TlsFiles::from_options(key.as_deref(), cert.as_deref(), ca.as_deref())
            .and_then(|f| {
                f.map(|f| plexus_pki::server_config(&f, plexus_pki::ClientAuth::Required, &[]))
                    .transpose()
            }) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("plexus-ovsdb-server: {e}");
                std::process::exit(1)
            }
        };
    let server = Server::new(core);
    if remotes.is_empty() {
        remotes.push("ptcp:6640:127.0.0.1".into());
    }
    for r in remotes {
        if let Some(rest) = r.strip_prefix("ptcp:") {
            let (port, ip) = rest.split_once(':').unwrap_or((rest, "127.0.0.1"));
            let a = server
                .listen_tcp(&format!("{ip}:{port}"))
                .await
                .expect("listen tcp");
            println!("listening on tcp:{a}");
        } else if let Some(rest) = r.strip_prefix("pssl:") {
            let Some(cfg) = tls.clone() else {
                eprintln!(
                    "plexus-ovsdb-server: {r}: pssl: needs --private-key, --certificate and --ca-cert"
                );
                std::process::exit(1)
            };
            let (port, ip) = rest.split_once(':').unwrap_or((rest, "127.0.0.1"));
            let a = server
                .listen_tls(&format!("{ip}:{port}"), cfg)
                .await
                .expect("listen ssl");
            println!("listening on ssl:{a}");
        } else if let Some(path) = r.strip_prefix("punix:") {
            server
                .listen_unix(path.as_ref())
                .await
                .expect("listen unix");
            println!("listening on unix:{path}");
        } else {
            usage();
        }
    }
    tokio::signal::ctrl_c().await.ok();
}
