//! Database schemas (RFC 7047 §3.2): tables, columns, types and constraints.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::datum::{Atom, Datum};
use crate::error::{OvsdbError, Result};

/// The five atomic types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AtomicType {
    /// 64-bit signed integer.
    Integer,
    /// IEEE double.
    Real,
    /// true/false.
    Boolean,
    /// UTF-8 string.
    String,
    /// UUID.
    Uuid,
}

impl AtomicType {
    /// Parse `"integer"` etc.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "integer" => AtomicType::Integer,
            "real" => AtomicType::Real,
            "boolean" => AtomicType::Boolean,
            "string" => AtomicType::String,
            "uuid" => AtomicType::Uuid,
            _ => return None,
        })
    }
    /// The schema name.
    pub fn name(self) -> &'static str {
        match self {
            AtomicType::Integer => "integer",
            AtomicType::Real => "real",
            AtomicType::Boolean => "boolean",
            AtomicType::String => "string",
            AtomicType::Uuid => "uuid",
        }
    }
}

/// Strong or weak reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefType {
    /// Referenced row must exist; keeps it alive.
    Strong,
    /// Reference is dropped when the target is deleted.
    Weak,
}

/// A base type with its constraints (`<base-type>`).
#[derive(Debug, Clone, PartialEq)]
pub struct BaseType {
    /// Atomic type.
    pub atomic: AtomicType,
    /// `enum` constraint (sorted, deduplicated).
    pub enum_: Option<Vec<Atom>>,
    /// `minInteger`.
    pub min_integer: Option<i64>,
    /// `maxInteger`.
    pub max_integer: Option<i64>,
    /// `minReal`.
    pub min_real: Option<f64>,
    /// `maxReal`.
    pub max_real: Option<f64>,
    /// `minLength`.
    pub min_length: Option<u64>,
    /// `maxLength`.
    pub max_length: Option<u64>,
    /// `refTable`.
    pub ref_table: Option<String>,
    /// `refType` (strong default).
    pub ref_type: RefType,
}

impl BaseType {
    /// Unconstrained base type.
    pub fn plain(atomic: AtomicType) -> Self {
        BaseType {
            atomic,
            enum_: None,
            min_integer: None,
            max_integer: None,
            min_real: None,
            max_real: None,
            min_length: None,
            max_length: None,
            ref_table: None,
            ref_type: RefType::Strong,
        }
    }

    fn from_json(v: &Value) -> Result<Self> {
        match v {
            Value::String(s) => AtomicType::parse(s).map(BaseType::plain).ok_or_else(|| {
                OvsdbError::syntax(format!("unknown atomic type {s}")).with_syntax(v)
            }),
            Value::Object(m) => {
                let t = m
                    .get("type")
                    .and_then(Value::as_str)
                    .and_then(AtomicType::parse)
                    .ok_or_else(|| {
                        OvsdbError::syntax("base type requires a valid \"type\"").with_syntax(v)
                    })?;
                let mut b = BaseType::plain(t);
                let int = |k: &str| -> Result<Option<i64>> {
                    match m.get(k) {
                        None => Ok(None),
                        Some(x) => x.as_i64().map(Some).ok_or_else(|| {
                            OvsdbError::syntax(format!("{k} must be an integer")).with_syntax(x)
                        }),
                    }
                };
                let real = |k: &str| -> Result<Option<f64>> {
                    match m.get(k) {
                        None => Ok(None),
                        Some(x) => x.as_f64().map(Some).ok_or_else(|| {
                            OvsdbError::syntax(format!("{k} must be a number")).with_syntax(x)
                        }),
                    }
                };
                let len = |k: &str| -> Result<Option<u64>> {
                    match m.get(k) {
                        None => Ok(None),
                        Some(x) => x.as_u64().map(Some).ok_or_else(|| {
                            OvsdbError::syntax(format!("{k} must be a non-negative integer"))
                                .with_syntax(x)
                        }),
                    }
                };
                match t {
                    AtomicType::Integer => {
                        b.min_integer = int("minInteger")?;
                        b.max_integer = int("maxInteger")?;
                    }
                    AtomicType::Real => {
                        b.min_real = real("minReal")?;
                        b.max_real = real("maxReal")?;
                    }
                    AtomicType::String => {
                        b.min_length = len("minLength")?;
                        b.max_length = len("maxLength")?;
                    }
                    AtomicType::Uuid => {
                        if let Some(r) = m.get("refTable") {
                            b.ref_table = Some(
                                r.as_str()
                                    .ok_or_else(|| {
                                        OvsdbError::syntax("refTable must be a string")
                                            .with_syntax(r)
                                    })?
                                    .to_string(),
                            );
                        }
                        match m.get("refType").map(|x| x.as_str()) {
                            None | Some(Some("strong")) => {}
                            Some(Some("weak")) => b.ref_type = RefType::Weak,
                            Some(_) => {
                                return Err(OvsdbError::syntax(
                                    "refType must be \"strong\" or \"weak\"",
                                )
                                .with_syntax(v));
                            }
                        }
                    }
                    AtomicType::Boolean => {}
                }
                if let Some(e) = m.get("enum") {
                    // The enum is a <value> of the base type with no constraints: an atom or a set.
                    let ty = ColumnType {
                        key: BaseType::plain(t),
                        value: None,
                        min: 0,
                        max: usize::MAX,
                    };
                    let d = Datum::from_json(e, &ty, &mut |_| None)?;
                    b.enum_ = Some(d.keys().cloned().collect());
                }
                Ok(b)
            }
            _ => Err(OvsdbError::syntax("base type must be a string or object").with_syntax(v)),
        }
    }

    /// Whether this is a strong reference.
    pub fn is_strong_ref(&self) -> bool {
        self.ref_table.is_some() && self.ref_type == RefType::Strong
    }

    /// Check `atom` against this base type's constraints ("constraint violation" on failure).
    pub fn check(&self, atom: &Atom) -> Result<()> {
        if let Some(e) = &self.enum_ {
            if e.binary_search(atom).is_err() {
                let list: Vec<String> = e.iter().map(Atom::to_display).collect();
                return Err(OvsdbError::constraint(format!(
                    "{} is not one of the allowed values ([{}])",
                    atom.to_display(),
                    list.join(", ")
                )));
            }
            return Ok(());
        }
        match atom {
            Atom::Integer(i) => {
                let lo = self.min_integer.unwrap_or(i64::MIN);
                let hi = self.max_integer.unwrap_or(i64::MAX);
                if *i < lo || *i > hi {
                    return Err(OvsdbError::constraint(
                        match (self.min_integer, self.max_integer) {
                            (Some(a), Some(b)) => {
                                format!("{i} is not in the valid range {a} to {b} (inclusive)")
                            }
                            (Some(a), None) => {
                                format!("{i} is less than minimum allowed value {a}")
                            }
                            _ => format!("{i} is greater than maximum allowed value {hi}"),
                        },
                    ));
                }
            }
            Atom::Real(r)
                if self.min_real.is_some_and(|m| *r < m)
                    || self.max_real.is_some_and(|m| *r > m) =>
            {
                return Err(OvsdbError::constraint(format!(
                    "{r} is not in the valid range"
                )));
            }
            Atom::String(s)
                if self
                    .min_length
                    .is_some_and(|m| (s.chars().count() as u64) < m)
                    || self
                        .max_length
                        .is_some_and(|m| (s.chars().count() as u64) > m) =>
            {
                return Err(OvsdbError::constraint(format!(
                    "\"{s}\" length {} is not in the valid range",
                    s.chars().count()
                )));
            }
            _ => {}
        }
        Ok(())
    }

    fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("type".into(), json!(self.atomic.name()));
        if let Some(e) = &self.enum_ {
            m.insert(
                "enum".into(),
                json!(["set", e.iter().map(Atom::to_json).collect::<Vec<_>>()]),
            );
        }
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        };
        put("minInteger", self.min_integer.map(|x| json!(x)));
        put("maxInteger", self.max_integer.map(|x| json!(x)));
        put("minReal", self.min_real.map(|x| json!(x)));
        put("maxReal", self.max_real.map(|x| json!(x)));
        put("minLength", self.min_length.map(|x| json!(x)));
        put("maxLength", self.max_length.map(|x| json!(x)));
        put("refTable", self.ref_table.as_ref().map(|x| json!(x)));
        if self.ref_table.is_some() && self.ref_type == RefType::Weak {
            put("refType", Some(json!("weak")));
        }
        Value::Object(m)
    }
}

/// A column type (`<type>`): key, optional value (map), and min/max element counts.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnType {
    /// Key type (the element type for sets/scalars).
    pub key: BaseType,
    /// Value type for maps.
    pub value: Option<BaseType>,
    /// Minimum number of elements (0 or 1).
    pub min: usize,
    /// Maximum number of elements (`usize::MAX` = unlimited).
    pub max: usize,
}

impl ColumnType {
    /// Parse a `<type>`.
    pub fn from_json(v: &Value) -> Result<Self> {
        match v {
            Value::String(_) => Ok(ColumnType {
                key: BaseType::from_json(v)?,
                value: None,
                min: 1,
                max: 1,
            }),
            Value::Object(m) => {
                let key =
                    BaseType::from_json(m.get("key").ok_or_else(|| {
                        OvsdbError::syntax("type requires \"key\"").with_syntax(v)
                    })?)?;
                let value = m.get("value").map(BaseType::from_json).transpose()?;
                let min =
                    match m.get("min") {
                        None => 1,
                        Some(x) => x.as_u64().filter(|n| *n <= 1).ok_or_else(|| {
                            OvsdbError::syntax("min must be 0 or 1").with_syntax(x)
                        })? as usize,
                    };
                let max = match m.get("max") {
                    None => 1,
                    Some(Value::String(s)) if s == "unlimited" => usize::MAX,
                    Some(x) => x.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
                        OvsdbError::syntax("max must be a positive integer or \"unlimited\"")
                            .with_syntax(x)
                    })? as usize,
                };
                if min > max {
                    return Err(OvsdbError::syntax("min exceeds max").with_syntax(v));
                }
                Ok(ColumnType {
                    key,
                    value,
                    min,
                    max,
                })
            }
            _ => Err(OvsdbError::syntax("type must be a string or object").with_syntax(v)),
        }
    }

    /// Scalar: exactly one atom, not a map.
    pub fn is_scalar(&self) -> bool {
        self.min == 1 && self.max == 1 && self.value.is_none()
    }
    /// Map type.
    pub fn is_map(&self) -> bool {
        self.value.is_some()
    }
    /// Optional scalar (0 or 1 atom).
    pub fn is_optional(&self) -> bool {
        self.min == 0 && self.max == 1
    }
    /// The same type without size limits (for condition/mutation arguments).
    pub fn unbounded(&self) -> ColumnType {
        ColumnType {
            min: 0,
            max: usize::MAX,
            ..self.clone()
        }
    }
    /// Human-readable description as `ovsdb-server` prints it in errors.
    pub fn describe(&self) -> String {
        match &self.value {
            Some(v) => format!(
                "map of ({}, {}) pairs",
                self.key.atomic.name(),
                v.atomic.name()
            ),
            None if self.is_scalar() => self.key.atomic.name().to_string(),
            None => format!("set of {}s", self.key.atomic.name()),
        }
    }

    /// Serialize back to schema JSON.
    pub fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("key".into(), self.key.to_json());
        if let Some(v) = &self.value {
            m.insert("value".into(), v.to_json());
        }
        m.insert("min".into(), json!(self.min));
        m.insert(
            "max".into(),
            if self.max == usize::MAX {
                json!("unlimited")
            } else {
                json!(self.max)
            },
        );
        Value::Object(m)
    }
}

/// A column.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSchema {
    /// Name.
    pub name: String,
    /// Type.
    pub type_: ColumnType,
    /// Not persisted.
    pub ephemeral: bool,
    /// May be changed by update/mutate.
    pub mutable: bool,
}

/// A table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSchema {
    /// Name.
    pub name: String,
    /// Columns by name (excluding `_uuid`/`_version`).
    pub columns: BTreeMap<String, ColumnSchema>,
    /// `maxRows`.
    pub max_rows: Option<u64>,
    /// `isRoot`.
    pub is_root: bool,
    /// Indexes (sets of column names that must be unique together).
    pub indexes: Vec<Vec<String>>,
}

/// The type of the `_uuid` and `_version` columns.
pub fn uuid_column_type() -> ColumnType {
    ColumnType {
        key: BaseType::plain(AtomicType::Uuid),
        value: None,
        min: 1,
        max: 1,
    }
}

impl TableSchema {
    /// The type of a column, including `_uuid` and `_version`.
    pub fn column_type(&self, name: &str) -> Option<ColumnType> {
        match name {
            "_uuid" | "_version" => Some(uuid_column_type()),
            _ => self.columns.get(name).map(|c| c.type_.clone()),
        }
    }
}

/// A database schema.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseSchema {
    /// Database name.
    pub name: String,
    /// Version string.
    pub version: String,
    /// `cksum` if present.
    pub cksum: Option<String>,
    /// Tables by name.
    pub tables: BTreeMap<String, TableSchema>,
    /// The schema JSON as given (returned by `get_schema`).
    pub json: Value,
}

fn is_id(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

impl DatabaseSchema {
    /// Parse a schema from its JSON text.
    pub fn parse(text: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| OvsdbError::syntax(format!("schema is not valid JSON: {e}")))?;
        Self::from_json(&v)
    }

    /// Parse a schema from JSON.
    pub fn from_json(v: &Value) -> Result<Self> {
        let m = v
            .as_object()
            .ok_or_else(|| OvsdbError::syntax("schema must be an object").with_syntax(v))?;
        let name = m
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| OvsdbError::syntax("schema requires \"name\""))?
            .to_string();
        let version = m
            .get("version")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let cksum = m.get("cksum").and_then(Value::as_str).map(str::to_string);
        let tj = m
            .get("tables")
            .and_then(Value::as_object)
            .ok_or_else(|| OvsdbError::syntax("schema requires \"tables\" object"))?;
        let any_root = tj.values().any(|t| t.get("isRoot").is_some());
        let mut tables = BTreeMap::new();
        for (tname, t) in tj {
            if !is_id(tname) || tname.starts_with('_') {
                return Err(OvsdbError::syntax(format!("invalid table name {tname}")));
            }
            let to = t
                .as_object()
                .ok_or_else(|| OvsdbError::syntax("table must be an object").with_syntax(t))?;
            let cj = to
                .get("columns")
                .and_then(Value::as_object)
                .ok_or_else(|| OvsdbError::syntax(format!("table {tname} requires \"columns\"")))?;
            let mut columns = BTreeMap::new();
            for (cname, c) in cj {
                if !is_id(cname) || cname.starts_with('_') {
                    return Err(OvsdbError::syntax(format!("invalid column name {cname}")));
                }
                let co = c
                    .as_object()
                    .ok_or_else(|| OvsdbError::syntax("column must be an object").with_syntax(c))?;
                let type_ = ColumnType::from_json(co.get("type").ok_or_else(|| {
                    OvsdbError::syntax(format!("column {cname} requires \"type\""))
                })?)?;
                columns.insert(
                    cname.clone(),
                    ColumnSchema {
                        name: cname.clone(),
                        type_,
                        ephemeral: co
                            .get("ephemeral")
                            .and_then(Value::as_bool)
                            .unwrap_or(false),
                        mutable: co.get("mutable").and_then(Value::as_bool).unwrap_or(true),
                    },
                );
            }
            let mut indexes = Vec::new();
            if let Some(ix) = to.get("indexes") {
                for i in ix
                    .as_array()
                    .ok_or_else(|| OvsdbError::syntax("indexes must be an array"))?
                {
                    let cols: Vec<String> = i
                        .as_array()
                        .ok_or_else(|| OvsdbError::syntax("index must be an array"))?
                        .iter()
                        .map(|c| c.as_str().map(str::to_string))
                        .collect::<Option<_>>()
                        .ok_or_else(|| OvsdbError::syntax("index column must be a string"))?;
                    for c in &cols {
                        if !columns.contains_key(c) && c != "_uuid" {
                            return Err(OvsdbError::syntax(format!(
                                "index refers to unknown column {c}"
                            )));
                        }
                    }
                    indexes.push(cols);
                }
            }
            tables.insert(
                tname.clone(),
                TableSchema {
                    name: tname.clone(),
                    columns,
                    max_rows: to.get("maxRows").and_then(Value::as_u64),
                    is_root: if any_root {
                        to.get("isRoot").and_then(Value::as_bool).unwrap_or(false)
                    } else {
                        true
                    },
                    indexes,
                },
            );
        }
        // Every refTable must name a table.
        for t in tables.values() {
            for c in t.columns.values() {
                for b in std::iter::once(&c.type_.key).chain(c.type_.value.as_ref()) {
                    if let Some(r) = &b.ref_table
                        && !tables.contains_key(r)
                    {
                        return Err(OvsdbError::syntax(format!(
                            "column {}.{} refers to undefined table {r}",
                            t.name, c.name
                        )));
                    }
                }
            }
        }
        Ok(DatabaseSchema {
            name,
            version,
            cksum,
            tables,
            json: v.clone(),
        })
    }

    /// The `Open_vSwitch` schema shipped with this crate (OVS 3.1's vswitch.ovsschema).
    pub fn vswitch() -> Self {
        Self::parse(VSWITCH_SCHEMA).expect("bundled schema parses")
    }

    /// The `_Server` schema (as served by ovsdb-server 3.1).
    pub fn server() -> Self {
        Self::parse(SERVER_SCHEMA).expect("bundled schema parses")
    }
}

/// The text of the bundled `vswitch.ovsschema`.
pub const VSWITCH_SCHEMA: &str = include_str!("../schemas/vswitch.ovsschema");
/// The text of the `_Server` schema.
pub const SERVER_SCHEMA: &str = include_str!("../schemas/_server.ovsschema");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datum::Datum;
    use serde_json::json;

    fn custom() -> DatabaseSchema {
        DatabaseSchema::from_json(&json!({
            "name": "T", "version": "1.0.0",
            "tables": {
                "A": {"isRoot": true, "maxRows": 3, "indexes": [["s", "i"]], "columns": {
                    "i": {"type": {"key": {"type": "integer", "minInteger": -5, "maxInteger": 5}}},
                    "r": {"type": {"key": {"type": "real", "minReal": 0.5, "maxReal": 1.5}, "min": 0, "max": 1}},
                    "b": {"type": "boolean"},
                    "s": {"type": {"key": {"type": "string", "minLength": 1, "maxLength": 3}}},
                    "e": {"type": {"key": {"type": "string", "enum": ["set", ["x", "y"]]}, "min": 0, "max": "unlimited"}},
                    "one": {"type": {"key": {"type": "string", "enum": "z"}}},
                    "strong": {"type": {"key": {"type": "uuid", "refTable": "B"}, "min": 0, "max": 2}},
                    "weak": {"type": {"key": {"type": "uuid", "refTable": "B", "refType": "weak"}, "min": 0, "max": "unlimited"}},
                    "m": {"type": {"key": "string", "value": {"type": "uuid", "refTable": "B", "refType": "weak"}, "min": 0, "max": "unlimited"}},
                    "eph": {"type": "string", "ephemeral": true, "mutable": false}
                }},
                "B": {"columns": {"n": {"type": "integer"}}}
            }
        }))
        .unwrap()
    }

    #[test]
    fn all_types_and_constraints_parse() {
        let s = custom();
        let a = &s.tables["A"];
        assert!(a.is_root && !s.tables["B"].is_root);
        assert_eq!(a.max_rows, Some(3));
        assert_eq!(a.indexes, vec![vec!["s".to_string(), "i".to_string()]]);
        let c = |n: &str| &a.columns[n].type_;
        assert_eq!(
            (c("i").key.min_integer, c("i").key.max_integer),
            (Some(-5), Some(5))
        );
        assert_eq!(
            (
                c("r").key.min_real,
                c("r").key.max_real,
                c("r").min,
                c("r").max
            ),
            (Some(0.5), Some(1.5), 0, 1)
        );
        assert_eq!(
            (c("s").key.min_length, c("s").key.max_length),
            (Some(1), Some(3))
        );
        assert_eq!(c("e").key.enum_.as_ref().unwrap().len(), 2);
        assert_eq!(c("e").max, usize::MAX);
        assert_eq!(c("one").key.enum_.as_ref().unwrap().len(), 1);
        assert!(c("strong").key.is_strong_ref());
        assert_eq!(c("weak").key.ref_type, RefType::Weak);
        assert!(c("m").is_map() && c("m").value.as_ref().unwrap().ref_type == RefType::Weak);
        assert!(a.columns["eph"].ephemeral && !a.columns["eph"].mutable);
        let none = &mut |_: &str| None;
        for (col, v, ok) in [
            ("i", json!(5), true),
            ("i", json!(6), false),
            ("r", json!(1.0), true),
            ("r", json!(2.0), false),
            ("s", json!("abc"), true),
            ("s", json!("abcd"), false),
            ("s", json!(""), false),
            ("e", json!(["set", ["x", "y"]]), true),
            ("e", json!("w"), false),
            ("one", json!("z"), true),
        ] {
            assert_eq!(Datum::from_json(&v, c(col), none).is_ok(), ok, "{col} {v}");
        }
        // Type JSON roundtrips.
        for col in a.columns.values() {
            assert_eq!(
                ColumnType::from_json(&col.type_.to_json()).unwrap(),
                col.type_,
                "{}",
                col.name
            );
        }
    }

    #[test]
    fn bad_schemas_are_rejected() {
        for bad in [
            json!({"name": "T", "tables": {"A": {"columns": {"x": {"type": "float"}}}}}),
            json!({"name": "T", "tables": {"A": {"columns": {"x": {"type": {"key": "uuid", "min": 2}}}}}}),
            json!({"name": "T", "tables": {"A": {"columns": {"x": {"type": {"key": {"type": "uuid", "refTable": "Nope"}}}}}}}),
            json!({"name": "T", "tables": {"A": {"columns": {"_x": {"type": "string"}}}}}),
            json!({"name": "T", "tables": {"A": {"columns": {}, "indexes": [["nope"]]}}}),
            json!({"tables": {}}),
            json!([1]),
        ] {
            assert!(DatabaseSchema::from_json(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bundled_schemas() {
        let v = DatabaseSchema::vswitch();
        assert_eq!(v.name, "Open_vSwitch");
        assert_eq!(v.tables.len(), 19);
        assert!(v.tables["Open_vSwitch"].is_root && !v.tables["Port"].is_root);
        assert_eq!(v.tables["Open_vSwitch"].max_rows, Some(1));
        assert_eq!(DatabaseSchema::server().tables["Database"].columns.len(), 8);
    }
}
