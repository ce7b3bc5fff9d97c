//! The `ldap` target's `active_directory` flavour against the real Samba AD DC that
//! `scripts/test-servers` starts: conformance suite, userAccountControl, passwords, TLS, ranges.
//!
//! Every test works in its own OU (`Samba::fresh_ou`), so nextest can run them in parallel on
//! the one DC. Assertions read the directory back with `ldapsearch`, an independent client.
//! Without a DC the tests say they are skipped, and fail under `KOPPEL_REQUIRE_SERVERS=1`.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, Hasher, RandomState};

use koppel_connectors::conformance::{self, Fixture};
use koppel_connectors::target::{CreateRequest, Created, Target, TargetError};
use koppel_core::AttrValue;
use koppel_ldap::{LdapConfig, LdapError, LdapTarget, connect};
use koppel_testkit::samba::{Samba, escape_rdn_value, guid_string, ldif_attr};
use koppel_testkit::tls::TestPki;

/// userAccountControl bits (MS-ADTS 2.2.16).
const ACCOUNTDISABLE: i64 = 0x2;
const NORMAL_ACCOUNT: i64 = 0x200;
const DONT_EXPIRE_PASSWORD: i64 = 0x10000;

/// Parses the connection table: the DC's connection lines plus `extra` TOML.
fn config(samba: &Samba, extra: &str) -> LdapConfig {
    let text = format!("{}{extra}", samba.connection_toml());
    let table: toml::Table =
        toml::from_str(&text).unwrap_or_else(|e| panic!("test config is not TOML: {e}\n{text}"));
    LdapConfig::from_table("ad", &table)
        .unwrap_or_else(|e| panic!("test config rejected: {e}\n{text}"))
}

async fn target(samba: &Samba, extra: &str) -> LdapTarget {
    connect("ad", config(samba, extra))
        .await
        .unwrap_or_else(|e| panic!("connecting to the Samba DC: {e}"))
}

/// `base = "<ou>"` as a TOML line.
fn base_line(ou: &str) -> String {
    format!("base = {}\n", toml_str(ou))
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A short value no other test process, and no earlier run against the same DC, uses:
/// sAMAccountName and group names are unique in the whole domain, not per OU.
fn run_tag() -> String {
    // RandomState is seeded from the OS per process: random enough, and no clock (the
    // workspace keeps clock reads out of code paths).
    let random = RandomState::new().build_hasher().finish();
    format!("{:08x}", random & 0xffff_ffff)
}

fn text(s: &str) -> AttrValue {
    AttrValue::Text(s.to_owned())
}

/// A person's account request in `ou`, in the shape of an AD user (attribute names as AD's
/// schema spells them: that is how they come back).
fn person(tag: &str, n: u32, ou: &str, cn: &str) -> CreateRequest {
    let employee = format!("{tag}-{n:04}");
    let sam = format!("k{tag}{n:03}");
    let attributes: BTreeMap<String, AttrValue> = [
        ("cn", text(cn)),
        ("container", text(ou)),
        ("employeeID", text(&employee)),
        ("sAMAccountName", text(&sam)),
        ("userPrincipalName", text(&format!("{sam}@example.test"))),
        ("givenName", text(&format!("Anna{n}"))),
        ("sn", text("de Vries")),
        ("displayName", text(&format!("Anna{n} de Vries"))),
        ("mail", text(&format!("anna{n}.devries.{tag}@example.test"))),
        ("title", text("Beleidsmedewerker")),
        ("department", text("Burgerzaken")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    CreateRequest {
        person: employee.clone(),
        attributes,
        enabled: true,
        correlation: Some(("employeeID".to_owned(), text(&employee))),
    }
}

/// The account's entry, read with ldapsearch by its objectGUID reference.
fn entry_by_reference(samba: &Samba, ou: &str, reference: &str) -> koppel_testkit::samba::Entry {
    let found = samba.ldapsearch(
        ou,
        "sub",
        "(objectClass=user)",
        &[
            "objectGUID",
            "userAccountControl",
            "pwdLastSet",
            "cn",
            "employeeID",
        ],
    );
    found
        .into_iter()
        .find(|e| {
            e.raw("objectGUID")
                .first()
                .map(|g| guid_string(g))
                .as_deref()
                == Some(reference)
        })
        .unwrap_or_else(|| panic!("no user with objectGUID {reference} under {ou}"))
}

#[tokio::test]
async fn conformance_suite_passes_on_samba_ad() {
    let Some(samba) = Samba::require_or_skip("conformance_suite_passes_on_samba_ad") else {
        return;
    };
    let ou = samba.fresh_ou("conformance");
    let groups = format!("OU=groups,{ou}");
    samba.ldapadd(&format!(
        "{}objectClass: organizationalUnit\n",
        ldif_attr("dn", groups.as_bytes())
    ));
    let tag = run_tag();
    let target = target(
        &samba,
        &format!(
            "{}[groups]\ncontainer = {}\n",
            base_line(&ou),
            toml_str(&groups)
        ),
    )
    .await;
    let request_ou = ou.clone();
    let request_tag = tag.clone();
    let fixture = Fixture {
        correlation: "employeeID".to_owned(),
        unique: "sAMAccountName".to_owned(),
        changeable: ["title".to_owned(), "department".to_owned()],
        permissions: [format!("g{tag}-a"), format!("g{tag}-b")],
        // A well-formed GUID nobody has.
        missing_reference: "0badc0de-0000-4000-8000-00000000dead".to_owned(),
        request: Box::new(move |n| {
            person(&request_tag, n, &request_ou, &format!("Anna{n} de Vries"))
        }),
    };
    match conformance::run_all(&target, &fixture).await {
        Ok(passed) => assert_eq!(passed.len(), conformance::CHECKS.len()),
        Err(failures) => panic!("{failures}"),
    }
}

/// Disabling and enabling flips ACCOUNTDISABLE only: a flag someone set by hand stays.
#[tokio::test]
async fn user_account_control_keeps_other_bits() {
    let Some(samba) = Samba::require_or_skip("user_account_control_keeps_other_bits") else {
        return;
    };
    let ou = samba.fresh_ou("uac");
    let tag = run_tag();
    let target = target(&samba, &base_line(&ou)).await;
    let created = target
        .create(&person(&tag, 1, &ou, "Uac Person"))
        .await
        .expect("create");
    let reference = created.reference().to_owned();
    let entry = entry_by_reference(&samba, &ou, &reference);
    assert_eq!(entry.int("userAccountControl"), Some(NORMAL_ACCOUNT));

    samba.ldapmodify(&format!(
        "{}changetype: modify\nreplace: userAccountControl\nuserAccountControl: {}\n-\n",
        ldif_attr("dn", entry.dn.as_bytes()),
        NORMAL_ACCOUNT | DONT_EXPIRE_PASSWORD
    ));
    target
        .set_enabled(&reference, false)
        .await
        .expect("disable");
    let uac = entry_by_reference(&samba, &ou, &reference).int("userAccountControl");
    assert_eq!(
        uac,
        Some(NORMAL_ACCOUNT | DONT_EXPIRE_PASSWORD | ACCOUNTDISABLE),
        "disable must add only ACCOUNTDISABLE"
    );
    assert!(
        !target
            .get(&reference)
            .await
            .expect("get")
            .expect("exists")
            .enabled
    );
    // Twice: idempotent, still only that bit.
    target
        .set_enabled(&reference, false)
        .await
        .expect("disable again");
    target.set_enabled(&reference, true).await.expect("enable");
    let uac = entry_by_reference(&samba, &ou, &reference).int("userAccountControl");
    assert_eq!(
        uac,
        Some(NORMAL_ACCOUNT | DONT_EXPIRE_PASSWORD),
        "enable must clear only ACCOUNTDISABLE"
    );
    assert!(
        target
            .get(&reference)
            .await
            .expect("get")
            .expect("exists")
            .enabled
    );
}

/// A 28-character password from koppel's alphabet with all four character classes: what the
/// connector's random initial password looks like, so a leak in a message would match.
fn looks_like_generated_password(word: &str) -> bool {
    let symbols = "!#%+-.:=?@^_~";
    word.len() >= 24
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || symbols.contains(c))
        && word.chars().any(|c| c.is_ascii_uppercase())
        && word.chars().any(|c| c.is_ascii_lowercase())
        && word.chars().any(|c| c.is_ascii_digit())
        && word.chars().any(|c| symbols.contains(c))
}

fn assert_no_password_in(what: &str, output: &str) {
    assert!(
        !output.to_ascii_lowercase().contains("unicodepwd"),
        "{what} mentions unicodePwd: {output}"
    );
    for word in output.split(|c: char| c.is_whitespace() || "\"'`,()[]{}".contains(c)) {
        assert!(
            !looks_like_generated_password(word),
            "{what} contains something shaped like the initial password ({} chars): {output}",
            word.len()
        );
    }
}

/// An enabled account gets a password (pwdLastSet ≠ 0), a disabled one too, and a create the
/// server refuses says why without the password in its message.
#[tokio::test]
async fn created_accounts_have_a_password_that_never_shows() {
    let Some(samba) = Samba::require_or_skip("created_accounts_have_a_password_that_never_shows")
    else {
        return;
    };
    let ou = samba.fresh_ou("password");
    let tag = run_tag();
    let target = target(&samba, &base_line(&ou)).await;

    let enabled = target
        .create(&person(&tag, 1, &ou, "Pw Enabled"))
        .await
        .expect("create enabled");
    let entry = entry_by_reference(&samba, &ou, enabled.reference());
    assert_eq!(entry.int("userAccountControl"), Some(NORMAL_ACCOUNT));
    assert_ne!(
        entry.int("pwdLastSet").unwrap_or(0),
        0,
        "an enabled account must have its initial password set"
    );

    let mut disabled = person(&tag, 2, &ou, "Pw Disabled");
    disabled.enabled = false;
    let disabled = target.create(&disabled).await.expect("create disabled");
    let entry = entry_by_reference(&samba, &ou, disabled.reference());
    assert_eq!(
        entry.int("userAccountControl"),
        Some(NORMAL_ACCOUNT | ACCOUNTDISABLE)
    );
    assert_ne!(entry.int("pwdLastSet").unwrap_or(0), 0);

    // The server refuses this add (the sAMAccountName is taken) after the password was
    // generated and sent along: the error must still not carry it.
    let mut clash = person(&tag, 3, &ou, "Pw Clash");
    clash
        .attributes
        .insert("sAMAccountName".into(), text(&format!("k{tag}001")));
    let err = target
        .create(&clash)
        .await
        .expect_err("a second account with the same sAMAccountName must be refused");
    assert!(matches!(err, TargetError::Rejected { .. }), "{err:?}");
    assert_no_password_in("the error", &err.to_string());
    assert_no_password_in("the error's Debug", &format!("{err:?}"));
    assert_no_password_in(
        "the account",
        &format!("{:?}", target.get(enabled.reference()).await),
    );
}

/// Samba (set up like a default Windows DC) takes a simple bind on plain LDAP; koppel still
/// refuses to send an initial password without TLS, and nothing is created.
#[tokio::test]
async fn plain_ldap_refuses_to_create_with_a_password() {
    let Some(samba) = Samba::require_or_skip("plain_ldap_refuses_to_create_with_a_password") else {
        return;
    };
    let ou = samba.fresh_ou("plain");
    let tag = run_tag();
    let mut plain = config(&samba, &format!("{}starttls = false\n", base_line(&ou)));
    plain.url = "ldap://127.0.0.1:389".to_owned();
    plain.ca_file = None;
    let target = connect("ad", plain)
        .await
        .expect("the DC accepts a plain simple bind (ldap server require strong auth = no)");
    let err = target
        .create(&person(&tag, 1, &ou, "Plain Person"))
        .await
        .expect_err("a create over plain LDAP must be refused");
    let message = err.to_string();
    assert!(
        message.contains("TLS"),
        "the refusal should say TLS is needed: {message}"
    );
    assert!(
        samba
            .ldapsearch(&ou, "one", "(objectClass=user)", &["cn"])
            .is_empty(),
        "nothing may be created over plain LDAP"
    );

    // The same server through StartTLS (the default for ldap://) creates it.
    let mut starttls = config(&samba, &base_line(&ou));
    starttls.url = "ldap://127.0.0.1:389".to_owned();
    let target = connect("ad", starttls).await.expect("StartTLS bind");
    let created = target
        .create(&person(&tag, 1, &ou, "Plain Person"))
        .await
        .expect("create over StartTLS");
    let entry = entry_by_reference(&samba, &ou, created.reference());
    assert_ne!(entry.int("pwdLastSet").unwrap_or(0), 0);
}

/// A group with more members than `range_step`: every member comes back.
#[tokio::test]
async fn ranged_retrieval_returns_every_member() {
    let Some(samba) = Samba::require_or_skip("ranged_retrieval_returns_every_member") else {
        return;
    };
    const MEMBERS: usize = 250;
    let ou = samba.fresh_ou("ranged");
    let tag = run_tag();
    let mut ldif = String::new();
    let mut member_dns = BTreeSet::new();
    for i in 0..MEMBERS {
        let dn = format!("CN=m{i:03},{ou}");
        ldif.push_str(&ldif_attr("dn", dn.as_bytes()));
        ldif.push_str(&format!(
            "objectClass: user\nsAMAccountName: r{tag}{i:03}\nemployeeID: r{tag}-{i:03}\n\n"
        ));
        member_dns.insert(dn.to_ascii_lowercase());
    }
    let group = format!("CN=big,{ou}");
    ldif.push_str(&ldif_attr("dn", group.as_bytes()));
    ldif.push_str(&format!("objectClass: group\nsAMAccountName: gbig{tag}\n"));
    for i in 0..MEMBERS {
        ldif.push_str(&format!("member: CN=m{i:03},{ou}\n"));
    }
    samba.ldapadd(&ldif);

    let target = target(
        &samba,
        &format!(
            "{}range_step = 100\npage_size = 70\n[groups.static]\nbig = {}\n",
            base_line(&ou),
            toml_str(&group)
        ),
    )
    .await;
    let members: BTreeSet<String> = target
        .group_members("big")
        .await
        .expect("group_members")
        .into_iter()
        .map(|m| m.to_ascii_lowercase())
        .collect();
    assert_eq!(members.len(), MEMBERS);
    assert_eq!(members, member_dns);

    // Paged listing (page_size below the count) sees every member, each in the group.
    let accounts = target.list_accounts().await.expect("list_accounts");
    assert_eq!(accounts.len(), MEMBERS);
    assert!(accounts.iter().all(|a| a.permissions.contains("big")));
}

/// With the domain root as base, a subtree search meets Samba's referral to
/// CN=Configuration: reads, correlation and uniqueness must work regardless.
#[tokio::test]
async fn domain_root_base_tolerates_referrals() {
    let Some(samba) = Samba::require_or_skip("domain_root_base_tolerates_referrals") else {
        return;
    };
    let ou = samba.fresh_ou("root");
    let tag = run_tag();
    let target = target(&samba, &base_line(&samba.base)).await;
    let request = person(&tag, 1, &ou, "Root Person");
    let created = target.create(&request).await.expect("create");
    let reference = created.reference().to_owned();

    let accounts = target
        .list_accounts()
        .await
        .expect("list at the domain root");
    assert!(accounts.iter().any(|a| a.reference == reference));
    assert!(accounts.iter().any(|a| {
        a.attributes
            .get("sAMAccountName")
            .is_some_and(|v| v.as_str() == Some("Administrator"))
    }));
    let found = target
        .correlate("employeeID", &text(&format!("{tag}-0001")))
        .await
        .expect("correlate at the domain root")
        .expect("found");
    assert_eq!(found.reference, reference);
    assert!(
        !target
            .is_unique("sAMAccountName", &format!("K{tag}001"), None)
            .await
            .expect("is_unique at the domain root")
    );
    assert!(
        target
            .is_unique("sAMAccountName", &format!("K{tag}001"), Some(&reference))
            .await
            .expect("is_unique except")
    );
    target.delete(&reference).await.expect("delete");
}

/// Names that break naive DN and filter building, in the cn, the OU and the correlation value.
#[tokio::test]
async fn hostile_names_in_cn_ou_and_filters() {
    let Some(samba) = Samba::require_or_skip("hostile_names_in_cn_ou_and_filters") else {
        return;
    };
    hostile_round_trip(
        &samba,
        "hostile",
        r#" Sales, (EMEA)*\ =#+<>;"x"#,
        &[
            r#"O'Brien, Jr. (Sales)*\"#,
            r#"=#+<>;""#,
            " Leading space",
            "#hash first",
        ],
        r#"Renamed, \ "x" + y"#,
    )
    .await;
}

/// Trailing spaces must be escaped (`\ `) in a DN, and a parser that trims whitespace around
/// RDNs must not eat the escaped one.
#[tokio::test]
async fn trailing_spaces_in_cn_and_ou() {
    let Some(samba) = Samba::require_or_skip("trailing_spaces_in_cn_and_ou") else {
        return;
    };
    hostile_round_trip(
        &samba,
        "trailing",
        "Sales (EMEA) ",
        &["  Leading and trailing  ", "Trailing "],
        "Renamed trailing ",
    )
    .await;
}

/// Creates accounts named `names` in a new OU `ou_name` (create_containers), with hostile
/// correlation values; creates each twice (adopted), reads, renames the first to `rename_to`,
/// disables and deletes them all, checking each step with ldapsearch.
async fn hostile_round_trip(
    samba: &Samba,
    tag_name: &str,
    ou_name: &str,
    names: &[&str],
    rename_to: &str,
) {
    let ou = samba.fresh_ou(tag_name);
    let tag = run_tag();
    let hostile_ou = format!("OU={},{ou}", escape_rdn_value(ou_name));
    let target = target(
        samba,
        &format!("{}create_containers = true\n", base_line(&ou)),
    )
    .await;
    let mut references = Vec::new();
    for (i, cn) in names.iter().enumerate() {
        let n = u32::try_from(i).expect("few names");
        let mut request = person(&tag, n, &hostile_ou, cn);
        // The correlation value is hostile too: a filter built without escaping would break
        // or match the wrong accounts. (employeeID holds at most 16 characters.)
        let employee = format!("{tag}*)({n}\\");
        request
            .attributes
            .insert("employeeID".into(), text(&employee));
        request.correlation = Some(("employeeID".into(), text(&employee)));
        let created = target
            .create(&request)
            .await
            .unwrap_or_else(|e| panic!("create {cn:?}: {e}"));
        assert!(matches!(created, Created::New(_)), "{cn:?}: {created:?}");
        let again = target
            .create(&request)
            .await
            .unwrap_or_else(|e| panic!("second create {cn:?}: {e}"));
        assert_eq!(
            again,
            Created::Adopted(created.reference().to_owned()),
            "{cn:?}"
        );
        let account = target
            .get(created.reference())
            .await
            .unwrap_or_else(|e| panic!("get {cn:?}: {e}"))
            .unwrap_or_else(|| panic!("get {cn:?} found nothing"));
        assert_eq!(account.attributes.get("cn"), Some(&text(cn)), "{cn:?}");
        let entry = entry_by_reference(samba, &ou, created.reference());
        assert_eq!(entry.first("cn").as_deref(), Some(*cn));
        assert_eq!(
            entry.first("employeeID").as_deref(),
            Some(employee.as_str())
        );
        references.push(created.reference().to_owned());
    }
    // The OU was created with its hostile name, and holds exactly these accounts.
    let ou_entry = samba
        .entry(&hostile_ou, &["ou"])
        .unwrap_or_else(|| panic!("the OU {ou_name:?} was not created"));
    assert_eq!(ou_entry.first("ou").as_deref(), Some(ou_name));
    let in_ou = samba.ldapsearch(&hostile_ou, "one", "(objectClass=user)", &["cn"]);
    assert_eq!(in_ou.len(), names.len(), "{in_ou:?}");
    // A correlation value that is a wildcard matches nothing.
    assert!(
        target
            .correlate("employeeID", &text("*"))
            .await
            .expect("correlate *")
            .is_none()
    );
    // Rename, then disable and delete through the escaped DNs.
    let changes = BTreeMap::from([("cn".to_owned(), text(rename_to))]);
    target
        .update(&references[0], &changes)
        .await
        .unwrap_or_else(|e| panic!("rename to {rename_to:?}: {e}"));
    let entry = entry_by_reference(samba, &ou, &references[0]);
    assert_eq!(entry.first("cn").as_deref(), Some(rename_to));
    for reference in &references {
        target
            .set_enabled(reference, false)
            .await
            .unwrap_or_else(|e| panic!("disable {reference}: {e}"));
        target
            .delete(reference)
            .await
            .unwrap_or_else(|e| panic!("delete {reference}: {e}"));
    }
    assert!(
        samba
            .ldapsearch(&hostile_ou, "one", "(objectClass=user)", &["cn"])
            .is_empty()
    );
}

/// An account made outside koppel is adopted by correlation: same objectGUID, no second
/// account, attributes and enabled state brought to the request.
#[tokio::test]
async fn correlation_adopts_an_existing_account() {
    let Some(samba) = Samba::require_or_skip("correlation_adopts_an_existing_account") else {
        return;
    };
    let ou = samba.fresh_ou("adopt");
    let tag = run_tag();
    let request = person(&tag, 1, &ou, "Existing Person");
    let existing_dn = format!("CN=Existing Person,{ou}");
    samba.ldapadd(&format!(
        "{}objectClass: user\nsAMAccountName: k{tag}001\nemployeeID: {tag}-0001\n\
         title: Old Title\nuserAccountControl: 514\n",
        ldif_attr("dn", existing_dn.as_bytes())
    ));
    let before = samba
        .entry(&existing_dn, &["objectGUID"])
        .expect("the pre-existing account");
    let guid = guid_string(&before.raw("objectGUID")[0]);

    let target = target(&samba, &base_line(&ou)).await;
    let created = target.create(&request).await.expect("create adopts");
    assert_eq!(created, Created::Adopted(guid.clone()));
    let users = samba.ldapsearch(
        &ou,
        "sub",
        "(objectClass=user)",
        &["title", "userAccountControl"],
    );
    assert_eq!(
        users.len(),
        1,
        "adoption must not add a second account: {users:?}"
    );
    assert_eq!(
        users[0].first("title").as_deref(),
        Some("Beleidsmedewerker")
    );
    assert_eq!(users[0].int("userAccountControl"), Some(NORMAL_ACCOUNT));
    let account = target.get(&guid).await.expect("get").expect("exists");
    assert!(account.enabled);
}

/// Moving to another OU (a mover) keeps the objectGUID reference; get follows the move, also
/// when someone else moved the account and koppel's cached DN is stale.
#[tokio::test]
async fn moving_keeps_the_reference() {
    let Some(samba) = Samba::require_or_skip("moving_keeps_the_reference") else {
        return;
    };
    let ou = samba.fresh_ou("move");
    let (from, to, by_hand) = (
        format!("OU=Sales,{ou}"),
        format!("OU=Finance,{ou}"),
        format!("OU=Elsewhere,{ou}"),
    );
    for d in [&from, &to, &by_hand] {
        samba.ldapadd(&format!(
            "{}objectClass: organizationalUnit\n",
            ldif_attr("dn", d.as_bytes())
        ));
    }
    let tag = run_tag();
    let target = target(&samba, &base_line(&ou)).await;
    let created = target
        .create(&person(&tag, 1, &from, "Mover Person"))
        .await
        .expect("create");
    let reference = created.reference().to_owned();

    let changes = BTreeMap::from([
        ("container".to_owned(), text(&to)),
        ("department".to_owned(), text("Financien")),
    ]);
    target.update(&reference, &changes).await.expect("move");
    let moved = samba.entry(
        &format!("CN=Mover Person,{to}"),
        &["objectGUID", "department"],
    );
    let moved = moved.expect("the account is in the new OU");
    assert_eq!(guid_string(&moved.raw("objectGUID")[0]), reference);
    assert_eq!(moved.first("department").as_deref(), Some("Financien"));
    assert!(
        samba
            .entry(&format!("CN=Mover Person,{from}"), &[])
            .is_none()
    );
    let account = target.get(&reference).await.expect("get").expect("exists");
    assert_eq!(
        account
            .attributes
            .get("container")
            .and_then(AttrValue::as_str)
            .map(str::to_ascii_lowercase),
        Some(to.to_ascii_lowercase())
    );

    // Moved by someone else: koppel's cached DN is stale, the reference still finds it.
    samba.ldapmodify(&format!(
        "{}changetype: modrdn\nnewrdn: CN=Mover Person\ndeleteoldrdn: 1\nnewsuperior: {by_hand}\n",
        ldif_attr("dn", format!("CN=Mover Person,{to}").as_bytes())
    ));
    let title = BTreeMap::from([("title".to_owned(), text("Controller"))]);
    target
        .update(&reference, &title)
        .await
        .expect("update after an outside move");
    target
        .set_enabled(&reference, false)
        .await
        .expect("disable after an outside move");
    let account = target.get(&reference).await.expect("get").expect("exists");
    assert_eq!(account.attributes.get("title"), Some(&text("Controller")));
    assert!(!account.enabled);
    assert_eq!(
        account
            .attributes
            .get("container")
            .and_then(AttrValue::as_str)
            .map(str::to_ascii_lowercase),
        Some(by_hand.to_ascii_lowercase())
    );
}

/// A wrong password, an untrusted CA, the system roots alone and a closed port each
/// give their own error, and no message contains the password.
#[tokio::test]
async fn connection_failures_are_distinct() {
    let Some(samba) = Samba::require_or_skip("connection_failures_are_distinct") else {
        return;
    };
    let ou = samba.fresh_ou("connect");
    let tag = run_tag();
    // A user of its own to fail binds with, so the administrator is never the one refused.
    let user_dn = format!("CN=Bind User,{ou}");
    let password = format!("Bind-{tag}-Pw9!");
    let quoted: Vec<u8> = format!("\"{password}\"")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    samba.ldapadd(&format!(
        "{}objectClass: user\nsAMAccountName: b{tag}\nuserAccountControl: 512\n{}",
        ldif_attr("dn", user_dn.as_bytes()),
        ldif_attr("unicodePwd", &quoted)
    ));
    let dir = tempfile::tempdir().expect("temp dir");
    let good_file = dir.path().join("good");
    let bad_file = dir.path().join("bad");
    std::fs::write(&good_file, format!("{password}\n")).expect("write password");
    std::fs::write(&bad_file, "Not-The-Password-1").expect("write password");
    let pki = TestPki::generate(&dir.path().join("pki")).expect("test PKI");

    let as_user = |file: &std::path::Path| {
        let mut c = config(&samba, &base_line(&ou));
        c.bind_dn = user_dn.clone();
        c.password_file = Some(file.to_path_buf());
        c
    };
    // The user's own password works: the failures below are about what they change.
    connect("ad", as_user(&good_file))
        .await
        .expect("bind with the right password");

    let wrong = connect("ad", as_user(&bad_file))
        .await
        .err()
        .expect("a wrong password must fail");
    assert!(
        matches!(wrong, LdapError::InvalidCredentials { .. }),
        "{wrong:?}"
    );

    let mut untrusted = as_user(&good_file);
    untrusted.ca_file = Some(pki.untrusted_ca_pem.clone());
    let untrusted = connect("ad", untrusted)
        .await
        .err()
        .expect("an untrusted CA must fail");
    assert!(
        matches!(untrusted, LdapError::Certificate { .. }),
        "{untrusted:?}"
    );

    let mut system_roots = as_user(&good_file);
    system_roots.ca_file = None;
    let system_roots = connect("ad", system_roots)
        .await
        .err()
        .expect("the test CA is not among the system roots");
    assert!(
        matches!(system_roots, LdapError::Certificate { .. }),
        "{system_roots:?}"
    );

    let mut closed = as_user(&good_file);
    closed.url = "ldaps://127.0.0.1:1".to_owned();
    closed.timeout_seconds = 5;
    let closed = connect("ad", closed)
        .await
        .err()
        .expect("nothing listens on port 1");
    assert!(
        matches!(closed, LdapError::Unreachable { .. }),
        "{closed:?}"
    );

    let messages = [&wrong, &untrusted, &system_roots, &closed].map(|e| e.to_string());
    for m in &messages {
        assert!(
            !m.contains(&password),
            "a message contains the password: {m}"
        );
    }
    let distinct: BTreeSet<&String> = messages.iter().collect();
    assert!(distinct.len() >= 3, "{messages:?}");
    assert!(messages[0].contains("credentials"), "{}", messages[0]);
    assert!(messages[1].contains("certificate"), "{}", messages[1]);
}
