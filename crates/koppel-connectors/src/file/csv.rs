//! The CSV file source: `persons.csv`, `contracts.csv` and optionally `departments.csv` in one
//! folder, every file and column name configurable, loaded into a snapshot.
//!
//! Rules, for admins and for whoever changes this file:
//! * UTF-8 with or without a byte order mark; values are trimmed of spaces.
//! * Only the key columns are mandatory in a header (persons: `external_id`; contracts:
//!   `contract_id`, `external_id`, `start_date`; departments: `code`). An absent optional
//!   column means empty values. Every persons column koppel has no field for becomes a custom
//!   field named by its header (all persons get it, empty or not).
//! * Dates are ISO (`2026-01-31`; datetimes give their date part). Numbers take `.` or `,`.
//! * A row whose cells are all empty is a blank line (Excel writes them) and is skipped.
//! * A malformed row (wrong number of fields, invalid UTF-8, a bad date, number, yes/no or
//!   naming convention, an empty key) fails the whole load, with every bad cell of every file
//!   listed as `file:line: column "name": what is wrong`, so the admin fixes everything in
//!   one go and nothing is ever half-loaded. Lines are physical lines (1 = the header), also
//!   after quoted values that span lines.
//! * An absent or empty `sequence` is 0: file order means nothing, so the later keys of the
//!   primary contract ordering (end date, start date) decide instead.
//! * Linking problems (a contract of an unknown person, duplicates, ...) are diagnostics, not
//!   errors; see the `link` module.

use std::path::Path;

use csv::ByteRecord;
use koppel_core::config::{CsvSourceConfig, DepartmentColumns};
use koppel_core::{Contract, Date, Department, NamingConvention, Person, Title};

use super::link::{self, PendingContract, PersonIds};
use super::{
    Errors, bool_message, convention_message, date_message, decimal_message, display_path,
    integer_message, parse_bool, parse_date, parse_decimal, read_file,
};
use crate::source::{Fetched, RowError, SourceError};

/// Loads the CSV files of one source. Paths are relative to `base_dir`.
pub fn load_csv(cfg: &CsvSourceConfig, base_dir: &Path) -> Result<Fetched, SourceError> {
    let delimiter = match u8::try_from(cfg.delimiter) {
        Ok(b) if b.is_ascii() && !matches!(b, b'"' | b'\n' | b'\r') => b,
        _ => {
            return Err(SourceError::Config(format!(
                "delimiter {:?} is not usable: use one ASCII character such as ',' or ';'",
                cfg.delimiter
            )));
        }
    };
    let dir = base_dir.join(&cfg.dir);
    let file = |name: &str| CsvFile {
        display: display_path(&cfg.dir, Path::new(name)),
        path: dir.join(name),
        delimiter,
    };

    let persons_file = file(&cfg.persons_file);
    let contracts_file = file(&cfg.contracts_file);
    let departments_file = (!cfg.departments_file.is_empty()).then(|| file(&cfg.departments_file));

    // Read all files before parsing, so a missing file is reported before row errors.
    let persons_bytes = read_file(&persons_file.path, "persons file")?;
    let contracts_bytes = read_file(&contracts_file.path, "contracts file")?;
    let departments_bytes = match &departments_file {
        Some(f) => Some(read_file(&f.path, "departments file")?),
        None => None,
    };

    // Persons and contracts are independent until they are attached: parse and check each
    // on its own thread. A file with bad rows is not linked; the load fails anyway.
    let contracts_display = &contracts_file.display;
    let persons_display = persons_file.display.clone();
    let contracts_part = || {
        let mut errors = Errors::default();
        let (list, ids) = read_contracts(&contracts_file, &contracts_bytes, cfg, &mut errors)?;
        let linked = errors
            .is_empty()
            .then(|| link::contracts(contracts_display.clone(), list, ids));
        Ok::<_, SourceError>((linked, errors))
    };
    let (departments, persons, contracts) = std::thread::scope(|s| {
        // Without a second thread (the OS may refuse one) the contracts are read afterwards.
        let spawned = std::thread::Builder::new()
            .spawn_scoped(s, contracts_part)
            .ok();
        let mut errors = Errors::default();
        let departments = match (&departments_file, &departments_bytes) {
            (Some(f), Some(bytes)) => {
                let (list, lines) =
                    read_departments(f, bytes, &cfg.columns.departments, &mut errors)?;
                Some(link::departments(&f.display, list, &lines))
            }
            _ => None,
        };
        let before = errors.len();
        let (list, lines) = read_persons(&persons_file, &persons_bytes, cfg, &mut errors)?;
        let persons = (errors.len() == before).then(|| link::persons(persons_display, list, lines));
        let contracts = match spawned {
            Some(handle) => handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            None => contracts_part(),
        };
        Ok::<_, SourceError>((departments, (persons, errors), contracts))
    })?;
    let (persons, mut errors) = persons;
    let (contracts, contract_errors) = contracts?;
    errors.extend(contract_errors);
    match (persons, contracts) {
        (Some(persons), Some(contracts)) if errors.is_empty() => {
            Ok(link::assemble(departments, persons, contracts))
        }
        _ => Err(errors.into_error()),
    }
}

struct CsvFile {
    /// The name in messages: the path as the config spells it.
    display: String,
    path: std::path::PathBuf,
    delimiter: u8,
}

/// A file's header, with column indices looked up once by name.
struct Header<'f> {
    file: &'f str,
    names: Vec<String>,
}

impl<'f> Header<'f> {
    fn read(file: &'f CsvFile, rdr: &mut csv::Reader<&[u8]>) -> Result<Self, SourceError> {
        let bad = |message: String| SourceError::BadHeader {
            file: file.display.clone(),
            message,
        };
        let record = rdr
            .byte_headers()
            .map_err(|e| bad(format!("cannot read the header line: {e}")))?;
        let mut names = Vec::with_capacity(record.len());
        for (i, raw) in record.iter().enumerate() {
            let name = std::str::from_utf8(raw.trim_ascii()).map_err(|_| {
                bad(format!(
                    "column {} of the header is not valid UTF-8; save the file as UTF-8",
                    i + 1
                ))
            })?;
            if !name.is_empty() && names.iter().any(|n| n == name) {
                return Err(bad(format!("column \"{name}\" appears twice")));
            }
            names.push(name.to_owned());
        }
        if names.iter().all(String::is_empty) {
            return Err(bad(
                "the file is empty; its first line must name the columns".into(),
            ));
        }
        Ok(Self {
            file: &file.display,
            names,
        })
    }

    /// Index of an optional column; an empty configured name means "no such column".
    fn find(&self, name: &str) -> Option<usize> {
        if name.is_empty() {
            return None;
        }
        self.names.iter().position(|n| n == name)
    }

    fn require(&self, name: &str, setting: &str) -> Result<usize, SourceError> {
        self.find(name).ok_or_else(|| SourceError::MissingColumn {
            file: self.file.to_owned(),
            column: name.to_owned(),
            setting: format!("columns.{setting}"),
            found: self
                .names
                .iter()
                .filter(|n| !n.is_empty())
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

/// A CSV reader over a file's text (without its byte order mark).
struct Csv<'b> {
    rdr: csv::Reader<&'b [u8]>,
    body: &'b [u8],
}

fn reader<'b>(file: &CsvFile, bytes: &'b [u8]) -> Result<Csv<'b>, SourceError> {
    let body = super::strip_bom(&file.display, bytes)?;
    // Flexible: a row with the wrong number of fields becomes our own row error (with its
    // line) instead of a reader error, and reading goes on to find the other bad rows.
    let rdr = csv::ReaderBuilder::new()
        .delimiter(file.delimiter)
        .has_headers(true)
        .flexible(true)
        .from_reader(body);
    Ok(Csv { rdr, body })
}

/// The physical line a record starts on. The csv crate places a record after the previous
/// record's `\r` or before skipped blank lines, which makes its line number too small for
/// Windows line endings and after blank lines: step over those line ends here.
fn record_line(body: &[u8], record: &ByteRecord) -> u64 {
    let Some(pos) = record.position() else {
        return 0;
    };
    let mut line = pos.line();
    let start = usize::try_from(pos.byte()).unwrap_or(usize::MAX);
    for &b in body.get(start..).unwrap_or_default() {
        match b {
            b'\n' => line += 1,
            b'\r' => {}
            _ => break,
        }
    }
    line
}

/// Walks the data rows of a file, calling `each` for every row that has the header's
/// number of fields and is not blank; other rows become errors.
fn for_each_row<'h>(
    input: &mut Csv<'_>,
    header: &'h Header<'_>,
    errors: &mut Errors,
    mut each: impl FnMut(&mut Row<'_, 'h, '_>),
) {
    let mut record = ByteRecord::new();
    loop {
        match input.rdr.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                // Reading from memory with a flexible reader leaves no recoverable error
                // kinds; report it where it happened and stop reading this file.
                errors.push(RowError {
                    file: header.file.to_owned(),
                    line: e.position().map(|p| p.line()),
                    record: None,
                    field: None,
                    message: format!("cannot read the row: {e}"),
                });
                break;
            }
        }
        let line = record_line(input.body, &record);
        if record.iter().all(|f| f.trim_ascii().is_empty()) {
            continue;
        }
        if record.len() != header.names.len() {
            errors.push(RowError {
                file: header.file.to_owned(),
                line: Some(line),
                record: None,
                field: None,
                message: format!(
                    "the row has {} fields, the header has {} (a stray delimiter or quote?)",
                    record.len(),
                    header.names.len()
                ),
            });
            continue;
        }
        let mut row = Row {
            record: &record,
            text: std::str::from_utf8(record.as_slice()).ok(),
            header,
            line,
            errors,
            bad: false,
        };
        each(&mut row);
    }
}

/// One data row being read: typed access to cells that records every bad cell.
struct Row<'r, 'h, 'e> {
    record: &'r ByteRecord,
    /// The whole row as text, when it is valid UTF-8 (nearly always): checking it once is
    /// much cheaper than checking every cell.
    text: Option<&'r str>,
    header: &'h Header<'h>,
    line: u64,
    errors: &'e mut Errors,
    /// Set once any cell of the row was bad: the row must not be used.
    bad: bool,
}

impl<'r> Row<'r, '_, '_> {
    fn fail(&mut self, col: usize, message: String) {
        self.bad = true;
        self.errors.push(RowError {
            file: self.header.file.to_owned(),
            line: Some(self.line),
            record: None,
            field: self.header.names.get(col).cloned(),
            message,
        });
    }

    /// The trimmed text of a cell, or `None` (reported) when it is not UTF-8.
    fn try_str(&mut self, col: usize) -> Option<&'r str> {
        // `get` checks that the cell starts and ends on character boundaries; when it does
        // not, the cell alone is invalid even though the row as a whole is not.
        if let Some(cell) = self
            .text
            .zip(self.record.range(col))
            .and_then(|(text, range)| text.get(range))
        {
            return Some(cell.trim_ascii());
        }
        let raw = self.record.get(col).unwrap_or_default().trim_ascii();
        match std::str::from_utf8(raw) {
            Ok(s) => Some(s),
            Err(_) => {
                self.fail(col, "is not valid UTF-8; save the file as UTF-8".into());
                None
            }
        }
    }

    /// The trimmed text of a cell; empty when the column is absent or the cell is bad.
    fn str(&mut self, col: Option<usize>) -> &'r str {
        col.and_then(|col| self.try_str(col)).unwrap_or_default()
    }

    fn string(&mut self, col: Option<usize>) -> String {
        self.str(col).to_owned()
    }

    /// A cell that must not be empty: an id.
    fn key_str(&mut self, col: usize, what: &str) -> &'r str {
        let s = self.try_str(col);
        if s == Some("") {
            self.fail(col, format!("is empty; every {what} needs one"));
        }
        s.unwrap_or_default()
    }

    fn key(&mut self, col: usize, what: &str) -> String {
        self.key_str(col, what).to_owned()
    }

    fn date(&mut self, col: Option<usize>) -> Option<Date> {
        let s = self.str(col);
        if s.is_empty() {
            return None;
        }
        let d = parse_date(s);
        if d.is_none()
            && let Some(col) = col
        {
            self.fail(col, date_message(s));
        }
        d
    }

    fn required_date(&mut self, col: usize) -> Option<Date> {
        let s = self.try_str(col)?;
        if s.is_empty() {
            self.fail(col, "is empty; every contract needs a start date".into());
            return None;
        }
        self.date(Some(col))
    }

    fn decimal(&mut self, col: Option<usize>) -> Option<f64> {
        let s = self.str(col);
        if s.is_empty() {
            return None;
        }
        let v = parse_decimal(s);
        if v.is_none()
            && let Some(col) = col
        {
            self.fail(col, decimal_message(s));
        }
        v
    }

    fn integer(&mut self, col: Option<usize>) -> Option<i64> {
        let s = self.str(col);
        if s.is_empty() {
            return None;
        }
        let v = s.parse().ok();
        if v.is_none()
            && let Some(col) = col
        {
            self.fail(col, integer_message(s));
        }
        v
    }

    fn boolean(&mut self, col: Option<usize>) -> bool {
        let s = self.str(col);
        match (parse_bool(s), col) {
            (Some(b), _) => b,
            (None, Some(col)) => {
                self.fail(col, bool_message(s));
                false
            }
            (None, None) => false,
        }
    }

    fn convention(&mut self, col: Option<usize>) -> NamingConvention {
        let s = self.str(col);
        match (NamingConvention::parse(s), col) {
            (Some(c), _) => c,
            (None, Some(col)) => {
                self.fail(col, convention_message(s));
                NamingConvention::default()
            }
            (None, None) => NamingConvention::default(),
        }
    }
}

/// A guess of a file's row count from its line count, to size vectors once.
fn rows_hint(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b == b'\n').count()
}

fn read_persons(
    file: &CsvFile,
    bytes: &[u8],
    cfg: &CsvSourceConfig,
    errors: &mut Errors,
) -> Result<(Vec<Person>, Vec<u64>), SourceError> {
    let c = &cfg.columns.persons;
    let mut input = reader(file, bytes)?;
    let h = Header::read(file, &mut input.rdr)?;
    let external_id = h.require(&c.external_id, "persons.external_id")?;
    let rows = rows_hint(bytes);
    let given = h.find(&c.given_name);
    let nickname = h.find(&c.nickname);
    let initials = h.find(&c.initials);
    let family_prefix = h.find(&c.family_name_prefix);
    let family = h.find(&c.family_name);
    let partner_prefix = h.find(&c.partner_name_prefix);
    let partner = h.find(&c.partner_name);
    let convention = h.find(&c.naming_convention);
    let email = h.find(&c.email);
    let phone = h.find(&c.phone);
    let excluded = h.find(&c.excluded);
    let known = [
        Some(external_id),
        given,
        nickname,
        initials,
        family_prefix,
        family,
        partner_prefix,
        partner,
        convention,
        email,
        phone,
        excluded,
    ];
    // Every other named column is a custom field.
    let custom: Vec<usize> = (0..h.names.len())
        .filter(|i| !h.names[*i].is_empty() && !known.contains(&Some(*i)))
        .collect();

    let mut out = Vec::with_capacity(rows);
    let mut lines = Vec::with_capacity(rows);
    for_each_row(&mut input, &h, errors, |row| {
        let mut person = Person {
            external_id: row.key(external_id, "person"),
            ..Person::default()
        };
        let n = &mut person.name;
        n.given = row.string(given);
        n.nickname = row.string(nickname);
        n.initials = row.string(initials);
        n.family_prefix = row.string(family_prefix);
        n.family = row.string(family);
        n.partner_prefix = row.string(partner_prefix);
        n.partner = row.string(partner);
        n.convention = row.convention(convention);
        person.email = row.string(email);
        person.phone = row.string(phone);
        person.excluded = row.boolean(excluded);
        for &col in &custom {
            let value = row.string(Some(col));
            person.custom.insert(h.names[col].clone(), value);
        }
        if !row.bad {
            out.push(person);
            lines.push(row.line);
        }
    });
    Ok((out, lines))
}

fn read_contracts(
    file: &CsvFile,
    bytes: &[u8],
    cfg: &CsvSourceConfig,
    errors: &mut Errors,
) -> Result<(Vec<PendingContract>, PersonIds), SourceError> {
    let c = &cfg.columns.contracts;
    let mut input = reader(file, bytes)?;
    let h = Header::read(file, &mut input.rdr)?;
    let id = h.require(&c.contract_id, "contracts.contract_id")?;
    let person = h.require(&c.external_id, "contracts.external_id")?;
    let start = h.require(&c.start_date, "contracts.start_date")?;
    let end = h.find(&c.end_date);
    let department = h.find(&c.department_code);
    let title_code = h.find(&c.title_code);
    let title = h.find(&c.title);
    let location = h.find(&c.location);
    let cost_centre = h.find(&c.cost_centre);
    let manager = h.find(&c.manager_external_id);
    let employment_type = h.find(&c.employment_type);
    let fte = h.find(&c.fte);
    let hours = h.find(&c.hours_per_week);
    let sequence = h.find(&c.sequence);

    let rows = rows_hint(bytes);
    let mut out = Vec::with_capacity(rows);
    let mut ids = PersonIds::with_capacity(rows * 8);
    for_each_row(&mut input, &h, errors, |row| {
        let contract_id = row.key(id, "contract");
        let person = row.key_str(person, "contract");
        let start = row.required_date(start);
        let end = row.date(end);
        let contract = Contract {
            id: contract_id,
            // Replaced below; a bad start makes the row bad and unused.
            start: start.unwrap_or_default(),
            end,
            department: row.string(department),
            title: Title {
                code: row.string(title_code),
                name: row.string(title),
            },
            location: row.string(location),
            cost_centre: row.string(cost_centre),
            manager: row.string(manager),
            employment_type: row.string(employment_type),
            fte: row.decimal(fte),
            hours_per_week: row.decimal(hours),
            sequence: row.integer(sequence).unwrap_or(0),
        };
        if !row.bad && start.is_some() {
            out.push(PendingContract {
                person: ids.push(person),
                contract,
                line: row.line,
            });
        }
    });
    Ok((out, ids))
}

fn read_departments(
    file: &CsvFile,
    bytes: &[u8],
    c: &DepartmentColumns,
    errors: &mut Errors,
) -> Result<(Vec<Department>, Vec<u64>), SourceError> {
    let mut input = reader(file, bytes)?;
    let h = Header::read(file, &mut input.rdr)?;
    let code = h.require(&c.code, "departments.code")?;
    let name = h.find(&c.name);
    let parent = h.find(&c.parent_code);
    let manager = h.find(&c.manager_external_id);

    let mut out = Vec::new();
    let mut lines = Vec::new();
    for_each_row(&mut input, &h, errors, |row| {
        let dept = Department {
            code: row.key(code, "department"),
            name: row.string(name),
            parent: row.string(parent),
            manager: row.string(manager),
        };
        if !row.bad {
            out.push(dept);
            lines.push(row.line);
        }
    });
    Ok((out, lines))
}
