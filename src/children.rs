//! The services `weft up` runs as child processes (`weft serve <name> …`), each with
//! its output in `<data dir>/logs/<name>.log`, and the wait for their health: gRPC
//! health for the services, the admin `/readyz` for the gateway.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// What a child is, which decides its common flags and how its health is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A gRPC service with a database and the broker.
    Service,
    /// The REST gateway: no database, no broker; ready when its admin `/readyz` is.
    Gateway,
}

/// One service instance to start.
pub struct ServiceSpec {
    /// `weft serve` name.
    pub service: &'static str,
    /// Which instance: the service's name for the first, `<service>-<k>` for replica
    /// k. Also the name of its log and pid files, and (after the host name) its
    /// replica id in leases and partition claims.
    pub name: String,
    /// What it is.
    pub kind: Kind,
    /// gRPC address (for the gateway: its HTTP address).
    pub grpc: SocketAddr,
    /// Admin address.
    pub admin: SocketAddr,
    /// Extra flags of the service.
    pub flags: Vec<String>,
}

/// Starts `spec` as `weft serve <name>` with its log under `data_dir/logs`.
pub fn spawn(
    spec: &ServiceSpec,
    data_dir: &Path,
    brokers: &str,
    kafka: &weft_events::kafka::ClientArgs,
) -> anyhow::Result<Child> {
    std::fs::create_dir_all(data_dir.join("logs"))?;
    let log_path = data_dir.join(format!("logs/{}.log", spec.name));
    // Appended to, so a restarted service's log follows its previous life's.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut command = weft_command()?;
    command.args(["serve", spec.service]);
    match spec.kind {
        Kind::Service => {
            command
                .env(
                    "WEFT_REPLICA_ID",
                    format!("{}/{}", weft_events::lease::replica_id(), spec.name),
                )
                .args(["--grpc-addr", &spec.grpc.to_string()])
                .arg("--data-dir")
                .arg(data_dir)
                .args(["--kafka-brokers", brokers])
                .args(kafka.to_flags());
        }
        Kind::Gateway => {
            command.args(["--http-addr", &spec.grpc.to_string()]);
        }
    }
    let child = command
        .args(["--admin-addr", &spec.admin.to_string()])
        .args(&spec.flags)
        // Each service gets its own database by flag; a shared one would mix their
        // outboxes.
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting the {} service", spec.name))?;
    record_pid(data_dir, &spec.name, &child)?;
    Ok(child)
}

/// A command running this very `weft` executable, even after the file it was
/// started from was replaced or deleted (`./weft` rebuilds it after a `git pull`):
/// `/proc/self/exe` names the running image's inode, not the path. The children see
/// the path as their `argv[0]`.
pub fn weft_command() -> anyhow::Result<Command> {
    let path = std::env::current_exe().context("locating the weft binary")?;
    let mut command = Command::new("/proc/self/exe");
    command.arg0(path);
    Ok(command)
}

/// Writes `<data dir>/run/<name>.pid`: which process is the service (or broker),
/// for operators, crash tests and benchmarks.
pub fn record_pid(data_dir: &Path, name: &str, child: &Child) -> anyhow::Result<()> {
    if let Some(pid) = child.id() {
        let run = data_dir.join("run");
        std::fs::create_dir_all(&run)?;
        std::fs::write(run.join(format!("{name}.pid")), format!("{pid}\n"))?;
    }
    Ok(())
}

/// Waits until `spec` is ready (SERVING, or `/readyz` 200 for the gateway), or
/// fails when `child` exits or `timeout` passes.
pub async fn wait_healthy(
    spec: &ServiceSpec,
    child: &mut Child,
    log: &Path,
    timeout: Duration,
) -> anyhow::Result<()> {
    let name = &spec.name;
    let deadline = Instant::now() + timeout;
    let local = |addr: SocketAddr| {
        if addr.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], addr.port()))
        } else {
            addr
        }
    };
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "the {name} service exited with {status} during start-up; see {}:\n{}",
                log.display(),
                tail_of(log)
            );
        }
        let ready = match spec.kind {
            Kind::Service => serving(local(spec.grpc)).await,
            Kind::Gateway => http_ready(local(spec.admin)).await,
        };
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the {name} service was not healthy within {timeout:?}; see {}:\n{}",
                log.display(),
                tail_of(log)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether `GET /readyz` on `addr` answers 200.
async fn http_ready(addr: SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        stream
            .write_all(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        Some(head.ends_with(b" 200"))
    };
    tokio::time::timeout(Duration::from_millis(500), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

async fn serving(addr: SocketAddr) -> bool {
    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(format!("http://{addr}")) else {
        return false;
    };
    let Ok(channel) = endpoint
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .await
    else {
        return false;
    };
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32)
}

/// The last lines of a log file, for error messages.
pub fn tail_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
