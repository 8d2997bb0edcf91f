//! The settings every weft service that keeps state and meets the broker shares, one
//! clap group each service flattens into its own `Config`: where its data lives, its
//! gRPC server's limits, Kafka, pruning, and telemetry.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use sqlx::migrate::Migrator;
use weft_kit::config::{Secret, ServerArgs, TelemetryArgs};
use weft_kit::host::{Host, Identity, Settings};

use crate::consumer::Consumer;
use crate::db::Database;
use crate::error::EventsError;
use crate::kafka::KafkaArgs;
use crate::outbox::{Relay, RelayConfig};
use crate::retention::{Pruner, RetentionArgs, Rule};

/// A service's own migrations, one set per database; [`migrations!`](crate::migrations)
/// reads both from the calling crate's `migrations/sqlite` and `migrations/postgres`.
pub struct Migrations {
    /// For SQLite.
    pub sqlite: Migrator,
    /// For PostgreSQL.
    pub postgres: Migrator,
}

/// The calling crate's [`Migrations`], embedded at compile time from its
/// `migrations/sqlite` and `migrations/postgres` directories.
#[macro_export]
macro_rules! migrations {
    () => {
        $crate::service::Migrations {
            sqlite: ::sqlx::migrate!("./migrations/sqlite"),
            postgres: ::sqlx::migrate!("./migrations/postgres"),
        }
    };
}

/// Settings shared by the user, order, notification and analytics services.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceArgs {
    /// gRPC listen address [default: 0.0.0.0 on the service's own port: user 5051,
    /// order 5052, notification 5053, analytics 5054].
    #[arg(long, env = "WEFT_GRPC_ADDR")]
    pub grpc_addr: Option<SocketAddr>,
    /// Admin (/metrics, /readyz) listen address [default: 0.0.0.0 on the service's own
    /// admin port: 9101, 9102, 9103 and 9104 in the same order].
    #[arg(long, env = "WEFT_ADMIN_ADDR")]
    pub admin_addr: Option<SocketAddr>,
    /// Data directory: the SQLite databases, the signing key, the mail and SMS
    /// directories by default, and the fault flags.
    #[arg(long, env = "WEFT_DATA_DIR", default_value = ".weft")]
    pub data_dir: PathBuf,
    /// PostgreSQL URL; SQLite under the data dir when absent.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<Secret<String>>,
    /// gRPC server limits.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Kafka.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Pruning of old inbox and outbox rows.
    #[command(flatten)]
    pub retention: RetentionArgs,
    /// Logs and traces.
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

impl ServiceArgs {
    /// The database of the service `identity` (`--database-url`, else SQLite in the
    /// data directory), connected and migrated with the backbone's and the
    /// service's migrations.
    pub async fn open_db(
        &self,
        identity: Identity,
        migrations: Migrations,
    ) -> anyhow::Result<Database> {
        use anyhow::Context as _;
        crate::db::open_service_db(
            self.database_url.as_ref().map(|u| u.expose().as_str()),
            &self.data_dir,
            identity.name,
            migrations.sqlite,
            migrations.postgres,
        )
        .await
        .with_context(|| format!("opening the {} database", identity.name))
    }

    /// Where the service `identity` serves gRPC: `--grpc-addr`, else every interface
    /// on its own port.
    pub fn grpc_addr(&self, identity: Identity) -> SocketAddr {
        self.grpc_addr
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], identity.ports.grpc)))
    }

    /// Where the service `identity` serves its admin endpoints: `--admin-addr`, else
    /// every interface on its own admin port.
    pub fn admin_addr(&self, identity: Identity) -> SocketAddr {
        self.admin_addr
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], identity.ports.admin)))
    }

    /// Binds the host of the service `identity` on its gRPC and admin addresses,
    /// serving weft's contracts (reflection, RPC metrics) within these settings'
    /// server limits.
    pub async fn bind(&self, identity: Identity) -> Result<Host, weft_kit::KitError> {
        Host::bind(
            identity,
            weft_proto::DESCRIPTOR_SET,
            self.grpc_addr(identity),
            self.admin_addr(identity),
            &self.server,
        )
        .await
    }

    /// The outbox relay of the service `identity` over `db`, publishing to these
    /// settings' Kafka as its own client.
    pub fn relay(&self, identity: Identity, db: &Database) -> Result<Relay, EventsError> {
        Relay::new(
            db.clone(),
            &self.kafka,
            &identity.relay_client(),
            RelayConfig::default(),
        )
    }

    /// A member of the consumer group `group` on these settings' Kafka, its inbox
    /// and offsets in `db`.
    pub fn consumer(&self, group: &str, db: &Database) -> Consumer {
        Consumer::new(group, self.kafka.clone(), db.clone())
    }

    /// What every stateful service runs beside its own work: readiness follows the
    /// database and the broker (a broker failure counts once it has lasted
    /// `--broker-grace`), and the pruner keeps the inbox, the sent outbox and `more`
    /// within their retention.
    pub fn backbone(
        &self,
        host: &mut Host,
        db: &Database,
        more: Vec<Rule>,
    ) -> Result<(), EventsError> {
        let broker = crate::kafka::broker_probe(&self.kafka)?;
        let pruner = Pruner::new(db.clone(), self.retention.clone(), more);
        host.probe("database", db.probe())
            .probe_after("broker", self.kafka.broker_grace, broker)
            .background("pruner", |stop| pruner.run(stop));
        Ok(())
    }
}

impl Settings for ServiceArgs {
    fn telemetry(&self) -> &TelemetryArgs {
        &self.telemetry
    }

    fn fault_dir(&self) -> Option<&Path> {
        Some(&self.data_dir)
    }
}
