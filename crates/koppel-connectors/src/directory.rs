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
//! * `dir_account_keys(attribute, folded, account_id)`: every attribute value lower-cased (list
//!   attributes: each element), so correlation and `is_unique` are indexed and case-insensitive.
//! * `dir_groups(id, target, name)` and `dir_memberships(account_id, group_id)`.
//!
//! # Batches
//!
//! [`Target::apply`] runs a whole batch in one `BEGIN IMMEDIATE` transaction without a round
//! trip per operation: it loads what the batch touches in a few bulk queries, carries out the
//! operations in memory in order (so each sees the ones before it and a failing one fails
//! alone), then writes the net changes in a few bulk statements whose rows travel as one JSON
//! array parameter each. The single-operation methods are batches of one.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use koppel_core::AttrValue;
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
    // No index by account: the batch deletes an account's keys by their full primary key,
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

/// The built-in directory target. Cheap to clone: it shares the pool.
#[derive(Debug, Clone)]
pub struct DirectoryTarget {
    name: String,
    pool: SqlitePool,
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
        for step in &SCHEMA_STEPS[found as usize..] {
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

    fn corrupt(&self, reference: &str, e: &serde_json::Error) -> TargetError {
        TargetError::Unavailable {
            target: self.name.clone(),
            message: format!(
                "directory store: the attributes of account {reference} are not valid JSON \
                 ({e}); the store file is damaged"
            ),
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

    fn decode(&self, row: AccountRow) -> Result<Stored, TargetError> {
        Stored::decode(row).map_err(|(reference, e)| self.corrupt(&reference, &e))
    }

    /// The group names of one account.
    async fn permissions_of(
        &self,
        conn: &mut SqliteConnection,
        id: i64,
    ) -> Result<BTreeSet<String>, TargetError> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT g.name FROM dir_memberships m JOIN dir_groups g ON g.id = m.group_id
             WHERE m.account_id = ?1",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| self.db_error(e))?;
        Ok(names.into_iter().collect())
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

/// An account row as selected: id, reference, person, attributes JSON, enabled.
type AccountRow = (i64, String, String, String, bool);

const ACCOUNT_COLUMNS_BY_REFERENCE: &str =
    "SELECT a.id, a.reference, a.person, a.attributes, a.enabled
     FROM json_each(?2) j CROSS JOIN dir_accounts a
     ON a.target = ?1 AND a.reference = j.value";

const ACCOUNTS_BY_KEY: &str = "SELECT DISTINCT a.id, a.reference, a.person, a.attributes, a.enabled
     FROM json_each(?2) j
     CROSS JOIN dir_account_keys k
        ON k.attribute = json_extract(j.value, '$[0]') AND k.folded = json_extract(j.value, '$[1]')
     JOIN dir_accounts a ON a.id = k.account_id
     WHERE a.target = ?1";

/// An account as stored.
#[derive(Debug, Clone, PartialEq)]
struct Stored {
    id: i64,
    reference: String,
    person: String,
    attributes: BTreeMap<String, AttrValue>,
    enabled: bool,
}

impl Stored {
    fn decode(row: AccountRow) -> Result<Stored, (String, serde_json::Error)> {
        let (id, reference, person, attributes, enabled) = row;
        match serde_json::from_str(&attributes) {
            Ok(attributes) => Ok(Stored {
                id,
                reference,
                person,
                attributes,
                enabled,
            }),
            Err(e) => Err((reference, e)),
        }
    }

    fn into_account(self, permissions: BTreeSet<String>) -> TargetAccount {
        TargetAccount {
            reference: self.reference,
            attributes: self.attributes,
            enabled: self.enabled,
            permissions,
        }
    }

    /// Every (attribute, folded value) this account can be found by.
    fn keys(&self) -> BTreeSet<(&str, String)> {
        let mut keys = BTreeSet::new();
        for (name, value) in &self.attributes {
            for folded in folded_values(value) {
                keys.insert((name.as_str(), folded));
            }
        }
        keys
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
/// because no target can tell them apart from an absent one.
fn merge_attributes(
    attributes: &mut BTreeMap<String, AttrValue>,
    changes: &BTreeMap<String, AttrValue>,
) {
    for (name, value) in changes {
        match value.clone().normalized() {
            AttrValue::Null => {
                attributes.remove(name);
            }
            value => {
                attributes.insert(name.clone(), value);
            }
        }
    }
}

/// Where an account stands in a batch: as it was when the batch began (`None` if the batch
/// created it) and as it is now (`None` once deleted).
struct Slot {
    original: Option<Stored>,
    current: Option<Stored>,
}

/// One batch in progress: a cache of the rows the batch touches, kept complete for every
/// reference, key and group it has looked up, plus the changes made so far.
struct Batch<'a> {
    dir: &'a DirectoryTarget,
    slots: HashMap<i64, Slot>,
    /// Reference → account id, or `None` when known to be free.
    by_reference: HashMap<String, Option<i64>>,
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
        let max_account: Option<i64> = sqlx::query_scalar("SELECT max(id) FROM dir_accounts")
            .fetch_one(&mut *conn)
            .await?;
        let max_group: Option<i64> = sqlx::query_scalar("SELECT max(id) FROM dir_groups")
            .fetch_one(&mut *conn)
            .await?;
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
        let mut batch = Batch {
            dir,
            slots: HashMap::new(),
            by_reference: HashMap::new(),
            correlation_attributes,
            keys_loaded: HashSet::new(),
            key_index: HashMap::new(),
            groups: HashMap::new(),
            new_groups: Vec::new(),
            memberships: HashMap::new(),
            next_account: max_account.unwrap_or(0) + 1,
            next_group: max_group.unwrap_or(0) + 1,
        };
        let references: Vec<&str> = references.into_iter().collect();
        batch.load_references(conn, &references).await?;
        let keys: Vec<(String, String)> = keys.into_iter().collect();
        batch.load_keys(conn, &keys).await?;
        let groups: Vec<&str> = groups.into_iter().collect();
        batch.load_groups(conn, &groups).await?;
        Ok(batch)
    }

    async fn load_references(
        &mut self,
        conn: &mut SqliteConnection,
        references: &[&str],
    ) -> Result<(), sqlx::Error> {
        if references.is_empty() {
            return Ok(());
        }
        let rows: Vec<AccountRow> = sqlx::query_as(ACCOUNT_COLUMNS_BY_REFERENCE)
            .bind(&self.dir.name)
            .bind(json_param(&references)?)
            .fetch_all(&mut *conn)
            .await?;
        self.admit_rows(rows)?;
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
        let rows: Vec<AccountRow> = sqlx::query_as(ACCOUNTS_BY_KEY)
            .bind(&self.dir.name)
            .bind(json_param(&keys)?)
            .fetch_all(&mut *conn)
            .await?;
        self.admit_rows(rows)?;
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
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT g.id, g.name FROM json_each(?2) j CROSS JOIN dir_groups g
             ON g.target = ?1 AND g.name = j.value",
        )
        .bind(&self.dir.name)
        .bind(json_param(&names)?)
        .fetch_all(&mut *conn)
        .await?;
        for (id, name) in rows {
            self.groups.insert(name, Some(id));
        }
        for name in names {
            self.groups.entry((*name).to_owned()).or_insert(None);
        }
        Ok(())
    }

    /// Adds accounts read from the store, unless the batch already holds them (then its
    /// copy is the newer one).
    fn admit_rows(&mut self, rows: Vec<AccountRow>) -> Result<(), sqlx::Error> {
        for row in rows {
            let stored = Stored::decode(row).map_err(|(reference, e)| {
                sqlx::Error::Decode(
                    format!("attributes of account {reference} are not valid JSON: {e}").into(),
                )
            })?;
            if self.slots.contains_key(&stored.id) {
                continue;
            }
            self.by_reference
                .entry(stored.reference.clone())
                .or_insert(Some(stored.id));
            self.index(&stored);
            self.slots.insert(
                stored.id,
                Slot {
                    original: Some(stored.clone()),
                    current: Some(stored),
                },
            );
        }
        Ok(())
    }

    fn index(&mut self, account: &Stored) {
        for attribute in &self.correlation_attributes {
            if let Some(value) = account.attributes.get(attribute) {
                for folded in folded_values(value) {
                    self.key_index
                        .entry((attribute.clone(), folded))
                        .or_default()
                        .insert(account.id);
                }
            }
        }
    }

    fn unindex(&mut self, account: &Stored) {
        for attribute in &self.correlation_attributes {
            if let Some(value) = account.attributes.get(attribute) {
                for folded in folded_values(value) {
                    if let Some(ids) = self.key_index.get_mut(&(attribute.clone(), folded)) {
                        ids.remove(&account.id);
                    }
                }
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

    /// Replaces the current state of account `id` through `change`, keeping the index right.
    fn modify(&mut self, id: i64, change: impl FnOnce(&mut Stored)) {
        let Some(mut account) = self.slots.get_mut(&id).and_then(|s| s.current.take()) else {
            return;
        };
        self.unindex(&account);
        change(&mut account);
        self.index(&account);
        if let Some(slot) = self.slots.get_mut(&id) {
            slot.current = Some(account);
        }
    }

    async fn run(&mut self, conn: &mut SqliteConnection, op: &Op) -> Result<OpResult, sqlx::Error> {
        match op {
            Op::Create(request) => self.create(conn, request).await,
            Op::Update { reference, changes } => {
                if let Some(bad) = changes.keys().find(|k| k.is_empty()) {
                    return Ok(Err(self.dir.rejected(format!(
                        "attribute names must not be empty (got {bad:?})"
                    ))));
                }
                let Some(id) = self.account_id(conn, reference).await? else {
                    return Ok(Err(self.dir.no_such_account(reference)));
                };
                self.modify(id, |a| merge_attributes(&mut a.attributes, changes));
                Ok(Ok(Done::Ok))
            }
            Op::SetEnabled { reference, enabled } => {
                let Some(id) = self.account_id(conn, reference).await? else {
                    return Ok(Err(self.dir.no_such_account(reference)));
                };
                self.modify(id, |a| a.enabled = *enabled);
                Ok(Ok(Done::Ok))
            }
            Op::Delete { reference } => {
                if let Some(id) = self.account_id(conn, reference).await? {
                    if let Some(account) = self.slots.get_mut(&id).and_then(|s| s.current.take()) {
                        self.unindex(&account);
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
        if let Some(bad) = request.attributes.keys().find(|k| k.is_empty()) {
            return Ok(Err(self.dir.rejected(format!(
                "attribute names must not be empty (got {bad:?})"
            ))));
        }
        if let Some((attribute, value)) = &request.correlation {
            let Some(folded) = fold_single(value) else {
                return Ok(Err(self.dir.rejected(format!(
                    "cannot correlate on {attribute} = {value}: the correlation value must be \
                     a single non-empty value"
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
                    self.modify(id, |a| {
                        merge_attributes(&mut a.attributes, &request.attributes);
                        a.enabled = request.enabled;
                        a.person.clone_from(&request.person);
                    });
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
                    return Ok(Err(self.dir.rejected(format!(
                        "{} accounts have {attribute} = {value} ({}): correlation must find \
                         at most one; remove the duplicates",
                        references.len(),
                        references.join(", ")
                    ))));
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
        let account = Stored {
            id,
            reference: reference.clone(),
            person: request.person.clone(),
            attributes,
            enabled: request.enabled,
        };
        self.index(&account);
        self.by_reference.insert(reference.clone(), Some(id));
        self.slots.insert(
            id,
            Slot {
                original: None,
                current: Some(account),
            },
        );
        Ok(Ok(Done::Created(Created::New(reference))))
    }

    /// Writes the net effect of the batch in a handful of bulk statements.
    async fn write(self, conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
        let mut gone: Vec<i64> = Vec::new();
        let mut upserts: Vec<(i64, &str, &str, String, bool)> = Vec::new();
        let mut keys_out: Vec<(&str, &str, i64)> = Vec::new();
        let mut keys_in: Vec<(&str, &str, i64)> = Vec::new();
        // Sorted so the statements touch the B-trees in order and the writes are repeatable.
        let mut ids: Vec<&i64> = self.slots.keys().collect();
        ids.sort_unstable();
        let mut key_sets = Vec::new();
        for id in ids {
            let slot = &self.slots[id];
            if slot.original == slot.current {
                continue;
            }
            let before = slot.original.as_ref().map(Stored::keys).unwrap_or_default();
            let after = slot.current.as_ref().map(Stored::keys).unwrap_or_default();
            key_sets.push((*id, before, after));
            match &slot.current {
                None => gone.push(*id),
                Some(a) => upserts.push((
                    a.id,
                    &a.reference,
                    &a.person,
                    serde_json::to_string(&a.attributes)
                        .map_err(|e| sqlx::Error::Encode(Box::new(e)))?,
                    a.enabled,
                )),
            }
        }
        for (id, before, after) in &key_sets {
            keys_out.extend(
                before
                    .difference(after)
                    .map(|(name, folded)| (*name, folded.as_str(), *id)),
            );
            keys_in.extend(
                after
                    .difference(before)
                    .map(|(name, folded)| (*name, folded.as_str(), *id)),
            );
        }
        let mut grants: Vec<(i64, i64)> = Vec::new();
        let mut revokes: Vec<(i64, i64)> = Vec::new();
        for (&(account, group), &present) in &self.memberships {
            // A deleted account's memberships are removed whole, below.
            let exists = self
                .slots
                .get(&account)
                .is_some_and(|s| s.current.is_some());
            if !exists {
                continue;
            }
            if present {
                grants.push((account, group));
            } else {
                revokes.push((account, group));
            }
        }
        grants.sort_unstable();
        revokes.sort_unstable();

        if !gone.is_empty() {
            let gone = json_param(&gone)?;
            sqlx::query(
                "DELETE FROM dir_memberships WHERE account_id IN (SELECT value FROM json_each(?1))",
            )
            .bind(&gone)
            .execute(&mut *conn)
            .await?;
            sqlx::query("DELETE FROM dir_accounts WHERE id IN (SELECT value FROM json_each(?1))")
                .bind(&gone)
                .execute(&mut *conn)
                .await?;
        }
        if !keys_out.is_empty() {
            sqlx::query(
                "DELETE FROM dir_account_keys WHERE (attribute, folded, account_id) IN (
                    SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),
                           json_extract(value, '$[2]')
                    FROM json_each(?1))",
            )
            .bind(json_param(&keys_out)?)
            .execute(&mut *conn)
            .await?;
        }
        if !upserts.is_empty() {
            // `WHERE true` tells SQLite's parser the ON CONFLICT belongs to the INSERT.
            sqlx::query(
                "INSERT INTO dir_accounts (id, target, reference, person, attributes, enabled)
                 SELECT json_extract(value, '$[0]'), ?1, json_extract(value, '$[1]'),
                        json_extract(value, '$[2]'), json_extract(value, '$[3]'),
                        json_extract(value, '$[4]')
                 FROM json_each(?2) WHERE true
                 ON CONFLICT (id) DO UPDATE SET person = excluded.person,
                    attributes = excluded.attributes, enabled = excluded.enabled",
            )
            .bind(&self.dir.name)
            .bind(json_param(&upserts)?)
            .execute(&mut *conn)
            .await?;
        }
        if !keys_in.is_empty() {
            sqlx::query(
                "INSERT INTO dir_account_keys (attribute, folded, account_id)
                 SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),
                        json_extract(value, '$[2]')
                 FROM json_each(?1)",
            )
            .bind(json_param(&keys_in)?)
            .execute(&mut *conn)
            .await?;
        }
        if !self.new_groups.is_empty() {
            sqlx::query(
                "INSERT INTO dir_groups (id, target, name)
                 SELECT json_extract(value, '$[0]'), ?1, json_extract(value, '$[1]')
                 FROM json_each(?2)",
            )
            .bind(&self.dir.name)
            .bind(json_param(&self.new_groups)?)
            .execute(&mut *conn)
            .await?;
        }
        if !grants.is_empty() {
            sqlx::query(
                "INSERT OR IGNORE INTO dir_memberships (account_id, group_id)
                 SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]')
                 FROM json_each(?1)",
            )
            .bind(json_param(&grants)?)
            .execute(&mut *conn)
            .await?;
        }
        if !revokes.is_empty() {
            sqlx::query(
                "DELETE FROM dir_memberships WHERE (account_id, group_id) IN (
                    SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]')
                    FROM json_each(?1))",
            )
            .bind(json_param(&revokes)?)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

/// Rows for a bulk statement, as one JSON array bound to a single parameter.
fn json_param<T: serde::Serialize + ?Sized>(rows: &T) -> Result<String, sqlx::Error> {
    serde_json::to_string(rows).map_err(|e| sqlx::Error::Encode(Box::new(e)))
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
        let mut conn = self.pool.acquire().await.map_err(|e| self.db_error(e))?;
        let key = [(attribute, folded.as_str())];
        let rows: Vec<AccountRow> = sqlx::query_as(ACCOUNTS_BY_KEY)
            .bind(&self.name)
            .bind(json_param(&key).map_err(|e| self.db_error(e))?)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| self.db_error(e))?;
        match rows.len() {
            0 => Ok(None),
            1 => {
                let Some(row) = rows.into_iter().next() else {
                    return Ok(None);
                };
                let account = self.decode(row)?;
                let permissions = self.permissions_of(&mut conn, account.id).await?;
                Ok(Some(account.into_account(permissions)))
            }
            n => {
                let references: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
                Err(self.rejected(format!(
                    "{n} accounts have {attribute} = {value} ({}): correlation must find at \
                     most one; remove the duplicates",
                    references.join(", ")
                )))
            }
        }
    }

    async fn get(&self, reference: &str) -> Result<Option<TargetAccount>, TargetError> {
        let mut conn = self.pool.acquire().await.map_err(|e| self.db_error(e))?;
        let row: Option<AccountRow> = sqlx::query_as(
            "SELECT id, reference, person, attributes, enabled FROM dir_accounts
             WHERE target = ?1 AND reference = ?2",
        )
        .bind(&self.name)
        .bind(reference)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| self.db_error(e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let account = self.decode(row)?;
        let permissions = self.permissions_of(&mut conn, account.id).await?;
        Ok(Some(account.into_account(permissions)))
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
        let rows: Vec<AccountRow> = sqlx::query_as(
            "SELECT id, reference, person, attributes, enabled FROM dir_accounts
             WHERE target = ?1 ORDER BY reference",
        )
        .bind(&self.name)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        let memberships: Vec<(i64, String)> = sqlx::query_as(
            "SELECT m.account_id, g.name FROM dir_groups g
             JOIN dir_memberships m ON m.group_id = g.id WHERE g.target = ?1",
        )
        .bind(&self.name)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        let mut permissions: HashMap<i64, BTreeSet<String>> = HashMap::new();
        for (account, group) in memberships {
            permissions.entry(account).or_default().insert(group);
        }
        rows.into_iter()
            .map(|row| {
                let account = self.decode(row)?;
                let held = permissions.remove(&account.id).unwrap_or_default();
                Ok(account.into_account(held))
            })
            .collect()
    }

    async fn list_permissions(&self) -> Result<Vec<String>, TargetError> {
        sqlx::query_scalar("SELECT name FROM dir_groups WHERE target = ?1 ORDER BY name")
            .bind(&self.name)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.db_error(e))
    }

    async fn is_unique(
        &self,
        attribute: &str,
        value: &str,
        except: Option<&str>,
    ) -> Result<bool, TargetError> {
        let taken: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM dir_account_keys k JOIN dir_accounts a ON a.id = k.account_id
             WHERE k.attribute = ?1 AND k.folded = ?2 AND a.target = ?3
               AND (?4 IS NULL OR a.reference <> ?4)
             LIMIT 1",
        )
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
