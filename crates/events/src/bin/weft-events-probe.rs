//! A small process that exercises the event backbone from outside a test: the relay
//! (optionally hanging before publish, to be killed) and a consumer that records an
//! effect per applied event. Integration tests run it as a separate process.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use sqlx::AnyConnection;
use tokio_util::sync::CancellationToken;
use weft_events::consumer::{Handler, HandlerError, Received, StartFrom};
use weft_events::kafka::KafkaArgs;
use weft_events::outbox::RelayConfig;
use weft_events::{Consumer, Database, Relay};
use weft_proto::order::OrderCreated;
use weft_proto::user::UserSignedUp;

#[derive(Parser)]
#[command(about = "Drives the weft event backbone for tests")]
struct Cli {
    /// Database URL (sqlite:// or postgres://).
    #[arg(long)]
    db: String,
    /// Bootstrap brokers.
    #[arg(long)]
    brokers: String,
    /// Prefix and settings, as the services take them.
    #[command(flatten)]
    client: weft_events::kafka::ClientArgs,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs the outbox relay until killed.
    Relay {
        /// Hang after reading a batch, before publishing it.
        #[arg(long)]
        hang_before_publish: bool,
    },
    /// Runs a consumer that records one effect row per applied event and prints a
    /// JSON line per settled record.
    Consume(ConsumeArgs),
}

#[derive(clap::Args)]
struct ConsumeArgs {
    /// Consumer group.
    #[arg(long)]
    group: String,
    /// Also write a marker file here once the consumer is running.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Where to begin when the group has no stored offsets but the topics have
    /// history.
    #[arg(long, value_enum)]
    from: Option<StartFrom>,
    /// This member's replica id in the group.
    #[arg(long)]
    replica: Option<String>,
    /// Fault injection for crash tests: after applying this many events in
    /// this process, print `hanging` and hang inside the batch's transaction
    /// (a test then kills the process).
    #[arg(long)]
    hang_after: Option<u64>,
}

struct RecordEffect {
    applied: AtomicU64,
    hang_after: Option<u64>,
}

#[async_trait::async_trait]
impl Handler for RecordEffect {
    async fn handle(&self, tx: &mut AnyConnection, event: &Received) -> Result<(), HandlerError> {
        if let Some(n) = self.hang_after
            && self.applied.load(Ordering::SeqCst) >= n
        {
            println!("hanging");
            std::future::pending::<()>().await;
        }
        let user_id = match event.envelope.event_type.as_str() {
            "weft.user.v1.UserSignedUp" => event.decode::<UserSignedUp>()?.user_id,
            _ => {
                let order = event.decode::<OrderCreated>()?;
                if order.user_id.is_empty() || order.items.is_empty() {
                    return Err(HandlerError::Permanent(
                        "order without user or items".into(),
                    ));
                }
                order.user_id
            }
        };
        // No unique key on purpose: a double-applied event would show as two rows.
        sqlx::query("INSERT INTO probe_effects (event_id, user_id) VALUES ($1, $2)")
            .bind(event.envelope.id.clone())
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        self.applied.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = weft_kit::telemetry::init(
        "weft-events-probe",
        &weft_kit::config::TelemetryArgs {
            log_filter: std::env::var("WEFT_LOG").unwrap_or_else(|_| "info".into()),
            ..Default::default()
        },
    )?;
    let mut kafka = KafkaArgs::new(cli.brokers);
    kafka.client = cli.client;
    let db = Database::connect(&cli.db).await.context("database")?;
    let shutdown = weft_kit::shutdown::on_signal();
    match cli.command {
        Cmd::Relay {
            hang_before_publish,
        } => {
            let config = RelayConfig {
                hang_before_publish,
                ..RelayConfig::default()
            };
            let relay = Relay::new(db, &kafka, "probe-relay", config)?;
            println!("relay running");
            relay.run(shutdown).await;
        }
        Cmd::Consume(args) => consume(args, kafka, db, shutdown).await?,
    }
    Ok(())
}

/// Runs the `consume` command until `shutdown`.
async fn consume(
    args: ConsumeArgs,
    kafka: KafkaArgs,
    db: Database,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS probe_effects (event_id TEXT NOT NULL, user_id TEXT NOT NULL)",
    )
    .execute(db.pool())
    .await?;
    let effect = || RecordEffect {
        applied: AtomicU64::new(0),
        hang_after: args.hang_after,
    };
    let mut consumer = Consumer::new(&args.group, kafka, db)
        .on::<UserSignedUp>(effect())
        .on::<OrderCreated>(effect())
        .start_from(args.from);
    if let Some(replica) = &args.replica {
        consumer = consumer.replica(replica);
    }
    let consumer = consumer.after_commit(|received, outcome| {
        println!(
            "{}",
            serde_json::json!({
                "event_id": received.envelope.id,
                "type": received.envelope.event_type,
                "outcome": format!("{outcome:?}"),
            })
        );
    });
    if let Some(path) = args.ready_file {
        std::fs::write(path, b"ready")?;
    }
    consumer.run(shutdown).await?;
    Ok(())
}
