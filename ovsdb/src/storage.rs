//! Durable append-only log: one framed, checksummed JSON record per committed transaction,
//! fsync'd before the commit is acknowledged; torn or corrupt tails are detected and truncated on
//! open; compaction rewrites the log as a snapshot via write-to-temp + fsync + rename.
//!
//! Record framing: `PLXOVSDB <len> <crc32-hex>\n<len bytes of JSON>\n`. The first record is
//! `{"schema": <schema>}`, every later one `{"txn": {table: {uuid: row-or-null}}}` where a row
//! holds its non-default columns and `_version` (a full replacement of the row).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::db::{Changes, Database, Row, RowChange};
use crate::schema::DatabaseSchema;

const MAGIC: &str = "PLXOVSDB";

const fn crc_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}
static CRC_TABLE: [u32; 256] = crc_table();

/// CRC-32 (IEEE).
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c = CRC_TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

fn frame(v: &Value) -> Vec<u8> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    let mut out = format!("{MAGIC} {} {:08x}\n", body.len(), crc32(&body)).into_bytes();
    out.extend_from_slice(&body);
    out.push(b'\n');
    out
}

/// Parse records from `data`; returns the records and the length of the valid prefix.
fn parse_records(data: &[u8]) -> (Vec<Value>, usize) {
    let mut recs = Vec::new();
    let mut off = 0;
    while off < data.len() {
        let Some(nl) = data[off..].iter().take(64).position(|&b| b == b'\n') else {
            break;
        };
        let Ok(hdr) = std::str::from_utf8(&data[off..off + nl]) else {
            break;
        };
        let parts: Vec<&str> = hdr.split(' ').collect();
        let [MAGIC, len, crc] = parts.as_slice() else {
            break;
        };
        let (Ok(len), Ok(crc)) = (len.parse::<usize>(), u32::from_str_radix(crc, 16)) else {
            break;
        };
        let start = off + nl + 1;
        let Some(end) = start.checked_add(len) else {
            break;
        };
        if end + 1 > data.len() || data[end] != b'\n' {
            break;
        }
        let body = &data[start..end];
        if crc32(body) != crc {
            break;
        }
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            break;
        };
        recs.push(v);
        off = end + 1;
    }
    (recs, off)
}

/// Storage errors.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// I/O failure.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The file is not a valid log (bad first record, schema mismatch...).
    #[error("corrupt database file: {0}")]
    Corrupt(String),
}

/// An open log file.
#[derive(Debug)]
pub struct Storage {
    path: PathBuf,
    file: File,
    len: u64,
    records: u64,
    snapshot_len: u64,
    /// Bytes cut off a torn/corrupt tail when the file was opened.
    pub truncated: u64,
    /// fsync after each commit (default true).
    pub fsync: bool,
}

fn sync_dir(path: &Path) -> io::Result<()> {
    if let Some(d) = path.parent() {
        let d = if d.as_os_str().is_empty() {
            Path::new(".")
        } else {
            d
        };
        File::open(d)?.sync_all()?;
    }
    Ok(())
}

fn changes_record(db: &Database, changes: &Changes) -> Value {
    let mut txn = Map::new();
    for (t, rows) in changes {
        let ts = &db.schema().tables[t];
        let mut m = Map::new();
        for (u, ch) in rows {
            m.insert(
                u.to_string(),
                match (&ch.old, &ch.new) {
                    // Modified row: only the changed columns, as update2-style diffs.
                    (Some(o), Some(r)) => {
                        let delta: Map<String, Value> = ts
                            .columns
                            .values()
                            .filter(|c| !c.ephemeral && o.cols.get(&c.name) != r.cols.get(&c.name))
                            .map(|c| {
                                let (a, b) = (&o.cols[&c.name], &r.cols[&c.name]);
                                let v = if c.type_.is_scalar() {
                                    b.to_json()
                                } else {
                                    b.diff_from(a).to_json()
                                };
                                (c.name.clone(), v)
                            })
                            .collect();
                        if delta.is_empty() {
                            // Only ephemeral columns changed (e.g. a switch's statistics):
                            // nothing to persist, like ovsdb-server.
                            continue;
                        }
                        json!({"_version": ["uuid", r.version.to_string()], "_delta": delta})
                    }
                    (_, Some(r)) => {
                        // Ephemeral columns are not persisted (they come back as defaults).
                        let durable: Vec<String> = ts
                            .columns
                            .values()
                            .filter(|c| !c.ephemeral)
                            .map(|c| c.name.clone())
                            .collect();
                        let mut o = r.to_json_nondefault(ts, Some(&durable));
                        if let Value::Object(o) = &mut o {
                            o.insert("_version".into(), json!(["uuid", r.version.to_string()]));
                        }
                        o
                    }
                    (_, None) => Value::Null,
                },
            );
        }
        if !m.is_empty() {
            txn.insert(t.clone(), Value::Object(m));
        }
    }
    json!({ "txn": txn })
}

fn record_changes(db: &Database, rec: &Value) -> Result<Changes, StorageError> {
    let txn = rec
        .get("txn")
        .and_then(Value::as_object)
        .ok_or_else(|| StorageError::Corrupt("record without \"txn\"".into()))?;
    let mut changes = Changes::new();
    for (t, rows) in txn {
        let ts = db
            .schema()
            .tables
            .get(t)
            .ok_or_else(|| StorageError::Corrupt(format!("unknown table {t}")))?;
        let rows = rows
            .as_object()
            .ok_or_else(|| StorageError::Corrupt("rows must be an object".into()))?;
        let mut out = BTreeMap::new();
        for (u, r) in rows {
            let u = Uuid::parse_str(u).map_err(|e| StorageError::Corrupt(e.to_string()))?;
            let corrupt = |e: crate::error::OvsdbError| StorageError::Corrupt(e.to_string());
            let new = if r.is_null() {
                None
            } else if let Some(delta) = r.get("_delta").and_then(Value::as_object) {
                let mut row: Row = db
                    .rows(t)
                    .and_then(|rows| rows.get(&u))
                    .map(|r| (**r).clone())
                    .ok_or_else(|| StorageError::Corrupt(format!("delta for missing row {u}")))?;
                for (c, v) in delta {
                    let cs = ts
                        .columns
                        .get(c)
                        .ok_or_else(|| StorageError::Corrupt(format!("unknown column {c}")))?;
                    let d = crate::datum::Datum::from_json(v, &cs.type_.unbounded(), &mut |_| None)
                        .map_err(corrupt)?;
                    let cur = row
                        .cols
                        .get_mut(c)
                        .ok_or_else(|| StorageError::Corrupt(format!("missing column {c}")))?;
                    if cs.type_.is_scalar() {
                        *cur = d;
                    } else {
                        cur.apply_diff(&d);
                    }
                }
                let ver = crate::datum::Datum::from_json(
                    &r["_version"],
                    &crate::schema::uuid_column_type(),
                    &mut |_| None,
                )
                .map_err(corrupt)?;
                row.version = ver
                    .as_scalar()
                    .and_then(crate::datum::Atom::as_uuid)
                    .unwrap_or_default();
                Some(row)
            } else {
                Some(Row::from_json_full(ts, r).map_err(corrupt)?)
            };
            out.insert(
                u,
                RowChange {
                    old: None,
                    new: new.map(std::sync::Arc::new),
                },
            );
        }
        changes.insert(t.clone(), out);
    }
    Ok(changes)
}

impl Storage {
    /// Create a new log holding only `schema` (fails if the file exists).
    pub fn create(path: &Path, schema: &DatabaseSchema) -> Result<Storage, StorageError> {
        let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
        let rec = frame(&json!({ "schema": schema.json }));
        file.write_all(&rec)?;
        file.sync_all()?;
        sync_dir(path)?;
        Ok(Storage {
            path: path.into(),
            file,
            len: rec.len() as u64,
            records: 1,
            snapshot_len: rec.len() as u64,
            truncated: 0,
            fsync: true,
        })
    }

    /// Open an existing log, replaying it into a database; a torn or corrupt tail is truncated.
    pub fn open(path: &Path) -> Result<(Storage, Database), StorageError> {
        let mut data = Vec::new();
        File::open(path)?.read_to_end(&mut data)?;
        let (recs, valid) = parse_records(&data);
        let schema_json = recs
            .first()
            .and_then(|r| r.get("schema"))
            .ok_or_else(|| StorageError::Corrupt("first record is not a schema".into()))?;
        let schema = DatabaseSchema::from_json(schema_json)
            .map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let mut db = Database::new(schema);
        let mut snapshot_len = valid as u64;
        for (i, r) in recs.iter().enumerate().skip(1) {
            let ch = record_changes(&db, r)?;
            db.apply(&ch);
            if i == 1 && r.get("snapshot").is_some() {
                snapshot_len = valid as u64;
            }
        }
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let truncated = (data.len() - valid) as u64;
        if truncated > 0 {
            file.set_len(valid as u64)?;
            file.sync_all()?;
        }
        let mut file = OpenOptions::new().append(true).open(path)?;
        file.flush()?;
        db.durable = true;
        let records = recs.len() as u64;
        Ok((
            Storage {
                path: path.into(),
                file,
                len: valid as u64,
                records,
                snapshot_len: snapshot_len.min(valid as u64),
                truncated,
                fsync: true,
            },
            db,
        ))
    }

    /// Open `path` if it exists, else create it with `schema`.
    pub fn open_or_create(
        path: &Path,
        schema: &DatabaseSchema,
    ) -> Result<(Storage, Database), StorageError> {
        if path.exists() {
            return Self::open(path);
        }
        let s = Self::create(path, schema)?;
        let mut db = Database::new(schema.clone());
        db.durable = true;
        Ok((s, db))
    }

    /// Append a committed transaction and (by default) fsync it.
    pub fn commit(&mut self, db: &Database, changes: &Changes) -> io::Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let rec = changes_record(db, changes);
        if rec["txn"].as_object().is_some_and(Map::is_empty) {
            return Ok(());
        }
        let rec = frame(&rec);
        self.file.write_all(&rec)?;
        if self.fsync {
            self.file.sync_data()?;
        }
        self.len += rec.len() as u64;
        self.records += 1;
        Ok(())
    }

    /// Current file size.
    pub fn len(&self) -> u64 {
        self.len
    }
    /// Whether the file holds no records (never true for an open log).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Number of records.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Whether the log has grown enough to be worth compacting.
    pub fn should_compact(&self) -> bool {
        self.records > 100 && self.len > 4 * self.snapshot_len.max(1 << 16)
    }

    /// Rewrite the log as schema + one snapshot of `db`, atomically.
    pub fn compact(&mut self, db: &Database) -> io::Result<()> {
        let tmp = self.path.with_extension("compact.tmp");
        let mut all = Changes::new();
        for t in db.schema().tables.keys() {
            let rows: BTreeMap<Uuid, RowChange> = db
                .rows(t)
                .into_iter()
                .flatten()
                .map(|(u, r)| {
                    (
                        *u,
                        RowChange {
                            old: None,
                            new: Some(r.clone()),
                        },
                    )
                })
                .collect();
            if !rows.is_empty() {
                all.insert(t.clone(), rows);
            }
        }
        let mut out = frame(&json!({ "schema": db.schema().json }));
        let mut snap = changes_record(db, &all);
        if let Value::Object(o) = &mut snap {
            o.insert("snapshot".into(), json!(true));
        }
        out.extend(frame(&snap));
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            f.write_all(&out)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        sync_dir(&self.path)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.len = out.len() as u64;
        self.snapshot_len = self.len;
        self.records = 2;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(db: &mut Database, ops: Value) -> Changes {
        let o = db.transact(ops.as_array().unwrap(), &|_| false);
        assert!(o.ok, "{:?}", o.results);
        o.changes
    }

    fn dump(db: &Database) -> Vec<(String, Uuid, std::sync::Arc<Row>)> {
        db.schema()
            .tables
            .keys()
            .flat_map(|t| {
                db.rows(t)
                    .into_iter()
                    .flatten()
                    .map(move |(u, r)| (t.clone(), *u, r.clone()))
            })
            .collect()
    }

    #[test]
    fn ephemeral_columns_are_not_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        let schema = DatabaseSchema::vswitch();
        let eph: Vec<&str> = schema.tables["Controller"]
            .columns
            .values()
            .filter(|c| c.ephemeral)
            .map(|c| c.name.as_str())
            .collect();
        assert!(eph.contains(&"is_connected"), "{eph:?}");
        let (mut st, mut db) = Storage::open_or_create(&p, &schema).unwrap();
        let ch = tx(
            &mut db,
            json!([{"op":"insert","table":"Open_vSwitch","row":{"manager_options":["named-uuid","m"]}},
            {"op":"insert","table":"Manager","uuid-name":"m","row":{"target":"ptcp:1","is_connected":true}}]),
        );
        st.commit(&db, &ch).unwrap();
        let len = st.len();
        let ch = tx(
            &mut db,
            json!([{"op":"update","table":"Manager","where":[],"row":{"is_connected":false,"status":["map",[["state","ACTIVE"]]]}}]),
        );
        st.commit(&db, &ch).unwrap();
        let ch = tx(
            &mut db,
            json!([{"op":"update","table":"Manager","where":[],"row":{"is_connected":true}}]),
        );
        st.commit(&db, &ch).unwrap();
        assert_eq!(st.len(), len, "ephemeral-only changes write nothing");
        drop(st);
        let (_, db2) = Storage::open(&p).unwrap();
        let m = db2
            .rows("Manager")
            .unwrap()
            .values()
            .next()
            .unwrap()
            .clone();
        assert_eq!(m.cols["target"].to_json(), json!("ptcp:1"));
        for c in ["is_connected", "status"] {
            if schema.tables["Manager"].columns[c].ephemeral {
                assert!(
                    m.cols[c].is_default(&schema.tables["Manager"].columns[c].type_),
                    "{c} persisted"
                );
            }
        }
        assert!(schema.tables["Manager"].columns["is_connected"].ephemeral);
    }

    #[test]
    fn crc_known_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn replay_truncate_and_compact() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        let (mut st, mut db) = Storage::open_or_create(&p, &DatabaseSchema::vswitch()).unwrap();
        let ch = tx(
            &mut db,
            json!([{"op":"insert","table":"Open_vSwitch","row":{}}]),
        );
        st.commit(&db, &ch).unwrap();
        for i in 0..20 {
            let ch = tx(
                &mut db,
                json!([
                    {"op":"insert","table":"Bridge","uuid-name":"b","row":{"name":format!("br{i}"),"external_ids":["map",[["k","v"]]]}},
                    {"op":"mutate","table":"Open_vSwitch","where":[],"mutations":[["bridges","insert",["named-uuid","b"]]]}
                ]),
            );
            st.commit(&db, &ch).unwrap();
        }
        let ch = tx(
            &mut db,
            json!([{"op":"update","table":"Open_vSwitch","where":[],"row":{"bridges":["set",[]]}}]),
        );
        st.commit(&db, &ch).unwrap();
        let ch = tx(
            &mut db,
            json!([{"op":"insert","table":"Bridge","uuid-name":"b","row":{"name":"last"}},
            {"op":"mutate","table":"Open_vSwitch","where":[],"mutations":[["bridges","insert",["named-uuid","b"]]]}]),
        );
        st.commit(&db, &ch).unwrap();
        let good_len = st.len();
        drop(st);
        let (_, db2) = Storage::open(&p).unwrap();
        assert_eq!(dump(&db2), dump(&db));

        // Torn tail: a partial record after the last good one is cut off on open.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"PLXOVSDB 500 deadbeef\n{\"txn\":{").unwrap();
        drop(f);
        let (st, db3) = Storage::open(&p).unwrap();
        assert_eq!(st.truncated, 22 + 8);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), good_len);
        assert_eq!(dump(&db3), dump(&db));
        drop(st);
        // Corrupted last record (bit flip): detected by the checksum, that record is dropped.
        let mut data = std::fs::read(&p).unwrap();
        let n = data.len();
        data[n - 5] ^= 0x20;
        std::fs::write(&p, &data).unwrap();
        let (mut st, db4) = Storage::open(&p).unwrap();
        assert!(st.truncated > 0);
        assert_eq!(
            db4.rows("Bridge").unwrap().len(),
            0,
            "last txn (insert 'last') dropped"
        );
        // Compaction keeps content and shrinks the file.
        let before = st.len();
        st.compact(&db4).unwrap();
        assert!(st.len() < before);
        drop(st);
        let (_, db5) = Storage::open(&p).unwrap();
        assert_eq!(dump(&db5), dump(&db4));
    }
}
