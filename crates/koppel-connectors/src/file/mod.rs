//! File sources: HR exports as CSV files or a JSON file, loaded into a snapshot.
//! This module holds what both formats share: reading, value parsing and linking.

pub mod csv;
pub mod json;
mod link;

use std::path::{Component, Path, PathBuf};

use koppel_core::Date;
use koppel_core::config::SourceConfig;

use crate::source::{Fetched, RowError, Source, SourceError};

/// A [`Source`] reading HR export files. `fetch` does the work synchronously, on the
/// calling thread (and one helper thread for CSV): a large export takes a few hundred
/// milliseconds, so a server that must stay responsive meanwhile runs it with its runtime's
/// `spawn_blocking`.
#[derive(Debug, Clone)]
pub struct FileSource {
    name: String,
    config: SourceConfig,
    base_dir: PathBuf,
}

impl FileSource {
    /// `base_dir` is the config file's folder; paths in `config` are relative to it.
    pub fn new(config: SourceConfig, base_dir: &Path) -> Self {
        let name = match &config {
            SourceConfig::Csv(c) => format!("csv:{}", c.dir.display()),
            SourceConfig::Json(c) => format!("json:{}", c.file.display()),
            SourceConfig::Visma(_) => "visma".to_owned(),
            SourceConfig::Afas(_) => "afas".to_owned(),
        };
        Self {
            name,
            config,
            base_dir: base_dir.to_path_buf(),
        }
    }
}

#[async_trait::async_trait]
impl Source for FileSource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn fetch(&self) -> Result<Fetched, SourceError> {
        crate::source::load(&self.config, &self.base_dir)
    }
}

/// How many row errors are kept; past this they are only counted, so a file of garbage
/// cannot eat memory with millions of errors.
const MAX_KEPT_ROW_ERRORS: usize = 10_000;

/// Collects row errors across all files of one source, so the admin sees all of them at once.
#[derive(Debug, Default)]
pub(crate) struct Errors {
    kept: Vec<RowError>,
    omitted: usize,
}

impl Errors {
    pub(crate) fn push(&mut self, e: RowError) {
        if self.kept.len() < MAX_KEPT_ROW_ERRORS {
            self.kept.push(e);
        } else {
            self.omitted += 1;
        }
    }

    pub(crate) fn extend(&mut self, other: Errors) {
        for e in other.kept {
            self.push(e);
        }
        self.omitted += other.omitted;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.kept.len() + self.omitted
    }

    pub(crate) fn into_error(self) -> SourceError {
        SourceError::Rows {
            errors: self.kept,
            omitted: self.omitted,
        }
    }
}

/// The name a file goes by in messages: the path as the config spells it, without `./`.
pub(crate) fn display_path(dir: &Path, file: &Path) -> String {
    let joined = dir.join(file);
    let clean: PathBuf = joined
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect();
    clean.display().to_string()
}

/// Reads a whole file, turning "not found" into an error that says where koppel looked.
pub(crate) fn read_file(path: &Path, what: &'static str) -> Result<Vec<u8>, SourceError> {
    std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            SourceError::NotFound {
                what,
                path: path.to_path_buf(),
            }
        } else {
            SourceError::Unreadable {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

/// Strips a UTF-8 byte order mark (Excel's "CSV UTF-8" writes one) and refuses UTF-16,
/// which Excel's "Unicode text" writes, with a message that says how to fix it.
pub(crate) fn strip_bom<'b>(file: &str, bytes: &'b [u8]) -> Result<&'b [u8], SourceError> {
    if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        return Ok(rest);
    }
    if bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF") {
        return Err(SourceError::BadEncoding {
            file: file.to_owned(),
            message: "the file is UTF-16; save it as UTF-8 (in Excel: \"CSV UTF-8\")".into(),
        });
    }
    Ok(bytes)
}

/// Parses an ISO 8601 date. HR exports often write dates as datetimes
/// (`2026-01-31T00:00:00`, with fractions, `Z` or an offset): the date part is taken as is,
/// without converting time zones, because HR means a calendar day, not an instant.
pub(crate) fn parse_date(s: &str) -> Option<Date> {
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    if b.len() > 10 {
        let rest = &b[11..];
        let time_sep = matches!(b[10], b'T' | b't' | b' ');
        let time_like = !rest.is_empty()
            && rest[0].is_ascii_digit()
            && rest
                .iter()
                .all(|c| c.is_ascii_digit() || b":.,+-Zz ".contains(c));
        if !time_sep || !time_like {
            return None;
        }
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let mut n = 0u32;
        for &c in &b[r] {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + u32::from(c - b'0');
        }
        Some(n)
    };
    let year = i32::try_from(num(0..4)?).ok()?;
    Date::from_ymd_opt(year, num(5..7)?, num(8..10)?)
}

/// Parses a decimal number, with `.` or the Dutch `,` as decimal separator.
/// Infinite and NaN values are refused: no HR number is one.
pub(crate) fn parse_decimal(s: &str) -> Option<f64> {
    let v: f64 = match s.find(',') {
        Some(comma) if !s.contains('.') => {
            // Swap the comma for a point on the stack: this runs for every cell of a column.
            let mut buf = [0u8; 32];
            let b = s.as_bytes();
            let dst = buf.get_mut(..b.len())?;
            dst.copy_from_slice(b);
            dst[comma] = b'.';
            std::str::from_utf8(dst).ok()?.parse().ok()?
        }
        _ => s.parse().ok()?,
    };
    v.is_finite().then_some(v)
}

/// Parses a yes/no value as HR exports write it, in English or Dutch.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    const TRUE: [&str; 6] = ["true", "1", "yes", "y", "ja", "j"];
    const FALSE: [&str; 6] = ["false", "0", "no", "n", "nee", ""];
    if TRUE.iter().any(|t| t.eq_ignore_ascii_case(s)) {
        Some(true)
    } else if FALSE.iter().any(|f| f.eq_ignore_ascii_case(s)) {
        Some(false)
    } else {
        None
    }
}

pub(crate) fn date_message(v: &str) -> String {
    format!("\"{v}\" is not a date (expected YYYY-MM-DD)")
}
pub(crate) fn decimal_message(v: &str) -> String {
    format!("\"{v}\" is not a number (expected e.g. 0.8 or 0,8)")
}
pub(crate) fn integer_message(v: &str) -> String {
    format!("\"{v}\" is not a whole number")
}
pub(crate) fn bool_message(v: &str) -> String {
    format!("\"{v}\" is not a yes/no value (expected true/false, 1/0, yes/no or ja/nee)")
}
pub(crate) fn convention_message(v: &str) -> String {
    format!("\"{v}\" is not a naming convention (expected B, P, BP or PB)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Date {
        s.parse().unwrap()
    }

    #[test]
    fn dates_accept_iso_dates_and_take_the_date_part_of_datetimes() {
        assert_eq!(parse_date("2026-01-31"), Some(d("2026-01-31")));
        assert_eq!(parse_date("2026-01-31T00:00:00"), Some(d("2026-01-31")));
        assert_eq!(parse_date("2026-01-31T23:00:00Z"), Some(d("2026-01-31")));
        assert_eq!(
            parse_date("2026-01-31T00:00:00+01:00"),
            Some(d("2026-01-31"))
        );
        assert_eq!(parse_date("2026-01-31 08:30"), Some(d("2026-01-31")));
        assert_eq!(
            parse_date("1955-02-25T20:05:16.2521853"),
            Some(d("1955-02-25"))
        );
        for bad in [
            "",
            "2026-13-01",
            "2026-02-30",
            "31-01-2026",
            "2026-1-31",
            "2026-01-31T",
            "2026-01-31x",
            "2026-01-31Tnoon",
            "+026-01-31",
            "2026-01-3é",
        ] {
            assert_eq!(parse_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn decimals_accept_point_and_dutch_comma() {
        assert_eq!(parse_decimal("0.8"), Some(0.8));
        assert_eq!(parse_decimal("0,8"), Some(0.8));
        assert_eq!(parse_decimal("36"), Some(36.0));
        for bad in ["", "abc", "1,000.5", "1,2,3", "NaN", "inf"] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn booleans_in_english_and_dutch() {
        for t in ["true", "TRUE", "1", "yes", "Ja", "j"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["false", "0", "no", "NEE", ""] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        assert_eq!(parse_bool("maybe"), None);
    }

    #[test]
    fn display_paths_drop_dot_components() {
        assert_eq!(
            display_path(Path::new("."), Path::new("persons.csv")),
            "persons.csv"
        );
        assert_eq!(
            display_path(Path::new("hr"), Path::new("persons.csv")),
            "hr/persons.csv"
        );
    }
}
