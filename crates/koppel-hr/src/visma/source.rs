//! The `visma` source: persons, employments (or assignments), organization units and job
//! profiles from the Youforce IAM API, mapped onto koppel's model by configurable field names.
//!
//! Records come in versions (`validFrom`/`validUntil`): the version valid on the run date
//! counts, else the latest that started, else the earliest to come. A record flagged
//! `isDeleted` is gone with all its versions. Empty properties are left out by the API, so
//! an absent optional field is empty; a required one absent from every record is an error.

use std::collections::{BTreeMap, HashMap};

use koppel_connectors::source::{Fetched, Source, SourceError};
use koppel_core::{Contract, Date, Department, Diagnostic, NamingConvention, Person, Title};
use serde_json::Value;

use super::client::{GET_BASIC, SERVICE, VismaClient};
use super::config::{ContractsFrom, DepartmentCode, VismaApi, VismaSourceConfig};
use crate::error::HrError;
use crate::map::{Problems, Record, date, number, text};

/// A date at or past this means "no end" (the API writes 9999-12-31).
fn open_end(d: Date) -> bool {
    d >= Date::from_ymd_opt(9999, 1, 1).unwrap_or(Date::MAX)
}

/// What one read of the tenant delivered, before mapping.
#[derive(Debug, Clone, Default)]
pub struct Raw {
    pub persons: Vec<Record>,
    pub contracts: Vec<Record>,
    pub units: Vec<Record>,
    pub profiles: Vec<Record>,
}

/// The Youforce tenant as a koppel source.
pub struct VismaSource {
    name: String,
    config: VismaSourceConfig,
    client: VismaClient,
    now: Date,
}

impl VismaSource {
    /// `now` picks the record versions that count.
    pub fn new(
        config: VismaSourceConfig,
        api: VismaApi,
        now: Date,
    ) -> Result<VismaSource, HrError> {
        Ok(VismaSource {
            name: format!("visma:{}", api.tenant_id),
            client: VismaClient::new(api)?,
            config,
            now,
        })
    }

    pub fn client(&self) -> &VismaClient {
        &self.client
    }

    /// Reads the four endpoints.
    pub async fn read(&self) -> Result<Raw, HrError> {
        self.client
            .require_scope(
                GET_BASIC,
                "read persons, employments, organization units and job profiles",
            )
            .await?;
        let take = self.config.take;
        let contracts = match self.config.contracts {
            ContractsFrom::Employments => "employments",
            ContractsFrom::Assignments => "assignments",
        };
        Ok(Raw {
            persons: self.client.list("persons", take).await?,
            contracts: self.client.list(contracts, take).await?,
            units: self.client.list("organizationUnits", take).await?,
            profiles: self.client.list("jobProfiles", take).await?,
        })
    }

    pub async fn fetch_raw(&self) -> Result<Fetched, HrError> {
        let raw = self.read().await?;
        map(&self.config, self.now, &raw)
    }
}

#[async_trait::async_trait]
impl Source for VismaSource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn fetch(&self) -> Result<Fetched, SourceError> {
        self.fetch_raw()
            .await
            .map_err(|e| e.into_source_error(&self.name))
    }
}

/// Validity fields of an endpoint, and how its records are named in messages.
struct Versioning<'a> {
    from: &'a str,
    until: &'a str,
    deleted: &'a str,
    file: &'a str,
    what: &'a str,
}

/// The problems and diagnostics one mapping collects.
#[derive(Default)]
struct Found {
    problems: Problems,
    diagnostics: Vec<Diagnostic>,
}

type Versions<'r> = Vec<(Option<Date>, Option<Date>, &'r Record)>;

fn is_deleted(rec: &Record, field: &str) -> bool {
    !field.is_empty() && text(rec, field).is_some_and(|t| t.eq_ignore_ascii_case("true"))
}

/// The version of each record that counts on `now`, by key, in key order. Records without
/// a key are reported and left out.
fn current<'r>(
    records: &'r [Record],
    key: impl Fn(&Record) -> Option<String>,
    v: &Versioning<'_>,
    now: Date,
    found: &mut Found,
) -> BTreeMap<String, &'r Record> {
    let (file, what) = (v.file, v.what);
    let problems = &mut found.problems;
    let mut groups: BTreeMap<String, Versions<'r>> = BTreeMap::new();
    let mut deleted = std::collections::BTreeSet::new();
    let mut unkeyed = 0usize;
    for rec in records {
        let Some(k) = key(rec) else {
            unkeyed += 1;
            continue;
        };
        if is_deleted(rec, v.deleted) {
            deleted.insert(k);
            continue;
        }
        let mut bound = |field: &str| -> Option<Date> {
            let t = (!field.is_empty()).then(|| text(rec, field)).flatten()?;
            match date(&t) {
                Ok(d) => Some(d),
                Err(m) => {
                    problems.push(file, format!("{what} {k}"), Some(field), m);
                    None
                }
            }
        };
        let from = bound(v.from);
        let until = bound(v.until);
        groups.entry(k).or_default().push((from, until, rec));
    }
    if unkeyed > 0 {
        found.diagnostics.push(Diagnostic::warning(
            "visma_record_without_key",
            format!("{unkeyed} {what} record(s) from {file} have no key and were left out"),
        ));
    }
    let mut out = BTreeMap::new();
    for (k, versions) in groups {
        if deleted.contains(&k) {
            continue;
        }
        let valid = |from: Option<Date>, until: Option<Date>| {
            from.is_none_or(|f| f <= now) && until.is_none_or(|u| now <= u)
        };
        let chosen = versions
            .iter()
            .filter(|(f, u, _)| valid(*f, *u))
            .max_by_key(|(f, _, _)| *f)
            .or_else(|| {
                versions
                    .iter()
                    .filter(|(f, _, _)| f.is_none_or(|f| f <= now))
                    .max_by_key(|(f, _, _)| *f)
            })
            .or_else(|| versions.iter().min_by_key(|(f, _, _)| *f));
        if let Some((_, _, rec)) = chosen {
            out.insert(k, *rec);
        }
    }
    out
}

/// Reports a required field that no record of a non-empty endpoint has: the mapping names a
/// field the tenant does not deliver (a typo, or a field the client is not allowed to see).
fn require_field(
    records: &[Record],
    endpoint: &str,
    field: &str,
    setting: &str,
) -> Result<(), HrError> {
    if records.is_empty()
        || records
            .iter()
            .any(|r| crate::map::value(r, field).is_some())
    {
        return Ok(());
    }
    let mut known: Vec<&str> = records
        .iter()
        .take(50)
        .flat_map(|r| r.keys().map(String::as_str))
        .collect();
    known.sort_unstable();
    known.dedup();
    Err(HrError::MissingField {
        service: SERVICE.into(),
        endpoint: endpoint.into(),
        field: field.into(),
        setting: setting.into(),
        known: format!(" (fields: {})", known.join(", ")),
    })
}

/// Warns about an optional field that no record has.
fn expect_field(
    records: &[Record],
    endpoint: &str,
    field: &str,
    setting: &str,
    diagnostics: &mut Vec<Diagnostic>,
) {
    if field.is_empty()
        || records.len() < 20
        || records
            .iter()
            .any(|r| crate::map::value(r, field).is_some())
    {
        return;
    }
    diagnostics.push(Diagnostic::warning(
        "visma_field_never_seen",
        format!(
            "no record of {endpoint} has the field {field:?} ({setting}); the API leaves out \
             empty fields, so check the name if that field should have values"
        ),
    ));
}

/// The entry of `items` (an array of `{type, …}` objects) whose type is the first of
/// `types` that occurs, as `value_field`.
fn by_type(rec: &Record, list: &str, types: &[String], value_field: &str) -> String {
    let Some(Value::Array(items)) = crate::map::value(rec, list) else {
        return String::new();
    };
    for wanted in types {
        for item in items {
            if let Value::Object(o) = item
                && text(o, "type").is_some_and(|t| t.eq_ignore_ascii_case(wanted))
                && let Some(v) = text(o, value_field)
            {
                return v;
            }
        }
    }
    String::new()
}

fn opt(rec: &Record, field: &str) -> String {
    if field.is_empty() {
        return String::new();
    }
    text(rec, field).unwrap_or_default()
}

/// Maps one read onto koppel's model. Pure: `now` picks the record versions.
pub fn map(config: &VismaSourceConfig, now: Date, raw: &Raw) -> Result<Fetched, HrError> {
    let f = &config.fields;
    let mut found = Found::default();
    let conventions = config.conventions();

    let persons_file = "visma:/iam/v1.0/persons";
    require_field(
        &raw.persons,
        "/iam/v1.0/persons",
        &f.person.external_id,
        "fields.person.external_id",
    )?;
    for (setting, field) in f.person.pairs() {
        if !matches!(setting, "valid_from" | "valid_until" | "deleted" | "id") {
            expect_field(
                &raw.persons,
                "/iam/v1.0/persons",
                field,
                &format!("fields.person.{setting}"),
                &mut found.diagnostics,
            );
        }
    }

    // Organization units → departments.
    let units_file = "visma:/iam/v1.0/organizationUnits";
    let uf = &f.organization_unit;
    require_field(
        &raw.units,
        "/iam/v1.0/organizationUnits",
        &uf.id,
        "fields.organization_unit.id",
    )?;
    let units = current(
        &raw.units,
        |r| text(r, &uf.id),
        &Versioning {
            from: &uf.valid_from,
            until: &uf.valid_until,
            deleted: &uf.deleted,
            file: units_file,
            what: "organization unit",
        },
        now,
        &mut found,
    );
    let code_of = |id: &str| -> Option<String> {
        let rec = units.get(id)?;
        Some(match config.department_code {
            DepartmentCode::Id => id.to_owned(),
            DepartmentCode::ShortName => text(rec, &uf.short_name).unwrap_or_else(|| id.to_owned()),
        })
    };

    // Persons: the version that counts, and a lookup of the `id` managers are given by.
    let pf = &f.person;
    let persons = current(
        &raw.persons,
        |r| text(r, &pf.external_id),
        &Versioning {
            from: &pf.valid_from,
            until: &pf.valid_until,
            deleted: &pf.deleted,
            file: persons_file,
            what: "person",
        },
        now,
        &mut found,
    );
    let mut by_row_id: HashMap<String, String> = HashMap::new();
    if !pf.id.is_empty() {
        for rec in &raw.persons {
            if let (Some(id), Some(code)) = (text(rec, &pf.id), text(rec, &pf.external_id)) {
                by_row_id.entry(id).or_insert(code);
            }
        }
    }

    let mut departments = BTreeMap::new();
    for (id, rec) in &units {
        let Some(code) = code_of(id) else { continue };
        let parent = match text(rec, &uf.parent) {
            None => String::new(),
            Some(p) => code_of(&p).unwrap_or_else(|| {
                found.diagnostics.push(Diagnostic::warning(
                    "visma_unknown_parent_unit",
                    format!(
                        "organization unit {id} names parent {p:?}, which the tenant does not have"
                    ),
                ));
                String::new()
            }),
        };
        let manager = match text(rec, &uf.manager) {
            None => String::new(),
            Some(m) => by_row_id
                .get(&m)
                .cloned()
                .or_else(|| persons.contains_key(&m).then(|| m.clone()))
                .unwrap_or_else(|| {
                    found.diagnostics.push(Diagnostic::warning(
                        "visma_unknown_manager",
                        format!("organization unit {id} names manager {m:?}, who is not among the persons"),
                    ));
                    String::new()
                }),
        };
        let name = text(rec, &uf.full_name)
            .or_else(|| text(rec, &uf.short_name))
            .unwrap_or_default();
        if departments.contains_key(&code) {
            found.diagnostics.push(Diagnostic::error(
                "visma_duplicate_department_code",
                format!("two organization units have the department code {code:?}; set department_code = \"id\""),
            ));
            continue;
        }
        departments.insert(
            code.clone(),
            Department {
                code,
                name,
                parent,
                manager,
            },
        );
    }

    // Job profiles → titles.
    let jf = &f.job_profile;
    let profiles = current(
        &raw.profiles,
        |r| text(r, &jf.id),
        &Versioning {
            from: &jf.valid_from,
            until: &jf.valid_until,
            deleted: &jf.deleted,
            file: "visma:/iam/v1.0/jobProfiles",
            what: "job profile",
        },
        now,
        &mut found,
    );
    let title_of = |id: &str, diagnostics: &mut Vec<Diagnostic>| -> Title {
        match profiles.get(id) {
            Some(rec) => Title {
                code: text(rec, &jf.short_name).unwrap_or_else(|| id.to_owned()),
                name: text(rec, &jf.full_name).unwrap_or_default(),
            },
            None => {
                diagnostics.push(Diagnostic::warning(
                    "visma_unknown_job_profile",
                    format!("job profile {id:?} is not among the job profiles"),
                ));
                Title {
                    code: id.to_owned(),
                    name: String::new(),
                }
            }
        }
    };

    let mut out_persons: BTreeMap<String, Person> = BTreeMap::new();
    for (code, rec) in &persons {
        let record = format!("person {code}");
        let convention = match text(rec, &pf.convention) {
            None => NamingConvention::B,
            Some(c) => match conventions.get(&c) {
                Some(n) => *n,
                None => {
                    found.problems.push(
                        persons_file,
                        record.clone(),
                        Some(&pf.convention),
                        format!(
                            "unknown naming convention code {c:?}: add it to naming_conventions \
                             (e.g. {c} = \"B\")"
                        ),
                    );
                    NamingConvention::B
                }
            },
        };
        let mut custom = BTreeMap::new();
        for (key, field) in &config.custom {
            if let Some(v) = text(rec, field) {
                custom.insert(key.clone(), v);
            }
        }
        out_persons.insert(
            code.clone(),
            Person {
                external_id: code.clone(),
                name: koppel_core::PersonName {
                    given: opt(rec, &pf.given),
                    nickname: opt(rec, &pf.nickname),
                    initials: opt(rec, &pf.initials),
                    family_prefix: opt(rec, &pf.family_prefix),
                    family: opt(rec, &pf.family),
                    partner_prefix: opt(rec, &pf.partner_prefix),
                    partner: opt(rec, &pf.partner),
                    convention,
                },
                email: by_type(
                    rec,
                    &pf.emails,
                    std::slice::from_ref(&config.email_type),
                    "address",
                ),
                phone: by_type(rec, &pf.phones, &config.phone_types, "number"),
                custom,
                excluded: false,
                contracts: Vec::new(),
            },
        );
    }

    // Contracts.
    let contracts = match config.contracts {
        ContractsFrom::Employments => employments(config, now, raw, &mut found)?,
        ContractsFrom::Assignments => assignments(config, now, raw, &mut found)?,
    };
    for (person, c) in contracts {
        let mut contract = Contract::new(c.id, c.start, c.end);
        contract.department = match code_of(&c.unit) {
            Some(code) => code,
            None if c.unit.is_empty() => String::new(),
            None => {
                found.diagnostics.push(
                    Diagnostic::warning(
                        "visma_unknown_organization_unit",
                        format!(
                            "contract {} names organization unit {:?}, which the tenant does not have",
                            contract.id, c.unit
                        ),
                    )
                    .for_person(person.clone()),
                );
                c.unit.clone()
            }
        };
        if !c.profile.is_empty() {
            contract.title = title_of(&c.profile, &mut found.diagnostics);
        }
        contract.employment_type = c.employment_type;
        contract.cost_centre = c.cost_centre;
        contract.location = c.location;
        contract.hours_per_week = c.hours;
        contract.fte = c
            .hours
            .map(|h| (h / config.full_time_hours * 10_000.0).round() / 10_000.0);
        contract.sequence = c.sequence;
        match out_persons.get_mut(&person) {
            Some(p) => p.contracts.push(contract),
            None => found.diagnostics.push(
                Diagnostic::error(
                    "contract_unknown_person",
                    format!(
                        "contract {} belongs to person {person:?}, who is not among the persons",
                        contract.id
                    ),
                )
                .for_person(person.clone()),
            ),
        }
    }

    if !found.problems.is_empty() {
        return Err(HrError::Rows(found.problems.errors));
    }
    let mut fetched = Fetched {
        snapshot: koppel_core::Snapshot {
            persons: out_persons.into_values().collect(),
            departments,
        },
        diagnostics: found.diagnostics,
    };
    fetched.snapshot.normalize();
    Ok(fetched)
}

/// One contract before linking: its person, id, dates, unit and profile ids.
struct RawContract {
    id: String,
    start: Date,
    end: Option<Date>,
    unit: String,
    profile: String,
    employment_type: String,
    cost_centre: String,
    location: String,
    hours: Option<f64>,
    sequence: i64,
}

fn dates(
    rec: &Record,
    file: &str,
    record: &str,
    start_field: &str,
    end_field: &str,
    problems: &mut Problems,
) -> Option<(Date, Option<Date>)> {
    let start = match text(rec, start_field) {
        None => {
            problems.push(
                file,
                record.to_owned(),
                Some(start_field),
                "no start date".into(),
            );
            return None;
        }
        Some(s) => match date(&s) {
            Ok(d) => d,
            Err(m) => {
                problems.push(file, record.to_owned(), Some(start_field), m);
                return None;
            }
        },
    };
    let end = match text(rec, end_field) {
        None => None,
        Some(s) => match date(&s) {
            Ok(d) if open_end(d) => None,
            Ok(d) => Some(d),
            Err(m) => {
                problems.push(file, record.to_owned(), Some(end_field), m);
                return None;
            }
        },
    };
    Some((start, end))
}

fn employments(
    config: &VismaSourceConfig,
    now: Date,
    raw: &Raw,
    found: &mut Found,
) -> Result<Vec<(String, RawContract)>, HrError> {
    let ef = &config.fields.employment;
    let file = "visma:/iam/v1.0/employments";
    for (field, setting) in [
        (&ef.person, "fields.employment.person"),
        (&ef.code, "fields.employment.code"),
        (&ef.start, "fields.employment.start"),
    ] {
        require_field(&raw.contracts, "/iam/v1.0/employments", field, setting)?;
    }
    let current = current(
        &raw.contracts,
        |r| Some(format!("{}_{}", text(r, &ef.person)?, text(r, &ef.code)?)),
        &Versioning {
            from: &ef.valid_from,
            until: &ef.valid_until,
            deleted: &ef.deleted,
            file,
            what: "employment",
        },
        now,
        found,
    );
    let mut out = Vec::with_capacity(current.len());
    for (id, rec) in current {
        let record = format!("employment {id}");
        let Some((start, end)) = dates(rec, file, &record, &ef.start, &ef.end, &mut found.problems)
        else {
            continue;
        };
        let mut hours = None;
        if !ef.hours.is_empty() {
            match number(rec, &ef.hours) {
                Ok(h) => {
                    let unit = opt(rec, &ef.hours_unit);
                    let period = opt(rec, &ef.hours_period);
                    let weekly_hours = (unit.is_empty() || unit.eq_ignore_ascii_case("hours"))
                        && (period.is_empty() || period.eq_ignore_ascii_case("week"));
                    hours = h.filter(|_| weekly_hours);
                }
                Err(m) => found
                    .problems
                    .push(file, record.clone(), Some(&ef.hours), m),
            }
        }
        let code = opt(rec, &ef.code);
        out.push((
            opt(rec, &ef.person),
            RawContract {
                id,
                start,
                end,
                unit: opt(rec, &ef.organization_unit),
                profile: opt(rec, &ef.job_profile),
                employment_type: opt(rec, &ef.employment_type),
                cost_centre: opt(rec, &ef.cost_centre),
                location: opt(rec, &ef.location),
                hours,
                sequence: code.parse().unwrap_or(0),
            },
        ));
    }
    Ok(out)
}

fn assignments(
    config: &VismaSourceConfig,
    now: Date,
    raw: &Raw,
    found: &mut Found,
) -> Result<Vec<(String, RawContract)>, HrError> {
    let af = &config.fields.assignment;
    let file = "visma:/iam/v1.0/assignments";
    for (field, setting) in [
        (&af.person, "fields.assignment.person"),
        (&af.start, "fields.assignment.start"),
    ] {
        require_field(&raw.contracts, "/iam/v1.0/assignments", field, setting)?;
    }
    let current = current(
        &raw.contracts,
        |r| {
            let person = text(r, &af.person)?;
            let employment = opt(r, &af.code);
            let id = text(r, &af.id)?;
            Some(format!("{person}_{employment}_{id}"))
        },
        &Versioning {
            from: &af.valid_from,
            until: &af.valid_until,
            deleted: &af.deleted,
            file,
            what: "assignment",
        },
        now,
        found,
    );
    let mut out = Vec::new();
    for (id, rec) in current {
        // Archived assignments are not contracts.
        if !af.active.is_empty()
            && text(rec, &af.active).is_some_and(|a| a.eq_ignore_ascii_case("false"))
        {
            continue;
        }
        let record = format!("assignment {id}");
        let Some((start, end)) = dates(rec, file, &record, &af.start, &af.end, &mut found.problems)
        else {
            continue;
        };
        out.push((
            opt(rec, &af.person),
            RawContract {
                id,
                start,
                end,
                unit: opt(rec, &af.organization_unit),
                profile: opt(rec, &af.job_profile),
                employment_type: String::new(),
                cost_centre: opt(rec, &af.cost_centre),
                location: String::new(),
                hours: None,
                sequence: opt(rec, &af.code).parse().unwrap_or(0),
            },
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn records(v: Value) -> Vec<Record> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_object().unwrap().clone())
            .collect()
    }

    fn config(extra: &str) -> VismaSourceConfig {
        let text = format!("client_id = 'k'\nclient_secret_env = 'S'\ntenant_id = 't'\n{extra}");
        VismaSourceConfig::from_table(
            "p",
            &toml::from_str(&text).unwrap(),
            std::path::Path::new("."),
        )
        .unwrap()
        .0
    }

    fn d(s: &str) -> Date {
        s.parse().unwrap()
    }

    fn raw() -> Raw {
        Raw {
            persons: records(json!([
                { "id": "9001", "personCode": "1001", "initials": "J.H.", "firstNames": "Jan Hendrik",
                  "knownAs": "Jan", "lastNameAtBirth": "Vries", "lastNameAtBirthPrefix": "de",
                  "partnerName": "Bakker", "partnerNamePrefix": "van", "nameAssembleOrder": "B",
                  "emailAddresses": [{ "type": "Private", "address": "jan@home.example" },
                                     { "type": "Business", "address": "jan.devries@koppeldam.nl" }],
                  "phoneNumbers": [{ "type": "Mobile", "number": "06-12345678" },
                                   { "type": "Business", "number": "020-5551234" }],
                  "gender": "Male", "validFrom": "2026-11-01", "validUntil": "9999-12-31" },
                { "id": "9001", "personCode": "1001", "knownAs": "Jantje", "lastNameAtBirth": "Vries",
                  "validFrom": "2010-01-01", "validUntil": "2026-10-31" },
                { "id": "9002", "personCode": "1002", "firstNames": "Sanne", "lastNameAtBirth": "Smit",
                  "nameAssembleOrder": "1", "phoneNumbers": [{ "type": "Mobile", "number": "06-1" }] },
                { "id": "9003", "personCode": "1003", "lastNameAtBirth": "Weg", "isDeleted": true },
                { "firstNames": "No", "lastNameAtBirth": "Code" }
            ])),
            contracts: records(json!([
                { "personCode": "1001", "employmentCode": "1", "hireDate": "2020-02-01",
                  "dischargeDate": "9999-12-31", "organizationUnit": "13600001", "jobProfile": "4001",
                  "employmentType": "Vast",
                  "workingAmount": { "amountOfWork": 32, "unitOfWork": "Hours", "periodOfWork": "Week" } },
                { "personCode": "1001", "employmentCode": "2", "hireDate": "2018-01-01",
                  "dischargeDate": "2019-12-31", "organizationUnit": "13600002", "jobProfile": "4999" },
                { "personCode": "1002", "employmentCode": "1", "hireDate": "2026-12-01T00:00:00",
                  "organizationUnit": "13600002",
                  "workingAmount": { "amountOfWork": 0.5, "unitOfWork": "FTE", "periodOfWork": "Week" } },
                { "personCode": "4040", "employmentCode": "1", "hireDate": "2020-01-01" }
            ])),
            units: records(json!([
                { "id": "13600001", "shortName": "BZ", "fullName": "Burgerzaken",
                  "parentOrgUnit": "13600000", "manager": "9002" },
                { "id": "13600000", "shortName": "GEM", "fullName": "Gemeente" },
                { "id": "13600002", "shortName": "ICT", "parentOrgUnit": "13600000", "manager": "1001" }
            ])),
            profiles: records(json!([
                { "id": "4001", "shortName": "ADV", "fullName": "Adviseur" }
            ])),
        }
    }

    #[test]
    fn every_field_is_mapped_as_configured() {
        let f = map(
            &config("department_code = 'short_name'"),
            d("2026-11-23"),
            &raw(),
        )
        .unwrap();
        let s = &f.snapshot;
        assert_eq!(
            s.persons
                .iter()
                .map(|p| p.external_id.as_str())
                .collect::<Vec<_>>(),
            ["1001", "1002"],
            "deleted and keyless records are left out"
        );
        let jan = &s.persons[0];
        assert_eq!(jan.name.given, "Jan Hendrik");
        assert_eq!(jan.name.nickname, "Jan", "the version valid today counts");
        assert_eq!(jan.name.initials, "J.H.");
        assert_eq!(
            (jan.name.family_prefix.as_str(), jan.name.family.as_str()),
            ("de", "Vries")
        );
        assert_eq!(
            (jan.name.partner_prefix.as_str(), jan.name.partner.as_str()),
            ("van", "Bakker")
        );
        assert_eq!(
            jan.name.convention,
            NamingConvention::PB,
            "Beaufort B: partner then own"
        );
        assert_eq!(
            jan.email, "jan.devries@koppeldam.nl",
            "the Business address"
        );
        assert_eq!(jan.phone, "020-5551234", "Business before Mobile");
        let c1 = &jan.contracts[0];
        assert_eq!(c1.id, "1001_1");
        assert_eq!(
            (c1.start, c1.end),
            (d("2020-02-01"), None),
            "9999-12-31 is open"
        );
        assert_eq!(c1.department, "BZ");
        assert_eq!(
            (c1.title.code.as_str(), c1.title.name.as_str()),
            ("ADV", "Adviseur")
        );
        assert_eq!(c1.employment_type, "Vast");
        assert_eq!(c1.hours_per_week, Some(32.0));
        assert_eq!(c1.fte, Some(0.8889), "32 of 36 hours");
        assert_eq!(c1.sequence, 1);
        let c2 = &jan.contracts[1];
        assert_eq!((c2.id.as_str(), c2.end), ("1001_2", Some(d("2019-12-31"))));
        assert_eq!(c2.title.code, "4999", "an unknown profile keeps its id");
        let sanne = &s.persons[1];
        assert_eq!(
            sanne.name.convention,
            NamingConvention::B,
            "Business 1: own name"
        );
        assert_eq!(
            sanne.phone, "06-1",
            "Mobile when there is no Business number"
        );
        assert_eq!(sanne.contracts[0].start, d("2026-12-01"));
        assert_eq!(
            sanne.contracts[0].hours_per_week, None,
            "FTE units are not weekly hours"
        );

        let bz = &s.departments["BZ"];
        assert_eq!(
            (bz.name.as_str(), bz.parent.as_str(), bz.manager.as_str()),
            ("Burgerzaken", "GEM", "1002")
        );
        assert_eq!(
            s.departments["ICT"].name, "ICT",
            "shortName when there is no fullName"
        );
        assert_eq!(
            s.departments["ICT"].manager, "1001",
            "a manager given by personCode"
        );

        let codes: Vec<&str> = f.diagnostics.iter().map(|d| d.code.as_str()).collect();
        assert!(codes.contains(&"contract_unknown_person"), "{codes:?}");
        assert!(codes.contains(&"visma_unknown_job_profile"), "{codes:?}");
        assert!(codes.contains(&"visma_record_without_key"), "{codes:?}");
    }

    #[test]
    fn versions_pick_today_then_the_latest_past_then_the_next() {
        let f = map(&config(""), d("2026-10-15"), &raw()).unwrap();
        assert_eq!(
            f.snapshot.persons[0].name.nickname, "Jantje",
            "the old version on that day"
        );
        let f = map(&config(""), d("2009-01-01"), &raw()).unwrap();
        assert_eq!(
            f.snapshot.persons[0].name.nickname, "Jantje",
            "the first to come"
        );
        assert_eq!(
            f.snapshot.persons[0].contracts[0].department, "13600001",
            "unit ids by default"
        );
    }

    #[test]
    fn bad_records_are_all_reported_and_nothing_loads() {
        let mut r = raw();
        r.persons[0].insert("nameAssembleOrder".into(), json!("Z"));
        r.contracts[0].insert("hireDate".into(), json!("01-02-2020"));
        r.contracts[1].remove("hireDate");
        let HrError::Rows(errors) = map(&config(""), d("2026-11-23"), &r).unwrap_err() else {
            panic!("expected record errors");
        };
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 3, "{text:#?}");
        assert!(
            text.iter().any(|e| e.contains("person 1001")
                && e.contains("nameAssembleOrder")
                && e.contains("\"Z\"")),
            "{text:#?}"
        );
        assert!(
            text.iter()
                .any(|e| e.contains("employment 1001_1") && e.contains("hireDate")),
            "{text:#?}"
        );
        assert!(
            text.iter()
                .any(|e| e.contains("employment 1001_2") && e.contains("no start date")),
            "{text:#?}"
        );
    }
}
