//! Test harnesses for weft: start the embedded broker on a free port or take a
//! namespace on the shared Apache Kafka cluster ([`TestBroker`]), hand out throwaway
//! PostgreSQL databases, find free ports, and wait on conditions with a deadline
//! instead of sleeping; make gRPC calls as a given caller, check tables of who may
//! call what, and sign test accounts up and in; give the services of a test their
//! broker and data directory ([`Home`]), put records on topics ([`produce`]), read
//! their metrics ([`metric`]) and tables ([`count_rows`]), and run a scenario on
//! each database ([`on_each_db!`]).
//!
//! These helpers panic with a message that says what to do: they are for tests only.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::future::Future;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

mod accounts;
mod broker;
mod db;
mod each_db;
mod grpc;
mod home;
mod kafka;
mod matrix;
mod metrics;
mod records;
mod rows;
mod spawn;
pub mod tools;
pub use accounts::{PASSWORD, login, sign_up_and_login, sign_up_request};
pub use broker::Broker;
pub use db::{Db, postgres_database};
pub use grpc::{expect_code, expect_fields, violations, with_token};
pub use home::Home;
pub use kafka::{BrokerKind, TestBroker, kafka_cluster};
pub use matrix::{Auth, Caller, Callers};
pub use metrics::{metric, scrape_metrics};
pub use records::produce;
pub use rows::{count_rows, texts};
pub use spawn::spawn;
pub use tools::{find_tool, require_tool, tools_dir};

/// Ports handed out to tests: below Linux's ephemeral range (32768–60999), so no
/// outgoing connection of any process can hold one, and below the local Kafka
/// clusters' defaults (19192 on).
const TEST_PORTS: std::ops::Range<u16> = 10_000..19_000;

/// A free TCP port on 127.0.0.1, this process's until it exits: no other test process
/// is given it (a lock file per port under the temp dir, held open), and it lies
/// outside the ephemeral range, so a client connection cannot take it between the
/// moment it is chosen and the moment the server under test binds it.
pub fn free_port() -> u16 {
    free_ports(1)
}

/// `n` consecutive free ports, the first returned, as [`free_port`] hands them out:
/// for `weft up --replicas n --replica-port-step 1`, where replica k of a service
/// listens k - 1 ports above the first.
pub fn free_ports(n: u16) -> u16 {
    use std::sync::Mutex;
    static HELD: Mutex<Vec<std::fs::File>> = Mutex::new(Vec::new());
    let dir = std::env::temp_dir().join("weft-test-ports");
    std::fs::create_dir_all(&dir).expect("creating the test ports' lock dir");
    let span = u32::from(TEST_PORTS.end - TEST_PORTS.start);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default()
        ^ std::process::id().wrapping_mul(2_654_435_761);
    let mut held = HELD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for i in 0..span {
        let first = TEST_PORTS.start + u16::try_from((seed.wrapping_add(i)) % span).unwrap_or(0);
        if first.saturating_add(n) > TEST_PORTS.end {
            continue;
        }
        let mut all_free = true;
        for port in first..first + n {
            let Ok(file) = std::fs::File::create(dir.join(format!("{port}.lock"))) else {
                all_free = false;
                break;
            };
            if file.try_lock().is_err() {
                all_free = false; // another test process has it
                break;
            }
            let free = TcpListener::bind(("127.0.0.1", port)).is_ok();
            // Held either way: a port in use is not worth trying again in this process.
            held.push(file);
            if !free {
                all_free = false;
                break;
            }
        }
        if all_free {
            return first;
        }
    }
    panic!(
        "no {n} free consecutive ports left in {}..{} on 127.0.0.1",
        TEST_PORTS.start, TEST_PORTS.end
    );
}

/// A port bound on 127.0.0.1 but not listening: connections to it are refused, as
/// when nothing is there, and nothing else can take it until [`Self::release`].
pub struct ReservedPort {
    socket: socket2::Socket,
    port: u16,
}

impl ReservedPort {
    /// Reserves a free port.
    pub fn new() -> Self {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("a TCP socket");
        socket
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .expect("no free port on 127.0.0.1");
        let port = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .expect("a bound address")
            .port();
        Self { socket, port }
    }

    /// The reserved port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Frees the port for whoever binds it next, and returns it.
    pub fn release(self) -> u16 {
        drop(self.socket);
        self.port
    }
}

impl Default for ReservedPort {
    fn default() -> Self {
        Self::new()
    }
}

/// Polls `check` every 50 ms until it yields a value or `timeout` passes, then panics
/// naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) {
    wait_listening(addr, timeout, || false);
}

/// Waits until `addr` accepts TCP connections (true) or `gone` says the server that
/// should listen there has exited (false); panics after `timeout`.
fn wait_listening(addr: SocketAddr, timeout: Duration, mut gone: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if gone() {
            return false;
        }
        assert!(
            Instant::now() < deadline,
            "nothing listens on {addr} after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// A TCP connection to `to` from the loopback address `from` (any of 127/8 reaches a
/// listener on 127.0.0.1): a second client address on one machine, for per-client
/// limits.
pub async fn connect_from(from: std::net::Ipv4Addr, to: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
    socket
        .bind(SocketAddr::new(from.into(), 0))
        .unwrap_or_else(|e| panic!("binding {from}: {e}"));
    socket
        .connect(to)
        .await
        .unwrap_or_else(|e| panic!("connecting from {from} to {to}: {e}"))
}

/// Reads until the server closes `conn` (end of stream or a reset); panics when it is
/// still open after `within`.
pub async fn closed_within(conn: &mut tokio::net::TcpStream, within: Duration, what: &str) {
    use tokio::io::AsyncReadExt as _;
    let mut buf = [0u8; 4096];
    let read_to_close = async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read_to_close)
        .await
        .unwrap_or_else(|_| panic!("{what} was still open after {within:?}"));
}

/// Reads `topic` from the beginning of every partition until `pred` holds for the
/// records seen so far; panics after `timeout`.
pub fn read_topic_until(
    brokers: &str,
    topic: &str,
    timeout: Duration,
    pred: impl Fn(&[rdkafka::message::OwnedMessage]) -> bool,
) -> Vec<rdkafka::message::OwnedMessage> {
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()
        .expect("kafka reader");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("topic metadata");
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in metadata.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), rdkafka::Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        if pred(&seen) {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "timed out reading {topic}: {} records seen",
            seen.len()
        );
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            seen.push(m.detach());
        }
    }
}

/// The UTF-8 value of header `name` of a record.
pub fn header<'a>(m: &'a rdkafka::message::OwnedMessage, name: &str) -> Option<&'a str> {
    use rdkafka::Message as _;
    use rdkafka::message::Headers as _;
    m.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}
