//! Group commit on a fjall database: one writer thread takes every write waiting (up to a
//! batch), applies them in one transaction and makes it durable with one fsync, then
//! answers each. Concurrent writers share fsyncs, which is what makes a durable write per
//! request affordable. The push service's embedded store and the hub's embedded store both
//! write through it; what an operation does is theirs ([`Apply`]).
//!
//! A failing operation is answered with its error and the batch is applied again without
//! it; a failed commit fails every operation of the batch and breaks the writer: a journal
//! that could not be written or synced cannot be trusted to hold later writes (fjall refuses
//! them), so from then on every write fails at once with the reason ([`Writer::broken`]),
//! which the stores report to `/health`, until the process is restarted.

use fjall::{PersistMode, SingleWriterTxDatabase};
use std::sync::{Arc, OnceLock};
use tokio::sync::{mpsc, oneshot};

/// A write transaction of the writer thread.
pub type Tx<'a> = fjall::SingleWriterWriteTx<'a>;

/// The writer takes no more writes: its thread ended, or a commit failed and broke it. A
/// store turns this into its own error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Stopped(String);

impl Stopped {
    fn ended() -> Self {
        Self("the database's writer has stopped".into())
    }
}

/// What a store's writer does with its operations.
pub trait Apply: Send + 'static {
    /// The store's keyspaces, database included, shared with its readers.
    type Keyspaces: Send + Sync + 'static;
    /// An operation.
    type Op: Send + 'static;
    /// What an operation answers.
    type Value: Send + 'static;
    /// The store's error.
    type Error: Clone + std::fmt::Display + Send + 'static + From<fjall::Error> + From<Stopped>;

    /// The database the keyspaces are in.
    fn database(keyspaces: &Self::Keyspaces) -> &SingleWriterTxDatabase;

    /// Called when a batch's transaction begins (again, after a rollback).
    fn begin(&mut self) {}

    /// Applies one operation inside the batch's transaction. It may run more than once for
    /// the same operation (when another of the batch fails), so it must only read and write
    /// through `tx` and state that [`Apply::rolled_back`] restores.
    fn apply(
        &mut self,
        keyspaces: &Self::Keyspaces,
        tx: &mut Tx<'_>,
        op: &Self::Op,
    ) -> Result<Self::Value, Self::Error>;

    /// Called once every operation of a batch applied, before the commit.
    fn before_commit(&mut self, _keyspaces: &Self::Keyspaces, _tx: &mut Tx<'_>) {}

    /// Called when a batch's transaction is dropped (an operation failed, or the commit did).
    fn rolled_back(&mut self) {}
}

/// An operation and where its answer goes once it is durable.
struct Job<A: Apply> {
    op: A::Op,
    reply: oneshot::Sender<Result<A::Value, A::Error>>,
}

/// The sending side of a writer thread. Cheap to clone.
pub struct Writer<A: Apply> {
    queue: mpsc::Sender<Job<A>>,
    /// Why the writer broke, once a commit failed.
    broken: Arc<OnceLock<String>>,
}

impl<A: Apply> Clone for Writer<A> {
    fn clone(&self) -> Self {
        Self { queue: self.queue.clone(), broken: self.broken.clone() }
    }
}

impl<A: Apply> Writer<A> {
    /// Starts the writer thread `name`, committing batches of up to `max_batch` operations;
    /// up to `queue` more wait. It ends when every `Writer` is dropped.
    pub fn spawn(
        name: &str,
        keyspaces: Arc<A::Keyspaces>,
        applier: A,
        max_batch: usize,
        queue: usize,
    ) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::channel(queue);
        let broken = Arc::new(OnceLock::new());
        let writer_broken = broken.clone();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || run::<A>(&keyspaces, applier, receiver, max_batch, &writer_broken))?;
        Ok(Self { queue: sender, broken })
    }

    /// Why the writer takes no more writes, once a commit failed (then every write fails at
    /// once with this reason until the process restarts).
    pub fn broken(&self) -> Option<&str> {
        self.broken.get().map(String::as_str)
    }

    /// Applies `op` in the next group commit and answers once it is durable.
    pub async fn write(&self, op: A::Op) -> Result<A::Value, A::Error> {
        let (reply, answer) = oneshot::channel();
        self.queue.send(Job { op, reply }).await.map_err(|_| Stopped::ended())?;
        answer.await.map_err(|_| Stopped::ended())?
    }

    /// Like [`Writer::write`], but `None` at once when the queue is full, for callers that
    /// would rather refuse (and have the client retry) than wait behind a backlog.
    pub async fn try_write(&self, op: A::Op) -> Option<Result<A::Value, A::Error>> {
        let (reply, answer) = oneshot::channel();
        match self.queue.try_send(Job { op, reply }) {
            Ok(()) => Some(answer.await.map_err(|_| Stopped::ended().into()).and_then(|answer| answer)),
            Err(mpsc::error::TrySendError::Full(_)) => None,
            Err(mpsc::error::TrySendError::Closed(_)) => Some(Err(Stopped::ended().into())),
        }
    }

    /// Whether the writer thread has ended.
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }
}

/// Waits for the first item of the next batch, then takes whatever else is already waiting,
/// up to `max`: the group in group commit. `false` once the queue has closed.
fn next_batch<T>(queue: &mut mpsc::Receiver<T>, batch: &mut Vec<T>, max: usize) -> bool {
    let Some(first) = queue.blocking_recv() else { return false };
    batch.push(first);
    while batch.len() < max {
        match queue.try_recv() {
            Ok(item) => batch.push(item),
            Err(_) => break,
        }
    }
    true
}

fn run<A: Apply>(
    keyspaces: &A::Keyspaces,
    mut applier: A,
    mut queue: mpsc::Receiver<Job<A>>,
    max_batch: usize,
    broken: &OnceLock<String>,
) {
    let mut batch = Vec::with_capacity(max_batch);
    while next_batch(&mut queue, &mut batch, max_batch) {
        match broken.get() {
            Some(reason) => {
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(Stopped(reason.clone()).into()));
                }
            }
            None => commit(keyspaces, &mut applier, &mut batch, broken),
        }
    }
}

/// Applies a batch in one transaction and answers every operation once it is durable.
fn commit<A: Apply>(
    keyspaces: &A::Keyspaces,
    applier: &mut A,
    batch: &mut Vec<Job<A>>,
    broken: &OnceLock<String>,
) {
    while !batch.is_empty() {
        let mut tx = A::database(keyspaces).write_tx().durability(Some(PersistMode::SyncAll));
        applier.begin();
        let mut values = Vec::with_capacity(batch.len());
        let mut failed = None;
        for (i, job) in batch.iter().enumerate() {
            match applier.apply(keyspaces, &mut tx, &job.op) {
                Ok(value) => values.push(value),
                Err(e) => {
                    failed = Some((i, e));
                    break;
                }
            }
        }
        if let Some((i, e)) = failed {
            tx.rollback();
            applier.rolled_back();
            tracing::error!(error = %e, "a storage operation failed");
            let _ = batch.remove(i).reply.send(Err(e));
            continue;
        }
        applier.before_commit(keyspaces, &mut tx);
        match tx.commit() {
            Ok(()) => {
                for (job, value) in batch.drain(..).zip(values) {
                    let _ = job.reply.send(Ok(value));
                }
            }
            Err(e) => {
                applier.rolled_back();
                let e = A::Error::from(e);
                let reason = format!("the database refused a commit and takes no more writes: {e}");
                tracing::error!(
                    error = %e,
                    "the database refused a commit (a full or failing disk?): every write now fails \
                     and /health answers 503; free space or fix the disk, then restart (everything \
                     committed before is safe)"
                );
                let _ = broken.set(reason);
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreError;
    use std::sync::Mutex;
    use std::time::Duration;

    /// A database and a gate each operation waits at, so that the test decides when the
    /// writer thread moves on.
    struct Gated {
        db: SingleWriterTxDatabase,
        gate: Mutex<std::sync::mpsc::Receiver<()>>,
    }

    struct WaitAtGate;

    impl Apply for WaitAtGate {
        type Keyspaces = Gated;
        type Op = ();
        type Value = ();
        type Error = StoreError;

        fn database(keyspaces: &Gated) -> &SingleWriterTxDatabase {
            &keyspaces.db
        }

        fn apply(&mut self, keyspaces: &Gated, _tx: &mut Tx<'_>, _op: &()) -> Result<(), StoreError> {
            let _ = keyspaces.gate.lock().unwrap().recv();
            Ok(())
        }
    }

    /// With the writer busy and its queue full, `try_write` refuses at once (where `write`
    /// would wait), and what was queued is still applied.
    #[tokio::test]
    async fn try_write_refuses_when_the_queue_is_full() {
        let dir = std::env::temp_dir().join(format!("tidings-group-commit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let db = crate::embedded::open_database(&dir, "test").unwrap();
        let (open, gate) = std::sync::mpsc::channel();
        let gated = Arc::new(Gated { db, gate: Mutex::new(gate) });
        let writer = Writer::spawn("test-writer", gated, WaitAtGate, 1, 1).unwrap();
        let busy = tokio::spawn({
            let writer = writer.clone();
            async move { writer.write(()).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let queued = tokio::spawn({
            let writer = writer.clone();
            async move { writer.try_write(()).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(writer.try_write(()).await.is_none(), "a full queue refuses");
        open.send(()).unwrap();
        open.send(()).unwrap();
        assert!(busy.await.unwrap().is_ok());
        assert!(matches!(queued.await.unwrap(), Some(Ok(()))));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
