//! One synthetic person at a time: lifecycle status, contracts, contact data and custom
//! fields, drawn against an organisation context that a fresh tree or a snapshot provides.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{Datelike, TimeDelta};
use koppel_core::{Contract, Date, Person, Snapshot, Title};

use crate::names;
use crate::org::{self, Level, Unit};
use crate::rng::{Rng, Weighted};

/// Where a person stands on the run date, decided before their contracts are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Employed, no end date.
    CurrentOpen,
    /// Employed on a contract that ends more than a month from now.
    CurrentFixed,
    /// Starts within the joiner window (pre-boarding).
    FutureJoiner,
    /// Started within the last month.
    RecentJoiner,
    /// Ended within the leaver window.
    RecentLeaver,
    /// Ends within the next 30 days.
    FutureLeaver,
    /// Ended long ago; HR exports keep such people for years.
    OldLeaver,
}

impl Status {
    pub(crate) fn sample(rng: &mut Rng) -> Self {
        // Per mille, tuned to a stable employer: most people employed, a few percent in
        // each lifecycle edge so that every planner path has material.
        match rng.below(1000) {
            0..690 => Self::CurrentOpen,
            690..870 => Self::CurrentFixed,
            870..900 => Self::FutureJoiner,
            900..940 => Self::RecentLeaver,
            940..970 => Self::FutureLeaver,
            _ => Self::OldLeaver,
        }
    }
}

/// How far ahead future joiners start and how far back recent leavers ended, in days.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Windows {
    pub(crate) joiner_days: i64,
    pub(crate) leaver_days: i64,
}

/// A department as persons see it.
#[derive(Debug, Clone)]
pub(crate) struct Dept {
    pub(crate) code: String,
    pub(crate) parent: Option<usize>,
    pub(crate) manager: String,
    pub(crate) cost_centre: String,
    pub(crate) titles: Vec<Title>,
    /// The first titles of a department are its common ones.
    title_weights: Weighted,
    pub(crate) level: Level,
}

/// The organisation a person is drawn against.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub(crate) depts: Vec<Dept>,
    index: BTreeMap<String, usize>,
    /// How likely a contract lands in each department.
    dept_weights: Weighted,
    pub(crate) locations: Vec<String>,
    location_weights: Weighted,
    pub(crate) email_domain: String,
    pub(crate) windows: Windows,
}

pub(crate) const CUSTOM_BADGE: &str = "badge_number";
pub(crate) const CUSTOM_GROUP: &str = "employee_group";

/// Hours per week and their weight: full time and the four-day week dominate.
const HOURS: &[(u32, u64)] = &[
    (36, 30),
    (32, 22),
    (24, 12),
    (28, 8),
    (20, 8),
    (16, 5),
    (34, 3),
    (30, 3),
    (27, 3),
    (18, 3),
    (12, 2),
    (8, 1),
];

pub(crate) fn add_days(date: Date, days: i64) -> Date {
    date + TimeDelta::days(days)
}

/// Full time is 36 hours in Dutch collective agreements for the public sector; fte has four
/// decimals, as HR systems export it.
pub(crate) fn fte_of(hours: f64) -> f64 {
    (hours / 36.0 * 10_000.0).round() / 10_000.0
}

impl Ctx {
    pub(crate) fn from_units(
        units: &[Unit],
        locations: usize,
        email_domain: &str,
        windows: Windows,
    ) -> Self {
        let index: BTreeMap<&str, usize> = units
            .iter()
            .enumerate()
            .map(|(i, u)| (u.department.code.as_str(), i))
            .collect();
        let depts: Vec<Dept> = units
            .iter()
            .map(|u| Dept {
                code: u.department.code.clone(),
                parent: index.get(u.department.parent.as_str()).copied(),
                manager: u.department.manager.clone(),
                cost_centre: u.cost_centre.clone(),
                titles: u.titles.clone(),
                title_weights: Weighted::zipf(u.titles.len(), 1),
                level: u.level,
            })
            .collect();
        // Teams and departments carry the work; staff sit at division and root level. Sizes
        // vary per unit by a factor up to five, deterministically from the unit's position.
        let dept_weights = Weighted::new(depts.iter().enumerate().map(|(i, d)| {
            let base = match d.level {
                Level::Root => 1,
                Level::Division => 2,
                Level::Department => 8,
                Level::Team => 12,
            };
            base * (1 + (i as u64 * 7 + 3) % 5)
        }));
        let locations: Vec<String> = org::CITIES[..locations.clamp(1, org::CITIES.len())]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let location_weights = Weighted::zipf(locations.len(), 1);
        Self {
            index: depts
                .iter()
                .enumerate()
                .map(|(i, d)| (d.code.clone(), i))
                .collect(),
            depts,
            dept_weights,
            locations,
            location_weights,
            email_domain: email_domain.to_owned(),
            windows,
        }
    }

    /// The organisation as a snapshot shows it: its tree, and the titles, cost centres and
    /// locations its contracts use, so new contracts look like the existing ones.
    pub(crate) fn from_snapshot(snapshot: &Snapshot, windows: Windows) -> Self {
        // Hash maps for the per-contract work; everything that reaches the output is sorted
        // first, so hash order never does.
        let index: HashMap<&str, usize> = snapshot
            .departments
            .keys()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i))
            .collect();
        let mut cost_centres: Vec<Option<&str>> = vec![None; index.len()];
        let mut titles: Vec<HashSet<(&str, &str)>> = vec![HashSet::new(); index.len()];
        let mut sizes = vec![0u64; index.len()];
        let mut location_counts: HashMap<&str, u64> = HashMap::new();
        let mut domains: HashMap<&str, u64> = HashMap::new();
        for p in &snapshot.persons {
            if let Some((_, domain)) = p.email.rsplit_once('@') {
                *domains.entry(domain).or_default() += 1;
            }
            for c in &p.contracts {
                if !c.location.is_empty() {
                    *location_counts.entry(&c.location).or_default() += 1;
                }
                let Some(&i) = index.get(c.department.as_str()) else {
                    continue;
                };
                sizes[i] += 1;
                if cost_centres[i].is_none() && !c.cost_centre.is_empty() {
                    cost_centres[i] = Some(&c.cost_centre);
                }
                // Managers' and interns' titles come with the role, not with the department.
                if !org::is_manager_title(&c.title.code)
                    && c.title.code != org::INTERN_TITLE.0
                    && !c.title.code.is_empty()
                {
                    titles[i].insert((&c.title.code, &c.title.name));
                }
            }
        }
        let depts: Vec<Dept> = snapshot
            .departments
            .values()
            .enumerate()
            .map(|(i, d)| {
                let mut seen: Vec<(&str, &str)> = titles[i].iter().copied().collect();
                seen.sort_unstable();
                let titles: Vec<Title> = if seen.is_empty() {
                    org::GENERIC_TITLES
                        .iter()
                        .map(|(c, n)| org::title(c, n))
                        .collect()
                } else {
                    seen.iter().map(|(c, n)| org::title(c, n)).collect()
                };
                Dept {
                    code: d.code.clone(),
                    parent: index.get(d.parent.as_str()).copied().filter(|&p| p != i),
                    manager: d.manager.clone(),
                    cost_centre: cost_centres[i].unwrap_or_default().to_owned(),
                    // A snapshot does not say which titles are common; all weigh the same.
                    title_weights: Weighted::new(titles.iter().map(|_| 1)),
                    titles,
                    level: Level::Team,
                }
            })
            .collect();
        let dept_weights = Weighted::new(sizes.iter().map(|s| s + 1));
        let mut by_count: Vec<(&str, u64)> = location_counts.into_iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let mut locations: Vec<String> = by_count.iter().map(|(l, _)| (*l).to_owned()).collect();
        let mut location_weights: Vec<u64> = by_count.iter().map(|(_, n)| *n).collect();
        if locations.is_empty() {
            locations.push(org::CITIES[0].to_owned());
            location_weights.push(1);
        }
        let email_domain = domains
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
            .map(|(d, _)| d.to_owned())
            .unwrap_or_else(|| "example.org".to_owned());
        Self {
            index: depts
                .iter()
                .enumerate()
                .map(|(i, d)| (d.code.clone(), i))
                .collect(),
            depts,
            dept_weights,
            locations,
            location_weights: Weighted::new(location_weights),
            email_domain,
            windows,
        }
    }

    pub(crate) fn dept_index(&self, code: &str) -> Option<usize> {
        self.index.get(code).copied()
    }

    /// A department drawn by size; with `not`, a different one where the tree allows.
    pub(crate) fn sample_dept(&self, rng: &mut Rng, not: Option<usize>) -> usize {
        for _ in 0..32 {
            let i = self.dept_weights.sample(rng);
            if Some(i) != not || self.depts.len() < 2 {
                return i;
            }
        }
        not.map_or(0, |n| (n + 1) % self.depts.len())
    }

    pub(crate) fn sample_location(&self, rng: &mut Rng) -> &str {
        &self.locations[self
            .location_weights
            .sample(rng)
            .min(self.locations.len() - 1)]
    }

    /// The nearest manager up the tree from `dept` who is not `person`.
    pub(crate) fn manager_for(&self, dept: usize, person: &str) -> String {
        let mut at = Some(dept);
        let mut steps = 0;
        while let Some(i) = at {
            let d = &self.depts[i];
            if !d.manager.is_empty() && d.manager != person {
                return d.manager.clone();
            }
            steps += 1;
            if steps > 64 {
                break;
            }
            at = d.parent;
        }
        String::new()
    }

    /// A contract in `dept` for `person`, with a title typical for the department.
    pub(crate) fn contract(
        &self,
        rng: &mut Rng,
        dept: usize,
        person: &str,
        terms: Terms,
    ) -> Contract {
        let d = &self.depts[dept];
        let mut c = Contract::new(String::new(), terms.start, terms.end);
        c.department = d.code.clone();
        c.title = match terms.kind {
            Kind::Intern => org::title(org::INTERN_TITLE.0, org::INTERN_TITLE.1),
            _ => d.titles[d.title_weights.sample(rng)].clone(),
        };
        c.location = self.sample_location(rng).to_owned();
        c.cost_centre = d.cost_centre.clone();
        // Many HR systems name the manager on the contract; others leave it to the tree.
        if rng.chance(0.8) {
            c.manager = self.manager_for(dept, person);
        }
        c.employment_type = terms.kind.as_str().to_owned();
        c.hours_per_week = Some(f64::from(terms.hours));
        c.fte = Some(fte_of(f64::from(terms.hours)));
        c
    }
}

/// Employment type, as Dutch HR systems label it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Vast,
    Tijdelijk,
    Extern,
    Intern,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Vast => "Vast",
            Self::Tijdelijk => "Tijdelijk",
            Self::Extern => "Extern",
            Self::Intern => "Intern",
        }
    }

    fn group(self) -> &'static str {
        match self {
            Self::Vast | Self::Tijdelijk => "Medewerker",
            Self::Extern => "Inhuur",
            Self::Intern => "Stagiair",
        }
    }
}

/// The terms of one contract before it is placed in a department.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Terms {
    pub(crate) start: Date,
    pub(crate) end: Option<Date>,
    pub(crate) kind: Kind,
    pub(crate) hours: u32,
}

fn sample_hours(rng: &mut Rng) -> u32 {
    use std::sync::OnceLock;
    static WEIGHTS: OnceLock<Weighted> = OnceLock::new();
    let w = WEIGHTS.get_or_init(|| Weighted::new(HOURS.iter().map(|h| h.1)));
    HOURS[w.sample(rng)].0
}

const YEAR: i64 = 365;

/// The terms of a person's main contract for their status on `today`.
pub(crate) fn primary_terms(rng: &mut Rng, status: Status, today: Date, windows: Windows) -> Terms {
    let hours = sample_hours(rng);
    let (start, end, kind) = match status {
        Status::CurrentOpen => {
            let kind = if rng.chance(0.88) {
                Kind::Vast
            } else {
                Kind::Extern
            };
            (add_days(today, -rng.range_low(1, 30 * YEAR)), None, kind)
        }
        Status::CurrentFixed => match rng.below(100) {
            0..70 => {
                let start = add_days(today, -rng.range_low(1, 2 * YEAR));
                (
                    start,
                    Some(add_days(today, rng.range(31, 540))),
                    Kind::Tijdelijk,
                )
            }
            70..85 => {
                let start = add_days(today, -rng.range(1, 150));
                (
                    start,
                    Some(add_days(today, rng.range(31, 150))),
                    Kind::Intern,
                )
            }
            _ => {
                let start = add_days(today, -rng.range_low(1, 3 * YEAR));
                (
                    start,
                    Some(add_days(today, rng.range(31, 365))),
                    Kind::Extern,
                )
            }
        },
        Status::FutureJoiner | Status::RecentJoiner => {
            let start = if status == Status::FutureJoiner {
                add_days(today, rng.range(1, windows.joiner_days.max(1)))
            } else {
                add_days(today, -rng.range(0, 30))
            };
            match rng.below(10) {
                0..5 => (start, None, Kind::Vast),
                5..9 => (
                    start,
                    Some(add_days(start, rng.range(180, 2 * YEAR))),
                    Kind::Tijdelijk,
                ),
                _ => (
                    start,
                    Some(add_days(start, rng.range(90, 180))),
                    Kind::Intern,
                ),
            }
        }
        Status::RecentLeaver | Status::FutureLeaver | Status::OldLeaver => {
            let end = match status {
                Status::RecentLeaver => add_days(today, -rng.range(1, windows.leaver_days.max(1))),
                Status::FutureLeaver => add_days(today, rng.range(1, 30)),
                _ => add_days(today, -rng.range(windows.leaver_days.max(1) + 1, 3 * YEAR)),
            };
            let (kind, length) = match rng.below(10) {
                0..5 => (Kind::Vast, rng.range_low(YEAR, 25 * YEAR)),
                5..8 => (Kind::Tijdelijk, rng.range(180, 2 * YEAR)),
                8 => (Kind::Extern, rng.range(90, 3 * YEAR)),
                _ => (Kind::Intern, rng.range(90, 180)),
            };
            (add_days(end, -length), Some(end), kind)
        }
    };
    let hours = if kind == Kind::Intern {
        hours.max(32)
    } else {
        hours
    };
    Terms {
        start,
        end,
        kind,
        hours,
    }
}

/// One synthetic person. `manages` makes them the manager of that department: employed,
/// permanent, at least 32 hours, never excluded. `extra` is the mean number of contracts
/// beyond the first.
pub(crate) fn person(
    ctx: &Ctx,
    rng: &mut Rng,
    id: String,
    today: Date,
    status: Status,
    manages: Option<usize>,
    extra: f64,
) -> Person {
    let name = names::person_name(rng);
    let mut terms = primary_terms(rng, status, today, ctx.windows);
    if manages.is_some() {
        terms.kind = Kind::Vast;
        terms.end = None;
        terms.hours = terms.hours.max(32);
        // A manager has been around a while.
        terms.start = add_days(today, -rng.range(YEAR / 2, 20 * YEAR));
    }
    let dept = manages.unwrap_or_else(|| ctx.sample_dept(rng, None));
    let mut primary = ctx.contract(rng, dept, &id, terms);
    if let Some(m) = manages {
        primary.title = org::manager_title(ctx.depts[m].level);
        primary.manager = ctx.manager_for(m, &id);
    }
    let mut contracts = vec![primary];

    let extra = extra.max(0.0);
    let mut n_extra = extra.floor() as usize;
    if rng.chance(extra - extra.floor()) {
        n_extra += 1;
    }
    for _ in 0..n_extra {
        let concurrent = manages.is_none() && rng.chance(0.5);
        let main = &contracts[0];
        if concurrent {
            // A second job next to the first: a few hours elsewhere, same kind of contract.
            let second_hours = *rng.pick(&[4u32, 8, 8, 12, 12, 16]);
            let main_hours = main.hours_per_week.unwrap_or(36.0) as u32;
            if main_hours + second_hours > 36 {
                let reduced = main_hours.saturating_sub(second_hours).max(8);
                contracts[0].hours_per_week = Some(f64::from(reduced));
                contracts[0].fte = Some(fte_of(f64::from(reduced)));
            }
            let main = &contracts[0];
            let other = ctx.sample_dept(rng, ctx.dept_index(&main.department));
            // Second jobs are mostly recent additions, never older than the first job and,
            // for someone who has not started yet, starting with it.
            let latest = main.end.unwrap_or(today).min(today).max(main.start);
            let start = add_days(latest, -rng.range_low(0, 3 * YEAR)).max(main.start);
            let end = main
                .end
                .or_else(|| rng.chance(0.5).then(|| add_days(today, rng.range(31, 400))));
            let kind = match main.employment_type.as_str() {
                "Extern" => Kind::Extern,
                "Intern" => Kind::Intern,
                _ if end.is_some() => Kind::Tijdelijk,
                _ => Kind::Vast,
            };
            contracts.push(ctx.contract(
                rng,
                other,
                &id,
                Terms {
                    start,
                    end,
                    kind,
                    hours: second_hours,
                },
            ));
        } else {
            // An earlier contract: a temporary one that turned permanent, an internship, or
            // an earlier employment before a gap (a rehire).
            let first_start = contracts.iter().map(|c| c.start).min().unwrap_or(today);
            let gap = if rng.chance(0.6) {
                1
            } else {
                rng.range(30, 3 * YEAR)
            };
            let end = add_days(first_start, -gap);
            let (kind, length) = match rng.below(10) {
                0..5 => (Kind::Tijdelijk, rng.range(180, 2 * YEAR)),
                5..7 => (Kind::Intern, rng.range(90, 180)),
                _ => (Kind::Vast, rng.range_low(YEAR, 10 * YEAR)),
            };
            let same = rng.chance(0.4);
            let dept = if same {
                ctx.dept_index(&contracts[0].department).unwrap_or(0)
            } else {
                ctx.sample_dept(rng, None)
            };
            let hours = if kind == Kind::Intern {
                36
            } else {
                sample_hours(rng)
            };
            contracts.push(ctx.contract(
                rng,
                dept,
                &id,
                Terms {
                    start: add_days(end, -length),
                    end: Some(end),
                    kind,
                    hours,
                },
            ));
        }
    }
    // People mostly work from one office, whatever the contract.
    let home = contracts[0].location.clone();
    for c in &mut contracts[1..] {
        if rng.chance(0.8) {
            c.location.clone_from(&home);
        }
    }
    number_contracts(&id, &mut contracts);

    let kind = contracts
        .iter()
        .max_by_key(|c| c.start)
        .map(|c| c.employment_type.as_str())
        .unwrap_or_default();
    let group = if manages.is_some() {
        "Leidinggevende"
    } else {
        match kind {
            "Extern" => Kind::Extern.group(),
            "Intern" => Kind::Intern.group(),
            _ => Kind::Vast.group(),
        }
    };
    let mut custom = BTreeMap::new();
    custom.insert(CUSTOM_GROUP.to_owned(), group.to_owned());

    let phone = match rng.below(100) {
        0..75 => format!("+316{:08}", rng.below(100_000_000)),
        75..85 => format!("06-{:08}", rng.below(100_000_000)),
        85..90 => format!("+3130{:07}", rng.below(10_000_000)),
        _ => String::new(),
    };
    let email = if rng.chance(0.4) {
        format!("{}@{}", names::email_local(&name), ctx.email_domain)
    } else {
        String::new()
    };
    Person {
        external_id: id,
        name,
        email,
        phone,
        custom,
        excluded: manages.is_none() && rng.chance(0.004),
        contracts,
    }
}

/// Contract ids and sequence numbers in order of start: HR systems number a person's
/// contracts as they come.
fn number_contracts(id: &str, contracts: &mut [Contract]) {
    contracts.sort_by(|a, b| a.start.cmp(&b.start).then(a.department.cmp(&b.department)));
    for (i, c) in contracts.iter_mut().enumerate() {
        c.sequence = i as i64 + 1;
        c.id = format!("{id}-{}", i + 1);
    }
}

/// Makes e-mail addresses unique the way HR does it, by a number after the name. The set
/// is only ever asked about membership, so its hash order cannot leak into the output.
pub(crate) fn dedupe_emails<'a>(
    persons: impl Iterator<Item = &'a mut Person>,
    taken: &mut HashSet<String>,
) {
    for p in persons {
        if p.email.is_empty() {
            continue;
        }
        if !taken.contains(&p.email) {
            taken.insert(p.email.clone());
            continue;
        }
        let Some((local, domain)) = p.email.split_once('@') else {
            continue;
        };
        let (local, domain) = (local.to_owned(), domain.to_owned());
        for n in 2.. {
            let candidate = format!("{local}{n}@{domain}");
            if !taken.contains(&candidate) {
                taken.insert(candidate.clone());
                p.email = candidate;
                break;
            }
        }
    }
}

/// A badge number for the person at `index`: six digits, unique, not sequential (badges are
/// handed out from stock).
pub(crate) fn badge(index: u64) -> String {
    // 7919 is prime and coprime to 900,000, so the map is a permutation of 0..900,000.
    format!(
        "{}",
        100_000 + (index.wrapping_mul(7919) + 104_729) % 900_000
    )
}

/// Whole-month steps: movers change on the first of a month.
pub(crate) fn first_of_month(date: Date, months_ahead: u32) -> Date {
    let mut y = date.year();
    let mut m = date.month() + months_ahead;
    while m > 12 {
        m -= 12;
        y += 1;
    }
    Date::from_ymd_opt(y, m, 1).unwrap_or(date)
}
