//! Garbage in: random bytes and damaged files give errors or data, never a panic.

use super::Fixture;
use serde_json::json;

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const PERSONS: &str = "external_id,given_name,naming_convention,excluded,custom\n\
1,Anne,BP,ja,\"x\ny\"\n2,Piet,,0,z\n";
const CONTRACTS: &str = "contract_id,external_id,start_date,end_date,department_code,fte,sequence\n\
c1,1,2026-01-01,2026-12-31T00:00:00Z,A,\"0,8\",1\nc2,2,2026-01-01,,B,1,\n";
const DEPARTMENTS: &str = "code,name,parent_code\nA,Alpha,\nB,Beta,A\n";
const HELLOID: &str = r#"[{"ExternalId":"1","Name":{"GivenName":"A","Convention":"B"},
"Contracts":[{"ExternalId":"c","StartDate":"2026-01-01T00:00:00","Details":{"Fte":"0,5"}}]}]"#;
const KOPPEL: &str = r#"[{"external_id":"1","contracts":[{"id":"c","start":"2026-01-01"}]}]"#;

/// Damages a valid file: truncation, flipped or inserted bytes, or pure noise.
fn damage(rng: &mut Rng, valid: &[u8]) -> Vec<u8> {
    let mut out = valid.to_vec();
    match rng.below(4) {
        0 => out.truncate(rng.below(out.len())),
        1 => {
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(out.len());
                out[i] = rng.next() as u8;
            }
        }
        2 => {
            const NASTY: &[u8] = b"\",;\n\r\xEF\xBB\xBF\xFF{}[]:0-T";
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(out.len() + 1);
                out.insert(i, NASTY[rng.below(NASTY.len())]);
            }
        }
        _ => {
            out = (0..rng.below(200)).map(|_| rng.next() as u8).collect();
        }
    }
    out
}

#[test]
fn damaged_files_never_panic() {
    let fx = Fixture::new();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let csv = json!({"kind": "csv", "dir": "hr"});
    let helloid = json!({"kind": "json", "file": "hr/h.json", "shape": "helloid"});
    let koppel = json!({"kind": "json", "file": "hr/k.json"});
    for round in 0..600 {
        fx.write("persons.csv", damage(&mut rng, PERSONS.as_bytes()));
        fx.write("contracts.csv", damage(&mut rng, CONTRACTS.as_bytes()));
        fx.write("departments.csv", damage(&mut rng, DEPARTMENTS.as_bytes()));
        fx.write("h.json", damage(&mut rng, HELLOID.as_bytes()));
        fx.write("k.json", damage(&mut rng, KOPPEL.as_bytes()));
        for config in [&csv, &helloid, &koppel] {
            // Either outcome is fine; the error must also render.
            if let Err(e) = fx.load(config.clone()) {
                assert!(!e.to_string().is_empty(), "round {round}");
            }
        }
    }
}
