//! The compact text encoding of account columns (attributes, permissions, generator inputs).
//! JSON parsed field by field was too slow for 300k accounts; this is length-prefixed instead.
//!
//! Every encoding is self-delimiting valid UTF-8, so SQLite can concatenate many rows into one
//! value (`group_concat`) and the reader splits them again without a separator:
//!
//! * a string is `<byte length>:<bytes>` (`5:jdoe1`),
//! * a count is `<n>;`,
//! * attributes are a count, then per entry a string key and a value: `n` (null), `t` / `f`
//!   (bool), `i<decimal>;` (int), `s<string>` (text), `l<count><strings>` (list),
//! * permissions are a count and the strings,
//! * generator inputs are a count, then per generator a string and a count of strings.

use std::collections::{BTreeMap, BTreeSet};

use koppel_core::AttrValue;

/// A malformed encoding: only a bug or a hand-edited database gives one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub at: usize,
    pub what: &'static str,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

pub fn put_str(out: &mut String, s: &str) {
    put_num(out, s.len() as u64, ':');
    out.push_str(s);
}

fn put_num(out: &mut String, n: u64, end: char) {
    // `write!` into a String cannot fail; formatting by hand avoids the fmt machinery.
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &b in &buf[i..] {
        out.push(b as char);
    }
    out.push(end);
}

pub fn put_count(out: &mut String, n: usize) {
    put_num(out, n as u64, ';');
}

pub fn encode_attributes(out: &mut String, attrs: &BTreeMap<String, AttrValue>) {
    put_count(out, attrs.len());
    for (k, v) in attrs {
        put_str(out, k);
        match v {
            AttrValue::Null => out.push('n'),
            AttrValue::Bool(true) => out.push('t'),
            AttrValue::Bool(false) => out.push('f'),
            AttrValue::Int(i) => {
                out.push('i');
                if *i < 0 {
                    out.push('-');
                }
                put_num(out, i.unsigned_abs(), ';');
            }
            AttrValue::Text(s) => {
                out.push('s');
                put_str(out, s);
            }
            AttrValue::List(l) => {
                out.push('l');
                put_count(out, l.len());
                for s in l {
                    put_str(out, s);
                }
            }
        }
    }
}

pub fn encode_permissions(out: &mut String, perms: &BTreeSet<String>) {
    put_count(out, perms.len());
    for p in perms {
        put_str(out, p);
    }
}

pub fn encode_generator_inputs(out: &mut String, inputs: &BTreeMap<String, Vec<String>>) {
    put_count(out, inputs.len());
    for (g, values) in inputs {
        put_str(out, g);
        put_count(out, values.len());
        for v in values {
            put_str(out, v);
        }
    }
}

/// Reads the encodings above from a string, front to back.
pub struct Reader<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(s: &'a str) -> Self {
        Self { s, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn err<T>(&self, what: &'static str) -> Result<T, DecodeError> {
        Err(self.error(what))
    }

    /// An error at the current position.
    pub fn error(&self, what: &'static str) -> DecodeError {
        DecodeError { at: self.pos, what }
    }

    /// A string, or `-` for none.
    pub fn optional(&mut self) -> Result<Option<&'a str>, DecodeError> {
        if self.s.as_bytes().get(self.pos) == Some(&b'-') {
            self.pos += 1;
            Ok(None)
        } else {
            self.str().map(Some)
        }
    }

    fn num(&mut self, end: u8) -> Result<u64, DecodeError> {
        let bytes = self.s.as_bytes();
        let mut n: u64 = 0;
        let start = self.pos;
        while let Some(&b) = bytes.get(self.pos) {
            self.pos += 1;
            if b == end && self.pos - 1 > start {
                return Ok(n);
            }
            if !b.is_ascii_digit() {
                self.pos -= 1;
                return self.err("expected a number");
            }
            n = match n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(b - b'0')))
            {
                Some(n) => n,
                None => return self.err("number out of range"),
            };
        }
        self.err("unexpected end")
    }

    pub fn count(&mut self) -> Result<usize, DecodeError> {
        let n = self.num(b';')?;
        // A count can never exceed the bytes left: each item takes at least one.
        if n as usize > self.s.len() - self.pos {
            return self.err("count larger than the data");
        }
        Ok(n as usize)
    }

    pub fn str(&mut self) -> Result<&'a str, DecodeError> {
        let len = self.num(b':')? as usize;
        let end = self.pos.checked_add(len).filter(|&e| e <= self.s.len());
        match end.and_then(|e| self.s.get(self.pos..e)) {
            Some(v) => {
                self.pos += len;
                Ok(v)
            }
            None => self.err("string length past the end or inside a character"),
        }
    }

    pub fn string(&mut self) -> Result<String, DecodeError> {
        self.str().map(str::to_owned)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        match self.s.as_bytes().get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => self.err("unexpected end"),
        }
    }

    pub fn flag(&mut self) -> Result<bool, DecodeError> {
        match self.byte()? {
            b'1' => Ok(true),
            b'0' => Ok(false),
            _ => {
                self.pos -= 1;
                self.err("expected 0 or 1")
            }
        }
    }

    pub fn attributes(&mut self) -> Result<BTreeMap<String, AttrValue>, DecodeError> {
        let n = self.count()?;
        // Inserting in (already sorted) order straight into the map saves the Vec a
        // `collect` would allocate: a tenth of the allocations of a known state load.
        let mut entries = BTreeMap::new();
        for _ in 0..n {
            let k = self.string()?;
            let v = match self.byte()? {
                b'n' => AttrValue::Null,
                b't' => AttrValue::Bool(true),
                b'f' => AttrValue::Bool(false),
                b'i' => {
                    let neg = self.s.as_bytes().get(self.pos) == Some(&b'-');
                    if neg {
                        self.pos += 1;
                    }
                    let m = self.num(b';')?;
                    let v = if neg {
                        0i64.checked_sub_unsigned(m)
                    } else {
                        i64::try_from(m).ok()
                    };
                    match v {
                        Some(v) => AttrValue::Int(v),
                        None => return self.err("integer out of range"),
                    }
                }
                b's' => AttrValue::Text(self.string()?),
                b'l' => {
                    let c = self.count()?;
                    let mut l = Vec::with_capacity(c);
                    for _ in 0..c {
                        l.push(self.string()?);
                    }
                    AttrValue::List(l)
                }
                _ => {
                    self.pos -= 1;
                    return self.err("unknown attribute value tag");
                }
            };
            entries.insert(k, v);
        }
        Ok(entries)
    }

    pub fn permissions(&mut self) -> Result<BTreeSet<String>, DecodeError> {
        let n = self.count()?;
        let mut out = BTreeSet::new();
        for _ in 0..n {
            out.insert(self.string()?);
        }
        Ok(out)
    }

    pub fn generator_inputs(&mut self) -> Result<BTreeMap<String, Vec<String>>, DecodeError> {
        let n = self.count()?;
        let mut out = BTreeMap::new();
        for _ in 0..n {
            let g = self.string()?;
            let c = self.count()?;
            let mut values = Vec::with_capacity(c);
            for _ in 0..c {
                values.push(self.string()?);
            }
            out.insert(g, values);
        }
        Ok(out)
    }

    /// The whole input must have been read.
    #[cfg(test)]
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            self.err("trailing data")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip_every_shape() {
        let mut a = BTreeMap::new();
        a.insert("n".to_owned(), AttrValue::Null);
        a.insert("t".to_owned(), AttrValue::Bool(true));
        a.insert("f".to_owned(), AttrValue::Bool(false));
        a.insert("i".to_owned(), AttrValue::Int(i64::MIN));
        a.insert("j".to_owned(), AttrValue::Int(i64::MAX));
        a.insert("z".to_owned(), AttrValue::Int(0));
        a.insert(
            "s".to_owned(),
            AttrValue::Text("Dvořák 9:; \u{0}".to_owned()),
        );
        a.insert("e".to_owned(), AttrValue::Text(String::new()));
        a.insert(
            "l".to_owned(),
            AttrValue::List(vec!["a".into(), "".into(), "ĳ".into()]),
        );
        a.insert("empty".to_owned(), AttrValue::List(vec![]));
        let mut out = String::new();
        encode_attributes(&mut out, &a);
        let mut r = Reader::new(&out);
        assert_eq!(r.attributes().unwrap(), a);
        r.finish().unwrap();
    }

    #[test]
    fn permissions_and_generator_inputs_round_trip() {
        let p: BTreeSet<String> = ["g1", "ĳs", ""].iter().map(|s| s.to_string()).collect();
        let mut g = BTreeMap::new();
        g.insert(
            "user".to_owned(),
            vec!["jdoe".to_owned(), "john".to_owned()],
        );
        g.insert("none".to_owned(), vec![]);
        let mut out = String::new();
        encode_permissions(&mut out, &p);
        encode_generator_inputs(&mut out, &g);
        let mut r = Reader::new(&out);
        assert_eq!(r.permissions().unwrap(), p);
        assert_eq!(r.generator_inputs().unwrap(), g);
        r.finish().unwrap();
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for bad in [
            "",
            "1",
            "1;",
            "1;3:ab",
            "1;1:ax",
            "x;",
            "99999999999999999999999;",
            "1;2:é",
        ] {
            let mut r = Reader::new(bad);
            assert!(r.attributes().is_err(), "{bad:?}");
        }
        let mut r = Reader::new("1;1:ai-;");
        assert!(r.attributes().is_err());
    }
}
