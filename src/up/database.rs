//! The database of each service `weft up` starts: its own URL when given, else a
//! database of its own on the shared PostgreSQL server of `--database-url` (created
//! when missing), else SQLite under the data dir.

use std::collections::HashMap;

use anyhow::Context as _;

use crate::cli::UpArgs;

/// The database URL of each service that has one on PostgreSQL, by service name;
/// the others (SQLite) are missing.
pub(super) async fn databases(args: &UpArgs) -> anyhow::Result<HashMap<&'static str, String>> {
    let mut databases = HashMap::new();
    for (service, own_url) in [
        ("user", &args.user_database_url),
        ("order", &args.order_database_url),
        ("notification", &args.notification_database_url),
        ("analytics", &args.analytics_database_url),
    ] {
        if let Some(url) = database_for(&args.database_url, own_url, service).await? {
            databases.insert(service, url);
        }
    }
    Ok(databases)
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
