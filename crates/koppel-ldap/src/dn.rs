//! Distinguished names (RFC 4514): parsing, comparing as the server does, and building with
//! every value escaped, so hostile names never change a DN's structure.

use std::fmt;

use ldap3::dn_escape;

/// One attribute-value assertion of an RDN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ava {
    pub attribute: String,
    /// The value with every escape undone.
    pub value: String,
}

/// A parsed DN; `rdns[0]` is the leftmost (most specific) RDN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dn {
    rdns: Vec<(String, Vec<Ava>)>,
}

impl Dn {
    /// Parses a DN string; the empty string is the root DN.
    pub fn parse(s: &str) -> Result<Dn, String> {
        let mut rdns = Vec::new();
        if s.trim().is_empty() {
            return Ok(Dn { rdns });
        }
        let bytes = s.as_bytes();
        let mut start = 0;
        let mut i = 0;
        let mut in_quotes = false;
        while i <= bytes.len() {
            let end = i == bytes.len();
            let c = if end { b',' } else { bytes[i] };
            if !end && c == b'\\' {
                if i + 1 >= bytes.len() {
                    return Err(format!("{s:?} ends with a lone backslash"));
                }
                i += 2;
                continue;
            }
            if c == b'"' {
                in_quotes = !in_quotes;
            }
            if (c == b',' || c == b';') && !in_quotes {
                let raw = trim_unescaped(&s[start..i.min(s.len())]);
                if raw.is_empty() {
                    return Err(format!("{s:?} has an empty RDN"));
                }
                let avas = parse_rdn(raw).map_err(|e| format!("{s:?}: {e}"))?;
                rdns.push((raw.to_owned(), avas));
                start = i + 1;
            }
            i += 1;
        }
        Ok(Dn { rdns })
    }

    /// `<attribute>=<escaped value>,<parent>`.
    pub fn child(attribute: &str, value: &str, parent: &str) -> String {
        let rdn = rdn(attribute, value);
        if parent.trim().is_empty() {
            rdn
        } else {
            format!("{rdn},{parent}")
        }
    }

    /// The leftmost RDN as written.
    pub fn rdn(&self) -> Option<&str> {
        self.rdns.first().map(|(raw, _)| raw.as_str())
    }

    /// The DN without its leftmost RDN, as written.
    pub fn parent(&self) -> String {
        self.rdns
            .iter()
            .skip(1)
            .map(|(raw, _)| raw.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The value of `attribute` in the leftmost RDN.
    pub fn first_value(&self, attribute: &str) -> Option<&str> {
        self.rdns.first().and_then(|(_, avas)| {
            avas.iter()
                .find(|a| a.attribute.eq_ignore_ascii_case(attribute))
                .map(|a| a.value.as_str())
        })
    }

    /// Every ancestor DN string from the nearest to the root (this DN excluded).
    pub fn ancestors(&self) -> Vec<String> {
        (1..self.rdns.len())
            .map(|k| {
                self.rdns[k..]
                    .iter()
                    .map(|(raw, _)| raw.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect()
    }

    /// A key equal for DNs the server considers equal (attribute names and values compared
    /// without case, escapes undone): the matching rules of names in practice.
    pub fn key(&self) -> String {
        let mut out = String::new();
        for (i, (_, avas)) in self.rdns.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let mut parts: Vec<String> = avas
                .iter()
                .map(|a| {
                    format!(
                        "{}={}",
                        a.attribute.to_ascii_lowercase(),
                        dn_escape(a.value.to_lowercase())
                    )
                })
                .collect();
            parts.sort();
            out.push_str(&parts.join("+"));
        }
        out
    }
}

impl fmt::Display for Dn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (raw, _)) in self.rdns.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(raw)?;
        }
        Ok(())
    }
}

/// The normalised key of a DN string, or the lowercased string when it does not parse.
pub fn key(dn: &str) -> String {
    Dn::parse(dn)
        .map(|d| d.key())
        .unwrap_or_else(|_| dn.to_lowercase())
}

/// Trims surrounding spaces, but not a trailing space escaped with a backslash.
fn trim_unescaped(raw: &str) -> &str {
    let start = raw.trim_start();
    let mut end = start.trim_end().len();
    if end < start.len() {
        let backslashes = start[..end]
            .bytes()
            .rev()
            .take_while(|b| *b == b'\\')
            .count();
        if backslashes % 2 == 1 {
            end += 1;
        }
    }
    &start[..end]
}

/// `<attribute>=<escaped value>`.
pub fn rdn(attribute: &str, value: &str) -> String {
    format!("{attribute}={}", dn_escape(value))
}

fn parse_rdn(raw: &str) -> Result<Vec<Ava>, String> {
    let mut avas = Vec::new();
    let bytes = raw.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i <= bytes.len() {
        if i < bytes.len() && bytes[i] == b'\\' {
            if i + 1 >= bytes.len() {
                return Err(format!("{raw:?} ends with a lone backslash"));
            }
            i += 2;
            continue;
        }
        if i == bytes.len() || bytes[i] == b'+' {
            avas.push(parse_ava(&raw[start..i.min(raw.len())])?);
            start = i + 1;
        }
        i += 1;
    }
    Ok(avas)
}

fn parse_ava(raw: &str) -> Result<Ava, String> {
    let (attribute, value) = raw
        .split_once('=')
        .ok_or_else(|| format!("{raw:?} has no '='"))?;
    let attribute = attribute.trim();
    if attribute.is_empty()
        || !attribute
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(format!("{attribute:?} is not an attribute type"));
    }
    Ok(Ava {
        attribute: attribute.to_owned(),
        value: unescape_value(value.trim_start())?,
    })
}

/// Undoes RFC 4514 escapes: `\,` style, `\HH` hex pairs (UTF-8 bytes), `"…"` quoting and
/// the `#HEX` BER form (kept as written). Unescaped trailing spaces are not part of a value.
fn unescape_value(v: &str) -> Result<String, String> {
    if v.starts_with('#') {
        return Ok(v.trim_end().to_owned());
    }
    if let Some(inner) = v
        .trim_end()
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
    {
        return Ok(inner.to_owned());
    }
    let bytes = v.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    // Length of `out` that ends with an escaped (so significant) character.
    let mut significant = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\\' {
            let next = bytes
                .get(i + 1)
                .ok_or_else(|| format!("{v:?} ends with a lone backslash"))?;
            if next.is_ascii_hexdigit()
                && let Some(lo) = bytes.get(i + 2).filter(|c| c.is_ascii_hexdigit())
            {
                let hex = [*next, *lo];
                let s = std::str::from_utf8(&hex).map_err(|e| e.to_string())?;
                out.push(u8::from_str_radix(s, 16).map_err(|e| e.to_string())?);
                i += 3;
            } else {
                out.push(*next);
                i += 2;
            }
            significant = out.len();
        } else {
            out.push(b);
            if b != b' ' {
                significant = out.len();
            }
            i += 1;
        }
    }
    out.truncate(significant);
    String::from_utf8(out).map_err(|_| format!("{v:?} is not UTF-8 once unescaped"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_values_round_trip() {
        for value in [
            "O'Brien, Jr. (Sales)*\\",
            "=#+<>;\"",
            "  leading and trailing  ",
            "#hash first",
            "Ĳsbrand Müller",
        ] {
            let dn = Dn::child("cn", value, "ou=People,dc=example,dc=test");
            let parsed = Dn::parse(&dn).unwrap();
            assert_eq!(parsed.first_value("CN"), Some(value), "{dn}");
            assert_eq!(parsed.parent(), "ou=People,dc=example,dc=test");
            assert_eq!(parsed.ancestors().len(), 3);
        }
    }

    #[test]
    fn keys_ignore_case_escape_form_and_spacing() {
        assert_eq!(
            key("CN=O\\2C Brien,OU=Staff,DC=Example,DC=test"),
            key("cn=o\\, brien, ou=staff,dc=example,dc=TEST")
        );
        assert_ne!(key("cn=a,dc=x"), key("cn=b,dc=x"));
    }

    #[test]
    fn an_escaped_trailing_space_stays() {
        let dn = Dn::parse("OU=Sales (EMEA)\\ ,OU=x,DC=example").unwrap();
        assert_eq!(dn.first_value("ou"), Some("Sales (EMEA) "));
        assert_eq!(dn.parent(), "OU=x,DC=example");
        assert_eq!(dn.rdn(), Some("OU=Sales (EMEA)\\ "));
    }

    #[test]
    fn malformed_dns_are_refused() {
        assert!(Dn::parse("no equals sign").is_err());
        assert!(Dn::parse("cn=a,,dc=x").is_err());
        assert!(Dn::parse("cn=a\\").is_err());
    }
}
