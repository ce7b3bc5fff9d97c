//! koppel account attribute names as SCIM attribute paths: parsing, building a resource from
//! them, flattening a resource back into them, and PATCH paths and filters for them.
//!
//! The scheme (one canonical spelling per attribute, so writes and reads compare like with like):
//!
//! | account attribute | SCIM |
//! | --- | --- |
//! | `userName`, `displayName`, `title`, `externalId`, … | a core attribute |
//! | `name.givenName`, `name.familyName` | a sub-attribute of a complex core attribute |
//! | `emails[type eq "work"].value`, `phoneNumbers[type eq "mobile"].value`, `addresses[type eq "work"].locality` | a sub-attribute of the element of a multi-valued attribute with that `type` |
//! | `enterprise.employeeNumber`, `enterprise.department`, `enterprise.manager.value` | the enterprise extension (`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User`) |
//! | `urn:<other extension>:<attribute>[.<sub>]` | another extension, by its full URN |
//!
//! The enterprise extension is always spelled `enterprise.`; its full-URN spelling is refused
//! with a message naming the canonical one. `id`, `meta`, `schemas`, `active` (the enabled
//! state), `groups` (the permissions) and `password` are not account attributes.

use std::collections::BTreeMap;

use koppel_core::AttrValue;
use serde_json::{Map, Value, json};

pub const CORE_USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const CORE_GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const ENTERPRISE_PREFIX: &str = "enterprise.";

/// Top-level keys that are not account attributes.
const RESERVED: &[&str] = &["id", "meta", "schemas", "active", "groups", "password"];

/// One parsed account attribute name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    /// `None` for the core schema, else the extension's URN.
    pub schema: Option<String>,
    pub attr: String,
    /// The `type` of the multi-valued element: `[type eq "work"]`.
    pub type_filter: Option<String>,
    pub sub: Option<String>,
}

fn is_attr_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
}

fn is_type_value(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

impl AttrPath {
    /// Parses any accepted spelling (the canonical one, or a full enterprise URN).
    pub fn parse(name: &str) -> Result<AttrPath, String> {
        let bad = |why: &str| format!("{name:?} is not a SCIM attribute path: {why}");
        let (schema, rest) = if let Some(rest) = name.strip_prefix(ENTERPRISE_PREFIX) {
            (Some(ENTERPRISE.to_owned()), rest)
        } else if name.starts_with("urn:") {
            let head = name.split('[').next().unwrap_or(name);
            let colon = head
                .rfind(':')
                .ok_or_else(|| bad("no attribute after the URN"))?;
            (Some(name[..colon].to_owned()), &name[colon + 1..])
        } else {
            (None, name)
        };
        let (attr, type_filter, tail) = match rest.split_once('[') {
            Some((attr, after)) => {
                let inner = after
                    .strip_prefix("type eq \"")
                    .and_then(|a| a.split_once("\"]"))
                    .ok_or_else(|| bad("the only element filter is [type eq \"…\"]"))?;
                if !is_type_value(inner.0) {
                    return Err(bad("the type is letters, digits, '-', '_' and '.'"));
                }
                let tail = inner.1;
                if !tail.starts_with('.') {
                    return Err(bad(
                        "[type eq \"…\"] needs a sub-attribute after it, e.g. .value",
                    ));
                }
                (attr, Some(inner.0.to_owned()), tail)
            }
            None => match rest.find('.') {
                Some(dot) => (&rest[..dot], None, &rest[dot..]),
                None => (rest, None, ""),
            },
        };
        let sub = match tail.strip_prefix('.') {
            Some(s) => Some(s.to_owned()),
            None if tail.is_empty() => None,
            None => return Err(bad("unexpected text after the attribute")),
        };
        if !is_attr_name(attr) {
            return Err(bad("attribute names are letters, digits, '-' and '_'"));
        }
        if let Some(s) = &sub
            && !is_attr_name(s)
        {
            return Err(bad("one level of sub-attribute, e.g. name.givenName"));
        }
        if schema.is_none() && RESERVED.iter().any(|r| r.eq_ignore_ascii_case(attr)) {
            return Err(bad(
                "id, meta, schemas, active, groups and password are not account attributes",
            ));
        }
        Ok(AttrPath {
            schema,
            attr: attr.to_owned(),
            type_filter,
            sub,
        })
    }

    /// Parses a name and insists on its canonical spelling, so reads give the same name back.
    pub fn parse_canonical(name: &str) -> Result<AttrPath, String> {
        let path = AttrPath::parse(name)?;
        let canonical = path.canonical();
        if canonical != name {
            return Err(format!(
                "write the attribute {name:?} as {canonical:?}: koppel reads it back under that name"
            ));
        }
        Ok(path)
    }

    /// The account attribute name.
    pub fn canonical(&self) -> String {
        let prefix = match self.schema.as_deref() {
            None => String::new(),
            Some(ENTERPRISE) => ENTERPRISE_PREFIX.to_owned(),
            Some(urn) => format!("{urn}:"),
        };
        format!("{prefix}{}", self.local())
    }

    /// The path inside its schema: `emails[type eq "work"].value`.
    fn local(&self) -> String {
        let mut s = self.attr.clone();
        if let Some(t) = &self.type_filter {
            s.push_str(&format!("[type eq \"{t}\"]"));
        }
        if let Some(sub) = &self.sub {
            s.push('.');
            s.push_str(sub);
        }
        s
    }

    /// The attribute path with its schema URN, as PATCH and filters take it.
    fn scim_prefix(&self) -> String {
        match &self.schema {
            None => String::new(),
            Some(urn) => format!("{urn}:"),
        }
    }

    /// The PATCH path of this attribute.
    pub fn patch_path(&self) -> String {
        format!("{}{}", self.scim_prefix(), self.local())
    }

    /// A filter matching resources where this attribute equals `value`.
    pub fn filter_eq(&self, value: &str) -> String {
        let v = filter_string(value);
        let p = self.scim_prefix();
        match (&self.type_filter, &self.sub) {
            (Some(t), Some(sub)) => format!("{p}{}[type eq \"{t}\" and {sub} eq {v}]", self.attr),
            (_, Some(sub)) => format!("{p}{}.{sub} eq {v}", self.attr),
            _ => format!("{p}{} eq {v}", self.attr),
        }
    }

    /// This attribute's value in a resource, flattened like [`flatten`] does.
    pub fn value_in(&self, resource: &Value) -> AttrValue {
        flatten(resource)
            .remove(&self.canonical())
            .unwrap_or_default()
    }

    /// Whether the multi-valued element this path addresses exists in `resource`.
    fn element_exists(&self, resource: &Value) -> bool {
        let Some(t) = &self.type_filter else {
            return false;
        };
        container(resource, self.schema.as_deref())
            .and_then(|c| c.get(&self.attr))
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|e| type_of(e) == Some(t)))
    }
}

/// A value as a SCIM filter `compValue`: a JSON string (RFC 7644 §3.4.2.2), so quotes,
/// backslashes and control characters are escaped the JSON way.
pub fn filter_string(value: &str) -> String {
    Value::String(value.to_owned()).to_string()
}

fn to_json(value: &AttrValue) -> Option<Value> {
    match value {
        AttrValue::Null => None,
        AttrValue::Bool(b) => Some(Value::Bool(*b)),
        AttrValue::Int(i) => Some(json!(i)),
        AttrValue::Text(s) if s.is_empty() => None,
        AttrValue::Text(s) => Some(Value::String(s.clone())),
        AttrValue::List(l) if l.is_empty() => None,
        AttrValue::List(l) => Some(json!(l)),
    }
}

fn type_of(element: &Value) -> Option<&str> {
    element.get("type").and_then(Value::as_str)
}

fn container<'a>(resource: &'a Value, schema: Option<&str>) -> Option<&'a Map<String, Value>> {
    match schema {
        None => resource.as_object(),
        Some(urn) => resource.get(urn)?.as_object(),
    }
}

/// Sets (or with `Null`, removes) one attribute in a resource.
pub fn set(resource: &mut Value, path: &AttrPath, value: &AttrValue) {
    let value = to_json(value);
    let Some(root) = resource.as_object_mut() else {
        return;
    };
    if let Some(urn) = &path.schema {
        if value.is_none() && !root.contains_key(urn) {
            return;
        }
        if !root.contains_key(urn) {
            root.insert(urn.clone(), Value::Object(Map::new()));
            let schemas = root.entry("schemas").or_insert_with(|| json!([CORE_USER]));
            if let Some(list) = schemas.as_array_mut()
                && !list.iter().any(|s| s.as_str() == Some(urn))
            {
                list.push(Value::String(urn.clone()));
            }
        }
    }
    let obj = match &path.schema {
        None => root,
        Some(urn) => match root.get_mut(urn).and_then(Value::as_object_mut) {
            Some(o) => o,
            None => return,
        },
    };
    match (&path.type_filter, &path.sub) {
        (None, None) => match value {
            Some(v) => {
                obj.insert(path.attr.clone(), v);
            }
            None => {
                obj.remove(&path.attr);
            }
        },
        (None, Some(sub)) => {
            let entry = obj
                .entry(path.attr.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            if let Some(o) = entry.as_object_mut() {
                match value {
                    Some(v) => {
                        o.insert(sub.clone(), v);
                    }
                    None => {
                        o.remove(sub);
                    }
                }
                if o.is_empty() {
                    obj.remove(&path.attr);
                }
            }
        }
        (Some(t), sub) => {
            let sub = sub.clone().unwrap_or_else(|| "value".to_owned());
            let entry = obj
                .entry(path.attr.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            if !entry.is_array() {
                *entry = Value::Array(Vec::new());
            }
            if let Some(list) = entry.as_array_mut() {
                let index = list.iter().position(|e| type_of(e) == Some(t.as_str()));
                match (value, index) {
                    (Some(v), Some(i)) => {
                        if let Some(o) = list[i].as_object_mut() {
                            o.insert(sub, v);
                        }
                    }
                    (Some(v), None) => {
                        let mut o = Map::new();
                        o.insert("type".into(), Value::String(t.clone()));
                        o.insert(sub, v);
                        list.push(Value::Object(o));
                    }
                    // Clearing the value clears the element; another sub-attribute just goes.
                    (None, Some(i)) if sub == "value" => {
                        list.remove(i);
                    }
                    (None, Some(i)) => {
                        if let Some(o) = list[i].as_object_mut() {
                            o.remove(&sub);
                        }
                    }
                    (None, None) => {}
                }
                if list.is_empty() {
                    obj.remove(&path.attr);
                }
            }
        }
    }
}

/// A new user resource with these attributes (names already checked).
pub fn build_user(attributes: &[(AttrPath, AttrValue)], active: bool) -> Value {
    let mut user = json!({ "schemas": [CORE_USER] });
    for (path, value) in attributes {
        set(&mut user, path, value);
    }
    if let Some(o) = user.as_object_mut() {
        o.insert("active".into(), Value::Bool(active));
    }
    user
}

/// A resource's account attributes under their canonical names.
pub fn flatten(resource: &Value) -> BTreeMap<String, AttrValue> {
    let mut out = BTreeMap::new();
    let Some(root) = resource.as_object() else {
        return out;
    };
    for (key, value) in root {
        if key.starts_with("urn:") {
            let prefix = if key.eq_ignore_ascii_case(ENTERPRISE) {
                ENTERPRISE_PREFIX.to_owned()
            } else {
                format!("{key}:")
            };
            if let Some(ext) = value.as_object() {
                for (k, v) in ext {
                    flatten_attr(&mut out, &prefix, k, v);
                }
            }
        } else if !RESERVED.contains(&key.as_str()) {
            flatten_attr(&mut out, "", key, value);
        }
    }
    out
}

fn scalar(v: &Value) -> Option<AttrValue> {
    match v {
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(AttrValue::Text(s.clone())),
        Value::Bool(b) => Some(AttrValue::Bool(*b)),
        Value::Number(n) => Some(match n.as_i64() {
            Some(i) => AttrValue::Int(i),
            None => AttrValue::Text(n.to_string()),
        }),
        _ => None,
    }
}

fn flatten_attr(out: &mut BTreeMap<String, AttrValue>, prefix: &str, key: &str, value: &Value) {
    match value {
        Value::Object(o) => {
            for (sub, v) in o {
                if let Some(s) = scalar(v) {
                    out.insert(format!("{prefix}{key}.{sub}"), s);
                }
            }
        }
        Value::Array(items) => {
            if items.iter().all(Value::is_string) {
                let list: Vec<String> = items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect();
                if !list.is_empty() {
                    out.insert(format!("{prefix}{key}"), AttrValue::List(list));
                }
                return;
            }
            for item in items {
                let (Some(t), Some(o)) = (type_of(item), item.as_object()) else {
                    continue;
                };
                for (sub, v) in o {
                    if sub == "type" {
                        continue;
                    }
                    let name = format!("{prefix}{key}[type eq \"{t}\"].{sub}");
                    if let Some(s) = scalar(v) {
                        out.entry(name).or_insert(s);
                    }
                }
            }
        }
        v => {
            if let Some(s) = scalar(v) {
                out.insert(format!("{prefix}{key}"), s);
            }
        }
    }
}

/// How PATCH operations are spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchStyle {
    /// RFC 7644 §3.5.2.
    Rfc,
    /// Entra ID's provisioning service (see `Compat::entra_patch`).
    Entra,
}

impl PatchStyle {
    pub fn op(self, name: &str) -> String {
        match self {
            PatchStyle::Rfc => name.to_owned(),
            PatchStyle::Entra => {
                let mut c = name.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            }
        }
    }

    /// A value as this style sends it: Entra sends booleans as "True"/"False".
    pub fn value(self, v: Value) -> Value {
        match (self, v) {
            (PatchStyle::Entra, Value::Bool(b)) => {
                Value::String(if b { "True" } else { "False" }.to_owned())
            }
            (_, v) => v,
        }
    }
}

/// PATCH operations bringing `changes` about. `current` is the resource as read, needed
/// only when a change addresses a multi-valued element (`replace` on a missing element is an
/// error in RFC 7644, so a missing one is added instead).
pub fn patch_ops(
    changes: &[(AttrPath, AttrValue)],
    current: Option<&Value>,
    style: PatchStyle,
) -> Vec<Value> {
    let mut ops = Vec::new();
    let mut entra_replace = Map::new();
    // New multi-valued elements, one per (schema, attribute, type), sub-attributes merged.
    let mut new_elements: BTreeMap<(String, String), Map<String, Value>> = BTreeMap::new();
    for (path, value) in changes {
        match to_json(value) {
            None => {
                let mut p = path.clone();
                if p.type_filter.is_some() && p.sub.as_deref() == Some("value") {
                    p.sub = None;
                }
                ops.push(json!({ "op": style.op("remove"), "path": p.patch_path() }));
            }
            Some(v) => {
                if let Some(t) = &path.type_filter
                    && !current.is_some_and(|c| path.element_exists(c))
                {
                    let key = (format!("{}{}", path.scim_prefix(), path.attr), t.clone());
                    let e = new_elements.entry(key).or_insert_with(|| {
                        let mut m = Map::new();
                        m.insert("type".into(), Value::String(t.clone()));
                        m
                    });
                    e.insert(
                        path.sub.clone().unwrap_or_else(|| "value".into()),
                        style.value(v),
                    );
                    continue;
                }
                if style == PatchStyle::Entra && path.type_filter.is_none() {
                    entra_replace.insert(path.patch_path(), style.value(v));
                } else {
                    ops.push(json!({
                        "op": style.op("replace"),
                        "path": path.patch_path(),
                        "value": style.value(v),
                    }));
                }
            }
        }
    }
    if !entra_replace.is_empty() {
        ops.push(json!({ "op": style.op("replace"), "value": entra_replace }));
    }
    for ((attr, _), element) in new_elements {
        ops.push(json!({
            "op": style.op("add"),
            "path": attr,
            "value": [Value::Object(element)],
        }));
    }
    ops
}

/// A PATCH request body.
pub fn patch_body(ops: Vec<Value>) -> Value {
    json!({ "schemas": [PATCH_OP], "Operations": ops })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> AttrPath {
        AttrPath::parse(s).expect(s)
    }

    #[test]
    fn parses_the_scheme() {
        assert_eq!(p("userName").canonical(), "userName");
        let n = p("name.givenName");
        assert_eq!(
            (n.attr.as_str(), n.sub.as_deref()),
            ("name", Some("givenName"))
        );
        let e = p("emails[type eq \"work\"].value");
        assert_eq!(e.type_filter.as_deref(), Some("work"));
        assert_eq!(e.patch_path(), "emails[type eq \"work\"].value");
        let x = p("enterprise.employeeNumber");
        assert_eq!(x.schema.as_deref(), Some(ENTERPRISE));
        assert_eq!(x.patch_path(), format!("{ENTERPRISE}:employeeNumber"));
        let m = p(&format!("{ENTERPRISE}:manager.value"));
        assert_eq!(m.canonical(), "enterprise.manager.value");
        assert!(AttrPath::parse_canonical(&format!("{ENTERPRISE}:manager.value")).is_err());
        let o = p("urn:example:ext:2.0:User:badge");
        assert_eq!(o.canonical(), "urn:example:ext:2.0:User:badge");
        for bad in [
            "",
            "a b",
            "emails[value eq \"x\"].value",
            "emails[type eq \"w\"]",
            "a.b.c",
            "active",
            "id",
            "name.",
        ] {
            assert!(AttrPath::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn filter_values_are_json_strings() {
        assert_eq!(
            p("userName").filter_eq("O\"Brien \\ x"),
            r#"userName eq "O\"Brien \\ x""#
        );
        assert_eq!(
            p("emails[type eq \"work\"].value").filter_eq("a@b"),
            r#"emails[type eq "work" and value eq "a@b"]"#
        );
        assert_eq!(
            p("enterprise.employeeNumber").filter_eq("1"),
            format!("{ENTERPRISE}:employeeNumber eq \"1\"")
        );
        assert_eq!(filter_string("a\nb"), r#""a\nb""#);
    }

    #[test]
    fn build_and_flatten_round_trip() {
        let attrs: Vec<(AttrPath, AttrValue)> = [
            ("userName", "anna"),
            ("name.givenName", "Anna"),
            ("emails[type eq \"work\"].value", "anna@x"),
            ("enterprise.employeeNumber", "42"),
            ("enterprise.manager.value", "m-1"),
        ]
        .into_iter()
        .map(|(k, v)| (p(k), AttrValue::Text(v.into())))
        .collect();
        let user = build_user(&attrs, true);
        assert_eq!(user["schemas"], json!([CORE_USER, ENTERPRISE]));
        assert_eq!(user["emails"], json!([{"type": "work", "value": "anna@x"}]));
        let flat = flatten(&user);
        for (path, value) in &attrs {
            assert_eq!(
                flat.get(&path.canonical()),
                Some(value),
                "{}",
                path.canonical()
            );
        }
        assert!(!flat.contains_key("active"));
        let mut user = user;
        set(
            &mut user,
            &p("emails[type eq \"work\"].value"),
            &AttrValue::Null,
        );
        assert!(user.get("emails").is_none());
    }

    #[test]
    fn patch_ops_add_missing_elements_and_remove_whole_ones() {
        let changes = vec![
            (p("title"), AttrValue::Text("T".into())),
            (
                p("emails[type eq \"work\"].value"),
                AttrValue::Text("a@x".into()),
            ),
            (p("phoneNumbers[type eq \"work\"].value"), AttrValue::Null),
        ];
        let ops = patch_ops(&changes, Some(&json!({})), PatchStyle::Rfc);
        assert_eq!(
            ops,
            vec![
                json!({"op": "replace", "path": "title", "value": "T"}),
                json!({"op": "remove", "path": "phoneNumbers[type eq \"work\"]"}),
                json!({"op": "add", "path": "emails", "value": [{"type": "work", "value": "a@x"}]}),
            ]
        );
        let current = json!({"emails": [{"type": "work", "value": "old"}]});
        let ops = patch_ops(&changes[1..2], Some(&current), PatchStyle::Rfc);
        assert_eq!(ops[0]["op"], "replace");
        let entra = patch_ops(
            &[
                (p("title"), AttrValue::Text("T".into())),
                (p("enterprise.department"), AttrValue::Bool(false)),
            ],
            None,
            PatchStyle::Entra,
        );
        assert_eq!(
            entra,
            vec![
                json!({"op": "Replace", "value": {"title": "T", format!("{ENTERPRISE}:department"): "False"}})
            ]
        );
    }
}
