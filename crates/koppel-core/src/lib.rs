//! koppel's pure core: the HR model, CEL expressions, rules, mappings, generators and the
//! planner. No I/O, no clock, no async: time is an argument and output is deterministic.

pub mod config;
pub mod diag;
pub mod expr;
pub mod guard;
pub mod live;
pub mod model;
pub mod names;
pub mod org;
pub mod plan;
pub mod state;
pub mod threshold;
pub mod value;

pub use diag::{Diagnostic, Location, Severity};
pub use live::LiveValues;
pub use model::{
    Contract, Date, Department, NamingConvention, Person, PersonName, Snapshot, Title,
};
pub use org::{Org, PrimaryOrdering};
pub use plan::{Action, ActionKind, Plan, PlanInput, plan};
pub use state::{KnownAccount, KnownState, TargetState};
pub use value::AttrValue;
