//! Assembling the notification service: database, transports, templates, the
//! consumer, the delivery worker, the outbox relay, the token verifier and the gRPC
//! and admin servers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;
use weft_auth::{TokenConfig, Verifier};
use weft_events::dlq::DeadLetters;
use weft_events::outbox::RelayConfig;
use weft_events::{Consumer, Database, Relay};
use weft_kit::admin::AdminServer;
use weft_kit::grpc::GrpcServer;
use weft_proto::notification::notification_service_server::NotificationServiceServer;
use weft_proto::order::{OrderCreated, OrderShipped};
use weft_proto::user::{ContactVerificationRequested, ContactVerified, UserSignedUp, UserUpdated};

use crate::config::Config;
use crate::delivery::{Deliverer, DeliveryConfig, RecipientLimits};
use crate::reactions::{Confirmation, ContactChanges, Shipping, Verification, Verified, Welcome};
use crate::service::NotificationApi;
use crate::templates::Templates;
use crate::transport::{MailFiles, MailTransport, SmsFiles, SmsTransport, SmsWebhook, Smtp};

/// Full proto name of the service, for health.
pub const SERVICE: &str = "weft.notification.v1.NotificationService";

/// A built, bound, not yet running notification service.
pub struct App {
    grpc: GrpcServer,
    admin: AdminServer,
    db: Database,
    relay: Relay,
    deliverer: Deliverer,
    verifier: Arc<Verifier>,
    config: Config,
}

impl App {
    /// Connects, migrates, checks the templates and transports, binds the listeners.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        // reqwest and lettre share rustls; ring is the one provider compiled in.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let templates = match &config.template_dir {
            Some(dir) => Templates::from_dir(dir),
            None => Templates::builtin(),
        }
        .context("loading the templates")?;
        let from = config
            .mail_from
            .parse()
            .with_context(|| format!("--mail-from {:?} is not a mailbox", config.mail_from))?;
        let mail: Arc<dyn MailTransport> = match &config.smtp_url {
            Some(url) => Arc::new(Smtp::from_url(url.expose(), config.send_timeout)?),
            None => Arc::new(MailFiles::new(config.mail_dir())),
        };
        let sms: Arc<dyn SmsTransport> = match &config.sms_webhook_url {
            Some(url) => Arc::new(SmsWebhook::new(url.expose(), config.send_timeout)?),
            None => Arc::new(SmsFiles::new(config.sms_dir())),
        };
        tracing::info!(mail = %mail.describe(), sms = %sms.describe(), "transports");

        let db = weft_events::db::open_service_db(
            config.database_url.as_ref().map(|u| u.expose().as_str()),
            &config.data_dir,
            "notification",
            sqlx::migrate!("./migrations/sqlite"),
            sqlx::migrate!("./migrations/postgres"),
        )
        .await
        .context("opening the notification database")?;
        let relay = Relay::new(
            db.clone(),
            &config.kafka,
            "weft-notification-relay",
            RelayConfig::default(),
        )?;
        let deliverer = Deliverer {
            db: db.clone(),
            replica: weft_events::lease::replica_id(),
            mail,
            sms,
            templates: Arc::new(templates),
            relay: relay.waker(),
            dlq: DeadLetters::new(&config.kafka, &config.consumer_group)?,
            wake: Arc::new(Notify::new()),
            limits: RecipientLimits::new(config.recipient_limit),
            config: DeliveryConfig {
                max_attempts: config.max_attempts,
                from,
                idle_poll: Duration::from_secs(1),
                concurrency: config.delivery_concurrency as usize,
                send_timeout: config.send_timeout,
            },
        };
        let grpc = GrpcServer::bind(config.grpc_addr, config.server.clone()).await?;
        let admin = AdminServer::bind(config.admin_addr).await?;
        Ok(Self {
            grpc,
            admin,
            db,
            relay,
            deliverer,
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
            crate::store::prune_rules(),
        );
        let readiness = self
            .grpc
            .readiness(&[SERVICE])
            .with_probe("database", self.db.probe())
            .with_probe_after("broker", self.config.kafka.broker_grace, broker)
            .with_probe("token keys", weft_auth::keys_probe(self.verifier.clone()));

        let wake = self.deliverer.wake.clone();
        let consumer = Consumer::new(
            &self.config.consumer_group,
            self.config.kafka.clone(),
            self.db.clone(),
        )
        .on::<UserSignedUp>(Welcome)
        .on::<UserUpdated>(ContactChanges)
        .on::<OrderCreated>(Confirmation)
        .on::<OrderShipped>(Shipping)
        .on::<ContactVerificationRequested>(Verification {
            public_url: self.config.public_url.clone(),
        })
        .on::<ContactVerified>(Verified)
        // Never replayed: that would message every user again.
        .with_args(&self.config.consumer)
        .after_commit(move |_, _| wake.notify_one());
        let stop = shutdown.clone();
        let jwks = self
            .config
            .jwks
            .refresh(self.verifier.clone(), async move { stop.cancelled().await });
        let limit = self.grpc.max_message_bytes();
        let server = NotificationServiceServer::new(NotificationApi { db: self.db })
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
        let delivery = tokio::spawn(self.deliverer.run(shutdown.clone()));
        let admin = tokio::spawn(self.admin.serve(readiness.flag(), shutdown.clone()));
        let pruner = tokio::spawn(pruner.run(shutdown.clone()));
        let grace = self.config.server.shutdown_grace;
        let served = self.grpc.serve(routes, readiness, shutdown).await;
        let mut failure = None;
        let background = async {
            let _ = pruner.await;
            let _ = delivery.await;
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
