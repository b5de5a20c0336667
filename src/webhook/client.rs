//! The HTTP client of webhook calls: hyper with rustls (system root certificates), keep-alive
//! connections reused per host, a connect timeout and a total timeout, no redirects, and at
//! most a few KiB of each response read.
//!
//! Connections go through [`GuardedConnector`], which resolves the host itself and connects
//! only to addresses the SSRF [`Policy`] permits, checking the address actually connected to.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use hyper::http::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::schedule::parse_retry_after;
use super::ssrf::Policy;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The `User-Agent` of every call.
const AGENT: &str = concat!("smswire/", env!("CARGO_PKG_VERSION"));

/// How long an idle keep-alive connection to a receiver is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What one call to a receiver came to.
#[derive(Debug, Clone)]
pub struct CallResult {
    /// Whether the receiver answered 2xx in time.
    pub ok: bool,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration: Duration,
    /// The first bytes of the response body.
    pub head: Vec<u8>,
    /// The receiver's `Retry-After`, honoured only on 429 and 503.
    pub retry_after: Option<Duration>,
}

/// A webhook call's signature headers.
#[derive(Debug, Clone)]
pub struct Signed {
    pub id: String,
    pub timestamp: u64,
    pub signature: String,
}

/// The client shared by every webhook call.
#[derive(Clone)]
pub struct WebhookClient {
    client: Client<HttpsConnector<GuardedConnector>, Full<Bytes>>,
    timeout: Duration,
    response_bytes: usize,
}

impl WebhookClient {
    /// Builds the client; without system root certificates, https calls fail with a TLS
    /// error (logged once here) while http calls work.
    pub fn new(
        policy: Policy,
        connect_timeout: Duration,
        timeout: Duration,
        response_bytes: usize,
        idle_per_host: usize,
    ) -> WebhookClient {
        let guarded = GuardedConnector {
            policy: Arc::new(policy),
            connect_timeout,
        };
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match builder.with_native_roots() {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "no system root certificates; https webhooks will fail");
                let config = rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
            }
        };
        let https = builder
            .https_or_http()
            .enable_http1()
            .wrap_connector(guarded);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(idle_per_host)
            .build(https);
        WebhookClient {
            client,
            timeout,
            response_bytes,
        }
    }

    /// POSTs `body` to `url` with the signature headers; never follows a redirect.
    pub async fn call(&self, url: &str, signed: &Signed, body: Bytes) -> CallResult {
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.timeout, self.exchange(url, signed, body)).await;
        let duration = started.elapsed();
        match outcome {
            Ok(Ok((status, head, retry_after))) => CallResult {
                ok: (200..300).contains(&status),
                status: Some(status),
                error: None,
                duration,
                head,
                retry_after: retry_after.filter(|_| status == 429 || status == 503),
            },
            Ok(Err(e)) => failure(e, duration),
            Err(_) => failure(format!("timed out after {:?}", self.timeout), duration),
        }
    }

    async fn exchange(
        &self,
        url: &str,
        signed: &Signed,
        body: Bytes,
    ) -> Result<(u16, Vec<u8>, Option<Duration>), String> {
        let request = Request::post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, AGENT)
            .header("webhook-id", &signed.id)
            .header("webhook-timestamp", signed.timestamp.to_string())
            .header("webhook-signature", &signed.signature)
            .body(Full::new(body))
            .map_err(|e| format!("bad request: {e}"))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| error_chain(&e))?;

        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let mut body = response.into_body();
        let mut head = Vec::new();
        // Read only what is kept; the rest is dropped with the connection.
        while head.len() < self.response_bytes {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        let room = self.response_bytes - head.len();
                        head.extend_from_slice(&data[..data.len().min(room)]);
                    }
                }
                Some(Err(_)) | None => break,
            }
        }
        Ok((status, head, retry_after))
    }
}

fn failure(error: String, duration: Duration) -> CallResult {
    CallResult {
        ok: false,
        status: None,
        error: Some(error),
        duration,
        head: Vec::new(),
        retry_after: None,
    }
}

/// An error and its causes on one line: `client error (Connect): address not allowed`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A connector that resolves the host and connects only to permitted addresses.
#[derive(Clone)]
pub struct GuardedConnector {
    policy: Arc<Policy>,
    connect_timeout: Duration,
}

impl tower_service::Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let policy = self.policy.clone();
        let timeout = self.connect_timeout;
        Box::pin(async move {
            let stream = tokio::time::timeout(timeout, connect(&policy, &uri))
                .await
                .map_err(|_| format!("connect timed out after {timeout:?}"))??;
            Ok(TokioIo::new(stream))
        })
    }
}

async fn connect(policy: &Policy, uri: &Uri) -> Result<TcpStream, BoxError> {
    let addrs = resolve(uri).await?;
    let mut last_error: Option<BoxError> = None;
    for addr in addrs {
        if !policy.permits(addr.ip()) {
            last_error =
                Some(format!("address not allowed: {} (SSRF protection)", addr.ip()).into());
            continue;
        }
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                // Judge the address connected to, not only the one asked for.
                let peer = stream.peer_addr()?;
                if !policy.permits(peer.ip()) {
                    return Err(
                        format!("address not allowed: {} (SSRF protection)", peer.ip()).into(),
                    );
                }
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(e) => last_error = Some(Box::new(e)),
        }
    }
    Err(last_error.unwrap_or_else(|| "the host resolved to no address".into()))
}

/// Every address `uri`'s host stands for, on the URL's port (or the scheme's default).
pub async fn resolve(uri: &Uri) -> Result<Vec<SocketAddr>, BoxError> {
    let host = uri.host().ok_or("URL without a host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let found = tokio::net::lookup_host((host, port)).await?;
    Ok(found.collect())
}
