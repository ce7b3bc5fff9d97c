//! koppel's HR API connectors: Visma Raet / Youforce IAM API and AFAS Profit as sources, and
//! as write-back targets for the values koppel generates (username, e-mail, UPN).
//!
//! Sources are configured as `[[sources]] kind = "visma" | "afas"` with a `connection` table,
//! targets as `kind = "visma" | "afas"`; this crate checks those tables, the core knows no
//! vendor. Secrets are read by reference (`*_env`, `*_file`) and never printed.

pub mod afas;
pub mod error;
pub mod http;
pub mod map;
pub mod settings;
pub mod visma;

use std::path::Path;

use koppel_connectors::source::Source;
use koppel_core::Date;
use koppel_core::config::{SourceConfig, TargetKind};

pub use afas::{AfasSource, AfasTarget};
pub use error::HrError;
pub use settings::Located;
pub use visma::{VismaSource, VismaTarget};

/// True for the sources this crate reads.
pub fn is_api_source(config: &SourceConfig) -> bool {
    matches!(config, SourceConfig::Visma(_) | SourceConfig::Afas(_))
}

/// True for the targets this crate writes.
pub fn is_hr_target(kind: TargetKind) -> bool {
    matches!(kind, TargetKind::Visma | TargetKind::Afas)
}

fn source_prefix(index: usize) -> String {
    format!("sources[{index}].connection")
}

/// The source for `[[sources]]` number `index` (0-based). `now` is the run date (Youforce
/// records come in versions); relative files are resolved against `base_dir`.
pub fn source(
    index: usize,
    config: &SourceConfig,
    base_dir: &Path,
    now: Date,
) -> Result<Box<dyn Source>, HrError> {
    let prefix = source_prefix(index);
    match config {
        SourceConfig::Visma(c) => {
            let (settings, api) =
                visma::VismaSourceConfig::from_table(&prefix, &c.connection, base_dir)?;
            Ok(Box::new(VismaSource::new(settings, api, now)?))
        }
        SourceConfig::Afas(c) => {
            let (settings, api) =
                afas::AfasSourceConfig::from_table(&prefix, &c.connection, base_dir)?;
            Ok(Box::new(AfasSource::new(settings, api)?))
        }
        _ => Err(HrError::Config(format!(
            "sources[{index}] is not an HR API source"
        ))),
    }
}

/// Checks source number `index`'s settings without reading secrets or contacting anything.
pub fn check_source(index: usize, config: &SourceConfig) -> Result<(), HrError> {
    let prefix = source_prefix(index);
    let here = Path::new(".");
    match config {
        SourceConfig::Visma(c) => {
            visma::VismaSourceConfig::from_table(&prefix, &c.connection, here).map(drop)
        }
        SourceConfig::Afas(c) => {
            afas::AfasSourceConfig::from_table(&prefix, &c.connection, here).map(drop)
        }
        _ => Ok(()),
    }
}

/// Checks write-back target `name`'s settings without reading secrets.
pub fn check_target(name: &str, kind: TargetKind, table: &toml::Table) -> Result<(), HrError> {
    let prefix = format!("targets.{name}.connection");
    let here = Path::new(".");
    match kind {
        TargetKind::Visma => visma::VismaTargetConfig::from_table(&prefix, table, here).map(drop),
        TargetKind::Afas => afas::AfasTargetConfig::from_table(&prefix, table, here).map(drop),
        _ => Ok(()),
    }
}

/// Every problem in the HR connections of a configuration text, at its line and column.
pub fn check_text(text: &str, file: &str) -> Vec<Located> {
    let here = Path::new(".");
    settings::check_text(text, file, |kind, is_source, prefix, table| {
        match (kind, is_source) {
            ("visma", true) => visma::VismaSourceConfig::from_table(prefix, table, here).map(drop),
            ("afas", true) => afas::AfasSourceConfig::from_table(prefix, table, here).map(drop),
            ("visma", false) => visma::VismaTargetConfig::from_table(prefix, table, here).map(drop),
            ("afas", false) => afas::AfasTargetConfig::from_table(prefix, table, here).map(drop),
            _ => Ok(()),
        }
    })
}
