//! `koppel apply` into a real OpenLDAP (`slapd`, one per test): the demo organisation through
//! the LDAP example configuration, a month of joiners, movers and leavers, reconcile with
//! repair, live uniqueness for generators, and a server that goes away in the middle of a run.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{examples, koppel, ok, run, text, use_hr};
use koppel_testkit::slapd::Slapd;

/// The LDAP example configuration, pointed at `slapd` over StartTLS with its test CA.
fn workspace(slapd: &Slapd) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(examples().join("ldap/koppel.toml")).unwrap();
    let text = text
        .replace("dir = \"../demo/hr\"", "dir = \"hr\"")
        .replace("ldap://ldap.example.test", &slapd.url())
        .replace(
            "/etc/ssl/certs/koppel-ldap-ca.pem",
            &slapd.ca_file().display().to_string(),
        )
        .replace(
            "password_env = \"KOPPEL_LDAP_PASSWORD\"",
            &format!(
                "password_file = \"{}\"",
                slapd.password_file().unwrap().display()
            ),
        );
    std::fs::write(dir.path().join("koppel.toml"), text).unwrap();
    use_hr(dir.path(), "hr");
    dir
}

/// `ldapsearch` as an administrator would run it: entries as (dn, attribute lines).
fn search(slapd: &Slapd, base: &str, filter: &str, attrs: &[&str]) -> Vec<(String, Vec<String>)> {
    let o = Command::new("ldapsearch")
        .args(["-x", "-LLL", "-o", "ldif-wrap=no", "-H"])
        .arg(slapd.url())
        .args([
            "-D",
            slapd.bind_dn(),
            "-w",
            slapd.password(),
            "-b",
            base,
            filter,
        ])
        .args(attrs)
        .output()
        .expect("ldapsearch runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    out.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|b| {
            let mut lines = b.lines().map(decode);
            let first = lines.next().unwrap_or_default();
            let dn = first.strip_prefix("dn: ").unwrap_or(&first).to_owned();
            (dn, lines.collect())
        })
        .collect()
}

/// One LDIF line with a base64 value (`attr:: …`) decoded to `attr: value`.
fn decode(line: &str) -> String {
    match line.split_once(":: ") {
        Some((attr, b64)) => {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("ldapsearch writes valid base64");
            format!("{attr}: {}", String::from_utf8_lossy(&bytes))
        }
        None => line.to_owned(),
    }
}

/// `koppel reconcile ldap` as JSON.
fn reconcile(dir: &Path) -> serde_json::Value {
    let out = ok(
        dir,
        &[
            "reconcile",
            "ldap",
            "--now",
            "2026-12-23",
            "--output",
            "json",
        ],
    );
    serde_json::from_str(&out).unwrap()
}

fn person_entry(slapd: &Slapd, employee: &str) -> (String, Vec<String>) {
    let mut found = search(
        slapd,
        Slapd::PEOPLE,
        &format!("(employeeNumber={employee})"),
        &["*", "entryUUID", "memberOf", "pwdAccountLockedTime"],
    );
    assert_eq!(found.len(), 1, "one entry for {employee}: {found:?}");
    found.remove(0)
}

fn value(entry: &(String, Vec<String>), attr: &str) -> Option<String> {
    let prefix = format!("{attr}: ");
    entry
        .1
        .iter()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
}

fn values(entry: &(String, Vec<String>), attr: &str) -> Vec<String> {
    let prefix = format!("{attr}: ");
    entry
        .1
        .iter()
        .filter_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
        .collect()
}

#[test]
fn the_demo_organisation_into_openldap_a_month_of_change_and_reconcile() {
    let mut slapd = Slapd::start().expect("slapd starts");
    // Someone already has the username the generator would give 1000901 Marieke Jansen
    // first: the live check must skip it.
    slapd
        .ldapadd(
            "dn: uid=mjansendevries,ou=People,dc=example,dc=test\n\
             objectClass: inetOrgPerson\nuid: mjansendevries\ncn: Manual Entry\nsn: Entry\n\
             employeeNumber: X-1\n",
        )
        .unwrap();
    let ws = workspace(&slapd);
    let dir = ws.path();
    ok(dir, &["validate"]);
    // `koppel plan` checks generated values against the live directory too.
    let planned: serde_json::Value = serde_json::from_str(&ok(
        dir,
        &["plan", "--now", "2026-11-23", "--output", "json"],
    ))
    .unwrap();
    let uid = planned["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["person"] == "1000901" && a["kind"] == "create")
        .map(|a| a["attributes"]["uid"].clone());
    assert!(uid.is_some(), "1000901 is created");
    assert_ne!(uid, Some(serde_json::json!("mjansendevries")));
    let applied = ok(dir, &["apply", "--now", "2026-11-23"]);
    assert!(!applied.contains("failed"), "{applied}");

    let people = search(&slapd, Slapd::PEOPLE, "(employeeNumber=1*)", &["1.1"]);
    let state: serde_json::Value =
        serde_json::from_str(&ok(dir, &["state", "--output", "json"])).unwrap();
    let known = state["targets"]["ldap"]["accounts"].as_object().unwrap();
    assert!(known.len() > 400, "{}", known.len());
    assert_eq!(
        people.len(),
        known.len(),
        "one entry per account koppel knows"
    );

    // A hostile-looking name reached the directory escaped, in its department's OU.
    let obrien = person_entry(&slapd, "1000903");
    assert_eq!(value(&obrien, "sn").as_deref(), Some("O'Brien"));
    let marieke = person_entry(&slapd, "1000901");
    assert_ne!(
        value(&marieke, "uid").as_deref(),
        Some("mjansendevries"),
        "the live value was skipped"
    );
    let uuid = value(&marieke, "entryUUID").unwrap();
    assert_eq!(
        known["1000901"]["reference"].as_str(),
        Some(uuid.as_str()),
        "the reference is the entryUUID"
    );
    let groups = values(&marieke, "memberOf");
    assert!(
        groups
            .iter()
            .any(|g| g == "cn=Alle medewerkers,ou=Groups,dc=example,dc=test"),
        "{groups:?}"
    );

    // Apply, then plan again: nothing to do.
    let plan = run(dir, &["plan", "--now", "2026-11-23", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));

    // An unchanged source makes an empty plan and calls no target: with the server down,
    // the run still succeeds.
    slapd.stop();
    let idle = ok(dir, &["apply", "--now", "2026-11-23"]);
    assert!(!idle.contains("unavailable"), "{idle}");
    slapd.start_again().expect("slapd starts again");

    // A month of change: a mover to another department moves to its OU, same entryUUID.
    let daan_before = person_entry(&slapd, "1000926");
    let person_entry_before_marriage = person_entry(&slapd, "1000925");
    use_hr(dir, "hr-month-later");
    let applied = ok(dir, &["apply", "--now", "2026-12-23"]);
    assert!(!applied.contains("failed"), "{applied}");
    let daan = person_entry(&slapd, "1000926");
    assert_ne!(daan.0, daan_before.0, "moved");
    assert!(
        daan.0
            .ends_with(",ou=Debiteurenadministratie,ou=People,dc=example,dc=test"),
        "{}",
        daan.0
    );
    assert!(daan_before.0.contains(",ou=Werkplek,"), "{}", daan_before.0);
    assert_eq!(value(&daan, "entryUUID"), value(&daan_before, "entryUUID"));
    assert_eq!(value(&daan, "departmentNumber").as_deref(), Some("FIN-AR"));
    assert!(
        values(&daan, "memberOf")
            .iter()
            .any(|g| g.starts_with("cn=afd-fin-ar,")),
        "{daan:?}"
    );
    assert!(
        !values(&daan, "memberOf")
            .iter()
            .any(|g| g.starts_with("cn=afd-ict-wpl,")),
        "the old department group is revoked: {daan:?}"
    );
    // A leaver is disabled (ppolicy lock), not deleted.
    let ingrid = person_entry(&slapd, "1000929");
    assert_eq!(
        value(&ingrid, "pwdAccountLockedTime").as_deref(),
        Some("000001010000Z")
    );
    // A marriage changes the e-mail address, not the uid.
    let lotte_state: serde_json::Value =
        serde_json::from_str(&ok(dir, &["state", "--output", "json"])).unwrap();
    let lotte = person_entry(&slapd, "1000925");
    assert_eq!(
        value(&lotte, "mail"),
        lotte_state["targets"]["ldap"]["accounts"]["1000925"]["attributes"]["mail"]
            .as_str()
            .map(str::to_owned)
    );
    assert!(
        value(&lotte, "mail").unwrap().contains("vandijk"),
        "{lotte:?}"
    );
    assert_eq!(
        value(&lotte, "uid"),
        value(&person_entry_before_marriage, "uid")
    );
    let plan = run(dir, &["plan", "--now", "2026-12-23", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));

    // Reconcile: the manual entry is an orphan; an edit behind koppel's back is drift.
    let report = reconcile(dir);
    assert_eq!(report["orphans"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["orphans"][0]["correlation"], "X-1");
    assert_eq!(report["drift"], serde_json::json!([]), "{report}");
    assert_eq!(report["missing_permissions"], serde_json::json!([]));
    slapd
        .ldapmodify(&format!(
            "dn: {}\nchangetype: modify\nreplace: title\ntitle: Edited by hand\n",
            obrien.0
        ))
        .unwrap();
    let report = reconcile(dir);
    assert_eq!(report["drift"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["drift"][0]["person"], "1000903");
    assert_eq!(
        report["drift"][0]["attributes"]["title"][1],
        "Edited by hand"
    );
    let repaired = ok(
        dir,
        &["reconcile", "ldap", "--now", "2026-12-23", "--repair"],
    );
    assert!(repaired.contains("Repair: 1 done, 0 failed"), "{repaired}");
    assert_eq!(
        value(&person_entry(&slapd, "1000903"), "title"),
        value(&obrien, "title")
    );
}

/// What must match between two runs on two servers: the known state and the accounts as
/// the directory lists them, without the server-assigned references (entryUUIDs differ).
fn fingerprint(dir: &Path) -> String {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("reference");
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut out = String::new();
    for args in [
        &["state", "--output", "json"][..],
        &["accounts", "ldap", "--output", "json"][..],
    ] {
        let mut v: serde_json::Value = serde_json::from_str(&ok(dir, args)).unwrap();
        strip(&mut v);
        if let serde_json::Value::Array(a) = &mut v {
            a.sort_by_key(|x| x.to_string());
        }
        out.push_str(&serde_json::to_string_pretty(&v).unwrap());
    }
    out
}

#[test]
fn slapd_stopping_mid_apply_leaves_the_run_resumable_and_the_next_run_finishes_it() {
    let clean_server = Slapd::start().expect("slapd starts");
    let clean = workspace(&clean_server);
    ok(clean.path(), &["apply", "--now", "2026-11-23"]);
    let expected = fingerprint(clean.path());

    let mut slapd = Slapd::start().expect("slapd starts");
    let ws = workspace(&slapd);
    let resume = ws.path().join("resume");
    let mut child = koppel(ws.path())
        .args(["apply", "--now", "2026-11-23"])
        .env("KOPPEL_BATCH", "50")
        .env("KOPPEL_TEST_PAUSE_AT", "7")
        .env("KOPPEL_TEST_RESUME_FILE", &resume)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "apply ended before its 7th checkpoint"
        );
        if line.starts_with("KOPPEL-PAUSED") {
            break;
        }
    }
    // The server goes away in the middle of the run; the run goes on without it.
    slapd.stop();
    std::fs::write(&resume, "").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &rest;
    assert!(!out.status.success(), "the run reports the outage:\n{said}");
    assert!(said.contains("unavailable"), "{said}");

    // Back up: the next run finishes the work, nothing twice, nothing lost.
    slapd.start_again().expect("slapd starts again");
    ok(ws.path(), &["apply", "--now", "2026-11-23"]);
    let plan = run(
        ws.path(),
        &["plan", "--now", "2026-11-23", "--detailed-exitcode"],
    );
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    assert!(
        fingerprint(ws.path()) == expected,
        "after the outage and a rerun the directory and state differ from a clean run"
    );
}

/// Invariant 5: no secret appears in a log, a plan, an error or the audit log — not with
/// the most verbose logging, not when the server refuses the password.
#[test]
fn no_secret_reaches_a_log_a_plan_an_error_the_audit_log_or_the_store() {
    let slapd = Slapd::start().expect("slapd starts");
    let ws = workspace(&slapd);
    let dir = ws.path();
    let secret = slapd.password();
    let mut seen = String::new();
    for args in [
        &["plan", "--now", "2026-11-23", "--output", "json"][..],
        &["apply", "--now", "2026-11-23"][..],
        &["state", "--output", "json"][..],
        &["audit", "--output", "json"][..],
        &["accounts", "ldap", "--output", "json"][..],
        &[
            "reconcile",
            "ldap",
            "--now",
            "2026-11-23",
            "--output",
            "json",
        ][..],
    ] {
        let o = koppel(dir)
            .env("KOPPEL_LOG", "trace")
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        seen.push_str(&text(&o));
    }
    assert!(seen.len() > 10_000, "the commands said something");
    assert!(!seen.contains(secret), "the bind password was printed");
    let store = std::fs::read(dir.join("koppel.db")).unwrap();
    let needle = secret.as_bytes();
    assert!(
        !store.windows(needle.len()).any(|w| w == needle),
        "the bind password is in the store"
    );

    // A wrong password: the error says so, without the password.
    let wrong = "Wr0ng-but-Secret-4711";
    std::fs::write(dir.join("wrong-password"), wrong).unwrap();
    let config = std::fs::read_to_string(dir.join("koppel.toml")).unwrap();
    let pw_line = config
        .lines()
        .find(|l| l.starts_with("password_file"))
        .unwrap()
        .to_owned();
    std::fs::write(
        dir.join("koppel.toml"),
        config.replace(&pw_line, "password_file = \"wrong-password\""),
    )
    .unwrap();
    use_hr(dir, "hr-month-later");
    let o = koppel(dir)
        .env("KOPPEL_LOG", "trace")
        .args(["apply", "--now", "2026-12-23"])
        .output()
        .unwrap();
    let said = text(&o);
    assert!(!o.status.success(), "{said}");
    assert!(said.to_lowercase().contains("credentials"), "{said}");
    assert!(
        !said.contains(wrong),
        "the wrong password was printed: {said}"
    );
    let audit = text(&run(dir, &["audit", "--output", "json"]));
    assert!(!audit.contains(wrong));
}
