//! CEL expressions for rule conditions, mappings and generators: compile once per run, then
//! evaluate per person against a [`Scope`] over the borrowed HR model.
//!
//! # How it works
//!
//! [`ExprEngine::compile`] parses with the `cel` crate, checks every variable, function and
//! field name (a typo is a [`CompileError`] with its line and column, not a runtime surprise),
//! and then compiles the AST into koppel's own evaluator ([`fast`]): a tree of nodes that
//! read model fields directly from the borrowed `Person`/`Contract`, with field paths resolved
//! at compile time. The `cel` crate's interpreter cannot get near the budget the product needs
//! (≈100 evaluations per person, 100,000 persons a second on two cores, so ≤150 ns an
//! evaluation): it boxes every intermediate value, looks names up in maps and joins qualified
//! names into fresh strings on every select. No published crate evaluates CEL over native
//! structs at that speed, hence the hand-written evaluator. It covers what rules really use;
//! any expression it does not cover is evaluated by the `cel` interpreter ([`interp`]) over
//! lazy views of the same model, with the same functions. A differential test keeps the two
//! in agreement, values and errors alike.
//!
//! # Variables
//!
//! | name | value |
//! | --- | --- |
//! | `person` | `external_id`, `name` {`given`, `nickname`, `initials`, `family_prefix`, `family`, `partner_prefix`, `partner`, `convention` ("B", "P", "BP", "PB")}, `email`, `phone`, `custom` (map string → string), `excluded` (bool), `active` (bool, on `now`), `contracts` (list of contracts) |
//! | `contract` | the contract in scope, `null` when there is none |
//! | `primary` | the person's primary contract, `null` when there is none |
//! | `now` | the run date |
//! | `accounts` | map target → map field → value: what other targets stored for the person |
//! | `value`, `n` | generators only: the candidate (string) and the attempt number (int) |
//!
//! A contract has `id`, `start`, `end` (`null` when open), `active` (bool, on `now`),
//! `department` {`code`, `name`, `parent`, `manager`}, `title` {`code`, `name`}, `location`,
//! `cost_centre`, `manager` (the resolved manager's external id: the contract's own, else the
//! department chain's), `employment_type`, `fte` and `hours_per_week` (double, 0.0 when
//! missing), `sequence` (int). Missing strings are `""`, never `null`, so mappings compose
//! without null checks. `person.custom.x` is an error when the key is missing: test with
//! `has(person.custom.x)` or `"x" in person.custom`. `has()` on a model field is always true.
//!
//! Dates are CEL timestamps at 00:00 UTC: `contract.start <= now`, `contract.end == null` and
//! `date("2026-01-01") < now` compare as dates. `iso(d)` formats one as "YYYY-MM-DD", and an
//! expression whose result is a date yields that text (`string(d)` is CEL's RFC 3339 form).
//!
//! # koppel's functions
//!
//! | function | meaning |
//! | --- | --- |
//! | `ascii(s)` | transliteration to ASCII: the configured overrides (longest match first), then `deunicode` ("Müller" → "Muller", "Straße" → "Strasse") |
//! | `lower(s)`, `upper(s)`, `trim(s)` | Unicode-aware case mapping and whitespace trimming; also as methods, `s.lower()` |
//! | `compact(s)` | drops whitespace, apostrophes, hyphens and dots: "van der Berg" → "vanderBerg" |
//! | `initials(person)` | "J.P.": the initials field normalised, else the first letters of the given names |
//! | `family_name(person)` | the family name with prefixes under the naming convention: "de Vries", "Jansen-de Vries" |
//! | `family_name_sort(person)` | the same with the leading prefix moved to the end: "Vries, de" |
//! | `display_name(person)` | nickname (else given name) + " " + family name, single-spaced |
//! | `days_until(d)`, `days_since(d)` | whole days from `now` to `d`, and from `d` to `now` (negative when on the other side) |
//! | `add_days(d, n)` | the date `n` days after `d` (`n` may be negative) |
//! | `date(s)` | the date "YYYY-MM-DD"; a literal that is no date is a compile error |
//! | `iso(d)` | "YYYY-MM-DD" |
//! | `in_department_tree(root)` | the department of the contract in scope (else the primary contract) is `root` or below it |
//! | `in_department_tree(code, root)` | department `code` is `root` or below it |
//!
//! The date functions given `null` (an open `contract.end`) fail with an error that says so:
//! write `contract.end != null && days_until(contract.end) < 30`. Everything in CEL's standard
//! library and its strings extension (`split`, `replace`, `substring`, `join`, ...) works too.
//!
//! # Errors
//!
//! `&&` and `||` follow CEL: an error on one side is absorbed when the other side decides
//! (`false && error` is `false`, `true || error` is `true`). [`Expr::eval_bool`] fails on a
//! non-bool result; [`Expr::eval_string`] turns ints and bools into text and null into "".
//! Results: strings, ints, bools and null map to [`AttrValue`] as they are, lists to
//! `AttrValue::List` of text, doubles and dates to text; maps and model objects are errors.

mod check;
pub(crate) mod fast;
pub(crate) mod interp;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::model::{Contract, Date, Person};
use crate::names::Transliterator;
use crate::org::Org;
use crate::value::AttrValue;

/// Builds and holds what every expression of a run shares: the CEL environment with koppel's
/// functions and the transliteration table.
pub struct ExprEngine {
    shared: Arc<Shared>,
}

/// What compiled expressions keep a handle on.
pub(crate) struct Shared {
    pub(crate) interp: interp::Interp,
    pub(crate) translit: Arc<Transliterator>,
}

impl ExprEngine {
    /// `overrides`: transliteration overrides applied before deunicode, e.g. "ü" -> "ue"
    /// (longest match first).
    pub fn new(overrides: &BTreeMap<String, String>) -> Self {
        let translit = Arc::new(Transliterator::new(overrides));
        Self {
            shared: Arc::new(Shared {
                interp: interp::Interp::new(translit.clone()),
                translit,
            }),
        }
    }

    /// Parses and checks `source`, and compiles it for fast evaluation.
    pub fn compile(&self, source: &str) -> Result<Expr, CompileError> {
        let program = self.shared.interp.parse(source)?;
        check::check(program.expression(), program.source_info(), source)?;
        let fast = fast::compile(program.expression(), program.source_info(), source)?;
        Ok(Expr {
            inner: Arc::new(Inner {
                source: source.to_owned(),
                program,
                fast,
                shared: self.shared.clone(),
            }),
        })
    }

    /// The transliteration [`ExprEngine::new`] was given, for code that needs `ascii()`
    /// outside expressions.
    pub fn transliterator(&self) -> &Transliterator {
        &self.shared.translit
    }
}

/// A problem in an expression's text: a syntax error, or a name that means nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at line {line}, column {column} of the expression)")]
pub struct CompileError {
    pub message: String,
    /// Byte offset in the source.
    pub offset: usize,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
}

impl CompileError {
    /// An error at byte `offset` of `source` (clamped to the source, moved back to a char
    /// boundary).
    pub(crate) fn at(source: &str, offset: usize, message: impl Into<String>) -> Self {
        let mut offset = offset.min(source.len());
        while !source.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &source[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = source[line_start..offset].chars().count() + 1;
        Self {
            message: message.into(),
            offset,
            line,
            column,
        }
    }
}

/// An expression that failed on the data it was given. The message says what to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct EvalError {
    pub message: String,
}

impl EvalError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// A compiled expression. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Expr {
    inner: Arc<Inner>,
}

struct Inner {
    source: String,
    program: cel::Program,
    /// `None` when the expression uses something the fast evaluator does not cover.
    fast: Option<fast::Node>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Expr")
            .field("source", &self.inner.source)
            .field("fast", &self.inner.fast.is_some())
            .finish()
    }
}

impl Expr {
    pub fn source(&self) -> &str {
        &self.inner.source
    }

    /// Whether the fast evaluator runs this expression (else the `cel` interpreter does).
    pub fn is_fast(&self) -> bool {
        self.inner.fast.is_some()
    }

    pub fn eval(&self, scope: &Scope<'_>) -> Result<AttrValue, EvalError> {
        match &self.inner.fast {
            Some(node) => fast::eval(node, scope, &self.inner.shared)?.into_attr(),
            None => self.eval_interpreted(scope),
        }
    }

    /// A non-bool result is an error naming the type it got.
    /// Evaluates a mapping and compares its normalized value with `known`, the value last
    /// written (`None`: absent). `Ok(None)` when they are the same: the common case against an
    /// up-to-date state, compared on the borrowed result without building an `AttrValue`.
    pub fn eval_changed(
        &self,
        scope: &Scope<'_>,
        known: Option<&AttrValue>,
    ) -> Result<Option<AttrValue>, EvalError> {
        let to = match &self.inner.fast {
            Some(node) => {
                let v = fast::eval(node, scope, &self.inner.shared)?;
                if fast::same_as_known(&v, known) {
                    return Ok(None);
                }
                v.into_attr()?.normalized()
            }
            None => self.eval_interpreted(scope)?.normalized(),
        };
        Ok((!same_value(known, &to)).then_some(to))
    }

    pub fn eval_bool(&self, scope: &Scope<'_>) -> Result<bool, EvalError> {
        match &self.inner.fast {
            Some(node) => fast::test(node, scope, &self.inner.shared),
            None => match self.eval_interpreted(scope)? {
                AttrValue::Bool(b) => Ok(b),
                other => Err(EvalError::new(format!(
                    "expected bool, got {}",
                    describe_attr(&other)
                ))),
            },
        }
    }

    /// Text as is; ints and bools formatted; null as ""; a list is an error.
    pub fn eval_string(&self, scope: &Scope<'_>) -> Result<String, EvalError> {
        match &self.inner.fast {
            Some(node) => fast::eval(node, scope, &self.inner.shared)?.into_string(),
            None => attr_to_string(self.eval_interpreted(scope)?),
        }
    }

    /// Evaluates with the `cel` interpreter even when the fast evaluator covers the
    /// expression: the reference the differential tests compare against.
    #[doc(hidden)]
    pub fn eval_interpreted(&self, scope: &Scope<'_>) -> Result<AttrValue, EvalError> {
        self.inner
            .shared
            .interp
            .eval(&self.inner.program, scope, &self.inner.source)
    }
}

/// Whether a desired (normalized) value `to` is what `known` holds; an absent value and null
/// are the same.
pub fn same_value(known: Option<&AttrValue>, to: &AttrValue) -> bool {
    match known {
        Some(from) => from == to,
        None => to.is_null(),
    }
}

pub(crate) fn attr_to_string(v: AttrValue) -> Result<String, EvalError> {
    match v {
        AttrValue::Null => Ok(String::new()),
        AttrValue::Bool(b) => Ok(b.to_string()),
        AttrValue::Int(i) => Ok(i.to_string()),
        AttrValue::Text(s) => Ok(s),
        AttrValue::List(l) => Err(EvalError::new(format!(
            "expected a string, got a list of {} values",
            l.len()
        ))),
    }
}

pub(crate) fn describe_attr(v: &AttrValue) -> String {
    match v {
        AttrValue::Null => "null".to_owned(),
        AttrValue::Bool(b) => format!("bool {b}"),
        AttrValue::Int(i) => format!("int {i}"),
        AttrValue::Text(s) => format!("string {s:?}"),
        AttrValue::List(l) => format!("list of {} values", l.len()),
    }
}

/// The data a person's expressions see, before a contract or generator variables are bound.
#[derive(Debug, Clone, Copy)]
pub struct Vars<'a> {
    pub now: Date,
    pub org: &'a Org,
    pub person: &'a Person,
    /// The person's primary contract.
    pub primary: Option<&'a Contract>,
    /// The contract in scope; callers pass the primary for mappings.
    pub contract: Option<&'a Contract>,
    /// target -> field -> value: account data other targets stored.
    pub accounts: &'a BTreeMap<String, BTreeMap<String, AttrValue>>,
}

/// Everything an expression can see. Built once per person (it is a handful of references:
/// building one costs nothing); `contract` and `extra` change cheaply.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub(crate) vars: Vars<'a>,
    pub(crate) extra: &'a [(&'a str, AttrValue)],
}

impl<'a> Scope<'a> {
    pub fn new(vars: Vars<'a>) -> Self {
        Self { vars, extra: &[] }
    }

    /// The same scope with another contract in scope (for contract conditions and dynamic
    /// permissions).
    pub fn with_contract(&self, contract: Option<&'a Contract>) -> Scope<'a> {
        let mut s = *self;
        s.vars.contract = contract;
        s
    }

    /// The same scope with extra variables; generators bind `value` (string) and `n` (int).
    pub fn with_extra(&self, extra: &'a [(&'a str, AttrValue)]) -> Scope<'a> {
        Scope { extra, ..*self }
    }

    pub fn vars(&self) -> &Vars<'a> {
        &self.vars
    }

    pub(crate) fn extra_var(&self, name: &str) -> Option<&'a AttrValue> {
        self.extra.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

/// Variables every expression may name. `value` and `n` are only bound by generators.
pub(crate) const VARIABLES: &[&str] = &[
    "person", "contract", "primary", "now", "accounts", "value", "n",
];

/// The extra variables generators bind.
pub(crate) const EXTRA_VARIABLES: &[&str] = &["value", "n"];

/// The resolved manager of a contract: the one named on it unless that is the person
/// themself, else the nearest department manager up the tree who is not the person. The same
/// rule as [`Org::manager_of`], without allocating.
pub(crate) fn manager_of<'a>(org: &'a Org, person: &Person, contract: &'a Contract) -> &'a str {
    let me = person.external_id.as_str();
    if !contract.manager.is_empty() && contract.manager != me {
        return &contract.manager;
    }
    org.ancestry(&contract.department)
        .map(|d| d.manager.as_str())
        .find(|m| !m.is_empty() && *m != me)
        .unwrap_or("")
}

/// Days from `from` to `to`.
pub(crate) fn days_between(from: Date, to: Date) -> i64 {
    (to - from).num_days()
}

/// `d` plus `n` days, or `None` when that leaves chrono's calendar.
pub(crate) fn add_days(d: Date, n: i64) -> Option<Date> {
    let delta = chrono::Days::new(n.unsigned_abs());
    if n >= 0 {
        d.checked_add_days(delta)
    } else {
        d.checked_sub_days(delta)
    }
}

/// "YYYY-MM-DD" to a date, with a message fit for the person who wrote it.
pub(crate) fn parse_date(s: &str) -> Result<Date, String> {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|e| format!("date({s:?}): not a date in the form YYYY-MM-DD ({e})"))
}

/// Doubles become text in Rust's shortest round-trip form: 1.0 → "1", 0.8 → "0.8".
pub(crate) fn format_double(d: f64) -> String {
    format!("{d}")
}
