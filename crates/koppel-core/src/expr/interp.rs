//! The `cel` crate's side of the engine: parsing, and the interpreter that evaluates what the
//! fast evaluator does not cover, over lazy `Val` views of the borrowed model.
//!
//! Every model object is a small struct of references implementing `cel`'s `Val` and
//! `Indexer` traits, so `person.name.given` reads one field and copies nothing but the view.
//! koppel's functions are registered once, on a root `Context` the engine keeps; each
//! evaluation only adds a child scope whose variable resolver answers from the [`Scope`].
//! Functions that need the run's data (`now`, the department tree) read it through hidden
//! variables (`@now`, `@org`) that no expression can spell.

use std::borrow::Cow;
use std::sync::Arc;

use cel::common::ast::IdedExpr;
use cel::common::traits::{Container, Indexer, Iterable, Iterator as CelIterator, Sizer};
use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelNull, CelString, CelTimestamp, CelUInt, Kind,
    LIST_TYPE, MAP_TYPE, STRING_TYPE, Type,
};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::{Context, Env, ExecutionError, FunctionContext, Program, Value};
use chrono::{DateTime, FixedOffset, NaiveTime};

use super::{CompileError, EvalError, Scope};
use crate::model::{Contract, Date, Person, PersonName};
use crate::names::{self, Transliterator};
use crate::org::Org;
use crate::value::AttrValue;

/// The parser, the environment and the root context with koppel's functions.
pub(crate) struct Interp {
    env: Arc<Env>,
    root: Context<'static, 'static>,
}

impl Interp {
    pub(crate) fn new(translit: Arc<Transliterator>) -> Self {
        let mut env = Env::stdlib();
        // Only a duplicate declaration can fail, and these are declared once: a bug.
        env.add_extension(cel::extensions::strings)
            .expect("the strings extension declares each overload once");
        // `trim` is a member overload of the strings extension: a context function of the
        // same name would be shadowed, so the global form is an overload too.
        env.add_overload("trim", "koppel_trim_string", vec![STRING_TYPE], |args| {
            let s = string_arg("trim", args[0].as_ref())?;
            Ok(CowVal::owned(CelString::from(s.trim().to_owned())))
        })
        .expect("trim(string) is declared once");
        let env = Arc::new(env);
        let mut root = Context::with_env(env.clone());
        register_functions(&mut root, translit);
        Self { env, root }
    }

    /// Parses `source`; syntax errors carry their position.
    pub(crate) fn parse(&self, source: &str) -> Result<Program, CompileError> {
        // The parser is generated code; a panic on some odd input must not take the run down.
        let env = &self.env;
        let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| env.compile(source)));
        match parsed {
            Ok(Ok(program)) => Ok(program),
            Ok(Err(errors)) => {
                let first = errors.errors.first();
                let (line, col) = first.map_or((1, 1), |e| e.pos);
                let message = first.map_or_else(|| "syntax error".to_owned(), |e| e.msg.clone());
                let message = message
                    .strip_prefix("Syntax error: ")
                    .unwrap_or(&message)
                    .to_owned();
                Err(CompileError::at(
                    source,
                    offset_of_line_col(source, line, col),
                    format!("syntax error: {message}"),
                ))
            }
            Err(_) => Err(CompileError::at(
                source,
                0,
                "the CEL parser failed on this expression",
            )),
        }
    }

    pub(crate) fn eval(
        &self,
        program: &Program,
        scope: &Scope<'_>,
        source: &str,
    ) -> Result<AttrValue, EvalError> {
        let resolver = ScopeResolver { scope: *scope };
        self.with_value(program.expression(), &resolver, |v| to_attr(v))
            .map_err(|e| EvalError::new(describe_error(e, source)))?
    }

    fn with_value<R>(
        &self,
        expr: &IdedExpr,
        resolver: &ScopeResolver<'_>,
        f: impl FnOnce(&dyn Val) -> R,
    ) -> Result<R, ExecutionError> {
        let root: &Context<'_, '_> = &self.root;
        let mut ctx = root.new_inner_scope();
        ctx.set_variable_resolver(resolver);
        let v = Value::resolve_val(expr, &ctx)?;
        Ok(f(v.as_ref()))
    }
}

/// The byte offset of a 1-based line and 1-based column (in characters).
fn offset_of_line_col(source: &str, line: isize, col: isize) -> usize {
    let mut offset = 0;
    for (i, l) in source.split_inclusive('\n').enumerate() {
        if i as isize + 1 == line {
            let col = usize::try_from(col.max(1) - 1).unwrap_or(0);
            return offset + l.char_indices().nth(col).map_or(l.len(), |(b, _)| b);
        }
        offset += l.len();
    }
    source.len()
}

/// Turns the interpreter's errors into messages a rule author can act on.
fn describe_error(e: ExecutionError, source: &str) -> String {
    let _ = source;
    match e {
        // koppel's views put the quoted key and where it was looked up in the message.
        ExecutionError::NoSuchKey(k) if k.starts_with('\'') => format!("no such key {k}"),
        ExecutionError::NoSuchKey(k) => format!("no such key '{k}'"),
        ExecutionError::UndeclaredReference(name) => match name.as_str() {
            "value" | "n" => format!("variable '{name}' is only bound while generating a value"),
            _ => format!("undeclared reference to '{name}'"),
        },
        ExecutionError::FunctionError { function, message } => format!("{function}(): {message}"),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// Conversions

pub(crate) fn date_to_timestamp(d: Date) -> CelTimestamp {
    let dt: DateTime<FixedOffset> = d.and_time(NaiveTime::MIN).and_utc().fixed_offset();
    CelTimestamp::from(dt)
}

fn timestamp_to_date(t: &CelTimestamp) -> Date {
    t.inner().naive_utc().date()
}

/// The date in `v`, or an error saying what it got instead.
fn date_arg(function: &str, v: &dyn Val) -> Result<Date, ExecutionError> {
    if let Some(t) = v.downcast_ref::<CelTimestamp>() {
        return Ok(timestamp_to_date(t));
    }
    if v.get_type().kind() == Kind::NullType {
        return Err(ExecutionError::function_error(
            function,
            "the date is null (an open contract end?): test it with `!= null` first",
        ));
    }
    Err(ExecutionError::function_error(
        function,
        format!("expected a date, got {}", v.get_type().name()),
    ))
}

fn string_arg<'b, 'v>(function: &str, v: &'b (dyn Val + 'v)) -> Result<&'b str, ExecutionError> {
    v.downcast_ref::<CelString>()
        .map(|s| s.inner())
        .ok_or_else(|| {
            ExecutionError::function_error(
                function,
                format!("expected a string, got {}", v.get_type().name()),
            )
        })
}

fn int_arg(function: &str, v: &dyn Val) -> Result<i64, ExecutionError> {
    v.downcast_ref::<CelInt>()
        .map(|i| *i.inner())
        .ok_or_else(|| {
            ExecutionError::function_error(
                function,
                format!("expected an int, got {}", v.get_type().name()),
            )
        })
}

fn attr_to_val<'a>(v: &'a AttrValue) -> Box<dyn Val + 'a> {
    match v {
        AttrValue::Null => Box::new(CelNull),
        AttrValue::Bool(b) => Box::new(CelBool::from(*b)),
        AttrValue::Int(i) => Box::new(CelInt::from(*i)),
        AttrValue::Text(s) => Box::new(CelString::from(s.as_str())),
        AttrValue::List(l) => Box::new(CelList::from(
            l.iter()
                .map(|s| Box::new(CelString::from(s.as_str())) as Box<dyn Val + 'a>)
                .collect::<Vec<_>>(),
        )),
    }
}

/// The attribute value a CEL result stands for.
fn to_attr(v: &dyn Val) -> Result<AttrValue, EvalError> {
    match scalar_text(v)? {
        Scalar::Null => Ok(AttrValue::Null),
        Scalar::Bool(b) => Ok(AttrValue::Bool(b)),
        Scalar::Int(i) => Ok(AttrValue::Int(i)),
        Scalar::Text(s) => Ok(AttrValue::Text(s)),
        Scalar::List => {
            let Some(list) = v.downcast_ref::<CelList>() else {
                return Err(EvalError::new(format!(
                    "the expression yields {}, not a value an attribute can hold",
                    describe_kind(v)
                )));
            };
            let mut out = Vec::with_capacity(list.inner().len());
            for item in list.inner() {
                match scalar_text(item.as_ref())? {
                    Scalar::Text(s) => out.push(s),
                    Scalar::Int(i) => out.push(i.to_string()),
                    Scalar::Bool(b) => out.push(b.to_string()),
                    Scalar::Null | Scalar::List => {
                        return Err(EvalError::new(format!(
                            "a list an attribute holds may only contain strings, numbers, bools and dates, not {}",
                            describe_kind(item.as_ref())
                        )));
                    }
                }
            }
            Ok(AttrValue::List(out))
        }
    }
}

enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Text(String),
    List,
}

fn scalar_text(v: &dyn Val) -> Result<Scalar, EvalError> {
    let unsupported = || {
        EvalError::new(format!(
            "the expression yields {}, not a value an attribute can hold",
            describe_kind(v)
        ))
    };
    Ok(match v.get_type().kind() {
        Kind::NullType => Scalar::Null,
        Kind::Boolean => {
            Scalar::Bool(*v.downcast_ref::<CelBool>().ok_or_else(unsupported)?.inner())
        }
        Kind::Int => Scalar::Int(*v.downcast_ref::<CelInt>().ok_or_else(unsupported)?.inner()),
        Kind::UInt => {
            let u = *v.downcast_ref::<CelUInt>().ok_or_else(unsupported)?.inner();
            i64::try_from(u).map_or_else(|_| Scalar::Text(u.to_string()), Scalar::Int)
        }
        Kind::Double => Scalar::Text(super::format_double(
            *v.downcast_ref::<CelDouble>()
                .ok_or_else(unsupported)?
                .inner(),
        )),
        Kind::String => Scalar::Text(
            v.downcast_ref::<CelString>()
                .ok_or_else(unsupported)?
                .inner()
                .to_owned(),
        ),
        Kind::Timestamp => {
            let t = v
                .downcast_ref::<CelTimestamp>()
                .ok_or_else(unsupported)?
                .inner();
            if t.naive_utc().time() == NaiveTime::MIN {
                Scalar::Text(t.naive_utc().date().to_string())
            } else {
                Scalar::Text(t.to_rfc3339())
            }
        }
        Kind::List => Scalar::List,
        _ => return Err(unsupported()),
    })
}

fn describe_kind(v: &dyn Val) -> String {
    let name = v.get_type().name();
    match name {
        "koppel.Person" => "a person".to_owned(),
        "koppel.Contract" => "a contract".to_owned(),
        "koppel.Name" => "a name (pick a part: person.name.given, ...)".to_owned(),
        "koppel.Department" => "a department (pick a part: .code, .name, ...)".to_owned(),
        "koppel.Title" => "a title (pick a part: .code or .name)".to_owned(),
        "map" => "a map".to_owned(),
        "list" => "a list that is not of plain values".to_owned(),
        other => format!("a value of type {other}"),
    }
}

// ---------------------------------------------------------------------------------------
// Lazy views of the model

static PERSON_TYPE: Type = Type::new_unspecified_type("koppel.Person");
static NAME_TYPE: Type = Type::new_unspecified_type("koppel.Name");
static CONTRACT_TYPE: Type = Type::new_unspecified_type("koppel.Contract");
static DEPARTMENT_TYPE: Type = Type::new_unspecified_type("koppel.Department");
static TITLE_TYPE: Type = Type::new_unspecified_type("koppel.Title");
static ORG_TYPE: Type = Type::new_unspecified_type("koppel.Org");

/// What every view needs besides its own object.
#[derive(Debug, Clone, Copy)]
struct Base<'a> {
    org: &'a Org,
    person: &'a Person,
    now: Date,
}

fn field_name(idx: &dyn Val) -> Result<&str, ExecutionError> {
    idx.downcast_ref::<CelString>()
        .map(|s| s.inner())
        .ok_or_else(|| ExecutionError::UnexpectedType {
            got: idx.get_type().name().to_owned(),
            want: "string".to_owned(),
        })
}

fn s<'b, 'v>(s: &'v str) -> Result<CowVal<'b, 'v>, ExecutionError> {
    Ok(CowVal::owned(CelString::from(s)))
}

fn no_field(object: &str, field: &str) -> ExecutionError {
    ExecutionError::no_such_key(&format!("'{field}' on {object}"))
}

/// Implements the parts of `Val` every view shares.
macro_rules! view_val {
    ($ty:ident, $cel_type:expr) => {
        impl<'a> Val for $ty<'a> {
            fn get_type(&self) -> &Type {
                &$cel_type
            }
            fn cel_type() -> &'static Type {
                &$cel_type
            }
            fn as_indexer<'b, 'v>(&'b self) -> Option<&'b (dyn Indexer + 'v)>
            where
                Self: 'v,
            {
                Some(self)
            }
            fn equals(&self, other: &dyn Val) -> bool {
                self.same_as(other)
            }
            fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
            where
                Self: 'v,
            {
                Box::new(self.clone())
            }
        }
    };
}

/// Views are equal when they are of the same type and their key field is equal.
fn same_key(this: &dyn Val, other: &dyn Val, key: &str) -> bool {
    if this.get_type() != other.get_type() {
        return false;
    }
    let k = CelString::from(key);
    match (this.as_indexer(), other.as_indexer()) {
        (Some(a), Some(b)) => match (a.get(&k), b.get(&k)) {
            (Ok(x), Ok(y)) => x.equals(y.as_ref()),
            _ => false,
        },
        _ => false,
    }
}

macro_rules! steal_by_get {
    () => {
        fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
        where
            Self: 'v,
        {
            self.get(idx).map(CowVal::into_owned)
        }
    };
}

#[derive(Debug, Clone)]
struct PersonView<'a> {
    base: Base<'a>,
}

impl PersonView<'_> {
    fn same_as(&self, other: &dyn Val) -> bool {
        same_key(self, other, "external_id")
    }
}

impl Indexer for PersonView<'_> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let p = self.base.person;
        let field = field_name(idx)?;
        match field {
            "external_id" => s(&p.external_id),
            "email" => s(&p.email),
            "phone" => s(&p.phone),
            "excluded" => Ok(CowVal::owned(CelBool::from(p.excluded))),
            "active" => Ok(CowVal::owned(CelBool::from(p.is_active_on(self.base.now)))),
            "name" => Ok(CowVal::owned(NameView { name: &p.name })),
            "custom" => Ok(CowVal::owned(CustomView::new(&p.custom))),
            "contracts" => Ok(CowVal::owned(ContractsView {
                items: p
                    .contracts
                    .iter()
                    .map(|c| ContractView { base: self.base, c })
                    .collect(),
            })),
            _ => Err(no_field("person", field)),
        }
    }
    steal_by_get!();
}
view_val!(PersonView, PERSON_TYPE);

#[derive(Debug, Clone)]
struct NameView<'a> {
    name: &'a PersonName,
}

impl NameView<'_> {
    fn same_as(&self, other: &dyn Val) -> bool {
        [
            "given",
            "nickname",
            "initials",
            "family_prefix",
            "family",
            "partner_prefix",
            "partner",
            "convention",
        ]
        .iter()
        .all(|k| same_key(self, other, k))
    }
}

impl Indexer for NameView<'_> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let n = self.name;
        let field = field_name(idx)?;
        match field {
            "given" => s(&n.given),
            "nickname" => s(&n.nickname),
            "initials" => s(&n.initials),
            "family_prefix" => s(&n.family_prefix),
            "family" => s(&n.family),
            "partner_prefix" => s(&n.partner_prefix),
            "partner" => s(&n.partner),
            "convention" => s(n.convention.as_str()),
            _ => Err(no_field("person.name", field)),
        }
    }
    steal_by_get!();
}
view_val!(NameView, NAME_TYPE);

#[derive(Debug, Clone)]
struct ContractView<'a> {
    base: Base<'a>,
    c: &'a Contract,
}

impl ContractView<'_> {
    fn same_as(&self, other: &dyn Val) -> bool {
        same_key(self, other, "id")
    }
}

impl Indexer for ContractView<'_> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let c = self.c;
        let field = field_name(idx)?;
        match field {
            "id" => s(&c.id),
            "start" => Ok(CowVal::owned(date_to_timestamp(c.start))),
            "end" => Ok(match c.end {
                Some(d) => CowVal::owned(date_to_timestamp(d)),
                None => CowVal::owned(CelNull),
            }),
            "active" => Ok(CowVal::owned(CelBool::from(c.is_active_on(self.base.now)))),
            "department" => Ok(CowVal::owned(DepartmentView { base: self.base, c })),
            "title" => Ok(CowVal::owned(TitleView { c })),
            "location" => s(&c.location),
            "cost_centre" => s(&c.cost_centre),
            "manager" => s(super::manager_of(self.base.org, self.base.person, c)),
            "employment_type" => s(&c.employment_type),
            "fte" => Ok(CowVal::owned(CelDouble::from(c.fte.unwrap_or(0.0)))),
            "hours_per_week" => Ok(CowVal::owned(CelDouble::from(
                c.hours_per_week.unwrap_or(0.0),
            ))),
            "sequence" => Ok(CowVal::owned(CelInt::from(c.sequence))),
            _ => Err(no_field("contract", field)),
        }
    }
    steal_by_get!();
}
view_val!(ContractView, CONTRACT_TYPE);

#[derive(Debug, Clone)]
struct DepartmentView<'a> {
    base: Base<'a>,
    c: &'a Contract,
}

impl DepartmentView<'_> {
    fn same_as(&self, other: &dyn Val) -> bool {
        same_key(self, other, "code")
    }
}

impl Indexer for DepartmentView<'_> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let code = &self.c.department;
        let dept = self.base.org.department(code);
        let field = field_name(idx)?;
        match field {
            "code" => s(code),
            "name" => s(dept.map_or("", |d| d.name.as_str())),
            "parent" => s(dept.map_or("", |d| d.parent.as_str())),
            "manager" => s(dept.map_or("", |d| d.manager.as_str())),
            _ => Err(no_field("department", field)),
        }
    }
    steal_by_get!();
}
view_val!(DepartmentView, DEPARTMENT_TYPE);

#[derive(Debug, Clone)]
struct TitleView<'a> {
    c: &'a Contract,
}

impl TitleView<'_> {
    fn same_as(&self, other: &dyn Val) -> bool {
        same_key(self, other, "code") && same_key(self, other, "name")
    }
}

impl Indexer for TitleView<'_> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let field = field_name(idx)?;
        match field {
            "code" => s(&self.c.title.code),
            "name" => s(&self.c.title.name),
            _ => Err(no_field("title", field)),
        }
    }
    steal_by_get!();
}
view_val!(TitleView, TITLE_TYPE);

/// `person.contracts`: a list of contract views.
#[derive(Debug, Clone)]
struct ContractsView<'a> {
    items: Vec<ContractView<'a>>,
}

struct SliceIter<'b, T> {
    items: std::slice::Iter<'b, T>,
}

impl<'b, 'v, T: Val + 'v> CelIterator<'b, 'v> for SliceIter<'b, T> {
    fn next(&mut self) -> Option<&'b (dyn Val + 'v)> {
        self.items.next().map(|v| v as &dyn Val)
    }
}

impl Val for ContractsView<'_> {
    fn get_type(&self) -> &Type {
        &LIST_TYPE
    }
    fn cel_type() -> &'static Type {
        &LIST_TYPE
    }
    fn as_indexer<'b, 'v>(&'b self) -> Option<&'b (dyn Indexer + 'v)>
    where
        Self: 'v,
    {
        Some(self)
    }
    fn as_iterable<'b, 'v>(&'b self) -> Option<&'b (dyn Iterable + 'v)>
    where
        Self: 'v,
    {
        Some(self)
    }
    fn as_sizer(&self) -> Option<&dyn Sizer> {
        Some(self)
    }
    fn as_container(&self) -> Option<&dyn Container> {
        Some(self)
    }
    fn equals(&self, other: &dyn Val) -> bool {
        let Some(iter) = other.as_iterable() else {
            return false;
        };
        let mut theirs = iter.iter();
        for mine in &self.items {
            match theirs.next() {
                Some(t) if mine.equals(t) => {}
                _ => return false,
            }
        }
        theirs.next().is_none()
    }
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
    where
        Self: 'v,
    {
        Box::new(self.clone())
    }
}

impl Indexer for ContractsView<'_> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let i = match idx.get_type().kind() {
            Kind::Int => *idx
                .downcast_ref::<CelInt>()
                .map(|i| i.inner())
                .unwrap_or(&-1),
            _ => {
                return Err(ExecutionError::UnexpectedType {
                    got: idx.get_type().name().to_owned(),
                    want: "int".to_owned(),
                });
            }
        };
        usize::try_from(i)
            .ok()
            .and_then(|i| self.items.get(i))
            .map(|c| CowVal::Borrowed(c as &dyn Val))
            .ok_or_else(|| ExecutionError::IndexOutOfBounds(Value::Int(i)))
    }
    steal_by_get!();
}

impl Iterable for ContractsView<'_> {
    fn iter<'b, 'v>(&'b self) -> Box<dyn CelIterator<'b, 'v> + 'b>
    where
        Self: 'v,
    {
        Box::new(SliceIter {
            items: self.items.iter(),
        })
    }
}

impl Sizer for ContractsView<'_> {
    fn size(&self) -> CelInt {
        CelInt::from(self.items.len() as i64)
    }
}

impl Container for ContractsView<'_> {
    fn contains(&self, value: &dyn Val) -> Result<bool, ExecutionError> {
        Ok(self.items.iter().any(|c| c.equals(value)))
    }
}

/// A string-keyed map view: `person.custom`, `accounts`, `accounts.<target>`.
#[derive(Debug, Clone)]
struct MapView<'a, V> {
    map: &'a std::collections::BTreeMap<String, V>,
    /// The keys as CEL strings, for iteration, which hands out borrows.
    keys: Vec<CelString<'a>>,
    /// How an entry becomes a value.
    value: fn(&'a V) -> Box<dyn Val + 'a>,
    what: &'static str,
}

type CustomView<'a> = MapView<'a, String>;

impl<'a> CustomView<'a> {
    fn new(map: &'a std::collections::BTreeMap<String, String>) -> Self {
        MapView::with(
            map,
            |v| Box::new(CelString::from(v.as_str())),
            "person.custom",
        )
    }
}

impl<'a, V> MapView<'a, V> {
    fn with(
        map: &'a std::collections::BTreeMap<String, V>,
        value: fn(&'a V) -> Box<dyn Val + 'a>,
        what: &'static str,
    ) -> Self {
        Self {
            map,
            keys: map.keys().map(|k| CelString::from(k.as_str())).collect(),
            value,
            what,
        }
    }
}

fn account_fields<'a>(m: &'a std::collections::BTreeMap<String, AttrValue>) -> Box<dyn Val + 'a> {
    Box::new(MapView::with(m, attr_to_val, "the account data"))
}

impl<'a, V: std::fmt::Debug + Sync> Val for MapView<'a, V> {
    fn get_type(&self) -> &Type {
        &MAP_TYPE
    }
    fn cel_type() -> &'static Type
    where
        Self: Sized,
    {
        &MAP_TYPE
    }
    fn as_indexer<'b, 'v>(&'b self) -> Option<&'b (dyn Indexer + 'v)>
    where
        Self: 'v,
    {
        Some(self)
    }
    fn as_iterable<'b, 'v>(&'b self) -> Option<&'b (dyn Iterable + 'v)>
    where
        Self: 'v,
    {
        Some(self)
    }
    fn as_sizer(&self) -> Option<&dyn Sizer> {
        Some(self)
    }
    fn as_container(&self) -> Option<&dyn Container> {
        Some(self)
    }
    fn equals(&self, other: &dyn Val) -> bool {
        let (Some(ix), Some(sz)) = (other.as_indexer(), other.as_sizer()) else {
            return false;
        };
        if *sz.size().inner() != self.map.len() as i64 {
            return false;
        }
        self.map
            .iter()
            .all(|(k, v)| match ix.get(&CelString::from(k.as_str())) {
                Ok(theirs) => (self.value)(v).equals(theirs.as_ref()),
                Err(_) => false,
            })
    }
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
    where
        Self: 'v,
    {
        Box::new(MapView {
            map: self.map,
            keys: self.keys.clone(),
            value: self.value,
            what: self.what,
        })
    }
}

impl<'a, V: std::fmt::Debug + Sync> Indexer for MapView<'a, V> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let key = field_name(idx)?;
        match self.map.get(key) {
            Some(v) => Ok(CowVal::Owned((self.value)(v))),
            None => Err(ExecutionError::no_such_key(&format!(
                "'{key}' in {}",
                self.what
            ))),
        }
    }
    steal_by_get!();
}

impl<'a, V: std::fmt::Debug + Sync> Iterable for MapView<'a, V> {
    fn iter<'b, 'v>(&'b self) -> Box<dyn CelIterator<'b, 'v> + 'b>
    where
        Self: 'v,
    {
        Box::new(SliceIter {
            items: self.keys.iter(),
        })
    }
}

impl<V> Sizer for MapView<'_, V> {
    fn size(&self) -> CelInt {
        CelInt::from(self.map.len() as i64)
    }
}

impl<V> Container for MapView<'_, V> {
    fn contains(&self, value: &dyn Val) -> Result<bool, ExecutionError> {
        match value.get_type().kind() {
            Kind::String => Ok(value
                .downcast_ref::<CelString>()
                .is_some_and(|k| self.map.contains_key(k.inner()))),
            // Valid CEL map key types this map cannot hold.
            Kind::Int | Kind::UInt | Kind::Boolean => Ok(false),
            _ => Err(ExecutionError::UnsupportedKeyType(
                Value::try_from(value).unwrap_or(Value::Null),
            )),
        }
    }
}

/// `@org[code]`: the codes of `code` and its ancestors, nearest first.
#[derive(Debug, Clone)]
struct OrgView<'a> {
    org: &'a Org,
}

impl OrgView<'_> {
    fn same_as(&self, _other: &dyn Val) -> bool {
        false
    }
}

impl Indexer for OrgView<'_> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let code = field_name(idx)?;
        let chain: Vec<Box<dyn Val + 'v>> = self
            .org
            .ancestry(code)
            // `ancestry` borrows `code` too: own the codes.
            .map(|d| Box::new(CelString::from(d.code.clone())) as Box<dyn Val + 'v>)
            .collect();
        Ok(CowVal::owned(CelList::from(chain)))
    }
    steal_by_get!();
}
view_val!(OrgView, ORG_TYPE);

/// Answers the variables of one evaluation from the [`Scope`].
struct ScopeResolver<'a> {
    scope: Scope<'a>,
}

impl<'a> ScopeResolver<'a> {
    fn base(&self) -> Base<'a> {
        let v = &self.scope.vars;
        Base {
            org: v.org,
            person: v.person,
            now: v.now,
        }
    }

    fn contract<'b>(&self, c: Option<&'a Contract>) -> CowVal<'b, 'a> {
        match c {
            Some(c) => CowVal::owned(ContractView {
                base: self.base(),
                c,
            }),
            None => CowVal::owned(CelNull),
        }
    }
}

impl VariableResolver for ScopeResolver<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let vars = &self.scope.vars;
        Some(match variable {
            "person" => CowVal::owned(PersonView { base: self.base() }),
            "contract" => self.contract(vars.contract),
            "primary" => self.contract(vars.primary),
            "now" | "@now" => CowVal::owned(date_to_timestamp(vars.now)),
            "accounts" => CowVal::owned(MapView::with(vars.accounts, account_fields, "accounts")),
            "@org" => CowVal::owned(OrgView { org: vars.org }),
            "@scope_department" => {
                let c = vars.contract.or(vars.primary);
                match c {
                    Some(c) => CowVal::owned(CelString::from(c.department.as_str())),
                    None => CowVal::owned(CelNull),
                }
            }
            other => CowVal::Owned(attr_to_val(self.scope.extra_var(other)?)),
        })
    }
}

// ---------------------------------------------------------------------------------------
// koppel's functions, for the interpreter

type Function = Box<
    dyn for<'c, 'k> Fn(&mut FunctionContext<'c, 'k>) -> Result<CowVal<'c, 'k>, ExecutionError>
        + Send
        + Sync,
>;

/// The arguments of a call, the receiver of a method call first.
fn call_args<'x, 'c, 'k>(ftx: &'x FunctionContext<'c, 'k>) -> Vec<&'x (dyn Val + 'k)> {
    ftx.this
        .iter()
        .chain(ftx.args.iter())
        .map(|v| v.as_ref())
        .collect()
}

fn arity(function: &str, args: &[&dyn Val], n: usize) -> Result<(), ExecutionError> {
    if args.len() == n {
        Ok(())
    } else {
        Err(ExecutionError::function_error(
            function,
            format!(
                "takes {n} argument{}, got {}",
                if n == 1 { "" } else { "s" },
                args.len()
            ),
        ))
    }
}

/// A string → string function.
fn string_fn(
    name: &'static str,
    f: impl Fn(&str) -> Cow<'_, str> + Send + Sync + 'static,
) -> Function {
    Box::new(move |ftx| {
        let args = call_args(ftx);
        arity(name, &args, 1)?;
        let out = f(string_arg(name, args[0])?).into_owned();
        Ok(CowVal::owned(CelString::from(out)))
    })
}

/// Reads a person view back into a `PersonName`, through its indexer: views borrow, so they
/// cannot be downcast.
fn person_name_arg(function: &str, v: &dyn Val) -> Result<PersonName, ExecutionError> {
    let not_person = || {
        ExecutionError::function_error(
            function,
            format!("expected person, got {}", v.get_type().name()),
        )
    };
    if v.get_type() != &PERSON_TYPE {
        return Err(not_person());
    }
    let name = v
        .as_indexer()
        .ok_or_else(not_person)?
        .get(&CelString::from("name"))?;
    let ix = name.as_indexer().ok_or_else(not_person)?;
    let part = |k: &str| -> Result<String, ExecutionError> {
        let v = ix.get(&CelString::from(k))?;
        Ok(string_arg(function, v.as_ref())?.to_owned())
    };
    Ok(PersonName {
        given: part("given")?,
        nickname: part("nickname")?,
        initials: part("initials")?,
        family_prefix: part("family_prefix")?,
        family: part("family")?,
        partner_prefix: part("partner_prefix")?,
        partner: part("partner")?,
        convention: crate::model::NamingConvention::parse(&part("convention")?).unwrap_or_default(),
    })
}

fn person_fn(name: &'static str, f: fn(&PersonName) -> String) -> Function {
    Box::new(move |ftx| {
        let args = call_args(ftx);
        arity(name, &args, 1)?;
        let n = person_name_arg(name, args[0])?;
        Ok(CowVal::owned(CelString::from(f(&n))))
    })
}

fn hidden<'c, 'k>(
    ftx: &FunctionContext<'c, 'k>,
    name: &str,
) -> Result<CowVal<'c, 'k>, ExecutionError> {
    ftx.ptx
        .get_variable(name)
        .ok_or_else(|| ExecutionError::InternalError(format!("{name} is not bound")))
}

fn now_of(ftx: &FunctionContext<'_, '_>, function: &str) -> Result<Date, ExecutionError> {
    date_arg(function, hidden(ftx, "@now")?.as_ref())
}

fn register_functions(root: &mut Context<'static, 'static>, translit: Arc<Transliterator>) {
    let mut add = |name: &str, f: Function| {
        // A clash with an overload of the environment is a bug in this list.
        root.add_function(name, f)
            .expect("koppel's function names are not declared by the environment");
    };
    add(
        "ascii",
        string_fn("ascii", move |s| Cow::Owned(translit.ascii(s).into_owned())),
    );
    add(
        "lower",
        string_fn("lower", |s| Cow::Owned(s.to_lowercase())),
    );
    add(
        "upper",
        string_fn("upper", |s| Cow::Owned(s.to_uppercase())),
    );
    add("compact", string_fn("compact", names::compact));
    add("dn_escape", string_fn("dn_escape", names::dn_escape));
    add("initials", person_fn("initials", names::initials));
    add("family_name", person_fn("family_name", names::family_name));
    add(
        "family_name_sort",
        person_fn("family_name_sort", names::family_name_sort),
    );
    add(
        "display_name",
        person_fn("display_name", names::display_name),
    );
    add(
        "days_until",
        Box::new(|ftx| {
            let args = call_args(ftx);
            arity("days_until", &args, 1)?;
            let d = date_arg("days_until", args[0])?;
            let now = now_of(ftx, "days_until")?;
            Ok(CowVal::owned(CelInt::from(super::days_between(now, d))))
        }),
    );
    add(
        "days_since",
        Box::new(|ftx| {
            let args = call_args(ftx);
            arity("days_since", &args, 1)?;
            let d = date_arg("days_since", args[0])?;
            let now = now_of(ftx, "days_since")?;
            Ok(CowVal::owned(CelInt::from(super::days_between(d, now))))
        }),
    );
    add(
        "add_days",
        Box::new(|ftx| {
            let args = call_args(ftx);
            arity("add_days", &args, 2)?;
            let d = date_arg("add_days", args[0])?;
            let n = int_arg("add_days", args[1])?;
            let out = super::add_days(d, n).ok_or_else(|| {
                ExecutionError::function_error("add_days", "the date is out of range")
            })?;
            Ok(CowVal::owned(date_to_timestamp(out)))
        }),
    );
    add(
        "date",
        Box::new(|ftx| {
            let args = call_args(ftx);
            arity("date", &args, 1)?;
            let d = super::parse_date(string_arg("date", args[0])?)
                .map_err(|m| ExecutionError::function_error("date", m))?;
            Ok(CowVal::owned(date_to_timestamp(d)))
        }),
    );
    add(
        "iso",
        Box::new(|ftx| {
            let args = call_args(ftx);
            arity("iso", &args, 1)?;
            let d = date_arg("iso", args[0])?;
            Ok(CowVal::owned(CelString::from(d.to_string())))
        }),
    );
    add(
        "in_department_tree",
        Box::new(|ftx| {
            let args = call_args(ftx);
            let (code, root) = match args.len() {
                1 => {
                    let code = hidden(ftx, "@scope_department")?;
                    let root = string_arg("in_department_tree", args[0])?.to_owned();
                    if code.get_type().kind() == Kind::NullType {
                        return Ok(CowVal::owned(CelBool::from(false)));
                    }
                    (
                        string_arg("in_department_tree", code.as_ref())?.to_owned(),
                        root,
                    )
                }
                2 => (
                    string_arg("in_department_tree", args[0])?.to_owned(),
                    string_arg("in_department_tree", args[1])?.to_owned(),
                ),
                n => {
                    return Err(ExecutionError::function_error(
                        "in_department_tree",
                        format!("takes 1 or 2 arguments, got {n}"),
                    ));
                }
            };
            if code.is_empty() {
                return Ok(CowVal::owned(CelBool::from(false)));
            }
            let org = hidden(ftx, "@org")?;
            let chain = org
                .as_indexer()
                .ok_or_else(|| ExecutionError::InternalError("@org is not the org".to_owned()))?
                .get(&CelString::from(code.as_str()))?;
            let found = chain
                .as_container()
                .map(|c| c.contains(&CelString::from(root.as_str())))
                .transpose()?
                .unwrap_or(false);
            Ok(CowVal::owned(CelBool::from(found)))
        }),
    );
}
