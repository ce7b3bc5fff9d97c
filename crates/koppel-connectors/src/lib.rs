//! Connectors: everything in koppel that talks to the outside world, behind the `Source`
//! and `Target` traits, so the engine never knows which system it talks to.

pub mod conformance;
pub mod directory;
pub mod file;
pub mod lazy;
pub mod settings;
pub mod source;
pub mod target;

pub use directory::DirectoryTarget;
pub use file::FileSource;
pub use source::{Fetched, RowError, Source, SourceError, load, merge, source_for};
