//! The HTTP side shared by the HR connectors: a pacer that keeps under the vendor's rate
//! limit, 429 handling that waits (never fails a run short of a long budget), bounded retries.
//!
//! 429 and 502/503/504 and transport failures are retried; every other status is the
//! caller's to interpret. Headers carrying credentials never reach a log line or an error.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use tokio::sync::Mutex;
use url::Url;

use crate::error::HrError;

/// Backoff for transient failures never grows past this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Transport and retry settings every HR connection has.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSettings {
    /// The service's name in messages, e.g. "Visma Youforce".
    pub service: String,
    pub timeout: Duration,
    /// Calls per minute the client allows itself; `None` for no pacing.
    pub rate_limit_per_minute: Option<u32>,
    /// How long one request may wait in total for 429s before the run gives up.
    pub max_rate_limit_wait: Duration,
    /// Retries of 502/503/504, timeouts and connection failures.
    pub max_retries: u32,
    pub retry_backoff: Duration,
    /// A PEM file with the CA certificates to trust instead of the system's.
    pub ca_file: Option<std::path::PathBuf>,
    /// Clients with the same key share one pacer: a vendor limits an API client (the
    /// registered application), not a connection, so a source and a write-back target of one
    /// client in one process must take turns.
    pub pacer_key: String,
}

/// The pacers of this process, by key and rate.
type Pacers = std::collections::HashMap<(String, u32), std::sync::Arc<Pacer>>;
static PACERS: std::sync::LazyLock<std::sync::Mutex<Pacers>> =
    std::sync::LazyLock::new(Default::default);

fn shared_pacer(key: &str, per_minute: u32) -> std::sync::Arc<Pacer> {
    let mut all = PACERS.lock().unwrap_or_else(|p| p.into_inner());
    all.entry((key.to_owned(), per_minute))
        .or_insert_with(|| std::sync::Arc::new(Pacer::new(per_minute)))
        .clone()
}

/// A response with its body read.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Where a request's credentials come from.
#[async_trait::async_trait]
pub trait Auth: Send + Sync {
    /// The headers that authorize one attempt.
    async fn headers(&self) -> Result<HeaderMap, HrError>;
}

/// Counters for tests and benchmarks.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub rate_limited: AtomicU64,
    pub retries: AtomicU64,
    pub waited_ms: AtomicU64,
}

/// A snapshot of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests sent, retries included (token requests not included).
    pub requests: u64,
    /// 429 answers received.
    pub rate_limited: u64,
    /// Requests sent again after a 429, a 5xx or a transport failure.
    pub retries: u64,
    /// Milliseconds spent waiting for the pacer and for 429s.
    pub waited_ms: u64,
}

/// Spaces request starts so the client stays under a calls-per-minute limit. Vendors that
/// smooth their limit ("spike arrest": 100 per minute is one per 0.6 s) refuse a burst even
/// within the minute's budget, so a fixed interval is the only safe pace.
struct Pacer {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    fn new(per_minute: u32) -> Pacer {
        // A margin (5%, at least 20 ms): arrival times jitter with the network, and a request
        // that lands a few milliseconds early costs a 429 and a full retry interval.
        let nominal = Duration::from_secs(60) / per_minute.max(1);
        let interval = nominal + (nominal / 20).max(Duration::from_millis(20));
        Pacer {
            interval,
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for this request's slot; returns how long it waited.
    async fn wait(&self) -> Duration {
        let mut next = self.next.lock().await;
        let now = Instant::now();
        let start = (*next).max(now);
        *next = start + self.interval;
        drop(next);
        let wait = start - now;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        wait
    }

    /// After a 429, no request before `at`.
    async fn hold_until(&self, at: Instant) {
        let mut next = self.next.lock().await;
        if *next < at {
            *next = at;
        }
    }
}

/// The HTTP client of one HR connection.
pub struct Http {
    client: reqwest::Client,
    settings: HttpSettings,
    pacer: Option<std::sync::Arc<Pacer>>,
    stats: Stats,
}

/// What one attempt came to.
enum Attempt {
    Reply(Reply, HeaderMap),
    /// No answer: connection refused or reset, timeout, TLS failure.
    Transport(String),
}

impl Http {
    pub fn new(settings: HttpSettings) -> Result<Http, HrError> {
        let mut builder = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .user_agent(concat!("koppel/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = &settings.ca_file {
            let pem = std::fs::read(ca).map_err(|e| {
                HrError::Config(format!(
                    "ca_file {} cannot be read: {}",
                    ca.display(),
                    e.kind()
                ))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                HrError::Config(format!(
                    "ca_file {} holds no PEM certificates: {e}",
                    ca.display()
                ))
            })?;
            builder = builder.tls_certs_only(certs);
        }
        let client = builder
            .build()
            .map_err(|e| HrError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Http {
            client,
            pacer: settings
                .rate_limit_per_minute
                .map(|n| shared_pacer(&settings.pacer_key, n)),
            settings,
            stats: Stats::default(),
        })
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn service(&self) -> &str {
        &self.settings.service
    }

    pub fn counts(&self) -> Counts {
        Counts {
            requests: self.stats.requests.load(Ordering::Relaxed),
            rate_limited: self.stats.rate_limited.load(Ordering::Relaxed),
            retries: self.stats.retries.load(Ordering::Relaxed),
            waited_ms: self.stats.waited_ms.load(Ordering::Relaxed),
        }
    }

    /// Sends a request, paced, waiting out 429s and retrying transient failures. `auth` is
    /// asked for its headers per attempt (a token may be renewed between attempts).
    pub async fn send(
        &self,
        method: Method,
        url: &Url,
        auth: &dyn Auth,
        body: Option<&serde_json::Value>,
    ) -> Result<Reply, HrError> {
        let mut attempt: u32 = 0;
        let mut rate_waited = Duration::ZERO;
        loop {
            if let Some(p) = &self.pacer {
                let waited = p.wait().await;
                self.stats
                    .waited_ms
                    .fetch_add(waited.as_millis() as u64, Ordering::Relaxed);
            }
            let mut request = self
                .client
                .request(method.clone(), url.clone())
                .headers(auth.headers().await?);
            if let Some(b) = body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(b.to_string());
            }
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            let wait = match once(request).await {
                Attempt::Reply(reply, headers) => match reply.status.as_u16() {
                    429 => {
                        self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                        // Without Retry-After, one pacing interval (or a second) is the
                        // shortest wait that can succeed.
                        let wait = retry_after(&headers).unwrap_or_else(|| {
                            self.pacer
                                .as_ref()
                                .map_or(Duration::from_secs(1), |p| p.interval * 2)
                        });
                        rate_waited += wait;
                        if rate_waited > self.settings.max_rate_limit_wait {
                            return Err(HrError::Unreachable {
                                service: self.service().to_owned(),
                                message: format!(
                                    "still rate limited (429) after waiting {} s for {} {}; \
                                     raise max_rate_limit_wait_seconds or lower \
                                     rate_limit_per_minute",
                                    rate_waited.as_secs(),
                                    method,
                                    url.path()
                                ),
                            });
                        }
                        if let Some(p) = &self.pacer {
                            p.hold_until(Instant::now() + wait).await;
                        }
                        self.stats
                            .waited_ms
                            .fetch_add(wait.as_millis() as u64, Ordering::Relaxed);
                        tracing::debug!(%method, path = url.path(), wait_ms = wait.as_millis() as u64, "rate limited (429), waiting");
                        wait
                    }
                    502..=504 => {
                        if attempt >= self.settings.max_retries {
                            return Err(HrError::Unreachable {
                                service: self.service().to_owned(),
                                message: format!(
                                    "{} {} answered {} through {} retries",
                                    method,
                                    url.path(),
                                    reply.status.as_u16(),
                                    self.settings.max_retries
                                ),
                            });
                        }
                        attempt += 1;
                        self.backoff_for(attempt)
                    }
                    _ => return Ok(reply),
                },
                Attempt::Transport(message) => {
                    if attempt >= self.settings.max_retries {
                        return Err(HrError::Unreachable {
                            service: self.service().to_owned(),
                            message: format!(
                                "{message} ({} {}, after {} retries)",
                                method,
                                url.path(),
                                self.settings.max_retries
                            ),
                        });
                    }
                    attempt += 1;
                    self.backoff_for(attempt)
                }
            };
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(wait).await;
        }
    }

    /// Exponential from `retry_backoff`, capped, half fixed and half random so that several
    /// clients spread out.
    fn backoff_for(&self, attempt: u32) -> Duration {
        let full = self
            .settings
            .retry_backoff
            .saturating_mul(1u32 << attempt.min(16))
            .min(MAX_BACKOFF);
        let half = full / 2;
        let jitter = getrandom::u64().unwrap_or(0) % (half.as_millis() as u64 + 1);
        half + Duration::from_millis(jitter)
    }
}

async fn once(request: reqwest::RequestBuilder) -> Attempt {
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => return Attempt::Transport(transport_message(&e)),
    };
    let status = response.status();
    let headers = response.headers().clone();
    match response.bytes().await {
        Ok(b) => Attempt::Reply(
            Reply {
                status,
                body: b.to_vec(),
            },
            headers,
        ),
        Err(e) => Attempt::Transport(transport_message(&e)),
    }
}

/// A transport failure in words, without headers (reqwest's Display names the URL only).
pub fn transport_message(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "the request timed out (timeout_seconds)".to_owned();
    }
    let mut deepest = e.to_string();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        deepest = s.to_string();
        source = s.source();
    }
    if e.is_connect() {
        format!("cannot connect: {deepest}")
    } else {
        format!("the connection failed: {deepest}")
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

/// A short description of an error body: the vendor's message when there is one.
pub fn detail(reply: &Reply) -> String {
    if let Some(v) = reply.json() {
        for key in [
            "externalMessage",
            "message",
            "error_description",
            "error",
            "detail",
        ] {
            if let Some(s) = v.get(key).and_then(|m| m.as_str())
                && !s.is_empty()
            {
                return s.to_owned();
            }
        }
        if let Some(s) = v.pointer("/fault/faultstring").and_then(|m| m.as_str()) {
            return s.to_owned();
        }
    }
    let text = String::from_utf8_lossy(&reply.body);
    let text = text.trim();
    if text.is_empty() {
        reply
            .status
            .canonical_reason()
            .unwrap_or("no detail")
            .to_owned()
    } else {
        text.chars().take(300).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_pacer_spaces_requests_by_the_limit_with_a_margin() {
        let p = Pacer::new(100);
        assert_eq!(p.interval, Duration::from_millis(630));
        let start = Instant::now();
        for _ in 0..5 {
            p.wait().await;
        }
        // The first goes at once, the next four one interval apart.
        assert_eq!(Instant::now() - start, Duration::from_millis(4 * 630));
        p.hold_until(Instant::now() + Duration::from_secs(5)).await;
        let before = Instant::now();
        p.wait().await;
        assert_eq!(Instant::now() - before, Duration::from_secs(5));
    }

    #[test]
    fn retry_after_in_seconds_and_as_a_date() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
