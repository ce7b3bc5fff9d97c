//! Load time of a large CSV source. Run in release:
//! `cargo test --release -p koppel-connectors -- --ignored --nocapture`
//!
//! Measured on the 2-core project machine (AMD EPYC, 2 vCPUs), 100,000 persons (2 custom
//! columns) and 120,000 contracts, wall time, best of 7 (in id order) and of 3 (random order):
//!
//! | machine                                         | files in id order | random order |
//! | ----------------------------------------------- | ----------------- | ------------ |
//! | to itself (run under `chrt -f 50`)              | 0.17–0.18 s       | 0.28–0.31 s  |
//! | shared with two other compilers (`nice -n -20`) | 0.29–0.32 s       | 0.42–0.56 s  |
//!
//! Nearly all of it is the model's own cost: about 2.5 million `String`s and a `BTreeMap`
//! per person must be allocated and filled.

use std::fmt::Write;
use std::time::Instant;

use super::Fixture;

#[test]
#[ignore = "a timing run: use --release -- --ignored --nocapture"]
fn load_100k_persons_and_120k_contracts() {
    let fx = Fixture::new();
    let persons_n = 100_000;
    let mut persons = String::from(
        "external_id,given_name,nickname,initials,family_name_prefix,family_name,partner_name_prefix,partner_name,naming_convention,email,phone,excluded,employee_group,badge\n",
    );
    let mut contracts = String::from(
        "contract_id,external_id,start_date,end_date,department_code,title_code,title,location,cost_centre,manager_external_id,employment_type,fte,hours_per_week,sequence\n",
    );
    let mut departments = String::from("code,name,parent_code,manager_external_id\n");
    for i in 0..200 {
        let parent = if i == 0 {
            String::new()
        } else {
            format!("D{:03}", i / 10)
        };
        writeln!(departments, "D{i:03},Afdeling {i},{parent},{}", 100_000 + i).unwrap();
    }
    let mut contract_no = 0;
    for i in 0..persons_n {
        let id = 100_000 + i;
        writeln!(
            persons,
            "{id},Johanna{i},Anne,J.A.,van der,Berg{i},de,Vries,BP,anne.berg{i}@example.nl,+31 30 {i:07},,G{},B{i}",
            i % 7
        )
        .unwrap();
        // One contract each, and a second one for every fifth person: 120,000 in all.
        for k in 0..1 + usize::from(i % 5 == 0) {
            contract_no += 1;
            writeln!(
                contracts,
                "C{contract_no},{id},2020-01-{:02},{},D{:03},F{:03},Medewerker {},Utrecht,{},{},vast,\"0,8\",32,{}",
                1 + k,
                if k == 1 { "2026-12-31" } else { "" },
                i % 200,
                i % 90,
                i % 90,
                4000 + i % 50,
                100_000 + (i + 1) % persons_n,
                k + 1
            )
            .unwrap();
        }
    }
    fx.write("persons.csv", &persons);
    fx.write("contracts.csv", &contracts);
    fx.write("departments.csv", &departments);
    let sorted = measure(&fx, 7);

    // Persons and contracts in random order: sorting and lookups can no longer ride on the
    // file order.
    fx.write("persons.csv", shuffled(&persons, 1));
    fx.write("contracts.csv", shuffled(&contracts, 2));
    let random = measure(&fx, 3);

    println!(
        "csv load: {persons_n} persons ({} MB), 120000 contracts ({} MB), 200 departments:\n  \
         files in id order:     {sorted}\n  files in random order: {random}",
        persons.len() / 1_000_000,
        contracts.len() / 1_000_000,
    );
}

/// Loads `runs` times; wall time depends on what else the machine runs, CPU time (both
/// threads, and dropping the snapshot) less so.
fn measure(fx: &Fixture, runs: u32) -> String {
    let mut best = f64::MAX;
    let cpu_before = cpu_seconds();
    for _ in 0..runs {
        let start = Instant::now();
        let f = fx.load_csv().unwrap();
        let secs = start.elapsed().as_secs_f64();
        best = best.min(secs);
        assert_eq!(f.snapshot.persons.len(), 100_000);
        let n: usize = f.snapshot.persons.iter().map(|p| p.contracts.len()).sum();
        assert_eq!(n, 120_000);
        assert!(f.diagnostics.is_empty(), "{:?}", &f.diagnostics[..3]);
    }
    let cpu = cpu_before.and_then(|before| Some((cpu_seconds()? - before) / f64::from(runs)));
    format!(
        "wall best of {runs} {:.0} ms, CPU per load {}",
        best * 1000.0,
        cpu.map_or("unknown".into(), |c| format!("{:.0} ms", c * 1000.0)),
    )
}

/// The data lines of a CSV text in a random (reproducible) order, header first.
fn shuffled(csv: &str, seed: u64) -> String {
    let mut lines: Vec<&str> = csv.lines().collect();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for i in (2..lines.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let j = 1 + (state % i as u64) as usize;
        lines.swap(i, j);
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// User + system CPU time of this process so far, from /proc (Linux; 10 ms ticks).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
