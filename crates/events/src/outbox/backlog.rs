//! The outbox's backlog as metrics, reported whatever the relay's round is doing (a
//! round waits on the broker while it is away), and a warning while rows wait too
//! long.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::table::Outbox;
use crate::db::{Database, now_micros};

/// How often a relay reports the outbox's backlog.
const BACKLOG_EVERY: Duration = Duration::from_secs(1);
/// How long rows may wait unsent before a relay warns that events do not flow.
const STALL_AFTER: Duration = Duration::from_secs(5);

/// Reports the backlog every [`BACKLOG_EVERY`] until `shutdown`: `outbox_backlog`
/// (unsent rows) and `outbox_oldest_unsent_seconds`, and a warning while rows have
/// waited longer than [`STALL_AFTER`] (again every 30 s while it lasts), an all-clear
/// once they flow.
pub(super) async fn report_backlog(db: Database, shutdown: CancellationToken) {
    let mut warned: Option<std::time::Instant> = None;
    loop {
        match Outbox::waiting(&db).await {
            Ok((rows, oldest)) => {
                let age = oldest.map_or(0.0, |at| (now_micros() - at).max(0) as f64 / 1e6);
                metrics::gauge!("outbox_backlog").set(rows as f64);
                metrics::gauge!("outbox_oldest_unsent_seconds").set(age);
                if age >= STALL_AFTER.as_secs_f64() {
                    if warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(30)) {
                        tracing::warn!(
                            rows,
                            oldest_seconds = age.round(),
                            "outbox rows are waiting to be published: is the broker reachable?"
                        );
                        warned = Some(std::time::Instant::now());
                    }
                } else if warned.take().is_some() {
                    tracing::info!(rows, "outbox rows are being published again");
                }
            }
            Err(e) => tracing::debug!(error = %e, "reading the outbox backlog failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(BACKLOG_EVERY) => {}
        }
    }
}
