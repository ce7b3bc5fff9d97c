//! The `koppel` command line: plan, apply, explain, validate, demo.
//! The only place that reads the clock and the environment; everything else is passed in.

fn main() {}
