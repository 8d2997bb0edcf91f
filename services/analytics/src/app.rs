//! Assembling the analytics service: database, the projecting consumer (offsets in
//! the database), the token verifier, and the gRPC and admin servers.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;
use weft_auth::{TokenConfig, Verifier};
use weft_events::consumer::Outcome;
use weft_events::{Consumer, Database};
use weft_kit::admin::AdminServer;
use weft_kit::grpc::GrpcServer;
use weft_proto::analytics::analytics_service_server::AnalyticsServiceServer;

use crate::config::Config;
use crate::projection::DropProjections;
use crate::service::AnalyticsApi;
use crate::tally::Projector;

/// Full proto name of the service, for health.
pub const SERVICE: &str = "weft.analytics.v1.AnalyticsService";

/// A built, bound, not yet running analytics service.
pub struct App {
    grpc: GrpcServer,
    admin: AdminServer,
    db: Database,
    verifier: Arc<Verifier>,
    config: Config,
}

impl App {
    /// Connects, migrates and binds the listeners.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let db = weft_events::db::open_service_db(
            config.database_url.as_ref().map(|u| u.expose().as_str()),
            &config.data_dir,
            "analytics",
            sqlx::migrate!("./migrations/sqlite"),
            sqlx::migrate!("./migrations/postgres"),
        )
        .await
        .context("opening the analytics database")?;
        let grpc = GrpcServer::bind(config.grpc_addr, config.server.clone()).await?;
        let admin = AdminServer::bind(config.admin_addr).await?;
        Ok(Self {
            grpc,
            admin,
            db,
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
            self.db.clone(),
            self.config.retention.clone(),
            Vec::new(),
        );
        let readiness = self
            .grpc
            .readiness(&[SERVICE])
            .with_probe("database", self.db.probe())
            .with_probe("broker", broker);

        let (changed, changes) = watch::channel(0u64);
        let mut consumer = Consumer::new(
            &self.config.consumer_group,
            self.config.kafka.clone(),
            self.db.clone(),
        );
        for topic in weft_events::catalog::TOPICS {
            consumer = consumer.subscribe(topic);
        }
        let consumer = consumer
            .project_any(Projector)
            .rewinds_with(DropProjections)
            .with_args(&self.config.consumer)
            .after_commit(move |_, outcome| {
                if outcome == Outcome::Applied {
                    changed.send_modify(|v| *v = v.wrapping_add(1));
                }
            });
        let rewinder = consumer.rewinder();
        let api = AnalyticsApi {
            db: self.db.clone(),
            changes,
            rewinder,
            shutdown: shutdown.clone(),
            streams: weft_kit::slots::PerClient::new(self.config.max_streams_per_client as usize),
            client_ip_header: self.config.client_ip_header.clone(),
        };
        let stop = shutdown.clone();
        let jwks = self
            .config
            .jwks
            .refresh(self.verifier.clone(), async move { stop.cancelled().await });
        let limit = self.grpc.max_message_bytes();
        let server = AnalyticsServiceServer::new(api)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);
        let routes = Routes::new(InterceptedService::new(
            server,
            weft_auth::interceptor(self.verifier),
        ));

        // Ready once the consumer holds its share of the partitions, begun where it
        // should.
        let readiness = readiness.with_probe("consumer group", consumer.membership().probe());
        let consumer = weft_events::consumer::spawn_or_stop(consumer, shutdown.clone());
        let admin = tokio::spawn(self.admin.serve(readiness.flag(), shutdown.clone()));
        let pruner = tokio::spawn(pruner.run(shutdown.clone()));
        let grace = self.config.server.shutdown_grace;
        let served = self.grpc.serve(routes, readiness, shutdown).await;
        let mut failure = None;
        let background = async {
            let _ = pruner.await;
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
