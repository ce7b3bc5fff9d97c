//! The `ldap` target against a real OpenLDAP (`slapd`, one per test): the conformance suite,
//! TLS and error kinds, escaping with hostile names, moves, disable methods, groups, faults.

use std::collections::BTreeMap;

use koppel_connectors::conformance::{self, Fixture};
use koppel_connectors::target::{CreateRequest, Created, Done, Op, Target, TargetError};
use koppel_core::AttrValue;
use koppel_ldap::{LdapConfig, LdapError, LdapTarget, connect};
use koppel_testkit::slapd::Slapd;

const PEOPLE: &str = Slapd::PEOPLE;
const GROUPS: &str = Slapd::GROUPS;

/// The connection table for `slapd`, plain LDAP, with the TOML in `extra` merged in.
fn table(slapd: &Slapd, extra: &str) -> toml::Table {
    let pw = slapd.password_file().expect("password file");
    let text = format!(
        r#"
flavour = "openldap"
url = "{url}"
starttls = false
bind_dn = "{bind}"
password_file = "{pw}"
base = "{PEOPLE}"
page_size = 7
[groups]
container = "{GROUPS}"
"#,
        url = slapd.url(),
        bind = slapd.bind_dn(),
        pw = pw.display(),
    );
    let mut table: toml::Table = toml::from_str(&text).expect("test config parses");
    let extra: toml::Table = toml::from_str(extra).expect("extra config parses");
    merge(&mut table, extra);
    table
}

fn merge(into: &mut toml::Table, from: toml::Table) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

fn config(slapd: &Slapd, extra: &str) -> LdapConfig {
    LdapConfig::from_table("dir", &table(slapd, extra)).expect("valid config")
}

async fn target(slapd: &Slapd, extra: &str) -> LdapTarget {
    connect("dir", config(slapd, extra))
        .await
        .expect("connects")
}

fn text(s: &str) -> AttrValue {
    AttrValue::Text(s.to_owned())
}

fn person(uid: &str, employee: &str) -> CreateRequest {
    let attributes = BTreeMap::from([
        ("uid".to_owned(), text(uid)),
        ("cn".to_owned(), text(&format!("{uid} Full"))),
        ("sn".to_owned(), text("Family")),
        ("givenName".to_owned(), text("Given")),
        ("employeeNumber".to_owned(), text(employee)),
        ("mail".to_owned(), text(&format!("{employee}@example.test"))),
    ]);
    CreateRequest {
        person: employee.to_owned(),
        attributes,
        enabled: true,
        correlation: Some(("employeeNumber".to_owned(), text(employee))),
    }
}

fn fixture() -> Fixture {
    Fixture {
        correlation: "employeeNumber".to_owned(),
        unique: "uid".to_owned(),
        changeable: ["title".to_owned(), "description".to_owned()],
        permissions: ["conf-group-a".to_owned(), "conf-group-b".to_owned()],
        missing_reference: "0badc0de-0000-4000-8000-000000000000".to_owned(),
        request: Box::new(|n| {
            let mut r = person(&format!("Conf.User{n}"), &format!("conf-{n:04}"));
            r.attributes
                .insert("title".to_owned(), text("Beleidsmedewerker"));
            r.attributes
                .insert("description".to_owned(), text(&format!("person {n}")));
            r
        }),
    }
}

async fn create_new(t: &LdapTarget, r: &CreateRequest) -> String {
    match t.create(r).await.expect("create") {
        Created::New(reference) => reference,
        other => panic!("expected a new account, got {other:?}"),
    }
}

async fn dn(t: &LdapTarget, reference: &str) -> String {
    t.dn_of(reference).await.expect("dn").expect("known")
}

#[tokio::test]
async fn conformance_suite_passes() {
    let slapd = Slapd::start().expect("slapd");
    let t = target(&slapd, "").await;
    let passed = conformance::run_all(&t, &fixture()).await;
    assert!(passed.is_ok(), "{}", passed.unwrap_err());
}

#[tokio::test]
async fn create_get_correlate_list() {
    let slapd = Slapd::start().expect("slapd");
    let t = target(&slapd, "").await;
    let r = person("jdoe", "E1");
    let reference = create_new(&t, &r).await;
    // The reference is the entryUUID, not the DN.
    assert_eq!(reference.len(), 36, "{reference}");
    assert_eq!(dn(&t, &reference).await, format!("uid=jdoe,{PEOPLE}"));
    let got = t.get(&reference).await.unwrap().expect("found");
    assert_eq!(got.attributes.get("uid"), Some(&text("jdoe")));
    assert_eq!(got.attributes.get("container"), Some(&text(PEOPLE)));
    assert!(got.enabled);
    let found = t
        .correlate("employeeNumber", &text("E1"))
        .await
        .unwrap()
        .expect("correlates");
    assert_eq!(found.reference, reference);
    assert!(
        t.correlate("employeeNumber", &text("E2"))
            .await
            .unwrap()
            .is_none()
    );
    let listed = t.list_accounts().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].reference, reference);
    // A fresh target (no cache) resolves the reference by searching.
    let t2 = target(&slapd, "").await;
    assert!(t2.get(&reference).await.unwrap().is_some());
}

#[tokio::test]
async fn starttls_and_ldaps_connect_with_the_ca_file() {
    let slapd = Slapd::start().expect("slapd");
    let ca = slapd.ca_file().display().to_string();
    let mut starttls = table(&slapd, "");
    starttls.insert("starttls".into(), true.into());
    starttls.insert("ca_file".into(), ca.clone().into());
    let t = connect("dir", LdapConfig::from_table("dir", &starttls).unwrap())
        .await
        .expect("StartTLS connects");
    create_new(&t, &person("tls1", "T1")).await;

    let mut ldaps = table(&slapd, "");
    ldaps.remove("starttls");
    ldaps.insert("url".into(), slapd.ldaps_url().into());
    ldaps.insert("ca_file".into(), ca.into());
    let t = connect("dir", LdapConfig::from_table("dir", &ldaps).unwrap())
        .await
        .expect("LDAPS connects");
    assert_eq!(t.list_accounts().await.unwrap().len(), 1);

    // Explicitly unverified (labs): connects without the CA.
    let mut lab = table(&slapd, "");
    lab.remove("starttls");
    lab.insert("url".into(), slapd.ldaps_url().into());
    lab.insert("tls_verify".into(), false.into());
    connect("dir", LdapConfig::from_table("dir", &lab).unwrap())
        .await
        .expect("unverified LDAPS connects");
}

#[tokio::test]
async fn untrusted_certificate_wrong_password_and_unreachable_are_distinct() {
    let slapd = Slapd::start().expect("slapd");
    // A CA that did not sign the server's certificate.
    let mut untrusted = table(&slapd, "");
    untrusted.remove("starttls");
    untrusted.insert("url".into(), slapd.ldaps_url().into());
    untrusted.insert(
        "ca_file".into(),
        slapd.pki().untrusted_ca_pem.display().to_string().into(),
    );
    let e = connect("dir", LdapConfig::from_table("dir", &untrusted).unwrap())
        .await
        .err()
        .expect("refused");
    assert!(matches!(e, LdapError::Certificate { .. }), "{e:?}");
    assert!(e.to_string().contains("not trusted"), "{e}");
    // The same over StartTLS.
    let mut untrusted = table(&slapd, "");
    untrusted.insert("starttls".into(), true.into());
    untrusted.insert(
        "ca_file".into(),
        slapd.pki().untrusted_ca_pem.display().to_string().into(),
    );
    let e = connect("dir", LdapConfig::from_table("dir", &untrusted).unwrap())
        .await
        .err()
        .expect("refused");
    assert!(matches!(e, LdapError::Certificate { .. }), "{e:?}");

    let wrong = slapd.dir().join("wrong-password");
    std::fs::write(&wrong, "not the password\n").unwrap();
    let mut bad = table(&slapd, "");
    bad.insert("password_file".into(), wrong.display().to_string().into());
    let e = connect("dir", LdapConfig::from_table("dir", &bad).unwrap())
        .await
        .err()
        .expect("refused");
    assert!(matches!(e, LdapError::InvalidCredentials { .. }), "{e:?}");
    assert!(!e.to_string().contains("not the password"));

    let mut gone = table(&slapd, "");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    gone.insert("url".into(), format!("ldap://127.0.0.1:{port}").into());
    let e = connect("dir", LdapConfig::from_table("dir", &gone).unwrap())
        .await
        .err()
        .expect("unreachable");
    assert!(matches!(e, LdapError::Unreachable { .. }), "{e:?}");
    let te: TargetError = e.into();
    assert!(te.is_unavailable());
}

#[tokio::test]
async fn secret_not_found_names_the_variable_or_file_never_the_secret() {
    let slapd = Slapd::start().expect("slapd");
    let mut t = table(&slapd, "");
    t.remove("password_file");
    t.insert(
        "password_env".into(),
        "KOPPEL_TEST_SURELY_UNSET_PASSWORD".into(),
    );
    let e = connect("dir", LdapConfig::from_table("dir", &t).unwrap())
        .await
        .err()
        .expect("no secret");
    assert!(matches!(e, LdapError::SecretNotFound { .. }), "{e:?}");
    assert!(e.to_string().contains("KOPPEL_TEST_SURELY_UNSET_PASSWORD"));

    let mut t = table(&slapd, "");
    t.insert("password_file".into(), "/nonexistent/koppel-secret".into());
    let e = connect("dir", LdapConfig::from_table("dir", &t).unwrap())
        .await
        .err()
        .expect("no secret");
    assert!(matches!(e, LdapError::SecretNotFound { .. }), "{e:?}");
    assert!(e.to_string().contains("/nonexistent/koppel-secret"), "{e}");
}

/// Runs in a child process with the password in its environment (setting the environment
/// of this multi-threaded test process is not sound).
#[tokio::test]
async fn secret_by_env_var() {
    if let Ok(url) = std::env::var("KOPPEL_TEST_CHILD_URL") {
        let text = format!(
            r#"flavour = "openldap"
url = "{url}"
starttls = false
bind_dn = "{}"
password_env = "KOPPEL_TEST_CHILD_PASSWORD"
base = "{PEOPLE}""#,
            Slapd::ROOT_DN
        );
        let table: toml::Table = toml::from_str(&text).unwrap();
        let t = connect("dir", LdapConfig::from_table("dir", &table).unwrap())
            .await
            .expect("binds with the password from the environment");
        t.list_accounts().await.unwrap();
        return;
    }
    let slapd = Slapd::start().expect("slapd");
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args(["--exact", "secret_by_env_var", "--nocapture"])
        .env("KOPPEL_TEST_CHILD_URL", slapd.url())
        .env("KOPPEL_TEST_CHILD_PASSWORD", slapd.password())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn config_errors_name_the_key_path() {
    let parse = |s: &str| LdapConfig::from_table("ad", &toml::from_str(s).unwrap());
    let base = r#"flavour = "openldap"
url = "ldap://127.0.0.1"
bind_dn = "cn=x"
password_env = "X"
base = "dc=x"
"#;
    assert!(parse(base).is_ok());
    let e = parse(&format!("{base}pagesize = 3")).unwrap_err();
    assert!(matches!(e, LdapError::Config { .. }));
    assert!(e.to_string().contains("targets.ad.connection"), "{e}");
    assert!(e.to_string().contains("pagesize"), "{e}");
    let e = parse(&format!("{base}page_size = \"x\"")).unwrap_err();
    assert!(
        e.to_string().contains("targets.ad.connection.page_size"),
        "{e}"
    );
    let e = parse(&format!("{base}[groups]\nmember_attribute = \"x)(y\"")).unwrap_err();
    assert!(
        e.to_string()
            .contains("targets.ad.connection.groups.member_attribute"),
        "{e}"
    );
    let e = parse(&base.replace("password_env = \"X\"\n", "")).unwrap_err();
    assert!(e.to_string().contains("password"), "{e}");
    let e = parse(&format!("{base}password_file = \"/x\"")).unwrap_err();
    assert!(e.to_string().contains("not both"), "{e}");
    let e = parse(&format!("{base}[disable]\nmethod = \"nope\"")).unwrap_err();
    assert!(e.to_string().contains("disable"), "{e}");
    let e = parse(&format!("{base}[delete]\nmode = \"move\"")).unwrap_err();
    assert!(e.to_string().contains("delete"), "{e}");
}

const HOSTILE: [&str; 5] = [
    "O'Brien, Jr. (Sales)*\\",
    "=#+<>;\"",
    "  spaced  ",
    "#hash",
    "Ĳsbrand Müller",
];

#[tokio::test]
async fn hostile_names_are_escaped_everywhere() {
    let slapd = Slapd::start().expect("slapd");
    let t = target(
        &slapd,
        "create_containers = true\n[disable]\nmethod = \"ppolicy\"",
    )
    .await;
    for (i, name) in HOSTILE.iter().enumerate() {
        let employee = format!("{name}-{i}");
        let mut r = person(name, &employee);
        // mail is IA5: no room for these names.
        r.attributes.remove("mail");
        r.attributes.insert(
            "container".to_owned(),
            text(&format!("ou={},{PEOPLE}", ldap3::dn_escape(*name))),
        );
        let reference = create_new(&t, &r).await;
        let account = t.get(&reference).await.unwrap().expect("found");
        assert_eq!(account.attributes.get("uid"), Some(&text(name)));
        // Correlation by the hostile value finds exactly this account.
        let found = t
            .correlate("employeeNumber", &text(&employee))
            .await
            .unwrap()
            .expect("correlates");
        assert_eq!(found.reference, reference);
        // A wildcard-looking value matches nothing else.
        assert!(
            t.correlate("employeeNumber", &text("*"))
                .await
                .unwrap()
                .is_none()
        );
        assert!(!t.is_unique("uid", name, None).await.unwrap(), "{name:?}");
        assert!(t.is_unique("uid", name, Some(&reference)).await.unwrap());
        // Creating it again adopts it.
        assert_eq!(
            t.create(&r).await.unwrap(),
            Created::Adopted(reference.clone())
        );
        // Move to another hostile container and rename; the reference stays.
        let moved = format!("ou=moved {},{PEOPLE}", ldap3::dn_escape(*name));
        let changes = BTreeMap::from([
            ("container".to_owned(), text(&moved)),
            ("uid".to_owned(), text(&format!("{name} 2"))),
        ]);
        t.update(&reference, &changes)
            .await
            .expect("move and rename");
        let account = t.get(&reference).await.unwrap().expect("still there");
        assert_eq!(account.reference, reference);
        assert!(
            t.correlate("uid", &text(&format!("{name} 2")))
                .await
                .unwrap()
                .is_some()
        );
    }
    assert!(t.is_unique("uid", "*", None).await.unwrap());
    assert_eq!(t.list_accounts().await.unwrap().len(), HOSTILE.len());
}

#[tokio::test]
async fn move_and_rename_keep_the_reference() {
    let slapd = Slapd::start().expect("slapd");
    slapd
        .ldapadd(&format!(
            "dn: ou=Sales,{PEOPLE}\nobjectClass: organizationalUnit\nou: Sales\n"
        ))
        .unwrap();
    let t = target(&slapd, "").await;
    let reference = create_new(&t, &person("mover", "M1")).await;
    t.grant(&reference, "movers").await.unwrap();
    let to_sales = BTreeMap::from([
        ("container".to_owned(), text(&format!("ou=Sales,{PEOPLE}"))),
        ("title".to_owned(), text("Seller")),
    ]);
    t.update(&reference, &to_sales).await.unwrap();
    assert_eq!(
        dn(&t, &reference).await,
        format!("uid=mover,ou=Sales,{PEOPLE}")
    );
    let a = t.get(&reference).await.unwrap().unwrap();
    assert_eq!(a.attributes.get("title"), Some(&text("Seller")));
    assert!(a.permissions.contains("movers"), "{:?}", a.permissions);
    let rename = BTreeMap::from([("uid".to_owned(), text("mover2"))]);
    t.update(&reference, &rename).await.unwrap();
    assert_eq!(
        dn(&t, &reference).await,
        format!("uid=mover2,ou=Sales,{PEOPLE}")
    );
    let a = t.get(&reference).await.unwrap().unwrap();
    assert_eq!(a.attributes.get("uid"), Some(&text("mover2")));
    // A missing container is refused without create_containers.
    let nowhere = BTreeMap::from([(
        "container".to_owned(),
        text(&format!("ou=Nowhere,{PEOPLE}")),
    )]);
    let e = t.update(&reference, &nowhere).await.unwrap_err();
    assert!(matches!(e, TargetError::Rejected { .. }), "{e:?}");
    // Moved outside koppel: the cached DN is stale, the next update finds it again.
    slapd
        .ldapmodify(&format!(
            "dn: uid=mover2,ou=Sales,{PEOPLE}\nchangetype: modrdn\nnewrdn: uid=mover2\ndeleteoldrdn: 1\nnewsuperior: {PEOPLE}\n"
        ))
        .unwrap();
    t.update(
        &reference,
        &BTreeMap::from([("title".to_owned(), text("Back"))]),
    )
    .await
    .unwrap();
    assert_eq!(dn(&t, &reference).await, format!("uid=mover2,{PEOPLE}"));
}

#[tokio::test]
async fn disable_by_ppolicy_and_by_attribute() {
    let slapd = Slapd::start().expect("slapd");
    let t = target(&slapd, "").await;
    let r = create_new(&t, &person("pp", "P1")).await;
    t.set_enabled(&r, false).await.unwrap();
    let out = std::process::Command::new("ldapsearch")
        .args([
            "-x",
            "-H",
            &slapd.url(),
            "-D",
            slapd.bind_dn(),
            "-w",
            slapd.password(),
        ])
        .args(["-b", PEOPLE, "(uid=pp)", "pwdAccountLockedTime"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("pwdAccountLockedTime: 000001010000Z"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!t.get(&r).await.unwrap().unwrap().enabled);
    t.set_enabled(&r, true).await.unwrap();
    assert!(t.get(&r).await.unwrap().unwrap().enabled);
    // Created disabled.
    let mut off = person("pp-off", "P2");
    off.enabled = false;
    let r2 = create_new(&t, &off).await;
    assert!(!t.get(&r2).await.unwrap().unwrap().enabled);

    let t = target(
        &slapd,
        "[disable]\nmethod = \"attribute\"\nattribute = \"employeeType\"\nvalue = \"disabled\"\nenabled_value = \"active\"",
    )
    .await;
    let r = create_new(&t, &person("attr", "A1")).await;
    let a = t.get(&r).await.unwrap().unwrap();
    assert!(a.enabled);
    assert_eq!(a.attributes.get("employeeType"), Some(&text("active")));
    t.set_enabled(&r, false).await.unwrap();
    let a = t.get(&r).await.unwrap().unwrap();
    assert!(!a.enabled);
    assert_eq!(a.attributes.get("employeeType"), Some(&text("disabled")));
}

#[tokio::test]
async fn delete_and_delete_as_move() {
    let slapd = Slapd::start().expect("slapd");
    let t = target(&slapd, "").await;
    let r = create_new(&t, &person("gone", "D1")).await;
    t.grant(&r, "leavers").await.unwrap();
    t.delete(&r).await.unwrap();
    assert!(t.get(&r).await.unwrap().is_none());
    t.delete(&r).await.unwrap();
    // Its membership went with it (the group keeps the placeholder).
    assert!(t.group_members("leavers").await.unwrap().is_empty());

    let disabled = format!("ou=Disabled,{PEOPLE}");
    let t = target(
        &slapd,
        &format!("[delete]\nmode = \"move\"\ncontainer = \"{disabled}\""),
    )
    .await;
    let r = create_new(&t, &person("parked", "D2")).await;
    t.delete(&r).await.unwrap();
    let a = t.get(&r).await.unwrap().expect("still exists");
    assert!(!a.enabled);
    assert_eq!(a.attributes.get("container"), Some(&text(&disabled)));
    t.delete(&r).await.unwrap();
}

#[tokio::test]
async fn groups_are_idempotent_created_on_demand_and_survive_the_last_revoke() {
    let slapd = Slapd::start().expect("slapd");
    slapd
        .ldapadd(&format!(
            "dn: cn=VPN,{PEOPLE}\nobjectClass: groupOfNames\ncn: VPN\nmember: cn=nobody\n"
        ))
        .unwrap();
    let t = target(
        &slapd,
        &format!("[groups.static]\n\"VPN users\" = \"cn=VPN,{PEOPLE}\""),
    )
    .await;
    let a = create_new(&t, &person("ga", "G1")).await;
    let b = create_new(&t, &person("gb", "G2")).await;
    let dyn_name = "Dept (Sales), Zuid*";
    for r in [&a, &b, &a] {
        t.grant(r, dyn_name).await.unwrap();
        t.grant(r, "VPN users").await.unwrap();
    }
    let perms = t.list_permissions().await.unwrap();
    assert!(perms.contains(&dyn_name.to_owned()), "{perms:?}");
    assert!(perms.contains(&"VPN users".to_owned()), "{perms:?}");
    assert_eq!(t.group_members(dyn_name).await.unwrap().len(), 2);
    let acc = t.get(&a).await.unwrap().unwrap();
    assert!(acc.permissions.contains(dyn_name) && acc.permissions.contains("VPN users"));
    // Revoke both, twice; the last revoke leaves the group with its placeholder.
    for r in [&a, &b, &b] {
        t.revoke(r, dyn_name).await.unwrap();
        t.revoke(r, "VPN users").await.unwrap();
    }
    assert!(t.group_members(dyn_name).await.unwrap().is_empty());
    assert!(
        t.list_permissions()
            .await
            .unwrap()
            .contains(&dyn_name.to_owned())
    );
    assert!(t.get(&a).await.unwrap().unwrap().permissions.is_empty());
    // And it takes members again.
    t.grant(&b, dyn_name).await.unwrap();
    assert_eq!(t.group_members(dyn_name).await.unwrap().len(), 1);
    // Revoking from a group that never existed succeeds.
    t.revoke(&b, "never-made").await.unwrap();
    // Without create_missing a grant to a missing group is refused.
    let strict = target(&slapd, "[groups]\ncreate_missing = false").await;
    let e = strict.grant(&b, "not-there").await.unwrap_err();
    assert!(matches!(e, TargetError::Rejected { .. }), "{e:?}");
}

#[tokio::test]
async fn paged_search_lists_more_entries_than_a_page() {
    let slapd = Slapd::start().expect("slapd");
    let ldif: String = (0..40)
        .map(|i| {
            format!(
                "dn: uid=bulk{i},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: bulk{i}\ncn: Bulk {i}\nsn: Bulk\n\n"
            )
        })
        .collect();
    slapd.ldapadd(&ldif).unwrap();
    // page_size = 7 in every test's configuration: six pages.
    let t = target(&slapd, "").await;
    let listed = t.list_accounts().await.unwrap();
    assert_eq!(listed.len(), 40);
}

#[tokio::test]
async fn correlation_adopts_existing_accounts() {
    let slapd = Slapd::start().expect("slapd");
    slapd
        .ldapadd(&format!(
            "dn: uid=legacy,{PEOPLE}\nobjectClass: inetOrgPerson\nuid: legacy\ncn: Old\nsn: Old\nemployeeNumber: L1\ntitle: Old title\n"
        ))
        .unwrap();
    let t = target(&slapd, "").await;
    let mut r = person("legacy", "L1");
    r.attributes.insert("title".to_owned(), text("New title"));
    r.enabled = false;
    let created = t.create(&r).await.unwrap();
    let Created::Adopted(reference) = created else {
        panic!("expected adoption, got {created:?}")
    };
    let a = t.get(&reference).await.unwrap().unwrap();
    assert_eq!(a.attributes.get("title"), Some(&text("New title")));
    assert_eq!(a.attributes.get("cn"), Some(&text("legacy Full")));
    assert!(!a.enabled);
    assert_eq!(t.list_accounts().await.unwrap().len(), 1);
}

#[tokio::test]
async fn entry_failure_is_rejected_with_the_server_message_and_the_rest_goes_on() {
    let slapd = Slapd::start().expect("slapd");
    let t = target(&slapd, "").await;
    let existing = create_new(&t, &person("taken", "X0")).await;
    // Same DN, another person: entryAlreadyExists with another owner.
    let clash = person("taken", "X1");
    // No sn: objectClassViolation.
    let mut incomplete = person("nosn", "X2");
    incomplete.attributes.remove("sn");
    let ops = vec![
        Op::Create(person("ok1", "X3")),
        Op::Create(clash),
        Op::Create(incomplete),
        Op::Grant {
            reference: existing.clone(),
            permission: "batch".to_owned(),
        },
        Op::Create(person("ok2", "X4")),
    ];
    let results = t.apply(&ops).await;
    assert!(
        matches!(results[0], Ok(Done::Created(Created::New(_)))),
        "{results:?}"
    );
    match &results[1] {
        Err(TargetError::Rejected { message, .. }) => {
            assert!(message.contains("entryAlreadyExists"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    match &results[2] {
        Err(TargetError::Rejected { message, .. }) => {
            assert!(message.contains("objectClassViolation"), "{message}");
            assert!(message.contains("sn"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(results[3], Ok(Done::Ok));
    assert!(matches!(results[4], Ok(Done::Created(Created::New(_)))));
    assert_eq!(t.list_accounts().await.unwrap().len(), 3);
}

#[tokio::test]
async fn apply_coalesces_memberships_and_reports_each() {
    let slapd = Slapd::start().expect("slapd");
    let t = target(&slapd, "").await;
    let creates: Vec<Op> = (0..30)
        .map(|i| Op::Create(person(&format!("co{i}"), &format!("C{i}"))))
        .collect();
    let refs: Vec<String> = t
        .apply(&creates)
        .await
        .into_iter()
        .map(|r| match r {
            Ok(Done::Created(c)) => c.reference().to_owned(),
            other => panic!("{other:?}"),
        })
        .collect();
    // A fresh target: references resolved in bulk, grants written per group.
    let t = target(&slapd, "").await;
    let mut grants: Vec<Op> = refs
        .iter()
        .enumerate()
        .map(|(i, r)| Op::Grant {
            reference: r.clone(),
            permission: format!("dept{}", i % 3),
        })
        .collect();
    grants.push(Op::Grant {
        reference: "0badc0de-0000-4000-8000-000000000000".to_owned(),
        permission: "dept0".to_owned(),
    });
    let results = t.apply(&grants).await;
    assert!(
        results[..30].iter().all(|r| *r == Ok(Done::Ok)),
        "{results:?}"
    );
    assert!(matches!(
        results[30],
        Err(TargetError::NoSuchAccount { .. })
    ));
    for g in 0..3 {
        assert_eq!(
            t.group_members(&format!("dept{g}")).await.unwrap().len(),
            10
        );
    }
    let again = t.apply(&grants[..30]).await;
    assert!(again.iter().all(|r| *r == Ok(Done::Ok)));
    let revokes: Vec<Op> = refs
        .iter()
        .enumerate()
        .map(|(i, r)| Op::Revoke {
            reference: r.clone(),
            permission: format!("dept{}", i % 3),
        })
        .collect();
    assert!(t.apply(&revokes).await.iter().all(|r| *r == Ok(Done::Ok)));
    for g in 0..3 {
        assert!(
            t.group_members(&format!("dept{g}"))
                .await
                .unwrap()
                .is_empty()
        );
    }
}

#[tokio::test]
async fn stopped_server_is_unavailable_then_works_again() {
    let mut slapd = Slapd::start().expect("slapd");
    let t = target(&slapd, "timeout_seconds = 3").await;
    let r = create_new(&t, &person("before", "S1")).await;
    slapd.stop();
    let ops = vec![
        Op::Create(person("during", "S2")),
        Op::Update {
            reference: r.clone(),
            changes: BTreeMap::from([("title".to_owned(), text("x"))]),
        },
    ];
    let results = t.apply(&ops).await;
    for res in &results {
        assert!(matches!(res, Err(e) if e.is_unavailable()), "{results:?}");
    }
    let e = t.get(&r).await.unwrap_err();
    assert!(e.is_unavailable(), "{e:?}");
    slapd.start_again().expect("restart");
    let results = t.apply(&ops).await;
    assert!(
        matches!(results[0], Ok(Done::Created(Created::New(_)))),
        "{results:?}"
    );
    assert_eq!(results[1], Ok(Done::Ok));
    assert_eq!(t.list_accounts().await.unwrap().len(), 2);
}

/// 10,000 accounts with a department group each, through `apply` (batches of 1,000 as the
/// engine sends them) and as one LDIF through `ldapadd`, each into its own fresh slapd.
/// `cargo test -p koppel-ldap --release --test openldap -- --ignored --nocapture bench_`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by hand"]
async fn bench_10k_creates_and_memberships_vs_ldapadd() {
    let n: usize = std::env::var("KOPPEL_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let departments = 20;
    let slapd = Slapd::start().expect("slapd");
    let t = target(&slapd, "").await;
    let started = std::time::Instant::now();
    let mut refs = Vec::with_capacity(n);
    let creates: Vec<Op> = (0..n)
        .map(|i| Op::Create(person(&format!("b{i:05}"), &format!("B{i:05}"))))
        .collect();
    for batch in creates.chunks(1000) {
        for r in t.apply(batch).await {
            match r {
                Ok(Done::Created(c)) => refs.push(c.reference().to_owned()),
                other => panic!("{other:?}"),
            }
        }
    }
    let created = started.elapsed();
    let grants: Vec<Op> = refs
        .iter()
        .enumerate()
        .map(|(i, r)| Op::Grant {
            reference: r.clone(),
            permission: format!("dept{:02}", i % departments),
        })
        .collect();
    for batch in grants.chunks(1000) {
        assert!(t.apply(batch).await.iter().all(|r| *r == Ok(Done::Ok)));
    }
    let koppel = started.elapsed();
    drop(slapd);

    let slapd = Slapd::start().expect("slapd");
    let mut ldif = String::new();
    for i in 0..n {
        ldif.push_str(&format!(
            "dn: uid=b{i:05},{PEOPLE}\nobjectClass: top\nobjectClass: person\n\
             objectClass: organizationalPerson\nobjectClass: inetOrgPerson\nuid: b{i:05}\n\
             cn: b{i:05} Full\nsn: Family\ngivenName: Given\nemployeeNumber: B{i:05}\n\
             mail: B{i:05}@example.test\n\n"
        ));
    }
    for d in 0..departments {
        ldif.push_str(&format!(
            "dn: cn=dept{d:02},{GROUPS}\nobjectClass: top\nobjectClass: groupOfNames\ncn: dept{d:02}\n"
        ));
        for i in (d..n).step_by(departments) {
            ldif.push_str(&format!("member: uid=b{i:05},{PEOPLE}\n"));
        }
        ldif.push('\n');
    }
    let started = std::time::Instant::now();
    slapd.ldapadd(&ldif).expect("ldapadd");
    let ldapadd = started.elapsed();
    let rate = |d: std::time::Duration| n as f64 / d.as_secs_f64();
    println!(
        "{n} accounts + memberships: koppel {:.2} s ({:.0}/s; creates alone {:.2} s), \
         ldapadd {:.2} s ({:.0}/s), ratio koppel/ldapadd {:.2}",
        koppel.as_secs_f64(),
        rate(koppel),
        created.as_secs_f64(),
        ldapadd.as_secs_f64(),
        rate(ldapadd),
        rate(koppel) / rate(ldapadd)
    );
}
