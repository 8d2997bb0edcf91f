//! Writes of one kind, handed over by concurrent callers, written by one job with
//! multi-row statements.
//!
//! Group commit ([`Database::write`]) already shares a transaction between callers,
//! but each caller's job still runs its own statements: on SQLite every statement is a
//! round trip to sqlx's worker thread, so a batch of 32 orders of three statements each
//! is 96 of them. A [`Batched`] writer takes every item waiting (up to
//! [`group_commit::MAX_BATCH`]) and hands them to [`WriteMany::write`] at once, as one
//! job of the shared transaction, which writes them with a statement per table.
//!
//! The guarantees are group commit's, per item:
//! - **answered after the commit**: each caller gets its item's result once the
//!   transaction committed;
//! - **all or nothing per item**: when writing the items together fails (one of them
//!   breaks a unique key, say), none of them is kept, and each is written again on
//!   its own (`write` with a slice of one, through group commit), so that item's caller
//!   gets its error and the others are written as if alone;
//! - **cancel-safety**: a caller that stops waiting does not take its item back;
//! - **order**: items are written in the order they were handed over.
//!
//! A failure costs more than it would alone: group commit first runs the failed
//! job once more in a transaction of its own (as it does any failed job), and only
//! then are its items split. Failures are rare (a key used twice at the same moment),
//! so the common case is kept to one job.

use std::sync::Arc;

use futures::future::BoxFuture;
use sqlx::AnyConnection;
use tokio::sync::{mpsc, oneshot};

use crate::db::Database;
use crate::group_commit;

/// How one kind of item is written, many at a time.
pub trait WriteMany: Send + Sync + 'static {
    /// What a caller hands over.
    type Item: Send + Sync + 'static;
    /// What a caller gets back once its item is committed.
    type Out: Send + 'static;
    /// Why writing failed.
    type Error: From<sqlx::Error> + Send + 'static;

    /// Writes `items`, in order, in the transaction of `conn`: one result per item, in
    /// the same order. It may be called again from the start with fewer items, on a
    /// fresh transaction, so it only reads and writes through `conn`.
    fn write<'c>(
        &'c self,
        conn: &'c mut AnyConnection,
        items: &'c [Self::Item],
    ) -> BoxFuture<'c, Result<Vec<Self::Out>, Self::Error>>;
}

type Reply<W> = oneshot::Sender<Result<<W as WriteMany>::Out, <W as WriteMany>::Error>>;

/// The queue of a [`WriteMany`]'s writer task; the task ends when the last clone is
/// dropped.
pub struct Batched<W: WriteMany> {
    queue: mpsc::Sender<(W::Item, Reply<W>)>,
}

impl<W: WriteMany> Clone for Batched<W> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<W: WriteMany> Batched<W> {
    /// Starts the task that writes `many`'s items to `db`.
    pub fn new(db: &Database, many: W) -> Self {
        let (queue, items) = mpsc::channel(group_commit::MAX_BATCH * 4);
        tokio::spawn(run(db.clone(), Arc::new(many), items));
        Self { queue }
    }

    /// Writes `item` together with the items other callers hand over meanwhile, and
    /// answers its result once their transaction committed.
    pub async fn write(&self, item: W::Item) -> Result<W::Out, W::Error> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((item, reply))
            .await
            .map_err(|_| W::Error::from(sqlx::Error::PoolClosed))?;
        answer
            .await
            .map_err(|_| W::Error::from(sqlx::Error::WorkerCrashed))?
    }
}

async fn run<W: WriteMany>(
    db: Database,
    many: Arc<W>,
    mut queue: mpsc::Receiver<(W::Item, Reply<W>)>,
) {
    let mut waiting = Vec::with_capacity(group_commit::MAX_BATCH);
    while queue.recv_many(&mut waiting, group_commit::MAX_BATCH).await > 0 {
        let (items, replies): (Vec<_>, Vec<_>) = waiting.drain(..).unzip();
        let items = Arc::new(items);
        let whole = write(&db, &many, &items, 0..items.len()).await;
        match whole {
            Ok(outs) => {
                for (reply, out) in replies.into_iter().zip(outs) {
                    let _ = reply.send(Ok(out));
                }
            }
            // Written together they failed: each on its own, so that only the item
            // at fault fails. They go through group commit at once, and in order.
            Err(_) if items.len() > 1 => {
                let alone = (0..items.len()).map(|i| write(&db, &many, &items, i..i + 1));
                let results = futures::future::join_all(alone).await;
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result.map(|mut outs| outs.remove(0)));
                }
            }
            Err(e) => {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(e));
                }
            }
        }
    }
}

/// Writes `items[range]` as one job of group commit; exactly one result per item.
async fn write<W: WriteMany>(
    db: &Database,
    many: &Arc<W>,
    items: &Arc<Vec<W::Item>>,
    range: std::ops::Range<usize>,
) -> Result<Vec<W::Out>, W::Error> {
    let (many, items) = (many.clone(), items.clone());
    let expected = range.len();
    db.write(move |conn| {
        let (many, items, range) = (many.clone(), items.clone(), range.clone());
        Box::pin(async move {
            let outs = many.write(conn, &items[range]).await?;
            if outs.len() == expected {
                Ok(outs)
            } else {
                Err(W::Error::from(sqlx::Error::Protocol(format!(
                    "{} results for {expected} items written together",
                    outs.len()
                ))))
            }
        })
    })
    .await
}
