//! Fixture tenants: a synthetic organisation (koppel-synth) written as a Youforce tenant's
//! IAM API records and as an AFAS environment's HelloID GetConnector rows.
//!
//! Visma leaves out properties that have no value, so the records here do too; AFAS returns
//! every field of a GetConnector, `null` when empty, and writes dates as date-times with `Z`.

use std::collections::BTreeMap;

use koppel_core::{Date, NamingConvention, Person, Snapshot};
use serde_json::{Map, Value, json};

/// A Youforce tenant's data.
#[derive(Debug, Clone, Default)]
pub struct VismaTenant {
    pub persons: Vec<Value>,
    pub employments: Vec<Value>,
    pub assignments: Vec<Value>,
    pub organization_units: Vec<Value>,
    pub job_profiles: Vec<Value>,
    /// Users by employee id (`personCode`).
    pub users: BTreeMap<String, Value>,
}

/// An AFAS environment's GetConnector rows.
#[derive(Debug, Clone, Default)]
pub struct AfasTenant {
    pub users: Vec<Map<String, Value>>,
    pub employments: Vec<Map<String, Value>>,
    pub organizational_units: Vec<Map<String, Value>>,
}

/// A synthetic organisation of `persons` people on `today`.
pub fn synthetic(persons: usize, seed: u64, today: Date) -> Snapshot {
    let mut opts = koppel_synth::Options::new(persons, seed, today);
    opts.organisation = "Gemeente Koppeldam".into();
    opts.email_domain = "koppeldam.example".into();
    koppel_synth::generate(&opts)
}

/// Inserts `key: value` when the value is not empty (Youforce hides empty properties).
fn put(o: &mut Map<String, Value>, key: &str, value: &str) {
    if !value.is_empty() {
        o.insert(key.to_owned(), Value::String(value.to_owned()));
    }
}

/// HR Core Beaufort's `nameAssembleOrder` letter for a naming convention.
fn assemble_order(c: NamingConvention) -> &'static str {
    match c {
        NamingConvention::B => "E",
        NamingConvention::P => "P",
        NamingConvention::PB => "B",
        NamingConvention::BP => "C",
    }
}

fn known_as(p: &Person) -> String {
    if p.name.nickname.is_empty() {
        p.name
            .given
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_owned()
    } else {
        p.name.nickname.clone()
    }
}

fn iso(d: Date) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// The employment code of a synthetic contract id `1000001-2` (the part after the dash).
fn employment_code(contract_id: &str) -> String {
    contract_id
        .rsplit_once('-')
        .map_or(contract_id, |(_, c)| c)
        .to_owned()
}

/// A deterministic GUID-shaped user id.
fn guid(n: u64) -> String {
    let h = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        (h >> 20) & 0xfff,
        h & 0xffff_ffff_ffff
    )
}

/// The organisation as a Youforce tenant on `today`. Every tenth person has an older
/// version of their record (another `knownAs`) that ended a month ago.
pub fn visma(s: &Snapshot, today: Date) -> VismaTenant {
    let mut t = VismaTenant::default();
    let row_id: BTreeMap<&str, String> = s
        .persons
        .iter()
        .enumerate()
        .map(|(i, p)| (p.external_id.as_str(), (700_000 + i).to_string()))
        .collect();
    let unit_id: BTreeMap<&str, String> = s
        .departments
        .keys()
        .enumerate()
        .map(|(i, code)| (code.as_str(), (13_600_000 + i).to_string()))
        .collect();
    let mut profiles: BTreeMap<String, (String, String)> = BTreeMap::new();
    for p in &s.persons {
        for c in &p.contracts {
            if !c.title.code.is_empty() && !profiles.contains_key(&c.title.code) {
                let id = (4_000 + profiles.len()).to_string();
                profiles.insert(c.title.code.clone(), (id, c.title.name.clone()));
            }
        }
    }
    let month_ago = today - chrono::Duration::days(30);
    for (i, p) in s.persons.iter().enumerate() {
        let mut o = Map::new();
        put(&mut o, "id", &row_id[p.external_id.as_str()]);
        put(&mut o, "personCode", &p.external_id);
        put(&mut o, "initials", &p.name.initials);
        put(&mut o, "firstNames", &p.name.given);
        put(&mut o, "knownAs", &known_as(p));
        put(
            &mut o,
            "lastName",
            &koppel_core::names::family_name(&p.name),
        );
        put(&mut o, "lastNameAtBirth", &p.name.family);
        put(&mut o, "lastNameAtBirthPrefix", &p.name.family_prefix);
        put(&mut o, "partnerName", &p.name.partner);
        put(&mut o, "partnerNamePrefix", &p.name.partner_prefix);
        put(
            &mut o,
            "nameAssembleOrder",
            assemble_order(p.name.convention),
        );
        if !p.email.is_empty() {
            o.insert(
                "emailAddresses".into(),
                json!([{ "type": "Business", "address": p.email }]),
            );
        }
        if !p.phone.is_empty() {
            let kind = if p.phone.starts_with("06") || p.phone.starts_with("+316") {
                "Mobile"
            } else {
                "Business"
            };
            o.insert(
                "phoneNumbers".into(),
                json!([{ "type": kind, "number": p.phone }]),
            );
        }
        let start = p.contracts.iter().map(|c| c.start).min().unwrap_or(today);
        if i % 10 == 3 {
            let mut old = o.clone();
            old.insert("knownAs".into(), json!(format!("{}-oud", known_as(p))));
            put(
                &mut old,
                "validFrom",
                &iso(start.min(month_ago - chrono::Duration::days(1))),
            );
            put(&mut old, "validUntil", &iso(month_ago));
            t.persons.push(Value::Object(old));
            put(
                &mut o,
                "validFrom",
                &iso(month_ago + chrono::Duration::days(1)),
            );
        } else {
            put(&mut o, "validFrom", &iso(start));
        }
        put(&mut o, "validUntil", "9999-12-31");
        t.persons.push(Value::Object(o));

        let mut user = Map::new();
        put(&mut user, "employeeId", &p.external_id);
        put(&mut user, "id", &guid(i as u64 + 1));
        put(&mut user, "sourceId", &format!("YF{:06}", 100_000 + i));
        t.users.insert(p.external_id.clone(), Value::Object(user));

        for c in &p.contracts {
            let mut e = Map::new();
            put(
                &mut e,
                "id",
                &format!(
                    "{}{}",
                    row_id[p.external_id.as_str()],
                    employment_code(&c.id)
                ),
            );
            put(&mut e, "personCode", &p.external_id);
            put(&mut e, "employmentCode", &employment_code(&c.id));
            put(&mut e, "hireDate", &iso(c.start));
            put(
                &mut e,
                "dischargeDate",
                &c.end.map_or("9999-12-31".into(), iso),
            );
            put(&mut e, "company", "001");
            put(&mut e, "employmentType", &c.employment_type);
            if let Some(u) = unit_id.get(c.department.as_str()) {
                put(&mut e, "organizationUnit", u);
            }
            if let Some((id, _)) = profiles.get(&c.title.code) {
                put(&mut e, "jobProfile", id);
            }
            if let Some(h) = c.hours_per_week {
                e.insert(
                    "workingAmount".into(),
                    json!({ "amountOfWork": h, "unitOfWork": "Hours", "periodOfWork": "Week" }),
                );
            }
            put(&mut e, "validFrom", &iso(c.start));
            put(&mut e, "validUntil", "9999-12-31");
            t.employments.push(Value::Object(e.clone()));

            let mut a = Map::new();
            put(
                &mut a,
                "id",
                &format!("A{}", e["id"].as_str().unwrap_or_default()),
            );
            put(&mut a, "personCode", &p.external_id);
            put(&mut a, "employmentCode", &employment_code(&c.id));
            put(&mut a, "startDate", &iso(c.start));
            put(&mut a, "endDate", &c.end.map_or("9999-12-31".into(), iso));
            if let Some(u) = unit_id.get(c.department.as_str()) {
                put(&mut a, "organizationUnit", u);
            }
            if let Some((id, _)) = profiles.get(&c.title.code) {
                put(&mut a, "jobProfile", id);
            }
            put(&mut a, "costCenter", &c.cost_centre);
            a.insert("isActive".into(), json!(true));
            t.assignments.push(Value::Object(a));
        }
    }
    for (code, d) in &s.departments {
        let mut o = Map::new();
        put(&mut o, "id", &unit_id[code.as_str()]);
        put(&mut o, "shortName", code);
        put(&mut o, "fullName", &d.name);
        if let Some(parent) = unit_id.get(d.parent.as_str()) {
            put(&mut o, "parentOrgUnit", parent);
        }
        if let Some(m) = row_id.get(d.manager.as_str()) {
            put(&mut o, "manager", m);
        }
        put(&mut o, "validFrom", "2015-01-01");
        put(&mut o, "validUntil", "9999-12-31");
        t.organization_units.push(Value::Object(o));
    }
    for (code, (id, name)) in &profiles {
        let mut o = Map::new();
        put(&mut o, "id", id);
        put(&mut o, "shortName", code);
        put(&mut o, "fullName", name);
        put(&mut o, "validFrom", "2015-01-01");
        put(&mut o, "validUntil", "9999-12-31");
        t.job_profiles.push(Value::Object(o));
    }
    t
}

/// AFAS's `Naamgebruik_code` for a naming convention.
fn naamgebruik(c: NamingConvention) -> &'static str {
    match c {
        NamingConvention::B => "0",
        NamingConvention::PB => "1",
        NamingConvention::P => "2",
        NamingConvention::BP => "3",
    }
}

fn text_or_null(s: &str) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        Value::String(s.to_owned())
    }
}

/// An AFAS date field: the date at midnight with the `Z` AFAS writes.
fn afas_date(d: Date) -> Value {
    Value::String(format!("{}T00:00:00Z", iso(d)))
}

/// The fields of HelloID's `T4E_HelloID_Users_v2`, in GetConnector order.
pub const USERS_FIELDS: &[&str] = &[
    "Medewerker",
    "Persoonsnummer",
    "Gebruiker",
    "DisplayName",
    "Roepnaam",
    "Voornaam",
    "Voorletters",
    "Voorvoegsel",
    "Geboortenaam",
    "Voorvoegsel_partner",
    "Geboortenaam_partner",
    "Naamgebruik_code",
    "Email_werk",
    "Telefoonnr_werk",
    "Mobielnr_werk",
    "UPN",
    "Email_werk_gebruiker",
];

/// The fields of HelloID's `T4E_HelloID_Employments_v2`.
pub const EMPLOYMENTS_FIELDS: &[&str] = &[
    "ExternalID",
    "Medewerker",
    "Persoonsnummer",
    "Begindatum_contract",
    "Einddatum_contract",
    "Begindatum_functie",
    "Einddatum_functie",
    "Organisatorische_eenheid_code",
    "Organisatorische_eenheid_omschrijving",
    "Functie_code",
    "Functie_omschrijving",
    "Kostenplaats_code",
    "Soort_medewerker_code",
    "Soort_medewerker",
    "FTE",
    "Uren_per_week",
    "Parttime_percentage",
    "Volgnummer_contract",
    "Werkgever_code",
    "Werkgever_omschrijving",
];

/// The fields of HelloID's `T4E_HelloID_OrganizationalUnits_v2`.
pub const UNITS_FIELDS: &[&str] = &[
    "ExternalId",
    "DisplayName",
    "ParentExternalId",
    "ManagerExternalId",
];

/// The organisation as an AFAS environment's GetConnector rows.
pub fn afas(s: &Snapshot) -> AfasTenant {
    let mut t = AfasTenant::default();
    for p in &s.persons {
        let person_number = format!("P{}", p.external_id);
        let mobile = p.phone.starts_with("06") || p.phone.starts_with("+316");
        let row: Map<String, Value> = [
            ("Medewerker", text_or_null(&p.external_id)),
            ("Persoonsnummer", text_or_null(&person_number)),
            (
                "Gebruiker",
                text_or_null(&format!("12345.{}", p.external_id)),
            ),
            (
                "DisplayName",
                text_or_null(&koppel_core::names::display_name(&p.name)),
            ),
            ("Roepnaam", text_or_null(&known_as(p))),
            ("Voornaam", text_or_null(&p.name.given)),
            ("Voorletters", text_or_null(&p.name.initials)),
            ("Voorvoegsel", text_or_null(&p.name.family_prefix)),
            ("Geboortenaam", text_or_null(&p.name.family)),
            ("Voorvoegsel_partner", text_or_null(&p.name.partner_prefix)),
            ("Geboortenaam_partner", text_or_null(&p.name.partner)),
            (
                "Naamgebruik_code",
                Value::String(naamgebruik(p.name.convention).into()),
            ),
            ("Email_werk", text_or_null(&p.email)),
            (
                "Telefoonnr_werk",
                if mobile {
                    Value::Null
                } else {
                    text_or_null(&p.phone)
                },
            ),
            (
                "Mobielnr_werk",
                if mobile {
                    text_or_null(&p.phone)
                } else {
                    Value::Null
                },
            ),
            ("UPN", Value::Null),
            ("Email_werk_gebruiker", Value::Null),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        t.users.push(row);
        for c in &p.contracts {
            let dept = s.departments.get(&c.department);
            let row: Map<String, Value> = [
                ("ExternalID", text_or_null(&c.id)),
                ("Medewerker", text_or_null(&p.external_id)),
                ("Persoonsnummer", text_or_null(&person_number)),
                ("Begindatum_contract", afas_date(c.start)),
                ("Einddatum_contract", c.end.map_or(Value::Null, afas_date)),
                ("Begindatum_functie", afas_date(c.start)),
                ("Einddatum_functie", c.end.map_or(Value::Null, afas_date)),
                ("Organisatorische_eenheid_code", text_or_null(&c.department)),
                (
                    "Organisatorische_eenheid_omschrijving",
                    text_or_null(dept.map_or("", |d| d.name.as_str())),
                ),
                ("Functie_code", text_or_null(&c.title.code)),
                ("Functie_omschrijving", text_or_null(&c.title.name)),
                ("Kostenplaats_code", text_or_null(&c.cost_centre)),
                ("Soort_medewerker_code", text_or_null(&c.employment_type)),
                ("Soort_medewerker", text_or_null(&c.employment_type)),
                ("FTE", c.fte.map_or(Value::Null, |f| json!(f))),
                (
                    "Uren_per_week",
                    c.hours_per_week.map_or(Value::Null, |h| json!(h)),
                ),
                (
                    "Parttime_percentage",
                    c.fte.map_or(Value::Null, |f| json!((f * 100.0).round())),
                ),
                ("Volgnummer_contract", json!(c.sequence)),
                ("Werkgever_code", Value::String("1".into())),
                (
                    "Werkgever_omschrijving",
                    Value::String("Gemeente Koppeldam".into()),
                ),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            t.employments.push(row);
        }
    }
    for (code, d) in &s.departments {
        let row: Map<String, Value> = [
            ("ExternalId", text_or_null(code)),
            ("DisplayName", text_or_null(&d.name)),
            ("ParentExternalId", text_or_null(&d.parent)),
            ("ManagerExternalId", text_or_null(&d.manager)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        t.organizational_units.push(row);
    }
    t
}
