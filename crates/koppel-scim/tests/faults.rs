//! Faults a real service shows only now and then (429 with Retry-After, 5xx, slow answers, a
//! 400 that must not be retried, OAuth2 token expiry), from a small local HTTP fixture that
//! answers in SCIM's shapes and counts the requests it gets.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use koppel_connectors::target::{CreateRequest, Target, TargetError};
use koppel_core::AttrValue;
use koppel_scim::{ScimConfig, ScimTarget, connect};
use serde_json::{Value, json};

/// One canned answer for the next request to the SCIM API.
struct Canned {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Value,
    delay: Duration,
}

fn canned(status: u16) -> Canned {
    let body = if status >= 400 {
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "status": status.to_string(),
            "detail": format!("canned {status}"),
        })
    } else {
        Value::Null
    };
    Canned {
        status,
        headers: Vec::new(),
        body,
        delay: Duration::ZERO,
    }
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<Canned>,
    /// Every API request: method, path, Authorization header.
    requests: Vec<(String, String, String)>,
    /// Authorization headers the token endpoint got.
    token_requests: Vec<String>,
    token_body: Vec<String>,
    token_lifetime: u64,
    /// The API answers 401 unless the bearer is this token (when set).
    valid_token: Option<String>,
}

#[derive(Clone, Default)]
struct Fixture(Arc<Mutex<Inner>>);

impl Fixture {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.0.lock().expect("fixture lock"))
    }

    fn push(&self, c: Canned) {
        self.with(|i| i.queue.push_back(c));
    }

    fn api_requests(&self) -> usize {
        self.with(|i| i.requests.len())
    }
}

fn user(id: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": id,
        "userName": format!("user-{id}"),
        "active": true,
        "meta": {"resourceType": "User", "version": "W/\"1\""},
    })
}

fn list(resources: Vec<Value>) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": resources.len(),
        "startIndex": 1,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

async fn handle(
    fixture: Fixture,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let path = uri.path().to_owned();
    if path == "/token" {
        let (n, lifetime) = fixture.with(|i| {
            i.token_requests.push(auth);
            i.token_body
                .push(String::from_utf8_lossy(&body).into_owned());
            let n = i.token_requests.len();
            i.valid_token = Some(format!("tok-{n}"));
            (n, i.token_lifetime)
        });
        return axum::Json(json!({
            "access_token": format!("tok-{n}"),
            "token_type": "Bearer",
            "expires_in": lifetime,
        }))
        .into_response();
    }
    let (next, valid) = fixture.with(|i| {
        i.requests
            .push((method.to_string(), path.clone(), auth.clone()));
        (i.queue.pop_front(), i.valid_token.clone())
    });
    if let Some(valid) = valid
        && auth != format!("Bearer {valid}")
    {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"status": "401", "detail": "bad token"})),
        )
            .into_response();
    }
    let c = next.unwrap_or_else(|| {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let (status, body) = match (method.as_str(), segments.as_slice()) {
            ("GET", ["Users"]) | ("GET", ["Groups"]) => (200, list(Vec::new())),
            ("GET", ["Users", id]) => (200, user(id)),
            ("POST", ["Users"]) => (201, user("new-1")),
            ("PATCH", _) => (204, Value::Null),
            _ => (404, json!({"status": "404", "detail": "no such route"})),
        };
        Canned {
            status,
            headers: Vec::new(),
            body,
            delay: Duration::ZERO,
        }
    });
    tokio::time::sleep(c.delay).await;
    let mut response = if c.body.is_null() {
        StatusCode::from_u16(c.status)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response()
    } else {
        (
            StatusCode::from_u16(c.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            [("content-type", "application/scim+json")],
            c.body.to_string(),
        )
            .into_response()
    };
    for (k, v) in c.headers {
        if let Ok(v) = v.parse() {
            response.headers_mut().insert(k, v);
        }
    }
    response
}

/// Starts the fixture on a free port; returns it and its base URL.
async fn start() -> (Fixture, String) {
    let fixture = Fixture::default();
    let f = fixture.clone();
    let app = Router::new()
        .fallback(move |m: Method, u: Uri, h: HeaderMap, b: Bytes| handle(f.clone(), m, u, h, b));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (fixture, format!("http://{addr}"))
}

async fn target_with(base: &str, extra: &str, dir: &tempfile::TempDir) -> ScimTarget {
    let token = dir.path().join("token");
    std::fs::write(&token, "static-token").expect("token");
    let auth = if extra.contains("[oauth2]") {
        String::new()
    } else {
        format!("token_file = {:?}\n", token.display().to_string())
    };
    let toml = format!("base_url = {base:?}\n{auth}retry_backoff_ms = 20\n{extra}");
    let config =
        ScimConfig::from_table("fixture", &toml::from_str(&toml).expect("toml")).expect("config");
    connect("fixture", config).await.expect("connect")
}

#[tokio::test]
async fn honours_429_retry_after_seconds_and_http_date() {
    let (fixture, base) = start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let target = target_with(&base, "", &dir).await;
    let before = fixture.api_requests();
    let mut c = canned(429);
    c.headers.push(("retry-after", "1".into()));
    fixture.push(c);
    let started = Instant::now();
    let got = target.get("u1").await.expect("get after 429");
    assert!(got.is_some());
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    // The user, then its groups.
    assert_eq!(fixture.api_requests() - before, 3);

    let mut c = canned(429);
    #[allow(clippy::disallowed_methods)] // the fixture must speak in wall-clock dates
    let at = std::time::SystemTime::now() + Duration::from_secs(2);
    c.headers.push(("retry-after", httpdate::fmt_http_date(at)));
    fixture.push(c);
    let started = Instant::now();
    target
        .set_enabled("u1", false)
        .await
        .expect("patch after 429");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );

    // Asked to wait longer than max_retry_after_seconds: unavailable at once.
    let mut c = canned(429);
    c.headers.push(("retry-after", "3600".into()));
    fixture.push(c);
    let started = Instant::now();
    let e = target.set_enabled("u1", false).await.expect_err("too long");
    assert!(e.is_unavailable(), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn retries_5xx_then_succeeds_and_gives_up_after_max_retries() {
    let (fixture, base) = start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let target = target_with(&base, "max_retries = 3", &dir).await;
    let before = fixture.api_requests();
    fixture.push(canned(500));
    fixture.push(canned(503));
    target.set_enabled("u1", true).await.expect("after two 5xx");
    assert_eq!(fixture.api_requests() - before, 3);

    let before = fixture.api_requests();
    for _ in 0..10 {
        fixture.push(canned(503));
    }
    let e = target
        .set_enabled("u1", true)
        .await
        .expect_err("503 throughout");
    assert!(e.is_unavailable(), "{e}");
    assert_eq!(
        fixture.api_requests() - before,
        4,
        "one try and three retries"
    );
    fixture.with(|i| i.queue.clear());
}

#[tokio::test]
async fn slow_answers_time_out_and_are_retried() {
    let (fixture, base) = start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let target = target_with(&base, "timeout_seconds = 1\nmax_retries = 1", &dir).await;
    let slow = || {
        let mut c = canned(204);
        c.delay = Duration::from_millis(2500);
        c
    };
    let before = fixture.api_requests();
    fixture.push(slow());
    target
        .set_enabled("u1", true)
        .await
        .expect("slow once, then fast");
    assert_eq!(fixture.api_requests() - before, 2);
    let before = fixture.api_requests();
    fixture.push(slow());
    fixture.push(slow());
    let started = Instant::now();
    let e = target
        .set_enabled("u1", true)
        .await
        .expect_err("slow twice");
    assert!(
        e.is_unavailable() && e.to_string().contains("timed out"),
        "{e}"
    );
    assert_eq!(fixture.api_requests() - before, 2);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn client_errors_are_never_retried() {
    let (fixture, base) = start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let target = target_with(&base, "", &dir).await;
    let before = fixture.api_requests();
    let mut c = canned(400);
    c.body["scimType"] = json!("invalidValue");
    fixture.push(c);
    let e = target.set_enabled("u1", true).await.expect_err("400");
    assert!(matches!(e, TargetError::Rejected { .. }), "{e}");
    assert!(
        e.to_string().contains("invalidValue") && e.to_string().contains("canned 400"),
        "{e}"
    );
    assert_eq!(fixture.api_requests() - before, 1, "a 400 is never retried");

    // 409 on create: refused with the service's detail and scimType, not retried.
    let before = fixture.api_requests();
    let mut c = canned(409);
    c.body["scimType"] = json!("uniqueness");
    fixture.push(c);
    let request = CreateRequest {
        person: "p1".into(),
        attributes: [("userName".to_owned(), AttrValue::Text("taken".into()))].into(),
        enabled: true,
        correlation: None,
    };
    let e = target.create(&request).await.expect_err("409");
    assert!(
        matches!(e, TargetError::Rejected { .. }) && e.to_string().contains("uniqueness"),
        "{e}"
    );
    assert_eq!(fixture.api_requests() - before, 1);

    // 404 on PATCH is the account missing.
    fixture.push(canned(404));
    assert!(matches!(
        target.set_enabled("gone", true).await,
        Err(TargetError::NoSuchAccount { .. })
    ));
}

#[tokio::test]
async fn oauth2_token_is_fetched_once_cached_and_refreshed() {
    let (fixture, base) = start().await;
    fixture.with(|i| i.token_lifetime = 2);
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "client s3cret\n").expect("secret");
    let extra = format!(
        "[oauth2]\ntoken_url = \"{base}/token\"\nclient_id = \"koppel\"\n\
         client_secret_file = {:?}\nscope = \"scim.write\"",
        secret.display().to_string()
    );
    let target = target_with(&base, &extra, &dir).await;
    for _ in 0..5 {
        target.set_enabled("u1", true).await.expect("patch");
    }
    assert_eq!(target.token_fetches(), 1, "one token for six requests");
    let (auths, bodies) = fixture.with(|i| (i.token_requests.clone(), i.token_body.clone()));
    // Basic base64("koppel:client+s3cret"): the secret form-encoded first (RFC 6749 §2.3.1).
    assert_eq!(auths[0], "Basic a29wcGVsOmNsaWVudCtzM2NyZXQ=");
    assert!(
        bodies[0].contains("grant_type=client_credentials")
            && bodies[0].contains("scope=scim.write"),
        "{}",
        bodies[0]
    );
    assert!(fixture.with(|i| i.requests.iter().all(|r| r.2 == "Bearer tok-1")));

    // Past its life (2 s, refreshed a fifth early): a new token.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    target.set_enabled("u1", true).await.expect("patch");
    assert_eq!(target.token_fetches(), 2);
    assert_eq!(
        fixture
            .with(|i| i.requests.last().map(|r| r.2.clone()))
            .as_deref(),
        Some("Bearer tok-2")
    );

    // Revoked early by the server: one 401, a fresh token, the request goes through.
    fixture.with(|i| i.valid_token = Some("revoked-all".into()));
    fixture.with(|i| i.token_lifetime = 3600);
    target.set_enabled("u1", true).await.expect("after 401");
    assert_eq!(target.token_fetches(), 3);
}

#[tokio::test]
async fn concurrency_bounds_requests_in_flight() {
    let (fixture, base) = start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let target = target_with(&base, "concurrency = 3", &dir).await;
    for _ in 0..12 {
        let mut c = canned(204);
        c.delay = Duration::from_millis(200);
        fixture.push(c);
    }
    let ops: Vec<_> = (0..12)
        .map(|n| koppel_connectors::target::Op::SetEnabled {
            reference: format!("u{n}"),
            enabled: true,
        })
        .collect();
    let started = Instant::now();
    let results = target.apply(&ops).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let took = started.elapsed();
    // 12 requests of 200 ms, 3 at a time: 4 rounds.
    assert!(
        took >= Duration::from_millis(780),
        "more than 3 in flight: {took:?}"
    );
    assert!(
        took < Duration::from_millis(2000),
        "not concurrent: {took:?}"
    );
}
