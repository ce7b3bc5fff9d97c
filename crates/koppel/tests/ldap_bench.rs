//! The issue-4 benchmark (ignored in the suite; run it by hand, release build):
//!
//! ```sh
//! cargo test --release -p koppel --test ldap_bench -- --ignored --nocapture --test-threads 1
//! ```
//!
//! `koppel apply` of N synthetic persons (10,000 by default, `KOPPEL_BENCH_PERSONS`) into a real
//! slapd, each an inetOrgPerson plus a membership of their department's group; the same
//! entries, exported from that directory as one LDIF, through `ldapadd` into a fresh slapd;
//! a no-change run; and the same apply into the suite's Samba AD DC (`KOPPEL_BENCH_AD_PERSONS`,
//! default 2,000, when `scripts/test-servers start` has run). Figures go to stdout.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use koppel_testkit::samba::Samba;
use koppel_testkit::slapd::Slapd;

fn persons(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn koppel(dir: &Path, args: &[&str]) -> Duration {
    let start = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_koppel"))
        .current_dir(dir)
        .args(args)
        .env("NO_COLOR", "1")
        .env("KOPPEL_ACTOR", "bench")
        .env_remove("KOPPEL_CONFIG")
        .env_remove("KOPPEL_STORE")
        .output()
        .unwrap();
    let took = start.elapsed();
    assert!(
        o.status.success(),
        "koppel {args:?}:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    took
}

/// Synthetic HR data for `n` persons in `dir/hr`.
fn synth(dir: &Path, n: usize) {
    koppel(
        dir,
        &[
            "synth",
            "--persons",
            &n.to_string(),
            "--today",
            "2026-11-23",
            "--out",
            "hr",
        ],
    );
}

const RULES: &str = r#"
[[rules]]
id = "staff"
accounts = ["dir"]
permissions = [{ target = "dir", dynamic = "'PREFIX' + lower(contract.department.code)" }]
"#;

const OPENLDAP_GENERATOR: &str = r#"
[targets.generators.username]
candidates = [
  "ascii(lower(compact(person.name.given.substring(0, 1) + person.name.family_prefix + person.name.family)))",
  "ascii(lower(compact(person.name.given + person.name.family_prefix + person.name.family)))",
]
fields = { uid = "value", mail = "value + '@example.test'" }
max_iterations = 999
"#;

// sAMAccountName has at most 20 characters and is unique in the whole domain, which other
// test runs share: the run's tag keeps it apart.
const AD_GENERATOR: &str = r#"
[targets.generators.username]
candidates = ["'TAG' + person.external_id"]
fields = { sAMAccountName = "value", userPrincipalName = "value + '@example.test'" }
"#;

fn openldap_config(slapd: &Slapd) -> String {
    format!(
        r#"version = 1
[[sources]]
kind = "csv"
dir = "hr"
[[targets]]
name = "dir"
kind = "ldap"
correlation = "employeeNumber"
lifecycle = {{ create_days_before = 14 }}
[targets.connection]
flavour = "openldap"
url = "{url}"
ca_file = "{ca}"
bind_dn = "{bind}"
password_file = "{pw}"
base = "{people}"
[targets.connection.groups]
container = "{groups}"
[targets.attributes]
employeeNumber = "person.external_id"
cn = "display_name(person)"
sn = "family_name(person)"
givenName = "person.name.given"
title = "contract.title.name"
departmentNumber = "contract.department.code"
{generators}
{rules}"#,
        url = slapd.url(),
        ca = slapd.ca_file().display(),
        bind = slapd.bind_dn(),
        pw = slapd.password_file().unwrap().display(),
        people = Slapd::PEOPLE,
        groups = Slapd::GROUPS,
        generators = OPENLDAP_GENERATOR,
        rules = RULES.replace("PREFIX", "afd-"),
    )
}

fn ldap(tool: &str, slapd: &Slapd, extra: &[&str]) -> std::process::Output {
    let o = Command::new(tool)
        .args(["-x", "-H"])
        .arg(slapd.url())
        .args(["-D", slapd.bind_dn(), "-w", slapd.password()])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{tool}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn count(slapd: &Slapd, base: &str, filter: &str) -> usize {
    let o = ldap(
        "ldapsearch",
        slapd,
        &["-LLL", "-o", "ldif-wrap=no", "-b", base, filter, "1.1"],
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.starts_with("dn"))
        .count()
}

#[test]
#[ignore = "benchmark: run by hand, see the module docs"]
fn bench_openldap_koppel_against_ldapadd_and_samba() {
    let n = persons("KOPPEL_BENCH_PERSONS", 10_000);
    let slapd = Slapd::start().expect("slapd starts");
    let ws = tempfile::tempdir().unwrap();
    let dir = ws.path();
    synth(dir, n);
    std::fs::write(dir.join("koppel.toml"), openldap_config(&slapd)).unwrap();

    let apply = koppel(dir, &["apply", "--now", "2026-11-23"]);
    let accounts = count(&slapd, Slapd::PEOPLE, "(objectClass=inetOrgPerson)");
    let groups = count(&slapd, Slapd::GROUPS, "(objectClass=groupOfNames)");
    let memberships = {
        let o = ldap(
            "ldapsearch",
            &slapd,
            &[
                "-LLL",
                "-o",
                "ldif-wrap=no",
                "-b",
                Slapd::GROUPS,
                "(objectClass=groupOfNames)",
                "member",
            ],
        );
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.starts_with("member:"))
            .count()
    };
    let no_change = koppel(dir, &["apply", "--now", "2026-11-23"]);

    // The same entries as one LDIF, as `ldapsearch` gives them back, into a fresh server.
    let mut ldif = String::new();
    for (base, filter, attrs) in [
        (
            Slapd::PEOPLE,
            "(objectClass=inetOrgPerson)",
            &[
                "objectClass",
                "uid",
                "cn",
                "sn",
                "givenName",
                "title",
                "departmentNumber",
                "mail",
                "employeeNumber",
            ][..],
        ),
        (
            Slapd::GROUPS,
            "(objectClass=groupOfNames)",
            &["objectClass", "cn", "member"][..],
        ),
    ] {
        let mut args = vec!["-LLL", "-o", "ldif-wrap=no", "-b", base, filter];
        args.extend_from_slice(attrs);
        let o = ldap("ldapsearch", &slapd, &args);
        ldif.push_str(&String::from_utf8_lossy(&o.stdout));
        ldif.push('\n');
    }
    let file = dir.join("same.ldif");
    std::fs::write(&file, &ldif).unwrap();
    let fresh = Slapd::start().expect("second slapd starts");
    let start = Instant::now();
    ldap("ldapadd", &fresh, &["-f", file.to_str().unwrap()]);
    let ldapadd = start.elapsed();
    assert_eq!(
        count(&fresh, Slapd::PEOPLE, "(objectClass=inetOrgPerson)"),
        accounts
    );

    let rate = |d: Duration| accounts as f64 / d.as_secs_f64();
    println!("\n== OpenLDAP (slapd 2.5, mdb dbnosync, memberof+refint+ppolicy), {n} persons");
    println!(
        "koppel apply : {accounts} accounts, {groups} groups, {memberships} memberships in {:.2} s = {:.0} accounts/s (whole run: sources, plan, journal, store, audit)",
        apply.as_secs_f64(),
        rate(apply)
    );
    println!(
        "ldapadd      : the same {accounts} accounts + {groups} groups with their members, one LDIF, in {:.2} s = {:.0} accounts/s",
        ldapadd.as_secs_f64(),
        rate(ldapadd)
    );
    println!(
        "ratio koppel/ldapadd (rate): {:.2}",
        ldapadd.as_secs_f64() / apply.as_secs_f64()
    );
    println!(
        "no-change run against {accounts} existing accounts: {:.2} s",
        no_change.as_secs_f64()
    );

    let Some(samba) = Samba::from_env() else {
        println!(
            "Samba AD: skipped (run scripts/test-servers start and source target/test-servers/env)"
        );
        return;
    };
    let n_ad = persons("KOPPEL_BENCH_AD_PERSONS", 2_000);
    let tag = format!("b{}", std::process::id() % 100_000);
    let ou = samba.fresh_ou("bench");
    let groups_ou = samba.fresh_ou_under("groups", &ou);
    let ws = tempfile::tempdir().unwrap();
    let dir = ws.path();
    synth(dir, n_ad);
    let config = format!(
        r#"version = 1
[[sources]]
kind = "csv"
dir = "hr"
[[targets]]
name = "dir"
kind = "ldap"
correlation = "employeeID"
lifecycle = {{ create_days_before = 14 }}
[targets.connection]
{conn}base = "{ou}"
[targets.connection.groups]
container = "{groups_ou}"
[targets.attributes]
employeeID = "person.external_id"
cn = "display_name(person) + ' ' + person.external_id"
sn = "family_name(person)"
givenName = "person.name.given"
title = "contract.title.name"
department = "contract.department.name"
{generators}
{rules}"#,
        conn = samba.connection_toml(),
        generators = AD_GENERATOR.replace("TAG", &tag),
        rules = RULES.replace("PREFIX", &format!("{tag}-afd-")),
    );
    std::fs::write(dir.join("koppel.toml"), config).unwrap();
    let apply = koppel(dir, &["apply", "--now", "2026-11-23"]);
    let no_change = koppel(dir, &["apply", "--now", "2026-11-23"]);
    let state: serde_json::Value = serde_json::from_slice(
        &Command::new(env!("CARGO_BIN_EXE_koppel"))
            .current_dir(dir)
            .args(["state", "--output", "json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let made = state["targets"]["dir"]["accounts"]
        .as_object()
        .map_or(0, |m| m.len());
    println!("\n== Samba 4.17 AD DC (LDAPS, ldb:nosync), {n_ad} persons");
    println!(
        "koppel apply : {made} users (random unicodePwd each, enabled) + department group memberships in {:.2} s = {:.0} users/s",
        apply.as_secs_f64(),
        made as f64 / apply.as_secs_f64()
    );
    println!(
        "no-change run against {made} existing users: {:.2} s",
        no_change.as_secs_f64()
    );
    samba.ldapdelete_tree(&ou);
}
