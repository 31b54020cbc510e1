//! Entry point shared by the cargo-fuzz target (`cni-plugin/fuzz/`) and the
//! stable corpus test (`tests/fuzz_corpus.rs`). It panics only when an
//! invariant is broken — which is exactly what a fuzzer should report.

use std::collections::HashMap;
use std::time::Duration;

use crate::config::{Command, Env, NetConf, SUPPORTED_VERSIONS};
use crate::error::*;

/// Panics unless `e` is a CNI error with one of `codes` whose JSON form is
/// the spec's `{cniVersion, code, msg, details}`.
fn assert_cni_error(e: &CniError, codes: &[u32], what: &str) {
    assert!(
        codes.contains(&e.code),
        "{what}: unexpected CNI error code {}: {e}",
        e.code
    );
    assert!(!e.msg.is_empty(), "{what}: error without msg");
    let j = e.to_json("1.1.0");
    for k in ["cniVersion", "code", "msg", "details"] {
        assert!(j.get(k).is_some(), "{what}: error JSON without {k}: {j}");
    }
}

fn valid_ifname(s: &str) -> bool {
    !s.is_empty() && s.len() <= 15 && !s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace())
}

/// `data` is split at NUL bytes into (1) the environment, one `KEY=VALUE`
/// per line, (2) the network configuration (stdin) and (3) an HTTP
/// response from the controller. Invariants: no panic; environment errors
/// are code 4, configuration errors 1/2/6/7 (and 7 for a missing or bad
/// controller/subnet/chassis/bridge), never anything else; what the plugin
/// derives from a valid environment (host interface name) is a valid
/// interface name and deterministic; VERSION answers a supported version;
/// the HTTP response parser returns a status or an `InvalidData` error.
pub fn config_env(data: &[u8]) {
    let mut parts = data.splitn(3, |b| *b == 0);
    let env_text = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let stdin = parts.next().unwrap_or_default();
    let response = parts.next().unwrap_or_default();

    let vars: HashMap<String, String> = env_text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    match Env::from_env(|k| vars.get(k).cloned()) {
        Err(e) => assert_cni_error(&e, &[INVALID_ENV], "environment"),
        Ok(env) => {
            if matches!(env.command, Command::Add | Command::Del | Command::Check) {
                let h = crate::plugin::host_ifname(&env.container_id, &env.ifname);
                assert!(valid_ifname(&h), "host interface name {h:?}");
                assert_eq!(
                    h,
                    crate::plugin::host_ifname(&env.container_id, &env.ifname)
                );
                assert_eq!(
                    crate::plugin::binding_iface(&env.container_id, &env.ifname),
                    h
                );
                assert!(valid_ifname(&env.ifname));
            }
            if env.command == Command::Version {
                let v = crate::plugin::run(&env, stdin)
                    .expect("VERSION does not fail")
                    .expect("VERSION prints a result");
                let asked = v["cniVersion"].as_str().expect("cniVersion");
                assert!(
                    SUPPORTED_VERSIONS.contains(&asked),
                    "VERSION answered {asked}"
                );
            }
        }
    }
    match NetConf::parse(stdin) {
        Err(e) => assert_cni_error(
            &e,
            &[
                INCOMPATIBLE_VERSION,
                UNSUPPORTED_FIELD,
                DECODE_FAILURE,
                INVALID_CONFIG,
            ],
            "network configuration",
        ),
        Ok(conf) => {
            assert!(SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()));
            assert!(!conf.name.is_empty());
            let _ = conf.mtu();
            let _ = conf.at_least("0.4.0");
            for r in [
                conf.subnet().err(),
                conf.chassis().err(),
                conf.bridge().err(),
            ]
            .into_iter()
            .flatten()
            {
                assert_cni_error(&r, &[INVALID_CONFIG], "missing key");
            }
            match conf.controller() {
                Err(e) => assert_cni_error(&e, &[INVALID_CONFIG], "controller"),
                Ok(c) => {
                    // The URL only (a token file would be read from disk).
                    if let Err(e) = crate::http::Client::new(&c.url, None, Duration::from_millis(1))
                    {
                        assert!(!e.is_empty());
                    }
                }
            }
        }
    }
    match crate::http::parse_response(response) {
        Ok(r) => assert!(r.body.len() <= response.len()),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::InvalidData),
    }
}
