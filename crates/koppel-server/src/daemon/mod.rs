//! The daemon of `koppel serve`: a worker that carries out runs one at a time from a
//! coalescing queue, a scheduler that queues runs from the sources' cron expressions, the
//! admin API (webhook, HR push, runs, plans, persons, accounts, audit, health), `/healthz`,
//! `/readyz` and `/metrics`, and the SCIM endpoint, on one listener.
//!
//! The engine is behind [`Runner`], which the binary implements: this crate never depends
//! on the binary. Run records, schedule state and pushed records live in the store file
//! ([`db`]); on SIGTERM the run in flight finishes, or after the grace period is cut off at
//! its next step (the journal makes it resumable) and goes back to the queue, like every
//! queued run, for the next start.

pub mod api;
pub mod auth;
pub mod db;
pub mod metrics;
pub mod openapi;
pub mod push;
pub mod queue;
pub mod runner;
pub mod schedule;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Local};
use koppel_store::SqliteStore;
use tokio::sync::{Notify, watch};

pub use runner::{ApiError, Job, ListQuery, Push, Pushed, RunSummary, Runner, TargetHealth, Work};
pub use schedule::Schedule;

use crate::ServeError;
use crate::settings::ServeSettings;
use auth::ApiAuth;
use metrics::Metrics;
use queue::Queue;

/// The wall clock, read by the binary (the only place allowed to) and passed in.
pub type Clock = Arc<dyn Fn() -> DateTime<Local> + Send + Sync>;

/// Everything `koppel serve` runs.
pub struct Daemon {
    pub listen: SocketAddr,
    pub store: SqliteStore,
    pub settings: ServeSettings,
    pub schedules: Vec<Schedule>,
    pub runner: Arc<dyn Runner>,
    pub clock: Clock,
}

/// Whether the runner has loaded what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Loading,
    Ready,
    Failed(String),
}

/// What the routes, the worker and the scheduler share.
pub struct Shared {
    pub(crate) store: SqliteStore,
    pub(crate) runner: Arc<dyn Runner>,
    pub(crate) queue: tokio::sync::Mutex<Queue>,
    wake: Notify,
    /// Bumped whenever a run finishes, for callers waiting on one.
    pub(crate) finished: watch::Sender<u64>,
    pub(crate) metrics: Metrics,
    pub(crate) clock: Clock,
    pub(crate) ready: watch::Sender<Readiness>,
    pub(crate) auth: Option<ApiAuth>,
    pub(crate) schedules: Vec<Schedule>,
    pub(crate) schedule_rows: std::sync::Mutex<Vec<db::ScheduleRow>>,
    pub(crate) running: std::sync::Mutex<Option<i64>>,
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) health: std::sync::Mutex<Vec<TargetHealth>>,
}

impl Shared {
    pub(crate) fn now(&self) -> String {
        schedule::format_time(&(self.clock)())
    }

    /// Queues `work`, or lets it join a queued run that covers it; the run's id.
    pub(crate) async fn enqueue(&self, work: Work, trigger: &str) -> Result<i64, ApiError> {
        let mut queue = self.queue.lock().await;
        if let Some(joined) = queue.join(&work) {
            let (id, grown, requests) = (joined.id, joined.work.clone(), joined.requests);
            db::update_queued(self.store.pool(), id, &grown, requests)
                .await
                .map_err(|e| ApiError::internal("recording the run", e))?;
            tracing::debug!(run = id, %trigger, "joined a queued run");
            return Ok(id);
        }
        let id = db::insert_run(self.store.pool(), &work, trigger, &self.now())
            .await
            .map_err(|e| ApiError::internal("recording the run", e))?;
        queue.push(id, work, 1);
        self.metrics.set_queue_depth(queue.len());
        drop(queue);
        tracing::info!(run = id, %trigger, "run queued");
        self.wake.notify_one();
        Ok(id)
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Held plans, for the metrics and the overview.
    pub(crate) async fn refresh_held(&self) {
        match db::held_plans(self.store.pool()).await {
            Ok(n) => self.metrics.set_held_plans(n),
            Err(e) => tracing::warn!(error = %e, "counting held plans"),
        }
    }
}

/// Serves until SIGTERM or Ctrl-C: binds, loads, runs the worker and the scheduler.
pub async fn run(d: Daemon) -> Result<(), ServeError> {
    db::migrate(d.store.pool())
        .await
        .map_err(ServeError::Store)?;
    let auth = d.settings.api.as_ref().map(ApiAuth::new).transpose()?;
    let scim = match &d.settings.scim {
        Some(s) => Some(s.state(d.store.pool().clone()).await?),
        None => None,
    };
    let max_body = d.settings.api.as_ref().map(|a| a.max_body_bytes);
    let listener = tokio::net::TcpListener::bind(d.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: d.listen,
            source,
        })?;
    let shared = Arc::new(Shared {
        store: d.store.clone(),
        runner: d.runner,
        queue: tokio::sync::Mutex::new(Queue::default()),
        wake: Notify::new(),
        finished: watch::Sender::new(0),
        metrics: Metrics::new(),
        clock: d.clock,
        ready: watch::Sender::new(Readiness::Loading),
        auth,
        schedule_rows: std::sync::Mutex::new(vec![db::ScheduleRow::default(); d.schedules.len()]),
        schedules: d.schedules,
        running: std::sync::Mutex::new(None),
        shutdown: watch::Sender::new(false),
        health: std::sync::Mutex::new(Vec::new()),
    });

    // Work a previous process left: queued runs, and the one it was carrying out.
    let open = db::open_runs(shared.store.pool())
        .await
        .map_err(|e| ServeError::Store(e.to_string()))?;
    {
        let mut queue = shared.queue.lock().await;
        for (id, work, requests) in open {
            tracing::info!(run = id, "resuming a run queued before the restart");
            queue.push(id, work, requests);
        }
        shared.metrics.set_queue_depth(queue.len());
    }
    shared.refresh_held().await;

    let router = router(shared.clone(), scim, max_body);
    tracing::info!(
        addr = %d.listen,
        api = shared.auth.is_some(),
        schedules = shared.schedules.len(),
        "koppel serve listening"
    );

    let loader = tokio::spawn(load(shared.clone()));
    let worker = tokio::spawn(worker(shared.clone(), d.settings.shutdown_grace_seconds));
    let scheduler = tokio::spawn(scheduler(shared.clone()));

    let stop = shared.clone();
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            signal().await;
            tracing::info!("shutting down: no new requests; the run in flight finishes");
            stop.shutdown.send_replace(true);
        })
        .await
        .map_err(|source| ServeError::Listen {
            addr: d.listen,
            source,
        });
    // The server returns once the signal came and the open requests were answered.
    shared.shutdown.send_replace(true);
    shared.wake.notify_one();
    let _ = worker.await;
    scheduler.abort();
    loader.abort();
    d.store.close().await;
    tracing::info!("koppel serve stopped");
    served
}

async fn load(shared: Arc<Shared>) {
    let started = tokio::time::Instant::now();
    match shared.runner.load().await {
        Ok(()) => {
            tracing::info!(
                seconds = started.elapsed().as_secs_f64(),
                "loaded sources and known state: ready"
            );
            shared.ready.send_replace(Readiness::Ready);
        }
        Err(e) => {
            tracing::error!(error = %e, "loading failed: runs and reads wait for a restart");
            shared.metrics.error("load");
            shared.ready.send_replace(Readiness::Failed(e));
        }
    }
    shared.wake.notify_one();
}

/// The next queued job, once the runner is ready; `None` on shutdown.
async fn next_job(shared: &Shared) -> Option<queue::Queued> {
    let mut ready = shared.ready.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        if shared.is_shutting_down() {
            return None;
        }
        let is_ready = *ready.borrow_and_update() == Readiness::Ready;
        if is_ready {
            let mut queue = shared.queue.lock().await;
            if let Some(job) = queue.pop() {
                shared.metrics.set_queue_depth(queue.len());
                return Some(job);
            }
        }
        tokio::select! {
            () = shared.wake.notified() => {}
            _ = ready.changed() => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Carries out queued runs one at a time until shutdown.
async fn worker(shared: Arc<Shared>, grace_seconds: u64) {
    while let Some(queued) = next_job(&shared).await {
        let id = queued.id;
        let trigger = match db::run(shared.store.pool(), id).await {
            Ok(Some(r)) => r["trigger"].as_str().unwrap_or_default().to_owned(),
            _ => String::new(),
        };
        if let Err(e) = db::start_run(shared.store.pool(), id, &shared.now()).await {
            tracing::error!(run = id, error = %e, "recording the run's start");
        }
        if let Ok(mut r) = shared.running.lock() {
            *r = Some(id);
        }
        let job = Job {
            id,
            work: queued.work,
            trigger,
        };
        tracing::info!(run = id, work = job.work.kind(), trigger = %job.trigger, "run started");
        let started = tokio::time::Instant::now();
        let mut shutdown = shared.shutdown.subscribe();
        let cut = async {
            let _ = shutdown.wait_for(|s| *s).await;
            tokio::time::sleep(Duration::from_secs(grace_seconds)).await;
        };
        let result = tokio::select! {
            r = shared.runner.run(&job) => Some(r),
            () = cut => None,
        };
        if let Ok(mut r) = shared.running.lock() {
            *r = None;
        }
        let Some(result) = result else {
            tracing::warn!(
                run = id,
                grace_seconds,
                "the run did not finish within the grace period: cut off; the journal keeps \
                 what was done and the next start carries it on"
            );
            if let Err(e) = db::requeue(shared.store.pool(), id).await {
                tracing::error!(run = id, error = %e, "putting the run back in the queue");
            }
            return;
        };
        let seconds = started.elapsed().as_secs_f64();
        shared.metrics.run(job.work.kind(), seconds, &result);
        match &result {
            Ok(s) => tracing::info!(
                run = id,
                seconds,
                plan = s.plan_id.as_deref().unwrap_or("-"),
                actions = s.actions,
                applied = s.applied,
                failed = s.failed,
                withheld = s.withheld,
                held = s.held,
                "run done"
            ),
            Err(e) => tracing::error!(run = id, seconds, error = %e, "run failed"),
        }
        if let Err(e) = db::finish_run(shared.store.pool(), id, &shared.now(), &result).await {
            tracing::error!(run = id, error = %e, "recording the run's end");
        }
        shared.refresh_held().await;
        shared.finished.send_modify(|n| *n += 1);
    }
}

/// Queues a full run whenever a source's schedule is due.
async fn scheduler(shared: Arc<Shared>) {
    if shared.schedules.is_empty() {
        return;
    }
    let pool = shared.store.pool().clone();
    let now = (shared.clock)();
    let mut next: Vec<Option<DateTime<Local>>> = Vec::new();
    for (i, s) in shared.schedules.iter().enumerate() {
        let mut row = db::schedule(&pool, &s.key).await.unwrap_or_default();
        let last = row.last_fired.as_deref().and_then(schedule::parse_time);
        if let Some(due) = s.missed(last.as_ref(), &now) {
            let trigger = format!(
                "schedule {:?} of source {} (due {} while koppel serve was stopped)",
                s.expression,
                s.source,
                schedule::format_time(&due)
            );
            if let Err(e) = shared.enqueue(Work::everyone(), &trigger).await {
                tracing::error!(error = %e.message, "queuing a missed scheduled run");
            }
            row.last_fired = Some(schedule::format_time(&due));
        }
        let due = s.next_after(&now);
        row.next_due = due.as_ref().map(schedule::format_time);
        if let Err(e) = db::set_schedule(&pool, &s.key, &s.expression, &row).await {
            tracing::error!(error = %e, "recording schedule state");
        }
        if let Ok(mut rows) = shared.schedule_rows.lock() {
            rows[i] = row;
        }
        next.push(due);
    }
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let Some(soonest) = next.iter().flatten().min().copied() else {
            return;
        };
        let wait = (soonest - (shared.clock)())
            .to_std()
            .unwrap_or(Duration::ZERO)
            // Wake at least once a minute: the wall clock may have been set meanwhile.
            .min(Duration::from_secs(60));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let now = (shared.clock)();
        for (i, s) in shared.schedules.iter().enumerate() {
            let Some(due) = next[i].filter(|d| *d <= now) else {
                continue;
            };
            let trigger = format!("schedule {:?} of source {}", s.expression, s.source);
            if let Err(e) = shared.enqueue(Work::everyone(), &trigger).await {
                tracing::error!(error = %e.message, "queuing a scheduled run");
            }
            next[i] = s.next_after(&now);
            let row = db::ScheduleRow {
                last_fired: Some(schedule::format_time(&due)),
                next_due: next[i].as_ref().map(schedule::format_time),
            };
            if let Err(e) = db::set_schedule(&pool, &s.key, &s.expression, &row).await {
                tracing::error!(error = %e, "recording schedule state");
            }
            if let Ok(mut rows) = shared.schedule_rows.lock() {
                rows[i] = row;
            }
        }
    }
}

/// `/healthz`, `/readyz`, `/metrics`, the admin API under `/api/v1` (when `[serve.api]`
/// is configured) and the SCIM endpoint (when `[serve.scim]` is).
fn router(shared: Arc<Shared>, scim: Option<crate::ScimState>, max_body: Option<usize>) -> Router {
    let mut app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(shared.clone());
    if let Some(max_body) = max_body {
        app = app.nest("/api/v1", api::router(shared, max_body));
    }
    if let Some(scim) = scim {
        app = app.merge(crate::http::scim_routes(scim));
    }
    app.layer(tower_http::trace::TraceLayer::new_for_http())
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let readiness = shared.ready.borrow().clone();
    let store_ok = sqlx::query("SELECT 1")
        .execute(shared.store.pool())
        .await
        .is_ok();
    let (status, reason) = match (&readiness, store_ok) {
        (Readiness::Ready, true) => (StatusCode::OK, None),
        (_, false) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("the store is not reachable"),
        ),
        (Readiness::Loading, _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("loading the sources and the known state"),
        ),
        (Readiness::Failed(_), _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("loading failed; see koppel's log"),
        ),
    };
    (
        status,
        axum::Json(serde_json::json!({ "ready": reason.is_none(), "reason": reason })),
    )
        .into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.encode(),
    )
        .into_response()
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        // Without a handler there is nothing to wait for but SIGTERM.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
