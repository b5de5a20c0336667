//! The daemon: opens the store, starts the provider, the processor, the admin socket and the
//! API, and stops them in the right order.
//!
//! [`Daemon::start`] is what `smswire serve` and the tests call; it returns once every
//! listener is bound, with their real addresses, so tests can bind to port 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::api::{self, AppState};
use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::processor::Processor;
use crate::provider::Provider;
use crate::store::{Store, WriterThread};
use crate::webhook::Engine;
use crate::{admin, processor};

/// Receipts waiting to be applied before providers wait to hand more over.
const RECEIPT_QUEUE: usize = 8192;

/// A running daemon.
pub struct Daemon {
    api_addr: SocketAddr,
    admin_socket: PathBuf,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    provider: Arc<Provider>,
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
        let (store, writer) = open_store(&config, clock.clone()).await?;
        let (shutdown, stop) = watch::channel(false);
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
        let processor = Processor::new(store.clone(), provider.clone(), &config);
        tasks.push(tokio::spawn(processor.clone().run_jobs(stop.clone())));
        tasks.push(tokio::spawn(processor::Processor::run_receipts(
            processor,
            receipts_rx,
            stop.clone(),
        )));

        // Webhook engine.
        let engine = Engine::new(store.clone(), &config.webhooks);
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

        // API.
        let listener = TcpListener::bind(config.api.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", config.api.listen))?;
        let api_addr = listener
            .local_addr()
            .map_err(|e| format!("cannot read the API address: {e}"))?;
        let state = AppState {
            store,
            config: config.clone(),
            clock,
            provider: provider.clone(),
        };
        let mut api_stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let stopped = async move {
                let _ = api_stop.wait_for(|s| *s).await;
            };
            if let Err(e) = api::serve(listener, state, stopped).await {
                tracing::error!(error = %e, "API server failed");
            }
        }));

        tracing::info!(api = %api_addr, admin = %admin_socket.display(), store = %config.store.path.display(), "smswire started");
        Ok(Daemon {
            api_addr,
            admin_socket,
            shutdown,
            tasks,
            provider,
            writer,
        })
    }

    /// The address the API listens on.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// The path of the admin socket.
    pub fn admin_socket(&self) -> &std::path::Path {
        &self.admin_socket
    }

    /// Stops accepting, lets work in flight finish, commits, and closes the store.
    pub async fn shutdown(self) {
        tracing::info!("shutting down");
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        self.provider.stopped().await;
        let writer = self.writer;
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        tracing::info!("stopped");
    }
}

async fn open_store(config: &Config, clock: SharedClock) -> Result<(Store, WriterThread), String> {
    let path = config.store.path.clone();
    let (cache, batch) = (config.store.cache_bytes, config.store.max_batch);
    tokio::task::spawn_blocking(move || Store::open(&path, cache, batch, clock))
        .await
        .map_err(|e| format!("cannot open the store: {e}"))?
        .map_err(|e| format!("cannot open the store {}: {e}", config.store.path.display()))
}
