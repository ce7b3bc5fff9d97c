//! Visma Raet / Youforce IAM API: the `visma` source (persons, employments or assignments,
//! organization units, job profiles) and the `visma` write-back target (a user's identity).

pub mod client;
pub mod config;
pub mod source;
pub mod writeback;

pub use client::VismaClient;
pub use config::{VismaApi, VismaSourceConfig, VismaTargetConfig};
pub use source::VismaSource;
pub use writeback::VismaTarget;
