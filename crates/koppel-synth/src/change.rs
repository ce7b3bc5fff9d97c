//! "A month of change": movers, leavers and joiners applied to a snapshot, deterministically,
//! to exercise what a second run of koppel must do with the differences.

use std::collections::HashSet;

use koppel_core::{Contract, Date, Person, Snapshot};

use crate::people::{self, Ctx, Status, Windows, add_days, first_of_month};
use crate::rng::Rng;
use crate::{STREAM_CHANGES, STREAM_JOINER, STREAM_LEAVER, STREAM_MOVER};

/// How much changes, as fractions of the persons employed on the new run date
/// (not excluded, with a contract that runs past it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Changes {
    /// Persons who get a new department, title or location.
    pub movers: f64,
    /// Persons whose contracts end, on a date in the past month.
    pub leavers: f64,
    /// New persons, starting in the past month or the coming one.
    pub joiners: f64,
}

impl Default for Changes {
    fn default() -> Self {
        Self {
            movers: 0.05,
            leavers: 0.01,
            joiners: 0.01,
        }
    }
}

/// `snapshot` a month later, with `today` the new run date.
///
/// * Movers change department (with its cost centre and manager), title or location, or
///   several of these: 60% through a new contract from the first of this or next month
///   (the old one ends the day before), the rest by an edit of the running contract.
/// * Leavers' running contracts end 1–30 days before `today`; contracts that had not
///   started yet are withdrawn.
/// * Joiners are new persons with ids after the highest numeric id, starting up to 30 days
///   before or after `today`, with the same custom fields as generated persons.
///
/// Department managers neither move nor leave, so the tree stays consistent. Persons not
/// chosen are left exactly as they were: time passing (a future joiner starting) needs no
/// change in HR data. The result is normalized.
pub fn month_later(snapshot: &Snapshot, changes: &Changes, seed: u64, today: Date) -> Snapshot {
    let windows = Windows {
        joiner_days: 30,
        leaver_days: 30,
    };
    let ctx = Ctx::from_snapshot(snapshot, windows);
    let mut next = snapshot.clone();
    next.normalize();

    let managers: HashSet<&str> = snapshot
        .departments
        .values()
        .map(|d| d.manager.as_str())
        .filter(|m| !m.is_empty())
        .collect();
    let active: Vec<usize> = next
        .persons
        .iter()
        .enumerate()
        .filter(|(_, p)| !p.excluded && running(p, today).is_some())
        .map(|(i, _)| i)
        .collect();
    let base = active.len() as f64;
    let count = |fraction: f64| (fraction.max(0.0) * base).round() as usize;

    let mut eligible: Vec<usize> = active
        .into_iter()
        .filter(|&i| !managers.contains(next.persons[i].external_id.as_str()))
        .collect();
    Rng::stream(seed, STREAM_CHANGES, 0).shuffle(&mut eligible);
    let movers = count(changes.movers).min(eligible.len());
    let leavers = count(changes.leavers).min(eligible.len() - movers);
    for &i in &eligible[..movers] {
        let mut rng = Rng::stream(seed, STREAM_MOVER, i as u64);
        move_person(&ctx, &mut rng, &mut next.persons[i], today);
    }
    for &i in &eligible[movers..movers + leavers] {
        let mut rng = Rng::stream(seed, STREAM_LEAVER, i as u64);
        leave(&mut rng, &mut next.persons[i], today);
    }

    let joiners = count(changes.joiners);
    if joiners > 0 {
        let mut emails: HashSet<String> = next
            .persons
            .iter()
            .filter(|p| !p.email.is_empty())
            .map(|p| p.email.clone())
            .collect();
        let mut badges: HashSet<String> = next
            .persons
            .iter()
            .filter_map(|p| p.custom.get(people::CUSTOM_BADGE).cloned())
            .collect();
        let (first, width) = next
            .persons
            .iter()
            .filter(|p| {
                !p.external_id.is_empty() && p.external_id.bytes().all(|b| b.is_ascii_digit())
            })
            .filter_map(|p| Some((p.external_id.parse::<u64>().ok()?, p.external_id.len())))
            .max()
            .map_or((1_000_001, 7), |(n, w)| (n + 1, w));
        let mut badge_index = next.persons.len() as u64;
        let mut new = Vec::with_capacity(joiners);
        for j in 0..joiners {
            let mut rng = Rng::stream(seed, STREAM_JOINER, j as u64);
            let status = if rng.chance(0.6) {
                Status::FutureJoiner
            } else {
                Status::RecentJoiner
            };
            let id = format!("{:0width$}", first + j as u64);
            let mut p = people::person(&ctx, &mut rng, id, today, status, None, 0.0);
            p.excluded = false;
            if p.custom
                .get(people::CUSTOM_GROUP)
                .is_some_and(|g| g != "Inhuur")
            {
                let badge = loop {
                    let b = people::badge(badge_index);
                    badge_index += 1;
                    if badges.insert(b.clone()) {
                        break b;
                    }
                };
                p.custom.insert(people::CUSTOM_BADGE.to_owned(), badge);
            }
            new.push(p);
        }
        people::dedupe_emails(new.iter_mut(), &mut emails);
        next.persons.extend(new);
    }
    next.normalize();
    next
}

/// The person's main running contract on `today`: active, not ending today, most hours.
fn running(p: &Person, today: Date) -> Option<usize> {
    p.contracts
        .iter()
        .enumerate()
        .filter(|(_, c)| c.is_active_on(today) && c.end.is_none_or(|e| e > today))
        .max_by(|(ia, a), (ib, b)| {
            let ha = a.hours_per_week.unwrap_or(0.0);
            let hb = b.hours_per_week.unwrap_or(0.0);
            ha.total_cmp(&hb).then(ib.cmp(ia))
        })
        .map(|(i, _)| i)
}

fn move_person(ctx: &Ctx, rng: &mut Rng, p: &mut Person, today: Date) {
    let Some(ci) = running(p, today) else { return };
    let old = p.contracts[ci].clone();
    let mut new = old.clone();
    let what = rng.below(100);
    let change_dept = what < 60;
    let change_title = (60..80).contains(&what) || (change_dept && rng.chance(0.5));
    let change_location = what >= 80 || (change_dept && rng.chance(0.3));

    let mut dept = ctx.dept_index(&old.department);
    if change_dept {
        let d = ctx.sample_dept(rng, dept);
        dept = Some(d);
        new.department = ctx.depts[d].code.clone();
        new.cost_centre = ctx.depts[d].cost_centre.clone();
        if !old.manager.is_empty() {
            new.manager = ctx.manager_for(d, &p.external_id);
        }
    }
    let titles = dept.map_or(&[][..], |d| &ctx.depts[d].titles[..]);
    // A title that does not exist in the new department goes with the move.
    let title_fits = titles.iter().any(|t| t.code == old.title.code);
    if (change_title || !title_fits) && !titles.is_empty() {
        for _ in 0..16 {
            let t = rng.pick(titles);
            if t.code != old.title.code {
                new.title = t.clone();
                break;
            }
        }
    }
    if change_location {
        for _ in 0..16 {
            let l = ctx.sample_location(rng);
            if l != old.location {
                new.location = l.to_owned();
                break;
            }
        }
    }

    // Moves take effect on the first of a month: this one (already happened) or the next
    // (announced). Most HR systems close the old contract and open a new one; some edit.
    let effective = first_of_month(today, u32::from(rng.chance(0.3)));
    let day_before = add_days(effective, -1);
    let fits = day_before >= old.start && old.end.is_none_or(|e| e >= effective);
    if fits && rng.chance(0.6) {
        p.contracts[ci].end = Some(day_before);
        let sequence = p.contracts.iter().map(|c| c.sequence).max().unwrap_or(0) + 1;
        new.id = unique_contract_id(&p.contracts, &p.external_id, sequence);
        new.sequence = sequence;
        new.start = effective;
        p.contracts.push(new);
    } else {
        new.id = old.id;
        new.sequence = old.sequence;
        p.contracts[ci] = new;
    }
}

fn unique_contract_id(contracts: &[Contract], person: &str, sequence: i64) -> String {
    (sequence..)
        .map(|n| format!("{person}-{n}"))
        .find(|id| contracts.iter().all(|c| &c.id != id))
        .unwrap_or_default()
}

fn leave(rng: &mut Rng, p: &mut Person, today: Date) {
    let end = add_days(today, -rng.range(1, 30));
    p.contracts.retain(|c| c.start <= today);
    for c in &mut p.contracts {
        if c.end.is_none_or(|e| e > today) {
            c.end = Some(end.max(c.start));
        }
    }
}
