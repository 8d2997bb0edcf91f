//! Assembling the analytics service: database, the projecting consumer (offsets in
//! the database), the pruning of old windows, the token verifier, and the gRPC and
//! admin servers.

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use weft_events::Database;
use weft_events::consumer::Outcome;
use weft_kit::host::{Host, Identity, Service, Settings};
use weft_proto::analytics::analytics_service_server::AnalyticsServiceServer;

use crate::config::Config;
use crate::projection::DropProjections;
use crate::service::AnalyticsApi;
use crate::tally::Projector;

/// A built, bound, not yet running analytics service.
pub struct App {
    db: Database,
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
        let host = config.common.bind(Self::IDENTITY).await?;
        Ok((host, Self { db, config }))
    }

    /// Serves until `shutdown`, then drains.
    async fn run_until_stopped(
        self,
        mut host: Host,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let config = self.config;
        let windows = crate::windows::prune_rules(
            config.minute_window_retention,
            config.hour_window_retention,
        );
        config.common.backbone(&mut host, &self.db, windows)?;
        let lateness = crate::windows::Lateness(config.window_lateness);
        let (changed, changes) = watch::channel(0u64);
        let mut consumer = config.common.consumer(&config.consumer_group, &self.db);
        for topic in weft_events::catalog::TOPICS {
            consumer = consumer.subscribe(topic);
        }
        let consumer = consumer
            .project_any(Projector { lateness })
            .rewinds_with(DropProjections)
            .with_args(&config.consumer)
            .after_commit(move |_, outcome| {
                if outcome == Outcome::Applied {
                    changed.send_modify(|v| *v = v.wrapping_add(1));
                }
            });
        let api = AnalyticsApi {
            db: self.db,
            changes,
            rewinder: consumer.rewinder(),
            shutdown: shutdown.clone(),
            streams: weft_kit::slots::PerClient::new(config.max_streams_per_client as usize),
            client_ip_header: config.client_ip_header.clone(),
            lateness,
        };
        let server = weft_kit::limited!(host, AnalyticsServiceServer::new(api));
        let verifier = config.jwks.verifier(&mut host);
        host.serve(weft_auth::guarded(server, &verifier));
        weft_events::consumer::hosted(&mut host, consumer);
        host.run(shutdown).await
    }
}
