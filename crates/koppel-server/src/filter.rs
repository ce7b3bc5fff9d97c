//! SCIM filters (RFC 7644 §3.4.2.2) and PATCH paths (§3.5.2): a hand-written parser with
//! error positions, and evaluation against JSON resources with the schema's case rules.
//!
//! Why not `scim_v2`'s parser: it gives no positions, it would add a dependency for a grammar
//! of a few dozen lines, and the evaluator, the SQL translation and the PATCH code want an AST
//! of their own anyway. The parser bounds nesting and size, so no input can exhaust the
//! stack (fuzzed: `fuzz/fuzz_targets/filter.rs` and `patch_path.rs`).

use std::cmp::Ordering;
use std::fmt;

use serde_json::{Map, Value};

use crate::schema::{self, Attr, Kind, Ty};

/// Most nested groups, `not`s and brackets a filter may have.
const MAX_DEPTH: usize = 32;
/// Most comparisons a filter may have: evaluation and drop recurse over the tree.
const MAX_TERMS: usize = 200;

/// An attribute path: `[urn ":"] name ["." sub]`. `name` is empty for a path naming a whole
/// extension (`urn:…:enterprise:2.0:User`, PATCH only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    pub urn: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

impl AttrPath {
    pub fn simple(name: &str) -> AttrPath {
        AttrPath {
            urn: None,
            name: name.to_owned(),
            sub: None,
        }
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(urn) = &self.urn {
            write!(f, "{urn}")?;
            if !self.name.is_empty() {
                write!(f, ":")?;
            }
        }
        write!(f, "{}", self.name)?;
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    fn parse(word: &str) -> Option<CompareOp> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => CompareOp::Eq,
            "ne" => CompareOp::Ne,
            "co" => CompareOp::Co,
            "sw" => CompareOp::Sw,
            "ew" => CompareOp::Ew,
            "gt" => CompareOp::Gt,
            "ge" => CompareOp::Ge,
            "lt" => CompareOp::Lt,
            "le" => CompareOp::Le,
            _ => return None,
        })
    }
}

/// A comparison value (`compValue`).
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    Str(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Compare(AttrPath, CompareOp, Literal),
    Present(AttrPath),
    Not(Box<Filter>),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    /// `attr[filter]`: some element of multi-valued (or the value of single complex) `attr`
    /// matches `filter`, whose paths name sub-attributes.
    Complex(AttrPath, Box<Filter>),
}

/// A PATCH path: `attrPath`, or `attrPath "[" valFilter "]" ["." subAttr]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
    /// The sub-attribute after a value filter (`emails[type eq "work"].value`).
    pub sub: Option<String>,
}

/// A parse error at a 1-based character column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at column {}: {}", self.column, self.message)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Word(String),
    Str(String),
    Number(serde_json::Number),
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::LParen => f.write_str("`(`"),
            Tok::RParen => f.write_str("`)`"),
            Tok::LBracket => f.write_str("`[`"),
            Tok::RBracket => f.write_str("`]`"),
            Tok::Word(w) => write!(f, "`{w}`"),
            Tok::Str(s) => write!(f, "the string {s:?}"),
            Tok::Number(n) => write!(f, "the number {n}"),
        }
    }
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '.' | '$')
}

/// Splits `input` into tokens with their 1-based columns.
fn lex(input: &str) -> Result<Vec<(usize, Tok)>, ParseError> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        let err = |message: String| ParseError { column, message };
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                i += 1;
                continue;
            }
            '(' => out.push((column, Tok::LParen)),
            ')' => out.push((column, Tok::RParen)),
            '[' => out.push((column, Tok::LBracket)),
            ']' => out.push((column, Tok::RBracket)),
            '"' => {
                let start = i;
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(err("unterminated string".to_owned())),
                        Some('\\') => i += 2,
                        Some('"') => break,
                        Some(_) => i += 1,
                    }
                }
                let text: String = chars[start..=i].iter().collect();
                let value: String = serde_json::from_str(&text)
                    .map_err(|e| err(format!("invalid string {text}: {e}")))?;
                out.push((column, Tok::Str(value)));
            }
            c if c == '-' || c.is_ascii_digit() => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_digit()
                        || matches!(chars[i], '-' | '+' | '.' | 'e' | 'E'))
                {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                let number: serde_json::Number = text
                    .parse()
                    .map_err(|_| err(format!("invalid number `{text}`")))?;
                out.push((column, Tok::Number(number)));
                continue;
            }
            c if is_word_char(c) => {
                let start = i;
                while i < chars.len() && is_word_char(chars[i]) {
                    i += 1;
                }
                out.push((column, Tok::Word(chars[start..i].iter().collect())));
                continue;
            }
            other => return Err(err(format!("unexpected character {other:?}"))),
        }
        i += 1;
    }
    Ok(out)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name == "$ref"
        || chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Parses the text of an attribute path (one word) at `column`.
fn attr_path(word: &str, column: usize) -> Result<AttrPath, ParseError> {
    let err = |message: String| ParseError { column, message };
    if schema::is_known_urn(word) {
        return Ok(AttrPath {
            urn: Some(word.to_owned()),
            name: String::new(),
            sub: None,
        });
    }
    let (urn, rest) = match word.rfind(':') {
        Some(at) => (Some(&word[..at]), &word[at + 1..]),
        None => (None, word),
    };
    if let Some(urn) = urn
        && !urn.to_ascii_lowercase().starts_with("urn:")
    {
        return Err(err(format!("`{word}`: a schema must be a URN (urn:…)")));
    }
    let mut parts = rest.split('.');
    let name = parts.next().unwrap_or_default();
    let sub = parts.next();
    if parts.next().is_some() {
        return Err(err(format!(
            "`{word}`: an attribute path has at most one sub-attribute"
        )));
    }
    if !valid_name(name) {
        return Err(err(format!("`{word}` is not an attribute name")));
    }
    if let Some(sub) = sub
        && !valid_name(sub)
    {
        return Err(err(format!("`{word}`: `{sub}` is not an attribute name")));
    }
    Ok(AttrPath {
        urn: urn.map(str::to_owned),
        name: name.to_owned(),
        sub: sub.map(str::to_owned),
    })
}

struct Parser {
    tokens: Vec<(usize, Tok)>,
    at: usize,
    end_column: usize,
    depth: usize,
    terms: usize,
}

impl Parser {
    fn new(input: &str) -> Result<Parser, ParseError> {
        Ok(Parser {
            tokens: lex(input)?,
            at: 0,
            end_column: input.chars().count() + 1,
            depth: 0,
            terms: 0,
        })
    }

    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.at).map(|(_, t)| t)
    }

    fn column(&self) -> usize {
        self.tokens
            .get(self.at)
            .map_or(self.end_column, |(c, _)| *c)
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            column: self.column(),
            message: message.into(),
        })
    }

    fn next(&mut self) -> Option<(usize, Tok)> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(keyword))
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<(), ParseError> {
        match self.peek() {
            Some(t) if *t == want => {
                self.at += 1;
                Ok(())
            }
            Some(t) => self.error(format!("expected {what}, found {t}")),
            None => self.error(format!("expected {what}, found the end of the filter")),
        }
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.error(format!("the filter nests deeper than {MAX_DEPTH} levels"));
        }
        Ok(())
    }

    fn or(&mut self, inner: bool) -> Result<Filter, ParseError> {
        let mut left = self.and(inner)?;
        while self.peek_keyword("or") {
            self.at += 1;
            let right = self.and(inner)?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self, inner: bool) -> Result<Filter, ParseError> {
        let mut left = self.unary(inner)?;
        while self.peek_keyword("and") {
            self.at += 1;
            let right = self.unary(inner)?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self, inner: bool) -> Result<Filter, ParseError> {
        if self.peek_keyword("not")
            && self.tokens.get(self.at + 1).map(|(_, t)| t) == Some(&Tok::LParen)
        {
            self.at += 1;
            self.enter()?;
            let f = self.group(inner)?;
            self.depth -= 1;
            return Ok(Filter::Not(Box::new(f)));
        }
        if self.peek() == Some(&Tok::LParen) {
            self.enter()?;
            let f = self.group(inner)?;
            self.depth -= 1;
            return Ok(f);
        }
        self.attr_exp(inner)
    }

    fn group(&mut self, inner: bool) -> Result<Filter, ParseError> {
        self.expect(Tok::LParen, "`(`")?;
        let f = self.or(inner)?;
        self.expect(Tok::RParen, "`)`")?;
        Ok(f)
    }

    fn attr_exp(&mut self, inner: bool) -> Result<Filter, ParseError> {
        let (column, path) = match self.next() {
            Some((column, Tok::Word(w))) => (column, attr_path(&w, column)?),
            Some((column, t)) => {
                return Err(ParseError {
                    column,
                    message: format!("expected an attribute path, found {t}"),
                });
            }
            None => {
                self.at -= 1;
                return self.error("expected an attribute path, found the end of the filter");
            }
        };
        if path.name.is_empty() {
            return Err(ParseError {
                column,
                message: format!("`{path}` names a schema, not an attribute"),
            });
        }
        if inner && (path.urn.is_some() || path.sub.is_some()) {
            return Err(ParseError {
                column,
                message: format!(
                    "`{path}`: inside `[…]` a filter names sub-attributes of the attribute before it"
                ),
            });
        }
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return Err(ParseError {
                column,
                message: format!("the filter has more than {MAX_TERMS} comparisons"),
            });
        }
        if self.peek() == Some(&Tok::LBracket) {
            if inner {
                return self.error("value filters `[…]` cannot nest");
            }
            if path.sub.is_some() {
                return self.error(format!(
                    "`{path}[…]`: a value filter follows an attribute, not a sub-attribute"
                ));
            }
            self.at += 1;
            self.enter()?;
            let f = self.or(true)?;
            self.expect(Tok::RBracket, "`]`")?;
            self.depth -= 1;
            // `emails[type eq "work"].value eq "x"` is accepted as `emails[type eq "work" and
            // value eq "x"]`: some clients send it although Figure 1 does not have it.
            if let Some(Tok::Word(w)) = self.peek()
                && let Some(sub) = w.strip_prefix('.')
            {
                let sub_column = self.column();
                if !valid_name(sub) {
                    return self.error(format!("`{sub}` is not an attribute name"));
                }
                let sub = AttrPath::simple(sub);
                self.at += 1;
                let rest = self.operator(sub, sub_column)?;
                return Ok(Filter::Complex(
                    path,
                    Box::new(Filter::And(Box::new(f), Box::new(rest))),
                ));
            }
            return Ok(Filter::Complex(path, Box::new(f)));
        }
        self.operator(path, column)
    }

    fn operator(&mut self, path: AttrPath, column: usize) -> Result<Filter, ParseError> {
        let op = match self.next() {
            Some((_, Tok::Word(w))) if w.eq_ignore_ascii_case("pr") => {
                return Ok(Filter::Present(path));
            }
            Some((c, Tok::Word(w))) => CompareOp::parse(&w).ok_or(ParseError {
                column: c,
                message: format!("`{w}` is not an operator (eq ne co sw ew gt ge lt le pr)"),
            })?,
            Some((c, t)) => {
                return Err(ParseError {
                    column: c,
                    message: format!("expected an operator after `{path}`, found {t}"),
                });
            }
            None => {
                return Err(ParseError {
                    column: self.end_column,
                    message: format!(
                        "expected an operator after `{path}` (column {column}), found the end of the filter"
                    ),
                });
            }
        };
        let value = match self.next() {
            Some((_, Tok::Str(s))) => Literal::Str(s),
            Some((_, Tok::Number(n))) => Literal::Number(n),
            Some((_, Tok::Word(w))) if w == "true" => Literal::Bool(true),
            Some((_, Tok::Word(w))) if w == "false" => Literal::Bool(false),
            Some((_, Tok::Word(w))) if w == "null" => Literal::Null,
            Some((c, t)) => {
                return Err(ParseError {
                    column: c,
                    message: format!(
                        "expected a value (a quoted string, a number, true, false or null), found {t}"
                    ),
                });
            }
            None => {
                return Err(ParseError {
                    column: self.end_column,
                    message: "expected a value, found the end of the filter".to_owned(),
                });
            }
        };
        Ok(Filter::Compare(path, op, value))
    }

    fn finish(&self) -> Result<(), ParseError> {
        match self.peek() {
            None => Ok(()),
            Some(t) => self.error(format!("unexpected {t} after a complete expression")),
        }
    }
}

/// Parses a filter.
pub fn parse(input: &str) -> Result<Filter, ParseError> {
    let mut p = Parser::new(input)?;
    if p.peek().is_none() {
        return p.error("the filter is empty");
    }
    let f = p.or(false)?;
    p.finish()?;
    Ok(f)
}

/// Parses a PATCH path.
pub fn parse_path(input: &str) -> Result<PatchPath, ParseError> {
    let mut p = Parser::new(input)?;
    let (column, attr) = match p.next() {
        Some((column, Tok::Word(w))) => (column, attr_path(&w, column)?),
        Some((column, t)) => {
            return Err(ParseError {
                column,
                message: format!("expected an attribute path, found {t}"),
            });
        }
        None => {
            return Err(ParseError {
                column: 1,
                message: "the path is empty".to_owned(),
            });
        }
    };
    let mut path = PatchPath {
        attr,
        filter: None,
        sub: None,
    };
    if p.peek() == Some(&Tok::LBracket) {
        if path.attr.sub.is_some() || path.attr.name.is_empty() {
            return p.error(format!(
                "`{}[…]`: a value filter follows a top-level attribute",
                path.attr
            ));
        }
        p.at += 1;
        p.depth = 1;
        path.filter = Some(p.or(true)?);
        p.expect(Tok::RBracket, "`]`")?;
        if let Some(Tok::Word(w)) = p.peek() {
            let Some(sub) = w.strip_prefix('.') else {
                return p.error(format!("expected `.subAttribute` or the end, found `{w}`"));
            };
            if !valid_name(sub) {
                return p.error(format!("`{sub}` is not an attribute name"));
            }
            path.sub = Some(sub.to_owned());
            p.at += 1;
        }
    }
    let _ = column;
    p.finish()?;
    Ok(path)
}

/// A filter that makes sense for the schema: errors are `invalidFilter` messages.
pub fn validate(filter: &Filter, kind: Kind) -> Result<(), String> {
    validate_in(filter, Scope::Resource(kind))
}

#[derive(Clone, Copy)]
enum Scope {
    Resource(Kind),
    Element(&'static Attr),
}

/// The definition of what `path` compares against in `scope`: the attribute, its
/// sub-attribute, or the implicit `value` sub-attribute of a multi-valued complex one.
fn resolve(scope: Scope, path: &AttrPath) -> Option<&'static Attr> {
    let top = match scope {
        Scope::Resource(kind) => kind.attr(path.urn.as_deref(), &path.name)?,
        Scope::Element(parent) => return schema::find(parent.sub, &path.name),
    };
    match &path.sub {
        Some(sub) => schema::find(top.sub, sub),
        None if top.ty == Ty::Complex => schema::find(top.sub, "value").or(Some(top)),
        None => Some(top),
    }
}

fn validate_in(filter: &Filter, scope: Scope) -> Result<(), String> {
    match filter {
        Filter::Compare(path, op, value) => {
            let Some(def) = resolve(scope, path) else {
                // Unknown attributes match nothing (RFC 7644 §3.4.2.2 leaves it open; an
                // error would break clients that probe for optional attributes).
                return Ok(());
            };
            let ordering = matches!(
                op,
                CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le
            );
            let substring = matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew);
            match def.ty {
                Ty::Complex => Err(format!(
                    "`{path}` is complex: compare one of its sub-attributes"
                )),
                Ty::Boolean | Ty::Binary if ordering || substring => Err(format!(
                    "`{path}` is {}: only eq, ne and pr apply",
                    if def.ty == Ty::Boolean {
                        "a boolean"
                    } else {
                        "binary"
                    }
                )),
                Ty::Integer | Ty::Decimal if substring => {
                    Err(format!("`{path}` is a number: co, sw and ew do not apply"))
                }
                _ if *value == Literal::Null && (ordering || substring) => {
                    Err(format!("`{path}`: null can only be compared with eq or ne"))
                }
                _ => Ok(()),
            }
        }
        Filter::Present(_) => Ok(()),
        Filter::Not(f) => validate_in(f, scope),
        Filter::And(a, b) | Filter::Or(a, b) => {
            validate_in(a, scope)?;
            validate_in(b, scope)
        }
        Filter::Complex(path, inner) => {
            let Scope::Resource(kind) = scope else {
                return Err("value filters cannot nest".to_owned());
            };
            match kind.attr(path.urn.as_deref(), &path.name) {
                Some(def) if def.ty == Ty::Complex => validate_in(inner, Scope::Element(def)),
                Some(_) => Err(format!("`{path}[…]`: `{path}` is not a complex attribute")),
                None => Ok(()),
            }
        }
    }
}

/// The value of key `name` in `obj`, compared case-insensitively as SCIM attribute names are.
pub fn get_ci<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// The top-level value `path` starts from in a resource.
fn top_value<'a>(obj: &'a Map<String, Value>, kind: Kind, path: &AttrPath) -> Option<&'a Value> {
    match &path.urn {
        Some(urn) if !urn.eq_ignore_ascii_case(kind.core()) => get_ci(obj, urn)?
            .as_object()
            .and_then(|ext| get_ci(ext, &path.name)),
        _ => get_ci(obj, &path.name),
    }
}

/// The values `path` designates in `obj` (several for multi-valued attributes).
fn values<'a>(obj: &'a Map<String, Value>, scope: Scope, path: &AttrPath) -> Vec<&'a Value> {
    let (top, def) = match scope {
        Scope::Resource(kind) => (
            top_value(obj, kind, path),
            kind.attr(path.urn.as_deref(), &path.name),
        ),
        Scope::Element(parent) => (
            get_ci(obj, &path.name),
            schema::find(parent.sub, &path.name),
        ),
    };
    let Some(top) = top else {
        return Vec::new();
    };
    let sub = match (&path.sub, def) {
        (Some(sub), _) => Some(sub.as_str()),
        (None, Some(d)) if d.ty == Ty::Complex => Some("value"),
        _ => None,
    };
    let items: Vec<&Value> = match top {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    match sub {
        None => items,
        Some(sub) => items
            .into_iter()
            .filter_map(|v| v.as_object().and_then(|o| get_ci(o, sub)))
            .flat_map(|v| match v {
                Value::Array(a) => a.iter().collect::<Vec<_>>(),
                other => vec![other],
            })
            .collect(),
    }
}

fn non_empty(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => a.iter().any(non_empty),
        Value::Object(o) => o.values().any(non_empty),
        _ => true,
    }
}

/// Whether resource `obj` of `kind` matches `filter`. The filter should have passed
/// [`validate`]; one that did not still gives an answer, never a panic.
pub fn matches(filter: &Filter, obj: &Map<String, Value>, kind: Kind) -> bool {
    eval(filter, obj, Scope::Resource(kind))
}

fn eval(filter: &Filter, obj: &Map<String, Value>, scope: Scope) -> bool {
    match filter {
        Filter::Present(path) => values(obj, scope, path).into_iter().any(non_empty),
        Filter::Compare(path, op, literal) => {
            let def = resolve(scope, path);
            let found = values(obj, scope, path);
            match (op, literal) {
                (CompareOp::Eq, Literal::Null) => !found.into_iter().any(non_empty),
                (CompareOp::Ne, Literal::Null) => found.into_iter().any(non_empty),
                (CompareOp::Ne, _) => !found
                    .into_iter()
                    .any(|v| compare(v, CompareOp::Eq, literal, def)),
                _ => found.into_iter().any(|v| compare(v, *op, literal, def)),
            }
        }
        Filter::Not(f) => !eval(f, obj, scope),
        Filter::And(a, b) => eval(a, obj, scope) && eval(b, obj, scope),
        Filter::Or(a, b) => eval(a, obj, scope) || eval(b, obj, scope),
        Filter::Complex(path, inner) => {
            let Scope::Resource(kind) = scope else {
                return false;
            };
            let Some(def) = kind.attr(path.urn.as_deref(), &path.name) else {
                return false;
            };
            match top_value(obj, kind, path) {
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(Value::as_object)
                    .any(|e| eval(inner, e, Scope::Element(def))),
                Some(Value::Object(o)) => eval(inner, o, Scope::Element(def)),
                _ => false,
            }
        }
    }
}

fn fold(s: &str, case_exact: bool) -> std::borrow::Cow<'_, str> {
    if case_exact {
        std::borrow::Cow::Borrowed(s)
    } else {
        std::borrow::Cow::Owned(s.to_lowercase())
    }
}

/// One value against one literal.
fn compare(value: &Value, op: CompareOp, literal: &Literal, def: Option<&Attr>) -> bool {
    let ordering = match (value, literal) {
        (Value::String(v), Literal::Str(l)) => {
            if def.is_some_and(|d| d.ty == Ty::DateTime)
                && let (Ok(a), Ok(b)) = (
                    chrono::DateTime::parse_from_rfc3339(v),
                    chrono::DateTime::parse_from_rfc3339(l),
                )
            {
                a.cmp(&b)
            } else {
                let exact = def.is_some_and(|d| d.case_exact);
                let (v, l) = (fold(v, exact), fold(l, exact));
                match op {
                    CompareOp::Co => return v.contains(l.as_ref()),
                    CompareOp::Sw => return v.starts_with(l.as_ref()),
                    CompareOp::Ew => return v.ends_with(l.as_ref()),
                    _ => v.cmp(&l),
                }
            }
        }
        (Value::Bool(v), Literal::Bool(l)) => v.cmp(l),
        (Value::Number(v), Literal::Number(l)) => match (v.as_f64(), l.as_f64()) {
            (Some(a), Some(b)) => match a.partial_cmp(&b) {
                Some(o) => o,
                None => return false,
            },
            _ => return false,
        },
        _ => return false,
    };
    match op {
        CompareOp::Eq => ordering == Ordering::Equal,
        CompareOp::Ne => ordering != Ordering::Equal,
        CompareOp::Gt => ordering == Ordering::Greater,
        CompareOp::Ge => ordering != Ordering::Less,
        CompareOp::Lt => ordering == Ordering::Less,
        CompareOp::Le => ordering != Ordering::Greater,
        // Substring operators on non-strings: validate refuses them.
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

/// Whether element `obj` of complex attribute `parent` matches a value filter (PATCH).
pub fn matches_element(filter: &Filter, obj: &Map<String, Value>, parent: &'static Attr) -> bool {
    eval(filter, obj, Scope::Element(parent))
}

/// Validates a value filter over the elements of `parent` (PATCH paths).
pub fn validate_element(filter: &Filter, parent: &'static Attr) -> Result<(), String> {
    validate_in(filter, Scope::Element(parent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user() -> Map<String, Value> {
        match json!({
            "id": "2819c223",
            "userName": "BJensen",
            "externalId": "Bjensen-Ext",
            "displayName": "Babs Jensen",
            "active": true,
            "name": { "givenName": "Barbara", "familyName": "Jensen" },
            "emails": [
                { "value": "bjensen@example.com", "type": "work", "primary": true },
                { "value": "babs@jensen.org", "type": "home" }
            ],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "employeeNumber": "701984", "department": "Tour Operations"
            },
            "meta": { "lastModified": "2011-05-13T04:42:34Z", "resourceType": "User" }
        }) {
            Value::Object(o) => o,
            _ => unreachable!(),
        }
    }

    fn eval_user(text: &str) -> bool {
        let f = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        validate(&f, Kind::User).unwrap_or_else(|e| panic!("{text}: {e}"));
        matches(&f, &user(), Kind::User)
    }

    #[test]
    fn every_operator_and_case_rule() {
        let cases: &[(&str, bool)] = &[
            // eq: userName is case-insensitive, id and externalId are case-exact.
            (r#"userName eq "bjensen""#, true),
            (r#"USERNAME EQ "BJENSEN""#, true),
            (r#"id eq "2819c223""#, true),
            (r#"id eq "2819C223""#, false),
            (r#"externalId eq "bjensen-ext""#, false),
            (r#"externalId eq "Bjensen-Ext""#, true),
            (r#"userName ne "bjensen""#, false),
            (r#"userName ne "other""#, true),
            (r#"name.familyName co "ens""#, true),
            (r#"name.familyName co "xyz""#, false),
            (r#"userName sw "bj""#, true),
            (r#"userName sw "je""#, false),
            (r#"userName ew "SEN""#, true),
            (r#"userName gt "a""#, true),
            (r#"userName gt "z""#, false),
            (r#"userName ge "bjensen""#, true),
            (r#"userName lt "c""#, true),
            (r#"userName le "bjensen""#, true),
            (r#"userName le "bj""#, false),
            ("title pr", false),
            ("userName pr", true),
            ("emails pr", true),
            ("active eq true", true),
            ("active eq false", false),
            ("active ne false", true),
            ("title eq null", true),
            ("userName eq null", false),
            // dateTime compares as instants, whatever the offset's spelling.
            (r#"meta.lastModified gt "2011-05-13T04:42:34+01:00""#, true),
            (r#"meta.lastModified gt "2011-05-13T04:42:34Z""#, false),
            (r#"meta.lastModified ge "2011-05-13T04:42:34Z""#, true),
            (r#"meta.lastModified lt "2012-01-01T00:00:00Z""#, true),
            // Multi-valued: any value; emails compares its `value`.
            (r#"emails co "jensen.org""#, true),
            (r#"emails.type eq "home""#, true),
            (r#"emails.value ew "EXAMPLE.COM""#, true),
            // Extensions by full path.
            (
                r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984""#,
                true,
            ),
            (
                r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "B""#,
                true,
            ),
            // Unknown attributes match nothing.
            (r#"nosuch eq "x""#, false),
        ];
        for (text, want) in cases {
            assert_eq!(eval_user(text), *want, "{text}");
        }
    }

    #[test]
    fn logic_precedence_grouping_and_complex_filters() {
        let cases: &[(&str, bool)] = &[
            (r#"userName eq "x" or userName eq "bjensen""#, true),
            (r#"userName eq "bjensen" and title pr"#, false),
            // and binds tighter than or: true or (false and false).
            (r#"userName pr or title pr and nickName pr"#, true),
            // grouping changes it: (true or false) and false.
            (r#"(userName pr or title pr) and nickName pr"#, false),
            (r#"not (title pr)"#, true),
            (r#"not (userName pr) or active eq true"#, true),
            (r#"not(userName pr)"#, false),
            (r#"((userName eq "bjensen"))"#, true),
            (
                r#"emails[type eq "work" and value co "@example.com"]"#,
                true,
            ),
            (
                r#"emails[type eq "home" and value co "@example.com"]"#,
                false,
            ),
            (
                r#"emails[type eq "work"] and emails[value ew ".org"]"#,
                true,
            ),
            (r#"emails[not (type eq "work")]"#, true),
            (r#"emails[primary eq true]"#, true),
            (r#"name[givenName sw "bar"]"#, true),
            (r#"emails[type eq "work"].value co "example""#, true),
            (r#"emails[type eq "home"].value co "example""#, false),
        ];
        for (text, want) in cases {
            assert_eq!(eval_user(text), *want, "{text}");
        }
        assert_eq!(
            parse("a pr or b pr and c pr").ok(),
            Some(Filter::Or(
                Box::new(Filter::Present(AttrPath::simple("a"))),
                Box::new(Filter::And(
                    Box::new(Filter::Present(AttrPath::simple("b"))),
                    Box::new(Filter::Present(AttrPath::simple("c")))
                ))
            ))
        );
    }

    #[test]
    fn literals() {
        assert_eq!(
            parse(r#"x eq "a \"q\" \u00e9""#).ok(),
            Some(Filter::Compare(
                AttrPath::simple("x"),
                CompareOp::Eq,
                Literal::Str("a \"q\" é".to_owned())
            ))
        );
        assert!(matches!(
            parse("x gt -1.5e3"),
            Ok(Filter::Compare(_, CompareOp::Gt, Literal::Number(_)))
        ));
        assert!(matches!(
            parse("x eq null"),
            Ok(Filter::Compare(_, _, Literal::Null))
        ));
    }

    #[test]
    fn errors_have_positions() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 1, "empty"),
            ("userName", 9, "operator"),
            ("userName eq", 12, "value"),
            ("userName xx \"a\"", 10, "not an operator"),
            ("userName eq \"a", 13, "unterminated"),
            ("userName eq \"a\" and", 20, "attribute path"),
            ("(userName pr", 13, "`)`"),
            ("userName pr)", 12, "unexpected"),
            ("emails[type eq \"work\"", 22, "`]`"),
            ("emails[type[value pr] pr]", 12, "cannot nest"),
            ("userName eq bjensen", 13, "expected a value"),
            ("1abc pr", 1, "attribute path"),
            ("user@name pr", 5, "unexpected character"),
            ("a.b.c pr", 1, "at most one"),
            ("userName eq \"x\" # y", 17, "unexpected character"),
        ];
        for (text, column, needle) in cases {
            match parse(text) {
                Ok(f) => panic!("{text:?} parsed as {f:?}"),
                Err(e) => {
                    assert_eq!(e.column, *column, "{text:?}: {e}");
                    assert!(e.message.contains(needle), "{text:?}: {e}");
                }
            }
        }
    }

    #[test]
    fn validation_refuses_meaningless_comparisons() {
        for text in [
            "active gt true",
            "active co \"t\"",
            "name eq \"x\"",
            "userName gt null",
            "x509Certificates.value sw \"MII\"",
            "userName[value pr]",
        ] {
            let f = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert!(validate(&f, Kind::User).is_err(), "{text}");
        }
    }

    #[test]
    fn deep_or_large_filters_are_refused_not_overflowing() {
        let deep = format!("{}a pr{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(parse(&deep).unwrap_err().message.contains("deeper"));
        let nots = format!("{}a pr{}", "not (".repeat(100), ")".repeat(100));
        assert!(parse(&nots).is_err());
        let long = vec!["a pr"; 5000].join(" and ");
        assert!(parse(&long).unwrap_err().message.contains("comparisons"));
    }

    #[test]
    fn patch_paths() {
        let p = parse_path(r#"emails[type eq "work"].value"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.attr, AttrPath::simple("emails"));
        assert_eq!(p.sub.as_deref(), Some("value"));
        assert!(p.filter.is_some());
        let p = parse_path(r#"members[value eq "2819c223"]"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.attr.name, "members");
        assert!(p.sub.is_none());
        let p = parse_path("name.givenName").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.attr.sub.as_deref(), Some("givenName"));
        let p =
            parse_path("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value")
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            p.attr.urn.as_deref(),
            Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
        );
        assert_eq!(p.attr.name, "manager");
        let p = parse_path("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(p.attr.name.is_empty());
        for bad in [
            "",
            "emails[type eq \"work\"",
            "emails[type eq \"work\"]value",
            "name.givenName[value pr]",
            "emails[type eq \"work\"] extra",
            "emails..value",
            "notaurn:x",
        ] {
            assert!(parse_path(bad).is_err(), "{bad:?}");
        }
    }
}
