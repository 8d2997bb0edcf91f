//! Assembling the analytics service: database, the projecting consumer (offsets in
//! the database), the token verifier, and the gRPC and admin servers.

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use weft_auth::{TokenConfig, Verifier};
use weft_events::consumer::Outcome;
use weft_events::{Consumer, Database};
use weft_kit::host::{Host, Identity, Service, Settings};
use weft_proto::DESCRIPTOR_SET;
use weft_proto::analytics::analytics_service_server::AnalyticsServiceServer;

use crate::config::Config;
use crate::projection::DropProjections;
use crate::service::AnalyticsApi;
use crate::tally::Projector;

/// A built, bound, not yet running analytics service.
pub struct App {
    host: Host,
    db: Database,
    verifier: Arc<Verifier>,
    config: Config,
}

impl Service for App {
    type Config = Config;
    const IDENTITY: Identity = crate::IDENTITY;

    fn settings(config: &Config) -> &dyn Settings {
        &config.common
    }

    /// Connects, migrates and binds the listeners.
    async fn build(config: Config) -> anyhow::Result<Self> {
        let db = config
            .common
            .open_db(
                Self::IDENTITY,
                sqlx::migrate!("./migrations/sqlite"),
                sqlx::migrate!("./migrations/postgres"),
            )
            .await?;
        let host = config
            .common
            .bind(
                Self::IDENTITY,
                DESCRIPTOR_SET,
                config.grpc_addr,
                config.admin_addr,
            )
            .await?;
        Ok(Self {
            host,
            db,
            verifier: Arc::new(Verifier::new(&TokenConfig::default())),
            config,
        })
    }

    fn host(&self) -> &Host {
        &self.host
    }

    /// Serves until `shutdown`, then drains.
    async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Self {
            mut host,
            db,
            verifier,
            config,
        } = self;
        config.common.backbone(&mut host, &db, Vec::new())?;

        let (changed, changes) = watch::channel(0u64);
        let mut consumer = Consumer::new(
            &config.consumer_group,
            config.common.kafka.clone(),
            db.clone(),
        );
        for topic in weft_events::catalog::TOPICS {
            consumer = consumer.subscribe(topic);
        }
        let consumer = consumer
            .project_any(Projector)
            .rewinds_with(DropProjections)
            .with_args(&config.consumer)
            .after_commit(move |_, outcome| {
                if outcome == Outcome::Applied {
                    changed.send_modify(|v| *v = v.wrapping_add(1));
                }
            });
        let api = AnalyticsApi {
            db,
            changes,
            rewinder: consumer.rewinder(),
            shutdown: shutdown.clone(),
            streams: weft_kit::slots::PerClient::new(config.max_streams_per_client as usize),
            client_ip_header: config.client_ip_header.clone(),
        };
        let limit = host.message_limit();
        let server = AnalyticsServiceServer::new(api)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);
        // Ready once the consumer holds its share of the partitions, begun where it
        // should.
        host.probe("consumer group", consumer.membership().probe())
            .serve(InterceptedService::new(
                server,
                weft_auth::interceptor(verifier.clone()),
            ))
            .background("token keys", move |stop| {
                config
                    .jwks
                    .refresh(verifier, async move { stop.cancelled().await })
            })
            .background("consumer", |stop| {
                weft_events::consumer::serve(consumer, stop)
            });
        host.run(shutdown).await
    }
}
