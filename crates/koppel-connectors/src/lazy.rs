//! A target that connects on first use. An unchanged source makes an empty plan and must
//! call no target at all, not even to bind; so the binary wraps connectors in [`Lazy`].
//!
//! A failed connection is not cached: the next call tries again, and the error reaches the
//! caller as the connector reported it (unavailable, configuration, …).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use koppel_core::AttrValue;
use tokio::sync::OnceCell;

use crate::target::{CreateRequest, Created, Done, Op, Target, TargetAccount, TargetError};

type Connect = Box<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<Arc<dyn Target>, TargetError>> + Send>>
        + Send
        + Sync,
>;

/// A target connected by `connect` the first time an operation needs it.
pub struct Lazy {
    name: String,
    connect: Connect,
    target: OnceCell<Arc<dyn Target>>,
}

impl Lazy {
    pub fn new<F, Fut>(name: &str, connect: F) -> Lazy
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Arc<dyn Target>, TargetError>> + Send + 'static,
    {
        Lazy {
            name: name.to_owned(),
            connect: Box::new(move || Box::pin(connect())),
            target: OnceCell::new(),
        }
    }

    /// True once a connection was made.
    pub fn is_connected(&self) -> bool {
        self.target.initialized()
    }

    async fn get(&self) -> Result<&Arc<dyn Target>, TargetError> {
        self.target.get_or_try_init(|| (self.connect)()).await
    }
}

#[async_trait::async_trait]
impl Target for Lazy {
    fn name(&self) -> &str {
        &self.name
    }

    async fn correlate(
        &self,
        attribute: &str,
        value: &AttrValue,
    ) -> Result<Option<TargetAccount>, TargetError> {
        self.get().await?.correlate(attribute, value).await
    }

    async fn get(&self, reference: &str) -> Result<Option<TargetAccount>, TargetError> {
        Lazy::get(self).await?.get(reference).await
    }

    async fn create(&self, request: &CreateRequest) -> Result<Created, TargetError> {
        self.get().await?.create(request).await
    }

    async fn update(
        &self,
        reference: &str,
        changes: &BTreeMap<String, AttrValue>,
    ) -> Result<(), TargetError> {
        self.get().await?.update(reference, changes).await
    }

    async fn set_enabled(&self, reference: &str, enabled: bool) -> Result<(), TargetError> {
        self.get().await?.set_enabled(reference, enabled).await
    }

    async fn delete(&self, reference: &str) -> Result<(), TargetError> {
        self.get().await?.delete(reference).await
    }

    async fn grant(&self, reference: &str, permission: &str) -> Result<(), TargetError> {
        self.get().await?.grant(reference, permission).await
    }

    async fn revoke(&self, reference: &str, permission: &str) -> Result<(), TargetError> {
        self.get().await?.revoke(reference, permission).await
    }

    async fn list_accounts(&self) -> Result<Vec<TargetAccount>, TargetError> {
        self.get().await?.list_accounts().await
    }

    async fn list_permissions(&self) -> Result<Vec<String>, TargetError> {
        self.get().await?.list_permissions().await
    }

    async fn is_unique(
        &self,
        attribute: &str,
        value: &str,
        except: Option<&str>,
    ) -> Result<bool, TargetError> {
        self.get().await?.is_unique(attribute, value, except).await
    }

    async fn apply(&self, ops: &[Op]) -> Vec<Result<Done, TargetError>> {
        match self.get().await {
            Ok(t) => t.apply(ops).await,
            Err(e) => ops.iter().map(|_| Err(e.clone())).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::target::TargetError;

    #[tokio::test]
    async fn connects_on_first_use_only_and_retries_after_a_failure() {
        let attempts = Arc::new(AtomicUsize::new(0));
        let counter = attempts.clone();
        let lazy = Lazy::new("t", move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                Err::<Arc<dyn Target>, _>(TargetError::Unavailable {
                    target: "t".into(),
                    message: format!("attempt {n}"),
                })
            }
        });
        assert_eq!(lazy.name(), "t");
        assert_eq!(
            attempts.load(Ordering::SeqCst),
            0,
            "nothing at construction"
        );
        assert!(!lazy.is_connected());
        let first = lazy.list_accounts().await.unwrap_err();
        assert!(first.to_string().contains("attempt 0"), "{first}");
        let results = lazy
            .apply(&[Op::Delete {
                reference: "r".into(),
            }])
            .await;
        assert!(results[0].as_ref().unwrap_err().is_unavailable());
        assert_eq!(attempts.load(Ordering::SeqCst), 2, "a failure is retried");
    }
}
