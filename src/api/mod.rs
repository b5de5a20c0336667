//! The HTTP API (DESIGN section 1): routing, the shared state of handlers, and the server.
//!
//! Handlers live with their resource (`sms`, `webhooks`); they validate, then ask the store.
//! Every answer that is not a success is an [`ApiError`], including unknown paths, wrong
//! methods and timeouts, so clients always get the JSON error body.

mod error;
mod extract;
mod sms;
mod webhooks;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;

pub use error::ApiError;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::provider::Provider;
use crate::store::Store;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<Config>,
    pub clock: SharedClock,
    /// The provider, asked by `/readyz` whether it can take submits.
    pub provider: Arc<Provider>,
}

/// The routes of the API.
pub fn router(state: AppState) -> Router {
    let timeout = state.config.api.request_timeout;
    Router::new()
        .route("/v1/sms", post(sms::create_sms).get(sms::list_sms))
        .route("/v1/sms/{id}", get(sms::get_sms))
        .route(
            "/v1/webhooks",
            post(webhooks::create_webhook).get(webhooks::list_webhooks),
        )
        .route(
            "/v1/webhooks/{id}",
            get(webhooks::get_webhook)
                .patch(webhooks::update_webhook)
                .delete(webhooks::delete_webhook),
        )
        .route(
            "/v1/webhooks/{id}/deliveries",
            get(webhooks::list_deliveries),
        )
        .route(
            "/v1/webhooks/{id}/deliveries/{delivery_id}/replay",
            post(webhooks::replay_delivery),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async { ApiError::not_found("path") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(middleware::from_fn_with_state(timeout, request_timeout))
        .with_state(state)
}

/// Answers `503 unavailable` for a request that takes longer than `api.request_timeout`.
async fn request_timeout(
    State(limit): State<std::time::Duration>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::unavailable("the request took too long").into_response(),
    }
}

/// `GET /healthz`: the process is up.
async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: the store answers and the provider can take submits.
async fn readyz(State(state): State<AppState>) -> Response {
    let store_ok = state.store.read(|_| Ok(())).await.is_ok();
    let provider_ok = state.provider.is_ready();
    if store_ok && provider_ok {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        ApiError::unavailable("store or provider not ready").into_response()
    }
}

/// Serves the API on `listener` until `shutdown` resolves, then lets in-flight requests
/// finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
