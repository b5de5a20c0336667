//! The records smswire keeps and the JSON views the API and the webhooks show of them.
//!
//! These types are what the store encodes (with postcard, inside a versioned envelope) and
//! what the processor and the API reason about. Their JSON views follow the documented API
//! exactly: camelCase names, RFC 3339 times, decimal prices.

use serde::{Deserialize, Serialize};

use crate::clock::format_ms;
use crate::sms::price::to_units;

/// Where a message is in its life; it only ever moves forward (invariant 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Accepted and durably stored, not yet taken by the provider.
    Pending,
    /// Accepted by the provider (its first segment was acknowledged).
    Sent,
    /// Every segment was reported delivered.
    Delivered,
    /// Refused, undeliverable, expired or never confirmed.
    Errored,
}

impl Status {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Sent => "sent",
            Status::Delivered => "delivered",
            Status::Errored => "errored",
        }
    }

    /// Whether no further change can happen.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Delivered | Status::Errored)
    }

    /// Whether moving from `self` to `next` goes forward.
    pub fn can_become(self, next: Status) -> bool {
        matches!(
            (self, next),
            (Status::Pending, Status::Sent)
                | (Status::Pending, Status::Errored)
                | (Status::Sent, Status::Delivered)
                | (Status::Sent, Status::Errored)
        )
    }
}

/// One segment of a message as the provider knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// The id the provider gave it on acceptance; `None` until accepted.
    pub provider_id: Option<String>,
    /// The final state reported for it, once a receipt came: `DELIVRD`, `UNDELIV`, ...
    pub final_state: Option<String>,
}

/// A message, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    pub account_id: String,
    pub from: String,
    /// E.164 digits without `+`, as the client sent them (minus the `+`).
    pub to: String,
    pub body: String,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub status: Status,
    pub status_reason: String,
    /// What was charged, in micro-units; 0 until charged and after a refund.
    pub price_micros: i64,
    /// Whether the balance was debited for it (so a restart never charges twice).
    pub charged: bool,
    pub segments: Vec<Segment>,
    /// The due time of the message's entry in the jobs table, if it has one.
    pub job_due_ms: Option<u64>,
}

/// The message object of the API and of webhook payloads.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SmsOut {
    pub body: String,
    pub from: String,
    pub to: String,
    pub created_at: String,
    pub updated_at: String,
    pub id: String,
    pub status: Status,
    pub status_reason: String,
    /// Written as an integer when whole (`0`, `1`), else as a decimal (`0.08`).
    #[serde(serialize_with = "price_number")]
    pub price: f64,
    pub parts: u32,
}

fn price_number<S: serde::Serializer>(price: &f64, s: S) -> Result<S::Ok, S::Error> {
    if price.fract() == 0.0 && price.abs() < 1e15 {
        s.serialize_i64(*price as i64)
    } else {
        s.serialize_f64(*price)
    }
}

impl Message {
    /// The message as the API shows it.
    pub fn view(&self) -> SmsOut {
        SmsOut {
            body: self.body.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
            created_at: format_ms(self.created_ms),
            updated_at: format_ms(self.updated_ms),
            id: self.id.clone(),
            status: self.status,
            status_reason: self.status_reason.clone(),
            price: to_units(self.price_micros),
            parts: self.segments.len() as u32,
        }
    }
}

/// What the processor must do next for a message (the value of the jobs table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Job {
    /// Validate, charge and submit the segments not yet accepted.
    Submit,
    /// The receipt deadline: if the message is still not final, it becomes `errored` /
    /// `UNKNOWN`.
    Expire,
}

/// A customer account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub balance_micros: i64,
    pub currency: String,
    pub created_ms: u64,
}

/// An API key; the secret itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: String,
    pub account_id: String,
    pub secret_sha256: [u8; 32],
    pub created_ms: u64,
    pub revoked: bool,
}

/// The only event type there is today.
pub const EVENT_SMS_STATUS: &str = "sms.status";

/// A registered webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    pub id: String,
    pub account_id: String,
    pub url: String,
    pub events: Vec<String>,
    /// `whsec_` and base64 of the signing key.
    pub secret: String,
    pub enabled: bool,
    pub created_ms: u64,
}

impl Webhook {
    /// Whether the webhook wants `event` now.
    pub fn wants(&self, event: &str) -> bool {
        self.enabled && self.events.iter().any(|e| e == event)
    }
}

/// The webhook object of the API.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookOut {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub created_at: String,
    pub secret: String,
    pub enabled: bool,
}

impl Webhook {
    /// The webhook as the API shows it.
    pub fn view(&self) -> WebhookOut {
        WebhookOut {
            id: self.id.clone(),
            url: self.url.clone(),
            events: self.events.clone(),
            created_at: format_ms(self.created_ms),
            secret: self.secret.clone(),
            enabled: self.enabled,
        }
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Waiting for its next attempt.
    Pending,
    /// A receiver answered 2xx.
    Succeeded,
    /// Every attempt failed; it is kept for the log and never sent again by itself.
    Discarded,
}

/// One event to one webhook: the unit of webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The payload's `id` and the `webhook-id` header; the same on every replay.
    pub id: String,
    pub webhook_id: String,
    pub account_id: String,
    pub message_id: String,
    /// The exact JSON bytes sent on every attempt. (`serde_bytes` reads them as one slice;
    /// postcard writes a byte vector the same way with or without it.)
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    pub attempts: u32,
    pub state: DeliveryState,
    /// When the next attempt is due, while pending.
    pub next_ms: Option<u64>,
    pub created_ms: u64,
}

/// One attempt to deliver, as kept in the attempt log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    pub at_ms: u64,
    pub duration_ms: u64,
    /// The HTTP status the receiver answered, if it answered.
    pub status_code: Option<u16>,
    /// Why the call failed without an answer (timeout, refused, TLS, address not allowed).
    pub error: Option<String>,
    /// The first bytes of the response body, as text.
    pub response: String,
}

/// The body of a webhook call.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventPayload<'a> {
    pub data: [&'a SmsOut; 1],
    pub webhook_id: &'a str,
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'a str,
}

/// A stored idempotency key: what was asked and what was answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotentReply {
    pub request_sha256: [u8; 32],
    pub message_id: String,
    #[serde(with = "serde_bytes")]
    pub response: Vec<u8>,
    pub expires_ms: u64,
}
