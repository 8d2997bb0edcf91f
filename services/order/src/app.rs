//! Assembling the order service: database, outbox relay, the welcome-order consumer,
//! the token verifier fed from the user service's JWKS, and the gRPC and admin servers.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;
use weft_auth::{TokenConfig, Verifier};
use weft_events::outbox::RelayConfig;
use weft_events::{Consumer, Relay};
use weft_kit::admin::AdminServer;
use weft_kit::grpc::GrpcServer;
use weft_proto::order::order_service_server::OrderServiceServer;
use weft_proto::user::UserSignedUp;

use crate::config::Config;
use crate::payment::TestProvider;
use crate::service::OrderApi;
use crate::welcome::WelcomeOrders;

/// Full proto name of the service, for health.
pub const SERVICE: &str = "weft.order.v1.OrderService";

/// A built, bound, not yet running order service.
pub struct App {
    grpc: GrpcServer,
    admin: AdminServer,
    api: OrderApi,
    relay: Relay,
    verifier: Arc<Verifier>,
    config: Config,
}

impl App {
    /// Connects, migrates and binds the listeners.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let db = weft_events::db::open_service_db(
            config.database_url.as_ref().map(|u| u.expose().as_str()),
            &config.data_dir,
            "order",
            sqlx::migrate!("./migrations/sqlite"),
            sqlx::migrate!("./migrations/postgres"),
        )
        .await
        .context("opening the order database")?;
        let seed = match &config.catalog_seed {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("reading the catalogue seed {}", path.display()))?,
            None => crate::catalog::BUILT_IN_SEED.to_owned(),
        };
        let products = crate::catalog::parse_seed(&seed).map_err(anyhow::Error::msg)?;
        let added = crate::catalog::seed(&db, &products)
            .await
            .map_err(|e| anyhow::anyhow!("seeding the catalogue: {e}"))?;
        if added > 0 {
            tracing::info!(added, "catalogue seeded");
        }
        let relay = Relay::new(
            db.clone(),
            &config.kafka,
            "weft-order-relay",
            RelayConfig::default(),
        )?;
        let api = OrderApi {
            db,
            relay: relay.waker(),
            payments: Arc::new(TestProvider),
        };
        let grpc = GrpcServer::bind(config.grpc_addr, config.server.clone()).await?;
        let admin = AdminServer::bind(config.admin_addr).await?;
        Ok(Self {
            grpc,
            admin,
            api,
            relay,
            verifier: Arc::new(Verifier::new(&TokenConfig::default())),
            config,
        })
    }

    /// Where the gRPC server listens.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr()
    }

    /// Where the admin server listens.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr()
    }

    /// Serves until `shutdown`, then drains.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let broker = weft_events::kafka::broker_probe(&self.config.kafka)?;
        let pruner = weft_events::retention::Pruner::new(
            self.api.db.clone(),
            self.config.retention.clone(),
            Vec::new(),
        );
        let readiness = self
            .grpc
            .readiness(&[SERVICE])
            .with_probe("database", self.api.db.probe())
            .with_probe_after("broker", self.config.kafka.broker_grace, broker)
            .with_probe("token keys", weft_auth::keys_probe(self.verifier.clone()));

        let waker = self.api.relay.clone();
        let consumer = Consumer::new(
            &self.config.consumer_group,
            self.config.kafka.clone(),
            self.api.db.clone(),
        )
        .on::<UserSignedUp>(WelcomeOrders)
        // Creating orders is never replayed: without stored offsets over a history,
        // it waits to be told where to begin (--from).
        .with_args(&self.config.consumer)
        .after_commit(move |_, _| waker.wake());
        let stop = shutdown.clone();
        let jwks = self
            .config
            .jwks
            .refresh(self.verifier.clone(), async move { stop.cancelled().await });
        let limit = self.grpc.max_message_bytes();
        let server = OrderServiceServer::new(self.api)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);
        let routes = Routes::new(InterceptedService::new(
            server,
            weft_auth::interceptor(self.verifier),
        ));

        let relay = tokio::spawn(self.relay.run(shutdown.clone()));
        // Ready once the consumer holds its share of the partitions, begun where it
        // should.
        let readiness = readiness.with_probe("consumer group", consumer.membership().probe());
        let consumer = weft_events::consumer::spawn_or_stop(consumer, shutdown.clone());
        let admin = tokio::spawn(self.admin.serve(readiness.flag(), shutdown.clone()));
        let pruner = tokio::spawn(pruner.run(shutdown.clone()));
        let grace = self.config.server.shutdown_grace;
        let served = self.grpc.serve(routes, readiness, shutdown).await;
        // Background work gets the same grace as RPCs; a client stuck on a vanished
        // broker must not keep the process alive.
        let mut failure = None;
        let background = async {
            let _ = pruner.await;
            let _ = relay.await;
            match consumer.await {
                Ok(Err(e)) => failure = Some(e),
                Ok(Ok(())) => {}
                Err(e) => tracing::error!(error = %e, "the consumer task failed"),
            }
            let _ = admin.await;
            let _ = jwks.await;
        };
        weft_kit::shutdown::drain(grace, background).await;
        if let Some(e) = failure {
            let unrecoverable = e.needs_the_operator();
            return Err(weft_kit::cli::failure(e, unrecoverable));
        }
        served.map_err(Into::into)
    }
}
