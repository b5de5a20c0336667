//! The load generator: N keep-alive HTTP/1.1 connections written on hyper's connection API,
//! each a loop of requests, with every request's latency kept in microseconds.
//!
//! It is closed-loop by default (each connection sends its next request as soon as the
//! previous answer is read), which measures the most the server accepts. With a `rate` it
//! paces the connections together so that the total is that many requests per second,
//! which is how the end-to-end scenarios hold a load the daemon can sustain. Latency is
//! measured from the moment a request is written to the moment its whole answer is read;
//! in paced mode a late request is sent at once and timed from then (no coordinated-omission
//! correction: the paced scenarios report rates, not latencies).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper::header::{HOST, HeaderMap, HeaderValue};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::Res;

/// One kind of request, sent again and again; parsed once so the loop only clones it.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    method: hyper::Method,
    uri: hyper::Uri,
    headers: HeaderMap,
    body: Bytes,
    /// The status that counts as success (201 for smswire, 202 for Kannel).
    expect: u16,
}

impl Target {
    /// A request of `method` to `path` (path and query) on `addr`.
    pub fn new(
        addr: SocketAddr,
        method: hyper::Method,
        path: &str,
        headers: &[(&'static str, String)],
        body: Bytes,
        expect: u16,
    ) -> Res<Target> {
        let mut map = HeaderMap::new();
        map.insert(HOST, HeaderValue::from_str(&addr.to_string())?);
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_str(value)?);
        }
        Ok(Target {
            addr,
            method,
            uri: path.parse()?,
            headers: map,
            body,
            expect,
        })
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// How long, how hard.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub connections: usize,
    /// Measured time; requests keep going for this long after the warm-up.
    pub duration: Duration,
    /// Requests answered during this first part are not counted.
    pub warmup: Duration,
    /// Total requests per second over all connections; `None` is closed-loop.
    pub rate: Option<f64>,
    /// Stop after this many successful requests in all (counted ones and warm-up alike).
    pub max_requests: Option<u64>,
}

impl Plan {
    /// Closed-loop for `duration` after `warmup`.
    pub fn closed(connections: usize, warmup: Duration, duration: Duration) -> Plan {
        Plan {
            connections,
            duration,
            warmup,
            rate: None,
            max_requests: None,
        }
    }
}

/// Counters a scenario can watch while the load runs.
#[derive(Default)]
pub struct Live {
    /// Successful requests so far, warm-up included.
    pub ok: AtomicU64,
    /// Failed requests (wrong status or connection errors) so far.
    pub failed: AtomicU64,
    /// Set to stop every connection early.
    pub stop: AtomicBool,
}

/// What a run came to.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Successful requests in the measured part.
    pub ok: u64,
    /// Successful requests in all, warm-up included.
    pub ok_total: u64,
    pub failed: u64,
    /// The first few distinct failures, for the console.
    pub errors: Vec<String>,
    /// Length of the measured part.
    pub elapsed: Duration,
    /// Latencies of the measured successful requests, microseconds, sorted.
    pub latencies_us: Vec<u32>,
}

impl Outcome {
    /// Successful requests per second in the measured part.
    pub fn rate(&self) -> f64 {
        if self.elapsed.is_zero() {
            return 0.0;
        }
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency at quantile `q` (0..1), in milliseconds.
    pub fn latency_ms(&self, q: f64) -> f64 {
        percentile(&self.latencies_us, q) as f64 / 1000.0
    }
}

/// The value at quantile `q` of sorted `values` (nearest rank).
pub fn percentile<T: Copy + Default>(sorted: &[T], q: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs `plan` against `target`; `live` can be watched (and stopped) meanwhile.
pub async fn run(target: &Target, plan: Plan, live: Arc<Live>) -> Outcome {
    let started = Instant::now();
    let measure_from = started + plan.warmup;
    let end = measure_from + plan.duration;
    let target = Arc::new(target.clone());
    let mut tasks = Vec::with_capacity(plan.connections);
    for index in 0..plan.connections {
        let (target, live) = (target.clone(), live.clone());
        tasks.push(tokio::spawn(async move {
            connection(&target, plan, index, started, measure_from, end, &live).await
        }));
    }

    let mut outcome = Outcome::default();
    for task in tasks {
        match task.await {
            Ok(part) => {
                outcome.ok += part.ok;
                outcome.ok_total += part.ok_total;
                outcome.failed += part.failed;
                outcome.latencies_us.extend(part.latencies_us);
                for e in part.errors {
                    if outcome.errors.len() < 5 && !outcome.errors.contains(&e) {
                        outcome.errors.push(e);
                    }
                }
            }
            Err(e) => outcome.errors.push(format!("load task failed: {e}")),
        }
    }
    // The measured part ends at the planned end, or earlier when the load was stopped or
    // ran out of requests; what was answered after the end is not counted.
    let finished = Instant::now().min(end);
    outcome.elapsed = finished.saturating_duration_since(measure_from);
    outcome.latencies_us.sort_unstable();
    outcome
}

/// One connection's loop; reconnects after an error.
async fn connection(
    target: &Target,
    plan: Plan,
    index: usize,
    started: Instant,
    measure_from: Instant,
    end: Instant,
    live: &Live,
) -> Outcome {
    let mut out = Outcome::default();
    let interval = plan
        .rate
        .map(|r| Duration::from_secs_f64(plan.connections as f64 / r.max(0.001)));
    // Spread the connections' first requests over one interval so they do not march in step.
    let mut next_send = started
        + interval.map_or(Duration::ZERO, |i| {
            i.mul_f64(index as f64 / plan.connections as f64)
        });
    let mut sender = None;
    loop {
        if live.stop.load(Ordering::Relaxed) || Instant::now() >= end {
            break;
        }
        if let Some(max) = plan.max_requests
            && live.ok.load(Ordering::Relaxed) >= max
        {
            break;
        }
        if let Some(interval) = interval {
            if next_send >= end {
                break;
            }
            tokio::time::sleep_until(next_send.into()).await;
            next_send += interval;
        }
        let mut conn = match sender.take() {
            Some(s) => s,
            None => match connect(target.addr).await {
                Ok(s) => s,
                Err(e) => {
                    note_failure(&mut out, live, format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let request = target.request();
        let sent = Instant::now();
        let answer = async {
            conn.ready().await?;
            let response = conn.send_request(request).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        }
        .await;
        let done = Instant::now();
        match answer {
            Ok((status, _)) if status == target.expect => {
                live.ok.fetch_add(1, Ordering::Relaxed);
                out.ok_total += 1;
                if sent >= measure_from && done <= end {
                    out.ok += 1;
                    let us = done.duration_since(sent).as_micros();
                    out.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                }
                sender = Some(conn);
            }
            Ok((status, body)) => {
                let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                note_failure(&mut out, live, format!("status {status}: {text}"));
                sender = Some(conn);
            }
            Err(e) => note_failure(&mut out, live, format!("request: {e}")),
        }
    }
    out
}

fn note_failure(out: &mut Outcome, live: &Live, error: String) {
    live.failed.fetch_add(1, Ordering::Relaxed);
    out.failed += 1;
    if out.errors.len() < 3 && !out.errors.contains(&error) {
        out.errors.push(error);
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Res<Sender> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // The connection future drives the socket; it ends when the sender is dropped.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}
