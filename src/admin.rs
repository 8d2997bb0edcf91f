//! `weft admin`: the operator's role tool. It writes through the user service's
//! database with the user service's own code (`weft_user::admin`): one transaction
//! per change with its audit row and `UserRolesChanged` event, which the running
//! service's relay publishes.

use anyhow::Context as _;
use weft_auth::Role;
use weft_user::admin::{self, Change};

use crate::cli::{AdminCommand, DbArgs};

async fn open(db: &DbArgs) -> anyhow::Result<weft_events::Database> {
    if db.database_url.is_none() && !db.data_dir.join("user.db").is_file() {
        anyhow::bail!(
            "no user database at {}; name the mesh's --data-dir, or --database-url for PostgreSQL",
            db.data_dir.join("user.db").display()
        );
    }
    weft_events::db::open_service_db(
        db.database_url.as_deref(),
        &db.data_dir,
        "user",
        sqlx::migrate!("services/user/migrations/sqlite"),
        sqlx::migrate!("services/user/migrations/postgres"),
    )
    .await
    .context("opening the user database")
}

/// The user database of the mesh in `data_dir` (PostgreSQL when
/// `WEFT_USER_DATABASE_URL` names it), as `weft admin` opens it.
pub async fn open_at(data_dir: &std::path::Path) -> anyhow::Result<weft_events::Database> {
    open(&DbArgs {
        data_dir: data_dir.to_owned(),
        database_url: std::env::var("WEFT_USER_DATABASE_URL").ok(),
    })
    .await
}

fn described(e: weft_user::domain::UserError) -> anyhow::Error {
    use weft_user::domain::UserError;
    match e {
        UserError::NotFound => anyhow::anyhow!("no user has that email address"),
        UserError::Invalid(v) => anyhow::anyhow!(
            "{}",
            v.iter()
                .map(|f| format!("{}: {}", f.field, f.description))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        other => anyhow::anyhow!("{other}"),
    }
}

/// Runs one admin command.
pub async fn run(cmd: AdminCommand) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::Grant(a) | AdminCommand::Revoke(a) if a.role.parse::<Role>().is_err() => {
            anyhow::bail!("{:?} is not a role; use customer, staff or admin", a.role)
        }
        AdminCommand::Grant(a) => change(&a, Change::Grant).await,
        AdminCommand::Revoke(a) => change(&a, Change::Revoke).await,
        AdminCommand::Roles(a) => {
            let db = open(&a.db).await?;
            let roles = admin::roles(&db, &a.email).await.map_err(described)?;
            println!("{}: {}", a.email, roles.join(", "));
            Ok(())
        }
        AdminCommand::Audit(a) => {
            let db = open(&a.db).await?;
            for row in admin::audit(&db, a.limit.clamp(1, 10_000))
                .await
                .map_err(described)?
            {
                let at = chrono::DateTime::from_timestamp_micros(row.changed_at)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default();
                println!(
                    "{:>5}  {at}  {:<6} {:<8} {} ({})  by {}",
                    row.seq, row.action, row.role, row.email, row.user_id, row.actor
                );
            }
            Ok(())
        }
    }
}

async fn change(a: &crate::cli::RoleArgs, change: Change) -> anyhow::Result<()> {
    let role: Role = a.role.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let db = open(&a.db).await?;
    let roles = admin::change(&db, &a.email, role, change, &admin::actor())
        .await
        .map_err(described)?;
    println!(
        "{}: {} (takes effect at the user's next login; tokens live 15 minutes by default)",
        a.email,
        roles.join(", ")
    );
    Ok(())
}
