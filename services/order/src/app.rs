//! Assembling the order service: database, outbox relay, the welcome-order consumer,
//! the token verifier fed from the user service's JWKS, and the gRPC and admin servers.

use std::sync::Arc;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use weft_events::Relay;
use weft_events::batched::Batched;
use weft_kit::host::{Host, Identity, Service, Settings};
use weft_proto::order::order_service_server::OrderServiceServer;
use weft_proto::user::UserSignedUp;

use crate::config::Config;
use crate::payment::TestProvider;
use crate::service::{NewOrders, OrderApi};
use crate::welcome::WelcomeOrders;

/// A built, bound, not yet running order service.
pub struct App {
    api: OrderApi,
    relay: Relay,
    config: Config,
}

impl Service for App {
    type Config = Config;
    const IDENTITY: Identity = crate::config::IDENTITY;

    fn settings(config: &Config) -> &dyn Settings {
        &config.common
    }

    /// Connects, migrates and binds the listeners.
    async fn build(config: Config) -> anyhow::Result<(Host, Self)> {
        let db = (config.common)
            .open_db(Self::IDENTITY, weft_events::migrations!())
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
        let relay = config.common.relay(Self::IDENTITY, &db)?;
        let api = OrderApi {
            creates: Batched::new(&db, NewOrders),
            db,
            relay: relay.waker(),
            payments: Arc::new(TestProvider),
        };
        let host = config.common.bind(Self::IDENTITY).await?;
        Ok((host, Self { api, relay, config }))
    }

    /// Serves until `shutdown`, then drains.
    async fn run_until_stopped(
        self,
        mut host: Host,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let config = self.config;
        config
            .common
            .backbone(&mut host, &self.api.db, Vec::new())?;
        let waker = self.api.relay.clone();
        let consumer = (config.common)
            .consumer(&config.consumer_group, &self.api.db)
            .on::<UserSignedUp>(WelcomeOrders)
            // Creating orders is never replayed: without stored offsets over a history,
            // it waits to be told where to begin (--from).
            .with_args(&config.consumer)
            .after_commit(move |_, _| waker.wake());
        let server = weft_kit::limited!(host, OrderServiceServer::new(self.api));
        let verifier = config.jwks.verifier(&mut host);
        host.probe("token keys", weft_auth::keys_probe(verifier.clone()))
            .serve(weft_auth::guarded(server, &verifier))
            .background("outbox relay", |stop| self.relay.run(stop));
        weft_events::consumer::hosted(&mut host, consumer);
        host.run(shutdown).await
    }
}
