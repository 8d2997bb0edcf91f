//! The command line of `weft`. Every flag also reads a `WEFT_*` (or standard)
//! environment variable; defaults run the embedded mesh on the ports of the design.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// weft: a gRPC service mesh with a Kafka event backbone.
#[derive(Debug, Parser)]
#[command(name = "weft", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the whole mesh on this machine: broker, topics, services, gateway.
    Up(UpArgs),
    /// Print the events of a topic, decoded by their ce_type, as JSON lines.
    Tail(TailArgs),
    /// The seed's story against a running mesh, step by step; with `--load`, a
    /// bounded load of sign-ups, orders and reads with live figures and a summary.
    Demo(DemoArgs),
    /// Turn fault flags on and off while the mesh runs (payment failures, a slow or
    /// paused consumer, notifications down), to watch it cope.
    #[command(subcommand)]
    Fault(FaultCommand),
    /// Look at the dead-letter topics, replay records once their cause is fixed,
    /// purge a dead-letter topic.
    Dlq(DlqArgs),
    /// How far each consumer group is behind: per partition, the offset stored in
    /// the consuming service's database, the partition's end, and which replica
    /// holds it.
    Lag(LagArgs),
    /// Grant, revoke and list roles through the user service's database (an
    /// operator's tool: it needs access to that database, i.e. this machine's data
    /// dir or the PostgreSQL credentials).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Run one service in this process (what `weft up` starts as its children).
    /// Everything after the service name is that service's own flags; see
    /// `weft serve user -- --help`.
    Serve(ServeArgs),
}

/// The services `weft serve` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServiceName {
    /// weft.user.v1.UserService.
    User,
    /// weft.order.v1.OrderService.
    Order,
    /// weft.notification.v1.NotificationService.
    Notification,
    /// weft.analytics.v1.AnalyticsService.
    Analytics,
    /// The REST gateway (and the live dashboard page).
    Gateway,
    /// The embedded Kafka-compatible broker.
    Broker,
}

/// Flags of `weft serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// The service to run.
    #[arg(value_enum)]
    pub service: ServiceName,
    /// The service's own flags.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Which broker the mesh uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BrokerMode {
    /// Start the embedded Kafka-compatible broker (weft-broker).
    Embedded,
    /// Use the Kafka cluster named by `--kafka-brokers` / `KAFKA_BROKERS`.
    External,
    /// Start a local Apache Kafka cluster (KRaft, `scripts/kafka`: Java 17+, fetched
    /// from Maven Central once) in the data dir, and stop it with the mesh.
    Kafka,
}

/// Flags of `weft up`.
#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// Directory for databases, broker storage, mail and logs.
    #[arg(long, env = "WEFT_DATA_DIR", default_value = ".weft")]
    pub data_dir: PathBuf,
    /// Embedded broker or an external Kafka.
    #[arg(long, env = "WEFT_BROKER", value_enum, default_value_t = BrokerMode::Embedded)]
    pub broker: BrokerMode,
    /// Port of the embedded broker (Kafka protocol).
    #[arg(long, env = "WEFT_BROKER_PORT", default_value_t = 9092)]
    pub broker_port: u16,
    /// Bootstrap servers of an external Kafka (required with `--broker external`).
    #[arg(long, env = "KAFKA_BROKERS", required_if_eq("broker", "external"))]
    pub kafka_brokers: Option<String>,
    /// Nodes of the local Apache Kafka cluster of `--broker kafka` (1 or 3).
    #[arg(long, env = "WEFT_KAFKA_NODES", default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub kafka_nodes: u8,
    /// First port of the local Apache Kafka cluster of `--broker kafka`: node i listens
    /// on this + i - 1 (and + 100, + 200 for its controller and SASL_SSL listeners).
    #[arg(long, env = "WEFT_KAFKA_PORT", default_value_t = 19192,
          value_parser = clap::value_parser!(u16).range(1025..=65235))]
    pub kafka_port: u16,
    /// Partitions of each topic created at start-up.
    #[arg(long, env = "WEFT_TOPIC_PARTITIONS", default_value_t = 3)]
    pub topic_partitions: i32,
    /// Replication factor of each topic created at start-up (default: 1, or the
    /// number of nodes with `--broker kafka`).
    #[arg(long, env = "WEFT_TOPIC_REPLICATION")]
    pub topic_replication: Option<i32>,
    /// `min.insync.replicas` of each topic created at start-up (default: the
    /// cluster's, or 2 with `--broker kafka` on 3 nodes).
    #[arg(long, env = "WEFT_TOPIC_MIN_INSYNC_REPLICAS")]
    pub topic_min_insync_replicas: Option<i32>,
    /// Kafka client settings and names, passed on to every service.
    #[command(flatten)]
    pub kafka_client: weft_events::kafka::ClientArgs,
    /// Address the services listen on; 0.0.0.0 exposes them beyond this machine.
    #[arg(long, env = "WEFT_HOST", default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// gRPC port of the user service.
    #[arg(long, env = "WEFT_USER_PORT", default_value_t = 5051)]
    pub user_port: u16,
    /// gRPC port of the order service.
    #[arg(long, env = "WEFT_ORDER_PORT", default_value_t = 5052)]
    pub order_port: u16,
    /// gRPC port of the notification service.
    #[arg(long, env = "WEFT_NOTIFICATION_PORT", default_value_t = 5053)]
    pub notification_port: u16,
    /// gRPC port of the analytics service.
    #[arg(long, env = "WEFT_ANALYTICS_PORT", default_value_t = 5054)]
    pub analytics_port: u16,
    /// HTTP port of the gateway: REST/JSON, the live dashboard and `/openapi.json`.
    #[arg(long, env = "WEFT_GATEWAY_PORT", default_value_t = 8080)]
    pub gateway_port: u16,
    /// Admin (/metrics) port of the gateway.
    #[arg(long, env = "WEFT_GATEWAY_ADMIN_PORT", default_value_t = 9100)]
    pub gateway_admin_port: u16,
    /// Admin (/metrics) port of the user service.
    #[arg(long, env = "WEFT_USER_ADMIN_PORT", default_value_t = 9101)]
    pub user_admin_port: u16,
    /// Admin (/metrics) port of the order service.
    #[arg(long, env = "WEFT_ORDER_ADMIN_PORT", default_value_t = 9102)]
    pub order_admin_port: u16,
    /// Admin (/metrics) port of the notification service.
    #[arg(long, env = "WEFT_NOTIFICATION_ADMIN_PORT", default_value_t = 9103)]
    pub notification_admin_port: u16,
    /// Admin (/metrics) port of the analytics service.
    #[arg(long, env = "WEFT_ANALYTICS_ADMIN_PORT", default_value_t = 9104)]
    pub analytics_admin_port: u16,
    /// A PostgreSQL server for every service: each gets its own database on it,
    /// named `<database>_<service>` and created when missing. Per-service URLs below
    /// take precedence. SQLite under the data dir when neither is given.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// PostgreSQL URL of the user service's database (SQLite under the data dir when
    /// absent).
    #[arg(long, env = "WEFT_USER_DATABASE_URL")]
    pub user_database_url: Option<String>,
    /// PostgreSQL URL of the order service's database (SQLite under the data dir when
    /// absent).
    #[arg(long, env = "WEFT_ORDER_DATABASE_URL")]
    pub order_database_url: Option<String>,
    /// PostgreSQL URL of the notification service's database (SQLite under the data
    /// dir when absent).
    #[arg(long, env = "WEFT_NOTIFICATION_DATABASE_URL")]
    pub notification_database_url: Option<String>,
    /// PostgreSQL URL of the analytics service's database (SQLite under the data dir
    /// when absent).
    #[arg(long, env = "WEFT_ANALYTICS_DATABASE_URL")]
    pub analytics_database_url: Option<String>,
    /// What the consuming services do with stored offsets past a partition's end
    /// (the broker's data was reset or replaced under existing databases): stop with
    /// an error naming them (unset), or `earliest` / `latest` (see `weft serve
    /// analytics --help`).
    #[arg(long, env = "WEFT_RESET_OFFSETS", value_enum)]
    pub reset_offsets: Option<weft_events::consumer::offsets::StaleOffsets>,
    /// Where the consuming services begin when their databases have no offsets yet
    /// but the topics have history (another mesh's on a shared cluster, or this one's
    /// from before its databases were replaced): `latest` applies only what comes
    /// next, `earliest` the whole history again (orders created, emails sent). Unset,
    /// the order and notification services refuse such a start.
    #[arg(long = "from", env = "WEFT_CONSUMER_FROM", value_enum)]
    pub from: Option<weft_events::consumer::StartFrom>,
    /// Instances of each service (user, order, notification, analytics) to run. They
    /// share their service's database, so more than one needs PostgreSQL
    /// (`--database-url`). Replica k (from 2) listens on each of its service's ports
    /// plus (k - 1) × `--replica-port-step`; the one gateway balances over them all.
    #[arg(long, env = "WEFT_REPLICAS", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=9))]
    pub replicas: u8,
    /// How far apart the ports of one service's replicas are.
    #[arg(long, env = "WEFT_REPLICA_PORT_STEP", default_value_t = 100,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub replica_port_step: u16,
    /// How many times a crashed service (or the embedded broker) is started again
    /// within one --restart-window before it is marked failed.
    #[arg(long, env = "WEFT_MAX_RESTARTS", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_restarts: u32,
    /// How far back crashes count against --max-restarts; older ones are forgotten.
    #[arg(long, env = "WEFT_RESTART_WINDOW", default_value = "10m",
          value_parser = weft_kit::config::positive_duration)]
    pub restart_window: std::time::Duration,
    /// How often a service marked failed is tried again (the rest of the mesh goes on).
    #[arg(long, env = "WEFT_FAILED_RETRY", default_value = "60s",
          value_parser = weft_kit::config::positive_duration)]
    pub failed_retry: std::time::Duration,
    /// Stop the whole mesh when the embedded broker crashes more than --max-restarts
    /// times within one --restart-window, instead of marking it failed and trying it
    /// again every --failed-retry while the services hold their events.
    #[arg(long, env = "WEFT_BROKER_FAIL_FAST")]
    pub broker_fail_fast: bool,
    /// Exit once everything is up and healthy instead of running until Ctrl-C
    /// (for smoke tests and start-up timing).
    #[arg(long)]
    pub check: bool,
}

/// `weft admin …`.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Give a user a role (`staff` or `admin`).
    Grant(RoleArgs),
    /// Take a role from a user.
    Revoke(RoleArgs),
    /// Print a user's roles.
    Roles(UserDbArgs),
    /// Print the newest role changes (who, what, when).
    Audit(AuditArgs),
}

/// Where the user service's database is.
#[derive(Debug, Clone, clap::Args)]
pub struct DbArgs {
    /// The data dir of the mesh (its SQLite `user.db`).
    #[arg(long, env = "WEFT_DATA_DIR", default_value = ".weft")]
    pub data_dir: PathBuf,
    /// PostgreSQL URL of the user service's own database, when it runs on
    /// PostgreSQL (with `weft up --database-url postgres://…/weft` that is
    /// `postgres://…/weft_user`).
    #[arg(long = "database-url", env = "WEFT_USER_DATABASE_URL")]
    pub database_url: Option<String>,
}

/// A user by email, and the database.
#[derive(Debug, Clone, clap::Args)]
pub struct UserDbArgs {
    /// The user's email address.
    pub email: String,
    /// The database.
    #[command(flatten)]
    pub db: DbArgs,
}

/// A user, a role and the database.
#[derive(Debug, Clone, clap::Args)]
pub struct RoleArgs {
    /// The user's email address.
    pub email: String,
    /// `customer`, `staff` or `admin`.
    pub role: String,
    /// The database.
    #[command(flatten)]
    pub db: DbArgs,
}

/// Flags of `weft admin audit`.
#[derive(Debug, Clone, clap::Args)]
pub struct AuditArgs {
    /// How many changes, newest first.
    #[arg(long, short = 'n', default_value_t = 50)]
    pub limit: i64,
    /// The database.
    #[command(flatten)]
    pub db: DbArgs,
}

/// Where `weft tail` starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StartAt {
    /// The oldest record of each partition.
    Beginning,
    /// Only records produced from now on.
    End,
}

/// The cluster a tool talks to.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Bootstrap servers.
    #[arg(
        long,
        env = "KAFKA_BROKERS",
        default_value = "localhost:9092",
        global = true
    )]
    pub kafka_brokers: String,
    /// Settings and names shared with the services.
    #[command(flatten)]
    pub client: weft_events::kafka::ClientArgs,
}

impl ClusterArgs {
    /// The client settings these flags make.
    pub fn kafka(&self) -> weft_events::kafka::KafkaArgs {
        let mut kafka = weft_events::kafka::KafkaArgs::new(self.kafka_brokers.clone());
        kafka.client = self.client.clone();
        kafka
    }
}

/// Flags of `weft tail`.
#[derive(Debug, Clone, clap::Args)]
pub struct TailArgs {
    /// The topic, e.g. `user-events` or `user-events.dlq` (weft's name: `--kafka-prefix`
    /// is added).
    pub topic: String,
    /// The cluster.
    #[command(flatten)]
    pub kafka: ClusterArgs,
    /// Where to start.
    #[arg(long, value_enum, default_value_t = StartAt::Beginning)]
    pub from: StartAt,
    /// Stop after this many records.
    #[arg(long, short = 'n')]
    pub max: Option<usize>,
    /// Stop when the end of every partition is reached instead of waiting for more.
    #[arg(long, short = 'e')]
    pub exit: bool,
    /// Pretty-print each record over several lines.
    #[arg(long)]
    pub pretty: bool,
}

/// Flags of `weft lag`.
#[derive(Debug, Clone, clap::Args)]
pub struct LagArgs {
    /// The cluster.
    #[command(flatten)]
    pub kafka: ClusterArgs,
    /// The mesh's data dir (its SQLite databases).
    #[arg(long, env = "WEFT_DATA_DIR", default_value = ".weft")]
    pub data_dir: PathBuf,
    /// The PostgreSQL URL given to `weft up --database-url`: each service's database
    /// is `<database>_<service>` on that server.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
}

/// Flags of `weft dlq`.
#[derive(Debug, Args)]
pub struct DlqArgs {
    /// The cluster.
    #[command(flatten)]
    pub kafka: ClusterArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: DlqCommand,
}

/// `weft dlq …`.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// One line per dead letter: where it is, when, its type, why, which consumer
    /// group gave up on it and the error.
    List {
        /// A weft topic (`user-events`) or its dead-letter topic (`user-events.dlq`).
        topic: String,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One dead letter: its headers and its payload decoded by `ce_type` (or hex).
    Show {
        /// A weft topic or its dead-letter topic.
        topic: String,
        /// `<partition>:<offset>` as `list` prints it (or `<offset>` for partition 0).
        at: String,
    },
    /// Publish dead letters again to the topic they came from (original key, value
    /// and headers, plus `dlq_replayed_from`); consumers that applied them skip them.
    Replay {
        /// A weft topic or its dead-letter topic.
        topic: String,
        /// Which records.
        #[command(flatten)]
        target: DlqTarget,
        /// Only those this consumer group gave up on (e.g. `weft-analytics`).
        #[arg(long)]
        group: Option<String>,
    },
    /// Delete every record of a dead-letter topic (asks for its name unless `--yes`).
    Purge {
        /// A weft topic or its dead-letter topic.
        topic: String,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
}

/// Which dead letters `weft dlq replay` publishes again.
#[derive(Debug, Args)]
pub struct DlqTarget {
    /// `<partition>:<offset>` of a dead letter; repeatable.
    #[arg(long)]
    pub offset: Vec<String>,
    /// Every dead letter of the topic (with `--group`, every one of that group).
    #[arg(long, conflicts_with = "offset")]
    pub all: bool,
}

/// Flags of `weft demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The user service.
    #[arg(long, env = "WEFT_USER_ADDR", default_value = "127.0.0.1:5051")]
    pub user: String,
    /// The order service.
    #[arg(long, env = "WEFT_ORDER_ADDR", default_value = "127.0.0.1:5052")]
    pub order: String,
    /// The analytics service.
    #[arg(long, env = "WEFT_ANALYTICS_ADDR", default_value = "127.0.0.1:5054")]
    pub analytics: String,
    /// The mesh's data dir (for the emailed link and to make the demo's staff member).
    #[arg(long, env = "WEFT_DATA_DIR", default_value = ".weft")]
    pub data_dir: PathBuf,
    /// After the story (or instead of it, with `--skip-story`), load the mesh.
    #[arg(long)]
    pub load: bool,
    /// Requests a second (or minute), at most 5000/s.
    #[arg(long, default_value = "200/s")]
    pub rate: weft_kit::rate::Rate,
    /// How long the load runs, at most 10 minutes.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub duration: std::time::Duration,
    /// Share of each operation: `signup` (a new account: a password hash), `order`
    /// (CreateOrder) and `read` (GetOrder).
    #[arg(long, default_value = "signup=1,order=5,read=20")]
    pub mix: String,
    /// Only the load.
    #[arg(long)]
    pub skip_story: bool,
    /// Allow services that are not on this machine.
    #[arg(long)]
    pub allow_remote: bool,
}

/// `weft fault …`: flags in `<data dir>/faults.json`, which the services follow.
#[derive(Debug, Subcommand)]
pub enum FaultCommand {
    /// Turn flags on: `payment-failure=0.2`, `slow-consumer=200` (ms per record),
    /// `notification-down=1`, `consumer-pause=weft-analytics`.
    Set {
        /// `name=value` pairs.
        #[arg(required = true)]
        flags: Vec<String>,
        /// The mesh's data dir.
        #[arg(long, env = "WEFT_DATA_DIR", default_value = ".weft")]
        data_dir: PathBuf,
    },
    /// Turn flags off (all when none is named).
    Clear {
        /// Flag names.
        names: Vec<String>,
        /// The mesh's data dir.
        #[arg(long, env = "WEFT_DATA_DIR", default_value = ".weft")]
        data_dir: PathBuf,
    },
    /// Print the flags that are on, and every flag there is.
    List {
        /// The mesh's data dir.
        #[arg(long, env = "WEFT_DATA_DIR", default_value = ".weft")]
        data_dir: PathBuf,
    },
}
