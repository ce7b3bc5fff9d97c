//! Source settings: where HR data comes from and how its files are laid out.
//! Every file and column name has a default and can be renamed here.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One HR source. Several sources are merged by person external id.
// Read once per run: the size of the larger variant costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// `persons.csv`, `contracts.csv` and `departments.csv` in one folder.
    Csv(CsvSourceConfig),
    /// One JSON file: an array of persons with nested contracts.
    Json(JsonSourceConfig),
    /// Visma Raet / Youforce IAM API, read by the `koppel-hr` connector.
    Visma(ApiSourceConfig),
    /// AFAS Profit GetConnectors, read by the `koppel-hr` connector.
    Afas(ApiSourceConfig),
}

/// An HR API source. Its `connection` table (server, credentials by reference, field names)
/// is the connector's to check, so the core carries no vendor detail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSourceConfig {
    pub connection: toml::Table,
    /// A cron expression for `koppel serve`, like the file sources'.
    #[serde(default)]
    pub schedule: Option<String>,
}

impl SourceConfig {
    /// The source's `schedule` (a cron expression for `koppel serve`), if it has one.
    pub fn schedule(&self) -> Option<&str> {
        match self {
            SourceConfig::Csv(c) => c.schedule.as_deref(),
            SourceConfig::Json(j) => j.schedule.as_deref(),
            SourceConfig::Visma(a) | SourceConfig::Afas(a) => a.schedule.as_deref(),
        }
    }

    /// A short name for messages: the kind and the folder or file it reads.
    pub fn label(&self) -> String {
        match self {
            SourceConfig::Csv(c) => format!("csv {}", c.dir.display()),
            SourceConfig::Json(j) => format!("json {}", j.file.display()),
            other => format!("{other:?}")
                .split('(')
                .next()
                .unwrap_or_default()
                .to_lowercase(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvSourceConfig {
    /// Folder with the files, relative to the config file.
    pub dir: PathBuf,
    #[serde(default = "default_persons_file")]
    pub persons_file: String,
    #[serde(default = "default_contracts_file")]
    pub contracts_file: String,
    /// `""` when the source has no department file.
    #[serde(default = "default_departments_file")]
    pub departments_file: String,
    /// One ASCII character, `,` by default; `;` is common in Dutch exports.
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    #[serde(default)]
    pub columns: CsvColumns,
    /// `koppel serve`: when to run on its own, as a cron expression (`minute hour day month
    /// weekday`, with an optional leading seconds field), in the machine's time zone. Every
    /// run reads every source: the schedule says when, not what.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
}

fn default_persons_file() -> String {
    "persons.csv".into()
}
fn default_contracts_file() -> String {
    "contracts.csv".into()
}
fn default_departments_file() -> String {
    "departments.csv".into()
}
fn default_delimiter() -> char {
    ','
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CsvColumns {
    pub persons: PersonColumns,
    pub contracts: ContractColumns,
    pub departments: DepartmentColumns,
}

macro_rules! columns {
    ($(#[$doc:meta])* $name:ident { $($field:ident = $default:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            $(pub $field: String,)*
        }
        impl Default for $name {
            fn default() -> Self {
                Self { $($field: $default.into(),)* }
            }
        }
    };
}

columns!(
    /// Column names in the persons file. Any other column becomes a custom field.
    PersonColumns {
        external_id = "external_id",
        given_name = "given_name",
        nickname = "nickname",
        initials = "initials",
        family_name_prefix = "family_name_prefix",
        family_name = "family_name",
        partner_name_prefix = "partner_name_prefix",
        partner_name = "partner_name",
        naming_convention = "naming_convention",
        email = "email",
        phone = "phone",
        excluded = "excluded",
    }
);

columns!(
    /// Column names in the contracts file.
    ContractColumns {
        contract_id = "contract_id",
        external_id = "external_id",
        start_date = "start_date",
        end_date = "end_date",
        department_code = "department_code",
        title_code = "title_code",
        title = "title",
        location = "location",
        cost_centre = "cost_centre",
        manager_external_id = "manager_external_id",
        employment_type = "employment_type",
        fte = "fte",
        hours_per_week = "hours_per_week",
        sequence = "sequence",
    }
);

columns!(
    /// Column names in the departments file.
    DepartmentColumns {
        code = "code",
        name = "name",
        parent_code = "parent_code",
        manager_external_id = "manager_external_id",
    }
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonSourceConfig {
    /// The JSON file, relative to the config file.
    pub file: PathBuf,
    /// Departments as a JSON array, when the persons file does not carry them.
    #[serde(default)]
    pub departments_file: Option<PathBuf>,
    #[serde(default)]
    pub shape: JsonShape,
    /// `koppel serve`: when to run on its own, as a cron expression (`minute hour day month
    /// weekday`, with an optional leading seconds field), in the machine's time zone. Every
    /// run reads every source: the schedule says when, not what.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
}

/// Which person shape the JSON file has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JsonShape {
    /// koppel's own: the serde form of `model::Person`.
    #[default]
    Koppel,
    /// The person objects HelloID source connectors emit (`ExternalId`, `Name.GivenName`, …).
    Helloid,
}
