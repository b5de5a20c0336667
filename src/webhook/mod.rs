//! The webhook engine: a timer on the due queue, signed calls, the replay schedule.
//!
//! Deliveries are written by the store in the same transaction as the status change that
//! causes them (the outbox); this module only sends them. A new delivery is handed over by
//! the writer right after its commit ([`Engine::offer`]) and goes into a short in-memory
//! queue per webhook without being read back; when there is no room, or older entries
//! still wait, the offer is refused and the entry is found in the table. The scheduler
//! reads due entries of the due table in order, from a cursor so that each is read once
//! (the cursor steps back when the writer reports an entry written behind it), passing
//! over those already claimed, and claims the others into the same queues; it sleeps
//! until the next entry is due, the writer reports new entries, or a call finishes.
//! Calls are bounded twice: globally, and per webhook, so that one slow or dead receiver
//! holds only its own slots. A webhook's queue is capped; when a slow webhook's queue is
//! full and other webhooks are waiting or active, its further due entries are moved later
//! in the table (by about the time the queue needs to drain), so waiting deliveries cost
//! disk, not memory, and do not hold up the entries of other webhooks behind them. When no
//! other webhook would gain, the scan waits for the queue instead, so a lone dead
//! receiver's backlog is not rewritten.
//!
//! A call's slot is freed as soon as the receiver has answered; the result is then
//! committed. Until that commit the delivery stays claimed, and a crash before it leaves
//! the due entry where it was: the delivery is sent again after the restart with the same
//! `id` (at least once, invariant 4).

pub mod client;
pub mod schedule;
pub mod sign;
pub mod ssrf;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::clock::SharedClock;
use crate::config::WebhooksConfig;
use crate::metrics::Metrics;
use crate::model::Attempt;
use crate::store::{AttemptOutcome, DueDelivery, Store};
use client::{Signed, WebhookClient};
use schedule::{AfterFailure, Schedule};

/// Deliveries claimed in memory at most (queued, being called, being committed).
const MAX_CLAIMED: usize = 8192;
/// Rows read by one scan of the due table.
const SCAN_BATCH: usize = 1024;
/// A webhook's queue of claimed deliveries waiting for a call slot, at most.
const QUEUE_CAP: usize = 512;
/// A webhook whose full queue drains within this long is waited for instead of having its
/// further entries moved: moving them costs writes, waiting costs others little.
const FAST_DRAIN: Duration = Duration::from_millis(200);
/// How far a slow webhook's overflow can be moved at most.
const MAX_DEFER: Duration = Duration::from_secs(60);
/// How often the scan starts again from the head of the due table, which also picks up
/// the entries of an attempt whose result failed to commit.
const RESCAN: Duration = Duration::from_secs(1);
/// How long the scheduler waits after failing to read the due table.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// The webhook engine.
pub struct Engine {
    store: Store,
    client: WebhookClient,
    schedule: Schedule,
    clock: SharedClock,
    concurrency: usize,
    per_webhook: usize,
    state: Mutex<Queues>,
    /// Signalled when a call or a commit finishes, so the scheduler can go on.
    done: Notify,
    metrics: Arc<Metrics>,
}

/// What a scan of the due table left for the next one.
struct Refill {
    /// Where the next scan starts.
    cursor: Option<(u64, String)>,
    /// When the first entry not yet due falls due.
    wake_at: Option<u64>,
    /// Whether to scan again at once.
    again: bool,
    /// Whether due entries were left in the table (no room, or a busy queue), so that a
    /// finished call should bring a scan.
    due_left: bool,
}

/// What the scheduler holds in memory: bounded by [`MAX_CLAIMED`].
#[derive(Default)]
struct Queues {
    /// Every delivery taken from the due table and not yet committed.
    claimed: HashSet<String>,
    /// Claimed deliveries waiting for a call slot, by webhook.
    waiting: HashMap<String, VecDeque<DueDelivery>>,
    /// Calls in progress, by webhook.
    calling: HashMap<String, usize>,
    /// Calls in progress, all webhooks.
    calls: usize,
    /// Recent average call time by webhook, to judge how fast its queue drains.
    call_ms: HashMap<String, f64>,
    /// The webhook whose full queue stopped the last scan, if one did.
    blocked_on: Option<String>,
    /// Webhooks whose due entries the last scan left in the table: new deliveries for them
    /// offered by the writer are refused until a scan catches up, so that they queue
    /// behind the older ones instead of overtaking them.
    behind: HashSet<String>,
    /// When each webhook last had a call finish: whether others are active.
    last_call: HashMap<String, Instant>,
    /// Whether a scan's read is under way, and the deliveries released (their result
    /// committed) since it began: its snapshot may still show them due, and they must not
    /// be claimed again from it.
    scanning: bool,
    released: HashSet<String>,
}

impl Queues {
    /// Whether a scan now would get further than the last one: it was not stopped by a
    /// full queue, or that queue has half emptied since.
    fn worth_scanning(&self) -> bool {
        self.blocked_on
            .as_ref()
            .is_none_or(|w| self.waiting.get(w).map_or(0, VecDeque::len) < QUEUE_CAP / 2)
    }

    /// Whether a webhook other than `webhook` had a call finish lately.
    fn others_active(&self, webhook: &str) -> bool {
        self.last_call
            .iter()
            .any(|(w, at)| w != webhook && at.elapsed() < MAX_DEFER)
    }

    /// How long `webhook`'s waiting queue needs to drain at its recent pace.
    fn drain_time(&self, webhook: &str, per_webhook: usize) -> Duration {
        let queued = self.waiting.get(webhook).map_or(0, VecDeque::len) as f64;
        let call_ms = self.call_ms.get(webhook).copied().unwrap_or(10.0);
        Duration::from_secs_f64(queued * call_ms / per_webhook as f64 / 1000.0)
    }
}

impl Engine {
    /// Builds the engine from its configuration.
    pub fn new(store: Store, config: &WebhooksConfig, metrics: Arc<Metrics>) -> Arc<Engine> {
        let client = WebhookClient::new(
            ssrf::Policy::new(config.allowed_networks.clone()),
            config.connect_timeout,
            config.timeout,
            config.response_bytes,
            config.per_webhook_concurrency,
        );
        Arc::new(Engine {
            clock: store.clock().clone(),
            store,
            client,
            schedule: Schedule::new(config.schedule.clone(), config.jitter),
            concurrency: config.concurrency,
            per_webhook: config.per_webhook_concurrency,
            state: Mutex::new(Queues::default()),
            done: Notify::new(),
            metrics,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queues> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes deliveries that a commit just wrote (see [`crate::store::Wakers`]) while
    /// there is room and no older due entry waits in the table; returns the others, which
    /// the scan finds there. Runs on the writer thread: it only touches the queues.
    pub fn offer(&self, fresh: Vec<DueDelivery>) -> Vec<DueDelivery> {
        let mut left = Vec::new();
        let mut took = false;
        {
            let mut q = self.lock();
            for d in fresh {
                let webhook = &d.delivery.webhook_id;
                let room = !q.behind.contains(webhook)
                    && q.claimed.len() < MAX_CLAIMED
                    && q.waiting.get(webhook).is_none_or(|w| w.len() < QUEUE_CAP);
                if room && q.claimed.insert(d.delivery.id.clone()) {
                    q.waiting.entry(webhook.clone()).or_default().push_back(d);
                    took = true;
                } else {
                    left.push(d);
                }
            }
        }
        if took {
            self.done.notify_one();
        }
        left
    }

    /// Runs the scheduler until `shutdown` turns true, then lets attempts in flight finish.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut tasks = JoinSet::new();
        let mut cursor: Option<(u64, String)> = None;
        let mut last_rescan = Instant::now();
        let mut scan_now = true;
        let mut wake_at: Option<u64> = None;
        let mut more_due = false;

        while !*shutdown.borrow() {
            while tasks.try_join_next().is_some() {}
            if last_rescan.elapsed() >= RESCAN {
                cursor = None;
                last_rescan = Instant::now();
                scan_now = true;
            }
            let now = self.clock.now_ms();
            cursor = crate::store::step_back(cursor, self.store.wakers().take_due_floor());
            if scan_now || wake_at.is_some_and(|t| t <= now) {
                let refilled = self.refill(cursor.take(), now).await;
                cursor = refilled.cursor;
                wake_at = refilled.wake_at;
                scan_now = refilled.again;
                more_due = refilled.due_left;
            }
            self.dispatch(&mut tasks);
            if scan_now {
                continue;
            }

            let sleep = wake_at.map_or(RESCAN, |t| {
                Duration::from_millis(t.saturating_sub(self.clock.now_ms())).min(RESCAN)
            });
            tokio::select! {
                // New entries in the table: worth a scan unless the last one stopped at a
                // full queue that has not half drained (it would stop there again, having
                // read the same entries again).
                _ = self.store.wakers().due.notified() => scan_now = self.lock().worth_scanning(),
                // A finished call frees a slot; scan only if due entries were left behind.
                _ = self.done.notified() => scan_now = more_due && self.lock().worth_scanning(),
                _ = tokio::time::sleep(sleep) => {}
                _ = shutdown.changed() => {}
            }
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Claims due entries after `cursor`.
    async fn refill(self: &Arc<Self>, cursor: Option<(u64, String)>, now: u64) -> Refill {
        let room = MAX_CLAIMED.saturating_sub(self.lock().claimed.len());
        if room == 0 {
            return Refill {
                cursor,
                wake_at: None,
                again: false,
                due_left: true,
            };
        }
        // Entries already claimed (handed over by the writer, or found by an earlier scan)
        // are passed over without reading their records.
        self.lock().scanning = true;
        let this = self.clone();
        let claimed = move |id: &str| this.lock().claimed.contains(id);
        let scan = match self
            .store
            .due_deliveries(cursor.clone(), now, room.min(SCAN_BATCH), claimed)
            .await
        {
            Ok(scan) => scan,
            Err(e) => {
                let mut q = self.lock();
                q.scanning = false;
                q.released.clear();
                drop(q);
                tracing::error!(error = %e, "cannot read the due table");
                return Refill {
                    cursor,
                    wake_at: Some(now + STORE_RETRY.as_millis() as u64),
                    again: false,
                    due_left: false,
                };
            }
        };

        let mut cursor = cursor;
        let mut slow_overflow: HashMap<String, Vec<(u64, String)>> = HashMap::new();
        let mut blocked_on = None;
        // Moving a slow webhook's overflow later is worth its writes only when it lets
        // something else through: another webhook's entries in this batch, or another
        // webhook active lately. With one webhook (or one that is alone in the queue), the
        // scan waits for its queue instead, and a dead receiver's backlog is left alone.
        let first_webhook = scan.due.first().map(|d| d.delivery.webhook_id.clone());
        let mixed = scan
            .due
            .iter()
            .any(|d| Some(&d.delivery.webhook_id) != first_webhook.as_ref());
        {
            let mut q = self.lock();
            q.scanning = false;
            let released = std::mem::take(&mut q.released);
            for d in scan.due {
                let key = (d.due_ms, d.delivery.id.clone());
                let webhook = d.delivery.webhook_id.clone();
                if q.claimed.contains(&d.delivery.id) || released.contains(&d.delivery.id) {
                    cursor = Some(key);
                    continue;
                }
                let full = q
                    .waiting
                    .get(&webhook)
                    .is_some_and(|w| w.len() >= QUEUE_CAP);
                if full {
                    let others = mixed || q.others_active(&webhook);
                    if !others || q.drain_time(&webhook, self.per_webhook) <= FAST_DRAIN {
                        // Its queue empties soon, or nothing else waits: wait here rather
                        // than move entries.
                        blocked_on = Some(webhook);
                        break;
                    }
                    slow_overflow.entry(webhook).or_default().push(key.clone());
                    cursor = Some(key);
                    continue;
                }
                q.claimed.insert(d.delivery.id.clone());
                cursor = Some(key);
                q.waiting.entry(webhook).or_default().push_back(d);
            }
        }

        for (webhook, keys) in slow_overflow {
            let wait = self
                .lock()
                .drain_time(&webhook, self.per_webhook)
                .clamp(FAST_DRAIN, MAX_DEFER);
            let later = now + wait.as_millis() as u64;
            if let Err(e) = self
                .store
                .write(move |tx| tx.defer_deliveries(&keys, later))
                .await
            {
                tracing::error!(error = %e, "cannot defer deliveries of a slow webhook");
            }
        }

        let blocked = blocked_on.is_some();
        if !blocked && scan.last > cursor {
            cursor = scan.last;
        }
        let due_left = blocked || scan.next.is_some_and(|t| t <= now);
        {
            let mut q = self.lock();
            q.behind.clear();
            q.behind.extend(blocked_on.clone());
            q.blocked_on = blocked_on;
        }
        let wake_at = scan.next.filter(|&t| t > now);
        Refill {
            cursor,
            wake_at,
            // More is due now: go on, unless waiting for a busy queue.
            again: due_left && !blocked,
            due_left,
        }
    }

    /// Starts calls for waiting deliveries whose webhook has a free slot.
    fn dispatch(self: &Arc<Self>, tasks: &mut JoinSet<()>) {
        let mut q = self.lock();
        let webhooks: Vec<String> = q.waiting.keys().cloned().collect();
        for webhook in webhooks {
            loop {
                let busy = q.calling.get(&webhook).copied().unwrap_or(0);
                if busy >= self.per_webhook || q.calls >= self.concurrency {
                    break;
                }
                let Some(d) = q.waiting.get_mut(&webhook).and_then(VecDeque::pop_front) else {
                    break;
                };
                *q.calling.entry(webhook.clone()).or_default() += 1;
                q.calls += 1;
                let this = self.clone();
                tasks.spawn(async move { this.attempt(d).await });
            }
            if q.waiting.get(&webhook).is_some_and(VecDeque::is_empty) {
                q.waiting.remove(&webhook);
            }
        }
    }

    /// One attempt of one delivery: the call, its slot freed, then its result committed.
    async fn attempt(self: Arc<Self>, due: DueDelivery) {
        let id = due.delivery.id.clone();
        let webhook = due.delivery.webhook_id.clone();
        let started = Instant::now();
        let pending = self.call(due).await;

        {
            let mut q = self.lock();
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            let avg = q.call_ms.entry(webhook.clone()).or_insert(ms);
            *avg = *avg * 0.9 + ms * 0.1;
            match q.last_call.get_mut(&webhook) {
                Some(at) => *at = Instant::now(),
                None => {
                    q.last_call.insert(webhook.clone(), Instant::now());
                }
            }
            q.calls -= 1;
            if let Some(n) = q.calling.get_mut(&webhook) {
                *n -= 1;
                if *n == 0 {
                    q.calling.remove(&webhook);
                }
            }
        }
        self.done.notify_one();

        if let Some(commit) = pending
            && let Err(e) = self.commit(commit).await
        {
            tracing::error!(delivery_id = %id, error = %e, "cannot record attempt; it will be retried");
            tokio::time::sleep(STORE_RETRY).await;
        }
        {
            let mut q = self.lock();
            q.claimed.remove(&id);
            if q.scanning {
                q.released.insert(id);
            }
        }
        self.done.notify_one();
    }

    /// Writes what an attempt came to.
    async fn commit(&self, commit: Commit) -> Result<(), crate::store::StoreError> {
        match commit {
            Commit::Pause { id, due_ms } => {
                self.store
                    .write(move |tx| tx.pause_delivery(&id, due_ms))
                    .await
            }
            Commit::Record {
                id,
                due_ms,
                attempt,
                outcome,
            } => {
                let recorded = self
                    .store
                    .write(move |tx| tx.record_attempt(&id, due_ms, attempt, outcome))
                    .await?;
                if !recorded {
                    tracing::debug!("attempt not recorded: the delivery moved meanwhile");
                }
                Ok(())
            }
        }
    }

    /// Makes the call; returns what to commit once its slot is free (`None` when there is
    /// nothing to record: the webhook was deleted).
    async fn call(&self, due: DueDelivery) -> Option<Commit> {
        let DueDelivery {
            due_ms,
            delivery,
            webhook,
        } = due;
        let id = delivery.id.clone();
        let hook = webhook?;
        if !hook.enabled {
            return Some(Commit::Pause { id, due_ms });
        }

        let started_ms = self.clock.now_ms();
        let timestamp = started_ms / 1000;
        let Some(signature) =
            sign::signature(&hook.secret, &delivery.id, timestamp, &delivery.payload)
        else {
            tracing::error!(webhook_id = %hook.id, "webhook secret is not whsec_ base64; delivery discarded");
            let attempt = attempt_record(started_ms, None, Some("bad secret".into()), 0, &[]);
            return Some(Commit::Record {
                id,
                due_ms,
                attempt,
                outcome: AttemptOutcome::Discarded,
            });
        };
        let signed = Signed {
            id: delivery.id.clone(),
            timestamp,
            signature,
        };
        let result = self
            .client
            .call(&hook.url, &signed, Bytes::from(delivery.payload))
            .await;

        let number = delivery.attempts + 1;
        let outcome = if result.ok {
            AttemptOutcome::Succeeded
        } else {
            let random = schedule::random_unit();
            match self
                .schedule
                .after_failure(number, random, result.retry_after)
            {
                AfterFailure::RetryIn(wait) => {
                    AttemptOutcome::RetryAt(self.clock.now_ms() + wait.as_millis() as u64)
                }
                AfterFailure::Discard => AttemptOutcome::Discarded,
            }
        };
        log_attempt(&hook.id, &delivery.id, number, &result, outcome);
        self.metrics.webhook_attempt(match outcome {
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::RetryAt(_) => "failed",
            AttemptOutcome::Discarded => "discarded",
        });
        let attempt = attempt_record(
            started_ms,
            result.status,
            result.error,
            result.duration.as_millis() as u64,
            &result.head,
        );
        Some(Commit::Record {
            id,
            due_ms,
            attempt,
            outcome,
        })
    }
}

/// What an attempt leaves to be written.
enum Commit {
    /// The webhook is disabled: take the delivery out of the queue until it is enabled.
    Pause { id: String, due_ms: u64 },
    /// The attempt's log entry and the delivery's next state.
    Record {
        id: String,
        due_ms: u64,
        attempt: Attempt,
        outcome: AttemptOutcome,
    },
}

fn attempt_record(
    at_ms: u64,
    status_code: Option<u16>,
    error: Option<String>,
    duration_ms: u64,
    head: &[u8],
) -> Attempt {
    Attempt {
        number: 0,
        at_ms,
        duration_ms,
        status_code,
        error,
        response: String::from_utf8_lossy(head).into_owned(),
    }
}

fn log_attempt(
    webhook_id: &str,
    delivery_id: &str,
    attempt: u32,
    result: &client::CallResult,
    outcome: AttemptOutcome,
) {
    let status = result.status.unwrap_or(0);
    let error = result.error.as_deref().unwrap_or("");
    match outcome {
        AttemptOutcome::Succeeded => {
            tracing::debug!(
                webhook_id,
                delivery_id,
                attempt,
                status,
                "webhook delivered"
            );
        }
        AttemptOutcome::RetryAt(at) => {
            tracing::warn!(webhook_id, delivery_id, attempt, status, error, next_at = %crate::clock::format_ms(at), "webhook call failed; replay scheduled");
        }
        AttemptOutcome::Discarded => {
            tracing::warn!(
                webhook_id,
                delivery_id,
                attempt,
                status,
                error,
                "webhook call failed; no replay left, delivery discarded"
            );
        }
    }
}
