//! The host every weft service runs in.
//!
//! A service is an [`Identity`] and a [`Service`]: it builds itself from its config
//! around a [`Host`], which binds the gRPC and admin listeners at once (port 0 in
//! tests), gathers the readiness probes, the background tasks and the gRPC services,
//! and [`Host::run`]s them until shutdown. The drain happens once, here: the service
//! reports NOT_SERVING, then RPCs and background tasks share one grace period, then
//! whatever is left is aborted. A background task that fails stops the service and is
//! named in the log; its error becomes the process's.
//!
//! [`run`] is the whole life of a service process; [`start`] runs one inside the
//! current process (tests, benchmarks) and hands back its addresses.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use futures::FutureExt as _;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;

use crate::admin::AdminServer;
use crate::config::{ServerArgs, TelemetryArgs};
use crate::grpc::GrpcServer;
use crate::readiness::Readiness;

/// Who a service is. Every name it shows the world derives from this one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// The short name: `order`. Events carry it as their source (`/weft/order`).
    pub name: &'static str,
    /// The full proto name of its gRPC service, for health: `weft.order.v1.OrderService`.
    pub service: &'static str,
    /// The version stamped on the events it emits.
    pub version: &'static str,
    /// The ports it listens on unless told otherwise.
    pub ports: Ports,
}

/// A service's own ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// Its gRPC server's.
    pub grpc: u16,
    /// Its admin server's (`/metrics`, `/readyz`).
    pub admin: u16,
}

impl Ports {
    /// The gRPC port `grpc` and the admin port `admin`.
    pub const fn new(grpc: u16, admin: u16) -> Self {
        Self { grpc, admin }
    }
}

impl Identity {
    /// The process name: `weft-order`. Its binary, its telemetry service name and its
    /// default consumer group.
    pub fn process(&self) -> String {
        format!("weft-{}", self.name)
    }

    /// The Kafka client id of its outbox relay: `weft-order-relay`.
    pub fn relay_client(&self) -> String {
        format!("weft-{}-relay", self.name)
    }
}

/// What a background task hands back: nothing, or a result whose error stops the
/// service.
pub trait TaskOutcome: Send + 'static {
    /// As a result.
    fn into_result(self) -> anyhow::Result<()>;
}

impl TaskOutcome for () {
    fn into_result(self) -> anyhow::Result<()> {
        Ok(())
    }
}

impl TaskOutcome for anyhow::Result<()> {
    fn into_result(self) -> anyhow::Result<()> {
        self
    }
}

type Task = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;
type StartTask = Box<dyn FnOnce(CancellationToken) -> Task + Send>;

/// A bound, not yet running service: listeners, probes, background tasks and routes.
pub struct Host {
    identity: Identity,
    grpc: GrpcServer,
    admin: AdminServer,
    readiness: Readiness,
    routes: RoutesBuilder,
    tasks: Vec<(&'static str, StartTask)>,
    grace: Duration,
}

impl Host {
    /// Binds the gRPC listener on `grpc` and the admin listener on `admin` now.
    /// `contracts` is the encoded `FileDescriptorSet` of the services it will serve
    /// (see [`GrpcServer::bind`]).
    pub async fn bind(
        identity: Identity,
        contracts: &'static [u8],
        grpc: SocketAddr,
        admin: SocketAddr,
        server: &ServerArgs,
    ) -> Result<Self, crate::KitError> {
        let grpc = GrpcServer::bind(grpc, server.clone(), contracts).await?;
        let admin = AdminServer::bind(admin).await?;
        let readiness = grpc.readiness(&[identity.service]);
        Ok(Self {
            identity,
            grpc,
            admin,
            readiness,
            routes: RoutesBuilder::default(),
            tasks: Vec::new(),
            grace: server.shutdown_grace,
        })
    }

    /// Who the service is.
    pub fn identity(&self) -> Identity {
        self.identity
    }

    /// Where the gRPC server listens.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr()
    }

    /// Where the admin server listens.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr()
    }

    /// The largest message a generated server should accept or send
    /// (`max_decoding_message_size`/`max_encoding_message_size`).
    pub fn message_limit(&self) -> usize {
        self.grpc.max_message_bytes()
    }

    /// Adds a readiness probe named `name`: the service is ready while every probe
    /// passes.
    pub fn probe<F, Fut>(&mut self, name: &str, probe: F) -> &mut Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.probe_after(name, Duration::ZERO, probe)
    }

    /// Adds a probe whose failures count only once they have lasted `grace`.
    pub fn probe_after<F, Fut>(&mut self, name: &str, grace: Duration, probe: F) -> &mut Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.readiness.add_probe(name, grace, probe);
        self
    }

    /// Adds a task that runs beside the servers from [`Self::run`] until the shutdown
    /// token it is given fires. It is logged as `name`.
    pub fn background<F, Fut>(&mut self, name: &'static str, task: F) -> &mut Self
    where
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: TaskOutcome,
    {
        let start: StartTask =
            Box::new(move |stop| Box::pin(async move { task(stop).await.into_result() }));
        self.tasks.push((name, start));
        self
    }

    /// Adds a gRPC service to the routes (health and reflection come with the host).
    pub fn serve<S>(&mut self, service: S) -> &mut Self
    where
        S: tower::Service<http::Request<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.routes.add_service(service);
        self
    }

    /// Serves until `shutdown`, then drains once: NOT_SERVING, one grace period for
    /// RPCs and background tasks together, then abort. The first task that failed
    /// makes the result.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Host {
            grpc,
            admin,
            readiness,
            routes,
            tasks,
            grace,
            ..
        } = self;
        let mut background = Tasks::new(&shutdown, grace);
        let ready = readiness.flag();
        background.spawn("admin server", admin.serve(ready, shutdown.clone()));
        for (name, start) in tasks {
            background.spawn(name, start(shutdown.clone()));
        }
        let served = grpc
            .serve(routes.routes(), readiness, shutdown.clone())
            .await;
        background.drain().await?;
        served.map_err(Into::into)
    }
}

/// A process's background tasks, each known by its name, drained together.
///
/// The grace period starts when shutdown does, so servers draining their requests and
/// these tasks share it. A task that fails cancels the shutdown token: the process
/// stops and says why rather than serving on without it.
pub struct Tasks {
    set: JoinSet<anyhow::Result<()>>,
    names: HashMap<tokio::task::Id, &'static str>,
    shutdown: CancellationToken,
    grace: Duration,
    drained_by: tokio::task::JoinHandle<tokio::time::Instant>,
}

impl Tasks {
    /// Tasks stopped by `shutdown`, with `grace` to finish once it fires.
    pub fn new(shutdown: &CancellationToken, grace: Duration) -> Self {
        let stop = shutdown.clone();
        let drained_by = tokio::spawn(async move {
            stop.cancelled().await;
            tokio::time::Instant::now() + grace
        });
        Self {
            set: JoinSet::new(),
            names: HashMap::new(),
            shutdown: shutdown.clone(),
            grace,
            drained_by,
        }
    }

    /// Runs `task` now, as `name`.
    pub fn spawn<F>(&mut self, name: &'static str, task: F)
    where
        F: Future + Send + 'static,
        F::Output: TaskOutcome,
    {
        let stop = self.shutdown.clone();
        let id = self
            .set
            .spawn(async move {
                // A panic is a failure like any other: it stops the process, by name.
                let result = match std::panic::AssertUnwindSafe(task).catch_unwind().await {
                    Ok(outcome) => outcome.into_result(),
                    Err(panic) => Err(anyhow::anyhow!("{name} panicked: {}", panic_message(&*panic))),
                };
                if let Err(e) = &result {
                    tracing::error!(task = name, error = %format!("{e:#}"), "a background task failed; stopping");
                    stop.cancel();
                }
                result
            })
            .id();
        self.names.insert(id, name);
    }

    /// Cancels the shutdown token (if nothing did yet) and waits for every task until
    /// the grace period is over; then aborts the rest, naming them. The first failure
    /// is the result.
    pub async fn drain(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let deadline = (&mut self.drained_by)
            .await
            .unwrap_or_else(|_| tokio::time::Instant::now());
        let mut failure = None;
        let Self { set, names, .. } = &mut self;
        let joined = tokio::time::timeout_at(deadline, async {
            while let Some(joined) = set.join_next_with_id().await {
                match joined {
                    Ok((id, result)) => {
                        names.remove(&id);
                        if let Err(e) = result {
                            failure.get_or_insert(e);
                        }
                    }
                    Err(e) => {
                        // Only an abort gets here; panics are caught in the task.
                        names.remove(&e.id());
                    }
                }
            }
        })
        .await;
        if joined.is_err() {
            let mut left: Vec<&str> = names.values().copied().collect();
            left.sort_unstable();
            tracing::warn!(
                grace = ?self.grace,
                tasks = ?left,
                "background tasks did not stop within the grace period; aborting them"
            );
            self.set.abort_all();
        }
        failure.map_or(Ok(()), Err)
    }
}

/// The text of a panic's payload, when it has one.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// A generated tonic server with `host`'s message limit both ways
/// (`max_decoding_message_size` and `max_encoding_message_size` are inherent methods
/// of each generated type, not of a trait, hence a macro):
/// `host.serve(weft_kit::limited!(host, OrderServiceServer::new(api)))`.
#[macro_export]
macro_rules! limited {
    ($host:expr, $server:expr) => {{
        let limit = $host.message_limit();
        $server
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit)
    }};
}

/// What the process around a service needs to know of its config.
pub trait Settings {
    /// Logs and traces.
    fn telemetry(&self) -> &TelemetryArgs;

    /// The data directory whose fault flags the process follows, if it has one.
    fn fault_dir(&self) -> Option<&Path> {
        None
    }
}

/// A service that runs in a [`Host`]: built from its config, then run until shutdown.
pub trait Service: Sized + Send + 'static {
    /// Its settings (clap and environment).
    type Config: Send + 'static;

    /// Who it is.
    const IDENTITY: Identity;

    /// Its telemetry settings and fault flags.
    fn settings(config: &Self::Config) -> &dyn Settings;

    /// Connects, migrates and binds its listeners: its host, bound, and itself.
    fn build(config: Self::Config) -> impl Future<Output = anyhow::Result<(Host, Self)>> + Send;

    /// Adds its probes, routes and tasks to `host` and serves until `shutdown`, then
    /// drains.
    fn run_until_stopped(
        self,
        host: Host,
        shutdown: CancellationToken,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// The whole life of a service process: telemetry, fault flags, build, and run until
/// SIGTERM/SIGINT.
pub async fn run<S: Service>(config: S::Config) -> anyhow::Result<()> {
    let identity = S::IDENTITY;
    let settings = S::settings(&config);
    let _telemetry = crate::telemetry::init(&identity.process(), settings.telemetry())?;
    if let Some(dir) = settings.fault_dir() {
        crate::faults::follow(dir);
    }
    let (host, service) = S::build(config).await?;
    tracing::info!(
        grpc = %host.grpc_addr(),
        admin = %host.admin_addr(),
        "{} service ready to serve",
        identity.name
    );
    service
        .run_until_stopped(host, crate::shutdown::on_signal())
        .await
}

/// A service running inside this process (see [`start`]).
pub struct Running {
    /// Where its gRPC server listens.
    pub grpc: SocketAddr,
    /// Where its admin server listens.
    pub admin: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Its gRPC address as a URL: `http://127.0.0.1:50051`.
    pub fn url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// Stops it and waits for its drain; its result.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task
            .await
            .map_err(|e| anyhow::anyhow!("the service task failed: {e}"))?
    }

    /// Whether it has stopped (by itself, unless [`Self::stop`] was called).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// Builds `S` from `config` and runs it on this runtime until [`Running::stop`].
pub async fn start<S: Service>(config: S::Config) -> anyhow::Result<Running> {
    let (host, service) = S::build(config).await?;
    let grpc = host.grpc_addr();
    let admin = host.admin_addr();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(service.run_until_stopped(host, shutdown.clone()));
    Ok(Running {
        grpc,
        admin,
        shutdown,
        task,
    })
}
