//! Local stand-ins for application APIs koppel provisions but that cannot run here (Microsoft
//! Graph for Entra ID), each following the vendor's documented requests, responses and limits.
//!
//! Servers reuse `koppel-hr-fixture`'s runner and request log (own thread and runtime,
//! stopped on drop), so sync and async tests use them alike.

pub mod graph;

use std::sync::Arc;

pub use graph::{GraphOptions, GraphState};
pub use koppel_hr_fixture::{Logged, Running};

/// A running Microsoft Graph (Entra ID) stand-in.
pub struct GraphFixture {
    pub state: Arc<GraphState>,
    pub server: Running,
}

impl GraphFixture {
    pub fn start(options: GraphOptions) -> std::io::Result<GraphFixture> {
        Self::start_on(options, "127.0.0.1:0")
    }

    pub fn start_on(options: GraphOptions, addr: &str) -> std::io::Result<GraphFixture> {
        let state = GraphState::new(options);
        let server = koppel_hr_fixture::serve(graph::router(state.clone()), addr)?;
        Ok(GraphFixture { state, server })
    }

    /// `http://127.0.0.1:port`: both the login host (`/{tenant}/oauth2/v2.0/token`) and the
    /// Graph host (`/v1.0/...`).
    pub fn url(&self) -> String {
        self.server.url()
    }
}
