//! Readiness: a gRPC server reports SERVING only while every dependency it needs (its
//! database, the broker) answers a probe, and NOT_SERVING from the moment shutdown
//! starts. The state feeds `grpc.health.v1` and the admin `/readyz`.
//!
//! A probe may have a grace ([`Readiness::with_probe_after`]): once it has passed, its
//! failures make the server not ready only after they have lasted that long. The
//! services give the broker one: the outbox holds events through a broker restart, and
//! pulling every replica out of rotation for it would turn a blip into an outage.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

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
    probes: Vec<Probed>,
    ready: Arc<AtomicBool>,
}

/// A probe, its grace, and what the last rounds found.
#[derive(Clone)]
struct Probed {
    name: String,
    probe: Probe,
    grace: Duration,
    /// It has passed at least once: the grace applies from then on.
    passed: bool,
    /// Since when it fails, and its last error (logged when it starts or changes).
    failing: Option<(Instant, String)>,
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
    pub fn with_probe<F, Fut>(self, name: &str, probe: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.with_probe_after(name, Duration::ZERO, probe)
    }

    /// Adds a probe whose failures count only once they have lasted `grace`, after it
    /// has passed once (a dependency never reached is not ready).
    pub fn with_probe_after<F, Fut>(mut self, name: &str, grace: Duration, probe: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.add_probe(name, grace, probe);
        self
    }

    /// [`Self::with_probe_after`] in place.
    pub fn add_probe<F, Fut>(&mut self, name: &str, grace: Duration, probe: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.probes.push(Probed {
            name: name.to_owned(),
            probe: Arc::new(move || Box::pin(probe())),
            grace,
            passed: false,
            failing: None,
        });
    }

    /// A flag that is true while the server is ready; for `/readyz`.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.ready.clone()
    }

    /// Runs the probes until `shutdown`, then reports NOT_SERVING for good.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut last: Option<bool> = None;
        loop {
            let ok = self.check().await;
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

    /// Runs every probe once; whether all passed or fail within their grace. A failure
    /// is logged when it starts or changes, and a recovery once, not at every round.
    async fn check(&mut self) -> bool {
        let mut ok = true;
        for p in &mut self.probes {
            let error = match tokio::time::timeout(PROBE_TIMEOUT, (p.probe)()).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(_) => Some(format!("no answer within {PROBE_TIMEOUT:?}")),
            };
            let Some(e) = error else {
                if p.failing.take().is_some() {
                    tracing::info!(probe = %p.name, "dependency ready again");
                }
                p.passed = true;
                continue;
            };
            let since = match &p.failing {
                Some((since, last)) => {
                    if *last != e {
                        tracing::warn!(probe = %p.name, error = %e, "dependency not ready");
                    }
                    *since
                }
                None => {
                    tracing::warn!(probe = %p.name, error = %e, grace = ?p.grace, "dependency not ready");
                    Instant::now()
                }
            };
            p.failing = Some((since, e));
            if !p.passed || since.elapsed() >= p.grace {
                ok = false;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A readiness over one probe that passes while `up` is set, with `grace`.
    fn watched(grace: Duration) -> (Readiness, Arc<AtomicBool>) {
        let (reporter, _) = tonic_health::server::health_reporter();
        let up = Arc::new(AtomicBool::new(true));
        let flag = up.clone();
        let readiness = Readiness::new(reporter, vec!["weft.test.v1.Test".to_owned()])
            .with_probe_after("broker", grace, move || {
                let up = flag.load(Ordering::SeqCst);
                async move { if up { Ok(()) } else { Err("down".to_owned()) } }
            });
        (readiness, up)
    }

    async fn at(seconds: f64) {
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    }

    // Paused time: the rounds run at their exact instants.
    #[tokio::test(start_paused = true)]
    async fn a_dependency_down_within_its_grace_keeps_the_server_ready_and_longer_does_not() {
        let (readiness, up) = watched(Duration::from_secs(10));
        let ready = readiness.flag();
        let shutdown = CancellationToken::new();
        tokio::spawn(readiness.run(shutdown.clone()));
        at(0.1).await;
        assert!(ready.load(Ordering::SeqCst), "ready after the first round");

        // Down for 6 s: every round within the grace, the server stays ready.
        up.store(false, Ordering::SeqCst);
        for _ in 0..6 {
            at(1.0).await;
            assert!(ready.load(Ordering::SeqCst), "a short outage is ridden out");
        }
        up.store(true, Ordering::SeqCst);
        at(2.5).await;

        // Down for good: not ready once the failures have lasted the grace (first
        // seen within one round of 2 s, counted at the round after the grace).
        up.store(false, Ordering::SeqCst);
        at(9.0).await;
        assert!(ready.load(Ordering::SeqCst), "still within the grace");
        at(6.0).await;
        assert!(!ready.load(Ordering::SeqCst), "gone longer than the grace");

        // Back: ready at the next quick round.
        up.store(true, Ordering::SeqCst);
        at(0.5).await;
        assert!(ready.load(Ordering::SeqCst), "ready again");
        shutdown.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_dependency_never_reached_is_not_ready_whatever_its_grace() {
        let (readiness, up) = watched(Duration::from_secs(60));
        up.store(false, Ordering::SeqCst);
        let ready = readiness.flag();
        let shutdown = CancellationToken::new();
        tokio::spawn(readiness.run(shutdown.clone()));
        at(5.0).await;
        assert!(!ready.load(Ordering::SeqCst));
        up.store(true, Ordering::SeqCst);
        at(0.5).await;
        assert!(ready.load(Ordering::SeqCst));
        shutdown.cancel();
    }
}
