//! The HTTP side of a SCIM target: a bounded number of requests in flight, bearer or OAuth2
//! client-credentials tokens, and retries of 429/5xx/timeouts with capped, jittered backoff.
//!
//! A 4xx other than 429 (and a 401 answered once with a fresh OAuth2 token) is never retried:
//! it would fail the same way again. Tokens never reach a log line or an error message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, ETAG, HeaderMap, IF_MATCH, RETRY_AFTER,
};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::{Mutex, Semaphore};
use url::Url;

use crate::config::{ClientAuth, OAuth2Config, ScimConfig};
use crate::error::ScimError;

const SCIM_JSON: &str = "application/scim+json";
/// Backoff never grows past this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A response the caller handles itself (2xx, and 4xx other than 401/429).
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub etag: Option<String>,
    /// `Null` when the body is empty or not JSON.
    pub body: Value,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    /// The SCIM error's `detail` and `scimType`, as ` (scimType)` and the detail text.
    pub fn scim_error(&self) -> (String, String) {
        let scim_type = self
            .body
            .get("scimType")
            .and_then(Value::as_str)
            .map(|t| format!(" ({t})"))
            .unwrap_or_default();
        let detail = self
            .body
            .get("detail")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| {
                self.status
                    .canonical_reason()
                    .unwrap_or("no detail")
                    .to_owned()
            });
        (scim_type, detail)
    }

    pub fn scim_type(&self) -> Option<&str> {
        self.body.get("scimType").and_then(Value::as_str)
    }

    /// The refusal of `method url` as an error.
    pub fn refused(&self, method: &Method, url: &Url) -> ScimError {
        let (scim_type, detail) = self.scim_error();
        ScimError::Refused {
            method: method.to_string(),
            path: url.path().to_owned(),
            status: self.status.as_u16(),
            scim_type,
            detail,
        }
    }
}

enum Auth {
    Bearer(String),
    OAuth2(Box<TokenSource>),
}

/// The HTTP client of one target.
pub(crate) struct Http {
    client: reqwest::Client,
    base: Url,
    auth: Auth,
    permits: Semaphore,
    max_retries: u32,
    backoff: Duration,
    max_retry_after: Duration,
    requests: AtomicU64,
}

/// What one attempt came to.
enum Attempt {
    Reply(Reply, HeaderMap),
    /// Connection refused or reset, timeout, TLS failure: the service did not answer.
    Transport(String),
}

impl Http {
    pub fn new(config: &ScimConfig) -> Result<Http, ScimError> {
        let timeout = Duration::from_secs(config.timeout_seconds);
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("koppel/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = &config.ca_file {
            let pem = std::fs::read(ca).map_err(|e| ScimError::Config {
                message: format!("ca_file {} cannot be read: {}", ca.display(), e.kind()),
            })?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ScimError::Config {
                    message: format!("ca_file {} holds no PEM certificates: {e}", ca.display()),
                })?;
            builder = builder.tls_certs_only(certs);
        }
        let client = builder.build().map_err(|e| ScimError::Config {
            message: format!("cannot build the HTTP client: {e}"),
        })?;
        let mut base = Url::parse(&config.base_url).map_err(|e| ScimError::Config {
            message: format!("base_url: {e}"),
        })?;
        // Segments are appended to the base, so it must end in '/' (url's join semantics).
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let auth = match (&config.oauth2, config.static_token()?) {
            (Some(o), _) => Auth::OAuth2(Box::new(TokenSource::new(o.clone(), client.clone())?)),
            (None, Some(token)) => Auth::Bearer(token),
            (None, None) => {
                return Err(ScimError::Config {
                    message: "no token_env, token_file or [oauth2]".into(),
                });
            }
        };
        Ok(Http {
            client,
            base,
            auth,
            permits: Semaphore::new(config.concurrency),
            max_retries: config.max_retries,
            backoff: Duration::from_millis(config.retry_backoff_ms),
            max_retry_after: Duration::from_secs(config.max_retry_after_seconds),
            requests: AtomicU64::new(0),
        })
    }

    /// The base URL plus path segments, each percent-encoded as one segment.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    /// Requests sent so far, retries included (for tests and benchmarks).
    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Token fetches from the OAuth2 token endpoint so far.
    pub fn token_fetches(&self) -> u64 {
        match &self.auth {
            Auth::OAuth2(t) => t.fetches.load(Ordering::Relaxed),
            Auth::Bearer(_) => 0,
        }
    }

    /// Sends a request, retrying what may succeed later. 401 is `Unauthorized`; 429 and 5xx
    /// that last through the retries are errors; every other status is the caller's.
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<Reply, ScimError> {
        let mut attempt: u32 = 0;
        let mut fresh_token = false;
        loop {
            let outcome = {
                let _permit = self
                    .permits
                    .acquire()
                    .await
                    .map_err(|_| ScimError::Protocol {
                        message: "the request limiter was closed".into(),
                    })?;
                self.once(&method, &url, body, if_match).await?
            };
            let wait = match outcome {
                Attempt::Reply(reply, headers) => match reply.status.as_u16() {
                    401 => {
                        // An OAuth2 token may have been revoked or expired early: one fresh
                        // token, then the refusal is real.
                        if let Auth::OAuth2(t) = &self.auth
                            && !fresh_token
                        {
                            t.invalidate().await;
                            fresh_token = true;
                            continue;
                        }
                        let (_, detail) = reply.scim_error();
                        return Err(ScimError::Unauthorized {
                            url: self.base.to_string(),
                            status: 401,
                            detail: format!(": {detail}"),
                        });
                    }
                    429 => {
                        let asked = retry_after(&headers);
                        if let Some(a) = asked
                            && a > self.max_retry_after
                        {
                            return Err(ScimError::Unreachable {
                                url: self.base.to_string(),
                                message: format!(
                                    "rate limited (429) with Retry-After {} s, longer than \
                                     max_retry_after_seconds",
                                    a.as_secs()
                                ),
                            });
                        }
                        if attempt >= self.max_retries {
                            return Err(ScimError::Unreachable {
                                url: self.base.to_string(),
                                message: format!(
                                    "still rate limited (429) after {} retries",
                                    self.max_retries
                                ),
                            });
                        }
                        asked.unwrap_or_else(|| self.backoff_for(attempt))
                    }
                    s if s >= 500 => {
                        if attempt >= self.max_retries {
                            return Err(server_error(&reply, &method, &url, self.max_retries));
                        }
                        self.backoff_for(attempt)
                    }
                    _ => return Ok(reply),
                },
                Attempt::Transport(message) => {
                    if attempt >= self.max_retries {
                        return Err(ScimError::Unreachable {
                            url: self.base.to_string(),
                            message: format!("{message} (after {} retries)", self.max_retries),
                        });
                    }
                    self.backoff_for(attempt)
                }
            };
            tracing::debug!(%method, path = url.path(), attempt, wait_ms = wait.as_millis() as u64, "retrying SCIM request");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn once(
        &self,
        method: &Method,
        url: &Url,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<Attempt, ScimError> {
        let token = match &self.auth {
            Auth::Bearer(t) => t.clone(),
            Auth::OAuth2(source) => match source.token().await {
                Ok(t) => t,
                Err(ScimError::Unreachable { message, .. }) => {
                    return Ok(Attempt::Transport(format!("token endpoint: {message}")));
                }
                Err(e) => return Err(e),
            },
        };
        let mut request = self
            .client
            .request(method.clone(), url.clone())
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .header(ACCEPT, SCIM_JSON);
        if let Some(tag) = if_match {
            request = request.header(IF_MATCH, tag);
        }
        if let Some(b) = body {
            request = request.header(CONTENT_TYPE, SCIM_JSON).body(b.to_string());
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Ok(Attempt::Transport(transport_message(&e))),
        };
        let status = response.status();
        let headers = response.headers().clone();
        let etag = headers
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = match response.bytes().await {
            Ok(b) => b,
            Err(e) => return Ok(Attempt::Transport(transport_message(&e))),
        };
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Ok(Attempt::Reply(Reply { status, etag, body }, headers))
    }

    /// Exponential from `retry_backoff_ms`, capped, with "equal jitter": half fixed, half
    /// random, so concurrent clients spread out but never retry at once.
    fn backoff_for(&self, attempt: u32) -> Duration {
        let full = self
            .backoff
            .saturating_mul(1u32 << attempt.min(16))
            .min(MAX_BACKOFF);
        let half = full / 2;
        let jitter = getrandom::u64().unwrap_or(0) % (half.as_millis() as u64 + 1);
        half + Duration::from_millis(jitter)
    }
}

fn server_error(reply: &Reply, method: &Method, url: &Url, retries: u32) -> ScimError {
    let (_, detail) = reply.scim_error();
    match reply.status.as_u16() {
        // The service says it is down or overloaded: the run stops and resumes later.
        502..=504 => ScimError::Unreachable {
            url: url.to_string(),
            message: format!(
                "{} after {retries} retries: {detail}",
                reply.status.as_u16()
            ),
        },
        _ => reply.refused(method, url),
    }
}

fn transport_message(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "the request timed out (timeout_seconds)".to_owned()
    } else if e.is_connect() {
        let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
        let mut deepest = e.to_string();
        while let Some(s) = source {
            deepest = s.to_string();
            source = s.source();
        }
        format!("cannot connect: {deepest}")
    } else {
        // reqwest's Display names the URL but never headers, so no token can leak here.
        format!("the connection failed: {e}")
    }
}

/// `Retry-After` as seconds or an HTTP date (RFC 9110 §10.2.3).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    // Interpreting a date needs the clock; the core's purity rule does not apply to I/O.
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now();
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// OAuth2 client credentials (RFC 6749 §4.4): one token at a time, cached until shortly
/// before it expires. A plain form POST: the flow is one request, and the `oauth2` crate's
/// HTTP glue targets another reqwest.
struct TokenSource {
    config: OAuth2Config,
    secret: String,
    client: reqwest::Client,
    cached: Mutex<Option<(String, Option<Instant>)>>,
    fetches: AtomicU64,
}

impl TokenSource {
    fn new(config: OAuth2Config, client: reqwest::Client) -> Result<TokenSource, ScimError> {
        Ok(TokenSource {
            secret: config.client_secret()?,
            config,
            client,
            cached: Mutex::new(None),
            fetches: AtomicU64::new(0),
        })
    }

    async fn token(&self) -> Result<String, ScimError> {
        // Held across the fetch, so concurrent requests wait for one fetch.
        let mut cached = self.cached.lock().await;
        if let Some((token, refresh_at)) = cached.as_ref()
            && refresh_at.is_none_or(|at| Instant::now() < at)
        {
            return Ok(token.clone());
        }
        let (token, lifetime) = self.fetch().await?;
        // Refreshed a little early (a fifth of its life, at most 60 s) so no request carries
        // a token that expires on the way.
        let refresh_at =
            lifetime.map(|l| Instant::now() + l - (l / 5).min(Duration::from_secs(60)));
        *cached = Some((token.clone(), refresh_at));
        Ok(token)
    }

    async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    async fn fetch(&self) -> Result<(String, Option<Duration>), ScimError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let url = self.config.token_url.clone();
        let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
        if let Some(scope) = &self.config.scope {
            form.push(("scope", scope));
        }
        let mut request = self.client.post(&url).header(ACCEPT, "application/json");
        match self.config.client_auth {
            ClientAuth::Basic => {
                // RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
                let id: String =
                    url::form_urlencoded::byte_serialize(self.config.client_id.as_bytes())
                        .collect();
                let secret: String =
                    url::form_urlencoded::byte_serialize(self.secret.as_bytes()).collect();
                request = request.basic_auth(id, Some(secret));
            }
            ClientAuth::Post => {
                form.push(("client_id", &self.config.client_id));
                form.push(("client_secret", &self.secret));
            }
        }
        let response = request
            .form(&form)
            .send()
            .await
            .map_err(|e| ScimError::Unreachable {
                url: url.clone(),
                message: transport_message(&e),
            })?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
        if !status.is_success() {
            let error = text("error").unwrap_or_else(|| status.to_string());
            let description = text("error_description")
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            return Err(match (status.as_u16(), error.as_str()) {
                (401, _) | (400, "invalid_client" | "unauthorized_client") => {
                    ScimError::Unauthorized {
                        url,
                        status: status.as_u16(),
                        detail: format!(" ({error}{description})"),
                    }
                }
                (s, _) if s >= 500 || s == 429 => ScimError::Unreachable {
                    url,
                    message: format!("token endpoint answered {s}"),
                },
                (s, _) => ScimError::Protocol {
                    message: format!("the token endpoint {url} answered {s}: {error}{description}"),
                },
            });
        }
        let token = text("access_token").ok_or_else(|| ScimError::Protocol {
            message: format!("the token endpoint {url} answered without access_token"),
        })?;
        let lifetime = body
            .get("expires_in")
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
            .map(Duration::from_secs);
        tracing::debug!(token_url = %url, expires_in = lifetime.map(|l| l.as_secs()), "fetched an OAuth2 token");
        Ok((token, lifetime))
    }
}
