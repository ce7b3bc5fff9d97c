//! The `afas` source and write-back target against the Profit stand-in: skip/take paging with
//! a sort, the token header, connector and field checks, mapping, KnEmployee/KnUser bodies.

use std::collections::BTreeMap;

use koppel_connectors::conformance;
use koppel_connectors::target::{CreateRequest, Created, Target, TargetError};
use koppel_core::{AttrValue, Date, NamingConvention};
use koppel_hr::afas::{AfasSource, AfasSourceConfig, AfasTarget, AfasTargetConfig};
use koppel_hr_fixture::{AfasFixture, AfasOptions, tenant};
use serde_json::json;

fn today() -> Date {
    "2026-11-23".parse().unwrap()
}

struct Setup {
    fixture: AfasFixture,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(persons: usize, options: AfasOptions) -> Setup {
        let org = tenant::synthetic(persons, 11, today());
        let fixture = AfasFixture::start(options, tenant::afas(&org)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        // The token's data part only; koppel wraps it in the <token> XML.
        std::fs::write(
            dir.path().join("token"),
            format!("{}\n", AfasOptions::default().token),
        )
        .unwrap();
        Setup { fixture, dir }
    }

    fn table(&self, extra: &str) -> toml::Table {
        toml::from_str(&format!(
            "base_url = '{}'\ntoken_file = 'token'\n{extra}",
            self.fixture.url()
        ))
        .unwrap()
    }

    fn source(&self, extra: &str) -> AfasSource {
        let (c, api) =
            AfasSourceConfig::from_table("p", &self.table(extra), self.dir.path()).unwrap();
        AfasSource::new(c, api).unwrap()
    }

    fn target(&self, extra: &str) -> AfasTarget {
        let (c, api) =
            AfasTargetConfig::from_table("t", &self.table(extra), self.dir.path()).unwrap();
        AfasTarget::new("profit", c, api).unwrap()
    }
}

#[tokio::test]
async fn reads_an_environment_in_sorted_pages_and_maps_it() {
    let s = Setup::new(90, AfasOptions::default());
    let source = s.source("take = 40");
    let fetched = source.fetch_raw().await.unwrap();
    let org = tenant::synthetic(90, 11, today());
    let snap = &fetched.snapshot;
    assert_eq!(snap.persons.len(), 90);
    assert_eq!(snap.departments, org.departments, "the unit tree as it is");
    for (want, got) in org.persons.iter().zip(&snap.persons) {
        assert_eq!(got.external_id, want.external_id);
        assert_eq!(got.name.given, want.name.given);
        assert_eq!(got.name.family, want.name.family);
        assert_eq!(got.name.family_prefix, want.name.family_prefix);
        assert_eq!(got.name.partner, want.name.partner);
        assert_eq!(got.name.partner_prefix, want.name.partner_prefix);
        assert_eq!(got.name.initials, want.name.initials);
        assert_eq!(got.name.convention, want.name.convention);
        assert_eq!(got.email, want.email);
        assert_eq!(got.contracts.len(), want.contracts.len());
        for (wc, gc) in want.contracts.iter().zip(&got.contracts) {
            assert_eq!(gc.id, wc.id);
            assert_eq!((gc.start, gc.end), (wc.start, wc.end), "dates with Z");
            assert_eq!(gc.department, wc.department);
            assert_eq!(gc.title, wc.title);
            assert_eq!(gc.cost_centre, wc.cost_centre);
            assert_eq!(gc.fte, wc.fte);
            assert_eq!(gc.hours_per_week, wc.hours_per_week);
            assert_eq!(gc.sequence, wc.sequence);
            assert_eq!(gc.employment_type, wc.employment_type);
        }
    }
    let log = s.fixture.state.log.all();
    assert_eq!(log[0].path(), "/ProfitRestServices/metainfo");
    assert!(
        log.iter()
            .all(|l| l.auth_scheme.as_deref() == Some("AfasToken"))
    );
    let users: Vec<&str> = log
        .iter()
        .filter(|l| l.path() == "/ProfitRestServices/connectors/T4E_HelloID_Users_v2")
        .map(|l| l.uri.as_str())
        .collect();
    assert_eq!(
        users,
        [
            "/ProfitRestServices/connectors/T4E_HelloID_Users_v2?skip=0&take=40&orderbyfieldids=Medewerker",
            "/ProfitRestServices/connectors/T4E_HelloID_Users_v2?skip=40&take=40&orderbyfieldids=Medewerker",
            "/ProfitRestServices/connectors/T4E_HelloID_Users_v2?skip=80&take=40&orderbyfieldids=Medewerker",
        ]
    );
}

#[tokio::test]
async fn filters_go_into_the_call() {
    let s = Setup::new(30, AfasOptions::default());
    let org = tenant::synthetic(30, 11, today());
    let one = &org.persons[4].external_id;
    let fetched = s
        .source(&format!(
            "[[filters.persons]]\nfield = 'Medewerker'\noperator = 1\nvalue = '{one}'"
        ))
        .fetch_raw()
        .await
        .unwrap();
    assert_eq!(fetched.snapshot.persons.len(), 1);
    assert_eq!(&fetched.snapshot.persons[0].external_id, one);
    let call = s
        .fixture
        .state
        .log
        .all()
        .into_iter()
        .find(|l| l.path() == "/ProfitRestServices/connectors/T4E_HelloID_Users_v2")
        .unwrap();
    assert!(
        call.uri.contains(&format!(
            "filterfieldids=Medewerker&filtervalues={one}&operatortypes=1"
        )),
        "{}",
        call.uri
    );
}

#[tokio::test]
async fn naming_codes_map_as_afas_writes_them() {
    let c = AfasSourceConfig::from_table(
        "p",
        &toml::from_str("base_url = 'https://x/ProfitRestServices'\ntoken_env = 'T'").unwrap(),
        std::path::Path::new("."),
    )
    .unwrap()
    .0;
    let row = |id: &str, code: serde_json::Value| {
        json!({ "Medewerker": id, "Geboortenaam": "Jansen", "Naamgebruik_code": code })
            .as_object()
            .unwrap()
            .clone()
    };
    let raw = koppel_hr::afas::source::Raw {
        persons: vec![
            row("1", json!("0")),
            row("2", json!(1)),
            row("3", json!("2")),
            row("4", json!("3")),
            row("5", json!(null)),
        ],
        ..Default::default()
    };
    let f = koppel_hr::afas::source::map(&c, &raw).unwrap();
    let got: Vec<NamingConvention> = f
        .snapshot
        .persons
        .iter()
        .map(|p| p.name.convention)
        .collect();
    use NamingConvention::*;
    assert_eq!(got, [B, PB, P, BP, B]);
    let bad = koppel_hr::afas::source::Raw {
        persons: vec![row("6", json!("9"))],
        ..Default::default()
    };
    let e = koppel_hr::afas::source::map(&c, &bad).unwrap_err();
    assert!(
        format!("{:?}", e).contains("naming convention code \\\"9\\\""),
        "{e:?}"
    );
}

#[tokio::test]
async fn missing_connectors_fields_and_bad_tokens_are_named() {
    let s = Setup::new(5, AfasOptions::default());
    let e = s
        .source("contracts_connector = 'T4E_HelloID_Positions_v2'")
        .fetch_raw()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("GetConnector \"T4E_HelloID_Positions_v2\"")
            && e.contains("contracts_connector"),
        "{e}"
    );
    assert!(
        e.contains("T4E_HelloID_Employments_v2"),
        "lists what there is: {e}"
    );

    let e = s
        .source("[fields.person]\nnickname = 'Roepnaam_medewerker'")
        .fetch_raw()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("GetConnector T4E_HelloID_Users_v2 has no field \"Roepnaam_medewerker\""),
        "{e}"
    );
    assert!(e.contains("fields.person.nickname"), "{e}");

    let e = s
        .source("[custom]\nbadge = 'Badgenummer'")
        .fetch_raw()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("\"Badgenummer\"") && e.contains("custom.badge"),
        "{e}"
    );

    std::fs::write(s.dir.path().join("token"), "0000").unwrap();
    let e = s.source("").fetch_raw().await.unwrap_err().to_string();
    assert!(
        e.contains("refused the credentials") && e.contains("token_file token"),
        "{e}"
    );
    assert!(!e.contains("0000"), "no token in messages: {e}");
}

fn puts(s: &Setup) -> Vec<(String, serde_json::Value)> {
    s.fixture
        .state
        .log
        .with_method("PUT")
        .into_iter()
        .map(|l| (l.uri, l.body.unwrap_or_default()))
        .collect()
}

fn request(person: &str, attrs: &[(&str, &str)]) -> CreateRequest {
    let mut attributes =
        BTreeMap::from([("Medewerker".to_owned(), AttrValue::Text(person.into()))]);
    for (k, v) in attrs {
        attributes.insert((*k).into(), AttrValue::Text((*v).into()));
    }
    CreateRequest {
        person: person.into(),
        attributes,
        enabled: true,
        correlation: Some(("Medewerker".into(), AttrValue::Text(person.into()))),
    }
}

#[tokio::test]
async fn write_back_puts_kn_employee_and_kn_user_once() {
    let s = Setup::new(5, AfasOptions::default());
    let target = s.target("");
    let org = tenant::synthetic(5, 11, today());
    let p = &org.persons[1];
    let id = p.external_id.clone();

    let created = target
        .create(&request(
            &id,
            &[
                ("EmAd", "sanne.smit@koppeldam.nl"),
                ("Upn", "ssmit@koppeldam.nl"),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(created, Created::Adopted(id.clone()));
    assert_eq!(
        puts(&s),
        vec![
            (
                "/ProfitRestServices/connectors/KnEmployee".to_owned(),
                json!({ "AfasEmployee": { "Element": { "@EmId": id, "Objects": [
                    { "KnPerson": { "Element": { "Fields": {
                        "MatchPer": 0, "BcCo": format!("P{id}"), "EmAd": "sanne.smit@koppeldam.nl"
                    } } } }
                ] } } })
            ),
            (
                "/ProfitRestServices/connectors/KnUser".to_owned(),
                json!({ "KnUser": { "Element": { "@UsId": format!("12345.{id}"), "Fields": {
                    "MtCd": 1, "Nm": koppel_core::names::display_name(&p.name), "Upn": "ssmit@koppeldam.nl"
                } } } })
            ),
        ]
    );
    // Already there: nothing is written again; Null (a leaver) empties nothing.
    target
        .create(&request(
            &id,
            &[
                ("EmAd", "sanne.smit@koppeldam.nl"),
                ("Upn", "ssmit@koppeldam.nl"),
            ],
        ))
        .await
        .unwrap();
    target
        .update(
            &id,
            &BTreeMap::from([
                ("EmAd".to_owned(), AttrValue::Null),
                ("Upn".to_owned(), AttrValue::Null),
            ]),
        )
        .await
        .unwrap();
    target.set_enabled(&id, false).await.unwrap();
    target.delete(&id).await.unwrap();
    assert_eq!(puts(&s).len(), 2);
    let account = target.get(&id).await.unwrap().unwrap();
    assert_eq!(
        account.attributes["EmAd"],
        AttrValue::Text("sanne.smit@koppeldam.nl".into())
    );
    assert_eq!(
        account.attributes["Upn"],
        AttrValue::Text("ssmit@koppeldam.nl".into())
    );

    // Only what changed goes out.
    target
        .update(
            &id,
            &BTreeMap::from([(
                "Upn".to_owned(),
                AttrValue::Text("sanne.smit@koppeldam.nl".into()),
            )]),
        )
        .await
        .unwrap();
    let all = puts(&s);
    assert_eq!(all.len(), 3);
    assert_eq!(all[2].0, "/ProfitRestServices/connectors/KnUser");

    let e = target
        .create(&request("nobody", &[("EmAd", "x@y")]))
        .await
        .unwrap_err();
    assert!(
        matches!(e, TargetError::Rejected { .. }) && e.to_string().contains("no employee nobody"),
        "{e}"
    );
    let e = target
        .update(
            &id,
            &BTreeMap::from([("Badge".to_owned(), AttrValue::Text("1".into()))]),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, TargetError::Config { .. }) && e.to_string().contains("current.Badge"),
        "{e}"
    );
    assert_eq!(target.list_accounts().await.unwrap().len(), 5);
    assert!(
        !target
            .is_unique("EmAd", "SANNE.SMIT@koppeldam.nl", None)
            .await
            .unwrap()
    );
    assert!(
        target
            .is_unique("EmAd", "sanne.smit@koppeldam.nl", Some(&id))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn write_back_names_a_missing_update_connector() {
    let mut options = AfasOptions::default();
    options.update_connectors.remove("KnUser");
    let s = Setup::new(3, options);
    let id = tenant::synthetic(3, 11, today()).persons[0]
        .external_id
        .clone();
    let e = s
        .target("")
        .create(&request(&id, &[("EmAd", "a@b")]))
        .await
        .unwrap_err();
    assert!(e.is_unavailable(), "{e}");
    assert!(e.to_string().contains("UpdateConnector \"KnUser\""), "{e}");
    assert!(puts(&s).is_empty());
}

#[tokio::test]
async fn conformance_checks_that_apply_to_a_write_back_target() {
    let s = Setup::new(3, AfasOptions::default());
    let target = s.target("");
    let mut fixture = conformance::Fixture::generic("conf");
    fixture.correlation = "Medewerker".into();
    fixture.changeable = ["EmAd".into(), "TeNr".into()];
    for name in [
        "delete_missing_succeeds",
        "missing_reference_is_no_such_account",
    ] {
        let check = conformance::CHECKS.iter().find(|c| c.name == name).unwrap();
        conformance::run_check(&target, &fixture, check)
            .await
            .unwrap();
    }
}
