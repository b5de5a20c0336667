//! Providers: what takes one segment to a telecom network and later reports its fate.
//!
//! The processor hands a provider one [`Submit`] at a time and gets a [`SubmitOutcome`]
//! back; final receipts arrive later, on their own, as [`Receipt`]s on the channel the
//! provider was built with. That split is the seam every provider fits: a submit answer is
//! what SMPP's `submit_sm_resp` says, a receipt is what its `deliver_sm` says.

pub mod simulator;
pub mod smpp;

use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::config::{ProviderConfig, ProviderKind};
use crate::sms::segments::Coding;

/// One segment to submit.
#[derive(Debug, Clone)]
pub struct Submit {
    pub message_id: String,
    /// 0-based position of this segment in the message.
    pub index: usize,
    /// How many segments the message has.
    pub total: usize,
    pub from: String,
    /// E.164 digits without `+`.
    pub to: String,
    pub coding: Coding,
    /// Septets (GSM-7) or UTF-16 big-endian bytes (UCS-2), without any UDH.
    pub payload: Vec<u8>,
}

/// The provider's answer to a submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitOutcome {
    /// Taken; receipts will name it by this id.
    Accepted { provider_id: String },
    /// Not taken for now (throttled, queue full, connection lost): try again after `after`.
    Retry { after: Duration, reason: String },
    /// Refused for good; `reason` becomes the `statusReason`.
    Rejected { reason: String },
}

/// A final receipt for one segment.
#[derive(Debug)]
pub struct Receipt {
    /// The id the provider gave the segment when it accepted it.
    pub provider_id: String,
    /// `DELIVRD`, `EXPIRED`, `UNDELIV`, `REJECTD`, `DELETED` or `UNKNOWN`.
    pub state: String,
    /// Told once the receipt is committed (or known to be unknown, duplicate or late), so
    /// an SMSC is acknowledged only for what will not be lost.
    pub committed: Option<ReceiptAck>,
}

/// The answer an SMPP session owes for a receipt: [`ReceiptAck::done`] once the receipt
/// is committed or known to need nothing; dropped without it (the processor stopped, a
/// shutdown), it answers that the receipt was not taken, so the SMSC delivers it again.
#[derive(Debug)]
pub struct ReceiptAck {
    sequence: u32,
    answers: tokio::sync::mpsc::UnboundedSender<(u32, bool)>,
    answered: bool,
}

impl ReceiptAck {
    /// An answer for the PDU with `sequence`, sent as `(sequence, taken)` on `answers`.
    pub fn new(sequence: u32, answers: tokio::sync::mpsc::UnboundedSender<(u32, bool)>) -> Self {
        ReceiptAck {
            sequence,
            answers,
            answered: false,
        }
    }

    /// The receipt is safe: acknowledge it.
    pub fn done(mut self) {
        self.answered = true;
        let _ = self.answers.send((self.sequence, true));
    }
}

impl Drop for ReceiptAck {
    fn drop(&mut self) {
        if !self.answered {
            let _ = self.answers.send((self.sequence, false));
        }
    }
}

/// The provider in use.
pub enum Provider {
    /// The built-in simulator.
    Simulator(simulator::Simulator),
    /// An SMSC over SMPP.
    Smpp(smpp::Smpp),
}

impl Provider {
    /// Builds (and for SMPP starts connecting) the configured provider; its receipts go to
    /// `receipts`, and it stops when `shutdown` turns true.
    pub fn from_config(
        config: &ProviderConfig,
        receipts: mpsc::Sender<Receipt>,
        shutdown: watch::Receiver<bool>,
    ) -> Provider {
        match config.kind {
            ProviderKind::Simulator => {
                Provider::Simulator(simulator::Simulator::new(&config.simulator, receipts))
            }
            ProviderKind::Smpp => {
                Provider::Smpp(smpp::Smpp::start(&config.smpp, receipts, shutdown))
            }
        }
    }

    /// The name stored with provider ids, so ids of two providers never collide.
    pub fn name(&self) -> &'static str {
        match self {
            Provider::Simulator(_) => "simulator",
            Provider::Smpp(_) => "smpp",
        }
    }

    /// Submits one segment and waits for the provider's answer.
    pub async fn submit(&self, submit: Submit) -> SubmitOutcome {
        match self {
            Provider::Simulator(s) => s.submit(submit).await,
            Provider::Smpp(s) => s.submit(submit).await,
        }
    }

    /// Waits until the provider has let go of its connections (after shutdown).
    pub async fn stopped(&self) {
        if let Provider::Smpp(s) = self {
            s.stopped().await;
        }
    }

    /// Told at start which segments still wait for a receipt: (provider id, recipient).
    /// An SMSC keeps its own receipts and redelivers them; the simulator reports them anew.
    pub fn resume(&self, waiting: Vec<(String, String)>) {
        match self {
            Provider::Simulator(s) => s.resume(waiting),
            Provider::Smpp(_) => {}
        }
    }

    /// SMPP connections bound and `submit_sm` waiting for a response, for the metrics.
    pub fn link_state(&self) -> (usize, usize) {
        match self {
            Provider::Simulator(_) => (0, 0),
            Provider::Smpp(s) => s.link_state(),
        }
    }

    /// Whether the provider can take submits now (for `/readyz`).
    pub fn is_ready(&self) -> bool {
        match self {
            Provider::Simulator(_) => true,
            Provider::Smpp(s) => s.is_bound(),
        }
    }
}
