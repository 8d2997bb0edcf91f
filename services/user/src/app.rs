//! Assembling the user service: database and migrations, signing key, outbox relay,
//! gRPC and admin servers, readiness probes. [`Service::build`] binds every listener
//! before it returns, so a test knows the ports at once.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use weft_auth::{Issuer, SigningKeys, TokenConfig, Verifier};
use weft_events::Relay;
use weft_kit::host::{Host, Identity, Service, Settings};
use weft_proto::user::user_service_server::UserServiceServer;

use crate::config::Config;
use crate::password::Hasher;
use crate::service::LoginPolicy;
use crate::service::UserApi;

/// A built, bound, not yet running user service.
pub struct App {
    api: UserApi,
    relay: Relay,
    verifier: Arc<Verifier>,
    config: Config,
}

impl Service for App {
    type Config = Config;
    const IDENTITY: Identity = crate::config::IDENTITY;

    fn settings(config: &Config) -> &dyn Settings {
        &config.common
    }

    /// Connects, migrates, loads keys and binds the listeners.
    async fn build(config: Config) -> anyhow::Result<(Host, Self)> {
        let db = (config.common)
            .open_db(Self::IDENTITY, weft_events::migrations!())
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
        let relay = config.common.relay(Self::IDENTITY, &db)?;
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
        let host = config.common.bind(Self::IDENTITY).await?;
        Ok((
            host,
            Self {
                api,
                relay,
                verifier,
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
        (self.config.common).backbone(&mut host, &self.api.db, Vec::new())?;
        let server = weft_kit::limited!(host, UserServiceServer::new(self.api));
        host.serve(weft_auth::guarded(server, &self.verifier))
            .background("outbox relay", |stop| self.relay.run(stop));
        host.run(shutdown).await
    }
}
