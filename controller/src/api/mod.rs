//! The REST API: axum handlers generic over the resource kind, bearer-token auth,
//! RFC 9457 errors, ETag/If-Match, pagination, Prometheus metrics, and the OpenAPI
//! document (utoipa) served at `/openapi.json`.

mod audit;
mod auth;
mod kinds;
pub use kinds::port_index;
mod metrics;
mod tenancy;

pub use audit::{AuditLog, Entry as AuditEntry};
pub use auth::{Caller, Scope, Tokens, hash_token};
pub use metrics::Metrics;

use crate::store::{AnyStore, Store, StoreError};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
type Router<S = ()> = axum::Router<S>;
use kinds::Kind;
use plexus_api::*;
use serde::Deserialize;
use std::sync::Arc;
use utoipa::OpenApi;

pub use auth::{Admin, Global, Reader};

/// Shared state of the API.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: AnyStore,
    /// `None` disables authentication (only for `--insecure-no-auth`).
    pub tokens: Option<Arc<Tokens>>,
    pub metrics: Arc<Metrics>,
    /// Southbound sync state shown by `/v1/status` (empty without a southbound).
    pub sync: crate::southbound::SyncStatus,
    /// Interfaces each connected switch reports (port status).
    pub switch_ports: crate::southbound::SwitchPorts,
    /// The xDS feed (`--xds-listen`), shown by `/v1/xds/status`.
    pub xds: Option<Arc<crate::xds::XdsState>>,
    /// The audit log of API changes (`--audit-log`).
    pub audit: Option<Arc<AuditLog>>,
    /// The leader election (etcd store with `--ha`): role shown by `/v1/status` and
    /// `/readyz`.
    pub role: Option<tokio::sync::watch::Receiver<crate::ha::Role>>,
}

impl AppState {
    pub fn new(store: impl Into<AnyStore>, tokens: Option<Tokens>) -> Self {
        Self {
            store: store.into(),
            role: None,
            tokens: tokens.map(Arc::new),
            metrics: Arc::new(Metrics::new()),
            sync: Default::default(),
            switch_ports: Default::default(),
            xds: None,
            audit: None,
        }
    }
}

impl AppState {
    /// The store backend and this controller's election role.
    pub fn controller_role(&self) -> ControllerRole {
        let store = self.store.backend().to_string();
        match &self.role {
            None => ControllerRole {
                store,
                role: "standalone".into(),
                node: None,
                leader: None,
                transitions: 0,
            },
            Some(rx) => {
                let r = rx.borrow();
                ControllerRole {
                    store,
                    role: if r.leader { "leader" } else { "follower" }.into(),
                    node: Some(r.node.clone()),
                    leader: r.leader_node.clone(),
                    transitions: r.transitions,
                }
            }
        }
    }
}

/// An error answered as problem JSON.
#[derive(Debug)]
pub struct ApiError(pub Box<Problem>);

impl ApiError {
    pub fn new(p: Problem) -> Self {
        Self(Box::new(p))
    }
    pub fn status(status: StatusCode, title: &str) -> Self {
        Self::new(Problem::new(status.as_u16(), title))
    }
    pub fn field(status: StatusCode, title: &str, field: &str, detail: impl Into<String>) -> Self {
        Self::new(Problem::new(status.as_u16(), title).with_field(field, detail))
    }
    pub fn invalid(field: &str, detail: impl Into<String>) -> Self {
        Self::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid field",
            field,
            detail,
        )
    }
    pub fn conflict(field: &str, detail: impl Into<String>) -> Self {
        Self::field(StatusCode::CONFLICT, "Conflict", field, detail)
    }
    pub fn not_found(kind: &str, id: &str) -> Self {
        Self::new(
            Problem::new(404, "Not found")
                .with_detail(format!("no {kind} with id {id}"))
                .with_type("https://plexus.invalid/problems/not-found"),
        )
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        ApiError::invalid(&e.field, e.message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store error");
        match e {
            // RFC 4918 507: the request was fine, the store's disk is full;
            // nothing was written, retrying after space is freed works.
            StoreError::NoSpace(_) => {
                ApiError::new(Problem::new(507, "Insufficient storage").with_detail(e.to_string()))
            }
            e => ApiError::new(Problem::new(500, "Store error").with_detail(e.to_string())),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = (status, Json(*self.0)).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
        );
        r
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Parses a JSON body, naming the offending field on error (`rules[0].prot`).
pub fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> ApiResult<T> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.inner().to_string();
        let mut field = if path == "." { String::new() } else { path };
        for pre in ["unknown field `", "missing field `", "duplicate field `"] {
            if let Some(rest) = msg.strip_prefix(pre)
                && let Some((name, _)) = rest.split_once('`')
            {
                field = if field.is_empty() {
                    name.to_string()
                } else if field == name || field.ends_with(&format!(".{name}")) {
                    field // serde_path_to_error already names it (unknown fields)
                } else {
                    format!("{field}.{name}")
                };
            }
        }
        if field.is_empty() {
            ApiError::new(Problem::new(400, "Malformed JSON body").with_detail(msg))
        } else {
            ApiError::field(StatusCode::BAD_REQUEST, "Malformed JSON body", &field, msg)
        }
    })
}

fn etag(rev: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{rev}\"")).unwrap()
}

/// Checks `If-Match` against the current revision (`None` = the object does not exist).
fn check_if_match(headers: &HeaderMap, current: Option<u64>) -> ApiResult<()> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(());
    };
    let v = v.to_str().map_err(|_| {
        ApiError::field(
            StatusCode::BAD_REQUEST,
            "Bad header",
            "If-Match",
            "not ASCII",
        )
    })?;
    let ok = match current {
        None => false,
        Some(rev) => v
            .split(',')
            .map(str::trim)
            .any(|t| t == "*" || t.trim_start_matches("W/").trim_matches('"') == rev.to_string()),
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            Problem::new(412, "Precondition failed").with_field(
                "If-Match",
                match current {
                    Some(r) => format!("the object's current ETag is \"{r}\""),
                    None => "the object does not exist".into(),
                },
            ),
        ))
    }
}

/// Query of `GET /v1/status`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    /// Count the objects per kind (a scan of the store; `false` for cheap polling of
    /// the per-chassis sync state).
    #[serde(default = "yes")]
    pub objects: bool,
}

fn yes() -> bool {
    true
}

/// Pagination query of list endpoints.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Page size, 1..=1000 (default 100).
    pub limit: Option<usize>,
    /// `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ApiError::new(Problem::new(500, "Internal error").with_detail(e.to_string()))
    })?
}

/// For a tenant-scoped caller: checks object `id` (JSON `v`) inside a transaction.
fn tenant_check_txn(
    caller: &Caller,
    t: &mut dyn crate::store::Txn,
    kind: &str,
    id: &str,
    v: &serde_json::Value,
) -> ApiResult<()> {
    let Some(tenant) = caller.scope.tenant() else {
        return Ok(());
    };
    tenancy::check(tenant, kind, id, v, &mut |k, i| {
        Ok(t.get(k, i)?.map(|r| r.value))
    })
}

/// For a tenant-scoped caller: checks object `id` (JSON `v`) against the store.
fn tenant_check_store(
    caller: &Caller,
    store: &AnyStore,
    kind: &str,
    id: &str,
    v: &serde_json::Value,
) -> ApiResult<()> {
    let Some(tenant) = caller.scope.tenant() else {
        return Ok(());
    };
    tenancy::check(tenant, kind, id, v, &mut |k, i| {
        Ok(store.get(k, i)?.map(|r| r.value))
    })
}

async fn create<K: Kind>(st: AppState, caller: Caller, body: Bytes) -> ApiResult<Response> {
    let spec: K = parse_body(&body)?;
    spec.validate()?;
    let store = st.store.clone();
    let (obj, rev, id) = blocking(move || {
        let id = uuid::Uuid::new_v4().to_string();
        let (spec, rev) = store.write::<_, ApiError>(&mut |t| {
            tenant_check_txn(
                &caller,
                t,
                K::KIND,
                &id,
                &serde_json::to_value(&spec).unwrap(),
            )?;
            let mut s = spec.clone();
            s.prepare(t, &id, None)?;
            t.put(K::KIND, &id, &serde_json::to_value(&s).unwrap())?;
            Ok(s)
        })?;
        Ok((K::object(id.clone(), rev, spec), rev, id))
    })
    .await?;
    let mut r = (StatusCode::CREATED, Json(obj)).into_response();
    r.headers_mut().insert(header::ETAG, etag(rev));
    r.extensions_mut().insert(audit::CreatedId(id));
    Ok(r)
}

fn load<K: Kind>(rec: crate::store::Record) -> ApiResult<K::Obj> {
    let spec: K = serde_json::from_value(rec.value).map_err(|e| StoreError::Corrupt {
        key: format!("{}/{}", K::KIND, rec.id),
        err: e.to_string(),
    })?;
    Ok(K::object(rec.id, rec.revision, spec))
}

async fn read<K: Kind>(st: AppState, caller: Caller, id: String) -> ApiResult<Response> {
    let store = st.store.clone();
    let rec = blocking(move || {
        let rec = store
            .get(K::KIND, &id)?
            .ok_or_else(|| ApiError::not_found(K::KIND, &id))?;
        tenant_check_store(&caller, &store, K::KIND, &id, &rec.value)?;
        Ok(rec)
    })
    .await?;
    let rev = rec.revision;
    let mut r = Json(load::<K>(rec)?).into_response();
    r.headers_mut().insert(header::ETAG, etag(rev));
    Ok(r)
}

async fn list<K: Kind>(
    st: AppState,
    caller: Caller,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult<Json<K::List>> {
    let Query(q) =
        q.map_err(|e| ApiError::new(Problem::new(400, "Bad query").with_detail(e.body_text())))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "Bad query",
            "limit",
            "must be 1..=1000",
        ));
    }
    let store = st.store.clone();
    let mut recs = blocking(move || {
        if caller.scope.tenant().is_none() {
            return Ok(store.list(K::KIND, q.page_token.as_deref(), limit + 1)?);
        }
        // A tenant token sees only its tenant's objects: page through the kind until
        // limit + 1 of them are found.
        let mut out = Vec::new();
        let mut after = q.page_token.clone();
        loop {
            let page = store.list(K::KIND, after.as_deref(), 1000)?;
            let done = page.len() < 1000;
            after = page.last().map(|r| r.id.clone());
            for r in page {
                match tenant_check_store(&caller, &store, K::KIND, &r.id, &r.value) {
                    Ok(()) => out.push(r),
                    Err(e) if e.0.status == 403 => {}
                    Err(e) => return Err(e),
                }
                if out.len() > limit {
                    return Ok(out);
                }
            }
            if done {
                return Ok(out);
            }
        }
    })
    .await?;
    let next = if recs.len() > limit {
        recs.truncate(limit);
        recs.last().map(|r| r.id.clone())
    } else {
        None
    };
    let items = recs
        .into_iter()
        .map(load::<K>)
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(K::list(items, next)))
}

async fn replace<K: Kind>(
    st: AppState,
    caller: Caller,
    id: String,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let spec: K = parse_body(&body)?;
    spec.validate()?;
    let store = st.store.clone();
    let (obj, rev) = blocking(move || {
        let (spec, rev) = store.write::<_, ApiError>(&mut |t| {
            let old = t.get(K::KIND, &id)?;
            check_if_match(&headers, old.as_ref().map(|r| r.revision))?;
            let old = old.ok_or_else(|| ApiError::not_found(K::KIND, &id))?;
            tenant_check_txn(&caller, t, K::KIND, &id, &old.value)?;
            tenant_check_txn(
                &caller,
                t,
                K::KIND,
                &id,
                &serde_json::to_value(&spec).unwrap(),
            )?;
            let old: K = serde_json::from_value(old.value).map_err(|e| StoreError::Corrupt {
                key: id.clone(),
                err: e.to_string(),
            })?;
            let mut s = spec.clone();
            s.prepare(t, &id, Some(&old))?;
            t.put(K::KIND, &id, &serde_json::to_value(&s).unwrap())?;
            Ok(s)
        })?;
        Ok((K::object(id, rev, spec), rev))
    })
    .await?;
    let mut r = Json(obj).into_response();
    r.headers_mut().insert(header::ETAG, etag(rev));
    Ok(r)
}

async fn remove<K: Kind>(
    st: AppState,
    caller: Caller,
    id: String,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let store = st.store.clone();
    blocking(move || {
        store.write::<_, ApiError>(&mut |t| {
            let old = t.get(K::KIND, &id)?;
            check_if_match(&headers, old.as_ref().map(|r| r.revision))?;
            let old = old.ok_or_else(|| ApiError::not_found(K::KIND, &id))?;
            tenant_check_txn(&caller, t, K::KIND, &id, &old.value)?;
            let old: K = serde_json::from_value(old.value).map_err(|e| StoreError::Corrupt {
                key: id.clone(),
                err: e.to_string(),
            })?;
            old.on_delete(t, &id)?;
            t.delete(K::KIND, &id)?;
            Ok(())
        })?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Per-kind handler wrappers, so that each gets its own OpenAPI operation.
macro_rules! endpoints {
    ($m:ident, $spec:ident, $obj:path, $list:ident, $path:tt, $idpath:tt, $tag:tt) => {
        endpoints!($m, $spec, $obj, $list, $path, $idpath, $tag, Reader, Admin);
    };
    ($m:ident, $spec:ident, $obj:path, $list:ident, $path:tt, $idpath:tt, $tag:tt, $reader:ident, $writer:ident) => {
        pub mod $m {
            use super::*;

            #[utoipa::path(post, path = $path, tag = $tag, request_body = $spec,
                responses(
                    (status = 201, description = "Created", body = $obj),
                    (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
                    (status = 401, description = "Unauthenticated", body = Problem, content_type = "application/problem+json"),
                    (status = 403, description = "Read-only token", body = Problem, content_type = "application/problem+json"),
                    (status = 409, description = "Conflict", body = Problem, content_type = "application/problem+json"),
                    (status = 422, description = "Invalid field", body = Problem, content_type = "application/problem+json"),
                ),
                security(("bearer" = [])))]
            pub async fn create(State(st): State<AppState>, a: $writer, body: Bytes) -> ApiResult<Response> {
                super::create::<$spec>(st, a.0, body).await
            }

            #[utoipa::path(get, path = $path, tag = $tag, params(PageQuery),
                responses(
                    (status = 200, description = "One page", body = $list),
                    (status = 400, description = "Bad query", body = Problem, content_type = "application/problem+json"),
                    (status = 401, description = "Unauthenticated", body = Problem, content_type = "application/problem+json"),
                ),
                security(("bearer" = [])))]
            pub async fn list(State(st): State<AppState>, a: $reader, q: Result<Query<PageQuery>, QueryRejection>) -> ApiResult<Json<$list>> {
                super::list::<$spec>(st, a.0, q).await
            }

            #[utoipa::path(get, path = $idpath, tag = $tag, params(("id" = String, Path)),
                responses(
                    (status = 200, description = "The object (ETag: its revision)", body = $obj),
                    (status = 401, description = "Unauthenticated", body = Problem, content_type = "application/problem+json"),
                    (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"),
                ),
                security(("bearer" = [])))]
            pub async fn get(State(st): State<AppState>, a: $reader, Path(id): Path<String>) -> ApiResult<Response> {
                super::read::<$spec>(st, a.0, id).await
            }

            #[utoipa::path(put, path = $idpath, tag = $tag, request_body = $spec,
                params(("id" = String, Path), ("If-Match" = Option<String>, Header, description = "ETag the update is based on")),
                responses(
                    (status = 200, description = "Replaced", body = $obj),
                    (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"),
                    (status = 409, description = "Conflict", body = Problem, content_type = "application/problem+json"),
                    (status = 412, description = "ETag mismatch", body = Problem, content_type = "application/problem+json"),
                    (status = 422, description = "Invalid field", body = Problem, content_type = "application/problem+json"),
                ),
                security(("bearer" = [])))]
            pub async fn replace(State(st): State<AppState>, a: $writer, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
                super::replace::<$spec>(st, a.0, id, headers, body).await
            }

            #[utoipa::path(delete, path = $idpath, tag = $tag,
                params(("id" = String, Path), ("If-Match" = Option<String>, Header, description = "ETag the delete is based on")),
                responses(
                    (status = 204, description = "Deleted"),
                    (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"),
                    (status = 409, description = "Still referenced", body = Problem, content_type = "application/problem+json"),
                    (status = 412, description = "ETag mismatch", body = Problem, content_type = "application/problem+json"),
                ),
                security(("bearer" = [])))]
            pub async fn delete(State(st): State<AppState>, a: $writer, Path(id): Path<String>, headers: HeaderMap) -> ApiResult<StatusCode> {
                super::remove::<$spec>(st, a.0, id, headers).await
            }

            pub fn routes() -> Router<AppState> {
                Router::new()
                    .route($path, axum::routing::get(list).post(create))
                    .route($idpath, axum::routing::get(get).put(replace).delete(delete))
            }
        }
    };
}

endpoints!(
    tenants,
    TenantSpec,
    Tenant,
    TenantList,
    "/v1/tenants",
    "/v1/tenants/{id}",
    "tenants"
);
endpoints!(
    vpcs,
    VpcSpec,
    Vpc,
    VpcList,
    "/v1/vpcs",
    "/v1/vpcs/{id}",
    "vpcs"
);
endpoints!(
    subnets,
    SubnetSpec,
    Subnet,
    SubnetList,
    "/v1/subnets",
    "/v1/subnets/{id}",
    "subnets"
);
endpoints!(
    routers,
    RouterSpec,
    plexus_api::Router,
    RouterList,
    "/v1/routers",
    "/v1/routers/{id}",
    "routers"
);
endpoints!(
    ports,
    PortSpec,
    Port,
    PortList,
    "/v1/ports",
    "/v1/ports/{id}",
    "ports"
);
endpoints!(
    security_groups,
    SecurityGroupSpec,
    SecurityGroup,
    SecurityGroupList,
    "/v1/security-groups",
    "/v1/security-groups/{id}",
    "security-groups"
);
endpoints!(
    services,
    ServiceSpec,
    Service,
    ServiceList,
    "/v1/services",
    "/v1/services/{id}",
    "services"
);
endpoints!(
    chassis,
    ChassisSpec,
    Chassis,
    ChassisList,
    "/v1/chassis",
    "/v1/chassis/{id}",
    "chassis",
    Global,
    GlobalAdmin
);

/// Extractor: an admin token (chassis are infrastructure: no tenant token writes them).
#[derive(Debug)]
pub struct GlobalAdmin(pub Caller);

impl axum::extract::FromRequestParts<AppState> for GlobalAdmin {
    type Rejection = Response;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        st: &AppState,
    ) -> Result<Self, Response> {
        let Global(c) = Global::from_request_parts(parts, st).await?;
        let Admin(c) = match c.scope {
            Scope::Read => Admin::from_request_parts(parts, st).await?,
            _ => Admin(c),
        };
        Ok(GlobalAdmin(c))
    }
}

/// Port attachment: `PUT/DELETE /v1/ports/{id}/binding` and `GET /v1/ports/{id}/status`.
pub mod port_binding {
    use super::*;

    /// Changes a port's binding inside one write (all of the port's create/replace checks
    /// run: the chassis exists, no other port is bound to the same interface).
    fn rebind(
        store: AnyStore,
        id: String,
        headers: HeaderMap,
        binding: Option<PortBinding>,
    ) -> ApiResult<(Port, u64)> {
        let (spec, rev) = store.write::<_, ApiError>(&mut |t| {
            let old = t.get(PortSpec::KIND, &id)?;
            check_if_match(&headers, old.as_ref().map(|r| r.revision))?;
            let old = old.ok_or_else(|| ApiError::not_found(PortSpec::KIND, &id))?;
            let old: PortSpec =
                serde_json::from_value(old.value).map_err(|e| StoreError::Corrupt {
                    key: id.clone(),
                    err: e.to_string(),
                })?;
            match (&old.binding, &binding) {
                (Some(a), Some(b)) if a != b => {
                    return Err(ApiError::conflict(
                        "binding",
                        format!(
                            "port {id} is bound to interface {} on chassis {}: detach it first",
                            a.iface, a.chassis_id
                        ),
                    ));
                }
                (a, b) if a == b => return Ok(old),
                _ => {}
            }
            let mut s = old.clone();
            s.binding = binding.clone();
            kinds::Kind::prepare(&mut s, t, &id, Some(&old))?;
            t.put(PortSpec::KIND, &id, &serde_json::to_value(&s).unwrap())?;
            Ok(s)
        })?;
        Ok((
            Port {
                id,
                revision: rev,
                spec,
            },
            rev,
        ))
    }

    fn respond(p: Port, rev: u64) -> Response {
        let mut r = Json(p).into_response();
        r.headers_mut().insert(header::ETAG, etag(rev));
        r
    }

    /// Binds the port to an interface of a chassis' switch (what `plexus port attach`
    /// does after plugging the interface). Idempotent for the same binding; a port bound
    /// elsewhere is a 409.
    #[utoipa::path(put, path = "/v1/ports/{id}/binding", tag = "ports", request_body = PortBinding,
        params(("id" = String, Path), ("If-Match" = Option<String>, Header, description = "ETag the change is based on")),
        responses(
            (status = 200, description = "The bound port", body = Port),
            (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
            (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"),
            (status = 409, description = "Bound elsewhere, or the interface is taken", body = Problem, content_type = "application/problem+json"),
            (status = 412, description = "ETag mismatch", body = Problem, content_type = "application/problem+json"),
            (status = 422, description = "No such chassis", body = Problem, content_type = "application/problem+json"),
        ),
        security(("bearer" = [])))]
    pub async fn bind(
        State(st): State<AppState>,
        _a: Admin,
        Path(id): Path<String>,
        headers: HeaderMap,
        body: Bytes,
    ) -> ApiResult<Response> {
        let b: PortBinding = parse_body(&body)?;
        validate::check_binding(&b)?;
        let store = st.store.clone();
        let (p, rev) = blocking(move || rebind(store, id, headers, Some(b))).await?;
        Ok(respond(p, rev))
    }

    /// Removes the port's binding (idempotent).
    #[utoipa::path(delete, path = "/v1/ports/{id}/binding", tag = "ports",
        params(("id" = String, Path), ("If-Match" = Option<String>, Header, description = "ETag the change is based on")),
        responses(
            (status = 200, description = "The unbound port", body = Port),
            (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"),
            (status = 412, description = "ETag mismatch", body = Problem, content_type = "application/problem+json"),
        ),
        security(("bearer" = [])))]
    pub async fn unbind(
        State(st): State<AppState>,
        _a: Admin,
        Path(id): Path<String>,
        headers: HeaderMap,
    ) -> ApiResult<Response> {
        let store = st.store.clone();
        let (p, rev) = blocking(move || rebind(store, id, headers, None)).await?;
        Ok(respond(p, rev))
    }

    /// Where the port is attached and whether the bound chassis' switch has the interface.
    #[utoipa::path(get, path = "/v1/ports/{id}/status", tag = "ports", params(("id" = String, Path)),
        responses(
            (status = 200, description = "Attachment state", body = PortStatus),
            (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"),
        ),
        security(("bearer" = [])))]
    pub async fn status(
        State(st): State<AppState>,
        _a: Reader,
        Path(id): Path<String>,
    ) -> ApiResult<Json<PortStatus>> {
        let store = st.store.clone();
        let rec = blocking(move || {
            store
                .get(PortSpec::KIND, &id)?
                .ok_or_else(|| ApiError::not_found(PortSpec::KIND, &id))
        })
        .await?;
        let port = load::<PortSpec>(rec)?;
        let (connected, ofport) = match &port.spec.binding {
            Some(b) => (
                st.sync.get(&b.chassis_id).is_some_and(|c| c.connected),
                st.switch_ports.ofport(&b.chassis_id, &b.iface),
            ),
            None => (false, None),
        };
        let state = match (&port.spec.binding, ofport) {
            (None, _) => "unbound",
            (Some(_), Some(_)) if connected => "up",
            _ => "pending",
        };
        Ok(Json(PortStatus {
            id: port.id,
            state: state.into(),
            binding: port.spec.binding,
            chassis_connected: connected,
            ofport: ofport.filter(|_| connected),
        }))
    }

    pub fn routes() -> Router<AppState> {
        Router::new()
            .route(
                "/v1/ports/{id}/binding",
                axum::routing::put(bind).delete(unbind),
            )
            .route("/v1/ports/{id}/status", get(status))
    }
}

/// Store status: revision and object counts.
#[utoipa::path(get, path = "/v1/status", tag = "status", params(StatusQuery),
    responses(
        (status = 200, description = "Store status", body = Status),
        (status = 400, description = "Bad query", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn status(
    State(st): State<AppState>,
    _a: Global,
    q: Result<Query<StatusQuery>, QueryRejection>,
) -> ApiResult<Json<Status>> {
    let Query(q) =
        q.map_err(|e| ApiError::new(Problem::new(400, "Bad query").with_detail(e.body_text())))?;
    let store = st.store.clone();
    let chassis = st.sync.snapshot();
    let role = st.controller_role();
    blocking(move || {
        let mut objects = std::collections::BTreeMap::new();
        if q.objects {
            for k in kinds::ALL {
                objects.insert(k.to_string(), store.count(k)?);
            }
        }
        Ok(Json(Status {
            revision: store.revision(),
            objects,
            chassis,
            controller: Some(role),
        }))
    })
    .await
}

/// xDS feed status: the published store revision, the last publication error, and per
/// proxy node the versions sent/ACKed and the last NACK (`error_detail`) per type.
#[utoipa::path(get, path = "/v1/xds/status", tag = "status",
    responses(
        (status = 200, description = "Feed and per-node xDS status", body = Object),
        (status = 404, description = "xDS is not enabled (--xds-listen)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn xds_status(
    State(st): State<AppState>,
    _a: Global,
) -> ApiResult<Json<serde_json::Value>> {
    match &st.xds {
        Some(x) => Ok(Json(x.status_json())),
        None => Err(ApiError::new(
            Problem::new(404, "Not found").with_detail("xDS is not enabled (--xds-listen)"),
        )),
    }
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "Alive")))]
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the store answers reads. The body names the role: `ok standalone`,
/// `ok leader` or `ok follower` (a follower serves the API too).
#[utoipa::path(get, path = "/readyz", tag = "ops", responses(
    (status = 200, description = "Ready"), (status = 503, description = "Not ready", body = Problem)))]
pub async fn readyz(State(st): State<AppState>) -> ApiResult<String> {
    let store = st.store.clone();
    let role = st.controller_role().role;
    blocking(move || {
        store.count("tenants").map_err(|e| {
            ApiError::new(Problem::new(503, "Not ready").with_detail(e.to_string()))
        })?;
        Ok(format!("ok {role}\n"))
    })
    .await
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "OpenMetrics text")))]
pub async fn metrics_handler(State(st): State<AppState>) -> Response {
    let store = st.store.clone();
    let counts = tokio::task::spawn_blocking(move || {
        kinds::ALL
            .iter()
            .map(|k| (k.to_string(), store.count(k).unwrap_or(0)))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let body = st
        .metrics
        .render(st.store.revision(), &counts, &st.sync.snapshot());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

struct SecurityAddon;

impl utoipa::Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let c = openapi.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document, generated from the handlers and types above.
#[derive(OpenApi)]
#[openapi(
    info(title = "Plexus controller API", description = "Tenants, VPCs, subnets, routers, ports, security groups, services and chassis."),
    paths(
        tenants::create, tenants::list, tenants::get, tenants::replace, tenants::delete,
        vpcs::create, vpcs::list, vpcs::get, vpcs::replace, vpcs::delete,
        subnets::create, subnets::list, subnets::get, subnets::replace, subnets::delete,
        routers::create, routers::list, routers::get, routers::replace, routers::delete,
        ports::create, ports::list, ports::get, ports::replace, ports::delete,
        port_binding::bind, port_binding::unbind, port_binding::status,
        security_groups::create, security_groups::list, security_groups::get, security_groups::replace, security_groups::delete,
        services::create, services::list, services::get, services::replace, services::delete,
        chassis::create, chassis::list, chassis::get, chassis::replace, chassis::delete,
        status, xds_status, healthz, readyz, metrics_handler,
    ),
    modifiers(&SecurityAddon)
)]
#[derive(Debug)]
pub struct ApiDoc;

async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

async fn fallback() -> ApiError {
    ApiError::new(Problem::new(404, "Not found").with_detail("no such endpoint"))
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(tenants::routes())
        .merge(vpcs::routes())
        .merge(subnets::routes())
        .merge(routers::routes())
        .merge(ports::routes())
        .merge(port_binding::routes())
        .merge(security_groups::routes())
        .merge(services::routes())
        .merge(chassis::routes())
        .route("/v1/status", get(status))
        .route("/v1/xds/status", get(xds_status))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .route("/openapi.json", get(openapi_json))
        .fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::track,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
}
