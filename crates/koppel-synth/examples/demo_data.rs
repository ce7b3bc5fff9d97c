//! Writes the demo organisation's HR data: `examples/demo/hr` (run date 2026-11-23) and
//! `examples/demo/hr-month-later` (2026-12-23), generated people plus hand-placed cases.
//!
//! `cargo run -p koppel-synth --example demo-data [-- <examples/demo dir>]`
//!
//! The output is committed; rerun only to change the demo, then update its README from
//! what this program prints.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use koppel_core::{Contract, Date, NamingConvention, Person, PersonName, Snapshot, Title};
use koppel_synth::{Changes, Options, generate, month_later, write_csv};

const SEED: u64 = 20_261_123;
const GENERATED: usize = 480;

/// The generator's cities become the municipality's buildings.
const BUILDINGS: &[(&str, &str)] = &[
    ("Utrecht", "Stadhuis"),
    ("Amsterdam", "Stadskantoor"),
    ("Rotterdam", "Publiekshal"),
    ("Den Haag", "Werkplein"),
    ("Eindhoven", "Wijkcentrum De Brug"),
    ("Groningen", "Wijkcentrum Het Anker"),
    ("Zwolle", "Gemeentewerf"),
    ("Arnhem", "Servicepunt Koppelkerk"),
    ("'s-Hertogenbosch", "Servicepunt 's-Gravenkoppel"),
    ("Amersfoort", "Kantoor Koppelhaven"),
];

// The hand-placed persons the demo README narrates, ids 1000901 and up. Written as the CSV
// they end up in, so the cases read at a glance; manager and cost centre come from the
// generated organisation.
const PERSON_COLUMNS: &str = "external_id,given_name,nickname,initials,family_name_prefix,family_name,partner_name_prefix,partner_name,naming_convention,email,phone,excluded,badge_number,employee_group";

const NAMED_PERSONS: &str = "
1000901,Marieke,,M.J.,,Jansen,de,Vries,BP,marieke.jansen@koppeldam.example,+31612345901,false,900101,Medewerker
1000902,Sanne,,S.,van den,Berg,,Bakker,PB,,+31612345902,false,900102,Medewerker
1000903,Liam,,L.P.,,O'Brien,,,B,,+31612345903,false,900103,Medewerker
1000904,Jan-Willem,,J.W.,,Verhagen-Smit,,,B,,06-12345904,false,900104,Medewerker
1000905,Zoë,,Z.,,Çelik,,,B,,+31612345905,false,900105,Medewerker
1000906,Ĳsbrand,,Ĳ.,,Ĳzerman,,,B,,+31612345906,false,900106,Medewerker
1000907,Đorđe,,Đ.,,Đukić,,,B,,+31612345907,false,900107,Medewerker
1000908,Sophie,,S.A.,d',Ancona,,,B,,+31612345908,false,900108,Medewerker
1000909,Anaïs,,A.,in 't,Veld,,,B,,+31612345909,false,900109,Medewerker
1000910,Jan,,J.,de,Vries,,,B,,+31612345910,false,900110,Medewerker
1000911,Jan,,J.P.,de,Vries,,,B,,+31612345911,false,900111,Medewerker
1000912,Jan,,J.H.,de,Vries,,,B,,+31612345912,false,900112,Medewerker
1000913,Emma,,E.,,Jansen,,,B,,+31612345913,false,900113,Medewerker
1000914,Emma,,E.M.,,Jansen,,,B,,,false,900114,Medewerker
1000915,Mohamed,,M.,,El Amrani,,,B,,+31612345915,false,900115,Medewerker
1000916,Mohamed,,M.A.,,El Amrani,,,B,,+31612345916,false,,Inhuur
1000917,Sophie,,S.,,Bakker,,,B,sophie.bakker@koppeldam.example,+31612345917,false,900117,Medewerker
1000918,Sophie,,S.C.,,Bakker,,,B,,+31612345918,false,900118,Stagiair
1000919,Kübra,,K.,,Öztürk,,,B,,+31612345919,false,900119,Medewerker
1000920,Sjoerd,,S.,van der,Meer,,,B,,+31612345920,false,900120,Medewerker
1000921,Renée,,R.,ter,Horst,,,B,,+31612345921,false,900121,Medewerker
1000922,Noël,,N.,de,Boer,,,B,,+31612345922,false,900122,Medewerker
1000923,Wilhelmina,Willeke,W.J.M.,van der,Linden,,,B,w.vanderlinden@koppeldam.example,+31612345923,true,900123,Medewerker
1000924,Pieter,,P.,,Hoekstra,,,B,,,true,,Inhuur
1000925,Lotte,,L.,,Visser,,,B,,+31612345925,false,900125,Medewerker
1000926,Daan,,D.,,Mulder,,,B,,+31612345926,false,900126,Medewerker
1000927,Fleur,,F.,,Hendriks,,,B,,+31612345927,false,900127,Medewerker
1000928,Thijs,,T.,,Kramer,,,B,,+31612345928,false,900128,Medewerker
1000929,Ingrid,,I.,,Smit,,,B,,+31612345929,false,900129,Medewerker
1000930,Bram,,B.,,Dekker,,,B,,+31612345930,false,900130,Medewerker
1000931,Esther,,E.,,Brouwer,,,B,,+31612345931,false,900131,Medewerker
1000932,Hendrik,Henk,H.G.,,Kuipers,,,B,,+31612345932,false,900132,Medewerker
";

const CONTRACT_COLUMNS: &str = "contract_id,external_id,start_date,end_date,department_code,title_code,title,location,employment_type,hours_per_week";

const NAMED_CONTRACTS: &str = "
1000901-1,1000901,2015-03-01,,HR-ADV,HR01,HR-adviseur,Stadhuis,Vast,32
1000902-1,1000902,2019-09-01,,FIN-AP,FIN01,Medewerker Financiële administratie,Stadskantoor,Vast,28
1000903-1,1000903,2021-02-01,,ICT-WPL,ICT02,Systeembeheerder,Stadskantoor,Vast,36
1000904-1,1000904,2012-05-01,,RO-OMG,RO01,Beleidsadviseur Ruimtelijke Ordening,Stadhuis,Vast,36
1000905-1,1000905,2023-04-01,,KCC-TEL,KCC01,Klantcontactmedewerker,Publiekshal,Vast,24
1000906-1,1000906,2008-01-01,,BRP-BAG,BRP01,Medewerker Basisregistraties,Stadskantoor,Vast,36
1000907-1,1000907,2024-06-01,,WI-UIT,WI01,Consulent Werk en Inkomen,Werkplein,Vast,36
1000908-1,1000908,2017-10-01,,BZ-BAL,BZ01,Medewerker Burgerzaken,Publiekshal,Vast,32
1000909-1,1000909,2020-01-01,,WMO-IND,WMO01,Wmo-consulent,Wijkcentrum De Brug,Vast,32
1000910-1,1000910,2010-09-01,,ICT-WPL,ICT01,Servicedeskmedewerker,Stadskantoor,Vast,36
1000911-1,1000911,2016-02-01,,WMO-HV,WMO01,Wmo-consulent,Wijkcentrum Het Anker,Vast,24
1000912-1,1000912,2022-11-01,,HH-BOA,HH01,Handhaver (boa),Gemeentewerf,Vast,36
1000913-1,1000913,2021-05-01,,KCC-DIG,KCC01,Klantcontactmedewerker,Publiekshal,Vast,32
1000914-1,1000914,2025-09-01,2027-08-31,FIN-AR,FIN01,Medewerker Financiële administratie,Stadskantoor,Tijdelijk,36
1000915-1,1000915,2018-03-01,,WI-UIT,WI01,Consulent Werk en Inkomen,Werkplein,Vast,36
1000916-1,1000916,2026-01-05,2027-06-30,ICT-WPL,ICT02,Systeembeheerder,Stadskantoor,Extern,32
1000917-1,1000917,2014-08-01,,JEU-JHV,JEU01,Jeugdconsulent,Wijkcentrum De Brug,Vast,32
1000918-1,1000918,2026-09-01,2027-01-31,HR-ADV,ALG90,Stagiair,Stadhuis,Intern,36
1000919-1,1000919,2019-01-01,,WMO-IND,WMO01,Wmo-consulent,Wijkcentrum De Brug,Vast,24
1000919-2,1000919,2025-03-01,,JEU-JHV,JEU01,Jeugdconsulent,Wijkcentrum De Brug,Vast,12
1000920-1,1000920,2026-12-01,,ICT-WPL,ICT01,Servicedeskmedewerker,Stadskantoor,Vast,36
1000921-1,1000921,2024-11-01,2026-11-13,BZ-BO,BZ01,Medewerker Burgerzaken,Publiekshal,Tijdelijk,32
1000922-1,1000922,2020-07-01,2026-06-30,FIN-AR,FIN01,Medewerker Financiële administratie,Stadskantoor,Vast,36
1000923-1,1000923,2006-01-01,,ORG,BS01,Bestuursadviseur,Stadhuis,Vast,36
1000924-1,1000924,2025-05-01,2027-04-30,FIN,ALG02,Adviseur,Stadskantoor,Extern,16
1000925-1,1000925,2020-04-01,,KCC-TEL,KCC01,Klantcontactmedewerker,Publiekshal,Vast,28
1000926-1,1000926,2019-06-01,,ICT-WPL,ICT01,Servicedeskmedewerker,Stadskantoor,Vast,36
1000927-1,1000927,2018-02-01,,BZ-BAL,BZ01,Medewerker Burgerzaken,Publiekshal,Vast,32
1000928-1,1000928,2021-09-01,,WI-UIT,WI01,Consulent Werk en Inkomen,Werkplein,Vast,36
1000929-1,1000929,2011-01-01,,FIN-AP,FIN01,Medewerker Financiële administratie,Stadskantoor,Vast,24
1000930-1,1000930,2023-01-01,,HH-BOA,HH01,Handhaver (boa),Gemeentewerf,Vast,36
1000931-1,1000931,2016-05-01,,RO-PRJ,RO01,Beleidsadviseur Ruimtelijke Ordening,Stadhuis,Vast,32
1000932-1,1000932,1998-08-01,2026-12-12,BRP-BAG,BRP01,Medewerker Basisregistraties,Stadskantoor,Vast,36
";

// A month later: person rows replace or add by external id, contract rows by contract id.
const LATER_PERSONS: &str = "
1000925,Lotte,,L.,,Visser,van,Dijk,BP,,+31612345925,false,900125,Medewerker
1000951,Fatima,,F.Z.,,El Idrissi,,,B,,+31612345951,false,900151,Medewerker
1000952,Łukasz,,Ł.,,Wójcik,,,B,,+31612345952,false,900152,Medewerker
1000953,Jan,,J.W.,de,Vries,,,B,,+31612345953,false,900153,Medewerker
";

const LATER_CONTRACTS: &str = "
1000921-2,1000921,2026-12-15,,BZ-BAL,BZ01,Medewerker Burgerzaken,Publiekshal,Vast,32
1000922-2,1000922,2026-12-01,,FIN-AP,FIN02,Financieel adviseur,Stadskantoor,Vast,32
1000926-1,1000926,2019-06-01,2026-11-30,ICT-WPL,ICT01,Servicedeskmedewerker,Stadskantoor,Vast,36
1000926-2,1000926,2026-12-01,,FIN-AR,FIN02,Financieel adviseur,Kantoor Koppelhaven,Vast,36
1000927-1,1000927,2018-02-01,,BZ-BAL,BZ02,Senior medewerker Burgerzaken,Publiekshal,Vast,32
1000928-1,1000928,2021-09-01,,WI-UIT,WI01,Consulent Werk en Inkomen,Servicepunt Koppelkerk,Vast,36
1000929-1,1000929,2011-01-01,2026-12-15,FIN-AP,FIN01,Medewerker Financiële administratie,Stadskantoor,Vast,24
1000930-1,1000930,2023-01-01,2026-12-23,HH-BOA,HH01,Handhaver (boa),Gemeentewerf,Vast,36
1000931-1,1000931,2016-05-01,2027-01-31,RO-PRJ,RO01,Beleidsadviseur Ruimtelijke Ordening,Stadhuis,Vast,32
1000951-1,1000951,2026-12-15,,WMO-IND,WMO01,Wmo-consulent,Wijkcentrum Het Anker,Vast,32
1000952-1,1000952,2027-01-04,2027-12-31,ICT-WPL,ICT02,Systeembeheerder,Stadskantoor,Tijdelijk,36
1000953-1,1000953,2027-01-04,,FIN-AP,FIN01,Medewerker Financiële administratie,Stadskantoor,Vast,36
";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args_os().nth(1).map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo"),
        PathBuf::from,
    );
    let today: Date = "2026-11-23".parse()?;
    let later: Date = "2026-12-23".parse()?;

    let opts = Options {
        departments: 32,
        locations: 10,
        organisation: "Gemeente Koppeldam".into(),
        email_domain: "koppeldam.example".into(),
        joiner_window_days: 20,
        leaver_window_days: 30,
        ..Options::new(GENERATED, SEED, today)
    };
    let mut first = generate(&opts);
    let buildings: BTreeMap<&str, &str> = BUILDINGS.iter().copied().collect();
    for c in first
        .persons
        .iter_mut()
        .flat_map(|p| p.contracts.iter_mut())
    {
        if let Some(b) = buildings.get(c.location.as_str()) {
            c.location = (*b).to_owned();
        }
    }
    let org = Org::of(&first);
    let named = org.persons(NAMED_PERSONS, NAMED_CONTRACTS)?;
    first.persons.extend(named.iter().cloned());
    first.normalize();

    let changes = Changes {
        movers: 0.03,
        leavers: 0.01,
        joiners: 0.01,
    };
    let mut second = month_later(&first, &changes, SEED + 1, later);
    // The named cases follow their script, whatever the random month did to them.
    second
        .persons
        .retain(|p| named.iter().all(|n| n.external_id != p.external_id));
    let mut scripted = named;
    for p in org.persons(LATER_PERSONS, "")? {
        match scripted.iter_mut().find(|s| s.external_id == p.external_id) {
            Some(s) => s.name = p.name,
            None => scripted.push(p),
        }
    }
    for c in org.contracts(LATER_CONTRACTS)? {
        let (person, c) = c;
        let Some(p) = scripted.iter_mut().find(|s| s.external_id == person) else {
            return Err(format!("no person {person}").into());
        };
        match p.contracts.iter_mut().find(|o| o.id == c.id) {
            Some(o) => *o = c,
            None => p.contracts.push(c),
        }
    }
    second.persons.extend(scripted);
    second.normalize();

    write_csv(&first, &out.join("hr"))?;
    write_csv(&second, &out.join("hr-month-later"))?;
    report(&first, &second, today, later);
    Ok(())
}

/// What hand-placed rows need from the generated organisation.
struct Org {
    managers: BTreeMap<String, String>,
    cost_centres: BTreeMap<String, String>,
}

fn reader(header: &str, rows: &str) -> csv::Reader<std::io::Cursor<Vec<u8>>> {
    let text = format!("{header}\n{}", rows.trim_start());
    csv::Reader::from_reader(std::io::Cursor::new(text.into_bytes()))
}

impl Org {
    fn of(s: &Snapshot) -> Self {
        let mut cost_centres = BTreeMap::new();
        for c in s.persons.iter().flat_map(|p| &p.contracts) {
            cost_centres
                .entry(c.department.clone())
                .or_insert_with(|| c.cost_centre.clone());
        }
        let managers = s
            .departments
            .values()
            .map(|d| (d.code.clone(), d.manager.clone()))
            .collect();
        Self {
            managers,
            cost_centres,
        }
    }

    /// Persons from `PERSON_COLUMNS` rows, with their contracts from `CONTRACT_COLUMNS` rows.
    fn persons(
        &self,
        persons: &str,
        contracts: &str,
    ) -> Result<Vec<Person>, Box<dyn std::error::Error>> {
        let mut out = Vec::new();
        for row in reader(PERSON_COLUMNS, persons).records() {
            let r = row?;
            let mut custom = BTreeMap::new();
            for (key, i) in [("badge_number", 12), ("employee_group", 13)] {
                if !r[i].is_empty() {
                    custom.insert(key.to_owned(), r[i].to_owned());
                }
            }
            out.push(Person {
                external_id: r[0].into(),
                name: PersonName {
                    given: r[1].into(),
                    nickname: r[2].into(),
                    initials: r[3].into(),
                    family_prefix: r[4].into(),
                    family: r[5].into(),
                    partner_prefix: r[6].into(),
                    partner: r[7].into(),
                    convention: NamingConvention::parse(&r[8]).ok_or("naming convention")?,
                },
                email: r[9].into(),
                phone: r[10].into(),
                excluded: &r[11] == "true",
                custom,
                contracts: Vec::new(),
            });
        }
        for (person, c) in self.contracts(contracts)? {
            let Some(p) = out.iter_mut().find(|p| p.external_id == person) else {
                return Err(format!("no person {person}").into());
            };
            p.contracts.push(c);
        }
        Ok(out)
    }

    /// (person, contract) from `CONTRACT_COLUMNS` rows.
    fn contracts(&self, rows: &str) -> Result<Vec<(String, Contract)>, Box<dyn std::error::Error>> {
        let mut out = Vec::new();
        if rows.trim().is_empty() {
            return Ok(out);
        }
        for row in reader(CONTRACT_COLUMNS, rows).records() {
            let r = row?;
            let person = r[1].to_owned();
            let dept = &r[4];
            let Some(manager) = self.managers.get(dept) else {
                return Err(format!("no department {dept}").into());
            };
            let end = if r[3].is_empty() {
                None
            } else {
                Some(r[3].parse()?)
            };
            let mut c = Contract::new(&r[0], r[2].parse()?, end);
            c.department = dept.to_owned();
            c.title = Title {
                code: r[5].into(),
                name: r[6].into(),
            };
            c.location = r[7].into();
            c.cost_centre = self.cost_centres.get(dept).cloned().unwrap_or_default();
            if *manager != person {
                c.manager.clone_from(manager);
            }
            c.employment_type = r[8].into();
            let hours: f64 = r[9].parse()?;
            c.hours_per_week = Some(hours);
            c.fte = Some((hours / 36.0 * 10_000.0).round() / 10_000.0);
            c.sequence =
                c.id.rsplit_once('-')
                    .and_then(|(_, n)| n.parse().ok())
                    .unwrap_or(1);
            out.push((person, c));
        }
        Ok(out)
    }
}

/// Prints what the demo README lists: collisions, lifecycle edges and the month's changes.
fn report(first: &Snapshot, second: &Snapshot, today: Date, later: Date) {
    println!(
        "first: {} persons, {} departments",
        first.persons.len(),
        first.departments.len()
    );
    println!("second: {} persons", second.persons.len());
    for d in first.departments.values() {
        println!(
            "  dept {} {} (parent {}, manager {})",
            d.code, d.name, d.parent, d.manager
        );
    }
    let mut names: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for p in &first.persons {
        let n = &p.name;
        let full = [n.given.as_str(), &n.family_prefix, &n.family]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        names.entry(full).or_default().push(&p.external_id);
    }
    for (name, ids) in names.iter().filter(|(_, ids)| ids.len() > 1) {
        println!("  collision {name}: {}", ids.join(", "));
    }
    let days = |d: Date| (d - today).num_days();
    for p in &first.persons {
        let active = p.is_active_on(today);
        let two = p.contracts.iter().filter(|c| c.is_active_on(today)).count() > 1;
        if !active && p.contracts.iter().any(|c| days(c.start) > 0) {
            println!(
                "  future joiner {} ({})",
                p.external_id,
                p.contracts
                    .iter()
                    .map(|c| c.start.to_string())
                    .max()
                    .unwrap_or_default()
            );
        }
        if !active
            && p.contracts
                .iter()
                .any(|c| c.end.is_some_and(|e| (-30..0).contains(&days(e))))
        {
            println!("  recent leaver {}", p.external_id);
        }
        if two {
            println!("  two running contracts {}", p.external_id);
        }
        if p.excluded {
            println!("  excluded {}", p.external_id);
        }
    }
    for p in &second.persons {
        match first.person(&p.external_id) {
            None => println!(
                "  joiner {} {} {} starts {}",
                p.external_id,
                p.name.given,
                p.name.family,
                p.contracts
                    .iter()
                    .map(|c| c.start.to_string())
                    .min()
                    .unwrap_or_default()
            ),
            Some(old) if old != p => {
                let was = old.is_active_on(later)
                    && old
                        .contracts
                        .iter()
                        .any(|c| c.end.is_none_or(|e| e > later));
                let is = p.is_active_on(later)
                    && p.contracts.iter().any(|c| c.end.is_none_or(|e| e > later));
                let only_announced_ends = old.name == p.name
                    && p.contracts.iter().all(|c| {
                        old.contracts.iter().any(|o| {
                            o.id == c.id
                                && (o == c || (o.end.is_none() && c.end.is_some_and(|e| e > later)))
                        })
                    });
                let what = if was && !is {
                    "leaver"
                } else if only_announced_ends {
                    "future leaver"
                } else if !old.is_active_on(later) && p.is_active_on(later) {
                    "rehire"
                } else if old.name != p.name {
                    "name change"
                } else {
                    "mover"
                };
                println!("  {what} {}: {}", p.external_id, describe(old, p));
            }
            _ => {}
        }
    }
}

fn describe(old: &Person, new: &Person) -> String {
    let mut parts = Vec::new();
    for c in &new.contracts {
        match old.contracts.iter().find(|o| o.id == c.id) {
            None => parts.push(format!(
                "new contract {} from {} in {} as {} at {}",
                c.id, c.start, c.department, c.title.name, c.location
            )),
            Some(o) if o != c => {
                let mut d = Vec::new();
                if o.end != c.end {
                    d.push(format!(
                        "end {:?} → {:?}",
                        o.end.map(|e| e.to_string()),
                        c.end.map(|e| e.to_string())
                    ));
                }
                if o.department != c.department {
                    d.push(format!("department {} → {}", o.department, c.department));
                }
                if o.title != c.title {
                    d.push(format!("title {} → {}", o.title.name, c.title.name));
                }
                if o.location != c.location {
                    d.push(format!("location {} → {}", o.location, c.location));
                }
                parts.push(format!("{}: {}", c.id, d.join(", ")));
            }
            _ => {}
        }
    }
    if old.name != new.name {
        parts.push(format!(
            "name convention {} → {}, partner {} {}",
            old.name.convention.as_str(),
            new.name.convention.as_str(),
            new.name.partner_prefix,
            new.name.partner
        ));
    }
    parts.join("; ")
}
