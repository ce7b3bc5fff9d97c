//! koppel's built-in directory: accounts, groups and memberships kept in koppel's own SQLite
//! store, for organisations without a directory of their own. It implements [`Target`].
//!
//! # Storage
//!
//! The tables live in the store's database next to the store's own, all prefixed `dir_`, and
//! carry the target's name so several directory targets can share one file. They have their
//! own small versioned schema ([`SCHEMA_STEPS`], recorded in `dir_schema`) rather than sqlx
//! migrations, because two migrators on one database would fight over `_sqlx_migrations`.
//!
//! * `dir_accounts(id, target, reference, person, attributes, enabled)`: attributes are a JSON
//!   object (the serde form of [`AttrValue`]), read and written whole.
//! * `dir_indexed(target, attribute)`: the attributes somebody has looked accounts up by
//!   (correlation, `is_unique`). Only those are indexed, so a create with a dozen attributes
//!   writes two or three index rows rather than twelve. An attribute is indexed, and its
//!   existing values back-filled, the first time it is looked up.
//! * `dir_account_keys(attribute, folded, account_id)`: the values of indexed attributes,
//!   lower-cased (list attributes: each element), so lookups are case-insensitive.
//! * `dir_groups(id, target, name)` and `dir_memberships(account_id, group_id)`.
//!
//! # Batches
//!
//! [`Target::apply`] runs a whole batch in one `BEGIN IMMEDIATE` transaction without a round
//! trip per operation: it loads what the batch touches in a few bulk queries, carries out the
//! operations in memory in order (so each sees the ones before it and a failing one fails
//! alone), then writes the net changes in a few multi-row statements. Lists sent to SQLite
//! travel as one JSON array parameter, and rows come back as one JSON array: sqlx hands SQLite
//! rows over between threads one at a time, which costs more than the row itself. Accounts an
//! operation only enables, disables, grants or revokes are never decoded. The single-operation
//! methods are batches of one.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use koppel_core::AttrValue;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use sqlx::{SqliteConnection, SqlitePool};

use crate::target::{CreateRequest, Created, Done, Op, Target, TargetAccount, TargetError};

/// The directory's schema, one entry per version: version `n` is reached by running the
/// statements of entry `n - 1`. Only ever append; never edit a step that has shipped.
pub const SCHEMA_STEPS: &[&[&str]] = &[&[
    "CREATE TABLE dir_accounts (
        id INTEGER PRIMARY KEY,
        target TEXT NOT NULL,
        reference TEXT NOT NULL,
        person TEXT NOT NULL,
        attributes TEXT NOT NULL,
        enabled INTEGER NOT NULL,
        UNIQUE (target, reference)
    )",
    "CREATE TABLE dir_indexed (
        target TEXT NOT NULL,
        attribute TEXT NOT NULL,
        PRIMARY KEY (target, attribute)
    ) WITHOUT ROWID",
    // No index by account: a batch deletes an account's keys by their full primary key,
    // computed from the attributes it loaded, which saves a second B-tree on the hot path.
    "CREATE TABLE dir_account_keys (
        attribute TEXT NOT NULL,
        folded TEXT NOT NULL,
        account_id INTEGER NOT NULL,
        PRIMARY KEY (attribute, folded, account_id)
    ) WITHOUT ROWID",
    "CREATE TABLE dir_groups (
        id INTEGER PRIMARY KEY,
        target TEXT NOT NULL,
        name TEXT NOT NULL,
        UNIQUE (target, name)
    )",
    "CREATE TABLE dir_memberships (
        account_id INTEGER NOT NULL,
        group_id INTEGER NOT NULL,
        PRIMARY KEY (account_id, group_id)
    ) WITHOUT ROWID",
]];

/// The select list of a query giving accounts as one JSON array of
/// `[id, reference, person, attributes, enabled]`, from a table aliased `a`. Built by
/// concatenation because the attributes are JSON already: SQLite's JSON functions would parse
/// and print each of them again.
macro_rules! select_accounts {
    () => {
        "SELECT '[' || coalesce(group_concat('[' || a.id || ',' || json_quote(a.reference)
            || ',' || json_quote(a.person) || ',' || a.attributes || ',' || a.enabled || ']',
            ','), '') || ']'"
    };
}

/// The built-in directory target. Cheap to clone: clones share the pool.
#[derive(Debug, Clone)]
pub struct DirectoryTarget {
    name: String,
    pool: SqlitePool,
    /// Attributes known to be indexed for this target. Indexing is never undone, so a stale
    /// cache only costs a redundant check.
    indexed: Arc<Mutex<HashSet<String>>>,
}

impl DirectoryTarget {
    /// A directory target named `name` in the database behind `pool`, creating or upgrading
    /// the `dir_` tables first. Targets with different names in one database never see each
    /// other's accounts or groups.
    pub async fn new(name: &str, pool: SqlitePool) -> Result<Self, TargetError> {
        if name.trim().is_empty() {
            return Err(TargetError::Config {
                target: name.to_owned(),
                message: "a directory target needs a non-empty name".to_owned(),
            });
        }
        let target = DirectoryTarget {
            name: name.to_owned(),
            pool,
            indexed: Arc::default(),
        };
        target.upgrade_schema().await?;
        Ok(target)
    }

    /// The schema version this build of koppel writes.
    pub fn schema_version() -> i64 {
        SCHEMA_STEPS.len() as i64
    }

    async fn upgrade_schema(&self) -> Result<(), TargetError> {
        let db = |e| self.db_error(e);
        // IMMEDIATE: two processes opening the same file at once must not both run a step.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        sqlx::query("CREATE TABLE IF NOT EXISTS dir_schema (version INTEGER NOT NULL)")
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let found: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM dir_schema")
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        let found = found.unwrap_or(0);
        let wanted = Self::schema_version();
        if found > wanted {
            return Err(TargetError::Config {
                target: self.name.clone(),
                message: format!(
                    "the database has directory schema version {found}, newer than the \
                     version {wanted} this koppel knows: upgrade koppel or use another store file"
                ),
            });
        }
        if found == wanted {
            return tx.commit().await.map_err(db);
        }
        for step in SCHEMA_STEPS.iter().skip(found.max(0) as usize) {
            for statement in *step {
                sqlx::query(*statement)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
        }
        sqlx::query("DELETE FROM dir_schema")
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query("INSERT INTO dir_schema (version) VALUES (?1)")
            .bind(wanted)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    fn db_error(&self, e: sqlx::Error) -> TargetError {
        TargetError::Unavailable {
            target: self.name.clone(),
            message: format!("directory store: {e}"),
        }
    }

    fn rejected(&self, message: String) -> TargetError {
        TargetError::Rejected {
            target: self.name.clone(),
            message,
        }
    }

    fn no_such_account(&self, reference: &str) -> TargetError {
        TargetError::NoSuchAccount {
            target: self.name.clone(),
            reference: reference.to_owned(),
        }
    }

    fn ambiguous(&self, attribute: &str, value: &AttrValue, references: &[&str]) -> TargetError {
        self.rejected(format!(
            "{} accounts have {attribute} = {value} ({}): correlation must find at most one; \
             remove or change the duplicates",
            references.len(),
            references.join(", ")
        ))
    }

    /// Makes sure lookups by `attribute` can use the key table.
    async fn ensure_indexed(&self, attribute: &str) -> Result<(), TargetError> {
        if lock(&self.indexed).contains(attribute) {
            return Ok(());
        }
        let db = |e| self.db_error(e);
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        index_attribute(&mut tx, &self.name, attribute)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        lock(&self.indexed).insert(attribute.to_owned());
        Ok(())
    }

    /// Turns stored accounts into what the trait returns, with their permissions.
    async fn with_permissions(
        &self,
        conn: &mut SqliteConnection,
        accounts: Vec<Stored>,
    ) -> Result<Vec<TargetAccount>, TargetError> {
        let ids: Vec<i64> = accounts.iter().map(|a| a.id).collect();
        let memberships: Vec<(i64, String)> = fetch_json(
            sqlx::query_scalar(PERMISSIONS_OF_ACCOUNTS)
                .bind(json_param(&ids).map_err(|e| self.db_error(e))?),
            conn,
        )
        .await
        .map_err(|e| self.db_error(e))?;
        Ok(with_memberships(accounts, memberships))
    }

    /// Runs `ops` as one transaction; the outer error is a store failure that undid the
    /// whole batch, the inner results are the operations' own.
    async fn run_batch(&self, ops: &[Op]) -> Result<Vec<Result<Done, TargetError>>, sqlx::Error> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut batch = Batch::start(self, &mut tx, ops).await?;
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            results.push(batch.run(&mut tx, op).await?);
        }
        batch.write(&mut tx).await?;
        tx.commit().await?;
        Ok(results)
    }

    async fn one(&self, op: Op) -> Result<Done, TargetError> {
        self.apply(std::slice::from_ref(&op))
            .await
            .pop()
            .unwrap_or_else(|| Err(self.rejected("the batch gave no result".to_owned())))
    }
}

fn lock(set: &Mutex<HashSet<String>>) -> std::sync::MutexGuard<'_, HashSet<String>> {
    // The set is only ever added to, so whatever a panicking holder left is still true.
    set.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Indexes `attribute` for `target` if nobody has yet, back-filling the key table from the
/// accounts that already have it. Needs the write lock.
async fn index_attribute(
    conn: &mut SqliteConnection,
    target: &str,
    attribute: &str,
) -> Result<(), sqlx::Error> {
    let added =
        sqlx::query("INSERT OR IGNORE INTO dir_indexed (target, attribute) VALUES (?1, ?2)")
            .bind(target)
            .bind(attribute)
            .execute(&mut *conn)
            .await?
            .rows_affected();
    if added == 0 {
        return Ok(());
    }
    let accounts = fetch_accounts(
        sqlx::query_scalar(concat!(
            select_accounts!(),
            " FROM dir_accounts a
                  WHERE a.target = ?1
                    AND EXISTS (SELECT 1 FROM json_each(a.attributes) j WHERE j.key = ?2)"
        ))
        .bind(target)
        .bind(attribute),
        conn,
    )
    .await?;
    let only = HashSet::from([attribute.to_owned()]);
    let mut keys: Vec<(String, String, i64)> = Vec::new();
    for account in &accounts {
        keys.extend(
            keys_of(&account.attributes, &only)
                .into_iter()
                .map(|(name, folded)| (name, folded, account.id)),
        );
    }
    keys.sort_unstable();
    INSERT_KEYS.run(conn, &key_params(&keys)).await
}

fn key_params(keys: &[(String, String, i64)]) -> Vec<Param<'_>> {
    keys.iter()
        .flat_map(|(name, folded, id)| [Param::Text(name), Param::Text(folded), Param::Int(*id)])
        .collect()
}

/// One bound value of a bulk statement.
#[derive(Debug, Clone, Copy)]
enum Param<'a> {
    Int(i64),
    Text(&'a str),
}

/// The row counts a bulk statement is prepared for. A batch is cut greedily into these, so
/// each connection prepares (and caches) a handful of statements instead of one per size.
const CHUNKS: [usize; 5] = [256, 64, 16, 4, 1];

/// A statement over many rows: `head`, `row` (a parenthesised list of `?`) once per row, then
/// `tail`. Multi-row `VALUES` with bound parameters: a measured 3 to 5 times faster in SQLite
/// than unpacking one JSON array parameter with `json_each`, and one round trip per chunk.
struct Bulk {
    head: &'static str,
    row: &'static str,
    tail: &'static str,
    arity: usize,
    sql: OnceLock<Vec<Arc<str>>>,
}

impl Bulk {
    const fn new(head: &'static str, row: &'static str, tail: &'static str, arity: usize) -> Bulk {
        Bulk {
            head,
            row,
            tail,
            arity,
            sql: OnceLock::new(),
        }
    }

    fn sql(&self, chunk: usize) -> Arc<str> {
        let all = self.sql.get_or_init(|| {
            CHUNKS
                .iter()
                .map(|&rows| {
                    let mut sql = String::from(self.head);
                    for i in 0..rows {
                        if i > 0 {
                            sql.push_str(", ");
                        }
                        sql.push_str(self.row);
                    }
                    sql.push_str(self.tail);
                    Arc::from(sql)
                })
                .collect()
        });
        Arc::clone(&all[chunk])
    }

    /// Runs the statement over `params`, `arity` values a row.
    async fn run(
        &self,
        conn: &mut SqliteConnection,
        params: &[Param<'_>],
    ) -> Result<(), sqlx::Error> {
        if self.arity == 0 || !params.len().is_multiple_of(self.arity) {
            return Err(sqlx::Error::Protocol(format!(
                "bug: {} values for rows of {} in `{}`",
                params.len(),
                self.arity,
                self.head
            )));
        }
        let mut rest = params;
        while !rest.is_empty() {
            let rows = rest.len() / self.arity;
            let chunk = CHUNKS
                .iter()
                .position(|&n| n <= rows)
                .unwrap_or(CHUNKS.len() - 1);
            let (now, later) = rest.split_at(CHUNKS[chunk] * self.arity);
            // Only `?` placeholders are added to the fixed text: no value reaches the SQL.
            let mut query = sqlx::query(sqlx::AssertSqlSafe(self.sql(chunk)));
            for param in now {
                query = match *param {
                    Param::Int(i) => query.bind(i),
                    Param::Text(s) => query.bind(s),
                };
            }
            query.execute(&mut *conn).await?;
            rest = later;
        }
        Ok(())
    }
}

static UPSERT_ACCOUNTS: Bulk = Bulk::new(
    "INSERT INTO dir_accounts (id, target, reference, person, attributes, enabled) VALUES ",
    "(?, ?, ?, ?, ?, ?)",
    " ON CONFLICT (id) DO UPDATE SET person = excluded.person,
        attributes = excluded.attributes, enabled = excluded.enabled",
    6,
);
static INSERT_KEYS: Bulk = Bulk::new(
    "INSERT OR IGNORE INTO dir_account_keys (attribute, folded, account_id) VALUES ",
    "(?, ?, ?)",
    "",
    3,
);
// The VALUES go through a subquery: SQLite does not search the primary key for a row-value
// IN over a bare VALUES list, and would scan the whole table.
static DELETE_KEYS: Bulk = Bulk::new(
    "DELETE FROM dir_account_keys WHERE (attribute, folded, account_id) IN
        (SELECT column1, column2, column3 FROM (VALUES ",
    "(?, ?, ?)",
    "))",
    3,
);
static INSERT_GROUPS: Bulk = Bulk::new(
    "INSERT INTO dir_groups (id, target, name) VALUES ",
    "(?, ?, ?)",
    "",
    3,
);
static GRANT: Bulk = Bulk::new(
    "INSERT OR IGNORE INTO dir_memberships (account_id, group_id) VALUES ",
    "(?, ?)",
    "",
    2,
);
static REVOKE: Bulk = Bulk::new(
    "DELETE FROM dir_memberships WHERE (account_id, group_id) IN
        (SELECT column1, column2 FROM (VALUES ",
    "(?, ?)",
    "))",
    2,
);

type ScalarQuery<'q> =
    sqlx::query::QueryScalar<'q, sqlx::Sqlite, String, <sqlx::Sqlite as sqlx::Database>::Arguments>;

/// Runs a query whose one row is a JSON array built in SQL, and decodes it.
async fn fetch_json<T: serde::de::DeserializeOwned>(
    query: ScalarQuery<'_>,
    conn: &mut SqliteConnection,
) -> Result<T, sqlx::Error> {
    let text = query.fetch_one(&mut *conn).await?;
    serde_json::from_str(&text).map_err(|e| {
        sqlx::Error::Decode(
            format!(
                "directory rows are not the JSON koppel wrote ({e}); the store file is damaged"
            )
            .into(),
        )
    })
}

/// Accounts from a query selecting [`select_accounts`].
async fn fetch_accounts(
    query: ScalarQuery<'_>,
    conn: &mut SqliteConnection,
) -> Result<Vec<Stored>, sqlx::Error> {
    let rows: Vec<WireAccount> = fetch_json(query, conn).await?;
    Ok(rows.into_iter().map(Stored::from).collect())
}

const ACCOUNTS_BY_REFERENCE: &str = concat!(
    select_accounts!(),
    " FROM json_each(?2) j CROSS JOIN dir_accounts a
      ON a.target = ?1 AND a.reference = j.value"
);

// The CROSS JOINs fix the join order: from the keys asked for to the accounts having them.
// Left to itself SQLite may walk every account of the target instead.
const ACCOUNTS_BY_KEY: &str = concat!(
    select_accounts!(),
    " FROM (SELECT DISTINCT k.account_id AS id FROM json_each(?2) j
            CROSS JOIN dir_account_keys k
               ON k.attribute = json_extract(j.value, '$[0]')
              AND k.folded = json_extract(j.value, '$[1]')) found
      CROSS JOIN dir_accounts a ON a.id = found.id
      WHERE a.target = ?1"
);

const GROUPS_BY_NAME: &str = "SELECT json_group_array(json_array(g.id, g.name))
     FROM json_each(?2) j CROSS JOIN dir_groups g ON g.target = ?1 AND g.name = j.value";

const PERMISSIONS_OF_ACCOUNTS: &str = "SELECT json_group_array(json_array(m.account_id, g.name))
     FROM json_each(?1) j
     CROSS JOIN dir_memberships m ON m.account_id = j.value
     CROSS JOIN dir_groups g ON g.id = m.group_id";

const IS_TAKEN: &str = "SELECT 1 FROM dir_account_keys k
     CROSS JOIN dir_accounts a ON a.id = k.account_id
     WHERE k.attribute = ?1 AND k.folded = ?2 AND a.target = ?3
       AND (?4 IS NULL OR a.reference <> ?4)
     LIMIT 1";

const DELETE_MEMBERSHIPS_OF: &str =
    "DELETE FROM dir_memberships WHERE account_id IN (SELECT value FROM json_each(?1))";

const DELETE_ACCOUNTS: &str =
    "DELETE FROM dir_accounts WHERE id IN (SELECT value FROM json_each(?1))";

/// An account as stored.
#[derive(Debug, Clone, PartialEq)]
struct Stored {
    id: i64,
    reference: String,
    person: String,
    attributes: BTreeMap<String, AttrValue>,
    enabled: bool,
}

/// Stored accounts as the trait returns them, each with the groups `memberships`
/// (account id, group name) gives it.
fn with_memberships(accounts: Vec<Stored>, memberships: Vec<(i64, String)>) -> Vec<TargetAccount> {
    let mut permissions: HashMap<i64, BTreeSet<String>> = HashMap::new();
    for (account, group) in memberships {
        permissions.entry(account).or_default().insert(group);
    }
    accounts
        .into_iter()
        .map(|a| {
            let held = permissions.remove(&a.id).unwrap_or_default();
            a.into_account(held)
        })
        .collect()
}

impl Stored {
    fn into_account(self, permissions: BTreeSet<String>) -> TargetAccount {
        TargetAccount {
            reference: self.reference,
            attributes: self.attributes,
            enabled: self.enabled,
            permissions,
        }
    }
}

/// An account row as the aggregated queries give it: `[id, reference, person, attributes,
/// enabled]`.
#[derive(serde::Deserialize)]
struct WireAccount(i64, String, String, Attributes, i64);

impl From<WireAccount> for Stored {
    fn from(WireAccount(id, reference, person, attributes, enabled): WireAccount) -> Self {
        Stored {
            id,
            reference,
            person,
            attributes: attributes.0,
            enabled: enabled != 0,
        }
    }
}

/// Attributes decoded straight from JSON. `AttrValue`'s own (untagged) deserializer buffers
/// each value and tries every variant in turn, several times slower on the read path.
struct Attributes(BTreeMap<String, AttrValue>);

impl<'de> serde::Deserialize<'de> for Attributes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor;
        impl<'de> Visitor<'de> for MapVisitor {
            type Value = Attributes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of attribute values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Attributes, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((name, Value(value))) = map.next_entry::<String, Value>()? {
                    out.insert(name, value);
                }
                Ok(Attributes(out))
            }
        }
        deserializer.deserialize_map(MapVisitor)
    }
}

struct Value(AttrValue);

impl<'de> serde::Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValueVisitor;
        impl<'de> Visitor<'de> for ValueVisitor {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("null, a boolean, an integer, a string or a list of strings")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
                Ok(Value(AttrValue::Null))
            }
            fn visit_none<E: de::Error>(self) -> Result<Value, E> {
                Ok(Value(AttrValue::Null))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
                Ok(Value(AttrValue::Bool(b)))
            }
            fn visit_i64<E: de::Error>(self, i: i64) -> Result<Value, E> {
                Ok(Value(AttrValue::Int(i)))
            }
            fn visit_u64<E: de::Error>(self, u: u64) -> Result<Value, E> {
                i64::try_from(u)
                    .map(|i| Value(AttrValue::Int(i)))
                    .map_err(|_| E::custom(format!("{u} is too large for an attribute")))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
                Ok(Value(AttrValue::Text(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
                Ok(Value(AttrValue::Text(s)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(item) = seq.next_element::<String>()? {
                    items.push(item);
                }
                Ok(Value(AttrValue::List(items)))
            }
        }
        deserializer.deserialize_any(ValueVisitor)
    }
}

/// The case-folded forms under which a value is found: one for a single value, one per
/// element for a list, none for `Null`.
fn folded_values(value: &AttrValue) -> Vec<String> {
    match value {
        AttrValue::List(items) => items.iter().map(|s| s.to_lowercase()).collect(),
        other => fold_single(other).into_iter().collect(),
    }
}

/// The case-folded form of a single value; `None` for `Null` and lists.
fn fold_single(value: &AttrValue) -> Option<String> {
    match value {
        AttrValue::Null | AttrValue::List(_) => None,
        AttrValue::Bool(b) => Some(b.to_string()),
        AttrValue::Int(i) => Some(i.to_string()),
        AttrValue::Text(s) => Some(s.to_lowercase()),
    }
}

/// Sets `changes` on `attributes`; `Null`, empty text and empty lists remove the attribute,
/// because no target can tell them apart from an absent one. True when anything changed.
fn merge_attributes(
    attributes: &mut BTreeMap<String, AttrValue>,
    changes: &BTreeMap<String, AttrValue>,
) -> bool {
    let mut changed = false;
    for (name, value) in changes {
        match value.clone().normalized() {
            AttrValue::Null => changed |= attributes.remove(name).is_some(),
            value => {
                if attributes.get(name) != Some(&value) {
                    attributes.insert(name.clone(), value);
                    changed = true;
                }
            }
        }
    }
    changed
}

/// Rows for a bulk statement, as one JSON array bound to a single parameter.
fn json_param<T: serde::Serialize + ?Sized>(rows: &T) -> Result<String, sqlx::Error> {
    serde_json::to_string(rows).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

/// An account inside a batch. Its attributes stay the stored JSON text until an operation
/// needs them, so the accounts a batch only enables, disables, grants or revokes are never
/// decoded nor encoded again.
struct Live {
    reference: String,
    person: String,
    enabled: bool,
    attributes: Attrs,
}

enum Attrs {
    Raw(Box<RawValue>),
    Decoded(BTreeMap<String, AttrValue>),
}

/// An account row as the aggregated queries give it, attributes left undecoded.
#[derive(serde::Deserialize)]
struct WireLive(i64, String, String, Box<RawValue>, i64);

/// Where an account stands in a batch.
struct Slot {
    /// As it is now; `None` once deleted.
    current: Option<Live>,
    /// Whether it was in the store when the batch began.
    stored: bool,
    /// The keys of its indexed attributes when the batch began, taken when its attributes
    /// are first decoded (empty for an account the batch made).
    original_keys: Option<BTreeSet<(String, String)>>,
    /// Whether its row must be written.
    dirty: bool,
}

/// Every (attribute, folded value) of the `indexed` attributes in `attributes`.
fn keys_of(
    attributes: &BTreeMap<String, AttrValue>,
    indexed: &HashSet<String>,
) -> BTreeSet<(String, String)> {
    let mut keys = BTreeSet::new();
    for (name, value) in attributes {
        if indexed.contains(name) {
            for folded in folded_values(value) {
                keys.insert((name.clone(), folded));
            }
        }
    }
    keys
}

fn damaged(reference: &str, e: &serde_json::Error) -> sqlx::Error {
    sqlx::Error::Decode(
        format!(
            "the attributes of account {reference} are not the JSON koppel wrote ({e}); the \
             store file is damaged"
        )
        .into(),
    )
}

/// One batch in progress: a cache of the rows the batch touches, kept complete for every
/// reference, key and group it has looked up, plus the changes made so far.
struct Batch<'a> {
    dir: &'a DirectoryTarget,
    slots: HashMap<i64, Slot>,
    /// Reference → account id, or `None` when known to be free.
    by_reference: HashMap<String, Option<i64>>,
    /// The attributes indexed for this target (exact: the batch holds the write lock).
    indexed: HashSet<String>,
    /// The attributes creates correlate on: the only ones `key_index` keeps.
    correlation_attributes: HashSet<String>,
    /// Keys for which every stored account having them at batch start is in `slots`.
    keys_loaded: HashSet<(String, String)>,
    /// (attribute, folded value) → accounts having it now, over the accounts in `slots`.
    key_index: HashMap<(String, String), BTreeSet<i64>>,
    /// Group name → id, or `None` when known not to exist.
    groups: HashMap<String, Option<i64>>,
    new_groups: Vec<(i64, String)>,
    /// (account, group) → whether the membership should exist after the batch.
    memberships: HashMap<(i64, i64), bool>,
    next_account: i64,
    next_group: i64,
}

type OpResult = Result<Done, TargetError>;

impl<'a> Batch<'a> {
    /// Loads, in a few bulk queries, everything `ops` will look at.
    async fn start(
        dir: &'a DirectoryTarget,
        conn: &mut SqliteConnection,
        ops: &[Op],
    ) -> Result<Batch<'a>, sqlx::Error> {
        // The write lock is held (BEGIN IMMEDIATE), so nobody else can take these ids.
        let (max_account, max_group, indexed): (i64, i64, String) = sqlx::query_as(
            "SELECT (SELECT coalesce(max(id), 0) FROM dir_accounts),
                    (SELECT coalesce(max(id), 0) FROM dir_groups),
                    (SELECT json_group_array(attribute) FROM dir_indexed WHERE target = ?1)",
        )
        .bind(&dir.name)
        .fetch_one(&mut *conn)
        .await?;
        let mut indexed: HashSet<String> =
            serde_json::from_str(&indexed).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        let mut references = BTreeSet::new();
        let mut keys = BTreeSet::new();
        let mut groups = BTreeSet::new();
        let mut correlation_attributes = HashSet::new();
        for op in ops {
            match op {
                Op::Create(request) => {
                    // The first candidate reference; later ones are looked up when needed.
                    references.insert(request.person.as_str());
                    if let Some((attribute, value)) = &request.correlation
                        && let Some(folded) = fold_single(value)
                    {
                        correlation_attributes.insert(attribute.clone());
                        keys.insert((attribute.clone(), folded));
                    }
                }
                Op::Update { reference, .. }
                | Op::SetEnabled { reference, .. }
                | Op::Delete { reference } => {
                    references.insert(reference.as_str());
                }
                Op::Grant {
                    reference,
                    permission,
                }
                | Op::Revoke {
                    reference,
                    permission,
                } => {
                    references.insert(reference.as_str());
                    groups.insert(permission.as_str());
                }
            }
        }
        for attribute in &correlation_attributes {
            if !indexed.contains(attribute) {
                index_attribute(conn, &dir.name, attribute).await?;
                indexed.insert(attribute.clone());
            }
        }
        let mut batch = Batch {
            dir,
            slots: HashMap::new(),
            by_reference: HashMap::new(),
            indexed,
            correlation_attributes,
            keys_loaded: HashSet::new(),
            key_index: HashMap::new(),
            groups: HashMap::new(),
            new_groups: Vec::new(),
            memberships: HashMap::new(),
            next_account: max_account + 1,
            next_group: max_group + 1,
        };
        let references: Vec<&str> = references.into_iter().collect();
        batch.load_references(conn, &references).await?;
        let keys: Vec<(String, String)> = keys.into_iter().collect();
        batch.load_keys(conn, &keys).await?;
        let groups: Vec<&str> = groups.into_iter().collect();
        batch.load_groups(conn, &groups).await?;
        Ok(batch)
    }

    async fn fetch_live(
        &self,
        conn: &mut SqliteConnection,
        sql: &'static str,
        param: String,
    ) -> Result<Vec<(i64, Live)>, sqlx::Error> {
        let rows: Vec<WireLive> = fetch_json(
            sqlx::query_scalar(sql).bind(&self.dir.name).bind(param),
            conn,
        )
        .await?;
        Ok(rows
            .into_iter()
            .map(|WireLive(id, reference, person, attributes, enabled)| {
                let live = Live {
                    reference,
                    person,
                    enabled: enabled != 0,
                    attributes: Attrs::Raw(attributes),
                };
                (id, live)
            })
            .collect())
    }

    async fn load_references(
        &mut self,
        conn: &mut SqliteConnection,
        references: &[&str],
    ) -> Result<(), sqlx::Error> {
        if references.is_empty() {
            return Ok(());
        }
        let accounts = self
            .fetch_live(conn, ACCOUNTS_BY_REFERENCE, json_param(references)?)
            .await?;
        self.admit(accounts)?;
        for reference in references {
            self.by_reference
                .entry((*reference).to_owned())
                .or_insert(None);
        }
        Ok(())
    }

    async fn load_keys(
        &mut self,
        conn: &mut SqliteConnection,
        keys: &[(String, String)],
    ) -> Result<(), sqlx::Error> {
        if keys.is_empty() {
            return Ok(());
        }
        let accounts = self
            .fetch_live(conn, ACCOUNTS_BY_KEY, json_param(keys)?)
            .await?;
        self.admit(accounts)?;
        self.keys_loaded.extend(keys.iter().cloned());
        Ok(())
    }

    async fn load_groups(
        &mut self,
        conn: &mut SqliteConnection,
        names: &[&str],
    ) -> Result<(), sqlx::Error> {
        if names.is_empty() {
            return Ok(());
        }
        let found: Vec<(i64, String)> = fetch_json(
            sqlx::query_scalar(GROUPS_BY_NAME)
                .bind(&self.dir.name)
                .bind(json_param(names)?),
            conn,
        )
        .await?;
        for (id, name) in found {
            self.groups.insert(name, Some(id));
        }
        for name in names {
            self.groups.entry((*name).to_owned()).or_insert(None);
        }
        Ok(())
    }

    /// Adds accounts read from the store, unless the batch already holds them (then its
    /// copy is the newer one).
    fn admit(&mut self, accounts: Vec<(i64, Live)>) -> Result<(), sqlx::Error> {
        for (id, live) in accounts {
            if self.slots.contains_key(&id) {
                continue;
            }
            self.by_reference
                .entry(live.reference.clone())
                .or_insert(Some(id));
            self.slots.insert(
                id,
                Slot {
                    current: Some(live),
                    stored: true,
                    original_keys: None,
                    dirty: false,
                },
            );
            // Creates look accounts up by their correlation attributes, so the index over
            // the batch needs those decoded.
            if !self.correlation_attributes.is_empty() {
                self.decode(id)?;
                self.index(id);
            }
        }
        Ok(())
    }

    /// Decodes the attributes of account `id` if they are not yet, noting the keys it had.
    fn decode(&mut self, id: i64) -> Result<(), sqlx::Error> {
        let Some(slot) = self.slots.get_mut(&id) else {
            return Ok(());
        };
        let Some(live) = slot.current.as_mut() else {
            return Ok(());
        };
        if let Attrs::Raw(raw) = &live.attributes {
            let Attributes(attributes) =
                serde_json::from_str(raw.get()).map_err(|e| damaged(&live.reference, &e))?;
            if slot.original_keys.is_none() {
                slot.original_keys = Some(keys_of(&attributes, &self.indexed));
            }
            live.attributes = Attrs::Decoded(attributes);
        }
        Ok(())
    }

    /// The correlation keys account `id` has now.
    fn correlation_keys(&self, id: i64) -> Vec<(String, String)> {
        let Some(Live {
            attributes: Attrs::Decoded(attributes),
            ..
        }) = self.slots.get(&id).and_then(|s| s.current.as_ref())
        else {
            return Vec::new();
        };
        let mut keys = Vec::new();
        for attribute in &self.correlation_attributes {
            if let Some(value) = attributes.get(attribute) {
                for folded in folded_values(value) {
                    keys.push((attribute.clone(), folded));
                }
            }
        }
        keys
    }

    fn index(&mut self, id: i64) {
        for key in self.correlation_keys(id) {
            self.key_index.entry(key).or_default().insert(id);
        }
    }

    fn unindex(&mut self, id: i64) {
        for key in self.correlation_keys(id) {
            if let Some(ids) = self.key_index.get_mut(&key) {
                ids.remove(&id);
            }
        }
    }

    /// The id of the account with `reference` now, loading it if the batch has not yet.
    async fn account_id(
        &mut self,
        conn: &mut SqliteConnection,
        reference: &str,
    ) -> Result<Option<i64>, sqlx::Error> {
        if !self.by_reference.contains_key(reference) {
            self.load_references(conn, &[reference]).await?;
        }
        Ok(self.by_reference.get(reference).copied().flatten())
    }

    async fn group_id(
        &mut self,
        conn: &mut SqliteConnection,
        name: &str,
    ) -> Result<Option<i64>, sqlx::Error> {
        if !self.groups.contains_key(name) {
            self.load_groups(conn, &[name]).await?;
        }
        Ok(self.groups.get(name).copied().flatten())
    }

    /// Sets `changes` on the attributes of account `id`, and `enabled` and `person` when
    /// given, keeping the index right and noting whether anything changed.
    fn change(
        &mut self,
        id: i64,
        changes: &BTreeMap<String, AttrValue>,
        enabled: Option<bool>,
        person: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        if !changes.is_empty() {
            self.decode(id)?;
        }
        self.unindex(id);
        if let Some(slot) = self.slots.get_mut(&id)
            && let Some(live) = slot.current.as_mut()
        {
            if let Attrs::Decoded(attributes) = &mut live.attributes {
                slot.dirty |= merge_attributes(attributes, changes);
            }
            if let Some(enabled) = enabled
                && live.enabled != enabled
            {
                live.enabled = enabled;
                slot.dirty = true;
            }
            if let Some(person) = person
                && live.person != person
            {
                person.clone_into(&mut live.person);
                slot.dirty = true;
            }
        }
        self.index(id);
        Ok(())
    }

    async fn run(&mut self, conn: &mut SqliteConnection, op: &Op) -> Result<OpResult, sqlx::Error> {
        match op {
            Op::Create(request) => self.create(conn, request).await,
            Op::Update { reference, changes } => {
                if changes.keys().any(String::is_empty) {
                    return Ok(Err(self
                        .dir
                        .rejected("attribute names must not be empty".to_owned())));
                }
                let Some(id) = self.account_id(conn, reference).await? else {
                    return Ok(Err(self.dir.no_such_account(reference)));
                };
                self.change(id, changes, None, None)?;
                Ok(Ok(Done::Ok))
            }
            Op::SetEnabled { reference, enabled } => {
                let Some(id) = self.account_id(conn, reference).await? else {
                    return Ok(Err(self.dir.no_such_account(reference)));
                };
                self.change(id, &BTreeMap::new(), Some(*enabled), None)?;
                Ok(Ok(Done::Ok))
            }
            Op::Delete { reference } => {
                if let Some(id) = self.account_id(conn, reference).await? {
                    // Decoded first, so the keys it had are known and can be removed.
                    self.decode(id)?;
                    self.unindex(id);
                    if let Some(slot) = self.slots.get_mut(&id) {
                        slot.current = None;
                        slot.dirty = true;
                    }
                    // Its memberships go with it when the batch is written.
                    self.by_reference.insert(reference.clone(), None);
                }
                Ok(Ok(Done::Ok))
            }
            Op::Grant {
                reference,
                permission,
            } => {
                if permission.is_empty() {
                    return Ok(Err(self.dir.rejected(
                        "cannot grant a permission with an empty name".to_owned(),
                    )));
                }
                let Some(id) = self.account_id(conn, reference).await? else {
                    return Ok(Err(self.dir.no_such_account(reference)));
                };
                let group = match self.group_id(conn, permission).await? {
                    Some(group) => group,
                    None => {
                        let group = self.next_group;
                        self.next_group += 1;
                        self.new_groups.push((group, permission.clone()));
                        self.groups.insert(permission.clone(), Some(group));
                        group
                    }
                };
                self.memberships.insert((id, group), true);
                Ok(Ok(Done::Ok))
            }
            Op::Revoke {
                reference,
                permission,
            } => {
                // Revoking from a missing account or a missing group succeeds: afterwards
                // the membership does not exist, which is all revoke promises.
                if let Some(id) = self.account_id(conn, reference).await?
                    && let Some(group) = self.group_id(conn, permission).await?
                {
                    self.memberships.insert((id, group), false);
                }
                Ok(Ok(Done::Ok))
            }
        }
    }

    async fn create(
        &mut self,
        conn: &mut SqliteConnection,
        request: &CreateRequest,
    ) -> Result<OpResult, sqlx::Error> {
        if request.person.is_empty() {
            return Ok(Err(self.dir.rejected(
                "cannot create an account without the person's external id".to_owned(),
            )));
        }
        if request.attributes.keys().any(String::is_empty) {
            return Ok(Err(self
                .dir
                .rejected("attribute names must not be empty".to_owned())));
        }
        if let Some((attribute, value)) = &request.correlation {
            let Some(folded) = fold_single(value) else {
                return Ok(Err(self.dir.rejected(format!(
                    "cannot correlate on {attribute} = {value}: the correlation value must be \
                     a single value, not a list or nothing"
                ))));
            };
            let key = (attribute.clone(), folded);
            if !self.keys_loaded.contains(&key) {
                self.load_keys(conn, std::slice::from_ref(&key)).await?;
            }
            let found: Vec<i64> = self
                .key_index
                .get(&key)
                .map(|ids| ids.iter().copied().collect())
                .unwrap_or_default();
            match found.as_slice() {
                [] => {}
                [id] => {
                    let id = *id;
                    self.change(
                        id,
                        &request.attributes,
                        Some(request.enabled),
                        Some(&request.person),
                    )?;
                    let reference = self
                        .slots
                        .get(&id)
                        .and_then(|s| s.current.as_ref())
                        .map(|a| a.reference.clone())
                        .unwrap_or_default();
                    return Ok(Ok(Done::Created(Created::Adopted(reference))));
                }
                many => {
                    let references: Vec<&str> = many
                        .iter()
                        .filter_map(|id| self.slots.get(id)?.current.as_ref())
                        .map(|a| a.reference.as_str())
                        .collect();
                    return Ok(Err(self.dir.ambiguous(attribute, value, &references)));
                }
            }
        }
        // A new account. Its reference depends only on what exists, so a resumed run ends
        // with the same references as a clean one.
        let mut reference = request.person.clone();
        let mut n = 1u64;
        while self.account_id(conn, &reference).await?.is_some() {
            n += 1;
            reference = format!("{}-{n}", request.person);
        }
        let mut attributes = BTreeMap::new();
        merge_attributes(&mut attributes, &request.attributes);
        let id = self.next_account;
        self.next_account += 1;
        self.by_reference.insert(reference.clone(), Some(id));
        self.slots.insert(
            id,
            Slot {
                current: Some(Live {
                    reference: reference.clone(),
                    person: request.person.clone(),
                    enabled: request.enabled,
                    attributes: Attrs::Decoded(attributes),
                }),
                stored: false,
                original_keys: Some(BTreeSet::new()),
                dirty: true,
            },
        );
        self.index(id);
        Ok(Ok(Done::Created(Created::New(reference))))
    }

    /// Writes the net effect of the batch in a handful of bulk statements.
    async fn write(self, conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
        let mut ids: Vec<i64> = self
            .slots
            .iter()
            .filter(|(_, s)| s.dirty)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        let mut gone: Vec<i64> = Vec::new();
        let mut upserts: Vec<(i64, &Live, Option<String>)> = Vec::new();
        let mut keys_out: Vec<(String, String, i64)> = Vec::new();
        let mut keys_in: Vec<(String, String, i64)> = Vec::new();
        for &id in &ids {
            let Some(slot) = self.slots.get(&id) else {
                continue;
            };
            // Known for every account whose attributes changed or that was deleted: both
            // decode first.
            let before = slot.original_keys.clone().unwrap_or_default();
            match &slot.current {
                None if !slot.stored => continue,
                None => {
                    gone.push(id);
                    keys_out.extend(before.into_iter().map(|(a, f)| (a, f, id)));
                }
                Some(live) => match &live.attributes {
                    // Attributes untouched: the stored text goes back as it was.
                    Attrs::Raw(_) => upserts.push((id, live, None)),
                    Attrs::Decoded(attributes) => {
                        let after = keys_of(attributes, &self.indexed);
                        keys_out.extend(
                            before
                                .difference(&after)
                                .map(|(a, f)| (a.clone(), f.clone(), id)),
                        );
                        keys_in.extend(
                            after
                                .difference(&before)
                                .map(|(a, f)| (a.clone(), f.clone(), id)),
                        );
                        let text = serde_json::to_string(attributes)
                            .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
                        upserts.push((id, live, Some(text)));
                    }
                },
            }
        }
        // In key order, so the B-tree is walked once rather than jumped around in.
        keys_out.sort_unstable();
        keys_in.sort_unstable();
        let mut grants: Vec<Param> = Vec::new();
        let mut revokes: Vec<Param> = Vec::new();
        let mut memberships: Vec<(&(i64, i64), &bool)> = self.memberships.iter().collect();
        memberships.sort_unstable();
        for (&(account, group), &present) in memberships {
            // A deleted account's memberships are removed whole, below.
            let exists = self
                .slots
                .get(&account)
                .is_some_and(|s| s.current.is_some());
            if exists {
                let list = if present { &mut grants } else { &mut revokes };
                list.extend([Param::Int(account), Param::Int(group)]);
            }
        }

        if !gone.is_empty() {
            let gone = json_param(&gone)?;
            sqlx::query(DELETE_MEMBERSHIPS_OF)
                .bind(&gone)
                .execute(&mut *conn)
                .await?;
            sqlx::query(DELETE_ACCOUNTS)
                .bind(&gone)
                .execute(&mut *conn)
                .await?;
        }
        DELETE_KEYS.run(conn, &key_params(&keys_out)).await?;
        let target = self.dir.name.as_str();
        let upserts: Vec<Param> = upserts
            .iter()
            .flat_map(|(id, live, text)| {
                let attributes = match (text, &live.attributes) {
                    (Some(text), _) => text.as_str(),
                    (None, Attrs::Raw(raw)) => raw.get(),
                    // Decoded attributes always come with their text.
                    (None, Attrs::Decoded(_)) => "{}",
                };
                [
                    Param::Int(*id),
                    Param::Text(target),
                    Param::Text(&live.reference),
                    Param::Text(&live.person),
                    Param::Text(attributes),
                    Param::Int(i64::from(live.enabled)),
                ]
            })
            .collect();
        UPSERT_ACCOUNTS.run(conn, &upserts).await?;
        INSERT_KEYS.run(conn, &key_params(&keys_in)).await?;
        let groups: Vec<Param> = self
            .new_groups
            .iter()
            .flat_map(|(id, name)| [Param::Int(*id), Param::Text(target), Param::Text(name)])
            .collect();
        INSERT_GROUPS.run(conn, &groups).await?;
        GRANT.run(conn, &grants).await?;
        REVOKE.run(conn, &revokes).await
    }
}

#[async_trait::async_trait]
impl Target for DirectoryTarget {
    fn name(&self) -> &str {
        &self.name
    }

    async fn correlate(
        &self,
        attribute: &str,
        value: &AttrValue,
    ) -> Result<Option<TargetAccount>, TargetError> {
        let Some(folded) = fold_single(value) else {
            return Ok(None);
        };
        self.ensure_indexed(attribute).await?;
        let db = |e| self.db_error(e);
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let key = [(attribute, folded.as_str())];
        let accounts = fetch_accounts(
            sqlx::query_scalar(ACCOUNTS_BY_KEY)
                .bind(&self.name)
                .bind(json_param(&key).map_err(db)?),
            &mut conn,
        )
        .await
        .map_err(db)?;
        if accounts.len() > 1 {
            let references: Vec<&str> = accounts.iter().map(|a| a.reference.as_str()).collect();
            return Err(self.ambiguous(attribute, value, &references));
        }
        Ok(self
            .with_permissions(&mut conn, accounts)
            .await?
            .into_iter()
            .next())
    }

    async fn get(&self, reference: &str) -> Result<Option<TargetAccount>, TargetError> {
        let db = |e| self.db_error(e);
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let accounts = fetch_accounts(
            sqlx::query_scalar(ACCOUNTS_BY_REFERENCE)
                .bind(&self.name)
                .bind(json_param(&[reference]).map_err(db)?),
            &mut conn,
        )
        .await
        .map_err(db)?;
        Ok(self
            .with_permissions(&mut conn, accounts)
            .await?
            .into_iter()
            .next())
    }

    async fn create(&self, request: &CreateRequest) -> Result<Created, TargetError> {
        match self.one(Op::Create(request.clone())).await? {
            Done::Created(created) => Ok(created),
            Done::Ok => Err(self.rejected("create gave no reference".to_owned())),
        }
    }

    async fn update(
        &self,
        reference: &str,
        changes: &BTreeMap<String, AttrValue>,
    ) -> Result<(), TargetError> {
        self.one(Op::Update {
            reference: reference.to_owned(),
            changes: changes.clone(),
        })
        .await
        .map(drop)
    }

    async fn set_enabled(&self, reference: &str, enabled: bool) -> Result<(), TargetError> {
        self.one(Op::SetEnabled {
            reference: reference.to_owned(),
            enabled,
        })
        .await
        .map(drop)
    }

    async fn delete(&self, reference: &str) -> Result<(), TargetError> {
        self.one(Op::Delete {
            reference: reference.to_owned(),
        })
        .await
        .map(drop)
    }

    async fn grant(&self, reference: &str, permission: &str) -> Result<(), TargetError> {
        self.one(Op::Grant {
            reference: reference.to_owned(),
            permission: permission.to_owned(),
        })
        .await
        .map(drop)
    }

    async fn revoke(&self, reference: &str, permission: &str) -> Result<(), TargetError> {
        self.one(Op::Revoke {
            reference: reference.to_owned(),
            permission: permission.to_owned(),
        })
        .await
        .map(drop)
    }

    async fn list_accounts(&self) -> Result<Vec<TargetAccount>, TargetError> {
        let db = |e| self.db_error(e);
        // One read transaction, so accounts and memberships are the same snapshot.
        let mut tx = self.pool.begin().await.map_err(db)?;
        let mut accounts = fetch_accounts(
            sqlx::query_scalar(concat!(
                select_accounts!(),
                " FROM dir_accounts a WHERE a.target = ?1"
            ))
            .bind(&self.name),
            &mut tx,
        )
        .await
        .map_err(db)?;
        let memberships: Vec<(i64, String)> = fetch_json(
            sqlx::query_scalar(
                "SELECT json_group_array(json_array(m.account_id, g.name))
                 FROM dir_groups g JOIN dir_memberships m ON m.group_id = g.id
                 WHERE g.target = ?1",
            )
            .bind(&self.name),
            &mut tx,
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        accounts.sort_unstable_by(|a, b| a.reference.cmp(&b.reference));
        Ok(with_memberships(accounts, memberships))
    }

    async fn list_permissions(&self) -> Result<Vec<String>, TargetError> {
        let db = |e| self.db_error(e);
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let mut names: Vec<String> = fetch_json(
            sqlx::query_scalar("SELECT json_group_array(name) FROM dir_groups WHERE target = ?1")
                .bind(&self.name),
            &mut conn,
        )
        .await
        .map_err(db)?;
        names.sort_unstable();
        Ok(names)
    }

    async fn is_unique(
        &self,
        attribute: &str,
        value: &str,
        except: Option<&str>,
    ) -> Result<bool, TargetError> {
        self.ensure_indexed(attribute).await?;
        let taken: Option<i64> = sqlx::query_scalar(IS_TAKEN)
            .bind(attribute)
            .bind(value.to_lowercase())
            .bind(&self.name)
            .bind(except)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.db_error(e))?;
        Ok(taken.is_none())
    }

    async fn apply(&self, ops: &[Op]) -> Vec<Result<Done, TargetError>> {
        if ops.is_empty() {
            return Vec::new();
        }
        match self.run_batch(ops).await {
            Ok(results) => results,
            // The transaction rolled back: nothing of the batch happened.
            Err(e) => {
                let error = self.db_error(e);
                ops.iter().map(|_| Err(error.clone())).collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The statements a batch and the lookups run, each with enough rows for a bulk one.
    fn hot_statements() -> Vec<(String, Arc<str>)> {
        let mut statements: Vec<(String, Arc<str>)> = [
            ("accounts by reference", ACCOUNTS_BY_REFERENCE),
            ("accounts by key", ACCOUNTS_BY_KEY),
            ("groups by name", GROUPS_BY_NAME),
            ("permissions of accounts", PERMISSIONS_OF_ACCOUNTS),
            ("is_unique", IS_TAKEN),
            ("delete memberships", DELETE_MEMBERSHIPS_OF),
            ("delete accounts", DELETE_ACCOUNTS),
        ]
        .into_iter()
        .map(|(name, sql)| (name.to_owned(), Arc::from(sql)))
        .collect();
        for (name, bulk) in [
            ("upsert accounts", &UPSERT_ACCOUNTS),
            ("insert keys", &INSERT_KEYS),
            ("delete keys", &DELETE_KEYS),
            ("insert groups", &INSERT_GROUPS),
            ("grant", &GRANT),
            ("revoke", &REVOKE),
        ] {
            for (chunk, rows) in CHUNKS.iter().enumerate() {
                statements.push((format!("{name} × {rows}"), bulk.sql(chunk)));
            }
        }
        statements
    }

    /// A full scan of a directory table makes a batch cost grow with the directory: every
    /// hot statement must reach its rows through an index.
    #[tokio::test]
    async fn hot_statements_search_indexes() {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .expect("in-memory database");
        DirectoryTarget::new("d", pool.clone())
            .await
            .expect("schema");
        for (name, sql) in hot_statements() {
            let plan: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                    .fetch_all(&pool)
                    .await
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            for (_, _, _, detail) in &plan {
                let scanned = detail
                    .strip_prefix("SCAN ")
                    .map(|rest| rest.split_whitespace().next().unwrap_or_default());
                assert!(
                    !matches!(
                        scanned,
                        Some(
                            "a" | "k"
                                | "g"
                                | "m"
                                | "dir_accounts"
                                | "dir_account_keys"
                                | "dir_groups"
                                | "dir_memberships"
                        )
                    ),
                    "{name} scans a table: {plan:?}"
                );
            }
        }
    }
}
