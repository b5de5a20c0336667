//! `kill -9` of the real binary loses nothing: a webhook call in flight when the process
//! dies is sent again, with the same id, by the next process on the same file.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Api;
use common::receiver::{Receiver, Reply};
use hyper::Method;

/// A port that was free a moment ago, for a daemon that must be told its port up front.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(config: &std::path::Path, log: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_smswire"))
        .arg("serve")
        .arg("--config")
        .arg(config)
        .stdout(Stdio::from(std::fs::File::create(log).unwrap()))
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

async fn wait_ready(api: &Api) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if api.try_get("/readyz").await == Some(200) {
            return;
        }
        assert!(Instant::now() < deadline, "daemon not ready in 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGKILL during a webhook call: after the restart the call is made again with the same
/// `webhook-id`, the delivery succeeds, and the message is intact.
#[tokio::test]
async fn kill_9_during_a_webhook_call_resends_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("smswire.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[api]
listen = "127.0.0.1:{port}"
[store]
path = "{dir}/smswire.redb"
[admin]
socket = "{dir}/admin.sock"
[metrics]
listen = "127.0.0.1:0"
[webhooks]
allowed_networks = ["127.0.0.0/8"]
timeout = "60s"
[provider.simulator]
submit_delay = "1ms"
receipt_delay = "1ms"
"#,
            dir = dir.path().display()
        ),
    )
    .unwrap();
    let receiver = Receiver::start(vec![], Reply::Hang).await;

    let mut daemon = spawn(&config, &dir.path().join("first.log"));
    let api = Api::new(([127, 0, 0, 1], port).into(), dir.path().join("admin.sock"));
    wait_ready(&api).await;
    let key = api.account("10").await;
    let hook = api.webhook(&key, &receiver.url("/hook")).await;
    let sms = api.send_sms(&key, "999999999999", "crash").await.json;
    let first = receiver.wait_for(1, Duration::from_secs(10)).await;

    // The call hangs in flight; its result was never committed.
    daemon.kill().unwrap();
    daemon.wait().unwrap();

    receiver.answer_with(Reply::Status(204));
    let mut daemon = spawn(&config, &dir.path().join("second.log"));
    wait_ready(&api).await;
    let calls = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(
        calls[1].headers["webhook-id"],
        first[0].headers["webhook-id"]
    );
    assert_eq!(calls[1].body, first[0].body);

    let id = sms["id"].as_str().unwrap();
    let m = api.wait_status(&key, id, "errored").await;
    assert_eq!(m["statusReason"], "invalid_phone_number");
    let path = format!("/v1/webhooks/{}/deliveries", hook["id"].as_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = api.call(Method::GET, &path, Some(&key), None).await.json;
        if list["data"][0]["state"] == "succeeded" {
            break;
        }
        assert!(Instant::now() < deadline, "delivery not recorded: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // SIGTERM: a clean stop exits 0.
    Command::new("kill")
        .arg("-TERM")
        .arg(daemon.id().to_string())
        .status()
        .unwrap();
    let status = daemon.wait().unwrap();
    assert!(status.success(), "graceful stop exits 0: {status:?}");
}
