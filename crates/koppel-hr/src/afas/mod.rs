//! AFAS Profit: the `afas` source (persons, contracts and organizational units from
//! GetConnectors) and the `afas` write-back target (KnEmployee / KnUser UpdateConnectors).

pub mod client;
pub mod config;
pub mod source;
pub mod writeback;

pub use client::AfasClient;
pub use config::{AfasApi, AfasSourceConfig, AfasTargetConfig};
pub use source::AfasSource;
pub use writeback::AfasTarget;
