//! The settings every weft service that keeps state and meets the broker shares, one
//! clap group each service flattens into its own `Config`: where its data lives, its
//! gRPC server's limits, Kafka, pruning, and telemetry.

use std::path::PathBuf;

use sqlx::migrate::Migrator;
use weft_kit::config::{Secret, ServerArgs, TelemetryArgs};

use crate::db::Database;
use crate::error::EventsError;
use crate::kafka::KafkaArgs;
use crate::retention::RetentionArgs;

/// Settings shared by the user, order, notification and analytics services.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceArgs {
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
    /// The database of service `name` (`--database-url`, else SQLite in the data
    /// directory), connected and migrated with the backbone's and the service's
    /// migrations.
    pub async fn open_db(
        &self,
        name: &str,
        sqlite: Migrator,
        postgres: Migrator,
    ) -> Result<Database, EventsError> {
        crate::db::open_service_db(
            self.database_url.as_ref().map(|u| u.expose().as_str()),
            &self.data_dir,
            name,
            sqlite,
            postgres,
        )
        .await
    }
}
