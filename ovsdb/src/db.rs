//! The in-memory transactional database (RFC 7047 §5.2): `transact` with every operation,
//! referential integrity, garbage collection, weak references, constraint and index checks.
//!
//! Sans-IO: [`Database::transact`] takes the parsed `params` of a transact request and returns
//! the result array plus the committed [`Changes`] (for monitors and the durable log).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::datum::{Atom, Datum};
use crate::error::{OvsdbError, Result};
use crate::schema::{AtomicType, ColumnType, DatabaseSchema, RefType, TableSchema};

/// A row: its `_version` and every column's value.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// `_version`.
    pub version: Uuid,
    /// Column values (every schema column is present).
    pub cols: BTreeMap<String, Datum>,
}

impl Row {
    /// A row with every column at its default.
    pub fn default_for(t: &TableSchema) -> Row {
        Row {
            version: Uuid::nil(),
            cols: t
                .columns
                .iter()
                .map(|(n, c)| (n.clone(), Datum::default_for(&c.type_)))
                .collect(),
        }
    }

    /// Value of a column, including `_uuid` (given) and `_version`.
    pub fn get(&self, uuid: Uuid, col: &str) -> Option<Datum> {
        match col {
            "_uuid" => Some(Datum::scalar(Atom::Uuid(uuid))),
            "_version" => Some(Datum::scalar(Atom::Uuid(self.version))),
            c => self.cols.get(c).cloned(),
        }
    }

    /// JSON object of the non-default columns (the log and update2 "insert"/"initial" form).
    pub fn to_json_nondefault(&self, t: &TableSchema, columns: Option<&[String]>) -> Value {
        let mut m = Map::new();
        for (n, d) in &self.cols {
            if columns.is_some_and(|cs| !cs.contains(n)) {
                continue;
            }
            if let Some(c) = t.columns.get(n)
                && !d.is_default(&c.type_)
            {
                m.insert(n.clone(), d.to_json());
            }
        }
        Value::Object(m)
    }

    /// Parse a row written by [`Row::to_json_nondefault`] (plus an optional `_version`).
    pub fn from_json_full(t: &TableSchema, v: &Value) -> Result<Row> {
        let mut r = Row::default_for(t);
        let m = v
            .as_object()
            .ok_or_else(|| OvsdbError::syntax("row must be an object").with_syntax(v))?;
        for (k, val) in m {
            if k == "_version" {
                let d = Datum::from_json(val, &crate::schema::uuid_column_type(), &mut |_| None)?;
                r.version = d.as_scalar().and_then(Atom::as_uuid).unwrap_or_default();
                continue;
            }
            let c = t.columns.get(k).ok_or_else(|| {
                OvsdbError::new(
                    "unknown column",
                    format!("No column {k} in table {}.", t.name),
                )
            })?;
            r.cols
                .insert(k.clone(), Datum::from_json(val, &c.type_, &mut |_| None)?);
        }
        Ok(r)
    }
}

/// One row's change in a committed transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct RowChange {
    /// Before (None = inserted).
    pub old: Option<Arc<Row>>,
    /// After (None = deleted).
    pub new: Option<Arc<Row>>,
}

/// Committed changes: table → row UUID → change.
pub type Changes = BTreeMap<String, BTreeMap<Uuid, RowChange>>;

/// Result of [`Database::transact`].
#[derive(Debug, Clone)]
pub struct TxnOutcome {
    /// The `result` array for the transact response.
    pub results: Vec<Value>,
    /// Committed changes (empty if nothing changed or the transaction failed).
    pub changes: Changes,
    /// Whether it succeeded.
    pub ok: bool,
    /// A `commit` operation asked for durability.
    pub durable: bool,
    /// Some `wait` with a nonzero timeout was not satisfied: the caller may retry until
    /// the timeout (milliseconds) elapses.
    pub blocked: Option<u64>,
    /// Comments from `comment` operations.
    pub comments: Vec<String>,
}

/// Per-table persistent unique-index maps.
type IndexMaps = Vec<BTreeMap<Vec<Datum>, Uuid>>;

/// A database instance.
#[derive(Debug, Clone)]
pub struct Database {
    schema: Arc<DatabaseSchema>,
    tables: BTreeMap<String, BTreeMap<Uuid, Arc<Row>>>,
    strong_refs: UuidMap<usize>,
    indexes: BTreeMap<String, IndexMaps>,
    /// Whether `commit` with `durable: true` is supported.
    pub durable: bool,
}

/// Fast hasher for random UUID keys (they are already uniformly distributed).
#[derive(Debug, Default, Clone, Copy)]
struct UuidHasher(u64);

impl std::hash::Hasher for UuidHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
}

type UuidMap<V> = HashMap<Uuid, V, std::hash::BuildHasherDefault<UuidHasher>>;

/// Calls `f(ref_table, target, +1/-1, column)` for every strong reference added or removed
/// between `old` and `new`; unchanged columns are skipped and sets are diffed.
fn ref_changes<'s>(
    ts: &'s TableSchema,
    old: Option<&Row>,
    new: Option<&Row>,
    mut f: impl FnMut(&'s str, Uuid, i64, &'s str),
) {
    for c in ts.columns.values() {
        let kref = c.type_.key.is_strong_ref();
        let vref = c.type_.value.as_ref().is_some_and(|v| v.is_strong_ref());
        if !kref && !vref {
            continue;
        }
        let kt = c.type_.key.ref_table.as_deref().unwrap_or("");
        let vt = c
            .type_
            .value
            .as_ref()
            .and_then(|v| v.ref_table.as_deref())
            .unwrap_or("");
        let o = old.and_then(|r| r.cols.get(&c.name));
        let n = new.and_then(|r| r.cols.get(&c.name));
        if let (Some(a), Some(b)) = (o, n)
            && a == b
        {
            continue;
        }
        if let (Some(Datum::Set(a)), Some(Datum::Set(b))) = (o, n) {
            for x in a.difference(b).filter_map(Atom::as_uuid) {
                f(kt, x, -1, &c.name);
            }
            for x in b.difference(a).filter_map(Atom::as_uuid) {
                f(kt, x, 1, &c.name);
            }
            continue;
        }
        for (d, sign) in [(o, -1), (n, 1)] {
            let Some(d) = d else { continue };
            if kref {
                for x in d.keys().filter_map(Atom::as_uuid) {
                    f(kt, x, sign, &c.name);
                }
            }
            if vref {
                for x in d.values().filter_map(Atom::as_uuid) {
                    f(vt, x, sign, &c.name);
                }
            }
        }
    }
}

fn index_key(idx: &[String], uuid: Uuid, row: &Row) -> Vec<Datum> {
    idx.iter()
        .map(|c| row.get(uuid, c).unwrap_or_else(Datum::empty_set))
        .collect()
}

impl Database {
    /// An empty database.
    pub fn new(schema: DatabaseSchema) -> Self {
        let tables = schema
            .tables
            .keys()
            .map(|t| (t.clone(), BTreeMap::new()))
            .collect();
        let indexes = schema
            .tables
            .iter()
            .map(|(n, t)| (n.clone(), vec![BTreeMap::new(); t.indexes.len()]))
            .collect();
        Database {
            schema: Arc::new(schema),
            tables,
            strong_refs: UuidMap::default(),
            indexes,
            durable: false,
        }
    }

    /// The schema.
    pub fn schema(&self) -> &Arc<DatabaseSchema> {
        &self.schema
    }

    /// Rows of a table.
    pub fn rows(&self, table: &str) -> Option<&BTreeMap<Uuid, Arc<Row>>> {
        self.tables.get(table)
    }

    /// Total number of rows.
    pub fn row_count(&self) -> usize {
        self.tables.values().map(BTreeMap::len).sum()
    }

    /// Apply already-validated changes (from [`Database::transact`] or a log replay).
    pub fn apply(&mut self, changes: &Changes) {
        for (tname, rows) in changes {
            let Some(ts) = self.schema.tables.get(tname) else {
                continue;
            };
            let table = self.tables.entry(tname.clone()).or_default();
            let idx = self.indexes.entry(tname.clone()).or_default();
            for (u, ch) in rows {
                let refs = &mut self.strong_refs;
                ref_changes(
                    ts,
                    table.get(u).map(|r| &**r),
                    ch.new.as_deref(),
                    |_, t, d, _| {
                        let n = refs.entry(t).or_default();
                        *n = (*n as i64 + d).max(0) as usize;
                        if *n == 0 {
                            refs.remove(&t);
                        }
                    },
                );
                if let Some(old) = table.get(u) {
                    for (i, cols) in ts.indexes.iter().enumerate() {
                        let k = index_key(cols, *u, old);
                        if idx[i].get(&k) == Some(u) {
                            idx[i].remove(&k);
                        }
                    }
                }
                match &ch.new {
                    Some(new) => {
                        for (i, cols) in ts.indexes.iter().enumerate() {
                            idx[i].insert(index_key(cols, *u, new), *u);
                        }
                        table.insert(*u, new.clone());
                    }
                    None => {
                        table.remove(u);
                    }
                }
            }
        }
    }

    /// Checks the database's invariants: every row has exactly the schema's columns and
    /// satisfies their constraints, every reference (strong or weak) points to an existing row
    /// of its table, every non-root row is strongly referenced, `maxRows` holds, the strong
    /// reference counts and unique indexes match a recomputation from the rows. Used by the
    /// fuzz entry points and tests; `Err` names the first violation.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> std::result::Result<(), String> {
        let mut refs: UuidMap<usize> = UuidMap::default();
        for (tname, ts) in &self.schema.tables {
            let rows = self
                .tables
                .get(tname)
                .ok_or_else(|| format!("table {tname} missing"))?;
            if let Some(m) = ts.max_rows
                && rows.len() as u64 > m
            {
                return Err(format!("{tname}: {} rows > maxRows {m}", rows.len()));
            }
            for (u, row) in rows {
                if row.cols.len() != ts.columns.len()
                    || !ts.columns.keys().all(|c| row.cols.contains_key(c))
                {
                    return Err(format!("{tname} row {u}: columns differ from the schema"));
                }
                for (cname, c) in &ts.columns {
                    let d = &row.cols[cname];
                    d.check(&c.type_)
                        .map_err(|e| format!("{tname} row {u} column {cname}: {e}"))?;
                    let mut visit = |b: &crate::schema::BaseType, a: &Atom| {
                        let (Some(rt), Some(x)) = (&b.ref_table, a.as_uuid()) else {
                            return Ok(());
                        };
                        if !self.tables.get(rt).is_some_and(|t| t.contains_key(&x)) {
                            return Err(format!(
                                "{tname} row {u} column {cname}: dangling reference {x} to {rt}"
                            ));
                        }
                        if b.ref_type == RefType::Strong {
                            *refs.entry(x).or_default() += 1;
                        }
                        Ok(())
                    };
                    for k in d.keys() {
                        visit(&c.type_.key, k)?;
                    }
                    if let Some(vt) = &c.type_.value {
                        for v in d.values() {
                            visit(vt, v)?;
                        }
                    }
                }
            }
        }
        for (tname, ts) in &self.schema.tables {
            if ts.is_root {
                continue;
            }
            for u in self.tables[tname].keys() {
                if !refs.contains_key(u) {
                    return Err(format!("{tname} row {u} is unreferenced (not collected)"));
                }
            }
        }
        if refs != self.strong_refs {
            return Err("strong reference counts differ from a recount".into());
        }
        for (tname, ts) in &self.schema.tables {
            let idx = self.indexes.get(tname).map(Vec::as_slice).unwrap_or(&[]);
            if idx.len() != ts.indexes.len() {
                return Err(format!("{tname}: wrong number of index maps"));
            }
            for (i, cols) in ts.indexes.iter().enumerate() {
                let mut seen = BTreeMap::new();
                for (u, row) in &self.tables[tname] {
                    if let Some(other) = seen.insert(index_key(cols, *u, row), *u) {
                        return Err(format!(
                            "{tname}: rows {other} and {u} duplicate index {cols:?}"
                        ));
                    }
                }
                if seen != idx[i] {
                    return Err(format!("{tname}: index {cols:?} map differs from the rows"));
                }
            }
        }
        Ok(())
    }

    /// Execute a transaction: `ops` are the transact params after the database name.
    /// `owns_lock` answers `assert` operations. On success the changes are applied.
    pub fn transact(&mut self, ops: &[Value], owns_lock: &dyn Fn(&str) -> bool) -> TxnOutcome {
        let mut txn = Txn {
            db: self,
            overlay: BTreeMap::new(),
            symbols: HashMap::new(),
        };
        let mut out = TxnOutcome {
            results: Vec::new(),
            changes: Changes::new(),
            ok: false,
            durable: false,
            blocked: None,
            comments: Vec::new(),
        };
        let n = ops.len();
        for (i, op) in ops.iter().enumerate() {
            match txn.execute(op, i + 1, n, owns_lock, &mut out) {
                Ok(r) => out.results.push(r),
                Err(e) => {
                    out.results.push(e.to_json());
                    return out;
                }
            }
        }
        match txn.finish() {
            Ok(changes) => {
                out.ok = true;
                self.apply(&changes);
                out.changes = changes;
            }
            Err(e) => out.results.push(e.to_json()),
        }
        out
    }
}

/// A clause of a `where`.
#[derive(Debug, Clone)]
pub struct Clause {
    column: String,
    func: Func,
    arg: Datum,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Func {
    Lt,
    Le,
    Eq,
    Ne,
    Ge,
    Gt,
    Includes,
    Excludes,
}

/// A parsed condition: a conjunction of clauses, or a constant.
#[derive(Debug, Clone)]
pub enum Condition {
    /// Always true / false (monitor_cond's `true`/`false` clauses).
    Const(bool),
    /// All clauses must hold.
    Clauses(Vec<Clause>),
}

impl Condition {
    /// Parse a `where` array for `table`. Boolean clauses (`true`/`false`) are accepted.
    pub fn parse(t: &TableSchema, v: &Value) -> Result<Condition> {
        Self::parse_with(t, v, &mut |_| None)
    }

    /// Like [`Condition::parse`], resolving `named-uuid`s (inside a transaction).
    pub fn parse_with(
        t: &TableSchema,
        v: &Value,
        named: &mut crate::datum::NamedUuidResolver<'_>,
    ) -> Result<Condition> {
        let arr = v
            .as_array()
            .ok_or_else(|| OvsdbError::syntax("where must be an array").with_syntax(v))?;
        let mut clauses = Vec::new();
        for c in arr {
            match c {
                Value::Bool(true) => continue,
                Value::Bool(false) => return Ok(Condition::Const(false)),
                _ => clauses.push(Clause::parse(t, c, named)?),
            }
        }
        Ok(Condition::Clauses(clauses))
    }

    /// Evaluate against a row.
    pub fn eval(&self, uuid: Uuid, row: &Row) -> bool {
        match self {
            Condition::Const(b) => *b,
            Condition::Clauses(cs) => cs.iter().all(|c| c.eval(uuid, row)),
        }
    }

    fn uuid_eq(&self) -> Option<Uuid> {
        let Condition::Clauses(cs) = self else {
            return None;
        };
        cs.iter()
            .find(|c| c.column == "_uuid" && c.func == Func::Eq)
            .and_then(|c| c.arg.as_scalar())
            .and_then(Atom::as_uuid)
    }
}

impl Clause {
    fn parse(
        t: &TableSchema,
        v: &Value,
        named: &mut crate::datum::NamedUuidResolver<'_>,
    ) -> Result<Clause> {
        let Some([Value::String(col), Value::String(f), arg]) = v.as_array().map(Vec::as_slice)
        else {
            return Err(OvsdbError::syntax("Parse error in condition.").with_syntax(v));
        };
        let ty = t.column_type(col).ok_or_else(|| {
            OvsdbError::syntax(format!("No column {col} in table {}.", t.name)).with_syntax(v)
        })?;
        let func = match f.as_str() {
            "<" => Func::Lt,
            "<=" => Func::Le,
            "==" => Func::Eq,
            "!=" => Func::Ne,
            ">=" => Func::Ge,
            ">" => Func::Gt,
            "includes" => Func::Includes,
            "excludes" => Func::Excludes,
            _ => {
                return Err(OvsdbError::new(
                    "unknown function",
                    format!("No function named {f}."),
                ));
            }
        };
        if matches!(func, Func::Lt | Func::Le | Func::Ge | Func::Gt)
            && !(ty.max == 1
                && ty.value.is_none()
                && matches!(ty.key.atomic, AtomicType::Integer | AtomicType::Real))
        {
            return Err(OvsdbError::syntax(format!(
                "Type mismatch: \"{f}\" operator may not be applied to column {col} of type {}.",
                ty.describe()
            ))
            .with_syntax(v));
        }
        let aty = if matches!(func, Func::Includes | Func::Excludes) {
            ty.unbounded()
        } else {
            ColumnType { min: 0, ..ty }
        };
        let arg = Datum::from_json(arg, &aty, named)?;
        Ok(Clause {
            column: col.clone(),
            func,
            arg,
        })
    }

    fn eval(&self, uuid: Uuid, row: &Row) -> bool {
        let Some(d) = row.get(uuid, &self.column) else {
            return false;
        };
        match self.func {
            Func::Eq => d == self.arg,
            Func::Ne => d != self.arg,
            Func::Includes => d.includes(&self.arg),
            Func::Excludes => d.excludes(&self.arg),
            f => {
                let (Some(a), Some(b)) = (d.as_scalar(), self.arg.as_scalar()) else {
                    return false;
                };
                let o = match (a, b) {
                    (Atom::Integer(x), Atom::Integer(y)) => x.cmp(y),
                    (Atom::Real(x), Atom::Real(y)) => x.total_cmp(y),
                    _ => return false,
                };
                match f {
                    Func::Lt => o.is_lt(),
                    Func::Le => o.is_le(),
                    Func::Ge => o.is_ge(),
                    _ => o.is_gt(),
                }
            }
        }
    }
}

struct Txn<'a> {
    db: &'a Database,
    /// table → uuid → new state (None = deleted).
    overlay: BTreeMap<String, BTreeMap<Uuid, Option<Arc<Row>>>>,
    /// uuid-name → (uuid, created by an insert).
    symbols: HashMap<String, (Uuid, bool)>,
}

fn member<'v>(op: &'v Map<String, Value>, k: &str) -> Result<&'v Value> {
    op.get(k)
        .ok_or_else(|| OvsdbError::syntax(format!("Required '{k}' member is missing.")))
}

fn table_rows_json(t: &TableSchema, uuid: Uuid, row: &Row, cols: &[String]) -> Value {
    let mut m = Map::new();
    for c in cols {
        if let Some(d) = row.get(uuid, c) {
            m.insert(c.clone(), d.to_json());
        }
    }
    let _ = t;
    Value::Object(m)
}

impl Txn<'_> {
    fn get(&self, table: &str, u: Uuid) -> Option<&Row> {
        match self.overlay.get(table).and_then(|o| o.get(&u)) {
            Some(r) => r.as_deref(),
            None => self
                .db
                .tables
                .get(table)
                .and_then(|t| t.get(&u))
                .map(|r| &**r),
        }
    }

    fn get_arc(&self, table: &str, u: Uuid) -> Option<Arc<Row>> {
        match self.overlay.get(table).and_then(|o| o.get(&u)) {
            Some(r) => r.clone(),
            None => self.db.tables.get(table).and_then(|t| t.get(&u)).cloned(),
        }
    }

    fn exists(&self, table: &str, u: Uuid) -> bool {
        self.get(table, u).is_some()
    }

    fn put(&mut self, table: &str, u: Uuid, row: Option<Row>) {
        self.overlay
            .entry(table.to_string())
            .or_default()
            .insert(u, row.map(Arc::new));
    }

    /// UUIDs of rows in `table` matching `cond` (post-overlay).
    fn matching(&self, table: &str, cond: &Condition) -> Vec<Uuid> {
        if let Some(u) = cond.uuid_eq() {
            return self
                .get(table, u)
                .filter(|r| cond.eval(u, r))
                .map(|_| vec![u])
                .unwrap_or_default();
        }
        let empty = BTreeMap::new();
        let base = self.db.tables.get(table).unwrap_or(&empty);
        let ov = self.overlay.get(table);
        let mut out: Vec<Uuid> = base
            .iter()
            .filter(|(u, _)| ov.is_none_or(|o| !o.contains_key(u)))
            .filter(|(u, r)| cond.eval(**u, r))
            .map(|(u, _)| *u)
            .collect();
        if let Some(o) = ov {
            out.extend(
                o.iter()
                    .filter_map(|(u, r)| r.as_ref().filter(|r| cond.eval(*u, r)).map(|_| *u)),
            );
        }
        out.sort();
        out
    }

    fn cond(
        &mut self,
        ts: &TableSchema,
        op: &Map<String, Value>,
        wrap: impl Fn(OvsdbError) -> OvsdbError,
    ) -> Result<Condition> {
        let w = member(op, "where").map_err(wrap)?;
        let mut r = self.resolver();
        Condition::parse_with(ts, w, &mut r)
    }

    fn all_uuids(&self, table: &str) -> Vec<Uuid> {
        self.matching(table, &Condition::Const(true))
    }

    fn table<'s, 'c>(
        schema: &'c DatabaseSchema,
        op: &'s Map<String, Value>,
    ) -> Result<(&'s str, &'c TableSchema)> {
        let t = member(op, "table")?
            .as_str()
            .ok_or_else(|| OvsdbError::syntax("'table' member must be a string"))?;
        let ts = schema
            .tables
            .get(t)
            .ok_or_else(|| OvsdbError::syntax(format!("No table named {t}.")))?;
        Ok((t, ts))
    }

    fn resolver(&mut self) -> impl FnMut(&str) -> Option<Uuid> + '_ {
        |name: &str| {
            Some(
                self.symbols
                    .entry(name.to_string())
                    .or_insert_with(|| (Uuid::new_v4(), false))
                    .0,
            )
        }
    }

    /// Parse a `row` object for insert (`update == false`) or update.
    fn parse_row(
        &mut self,
        ts: &TableSchema,
        v: &Value,
        update: bool,
    ) -> Result<Vec<(String, Datum)>> {
        let m = v
            .as_object()
            .ok_or_else(|| OvsdbError::syntax("row must be an object").with_syntax(v))?;
        let mut out = Vec::new();
        for (k, val) in m {
            let Some(c) = ts.columns.get(k) else {
                if k == "_uuid" || k == "_version" {
                    return Err(OvsdbError::constraint(format!(
                        "Cannot update immutable column {k} in table {}.",
                        ts.name
                    ))
                    .with_syntax(v));
                }
                return Err(OvsdbError::new(
                    "unknown column",
                    format!("No column {k} in table {}.", ts.name),
                )
                .with_syntax(v));
            };
            if update && !c.mutable {
                return Err(OvsdbError::constraint(format!(
                    "Cannot update immutable column {k} in table {}.",
                    ts.name
                ))
                .with_syntax(v));
            }
            let mut r = self.resolver();
            out.push((k.clone(), Datum::from_json(val, &c.type_, &mut r)?));
        }
        Ok(out)
    }

    fn parse_columns(ts: &TableSchema, op: &Map<String, Value>) -> Result<Vec<String>> {
        match op.get("columns") {
            None => Ok(["_uuid", "_version"]
                .iter()
                .map(|s| s.to_string())
                .chain(ts.columns.keys().cloned())
                .collect()),
            Some(v) => {
                let a = v
                    .as_array()
                    .ok_or_else(|| OvsdbError::syntax("columns must be an array").with_syntax(v))?;
                a.iter()
                    .map(|c| match c.as_str() {
                        Some(s) if ts.column_type(s).is_some() => Ok(s.to_string()),
                        _ => Err(OvsdbError::syntax(format!(
                            "{} is not a valid column name",
                            c.as_str().unwrap_or("?")
                        ))
                        .with_syntax(v)),
                    })
                    .collect()
            }
        }
    }

    fn execute(
        &mut self,
        opv: &Value,
        i: usize,
        n: usize,
        owns_lock: &dyn Fn(&str) -> bool,
        out: &mut TxnOutcome,
    ) -> Result<Value> {
        let wrap = |e: OvsdbError| {
            if e.error == "syntax error" && e.syntax.is_none() {
                OvsdbError::syntax(format!(
                    "Parsing ovsdb operation {i} of {n} failed: {}",
                    e.details.unwrap_or_default()
                ))
                .with_syntax(opv)
            } else {
                e
            }
        };
        let schema = self.db.schema.clone();
        let op = opv
            .as_object()
            .ok_or_else(|| OvsdbError::syntax("operation must be an object"))
            .map_err(wrap)?;
        let name = member(op, "op")
            .and_then(|v| {
                v.as_str()
                    .ok_or_else(|| OvsdbError::syntax("'op' member must be a string"))
            })
            .map_err(wrap)?;
        match name {
            "insert" => {
                let (t, ts) = Self::table(&schema, op).map_err(wrap)?;
                let rowv = op.get("row").cloned().unwrap_or(json!({}));
                // ovsdb-server extension: "uuid": "<uuid string>" chooses the new row's UUID.
                let mut u = match op.get("uuid") {
                    Some(x) => Some(
                        x.as_str()
                            .and_then(|s| Uuid::parse_str(s).ok())
                            .ok_or_else(|| {
                                OvsdbError::syntax("\"uuid\" must be a UUID string").with_syntax(x)
                            })?,
                    ),
                    None => None,
                };
                if let Some(nv) = op.get("uuid-name") {
                    let name = nv.as_str().ok_or_else(|| {
                        OvsdbError::syntax("uuid-name must be a string").with_syntax(nv)
                    })?;
                    match self.symbols.get_mut(name) {
                        Some((_, true)) => {
                            return Err(OvsdbError::new(
                                "duplicate uuid-name",
                                "This \"uuid-name\" appeared on an earlier \"insert\" operation.",
                            )
                            .with_syntax(nv));
                        }
                        Some((su, created)) => {
                            *created = true;
                            u = Some(*su);
                        }
                        None => {
                            let nu = u.unwrap_or_else(Uuid::new_v4);
                            self.symbols.insert(name.to_string(), (nu, true));
                            u = Some(nu);
                        }
                    }
                }
                let u = u.unwrap_or_else(Uuid::new_v4);
                if self.exists(t, u) {
                    return Err(OvsdbError::new(
                        "duplicate uuid",
                        format!(
                            "This UUID would duplicate a UUID already present within the table or deleted within the same transaction: {u}"
                        ),
                    ));
                }
                let vals = self.parse_row(ts, &rowv, false)?;
                let mut row = Row::default_for(ts);
                row.cols.extend(vals);
                self.put(t, u, Some(row));
                Ok(json!({"uuid": ["uuid", u.to_string()]}))
            }
            "select" => {
                let (t, ts) = Self::table(&schema, op).map_err(wrap)?;
                let cond = self.cond(ts, op, wrap)?;
                let cols = Self::parse_columns(ts, op)?;
                let rows: Vec<Value> = self
                    .matching(t, &cond)
                    .into_iter()
                    .filter_map(|u| self.get(t, u).map(|r| table_rows_json(ts, u, r, &cols)))
                    .collect();
                Ok(json!({"rows": rows}))
            }
            "update" => {
                let (t, ts) = Self::table(&schema, op).map_err(wrap)?;
                let cond = self.cond(ts, op, wrap)?;
                let vals = self.parse_row(ts, member(op, "row").map_err(wrap)?, true)?;
                let us = self.matching(t, &cond);
                for u in &us {
                    let mut r = self
                        .get(t, *u)
                        .cloned()
                        .unwrap_or_else(|| Row::default_for(ts));
                    for (k, d) in &vals {
                        r.cols.insert(k.clone(), d.clone());
                    }
                    self.put(t, *u, Some(r));
                }
                Ok(json!({"count": us.len()}))
            }
            "mutate" => {
                let (t, ts) = Self::table(&schema, op).map_err(wrap)?;
                let cond = self.cond(ts, op, wrap)?;
                let mv = member(op, "mutations").map_err(wrap)?;
                let ma = mv.as_array().ok_or_else(|| {
                    OvsdbError::syntax("mutations must be an array").with_syntax(mv)
                })?;
                let mut muts = Vec::new();
                for m in ma {
                    muts.push(self.parse_mutation(ts, m)?);
                }
                let us = self.matching(t, &cond);
                for u in &us {
                    let mut r = self
                        .get(t, *u)
                        .cloned()
                        .unwrap_or_else(|| Row::default_for(ts));
                    for m in &muts {
                        let c = &ts.columns[&m.column];
                        let d = r
                            .cols
                            .get_mut(&m.column)
                            .ok_or_else(|| OvsdbError::syntax("no such column"))?;
                        m.apply(d, &c.type_)?;
                    }
                    self.put(t, *u, Some(r));
                }
                Ok(json!({"count": us.len()}))
            }
            "delete" => {
                let (t, ts) = Self::table(&schema, op).map_err(wrap)?;
                let cond = self.cond(ts, op, wrap)?;
                let us = self.matching(t, &cond);
                for u in &us {
                    self.put(t, *u, None);
                }
                Ok(json!({"count": us.len()}))
            }
            "wait" => {
                let (t, ts) = Self::table(&schema, op).map_err(wrap)?;
                let cond = self.cond(ts, op, wrap)?;
                let cols = Self::parse_columns(ts, op)?;
                let until = member(op, "until").map_err(wrap)?.as_str().unwrap_or("");
                let eq = match until {
                    "==" => true,
                    "!=" => false,
                    _ => {
                        return Err(wrap(OvsdbError::syntax(
                            "\"until\" must be \"==\" or \"!=\"",
                        )));
                    }
                };
                let rv = member(op, "rows").map_err(wrap)?;
                let ra = rv
                    .as_array()
                    .ok_or_else(|| OvsdbError::syntax("rows must be an array").with_syntax(rv))?;
                let mut want: Vec<Vec<Datum>> = Vec::new();
                for r in ra {
                    let m = r.as_object().ok_or_else(|| {
                        OvsdbError::syntax("row must be an object").with_syntax(r)
                    })?;
                    let mut key = Vec::new();
                    for c in &cols {
                        let ty = ts
                            .column_type(c)
                            .unwrap_or_else(crate::schema::uuid_column_type);
                        let v = m.get(c).ok_or_else(|| {
                            OvsdbError::syntax(format!("row is missing column {c}")).with_syntax(r)
                        })?;
                        key.push(Datum::from_json(v, &ty, &mut |_| None)?);
                    }
                    want.push(key);
                }
                let mut have: Vec<Vec<Datum>> = self
                    .matching(t, &cond)
                    .into_iter()
                    .filter_map(|u| {
                        self.get(t, u).map(|r| {
                            cols.iter()
                                .map(|c| r.get(u, c).unwrap_or_else(Datum::empty_set))
                                .collect()
                        })
                    })
                    .collect();
                want.sort();
                have.sort();
                if (have == want) == eq {
                    return Ok(json!({}));
                }
                let timeout = op.get("timeout").and_then(Value::as_u64);
                match timeout {
                    Some(0) => Err(OvsdbError::new("timed out", "\"where\" clause test failed")),
                    ms => {
                        let ms = ms.unwrap_or(u64::MAX);
                        out.blocked = Some(ms);
                        Err(OvsdbError::new(
                            "timed out",
                            format!("\"wait\" timed out after {ms} ms"),
                        ))
                    }
                }
            }
            "commit" => {
                let d = member(op, "durable")
                    .map_err(wrap)?
                    .as_bool()
                    .ok_or_else(|| wrap(OvsdbError::syntax("durable must be a boolean")))?;
                if d && !self.db.durable {
                    return Err(OvsdbError::new("not supported", "Database is not durable."));
                }
                out.durable |= d;
                Ok(json!({}))
            }
            "abort" => Err(OvsdbError::new("aborted", "aborted by request")),
            "comment" => {
                if let Some(c) = op.get("comment").and_then(Value::as_str) {
                    out.comments.push(c.to_string());
                }
                Ok(json!({}))
            }
            "assert" => {
                let l = member(op, "lock")
                    .map_err(wrap)?
                    .as_str()
                    .ok_or_else(|| wrap(OvsdbError::syntax("lock must be a string")))?;
                if owns_lock(l) {
                    Ok(json!({}))
                } else {
                    Err(OvsdbError::new(
                        "not owner",
                        format!("Asserted lock {l} not held."),
                    ))
                }
            }
            other => Err(wrap(OvsdbError::syntax(format!(
                "No operation \"{other}\""
            )))),
        }
    }

    fn parse_mutation(&mut self, ts: &TableSchema, v: &Value) -> Result<Mutation> {
        let Some([Value::String(col), Value::String(m), arg]) = v.as_array().map(Vec::as_slice)
        else {
            return Err(OvsdbError::syntax("Parse error in mutation.").with_syntax(v));
        };
        let mutator = match m.as_str() {
            "+=" => Mutator::Add,
            "-=" => Mutator::Sub,
            "*=" => Mutator::Mul,
            "/=" => Mutator::Div,
            "%=" => Mutator::Mod,
            "insert" => Mutator::Insert,
            "delete" => Mutator::Delete,
            _ => {
                return Err(OvsdbError::new(
                    "unknown mutator",
                    format!("No mutator named {m}."),
                ));
            }
        };
        let Some(c) = ts.columns.get(col) else {
            if col == "_uuid" || col == "_version" {
                return Err(OvsdbError::constraint(format!(
                    "Cannot mutate immutable column {col} in table {}.",
                    ts.name
                ))
                .with_syntax(v));
            }
            return Err(
                OvsdbError::syntax(format!("No column {col} in table {}.", ts.name)).with_syntax(v),
            );
        };
        if !c.mutable {
            return Err(OvsdbError::constraint(format!(
                "Cannot mutate immutable column {col} in table {}.",
                ts.name
            ))
            .with_syntax(v));
        }
        let ty = &c.type_;
        let arg = match mutator {
            Mutator::Insert | Mutator::Delete => {
                let aty = if mutator == Mutator::Delete {
                    ty.unbounded()
                } else {
                    ColumnType {
                        min: 0,
                        ..ty.clone()
                    }
                };
                let mut r = self.resolver();
                if ty.is_map()
                    && mutator == Mutator::Delete
                    && !matches!(arg.as_array().and_then(|a| a.first()), Some(Value::String(s)) if s == "map")
                {
                    let kty = ColumnType { value: None, ..aty };
                    Datum::from_json(arg, &kty, &mut r)?
                } else {
                    Datum::from_json(arg, &aty, &mut r)?
                }
            }
            _ => {
                let ok = !ty.is_map()
                    && (matches!(ty.key.atomic, AtomicType::Integer | AtomicType::Real)
                        && (mutator != Mutator::Mod || ty.key.atomic == AtomicType::Integer));
                if !ok {
                    return Err(OvsdbError::syntax(format!(
                        "Type mismatch: \"{m}\" operator may not be applied to column {col} of type {}.",
                        ty.describe()
                    ))
                    .with_syntax(v));
                }
                Datum::scalar(Atom::from_json_untyped(arg, ty.key.atomic, &mut |_| None)?)
            }
        };
        Ok(Mutation {
            column: col.clone(),
            mutator,
            arg,
        })
    }

    /// Commit-time processing: GC, referential integrity, weak refs, constraints, indexes.
    fn finish(mut self) -> Result<Changes> {
        let schema = self.db.schema.clone();
        // Strong reference count deltas (only changed columns are examined).
        let mut delta: UuidMap<i64> = UuidMap::default();
        let mut candidates: Vec<(&str, Uuid)> = Vec::new();
        let mut added: Vec<(&str, Uuid, &str, Uuid, &str)> = Vec::new();
        for (t, rows) in &self.overlay {
            let (t, ts) = schema
                .tables
                .get_key_value(t)
                .expect("overlay tables exist");
            for (u, new) in rows {
                ref_changes(
                    ts,
                    self.db.tables[t].get(u).map(|r| &**r),
                    new.as_deref(),
                    |rt, x, d, col| {
                        *delta.entry(x).or_default() += d;
                        if d < 0 {
                            candidates.push((rt, x));
                        } else {
                            added.push((rt, x, t, *u, col));
                        }
                    },
                );
                if new.is_some() {
                    candidates.push((t, *u));
                }
            }
        }
        // Referential integrity of the references written by the operations (checked before GC,
        // as ovsdb-server does, so an unreferenced row with a dangling reference is an error).
        for (rt, x, t, u, col) in added {
            if !self.exists(rt, x) {
                return Err(OvsdbError::referential(format!(
                    "Table {t} column {col} row {u} references nonexistent row {x} in table {rt}."
                )));
            }
        }
        let count = |delta: &UuidMap<i64>, u: &Uuid| {
            *self.db.strong_refs.get(u).unwrap_or(&0) as i64 + delta.get(u).copied().unwrap_or(0)
        };
        // Garbage collection of unreferenced rows in non-root tables.
        while let Some((t, u)) = candidates.pop() {
            let Some(ts) = schema.tables.get(t) else {
                continue;
            };
            if ts.is_root || count(&delta, &u) > 0 {
                continue;
            }
            let Some(row) = self.get_arc(t, u) else {
                continue;
            };
            ref_changes(ts, Some(&row), None, |rt, x, d, _| {
                *delta.entry(x).or_default() += d;
                candidates.push((rt, x));
            });
            self.overlay
                .entry(t.to_string())
                .or_default()
                .insert(u, None);
        }
        // Deleted rows must not remain referenced.
        for (t, rows) in &self.overlay {
            for (u, new) in rows {
                if new.is_none() {
                    let n = count(&delta, u);
                    if n > 0 && self.db.tables[t].contains_key(u) {
                        return Err(OvsdbError::referential(format!(
                            "cannot delete {t} row {u} because of {n} remaining reference(s)"
                        )));
                    }
                }
            }
        }
        // Weak references: drop references to rows that do not exist after the transaction.
        let deleted: BTreeMap<String, BTreeSet<Uuid>> = self
            .overlay
            .iter()
            .map(|(t, rows)| {
                (
                    t.clone(),
                    rows.iter()
                        .filter(|(u, r)| r.is_none() && self.db.tables[t.as_str()].contains_key(u))
                        .map(|(u, _)| *u)
                        .collect::<BTreeSet<_>>(),
                )
            })
            .filter(|(_, s)| !s.is_empty())
            .collect();
        let mut weak_fix: Vec<(String, Uuid)> = Vec::new();
        for (t, ts) in &schema.tables {
            let has_weak = ts.columns.values().any(|c| {
                std::iter::once(&c.type_.key)
                    .chain(c.type_.value.as_ref())
                    .any(|b| b.ref_type == RefType::Weak && b.ref_table.is_some())
            });
            if !has_weak {
                continue;
            }
            let points_to_deleted = ts.columns.values().any(|c| {
                std::iter::once(&c.type_.key)
                    .chain(c.type_.value.as_ref())
                    .any(|b| {
                        b.ref_type == RefType::Weak
                            && b.ref_table
                                .as_ref()
                                .is_some_and(|r| deleted.contains_key(r))
                    })
            });
            if points_to_deleted {
                weak_fix.extend(self.all_uuids(t).into_iter().map(|u| (t.clone(), u)));
            } else if let Some(o) = self.overlay.get(t) {
                weak_fix.extend(
                    o.iter()
                        .filter(|(_, r)| r.is_some())
                        .map(|(u, _)| (t.clone(), *u)),
                );
            }
        }
        for (t, u) in weak_fix {
            let ts = &schema.tables[&t];
            let Some(row) = self.get(&t, u) else { continue };
            let mut new = row.clone();
            let mut changed = false;
            for c in ts.columns.values() {
                let kw = c.type_.key.ref_type == RefType::Weak && c.type_.key.ref_table.is_some();
                let vw = c
                    .type_
                    .value
                    .as_ref()
                    .is_some_and(|v| v.ref_type == RefType::Weak && v.ref_table.is_some());
                if !kw && !vw {
                    continue;
                }
                let krt = c.type_.key.ref_table.clone().unwrap_or_default();
                let vrt = c
                    .type_
                    .value
                    .as_ref()
                    .and_then(|v| v.ref_table.clone())
                    .unwrap_or_default();
                let live = |rt: &str, a: &Atom| a.as_uuid().is_none_or(|x| self.exists(rt, x));
                let d = new.cols.get_mut(&c.name).expect("column present");
                let before = d.len();
                match d {
                    Datum::Set(s) if kw => s.retain(|a| live(&krt, a)),
                    Datum::Map(m) => {
                        m.retain(|k, v| (!kw || live(&krt, k)) && (!vw || live(&vrt, v)))
                    }
                    _ => {}
                }
                if d.len() != before {
                    changed = true;
                    if d.len() < c.type_.min {
                        return Err(OvsdbError::constraint(format!(
                            "Deletion of {} weak reference(s) to deleted (or never-existing) rows from column \"{}\" in \"{t}\" row {u} caused this column to have {} element(s), but it must have at least {}.",
                            before - d.len(),
                            c.name,
                            d.len(),
                            c.type_.min
                        )));
                    }
                }
            }
            if changed {
                self.put(&t, u, Some(new));
            }
        }
        // Build the change set, with size checks and fresh versions.
        let mut changes = Changes::new();
        for (t, rows) in std::mem::take(&mut self.overlay) {
            let ts = &schema.tables[&t];
            let base = &self.db.tables[&t];
            let mut out = BTreeMap::new();
            for (u, new) in rows {
                let old = base.get(&u).cloned();
                match (old, new) {
                    (None, None) => {}
                    (old, Some(mut new)) => {
                        if old.as_ref().is_some_and(|o| o.cols == new.cols) {
                            continue;
                        }
                        for c in ts.columns.values() {
                            let d = &new.cols[&c.name];
                            if d.len() < c.type_.min || d.len() > c.type_.max {
                                return Err(OvsdbError::constraint(format!(
                                    "column {} in table {t} row {u} has {} elements, outside the allowed range {} to {}",
                                    c.name,
                                    d.len(),
                                    c.type_.min,
                                    c.type_.max
                                )));
                            }
                        }
                        Arc::make_mut(&mut new).version = Uuid::new_v4();
                        out.insert(
                            u,
                            RowChange {
                                old,
                                new: Some(new),
                            },
                        );
                    }
                    (Some(old), None) => {
                        out.insert(
                            u,
                            RowChange {
                                old: Some(old),
                                new: None,
                            },
                        );
                    }
                }
            }
            if !out.is_empty() {
                changes.insert(t, out);
            }
        }
        // maxRows and unique indexes.
        for (t, rows) in &changes {
            let ts = &schema.tables[t];
            let base = &self.db.tables[t];
            if let Some(max) = ts.max_rows {
                let added = rows.values().filter(|c| c.old.is_none()).count() as i64;
                let removed = rows.values().filter(|c| c.new.is_none()).count() as i64;
                let n = base.len() as i64 + added - removed;
                if n > max as i64 {
                    return Err(OvsdbError::constraint(format!(
                        "transaction causes \"{t}\" table to contain {n} rows, greater than the schema-defined limit of {max} row(s)"
                    )));
                }
            }
            for (i, cols) in ts.indexes.iter().enumerate() {
                let persisted = &self.db.indexes[t][i];
                let mut seen: BTreeMap<Vec<Datum>, Uuid> = BTreeMap::new();
                for (u, ch) in rows {
                    let Some(new) = &ch.new else { continue };
                    let k = index_key(cols, *u, new);
                    let other = seen.insert(k.clone(), *u).or_else(|| {
                        persisted
                            .get(&k)
                            .copied()
                            .filter(|o| o != u && !rows.contains_key(o))
                    });
                    if let Some(o) = other {
                        let vals: Vec<String> = k.iter().map(|d| d.to_json().to_string()).collect();
                        return Err(OvsdbError::constraint(format!(
                            "Transaction causes multiple rows in \"{t}\" table to have identical values ({}) for index on column{} \"{}\".  First row, with UUID {o}, existed in the database before this transaction and was not modified by the transaction.  Second row, with UUID {u}, was inserted by this transaction.",
                            vals.join(", "),
                            if cols.len() > 1 { "s" } else { "" },
                            cols.join("\", \"")
                        )));
                    }
                }
            }
        }
        Ok(changes)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mutator {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Insert,
    Delete,
}

#[derive(Debug, Clone)]
struct Mutation {
    column: String,
    mutator: Mutator,
    arg: Datum,
}

impl Mutation {
    fn apply(&self, d: &mut Datum, ty: &ColumnType) -> Result<()> {
        match self.mutator {
            Mutator::Insert => match (&mut *d, &self.arg) {
                (Datum::Set(s), Datum::Set(a)) => s.extend(a.iter().cloned()),
                (Datum::Map(m), Datum::Map(a)) => {
                    for (k, v) in a {
                        m.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
                _ => return Err(OvsdbError::syntax("mutation argument type mismatch")),
            },
            Mutator::Delete => match (&mut *d, &self.arg) {
                (Datum::Set(s), Datum::Set(a)) => s.retain(|x| !a.contains(x)),
                (Datum::Map(m), Datum::Map(a)) => m.retain(|k, v| a.get(k) != Some(v)),
                (Datum::Map(m), Datum::Set(a)) => m.retain(|k, _| !a.contains(k)),
                _ => return Err(OvsdbError::syntax("mutation argument type mismatch")),
            },
            m => {
                let Datum::Set(s) = d else {
                    return Err(OvsdbError::syntax("mutation argument type mismatch"));
                };
                let Some(arg) = self.arg.as_scalar() else {
                    return Err(OvsdbError::syntax("mutation argument must be an atom"));
                };
                let mut out = BTreeSet::new();
                for x in s.iter() {
                    let r = match (x, arg) {
                        (Atom::Integer(a), Atom::Integer(b)) => {
                            let v = match m {
                                Mutator::Add => a.checked_add(*b),
                                Mutator::Sub => a.checked_sub(*b),
                                Mutator::Mul => a.checked_mul(*b),
                                Mutator::Div | Mutator::Mod if *b == 0 => {
                                    return Err(OvsdbError::new(
                                        "domain error",
                                        "Division by zero.",
                                    ));
                                }
                                Mutator::Div => a.checked_div(*b),
                                _ => a.checked_rem(*b),
                            };
                            Atom::Integer(v.ok_or_else(|| {
                                OvsdbError::new(
                                    "range error",
                                    "Result of arithmetic operation is out of range.",
                                )
                            })?)
                        }
                        (Atom::Real(a), Atom::Real(b)) => {
                            let v = match m {
                                Mutator::Add => a + b,
                                Mutator::Sub => a - b,
                                Mutator::Mul => a * b,
                                Mutator::Div if *b == 0.0 => {
                                    return Err(OvsdbError::new(
                                        "domain error",
                                        "Division by zero.",
                                    ));
                                }
                                _ => a / b,
                            };
                            if !v.is_finite() {
                                return Err(OvsdbError::new(
                                    "range error",
                                    "Result of arithmetic operation is out of range.",
                                ));
                            }
                            Atom::Real(v)
                        }
                        _ => return Err(OvsdbError::syntax("mutation argument type mismatch")),
                    };
                    ty.key.check(&r)?;
                    if !out.insert(r) {
                        return Err(OvsdbError::constraint(
                            "Result of arithmetic mutation contains duplicate values.",
                        ));
                    }
                }
                *s = out;
                return Ok(());
            }
        }
        let n = d.len();
        if n > ty.max {
            return Err(OvsdbError::constraint(format!(
                "Attempted to store {n} elements in a column with maximum {}.",
                ty.max
            )));
        }
        if n < ty.min {
            return Err(OvsdbError::constraint(format!(
                "Attempted to store {n} elements in a column with minimum {}.",
                ty.min
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> DatabaseSchema {
        DatabaseSchema::from_json(&json!({
            "name": "T", "tables": {
                "Root": {"isRoot": true, "maxRows": 2, "columns": {
                    "name": {"type": "string"},
                    "kids": {"type": {"key": {"type": "uuid", "refTable": "Kid"}, "min": 0, "max": "unlimited"}},
                    "byname": {"type": {"key": "string", "value": {"type": "uuid", "refTable": "Kid", "refType": "weak"}, "min": 0, "max": "unlimited"}},
                    "must": {"type": {"key": {"type": "uuid", "refTable": "Kid", "refType": "weak"}, "min": 0, "max": 1}}
                }, "indexes": [["name"]]},
                "Kid": {"columns": {"n": {"type": "integer"}, "sib": {"type": {"key": {"type": "uuid", "refTable": "Kid"}, "min": 0, "max": 1}}}}
            }
        }))
        .unwrap()
    }

    fn run(db: &mut Database, ops: Value) -> TxnOutcome {
        db.transact(ops.as_array().unwrap(), &|l| l == "mine")
    }

    #[test]
    fn weak_map_values_gc_and_indexes() {
        let mut db = Database::new(schema());
        let o = run(
            &mut db,
            json!([
                {"op":"insert","table":"Root","row":{"name":"r","kids":["set",[["named-uuid","k1"],["named-uuid","k2"]]],
                  "byname":["map",[["one",["named-uuid","k1"]],["two",["named-uuid","k2"]]]],"must":["named-uuid","k2"]}},
                {"op":"insert","table":"Kid","uuid-name":"k1","row":{"n":1}},
                {"op":"insert","table":"Kid","uuid-name":"k2","row":{"n":2,"sib":["named-uuid","k3"]}},
                {"op":"insert","table":"Kid","uuid-name":"k3","row":{"n":3}},
                {"op":"insert","table":"Kid","row":{"n":4}}
            ]),
        );
        assert!(o.ok, "{:?}", o.results);
        // The unreferenced Kid n=4 was collected; k3 lives through k2's sib reference.
        assert_eq!(db.rows("Kid").unwrap().len(), 3);
        // Dropping k2 from kids: k2 is collected, then k3 (only referenced by k2); weak refs to k2 vanish.
        let k2 = db
            .rows("Kid")
            .unwrap()
            .iter()
            .find(|(_, r)| r.cols["n"] == Datum::scalar(Atom::Integer(2)))
            .unwrap()
            .0
            .to_string();
        let o = run(
            &mut db,
            json!([{"op":"mutate","table":"Root","where":[],"mutations":[["kids","delete",["set",[["uuid",k2]]]]]}]),
        );
        assert!(o.ok, "{:?}", o.results);
        assert_eq!(db.rows("Kid").unwrap().len(), 1);
        let root = db.rows("Root").unwrap().values().next().unwrap().clone();
        assert_eq!(root.cols["byname"].len(), 1);
        assert!(root.cols["must"].is_empty());
        // The change set reports the weak-ref cleanup as a modification of the root row.
        assert!(
            o.changes["Root"]
                .values()
                .all(|c| c.old.is_some() && c.new.is_some())
        );
        assert_eq!(o.changes["Kid"].len(), 2);
        // Unique index inside one transaction, and maxRows.
        let o = run(
            &mut db,
            json!([{"op":"insert","table":"Root","row":{"name":"x"}},{"op":"insert","table":"Root","row":{"name":"x"}}]),
        );
        assert_eq!(o.results[2]["error"], "constraint violation");
        let o = run(
            &mut db,
            json!([{"op":"insert","table":"Root","row":{"name":"y"}},{"op":"insert","table":"Root","row":{"name":"z"}}]),
        );
        assert_eq!(o.results[2]["error"], "constraint violation");
        assert!(
            o.results[2]["details"]
                .as_str()
                .unwrap()
                .contains("schema-defined limit of 2")
        );
        // Renaming in one transaction so names swap is fine (index checked on the final state).
        let o = run(
            &mut db,
            json!([{"op":"insert","table":"Root","row":{"name":"s"}}]),
        );
        assert!(o.ok);
        let o = run(
            &mut db,
            json!([
            {"op":"update","table":"Root","where":[["name","==","r"]],"row":{"name":"tmp"}},
            {"op":"update","table":"Root","where":[["name","==","s"]],"row":{"name":"r"}},
            {"op":"update","table":"Root","where":[["name","==","tmp"]],"row":{"name":"s"}}]),
        );
        assert!(o.ok, "{:?}", o.results);
        // A failed transaction changes nothing.
        let before = db.rows("Root").unwrap().clone();
        let o = run(
            &mut db,
            json!([{"op":"delete","table":"Root","where":[]},{"op":"abort"}]),
        );
        assert!(!o.ok && o.changes.is_empty());
        assert_eq!(db.rows("Root").unwrap(), &before);
    }

    #[test]
    fn insert_with_uuid_assert_and_versions() {
        let mut db = Database::new(schema());
        let u = "12345678-1234-1234-1234-123456789abc";
        let o = run(
            &mut db,
            json!([{"op":"insert","table":"Root","uuid":u,"row":{"name":"a"}},{"op":"assert","lock":"mine"}]),
        );
        assert!(o.ok, "{:?}", o.results);
        assert_eq!(o.results[0], json!({"uuid":["uuid",u]}));
        let o = run(
            &mut db,
            json!([{"op":"insert","table":"Root","uuid":u,"row":{"name":"b"}}]),
        );
        assert_eq!(o.results[0]["error"], "duplicate uuid");
        let o = run(&mut db, json!([{"op":"assert","lock":"theirs"}]));
        assert_eq!(o.results[0]["error"], "not owner");
        let v1 = run(
            &mut db,
            json!([{"op":"select","table":"Root","where":[],"columns":["_version"]}]),
        )
        .results[0]
            .clone();
        // A no-op update keeps the version; a real one changes it.
        run(
            &mut db,
            json!([{"op":"update","table":"Root","where":[],"row":{"name":"a"}}]),
        );
        let v2 = run(
            &mut db,
            json!([{"op":"select","table":"Root","where":[],"columns":["_version"]}]),
        )
        .results[0]
            .clone();
        assert_eq!(v1, v2);
        run(
            &mut db,
            json!([{"op":"update","table":"Root","where":[],"row":{"name":"c"}}]),
        );
        let v3 = run(
            &mut db,
            json!([{"op":"select","table":"Root","where":[],"columns":["_version"]}]),
        )
        .results[0]
            .clone();
        assert_ne!(v1, v3);
        let o = run(&mut db, json!([{"op":"commit","durable":true}]));
        assert_eq!(o.results[0]["error"], "not supported");
        let o = run(
            &mut db,
            json!([{"op":"wait","table":"Root","where":[],"columns":["name"],"until":"==","rows":[],"timeout":50}]),
        );
        assert_eq!(o.blocked, Some(50));
    }
}
