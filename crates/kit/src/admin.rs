//! The admin HTTP server of every weft process: Prometheus `/metrics`, liveness
//! `/healthz` and readiness `/readyz`. It binds before returning, like the gRPC server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::KitError;
use crate::conn::{ConnArgs, Listener, serve_http};

static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use. Every `metrics::`
/// macro in the process records into it.
pub fn prometheus() -> &'static PrometheusHandle {
    RECORDER.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ])
            .map(PrometheusBuilder::build_recorder);
        let recorder = match recorder {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "bad histogram buckets; using defaults");
                PrometheusBuilder::new().build_recorder()
            }
        };
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
        }
        handle
    })
}

/// A bound admin server.
pub struct AdminServer {
    listener: TcpListener,
    local_addr: SocketAddr,
}

#[derive(Clone)]
struct AdminState {
    ready: Arc<AtomicBool>,
}

impl AdminServer {
    /// Binds `addr` now.
    pub async fn bind(addr: SocketAddr) -> Result<Self, KitError> {
        let (listener, local_addr) = crate::conn::listen(addr).await?;
        prometheus();
        Ok(Self {
            listener,
            local_addr,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown`; `/readyz` follows `ready`.
    pub async fn serve(self, ready: Arc<AtomicBool>, shutdown: CancellationToken) {
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .with_state(AdminState { ready });
        let listener = Listener::http1(self.listener, "admin", &ConnArgs::default());
        serve_http(listener, app, shutdown).await;
    }
}

async fn metrics() -> String {
    prometheus().render()
}

async fn readyz(State(state): State<AdminState>) -> (StatusCode, &'static str) {
    if state.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
