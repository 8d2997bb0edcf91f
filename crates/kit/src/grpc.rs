//! The gRPC server bootstrap every weft service uses.
//!
//! [`GrpcServer::bind`] binds the listener before returning (port 0 in tests), so a
//! caller knows the address at once; [`GrpcServer::serve`] adds health and reflection
//! (v1 and v1alpha) to the service's routes, wraps everything in the standard layer
//! stack ([`layer_stack`]) and serves until the shutdown token fires, then reports
//! NOT_SERVING, stops accepting, and drains in-flight RPCs within the grace period.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};
use tower::ServiceBuilder;
use tower::layer::util::{Identity, Stack};
use tower_http::classify::{GrpcCode, GrpcErrorsAsFailures, SharedClassifier};
use tower_http::trace::TraceLayer;

use crate::KitError;
use crate::config::ServerArgs;
use crate::conn::Listener;
use crate::layers::{DeadlineLayer, RpcMetricsLayer, ShedLayer, rpc_span};
use crate::readiness::Readiness;

/// A bound, not yet serving, gRPC server.
pub struct GrpcServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    args: ServerArgs,
    contracts: &'static [u8],
    reporter: HealthReporter,
}

impl GrpcServer {
    /// Binds `addr` now; port 0 picks a free port (see [`Self::local_addr`]).
    /// `contracts` is the encoded `FileDescriptorSet` of the services it will serve:
    /// reflection serves it, and the RPC metrics know their methods from it.
    pub async fn bind(
        addr: SocketAddr,
        args: ServerArgs,
        contracts: &'static [u8],
    ) -> Result<Self, KitError> {
        let (listener, local_addr) = crate::conn::listen(addr).await?;
        // The reporter begins with the whole server ("") SERVING; nothing is
        // until the first probe round passes (see `Self::readiness`).
        let reporter = HealthReporter::new();
        reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        Ok(Self {
            listener,
            local_addr,
            args,
            contracts,
            reporter,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The largest message the services should accept, for their generated servers'
    /// `max_decoding_message_size`/`max_encoding_message_size`.
    pub fn max_message_bytes(&self) -> usize {
        self.args.max_message_bytes
    }

    /// A readiness driver for the named services (full proto names), to which the
    /// service adds its dependency probes. Until the first probe round passes, every
    /// service reports NOT_SERVING.
    pub fn readiness(&self, services: &[&str]) -> Readiness {
        Readiness::new(
            self.reporter.clone(),
            services.iter().map(|s| (*s).to_owned()).collect(),
        )
    }

    /// Serves `routes` plus health and reflection until `shutdown` is cancelled, then
    /// drains for at most the grace period.
    pub async fn serve(
        self,
        routes: Routes,
        readiness: Readiness,
        shutdown: CancellationToken,
    ) -> Result<(), KitError> {
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(self.contracts)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;
        let health = HealthServer::new(HealthService::from_health_reporter(self.reporter));

        let readiness_task = tokio::spawn(readiness.run(shutdown.clone()));
        let grace = self.args.shutdown_grace;
        let drain = shutdown.clone();
        let server = Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .layer(layer_stack(&self.args, self.contracts)?)
            .add_routes(routes)
            .add_service(health)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            // A cap per client, a deadline for the connection preface, Nagle off.
            .serve_with_incoming_shutdown(
                Listener::http2(self.listener, "grpc", &self.args.conn).incoming(),
                async move {
                    drain.cancelled().await;
                    // Let the NOT_SERVING status reach load balancers before the
                    // listener closes.
                    let _ = readiness_task.await;
                },
            );
        tracing::info!(addr = %self.local_addr, "gRPC server listening");

        tokio::pin!(server);
        tokio::select! {
            result = &mut server => result?,
            _ = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!(?grace, "drain grace period over; aborting in-flight RPCs");
            }
        }
        tracing::info!("gRPC server stopped");
        Ok(())
    }
}

/// The tracing layer of [`layer_stack`]: one span per RPC, parented on the caller.
pub type RpcTraceLayer = TraceLayer<
    SharedClassifier<GrpcErrorsAsFailures>,
    fn(&http::Request<tonic::body::Body>) -> tracing::Span,
>;

/// The answers the tracing layer logs as failures: only the server's own faults
/// (`UNKNOWN`, `INTERNAL`, `UNAVAILABLE`, `DATA_LOSS`). A refused, invalid, denied or
/// timed-out request is the caller's business and is logged at debug level: a flood of
/// refused calls must not become a flood of error lines.
fn server_faults() -> GrpcErrorsAsFailures {
    [
        GrpcCode::Cancelled,
        GrpcCode::InvalidArgument,
        GrpcCode::DeadlineExceeded,
        GrpcCode::NotFound,
        GrpcCode::AlreadyExists,
        GrpcCode::PermissionDenied,
        GrpcCode::ResourceExhausted,
        GrpcCode::FailedPrecondition,
        GrpcCode::Aborted,
        GrpcCode::OutOfRange,
        GrpcCode::Unimplemented,
        GrpcCode::Unauthenticated,
    ]
    .into_iter()
    .fold(
        GrpcErrorsAsFailures::new(),
        GrpcErrorsAsFailures::with_success,
    )
}

/// The composed layers of [`layer_stack`], outermost last.
pub type LayerStack =
    Stack<DeadlineLayer, Stack<ShedLayer, Stack<RpcMetricsLayer, Stack<RpcTraceLayer, Identity>>>>;

/// The layer stack around every weft gRPC service, outermost first: tracing span
/// (parented on the caller's `traceparent`), RPC metrics (by the methods of
/// `contracts`), load shedding, deadline.
pub fn layer_stack(args: &ServerArgs, contracts: &[u8]) -> Result<LayerStack, KitError> {
    let make_span: fn(&http::Request<tonic::body::Body>) -> tracing::Span = rpc_span;
    Ok(ServiceBuilder::new()
        .layer(TraceLayer::new(SharedClassifier::new(server_faults())).make_span_with(make_span))
        .layer(RpcMetricsLayer::new(contracts).map_err(KitError::Contracts)?)
        .layer(ShedLayer::new(args.max_concurrent_rpcs))
        .layer(DeadlineLayer::new(args.rpc_timeout))
        .into_inner())
}
