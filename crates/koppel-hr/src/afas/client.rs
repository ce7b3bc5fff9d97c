//! The AFAS Profit REST client: the `AfasToken` header (base64 of the token XML), the app
//! connector's `metainfo` (which connectors and fields exist), GetConnector rows by
//! skip/take with a stable sort, and UpdateConnector PUTs.
//!
//! A connector that is not in the app connector and a bad token both answer 401, so a
//! refusal is told apart by asking `metainfo`, which answers for any valid token.

use std::collections::BTreeSet;

use base64::Engine as _;
use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use url::Url;

use super::config::{AfasApi, Filter};
use crate::error::HrError;
use crate::http::{Auth, Counts, Http, Reply, detail};
use crate::map::Record;

pub const SERVICE: &str = "AFAS Profit";

/// What the app connector offers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaInfo {
    pub get_connectors: BTreeSet<String>,
    pub update_connectors: BTreeSet<String>,
}

/// One Profit environment, as one app connector token.
pub struct AfasClient {
    api: AfasApi,
    http: Http,
    header: HeaderValue,
}

struct Token<'a>(&'a AfasClient);

#[async_trait::async_trait]
impl Auth for Token<'_> {
    async fn headers(&self) -> Result<HeaderMap, HrError> {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, self.0.header.clone());
        h.insert(ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(id) = &self.0.api.integration_id
            && let Ok(v) = HeaderValue::from_str(id)
        {
            h.insert(HeaderName::from_static("integrationid"), v);
        }
        Ok(h)
    }
}

/// The `Authorization` value for a token: the whole `<token>…</token>` XML, or only its data
/// part, which is then wrapped as version 1.
pub fn token_header(token: &str) -> String {
    let token = token.trim();
    let xml = if token.starts_with("<token>") {
        token.to_owned()
    } else {
        format!("<token><version>1</version><data>{token}</data></token>")
    };
    format!(
        "AfasToken {}",
        base64::engine::general_purpose::STANDARD.encode(xml)
    )
}

impl AfasClient {
    pub fn new(api: AfasApi) -> Result<AfasClient, HrError> {
        let token = api.token.read(&api.base_dir)?;
        let mut header = HeaderValue::from_str(&token_header(&token)).map_err(|_| {
            HrError::Config("the AFAS token holds characters a header cannot carry".into())
        })?;
        header.set_sensitive(true);
        let http =
            Http::new(
                api.http
                    .settings(SERVICE, &api.base_dir, None, api.base_url.to_string()),
            )?;
        Ok(AfasClient { api, http, header })
    }

    pub fn counts(&self) -> Counts {
        self.http.counts()
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.api.base_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn token_hint(&self) -> String {
        match &self.api.token {
            crate::settings::SecretRef::Env { var, key } => format!("{key} {var}"),
            crate::settings::SecretRef::File { path, key } => format!("{key} {}", path.display()),
        }
    }

    async fn send(
        &self,
        method: Method,
        url: &Url,
        body: Option<&Value>,
    ) -> Result<Reply, HrError> {
        let reply = self
            .http
            .send(method.clone(), url, &Token(self), body)
            .await?;
        match reply.status.as_u16() {
            403 => Err(HrError::Credentials {
                service: SERVICE.into(),
                message: format!(
                    "{method} {} answered 403: Profit refuses this client's IP address (an IP \
                     restriction on the app connector)",
                    url.path()
                ),
            }),
            _ => Ok(reply),
        }
    }

    /// The connectors the app connector offers; a 401 here is a refused token.
    pub async fn metainfo(&self) -> Result<MetaInfo, HrError> {
        let url = self.url(&["metainfo"]);
        let reply = self.send(Method::GET, &url, None).await?;
        if reply.status.as_u16() == 401 {
            return Err(HrError::Credentials {
                service: SERVICE.into(),
                message: format!(
                    "the app connector token ({}) was refused (401): check that it is the \
                     whole token of a user of the app connector and has not expired, and that \
                     base_url is the environment's REST address",
                    self.token_hint()
                ),
            });
        }
        if !reply.status.is_success() {
            return Err(refused("GET", &url, &reply));
        }
        let v = reply.json().unwrap_or(Value::Null);
        let ids = |key: &str| -> BTreeSet<String> {
            v.get(key)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|c| c.get("id").and_then(Value::as_str))
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(MetaInfo {
            get_connectors: ids("getConnectors"),
            update_connectors: ids("updateConnectors"),
        })
    }

    /// The field ids of GetConnector `connector`.
    pub async fn fields(&self, connector: &str) -> Result<BTreeSet<String>, HrError> {
        let url = self.url(&["metainfo", "get", connector]);
        let reply = self.send(Method::GET, &url, None).await?;
        if !reply.status.is_success() {
            return Err(refused("GET", &url, &reply));
        }
        let v = reply.json().unwrap_or(Value::Null);
        let Some(fields) = v.get("fields").and_then(Value::as_array) else {
            return Err(HrError::Protocol {
                service: SERVICE.into(),
                path: url.path().to_owned(),
                message: "the metainfo has no \"fields\" array".into(),
            });
        };
        Ok(fields
            .iter()
            .filter_map(|f| f.get("id").and_then(Value::as_str))
            .map(str::to_owned)
            .collect())
    }

    /// Every row of GetConnector `connector`, `take` at a time, sorted on `order_by` (without
    /// a sort AFAS does not keep the order between calls, and pages would skip or repeat rows).
    pub async fn rows(
        &self,
        connector: &str,
        order_by: &str,
        filters: &[Filter],
        take: u32,
    ) -> Result<Vec<Record>, HrError> {
        let mut out = Vec::new();
        let mut skip: u64 = 0;
        loop {
            let mut url = self.url(&["connectors", connector]);
            {
                let mut q = url.query_pairs_mut();
                if !filters.is_empty() {
                    let join = |f: fn(&Filter) -> String| {
                        filters.iter().map(f).collect::<Vec<_>>().join(",")
                    };
                    q.append_pair("filterfieldids", &join(|f| f.field.clone()));
                    q.append_pair("filtervalues", &join(|f| f.value.clone()));
                    q.append_pair("operatortypes", &join(|f| f.operator.to_string()));
                }
                q.append_pair("skip", &skip.to_string());
                q.append_pair("take", &take.to_string());
                q.append_pair("orderbyfieldids", order_by);
            }
            let reply = self.send(Method::GET, &url, None).await?;
            if reply.status.as_u16() == 401 {
                return Err(self.refusal(connector, "GetConnector").await);
            }
            if !reply.status.is_success() {
                return Err(refused("GET", &url, &reply));
            }
            let page = reply.json().unwrap_or(Value::Null);
            let Some(rows) = page.get("rows").and_then(Value::as_array) else {
                return Err(HrError::Protocol {
                    service: SERVICE.into(),
                    path: url.path().to_owned(),
                    message: "the answer has no \"rows\" array".into(),
                });
            };
            let n = rows.len();
            for row in rows {
                if let Value::Object(o) = row {
                    out.push(o.clone());
                }
            }
            if n < take as usize {
                return Ok(out);
            }
            skip += n as u64;
        }
    }

    /// The rows of `connector` whose `field` equals `value` (at most `take`).
    pub async fn find(
        &self,
        connector: &str,
        field: &str,
        value: &str,
        take: u32,
    ) -> Result<Vec<Record>, HrError> {
        let filter = Filter {
            field: field.to_owned(),
            operator: 1,
            value: value.to_owned(),
        };
        let mut url = self.url(&["connectors", connector]);
        url.query_pairs_mut()
            .append_pair("filterfieldids", &filter.field)
            .append_pair("filtervalues", &filter.value)
            .append_pair("operatortypes", "1")
            .append_pair("skip", "0")
            .append_pair("take", &take.to_string())
            .append_pair("orderbyfieldids", field);
        let reply = self.send(Method::GET, &url, None).await?;
        if reply.status.as_u16() == 401 {
            return Err(self.refusal(connector, "GetConnector").await);
        }
        if !reply.status.is_success() {
            return Err(refused("GET", &url, &reply));
        }
        Ok(reply
            .json()
            .and_then(|v| v.get("rows").and_then(Value::as_array).cloned())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|r| match r {
                Value::Object(o) => Some(o),
                _ => None,
            })
            .collect())
    }

    /// PUT on UpdateConnector `connector`.
    pub async fn put(&self, connector: &str, body: &Value) -> Result<(), HrError> {
        let url = self.url(&["connectors", connector]);
        let reply = self.send(Method::PUT, &url, Some(body)).await?;
        if reply.status.as_u16() == 401 {
            return Err(self.refusal(connector, "UpdateConnector").await);
        }
        if !reply.status.is_success() {
            return Err(refused("PUT", &url, &reply));
        }
        Ok(())
    }

    /// Why a connector call answered 401: the token, or a connector the app connector lacks.
    async fn refusal(&self, connector: &str, kind: &'static str) -> HrError {
        match self.metainfo().await {
            Err(e) => e,
            Ok(meta) => {
                let list = if kind == "GetConnector" {
                    &meta.get_connectors
                } else {
                    &meta.update_connectors
                };
                if list.contains(connector) {
                    HrError::Credentials {
                        service: SERVICE.into(),
                        message: format!(
                            "the {kind} {connector} refused this token (401) although the app \
                             connector offers it; check the user's authorisation in Profit"
                        ),
                    }
                } else {
                    missing_connector(kind, connector, connector, list)
                }
            }
        }
    }
}

pub fn missing_connector(
    kind: &'static str,
    name: &str,
    setting: &str,
    available: &BTreeSet<String>,
) -> HrError {
    HrError::MissingConnector {
        service: SERVICE.into(),
        kind,
        name: name.into(),
        setting: setting.into(),
        available: if available.is_empty() {
            "none".into()
        } else {
            available.iter().cloned().collect::<Vec<_>>().join(", ")
        },
    }
}

fn refused(method: &str, url: &Url, reply: &Reply) -> HrError {
    let mut d = detail(reply);
    if let Some(r) = reply.json().and_then(|v| {
        v.get("profitLogReference")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }) {
        d.push_str(&format!(" (Profit log reference {r})"));
    }
    HrError::Refused {
        service: SERVICE.into(),
        method: method.into(),
        path: url.path().to_owned(),
        status: reply.status.as_u16(),
        detail: d,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_header_is_base64_of_the_token_xml() {
        // AFAS's documented example: this header value for this token.
        let xml = "<token><version>1</version><data>54740093832496081845474abcdefghijklmnopq740093832496081841234127</data></token>";
        let expected = format!(
            "AfasToken {}",
            base64::engine::general_purpose::STANDARD.encode(xml)
        );
        assert_eq!(token_header(xml), expected);
        assert_eq!(
            token_header("54740093832496081845474abcdefghijklmnopq740093832496081841234127\n"),
            expected
        );
    }
}
