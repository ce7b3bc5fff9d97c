//! Integration tests of the file sources: real files in temporary folders and fixtures,
//! asserting what admins see (values, diagnostics, error messages).

mod csv;
mod json;
mod merge;
mod robustness;
mod speed;

use std::path::{Path, PathBuf};

use koppel_connectors::{Fetched, SourceError};
use koppel_core::Date;
use koppel_core::config::SourceConfig;
use serde_json::json;

/// A temporary config folder with an `hr/` subfolder for the data files.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("hr")).unwrap();
        Self { dir }
    }

    fn base(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `hr/<name>`.
    fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join("hr").join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    /// Loads a source given as JSON config (the same fields as in the TOML config).
    fn load(&self, config: serde_json::Value) -> Result<Fetched, SourceError> {
        let config: SourceConfig = serde_json::from_value(config).unwrap();
        koppel_connectors::load(&config, self.base())
    }

    fn load_csv(&self) -> Result<Fetched, SourceError> {
        self.load(json!({"kind": "csv", "dir": "hr"}))
    }
}

fn d(s: &str) -> Date {
    s.parse().unwrap()
}

/// Runs a future that never waits (file sources do their work in one poll).
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("file sources complete without waiting"),
    }
}

/// The codes of the diagnostics, in order.
fn codes(f: &Fetched) -> Vec<&str> {
    f.diagnostics.iter().map(|d| d.code.as_str()).collect()
}
