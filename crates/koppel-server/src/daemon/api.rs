//! The admin API under `/api/v1`: one table, [`ROUTES`], says every route's method, path,
//! scope, parameters and answer; the router is built from it and so is the OpenAPI document
//! ([`super::openapi`]), so neither can leave a route out. Scopes are enforced by a layer
//! built from the same table.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Extension, Json, Router};
use koppel_store::{AuditFilter, JournalStatus, Store};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Caller;
use super::runner::{ApiError, ListQuery, Push, Work};
use super::{Readiness, Shared, db, push};
use crate::settings::TokenScope;

/// A query parameter of a route, for the OpenAPI document.
#[derive(Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    /// `string` or `integer`.
    pub kind: &'static str,
    pub description: &'static str,
}

/// One route of the API.
pub struct Route {
    pub method: &'static str,
    /// Relative to `/api/v1`; `{name}` is a path parameter.
    pub path: &'static str,
    /// `None`: no token needed.
    pub scope: Option<TokenScope>,
    pub summary: &'static str,
    pub description: &'static str,
    pub query: &'static [Param],
    /// The request body's schema (a name in the document's components), if it takes one.
    pub body: Option<&'static str>,
    /// The success status and its body's schema.
    pub ok: (u16, &'static str),
    handler: fn() -> MethodRouter<Arc<Shared>>,
}

const PAGE: [Param; 2] = [
    Param {
        name: "offset",
        kind: "integer",
        description: "How many to skip (default 0).",
    },
    Param {
        name: "limit",
        kind: "integer",
        description: "How many to return (default 50, at most 1000).",
    },
];

const WAIT: Param = Param {
    name: "wait",
    kind: "integer",
    description: "Seconds (at most 300) to wait for the run to finish: the answer is 200 with the finished run, or 202 if it is still queued or running.",
};

/// Every route of the API.
pub const ROUTES: &[Route] = &[
    Route {
        method: "GET",
        path: "/openapi.json",
        scope: None,
        summary: "This API's OpenAPI 3 document",
        description: "",
        query: &[],
        body: None,
        ok: (200, "Object"),
        handler: || get(openapi),
    },
    Route {
        method: "GET",
        path: "/status",
        scope: Some(TokenScope::Read),
        summary: "Overview: readiness, queue, the run in flight, the last run, schedules, held plans, target health",
        description: "",
        query: &[],
        body: None,
        ok: (200, "Status"),
        handler: || get(status),
    },
    Route {
        method: "GET",
        path: "/runs",
        scope: Some(TokenScope::Read),
        summary: "Runs, newest first",
        description: "",
        query: &[
            Param {
                name: "status",
                kind: "string",
                description: "queued, running, done or failed",
            },
            PAGE[0],
            PAGE[1],
        ],
        body: None,
        ok: (200, "RunList"),
        handler: || get(runs),
    },
    Route {
        method: "POST",
        path: "/runs",
        scope: Some(TokenScope::Admin),
        summary: "Webhook: queue a run for everyone, or for some persons",
        description: "An empty body or {} runs everyone (the sources are read again). {\"person\": ID} or {\"persons\": [IDs]} reads the sources again and plans and applies those persons only. A run asked for while an equal or wider one waits joins it.",
        query: &[WAIT],
        body: Some("RunRequest"),
        ok: (202, "Run"),
        handler: || post(run_create),
    },
    Route {
        method: "GET",
        path: "/runs/{id}",
        scope: Some(TokenScope::Read),
        summary: "One run and what it did",
        description: "",
        query: &[],
        body: None,
        ok: (200, "Run"),
        handler: || get(run_get),
    },
    Route {
        method: "GET",
        path: "/plans",
        scope: Some(TokenScope::Read),
        summary: "Plans, newest first, without their actions",
        description: "",
        query: &[
            Param {
                name: "status",
                kind: "string",
                description: "saved, held, applying, applied, approved or rejected",
            },
            PAGE[0],
            PAGE[1],
        ],
        body: None,
        ok: (200, "PlanList"),
        handler: || get(plans),
    },
    Route {
        method: "GET",
        path: "/plans/{id}",
        scope: Some(TokenScope::Read),
        summary: "One plan: its actions (paged), what a threshold withheld, and how far the journal got",
        description: "",
        query: &[
            Param {
                name: "offset",
                kind: "integer",
                description: "First action to return (default 0).",
            },
            Param {
                name: "limit",
                kind: "integer",
                description: "Actions to return (default 1000, at most 10000).",
            },
        ],
        body: None,
        ok: (200, "Plan"),
        handler: || get(plan_get),
    },
    Route {
        method: "POST",
        path: "/plans/{id}/approve",
        scope: Some(TokenScope::Admin),
        summary: "Approve a held plan: queue a run that carries out what was withheld",
        description: "",
        query: &[WAIT],
        body: None,
        ok: (202, "Run"),
        handler: || post(approve),
    },
    Route {
        method: "POST",
        path: "/plans/{id}/reject",
        scope: Some(TokenScope::Admin),
        summary: "Reject a held plan: what was withheld is dropped",
        description: "",
        query: &[WAIT],
        body: None,
        ok: (202, "Run"),
        handler: || post(reject),
    },
    Route {
        method: "GET",
        path: "/persons",
        scope: Some(TokenScope::Read),
        summary: "Persons of the daemon's current view of the sources (pushed records included)",
        description: "",
        query: &[
            Param {
                name: "q",
                kind: "string",
                description: "Text in the external id or the name (any case).",
            },
            PAGE[0],
            PAGE[1],
        ],
        body: None,
        ok: (200, "PersonList"),
        handler: || get(persons),
    },
    Route {
        method: "GET",
        path: "/persons/{id}",
        scope: Some(TokenScope::Read),
        summary: "One person: the record, whether it was pushed, the accounts koppel manages",
        description: "",
        query: &[],
        body: None,
        ok: (200, "Object"),
        handler: || get(person),
    },
    Route {
        method: "GET",
        path: "/persons/{id}/explain",
        scope: Some(TokenScope::Read),
        summary: "Why the person has each account and permission, and why not (koppel explain)",
        description: "",
        query: &[],
        body: None,
        ok: (200, "Object"),
        handler: || get(explain),
    },
    Route {
        method: "GET",
        path: "/targets",
        scope: Some(TokenScope::Read),
        summary: "The configured targets and how many accounts koppel manages in each",
        description: "",
        query: &[],
        body: None,
        ok: (200, "Object"),
        handler: || get(targets),
    },
    Route {
        method: "GET",
        path: "/targets/{target}/accounts",
        scope: Some(TokenScope::Read),
        summary: "The accounts koppel manages in one target, as it last wrote them",
        description: "",
        query: &[
            Param {
                name: "person",
                kind: "string",
                description: "Only this person's account.",
            },
            PAGE[0],
            PAGE[1],
        ],
        body: None,
        ok: (200, "Object"),
        handler: || get(accounts),
    },
    Route {
        method: "GET",
        path: "/health",
        scope: Some(TokenScope::Read),
        summary: "Connector health: one probe round trip to every target, bounded in time",
        description: "",
        query: &[],
        body: None,
        ok: (200, "HealthList"),
        handler: || get(health),
    },
    Route {
        method: "GET",
        path: "/audit",
        scope: Some(TokenScope::Read),
        summary: "The audit log, filtered",
        description: "Dates are RFC 3339 timestamps or a prefix of one (2026-11, 2026-11-23); both bounds inclusive.",
        query: &[
            Param {
                name: "person",
                kind: "string",
                description: "Only this person.",
            },
            Param {
                name: "target",
                kind: "string",
                description: "Only this target.",
            },
            Param {
                name: "from",
                kind: "string",
                description: "From this date or time.",
            },
            Param {
                name: "to",
                kind: "string",
                description: "Up to this date or time.",
            },
            Param {
                name: "limit",
                kind: "integer",
                description: "The most recent this many (default 100, at most 10000).",
            },
        ],
        body: None,
        ok: (200, "AuditList"),
        handler: || get(audit),
    },
    Route {
        method: "POST",
        path: "/push/persons",
        scope: Some(TokenScope::Push),
        summary: "HR push: one person record or an array of them (koppel's person JSON, contracts included)",
        description: "Each record replaces the person's record and stands in for the source's record of that person until the source's own record of that person changes. Persons whose record changed are planned and applied at once, alone.",
        query: &[WAIT],
        body: Some("PersonPush"),
        ok: (202, "PushResult"),
        handler: || post(push_persons),
    },
    Route {
        method: "POST",
        path: "/push/contracts",
        scope: Some(TokenScope::Push),
        summary: "HR push: one contract record or an array of them, each with \"person\", the external id it belongs to",
        description: "A contract replaces the person's contract with the same id, or is added.",
        query: &[WAIT],
        body: Some("ContractPush"),
        ok: (202, "PushResult"),
        handler: || post(push_contracts),
    },
];

/// The API's routes, each behind its scope, with the body limit.
pub fn router(shared: Arc<Shared>, max_body: usize) -> Router {
    let mut router = Router::new();
    for r in ROUTES {
        let mut method = (r.handler)();
        if let Some(scope) = r.scope {
            method = method.route_layer(middleware::from_fn_with_state(
                (shared.clone(), scope),
                require,
            ));
        }
        router = router.route(r.path, method);
    }
    router
        .fallback(|| async { ApiError::not_found("no such API route; see /api/v1/openapi.json") })
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(shared)
}

async fn require(
    State((shared, scope)): State<(Arc<Shared>, TokenScope)>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(auth) = shared.auth.as_ref() else {
        return ApiError::unavailable("the API has no tokens configured").into_response();
    };
    match auth.authorize(request.headers(), scope) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}

type ApiResult = Result<Response, ApiError>;

fn ok(value: Value) -> ApiResult {
    Ok(Json(value).into_response())
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::bad_request(format!("bad query: {}", e.body_text())))
}

fn path(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|Path(s)| s)
        .map_err(|e| ApiError::bad_request(format!("bad path: {}", e.body_text())))
}

fn db_error(e: sqlx::Error) -> ApiError {
    ApiError::internal("reading the store", e)
}

impl Shared {
    /// Reads of persons and accounts need the runner loaded.
    fn loaded(&self) -> Result<(), ApiError> {
        match &*self.ready.borrow() {
            Readiness::Ready => Ok(()),
            Readiness::Loading => Err(ApiError::unavailable(
                "koppel serve is still loading the sources and the known state",
            )),
            Readiness::Failed(_) => Err(ApiError::unavailable(
                "koppel serve could not load the sources or the known state; see its log",
            )),
        }
    }
}

async fn openapi() -> Response {
    Json(super::openapi::document()).into_response()
}

async fn status(State(s): State<Arc<Shared>>) -> ApiResult {
    let ready = match &*s.ready.borrow() {
        Readiness::Ready => "ready",
        Readiness::Loading => "loading",
        Readiness::Failed(_) => "failed",
    };
    let queued = s.queue.lock().await.ids();
    let running = s.running.lock().ok().and_then(|r| *r);
    let last = db::last_finished(s.store.pool()).await.map_err(db_error)?;
    let held = db::held_plans(s.store.pool()).await.map_err(db_error)?;
    let rows = s
        .schedule_rows
        .lock()
        .map(|r| r.clone())
        .unwrap_or_default();
    let schedules: Vec<Value> = s
        .schedules
        .iter()
        .zip(rows)
        .map(|(sc, row)| {
            json!({
                "source": sc.source,
                "cron": sc.expression,
                "last_fired": row.last_fired,
                "next_due": row.next_due,
            })
        })
        .collect();
    let health = s.health.lock().map(|h| h.clone()).unwrap_or_default();
    ok(json!({
        "ready": ready,
        "queued": queued,
        "running": running,
        "last_run": last,
        "schedules": schedules,
        "held_plans": held,
        "targets": health,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunsQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    offset: Option<usize>,
    #[serde(default)]
    limit: Option<usize>,
}

async fn runs(
    State(s): State<Arc<Shared>>,
    q: Result<Query<RunsQuery>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    if let Some(st) = &q.status
        && !["queued", "running", "done", "failed"].contains(&st.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "status {st:?}: expected queued, running, done or failed"
        )));
    }
    let page = ListQuery {
        offset: q.offset,
        limit: q.limit,
        ..ListQuery::default()
    };
    let list = db::runs(
        s.store.pool(),
        q.status.as_deref(),
        page.offset(),
        page.limit(),
    )
    .await
    .map_err(db_error)?;
    ok(json!({ "offset": page.offset(), "limit": page.limit(), "runs": list }))
}

async fn run_get(
    State(s): State<Arc<Shared>>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let id = path(id)?;
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("run id {id:?} is not a number")))?;
    match db::run(s.store.pool(), id).await.map_err(db_error)? {
        Some(r) => ok(r),
        None => Err(ApiError::not_found(format!("there is no run {id}"))),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WaitQuery {
    #[serde(default)]
    wait: Option<u64>,
}

/// The longest a caller may wait for a run.
const MAX_WAIT: u64 = 300;

/// Waits until run `id` finished, at most `seconds`, and never past shutdown.
async fn wait_for(s: &Shared, id: i64, seconds: u64) -> Result<(), ApiError> {
    if seconds == 0 {
        return Ok(());
    }
    let mut finished = s.finished.subscribe();
    let mut shutdown = s.shutdown.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds.min(MAX_WAIT));
    loop {
        let record = db::run(s.store.pool(), id).await.map_err(db_error)?;
        if record
            .as_ref()
            .is_none_or(|r| matches!(r["status"].as_str(), Some("done" | "failed")))
        {
            return Ok(());
        }
        tokio::select! {
            _ = finished.changed() => {}
            () = tokio::time::sleep_until(deadline) => return Ok(()),
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
        }
    }
}

/// A run's record: 200 when it finished, 202 while it is queued or running.
async fn run_response(s: &Shared, id: i64, wait: Option<u64>, extra: Option<Value>) -> ApiResult {
    wait_for(s, id, wait.unwrap_or(0)).await?;
    let record = db::run(s.store.pool(), id)
        .await
        .map_err(db_error)?
        .unwrap_or(Value::Null);
    let finished = matches!(record["status"].as_str(), Some("done" | "failed"));
    let body = match extra {
        Some(mut e) => {
            e["run"] = record;
            e
        }
        None => record,
    };
    let status = if finished {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(body)).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RunRequest {
    #[serde(default)]
    person: Option<String>,
    #[serde(default)]
    persons: Option<Vec<String>>,
}

fn accepting(s: &Shared) -> Result<(), ApiError> {
    if s.is_shutting_down() {
        return Err(ApiError::unavailable("koppel serve is shutting down"));
    }
    Ok(())
}

async fn run_create(
    State(s): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<WaitQuery>, QueryRejection>,
    body: Bytes,
) -> ApiResult {
    let q = query(q)?;
    accepting(&s)?;
    let request: RunRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RunRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!(
                "the body must be {{}}, {{\"person\": ID}} or {{\"persons\": [IDs]}}: {e}"
            ))
        })?
    };
    let mut ids: BTreeSet<String> = request.persons.unwrap_or_default().into_iter().collect();
    ids.extend(request.person);
    if ids.iter().any(|p| p.trim().is_empty()) {
        return Err(ApiError::bad_request("a person id is empty"));
    }
    let work = if ids.is_empty() {
        Work::everyone()
    } else {
        Work::Run {
            persons: Some(ids),
            refresh: true,
        }
    };
    let id = s
        .enqueue(work, &format!("webhook ({})", caller.label))
        .await?;
    run_response(&s, id, q.wait, None).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlansQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    offset: Option<usize>,
    #[serde(default)]
    limit: Option<usize>,
}

async fn plans(
    State(s): State<Arc<Shared>>,
    q: Result<Query<PlansQuery>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    if let Some(st) = &q.status
        && koppel_store::PlanStatus::parse(st).is_none()
    {
        return Err(ApiError::bad_request(format!(
            "status {st:?}: expected saved, held, applying, applied, approved or rejected"
        )));
    }
    let page = ListQuery {
        offset: q.offset,
        limit: q.limit,
        ..ListQuery::default()
    };
    let list = db::plans(
        s.store.pool(),
        q.status.as_deref(),
        page.offset(),
        page.limit(),
    )
    .await
    .map_err(db_error)?;
    ok(json!({ "offset": page.offset(), "limit": page.limit(), "plans": list }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PlanQuery {
    #[serde(default)]
    offset: Option<usize>,
    #[serde(default)]
    limit: Option<usize>,
}

async fn plan_get(
    State(s): State<Arc<Shared>>,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<PlanQuery>, QueryRejection>,
) -> ApiResult {
    let id = path(id)?;
    let q = query(q)?;
    let store_error = |e: koppel_store::StoreError| ApiError::internal("reading the plan", e);
    let Some(stored) = s.store.plan(&id).await.map_err(store_error)? else {
        return Err(ApiError::not_found(format!("there is no plan {id:?}")));
    };
    let journal = s.store.journal(&id).await.map_err(store_error)?;
    let count = |st: JournalStatus| journal.iter().filter(|e| e.status == st).count();
    let offset = q.offset.unwrap_or(0);
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let plan = &stored.plan;
    let actions: Vec<&koppel_core::Action> = plan.actions.iter().skip(offset).take(limit).collect();
    let counts: std::collections::BTreeMap<&str, std::collections::BTreeMap<&str, usize>> = plan
        .counts()
        .into_iter()
        .map(|(t, k)| (t, k.into_iter().map(|(k, n)| (k.as_str(), n)).collect()))
        .collect();
    ok(json!({
        "id": stored.id,
        "created_at": stored.created_at,
        "state_version": stored.state_version,
        "status": stored.status,
        "note": stored.note,
        "withheld": stored.withheld,
        "now": plan.now,
        "held": plan.held,
        "population": plan.population,
        "blocked": plan.blocked,
        "diagnostics": plan.diagnostics,
        "counts": counts,
        "journal": {
            "done": count(JournalStatus::Done),
            "failed": count(JournalStatus::Failed),
            "pending": count(JournalStatus::Pending),
        },
        "actions_total": plan.actions.len(),
        "offset": offset,
        "limit": limit,
        "actions": actions,
    }))
}

async fn settle(
    s: Arc<Shared>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<WaitQuery>, QueryRejection>,
    approve: bool,
) -> ApiResult {
    let id = path(id)?;
    let q = query(q)?;
    accepting(&s)?;
    let stored = s
        .store
        .plan(&id)
        .await
        .map_err(|e| ApiError::internal("reading the plan", e))?
        .ok_or_else(|| ApiError::not_found(format!("there is no plan {id:?}")))?;
    if stored.status != koppel_store::PlanStatus::Held {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "plan {id} is {}: only a held plan can be approved or rejected",
                stored.status
            ),
        ));
    }
    let (work, verb) = if approve {
        (Work::Approve { plan: id }, "approved")
    } else {
        (Work::Reject { plan: id }, "rejected")
    };
    let run = s
        .enqueue(work, &format!("{verb} through the API ({})", caller.label))
        .await?;
    run_response(&s, run, q.wait, None).await
}

async fn approve(
    State(s): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<WaitQuery>, QueryRejection>,
) -> ApiResult {
    settle(s, caller, id, q, true).await
}

async fn reject(
    State(s): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<WaitQuery>, QueryRejection>,
) -> ApiResult {
    settle(s, caller, id, q, false).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PersonsQuery {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    offset: Option<usize>,
    #[serde(default)]
    limit: Option<usize>,
}

async fn persons(
    State(s): State<Arc<Shared>>,
    q: Result<Query<PersonsQuery>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    s.loaded()?;
    let list = ListQuery {
        q: q.q,
        offset: q.offset,
        limit: q.limit,
        person: None,
    };
    ok(s.runner.persons(&list).await?)
}

async fn person(
    State(s): State<Arc<Shared>>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let id = path(id)?;
    s.loaded()?;
    ok(s.runner.person(&id).await?)
}

async fn explain(
    State(s): State<Arc<Shared>>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let id = path(id)?;
    s.loaded()?;
    ok(s.runner.explain(&id).await?)
}

async fn targets(State(s): State<Arc<Shared>>) -> ApiResult {
    s.loaded()?;
    ok(s.runner.targets().await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountsQuery {
    #[serde(default)]
    person: Option<String>,
    #[serde(default)]
    offset: Option<usize>,
    #[serde(default)]
    limit: Option<usize>,
}

async fn accounts(
    State(s): State<Arc<Shared>>,
    target: Result<Path<String>, PathRejection>,
    q: Result<Query<AccountsQuery>, QueryRejection>,
) -> ApiResult {
    let target = path(target)?;
    let q = query(q)?;
    s.loaded()?;
    let list = ListQuery {
        q: None,
        person: q.person,
        offset: q.offset,
        limit: q.limit,
    };
    ok(s.runner.accounts(&target, &list).await?)
}

async fn health(State(s): State<Arc<Shared>>) -> ApiResult {
    s.loaded()?;
    let list = s.runner.health().await;
    for h in &list {
        s.metrics.target_up(&h.target, h.ok);
    }
    if let Ok(mut cache) = s.health.lock() {
        cache.clone_from(&list);
    }
    let all_ok = list.iter().all(|h| h.ok);
    ok(json!({ "ok": all_ok, "targets": list }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    #[serde(default)]
    person: Option<String>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

async fn audit(
    State(s): State<Arc<Shared>>,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let filter = AuditFilter {
        person: q.person,
        target: q.target,
        from: q.from,
        to: q.to,
        limit: Some(q.limit.unwrap_or(100).clamp(1, 10_000)),
    };
    let entries = s
        .store
        .audit(&filter)
        .await
        .map_err(|e| ApiError::internal("reading the audit log", e))?;
    ok(json!({ "entries": entries }))
}

async fn take_push(
    s: Arc<Shared>,
    caller: Caller,
    wait: Option<u64>,
    push: Push,
    record: &str,
    n: usize,
) -> ApiResult {
    accepting(&s)?;
    s.loaded()?;
    let at = s.now();
    let pushed = s.runner.push(push, &at).await?;
    s.metrics.pushed(record, n);
    let body = json!({ "changed": pushed.changed, "unchanged": pushed.unchanged, "run": null });
    if pushed.changed.is_empty() {
        return Ok((StatusCode::OK, Json(body)).into_response());
    }
    let work = Work::Run {
        persons: Some(pushed.changed.iter().cloned().collect()),
        refresh: false,
    };
    let id = s.enqueue(work, &format!("push ({})", caller.label)).await?;
    run_response(&s, id, wait, Some(body)).await
}

async fn push_persons(
    State(s): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<WaitQuery>, QueryRejection>,
    body: Bytes,
) -> ApiResult {
    let q = query(q)?;
    let persons = push::parse_persons(&body)?;
    let n = persons.len();
    take_push(s, caller, q.wait, Push::Persons(persons), "person", n).await
}

async fn push_contracts(
    State(s): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<WaitQuery>, QueryRejection>,
    body: Bytes,
) -> ApiResult {
    let q = query(q)?;
    let contracts = push::parse_contracts(&body)?;
    let n = contracts.len();
    take_push(s, caller, q.wait, Push::Contracts(contracts), "contract", n).await
}
