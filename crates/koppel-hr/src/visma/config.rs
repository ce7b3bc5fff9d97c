//! The `connection` table of a `visma` source or target: the Youforce API and Visma Connect
//! token endpoint, the client credentials by reference, and every field name the mapping reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use koppel_core::NamingConvention;
use serde::Deserialize;

use crate::error::HrError;
use crate::settings::{HttpConfig, SecretRef};

/// Youforce's documented spike-arrest limit: 100 calls per minute, one per 0.6 s.
pub const RATE_LIMIT_PER_MINUTE: u32 = 100;
/// The largest page the client asks for.
pub const MAX_TAKE: u32 = 1000;

fn default_base_url() -> String {
    "https://api.youforce.com".into()
}
fn default_token_url() -> String {
    "https://connect.visma.com/connect/token".into()
}
fn default_take() -> u32 {
    MAX_TAKE
}
fn default_full_time_hours() -> f64 {
    36.0
}
fn default_email_type() -> String {
    "Business".into()
}
fn default_phone_types() -> Vec<String> {
    vec!["Business".into(), "Mobile".into()]
}

/// Where contracts come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContractsFrom {
    /// `/iam/v1.0/employments`: one contract per employment, id `personCode_employmentCode`.
    #[default]
    Employments,
    /// `/iam/v1.0/assignments`: one contract per active assignment, id
    /// `personCode_employmentCode_id`.
    Assignments,
}

/// Which org unit field is koppel's department code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DepartmentCode {
    /// The unit's `id` (unique and stable).
    #[default]
    Id,
    /// The unit's `shortName` (readable; must be unique in the tenant).
    ShortName,
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
    /// `/iam/v1.0/persons` field names. `""` means "not read".
    PersonFields {
        external_id = "personCode",
        id = "id",
        given = "firstNames",
        nickname = "knownAs",
        initials = "initials",
        family_prefix = "lastNameAtBirthPrefix",
        family = "lastNameAtBirth",
        partner_prefix = "partnerNamePrefix",
        partner = "partnerName",
        convention = "nameAssembleOrder",
        emails = "emailAddresses",
        phones = "phoneNumbers",
        valid_from = "validFrom",
        valid_until = "validUntil",
        deleted = "isDeleted",
    }
);

fields!(
    /// `/iam/v1.0/employments` field names.
    EmploymentFields {
        person = "personCode",
        code = "employmentCode",
        start = "hireDate",
        end = "dischargeDate",
        organization_unit = "organizationUnit",
        job_profile = "jobProfile",
        employment_type = "employmentType",
        hours = "workingAmount.amountOfWork",
        hours_unit = "workingAmount.unitOfWork",
        hours_period = "workingAmount.periodOfWork",
        cost_centre = "",
        location = "",
        valid_from = "validFrom",
        valid_until = "validUntil",
        deleted = "isDeleted",
    }
);

fields!(
    /// `/iam/v1.0/assignments` field names (with `contracts = "assignments"`).
    AssignmentFields {
        id = "id",
        person = "personCode",
        code = "employmentCode",
        start = "startDate",
        end = "endDate",
        organization_unit = "organizationUnit",
        job_profile = "jobProfile",
        cost_centre = "costCenter",
        active = "isActive",
        valid_from = "validFrom",
        valid_until = "validUntil",
        deleted = "isDeleted",
    }
);

fields!(
    /// `/iam/v1.0/organizationUnits` field names.
    OrganizationUnitFields {
        id = "id",
        short_name = "shortName",
        full_name = "fullName",
        parent = "parentOrgUnit",
        manager = "manager",
        valid_from = "validFrom",
        valid_until = "validUntil",
        deleted = "isDeleted",
    }
);

fields!(
    /// `/iam/v1.0/jobProfiles` field names.
    JobProfileFields {
        id = "id",
        short_name = "shortName",
        full_name = "fullName",
        valid_from = "validFrom",
        valid_until = "validUntil",
        deleted = "isDeleted",
    }
);

/// All field names, per endpoint.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VismaFields {
    pub person: PersonFields,
    pub employment: EmploymentFields,
    pub assignment: AssignmentFields,
    pub organization_unit: OrganizationUnitFields,
    pub job_profile: JobProfileFields,
}

/// A `visma` source's connection.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VismaSourceConfig {
    #[serde(default = "default_base_url")]
    pub base_url: String,
    #[serde(default = "default_token_url")]
    pub token_url: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret_env: Option<String>,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    pub tenant_id: String,
    #[serde(default)]
    pub contracts: ContractsFrom,
    /// Records per page, 1 to 1000.
    #[serde(default = "default_take")]
    pub take: u32,
    /// Hours per week of a full-time job: fte = weekly hours / this.
    #[serde(default = "default_full_time_hours")]
    pub full_time_hours: f64,
    #[serde(default)]
    pub department_code: DepartmentCode,
    /// `nameAssembleOrder` code → B, P, BP or PB, over the defaults (HR Core Beaufort's
    /// letters E P B C D and HR Core Business's digits 0–4).
    #[serde(default)]
    pub naming_conventions: BTreeMap<String, String>,
    /// The `emailAddresses` type that is the person's e-mail.
    #[serde(default = "default_email_type")]
    pub email_type: String,
    /// The `phoneNumbers` types, in order of preference, that give the person's phone.
    #[serde(default = "default_phone_types")]
    pub phone_types: Vec<String>,
    #[serde(default)]
    pub fields: VismaFields,
    /// Custom person fields: koppel name → `/iam/v1.0/persons` field (dotted paths allowed).
    #[serde(default)]
    pub custom: BTreeMap<String, String>,
    #[serde(default)]
    pub http: HttpConfig,
}

/// A `visma` write-back target's connection.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VismaTargetConfig {
    #[serde(default = "default_base_url")]
    pub base_url: String,
    #[serde(default = "default_token_url")]
    pub token_url: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret_env: Option<String>,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    pub tenant_id: String,
    #[serde(default)]
    pub http: HttpConfig,
}

/// What both a source and a target need to talk to Youforce.
#[derive(Debug, Clone, PartialEq)]
pub struct VismaApi {
    pub base_url: url::Url,
    pub token_url: url::Url,
    pub client_id: String,
    pub secret: SecretRef,
    pub tenant_id: String,
    pub http: HttpConfig,
    /// The config file's folder: relative secret files and CA files are resolved from it.
    pub base_dir: PathBuf,
}

fn parse_url(prefix: &str, key: &str, value: &str) -> Result<url::Url, HrError> {
    let url = url::Url::parse(value)
        .map_err(|e| HrError::Config(format!("{prefix}.{key}: {value:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(HrError::Config(format!(
            "{prefix}.{key}: {value:?} must be an https (or http) URL"
        )));
    }
    Ok(url)
}

#[allow(clippy::too_many_arguments)]
fn api(
    prefix: &str,
    base_url: &str,
    token_url: &str,
    client_id: &str,
    env: &Option<String>,
    file: &Option<PathBuf>,
    tenant_id: &str,
    http: &HttpConfig,
    base_dir: &Path,
) -> Result<VismaApi, HrError> {
    let nonempty = |key: &str, v: &str| {
        if v.trim().is_empty() {
            Err(HrError::Config(format!("{prefix}.{key} is empty")))
        } else {
            Ok(())
        }
    };
    nonempty("client_id", client_id)?;
    nonempty("tenant_id", tenant_id)?;
    Ok(VismaApi {
        base_url: parse_url(prefix, "base_url", base_url)?,
        token_url: parse_url(prefix, "token_url", token_url)?,
        client_id: client_id.to_owned(),
        secret: SecretRef::from_pair("client_secret", env, file, prefix)?,
        tenant_id: tenant_id.to_owned(),
        http: http.clone(),
        base_dir: base_dir.to_path_buf(),
    })
}

/// The default naming-convention codes: HR Core Beaufort writes letters (E own name, P
/// partner's, B partner's then own, C and D own then partner's), HR Core Business digits
/// (0 partner's then own, 1 own, 2 partner's, 3 own then partner's, 4 own).
pub fn default_naming_conventions() -> BTreeMap<String, NamingConvention> {
    use NamingConvention::*;
    [
        ("E", B),
        ("P", P),
        ("B", PB),
        ("C", BP),
        ("D", BP),
        ("0", PB),
        ("1", B),
        ("2", P),
        ("3", BP),
        ("4", B),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

impl VismaSourceConfig {
    /// Parses and checks the `connection` table of source number `index`.
    pub fn from_table(
        prefix: &str,
        table: &toml::Table,
        base_dir: &Path,
    ) -> Result<(VismaSourceConfig, VismaApi), HrError> {
        let c: VismaSourceConfig = crate::settings::parse(prefix, table)?;
        c.check(prefix)?;
        let api = api(
            prefix,
            &c.base_url,
            &c.token_url,
            &c.client_id,
            &c.client_secret_env,
            &c.client_secret_file,
            &c.tenant_id,
            &c.http,
            base_dir,
        )?;
        Ok((c, api))
    }

    fn check(&self, prefix: &str) -> Result<(), HrError> {
        if !(1..=MAX_TAKE).contains(&self.take) {
            return Err(HrError::Config(format!(
                "{prefix}.take: {} is out of range; the IAM API pages hold 1 to {MAX_TAKE} records",
                self.take
            )));
        }
        if !(self.full_time_hours.is_finite() && self.full_time_hours > 0.0) {
            return Err(HrError::Config(format!(
                "{prefix}.full_time_hours must be a positive number of hours"
            )));
        }
        for (code, convention) in &self.naming_conventions {
            if NamingConvention::parse(convention).is_none() || convention.trim().is_empty() {
                return Err(HrError::Config(format!(
                    "{prefix}.naming_conventions.{code}: {convention:?} is not a naming \
                     convention; use B, P, BP or PB"
                )));
            }
        }
        let required = [
            ("fields.person.external_id", &self.fields.person.external_id),
            ("fields.employment.person", &self.fields.employment.person),
            ("fields.employment.code", &self.fields.employment.code),
            ("fields.employment.start", &self.fields.employment.start),
            ("fields.assignment.person", &self.fields.assignment.person),
            ("fields.assignment.start", &self.fields.assignment.start),
            (
                "fields.organization_unit.id",
                &self.fields.organization_unit.id,
            ),
            ("fields.job_profile.id", &self.fields.job_profile.id),
        ];
        for (key, value) in required {
            if value.trim().is_empty() {
                return Err(HrError::Config(format!(
                    "{prefix}.{key} cannot be empty: koppel needs this field"
                )));
            }
        }
        Ok(())
    }

    /// The effective naming-convention table.
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

impl VismaTargetConfig {
    pub fn from_table(
        prefix: &str,
        table: &toml::Table,
        base_dir: &Path,
    ) -> Result<VismaApi, HrError> {
        let c: VismaTargetConfig = crate::settings::parse(prefix, table)?;
        api(
            prefix,
            &c.base_url,
            &c.token_url,
            &c.client_id,
            &c.client_secret_env,
            &c.client_secret_file,
            &c.tenant_id,
            &c.http,
            base_dir,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(s: &str) -> toml::Table {
        toml::from_str(s).unwrap()
    }

    #[test]
    fn defaults_and_overrides() {
        let (c, api) = VismaSourceConfig::from_table(
            "sources[0].connection",
            &table(
                "client_id = 'koppel'\nclient_secret_env = 'S'\ntenant_id = '1234'\n\
                 naming_conventions = { X = 'bp' }\n[fields.person]\ngiven = 'voornamen'",
            ),
            Path::new("."),
        )
        .unwrap();
        assert_eq!(api.base_url.as_str(), "https://api.youforce.com/");
        assert_eq!(
            api.token_url.as_str(),
            "https://connect.visma.com/connect/token"
        );
        assert_eq!(c.take, 1000);
        assert_eq!(c.fields.person.given, "voornamen");
        assert_eq!(c.fields.person.family, "lastNameAtBirth");
        let conv = c.conventions();
        assert_eq!(conv["X"], NamingConvention::BP);
        assert_eq!(conv["E"], NamingConvention::B);
        assert_eq!(conv["B"], NamingConvention::PB);
        assert_eq!(conv["0"], NamingConvention::PB);
    }

    #[test]
    fn bad_settings_name_their_key() {
        let cases = [
            (
                "client_id = 'k'\ntenant_id = 't'",
                "client_secret_env or client_secret_file",
            ),
            (
                "client_id = 'k'\nclient_secret_env = 'S'\ntenant_id = 't'\ntake = 5000",
                "p.take: 5000 is out of range",
            ),
            (
                "client_id = 'k'\nclient_secret_env = 'S'\ntenant_id = 't'\n[fields.person]\ngivn = 'x'",
                "p.fields.person.givn: unknown field `givn`",
            ),
            (
                "client_id = 'k'\nclient_secret_env = 'S'\ntenant_id = 't'\nbase_url = 'ftp://x'",
                "p.base_url",
            ),
            (
                "client_id = 'k'\nclient_secret_env = 'S'\ntenant_id = 't'\nnaming_conventions = { E = 'Q' }",
                "p.naming_conventions.E",
            ),
            (
                "client_id = 'k'\nclient_secret_env = 'S'\ntenant_id = 't'\n[fields.employment]\nstart = ''",
                "p.fields.employment.start cannot be empty",
            ),
        ];
        for (text, expected) in cases {
            let e = VismaSourceConfig::from_table("p", &table(text), Path::new(".")).unwrap_err();
            assert!(e.to_string().contains(expected), "{text}: {e}");
        }
    }
}
