//! Reading API records: field access by (dotted) name, values as text, numbers and dates,
//! and collecting record errors so one run reports all bad records at once.

use koppel_connectors::source::RowError;
use koppel_core::Date;
use serde_json::Value;

/// One record as the API delivered it.
pub type Record = serde_json::Map<String, Value>;

/// The value at `path` (`a.b` walks into objects), when present and not null.
pub fn value<'a>(rec: &'a Record, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut current = rec.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    (!current.is_null()).then_some(current)
}

/// The value at `path` as text: strings as they are (trimmed), numbers and booleans written
/// out; empty means absent.
pub fn text(rec: &Record, path: &str) -> Option<String> {
    let s = match value(rec, path)? {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    (!s.is_empty()).then_some(s)
}

/// The value at `path` as a number (a JSON number, or text with `.` or `,` decimals).
pub fn number(rec: &Record, path: &str) -> Result<Option<f64>, String> {
    match value(rec, path) {
        None => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .replace(',', ".")
            .parse::<f64>()
            .map(Some)
            .map_err(|_| format!("{s:?} is not a number")),
        Some(other) => Err(format!("{other} is not a number")),
    }
}

/// A date as APIs write it: `2026-11-23`, or a date-time whose date part counts
/// (`2026-11-23T00:00:00Z`; AFAS writes Amsterdam time with a `Z` that is to be ignored).
pub fn date(s: &str) -> Result<Date, String> {
    let day = s.get(..10).unwrap_or(s);
    day.parse::<Date>()
        .map_err(|_| format!("{s:?} is not a date (YYYY-MM-DD)"))
}

/// Record errors of one fetch, capped like the file sources' (the rest counted).
#[derive(Debug, Default)]
pub struct Problems {
    pub errors: Vec<RowError>,
}

impl Problems {
    pub fn push(&mut self, file: &str, record: String, field: Option<&str>, message: String) {
        if self.errors.len() < 10_000 {
            self.errors.push(RowError {
                file: file.to_owned(),
                line: None,
                record: Some(record),
                field: field.map(str::to_owned),
                message,
            });
        }
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(v: Value) -> Record {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn values_by_path_text_numbers_and_dates() {
        let r = rec(serde_json::json!({
            "a": " x ", "n": 20, "e": "", "z": null,
            "w": { "amountOfWork": 32.5, "unit": "Hours" }, "c": "0,8"
        }));
        assert_eq!(text(&r, "a").as_deref(), Some("x"));
        assert_eq!(text(&r, "n").as_deref(), Some("20"));
        assert_eq!(text(&r, "e"), None);
        assert_eq!(text(&r, "z"), None);
        assert_eq!(text(&r, "missing"), None);
        assert_eq!(text(&r, "w.unit").as_deref(), Some("Hours"));
        assert_eq!(number(&r, "w.amountOfWork"), Ok(Some(32.5)));
        assert_eq!(number(&r, "c"), Ok(Some(0.8)));
        assert!(number(&r, "a").is_err());
        assert_eq!(date("2026-11-23").unwrap().to_string(), "2026-11-23");
        assert_eq!(
            date("2019-01-01T00:00:00Z").unwrap().to_string(),
            "2019-01-01"
        );
        assert!(date("23-11-2026").is_err());
    }
}
