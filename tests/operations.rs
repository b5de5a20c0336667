//! Running it as a service: metrics, TLS on the API, and a graceful stop under load with the
//! real binary and a real signal.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Api, TestDaemon};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, StatusCode};

/// Fetches the metrics text.
async fn scrape(addr: std::net::SocketAddr) -> String {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let resp = client
        .get(format!("http://{addr}/metrics").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

/// The value of the sample named `name` (with its labels written out), 0 when absent.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// Metrics answer in the exposition format and move when messages are sent.
#[tokio::test]
async fn metrics_move_with_messages() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(common::config(dir.path()), dir.path()).await;
    let addr = d.daemon.as_ref().unwrap().metrics_addr().unwrap();
    let before = scrape(addr).await;
    assert!(before.ends_with("# EOF\n"));
    assert_eq!(sample(&before, "smswire_messages_accepted_total"), 0.0);

    let key = d.account("10").await;
    d.webhook(&key, "https://receiver.example/hook").await;
    let a = d.send_sms(&key, "590690112233", "count me").await;
    d.wait_status(&key, a.json["id"].as_str().unwrap(), "delivered")
        .await;
    let b = d.send_sms(&key, "999999999999", "and me").await;
    d.wait_status(&key, b.json["id"].as_str().unwrap(), "errored")
        .await;

    let after = scrape(addr).await;
    assert_eq!(sample(&after, "smswire_messages_accepted_total"), 2.0);
    assert_eq!(
        sample(&after, "smswire_messages_final_total{status=\"delivered\"}"),
        1.0
    );
    assert_eq!(
        sample(&after, "smswire_messages_final_total{status=\"errored\"}"),
        1.0
    );
    assert!(
        sample(
            &after,
            "smswire_http_requests_total{route=\"/v1/sms\",class=\"2xx\"}"
        ) >= 2.0
    );
    assert!(after.contains("smswire_deliveries_waiting"), "{after}");
    assert!(after.contains("smswire_due_lag_seconds"));
    assert!(after.contains("smswire_smpp_window_in_use"));
}

/// With a certificate and key configured, the API is served over TLS.
#[tokio::test]
async fn api_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
        .args([
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=serverAuth",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl generates a test certificate");
    assert!(made.success());
    let mut c = common::config(dir.path());
    c.api.tls_cert = cert.clone();
    c.api.tls_key = key;
    let d = TestDaemon::start(c, dir.path()).await;
    let port = d.daemon.as_ref().unwrap().api_addr().port();

    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&cert).unwrap();
    use rustls_pki_types::pem::PemObject;
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Full<Bytes>>(https);
    let resp = client
        .get(format!("https://localhost:{port}/healthz").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // Plain HTTP on the TLS port gets nowhere.
    let plain = Api::new(([127, 0, 0, 1], port).into(), dir.path().join("admin.sock"));
    assert_eq!(plain.try_get("/healthz").await, None);
}

/// SIGTERM while clients are sending: every message answered 201 is there after the
/// restart, and the process exits 0.
#[tokio::test]
async fn graceful_stop_under_load_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("smswire.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nlisten = \"127.0.0.1:{port}\"\n[store]\npath = \"{d}/smswire.redb\"\n\
             [admin]\nsocket = \"{d}/admin.sock\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_smswire"))
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    };
    let api = Arc::new(Api::new(
        ([127, 0, 0, 1], port).into(),
        dir.path().join("admin.sock"),
    ));
    let wait_ready = |api: Arc<Api>| async move {
        let deadline = Instant::now() + Duration::from_secs(10);
        while api.try_get("/readyz").await != Some(200) {
            assert!(Instant::now() < deadline, "not ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };

    let mut daemon = spawn();
    wait_ready(api.clone()).await;
    let key = api.account("1000").await;

    // Eight clients send as fast as they can; the signal comes in the middle.
    let mut senders = Vec::new();
    for _ in 0..8 {
        let (api, key) = (api.clone(), key.clone());
        senders.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(3) {
                let body = br#"{"from": "36789", "to": "590690112233", "body": "load"}"#.to_vec();
                match api.try_raw(Method::POST, "/v1/sms", &key, body).await {
                    Some((201, json)) => {
                        acknowledged.push(json["id"].as_str().unwrap().to_string())
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            acknowledged
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    Command::new("kill")
        .arg("-TERM")
        .arg(daemon.id().to_string())
        .status()
        .unwrap();
    let mut acknowledged = Vec::new();
    for s in senders {
        acknowledged.extend(s.await.unwrap());
    }
    let status = daemon.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        acknowledged.len() > 10,
        "the load ran: {}",
        acknowledged.len()
    );

    let mut daemon = spawn();
    wait_ready(api.clone()).await;
    for id in &acknowledged {
        let m = api
            .call(Method::GET, &format!("/v1/sms/{id}"), Some(&key), None)
            .await;
        assert_eq!(m.status, StatusCode::OK, "acknowledged {id} lost");
    }
    daemon.kill().unwrap();
    let _ = daemon.wait();
}

/// Runs `smswire backup` against the daemon whose files are in `dir`. tokio's Command,
/// because a blocking wait would stall the in-process daemon on this test's runtime.
async fn backup(dir: &std::path::Path, file: &std::path::Path) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_smswire"))
        .arg("backup")
        .arg("--socket")
        .arg(dir.join("admin.sock"))
        .arg(file)
        .output()
        .await
        .unwrap()
}

/// `smswire backup FILE` while messages are being sent writes a consistent copy that a
/// daemon can run on: everything committed before the backup is in it.
#[tokio::test]
async fn backup_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(common::config(dir.path()), dir.path()).await;
    let key = d.account("100").await;
    let hook = d.webhook(&key, "https://receiver.example/hook").await;
    let mut before = Vec::new();
    for _ in 0..20 {
        before.push(
            d.send_sms(&key, "590690112233", "before").await.json["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }

    // Writes keep coming while the copy is made.
    let d = Arc::new(d);
    let writer = {
        let (d, key) = (d.clone(), key.clone());
        tokio::spawn(async move {
            for _ in 0..30 {
                d.send_sms(&key, "590690112233", "during").await;
            }
        })
    };
    let file = dir.path().join("copy.redb");
    let out = backup(dir.path(), &file).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("backup written"));
    writer.await.unwrap();

    // A second backup to the same file is refused rather than overwriting it.
    let again = backup(dir.path(), &file).await;
    assert!(!again.status.success());

    let restored = tempfile::tempdir().unwrap();
    std::fs::copy(&file, restored.path().join("smswire.redb")).unwrap();
    let r = TestDaemon::start(common::config(restored.path()), restored.path()).await;
    for id in &before {
        let m = r
            .call(Method::GET, &format!("/v1/sms/{id}"), Some(&key), None)
            .await;
        assert_eq!(m.status, StatusCode::OK, "{id} missing from the backup");
    }
    let path = format!("/v1/webhooks/{}", hook["id"].as_str().unwrap());
    assert_eq!(
        r.call(Method::GET, &path, Some(&key), None).await.json,
        hook
    );
}
