//! The webhook engine: a timer on the due queue, signed calls, the replay schedule.
//!
//! Deliveries are written by the store in the same transaction as the status change that
//! causes them (the outbox); this module only sends them. The scheduler reads the earliest
//! entries of the due table, sleeps until the first is due or until the writer reports a new
//! entry, and hands due deliveries to workers bounded twice: a global limit, and a limit per
//! webhook so that one slow or dead receiver holds only its own slots. A delivery whose
//! webhook has every slot busy is moved a little later in the due table rather than held in
//! memory, so waiting deliveries cost disk, not RAM.
//!
//! The result of every attempt is committed before the delivery leaves the in-flight set; a
//! crash before that commit leaves the due entry where it was, and the delivery is sent
//! again after the restart with the same `id` (at least once, invariant 4).

pub mod client;
pub mod schedule;
pub mod sign;
pub mod ssrf;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Bytes;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::clock::SharedClock;
use crate::config::WebhooksConfig;
use crate::metrics::Metrics;
use crate::model::{Attempt, DeliveryState};
use crate::store::{AttemptOutcome, DueDelivery, Store};
use client::{Signed, WebhookClient};
use schedule::{AfterFailure, Schedule};

/// How much later a delivery is moved when its webhook has no free slot.
const BUSY_DEFER: Duration = Duration::from_millis(500);
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
    state: Mutex<InFlight>,
    /// Signalled when an attempt finishes, so the scheduler can fill its slot.
    done: Notify,
    metrics: Arc<Metrics>,
}

/// The deliveries being attempted now, and how many per webhook.
#[derive(Default)]
struct InFlight {
    deliveries: HashSet<String>,
    by_webhook: HashMap<String, usize>,
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
            state: Mutex::new(InFlight::default()),
            done: Notify::new(),
            metrics,
        })
    }

    /// Runs the scheduler until `shutdown` turns true, then lets attempts in flight finish.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut tasks = JoinSet::new();
        while !*shutdown.borrow() {
            while tasks.try_join_next().is_some() {}
            let wake_at = self.start_due(&mut tasks).await;
            let now = self.clock.now_ms();
            let sleep = wake_at.map_or(Duration::from_secs(3600), |t| {
                Duration::from_millis(t.saturating_sub(now))
            });
            tokio::select! {
                _ = self.store.wakers().due.notified() => {}
                _ = self.done.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
                _ = shutdown.changed() => {}
            }
        }
        while tasks.join_next().await.is_some() {}
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, InFlight> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the due deliveries that have a free slot; returns when to look again
    /// (`None`: only when woken).
    async fn start_due(self: &Arc<Self>, tasks: &mut JoinSet<()>) -> Option<u64> {
        let running = self.lock().deliveries.len();
        let free = self.concurrency.saturating_sub(running);
        if free == 0 {
            return None;
        }
        let now = self.clock.now_ms();
        let (due, next) = match self.store.due_deliveries(now, running + free).await {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the due table");
                return Some(now + STORE_RETRY.as_millis() as u64);
            }
        };

        let mut busy = Vec::new();
        let mut started = 0;
        for d in due {
            let mut state = self.lock();
            if state.deliveries.contains(&d.delivery_id) {
                continue;
            }
            let slots = state.by_webhook.entry(d.webhook_id.clone()).or_default();
            if *slots >= self.per_webhook {
                busy.push((d.due_ms, d.delivery_id));
                continue;
            }
            *slots += 1;
            state.deliveries.insert(d.delivery_id.clone());
            drop(state);
            started += 1;
            let this = self.clone();
            tasks.spawn(async move { this.attempt(d).await });
        }

        if !busy.is_empty() {
            let later = now + BUSY_DEFER.as_millis() as u64;
            if let Err(e) = self
                .store
                .write(move |tx| tx.defer_deliveries(&busy, later))
                .await
            {
                tracing::error!(error = %e, "cannot defer deliveries of busy webhooks");
            }
        }
        // Every slot taken: wait for one to free. Otherwise look again when the next entry
        // is due (at once if busy webhooks' entries were just moved out of the way).
        if started == free {
            return None;
        }
        next.map(|t| t.max(now + 1))
    }

    /// One attempt of one delivery, its result committed before its slot is freed.
    async fn attempt(self: Arc<Self>, due: DueDelivery) {
        if let Err(e) = self.try_attempt(&due).await {
            tracing::error!(delivery_id = %due.delivery_id, error = %e, "cannot record attempt; it will be retried");
            tokio::time::sleep(STORE_RETRY).await;
        }
        let mut state = self.lock();
        state.deliveries.remove(&due.delivery_id);
        if let Some(n) = state.by_webhook.get_mut(&due.webhook_id) {
            *n -= 1;
            if *n == 0 {
                state.by_webhook.remove(&due.webhook_id);
            }
        }
        drop(state);
        self.done.notify_one();
    }

    async fn try_attempt(&self, due: &DueDelivery) -> Result<(), crate::store::StoreError> {
        let id = due.delivery_id.clone();
        let Some((delivery, hook)) = self.store.delivery_with_webhook(id.clone()).await? else {
            return Ok(());
        };
        // Moved or finished since the scan (a replay, a deferral): that entry decides.
        if delivery.state != DeliveryState::Pending || delivery.next_ms != Some(due.due_ms) {
            return Ok(());
        }
        let Some(hook) = hook else { return Ok(()) };
        if !hook.enabled {
            return self.store.write(move |tx| tx.pause_delivery(&id)).await;
        }

        let started_ms = self.clock.now_ms();
        let timestamp = started_ms / 1000;
        let Some(signature) =
            sign::signature(&hook.secret, &delivery.id, timestamp, &delivery.payload)
        else {
            tracing::error!(webhook_id = %hook.id, "webhook secret is not whsec_ base64; delivery discarded");
            let attempt = attempt_record(started_ms, None, Some("bad secret".into()), 0, &[]);
            self.store
                .write(move |tx| tx.record_attempt(&id, attempt, AttemptOutcome::Discarded))
                .await?;
            return Ok(());
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
            match self
                .schedule
                .after_failure(number, schedule::random_unit(), result.retry_after)
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
        self.store
            .write(move |tx| tx.record_attempt(&id, attempt, outcome))
            .await?;
        Ok(())
    }
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
