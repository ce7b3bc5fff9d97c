//! A stand-in for the AFAS Profit REST services of one environment, following AFAS's
//! documentation (help.afas.nl "REST API voor ontwikkelaars", docs.afas.help GetConnector,
//! UpdateConnector, Troubleshooting), under `/ProfitRestServices`:
//!
//! * `Authorization: AfasToken <base64 of <token><version>1</version><data>…</data></token>>`
//!   on every call; anything else answers 401 (empty body: only 5xx bodies are documented).
//! * `GET /metainfo` → `{updateConnectors: [{id, description}], getConnectors: [...]}`;
//!   `GET /metainfo/get/{id}` → `{name, description, fields: [{id, fieldId, dataType,
//!   label, length, controlType, decimals, decimalsFieldId}]}`.
//! * `GET /connectors/{id}?skip=&take=&orderbyfieldids=&filterfieldids=&filtervalues=
//!   &operatortypes=` → `{skip, take, rows}`; every field in every row, `null` when empty;
//!   take defaults to 100. A connector the app connector lacks answers 401 (help.afas.nl:
//!   "GetConnector of UpdateConnector is niet toegevoegd aan de AppConnector"); an unknown
//!   sort or filter field 500 "Connector-veld '…' niet gevonden"; a negative skip or take
//!   other than the documented get-all (-1/-1) 500 "Er is een onverwachte fout opgetreden.",
//!   each with `{externalMessage, errorNumber, profitLogReference}`.
//! * `PUT /connectors/KnEmployee` and `PUT /connectors/KnUser` with the nested
//!   `Element`/`Fields` bodies; an unknown employee or user answers 500 with the message
//!   Profit gives for a value that does not exist. A success answers 200 `{"results": {}}`
//!   (the docs describe POST's 201 with the new key; for PUT they are silent).
//! * AFAS documents no rate limit, only "up to 5 simultaneous calls", which is not enforced.
//!
//! Filters support operators 1 (=), 6 (contains), 7 (≠), 8 (empty) and 9 (not empty).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::log::{Log, Logged};
use crate::tenant::{AfasTenant, EMPLOYMENTS_FIELDS, UNITS_FIELDS, USERS_FIELDS};

/// How the fixture behaves.
#[derive(Debug, Clone)]
pub struct AfasOptions {
    /// The token's data part; the header carries it wrapped in `<token>` XML.
    pub token: String,
    /// GetConnectors in the app connector and their fields.
    pub get_connectors: BTreeMap<String, Vec<String>>,
    pub update_connectors: BTreeSet<String>,
}

impl Default for AfasOptions {
    fn default() -> Self {
        let fields = |f: &[&str]| f.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        AfasOptions {
            token: "7748B1A4B5AF4A899588017DD71E55CBB60F8C504E2C16A17D1F9D9F42914C7C".into(),
            get_connectors: [
                ("T4E_HelloID_Users_v2", fields(USERS_FIELDS)),
                ("T4E_HelloID_Employments_v2", fields(EMPLOYMENTS_FIELDS)),
                ("T4E_HelloID_OrganizationalUnits_v2", fields(UNITS_FIELDS)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
            update_connectors: ["KnEmployee", "KnUser"]
                .into_iter()
                .map(str::to_owned)
                .collect(),
        }
    }
}

impl AfasOptions {
    /// The `Authorization` value a client must send.
    pub fn header(&self) -> String {
        let xml = format!(
            "<token><version>1</version><data>{}</data></token>",
            self.token
        );
        format!(
            "AfasToken {}",
            base64::engine::general_purpose::STANDARD.encode(xml)
        )
    }
}

pub struct AfasState {
    pub options: Mutex<AfasOptions>,
    pub tenant: Mutex<AfasTenant>,
    pub log: Log,
    requests: Mutex<u64>,
}

impl AfasState {
    pub fn new(options: AfasOptions, tenant: AfasTenant) -> Arc<AfasState> {
        Arc::new(AfasState {
            options: Mutex::new(options),
            tenant: Mutex::new(tenant),
            log: Log::default(),
            requests: Mutex::new(0),
        })
    }

    pub fn requests(&self) -> u64 {
        *lock(&self.requests)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn router(state: Arc<AfasState>) -> Router {
    Router::new()
        .route("/ProfitRestServices/metainfo", get(metainfo))
        .route("/ProfitRestServices/metainfo/get/{id}", get(metainfo_get))
        .route(
            "/ProfitRestServices/connectors/{id}",
            get(connector).put(update),
        )
        .route("/_fixture/stats", get(stats))
        .with_state(state)
}

async fn stats(State(s): State<Arc<AfasState>>) -> Response {
    axum::Json(json!({ "requests": s.requests() })).into_response()
}

fn profit_error(message: &str, number: i64) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(json!({
            "externalMessage": message,
            "errorNumber": number,
            "profitLogReference": "3A4CA18A611A4E07B429AC6BAFC6B8D1",
        })),
    )
        .into_response()
}

fn authorized(s: &AfasState, headers: &HeaderMap) -> bool {
    *lock(&s.requests) += 1;
    let expected = lock(&s.options).header();
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == expected)
}

async fn metainfo(State(s): State<Arc<AfasState>>, uri: Uri, headers: HeaderMap) -> Response {
    s.log
        .push(Logged::new("GET", &uri.to_string(), &headers, None));
    if !authorized(&s, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let o = lock(&s.options);
    let list = |ids: Vec<&String>| -> Vec<Value> {
        ids.into_iter()
            .map(|id| json!({ "id": id, "description": format!("Tools4ever - HelloID - {id}") }))
            .collect()
    };
    axum::Json(json!({
        "updateConnectors": o.update_connectors.iter().map(|id| json!({ "id": id, "description": id })).collect::<Vec<_>>(),
        "getConnectors": list(o.get_connectors.keys().collect()),
    }))
    .into_response()
}

async fn metainfo_get(
    State(s): State<Arc<AfasState>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    s.log
        .push(Logged::new("GET", &uri.to_string(), &headers, None));
    if !authorized(&s, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let o = lock(&s.options);
    let Some(fields) = o.get_connectors.get(&id) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let fields: Vec<Value> = fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            json!({
                "id": f, "fieldId": format!("U{:03}", i + 1), "dataType": "string",
                "label": f.replace('_', " "), "length": 255, "controlType": 1,
                "decimals": 0, "decimalsFieldId": ""
            })
        })
        .collect();
    axum::Json(json!({ "name": id, "description": format!("Tools4ever - HelloID - {id}"), "fields": fields }))
        .into_response()
}

fn field_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

async fn connector(
    State(s): State<Arc<AfasState>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    s.log
        .push(Logged::new("GET", &uri.to_string(), &headers, None));
    if !authorized(&s, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let fields = match lock(&s.options).get_connectors.get(&id) {
        Some(f) => f.clone(),
        None => return StatusCode::UNAUTHORIZED.into_response(),
    };
    let tenant = lock(&s.tenant);
    let source: &Vec<Map<String, Value>> = match id.as_str() {
        "T4E_HelloID_Users_v2" => &tenant.users,
        "T4E_HelloID_Employments_v2" => &tenant.employments,
        "T4E_HelloID_OrganizationalUnits_v2" => &tenant.organizational_units,
        _ => return profit_error("Er is een onverwachte fout opgetreden.", -2147180999),
    };
    let parse = |k: &str, d: i64| q.get(k).map_or(Ok(d), |v| v.parse::<i64>());
    let (Ok(skip), Ok(take)) = (parse("skip", 0), parse("take", 100)) else {
        return profit_error("Er is een onverwachte fout opgetreden.", -2147180999);
    };
    let get_all = skip == -1 && take == -1;
    if !get_all && (skip < 0 || take < 0) {
        return profit_error("Er is een onverwachte fout opgetreden.", -2147180999);
    }
    let split = |k: &str| -> Vec<String> {
        q.get(k)
            .map(|v| v.split(',').map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let (ff, fv, ot) = (
        split("filterfieldids"),
        split("filtervalues"),
        split("operatortypes"),
    );
    if ff.len() != fv.len() || ff.len() != ot.len() {
        return profit_error("Er is een onverwachte fout opgetreden.", -2147180999);
    }
    let order = split("orderbyfieldids");
    for f in ff.iter().chain(
        order
            .iter()
            .map(|o| o.trim_start_matches('-').to_owned())
            .collect::<Vec<_>>()
            .iter(),
    ) {
        if !fields.contains(f) {
            return profit_error(&format!("Connector-veld '{f}' niet gevonden"), -2147180996);
        }
    }
    let mut rows: Vec<&Map<String, Value>> = source
        .iter()
        .filter(|row| {
            ff.iter().zip(&fv).zip(&ot).all(|((f, v), op)| {
                let have = field_text(row.get(f).unwrap_or(&Value::Null));
                match op.as_str() {
                    "1" => have.eq_ignore_ascii_case(v),
                    "6" => have.to_lowercase().contains(&v.to_lowercase()),
                    "7" => !have.eq_ignore_ascii_case(v),
                    "8" => have.is_empty(),
                    "9" => !have.is_empty(),
                    _ => false,
                }
            })
        })
        .collect();
    for key in order.iter().rev() {
        let (desc, key) = match key.strip_prefix('-') {
            Some(k) => (true, k),
            None => (false, key.as_str()),
        };
        rows.sort_by(|a, b| {
            let ord = field_text(a.get(key).unwrap_or(&Value::Null))
                .cmp(&field_text(b.get(key).unwrap_or(&Value::Null)));
            if desc { ord.reverse() } else { ord }
        });
    }
    let page: Vec<Value> = if get_all {
        rows.into_iter().map(|r| Value::Object(r.clone())).collect()
    } else {
        rows.into_iter()
            .skip(skip as usize)
            .take(take as usize)
            .map(|r| Value::Object(r.clone()))
            .collect()
    };
    axum::Json(json!({ "skip": skip, "take": take, "rows": page })).into_response()
}

async fn update(
    State(s): State<Arc<AfasState>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    s.log
        .push(Logged::new("PUT", &uri.to_string(), &headers, json.clone()));
    if !authorized(&s, &headers) || !lock(&s.options).update_connectors.contains(&id) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some(json) = json else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let mut tenant = lock(&s.tenant);
    match id.as_str() {
        "KnEmployee" => {
            let element = &json["AfasEmployee"]["Element"];
            let Some(em_id) = element["@EmId"].as_str() else {
                return profit_error("Er is een onverwachte fout opgetreden.", -2147180999);
            };
            let fields = &element["Objects"][0]["KnPerson"]["Element"]["Fields"];
            let Some(fields) = fields.as_object() else {
                return profit_error("Er is een onverwachte fout opgetreden.", -2147180999);
            };
            let Some(row) = tenant
                .users
                .iter_mut()
                .find(|r| r.get("Medewerker").and_then(Value::as_str) == Some(em_id))
            else {
                return profit_error(
                    "De ingevulde waarde bij 'Medewerker' bestaat niet.",
                    -2147220469,
                );
            };
            // MatchPer 0: the person is found by BcCo, which must be the employee's.
            if fields.get("MatchPer") != Some(&json!(0))
                || fields.get("BcCo") != row.get("Persoonsnummer")
            {
                return profit_error(
                    "Persoon niet gevonden op basis van het nummer (BcCo).",
                    -2147220469,
                );
            }
            for (f, target) in [
                ("EmAd", "Email_werk"),
                ("TeNr", "Telefoonnr_werk"),
                ("MbNr", "Mobielnr_werk"),
            ] {
                if let Some(v) = fields.get(f) {
                    row.insert(target.into(), v.clone());
                }
            }
        }
        "KnUser" => {
            let element = &json["KnUser"]["Element"];
            let Some(us_id) = element["@UsId"].as_str() else {
                return profit_error("Er is een onverwachte fout opgetreden.", -2147180999);
            };
            let Some(fields) = element["Fields"].as_object() else {
                return profit_error("Er is een onverwachte fout opgetreden.", -2147180999);
            };
            let Some(row) = tenant
                .users
                .iter_mut()
                .find(|r| r.get("Gebruiker").and_then(Value::as_str) == Some(us_id))
            else {
                return profit_error(
                    "De ingevulde waarde bij 'Gebruiker' bestaat niet.",
                    -2147220469,
                );
            };
            if let Some(v) = fields.get("Upn") {
                row.insert("UPN".into(), v.clone());
            }
            if let Some(v) = fields.get("EmAd") {
                row.insert("Email_werk_gebruiker".into(), v.clone());
            }
        }
        _ => return profit_error("Er is een onverwachte fout opgetreden.", -2147180999),
    }
    axum::Json(json!({ "results": {} })).into_response()
}
