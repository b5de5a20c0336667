//! `/v1/webhooks`: registering the URLs that receive status events, and reading what was
//! delivered to them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::extract::{ApiQuery, Caller, JsonBody};
use super::{ApiError, AppState};
use crate::clock::format_ms;
use crate::ids::{self, Kind};
use crate::model::{Attempt, Delivery, DeliveryState, EVENT_SMS_STATUS, Webhook, WebhookOut};
use crate::store::WebhookChange;
use crate::webhook::client::resolve;
use crate::webhook::ssrf::Policy;

/// Random bytes in a webhook signing secret (Standard Webhooks asks for 24 to 64).
const SECRET_BYTES: usize = 32;
/// Event names a webhook may subscribe to.
const EVENTS: &[&str] = &[EVENT_SMS_STATUS];

/// The body of `POST /v1/webhooks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookIn {
    url: String,
    events: Vec<String>,
}

/// The body of `PATCH /v1/webhooks/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    url: Option<String>,
    events: Option<Vec<String>>,
    enabled: Option<bool>,
}

/// `POST /v1/webhooks`: registers a webhook and shows its signing secret.
pub async fn create_webhook(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(input): JsonBody<WebhookIn>,
) -> Result<(StatusCode, Json<WebhookOut>), ApiError> {
    check_url(&state, &input.url).await?;
    check_events(&input.events)?;

    let now = state.clock.now_ms();
    let mut key = [0u8; SECRET_BYTES];
    ids::fill_random(&mut key);
    let hook = Webhook {
        id: ids::new(Kind::Webhook, now),
        account_id: caller.account_id,
        url: input.url,
        events: input.events,
        secret: format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(key)
        ),
        enabled: true,
        created_ms: now,
    };
    let view = hook.view();
    state
        .store
        .write(move |tx| tx.create_webhook(&hook))
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// `GET /v1/webhooks`: the caller's webhooks.
pub async fn list_webhooks(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let hooks = state.store.webhooks(caller.account_id).await?;
    let data: Vec<WebhookOut> = hooks.iter().map(Webhook::view).collect();
    Ok(Json(serde_json::json!({ "data": data })))
}

/// `GET /v1/webhooks/{id}`.
pub async fn get_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<WebhookOut>, ApiError> {
    owned_webhook(&state, &caller, id)
        .await
        .map(|h| Json(h.view()))
}

/// `PATCH /v1/webhooks/{id}`: changes url, events or enabled.
pub async fn update_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(patch): JsonBody<WebhookPatch>,
) -> Result<Json<WebhookOut>, ApiError> {
    if let Some(url) = &patch.url {
        check_url(&state, url).await?;
    }
    if let Some(events) = &patch.events {
        check_events(events)?;
    }
    let change = WebhookChange {
        url: patch.url,
        events: patch.events,
        enabled: patch.enabled,
    };
    let account = caller.account_id;
    let updated = state
        .store
        .write(move |tx| tx.update_webhook(&account, &id, change))
        .await?;
    updated
        .map(|h| Json(h.view()))
        .ok_or_else(|| ApiError::not_found("webhook"))
}

/// `DELETE /v1/webhooks/{id}`: unregisters it and drops its deliveries.
pub async fn delete_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let account = caller.account_id;
    let deleted = state
        .store
        .write(move |tx| tx.delete_webhook(&account, &id))
        .await?;
    if deleted {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("webhook"))
    }
}

/// The query of the deliveries listing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    limit: Option<usize>,
    cursor: Option<String>,
}

/// A delivery as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryOut {
    id: String,
    webhook_id: String,
    message_id: String,
    state: DeliveryState,
    attempt_count: u32,
    next_attempt_at: Option<String>,
    created_at: String,
    payload: serde_json::Value,
    attempts: Vec<AttemptOut>,
}

/// One attempt as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptOut {
    number: u32,
    at: String,
    duration_ms: u64,
    status_code: Option<u16>,
    error: Option<String>,
    response: String,
}

impl DeliveryOut {
    fn new(d: &Delivery, attempts: &[Attempt]) -> Self {
        DeliveryOut {
            attempts: attempts
                .iter()
                .map(|a| AttemptOut {
                    number: a.number,
                    at: format_ms(a.at_ms),
                    duration_ms: a.duration_ms,
                    status_code: a.status_code,
                    error: a.error.clone(),
                    response: a.response.clone(),
                })
                .collect(),
            id: d.id.clone(),
            webhook_id: d.webhook_id.clone(),
            message_id: d.message_id.clone(),
            state: d.state,
            attempt_count: d.attempts,
            next_attempt_at: d.next_ms.map(format_ms),
            created_at: format_ms(d.created_ms),
            payload: serde_json::from_slice(&d.payload).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// `GET /v1/webhooks/{id}/deliveries`: the webhook's deliveries, newest first.
pub async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<DeliveriesQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let hook = owned_webhook(&state, &caller, id).await?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit must be 1 to 500"));
    }
    let page = state.store.deliveries(hook.id, q.cursor, limit).await?;
    let data: Vec<DeliveryOut> = page
        .items
        .iter()
        .map(|(d, a)| DeliveryOut::new(d, a))
        .collect();
    Ok(Json(serde_json::json!({ "data": data, "next": page.next })))
}

/// `POST /v1/webhooks/{id}/deliveries/{deliveryId}/replay`: sends a delivery again now,
/// whatever its state (a discarded one too).
pub async fn replay_delivery(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, delivery_id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<DeliveryOut>), ApiError> {
    let account = caller.account_id;
    let replayed = state
        .store
        .write(move |tx| tx.replay_delivery(&account, &id, &delivery_id))
        .await?;
    let delivery = replayed.ok_or_else(|| ApiError::not_found("delivery"))?;
    let attempts = state.store.attempts(delivery.id.clone()).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(DeliveryOut::new(&delivery, &attempts)),
    ))
}

async fn owned_webhook(state: &AppState, caller: &Caller, id: String) -> Result<Webhook, ApiError> {
    state
        .store
        .webhook(id)
        .await?
        .filter(|h| h.account_id == caller.account_id)
        .ok_or_else(|| ApiError::not_found("webhook"))
}

/// Refuses a URL that is not absolute http(s), or whose host resolves to an address
/// webhooks may not reach. A name that does not resolve now is accepted: every attempt
/// checks again, on the address it connects to.
async fn check_url(state: &AppState, url: &str) -> Result<(), ApiError> {
    let bad = || ApiError::invalid("url must be an absolute http or https URL");
    let uri: Uri = url.parse().map_err(|_| bad())?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let host_ok = uri.host().is_some_and(|h| !h.is_empty());
    if !(scheme_ok && host_ok) {
        return Err(bad());
    }

    let policy = Policy::new(state.config.webhooks.allowed_networks.clone());
    let addrs = resolve(&uri).await.unwrap_or_default();
    match addrs.iter().find(|a| !policy.permits(a.ip())) {
        Some(blocked) => Err(ApiError::invalid(format!(
            "url resolves to {}, an internal address webhooks may not reach \
             (see webhooks.allowed_networks)",
            blocked.ip()
        ))),
        None => Ok(()),
    }
}

fn check_events(events: &[String]) -> Result<(), ApiError> {
    if events.is_empty() {
        return Err(ApiError::invalid("events must name at least one event"));
    }
    match events.iter().find(|e| !EVENTS.contains(&e.as_str())) {
        Some(bad) => Err(ApiError::invalid(format!(
            "unknown event {bad:?}; known events: {}",
            EVENTS.join(", ")
        ))),
        None => Ok(()),
    }
}
