//! Configuration errors: every one names the file, the line and column, and for expressions
//! the rule or mapping and the position inside the expression.

use koppel_core::config::{self, ConfigError};

fn errors(text: &str) -> Vec<ConfigError> {
    match config::load(text, "koppel.toml") {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e,
    }
}

const BASE: &str = r#"version = 1

[[targets]]
name = "ad"
kind = "directory"

[targets.attributes]
mail = "person.email"
"#;

#[test]
fn a_valid_config_loads() {
    let c = config::load(BASE, "koppel.toml").unwrap();
    assert_eq!(c.targets.len(), 1);
}

#[test]
fn unknown_field_is_named_with_its_line() {
    let text = format!("{BASE}\n[[rules]]\nid = \"x\"\nacounts = [\"ad\"]\n");
    let e = errors(&text);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].line, 12);
    assert!(e[0].message.contains("acounts"), "{}", e[0]);
    assert!(e[0].to_string().starts_with("koppel.toml:12:"), "{}", e[0]);
}

#[test]
fn broken_expression_names_rule_and_position() {
    let text = format!(
        "{BASE}\n[[rules]]\nid = \"finance\"\ncondition = \"person.name.given == 'x' &&\"\naccounts = [\"ad\"]\n"
    );
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    let err = &e[0];
    assert_eq!(err.context, "rule \"finance\" condition");
    assert_eq!(err.line, 12, "{err}");
    // The error sits at the end of the expression, inside the quotes on that line.
    assert!(err.column > 14, "{err}");
    assert!(err.snippet.as_deref().unwrap().contains('^'));
}

#[test]
fn unknown_variable_and_function_are_compile_errors_at_their_place() {
    let text = format!(
        "{BASE}\n[[rules]]\nid = \"a\"\ncondition = \"persn.name.given == 'x'\"\n\n[[rules]]\nid = \"b\"\ncondition = \"lowr(person.name.given) == 'x'\"\n"
    );
    let e = errors(&text);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].message.contains("persn"), "{}", e[0]);
    assert_eq!((e[0].line, e[0].column), (12, 14), "{}", e[0]);
    assert!(e[1].message.contains("lowr"), "{}", e[1]);
    assert_eq!(e[1].line, 16);
}

#[test]
fn every_error_is_reported_at_once() {
    let text = r#"version = 1

[[targets]]
name = "ad"
kind = "directory"
attributes = { a = "person.nope", b = "1 +" }

[[targets]]
name = "plek"
kind = "scim"

[[rules]]
id = "r"
accounts = ["nowhere"]
permissions = [{ target = "plek" }]

[[rules]]
id = "r"
"#;
    let e = errors(text);
    let all = e
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(e.len() >= 5, "{all}");
    assert!(all.contains("attribute \"a\""), "{all}");
    assert!(all.contains("attribute \"b\""), "{all}");
    assert!(all.contains("there is no target \"nowhere\""), "{all}");
    assert!(all.contains("exactly one of `group`"), "{all}");
    assert!(all.contains("already defined"), "{all}");
}

#[test]
fn targets_reading_each_other_in_a_cycle_are_refused() {
    let text = r#"version = 1
[[targets]]
name = "a"
kind = "directory"
attributes = { x = "accounts.b.y" }
[[targets]]
name = "b"
kind = "scim"
attributes = { y = "accounts.a.x" }
"#;
    let e = errors(text);
    assert!(e[0].message.contains("cycle"), "{}", e[0]);
}

#[test]
fn targets_are_ordered_by_what_they_read() {
    let text = r#"version = 1
[[targets]]
name = "plek"
kind = "scim"
attributes = { mail = "accounts.ad.mail" }
[[targets]]
name = "ad"
kind = "directory"
attributes = { mail = "person.email" }
"#;
    let c = config::load(text, "k.toml").unwrap();
    let names: Vec<_> = c.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["ad", "plek"]);
    assert_eq!(c.targets[1].depends_on, ["ad"]);
}

#[test]
fn wrong_version_and_bad_limits() {
    let e = errors("version = 2\n");
    assert!(e[0].message.contains("version 1"), "{}", e[0]);
    assert_eq!(e[0].line, 1);
    let e = errors("version = 1\n[guards]\nremoved = \"ten percent\"\n");
    assert!(e[0].message.contains("percentage"), "{}", e[0]);
    assert_eq!(e[0].line, 3);
}

#[test]
fn generators_may_not_read_accounts_and_fields_may_not_clash() {
    let text = r#"version = 1
[[targets]]
name = "ad"
kind = "directory"
attributes = { username = "person.external_id" }
[targets.generators.u]
candidates = ["accounts.ad.username"]
fields = { login = "value" }
[targets.generators.v]
candidates = ["person.external_id"]
fields = { username = "value" }
"#;
    let e = errors(text);
    let all = e
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(all.contains("reads accounts"), "{all}");
    assert!(all.contains("also mapped as an attribute"), "{all}");
}

#[test]
fn correlation_must_be_mapped_and_required_fields_known() {
    let text = r#"version = 1
[settings]
required_fields = ["name.family", "shoe_size"]
[[targets]]
name = "ad"
kind = "directory"
correlation = "employeeID"
attributes = { mail = "person.email" }
"#;
    let e = errors(text);
    let all = e
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(all.contains("shoe_size"), "{all}");
    assert!(
        all.contains("correlation attribute \"employeeID\" is not mapped"),
        "{all}"
    );
}
