//! The databases tests run services on: a SQLite file in the test's directory, or a
//! fresh database on the test PostgreSQL server.

/// A fresh, empty PostgreSQL database on the test server named by
/// `WEFT_TEST_DATABASE_URL` (set by `scripts/test`). Panics when the variable is
/// missing: PostgreSQL tests never skip silently.
pub async fn postgres_database() -> String {
    use sqlx::Connection as _;
    let admin = std::env::var("WEFT_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "WEFT_TEST_DATABASE_URL is not set: PostgreSQL tests need a server. \
             Run scripts/test, or `eval $(scripts/pg start)` first."
        )
    });
    let name = format!("weft_t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at WEFT_TEST_DATABASE_URL: {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    format!("{base}/{name}")
}

/// The database a test runs a service on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    /// A SQLite file in the test's directory.
    Sqlite,
    /// A fresh database on the test PostgreSQL server ([`postgres_database`]).
    Postgres,
}

impl Db {
    /// Both, for tests that run on each.
    pub const BOTH: [Db; 2] = [Db::Sqlite, Db::Postgres];

    /// A new, empty database of this kind for service `name`: `<dir>/<name>.db`, or a
    /// fresh PostgreSQL database.
    pub async fn url(self, dir: &std::path::Path, name: &str) -> String {
        match self {
            Db::Sqlite => {
                let dir = std::path::absolute(dir).expect("an absolute test directory");
                format!(
                    "sqlite://{}?mode=rwc",
                    dir.join(format!("{name}.db")).display()
                )
            }
            Db::Postgres => postgres_database().await,
        }
    }
}
