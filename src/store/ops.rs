//! The write operations: each runs inside a group-committed transaction of the writer
//! (see [`super::Store::write`]) and checks before it writes, so a refusal writes nothing.
//!
//! Every status change goes through [`Tx::transition`], which refuses to move a message
//! backwards and writes, in the same transaction, one delivery per subscribed webhook with
//! its entry in the due table: the transactional outbox of invariant 2.

use std::sync::Arc;

use redb::ReadableTable;

use super::tables::{decode, encode};
use super::writer::Tx;
use super::{DueDelivery, DueJob, StoreError};
use crate::ids::{self, Kind};
use crate::model::{
    Account, ApiKey, Delivery, DeliveryState, EVENT_SMS_STATUS, EventPayload, IdempotentReply, Job,
    Message, Status, Webhook,
};

/// The upper bound of the second element of a (parent id, child id) key: above every id
/// character, so `(parent, "")..(parent, CHILD_MAX)` covers all of a parent's children.
pub(super) const CHILD_MAX: &str = "~";

/// A new message and how to recognise a retry of the request that made it.
pub struct CreateSms {
    pub message: Message,
    pub idempotency: Option<IdempotencyKey>,
}

/// The `Idempotency-Key` of a request, with what identifies the request itself.
pub struct IdempotencyKey {
    pub key: String,
    pub request_sha256: [u8; 32],
    pub keep_ms: u64,
}

/// What [`Tx::create_sms`] did.
pub enum Created {
    /// A new message, and the response body to answer with.
    New(Vec<u8>),
    /// The key was seen with the same request: the first response, to answer again.
    Replay(Vec<u8>),
    /// The key was seen with a different request.
    Conflict,
}

/// What [`Tx::charge`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// The balance was debited (or billing is off); go on and submit.
    Charged,
    /// The balance was short: the message is now `errored` / `insufficient_balance`.
    Insufficient,
    /// The message is gone, final, or was already charged by an earlier run.
    AlreadyDone { charged: bool },
}

/// What [`Tx::segment_accepted`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum SegmentOutcome {
    /// Recorded; other segments still wait to be submitted.
    MoreToSend,
    /// Recorded, and every segment is now with the provider.
    AllAccepted,
    /// The message is final or unknown; nothing was recorded.
    Ignored,
}

/// What [`Tx::apply_receipt`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum ReceiptOutcome {
    /// The receipt moved the message to this status.
    Changed(Status),
    /// Recorded for its segment; the message waits for its other segments.
    Recorded,
    /// The segment already had a final receipt, or the message was already final.
    Duplicate,
    /// No segment has this provider id (yet).
    Unknown,
}

/// A change to a webhook asked by `PATCH`.
#[derive(Debug, Default)]
pub struct WebhookChange {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

impl Tx<'_> {
    pub(super) fn get_message(&self, id: &str) -> Result<Option<Message>, StoreError> {
        self.messages
            .get(id)?
            .map(|v| decode(v.value()))
            .transpose()
    }

    fn put_message(&mut self, m: &Message) -> Result<(), StoreError> {
        self.messages.insert(m.id.as_str(), encode(m).as_slice())?;
        Ok(())
    }

    fn get_account(&self, id: &str) -> Result<Option<Account>, StoreError> {
        self.accounts
            .get(id)?
            .map(|v| decode(v.value()))
            .transpose()
    }

    fn put_account(&mut self, a: &Account) -> Result<(), StoreError> {
        self.accounts.insert(a.id.as_str(), encode(a).as_slice())?;
        Ok(())
    }

    fn get_webhook(&self, id: &str) -> Result<Option<Webhook>, StoreError> {
        self.webhooks
            .get(id)?
            .map(|v| decode(v.value()))
            .transpose()
    }

    /// Moves the message's entry in the jobs table (or removes it with `None`).
    fn set_job(&mut self, m: &mut Message, next: Option<(u64, Job)>) -> Result<(), StoreError> {
        if let Some(old) = m.job_due_ms.take() {
            self.jobs.remove((old, m.id.as_str()))?;
        }
        if let Some((due, job)) = next {
            self.jobs
                .insert((due, m.id.as_str()), encode(&job).as_slice())?;
            m.job_due_ms = Some(due);
            self.job_queued(due);
        }
        Ok(())
    }

    /// Moves `m` forward to `status` and writes the webhook deliveries of the change.
    /// A backward or repeated move is refused with `false` and writes nothing.
    fn transition(
        &mut self,
        m: &mut Message,
        status: Status,
        reason: &str,
    ) -> Result<bool, StoreError> {
        if !m.status.can_become(status) {
            return Ok(false);
        }
        m.status = status;
        m.status_reason = reason.to_string();
        m.updated_ms = self.now_ms.max(m.updated_ms);
        if status.is_final() {
            self.set_job(m, None)?;
        }
        self.emit_status_event(m)?;
        Ok(true)
    }

    /// The account's webhooks, from the writer's cache or read into it.
    fn account_hooks(&mut self, account_id: &str) -> Result<Arc<[Arc<Webhook>]>, StoreError> {
        if let Some(hooks) = self.hooks.get(account_id) {
            return Ok(hooks);
        }
        let mut found = Vec::new();
        for entry in self
            .account_webhooks
            .range((account_id, "")..(account_id, CHILD_MAX))?
        {
            let (key, _) = entry?;
            let (_, webhook_id) = key.value();
            if let Some(hook) = self.get_webhook(webhook_id)? {
                found.push(Arc::new(hook));
            }
        }
        let hooks: Arc<[Arc<Webhook>]> = found.into();
        self.hooks.keep(account_id, hooks.clone());
        Ok(hooks)
    }

    /// Writes one delivery, and its due entry, per enabled webhook of the account that
    /// subscribes to `sms.status`.
    fn emit_status_event(&mut self, m: &Message) -> Result<(), StoreError> {
        let view = m.view();
        let hooks = self.account_hooks(&m.account_id)?;
        for hook in hooks.iter().filter(|h| h.wants(EVENT_SMS_STATUS)) {
            let id = ids::new(Kind::Delivery, self.now_ms);
            let payload = EventPayload {
                data: [&view],
                webhook_id: &hook.id,
                id: &id,
                kind: EVENT_SMS_STATUS,
            };
            let delivery = Delivery {
                payload: serde_json::to_vec(&payload)
                    .map_err(|e| StoreError::Storage(format!("payload: {e}")))?,
                id,
                webhook_id: hook.id.clone(),
                account_id: m.account_id.clone(),
                message_id: m.id.clone(),
                attempts: 0,
                state: DeliveryState::Pending,
                next_ms: Some(self.now_ms),
                created_ms: self.now_ms,
            };
            let did = delivery.id.as_str();
            self.deliveries.insert(did, encode(&delivery).as_slice())?;
            self.webhook_deliveries
                .insert((hook.id.as_str(), did), ())?;
            self.due.insert((self.now_ms, did), ())?;
            // Offered to the engine after the commit rather than announced to its scan.
            self.fresh_deliveries.push(DueDelivery {
                due_ms: self.now_ms,
                delivery,
                webhook: Some(hook.clone()),
            });
        }
        Ok(())
    }

    /// Stores a new account and its first key.
    pub fn create_account(&mut self, account: &Account, key: &ApiKey) -> Result<(), StoreError> {
        self.put_account(account)?;
        self.api_keys
            .insert(key.id.as_str(), encode(key).as_slice())?;
        Ok(())
    }

    /// Adds `micros` (negative to debit) to an account's balance; `None` if it is unknown.
    pub fn credit_account(&mut self, id: &str, micros: i64) -> Result<Option<Account>, StoreError> {
        let Some(mut account) = self.get_account(id)? else {
            return Ok(None);
        };
        account.balance_micros = account.balance_micros.saturating_add(micros);
        self.put_account(&account)?;
        Ok(Some(account))
    }

    /// Stores a new key for an existing account; `false` if the account is unknown.
    pub fn create_key(&mut self, key: &ApiKey) -> Result<bool, StoreError> {
        if self.get_account(&key.account_id)?.is_none() {
            return Ok(false);
        }
        self.api_keys
            .insert(key.id.as_str(), encode(key).as_slice())?;
        Ok(true)
    }

    /// Marks a key revoked; `false` if it is unknown. Only [`super::Store::revoke_key`]
    /// calls it, so that the key cache forgets the key too.
    pub(super) fn revoke_key(&mut self, key_id: &str) -> Result<bool, StoreError> {
        let found: Option<ApiKey> = self
            .api_keys
            .get(key_id)?
            .map(|v| decode(v.value()))
            .transpose()?;
        let Some(mut key) = found else {
            return Ok(false);
        };
        key.revoked = true;
        self.api_keys.insert(key_id, encode(&key).as_slice())?;
        Ok(true)
    }

    /// Stores a new `pending` message with its submit job, unless its idempotency key says
    /// it is a retry.
    pub fn create_sms(&mut self, req: CreateSms) -> Result<Created, StoreError> {
        let CreateSms {
            mut message,
            idempotency,
        } = req;
        let account = message.account_id.clone();

        if let Some(idem) = &idempotency {
            let seen: Option<IdempotentReply> = self
                .idempotency
                .get((account.as_str(), idem.key.as_str()))?
                .map(|v| decode(v.value()))
                .transpose()?;
            match seen {
                Some(r)
                    if r.expires_ms > self.now_ms && r.request_sha256 == idem.request_sha256 =>
                {
                    return Ok(Created::Replay(r.response));
                }
                Some(r) if r.expires_ms > self.now_ms => return Ok(Created::Conflict),
                _ => {}
            }
        }

        // The batch's time, not the request's: keys must grow in commit order (see
        // `Store::due_jobs`). The job is offered to the processor after the commit rather
        // than announced to its scan (see `Wakers`).
        let due = self.now_ms;
        self.jobs
            .insert((due, message.id.as_str()), encode(&Job::Submit).as_slice())?;
        message.job_due_ms = Some(due);
        self.put_message(&message)?;
        self.account_messages
            .insert((account.as_str(), message.id.as_str()), ())?;
        let response = serde_json::to_vec(&message.view())
            .map_err(|e| StoreError::Storage(format!("response: {e}")))?;

        if let Some(idem) = idempotency {
            let reply = IdempotentReply {
                request_sha256: idem.request_sha256,
                message_id: message.id.clone(),
                response: response.clone(),
                expires_ms: self.now_ms + idem.keep_ms,
            };
            self.idempotency.insert(
                (account.as_str(), idem.key.as_str()),
                encode(&reply).as_slice(),
            )?;
        }
        self.fresh_jobs.push(DueJob {
            due_ms: due,
            message_id: message.id.clone(),
            job: Job::Submit,
            message: Some(message),
        });
        Ok(Created::New(response))
    }

    /// Debits the price of a pending message once; a short balance makes it `errored` /
    /// `insufficient_balance` with price 0 and the balance untouched.
    pub fn charge(
        &mut self,
        message_id: &str,
        price_micros: i64,
        billing: bool,
    ) -> Result<ChargeOutcome, StoreError> {
        let Some(mut m) = self.get_message(message_id)? else {
            return Ok(ChargeOutcome::AlreadyDone { charged: false });
        };
        if m.status != Status::Pending || m.charged {
            return Ok(ChargeOutcome::AlreadyDone { charged: m.charged });
        }

        if billing {
            let Some(mut account) = self.get_account(&m.account_id)? else {
                self.transition(&mut m, Status::Errored, "insufficient_balance")?;
                self.put_message(&m)?;
                return Ok(ChargeOutcome::Insufficient);
            };
            if account.balance_micros < price_micros {
                self.transition(&mut m, Status::Errored, "insufficient_balance")?;
                self.put_message(&m)?;
                return Ok(ChargeOutcome::Insufficient);
            }
            account.balance_micros -= price_micros;
            self.put_account(&account)?;
            m.price_micros = price_micros;
        }
        m.charged = true;
        self.put_message(&m)?;
        Ok(ChargeOutcome::Charged)
    }

    /// Makes a message `errored` with `reason`. When none of its segments was accepted by
    /// the provider, the charge is refunded: nothing was sent. `false` if already final.
    pub fn fail(&mut self, message_id: &str, reason: &str) -> Result<bool, StoreError> {
        let Some(mut m) = self.get_message(message_id)? else {
            return Ok(false);
        };
        if m.status.is_final() {
            return Ok(false);
        }
        let nothing_sent = m.segments.iter().all(|s| s.provider_id.is_none());
        if m.charged && nothing_sent && m.price_micros > 0 {
            self.credit_account(&m.account_id.clone(), m.price_micros)?;
            m.price_micros = 0;
            m.charged = false;
        }
        self.transition(&mut m, Status::Errored, reason)?;
        self.put_message(&m)?;
        Ok(true)
    }

    /// Records that the provider accepted segment `index` under `provider_id`; the first
    /// acceptance makes the message `sent`, the last starts the receipt deadline.
    pub fn segment_accepted(
        &mut self,
        message_id: &str,
        index: usize,
        provider: &str,
        provider_id: &str,
        receipt_deadline_ms: u64,
    ) -> Result<SegmentOutcome, StoreError> {
        let Some(mut m) = self.get_message(message_id)? else {
            return Ok(SegmentOutcome::Ignored);
        };
        if m.status.is_final() {
            return Ok(SegmentOutcome::Ignored);
        }
        let Some(segment) = m.segments.get_mut(index) else {
            return Ok(SegmentOutcome::Ignored);
        };
        segment.provider_id = Some(provider_id.to_string());
        self.provider_ids
            .insert((provider, provider_id), (message_id, index as u32))?;

        self.transition(&mut m, Status::Sent, "")?;
        let all = m.segments.iter().all(|s| s.provider_id.is_some());
        if all {
            self.set_job(&mut m, Some((receipt_deadline_ms, Job::Expire)))?;
        }
        self.put_message(&m)?;
        Ok(if all {
            SegmentOutcome::AllAccepted
        } else {
            SegmentOutcome::MoreToSend
        })
    }

    /// Puts a message's submit job back to run at `due_ms` (throttling, a lost connection).
    pub fn reschedule_submit(&mut self, message_id: &str, due_ms: u64) -> Result<(), StoreError> {
        if let Some(mut m) = self.get_message(message_id)?
            && !m.status.is_final()
        {
            self.set_job(&mut m, Some((due_ms, Job::Submit)))?;
            self.put_message(&m)?;
        }
        Ok(())
    }

    /// Applies a final receipt (`DELIVRD`, `UNDELIV`, ...) for one segment. A multipart
    /// message is `delivered` when every part is, `errored` as soon as one part is not.
    pub fn apply_receipt(
        &mut self,
        provider: &str,
        provider_id: &str,
        state: &str,
    ) -> Result<ReceiptOutcome, StoreError> {
        let found = self.provider_ids.get((provider, provider_id))?.map(|v| {
            let (id, index) = v.value();
            (id.to_string(), index as usize)
        });
        let Some((message_id, index)) = found else {
            return Ok(ReceiptOutcome::Unknown);
        };
        let Some(mut m) = self.get_message(&message_id)? else {
            return Ok(ReceiptOutcome::Unknown);
        };
        let Some(segment) = m.segments.get_mut(index) else {
            return Ok(ReceiptOutcome::Unknown);
        };
        if segment.final_state.is_some() {
            return Ok(ReceiptOutcome::Duplicate);
        }
        segment.final_state = Some(state.to_string());

        let outcome = if m.status.is_final() {
            ReceiptOutcome::Duplicate
        } else if state != "DELIVRD" {
            self.transition(&mut m, Status::Errored, state)?;
            ReceiptOutcome::Changed(Status::Errored)
        } else if m
            .segments
            .iter()
            .all(|s| s.final_state.as_deref() == Some("DELIVRD"))
        {
            self.transition(&mut m, Status::Delivered, "DELIVRD")?;
            ReceiptOutcome::Changed(Status::Delivered)
        } else {
            ReceiptOutcome::Recorded
        };
        self.put_message(&m)?;
        Ok(outcome)
    }

    /// The receipt deadline passed: a message still not final becomes `errored` / `UNKNOWN`.
    pub fn expire(&mut self, message_id: &str) -> Result<bool, StoreError> {
        let Some(mut m) = self.get_message(message_id)? else {
            return Ok(false);
        };
        let changed = self.transition(&mut m, Status::Errored, "UNKNOWN")?;
        if !changed {
            self.set_job(&mut m, None)?;
        }
        self.put_message(&m)?;
        Ok(changed)
    }

    /// Stores a new webhook.
    pub fn create_webhook(&mut self, hook: &Webhook) -> Result<(), StoreError> {
        self.hooks.forget(&hook.account_id);
        self.webhooks
            .insert(hook.id.as_str(), encode(hook).as_slice())?;
        self.account_webhooks
            .insert((hook.account_id.as_str(), hook.id.as_str()), ())?;
        Ok(())
    }

    /// Applies a `PATCH` to the account's webhook; `None` if it has no such webhook.
    pub fn update_webhook(
        &mut self,
        account_id: &str,
        id: &str,
        change: WebhookChange,
    ) -> Result<Option<Webhook>, StoreError> {
        self.hooks.forget(account_id);
        let Some(mut hook) = self.get_webhook(id)?.filter(|h| h.account_id == account_id) else {
            return Ok(None);
        };
        if let Some(url) = change.url {
            hook.url = url;
        }
        if let Some(events) = change.events {
            hook.events = events;
        }
        if let Some(enabled) = change.enabled {
            if enabled && !hook.enabled {
                self.resume_deliveries(id)?;
            }
            hook.enabled = enabled;
        }
        self.webhooks.insert(id, encode(&hook).as_slice())?;
        Ok(Some(hook))
    }

    /// Unregisters the account's webhook and drops its deliveries, waiting or done;
    /// `false` if it has no such webhook.
    pub fn delete_webhook(&mut self, account_id: &str, id: &str) -> Result<bool, StoreError> {
        self.hooks.forget(account_id);
        if self
            .get_webhook(id)?
            .filter(|h| h.account_id == account_id)
            .is_none()
        {
            return Ok(false);
        }
        let mut delivery_ids = Vec::new();
        for entry in self.webhook_deliveries.range((id, "")..(id, CHILD_MAX))? {
            let (key, _) = entry?;
            delivery_ids.push(key.value().1.to_string());
        }
        for did in &delivery_ids {
            let found: Option<Delivery> = self
                .deliveries
                .remove(did.as_str())?
                .map(|v| decode(v.value()))
                .transpose()?;
            if let Some(d) = found {
                if let Some(next) = d.next_ms {
                    self.due.remove((next, did.as_str()))?;
                }
                for n in 1..=d.attempts {
                    self.attempts.remove((did.as_str(), n))?;
                }
            }
            self.webhook_deliveries.remove((id, did.as_str()))?;
        }
        self.webhooks.remove(id)?;
        self.account_webhooks.remove((account_id, id))?;
        Ok(true)
    }
}
