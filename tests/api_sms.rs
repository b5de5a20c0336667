//! The message lifecycle over real sockets on the simulator: the documented request, every
//! simulated outcome, processing refusals, and idempotency.
#![allow(clippy::unwrap_used)]

mod common;

use common::TestDaemon;
use hyper::{Method, StatusCode};
use serde_json::json;

/// The documented curl request gets 201 and a pending message that ends delivered.
#[tokio::test]
async fn documented_request_is_accepted_then_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(common::config(dir.path()), dir.path()).await;
    let key = d.account("10").await;

    let a = d
        .raw(
            Method::POST,
            "/v1/sms",
            Some(&key),
            &[("Content-Type", "application/json")],
            br#"{"from": "36789", "to": "590690112233", "body": "Hello world !"}"#.to_vec(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.json);
    let sms = a.json;
    assert_eq!(sms["status"], "pending");
    assert_eq!(sms["statusReason"], "");
    assert_eq!(sms["price"], json!(0));
    assert_eq!(sms["parts"], 1);
    assert_eq!(sms["from"], "36789");
    assert_eq!(sms["to"], "590690112233");
    assert_eq!(sms["body"], "Hello world !");
    let id = sms["id"].as_str().unwrap();
    assert!(id.starts_with("sms_"));
    let created = sms["createdAt"].as_str().unwrap();
    assert_eq!(created.len(), "2022-12-29T18:24:27.000Z".len());
    assert!(created.ends_with('Z'));

    let done = d.wait_status(&key, id, "delivered").await;
    assert_eq!(done["statusReason"], "DELIVRD");
    assert_eq!(done["price"], json!(0.08));
    assert_eq!(done["createdAt"], created);
    assert_eq!(d.balance(&key.account_id).await, "9.92");
}

/// Each simulated pattern ends errored with its reason, charged as sent.
#[tokio::test]
async fn simulated_failures_arrive_as_errored() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(common::config(dir.path()), dir.path()).await;
    let key = d.account("10").await;

    for (to, reason) in [
        ("33612340001", "EXPIRED"),
        ("33612340002", "UNDELIV"),
        ("33612340003", "REJECTD"),
    ] {
        let a = d.send_sms(&key, to, "hi").await;
        assert_eq!(a.status, StatusCode::CREATED);
        let m = d
            .wait_status(&key, a.json["id"].as_str().unwrap(), "errored")
            .await;
        assert_eq!(m["statusReason"], reason, "{m}");
        assert_eq!(m["price"], json!(0.08));
    }
}

/// An invalid number and a short balance arrive as errored with price 0, balance untouched.
#[tokio::test]
async fn processing_refusals_cost_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(common::config(dir.path()), dir.path()).await;

    let key = d.account("1").await;
    let a = d.send_sms(&key, "999999999999", "hi").await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.json["status"], "pending");
    let m = d
        .wait_status(&key, a.json["id"].as_str().unwrap(), "errored")
        .await;
    assert_eq!(m["statusReason"], "invalid_phone_number");
    assert_eq!(m["price"], json!(0));
    assert_eq!(d.balance(&key.account_id).await, "1.00");

    let poor = d.account("0.05").await;
    let a = d.send_sms(&poor, "590690112233", "hi").await;
    let m = d
        .wait_status(&poor, a.json["id"].as_str().unwrap(), "errored")
        .await;
    assert_eq!(m["statusReason"], "insufficient_balance");
    assert_eq!(m["price"], json!(0));
    assert_eq!(d.balance(&poor.account_id).await, "0.05");
}

/// Billing switched off: nothing is charged and a zero balance is no obstacle.
#[tokio::test]
async fn billing_off_charges_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    config.billing.enabled = false;
    let d = TestDaemon::start(config, dir.path()).await;
    let key = d.account("0").await;

    let a = d.send_sms(&key, "590690112233", "hi").await;
    let m = d
        .wait_status(&key, a.json["id"].as_str().unwrap(), "delivered")
        .await;
    assert_eq!(m["price"], json!(0));
    assert_eq!(d.balance(&key.account_id).await, "0.00");
}

/// The same request twice with one Idempotency-Key makes one message and one charge.
#[tokio::test]
async fn idempotency_key_makes_one_message() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(common::config(dir.path()), dir.path()).await;
    let key = d.account("10").await;
    let body = br#"{"from": "36789", "to": "590690112233", "body": "once"}"#.to_vec();
    let headers = [("Idempotency-Key", "order-42")];

    let first = d
        .raw(Method::POST, "/v1/sms", Some(&key), &headers, body.clone())
        .await;
    let second = d
        .raw(Method::POST, "/v1/sms", Some(&key), &headers, body)
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(second.status, StatusCode::CREATED);
    assert_eq!(first.json, second.json);

    let id = first.json["id"].as_str().unwrap();
    d.wait_status(&key, id, "delivered").await;
    let list = d.call(Method::GET, "/v1/sms", Some(&key), None).await;
    assert_eq!(list.json["data"].as_array().unwrap().len(), 1);
    assert_eq!(d.balance(&key.account_id).await, "9.92");

    // Another account may use the same key for its own request.
    let other = d.account("1").await;
    let b = br#"{"from": "36789", "to": "590690112233", "body": "theirs"}"#.to_vec();
    let theirs = d
        .raw(Method::POST, "/v1/sms", Some(&other), &headers, b)
        .await;
    assert_eq!(theirs.status, StatusCode::CREATED);
    assert_ne!(theirs.json["id"], first.json["id"]);
}

/// Listing: newest first, cursor pagination, and the status / to / time filters.
#[tokio::test]
async fn listing_pages_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(common::config(dir.path()), dir.path()).await;
    let key = d.account("10").await;

    let mut ids = Vec::new();
    for i in 0..5 {
        let to = if i == 2 {
            "33612340002"
        } else {
            "590690112233"
        };
        let a = d.send_sms(&key, to, &format!("n{i}")).await;
        ids.push(a.json["id"].as_str().unwrap().to_string());
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    d.wait_status(&key, &ids[2], "errored").await;

    let page = d
        .call(Method::GET, "/v1/sms?limit=2", Some(&key), None)
        .await;
    let got: Vec<&str> = page.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[4].as_str(), ids[3].as_str()]);
    let cursor = page.json["next"].as_str().unwrap();
    let page2 = d
        .call(
            Method::GET,
            &format!("/v1/sms?limit=2&cursor={cursor}"),
            Some(&key),
            None,
        )
        .await;
    let got2: Vec<&str> = page2.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(got2, [ids[2].as_str(), ids[1].as_str()]);

    let errored = d
        .call(Method::GET, "/v1/sms?status=errored", Some(&key), None)
        .await;
    assert_eq!(errored.json["data"].as_array().unwrap().len(), 1);
    let to = d
        .call(Method::GET, "/v1/sms?to=%2B33612340002", Some(&key), None)
        .await;
    assert_eq!(to.json["data"][0]["id"], ids[2].as_str());

    let future = d
        .call(
            Method::GET,
            "/v1/sms?createdAfter=2999-01-01T00:00:00.000Z",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(future.json["data"].as_array().unwrap().len(), 0);
    let past = d
        .call(
            Method::GET,
            "/v1/sms?createdBefore=2000-01-01T00:00:00Z",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(past.json["data"].as_array().unwrap().len(), 0);
}
