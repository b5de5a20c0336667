//! The processor: takes each accepted message from the jobs table through validation,
//! charging and submission, and turns the provider's receipts into final statuses.
//!
//! It owns no state that matters: everything it decides is written through the store, and
//! what it must do next is always in the jobs table, so a restart resumes where the last
//! commit left off. A new message's submit job is handed over by the writer right after
//! its commit, with the message as committed ([`Processor::offer`]), so the common case
//! reads nothing back; the jobs table is scanned for the rest (retries, receipt deadlines,
//! work refused while the processor was full, and everything after a restart). The one
//! window of doubt (invariant 5): a segment that the provider accepted but whose
//! acceptance was not yet committed when the process died is submitted again after the
//! restart.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::model::{Job, Message};
use crate::provider::{Provider, Receipt, Submit, SubmitOutcome};
use crate::sms::price::PriceTable;
use crate::sms::{number, segments};
use crate::store::{ChargeOutcome, DueJob, ReceiptOutcome, SegmentOutcome, Store, StoreError};

/// Messages processed at once; the provider's own window limits what reaches the SMSC.
const MAX_IN_FLIGHT: usize = 512;
/// Receipts being applied at once.
const MAX_RECEIPTS: usize = 4096;
/// How often the jobs scan starts over from the head of the table.
const RESCAN: Duration = Duration::from_secs(1);
/// How long a job that failed on a storage error waits before it is tried again.
const STORE_RETRY: Duration = Duration::from_secs(1);
/// A receipt for an id not (yet) recorded is tried again this often, this many times: the
/// SMSC may report a segment before the commit of its acceptance has finished.
const UNKNOWN_RECEIPT_RETRY: Duration = Duration::from_millis(200);
const UNKNOWN_RECEIPT_TRIES: u32 = 25;

/// What validating and charging a message came to.
enum Charge {
    /// Charged now: nothing of it was submitted before.
    Charged,
    /// An earlier run charged it: what that run submitted must be read before going on.
    Earlier,
    /// It ended here (invalid number, short balance) or was already final or gone.
    Ended,
}

/// The processor's shared parts.
pub struct Processor {
    store: Store,
    provider: Arc<Provider>,
    clock: SharedClock,
    prices: PriceTable,
    billing: bool,
    receipt_timeout_ms: u64,
    in_flight: Mutex<HashSet<String>>,
    /// Signalled when a job finishes, so the loop can take more.
    done: Notify,
    metrics: Arc<Metrics>,
    /// Jobs of new messages handed over by the writer (see [`Processor::offer`]), already
    /// counted in `in_flight`; the loop starts them.
    handed: mpsc::UnboundedSender<DueJob>,
    handed_rx: Mutex<Option<mpsc::UnboundedReceiver<DueJob>>>,
    /// The last scan left due jobs in the table for want of room: offers are refused until
    /// it catches up, so that new messages do not overtake older ones.
    behind: AtomicBool,
    /// Receipts that came before the commit of their segment's acceptance, by provider id:
    /// applied as soon as that commit is done (see `apply_receipt`).
    early_receipts: Mutex<HashMap<String, Receipt>>,
}

impl Processor {
    /// Builds the processor for `provider`.
    pub fn new(
        store: Store,
        provider: Arc<Provider>,
        config: &Config,
        metrics: Arc<Metrics>,
    ) -> Arc<Processor> {
        let (handed, handed_rx) = mpsc::unbounded_channel();
        Arc::new(Processor {
            handed,
            handed_rx: Mutex::new(Some(handed_rx)),
            behind: AtomicBool::new(false),
            early_receipts: Mutex::new(HashMap::new()),
            clock: store.clock().clone(),
            store,
            provider,
            prices: PriceTable::new(config.billing.default_price, &config.billing.prices),
            billing: config.billing.enabled,
            receipt_timeout_ms: config.sms.receipt_timeout.as_millis() as u64,
            in_flight: Mutex::new(HashSet::new()),
            done: Notify::new(),
            metrics,
        })
    }

    /// Takes the submit jobs of messages whose creation just committed, with the message
    /// as committed, while there is room and no older job waits in the table; returns the
    /// others, which the scan finds there. Runs on the writer thread (see
    /// [`crate::store::Wakers`]): it only reserves the slots and queues the jobs.
    pub fn offer(&self, fresh: Vec<DueJob>) -> Vec<DueJob> {
        if self.behind.load(Ordering::Relaxed) {
            return fresh;
        }
        let mut left = Vec::new();
        let mut in_flight = self.lock_in_flight();
        for job in fresh {
            if in_flight.len() >= MAX_IN_FLIGHT || !in_flight.insert(job.message_id.clone()) {
                left.push(job);
                continue;
            }
            if let Err(mpsc::error::SendError(job)) = self.handed.send(job) {
                // The loop has stopped: the job stays in the table for the next start.
                in_flight.remove(&job.message_id);
            }
        }
        left
    }

    /// Runs due jobs until `shutdown` turns true, then waits for the jobs in flight.
    ///
    /// Jobs are read from a cursor, so a job running for long is not read again and again;
    /// the cursor steps back when a job is written behind it, and every second the scan
    /// starts over from the head of the table, which also picks up the jobs of a retry that
    /// failed on a storage error.
    pub async fn run_jobs(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut tasks = JoinSet::new();
        let mut cursor: Option<(u64, String)> = None;
        let mut last_rescan = std::time::Instant::now();
        let mut scan_now = true;
        let mut wake_at: Option<u64> = None;
        let taken = self
            .handed_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(mut handed) = taken else {
            tracing::error!("the processor loop was started twice");
            return;
        };
        while !*shutdown.borrow() {
            while tasks.try_join_next().is_some() {}
            while let Ok(job) = handed.try_recv() {
                let this = self.clone();
                tasks.spawn(async move { this.run_job(job).await });
            }
            if last_rescan.elapsed() >= RESCAN {
                cursor = None;
                last_rescan = std::time::Instant::now();
                scan_now = true;
            }
            let now = self.clock.now_ms();
            cursor = crate::store::step_back(cursor, self.store.wakers().take_jobs_floor());
            if scan_now || wake_at.is_some_and(|t| t <= now) {
                (cursor, wake_at, scan_now) = self.start_due_jobs(&mut tasks, cursor, now).await;
            }
            if scan_now {
                continue;
            }
            let sleep = wake_at.map_or(RESCAN, |t| {
                Duration::from_millis(t.saturating_sub(self.clock.now_ms())).min(RESCAN)
            });
            tokio::select! {
                Some(job) = handed.recv() => {
                    let this = self.clone();
                    tasks.spawn(async move { this.run_job(job).await });
                }
                _ = self.store.wakers().jobs.notified() => scan_now = true,
                _ = self.done.notified() => scan_now = wake_at.is_some_and(|t| t <= self.clock.now_ms()),
                _ = tokio::time::sleep(sleep) => {}
                _ = shutdown.changed() => {}
            }
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Starts due jobs after `cursor` that are not running yet, up to the limit. Returns
    /// the new cursor, when the next job is due, and whether to look again at once.
    async fn start_due_jobs(
        self: &Arc<Self>,
        tasks: &mut JoinSet<()>,
        cursor: Option<(u64, String)>,
        now: u64,
    ) -> (Option<(u64, String)>, Option<u64>, bool) {
        let running = self.lock_in_flight().len();
        let capacity = MAX_IN_FLIGHT.saturating_sub(running);
        if capacity == 0 {
            // Full: a finishing job wakes the loop, which then looks again at once.
            self.behind.store(true, Ordering::Relaxed);
            return (cursor, Some(now), false);
        }
        // Messages are read with the scan, except for jobs already running.
        let this = self.clone();
        let idle = move |id: &str| !this.lock_in_flight().contains(id);
        let (jobs, next) = match self
            .store
            .due_jobs(cursor.clone(), now, capacity, idle)
            .await
        {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the jobs table");
                return (cursor, Some(now + STORE_RETRY.as_millis() as u64), false);
            }
        };
        let mut cursor = cursor;
        for job in jobs {
            cursor = Some((job.due_ms, job.message_id.clone()));
            if self.lock_in_flight().insert(job.message_id.clone()) {
                let this = self.clone();
                tasks.spawn(async move { this.run_job(job).await });
            }
        }
        self.behind
            .store(next.is_some_and(|t| t <= now), Ordering::Relaxed);
        match next {
            // More is due now: go on while there is room.
            Some(t) if t <= now => (cursor, Some(t), self.lock_in_flight().len() < MAX_IN_FLIGHT),
            Some(t) => (cursor, Some(t), false),
            None => (cursor, None, false),
        }
    }

    fn lock_early(&self) -> std::sync::MutexGuard<'_, HashMap<String, Receipt>> {
        self.early_receipts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn run_job(self: Arc<Self>, job: DueJob) {
        let result = match job.job {
            Job::Submit => self.submit(&job.message_id, job.message).await,
            Job::Expire => self.expire(&job.message_id).await,
        };
        if let Err(e) = result {
            tracing::error!(sms_id = %job.message_id, error = %e, "job failed; it will be retried");
            tokio::time::sleep(STORE_RETRY).await;
        }
        self.lock_in_flight().remove(&job.message_id);
        self.done.notify_one();
    }

    /// Validates, charges once, and submits every segment not yet accepted.
    ///
    /// `given` is the message handed over with the job (by the writer, or read by the
    /// scan). It may predate what an earlier run of the same job committed, so it is used
    /// only while it shows the message uncharged: the charge, in the writer, then says
    /// whether that is still true. Otherwise the message is read now, after the job was
    /// claimed, which includes everything the job's previous runs committed.
    async fn submit(&self, id: &str, given: Option<Message>) -> Result<(), StoreError> {
        let mut message = match given.filter(|m| !m.charged) {
            Some(m) => m,
            None => match self.store.message(id.to_string()).await? {
                Some(m) => m,
                None => return Ok(()),
            },
        };
        if message.status.is_final() {
            return Ok(());
        }
        if !message.charged {
            match self.validate_and_charge(&message).await? {
                Charge::Charged => {}
                Charge::Ended => return Ok(()),
                Charge::Earlier => match self.store.message(id.to_string()).await? {
                    Some(m) if !m.status.is_final() => message = m,
                    _ => return Ok(()),
                },
            }
        }

        let split = segments::split(&message.body);
        let total = split.parts.len();
        for (index, payload) in split.parts.into_iter().enumerate() {
            let accepted = message
                .segments
                .get(index)
                .is_some_and(|s| s.provider_id.is_some());
            if accepted {
                continue;
            }
            let submit = Submit {
                message_id: message.id.clone(),
                index,
                total,
                from: message.from.clone(),
                to: message.to.clone(),
                coding: split.coding,
                payload,
            };
            if !self.submit_segment(submit).await? {
                break;
            }
        }
        Ok(())
    }

    /// Checks the recipient and debits the balance.
    async fn validate_and_charge(&self, m: &Message) -> Result<Charge, StoreError> {
        let id = m.id.clone();
        if !number::is_valid_recipient(&m.to) {
            tracing::debug!(sms_id = %id, "invalid recipient");
            if self
                .store
                .write(move |tx| tx.fail(&id, "invalid_phone_number"))
                .await?
            {
                self.metrics.message_final("errored");
            }
            return Ok(Charge::Ended);
        }
        let price = self.prices.price(&m.to, m.segments.len());
        let billing = self.billing;
        let outcome = self
            .store
            .write(move |tx| tx.charge(&id, price, billing))
            .await?;
        Ok(match outcome {
            ChargeOutcome::Charged => Charge::Charged,
            ChargeOutcome::AlreadyDone { charged: true } => Charge::Earlier,
            ChargeOutcome::AlreadyDone { charged: false } => Charge::Ended,
            ChargeOutcome::Insufficient => {
                self.metrics.message_final("errored");
                Charge::Ended
            }
        })
    }

    /// Submits one segment and records the answer; `false` when the others must wait.
    async fn submit_segment(&self, submit: Submit) -> Result<bool, StoreError> {
        let id = submit.message_id.clone();
        let index = submit.index;
        match self.provider.submit(submit).await {
            SubmitOutcome::Accepted { provider_id } => {
                let provider = self.provider.name();
                let deadline = self.clock.now_ms() + self.receipt_timeout_ms;
                let key = provider_id.clone();
                let outcome = self
                    .store
                    .write(move |tx| {
                        tx.segment_accepted(&id, index, provider, &provider_id, deadline)
                    })
                    .await?;
                // A receipt that arrived before this commit waits for it.
                let early = self.lock_early().remove(&key);
                if let Some(receipt) = early {
                    self.apply_receipt(receipt).await;
                }
                Ok(outcome != SegmentOutcome::Ignored)
            }
            SubmitOutcome::Retry { after, reason } => {
                tracing::warn!(sms_id = %id, segment = index, %reason, "submit deferred");
                let due = self.clock.now_ms() + after.as_millis() as u64;
                self.store
                    .write(move |tx| tx.reschedule_submit(&id, due))
                    .await?;
                Ok(false)
            }
            SubmitOutcome::Rejected { reason } => {
                tracing::info!(sms_id = %id, segment = index, %reason, "submit refused");
                if self.store.write(move |tx| tx.fail(&id, &reason)).await? {
                    self.metrics.message_final("errored");
                }
                Ok(false)
            }
        }
    }

    async fn expire(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_string();
        let log_id = id.clone();
        if self.store.write(move |tx| tx.expire(&id)).await? {
            self.metrics.message_final("errored");
            tracing::info!(sms_id = %log_id, "no final receipt in time: errored / UNKNOWN");
        }
        Ok(())
    }

    /// Applies receipts from the provider until the channel closes or `shutdown` turns true.
    pub async fn run_receipts(
        self: Arc<Self>,
        mut receipts: mpsc::Receiver<Receipt>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let limit = Arc::new(Semaphore::new(MAX_RECEIPTS));
        let mut tasks = JoinSet::new();
        loop {
            let receipt = tokio::select! {
                r = receipts.recv() => r,
                _ = shutdown.changed() => None,
            };
            let Some(receipt) = receipt else { break };
            let Ok(permit) = limit.clone().acquire_owned().await else {
                break;
            };
            let this = self.clone();
            tasks.spawn(async move {
                this.apply_receipt(receipt).await;
                drop(permit);
            });
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
    }

    async fn apply_receipt(&self, mut receipt: Receipt) {
        let provider = self.provider.name();
        let id = receipt.provider_id.clone();
        for _ in 0..UNKNOWN_RECEIPT_TRIES {
            let (pid, state) = (receipt.provider_id.clone(), receipt.state.clone());
            let outcome = self
                .store
                .write(move |tx| tx.apply_receipt(provider, &pid, &state))
                .await;
            match outcome {
                Ok(ReceiptOutcome::Unknown) => {
                    // Most often the SMSC was faster than the commit of the segment's
                    // acceptance: park the receipt where that commit looks for it, and try
                    // again later only if nothing took it meanwhile.
                    self.lock_early().insert(id.clone(), receipt);
                    tokio::time::sleep(UNKNOWN_RECEIPT_RETRY).await;
                    match self.lock_early().remove(&id) {
                        Some(parked) => receipt = parked,
                        None => return,
                    }
                    continue;
                }
                Ok(ReceiptOutcome::Duplicate) => {
                    tracing::info!(provider_id = %id, "duplicate or late receipt ignored");
                }
                Ok(ReceiptOutcome::Changed(status)) => {
                    tracing::debug!(provider_id = %id, status = status.as_str(), "receipt applied");
                    self.metrics.message_final(status.as_str());
                }
                Ok(ReceiptOutcome::Recorded) => {}
                Err(e) => {
                    tracing::error!(provider_id = %id, error = %e, "cannot apply receipt");
                    tokio::time::sleep(STORE_RETRY).await;
                    continue;
                }
            }
            if let Some(committed) = receipt.committed.take() {
                committed.done();
            }
            return;
        }
        tracing::warn!(provider_id = %id, state = %receipt.state, "receipt for an unknown id acknowledged and dropped");
        if let Some(committed) = receipt.committed.take() {
            committed.done();
        }
    }
}
