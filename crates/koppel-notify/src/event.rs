//! Events worth an e-mail, read from what an apply did: joiners (accounts created), leavers
//! (accounts disabled because contracts ended or the person left HR) and held plans. Pure.
//!
//! A plan's actions are looked at in two groups: those a threshold did not withhold (applied
//! by the run itself) and those it withheld (applied on approval). A person's joiner or leaver
//! event is due once none of their creates or disables in the group is still open, so a run
//! that stops half-way and is resumed later tells the manager once, with every account.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use koppel_core::guard::GuardBreach;
use koppel_core::plan::{Action, ActionKind, Origin};
use koppel_core::threshold::ThresholdBreach;
use koppel_core::{AttrValue, Contract, Date, Diagnostic, KnownState, Org, Person, Snapshot};
use koppel_store::{JournalEntry, JournalStatus, StoredPlan};
use serde::Serialize;

use crate::config::{EventKind, ManagerEmail, NotifyConfig};

/// A password to hand to a person once. Never serialized, printed or stored: `Debug` and
/// `Display` show a placeholder, and only the template context reads it, when allowed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("…")
    }
}

/// The person an event is about, as HR has them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PersonInfo {
    pub id: String,
    /// Nickname (else given name) and family name.
    pub name: String,
    pub given_name: String,
    pub family_name: String,
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManagerInfo {
    pub id: String,
    pub name: String,
    /// `None` when no configured source has an address for them.
    pub email: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContractInfo {
    pub id: String,
    pub start: Date,
    pub end: Option<Date>,
    pub department_code: String,
    /// The department's name (its code when the tree does not know it).
    pub department: String,
    pub title: String,
    pub location: String,
}

/// One account of the person in one target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountInfo {
    pub target: String,
    pub username: Option<String>,
    pub email: Option<String>,
    /// Whether the account is usable now (a pre-boarding account waits for the first day).
    pub enabled: bool,
    /// Every attribute written, as text.
    pub attributes: BTreeMap<String, String>,
    /// Only ever set by a connector that hands one over; shown only when the configuration
    /// allows it (`include_initial_password`).
    #[serde(skip)]
    pub initial_password: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Joiner {
    pub plan_id: String,
    pub person: PersonInfo,
    pub contract: ContractInfo,
    pub manager: Option<ManagerInfo>,
    pub accounts: Vec<AccountInfo>,
    /// `run` or `approved`: which part of the plan made the accounts.
    #[serde(skip)]
    pub part: Part,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// The contracts ended (the person may still be in HR).
    ContractEnded,
    /// The person is no longer in the HR export.
    PersonRemoved,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Leaver {
    pub plan_id: String,
    pub person: PersonInfo,
    pub reason: LeaveReason,
    /// The contract that ended, when HR still has or had it.
    pub contract: Option<ContractInfo>,
    pub manager: Option<ManagerInfo>,
    /// The accounts disabled.
    pub accounts: Vec<AccountInfo>,
    #[serde(skip)]
    pub part: Part,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HeldBy {
    /// A source guard: the whole plan waits.
    Guard,
    /// Thresholds: the offending kinds of action wait, the rest was applied.
    Threshold,
}

/// How many actions of one kind in one target wait for approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Withheld {
    pub target: String,
    pub kind: String,
    pub count: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Held {
    pub plan_id: String,
    pub by: HeldBy,
    /// Each exceeded guard or threshold, as a sentence.
    pub breaches: Vec<String>,
    pub withheld: Vec<Withheld>,
    /// The dashboard's page of the plan, when `link_base_url` is set.
    pub link: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Joiner(Joiner),
    Leaver(Leaver),
    Held(Held),
}

/// Which part of a plan an action belongs to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    /// Not withheld: applied by the run itself.
    #[default]
    Run,
    /// Withheld by a threshold or guard: applied once approved.
    Approved,
}

impl Part {
    fn as_str(self) -> &'static str {
        match self {
            Part::Run => "run",
            Part::Approved => "approved",
        }
    }
}

impl Event {
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Joiner(_) => EventKind::Joiner,
            Event::Leaver(_) => EventKind::Leaver,
            Event::Held(_) => EventKind::Held,
        }
    }

    pub fn plan_id(&self) -> &str {
        match self {
            Event::Joiner(j) => &j.plan_id,
            Event::Leaver(l) => &l.plan_id,
            Event::Held(h) => &h.plan_id,
        }
    }

    pub fn person(&self) -> Option<&str> {
        match self {
            Event::Joiner(j) => Some(&j.person.id),
            Event::Leaver(l) => Some(&l.person.id),
            Event::Held(_) => None,
        }
    }

    /// The event's identity in the outbox: reading the same plan's journal again (a resumed
    /// or approved run) yields the same keys, which the outbox keeps only once.
    pub fn key(&self) -> String {
        match self {
            Event::Joiner(j) => format!("joiner/{}/{}/{}", j.plan_id, j.part.as_str(), j.person.id),
            Event::Leaver(l) => format!("leaver/{}/{}/{}", l.plan_id, l.part.as_str(), l.person.id),
            Event::Held(h) => format!("held/{}", h.plan_id),
        }
    }
}

/// Where each action of a plan stands, by its index in the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Done,
    Failed,
    /// Not carried out yet: journaled without an outcome, or not reached.
    Open,
}

/// The status of every action of `plan` from its journal.
pub fn statuses(plan: &StoredPlan, journal: &[JournalEntry]) -> Vec<Status> {
    let mut out = vec![Status::Open; plan.plan.actions.len()];
    for e in journal {
        let Some(slot) = usize::try_from(e.seq).ok().and_then(|i| out.get_mut(i)) else {
            continue;
        };
        *slot = match e.status {
            JournalStatus::Done => Status::Done,
            JournalStatus::Failed => Status::Failed,
            JournalStatus::Pending => Status::Open,
        };
    }
    out
}

/// What the event builder reads besides the plan.
pub struct Sources<'a> {
    /// The HR data of the run; persons no longer in it are looked up in `previous`.
    pub snapshot: &'a Snapshot,
    pub previous: Option<&'a Snapshot>,
    /// The known state, for `account.<target>.<attribute>` manager addresses and the
    /// usernames of disabled accounts; without it those are left out.
    pub known: Option<&'a KnownState>,
    /// The run date: joiners are measured against it.
    pub now: Date,
}

/// The joiner and leaver events of `plan`, whose actions stand as `status` says. Problems
/// that leave an event without recipients later are reported by the message builder; here
/// only what makes an event impossible (a person HR never had) becomes a diagnostic.
pub fn person_events(
    config: &NotifyConfig,
    plan: &StoredPlan,
    status: &[Status],
    sources: &Sources<'_>,
) -> (Vec<Event>, Vec<Diagnostic>) {
    let withheld: BTreeSet<(&str, ActionKind)> = plan
        .withheld
        .iter()
        .map(|(t, k)| (t.as_str(), *k))
        .collect();
    // (part, person) → (creates done, any create open, disables done, any disable open).
    #[derive(Default)]
    struct Acc<'p> {
        created: Vec<&'p Action>,
        create_open: bool,
        disabled: Vec<&'p Action>,
        disable_open: bool,
    }
    let mut by_person: BTreeMap<(Part, &str), Acc<'_>> = BTreeMap::new();
    for (i, a) in plan.plan.actions.iter().enumerate() {
        let leaving = a.kind == ActionKind::Disable && leave_reason(a).is_some();
        if a.kind != ActionKind::Create && !leaving {
            continue;
        }
        let part = if withheld.contains(&(a.target.as_str(), a.kind)) {
            Part::Approved
        } else {
            Part::Run
        };
        let acc = by_person.entry((part, a.person.as_str())).or_default();
        let st = status.get(i).copied().unwrap_or(Status::Open);
        match (a.kind, st) {
            (ActionKind::Create, Status::Done) => acc.created.push(a),
            (ActionKind::Create, Status::Open) => acc.create_open = true,
            (_, Status::Done) => acc.disabled.push(a),
            (_, Status::Open) => acc.disable_open = true,
            _ => {}
        }
    }

    let mut lookup = Lookup::new(config, sources);
    let mut events = Vec::new();
    let mut diags = Vec::new();
    for ((part, person), acc) in &by_person {
        let wants_joiner = config.joiner.enabled && !acc.created.is_empty() && !acc.create_open;
        let wants_leaver = config.leaver.enabled && !acc.disabled.is_empty() && !acc.disable_open;
        if !wants_joiner && !wants_leaver {
            continue;
        }
        let Some((p, which)) = lookup.person(person) else {
            diags.push(
                Diagnostic::warning(
                    "notify_unknown_person",
                    format!(
                        "no notification about {person}: the person is in neither the current nor the previous HR data"
                    ),
                )
                .for_person(*person),
            );
            continue;
        };
        if wants_joiner && let Some(j) = lookup.joiner(p, which, &acc.created, &plan.id, *part) {
            events.push(Event::Joiner(j));
        }
        if wants_leaver {
            events.push(Event::Leaver(lookup.leaver(
                p,
                which,
                &acc.disabled,
                &plan.id,
                *part,
            )));
        }
    }
    (events, diags)
}

/// The held-plan event of `plan`: by its source guards, else by the threshold `breaches`.
/// `None` when nothing holds it or the event is off.
pub fn held_event(
    config: &NotifyConfig,
    plan: &StoredPlan,
    thresholds: &[ThresholdBreach],
) -> Option<Event> {
    if !config.held.enabled {
        return None;
    }
    let (by, breaches) = if !plan.plan.held.is_empty() {
        (
            HeldBy::Guard,
            plan.plan.held.iter().map(GuardBreach::to_string).collect(),
        )
    } else if !thresholds.is_empty() {
        (
            HeldBy::Threshold,
            thresholds.iter().map(ThresholdBreach::to_string).collect(),
        )
    } else {
        return None;
    };
    let withheld_kinds: BTreeSet<(&str, ActionKind)> = plan
        .withheld
        .iter()
        .map(|(t, k)| (t.as_str(), *k))
        .collect();
    let mut counts: BTreeMap<(&str, ActionKind), usize> = BTreeMap::new();
    for a in &plan.plan.actions {
        if withheld_kinds.contains(&(a.target.as_str(), a.kind)) {
            *counts.entry((a.target.as_str(), a.kind)).or_default() += 1;
        }
    }
    let link = config.link_base_url.as_ref().and_then(|base| {
        let mut url = base.clone();
        {
            // Segments are percent-encoded as they are pushed.
            let mut segments = url.path_segments_mut().ok()?;
            segments.pop_if_empty().push("plans").push(&plan.id);
        }
        Some(url.to_string())
    });
    Some(Event::Held(Held {
        plan_id: plan.id.clone(),
        by,
        breaches,
        withheld: counts
            .into_iter()
            .map(|((target, kind), count)| Withheld {
                target: target.to_owned(),
                kind: kind.as_str().to_owned(),
                count,
            })
            .collect(),
        link,
    }))
}

fn leave_reason(a: &Action) -> Option<LeaveReason> {
    a.reasons.iter().find_map(|r| match r.origin {
        Origin::PersonRemoved => Some(LeaveReason::PersonRemoved),
        Origin::ContractEnded => Some(LeaveReason::ContractEnded),
        _ => None,
    })
}

/// Which snapshot a person was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Current,
    Previous,
}

/// Person, department and manager look-ups over the current and previous HR data.
struct Lookup<'a> {
    config: &'a NotifyConfig,
    sources: &'a Sources<'a>,
    orgs: [Option<Org>; 2],
}

impl<'a> Lookup<'a> {
    fn new(config: &'a NotifyConfig, sources: &'a Sources<'a>) -> Self {
        Self {
            config,
            sources,
            orgs: [None, None],
        }
    }

    fn snapshot(&self, which: Which) -> Option<&'a Snapshot> {
        match which {
            Which::Current => Some(self.sources.snapshot),
            Which::Previous => self.sources.previous,
        }
    }

    fn person(&self, id: &str) -> Option<(&'a Person, Which)> {
        [Which::Current, Which::Previous]
            .into_iter()
            .find_map(|w| self.snapshot(w)?.person(id).map(|p| (p, w)))
    }

    fn org(&mut self, which: Which) -> &Org {
        let i = which as usize;
        let snapshot = self.snapshot(which);
        self.orgs[i].get_or_insert_with(|| {
            Org::new(snapshot.map(|s| s.departments.clone()).unwrap_or_default())
        })
    }

    fn contract_info(&mut self, c: &Contract, which: Which) -> ContractInfo {
        let department = self
            .org(which)
            .department(&c.department)
            .map(|d| d.name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| c.department.clone());
        ContractInfo {
            id: c.id.clone(),
            start: c.start,
            end: c.end,
            department_code: c.department.clone(),
            department,
            title: if c.title.name.is_empty() {
                c.title.code.clone()
            } else {
                c.title.name.clone()
            },
            location: c.location.clone(),
        }
    }

    fn manager(&mut self, p: &Person, c: &Contract, which: Which) -> Option<ManagerInfo> {
        let id = self.org(which).manager_of(p, c)?;
        let record = self.person(&id).map(|(m, _)| m);
        let email = self.config.manager_email.iter().find_map(|source| {
            let value = match source {
                ManagerEmail::Person => record.map(|m| m.email.trim().to_owned()),
                ManagerEmail::Account { target, attribute } => self
                    .sources
                    .known
                    .and_then(|k| k.account(target, &id))
                    .and_then(|a| a.attributes.get(attribute))
                    .and_then(first_text),
            };
            value.filter(|v| !v.is_empty())
        });
        Some(ManagerInfo {
            name: record.map_or_else(|| id.clone(), |m| koppel_core::names::display_name(&m.name)),
            id,
            email,
        })
    }

    fn account(
        &self,
        a: &Action,
        attributes: &BTreeMap<String, AttrValue>,
        enabled: bool,
    ) -> AccountInfo {
        let pick = |names: &[String]| {
            names
                .iter()
                .find_map(|n| attributes.get(n).and_then(first_text))
                .filter(|v| !v.is_empty())
        };
        AccountInfo {
            target: a.target.clone(),
            username: pick(&self.config.username_attributes),
            email: pick(&self.config.email_attributes),
            enabled,
            attributes: attributes
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), text(v)?)))
                .collect(),
            initial_password: None,
        }
    }

    fn joiner(
        &mut self,
        p: &Person,
        which: Which,
        created: &[&Action],
        plan_id: &str,
        part: Part,
    ) -> Option<Joiner> {
        let named: BTreeSet<&str> = created
            .iter()
            .flat_map(|a| a.reasons.iter())
            .flat_map(|r| r.contracts.iter().map(String::as_str))
            .collect();
        // The contract that made them a joiner: the latest to start of those the creates
        // name (all of the person's when they name none).
        let contract = p
            .contracts
            .iter()
            .filter(|c| named.is_empty() || named.contains(c.id.as_str()))
            .max_by(|a, b| a.start.cmp(&b.start).then_with(|| b.id.cmp(&a.id)))?;
        let earliest = self
            .sources
            .now
            .checked_sub_days(chrono_days(self.config.joiner.start_within_days))?;
        if contract.start < earliest {
            // Long employed: a first run or a newly configured target, not a joiner.
            return None;
        }
        let accounts = created
            .iter()
            .map(|a| self.account(a, &a.attributes, a.enabled.unwrap_or(true)))
            .collect();
        Some(Joiner {
            plan_id: plan_id.to_owned(),
            person: person_info(p),
            contract: self.contract_info(contract, which),
            manager: self.manager(p, contract, which),
            accounts,
            part,
        })
    }

    fn leaver(
        &mut self,
        p: &Person,
        which: Which,
        disabled: &[&Action],
        plan_id: &str,
        part: Part,
    ) -> Leaver {
        let reason = if disabled
            .iter()
            .any(|a| leave_reason(a) == Some(LeaveReason::PersonRemoved))
        {
            LeaveReason::PersonRemoved
        } else {
            LeaveReason::ContractEnded
        };
        let named: BTreeSet<&str> = disabled
            .iter()
            .flat_map(|a| a.reasons.iter())
            .flat_map(|r| r.contracts.iter().map(String::as_str))
            .collect();
        // The contract that ended last (an open end counts as the latest).
        let contract = p
            .contracts
            .iter()
            .filter(|c| named.is_empty() || named.contains(c.id.as_str()))
            .max_by(|a, b| {
                let end = |c: &Contract| c.end.unwrap_or(Date::MAX);
                end(a).cmp(&end(b)).then_with(|| b.id.cmp(&a.id))
            });
        let manager = contract.and_then(|c| self.manager(p, c, which));
        let contract = contract.map(|c| self.contract_info(c, which));
        let empty = BTreeMap::new();
        let accounts = disabled
            .iter()
            .map(|a| {
                let attributes = self
                    .sources
                    .known
                    .and_then(|k| k.account(&a.target, &a.person))
                    .map_or(&empty, |k| &k.attributes);
                self.account(a, attributes, false)
            })
            .collect();
        Leaver {
            plan_id: plan_id.to_owned(),
            person: person_info(p),
            reason,
            contract,
            manager,
            accounts,
            part,
        }
    }
}

fn chrono_days(n: u32) -> chrono::Days {
    chrono::Days::new(u64::from(n))
}

fn person_info(p: &Person) -> PersonInfo {
    PersonInfo {
        id: p.external_id.clone(),
        name: koppel_core::names::display_name(&p.name),
        given_name: if p.name.nickname.trim().is_empty() {
            p.name.given.clone()
        } else {
            p.name.nickname.clone()
        },
        family_name: koppel_core::names::family_name(&p.name),
        email: p.email.clone(),
    }
}

fn first_text(v: &AttrValue) -> Option<String> {
    match v {
        AttrValue::Text(s) => Some(s.clone()),
        AttrValue::List(l) => l.first().cloned(),
        _ => None,
    }
}

fn text(v: &AttrValue) -> Option<String> {
    match v {
        AttrValue::Null => None,
        AttrValue::Bool(b) => Some(b.to_string()),
        AttrValue::Int(i) => Some(i.to_string()),
        AttrValue::Text(s) => Some(s.clone()),
        AttrValue::List(l) => Some(l.join(", ")),
    }
}
