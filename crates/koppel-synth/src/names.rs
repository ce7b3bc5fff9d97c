//! Name pools and how a synthetic person gets a name: Dutch given and family names with
//! prefixes, diacritics, partner names, naming conventions, nicknames and initials.

use std::sync::OnceLock;

use koppel_core::{NamingConvention, PersonName};

use crate::rng::{Rng, Weighted};

/// A given name, with the call names people who carry it formally often go by.
struct Given {
    name: &'static str,
    nicknames: &'static [&'static str],
}

const fn g(name: &'static str) -> Given {
    Given {
        name,
        nicknames: &[],
    }
}

const fn f(name: &'static str, nicknames: &'static [&'static str]) -> Given {
    Given { name, nicknames }
}

// Roughly in order of frequency in the Dutch working population, because sampling is
// Zipf-like by rank: the head repeats often ("Jan", "Maria"), which is what makes name
// collisions and username generation interesting. Names with diacritics and formal names
// sit mid-list so they are neither rare curiosities nor dominant.
const FEMALE: &[Given] = &[
    f("Maria", &["Marieke", "Mieke", "Ria"]),
    g("Anna"),
    g("Emma"),
    g("Sophie"),
    g("Linda"),
    g("Sanne"),
    g("Laura"),
    g("Julia"),
    f("Johanna", &["Anneke", "Joke", "Hanneke"]),
    g("Lisa"),
    g("Marieke"),
    g("Monique"),
    g("Esther"),
    g("Anouk"),
    g("Petra"),
    g("Ingrid"),
    f("Wilhelmina", &["Willeke", "Mien"]),
    g("Sandra"),
    g("Femke"),
    g("Lotte"),
    g("Eva"),
    g("Iris"),
    f("Catharina", &["Karin", "Toos", "Ineke"]),
    g("Fleur"),
    g("Anne"),
    g("Marloes"),
    g("Zoë"),
    g("Ilse"),
    f("Elisabeth", &["Els", "Liesbeth", "Lisette"]),
    g("Noa"),
    g("Saskia"),
    g("Fatima"),
    g("Renée"),
    g("Merel"),
    g("Anaïs"),
    g("Judith"),
    f("Cornelia", &["Corrie", "Nel", "Cora"]),
    g("Kübra"),
    g("Charlotte"),
    g("Yvonne"),
    g("Nina"),
    g("Chloë"),
    g("Maud"),
    g("Tess"),
    g("Roos"),
    g("Ayşe"),
    f("Alexandra", &["Sandra", "Lexa"]),
    g("Mirjam"),
    g("Kim"),
    g("Floor"),
    g("Elif"),
    g("Janneke"),
    g("Wendy"),
    g("Inês"),
    g("Hatice"),
    f("Geertruida", &["Truus", "Gerda"]),
    g("Bianca"),
    g("Mila"),
    g("Yara"),
    g("Samira"),
    g("Małgorzata"),
    g("Astrid"),
    g("Romy"),
    g("Lieke"),
    g("Noëlle"),
    f("Petronella", &["Nel", "Petra", "Nelleke"]),
    g("Siobhan"),
    g("Agnieszka"),
    g("Britt"),
    g("Demi"),
    g("Nadia"),
    f("Hendrika", &["Riet", "Henny", "Rika"]),
    g("Jolanda"),
    g("Mariska"),
    g("Fenna"),
    g("Amira"),
    g("Anne-Marie"),
    g("Marie-José"),
    g("Ceylan"),
    g("Noémie"),
];

const MALE: &[Given] = &[
    g("Jan"),
    f("Johannes", &["Hans", "Jan", "Johan"]),
    g("Peter"),
    g("Mark"),
    g("Daan"),
    f("Cornelis", &["Kees", "Cor"]),
    g("Thomas"),
    g("Pieter"),
    g("Martijn"),
    f("Hendrik", &["Henk", "Henny", "Rik"]),
    g("Dennis"),
    g("Bas"),
    g("Jeroen"),
    g("Sander"),
    f("Wilhelmus", &["Wim", "Willem", "Pim"]),
    g("Michel"),
    g("Ruben"),
    g("Tim"),
    g("Erik"),
    g("Mohamed"),
    f("Jacobus", &["Koos", "Jaap", "Co"]),
    g("Lucas"),
    g("Sem"),
    g("Willem"),
    g("Niels"),
    g("Bram"),
    g("Sjoerd"),
    g("Frank"),
    f("Petrus", &["Piet", "Peter"]),
    g("Koen"),
    g("Thijs"),
    g("Ahmed"),
    g("Jesse"),
    g("Wouter"),
    g("Stefan"),
    g("Noël"),
    f("Gerardus", &["Gerard", "Gert", "Ger"]),
    g("Levi"),
    g("Mustafa"),
    g("Joost"),
    g("Rob"),
    g("Joël"),
    g("Łukasz"),
    f("Adrianus", &["Ad", "Arie", "Aad"]),
    g("Finn"),
    g("Youssef"),
    g("Jan-Willem"),
    g("Hugo"),
    g("Mehmet"),
    f("Antonius", &["Toon", "Ton", "Anton"]),
    g("Stijn"),
    g("Đorđe"),
    g("Ruud"),
    g("Hüseyin"),
    g("IJsbrand"),
    f("Franciscus", &["Frans", "Frank"]),
    g("Jasper"),
    g("Floris"),
    g("Emre"),
    g("José"),
    g("Piotr"),
    f("Theodorus", &["Theo", "Ruud", "Dorus"]),
    g("Teun"),
    g("Gijs"),
    g("Liam"),
    g("Björn"),
    g("Søren"),
    f("Alexander", &["Sander", "Alex", "Lex"]),
    g("Ĳsbrand"),
    g("Maarten"),
    g("Rutger"),
    g("Jürgen"),
    f("Christiaan", &["Chris", "Stan"]),
    g("Guus"),
    g("Kerem"),
    g("Olivier"),
    g("Mees"),
    g("Pieter-Jan"),
    g("Ángel"),
];

/// Family names as (prefix, name): Dutch HR systems keep the prefix ("voorvoegsel") apart.
const FAMILY: &[(&str, &str)] = &[
    ("de", "Jong"),
    ("", "Jansen"),
    ("de", "Vries"),
    ("van den", "Berg"),
    ("van", "Dijk"),
    ("", "Bakker"),
    ("", "Janssen"),
    ("", "Visser"),
    ("", "Smit"),
    ("", "Meijer"),
    ("de", "Boer"),
    ("", "Mulder"),
    ("de", "Groot"),
    ("", "Bos"),
    ("", "Vos"),
    ("", "Peters"),
    ("", "Hendriks"),
    ("van", "Leeuwen"),
    ("", "Dekker"),
    ("", "Brouwer"),
    ("de", "Wit"),
    ("", "Dijkstra"),
    ("", "Smits"),
    ("de", "Graaf"),
    ("van der", "Meer"),
    ("van der", "Linden"),
    ("", "Kok"),
    ("", "Jacobs"),
    ("de", "Haan"),
    ("", "Vermeulen"),
    ("van den", "Heuvel"),
    ("van der", "Veen"),
    ("van den", "Broek"),
    ("de", "Bruijn"),
    ("", "Yılmaz"),
    ("van der", "Heijden"),
    ("", "Schouten"),
    ("van", "Beek"),
    ("", "Willems"),
    ("van", "Vliet"),
    ("van de", "Ven"),
    ("", "Hoekstra"),
    ("", "Maas"),
    ("", "Verhoeven"),
    ("", "Koster"),
    ("van", "Dam"),
    ("", "Çelik"),
    ("van der", "Wal"),
    ("", "Prins"),
    ("", "Blom"),
    ("", "Huisman"),
    ("'t", "Hart"),
    ("de", "Jonge"),
    ("", "Kuipers"),
    ("van", "Wijk"),
    ("", "Post"),
    ("", "Müller"),
    ("", "Kramer"),
    ("van den", "Brink"),
    ("", "Scholten"),
    ("ter", "Horst"),
    ("", "Martens"),
    ("", "Vink"),
    ("de", "Koning"),
    ("", "Öztürk"),
    ("", "Postma"),
    ("", "Timmermans"),
    ("", "Groen"),
    ("in 't", "Veld"),
    ("", "Koopmans"),
    ("van", "Loon"),
    ("", "El Amrani"),
    ("", "Bosman"),
    ("ten", "Brink"),
    ("", "Nowak"),
    ("", "Şahin"),
    ("van 't", "Hof"),
    ("", "Hoogendoorn"),
    ("", "Zwart"),
    ("", "O'Brien"),
    ("", "Verbeek"),
    ("", "Lammers"),
    ("d'", "Ancona"),
    ("van", "Rijn"),
    ("", "Kaya"),
    ("", "Øberg"),
    ("", "Bijl"),
    ("", "Wójcik"),
    ("", "Gerritsen"),
    ("", "IJzerman"),
    ("", "Rutten"),
    ("van", "Vugt"),
    ("", "Đukić"),
    ("", "Haverkamp"),
    ("op de", "Beek"),
    ("", "Pronk"),
    ("", "Nguyễn"),
    ("", "Ramdin"),
    ("", "Sanders"),
    ("", "Demir"),
    ("van der", "Zee"),
    ("", "Faber"),
    ("", "Ĳzerman"),
    ("", "Gonçalves"),
    ("dos", "Santos"),
    ("", "Kowalski"),
    ("van", "Rooij"),
    ("", "Schäfer"),
    ("", "Tjon-A-Fong"),
    ("", "Bouzid"),
    ("", "Sijbrandij"),
    ("la", "Rivière"),
    ("", "Stam"),
    ("", "Wouters"),
    ("", "Verhagen-Smit"),
    ("", "Lefèvre"),
    ("", "Wong"),
    ("van", "Dongen"),
];

struct Pools {
    female: Weighted,
    male: Weighted,
    family: Weighted,
}

fn pools() -> &'static Pools {
    static POOLS: OnceLock<Pools> = OnceLock::new();
    POOLS.get_or_init(|| Pools {
        female: Weighted::zipf(FEMALE.len(), 4),
        male: Weighted::zipf(MALE.len(), 4),
        family: Weighted::zipf(FAMILY.len(), 8),
    })
}

/// A family name (prefix, name) drawn from the pool.
pub(crate) fn family(rng: &mut Rng) -> (&'static str, &'static str) {
    FAMILY[pools().family.sample(rng)]
}

fn given(rng: &mut Rng, female: bool) -> &'static Given {
    let p = pools();
    if female {
        &FEMALE[p.female.sample(rng)]
    } else {
        &MALE[p.male.sample(rng)]
    }
}

/// Dutch initials: one letter a name part, "IJ" counted as one letter ("IJsbrand" → "IJ.").
pub(crate) fn initials_of(names: &[&str]) -> String {
    let mut out = String::new();
    for part in names.iter().flat_map(|n| n.split(['-', ' '])) {
        let mut chars = part.chars();
        let Some(first) = chars.next() else { continue };
        out.extend(first.to_uppercase());
        if first == 'I' && matches!(chars.next(), Some('J' | 'j')) {
            out.push('J');
        }
        out.push('.');
    }
    out
}

/// A full synthetic name. About a quarter of people carry a partner's name; of those the
/// conventions are weighted B > BP > P > PB, as Dutch HR data shows them.
pub(crate) fn person_name(rng: &mut Rng) -> PersonName {
    let female = rng.chance(0.52);
    let first = given(rng, female);
    let mut parts = vec![first.name];
    // Many Dutch people have a second (or third) given name that only shows in initials.
    if rng.chance(0.45) {
        parts.push(given(rng, female).name);
        if rng.chance(0.15) {
            parts.push(given(rng, female).name);
        }
    }
    let initials = initials_of(&parts);
    let nickname = if !first.nicknames.is_empty() && rng.chance(0.8) {
        (*rng.pick(first.nicknames)).to_owned()
    } else if rng.chance(0.02) {
        // A call name unrelated to the given names happens too.
        given(rng, female).name.to_owned()
    } else {
        String::new()
    };
    let (family_prefix, family_name) = family(rng);
    let mut name = PersonName {
        given: first.name.to_owned(),
        nickname,
        initials,
        family_prefix: family_prefix.to_owned(),
        family: family_name.to_owned(),
        ..PersonName::default()
    };
    if rng.chance(0.25) {
        let (prefix, partner) = loop {
            let candidate = family(rng);
            if candidate.1 != family_name {
                break candidate;
            }
        };
        name.partner_prefix = prefix.to_owned();
        name.partner = partner.to_owned();
        name.convention = match rng.below(10) {
            0..=3 => NamingConvention::B,
            4..=6 => NamingConvention::BP,
            7..=8 => NamingConvention::P,
            _ => NamingConvention::PB,
        };
    }
    if name.nickname == name.given {
        name.nickname.clear();
    }
    name
}

/// The ASCII local part of a business e-mail address: "j.devries", "anne-marie.obrien".
pub(crate) fn email_local(name: &PersonName) -> String {
    let call = if name.nickname.is_empty() {
        &name.given
    } else {
        &name.nickname
    };
    let family = match name.convention {
        NamingConvention::P | NamingConvention::PB if !name.partner.is_empty() => {
            format!("{}{}", name.partner_prefix, name.partner)
        }
        _ => format!("{}{}", name.family_prefix, name.family),
    };
    format!("{}.{}", ascii_word(call), ascii_word(&family))
}

fn ascii_word(s: &str) -> String {
    deunicode::deunicode(s)
        .chars()
        .filter_map(|c| match c {
            'a'..='z' | '0'..='9' | '-' => Some(c),
            'A'..='Z' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initials_follow_dutch_rules() {
        assert_eq!(initials_of(&["Johannes", "Petrus"]), "J.P.");
        assert_eq!(initials_of(&["IJsbrand"]), "IJ.");
        assert_eq!(initials_of(&["Jan-Willem"]), "J.W.");
        assert_eq!(initials_of(&["Łukasz"]), "Ł.");
        assert_eq!(initials_of(&["Ĳsbrand"]), "Ĳ.");
    }

    #[test]
    fn email_local_parts_are_ascii() {
        let name = PersonName {
            given: "Zoë".into(),
            family_prefix: "d'".into(),
            family: "Ancona".into(),
            ..PersonName::default()
        };
        assert_eq!(email_local(&name), "zoe.dancona");
        let name = PersonName {
            given: "Ĳsbrand".into(),
            family: "Çelik".into(),
            ..PersonName::default()
        };
        assert_eq!(email_local(&name), "ijsbrand.celik");
    }

    #[test]
    fn pools_have_no_duplicates() {
        let mut seen = std::collections::BTreeSet::new();
        for (p, n) in FAMILY {
            assert!(seen.insert((p, n)), "duplicate family name {p} {n}");
        }
        let mut seen = std::collections::BTreeSet::new();
        for g in FEMALE.iter().chain(MALE) {
            assert!(seen.insert(g.name), "duplicate given name {}", g.name);
        }
    }
}
