//! The webhook engine over real sockets: signed calls verified by the official Standard
//! Webhooks library, the replay schedule (compressed to milliseconds), discarding and
//! replay, isolation from a dead receiver, and SSRF refusals.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::receiver::{Receiver, Reply};
use common::{TestDaemon, verifier};
use hyper::{Method, StatusCode};
use serde_json::Value;

/// A test configuration whose webhooks may reach 127.0.0.1, with a schedule in ms.
fn config(dir: &std::path::Path, schedule_ms: &[u64]) -> smswire::Config {
    let mut c = common::config(dir);
    c.webhooks.allowed_networks = vec!["127.0.0.0/8".parse().unwrap()];
    c.webhooks.schedule = schedule_ms
        .iter()
        .map(|&ms| Duration::from_millis(ms))
        .collect();
    c.webhooks.jitter = 0.0;
    c.webhooks.timeout = Duration::from_millis(400);
    c
}

async fn deliveries(d: &TestDaemon, key: &common::Key, hook_id: &str) -> Vec<Value> {
    let path = format!("/v1/webhooks/{hook_id}/deliveries");
    let a = d.call(Method::GET, &path, Some(key), None).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.json);
    a.json["data"].as_array().unwrap().clone()
}

/// Polls until the webhook's only delivery has `state`.
async fn wait_delivery(d: &TestDaemon, key: &common::Key, hook_id: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let list = deliveries(d, key, hook_id).await;
        if list.len() == 1 && list[0]["state"] == state {
            return list[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "delivery never became {state}: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One SMS makes exactly two signed calls, sent then delivered, with the documented
/// payload, and the official library accepts both signatures.
#[tokio::test]
async fn one_sms_makes_two_signed_calls() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(vec![], Reply::Status(200)).await;
    let d = TestDaemon::start(config(dir.path(), &[1000]), dir.path()).await;
    let key = d.account("10").await;
    let hook = d.webhook(&key, &receiver.url("/api/sofyStatus")).await;
    let hook_id = hook["id"].as_str().unwrap();

    let sms = d.send_sms(&key, "590690112233", "Hello world !").await.json;
    let id = sms["id"].as_str().unwrap();
    let final_sms = d.wait_status(&key, id, "delivered").await;
    let calls = receiver.wait_for(2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 2, "exactly two calls");

    let statuses: Vec<Value> = calls
        .iter()
        .map(|c| c.json()["data"][0]["status"].clone())
        .collect();
    assert_eq!(statuses, ["sent", "delivered"]);
    for call in &calls {
        let body = call.json();
        let keys: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["data", "id", "type", "webhookId"]);
        assert_eq!(body["type"], "sms.status");
        assert_eq!(body["webhookId"], hook_id);
        assert_eq!(call.headers["webhook-id"], body["id"].as_str().unwrap());
        assert_eq!(call.headers["content-type"], "application/json");
        assert!(call.headers["user-agent"].starts_with("smswire/"));
        assert_eq!(call.path, "/api/sofyStatus");
        let ts: u64 = call.headers["webhook-timestamp"].parse().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(now.abs_diff(ts) < 60);
    }
    assert_ne!(calls[0].json()["id"], calls[1].json()["id"]);
    assert_eq!(calls[1].json()["data"][0], final_sms);
    assert_eq!(calls[0].json()["data"][0]["price"], serde_json::json!(0.08));

    let verified = verifier::verify(hook["secret"].as_str().unwrap(), &calls, dir.path());
    assert_eq!(verified.len(), 2);

    // A tampered body must be refused by the same library, or the check proves nothing.
    let mut forged = calls[0].clone();
    forged.body = forged
        .body
        .iter()
        .map(|&b| if b == b'5' { b'6' } else { b })
        .collect();
    let refused = verifier::check(hook["secret"].as_str().unwrap(), &[forged], dir.path());
    assert!(refused.is_err(), "a forged body must not verify");

    for delivery in deliveries(&d, &key, hook_id).await {
        assert_eq!(delivery["state"], "succeeded");
        assert_eq!(delivery["attempts"][0]["statusCode"], 200);
        assert_eq!(delivery["attempts"][0]["response"], "answer!");
    }
}

/// A receiver failing the first attempts (500, a timeout, a closed connection, a 302) gets
/// replays at the configured gaps, and the fifth attempt succeeds.
#[tokio::test]
async fn failures_are_replayed_on_the_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let script = vec![
        Reply::Status(500),
        Reply::Hang,
        Reply::Close,
        Reply::Redirect,
    ];
    let receiver = Receiver::start(script, Reply::Status(200)).await;
    let waits = [150, 300, 450, 600, 10_000];
    let d = TestDaemon::start(config(dir.path(), &waits), dir.path()).await;
    let key = d.account("10").await;
    let hook = d.webhook(&key, &receiver.url("/hook")).await;
    let hook_id = hook["id"].as_str().unwrap();

    // An invalid number makes exactly one event: errored.
    d.send_sms(&key, "999999999999", "x").await;
    let delivery = wait_delivery(&d, &key, hook_id, "succeeded").await;
    let calls = receiver.received();
    assert_eq!(calls.len(), 5);
    let ids: Vec<&str> = calls
        .iter()
        .map(|c| c.headers["webhook-id"].as_str())
        .collect();
    assert!(
        ids.iter().all(|i| *i == ids[0]),
        "same id on every replay: {ids:?}"
    );

    // Attempt 2 hung until the 400 ms timeout, so its gap includes it.
    let timeout = 400;
    let expected = [waits[0], waits[1] + timeout, waits[2], waits[3]];
    for (n, pair) in calls.windows(2).enumerate() {
        let gap = pair[1].at.duration_since(pair[0].at).as_millis() as u64;
        assert!(gap >= expected[n], "gap {n}: {gap} ms < {} ms", expected[n]);
        assert!(
            gap < expected[n] + 3000,
            "gap {n}: {gap} ms, expected about {} ms",
            expected[n]
        );
    }

    let attempts = delivery["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 5);
    assert_eq!(attempts[0]["statusCode"], 500);
    assert!(
        attempts[1]["error"].as_str().unwrap().contains("timed out"),
        "{attempts:?}"
    );
    assert!(attempts[2]["statusCode"].is_null() && attempts[2]["error"].is_string());
    assert_eq!(attempts[3]["statusCode"], 302);
    assert_eq!(attempts[4]["statusCode"], 200);
    assert_eq!(delivery["attemptCount"], 5);
    assert!(delivery["nextAttemptAt"].is_null());
}

/// A receiver that always fails gets exactly 11 attempts, then the delivery is discarded;
/// a replay sends it once more.
#[tokio::test]
async fn always_failing_is_discarded_after_eleven_attempts_and_can_be_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(vec![], Reply::Status(503)).await;
    let d = TestDaemon::start(config(dir.path(), &[20; 10]), dir.path()).await;
    let key = d.account("10").await;
    let hook = d.webhook(&key, &receiver.url("/hook")).await;
    let hook_id = hook["id"].as_str().unwrap();

    d.send_sms(&key, "999999999999", "x").await;
    let delivery = wait_delivery(&d, &key, hook_id, "discarded").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 11);
    assert_eq!(delivery["attempts"].as_array().unwrap().len(), 11);

    receiver.answer_with(Reply::Status(503));
    let replay = format!(
        "/v1/webhooks/{hook_id}/deliveries/{}/replay",
        delivery["id"].as_str().unwrap()
    );
    let a = d.call(Method::POST, &replay, Some(&key), None).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{:?}", a.json);
    receiver.wait_for(12, Duration::from_secs(5)).await;
    let again = wait_delivery(&d, &key, hook_id, "discarded").await;
    assert_eq!(again["attempts"].as_array().unwrap().len(), 12);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.received().len(),
        12,
        "a replay sends once, no new schedule"
    );

    // Another account cannot replay it.
    let other = d.account("1").await;
    let a = d.call(Method::POST, &replay, Some(&other), None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

/// A daemon whose account has two webhooks: one to a receiver that never answers (calls
/// time out after 30 s), one to a receiver that answers 204; `per_webhook` calls at once
/// each.
async fn dead_and_healthy(
    dir: &std::path::Path,
    per_webhook: usize,
) -> (TestDaemon, common::Key, Receiver, Receiver) {
    let dead = Receiver::start(vec![], Reply::Hang).await;
    let healthy = Receiver::start(vec![], Reply::Status(204)).await;
    let mut c = config(dir, &[60_000]);
    c.webhooks.timeout = Duration::from_secs(30);
    c.webhooks.per_webhook_concurrency = per_webhook;
    let d = TestDaemon::start(c, dir).await;
    let key = d.account("100").await;
    d.webhook(&key, &dead.url("/dead")).await;
    d.webhook(&key, &healthy.url("/ok")).await;
    (d, key, dead, healthy)
}

/// A receiver that never answers does not slow the calls to a healthy one.
#[tokio::test]
async fn dead_receiver_does_not_slow_a_healthy_one() {
    let dir = tempfile::tempdir().unwrap();
    let (d, key, dead, healthy) = dead_and_healthy(dir.path(), 4).await;

    let started = Instant::now();
    for _ in 0..25 {
        d.send_sms(&key, "999999999999", "x").await;
    }
    // 25 events each; the dead one holds 4 slots for 30 s, the healthy one must not wait.
    healthy.wait_for(25, Duration::from_secs(10)).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        dead.received().len(),
        4,
        "the dead receiver holds only its own slots"
    );
}

/// More deliveries than a webhook's in-memory queue holds: the writer's hand-off is
/// refused once the dead webhook's queue is full, the rest wait in the due table, and the
/// healthy webhook still gets every one of its deliveries exactly once, through the table
/// scan as well as the hand-off.
#[tokio::test]
async fn a_full_queue_overflows_to_the_table_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (d, key, dead, healthy) = dead_and_healthy(dir.path(), 1).await;

    // 2 events per message (sent, delivered): 1,200 deliveries per webhook, over twice
    // the queue's 512.
    let messages = 600;
    for _ in 0..messages {
        d.send_sms(&key, "590690112233", "x").await;
    }
    let got = healthy
        .wait_for(2 * messages, Duration::from_secs(30))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = healthy.received().len().max(got.len());
    let ids: std::collections::HashSet<String> = healthy
        .received()
        .iter()
        .map(|r| r.headers["webhook-id"].clone())
        .collect();
    assert_eq!(got, 2 * messages, "each delivery called once");
    assert_eq!(ids.len(), 2 * messages, "every delivery has its own id");
    assert_eq!(
        dead.received().len(),
        1,
        "one call holds the dead webhook's slot"
    );
}

/// Internal addresses are refused at registration unless a configured network allows them.
#[tokio::test]
async fn internal_urls_are_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(common::config(dir.path()), dir.path()).await;
    let key = d.account("10").await;
    let internal = [
        "http://127.0.0.1/hook",
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/",
        "http://localhost:9/hook",
    ];
    for url in internal {
        let body = serde_json::json!({"url": url, "events": ["sms.status"]});
        let a = d
            .call(Method::POST, "/v1/webhooks", Some(&key), Some(body))
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{url}: {:?}", a.json);
        assert_eq!(a.json["error"]["code"], "invalid_request");
    }
    let ok = d.webhook(&key, "https://hooks.example/in").await;
    let patch = serde_json::json!({"url": "http://127.0.0.1:1/x"});
    let path = format!("/v1/webhooks/{}", ok["id"].as_str().unwrap());
    let a = d.call(Method::PATCH, &path, Some(&key), Some(patch)).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    drop(d);

    let dir2 = tempfile::tempdir().unwrap();
    let mut c = common::config(dir2.path());
    c.webhooks.allowed_networks = ["127.0.0.0/8", "10.0.0.0/8", "169.254.0.0/16", "::1/128"]
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
    let d = TestDaemon::start(c, dir2.path()).await;
    let key = d.account("10").await;
    for url in internal {
        d.webhook(&key, url).await;
    }
}

/// The address connected to is checked at every attempt: a webhook registered while
/// 127.0.0.1 was allowed is refused once it no longer is, and the refusal is logged.
#[tokio::test]
async fn every_attempt_checks_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(vec![], Reply::Status(204)).await;
    let mut d = TestDaemon::start(config(dir.path(), &[60_000]), dir.path()).await;
    let key = d.account("10").await;
    let hook = d.webhook(&key, &receiver.url("/hook")).await;
    let hook_id = hook["id"].as_str().unwrap().to_string();

    d.config.webhooks.allowed_networks.clear();
    d.restart().await;
    d.send_sms(&key, "999999999999", "x").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let attempt = loop {
        let list = deliveries(&d, &key, &hook_id).await;
        if let Some(a) = list.first().and_then(|d| d["attempts"].get(0)).cloned() {
            break a;
        }
        assert!(Instant::now() < deadline, "no attempt recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        attempt["error"].as_str().unwrap().contains("not allowed"),
        "{attempt}"
    );
    assert!(receiver.received().is_empty());
}

/// What fell due while the daemon was stopped is sent as soon as it starts again.
#[tokio::test]
async fn due_deliveries_are_sent_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(vec![Reply::Status(500)], Reply::Status(204)).await;
    let mut d = TestDaemon::start(config(dir.path(), &[1500]), dir.path()).await;
    let key = d.account("10").await;
    let hook = d.webhook(&key, &receiver.url("/hook")).await;
    let hook_id = hook["id"].as_str().unwrap().to_string();

    d.send_sms(&key, "999999999999", "x").await;
    receiver.wait_for(1, Duration::from_secs(5)).await;
    d.stop().await;
    tokio::time::sleep(Duration::from_millis(1600)).await;

    let started = Instant::now();
    d.restart().await;
    let calls = receiver.wait_for(2, Duration::from_secs(5)).await;
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "sent at once, not on a new schedule"
    );
    assert_eq!(
        calls[0].headers["webhook-id"],
        calls[1].headers["webhook-id"]
    );
    wait_delivery(&d, &key, &hook_id, "succeeded").await;
}

/// Disabling a webhook pauses its waiting deliveries and it gets no new events; enabling
/// it sends the paused ones at once; deleting it drops what waits.
#[tokio::test]
async fn disable_pauses_and_delete_drops() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(vec![Reply::Status(500)], Reply::Status(204)).await;
    let d = TestDaemon::start(config(dir.path(), &[300, 300]), dir.path()).await;
    let key = d.account("10").await;
    let hook = d.webhook(&key, &receiver.url("/hook")).await;
    let hook_id = hook["id"].as_str().unwrap();
    let path = format!("/v1/webhooks/{hook_id}");

    // The first attempt fails; disable before its replay is due.
    d.send_sms(&key, "999999999999", "x").await;
    receiver.wait_for(1, Duration::from_secs(5)).await;
    let off = serde_json::json!({"enabled": false});
    assert_eq!(
        d.call(Method::PATCH, &path, Some(&key), Some(off))
            .await
            .status,
        StatusCode::OK
    );
    d.send_sms(&key, "999999999999", "not for a disabled webhook")
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        receiver.received().len(),
        1,
        "a disabled webhook gets no calls"
    );
    let paused = deliveries(&d, &key, hook_id).await;
    assert_eq!(paused.len(), 1);
    assert_eq!(paused[0]["state"], "pending");
    assert!(paused[0]["nextAttemptAt"].is_null(), "paused: {paused:?}");

    let on = serde_json::json!({"enabled": true});
    d.call(Method::PATCH, &path, Some(&key), Some(on)).await;
    let calls = receiver.wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(
        calls[1].headers["webhook-id"],
        calls[0].headers["webhook-id"]
    );
    wait_delivery(&d, &key, hook_id, "succeeded").await;

    // A delivery waiting for its replay is dropped with its webhook.
    receiver.answer_with(Reply::Status(500));
    d.send_sms(&key, "999999999999", "y").await;
    receiver.wait_for(3, Duration::from_secs(5)).await;
    assert_eq!(
        d.call(Method::DELETE, &path, Some(&key), None).await.status,
        StatusCode::NO_CONTENT
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.received().len(), 3, "no replay after delete");
}

/// The writer keeps each account's webhooks between status changes: registering a second
/// webhook, changing a URL or deleting one is seen by the very next status change.
#[tokio::test]
async fn webhook_changes_apply_to_the_next_status_change() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(vec![], Reply::Status(204)).await;
    let d = TestDaemon::start(config(dir.path(), &[1000]), dir.path()).await;
    let key = d.account("10").await;
    let first = d.webhook(&key, &receiver.url("/first")).await;
    let first_path = format!("/v1/webhooks/{}", first["id"].as_str().unwrap());
    let mut calls = 0;
    let mut send = async |body: &str, new_calls: usize| {
        let sms = d.send_sms(&key, "590690112233", body).await.json;
        d.wait_status(&key, sms["id"].as_str().unwrap(), "delivered")
            .await;
        calls += new_calls;
        receiver.wait_for(calls, Duration::from_secs(10)).await;
    };

    send("one", 2).await;
    d.webhook(&key, &receiver.url("/second")).await;
    send("two", 4).await;
    let moved = serde_json::json!({"url": receiver.url("/moved")});
    let a = d
        .call(Method::PATCH, &first_path, Some(&key), Some(moved))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.json);
    send("three", 4).await;
    let a = d.call(Method::DELETE, &first_path, Some(&key), None).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    send("four", 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut seen: Vec<String> = receiver
        .received()
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c.json()["data"][0]["body"].as_str().unwrap(),
                c.path
            )
        })
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen,
        [
            "four /second",
            "one /first",
            "three /moved",
            "three /second",
            "two /first",
            "two /second"
        ]
    );
    assert_eq!(
        receiver.received().len(),
        12,
        "two calls per message and webhook"
    );
}
