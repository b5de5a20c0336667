//! One SMPP connection and its life: connect, bind, then one task that owns the socket and
//! selects over the SMSC's PDUs, submits to send (within the window and the throughput
//! limit), the `enquire_link` timer, response deadlines and shutdown. When the connection
//! ends it reconnects with capped exponential backoff and binds again.
//!
//! Every submit taken from the queue is answered exactly once: by its `submit_sm_resp`, by
//! a missing response (deadline), or by the loss of the connection; the last two put the
//! segment back to be submitted later, which is the one window of doubt of invariant 5.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};
use tokio_util::codec::Framed;

use super::codec::{FrameCodec, status_name};
use super::pdu::{self, Delivered, Role};
use super::receipt::canonical_id;
use crate::config::SmppConfig;
use crate::provider::{Receipt, ReceiptAck, Submit, SubmitOutcome};

/// Rounds of already-ready work taken after each event before the writes are flushed.
const READY_BATCH: usize = 64;

type Link = Framed<TcpStream, FrameCodec>;

/// A segment to submit and where its answer goes.
pub struct SubmitRequest {
    pub submit: Submit,
    pub reply: oneshot::Sender<SubmitOutcome>,
}

/// What the sessions of one provider share.
pub struct Shared {
    pub config: SmppConfig,
    pub receipts: mpsc::Sender<Receipt>,
    /// Whether a connection that sends submits is bound.
    pub sending_bound: AtomicBool,
    /// Connections bound now, both kinds.
    pub bound_sessions: AtomicUsize,
    /// `submit_sm` sent and not yet answered.
    pub window_in_use: AtomicUsize,
}

/// Why a connection ended.
enum End {
    /// Shutdown was asked and the session unbound.
    Shutdown,
    /// Lost, refused, or unbound by the SMSC: reconnect.
    Lost(String),
}

/// Runs connections for `role` until shutdown; `requests` is the submit queue when this
/// connection sends.
pub async fn run(
    role: Role,
    shared: Arc<Shared>,
    mut requests: Option<mpsc::Receiver<SubmitRequest>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let config = &shared.config;
    let mut backoff = config.reconnect_min;
    while !*shutdown.borrow() {
        match connect(role, config).await {
            Ok(link) => {
                tracing::info!(host = %config.host, port = config.port, ?role, "bound to the SMSC");
                backoff = config.reconnect_min;
                if role.sends() {
                    shared.sending_bound.store(true, Ordering::Relaxed);
                }
                shared.bound_sessions.fetch_add(1, Ordering::Relaxed);
                let mut session = Session::new(shared.clone());
                let end = session.run(link, requests.as_mut(), &mut shutdown).await;
                shared.bound_sessions.fetch_sub(1, Ordering::Relaxed);
                if role.sends() {
                    shared.sending_bound.store(false, Ordering::Relaxed);
                }
                session.fail_pending("connection lost before the response");
                shared.window_in_use.store(0, Ordering::Relaxed);
                match end {
                    End::Shutdown => {
                        tracing::info!(?role, "unbound from the SMSC");
                        return;
                    }
                    End::Lost(reason) => {
                        tracing::warn!(?role, %reason, "SMPP connection lost; reconnecting")
                    }
                }
            }
            Err(e) => {
                tracing::warn!(host = %config.host, port = config.port, ?role, error = %e, "cannot bind to the SMSC")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => {}
        }
        backoff = (backoff * 2).min(config.reconnect_max);
    }
}

/// Connects and binds; the link is ready for traffic when this returns.
async fn connect(role: Role, config: &SmppConfig) -> Result<Link, String> {
    let timeout = config.response_timeout;
    let stream = tokio::time::timeout(
        timeout,
        TcpStream::connect((config.host.as_str(), config.port)),
    )
    .await
    .map_err(|_| "connect timed out".to_string())?
    .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let mut link = Framed::new(stream, FrameCodec::new(config.max_pdu_bytes));

    link.send(pdu::bind(role, config, 1)?)
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let answer = tokio::time::timeout(timeout, link.next())
        .await
        .map_err(|_| "no bind response".to_string())?;
    match answer {
        Some(Ok(Ok(resp)))
            if resp.id().is_response() && resp.status() == CommandStatus::EsmeRok =>
        {
            Ok(link)
        }
        Some(Ok(Ok(resp))) => Err(format!("bind refused: {}", status_name(resp.status()))),
        Some(Ok(Err(bad))) => Err(format!("unreadable bind response: {}", bad.reason)),
        Some(Err(e)) => Err(format!("bind: {e}")),
        None => Err("connection closed during bind".into()),
    }
}

/// A submit waiting for its response.
struct Pending {
    reply: oneshot::Sender<SubmitOutcome>,
    deadline: Instant,
}

/// The state of one bound connection.
struct Session {
    shared: Arc<Shared>,
    next_sequence: u32,
    pending: HashMap<u32, Pending>,
    /// The sequence and deadline of our unanswered `enquire_link`.
    enquiry: Option<(u32, Instant)>,
    /// When the next submit may go, under the throughput limit.
    next_send: Instant,
    /// `deliver_sm` answers waiting for their receipts to be committed.
    /// `(sequence, taken)`: bounded by the receipts the processor holds.
    acks_tx: mpsc::UnboundedSender<(u32, bool)>,
    acks_rx: mpsc::UnboundedReceiver<(u32, bool)>,
}

impl Session {
    fn new(shared: Arc<Shared>) -> Session {
        let (acks_tx, acks_rx) = mpsc::unbounded_channel();
        Session {
            shared,
            next_sequence: 2,
            pending: HashMap::new(),
            enquiry: None,
            next_send: Instant::now(),
            acks_tx,
            acks_rx,
        }
    }

    fn sequence(&mut self) -> u32 {
        let s = self.next_sequence;
        // Sequence numbers run 1 ..= 0x7FFFFFFF.
        self.next_sequence = if s >= 0x7FFF_FFFF { 1 } else { s + 1 };
        s
    }

    async fn run(
        &mut self,
        mut link: Link,
        mut requests: Option<&mut mpsc::Receiver<SubmitRequest>>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> End {
        let config = self.shared.config.clone();
        let interval = config.enquire_link_interval;
        let mut next_enquiry = Instant::now() + interval;
        let mut stopping: Option<Instant> = None;
        let mut unbind_sent = false;
        let per_segment =
            (config.throughput > 0).then(|| Duration::from_secs(1) / config.throughput);
        // Submits past their deadline are looked for this often rather than at each one's
        // exact deadline: a tenth of the timeout late at most, and no timer per submit.
        let check_every =
            (config.response_timeout / 10).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let mut next_check = Instant::now() + check_every;

        loop {
            if requests.is_some() {
                let in_use = self.pending.len();
                self.shared.window_in_use.store(in_use, Ordering::Relaxed);
            }
            // A stop waits for the answers of submits in flight, then unbinds.
            if let Some(deadline) = stopping {
                if !unbind_sent && (self.pending.is_empty() || Instant::now() >= deadline) {
                    let seq = self.sequence();
                    if link.send(pdu::bare(Pdu::Unbind, seq)).await.is_err() {
                        return End::Shutdown;
                    }
                    unbind_sent = true;
                }
                if Instant::now() >= deadline + config.response_timeout {
                    return End::Shutdown;
                }
            }

            let can_send = self.can_send(&requests, stopping.is_some());
            let throttled = self.next_send > Instant::now();
            let deadline = self.next_deadline(next_enquiry, next_check, stopping);

            tokio::select! {
                frame = link.next() => {
                    if let Some(end) = self.on_frame(&mut link, frame, stopping.is_some()).await {
                        return end;
                    }
                }
                request = next_request(&mut requests), if can_send && !throttled => {
                    let Some(request) = request else { requests = None; continue };
                    if let Err(e) = self.send_submit(&mut link, request, per_segment).await {
                        return End::Lost(e);
                    }
                }
                _ = sleep_until(self.next_send), if can_send && throttled => {}
                Some((seq, taken)) = self.acks_rx.recv() => {
                    if let Err(e) = link.feed(receipt_resp(seq, taken)).await {
                        return End::Lost(e.to_string());
                    }
                }
                _ = sleep_until(deadline) => {
                    let now = Instant::now();
                    if self.enquiry.is_some_and(|(_, d)| d <= now) {
                        return End::Lost("enquire_link not answered in time".into());
                    }
                    if next_enquiry <= now && self.enquiry.is_none() {
                        let seq = self.sequence();
                        if let Err(e) = link.feed(pdu::bare(Pdu::EnquireLink, seq)).await {
                            return End::Lost(e.to_string());
                        }
                        self.enquiry = Some((seq, now + config.response_timeout));
                        next_enquiry = now + interval;
                    }
                    if next_check <= now {
                        self.expire_pending(now);
                        next_check = now + check_every;
                    }
                }
                _ = shutdown.changed(), if stopping.is_none() => {
                    stopping = Some(Instant::now() + config.response_timeout);
                }
            }

            // Whatever else is ready now goes into the same write: under load one flush
            // carries many submits and answers instead of one system call each.
            if let Some(end) = self
                .take_ready(&mut link, &mut requests, stopping.is_some(), per_segment)
                .await
            {
                return end;
            }
            if let Err(e) = link.flush().await {
                return End::Lost(e.to_string());
            }
        }
    }

    /// Whether a submit may be sent now, window-wise.
    fn can_send(
        &self,
        requests: &Option<&mut mpsc::Receiver<SubmitRequest>>,
        stopping: bool,
    ) -> bool {
        !stopping && requests.is_some() && self.pending.len() < self.shared.config.window
    }

    /// Handles PDUs already read, answers already committed and submits already queued,
    /// without waiting for more (at most [`READY_BATCH`] rounds); `Some` ends the
    /// connection. What it writes is buffered until the caller flushes.
    async fn take_ready(
        &mut self,
        link: &mut Link,
        requests: &mut Option<&mut mpsc::Receiver<SubmitRequest>>,
        stopping: bool,
        per_segment: Option<Duration>,
    ) -> Option<End> {
        for _ in 0..READY_BATCH {
            let mut progressed = false;
            while let Ok((seq, taken)) = self.acks_rx.try_recv() {
                if let Err(e) = link.feed(receipt_resp(seq, taken)).await {
                    return Some(End::Lost(e.to_string()));
                }
                progressed = true;
            }
            if self.can_send(requests, stopping)
                && self.next_send <= Instant::now()
                && let Some(queue) = requests.as_mut()
                && let Ok(request) = queue.try_recv()
            {
                if let Err(e) = self.send_submit(link, request, per_segment).await {
                    return Some(End::Lost(e));
                }
                progressed = true;
            }
            if let Some(frame) = link.next().now_or_never() {
                if let Some(end) = self.on_frame(link, frame, stopping).await {
                    return Some(end);
                }
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
        None
    }

    /// Handles one item of the link's stream: a PDU, an unreadable PDU, or its end.
    async fn on_frame(
        &mut self,
        link: &mut Link,
        frame: Option<Result<Result<Command, super::codec::BadPdu>, super::codec::FrameError>>,
        stopping: bool,
    ) -> Option<End> {
        match frame {
            None => Some(End::Lost("closed by the SMSC".into())),
            Some(Err(e)) => Some(End::Lost(e.to_string())),
            Some(Ok(Err(bad))) => {
                tracing::warn!(command_id = bad.command_id, sequence = bad.sequence_number, reason = %bad.reason, "malformed PDU from the SMSC");
                self.on_bad_pdu(link, bad).await
            }
            Some(Ok(Ok(cmd))) => self.on_command(link, cmd, stopping).await,
        }
    }

    /// The earliest of: the next enquiry (or its answer's deadline while one is out), the
    /// next look for submits past their deadline, the end of a stop.
    fn next_deadline(
        &self,
        next_enquiry: Instant,
        next_check: Instant,
        stopping: Option<Instant>,
    ) -> Instant {
        let mut at = match self.enquiry {
            Some((_, d)) => d,
            None => next_enquiry,
        };
        at = at.min(next_check);
        if let Some(d) = stopping {
            at = at.min(d.max(Instant::now() + Duration::from_millis(10)));
        }
        at
    }

    /// Writes a `submit_sm` (buffered until the loop flushes) and starts its deadline.
    async fn send_submit(
        &mut self,
        link: &mut Link,
        request: SubmitRequest,
        per_segment: Option<Duration>,
    ) -> Result<(), String> {
        // The processor gave up waiting: sending now could submit the segment twice.
        if request.reply.is_closed() {
            return Ok(());
        }
        let seq = self.sequence();
        let command = match pdu::submit_sm(&request.submit, &self.shared.config, seq) {
            Ok(c) => c,
            Err(reason) => {
                let _ = request.reply.send(SubmitOutcome::Rejected { reason });
                return Ok(());
            }
        };
        link.feed(command).await.map_err(|e| e.to_string())?;
        if let Some(gap) = per_segment {
            self.next_send = self.next_send.max(Instant::now() - gap) + gap;
        }
        let deadline = Instant::now() + self.shared.config.response_timeout;
        self.pending.insert(
            seq,
            Pending {
                reply: request.reply,
                deadline,
            },
        );
        Ok(())
    }

    fn expire_pending(&mut self, now: Instant) {
        let late: Vec<u32> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(s, _)| *s)
            .collect();
        for seq in late {
            if let Some(p) = self.pending.remove(&seq) {
                tracing::warn!(
                    sequence = seq,
                    "no submit_sm_resp in time; the segment will be submitted again"
                );
                let _ = p.reply.send(self.retry("no response from the SMSC"));
            }
        }
    }

    fn retry(&self, reason: &str) -> SubmitOutcome {
        SubmitOutcome::Retry {
            after: self.shared.config.retry_delay,
            reason: reason.to_string(),
        }
    }

    /// Answers every submit in flight with a retry: the connection is gone.
    fn fail_pending(&mut self, reason: &str) {
        for (_, p) in self.pending.drain() {
            let _ = p.reply.send(SubmitOutcome::Retry {
                after: self.shared.config.retry_delay,
                reason: reason.to_string(),
            });
        }
    }

    /// Handles one PDU; `Some` ends the connection.
    async fn on_command(&mut self, link: &mut Link, cmd: Command, stopping: bool) -> Option<End> {
        let seq = cmd.sequence_number();
        match cmd.id() {
            CommandId::SubmitSmResp => {
                let pending = self.pending.remove(&seq)?;
                let outcome = self.submit_outcome(&cmd);
                let _ = pending.reply.send(outcome);
                None
            }
            CommandId::DeliverSm => {
                let Some(Pdu::DeliverSm(deliver)) = cmd.pdu() else {
                    return self
                        .answer(link, deliver_resp(seq, CommandStatus::EsmeRsyserr))
                        .await;
                };
                self.on_deliver(link, seq, deliver).await
            }
            CommandId::EnquireLink => {
                self.answer(link, pdu::bare(Pdu::EnquireLinkResp, seq))
                    .await
            }
            CommandId::EnquireLinkResp => {
                if self.enquiry.is_some_and(|(s, _)| s == seq) {
                    self.enquiry = None;
                }
                None
            }
            CommandId::Unbind => {
                let _ = link.send(pdu::bare(Pdu::UnbindResp, seq)).await;
                Some(End::Lost("the SMSC unbound".into()))
            }
            CommandId::UnbindResp if stopping => Some(End::Shutdown),
            CommandId::GenericNack => {
                if let Some(p) = self.pending.remove(&seq) {
                    let reason = format!("generic_nack {}", status_name(cmd.status()));
                    let _ = p.reply.send(self.retry(&reason));
                }
                tracing::warn!(sequence = seq, status = %status_name(cmd.status()), "generic_nack from the SMSC");
                None
            }
            id if !id.is_response() => {
                let nack = Command::new(CommandStatus::EsmeRinvcmdid, seq, Pdu::GenericNack);
                self.answer(link, nack).await
            }
            _ => None,
        }
    }

    fn submit_outcome(&self, cmd: &Command) -> SubmitOutcome {
        match cmd.status() {
            CommandStatus::EsmeRok => match cmd.pdu() {
                Some(Pdu::SubmitSmResp(r)) if !r.message_id().as_str().is_empty() => {
                    SubmitOutcome::Accepted {
                        provider_id: canonical_id(
                            r.message_id().as_str(),
                            self.shared.config.submit_id_format,
                        ),
                    }
                }
                _ => SubmitOutcome::Rejected {
                    reason: "ESME_ROK without a message id".into(),
                },
            },
            status @ (CommandStatus::EsmeRthrottled | CommandStatus::EsmeRmsgqful) => {
                self.retry(&status_name(status))
            }
            CommandStatus::EsmeRinvdstadr => SubmitOutcome::Rejected {
                reason: "invalid_phone_number".into(),
            },
            status => SubmitOutcome::Rejected {
                reason: status_name(status),
            },
        }
    }

    async fn on_deliver(
        &mut self,
        link: &mut Link,
        seq: u32,
        deliver: &rusmpp::pdus::DeliverSm,
    ) -> Option<End> {
        match pdu::delivered(deliver) {
            Delivered::Receipt(r) if r.is_final() => {
                let config = &self.shared.config;
                let format = if r.from_tlv {
                    config.submit_id_format
                } else {
                    config.receipt_id_format
                };
                let receipt = Receipt {
                    provider_id: canonical_id(&r.id, format),
                    state: r.state,
                    // Answered once it is committed, without holding up this connection.
                    committed: Some(ReceiptAck::new(seq, self.acks_tx.clone())),
                };
                // Refused when shutting down: the receipt's answer, dropped with it, then
                // tells the SMSC to deliver it again later.
                let _ = self.shared.receipts.send(receipt).await;
                None
            }
            Delivered::Receipt(r) => {
                tracing::debug!(provider_id = %r.id, state = %r.state, "intermediate receipt");
                self.answer(link, deliver_resp(seq, CommandStatus::EsmeRok))
                    .await
            }
            Delivered::UnreadableReceipt => {
                tracing::warn!(
                    sequence = seq,
                    "receipt without a readable id or state; acknowledged and dropped"
                );
                self.answer(link, deliver_resp(seq, CommandStatus::EsmeRok))
                    .await
            }
            Delivered::Inbound { from, to, bytes } => {
                tracing::info!(%from, %to, bytes, "inbound SMS acknowledged (inbound messages are not stored)");
                self.answer(link, deliver_resp(seq, CommandStatus::EsmeRok))
                    .await
            }
        }
    }

    async fn on_bad_pdu(&mut self, link: &mut Link, bad: super::codec::BadPdu) -> Option<End> {
        let seq = bad.sequence_number;
        if bad.command_id & 0x8000_0000 != 0 {
            // A response we cannot read: for a submit, its fate is unknown; submit again.
            if let Some(p) = self.pending.remove(&seq) {
                let _ = p.reply.send(self.retry("unreadable submit_sm_resp"));
            }
            return None;
        }
        let answer = if bad.command_id == u32::from(CommandId::DeliverSm) {
            deliver_resp(seq, CommandStatus::EsmeRsyserr)
        } else {
            Command::new(CommandStatus::EsmeRinvcmdlen, seq, Pdu::GenericNack)
        };
        self.answer(link, answer).await
    }

    /// Writes an answer, buffered until the loop flushes.
    async fn answer(&mut self, link: &mut Link, cmd: Command) -> Option<End> {
        match link.feed(cmd).await {
            Ok(()) => None,
            Err(e) => Some(End::Lost(e.to_string())),
        }
    }
}

/// The `deliver_sm_resp` for a receipt: taken, or to be delivered again later.
fn receipt_resp(seq: u32, taken: bool) -> Command {
    let status = if taken {
        CommandStatus::EsmeRok
    } else {
        CommandStatus::EsmeRxTAppn
    };
    deliver_resp(seq, status)
}

fn deliver_resp(seq: u32, status: CommandStatus) -> Command {
    Command::new(status, seq, rusmpp::pdus::DeliverSmResp::default())
}

async fn next_request(
    requests: &mut Option<&mut mpsc::Receiver<SubmitRequest>>,
) -> Option<SubmitRequest> {
    match requests {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}
