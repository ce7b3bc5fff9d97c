//! Name logic for usernames, e-mail addresses and display names: transliteration to ASCII
//! with an override table, Dutch naming conventions, initials. Plain functions, no CEL.
//!
//! The expression engine calls these for `ascii()`, `family_name()`, `initials()` and friends;
//! the planner may call them directly. Whitespace inside names is always collapsed to single
//! spaces, so source data with stray spaces yields the same values as clean data.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::model::{NamingConvention, PersonName};

/// Transliteration to ASCII: the override table first (longest match wins), then `deunicode`
/// for everything else. Built once per run.
#[derive(Debug, Clone, Default)]
pub struct Transliterator {
    /// Overrides sorted longest key first, so that "ij" beats "i" where both are given.
    overrides: Vec<(String, String)>,
    /// Whether some override key is pure ASCII: only then can ASCII input change.
    ascii_keys: bool,
}

impl Transliterator {
    /// `overrides` maps a source string to its replacement, e.g. "ü" → "ue". Empty keys are
    /// ignored. Replacements are themselves transliterated, so the result is always ASCII.
    pub fn new(overrides: &BTreeMap<String, String>) -> Self {
        let mut overrides: Vec<(String, String)> = overrides
            .iter()
            .filter(|(k, _)| !k.is_empty())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // Longest first; ties keep the BTreeMap's order, so the choice is deterministic.
        overrides.sort_by_key(|o| std::cmp::Reverse(o.0.len()));
        let ascii_keys = overrides.iter().any(|(k, _)| k.is_ascii());
        Self {
            overrides,
            ascii_keys,
        }
    }

    /// `s` in ASCII. Characters `deunicode` knows nothing about are dropped rather than
    /// replaced by a placeholder: a username never contains "[?]".
    pub fn ascii<'s>(&self, s: &'s str) -> Cow<'s, str> {
        if s.is_ascii() && !self.ascii_keys {
            return Cow::Borrowed(s);
        }
        if self.overrides.is_empty() {
            return deunicode::deunicode_with_tofu_cow(s, "");
        }
        let mut replaced = String::with_capacity(s.len() + 8);
        let mut rest = s;
        'outer: while let Some(c) = rest.chars().next() {
            for (from, to) in &self.overrides {
                if rest.starts_with(from.as_str()) {
                    replaced.push_str(to);
                    rest = &rest[from.len()..];
                    continue 'outer;
                }
            }
            replaced.push(c);
            rest = &rest[c.len_utf8()..];
        }
        Cow::Owned(deunicode::deunicode_with_tofu_cow(&replaced, "").into_owned())
    }
}

/// Collapses runs of whitespace to one space and trims both ends.
pub fn squash_spaces(s: &str) -> Cow<'_, str> {
    let clean = !s.starts_with(char::is_whitespace)
        && !s.ends_with(char::is_whitespace)
        && !s
            .as_bytes()
            .windows(2)
            .any(|w| w[0] == b' ' && w[1] == b' ')
        && !s.chars().any(|c| c.is_whitespace() && c != ' ');
    if clean {
        return Cow::Borrowed(s);
    }
    Cow::Owned(s.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Joins the non-empty parts with single spaces, collapsing whitespace inside them too.
fn join_words(parts: &[&str]) -> String {
    let mut out = String::new();
    push_words(&mut out, parts);
    out
}

/// An elided prefix ("d'", "l'") is written against the next word: "d'Ancona".
fn elided(word: &str) -> bool {
    word.len() > 1 && (word.ends_with('\'') || word.ends_with('’'))
}

/// The birth family name with its prefix: "de Vries".
pub fn birth_name(name: &PersonName) -> String {
    join_words(&[&name.family_prefix, &name.family])
}

/// The partner's family name with its prefix: "van den Berg".
pub fn partner_name(name: &PersonName) -> String {
    join_words(&[&name.partner_prefix, &name.partner])
}

/// The family name under the person's naming convention, prefixes included.
///
/// `B` "de Vries", `P` the partner's name, `BP` "Jansen-de Vries" (birth, then partner),
/// `PB` "de Vries-Jansen". When one of the two names is missing, the other is used alone.
pub fn family_name(name: &PersonName) -> String {
    let mut out = String::with_capacity(name.family.len() + name.partner.len() + 16);
    write_family_name(name, &mut out);
    out
}

/// [`family_name`], appended to `out`.
pub fn write_family_name(name: &PersonName, out: &mut String) {
    let birth = [name.family_prefix.as_str(), name.family.as_str()];
    let partner = [name.partner_prefix.as_str(), name.partner.as_str()];
    let (has_birth, has_partner) = (has_words(&birth), has_words(&partner));
    let parts: &[&[&str; 2]] = match (name.convention, has_birth, has_partner) {
        (_, _, false) | (NamingConvention::B, true, true) => &[&birth],
        (_, false, true) | (NamingConvention::P, true, true) => &[&partner],
        (NamingConvention::BP, true, true) => &[&birth, &partner],
        (NamingConvention::PB, true, true) => &[&partner, &birth],
    };
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push('-');
        }
        push_words(out, *part);
    }
}

fn has_words(parts: &[&str]) -> bool {
    parts
        .iter()
        .any(|p| p.contains(|c: char| !c.is_whitespace()))
}

/// Appends the words of `parts` single-spaced; returns whether there were any.
fn push_words(out: &mut String, parts: &[&str]) -> bool {
    let mut wrote = false;
    let mut glue = false;
    for word in parts.iter().flat_map(|p| p.split_whitespace()) {
        if wrote && !glue {
            out.push(' ');
        }
        out.push_str(word);
        glue = elided(word);
        wrote = true;
    }
    wrote
}

fn combine(convention: NamingConvention, birth: String, partner: String) -> String {
    if partner.is_empty() {
        return birth;
    }
    if birth.is_empty() {
        return partner;
    }
    match convention {
        NamingConvention::B => birth,
        NamingConvention::P => partner,
        NamingConvention::BP => format!("{birth}-{partner}"),
        NamingConvention::PB => format!("{partner}-{birth}"),
    }
}

/// The family name as a directory sorts it: the leading prefix moves to the end, after a
/// comma. "de Vries" → "Vries, de"; "de Vries-Jansen" (PB) → "Vries-Jansen, de"; a name
/// without a leading prefix is unchanged.
pub fn family_name_sort(name: &PersonName) -> String {
    let (first_prefix, birth, partner) = {
        let birth_bare = squash_spaces(&name.family).into_owned();
        let partner_bare = squash_spaces(&name.partner).into_owned();
        let birth_full = birth_name(name);
        let partner_full = partner_name(name);
        // Which part comes first decides whose prefix leads the whole name.
        let partner_first = match name.convention {
            _ if partner_full.is_empty() => false,
            _ if birth_full.is_empty() => true,
            NamingConvention::P | NamingConvention::PB => true,
            NamingConvention::B | NamingConvention::BP => false,
        };
        if partner_first {
            (
                squash_spaces(&name.partner_prefix).into_owned(),
                birth_full,
                partner_bare,
            )
        } else {
            (
                squash_spaces(&name.family_prefix).into_owned(),
                birth_bare,
                partner_full,
            )
        }
    };
    let joined = combine(name.convention, birth, partner);
    if first_prefix.is_empty() || joined.is_empty() {
        joined
    } else {
        format!("{joined}, {first_prefix}")
    }
}

/// The person's initials in "J.P." form: the `initials` field when set (normalised), else the
/// first letter of each given name. Dutch "IJ" counts as one letter: "IJsbrand" → "IJ.".
pub fn initials(name: &PersonName) -> String {
    let mut out = String::with_capacity(8);
    write_initials(name, &mut out);
    out
}

/// [`initials`], appended to `out`.
pub fn write_initials(name: &PersonName, out: &mut String) {
    if name.initials.trim().is_empty() {
        push_initials_of_given(&name.given, out);
    } else {
        push_normalized_initials(&name.initials, out);
    }
}

/// "Jan Pieter" → "J.P.", "Jan-Willem" → "J.W.".
pub fn initials_of_given(given: &str) -> String {
    let mut out = String::new();
    push_initials_of_given(given, &mut out);
    out
}

fn push_initials_of_given(given: &str, out: &mut String) {
    for word in given.split(|c: char| c.is_whitespace() || c == '-' || c == '.') {
        let mut chars = word.chars().filter(|c| c.is_alphanumeric());
        let Some(first) = chars.next() else {
            continue;
        };
        out.extend(first.to_uppercase());
        if (first == 'I' || first == 'i') && chars.next().is_some_and(|c| c == 'J' || c == 'j') {
            out.push('J');
        }
        out.push('.');
    }
}

/// "JP", "J P", "j.p" and "J.P." all become "J.P."; dotted multi-letter initials such as
/// "Th.J." keep their letters: "Th.J.".
pub fn normalize_initials(initials: &str) -> String {
    let mut out = String::new();
    push_normalized_initials(initials, &mut out);
    out
}

fn push_normalized_initials(initials: &str, out: &mut String) {
    let has_separators = initials.contains('.') || initials.trim().contains(char::is_whitespace);
    if has_separators {
        for part in initials.split(|c: char| c == '.' || c.is_whitespace()) {
            let mut chars = part.chars().filter(|c| c.is_alphanumeric());
            let Some(first) = chars.next() else {
                continue;
            };
            out.extend(first.to_uppercase());
            out.extend(chars);
            out.push('.');
        }
    } else {
        for c in initials.chars().filter(|c| c.is_alphanumeric()) {
            out.extend(c.to_uppercase());
            out.push('.');
        }
    }
}

/// Nickname (else given name), a space, and the family name: single-spaced and trimmed.
pub fn display_name(name: &PersonName) -> String {
    let mut out =
        String::with_capacity(name.given.len() + name.family.len() + name.partner.len() + 16);
    write_display_name(name, &mut out);
    out
}

/// [`display_name`], appended to `out`.
pub fn write_display_name(name: &PersonName, out: &mut String) {
    let first = if name.nickname.trim().is_empty() {
        &name.given
    } else {
        &name.nickname
    };
    let wrote_first = push_words(out, &[first]);
    if wrote_first {
        out.push(' ');
    }
    let before_family = out.len();
    write_family_name(name, out);
    if wrote_first && out.len() == before_family {
        out.pop();
    }
}

/// Drops whitespace, apostrophes, hyphens and dots, the characters usernames leave out:
/// "d'Ancona" → "dAncona", "van der Berg" → "vanderBerg", "Jan-Willem" → "JanWillem".
pub fn compact(s: &str) -> Cow<'_, str> {
    if !s.contains(is_compacted) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(s.chars().filter(|&c| !is_compacted(c)).collect())
}

/// Escapes a value for one RDN of an LDAP distinguished name (RFC 4514 §2.4), so a
/// department called `Sales, Marketing + PR` stays one OU: `,+"\\<>;=` and NUL always,
/// a leading space or `#` and a trailing space. Written here rather than taken from the LDAP
/// crate because the core depends on no I/O stack.
pub fn dn_escape(s: &str) -> Cow<'_, str> {
    let last = s.len().saturating_sub(1);
    let needs = |i: usize, c: char| {
        matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' | '\0')
            || (i == 0 && matches!(c, ' ' | '#'))
            || (i == last && c == ' ')
    };
    if !s.char_indices().any(|(i, c)| needs(i, c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for (i, c) in s.char_indices() {
        if c == '\0' {
            out.push_str("\\00");
        } else {
            if needs(i, c) {
                out.push('\\');
            }
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The characters [`compact`] drops.
pub fn is_compacted(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\'' | '`' | '´' | '\u{2018}' | '\u{2019}' | '-' | '\u{2010}' | '\u{2011}' | '.'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(given: &str, prefix: &str, family: &str) -> PersonName {
        PersonName {
            given: given.into(),
            family_prefix: prefix.into(),
            family: family.into(),
            ..Default::default()
        }
    }

    fn with_partner(
        mut n: PersonName,
        prefix: &str,
        partner: &str,
        c: NamingConvention,
    ) -> PersonName {
        n.partner_prefix = prefix.into();
        n.partner = partner.into();
        n.convention = c;
        n
    }

    #[test]
    fn ascii_without_overrides_uses_deunicode() {
        let t = Transliterator::new(&BTreeMap::new());
        for (input, want) in [
            ("Müller", "Muller"),
            ("Çelik", "Celik"),
            ("Øberg", "Oberg"),
            ("Łukasz", "Lukasz"),
            ("Ĳsbrand", "IJsbrand"),
            ("IJsbrand", "IJsbrand"),
            ("Straße", "Strasse"),
            ("Dvořák", "Dvorak"),
            ("plain", "plain"),
            ("", ""),
        ] {
            assert_eq!(t.ascii(input), want, "{input}");
        }
        assert!(matches!(t.ascii("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn ascii_applies_overrides_longest_first() {
        let overrides: BTreeMap<String, String> =
            [("ü", "ue"), ("ö", "oe"), ("ß", "ss"), ("Ü", "Ue")]
                .into_iter()
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .collect();
        let t = Transliterator::new(&overrides);
        assert_eq!(t.ascii("Müller"), "Mueller");
        assert_eq!(t.ascii("Über Öl"), "Ueber Ol");
        assert_eq!(t.ascii("Çelik"), "Celik");
        let longest: BTreeMap<String, String> = [("a", "1"), ("ab", "2")]
            .into_iter()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect();
        let t = Transliterator::new(&longest);
        assert_eq!(t.ascii("abac"), "21c");
        // Replacements are transliterated too, so the output stays ASCII.
        let odd: BTreeMap<String, String> = [("x".to_owned(), "é".to_owned())].into();
        assert_eq!(Transliterator::new(&odd).ascii("xo"), "eo");
    }

    #[test]
    fn ascii_drops_what_it_cannot_transliterate() {
        let t = Transliterator::new(&BTreeMap::new());
        assert!(t.ascii("a\u{10FFFD}b").is_ascii());
    }

    #[test]
    fn family_name_follows_the_convention() {
        use NamingConvention::*;
        let base = name("Anna", "de", "Vries");
        assert_eq!(family_name(&base), "de Vries");
        let jansen = name("Anna", "", "Jansen");
        assert_eq!(
            family_name(&with_partner(jansen.clone(), "de", "Vries", B)),
            "Jansen"
        );
        assert_eq!(
            family_name(&with_partner(jansen.clone(), "de", "Vries", P)),
            "de Vries"
        );
        assert_eq!(
            family_name(&with_partner(jansen.clone(), "de", "Vries", BP)),
            "Jansen-de Vries"
        );
        assert_eq!(
            family_name(&with_partner(jansen.clone(), "de", "Vries", PB)),
            "de Vries-Jansen"
        );
        // A missing partner name falls back to the birth name.
        assert_eq!(
            family_name(&with_partner(jansen.clone(), "", "", P)),
            "Jansen"
        );
        assert_eq!(
            family_name(&with_partner(jansen.clone(), "", "", BP)),
            "Jansen"
        );
        assert_eq!(family_name(&with_partner(jansen, "", "", PB)), "Jansen");
        // Stray whitespace is collapsed.
        assert_eq!(
            family_name(&name("", " van  der ", " Berg")),
            "van der Berg"
        );
    }

    #[test]
    fn elided_prefix_joins_the_name() {
        let n = name("Sophie", "d'", "Ancona");
        assert_eq!(family_name(&n), "d'Ancona");
        assert_eq!(display_name(&n), "Sophie d'Ancona");
        assert_eq!(family_name(&name("Jan", "van der", "Berg")), "van der Berg");
    }

    #[test]
    fn family_name_sort_moves_the_leading_prefix_back() {
        use NamingConvention::*;
        assert_eq!(family_name_sort(&name("Anna", "de", "Vries")), "Vries, de");
        assert_eq!(family_name_sort(&name("Anna", "", "Jansen")), "Jansen");
        let jansen = name("Anna", "", "Jansen");
        assert_eq!(
            family_name_sort(&with_partner(jansen.clone(), "de", "Vries", PB)),
            "Vries-Jansen, de"
        );
        assert_eq!(
            family_name_sort(&with_partner(jansen.clone(), "de", "Vries", BP)),
            "Jansen-de Vries"
        );
        assert_eq!(
            family_name_sort(&with_partner(jansen, "de", "Vries", P)),
            "Vries, de"
        );
    }

    #[test]
    fn initials_from_field_or_given_names() {
        assert_eq!(initials(&name("Jan Pieter", "", "")), "J.P.");
        assert_eq!(initials(&name("jan-willem", "", "")), "J.W.");
        assert_eq!(initials(&name("IJsbrand", "", "")), "IJ.");
        assert_eq!(initials(&name("", "", "")), "");
        let mut n = name("Jan Pieter", "", "");
        for (field, want) in [
            ("JP", "J.P."),
            ("J.P.", "J.P."),
            ("j. p.", "J.P."),
            ("J P", "J.P."),
            ("Th.J.", "Th.J."),
        ] {
            n.initials = field.into();
            assert_eq!(initials(&n), want, "{field}");
        }
    }

    #[test]
    fn display_name_prefers_nickname_and_single_spaces() {
        let mut n = name("Johannes", "de", "Vries");
        assert_eq!(display_name(&n), "Johannes de Vries");
        n.nickname = " Hans ".into();
        assert_eq!(display_name(&n), "Hans de Vries");
        n.partner = "Jansen".into();
        n.convention = NamingConvention::PB;
        assert_eq!(display_name(&n), "Hans Jansen-de Vries");
        assert_eq!(display_name(&name("Cher", "", "")), "Cher");
    }

    #[test]
    fn dn_escape_follows_rfc_4514() {
        assert_eq!(dn_escape("Sales"), "Sales");
        assert!(matches!(dn_escape("Sales"), Cow::Borrowed(_)));
        assert_eq!(
            dn_escape(r#"O'Brien, Jr. (Sales)*\"#),
            r#"O'Brien\, Jr. (Sales)*\\"#
        );
        assert_eq!(dn_escape(r#"=#+<>;""#), r#"\=#\+\<\>\;\""#);
        assert_eq!(dn_escape(" lead and trail "), r"\ lead and trail\ ");
        assert_eq!(dn_escape("#hash"), r"\#hash");
        assert_eq!(dn_escape(" "), r"\ ");
        assert_eq!(dn_escape("a\0b"), r"a\00b");
        assert_eq!(dn_escape("Ĳsbrand Müller"), "Ĳsbrand Müller");
        assert_eq!(dn_escape(""), "");
    }

    #[test]
    fn compact_drops_separators() {
        assert_eq!(compact("d'Ancona"), "dAncona");
        assert_eq!(compact("van der Berg"), "vanderBerg");
        assert_eq!(compact("Jan-Willem"), "JanWillem");
        assert_eq!(compact("J.P. d’Arc"), "JPdArc");
        assert!(matches!(compact("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn squash_spaces_is_borrowed_when_clean() {
        assert!(matches!(squash_spaces("a b"), Cow::Borrowed(_)));
        assert_eq!(squash_spaces(" a \t b  "), "a b");
    }
}
