//! A stand-in for Visma Connect's token endpoint and the Youforce IAM API, following their
//! documentation (community.visma.com "Kennisbank Youforce API", the Youforce API guides):
//!
//! * `POST /connect/token`, form `grant_type=client_credentials`, `client_id`,
//!   `client_secret`, `tenant_id` → `{access_token, expires_in, token_type, scope}`. A bad
//!   client or secret answers 400 `{"error":"invalid_client"}`, a tenant the client is not
//!   linked to 400 `{"error":"invalid_grant"}` (the documentation is silent on these
//!   bodies; they are OAuth2's, RFC 6749 §5.2, which Visma Connect speaks).
//! * `GET /iam/v1.0/{persons|employments|assignments|organizationUnits|jobProfiles}` with
//!   `take` (default 500; the docs give no maximum, this fixture refuses more than 1000, the
//!   most HelloID's connectors ask for): `{"value": [...], "nextLink": "..."}`, the link
//!   absolute on the production host `https://api.youforce.com` with an opaque `nextToken`,
//!   so a client must follow it by its query on its own base URL. Properties without a value
//!   are left out, as the API does.
//! * `GET /iam/v1.0/users(employeeId=…)` → `{employeeId, id, sourceId, identityId?}` or 404;
//!   `PATCH /iam/v1.0/users(employeeId=…)/identity` `{"id": "…"}` → 204, 404 for no user.
//! * A missing, unknown or expired bearer token: 401 with `WWW-Authenticate: Bearer`. A
//!   token without the endpoint's scope (`Youforce-IAM:Get_Basic` for GET,
//!   `Youforce-IAM:Update_Identity` for the PATCH): 403 (the body is undocumented; a short
//!   JSON `message`).
//! * The spike arrest: 100 calls per minute smoothed to one per 0.6 s; a call inside the
//!   interval, or past the minute's count, answers 429 with Apigee's spike-arrest fault body
//!   and a `Retry-After` in whole seconds (the docs only say "wait for the next time
//!   window"). The window is configurable so tests run fast.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::log::{Log, Logged};
use crate::tenant::VismaTenant;

pub const GET_BASIC: &str = "Youforce-IAM:Get_Basic";
pub const UPDATE_IDENTITY: &str = "Youforce-IAM:Update_Identity";

/// How the fixture behaves.
#[derive(Debug, Clone)]
pub struct VismaOptions {
    pub client_id: String,
    pub client_secret: String,
    pub tenant_id: String,
    /// Scopes granted in tokens.
    pub scopes: Vec<String>,
    /// Whether the token response names the scopes (Visma's does).
    pub scope_in_token: bool,
    pub token_lifetime: Duration,
    /// Calls allowed per `window`, smoothed to one per `window / rate_limit`.
    pub rate_limit: u32,
    pub window: Duration,
}

impl Default for VismaOptions {
    fn default() -> Self {
        VismaOptions {
            client_id: "koppel".into(),
            client_secret: "fixture-secret".into(),
            tenant_id: "1234567".into(),
            scopes: vec![GET_BASIC.into(), UPDATE_IDENTITY.into()],
            scope_in_token: true,
            token_lifetime: Duration::from_secs(3600),
            rate_limit: 100,
            window: Duration::from_secs(60),
        }
    }
}

/// Apigee-style spike arrest: one call per interval and at most `limit` per window.
struct SpikeArrest {
    last: Option<Instant>,
    recent: VecDeque<Instant>,
}

/// Counts kept by the fixture.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VismaStats {
    pub token_requests: u64,
    pub api_requests: u64,
    pub rate_limited: u64,
}

pub struct VismaState {
    pub options: Mutex<VismaOptions>,
    pub tenant: Mutex<VismaTenant>,
    tokens: Mutex<HashMap<String, (Instant, Vec<String>)>>,
    arrest: Mutex<SpikeArrest>,
    stats: Mutex<VismaStats>,
    pub log: Log,
    issued: Mutex<u64>,
}

impl VismaState {
    pub fn new(options: VismaOptions, tenant: VismaTenant) -> Arc<VismaState> {
        Arc::new(VismaState {
            options: Mutex::new(options),
            tenant: Mutex::new(tenant),
            tokens: Mutex::new(HashMap::new()),
            arrest: Mutex::new(SpikeArrest {
                last: None,
                recent: VecDeque::new(),
            }),
            stats: Mutex::new(VismaStats::default()),
            log: Log::default(),
            issued: Mutex::new(0),
        })
    }

    pub fn stats(&self) -> VismaStats {
        *lock(&self.stats)
    }

    /// Forgets every issued token (as if they were revoked).
    pub fn revoke_tokens(&self) {
        lock(&self.tokens).clear();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn router(state: Arc<VismaState>) -> Router {
    Router::new()
        .route("/connect/token", post(token))
        .route("/iam/v1.0/{resource}", get(list_or_user))
        .route(
            "/iam/v1.0/{resource}/identity",
            axum::routing::patch(patch_identity),
        )
        .route("/_fixture/stats", get(stats))
        .with_state(state)
}

async fn stats(State(s): State<Arc<VismaState>>) -> Response {
    let st = s.stats();
    axum::Json(json!({
        "token_requests": st.token_requests,
        "api_requests": st.api_requests,
        "rate_limited": st.rate_limited,
    }))
    .into_response()
}

fn oauth_error(code: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "error": code, "error_description": description })),
    )
        .into_response()
}

async fn token(
    State(s): State<Arc<VismaState>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> Response {
    lock(&s.stats).token_requests += 1;
    // The secret never goes into the log.
    let mut logged = form.clone();
    if logged.contains_key("client_secret") {
        logged.insert("client_secret".into(), "<redacted>".into());
    }
    s.log.push(Logged::new(
        "POST",
        "/connect/token",
        &headers,
        Some(json!(logged)),
    ));
    let o = lock(&s.options).clone();
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return oauth_error(
            "unsupported_grant_type",
            "grant_type must be client_credentials",
        );
    }
    if form.get("client_id") != Some(&o.client_id)
        || form.get("client_secret") != Some(&o.client_secret)
    {
        return oauth_error("invalid_client", "");
    }
    if form.get("tenant_id") != Some(&o.tenant_id) {
        return oauth_error("invalid_grant", "the client is not linked to this tenant");
    }
    let value = {
        let mut n = lock(&s.issued);
        *n += 1;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("fixture-token-{}-{}", *n, o.tenant_id))
    };
    lock(&s.tokens).insert(
        value.clone(),
        (Instant::now() + o.token_lifetime, o.scopes.clone()),
    );
    let mut body = json!({
        "access_token": value,
        "expires_in": o.token_lifetime.as_secs(),
        "token_type": "Bearer",
    });
    if o.scope_in_token {
        body["scope"] = json!(o.scopes.join(" "));
    }
    axum::Json(body).into_response()
}

/// Checks the bearer token, its scope and the spike arrest; `Err` is the refusal.
// A refusal is sent as it is, once per request: its size does not matter.
#[allow(clippy::result_large_err)]
fn gate(s: &VismaState, headers: &HeaderMap, scope: &str) -> Result<(), Response> {
    lock(&s.stats).api_requests += 1;
    let (limit, window) = {
        let o = lock(&s.options);
        (o.rate_limit.max(1), o.window)
    };
    {
        let interval = window / limit;
        let now = Instant::now();
        let mut a = lock(&s.arrest);
        while a
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            a.recent.pop_front();
        }
        let too_soon = a.last.is_some_and(|l| now.duration_since(l) < interval);
        let too_many = a.recent.len() >= limit as usize;
        if too_soon || too_many {
            let wait = if too_many {
                window.saturating_sub(
                    a.recent
                        .front()
                        .map_or(Duration::ZERO, |t| now.duration_since(*t)),
                )
            } else {
                interval.saturating_sub(a.last.map_or(Duration::ZERO, |l| now.duration_since(l)))
            };
            drop(a);
            lock(&s.stats).rate_limited += 1;
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            let mut r = (
                StatusCode::TOO_MANY_REQUESTS,
                axum::Json(json!({
                    "fault": {
                        "faultstring": format!("Spike arrest violation. Allowed rate : {limit}pm"),
                        "detail": { "errorcode": "policies.ratelimit.SpikeArrestViolation" }
                    }
                })),
            )
                .into_response();
            r.headers_mut()
                .insert("retry-after", secs.to_string().parse().expect("digits"));
            return Err(r);
        }
        a.last = Some(now);
        a.recent.push_back(now);
    }
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let unauthorized = || {
        let mut r = (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({ "message": "Unauthorized" })),
        )
            .into_response();
        r.headers_mut().insert(
            "www-authenticate",
            "Bearer error=\"invalid_token\"".parse().expect("ascii"),
        );
        r
    };
    let Some(token) = token else {
        return Err(unauthorized());
    };
    let scopes = match lock(&s.tokens).get(&token) {
        Some((expires, scopes)) if Instant::now() < *expires => scopes.clone(),
        _ => return Err(unauthorized()),
    };
    if !scopes.iter().any(|x| x == scope) {
        return Err((
            StatusCode::FORBIDDEN,
            axum::Json(json!({ "message": "Forbidden" })),
        )
            .into_response());
    }
    Ok(())
}

fn employee_of(resource: &str) -> Option<String> {
    resource
        .strip_prefix("users(employeeId=")?
        .strip_suffix(')')
        .map(str::to_owned)
}

async fn list_or_user(
    State(s): State<Arc<VismaState>>,
    Path(resource): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    s.log
        .push(Logged::new("GET", &uri.to_string(), &headers, None));
    if let Err(r) = gate(&s, &headers, GET_BASIC) {
        return r;
    }
    if let Some(employee) = employee_of(&resource) {
        return match lock(&s.tenant).users.get(&employee) {
            Some(u) => axum::Json(u.clone()).into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        };
    }
    let tenant = lock(&s.tenant);
    let records = match resource.as_str() {
        "persons" => &tenant.persons,
        "employments" => &tenant.employments,
        "assignments" => &tenant.assignments,
        "organizationUnits" => &tenant.organization_units,
        "jobProfiles" => &tenant.job_profiles,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let take = match query.get("take").map(|t| t.parse::<usize>()) {
        None => 500,
        Some(Ok(t)) if (1..=1000).contains(&t) => t,
        Some(_) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({ "message": "take must be a number from 1 to 1000" })),
            )
                .into_response();
        }
    };
    let offset = match query.get("nextToken") {
        None => 0,
        Some(t) => match base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(t)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.rsplit('|').next().and_then(|o| o.parse::<usize>().ok()))
        {
            Some(o) => o,
            None => {
                return (
                    StatusCode::BAD_REQUEST,
                    axum::Json(json!({ "message": "invalid nextToken" })),
                )
                    .into_response();
            }
        },
    };
    let page: Vec<Value> = records.iter().skip(offset).take(take).cloned().collect();
    let mut body = json!({ "value": page });
    let next = offset + take;
    if next < records.len() {
        // The documented bookmark is the last record's date stamp, validFrom and id.
        let last = &records[next - 1];
        let bookmark = format!(
            "2026-01-01T00:00:00.000Z|{}|{}|{next}",
            last.get("validFrom").and_then(Value::as_str).unwrap_or(""),
            last.get("id").and_then(Value::as_str).unwrap_or("")
        );
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bookmark);
        body["nextLink"] = json!(format!(
            "https://api.youforce.com/iam/v1.0/{resource}?take={take}&nextToken={token}"
        ));
    }
    axum::Json(body).into_response()
}

async fn patch_identity(
    State(s): State<Arc<VismaState>>,
    Path(resource): Path<String>,
    uri: Uri,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    s.log.push(Logged::new(
        method.as_str(),
        &uri.to_string(),
        &headers,
        json.clone(),
    ));
    if let Err(r) = gate(&s, &headers, UPDATE_IDENTITY) {
        return r;
    }
    let Some(employee) = employee_of(&resource) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(id) = json
        .as_ref()
        .and_then(|j| j.get("id"))
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
    else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "message": "the body needs a non-empty \"id\"" })),
        )
            .into_response();
    };
    match lock(&s.tenant).users.get_mut(&employee) {
        Some(Value::Object(u)) => {
            u.insert("identityId".into(), json!(id));
            StatusCode::NO_CONTENT.into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}
