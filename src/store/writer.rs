//! The writer task: the one place that opens write transactions (see the store's module
//! doc for why there is exactly one).
//!
//! A batch is everything that queued while the previous commit was on the disk. Under load
//! the writer also waits a little before committing (`[store] commit_delay_us`, the idea of
//! PostgreSQL's `commit_delay`): a commit costs about the same CPU whether it carries 40
//! requests or 200 (the dirty pages of every table it touches are written and synced), and
//! the daemon is CPU-bound on a small machine long before the disk is. The wait applies only
//! when the previous batch was busy (at least [`BUSY_BATCH`] requests) and the new one is
//! still small, so requests on a quiet daemon are never delayed. A wait that gathered
//! nothing skips the next [`SKIP_AFTER_IDLE_WAIT`] waits. The wait is latency all the same:
//! a few clients that each wait for their answer before the next request lose throughput
//! to it (1 ms cost 16 of them a third), which is why the default is short (250 µs, within
//! the noise for them; BENCHMARKS.md has the figures).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redb::{Database, Durability, Table, WriteTransaction};
use tokio::sync::mpsc;

use super::tables::*;
use super::{DueDelivery, DueJob, StoreError, Wakers};
use crate::clock::SharedClock;
use crate::model::Webhook;

/// Tells a caller how its transaction ended; called after the commit (or the rollback).
pub type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// One caller's work: runs inside the batch's transaction and says whether it failed.
pub type Op = Box<dyn FnOnce(&mut Tx<'_>) -> (bool, Completion) + Send>;

/// Accounts whose webhooks the cache holds at most; past that it starts again empty.
const HOOK_CACHE_ACCOUNTS: usize = 10_000;

/// Each account's webhooks as the writer last read them, kept across batches: every status
/// change needs them, and only the writer changes them. An operation that changes an
/// account's webhooks forgets its entry first (a later read in the same batch sees the
/// change), and a batch that rolls back empties the cache, since what it read may never
/// have been committed.
#[derive(Default)]
pub(super) struct HookCache(HashMap<String, Arc<[Arc<Webhook>]>>);

impl HookCache {
    pub(super) fn get(&self, account_id: &str) -> Option<Arc<[Arc<Webhook>]>> {
        self.0.get(account_id).cloned()
    }

    pub(super) fn keep(&mut self, account_id: &str, hooks: Arc<[Arc<Webhook>]>) {
        if self.0.len() >= HOOK_CACHE_ACCOUNTS {
            self.0.clear();
        }
        self.0.insert(account_id.to_string(), hooks);
    }

    pub(super) fn forget(&mut self, account_id: &str) {
        self.0.remove(account_id);
    }
}

/// The open write transaction as the operations see it: every table, opened once per batch,
/// and what the commit must wake.
pub struct Tx<'t> {
    /// The time of this batch, for records' timestamps and due times.
    pub now_ms: u64,
    pub(super) accounts: Table<'t, &'static str, &'static [u8]>,
    pub(super) api_keys: Table<'t, &'static str, &'static [u8]>,
    pub(super) messages: Table<'t, &'static str, &'static [u8]>,
    pub(super) account_messages: Table<'t, (&'static str, &'static str), ()>,
    pub(super) provider_ids: Table<'t, (&'static str, &'static str), (&'static str, u32)>,
    pub(super) jobs: Table<'t, (u64, &'static str), &'static [u8]>,
    pub(super) webhooks: Table<'t, &'static str, &'static [u8]>,
    pub(super) account_webhooks: Table<'t, (&'static str, &'static str), ()>,
    pub(super) deliveries: Table<'t, &'static str, &'static [u8]>,
    pub(super) webhook_deliveries: Table<'t, (&'static str, &'static str), ()>,
    pub(super) due: Table<'t, (u64, &'static str), ()>,
    pub(super) attempts: Table<'t, (&'static str, u32), &'static [u8]>,
    pub(super) idempotency: Table<'t, (&'static str, &'static str), &'static [u8]>,
    /// The earliest due time of a job added or moved, so the processor looks again.
    pub(super) jobs_changed: Option<u64>,
    /// The earliest due time of a delivery queued or moved, so the scheduler looks again.
    pub(super) due_changed: Option<u64>,
    /// Submit jobs of messages created in this batch, offered to the processor after the
    /// commit (see [`Wakers`]).
    pub(super) fresh_jobs: Vec<DueJob>,
    /// Deliveries created in this batch, offered to the webhook engine after the commit.
    pub(super) fresh_deliveries: Vec<DueDelivery>,
    /// The writer's webhooks by account (see [`HookCache`]).
    pub(super) hooks: &'t mut HookCache,
}

impl Tx<'_> {
    pub(super) fn job_queued(&mut self, due_ms: u64) {
        self.jobs_changed = min_option(self.jobs_changed, Some(due_ms));
    }

    pub(super) fn delivery_queued(&mut self, due_ms: u64) {
        self.due_changed = min_option(self.due_changed, Some(due_ms));
    }
}

impl<'t> Tx<'t> {
    fn open(
        txn: &'t WriteTransaction,
        now_ms: u64,
        hooks: &'t mut HookCache,
    ) -> Result<Self, StoreError> {
        Ok(Tx {
            now_ms,
            accounts: txn.open_table(ACCOUNTS)?,
            api_keys: txn.open_table(API_KEYS)?,
            messages: txn.open_table(MESSAGES)?,
            account_messages: txn.open_table(ACCOUNT_MESSAGES)?,
            provider_ids: txn.open_table(PROVIDER_IDS)?,
            jobs: txn.open_table(JOBS)?,
            webhooks: txn.open_table(WEBHOOKS)?,
            account_webhooks: txn.open_table(ACCOUNT_WEBHOOKS)?,
            deliveries: txn.open_table(DELIVERIES)?,
            webhook_deliveries: txn.open_table(WEBHOOK_DELIVERIES)?,
            due: txn.open_table(DUE)?,
            attempts: txn.open_table(ATTEMPTS)?,
            idempotency: txn.open_table(IDEMPOTENCY)?,
            jobs_changed: None,
            due_changed: None,
            fresh_jobs: Vec::new(),
            fresh_deliveries: Vec::new(),
            hooks,
        })
    }
}

/// A previous batch at least this large means the daemon is busy: the next one may wait.
const BUSY_BATCH: usize = 16;
/// A batch this large is not held back: the wait would gain little and cost latency.
const FULL_ENOUGH: usize = 256;
/// How many busy batches commit without a wait after a wait that gathered nothing.
const SKIP_AFTER_IDLE_WAIT: u32 = 8;

/// How the writer groups requests into transactions.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Most requests in one transaction; `1` commits each on its own.
    pub max: usize,
    /// How long a small batch waits for more while the daemon is busy; zero never waits.
    pub delay: Duration,
}

/// Starts the writer thread.
pub fn spawn(
    db: Arc<Database>,
    receiver: mpsc::Receiver<Op>,
    batching: Batching,
    wakers: Arc<Wakers>,
    clock: SharedClock,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("smswire-writer".into())
        .spawn(move || run(&db, receiver, batching, &wakers, &clock))
}

/// Moves what is waiting in the channel into `batch`, up to `max` in all.
fn drain(receiver: &mut mpsc::Receiver<Op>, batch: &mut Vec<Op>, max: usize) {
    while batch.len() < max {
        match receiver.try_recv() {
            Ok(op) => batch.push(op),
            Err(_) => break,
        }
    }
}

fn run(
    db: &Database,
    mut receiver: mpsc::Receiver<Op>,
    batching: Batching,
    wakers: &Wakers,
    clock: &SharedClock,
) {
    let Batching { max, delay } = batching;
    let mut batch: Vec<Op> = Vec::with_capacity(max);
    let mut hooks = HookCache::default();
    // Batch times never go back, even if the clock does: the queues' keys must grow in
    // commit order for the scans that read them from a cursor.
    let mut last_now = 0;
    let mut last_size = 0;
    let mut skip_waits = 0;
    while let Some(first) = receiver.blocking_recv() {
        // Everything that queued while the previous commit was on the disk shares this one.
        batch.push(first);
        drain(&mut receiver, &mut batch, max);
        if !delay.is_zero() && last_size >= BUSY_BATCH && batch.len() < FULL_ENOUGH.min(max) {
            if skip_waits > 0 {
                skip_waits -= 1;
            } else {
                let before = batch.len();
                std::thread::sleep(delay);
                drain(&mut receiver, &mut batch, max);
                // A wait that gathered nothing means every caller was already in the batch
                // (a few clients, each waiting for its answer): the next ones would too.
                if batch.len() == before {
                    skip_waits = SKIP_AFTER_IDLE_WAIT;
                }
            }
        }

        let size = batch.len();
        last_size = size;
        last_now = clock.now_ms().max(last_now);
        let changed = commit_batch(db, batch.drain(..), last_now, &mut hooks);
        tracing::trace!(size, "write batch committed");
        // Offered after the commit: the loops may act on them at once. What they refuse is
        // found by their next scan, which starts no later than its due time.
        let jobs = min_option(changed.jobs, wakers.offer_jobs(changed.fresh_jobs));
        let due = min_option(
            changed.due,
            wakers.offer_deliveries(changed.fresh_deliveries),
        );
        if let Some(earliest) = jobs {
            wakers.jobs_floor.fetch_min(earliest, Ordering::SeqCst);
            wakers.jobs.notify_one();
        }
        if let Some(earliest) = due {
            wakers.due_floor.fetch_min(earliest, Ordering::SeqCst);
            wakers.due.notify_one();
        }
    }
    tracing::debug!("writer stopped: every store handle is gone");
}

fn min_option(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Which queues a committed batch changed, the earliest due time it wrote in each, and the
/// new work to offer to the loops (empty when the batch rolled back).
#[derive(Default)]
struct Changed {
    jobs: Option<u64>,
    due: Option<u64>,
    fresh_jobs: Vec<DueJob>,
    fresh_deliveries: Vec<DueDelivery>,
}

/// Runs a batch in one transaction; returns which queues it changed.
fn commit_batch(
    db: &Database,
    batch: impl Iterator<Item = Op>,
    now_ms: u64,
    hooks: &mut HookCache,
) -> Changed {
    let mut completions = Vec::new();
    let outcome = (|| {
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| StoreError::Storage(e.to_string()))?;
        let mut any_failed = false;
        let changed;
        {
            let mut tx = Tx::open(&txn, now_ms, hooks)?;
            for op in batch {
                let (failed, complete) = op(&mut tx);
                any_failed |= failed;
                completions.push(complete);
            }
            changed = Changed {
                jobs: tx.jobs_changed,
                due: tx.due_changed,
                fresh_jobs: std::mem::take(&mut tx.fresh_jobs),
                fresh_deliveries: std::mem::take(&mut tx.fresh_deliveries),
            };
        }
        if any_failed {
            txn.abort()?;
            return Err(StoreError::Storage(
                "a write grouped with this one failed; nothing was written".into(),
            ));
        }
        txn.commit()?;
        Ok(changed)
    })();

    if let Err(e) = &outcome {
        tracing::error!(error = %e, ops = completions.len(), "write batch rolled back");
        *hooks = HookCache::default();
    }
    for complete in completions {
        complete(match &outcome {
            Ok(_) => Ok(()),
            Err(StoreError::Full) => Err(StoreError::Full),
            Err(StoreError::Closed) => Err(StoreError::Closed),
            Err(e) => Err(StoreError::Storage(e.to_string())),
        });
    }
    outcome.unwrap_or_default()
}
