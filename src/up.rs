//! `weft up`: the whole mesh on one machine. Starts the embedded broker (weft-broker,
//! or uses an external Kafka), provisions every topic explicitly, starts each service and then
//! the gateway as a child process (`weft serve <name>`) and waits until it is
//! healthy, prints where everything is, and on
//! Ctrl-C or SIGTERM stops the children in reverse order, each with a grace period.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::Child;
use weft_events::kafka::KafkaArgs;
use weft_events::topics;

use std::net::SocketAddr;

use crate::broker::EmbeddedBroker;
use crate::children::{self, Kind, ServiceSpec};
use crate::cli::{BrokerMode, UpArgs};
use crate::local_kafka::LocalKafka;
use crate::ports;
use crate::restarts::{Next, Policy, Restarts};

/// How long a child may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// A child process the launcher supervises; no process while it waits to be started
/// again.
struct Managed {
    name: String,
    child: Option<Child>,
}

/// Runs `weft up`.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let shutdown = weft_kit::shutdown::on_signal();
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating the data dir {}", args.data_dir.display()))?;
    let data_dir = std::path::absolute(&args.data_dir)?;
    // Before anything else: a second launcher must leave the running mesh's files be.
    let _run_lock = crate::run_lock::take(&data_dir)?;
    println!(
        "weft {} — data in {}",
        env!("CARGO_PKG_VERSION"),
        data_dir.display()
    );

    let host = args.host;
    let plan = Plan::new(&args)?;
    let mut wanted_ports: Vec<ports::Wanted> = Vec::new();
    if args.broker == BrokerMode::Embedded {
        wanted_ports.push(ports::Wanted {
            what: "the embedded broker".to_owned(),
            flag: "--broker-port",
            addr: SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), args.broker_port),
        });
    }
    for (service, instances) in &plan.services {
        for (k, instance) in instances.iter().enumerate() {
            let whose = if k == 0 {
                format!("the {service} service")
            } else {
                format!("replica {} of the {service} service", k + 1)
            };
            wanted_ports.push(ports::Wanted {
                what: whose.clone(),
                flag: instance.grpc_flag,
                addr: instance.grpc,
            });
            wanted_ports.push(ports::Wanted {
                what: format!("{whose}'s metrics"),
                flag: instance.admin_flag,
                addr: instance.admin,
            });
        }
    }
    wanted_ports.push(ports::Wanted {
        what: "the gateway".to_owned(),
        flag: "--gateway-port",
        addr: SocketAddr::new(host, args.gateway_port),
    });
    wanted_ports.push(ports::Wanted {
        what: "the gateway's metrics".to_owned(),
        flag: "--gateway-admin-port",
        addr: SocketAddr::new(host, args.gateway_admin_port),
    });
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
                name: "broker".to_owned(),
                child: Some(child),
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
    let created = or_stop(provision_with_retry(&kafka).await, &mut children_list).await?;
    println!("ok ({} new, {} ms)", created.len(), t.elapsed().as_millis());

    let urls = |service: &str| -> String {
        plan.services
            .iter()
            .filter(|(s, _)| *s == service)
            .flat_map(|(_, instances)| {
                instances
                    .iter()
                    .map(|i| format!("http://{}", local(i.grpc)))
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    let user_url = urls("user");
    let gateway = SocketAddr::new(host, args.gateway_port);
    let mut databases = HashMap::new();
    for (service, own_url) in [
        ("user", &args.user_database_url),
        ("order", &args.order_database_url),
        ("notification", &args.notification_database_url),
        ("analytics", &args.analytics_database_url),
    ] {
        let url = database_for(&args.database_url, own_url, service).await;
        if let Some(url) = or_stop(url, &mut children_list).await? {
            databases.insert(service, url);
        }
    }
    let mut specs = Vec::new();
    for (service, instances) in &plan.services {
        let mut flags = match *service {
            "order" => vec!["--user-service-url".to_owned(), user_url.clone()],
            "notification" => {
                let mut f = vec!["--user-service-url".to_owned(), user_url.clone()];
                // Verification links point at this mesh's gateway unless told otherwise.
                if std::env::var_os("WEFT_PUBLIC_URL").is_none() {
                    f.extend([
                        "--public-url".to_owned(),
                        format!("http://{}", local(gateway)),
                    ]);
                }
                f
            }
            // Streams the gateway opens are counted against the client it names.
            "analytics" => vec![
                "--user-service-url".to_owned(),
                user_url.clone(),
                "--client-ip-header".to_owned(),
                "x-weft-client-ip".to_owned(),
            ],
            _ => Vec::new(),
        };
        if *service != "user" {
            for (flag, value) in [
                ("--reset-offsets", args.reset_offsets.map(flag_value)),
                ("--from", args.from.map(flag_value)),
            ] {
                if let Some(value) = value {
                    flags.extend([flag.to_owned(), value]);
                }
            }
        }
        if let Some(url) = databases.get(service) {
            flags.extend(["--database-url".to_owned(), url.clone()]);
        }
        for instance in instances {
            specs.push(ServiceSpec {
                service,
                name: instance.name.clone(),
                kind: Kind::Service,
                grpc: instance.grpc,
                admin: instance.admin,
                flags: flags.clone(),
            });
        }
    }
    specs.push(ServiceSpec {
        service: "gateway",
        name: "gateway".to_owned(),
        kind: Kind::Gateway,
        grpc: gateway,
        admin: SocketAddr::new(host, args.gateway_admin_port),
        flags: vec![
            "--user-service-url".to_owned(),
            user_url,
            "--order-service-url".to_owned(),
            urls("order"),
            "--notification-service-url".to_owned(),
            urls("notification"),
            "--analytics-service-url".to_owned(),
            urls("analytics"),
        ],
    });
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
        let spawned = children::spawn(spec, &data_dir, &bootstrap, &kafka.client);
        let mut child = or_stop(spawned, &mut children_list).await?;
        let log = data_dir.join(format!("logs/{}.log", spec.name));
        let healthy = children::wait_healthy(spec, &mut child, &log, Duration::from_secs(60)).await;
        children_list.push(Managed {
            name: spec.name.clone(),
            child: Some(child),
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
    let scrape = data_dir.join("prometheus.yml");
    match std::fs::write(&scrape, prometheus_config(&specs)) {
        Ok(()) => println!(
            "  {:<34} prometheus --config.file={}",
            "Prometheus scrape config",
            scrape.display()
        ),
        Err(e) => eprintln!("weft: writing {}: {e}", scrape.display()),
    }
    println!(
        "  {:<34} weft admin grant <email> staff --data-dir {}",
        "roles (operator only)",
        data_dir.display()
    );
    println!();
    println!("  try: grpcurl -plaintext {} list", local(specs[0].grpc));
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

    // A service or the embedded broker that dies is started again (see
    // [`crate::restarts`]): one that crashes over and over is marked failed and tried
    // again slowly while the rest of the mesh goes on.
    let mut restarts = Restarts::new(Policy {
        max_restarts: args.max_restarts,
        window: args.restart_window,
        failed_retry: args.failed_retry,
    })
    .without_backoff("broker");
    // Children waiting to be started again, and when.
    let mut due: Vec<(Instant, String)> = Vec::new();
    let exited = loop {
        let next = due.iter().map(|(at, _)| *at).min();
        let name = tokio::select! {
            _ = shutdown.cancelled() => break None,
            name = first_exit(&mut children_list) => name,
            _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now).into()), if next.is_some() => {
                let now = Instant::now();
                let (ready, later): (Vec<_>, Vec<_>) = due.drain(..).partition(|(at, _)| *at <= now);
                due = later;
                for (_, name) in ready {
                    let spec = specs.iter().find(|s| s.name == name);
                    let respawned = match (spec, &embedded) {
                        (Some(spec), _) => children::spawn(spec, &data_dir, &bootstrap, &kafka.client),
                        (None, Some(b)) => b.start().await,
                        (None, None) => continue,
                    };
                    match respawned {
                        Ok(child) => {
                            if let Some(m) = children_list.iter_mut().find(|m| m.name == name) {
                                m.child = Some(child);
                            }
                        }
                        Err(e) => {
                            // Tried again as if it had crashed once more.
                            eprintln!("weft: starting the {name} service again failed: {e:#}");
                            due.push((now + restarts.crashed(&name, now).wait(), name));
                        }
                    }
                }
                continue;
            }
        };
        let spec = specs.iter().find(|s| s.name == name);
        if spec.is_none() && (name != "broker" || embedded.is_none()) {
            break Some(name);
        }
        let managed = children_list.iter_mut().find(|m| m.name == name);
        let status = managed.and_then(|m| {
            let status = m.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            m.child = None;
            status
        });
        // A service that says starting again cannot help (stale offsets: the operator
        // must choose --reset-offsets) is not restarted.
        if status.and_then(|s| s.code()) == Some(i32::from(weft_kit::cli::EXIT_UNRECOVERABLE)) {
            eprintln!(
                "weft: the {name} service stopped and asks not to be started again until its error is dealt with"
            );
            break Some(name);
        }
        let log = data_dir.join(format!("logs/{name}.log"));
        let window = humantime::format_duration(restarts.policy().window);
        let next = restarts.crashed(&name, Instant::now());
        if let Next::Failed { count, .. } = next
            && name == "broker"
            && args.broker_fail_fast
        {
            eprintln!(
                "weft: the embedded broker crashed {count} times within {window} (--broker-fail-fast)"
            );
            break Some(name);
        }
        match next {
            Next::Restart { pause, count } => eprintln!(
                "weft: the {name} service exited unexpectedly; restarting it in {} ms (restart {count} of {} within {window}); see {}",
                pause.as_millis(),
                restarts.policy().max_restarts,
                log.display()
            ),
            Next::Failed { retry, count } => eprintln!(
                "weft: the {name} service crashed {count} times within {window}: marked failed; the rest of the mesh goes on, and it is tried again every {}; see {}",
                humantime::format_duration(retry),
                log.display()
            ),
        }
        due.push((Instant::now() + next.wait(), name));
    };
    if let Some(name) = &exited {
        eprintln!("weft: {name} exited unexpectedly; stopping everything");
        eprintln!(
            "{}",
            children::tail_of(&data_dir.join(format!("logs/{name}.log")))
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
    let (url, name) = service_database(base, service)?;
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
        // service_database sanitises the name to [a-z0-9_], so quoting it is enough.
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .with_context(|| format!("creating database {name}"))?;
    }
    Ok(Some(url))
}

/// The URL and name of `service`'s own database on the server of the shared
/// `base` URL: `<database>_<service>` (lower-case, `[a-z0-9_]`), as `weft up`
/// creates it.
pub fn service_database(base: &str, service: &str) -> anyhow::Result<(String, String)> {
    let (head, query) = base
        .split_once('?')
        .map_or((base, None), |(h, q)| (h, Some(q)));
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
    let url = match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    };
    Ok((url, name))
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
async fn first_exit(children: &mut [Managed]) -> String {
    let waits: Vec<_> = children
        .iter_mut()
        .filter_map(|m| {
            let name = m.name.clone();
            let child = m.child.as_mut()?;
            Some(Box::pin(async move {
                let _ = child.wait().await;
                name
            }))
        })
        .collect();
    if waits.is_empty() {
        return std::future::pending().await;
    }
    futures::future::select_all(waits).await.0
}

/// A Prometheus configuration that scrapes every admin port of this mesh (`/metrics`)
/// every 5 s, each target labelled with its service and instance name.
fn prometheus_config(specs: &[ServiceSpec]) -> String {
    let mut out = String::from(
        "# Written by `weft up` for this mesh's admin ports; run\n\
         #   prometheus --config.file=<this file>\n\
         global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n\n\
         scrape_configs:\n  - job_name: weft\n    metrics_path: /metrics\n    static_configs:\n",
    );
    for spec in specs {
        out.push_str(&format!(
            "      - targets: [\"{}\"]\n        labels: {{ service: {}, instance_name: {} }}\n",
            local(spec.admin),
            spec.service,
            spec.name
        ));
    }
    out
}

/// `result` as it is, after stopping every child started so far when it is an error:
/// a start that fails part-way leaves nothing running.
async fn or_stop<T>(result: anyhow::Result<T>, children: &mut Vec<Managed>) -> anyhow::Result<T> {
    if result.is_err() {
        stop_all(children).await;
    }
    result
}

/// SIGTERM to each child, newest first; SIGKILL to any still running after the grace.
async fn stop_all(children: &mut Vec<Managed>) {
    while let Some(m) = children.pop() {
        let Some(mut child) = m.child else {
            println!("stopped {} (it was waiting to start again)", m.name);
            continue;
        };
        if let Some(pid) = child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        match tokio::time::timeout(STOP_GRACE, child.wait()).await {
            Ok(_) => println!("stopped {}", m.name),
            Err(_) => {
                eprintln!(
                    "weft: {} did not stop within {STOP_GRACE:?}; killing it",
                    m.name
                );
                let _ = child.kill().await;
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

/// Where each instance of each service listens: the flags' ports for the first,
/// and `(k - 1) × --replica-port-step` above them for replica k.
struct Plan {
    services: Vec<(&'static str, Vec<Instance>)>,
}

/// One instance of a service in the [`Plan`].
struct Instance {
    name: String,
    grpc: SocketAddr,
    grpc_flag: &'static str,
    admin: SocketAddr,
    admin_flag: &'static str,
}

impl Plan {
    fn new(args: &UpArgs) -> anyhow::Result<Self> {
        let services = [
            (
                "user",
                args.user_port,
                "--user-port",
                args.user_admin_port,
                "--user-admin-port",
                &args.user_database_url,
            ),
            (
                "order",
                args.order_port,
                "--order-port",
                args.order_admin_port,
                "--order-admin-port",
                &args.order_database_url,
            ),
            (
                "notification",
                args.notification_port,
                "--notification-port",
                args.notification_admin_port,
                "--notification-admin-port",
                &args.notification_database_url,
            ),
            (
                "analytics",
                args.analytics_port,
                "--analytics-port",
                args.analytics_admin_port,
                "--analytics-admin-port",
                &args.analytics_database_url,
            ),
        ];
        if args.replicas > 1 {
            let on_sqlite: Vec<&str> = services
                .iter()
                .filter(|s| s.5.is_none() && args.database_url.is_none())
                .map(|s| s.0)
                .collect();
            if !on_sqlite.is_empty() {
                bail!(
                    "--replicas {} needs PostgreSQL for {}: the replicas of a service share its database, \
                     and on SQLite that database is a file under this data dir that only processes on this \
                     machine can open, each waiting for one lock to write; \
                     give --database-url postgres://user@host:port/weft (or run one replica)",
                    args.replicas,
                    on_sqlite.join(", ")
                );
            }
        }
        let port = |base: u16, k: u8, flag: &str| -> anyhow::Result<u16> {
            u16::from(k - 1)
                .checked_mul(args.replica_port_step)
                .and_then(|offset| base.checked_add(offset))
                .with_context(|| {
                    format!(
                        "replica {k} would listen beyond port 65535 ({flag} {base}, --replica-port-step {}): choose lower ports or a smaller step",
                        args.replica_port_step
                    )
                })
        };
        let services = services
            .into_iter()
            .map(|(service, grpc, grpc_flag, admin, admin_flag, _)| {
                let instances = (1..=args.replicas)
                    .map(|k| {
                        Ok(Instance {
                            name: if k == 1 {
                                service.to_owned()
                            } else {
                                format!("{service}-{k}")
                            },
                            grpc: SocketAddr::new(args.host, port(grpc, k, grpc_flag)?),
                            grpc_flag,
                            admin: SocketAddr::new(args.host, port(admin, k, admin_flag)?),
                            admin_flag,
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                Ok((service, instances))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self { services })
    }
}
