//! `plexus-vswitchd --config FILE`: the daemon's settings as TOML.
//!
//! Everything the command-line flags set can be written here; a flag given
//! on the command line overrides the file (for lists — ports, controllers,
//! listeners — the flags replace the file's list). Unknown keys are errors.
//! Example: `vswitch/examples/plexus-vswitchd.toml`.
//!
//! ```toml
//! bridge = "br0"
//! dpid = "0xabc"                 # hex string or integer
//! fail_mode = "standalone"       # or "secure"
//! controllers = ["tcp:127.0.0.1:6653"]
//! listen = ["ptcp:6634:127.0.0.1"]
//! ctl = "/var/run/plexus/br0.ctl"
//! netns = "sw"
//! port_type = "afxdp"            # default type: afxdp, afpacket, tap
//! xdp_mode = "auto"              # auto, native, generic
//! pipeline = "full"              # or "simple"
//! packet_in_buffers = 256        # default 0: no buffering (OVS 3.x)
//!
//! [[port]]
//! name = "eth1"
//! ofport = 1
//! type = "afpacket"              # overrides port_type for this port
//!
//! [forwarding]
//! cpu = 2                        # pin the datapath thread to CPU 2
//! batch = 32
//! ```

use std::path::{Path, PathBuf};

use plexus_openflow::conn::{PassiveTarget, Target};
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Bridge name (`show`, `trace BRIDGE ...`).
    pub bridge: Option<String>,
    /// Datapath id: `"0xabc"`/`"abc"` (hex) or an integer.
    pub dpid: Option<Dpid>,
    /// `secure` or `standalone`.
    pub fail_mode: Option<String>,
    /// Active controller targets (`tcp:IP:PORT`, `unix:PATH`).
    #[serde(default)]
    pub controllers: Vec<String>,
    /// Passive listeners (`ptcp:PORT[:IP]`).
    #[serde(default)]
    pub listen: Vec<String>,
    /// Control socket path.
    pub ctl: Option<PathBuf>,
    /// Network namespace holding the ports.
    pub netns: Option<String>,
    /// Default port type: `afxdp`, `afpacket`, `tap`.
    pub port_type: Option<String>,
    /// XDP attach mode: `auto`, `native`, `generic`.
    pub xdp_mode: Option<String>,
    /// `full` (default) or `simple`.
    pub pipeline: Option<String>,
    /// Packet-in buffers (0 = none, the default).
    pub packet_in_buffers: Option<usize>,
    /// The ports, `[[port]]` tables.
    #[serde(default, rename = "port")]
    pub ports: Vec<PortConfig>,
    /// Forwarding thread settings.
    #[serde(default)]
    pub forwarding: Forwarding,
}

/// A datapath id as written in the file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Dpid {
    Int(u64),
    Hex(String),
}

impl Dpid {
    /// The value (hex strings with or without `0x`).
    pub fn value(&self) -> Result<u64, String> {
        match self {
            Dpid::Int(v) => Ok(*v),
            Dpid::Hex(s) => {
                let h = s.trim_start_matches("0x").trim_start_matches("0X");
                u64::from_str_radix(h, 16).map_err(|_| format!("dpid \"{s}\": not a hex number"))
            }
        }
    }

    /// As the `--dpid` flag takes it.
    pub fn to_hex(&self) -> Result<String, String> {
        Ok(format!("{:x}", self.value()?))
    }
}

/// One `[[port]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    pub name: String,
    /// OpenFlow port number (default: the previous one + 1, from 1).
    pub ofport: Option<u32>,
    /// Port type for this port (default: `port_type`).
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

impl PortConfig {
    /// As a `--port` flag value: `NAME[=OFPORT]`.
    pub fn spec(&self) -> String {
        match self.ofport {
            Some(n) => format!("{}={n}", self.name),
            None => self.name.clone(),
        }
    }
}

/// `[forwarding]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forwarding {
    /// Pin the datapath thread to this CPU.
    pub cpu: Option<usize>,
    /// Frames per rx/tx batch (1..=256).
    pub batch: Option<u16>,
    /// Empty polling rounds before sleeping.
    pub spin: Option<u32>,
    /// sched_yield(2) after each empty polling round.
    pub yield_idle: Option<bool>,
}

const PORT_TYPES: &[&str] = &["afxdp", "afpacket", "tap"];

fn one_of(what: &str, v: &Option<String>, allowed: &[&str]) -> Result<(), String> {
    match v {
        Some(s) if !allowed.contains(&s.as_str()) => Err(format!(
            "{what} = \"{s}\": expected one of {}",
            allowed.join(", ")
        )),
        _ => Ok(()),
    }
}

impl FileConfig {
    /// Parses TOML text and checks every value.
    pub fn parse(text: &str) -> Result<Self, String> {
        let c: FileConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    /// Reads and parses `path`; errors name the file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(d) = &self.dpid {
            d.value()?;
        }
        one_of("fail_mode", &self.fail_mode, &["secure", "standalone"])?;
        one_of("port_type", &self.port_type, PORT_TYPES)?;
        one_of("xdp_mode", &self.xdp_mode, &["auto", "native", "generic"])?;
        one_of("pipeline", &self.pipeline, &["full", "simple"])?;
        if let Some(b) = &self.bridge
            && (b.is_empty() || b.len() > 15 || b.contains(['/', ' ']))
        {
            return Err(format!(
                "bridge = \"{b}\": 1..15 characters, no '/' or spaces"
            ));
        }
        for c in &self.controllers {
            c.parse::<Target>()
                .map_err(|e| format!("controllers: \"{c}\": {e}"))?;
        }
        for l in &self.listen {
            l.parse::<PassiveTarget>()
                .map_err(|e| format!("listen: \"{l}\": {e}"))?;
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in &self.ports {
            if p.name.is_empty() {
                return Err("port: empty name".into());
            }
            one_of(&format!("port \"{}\": type", p.name), &p.kind, PORT_TYPES)?;
            if let Some(n) = p.ofport
                && !(1..0xffff_ff00).contains(&n)
            {
                return Err(format!("port \"{}\": ofport {n} out of range", p.name));
            }
            if !seen.insert(p.name.as_str()) {
                return Err(format!("port \"{}\" listed twice", p.name));
            }
        }
        if let Some(n) = self.packet_in_buffers
            && n > crate::agent::buffers::MAX_BUFFERS
        {
            return Err(format!(
                "packet_in_buffers = {n}: at most {}",
                crate::agent::buffers::MAX_BUFFERS
            ));
        }
        if let Some(b) = self.forwarding.batch
            && !(1..=256).contains(&b)
        {
            return Err(format!("forwarding.batch = {b}: expected 1..=256"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_example_parses() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/plexus-vswitchd.toml"
        ))
        .expect("example file");
        let c = FileConfig::parse(&text).expect("example parses");
        assert_eq!(c.bridge.as_deref(), Some("br0"));
        assert_eq!(c.dpid.as_ref().map(|d| d.value()), Some(Ok(0xabc)));
        assert_eq!(c.ports.len(), 2);
        assert_eq!(c.ports[0].spec(), "veth1=1");
        assert_eq!(c.ports[1].kind.as_deref(), Some("tap"));
        assert_eq!(c.forwarding.cpu, Some(1));
    }

    #[test]
    fn dpid_forms() {
        let c = FileConfig::parse("dpid = 171").unwrap();
        assert_eq!(c.dpid.unwrap().value(), Ok(171));
        let c = FileConfig::parse("dpid = \"0xAB\"").unwrap();
        assert_eq!(c.dpid.unwrap().to_hex(), Ok("ab".into()));
        let e = FileConfig::parse("dpid = \"zz\"").unwrap_err();
        assert!(e.contains("not a hex number"), "{e}");
    }

    #[test]
    fn errors_are_precise() {
        let cases = [
            (
                "fail_mode = \"open\"",
                "fail_mode = \"open\": expected one of secure, standalone",
            ),
            ("bogus = 1", "unknown field `bogus`"),
            (
                "controllers = [\"udp:1.2.3.4\"]",
                "controllers: \"udp:1.2.3.4\"",
            ),
            ("listen = [\"tcp:1\"]", "listen: \"tcp:1\""),
            (
                "[[port]]\nname = \"a\"\ntype = \"dpdk\"",
                "port \"a\": type = \"dpdk\"",
            ),
            (
                "[[port]]\nname = \"a\"\n[[port]]\nname = \"a\"",
                "port \"a\" listed twice",
            ),
            (
                "[[port]]\nname = \"a\"\nofport = 0",
                "ofport 0 out of range",
            ),
            ("[forwarding]\nbatch = 0", "forwarding.batch = 0"),
            ("[forwarding]\ncpus = 1", "unknown field `cpus`"),
            ("bridge = 3", "invalid type"),
        ];
        for (text, want) in cases {
            let e = FileConfig::parse(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e:?} lacks {want:?}");
        }
    }

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(FileConfig::parse("").unwrap(), FileConfig::default());
    }
}
