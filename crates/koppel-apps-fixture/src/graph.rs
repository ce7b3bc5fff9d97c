//! A stand-in for the Microsoft identity platform's token endpoint and Microsoft Graph v1.0's
//! users and groups, following learn.microsoft.com (user and group resources, "Use query
//! parameters", "Advanced query capabilities", "JSON batching", "Paging", "Throttling" and
//! "service-specific throttling limits"):
//!
//! * `POST /{tenant}/oauth2/v2.0/token`, form `grant_type=client_credentials`, `client_id`,
//!   `client_secret`, `scope=https://graph.microsoft.com/.default` →
//!   `{token_type, expires_in, ext_expires_in, access_token}`; a wrong secret answers 401
//!   `invalid_client` (AADSTS7000215), another scope 400 `invalid_scope` (AADSTS1002012), an
//!   unknown tenant 400 `invalid_request` (AADSTS90002), as AAD does.
//! * `/v1.0/users`: GET with `$filter` (`prop eq 'value'`, quotes doubled), `$select`, `$top`
//!   (at most 999, default 100) and `@odata.nextLink` paging by `$skiptoken`; without
//!   `$select` only the default properties come back (so `accountEnabled`, `employeeId`,
//!   `department` need `$select`, as on Graph). `employeeId` and `officeLocation` filters are
//!   advanced queries: without `ConsistencyLevel: eventual` and `$count=true` they answer 400
//!   `Request_UnsupportedQuery`. POST needs `accountEnabled`, `displayName`, `mailNickname`,
//!   `userPrincipalName`, `passwordProfile.password`; a duplicate `userPrincipalName`, `mail`
//!   or `mailNickname` is 400 `Request_BadRequest` "Another object with the same value for
//!   property … already exists.". GET/PATCH/DELETE `/users/{id | userPrincipalName}`; DELETE
//!   is a soft delete (the user moves to deleted items and loses its memberships here).
//!   `PUT`/`DELETE /users/{id}/manager/$ref`, `$expand=manager($select=…)`,
//!   `GET /users/{id}/memberOf`.
//! * `/v1.0/groups`: GET with `$filter=displayName eq '…'`, POST (security groups),
//!   `POST /groups/{id}/members/$ref` with `{"@odata.id": ".../directoryObjects/{id}"}` (an
//!   existing member: 400 "One or more added object references already exist…"),
//!   `DELETE /groups/{id}/members/{id}/$ref` (not a member: 404), `GET /groups/{id}/members`.
//! * `POST /v1.0/$batch`: at most 20 requests (more: 400), each `{id, method, url, headers,
//!   body, dependsOn}` with a relative url; answers 200 with one `{id, status, headers, body}`
//!   per request; a request whose dependency did not succeed answers 424. Each request counts
//!   against throttling on its own, as Graph documents, and a throttled one answers 429 with
//!   its own `Retry-After`.
//! * Throttling, the identity and access service limits for an app+tenant pair: a write quota
//!   (3,000 writes per 150 s) and a resource-unit quota (8,000 per 10 s for a large tenant,
//!   every request costing 1), sliding windows; past either, 429 `TooManyRequests` with
//!   `Retry-After` in seconds. Both are options so tests can shrink them.
//! * Errors are Graph's `{"error": {"code", "message", "innerError": {"date", "request-id",
//!   "client-request-id"}}}`; a missing or unknown token is 401 `InvalidAuthenticationToken`.
//!
//! Not modelled: `$search`, `$orderby`, other filter operators, licences, dynamic membership
//! rules, restoring deleted items, eventual consistency delays.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value, json};

use koppel_hr_fixture::log::{Log, Logged};

pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
/// What Graph returns for a user without `$select`.
const DEFAULT_USER_PROPS: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
];
/// Filters that need the advanced query parameters here.
const ADVANCED_FILTERS: &[&str] = &["employeeId", "officeLocation"];
/// Filters the stand-in evaluates.
const USER_FILTERS: &[&str] = &[
    "id",
    "employeeId",
    "officeLocation",
    "userPrincipalName",
    "mail",
    "mailNickname",
    "displayName",
    "accountEnabled",
    "department",
    "jobTitle",
];
/// Properties unique in a tenant.
const UNIQUE_PROPS: &[&str] = &["userPrincipalName", "mail", "mailNickname"];

/// How the stand-in behaves.
#[derive(Debug, Clone)]
pub struct GraphOptions {
    pub tenant: String,
    pub client_id: String,
    pub client_secret: String,
    pub token_lifetime: Duration,
    /// Writes (POST, PATCH, PUT, DELETE) allowed per `write_window`.
    pub write_quota: u32,
    pub write_window: Duration,
    /// Resource units (1 per request) per `ru_window`.
    pub ru_quota: u32,
    pub ru_window: Duration,
}

impl Default for GraphOptions {
    fn default() -> Self {
        GraphOptions {
            tenant: "contoso.onmicrosoft.com".into(),
            client_id: "11111111-2222-3333-4444-555555555555".into(),
            client_secret: "fixture-secret".into(),
            token_lifetime: Duration::from_secs(3599),
            write_quota: 3000,
            write_window: Duration::from_secs(150),
            ru_quota: 8000,
            ru_window: Duration::from_secs(10),
        }
    }
}

/// Counts kept by the stand-in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GraphStats {
    pub token_requests: u64,
    /// HTTP requests to `/v1.0` (a `$batch` is one).
    pub http_requests: u64,
    /// Requests carried out, each request inside a batch counted.
    pub operations: u64,
    pub batches: u64,
    pub throttled: u64,
}

#[derive(Debug, Default)]
struct Directory {
    users: BTreeMap<String, Map<String, Value>>,
    deleted: BTreeMap<String, Map<String, Value>>,
    groups: BTreeMap<String, Map<String, Value>>,
    /// Group id → member ids.
    members: BTreeMap<String, BTreeSet<String>>,
    /// User id → manager id.
    managers: HashMap<String, String>,
    next_id: u64,
}

impl Directory {
    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.next_id)
    }

    /// A user by id or userPrincipalName (case-insensitive).
    fn user_id(&self, key: &str) -> Option<String> {
        if self.users.contains_key(key) {
            return Some(key.to_owned());
        }
        self.users
            .iter()
            .find(|(_, u)| {
                u.get("userPrincipalName")
                    .and_then(Value::as_str)
                    .is_some_and(|v| v.eq_ignore_ascii_case(key))
            })
            .map(|(id, _)| id.clone())
    }
}

struct Quota {
    writes: VecDeque<Instant>,
    units: VecDeque<Instant>,
}

pub struct GraphState {
    pub options: Mutex<GraphOptions>,
    dir: Mutex<Directory>,
    tokens: Mutex<HashMap<String, Instant>>,
    quota: Mutex<Quota>,
    stats: Mutex<GraphStats>,
    pub log: Log,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl GraphState {
    pub fn new(options: GraphOptions) -> Arc<GraphState> {
        Arc::new(GraphState {
            options: Mutex::new(options),
            dir: Mutex::new(Directory::default()),
            tokens: Mutex::new(HashMap::new()),
            quota: Mutex::new(Quota {
                writes: VecDeque::new(),
                units: VecDeque::new(),
            }),
            stats: Mutex::new(GraphStats::default()),
            log: Log::default(),
        })
    }

    pub fn stats(&self) -> GraphStats {
        *lock(&self.stats)
    }

    /// Forgets every issued token (as if they were revoked).
    pub fn revoke_tokens(&self) {
        lock(&self.tokens).clear();
    }

    /// Users in the tenant (not deleted).
    pub fn user_count(&self) -> usize {
        lock(&self.dir).users.len()
    }

    /// Soft-deleted users.
    pub fn deleted_count(&self) -> usize {
        lock(&self.dir).deleted.len()
    }

    /// One user as stored (every property), by id.
    pub fn user(&self, id: &str) -> Option<Value> {
        lock(&self.dir).users.get(id).cloned().map(Value::Object)
    }

    /// The manager id of user `id`.
    pub fn manager_of(&self, id: &str) -> Option<String> {
        lock(&self.dir).managers.get(id).cloned()
    }

    /// Member ids of the group named `display_name`.
    pub fn members_of(&self, display_name: &str) -> Option<BTreeSet<String>> {
        let dir = lock(&self.dir);
        let (gid, _) = dir
            .groups
            .iter()
            .find(|(_, g)| g.get("displayName").and_then(Value::as_str) == Some(display_name))?;
        Some(dir.members.get(gid).cloned().unwrap_or_default())
    }

    /// Adds a user as an administrator would (no quota, no log), returning its id.
    pub fn seed_user(&self, mut user: Map<String, Value>) -> String {
        let mut dir = lock(&self.dir);
        let id = dir.new_id();
        user.insert("id".into(), json!(id));
        dir.users.insert(id.clone(), user);
        id
    }

    /// Takes a request from the quotas; `Some(wait)` when it is throttled.
    fn throttle(&self, method: &Method) -> Option<Duration> {
        let o = lock(&self.options).clone();
        let now = Instant::now();
        let mut q = lock(&self.quota);
        while q.units.front().is_some_and(|t| now - *t >= o.ru_window) {
            q.units.pop_front();
        }
        while q.writes.front().is_some_and(|t| now - *t >= o.write_window) {
            q.writes.pop_front();
        }
        let write = *method != Method::GET;
        let mut wait = None::<Duration>;
        if q.units.len() >= o.ru_quota as usize
            && let Some(first) = q.units.front()
        {
            wait = Some(o.ru_window.saturating_sub(now - *first));
        }
        if write
            && q.writes.len() >= o.write_quota as usize
            && let Some(first) = q.writes.front()
        {
            let w = o.write_window.saturating_sub(now - *first);
            wait = Some(wait.map_or(w, |x| x.max(w)));
        }
        if wait.is_some() {
            lock(&self.stats).throttled += 1;
            return wait;
        }
        q.units.push_back(now);
        if write {
            q.writes.push_back(now);
        }
        None
    }
}

pub fn router(state: Arc<GraphState>) -> Router {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .fallback(graph)
        .with_state(state)
}

/// Graph's error body.
fn error(status: StatusCode, code: &str, message: &str) -> (StatusCode, Value) {
    (
        status,
        json!({"error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": "2026-01-01T00:00:00",
                "request-id": "00000000-0000-0000-0000-000000000000",
                "client-request-id": "00000000-0000-0000-0000-000000000000"
            }
        }}),
    )
}

fn not_found(key: &str) -> (StatusCode, Value) {
    error(
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
        &format!(
            "Resource '{key}' does not exist or one of its queried reference-property objects are not present."
        ),
    )
}

fn aad_error(status: StatusCode, error: &str, code: u32, text: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {text}"),
            "error_codes": [code],
            "timestamp": "2026-01-01 00:00:00Z",
            "trace_id": "00000000-0000-0000-0000-000000000000",
            "correlation_id": "00000000-0000-0000-0000-000000000000"
        })),
    )
        .into_response()
}

async fn token(
    State(state): State<Arc<GraphState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    lock(&state.stats).token_requests += 1;
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let mut logged = form.clone();
    if logged.contains_key("client_secret") {
        logged.insert("client_secret".into(), "(redacted)".into());
    }
    state.log.push(Logged::new(
        "POST",
        &format!("/{tenant}/oauth2/v2.0/token"),
        &headers,
        Some(json!(logged)),
    ));
    let o = lock(&state.options).clone();
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if tenant != o.tenant {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant}' not found."),
        );
    }
    if field("grant_type") != "client_credentials" {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    if field("client_id") != o.client_id {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            "Application was not found in the directory.",
        );
    }
    if field("client_secret") != o.client_secret {
        return aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            "Invalid client secret provided.",
        );
    }
    if field("scope") != GRAPH_SCOPE {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.",
        );
    }
    let token = {
        let mut tokens = lock(&state.tokens);
        let t = format!("eyJ0eXAiOiJKV1QifQ.fixture.{}", tokens.len() + 1);
        tokens.insert(t.clone(), Instant::now() + o.token_lifetime);
        t
    };
    axum::Json(json!({
        "token_type": "Bearer",
        "expires_in": o.token_lifetime.as_secs(),
        "ext_expires_in": o.token_lifetime.as_secs(),
        "access_token": token
    }))
    .into_response()
}

/// `body` with every `password` value replaced, so the log never holds one.
fn redacted(body: Value) -> Value {
    match body {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    if k == "password" {
                        (k, json!("(redacted)"))
                    } else {
                        (k, redacted(v))
                    }
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(redacted).collect()),
        v => v,
    }
}

/// One Graph request, from HTTP or from inside a batch.
struct Req<'a> {
    method: Method,
    /// Path below `/v1.0`, decoded segments.
    segments: Vec<String>,
    query: HashMap<String, String>,
    eventual: bool,
    body: Option<Value>,
    /// `http://host/v1.0` for absolute links.
    base: &'a str,
}

struct Reply {
    status: StatusCode,
    retry_after: Option<u64>,
    body: Option<Value>,
}

impl From<(StatusCode, Value)> for Reply {
    fn from((status, body): (StatusCode, Value)) -> Reply {
        Reply {
            status,
            retry_after: None,
            body: Some(body),
        }
    }
}

fn ok(body: Value) -> Reply {
    Reply {
        status: StatusCode::OK,
        retry_after: None,
        body: Some(body),
    }
}

fn no_content() -> Reply {
    Reply {
        status: StatusCode::NO_CONTENT,
        retry_after: None,
        body: None,
    }
}

fn authorized(state: &GraphState, headers: &HeaderMap) -> bool {
    let Some(token) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    lock(&state.tokens)
        .get(token)
        .is_some_and(|until| Instant::now() < *until)
}

fn split_uri(path_and_query: &str) -> (Vec<String>, HashMap<String, String>) {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let segments = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        })
        .collect();
    let query = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    (segments, query)
}

async fn graph(
    State(state): State<Arc<GraphState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body_json: Option<Value> = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => Some(v),
            Err(e) => {
                let (s, b) = error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    &format!("Unable to read JSON request payload: {e}"),
                );
                return (s, axum::Json(b)).into_response();
            }
        }
    };
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    state.log.push(Logged::new(
        method.as_str(),
        pq,
        &headers,
        body_json.clone().map(redacted),
    ));
    lock(&state.stats).http_requests += 1;
    if !authorized(&state, &headers) {
        let (s, b) = error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token is empty or invalid.",
        );
        return (
            s,
            [("www-authenticate", "Bearer realm=\"\"")],
            axum::Json(b),
        )
            .into_response();
    }
    let Some(rest) = pq.strip_prefix("/v1.0") else {
        let (s, b) = error(
            StatusCode::NOT_FOUND,
            "BadRequest",
            "Invalid version: only v1.0 is served here.",
        );
        return (s, axum::Json(b)).into_response();
    };
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("graph.microsoft.com");
    let base = format!("http://{host}/v1.0");
    let eventual = headers
        .get("consistencylevel")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("eventual"));
    let (segments, query) = split_uri(rest);
    let reply = if method == Method::POST && segments == ["$batch"] {
        batch(&state, body_json, &base)
    } else {
        let req = Req {
            method,
            segments,
            query,
            eventual,
            body: body_json,
            base: &base,
        };
        dispatch(&state, &req)
    };
    let mut response = match reply.body {
        Some(b) => (reply.status, axum::Json(b)).into_response(),
        None => reply.status.into_response(),
    };
    if let Some(s) = reply.retry_after
        && let Ok(v) = s.to_string().parse()
    {
        response.headers_mut().insert("retry-after", v);
    }
    response
}

fn batch(state: &GraphState, body: Option<Value>, base: &str) -> Reply {
    lock(&state.stats).batches += 1;
    let Some(requests) = body
        .as_ref()
        .and_then(|b| b.get("requests"))
        .and_then(Value::as_array)
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Invalid batch payload format.",
        )
        .into();
    };
    if requests.len() > 20 {
        return error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Limit of 20 requests exceeded.",
        )
        .into();
    }
    let mut statuses: HashMap<String, u16> = HashMap::new();
    let mut responses = Vec::new();
    for r in requests {
        let id = r.get("id").and_then(Value::as_str).unwrap_or("").to_owned();
        let method = r
            .get("method")
            .and_then(Value::as_str)
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok());
        let url = r.get("url").and_then(Value::as_str);
        let (Some(method), Some(url)) = (method, url) else {
            return error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("Request '{id}' has no method or url."),
            )
            .into();
        };
        let depends: Vec<String> = r
            .get("dependsOn")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let reply = if depends
            .iter()
            .any(|d| statuses.get(d).is_none_or(|s| !(200..300).contains(s)))
        {
            error(
                StatusCode::FAILED_DEPENDENCY,
                "BadRequest",
                "Failed dependency.",
            )
            .into()
        } else {
            let (segments, query) = split_uri(url.trim_start_matches("/v1.0"));
            let eventual = r
                .pointer("/headers/ConsistencyLevel")
                .or_else(|| r.pointer("/headers/consistencylevel"))
                .and_then(Value::as_str)
                .is_some_and(|v| v.eq_ignore_ascii_case("eventual"));
            dispatch(
                state,
                &Req {
                    method,
                    segments,
                    query,
                    eventual,
                    body: r.get("body").cloned(),
                    base,
                },
            )
        };
        statuses.insert(id.clone(), reply.status.as_u16());
        let mut headers = Map::new();
        if reply.body.is_some() {
            headers.insert("Content-Type".into(), json!("application/json"));
        }
        if let Some(s) = reply.retry_after {
            headers.insert("Retry-After".into(), json!(s.to_string()));
        }
        let mut out = json!({"id": id, "status": reply.status.as_u16(), "headers": headers});
        if let Some(b) = reply.body {
            out["body"] = b;
        }
        responses.push(out);
    }
    ok(json!({ "responses": responses }))
}

fn dispatch(state: &GraphState, req: &Req<'_>) -> Reply {
    if let Some(wait) = state.throttle(&req.method) {
        let (s, b) = error(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Too many requests. Please retry after the time given in Retry-After.",
        );
        return Reply {
            status: s,
            retry_after: Some(wait.as_secs_f64().ceil().max(1.0) as u64),
            body: Some(b),
        };
    }
    lock(&state.stats).operations += 1;
    let seg: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let m = &req.method;
    let mut dir = lock(&state.dir);
    match (m.as_str(), seg.as_slice()) {
        ("GET", ["users"]) => list_users(&dir, req),
        ("POST", ["users"]) => create_user(&mut dir, req),
        ("GET", ["users", key]) => match dir.user_id(key) {
            Some(id) => ok(user_view(&dir, &id, req)),
            None => not_found(key).into(),
        },
        ("PATCH", ["users", key]) => match dir.user_id(key) {
            Some(id) => patch_user(&mut dir, &id, req),
            None => not_found(key).into(),
        },
        ("DELETE", ["users", key]) => match dir.user_id(key) {
            Some(id) => {
                if let Some(u) = dir.users.remove(&id) {
                    dir.deleted.insert(id.clone(), u);
                }
                for members in dir.members.values_mut() {
                    members.remove(&id);
                }
                dir.managers.remove(&id);
                dir.managers.retain(|_, m| *m != id);
                no_content()
            }
            None => not_found(key).into(),
        },
        ("PUT", ["users", key, "manager", "$ref"]) => {
            let Some(id) = dir.user_id(key) else {
                return not_found(key).into();
            };
            let Some(target) = odata_id(req) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Request_BadRequest",
                    "Invalid request body: @odata.id is required.",
                )
                .into();
            };
            let Some(mid) = dir.user_id(&target) else {
                return not_found(&target).into();
            };
            dir.managers.insert(id, mid);
            no_content()
        }
        ("DELETE", ["users", key, "manager", "$ref"]) => {
            let Some(id) = dir.user_id(key) else {
                return not_found(key).into();
            };
            match dir.managers.remove(&id) {
                Some(_) => no_content(),
                None => not_found(key).into(),
            }
        }
        ("GET", ["users", key, "memberOf"]) => {
            let Some(id) = dir.user_id(key) else {
                return not_found(key).into();
            };
            let groups: Vec<Value> = dir
                .members
                .iter()
                .filter(|(_, m)| m.contains(&id))
                .filter_map(|(gid, _)| dir.groups.get(gid))
                .map(|g| {
                    let mut v = select(g, req.query.get("$select"), None);
                    v.insert("@odata.type".into(), json!("#microsoft.graph.group"));
                    Value::Object(v)
                })
                .collect();
            page(groups, req, &format!("users/{key}/memberOf"))
        }
        ("GET", ["groups"]) => {
            let filter = match parse_filter(
                req.query.get("$filter"),
                &["displayName", "mailNickname", "id"],
                &[],
                req,
            ) {
                Ok(f) => f,
                Err(e) => return e.into(),
            };
            let groups: Vec<Value> = dir
                .groups
                .values()
                .filter(|g| filter.as_ref().is_none_or(|f| f.matches(g)))
                .map(|g| Value::Object(select(g, req.query.get("$select"), None)))
                .collect();
            page(groups, req, "groups")
        }
        ("POST", ["groups"]) => create_group(&mut dir, req),
        ("POST", ["groups", gid, "members", "$ref"]) => {
            if !dir.groups.contains_key(*gid) {
                return not_found(gid).into();
            }
            let Some(target) = odata_id(req) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Request_BadRequest",
                    "Invalid request body: @odata.id is required.",
                )
                .into();
            };
            if !dir.users.contains_key(&target) {
                return not_found(&target).into();
            }
            let members = dir.members.entry((*gid).to_owned()).or_default();
            if !members.insert(target) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Request_BadRequest",
                    "One or more added object references already exist for the following modified properties: 'members'.",
                )
                .into();
            }
            no_content()
        }
        ("DELETE", ["groups", gid, "members", uid, "$ref"]) => {
            if !dir.groups.contains_key(*gid) {
                return not_found(gid).into();
            }
            if dir.members.get_mut(*gid).is_some_and(|m| m.remove(*uid)) {
                no_content()
            } else {
                not_found(uid).into()
            }
        }
        ("GET", ["groups", gid, "members"]) => {
            if !dir.groups.contains_key(*gid) {
                return not_found(gid).into();
            }
            let members: Vec<Value> = dir
                .members
                .get(*gid)
                .into_iter()
                .flatten()
                .filter_map(|id| dir.users.get(id))
                .map(|u| {
                    let mut v = select(u, req.query.get("$select"), Some(DEFAULT_USER_PROPS));
                    v.insert("@odata.type".into(), json!("#microsoft.graph.user"));
                    Value::Object(v)
                })
                .collect();
            page(members, req, &format!("groups/{gid}/members"))
        }
        _ => error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!(
                "Resource not found for the segment '{}'.",
                seg.last().copied().unwrap_or("")
            ),
        )
        .into(),
    }
}

/// The id at the end of a body's `@odata.id` (`https://graph.microsoft.com/v1.0/directoryObjects/{id}`).
fn odata_id(req: &Req<'_>) -> Option<String> {
    let link = req.body.as_ref()?.get("@odata.id")?.as_str()?;
    let last = link.rsplit('/').next()?;
    (!last.is_empty()).then(|| last.to_owned())
}

/// `prop eq 'value'`.
struct Filter {
    prop: String,
    value: Value,
}

impl Filter {
    fn matches(&self, object: &Map<String, Value>) -> bool {
        match (object.get(&self.prop), &self.value) {
            (Some(Value::String(a)), Value::String(b)) => {
                a.eq_ignore_ascii_case(b) || (!a.is_ascii() && a.to_lowercase() == b.to_lowercase())
            }
            (Some(a), b) => a == b,
            (None, Value::Null) => true,
            (None, _) => false,
        }
    }
}

fn unsupported(message: &str) -> (StatusCode, Value) {
    error(StatusCode::BAD_REQUEST, "Request_UnsupportedQuery", message)
}

fn parse_filter(
    filter: Option<&String>,
    allowed: &[&str],
    advanced: &[&str],
    req: &Req<'_>,
) -> Result<Option<Filter>, (StatusCode, Value)> {
    let Some(f) = filter else { return Ok(None) };
    let f = f.trim();
    let Some((prop, rest)) = f.split_once(" eq ") else {
        return Err(unsupported(&format!(
            "Unsupported or invalid query filter clause specified: '{f}'."
        )));
    };
    let prop = prop.trim();
    if !allowed.contains(&prop) {
        return Err(unsupported(&format!(
            "Unsupported or invalid query filter clause specified for property '{prop}' of resource 'User'."
        )));
    }
    if advanced.contains(&prop)
        && !(req.eventual && req.query.get("$count").is_some_and(|c| c == "true"))
    {
        return Err(unsupported(&format!(
            "Unsupported or invalid query filter clause specified for property '{prop}' of resource 'User'."
        )));
    }
    let rest = rest.trim();
    let value = if let Some(inner) = rest.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        // Inside a literal a quote is doubled; a lone quote ends it early.
        if inner.replace("''", "").contains('\'') {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("Invalid filter clause: syntax error in '{f}'."),
            ));
        }
        json!(inner.replace("''", "'"))
    } else if rest == "true" || rest == "false" {
        json!(rest == "true")
    } else if rest == "null" {
        Value::Null
    } else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("Invalid filter clause: syntax error in '{f}'."),
        ));
    };
    Ok(Some(Filter {
        prop: prop.to_owned(),
        value,
    }))
}

fn select(
    object: &Map<String, Value>,
    select: Option<&String>,
    default: Option<&[&str]>,
) -> Map<String, Value> {
    let wanted: Vec<&str> = match select {
        Some(s) => s.split(',').map(str::trim).chain(["id"]).collect(),
        None => match default {
            Some(d) => d.to_vec(),
            None => return object.clone(),
        },
    };
    wanted
        .iter()
        .map(|k| {
            (
                (*k).to_owned(),
                object.get(*k).cloned().unwrap_or(Value::Null),
            )
        })
        .collect()
}

fn user_view(dir: &Directory, id: &str, req: &Req<'_>) -> Value {
    let Some(user) = dir.users.get(id) else {
        return Value::Null;
    };
    let mut v = select(user, req.query.get("$select"), Some(DEFAULT_USER_PROPS));
    if let Some(expand) = req.query.get("$expand")
        && expand.starts_with("manager")
    {
        let inner = expand
            .strip_prefix("manager($select=")
            .and_then(|s| s.strip_suffix(')'))
            .map(str::to_owned);
        if let Some(m) = dir.managers.get(id).and_then(|m| dir.users.get(m)) {
            let mut mv = select(m, inner.as_ref(), Some(DEFAULT_USER_PROPS));
            mv.insert("@odata.type".into(), json!("#microsoft.graph.user"));
            v.insert("manager".into(), Value::Object(mv));
        }
    }
    Value::Object(v)
}

/// One page of `items` by `$top` and `$skiptoken`, with `@odata.nextLink` when more follow.
fn page(items: Vec<Value>, req: &Req<'_>, path: &str) -> Reply {
    let top: usize = match req.query.get("$top").map(|t| t.parse::<usize>()) {
        None => 100,
        Some(Ok(t)) if (1..=999).contains(&t) => t,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "Request_BadRequest",
                "Invalid page size specified: '$top' must be between 1 and 999.",
            )
            .into();
        }
    };
    let skip: usize = match req.query.get("$skiptoken").map(|t| {
        t.strip_prefix("X'")
            .map(|s| s.trim_end_matches('\'').parse::<usize>())
    }) {
        None => 0,
        Some(Some(Ok(s))) => s,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "Directory_InvalidSkipToken",
                "The specified page token value has expired or is invalid.",
            )
            .into();
        }
    };
    let total = items.len();
    let value: Vec<Value> = items.into_iter().skip(skip).take(top).collect();
    let mut out = json!({
        "@odata.context": format!("{}/$metadata#{}", req.base, path),
        "value": value
    });
    if req.query.get("$count").is_some_and(|c| c == "true") {
        out["@odata.count"] = json!(total);
    }
    if skip + top < total {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &req.query {
            if k != "$skiptoken" {
                q.append_pair(k, v);
            }
        }
        q.append_pair("$skiptoken", &format!("X'{}'", skip + top));
        out["@odata.nextLink"] = json!(format!("{}/{}?{}", req.base, path, q.finish()));
    }
    ok(out)
}

fn list_users(dir: &Directory, req: &Req<'_>) -> Reply {
    let filter = match parse_filter(
        req.query.get("$filter"),
        USER_FILTERS,
        ADVANCED_FILTERS,
        req,
    ) {
        Ok(f) => f,
        Err(e) => return e.into(),
    };
    let users: Vec<Value> = dir
        .users
        .values()
        .filter(|u| filter.as_ref().is_none_or(|f| f.matches(u)))
        .filter_map(|u| u.get("id").and_then(Value::as_str))
        .map(|id| user_view(dir, id, req))
        .collect();
    page(users, req, "users")
}

fn bad(message: &str) -> Reply {
    error(StatusCode::BAD_REQUEST, "Request_BadRequest", message).into()
}

/// A property another user already has (compared case-insensitively).
fn clash(dir: &Directory, id: Option<&str>, props: &Map<String, Value>) -> Option<String> {
    for p in UNIQUE_PROPS {
        let Some(Value::String(v)) = props.get(*p) else {
            continue;
        };
        let taken = dir.users.iter().any(|(uid, u)| {
            Some(uid.as_str()) != id
                && u.get(*p)
                    .and_then(Value::as_str)
                    .is_some_and(|x| x.eq_ignore_ascii_case(v))
        });
        if taken {
            return Some((*p).to_owned());
        }
    }
    None
}

fn check_props(props: &Map<String, Value>) -> Option<String> {
    for (k, v) in props {
        if k == "manager" || k == "id" || k.starts_with('@') {
            return Some(format!("Property '{k}' is read-only and cannot be set."));
        }
        if k == "accountEnabled" && !v.is_boolean() {
            return Some(
                "Invalid value specified for property 'accountEnabled' of resource 'User'.".into(),
            );
        }
    }
    None
}

fn create_user(dir: &mut Directory, req: &Req<'_>) -> Reply {
    let Some(Value::Object(props)) = req.body.clone() else {
        return bad("Invalid request body.");
    };
    if let Some(m) = check_props(&props) {
        return bad(&m);
    }
    for p in [
        "accountEnabled",
        "displayName",
        "mailNickname",
        "userPrincipalName",
    ] {
        if props.get(p).is_none_or(Value::is_null) {
            return bad(&format!(
                "Property '{p}' is required when creating the object."
            ));
        }
    }
    if props
        .get("passwordProfile")
        .and_then(|p| p.get("password"))
        .and_then(Value::as_str)
        .is_none_or(|p| p.len() < 8)
    {
        return bad(
            "Property 'passwordProfile' is required when creating the object, with a password of at least 8 characters.",
        );
    }
    if let Some(p) = clash(dir, None, &props) {
        return bad(&format!(
            "Another object with the same value for property {p} already exists."
        ));
    }
    let id = dir.new_id();
    let mut user: Map<String, Value> = props
        .into_iter()
        .filter(|(k, v)| k != "passwordProfile" && !v.is_null())
        .collect();
    user.insert("id".into(), json!(id));
    dir.users.insert(id.clone(), user.clone());
    let mut body = user;
    body.insert(
        "@odata.context".into(),
        json!(format!("{}/$metadata#users/$entity", req.base)),
    );
    Reply {
        status: StatusCode::CREATED,
        retry_after: None,
        body: Some(Value::Object(body)),
    }
}

fn patch_user(dir: &mut Directory, id: &str, req: &Req<'_>) -> Reply {
    let Some(Value::Object(props)) = req.body.clone() else {
        return bad("Invalid request body.");
    };
    if let Some(m) = check_props(&props) {
        return bad(&m);
    }
    if let Some(p) = clash(dir, Some(id), &props) {
        return bad(&format!(
            "Another object with the same value for property {p} already exists."
        ));
    }
    for p in [
        "displayName",
        "mailNickname",
        "userPrincipalName",
        "accountEnabled",
    ] {
        if props.get(p).is_some_and(Value::is_null) {
            return bad(&format!("Property '{p}' cannot be cleared."));
        }
    }
    let Some(user) = dir.users.get_mut(id) else {
        return not_found(id).into();
    };
    for (k, v) in props {
        if k == "passwordProfile" {
            continue;
        }
        if v.is_null() {
            user.remove(&k);
        } else {
            user.insert(k, v);
        }
    }
    no_content()
}

fn create_group(dir: &mut Directory, req: &Req<'_>) -> Reply {
    let Some(Value::Object(props)) = req.body.clone() else {
        return bad("Invalid request body.");
    };
    for p in [
        "displayName",
        "mailEnabled",
        "mailNickname",
        "securityEnabled",
    ] {
        if props.get(p).is_none_or(Value::is_null) {
            return bad(&format!(
                "Property '{p}' is required when creating the object."
            ));
        }
    }
    let id = dir.new_id();
    let mut group = props;
    group.insert("id".into(), json!(id));
    dir.groups.insert(id.clone(), group.clone());
    dir.members.insert(id, BTreeSet::new());
    Reply {
        status: StatusCode::CREATED,
        retry_after: None,
        body: Some(Value::Object(group)),
    }
}
