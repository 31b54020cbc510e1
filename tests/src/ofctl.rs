//! `ovs-ofctl` as an oracle for OpenFlow bytes and text.

use crate::proc::run_ok;
use anyhow::Result;
use std::process::Command;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Lower-case hex of `bytes`, no separators.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses hex (whitespace ignored) into bytes; `None` on odd length or a bad digit.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect()
}

/// Runs `ovs-ofctl ofp-print HEX` and returns what it prints: OVS's decoding of
/// one OpenFlow message given as hex (whitespace allowed). Decode problems show
/// up in the text (e.g. `***decode error: ...***`), not as an error.
pub fn ofp_print(hex: &str) -> Result<String> {
    let compact: String = hex.split_whitespace().collect();
    run_ok(
        Command::new("ovs-ofctl").args(["ofp-print", &compact]),
        TIMEOUT,
    )
}

/// [`ofp_print`] of raw bytes.
pub fn ofp_print_bytes(bytes: &[u8]) -> Result<String> {
    ofp_print(&hex(bytes))
}

/// Runs `ovs-ofctl -O OpenFlow13 parse-flow FLOW` and returns the printed
/// FLOW_MOD line (OVS's normalised text of `flow`).
pub fn parse_flow(flow: &str) -> Result<String> {
    let out = run_ok(
        Command::new("ovs-ofctl").args(["-O", "OpenFlow13", "parse-flow", flow]),
        TIMEOUT,
    )?;
    Ok(out
        .lines()
        .find(|l| l.starts_with("OFPT_FLOW_MOD"))
        .unwrap_or(&out)
        .to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_roundtrip() {
        assert_eq!(hex(&[0x04, 0x00, 0xab]), "0400ab");
        assert_eq!(unhex("04 00\nab").unwrap(), vec![4, 0, 0xab]);
        assert!(unhex("4").is_none());
        assert!(unhex("zz").is_none());
    }

    #[test]
    fn ofp_print_decodes_hello() {
        if !crate::require_tool("ovs-ofctl") {
            return;
        }
        let out = ofp_print("04 00 00 08 00 00 00 01").unwrap();
        assert!(out.starts_with("OFPT_HELLO (OF1.3) (xid=0x1)"), "{out}");
    }

    #[test]
    fn parse_flow_normalises() {
        if !crate::require_tool("ovs-ofctl") {
            return;
        }
        let out = parse_flow("in_port=1,actions=output:2").unwrap();
        assert!(out.contains("ADD in_port=1 actions=output:2"), "{out}");
    }
}
