//! A fresh mesh for one test or benchmark: a data dir of its own (deleted on drop),
//! free ports and `weft up` running on them; and [`on_each_broker!`], which makes a
//! story over a mesh two tests, one per broker.

use super::{BrokerKind, Ports, Up};

/// Rate limits that one client never reaches, for a mesh whose one client (a fuzzer,
/// a benchmark) should reach the services rather than the gateway's limiter.
pub const LIFTED_RATE_LIMITS: [(&str, &str); 4] = [
    ("WEFT_RATE_LIMIT", "1000000/s"),
    ("WEFT_RATE_BURST", "1000000"),
    ("WEFT_AUTH_RATE_LIMIT", "1000000/s"),
    ("WEFT_AUTH_RATE_BURST", "1000000"),
];

/// A mesh on SQLite, up.
pub struct Mesh {
    pub dir: tempfile::TempDir,
    pub ports: Ports,
    pub up: Up,
}

impl Mesh {
    /// Starts a mesh on the broker of `kind` and waits until it is up.
    pub async fn start(kind: BrokerKind) -> Self {
        Self::start_env(kind, &[]).await
    }

    /// Like [`Self::start`], with extra environment variables for `weft up` and the
    /// services it starts.
    pub async fn start_env(kind: BrokerKind, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ports = Ports::free();
        let up = Up::start_on_async(kind, dir.path(), &ports, env).await;
        Self { dir, ports, up }
    }

    /// [`Self::start`] for code that is not async (it blocks while the mesh comes up).
    pub fn start_blocking(kind: BrokerKind) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ports = Ports::free();
        let broker = super::MeshBroker::new(kind, &ports);
        let up = Up::start_with_broker(broker, dir.path(), &ports, None, &[]);
        Self { dir, ports, up }
    }
}

/// Two tests of one story over a mesh: the first runs `$story(BrokerKind::Embedded)`,
/// the second `$story(BrokerKind::Kafka)`. `async` stories run on a two-thread runtime
/// (`async[n]`: on n threads); `sync` ones on the test's thread.
#[allow(unused_macros)]
macro_rules! on_each_broker {
    (async $story:expr => $embedded:ident, $kafka:ident) => {
        $crate::support::on_each_broker!(async[2] $story => $embedded, $kafka);
    };
    (async[$threads:literal] $story:expr => $embedded:ident, $kafka:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = $threads)]
        async fn $embedded() {
            ($story)($crate::support::BrokerKind::Embedded).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = $threads)]
        async fn $kafka() {
            ($story)($crate::support::BrokerKind::Kafka).await;
        }
    };
    (sync $story:expr => $embedded:ident, $kafka:ident) => {
        #[test]
        fn $embedded() {
            ($story)($crate::support::BrokerKind::Embedded);
        }

        #[test]
        fn $kafka() {
            ($story)($crate::support::BrokerKind::Kafka);
        }
    };
}

#[allow(unused_imports)]
pub(crate) use on_each_broker;
