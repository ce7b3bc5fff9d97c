//! Attribute values between koppel and LDAP: `AttrValue` to LDAP strings and back, and the
//! names koppel reserves or never reports.

use std::collections::{BTreeMap, HashMap, HashSet};

use koppel_core::AttrValue;

/// The reserved attribute holding an account's parent DN; never written as an attribute.
pub const CONTAINER: &str = "container";

/// True for an attribute description koppel may put into a filter or request: a name or
/// OID with options (`cn;lang-nl`), nothing that could change a filter's structure.
pub fn is_attribute_name(s: &str) -> bool {
    !s.is_empty()
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b';'))
}

/// The LDAP values of a koppel value: `Bool` as `TRUE`/`FALSE`, `Int` in decimal, a `List`
/// as several values; `Null` and empty text as none.
pub fn ldap_values(value: &AttrValue) -> Vec<String> {
    match value {
        AttrValue::Null => Vec::new(),
        AttrValue::Bool(b) => vec![if *b { "TRUE" } else { "FALSE" }.to_owned()],
        AttrValue::Int(i) => vec![i.to_string()],
        AttrValue::Text(s) if s.is_empty() => Vec::new(),
        AttrValue::Text(s) => vec![s.clone()],
        AttrValue::List(l) => {
            let mut seen = HashSet::new();
            l.iter()
                .filter(|v| !v.is_empty() && seen.insert(v.as_str()))
                .cloned()
                .collect()
        }
    }
}

/// The one value a single-valued use needs (an RDN, a filter assertion).
pub fn single_value(value: &AttrValue) -> Option<String> {
    ldap_values(value).into_iter().next()
}

pub fn value_set(values: Vec<String>) -> HashSet<Vec<u8>> {
    values.into_iter().map(String::into_bytes).collect()
}

/// A case-insensitive lookup in a search entry's attributes.
pub fn get_ci<'a, V>(attrs: &'a HashMap<String, V>, name: &str) -> Option<&'a V> {
    attrs.get(name).or_else(|| {
        attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// The first value of an attribute.
pub fn first<'a>(attrs: &'a HashMap<String, Vec<String>>, name: &str) -> Option<&'a str> {
    get_ci(attrs, name)
        .and_then(|v| v.first())
        .map(String::as_str)
}

/// Attributes as koppel reports them: one value as text, several as a list; the names in
/// `skip` (compared without case) left out.
pub fn to_attr_values(
    attrs: HashMap<String, Vec<String>>,
    skip: &[&str],
) -> BTreeMap<String, AttrValue> {
    attrs
        .into_iter()
        .filter(|(k, _)| !skip.iter().any(|s| s.eq_ignore_ascii_case(k)))
        .filter_map(|(k, mut v)| match v.len() {
            0 => None,
            1 => v.pop().map(|one| (k, AttrValue::Text(one))),
            _ => {
                v.sort();
                Some((k, AttrValue::List(v)))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_render_as_ldap_strings() {
        assert_eq!(ldap_values(&AttrValue::Bool(true)), ["TRUE"]);
        assert_eq!(ldap_values(&AttrValue::Int(-12)), ["-12"]);
        assert!(ldap_values(&AttrValue::Null).is_empty());
        assert!(ldap_values(&AttrValue::Text(String::new())).is_empty());
        assert_eq!(
            ldap_values(&AttrValue::List(vec!["a".into(), "b".into(), "a".into()])),
            ["a", "b"]
        );
    }

    #[test]
    fn attribute_names_cannot_smuggle_filters() {
        assert!(is_attribute_name("sAMAccountName"));
        assert!(is_attribute_name("cn;lang-nl"));
        assert!(is_attribute_name("2.5.4.3"));
        for bad in ["", "cn)(objectClass=*", "a b", "*", "(cn", "-x", "a=b"] {
            assert!(!is_attribute_name(bad), "{bad:?}");
        }
    }
}
