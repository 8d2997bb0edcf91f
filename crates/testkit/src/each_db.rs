//! [`on_each_db!`](crate::on_each_db): a scenario written once as
//! `async fn scenario(db: Db)` and run as two tests, one on SQLite and one on
//! PostgreSQL, named `scenario::on_sqlite` and `scenario::on_postgres`.

/// For each `scenario` named (an `async fn scenario(db: weft_testkit::Db)` in scope),
/// declares a module `scenario` of two tests on tokio's multi-threaded runtime:
/// `on_sqlite` runs it on [`Db::Sqlite`](crate::Db::Sqlite) and `on_postgres` on
/// [`Db::Postgres`](crate::Db::Postgres). A function cannot declare tests; this macro
/// only names them.
#[macro_export]
macro_rules! on_each_db {
    ($($scenario:ident),+ $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() {
                super::$scenario($crate::Db::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() {
                super::$scenario($crate::Db::Postgres).await;
            }
        }
    )+};
}
