//! `koppel demo`: the embedded demo organisation (examples/demo) through the rules, so a
//! fresh machine sees koppel's main job with one command and no files of its own.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use crate::{Common, Output, render, run};

/// The demo's files, compiled into the binary.
const FILES: &[(&str, &str)] = &[
    (
        "koppel.toml",
        include_str!("../../../examples/demo/koppel.toml"),
    ),
    (
        "hr/persons.csv",
        include_str!("../../../examples/demo/hr/persons.csv"),
    ),
    (
        "hr/contracts.csv",
        include_str!("../../../examples/demo/hr/contracts.csv"),
    ),
    (
        "hr/departments.csv",
        include_str!("../../../examples/demo/hr/departments.csv"),
    ),
];

/// The day the demo data was made for: the demo reads the same on any day.
pub const DEMO_DATE: (i32, u32, u32) = (2026, 11, 23);

pub fn run(output: Output, full: bool) -> anyhow::Result<ExitCode> {
    let dir = tempfile::tempdir()?;
    for (name, text) in FILES {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let (y, m, d) = DEMO_DATE;
    let common = Common {
        config: dir.path().join("koppel.toml"),
        now: koppel_core::Date::from_ymd_opt(y, m, d),
        state: None,
    };
    let loaded = run::load(&common)?;
    let plan = loaded.plan();
    if output == Output::Json {
        println!("{}", render::plan_json(&plan)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = anstream::stdout().lock();
    writeln!(
        out,
        "koppel demo: the synthetic municipality in examples/demo (HR data of {}), planned into an empty set of targets.\n",
        common.now.map(|d| d.to_string()).unwrap_or_default()
    )?;
    render::header(&mut out, &loaded, &plan)?;
    render::actions(
        &mut out,
        &loaded.snapshot,
        &plan,
        if full { None } else { Some(3) },
    )?;
    render::footer(&mut out, &plan)?;
    writeln!(
        out,
        "\nTry: koppel explain <id> --config examples/demo/koppel.toml --now 2026-11-23 (see examples/demo/README.md for people worth a look)"
    )?;
    Ok(ExitCode::SUCCESS)
}
