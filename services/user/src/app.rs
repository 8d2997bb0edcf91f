//! Assembling the user service: database and migrations, signing key, outbox relay,
//! gRPC and admin servers, readiness probes. [`App::build`] binds every listener
//! before it returns, so a test knows the ports at once.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;
use weft_auth::{Issuer, SigningKeys, TokenConfig, Verifier};
use weft_events::Relay;
use weft_events::outbox::RelayConfig;
use weft_kit::admin::AdminServer;
use weft_kit::grpc::GrpcServer;
use weft_proto::user::user_service_server::UserServiceServer;

use crate::config::Config;
use crate::password::Hasher;
use crate::service::LoginPolicy;
use crate::service::UserApi;

/// Full proto name of the service, for health.
pub const SERVICE: &str = "weft.user.v1.UserService";

/// A built, bound, not yet running user service.
pub struct App {
    grpc: GrpcServer,
    admin: AdminServer,
    api: UserApi,
    relay: Relay,
    verifier: Arc<Verifier>,
    config: Config,
}

impl App {
    /// Connects, migrates, loads keys and binds the listeners.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let db = weft_events::db::open_service_db(
            config.database_url.as_ref().map(|u| u.expose().as_str()),
            &config.data_dir,
            "user",
            sqlx::migrate!("./migrations/sqlite"),
            sqlx::migrate!("./migrations/postgres"),
        )
        .await
        .context("opening the user database")?;
        let key_file = config
            .signing_key_file
            .clone()
            .unwrap_or_else(|| config.data_dir.join("keys/user-token.pem"));
        let keys = Arc::new(SigningKeys::load_or_create(&key_file)?);
        let tokens = TokenConfig {
            ttl: config.token_ttl,
            ..TokenConfig::default()
        };
        let verifier = Arc::new(Verifier::new(&tokens));
        verifier.set_keys(&[keys.jwk()]);
        let relay = Relay::new(
            db.clone(),
            &config.kafka,
            "weft-user-relay",
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
        let grpc = GrpcServer::bind(config.grpc_addr, config.server.clone()).await?;
        let admin = AdminServer::bind(config.admin_addr).await?;
        Ok(Self {
            grpc,
            admin,
            api,
            relay,
            verifier,
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
            .with_probe_after("broker", self.config.kafka.broker_grace, broker);
        let limit = self.grpc.max_message_bytes();
        let server = UserServiceServer::new(self.api)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);
        let routes = Routes::new(InterceptedService::new(
            server,
            weft_auth::interceptor(self.verifier),
        ));

        let relay = tokio::spawn(self.relay.run(shutdown.clone()));
        let admin = tokio::spawn(self.admin.serve(readiness.flag(), shutdown.clone()));
        let pruner = tokio::spawn(pruner.run(shutdown.clone()));
        let grace = self.config.server.shutdown_grace;
        let served = self.grpc.serve(routes, readiness, shutdown).await;
        // Background work gets the same grace as RPCs; a client stuck on a vanished
        // broker must not keep the process alive.
        let background = async {
            let _ = pruner.await;
            let _ = relay.await;
            let _ = admin.await;
        };
        weft_kit::shutdown::drain(grace, background).await;
        served.map_err(Into::into)
    }
}
