//! `weft up`: the whole mesh on one machine. Starts the embedded broker (weft-broker,
//! or uses an external Kafka), provisions every topic explicitly, starts each service and then
//! the gateway as a child process (`weft serve <name>`) and waits until it is
//! healthy, prints where everything is, and on
//! Ctrl-C or SIGTERM stops the children in reverse order, each with a grace period.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::Child;
use weft_events::kafka::KafkaArgs;
use weft_events::topics;

use std::net::SocketAddr;

use crate::broker::{self, EmbeddedBroker};
use crate::children::{self, Kind, ServiceSpec};
use crate::cli::{BrokerMode, UpArgs};
use crate::local_kafka::LocalKafka;
use crate::ports;

/// How long a child may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// How often one service may crash before `weft up` gives up on the mesh.
const MAX_RESTARTS: u32 = 5;

/// A child process the launcher supervises.
struct Managed {
    name: &'static str,
    child: Child,
}

/// Runs `weft up`.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let shutdown = weft_kit::shutdown::on_signal();
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating the data dir {}", args.data_dir.display()))?;
    let data_dir = std::path::absolute(&args.data_dir)?;
    println!(
        "weft {} — data in {}",
        env!("CARGO_PKG_VERSION"),
        data_dir.display()
    );

    let host = args.host;
    let mut wanted_ports: Vec<ports::Wanted> = [
        ("the user service", "--user-port", args.user_port),
        ("the order service", "--order-port", args.order_port),
        (
            "the notification service",
            "--notification-port",
            args.notification_port,
        ),
        (
            "the analytics service",
            "--analytics-port",
            args.analytics_port,
        ),
        ("the gateway", "--gateway-port", args.gateway_port),
        (
            "the user service's metrics",
            "--user-admin-port",
            args.user_admin_port,
        ),
        (
            "the order service's metrics",
            "--order-admin-port",
            args.order_admin_port,
        ),
        (
            "the notification service's metrics",
            "--notification-admin-port",
            args.notification_admin_port,
        ),
        (
            "the analytics service's metrics",
            "--analytics-admin-port",
            args.analytics_admin_port,
        ),
        (
            "the gateway's metrics",
            "--gateway-admin-port",
            args.gateway_admin_port,
        ),
    ]
    .into_iter()
    .map(|(what, flag, port)| ports::Wanted {
        what,
        flag,
        addr: SocketAddr::new(host, port),
    })
    .collect();
    if args.broker == BrokerMode::Embedded {
        wanted_ports.insert(
            0,
            ports::Wanted {
                what: "the embedded broker",
                flag: "--broker-port",
                addr: SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), args.broker_port),
            },
        );
    }
    ports::check_free(&wanted_ports)?;

    std::fs::create_dir_all(data_dir.join("logs"))?;
    let mut children_list: Vec<Managed> = Vec::new();
    let embedded = match args.broker {
        BrokerMode::Embedded => Some(EmbeddedBroker::new(&data_dir, args.broker_port)),
        BrokerMode::External | BrokerMode::Kafka => None,
    };
    let local_kafka = match args.broker {
        BrokerMode::Kafka => Some(LocalKafka::new(
            &data_dir,
            args.kafka_nodes,
            args.kafka_port,
        )?),
        BrokerMode::Embedded | BrokerMode::External => None,
    };
    let bootstrap = match &embedded {
        Some(b) => {
            let t = Instant::now();
            print_step(&format!(
                "starting the embedded broker on {} (data in {})",
                b.listen,
                b.data_dir.display()
            ));
            let child = b.start().await?;
            println!("ok ({} ms)", t.elapsed().as_millis());
            children_list.push(Managed {
                name: "broker",
                child,
            });
            b.bootstrap()
        }
        None => match &local_kafka {
            Some(k) => {
                let t = Instant::now();
                print_step(&format!(
                    "starting Apache Kafka ({} node{}, data in {})",
                    args.kafka_nodes,
                    if args.kafka_nodes == 1 { "" } else { "s" },
                    data_dir.join("kafka").display()
                ));
                let brokers = k.start().await?;
                println!("ok ({} ms)", t.elapsed().as_millis());
                brokers
            }
            None => args.kafka_brokers.clone().unwrap_or_default(),
        },
    };

    let mut kafka = KafkaArgs::new(bootstrap.clone());
    kafka.topic_partitions = args.topic_partitions;
    kafka.client = args.kafka_client.clone();
    let local_nodes = i32::from(args.kafka_nodes);
    kafka.topic_replication = args.topic_replication.unwrap_or(match args.broker {
        BrokerMode::Kafka => local_nodes,
        BrokerMode::Embedded | BrokerMode::External => 1,
    });
    kafka.topic_min_insync_replicas = args
        .topic_min_insync_replicas
        .or((args.broker == BrokerMode::Kafka && local_nodes >= 3).then_some(2));
    let t = Instant::now();
    let wanted = topics::all_topics();
    print_step(&format!("provisioning {} topics", wanted.len()));
    let created = match provision_with_retry(&kafka).await {
        Ok(created) => created,
        Err(e) => {
            stop_all(&mut children_list).await;
            return Err(e);
        }
    };
    println!("ok ({} new, {} ms)", created.len(), t.elapsed().as_millis());

    let user_grpc = SocketAddr::new(host, args.user_port);
    let user_url = format!("http://{}", local(user_grpc));
    let gateway = SocketAddr::new(host, args.gateway_port);
    let url = |port: u16| format!("http://{}", local(SocketAddr::new(host, port)));
    let mut specs = vec![
        ServiceSpec {
            name: "user",
            kind: Kind::Service,
            grpc: user_grpc,
            admin: SocketAddr::new(host, args.user_admin_port),
            flags: Vec::new(),
        },
        ServiceSpec {
            name: "order",
            kind: Kind::Service,
            grpc: SocketAddr::new(host, args.order_port),
            admin: SocketAddr::new(host, args.order_admin_port),
            flags: vec!["--user-service-url".to_owned(), user_url.clone()],
        },
        ServiceSpec {
            name: "notification",
            kind: Kind::Service,
            grpc: SocketAddr::new(host, args.notification_port),
            admin: SocketAddr::new(host, args.notification_admin_port),
            flags: {
                let mut f = vec!["--user-service-url".to_owned(), user_url.clone()];
                // Verification links point at this mesh's gateway unless told otherwise.
                if std::env::var_os("WEFT_PUBLIC_URL").is_none() {
                    f.extend([
                        "--public-url".to_owned(),
                        format!("http://{}", local(gateway)),
                    ]);
                }
                f
            },
        },
        ServiceSpec {
            name: "analytics",
            kind: Kind::Service,
            grpc: SocketAddr::new(host, args.analytics_port),
            admin: SocketAddr::new(host, args.analytics_admin_port),
            // Streams the gateway opens are counted against the client it names.
            flags: vec![
                "--user-service-url".to_owned(),
                user_url.clone(),
                "--client-ip-header".to_owned(),
                "x-weft-client-ip".to_owned(),
            ],
        },
        ServiceSpec {
            name: "gateway",
            kind: Kind::Gateway,
            grpc: gateway,
            admin: SocketAddr::new(host, args.gateway_admin_port),
            flags: vec![
                "--user-service-url".to_owned(),
                user_url,
                "--order-service-url".to_owned(),
                url(args.order_port),
                "--notification-service-url".to_owned(),
                url(args.notification_port),
                "--analytics-service-url".to_owned(),
                url(args.analytics_port),
            ],
        },
    ];
    let consumer_flags = [
        ("--reset-offsets", args.reset_offsets.map(flag_value)),
        ("--from", args.from.map(flag_value)),
    ];
    for (flag, value) in consumer_flags {
        let Some(value) = value else { continue };
        for spec in specs
            .iter_mut()
            .filter(|s| matches!(s.name, "order" | "notification" | "analytics"))
        {
            spec.flags.extend([flag.to_owned(), value.clone()]);
        }
    }
    for (spec, own_url) in specs.iter_mut().zip([
        &args.user_database_url,
        &args.order_database_url,
        &args.notification_database_url,
        &args.analytics_database_url,
    ]) {
        if let Some(url) = database_for(&args.database_url, own_url, spec.name).await? {
            spec.flags.extend(["--database-url".to_owned(), url]);
        }
    }
    // In order: the others need the user service's token keys to be ready.
    for spec in &specs {
        let t = Instant::now();
        print_step(&format!(
            "starting the {} on {}",
            match spec.kind {
                Kind::Service => format!("{} service", spec.name),
                Kind::Gateway => "gateway".to_owned(),
            },
            spec.grpc
        ));
        let mut child = children::spawn(spec, &data_dir, &bootstrap, &kafka.client)?;
        let log = data_dir.join(format!("logs/{}.log", spec.name));
        let healthy = children::wait_healthy(spec, &mut child, &log, Duration::from_secs(60)).await;
        children_list.push(Managed {
            name: spec.name,
            child,
        });
        if let Err(e) = healthy {
            println!("failed");
            stop_all(&mut children_list).await;
            return Err(e);
        }
        println!("ok ({} ms)", t.elapsed().as_millis());
    }

    println!();
    let broker_line = match args.broker {
        BrokerMode::Embedded => "embedded broker (Kafka protocol)",
        BrokerMode::External => "Kafka",
        BrokerMode::Kafka => "Apache Kafka (local, scripts/kafka)",
    };
    println!("  {broker_line:<34} {bootstrap}");
    let on_cluster: Vec<String> = wanted.iter().map(|t| kafka.topic(t)).collect();
    println!(
        "  topics                             {}",
        on_cluster.join(", ")
    );
    for spec in &specs {
        let (what, listen) = match spec.kind {
            Kind::Service => (format!("{} service", spec.name), "grpc"),
            Kind::Gateway => ("gateway (REST/JSON)".to_owned(), "http"),
        };
        println!(
            "  {what:<34} {listen} {}   metrics http://{}/metrics   log {}",
            local(spec.grpc),
            local(spec.admin),
            data_dir.join(format!("logs/{}.log", spec.name)).display()
        );
    }
    println!("  {:<34} http://{}/", "live dashboard", local(gateway));
    println!(
        "  {:<34} http://{}/openapi.json",
        "OpenAPI 3.1",
        local(gateway)
    );
    if std::env::var_os("WEFT_SMTP_URL").is_none() {
        println!(
            "  {:<34} {}",
            "emails (.eml files)",
            data_dir.join("mail").display()
        );
    }
    println!(
        "  {:<34} weft admin grant <email> staff --data-dir {}",
        "roles (operator only)",
        data_dir.display()
    );
    println!();
    println!("  try: grpcurl -plaintext {} list", local(user_grpc));
    println!(
        "       curl -X POST http://{}/v1/users -d '{{\"email\":\"ada@example.com\",\"name\":\"Ada\",\"password\":\"correct horse battery\",\"source\":\"SIGNUP_SOURCE_WEB\"}}' -H 'content-type: application/json'",
        local(gateway)
    );
    println!();
    println!(
        "weft is up in {} ms. Tail events with `weft tail user-events`. Ctrl-C stops.",
        started.elapsed().as_millis()
    );

    if args.check {
        stop_all(&mut children_list).await;
        return Ok(());
    }

    // A service or the embedded broker that dies is started again (a few times, with
    // a pause that grows); one crashing over and over stops everything.
    let mut restarts: HashMap<&'static str, u32> = HashMap::new();
    let exited = loop {
        let name = tokio::select! {
            _ = shutdown.cancelled() => break None,
            name = first_exit(&mut children_list) => name,
        };
        let spec = specs.iter().find(|s| s.name == name);
        if spec.is_none() && (name != "broker" || embedded.is_none()) {
            break Some(name);
        }
        // A service that says starting again cannot help (stale offsets: the operator
        // must choose --reset-offsets) is not restarted.
        let unrecoverable = children_list
            .iter_mut()
            .find(|m| m.name == name)
            .and_then(|m| m.child.try_wait().ok().flatten())
            .and_then(|status| status.code())
            == Some(i32::from(weft_kit::cli::EXIT_UNRECOVERABLE));
        if unrecoverable {
            eprintln!(
                "weft: the {name} service stopped and asks not to be started again until its error is dealt with"
            );
            break Some(name);
        }
        let count = restarts.entry(name).or_default();
        *count += 1;
        if *count > MAX_RESTARTS {
            eprintln!("weft: the {name} service crashed {MAX_RESTARTS} times; giving up");
            break Some(name);
        }
        let pause = Duration::from_millis(250 << (*count - 1).min(4));
        eprintln!(
            "weft: the {name} service exited unexpectedly; restarting it in {} ms (restart {count} of {MAX_RESTARTS}); see {}",
            pause.as_millis(),
            data_dir.join(format!("logs/{name}.log")).display()
        );
        tokio::select! {
            _ = shutdown.cancelled() => break None,
            _ = tokio::time::sleep(pause) => {}
        }
        let respawned = match (spec, &embedded) {
            (Some(spec), _) => children::spawn(spec, &data_dir, &bootstrap, &kafka.client),
            (None, Some(b)) => b.start().await,
            (None, None) => break Some(name),
        };
        match respawned {
            Ok(child) => {
                if let Some(m) = children_list.iter_mut().find(|m| m.name == name) {
                    m.child = child;
                }
            }
            Err(e) => {
                eprintln!("weft: restarting the {name} service failed: {e:#}");
                break Some(name);
            }
        }
    };
    if let Some(name) = exited {
        eprintln!("weft: {name} exited unexpectedly; stopping everything");
        eprintln!(
            "{}",
            broker::tail_of(&data_dir.join(format!("logs/{name}.log")))
        );
    }
    stop_all(&mut children_list).await;
    match exited {
        None => Ok(()),
        Some(name) => anyhow::bail!("{name} exited unexpectedly"),
    }
}

/// The database URL of `service`: its own URL when given; else, with a shared server
/// URL, a database of its own on that server (created when missing); else none
/// (SQLite under the data dir).
async fn database_for(
    shared: &Option<String>,
    own: &Option<String>,
    service: &str,
) -> anyhow::Result<Option<String>> {
    if let Some(url) = own {
        return Ok(Some(url.clone()));
    }
    let Some(base) = shared else { return Ok(None) };
    let (head, query) = base
        .split_once('?')
        .map_or((base.as_str(), None), |(h, q)| (h, Some(q)));
    let (server, db) = head
        .rsplit_once('/')
        .filter(|(s, _)| s.contains("://"))
        .ok_or_else(|| {
            anyhow::anyhow!("DATABASE_URL must name a database: postgres://user@host:port/name")
        })?;
    let base_name = if db.is_empty() { "weft" } else { db };
    let name: String = format!("{base_name}_{service}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(base)
        .await
        .context("connecting to the PostgreSQL server of DATABASE_URL")?;
    let exists = sqlx::query("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_optional(&mut conn)
        .await?
        .is_some();
    if !exists {
        // The name is sanitised to [a-z0-9_] above, so quoting it is enough.
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .with_context(|| format!("creating database {name}"))?;
    }
    Ok(Some(match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    }))
}

/// `addr` as a client reaches it: an unspecified host becomes loopback.
fn local(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

fn print_step(what: &str) {
    use std::io::Write as _;
    print!("▸ {what} … ");
    let _ = std::io::stdout().flush();
}

async fn provision_with_retry(kafka: &KafkaArgs) -> anyhow::Result<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut attempt = 0u32;
    loop {
        match topics::provision(kafka, &topics::all_topics()).await {
            Ok(created) => return Ok(created),
            // Refused credentials or TLS, or settings librdkafka refuses: waiting
            // cannot help.
            Err(
                e @ (weft_events::EventsError::Refused { .. }
                | weft_events::EventsError::Kafka(rdkafka::error::KafkaError::ClientConfig(..))),
            ) => return Err(e).context("creating topics"),
            Err(e) if Instant::now() < deadline => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "broker not ready for topic creation yet");
                tokio::time::sleep(
                    weft_events::consumer::backoff(attempt).min(Duration::from_secs(2)),
                )
                .await;
            }
            Err(e) => return Err(e).context("creating topics"),
        }
    }
}

/// Resolves with the name of the first child that exits.
async fn first_exit(children: &mut [Managed]) -> &'static str {
    if children.is_empty() {
        return std::future::pending().await;
    }
    let waits = children.iter_mut().map(|m| {
        let name = m.name;
        Box::pin(async move {
            let _ = m.child.wait().await;
            name
        })
    });
    futures::future::select_all(waits).await.0
}

/// SIGTERM to each child, newest first; SIGKILL to any still running after the grace.
async fn stop_all(children: &mut Vec<Managed>) {
    while let Some(mut m) = children.pop() {
        if let Some(pid) = m.child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        match tokio::time::timeout(STOP_GRACE, m.child.wait()).await {
            Ok(_) => println!("stopped {}", m.name),
            Err(_) => {
                eprintln!(
                    "weft: {} did not stop within {STOP_GRACE:?}; killing it",
                    m.name
                );
                let _ = m.child.kill().await;
            }
        }
    }
}

/// A value-enum's word on the command line.
fn flag_value(value: impl clap::ValueEnum) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default()
}
