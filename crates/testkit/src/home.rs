//! What the services of one test share: the embedded broker on a free port and a
//! temporary data directory ([`Home`]), and the flags that start a service on them
//! ([`Home::spawn`]). The topics are the test's to create: weft provisions them
//! explicitly, and this crate does not know weft's list.

use std::path::Path;

use crate::broker::Broker;
use crate::db::Db;

/// The embedded broker and a data directory, both removed when the home is dropped.
pub struct Home {
    broker: Broker,
    dir: tempfile::TempDir,
}

impl Home {
    /// A broker on a free port and an empty data directory.
    pub fn new() -> Self {
        Self {
            broker: Broker::start(),
            dir: tempfile::tempdir().expect("a temp data dir"),
        }
    }

    /// `host:port` of the broker, for `bootstrap.servers` and `--kafka-brokers`.
    pub fn bootstrap(&self) -> String {
        self.broker.bootstrap()
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A new, empty database of kind `db` for service `name` ([`Db::url`] in the data
    /// directory).
    pub async fn database(&self, db: Db, name: &str) -> String {
        db.url(self.dir(), name).await
    }

    /// Starts service `S` as [`crate::spawn::spawn`] does, with `--data-dir`, `--kafka-brokers`
    /// and `--database-url database_url` pointing it here, then `extra`.
    pub async fn spawn<S>(&self, database_url: &str, extra: &[&str]) -> weft_kit::host::Running
    where
        S: weft_kit::host::Service,
        S::Config: clap::Parser,
    {
        let dir = self.dir().to_str().expect("a UTF-8 temp dir");
        let bootstrap = self.bootstrap();
        let mut args = vec![
            "--data-dir",
            dir,
            "--database-url",
            database_url,
            "--kafka-brokers",
            &bootstrap,
        ];
        args.extend(extra);
        crate::spawn::spawn::<S>(&args).await
    }
}

impl Default for Home {
    fn default() -> Self {
        Self::new()
    }
}
