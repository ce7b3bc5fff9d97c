//! The `connection` table of an `afas` source or target: the Profit REST services URL, the
//! app connector token by reference, the GetConnectors and every field name the mapping reads.
//! Defaults are HelloID's GetConnector set (`T4E_HelloID_*_v2`) and its field names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use koppel_core::NamingConvention;
use serde::Deserialize;

use crate::error::HrError;
use crate::settings::{HttpConfig, SecretRef};

fn default_take() -> u32 {
    1000
}
fn default_persons() -> String {
    "T4E_HelloID_Users_v2".into()
}
fn default_contracts() -> String {
    "T4E_HelloID_Employments_v2".into()
}
fn default_departments() -> String {
    "T4E_HelloID_OrganizationalUnits_v2".into()
}

macro_rules! fields {
    ($(#[$doc:meta])* $name:ident { $($field:ident = $default:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            $(pub $field: String,)*
        }
        impl Default for $name {
            fn default() -> Self {
                Self { $($field: $default.into(),)* }
            }
        }
        impl $name {
            /// Every (setting, field name) pair, for checks and messages.
            pub fn pairs(&self) -> Vec<(&'static str, &str)> {
                vec![$((stringify!($field), self.$field.as_str()),)*]
            }
        }
    };
}

fields!(
    /// Fields of the persons GetConnector. `""` means "not read".
    PersonFields {
        external_id = "Medewerker",
        given = "Voornaam",
        nickname = "Roepnaam",
        initials = "Voorletters",
        family_prefix = "Voorvoegsel",
        family = "Geboortenaam",
        partner_prefix = "Voorvoegsel_partner",
        partner = "Geboortenaam_partner",
        convention = "Naamgebruik_code",
        email = "Email_werk",
        phone = "Telefoonnr_werk",
    }
);

fields!(
    /// Fields of the contracts GetConnector (employments, or positions).
    ContractFields {
        id = "ExternalID",
        person = "Medewerker",
        start = "Begindatum_contract",
        end = "Einddatum_contract",
        department = "Organisatorische_eenheid_code",
        title_code = "Functie_code",
        title = "Functie_omschrijving",
        cost_centre = "Kostenplaats_code",
        location = "",
        manager = "",
        employment_type = "Soort_medewerker_code",
        fte = "FTE",
        hours = "Uren_per_week",
        sequence = "Volgnummer_contract",
    }
);

fields!(
    /// Fields of the organizational units GetConnector.
    DepartmentFields {
        code = "ExternalId",
        name = "DisplayName",
        parent = "ParentExternalId",
        manager = "ManagerExternalId",
    }
);

/// All field names, per GetConnector.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AfasFields {
    pub person: PersonFields,
    pub contract: ContractFields,
    pub department: DepartmentFields,
}

/// One filter of a GetConnector call: `filterfieldids`, `operatortypes`, `filtervalues`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub field: String,
    /// AFAS operator type: 1 equals, 2 ≥, 3 ≤, 4 >, 5 <, 6 contains, 7 not equal, 8 empty,
    /// 9 not empty, 10 starts with, 11 does not contain, 12 does not start with, 13 ends
    /// with, 14 does not end with, 15 quick filter.
    pub operator: u8,
    pub value: String,
}

/// Filters per GetConnector, combined with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Filters {
    pub persons: Vec<Filter>,
    pub contracts: Vec<Filter>,
    pub departments: Vec<Filter>,
}

/// What every AFAS connection has.
#[derive(Debug, Clone, PartialEq)]
pub struct AfasApi {
    /// `https://12345.rest.afas.online/ProfitRestServices`, ending in '/'.
    pub base_url: url::Url,
    pub token: SecretRef,
    /// The `IntegrationId` header of a partner integration.
    pub integration_id: Option<String>,
    pub http: HttpConfig,
    pub base_dir: PathBuf,
}

/// An `afas` source's connection.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AfasSourceConfig {
    pub base_url: String,
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub integration_id: Option<String>,
    #[serde(default = "default_take")]
    pub take: u32,
    #[serde(default = "default_persons")]
    pub persons_connector: String,
    /// `T4E_HelloID_Employments_v2`, or `T4E_HelloID_Positions_v2` for positions.
    #[serde(default = "default_contracts")]
    pub contracts_connector: String,
    /// `""` when the organisation's units are not read.
    #[serde(default = "default_departments")]
    pub departments_connector: String,
    #[serde(default)]
    pub filters: Filters,
    /// `Naamgebruik_code` → B, P, BP or PB, over the defaults 0 B, 1 PB, 2 P, 3 BP.
    #[serde(default)]
    pub naming_conventions: BTreeMap<String, String>,
    #[serde(default)]
    pub fields: AfasFields,
    /// Custom person fields: koppel name → persons GetConnector field.
    #[serde(default)]
    pub custom: BTreeMap<String, String>,
    #[serde(default)]
    pub http: HttpConfig,
}

fn default_users() -> String {
    "T4E_HelloID_Users_v2".into()
}
fn default_employee_field() -> String {
    "Medewerker".into()
}
fn default_person_field() -> String {
    "Persoonsnummer".into()
}
fn default_user_field() -> String {
    "Gebruiker".into()
}
fn default_display_name_field() -> String {
    "DisplayName".into()
}

/// An `afas` write-back target's connection.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AfasTargetConfig {
    pub base_url: String,
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub integration_id: Option<String>,
    /// The GetConnector the current values are read from.
    #[serde(default = "default_users")]
    pub users_connector: String,
    /// Its employee number field: the correlation attribute and the `@EmId` of KnEmployee.
    #[serde(default = "default_employee_field")]
    pub employee_field: String,
    /// Its person number field: `BcCo` of KnPerson (matched with `MatchPer` 0).
    #[serde(default = "default_person_field")]
    pub person_field: String,
    /// Its Profit user field: `@UsId` of KnUser.
    #[serde(default = "default_user_field")]
    pub user_field: String,
    /// Its user description field: `Nm` of KnUser, sent unchanged.
    #[serde(default = "default_display_name_field")]
    pub display_name_field: String,
    /// Attribute (a KnPerson field id, or `Upn` for KnUser) → the GetConnector field that
    /// holds its current value, over the defaults EmAd Email_werk, TeNr Telefoonnr_werk,
    /// MbNr Mobielnr_werk, Upn UPN.
    #[serde(default)]
    pub current: BTreeMap<String, String>,
    #[serde(default)]
    pub http: HttpConfig,
}

fn api(
    prefix: &str,
    base_url: &str,
    env: &Option<String>,
    file: &Option<PathBuf>,
    integration_id: &Option<String>,
    http: &HttpConfig,
    base_dir: &Path,
) -> Result<AfasApi, HrError> {
    let mut url = url::Url::parse(base_url).map_err(|e| {
        HrError::Config(format!("{prefix}.base_url: {base_url:?} is not a URL: {e}"))
    })?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(HrError::Config(format!(
            "{prefix}.base_url: {base_url:?} must be an https URL such as \
             https://12345.rest.afas.online/ProfitRestServices"
        )));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(AfasApi {
        base_url: url,
        token: SecretRef::from_pair("token", env, file, prefix)?,
        integration_id: integration_id.clone(),
        http: http.clone(),
        base_dir: base_dir.to_path_buf(),
    })
}

fn check_connector(prefix: &str, key: &str, name: &str, optional: bool) -> Result<(), HrError> {
    if name.is_empty() && optional {
        return Ok(());
    }
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(HrError::Config(format!(
            "{prefix}.{key}: {name:?} is not a GetConnector name (letters, digits and _)"
        )));
    }
    Ok(())
}

/// The default `Naamgebruik_code` table.
pub fn default_naming_conventions() -> BTreeMap<String, NamingConvention> {
    use NamingConvention::*;
    [("0", B), ("1", PB), ("2", P), ("3", BP)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

impl AfasSourceConfig {
    pub fn from_table(
        prefix: &str,
        table: &toml::Table,
        base_dir: &Path,
    ) -> Result<(AfasSourceConfig, AfasApi), HrError> {
        let c: AfasSourceConfig = crate::settings::parse(prefix, table)?;
        if !(1..=10_000).contains(&c.take) {
            return Err(HrError::Config(format!(
                "{prefix}.take: {} is out of range (1 to 10000; AFAS advises columns × rows < 150,000)",
                c.take
            )));
        }
        check_connector(prefix, "persons_connector", &c.persons_connector, false)?;
        check_connector(prefix, "contracts_connector", &c.contracts_connector, false)?;
        check_connector(
            prefix,
            "departments_connector",
            &c.departments_connector,
            true,
        )?;
        for (which, list) in [
            ("persons", &c.filters.persons),
            ("contracts", &c.filters.contracts),
            ("departments", &c.filters.departments),
        ] {
            for (i, f) in list.iter().enumerate() {
                let at = format!("{prefix}.filters.{which}[{i}]");
                if !(1..=15).contains(&f.operator) {
                    return Err(HrError::Config(format!(
                        "{at}.operator: {} is not an AFAS operator type (1 to 15)",
                        f.operator
                    )));
                }
                // The REST call separates fields and values by ',' (AND) and ';' (OR).
                if f.value.contains([',', ';']) || f.field.contains([',', ';']) {
                    return Err(HrError::Config(format!(
                        "{at}: a filter field or value cannot contain ',' or ';' (AFAS reads \
                         them as separators)"
                    )));
                }
            }
        }
        for (code, convention) in &c.naming_conventions {
            if convention.trim().is_empty() || NamingConvention::parse(convention).is_none() {
                return Err(HrError::Config(format!(
                    "{prefix}.naming_conventions.{code}: {convention:?} is not a naming \
                     convention; use B, P, BP or PB"
                )));
            }
        }
        for (key, value) in [
            ("fields.person.external_id", &c.fields.person.external_id),
            ("fields.contract.id", &c.fields.contract.id),
            ("fields.contract.person", &c.fields.contract.person),
            ("fields.contract.start", &c.fields.contract.start),
            ("fields.department.code", &c.fields.department.code),
        ] {
            if value.trim().is_empty() {
                return Err(HrError::Config(format!(
                    "{prefix}.{key} cannot be empty: koppel needs this field"
                )));
            }
        }
        let api = api(
            prefix,
            &c.base_url,
            &c.token_env,
            &c.token_file,
            &c.integration_id,
            &c.http,
            base_dir,
        )?;
        Ok((c, api))
    }

    pub fn conventions(&self) -> BTreeMap<String, NamingConvention> {
        let mut out = default_naming_conventions();
        for (code, c) in &self.naming_conventions {
            if let Some(c) = NamingConvention::parse(c) {
                out.insert(code.clone(), c);
            }
        }
        out
    }
}

/// The attribute written through KnUser; every other one is a KnPerson field.
pub const UPN: &str = "Upn";

impl AfasTargetConfig {
    pub fn from_table(
        prefix: &str,
        table: &toml::Table,
        base_dir: &Path,
    ) -> Result<(AfasTargetConfig, AfasApi), HrError> {
        let mut c: AfasTargetConfig = crate::settings::parse(prefix, table)?;
        check_connector(prefix, "users_connector", &c.users_connector, false)?;
        let mut current: BTreeMap<String, String> = [
            ("EmAd", "Email_werk"),
            ("TeNr", "Telefoonnr_werk"),
            ("MbNr", "Mobielnr_werk"),
            (UPN, "UPN"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        current.extend(std::mem::take(&mut c.current));
        current.retain(|_, v| !v.is_empty());
        c.current = current;
        for (key, value) in [
            ("employee_field", &c.employee_field),
            ("person_field", &c.person_field),
        ] {
            if value.trim().is_empty() {
                return Err(HrError::Config(format!("{prefix}.{key} cannot be empty")));
            }
        }
        let api = api(
            prefix,
            &c.base_url,
            &c.token_env,
            &c.token_file,
            &c.integration_id,
            &c.http,
            base_dir,
        )?;
        Ok((c, api))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(s: &str) -> toml::Table {
        toml::from_str(s).unwrap()
    }

    #[test]
    fn defaults_are_the_helloid_set() {
        let (c, api) = AfasSourceConfig::from_table(
            "p",
            &table(
                "base_url = 'https://12345.rest.afas.online/ProfitRestServices'\ntoken_env = 'T'",
            ),
            Path::new("."),
        )
        .unwrap();
        assert_eq!(c.persons_connector, "T4E_HelloID_Users_v2");
        assert_eq!(c.contracts_connector, "T4E_HelloID_Employments_v2");
        assert_eq!(
            c.departments_connector,
            "T4E_HelloID_OrganizationalUnits_v2"
        );
        assert_eq!(c.fields.person.convention, "Naamgebruik_code");
        assert_eq!(
            api.base_url.as_str(),
            "https://12345.rest.afas.online/ProfitRestServices/"
        );
        let conv = c.conventions();
        assert_eq!(
            [&conv["0"], &conv["1"], &conv["2"], &conv["3"]],
            [
                &NamingConvention::B,
                &NamingConvention::PB,
                &NamingConvention::P,
                &NamingConvention::BP
            ]
        );
        let (t, _) = AfasTargetConfig::from_table(
            "t",
            &table("base_url = 'https://x/ProfitRestServices'\ntoken_file = 'tok'\ncurrent = { EmAd = 'Mail', MbNr = '' }"),
            Path::new("."),
        )
        .unwrap();
        assert_eq!(t.current["EmAd"], "Mail");
        assert_eq!(t.current["Upn"], "UPN");
        assert!(!t.current.contains_key("MbNr"));
    }

    #[test]
    fn bad_settings_name_their_key() {
        let base = "base_url = 'https://x/P'\ntoken_env = 'T'\n";
        for (extra, expected) in [
            ("persons_connector = 'a b'", "p.persons_connector"),
            (
                "[[filters.persons]]\nfield = 'X'\noperator = 99\nvalue = '1'",
                "p.filters.persons[0].operator",
            ),
            (
                "[[filters.contracts]]\nfield = 'X'\noperator = 1\nvalue = 'a,b'",
                "p.filters.contracts[0]",
            ),
            (
                "[fields.contract]\nstrt = 'x'",
                "p.fields.contract.strt: unknown field `strt`",
            ),
            ("take = 0", "p.take"),
        ] {
            let e = AfasSourceConfig::from_table(
                "p",
                &table(&format!("{base}{extra}")),
                Path::new("."),
            )
            .unwrap_err();
            assert!(e.to_string().contains(expected), "{extra}: {e}");
        }
        let e =
            AfasSourceConfig::from_table("p", &table("base_url = 'https://x/P'"), Path::new("."))
                .unwrap_err();
        assert!(e.to_string().contains("token_env or token_file"), "{e}");
    }
}
