//! Prometheus metrics, served in the text exposition format on their own listener
//! (`metrics.listen`, default 127.0.0.1:9464) so they can be scraped without API keys and
//! without exposing them on the API port.
//!
//! Counters are bumped where the events happen (the API, the processor, the webhook
//! engine); gauges that describe the store (deliveries waiting, lag of the oldest due
//! delivery) and the SMPP links are read when Prometheus scrapes.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::provider::Provider;
use crate::store::Store;

type Labels = Vec<(&'static str, String)>;

/// Every metric smswire exports.
pub struct Metrics {
    registry: Registry,
    accepted: Counter,
    finals: Family<Labels, Counter>,
    attempts: Family<Labels, Counter>,
    http: Family<Labels, Counter>,
    waiting: Gauge,
    due_lag: Gauge<f64, AtomicU64>,
    smpp_bound: Gauge,
    smpp_window: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("smswire");
        let m = Metrics {
            accepted: Counter::default(),
            finals: Family::default(),
            attempts: Family::default(),
            http: Family::default(),
            waiting: Gauge::default(),
            due_lag: Gauge::default(),
            smpp_bound: Gauge::default(),
            smpp_window: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "messages_accepted",
            "Messages accepted by POST /v1/sms",
            m.accepted.clone(),
        );
        registry.register(
            "messages_final",
            "Messages that reached a final status, by status",
            m.finals.clone(),
        );
        registry.register(
            "webhook_attempts",
            "Webhook call attempts, by outcome",
            m.attempts.clone(),
        );
        registry.register(
            "http_requests",
            "API requests, by route and status class",
            m.http.clone(),
        );
        registry.register(
            "deliveries_waiting",
            "Webhook deliveries waiting in the due queue",
            m.waiting.clone(),
        );
        registry.register(
            "due_lag_seconds",
            "How late the oldest due webhook delivery is",
            m.due_lag.clone(),
        );
        registry.register(
            "smpp_sessions_bound",
            "SMPP connections bound for sending",
            m.smpp_bound.clone(),
        );
        registry.register(
            "smpp_window_in_use",
            "submit_sm waiting for their response",
            m.smpp_window.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// A message was accepted (`201`).
    pub fn message_accepted(&self) {
        self.accepted.inc();
    }

    /// A message reached `delivered` or `errored`.
    pub fn message_final(&self, status: &'static str) {
        self.finals
            .get_or_create(&vec![("status", status.to_string())])
            .inc();
    }

    /// A webhook call ended: `succeeded`, `failed` (to be replayed) or `discarded`.
    pub fn webhook_attempt(&self, outcome: &'static str) {
        self.attempts
            .get_or_create(&vec![("outcome", outcome.to_string())])
            .inc();
    }

    /// An API request was answered.
    pub fn http_request(&self, route: &str, status: u16) {
        let class = format!("{}xx", status / 100);
        self.http
            .get_or_create(&vec![("route", route.to_string()), ("class", class)])
            .inc();
    }

    /// Refreshes the gauges and renders every metric.
    async fn render(&self, store: &Store, provider: &Provider) -> String {
        if let Ok((waiting, oldest)) = store.due_summary().await {
            self.waiting.set(waiting as i64);
            let now = store.clock().now_ms();
            let lag = oldest.map_or(0, |due| now.saturating_sub(due));
            self.due_lag.set(lag as f64 / 1000.0);
        }
        let (bound, window) = provider.link_state();
        self.smpp_bound.set(bound as i64);
        self.smpp_window.set(window as i64);

        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

#[derive(Clone)]
struct Scrape {
    metrics: Arc<Metrics>,
    store: Store,
    provider: Arc<Provider>,
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    store: Store,
    provider: Arc<Provider>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(Scrape {
            metrics,
            store,
            provider,
        });
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "metrics listener failed");
    }
}

async fn scrape(State(s): State<Scrape>) -> impl IntoResponse {
    let text = s.metrics.render(&s.store, &s.provider).await;
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}
