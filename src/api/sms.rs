//! `/v1/sms`: sending a message and reading messages back.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::extract::{ApiQuery, Caller, JsonBody};
use super::{ApiError, AppState};
use crate::clock::parse_rfc3339;
use crate::ids::{self, Kind};
use crate::model::{Message, Segment, SmsOut, Status};
use crate::sms::{number, segments};
use crate::store::{CreateSms, Created, IdempotencyKey, MessageFilter};

/// Longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY: usize = 255;
/// How long an idempotency key is remembered.
const IDEMPOTENCY_KEEP_MS: u64 = 24 * 3600 * 1000;
/// Default and largest page of `GET /v1/sms`.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

/// The body of `POST /v1/sms`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsIn {
    from: String,
    to: String,
    body: String,
}

/// `POST /v1/sms`: stores the message durably, then answers `201` with it, `pending`.
pub async fn create_sms(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(sms): JsonBody<SmsIn>,
) -> Result<Response, ApiError> {
    let idempotency = idempotency_key(&headers, &sms)?;
    let parts = check_sms(&sms, state.config.sms.max_parts)?;

    let now = state.clock.now_ms();
    let message = Message {
        id: ids::new(Kind::Sms, now),
        account_id: caller.account_id,
        from: sms.from,
        to: number::normalize_recipient(&sms.to).to_string(),
        body: sms.body,
        created_ms: now,
        updated_ms: now,
        status: Status::Pending,
        status_reason: String::new(),
        price_micros: 0,
        charged: false,
        segments: vec![Segment::default(); parts],
        job_due_ms: None,
    };
    let created = state
        .store
        .write(move |tx| {
            tx.create_sms(CreateSms {
                message,
                idempotency,
            })
        })
        .await?;

    match created {
        Created::New(body) => {
            state.metrics.message_accepted();
            Ok((
                StatusCode::CREATED,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response())
        }
        Created::Replay(body) => Ok((
            StatusCode::CREATED,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()),
        Created::Conflict => Err(ApiError::conflict(
            "this Idempotency-Key was used with a different request",
        )),
    }
}

/// Refuses what cannot be a message at all; returns the number of parts.
fn check_sms(sms: &SmsIn, max_parts: usize) -> Result<usize, ApiError> {
    if sms.body.is_empty() {
        return Err(ApiError::invalid("body must not be empty"));
    }
    if !number::is_recipient_shape(&sms.to) {
        return Err(ApiError::invalid(
            "to must be a phone number: digits with an optional leading +",
        ));
    }
    if !number::is_sender_shape(&sms.from) {
        return Err(ApiError::invalid(
            "from must be a phone number or 1 to 11 GSM characters",
        ));
    }
    let parts = segments::count(&sms.body);
    if parts > max_parts {
        return Err(ApiError::invalid(format!(
            "body needs {parts} parts; at most {max_parts} are allowed"
        )));
    }
    Ok(parts)
}

fn idempotency_key(headers: &HeaderMap, sms: &SmsIn) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
        .ok_or_else(|| ApiError::invalid("Idempotency-Key must be 1 to 255 visible characters"))?;

    // The request is identified by its fields, not its bytes, so a retry that reorders the
    // JSON or changes whitespace is still the same request.
    let mut hash = Sha256::new();
    for field in [&sms.from, &sms.to, &sms.body] {
        hash.update((field.len() as u64).to_be_bytes());
        hash.update(field.as_bytes());
    }
    Ok(Some(IdempotencyKey {
        key: key.to_string(),
        request_sha256: hash.finalize().into(),
        keep_ms: IDEMPOTENCY_KEEP_MS,
    }))
}

/// `GET /v1/sms/{id}`: one of the caller's messages.
pub async fn get_sms(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SmsOut>, ApiError> {
    let message = state.store.message(id).await?;
    message
        .filter(|m| m.account_id == caller.account_id)
        .map(|m| Json(m.view()))
        .ok_or_else(|| ApiError::not_found("message"))
}

/// The query of `GET /v1/sms`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SmsListQuery {
    limit: Option<usize>,
    cursor: Option<String>,
    status: Option<Status>,
    to: Option<String>,
    created_after: Option<String>,
    created_before: Option<String>,
}

/// A page of messages.
#[derive(Debug, serde::Serialize)]
pub struct SmsPage {
    data: Vec<SmsOut>,
    next: Option<String>,
}

/// `GET /v1/sms`: the caller's messages, newest first.
pub async fn list_sms(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<SmsListQuery>,
) -> Result<Json<SmsPage>, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(format!("limit must be 1 to {MAX_LIMIT}")));
    }
    let time = |field: &str, value: Option<String>| -> Result<Option<u64>, ApiError> {
        value
            .map(|v| {
                parse_rfc3339(&v)
                    .ok_or_else(|| ApiError::invalid(format!("{field} must be an RFC 3339 time")))
            })
            .transpose()
    };
    let filter = MessageFilter {
        status: q.status,
        to: q.to.map(|t| number::normalize_recipient(&t).to_string()),
        created_after_ms: time("createdAfter", q.created_after)?,
        created_before_ms: time("createdBefore", q.created_before)?,
    };
    let cursor = q.cursor.filter(|c| !c.is_empty());

    let page = state
        .store
        .messages(caller.account_id, filter, cursor, limit)
        .await?;
    Ok(Json(SmsPage {
        data: page.items.iter().map(Message::view).collect(),
        next: page.next,
    }))
}
