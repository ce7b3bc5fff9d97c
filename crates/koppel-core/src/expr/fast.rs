//! koppel's own CEL evaluator: the parsed AST compiled into a tree of nodes that read the
//! borrowed model directly, for the subset of CEL that rules and mappings use.
//!
//! Field paths (`contract.department.code`) are resolved while compiling, so evaluating one is
//! a pointer chase, not a series of map lookups; values borrow the model's strings instead of
//! copying them. Anything outside the subset makes [`compile`] return `None`, and the
//! expression runs on the `cel` interpreter instead. Semantics follow that interpreter, errors
//! included (the differential tests in `tests.rs` hold the two together).

use std::borrow::Cow;
use std::cmp::Ordering;

use cel::common::ast::{
    ComprehensionExpr, Expr as Ast, IdedExpr, LiteralValue, SourceInfo, operators,
};

use super::{CompileError, EXTRA_VARIABLES, EvalError, Scope, Shared, Vars};
use crate::model::{Contract, Date};
use crate::names::{self, Transliterator};
use crate::value::AttrValue;

/// Comprehensions nested deeper than this run on the interpreter.
const MAX_LOOPS: usize = 4;

// ---------------------------------------------------------------------------------------
// Values

/// A value during evaluation. Strings borrow from the model or the expression where they can.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum V<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(Cow<'a, str>),
    Date(Date),
    List(Vec<V<'a>>),
}

impl<'a> V<'a> {
    fn type_name(&self) -> &'static str {
        match self {
            V::Null => "null_type",
            V::Bool(_) => "bool",
            V::Int(_) => "int",
            V::Double(_) => "double",
            V::Str(_) => "string",
            V::Date(_) => "google.protobuf.Timestamp",
            V::List(_) => "list",
        }
    }

    fn describe(&self) -> String {
        match self {
            V::Null => "null".to_owned(),
            V::Bool(b) => format!("bool {b}"),
            V::Int(i) => format!("int {i}"),
            V::Double(d) => format!("double {d}"),
            V::Str(s) => format!("string {s:?}"),
            V::Date(d) => format!("date {d}"),
            V::List(l) => format!("list of {} values", l.len()),
        }
    }

    pub(crate) fn into_attr(self) -> Result<AttrValue, EvalError> {
        Ok(match self {
            V::Null => AttrValue::Null,
            V::Bool(b) => AttrValue::Bool(b),
            V::Int(i) => AttrValue::Int(i),
            V::Double(d) => AttrValue::Text(super::format_double(d)),
            V::Str(s) => AttrValue::Text(s.into_owned()),
            V::Date(d) => AttrValue::Text(d.to_string()),
            V::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        V::Str(s) => out.push(s.into_owned()),
                        V::Int(i) => out.push(i.to_string()),
                        V::Bool(b) => out.push(b.to_string()),
                        V::Double(d) => out.push(super::format_double(d)),
                        V::Date(d) => out.push(d.to_string()),
                        other => {
                            return Err(EvalError::new(format!(
                                "a list an attribute holds may only contain strings, numbers, bools and dates, not {}",
                                other.describe()
                            )));
                        }
                    }
                }
                AttrValue::List(out)
            }
        })
    }

    pub(crate) fn into_string(self) -> Result<String, EvalError> {
        match self {
            V::Str(s) => Ok(s.into_owned()),
            V::Null => Ok(String::new()),
            V::Bool(b) => Ok(b.to_string()),
            V::Int(i) => Ok(i.to_string()),
            V::Double(d) => Ok(super::format_double(d)),
            V::Date(d) => Ok(d.to_string()),
            V::List(l) => Err(EvalError::new(format!(
                "expected a string, got a list of {} values",
                l.len()
            ))),
        }
    }
}

fn attr<'a>(v: &'a AttrValue) -> V<'a> {
    match v {
        AttrValue::Null => V::Null,
        AttrValue::Bool(b) => V::Bool(*b),
        AttrValue::Int(i) => V::Int(*i),
        AttrValue::Text(s) => V::Str(Cow::Borrowed(s)),
        AttrValue::List(l) => V::List(l.iter().map(|s| V::Str(Cow::Borrowed(s))).collect()),
    }
}

/// A scalar borrowed from the model or a constant: what comparisons work on, `Copy` so that
/// the hot paths carry no drop glue.
#[derive(Debug, Clone, Copy)]
pub(crate) enum S<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(&'a str),
    Date(Date),
}

impl<'a> From<S<'a>> for V<'a> {
    #[inline]
    fn from(s: S<'a>) -> Self {
        match s {
            S::Null => V::Null,
            S::Bool(b) => V::Bool(b),
            S::Int(i) => V::Int(i),
            S::Double(d) => V::Double(d),
            S::Str(s) => V::Str(Cow::Borrowed(s)),
            S::Date(d) => V::Date(d),
        }
    }
}

impl V<'_> {
    #[inline]
    fn scalar(&self) -> Option<S<'_>> {
        Some(match self {
            V::Null => S::Null,
            V::Bool(b) => S::Bool(*b),
            V::Int(i) => S::Int(*i),
            V::Double(d) => S::Double(*d),
            V::Str(s) => S::Str(s),
            V::Date(d) => S::Date(*d),
            V::List(_) => return None,
        })
    }
}

/// CEL equality: numbers compare across int and double, other types only with their own.
fn equal(a: &V<'_>, b: &V<'_>) -> bool {
    match (a.scalar(), b.scalar()) {
        (Some(x), Some(y)) => equal_s(x, y),
        _ => match (a, b) {
            (V::List(x), V::List(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(a, b)| equal(a, b))
            }
            _ => false,
        },
    }
}

#[inline]
fn equal_s(a: S<'_>, b: S<'_>) -> bool {
    match (a, b) {
        (S::Str(x), S::Str(y)) => x == y,
        (S::Null, S::Null) => true,
        (S::Bool(x), S::Bool(y)) => x == y,
        (S::Int(x), S::Int(y)) => x == y,
        (S::Date(x), S::Date(y)) => x == y,
        (S::Int(_) | S::Double(_), S::Int(_) | S::Double(_)) => {
            compare_s(a, b) == Some(Ordering::Equal)
        }
        _ => false,
    }
}

fn no_overload(function: &str, args: &[&V<'_>]) -> EvalError {
    let types: Vec<&str> = args.iter().map(|a| a.type_name()).collect();
    EvalError::new(format!(
        "found no matching overload for '{function}' applied to '({})'",
        types.join(", ")
    ))
}

/// CEL ordering for `<` and friends.
fn compare(a: &V<'_>, b: &V<'_>, op: &str) -> Result<Ordering, EvalError> {
    match (a.scalar(), b.scalar()) {
        (Some(x), Some(y)) => compare_s(x, y),
        _ => None,
    }
    .ok_or_else(|| no_overload(op, &[a, b]))
}

#[inline]
fn compare_s(a: S<'_>, b: S<'_>) -> Option<Ordering> {
    match (a, b) {
        (S::Int(x), S::Int(y)) => Some(x.cmp(&y)),
        (S::Int(x), S::Double(y)) => (x as f64).partial_cmp(&y),
        (S::Double(x), S::Int(y)) => x.partial_cmp(&(y as f64)),
        (S::Double(x), S::Double(y)) => x.partial_cmp(&y),
        (S::Str(x), S::Str(y)) => Some(x.cmp(y)),
        (S::Bool(x), S::Bool(y)) => Some(x.cmp(&y)),
        (S::Date(x), S::Date(y)) => Some(x.cmp(&y)),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Nodes

/// A constant, owned by the compiled expression.
#[derive(Debug, Clone)]
pub(crate) enum Const {
    Null,
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(Box<str>),
    Date(Date),
}

impl Const {
    #[inline]
    fn s(&self) -> S<'_> {
        match self {
            Const::Null => S::Null,
            Const::Bool(b) => S::Bool(*b),
            Const::Int(i) => S::Int(*i),
            Const::Double(d) => S::Double(*d),
            Const::Str(s) => S::Str(s),
            Const::Date(d) => S::Date(*d),
        }
    }

    fn v(&self) -> V<'_> {
        match self {
            Const::Null => V::Null,
            Const::Bool(b) => V::Bool(*b),
            Const::Int(i) => V::Int(*i),
            Const::Double(d) => V::Double(*d),
            Const::Str(s) => V::Str(Cow::Borrowed(s)),
            Const::Date(d) => V::Date(*d),
        }
    }

    fn ty(&self) -> Ty {
        match self {
            Const::Null => Ty::Null,
            Const::Bool(_) => Ty::Bool,
            Const::Int(_) => Ty::Int,
            Const::Double(_) => Ty::Double,
            Const::Str(_) => Ty::Str,
            Const::Date(_) => Ty::Date,
        }
    }
}

/// What the compiler knows of a value's type: enough to decline what the interpreter does
/// differently (date arithmetic yields durations, `string()` of a date or double formats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Null,
    Bool,
    Int,
    Double,
    Str,
    Date,
    List,
    /// From stored account data or generator variables: null, bool, int, string or list.
    Attr,
    /// Anything, dates and doubles included.
    Any,
}

impl Ty {
    fn may_be_date(self) -> bool {
        matches!(self, Ty::Date | Ty::Any)
    }
    fn may_be_double(self) -> bool {
        matches!(self, Ty::Double | Ty::Any)
    }
}

/// Where a contract comes from.
#[derive(Debug)]
pub(crate) enum ContractRef {
    Scope,
    Primary,
    /// A comprehension's variable over `person.contracts`.
    Loop(usize),
    /// `person.contracts[i]`
    Index(Box<Node>),
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum PersonField {
    ExternalId,
    Email,
    Phone,
    Excluded,
    Active,
    Given,
    Nickname,
    Initials,
    FamilyPrefix,
    Family,
    PartnerPrefix,
    Partner,
    Convention,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum ContractField {
    Id,
    Start,
    End,
    Active,
    DepartmentCode,
    DepartmentName,
    DepartmentParent,
    DepartmentManager,
    TitleCode,
    TitleName,
    Location,
    CostCentre,
    Manager,
    EmploymentType,
    Fte,
    HoursPerWeek,
    Sequence,
}

/// A model field read directly: what comparisons with constants fuse with.
#[derive(Debug)]
pub(crate) enum Field {
    Person(PersonField),
    Contract(ContractRef, ContractField),
    Custom(Box<str>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Cmp(Cmp),
}

#[derive(Debug)]
pub(crate) struct FieldOp {
    field: Field,
    op: Op,
    value: Const,
}

impl Field {
    /// The field of `node`, if it is a plain field read.
    fn of(node: Node) -> Result<Field, Node> {
        match node {
            Node::Person(f) => Ok(Field::Person(f)),
            Node::Contract(src, f) => Ok(Field::Contract(src, f)),
            Node::Custom(Key::Const(k)) => Ok(Field::Custom(k)),
            other => Err(other),
        }
    }

    #[inline]
    fn get<'a>(&'a self, cx: &Cx<'a>) -> Result<S<'a>, EvalError> {
        match self {
            Field::Person(f) => Ok(person_field(*f, cx)),
            Field::Contract(src, f) => Ok(contract_field(src.get(cx)?, *f, cx)),
            Field::Custom(k) => match cx.vars.person.custom.get(k.as_ref()) {
                Some(v) => Ok(S::Str(v)),
                None => Err(missing_custom(k)),
            },
        }
    }
}

/// A map key: known when compiling, or computed.
#[derive(Debug)]
pub(crate) enum Key {
    Const(Box<str>),
    Dyn(Box<Node>),
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmp {
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum StrTest {
    StartsWith,
    EndsWith,
    Contains,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum StrFn {
    Lower,
    Upper,
    Trim,
    Ascii,
    Compact,
    DnEscape,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum NameFn {
    Initials,
    FamilyName,
    FamilyNameSort,
    DisplayName,
}

#[derive(Debug)]
pub(crate) enum Node {
    Const(Const),
    Now,
    /// A generator variable, `value` or `n`.
    Extra(&'static str),
    Person(PersonField),
    Contract(ContractRef, ContractField),
    /// `has(contract.x)`: true, but an error when there is no contract.
    ContractExists(ContractRef),
    /// `contract == null`
    ContractIsNull(ContractRef),
    NameFn(NameFn),
    Custom(Key),
    CustomHas(Key),
    CustomContains(Box<Node>),
    CustomSize,
    ContractsSize,
    /// `person.contracts.exists(c, ...)` (`all: false`) or `.all(c, ...)`.
    Quantifier {
        all: bool,
        slot: usize,
        body: Box<Node>,
    },
    Account(Key, Key),
    AccountHas(Key),
    AccountFieldHas(Key, Key),
    AccountsContains(Box<Node>),
    AccountFieldsContains(Key, Box<Node>),
    AccountsSize,
    AccountFieldsSize(Key),
    Not(Box<Node>),
    And(Box<(Node, Node)>),
    Or(Box<(Node, Node)>),
    Cond(Box<(Node, Node, Node)>),
    Eq(Box<(Node, Node)>),
    Ne(Box<(Node, Node)>),
    Cmp(Cmp, Box<(Node, Node)>),
    In(Box<(Node, Node)>),
    /// `x in ["a", "b"]`, the list known when compiling.
    InConsts(Box<Node>, Box<[Const]>),
    /// `field <op> constant`, the commonest condition, without evaluating two subnodes.
    FieldOp(Box<FieldOp>),
    /// `field in ["a", "b"]`
    FieldIn(Box<(Field, Box<[Const]>)>),
    /// `expression <op> constant`
    ValOp(Box<(Node, Op, Const)>),
    Arith(Arith, Box<(Node, Node)>),
    Neg(Box<Node>),
    List(Box<[Node]>),
    Size(Box<Node>),
    StrTest(StrTest, Box<(Node, Node)>),
    Matches(Box<Node>, Box<regex::Regex>),
    /// `a + b + ...` of strings, built in one buffer.
    Concat(Box<[Node]>),
    StrFn(StrFn, Box<Node>),
    ToString(Box<Node>),
    ToInt(Box<Node>),
    DaysUntil(Box<Node>),
    DaysSince(Box<Node>),
    AddDays(Box<(Node, Node)>),
    Iso(Box<Node>),
    Date(Box<Node>),
    /// `in_department_tree(root)` on the contract in scope, else the primary one.
    InTreeScope(Box<Node>),
    InTree(Box<(Node, Node)>),
}

// ---------------------------------------------------------------------------------------
// Compiling

/// A subexpression that denotes a model object rather than a value.
#[derive(Debug)]
enum Obj {
    Person,
    Name,
    Contract(ContractRef),
    Department(ContractRef),
    Title(ContractRef),
    Custom,
    Contracts,
    Accounts,
    AccountFields(Key),
}

enum C {
    Val(Node, Ty),
    Obj(Obj),
}

enum Fail {
    /// Outside the subset: the interpreter runs the expression.
    Unsupported,
    /// Wrong whichever evaluator runs it.
    Error(CompileError),
}

type R<T> = Result<T, Fail>;

fn unsupported<T>() -> R<T> {
    Err(Fail::Unsupported)
}

/// Compiles `expr` for the fast evaluator: `Ok(None)` when it uses something outside the
/// subset, an error for a constant that can never work (`date("2026-13-01")`, a bad regex).
pub(crate) fn compile(
    expr: &IdedExpr,
    info: &SourceInfo,
    source: &str,
) -> Result<Option<Node>, CompileError> {
    let mut c = Compiler {
        source,
        info,
        loops: Vec::new(),
    };
    match c.value(expr) {
        Ok((node, _)) => Ok(Some(node)),
        Err(Fail::Unsupported) => Ok(None),
        Err(Fail::Error(e)) => Err(e),
    }
}

struct Compiler<'e> {
    source: &'e str,
    info: &'e SourceInfo,
    /// Comprehension variables over contracts, innermost last; the index is the slot.
    loops: Vec<String>,
}

fn b<T>(t: T) -> Box<T> {
    Box::new(t)
}

/// `field <op> constant` (or `constant <op> field`) as one node; the operands back when
/// they are not of that shape.
fn fuse(l: Node, op: Op, r: Node) -> Result<Node, (Node, Node)> {
    let mirrored = |op: Op| match op {
        Op::Cmp(Cmp::Lt) => Op::Cmp(Cmp::Gt),
        Op::Cmp(Cmp::Le) => Op::Cmp(Cmp::Ge),
        Op::Cmp(Cmp::Gt) => Op::Cmp(Cmp::Lt),
        Op::Cmp(Cmp::Ge) => Op::Cmp(Cmp::Le),
        other => other,
    };
    match (l, r) {
        (Node::Const(x), Node::Const(y)) => Err((Node::Const(x), Node::Const(y))),
        (l, Node::Const(value)) => match Field::of(l) {
            Ok(field) => Ok(Node::FieldOp(b(FieldOp { field, op, value }))),
            Err(l) => Ok(Node::ValOp(b((l, op, value)))),
        },
        (Node::Const(value), r) => match Field::of(r) {
            Ok(field) => Ok(Node::FieldOp(b(FieldOp {
                field,
                op: mirrored(op),
                value,
            }))),
            Err(r) => Ok(Node::ValOp(b((r, mirrored(op), value)))),
        },
        (l, r) => Err((l, r)),
    }
}

impl Compiler<'_> {
    /// An error at node `id`.
    fn error(&self, id: u64, message: String) -> Fail {
        let offset = self.info.offset_for(id).map_or(0, |(start, _)| {
            super::check::parser_offset(self.source, start as usize)
        });
        Fail::Error(CompileError::at(self.source, offset, message))
    }

    fn value(&mut self, e: &IdedExpr) -> R<(Node, Ty)> {
        match self.any(e)? {
            C::Val(n, t) => Ok((n, t)),
            C::Obj(_) => unsupported(),
        }
    }

    fn key(&mut self, e: &IdedExpr) -> R<Key> {
        if let Ast::Literal(LiteralValue::String(s)) = &e.expr {
            return Ok(Key::Const(s.inner().into()));
        }
        Ok(Key::Dyn(b(self.value(e)?.0)))
    }

    fn any(&mut self, e: &IdedExpr) -> R<C> {
        match &e.expr {
            Ast::Literal(lit) => {
                let c = match lit {
                    LiteralValue::Boolean(v) => Const::Bool(*v.inner()),
                    LiteralValue::Int(v) => Const::Int(*v.inner()),
                    LiteralValue::Double(v) => Const::Double(*v.inner()),
                    LiteralValue::String(v) => Const::Str(v.inner().into()),
                    LiteralValue::Null => Const::Null,
                    LiteralValue::UInt(_) | LiteralValue::Bytes(_) => return unsupported(),
                };
                let t = c.ty();
                Ok(C::Val(Node::Const(c), t))
            }
            Ast::Ident(name) => self.ident(name),
            Ast::Select(sel) => {
                let C::Obj(obj) = self.any(&sel.operand)? else {
                    return unsupported();
                };
                if sel.test {
                    self.has(obj, &sel.field)
                } else {
                    self.select(obj, Key::Const(sel.field.as_str().into()), &sel.field)
                }
            }
            Ast::Call(call) => {
                if let Some(target) = &call.target {
                    return self.method(target, &call.func_name, &call.args);
                }
                self.call(&call.func_name, &call.args)
            }
            Ast::List(list) => {
                if !list.optional_indices.is_empty() {
                    return unsupported();
                }
                let mut items = Vec::with_capacity(list.elements.len());
                for el in &list.elements {
                    items.push(self.value(el)?.0);
                }
                Ok(C::Val(Node::List(items.into()), Ty::List))
            }
            Ast::Comprehension(comp) => self.comprehension(comp),
            Ast::Map(_) | Ast::Struct(_) | Ast::Unspecified => unsupported(),
        }
    }

    fn ident(&mut self, name: &str) -> R<C> {
        if let Some(slot) = self.loops.iter().rposition(|n| n == name) {
            return Ok(C::Obj(Obj::Contract(ContractRef::Loop(slot))));
        }
        Ok(match name {
            "person" => C::Obj(Obj::Person),
            "contract" => C::Obj(Obj::Contract(ContractRef::Scope)),
            "primary" => C::Obj(Obj::Contract(ContractRef::Primary)),
            "accounts" => C::Obj(Obj::Accounts),
            "now" => C::Val(Node::Now, Ty::Date),
            _ => match EXTRA_VARIABLES.iter().find(|v| **v == name) {
                Some(v) => C::Val(Node::Extra(v), Ty::Attr),
                None => return unsupported(),
            },
        })
    }

    /// `obj.field`, or `obj[key]`.
    fn select(&mut self, obj: Obj, key: Key, field: &str) -> R<C> {
        let str_field = |n: Node| Ok(C::Val(n, Ty::Str));
        match obj {
            Obj::Person => {
                use PersonField as P;
                let f = match field {
                    "external_id" => P::ExternalId,
                    "email" => P::Email,
                    "phone" => P::Phone,
                    "excluded" => return Ok(C::Val(Node::Person(P::Excluded), Ty::Bool)),
                    "active" => return Ok(C::Val(Node::Person(P::Active), Ty::Bool)),
                    "name" => return Ok(C::Obj(Obj::Name)),
                    "custom" => return Ok(C::Obj(Obj::Custom)),
                    "contracts" => return Ok(C::Obj(Obj::Contracts)),
                    _ => return unsupported(),
                };
                str_field(Node::Person(f))
            }
            Obj::Name => {
                use PersonField as P;
                let f = match field {
                    "given" => P::Given,
                    "nickname" => P::Nickname,
                    "initials" => P::Initials,
                    "family_prefix" => P::FamilyPrefix,
                    "family" => P::Family,
                    "partner_prefix" => P::PartnerPrefix,
                    "partner" => P::Partner,
                    "convention" => P::Convention,
                    _ => return unsupported(),
                };
                str_field(Node::Person(f))
            }
            Obj::Contract(src) => {
                use ContractField as F;
                let (f, ty) = match field {
                    "id" => (F::Id, Ty::Str),
                    "start" => (F::Start, Ty::Date),
                    "end" => (F::End, Ty::Any),
                    "active" => (F::Active, Ty::Bool),
                    "department" => return Ok(C::Obj(Obj::Department(src))),
                    "title" => return Ok(C::Obj(Obj::Title(src))),
                    "location" => (F::Location, Ty::Str),
                    "cost_centre" => (F::CostCentre, Ty::Str),
                    "manager" => (F::Manager, Ty::Str),
                    "employment_type" => (F::EmploymentType, Ty::Str),
                    "fte" => (F::Fte, Ty::Double),
                    "hours_per_week" => (F::HoursPerWeek, Ty::Double),
                    "sequence" => (F::Sequence, Ty::Int),
                    _ => return unsupported(),
                };
                Ok(C::Val(Node::Contract(src, f), ty))
            }
            Obj::Department(src) => {
                use ContractField as F;
                let f = match field {
                    "code" => F::DepartmentCode,
                    "name" => F::DepartmentName,
                    "parent" => F::DepartmentParent,
                    "manager" => F::DepartmentManager,
                    _ => return unsupported(),
                };
                str_field(Node::Contract(src, f))
            }
            Obj::Title(src) => {
                use ContractField as F;
                let f = match field {
                    "code" => F::TitleCode,
                    "name" => F::TitleName,
                    _ => return unsupported(),
                };
                str_field(Node::Contract(src, f))
            }
            Obj::Custom => str_field(Node::Custom(key)),
            Obj::Accounts => Ok(C::Obj(Obj::AccountFields(key))),
            Obj::AccountFields(target) => Ok(C::Val(Node::Account(target, key), Ty::Attr)),
            Obj::Contracts => unsupported(),
        }
    }

    /// `has(obj.field)`
    fn has(&mut self, obj: Obj, field: &str) -> R<C> {
        let key = || Key::Const(field.into());
        let node = match obj {
            // The checker rejected unknown fields: a known field is always there.
            Obj::Person | Obj::Name => Node::Const(Const::Bool(true)),
            Obj::Contract(src) | Obj::Department(src) | Obj::Title(src) => {
                Node::ContractExists(src)
            }
            Obj::Custom => Node::CustomHas(key()),
            Obj::Accounts => Node::AccountHas(key()),
            Obj::AccountFields(target) => Node::AccountFieldHas(target, key()),
            Obj::Contracts => return unsupported(),
        };
        Ok(C::Val(node, Ty::Bool))
    }

    fn args2(&mut self, args: &[IdedExpr]) -> R<((Node, Ty), (Node, Ty))> {
        let [a, b] = args else {
            return unsupported();
        };
        Ok((self.value(a)?, self.value(b)?))
    }

    fn call(&mut self, name: &str, args: &[IdedExpr]) -> R<C> {
        use Node as N;
        let bool_node = |n: Node| Ok(C::Val(n, Ty::Bool));
        match (name, args) {
            (operators::LOGICAL_AND, [_, _]) => {
                let ((l, _), (r, _)) = self.args2(args)?;
                bool_node(N::And(b((l, r))))
            }
            (operators::LOGICAL_OR, [_, _]) => {
                let ((l, _), (r, _)) = self.args2(args)?;
                bool_node(N::Or(b((l, r))))
            }
            (operators::LOGICAL_NOT, [a]) => bool_node(N::Not(b(self.value(a)?.0))),
            (operators::CONDITIONAL, [c, t, f]) => {
                let (c, _) = self.value(c)?;
                let (t, tt) = self.value(t)?;
                let (f, ft) = self.value(f)?;
                let ty = if tt == ft { tt } else { Ty::Any };
                Ok(C::Val(N::Cond(b((c, t, f))), ty))
            }
            (operators::EQUALS | operators::NOT_EQUALS, [l, r]) => {
                let eq = name == operators::EQUALS;
                let l = self.any(l)?;
                let r = self.any(r)?;
                let node = match (l, r) {
                    (C::Val(l, _), C::Val(r, _)) => {
                        let op = if eq { Op::Eq } else { Op::Ne };
                        match fuse(l, op, r) {
                            Ok(fused) => fused,
                            Err((l, r)) if eq => N::Eq(b((l, r))),
                            Err((l, r)) => N::Ne(b((l, r))),
                        }
                    }
                    (C::Obj(Obj::Contract(src)), C::Val(N::Const(Const::Null), _))
                    | (C::Val(N::Const(Const::Null), _), C::Obj(Obj::Contract(src))) => {
                        let is_null = N::ContractIsNull(src);
                        if eq { is_null } else { N::Not(b(is_null)) }
                    }
                    _ => return unsupported(),
                };
                bool_node(node)
            }
            (
                operators::LESS
                | operators::LESS_EQUALS
                | operators::GREATER
                | operators::GREATER_EQUALS,
                [_, _],
            ) => {
                let op = match name {
                    operators::LESS => Cmp::Lt,
                    operators::LESS_EQUALS => Cmp::Le,
                    operators::GREATER => Cmp::Gt,
                    _ => Cmp::Ge,
                };
                let ((l, _), (r, _)) = self.args2(args)?;
                match fuse(l, Op::Cmp(op), r) {
                    Ok(fused) => bool_node(fused),
                    Err((l, r)) => bool_node(N::Cmp(op, b((l, r)))),
                }
            }
            (operators::IN, [l, r]) => {
                let (l, _) = self.value(l)?;
                if let Ast::List(list) = &r.expr {
                    let consts: Option<Vec<Const>> = list
                        .elements
                        .iter()
                        .map(|el| match &el.expr {
                            Ast::Literal(LiteralValue::String(s)) => {
                                Some(Const::Str(s.inner().into()))
                            }
                            Ast::Literal(LiteralValue::Int(i)) => Some(Const::Int(*i.inner())),
                            Ast::Literal(LiteralValue::Boolean(v)) => Some(Const::Bool(*v.inner())),
                            Ast::Literal(LiteralValue::Double(v)) => {
                                Some(Const::Double(*v.inner()))
                            }
                            Ast::Literal(LiteralValue::Null) => Some(Const::Null),
                            _ => None,
                        })
                        .collect();
                    if let Some(consts) = consts.filter(|_| list.optional_indices.is_empty()) {
                        return bool_node(match Field::of(l) {
                            Ok(field) => N::FieldIn(b((field, consts.into()))),
                            Err(l) => N::InConsts(b(l), consts.into()),
                        });
                    }
                }
                let node = match self.any(r)? {
                    C::Val(r, _) => N::In(b((l, r))),
                    C::Obj(Obj::Custom) => N::CustomContains(b(l)),
                    C::Obj(Obj::Accounts) => N::AccountsContains(b(l)),
                    C::Obj(Obj::AccountFields(k)) => N::AccountFieldsContains(k, b(l)),
                    C::Obj(_) => return unsupported(),
                };
                bool_node(node)
            }
            (
                operators::ADD
                | operators::SUBSTRACT
                | operators::MULTIPLY
                | operators::DIVIDE
                | operators::MODULO,
                [_, _],
            ) => {
                let op = match name {
                    operators::ADD => Arith::Add,
                    operators::SUBSTRACT => Arith::Sub,
                    operators::MULTIPLY => Arith::Mul,
                    operators::DIVIDE => Arith::Div,
                    _ => Arith::Mod,
                };
                let ((l, lt), (r, rt)) = self.args2(args)?;
                // A date minus a date is a duration, which only the interpreter has.
                if matches!(op, Arith::Sub) && lt.may_be_date() && rt.may_be_date() {
                    return unsupported();
                }
                // Strings concatenate into one buffer: flatten `a + b + c`.
                if matches!(op, Arith::Add) && lt == Ty::Str && rt == Ty::Str {
                    let mut parts = Vec::new();
                    for n in [l, r] {
                        match n {
                            N::Concat(ps) => parts.extend(ps.into_vec()),
                            n => parts.push(n),
                        }
                    }
                    return Ok(C::Val(N::Concat(parts.into()), Ty::Str));
                }
                let ty = match (lt, rt) {
                    (Ty::Int, Ty::Int) => Ty::Int,
                    (Ty::Double, Ty::Double) => Ty::Double,
                    (Ty::Str, Ty::Str) => Ty::Str,
                    (Ty::List, Ty::List) => Ty::List,
                    _ => Ty::Any,
                };
                Ok(C::Val(N::Arith(op, b((l, r))), ty))
            }
            (operators::NEGATE, [a]) => {
                let (a, t) = self.value(a)?;
                Ok(C::Val(N::Neg(b(a)), t))
            }
            (operators::INDEX, [target, index]) => {
                let C::Obj(obj) = self.any(target)? else {
                    return unsupported();
                };
                match obj {
                    Obj::Contracts => {
                        let (i, t) = self.value(index)?;
                        if t != Ty::Int {
                            return unsupported();
                        }
                        Ok(C::Obj(Obj::Contract(ContractRef::Index(b(i)))))
                    }
                    Obj::Custom | Obj::Accounts | Obj::AccountFields(_) => {
                        let key = self.key(index)?;
                        self.select(obj, key, "")
                    }
                    _ => unsupported(),
                }
            }
            _ => self.function(name, None, args),
        }
    }

    fn method(&mut self, target: &IdedExpr, name: &str, args: &[IdedExpr]) -> R<C> {
        match name {
            "startsWith" | "endsWith" | "contains" => {
                let [arg] = args else {
                    return unsupported();
                };
                let test = match name {
                    "startsWith" => StrTest::StartsWith,
                    "endsWith" => StrTest::EndsWith,
                    _ => StrTest::Contains,
                };
                let (t, _) = self.value(target)?;
                let (a, _) = self.value(arg)?;
                Ok(C::Val(Node::StrTest(test, b((t, a))), Ty::Bool))
            }
            "size" | "matches" | "lower" | "upper" | "trim" | "ascii" | "compact" | "dn_escape" => {
                self.function(name, Some(target), args)
            }
            _ => unsupported(),
        }
    }

    /// A function call, `f(args)` or, with `target`, `target.f(args)`.
    fn function(&mut self, name: &str, target: Option<&IdedExpr>, args: &[IdedExpr]) -> R<C> {
        use Node as N;
        let all: Vec<&IdedExpr> = target.into_iter().chain(args).collect();
        let one = |c: &mut Self| -> R<(Node, Ty)> {
            match all.as_slice() {
                [a] => c.value(a),
                _ => unsupported(),
            }
        };
        match name {
            "size" => {
                let [a] = all.as_slice() else {
                    return unsupported();
                };
                let node = match self.any(a)? {
                    C::Val(n, _) => N::Size(b(n)),
                    C::Obj(Obj::Custom) => N::CustomSize,
                    C::Obj(Obj::Contracts) => N::ContractsSize,
                    C::Obj(Obj::Accounts) => N::AccountsSize,
                    C::Obj(Obj::AccountFields(k)) => N::AccountFieldsSize(k),
                    C::Obj(_) => return unsupported(),
                };
                Ok(C::Val(node, Ty::Int))
            }
            "matches" => {
                let [s, re] = all.as_slice() else {
                    return unsupported();
                };
                let Ast::Literal(LiteralValue::String(pattern)) = &re.expr else {
                    return unsupported();
                };
                let regex = regex::Regex::new(pattern.inner()).map_err(|e| {
                    self.error(
                        re.id,
                        format!(
                            "matches(): {:?} is not a valid regular expression: {e}",
                            pattern.inner()
                        ),
                    )
                })?;
                let (s, _) = self.value(s)?;
                Ok(C::Val(N::Matches(b(s), b(regex)), Ty::Bool))
            }
            "lower" | "upper" | "trim" | "ascii" | "compact" | "dn_escape" => {
                let f = match name {
                    "lower" => StrFn::Lower,
                    "upper" => StrFn::Upper,
                    "trim" => StrFn::Trim,
                    "ascii" => StrFn::Ascii,
                    "dn_escape" => StrFn::DnEscape,
                    _ => StrFn::Compact,
                };
                let (a, _) = one(self)?;
                Ok(C::Val(N::StrFn(f, b(a)), Ty::Str))
            }
            _ if target.is_some() => unsupported(),
            "string" => {
                let (a, t) = one(self)?;
                if t.may_be_date() || t.may_be_double() {
                    return unsupported();
                }
                Ok(C::Val(N::ToString(b(a)), Ty::Str))
            }
            "int" => {
                let (a, t) = one(self)?;
                if !matches!(t, Ty::Int | Ty::Str) {
                    return unsupported();
                }
                Ok(C::Val(N::ToInt(b(a)), Ty::Int))
            }
            "initials" | "family_name" | "family_name_sort" | "display_name" => {
                let [a] = all.as_slice() else {
                    return unsupported();
                };
                let C::Obj(Obj::Person) = self.any(a)? else {
                    return unsupported();
                };
                let f = match name {
                    "initials" => NameFn::Initials,
                    "family_name" => NameFn::FamilyName,
                    "family_name_sort" => NameFn::FamilyNameSort,
                    _ => NameFn::DisplayName,
                };
                Ok(C::Val(N::NameFn(f), Ty::Str))
            }
            "days_until" | "days_since" => {
                let (a, _) = one(self)?;
                let node = if name == "days_until" {
                    N::DaysUntil(b(a))
                } else {
                    N::DaysSince(b(a))
                };
                Ok(C::Val(node, Ty::Int))
            }
            "add_days" => {
                let ((d, _), (n, _)) = self.args2(args)?;
                Ok(C::Val(N::AddDays(b((d, n))), Ty::Date))
            }
            "iso" => {
                let (a, _) = one(self)?;
                Ok(C::Val(N::Iso(b(a)), Ty::Str))
            }
            "date" => {
                let [a] = args else {
                    return unsupported();
                };
                if let Ast::Literal(LiteralValue::String(s)) = &a.expr {
                    let d = super::parse_date(s.inner()).map_err(|m| self.error(a.id, m))?;
                    return Ok(C::Val(N::Const(Const::Date(d)), Ty::Date));
                }
                let (a, _) = self.value(a)?;
                Ok(C::Val(N::Date(b(a)), Ty::Date))
            }
            "in_department_tree" => match args {
                [root] => Ok(C::Val(N::InTreeScope(b(self.value(root)?.0)), Ty::Bool)),
                [_, _] => {
                    let ((code, _), (root, _)) = self.args2(args)?;
                    Ok(C::Val(N::InTree(b((code, root))), Ty::Bool))
                }
                _ => unsupported(),
            },
            _ => unsupported(),
        }
    }

    /// `person.contracts.exists(c, p)` and `.all(c, p)`, as the standard macros expand them.
    fn comprehension(&mut self, comp: &ComprehensionExpr) -> R<C> {
        if comp.iter_var2.is_some() || self.loops.len() >= MAX_LOOPS {
            return unsupported();
        }
        let all = match &comp.accu_init.expr {
            Ast::Literal(LiteralValue::Boolean(v)) => *v.inner(),
            _ => return unsupported(),
        };
        let is_accu = |e: &IdedExpr| matches!(&e.expr, Ast::Ident(n) if *n == comp.accu_var);
        if !is_accu(&comp.result) {
            return unsupported();
        }
        let Ast::Call(step) = &comp.loop_step.expr else {
            return unsupported();
        };
        let want = if all {
            operators::LOGICAL_AND
        } else {
            operators::LOGICAL_OR
        };
        let (true, None, [accu, body]) =
            (step.func_name == want, &step.target, step.args.as_slice())
        else {
            return unsupported();
        };
        if !is_accu(accu) || !self.loop_cond_matches(comp, all) {
            return unsupported();
        }
        let C::Obj(Obj::Contracts) = self.any(&comp.iter_range)? else {
            return unsupported();
        };
        let slot = self.loops.len();
        self.loops.push(comp.iter_var.clone());
        let body = self.value(body);
        self.loops.pop();
        let (body, _) = body?;
        Ok(C::Val(
            Node::Quantifier {
                all,
                slot,
                body: b(body),
            },
            Ty::Bool,
        ))
    }

    /// `@not_strictly_false(@result)` for `all`, `@not_strictly_false(!@result)` for `exists`.
    fn loop_cond_matches(&self, comp: &ComprehensionExpr, all: bool) -> bool {
        let Ast::Call(cond) = &comp.loop_cond.expr else {
            return false;
        };
        if cond.func_name != operators::NOT_STRICTLY_FALSE || cond.args.len() != 1 {
            return false;
        }
        let is_accu = |e: &IdedExpr| matches!(&e.expr, Ast::Ident(n) if *n == comp.accu_var);
        let arg = &cond.args[0];
        if all {
            is_accu(arg)
        } else {
            matches!(&arg.expr, Ast::Call(not) if not.func_name == operators::LOGICAL_NOT && not.args.len() == 1 && is_accu(&not.args[0]))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Evaluating

/// What one evaluation reads.
#[derive(Clone, Copy)]
struct Cx<'a> {
    vars: Vars<'a>,
    extra: &'a [(&'a str, AttrValue)],
    translit: &'a Transliterator,
    loops: [Option<&'a Contract>; MAX_LOOPS],
}

impl<'a> Cx<'a> {
    /// An evaluation of `scope` outside any loop.
    fn new(scope: &Scope<'a>, shared: &'a Shared) -> Self {
        Cx {
            vars: scope.vars,
            extra: scope.extra,
            translit: &shared.translit,
            loops: [None; MAX_LOOPS],
        }
    }
}

pub(crate) fn eval<'a>(
    node: &'a Node,
    scope: &Scope<'a>,
    shared: &'a Shared,
) -> Result<V<'a>, EvalError> {
    node.eval(&Cx::new(scope, shared))
}

/// Whether `v`, once converted and normalized as a mapping's result, certainly equals `known`
/// (see [`super::same_value`]). Answers for the shapes mappings mostly give, without
/// allocating; `false` means "compare the converted value".
pub(crate) fn same_as_known(v: &V<'_>, known: Option<&AttrValue>) -> bool {
    let null = || matches!(known, None | Some(AttrValue::Null));
    match (v, known) {
        (V::Null, _) => null(),
        (V::Str(s), _) if s.is_empty() => null(),
        (V::Str(s), Some(AttrValue::Text(k))) => s.as_ref() == k.as_str(),
        (V::Bool(b), Some(AttrValue::Bool(k))) => b == k,
        (V::Int(i), Some(AttrValue::Int(k))) => i == k,
        _ => false,
    }
}

/// Evaluates a condition.
pub(crate) fn test<'a>(
    node: &'a Node,
    scope: &Scope<'a>,
    shared: &'a Shared,
) -> Result<bool, EvalError> {
    node.test(&Cx::new(scope, shared))
}

fn str_arg<'v, 'a>(v: &'v V<'a>, function: &str) -> Result<&'v str, EvalError> {
    match v {
        V::Str(s) => Ok(s),
        other => Err(no_overload(function, &[other])),
    }
}

fn date_arg(v: V<'_>, function: &str) -> Result<Date, EvalError> {
    match v {
        V::Date(d) => Ok(d),
        V::Null => Err(EvalError::new(format!(
            "{function}(): the date is null (an open contract end?): test it with `!= null` first"
        ))),
        other => Err(EvalError::new(format!(
            "{function}(): expected a date, got {}",
            other.type_name()
        ))),
    }
}

/// A string as the map key it is used as.
fn key_str<'a>(k: &'a Key, cx: &Cx<'a>) -> Result<Cow<'a, str>, EvalError> {
    match k {
        Key::Const(s) => Ok(Cow::Borrowed(s)),
        Key::Dyn(n) => match n.eval(cx)? {
            V::Str(s) => Ok(s),
            other => Err(EvalError::new(format!(
                "a map key must be a string, got {}",
                other.describe()
            ))),
        },
    }
}

/// Whether a map with string keys contains `v`; other key types CEL allows are never in it.
fn map_contains<T>(
    map: &std::collections::BTreeMap<String, T>,
    v: &V<'_>,
) -> Result<bool, EvalError> {
    match v {
        V::Str(s) => Ok(map.contains_key(s.as_ref())),
        V::Int(_) | V::Bool(_) => Ok(false),
        other => Err(EvalError::new(format!(
            "{} cannot be a map key",
            other.describe()
        ))),
    }
}

type AccountFields = std::collections::BTreeMap<String, AttrValue>;

fn account<'a>(target: &'a Key, cx: &Cx<'a>) -> Result<&'a AccountFields, EvalError> {
    let t = key_str(target, cx)?;
    cx.vars.accounts.get(t.as_ref()).ok_or_else(|| {
        EvalError::new(format!(
            "no such key '{t}' in accounts: no account data for that target (test with has(accounts.{t}))"
        ))
    })
}

impl ContractRef {
    fn get<'a>(&'a self, cx: &Cx<'a>) -> Result<&'a Contract, EvalError> {
        match self {
            ContractRef::Scope => cx
                .vars
                .contract
                .ok_or_else(|| EvalError::new("contract is null: no contract is in scope here")),
            ContractRef::Primary => cx
                .vars
                .primary
                .ok_or_else(|| EvalError::new("primary is null: the person has no contract")),
            ContractRef::Loop(slot) => cx.loops[*slot]
                .ok_or_else(|| EvalError::new("internal error: a loop variable is unbound")),
            ContractRef::Index(i) => {
                let contracts = &cx.vars.person.contracts;
                match i.eval(cx)? {
                    V::Int(i) => usize::try_from(i)
                        .ok()
                        .and_then(|u| contracts.get(u))
                        .ok_or_else(|| {
                            EvalError::new(format!(
                                "index {i} out of range: the person has {} contracts",
                                contracts.len()
                            ))
                        }),
                    other => Err(no_overload("_[_]", &[&V::List(Vec::new()), &other])),
                }
            }
        }
    }
}

fn str_v(s: &str) -> V<'_> {
    V::Str(Cow::Borrowed(s))
}

impl Node {
    /// The node's value.
    fn eval<'a>(&'a self, cx: &Cx<'a>) -> Result<V<'a>, EvalError> {
        use Node as N;
        Ok(match self {
            N::Const(c) => c.v(),
            N::Now => V::Date(cx.vars.now),
            N::Extra(name) => extra(name, cx)?,
            N::Person(f) => person_field(*f, cx).into(),
            N::Contract(src, f) => contract_field(src.get(cx)?, *f, cx).into(),
            N::NameFn(_) | N::Concat(_) => {
                let mut out = String::with_capacity(48);
                self.write(cx, &mut out)?;
                V::Str(Cow::Owned(out))
            }
            N::Custom(k) => custom(k, cx)?,
            N::CustomSize => V::Int(cx.vars.person.custom.len() as i64),
            N::ContractsSize => V::Int(cx.vars.person.contracts.len() as i64),
            N::Account(t, f) => account_field(t, f, cx)?,
            N::AccountsSize => V::Int(cx.vars.accounts.len() as i64),
            N::AccountFieldsSize(t) => V::Int(account(t, cx)?.len() as i64),
            N::Cond(ctf) => {
                return if ctf.0.test(cx)? {
                    ctf.1.eval(cx)
                } else {
                    ctf.2.eval(cx)
                };
            }
            N::Arith(op, lr) => {
                let l = lr.0.eval(cx)?;
                let r = lr.1.eval(cx)?;
                arith(*op, l, r)?
            }
            N::StrFn(f, a) => str_fn(*f, a.eval(cx)?, cx)?,
            N::ContractExists(_)
            | N::ContractIsNull(_)
            | N::CustomHas(_)
            | N::CustomContains(_)
            | N::Quantifier { .. }
            | N::AccountHas(_)
            | N::AccountFieldHas(..)
            | N::AccountsContains(_)
            | N::AccountFieldsContains(..)
            | N::Not(_)
            | N::And(_)
            | N::Or(_)
            | N::Eq(_)
            | N::Ne(_)
            | N::Cmp(..)
            | N::In(_)
            | N::InConsts(..)
            | N::FieldOp(_)
            | N::FieldIn(_)
            | N::ValOp(_)
            | N::StrTest(..)
            | N::Matches(..)
            | N::InTreeScope(_)
            | N::InTree(_) => V::Bool(self.test(cx)?),
            N::Neg(_)
            | N::List(_)
            | N::Size(_)
            | N::ToString(_)
            | N::ToInt(_)
            | N::DaysUntil(_)
            | N::DaysSince(_)
            | N::AddDays(_)
            | N::Iso(_)
            | N::Date(_) => self.eval_other(cx)?,
        })
    }

    /// The node's value as a condition: a bool without building a value where the node is
    /// one CEL types as bool; any other value is an error naming its type.
    fn test<'a>(&'a self, cx: &Cx<'a>) -> Result<bool, EvalError> {
        use Node as N;
        match self {
            N::Const(Const::Bool(b)) => Ok(*b),
            N::Person(PersonField::Excluded) => Ok(cx.vars.person.excluded),
            N::Person(PersonField::Active) => Ok(cx.vars.person.is_active_on(cx.vars.now)),
            N::Contract(src, ContractField::Active) => Ok(src.get(cx)?.is_active_on(cx.vars.now)),
            N::ContractExists(src) => src.get(cx).map(|_| true),
            N::ContractIsNull(src) => match src {
                ContractRef::Scope => Ok(cx.vars.contract.is_none()),
                ContractRef::Primary => Ok(cx.vars.primary.is_none()),
                other => other.get(cx).map(|_| false),
            },
            N::CustomHas(k) => Ok(cx.vars.person.custom.contains_key(key_str(k, cx)?.as_ref())),
            N::CustomContains(v) => map_contains(&cx.vars.person.custom, &v.eval(cx)?),
            N::Quantifier { all, slot, body } => quantifier(*all, *slot, body, cx),
            N::AccountHas(t) => Ok(cx.vars.accounts.contains_key(key_str(t, cx)?.as_ref())),
            N::AccountFieldHas(t, f) => {
                let fields = account(t, cx)?;
                Ok(fields.contains_key(key_str(f, cx)?.as_ref()))
            }
            N::AccountsContains(v) => map_contains(cx.vars.accounts, &v.eval(cx)?),
            N::AccountFieldsContains(t, v) => {
                let fields = account(t, cx)?;
                map_contains(fields, &v.eval(cx)?)
            }
            N::Not(a) => a.test(cx).map(|b| !b),
            N::And(lr) => logic(&lr.0, &lr.1, cx, false),
            N::Or(lr) => logic(&lr.0, &lr.1, cx, true),
            N::Cond(ctf) => {
                if ctf.0.test(cx)? {
                    ctf.1.test(cx)
                } else {
                    ctf.2.test(cx)
                }
            }
            N::Eq(lr) => {
                let l = lr.0.eval(cx)?;
                Ok(equal(&l, &lr.1.eval(cx)?))
            }
            N::Ne(lr) => {
                let l = lr.0.eval(cx)?;
                Ok(!equal(&l, &lr.1.eval(cx)?))
            }
            N::Cmp(op, lr) => {
                let l = lr.0.eval(cx)?;
                let r = lr.1.eval(cx)?;
                cmp(*op, &l, &r)
            }
            N::InConsts(l, consts) => {
                let l = l.eval(cx)?;
                Ok(consts.iter().any(|c| equal(&c.v(), &l)))
            }
            N::FieldOp(f) => {
                let v = f.field.get(cx)?;
                let c = f.value.s();
                match f.op {
                    Op::Eq => Ok(equal_s(v, c)),
                    Op::Ne => Ok(!equal_s(v, c)),
                    Op::Cmp(op) => match compare_s(v, c) {
                        Some(ord) => Ok(cmp_holds(op, ord)),
                        None => Err(no_overload(cmp_name(op), &[&v.into(), &c.into()])),
                    },
                }
            }
            N::ValOp(noc) => {
                let (node, op, c) = &**noc;
                let v = node.eval(cx)?;
                let c = c.s();
                match (op, v.scalar()) {
                    (Op::Eq, Some(v)) => Ok(equal_s(v, c)),
                    (Op::Ne, Some(v)) => Ok(!equal_s(v, c)),
                    (Op::Eq | Op::Ne, None) => Ok(*op == Op::Ne),
                    (Op::Cmp(op), sv) => match sv.and_then(|sv| compare_s(sv, c)) {
                        Some(ord) => Ok(cmp_holds(*op, ord)),
                        None => Err(no_overload(cmp_name(*op), &[&v, &c.into()])),
                    },
                }
            }
            N::FieldIn(fc) => {
                let v = fc.0.get(cx)?;
                Ok(fc.1.iter().any(|c| equal_s(c.s(), v)))
            }
            N::In(lr) => {
                let l = lr.0.eval(cx)?;
                match lr.1.eval(cx)? {
                    V::List(items) => Ok(items.iter().any(|i| equal(i, &l))),
                    other => Err(no_overload(operators::IN, &[&l, &other])),
                }
            }
            N::StrTest(test, lr) => str_test(*test, lr.0.eval(cx)?, lr.1.eval(cx)?),
            N::Matches(s, re) => {
                let s = s.eval(cx)?;
                Ok(re.is_match(str_arg(&s, "matches")?))
            }
            N::InTreeScope(root) => {
                let root = root.eval(cx)?;
                let root = str_arg(&root, "in_department_tree")?;
                Ok(cx
                    .vars
                    .contract
                    .or(cx.vars.primary)
                    .is_some_and(|c| cx.vars.org.in_tree(&c.department, root)))
            }
            N::InTree(cr) => {
                let code = cr.0.eval(cx)?;
                let root = cr.1.eval(cx)?;
                Ok(cx.vars.org.in_tree(
                    str_arg(&code, "in_department_tree")?,
                    str_arg(&root, "in_department_tree")?,
                ))
            }
            _ => match self.eval(cx)? {
                V::Bool(b) => Ok(b),
                other => Err(expected_bool(&other)),
            },
        }
    }

    /// Appends the node's string value to `out`: string concatenations and koppel's name
    /// functions build their result in one buffer instead of one string per step.
    fn write<'a>(&'a self, cx: &Cx<'a>, out: &mut String) -> Result<(), EvalError> {
        use Node as N;
        match self {
            N::Concat(parts) => {
                for p in parts.iter() {
                    p.write(cx, out)?;
                }
            }
            N::NameFn(f) => {
                let n = &cx.vars.person.name;
                match f {
                    NameFn::Initials => names::write_initials(n, out),
                    NameFn::FamilyName => names::write_family_name(n, out),
                    NameFn::FamilyNameSort => out.push_str(&names::family_name_sort(n)),
                    NameFn::DisplayName => names::write_display_name(n, out),
                }
            }
            N::StrFn(f, a) => {
                let start = out.len();
                a.write(cx, out)?;
                transform_tail(*f, out, start, cx.translit);
            }
            _ => match self.eval(cx)? {
                V::Str(s) => out.push_str(&s),
                other => {
                    return Err(no_overload(
                        operators::ADD,
                        &[&V::Str(Cow::Borrowed("")), &other],
                    ));
                }
            },
        }
        Ok(())
    }

    /// The nodes seldom on a hot path, out of line to keep `eval`'s frame small.
    #[inline(never)]
    fn eval_other<'a>(&'a self, cx: &Cx<'a>) -> Result<V<'a>, EvalError> {
        use Node as N;
        Ok(match self {
            N::Neg(a) => match a.eval(cx)? {
                V::Int(i) => V::Int(
                    i.checked_neg()
                        .ok_or_else(|| EvalError::new(format!("overflow negating {i}")))?,
                ),
                V::Double(d) => V::Double(-d),
                other => return Err(no_overload(operators::NEGATE, &[&other])),
            },
            N::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                for i in items.iter() {
                    out.push(i.eval(cx)?);
                }
                V::List(out)
            }
            N::Size(a) => match a.eval(cx)? {
                V::Str(s) => V::Int(s.chars().count() as i64),
                V::List(l) => V::Int(l.len() as i64),
                other => return Err(no_overload("size", &[&other])),
            },
            N::ToString(a) => match a.eval(cx)? {
                V::Str(s) => V::Str(s),
                V::Int(i) => V::Str(Cow::Owned(i.to_string())),
                V::Bool(b) => V::Str(Cow::Borrowed(if b { "true" } else { "false" })),
                other => return Err(no_overload("string", &[&other])),
            },
            N::ToInt(a) => match a.eval(cx)? {
                V::Int(i) => V::Int(i),
                V::Str(s) => V::Int(s.parse::<i64>().map_err(|e| {
                    EvalError::new(format!("int(): {s:?} is not a whole number ({e})"))
                })?),
                other => return Err(no_overload("int", &[&other])),
            },
            N::DaysUntil(a) => V::Int(super::days_between(
                cx.vars.now,
                date_arg(a.eval(cx)?, "days_until")?,
            )),
            N::DaysSince(a) => V::Int(super::days_between(
                date_arg(a.eval(cx)?, "days_since")?,
                cx.vars.now,
            )),
            N::AddDays(dn) => {
                let d = date_arg(dn.0.eval(cx)?, "add_days")?;
                let n = match dn.1.eval(cx)? {
                    V::Int(n) => n,
                    other => {
                        return Err(EvalError::new(format!(
                            "add_days(): expected an int, got {}",
                            other.type_name()
                        )));
                    }
                };
                V::Date(
                    super::add_days(d, n)
                        .ok_or_else(|| EvalError::new("add_days(): the date is out of range"))?,
                )
            }
            N::Iso(a) => V::Str(Cow::Owned(date_arg(a.eval(cx)?, "iso")?.to_string())),
            N::Date(a) => {
                let v = a.eval(cx)?;
                V::Date(
                    super::parse_date(str_arg(&v, "date")?)
                        .map_err(|m| EvalError::new(format!("date(): {m}")))?,
                )
            }
            other => return other.eval(cx),
        })
    }
}

#[cold]
fn expected_bool(v: &V<'_>) -> EvalError {
    EvalError::new(format!("expected bool, got {}", v.describe()))
}

#[inline(never)]
fn extra<'a>(name: &str, cx: &Cx<'a>) -> Result<V<'a>, EvalError> {
    match cx.extra.iter().find(|(n, _)| *n == name) {
        Some((_, v)) => Ok(attr(v)),
        None => Err(EvalError::new(format!(
            "variable '{name}' is only bound while generating a value"
        ))),
    }
}

fn person_field<'a>(f: PersonField, cx: &Cx<'a>) -> S<'a> {
    let p = cx.vars.person;
    let n = &p.name;
    use PersonField as P;
    match f {
        P::ExternalId => S::Str(&p.external_id),
        P::Email => S::Str(&p.email),
        P::Phone => S::Str(&p.phone),
        P::Excluded => S::Bool(p.excluded),
        P::Active => S::Bool(p.is_active_on(cx.vars.now)),
        P::Given => S::Str(&n.given),
        P::Nickname => S::Str(&n.nickname),
        P::Initials => S::Str(&n.initials),
        P::FamilyPrefix => S::Str(&n.family_prefix),
        P::Family => S::Str(&n.family),
        P::PartnerPrefix => S::Str(&n.partner_prefix),
        P::Partner => S::Str(&n.partner),
        P::Convention => S::Str(n.convention.as_str()),
    }
}

fn contract_field<'a>(c: &'a Contract, f: ContractField, cx: &Cx<'a>) -> S<'a> {
    use ContractField as F;
    let dept = || cx.vars.org.department(&c.department);
    match f {
        F::Id => S::Str(&c.id),
        F::Start => S::Date(c.start),
        F::End => c.end.map_or(S::Null, S::Date),
        F::Active => S::Bool(c.is_active_on(cx.vars.now)),
        F::DepartmentCode => S::Str(&c.department),
        F::DepartmentName => S::Str(dept().map_or("", |d| d.name.as_str())),
        F::DepartmentParent => S::Str(dept().map_or("", |d| d.parent.as_str())),
        F::DepartmentManager => S::Str(dept().map_or("", |d| d.manager.as_str())),
        F::TitleCode => S::Str(&c.title.code),
        F::TitleName => S::Str(&c.title.name),
        F::Location => S::Str(&c.location),
        F::CostCentre => S::Str(&c.cost_centre),
        F::Manager => S::Str(super::manager_of(cx.vars.org, cx.vars.person, c)),
        F::EmploymentType => S::Str(&c.employment_type),
        F::Fte => S::Double(c.fte.unwrap_or(0.0)),
        F::HoursPerWeek => S::Double(c.hours_per_week.unwrap_or(0.0)),
        F::Sequence => S::Int(c.sequence),
    }
}

fn custom<'a>(k: &'a Key, cx: &Cx<'a>) -> Result<V<'a>, EvalError> {
    let key = key_str(k, cx)?;
    match cx.vars.person.custom.get(key.as_ref()) {
        Some(v) => Ok(str_v(v)),
        None => Err(missing_custom(&key)),
    }
}

#[cold]
fn missing_custom(key: &str) -> EvalError {
    EvalError::new(format!(
        "no such key '{key}' in person.custom (test with has(person.custom.{key}))"
    ))
}

#[inline(never)]
fn account_field<'a>(t: &'a Key, f: &'a Key, cx: &Cx<'a>) -> Result<V<'a>, EvalError> {
    let fields = account(t, cx)?;
    let field = key_str(f, cx)?;
    match fields.get(field.as_ref()) {
        Some(v) => Ok(attr(v)),
        None => {
            let t = key_str(t, cx)?;
            Err(EvalError::new(format!(
                "no such key '{field}' in accounts.{t} (test with has(accounts.{t}.{field}))"
            )))
        }
    }
}

/// `person.contracts.exists(c, body)` (`all: false`) or `.all(c, body)`. CEL's rule: the
/// deciding value (true for exists, false for all) wins over errors from other elements;
/// otherwise an error wins over the default.
#[inline(never)]
fn quantifier<'a>(all: bool, slot: usize, body: &'a Node, cx: &Cx<'a>) -> Result<bool, EvalError> {
    let decider = !all;
    let mut error = None;
    let mut inner = *cx;
    for c in &cx.vars.person.contracts {
        inner.loops[slot] = Some(c);
        match body.test(&inner) {
            Ok(b) if b == decider => return Ok(decider),
            Ok(_) => {}
            Err(e) => error = Some(e),
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok(all),
    }
}

fn cmp_name(op: Cmp) -> &'static str {
    match op {
        Cmp::Lt => operators::LESS,
        Cmp::Le => operators::LESS_EQUALS,
        Cmp::Gt => operators::GREATER,
        Cmp::Ge => operators::GREATER_EQUALS,
    }
}

#[inline]
fn cmp_holds(op: Cmp, ord: Ordering) -> bool {
    match op {
        Cmp::Lt => ord == Ordering::Less,
        Cmp::Le => ord != Ordering::Greater,
        Cmp::Gt => ord == Ordering::Greater,
        Cmp::Ge => ord != Ordering::Less,
    }
}

fn cmp(op: Cmp, l: &V<'_>, r: &V<'_>) -> Result<bool, EvalError> {
    Ok(cmp_holds(op, compare(l, r, cmp_name(op))?))
}

fn str_test(test: StrTest, s: V<'_>, a: V<'_>) -> Result<bool, EvalError> {
    let (V::Str(s), V::Str(a)) = (&s, &a) else {
        let name = match test {
            StrTest::StartsWith => "startsWith",
            StrTest::EndsWith => "endsWith",
            StrTest::Contains => "contains",
        };
        return Err(no_overload(name, &[&s, &a]));
    };
    Ok(match test {
        StrTest::StartsWith => s.starts_with(a.as_ref()),
        StrTest::EndsWith => s.ends_with(a.as_ref()),
        StrTest::Contains => s.contains(a.as_ref()),
    })
}

fn str_fn_name(f: StrFn) -> &'static str {
    match f {
        StrFn::Lower => "lower",
        StrFn::Upper => "upper",
        StrFn::Trim => "trim",
        StrFn::Ascii => "ascii",
        StrFn::Compact => "compact",
        StrFn::DnEscape => "dn_escape",
    }
}

/// `lower(s)` and friends on a value; borrowed when nothing changes.
fn str_fn<'a>(f: StrFn, v: V<'a>, cx: &Cx<'a>) -> Result<V<'a>, EvalError> {
    let V::Str(s) = v else {
        return Err(no_overload(str_fn_name(f), &[&v]));
    };
    Ok(V::Str(match f {
        StrFn::Lower => lower(s),
        StrFn::Upper => upper(s),
        StrFn::Trim => trim(s),
        StrFn::Ascii => match cx.translit.ascii(&s) {
            Cow::Borrowed(_) => s,
            Cow::Owned(o) => Cow::Owned(o),
        },
        StrFn::Compact => match names::compact(&s) {
            Cow::Borrowed(_) => s,
            Cow::Owned(o) => Cow::Owned(o),
        },
        StrFn::DnEscape => match names::dn_escape(&s) {
            Cow::Borrowed(_) => s,
            Cow::Owned(o) => Cow::Owned(o),
        },
    }))
}

/// Applies `f` to what `out` holds after `start`, in place where it can.
fn transform_tail(f: StrFn, out: &mut String, start: usize, translit: &Transliterator) {
    let tail = &out[start..];
    let replacement: Option<String> = match f {
        StrFn::Lower if tail.is_ascii() => {
            out[start..].make_ascii_lowercase();
            None
        }
        StrFn::Upper if tail.is_ascii() => {
            out[start..].make_ascii_uppercase();
            None
        }
        StrFn::Lower => Some(tail.to_lowercase()),
        StrFn::Upper => Some(tail.to_uppercase()),
        StrFn::Trim => {
            let lead = tail.len() - tail.trim_start().len();
            let kept = tail.trim().len();
            out.replace_range(start..start + lead, "");
            out.truncate(start + kept);
            None
        }
        StrFn::Ascii => match translit.ascii(tail) {
            Cow::Borrowed(_) => None,
            Cow::Owned(o) => Some(o),
        },
        StrFn::DnEscape => match names::dn_escape(tail) {
            Cow::Borrowed(_) => None,
            Cow::Owned(o) => Some(o),
        },
        StrFn::Compact => {
            // Remove the dropped characters in place: usernames are short.
            let mut at = start;
            while let Some(i) = out[at..].find(names::is_compacted) {
                let i = at + i;
                let len = out[i..].chars().next().map_or(1, char::len_utf8);
                out.replace_range(i..i + len, "");
                at = i;
            }
            None
        }
    };
    if let Some(r) = replacement {
        out.truncate(start);
        out.push_str(&r);
    }
}

/// `&&` (`or: false`) and `||` with CEL's error absorption: the left side's error gives way
/// when the right side decides. An error or non-bool on the right is an error.
fn logic<'a>(l: &'a Node, r: &'a Node, cx: &Cx<'a>, or: bool) -> Result<bool, EvalError> {
    let decider = or;
    let left = l.test(cx);
    if left == Ok(decider) {
        return Ok(decider);
    }
    let right = r.test(cx)?;
    match left {
        Ok(_) => Ok(right),
        Err(_) if right == decider => Ok(decider),
        Err(e) => Err(e),
    }
}

fn arith<'a>(op: Arith, l: V<'a>, r: V<'a>) -> Result<V<'a>, EvalError> {
    let overflow = |l: &V<'_>, r: &V<'_>| {
        EvalError::new(format!(
            "integer overflow in {} and {}",
            l.describe(),
            r.describe()
        ))
    };
    Ok(match (op, l, r) {
        (Arith::Add, V::Int(a), V::Int(b)) => V::Int(
            a.checked_add(b)
                .ok_or_else(|| overflow(&V::Int(a), &V::Int(b)))?,
        ),
        (Arith::Sub, V::Int(a), V::Int(b)) => V::Int(
            a.checked_sub(b)
                .ok_or_else(|| overflow(&V::Int(a), &V::Int(b)))?,
        ),
        (Arith::Mul, V::Int(a), V::Int(b)) => V::Int(
            a.checked_mul(b)
                .ok_or_else(|| overflow(&V::Int(a), &V::Int(b)))?,
        ),
        (Arith::Div, V::Int(_), V::Int(0)) => return Err(EvalError::new("division by zero")),
        (Arith::Mod, V::Int(_), V::Int(0)) => return Err(EvalError::new("modulus by zero")),
        (Arith::Div, V::Int(a), V::Int(b)) => V::Int(
            a.checked_div(b)
                .ok_or_else(|| overflow(&V::Int(a), &V::Int(b)))?,
        ),
        (Arith::Mod, V::Int(a), V::Int(b)) => V::Int(
            a.checked_rem(b)
                .ok_or_else(|| overflow(&V::Int(a), &V::Int(b)))?,
        ),
        (Arith::Add, V::Double(a), V::Double(b)) => V::Double(a + b),
        (Arith::Sub, V::Double(a), V::Double(b)) => V::Double(a - b),
        (Arith::Mul, V::Double(a), V::Double(b)) => V::Double(a * b),
        (Arith::Div, V::Double(a), V::Double(b)) => V::Double(a / b),
        (Arith::Add, V::Str(a), V::Str(b)) => {
            let mut s = a.into_owned();
            s.push_str(&b);
            V::Str(Cow::Owned(s))
        }
        (Arith::Add, V::List(mut a), V::List(b)) => {
            a.extend(b);
            V::List(a)
        }
        (op, l, r) => {
            let name = match op {
                Arith::Add => operators::ADD,
                Arith::Sub => operators::SUBSTRACT,
                Arith::Mul => operators::MULTIPLY,
                Arith::Div => operators::DIVIDE,
                Arith::Mod => operators::MODULO,
            };
            return Err(no_overload(name, &[&l, &r]));
        }
    })
}

fn lower(s: Cow<'_, str>) -> Cow<'_, str> {
    if s.is_ascii() && !s.bytes().any(|b| b.is_ascii_uppercase()) {
        return s;
    }
    Cow::Owned(s.to_lowercase())
}

fn upper(s: Cow<'_, str>) -> Cow<'_, str> {
    if s.is_ascii() && !s.bytes().any(|b| b.is_ascii_lowercase()) {
        return s;
    }
    Cow::Owned(s.to_uppercase())
}

fn trim(s: Cow<'_, str>) -> Cow<'_, str> {
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
        Cow::Owned(o) if o.trim().len() == o.len() => Cow::Owned(o),
        Cow::Owned(o) => Cow::Owned(o.trim().to_owned()),
    }
}
