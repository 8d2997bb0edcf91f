//! `weft up` as a child process on free ports, for end-to-end tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub mod cluster;
pub mod grpc;
pub mod kafka;
mod mesh;
pub mod output;
pub mod rest;

#[allow(unused_imports)]
pub(crate) use mesh::{LIFTED_RATE_LIMITS, Mesh, on_each_broker};

/// The password of every account the helpers here create.
pub const PASSWORD: &str = "correct horse battery 9";

pub const WEFT: &str = env!("CARGO_BIN_EXE_weft");

/// Free ports for every listener of the mesh.
#[derive(Clone)]
pub struct Ports {
    pub broker: u16,
    pub user: u16,
    pub order: u16,
    pub user_admin: u16,
    pub order_admin: u16,
    pub notification: u16,
    pub analytics: u16,
    pub notification_admin: u16,
    pub analytics_admin: u16,
    pub gateway: u16,
    pub gateway_admin: u16,
}

impl Ports {
    /// Distinct free ports, this test process's alone (see [`weft_testkit::free_port`]).
    pub fn free() -> Self {
        let p = weft_testkit::free_port;
        Self {
            broker: p(),
            user: p(),
            order: p(),
            user_admin: p(),
            order_admin: p(),
            notification: p(),
            analytics: p(),
            notification_admin: p(),
            analytics_admin: p(),
            gateway: p(),
            gateway_admin: p(),
        }
    }

    /// Like [`Self::free`], with room for `replicas` instances of each service:
    /// replica k listens k - 1 ports above each of its service's ports (`weft up
    /// --replicas <replicas> --replica-port-step 1`).
    pub fn for_replicas(replicas: u16) -> Self {
        let p = weft_testkit::free_port;
        let r = || weft_testkit::free_ports(replicas);
        Self {
            broker: p(),
            user: r(),
            order: r(),
            user_admin: r(),
            order_admin: r(),
            notification: r(),
            analytics: r(),
            notification_admin: r(),
            analytics_admin: r(),
            gateway: p(),
            gateway_admin: p(),
        }
    }
}

/// Where a mesh's events go: the embedded broker `weft up` starts on `ports.broker`,
/// or a namespace of the test's own (a topic and group prefix) on the shared Apache
/// Kafka cluster, used through `weft up --broker external`.
#[derive(Clone)]
pub struct MeshBroker {
    kafka: Option<std::sync::Arc<weft_testkit::TestBroker>>,
    /// A whole Apache Kafka cluster of the test's own, by its bootstrap servers.
    own_cluster: Option<String>,
    embedded_port: u16,
}

impl MeshBroker {
    /// The broker of `kind` for a mesh on `ports`.
    pub fn new(kind: BrokerKind, ports: &Ports) -> Self {
        Self {
            kafka: (kind == BrokerKind::Kafka)
                .then(|| std::sync::Arc::new(weft_testkit::TestBroker::start(kind))),
            own_cluster: None,
            embedded_port: ports.broker,
        }
    }

    /// A whole Apache Kafka cluster of the test's own (3 nodes, e.g. a
    /// [`cluster::Cluster`]), without a topic prefix.
    pub fn cluster(bootstrap: &str) -> Self {
        Self {
            kafka: None,
            own_cluster: Some(bootstrap.to_owned()),
            embedded_port: 0,
        }
    }

    /// Which broker this is.
    pub fn kind(&self) -> BrokerKind {
        if self.kafka.is_some() || self.own_cluster.is_some() {
            BrokerKind::Kafka
        } else {
            BrokerKind::Embedded
        }
    }

    /// `bootstrap.servers` of the mesh's broker.
    pub fn bootstrap(&self) -> String {
        match (&self.kafka, &self.own_cluster) {
            (Some(k), _) => k.bootstrap(),
            (None, Some(cluster)) => cluster.clone(),
            (None, None) => format!("127.0.0.1:{}", self.embedded_port),
        }
    }

    /// The cluster's name of weft's topic `topic`.
    pub fn topic(&self, topic: &str) -> String {
        format!("{}{topic}", self.prefix())
    }

    /// The mesh's `--kafka-prefix` (empty on its own embedded broker).
    pub fn prefix(&self) -> &str {
        self.kafka.as_ref().map_or("", |k| k.prefix())
    }

    /// The environment of a `weft` command (up, tail, dlq) that talks to this broker.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match (&self.kafka, &self.own_cluster) {
            (Some(k), _) => {
                let mut env = k.env();
                env.push(("WEFT_BROKER", "external".to_owned()));
                env
            }
            (None, Some(cluster)) => vec![
                ("KAFKA_BROKERS", cluster.clone()),
                ("WEFT_BROKER", "external".to_owned()),
                ("WEFT_TOPIC_REPLICATION", "3".to_owned()),
                ("WEFT_TOPIC_MIN_INSYNC_REPLICAS", "2".to_owned()),
            ],
            (None, None) => vec![("KAFKA_BROKERS", self.bootstrap())],
        }
    }
}

pub use weft_testkit::BrokerKind;

pub struct Up {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// The broker the mesh uses.
    pub broker: MeshBroker,
}

/// The mails the mesh in `data_dir` sent, oldest first: the entries of its mailboxes
/// (or its `.eml` files), as the notification service reads them.
pub fn mails(data_dir: &Path) -> Vec<String> {
    weft_notification::mailbox::read_dir(&data_dir.join("mail")).unwrap()
}

/// `weft up` on `ports` with its data in `data_dir`, and none of the environment
/// that would point it elsewhere (no DATABASE_URL unless the caller sets one).
pub fn up_command(data_dir: &Path, ports: &Ports) -> Command {
    up_command_of(Path::new(WEFT), data_dir, ports)
}

/// [`up_command`] running the `weft` executable at `program`.
pub fn up_command_of(program: &Path, data_dir: &Path, ports: &Ports) -> Command {
    let mut command = Command::new(program);
    command
        .arg("up")
        .args(["--broker-port", &ports.broker.to_string()])
        .args(["--user-port", &ports.user.to_string()])
        .args(["--order-port", &ports.order.to_string()])
        .args(["--user-admin-port", &ports.user_admin.to_string()])
        .args(["--order-admin-port", &ports.order_admin.to_string()])
        .args(["--notification-port", &ports.notification.to_string()])
        .args(["--analytics-port", &ports.analytics.to_string()])
        .args([
            "--notification-admin-port",
            &ports.notification_admin.to_string(),
        ])
        .args(["--analytics-admin-port", &ports.analytics_admin.to_string()])
        .args(["--gateway-port", &ports.gateway.to_string()])
        .args(["--gateway-admin-port", &ports.gateway_admin.to_string()])
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("DATABASE_URL")
        .env_remove("WEFT_USER_DATABASE_URL")
        .env_remove("WEFT_ORDER_DATABASE_URL")
        .env_remove("WEFT_NOTIFICATION_DATABASE_URL")
        .env_remove("WEFT_ANALYTICS_DATABASE_URL")
        .env_remove("WEFT_SMTP_URL")
        .env_remove("WEFT_SMS_WEBHOOK_URL")
        .env_remove("KAFKA_BROKERS")
        .env_remove("WEFT_BROKER")
        .env_remove("WEFT_KAFKA_PREFIX");
    command
}

impl Up {
    pub fn start(data_dir: &Path, ports: &Ports) -> Self {
        Self::start_with(data_dir, ports, None)
    }

    /// Like [`Self::start`], with every service on PostgreSQL under `database_url`.
    pub fn start_with(data_dir: &Path, ports: &Ports, database_url: Option<&str>) -> Self {
        Self::start_env(data_dir, ports, database_url, &[])
    }

    /// Like [`Self::start_with`], with extra environment variables for `weft up` and
    /// the services it starts (e.g. `WEFT_RATE_LIMIT` for the gateway).
    pub fn start_env(
        data_dir: &Path,
        ports: &Ports,
        database_url: Option<&str>,
        env: &[(&str, &str)],
    ) -> Self {
        let broker = MeshBroker::new(BrokerKind::Embedded, ports);
        Self::start_with_broker(broker, data_dir, ports, database_url, env)
    }

    /// Like [`Self::start_env`], on `broker` (another mesh's, for a restart).
    pub fn start_with_broker(
        broker: MeshBroker,
        data_dir: &Path,
        ports: &Ports,
        database_url: Option<&str>,
        env: &[(&str, &str)],
    ) -> Self {
        let mut command = up_command(data_dir, ports);
        if broker.kind() == BrokerKind::Kafka {
            command.envs(broker.env());
        }
        command.envs(env.iter().copied());
        if let Some(url) = database_url {
            command.env("DATABASE_URL", url);
        }
        Self::spawn(command, broker)
    }

    /// Runs `command` (a `weft up` on weft-broker or `broker`) and waits until the mesh
    /// is up.
    pub fn spawn(mut command: Command, broker: MeshBroker) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let up = Self {
            child,
            lines: rx,
            broker,
        };
        up.wait_for("weft is up", Duration::from_secs(120));
        up
    }

    /// [`Self::start_with_broker`] (SQLite) on the broker of `kind`, from async code.
    pub async fn start_on_async(
        kind: BrokerKind,
        data_dir: &Path,
        ports: &Ports,
        env: &[(&str, &str)],
    ) -> Self {
        Self::start_with_broker_async(MeshBroker::new(kind, ports), data_dir, ports, env).await
    }

    /// [`Self::start_with_broker`] (SQLite) from async code.
    pub async fn start_with_broker_async(
        broker: MeshBroker,
        data_dir: &Path,
        ports: &Ports,
        env: &[(&str, &str)],
    ) -> Self {
        let (d, p) = (data_dir.to_owned(), ports.clone());
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            Self::start_with_broker(broker, &d, &p, None, &env)
        })
        .await
        .unwrap()
    }

    /// [`Self::start`] from async code (it blocks while the mesh comes up).
    pub async fn start_async(data_dir: &Path, ports: &Ports) -> Self {
        Self::start_env_async(data_dir, ports, &[]).await
    }

    /// [`Self::start_env`] (SQLite) from async code.
    pub async fn start_env_async(data_dir: &Path, ports: &Ports, env: &[(&str, &str)]) -> Self {
        Self::start_on_async(BrokerKind::Embedded, data_dir, ports, env).await
    }

    pub fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut seen = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => {
                    seen.push_str(&line);
                    seen.push('\n');
                }
                Err(_) => panic!("no {needle:?} from weft up within {timeout:?}; output:\n{seen}"),
            }
        }
    }

    /// SIGTERM, then a clean exit with every child stopped.
    pub fn stop(mut self) {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).unwrap();
        // The embedded broker is the last child stopped; on Kafka, the gateway is.
        let last = match self.broker.kind() {
            BrokerKind::Embedded => "stopped broker",
            BrokerKind::Kafka => "stopped user",
        };
        self.wait_for(last, Duration::from_secs(60));
        let status = self.child.wait().unwrap();
        assert!(status.success(), "weft up exited with {status}");
    }

    /// [`Self::stop`] from async code (it blocks while the mesh drains).
    pub async fn stop_async(self) {
        tokio::task::spawn_blocking(move || self.stop())
            .await
            .unwrap();
    }
}

impl Up {
    /// The pid of the `weft up` process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL the launcher: no chance to stop its children itself.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Up {
    /// A failed test still stops the mesh the way a user would (SIGTERM), so no
    /// broker or service outlives it; SIGKILL only if that does not work.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `weft admin <args…> --data-dir <data_dir>`, the operator's role tool: its output,
/// after asserting it succeeded.
pub fn admin(data_dir: &Path, args: &[&str]) -> String {
    let mut command = Command::new(WEFT);
    command
        .arg("admin")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("WEFT_USER_DATABASE_URL");
    output::run_ok(&format!("weft admin {args:?}"), &mut command)
}

/// The value of `key=` on the line of a demo script's output that starts with `step`
/// (the scripts print one `step key=value …` line per step).
pub fn value<'a>(out: &'a str, step: &str, key: &str) -> &'a str {
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{step} ")))
        .unwrap_or_else(|| panic!("no {step} line in:\n{out}"));
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}
