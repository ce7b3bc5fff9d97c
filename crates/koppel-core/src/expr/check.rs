//! Compile-time checks of an expression's names: variables, functions, and the fields of
//! koppel's model objects. A typo becomes a [`CompileError`] at the name's position.
//!
//! CEL itself would only notice at run time, and for a condition that rarely runs, maybe never
//! in testing; a config that loads should not hide a misspelt field.

use cel::common::ast::{Expr as Ast, IdedExpr, SourceInfo, operators};

use super::{CompileError, VARIABLES};

/// What koppel knows about the value of a subexpression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Person,
    Name,
    Contract,
    Department,
    Title,
    /// `person.custom`
    Custom,
    /// `person.contracts`
    Contracts,
    /// `accounts`
    Accounts,
    /// `accounts.<target>`
    AccountFields,
    /// Anything else: a plain value, or something only known at run time.
    Other,
}

pub(crate) const PERSON_FIELDS: &[&str] = &[
    "external_id",
    "name",
    "email",
    "phone",
    "custom",
    "excluded",
    "active",
    "contracts",
];
pub(crate) const NAME_FIELDS: &[&str] = &[
    "given",
    "nickname",
    "initials",
    "family_prefix",
    "family",
    "partner_prefix",
    "partner",
    "convention",
];
pub(crate) const CONTRACT_FIELDS: &[&str] = &[
    "id",
    "start",
    "end",
    "active",
    "department",
    "title",
    "location",
    "cost_centre",
    "manager",
    "employment_type",
    "fte",
    "hours_per_week",
    "sequence",
];
pub(crate) const DEPARTMENT_FIELDS: &[&str] = &["code", "name", "parent", "manager"];
pub(crate) const TITLE_FIELDS: &[&str] = &["code", "name"];

/// Functions an expression may call: CEL's standard library, its strings extension, and
/// koppel's own. Operators (`_==_`, `@in`, ...) are not listed.
pub(crate) const FUNCTIONS: &[&str] = &[
    // standard library
    "size",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "bool",
    "dyn",
    "type",
    "duration",
    "timestamp",
    "getDate",
    "getDayOfMonth",
    "getDayOfWeek",
    "getDayOfYear",
    "getFullYear",
    "getHours",
    "getMilliseconds",
    "getMinutes",
    "getMonth",
    "getSeconds",
    "hasValue",
    "value",
    "or",
    "orValue",
    // strings extension
    "charAt",
    "indexOf",
    "lastIndexOf",
    "join",
    "lowerAscii",
    "upperAscii",
    "trim",
    "replace",
    "split",
    "substring",
    "format",
    "reverse",
    // koppel
    "ascii",
    "lower",
    "upper",
    "compact",
    "dn_escape",
    "initials",
    "family_name",
    "family_name_sort",
    "display_name",
    "days_until",
    "days_since",
    "add_days",
    "date",
    "iso",
    "in_department_tree",
];

/// Functions called by a qualified name, `optional.of(x)`.
const QUALIFIED_FUNCTIONS: &[&str] = &[
    "optional.of",
    "optional.none",
    "optional.ofNonZeroValue",
    "strings.quote",
];

/// Identifiers that name types, for `type(x) == string`.
const TYPE_NAMES: &[&str] = &[
    "int",
    "uint",
    "double",
    "string",
    "bool",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
    "dyn",
];

pub(crate) fn fields_of(shape: Shape) -> Option<(&'static str, &'static [&'static str])> {
    match shape {
        Shape::Person => Some(("person", PERSON_FIELDS)),
        Shape::Name => Some(("person.name", NAME_FIELDS)),
        Shape::Contract => Some(("a contract", CONTRACT_FIELDS)),
        Shape::Department => Some(("a department", DEPARTMENT_FIELDS)),
        Shape::Title => Some(("a title", TITLE_FIELDS)),
        _ => None,
    }
}

/// The shape of `shape.field`, for a field known to exist.
pub(crate) fn field_shape(shape: Shape, field: &str) -> Shape {
    match (shape, field) {
        (Shape::Person, "name") => Shape::Name,
        (Shape::Person, "custom") => Shape::Custom,
        (Shape::Person, "contracts") => Shape::Contracts,
        (Shape::Contract, "department") => Shape::Department,
        (Shape::Contract, "title") => Shape::Title,
        (Shape::Accounts, _) => Shape::AccountFields,
        _ => Shape::Other,
    }
}

pub(crate) fn check(expr: &IdedExpr, info: &SourceInfo, source: &str) -> Result<(), CompileError> {
    let mut checker = Checker {
        info,
        source,
        bound: Vec::new(),
    };
    checker.walk(expr).map(|_| ())
}

struct Checker<'e> {
    info: &'e SourceInfo,
    source: &'e str,
    /// Comprehension variables in scope, innermost last, with their shapes.
    bound: Vec<(String, Shape)>,
}

impl Checker<'_> {
    /// The byte offset where node `id` starts.
    fn offset(&self, id: u64) -> usize {
        self.info
            .offset_for(id)
            .map_or(0, |(start, _)| parser_offset(self.source, start as usize))
    }

    /// Where `name` is written for node `id`: a call node starts at its parenthesis, with the
    /// name just before it; a select node at its dot, with the name just after it.
    fn name_offset(&self, id: u64, name: &str) -> usize {
        let start = self.offset(id);
        let before = self.source[..start].trim_end();
        if before.ends_with(name) {
            return before.len() - name.len();
        }
        self.source[start..].find(name).map_or(start, |i| start + i)
    }

    fn error(&self, offset: usize, message: String) -> CompileError {
        CompileError::at(self.source, offset, message)
    }

    fn walk(&mut self, e: &IdedExpr) -> Result<Shape, CompileError> {
        match &e.expr {
            Ast::Unspecified => {
                Err(self.error(self.offset(e.id), "incomplete expression".to_owned()))
            }
            Ast::Literal(_) => Ok(Shape::Other),
            Ast::Ident(name) => self.ident(e.id, name),
            Ast::Select(sel) => {
                let operand = self.walk(&sel.operand)?;
                self.field(e.id, operand, &sel.field)
            }
            Ast::Call(call) => {
                if let Some(target) = &call.target {
                    // `optional.of(x)`: a qualified function name, not a method on a variable.
                    if let Ast::Ident(ns) = &target.expr {
                        let qualified = format!("{ns}.{}", call.func_name);
                        if !self.is_variable(ns)
                            && QUALIFIED_FUNCTIONS.contains(&qualified.as_str())
                        {
                            for a in &call.args {
                                self.walk(a)?;
                            }
                            return Ok(Shape::Other);
                        }
                    }
                    self.walk(target)?;
                    self.function(e.id, &call.func_name, true)?;
                    for a in &call.args {
                        self.walk(a)?;
                    }
                    return Ok(Shape::Other);
                }
                let mut shapes = Vec::with_capacity(call.args.len());
                for a in &call.args {
                    shapes.push(self.walk(a)?);
                }
                let name = call.func_name.as_str();
                match name {
                    operators::INDEX => Ok(match shapes.first() {
                        Some(Shape::Contracts) => Shape::Contract,
                        Some(Shape::Accounts) => Shape::AccountFields,
                        _ => Shape::Other,
                    }),
                    operators::CONDITIONAL => Ok(match (shapes.get(1), shapes.get(2)) {
                        (Some(a), Some(b)) if a == b => *a,
                        _ => Shape::Other,
                    }),
                    _ if is_operator(name) => Ok(Shape::Other),
                    _ => {
                        self.function(e.id, name, false)?;
                        Ok(Shape::Other)
                    }
                }
            }
            Ast::List(list) => {
                for el in &list.elements {
                    self.walk(el)?;
                }
                Ok(Shape::Other)
            }
            Ast::Map(map) => {
                for entry in &map.entries {
                    if let cel::common::ast::EntryExpr::MapEntry(me) = &entry.expr {
                        self.walk(&me.key)?;
                        self.walk(&me.value)?;
                    }
                }
                Ok(Shape::Other)
            }
            Ast::Struct(st) => {
                for entry in &st.entries {
                    if let cel::common::ast::EntryExpr::StructField(f) = &entry.expr {
                        self.walk(&f.value)?;
                    }
                }
                Ok(Shape::Other)
            }
            Ast::Comprehension(c) => {
                let range = self.walk(&c.iter_range)?;
                self.walk(&c.accu_init)?;
                let elem = if range == Shape::Contracts {
                    Shape::Contract
                } else {
                    Shape::Other
                };
                let depth = self.bound.len();
                self.bound.push((c.accu_var.clone(), Shape::Other));
                self.bound.push((c.iter_var.clone(), elem));
                if let Some(v2) = &c.iter_var2 {
                    self.bound.push((v2.clone(), Shape::Other));
                }
                let result = (|| {
                    self.walk(&c.loop_cond)?;
                    self.walk(&c.loop_step)?;
                    self.walk(&c.result)
                })();
                self.bound.truncate(depth);
                result.map(|_| Shape::Other)
            }
        }
    }

    fn is_variable(&self, name: &str) -> bool {
        self.bound.iter().any(|(n, _)| n == name) || VARIABLES.contains(&name)
    }

    fn ident(&self, id: u64, name: &str) -> Result<Shape, CompileError> {
        if let Some((_, shape)) = self.bound.iter().rev().find(|(n, _)| n == name) {
            return Ok(*shape);
        }
        match name {
            "person" => return Ok(Shape::Person),
            "contract" | "primary" => return Ok(Shape::Contract),
            "accounts" => return Ok(Shape::Accounts),
            _ if VARIABLES.contains(&name) || TYPE_NAMES.contains(&name) => {
                return Ok(Shape::Other);
            }
            _ => {}
        }
        let mut known: Vec<&str> = VARIABLES.to_vec();
        known.extend(self.bound.iter().map(|(n, _)| n.as_str()));
        Err(self.error(
            self.offset(id),
            format!(
                "unknown variable '{name}'{}; the variables are {}",
                suggest(name, &known),
                VARIABLES.join(", ")
            ),
        ))
    }

    fn field(&self, id: u64, operand: Shape, field: &str) -> Result<Shape, CompileError> {
        if let Some((what, fields)) = fields_of(operand)
            && !fields.contains(&field)
        {
            return Err(self.error(
                self.name_offset(id, field),
                format!(
                    "{what} has no field '{field}'{}; its fields are {}",
                    suggest(field, fields),
                    fields.join(", ")
                ),
            ));
        }
        Ok(field_shape(operand, field))
    }

    fn function(&self, id: u64, name: &str, method: bool) -> Result<(), CompileError> {
        if FUNCTIONS.contains(&name) {
            return Ok(());
        }
        let kind = if method { "method" } else { "function" };
        Err(self.error(
            self.name_offset(id, name),
            format!("unknown {kind} '{name}'{}", suggest(name, FUNCTIONS)),
        ))
    }
}

fn is_operator(name: &str) -> bool {
    name.starts_with('_')
        || name.starts_with('@')
        || name == operators::LOGICAL_NOT
        || name == operators::NEGATE
}

/// The parser's offsets are byte offsets already; clamp them to the source.
pub(crate) fn parser_offset(source: &str, offset: usize) -> usize {
    offset.min(source.len())
}

/// ", did you mean 'x'?" for the closest candidate within two edits, else "".
fn suggest(name: &str, candidates: &[&str]) -> String {
    candidates
        .iter()
        .map(|c| (edit_distance(name, c), *c))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, c)| format!(" (did you mean '{c}'?)"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
