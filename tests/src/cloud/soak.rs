//! `plexus-topo soak FILE --duration D`: a cloud topology under traffic and
//! churn for `D`, checking that nothing leaks and nothing breaks.
//!
//! Traffic: a ping every 50 ms between the two hosts of the file's first
//! `reach` check that must reach, for the whole run (0 % loss required).
//! Churn, one step per round, round-robin, each through the REST API and
//! waited for until every chassis realized it:
//! * a port is created on a host's subnet (IPAM, compiler, flows) and the
//!   one of the previous round deleted;
//! * a security group gets an extra ingress rule (another port each round),
//!   then its original rules back;
//! * a service (if the file has one) loses its last backend, then gets it back.
//!
//! After every step the file's `reach` checks run (the matrix must hold),
//! and RSS and open file descriptors of the controller and every
//! `plexus-vswitchd` are sampled: the median of the last quarter of the
//! samples may exceed the median of the first quarter by at most 10 % + 4 MiB
//! (RSS) and 4 (fds). Hosts are not created or deleted: `plexus-vswitchd`
//! started by `plexus-topo` takes its ports at start.

use super::spec::{CheckSpec, Cloud, Expect};
use super::{Running, up, verify};
use crate::topo::Outcome;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Parses `30m`, `120s`, `2h` or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let (n, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, ""), |i| s.split_at(i));
    let n: u64 = n.parse().with_context(|| format!("duration {s:?}"))?;
    Ok(Duration::from_secs(match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => bail!("duration {s:?}: unit must be s, m or h"),
    }))
}

/// RSS (KiB) and open fds of a process.
fn usage(pid: u32) -> Option<(u64, u64)> {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = st
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some((rss, fds))
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// The churn state between rounds.
#[derive(Default)]
struct Churn {
    round: u64,
    extra_port: Option<String>,
    group: Option<(String, Value)>,
    service: Option<(String, Value)>,
}

fn items(v: Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

/// Removes what the given spec fields of a stored object's body must not
/// carry on a PUT (server-set fields).
fn spec_of(obj: &Value, keep: &[&str]) -> Value {
    let mut o = serde_json::Map::new();
    for k in keep {
        if let Some(v) = obj.get(*k) {
            o.insert((*k).to_string(), v.clone());
        }
    }
    Value::Object(o)
}

impl Churn {
    /// One churn step; returns what it did and the revision it produced.
    fn step(&mut self, r: &Running) -> Result<(String, u64)> {
        self.round += 1;
        let rev = |v: &Value| v["revision"].as_u64().unwrap_or(0);
        match self.round % 3 {
            0 => {
                // A port on the first host's subnet, the previous one deleted.
                let mut did = Vec::new();
                let mut last = 0;
                if let Some(id) = self.extra_port.take() {
                    r.api.delete(&format!("/v1/ports/{id}"))?;
                    did.push(format!("deleted port {id}"));
                }
                let ports = items(r.api.get("/v1/ports?limit=1000")?);
                let host = ports
                    .iter()
                    .find(|p| p["binding"].is_object())
                    .context("no bound port")?;
                let p = r.api.post(
                    "/v1/ports",
                    json!({"subnet_id": host["subnet_id"], "name": format!("soak-{}", self.round),
                           "binding": {"chassis_id": host["binding"]["chassis_id"],
                                       "iface": format!("soak{}", self.round)}}),
                )?;
                last = last.max(rev(&p));
                self.extra_port = p["id"].as_str().map(str::to_owned);
                did.push(format!("created port {}", p["ips"][0]));
                Ok((
                    did.join(", "),
                    last.max(r.api.get("/v1/status")?["revision"].as_u64().unwrap_or(0)),
                ))
            }
            1 => {
                // A security group: an extra rule, then its own rules back.
                if let Some((id, orig)) = self.group.take() {
                    let g = r.api.put(&format!("/v1/security-groups/{id}"), orig)?;
                    return Ok((format!("restored the rules of group {id}"), rev(&g)));
                }
                let groups = items(r.api.get("/v1/security-groups?limit=1000")?);
                let g = groups.first().context("no security group")?;
                let id = g["id"].as_str().context("group id")?.to_owned();
                let orig = spec_of(g, &["tenant_id", "name", "description", "rules"]);
                let mut changed = orig.clone();
                let port = 7000 + (self.round % 1000) as u16;
                let extra = json!({"direction": "ingress", "protocol": "tcp",
                    "port_min": port, "port_max": port, "remote_cidr": "192.0.2.0/24"});
                match changed["rules"].as_array_mut() {
                    Some(a) => a.push(extra),
                    None => changed["rules"] = json!([extra]),
                }
                let g2 = r.api.put(&format!("/v1/security-groups/{id}"), changed)?;
                self.group = Some((id.clone(), orig));
                Ok((
                    format!("group {id}: + tcp/{port} from 192.0.2.0/24"),
                    rev(&g2),
                ))
            }
            _ => {
                // A service backend flaps.
                if let Some((id, orig)) = self.service.take() {
                    let s = r.api.put(&format!("/v1/services/{id}"), orig)?;
                    return Ok((format!("service {id}: backend back"), rev(&s)));
                }
                let svcs = items(r.api.get("/v1/services?limit=1000")?);
                let Some(s) = svcs.first() else {
                    return Ok((
                        "no service to flap".into(),
                        r.api.get("/v1/status")?["revision"].as_u64().unwrap_or(0),
                    ));
                };
                let id = s["id"].as_str().context("service id")?.to_owned();
                let orig = spec_of(
                    s,
                    &[
                        "vpc_id",
                        "name",
                        "vip",
                        "port",
                        "protocol",
                        "backends",
                        "traffic_policy",
                        "health_check",
                    ],
                );
                let mut changed = orig.clone();
                if let Some(b) = changed["backends"].as_array_mut()
                    && b.len() > 1
                {
                    b.pop();
                }
                let s2 = r.api.put(&format!("/v1/services/{id}"), changed)?;
                self.service = Some((id.clone(), orig));
                Ok((format!("service {id}: last backend removed"), rev(&s2)))
            }
        }
    }
}

/// Brings the topology up, soaks it for `duration`, tears it down.
pub fn soak(cloud: &Cloud, file: &Path, exe: &Path, duration: Duration) -> Vec<Outcome> {
    let mut out = Vec::new();
    let t0 = Instant::now();
    let mut progress = |s: &str| eprintln!("[{:>6.1}s] {s}", t0.elapsed().as_secs_f64());
    let mut r = match up(cloud, file, &mut progress) {
        Ok(r) => r,
        Err(e) => {
            out.push(Outcome {
                what: format!("bring up topology {}", cloud.name()),
                result: Err(format!("{e:#}")),
            });
            let _ = super::state::remove_run(&super::state::state_dir(cloud.name()));
            return out;
        }
    };
    out.push(Outcome {
        what: format!("bring up topology {}", cloud.name()),
        result: Ok(format!("in {:.1?}", t0.elapsed())),
    });
    let r2 = &mut r;
    out.extend(run_soak(r2, exe, duration, &mut progress));
    let td = r.teardown().map_err(|e| format!("{e:#}"));
    out.push(Outcome {
        what: "tear down".into(),
        result: td.map(|()| "everything removed".into()),
    });
    out
}

fn run_soak(
    r: &mut Running,
    exe: &Path,
    duration: Duration,
    progress: &mut dyn FnMut(&str),
) -> Vec<Outcome> {
    let mut out = Vec::new();
    // Only the reachability matrix is re-checked each round.
    let reach: Vec<_> = r
        .cloud
        .checks
        .iter()
        .filter(|c| matches!(c.get_ref(), CheckSpec::Reach { .. }))
        .cloned()
        .collect();
    if reach.is_empty() {
        out.push(Outcome {
            what: "soak".into(),
            result: Err("the topology has no reach checks".into()),
        });
        return out;
    }
    r.cloud.checks = reach.clone();
    let pair = reach.iter().find_map(|c| match c.get_ref() {
        CheckSpec::Reach {
            from,
            to,
            expect: Expect::Reach,
            ..
        } => {
            let a = from.names().first().cloned()?;
            let b = to.names().into_iter().find(|b| *b != a)?;
            Some((a, b))
        }
        _ => None,
    });
    let Some((a, b)) = pair else {
        out.push(Outcome {
            what: "soak".into(),
            result: Err("no reach check that must reach".into()),
        });
        return out;
    };
    let (ha, hb) = match (r.host(a), r.host(b)) {
        (Ok(x), Ok(y)) => (x.clone(), y.clone()),
        _ => {
            out.push(Outcome {
                what: "soak".into(),
                result: Err(format!("hosts {a}/{b} not found")),
            });
            return out;
        }
    };
    let count = duration.as_millis() as u64 / 50;
    let flood = Command::new("ip")
        .args([
            "netns", "exec", &ha.netns, "ping", "-q", "-i", "0.05", "-W", "1",
        ])
        .args(["-c", &count.max(1).to_string(), &hb.ip])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut churn = Churn::default();
    let mut samples: Vec<(String, Vec<(u64, u64)>)> = r
        .state
        .procs
        .iter()
        .filter(|p| p.comm == "plexus-controller" || p.comm == "plexus-vswitchd")
        .map(|p| (format!("{} [{}]", p.role, p.pid), Vec::new()))
        .collect();
    let pids: Vec<u32> = r
        .state
        .procs
        .iter()
        .filter(|p| p.comm == "plexus-controller" || p.comm == "plexus-vswitchd")
        .map(|p| p.pid)
        .collect();
    let start = Instant::now();
    let (mut rounds, mut matrix_fail, mut churn_fail) = (0u64, Vec::new(), Vec::new());
    let mut checks_run = 0usize;
    while start.elapsed() < duration {
        rounds += 1;
        match churn.step(r).and_then(|(what, rev)| {
            r.api
                .wait_realized(&r.chassis_ids(), rev, Duration::from_secs(30))
                .map(|_| what)
        }) {
            Ok(what) => {
                if rounds % 10 == 1 {
                    let u: Vec<String> = pids
                        .iter()
                        .filter_map(|p| {
                            usage(*p).map(|(rss, fds)| format!("[{p}] {rss} KiB {fds} fds"))
                        })
                        .collect();
                    progress(&format!(
                        "round {rounds}: {what}; {}; matrix failures so far {}",
                        u.join(", "),
                        matrix_fail.len()
                    ));
                }
            }
            Err(e) => churn_fail.push(format!("round {rounds}: {e:#}")),
        }
        for o in verify(r, exe) {
            checks_run += 1;
            if let Err(e) = o.result {
                matrix_fail.push(format!("round {rounds}: {}: {e}", o.what));
            }
        }
        for (i, pid) in pids.iter().enumerate() {
            if let Some(u) = usage(*pid) {
                samples[i].1.push(u);
            }
        }
    }
    out.push(Outcome {
        what: format!(
            "churn for {duration:?} ({rounds} rounds: ports, SG rules, service backends)"
        ),
        result: if churn_fail.is_empty() {
            Ok(format!("{rounds} steps applied and realized"))
        } else {
            Err(churn_fail.join("; "))
        },
    });
    out.push(Outcome {
        what: format!(
            "reachability matrix held after every round ({} checks per round)",
            reach.len()
        ),
        result: if matrix_fail.is_empty() {
            Ok(format!("{checks_run} probes, 0 failed"))
        } else {
            Err(format!(
                "{} failed: {}",
                matrix_fail.len(),
                matrix_fail.join("; ")
            ))
        },
    });
    for (name, s) in &samples {
        let q = (s.len() / 4).max(1);
        let result = if s.len() < 4 {
            Err(format!("only {} samples", s.len()))
        } else {
            let (rss0, rss1) = (
                median(s[..q].iter().map(|x| x.0).collect()),
                median(s[s.len() - q..].iter().map(|x| x.0).collect()),
            );
            let (fd0, fd1) = (
                median(s[..q].iter().map(|x| x.1).collect()),
                median(s[s.len() - q..].iter().map(|x| x.1).collect()),
            );
            let max_rss = s.iter().map(|x| x.0).max().unwrap_or(0);
            let max_fd = s.iter().map(|x| x.1).max().unwrap_or(0);
            let ev = format!(
                "RSS {rss0} -> {rss1} KiB (max {max_rss}), fds {fd0} -> {fd1} (max {max_fd}), {} samples",
                s.len()
            );
            if rss1 > rss0 + rss0 / 10 + 4096 || fd1 > fd0 + 4 {
                Err(format!("grew: {ev}"))
            } else {
                Ok(ev)
            }
        };
        out.push(Outcome {
            what: format!("{name}: memory and file descriptors flat"),
            result,
        });
    }
    let ping = flood
        .context("ping")
        .and_then(|c| Ok(c.wait_with_output()?))
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find(|l| l.contains("packets transmitted"))
                .unwrap_or("")
                .trim()
                .to_owned()
        });
    out.push(Outcome {
        what: format!("traffic {a} -> {b} every 50 ms during the soak"),
        result: match ping {
            Ok(s) if s.contains(" 0% packet loss") => Ok(s),
            Ok(s) => Err(format!("lost pings: {s}")),
            Err(e) => Err(format!("{e:#}")),
        },
    });
    out
}
