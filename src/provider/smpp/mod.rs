//! The `smpp` provider: an SMPP 3.4 client (ESME) built on the rusmpp PDU codec.
//!
//! It binds as a transceiver (one connection) or as a transmitter and a receiver (two),
//! keeps each link alive with `enquire_link`, reconnects with capped backoff, submits
//! segments within a window of outstanding `submit_sm` and a throughput limit, and turns
//! `deliver_sm` receipts into [`Receipt`]s. A receipt's `deliver_sm_resp` is sent only once
//! the receipt is committed, so a receipt lost to a crash is delivered again by the SMSC.
//!
//! Limits: one connection sends (no parallel sessions to one SMSC); no TLS to the SMSC;
//! inbound messages are acknowledged and logged, not stored.

mod codec;
mod pdu;
mod receipt;
mod session;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::{Receipt, Submit, SubmitOutcome};
use crate::config::{BindMode, SmppConfig};
use pdu::Role;
use session::{Shared, SubmitRequest};

/// Submits waiting for the sending connection.
const QUEUE: usize = 1024;

/// The SMPP provider.
pub struct Smpp {
    shared: Arc<Shared>,
    requests: mpsc::Sender<SubmitRequest>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl Smpp {
    /// Starts the connections; they bind in the background and keep reconnecting until
    /// `shutdown` turns true.
    pub fn start(
        config: &SmppConfig,
        receipts: mpsc::Sender<Receipt>,
        shutdown: watch::Receiver<bool>,
    ) -> Smpp {
        let shared = Arc::new(Shared {
            config: config.clone(),
            receipts,
            sending_bound: AtomicBool::new(false),
            bound_sessions: AtomicUsize::new(0),
            window_in_use: AtomicUsize::new(0),
        });
        let (requests, queue) = mpsc::channel(QUEUE);
        let mut tasks = Vec::new();
        match config.bind {
            BindMode::Transceiver => {
                let s = session::run(Role::Transceiver, shared.clone(), Some(queue), shutdown);
                tasks.push(tokio::spawn(s));
            }
            BindMode::TransmitterReceiver => {
                let tx = session::run(
                    Role::Transmitter,
                    shared.clone(),
                    Some(queue),
                    shutdown.clone(),
                );
                let rx = session::run(Role::Receiver, shared.clone(), None, shutdown);
                tasks.push(tokio::spawn(tx));
                tasks.push(tokio::spawn(rx));
            }
        }
        Smpp {
            shared,
            requests,
            tasks: std::sync::Mutex::new(tasks),
        }
    }

    /// Submits one segment and waits for the SMSC's answer (or the loss of the link).
    pub async fn submit(&self, submit: Submit) -> SubmitOutcome {
        let retry = |reason: &str| SubmitOutcome::Retry {
            after: self.shared.config.retry_delay,
            reason: reason.to_string(),
        };
        if !self.is_bound() {
            return retry("not bound to the SMSC");
        }
        let (reply, answer) = oneshot::channel();
        if self
            .requests
            .send(SubmitRequest { submit, reply })
            .await
            .is_err()
        {
            return retry("the SMPP session stopped");
        }
        answer
            .await
            .unwrap_or_else(|_| retry("the SMPP session stopped"))
    }

    /// Whether the connection that sends is bound.
    pub fn is_bound(&self) -> bool {
        self.shared.sending_bound.load(Ordering::Relaxed)
    }

    /// Connections bound, and submits waiting for their response.
    pub fn link_state(&self) -> (usize, usize) {
        (
            self.shared.bound_sessions.load(Ordering::Relaxed),
            self.shared.window_in_use.load(Ordering::Relaxed),
        )
    }

    /// Waits until every connection has unbound (after shutdown was signalled).
    pub async fn stopped(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
    }
}
