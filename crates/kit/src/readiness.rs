//! Readiness: a gRPC server reports SERVING only while every dependency it needs (its
//! database, the broker) answers a probe, and NOT_SERVING from the moment shutdown
//! starts. The state feeds `grpc.health.v1` and the admin `/readyz`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// A dependency check: `Ok` while the dependency answers.
pub type Probe =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// How often probes run.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// How long one probe may take before it counts as failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Drives the health status of a server's services from its probes.
#[derive(Clone)]
pub struct Readiness {
    reporter: HealthReporter,
    services: Vec<String>,
    probes: Vec<(String, Probe)>,
    ready: Arc<AtomicBool>,
}

impl Readiness {
    pub(crate) fn new(reporter: HealthReporter, services: Vec<String>) -> Self {
        Self {
            reporter,
            services,
            probes: Vec::new(),
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Adds a probe named `name` (shown in logs when it fails).
    pub fn with_probe<F, Fut>(mut self, name: &str, probe: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.probes
            .push((name.to_owned(), Arc::new(move || Box::pin(probe()))));
        self
    }

    /// A flag that is true while the server is ready; for `/readyz`.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.ready.clone()
    }

    /// Runs the probes until `shutdown`, then reports NOT_SERVING for good.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut last: Option<bool> = None;
        loop {
            let ok = self.check().await;
            if last != Some(ok) {
                self.set(ok).await;
                last = Some(ok);
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(PROBE_INTERVAL) => {}
            }
        }
        self.set(false).await;
    }

    async fn check(&self) -> bool {
        let mut ok = true;
        for (name, probe) in &self.probes {
            match tokio::time::timeout(PROBE_TIMEOUT, probe()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(probe = %name, error = %e, "dependency not ready");
                    ok = false;
                }
                Err(_) => {
                    tracing::warn!(probe = %name, "dependency probe timed out");
                    ok = false;
                }
            }
        }
        ok
    }

    async fn set(&self, ready: bool) {
        let status = if ready {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.ready.store(ready, Ordering::SeqCst);
        self.reporter.set_service_status("", status).await;
        for service in &self.services {
            self.reporter.set_service_status(service, status).await;
        }
        tracing::info!(ready, "readiness changed");
    }
}
