//! Writes a snapshot as `persons.csv`, `contracts.csv` and `departments.csv` in the default
//! column layout of koppel's CSV source (`koppel_core::config::source`).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use chrono::Datelike;
use koppel_core::config::source::{ContractColumns, DepartmentColumns, PersonColumns};
use koppel_core::{Date, Snapshot};

fn writer(path: &Path) -> io::Result<csv::Writer<BufWriter<File>>> {
    Ok(csv::WriterBuilder::new()
        .from_writer(BufWriter::with_capacity(1 << 16, File::create(path)?)))
}

fn finish(w: csv::Writer<BufWriter<File>>) -> io::Result<()> {
    w.into_inner().map_err(|e| e.into_error())?.flush()
}

fn number(value: Option<f64>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

/// `YYYY-MM-DD` without going through `fmt`, which dominated writing 100,000 persons.
fn iso(date: Date, buf: &mut [u8; 10]) -> &str {
    let y = date.year().clamp(0, 9999) as u32;
    let digits = [
        y / 1000,
        y / 100 % 10,
        y / 10 % 10,
        y % 10,
        0,
        date.month() / 10,
        date.month() % 10,
        0,
        date.day() / 10,
        date.day() % 10,
    ];
    for (b, d) in buf.iter_mut().zip(digits) {
        *b = b'0' + d as u8;
    }
    buf[4] = b'-';
    buf[7] = b'-';
    std::str::from_utf8(buf).unwrap_or_default()
}

/// Writes the three files into `dir`, creating it if needed. Any custom field of any person
/// becomes a column after the standard ones (sorted by name, empty where a person has none).
/// Dates are ISO 8601, `excluded` is `true` or `false`, numbers use a decimal point.
pub fn write_csv(snapshot: &Snapshot, dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;

    let pc = PersonColumns::default();
    let custom: BTreeSet<&str> = snapshot
        .persons
        .iter()
        .flat_map(|p| p.custom.keys().map(String::as_str))
        .collect();
    let mut w = writer(&dir.join("persons.csv"))?;
    let mut header: Vec<&str> = vec![
        &pc.external_id,
        &pc.given_name,
        &pc.nickname,
        &pc.initials,
        &pc.family_name_prefix,
        &pc.family_name,
        &pc.partner_name_prefix,
        &pc.partner_name,
        &pc.naming_convention,
        &pc.email,
        &pc.phone,
        &pc.excluded,
    ];
    header.extend(custom.iter().copied());
    w.write_record(&header)?;
    for p in &snapshot.persons {
        let n = &p.name;
        w.write_field(&p.external_id)?;
        w.write_field(&n.given)?;
        w.write_field(&n.nickname)?;
        w.write_field(&n.initials)?;
        w.write_field(&n.family_prefix)?;
        w.write_field(&n.family)?;
        w.write_field(&n.partner_prefix)?;
        w.write_field(&n.partner)?;
        w.write_field(n.convention.as_str())?;
        w.write_field(&p.email)?;
        w.write_field(&p.phone)?;
        w.write_field(if p.excluded { "true" } else { "false" })?;
        for key in &custom {
            w.write_field(p.custom.get(*key).map(String::as_str).unwrap_or_default())?;
        }
        w.write_record(None::<&[u8]>)?;
    }
    finish(w)?;

    let cc = ContractColumns::default();
    let mut w = writer(&dir.join("contracts.csv"))?;
    w.write_record([
        &cc.contract_id,
        &cc.external_id,
        &cc.start_date,
        &cc.end_date,
        &cc.department_code,
        &cc.title_code,
        &cc.title,
        &cc.location,
        &cc.cost_centre,
        &cc.manager_external_id,
        &cc.employment_type,
        &cc.fte,
        &cc.hours_per_week,
        &cc.sequence,
    ])?;
    let (mut start, mut end) = ([0u8; 10], [0u8; 10]);
    for p in &snapshot.persons {
        for c in &p.contracts {
            w.write_record([
                c.id.as_str(),
                &p.external_id,
                iso(c.start, &mut start),
                c.end.map_or("", |d| iso(d, &mut end)),
                &c.department,
                &c.title.code,
                &c.title.name,
                &c.location,
                &c.cost_centre,
                &c.manager,
                &c.employment_type,
                &number(c.fte),
                &number(c.hours_per_week),
                &c.sequence.to_string(),
            ])?;
        }
    }
    finish(w)?;

    let dc = DepartmentColumns::default();
    let mut w = writer(&dir.join("departments.csv"))?;
    w.write_record([&dc.code, &dc.name, &dc.parent_code, &dc.manager_external_id])?;
    for d in snapshot.departments.values() {
        w.write_record([&d.code, &d.name, &d.parent, &d.manager])?;
    }
    finish(w)
}
