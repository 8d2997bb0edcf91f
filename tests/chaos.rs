//! Two replicas of every service on PostgreSQL, 1,000 sign-ups from 8 clients, and
//! chaos while they run (`weft up --replicas 2`), on a 3-node Apache Kafka cluster of
//! the test's own and on weft-broker:
//! - one replica of each service is SIGKILLed (the launcher starts it again);
//! - the user service is restarted replica by replica (SIGTERM), the outbox relay's
//!   holder first, so the relay hands over (printed: who held it before and after);
//! - on Kafka, the node leading a partition of `user-events` is SIGKILLed, kept down
//!   until another node leads it, and restarted;
//! - one notification replica is SIGSTOPped past its session timeout, until the other
//!   replica has its partitions, and then SIGCONTed: a zombie.
//!
//! At the end: exactly 1,000 welcome orders; exactly three emails per sign-up as
//! files (the welcome, the contact verification and the order confirmation), one of
//! each per recipient; exact analytics counts; empty dead-letter topics; every
//! group's stored offsets at its topics' end offsets; and, for every key, each
//! group applied its events once each, in the order they were published, which for
//! a user's or an order's events is the order of the producer's outbox.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use sqlx::Row as _;
use support::cluster::{Cluster, leader};
use support::kafka::high_watermarks;
use support::{BrokerKind, MeshBroker, Ports, Up, grpc, output};
use tonic::transport::{Channel, Endpoint};
use weft_proto::user::SignupSource;
use weft_proto::user::user_service_client::UserServiceClient;
use weft_testkit::eventually;

const SIGNUPS: usize = 1_000;
const CLIENTS: usize = 8;
/// The welcome email, the contact verification and the welcome order's confirmation.
const EMAILS_PER_SIGNUP: usize = 3;
const WAIT: Duration = Duration::from_secs(240);
const TOPICS: [&str; 3] = ["user-events", "order-events", "notification-events"];

support::on_each_broker!(async[4] chaos =>
    two_replicas_of_everything_survive_chaos_exactly_on_weft_broker,
    two_replicas_of_everything_survive_chaos_exactly_on_kafka
);

struct Mesh {
    data: std::path::PathBuf,
    ports: Ports,
    /// The fresh database `weft up` makes `<it>_<service>` databases beside.
    database: String,
}

impl Mesh {
    fn pid(&self, instance: &str) -> i32 {
        std::fs::read_to_string(self.data.join(format!("run/{instance}.pid")))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    fn signal(&self, instance: &str, signal: Signal) -> i32 {
        let pid = self.pid(instance);
        kill(Pid::from_raw(pid), signal).unwrap();
        pid
    }

    /// The gRPC port of an instance: `user`, `user-2`, ….
    fn port(&self, instance: &str) -> u16 {
        let (service, k) = match instance.split_once('-') {
            Some((s, k)) => (s, k.parse::<u16>().unwrap()),
            None => (instance, 1),
        };
        let base = match service {
            "user" => self.ports.user,
            "order" => self.ports.order,
            "notification" => self.ports.notification,
            "analytics" => self.ports.analytics,
            other => panic!("no service {other}"),
        };
        base + k - 1
    }

    async fn db(&self, service: &str) -> sqlx::PgPool {
        sqlx::PgPool::connect(&format!("{}_{service}", self.database))
            .await
            .unwrap()
    }

    /// Waits until the launcher has started `instance` again (a new pid) and it serves.
    async fn back(&self, instance: &str, old_pid: i32) {
        let port = self.port(instance);
        eventually(&format!("{instance} restarted"), WAIT, || async move {
            let pid = std::fs::read_to_string(self.data.join(format!("run/{instance}.pid")))
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok())?;
            (pid != old_pid && grpc::serving(port).await).then_some(())
        })
        .await;
    }

    /// The replica (instance name) holding `service`'s outbox relay lease.
    async fn relay_holder(&self, service: &str) -> String {
        let db = self.db(service).await;
        let holder = eventually(&format!("a holder of {service}'s relay"), WAIT, || {
            let db = db.clone();
            async move {
                sqlx::query("SELECT holder FROM weft_leases WHERE name = 'outbox-relay'")
                    .fetch_optional(&db)
                    .await
                    .unwrap()
                    .map(|r| r.get::<String, _>(0))
                    .filter(|h| !h.is_empty())
            }
        })
        .await;
        holder.rsplit('/').next().unwrap().to_owned()
    }
}

/// Client `c`'s share of the sign-ups, on both user replicas: a call that fails is
/// retried on the other replica, and AlreadyExists after a retry means an earlier
/// attempt got through.
async fn sign_up_share(ports: Ports, c: usize, done: Arc<AtomicUsize>) {
    let channel = |port: u16| -> Channel {
        Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(20))
            .connect_lazy()
    };
    let clients = [
        UserServiceClient::new(channel(ports.user)),
        UserServiceClient::new(channel(ports.user + 1)),
    ];
    for i in 0..SIGNUPS / CLIENTS {
        let email = format!("chaos-{c}-{i}@example.com");
        let name = format!("Chaos {c} {i}");
        let request = grpc::sign_up_request(&email, &name, SignupSource::Api);
        grpc::sign_up_retrying(&clients, c, request).await;
        done.fetch_add(1, Ordering::SeqCst);
    }
}

async fn until(done: &AtomicUsize, at_least: usize) {
    while done.load(Ordering::SeqCst) < at_least {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The instances (`notification`, `notification-2`, …) in consumer group `group`,
/// once no rebalance of it is under way, by the client ids weft's consumers give
/// themselves (`weft:<deployment>:<host>/<instance>`).
async fn stable_members(brokers: &str, group: &str) -> Option<Vec<String>> {
    let (brokers, group) = (brokers.to_owned(), group.to_owned());
    tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", brokers.as_str())
            .create()
            .unwrap();
        let list = client
            .fetch_group_list(Some(&group), Duration::from_secs(10))
            .ok()?;
        let described = list.groups().iter().find(|g| g.name() == group)?;
        if described.state() != "Stable" {
            return None;
        }
        Some(
            described
                .members()
                .iter()
                .filter_map(|m| m.client_id().rsplit('/').next().map(str::to_owned))
                .collect(),
        )
    })
    .await
    .unwrap()
}

/// Recipient → subjects of the mails the mesh in `data_dir` sent.
fn mails(data_dir: &Path) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for text in support::mails(data_dir) {
        let header = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        out.entry(header("To:"))
            .or_default()
            .push(header("Subject:"));
    }
    out
}

async fn chaos(kind: BrokerKind) {
    let cluster = (kind == BrokerKind::Kafka).then(Cluster::start);
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::for_replicas(2);
    let database = weft_testkit::postgres_database().await;
    let broker = match &cluster {
        Some(c) => MeshBroker::cluster(&c.bootstrap),
        None => MeshBroker::new(BrokerKind::Embedded, &ports),
    };
    let up = {
        let (data, p, db) = (dir.path().to_owned(), ports.clone(), database.clone());
        tokio::task::spawn_blocking(move || {
            Up::start_with_broker(
                broker,
                &data,
                &p,
                Some(&db),
                &[("WEFT_REPLICAS", "2"), ("WEFT_REPLICA_PORT_STEP", "1")],
            )
        })
        .await
        .unwrap()
    };
    let brokers = up.broker.bootstrap();
    let mesh = Mesh {
        data: dir.path().to_owned(),
        ports: ports.clone(),
        database,
    };
    let started = Instant::now();
    let done = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| tokio::spawn(sign_up_share(ports.clone(), c, done.clone())))
        .collect();

    // One replica of each service SIGKILLed; the launcher starts each again.
    until(&done, 100).await;
    let killed = ["user-2", "order", "notification-2", "analytics"];
    let pids: Vec<i32> = killed
        .iter()
        .map(|i| mesh.signal(i, Signal::SIGKILL))
        .collect();
    for (instance, pid) in killed.iter().zip(pids) {
        mesh.back(instance, pid).await;
    }
    println!(
        "{:>5.1} s  SIGKILLed {killed:?} at {} sign-ups; all back",
        started.elapsed().as_secs_f64(),
        100
    );

    // The user service restarted replica by replica, the relay's holder first.
    until(&done, 300).await;
    let before = mesh.relay_holder("user").await;
    let other = if before == "user" { "user-2" } else { "user" };
    let pid = mesh.signal(&before, Signal::SIGTERM);
    let after = eventually("the relay handed over", WAIT, || async {
        let h = mesh.relay_holder("user").await;
        (h != before).then_some(h)
    })
    .await;
    println!(
        "{:>5.1} s  the user service's relay: held by {before}, then by {after} after {before} was stopped",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(after, other);
    mesh.back(&before, pid).await;
    let pid = mesh.signal(other, Signal::SIGTERM);
    mesh.back(other, pid).await;
    println!(
        "{:>5.1} s  user service restarted replica by replica; relay now held by {}",
        started.elapsed().as_secs_f64(),
        mesh.relay_holder("user").await
    );

    // A Kafka node that leads a partition, killed and restarted.
    if let Some(cluster) = &cluster {
        until(&done, 500).await;
        let b = brokers.clone();
        let node = tokio::task::spawn_blocking(move || leader(&b, "user-events"))
            .await
            .unwrap()
            .expect("user-events/0 has a leader");
        cluster.kill(node);
        // Down until the cluster has fenced it and elected another leader, which the
        // mesh's clients then have to find.
        let successor = eventually("another leader of user-events/0", WAIT, || {
            let b = brokers.clone();
            async move {
                tokio::task::spawn_blocking(move || leader(&b, "user-events"))
                    .await
                    .unwrap()
                    .filter(|now| *now != node)
            }
        })
        .await;
        cluster.restart(node);
        println!(
            "{:>5.1} s  Kafka node {node}, leader of user-events/0, SIGKILLed; node {successor} took over; node {node} restarted",
            started.elapsed().as_secs_f64()
        );
    }

    // A zombie: stopped past its session timeout while the other replica takes its
    // partitions, then woken.
    until(&done, 700).await;
    let group = format!("{}weft-notification", up.broker.prefix());
    eventually("notification-2 a member of its group", WAIT, || async {
        stable_members(&brokers, &group)
            .await?
            .iter()
            .any(|i| i == "notification-2")
            .then_some(())
    })
    .await;
    let paused = Instant::now();
    mesh.signal("notification-2", Signal::SIGSTOP);
    // Stopped until the coordinator has expired its session (10 s) and the group has
    // settled with the other replica alone, holding every partition.
    eventually("notification-2's partitions taken over", WAIT, || async {
        let members = stable_members(&brokers, &group).await?;
        (!members.is_empty() && members.iter().all(|i| i == "notification")).then_some(())
    })
    .await;
    mesh.signal("notification-2", Signal::SIGCONT);
    println!(
        "{:>5.1} s  notification-2 SIGSTOPped for {:.1} s, until its partitions were taken over, then SIGCONTed",
        started.elapsed().as_secs_f64(),
        paused.elapsed().as_secs_f64()
    );

    for c in clients {
        c.await.unwrap();
    }
    println!(
        "{:>5.1} s  {SIGNUPS} sign-ups answered",
        started.elapsed().as_secs_f64()
    );

    // `weft lag`: each group's stored offsets, the partitions' ends and which replica
    // holds each partition.
    let lag = || {
        let mut command = std::process::Command::new(support::WEFT);
        command
            .args(["lag", "--data-dir"])
            .arg(dir.path())
            .env("DATABASE_URL", &mesh.database)
            .envs(up.broker.env());
        async move { output::succeeded("weft lag", &output::output_async(command).await) }
    };

    // Exact analytics counts (either replica reads the one database). A stall leaves
    // what was counted, `weft lag` and the services' logs behind.
    let port = ports.analytics;
    let deadline = Instant::now() + WAIT;
    let metrics = loop {
        let m = support::grpc::metrics(port).await;
        if m.signups >= SIGNUPS as i64
            && m.orders_created >= SIGNUPS as i64
            && m.emails_sent >= (SIGNUPS * EMAILS_PER_SIGNUP) as i64
        {
            break m;
        }
        if Instant::now() >= deadline {
            let table = lag().await;
            let logs = dir.keep().join("logs");
            panic!(
                "timed out after {WAIT:?} waiting for exact analytics counts: {} sign-ups, {} orders, {} emails counted\nweft lag:\n{table}\nlogs kept in {}",
                m.signups,
                m.orders_created,
                m.emails_sent,
                logs.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "{:>5.1} s  analytics: {} sign-ups, {} orders, {} emails",
        started.elapsed().as_secs_f64(),
        metrics.signups,
        metrics.orders_created,
        metrics.emails_sent
    );

    // Offsets at the end of every topic, for every group (so nothing is in flight).
    let topics: Vec<String> = TOPICS.iter().map(|t| up.broker.topic(t)).collect();
    let groups = [
        ("order", "weft-order"),
        ("notification", "weft-notification"),
        ("analytics", "weft-analytics"),
    ];
    let group_name = |g: &str| g.to_owned();
    let mut dbs = HashMap::new();
    for service in ["user", "order", "notification", "analytics"] {
        dbs.insert(service, mesh.db(service).await);
    }
    eventually("every group at the end of its topics", WAIT, || async {
        let b = brokers.clone();
        let t = topics.clone();
        let ends = tokio::task::spawn_blocking(move || high_watermarks(&b, &t))
            .await
            .unwrap();
        for (service, group) in groups {
            let rows = sqlx::query(
                "SELECT topic, kafka_partition, next_offset FROM weft_consumer_offsets \
                 WHERE consumer_group = $1",
            )
            .bind(group_name(group))
            .fetch_all(&dbs[service])
            .await
            .unwrap();
            let stored: BTreeMap<(String, i32), i64> = rows
                .iter()
                .map(|r| ((r.get(0), r.get::<i64, _>(1) as i32), r.get::<i64, _>(2)))
                .collect();
            for ((topic, partition), end) in &ends {
                let at = stored.get(&(topic.clone(), *partition)).copied();
                // A group reads the topics it subscribes to; it has stored an
                // offset for every partition of those that has records.
                let reads_topic = stored.keys().any(|(t, _)| t == topic);
                if reads_topic && *end > 0 && at != Some(*end) {
                    return None;
                }
            }
            if stored.is_empty() {
                return None;
            }
        }
        Some(())
    })
    .await;
    let m = support::grpc::metrics(port).await;
    assert_eq!(
        (m.signups, m.orders_created, m.emails_sent),
        (
            SIGNUPS as i64,
            SIGNUPS as i64,
            (SIGNUPS * EMAILS_PER_SIGNUP) as i64
        ),
        "analytics counts"
    );

    let welcome: i64 = sqlx::query("SELECT count(*) FROM orders WHERE kind = 2")
        .fetch_one(&dbs["order"])
        .await
        .unwrap()
        .get(0);
    let all_orders: i64 = sqlx::query("SELECT count(*) FROM orders")
        .fetch_one(&dbs["order"])
        .await
        .unwrap()
        .get(0);
    assert_eq!((welcome, all_orders), (SIGNUPS as i64, SIGNUPS as i64));

    let sent: i64 = sqlx::query("SELECT count(*) FROM notifications WHERE sent_at IS NOT NULL")
        .fetch_one(&dbs["notification"])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sent, (SIGNUPS * EMAILS_PER_SIGNUP) as i64);
    let mail = mails(dir.path());
    assert_eq!(mail.len(), SIGNUPS, "recipients with mail");
    for (to, mut subjects) in mail {
        subjects.sort();
        subjects.dedup();
        assert_eq!(
            subjects.len(),
            EMAILS_PER_SIGNUP,
            "{to}: one of each email, none twice: {subjects:?}"
        );
    }
    let sent = support::mails(dir.path()).len();
    assert_eq!(sent, SIGNUPS * EMAILS_PER_SIGNUP, "mails, none twice");

    let dlq: Vec<String> = TOPICS
        .iter()
        .map(|t| up.broker.topic(&format!("{t}.dlq")))
        .collect();
    let b = brokers.clone();
    let dead = tokio::task::spawn_blocking(move || high_watermarks(&b, &dlq))
        .await
        .unwrap();
    assert!(dead.values().all(|&end| end == 0), "dead letters: {dead:?}");

    // Each group applied each event once (the inbox's key), in the order the relay
    // published a key's events, which is the order of their outbox rows where one
    // row's transaction follows the other's: a user's events in the user service
    // (one row lock), an order's in the order service. A user's EmailSent rows come
    // from deliveries that run side by side, on either replica; their sequence
    // numbers are drawn before commit and say nothing about which came first.
    let producers = [
        ("user", "user-events", true),
        ("order", "order-events", true),
        ("notification", "notification-events", false),
    ];
    let mut checked = 0usize;
    for (producer, topic, causal) in producers {
        let outbox = sqlx::query(
            "SELECT event_id, event_key, seq FROM weft_outbox WHERE topic = $1 AND sent_at IS NOT NULL",
        )
        .bind(up.broker.topic(topic))
        .fetch_all(&dbs[producer])
        .await
        .unwrap();
        let unsent: i64 = sqlx::query("SELECT count(*) FROM weft_outbox WHERE sent_at IS NULL")
            .fetch_one(&dbs[producer])
            .await
            .unwrap()
            .get(0);
        assert_eq!(unsent, 0, "{producer}'s outbox is empty");
        let by_id: HashMap<String, (String, i64)> = outbox
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect();
        for (service, group) in groups {
            let applied = sqlx::query(
                "SELECT event_id, kafka_partition, kafka_offset, processed_at FROM weft_inbox \
                 WHERE consumer_group = $1 AND topic = $2",
            )
            .bind(group_name(group))
            .bind(up.broker.topic(topic))
            .fetch_all(&dbs[service])
            .await
            .unwrap();
            // key → (partition, offset, applied at, outbox seq)
            let mut by_key: BTreeMap<String, Vec<(i32, i64, i64, i64)>> = BTreeMap::new();
            for r in &applied {
                let id: String = r.get(0);
                let (key, seq) = by_id.get(&id).unwrap_or_else(|| {
                    panic!("{group} applied {id}, which {producer}'s outbox never sent")
                });
                by_key
                    .entry(key.clone())
                    .or_default()
                    .push((r.get(1), r.get(2), r.get(3), *seq));
            }
            for (key, mut events) in by_key {
                events.sort();
                for pair in events.windows(2) {
                    let (a, b) = (pair[0], pair[1]);
                    assert!(
                        a.0 == b.0 && a.2 <= b.2 && (!causal || a.3 < b.3),
                        "{group} on {topic}, key {key}: partition/offset {}/{} (outbox seq {}) \
                         applied at {}, {}/{} (seq {}) at {}",
                        a.0,
                        a.1,
                        a.3,
                        a.2,
                        b.0,
                        b.1,
                        b.3,
                        b.2
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(
        checked > SIGNUPS,
        "pairs of a key's events checked: {checked}"
    );
    println!(
        "{:>5.1} s  exact: {SIGNUPS} welcome orders, {} emails, no dead letters, offsets at the ends, {checked} pairs of a key's events applied in the order published",
        started.elapsed().as_secs_f64(),
        SIGNUPS * EMAILS_PER_SIGNUP
    );

    // `weft lag` reads the same offsets: nothing behind, and (once a replica back
    // from its pause has been given its share again) partitions held by both
    // replicas of each service.
    let shared = |table: &str| {
        groups.iter().all(|(service, group)| {
            table.contains(&format!("{group}: 0 behind over "))
                && [service.to_string(), format!("{service}-2")]
                    .iter()
                    .all(|instance| {
                        table
                            .lines()
                            .any(|l| l.starts_with(group) && l.ends_with(&format!("/{instance}")))
                    })
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let table = loop {
        let table = lag().await;
        if shared(&table) {
            break table;
        }
        assert!(
            Instant::now() < deadline,
            "weft lag: a group is behind, or a replica holds no partition 60 s after the chaos:\n{table}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    println!("weft lag:\n{table}");

    // Replicas working side by side never trip over each other's keys.
    for entry in std::fs::read_dir(dir.path().join("logs"))
        .unwrap()
        .flatten()
    {
        let log = std::fs::read_to_string(entry.path()).unwrap();
        assert!(
            !log.contains("duplicate key value"),
            "{}: {}",
            entry.path().display(),
            log.lines()
                .find(|l| l.contains("duplicate key value"))
                .unwrap()
        );
    }

    // The one gateway balances over both replicas of a service.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    for _ in 0..40 {
        let resp = http
            .get(format!(
                "http://127.0.0.1:{}/v1/analytics/metrics",
                ports.gateway
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["metrics"]["signups"], "1000", "{body}");
    }
    let analytics_2 = format!("http://127.0.0.1:{}/metrics", ports.analytics_admin + 1);
    let second = support::rest::text(&http, &analytics_2).await;
    let served: f64 = second
        .lines()
        .filter(|l| l.starts_with("rpc_server_duration_seconds_count") && l.contains("GetMetrics"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        served > 0.0,
        "analytics-2 answered none of the gateway's calls:\n{second}"
    );
    drop(up);
    drop(cluster);
}
