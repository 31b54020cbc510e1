//! Entry points shared by the cargo-fuzz targets (`ovsdb/fuzz/`) and the
//! stable corpus test (`tests/fuzz_corpus.rs`). Each one panics only when an
//! invariant is broken — which is exactly what a fuzzer should report.

use serde_json::{Value, json};

use crate::db::Database;
use crate::rpc::{Frame, Framer, Message};
use crate::schema::{AtomicType, BaseType, ColumnType, DatabaseSchema, TableSchema};
use crate::server::ServerCore;

/// Error strings `ovsdb-server` sends bare (not as an error object): JSON-RPC
/// level replies to an unknown method and an unknown monitor id.
const BARE_ERRORS: &[&str] = &["unknown method", "unknown monitor"];

/// Panics unless `e` is an RFC 7047 error object (`{"error": <string>, ...}`
/// with string `details`/`syntax` when present) or one of [`BARE_ERRORS`].
pub fn assert_error_object(e: &Value) {
    if let Some(s) = e.as_str() {
        assert!(BARE_ERRORS.contains(&s), "bare error string {s:?}");
        return;
    }
    let m = e
        .as_object()
        .unwrap_or_else(|| panic!("error is not an object: {e}"));
    assert!(
        m.get("error").is_some_and(Value::is_string),
        "error object without an \"error\" string: {e}"
    );
    for k in ["details", "syntax"] {
        assert!(
            m.get(k).is_none_or(Value::is_string),
            "error member {k} is not a string: {e}"
        );
    }
}

fn is_error_object(v: &Value) -> bool {
    v.get("error").is_some()
}

/// Bytes into the stream framer, fed in chunks whose sizes come from the
/// input itself. Invariants: no panic; the buffer never exceeds the limit;
/// the frames do not depend on how the stream was chunked; every invalid
/// frame carries an RFC 7047 error; every value decodes to a message or an
/// error object, and decoded messages survive a JSON round trip.
pub fn framer_stream(data: &[u8]) {
    const MAX: usize = 4096;
    let mut whole = Framer::new(MAX);
    let all = whole.feed(data);
    let mut chunked = Framer::new(MAX);
    let mut frames = Vec::new();
    let mut rest = data;
    let mut i = 0usize;
    while !rest.is_empty() {
        let n = 1 + (data[i % data.len()] as usize % 17);
        let (a, b) = rest.split_at(n.min(rest.len()));
        frames.extend(chunked.feed(a));
        assert!(chunked.buffered() <= MAX, "framer buffered past its limit");
        rest = b;
        i += 1;
    }
    // Garbage between messages is reported once per run *per feed* (so it
    // is reported promptly); everything else must not depend on chunking.
    let values = |fs: &[Frame]| -> Vec<Value> {
        fs.iter()
            .filter_map(|f| match f {
                Frame::Value(v) => Some(v.clone()),
                Frame::Invalid(_) => None,
            })
            .collect()
    };
    assert_eq!(
        values(&all),
        values(&frames),
        "decoded values depend on chunking"
    );
    for f in all {
        match f {
            Frame::Value(v) => decode_value(v),
            Frame::Invalid(e) => assert_error_object(&e.to_json()),
        }
    }
}

/// Decodes one JSON value as a JSON-RPC message. Invariants: errors are RFC
/// 7047 error objects; a decoded message encodes to JSON that decodes to the
/// same message.
pub fn decode_value(v: Value) {
    match Message::from_value(v) {
        Ok(m) => {
            let again = Message::from_value(m.to_value())
                .unwrap_or_else(|e| panic!("re-decode of {m:?} failed: {e}"));
            assert_eq!(m, again, "message changed across encode/decode");
            let bytes = m.to_bytes();
            let v: Value = serde_json::from_slice(&bytes).expect("our bytes are JSON");
            assert_eq!(Message::from_value(v).ok(), Some(m));
        }
        Err(e) => assert_error_object(&e.to_json()),
    }
}

/// The vswitch schema, parsed once.
fn vswitch_schema() -> DatabaseSchema {
    static S: std::sync::OnceLock<DatabaseSchema> = std::sync::OnceLock::new();
    S.get_or_init(DatabaseSchema::vswitch).clone()
}

/// A server core serving an empty `Open_vSwitch` database.
pub fn vswitch_core() -> ServerCore {
    let mut core = ServerCore::new();
    core.add_database(Database::new(vswitch_schema()));
    core
}

/// Bytes through the framer into a server core session (as the tokio
/// server does). Invariants: no panic; every error reply is an RFC 7047
/// error object; transact replies have the RFC shape; the database stays
/// consistent; afterwards the session still answers `echo` and a valid
/// transaction.
pub fn server_stream(data: &[u8]) {
    let mut core = vswitch_core();
    let mut framer = Framer::new(1 << 16);
    core.connect(1);
    for f in framer.feed(data) {
        let outs = match f {
            Frame::Value(v) => core.handle_value(1, v),
            Frame::Invalid(e) => core.frame_error(1, &e),
        };
        check_outgoing(&outs);
    }
    session_alive(&mut core, 1);
}

/// Panics unless every outgoing message is well-formed.
pub fn check_outgoing(outs: &[crate::server::Outgoing]) {
    for o in outs {
        match &o.msg {
            Message::Error { error, .. } => assert_error_object(error),
            Message::Response { result, .. } => {
                // A transact result: every error in it is an error object.
                if let Some(a) = result.as_array() {
                    for r in a.iter().filter(|r| is_error_object(r)) {
                        assert_error_object(r);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Asserts the session answers `echo` and a valid transaction, and that the
/// served database is consistent.
pub fn session_alive(core: &mut ServerCore, s: u64) {
    let outs = core.handle_value(
        s,
        json!({"id": "fuzz-echo", "method": "echo", "params": [1]}),
    );
    assert!(
        outs.iter().any(|o| o.session == s
            && o.msg
                == Message::Response {
                    id: json!("fuzz-echo"),
                    result: json!([1])
                }),
        "session no longer answers echo: {outs:?}"
    );
    let outs = core.handle_value(
        s,
        json!({"id": "fuzz-txn", "method": "transact",
               "params": ["Open_vSwitch", {"op": "select", "table": "Open_vSwitch", "where": []}]}),
    );
    assert!(
        outs.iter().any(|o| o.session == s
            && matches!(&o.msg, Message::Response { id, result }
                if *id == json!("fuzz-txn") && result[0].get("rows").is_some())),
        "session no longer answers transact: {outs:?}"
    );
    let db = core.database("Open_vSwitch").expect("database served");
    if let Err(e) = db.check_invariants() {
        panic!("database inconsistent: {e}");
    }
}

/// A byte source for structured generation; exhausted input reads as zeros.
#[derive(Debug)]
pub struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bytes<'a> {
    /// Reads from `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data, pos: 0 }
    }
    /// Whether every byte was consumed.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }
    /// The next byte (0 when exhausted).
    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    /// A little-endian u64.
    pub fn u64(&mut self) -> u64 {
        (0..8).fold(0u64, |a, _| (a << 8) | u64::from(self.u8()))
    }
    /// A value below `n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n <= 256 {
            self.u8() as usize % n
        } else {
            self.u64() as usize % n
        }
    }
    /// One of `xs`.
    pub fn pick<'x, T>(&mut self, xs: &'x [T]) -> &'x T {
        &xs[self.below(xs.len())]
    }
}

/// Builds random-but-structured operation lists against a schema.
struct Gen<'s, 'b> {
    schema: &'s DatabaseSchema,
    src: Bytes<'b>,
    /// UUIDs of rows that exist (per table) plus some that never will.
    known: Vec<String>,
    /// Named UUIDs declared so far in this transaction.
    names: Vec<String>,
}

const STRINGS: &[&str] = &[
    "", "br0", "p1", "eth0", "system", "internal", "x", "é", "a b",
];
const NAMES: &[&str] = &["n0", "n1", "n2", "row", "br", "0bad"];

impl<'s> Gen<'s, '_> {
    fn table(&mut self) -> &'s TableSchema {
        // Mostly the tables of the reference chain so rows survive GC.
        let chain = ["Open_vSwitch", "Bridge", "Port", "Interface"];
        if self.src.below(4) != 0 {
            let t = chain[self.src.below(chain.len())];
            if let Some(ts) = self.schema.tables.get(t) {
                return ts;
            }
        }
        let n = self.schema.tables.len();
        self.schema.tables.values().nth(self.src.below(n)).unwrap()
    }

    fn uuid_atom(&mut self) -> Value {
        match self.src.below(6) {
            0 | 1 if !self.known.is_empty() => {
                let u = self.src.pick(&self.known).clone();
                json!(["uuid", u])
            }
            2 if !self.names.is_empty() => {
                let n = self.src.pick(&self.names).clone();
                json!(["named-uuid", n])
            }
            3 => json!(["named-uuid", self.src.pick(NAMES)]),
            4 => json!(["uuid", "not-a-uuid"]),
            _ => json!([
                "uuid",
                uuid::Uuid::from_u64_pair(self.src.u64(), 7).to_string()
            ]),
        }
    }

    fn atom(&mut self, b: &BaseType) -> Value {
        if let Some(e) = &b.enum_
            && !e.is_empty()
            && self.src.below(4) != 0
        {
            return self.src.pick(e).to_json();
        }
        if self.src.below(16) == 0 {
            return self.wrong_atom();
        }
        match b.atomic {
            AtomicType::Integer => {
                let edge = [
                    0,
                    1,
                    -1,
                    b.min_integer.unwrap_or(0),
                    b.max_integer.unwrap_or(4096),
                    b.max_integer.unwrap_or(0).saturating_add(1),
                    i64::MAX,
                    i64::MIN,
                ];
                if self.src.below(2) == 0 {
                    json!(self.src.pick(&edge))
                } else {
                    json!(self.src.below(70_000) as i64 - 1000)
                }
            }
            AtomicType::Real => {
                json!(self.src.pick(&[0.0, 0.5, -1.5, 1e300, f64::MIN_POSITIVE]))
            }
            AtomicType::Boolean => json!(self.src.below(2) == 0),
            AtomicType::String => {
                if self.src.below(8) == 0 {
                    json!("s".repeat(self.src.below(300)))
                } else {
                    json!(self.src.pick(STRINGS))
                }
            }
            AtomicType::Uuid => self.uuid_atom(),
        }
    }

    fn wrong_atom(&mut self) -> Value {
        match self.src.below(9) {
            0 => json!(null),
            1 => json!(["set", 5]),
            2 => json!({"a": 1}),
            3 => json!(1.5),
            4 => json!(true),
            5 => json!("str"),
            6 => json!(["map", [[1]]]),
            7 => json!(["uuid"]),
            _ => json!(-7),
        }
    }

    fn datum(&mut self, t: &ColumnType) -> Value {
        let n = match self.src.below(8) {
            0 => 0,
            1 => t.max.min(3).saturating_add(1),
            _ => t.min.max(1).min(t.max.max(1)),
        };
        match &t.value {
            Some(vt) => {
                let pairs: Vec<Value> = (0..n)
                    .map(|_| json!([self.atom(&t.key), self.atom(vt)]))
                    .collect();
                json!(["map", pairs])
            }
            None if n == 1 && self.src.below(2) == 0 => self.atom(&t.key),
            None => {
                let atoms: Vec<Value> = (0..n).map(|_| self.atom(&t.key)).collect();
                json!(["set", atoms])
            }
        }
    }

    fn column<'t>(&mut self, ts: &'t TableSchema) -> Option<(&'t str, &'t ColumnType)> {
        if ts.columns.is_empty() {
            return None;
        }
        let c = ts.columns.values().nth(self.src.below(ts.columns.len()))?;
        Some((&c.name, &c.type_))
    }

    fn row(&mut self, ts: &TableSchema) -> Value {
        let mut m = serde_json::Map::new();
        for _ in 0..self.src.below(5) {
            if self.src.below(24) == 0 {
                m.insert("no_such_column".into(), json!(1));
                continue;
            }
            if let Some((c, t)) = self.column(ts) {
                let d = self.datum(t);
                m.insert(c.to_string(), d);
            }
        }
        Value::Object(m)
    }

    fn where_(&mut self, ts: &TableSchema) -> Value {
        match self.src.below(5) {
            0 => json!([]),
            1 => json!([["_uuid", "==", self.uuid_atom()]]),
            2 => json!([["_uuid", "!=", self.uuid_atom()]]),
            3 => match self.column(ts) {
                Some((c, t)) => {
                    let f = *self.src.pick(&[
                        "==", "!=", "<", "<=", ">", ">=", "includes", "excludes", "~",
                    ]);
                    json!([[c, f, self.datum(t)]])
                }
                None => json!([]),
            },
            _ => json!([["name", "==", self.src.pick(STRINGS)]]),
        }
    }

    fn op(&mut self) -> Value {
        let ts = self.table();
        let table = ts.name.clone();
        match self.src.below(12) {
            0..=3 => {
                let mut op = json!({"op": "insert", "table": table, "row": self.row(ts)});
                if self.src.below(2) == 0 {
                    let n = if self.src.below(4) == 0 {
                        (*self.src.pick(NAMES)).to_string()
                    } else {
                        format!("n{}", self.names.len())
                    };
                    self.names.push(n.clone());
                    op["uuid-name"] = json!(n);
                }
                op
            }
            4 | 5 => json!({"op": "update", "table": table, "where": self.where_(ts),
                            "row": self.row(ts)}),
            6 | 7 => {
                let mut muts = Vec::new();
                for _ in 0..1 + self.src.below(3) {
                    let Some((c, t)) = self.column(ts) else { break };
                    let m = *self.src.pick(&[
                        "insert", "delete", "+=", "-=", "*=", "/=", "%=", "=", "bogus",
                    ]);
                    let v = if matches!(m, "insert" | "delete") {
                        self.datum(&t.unbounded())
                    } else {
                        self.atom(&t.key)
                    };
                    muts.push(json!([c, m, v]));
                }
                json!({"op": "mutate", "table": table, "where": self.where_(ts),
                       "mutations": muts})
            }
            8 => json!({"op": "delete", "table": table, "where": self.where_(ts)}),
            9 => {
                let cols: Vec<&str> = ts.columns.keys().take(2).map(String::as_str).collect();
                json!({"op": "wait", "table": table, "where": self.where_(ts),
                       "columns": cols, "until": self.src.pick(&["==", "!=", "<>"]),
                       "rows": [], "timeout": 0})
            }
            10 => json!({"op": "select", "table": table, "where": self.where_(ts)}),
            _ => match self.src.below(6) {
                0 => json!({"op": "comment", "comment": "fuzz"}),
                1 => json!({"op": "abort"}),
                2 => json!({"op": "assert", "lock": "l"}),
                3 => json!({"op": "commit", "durable": false}),
                4 => json!({"op": "no-such-op"}),
                _ => json!([1, 2]),
            },
        }
    }

    /// A well-formed chain (Interface ← Port ← Bridge ← Open_vSwitch) with
    /// random extra columns, so later transactions find rows to work on.
    fn chain(&mut self, db: &Database) -> Vec<Value> {
        let k = self.src.below(1000);
        let mut ops = vec![
            json!({"op": "insert", "table": "Interface", "uuid-name": "i",
                   "row": {"name": format!("if{k}")}}),
            json!({"op": "insert", "table": "Port", "uuid-name": "p",
                   "row": {"name": format!("p{k}"), "interfaces": ["named-uuid", "i"]}}),
            json!({"op": "insert", "table": "Bridge", "uuid-name": "b",
                   "row": {"name": format!("br{k}"), "ports": ["named-uuid", "p"]}}),
        ];
        if db.rows("Open_vSwitch").is_some_and(|r| !r.is_empty()) {
            ops.push(json!({"op": "mutate", "table": "Open_vSwitch", "where": [],
                            "mutations": [["bridges", "insert", ["set", [["named-uuid", "b"]]]]]}));
        } else {
            ops.push(json!({"op": "insert", "table": "Open_vSwitch",
                            "row": {"bridges": ["named-uuid", "b"]}}));
        }
        ops
    }
}

/// Random-but-structured transactions against the vswitch schema, built
/// from `data`. Invariants: no panic; a failed transaction ends in an RFC
/// 7047 error object and changes nothing; a successful one has no error in
/// its results; after every transaction the database is consistent
/// ([`Database::check_invariants`]). Returns (transactions run, committed,
/// rows at the end) so the corpus test can check it reaches deep states.
pub fn transact_ops(data: &[u8]) -> (usize, usize, usize) {
    let schema = vswitch_schema();
    let mut db = Database::new(schema.clone());
    let mut g = Gen {
        schema: &schema,
        src: Bytes::new(data),
        known: Vec::new(),
        names: Vec::new(),
    };
    let (mut txns, mut ok) = (0, 0);
    while !g.src.is_empty() && txns < 64 {
        txns += 1;
        g.names.clear();
        g.known = db
            .schema()
            .tables
            .keys()
            .flat_map(|t| db.rows(t).into_iter().flatten().map(|(u, _)| u.to_string()))
            .collect();
        let ops: Vec<Value> = if g.src.below(4) == 0 {
            g.chain(&db)
        } else {
            let mut ops = Vec::new();
            if g.src.below(2) == 0 {
                ops.extend(g.chain(&db));
            }
            for _ in 0..1 + g.src.below(6) {
                ops.push(g.op());
            }
            ops
        };
        ok += usize::from(run_checked(&mut db, &ops));
    }
    (txns, ok, db.row_count())
}

/// Runs one transaction and checks the invariants of [`transact_ops`];
/// returns whether it committed.
pub fn run_checked(db: &mut Database, ops: &[Value]) -> bool {
    let before = db.clone();
    let out = db.transact(ops, &|_| false);
    assert!(
        out.results.len() <= ops.len() + 1,
        "more results than operations"
    );
    if out.ok {
        assert!(
            !out.results.iter().any(is_error_object),
            "successful transaction with an error result: {:?}",
            out.results
        );
        assert_eq!(out.results.len(), ops.len());
    } else {
        assert!(out.changes.is_empty(), "failed transaction has changes");
        if out.blocked.is_none() {
            let last = out.results.last().expect("a failed transaction says why");
            assert_error_object(last);
            assert!(
                out.results[..out.results.len() - 1]
                    .iter()
                    .all(|r| !is_error_object(r)),
                "error before the last result: {:?}",
                out.results
            );
        }
        for t in db.schema().tables.keys() {
            assert_eq!(
                db.rows(t),
                before.rows(t),
                "failed transaction changed table {t}: {ops:?}"
            );
        }
    }
    if let Err(e) = db.check_invariants() {
        panic!(
            "database inconsistent after {ops:?} (results {:?}): {e}",
            out.results
        );
    }
    out.ok
}

/// Uses the transaction generator to produce JSON-RPC request bytes (for
/// seeding [`server_stream`]).
pub fn transact_request_bytes(data: &[u8]) -> Vec<u8> {
    let schema = vswitch_schema();
    let db = Database::new(schema.clone());
    let mut g = Gen {
        schema: &schema,
        src: Bytes::new(data),
        known: Vec::new(),
        names: Vec::new(),
    };
    let mut params = vec![json!("Open_vSwitch")];
    params.extend(g.chain(&db));
    for _ in 0..1 + g.src.below(4) {
        params.push(g.op());
    }
    serde_json::to_vec(&json!({"id": 7, "method": "transact", "params": params})).unwrap()
}
