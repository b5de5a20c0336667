//! The HTTP API (DESIGN section 1): routing, the shared state of handlers, and the server.
//!
//! Handlers live with their resource (`sms`, `webhooks`); they validate, then ask the store.
//! Every answer that is not a success is an [`ApiError`], including unknown paths, wrong
//! methods and timeouts, so clients always get the JSON error body.

mod error;
mod extract;
pub mod server;
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
use crate::metrics::Metrics;
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
    pub metrics: Arc<Metrics>,
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
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            count_request,
        ))
        .with_state(state)
}

/// Counts every answer by route (the matched pattern, not the raw path, so ids do not
/// explode the label set) and status class.
async fn count_request(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    metrics.http_request(&route, response.status().as_u16());
    response
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

/// Serves the API on `listener` (over TLS when `tls` is set) until `shutdown` resolves,
/// then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let limits = server::Limits {
        header_timeout: state.config.api.header_timeout,
        max_connections: state.config.api.max_connections,
    };
    server::serve(listener, tls, router(state), limits, shutdown).await;
}
