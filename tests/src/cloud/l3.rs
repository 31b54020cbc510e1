//! Routers and services of a cloud topology: creating them through the REST
//! API, and the `service` check (connection counts per backend against the
//! weights, then a backend removed through the API gets no new connections).

use super::spec::VpcSpec;
use super::state::ServiceState;
use super::{Api, Running};
use crate::topo::Outcome;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Creates the VPC's routers; returns the highest store revision written.
/// The `[external]` network as routers see it.
pub(super) struct ExternalGw {
    pub chassis_id: String,
    pub nexthop: String,
    pub nexthop_mac: String,
}

pub(super) fn create_routers(
    api: &Api,
    vpc_id: &str,
    v: &VpcSpec,
    subnet_ids: &HashMap<String, String>,
    external: Option<&ExternalGw>,
) -> Result<u64> {
    let mut rev = 0;
    for rt in &v.routers {
        let ids: Vec<&String> = rt
            .subnets
            .iter()
            .filter_map(|s| subnet_ids.get(s.get_ref()))
            .collect();
        let mut body = json!({"vpc_id": vpc_id, "name": rt.name.get_ref(), "subnet_ids": ids});
        if let (Some(ip), Some(x)) = (&rt.external_ip, external) {
            body["external_gateway"] = json!({
                "chassis_id": x.chassis_id, "ip": ip.get_ref(),
                "nexthop": x.nexthop, "nexthop_mac": x.nexthop_mac, "snat": true,
            });
        }
        let obj = api.post("/v1/routers", body)?;
        rev = rev.max(obj["revision"].as_u64().unwrap_or(0));
    }
    Ok(rev)
}

/// Creates every tenant's services (backends by port id); returns the highest
/// store revision written.
pub(super) fn create_services(
    r: &mut Running,
    vpc_ids: &HashMap<(String, String), String>,
    port_ids: &HashMap<String, String>,
) -> Result<u64> {
    let mut rev = 0;
    let tenants = r.cloud.tenants.clone();
    for t in &tenants {
        for s in &t.services {
            let vpc_id = vpc_ids
                .get(&(t.name.get_ref().clone(), s.vpc.get_ref().clone()))
                .context("service vpc")?;
            let target_port = s.target_port.unwrap_or(s.port);
            let mut backends = Vec::new();
            for (i, b) in s.backends.iter().enumerate() {
                let w = s.weights.as_ref().map_or(1, |w| w.get_ref()[i]);
                let pid = port_ids.get(b.get_ref()).context("backend port")?;
                backends.push((b.get_ref().clone(), pid.clone(), w));
            }
            let mut body = json!({
                "vpc_id": vpc_id, "name": s.name.get_ref(), "vip": s.vip.get_ref(),
                "port": s.port, "protocol": "tcp",
                "backends": backend_json(&backends, target_port),
            });
            if let Some(t) = &s.affinity_timeout {
                body["affinity"] = json!({"type": "client_ip", "timeout_seconds": t.get_ref()});
            }
            if let Some(subsets) = &s.subsets {
                for (b, sub) in body["backends"]
                    .as_array_mut()
                    .into_iter()
                    .flatten()
                    .zip(subsets.get_ref())
                {
                    b["subset"] = json!(sub);
                }
            }
            if let Some(splits) = &s.splits {
                body["traffic_policy"] = json!({"splits": splits
                    .iter()
                    .map(|x| json!({"subset": x.subset, "weight": x.weight}))
                    .collect::<Vec<_>>()});
            }
            let obj = r.api.post("/v1/services", body)?;
            rev = rev.max(obj["revision"].as_u64().unwrap_or(0));
            let st = ServiceState {
                name: s.name.get_ref().clone(),
                id: obj["id"].as_str().context("service id")?.to_owned(),
                vip: s.vip.get_ref().clone(),
                port: s.port,
                backends,
                target_port,
            };
            r.record(|x| x.services.push(st))?;
        }
    }
    Ok(rev)
}

fn backend_json(backends: &[(String, String, u32)], target_port: u16) -> Value {
    Value::Array(
        backends
            .iter()
            .map(|(_, pid, w)| json!({"port_id": pid, "target_port": target_port, "weight": w}))
            .collect(),
    )
}

/// Name servers started in the backends' namespaces; killed (by PID) on drop.
struct Servers(Vec<Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Connects `n` times from `from` to the VIP; counts the names answered
/// (failed connections count as `!failed`).
pub(super) fn count(
    r: &Running,
    exe: &str,
    from: &str,
    vip: &str,
    port: u16,
    n: u32,
    http: bool,
) -> Result<BTreeMap<String, u32>> {
    let h = r.host(from)?;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &h.netns, exe, "name-client"])
        .arg(format!("{vip}:{port}"))
        .args(["--count", &n.to_string(), "--timeout-secs", "2"]);
    if http {
        cmd.arg("--http");
    }
    let out = crate::proc::run_ok(&mut cmd, Duration::from_secs(60 + u64::from(n) / 10))?;
    let mut m = BTreeMap::new();
    for l in out.lines() {
        if let Some((name, c)) = l.rsplit_once(' ')
            && let Ok(c) = c.parse::<u32>()
        {
            m.insert(name.to_owned(), c);
        }
    }
    Ok(m)
}

/// Compares counts with the weights: each within ±`tol_pct` % of `n`.
fn judge(
    counts: &BTreeMap<String, u32>,
    backends: &[(String, String, u32)],
    n: u32,
    tol_pct: u32,
) -> Result<String> {
    let total_w: u32 = backends.iter().map(|b| b.2).sum();
    let mut parts = Vec::new();
    let mut bad = Vec::new();
    for (host, _, w) in backends {
        let got = counts.get(host).copied().unwrap_or(0);
        let want = f64::from(n) * f64::from(*w) / f64::from(total_w.max(1));
        parts.push(format!("{host} {got} (weight {w}, expected {want:.0})"));
        if (f64::from(got) - want).abs() > f64::from(n) * f64::from(tol_pct) / 100.0 || got == 0 {
            bad.push(host.clone());
        }
    }
    let others: u32 = counts
        .iter()
        .filter(|(k, _)| !backends.iter().any(|b| &b.0 == *k))
        .map(|(_, v)| *v)
        .sum();
    if others > 0 {
        bail!(
            "{}; {others} answers from elsewhere or failed: {counts:?}",
            parts.join(", ")
        );
    }
    if !bad.is_empty() {
        bail!(
            "{} — outside ±{tol_pct}% of {n}: {}",
            parts.join(", "),
            bad.join(", ")
        );
    }
    Ok(parts.join(", "))
}

/// The `service` check.
pub(super) fn check_service(
    r: &mut Running,
    exe: &Path,
    from: &str,
    service: &str,
    n: u32,
    tol_pct: u32,
    remove: Option<&str>,
) -> Vec<Outcome> {
    let mut out = Vec::new();
    let what = format!("{n} TCP connections {from} -> service {service} follow the weights");
    let Some(svc) = r.state.services.iter().find(|s| s.name == service).cloned() else {
        out.push(Outcome {
            what,
            result: Err(format!("service {service:?} was not created")),
        });
        return out;
    };
    let exe = exe.to_string_lossy().into_owned();
    let _servers = match start_servers(r, &exe, &svc) {
        Ok(s) => s,
        Err(e) => {
            out.push(Outcome {
                what,
                result: Err(format!("{e:#}")),
            });
            return out;
        }
    };
    let first = count(r, &exe, from, &svc.vip, svc.port, n, false)
        .and_then(|c| judge(&c, &svc.backends, n, tol_pct));
    let first_ok = first.is_ok();
    out.push(Outcome {
        what,
        result: first.map_err(|e| format!("{e:#}")),
    });
    let Some(rm) = remove else { return out };
    let what = format!("{rm} removed from {service} through the API gets no new connections");
    if !first_ok {
        out.push(Outcome {
            what,
            result: Err("skipped: the first phase failed".into()),
        });
        return out;
    }
    let result = (|| -> Result<String> {
        let rest: Vec<(String, String, u32)> =
            svc.backends.iter().filter(|b| b.0 != rm).cloned().collect();
        // The object is the spec flattened beside `id` and `revision`.
        let mut spec = r.api.get(&format!("/v1/services/{}", svc.id))?;
        if let Some(o) = spec.as_object_mut() {
            o.remove("id");
            o.remove("revision");
        }
        // Keep the other backends as stored (subset labels included).
        let gone: Vec<&str> = svc
            .backends
            .iter()
            .filter(|b| b.0 == rm)
            .map(|b| b.1.as_str())
            .collect();
        let kept_json: Vec<Value> = spec["backends"]
            .as_array()
            .context("service backends")?
            .iter()
            .filter(|b| !gone.contains(&b["port_id"].as_str().unwrap_or("")))
            .cloned()
            .collect();
        spec["backends"] = Value::Array(kept_json);
        let obj = r.api.put(&format!("/v1/services/{}", svc.id), spec)?;
        // Later `check` runs of a topology that stays up see the service as it is now.
        let (id, kept) = (svc.id.clone(), rest.clone());
        r.record(|x| {
            if let Some(s) = x.services.iter_mut().find(|s| s.id == id) {
                s.backends = kept;
            }
        })?;
        let rev = obj["revision"].as_u64().unwrap_or(0);
        r.api
            .wait_realized(&r.chassis_ids(), rev, Duration::from_secs(30))?;
        super::settle_datapaths(r)?;
        let c = count(r, &exe, from, &svc.vip, svc.port, n, false)?;
        if let Some(k) = c.get(rm).filter(|k| **k > 0) {
            bail!("{rm} still got {k} of {n} new connections: {c:?}");
        }
        judge(&c, &rest, n, tol_pct).map(|s| format!("after removal: {s}"))
    })();
    out.push(Outcome {
        what,
        result: result.map_err(|e| format!("{e:#}")),
    });
    out
}

/// Starts a name server (answers its host's name) in every backend of `svc`.
fn start_servers(r: &Running, exe: &str, svc: &ServiceState) -> Result<Servers> {
    let mut servers = Servers(Vec::new());
    for (host, _, _) in &svc.backends {
        let h = r.host(host)?;
        let c = Command::new("ip")
            .args(["netns", "exec", &h.netns, exe, "name-server"])
            .arg(format!("0.0.0.0:{}", svc.target_port))
            .args(["--name", host, "--timeout-secs", "120"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("name-server")?;
        servers.0.push(c);
    }
    std::thread::sleep(Duration::from_millis(300));
    Ok(servers)
}

/// The `affinity` check: every client's connections reach one backend.
pub(super) fn check_affinity(
    r: &Running,
    exe: &Path,
    from: &[&str],
    service: &str,
    n: u32,
) -> Outcome {
    let what = format!(
        "client-IP affinity: {n} TCP connections from each of {} -> service {service} reach one backend per client",
        from.join(", ")
    );
    let result = (|| -> Result<String> {
        let svc = r
            .state
            .services
            .iter()
            .find(|s| s.name == service)
            .cloned()
            .with_context(|| format!("service {service:?} was not created"))?;
        let exe = exe.to_string_lossy().into_owned();
        let _servers = start_servers(r, &exe, &svc)?;
        let mut parts = Vec::new();
        for c in from {
            let counts = count(r, &exe, c, &svc.vip, svc.port, n, false)?;
            match counts.iter().collect::<Vec<_>>().as_slice() {
                [(name, k)] if **k == n && svc.backends.iter().any(|b| &b.0 == *name) => {
                    parts.push(format!("{c}: all {n} to {name}"))
                }
                _ => bail!("{c}: connections spread or failed: {counts:?}"),
            }
        }
        Ok(parts.join("; "))
    })();
    Outcome {
        what,
        result: result.map_err(|e| format!("{e:#}")),
    }
}

/// The `gateway` check for one host: ping the gateway of its default route.
pub(super) fn check_gateway(r: &Running, host: &str) -> Outcome {
    let result = (|| -> Result<String> {
        let h = r.host(host)?;
        let routes = crate::proc::run_ok(
            Command::new("ip").args(["netns", "exec", &h.netns, "ip", "route", "show", "default"]),
            Duration::from_secs(10),
        )?;
        let gw = routes
            .split_whitespace()
            .skip_while(|w| *w != "via")
            .nth(1)
            .with_context(|| format!("no default route in {}: {routes:?}", h.netns))?
            .to_owned();
        if (0..3).any(|_| super::ping_once(&h.netns, &gw)) {
            Ok(format!("{} -> {gw}: answered", h.ip))
        } else {
            bail!("{} -> {gw}: no answer", h.ip)
        }
    })();
    Outcome {
        what: format!("{host} pings its gateway"),
        result: result.map_err(|e| format!("{e:#}")),
    }
}

/// `name-server ADDR --name NAME [--http]`: answers every connection with
/// `NAME\n` (with `http`, as the body of an HTTP/1.1 200 answer to the request
/// read first) until `timeout` passes.
pub fn name_server(addr: SocketAddr, name: &str, http: bool, timeout: Duration) -> Result<u64> {
    let l = TcpListener::bind(addr).with_context(|| format!("bind {addr}"))?;
    name_server_on(l, name, http, timeout)
}

/// [`name_server`] on a bound listener.
fn name_server_on(l: TcpListener, name: &str, http: bool, timeout: Duration) -> Result<u64> {
    l.set_nonblocking(true)?;
    let deadline = Instant::now() + timeout;
    let mut served = 0;
    let body = format!("{name}\n");
    let answer = if http {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        body
    };
    while Instant::now() < deadline {
        match l.accept() {
            Ok((mut s, _)) => {
                s.set_nonblocking(false)?;
                s.set_write_timeout(Some(Duration::from_secs(2)))?;
                s.set_read_timeout(Some(Duration::from_secs(2)))?;
                if http && read_http_head(&mut s).is_err() {
                    continue;
                }
                let _ = s.write_all(answer.as_bytes());
                served += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(served)
}

/// Reads an HTTP request head (up to the blank line; at most 16 KiB).
fn read_http_head(s: &mut TcpStream) -> Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf)?;
        if n == 0 || head.len() > 16 << 10 {
            bail!("no complete HTTP request head");
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(())
}

/// One answer of a name server: plain (`NAME\n`) or, with `http`, the body of
/// the answer to `GET /` (`!http-CODE` when the status is not 200).
fn fetch_name(addr: SocketAddr, http: bool, timeout: Duration) -> Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    if http {
        s.write_all(
            format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )?;
    }
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    if !http {
        return Ok(buf.trim().to_owned());
    }
    let (head, body) = buf
        .split_once("\r\n\r\n")
        .context("no HTTP header/body separator")?;
    let code = head.split_whitespace().nth(1).unwrap_or("?");
    if code != "200" {
        return Ok(format!("!http-{code}"));
    }
    Ok(body.trim().to_owned())
}

/// `name-client ADDR --count N [--http]`: `count` sequential connections (HTTP
/// `GET /` requests with `http`), each reading the server's name; returns
/// name → connections (`!failed` for failures).
pub fn name_client(
    addr: SocketAddr,
    count: u32,
    http: bool,
    timeout: Duration,
) -> BTreeMap<String, u32> {
    let mut m = BTreeMap::new();
    for _ in 0..count {
        let k = match fetch_name(addr, http, timeout) {
            Ok(n) if !n.is_empty() => n,
            _ => "!failed".to_owned(),
        };
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_server_answers_every_connection() {
        // Bound before the client starts: no race with the server thread.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let srv =
            std::thread::spawn(move || name_server_on(l, "b1", false, Duration::from_secs(3)));
        let m = name_client(addr, 20, false, Duration::from_secs(2));
        assert_eq!(m.get("b1"), Some(&20), "{m:?}");
        assert_eq!(srv.join().unwrap().unwrap(), 20);
    }

    #[test]
    fn http_name_server_answers_get_requests() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let srv = std::thread::spawn(move || name_server_on(l, "v2", true, Duration::from_secs(3)));
        let m = name_client(addr, 5, true, Duration::from_secs(2));
        assert_eq!(m.get("v2"), Some(&5), "{m:?}");
        // A plain client gets the HTTP answer, not a bare name: the modes differ.
        let plain = name_client(addr, 1, false, Duration::from_secs(2));
        assert!(!plain.contains_key("v2"), "{plain:?}");
        srv.join().unwrap().unwrap();
    }

    #[test]
    fn judging_counts_against_weights() {
        let b = vec![
            ("a".to_string(), String::new(), 1),
            ("b".to_string(), String::new(), 3),
        ];
        let ok: BTreeMap<String, u32> = [("a".into(), 22), ("b".into(), 78)].into();
        assert!(judge(&ok, &b, 100, 10).is_ok());
        let skewed: BTreeMap<String, u32> = [("a".into(), 50), ("b".into(), 50)].into();
        assert!(judge(&skewed, &b, 100, 10).is_err());
        let failed: BTreeMap<String, u32> =
            [("a".into(), 25), ("b".into(), 70), ("!failed".into(), 5)].into();
        assert!(judge(&failed, &b, 100, 10).is_err());
    }
}
