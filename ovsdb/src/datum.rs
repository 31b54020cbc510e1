//! Atoms and datums with their RFC 7047 JSON forms.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::{OvsdbError, Result};
use crate::schema::{AtomicType, BaseType, ColumnType};

/// One atomic value.
#[derive(Debug, Clone)]
pub enum Atom {
    /// integer
    Integer(i64),
    /// real
    Real(f64),
    /// boolean
    Boolean(bool),
    /// string
    String(String),
    /// uuid
    Uuid(Uuid),
}

impl Atom {
    fn rank(&self) -> u8 {
        match self {
            Atom::Integer(_) => 0,
            Atom::Real(_) => 1,
            Atom::Boolean(_) => 2,
            Atom::String(_) => 3,
            Atom::Uuid(_) => 4,
        }
    }
}

impl Ord for Atom {
    fn cmp(&self, o: &Self) -> Ordering {
        match (self, o) {
            (Atom::Integer(a), Atom::Integer(b)) => a.cmp(b),
            (Atom::Real(a), Atom::Real(b)) => a.total_cmp(b),
            (Atom::Boolean(a), Atom::Boolean(b)) => a.cmp(b),
            (Atom::String(a), Atom::String(b)) => a.cmp(b),
            (Atom::Uuid(a), Atom::Uuid(b)) => a.cmp(b),
            _ => self.rank().cmp(&o.rank()),
        }
    }
}
impl PartialOrd for Atom {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl PartialEq for Atom {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Atom {}

/// Resolves `["named-uuid", name]` to a UUID; `None` means named-uuids are not allowed here.
pub type NamedUuidResolver<'a> = dyn FnMut(&str) -> Option<Uuid> + 'a;

impl Atom {
    /// The type's default atom (0, 0.0, false, "", all-zero UUID).
    pub fn default_for(t: AtomicType) -> Atom {
        match t {
            AtomicType::Integer => Atom::Integer(0),
            AtomicType::Real => Atom::Real(0.0),
            AtomicType::Boolean => Atom::Boolean(false),
            AtomicType::String => Atom::String(String::new()),
            AtomicType::Uuid => Atom::Uuid(Uuid::nil()),
        }
    }

    /// The atomic type of this atom.
    pub fn atomic_type(&self) -> AtomicType {
        match self {
            Atom::Integer(_) => AtomicType::Integer,
            Atom::Real(_) => AtomicType::Real,
            Atom::Boolean(_) => AtomicType::Boolean,
            Atom::String(_) => AtomicType::String,
            Atom::Uuid(_) => AtomicType::Uuid,
        }
    }

    /// Parse an atom of type `t` without constraint checks.
    pub fn from_json_untyped(
        v: &Value,
        t: AtomicType,
        named: &mut NamedUuidResolver<'_>,
    ) -> Result<Atom> {
        let bad = |what: &str| OvsdbError::syntax(format!("expected {what}")).with_syntax(v);
        Ok(match t {
            AtomicType::Integer => Atom::Integer(v.as_i64().ok_or_else(|| bad("integer"))?),
            AtomicType::Real => Atom::Real(v.as_f64().ok_or_else(|| bad("real"))?),
            AtomicType::Boolean => Atom::Boolean(v.as_bool().ok_or_else(|| bad("boolean"))?),
            AtomicType::String => {
                Atom::String(v.as_str().ok_or_else(|| bad("string"))?.to_string())
            }
            AtomicType::Uuid => match v.as_array().map(Vec::as_slice) {
                Some([Value::String(tag), Value::String(s)]) if tag == "uuid" => {
                    Atom::Uuid(Uuid::parse_str(s).map_err(|_| {
                        OvsdbError::syntax(format!("\"{s}\" is not a valid UUID")).with_syntax(v)
                    })?)
                }
                Some([Value::String(tag), Value::String(s)]) if tag == "named-uuid" => {
                    Atom::Uuid(named(s).ok_or_else(|| {
                        OvsdbError::syntax(format!("named-uuid \"{s}\" is not allowed here"))
                            .with_syntax(v)
                    })?)
                }
                _ => return Err(bad("uuid")),
            },
        })
    }

    /// Parse an atom of a base type and check its constraints.
    pub fn from_json(v: &Value, b: &BaseType, named: &mut NamedUuidResolver<'_>) -> Result<Atom> {
        let a = Self::from_json_untyped(v, b.atomic, named)?;
        b.check(&a)?;
        Ok(a)
    }

    /// RFC 7047 JSON form.
    pub fn to_json(&self) -> Value {
        match self {
            Atom::Integer(i) => json!(i),
            Atom::Real(r) => json!(r),
            Atom::Boolean(b) => json!(b),
            Atom::String(s) => json!(s),
            Atom::Uuid(u) => json!(["uuid", u.to_string()]),
        }
    }

    /// Plain display (as in ovsdb-server's error details).
    pub fn to_display(&self) -> String {
        match self {
            Atom::Integer(i) => i.to_string(),
            Atom::Real(r) => r.to_string(),
            Atom::Boolean(b) => b.to_string(),
            Atom::String(s) => s.clone(),
            Atom::Uuid(u) => u.to_string(),
        }
    }

    /// The string, if this is a string atom.
    pub fn as_str(&self) -> Option<&str> {
        if let Atom::String(s) = self {
            Some(s)
        } else {
            None
        }
    }
    /// The integer, if this is an integer atom.
    pub fn as_i64(&self) -> Option<i64> {
        if let Atom::Integer(i) = self {
            Some(*i)
        } else {
            None
        }
    }
    /// The UUID, if this is a uuid atom.
    pub fn as_uuid(&self) -> Option<Uuid> {
        if let Atom::Uuid(u) = self {
            Some(*u)
        } else {
            None
        }
    }
}

/// A column value: a set of atoms (scalars are 1-element sets) or a map.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Datum {
    /// Set (or scalar).
    Set(BTreeSet<Atom>),
    /// Map.
    Map(BTreeMap<Atom, Atom>),
}

impl Datum {
    /// Empty set.
    pub fn empty_set() -> Datum {
        Datum::Set(BTreeSet::new())
    }
    /// Single-atom datum.
    pub fn scalar(a: Atom) -> Datum {
        Datum::Set(BTreeSet::from([a]))
    }
    /// Default value for a column type.
    pub fn default_for(t: &ColumnType) -> Datum {
        match &t.value {
            Some(v) if t.min == 0 => Datum::Map(BTreeMap::new()),
            Some(v) => Datum::Map(BTreeMap::from([(
                Atom::default_for(t.key.atomic),
                Atom::default_for(v.atomic),
            )])),
            None if t.min == 0 => Datum::empty_set(),
            None => Datum::scalar(Atom::default_for(t.key.atomic)),
        }
    }
    /// Whether this is the type's default value.
    pub fn is_default(&self, t: &ColumnType) -> bool {
        *self == Datum::default_for(t)
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Datum::Set(s) => s.len(),
            Datum::Map(m) => m.len(),
        }
    }
    /// No elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Keys (set elements or map keys).
    pub fn keys(&self) -> Box<dyn Iterator<Item = &Atom> + '_> {
        match self {
            Datum::Set(s) => Box::new(s.iter()),
            Datum::Map(m) => Box::new(m.keys()),
        }
    }
    /// Map values (empty for sets).
    pub fn values(&self) -> Box<dyn Iterator<Item = &Atom> + '_> {
        match self {
            Datum::Set(_) => Box::new(std::iter::empty()),
            Datum::Map(m) => Box::new(m.values()),
        }
    }
    /// The single atom of a scalar.
    pub fn as_scalar(&self) -> Option<&Atom> {
        match self {
            Datum::Set(s) if s.len() == 1 => s.iter().next(),
            _ => None,
        }
    }
    /// The map, if a map.
    pub fn as_map(&self) -> Option<&BTreeMap<Atom, Atom>> {
        if let Datum::Map(m) = self {
            Some(m)
        } else {
            None
        }
    }

    /// Parse a datum of column type `t`, checking its size and atom constraints.
    pub fn from_json(
        v: &Value,
        t: &ColumnType,
        named: &mut NamedUuidResolver<'_>,
    ) -> Result<Datum> {
        let d = Self::from_json_unchecked_size(v, t, named)?;
        let n = d.len();
        if n < t.min || n > t.max {
            let what = if t.is_map() { "map" } else { "set" };
            let max = if t.max == usize::MAX {
                u32::MAX as usize
            } else {
                t.max
            };
            return Err(OvsdbError::syntax(format!(
                "{what} must have {} to {max} members but {n} are present",
                t.min
            ))
            .with_syntax(v));
        }
        Ok(d)
    }

    fn from_json_unchecked_size(
        v: &Value,
        t: &ColumnType,
        named: &mut NamedUuidResolver<'_>,
    ) -> Result<Datum> {
        if let Some(vt) = &t.value {
            let pairs = match v.as_array().map(Vec::as_slice) {
                Some([Value::String(tag), Value::Array(p)]) if tag == "map" => p,
                _ => return Err(OvsdbError::syntax("expected map").with_syntax(v)),
            };
            let mut m = BTreeMap::new();
            for p in pairs {
                let [k, val] = p.as_array().map(Vec::as_slice).unwrap_or(&[]) else {
                    return Err(
                        OvsdbError::syntax("map pair must be a 2-element array").with_syntax(p)
                    );
                };
                let k = Atom::from_json(k, &t.key, named)?;
                let val = Atom::from_json(val, vt, named)?;
                if m.insert(k, val).is_some() {
                    return Err(OvsdbError::syntax("map contains duplicate key").with_syntax(v));
                }
            }
            return Ok(Datum::Map(m));
        }
        match v.as_array().map(Vec::as_slice) {
            Some([Value::String(tag), Value::Array(elems)]) if tag == "set" => {
                let mut s = BTreeSet::new();
                for e in elems {
                    if !s.insert(Atom::from_json(e, &t.key, named)?) {
                        return Err(
                            OvsdbError::syntax("set contains duplicate value").with_syntax(v)
                        );
                    }
                }
                Ok(Datum::Set(s))
            }
            _ => Ok(Datum::scalar(Atom::from_json(v, &t.key, named)?)),
        }
    }

    /// RFC 7047 JSON form (a 1-element set is written as the bare atom, as ovsdb-server does).
    pub fn to_json(&self) -> Value {
        match self {
            Datum::Set(s) if s.len() == 1 => {
                s.iter().next().map(Atom::to_json).unwrap_or(Value::Null)
            }
            Datum::Set(s) => json!(["set", s.iter().map(Atom::to_json).collect::<Vec<_>>()]),
            Datum::Map(m) => json!([
                "map",
                m.iter()
                    .map(|(k, v)| json!([k.to_json(), v.to_json()]))
                    .collect::<Vec<_>>()
            ]),
        }
    }

    /// Check size and atom constraints ("constraint violation").
    pub fn check(&self, t: &ColumnType) -> Result<()> {
        let n = self.len();
        if n < t.min || n > t.max {
            return Err(OvsdbError::constraint(format!(
                "datum has {n} elements, outside the allowed range {} to {}",
                t.min, t.max
            )));
        }
        for k in self.keys() {
            t.key.check(k)?;
        }
        if let Some(vt) = &t.value {
            for v in self.values() {
                vt.check(v)?;
            }
        }
        Ok(())
    }

    /// Whether `self` contains every element (or pair) of `other`.
    pub fn includes(&self, other: &Datum) -> bool {
        match (self, other) {
            (Datum::Set(a), Datum::Set(b)) => b.is_subset(a),
            (Datum::Map(a), Datum::Map(b)) => b.iter().all(|(k, v)| a.get(k) == Some(v)),
            _ => false,
        }
    }
    /// Whether `self` contains no element (or pair) of `other`.
    pub fn excludes(&self, other: &Datum) -> bool {
        match (self, other) {
            (Datum::Set(a), Datum::Set(b)) => a.is_disjoint(b),
            (Datum::Map(a), Datum::Map(b)) => b.iter().all(|(k, v)| a.get(k) != Some(v)),
            _ => true,
        }
    }

    /// The update2 "modify" difference from `old` to `self` (RFC 7047bis / ovsdb-server `diff`):
    /// for sets the symmetric difference; for maps the pairs added or changed (new value) plus
    /// removed keys (old value).
    pub fn diff_from(&self, old: &Datum) -> Datum {
        match (old, self) {
            (Datum::Set(a), Datum::Set(b)) => {
                Datum::Set(a.symmetric_difference(b).cloned().collect())
            }
            (Datum::Map(a), Datum::Map(b)) => {
                let mut d = BTreeMap::new();
                for (k, v) in a {
                    if !b.contains_key(k) {
                        d.insert(k.clone(), v.clone());
                    }
                }
                for (k, v) in b {
                    if a.get(k) != Some(v) {
                        d.insert(k.clone(), v.clone());
                    }
                }
                Datum::Map(d)
            }
            _ => self.clone(),
        }
    }

    /// Apply an update2 "modify" difference (inverse of [`Datum::diff_from`]).
    pub fn apply_diff(&mut self, diff: &Datum) {
        match (self, diff) {
            (Datum::Set(a), Datum::Set(d)) => {
                for x in d {
                    if !a.remove(x) {
                        a.insert(x.clone());
                    }
                }
            }
            (Datum::Map(a), Datum::Map(d)) => {
                for (k, v) in d {
                    if a.get(k) == Some(v) {
                        a.remove(k);
                    } else {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
            (s, d) => *s = d.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::DatabaseSchema;

    fn none(_: &str) -> Option<Uuid> {
        None
    }

    #[test]
    fn json_forms_roundtrip() {
        let s = DatabaseSchema::vswitch();
        let port = &s.tables["Port"];
        let ty = |c: &str| port.columns[c].type_.clone();
        let u = Uuid::new_v4();
        let cases = [
            ("tag", json!(5)),
            ("tag", json!(["set", []])),
            ("interfaces", json!(["uuid", u.to_string()])),
            ("trunks", json!(["set", [1, 2, 3]])),
            ("external_ids", json!(["map", [["a", "b"], ["c", "d"]]])),
            ("name", json!("p1")),
        ];
        for (c, v) in cases {
            let d = Datum::from_json(&v, &ty(c), &mut none).unwrap();
            assert_eq!(d.to_json(), v, "{c}");
        }
        // A one-element set written as ["set",[x]] is normalized to the bare atom.
        let d = Datum::from_json(&json!(["set", [7]]), &ty("tag"), &mut none).unwrap();
        assert_eq!(d.to_json(), json!(7));
        // named-uuid goes through the resolver.
        let d = Datum::from_json(
            &json!(["named-uuid", "x"]),
            &ty("interfaces"),
            &mut |n: &str| (n == "x").then_some(u),
        )
        .unwrap();
        assert_eq!(d, Datum::scalar(Atom::Uuid(u)));
        assert!(
            Datum::from_json(&json!(["named-uuid", "x"]), &ty("interfaces"), &mut none).is_err()
        );
    }

    #[test]
    fn constraints_and_errors() {
        let s = DatabaseSchema::vswitch();
        let t = |tb: &str, c: &str| s.tables[tb].columns[c].type_.clone();
        let e = Datum::from_json(&json!(5000), &t("Port", "tag"), &mut none).unwrap_err();
        assert_eq!(e.error, "constraint violation");
        assert_eq!(
            e.details.as_deref(),
            Some("5000 is not in the valid range 0 to 4095 (inclusive)")
        );
        let e =
            Datum::from_json(&json!(["set", [1, 2]]), &t("Port", "tag"), &mut none).unwrap_err();
        assert_eq!(e.error, "syntax error");
        assert_eq!(
            e.details.as_deref(),
            Some("set must have 0 to 1 members but 2 are present")
        );
        let e = Datum::from_json(&json!("foo"), &t("Bridge", "fail_mode"), &mut none).unwrap_err();
        assert_eq!(
            e.details.as_deref(),
            Some("foo is not one of the allowed values ([secure, standalone])")
        );
        let e = Datum::from_json(&json!(1), &t("Port", "name"), &mut none).unwrap_err();
        assert_eq!(
            (e.error.as_str(), e.details.as_deref()),
            ("syntax error", Some("expected string"))
        );
        for bad in [
            json!(["map", [["a"]]]),
            json!(["map", [["a", "b"], ["a", "c"]]]),
            json!({"x": 1}),
            json!(null),
        ] {
            assert_eq!(
                Datum::from_json(&bad, &t("Port", "external_ids"), &mut none)
                    .unwrap_err()
                    .error,
                "syntax error"
            );
        }
        assert!(
            Datum::from_json(
                &json!(["uuid", "nope"]),
                &t("Port", "interfaces"),
                &mut none
            )
            .is_err()
        );
    }

    #[test]
    fn diff_roundtrip() {
        let ty = DatabaseSchema::vswitch().tables["Port"].columns["external_ids"]
            .type_
            .clone();
        let a = Datum::from_json(
            &json!(["map", [["a", "1"], ["b", "2"], ["c", "3"]]]),
            &ty,
            &mut none,
        )
        .unwrap();
        let b = Datum::from_json(
            &json!(["map", [["a", "1"], ["b", "9"], ["d", "4"]]]),
            &ty,
            &mut none,
        )
        .unwrap();
        let d = b.diff_from(&a);
        assert_eq!(
            d.to_json(),
            json!(["map", [["b", "9"], ["c", "3"], ["d", "4"]]])
        );
        let mut x = a.clone();
        x.apply_diff(&d);
        assert_eq!(x, b);
        let s1 = Datum::Set([1, 2, 3].map(Atom::Integer).into());
        let s2 = Datum::Set([2, 3, 4].map(Atom::Integer).into());
        let d = s2.diff_from(&s1);
        let mut x = s1.clone();
        x.apply_diff(&d);
        assert_eq!(x, s2);
    }
}
