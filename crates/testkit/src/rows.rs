//! A service's tables as a test reads them through the database's pool: how many
//! rows a table holds ([`count_rows`]), and the first column of a query's rows as
//! text ([`texts`]).

use sqlx::AnyPool;

/// How many rows `table` holds.
pub async fn count_rows(pool: &AnyPool, table: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("counting the rows of {table}: {e}"));
    n
}

/// The first column, text, of every row `sql` selects, in its order.
pub async fn texts(pool: &AnyPool, sql: &str) -> Vec<String> {
    let rows: Vec<(String,)> = sqlx::query_as(sql)
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.into_iter().map(|(text,)| text).collect()
}
