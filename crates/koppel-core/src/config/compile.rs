//! Checking a parsed configuration and compiling its expressions, collecting every error
//! with its place in the file, so `koppel validate` reports all of them in one go.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use toml::Spanned;

use super::{
    AttributeConfig, CONFIG_VERSION, ConfigFile, GeneratorConfig, Guards, Lifecycle, RuleConfig,
    SourceConfig, StoreConfig, TargetConfig, TargetKind, Thresholds,
};
use crate::expr::{CompileError, Expr, ExprEngine};
use crate::org::PrimaryOrdering;

use super::Regenerate;

/// A configuration problem at a place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based line and column in the file; 0 when unknown.
    pub line: usize,
    pub column: usize,
    /// What the problem is in: `rule "staff" condition`, `target "ad"`, …
    pub context: String,
    pub message: String,
    /// The expression with a caret under the failing position, for expression errors.
    pub snippet: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if self.context.is_empty() {
            write!(f, ": {}", self.message)?;
        } else {
            write!(f, ": {}: {}", self.context, self.message)?;
        }
        if let Some(s) = &self.snippet {
            for l in s.lines() {
                write!(f, "\n    {l}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// One mapped account attribute.
#[derive(Clone)]
pub struct AttributeDef {
    pub name: String,
    pub expr: Expr,
    pub on_create_only: bool,
    pub store: bool,
}

/// A generator of unique values, compiled.
#[derive(Clone)]
pub struct CompiledGenerator {
    pub name: String,
    pub candidates: Vec<Expr>,
    /// Field name and its expression over `value` and `n`, in name order.
    pub fields: Vec<(String, Expr)>,
    pub max_iterations: u32,
    pub iteration: Expr,
    pub regenerate: Regenerate,
    pub release_retention_days: u32,
}

#[derive(Clone)]
pub struct CompiledTarget {
    pub name: String,
    pub kind: TargetKind,
    pub description: String,
    pub correlation: Option<String>,
    pub lifecycle: Lifecycle,
    pub thresholds: Thresholds,
    /// In name order.
    pub attributes: Vec<AttributeDef>,
    pub generators: Vec<CompiledGenerator>,
    pub connection: Option<toml::Table>,
    /// Targets whose account data this target's mappings read.
    pub depends_on: Vec<String>,
}

impl CompiledTarget {
    /// Names of all attributes generators produce in this target.
    pub fn generated_fields(&self) -> impl Iterator<Item = &str> {
        self.generators
            .iter()
            .flat_map(|g| g.fields.iter().map(|(f, _)| f.as_str()))
    }

    /// The mapping of the correlation attribute, when the target has one (loading checks
    /// that it is mapped).
    pub fn correlation_attribute(&self) -> Option<&AttributeDef> {
        let name = self.correlation.as_deref()?;
        self.attributes.iter().find(|a| a.name == name)
    }
}

#[derive(Clone)]
pub enum PermissionKind {
    Static(String),
    Dynamic(Expr),
}

#[derive(Clone)]
pub struct CompiledPermission {
    /// Index into [`CompiledConfig::targets`].
    pub target: usize,
    pub kind: PermissionKind,
}

#[derive(Clone)]
pub struct CompiledRule {
    pub id: String,
    pub description: String,
    pub condition: Option<Expr>,
    pub contract_condition: Option<Expr>,
    /// Indices into [`CompiledConfig::targets`].
    pub accounts: Vec<usize>,
    pub permissions: Vec<CompiledPermission>,
}

/// A person field the configuration requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequiredField {
    Given,
    Nickname,
    Initials,
    Family,
    Email,
    Phone,
    Custom(String),
    Contracts,
}

impl RequiredField {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "name.given" => Self::Given,
            "name.nickname" => Self::Nickname,
            "name.initials" => Self::Initials,
            "name.family" => Self::Family,
            "email" => Self::Email,
            "phone" => Self::Phone,
            "contracts" => Self::Contracts,
            _ => match s.strip_prefix("custom.") {
                Some(name) if !name.is_empty() => Self::Custom(name.to_owned()),
                _ => return None,
            },
        })
    }

    /// True when `person` lacks this field.
    pub fn missing_in(&self, person: &crate::Person) -> bool {
        match self {
            Self::Given => person.name.given.trim().is_empty(),
            Self::Nickname => person.name.nickname.trim().is_empty(),
            Self::Initials => person.name.initials.trim().is_empty(),
            Self::Family => person.name.family.trim().is_empty(),
            Self::Email => person.email.trim().is_empty(),
            Self::Phone => person.phone.trim().is_empty(),
            Self::Custom(k) => person.custom.get(k).is_none_or(|v| v.trim().is_empty()),
            Self::Contracts => person.contracts.is_empty(),
        }
    }

    pub fn name(&self) -> String {
        match self {
            Self::Given => "name.given".into(),
            Self::Nickname => "name.nickname".into(),
            Self::Initials => "name.initials".into(),
            Self::Family => "name.family".into(),
            Self::Email => "email".into(),
            Self::Phone => "phone".into(),
            Self::Custom(k) => format!("custom.{k}"),
            Self::Contracts => "contracts".into(),
        }
    }
}

/// A checked configuration with every expression compiled; targets in dependency order.
pub struct CompiledConfig {
    pub file: String,
    pub engine: ExprEngine,
    pub required_fields: Vec<RequiredField>,
    pub primary: PrimaryOrdering,
    pub sources: Vec<SourceConfig>,
    pub guards: Guards,
    pub store: StoreConfig,
    /// `[serve]`: the daemon's settings, checked by the server crate.
    pub serve: Option<toml::Table>,
    /// `[notifications]`: e-mail settings, checked by the notify crate.
    pub notifications: Option<toml::Table>,
    pub targets: Vec<CompiledTarget>,
    pub rules: Vec<CompiledRule>,
}

impl CompiledConfig {
    pub fn target_index(&self, name: &str) -> Option<usize> {
        self.targets.iter().position(|t| t.name == name)
    }
}

/// Line and column (1-based, column in characters) of a byte offset in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

struct Checker<'a> {
    text: &'a str,
    file: &'a str,
    engine: ExprEngine,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn error_at(&mut self, offset: usize, context: impl Into<String>, message: impl Into<String>) {
        let (line, column) = line_col(self.text, offset);
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            line,
            column,
            context: context.into(),
            message: message.into(),
            snippet: None,
        });
    }

    /// Compiles `source`, found in the file within `item_span`; an error points at the exact
    /// place in the file when the expression is written there literally (no escapes).
    fn expr(
        &mut self,
        source: &str,
        item_span: std::ops::Range<usize>,
        context: impl Into<String>,
    ) -> Option<Expr> {
        match self.engine.compile(source) {
            Ok(e) => Some(e),
            Err(err) => {
                let context = context.into();
                self.expr_error(source, item_span, context, &err);
                None
            }
        }
    }

    fn expr_error(
        &mut self,
        source: &str,
        item_span: std::ops::Range<usize>,
        context: String,
        err: &CompileError,
    ) {
        // The item's span may cover only a table header: look from its start onwards; the
        // first occurrence after it is the expression's own.
        let region = self.text.get(item_span.start..).unwrap_or("");
        let offset = match region.find(source).filter(|_| !source.is_empty()) {
            Some(at) => item_span.start + at + err.offset.min(source.len()),
            None => item_span.start,
        };
        let (line, column) = line_col(self.text, offset);
        let snippet = caret_snippet(source, err.line, err.column);
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            line,
            column,
            context,
            message: format!(
                "{} (expression line {}, column {})",
                err.message, err.line, err.column
            ),
            snippet: Some(snippet),
        });
    }
}

/// The expression line that failed, with a caret under the column.
fn caret_snippet(source: &str, line: usize, column: usize) -> String {
    let text = source.lines().nth(line.saturating_sub(1)).unwrap_or(source);
    format!("{text}\n{}^", " ".repeat(column.saturating_sub(1)))
}

/// Target names an expression reads through `accounts.<name>` or `accounts["name"]`.
///
/// A textual scan is enough here: identifiers cannot contain `accounts.` inside a string
/// literal without also reading it, and a false positive only orders targets more strictly.
fn account_refs(source: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = source.as_bytes();
    let mut i = 0;
    while let Some(at) = source[i..].find("accounts") {
        let start = i + at;
        let prev_ident = start > 0 && is_ident(bytes[start - 1]);
        let mut j = start + "accounts".len();
        i = j;
        if prev_ident {
            continue;
        }
        if bytes.get(j) == Some(&b'.') {
            j += 1;
            let name_end = j + source[j..].bytes().take_while(|b| is_ident(*b)).count();
            if name_end > j {
                out.insert(source[j..name_end].to_owned());
            }
        } else if bytes.get(j) == Some(&b'[') {
            let rest = &source[j + 1..];
            let quote = rest.chars().next();
            if let Some(q @ ('"' | '\'')) = quote
                && let Some(end) = rest[1..].find(q)
            {
                out.insert(rest[1..1 + end].to_owned());
            }
        }
    }
    out
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Parses and checks a configuration file's text. `file` names it in errors.
pub fn load(text: &str, file: &str) -> Result<CompiledConfig, Vec<ConfigError>> {
    let raw: ConfigFile = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let (line, column) = e.span().map_or((0, 0), |s| line_col(text, s.start));
            return Err(vec![ConfigError {
                file: file.to_owned(),
                line,
                column,
                context: String::new(),
                message: e.message().trim().to_owned(),
                snippet: None,
            }]);
        }
    };
    let mut ck = Checker {
        text,
        file,
        engine: ExprEngine::new(&raw.settings.transliteration),
        errors: Vec::new(),
    };

    if *raw.version.get_ref() != CONFIG_VERSION {
        ck.error_at(
            raw.version.span().start,
            "version",
            format!(
                "this koppel reads configuration version {CONFIG_VERSION}, the file says {}",
                raw.version.get_ref()
            ),
        );
    }

    let mut required_fields = Vec::new();
    for f in &raw.settings.required_fields {
        match RequiredField::parse(f.get_ref()) {
            Some(r) => required_fields.push(r),
            None => ck.error_at(
                f.span().start,
                "settings.required_fields",
                format!(
                    "unknown person field {:?}: use name.given, name.nickname, name.initials, \
                     name.family, email, phone, contracts or custom.<column>",
                    f.get_ref()
                ),
            ),
        }
    }
    let primary = raw
        .settings
        .primary_contract
        .clone()
        .map(|keys| PrimaryOrdering { keys })
        .unwrap_or_default();

    let mut targets = Vec::new();
    let mut seen_targets = BTreeSet::new();
    for t in &raw.targets {
        let span = t.span();
        if !seen_targets.insert(t.get_ref().name.clone()) {
            ck.error_at(
                span.start,
                format!("target {:?}", t.get_ref().name),
                "a target with this name is already defined",
            );
        }
        if let Some(ct) = compile_target(&mut ck, t) {
            targets.push(ct);
        }
    }
    let names: BTreeSet<String> = raw
        .targets
        .iter()
        .map(|t| t.get_ref().name.clone())
        .collect();
    for (t, raw_t) in targets.iter().zip(raw.targets.iter()) {
        for dep in &t.depends_on {
            if !names.contains(dep) {
                ck.error_at(
                    raw_t.span().start,
                    format!("target {:?}", t.name),
                    format!("a mapping reads accounts.{dep}, but there is no target {dep:?}"),
                );
            }
        }
    }
    let targets = match order_targets(targets) {
        Ok(t) => t,
        Err(cycle) => {
            ck.error_at(
                0,
                "targets",
                format!(
                    "the targets read each other's account data in a cycle: {}",
                    cycle.join(" -> ")
                ),
            );
            Vec::new()
        }
    };

    let mut rules = Vec::new();
    let mut seen_rules = BTreeSet::new();
    for r in &raw.rules {
        if !seen_rules.insert(r.get_ref().id.clone()) {
            ck.error_at(
                r.span().start,
                format!("rule {:?}", r.get_ref().id),
                "a rule with this id is already defined",
            );
        }
        if let Some(cr) = compile_rule(&mut ck, r, &targets, &names) {
            rules.push(cr);
        }
    }

    if !ck.errors.is_empty() {
        return Err(ck.errors);
    }
    Ok(CompiledConfig {
        file: file.to_owned(),
        engine: ck.engine,
        required_fields,
        primary,
        sources: raw.sources,
        guards: raw.guards,
        store: raw.store,
        serve: raw.serve,
        notifications: raw.notifications,
        targets,
        rules,
    })
}

fn compile_target(ck: &mut Checker<'_>, t: &Spanned<TargetConfig>) -> Option<CompiledTarget> {
    let span = t.span();
    let t = t.get_ref();
    let ctx = |what: &str| format!("target {:?} {what}", t.name);
    let before = ck.errors.len();
    if t.name.is_empty() || !t.name.bytes().all(is_ident) {
        ck.error_at(
            span.start,
            ctx("name"),
            "a target name must be letters, digits and `_` (it is used as accounts.<name>)",
        );
    }
    let mut depends_on = BTreeSet::new();
    let mut attributes = Vec::new();
    for (name, a) in &t.attributes {
        let table = a.get_ref().table();
        for dep in account_refs(&table.value) {
            if dep != t.name {
                depends_on.insert(dep);
            }
        }
        if let Some(expr) = ck.expr(&table.value, a.span(), ctx(&format!("attribute {name:?}"))) {
            attributes.push(AttributeDef {
                name: name.clone(),
                expr,
                on_create_only: table.on_create_only,
                store: table.store,
            });
        }
        if matches!(a.get_ref(), AttributeConfig::Full(tb) if tb.value.trim().is_empty()) {
            ck.error_at(
                a.span().start,
                ctx(&format!("attribute {name:?}")),
                "empty expression",
            );
        }
    }
    let mut generators = Vec::new();
    let mut generated = BTreeMap::new();
    for (gname, g) in &t.generators {
        let gspan = g.span();
        let gctx = ctx(&format!("generator {gname:?}"));
        if let Some(cg) = compile_generator(ck, gname, g.get_ref(), gspan.clone(), &gctx) {
            for (field, _) in &cg.fields {
                if t.attributes.contains_key(field) {
                    ck.error_at(
                        gspan.start,
                        gctx.clone(),
                        format!("field {field:?} is also mapped as an attribute: keep one"),
                    );
                }
                if let Some(other) = generated.insert(field.clone(), gname.clone()) {
                    ck.error_at(
                        gspan.start,
                        gctx.clone(),
                        format!("field {field:?} is also produced by generator {other:?}"),
                    );
                }
            }
            generators.push(cg);
        }
    }
    let correlation = t.correlation.as_ref().map(|c| {
        let name = c.get_ref().clone();
        if !t.attributes.contains_key(&name) && !generated.contains_key(&name) {
            ck.error_at(
                c.span().start,
                ctx("correlation"),
                format!("correlation attribute {name:?} is not mapped: add it to the attributes"),
            );
        }
        name
    });
    if ck.errors.len() > before {
        return None;
    }
    Some(CompiledTarget {
        name: t.name.clone(),
        kind: t.kind,
        description: t.description.clone(),
        correlation,
        lifecycle: t.lifecycle,
        thresholds: t.thresholds,
        attributes,
        generators,
        connection: t.connection.clone(),
        depends_on: depends_on.into_iter().collect(),
    })
}

fn compile_generator(
    ck: &mut Checker<'_>,
    name: &str,
    g: &GeneratorConfig,
    span: std::ops::Range<usize>,
    ctx: &str,
) -> Option<CompiledGenerator> {
    let before = ck.errors.len();
    if g.candidates.is_empty() {
        ck.error_at(span.start, ctx, "needs at least one candidate");
    }
    if g.fields.is_empty() {
        ck.error_at(span.start, ctx, "needs at least one field");
    }
    let all_sources = g
        .candidates
        .iter()
        .chain(g.fields.values())
        .chain(std::iter::once(&g.iteration));
    for src in all_sources {
        if !account_refs(src).is_empty() {
            ck.error_at(
                span.start,
                ctx,
                format!(
                    "{src:?} reads accounts: generators work from the person alone, \
                     so that every target can reserve values before any is written"
                ),
            );
        }
    }
    let candidates: Vec<_> = g
        .candidates
        .iter()
        .enumerate()
        .filter_map(|(i, c)| ck.expr(c, span.clone(), format!("{ctx} candidate {}", i + 1)))
        .collect();
    let fields: Vec<_> = g
        .fields
        .iter()
        .filter_map(|(f, src)| {
            ck.expr(src, span.clone(), format!("{ctx} field {f:?}"))
                .map(|e| (f.clone(), e))
        })
        .collect();
    let iteration = ck.expr(&g.iteration, span.clone(), format!("{ctx} iteration"));
    if ck.errors.len() > before {
        return None;
    }
    Some(CompiledGenerator {
        name: name.to_owned(),
        candidates,
        fields,
        max_iterations: g.max_iterations,
        iteration: iteration?,
        regenerate: g.regenerate,
        release_retention_days: g.release_retention_days,
    })
}

fn compile_rule(
    ck: &mut Checker<'_>,
    r: &Spanned<RuleConfig>,
    targets: &[CompiledTarget],
    names: &BTreeSet<String>,
) -> Option<CompiledRule> {
    let span = r.span();
    let r = r.get_ref();
    let before = ck.errors.len();
    let ctx = |what: &str| format!("rule {:?} {what}", r.id);
    if r.id.trim().is_empty() {
        ck.error_at(span.start, "rule", "a rule needs a non-empty id");
    }
    let condition = r
        .condition
        .as_deref()
        .and_then(|c| ck.expr(c, span.clone(), ctx("condition")));
    let contract_condition = r
        .contract_condition
        .as_deref()
        .and_then(|c| ck.expr(c, span.clone(), ctx("contract_condition")));
    let index = |name: &str| targets.iter().position(|t| t.name == name);
    let mut accounts = Vec::new();
    for a in &r.accounts {
        match index(a) {
            Some(i) => accounts.push(i),
            // Unknown names are reported; a known target missing from `targets` failed to
            // compile and has its own error already.
            None if !names.contains(a) => ck.error_at(
                span.start,
                ctx("accounts"),
                format!("there is no target {a:?}"),
            ),
            None => {}
        }
    }
    accounts.sort_unstable();
    accounts.dedup();
    let mut permissions = Vec::new();
    for (i, p) in r.permissions.iter().enumerate() {
        let pctx = ctx(&format!("permission {}", i + 1));
        let target = match index(&p.target) {
            Some(t) => t,
            None => {
                if !names.contains(&p.target) {
                    ck.error_at(
                        span.start,
                        pctx,
                        format!("there is no target {:?}", p.target),
                    );
                }
                continue;
            }
        };
        let kind = match (&p.group, &p.dynamic) {
            (Some(g), None) if !g.trim().is_empty() => PermissionKind::Static(g.clone()),
            (None, Some(d)) => match ck.expr(d, span.clone(), pctx) {
                Some(e) => PermissionKind::Dynamic(e),
                None => continue,
            },
            _ => {
                ck.error_at(
                    span.start,
                    pctx,
                    "give exactly one of `group` (a static group name) or `dynamic` (an expression)",
                );
                continue;
            }
        };
        permissions.push(CompiledPermission { target, kind });
    }
    if ck.errors.len() > before {
        return None;
    }
    Some(CompiledRule {
        id: r.id.clone(),
        description: r.description.clone(),
        condition,
        contract_condition,
        accounts,
        permissions,
    })
}

/// Orders targets so that each comes after the targets whose account data it reads; keeps
/// the file order otherwise. A cycle is returned as the names along it.
fn order_targets(targets: Vec<CompiledTarget>) -> Result<Vec<CompiledTarget>, Vec<String>> {
    let mut remaining: Vec<CompiledTarget> = targets;
    let mut ordered: Vec<CompiledTarget> = Vec::with_capacity(remaining.len());
    while !remaining.is_empty() {
        let placed: BTreeSet<&str> = ordered.iter().map(|t| t.name.as_str()).collect();
        let ready = remaining.iter().position(|t| {
            t.depends_on
                .iter()
                .all(|d| placed.contains(d.as_str()) || !remaining.iter().any(|r| &r.name == d))
        });
        match ready {
            Some(i) => ordered.push(remaining.remove(i)),
            None => {
                let mut cycle: Vec<String> = remaining.iter().map(|t| t.name.clone()).collect();
                if let Some(first) = cycle.first().cloned() {
                    cycle.push(first);
                }
                return Err(cycle);
            }
        }
    }
    Ok(ordered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_refs_finds_dot_and_index_forms() {
        let r = account_refs("accounts.ad.mail + accounts['plek'].id + myaccounts.x");
        assert_eq!(r.into_iter().collect::<Vec<_>>(), ["ad", "plek"]);
    }

    #[test]
    fn line_col_counts_chars() {
        let t = "ab\ncdé\nf";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 3), (2, 1));
        assert_eq!(line_col(t, 8), (3, 1));
        assert_eq!(line_col(t, 5), (2, 3));
    }
}
