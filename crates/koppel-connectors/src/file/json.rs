//! The JSON file source: one file of persons with nested contracts, in koppel's own serde
//! form or in the person shape of HelloID source connectors, plus an optional department file.
//!
//! Rules:
//! * The file holds an array of person objects, or person objects one after another
//!   (newline-delimited JSON, as PowerShell scripts writing one `ConvertTo-Json` per person
//!   produce). UTF-8, with or without a byte order mark.
//! * A syntax error names file, line and column. A record with a bad field names the record
//!   (index and external id) and the field path; all bad records are reported together and
//!   nothing is loaded.
//! * `koppel` shape: `model::Person` exactly as koppel serializes it (unknown fields are
//!   errors, so typos do not pass silently). Departments: an array of `model::Department`.
//! * `helloid` shape: HelloID's person model (`ExternalId`, `Name.GivenName`,
//!   `Contact.Business.Email`, `Contracts[].Department.ExternalId`, ...), lenient about nulls,
//!   numbers given as text and datetimes for dates. See `helloid_person` for the mapping.
//!   Departments: an array of `{ExternalId, DisplayName, ParentExternalId, ManagerExternalId}`.
//! * Linking problems are diagnostics, as for CSV; see the `link` module.

use std::path::Path;

use koppel_core::config::{JsonShape, JsonSourceConfig};
use koppel_core::{Contract, Date, Department, NamingConvention, Person, Title};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::link;
use super::{
    Errors, bool_message, convention_message, date_message, decimal_message, display_path,
    integer_message, parse_bool, parse_date, parse_decimal, read_file,
};
use crate::source::{Fetched, RowError, SourceError};

/// Loads a JSON source. Paths are relative to `base_dir`.
pub fn load_json(cfg: &JsonSourceConfig, base_dir: &Path) -> Result<Fetched, SourceError> {
    let mut errors = Errors::default();
    let mut persons = Vec::new();
    let mut person_lines = Vec::new();

    let display = display_path(Path::new(""), &cfg.file);
    let bytes = read_file(&base_dir.join(&cfg.file), "persons file")?;
    let text = decode(&display, &bytes)?;
    for (index, rec) in records(&display, text)?.into_iter().enumerate() {
        let person = match cfg.shape {
            JsonShape::Koppel => {
                koppel_record::<Person>(&display, &rec, index, "person", &mut errors)
            }
            JsonShape::Helloid => {
                with_object(&display, &rec, index, "person", &mut errors, helloid_person)
            }
        };
        if let Some(person) = person {
            if person.external_id.is_empty() {
                errors.push(rec.error(
                    &display,
                    index,
                    "person",
                    "",
                    Some(id_field(cfg.shape, "external_id", "ExternalId")),
                    "is empty; every person needs an external id".into(),
                ));
                continue;
            }
            persons.push(person);
            person_lines.push(rec.line as u64);
        }
    }

    let mut departments = None;
    if let Some(file) = &cfg.departments_file {
        let display = display_path(Path::new(""), file);
        let bytes = read_file(&base_dir.join(file), "departments file")?;
        let text = decode(&display, &bytes)?;
        let mut list = Vec::new();
        let mut lines = Vec::new();
        for (index, rec) in records(&display, text)?.into_iter().enumerate() {
            let dept = match cfg.shape {
                JsonShape::Koppel => {
                    koppel_record::<Department>(&display, &rec, index, "department", &mut errors)
                }
                JsonShape::Helloid => with_object(
                    &display,
                    &rec,
                    index,
                    "department",
                    &mut errors,
                    helloid_department,
                ),
            };
            if let Some(dept) = dept {
                if dept.code.is_empty() {
                    errors.push(rec.error(
                        &display,
                        index,
                        "department",
                        "",
                        Some(id_field(cfg.shape, "code", "ExternalId")),
                        "is empty; every department needs a code".into(),
                    ));
                    continue;
                }
                list.push(dept);
                lines.push(rec.line as u64);
            }
        }
        departments = Some(link::departments(&display, list, &lines));
    }

    if !errors.is_empty() {
        return Err(errors.into_error());
    }
    let mut persons = link::persons(display, persons, person_lines);
    let contracts = link::nested_contracts(&mut persons);
    Ok(link::assemble(departments, persons, contracts))
}

fn id_field(shape: JsonShape, koppel: &str, helloid: &str) -> String {
    match shape {
        JsonShape::Koppel => koppel.into(),
        JsonShape::Helloid => helloid.into(),
    }
}

fn decode<'b>(file: &str, bytes: &'b [u8]) -> Result<&'b str, SourceError> {
    let body = super::strip_bom(file, bytes)?;
    std::str::from_utf8(body).map_err(|e| {
        let before = &body[..e.valid_up_to()];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        SourceError::BadEncoding {
            file: format!("{file}:{line}"),
            message: "not valid UTF-8; save the file as UTF-8".into(),
        }
    })
}

/// One top-level record of a file, still as JSON text, with the line it starts on.
struct Rec<'t> {
    raw: &'t RawValue,
    line: usize,
}

impl Rec<'_> {
    /// An error in this record. `line` is the line of the problem when known, else the
    /// record's first line; `id` names the record for people who search the file.
    fn error(
        &self,
        file: &str,
        index: usize,
        kind: &str,
        id: &str,
        field: Option<String>,
        message: String,
    ) -> RowError {
        let record = if id.is_empty() {
            format!("{kind} at index {index}")
        } else {
            format!("{kind} at index {index} (\"{id}\")")
        };
        RowError {
            file: file.to_owned(),
            line: Some(self.line as u64),
            record: Some(record),
            field,
            message,
        }
    }
}

/// Splits a file into its top-level records: the elements of an array, or a sequence of
/// values. Syntax errors anywhere fail here, with their line and column.
fn records<'t>(file: &str, text: &'t str) -> Result<Vec<Rec<'t>>, SourceError> {
    let syntax = |e: serde_json::Error| SourceError::Json {
        file: file.to_owned(),
        line: e.line(),
        column: e.column(),
        message: without_position(&e),
    };
    let trimmed = text.trim_start();
    let raws: Vec<&RawValue> = if trimmed.is_empty() {
        return Err(SourceError::Json {
            file: file.to_owned(),
            line: 1,
            column: 1,
            message: "the file is empty (expected an array of objects)".into(),
        });
    } else if trimmed.starts_with('[') {
        serde_json::from_str(text).map_err(syntax)?
    } else {
        serde_json::Deserializer::from_str(text)
            .into_iter::<&RawValue>()
            .collect::<Result<_, _>>()
            .map_err(syntax)?
    };

    // Raw values borrow from `text`, so their offset in it gives their line.
    let base = text.as_ptr() as usize;
    let mut line = 1;
    let mut counted = 0;
    let mut out = Vec::with_capacity(raws.len());
    for raw in raws {
        let offset = (raw.get().as_ptr() as usize)
            .saturating_sub(base)
            .min(text.len());
        let offset = offset.max(counted);
        line += text.as_bytes()[counted..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        counted = offset;
        out.push(Rec { raw, line });
    }
    Ok(out)
}

/// serde_json's message without its trailing " at line L column C", which we print our way.
fn without_position(e: &serde_json::Error) -> String {
    let full = e.to_string();
    match full.rfind(" at line ") {
        Some(i) => full[..i].to_owned(),
        None => full,
    }
}

/// Deserializes a record in koppel's own serde form, naming the failing field's path.
fn koppel_record<T: DeserializeOwned>(
    file: &str,
    rec: &Rec<'_>,
    index: usize,
    kind: &str,
    errors: &mut Errors,
) -> Option<T> {
    let mut de = serde_json::Deserializer::from_str(rec.raw.get());
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(v) => Some(v),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            // Name the record by its id if that much can be read.
            let id = serde_json::from_str::<Value>(rec.raw.get())
                .ok()
                .and_then(|v| {
                    v.get("external_id")
                        .or_else(|| v.get("code"))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .unwrap_or_default();
            let mut err = rec.error(
                file,
                index,
                kind,
                &id,
                (path != ".").then_some(path),
                without_position(&inner),
            );
            err.line = Some((rec.line + inner.line().saturating_sub(1)) as u64);
            errors.push(err);
            None
        }
    }
}

/// Runs a HelloID mapping over a record that must be a JSON object.
fn with_object<T>(
    file: &str,
    rec: &Rec<'_>,
    index: usize,
    kind: &str,
    errors: &mut Errors,
    map: fn(&Map<String, Value>, &mut Fields) -> T,
) -> Option<T> {
    let value: Value = match serde_json::from_str(rec.raw.get()) {
        Ok(v) => v,
        Err(e) => {
            errors.push(rec.error(file, index, kind, "", None, without_position(&e)));
            return None;
        }
    };
    let Value::Object(obj) = value else {
        errors.push(rec.error(
            file,
            index,
            kind,
            "",
            None,
            format!("expected an object, found {}", type_name(&value)),
        ));
        return None;
    };
    let mut fields = Fields::default();
    let out = map(&obj, &mut fields);
    if fields.errors.is_empty() {
        return Some(out);
    }
    let id = obj
        .get("ExternalId")
        .and_then(scalar_text)
        .unwrap_or_default();
    for (field, message) in fields.errors {
        errors.push(rec.error(file, index, kind, &id, Some(field), message));
    }
    None
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Typed, lenient access to the fields of a HelloID object, collecting every bad field.
/// Null and absent mean empty; numbers may come as text and text as numbers.
#[derive(Default)]
struct Fields {
    errors: Vec<(String, String)>,
}

impl Fields {
    /// Records a bad field once, even when several lookups pass through it.
    fn fail(&mut self, field: String, message: String) {
        if !self.errors.iter().any(|(f, _)| *f == field) {
            self.errors.push((field, message));
        }
    }

    /// The value at a dotted path under `obj`; `None` when absent or null on the way.
    /// `prefix` is how `obj` is named in messages (e.g. `Contracts[1]`).
    fn get<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        prefix: &str,
        path: &str,
    ) -> Option<&'v Value> {
        let mut cur = obj;
        let mut parts = path.split('.').peekable();
        let mut walked = String::from(prefix);
        while let Some(part) = parts.next() {
            if !walked.is_empty() {
                walked.push('.');
            }
            walked.push_str(part);
            let v = cur.get(part)?;
            if parts.peek().is_none() {
                return (!v.is_null()).then_some(v);
            }
            match v {
                Value::Object(next) => cur = next,
                Value::Null => return None,
                other => {
                    self.fail(
                        walked,
                        format!("expected an object, found {}", type_name(other)),
                    );
                    return None;
                }
            }
        }
        None
    }

    fn field_name(prefix: &str, path: &str) -> String {
        if prefix.is_empty() {
            path.to_owned()
        } else {
            format!("{prefix}.{path}")
        }
    }

    fn text(&mut self, obj: &Map<String, Value>, prefix: &str, path: &str) -> String {
        let Some(v) = self.get(obj, prefix, path) else {
            return String::new();
        };
        scalar_text(v).unwrap_or_else(|| {
            self.fail(
                Self::field_name(prefix, path),
                format!("expected text, found {}", type_name(v)),
            );
            String::new()
        })
    }

    /// The first non-empty of several fields, for values HelloID models put in more than
    /// one place (a code or an external id, a fixed or a mobile phone).
    fn first_text(&mut self, obj: &Map<String, Value>, prefix: &str, paths: &[&str]) -> String {
        for path in paths {
            let s = self.text(obj, prefix, path);
            if !s.is_empty() {
                return s;
            }
        }
        String::new()
    }

    fn date(&mut self, obj: &Map<String, Value>, prefix: &str, path: &str) -> Option<Date> {
        let s = self.text(obj, prefix, path);
        if s.is_empty() {
            return None;
        }
        let d = parse_date(&s);
        if d.is_none() {
            self.fail(Self::field_name(prefix, path), date_message(&s));
        }
        d
    }

    fn decimal(&mut self, obj: &Map<String, Value>, prefix: &str, path: &str) -> Option<f64> {
        let v = self.get(obj, prefix, path)?;
        let parsed = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) if s.trim().is_empty() => return None,
            Value::String(s) => parse_decimal(s.trim()),
            _ => None,
        };
        if parsed.is_none() {
            let shown = scalar_text(v).unwrap_or_else(|| type_name(v).to_owned());
            self.fail(Self::field_name(prefix, path), decimal_message(&shown));
        }
        parsed
    }

    fn integer(&mut self, obj: &Map<String, Value>, prefix: &str, path: &str) -> Option<i64> {
        let v = self.get(obj, prefix, path)?;
        let parsed = match v {
            Value::Number(n) => n.as_i64().or_else(|| {
                // 2.0 is a whole number that a script wrote as a float.
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| f as i64)
            }),
            Value::String(s) if s.trim().is_empty() => return None,
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        if parsed.is_none() {
            let shown = scalar_text(v).unwrap_or_else(|| type_name(v).to_owned());
            self.fail(Self::field_name(prefix, path), integer_message(&shown));
        }
        parsed
    }

    fn boolean(&mut self, obj: &Map<String, Value>, path: &str) -> bool {
        let Some(v) = self.get(obj, "", path) else {
            return false;
        };
        let parsed = match v {
            Value::Bool(b) => Some(*b),
            Value::Number(n) => match n.as_i64() {
                Some(0) => Some(false),
                Some(1) => Some(true),
                _ => None,
            },
            Value::String(s) => parse_bool(s.trim()),
            _ => None,
        };
        parsed.unwrap_or_else(|| {
            let shown = scalar_text(v).unwrap_or_else(|| type_name(v).to_owned());
            self.fail(path.to_owned(), bool_message(&shown));
            false
        })
    }
}

/// Top-level person fields the HelloID mapping reads itself; every other top-level field
/// becomes custom data.
const HELLOID_MAPPED: &[&str] = &[
    "ExternalId",
    "Name",
    "Contact",
    "Contracts",
    "PrimaryContract",
    "Custom",
    "Excluded",
    "ExcludedFromProvisioning",
    "ExcludedBySource",
];

/// Maps a person of HelloID's person model to koppel's.
///
/// * `ExternalId` → `external_id`; `Name.GivenName`, `NickName`, `Initials`,
///   `FamilyNamePrefix`, `FamilyName`, `FamilyNamePartnerPrefix`, `FamilyNamePartner`,
///   `Convention` → the name parts.
/// * `Contact.Business.Email` → `email`; `Contact.Business.Phone.Fixed`, else `.Mobile` → `phone`.
/// * `Excluded`, `ExcludedFromProvisioning` or `ExcludedBySource` true → `excluded`.
/// * `Contracts[]` → contracts, see [`helloid_contract`]. `PrimaryContract` is ignored:
///   koppel chooses the primary contract itself, by the configured ordering.
/// * Custom fields: every other top-level scalar (e.g. `DisplayName`) by its name, every other
///   top-level object flattened with dotted names (e.g. `Details.BirthDate`), and the scalars
///   of the `Custom` object by their own name (these win over a same-named top-level field).
///   Arrays other than `Contracts` are not kept.
fn helloid_person(p: &Map<String, Value>, f: &mut Fields) -> Person {
    let mut person = Person {
        external_id: f.text(p, "", "ExternalId"),
        ..Person::default()
    };
    let n = &mut person.name;
    n.given = f.text(p, "", "Name.GivenName");
    n.nickname = f.text(p, "", "Name.NickName");
    n.initials = f.text(p, "", "Name.Initials");
    n.family_prefix = f.text(p, "", "Name.FamilyNamePrefix");
    n.family = f.text(p, "", "Name.FamilyName");
    n.partner_prefix = f.text(p, "", "Name.FamilyNamePartnerPrefix");
    n.partner = f.text(p, "", "Name.FamilyNamePartner");
    let convention = f.text(p, "", "Name.Convention");
    n.convention = NamingConvention::parse(&convention).unwrap_or_else(|| {
        f.errors
            .push(("Name.Convention".into(), convention_message(&convention)));
        NamingConvention::default()
    });
    person.email = f.text(p, "", "Contact.Business.Email");
    person.phone = f.first_text(
        p,
        "",
        &[
            "Contact.Business.Phone.Fixed",
            "Contact.Business.Phone.Mobile",
        ],
    );
    person.excluded = f.boolean(p, "Excluded")
        | f.boolean(p, "ExcludedFromProvisioning")
        | f.boolean(p, "ExcludedBySource");

    for (key, value) in p {
        if !HELLOID_MAPPED.contains(&key.as_str()) {
            flatten_into(&mut person.custom, key, value);
        }
    }
    match p.get("Custom") {
        None | Some(Value::Null) => {}
        Some(Value::Object(custom)) => {
            for (key, value) in custom {
                flatten_into(&mut person.custom, key, value);
            }
        }
        Some(other) => f.errors.push((
            "Custom".into(),
            format!("expected an object, found {}", type_name(other)),
        )),
    }

    match p.get("Contracts") {
        None | Some(Value::Null) => {}
        Some(Value::Array(contracts)) => {
            for (i, c) in contracts.iter().enumerate() {
                let prefix = format!("Contracts[{i}]");
                match c {
                    Value::Object(c) => {
                        if let Some(contract) = helloid_contract(c, &prefix, f) {
                            person.contracts.push(contract);
                        }
                    }
                    Value::Null => {}
                    other => f.errors.push((
                        prefix,
                        format!("expected an object, found {}", type_name(other)),
                    )),
                }
            }
        }
        Some(other) => f.errors.push((
            "Contracts".into(),
            format!("expected an array, found {}", type_name(other)),
        )),
    }
    person
}

/// Adds a custom value: scalars as text (null as empty), objects flattened with dotted keys.
fn flatten_into(custom: &mut std::collections::BTreeMap<String, String>, key: &str, v: &Value) {
    match v {
        Value::Null => {
            custom.insert(key.to_owned(), String::new());
        }
        Value::Object(obj) => {
            for (k, v) in obj {
                flatten_into(custom, &format!("{key}.{k}"), v);
            }
        }
        Value::Array(_) => {}
        scalar => {
            if let Some(s) = scalar_text(scalar) {
                custom.insert(key.to_owned(), s);
            }
        }
    }
}

/// Maps a contract of HelloID's person model:
///
/// * `ExternalId` (required) → `id`; `StartDate` (required), `EndDate` → dates (date part).
/// * `Department.ExternalId` (else `.Code`) → `department`.
/// * `Title.Code` (else `.ExternalId`) and `Title.Name` → `title`.
/// * `Location.Name` (else `.Code`, `.ExternalId`) → `location`.
/// * `CostCenter.Code` (else `.ExternalId`) → `cost_centre`; `Manager.ExternalId` → `manager`.
/// * `Type.Description` (else `.Code`) → `employment_type`.
/// * `Details.Fte`, `Details.HoursPerWeek`, `Details.Sequence` (absent: 0).
/// * `Employer`, `Organization`, `Division`, `Team` and the rest have no place in the model
///   and are not kept.
fn helloid_contract(c: &Map<String, Value>, prefix: &str, f: &mut Fields) -> Option<Contract> {
    let errors_before = f.errors.len();
    let id = f.text(c, prefix, "ExternalId");
    if id.is_empty() {
        f.fail(
            Fields::field_name(prefix, "ExternalId"),
            "is empty; every contract needs an id".into(),
        );
    }
    let start = if f.text(c, prefix, "StartDate").is_empty() {
        f.fail(
            Fields::field_name(prefix, "StartDate"),
            "is empty; every contract needs a start date".into(),
        );
        None
    } else {
        f.date(c, prefix, "StartDate")
    };
    let contract = Contract {
        id,
        start: start.unwrap_or_default(),
        end: f.date(c, prefix, "EndDate"),
        department: f.first_text(c, prefix, &["Department.ExternalId", "Department.Code"]),
        title: Title {
            code: f.first_text(c, prefix, &["Title.Code", "Title.ExternalId"]),
            name: f.text(c, prefix, "Title.Name"),
        },
        location: f.first_text(
            c,
            prefix,
            &["Location.Name", "Location.Code", "Location.ExternalId"],
        ),
        cost_centre: f.first_text(c, prefix, &["CostCenter.Code", "CostCenter.ExternalId"]),
        manager: f.text(c, prefix, "Manager.ExternalId"),
        employment_type: f.first_text(c, prefix, &["Type.Description", "Type.Code"]),
        fte: f.decimal(c, prefix, "Details.Fte"),
        hours_per_week: f.decimal(c, prefix, "Details.HoursPerWeek"),
        sequence: f.integer(c, prefix, "Details.Sequence").unwrap_or(0),
    };
    (f.errors.len() == errors_before).then_some(contract)
}

/// Maps a department as HelloID source connectors deliver them.
fn helloid_department(d: &Map<String, Value>, f: &mut Fields) -> Department {
    Department {
        code: f.first_text(d, "", &["ExternalId", "Code"]),
        name: f.first_text(d, "", &["DisplayName", "Name"]),
        parent: f.text(d, "", "ParentExternalId"),
        manager: f.first_text(d, "", &["ManagerExternalId", "Manager.ExternalId"]),
    }
}
