//! koppel's `scim` target: users (core schema and the enterprise extension) and group
//! memberships in any SCIM 2.0 service (RFC 7643/7644), with the resource `id` as reference.
//!
//! Configuration is [`ScimConfig`] (the `[targets.<name>.connection]` table), the target is
//! [`ScimTarget`] from [`connect`]:
//!
//! ```toml
//! [targets.plek.connection]
//! base_url = "https://plek.example/scim/v2"   # /Users and /Groups live under it
//! token_env = "PLEK_SCIM_TOKEN"               # or token_file = "/run/secrets/plek", or [oauth2]
//! update = "patch"            # "patch" (default): PATCH replace/remove of the changed attributes;
//!                             # "put": read, change, PUT the whole user back
//! delete = "delete"           # "delete" (default): DELETE, a 404 counts as done;
//!                             # "disable": set active = false and keep the user
//! correlation = "externalId"  # optional: what a create correlates on when the plan gives nothing
//! page_size = 100             # `count` per page when listing
//! concurrency = 8             # requests in flight at once (apply runs operations concurrently)
//! timeout_seconds = 30        # per request
//! max_retries = 4             # for 429, 5xx, timeouts and connection failures
//! retry_backoff_ms = 250      # first backoff; doubles per retry, capped at 30 s, jittered
//! max_retry_after_seconds = 120  # a longer Retry-After makes the target unavailable instead
//! ca_file = "/etc/koppel/plek-ca.pem"  # optional: trust only these CAs
//!
//! [targets.plek.connection.oauth2]     # instead of token_env/token_file
//! token_url = "https://login.example/oauth2/token"
//! client_id = "koppel"
//! client_secret_env = "PLEK_CLIENT_SECRET"  # or client_secret_file
//! scope = "scim.write"                      # optional
//! client_auth = "basic"                     # "basic" (default) or "post"
//!
//! [targets.plek.connection.compat]     # named vendor differences, all off by default
//! entra_patch = false              # PATCH as Entra ID sends it (capitalised ops, path-less
//!                                  # Replace with an object, "True"/"False" strings)
//! no_group_members_in_get = false  # memberships from the users' `groups` attribute
//! no_filter = false                # list and compare instead of filtering
//! ```
//!
//! How operations map to SCIM:
//!
//! * **Attributes** are SCIM attribute paths ([`paths`] has the scheme: `userName`,
//!   `name.givenName`, `emails[type eq "work"].value`, `enterprise.employeeNumber`, …); reads
//!   flatten a user into the same names, so plans, reconcile and drift compare like with like.
//! * **Correlation** filters `attr eq "value"`, the value escaped as a JSON string (RFC 7644
//!   §3.4.2.2) and the whole query percent-encoded. A create that correlates adopts the user
//!   it finds (`Created::Adopted`) and brings it to the requested attributes and state.
//! * **Enabled** is `active`. **ETags**: koppel keeps the last ETag a user came with and sends
//!   `If-Match`; a 412 means someone changed the user: koppel reads it again and retries once.
//! * **Permissions** are group `displayName`s: found by filter, created on demand, membership
//!   by PATCH `add`/`remove` on `members` (adding a member twice and removing a missing one
//!   succeed). Membership changes carry no `If-Match`: they commute, and concurrent grants to
//!   one group would otherwise refuse each other. Memberships are read from the groups
//!   (`members[value eq "id"]`), since many services never fill a user's `groups`.
//! * **Faults**: 429 waits for `Retry-After` (seconds or an HTTP date); 5xx, timeouts and
//!   connection failures are retried with capped exponential backoff and jitter; other 4xx
//!   are never retried. What stays unreachable, unauthorised or rate limited makes the target
//!   unavailable (the run resumes later); a refused entry (400, 409 with the service's
//!   `detail` and `scimType`) fails just that action.

mod config;
mod error;
mod http;
pub mod paths;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use futures_util::StreamExt;
use koppel_connectors::target::{
    CreateRequest, Created, Done, Op, Target, TargetAccount, TargetError,
};
use koppel_core::AttrValue;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub use config::{ClientAuth, Compat, DeleteMode, OAuth2Config, ScimConfig, UpdateMode};
pub use error::ScimError;

use http::{Http, Reply};
use paths::{AttrPath, CORE_GROUP, PatchStyle};

/// A SCIM service as a koppel target.
pub struct ScimTarget {
    name: String,
    http: Http,
    update: UpdateMode,
    delete: DeleteMode,
    correlation: Option<AttrPath>,
    page_size: u32,
    concurrency: usize,
    compat: Compat,
    style: PatchStyle,
    /// User id → the ETag it last came with.
    etags: Mutex<HashMap<String, String>>,
    /// Lower-cased group displayName → group id.
    groups: Mutex<HashMap<String, String>>,
    /// Held while a group is looked up and made, so concurrent grants make it once.
    group_create: tokio::sync::Mutex<()>,
}

/// Checks the configuration, reads the credentials and asks the service for one user, so a
/// wrong token, an unreachable service or a wrong base URL shows at once.
pub async fn connect(name: &str, config: ScimConfig) -> Result<ScimTarget, ScimError> {
    config.check(&format!("targets.{name}.connection"))?;
    let http = Http::new(&config)?;
    let target = ScimTarget {
        name: name.to_owned(),
        http,
        update: config.update,
        delete: config.delete,
        correlation: match &config.correlation {
            Some(c) => Some(AttrPath::parse_canonical(c).map_err(|m| ScimError::Config {
                message: format!("targets.{name}.connection.correlation: {m}"),
            })?),
            None => None,
        },
        page_size: config.page_size,
        concurrency: config.concurrency,
        compat: config.compat,
        style: if config.compat.entra_patch {
            PatchStyle::Entra
        } else {
            PatchStyle::Rfc
        },
        etags: Mutex::new(HashMap::new()),
        groups: Mutex::new(HashMap::new()),
        group_create: tokio::sync::Mutex::new(()),
    };
    let mut url = target.http.url(&["Users"]);
    url.query_pairs_mut()
        .append_pair("startIndex", "1")
        .append_pair("count", "1")
        .append_pair("attributes", "id");
    let reply = target
        .http
        .send(Method::GET, url.clone(), None, None)
        .await?;
    match reply.status {
        s if s.is_success() => Ok(target),
        StatusCode::NOT_FOUND => Err(ScimError::Config {
            message: format!(
                "targets.{name}.connection.base_url: {} has no /Users (404)",
                target.http.base()
            ),
        }),
        StatusCode::FORBIDDEN => Err(ScimError::Unauthorized {
            url: target.http.base().to_string(),
            status: 403,
            detail: ": the credentials may not read /Users".into(),
        }),
        _ => Err(reply.refused(&Method::GET, &url)),
    }
}

/// A reference that can be an id in a URL segment.
fn valid_reference(r: &str) -> bool {
    !r.is_empty() && r != "." && r != ".."
}

fn text_of(value: &AttrValue) -> Option<String> {
    match value {
        AttrValue::Text(s) if !s.is_empty() => Some(s.clone()),
        AttrValue::Int(i) => Some(i.to_string()),
        AttrValue::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn id_of(resource: &Value) -> Option<String> {
    resource
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The ETag of a reply: the header, or the resource's `meta.version`.
fn etag_of(reply: &Reply) -> Option<String> {
    reply.etag.clone().or_else(|| {
        reply
            .body
            .pointer("/meta/version")
            .and_then(Value::as_str)
            .map(str::to_owned)
    })
}

impl ScimTarget {
    fn err(&self, e: ScimError) -> TargetError {
        e.into_target_error(&self.name)
    }

    fn rejected(&self, message: impl Into<String>) -> TargetError {
        TargetError::Rejected {
            target: self.name.clone(),
            message: message.into(),
        }
    }

    fn no_such(&self, reference: &str) -> TargetError {
        TargetError::NoSuchAccount {
            target: self.name.clone(),
            reference: reference.to_owned(),
        }
    }

    fn config_error(&self, message: impl Into<String>) -> TargetError {
        TargetError::Config {
            target: self.name.clone(),
            message: message.into(),
        }
    }

    /// Requests sent so far, retries included (for tests and benchmarks).
    pub fn request_count(&self) -> u64 {
        self.http.request_count()
    }

    /// OAuth2 tokens fetched so far (for tests).
    pub fn token_fetches(&self) -> u64 {
        self.http.token_fetches()
    }

    fn path(&self, name: &str) -> Result<AttrPath, TargetError> {
        AttrPath::parse_canonical(name).map_err(|m| self.config_error(m))
    }

    fn paths(
        &self,
        attributes: &BTreeMap<String, AttrValue>,
    ) -> Result<Vec<(AttrPath, AttrValue)>, TargetError> {
        attributes
            .iter()
            .map(|(k, v)| Ok((self.path(k)?, v.clone())))
            .collect()
    }

    fn remember_etag(&self, id: &str, reply: &Reply) {
        if let (Some(tag), Ok(mut etags)) = (etag_of(reply), self.etags.lock()) {
            etags.insert(id.to_owned(), tag);
        }
    }

    fn etag(&self, id: &str) -> Option<String> {
        self.etags.lock().ok()?.get(id).cloned()
    }

    fn forget_etag(&self, id: &str) {
        if let Ok(mut etags) = self.etags.lock() {
            etags.remove(id);
        }
    }

    async fn send(
        &self,
        method: Method,
        url: url::Url,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<Reply, TargetError> {
        self.http
            .send(method, url, body, if_match)
            .await
            .map_err(|e| self.err(e))
    }

    /// Every resource of `resource` ("Users", "Groups") matching `filter`, page by page.
    async fn search(
        &self,
        resource: &str,
        filter: Option<&str>,
        attributes: Option<&str>,
    ) -> Result<Vec<Value>, TargetError> {
        let mut out = Vec::new();
        let mut start: u64 = 1;
        // A service whose totalResults keeps growing must not keep us here forever.
        for _ in 0..1_000_000 {
            let mut url = self.http.url(&[resource]);
            {
                let mut q = url.query_pairs_mut();
                if let Some(f) = filter {
                    q.append_pair("filter", f);
                }
                if let Some(a) = attributes {
                    q.append_pair("attributes", a);
                }
                q.append_pair("startIndex", &start.to_string())
                    .append_pair("count", &self.page_size.to_string());
            }
            let reply = self.send(Method::GET, url.clone(), None, None).await?;
            if !reply.is_success() {
                return Err(self.err(reply.refused(&Method::GET, &url)));
            }
            let page = reply
                .body
                .get("Resources")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let total = reply.body.get("totalResults").and_then(Value::as_u64);
            let got = page.len() as u64;
            out.extend(page);
            match total {
                Some(t) if (out.len() as u64) < t && got > 0 => start += got,
                // No totalResults: a short page is the last one.
                None if got >= u64::from(self.page_size) => start += got,
                _ => break,
            }
        }
        Ok(out)
    }

    /// One user by id, `None` when the service has none.
    async fn get_user(&self, id: &str) -> Result<Option<Value>, TargetError> {
        if !valid_reference(id) {
            return Ok(None);
        }
        let url = self.http.url(&["Users", id]);
        let reply = self.send(Method::GET, url.clone(), None, None).await?;
        match reply.status {
            s if s.is_success() => {
                self.remember_etag(id, &reply);
                Ok(Some(reply.body))
            }
            StatusCode::NOT_FOUND => {
                self.forget_etag(id);
                Ok(None)
            }
            _ => Err(self.err(reply.refused(&Method::GET, &url))),
        }
    }

    fn account_of(&self, user: &Value, permissions: BTreeSet<String>) -> Option<TargetAccount> {
        Some(TargetAccount {
            reference: id_of(user)?,
            attributes: paths::flatten(user),
            // RFC 7643: a user without `active` is not said to be inactive.
            enabled: user.get("active").is_none_or(active_value),
            permissions,
        })
    }

    /// Users whose `path` equals `value` (case-insensitively, except `externalId`).
    async fn find_users(&self, path: &AttrPath, value: &str) -> Result<Vec<Value>, TargetError> {
        if !self.compat.no_filter {
            return self
                .search("Users", Some(&path.filter_eq(value)), None)
                .await;
        }
        let exact = path.attr == "externalId" && path.schema.is_none();
        Ok(self
            .search("Users", None, None)
            .await?
            .into_iter()
            .filter(|u| {
                text_of(&path.value_in(u)).is_some_and(|v| {
                    if exact {
                        v == value
                    } else {
                        v.to_lowercase() == value.to_lowercase()
                    }
                })
            })
            .collect())
    }

    /// The group names of one user.
    async fn permissions_of(
        &self,
        id: &str,
        user: &Value,
    ) -> Result<BTreeSet<String>, TargetError> {
        if self.compat.no_group_members_in_get {
            let names = self.group_names_by_id().await?;
            return Ok(user_groups(user, &names));
        }
        let groups = if self.compat.no_filter {
            self.search("Groups", None, Some("displayName,members"))
                .await?
                .into_iter()
                .filter(|g| members_of(g).iter().any(|m| m == id))
                .collect()
        } else {
            let filter = format!("members[value eq {}]", paths::filter_string(id));
            self.search("Groups", Some(&filter), Some("displayName"))
                .await?
        };
        Ok(groups.iter().filter_map(display_name).collect())
    }

    /// Group id → displayName for every group.
    async fn group_names_by_id(&self) -> Result<HashMap<String, String>, TargetError> {
        Ok(self
            .search("Groups", None, Some("displayName"))
            .await?
            .iter()
            .filter_map(|g| Some((id_of(g)?, display_name(g)?)))
            .collect())
    }

    fn cached_group(&self, name: &str) -> Option<String> {
        self.groups.lock().ok()?.get(&name.to_lowercase()).cloned()
    }

    fn cache_group(&self, name: &str, id: &str) {
        if let Ok(mut groups) = self.groups.lock() {
            groups.insert(name.to_lowercase(), id.to_owned());
        }
    }

    fn forget_group(&self, name: &str) {
        if let Ok(mut groups) = self.groups.lock() {
            groups.remove(&name.to_lowercase());
        }
    }

    /// Looks a group up by displayName (compared case-insensitively, as RFC 7643 has it).
    async fn find_group(&self, name: &str) -> Result<Option<String>, TargetError> {
        if let Some(id) = self.cached_group(name) {
            return Ok(Some(id));
        }
        let found = if self.compat.no_filter {
            self.search("Groups", None, Some("displayName")).await?
        } else {
            let filter = format!("displayName eq {}", paths::filter_string(name));
            self.search("Groups", Some(&filter), Some("displayName"))
                .await?
        };
        let id = found
            .iter()
            .find(|g| display_name(g).is_some_and(|d| d.to_lowercase() == name.to_lowercase()))
            .and_then(id_of);
        if let Some(id) = &id {
            self.cache_group(name, id);
        }
        Ok(id)
    }

    /// The group's id, made when it does not exist yet.
    async fn group_for_grant(&self, name: &str) -> Result<String, TargetError> {
        if let Some(id) = self.find_group(name).await? {
            return Ok(id);
        }
        let _one_at_a_time = self.group_create.lock().await;
        if let Some(id) = self.find_group(name).await? {
            return Ok(id);
        }
        let url = self.http.url(&["Groups"]);
        let body = json!({ "schemas": [CORE_GROUP], "displayName": name });
        let reply = self
            .send(Method::POST, url.clone(), Some(&body), None)
            .await?;
        match reply.status {
            s if s.is_success() => {
                let id = id_of(&reply.body).ok_or_else(|| {
                    self.err(ScimError::Protocol {
                        message: format!("POST /Groups for {name:?} answered without an id"),
                    })
                })?;
                tracing::debug!(target = %self.name, group = name, "created group");
                self.cache_group(name, &id);
                Ok(id)
            }
            // Made by someone else meanwhile.
            StatusCode::CONFLICT => match self.find_group(name).await? {
                Some(id) => Ok(id),
                None => Err(self.err(reply.refused(&Method::POST, &url))),
            },
            _ => Err(self.err(reply.refused(&Method::POST, &url))),
        }
    }

    async fn change_membership(
        &self,
        reference: &str,
        permission: &str,
        add: bool,
    ) -> Result<(), TargetError> {
        if add {
            // Services accept members that do not exist; koppel must not.
            let mut url = self.http.url(&["Users", reference]);
            url.query_pairs_mut().append_pair("attributes", "id");
            if !valid_reference(reference) {
                return Err(self.no_such(reference));
            }
            let reply = self.send(Method::GET, url.clone(), None, None).await?;
            match reply.status {
                s if s.is_success() => {}
                StatusCode::NOT_FOUND => return Err(self.no_such(reference)),
                _ => return Err(self.err(reply.refused(&Method::GET, &url))),
            }
        }
        // Twice at most: a cached group id may be stale (the group deleted by hand).
        for _ in 0..2 {
            let gid = if add {
                self.group_for_grant(permission).await?
            } else {
                match self.find_group(permission).await? {
                    Some(id) => id,
                    None => return Ok(()),
                }
            };
            let member = json!([{ "value": reference }]);
            let op = match (add, self.style) {
                (true, style) => json!({"op": style.op("add"), "path": "members", "value": member}),
                // Entra ID removes members by value list, not by a value filter path.
                (false, PatchStyle::Entra) => {
                    json!({"op": "Remove", "path": "members", "value": member})
                }
                (false, PatchStyle::Rfc) => json!({
                    "op": "remove",
                    "path": format!("members[value eq {}]", paths::filter_string(reference)),
                }),
            };
            let url = self.http.url(&["Groups", &gid]);
            let body = paths::patch_body(vec![op]);
            let reply = self
                .send(Method::PATCH, url.clone(), Some(&body), None)
                .await?;
            match reply.status {
                s if s.is_success() => return Ok(()),
                StatusCode::NOT_FOUND => {
                    self.forget_group(permission);
                    if !add {
                        return Ok(());
                    }
                }
                // Removing a member the group does not have.
                StatusCode::BAD_REQUEST if !add && reply.scim_type() == Some("noTarget") => {
                    return Ok(());
                }
                _ => return Err(self.err(reply.refused(&Method::PATCH, &url))),
            }
        }
        Err(self.rejected(format!(
            "the group {permission:?} disappeared while granting it"
        )))
    }

    /// Brings user `id` to `changes` and, when given, `active`.
    async fn update_user(
        &self,
        id: &str,
        changes: &[(AttrPath, AttrValue)],
        active: Option<bool>,
    ) -> Result<(), TargetError> {
        if changes.is_empty() && active.is_none() {
            return Ok(());
        }
        if !valid_reference(id) {
            return Err(self.no_such(id));
        }
        match self.update {
            UpdateMode::Patch => self.patch_user(id, changes, active).await,
            UpdateMode::Put => self.put_user(id, changes, active).await,
        }
    }

    async fn patch_user(
        &self,
        id: &str,
        changes: &[(AttrPath, AttrValue)],
        active: Option<bool>,
    ) -> Result<(), TargetError> {
        let needs_current = changes.iter().any(|(p, _)| p.type_filter.is_some());
        let mut current = None;
        if needs_current {
            current = Some(self.get_user(id).await?.ok_or_else(|| self.no_such(id))?);
        }
        let url = self.http.url(&["Users", id]);
        for attempt in 0..2 {
            let mut ops = paths::patch_ops(changes, current.as_ref(), self.style);
            if let Some(a) = active {
                ops.push(json!({
                    "op": self.style.op("replace"),
                    "path": "active",
                    "value": self.style.value(Value::Bool(a)),
                }));
            }
            if ops.is_empty() {
                return Ok(());
            }
            let body = paths::patch_body(ops);
            let tag = self.etag(id);
            let reply = self
                .send(Method::PATCH, url.clone(), Some(&body), tag.as_deref())
                .await?;
            match reply.status {
                s if s.is_success() => {
                    self.remember_etag(id, &reply);
                    return Ok(());
                }
                StatusCode::NOT_FOUND => {
                    self.forget_etag(id);
                    return Err(self.no_such(id));
                }
                StatusCode::PRECONDITION_FAILED if attempt == 0 => {
                    // Changed by someone else since we saw it: read it (and its ETag) again.
                    current = Some(self.get_user(id).await?.ok_or_else(|| self.no_such(id))?);
                }
                _ => return Err(self.err(reply.refused(&Method::PATCH, &url))),
            }
        }
        Err(self.rejected(format!("{id} kept changing under us (412 twice)")))
    }

    async fn put_user(
        &self,
        id: &str,
        changes: &[(AttrPath, AttrValue)],
        active: Option<bool>,
    ) -> Result<(), TargetError> {
        let url = self.http.url(&["Users", id]);
        for attempt in 0..2 {
            let mut user = self.get_user(id).await?.ok_or_else(|| self.no_such(id))?;
            for (path, value) in changes {
                paths::set(&mut user, path, value);
            }
            if let Some(o) = user.as_object_mut() {
                // Read-only attributes a PUT must not try to write.
                o.remove("meta");
                o.remove("groups");
                if let Some(a) = active {
                    o.insert("active".into(), Value::Bool(a));
                }
            }
            let tag = self.etag(id);
            let reply = self
                .send(Method::PUT, url.clone(), Some(&user), tag.as_deref())
                .await?;
            match reply.status {
                s if s.is_success() => {
                    self.remember_etag(id, &reply);
                    return Ok(());
                }
                StatusCode::NOT_FOUND => {
                    self.forget_etag(id);
                    return Err(self.no_such(id));
                }
                StatusCode::PRECONDITION_FAILED if attempt == 0 => continue,
                _ => return Err(self.err(reply.refused(&Method::PUT, &url))),
            }
        }
        Err(self.rejected(format!("{id} kept changing under us (412 twice)")))
    }

    /// The correlation a create uses: the request's, else the configured attribute's value.
    fn correlation_of(
        &self,
        request: &CreateRequest,
    ) -> Result<Option<(AttrPath, String)>, TargetError> {
        let (path, value) = match (&request.correlation, &self.correlation) {
            (Some((attr, value)), _) => (self.path(attr)?, value.clone()),
            (None, Some(path)) => match request.attributes.get(&path.canonical()) {
                Some(v) => (path.clone(), v.clone()),
                None => return Ok(None),
            },
            (None, None) => return Ok(None),
        };
        Ok(text_of(&value).map(|v| (path, v)))
    }

    async fn correlate_one(
        &self,
        path: &AttrPath,
        value: &str,
    ) -> Result<Option<Value>, TargetError> {
        let mut found = self.find_users(path, value).await?;
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.pop()),
            n => Err(self.rejected(format!(
                "{n} users have {} = {value:?}: correlation must find at most one",
                path.canonical()
            ))),
        }
    }

    async fn adopt(
        &self,
        id: &str,
        attributes: &[(AttrPath, AttrValue)],
        enabled: bool,
    ) -> Result<Created, TargetError> {
        self.update_user(id, attributes, Some(enabled)).await?;
        Ok(Created::Adopted(id.to_owned()))
    }

    async fn create_user(&self, request: &CreateRequest) -> Result<Created, TargetError> {
        let attributes = self.paths(&request.attributes)?;
        let correlation = self.correlation_of(request)?;
        if let Some((path, value)) = &correlation
            && let Some(user) = self.correlate_one(path, value).await?
            && let Some(id) = id_of(&user)
        {
            return self.adopt(&id, &attributes, request.enabled).await;
        }
        let url = self.http.url(&["Users"]);
        let body = paths::build_user(&attributes, request.enabled);
        let reply = self
            .send(Method::POST, url.clone(), Some(&body), None)
            .await?;
        match reply.status {
            s if s.is_success() => {
                let id = id_of(&reply.body).ok_or_else(|| {
                    self.err(ScimError::Protocol {
                        message: "POST /Users answered without an id".into(),
                    })
                })?;
                self.remember_etag(&id, &reply);
                Ok(Created::New(id))
            }
            // Made meanwhile by a concurrent create of the same person: adopt it.
            StatusCode::CONFLICT => {
                if let Some((path, value)) = &correlation
                    && let Some(user) = self.correlate_one(path, value).await?
                    && let Some(id) = id_of(&user)
                {
                    return self.adopt(&id, &attributes, request.enabled).await;
                }
                Err(self.err(reply.refused(&Method::POST, &url)))
            }
            _ => Err(self.err(reply.refused(&Method::POST, &url))),
        }
    }

    async fn delete_user(&self, reference: &str) -> Result<(), TargetError> {
        if !valid_reference(reference) {
            return Ok(());
        }
        if self.delete == DeleteMode::Disable {
            return match self.update_user(reference, &[], Some(false)).await {
                Err(TargetError::NoSuchAccount { .. }) => Ok(()),
                other => other,
            };
        }
        let url = self.http.url(&["Users", reference]);
        let reply = self.send(Method::DELETE, url.clone(), None, None).await?;
        self.forget_etag(reference);
        match reply.status {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            _ => Err(self.err(reply.refused(&Method::DELETE, &url))),
        }
    }
}

/// `active` as services send it: a boolean, or Entra-style "True"/"False".
fn active_value(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(s) => !s.eq_ignore_ascii_case("false"),
        _ => true,
    }
}

fn display_name(group: &Value) -> Option<String> {
    group
        .get("displayName")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn members_of(group: &Value) -> Vec<String> {
    group
        .get("members")
        .and_then(Value::as_array)
        .map(|m| {
            m.iter()
                .filter_map(|e| e.get("value").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A user's group names from its own `groups` attribute.
fn user_groups(user: &Value, names: &HashMap<String, String>) -> BTreeSet<String> {
    user.get("groups")
        .and_then(Value::as_array)
        .map(|groups| {
            groups
                .iter()
                .filter_map(|g| {
                    let id = g.get("value").and_then(Value::as_str);
                    id.and_then(|i| names.get(i).cloned())
                        .or_else(|| g.get("display").and_then(Value::as_str).map(str::to_owned))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[async_trait::async_trait]
impl Target for ScimTarget {
    fn name(&self) -> &str {
        &self.name
    }

    async fn correlate(
        &self,
        attribute: &str,
        value: &AttrValue,
    ) -> Result<Option<TargetAccount>, TargetError> {
        let path = self.path(attribute)?;
        let Some(value) = text_of(value) else {
            return Ok(None);
        };
        let Some(user) = self.correlate_one(&path, &value).await? else {
            return Ok(None);
        };
        let Some(id) = id_of(&user) else {
            return Ok(None);
        };
        let permissions = self.permissions_of(&id, &user).await?;
        Ok(self.account_of(&user, permissions))
    }

    async fn get(&self, reference: &str) -> Result<Option<TargetAccount>, TargetError> {
        let Some(user) = self.get_user(reference).await? else {
            return Ok(None);
        };
        let permissions = self.permissions_of(reference, &user).await?;
        Ok(self.account_of(&user, permissions))
    }

    async fn create(&self, request: &CreateRequest) -> Result<Created, TargetError> {
        self.create_user(request).await
    }

    async fn update(
        &self,
        reference: &str,
        changes: &BTreeMap<String, AttrValue>,
    ) -> Result<(), TargetError> {
        let changes = self.paths(changes)?;
        self.update_user(reference, &changes, None).await
    }

    async fn set_enabled(&self, reference: &str, enabled: bool) -> Result<(), TargetError> {
        self.update_user(reference, &[], Some(enabled)).await
    }

    async fn delete(&self, reference: &str) -> Result<(), TargetError> {
        self.delete_user(reference).await
    }

    async fn grant(&self, reference: &str, permission: &str) -> Result<(), TargetError> {
        self.change_membership(reference, permission, true).await
    }

    async fn revoke(&self, reference: &str, permission: &str) -> Result<(), TargetError> {
        self.change_membership(reference, permission, false).await
    }

    async fn list_accounts(&self) -> Result<Vec<TargetAccount>, TargetError> {
        let users = self.search("Users", None, None).await?;
        let mut by_member: HashMap<String, BTreeSet<String>> = HashMap::new();
        let names = if self.compat.no_group_members_in_get {
            Some(self.group_names_by_id().await?)
        } else {
            for group in self
                .search("Groups", None, Some("displayName,members"))
                .await?
            {
                let Some(name) = display_name(&group) else {
                    continue;
                };
                for member in members_of(&group) {
                    by_member.entry(member).or_default().insert(name.clone());
                }
            }
            None
        };
        Ok(users
            .iter()
            .filter_map(|user| {
                let id = id_of(user)?;
                let permissions = match &names {
                    Some(names) => user_groups(user, names),
                    None => by_member.remove(&id).unwrap_or_default(),
                };
                self.account_of(user, permissions)
            })
            .collect())
    }

    async fn list_permissions(&self) -> Result<Vec<String>, TargetError> {
        let names: BTreeSet<String> = self
            .search("Groups", None, Some("displayName"))
            .await?
            .iter()
            .filter_map(display_name)
            .collect();
        Ok(names.into_iter().collect())
    }

    async fn is_unique(
        &self,
        attribute: &str,
        value: &str,
        except: Option<&str>,
    ) -> Result<bool, TargetError> {
        let path = self.path(attribute)?;
        let found = self.find_users(&path, value).await?;
        Ok(!found
            .iter()
            .any(|u| id_of(u).as_deref() != except || except.is_none()))
    }

    /// Operations on different accounts run concurrently (at most `concurrency` at once);
    /// operations on one account (or creates for one person) keep their order.
    async fn apply(&self, ops: &[Op]) -> Vec<Result<Done, TargetError>> {
        let mut chains: Vec<Vec<usize>> = Vec::new();
        let mut chain_of: HashMap<String, usize> = HashMap::new();
        for (i, op) in ops.iter().enumerate() {
            let key = match op {
                Op::Create(r) => format!("create\0{}", r.person),
                Op::Update { reference, .. }
                | Op::SetEnabled { reference, .. }
                | Op::Delete { reference }
                | Op::Grant { reference, .. }
                | Op::Revoke { reference, .. } => format!("ref\0{reference}"),
            };
            let next = chains.len();
            let c = *chain_of.entry(key).or_insert(next);
            if c == chains.len() {
                chains.push(Vec::new());
            }
            chains[c].push(i);
        }
        let mut results: Vec<Option<Result<Done, TargetError>>> = vec![None; ops.len()];
        let mut done = futures_util::stream::iter(chains)
            .map(|chain| async move {
                let mut out = Vec::with_capacity(chain.len());
                for i in chain {
                    out.push((i, self.apply_one(&ops[i]).await));
                }
                out
            })
            .buffer_unordered(self.concurrency);
        while let Some(chain) = done.next().await {
            for (i, result) in chain {
                results[i] = Some(result);
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(
                    || Err(self.rejected("bug: an operation of the batch was not run")),
                )
            })
            .collect()
    }
}
