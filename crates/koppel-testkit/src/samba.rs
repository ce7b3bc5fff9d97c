//! The Samba AD domain controller `scripts/test-servers` started for the whole suite, found
//! through `KOPPEL_TEST_SAMBA_*`; each test works in its own fresh OU and checks with `ldap-utils`.
//!
//! Samba's ports are fixed (389/636) and it runs as root, so tests cannot start their own DC the
//! way they start slapd. Tests run in parallel (nextest: one process per test) against this one
//! server, which is why every test gets an OU nobody else touches. Assertions go through the
//! OpenLDAP command-line tools on purpose: an independent client, not the connector under test.

use std::collections::BTreeMap;
use std::env;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// Set to `1` by `scripts/test`: a test that needs a server and finds none fails instead of
/// skipping, so the suite can never pass by quietly testing nothing.
pub const REQUIRE_SERVERS_VAR: &str = "KOPPEL_REQUIRE_SERVERS";

const URL_VAR: &str = "KOPPEL_TEST_SAMBA_URL";
const CA_VAR: &str = "KOPPEL_TEST_SAMBA_CA";
const BIND_DN_VAR: &str = "KOPPEL_TEST_SAMBA_BIND_DN";
const PASSWORD_FILE_VAR: &str = "KOPPEL_TEST_SAMBA_PASSWORD_FILE";
const BASE_VAR: &str = "KOPPEL_TEST_SAMBA_BASE";

/// Numbers the OUs one test process makes; the pid separates processes.
static OU_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// How to reach the suite's DC as the domain administrator.
#[derive(Debug, Clone)]
pub struct Samba {
    /// `ldaps://127.0.0.1:636`.
    pub url: String,
    /// The CA that signed the DC's certificate (valid for `127.0.0.1` and `localhost`).
    pub ca_file: PathBuf,
    /// `CN=Administrator,CN=Users,DC=example,DC=test`.
    pub bind_dn: String,
    /// The administrator's password, alone in a file (no newline), for `password_file` configs.
    pub password_file: PathBuf,
    /// The domain's naming context, `DC=example,DC=test`.
    pub base: String,
}

impl Samba {
    /// The DC described by the `KOPPEL_TEST_SAMBA_*` variables, or `None` when any is missing.
    pub fn from_env() -> Option<Samba> {
        let var = |name: &str| env::var(name).ok().filter(|v| !v.is_empty());
        Some(Samba {
            url: var(URL_VAR)?,
            ca_file: var(CA_VAR)?.into(),
            bind_dn: var(BIND_DN_VAR)?,
            password_file: var(PASSWORD_FILE_VAR)?.into(),
            base: var(BASE_VAR)?,
        })
    }

    /// The DC for `test`, or `None` (with a loud message) when there is none and servers are not
    /// required. With `KOPPEL_REQUIRE_SERVERS=1` a missing DC is a failure.
    pub fn require_or_skip(test: &str) -> Option<Samba> {
        if let Some(samba) = Samba::from_env() {
            return Some(samba);
        }
        if env::var(REQUIRE_SERVERS_VAR).is_ok_and(|v| v == "1") {
            panic!(
                "{test}: no Samba AD DC, but {REQUIRE_SERVERS_VAR}=1 requires one. \
                 {URL_VAR}, {CA_VAR}, {BIND_DN_VAR}, {PASSWORD_FILE_VAR} and {BASE_VAR} must be \
                 set: run `scripts/test-servers start` and source target/test-servers/env \
                 (./scripts/test does both)"
            );
        }
        eprintln!(
            "\n**********\n{test}: SKIPPED: no Samba AD DC (run ./scripts/test, or \
             `scripts/test-servers start && . target/test-servers/env`)\n**********\n"
        );
        None
    }

    /// TOML lines for a koppel `ldap` target's connection to this DC as the administrator
    /// (`flavour`, `url`, `ca_file`, `bind_dn`, `password_file`); tests add `base` and the rest.
    pub fn connection_toml(&self) -> String {
        format!(
            "flavour = \"active_directory\"\nurl = {}\nca_file = {}\nbind_dn = {}\npassword_file = {}\n",
            toml_string(&self.url),
            toml_string(&self.ca_file.to_string_lossy()),
            toml_string(&self.bind_dn),
            toml_string(&self.password_file.to_string_lossy()),
        )
    }

    /// Creates an OU only this test uses, directly under the domain, and returns its DN:
    /// `OU=t-<tag>-<pid>-<n>,DC=example,DC=test`.
    pub fn fresh_ou(&self, tag: &str) -> String {
        self.fresh_ou_under(tag, &self.base)
    }

    /// Like [`Samba::fresh_ou`], under `parent` instead of the domain root.
    pub fn fresh_ou_under(&self, tag: &str, parent: &str) -> String {
        // OU names are at most 64 characters; the tag is only there to find a test's OU by eye.
        let tag: String = tag
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(32)
            .collect();
        let pid = std::process::id();
        // The DC outlives a test run when tests are run by hand, and pids come back: on
        // "already exists" take the next number instead of sharing an old OU.
        for _ in 0..1000 {
            let n = OU_COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = format!("t-{tag}-{pid}-{n}");
            let dn = format!("OU={name},{parent}");
            let ldif = format!(
                "{}objectClass: top\nobjectClass: organizationalUnit\n{}",
                ldif_attr("dn", dn.as_bytes()),
                ldif_attr("ou", name.as_bytes())
            );
            match self.try_ldapadd(&ldif) {
                Ok(_) => return dn,
                Err(e) if e.contains("Already exists") || e.contains("(68)") => continue,
                Err(e) => panic!("creating the test OU {dn}: {e}"),
            }
        }
        panic!("no free test OU name for tag {tag} under {parent}");
    }

    /// Runs `ldapadd` with `ldif`; panics with the tool's message on failure.
    pub fn ldapadd(&self, ldif: &str) {
        if let Err(e) = self.try_ldapadd(ldif) {
            panic!("ldapadd failed: {e}\n--- LDIF ---\n{ldif}");
        }
    }

    /// Runs `ldapadd` with `ldif`; `Err` holds the tool's stderr and exit status.
    pub fn try_ldapadd(&self, ldif: &str) -> Result<String, String> {
        self.run_tool("ldapadd", &[], Some(ldif))
    }

    /// Runs `ldapmodify` with `ldif` (changetype records); panics with the tool's message on failure.
    pub fn ldapmodify(&self, ldif: &str) {
        if let Err(e) = self.try_ldapmodify(ldif) {
            panic!("ldapmodify failed: {e}\n--- LDIF ---\n{ldif}");
        }
    }

    /// Runs `ldapmodify` with `ldif`; `Err` holds the tool's stderr and exit status.
    pub fn try_ldapmodify(&self, ldif: &str) -> Result<String, String> {
        self.run_tool("ldapmodify", &[], Some(ldif))
    }

    /// Deletes `dn` and everything below it (`ldapdelete -r`).
    pub fn ldapdelete_tree(&self, dn: &str) {
        if let Err(e) = self.run_tool("ldapdelete", &["-r", dn], None) {
            panic!("ldapdelete -r {dn} failed: {e}");
        }
    }

    /// Searches with `ldapsearch` and returns the entries (referrals are left out). `scope` is
    /// `base`, `one` or `sub`; `attrs` empty means all user attributes.
    pub fn ldapsearch(&self, base: &str, scope: &str, filter: &str, attrs: &[&str]) -> Vec<Entry> {
        let mut args = vec!["-LLL", "-o", "ldif-wrap=no", "-E", "pr=500/noprompt"];
        args.extend(["-b", base, "-s", scope, filter]);
        args.extend(attrs);
        match self.run_tool("ldapsearch", &args, None) {
            Ok(out) => parse_ldif(&out),
            // 32 = noSuchObject: the base is gone, which tests assert as "no entries".
            Err(e) if e.contains("exit status: 32") => Vec::new(),
            Err(e) => panic!("ldapsearch -b {base} -s {scope} {filter} failed: {e}"),
        }
    }

    /// The entry at `dn` with `attrs` (all user attributes when empty), or `None` if it does not exist.
    pub fn entry(&self, dn: &str, attrs: &[&str]) -> Option<Entry> {
        self.ldapsearch(dn, "base", "(objectClass=*)", attrs)
            .into_iter()
            .next()
    }

    /// Runs one of the OpenLDAP tools against the DC over LDAPS as the administrator.
    fn run_tool(&self, tool: &str, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        let mut cmd = Command::new(tool);
        cmd.env("LDAPTLS_CACERT", &self.ca_file)
            .env("LDAPTLS_REQCERT", "demand")
            // Not LDAPNOINIT: it would also ignore the two variables above. The machine's
            // ldap.conf cannot override them (environment wins).
            .args(["-x", "-H", &self.url, "-D", &self.bind_dn, "-y"])
            .arg(&self.password_file)
            .args(["-o", "nettimeout=20"])
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {tool} (is ldap-utils installed?): {e}"))?;
        if let Some(text) = stdin {
            let mut pipe = child.stdin.take().expect("stdin was piped above");
            pipe.write_all(text.as_bytes())
                .map_err(|e| format!("writing LDIF to {tool}: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("waiting for {tool}: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!(
                "{tool} {}: {}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                if stdout.trim().is_empty() {
                    String::new()
                } else {
                    format!("\n{}", stdout.trim())
                }
            ))
        }
    }
}

/// One entry from `ldapsearch`; attribute names are kept lowercased (LDAP names are
/// case-insensitive), ranged names such as `member;range=0-1499` as they came.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    pub dn: String,
    pub attrs: BTreeMap<String, Vec<Vec<u8>>>,
}

impl Entry {
    /// All values of `attr` as text (lossy UTF-8), empty when absent.
    pub fn values(&self, attr: &str) -> Vec<String> {
        self.raw(attr)
            .iter()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    /// The first value of `attr` as text.
    pub fn first(&self, attr: &str) -> Option<String> {
        self.values(attr).into_iter().next()
    }

    /// All values of `attr` as bytes (binary attributes such as `objectGUID`).
    pub fn raw(&self, attr: &str) -> &[Vec<u8>] {
        self.attrs
            .get(&attr.to_ascii_lowercase())
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// `attr`'s first value parsed as an integer (`userAccountControl`, `pwdLastSet`).
    pub fn int(&self, attr: &str) -> Option<i64> {
        self.first(attr)?.trim().parse().ok()
    }
}

/// One LDIF `attr: value` line, base64-encoded (`attr:: …`) when RFC 2849 requires it: a leading
/// space, colon or `<`, a trailing space, or any byte outside printable ASCII.
pub fn ldif_attr(attr: &str, value: &[u8]) -> String {
    let safe = value
        .first()
        .is_none_or(|b| !matches!(b, b' ' | b':' | b'<'))
        && value.last() != Some(&b' ')
        && value.iter().all(|b| (0x20..0x7f).contains(b));
    if safe {
        format!("{attr}: {}\n", String::from_utf8_lossy(value))
    } else {
        format!("{attr}:: {}\n", BASE64.encode(value))
    }
}

/// Escapes `value` for use as one RDN value in a DN string (RFC 4514): an independent version of
/// what the connector does, for building the DNs tests expect.
pub fn escape_rdn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\{b:02x}");
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Escapes `value` for an LDAP search filter (RFC 4515).
pub fn escape_filter_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '*' | '(' | ')' | '\\' | '\0' => {
                let _ = write!(out, "\\{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// An `objectGUID` in AD's string form (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, the first three
/// groups little-endian), as koppel's AD references are written.
pub fn guid_string(raw: &[u8]) -> String {
    assert_eq!(raw.len(), 16, "objectGUID is 16 bytes, got {}", raw.len());
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{}",
        raw[3],
        raw[2],
        raw[1],
        raw[0],
        raw[5],
        raw[4],
        raw[7],
        raw[6],
        raw[8],
        raw[9],
        raw[10..].iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    )
}

/// Parses `ldapsearch -LLL -o ldif-wrap=no` output. Continuation lines are still joined, in
/// case a tool version wraps anyway.
fn parse_ldif(text: &str) -> Vec<Entry> {
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(' ')
            && let Some(prev) = lines.last_mut()
            && !prev.is_empty()
        {
            prev.push_str(rest);
        } else {
            lines.push(line.to_owned());
        }
    }
    let mut entries = Vec::new();
    let mut current: Option<Entry> = None;
    for line in lines {
        if line.is_empty() {
            entries.extend(current.take());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let value = if let Some(b64) = rest.strip_prefix(':') {
            BASE64
                .decode(b64.trim())
                .unwrap_or_else(|e| panic!("bad base64 in ldapsearch output for {name}: {e}"))
        } else {
            rest.strip_prefix(' ').unwrap_or(rest).as_bytes().to_vec()
        };
        if name.eq_ignore_ascii_case("dn") {
            entries.extend(current.take());
            current = Some(Entry {
                dn: String::from_utf8_lossy(&value).into_owned(),
                attrs: BTreeMap::new(),
            });
        } else if let Some(entry) = current.as_mut() {
            entry
                .attrs
                .entry(name.to_ascii_lowercase())
                .or_default()
                .push(value);
        }
    }
    entries.extend(current);
    entries
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_base64_and_multi_valued_ldif() {
        let text = "dn: CN=a,DC=x\nobjectClass: top\nobjectClass: user\nobjectGUID:: AAECAwQFBgcICQoLDA0ODw==\n\ndn:: IGxlYWRpbmcsREM9eA==\nsn: b\n";
        let entries = parse_ldif(text);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].dn, "CN=a,DC=x");
        assert_eq!(entries[0].values("objectclass"), ["top", "user"]);
        assert_eq!(
            entries[0].raw("objectGUID")[0],
            (0u8..16).collect::<Vec<_>>()
        );
        assert_eq!(entries[1].dn, " leading,DC=x");
        assert_eq!(entries[1].first("SN").as_deref(), Some("b"));
    }

    #[test]
    fn ldif_lines_base64_what_rfc_2849_requires() {
        assert_eq!(ldif_attr("cn", b"plain"), "cn: plain\n");
        assert!(ldif_attr("cn", b" lead").starts_with("cn:: "));
        assert!(ldif_attr("cn", b"trail ").starts_with("cn:: "));
        assert!(ldif_attr("cn", "Zoë".as_bytes()).starts_with("cn:: "));
        assert!(ldif_attr("cn", b":x").starts_with("cn:: "));
    }

    #[test]
    fn escapes_rdn_and_filter_values() {
        assert_eq!(
            escape_rdn_value(r#"O'Brien, Jr. (Sales)*\"#),
            r#"O'Brien\, Jr. (Sales)*\\"#
        );
        assert_eq!(escape_rdn_value(r#"=#+<>;""#), r#"\=#\+\<\>\;\""#);
        assert_eq!(escape_rdn_value("#x "), "\\#x\\ ");
        assert_eq!(escape_rdn_value(" a"), "\\ a");
        assert_eq!(escape_filter_value("a*(b)\\"), "a\\2a\\28b\\29\\5c");
        assert_eq!(escape_filter_value("Zoë*"), "Zoë\\2a");
    }

    #[test]
    fn guid_string_is_ad_byte_order() {
        let raw: Vec<u8> = (0u8..16).collect();
        assert_eq!(guid_string(&raw), "03020100-0504-0706-0809-0a0b0c0d0e0f");
    }

    #[test]
    fn connection_toml_quotes_values() {
        let samba = Samba {
            url: "ldaps://127.0.0.1:636".into(),
            ca_file: "/tmp/c\"a.pem".into(),
            bind_dn: "CN=Administrator,CN=Users,DC=example,DC=test".into(),
            password_file: "/tmp/pw".into(),
            base: "DC=example,DC=test".into(),
        };
        let text = samba.connection_toml();
        assert!(text.contains("ca_file = \"/tmp/c\\\"a.pem\""), "{text}");
    }

    /// Against the suite's DC: two fresh OUs differ, hostile values survive LDIF both ways,
    /// and the objectGUID comes back as 16 bytes.
    #[test]
    fn real_dc_fresh_ou_add_and_search() {
        let Some(samba) = Samba::require_or_skip("samba::real_dc_fresh_ou_add_and_search") else {
            return;
        };
        let ou = samba.fresh_ou("testkit self");
        let other = samba.fresh_ou("testkit self");
        assert_ne!(ou, other);
        let cn = r#" O'Brien, Jr. (Sales)*\ =#+<>;" "#;
        let dn = format!("CN={},{ou}", escape_rdn_value(cn));
        samba.ldapadd(&format!(
            "{}objectClass: user\nsAMAccountName: obrien{}\n{}",
            ldif_attr("dn", dn.as_bytes()),
            std::process::id(),
            ldif_attr("description", "Zoë".as_bytes()),
        ));
        let found = samba.ldapsearch(
            &ou,
            "one",
            &format!("(cn={})", escape_filter_value(cn)),
            &["cn", "description", "objectGUID", "userAccountControl"],
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].first("cn").as_deref(), Some(cn));
        assert_eq!(found[0].first("description").as_deref(), Some("Zoë"));
        assert_eq!(found[0].raw("objectGUID")[0].len(), 16);
        assert!(found[0].int("userAccountControl").is_some());
        assert!(samba.entry(&format!("OU=nope,{ou}"), &[]).is_none());
        samba.ldapdelete_tree(&ou);
        assert!(samba.entry(&ou, &[]).is_none());
    }
}
