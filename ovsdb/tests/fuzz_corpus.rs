//! Runs the fuzz entry points (the same ones cargo-fuzz drives, `ovsdb/fuzz/`)
//! on a deterministic corpus: real JSON-RPC requests, their truncations and
//! bit flips, token soup, and random structured transactions against the
//! vswitch schema. Bounded to a few seconds; `OVSDB_FUZZ_ITERS` scales it.

use plexus_ovsdb::fuzz::{framer_stream, server_stream, transact_ops, transact_request_bytes};

fn iters(default: usize) -> usize {
    std::env::var("OVSDB_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = [
        r#"{"id":1,"method":"echo","params":["x"]}"#,
        r#"{"id":2,"method":"list_dbs","params":[]}"#,
        r#"{"id":3,"method":"get_schema","params":["Open_vSwitch"]}"#,
        r#"{"id":4,"method":"transact","params":["Open_vSwitch",{"op":"insert","table":"Open_vSwitch","row":{"bridges":["named-uuid","b"]}},{"op":"insert","table":"Bridge","uuid-name":"b","row":{"name":"br0","ports":["named-uuid","p"]}},{"op":"insert","table":"Port","uuid-name":"p","row":{"name":"p0","interfaces":["named-uuid","i"]}},{"op":"insert","table":"Interface","uuid-name":"i","row":{"name":"p0","type":"internal"}}]}"#,
        r#"{"id":5,"method":"monitor","params":["Open_vSwitch","m",{"Bridge":{"columns":["name"]}}]}"#,
        r#"{"id":6,"method":"monitor_cond","params":["Open_vSwitch","c",{"Port":[{"where":[["name","==","p0"]]}]}]}"#,
        r#"{"id":7,"method":"monitor_cond_change","params":["c","d",{"Port":[{"where":[["name","!=","x"]]}]}]}"#,
        r#"{"id":8,"method":"monitor_cancel","params":["m"]}"#,
        r#"{"id":9,"method":"lock","params":["l"]}{"id":10,"method":"steal","params":["l"]}{"id":11,"method":"unlock","params":["l"]}"#,
        r#"{"id":12,"method":"transact","params":["Open_vSwitch",{"op":"wait","table":"Bridge","where":[],"columns":["name"],"until":"==","rows":[{"name":"zz"}],"timeout":10}]}"#,
        r#"{"id":13,"method":"transact","params":["Open_vSwitch",{"op":"mutate","table":"Open_vSwitch","where":[],"mutations":[["next_cfg","+=",1]]}]}"#,
        r#"{"id":14,"method":"monitor_cond_since","params":["Open_vSwitch","s",{"Interface":[{"columns":["name"]}]},"00000000-0000-0000-0000-000000000000"]}"#,
        r#"{"id":null,"method":"update","params":[null,{}]}"#,
        r#"{"id":15,"result":[],"error":null}"#,
        r#"[1,2,{"a":"\"}"}]"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let mut rng = Rng(0x5eed_f0ad_5b00_1001);
    for _ in 0..8 {
        v.push(transact_request_bytes(&rng.bytes(64)));
    }
    v
}

#[test]
fn framer_truncations_and_bit_flips() {
    let mut runs = 0;
    for seed in seeds() {
        let step = (seed.len() / 96).max(1);
        for n in (0..=seed.len()).step_by(step) {
            framer_stream(&seed[..n]);
            runs += 1;
        }
        for i in (0..seed.len()).step_by(step) {
            let mut m = seed.clone();
            m[i] ^= 1 << (i % 8);
            framer_stream(&m);
            runs += 1;
        }
    }
    assert!(runs > 2_000, "corpus too small: {runs}");
}

#[test]
fn server_survives_corrupted_requests() {
    let seeds = seeds();
    server_stream(&seeds.concat());
    let valid = seeds[3].clone();
    let mut runs = 0;
    for seed in &seeds {
        // Truncations followed by a valid request, and bit flips.
        let step = (seed.len() / 24).max(1);
        for n in (0..seed.len()).step_by(step) {
            let mut m = seed[..n].to_vec();
            m.extend_from_slice(b"\n");
            m.extend_from_slice(&valid);
            server_stream(&m);
            runs += 1;
        }
        for i in (0..seed.len()).step_by(step) {
            let mut m = seed.clone();
            m[i] ^= 1 << (i % 8);
            server_stream(&m);
            runs += 1;
        }
    }
    assert!(runs > 500, "corpus too small: {runs}");
}

/// Random strings from JSON/JSON-RPC tokens: exercise the framer and every
/// method's parameter checks.
#[test]
fn token_soup_never_panics() {
    const TOKENS: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"",
        "\\",
        "\"id\"",
        "\"method\"",
        "\"params\"",
        "\"transact\"",
        "\"echo\"",
        "\"monitor\"",
        "\"monitor_cond\"",
        "\"lock\"",
        "\"steal\"",
        "\"unlock\"",
        "\"monitor_cancel\"",
        "\"monitor_cond_change\"",
        "\"get_schema\"",
        "\"Open_vSwitch\"",
        "\"_Server\"",
        "\"Bridge\"",
        "\"op\"",
        "\"insert\"",
        "\"delete\"",
        "\"where\"",
        "\"row\"",
        "\"uuid\"",
        "\"named-uuid\"",
        "\"set\"",
        "\"map\"",
        "1",
        "-1",
        "1e999",
        "null",
        "true",
        " ",
        "\n",
        "é",
        "\"result\"",
        "\"error\"",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..iters(600) {
        let n = (rng.next() % 40) as usize;
        let s: String = (0..n)
            .map(|_| TOKENS[(rng.next() % TOKENS.len() as u64) as usize])
            .collect();
        framer_stream(s.as_bytes());
        server_stream(s.as_bytes());
    }
}

#[test]
fn random_transactions_keep_the_database_consistent() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let (mut txns, mut ok, mut rows) = (0, 0, 0);
    for i in 0..iters(120) {
        let n = 64 + (i % 7) * 160;
        let (t, o, r) = transact_ops(&rng.bytes(n));
        txns += t;
        ok += o;
        rows += r;
    }
    eprintln!("{txns} transactions, {ok} committed, {rows} rows left");
    // The generator must reach deep states, not only fail at parse time.
    assert!(ok * 5 > txns, "too few commits: {ok} of {txns}");
    assert!(
        ok < txns,
        "no transaction failed: the generator is too tame"
    );
    assert!(rows > 100, "too few rows survive: {rows}");
}

#[test]
fn random_bytes_into_every_entry_point() {
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    for i in 0..iters(300) {
        let data = rng.bytes(1 + i % 200);
        framer_stream(&data);
        server_stream(&data);
        let _ = transact_ops(&data);
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
    replay("framer", framer_stream);
    replay("server", server_stream);
    replay("transact", |d| {
        let _ = transact_ops(d);
    });
}
