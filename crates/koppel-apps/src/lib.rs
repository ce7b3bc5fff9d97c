//! koppel's application targets: SaaS applications organisations name by brand, each a
//! `Target` on the shared conformance suite. One crate, one module per vendor, because they
//! share the HTTP layer (OAuth2 tokens, 429 `Retry-After`, retries) and one build.
//!
//! * [`graph`]: Entra ID over Microsoft Graph v1.0 (users, manager, group memberships, JSON
//!   batching).

mod error;
pub mod graph;

pub use error::AppsError;
