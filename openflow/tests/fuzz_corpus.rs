//! Runs the fuzz entry points (the same ones cargo-fuzz drives) on a
//! deterministic corpus of truncated and corrupted messages: every prefix of
//! each seed, every single-bit flip, and length-field rewrites. No panic, and
//! every decode error maps to an OFPT_ERROR (checked inside `decode_one`).

use plexus_openflow::fuzz::{decode_one, parse_text};

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Seeds: the ofp_match corpus wrapped as-is, plus real messages.
fn seeds() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for line in include_str!("data/matches.txt").lines() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(h) = line.rsplit(" | ").next() {
            v.push(unhex(h.trim()));
        }
    }
    for h in [
        "0400000800000001",
        "04000010000000010001000800000010",
        "0402000c00000002deadbeef",
        "0414000800000003",
        // FLOW_MOD: in_port=1, apply output:2 (from OVS).
        "040e005800000002000000000000000000000000000000000000000000008000ffffffffffffffffffffffff000000000001000c800000040000000100000000000400180000000000000010000000020000000000000000",
    ] {
        v.push(unhex(h));
    }
    v
}

#[test]
fn corrupted_and_truncated_inputs_never_panic() {
    let mut runs = 0usize;
    for seed in seeds() {
        for n in 0..=seed.len() {
            decode_one(&seed[..n]);
            runs += 1;
        }
        for i in 0..seed.len() {
            for bit in 0..8 {
                let mut m = seed.clone();
                m[i] ^= 1 << bit;
                decode_one(&m);
                runs += 1;
            }
        }
        if seed.len() >= 4 {
            for len in [0u16, 1, 4, 7, 8, 9, 0xffff] {
                let mut m = seed.clone();
                m[2..4].copy_from_slice(&len.to_be_bytes());
                decode_one(&m);
                runs += 1;
            }
        }
    }
    assert!(runs > 10_000, "corpus too small: {runs}");
}

#[test]
fn text_parsers_never_panic() {
    let mut inputs: Vec<String> = Vec::new();
    for line in include_str!("data/matches.txt").lines() {
        if let Some(t) = line.split(" | ").nth(1) {
            inputs.push(t.to_string());
        }
    }
    let junk = [
        "",
        ",",
        "=",
        "in_port=",
        "in_port=99999999999999999999",
        "nw_dst=1.2.3.4/99",
        "ip,nw_dst=/",
        "tcp,tp_dst=0x",
        "ct_state=+",
        "ct_state=++trk",
        "dl_dst=::::::",
        "ipv6,ipv6_src=:::/200",
        "reg0=0x1/",
        "tcp_flags=+syn-",
        "(((",
        ")))",
        "dl_vlan=-1",
        "metadata=0x1/0x1/0x1",
        "ct_label=0x1ffffffffffffffffffffffffffffffff",
        "ip,nw_frag=maybe",
        "\u{0}",
        "é=é",
    ];
    inputs.extend(junk.iter().map(|s| s.to_string()));
    // Every flow of the golden corpus, and its action list alone.
    for line in include_str!("data/golden.in").lines() {
        if let Some(flow) = line.strip_prefix("add-flow|") {
            inputs.push(flow.to_string());
            if let Some((_, acts)) = flow.split_once("actions=") {
                inputs.push(acts.to_string());
            }
        }
    }
    let mut n = 0;
    for s in &inputs {
        parse_text(s);
        for cut in 0..s.len() {
            if s.is_char_boundary(cut) {
                parse_text(&s[..cut]);
                n += 1;
            }
        }
    }
    assert!(n > 1000);
}

/// Deterministic random strings built from the syntax's own tokens (and
/// multi-byte characters), fed to every text parser.
#[test]
fn token_soup_never_panics() {
    const TOKENS: &[&str] = &[
        "in_port",
        "=",
        ",",
        "(",
        ")",
        "é",
        "actions=",
        "ct",
        "nat",
        ":",
        "->",
        "1",
        "65535",
        "0x",
        "ff",
        "/",
        "[",
        "]",
        "..",
        "dst",
        "src",
        "10.0.0.1",
        "::1",
        "reg0",
        "NXM_NX_REG0",
        "load",
        "move",
        "set_field",
        "resubmit",
        "learn",
        "commit",
        "zone",
        "table",
        "output",
        "bucket=",
        "group_id",
        "type",
        "select",
        "meter",
        "kbps",
        "band",
        "rate",
        "tcp",
        "ip",
        "ct_state",
        "+trk",
        "-new",
        " ",
        "packet",
        "exec",
        "controller",
        "userdata",
        "01.02",
        "conjunction",
        "note",
        "goto_table",
        "write_actions",
        "clear_actions",
        "dl_vlan",
        "ß",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let iters = std::env::var("TOKEN_SOUP_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    for _ in 0..iters {
        let n = (next() % 12) as usize;
        let s: String = (0..n)
            .map(|_| TOKENS[(next() % TOKENS.len() as u64) as usize])
            .collect();
        parse_text(&s);
    }
}

/// Deterministic random frames: a valid header of every message type (and
/// multipart/experimenter subtypes) followed by random bytes.
#[test]
fn random_frames_never_panic() {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let iters = std::env::var("RANDOM_FRAME_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000);
    for i in 0..iters {
        let ty = (i % 36) as u8;
        let len = 8 + (next() % 160) as usize;
        let mut f = vec![4u8, ty, (len >> 8) as u8, len as u8, 0, 0, 0, 1];
        while f.len() < len {
            f.extend_from_slice(&next().to_be_bytes());
        }
        f.truncate(len);
        // Steer some bodies into known subtypes so deeper decoders run.
        if len >= 16 {
            match ty {
                18 | 19 => f[8..10].copy_from_slice(&((next() % 17) as u16).to_be_bytes()),
                4 => {
                    let (id, sub): (u32, u32) = if next() % 2 == 0 {
                        (0x0000_2320, [16u32, 20, 28, 30][(next() % 4) as usize])
                    } else {
                        (0x4f4e_4600, 2300 + (next() % 2) as u32)
                    };
                    f[8..12].copy_from_slice(&id.to_be_bytes());
                    f[12..16].copy_from_slice(&sub.to_be_bytes());
                }
                _ => {}
            }
        }
        decode_one(&f);
    }
}

/// Replays the checked-in corpus of each cargo-fuzz target
/// (`fuzz/seeds/TARGET/*`, minimised from the libFuzzer runs recorded in
/// BENCHMARKS.md, crash inputs included once fixed) through its entry point.
fn replay(target: &str, f: impl Fn(&[u8])) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        f(&std::fs::read(&p).unwrap());
        n += 1;
    }
    assert!(n > 0, "no seeds in {}", dir.display());
}

#[test]
fn checked_in_seeds_replay() {
    replay("decode", decode_one);
    replay("text_parse", |d| {
        if let Ok(s) = std::str::from_utf8(d) {
            parse_text(s);
        }
    });
}
