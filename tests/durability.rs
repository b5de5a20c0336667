//! Stopping and starting the daemon on the same redb file loses nothing acknowledged.
#![allow(clippy::unwrap_used)]

mod common;

use common::TestDaemon;
use hyper::{Method, StatusCode};

/// Messages, webhooks, balances and the deliveries written for status changes survive a
/// restart; the deliveries are still waiting in the due queue.
#[tokio::test]
async fn restart_keeps_messages_webhooks_and_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = TestDaemon::start(common::config(dir.path()), dir.path()).await;
    let key = d.account("10").await;
    let hook = d.webhook(&key, "https://receiver.example/hook").await;
    let hook_id = hook["id"].as_str().unwrap().to_string();

    let mut ids = Vec::new();
    for to in ["590690112233", "33612340002", "999999999999"] {
        let a = d.send_sms(&key, to, "survive").await;
        assert_eq!(a.status, StatusCode::CREATED);
        ids.push(a.json["id"].as_str().unwrap().to_string());
    }
    let mut before = Vec::new();
    for (id, status) in ids.iter().zip(["delivered", "errored", "errored"]) {
        before.push(d.wait_status(&key, id, status).await);
    }
    let deliveries_path = format!("/v1/webhooks/{hook_id}/deliveries");
    let deliveries_before = d
        .call(Method::GET, &deliveries_path, Some(&key), None)
        .await
        .json;

    d.restart().await;

    for (id, old) in ids.iter().zip(&before) {
        let now = d
            .call(Method::GET, &format!("/v1/sms/{id}"), Some(&key), None)
            .await;
        assert_eq!(&now.json, old);
    }
    let again = d
        .call(
            Method::GET,
            &format!("/v1/webhooks/{hook_id}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(again.json, hook);
    assert_eq!(d.balance(&key.account_id).await, "9.84");

    // sent + delivered, sent + errored, errored: five deliveries, all waiting to be sent.
    let deliveries = d
        .call(Method::GET, &deliveries_path, Some(&key), None)
        .await
        .json;
    // The receiver does not exist, so attempts may have failed meanwhile; what must hold is
    // that the same deliveries, with the same payloads, are still waiting.
    let same = |v: &serde_json::Value| -> Vec<(serde_json::Value, serde_json::Value)> {
        let list = v["data"].as_array().unwrap();
        list.iter()
            .map(|d| (d["id"].clone(), d["payload"].clone()))
            .collect()
    };
    assert_eq!(same(&deliveries), same(&deliveries_before));
    let list = deliveries["data"].as_array().unwrap();
    assert_eq!(list.len(), 5);
    for delivery in list {
        assert_eq!(delivery["state"], "pending");
        assert!(delivery["nextAttemptAt"].is_string());
        assert_eq!(delivery["payload"]["webhookId"], hook_id.as_str());
        assert_eq!(delivery["payload"]["id"], delivery["id"]);
        assert_eq!(delivery["payload"]["type"], "sms.status");
    }
    let statuses: Vec<&str> = list
        .iter()
        .rev()
        .map(|d| d["payload"]["data"][0]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == "sent").count(), 2);
    assert_eq!(statuses.iter().filter(|s| **s == "delivered").count(), 1);
    assert_eq!(statuses.iter().filter(|s| **s == "errored").count(), 2);
}

/// A message accepted just before a stop is processed after the start.
#[tokio::test]
async fn pending_work_resumes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    // Slow enough that the stop comes first, so the submit job is what survives.
    config.provider.simulator.submit_delay = std::time::Duration::from_millis(300);
    let mut d = TestDaemon::start(config, dir.path()).await;
    let key = d.account("10").await;

    let a = d.send_sms(&key, "590690112233", "later").await;
    let id = a.json["id"].as_str().unwrap().to_string();
    d.restart().await;
    let m = d.wait_status(&key, &id, "delivered").await;
    assert_eq!(m["price"], serde_json::json!(0.08));
    assert_eq!(d.balance(&key.account_id).await, "9.92");
}
