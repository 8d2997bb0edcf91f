//! A service's own database: SQLite under the data directory by default, PostgreSQL
//! when given a `postgres://` URL. Both run through sqlx's `Any` driver so the outbox,
//! the inbox and the services' own tables share one code path; DDL differs, so each
//! backend has its own versioned migrations.

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use std::sync::Arc;

use futures::future::BoxFuture;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyConnection, AnyPool, Connection as _, Executor as _, Row as _, Transaction};

use weft_kit::config::Secret;

use crate::error::EventsError;

/// A job's result is ready to be told to its caller once its transaction is settled.
pub(crate) trait Queued: Send {
    /// Runs the job on `conn`; whether it succeeded.
    fn run<'a>(&'a mut self, conn: &'a mut AnyConnection) -> BoxFuture<'a, bool>;

    /// Answers the caller: the job's result if `settled` is `Ok` (its transaction
    /// committed, or it failed and was rolled back), else that error.
    fn answer(self: Box<Self>, settled: Result<(), sqlx::Error>);
}

/// The queue of a database's group-commit writer task (see [`crate::group_commit`]).
pub(crate) type Writer = tokio::sync::mpsc::Sender<Box<dyn Queued>>;

/// Which database engine is behind a [`Database`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// A pool on a service's database, migrated for the outbox and inbox.
#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
    /// Where it was opened (it may hold a password), for connections of their own
    /// (the relay's listener).
    url: Secret<String>,
    /// SQLite has one writer at a time; this process's writers queue here, in order,
    /// instead of in SQLite's busy handler, which sleeps a millisecond or more per
    /// retry however soon the lock frees (measured: a third of the order service's
    /// time under a burst of orders went to waiting that way).
    writer: Arc<tokio::sync::Mutex<()>>,
    /// The queue of the group-commit writer task ([`Database::write`]), started on
    /// first use and ended when the last handle that shares it is dropped.
    group: Arc<std::sync::OnceLock<Writer>>,
    /// SQLite: stops the background checkpointer ([`checkpoint_in_background`]) when
    /// the last handle is dropped.
    _checkpointer: Option<Arc<tokio_util::sync::DropGuard>>,
}

/// A write transaction. On SQLite it also holds this process's turn to write, given
/// back when it commits, rolls back or is dropped. It derefs to the connection, as
/// sqlx's transaction does.
pub struct WriteTx {
    tx: Transaction<'static, Any>,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteTx {
    /// Commits.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    /// Rolls back.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl std::ops::Deref for WriteTx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}

/// How often the background checkpointer copies the log into the database file while
/// it grows, and how often it looks once it has stopped growing.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
const CHECKPOINT_IDLE: Duration = Duration::from_secs(1);

/// Copies SQLite's write-ahead log into the database file every
/// [`CHECKPOINT_EVERY`] while it grows (`PRAGMA wal_checkpoint(PASSIVE)`, which waits
/// for no reader or writer), until `stop`. By default the commit that grows the log
/// past 1,000 pages runs the checkpoint itself, with its two `fsync`s, while every
/// writer of the process waits for it; at 1,000 orders/s the order service's log grows
/// that much several times a second. Measured at a steady 1,000 orders/s, the builds
/// run in both orders: with this task `CreateOrder`'s p99 was 8.5 against 11.2 ms and
/// 8.6 against 9.6 ms, the event latency's p99 18.1 against 20.7 and 17.9 against
/// 19.3 ms, and the CPU per order under 3,000 orders/s did not move.
async fn checkpoint_in_background(pool: AnyPool, stop: tokio_util::sync::CancellationToken) {
    let mut wait = CHECKPOINT_EVERY;
    let mut last = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&pool)
            .await
        {
            // (blocked, pages in the log, pages copied): the same twice over, nothing
            // was written meanwhile.
            Ok(row) => {
                let now = (row.try_get::<i64, _>(1).ok(), row.try_get::<i64, _>(2).ok());
                wait = if last == Some(now) {
                    CHECKPOINT_IDLE
                } else {
                    CHECKPOINT_EVERY
                };
                last = Some(now);
            }
            Err(_) if pool.is_closed() => return,
            Err(e) => tracing::debug!(error = %e, "background checkpoint failed"),
        }
    }
}

/// The SQLite URL of the database `name` under `data_dir` (created if missing).
pub fn sqlite_url(data_dir: &Path, name: &str) -> Result<String, EventsError> {
    std::fs::create_dir_all(data_dir)?;
    let dir = std::path::absolute(data_dir)?;
    Ok(format!(
        "sqlite://{}?mode=rwc",
        dir.join(format!("{name}.db")).display()
    ))
}

/// The database of service `name`: `url` when given (PostgreSQL), else SQLite at
/// `<data_dir>/<name>.db`; connected, with the backbone's and the service's
/// migrations applied.
pub async fn open_service_db(
    url: Option<&str>,
    data_dir: &Path,
    name: &str,
    sqlite: Migrator,
    postgres: Migrator,
) -> Result<Database, EventsError> {
    let url = match url {
        Some(u) => u.to_owned(),
        None => sqlite_url(data_dir, name)?,
    };
    let db = Database::connect(&url).await?;
    db.migrate(sqlite, postgres).await?;
    Ok(db)
}

impl Database {
    /// Connects to `url` (`sqlite://…` or `postgres://…`) and runs the event
    /// backbone's migrations.
    pub async fn connect(url: &str) -> Result<Self, EventsError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            let scheme = url.split(':').next().unwrap_or_default().to_owned();
            return Err(EventsError::UnsupportedDatabase(scheme));
        };
        let options = AnyConnectOptions::from_str(url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 10,
            })
            .acquire_timeout(Duration::from_secs(5))
            // sqlx pings a connection every time it leaves the pool unless told not to.
            // An SQLite connection is a file handle on this machine: nothing between
            // can break it, and the ping was one more round trip to the connection's
            // thread for every query and transaction (5 % of the order service's time
            // under a burst of orders). A PostgreSQL connection can be cut by the
            // server or the network, so it is still checked.
            .test_before_acquire(backend == Backend::Postgres)
            // A connection still inside a transaction is never handed out again (by
            // the time it is acquired, rollbacks queued on release have run).
            .before_acquire(|conn, _| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the one writer; the busy timeout
                        // makes writers queue instead of failing.
                        for pragma in [
                            "PRAGMA journal_mode = WAL",
                            "PRAGMA synchronous = NORMAL",
                            "PRAGMA busy_timeout = 5000",
                            "PRAGMA foreign_keys = ON",
                            // Checkpoints run in the background (see
                            // `checkpoint_in_background`); a commit checkpoints only
                            // when the log has grown past this, should that fall behind.
                            "PRAGMA wal_autocheckpoint = 10000",
                        ] {
                            conn.execute(pragma).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let checkpointer = (backend == Backend::Sqlite).then(|| {
            let stop = tokio_util::sync::CancellationToken::new();
            tokio::spawn(checkpoint_in_background(pool.clone(), stop.clone()));
            Arc::new(stop.drop_guard())
        });
        let db = Self {
            pool,
            backend,
            url: Secret::new(url.to_owned()),
            writer: Arc::new(tokio::sync::Mutex::new(())),
            group: Arc::default(),
            _checkpointer: checkpointer,
        };
        db.migrate(
            sqlx::migrate!("./migrations/sqlite"),
            sqlx::migrate!("./migrations/postgres"),
        )
        .await?;
        Ok(db)
    }

    /// Runs a service's own migrations, one set per backend. Migrations of other
    /// components in the same database (the outbox's) are left alone.
    pub async fn migrate(&self, sqlite: Migrator, postgres: Migrator) -> Result<(), EventsError> {
        let mut migrator = match self.backend {
            Backend::Sqlite => sqlite,
            Backend::Postgres => postgres,
        };
        migrator.set_ignore_missing(true);
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// The URL it was opened with (it may hold a password: never log it).
    pub(crate) fn url(&self) -> &str {
        self.url.expose()
    }

    /// The connection pool.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The engine behind the pool.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The group-commit writer's queue cell, shared by this handle's clones.
    pub(crate) fn group_commit(&self) -> &std::sync::OnceLock<Writer> {
        &self.group
    }

    /// A handle on the same pool and write turn that does not keep the group-commit
    /// queue open: the writer task's own, so the task ends with the last caller's.
    pub(crate) fn clone_without_writer(&self) -> Self {
        Self {
            group: Arc::default(),
            ..self.clone()
        }
    }

    /// Starts a write transaction. On SQLite it first waits for this process's turn
    /// to write, then takes the write lock at once (`BEGIN IMMEDIATE`), so writers
    /// never fail upgrading a read lock; another process writing the same file still
    /// queues on the busy timeout.
    pub async fn begin(&self) -> Result<WriteTx, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => {
                let turn = self.writer.clone().lock_owned().await;
                Ok(WriteTx {
                    tx: self.begin_whole(Some("BEGIN IMMEDIATE")).await?,
                    _turn: Some(turn),
                })
            }
            Backend::Postgres => Ok(WriteTx {
                tx: self.begin_whole(None).await?,
                _turn: None,
            }),
        }
    }

    /// Begins a transaction in a task of its own, so that a caller whose future is
    /// dropped (a cancelled RPC, a passed deadline) cannot leave the connection between
    /// its `BEGIN` and the `Transaction` that would roll it back: sqlx would then hand
    /// a connection still inside a transaction back to the pool, and every later
    /// `BEGIN` on it failed ("begin_with at non-zero transaction depth") while it held
    /// the database's write lock. Here the task finishes either way; a transaction
    /// nobody takes is dropped, and so rolled back.
    async fn begin_whole(
        &self,
        statement: Option<&'static str>,
    ) -> Result<Transaction<'static, Any>, sqlx::Error> {
        let pool = self.pool.clone();
        tokio::spawn(async move {
            match statement {
                Some(statement) => pool.begin_with(statement).await,
                None => pool.begin().await,
            }
        })
        .await
        .map_err(|e| {
            sqlx::Error::Protocol(format!("the task beginning a transaction failed: {e}"))
        })?
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    /// [`Self::ping`] as a readiness probe, for `Readiness::with_probe`.
    pub fn probe(&self) -> impl Fn() -> crate::kafka::ProbeFuture + Send + Sync + 'static {
        let db = self.clone();
        move || {
            let db = db.clone();
            Box::pin(async move { db.ping().await.map_err(|e| format!("database: {e}")) })
        }
    }
}

/// Now, in microseconds since the Unix epoch: how weft stores instants.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// A stored instant (µs since the epoch) as a protobuf timestamp.
pub fn timestamp(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: i32::try_from(micros.rem_euclid(1_000_000) * 1000).unwrap_or(0),
    }
}

/// Whether `e` is a unique-constraint violation, on either backend.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| {
        d.is_unique_violation()
            // PostgreSQL's SQLSTATE, SQLite's extended codes and message, for drivers
            // that do not classify through `Any`.
            || d.code().is_some_and(|c| c == "23505" || c == "2067" || c == "1555")
            || d.message().contains("UNIQUE constraint failed")
    })
}

/// Whether `e` would happen again for the same statement on the same data: a data
/// exception (PostgreSQL class 22: a NUL byte, invalid encoding, a value too long or
/// out of range), an integrity or check violation (class 23; SQLite's constraint,
/// too-big, mismatch and range errors), or a value that cannot be decoded. Lost
/// connections, pool timeouts, lock and serialization failures, deadlocks and I/O
/// errors are not: trying again may succeed.
pub fn deterministic(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            if !matches!(db.kind(), sqlx::error::ErrorKind::Other) {
                return true;
            }
            let Some(code) = db.code() else { return false };
            if db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some()
            {
                // SQLSTATE classes 22 (data exception) and 23 (integrity violation).
                return code.starts_with("22") || code.starts_with("23");
            }
            // SQLite's (extended) result code: its low byte is the primary code.
            code.parse::<i64>().is_ok_and(|c| {
                matches!(
                    c & 0xff,
                    18 /* TOOBIG */ | 19 /* CONSTRAINT */ | 20 /* MISMATCH */ | 25 /* RANGE */
                )
            })
        }
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => true,
        _ => false,
    }
}
