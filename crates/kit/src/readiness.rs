//! Readiness: a gRPC server reports SERVING only while every dependency it needs (its
//! database, the broker) answers a probe, and NOT_SERVING from the moment shutdown
//! starts. The state feeds `grpc.health.v1` and the admin `/readyz`.

use std::collections::HashMap;
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

/// How often probes run while the server is ready.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// How often they run while it is not: a service starting up (its consumer joining
/// its group) reports ready within this of being so.
const NOT_READY_INTERVAL: Duration = Duration::from_millis(200);
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
        let mut failing = HashMap::new();
        loop {
            let ok = self.check(&mut failing).await;
            if last != Some(ok) {
                self.set(ok).await;
                last = Some(ok);
            }
            let pause = if ok {
                PROBE_INTERVAL
            } else {
                NOT_READY_INTERVAL
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
        self.set(false).await;
    }

    /// Runs every probe once; whether all passed. `failing` holds each failing probe's
    /// last error, so that a failure is logged when it starts or changes, and a
    /// recovery once, not at every round.
    async fn check(&self, failing: &mut HashMap<String, String>) -> bool {
        let mut ok = true;
        for (name, probe) in &self.probes {
            let error = match tokio::time::timeout(PROBE_TIMEOUT, probe()).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(_) => Some(format!("no answer within {PROBE_TIMEOUT:?}")),
            };
            match error {
                None => {
                    if failing.remove(name).is_some() {
                        tracing::info!(probe = %name, "dependency ready again");
                    }
                }
                Some(e) => {
                    ok = false;
                    if failing.get(name) != Some(&e) {
                        tracing::warn!(probe = %name, error = %e, "dependency not ready");
                        failing.insert(name.clone(), e);
                    }
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
