//! `kind = "attack"` checks of cloud topologies: bad attack checks are
//! rejected with file, line and field (no root needed); the attacks
//! themselves run in `topologies/isolation.toml` (`topo_cloud.rs`).

use std::path::Path;
use std::process::Command;

const GOOD: &str = r#"name = "atk"
[controller]
[[chassis]]
name = "c1"
switch = "plexus"
[[tenant]]
name = "t"
[[tenant.vpc]]
name = "v"
cidrs = ["10.9.0.0/16"]
[[tenant.vpc.subnet]]
name = "s"
cidr = "10.9.1.0/24"
[[host]]
name = "h1"
chassis = "c1"
tenant = "t"
vpc = "v"
subnet = "s"
[[host]]
name = "h2"
chassis = "c1"
tenant = "t"
vpc = "v"
subnet = "s"
[[check]]
kind = "attack"
attacker = "h1"
victim = "h2"
attacks = ["spoof-mac", "control-icmp"]
"#;

fn validate(dir: &Path, text: &str) -> (bool, String) {
    let p = dir.join("atk.toml");
    std::fs::write(&p, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_plexus-topo"))
        .arg("validate")
        .arg(&p)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn attack_checks_are_validated_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = validate(dir.path(), GOOD);
    assert!(ok, "{text}");
    // (what to change, expected ":LINE:COL: field", message fragment)
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "victim = \"h2\"",
            "victim = \"h1\"",
            ":26:1: check.victim",
            "must be different hosts",
        ),
        (
            "victim = \"h2\"",
            "victim = \"h9\"",
            ":26:1: check",
            "no host \"h9\"",
        ),
        (
            "\"spoof-mac\"",
            "\"overlap\"",
            ":26:1: check.attacks",
            "overlap needs a victim in another VPC",
        ),
        (
            "\"spoof-mac\"",
            "\"teardrop\"",
            ":30:12: attacks",
            "unknown variant `teardrop`",
        ),
        (
            "victim = \"h2\"",
            "victim = \"h2\"\ncount = 0",
            ":26:1: check.count",
            "count must be 1-200",
        ),
    ];
    for (from, to, at, msg) in cases {
        assert!(GOOD.contains(from), "{from}");
        let (ok, err) = validate(dir.path(), &GOOD.replacen(from, to, 1));
        assert!(!ok, "accepted {to:?}");
        assert!(
            err.contains(&format!("atk.toml{at}")) && err.contains(msg),
            "{to:?}: want {at:?} and {msg:?} in:\n{err}"
        );
    }
}
