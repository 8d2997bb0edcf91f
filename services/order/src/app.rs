//! Assembling the order service: database, outbox relay, the welcome-order consumer,
//! the token verifier fed from the user service's JWKS, and the gRPC and admin servers.

use std::sync::Arc;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use weft_auth::{TokenConfig, Verifier};
use weft_events::outbox::RelayConfig;
use weft_events::{Consumer, Relay};
use weft_kit::host::{Host, Identity, Service, Settings};
use weft_proto::DESCRIPTOR_SET;
use weft_proto::order::order_service_server::OrderServiceServer;
use weft_proto::user::UserSignedUp;

use crate::config::Config;
use crate::payment::TestProvider;
use crate::service::OrderApi;
use crate::welcome::WelcomeOrders;

/// A built, bound, not yet running order service.
pub struct App {
    host: Host,
    api: OrderApi,
    relay: Relay,
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
            &config.common.kafka,
            &Self::IDENTITY.relay_client(),
            RelayConfig::default(),
        )?;
        let api = OrderApi {
            db,
            relay: relay.waker(),
            payments: Arc::new(TestProvider),
        };
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
            api,
            relay,
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
            api,
            relay,
            verifier,
            config,
        } = self;
        config.common.backbone(&mut host, &api.db, Vec::new())?;
        host.probe("token keys", weft_auth::keys_probe(verifier.clone()));

        let waker = api.relay.clone();
        let consumer = Consumer::new(
            &config.consumer_group,
            config.common.kafka.clone(),
            api.db.clone(),
        )
        .on::<UserSignedUp>(WelcomeOrders)
        // Creating orders is never replayed: without stored offsets over a history,
        // it waits to be told where to begin (--from).
        .with_args(&config.consumer)
        .after_commit(move |_, _| waker.wake());
        let limit = host.message_limit();
        let server = OrderServiceServer::new(api)
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
            .background("outbox relay", |stop| relay.run(stop))
            .background("consumer", |stop| {
                weft_events::consumer::serve(consumer, stop)
            });
        host.run(shutdown).await
    }
}
