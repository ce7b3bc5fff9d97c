//! SCIM resources as JSON: checking and normalising what clients send against the schema,
//! the mapping between koppel's flat account attributes and SCIM paths, and the
//! `attributes`/`excludedAttributes` projection and sort keys of list responses.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use crate::error::ScimError;
use crate::filter::{self, AttrPath, CompareOp, Filter, Literal, PatchPath, get_ci};
use crate::schema::{self, Attr, Kind, Mutability, Returned, Ty};

/// Checks `value` against the schema of `kind` and gives it with canonical attribute names.
/// Unknown attributes, read-only ones (`id`, `meta`, `groups` …) and `schemas` are dropped,
/// as RFC 7644 §3.3 and §3.5.1 allow; values of the wrong type are `invalidValue`.
pub fn normalize(kind: Kind, value: &Value) -> Result<Map<String, Value>, ScimError> {
    let Value::Object(obj) = value else {
        return Err(ScimError::invalid_syntax("the body must be a JSON object"));
    };
    let mut out = Map::new();
    for (key, v) in obj {
        if let Some(urn) = kind.extension(key) {
            let Value::Object(ext) = v else {
                if v.is_null() {
                    continue;
                }
                return Err(ScimError::invalid_value(format!(
                    "`{urn}` must be an object of the extension's attributes"
                )));
            };
            let attrs = kind.schema_attrs(Some(urn)).unwrap_or(&[]);
            let mut ext_out = Map::new();
            for (k, v) in ext {
                if let Some(def) = schema::find(attrs, k)
                    && let Some(v) = normalize_value(def, v, urn)?
                {
                    ext_out.insert(def.name.to_owned(), v);
                }
            }
            if !ext_out.is_empty() {
                out.insert(urn.to_owned(), Value::Object(ext_out));
            }
            continue;
        }
        let Some(def) = schema::find(kind.core_attrs(), key)
            .or_else(|| schema::find(schema::COMMON, key).filter(|d| d.name == "externalId"))
        else {
            continue;
        };
        if let Some(v) = normalize_value(def, v, "")? {
            out.insert(def.name.to_owned(), v);
        }
    }
    Ok(out)
}

/// The value of attribute `def` as stored, `None` when it is to be absent.
pub fn normalize_value(def: &Attr, v: &Value, context: &str) -> Result<Option<Value>, ScimError> {
    if matches!(def.mutability, Mutability::ReadOnly) || v.is_null() {
        return Ok(None);
    }
    if def.multi {
        let items: Vec<&Value> = match v {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if let Some(item) = normalize_single(def, item, context)?
                && !out.contains(&item)
            {
                out.push(item);
            }
        }
        return Ok((!out.is_empty()).then_some(Value::Array(out)));
    }
    normalize_single(def, v, context)
}

fn wrong(def: &Attr, v: &Value, context: &str) -> ScimError {
    let what = match def.ty {
        Ty::String | Ty::Reference | Ty::Binary => "a string",
        Ty::DateTime => "a date-time string",
        Ty::Boolean => "a boolean",
        Ty::Integer => "an integer",
        Ty::Decimal => "a number",
        Ty::Complex => "an object",
    };
    let prefix = if context.is_empty() {
        String::new()
    } else {
        format!("{context}:")
    };
    ScimError::invalid_value(format!("`{prefix}{}` must be {what}, not {v}", def.name))
}

fn normalize_single(def: &Attr, v: &Value, context: &str) -> Result<Option<Value>, ScimError> {
    if v.is_null() {
        return Ok(None);
    }
    let out = match def.ty {
        Ty::Complex => {
            let Value::Object(obj) = v else {
                return Err(wrong(def, v, context));
            };
            let mut out = Map::new();
            for (k, sv) in obj {
                if let Some(sd) = schema::find(def.sub, k)
                    && let Some(sv) = normalize_single(sd, sv, def.name)?
                {
                    out.insert(sd.name.to_owned(), sv);
                }
            }
            if out.is_empty() {
                return Ok(None);
            }
            Value::Object(out)
        }
        Ty::Boolean => match v {
            Value::Bool(_) => v.clone(),
            // Entra ID sends "True"/"False" strings for booleans.
            Value::String(s) if s.eq_ignore_ascii_case("true") => Value::Bool(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Value::Bool(false),
            _ => return Err(wrong(def, v, context)),
        },
        Ty::Integer => match v {
            Value::Number(n) if n.is_i64() || n.is_u64() => v.clone(),
            _ => return Err(wrong(def, v, context)),
        },
        Ty::Decimal => match v {
            Value::Number(_) => v.clone(),
            _ => return Err(wrong(def, v, context)),
        },
        Ty::DateTime => match v {
            Value::String(s) if chrono::DateTime::parse_from_rfc3339(s).is_ok() => v.clone(),
            _ => return Err(wrong(def, v, context)),
        },
        Ty::String | Ty::Reference | Ty::Binary => match v {
            Value::String(s) if s.is_empty() => return Ok(None),
            Value::String(_) => v.clone(),
            _ => return Err(wrong(def, v, context)),
        },
    };
    Ok(Some(out))
}

/// One entry of the mapping between a koppel account attribute and a SCIM path.
#[derive(Debug, Clone)]
pub struct MapEntry {
    pub attribute: String,
    pub path: PatchPath,
}

/// How koppel's flat account attributes appear in SCIM Users.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub entries: Vec<MapEntry>,
    /// The koppel attribute holding `userName`: looked up through the directory's index.
    pub user_name: String,
    /// The koppel attribute holding `displayName`, if mapped.
    pub display_name: Option<String>,
}

/// koppel attribute → SCIM path, the default mapping (names as the demo configuration and
/// the generators use them).
pub const DEFAULT_MAPPING: &[(&str, &str)] = &[
    ("username", "userName"),
    ("display_name", "displayName"),
    ("given_name", "name.givenName"),
    ("family_name", "name.familyName"),
    ("title", "title"),
    ("email", "emails[type eq \"work\"].value"),
    ("phone", "phoneNumbers[type eq \"work\"].value"),
    (
        "employee_id",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
    ),
    (
        "department",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
    ),
    (
        "cost_centre",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter",
    ),
];

impl Mapping {
    /// A mapping from (koppel attribute, SCIM path) pairs. `userName` must be mapped, each
    /// path must name a single-valued simple attribute (or a sub-attribute, or the
    /// sub-attribute of the elements a filter selects), and no path or attribute twice.
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Mapping, String> {
        let mut entries: Vec<MapEntry> = Vec::new();
        for (attribute, text) in pairs {
            let path = filter::parse_path(text).map_err(|e| format!("SCIM path `{text}`: {e}"))?;
            let kind = Kind::User;
            let Some(def) = kind.attr(path.attr.urn.as_deref(), &path.attr.name) else {
                return Err(format!("SCIM path `{text}`: no such User attribute"));
            };
            let leaf = match (&path.attr.sub, &path.sub, &path.filter) {
                (Some(sub), None, None) => schema::find(def.sub, sub),
                (None, Some(sub), Some(_)) => schema::find(def.sub, sub),
                (None, None, None) if def.ty != Ty::Complex => Some(def),
                _ => None,
            };
            let Some(leaf) = leaf else {
                return Err(format!(
                    "SCIM path `{text}`: map a simple attribute, a sub-attribute or \
                     `multi[filter].sub`"
                ));
            };
            if leaf.mutability == Mutability::ReadOnly
                || matches!(def.name, "id" | "meta" | "active" | "groups" | "password")
                || (def.multi && path.filter.is_none())
                || (def.name == "externalId")
            {
                return Err(format!("SCIM path `{text}` cannot be mapped"));
            }
            if let Some(f) = &path.filter {
                filter::validate_element(f, def).map_err(|e| format!("SCIM path `{text}`: {e}"))?;
            }
            if entries
                .iter()
                .any(|e| e.attribute == attribute || e.path == path)
            {
                return Err(format!("`{attribute}` = `{text}` is mapped twice"));
            }
            entries.push(MapEntry {
                attribute: attribute.to_owned(),
                path,
            });
        }
        let find = |name: &str| {
            entries
                .iter()
                .find(|e| {
                    e.path.attr.urn.is_none()
                        && e.path.attr.sub.is_none()
                        && e.path.filter.is_none()
                        && e.path.attr.name.eq_ignore_ascii_case(name)
                })
                .map(|e| e.attribute.clone())
        };
        let user_name = find("userName").ok_or("the mapping must map `userName`")?;
        let display_name = find("displayName");
        Ok(Mapping {
            entries,
            user_name,
            display_name,
        })
    }

    pub fn default_mapping() -> Mapping {
        match Mapping::new(DEFAULT_MAPPING.iter().copied()) {
            Ok(m) => m,
            // The default table is checked by a unit test.
            Err(e) => panic!("bug: the default SCIM mapping is invalid: {e}"),
        }
    }

    /// Sets every mapped path of `resource` from `attributes` (present: that value; absent:
    /// the path removed), so an account koppel made reads as a SCIM User and a koppel
    /// change shows through.
    pub fn overlay(&self, attributes: &Map<String, Value>, resource: &mut Map<String, Value>) {
        for e in &self.entries {
            let value = attributes.get(&e.attribute).and_then(scim_value);
            set_path(resource, &e.path, value);
        }
    }

    /// The koppel attributes the mapped paths of `resource` give, and `resource` without
    /// them (what is kept as SCIM-only data).
    pub fn extract(
        &self,
        resource: &Map<String, Value>,
    ) -> (Map<String, Value>, Map<String, Value>) {
        let mut attributes = Map::new();
        let mut rest = resource.clone();
        for e in &self.entries {
            if let Some(v) = get_path(resource, &e.path).and_then(attr_value) {
                attributes.insert(e.attribute.clone(), v);
            }
            set_path(&mut rest, &e.path, None);
        }
        (attributes, rest)
    }
}

/// A koppel attribute value (null, bool, integer, string, list of strings) as a SCIM value.
fn scim_value(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::Array(items) => items.first().cloned(),
        other => Some(other.clone()),
    }
}

/// A SCIM value as a koppel attribute value; `None` for what koppel cannot hold.
fn attr_value(v: &Value) -> Option<Value> {
    match v {
        Value::String(s) if s.is_empty() => None,
        Value::String(_) | Value::Bool(_) => Some(v.clone()),
        Value::Number(n) if n.is_i64() => Some(v.clone()),
        Value::Number(n) => Some(Value::String(n.to_string())),
        _ => None,
    }
}

/// The object that holds top-level attribute `path.attr` (the resource, or an extension).
fn holder<'a>(
    resource: &'a mut Map<String, Value>,
    attr: &AttrPath,
    create: bool,
) -> Option<&'a mut Map<String, Value>> {
    match &attr.urn {
        Some(urn) if !urn.eq_ignore_ascii_case(schema::USER) => {
            let urn = Kind::User.extension(urn)?;
            if create && !resource.contains_key(urn) {
                resource.insert(urn.to_owned(), Value::Object(Map::new()));
            }
            resource.get_mut(urn)?.as_object_mut()
        }
        _ => Some(resource),
    }
}

fn canonical_name(attr: &AttrPath) -> String {
    Kind::User
        .attr(attr.urn.as_deref(), &attr.name)
        .map_or_else(|| attr.name.clone(), |d| d.name.to_owned())
}

fn canonical_sub(attr: &AttrPath, sub: &str) -> String {
    Kind::User
        .attr(attr.urn.as_deref(), &attr.name)
        .and_then(|d| schema::find(d.sub, sub))
        .map_or_else(|| sub.to_owned(), |d| d.name.to_owned())
}

/// The value at a mapping path.
fn get_path<'a>(resource: &'a Map<String, Value>, path: &PatchPath) -> Option<&'a Value> {
    let obj = match &path.attr.urn {
        Some(urn) if !urn.eq_ignore_ascii_case(schema::USER) => {
            get_ci(resource, urn)?.as_object()?
        }
        _ => resource,
    };
    let top = get_ci(obj, &path.attr.name)?;
    match (&path.attr.sub, &path.filter, &path.sub) {
        (Some(sub), _, _) => get_ci(top.as_object()?, sub),
        (None, Some(f), Some(sub)) => {
            let def = Kind::User.attr(path.attr.urn.as_deref(), &path.attr.name)?;
            let element = top
                .as_array()?
                .iter()
                .filter_map(Value::as_object)
                .find(|e| filter::matches_element(f, e, def))?;
            get_ci(element, sub)
        }
        _ => Some(top),
    }
}

/// Sets (or with `None` removes) the value at a mapping path.
fn set_path(resource: &mut Map<String, Value>, path: &PatchPath, value: Option<Value>) {
    let name = canonical_name(&path.attr);
    let create = value.is_some();
    let urn = path.attr.urn.clone();
    {
        let Some(obj) = holder(resource, &path.attr, create) else {
            return;
        };
        match (&path.attr.sub, &path.filter, &path.sub) {
            (Some(sub), _, _) => {
                let sub = canonical_sub(&path.attr, sub);
                match value {
                    Some(v) => {
                        let entry = obj
                            .entry(name.clone())
                            .or_insert_with(|| Value::Object(Map::new()));
                        if !entry.is_object() {
                            *entry = Value::Object(Map::new());
                        }
                        if let Some(o) = entry.as_object_mut() {
                            o.insert(sub, v);
                        }
                    }
                    None => {
                        if let Some(o) = obj.get_mut(&name).and_then(Value::as_object_mut) {
                            o.remove(&sub);
                            if o.is_empty() {
                                obj.remove(&name);
                            }
                        }
                    }
                }
            }
            (None, Some(f), Some(sub)) => {
                let sub = canonical_sub(&path.attr, sub);
                let Some(def) = Kind::User.attr(path.attr.urn.as_deref(), &path.attr.name) else {
                    return;
                };
                let items = obj
                    .entry(name.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if !items.is_array() {
                    *items = Value::Array(Vec::new());
                }
                let Some(items) = items.as_array_mut() else {
                    return;
                };
                let found = items.iter().position(|e| {
                    e.as_object()
                        .is_some_and(|e| filter::matches_element(f, e, def))
                });
                match (found, value) {
                    (Some(i), Some(v)) => {
                        if let Some(e) = items[i].as_object_mut() {
                            e.insert(sub, v);
                        }
                    }
                    (None, Some(v)) => {
                        let mut element = element_from_filter(f, def);
                        element.insert(sub, v);
                        items.push(Value::Object(element));
                    }
                    (Some(i), None) => {
                        // The value goes; the element too when nothing but what the filter
                        // names is left of it (`{"type": "work"}`), so `display` or
                        // `primary` a client gave survive the split into koppel's attribute.
                        let implied = element_from_filter(f, def);
                        let bare = items[i].as_object_mut().is_none_or(|e| {
                            e.remove(&sub);
                            e.iter().all(|(k, v)| implied.get(k) == Some(v))
                        });
                        if bare {
                            items.remove(i);
                        }
                    }
                    (None, None) => {}
                }
                if items.is_empty() {
                    obj.remove(&name);
                }
            }
            _ => match value {
                Some(v) => {
                    obj.insert(name, v);
                }
                None => {
                    obj.remove(&name);
                }
            },
        }
    }
    // An extension left empty goes.
    if let Some(urn) = urn
        && let Some(urn) = Kind::User.extension(&urn)
        && resource
            .get(urn)
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
    {
        resource.remove(urn);
    }
}

/// The element a value filter describes: the `eq` comparisons of its `and` chain
/// (`type eq "work"` gives `{"type": "work"}`).
pub fn element_from_filter(f: &Filter, parent: &Attr) -> Map<String, Value> {
    let mut out = Map::new();
    fn walk(f: &Filter, parent: &Attr, out: &mut Map<String, Value>) {
        match f {
            Filter::And(a, b) => {
                walk(a, parent, out);
                walk(b, parent, out);
            }
            Filter::Compare(p, CompareOp::Eq, lit) => {
                let name = schema::find(parent.sub, &p.name)
                    .map_or_else(|| p.name.clone(), |d| d.name.to_owned());
                let v = match lit {
                    Literal::Str(s) => Value::String(s.clone()),
                    Literal::Bool(b) => Value::Bool(*b),
                    Literal::Number(n) => Value::Number(n.clone()),
                    Literal::Null => return,
                };
                out.insert(name, v);
            }
            _ => {}
        }
    }
    walk(f, parent, &mut out);
    out
}

/// Applies `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5) to a rendered resource.
/// `id` and `schemas` are always returned.
pub fn project(
    resource: &mut Map<String, Value>,
    kind: Kind,
    attributes: &[AttrPath],
    excluded: &[AttrPath],
) {
    if !attributes.is_empty() {
        let core: Vec<&AttrPath> = attributes
            .iter()
            .filter(|p| {
                p.urn
                    .as_deref()
                    .is_none_or(|u| u.eq_ignore_ascii_case(kind.core()))
            })
            .collect();
        let keys: Vec<String> = resource.keys().cloned().collect();
        for key in keys {
            if key == "schemas" || key == "id" {
                continue;
            }
            if let Some(urn) = kind.extension(&key) {
                let wanted: Vec<&AttrPath> = attributes
                    .iter()
                    .filter(|p| {
                        p.urn
                            .as_deref()
                            .is_some_and(|u| u.eq_ignore_ascii_case(urn))
                    })
                    .collect();
                if wanted.iter().any(|p| p.name.is_empty()) {
                    continue;
                }
                let keep = match resource.get_mut(&key).and_then(Value::as_object_mut) {
                    Some(ext) => {
                        project_level(ext, &wanted, kind, Some(urn));
                        !ext.is_empty()
                    }
                    None => false,
                };
                if !keep {
                    resource.remove(&key);
                }
                continue;
            }
            project_key(resource, &key, &core, kind, None);
        }
    }
    for p in excluded {
        let ext = p
            .urn
            .as_deref()
            .filter(|u| !u.eq_ignore_ascii_case(kind.core()))
            .and_then(|u| kind.extension(u));
        if let Some(urn) = ext
            && p.name.is_empty()
        {
            resource.remove(urn);
            continue;
        }
        let Some(def) = kind.attr(ext, &p.name) else {
            continue;
        };
        if def.returned == Returned::Always {
            continue;
        }
        let obj = match ext {
            Some(urn) => match resource.get_mut(urn).and_then(Value::as_object_mut) {
                Some(o) => o,
                None => continue,
            },
            None => &mut *resource,
        };
        match &p.sub {
            None => {
                obj.remove(def.name);
            }
            Some(sub) => {
                let sub = schema::find(def.sub, sub).map_or(sub.as_str(), |d| d.name);
                match obj.get_mut(def.name) {
                    Some(Value::Object(o)) => {
                        o.remove(sub);
                    }
                    Some(Value::Array(items)) => {
                        for item in items.iter_mut().filter_map(Value::as_object_mut) {
                            item.remove(sub);
                        }
                    }
                    _ => {}
                }
            }
        }
        if let Some(urn) = ext
            && resource
                .get(urn)
                .and_then(Value::as_object)
                .is_some_and(Map::is_empty)
        {
            resource.remove(urn);
        }
    }
}

fn project_level(
    obj: &mut Map<String, Value>,
    wanted: &[&AttrPath],
    kind: Kind,
    urn: Option<&str>,
) {
    let keys: Vec<String> = obj.keys().cloned().collect();
    for key in keys {
        project_key(obj, &key, wanted, kind, urn);
    }
}

/// Keeps attribute `key` of `obj` (of schema `urn`, `None`: the core) as far as the paths
/// `wanted` ask for it: whole, some of its sub-attributes, or (unless always returned) not.
fn project_key(
    obj: &mut Map<String, Value>,
    key: &str,
    wanted: &[&AttrPath],
    kind: Kind,
    urn: Option<&str>,
) {
    let here: Vec<&AttrPath> = wanted
        .iter()
        .copied()
        .filter(|p| p.name.eq_ignore_ascii_case(key))
        .collect();
    if here.is_empty() {
        let always = kind
            .attr(urn, key)
            .is_some_and(|d| d.returned == Returned::Always);
        if !always {
            obj.remove(key);
        }
    } else if here.iter().all(|p| p.sub.is_some())
        && let Some(v) = obj.get_mut(key)
    {
        keep_subs(v, &here);
    }
}

fn keep_subs(v: &mut Value, wanted: &[&AttrPath]) {
    let keep = |o: &mut Map<String, Value>| {
        o.retain(|k, _| {
            wanted
                .iter()
                .any(|p| p.sub.as_deref().is_some_and(|s| s.eq_ignore_ascii_case(k)))
        });
    };
    match v {
        Value::Object(o) => keep(o),
        Value::Array(items) => {
            for item in items.iter_mut().filter_map(Value::as_object_mut) {
                keep(item);
            }
            items.retain(|i| !i.as_object().is_some_and(Map::is_empty));
        }
        _ => {}
    }
}

/// The value a resource sorts by (RFC 7644 §3.4.2.3): for a multi-valued attribute the
/// primary value, else the first.
pub fn sort_value<'a>(
    obj: &'a Map<String, Value>,
    kind: Kind,
    path: &AttrPath,
) -> Option<&'a Value> {
    let top = match &path.urn {
        Some(urn) if !urn.eq_ignore_ascii_case(kind.core()) => {
            get_ci(get_ci(obj, urn)?.as_object()?, &path.name)?
        }
        _ => get_ci(obj, &path.name)?,
    };
    let def = kind.attr(path.urn.as_deref(), &path.name);
    let element = match top {
        Value::Array(items) => items
            .iter()
            .find(|i| {
                i.as_object()
                    .and_then(|o| get_ci(o, "primary"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            })
            .or_else(|| items.first())?,
        other => other,
    };
    let sub = path
        .sub
        .as_deref()
        .or_else(|| def.filter(|d| d.ty == Ty::Complex).map(|_| "value"));
    match sub {
        Some(sub) => get_ci(element.as_object()?, sub),
        None => Some(element),
    }
}

/// Orders two sort values; strings case-insensitively unless the attribute is case-exact.
pub fn compare_sort(a: Option<&Value>, b: Option<&Value>, case_exact: bool) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        // Unassigned values sort last in ascending order.
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(Value::String(x)), Some(Value::String(y))) => {
            if case_exact {
                x.cmp(y)
            } else {
                x.to_lowercase().cmp(&y.to_lowercase())
            }
        }
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (Some(x), Some(y)) => x.to_string().cmp(&y.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(o) => o,
            _ => Map::new(),
        }
    }

    #[test]
    fn default_mapping_is_valid_and_round_trips() {
        let m = Mapping::default_mapping();
        assert_eq!(m.user_name, "username");
        assert_eq!(m.display_name.as_deref(), Some("display_name"));
        let user = obj(json!({
            "userName": "bjensen",
            "name": { "givenName": "Barbara", "middleName": "J" },
            "emails": [
                { "value": "home@example", "type": "home" },
                { "value": "work@example", "type": "work", "primary": true, "display": "Work" }
            ],
            (crate::schema::ENTERPRISE): { "employeeNumber": "7", "division": "D" },
        }));
        let (attributes, rest) = m.extract(&user);
        assert_eq!(
            Value::Object(attributes.clone()),
            json!({ "username": "bjensen", "given_name": "Barbara", "email": "work@example",
                    "employee_id": "7" })
        );
        // What koppel holds is not kept twice; what it does not hold is.
        assert!(rest.get("userName").is_none());
        assert_eq!(rest["name"], json!({ "middleName": "J" }));
        assert_eq!(
            rest["emails"][1],
            json!({ "type": "work", "primary": true, "display": "Work" })
        );
        let mut back = rest.clone();
        m.overlay(&attributes, &mut back);
        assert_eq!(back, user);
        // koppel removing an attribute removes the path, and a bare element with it.
        let mut attributes = attributes;
        attributes.remove("email");
        attributes.remove("employee_id");
        let mut back = rest;
        m.overlay(&attributes, &mut back);
        assert_eq!(
            back["emails"][1],
            json!({ "type": "work", "primary": true, "display": "Work" })
        );
        assert_eq!(back[crate::schema::ENTERPRISE], json!({ "division": "D" }));
    }

    #[test]
    fn bad_mappings_are_refused() {
        for pairs in [
            vec![("display_name", "displayName")],
            vec![("username", "userName"), ("x", "emails")],
            vec![("username", "userName"), ("x", "groups[value pr].value")],
            vec![("username", "userName"), ("x", "nosuch")],
            vec![("username", "userName"), ("x", "userName")],
            vec![("username", "userName"), ("x", "name")],
        ] {
            assert!(Mapping::new(pairs.clone()).is_err(), "{pairs:?}");
        }
    }

    #[test]
    fn normalize_checks_types_and_drops_read_only() {
        let v = normalize(
            Kind::User,
            &json!({ "USERNAME": "x", "id": "mine", "meta": {}, "groups": [{"value": "1"}],
                     "unknown": 1, "Active": "True", "emails": {"value": "a@b"} }),
        )
        .unwrap_or_default();
        assert_eq!(
            Value::Object(v),
            json!({ "userName": "x", "active": true, "emails": [{ "value": "a@b" }] })
        );
        assert!(normalize(Kind::User, &json!({ "userName": 5 })).is_err());
        assert!(normalize(Kind::User, &json!({ "name": "flat" })).is_err());
        assert!(normalize(Kind::Group, &json!({ "members": [{ "value": true }] })).is_err());
    }
}
