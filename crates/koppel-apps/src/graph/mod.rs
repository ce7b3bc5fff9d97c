//! koppel's `graph` target: Entra ID users, their manager and their group memberships over
//! Microsoft Graph v1.0, with the user's object id as reference.
//!
//! ```toml
//! [targets.entra.connection]
//! tenant = "contoso.onmicrosoft.com"   # tenant id or domain
//! client_id = "…"                      # the app registration (User.ReadWrite.All,
//!                                      # GroupMember.ReadWrite.All, Group.Create)
//! client_secret_env = "ENTRA_CLIENT_SECRET"   # or client_secret_file
//! delete = "delete"        # "delete" (default): soft delete, restorable for 30 days;
//!                          # "disable": accountEnabled = false, the user stays
//! create_groups = true     # make missing security groups a permission names
//! batch = true             # JSON batching ($batch, 20 requests each) for bulk applies
//! properties = []          # user properties to read besides the built-in list
//! # login_url, graph_url (for national clouds or the fixture), page_size (999),
//! # timeout_seconds (30), max_retries (8), max_retry_after_seconds (300)
//! ```
//!
//! What each action means in Entra ID:
//!
//! * **create**: `POST /users` with the mapped properties (attribute names are Graph property
//!   names: `userPrincipalName`, `displayName`, `mailNickname`, `employeeId`, `department`,
//!   `jobTitle`, `officeLocation`, …), `accountEnabled`, and a random initial password with
//!   `forceChangePasswordNextSignIn` that never leaves the connector. A create correlates
//!   first (`$filter=attr eq 'value'` with `ConsistencyLevel: eventual` and `$count=true`, the
//!   advanced query `employeeId` needs) and adopts the user it finds.
//! * **update**: `PATCH /users/{id}` with the changed properties only (`null` clears);
//!   `manager` is the manager's userPrincipalName, set by `PUT /users/{id}/manager/$ref` and
//!   cleared by `DELETE …/manager/$ref`.
//! * **enable/disable**: `accountEnabled`. **delete**: per `delete` above; a user already
//!   gone counts as deleted.
//! * **grant/revoke**: permissions are security group displayNames; `POST
//!   /groups/{id}/members/$ref` and `DELETE /groups/{id}/members/{user}/$ref` (an existing
//!   membership and a missing one both count as done).
//! * **uniqueness**: `is_unique` asks the tenant (`userPrincipalName`, `mail`, `mailNickname`,
//!   any filterable property), case-insensitively.
//! * **bulk**: `apply` sends operations as `$batch` requests of 20; operations on one user are
//!   chained with `dependsOn` so they happen in order; requests Graph throttles (429 inside
//!   the batch) or fails by dependency (424) go again in a later batch after `Retry-After`.
//!
//! Not yet: licences (`assignLicense`), dynamic groups, certificate credentials.

mod config;
mod http;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use koppel_connectors::target::{
    CreateRequest, Created, Done, Op, Target, TargetAccount, TargetError,
};
use koppel_core::AttrValue;
use reqwest::Method;
use serde_json::{Map, Value, json};

pub use config::{DeleteMode, GraphConfig};

use crate::AppsError;
use config::valid_property;
use http::{BatchItem, Http, Reply, enc, query};

/// User properties always read.
const PROPERTIES: &[&str] = &[
    "id",
    "accountEnabled",
    "employeeId",
    "userPrincipalName",
    "displayName",
    "mailNickname",
    "givenName",
    "surname",
    "mail",
    "department",
    "jobTitle",
    "officeLocation",
    "companyName",
    "employeeType",
    "mobilePhone",
    "usageLocation",
    "preferredLanguage",
];
/// Graph's limit of requests in one `$batch`.
const BATCH_SIZE: usize = 20;

/// Entra ID as a koppel target.
pub struct GraphTarget {
    name: String,
    http: Http,
    delete: DeleteMode,
    create_groups: bool,
    batching: bool,
    page_size: u32,
    select: String,
    /// Lower-cased displayName → group id.
    groups: Mutex<HashMap<String, String>>,
    group_create: tokio::sync::Mutex<()>,
}

/// Checks the configuration, reads the secret, fetches a token and reads one user, so wrong
/// credentials or an unreachable tenant show at once.
pub async fn connect(name: &str, config: GraphConfig) -> Result<GraphTarget, AppsError> {
    config.check(&format!("targets.{name}.connection"))?;
    let http = Http::new(&config)?;
    let mut select: Vec<&str> = PROPERTIES.to_vec();
    for p in &config.properties {
        if !select.contains(&p.as_str()) {
            select.push(p);
        }
    }
    let target = GraphTarget {
        name: name.to_owned(),
        http,
        delete: config.delete,
        create_groups: config.create_groups,
        batching: config.batch,
        page_size: config.page_size,
        select: select.join(","),
        groups: Mutex::new(HashMap::new()),
        group_create: tokio::sync::Mutex::new(()),
    };
    let rel = format!("users?{}", query(&[("$top", "1"), ("$select", "id")]));
    let reply = target.http.send(Method::GET, &rel, None, false).await?;
    if reply.ok() {
        Ok(target)
    } else if reply.status == 403 {
        Err(AppsError::Unauthorized {
            url: target.http.root(),
            status: 403,
            detail: "the app may not read users (grant User.ReadWrite.All)".into(),
        })
    } else {
        Err(reply.refused("GET", "/v1.0/users"))
    }
}

/// What this target does for each action, as `koppel validate` prints it.
pub fn summary(config: &GraphConfig) -> String {
    format!(
        "Entra ID (Microsoft Graph v1.0, tenant {}): create, update (PATCH of changed \
         properties, manager by $ref), enable/disable (accountEnabled = true/false), delete = {}, \
         grant/revoke (security group membership{}), uniqueness checks; {}",
        config.tenant,
        match config.delete {
            DeleteMode::Delete => "soft delete (DELETE /users/{id}, restorable for 30 days)",
            DeleteMode::Disable => "disable (accountEnabled = false, the user stays)",
        },
        if config.create_groups {
            ", groups made on demand"
        } else {
            ", groups must exist"
        },
        if config.batch {
            "JSON batching of 20"
        } else {
            "one request per operation"
        }
    )
}

/// A reference that can be an object id in a URL segment.
fn valid_reference(r: &str) -> bool {
    !r.is_empty() && r.len() <= 200 && !r.contains(['/', '?', '#', '\\']) && r != "." && r != ".."
}

/// `prop eq 'value'`, the value an OData string literal (quotes doubled).
fn filter_eq(prop: &str, value: &str) -> String {
    format!("{prop} eq '{}'", value.replace('\'', "''"))
}

fn to_json(v: &AttrValue) -> Value {
    match v {
        AttrValue::Null => Value::Null,
        AttrValue::Bool(b) => json!(b),
        AttrValue::Int(i) => json!(i),
        AttrValue::Text(s) => json!(s),
        AttrValue::List(l) => json!(l),
    }
}

fn from_json(v: &Value) -> Option<AttrValue> {
    match v {
        Value::String(s) => Some(AttrValue::Text(s.clone())),
        Value::Bool(b) => Some(AttrValue::Bool(*b)),
        Value::Number(n) => n.as_i64().map(AttrValue::Int),
        Value::Array(a) if !a.is_empty() => Some(AttrValue::List(
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect(),
        )),
        _ => None,
    }
}

fn text_of(v: &AttrValue) -> Option<String> {
    match v {
        AttrValue::Text(s) if !s.is_empty() => Some(s.clone()),
        AttrValue::Int(i) => Some(i.to_string()),
        AttrValue::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A random initial password meeting Entra's complexity rules; it never leaves the connector.
fn initial_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789!@#$%&*-+=?";
    let mut out = String::from("Kp7!");
    for _ in 0..20 {
        let r = getrandom::u32().unwrap_or(7) as usize;
        out.push(ALPHABET[r % ALPHABET.len()] as char);
    }
    out
}

/// How the answer to one step reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepKind {
    /// 404 means the user does not exist.
    Change,
    /// 404 means already gone.
    Remove,
    /// 400 "already exist" means done; 404 means the user does not exist.
    AddMember,
    /// Any answer is the caller's to read.
    Raw,
}

/// One Graph request on behalf of operation `op`, ordered after earlier steps with `key`.
struct Step {
    op: usize,
    key: String,
    kind: StepKind,
    item: BatchItem,
}

/// What a create in a batch is heading for.
enum CreatePlan {
    Done(Result<Done, TargetError>),
    /// Same correlation as an earlier create in the batch: carried out after it.
    Again,
    New,
    Adopt(String),
}

impl GraphTarget {
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

    fn err(&self, e: AppsError) -> TargetError {
        e.into_target_error(&self.name)
    }

    /// Requests sent so far (a `$batch` counts once), for tests and benchmarks.
    pub fn request_count(&self) -> u64 {
        self.http.request_count()
    }

    /// Tokens fetched so far.
    pub fn token_fetches(&self) -> u64 {
        self.http.token_fetches()
    }

    async fn send(
        &self,
        method: Method,
        rel: &str,
        body: Option<&Value>,
        eventual: bool,
    ) -> Result<Reply, TargetError> {
        self.http
            .send(method, rel, body, eventual)
            .await
            .map_err(|e| self.err(e))
    }

    /// Every object of a collection, following `@odata.nextLink`.
    async fn list(&self, rel: String, eventual: bool) -> Result<Vec<Value>, TargetError> {
        let mut out = Vec::new();
        let mut next = Some(rel);
        // A service that keeps linking must not keep us here forever.
        for _ in 0..1_000_000 {
            let Some(rel) = next.take() else { break };
            let reply = self.send(Method::GET, &rel, None, eventual).await?;
            if !reply.ok() {
                return Err(self.err(reply.refused("GET", &rel)));
            }
            out.extend(
                reply
                    .body
                    .get("value")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            );
            next = reply
                .body
                .get("@odata.nextLink")
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        Ok(out)
    }

    fn property(&self, attribute: &str) -> Result<(), TargetError> {
        if valid_property(attribute) {
            Ok(())
        } else {
            Err(TargetError::Config {
                target: self.name.clone(),
                message: format!("{attribute:?} is not a Graph property name"),
            })
        }
    }

    fn find_users_rel(&self, attribute: &str, value: &str) -> String {
        format!(
            "users?{}",
            query(&[
                ("$filter", &filter_eq(attribute, value)),
                ("$select", &self.select),
                ("$count", "true"),
                ("$top", &self.page_size.to_string()),
            ])
        )
    }

    /// Users whose `attribute` is `value` (Graph compares case-insensitively).
    async fn find_users(&self, attribute: &str, value: &str) -> Result<Vec<Value>, TargetError> {
        self.property(attribute)?;
        self.list(self.find_users_rel(attribute, value), true).await
    }

    async fn user(&self, id: &str) -> Result<Option<Value>, TargetError> {
        if !valid_reference(id) {
            return Ok(None);
        }
        let rel = format!(
            "users/{}?{}",
            enc(id),
            query(&[
                ("$select", &self.select),
                ("$expand", "manager($select=id,userPrincipalName)")
            ])
        );
        let reply = self.send(Method::GET, &rel, None, false).await?;
        match reply.status {
            s if (200..300).contains(&s) => Ok(Some(reply.body)),
            404 => Ok(None),
            _ => Err(self.err(reply.refused("GET", &rel))),
        }
    }

    async fn memberships(&self, id: &str) -> Result<BTreeSet<String>, TargetError> {
        let rel = format!(
            "users/{}/memberOf?{}",
            enc(id),
            query(&[("$select", "id,displayName"), ("$top", "999")])
        );
        Ok(self
            .list(rel, false)
            .await?
            .iter()
            .filter(|g| {
                g.get("@odata.type").and_then(Value::as_str) == Some("#microsoft.graph.group")
            })
            .filter_map(|g| g.get("displayName").and_then(Value::as_str))
            .map(str::to_owned)
            .collect())
    }

    fn account_of(&self, user: &Value, permissions: BTreeSet<String>) -> Option<TargetAccount> {
        let object = user.as_object()?;
        let reference = object.get("id")?.as_str()?.to_owned();
        let mut attributes = BTreeMap::new();
        for (k, v) in object {
            if k == "id" || k == "accountEnabled" || k.starts_with('@') {
                continue;
            }
            if k == "manager" {
                if let Some(upn) = v.get("userPrincipalName").and_then(Value::as_str) {
                    attributes.insert(k.clone(), AttrValue::Text(upn.to_owned()));
                }
                continue;
            }
            if let Some(a) = from_json(v) {
                attributes.insert(k.clone(), a);
            }
        }
        Some(TargetAccount {
            reference,
            attributes,
            enabled: object
                .get("accountEnabled")
                .and_then(Value::as_bool)
                .unwrap_or(true),
            permissions,
        })
    }

    /// The properties of a POST or PATCH body (everything but `manager`).
    fn body_of(
        &self,
        attributes: &BTreeMap<String, AttrValue>,
    ) -> Result<Map<String, Value>, TargetError> {
        let mut body = Map::new();
        for (k, v) in attributes {
            if k == "manager" {
                continue;
            }
            self.property(k)?;
            body.insert(k.clone(), to_json(v));
        }
        Ok(body)
    }

    fn create_body(&self, request: &CreateRequest) -> Result<Value, TargetError> {
        let mut body = self.body_of(&request.attributes)?;
        body.retain(|_, v| !v.is_null());
        body.insert("accountEnabled".into(), json!(request.enabled));
        body.insert(
            "passwordProfile".into(),
            json!({"forceChangePasswordNextSignIn": true, "password": initial_password()}),
        );
        Ok(Value::Object(body))
    }

    fn adopt_body(&self, request: &CreateRequest) -> Result<Value, TargetError> {
        let mut body = self.body_of(&request.attributes)?;
        body.insert("accountEnabled".into(), json!(request.enabled));
        Ok(Value::Object(body))
    }

    /// Sets (`Some(userPrincipalName or id)`) or clears the manager of user `id`.
    async fn set_manager(&self, id: &str, manager: &AttrValue) -> Result<(), TargetError> {
        let path = format!("users/{}/manager/$ref", enc(id));
        match text_of(manager) {
            None => {
                let reply = self.send(Method::DELETE, &path, None, false).await?;
                // No manager (404) is what was asked.
                if reply.ok() || reply.status == 404 {
                    return Ok(());
                }
                Err(self.err(reply.refused("DELETE", &path)))
            }
            Some(m) => {
                if !valid_reference(&m) {
                    return Err(self.rejected(format!("manager {m:?} is not a user name or id")));
                }
                let Some(manager) = self.user(&m).await? else {
                    return Err(
                        self.rejected(format!("the manager {m:?} is not a user in the tenant"))
                    );
                };
                let mid = manager
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or(&m)
                    .to_owned();
                let body =
                    json!({"@odata.id": format!("{}/users/{}", self.http.root(), enc(&mid))});
                let reply = self.send(Method::PUT, &path, Some(&body), false).await?;
                match reply.status {
                    s if (200..300).contains(&s) => Ok(()),
                    404 => Err(self.no_such(id)),
                    _ => Err(self.err(reply.refused("PUT", &path))),
                }
            }
        }
    }

    /// The id of the group named `name`; made when missing and `create`.
    async fn group_id(&self, name: &str, create: bool) -> Result<Option<String>, TargetError> {
        let key = name.to_lowercase();
        if let Some(id) = self.groups.lock().ok().and_then(|g| g.get(&key).cloned()) {
            return Ok(Some(id));
        }
        let _making = self.group_create.lock().await;
        if let Some(id) = self.groups.lock().ok().and_then(|g| g.get(&key).cloned()) {
            return Ok(Some(id));
        }
        let rel = format!(
            "groups?{}",
            query(&[
                ("$filter", &filter_eq("displayName", name)),
                ("$select", "id,displayName")
            ])
        );
        let found = self.list(rel, false).await?;
        let id = match found.as_slice() {
            [one] => one.get("id").and_then(Value::as_str).map(str::to_owned),
            [] if create => {
                let nickname: String = name
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                    .take(64)
                    .collect();
                let body = json!({
                    "displayName": name,
                    "mailEnabled": false,
                    "mailNickname": if nickname.is_empty() { "koppel-group".to_owned() } else { nickname },
                    "securityEnabled": true,
                    "description": "Made by koppel for a permission"
                });
                let reply = self
                    .send(Method::POST, "groups", Some(&body), false)
                    .await?;
                if !reply.ok() {
                    return Err(self.err(reply.refused("POST", "/v1.0/groups")));
                }
                reply
                    .body
                    .get("id")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            }
            [] => None,
            _ => {
                return Err(self.rejected(format!(
                    "{} groups are named {name:?}; rename all but one",
                    found.len()
                )));
            }
        };
        if let (Some(id), Ok(mut groups)) = (&id, self.groups.lock()) {
            groups.insert(key, id.clone());
        }
        Ok(id)
    }

    fn member_ref(&self, id: &str) -> Value {
        json!({"@odata.id": format!("{}/directoryObjects/{}", self.http.root(), enc(id))})
    }

    /// What a step's reply means for its operation.
    fn read_step(&self, step: &Step, reply: &Reply, reference: &str) -> Result<(), TargetError> {
        match (step.kind, reply.status) {
            (_, s) if (200..300).contains(&s) => Ok(()),
            (StepKind::Remove, 404) => Ok(()),
            (StepKind::Change | StepKind::AddMember, 404) => Err(self.no_such(reference)),
            (StepKind::AddMember, 400) if reply.error().1.contains("already exist") => Ok(()),
            _ => Err(self.err(reply.refused(step.item.method, &step.item.url))),
        }
    }

    /// Carries out `steps` in `$batch`es of 20: steps with the same key in order (chained by
    /// `dependsOn` within a batch, never overtaking across batches); throttled (429), failed
    /// by dependency (424) and 5xx steps go again after the longest `Retry-After`.
    async fn run_steps(&self, steps: &[Step]) -> Vec<Result<Reply, TargetError>> {
        let mut out: Vec<Option<Result<Reply, TargetError>>> = vec![None; steps.len()];
        let mut pending: Vec<usize> = (0..steps.len()).collect();
        let mut attempts = vec![0u32; steps.len()];
        let mut round: u32 = 0;
        while !pending.is_empty() {
            let mut batch: Vec<usize> = Vec::new();
            let mut items: Vec<(BatchItem, Option<usize>)> = Vec::new();
            let mut last: HashMap<&str, usize> = HashMap::new();
            for &s in &pending {
                if batch.len() == BATCH_SIZE {
                    break;
                }
                let dep = last.get(steps[s].key.as_str()).copied();
                last.insert(&steps[s].key, batch.len());
                batch.push(s);
                items.push((steps[s].item.clone(), dep));
            }
            let replies = match self.http.batch(&items).await {
                Ok(r) => r,
                Err(e) => {
                    let e = self.err(e);
                    for &s in &pending {
                        out[s] = Some(Err(e.clone()));
                    }
                    break;
                }
            };
            let mut wait: Option<Duration> = None;
            let mut again: Vec<usize> = Vec::new();
            for (&s, reply) in batch.iter().zip(replies) {
                let retry = match reply.status {
                    429 => match self.http.throttled_wait(reply.retry_after, attempts[s]) {
                        Ok(w) => {
                            wait = Some(wait.map_or(w, |x| x.max(w)));
                            true
                        }
                        Err(e) => {
                            out[s] = Some(Err(self.err(e)));
                            false
                        }
                    },
                    // Its predecessor failed or was throttled: it goes again after it.
                    424 => true,
                    st if st >= 500 && attempts[s] < 4 => {
                        let w = self.http.backoff(attempts[s]);
                        wait = Some(wait.map_or(w, |x| x.max(w)));
                        true
                    }
                    _ => {
                        out[s] = Some(Ok(reply));
                        false
                    }
                };
                if retry {
                    attempts[s] += 1;
                    again.push(s);
                }
            }
            let sent: BTreeSet<usize> = batch.iter().copied().collect();
            let rest: Vec<usize> = pending
                .iter()
                .copied()
                .filter(|s| !sent.contains(s))
                .collect();
            again.extend(rest);
            again.sort_unstable();
            pending = again;
            round += 1;
            if round > 100_000 {
                for &s in &pending {
                    out[s] = Some(Err(self.rejected("gave up after too many $batch rounds")));
                }
                break;
            }
            if let Some(w) = wait {
                tracing::debug!(
                    wait_ms = w.as_millis() as u64,
                    "Graph throttled part of a batch"
                );
                tokio::time::sleep(w).await;
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(self.rejected("no answer in the batch"))))
            .collect()
    }

    /// A change step (update, enable, delete, grant, revoke) for operation `i`, or its result.
    async fn change_step(&self, i: usize, op: &Op) -> Result<Option<Step>, TargetError> {
        let reference = match op {
            Op::Update { reference, .. }
            | Op::SetEnabled { reference, .. }
            | Op::Delete { reference }
            | Op::Grant { reference, .. }
            | Op::Revoke { reference, .. } => reference,
            Op::Create(_) => return Ok(None),
        };
        let valid = valid_reference(reference);
        let user = format!("/users/{}", enc(reference));
        let step = |kind, method, url: String, body| {
            Ok(Some(Step {
                op: i,
                key: reference.clone(),
                kind,
                item: BatchItem {
                    method,
                    url,
                    body,
                    eventual: false,
                },
            }))
        };
        match op {
            Op::Create(_) => Ok(None),
            Op::Update { changes, .. } => {
                if !valid {
                    return Err(self.no_such(reference));
                }
                let body = self.body_of(changes)?;
                if body.is_empty() {
                    return Ok(None);
                }
                step(StepKind::Change, "PATCH", user, Some(Value::Object(body)))
            }
            Op::SetEnabled { enabled, .. } => {
                if !valid {
                    return Err(self.no_such(reference));
                }
                step(
                    StepKind::Change,
                    "PATCH",
                    user,
                    Some(json!({"accountEnabled": enabled})),
                )
            }
            Op::Delete { .. } => {
                if !valid {
                    return Ok(None);
                }
                match self.delete {
                    DeleteMode::Delete => step(StepKind::Remove, "DELETE", user, None),
                    DeleteMode::Disable => step(
                        StepKind::Remove,
                        "PATCH",
                        user,
                        Some(json!({"accountEnabled": false})),
                    ),
                }
            }
            Op::Grant { permission, .. } => {
                if !valid {
                    return Err(self.no_such(reference));
                }
                let Some(gid) = self.group_id(permission, self.create_groups).await? else {
                    return Err(self.rejected(format!(
                        "there is no group {permission:?} and create_groups is off"
                    )));
                };
                step(
                    StepKind::AddMember,
                    "POST",
                    format!("/groups/{}/members/$ref", enc(&gid)),
                    Some(self.member_ref(reference)),
                )
            }
            Op::Revoke { permission, .. } => {
                if !valid {
                    return Ok(None);
                }
                let Some(gid) = self.group_id(permission, false).await? else {
                    return Ok(None);
                };
                step(
                    StepKind::Remove,
                    "DELETE",
                    format!("/groups/{}/members/{}/$ref", enc(&gid), enc(reference)),
                    None,
                )
            }
        }
    }

    /// Updates, enables, deletes, grants and revokes in `$batch`es.
    async fn apply_changes(&self, ops: &[Op]) -> Vec<Result<Done, TargetError>> {
        let mut results: Vec<Result<Done, TargetError>> = vec![Ok(Done::Ok); ops.len()];
        let mut steps = Vec::new();
        let mut managers: Vec<usize> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            match self.change_step(i, op).await {
                Ok(Some(s)) => steps.push(s),
                Ok(None) => {}
                Err(e) => results[i] = Err(e),
            }
            if let Op::Update { changes, .. } = op
                && changes.contains_key("manager")
            {
                managers.push(i);
            }
        }
        let replies = self.run_steps(&steps).await;
        for (step, reply) in steps.iter().zip(replies) {
            let reference = match &ops[step.op] {
                Op::Update { reference, .. }
                | Op::SetEnabled { reference, .. }
                | Op::Delete { reference }
                | Op::Grant { reference, .. }
                | Op::Revoke { reference, .. } => reference.as_str(),
                Op::Create(_) => "",
            };
            let r = reply.and_then(|reply| self.read_step(step, &reply, reference));
            if let Err(e) = r {
                results[step.op] = Err(e);
            }
        }
        // Manager references go one by one: each needs the manager's id first.
        for i in managers {
            if results[i].is_err() {
                continue;
            }
            if let Op::Update { reference, changes } = &ops[i]
                && let Some(m) = changes.get("manager")
                && let Err(e) = self.set_manager(reference, m).await
            {
                results[i] = Err(e);
            }
        }
        results
    }

    /// Creates in `$batch`es: correlation lookups, then POSTs and adopting PATCHes, then
    /// managers one by one.
    async fn apply_creates(&self, ops: &[Op]) -> Vec<Result<Done, TargetError>> {
        let requests: Vec<&CreateRequest> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Create(r) => Some(r),
                _ => None,
            })
            .collect();
        let mut plans: Vec<CreatePlan> = Vec::with_capacity(requests.len());
        let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
        let mut lookups: Vec<Step> = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            let correlation = r
                .correlation
                .as_ref()
                .and_then(|(a, v)| Some((a.clone(), text_of(v)?)));
            let Some((attr, value)) = correlation else {
                plans.push(CreatePlan::New);
                continue;
            };
            if let Err(e) = self.property(&attr) {
                plans.push(CreatePlan::Done(Err(e)));
                continue;
            }
            if !seen.insert((attr.to_lowercase(), value.to_lowercase())) {
                plans.push(CreatePlan::Again);
                continue;
            }
            plans.push(CreatePlan::New);
            lookups.push(Step {
                op: i,
                key: format!("lookup#{i}"),
                kind: StepKind::Raw,
                item: BatchItem {
                    method: "GET",
                    url: format!("/{}", self.find_users_rel(&attr, &value)),
                    body: None,
                    eventual: true,
                },
            });
        }
        for (step, reply) in lookups.iter().zip(self.run_steps(&lookups).await) {
            plans[step.op] = match reply {
                Err(e) => CreatePlan::Done(Err(e)),
                Ok(reply) if !reply.ok() => {
                    CreatePlan::Done(Err(self.err(reply.refused("GET", &step.item.url))))
                }
                Ok(reply) => {
                    let found: Vec<String> = reply
                        .body
                        .get("value")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|u| u.get("id").and_then(Value::as_str).map(str::to_owned))
                        .collect();
                    match found.as_slice() {
                        [] => CreatePlan::New,
                        [one] => CreatePlan::Adopt(one.clone()),
                        many => CreatePlan::Done(Err(self.rejected(format!(
                            "{} users match the correlation of {}: {}",
                            many.len(),
                            requests[step.op].person,
                            many.join(", ")
                        )))),
                    }
                }
            };
        }
        let mut writes: Vec<Step> = Vec::new();
        for (i, plan) in plans.iter_mut().enumerate() {
            let r = requests[i];
            let step = match plan {
                CreatePlan::New => self.create_body(r).map(|body| Step {
                    op: i,
                    key: format!("create#{i}"),
                    kind: StepKind::Raw,
                    item: BatchItem {
                        method: "POST",
                        url: "/users".into(),
                        body: Some(body),
                        eventual: false,
                    },
                }),
                CreatePlan::Adopt(id) => self.adopt_body(r).map(|body| Step {
                    op: i,
                    key: format!("create#{i}"),
                    kind: StepKind::Change,
                    item: BatchItem {
                        method: "PATCH",
                        url: format!("/users/{}", enc(id)),
                        body: Some(body),
                        eventual: false,
                    },
                }),
                _ => continue,
            };
            match step {
                Ok(s) => writes.push(s),
                Err(e) => *plan = CreatePlan::Done(Err(e)),
            }
        }
        for (step, reply) in writes.iter().zip(self.run_steps(&writes).await) {
            let i = step.op;
            let result = match (&plans[i], reply) {
                (_, Err(e)) => Err(e),
                (CreatePlan::Adopt(id), Ok(reply)) => self
                    .read_step(step, &reply, id)
                    .map(|_| Done::Created(Created::Adopted(id.clone()))),
                (_, Ok(reply)) if reply.ok() => {
                    match reply.body.get("id").and_then(Value::as_str) {
                        Some(id) => Ok(Done::Created(Created::New(id.to_owned()))),
                        None => Err(self.rejected("POST /users answered without an id")),
                    }
                }
                (_, Ok(reply)) => Err(self.err(reply.refused("POST", "/v1.0/users"))),
            };
            plans[i] = CreatePlan::Done(result);
        }
        let mut out = Vec::with_capacity(requests.len());
        for (i, plan) in plans.into_iter().enumerate() {
            let r = requests[i];
            let mut result = match plan {
                CreatePlan::Done(result) => result,
                // After the first of its kind exists: correlation finds and adopts it.
                _ => self.create(r).await.map(Done::Created),
            };
            if let (Ok(Done::Created(c)), Some(m)) = (&result, r.attributes.get("manager"))
                && !m.is_null()
                && let Err(e) = self.set_manager(c.reference(), m).await
            {
                result = Err(e);
            }
            out.push(result);
        }
        out
    }
}

#[async_trait::async_trait]
impl Target for GraphTarget {
    fn name(&self) -> &str {
        &self.name
    }

    async fn correlate(
        &self,
        attribute: &str,
        value: &AttrValue,
    ) -> Result<Option<TargetAccount>, TargetError> {
        let Some(value) = text_of(value) else {
            return Ok(None);
        };
        let users = self.find_users(attribute, &value).await?;
        match users.as_slice() {
            [] => Ok(None),
            [one] => {
                let id = one.get("id").and_then(Value::as_str).unwrap_or_default();
                // Read again for the manager, which a filtered list does not expand.
                self.get(id).await
            }
            many => {
                Err(self.rejected(format!("{} users have {attribute} = {value:?}", many.len())))
            }
        }
    }

    async fn get(&self, reference: &str) -> Result<Option<TargetAccount>, TargetError> {
        let Some(user) = self.user(reference).await? else {
            return Ok(None);
        };
        let permissions = self.memberships(reference).await?;
        Ok(self.account_of(&user, permissions))
    }

    async fn create(&self, request: &CreateRequest) -> Result<Created, TargetError> {
        if let Some((attr, value)) = &request.correlation
            && let Some(found) = self.correlate(attr, value).await?
        {
            let body = self.adopt_body(request)?;
            let path = format!("users/{}", enc(&found.reference));
            let reply = self.send(Method::PATCH, &path, Some(&body), false).await?;
            if !reply.ok() {
                return Err(self.err(reply.refused("PATCH", &path)));
            }
            if let Some(m) = request.attributes.get("manager") {
                self.set_manager(&found.reference, m).await?;
            }
            return Ok(Created::Adopted(found.reference));
        }
        let body = self.create_body(request)?;
        let reply = self.send(Method::POST, "users", Some(&body), false).await?;
        if !reply.ok() {
            return Err(self.err(reply.refused("POST", "/v1.0/users")));
        }
        let id = reply
            .body
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| self.rejected("POST /users answered without an id"))?
            .to_owned();
        if let Some(m) = request.attributes.get("manager")
            && !m.is_null()
        {
            self.set_manager(&id, m).await?;
        }
        Ok(Created::New(id))
    }

    async fn update(
        &self,
        reference: &str,
        changes: &BTreeMap<String, AttrValue>,
    ) -> Result<(), TargetError> {
        if !valid_reference(reference) {
            return Err(self.no_such(reference));
        }
        let body = self.body_of(changes)?;
        if !body.is_empty() {
            let path = format!("users/{}", enc(reference));
            let reply = self
                .send(Method::PATCH, &path, Some(&Value::Object(body)), false)
                .await?;
            match reply.status {
                s if (200..300).contains(&s) => {}
                404 => return Err(self.no_such(reference)),
                _ => return Err(self.err(reply.refused("PATCH", &path))),
            }
        }
        if let Some(m) = changes.get("manager") {
            self.set_manager(reference, m).await?;
        }
        Ok(())
    }

    async fn set_enabled(&self, reference: &str, enabled: bool) -> Result<(), TargetError> {
        let ops = [Op::SetEnabled {
            reference: reference.to_owned(),
            enabled,
        }];
        self.one(&ops).await
    }

    async fn delete(&self, reference: &str) -> Result<(), TargetError> {
        self.one(&[Op::Delete {
            reference: reference.to_owned(),
        }])
        .await
    }

    async fn grant(&self, reference: &str, permission: &str) -> Result<(), TargetError> {
        self.one(&[Op::Grant {
            reference: reference.to_owned(),
            permission: permission.to_owned(),
        }])
        .await
    }

    async fn revoke(&self, reference: &str, permission: &str) -> Result<(), TargetError> {
        self.one(&[Op::Revoke {
            reference: reference.to_owned(),
            permission: permission.to_owned(),
        }])
        .await
    }

    async fn list_accounts(&self) -> Result<Vec<TargetAccount>, TargetError> {
        let rel = format!(
            "users?{}",
            query(&[
                ("$select", &self.select),
                ("$expand", "manager($select=id,userPrincipalName)"),
                ("$top", &self.page_size.to_string()),
            ])
        );
        let users = self.list(rel, false).await?;
        let mut memberships: HashMap<String, BTreeSet<String>> = HashMap::new();
        let groups = self
            .list(
                format!(
                    "groups?{}",
                    query(&[("$select", "id,displayName"), ("$top", "999")])
                ),
                false,
            )
            .await?;
        for g in &groups {
            let (Some(gid), Some(name)) = (
                g.get("id").and_then(Value::as_str),
                g.get("displayName").and_then(Value::as_str),
            ) else {
                continue;
            };
            let rel = format!(
                "groups/{}/members?{}",
                enc(gid),
                query(&[("$select", "id"), ("$top", "999")])
            );
            for m in self.list(rel, false).await? {
                if let Some(id) = m.get("id").and_then(Value::as_str) {
                    memberships
                        .entry(id.to_owned())
                        .or_default()
                        .insert(name.to_owned());
                }
            }
        }
        Ok(users
            .iter()
            .filter_map(|u| {
                let id = u.get("id").and_then(Value::as_str)?;
                self.account_of(u, memberships.remove(id).unwrap_or_default())
            })
            .collect())
    }

    async fn list_permissions(&self) -> Result<Vec<String>, TargetError> {
        let groups = self
            .list(
                format!(
                    "groups?{}",
                    query(&[("$select", "id,displayName"), ("$top", "999")])
                ),
                false,
            )
            .await?;
        let names: BTreeSet<String> = groups
            .iter()
            .filter_map(|g| g.get("displayName").and_then(Value::as_str))
            .map(str::to_owned)
            .collect();
        Ok(names.into_iter().collect())
    }

    async fn is_unique(
        &self,
        attribute: &str,
        value: &str,
        except: Option<&str>,
    ) -> Result<bool, TargetError> {
        let users = self.find_users(attribute, value).await?;
        let lower = value.to_lowercase();
        Ok(!users.iter().any(|u| {
            u.get("id").and_then(Value::as_str) != except
                && u.get(attribute)
                    .and_then(Value::as_str)
                    .is_some_and(|v| v.to_lowercase() == lower)
        }))
    }

    async fn apply(&self, ops: &[Op]) -> Vec<Result<Done, TargetError>> {
        if !self.batching {
            let mut out = Vec::with_capacity(ops.len());
            for op in ops {
                out.push(self.apply_one(op).await);
            }
            return out;
        }
        let mut out = Vec::with_capacity(ops.len());
        let mut i = 0;
        // Runs of creates and runs of changes, in order: a change never overtakes a create.
        while i < ops.len() {
            let creates = matches!(ops[i], Op::Create(_));
            let mut j = i;
            while j < ops.len() && matches!(ops[j], Op::Create(_)) == creates {
                j += 1;
            }
            if creates {
                out.extend(self.apply_creates(&ops[i..j]).await);
            } else {
                out.extend(self.apply_changes(&ops[i..j]).await);
            }
            i = j;
        }
        out
    }
}

impl GraphTarget {
    /// One change operation, through the same path a batch takes (without `$batch`).
    async fn one(&self, ops: &[Op]) -> Result<(), TargetError> {
        let Some(op) = ops.first() else { return Ok(()) };
        let Some(step) = self.change_step(0, op).await? else {
            return Ok(());
        };
        let reference = match op {
            Op::Update { reference, .. }
            | Op::SetEnabled { reference, .. }
            | Op::Delete { reference }
            | Op::Grant { reference, .. }
            | Op::Revoke { reference, .. } => reference.as_str(),
            Op::Create(_) => "",
        };
        let method = Method::from_bytes(step.item.method.as_bytes())
            .map_err(|_| self.rejected("bad method"))?;
        let rel = step.item.url.trim_start_matches('/').to_owned();
        let reply = self
            .send(method, &rel, step.item.body.as_ref(), false)
            .await?;
        self.read_step(&step, &reply, reference)
    }
}
