//! The OpenAPI 3 document of the admin API, built from [`super::api::ROUTES`] (so every
//! route is in it) and the schemas below, served at `/api/v1/openapi.json`.

use serde_json::{Map, Value, json};

use super::api::ROUTES;

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let mut parameters: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| {
                json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } })
            })
            .collect();
        parameters.extend(r.query.iter().map(|p| {
            json!({
                "name": p.name,
                "in": "query",
                "required": false,
                "description": p.description,
                "schema": { "type": p.kind },
            })
        }));
        let (ok_status, ok_schema) = r.ok;
        let mut responses = Map::new();
        responses.insert(
            ok_status.to_string(),
            json!({
                "description": "Success",
                "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{ok_schema}") } } },
            }),
        );
        if ok_status == 202 {
            responses.insert(
                "200".into(),
                json!({
                    "description": "Finished within `wait` seconds",
                    "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{ok_schema}") } } },
                }),
            );
        }
        let mut errors = vec![("400", "Bad request: the message says what is wrong")];
        if r.scope.is_some() {
            errors.push(("401", "No valid bearer token"));
            errors.push(("403", "The token's scope does not allow this call"));
        }
        if r.path.contains('{') {
            errors.push(("404", "Not found"));
        }
        if r.body.is_some() {
            errors.push(("413", "The body is larger than [serve.api] max_body_bytes"));
            errors.push(("422", "A record is invalid: the message names it"));
        }
        if r.path.ends_with("/approve") || r.path.ends_with("/reject") {
            errors.push(("409", "The plan is not held"));
        }
        errors.push(("503", "Still loading, or shutting down"));
        for (code, description) in errors {
            responses.insert(
                code.into(),
                json!({
                    "description": description,
                    "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } },
                }),
            );
        }
        let mut op = json!({
            "operationId": operation_id(r.method, r.path),
            "summary": r.summary,
            "tags": [r.path.trim_start_matches('/').split('/').next().unwrap_or("api")],
            "parameters": parameters,
            "responses": responses,
        });
        if !r.description.is_empty() {
            op["description"] = json!(r.description);
        }
        match r.scope {
            Some(scope) => {
                op["security"] = json!([{ "bearer": [] }]);
                op["x-koppel-scope"] = json!(scope.as_str());
            }
            None => op["security"] = json!([]),
        }
        if let Some(body) = r.body {
            op["requestBody"] = json!({
                "required": body != "RunRequest",
                "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{body}") } } },
            });
        }
        let entry = paths
            .entry(r.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        entry[r.method.to_lowercase()] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "koppel admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Runs, plans, persons, accounts, the audit log, connector health and the HR push of `koppel serve`. Tokens are bearer tokens from [serve.api]; scope read reads, push pushes HR records, admin does everything.",
        },
        "servers": [{ "url": "/api/v1" }],
        "security": [{ "bearer": [] }],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer" },
            },
            "schemas": schemas(),
        },
    })
}

fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_lowercase();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        let seg = seg.trim_start_matches('{').trim_end_matches('}');
        let seg = seg.replace(['.', '-'], "_");
        let mut chars = seg.chars();
        if let Some(first) = chars.next() {
            id.push(first.to_ascii_uppercase());
            id.extend(chars);
        }
    }
    id
}

fn schemas() -> Value {
    let string = json!({ "type": "string" });
    let int = json!({ "type": "integer" });
    let nullable_string = json!({ "type": "string", "nullable": true });
    let counts = json!({
        "type": "object",
        "description": "target → action kind → count",
        "additionalProperties": { "type": "object", "additionalProperties": { "type": "integer" } },
    });
    json!({
        "Object": { "type": "object", "additionalProperties": true },
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": { "error": { "type": "string", "description": "What went wrong, for people" } },
        },
        "Work": {
            "type": "object",
            "required": ["kind"],
            "properties": {
                "kind": { "type": "string", "enum": ["run", "approve", "reject"] },
                "persons": { "type": "array", "items": string, "description": "Absent: everyone" },
                "refresh": { "type": "boolean", "description": "Read the sources again first" },
                "plan": string,
            },
        },
        "RunSummary": {
            "type": "object",
            "properties": {
                "plan_id": string,
                "persons": int,
                "actions": int,
                "applied": int,
                "failed": int,
                "skipped": int,
                "withheld": int,
                "held": { "type": "boolean" },
                "resumed": int,
                "counts": counts,
                "failed_counts": counts,
                "failures": { "type": "array", "items": {
                    "type": "object",
                    "properties": { "target": string, "kind": string, "person": string, "error": string },
                } },
                "unavailable": { "type": "object", "additionalProperties": string },
                "breaches": { "type": "array", "items": string },
                "diagnostics": { "type": "array", "items": string },
            },
        },
        "Run": {
            "type": "object",
            "required": ["id", "status", "work", "trigger", "queued_at"],
            "properties": {
                "id": int,
                "status": { "type": "string", "enum": ["queued", "running", "done", "failed"] },
                "work": { "$ref": "#/components/schemas/Work" },
                "trigger": string,
                "requests": { "type": "integer", "description": "Requests this run answers (joined ones included)" },
                "queued_at": string,
                "started_at": nullable_string,
                "finished_at": nullable_string,
                "summary": { "allOf": [{ "$ref": "#/components/schemas/RunSummary" }], "nullable": true },
                "error": nullable_string,
            },
        },
        "RunList": {
            "type": "object",
            "properties": {
                "offset": int,
                "limit": int,
                "runs": { "type": "array", "items": { "$ref": "#/components/schemas/Run" } },
            },
        },
        "RunRequest": {
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "person": string,
                "persons": { "type": "array", "items": string },
            },
        },
        "PlanSummary": {
            "type": "object",
            "properties": {
                "id": string,
                "created_at": string,
                "state_version": int,
                "status": { "type": "string", "enum": ["saved", "held", "applying", "applied", "approved", "rejected"] },
                "withheld": { "type": "array", "items": { "type": "array", "items": string } },
                "note": string,
            },
        },
        "PlanList": {
            "type": "object",
            "properties": {
                "offset": int,
                "limit": int,
                "plans": { "type": "array", "items": { "$ref": "#/components/schemas/PlanSummary" } },
            },
        },
        "Plan": {
            "type": "object",
            "properties": {
                "id": string,
                "status": string,
                "note": string,
                "withheld": { "type": "array", "items": { "type": "array", "items": string } },
                "held": { "type": "array", "items": { "type": "object" } },
                "counts": counts,
                "journal": { "type": "object", "properties": { "done": int, "failed": int, "pending": int } },
                "actions_total": int,
                "actions": { "type": "array", "items": { "type": "object" } },
            },
        },
        "PersonList": {
            "type": "object",
            "properties": {
                "total": int,
                "offset": int,
                "limit": int,
                "persons": { "type": "array", "items": { "type": "object" } },
            },
        },
        "Contract": {
            "type": "object",
            "required": ["id", "start"],
            "description": "koppel's contract JSON",
            "properties": {
                "id": string,
                "start": { "type": "string", "format": "date" },
                "end": { "type": "string", "format": "date", "nullable": true },
                "department": string,
                "title": { "type": "object", "properties": { "code": string, "name": string } },
                "location": string,
                "cost_centre": string,
                "manager": string,
                "employment_type": string,
                "fte": { "type": "number", "nullable": true },
                "hours_per_week": { "type": "number", "nullable": true },
                "sequence": int,
            },
        },
        "Person": {
            "type": "object",
            "required": ["external_id"],
            "description": "koppel's person JSON, as the JSON source reads it",
            "properties": {
                "external_id": string,
                "name": { "type": "object", "properties": {
                    "given": string, "nickname": string, "initials": string,
                    "family_prefix": string, "family": string,
                    "partner_prefix": string, "partner": string,
                    "convention": { "type": "string", "enum": ["B", "P", "BP", "PB"] },
                } },
                "email": string,
                "phone": string,
                "custom": { "type": "object", "additionalProperties": string },
                "excluded": { "type": "boolean" },
                "contracts": { "type": "array", "items": { "$ref": "#/components/schemas/Contract" } },
            },
        },
        "PersonPush": {
            "oneOf": [
                { "$ref": "#/components/schemas/Person" },
                { "type": "array", "items": { "$ref": "#/components/schemas/Person" } },
            ],
        },
        "ContractRecord": {
            "allOf": [
                { "$ref": "#/components/schemas/Contract" },
                { "type": "object", "required": ["person"], "properties": { "person": string } },
            ],
        },
        "ContractPush": {
            "oneOf": [
                { "$ref": "#/components/schemas/ContractRecord" },
                { "type": "array", "items": { "$ref": "#/components/schemas/ContractRecord" } },
            ],
        },
        "PushResult": {
            "type": "object",
            "properties": {
                "changed": { "type": "array", "items": string },
                "unchanged": { "type": "array", "items": string },
                "run": { "allOf": [{ "$ref": "#/components/schemas/Run" }], "nullable": true },
            },
        },
        "Health": {
            "type": "object",
            "properties": {
                "target": string,
                "kind": string,
                "ok": { "type": "boolean" },
                "error": string,
                "millis": int,
            },
        },
        "HealthList": {
            "type": "object",
            "properties": {
                "ok": { "type": "boolean" },
                "targets": { "type": "array", "items": { "$ref": "#/components/schemas/Health" } },
            },
        },
        "AuditList": {
            "type": "object",
            "properties": { "entries": { "type": "array", "items": { "type": "object" } } },
        },
        "Status": {
            "type": "object",
            "properties": {
                "ready": { "type": "string", "enum": ["loading", "ready", "failed"] },
                "queued": { "type": "array", "items": int },
                "running": { "type": "integer", "nullable": true },
                "last_run": { "allOf": [{ "$ref": "#/components/schemas/Run" }], "nullable": true },
                "schedules": { "type": "array", "items": { "type": "object" } },
                "held_plans": int,
                "targets": { "type": "array", "items": { "$ref": "#/components/schemas/Health" } },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` in the document points at a schema it defines.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if k == "$ref" {
                        out.push(x.as_str().unwrap_or_default().to_owned());
                    }
                    refs(x, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }

    #[test]
    fn every_route_is_documented_and_every_reference_resolves() {
        let doc = document();
        for r in ROUTES {
            let op = &doc["paths"][r.path][r.method.to_lowercase()];
            assert!(
                op.is_object(),
                "{} {} is not in the document",
                r.method,
                r.path
            );
            if r.scope.is_some() {
                assert_eq!(
                    op["responses"]["401"]["description"],
                    "No valid bearer token"
                );
            }
        }
        let ops: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| p.as_object().unwrap().len())
            .sum();
        assert_eq!(ops, ROUTES.len(), "one operation per route");
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(!all.is_empty());
        for r in all {
            let name = r.strip_prefix("#/components/schemas/").unwrap();
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "{r} does not resolve"
            );
        }
        let mut ids: Vec<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|p| p.as_object().unwrap().values())
            .map(|op| op["operationId"].as_str().unwrap())
            .collect();
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n, "operation ids are unique");
    }
}
