//! Real servers for koppel's tests: each test starts its own throwaway `slapd`, shares the one
//! Samba AD domain controller the test script started, and gets TLS certificates made for it.
//!
//! Nothing here is a mock: these are Debian's own `slapd` and `samba` binaries on loopback.

pub mod samba;
pub mod scim;
pub mod slapd;
pub mod smtp;
pub mod tls;
