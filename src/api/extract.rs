//! Extractors that turn requests into typed values or into an [`ApiError`], never into
//! axum's plain-text rejections: the JSON body with its size limit, the query string, and
//! the caller's account from the API key headers.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};

/// The JSON body of a request, bounded by `api.max_body_bytes`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.config.api.max_body_bytes;
        let declared = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(ApiError::too_large(limit));
        }

        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| ApiError::too_large(limit))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::invalid(
                "request body is empty; a JSON object is expected",
            ));
        }
        let value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))?;
        Ok(JsonBody(value))
    }
}

/// The query string, parsed strictly: an unknown parameter is a `400`, not ignored.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(query)
            .map(ApiQuery)
            .map_err(|e| ApiError::invalid(format!("invalid query string: {e}")))
    }
}

/// The account a request acts for, proven by its API key.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account_id: String,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (Some(key_id), Some(secret)) = (header("x-api-key-id"), header("x-api-key-secret"))
        else {
            return Err(ApiError::unauthorized());
        };

        let key = state.store.api_key_cached(key_id).await?;
        let Some(key) = key.filter(|k| !k.revoked) else {
            return Err(ApiError::unauthorized());
        };
        let presented: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        if !bool::from(presented.ct_eq(&key.secret_sha256)) {
            return Err(ApiError::unauthorized());
        }
        Ok(Caller {
            account_id: key.account_id,
        })
    }
}
