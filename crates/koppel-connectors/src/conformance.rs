//! The target conformance suite: the behaviour every [`Target`] must show, written once and
//! run by each connector's tests with one call to [`run_all`] (or per check via [`CHECKS`]).
//!
//! Every check works on accounts it creates itself, for conformance persons numbered so no
//! two checks share one, and first removes what an earlier, interrupted run may have left
//! with the same correlation value; so a target holding other data passes too. Accounts a
//! check creates are deleted again when it ends, whether it passed or not.
//!
//! ```ignore
//! let report = conformance::run_all(&target, &conformance::Fixture::generic("conf")).await;
//! assert!(report.is_ok(), "{}", report.unwrap_err());
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use koppel_core::AttrValue;

use crate::target::{CreateRequest, Created, Done, Op, Target, TargetAccount, TargetError};

/// What the suite needs to know about a target to exercise it.
pub struct Fixture {
    /// The attribute creates correlate on.
    pub correlation: String,
    /// A text attribute whose value is unique per person, for the `is_unique` checks.
    pub unique: String,
    /// Two attributes the suite may change and clear with `update` (neither the correlation
    /// nor the unique attribute).
    pub changeable: [String; 2],
    /// Two permissions the target can grant (created on demand or existing beforehand).
    pub permissions: [String; 2],
    /// A reference no account has, in the target's own form (a DN under the base, an id).
    pub missing_reference: String,
    /// A fresh request for conformance person `n`: enabled, correlating on `correlation`,
    /// and setting `correlation`, `unique` and both `changeable` attributes to text values
    /// that differ between persons. `unique` must contain a letter (it is compared in
    /// another case).
    pub request: Box<dyn Fn(u32) -> CreateRequest + Send + Sync>,
}

impl Fixture {
    /// A fixture for targets that take any attribute: twelve text attributes in the shape of
    /// a directory user, names and values prefixed with `tag` so several runs can coexist.
    pub fn generic(tag: &str) -> Fixture {
        let tag = tag.to_owned();
        let make_tag = tag.clone();
        Fixture {
            correlation: "employeeId".to_owned(),
            unique: "userName".to_owned(),
            changeable: ["title".to_owned(), "department".to_owned()],
            permissions: [format!("{tag}-group-a"), format!("{tag}-group-b")],
            missing_reference: format!("{tag}-missing-account"),
            request: Box::new(move |n| generic_request(&make_tag, n)),
        }
    }

    fn request(&self, n: u32) -> CreateRequest {
        (self.request)(n)
    }

    fn correlation_value(&self, request: &CreateRequest) -> AttrValue {
        request
            .correlation
            .as_ref()
            .map(|(_, v)| v.clone())
            .or_else(|| request.attributes.get(&self.correlation).cloned())
            .unwrap_or_default()
    }
}

fn generic_request(tag: &str, n: u32) -> CreateRequest {
    let person = format!("{tag}-{n:04}");
    let text = |s: String| AttrValue::Text(s);
    let attributes: BTreeMap<String, AttrValue> = [
        ("employeeId", text(person.clone())),
        ("userName", text(format!("Conf.User{n}.{tag}"))),
        ("givenName", text(format!("Anna{n}"))),
        ("familyName", text("de Vries".to_owned())),
        ("displayName", text(format!("Anna{n} de Vries"))),
        ("mail", text(format!("anna{n}.devries@{tag}.example"))),
        ("title", text("Beleidsmedewerker".to_owned())),
        ("department", text("Burgerzaken".to_owned())),
        ("costCentre", text(format!("KP{}", 100 + n % 7))),
        ("phone", text(format!("+31 20 555 {n:04}"))),
        ("location", text("Stadhuis".to_owned())),
        ("manager", text(format!("{tag}-manager"))),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    CreateRequest {
        person: person.clone(),
        attributes,
        enabled: true,
        correlation: Some(("employeeId".to_owned(), text(person))),
    }
}

/// One check that failed, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("conformance check `{check}` failed: {message}")]
pub struct ConformanceFailure {
    pub check: &'static str,
    pub message: String,
}

/// Every check that failed in a run of the suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConformanceFailures {
    pub target: String,
    pub passed: Vec<&'static str>,
    pub failed: Vec<ConformanceFailure>,
}

impl fmt::Display for ConformanceFailures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} of {} conformance checks failed",
            self.target,
            self.failed.len(),
            self.failed.len() + self.passed.len()
        )?;
        for failure in &self.failed {
            writeln!(f, "  {}: {}", failure.check, failure.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConformanceFailures {}

type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;
type CheckFn = for<'a> fn(&'a Ctx<'a>) -> CheckFuture<'a>;

/// One named check of the suite.
pub struct Check {
    pub name: &'static str,
    /// Which conformance persons it uses: `base .. base + 10`.
    base: u32,
    run: CheckFn,
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check").field("name", &self.name).finish()
    }
}

/// Every check, in the order [`run_all`] runs them.
pub const CHECKS: &[Check] = &[
    Check {
        name: "create_is_idempotent",
        base: 10,
        run: |c| Box::pin(create_is_idempotent(c)),
    },
    Check {
        name: "create_without_correlation",
        base: 20,
        run: |c| Box::pin(create_without_correlation(c)),
    },
    Check {
        name: "update_changes_only_given_attributes",
        base: 30,
        run: |c| Box::pin(update_changes_only_given_attributes(c)),
    },
    Check {
        name: "enable_disable_round_trip",
        base: 40,
        run: |c| Box::pin(enable_disable_round_trip(c)),
    },
    Check {
        name: "grant_twice_gives_one_membership",
        base: 50,
        run: |c| Box::pin(grant_twice_gives_one_membership(c)),
    },
    Check {
        name: "revoke_missing_membership_succeeds",
        base: 60,
        run: |c| Box::pin(revoke_missing_membership_succeeds(c)),
    },
    Check {
        name: "revoke_removes",
        base: 70,
        run: |c| Box::pin(revoke_removes(c)),
    },
    Check {
        name: "delete_missing_succeeds",
        base: 80,
        run: |c| Box::pin(delete_missing_succeeds(c)),
    },
    Check {
        name: "delete_removes_account_and_memberships",
        base: 90,
        run: |c| Box::pin(delete_removes_account_and_memberships(c)),
    },
    Check {
        name: "missing_reference_is_no_such_account",
        base: 100,
        run: |c| Box::pin(missing_reference_is_no_such_account(c)),
    },
    Check {
        name: "is_unique_is_case_insensitive_and_honours_except",
        base: 110,
        run: |c| Box::pin(is_unique_is_case_insensitive_and_honours_except(c)),
    },
    Check {
        name: "apply_mixed_batch",
        base: 120,
        run: |c| Box::pin(apply_mixed_batch(c)),
    },
];

/// Runs one check, then deletes the accounts it created.
pub async fn run_check(
    target: &dyn Target,
    fixture: &Fixture,
    check: &Check,
) -> Result<(), ConformanceFailure> {
    let ctx = Ctx {
        target,
        fixture,
        base: check.base,
        created: Mutex::new(Vec::new()),
    };
    let outcome = (check.run)(&ctx).await;
    let created = match ctx.created.lock() {
        Ok(mut created) => std::mem::take(&mut *created),
        Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
    };
    let mut tidy = Ok(());
    for reference in created {
        if let Err(e) = target.delete(&reference).await {
            tidy = Err(format!("could not delete {reference} afterwards: {e}"));
        }
    }
    outcome.and(tidy).map_err(|message| ConformanceFailure {
        check: check.name,
        message,
    })
}

/// Runs every check and reports the names that passed, or every failure.
pub async fn run_all(
    target: &dyn Target,
    fixture: &Fixture,
) -> Result<Vec<&'static str>, ConformanceFailures> {
    let mut passed = Vec::new();
    let mut failed = Vec::new();
    for check in CHECKS {
        match run_check(target, fixture, check).await {
            Ok(()) => passed.push(check.name),
            Err(failure) => failed.push(failure),
        }
    }
    if failed.is_empty() {
        Ok(passed)
    } else {
        Err(ConformanceFailures {
            target: target.name().to_owned(),
            passed,
            failed,
        })
    }
}

/// What a check works with.
struct Ctx<'a> {
    target: &'a dyn Target,
    fixture: &'a Fixture,
    base: u32,
    /// References to delete when the check ends.
    created: Mutex<Vec<String>>,
}

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

impl Ctx<'_> {
    fn remember(&self, reference: &str) {
        if let Ok(mut created) = self.created.lock()
            && !created.iter().any(|r| r == reference)
        {
            created.push(reference.to_owned());
        }
    }

    /// The request for this check's person `k`, after removing any account an earlier run
    /// left with its correlation value.
    async fn fresh(&self, k: u32) -> Result<CreateRequest, String> {
        let request = self.fixture.request(self.base + k);
        let value = self.fixture.correlation_value(&request);
        ensure!(
            !value.is_null(),
            "the fixture's request for person {} has no {} value",
            self.base + k,
            self.fixture.correlation
        );
        for reference in self.holders(&value).await? {
            self.target
                .delete(&reference)
                .await
                .map_err(|e| format!("removing leftover account {reference}: {e}"))?;
        }
        Ok(request)
    }

    /// References of every account whose correlation attribute is `value`.
    async fn holders(&self, value: &AttrValue) -> Result<Vec<String>, String> {
        match self
            .target
            .correlate(&self.fixture.correlation, value)
            .await
        {
            Ok(None) => Ok(Vec::new()),
            Ok(Some(account)) => Ok(vec![account.reference]),
            // Several: find them all the slow way.
            Err(TargetError::Rejected { .. }) => Ok(self
                .list()
                .await?
                .into_iter()
                .filter(|a| {
                    a.attributes
                        .get(&self.fixture.correlation)
                        .is_some_and(|v| same_ci(v, value))
                })
                .map(|a| a.reference)
                .collect()),
            Err(e) => Err(format!("correlate: {e}")),
        }
    }

    async fn create(&self, request: &CreateRequest) -> Result<Created, String> {
        let created = self
            .target
            .create(request)
            .await
            .map_err(|e| format!("create for {}: {e}", request.person))?;
        self.remember(created.reference());
        Ok(created)
    }

    async fn create_new(&self, request: &CreateRequest) -> Result<String, String> {
        match self.create(request).await? {
            Created::New(reference) => Ok(reference),
            Created::Adopted(reference) => Err(format!(
                "create for {} of a fresh person adopted {reference} instead of creating",
                request.person
            )),
        }
    }

    async fn get(&self, reference: &str) -> Result<TargetAccount, String> {
        match self.target.get(reference).await {
            Ok(Some(account)) => Ok(account),
            Ok(None) => Err(format!("get({reference}) found nothing")),
            Err(e) => Err(format!("get({reference}): {e}")),
        }
    }

    async fn list(&self) -> Result<Vec<TargetAccount>, String> {
        self.target
            .list_accounts()
            .await
            .map_err(|e| format!("list_accounts: {e}"))
    }

    async fn listed(&self, reference: &str) -> Result<Option<TargetAccount>, String> {
        Ok(self
            .list()
            .await?
            .into_iter()
            .find(|a| a.reference == reference))
    }

    fn permission(&self, i: usize) -> &str {
        &self.fixture.permissions[i]
    }
}

/// Values as a target may give them back: a number as text, one value as a one-element list.
fn rendered(value: &AttrValue) -> Vec<String> {
    match value {
        AttrValue::Null => Vec::new(),
        AttrValue::Bool(b) => vec![b.to_string()],
        AttrValue::Int(i) => vec![i.to_string()],
        AttrValue::Text(s) => vec![s.clone()],
        AttrValue::List(l) => l.clone(),
    }
}

fn same(a: &AttrValue, b: &AttrValue) -> bool {
    rendered(&a.clone().normalized()) == rendered(&b.clone().normalized())
}

fn same_ci(a: &AttrValue, b: &AttrValue) -> bool {
    let lower = |v: &AttrValue| -> Vec<String> {
        rendered(&v.clone().normalized())
            .iter()
            .map(|s| s.to_lowercase())
            .collect()
    };
    lower(a) == lower(b)
}

/// Every attribute of `expected` (absent for `Null`) as the account has it.
fn has_attributes(
    account: &TargetAccount,
    expected: &BTreeMap<String, AttrValue>,
) -> Result<(), String> {
    for (name, want) in expected {
        let got = account.attributes.get(name).cloned().unwrap_or_default();
        ensure!(
            same(&got, want),
            "account {} has {name} = {got}, expected {want}",
            account.reference
        );
    }
    Ok(())
}

fn text(s: &str) -> AttrValue {
    AttrValue::Text(s.to_owned())
}

async fn create_is_idempotent(c: &Ctx<'_>) -> Result<(), String> {
    let request = c.fresh(0).await?;
    let reference = c.create_new(&request).await?;
    match c.create(&request).await? {
        Created::Adopted(again) => ensure!(
            again == reference,
            "a second create adopted {again}, not the account {reference} it made first"
        ),
        Created::New(other) => {
            return Err(format!(
                "a second create with the same correlation made a second account {other} \
                 instead of adopting {reference}"
            ));
        }
    }
    let value = c.fixture.correlation_value(&request);
    let holders: Vec<String> = c
        .list()
        .await?
        .into_iter()
        .filter(|a| {
            a.attributes
                .get(&c.fixture.correlation)
                .is_some_and(|v| same_ci(v, &value))
        })
        .map(|a| a.reference)
        .collect();
    ensure!(
        holders == [reference.clone()],
        "after two creates list_accounts has {holders:?} with {} = {value}, expected only \
         {reference}",
        c.fixture.correlation
    );
    let found = c
        .target
        .correlate(&c.fixture.correlation, &value)
        .await
        .map_err(|e| format!("correlate: {e}"))?;
    ensure!(
        found.as_ref().map(|a| a.reference.as_str()) == Some(reference.as_str()),
        "correlate({} = {value}) found {:?}, expected {reference}",
        c.fixture.correlation,
        found.map(|a| a.reference)
    );
    // Adoption brings a drifted account back to what was asked.
    let [changed, _] = &c.fixture.changeable;
    let drift = BTreeMap::from([(changed.clone(), text("changed by hand"))]);
    c.target
        .update(&reference, &drift)
        .await
        .map_err(|e| format!("update: {e}"))?;
    c.target
        .set_enabled(&reference, false)
        .await
        .map_err(|e| format!("set_enabled: {e}"))?;
    let adopted = c.create(&request).await?;
    ensure!(
        adopted == Created::Adopted(reference.clone()),
        "a third create gave {adopted:?}, expected Adopted({reference})"
    );
    let account = c.get(&reference).await?;
    has_attributes(&account, &request.attributes)
        .map_err(|e| format!("after adopting a changed account: {e}"))?;
    ensure!(
        account.enabled == request.enabled,
        "adopting did not bring enabled back to {}",
        request.enabled
    );
    Ok(())
}

async fn create_without_correlation(c: &Ctx<'_>) -> Result<(), String> {
    let mut request = c.fresh(0).await?;
    request.correlation = None;
    request.enabled = false;
    let reference = c.create_new(&request).await?;
    let account = c.get(&reference).await?;
    has_attributes(&account, &request.attributes)?;
    ensure!(
        !account.enabled,
        "an account created disabled reads back enabled"
    );
    let listed = c.listed(&reference).await?;
    ensure!(
        listed.is_some(),
        "list_accounts does not show the new account {reference}"
    );
    Ok(())
}

async fn update_changes_only_given_attributes(c: &Ctx<'_>) -> Result<(), String> {
    let request = c.fresh(0).await?;
    let reference = c.create_new(&request).await?;
    let [changed, cleared] = &c.fixture.changeable;
    let changes = BTreeMap::from([
        (changed.clone(), text("Teamleider Conformance")),
        (cleared.clone(), AttrValue::Null),
    ]);
    c.target
        .update(&reference, &changes)
        .await
        .map_err(|e| format!("update: {e}"))?;
    let mut expected = request.attributes.clone();
    expected.extend(changes);
    let account = c.get(&reference).await?;
    has_attributes(&account, &expected)?;
    ensure!(
        !account.attributes.contains_key(cleared)
            || account
                .attributes
                .get(cleared)
                .is_some_and(AttrValue::is_null),
        "{cleared} is still present after updating it to Null"
    );
    // An update with nothing in it changes nothing.
    c.target
        .update(&reference, &BTreeMap::new())
        .await
        .map_err(|e| format!("empty update: {e}"))?;
    has_attributes(&c.get(&reference).await?, &expected)
        .map_err(|e| format!("after an empty update: {e}"))
}

async fn enable_disable_round_trip(c: &Ctx<'_>) -> Result<(), String> {
    let request = c.fresh(0).await?;
    let reference = c.create_new(&request).await?;
    for enabled in [false, false, true, true, false] {
        c.target
            .set_enabled(&reference, enabled)
            .await
            .map_err(|e| format!("set_enabled({enabled}): {e}"))?;
        let account = c.get(&reference).await?;
        ensure!(
            account.enabled == enabled,
            "after set_enabled({enabled}) get says enabled = {}",
            account.enabled
        );
    }
    let listed = c.listed(&reference).await?;
    ensure!(
        listed.is_some_and(|a| !a.enabled),
        "list_accounts does not show {reference} disabled"
    );
    Ok(())
}

async fn grant_twice_gives_one_membership(c: &Ctx<'_>) -> Result<(), String> {
    let request = c.fresh(0).await?;
    let reference = c.create_new(&request).await?;
    let p = c.permission(0);
    for time in ["first", "second"] {
        c.target
            .grant(&reference, p)
            .await
            .map_err(|e| format!("{time} grant of {p}: {e}"))?;
    }
    let account = c.get(&reference).await?;
    ensure!(
        account.permissions.contains(p),
        "after granting {p} get shows permissions {:?}",
        account.permissions
    );
    let listed = c
        .listed(&reference)
        .await?
        .ok_or_else(|| format!("list_accounts does not show {reference}"))?;
    ensure!(
        listed.permissions.contains(p),
        "list_accounts shows {reference} with {:?}, without {p}",
        listed.permissions
    );
    let known = c
        .target
        .list_permissions()
        .await
        .map_err(|e| format!("list_permissions: {e}"))?;
    ensure!(
        known.iter().filter(|k| *k == p).count() == 1,
        "list_permissions should name {p} once: {known:?}"
    );
    // Once more after revoking: one grant must undo the two.
    c.target
        .revoke(&reference, p)
        .await
        .map_err(|e| format!("revoke of {p}: {e}"))?;
    let account = c.get(&reference).await?;
    ensure!(
        !account.permissions.contains(p),
        "granting {p} twice left a membership that one revoke did not remove"
    );
    Ok(())
}

async fn revoke_missing_membership_succeeds(c: &Ctx<'_>) -> Result<(), String> {
    let request = c.fresh(0).await?;
    let reference = c.create_new(&request).await?;
    let (held, never) = (c.permission(0), c.permission(1));
    c.target
        .grant(&reference, held)
        .await
        .map_err(|e| format!("grant of {held}: {e}"))?;
    c.target
        .revoke(&reference, never)
        .await
        .map_err(|e| format!("revoking {never}, never granted, failed: {e}"))?;
    let account = c.get(&reference).await?;
    ensure!(
        account.permissions.contains(held) && !account.permissions.contains(never),
        "after revoking a membership it never had, {reference} has {:?}",
        account.permissions
    );
    Ok(())
}

async fn revoke_removes(c: &Ctx<'_>) -> Result<(), String> {
    let request = c.fresh(0).await?;
    let reference = c.create_new(&request).await?;
    let (a, b) = (c.permission(0), c.permission(1));
    for p in [a, b] {
        c.target
            .grant(&reference, p)
            .await
            .map_err(|e| format!("grant of {p}: {e}"))?;
    }
    c.target
        .revoke(&reference, a)
        .await
        .map_err(|e| format!("revoke of {a}: {e}"))?;
    let account = c.get(&reference).await?;
    ensure!(
        !account.permissions.contains(a) && account.permissions.contains(b),
        "after granting {a} and {b} and revoking {a}, {reference} has {:?}",
        account.permissions
    );
    c.target
        .revoke(&reference, a)
        .await
        .map_err(|e| format!("revoking {a} a second time: {e}"))?;
    Ok(())
}

async fn delete_missing_succeeds(c: &Ctx<'_>) -> Result<(), String> {
    let missing = &c.fixture.missing_reference;
    c.target
        .delete(missing)
        .await
        .map_err(|e| format!("deleting the missing account {missing} failed: {e}"))
}

async fn delete_removes_account_and_memberships(c: &Ctx<'_>) -> Result<(), String> {
    let request = c.fresh(0).await?;
    let reference = c.create_new(&request).await?;
    let p = c.permission(0);
    c.target
        .grant(&reference, p)
        .await
        .map_err(|e| format!("grant of {p}: {e}"))?;
    c.target
        .delete(&reference)
        .await
        .map_err(|e| format!("delete: {e}"))?;
    let got = c
        .target
        .get(&reference)
        .await
        .map_err(|e| format!("get after delete: {e}"))?;
    ensure!(got.is_none(), "get still finds {reference} after delete");
    ensure!(
        c.listed(&reference).await?.is_none(),
        "list_accounts still shows {reference} after delete"
    );
    let value = c.fixture.correlation_value(&request);
    let found = c
        .target
        .correlate(&c.fixture.correlation, &value)
        .await
        .map_err(|e| format!("correlate after delete: {e}"))?;
    ensure!(
        found.is_none(),
        "correlate still finds {:?} after delete",
        found.map(|a| a.reference)
    );
    c.target
        .delete(&reference)
        .await
        .map_err(|e| format!("deleting {reference} a second time: {e}"))?;
    // A new account for the same person starts without the old memberships.
    let again = c.create_new(&request).await?;
    let account = c.get(&again).await?;
    ensure!(
        !account.permissions.contains(p),
        "the account created after deleting {reference} inherited its membership of {p}"
    );
    Ok(())
}

fn expect_no_such_account(what: &str, result: Result<(), TargetError>) -> Result<(), String> {
    match result {
        Err(TargetError::NoSuchAccount { .. }) => Ok(()),
        Err(e) => Err(format!(
            "{what} on a missing account gave {e}, not NoSuchAccount"
        )),
        Ok(()) => Err(format!(
            "{what} on a missing account succeeded instead of giving NoSuchAccount"
        )),
    }
}

async fn missing_reference_is_no_such_account(c: &Ctx<'_>) -> Result<(), String> {
    let missing = c.fixture.missing_reference.as_str();
    let p = c.permission(0);
    let changes = BTreeMap::from([(c.fixture.changeable[0].clone(), text("x"))]);
    expect_no_such_account("update", c.target.update(missing, &changes).await)?;
    expect_no_such_account("set_enabled", c.target.set_enabled(missing, false).await)?;
    expect_no_such_account("grant", c.target.grant(missing, p).await)?;
    match c.target.revoke(missing, p).await {
        Ok(()) | Err(TargetError::NoSuchAccount { .. }) => {}
        Err(e) => return Err(format!("revoke on a missing account gave {e}")),
    }
    c.target
        .delete(missing)
        .await
        .map_err(|e| format!("delete on a missing account gave {e}, not success"))?;
    let got = c
        .target
        .get(missing)
        .await
        .map_err(|e| format!("get on a missing account: {e}"))?;
    ensure!(
        got.is_none(),
        "get({missing}) found an account: the fixture's missing_reference exists"
    );
    Ok(())
}

async fn is_unique_is_case_insensitive_and_honours_except(c: &Ctx<'_>) -> Result<(), String> {
    let request = c.fresh(0).await?;
    let attribute = &c.fixture.unique;
    let value = request
        .attributes
        .get(attribute)
        .and_then(AttrValue::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("the fixture's request sets no text {attribute}"))?;
    let unique = |v: String, except: Option<String>| async move {
        c.target
            .is_unique(attribute, &v, except.as_deref())
            .await
            .map_err(|e| format!("is_unique({attribute}, {v:?}): {e}"))
    };
    ensure!(
        unique(value.clone(), None).await?,
        "{attribute} = {value:?} is taken before the account exists"
    );
    let reference = c.create_new(&request).await?;
    for form in [value.clone(), value.to_uppercase(), value.to_lowercase()] {
        ensure!(
            !unique(form.clone(), None).await?,
            "is_unique({attribute}, {form:?}) is true while {reference} has {value:?}"
        );
        ensure!(
            unique(form.clone(), Some(reference.clone())).await?,
            "is_unique({attribute}, {form:?}, except {reference}) is false though only \
             {reference} has it"
        );
    }
    ensure!(
        !unique(value.clone(), Some(c.fixture.missing_reference.clone())).await?,
        "is_unique with an unrelated except ignored {reference}"
    );
    let other = format!("{value}-free");
    ensure!(
        unique(other.clone(), None).await?,
        "is_unique({attribute}, {other:?}) is false though nobody has it"
    );
    Ok(())
}

async fn apply_mixed_batch(c: &Ctx<'_>) -> Result<(), String> {
    let a = c.fresh(0).await?;
    let b = c.fresh(1).await?;
    let rb = c.create_new(&b).await?;
    let missing = c.fixture.missing_reference.clone();
    let (p0, p1) = (c.permission(0).to_owned(), c.permission(1).to_owned());
    let changed = c.fixture.changeable[0].clone();
    let grant = |p: &str| Op::Grant {
        reference: rb.clone(),
        permission: p.to_owned(),
    };
    let ops = vec![
        Op::Create(a.clone()),
        Op::Update {
            reference: rb.clone(),
            changes: BTreeMap::from([(changed.clone(), text("Batch"))]),
        },
        grant(&p0),
        Op::SetEnabled {
            reference: missing.clone(),
            enabled: false,
        },
        grant(&p1),
        Op::Revoke {
            reference: rb.clone(),
            permission: p0.clone(),
        },
        Op::Delete {
            reference: missing.clone(),
        },
        Op::Create(a.clone()),
        Op::SetEnabled {
            reference: rb.clone(),
            enabled: false,
        },
    ];
    let results = c.target.apply(&ops).await;
    for result in &results {
        if let Ok(Done::Created(created)) = result {
            c.remember(created.reference());
        }
    }
    ensure!(
        results.len() == ops.len(),
        "apply of {} operations gave {} results",
        ops.len(),
        results.len()
    );
    let ra = match &results[0] {
        Ok(Done::Created(Created::New(r))) => r.clone(),
        other => return Err(format!("op 0 (create) gave {other:?}, expected New")),
    };
    for i in [1, 2, 4, 5, 6, 8] {
        ensure!(
            results[i] == Ok(Done::Ok),
            "op {i} ({:?}) gave {:?}, expected Ok",
            ops[i],
            results[i]
        );
    }
    ensure!(
        matches!(results[3], Err(TargetError::NoSuchAccount { .. })),
        "op 3 (set_enabled on a missing account) gave {:?}, expected NoSuchAccount",
        results[3]
    );
    ensure!(
        results[7] == Ok(Done::Created(Created::Adopted(ra.clone()))),
        "op 7 (the same create again) gave {:?}, expected Adopted({ra})",
        results[7]
    );
    let account = c.get(&rb).await?;
    let want = BTreeMap::from([(changed.clone(), text("Batch"))]);
    has_attributes(&account, &want).map_err(|e| format!("after the batch: {e}"))?;
    ensure!(!account.enabled, "after the batch {rb} is still enabled");
    ensure!(
        account.permissions.contains(&p1) && !account.permissions.contains(&p0),
        "after granting {p0} and {p1} and revoking {p0} in one batch, {rb} has {:?}",
        account.permissions
    );
    let created = c.get(&ra).await?;
    has_attributes(&created, &a.attributes)?;
    Ok(())
}
