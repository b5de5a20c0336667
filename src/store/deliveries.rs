//! The webhook side of the store: the due queue, attempts and their outcomes, pausing and
//! replaying. Writes run in the writer's transaction like every other operation.

use redb::{ReadableTable, ReadableTableMetadata};

use super::ops::CHILD_MAX;
use super::tables::*;
use super::writer::Tx;
use super::{Store, StoreError};
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

/// A delivery whose attempt is due.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub due_ms: u64,
    pub delivery_id: String,
    pub webhook_id: String,
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
            self.due_changed = true;
        }
        Ok(())
    }

    /// Logs an attempt and applies its outcome; `false` if the delivery is gone.
    pub fn record_attempt(
        &mut self,
        delivery_id: &str,
        mut attempt: Attempt,
        outcome: AttemptOutcome,
    ) -> Result<bool, StoreError> {
        let Some(mut d) = self.get_delivery(delivery_id)? else {
            return Ok(false);
        };
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
    pub fn pause_delivery(&mut self, delivery_id: &str) -> Result<(), StoreError> {
        if let Some(mut d) = self.get_delivery(delivery_id)? {
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
    /// Up to `limit` deliveries due at `now_ms`, earliest first, and the due time of the
    /// first one after them.
    pub async fn due_deliveries(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> Result<(Vec<DueDelivery>, Option<u64>), StoreError> {
        self.read(move |r| {
            let due = r.open_table(DUE)?;
            let deliveries = r.open_table(DELIVERIES)?;
            let mut out = Vec::new();
            for entry in due.iter()? {
                let (key, _) = entry?;
                let (due_ms, id) = key.value();
                if due_ms > now_ms || out.len() == limit {
                    return Ok((out, Some(due_ms)));
                }
                if let Some(v) = deliveries.get(id)? {
                    let d: Delivery = decode(v.value())?;
                    out.push(DueDelivery {
                        due_ms,
                        delivery_id: d.id,
                        webhook_id: d.webhook_id,
                    });
                }
            }
            Ok((out, None))
        })
        .await
    }

    /// A delivery and its webhook (`None` when the webhook was deleted).
    pub async fn delivery_with_webhook(
        &self,
        id: String,
    ) -> Result<Option<(Delivery, Option<Webhook>)>, StoreError> {
        self.read(move |r| {
            let deliveries = r.open_table(DELIVERIES)?;
            let Some(v) = deliveries.get(id.as_str())? else {
                return Ok(None);
            };
            let d: Delivery = decode(v.value())?;
            let hooks = r.open_table(WEBHOOKS)?;
            let hook = hooks
                .get(d.webhook_id.as_str())?
                .map(|v| decode(v.value()))
                .transpose()?;
            Ok(Some((d, hook)))
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
