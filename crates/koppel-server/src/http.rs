//! The SCIM HTTP routes (RFC 7644): discovery, `/Users` and `/Groups` with filters, sorting,
//! paging, projection, PATCH, ETags and `If-Match`, behind bearer-token authentication.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{ScimError, scim_json};
use crate::filter::{self, AttrPath, CompareOp, Filter, Literal};
use crate::patch;
use crate::resource::{self, compare_sort, normalize, project, sort_value};
use crate::schema::{self, Kind};
use crate::store::{
    Directory, GroupRow, GroupWrite, UserRow, UserWrite, render_group, render_user,
};

/// Results per page when the client asks for no `count`, and the most it may ask for.
pub const MAX_RESULTS: usize = 1000;
const DEFAULT_COUNT: usize = 100;

/// What the routes share. Cheap to clone.
#[derive(Clone)]
pub struct ScimState {
    inner: Arc<Inner>,
}

struct Inner {
    dir: Directory,
    /// SHA-256 of each accepted token: compared in constant time, and equal in length
    /// whatever the tokens are.
    tokens: Vec<[u8; 32]>,
    base_url: Option<String>,
    max_body: usize,
}

impl ScimState {
    /// State over `dir`, accepting `tokens` (at least one), with resource URLs under
    /// `base_url` (else `http://` and the request's `Host`).
    pub fn new(
        dir: Directory,
        tokens: &[String],
        base_url: Option<String>,
        max_body: usize,
    ) -> Result<ScimState, String> {
        if tokens.is_empty() || tokens.iter().any(|t| t.trim().is_empty()) {
            return Err("the SCIM endpoint needs at least one non-empty bearer token".to_owned());
        }
        Ok(ScimState {
            inner: Arc::new(Inner {
                dir,
                tokens: tokens
                    .iter()
                    .map(|t| Sha256::digest(t.trim().as_bytes()).into())
                    .collect(),
                base_url: base_url.map(|b| b.trim_end_matches('/').to_owned()),
                max_body,
            }),
        })
    }

    fn token_ok(&self, token: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut ok = subtle::Choice::from(0);
        // Every token is compared, so the time does not tell which one (if any) matched.
        for t in &self.inner.tokens {
            ok |= t.ct_eq(&digest);
        }
        ok.into()
    }

    fn base(&self, headers: &HeaderMap) -> String {
        if let Some(b) = &self.inner.base_url {
            return b.clone();
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
            })
            .unwrap_or("localhost");
        format!("http://{host}")
    }
}

/// The SCIM routes at the root, `/healthz` included (without authentication).
pub fn scim_router(state: ScimState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(scim_routes(state))
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

/// The SCIM routes alone, behind their bearer tokens, with a SCIM 404 for any other path:
/// `koppel serve` merges them with its own routes.
pub fn scim_routes(state: ScimState) -> Router {
    let max_body = state.inner.max_body;
    Router::new()
        .route("/ServiceProviderConfig", get(service_provider_config))
        .route("/ResourceTypes", get(resource_types))
        .route("/ResourceTypes/{id}", get(resource_type))
        .route("/Schemas", get(schemas))
        .route("/Schemas/{id}", get(schema_by_id))
        .route("/Users", get(list_users).post(create_user))
        .route("/Users/.search", post(search_users))
        .route(
            "/Users/{id}",
            get(get_user)
                .put(put_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route("/Groups", get(list_groups).post(create_group))
        .route("/Groups/.search", post(search_groups))
        .route(
            "/Groups/{id}",
            get(get_group)
                .put(put_group)
                .patch(patch_group)
                .delete(delete_group),
        )
        .route("/.search", post(search_all))
        .route("/Me", any(not_implemented))
        .route("/Bulk", any(not_implemented))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

async fn authenticate(State(state): State<ScimState>, request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    match token {
        Some(t) if state.token_ok(t) => next.run(request).await,
        _ => ScimError::new(
            StatusCode::UNAUTHORIZED,
            None,
            "a valid bearer token is required",
        )
        .into_response(),
    }
}

async fn not_implemented() -> ScimError {
    ScimError::new(
        StatusCode::NOT_IMPLEMENTED,
        None,
        "not implemented by koppel's SCIM endpoint",
    )
}

async fn not_found() -> ScimError {
    ScimError::not_found("no such SCIM endpoint")
}

async fn method_not_allowed() -> ScimError {
    ScimError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        None,
        "method not allowed on this endpoint",
    )
}

fn ok_json(status: StatusCode, body: Value) -> Response {
    scim_json(status, &body)
}

/// A resource response with its `ETag` (and `Location` on create).
fn resource_response(status: StatusCode, resource: Map<String, Value>) -> Response {
    let version = resource
        .get("meta")
        .and_then(|m| m.get("version"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let location = resource
        .get("meta")
        .and_then(|m| m.get("location"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut response = ok_json(status, Value::Object(resource));
    if let Some(v) = version.and_then(|v| HeaderValue::from_str(&v).ok()) {
        response.headers_mut().insert(header::ETAG, v);
    }
    if status == StatusCode::CREATED
        && let Some(l) = location.and_then(|l| HeaderValue::from_str(&l).ok())
    {
        response.headers_mut().insert(header::LOCATION, l);
    }
    response
}

// ---------------------------------------------------------------------------------------
// Discovery

fn with_meta(mut v: Value, resource_type: &str, location: String) -> Value {
    v["meta"] = json!({ "resourceType": resource_type, "location": location });
    v
}

fn list(resources: Vec<Value>) -> Value {
    json!({
        "schemas": [schema::LIST],
        "totalResults": resources.len(),
        "startIndex": 1,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

async fn service_provider_config(State(s): State<ScimState>, headers: HeaderMap) -> Response {
    let base = s.base(&headers);
    ok_json(
        StatusCode::OK,
        with_meta(
            json!({
                "schemas": [schema::SPC],
                "documentationUri": "https://example.invalid/koppel/docs/scim",
                "patch": { "supported": true },
                "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
                "filter": { "supported": true, "maxResults": MAX_RESULTS },
                "changePassword": { "supported": false },
                "sort": { "supported": true },
                "etag": { "supported": true },
                "authenticationSchemes": [{
                    "type": "oauthbearertoken",
                    "name": "Bearer token",
                    "description": "A bearer token from koppel's configuration",
                    "primary": true,
                }],
            }),
            "ServiceProviderConfig",
            format!("{base}/ServiceProviderConfig"),
        ),
    )
}

fn resource_type_json(kind: Kind, base: &str) -> Value {
    let mut v = json!({
        "schemas": [schema::RESOURCE_TYPE],
        "id": kind.name(),
        "name": kind.name(),
        "endpoint": format!("/{}", kind.endpoint()),
        "description": match kind { Kind::User => "User Account", Kind::Group => "Group" },
        "schema": kind.core(),
    });
    let ext: Vec<Value> = kind
        .extensions()
        .iter()
        .map(|(urn, _)| json!({ "schema": urn, "required": false }))
        .collect();
    if !ext.is_empty() {
        v["schemaExtensions"] = Value::Array(ext);
    }
    with_meta(
        v,
        "ResourceType",
        format!("{base}/ResourceTypes/{}", kind.name()),
    )
}

async fn resource_types(State(s): State<ScimState>, headers: HeaderMap) -> Response {
    let base = s.base(&headers);
    let all = [Kind::User, Kind::Group]
        .into_iter()
        .map(|k| resource_type_json(k, &base))
        .collect();
    ok_json(StatusCode::OK, list(all))
}

async fn resource_type(
    State(s): State<ScimState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let base = s.base(&headers);
    match [Kind::User, Kind::Group]
        .into_iter()
        .find(|k| k.name() == id)
    {
        Some(k) => ok_json(StatusCode::OK, resource_type_json(k, &base)),
        None => ScimError::not_found(format!("no resource type {id}")).into_response(),
    }
}

fn schemas_json(base: &str) -> Vec<Value> {
    schema::all_schemas()
        .into_iter()
        .map(|mut v| {
            let id = v["id"].as_str().unwrap_or_default().to_owned();
            v["meta"]["location"] = json!(format!("{base}/Schemas/{id}"));
            v
        })
        .collect()
}

async fn schemas(State(s): State<ScimState>, headers: HeaderMap) -> Response {
    ok_json(StatusCode::OK, list(schemas_json(&s.base(&headers))))
}

async fn schema_by_id(
    State(s): State<ScimState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match schemas_json(&s.base(&headers))
        .into_iter()
        .find(|v| v["id"] == json!(id))
    {
        Some(v) => ok_json(StatusCode::OK, v),
        None => ScimError::not_found(format!("no schema {id}")).into_response(),
    }
}

// ---------------------------------------------------------------------------------------
// Queries

/// The query parameters of a list request (RFC 7644 §3.4.2), parsed.
#[derive(Debug, Default)]
pub struct ListQuery {
    pub filter: Option<Filter>,
    pub attributes: Vec<AttrPath>,
    pub excluded: Vec<AttrPath>,
    pub sort_by: Option<AttrPath>,
    pub descending: bool,
    pub start_index: usize,
    pub count: usize,
}

fn attr_list(text: &str, what: &str) -> Result<Vec<AttrPath>, ScimError> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let p = filter::parse_path(s)
                .map_err(|e| ScimError::invalid_value(format!("{what} `{s}` {e}")))?;
            if p.filter.is_some() {
                return Err(ScimError::invalid_value(format!(
                    "{what} `{s}`: no filters here"
                )));
            }
            Ok(p.attr)
        })
        .collect()
}

fn parse_index(v: &str, name: &str) -> Result<i64, ScimError> {
    v.trim()
        .parse::<i64>()
        .map_err(|_| ScimError::invalid_value(format!("{name} must be an integer, not {v:?}")))
}

impl ListQuery {
    fn from_pairs(kind: Kind, pairs: &[(String, String)]) -> Result<ListQuery, ScimError> {
        let mut q = ListQuery {
            start_index: 1,
            count: DEFAULT_COUNT,
            ..ListQuery::default()
        };
        for (k, v) in pairs {
            q.set(kind, k, &Value::String(v.clone()))?;
        }
        q.check(kind)?;
        Ok(q)
    }

    fn from_body(kind: Kind, body: &Value) -> Result<ListQuery, ScimError> {
        let mut q = ListQuery {
            start_index: 1,
            count: DEFAULT_COUNT,
            ..ListQuery::default()
        };
        let Value::Object(o) = body else {
            return Err(ScimError::invalid_syntax(
                "a search request is a JSON object",
            ));
        };
        for (k, v) in o {
            if k.eq_ignore_ascii_case("schemas") {
                continue;
            }
            q.set(kind, k, v)?;
        }
        q.check(kind)?;
        Ok(q)
    }

    fn set(&mut self, kind: Kind, key: &str, v: &Value) -> Result<(), ScimError> {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Array(items) => items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","),
            Value::Number(n) => n.to_string(),
            _ => {
                return Err(ScimError::invalid_value(format!(
                    "`{key}` has the wrong type"
                )));
            }
        };
        match key.to_ascii_lowercase().as_str() {
            "filter" => {
                let f = filter::parse(&text)
                    .map_err(|e| ScimError::invalid_filter(format!("filter {e}")))?;
                filter::validate(&f, kind).map_err(ScimError::invalid_filter)?;
                self.filter = Some(f);
            }
            "attributes" => self.attributes = attr_list(&text, "attribute")?,
            "excludedattributes" => self.excluded = attr_list(&text, "excluded attribute")?,
            "sortby" => {
                let p = filter::parse_path(&text)
                    .map_err(|e| ScimError::invalid_value(format!("sortBy {e}")))?;
                if p.filter.is_some() {
                    return Err(ScimError::invalid_value("sortBy takes an attribute path"));
                }
                self.sort_by = Some(p.attr);
            }
            "sortorder" => match text.to_ascii_lowercase().as_str() {
                "ascending" => self.descending = false,
                "descending" => self.descending = true,
                _ => {
                    return Err(ScimError::invalid_value(
                        "sortOrder is ascending or descending",
                    ));
                }
            },
            "startindex" => self.start_index = parse_index(&text, "startIndex")?.max(1) as usize,
            "count" => {
                self.count = parse_index(&text, "count")?.clamp(0, MAX_RESULTS as i64) as usize;
            }
            // Unknown parameters are ignored, as clients add their own.
            _ => {}
        }
        Ok(())
    }

    fn check(&self, _kind: Kind) -> Result<(), ScimError> {
        if !self.attributes.is_empty() && !self.excluded.is_empty() {
            return Err(ScimError::invalid_value(
                "give attributes or excludedAttributes, not both",
            ));
        }
        Ok(())
    }
}

fn query_pairs(
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Vec<(String, String)>, ScimError> {
    q.map(|Query(p)| p)
        .map_err(|e| ScimError::invalid_value(format!("the query string: {e}")))
}

/// `attributes` / `excludedAttributes` of a single-resource request.
fn projection(
    kind: Kind,
    pairs: &[(String, String)],
) -> Result<(Vec<AttrPath>, Vec<AttrPath>), ScimError> {
    let mut q = ListQuery::default();
    for (k, v) in pairs {
        let lk = k.to_ascii_lowercase();
        if lk == "attributes" || lk == "excludedattributes" {
            q.set(kind, k, &Value::String(v.clone()))?;
        }
    }
    q.check(kind)?;
    Ok((q.attributes, q.excluded))
}

/// Finds the lookups that bound a filter's results: exact matches on indexed attributes.
/// `None`: the filter needs a full scan. The filter is still evaluated on what they find.
fn lookups(f: &Filter, kind: Kind) -> Option<Vec<(&'static str, String)>> {
    match f {
        Filter::Compare(p, CompareOp::Eq, Literal::Str(v))
            if p.sub.is_none()
                && p.urn
                    .as_deref()
                    .is_none_or(|u| u.eq_ignore_ascii_case(kind.core())) =>
        {
            let name = p.name.to_ascii_lowercase();
            let key = match (kind, name.as_str()) {
                (_, "id") => "id",
                (_, "externalid") if kind == Kind::User => "externalId",
                (Kind::User, "username") => "userName",
                (Kind::Group, "displayname") => "displayName",
                _ => return None,
            };
            Some(vec![(key, v.clone())])
        }
        Filter::And(a, b) => lookups(a, kind).or_else(|| lookups(b, kind)),
        Filter::Or(a, b) => {
            let mut x = lookups(a, kind)?;
            x.extend(lookups(b, kind)?);
            Some(x)
        }
        _ => None,
    }
}

/// Filters and sorts `resources` of `kind` as `q` asks.
fn select(
    kind: Kind,
    q: &ListQuery,
    mut resources: Vec<Map<String, Value>>,
) -> Vec<Map<String, Value>> {
    if let Some(f) = &q.filter {
        resources.retain(|r| filter::matches(f, r, kind));
    }
    if let Some(by) = &q.sort_by {
        let exact = kind
            .attr(by.urn.as_deref(), &by.name)
            .and_then(|d| match &by.sub {
                Some(s) => schema::find(d.sub, s),
                None if d.ty == schema::Ty::Complex => schema::find(d.sub, "value"),
                None => Some(d),
            })
            .is_some_and(|d| d.case_exact);
        resources.sort_by(|a, b| {
            let o = compare_sort(sort_value(a, kind, by), sort_value(b, kind, by), exact);
            if q.descending { o.reverse() } else { o }
        });
    }
    resources
}

/// A list response: the page `q` asks for (unless `sliced`: the resources are that page
/// already, of `total`), projected.
fn respond(
    q: &ListQuery,
    resources: Vec<(Kind, Map<String, Value>)>,
    total: Option<usize>,
    sliced: bool,
) -> Value {
    let total = total.unwrap_or(resources.len());
    let items: Vec<(Kind, Map<String, Value>)> = if sliced {
        resources
    } else {
        resources
            .into_iter()
            .skip(q.start_index.saturating_sub(1))
            .take(q.count)
            .collect()
    };
    let items: Vec<Value> = items
        .into_iter()
        .map(|(kind, mut r)| {
            project(&mut r, kind, &q.attributes, &q.excluded);
            Value::Object(r)
        })
        .collect();
    json!({
        "schemas": [schema::LIST],
        "totalResults": total,
        "startIndex": q.start_index,
        "itemsPerPage": items.len(),
        "Resources": items,
    })
}

fn page(
    kind: Kind,
    q: &ListQuery,
    resources: Vec<Map<String, Value>>,
    total: Option<usize>,
    sliced: bool,
) -> Value {
    let selected = select(kind, q, resources)
        .into_iter()
        .map(|r| (kind, r))
        .collect();
    respond(q, selected, total, sliced)
}

/// The list response of `GET /{kind}` and `POST /{kind}/.search`. Users neither filtered
/// nor sorted are paged by the store; the rest is selected from the candidates.
async fn list_response(
    s: &ScimState,
    headers: &HeaderMap,
    kind: Kind,
    q: &ListQuery,
) -> Result<Response, ScimError> {
    let base = s.base(headers);
    let body = if kind == Kind::User && q.filter.is_none() && q.sort_by.is_none() {
        let dir = &s.inner.dir;
        let (total, rows) = dir
            .user_page(q.start_index as i64 - 1, q.count as i64)
            .await?;
        let resources = rows
            .iter()
            .map(|r| render_user(r, dir.mapping(), &base))
            .collect();
        page(kind, q, resources, Some(total as usize), true)
    } else {
        page(kind, q, candidates(s, &base, kind, q).await?, None, false)
    };
    Ok(ok_json(StatusCode::OK, body))
}

/// The resources of `kind` a filter may match, rendered.
async fn candidates(
    s: &ScimState,
    base: &str,
    kind: Kind,
    q: &ListQuery,
) -> Result<Vec<Map<String, Value>>, ScimError> {
    match kind {
        Kind::User => user_candidates(s, base, q).await,
        Kind::Group => group_candidates(s, base, q).await,
    }
}

/// The users a filter may match, rendered: found by index where the filter allows.
async fn user_candidates(
    s: &ScimState,
    base: &str,
    q: &ListQuery,
) -> Result<Vec<Map<String, Value>>, ScimError> {
    let dir = &s.inner.dir;
    let render = |rows: Vec<UserRow>| -> Vec<Map<String, Value>> {
        rows.iter()
            .map(|r| render_user(r, dir.mapping(), base))
            .collect()
    };
    let rows = match q.filter.as_ref().and_then(|f| lookups(f, Kind::User)) {
        Some(keys) => {
            let mut rows: Vec<UserRow> = Vec::new();
            for (key, value) in keys {
                let found = match key {
                    "id" => dir.user(&value).await?.into_iter().collect(),
                    "externalId" => dir.users_by_external_id(&value).await?,
                    _ => dir.users_by_user_name(&value).await?,
                };
                for r in found {
                    if !rows.iter().any(|x| x.id == r.id) {
                        rows.push(r);
                    }
                }
            }
            rows.sort_by_key(|r| r.id);
            rows
        }
        None => dir.all_users().await?,
    };
    Ok(render(rows))
}

async fn group_candidates(
    s: &ScimState,
    base: &str,
    q: &ListQuery,
) -> Result<Vec<Map<String, Value>>, ScimError> {
    let dir = &s.inner.dir;
    let rows = match q.filter.as_ref().and_then(|f| lookups(f, Kind::Group)) {
        Some(keys) => {
            let mut rows: Vec<GroupRow> = Vec::new();
            for (key, value) in keys {
                let found = match key {
                    "id" => match value.parse::<i64>() {
                        Ok(id) => dir.group(id).await?.into_iter().collect(),
                        Err(_) => Vec::new(),
                    },
                    // NOCASE folds ASCII only: other names are checked by the filter below
                    // over every group.
                    "displayName" if value.is_ascii() => dir.groups_by_name(&value).await?,
                    _ => dir.all_groups().await?,
                };
                for r in found {
                    if !rows.iter().any(|x| x.id == r.id) {
                        rows.push(r);
                    }
                }
            }
            rows.sort_by_key(|r| r.id);
            rows
        }
        None => dir.all_groups().await?,
    };
    Ok(rows.iter().map(|r| render_group(r, base)).collect())
}

/// `POST /.search`: Users and Groups at once (RFC 7644 §3.4.3), Users first.
async fn search_all(
    State(s): State<ScimState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ScimError> {
    let body = json_body(body)?;
    let base = s.base(&headers);
    let mut all: Vec<(Kind, Map<String, Value>)> = Vec::new();
    let mut last = None;
    for kind in [Kind::User, Kind::Group] {
        let q = ListQuery::from_body(kind, &body)?;
        let found = candidates(&s, &base, kind, &q).await?;
        all.extend(select(kind, &q, found).into_iter().map(|r| (kind, r)));
        last = Some(q);
    }
    let q = last.unwrap_or_default();
    Ok(ok_json(StatusCode::OK, respond(&q, all, None, false)))
}

async fn list_users(
    State(s): State<ScimState>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ScimError> {
    let q = ListQuery::from_pairs(Kind::User, &query_pairs(query)?)?;
    list_response(&s, &headers, Kind::User, &q).await
}

async fn search_users(
    State(s): State<ScimState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ScimError> {
    let q = ListQuery::from_body(Kind::User, &json_body(body)?)?;
    list_response(&s, &headers, Kind::User, &q).await
}

async fn list_groups(
    State(s): State<ScimState>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ScimError> {
    let q = ListQuery::from_pairs(Kind::Group, &query_pairs(query)?)?;
    list_response(&s, &headers, Kind::Group, &q).await
}

async fn search_groups(
    State(s): State<ScimState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ScimError> {
    let q = ListQuery::from_body(Kind::Group, &json_body(body)?)?;
    list_response(&s, &headers, Kind::Group, &q).await
}

// ---------------------------------------------------------------------------------------
// Single resources

fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Value, ScimError> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ScimError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                "the request body is too large",
            )
        } else {
            ScimError::invalid_syntax(format!("the request body: {e}"))
        }
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ScimError::invalid_syntax(format!("the request body is not JSON: {e}")))
}

fn version_of(r: &Map<String, Value>) -> Option<&str> {
    r.get("meta")?.get("version")?.as_str()
}

/// Whether an `If-Match` / `If-None-Match` header lists `version` (or `*`). Weak and strong
/// forms compare equal (RFC 7232 weak comparison).
fn etag_listed(header: &str, version: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    header
        .split(',')
        .any(|t| t.trim() == "*" || bare(t) == bare(version))
}

fn check_if_match(headers: &HeaderMap, current: &Map<String, Value>) -> Result<(), ScimError> {
    let Some(want) = headers.get(header::IF_MATCH) else {
        return Ok(());
    };
    let want = want.to_str().unwrap_or_default();
    match version_of(current) {
        Some(v) if etag_listed(want, v) => Ok(()),
        _ => Err(ScimError::precondition(format!(
            "If-Match {want} does not match the current version {}",
            version_of(current).unwrap_or("-")
        ))),
    }
}

fn single(
    kind: Kind,
    headers: &HeaderMap,
    resource: Map<String, Value>,
    pairs: &[(String, String)],
) -> Result<Response, ScimError> {
    if let (Some(none_match), Some(v)) = (headers.get(header::IF_NONE_MATCH), version_of(&resource))
        && etag_listed(none_match.to_str().unwrap_or_default(), v)
    {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(v) = HeaderValue::from_str(v) {
            r.headers_mut().insert(header::ETAG, v);
        }
        return Ok(r);
    }
    let (attributes, excluded) = projection(kind, pairs)?;
    let mut resource = resource;
    let version = version_of(&resource).map(str::to_owned);
    project(&mut resource, kind, &attributes, &excluded);
    let mut response = ok_json(StatusCode::OK, Value::Object(resource));
    if let Some(v) = version.and_then(|v| HeaderValue::from_str(&v).ok()) {
        response.headers_mut().insert(header::ETAG, v);
    }
    Ok(response)
}

/// What a SCIM User body becomes in the directory.
fn user_write(
    mapping: &resource::Mapping,
    resource: Map<String, Value>,
    current_enabled: bool,
) -> Result<UserWrite, ScimError> {
    if !resource.contains_key("userName") {
        return Err(ScimError::invalid_value("userName is required"));
    }
    let (attributes, mut rest) = mapping.extract(&resource);
    // The value lives in the enabled column; the key stays in the SCIM data to say the
    // client assigned it. A resource without `active` (removed by PATCH, left out of a PUT)
    // is an active account: a disabled one would otherwise read back `active: false`, a
    // value the client just removed. A body that is not a boolean keeps what was there.
    let enabled = match rest.get("active") {
        Some(Value::Bool(b)) => *b,
        None => true,
        Some(_) => current_enabled,
    };
    rest.remove("password");
    let external_id = rest
        .get("externalId")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(UserWrite {
        attributes,
        enabled,
        resource: rest,
        external_id,
    })
}

fn group_write(mut resource: Map<String, Value>) -> Result<GroupWrite, ScimError> {
    let Some(Value::String(name)) = resource.remove("displayName") else {
        return Err(ScimError::invalid_value("displayName is required"));
    };
    let mut members = Vec::new();
    if let Some(Value::Array(items)) = resource.remove("members") {
        for m in items {
            match m.get("value").and_then(Value::as_str) {
                Some(v) => {
                    if !members.iter().any(|x: &String| x == v) {
                        members.push(v.to_owned());
                    }
                }
                None => return Err(ScimError::invalid_value("every member needs a `value`")),
            }
        }
    }
    let external_id = resource
        .get("externalId")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(GroupWrite {
        name,
        members,
        resource,
        external_id,
    })
}

/// The writable part of a rendered resource: what PATCH works on.
fn writable(mut r: Map<String, Value>) -> Map<String, Value> {
    for k in ["id", "meta", "schemas", "groups"] {
        r.remove(k);
    }
    r
}

async fn get_user(
    State(s): State<ScimState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ScimError> {
    let pairs = query_pairs(query)?;
    let dir = &s.inner.dir;
    let row = dir
        .user(&id)
        .await?
        .ok_or_else(|| ScimError::not_found(format!("no User {id}")))?;
    single(
        Kind::User,
        &headers,
        render_user(&row, dir.mapping(), &s.base(&headers)),
        &pairs,
    )
}

async fn create_user(
    State(s): State<ScimState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ScimError> {
    let dir = &s.inner.dir;
    let resource = normalize(Kind::User, &json_body(body)?)?;
    let write = user_write(dir.mapping(), resource, true)?;
    let reference = dir.create_user(write).await?;
    let row = dir
        .user(&reference)
        .await?
        .ok_or_else(|| ScimError::internal("the new user vanished"))?;
    Ok(resource_response(
        StatusCode::CREATED,
        render_user(&row, dir.mapping(), &s.base(&headers)),
    ))
}

async fn put_user(
    State(s): State<ScimState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ScimError> {
    let dir = &s.inner.dir;
    let base = s.base(&headers);
    let resource = normalize(Kind::User, &json_body(body)?)?;
    dir.update_user(&id, |row| {
        check_if_match(&headers, &render_user(row, dir.mapping(), &base))?;
        user_write(dir.mapping(), resource, row.enabled)
    })
    .await?;
    let row = dir
        .user(&id)
        .await?
        .ok_or_else(|| ScimError::not_found(format!("no User {id}")))?;
    Ok(resource_response(
        StatusCode::OK,
        render_user(&row, dir.mapping(), &base),
    ))
}

async fn patch_user(
    State(s): State<ScimState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ScimError> {
    let dir = &s.inner.dir;
    let base = s.base(&headers);
    let ops = patch::parse_request(&json_body(body)?)?;
    dir.update_user(&id, |row| {
        let current = render_user(row, dir.mapping(), &base);
        check_if_match(&headers, &current)?;
        let mut resource = writable(current);
        patch::apply(&mut resource, Kind::User, &ops)?;
        user_write(dir.mapping(), resource, row.enabled)
    })
    .await?;
    let row = dir
        .user(&id)
        .await?
        .ok_or_else(|| ScimError::not_found(format!("no User {id}")))?;
    Ok(resource_response(
        StatusCode::OK,
        render_user(&row, dir.mapping(), &base),
    ))
}

async fn delete_user(
    State(s): State<ScimState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    let dir = &s.inner.dir;
    let base = s.base(&headers);
    dir.delete_user(&id, |row| {
        check_if_match(&headers, &render_user(row, dir.mapping(), &base))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn group_id(id: &str) -> Result<i64, ScimError> {
    id.parse::<i64>()
        .map_err(|_| ScimError::not_found(format!("no Group {id}")))
}

async fn get_group(
    State(s): State<ScimState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ScimError> {
    let pairs = query_pairs(query)?;
    let row = s
        .inner
        .dir
        .group(group_id(&id)?)
        .await?
        .ok_or_else(|| ScimError::not_found(format!("no Group {id}")))?;
    single(
        Kind::Group,
        &headers,
        render_group(&row, &s.base(&headers)),
        &pairs,
    )
}

async fn create_group(
    State(s): State<ScimState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ScimError> {
    let dir = &s.inner.dir;
    let resource = normalize(Kind::Group, &json_body(body)?)?;
    let id = dir.create_group(group_write(resource)?).await?;
    let row = dir
        .group(id)
        .await?
        .ok_or_else(|| ScimError::internal("the new group vanished"))?;
    Ok(resource_response(
        StatusCode::CREATED,
        render_group(&row, &s.base(&headers)),
    ))
}

async fn put_group(
    State(s): State<ScimState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ScimError> {
    let dir = &s.inner.dir;
    let base = s.base(&headers);
    let gid = group_id(&id)?;
    let resource = normalize(Kind::Group, &json_body(body)?)?;
    dir.update_group(gid, |row| {
        check_if_match(&headers, &render_group(row, &base))?;
        group_write(resource)
    })
    .await?;
    let row = dir
        .group(gid)
        .await?
        .ok_or_else(|| ScimError::not_found(format!("no Group {id}")))?;
    Ok(resource_response(StatusCode::OK, render_group(&row, &base)))
}

async fn patch_group(
    State(s): State<ScimState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ScimError> {
    let dir = &s.inner.dir;
    let base = s.base(&headers);
    let gid = group_id(&id)?;
    let ops = patch::parse_request(&json_body(body)?)?;
    dir.update_group(gid, |row| {
        let current = render_group(row, &base);
        check_if_match(&headers, &current)?;
        let mut resource = writable(current);
        patch::apply(&mut resource, Kind::Group, &ops)?;
        group_write(resource)
    })
    .await?;
    let row = dir
        .group(gid)
        .await?
        .ok_or_else(|| ScimError::not_found(format!("no Group {id}")))?;
    Ok(resource_response(StatusCode::OK, render_group(&row, &base)))
}

async fn delete_group(
    State(s): State<ScimState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    let base = s.base(&headers);
    s.inner
        .dir
        .delete_group(group_id(&id)?, |row| {
            check_if_match(&headers, &render_group(row, &base))
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
