//! The webhook (and Kannel DLR) receiver the harness runs: a hyper HTTP/1.1 server on
//! 127.0.0.1 that answers at once and counts what it is told.
//!
//! smswire's calls are counted by the `status` of the message in the payload (`sent`, or a
//! final `delivered` / `errored`), found with a byte search rather than a JSON parse so that
//! the receiver costs as little CPU as possible on a 2-core machine shared with the daemon.
//! Kannel's DLR callbacks are GETs on `/kannel`, each one final (dlr-mask 3). For the timer
//! scenario the receiver fails the first attempt of every delivery and times the second one
//! against the due time it implies, pairing attempts by their `webhook-id` header.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::Res;

/// How the receiver answers.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// 204 to every call.
    Accept,
    /// 500 to the first attempt of each delivery, 204 to later ones; the second attempt's
    /// lateness is measured against first attempt + `wait`.
    FailFirst { wait: Duration },
}

/// What the receiver counted.
#[derive(Default)]
pub struct Counts {
    /// Every request.
    pub calls: AtomicU64,
    /// smswire calls whose message was `sent`.
    pub sent: AtomicU64,
    /// smswire calls with a final status, and Kannel DLRs.
    pub finals: AtomicU64,
    /// Microseconds from the receiver's start to the last final call.
    pub last_final_us: AtomicU64,
}

struct State {
    mode: Mode,
    started: Instant,
    counts: Counts,
    /// Timer mode: first-attempt arrival by `webhook-id`.
    first_seen: Mutex<HashMap<String, Instant>>,
    /// Timer mode: second-attempt lateness in microseconds (negative: early).
    lateness_us: Mutex<Vec<i64>>,
}

/// A running receiver; stops accepting when dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Receiver {
    /// Starts a receiver on 127.0.0.1:`port` (0: any free port).
    pub async fn start(port: u16, mode: Mode) -> Res<Receiver> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            mode,
            started: Instant::now(),
            counts: Counts::default(),
            first_seen: Mutex::new(HashMap::new()),
            lateness_us: Mutex::new(Vec::new()),
        });
        let shared = state.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // Out of descriptors or the like: wait rather than spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(&state, request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Receiver {
            addr,
            state,
            accept,
        })
    }

    /// The URL smswire webhooks are registered with.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Calls received so far.
    pub fn calls(&self) -> u64 {
        self.state.counts.calls.load(Ordering::Relaxed)
    }

    /// Final calls (smswire `delivered`/`errored`, Kannel DLRs) so far.
    pub fn finals(&self) -> u64 {
        self.state.counts.finals.load(Ordering::Relaxed)
    }

    /// When the last final call arrived.
    pub fn last_final(&self) -> Instant {
        let us = self.state.counts.last_final_us.load(Ordering::Relaxed);
        self.state.started + Duration::from_micros(us)
    }

    /// Timer mode: second attempts received so far.
    pub fn replays(&self) -> usize {
        self.state.lateness_us.lock().map_or(0, |v| v.len())
    }

    /// Timer mode: the lateness of every second attempt so far, microseconds, sorted.
    pub fn lateness_us(&self) -> Vec<i64> {
        let mut values = self
            .state
            .lateness_us
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default();
        values.sort_unstable();
        values
    }
}

async fn handle(state: &State, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let arrived = Instant::now();
    let counts = &state.counts;
    counts.calls.fetch_add(1, Ordering::Relaxed);
    let kannel = request.uri().path() == "/kannel";
    let webhook_id = request
        .headers()
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match request.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return reply(StatusCode::BAD_REQUEST),
    };

    if let Mode::FailFirst { wait } = state.mode
        && let Some(id) = webhook_id
    {
        let first = {
            let Ok(mut seen) = state.first_seen.lock() else {
                return reply(StatusCode::INTERNAL_SERVER_ERROR);
            };
            match seen.get(&id) {
                Some(first) => Some(*first),
                None => {
                    seen.insert(id, arrived);
                    None
                }
            }
        };
        let Some(first) = first else {
            return reply(StatusCode::INTERNAL_SERVER_ERROR);
        };
        let due = first + wait;
        let late = if arrived >= due {
            arrived.duration_since(due).as_micros() as i64
        } else {
            -(due.duration_since(arrived).as_micros() as i64)
        };
        if let Ok(mut lateness) = state.lateness_us.lock() {
            lateness.push(late);
        }
    }

    let is_final = kannel || matches!(status_of(&body), Some(b"delivered" | b"errored"));
    if is_final {
        counts.finals.fetch_add(1, Ordering::Relaxed);
        let us = arrived.duration_since(state.started).as_micros() as u64;
        counts.last_final_us.fetch_max(us, Ordering::Relaxed);
    } else if status_of(&body) == Some(b"sent") {
        counts.sent.fetch_add(1, Ordering::Relaxed);
    }
    reply(if kannel {
        StatusCode::OK
    } else {
        StatusCode::NO_CONTENT
    })
}

fn reply(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// The value of the first `"status":"..."` in a payload. The message body cannot fake it:
/// inside a JSON string the quotes would be escaped.
fn status_of(body: &[u8]) -> Option<&[u8]> {
    const KEY: &[u8] = b"\"status\":\"";
    let start = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = body[start..].iter().position(|b| *b == b'"')?;
    Some(&body[start..start + len])
}

/// A port that accepts TCP connections (the kernel completes the handshake) but never
/// answers: a receiver that is down in the slowest way, so each attempt holds its slot until
/// the webhook timeout. Dropping the listener closes the port.
pub fn silent_port() -> Res<std::net::TcpListener> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?)
}
