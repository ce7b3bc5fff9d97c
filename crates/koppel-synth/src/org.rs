//! The synthetic organisation: a department tree (root → divisions → departments → teams)
//! built from a catalogue of Dutch public-sector and business units, titles and locations.

use std::collections::BTreeMap;

use koppel_core::{Department, Title};

/// Where in the tree a department sits; decides its manager's title and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Root,
    Division,
    Department,
    Team,
}

struct DivisionSpec {
    code: &'static str,
    name: &'static str,
    departments: &'static [DeptSpec],
    /// (code, name) of the division's staff titles, which its departments use as well.
    titles: &'static [(&'static str, &'static str)],
}

struct DeptSpec {
    code: &'static str,
    name: &'static str,
    /// (code suffix, name) of its teams; generic teams are used when this runs out.
    teams: &'static [(&'static str, &'static str)],
    /// (code, name) of the titles typical for this department, most common first.
    titles: &'static [(&'static str, &'static str)],
}

type Pairs = &'static [(&'static str, &'static str)];

const fn d(code: &'static str, name: &'static str, teams: Pairs, titles: Pairs) -> DeptSpec {
    DeptSpec {
        code,
        name,
        teams,
        titles,
    }
}

// Divisions in the order the tree takes them: a small tree gets the first few, so the
// order reads as a municipality first and a general organisation as it grows. Department
// codes are unique across the catalogue.
const DIVISIONS: &[DivisionSpec] = &[
    DivisionSpec {
        code: "DV",
        name: "Dienstverlening",
        departments: &[
            d(
                "BZ",
                "Burgerzaken",
                &[("BAL", "Balie"), ("BO", "Backoffice")],
                &[
                    ("BZ01", "Medewerker Burgerzaken"),
                    ("BZ02", "Senior medewerker Burgerzaken"),
                    ("BZ03", "Ambtenaar burgerlijke stand"),
                ],
            ),
            d(
                "KCC",
                "Klantcontactcentrum",
                &[("TEL", "Telefonie"), ("DIG", "Digitale kanalen")],
                &[
                    ("KCC01", "Klantcontactmedewerker"),
                    ("KCC02", "Kwaliteitscoach KCC"),
                    ("KCC03", "Webredacteur"),
                ],
            ),
            d(
                "BRP",
                "Basisregistraties",
                &[("BAG", "BAG en WOZ"), ("GEO", "Geo-informatie")],
                &[
                    ("BRP01", "Medewerker Basisregistraties"),
                    ("BRP02", "Taxateur WOZ"),
                    ("BRP03", "GIS-specialist"),
                ],
            ),
            d(
                "VGV",
                "Vergunningverlening",
                &[
                    ("OMG", "Omgevingsvergunningen"),
                    ("APV", "APV en bijzondere wetten"),
                ],
                &[
                    ("VGV01", "Vergunningverlener"),
                    ("VGV02", "Casemanager Omgevingswet"),
                    ("VGV03", "Medewerker Bijzondere wetten"),
                ],
            ),
        ],
        titles: &[
            ("DV01", "Functioneel beheerder Dienstverlening"),
            ("DV02", "Procesadviseur Dienstverlening"),
        ],
    },
    DivisionSpec {
        code: "BV",
        name: "Bedrijfsvoering",
        departments: &[
            d(
                "FIN",
                "Financiën",
                &[
                    ("AP", "Crediteurenadministratie"),
                    ("AR", "Debiteurenadministratie"),
                    ("CTL", "Control"),
                ],
                &[
                    ("FIN01", "Medewerker Financiële administratie"),
                    ("FIN02", "Financieel adviseur"),
                    ("FIN03", "Controller"),
                    ("FIN04", "Belastingmedewerker"),
                ],
            ),
            d(
                "HR",
                "Human Resources",
                &[
                    ("ADV", "HR Advies"),
                    ("SAL", "Salarisadministratie"),
                    ("REC", "Recruitment"),
                ],
                &[
                    ("HR01", "HR-adviseur"),
                    ("HR02", "Salarisadministrateur"),
                    ("HR03", "Recruiter"),
                    ("HR04", "HR Business Partner"),
                ],
            ),
            d(
                "ICT",
                "ICT & Data",
                &[
                    ("WPL", "Werkplek"),
                    ("INF", "Infrastructuur"),
                    ("APP", "Applicatiebeheer"),
                    ("SD", "Servicedesk"),
                ],
                &[
                    ("ICT01", "Servicedeskmedewerker"),
                    ("ICT02", "Systeembeheerder"),
                    ("ICT03", "Applicatiebeheerder"),
                    ("ICT04", "Data Engineer"),
                    ("ICT05", "Security Officer"),
                    ("ICT06", "Informatieadviseur"),
                ],
            ),
            d(
                "FAC",
                "Facilitaire Zaken",
                &[
                    ("HSV", "Huisvesting"),
                    ("RCP", "Receptie en Beveiliging"),
                    ("DIV", "Documentaire Informatievoorziening"),
                ],
                &[
                    ("FAC01", "Facilitair medewerker"),
                    ("FAC02", "Receptionist"),
                    ("FAC03", "Medewerker DIV"),
                    ("FAC04", "Beveiliger"),
                ],
            ),
            d(
                "INK",
                "Inkoop",
                &[],
                &[("INK01", "Inkoopadviseur"), ("INK02", "Contractmanager")],
            ),
            d(
                "JZ",
                "Juridische Zaken",
                &[],
                &[("JZ01", "Jurist"), ("JZ02", "Secretaris Bezwaarcommissie")],
            ),
        ],
        titles: &[("BV01", "Adviseur Bedrijfsvoering")],
    },
    DivisionSpec {
        code: "SD",
        name: "Sociaal Domein",
        departments: &[
            d(
                "WMO",
                "Wmo en Zorg",
                &[
                    ("IND", "Indicatiestelling"),
                    ("HV", "Hulpmiddelen en voorzieningen"),
                ],
                &[
                    ("WMO01", "Wmo-consulent"),
                    ("WMO02", "Medewerker Voorzieningen"),
                    ("WMO03", "Ergotherapeut"),
                ],
            ),
            d(
                "JEU",
                "Jeugd",
                &[("JHV", "Jeugdhulp"), ("LPL", "Leerplicht")],
                &[
                    ("JEU01", "Jeugdconsulent"),
                    ("JEU02", "Leerplichtambtenaar"),
                    ("JEU03", "Gedragswetenschapper"),
                ],
            ),
            d(
                "WI",
                "Werk en Inkomen",
                &[("UIT", "Uitkeringen"), ("RE", "Re-integratie")],
                &[
                    ("WI01", "Consulent Werk en Inkomen"),
                    ("WI02", "Klantmanager Re-integratie"),
                    ("WI03", "Handhavingsspecialist Participatiewet"),
                ],
            ),
            d(
                "SHV",
                "Schuldhulpverlening",
                &[],
                &[("SHV01", "Schuldhulpverlener"), ("SHV02", "Budgetcoach")],
            ),
            d(
                "WT",
                "Wijkteams",
                &[
                    ("NRD", "Wijkteam Noord"),
                    ("ZUI", "Wijkteam Zuid"),
                    ("OST", "Wijkteam Oost"),
                    ("WST", "Wijkteam West"),
                ],
                &[
                    ("WT01", "Wijkcoach"),
                    ("WT02", "Maatschappelijk werker"),
                    ("WT03", "Ouder- en kindadviseur"),
                ],
            ),
        ],
        titles: &[
            ("SD01", "Beleidsmedewerker Sociaal Domein"),
            ("SD02", "Contractmanager Zorg"),
        ],
    },
    DivisionSpec {
        code: "RUI",
        name: "Ruimte",
        departments: &[
            d(
                "RO",
                "Ruimtelijke Ontwikkeling",
                &[("OMG", "Omgevingsplan"), ("PRJ", "Gebiedsontwikkeling")],
                &[
                    ("RO01", "Beleidsadviseur Ruimtelijke Ordening"),
                    ("RO02", "Projectleider Gebiedsontwikkeling"),
                    ("RO03", "Stedenbouwkundige"),
                ],
            ),
            d(
                "HH",
                "Toezicht en Handhaving",
                &[("BOA", "Boa's"), ("BWT", "Bouw- en woningtoezicht")],
                &[
                    ("HH01", "Handhaver (boa)"),
                    ("HH02", "Toezichthouder Bouwen"),
                    ("HH03", "Jurist Handhaving"),
                ],
            ),
            d(
                "MIL",
                "Milieu en Duurzaamheid",
                &[],
                &[("MIL01", "Adviseur Milieu"), ("MIL02", "Energiecoach")],
            ),
            d(
                "VB",
                "Verkeer en Bereikbaarheid",
                &[],
                &[("VB01", "Verkeerskundige"), ("VB02", "Adviseur Mobiliteit")],
            ),
            d(
                "GRB",
                "Grondbedrijf",
                &[],
                &[("GRB01", "Grondzaken specialist"), ("GRB02", "Planeconoom")],
            ),
        ],
        titles: &[("RUI01", "Beleidsadviseur Omgevingswet")],
    },
    DivisionSpec {
        code: "OR",
        name: "Openbare Ruimte",
        departments: &[
            d(
                "GRN",
                "Groen",
                &[("NRD", "Groen Noord"), ("ZUI", "Groen Zuid")],
                &[
                    ("GRN01", "Medewerker Groen"),
                    ("GRN02", "Hovenier"),
                    ("GRN03", "Boomverzorger"),
                ],
            ),
            d(
                "WEG",
                "Wegen en Kunstwerken",
                &[],
                &[
                    ("WEG01", "Vakman Wegen"),
                    ("WEG02", "Opzichter"),
                    ("WEG03", "Beheerder Kunstwerken"),
                ],
            ),
            d(
                "RIO",
                "Riolering en Water",
                &[],
                &[
                    ("RIO01", "Medewerker Riolering"),
                    ("RIO02", "Adviseur Water"),
                ],
            ),
            d(
                "AFV",
                "Afval en Reiniging",
                &[("INZ", "Inzameling"), ("MST", "Milieustraat")],
                &[
                    ("AFV01", "Chauffeur/belader"),
                    ("AFV02", "Medewerker Milieustraat"),
                    ("AFV03", "Veegmachinist"),
                ],
            ),
            d(
                "BGB",
                "Begraafplaatsen",
                &[],
                &[
                    ("BGB01", "Medewerker Begraafplaatsen"),
                    ("BGB02", "Beheerder Begraafplaats"),
                ],
            ),
        ],
        titles: &[
            ("OR01", "Beheerder Openbare Ruimte"),
            ("OR02", "Werkvoorbereider"),
        ],
    },
    DivisionSpec {
        code: "BST",
        name: "Bestuur en Concernstaf",
        departments: &[
            d(
                "BS",
                "Bestuurssecretariaat",
                &[],
                &[
                    ("BS01", "Bestuursadviseur"),
                    ("BS02", "Managementassistent"),
                ],
            ),
            d(
                "COM",
                "Communicatie",
                &[("PERS", "Pers en Woordvoering"), ("WEB", "Online")],
                &[
                    ("COM01", "Communicatieadviseur"),
                    ("COM02", "Woordvoerder"),
                    ("COM03", "Online redacteur"),
                ],
            ),
            d(
                "SBO",
                "Strategie en Beleid",
                &[],
                &[("SBO01", "Strategisch adviseur"), ("SBO02", "Onderzoeker")],
            ),
            d(
                "AUD",
                "Audit en Control",
                &[],
                &[("AUD01", "Auditor"), ("AUD02", "Concerncontroller")],
            ),
        ],
        titles: &[("BST01", "Concernadviseur")],
    },
    DivisionSpec {
        code: "PRG",
        name: "Programma's en Projecten",
        departments: &[
            d(
                "ENT",
                "Energietransitie",
                &[],
                &[
                    ("ENT01", "Programmamanager Energietransitie"),
                    ("ENT02", "Wijkregisseur Warmte"),
                ],
            ),
            d(
                "WON",
                "Wonen",
                &[],
                &[
                    ("WON01", "Beleidsadviseur Wonen"),
                    ("WON02", "Projectleider Woningbouw"),
                ],
            ),
            d(
                "DIG",
                "Digitale Transformatie",
                &[("AGL", "Agile teams"), ("ARC", "Architectuur")],
                &[
                    ("DIG01", "Product Owner"),
                    ("DIG02", "Scrum Master"),
                    ("DIG03", "Enterprise Architect"),
                    ("DIG04", "Developer"),
                ],
            ),
            d(
                "PMO",
                "Project Management Office",
                &[],
                &[("PMO01", "Projectondersteuner"), ("PMO02", "PMO-adviseur")],
            ),
        ],
        titles: &[("PRG01", "Projectleider"), ("PRG02", "Programmamanager")],
    },
    DivisionSpec {
        code: "ZW",
        name: "Zorg en Welzijn",
        departments: &[
            d(
                "WV",
                "Wijkverpleging",
                &[
                    ("NRD", "Wijkverpleging Noord"),
                    ("ZUI", "Wijkverpleging Zuid"),
                ],
                &[
                    ("WV01", "Wijkverpleegkundige"),
                    ("WV02", "Verzorgende IG"),
                    ("WV03", "Helpende"),
                ],
            ),
            d(
                "JGZ",
                "Jeugdgezondheidszorg",
                &[],
                &[
                    ("JGZ01", "Jeugdverpleegkundige"),
                    ("JGZ02", "Jeugdarts"),
                    ("JGZ03", "Doktersassistent"),
                ],
            ),
            d(
                "DAG",
                "Dagbesteding",
                &[],
                &[
                    ("DAG01", "Begeleider Dagbesteding"),
                    ("DAG02", "Activiteitenbegeleider"),
                ],
            ),
            d(
                "MZ",
                "Maatschappelijke Zorg",
                &[],
                &[
                    ("MZ01", "Maatschappelijk werker"),
                    ("MZ02", "Casemanager Dementie"),
                ],
            ),
        ],
        titles: &[
            ("ZW01", "Kwaliteitsverpleegkundige"),
            ("ZW02", "Planner Zorg"),
        ],
    },
    DivisionSpec {
        code: "ECS",
        name: "Economie, Cultuur en Sport",
        departments: &[
            d(
                "EZ",
                "Economische Zaken",
                &[],
                &[
                    ("EZ01", "Accountmanager Bedrijven"),
                    ("EZ02", "Marktmeester"),
                ],
            ),
            d(
                "CUL",
                "Cultuur en Erfgoed",
                &[("BIB", "Bibliotheek"), ("ARC", "Archief")],
                &[
                    ("CUL01", "Medewerker Bibliotheek"),
                    ("CUL02", "Archivaris"),
                    ("CUL03", "Cultuurmakelaar"),
                ],
            ),
            d(
                "SPT",
                "Sport en Recreatie",
                &[("ZWB", "Zwembad"), ("SPH", "Sporthallen")],
                &[
                    ("SPT01", "Zweminstructeur"),
                    ("SPT02", "Sportbuurtcoach"),
                    ("SPT03", "Beheerder Sportaccommodatie"),
                ],
            ),
        ],
        titles: &[("ECS01", "Beleidsadviseur Economie")],
    },
    DivisionSpec {
        code: "VHH",
        name: "Veiligheid",
        departments: &[
            d(
                "OOV",
                "Openbare Orde en Veiligheid",
                &[],
                &[
                    ("OOV01", "Adviseur Openbare Orde en Veiligheid"),
                    ("OOV02", "Cameratoezichthouder"),
                ],
            ),
            d(
                "CRI",
                "Crisisbeheersing",
                &[],
                &[("CRI01", "Adviseur Crisisbeheersing")],
            ),
        ],
        titles: &[("VHH01", "Veiligheidscoördinator")],
    },
    DivisionSpec {
        code: "SSC",
        name: "Shared Service Center",
        departments: &[
            d(
                "SSF",
                "Financial Shared Services",
                &[],
                &[("SSF01", "Medewerker Financial Shared Services")],
            ),
            d(
                "SSH",
                "HR Shared Services",
                &[],
                &[("SSH01", "Medewerker HR Shared Services")],
            ),
            d(
                "SSI",
                "IT Shared Services",
                &[("NOC", "Network Operations"), ("DC", "Datacenter")],
                &[("SSI01", "Cloud Engineer"), ("SSI02", "Network Engineer")],
            ),
        ],
        titles: &[
            ("SSC01", "Shared Services Specialist"),
            ("SSC02", "Teamcoördinator"),
        ],
    },
    DivisionSpec {
        code: "KAM",
        name: "Kwaliteit, Arbo en Milieu",
        departments: &[
            d("KWA", "Kwaliteit", &[], &[("KWA01", "Kwaliteitsadviseur")]),
            d(
                "ARB",
                "Arbo en Verzuim",
                &[],
                &[("ARB01", "Arbo-adviseur"), ("ARB02", "Casemanager Verzuim")],
            ),
        ],
        titles: &[("KAM01", "Adviseur KAM")],
    },
];

/// Teams for departments whose catalogue entry has run out of named teams.
const GENERIC_TEAMS: &[(&str, &str)] = &[
    ("BO", "Backoffice"),
    ("FO", "Frontoffice"),
    ("BEL", "Beleid"),
    ("UIT", "Uitvoering"),
    ("ADV", "Advies"),
    ("PRJ", "Projecten"),
    ("BEH", "Beheer"),
    ("KWA", "Kwaliteit"),
    ("PLN", "Planning"),
    ("ONT", "Ontwikkeling"),
];

/// Regions used when a division needs more departments than its catalogue has.
const REGIONS: &[(&str, &str)] = &[
    ("N", "Noord"),
    ("O", "Oost"),
    ("Z", "Zuid"),
    ("W", "West"),
    ("C", "Centrum"),
    ("NO", "Noordoost"),
    ("NW", "Noordwest"),
    ("ZO", "Zuidoost"),
    ("ZW", "Zuidwest"),
    ("RA", "Randstad"),
];

/// Titles anyone can have, whatever the department.
pub(crate) const GENERIC_TITLES: &[(&str, &str)] = &[
    ("ALG01", "Beleidsmedewerker"),
    ("ALG02", "Adviseur"),
    ("ALG03", "Administratief medewerker"),
    ("ALG04", "Secretaresse"),
    ("ALG05", "Senior adviseur"),
    ("ALG06", "Coördinator"),
];

pub(crate) const INTERN_TITLE: (&str, &str) = ("ALG90", "Stagiair");

/// The title of a department's manager, by the level of the department.
pub(crate) fn manager_title(level: Level) -> Title {
    let (code, name) = match level {
        Level::Root => ("MGT01", "Algemeen directeur"),
        Level::Division => ("MGT02", "Directeur"),
        Level::Department => ("MGT03", "Afdelingsmanager"),
        Level::Team => ("MGT04", "Teamleider"),
    };
    title(code, name)
}

/// True for the titles [`manager_title`] hands out, which no ordinary mover or joiner gets.
pub(crate) fn is_manager_title(code: &str) -> bool {
    code.starts_with("MGT")
}

pub(crate) fn title(code: &str, name: &str) -> Title {
    Title {
        code: code.to_owned(),
        name: name.to_owned(),
    }
}

/// Dutch cities, the largest offices first.
pub(crate) const CITIES: &[&str] = &[
    "Utrecht",
    "Amsterdam",
    "Rotterdam",
    "Den Haag",
    "Eindhoven",
    "Groningen",
    "Zwolle",
    "Arnhem",
    "'s-Hertogenbosch",
    "Amersfoort",
    "Leeuwarden",
    "Maastricht",
    "Breda",
    "Nijmegen",
    "Enschede",
    "Haarlem",
    "Tilburg",
    "Apeldoorn",
    "Almere",
    "Leiden",
    "Delft",
    "Assen",
    "Middelburg",
    "Lelystad",
    "Alkmaar",
    "Deventer",
    "Den Helder",
    "Hoorn",
    "Venlo",
    "Heerlen",
    "Emmen",
    "Gouda",
    "Zaandam",
    "Dordrecht",
    "Roermond",
    "Sittard",
    "Hilversum",
    "Ede",
    "Heerenveen",
    "Vlissingen",
];

/// One generated department with what persons need from it.
#[derive(Debug, Clone)]
pub(crate) struct Unit {
    pub(crate) department: Department,
    pub(crate) level: Level,
    pub(crate) cost_centre: String,
    pub(crate) titles: Vec<Title>,
}

/// The department tree for `count` departments (at least 1, the root). The shape depends
/// only on the count, never on the seed, so a tree is stable while people vary.
pub(crate) fn tree(count: usize, organisation: &str) -> Vec<Unit> {
    let count = count.max(1);
    let mut units = Vec::with_capacity(count);
    units.push(Unit {
        department: Department {
            code: "ORG".into(),
            name: organisation.to_owned(),
            ..Department::default()
        },
        level: Level::Root,
        cost_centre: String::new(),
        titles: titles_for(&[]),
    });
    let budget = count - 1;
    // Roughly: √budget·0.7 divisions, two fifths of the rest departments, the others teams.
    let divisions = if budget == 0 {
        0
    } else {
        ((budget as f64).sqrt() * 0.7)
            .ceil()
            .clamp(1.0, DIVISIONS.len() as f64) as usize
    }
    .min(budget);
    let rest = budget - divisions;
    let departments = if divisions == 0 {
        0
    } else {
        (rest * 2).div_ceil(5).max(divisions.min(rest)).min(rest)
    };
    let teams = rest - departments;

    for spec in &DIVISIONS[..divisions] {
        units.push(Unit {
            department: Department {
                code: spec.code.into(),
                name: spec.name.into(),
                parent: "ORG".into(),
                ..Department::default()
            },
            level: Level::Division,
            cost_centre: String::new(),
            titles: titles_for(&[spec.titles]),
        });
    }
    // Departments round-robin over divisions, catalogue entries first, then regional copies.
    let mut dept_units = Vec::with_capacity(departments);
    let mut taken = vec![0usize; divisions];
    for i in 0..departments {
        let div = i % divisions;
        let spec = &DIVISIONS[div];
        let n = taken[div];
        taken[div] += 1;
        let base = &spec.departments[n % spec.departments.len()];
        let round = n / spec.departments.len();
        let (code, name) = if round == 0 {
            (base.code.to_owned(), base.name.to_owned())
        } else {
            let (rc, rn) = REGIONS[(round - 1) % REGIONS.len()];
            let cycle = (round - 1) / REGIONS.len();
            let suffix = if cycle == 0 {
                String::new()
            } else {
                (cycle + 1).to_string()
            };
            (
                format!("{}-{rc}{suffix}", base.code),
                format!(
                    "{} {rn}{}",
                    base.name,
                    if cycle == 0 {
                        String::new()
                    } else {
                        format!(" {}", cycle + 1)
                    }
                ),
            )
        };
        dept_units.push((units.len(), base));
        units.push(Unit {
            department: Department {
                code,
                name,
                parent: spec.code.into(),
                ..Department::default()
            },
            level: Level::Department,
            cost_centre: String::new(),
            titles: titles_for(&[base.titles, spec.titles]),
        });
    }
    // Teams round-robin over departments, named teams first, then generic ones.
    let mut team_count = vec![0usize; dept_units.len()];
    for i in 0..teams {
        let k = i % dept_units.len();
        let (unit_index, base) = dept_units[k];
        let n = team_count[k];
        team_count[k] += 1;
        let parent = units[unit_index].department.clone();
        let (suffix, name) = if n < base.teams.len() {
            (base.teams[n].0.to_owned(), base.teams[n].1.to_owned())
        } else {
            let g = n - base.teams.len();
            if g < GENERIC_TEAMS.len() {
                let (s, t) = GENERIC_TEAMS[g];
                (s.to_owned(), format!("{t} {}", parent.name))
            } else {
                (
                    format!("T{}", g + 1),
                    format!("Team {} {}", g + 1, parent.name),
                )
            }
        };
        let titles = units[unit_index].titles.clone();
        units.push(Unit {
            department: Department {
                code: format!("{}-{suffix}", parent.code),
                name,
                parent: parent.code,
                ..Department::default()
            },
            level: Level::Team,
            cost_centre: String::new(),
            titles,
        });
    }
    // Cost centres in tree order, as a chart of accounts numbers them.
    for (i, unit) in units.iter_mut().enumerate() {
        unit.cost_centre = format!("{}", 40_000 + i * 10);
    }
    units
}

/// A unit's titles, most common first: its own, its division's, then anyone's.
fn titles_for(lists: &[Pairs]) -> Vec<Title> {
    lists
        .iter()
        .flat_map(|l| l.iter())
        .chain(GENERIC_TITLES)
        .map(|(c, n)| title(c, n))
        .collect()
}

/// The tree as a snapshot holds it.
pub(crate) fn departments(units: &[Unit]) -> BTreeMap<String, Department> {
    units
        .iter()
        .map(|u| (u.department.code.clone(), u.department.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_has_requested_size_unique_codes_and_known_parents() {
        for count in [1, 2, 5, 12, 30, 250, 2000] {
            let units = tree(count, "Org");
            assert_eq!(units.len(), count, "count {count}");
            let map = departments(&units);
            assert_eq!(map.len(), count, "duplicate codes at count {count}");
            for d in map.values() {
                assert!(d.parent.is_empty() || map.contains_key(&d.parent), "{d:?}");
            }
        }
    }

    #[test]
    fn catalogue_codes_are_unique() {
        let mut departments = std::collections::BTreeSet::new();
        let mut titles = BTreeMap::new();
        for div in DIVISIONS {
            assert!(departments.insert(div.code), "{}", div.code);
            for dept in div.departments {
                assert!(departments.insert(dept.code), "{}", dept.code);
            }
            for (code, name) in div
                .departments
                .iter()
                .flat_map(|d| d.titles)
                .chain(div.titles)
            {
                assert!(titles.insert(*code, *name).is_none(), "title {code}");
            }
        }
    }

    #[test]
    fn demo_sized_tree_has_four_levels() {
        let units = tree(30, "Gemeente Koppeldam");
        assert!(units.iter().any(|u| u.level == Level::Team));
        assert!(units.iter().filter(|u| u.level == Level::Division).count() >= 3);
    }
}
