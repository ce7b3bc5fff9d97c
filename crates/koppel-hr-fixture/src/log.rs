//! The fixture's request log: what a client sent, for tests that assert exact requests.

use std::sync::Mutex;

use axum::http::HeaderMap;
use serde_json::Value;

/// One request as the fixture received it.
#[derive(Debug, Clone, PartialEq)]
pub struct Logged {
    pub method: String,
    /// Path and query, as sent.
    pub uri: String,
    /// The `Authorization` header's scheme only (`Bearer`, `AfasToken`), never its value.
    pub auth_scheme: Option<String>,
    pub body: Option<Value>,
}

impl Logged {
    pub fn new(method: &str, uri: &str, headers: &HeaderMap, body: Option<Value>) -> Logged {
        Logged {
            method: method.to_owned(),
            uri: uri.to_owned(),
            auth_scheme: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split_whitespace().next())
                .map(str::to_owned),
            body,
        }
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or(&self.uri)
    }
}

/// Every request, in arrival order.
#[derive(Debug, Default)]
pub struct Log(Mutex<Vec<Logged>>);

impl Log {
    pub fn push(&self, l: Logged) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(l);
    }

    pub fn all(&self) -> Vec<Logged> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The requests with this method.
    pub fn with_method(&self, method: &str) -> Vec<Logged> {
        self.all()
            .into_iter()
            .filter(|l| l.method == method)
            .collect()
    }
}
