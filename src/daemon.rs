//! The daemon: opens the store, starts the provider, the processor, the webhook engine, the
//! admin socket, the metrics listener and the API, and stops them in the right order.
//!
//! [`Daemon::start`] is what `smswire serve` and the tests call; it returns once every
//! listener is bound, with their real addresses, so tests can bind to port 0. Under systemd
//! (`Type=notify`) it reports `READY=1` then, and `STOPPING=1` when a stop begins.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::admin;
use crate::api::{self, AppState};
use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::metrics::{self, Metrics};
use crate::processor::Processor;
use crate::provider::Provider;
use crate::store::{Batching, Store, WriterThread};
use crate::webhook::Engine;

/// Receipts waiting to be applied before providers wait to hand more over.
const RECEIPT_QUEUE: usize = 8192;

/// A running daemon.
pub struct Daemon {
    api_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    admin_socket: PathBuf,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    provider: Arc<Provider>,
    grace: Duration,
    writer: WriterThread,
}

impl Daemon {
    /// Starts a daemon on the system clock.
    pub async fn start(config: Config) -> Result<Daemon, String> {
        Daemon::start_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Starts a daemon whose schedules follow `clock`.
    pub async fn start_with_clock(config: Config, clock: SharedClock) -> Result<Daemon, String> {
        let config = Arc::new(config);
        let tls = tls(&config)?;
        let (store, writer) = open_store(&config, clock.clone()).await?;
        let (shutdown, stop) = watch::channel(false);
        let metrics = Arc::new(Metrics::default());
        let mut tasks = Vec::new();

        // Provider and processor.
        let (receipts_tx, receipts_rx) = mpsc::channel(RECEIPT_QUEUE);
        let provider = Arc::new(Provider::from_config(
            &config.provider,
            receipts_tx,
            stop.clone(),
        ));
        let waiting = store.awaiting_receipts().await.map_err(|e| e.to_string())?;
        provider.resume(waiting);
        let processor = Processor::new(store.clone(), provider.clone(), &config, metrics.clone());
        store
            .wakers()
            .set_jobs_handoff(weak_handoff(&processor, Processor::offer));
        tasks.push(tokio::spawn(processor.clone().run_jobs(stop.clone())));
        tasks.push(tokio::spawn(
            processor.run_receipts(receipts_rx, stop.clone()),
        ));

        // Webhook engine.
        let engine = Engine::new(store.clone(), &config.webhooks, metrics.clone());
        store
            .wakers()
            .set_due_handoff(weak_handoff(&engine, Engine::offer));
        tasks.push(tokio::spawn(engine.run(stop.clone())));

        // Admin socket.
        let admin_socket = config.admin_socket();
        let admin_listener = admin::bind(&admin_socket, config.admin.mode()).map_err(|e| {
            format!(
                "cannot bind the admin socket {}: {e}",
                admin_socket.display()
            )
        })?;
        tasks.push(tokio::spawn(admin::serve(
            admin_listener,
            admin_socket.clone(),
            store.clone(),
            config.billing.currency.clone(),
            stop.clone(),
        )));

        // Metrics.
        let mut metrics_addr = None;
        if config.metrics.enabled {
            let listener = bind(config.metrics.listen, "metrics").await?;
            metrics_addr = listener.local_addr().ok();
            tasks.push(tokio::spawn(metrics::serve(
                listener,
                metrics.clone(),
                store.clone(),
                provider.clone(),
                stopped(stop.clone()),
            )));
        }

        // API.
        let listener = bind(config.api.listen, "API").await?;
        let api_addr = listener
            .local_addr()
            .map_err(|e| format!("cannot read the API address: {e}"))?;
        let state = AppState {
            store,
            config: config.clone(),
            clock,
            provider: provider.clone(),
            metrics,
        };
        tasks.push(tokio::spawn(api::serve(
            listener,
            tls.clone(),
            state,
            stopped(stop.clone()),
        )));

        tracing::info!(
            api = %api_addr,
            tls = tls.is_some(),
            metrics = ?metrics_addr,
            admin = %admin_socket.display(),
            store = %config.store.path.display(),
            provider = provider.name(),
            version = env!("CARGO_PKG_VERSION"),
            "smswire started"
        );
        notify(sd_notify::NotifyState::Ready);
        Ok(Daemon {
            api_addr,
            metrics_addr,
            admin_socket,
            shutdown,
            tasks,
            provider,
            grace: config.shutdown.grace,
            writer,
        })
    }

    /// The address the API listens on.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// The address of the metrics listener, when enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The path of the admin socket.
    pub fn admin_socket(&self) -> &std::path::Path {
        &self.admin_socket
    }

    /// Stops accepting, lets work in flight finish for up to the grace time, commits, and
    /// closes the store. Work still running after the grace time is abandoned: it was not
    /// committed, so it is done again after the next start.
    pub async fn shutdown(self) {
        tracing::info!(grace = ?self.grace, "shutting down");
        notify(sd_notify::NotifyState::Stopping);
        let _ = self.shutdown.send(true);

        let deadline = tokio::time::Instant::now() + self.grace;
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                tracing::warn!("work still in flight after the grace time; abandoned");
                abort.abort();
            }
        }
        let provider = self.provider.clone();
        let unbound =
            tokio::time::timeout_at(deadline + Duration::from_secs(2), provider.stopped());
        if unbound.await.is_err() {
            tracing::warn!("provider did not unbind in time");
        }
        drop(self.provider);
        let writer = self.writer;
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        tracing::info!("stopped");
    }
}

/// Resolves when the shutdown flag turns true.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} for the {what}: {e}"))
}

fn tls(config: &Config) -> Result<Option<tokio_rustls::TlsAcceptor>, String> {
    let api = &config.api;
    if api.tls_cert.as_os_str().is_empty() {
        return Ok(None);
    }
    api::server::tls_acceptor(&api.tls_cert, &api.tls_key).map(Some)
}

/// Tells systemd about a state change; does nothing when not run by systemd.
fn notify(state: sd_notify::NotifyState<'_>) {
    if let Err(e) = sd_notify::notify(false, &[state]) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

async fn open_store(config: &Config, clock: SharedClock) -> Result<(Store, WriterThread), String> {
    let path = config.store.path.clone();
    let cache = config.store.cache_bytes;
    let batching = Batching {
        max: config.store.max_batch,
        delay: Duration::from_micros(config.store.commit_delay_us),
    };
    tokio::task::spawn_blocking(move || Store::open(&path, cache, batching, clock))
        .await
        .map_err(|e| format!("cannot open the store: {e}"))?
        .map_err(|e| format!("cannot open the store {}: {e}", config.store.path.display()))
}

/// A hand-off (see [`crate::store::Wakers`]) to `owner`'s `offer`, holding it weakly: the
/// store's writer must not keep the processor or the engine (and with them the store)
/// alive. Once the owner is gone everything is refused, and stays in the tables.
fn weak_handoff<S, T>(owner: &Arc<S>, offer: fn(&S, Vec<T>) -> Vec<T>) -> crate::store::Handoff<T>
where
    S: Send + Sync + 'static,
    T: 'static,
{
    let owner = Arc::downgrade(owner);
    Box::new(move |items| match owner.upgrade() {
        Some(o) => offer(&o, items),
        None => items,
    })
}
