//! The event backbone at the speed of its broker, measured as a user meets it: the
//! whole mesh started as `weft up` starts it (optimised build, SQLite), on this
//! machine, on two brokers one after the other in one run, every figure printed for
//! each and then side by side:
//!
//! - **weft-broker**, the embedded broker `weft up` starts (`--broker embedded`);
//! - **Apache Kafka**, 3 KRaft nodes (each broker and controller, one JVM each) that
//!   the benchmark starts itself with `scripts/kafka start --nodes 3` in a temporary
//!   dir on free ports from 21000 to 27999 and stops at the end (also on a panic),
//!   used through `weft up --broker external` with topics of replication factor 3
//!   and `min.insync.replicas` 2 (`WEFT_TOPIC_REPLICATION`,
//!   `WEFT_TOPIC_MIN_INSYNC_REPLICAS`). The cluster runs only while its mesh does.
//!
//! The phases, on each broker:
//!
//! 1. idle CPU of the whole mesh over `WEFT_BENCH_IDLE_SECONDS` (10), one core = 100 %:
//!    `weft up` itself, the five processes it starts and the broker(s): the
//!    weft-broker process, or the three Kafka JVMs;
//! 2. raw idempotent produce (`acks=all`) of `WEFT_BENCH_RECORDS` (50,000) records of
//!    200 bytes into the broker the mesh uses (on Kafka a topic of 3 partitions,
//!    replication factor 3, `min.insync.replicas` 2, like the mesh's): the ceiling of
//!    the chain;
//! 3. event latency (`ce_time` → applied by analytics, from its own histogram) at a
//!    steady `WEFT_BENCH_RATE` (200) `CreateOrder`/s for `WEFT_BENCH_SECONDS` (10):
//!    p50 and p99, and the CPU-seconds per order summed over every process of the mesh
//!    (steadier from run to run than the burst's, which lasts about a second);
//! 4. a burst of `WEFT_BENCH_ORDERS` (3,000) `CreateOrder` from 32 callers: how fast
//!    analytics has counted every order and every confirmation email, that rate over
//!    the raw produce rate, and the CPU-seconds per order summed over every process
//!    of the mesh (services, gateway, `weft up`, broker(s)) from the first call until
//!    the last email is counted;
//! 5. authenticated `GetOrder`, 16 callers: direct gRPC and `GET /v1/orders/{id}`
//!    through the gateway, and their ratio.
//!
//! A final table puts the figures side by side: weft-broker | Apache Kafka | Kafka ÷
//! weft-broker. Figures are printed, never asserted: this machine is shared and
//! noisy. `WEFT_BENCH_BROKERS=embedded,kafka` (the default: both) chooses the
//! brokers; `WEFT_BENCH_ONLY=burst,reads` runs some of the phases (`idle`, `raw`,
//! `steady`, `burst`, `reads`), e.g. to profile one. Apache Kafka needs Java 17+ and
//! its jars (`scripts/kafka install`, once).
//!
//! **Replicas.** `WEFT_BENCH_REPLICAS=1,2` runs the mesh on each broker once per
//! count (`weft up --replicas N`: N instances of each service, one gateway balancing
//! over them, the callers' channel too). Replicas need PostgreSQL, so every run of
//! such a benchmark uses it (`WEFT_BENCH_DATABASE=postgres` asks for it with one
//! replica): the server in `WEFT_BENCH_DATABASE_URL`, or the one `scripts/pg start`
//! runs; each run gets databases of its own, and the server's processes count in
//! the CPU figures. Both replicas share this machine's two cores, so the figures say
//! what a second replica costs here, not what it gains on a second machine. A
//! second table then gives `×N ÷ ×1` per broker.
//!
//! **A baseline.** `WEFT_BENCH_BASELINE=/path/to/weft` (an optimised `weft` built
//! from another commit) runs each configuration twice in the same sitting, that
//! build first and this one second (`WEFT_BENCH_BASELINE_ORDER=second` swaps
//! them), and a last table gives `this ÷ baseline`: a change's cost or gain
//! measured side by side, since figures from different days on this machine do not
//! compare. Every run's data dir is kept until the end: a mesh started right after
//! the previous one's files were deleted paid for ext4's search past recently
//! deleted inodes (the same build twice lost a quarter of its burst rate), so both
//! orders should now agree; pointing `WEFT_BENCH_BASELINE` at this build's own
//! `weft` checks it.
//!
//!     cargo bench --bench chain
//!     WEFT_BENCH_REPLICAS=1,2 cargo bench --bench chain
//!     WEFT_BENCH_BASELINE=/tmp/weft-before WEFT_BENCH_BROKERS=embedded cargo bench --bench chain
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::kafka::KafkaCluster;
use common::{
    acked_rate, closed_loop, cpu_seconds, cpu_tree_seconds, env_or, grpc_get_order, parent,
    quantile, rest_get,
};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::FutureProducer;
use support::rest::Customer;
use support::{BrokerKind, MeshBroker, Ports, Up};
use tonic::transport::Channel;
use weft_proto::analytics::Metrics;
use weft_proto::common::Money;
use weft_proto::order::order_service_client::OrderServiceClient;
use weft_proto::order::{CreateOrderRequest, OrderItem};

/// The services `weft up` starts, each `--replicas` times (their pids in
/// `<data>/run/<name>.pid`, replica k > 1 as `<name>-k`); one gateway; the embedded
/// broker's pid is `broker`'s.
const SERVICES: [&str; 4] = ["user", "order", "notification", "analytics"];

/// The sizes of a run, from the environment.
struct Sizes {
    idle_seconds: u64,
    records: usize,
    rate: u64,
    seconds: u64,
    burst: usize,
    only: String,
    /// PostgreSQL's admin URL when the runs use it (SQLite otherwise).
    postgres: Option<String>,
}

impl Sizes {
    fn run(&self, phase: &str) -> bool {
        self.only.is_empty() || self.only.split(',').any(|p| p.trim() == phase)
    }
}

/// One broker's figures; NaN where a phase did not run.
#[derive(Clone, Copy)]
struct Figures {
    idle_percent: f64,
    raw: f64,
    p50_ms: f64,
    p99_ms: f64,
    steady_cpu_per_order: f64,
    burst: f64,
    cpu_per_order: f64,
    direct: f64,
    gateway: f64,
}

impl Default for Figures {
    fn default() -> Self {
        Self {
            idle_percent: f64::NAN,
            raw: f64::NAN,
            p50_ms: f64::NAN,
            p99_ms: f64::NAN,
            steady_cpu_per_order: f64::NAN,
            burst: f64::NAN,
            cpu_per_order: f64::NAN,
            direct: f64::NAN,
            gateway: f64::NAN,
        }
    }
}

fn pid(data: &Path, name: &str) -> u32 {
    std::fs::read_to_string(data.join(format!("run/{name}.pid")))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A process whose CPU the benchmark counts; `tree` counts its children as well
/// (PostgreSQL's backends).
struct Proc {
    name: String,
    pid: u32,
    tree: bool,
}

/// Every process of the mesh, named: `weft up`, the processes it started (each
/// replica), the broker(s) and, on PostgreSQL, its server with its backends.
fn mesh_processes(
    data: &Path,
    replicas: u16,
    kafka: Option<&KafkaCluster>,
    postgres: Option<u32>,
) -> Vec<Proc> {
    let one = |name: String, pid| Proc {
        name,
        pid,
        tree: false,
    };
    let mut all = Vec::new();
    for service in SERVICES {
        for k in 1..=replicas {
            let name = if k == 1 {
                service.to_owned()
            } else {
                format!("{service}-{k}")
            };
            let p = pid(data, &name);
            all.push(one(name, p));
        }
    }
    all.push(one("gateway".to_owned(), pid(data, "gateway")));
    all.insert(0, one("weft up".to_owned(), parent(all[0].pid)));
    match kafka {
        None => all.push(one("broker".to_owned(), pid(data, "broker"))),
        Some(k) => all.extend(
            k.pids()
                .into_iter()
                .enumerate()
                .map(|(i, p)| one(format!("kafka-{}", i + 1), p)),
        ),
    }
    if let Some(pid) = postgres {
        all.push(Proc {
            name: "postgres".to_owned(),
            pid,
            tree: true,
        });
    }
    all
}

/// CPU-seconds each of `processes` has used so far.
fn cpu_now(processes: &[Proc]) -> Vec<f64> {
    processes
        .iter()
        .map(|p| {
            if p.tree {
                cpu_tree_seconds(p.pid)
            } else {
                cpu_seconds(p.pid)
            }
        })
        .collect()
}

/// CPU-seconds each of `processes` used since `before`.
fn cpu_since(processes: &[Proc], before: &[f64]) -> Vec<f64> {
    cpu_now(processes)
        .iter()
        .zip(before)
        .map(|(a, b)| a - b)
        .collect()
}

/// `name value` for each process, `value` formatted by `f`.
fn breakdown(processes: &[Proc], values: &[f64], f: impl Fn(f64) -> String) -> String {
    processes
        .iter()
        .zip(values)
        .map(|(p, v)| format!("{} {}", p.name, f(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn metrics(analytics: &Channel) -> Metrics {
    support::grpc::metrics_on(analytics.clone()).await
}

/// The customer whose orders the steady phase and the burst place, and where they
/// go: the order service (`orders`) and analytics, which counts them.
#[derive(Clone)]
struct Orders {
    analytics: Channel,
    orders: Channel,
    user_id: String,
    bearer: String,
}

impl Orders {
    /// A client of the order service.
    fn client(&self) -> OrderServiceClient<Channel> {
        OrderServiceClient::new(self.orders.clone())
    }

    /// The customer's next order, authorised.
    fn request(&self) -> tonic::Request<CreateOrderRequest> {
        authed(order_request(&self.user_id), &self.bearer)
    }
}

/// Waits until analytics counts at least `orders` orders and `emails` emails; how
/// long that took.
async fn counted(analytics: &Channel, orders: i64, emails: i64) -> Duration {
    let t = Instant::now();
    loop {
        let m = metrics(analytics).await;
        if m.orders_created >= orders && m.emails_sent >= emails {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "analytics stopped at {} orders and {} emails",
            m.orders_created,
            m.emails_sent
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Where analytics keeps its data: its SQLite file under `data`, or its database
/// on the PostgreSQL server of `postgres` (the mesh's `DATABASE_URL`).
fn analytics_database(data: &Path, postgres: Option<&str>) -> String {
    match postgres {
        None => weft_events::db::sqlite_url(data, "analytics").unwrap(),
        Some(base) => weft::up::service_database(base, "analytics").unwrap().0,
    }
}

/// The analytics latency histogram as it is now (bucket → count), read from its
/// database at `url`.
async fn latency_buckets(url: &str) -> BTreeMap<i64, i64> {
    let db = weft_events::Database::connect(url).await.unwrap();
    sqlx::query_as::<_, (i64, i64)>("SELECT bucket, count FROM latency_buckets")
        .fetch_all(db.pool())
        .await
        .unwrap()
        .into_iter()
        .collect()
}

fn order_request(user_id: &str) -> CreateOrderRequest {
    let usd = |units, nanos| Money {
        currency_code: "USD".into(),
        units,
        nanos,
    };
    CreateOrderRequest {
        user_id: user_id.to_owned(),
        items: vec![
            OrderItem {
                product_id: "mug".into(),
                name: "Mug".into(),
                quantity: 2,
                unit_price: Some(usd(29, 990_000_000)),
            },
            OrderItem {
                product_id: "lamp".into(),
                name: "Lamp".into(),
                quantity: 1,
                unit_price: Some(usd(49, 990_000_000)),
            },
        ],
        idempotency_key: String::new(),
    }
}

fn authed<T>(message: T, bearer: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.metadata_mut()
        .insert("authorization", bearer.parse().unwrap());
    req
}

/// Records/s of an idempotent producer (`acks=all`) sending `n` records of 200 bytes
/// to `topic` (created here: 3 partitions, `replication` replicas and, on Kafka,
/// `min.insync.replicas` 2).
async fn raw_produce_rate(bootstrap: &str, topic: &str, replication: i32, n: usize) -> f64 {
    let mut config = rdkafka::ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    let admin: AdminClient<DefaultClientContext> = config.create().unwrap();
    let mut new_topic = NewTopic::new(topic, 3, TopicReplication::Fixed(replication));
    if replication >= 3 {
        new_topic = new_topic.set("min.insync.replicas", "2");
    }
    for result in admin
        .create_topics([&new_topic], &AdminOptions::new())
        .await
        .unwrap()
    {
        result.unwrap();
    }
    let producer: FutureProducer = weft_events::kafka::KafkaArgs::new(bootstrap)
        .producer("bench-raw")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    acked_rate(&producer, topic, n).await
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sizes = Sizes {
        idle_seconds: env_or("WEFT_BENCH_IDLE_SECONDS", 10),
        records: env_or("WEFT_BENCH_RECORDS", 50_000),
        rate: env_or("WEFT_BENCH_RATE", 200),
        seconds: env_or("WEFT_BENCH_SECONDS", 10),
        burst: env_or("WEFT_BENCH_ORDERS", 3000),
        only: env_or("WEFT_BENCH_ONLY", String::new()),
        postgres: None,
    };
    let mut sizes = sizes;
    let counts: String = env_or("WEFT_BENCH_REPLICAS", "1".to_owned());
    let mut replicas: Vec<u16> = Vec::new();
    for c in counts.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let n: u16 = c
            .parse()
            .ok()
            .filter(|n| (1..=9).contains(n))
            .unwrap_or_else(|| panic!("WEFT_BENCH_REPLICAS: {c:?} is not a count from 1 to 9"));
        if !replicas.contains(&n) {
            replicas.push(n);
        }
    }
    assert!(!replicas.is_empty(), "WEFT_BENCH_REPLICAS names no count");
    let database: String = env_or("WEFT_BENCH_DATABASE", "sqlite".to_owned());
    if replicas.iter().any(|n| *n > 1) || database == "postgres" {
        sizes.postgres = Some(postgres_server());
    } else {
        assert_eq!(
            database, "sqlite",
            "WEFT_BENCH_DATABASE: sqlite or postgres"
        );
    }
    let brokers: String = env_or("WEFT_BENCH_BROKERS", "embedded,kafka".to_owned());
    let mut kinds = Vec::new();
    for b in brokers.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        let kind = match b {
            "embedded" | "weft-broker" => BrokerKind::Embedded,
            "kafka" => BrokerKind::Kafka,
            other => panic!("WEFT_BENCH_BROKERS: unknown broker {other:?} (embedded, kafka)"),
        };
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    assert!(!kinds.is_empty(), "WEFT_BENCH_BROKERS names no broker");
    let baseline = std::env::var_os("WEFT_BENCH_BASELINE").map(PathBuf::from);
    if let Some(b) = &baseline {
        assert!(
            b.is_file(),
            "WEFT_BENCH_BASELINE: {} is not a weft executable",
            b.display()
        );
    }
    let order: String = env_or("WEFT_BENCH_BASELINE_ORDER", "first".to_owned());
    let baseline_second = match order.as_str() {
        "first" => false,
        "second" => true,
        other => panic!("WEFT_BENCH_BASELINE_ORDER: {other:?} is neither first nor second"),
    };
    let this = PathBuf::from(support::WEFT);
    // Every run's data dir, removed at the end.
    let scratch = tempfile::tempdir().unwrap();
    let mut results = Vec::new();
    for kind in kinds {
        for n in &replicas {
            let run = Run {
                kind,
                replicas: *n,
                baseline: false,
            };
            let before = Run {
                baseline: true,
                ..run
            };
            match &baseline {
                Some(b) if baseline_second => {
                    results.push((run, run_on(run, &this, &sizes, scratch.path()).await));
                    results.push((before, run_on(before, b, &sizes, scratch.path()).await));
                }
                Some(b) => {
                    results.push((before, run_on(before, b, &sizes, scratch.path()).await));
                    results.push((run, run_on(run, &this, &sizes, scratch.path()).await));
                }
                None => results.push((run, run_on(run, &this, &sizes, scratch.path()).await)),
            }
        }
    }
    table(&results, &sizes);
}

/// PostgreSQL's admin URL: `WEFT_BENCH_DATABASE_URL`, or the server `scripts/pg
/// start` runs (starting it when it does not).
fn postgres_server() -> String {
    if let Ok(url) = std::env::var("WEFT_BENCH_DATABASE_URL") {
        return url;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg");
    let out = std::process::Command::new(&script)
        .arg("start")
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("DATABASE_URL="))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            panic!(
                "scripts/pg start exited with {} and named no server:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// A fresh database on the server of `admin` for one run (`weft up` makes each
/// service's own beside it), and the pid of the server's postmaster.
async fn run_database(admin: &str) -> (String, u32) {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(admin)
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {admin}: {e}"));
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!("weft_bench_{}_{stamp}", std::process::id());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let postmaster = parent(backend as u32);
    let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
    (format!("{base}/{name}"), postmaster)
}

/// One configuration of the mesh: its broker and how many replicas of each service.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Run {
    kind: BrokerKind,
    replicas: u16,
    /// Run with `WEFT_BENCH_BASELINE`'s build rather than this one.
    baseline: bool,
}

impl Run {
    fn label(self) -> String {
        let build = if self.baseline { " (baseline)" } else { "" };
        format!("{} ×{}{build}", self.kind.name(), self.replicas)
    }
}

/// The mesh of `run` (its broker, its replicas of each service) as the `weft`
/// executable at `program` starts it, every phase; its figures.
async fn run_on(run: Run, program: &Path, sizes: &Sizes, scratch: &Path) -> Figures {
    let Run { kind, replicas, .. } = run;
    let mut figures = Figures::default();
    // Dropped last: the mesh stops before its cluster.
    let cluster = match kind {
        BrokerKind::Embedded => None,
        BrokerKind::Kafka => Some(
            tokio::task::spawn_blocking(KafkaCluster::start)
                .await
                .unwrap(),
        ),
    };
    // Kept until the whole benchmark ends: deleting a mesh's thousands of files
    // (mail, logs) before the next mesh starts makes the next one pay for ext4's
    // search past recently deleted inodes, and it loses a quarter of its burst rate.
    let data = tempfile::tempdir_in(scratch).unwrap().keep();
    let ports = Ports::for_replicas(replicas);
    let (database, postmaster) = match &sizes.postgres {
        Some(admin) => {
            let (url, pid) = run_database(admin).await;
            (Some(url), Some(pid))
        }
        None => (None, None),
    };
    // One client drives the gateway and one customer gets every confirmation: lift
    // the per-client rate limit and the per-recipient message limit.
    let mut env: Vec<(&str, String)> = vec![
        ("WEFT_RATE_LIMIT", "1000000/s".into()),
        ("WEFT_RATE_BURST", "1000000".into()),
        ("WEFT_RECIPIENT_LIMIT", "1000000/h".into()),
        ("WEFT_LOG", "warn".into()),
        ("WEFT_REPLICAS", replicas.to_string()),
        ("WEFT_REPLICA_PORT_STEP", "1".into()),
    ];
    let (bootstrap, replication) = match &cluster {
        None => (format!("127.0.0.1:{}", ports.broker), 1),
        Some(k) => {
            env.extend([
                ("WEFT_BROKER", "external".into()),
                ("KAFKA_BROKERS", k.brokers().to_owned()),
                ("WEFT_TOPIC_REPLICATION", "3".into()),
                ("WEFT_TOPIC_MIN_INSYNC_REPLICAS", "2".into()),
            ]);
            (k.brokers().to_owned(), 3)
        }
    };
    // `MeshBroker` of kind Kafka is a namespace of the tests' shared cluster, not
    // this cluster of the benchmark's own: the mesh is pointed at it through `env`
    // (`weft up --broker external`), and is stopped by dropping `Up` (SIGTERM, then
    // waiting for `weft up` to exit), since `Up::stop` on weft-broker waits for the
    // embedded broker's goodbye.
    let up = {
        let (data, ports, database) = (data.clone(), ports.clone(), database.clone());
        let program = program.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut command = support::up_command_of(&program, &data, &ports);
            command.envs(env);
            if let Some(url) = &database {
                command.env("DATABASE_URL", url);
            }
            Up::spawn(command, MeshBroker::new(BrokerKind::Embedded, &ports))
        })
        .await
        .unwrap()
    };
    let base = format!("http://127.0.0.1:{}", ports.gateway);
    let http = support::rest::client();
    let customer = Customer::with_seed_order(&http, &base, "chain@example.com").await;
    let bearer = customer.bearer();
    // The callers balance over the order replicas when there are several, as the
    // gateway does.
    let endpoints: Vec<_> = (0..replicas)
        .map(|k| Channel::from_shared(format!("http://127.0.0.1:{}", ports.order + k)).unwrap())
        .collect();
    let order_channel = if replicas == 1 {
        endpoints[0].connect().await.unwrap()
    } else {
        Channel::balance_list(endpoints.into_iter())
    };
    let analytics = Channel::from_shared(format!("http://127.0.0.1:{}", ports.analytics))
        .unwrap()
        .connect()
        .await
        .unwrap();
    // The welcome order, the seed order and their emails (with the verification).
    counted(&analytics, 2, 3).await;
    let processes = mesh_processes(&data, replicas, cluster.as_ref(), postmaster);
    let store = if database.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    if run.baseline {
        println!("\n== the baseline build, {}", program.display());
    }
    match &cluster {
        None => println!(
            "\n== weft-broker ×{replicas}: the event chain inside `weft up --replicas {replicas}` (optimised build, embedded broker, {store}), one run on this machine"
        ),
        Some(k) => println!(
            "\n== Apache Kafka ×{replicas}: the event chain inside `weft up --broker external --replicas {replicas}` (optimised build, {store}) on 3 local Kafka nodes from port {} (topics: replication factor 3, min.insync.replicas 2), one run on this machine",
            k.port()
        ),
    }
    let analytics_db = analytics_database(&data, database.as_deref());

    if sizes.run("idle") {
        figures.idle_percent = idle(&processes, sizes.idle_seconds).await;
    }
    if sizes.run("raw") {
        figures.raw = raw_produce_rate(&bootstrap, "bench-raw", replication, sizes.records).await;
        println!(
            "2. raw idempotent produce, {} × 200 B into the same broker (replication factor {replication}): {:.0} records/s",
            sizes.records, figures.raw
        );
    }
    let orders = Orders {
        analytics: analytics.clone(),
        orders: order_channel.clone(),
        user_id: customer.user_id.clone(),
        bearer: bearer.clone(),
    };
    if sizes.run("steady") {
        (figures.p50_ms, figures.p99_ms, figures.steady_cpu_per_order) = steady(
            &processes,
            &analytics_db,
            &orders,
            sizes.rate,
            sizes.seconds,
        )
        .await;
    }
    if sizes.run("burst") {
        (figures.burst, figures.cpu_per_order) =
            burst_phase(&processes, &orders, sizes.burst).await;
        if figures.raw.is_nan() {
            println!(
                "   {:.0} events/s applied by analytics (the raw phase did not run: no ratio)",
                2.0 * figures.burst
            );
        } else {
            println!(
                "   = {:.4} of the broker's raw rate; {:.0} events/s applied by analytics",
                figures.burst / figures.raw,
                2.0 * figures.burst,
            );
        }
    }
    if sizes.run("reads") {
        (figures.direct, figures.gateway) =
            reads(&base, &http, &order_channel, &bearer, &customer.order_id).await;
    }
    tokio::task::spawn_blocking(move || match kind {
        BrokerKind::Embedded => up.stop(),
        BrokerKind::Kafka => drop(up),
    })
    .await
    .unwrap();
    if let Some(k) = cluster {
        tokio::task::spawn_blocking(move || drop(k)).await.unwrap();
    }
    figures
}

/// A row of the final table: its label, its figure, its decimals.
type Row = (String, fn(&Figures) -> f64, usize);

/// The figures side by side: a column per run, then the ratios (Kafka ÷ weft-broker at
/// each replica count, and ×N ÷ ×1 on each broker) where both runs exist.
fn table(results: &[(Run, Figures)], sizes: &Sizes) {
    let rows: [Row; 11] = [
        (
            "idle CPU, whole mesh with broker(s), % of a core".to_owned(),
            |f| f.idle_percent,
            1,
        ),
        (
            format!(
                "raw idempotent produce, records/s ({} × 200 B)",
                sizes.records
            ),
            |f| f.raw,
            0,
        ),
        (
            format!("event latency p50 at {} orders/s, ms", sizes.rate),
            |f| f.p50_ms,
            1,
        ),
        (
            format!("event latency p99 at {} orders/s, ms", sizes.rate),
            |f| f.p99_ms,
            1,
        ),
        (
            format!(
                "CPU-seconds per order at {} orders/s, all processes",
                sizes.rate
            ),
            |f| f.steady_cpu_per_order,
            4,
        ),
        (
            format!("burst of {}, orders/s counted by analytics", sizes.burst),
            |f| f.burst,
            0,
        ),
        ("burst ÷ raw produce".to_owned(), |f| f.burst / f.raw, 4),
        (
            "CPU-seconds per order in the burst, all processes".to_owned(),
            |f| f.cpu_per_order,
            4,
        ),
        ("GetOrder direct gRPC, /s".to_owned(), |f| f.direct, 0),
        (
            "GetOrder through the gateway, /s".to_owned(),
            |f| f.gateway,
            0,
        ),
        (
            "GetOrder gateway ÷ direct".to_owned(),
            |f| f.gateway / f.direct,
            2,
        ),
    ];
    let of = |run: Run| results.iter().find(|(r, _)| *r == run).map(|(_, f)| *f);
    let mut ratios: Vec<(String, Figures, Figures)> = Vec::new();
    for (run, f) in results {
        if run.baseline {
            continue;
        }
        if run.kind == BrokerKind::Kafka
            && let Some(e) = of(Run {
                kind: BrokerKind::Embedded,
                ..*run
            })
        {
            ratios.push((format!("×{} Kafka ÷ weft-broker", run.replicas), *f, e));
        }
        if run.replicas > 1
            && let Some(one) = of(Run {
                replicas: 1,
                ..*run
            })
        {
            ratios.push((
                format!("{}: ×{} ÷ ×1", run.kind.name(), run.replicas),
                *f,
                one,
            ));
        }
        if let Some(before) = of(Run {
            baseline: true,
            ..*run
        }) {
            ratios.push((format!("{}: this ÷ baseline", run.label()), *f, before));
        }
    }
    let cell = |v: f64, decimals: usize| {
        if v.is_nan() {
            "—".to_owned()
        } else {
            format!("{v:.decimals$}")
        }
    };
    let width = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    // A table of columns, each a name and a cell per row.
    let print = |title: &str, columns: Vec<(String, Vec<String>)>| {
        let mut header = format!("{:width$}", "");
        let cw = columns
            .iter()
            .map(|(name, _)| name.chars().count())
            .max()
            .unwrap_or(0)
            .max(24);
        for (name, _) in &columns {
            header.push_str(&format!(" | {name:>cw$}"));
        }
        println!("\n== {title}\n{header}");
        for (i, (label, _, _)) in rows.iter().enumerate() {
            let mut line = format!("{label:width$}");
            for (_, cells) in &columns {
                line.push_str(&format!(" | {:>cw$}", cells[i]));
            }
            println!("{line}");
        }
    };
    print(
        "side by side (one run, this machine; shared and noisy)",
        results
            .iter()
            .map(|(run, f)| {
                let cells = rows.iter().map(|(_, get, d)| cell(get(f), *d)).collect();
                (run.label(), cells)
            })
            .collect(),
    );
    if !ratios.is_empty() {
        print(
            "ratios within this run",
            ratios
                .iter()
                .map(|(name, a, b)| {
                    let cells = rows
                        .iter()
                        .map(|(_, get, _)| cell(get(a) / get(b), 2))
                        .collect();
                    (name.clone(), cells)
                })
                .collect(),
        );
    }
}

/// Idle CPU of `processes` over `idle_seconds`, % of one core.
async fn idle(processes: &[Proc], idle_seconds: u64) -> f64 {
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = cpu_now(processes);
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(idle_seconds)).await;
    let wall = t.elapsed().as_secs_f64();
    let used: Vec<f64> = cpu_since(processes, &before)
        .iter()
        .map(|s| 100.0 * s / wall)
        .collect();
    let idle_total: f64 = used.iter().sum();
    println!(
        "1. idle mesh over {idle_seconds} s: {idle_total:.1} % of one core ({})",
        breakdown(processes, &used, |u| format!("{u:.1}"))
    );
    idle_total
}

/// The steady phase; p50 and p99 of the event latency (ms), and the CPU-seconds per
/// order of every process meanwhile.
async fn steady(
    processes: &[Proc],
    analytics_db: &str,
    orders: &Orders,
    rate: u64,
    seconds: u64,
) -> (f64, f64, f64) {
    let analytics = &orders.analytics;
    let start = metrics(analytics).await;
    let cpu_before = cpu_now(processes);
    let buckets_before = latency_buckets(analytics_db).await;
    let n = (rate * seconds) as usize;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut calls = Vec::with_capacity(n);
    let failed = Arc::new(AtomicUsize::new(0));
    for _ in 0..n {
        tick.tick().await;
        let (mut client, req) = (orders.client(), orders.request());
        let failed = failed.clone();
        calls.push(tokio::spawn(async move {
            let t = Instant::now();
            if client.create_order(req).await.is_err() {
                failed.fetch_add(1, Ordering::Relaxed);
            }
            t.elapsed()
        }));
    }
    let mut rpc = Vec::with_capacity(n);
    for c in calls {
        rpc.push(c.await.unwrap());
    }
    let ok = (n - failed.load(Ordering::Relaxed)) as i64;
    counted(analytics, start.orders_created + ok, start.emails_sent + ok).await;
    let cpu = cpu_since(processes, &cpu_before);
    let cpu_per_order = cpu.iter().sum::<f64>() / ok.max(1) as f64;
    let after = latency_buckets(analytics_db).await;
    let diff: Vec<(i64, i64)> = after
        .iter()
        .map(|(b, c)| (*b, c - buckets_before.get(b).copied().unwrap_or(0)))
        .filter(|(_, c)| *c > 0)
        .collect();
    let samples: i64 = diff.iter().map(|(_, c)| c).sum();
    let max_ms = f64::MAX;
    let p50 = weft_analytics::latency::quantile(&diff, 0.5, max_ms);
    let p99 = weft_analytics::latency::quantile(&diff, 0.99, max_ms);
    rpc.sort();
    println!(
        "3. steady {rate} CreateOrder/s for {seconds} s ({ok} ok, {} failed): event latency ce_time → analytics over {samples} events p50 {p50:.1} ms, p99 {p99:.1} ms; CreateOrder p50 {:.1} ms, p99 {:.1} ms",
        n as i64 - ok,
        quantile(&rpc, 0.5).as_secs_f64() * 1e3,
        quantile(&rpc, 0.99).as_secs_f64() * 1e3,
    );
    println!(
        "   CPU meanwhile, every process of the mesh: {:.2} s = {cpu_per_order:.4} CPU-s per order ({})",
        cpu.iter().sum::<f64>(),
        breakdown(processes, &cpu, |s| format!("{s:.2}")),
    );
    (p50, p99, cpu_per_order)
}

/// The burst; returns its rate (orders/s from the first call until analytics has
/// counted every order and email) and the CPU-seconds per order that `processes`
/// used meanwhile.
async fn burst_phase(processes: &[Proc], orders: &Orders, burst: usize) -> (f64, f64) {
    let analytics = &orders.analytics;
    let start = metrics(analytics).await;
    let cpu_before = cpu_now(processes);
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let callers: Vec<_> = (0..32)
        .map(|_| {
            let (next, failed) = (next.clone(), failed.clone());
            let (orders, mut client) = (orders.clone(), orders.client());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < burst {
                    if client.create_order(orders.request()).await.is_err() {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for c in callers {
        c.await.unwrap();
    }
    let rpc_done = t.elapsed();
    let ok = (burst - failed.load(Ordering::Relaxed)) as i64;
    counted(analytics, start.orders_created + ok, start.emails_sent + ok).await;
    let all = t.elapsed();
    let cpu = cpu_since(processes, &cpu_before);
    let cpu_total: f64 = cpu.iter().sum();
    let cpu_per_order = cpu_total / ok as f64;
    let chain_rate = ok as f64 / all.as_secs_f64();
    println!(
        "4. burst of {burst} CreateOrder from 32 callers ({ok} ok): created in {:.2} s ({:.0}/s); every order and confirmation email counted by analytics after {:.2} s: {chain_rate:.0} orders/s",
        rpc_done.as_secs_f64(),
        ok as f64 / rpc_done.as_secs_f64(),
        all.as_secs_f64(),
    );
    println!(
        "   CPU meanwhile, every process of the mesh: {cpu_total:.2} s ({:.2} cores busy) = {cpu_per_order:.4} CPU-s per order ({})",
        cpu_total / all.as_secs_f64(),
        breakdown(processes, &cpu, |s| format!("{s:.2}")),
    );
    (chain_rate, cpu_per_order)
}

async fn reads(
    base: &str,
    http: &reqwest::Client,
    order_channel: &Channel,
    bearer: &str,
    seed_id: &str,
) -> (f64, f64) {
    let rest = rest_get(
        http,
        format!("{base}/v1/orders/{seed_id}"),
        bearer.to_owned(),
    );
    let grpc = grpc_get_order(order_channel.clone(), seed_id.to_owned(), bearer.to_owned());
    let _ = closed_loop(&grpc, 4, 1).await;
    let _ = closed_loop(&rest, 4, 1).await;
    let (direct, direct_failed) = closed_loop(&grpc, 16, 5).await;
    let (gateway, gateway_failed) = closed_loop(&rest, 16, 5).await;
    println!(
        "5. authenticated GetOrder, 16 callers × 5 s: direct gRPC {direct:.0}/s ({direct_failed} failed), through the gateway {gateway:.0}/s ({gateway_failed} failed): gateway / direct {:.2}",
        gateway / direct
    );
    (direct, gateway)
}
