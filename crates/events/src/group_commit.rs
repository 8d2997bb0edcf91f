//! Group commit: the writes of concurrent callers run in one transaction.
//!
//! [`Database::write`] hands a job (a function of the connection) to the database's
//! writer task, which takes every job waiting (up to [`MAX_BATCH`]), runs them one
//! after the other inside one write transaction, commits once, and only then answers
//! each caller with its job's result. On SQLite a transaction holds the one write
//! lock through every statement's round trip to sqlx's worker thread; sharing it
//! spreads that wait, the `BEGIN` and the `COMMIT` over the whole batch.
//!
//! The guarantees of one transaction per call stay:
//! - **answered after the commit**: a caller gets `Ok` only once its writes are
//!   committed; if the commit fails, every caller of the batch gets the error;
//! - **all or nothing per call**: a job that fails (or asks to run alone) makes the
//!   batch roll back, and then every job of it runs again in a transaction of its
//!   own, so one caller's failure never undoes or blocks another's writes. Jobs
//!   therefore must be safe to run again from the start: they only read and write
//!   through the connection they are given;
//! - **cancel-safety**: a caller that stops waiting (a cancelled RPC) does not stop
//!   its job; it commits or not with its batch, and a retry finds it at most once
//!   (what idempotency keys are for);
//! - **order**: jobs run in the order they were handed over.

use futures::future::BoxFuture;
use sqlx::AnyConnection;
use tokio::sync::{mpsc, oneshot};

use crate::db::{Database, Queued, Writer};

/// The most jobs one transaction carries.
pub const MAX_BATCH: usize = 64;

/// How many jobs may wait for the writer before callers wait to hand theirs over.
const QUEUE: usize = 1024;

struct Pending<T, E, F> {
    job: F,
    result: Option<Result<T, E>>,
    reply: oneshot::Sender<Result<T, E>>,
}

impl<T, E, F> Queued for Pending<T, E, F>
where
    T: Send + 'static,
    E: From<sqlx::Error> + Send + 'static,
    F: for<'c> Fn(&'c mut AnyConnection) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
{
    fn run<'a>(&'a mut self, conn: &'a mut AnyConnection) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let result = (self.job)(conn).await;
            let ok = result.is_ok();
            self.result = Some(result);
            ok
        })
    }

    fn answer(self: Box<Self>, settled: Result<(), sqlx::Error>) {
        let answer = match (settled, self.result) {
            (Ok(()), Some(result)) => result,
            (Err(e), _) => Err(E::from(e)),
            (Ok(()), None) => Err(E::from(sqlx::Error::WorkerCrashed)),
        };
        // A caller that stopped waiting is not told.
        let _ = self.reply.send(answer);
    }
}

impl Database {
    /// Runs `job` in a write transaction, shared with other callers' jobs that wait
    /// at the same time (see the module doc), and answers its result once that
    /// transaction committed. `job` may run more than once (after another job of its
    /// batch failed), each time from the start on a fresh transaction.
    pub async fn write<T, E, F>(&self, job: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<sqlx::Error> + Send + 'static,
        F: for<'c> Fn(&'c mut AnyConnection) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let pending = Box::new(Pending {
            job,
            result: None,
            reply,
        });
        self.writer()
            .send(pending)
            .await
            .map_err(|_| E::from(sqlx::Error::PoolClosed))?;
        answer
            .await
            .map_err(|_| E::from(sqlx::Error::WorkerCrashed))?
    }

    /// The writer task's queue, started on first use.
    fn writer(&self) -> &Writer {
        self.group_commit().get_or_init(|| {
            let (send, receive) = mpsc::channel(QUEUE);
            tokio::spawn(run_writer(self.clone_without_writer(), receive));
            send
        })
    }
}

/// Takes every waiting job, up to [`MAX_BATCH`], and settles them together, until
/// every [`Database`] handle that could send is gone.
async fn run_writer(db: Database, mut jobs: mpsc::Receiver<Box<dyn Queued>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        settle(&db, std::mem::take(&mut batch)).await;
    }
}

async fn settle(db: &Database, mut batch: Vec<Box<dyn Queued>>) {
    let mut tx = match db.begin().await {
        Ok(tx) => tx,
        Err(e) => return answer_all(batch, &e),
    };
    let mut all_ok = true;
    for job in &mut batch {
        if !job.run(&mut tx).await {
            all_ok = false;
            break;
        }
    }
    if all_ok {
        match tx.commit().await {
            Ok(()) => batch.into_iter().for_each(|job| job.answer(Ok(()))),
            Err(e) => answer_all(batch, &e),
        }
        return;
    }
    // One job failed: none of the batch is kept, and each runs alone.
    let _ = tx.rollback().await;
    for mut job in batch {
        let settled = alone(db, job.as_mut()).await;
        job.answer(settled);
    }
}

/// Runs `job` in a transaction of its own: committed when it succeeds, rolled back
/// when it fails (its own error is then its answer).
async fn alone(db: &Database, job: &mut dyn Queued) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    if job.run(&mut tx).await {
        tx.commit().await
    } else {
        tx.rollback().await
    }
}

fn answer_all(batch: Vec<Box<dyn Queued>>, error: &sqlx::Error) {
    let message = format!("the shared write transaction failed: {error}");
    for job in batch {
        job.answer(Err(sqlx::Error::Protocol(message.clone())));
    }
}
