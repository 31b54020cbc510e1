//! Disk full for the redb store (issue #11 faults): the store lives on a small
//! tmpfs; once the file system is full, writes answer 507 with RFC 9457 problem
//! JSON (never a 500, never a panic), every object committed before stays
//! readable, nothing half-written appears, and after space is freed the same
//! running controller takes writes again (redb is reopened after its I/O
//! failure). Finally the file reopens with exactly the committed objects.
//! Needs root (mount); prerequisites per tests/src/prereq.rs.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use plexus_controller::api::{AppState, Scope, Tokens, app};
use plexus_controller::store::{RedbStore, Store};
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use tower::ServiceExt;

const ADMIN: &str = "admin-token-0123456789";

/// A tmpfs mounted for the test; unmounted (lazily) on drop, also on failure.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("plx-hard-diskfull-")
            .tempdir()
            .unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}")])
            .arg("plx-hard-diskfull")
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs failed");
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Writes a file until the file system is full; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let p = dir.join("filler");
    let mut f = std::fs::File::create(&p).unwrap();
    let chunk = vec![0x5au8; 4096];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{e}");
                break;
            }
        }
    }
    let _ = f.sync_all();
    p
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Option<String>, Value) {
    let b = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"));
    let req = match body {
        Some(v) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    };
    let r = app.clone().oneshot(req).await.unwrap();
    let status = r.status();
    let ct = r
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        ct,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn disk_full_answers_507_loses_nothing_and_recovers() {
    if !plexus_tests::prereq::require_root()
        || !plexus_tests::prereq::require_tools(&["mount", "umount"])
    {
        return;
    }
    let fs = Tmpfs::mount("4m");
    let db = fs.path().join("plexus.redb");
    let store = RedbStore::open(&db).unwrap();
    let mut tokens = Tokens::default();
    tokens.insert(ADMIN, Scope::Admin);
    let app = app(AppState::new(store, Some(tokens)));

    // Committed before the disk fills.
    let mut committed = Vec::new();
    for i in 0..20 {
        let (st, _, v) = call(
            &app,
            "POST",
            "/v1/tenants",
            Some(json!({"name": format!("t{i}")})),
        )
        .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        committed.push(v);
    }
    let filler = fill(fs.path());

    // Writes until one fails: the first may still fit in redb's free pages.
    let mut refused = 0;
    let mut accepted_while_full = Vec::new();
    for i in 0..200 {
        // Large enough that redb must grow its file.
        let name = format!("full{i}");
        let (st, ct, v) = call(
            &app,
            "POST",
            "/v1/tenants",
            Some(json!({"name": name, "description": "y".repeat(2000)})),
        )
        .await;
        match st {
            StatusCode::CREATED => accepted_while_full.push(v),
            StatusCode::INSUFFICIENT_STORAGE => {
                assert_eq!(ct.as_deref(), Some("application/problem+json"));
                assert_eq!(v["status"], json!(507), "{v}");
                assert!(v["title"].is_string() && v["detail"].is_string(), "{v}");
                refused += 1;
                if refused == 5 {
                    break;
                }
            }
            other => panic!("write on a full disk answered {other}: {v}"),
        }
    }
    assert_eq!(refused, 5, "the full disk never refused a write");
    println!(
        "disk full: {} writes still fitted, then 5 of 5 answered 507",
        accepted_while_full.len()
    );
    // Reads keep working and every committed object is there, unchanged.
    for v in committed.iter().chain(&accepted_while_full) {
        let id = v["id"].as_str().unwrap();
        let (st, _, got) = call(&app, "GET", &format!("/v1/tenants/{id}"), None).await;
        assert_eq!(st, StatusCode::OK, "{id} lost while the disk was full");
        assert_eq!(&got, v);
    }
    let (_, _, list) = call(&app, "GET", "/v1/tenants?limit=1000", None).await;
    let n_full = committed.len() + accepted_while_full.len();
    assert_eq!(
        list["items"].as_array().map(Vec::len),
        Some(n_full),
        "a refused write left something behind: {list}"
    );

    // Space freed: the same controller takes writes again.
    std::fs::remove_file(&filler).unwrap();
    let (st, _, v) = call(&app, "POST", "/v1/tenants", Some(json!({"name": "after"}))).await;
    assert_eq!(st, StatusCode::CREATED, "after freeing space: {v}");
    committed.extend(accepted_while_full);
    committed.push(v);

    // And the file holds exactly the committed objects.
    drop(app);
    let store = RedbStore::open(&db).unwrap();
    let ids: Vec<String> = store
        .list("tenants", None, 10_000)
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    let mut want: Vec<String> = committed
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    let mut got = ids.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want);
}
