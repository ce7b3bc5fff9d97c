//! PATCH (RFC 7644 §3.5.2): parsing a PatchOp request and applying its operations, in
//! order and all or nothing, to a resource's JSON.

use serde_json::{Map, Value};

use crate::error::ScimError;
use crate::filter::{self, AttrPath, Filter, PatchPath, get_ci};
use crate::resource::{element_from_filter, normalize_value};
use crate::schema::{self, Attr, Kind, Mutability, Ty};

/// Most operations one PATCH request may carry.
pub const MAX_OPERATIONS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Remove,
    Replace,
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub op: OpKind,
    pub path: Option<PatchPath>,
    pub value: Option<Value>,
}

/// The operations of a PatchOp request body.
pub fn parse_request(body: &Value) -> Result<Vec<Operation>, ScimError> {
    let Value::Object(obj) = body else {
        return Err(ScimError::invalid_syntax("a PATCH body is a JSON object"));
    };
    let schemas_ok = get_ci(obj, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| {
            s.iter().any(|u| {
                u.as_str()
                    .is_some_and(|u| u.eq_ignore_ascii_case(schema::PATCH_OP))
            })
        });
    if !schemas_ok {
        return Err(ScimError::invalid_syntax(format!(
            "a PATCH body has `schemas: [\"{}\"]`",
            schema::PATCH_OP
        )));
    }
    let Some(Value::Array(ops)) = get_ci(obj, "Operations") else {
        return Err(ScimError::invalid_syntax(
            "a PATCH body has an `Operations` array",
        ));
    };
    if ops.len() > MAX_OPERATIONS {
        return Err(ScimError::too_many(format!(
            "at most {MAX_OPERATIONS} operations per PATCH"
        )));
    }
    ops.iter()
        .enumerate()
        .map(|(i, op)| {
            let n = i + 1;
            let Value::Object(o) = op else {
                return Err(ScimError::invalid_syntax(format!(
                    "operation {n} is not an object"
                )));
            };
            let kind = match get_ci(o, "op").and_then(Value::as_str) {
                Some(s) if s.eq_ignore_ascii_case("add") => OpKind::Add,
                Some(s) if s.eq_ignore_ascii_case("remove") => OpKind::Remove,
                Some(s) if s.eq_ignore_ascii_case("replace") => OpKind::Replace,
                other => {
                    return Err(ScimError::invalid_syntax(format!(
                        "operation {n}: `op` must be add, remove or replace, not {}",
                        other.unwrap_or("missing")
                    )));
                }
            };
            let path = match get_ci(o, "path") {
                None | Some(Value::Null) => None,
                Some(Value::String(p)) if p.trim().is_empty() => None,
                Some(Value::String(p)) => Some(filter::parse_path(p).map_err(|e| {
                    ScimError::invalid_path(format!("operation {n}: path `{p}` {e}"))
                })?),
                Some(_) => {
                    return Err(ScimError::invalid_path(format!(
                        "operation {n}: `path` must be a string"
                    )));
                }
            };
            Ok(Operation {
                op: kind,
                path,
                value: get_ci(o, "value").cloned(),
            })
        })
        .collect()
}

/// Applies `ops` to `resource` (canonical attribute names, as [`crate::resource::normalize`]
/// gives). On error the resource may be half-changed: callers work on a copy.
pub fn apply(
    resource: &mut Map<String, Value>,
    kind: Kind,
    ops: &[Operation],
) -> Result<(), ScimError> {
    for op in ops {
        match &op.path {
            Some(path) => apply_path(resource, kind, op.op, path, op.value.as_ref())?,
            None => {
                if op.op == OpKind::Remove {
                    return Err(ScimError::no_target("a remove operation needs a `path`"));
                }
                let Some(Value::Object(value)) = &op.value else {
                    return Err(ScimError::invalid_value(
                        "an add or replace without `path` needs an object `value`",
                    ));
                };
                for (key, v) in value {
                    if key.eq_ignore_ascii_case("schemas") {
                        continue;
                    }
                    // Keys may be paths themselves (`name.givenName`, `urn:…:employeeNumber`),
                    // as Entra ID sends them.
                    let path = filter::parse_path(key)
                        .map_err(|e| ScimError::invalid_path(format!("value key `{key}` {e}")))?;
                    apply_path(resource, kind, op.op, &path, Some(v))?;
                }
            }
        }
    }
    Ok(())
}

fn readonly(def: &Attr, path: &dyn std::fmt::Display) -> Result<(), ScimError> {
    if def.mutability == Mutability::ReadOnly {
        return Err(ScimError::mutability(format!("`{path}` is read-only")));
    }
    Ok(())
}

fn apply_path(
    resource: &mut Map<String, Value>,
    kind: Kind,
    op: OpKind,
    path: &PatchPath,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let attr = &path.attr;
    let ext = match &attr.urn {
        Some(urn) if !urn.eq_ignore_ascii_case(kind.core()) => Some(
            kind.extension(urn)
                .ok_or_else(|| ScimError::invalid_path(format!("unknown schema `{urn}`")))?,
        ),
        _ => None,
    };
    if attr.name.is_empty() {
        // The whole extension.
        let Some(urn) = ext else {
            return Err(ScimError::invalid_path(format!(
                "`{attr}` names no attribute"
            )));
        };
        return match op {
            OpKind::Remove => {
                resource.remove(urn);
                Ok(())
            }
            _ => {
                let Some(Value::Object(v)) = value else {
                    return Err(ScimError::invalid_value(format!("`{urn}` takes an object")));
                };
                if op == OpKind::Replace {
                    resource.remove(urn);
                }
                for (k, sv) in v {
                    if k.eq_ignore_ascii_case("schemas") {
                        continue;
                    }
                    let p = PatchPath {
                        attr: AttrPath {
                            urn: Some(urn.to_owned()),
                            name: k.clone(),
                            sub: None,
                        },
                        filter: None,
                        sub: None,
                    };
                    apply_path(resource, kind, op, &p, Some(sv))?;
                }
                Ok(())
            }
        };
    }
    if kind.schema_attrs(ext).is_some()
        && attr.urn.is_none()
        && (attr.name.eq_ignore_ascii_case("schemas"))
    {
        return Err(ScimError::invalid_path("`schemas` cannot be patched"));
    }
    let Some(def) = kind.attr(ext, &attr.name) else {
        return Err(ScimError::invalid_path(format!(
            "`{attr}`: no such attribute"
        )));
    };
    readonly(def, attr)?;
    if op != OpKind::Remove && value.is_none() {
        return Err(ScimError::invalid_value(format!(
            "`{attr}`: add and replace need a `value`"
        )));
    }
    let holder: &mut Map<String, Value> = match ext {
        Some(urn) => {
            let e = resource
                .entry(urn.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if !e.is_object() {
                *e = Value::Object(Map::new());
            }
            match e.as_object_mut() {
                Some(o) => o,
                None => return Err(ScimError::internal("bug: extension is not an object")),
            }
        }
        None => resource,
    };
    let result = apply_attr(holder, def, op, path, value);
    if let Some(urn) = ext
        && resource
            .get(urn)
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
    {
        resource.remove(urn);
    }
    result
}

fn sub_def<'a>(def: &'a Attr, sub: &str, path: &PatchPath) -> Result<&'a Attr, ScimError> {
    let s = schema::find(def.sub, sub).ok_or_else(|| {
        ScimError::invalid_path(format!(
            "`{}`: `{}` has no sub-attribute `{sub}`",
            path.attr, def.name
        ))
    })?;
    readonly(s, &format!("{}.{}", def.name, s.name))?;
    Ok(s)
}

fn apply_attr(
    holder: &mut Map<String, Value>,
    def: &'static Attr,
    op: OpKind,
    path: &PatchPath,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let name = def.name;
    // Which elements a value filter selects, or the sub-attribute of all elements/the object.
    match (
        &path.filter,
        path.attr.sub.as_deref().or(path.sub.as_deref()),
    ) {
        (None, None) => whole(holder, def, op, value),
        (None, Some(sub)) => {
            if def.ty != Ty::Complex {
                return Err(ScimError::invalid_path(format!(
                    "`{name}` has no sub-attributes"
                )));
            }
            let sd = sub_def(def, sub, path)?;
            let new = match (op, value) {
                (OpKind::Remove, _) | (_, None) => None,
                (_, Some(v)) => normalize_value(sd, v, name)?,
            };
            match holder.get_mut(name) {
                Some(Value::Array(items)) => {
                    for item in items.iter_mut().filter_map(Value::as_object_mut) {
                        set_sub(item, sd, new.clone(), op);
                    }
                    items.retain(|i| !i.as_object().is_some_and(Map::is_empty));
                    if items.is_empty() {
                        holder.remove(name);
                    }
                }
                Some(Value::Object(o)) => {
                    set_sub(o, sd, new, op);
                    if o.is_empty() {
                        holder.remove(name);
                    }
                }
                _ if new.is_some() && !def.multi => {
                    let mut o = Map::new();
                    set_sub(&mut o, sd, new, op);
                    holder.insert(name.to_owned(), Value::Object(o));
                }
                _ if new.is_some() => {
                    let mut o = Map::new();
                    set_sub(&mut o, sd, new, op);
                    holder.insert(name.to_owned(), Value::Array(vec![Value::Object(o)]));
                }
                _ => {}
            }
            Ok(())
        }
        (Some(f), sub) => {
            if !def.multi || def.ty != Ty::Complex {
                return Err(ScimError::invalid_path(format!(
                    "`{name}[…]`: value filters apply to multi-valued complex attributes"
                )));
            }
            filter::validate_element(f, def).map_err(ScimError::invalid_filter)?;
            let sd = match sub {
                Some(sub) => Some(sub_def(def, sub, path)?),
                None => None,
            };
            filtered(holder, def, op, f, sd, value)
        }
    }
}

fn set_sub(obj: &mut Map<String, Value>, sd: &Attr, new: Option<Value>, op: OpKind) {
    match (op, new) {
        (OpKind::Remove, _) => {
            obj.remove(sd.name);
        }
        (_, Some(v)) => {
            obj.insert(sd.name.to_owned(), v);
        }
        // Replacing with nothing (an empty string, null) clears the value.
        (_, None) => {
            obj.remove(sd.name);
        }
    }
}

/// An operation on a whole attribute.
fn whole(
    holder: &mut Map<String, Value>,
    def: &'static Attr,
    op: OpKind,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let name = def.name;
    if op == OpKind::Remove {
        if def.required {
            return Err(ScimError::invalid_value(format!("`{name}` is required")));
        }
        match (value, holder.get_mut(name)) {
            // `remove` with a value removes those elements (members by value, as Entra ID
            // sends it).
            (Some(v), Some(Value::Array(items))) if def.multi => {
                let gone = normalize_value(def, v, "")?.unwrap_or(Value::Array(Vec::new()));
                let gone: Vec<&Value> = gone
                    .as_array()
                    .map(|a| a.iter().collect())
                    .unwrap_or_default();
                items.retain(|item| !gone.iter().any(|g| same_element(item, g)));
                if items.is_empty() {
                    holder.remove(name);
                }
            }
            _ => {
                holder.remove(name);
            }
        }
        return Ok(());
    }
    let new = match value {
        Some(v) => normalize_value(def, v, "")?,
        None => None,
    };
    let Some(new) = new else {
        // add/replace with null or an empty value clears it (RFC 7643 §2.5: unassigned).
        if def.required {
            return Err(ScimError::invalid_value(format!("`{name}` is required")));
        }
        if op == OpKind::Replace {
            holder.remove(name);
        }
        return Ok(());
    };
    match (op, holder.get_mut(name)) {
        (OpKind::Add, Some(Value::Array(items))) if def.multi => {
            for item in new.as_array().cloned().unwrap_or_default() {
                if let Some(at) = items.iter().position(|i| same_element(i, &item)) {
                    items[at] = item;
                } else {
                    items.push(item);
                }
            }
        }
        (_, Some(Value::Object(o))) if def.ty == Ty::Complex && !def.multi => {
            // Sub-attributes not given are left alone (RFC 7644 §3.5.2.1 and .3).
            if let Value::Object(n) = new {
                o.extend(n);
            }
        }
        _ => {
            holder.insert(name.to_owned(), new);
        }
    }
    Ok(())
}

/// Two elements of a multi-valued attribute are the same when their `value` is (or, for
/// elements without one, when they are equal).
fn same_element(a: &Value, b: &Value) -> bool {
    match (
        a.as_object().and_then(|o| o.get("value")),
        b.as_object().and_then(|o| o.get("value")),
    ) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// An operation on the elements a value filter selects.
fn filtered(
    holder: &mut Map<String, Value>,
    def: &'static Attr,
    op: OpKind,
    f: &Filter,
    sd: Option<&Attr>,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let name = def.name;
    let items = match holder.get_mut(name) {
        Some(Value::Array(items)) => Some(items),
        _ => None,
    };
    let hits: Vec<usize> = items
        .as_ref()
        .map(|items| {
            items
                .iter()
                .enumerate()
                .filter(|(_, i)| {
                    i.as_object()
                        .is_some_and(|o| filter::matches_element(f, o, def))
                })
                .map(|(n, _)| n)
                .collect()
        })
        .unwrap_or_default();
    if op == OpKind::Remove {
        // Removing what is not there leaves it not there.
        if let Some(items) = items {
            for &n in hits.iter().rev() {
                match sd {
                    None => {
                        items.remove(n);
                    }
                    Some(sd) => {
                        if let Some(o) = items[n].as_object_mut() {
                            o.remove(sd.name);
                            if o.is_empty() {
                                items.remove(n);
                            }
                        }
                    }
                }
            }
            if items.is_empty() {
                holder.remove(name);
            }
        }
        return Ok(());
    }
    let Some(value) = value else {
        return Err(ScimError::invalid_value(format!(
            "`{name}[…]`: add and replace need a `value`"
        )));
    };
    let new = match sd {
        Some(sd) => normalize_value(sd, value, name)?,
        None => normalize_value(def, value, "")?.and_then(|v| match v {
            Value::Array(mut a) if a.len() == 1 => a.pop(),
            Value::Array(_) => None,
            other => Some(other),
        }),
    };
    let Some(new) = new else {
        return Err(ScimError::invalid_value(format!(
            "`{name}[…]`: the value is empty or not one element"
        )));
    };
    if hits.is_empty() {
        if op == OpKind::Replace {
            return Err(ScimError::no_target(format!(
                "no element of `{name}` matches the path's filter"
            )));
        }
        // add: a new element made of the filter's equalities and the value (Entra ID adds
        // `emails[type eq "work"].value` this way).
        let mut element = element_from_filter(f, def);
        match (sd, new) {
            (Some(sd), v) => {
                element.insert(sd.name.to_owned(), v);
            }
            (None, Value::Object(o)) => element.extend(o),
            (None, _) => {}
        }
        let items = holder
            .entry(name.to_owned())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(items) = items {
            items.push(Value::Object(element));
        }
        return Ok(());
    }
    if let Some(Value::Array(items)) = holder.get_mut(name) {
        for &n in &hits {
            let Some(o) = items[n].as_object_mut() else {
                continue;
            };
            match (sd, &new) {
                (Some(sd), v) => {
                    o.insert(sd.name.to_owned(), v.clone());
                }
                (None, Value::Object(n)) if op == OpKind::Replace => {
                    *o = n.clone();
                }
                (None, Value::Object(n)) => o.extend(n.clone()),
                (None, _) => {}
            }
        }
    }
    Ok(())
}
