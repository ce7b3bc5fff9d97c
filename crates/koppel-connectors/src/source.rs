//! The `Source` trait: a system of record for people, fetched into a snapshot, plus the
//! errors sources raise, the sync loader for file sources, and merging several sources.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use koppel_core::config::SourceConfig;
use koppel_core::{Diagnostic, Location, Person, Snapshot};

/// What one fetch delivered: the normalized snapshot and the problems found on the way
/// that did not stop the fetch (unknown persons, duplicates, ...).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fetched {
    pub snapshot: Snapshot,
    pub diagnostics: Vec<Diagnostic>,
}

/// A system of record for people: an HR export, an HR API, a SCIM push.
#[async_trait::async_trait]
pub trait Source: Send + Sync {
    /// A short name for reports, e.g. "csv:hr".
    fn name(&self) -> &str;
    /// Fetch everything: persons with contracts, departments, and the problems found on the way.
    async fn fetch(&self) -> Result<Fetched, SourceError>;
}

/// How many row errors a [`SourceError::Rows`] shows; the rest are counted.
pub const MAX_SHOWN_ROW_ERRORS: usize = 50;

/// Why a fetch failed. Every message names the file (and line) and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "{what} not found: {path} (paths in the config are relative to the config file's folder)"
    )]
    NotFound { what: &'static str, path: PathBuf },

    #[error("cannot read {path}: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{file}: {message}")]
    BadEncoding { file: String, message: String },

    #[error(
        "{file}: the header has no column \"{column}\" (found: {found}); rename the column in the file or set `{setting}` in the config"
    )]
    MissingColumn {
        file: String,
        column: String,
        /// The config setting that names this column, e.g. `columns.contracts.start_date`.
        setting: String,
        found: String,
    },

    #[error("{file}: bad header: {message}")]
    BadHeader { file: String, message: String },

    #[error("{file}:{line}:{column}: invalid JSON: {message}")]
    Json {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },

    /// Every bad row of every file of the source; nothing was loaded. Past 10,000 errors
    /// the rest are only counted in `omitted`.
    #[error("{}", RowErrorsDisplay(.errors, *.omitted))]
    Rows {
        errors: Vec<RowError>,
        omitted: usize,
    },

    #[error("source config: {0}")]
    Config(String),

    /// An HR API could not be read: unreachable, credentials or permissions refused, a
    /// connector or field missing. The message names the setting or permission to fix.
    #[error("{source_name}: {message}")]
    Api {
        source_name: String,
        message: String,
    },
}

/// One bad row (CSV) or record (JSON): where it is and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub file: String,
    /// The physical line where the row or record starts (1 = the CSV header).
    pub line: Option<u64>,
    /// For JSON: which record, e.g. `person #3 (external id "1001")`.
    pub record: Option<String>,
    /// The CSV column's header name or the JSON field path.
    pub field: Option<String>,
    pub message: String,
}

impl RowError {
    /// The error's place as a diagnostic location.
    pub fn location(&self) -> Location {
        Location {
            file: self.file.clone(),
            line: self.line,
            column: self.field.clone(),
        }
    }
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(record) = &self.record {
            write!(f, ": {record}")?;
        }
        if let Some(field) = &self.field {
            // CSV rows have columns, JSON records have fields.
            let kind = if self.record.is_some() {
                "field"
            } else {
                "column"
            };
            write!(f, ": {kind} \"{field}\"")?;
        }
        write!(f, ": {}", self.message)
    }
}

struct RowErrorsDisplay<'a>(&'a [RowError], usize);

impl fmt::Display for RowErrorsDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.0.len() + self.1;
        match self.0 {
            [] => f.write_str("invalid source data"),
            [one] if total == 1 => write!(f, "{one}"),
            all => {
                write!(
                    f,
                    "{total} problems in the source data; nothing was loaded, fix them and run again:"
                )?;
                for e in all.iter().take(MAX_SHOWN_ROW_ERRORS) {
                    write!(f, "\n  {e}")?;
                }
                let shown = all.len().min(MAX_SHOWN_ROW_ERRORS);
                if total > shown {
                    write!(f, "\n  ... and {} more", total - shown)?;
                }
                Ok(())
            }
        }
    }
}

/// Loads a file source synchronously. Paths in `config` are relative to `base_dir`, the
/// folder of the config file. This is what [`Source::fetch`] does for file sources; it is
/// public so tools and benchmarks can load without an async runtime.
pub fn load(config: &SourceConfig, base_dir: &Path) -> Result<Fetched, SourceError> {
    match config {
        SourceConfig::Csv(c) => crate::file::csv::load_csv(c, base_dir),
        SourceConfig::Json(c) => crate::file::json::load_json(c, base_dir),
        SourceConfig::Visma(_) | SourceConfig::Afas(_) => Err(SourceError::Config(
            "an HR API source (kind = \"visma\" or \"afas\") is read by the koppel-hr connector, \
             not as a file"
                .to_owned(),
        )),
    }
}

/// The [`Source`] for a configured source. Today every configured source is a file source.
pub fn source_for(config: &SourceConfig, base_dir: &Path) -> Box<dyn Source> {
    Box::new(crate::file::FileSource::new(config.clone(), base_dir))
}

/// Combines several sources into one snapshot, by person external id, in the given order.
///
/// * A person found in several sources is one person. Their contracts are concatenated.
///   Every text field (name parts, e-mail, phone, each custom field) comes from the first
///   source that has it non-empty; the naming convention from the first source that gives one
///   other than the default `B`. `excluded` is true if any source excludes the person,
///   because excluding is the cautious side.
/// * A contract id seen before (in any person) is reported as `duplicate_contract` (error)
///   and the later contract is dropped: ids must be unique for plans to name contracts.
/// * Departments are combined by code the same way: the first source's department wins,
///   later sources only fill its empty fields.
/// * Diagnostics of all sources are kept, in source order, followed by the merge's own.
///
/// The result is normalized.
pub fn merge(fetched: Vec<Fetched>) -> Fetched {
    let mut out = Fetched::default();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut contract_ids: HashSet<String> = HashSet::new();
    let mut departments = BTreeMap::new();
    let mut merge_diagnostics = Vec::new();

    for (source_no, part) in fetched.into_iter().enumerate() {
        out.diagnostics.extend(part.diagnostics);
        for mut person in part.snapshot.persons {
            let contracts = std::mem::take(&mut person.contracts);
            let slot = match index.get(&person.external_id) {
                Some(&i) => {
                    fill_person(&mut out.snapshot.persons[i], person);
                    i
                }
                None => {
                    index.insert(person.external_id.clone(), out.snapshot.persons.len());
                    out.snapshot.persons.push(person);
                    out.snapshot.persons.len() - 1
                }
            };
            let target = &mut out.snapshot.persons[slot];
            for contract in contracts {
                if contract_ids.insert(contract.id.clone()) {
                    target.contracts.push(contract);
                } else {
                    merge_diagnostics.push(
                        Diagnostic::error(
                            "duplicate_contract",
                            format!(
                                "contract id \"{}\" from source #{} was already delivered by an earlier source; the later one is ignored",
                                contract.id,
                                source_no + 1
                            ),
                        )
                        .for_person(target.external_id.clone()),
                    );
                }
            }
        }
        for (code, dept) in part.snapshot.departments {
            match departments.get_mut(&code) {
                None => {
                    departments.insert(code, dept);
                }
                Some(existing) => {
                    let existing: &mut koppel_core::Department = existing;
                    fill(&mut existing.name, dept.name);
                    fill(&mut existing.parent, dept.parent);
                    fill(&mut existing.manager, dept.manager);
                }
            }
        }
    }
    out.snapshot.departments = departments;
    out.diagnostics.extend(merge_diagnostics);
    out.snapshot.normalize();
    out
}

fn fill(into: &mut String, from: String) {
    if into.is_empty() && !from.is_empty() {
        *into = from;
    }
}

/// Fills `into`'s empty fields from a later source's copy of the same person.
fn fill_person(into: &mut Person, from: Person) {
    let n = &mut into.name;
    fill(&mut n.given, from.name.given);
    fill(&mut n.nickname, from.name.nickname);
    fill(&mut n.initials, from.name.initials);
    fill(&mut n.family_prefix, from.name.family_prefix);
    fill(&mut n.family, from.name.family);
    fill(&mut n.partner_prefix, from.name.partner_prefix);
    fill(&mut n.partner, from.name.partner);
    if n.convention == koppel_core::NamingConvention::default() {
        n.convention = from.name.convention;
    }
    fill(&mut into.email, from.email);
    fill(&mut into.phone, from.phone);
    for (key, value) in from.custom {
        let slot = into.custom.entry(key).or_default();
        fill(slot, value);
    }
    into.excluded |= from.excluded;
}
