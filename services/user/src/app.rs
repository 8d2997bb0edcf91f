//! Assembling the user service: database and migrations, signing key, outbox relay,
//! gRPC and admin servers, readiness probes. [`Service::build`] binds every listener
//! before it returns, so a test knows the ports at once.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use weft_auth::{Issuer, SigningKeys, TokenConfig, Verifier};
use weft_events::Relay;
use weft_events::outbox::RelayConfig;
use weft_kit::host::{Host, Identity, Service, Settings};
use weft_proto::DESCRIPTOR_SET;
use weft_proto::user::user_service_server::UserServiceServer;

use crate::config::Config;
use crate::password::Hasher;
use crate::service::LoginPolicy;
use crate::service::UserApi;

/// A built, bound, not yet running user service.
pub struct App {
    host: Host,
    api: UserApi,
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

    /// Connects, migrates, loads keys and binds the listeners.
    async fn build(config: Config) -> anyhow::Result<Self> {
        let db = config
            .common
            .open_db(
                Self::IDENTITY,
                sqlx::migrate!("./migrations/sqlite"),
                sqlx::migrate!("./migrations/postgres"),
            )
            .await?;
        let key_file = config
            .signing_key_file
            .clone()
            .unwrap_or_else(|| config.common.data_dir.join("keys/user-token.pem"));
        let keys = Arc::new(SigningKeys::load_or_create(&key_file)?);
        let tokens = TokenConfig {
            ttl: config.token_ttl,
            ..TokenConfig::default()
        };
        let verifier = Arc::new(Verifier::new(&tokens));
        verifier.set_keys(&[keys.jwk()]);
        let relay = Relay::new(
            db.clone(),
            &config.common.kafka,
            &Self::IDENTITY.relay_client(),
            RelayConfig::default(),
        )?;
        let mut dummy = [0u8; 16];
        rand::fill(&mut dummy);
        let hasher = Hasher::new(config.hash_workers as usize, config.hash_queue as usize)?;
        let dummy_hash = hasher
            .hash(format!("{dummy:x?}"))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let api = UserApi {
            db,
            relay: relay.waker(),
            issuer: Issuer::new(keys.clone(), tokens),
            keys,
            hasher,
            login: LoginPolicy {
                max_attempts: i64::try_from(config.login_max_failures).unwrap_or(5),
                window: config.login_lockout,
            },
            dummy_hash,
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
            verifier,
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
        let limit = host.message_limit();
        let server = UserServiceServer::new(api)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);
        host.serve(InterceptedService::new(
            server,
            weft_auth::interceptor(verifier),
        ))
        .background("outbox relay", |stop| relay.run(stop));
        host.run(shutdown).await
    }
}
