//! Local stand-ins for the Visma Youforce IAM API (with Visma Connect's token endpoint) and
//! the AFAS Profit REST services, following the vendors' documented requests and responses,
//! for koppel's tests, examples and benchmarks. Neither SaaS can run here; each module's
//! doc says what it follows and where the documentation is silent.
//!
//! A fixture runs on its own thread and runtime, so sync tests (driving the `koppel` binary)
//! and async tests use it alike; dropping it stops the server.

pub mod afas;
pub mod log;
pub mod tenant;
pub mod visma;

use std::net::SocketAddr;
use std::sync::Arc;

pub use afas::{AfasOptions, AfasState};
pub use log::Logged;
pub use tenant::{AfasTenant, VismaTenant};
pub use visma::{VismaOptions, VismaState};

/// A server on its own thread; dropped, it stops.
pub struct Running {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves `router` on `addr` (`127.0.0.1:0` for a free port).
pub fn serve(router: axum::Router, addr: &str) -> std::io::Result<Running> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name(format!("hr-fixture-{}", addr.port()))
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let _ = axum::serve(listener, router)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await;
            });
        })?;
    Ok(Running {
        addr,
        shutdown: Some(tx),
        thread: Some(thread),
    })
}

/// A running Youforce stand-in.
pub struct VismaFixture {
    pub state: Arc<VismaState>,
    pub server: Running,
}

impl VismaFixture {
    pub fn start(options: VismaOptions, tenant: VismaTenant) -> std::io::Result<VismaFixture> {
        Self::start_on(options, tenant, "127.0.0.1:0")
    }

    pub fn start_on(
        options: VismaOptions,
        tenant: VismaTenant,
        addr: &str,
    ) -> std::io::Result<VismaFixture> {
        let state = VismaState::new(options, tenant);
        let server = serve(visma::router(state.clone()), addr)?;
        Ok(VismaFixture { state, server })
    }

    pub fn url(&self) -> String {
        self.server.url()
    }
}

/// A running AFAS Profit stand-in.
pub struct AfasFixture {
    pub state: Arc<AfasState>,
    pub server: Running,
}

impl AfasFixture {
    pub fn start(options: AfasOptions, tenant: AfasTenant) -> std::io::Result<AfasFixture> {
        Self::start_on(options, tenant, "127.0.0.1:0")
    }

    pub fn start_on(
        options: AfasOptions,
        tenant: AfasTenant,
        addr: &str,
    ) -> std::io::Result<AfasFixture> {
        let state = AfasState::new(options, tenant);
        let server = serve(afas::router(state.clone()), addr)?;
        Ok(AfasFixture { state, server })
    }

    /// The environment's REST base URL, `http://127.0.0.1:port/ProfitRestServices`.
    pub fn url(&self) -> String {
        format!("{}/ProfitRestServices", self.server.url())
    }
}
