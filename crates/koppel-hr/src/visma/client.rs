//! The Youforce IAM API client: Visma Connect client-credentials tokens (with `tenant_id`),
//! cached until shortly before they expire; `nextLink` paging; the users endpoint.
//!
//! A `nextLink` is followed by its query string only, on the configured base URL: the link's
//! host is the gateway's own idea of itself, and HelloID's connectors do the same.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, AUTHORIZATION, CACHE_CONTROL, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::Mutex;
use url::Url;

use super::config::{RATE_LIMIT_PER_MINUTE, VismaApi};
use crate::error::HrError;
use crate::http::{Auth, Counts, Http, Reply, detail, transport_message};
use crate::map::Record;

pub const SERVICE: &str = "Visma Youforce";
/// The scope that reads persons, employments, organization units, job profiles and users.
pub const GET_BASIC: &str = "Youforce-IAM:Get_Basic";
/// The scope that sets a user's identity.
pub const UPDATE_IDENTITY: &str = "Youforce-IAM:Update_Identity";

struct Token {
    value: String,
    refresh_at: Instant,
    /// The granted scopes, when the token endpoint said.
    scopes: Option<Vec<String>>,
}

/// One Youforce tenant, as one API client.
pub struct VismaClient {
    api: VismaApi,
    http: Http,
    secret: String,
    token: Mutex<Option<Token>>,
    token_fetches: AtomicU64,
}

/// How a PATCH of the identity went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patched {
    Done,
    NoSuchUser,
}

struct Bearer<'a>(&'a VismaClient);

#[async_trait::async_trait]
impl Auth for Bearer<'_> {
    async fn headers(&self) -> Result<HeaderMap, HrError> {
        let token = self.0.token().await?;
        let mut h = HeaderMap::new();
        let value =
            HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| HrError::Protocol {
                service: SERVICE.into(),
                path: self.0.api.token_url.path().to_owned(),
                message: "the access token holds characters a header cannot carry".into(),
            })?;
        h.insert(AUTHORIZATION, value);
        h.insert(ACCEPT, HeaderValue::from_static("application/json"));
        Ok(h)
    }
}

impl VismaClient {
    /// Reads the client secret and builds the HTTP client; contacts nothing.
    pub fn new(api: VismaApi) -> Result<VismaClient, HrError> {
        let secret = api.secret.read(&api.base_dir)?;
        let key = format!("{} {} {}", api.base_url, api.tenant_id, api.client_id);
        let http =
            Http::new(
                api.http
                    .settings(SERVICE, &api.base_dir, Some(RATE_LIMIT_PER_MINUTE), key),
            )?;
        let mut api = api;
        // Paths are joined onto the base, so it must end in '/'.
        if !api.base_url.path().ends_with('/') {
            let path = format!("{}/", api.base_url.path());
            api.base_url.set_path(&path);
        }
        Ok(VismaClient {
            api,
            http,
            secret,
            token: Mutex::new(None),
            token_fetches: AtomicU64::new(0),
        })
    }

    pub fn counts(&self) -> Counts {
        self.http.counts()
    }

    /// Token requests made so far.
    pub fn token_fetches(&self) -> u64 {
        self.token_fetches.load(Ordering::Relaxed)
    }

    async fn token(&self) -> Result<String, HrError> {
        // Held across the fetch, so concurrent requests wait for one fetch.
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref()
            && Instant::now() < t.refresh_at
        {
            return Ok(t.value.clone());
        }
        let t = self.fetch_token().await?;
        let value = t.value.clone();
        *cached = Some(t);
        Ok(value)
    }

    async fn invalidate(&self) {
        *self.token.lock().await = None;
    }

    /// Fails with the missing scope's name when the token endpoint said which scopes it
    /// granted and `scope` is not among them (a token without a `scope` field is let
    /// through: the API's 403 then names it).
    pub async fn require_scope(&self, scope: &str, needed_for: &str) -> Result<(), HrError> {
        self.token().await?;
        let cached = self.token.lock().await;
        if let Some(scopes) = cached.as_ref().and_then(|t| t.scopes.as_ref())
            && !scopes.iter().any(|s| s == scope)
        {
            return Err(HrError::MissingScope {
                service: SERVICE.into(),
                scope: scope.into(),
                needed_for: needed_for.into(),
            });
        }
        Ok(())
    }

    async fn fetch_token(&self) -> Result<Token, HrError> {
        let url = &self.api.token_url;
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.api.client_id.as_str()),
            ("client_secret", self.secret.as_str()),
            ("tenant_id", self.api.tenant_id.as_str()),
        ];
        let mut attempt = 0;
        let (status, body) = loop {
            self.token_fetches.fetch_add(1, Ordering::Relaxed);
            let sent = self
                .http
                .client()
                .post(url.clone())
                .header(CACHE_CONTROL, "no-cache")
                .header(ACCEPT, "application/json")
                .form(&form)
                .send()
                .await;
            let outcome = match sent {
                Ok(r) => {
                    let status = r.status();
                    match r.bytes().await {
                        Ok(b) => Ok((status, b.to_vec())),
                        Err(e) => Err(transport_message(&e)),
                    }
                }
                Err(e) => Err(transport_message(&e)),
            };
            match outcome {
                Ok((s, b)) if !(s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS) => {
                    break (s, b);
                }
                other if attempt < 4 => {
                    tracing::debug!(attempt, outcome = ?other.map(|(s, _)| s), "retrying the token request");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
                }
                Ok((s, _)) => {
                    return Err(HrError::Unreachable {
                        service: SERVICE.into(),
                        message: format!("the token endpoint {url} answered {s} through 4 retries"),
                    });
                }
                Err(m) => {
                    return Err(HrError::Unreachable {
                        service: SERVICE.into(),
                        message: format!("the token endpoint {url}: {m}"),
                    });
                }
            }
        };
        let reply = Reply { status, body };
        let json = reply.json().unwrap_or(Value::Null);
        let text = |k: &str| json.get(k).and_then(Value::as_str).map(str::to_owned);
        if !status.is_success() {
            let error = text("error").unwrap_or_else(|| status.to_string());
            let description = text("error_description")
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            let secret = match &self.api.secret {
                crate::settings::SecretRef::Env { var, key } => format!("{key} {var}"),
                crate::settings::SecretRef::File { path, key } => {
                    format!("{key} {}", path.display())
                }
            };
            let hint = match error.as_str() {
                "invalid_client" | "unauthorized_client" => format!(
                    "client_id {:?} or its client secret ({secret}) was refused",
                    self.api.client_id
                ),
                "invalid_grant" | "invalid_request" | "invalid_target" => format!(
                    "tenant_id {:?} was refused: is the client linked to this tenant?",
                    self.api.tenant_id
                ),
                "invalid_scope" => "a requested scope was refused".to_owned(),
                _ => format!("the token endpoint {url} answered {status}"),
            };
            return Err(HrError::Credentials {
                service: SERVICE.into(),
                message: format!("{hint} ({error}{description})"),
            });
        }
        let value = text("access_token").ok_or_else(|| HrError::Protocol {
            service: SERVICE.into(),
            path: url.path().to_owned(),
            message: "the token endpoint answered without access_token".into(),
        })?;
        // Documented both as a number and as a string.
        let lifetime = match json.get("expires_in") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }
        .map_or(Duration::from_secs(300), Duration::from_secs);
        // Renewed a little early (a fifth of its life, at most a minute) so that no request
        // carries a token that expires on the way.
        let refresh_at = Instant::now() + lifetime - (lifetime / 5).min(Duration::from_secs(60));
        let scopes = text("scope").map(|s| s.split_whitespace().map(str::to_owned).collect());
        Ok(Token {
            value,
            refresh_at,
            scopes,
        })
    }

    fn url(&self, path: &str) -> Url {
        // The base ends in '/', and `path` is a constant of this module or escaped.
        let mut url = self.api.base_url.clone();
        let joined = format!("{}{}", url.path(), path);
        url.set_path(&joined);
        url
    }

    /// A request with a fresh token once more after a 401 (a token can be revoked before
    /// it expires); 403 names the scope the operation needs.
    async fn request(
        &self,
        method: Method,
        url: &Url,
        body: Option<&Value>,
        scope: &str,
        needed_for: &str,
    ) -> Result<Reply, HrError> {
        let mut renewed = false;
        loop {
            let reply = self
                .http
                .send(method.clone(), url, &Bearer(self), body)
                .await?;
            match reply.status.as_u16() {
                401 if !renewed => {
                    self.invalidate().await;
                    renewed = true;
                }
                401 => {
                    return Err(HrError::Credentials {
                        service: SERVICE.into(),
                        message: format!(
                            "{method} {} answered 401 with a fresh token: {}",
                            url.path(),
                            detail(&reply)
                        ),
                    });
                }
                403 => {
                    return Err(HrError::MissingScope {
                        service: SERVICE.into(),
                        scope: scope.into(),
                        needed_for: needed_for.into(),
                    });
                }
                _ => return Ok(reply),
            }
        }
    }

    /// Every record of `/iam/v1.0/{endpoint}`, `take` per page, following `nextLink`.
    pub async fn list(&self, endpoint: &str, take: u32) -> Result<Vec<Record>, HrError> {
        let base = self.url(&format!("iam/v1.0/{endpoint}"));
        let mut url = base.clone();
        url.query_pairs_mut().append_pair("take", &take.to_string());
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        loop {
            let reply = self
                .request(
                    Method::GET,
                    &url,
                    None,
                    GET_BASIC,
                    &format!("read {endpoint}"),
                )
                .await?;
            if !reply.status.is_success() {
                return Err(refused("GET", &url, &reply));
            }
            let page: Value =
                serde_json::from_slice(&reply.body).map_err(|e| HrError::Protocol {
                    service: SERVICE.into(),
                    path: url.path().to_owned(),
                    message: format!("the page is not JSON: {e}"),
                })?;
            let Some(items) = page.get("value").and_then(Value::as_array) else {
                return Err(HrError::Protocol {
                    service: SERVICE.into(),
                    path: url.path().to_owned(),
                    message: "the page has no \"value\" array".into(),
                });
            };
            for item in items {
                match item {
                    Value::Object(o) => out.push(o.clone()),
                    other => {
                        return Err(HrError::Protocol {
                            service: SERVICE.into(),
                            path: url.path().to_owned(),
                            message: format!("a record is not an object: {other}"),
                        });
                    }
                }
            }
            let next = page
                .get("nextLink")
                .and_then(Value::as_str)
                .filter(|s| !s.trim().is_empty());
            let Some(next) = next else {
                return Ok(out);
            };
            let query = next_query(&base, next).ok_or_else(|| HrError::Protocol {
                service: SERVICE.into(),
                path: url.path().to_owned(),
                message: format!("the nextLink {next:?} has no query to follow"),
            })?;
            if !seen.insert(query.clone()) {
                return Err(HrError::Protocol {
                    service: SERVICE.into(),
                    path: url.path().to_owned(),
                    message: "the nextLink repeats an earlier page; stopping instead of looping"
                        .into(),
                });
            }
            url = base.clone();
            url.set_query(Some(&query));
        }
    }

    fn user_path(employee_id: &str) -> String {
        let id =
            percent_encoding::utf8_percent_encode(employee_id, percent_encoding::NON_ALPHANUMERIC);
        format!("iam/v1.0/users(employeeId={id})")
    }

    /// The user of employee `employee_id`, if the tenant has one.
    pub async fn user(&self, employee_id: &str) -> Result<Option<Record>, HrError> {
        let url = self.url(&Self::user_path(employee_id));
        let reply = self
            .request(Method::GET, &url, None, GET_BASIC, "read users")
            .await?;
        match reply.status.as_u16() {
            404 => Ok(None),
            s if (200..300).contains(&s) => match reply.json() {
                Some(Value::Object(o)) => Ok(Some(o)),
                _ => Err(HrError::Protocol {
                    service: SERVICE.into(),
                    path: url.path().to_owned(),
                    message: "the user is not a JSON object".into(),
                }),
            },
            _ => Err(refused("GET", &url, &reply)),
        }
    }

    /// Sets employee `employee_id`'s identity to `value`.
    pub async fn patch_identity(&self, employee_id: &str, value: &str) -> Result<Patched, HrError> {
        let url = self.url(&format!("{}/identity", Self::user_path(employee_id)));
        let body = serde_json::json!({ "id": value });
        let reply = self
            .request(
                Method::PATCH,
                &url,
                Some(&body),
                UPDATE_IDENTITY,
                "write the identity of users",
            )
            .await?;
        match reply.status.as_u16() {
            404 => Ok(Patched::NoSuchUser),
            s if (200..300).contains(&s) => Ok(Patched::Done),
            _ => Err(refused("PATCH", &url, &reply)),
        }
    }
}

fn refused(method: &str, url: &Url, reply: &Reply) -> HrError {
    HrError::Refused {
        service: SERVICE.into(),
        method: method.into(),
        path: url.path().to_owned(),
        status: reply.status.as_u16(),
        detail: detail(reply),
    }
}

/// The query of a `nextLink`, absolute or relative.
fn next_query(base: &Url, next: &str) -> Option<String> {
    let link = Url::parse(next).or_else(|_| base.join(next)).ok()?;
    link.query().filter(|q| !q.is_empty()).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links_are_followed_by_their_query() {
        let base = Url::parse("http://127.0.0.1:9/iam/v1.0/persons").unwrap();
        assert_eq!(
            next_query(
                &base,
                "https://api.youforce.com/iam/v1.0/persons?take=1000&nextToken=abc"
            )
            .as_deref(),
            Some("take=1000&nextToken=abc")
        );
        assert_eq!(
            next_query(&base, "/iam/v1.0/persons?nextToken=x").as_deref(),
            Some("nextToken=x")
        );
        assert_eq!(
            next_query(&base, "https://api.youforce.com/iam/v1.0/persons"),
            None
        );
    }

    #[test]
    fn user_paths_escape_the_employee_id() {
        assert_eq!(
            VismaClient::user_path("1001"),
            "iam/v1.0/users(employeeId=1001)"
        );
        assert_eq!(
            VismaClient::user_path("a)/../b c"),
            "iam/v1.0/users(employeeId=a%29%2F%2E%2E%2Fb%20c)"
        );
    }
}
