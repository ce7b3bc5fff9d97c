//! How SCIM Users and Groups live in the built-in directory's tables, and the SQL that reads
//! and writes them.
//!
//! # Mapping onto the directory
//!
//! The endpoint serves one directory target (by name) of the store file.
//!
//! * A **User** is a `dir_accounts` row of that target. Its SCIM `id` is the account's
//!   `reference`: the person's external id for accounts koppel made, a random UUID for users
//!   a client POSTs (whose `person` is empty until koppel correlates and adopts them).
//!   `active` is the `enabled` column. The paths of the [`Mapping`] (by default `userName` ↔
//!   `username`, `displayName` ↔ `display_name`, `name.givenName` ↔ `given_name`,
//!   `name.familyName` ↔ `family_name`, `title` ↔ `title`, `emails[type eq "work"].value` ↔
//!   `email`, `phoneNumbers[type eq "work"].value` ↔ `phone`, and the enterprise extension's
//!   `employeeNumber`, `department`, `costCenter` ↔ `employee_id`, `department`,
//!   `cost_centre`) live in the account's attributes, so koppel and SCIM clients see one
//!   value; koppel's other attributes are not shown. Everything else a client sends (more
//!   e-mails, addresses, `externalId` …) is kept in `scim_users.resource`, without the mapped
//!   paths, keyed by account id and reference (a stale row of a deleted account never
//!   attaches to a new account that reuses the id). `password` is accepted and never stored.
//! * A **Group** is a `dir_groups` row (`displayName` is its `name`, unique per target, and
//!   its SCIM `id` the row id); `members` are `dir_memberships` (Users only: the directory
//!   has no nested groups). SCIM-only data of groups (`externalId`) is in `scim_groups`.
//! * `meta.created` and `meta.lastModified` are kept in the `scim_*` rows, written by SCIM
//!   requests only: an account koppel made and no client touched has neither, and a change
//!   koppel makes does not move `lastModified`. `meta.version` is a hash of the rendered
//!   resource, so it changes with every change, whoever made it.
//! * Writes keep the directory's key table (`dir_account_keys`) right for every indexed
//!   attribute, as the directory's own batches do; the `userName` attribute is indexed when
//!   the endpoint starts, so `userName eq "…"` is one index lookup.
//!
//! The `scim_*` tables have their own version (`scim_schema`), stepped like the directory's
//! (`SCIM_STEPS`, only ever appended). The endpoint also adds an index on
//! `dir_memberships (group_id)` (`CREATE INDEX IF NOT EXISTS` at start): reading a group's
//! members would otherwise scan every membership.

use std::collections::{BTreeSet, HashMap};

use koppel_connectors::directory::DirectoryTarget;
use koppel_connectors::target::Target;
use koppel_core::AttrValue;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use sqlx::{SqliteConnection, SqlitePool};

use crate::error::ScimError;
use crate::resource::Mapping;
use crate::schema;

/// The `scim_*` schema, one entry per version. Only ever append.
const SCIM_STEPS: &[&[&str]] = &[&[
    "CREATE TABLE scim_users (
        account_id INTEGER PRIMARY KEY,
        reference TEXT NOT NULL,
        resource TEXT NOT NULL,
        external_id TEXT,
        created TEXT NOT NULL,
        last_modified TEXT NOT NULL
    )",
    "CREATE INDEX scim_users_external_id ON scim_users (external_id)",
    "CREATE TABLE scim_groups (
        group_id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        resource TEXT NOT NULL,
        external_id TEXT,
        created TEXT NOT NULL,
        last_modified TEXT NOT NULL
    )",
]];

macro_rules! select_users {
    () => {
        "SELECT a.id, a.reference, a.person, a.attributes, a.enabled, s.resource, s.created,
                s.last_modified,
                (SELECT json_group_array(json_array(g.id, g.name)) FROM dir_memberships m
                   JOIN dir_groups g ON g.id = m.group_id WHERE m.account_id = a.id)
           FROM dir_accounts a
           LEFT JOIN scim_users s ON s.account_id = a.id AND s.reference = a.reference "
    };
}

macro_rules! select_groups {
    () => {
        "SELECT g.id, g.name, s.resource, s.created, s.last_modified,
                (SELECT json_group_array(a.reference)
                   FROM dir_memberships m JOIN dir_accounts a ON a.id = m.account_id
                  WHERE m.group_id = g.id)
           FROM dir_groups g
           LEFT JOIN scim_groups s ON s.group_id = g.id AND s.name = g.name "
    };
}

type UserTuple = (
    i64,
    String,
    String,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
);
type GroupTuple = (
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
);

/// SCIM-only data of a resource.
#[derive(Debug, Clone)]
pub struct Extra {
    pub resource: Map<String, Value>,
    pub created: String,
    pub last_modified: String,
}

/// A directory account as the endpoint reads it.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: i64,
    pub reference: String,
    pub person: String,
    pub attributes: Map<String, Value>,
    pub enabled: bool,
    pub extra: Option<Extra>,
    /// (group id, name)
    pub groups: Vec<(i64, String)>,
}

/// A directory group as the endpoint reads it.
#[derive(Debug, Clone)]
pub struct GroupRow {
    pub id: i64,
    pub name: String,
    pub extra: Option<Extra>,
    /// Account references, sorted.
    pub members: Vec<String>,
}

fn decode_obj(text: &str) -> Result<Map<String, Value>, sqlx::Error> {
    serde_json::from_str(text).map_err(|e| {
        sqlx::Error::Decode(format!("a directory row is not the JSON koppel wrote: {e}").into())
    })
}

fn extra(
    resource: Option<String>,
    created: Option<String>,
    modified: Option<String>,
) -> Result<Option<Extra>, sqlx::Error> {
    match (resource, created, modified) {
        (Some(r), Some(c), Some(m)) => Ok(Some(Extra {
            resource: decode_obj(&r)?,
            created: c,
            last_modified: m,
        })),
        _ => Ok(None),
    }
}

fn user_row(t: UserTuple) -> Result<UserRow, sqlx::Error> {
    let (id, reference, person, attributes, enabled, resource, created, modified, groups) = t;
    let groups: Vec<(i64, String)> =
        serde_json::from_str(&groups).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(UserRow {
        id,
        reference,
        person,
        attributes: decode_obj(&attributes)?,
        enabled: enabled != 0,
        extra: extra(resource, created, modified)?,
        groups,
    })
}

fn group_row(t: GroupTuple) -> Result<GroupRow, sqlx::Error> {
    let (id, name, resource, created, modified, members) = t;
    let mut members: Vec<String> =
        serde_json::from_str(&members).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    members.sort();
    Ok(GroupRow {
        id,
        name,
        extra: extra(resource, created, modified)?,
        members,
    })
}

/// The current time as SCIM writes it. The one clock read of the endpoint: `meta` needs
/// the wall-clock time of each change.
#[allow(clippy::disallowed_methods)]
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The weak ETag of a rendered resource (without `meta`).
pub fn etag(resource: &Map<String, Value>) -> String {
    let digest = Sha256::digest(serde_json::to_vec(resource).unwrap_or_default());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("W/\"{hex}\"")
}

/// The case-folded keys of a value, as the directory indexes them.
fn folded_values(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.to_lowercase()],
        Value::Bool(b) => vec![b.to_string()],
        Value::Number(n) => vec![n.to_string()],
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_lowercase)
            .collect(),
        _ => Vec::new(),
    }
}

fn keys_of(attributes: &Map<String, Value>, indexed: &[String]) -> BTreeSet<(String, String)> {
    let mut keys = BTreeSet::new();
    for name in indexed {
        if let Some(v) = attributes.get(name) {
            for f in folded_values(v) {
                keys.insert((name.clone(), f));
            }
        }
    }
    keys
}

/// What a write sets on an account.
#[derive(Debug, Clone)]
pub struct UserWrite {
    pub attributes: Map<String, Value>,
    pub enabled: bool,
    pub resource: Map<String, Value>,
    pub external_id: Option<String>,
}

/// What a write sets on a group.
#[derive(Debug, Clone)]
pub struct GroupWrite {
    pub name: String,
    pub members: Vec<String>,
    pub resource: Map<String, Value>,
    pub external_id: Option<String>,
}

/// The built-in directory as the SCIM endpoint sees it.
#[derive(Debug, Clone)]
pub struct Directory {
    pool: SqlitePool,
    target: String,
    mapping: std::sync::Arc<Mapping>,
    /// Writers of this process take turns here before `BEGIN IMMEDIATE`. Without it,
    /// concurrent requests meet SQLite's busy handler, which sleeps 1, 2, 5, 10… ms
    /// between retries: 64 concurrent POSTs spent most of their time asleep (p50 47 ms).
    /// A queue wakes the next writer the moment the last one commits. Writers in other
    /// processes (a `koppel apply`) still wait through the busy timeout.
    writer: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// Creates go to one task that writes whatever has queued up in one transaction with
    /// a handful of set-based statements (group commit): SQLite has one writer, and a
    /// create on its own was 7 statements, each a hand-off to sqlx's connection thread.
    creates: tokio::sync::mpsc::UnboundedSender<CreateJob>,
}

/// One queued `POST /Users`.
#[derive(Debug)]
struct CreateJob {
    write: UserWrite,
    reply: tokio::sync::oneshot::Sender<Result<String, ScimError>>,
}

/// At most this many creates share a transaction, so that updates and deletes queued
/// behind a long run of creates get their turn.
const MAX_CREATE_BATCH: usize = 512;

impl Directory {
    /// Opens directory target `target` in the store behind `pool`: the directory's tables
    /// (created or upgraded by the directory itself), the `scim_*` tables, the index on the
    /// `userName` attribute.
    pub async fn open(
        pool: SqlitePool,
        target: &str,
        mapping: Mapping,
    ) -> Result<Directory, String> {
        let dir = DirectoryTarget::new(target, pool.clone())
            .await
            .map_err(|e| e.to_string())?;
        // A correlation lookup indexes the attribute (and back-fills it) if nobody has yet.
        dir.correlate(&mapping.user_name, &AttrValue::Text(String::new()))
            .await
            .map_err(|e| e.to_string())?;
        upgrade(&pool)
            .await
            .map_err(|e| format!("SCIM tables: {e}"))?;
        let (creates, queue) = tokio::sync::mpsc::unbounded_channel();
        let dir = Directory {
            pool,
            target: target.to_owned(),
            mapping: std::sync::Arc::new(mapping),
            writer: std::sync::Arc::default(),
            creates,
        };
        // The task holds the parts it writes with, not a `Directory`: it ends when the
        // last `Directory` (the last sender) is dropped.
        tokio::spawn(create_batches(
            CreateWriter {
                pool: dir.pool.clone(),
                target: dir.target.clone(),
                user_name: dir.mapping.user_name.clone(),
                writer: dir.writer.clone(),
            },
            queue,
        ));
        Ok(dir)
    }

    pub fn mapping(&self) -> &Mapping {
        &self.mapping
    }

    pub async fn user(&self, reference: &str) -> Result<Option<UserRow>, ScimError> {
        let mut conn = self.pool.acquire().await?;
        Ok(self.user_in(&mut conn, reference).await?)
    }

    async fn user_in(
        &self,
        conn: &mut SqliteConnection,
        reference: &str,
    ) -> Result<Option<UserRow>, sqlx::Error> {
        let row: Option<UserTuple> = sqlx::query_as(concat!(
            select_users!(),
            "WHERE a.target = ?1 AND a.reference = ?2"
        ))
        .bind(&self.target)
        .bind(reference)
        .fetch_optional(&mut *conn)
        .await?;
        row.map(user_row).transpose()
    }

    /// Users whose `userName` folds to `folded` (an index lookup).
    pub async fn users_by_user_name(&self, user_name: &str) -> Result<Vec<UserRow>, ScimError> {
        let rows: Vec<UserTuple> = sqlx::query_as(concat!(
            select_users!(),
            // `+a.target`: without it SQLite walks the target's whole (target, reference)
            // index instead of looking the key up first.
            "WHERE +a.target = ?1 AND a.id IN (SELECT account_id FROM dir_account_keys
                                              WHERE attribute = ?2 AND folded = ?3)"
        ))
        .bind(&self.target)
        .bind(&self.mapping.user_name)
        .bind(user_name.to_lowercase())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(user_row).collect::<Result<_, _>>()?)
    }

    pub async fn users_by_external_id(&self, external_id: &str) -> Result<Vec<UserRow>, ScimError> {
        let rows: Vec<UserTuple> = sqlx::query_as(concat!(
            select_users!(),
            "WHERE a.target = ?1 AND s.external_id = ?2"
        ))
        .bind(&self.target)
        .bind(external_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(user_row).collect::<Result<_, _>>()?)
    }

    /// Every user, in id order.
    pub async fn all_users(&self) -> Result<Vec<UserRow>, ScimError> {
        let rows: Vec<UserTuple> = sqlx::query_as(concat!(
            select_users!(),
            "WHERE a.target = ?1 ORDER BY a.id"
        ))
        .bind(&self.target)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(user_row).collect::<Result<_, _>>()?)
    }

    /// One page of users in id order, and how many there are.
    pub async fn user_page(
        &self,
        offset: i64,
        limit: i64,
    ) -> Result<(i64, Vec<UserRow>), ScimError> {
        let mut conn = self.pool.acquire().await?;
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM dir_accounts WHERE target = ?1")
            .bind(&self.target)
            .fetch_one(&mut *conn)
            .await?;
        if limit == 0 {
            return Ok((total, Vec::new()));
        }
        let rows: Vec<UserTuple> = sqlx::query_as(concat!(
            select_users!(),
            "WHERE a.target = ?1 ORDER BY a.id LIMIT ?2 OFFSET ?3"
        ))
        .bind(&self.target)
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *conn)
        .await?;
        Ok((
            total,
            rows.into_iter().map(user_row).collect::<Result<_, _>>()?,
        ))
    }

    async fn indexed(&self, conn: &mut SqliteConnection) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT attribute FROM dir_indexed WHERE target = ?1")
            .bind(&self.target)
            .fetch_all(&mut *conn)
            .await
    }

    async fn check_user_name(
        &self,
        conn: &mut SqliteConnection,
        attributes: &Map<String, Value>,
        except: Option<i64>,
    ) -> Result<(), ScimError> {
        let Some(user_name) = attributes.get(&self.mapping.user_name) else {
            return Ok(());
        };
        for folded in folded_values(user_name) {
            let taken: Option<i64> = sqlx::query_scalar(
                "SELECT a.id FROM dir_account_keys k JOIN dir_accounts a ON a.id = k.account_id
                  WHERE k.attribute = ?1 AND k.folded = ?2 AND a.target = ?3
                    AND a.id <> ?4 LIMIT 1",
            )
            .bind(&self.mapping.user_name)
            .bind(&folded)
            .bind(&self.target)
            .bind(except.unwrap_or(-1))
            .fetch_optional(&mut *conn)
            .await?;
            if taken.is_some() {
                return Err(ScimError::uniqueness(format!(
                    "userName {user_name} is already taken"
                )));
            }
        }
        Ok(())
    }

    async fn write_keys(
        conn: &mut SqliteConnection,
        id: i64,
        before: &BTreeSet<(String, String)>,
        after: &BTreeSet<(String, String)>,
    ) -> Result<(), sqlx::Error> {
        for (a, f) in before.difference(after) {
            sqlx::query("DELETE FROM dir_account_keys WHERE attribute = ?1 AND folded = ?2 AND account_id = ?3")
                .bind(a)
                .bind(f)
                .bind(id)
                .execute(&mut *conn)
                .await?;
        }
        for (a, f) in after.difference(before) {
            sqlx::query("INSERT OR IGNORE INTO dir_account_keys (attribute, folded, account_id) VALUES (?1, ?2, ?3)")
                .bind(a)
                .bind(f)
                .bind(id)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    async fn write_extra(
        conn: &mut SqliteConnection,
        table: Table,
        id: i64,
        key: &str,
        resource: &Map<String, Value>,
        external_id: Option<&str>,
        now: &str,
    ) -> Result<(), sqlx::Error> {
        let sql = match table {
            Table::Users => {
                "INSERT INTO scim_users (account_id, reference, resource, external_id, created, last_modified)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)
                 ON CONFLICT (account_id) DO UPDATE SET reference = excluded.reference,
                    resource = excluded.resource, external_id = excluded.external_id,
                    last_modified = excluded.last_modified,
                    created = CASE WHEN scim_users.reference = excluded.reference
                                   THEN scim_users.created ELSE excluded.created END"
            }
            Table::Groups => {
                "INSERT INTO scim_groups (group_id, name, resource, external_id, created, last_modified)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)
                 ON CONFLICT (group_id) DO UPDATE SET name = excluded.name,
                    resource = excluded.resource, external_id = excluded.external_id,
                    last_modified = excluded.last_modified"
            }
        };
        sqlx::query(sql)
            .bind(id)
            .bind(key)
            .bind(Value::Object(resource.clone()).to_string())
            .bind(external_id)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Creates a user; gives its reference. Concurrent creates share a transaction.
    pub async fn create_user(&self, write: UserWrite) -> Result<String, ScimError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.creates
            .send(CreateJob { write, reply })
            .map_err(|_| ScimError::internal("the directory's writer has stopped"))?;
        answer
            .await
            .map_err(|_| ScimError::internal("the directory's writer has stopped"))?
    }

    /// Changes user `reference` to what `change` makes of its current row (in one
    /// transaction, so an `If-Match` check inside `change` holds for the write).
    pub async fn update_user<F>(&self, reference: &str, change: F) -> Result<(), ScimError>
    where
        F: FnOnce(&UserRow) -> Result<UserWrite, ScimError>,
    {
        let now = now();
        let _turn = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let Some(row) = self.user_in(&mut tx, reference).await? else {
            return Err(ScimError::not_found(format!("no User {reference}")));
        };
        let write = change(&row)?;
        // koppel's attributes the mapping does not cover stay as they are.
        let mut attributes = row.attributes.clone();
        for e in &self.mapping.entries {
            attributes.remove(&e.attribute);
        }
        attributes.extend(write.attributes);
        self.check_user_name(&mut tx, &attributes, Some(row.id))
            .await?;
        sqlx::query("UPDATE dir_accounts SET attributes = ?1, enabled = ?2 WHERE id = ?3")
            .bind(Value::Object(attributes.clone()).to_string())
            .bind(i64::from(write.enabled))
            .bind(row.id)
            .execute(&mut *tx)
            .await?;
        let indexed = self.indexed(&mut tx).await?;
        Self::write_keys(
            &mut tx,
            row.id,
            &keys_of(&row.attributes, &indexed),
            &keys_of(&attributes, &indexed),
        )
        .await?;
        Self::write_extra(
            &mut tx,
            Table::Users,
            row.id,
            reference,
            &write.resource,
            write.external_id.as_deref(),
            &now,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes user `reference` after `check` agreed, with its memberships and keys.
    pub async fn delete_user<F>(&self, reference: &str, check: F) -> Result<(), ScimError>
    where
        F: FnOnce(&UserRow) -> Result<(), ScimError>,
    {
        let _turn = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let Some(row) = self.user_in(&mut tx, reference).await? else {
            return Err(ScimError::not_found(format!("no User {reference}")));
        };
        check(&row)?;
        let indexed = self.indexed(&mut tx).await?;
        Self::write_keys(
            &mut tx,
            row.id,
            &keys_of(&row.attributes, &indexed),
            &BTreeSet::new(),
        )
        .await?;
        for sql in [
            "DELETE FROM dir_memberships WHERE account_id = ?1",
            "DELETE FROM dir_accounts WHERE id = ?1",
            "DELETE FROM scim_users WHERE account_id = ?1",
        ] {
            sqlx::query(sql).bind(row.id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn group(&self, id: i64) -> Result<Option<GroupRow>, ScimError> {
        let mut conn = self.pool.acquire().await?;
        Ok(self.group_in(&mut conn, id).await?)
    }

    async fn group_in(
        &self,
        conn: &mut SqliteConnection,
        id: i64,
    ) -> Result<Option<GroupRow>, sqlx::Error> {
        let row: Option<GroupTuple> = sqlx::query_as(concat!(
            select_groups!(),
            "WHERE g.target = ?1 AND g.id = ?2"
        ))
        .bind(&self.target)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        row.map(group_row).transpose()
    }

    /// Every group, in id order.
    pub async fn all_groups(&self) -> Result<Vec<GroupRow>, ScimError> {
        let rows: Vec<GroupTuple> = sqlx::query_as(concat!(
            select_groups!(),
            "WHERE g.target = ?1 ORDER BY g.id"
        ))
        .bind(&self.target)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(group_row).collect::<Result<_, _>>()?)
    }

    /// Groups named `name` exactly (the name is the unique key).
    pub async fn groups_by_name(&self, name: &str) -> Result<Vec<GroupRow>, ScimError> {
        let rows: Vec<GroupTuple> = sqlx::query_as(concat!(
            select_groups!(),
            "WHERE g.target = ?1 AND g.name = ?2 COLLATE NOCASE"
        ))
        .bind(&self.target)
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(group_row).collect::<Result<_, _>>()?)
    }

    /// The account ids of member references; an unknown one is `invalidValue`.
    async fn member_ids(
        &self,
        conn: &mut SqliteConnection,
        members: &[String],
    ) -> Result<BTreeSet<i64>, ScimError> {
        let found: Vec<(i64, String)> = sqlx::query_as(
            "SELECT a.id, a.reference FROM json_each(?2) j
               CROSS JOIN dir_accounts a ON a.target = ?1 AND a.reference = j.value",
        )
        .bind(&self.target)
        .bind(Value::from(members.to_vec()).to_string())
        .fetch_all(&mut *conn)
        .await?;
        let known: HashMap<&str, i64> = found.iter().map(|(id, r)| (r.as_str(), *id)).collect();
        let mut ids = BTreeSet::new();
        for m in members {
            match known.get(m.as_str()) {
                Some(id) => {
                    ids.insert(*id);
                }
                None => {
                    return Err(ScimError::invalid_value(format!(
                        "member {m} is no User of this directory (groups cannot be members)"
                    )));
                }
            }
        }
        Ok(ids)
    }

    async fn check_group_name(
        &self,
        conn: &mut SqliteConnection,
        name: &str,
        except: Option<i64>,
    ) -> Result<(), ScimError> {
        let taken: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM dir_groups WHERE target = ?1 AND name = ?2 AND id <> ?3",
        )
        .bind(&self.target)
        .bind(name)
        .bind(except.unwrap_or(-1))
        .fetch_optional(&mut *conn)
        .await?;
        if taken.is_some() {
            return Err(ScimError::uniqueness(format!(
                "a group named {name:?} exists"
            )));
        }
        Ok(())
    }

    async fn set_members(
        conn: &mut SqliteConnection,
        group: i64,
        want: &BTreeSet<i64>,
    ) -> Result<(), sqlx::Error> {
        let have: Vec<i64> =
            sqlx::query_scalar("SELECT account_id FROM dir_memberships WHERE group_id = ?1")
                .bind(group)
                .fetch_all(&mut *conn)
                .await?;
        let have: BTreeSet<i64> = have.into_iter().collect();
        for gone in have.difference(want) {
            sqlx::query("DELETE FROM dir_memberships WHERE account_id = ?1 AND group_id = ?2")
                .bind(gone)
                .bind(group)
                .execute(&mut *conn)
                .await?;
        }
        let added: Vec<i64> = want.difference(&have).copied().collect();
        if !added.is_empty() {
            sqlx::query(
                "INSERT OR IGNORE INTO dir_memberships (account_id, group_id)
                 SELECT value, ?2 FROM json_each(?1)",
            )
            .bind(Value::from(added).to_string())
            .bind(group)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    pub async fn create_group(&self, write: GroupWrite) -> Result<i64, ScimError> {
        let now = now();
        let _turn = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        self.check_group_name(&mut tx, &write.name, None).await?;
        let ids = self.member_ids(&mut tx, &write.members).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO dir_groups (target, name) VALUES (?1, ?2) RETURNING id",
        )
        .bind(&self.target)
        .bind(&write.name)
        .fetch_one(&mut *tx)
        .await?;
        Self::set_members(&mut tx, id, &ids).await?;
        Self::write_extra(
            &mut tx,
            Table::Groups,
            id,
            &write.name,
            &write.resource,
            write.external_id.as_deref(),
            &now,
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn update_group<F>(&self, id: i64, change: F) -> Result<(), ScimError>
    where
        F: FnOnce(&GroupRow) -> Result<GroupWrite, ScimError>,
    {
        let now = now();
        let _turn = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let Some(row) = self.group_in(&mut tx, id).await? else {
            return Err(ScimError::not_found(format!("no Group {id}")));
        };
        let write = change(&row)?;
        self.check_group_name(&mut tx, &write.name, Some(id))
            .await?;
        let ids = self.member_ids(&mut tx, &write.members).await?;
        sqlx::query("UPDATE dir_groups SET name = ?1 WHERE id = ?2")
            .bind(&write.name)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        Self::set_members(&mut tx, id, &ids).await?;
        Self::write_extra(
            &mut tx,
            Table::Groups,
            id,
            &write.name,
            &write.resource,
            write.external_id.as_deref(),
            &now,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_group<F>(&self, id: i64, check: F) -> Result<(), ScimError>
    where
        F: FnOnce(&GroupRow) -> Result<(), ScimError>,
    {
        let _turn = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let Some(row) = self.group_in(&mut tx, id).await? else {
            return Err(ScimError::not_found(format!("no Group {id}")));
        };
        check(&row)?;
        for sql in [
            "DELETE FROM dir_memberships WHERE group_id = ?1",
            "DELETE FROM dir_groups WHERE id = ?1",
            "DELETE FROM scim_groups WHERE group_id = ?1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Table {
    Users,
    Groups,
}

async fn upgrade(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS scim_schema (version INTEGER NOT NULL)")
        .execute(&mut *tx)
        .await?;
    let found: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM scim_schema")
        .fetch_one(&mut *tx)
        .await?;
    let found = found.unwrap_or(0);
    let wanted = SCIM_STEPS.len() as i64;
    if found > wanted {
        return Err(sqlx::Error::Protocol(format!(
            "the store has SCIM schema version {found}, newer than {wanted}: upgrade koppel"
        )));
    }
    for step in SCIM_STEPS.iter().skip(found.max(0) as usize) {
        for statement in *step {
            sqlx::query(*statement).execute(&mut *tx).await?;
        }
    }
    if found < wanted {
        sqlx::query("DELETE FROM scim_schema")
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO scim_schema (version) VALUES (?1)")
            .bind(wanted)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(
        "CREATE INDEX IF NOT EXISTS scim_memberships_by_group ON dir_memberships (group_id)",
    )
    .execute(&mut *tx)
    .await?;
    // SCIM data of accounts and groups the directory deleted.
    sqlx::query(
        "DELETE FROM scim_users WHERE NOT EXISTS (SELECT 1 FROM dir_accounts a
           WHERE a.id = scim_users.account_id AND a.reference = scim_users.reference)",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM scim_groups WHERE NOT EXISTS (SELECT 1 FROM dir_groups g WHERE g.id = scim_groups.group_id)")
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// A user as SCIM JSON, `meta` included, and its version.
pub fn render_user(row: &UserRow, mapping: &Mapping, base: &str) -> Map<String, Value> {
    let mut r = row
        .extra
        .as_ref()
        .map(|e| e.resource.clone())
        .unwrap_or_default();
    mapping.overlay(&row.attributes, &mut r);
    r.insert("id".to_owned(), json!(row.reference));
    // `active` is the enabled column. A client that removed it (or never sent it) reads it
    // back unassigned, unless the account is disabled: that is always shown.
    if row.extra.is_none() || r.contains_key("active") || !row.enabled {
        r.insert("active".to_owned(), json!(row.enabled));
    }
    if !row.groups.is_empty() {
        let groups: Vec<Value> = row
            .groups
            .iter()
            .map(|(id, name)| {
                json!({
                    "value": id.to_string(),
                    "$ref": format!("{base}/Groups/{id}"),
                    "display": name,
                    "type": "direct",
                })
            })
            .collect();
        r.insert("groups".to_owned(), Value::Array(groups));
    }
    let mut schemas = vec![json!(schema::USER)];
    if r.contains_key(schema::ENTERPRISE) {
        schemas.push(json!(schema::ENTERPRISE));
    }
    r.insert("schemas".to_owned(), Value::Array(schemas));
    finish(
        r,
        "User",
        &format!("{base}/Users/{}", row.reference),
        row.extra.as_ref(),
    )
}

/// A group as SCIM JSON, `meta` included.
pub fn render_group(row: &GroupRow, base: &str) -> Map<String, Value> {
    let mut r = row
        .extra
        .as_ref()
        .map(|e| e.resource.clone())
        .unwrap_or_default();
    r.insert("id".to_owned(), json!(row.id.to_string()));
    r.insert("displayName".to_owned(), json!(row.name));
    if !row.members.is_empty() {
        let members: Vec<Value> = row
            .members
            .iter()
            // No `display`: the directory does not keep the one a client sends, and one
            // made up here would differ from it.
            .map(|reference| {
                json!({
                    "value": reference,
                    "$ref": format!("{base}/Users/{reference}"),
                    "type": "User",
                })
            })
            .collect();
        r.insert("members".to_owned(), Value::Array(members));
    }
    r.insert("schemas".to_owned(), json!([schema::GROUP]));
    finish(
        r,
        "Group",
        &format!("{base}/Groups/{}", row.id),
        row.extra.as_ref(),
    )
}

fn finish(
    mut r: Map<String, Value>,
    resource_type: &str,
    location: &str,
    extra: Option<&Extra>,
) -> Map<String, Value> {
    let version = etag(&r);
    let mut meta = json!({
        "resourceType": resource_type,
        "location": location,
        "version": version,
    });
    if let Some(e) = extra {
        meta["created"] = json!(e.created);
        meta["lastModified"] = json!(e.last_modified);
    }
    r.insert("meta".to_owned(), meta);
    r
}

/// What the create task writes with.
struct CreateWriter {
    pool: SqlitePool,
    target: String,
    user_name: String,
    writer: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// Takes whatever creates have queued (at least one, at most [`MAX_CREATE_BATCH`]) and
/// writes them in one transaction, until every sender is gone.
async fn create_batches(
    w: CreateWriter,
    mut queue: tokio::sync::mpsc::UnboundedReceiver<CreateJob>,
) {
    let mut jobs = Vec::with_capacity(MAX_CREATE_BATCH);
    while queue.recv_many(&mut jobs, MAX_CREATE_BATCH).await > 0 {
        let batch = std::mem::take(&mut jobs);
        let (replies, writes): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|j| (j.reply, j.write)).unzip();
        let outcome = {
            let _turn = w.writer.lock().await;
            write_creates(&w, &writes).await
        };
        match outcome {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                let message = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(ScimError::internal(format!(
                        "the directory could not be written: {message}"
                    ))));
                }
            }
        }
    }
}

/// Writes a batch of creates: one uniqueness query for all their `userName`s, then one
/// statement per table. A create whose name is taken (in the directory, or by an earlier
/// create of the same batch) gets a `uniqueness` error and writes nothing; the others go
/// on. A database error fails the whole batch and writes none of it.
async fn write_creates(
    w: &CreateWriter,
    writes: &[UserWrite],
) -> Result<Vec<Result<String, ScimError>>, sqlx::Error> {
    let now = now();
    let mut tx = w.pool.begin_with("BEGIN IMMEDIATE").await?;
    let names: Vec<Vec<String>> = writes
        .iter()
        .map(|wr| {
            wr.attributes
                .get(&w.user_name)
                .map(folded_values)
                .unwrap_or_default()
        })
        .collect();
    let asked: Vec<&String> = names.iter().flatten().collect();
    let taken: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT k.folded FROM dir_account_keys k JOIN dir_accounts a ON a.id = k.account_id
          WHERE k.attribute = ?1 AND a.target = ?2
            AND k.folded IN (SELECT value FROM json_each(?3))",
    )
    .bind(&w.user_name)
    .bind(&w.target)
    .bind(serde_json::to_string(&asked).unwrap_or_else(|_| "[]".to_owned()))
    .fetch_all(&mut *tx)
    .await?;
    let mut taken: std::collections::HashSet<String> = taken.into_iter().collect();
    let indexed: Vec<String> =
        sqlx::query_scalar("SELECT attribute FROM dir_indexed WHERE target = ?1")
            .bind(&w.target)
            .fetch_all(&mut *tx)
            .await?;

    let mut results = Vec::with_capacity(writes.len());
    let mut rows = Vec::new();
    for (wr, folded) in writes.iter().zip(&names) {
        if folded.iter().any(|f| taken.contains(f)) {
            let shown = wr.attributes.get(&w.user_name).cloned().unwrap_or_default();
            results.push(Err(ScimError::uniqueness(format!(
                "userName {shown} is already taken"
            ))));
            continue;
        }
        taken.extend(folded.iter().cloned());
        let reference = uuid::Uuid::new_v4().simple().to_string();
        rows.push((reference.clone(), wr));
        results.push(Ok(reference));
    }
    if rows.is_empty() {
        tx.rollback().await?;
        return Ok(results);
    }
    // Each row's JSON text is itself a JSON string in the array, so `->>` gives back exactly
    // the text the one-at-a-time path stored.
    let accounts: Vec<Value> = rows
        .iter()
        .map(|(r, wr)| {
            json!([
                r,
                Value::Object(wr.attributes.clone()).to_string(),
                i64::from(wr.enabled)
            ])
        })
        .collect();
    let ids: Vec<(i64, String)> = sqlx::query_as(
        "INSERT INTO dir_accounts (target, reference, person, attributes, enabled)
         SELECT ?1, value ->> 0, '', value ->> 1, value ->> 2 FROM json_each(?2)
         RETURNING id, reference",
    )
    .bind(&w.target)
    .bind(Value::Array(accounts).to_string())
    .fetch_all(&mut *tx)
    .await?;
    let ids: HashMap<String, i64> = ids.into_iter().map(|(id, r)| (r, id)).collect();
    let mut keys = Vec::new();
    let mut extras = Vec::new();
    for (reference, wr) in &rows {
        let Some(id) = ids.get(reference) else {
            return Err(sqlx::Error::Protocol(format!(
                "the insert of account {reference} returned no id"
            )));
        };
        for (a, f) in keys_of(&wr.attributes, &indexed) {
            keys.push(json!([a, f, id]));
        }
        extras.push(json!([
            id,
            reference,
            Value::Object(wr.resource.clone()).to_string(),
            wr.external_id
        ]));
    }
    if !keys.is_empty() {
        sqlx::query(
            "INSERT OR IGNORE INTO dir_account_keys (attribute, folded, account_id)
             SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?1)",
        )
        .bind(Value::Array(keys).to_string())
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "INSERT INTO scim_users (account_id, reference, resource, external_id, created, last_modified)
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, ?2, ?2 FROM json_each(?1) WHERE true
         ON CONFLICT (account_id) DO UPDATE SET reference = excluded.reference,
            resource = excluded.resource, external_id = excluded.external_id,
            created = excluded.created, last_modified = excluded.last_modified",
    )
    .bind(Value::Array(extras).to_string())
    .bind(&now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(results)
}
