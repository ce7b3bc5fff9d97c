//! Talking to Graph: client-credentials tokens (cached, renewed early, refetched once on a
//! 401), retries of 429 after `Retry-After` and of 5xx/timeouts with capped jittered backoff,
//! `@odata.nextLink` paging that never leaves the Graph host, and one `$batch` call.
//!
//! Tokens and the client secret never reach a log line or an error message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use url::Url;

use super::config::GraphConfig;
use crate::AppsError;

pub(crate) const SCOPE: &str = "https://graph.microsoft.com/.default";
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Unreserved characters stay as they are; everything else is percent-encoded.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One path segment or query value, percent-encoded.
pub(crate) fn enc(s: &str) -> String {
    utf8_percent_encode(s, ENCODE).to_string()
}

/// A query string from pairs, values encoded (keys like `$filter` are Graph's own).
pub(crate) fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A Graph answer the caller handles (2xx and 4xx other than 401/429).
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: Value,
    pub retry_after: Option<Duration>,
}

impl Reply {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Graph's `error.code` and `error.message`.
    pub fn error(&self) -> (String, String) {
        let text = |p: &str| {
            self.body
                .pointer(p)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        (
            text("/error/code").unwrap_or_else(|| "(no code)".into()),
            text("/error/message").unwrap_or_else(|| "(no message)".into()),
        )
    }

    pub fn refused(&self, method: &str, path: &str) -> AppsError {
        let (code, message) = self.error();
        AppsError::Refused {
            method: method.to_owned(),
            path: path.split('?').next().unwrap_or(path).to_owned(),
            status: self.status,
            code,
            message,
        }
    }
}

/// One request of a `$batch`.
#[derive(Debug, Clone)]
pub(crate) struct BatchItem {
    pub method: &'static str,
    /// Relative to `/v1.0`, starting with `/`.
    pub url: String,
    pub body: Option<Value>,
    /// Send `ConsistencyLevel: eventual` (advanced queries).
    pub eventual: bool,
}

pub(crate) struct Http {
    client: reqwest::Client,
    /// `https://graph.microsoft.com/v1.0/`.
    base: Url,
    token_url: String,
    client_id: String,
    secret: String,
    token: Mutex<Option<(String, Instant)>>,
    max_retries: u32,
    max_retry_after: Duration,
    requests: AtomicU64,
    token_fetches: AtomicU64,
}

enum Attempt {
    Reply(Reply),
    Transport(String),
}

impl Http {
    pub fn new(config: &GraphConfig) -> Result<Http, AppsError> {
        let timeout = Duration::from_secs(config.timeout_seconds);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("koppel/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AppsError::Config {
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        let base = Url::parse(&format!("{}/v1.0/", config.graph_url.trim_end_matches('/')))
            .map_err(|e| AppsError::Config {
                message: format!("graph_url: {e}"),
            })?;
        Ok(Http {
            client,
            base,
            token_url: format!(
                "{}/{}/oauth2/v2.0/token",
                config.login_url.trim_end_matches('/'),
                enc(&config.tenant)
            ),
            client_id: config.client_id.clone(),
            secret: config.client_secret()?,
            token: Mutex::new(None),
            max_retries: config.max_retries,
            max_retry_after: Duration::from_secs(config.max_retry_after_seconds),
            requests: AtomicU64::new(0),
            token_fetches: AtomicU64::new(0),
        })
    }

    /// `https://graph.microsoft.com/v1.0` without the slash.
    pub fn root(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_owned()
    }

    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn token_fetches(&self) -> u64 {
        self.token_fetches.load(Ordering::Relaxed)
    }

    /// `rel` (`users/{id}?…`) under `/v1.0`, or an absolute `@odata.nextLink` on the Graph host.
    fn resolve(&self, rel: &str) -> Result<Url, AppsError> {
        if rel.starts_with("http://") || rel.starts_with("https://") {
            let url = Url::parse(rel).map_err(|e| AppsError::Protocol {
                message: format!("Graph gave a link that is not a URL ({e})"),
            })?;
            // The bearer token goes only to the configured Graph host.
            if url.origin() != self.base.origin() {
                return Err(AppsError::Protocol {
                    message: format!(
                        "Graph gave a next link to {}, not to {}",
                        url.origin().ascii_serialization(),
                        self.base.origin().ascii_serialization()
                    ),
                });
            }
            return Ok(url);
        }
        self.base.join(rel).map_err(|e| AppsError::Protocol {
            message: format!("cannot build a Graph URL from {rel:?}: {e}"),
        })
    }

    /// Sends one request, retrying what may succeed later.
    pub async fn send(
        &self,
        method: Method,
        rel: &str,
        body: Option<&Value>,
        eventual: bool,
    ) -> Result<Reply, AppsError> {
        let url = self.resolve(rel)?;
        let mut attempt: u32 = 0;
        let mut fresh_token = false;
        loop {
            let wait = match self.once(&method, &url, body, eventual).await? {
                Attempt::Reply(reply) => match reply.status {
                    401 if !fresh_token => {
                        // Revoked or expired early: one fresh token, then the refusal is real.
                        *self.token.lock().await = None;
                        fresh_token = true;
                        continue;
                    }
                    401 => {
                        let (code, message) = reply.error();
                        return Err(AppsError::Unauthorized {
                            url: self.root(),
                            status: 401,
                            detail: format!("{code}: {message}"),
                        });
                    }
                    429 => self.throttled_wait(reply.retry_after, attempt)?,
                    s if s >= 500 => {
                        if attempt >= self.max_retries {
                            let (code, message) = reply.error();
                            return Err(AppsError::Unreachable {
                                url: self.root(),
                                message: format!(
                                    "{s} {code} after {} retries: {message}",
                                    self.max_retries
                                ),
                            });
                        }
                        self.backoff(attempt)
                    }
                    _ => return Ok(reply),
                },
                Attempt::Transport(message) => {
                    if attempt >= self.max_retries {
                        return Err(AppsError::Unreachable {
                            url: self.root(),
                            message: format!("{message} (after {} retries)", self.max_retries),
                        });
                    }
                    self.backoff(attempt)
                }
            };
            tracing::debug!(%method, path = url.path(), attempt, wait_ms = wait.as_millis() as u64, "retrying Graph request");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// How long to wait after a 429 at retry `attempt`, or why not to.
    pub fn throttled_wait(
        &self,
        asked: Option<Duration>,
        attempt: u32,
    ) -> Result<Duration, AppsError> {
        if let Some(a) = asked
            && a > self.max_retry_after
        {
            return Err(AppsError::Unreachable {
                url: self.root(),
                message: format!(
                    "throttled (429) with Retry-After {} s, longer than max_retry_after_seconds",
                    a.as_secs()
                ),
            });
        }
        if attempt >= self.max_retries {
            return Err(AppsError::Unreachable {
                url: self.root(),
                message: format!("still throttled (429) after {} retries", self.max_retries),
            });
        }
        Ok(asked.unwrap_or_else(|| self.backoff(attempt)))
    }

    async fn once(
        &self,
        method: &Method,
        url: &Url,
        body: Option<&Value>,
        eventual: bool,
    ) -> Result<Attempt, AppsError> {
        let token = match self.token().await {
            Ok(t) => t,
            Err(AppsError::Unreachable { message, .. }) => {
                return Ok(Attempt::Transport(format!("token endpoint: {message}")));
            }
            Err(e) => return Err(e),
        };
        let mut request = self
            .client
            .request(method.clone(), url.clone())
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .header(ACCEPT, "application/json");
        if eventual {
            request = request.header("ConsistencyLevel", "eventual");
        }
        if let Some(b) = body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(b.to_string());
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Ok(Attempt::Transport(transport_message(&e))),
        };
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let bytes = match response.bytes().await {
            Ok(b) => b,
            Err(e) => return Ok(Attempt::Transport(transport_message(&e))),
        };
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Ok(Attempt::Reply(Reply {
            status,
            body,
            retry_after,
        }))
    }

    /// Equal jitter: half fixed, half random, doubling per attempt, capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let full = Duration::from_millis(250)
            .saturating_mul(1u32 << attempt.min(16))
            .min(MAX_BACKOFF);
        let half = full / 2;
        let jitter = getrandom::u64().unwrap_or(0) % (half.as_millis() as u64 + 1);
        half + Duration::from_millis(jitter)
    }

    /// One `$batch` of at most 20 requests (the caller chunks); one reply per item, in order.
    /// `depends[i]` is the index of the item item `i` must follow.
    pub async fn batch(
        &self,
        items: &[(BatchItem, Option<usize>)],
    ) -> Result<Vec<Reply>, AppsError> {
        let requests: Vec<Value> = items
            .iter()
            .enumerate()
            .map(|(i, (item, dep))| {
                let mut r =
                    json!({"id": (i + 1).to_string(), "method": item.method, "url": item.url});
                let mut headers = serde_json::Map::new();
                if let Some(b) = &item.body {
                    r["body"] = b.clone();
                    headers.insert("Content-Type".into(), json!("application/json"));
                }
                if item.eventual {
                    headers.insert("ConsistencyLevel".into(), json!("eventual"));
                }
                if !headers.is_empty() {
                    r["headers"] = Value::Object(headers);
                }
                if let Some(d) = dep {
                    r["dependsOn"] = json!([(d + 1).to_string()]);
                }
                r
            })
            .collect();
        let reply = self
            .send(
                Method::POST,
                "$batch",
                Some(&json!({ "requests": requests })),
                false,
            )
            .await?;
        if !reply.ok() {
            return Err(reply.refused("POST", "/v1.0/$batch"));
        }
        let mut out: Vec<Option<Reply>> = vec![None; items.len()];
        for r in reply
            .body
            .get("responses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(i) = r
                .get("id")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<usize>().ok())
                .filter(|i| (1..=items.len()).contains(i))
            else {
                continue;
            };
            let status = r.get("status").and_then(Value::as_u64).unwrap_or(0) as u16;
            let retry_after = r
                .pointer("/headers/Retry-After")
                .or_else(|| r.pointer("/headers/retry-after"))
                .and_then(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .or_else(|| v.as_u64().map(|n| n.to_string()))
                })
                .and_then(|s| s.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            out[i - 1] = Some(Reply {
                status,
                body: r.get("body").cloned().unwrap_or(Value::Null),
                retry_after,
            });
        }
        out.into_iter()
            .enumerate()
            .map(|(i, r)| {
                r.ok_or_else(|| AppsError::Protocol {
                    message: format!("the $batch response has no response for request {}", i + 1),
                })
            })
            .collect()
    }

    async fn token(&self) -> Result<String, AppsError> {
        // Held across the fetch, so concurrent requests wait for one fetch.
        let mut cached = self.token.lock().await;
        if let Some((token, refresh_at)) = cached.as_ref()
            && Instant::now() < *refresh_at
        {
            return Ok(token.clone());
        }
        let (token, lifetime) = self.fetch_token().await?;
        let refresh_at = Instant::now() + lifetime - (lifetime / 5).min(Duration::from_secs(300));
        *cached = Some((token.clone(), refresh_at));
        Ok(token)
    }

    async fn fetch_token(&self) -> Result<(String, Duration), AppsError> {
        self.token_fetches.fetch_add(1, Ordering::Relaxed);
        let url = self.token_url.clone();
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.secret.as_str()),
            ("scope", SCOPE),
        ];
        let response = self
            .client
            .post(&url)
            .header(ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| AppsError::Unreachable {
                url: url.clone(),
                message: transport_message(&e),
            })?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
        if !status.is_success() {
            let error = text("error").unwrap_or_else(|| status.to_string());
            let description = text("error_description")
                .map(|d| format!(": {}", d.lines().next().unwrap_or("")))
                .unwrap_or_default();
            return Err(match (status, error.as_str()) {
                (StatusCode::UNAUTHORIZED, _)
                | (
                    _,
                    "invalid_client" | "unauthorized_client" | "invalid_request" | "invalid_scope",
                ) => AppsError::Unauthorized {
                    url,
                    status: status.as_u16(),
                    detail: format!("{error}{description}"),
                },
                (s, _) if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
                    AppsError::Unreachable {
                        url,
                        message: format!("token endpoint answered {s}"),
                    }
                }
                (s, _) => AppsError::Protocol {
                    message: format!("the token endpoint {url} answered {s}: {error}{description}"),
                },
            });
        }
        let token = text("access_token").ok_or_else(|| AppsError::Protocol {
            message: format!("the token endpoint {url} answered without access_token"),
        })?;
        let lifetime = body
            .get("expires_in")
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
            .map_or(Duration::from_secs(3599), Duration::from_secs);
        Ok((token, lifetime))
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

/// `Retry-After` as seconds or an HTTP date.
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
