//! The built-in simulator: a provider that needs no SMSC, so the daemon runs out of the box
//! and every status path can be produced by hand with curl.
//!
//! It accepts every submit after `submit_delay` and reports a receipt `receipt_delay` later:
//! `DELIVRD`, or the state of the first configured pattern that matches the recipient.
//!
//! Limit: receipts waiting in the simulator live in memory. If the daemon stops before a
//! receipt was reported, that message waits for its receipt deadline and then becomes
//! `errored` / `UNKNOWN`, as it would with an SMSC that lost its receipt.

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
        let state = self
            .outcomes
            .iter()
            .find(|(pattern, _)| pattern.is_match(&submit.to))
            .map_or("DELIVRD", |(_, state)| state);

        let receipt = Receipt {
            provider_id: provider_id.clone(),
            state: state.to_string(),
        };
        let receipts = self.receipts.clone();
        let delay = self.receipt_delay;
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            // The processor is gone when the daemon stops; the receipt is lost then, as the
            // module doc says.
            let _ = receipts.send(receipt).await;
        });
        SubmitOutcome::Accepted { provider_id }
    }
}
