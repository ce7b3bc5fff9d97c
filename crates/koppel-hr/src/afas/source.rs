//! The `afas` source: persons, contracts (employments or positions) and organizational units
//! from three GetConnectors, mapped onto koppel's model by configurable field names.
//!
//! Before reading, `metainfo` is asked whether the connectors exist in the app connector and
//! have every field the mapping reads, so a missing connector or field fails with its name
//! instead of as an empty or partial read.

use std::collections::BTreeMap;

use koppel_connectors::source::{Fetched, Source, SourceError};
use koppel_core::{Contract, Date, Department, Diagnostic, NamingConvention, Person, Title};

use super::client::{AfasClient, SERVICE, missing_connector};
use super::config::{AfasApi, AfasSourceConfig};
use crate::error::HrError;
use crate::map::{Problems, Record, date, number, text};

/// What one read of the environment delivered, before mapping.
#[derive(Debug, Clone, Default)]
pub struct Raw {
    pub persons: Vec<Record>,
    pub contracts: Vec<Record>,
    pub departments: Vec<Record>,
}

/// A Profit environment as a koppel source.
pub struct AfasSource {
    name: String,
    config: AfasSourceConfig,
    client: AfasClient,
}

impl AfasSource {
    pub fn new(config: AfasSourceConfig, api: AfasApi) -> Result<AfasSource, HrError> {
        Ok(AfasSource {
            name: format!("afas:{}", api.base_url.host_str().unwrap_or("profit")),
            client: AfasClient::new(api)?,
            config,
        })
    }

    pub fn client(&self) -> &AfasClient {
        &self.client
    }

    /// Checks the connectors and fields, then reads the rows.
    pub async fn read(&self) -> Result<Raw, HrError> {
        let c = &self.config;
        let meta = self.client.metainfo().await?;
        let mut connectors = vec![
            (
                "persons_connector",
                &c.persons_connector,
                field_list(&c.fields.person.pairs(), "person", &c.custom),
            ),
            (
                "contracts_connector",
                &c.contracts_connector,
                field_list(&c.fields.contract.pairs(), "contract", &BTreeMap::new()),
            ),
        ];
        if !c.departments_connector.is_empty() {
            connectors.push((
                "departments_connector",
                &c.departments_connector,
                field_list(&c.fields.department.pairs(), "department", &BTreeMap::new()),
            ));
        }
        for (setting, name, fields) in &connectors {
            if !meta.get_connectors.contains(name.as_str()) {
                return Err(missing_connector(
                    "GetConnector",
                    name,
                    setting,
                    &meta.get_connectors,
                ));
            }
            let have = self.client.fields(name).await?;
            for (setting, field) in fields {
                if !have.contains(field) {
                    return Err(HrError::MissingField {
                        service: SERVICE.into(),
                        endpoint: format!("GetConnector {name}"),
                        field: field.clone(),
                        setting: setting.clone(),
                        known: format!(
                            " (fields: {})",
                            have.iter().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    });
                }
            }
        }
        let persons = self
            .client
            .rows(
                &c.persons_connector,
                &c.fields.person.external_id,
                &c.filters.persons,
                c.take,
            )
            .await?;
        let contracts = self
            .client
            .rows(
                &c.contracts_connector,
                &c.fields.contract.id,
                &c.filters.contracts,
                c.take,
            )
            .await?;
        let departments = if c.departments_connector.is_empty() {
            Vec::new()
        } else {
            self.client
                .rows(
                    &c.departments_connector,
                    &c.fields.department.code,
                    &c.filters.departments,
                    c.take,
                )
                .await?
        };
        Ok(Raw {
            persons,
            contracts,
            departments,
        })
    }

    pub async fn fetch_raw(&self) -> Result<Fetched, HrError> {
        let raw = self.read().await?;
        map(&self.config, &raw)
    }
}

#[async_trait::async_trait]
impl Source for AfasSource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn fetch(&self) -> Result<Fetched, SourceError> {
        self.fetch_raw()
            .await
            .map_err(|e| e.into_source_error(&self.name))
    }
}

/// The fields a GetConnector must have: every mapped one, as (setting, field).
fn field_list(
    pairs: &[(&'static str, &str)],
    group: &str,
    custom: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = pairs
        .iter()
        .filter(|(_, f)| !f.is_empty())
        .map(|(s, f)| (format!("fields.{group}.{s}"), (*f).to_owned()))
        .collect();
    for (k, f) in custom {
        out.push((format!("custom.{k}"), f.clone()));
    }
    out
}

fn opt(rec: &Record, field: &str) -> String {
    if field.is_empty() {
        return String::new();
    }
    text(rec, field).unwrap_or_default()
}

/// Maps one read onto koppel's model. Pure.
pub fn map(config: &AfasSourceConfig, raw: &Raw) -> Result<Fetched, HrError> {
    let mut problems = Problems::default();
    let mut diagnostics = Vec::new();
    let conventions = config.conventions();
    let pf = &config.fields.person;
    let persons_file = format!("afas:{}", config.persons_connector);
    let contracts_file = format!("afas:{}", config.contracts_connector);

    let mut persons: BTreeMap<String, Person> = BTreeMap::new();
    for (i, rec) in raw.persons.iter().enumerate() {
        let Some(id) = text(rec, &pf.external_id) else {
            problems.push(
                &persons_file,
                format!("row #{}", i + 1),
                Some(&pf.external_id),
                "no employee number".into(),
            );
            continue;
        };
        if persons.contains_key(&id) {
            diagnostics.push(
                Diagnostic::warning(
                    "afas_duplicate_person",
                    format!(
                        "{persons_file} delivers employee {id} more than once; the first row counts"
                    ),
                )
                .for_person(id.clone()),
            );
            continue;
        }
        let convention = match text(rec, &pf.convention) {
            None => NamingConvention::B,
            Some(c) => match conventions.get(&c) {
                Some(n) => *n,
                None => {
                    problems.push(
                        &persons_file,
                        format!("employee {id}"),
                        Some(&pf.convention),
                        format!(
                            "unknown naming convention code {c:?}: add it to naming_conventions"
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
        persons.insert(
            id.clone(),
            Person {
                external_id: id,
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
                email: opt(rec, &pf.email),
                phone: opt(rec, &pf.phone),
                custom,
                excluded: false,
                contracts: Vec::new(),
            },
        );
    }

    let cf = &config.fields.contract;
    let mut seen_contracts = std::collections::HashSet::new();
    for (i, rec) in raw.contracts.iter().enumerate() {
        let Some(id) = text(rec, &cf.id) else {
            problems.push(
                &contracts_file,
                format!("row #{}", i + 1),
                Some(&cf.id),
                "no contract id".into(),
            );
            continue;
        };
        let record = format!("contract {id}");
        if !seen_contracts.insert(id.clone()) {
            diagnostics.push(Diagnostic::warning(
                "afas_duplicate_contract",
                format!(
                    "{contracts_file} delivers contract {id} more than once; the first row counts"
                ),
            ));
            continue;
        }
        let person = opt(rec, &cf.person);
        let parse = |field: &str, problems: &mut Problems| -> Option<Option<Date>> {
            match text(rec, field) {
                None => Some(None),
                Some(s) => match date(&s) {
                    Ok(d) => Some(Some(d)),
                    Err(m) => {
                        problems.push(&contracts_file, record.clone(), Some(field), m);
                        None
                    }
                },
            }
        };
        let Some(start) = parse(&cf.start, &mut problems) else {
            continue;
        };
        let Some(start) = start else {
            problems.push(
                &contracts_file,
                record.clone(),
                Some(&cf.start),
                "no start date".into(),
            );
            continue;
        };
        let end = if cf.end.is_empty() {
            None
        } else {
            match parse(&cf.end, &mut problems) {
                Some(e) => e,
                None => continue,
            }
        };
        let mut contract = Contract::new(id.clone(), start, end);
        contract.department = opt(rec, &cf.department);
        contract.title = Title {
            code: opt(rec, &cf.title_code),
            name: opt(rec, &cf.title),
        };
        contract.cost_centre = opt(rec, &cf.cost_centre);
        contract.location = opt(rec, &cf.location);
        contract.manager = opt(rec, &cf.manager);
        contract.employment_type = opt(rec, &cf.employment_type);
        for (field, slot) in [
            (&cf.fte, &mut contract.fte),
            (&cf.hours, &mut contract.hours_per_week),
        ] {
            if field.is_empty() {
                continue;
            }
            match number(rec, field) {
                Ok(v) => *slot = v,
                Err(m) => problems.push(&contracts_file, record.clone(), Some(field), m),
            }
        }
        if !cf.sequence.is_empty() {
            contract.sequence = match number(rec, &cf.sequence) {
                Ok(v) => v.map_or(0, |n| n as i64),
                Err(m) => {
                    problems.push(&contracts_file, record.clone(), Some(&cf.sequence), m);
                    0
                }
            };
        }
        match persons.get_mut(&person) {
            Some(p) => p.contracts.push(contract),
            None => diagnostics.push(
                Diagnostic::error(
                    "contract_unknown_person",
                    format!(
                        "contract {id} belongs to employee {person:?}, who is not among the persons"
                    ),
                )
                .for_person(person.clone()),
            ),
        }
    }

    let df = &config.fields.department;
    let mut departments = BTreeMap::new();
    for rec in &raw.departments {
        let Some(code) = text(rec, &df.code) else {
            continue;
        };
        if departments.contains_key(&code) {
            diagnostics.push(Diagnostic::warning(
                "afas_duplicate_department",
                format!(
                    "organizational unit {code} is delivered more than once; the first row counts"
                ),
            ));
            continue;
        }
        departments.insert(
            code.clone(),
            Department {
                code,
                name: opt(rec, &df.name),
                parent: opt(rec, &df.parent),
                manager: opt(rec, &df.manager),
            },
        );
    }

    if !problems.is_empty() {
        return Err(HrError::Rows(problems.errors));
    }
    let mut fetched = Fetched {
        snapshot: koppel_core::Snapshot {
            persons: persons.into_values().collect(),
            departments,
        },
        diagnostics,
    };
    fetched.snapshot.normalize();
    Ok(fetched)
}
