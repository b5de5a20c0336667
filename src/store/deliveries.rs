//! The webhook side of the store: the due queue, attempts and their outcomes, pausing and
//! replaying. Writes run in the writer's transaction like every other operation.

use std::sync::Arc;

use redb::{ReadableTable, ReadableTableMetadata};

use super::ops::CHILD_MAX;
use super::tables::*;
use super::writer::Tx;
use super::{Store, StoreError, after_key};
use crate::model::{Attempt, Delivery, DeliveryState, Webhook};

/// What an attempt's result makes of its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// A 2xx: done.
    Succeeded,
    /// A failure with replays left: try again at this time (ms).
    RetryAt(u64),
    /// A failure with no replay left.
    Discarded,
}

/// A delivery whose attempt is due, with what the attempt needs.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    /// The due-table key's time: the attempt's result applies only while it is still this.
    pub due_ms: u64,
    pub delivery: Delivery,
    /// `None` when the webhook was deleted meanwhile. Shared: one webhook's deliveries all
    /// point to the same record.
    pub webhook: Option<Arc<Webhook>>,
}

/// One scan of the due table.
#[derive(Debug, Default)]
pub struct DueScan {
    pub due: Vec<DueDelivery>,
    /// The key of the last entry looked at (returned or skipped): where the next scan
    /// goes on from.
    pub last: Option<(u64, String)>,
    /// The due time of the first entry not returned, when there is one: not due yet, or
    /// past the limit.
    pub next: Option<u64>,
}

impl Tx<'_> {
    fn get_delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError> {
        self.deliveries
            .get(id)?
            .map(|v| decode(v.value()))
            .transpose()
    }

    fn put_delivery(&mut self, d: &Delivery) -> Result<(), StoreError> {
        self.deliveries
            .insert(d.id.as_str(), encode(d).as_slice())?;
        Ok(())
    }

    /// Moves a delivery's entry in the due table (or removes it with `None`).
    fn set_due(&mut self, d: &mut Delivery, next: Option<u64>) -> Result<(), StoreError> {
        if let Some(old) = d.next_ms.take() {
            self.due.remove((old, d.id.as_str()))?;
        }
        if let Some(at) = next {
            self.due.insert((at, d.id.as_str()), ())?;
            d.next_ms = Some(at);
            self.delivery_queued(at);
        }
        Ok(())
    }

    /// Logs an attempt made for the due entry at `due_ms` and applies its outcome; `false`
    /// if the delivery is gone, or was moved meanwhile (a replay, a pause), in which case
    /// the entry that moved it decides what happens next.
    pub fn record_attempt(
        &mut self,
        delivery_id: &str,
        due_ms: u64,
        mut attempt: Attempt,
        outcome: AttemptOutcome,
    ) -> Result<bool, StoreError> {
        let Some(mut d) = self.get_delivery(delivery_id)? else {
            return Ok(false);
        };
        if d.next_ms != Some(due_ms) {
            return Ok(false);
        }
        d.attempts += 1;
        attempt.number = d.attempts;
        self.attempts
            .insert((delivery_id, d.attempts), encode(&attempt).as_slice())?;
        let (state, next) = match outcome {
            AttemptOutcome::Succeeded => (DeliveryState::Succeeded, None),
            AttemptOutcome::RetryAt(at) => (DeliveryState::Pending, Some(at)),
            AttemptOutcome::Discarded => (DeliveryState::Discarded, None),
        };
        d.state = state;
        self.set_due(&mut d, next)?;
        self.put_delivery(&d)?;
        Ok(true)
    }

    /// Moves due deliveries to `due_ms` without an attempt: their webhook has every slot
    /// busy, so they wait instead of being scanned again and again.
    pub fn defer_deliveries(
        &mut self,
        entries: &[(u64, String)],
        due_ms: u64,
    ) -> Result<(), StoreError> {
        for (old, id) in entries {
            if let Some(mut d) = self.get_delivery(id)?
                && d.next_ms == Some(*old)
            {
                self.set_due(&mut d, Some(due_ms))?;
                self.put_delivery(&d)?;
            }
        }
        Ok(())
    }

    /// Takes a delivery of a disabled webhook out of the due table; re-enabling the
    /// webhook puts it back.
    pub fn pause_delivery(&mut self, delivery_id: &str, due_ms: u64) -> Result<(), StoreError> {
        if let Some(mut d) = self.get_delivery(delivery_id)?
            && d.next_ms == Some(due_ms)
        {
            self.set_due(&mut d, None)?;
            self.put_delivery(&d)?;
        }
        Ok(())
    }

    /// Queues again, now, every paused delivery of a webhook being re-enabled.
    pub(super) fn resume_deliveries(&mut self, webhook_id: &str) -> Result<(), StoreError> {
        let mut ids = Vec::new();
        for entry in self
            .webhook_deliveries
            .range((webhook_id, "")..(webhook_id, CHILD_MAX))?
        {
            ids.push(entry?.0.value().1.to_string());
        }
        for id in ids {
            if let Some(mut d) = self.get_delivery(&id)?
                && d.state == DeliveryState::Pending
                && d.next_ms.is_none()
            {
                self.set_due(&mut d, Some(self.now_ms))?;
                self.put_delivery(&d)?;
            }
        }
        Ok(())
    }

    /// Sends a delivery of the account's webhook again now, whatever its state; `None` if
    /// there is no such delivery.
    pub fn replay_delivery(
        &mut self,
        account_id: &str,
        webhook_id: &str,
        delivery_id: &str,
    ) -> Result<Option<Delivery>, StoreError> {
        let Some(mut d) = self
            .get_delivery(delivery_id)?
            .filter(|d| d.account_id == account_id && d.webhook_id == webhook_id)
        else {
            return Ok(None);
        };
        d.state = DeliveryState::Pending;
        self.set_due(&mut d, Some(self.now_ms))?;
        self.put_delivery(&d)?;
        Ok(Some(d))
    }
}

impl Store {
    /// Up to `limit` deliveries due at `now_ms`, in due order, after the key `after` (from
    /// the start when `None`), each with its record and webhook, leaving out those for
    /// which `skip` (given the delivery id) is true: the caller's own, already in hand, are
    /// passed over without reading their records. A caller reading from a cursor steps it
    /// back to [`super::Wakers::take_due_floor`] when an entry was written behind it.
    pub async fn due_deliveries(
        &self,
        after: Option<(u64, String)>,
        now_ms: u64,
        limit: usize,
        skip: impl Fn(&str) -> bool + Send + 'static,
    ) -> Result<DueScan, StoreError> {
        self.read(move |r| {
            let due = r.open_table(DUE)?;
            let deliveries = r.open_table(DELIVERIES)?;
            let hooks = r.open_table(WEBHOOKS)?;
            let mut webhooks: std::collections::HashMap<String, Option<Arc<Webhook>>> =
                std::collections::HashMap::new();
            let mut scan = DueScan::default();
            for entry in due.range(after_key(&after))? {
                let (key, _) = entry?;
                let (due_ms, id) = key.value();
                if due_ms > now_ms || scan.due.len() == limit {
                    scan.next = Some(due_ms);
                    break;
                }
                scan.last = Some((due_ms, id.to_string()));
                if skip(id) {
                    continue;
                }
                let Some(v) = deliveries.get(id)? else {
                    continue;
                };
                let delivery: Delivery = decode(v.value())?;
                if !webhooks.contains_key(&delivery.webhook_id) {
                    let hook: Option<Webhook> = hooks
                        .get(delivery.webhook_id.as_str())?
                        .map(|v| decode(v.value()))
                        .transpose()?;
                    webhooks.insert(delivery.webhook_id.clone(), hook.map(Arc::new));
                }
                let webhook = webhooks.get(&delivery.webhook_id).cloned().flatten();
                scan.due.push(DueDelivery {
                    due_ms,
                    delivery,
                    webhook,
                });
            }
            Ok(scan)
        })
        .await
    }

    /// The attempts of a delivery, first to last.
    pub async fn attempts(&self, delivery_id: String) -> Result<Vec<Attempt>, StoreError> {
        self.read(move |r| {
            let t = r.open_table(ATTEMPTS)?;
            let mut out = Vec::new();
            for entry in t.range((delivery_id.as_str(), 0)..=(delivery_id.as_str(), u32::MAX))? {
                out.push(decode(entry?.1.value())?);
            }
            Ok(out)
        })
        .await
    }

    /// The number of deliveries waiting in the due table, and the due time of the oldest.
    pub async fn due_summary(&self) -> Result<(u64, Option<u64>), StoreError> {
        self.read(|r| {
            let t = r.open_table(DUE)?;
            let oldest = t.first()?.map(|(k, _)| k.value().0);
            Ok((t.len()?, oldest))
        })
        .await
    }
}
