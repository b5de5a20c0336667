//! The store: one redb file holding every message, account, webhook, delivery and the
//! time-ordered queues, and the only module that knows their layout (see `docs/storage.md`).
//!
//! Writes have exactly one way in: [`Store::write`] hands a closure to the writer task, a
//! dedicated thread that takes every request waiting in its channel, runs them all inside
//! one write transaction and commits once with `Durability::Immediate` (group commit). redb
//! allows one write transaction at a time anyway; funnelling them through one thread turns
//! that limit into an advantage, because N callers waiting on the disk share one fsync
//! instead of queueing for N. A caller is answered only after the commit, which is what
//! makes a `201` a promise (invariant 1), and a status change and its webhook deliveries are
//! written by the same closure, so they commit or vanish together (invariant 2).
//!
//! Reads open their own MVCC read transaction on a blocking thread and never wait for the
//! writer.

mod deliveries;
mod ops;
mod reads;
mod tables;
mod writer;

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadTransaction, ReadableDatabase};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::clock::SharedClock;

pub use deliveries::{AttemptOutcome, DueDelivery, DueScan};
pub use ops::{
    ChargeOutcome, CreateSms, Created, IdempotencyKey, ReceiptOutcome, SegmentOutcome,
    WebhookChange,
};
pub use reads::{DueJob, MessageFilter, Page};
pub use tables::SCHEMA_VERSION;
pub use writer::{Batching, Tx};

/// Why the store could not do what was asked.
#[derive(Debug)]
pub enum StoreError {
    /// The disk is full: the write was rolled back and can be retried once space is freed.
    Full,
    /// The store is shutting down or its writer stopped.
    Closed,
    /// A record could not be decoded: a bug or a damaged file.
    Corrupt(String),
    /// Any other failure of redb or of the disk.
    Storage(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Full => write!(f, "store: the disk is full"),
            StoreError::Closed => write!(f, "store: closed"),
            StoreError::Corrupt(m) => write!(f, "store: corrupt record: {m}"),
            StoreError::Storage(m) => write!(f, "store: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        if let redb::Error::Io(io) = &e
            && (io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(28))
        {
            return StoreError::Full;
        }
        StoreError::Storage(e.to_string())
    }
}

macro_rules! redb_errors_into_store {
    ($($t:ty),*) => {
        $(impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::from(redb::Error::from(e))
            }
        })*
    };
}
redb_errors_into_store!(
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::DatabaseError
);

/// A range of keys of a time-ordered queue: (due ms, id).
type QueueRange<'a> = (
    std::ops::Bound<(u64, &'a str)>,
    std::ops::Bound<(u64, &'a str)>,
);

/// The keys of a time-ordered queue (jobs, due) after the cursor `after`: all of them
/// when there is no cursor yet.
fn after_key(after: &Option<(u64, String)>) -> QueueRange<'_> {
    let lower = match after {
        Some((ms, id)) => std::ops::Bound::Excluded((*ms, id.as_str())),
        None => std::ops::Bound::Unbounded,
    };
    (lower, std::ops::Bound::Unbounded)
}

/// Moves a queue-scan cursor back so that the next scan starts at `floor` (the earliest
/// due time written since the last scan, from [`Wakers`]) when that is behind it.
pub fn step_back(cursor: Option<(u64, String)>, floor: Option<u64>) -> Option<(u64, String)> {
    match (cursor, floor) {
        (Some((at, _)), Some(floor)) if floor <= at => Some((floor, String::new())),
        (cursor, _) => cursor,
    }
}

/// Takes work that a commit just wrote straight to the loop that does it; returns what it
/// did not take. Called on the writer thread after the commit, so it must not block.
pub type Handoff<T> = Box<dyn Fn(Vec<T>) -> Vec<T> + Send + Sync>;

/// Wakes the loops that wait on the store's queues when a commit added work to them, and
/// tells them the earliest due time written since they last asked, so that a scan reading
/// from a cursor can step back when something was written behind it.
///
/// New messages and new deliveries are first offered to the processor and to the webhook
/// engine through the hand-offs, with the records the commit wrote: what they take they run
/// without reading it back, and without a scan of the queue. What they refuse (their
/// memory is full, or older entries still wait) only moves the floor, and is read from
/// the table like any other entry.
/// The tables stay the one truth: a hand-off is lost with the process, the entry is not.
pub struct Wakers {
    /// A processing job was added or moved.
    pub jobs: Notify,
    /// A webhook delivery was queued or moved in the due table.
    pub due: Notify,
    jobs_floor: std::sync::atomic::AtomicU64,
    due_floor: std::sync::atomic::AtomicU64,
    jobs_handoff: std::sync::OnceLock<Handoff<DueJob>>,
    due_handoff: std::sync::OnceLock<Handoff<DueDelivery>>,
}

impl Default for Wakers {
    fn default() -> Self {
        Wakers {
            jobs: Notify::new(),
            due: Notify::new(),
            jobs_floor: std::sync::atomic::AtomicU64::new(u64::MAX),
            due_floor: std::sync::atomic::AtomicU64::new(u64::MAX),
            jobs_handoff: std::sync::OnceLock::new(),
            due_handoff: std::sync::OnceLock::new(),
        }
    }
}

impl Wakers {
    /// The earliest due time of a job written since the last call, if any.
    pub fn take_jobs_floor(&self) -> Option<u64> {
        let v = self
            .jobs_floor
            .swap(u64::MAX, std::sync::atomic::Ordering::SeqCst);
        (v != u64::MAX).then_some(v)
    }

    /// The earliest due time of a delivery written since the last call, if any.
    pub fn take_due_floor(&self) -> Option<u64> {
        let v = self
            .due_floor
            .swap(u64::MAX, std::sync::atomic::Ordering::SeqCst);
        (v != u64::MAX).then_some(v)
    }

    /// Where the submit jobs of new messages go after their commit (the processor). Set
    /// once; a second call is ignored.
    pub fn set_jobs_handoff(&self, handoff: Handoff<DueJob>) {
        let _ = self.jobs_handoff.set(handoff);
    }

    /// Where new deliveries go after their commit (the webhook engine). Set once.
    pub fn set_due_handoff(&self, handoff: Handoff<DueDelivery>) {
        let _ = self.due_handoff.set(handoff);
    }

    /// Offers fresh jobs; returns the earliest due time of those refused.
    fn offer_jobs(&self, jobs: Vec<DueJob>) -> Option<u64> {
        offer(&self.jobs_handoff, jobs, |j| j.due_ms)
    }

    /// Offers fresh deliveries; returns the earliest due time of those refused.
    fn offer_deliveries(&self, deliveries: Vec<DueDelivery>) -> Option<u64> {
        offer(&self.due_handoff, deliveries, |d| d.due_ms)
    }
}

/// Offers `fresh` to `handoff` when one is set; returns the earliest due time of what it
/// refused (all of it when none is set).
fn offer<T>(
    handoff: &std::sync::OnceLock<Handoff<T>>,
    fresh: Vec<T>,
    due_ms: impl Fn(&T) -> u64,
) -> Option<u64> {
    let left = match handoff.get() {
        Some(take) if !fresh.is_empty() => take(fresh),
        _ => fresh,
    };
    left.iter().map(due_ms).min()
}

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    writer: mpsc::Sender<writer::Op>,
    wakers: Arc<Wakers>,
    clock: SharedClock,
    keys: Arc<KeyCache>,
}

/// API keys already read, so that authenticating a request costs no read transaction.
///
/// Only this process writes keys, and every revocation goes through
/// [`Store::revoke_key`], which forgets the key after its commit. The generation counter
/// closes the one race: a reader that read a key before the revocation committed must not
/// put it back after it was forgotten.
#[derive(Default)]
struct KeyCache {
    generation: std::sync::atomic::AtomicU64,
    keys: std::sync::RwLock<std::collections::HashMap<String, crate::model::ApiKey>>,
}

/// The writer thread, joined when the daemon stops.
pub struct WriterThread(std::thread::JoinHandle<()>);

impl WriterThread {
    /// Waits until the writer has committed its last batch and closed the file. Blocks.
    pub fn join(self) {
        let _ = self.0.join();
    }
}

/// How many write requests may wait for the writer before callers wait to send.
const WRITE_QUEUE: usize = 16 * 1024;

impl Store {
    /// Opens (or creates) the redb file and starts the writer thread. Blocks.
    ///
    /// The writer stops once every `Store` handle is dropped; join the returned thread to
    /// know the file is closed.
    pub fn open(
        path: &Path,
        cache_bytes: usize,
        batching: Batching,
        clock: SharedClock,
    ) -> Result<(Store, WriterThread), StoreError> {
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)?;
        let db = Arc::new(db);
        tables::prepare(&db)?;

        let (sender, receiver) = mpsc::channel(WRITE_QUEUE);
        let wakers = Arc::new(Wakers::default());
        let thread = writer::spawn(
            db.clone(),
            receiver,
            batching,
            wakers.clone(),
            clock.clone(),
        )
        .map_err(|e| StoreError::Storage(format!("cannot start the writer thread: {e}")))?;
        let store = Store {
            db,
            writer: sender,
            wakers,
            clock,
            keys: Arc::default(),
        };
        Ok((store, WriterThread(thread)))
    }

    /// Runs `op` inside the next group-committed write transaction and returns its result
    /// once the transaction is durable.
    ///
    /// `op` must check before it writes: returning `Err` rolls back the whole batch it was
    /// grouped with, so logical refusals belong in `R`, and `Err` is for storage faults.
    pub async fn write<R, F>(&self, op: F) -> Result<R, StoreError>
    where
        F: FnOnce(&mut Tx<'_>) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let op: writer::Op = Box::new(move |tx: &mut Tx<'_>| {
            let result = op(tx);
            let failed = result.is_err();
            let complete: writer::Completion = Box::new(move |commit| {
                let _ = reply.send(match result {
                    Ok(r) => commit.map(|()| r),
                    Err(e) => Err(e),
                });
            });
            (failed, complete)
        });
        self.writer.send(op).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` in a read transaction on a blocking thread.
    pub async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&ReadTransaction) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read()?;
            f(&txn)
        })
        .await
        .map_err(|e| StoreError::Storage(format!("read task failed: {e}")))?
    }

    /// The API key with this id, revoked or not, from memory when it was read before.
    pub async fn api_key_cached(
        &self,
        key_id: String,
    ) -> Result<Option<crate::model::ApiKey>, StoreError> {
        use std::sync::atomic::Ordering;
        if let Some(k) = self
            .keys
            .keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key_id)
        {
            return Ok(Some(k.clone()));
        }
        let generation = self.keys.generation.load(Ordering::SeqCst);
        let found = self.api_key(key_id.clone()).await?;
        if let Some(key) = &found {
            let mut keys = self.keys.keys.write().unwrap_or_else(|p| p.into_inner());
            if self.keys.generation.load(Ordering::SeqCst) == generation {
                keys.insert(key_id, key.clone());
            }
        }
        Ok(found)
    }

    /// Revokes a key and forgets it from memory once the revocation is durable; `false`
    /// if there is no such key.
    pub async fn revoke_key(&self, key_id: String) -> Result<bool, StoreError> {
        use std::sync::atomic::Ordering;
        let id = key_id.clone();
        let revoked = self.write(move |tx| tx.revoke_key(&id)).await?;
        let mut keys = self.keys.keys.write().unwrap_or_else(|p| p.into_inner());
        self.keys.generation.fetch_add(1, Ordering::SeqCst);
        keys.remove(&key_id);
        Ok(revoked)
    }

    /// The notifications the writer sends after commits.
    pub fn wakers(&self) -> &Arc<Wakers> {
        &self.wakers
    }

    /// The clock the store stamps records with.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }
}
