//! The built-in simulator: a provider that needs no SMSC, so the daemon runs out of the box
//! and every status path can be produced by hand with curl.
//!
//! It accepts every submit after `submit_delay` and reports a receipt `receipt_delay` later:
//! `DELIVRD`, or the state of the first configured pattern that matches the recipient.
//!
//! The simulator keeps nothing of its own: receipts waiting to be reported live in memory,
//! and when the daemon starts again it is handed the segments still waiting for a receipt
//! ([`Simulator::resume`]) and reports them, as an SMSC would after a reconnect.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use regex::Regex;
use tokio::sync::mpsc;

use super::{Receipt, Submit, SubmitOutcome};
use crate::config::SimulatorConfig;

/// The simulator's state: its settings and a counter for provider ids.
pub struct Simulator {
    submit_delay: Duration,
    receipt_delay: Duration,
    outcomes: Vec<(Regex, &'static str)>,
    receipts: mpsc::Sender<Receipt>,
    next_id: AtomicU64,
}

impl Simulator {
    /// Builds a simulator; patterns were checked when the configuration was loaded, and one
    /// that still fails to compile is skipped.
    pub fn new(config: &SimulatorConfig, receipts: mpsc::Sender<Receipt>) -> Simulator {
        let outcomes = config
            .outcomes
            .iter()
            .filter_map(|o| Regex::new(&o.pattern).ok().map(|r| (r, o.state.as_str())))
            .collect();
        // Ids restart from the clock so that ids of two runs on one file do not collide.
        let start = crate::clock::Clock::now_ms(&crate::clock::SystemClock) * 1000;
        Simulator {
            submit_delay: config.submit_delay,
            receipt_delay: config.receipt_delay,
            outcomes,
            receipts,
            next_id: AtomicU64::new(start),
        }
    }

    /// Accepts the segment after the submit delay and schedules its receipt.
    pub async fn submit(&self, submit: Submit) -> SubmitOutcome {
        if !self.submit_delay.is_zero() {
            tokio::time::sleep(self.submit_delay).await;
        }
        let provider_id = format!("sim{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        self.report_later(provider_id.clone(), &submit.to);
        SubmitOutcome::Accepted { provider_id }
    }

    /// Reports receipts for segments accepted before a restart: (provider id, recipient).
    pub fn resume(&self, waiting: Vec<(String, String)>) {
        for (provider_id, to) in waiting {
            self.report_later(provider_id, &to);
        }
    }

    fn report_later(&self, provider_id: String, to: &str) {
        let state = self
            .outcomes
            .iter()
            .find(|(pattern, _)| pattern.is_match(to))
            .map_or("DELIVRD", |(_, state)| state);
        let receipt = Receipt {
            provider_id,
            state: state.to_string(),
            committed: None,
        };
        let receipts = self.receipts.clone();
        let delay = self.receipt_delay;
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            // The processor is gone when the daemon stops; the next start reports it again.
            let _ = receipts.send(receipt).await;
        });
    }
}
