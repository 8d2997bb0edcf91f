//! What wakes the relay: this process's commits of outbox rows ([`RelayWaker`]), and
//! on PostgreSQL the notifications a trigger sends when any replica commits them.

use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Wakes the relay right after a transaction with outbox rows commits, so events go
/// out without waiting for the next poll.
#[derive(Clone, Default, Debug)]
pub struct RelayWaker(Arc<Notify>);

impl RelayWaker {
    /// Tells the relay there is work.
    pub fn wake(&self) {
        self.0.notify_one();
    }

    /// Commits `tx`, which wrote outbox rows, and wakes the relay for them: what a
    /// command does last.
    pub async fn commit(&self, tx: crate::db::WriteTx) -> Result<(), sqlx::Error> {
        tx.commit().await?;
        self.wake();
        Ok(())
    }

    /// Done when the relay is woken.
    pub(super) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.0.notified()
    }
}

/// The channel on which PostgreSQL announces committed outbox rows (see the
/// `outbox_notify` migration).
const OUTBOX_CHANNEL: &str = "weft_outbox";

/// Wakes the relay whenever a transaction with outbox rows commits on the PostgreSQL
/// server at `url`, in any replica, until `shutdown`. A lost connection is opened
/// again; notifications sent meanwhile are lost, and the relay's poll finds their
/// rows.
pub(super) async fn wake_on_notifications(
    url: String,
    waker: RelayWaker,
    shutdown: CancellationToken,
) {
    let mut failures = 0u32;
    let mut listener: Option<sqlx::postgres::PgListener> = None;
    loop {
        let next = async {
            let l = match listener.as_mut() {
                Some(l) => l,
                None => {
                    let mut l = sqlx::postgres::PgListener::connect(&url).await?;
                    l.listen(OUTBOX_CHANNEL).await?;
                    listener.insert(l)
                }
            };
            l.recv().await
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            received = next => match received {
                Ok(_) => {
                    failures = 0;
                    waker.wake();
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, failures, "listening for outbox rows of other replicas failed; the relay polls meanwhile");
                    listener = None;
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(crate::consumer::backoff(failures)) => {}
                    }
                }
            }
        }
    }
}
