//! The known state in tables: `accounts`, `released`, `targets` and the `state` version.
//! Reading all of it fast is what this module is about; the semantics stay in koppel-core.
//!
//! sqlx hands rows over one at a time through a channel, about a microsecond each, which
//! alone would take most of the budget for 300k accounts. So SQLite concatenates the rows
//! of a range of persons into one self-delimiting text (`group_concat`, see `codec`), ranges
//! of several targets are read on several connections at once, and each range is decoded
//! on a blocking thread while the next one is read.

use std::collections::{BTreeMap, BTreeSet};

use koppel_core::{Date, KnownAccount, KnownState, TargetState};
use sqlx::{Sqlite, SqlitePool, Transaction};
use tokio::task::JoinSet;

use super::get;
use crate::codec::{self, DecodeError, Reader};
use crate::error::{Doing, StoreError, corrupt};

/// Accounts per range read at once: large enough that the per-query cost vanishes, small
/// enough that decoding one range overlaps with reading the next.
const RANGE: i64 = 16_384;

/// One self-delimiting record per account, in person order (the primary key's).
const RANGE_SQL: &str = "
SELECT count(*), max(person), group_concat(rec, '') FROM (
    SELECT person, concat(
        octet_length(person), ':', person,
        octet_length(reference), ':', reference,
        enabled,
        iif(disabled_on IS NULL, '-', concat(octet_length(disabled_on), ':', disabled_on)),
        attributes, permissions, generator_inputs) AS rec
    FROM accounts
    WHERE target = ?1 AND person > ?2
    ORDER BY person
    LIMIT ?3
)";

/// The same records, each preceded by its target, for a list of (target, person) keys.
const KEYS_SQL: &str = "
SELECT group_concat(concat(
        octet_length(target), ':', target,
        octet_length(person), ':', person,
        octet_length(reference), ':', reference,
        enabled,
        iif(disabled_on IS NULL, '-', concat(octet_length(disabled_on), ':', disabled_on)),
        attributes, permissions, generator_inputs), '')
FROM json_each(?1) AS k
CROSS JOIN accounts AS a ON a.target = k.value->>0 AND a.person = k.value->>1";

/// The whole known state.
pub async fn load(pool: &SqlitePool) -> Result<KnownState, StoreError> {
    let targets: Vec<String> = sqlx::query_scalar("SELECT name FROM targets ORDER BY name")
        .fetch_all(pool)
        .await
        .doing("reading the known targets")?;

    let mut tasks = JoinSet::new();
    for (i, target) in targets.iter().enumerate() {
        let pool = pool.clone();
        let target = target.clone();
        tasks.spawn(async move { (i, load_target(&pool, &target).await) });
    }

    let mut known = KnownState::default();
    let released = load_released(pool).await?;
    let mut accounts: Vec<Option<BTreeMap<String, KnownAccount>>> = vec![None; targets.len()];
    while let Some(done) = tasks.join_next().await {
        let (i, result) = done.map_err(|e| corrupt(format!("reading accounts: {e}")))?;
        accounts[i] = Some(result?);
    }
    for (target, accounts) in targets.into_iter().zip(accounts) {
        known.targets.insert(
            target,
            TargetState {
                accounts: accounts.unwrap_or_default(),
                released: BTreeMap::new(),
            },
        );
    }
    for (target, released) in released {
        known.targets.entry(target).or_default().released = released;
    }
    Ok(known)
}

type Released = BTreeMap<String, BTreeMap<String, BTreeMap<String, Date>>>;

async fn load_released(pool: &SqlitePool) -> Result<Released, StoreError> {
    let rows = sqlx::query("SELECT target, field, value, released_on FROM released")
        .fetch_all(pool)
        .await
        .doing("reading released values")?;
    let mut out = Released::new();
    for row in rows {
        let on: &str = get(&row, 3)?;
        let on = parse_date(on)?;
        out.entry(get(&row, 0)?)
            .or_default()
            .entry(get(&row, 1)?)
            .or_default()
            .insert(get(&row, 2)?, on);
    }
    Ok(out)
}

async fn load_target(
    pool: &SqlitePool,
    target: &str,
) -> Result<BTreeMap<String, KnownAccount>, StoreError> {
    let mut after = String::new();
    let mut decoding = Vec::new();
    loop {
        let row = sqlx::query(RANGE_SQL)
            .bind(target)
            .bind(&after)
            .bind(RANGE)
            .fetch_one(pool)
            .await
            .doing("reading accounts")?;
        let count: i64 = get(&row, 0)?;
        if count == 0 {
            break;
        }
        after = get(&row, 1)?;
        let text: String = get(&row, 2)?;
        decoding.push(tokio::task::spawn_blocking(move || decode_range(&text)));
        if count < RANGE {
            break;
        }
    }
    let mut all = Vec::new();
    for d in decoding {
        let part = d
            .await
            .map_err(|e| corrupt(format!("decoding accounts: {e}")))?
            .map_err(|e| corrupt(format!("account record of target {target}: {e}")))?;
        all.extend(part);
    }
    // In primary key order already, which is `String`'s order: the build is linear.
    Ok(all.into_iter().collect())
}

fn decode_range(text: &str) -> Result<Vec<(String, KnownAccount)>, DecodeError> {
    let mut r = Reader::new(text);
    let mut out = Vec::new();
    while !r.is_empty() {
        out.push(decode_record(&mut r)?);
    }
    Ok(out)
}

/// One record of `RANGE_SQL`: the person and their account.
fn decode_record(r: &mut Reader<'_>) -> Result<(String, KnownAccount), DecodeError> {
    let person = r.string()?;
    let reference = r.string()?;
    let enabled = r.flag()?;
    let disabled_on = match r.optional()? {
        Some(s) => Some(s.parse::<Date>().map_err(|_| r.error("bad date"))?),
        None => None,
    };
    let attributes = r.attributes()?;
    let permissions = r.permissions()?;
    let generator_inputs = r.generator_inputs()?;
    Ok((
        person,
        KnownAccount {
            reference,
            attributes,
            enabled,
            permissions,
            disabled_on,
            generator_inputs,
        },
    ))
}

fn parse_date(s: &str) -> Result<Date, StoreError> {
    s.parse::<Date>()
        .map_err(|_| corrupt(format!("{s:?} is not a date")))
}

/// The columns of one account row.
pub struct AccountRow<'a> {
    pub target: &'a str,
    pub person: &'a str,
    pub account: &'a KnownAccount,
}

/// Rows per upsert statement (8 parameters each); the rest goes one row at a time.
const UPSERT_ROWS: usize = 64;

fn upsert_sql(rows: usize) -> String {
    format!(
        "INSERT INTO accounts (target, person, reference, enabled, disabled_on, attributes,
                               permissions, generator_inputs)
         VALUES {}
         ON CONFLICT (target, person) DO UPDATE SET
            reference = excluded.reference, enabled = excluded.enabled,
            disabled_on = excluded.disabled_on, attributes = excluded.attributes,
            permissions = excluded.permissions, generator_inputs = excluded.generator_inputs",
        vec!["(?, ?, ?, ?, ?, ?, ?, ?)"; rows].join(", ")
    )
}

/// Upserts accounts with bound multi-row statements: passed as one JSON array, SQLite
/// parsed each row's JSON again for every column, which cost more than the writes.
pub async fn write_accounts(
    tx: &mut Transaction<'static, Sqlite>,
    rows: &[AccountRow<'_>],
) -> Result<(), StoreError> {
    let full = upsert_sql(UPSERT_ROWS);
    let one = upsert_sql(1);
    for chunk in super::in_runs(rows, UPSERT_ROWS) {
        let sql = if chunk.len() == UPSERT_ROWS {
            &full
        } else {
            &one
        };
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
        for r in chunk {
            let a = r.account;
            let (mut attrs, mut perms, mut gens) = (String::new(), String::new(), String::new());
            codec::encode_attributes(&mut attrs, &a.attributes);
            codec::encode_permissions(&mut perms, &a.permissions);
            codec::encode_generator_inputs(&mut gens, &a.generator_inputs);
            q = q
                .bind(r.target.to_owned())
                .bind(r.person.to_owned())
                .bind(a.reference.clone())
                .bind(i64::from(a.enabled))
                .bind(a.disabled_on.map(|d| d.to_string()))
                .bind(attrs)
                .bind(perms)
                .bind(gens);
        }
        q.execute(&mut **tx).await.doing("writing accounts")?;
    }
    Ok(())
}

pub async fn delete_accounts(
    tx: &mut Transaction<'static, Sqlite>,
    keys: &[(&str, &str)],
) -> Result<(), StoreError> {
    if keys.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "DELETE FROM accounts WHERE (target, person) IN
            (SELECT value->>0, value->>1 FROM json_each(?1))",
    )
    .bind(to_json(keys, "account keys")?)
    .execute(&mut **tx)
    .await
    .doing("deleting accounts")?;
    Ok(())
}

/// The current rows of these accounts (absent ones are missing from the map).
pub async fn read_accounts(
    tx: &mut Transaction<'static, Sqlite>,
    keys: &[(&str, &str)],
) -> Result<BTreeMap<(String, String), KnownAccount>, StoreError> {
    let mut out = BTreeMap::new();
    if keys.is_empty() {
        return Ok(out);
    }
    // One concatenated value rather than a row per account: sqlx's per-row cost was most
    // of the time of a batch.
    let text: Option<String> = sqlx::query_scalar(KEYS_SQL)
        .bind(to_json(keys, "account keys")?)
        .fetch_one(&mut **tx)
        .await
        .doing("reading accounts")?;
    let text = text.unwrap_or_default();
    let mut r = Reader::new(&text);
    while !r.is_empty() {
        let target = r
            .string()
            .map_err(|e| corrupt(format!("account record: {e}")))?;
        let (person, account) =
            decode_record(&mut r).map_err(|e| corrupt(format!("account record: {e}")))?;
        out.insert((target, person), account);
    }
    Ok(out)
}

/// Records values given up by deletes; a later release of the same value moves its date.
pub async fn write_released(
    tx: &mut Transaction<'static, Sqlite>,
    released: &BTreeMap<String, TargetState>,
) -> Result<(), StoreError> {
    let mut rows = Vec::new();
    for (target, state) in released {
        for (field, values) in &state.released {
            for (value, on) in values {
                rows.push((
                    target.as_str(),
                    field.as_str(),
                    value.as_str(),
                    on.to_string(),
                ));
            }
        }
    }
    for chunk in rows.chunks(4096) {
        sqlx::query(
            "INSERT INTO released (target, field, value, released_on)
             SELECT value->>0, value->>1, value->>2, value->>3 FROM json_each(?1) WHERE true
             ON CONFLICT (target, field, value) DO UPDATE SET released_on = excluded.released_on",
        )
        .bind(to_json(chunk, "released values")?)
        .execute(&mut **tx)
        .await
        .doing("writing released values")?;
    }
    Ok(())
}

pub async fn touch_targets(
    tx: &mut Transaction<'static, Sqlite>,
    targets: &BTreeSet<&str>,
) -> Result<(), StoreError> {
    if targets.is_empty() {
        return Ok(());
    }
    sqlx::query("INSERT OR IGNORE INTO targets (name) SELECT value FROM json_each(?1)")
        .bind(to_json(targets, "targets")?)
        .execute(&mut **tx)
        .await
        .doing("recording targets")?;
    Ok(())
}

pub async fn bump_version(tx: &mut Transaction<'static, Sqlite>) -> Result<(), StoreError> {
    sqlx::query("UPDATE state SET version = version + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await
        .doing("bumping the state version")?;
    Ok(())
}

pub async fn import(pool: &SqlitePool, known: &KnownState) -> Result<(), StoreError> {
    let mut tx = super::begin_write(pool).await?;
    for table in [
        "DELETE FROM accounts",
        "DELETE FROM released",
        "DELETE FROM targets",
    ] {
        sqlx::query(table)
            .execute(&mut *tx)
            .await
            .doing("clearing the known state")?;
    }
    let rows: Vec<AccountRow<'_>> = known
        .targets
        .iter()
        .flat_map(|(target, state)| {
            state
                .accounts
                .iter()
                .map(move |(person, account)| AccountRow {
                    target,
                    person,
                    account,
                })
        })
        .collect();
    write_accounts(&mut tx, &rows).await?;
    write_released(&mut tx, &known.targets).await?;
    touch_targets(&mut tx, &known.targets.keys().map(String::as_str).collect()).await?;
    bump_version(&mut tx).await?;
    tx.commit().await.doing("committing the known state")
}

pub fn to_json<T: serde::Serialize + ?Sized>(
    v: &T,
    what: &'static str,
) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Encode {
        what,
        message: e.to_string(),
    })
}
