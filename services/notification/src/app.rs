//! Assembling the notification service: database, transports, templates, the
//! consumer, the delivery worker, the outbox relay, the token verifier and the gRPC
//! and admin servers.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use weft_events::dlq::DeadLetters;
use weft_events::{Database, Relay};
use weft_kit::host::{Host, Identity, Service, Settings};
use weft_proto::notification::notification_service_server::NotificationServiceServer;
use weft_proto::order::{OrderCreated, OrderShipped};
use weft_proto::user::{ContactVerificationRequested, ContactVerified, UserSignedUp, UserUpdated};

use crate::config::{Config, MailFormat};
use crate::delivery::{Deliverer, DeliveryConfig, RecipientLimits};
use crate::mailbox::MailboxFiles;
use crate::reactions::{Confirmation, ContactChanges, Shipping, Verification, Verified, Welcome};
use crate::service::NotificationApi;
use crate::templates::Templates;
use crate::transport::{MailFiles, MailTransport, SmsFiles, SmsTransport, SmsWebhook, Smtp};

/// A built, bound, not yet running notification service.
pub struct App {
    db: Database,
    relay: Relay,
    deliverer: Deliverer,
    config: Config,
}

impl Service for App {
    type Config = Config;
    const IDENTITY: Identity = crate::config::IDENTITY;

    fn settings(config: &Config) -> &dyn Settings {
        &config.common
    }

    /// Connects, migrates, checks the templates and transports, binds the listeners.
    async fn build(config: Config) -> anyhow::Result<(Host, Self)> {
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
        let (mail, sms) = transports(&config)?;

        let db = (config.common)
            .open_db(Self::IDENTITY, weft_events::migrations!())
            .await?;
        let relay = config.common.relay(Self::IDENTITY, &db)?;
        let deliverer = Deliverer {
            db: db.clone(),
            replica: weft_events::lease::replica_id(),
            mail,
            sms,
            templates: Arc::new(templates),
            relay: relay.waker(),
            dlq: DeadLetters::new(&config.common.kafka, &config.consumer_group)?,
            wake: Arc::new(Notify::new()),
            limits: RecipientLimits::new(config.recipient_limit),
            config: DeliveryConfig {
                max_attempts: config.max_attempts,
                from,
                idle_poll: Duration::from_secs(1),
                concurrency: config.delivery_concurrency as usize,
                send_timeout: config.send_timeout,
                local: config.smtp_url.is_none() && config.sms_webhook_url.is_none(),
            },
        };
        let host = config.common.bind(Self::IDENTITY).await?;
        Ok((
            host,
            Self {
                db,
                relay,
                deliverer,
                config,
            },
        ))
    }

    /// Serves until `shutdown`, then drains.
    async fn run_until_stopped(
        self,
        mut host: Host,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let (config, db) = (self.config, self.db);
        (config.common).backbone(&mut host, &db, crate::store::prune_rules())?;
        let verifier = config.jwks.verifier(&mut host);
        host.probe("token keys", weft_auth::keys_probe(verifier.clone()));
        let wake = self.deliverer.wake.clone();
        let consumer = (config.common)
            .consumer(&config.consumer_group, &db)
            .on::<UserSignedUp>(Welcome)
            .on::<UserUpdated>(ContactChanges)
            .project::<OrderCreated>(Confirmation)
            .on::<OrderShipped>(Shipping)
            .on::<ContactVerificationRequested>(Verification {
                public_url: config.public_url.clone(),
            })
            .on::<ContactVerified>(Verified)
            // Never replayed: that would message every user again.
            .with_args(&config.consumer)
            .after_commit(move |_, _| wake.notify_one());
        let server =
            weft_kit::limited!(host, NotificationServiceServer::new(NotificationApi { db }));
        host.serve(weft_auth::guarded(server, &verifier))
            .background("outbox relay", |stop| self.relay.run(stop));
        weft_events::consumer::hosted(&mut host, consumer)
            .background("delivery", |stop| self.deliverer.run(stop));
        host.run(shutdown).await
    }
}

/// The mail and SMS transports `config` names: SMTP and the webhook when given, else
/// files under the data dir.
fn transports(config: &Config) -> anyhow::Result<(Arc<dyn MailTransport>, Arc<dyn SmsTransport>)> {
    let mail: Arc<dyn MailTransport> = match &config.smtp_url {
        Some(url) => Arc::new(Smtp::from_url(url.expose(), config.send_timeout)?),
        None => match config.mail_format {
            MailFormat::Mbox => Arc::new(MailboxFiles::new(config.mail_dir())),
            MailFormat::Eml => Arc::new(MailFiles::new(config.mail_dir())),
        },
    };
    let sms: Arc<dyn SmsTransport> = match &config.sms_webhook_url {
        Some(url) => Arc::new(SmsWebhook::new(url.expose(), config.send_timeout)?),
        None => Arc::new(SmsFiles::new(config.sms_dir())),
    };
    tracing::info!(mail = %mail.describe(), sms = %sms.describe(), "transports");
    Ok((mail, sms))
}
