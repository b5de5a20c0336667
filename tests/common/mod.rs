//! Shared test harness: a real daemon on 127.0.0.1:0 with its redb file in a temp dir, a
//! real HTTP client, and the admin socket for accounts and keys.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod receiver;
pub mod smsc;
pub mod verifier;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use smswire::admin::{self, AdminRequest};
use smswire::{Config, Daemon};

/// An API key as the admin socket hands it out.
#[derive(Debug, Clone)]
pub struct Key {
    pub account_id: String,
    pub id: String,
    pub secret: String,
}

/// A configuration for tests: port 0, files in `dir`, a fast simulator.
pub fn config(dir: &Path) -> Config {
    let mut c = Config::default();
    c.api.listen = "127.0.0.1:0".parse().unwrap();
    c.store.path = dir.join("smswire.redb");
    c.admin.socket = dir.join("admin.sock");
    c.metrics.listen = "127.0.0.1:0".parse().unwrap();
    c.provider.simulator.submit_delay = Duration::from_millis(5);
    c.provider.simulator.receipt_delay = Duration::from_millis(30);
    c
}

/// A daemon under test and what talks to it.
pub struct TestDaemon {
    pub daemon: Option<Daemon>,
    pub dir: PathBuf,
    pub config: Config,
    api: Api,
}

/// A client of one daemon's API and admin socket, in-process or not.
pub struct Api {
    base: String,
    admin_socket: PathBuf,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl std::ops::Deref for TestDaemon {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

/// The answer to a request.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub json: Value,
}

impl TestDaemon {
    /// Starts a daemon on `config`.
    pub async fn start(config: Config, dir: &Path) -> TestDaemon {
        let daemon = Daemon::start(config.clone()).await.expect("daemon starts");
        let api = Api::new(daemon.api_addr(), config.admin.socket.clone());
        TestDaemon {
            daemon: Some(daemon),
            dir: dir.to_path_buf(),
            config,
            api,
        }
    }

    /// Stops the daemon and waits until its file is closed.
    pub async fn stop(&mut self) {
        if let Some(d) = self.daemon.take() {
            d.shutdown().await;
        }
    }

    /// Starts a daemon again on the same configuration and file.
    pub async fn restart(&mut self) {
        self.stop().await;
        let fresh = TestDaemon::start(self.config.clone(), &self.dir).await;
        *self = fresh;
    }
}

impl Api {
    /// A client of the daemon at `addr` with its admin socket at `admin_socket`.
    pub fn new(addr: std::net::SocketAddr, admin_socket: PathBuf) -> Api {
        Api {
            base: format!("http://{addr}"),
            admin_socket,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Sends an admin request and returns its data.
    pub async fn admin(&self, request: AdminRequest) -> Result<Value, String> {
        admin::request(&self.admin_socket, &request).await
    }

    /// Creates an account with `balance` and returns its first key.
    pub async fn account(&self, balance: &str) -> Key {
        let data = self
            .admin(AdminRequest::AccountCreate {
                name: "test".into(),
                balance: Some(balance.into()),
            })
            .await
            .expect("account created");
        Key {
            account_id: data["account"]["id"].as_str().unwrap().into(),
            id: data["key_id"].as_str().unwrap().into(),
            secret: data["secret"].as_str().unwrap().into(),
        }
    }

    /// The account's balance as the admin socket reports it.
    pub async fn balance(&self, account_id: &str) -> String {
        let list = self.admin(AdminRequest::AccountList).await.unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == account_id)
            .map(|a| a["balance"].as_str().unwrap().to_string())
            .expect("account listed")
    }

    /// Sends a request with raw body bytes and extra headers.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        key: Option<&Key>,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Answer {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req
                .header("X-API-KEY-ID", &k.id)
                .header("X-API-KEY-SECRET", &k.secret);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(Full::new(Bytes::from(body))).unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
            .await
            .expect("answer within 10 s")
            .expect("request completes");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Answer {
            status,
            headers,
            json,
        }
    }

    /// The status of a GET without a key, or `None` when nothing answers.
    pub async fn try_get(&self, path: &str) -> Option<u16> {
        let req = Request::get(format!("{}{path}", self.base))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(2), self.client.request(req)).await;
        match resp {
            Ok(Ok(r)) => Some(r.status().as_u16()),
            _ => None,
        }
    }

    /// A POST with `key` that returns `None` when the connection fails instead of panicking
    /// (for clients racing a daemon that stops).
    pub async fn try_raw(
        &self,
        method: Method,
        path: &str,
        key: &Key,
        body: Vec<u8>,
    ) -> Option<(u16, Value)> {
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("X-API-KEY-ID", &key.id)
            .header("X-API-KEY-SECRET", &key.secret)
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
            .await
            .ok()?
            .ok()?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.ok()?.to_bytes();
        Some((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    /// Sends a JSON request.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&Key>,
        body: Option<Value>,
    ) -> Answer {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let headers: &[(&str, &str)] = &[("content-type", "application/json")];
        self.raw(method, path, key, headers, bytes).await
    }

    /// `POST /v1/sms` with the documented fields.
    pub async fn send_sms(&self, key: &Key, to: &str, body: &str) -> Answer {
        let sms = serde_json::json!({"from": "36789", "to": to, "body": body});
        self.call(Method::POST, "/v1/sms", Some(key), Some(sms))
            .await
    }

    /// Polls `GET /v1/sms/{id}` until the message has `status`, or panics after 10 s.
    pub async fn wait_status(&self, key: &Key, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let a = self
                .call(Method::GET, &format!("/v1/sms/{id}"), Some(key), None)
                .await;
            assert_eq!(a.status, StatusCode::OK, "{:?}", a.json);
            if a.json["status"] == status {
                return a.json;
            }
            assert!(
                Instant::now() < deadline,
                "message {id} did not reach {status}: {}",
                a.json
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `POST /v1/webhooks` for `url`, returning the webhook object.
    pub async fn webhook(&self, key: &Key, url: &str) -> Value {
        let body = serde_json::json!({"url": url, "events": ["sms.status"]});
        let a = self
            .call(Method::POST, "/v1/webhooks", Some(key), Some(body))
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.json);
        a.json
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        // A test that panicked leaves its daemon running; its runtime ends with the test.
        let _ = self.daemon.take();
    }
}
