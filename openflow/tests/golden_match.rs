//! Golden interop for matches: for every line of `data/matches.txt`
//! (generated from Open vSwitch 3.1 by `data/gen-matches.sh`), our parser
//! must encode the same `ofp_match` bytes OVS sends, and decoding OVS's bytes
//! must print the same text `ovs-ofctl` prints.

use plexus_openflow::oxm::Match;
use plexus_openflow::text::{format_match, parse_match};
use plexus_openflow::wire::Reader;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn matches_agree_with_ovs() {
    let data = include_str!("data/matches.txt");
    let mut failures = Vec::new();
    let mut n = 0;
    for line in data.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.split(" | ").map(str::trim).collect();
        let [input, ovs_text, ovs_hex] = parts[..] else {
            panic!("bad line {line:?}");
        };
        n += 1;
        // text -> bytes
        match parse_match(input) {
            Ok(m) => {
                let mut out = Vec::new();
                m.encode(&mut out);
                if hex(&out) != ovs_hex {
                    failures.push(format!(
                        "encode {input:?}: ours {} ovs {ovs_hex}",
                        hex(&out)
                    ));
                }
            }
            Err(e) => failures.push(format!("parse {input:?}: {e}")),
        }
        // bytes -> text
        let bytes = unhex(ovs_hex);
        match Match::decode(&mut Reader::new(&bytes)) {
            Ok(m) => {
                let text = format_match(&m);
                if text != ovs_text {
                    failures.push(format!("format {input:?}: ours {text:?} ovs {ovs_text:?}"));
                }
                // OVS's own text parses back to the same match.
                match parse_match(ovs_text) {
                    Ok(again) if again == m => {}
                    Ok(again) => failures.push(format!("reparse {ovs_text:?}: {again:?} != {m:?}")),
                    Err(e) => failures.push(format!("reparse {ovs_text:?}: {e}")),
                }
            }
            Err(e) => failures.push(format!("decode {input:?}: {e}")),
        }
    }
    assert!(n >= 140, "corpus too small: {n}");
    assert!(
        failures.is_empty(),
        "{} of {n} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
