//! Every bad request gets its 4xx and stable error code, never a 500, and changes nothing.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Key, TestDaemon};
use hyper::{Method, StatusCode};
use serde_json::json;
use smswire::admin::AdminRequest;

/// Asserts the status and the stable `error.code` of an answer.
fn expect(a: &common::Answer, status: StatusCode, code: &str) {
    assert_eq!(a.status, status, "{:?}", a.json);
    assert_eq!(a.json["error"]["code"], code, "{:?}", a.json);
    assert!(
        a.json["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
}

async fn message_count(d: &TestDaemon, key: &Key) -> usize {
    let list = d
        .call(Method::GET, "/v1/sms?limit=500", Some(key), None)
        .await;
    list.json["data"].as_array().unwrap().len()
}

/// Missing headers, a wrong secret, an unknown key and a revoked key are all 401.
#[tokio::test]
async fn authentication_failures_are_401() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(common::config(dir.path()), dir.path()).await;
    let key = d.account("10").await;
    let sms = json!({"from": "36789", "to": "590690112233", "body": "x"});

    let none = d
        .call(Method::POST, "/v1/sms", None, Some(sms.clone()))
        .await;
    expect(&none, StatusCode::UNAUTHORIZED, "unauthorized");

    let wrong = Key {
        secret: "sk_wrong".into(),
        ..key.clone()
    };
    let a = d
        .call(Method::POST, "/v1/sms", Some(&wrong), Some(sms.clone()))
        .await;
    expect(&a, StatusCode::UNAUTHORIZED, "unauthorized");

    let unknown = Key {
        id: "key_nope".into(),
        ..key.clone()
    };
    let a = d.call(Method::GET, "/v1/sms", Some(&unknown), None).await;
    expect(&a, StatusCode::UNAUTHORIZED, "unauthorized");

    let only_id = d
        .raw(
            Method::GET,
            "/v1/sms",
            None,
            &[("X-API-KEY-ID", &key.id)],
            vec![],
        )
        .await;
    expect(&only_id, StatusCode::UNAUTHORIZED, "unauthorized");

    assert_eq!(message_count(&d, &key).await, 0);
    d.admin(AdminRequest::KeyRevoke {
        key_id: key.id.clone(),
    })
    .await
    .unwrap();
    let revoked = d.call(Method::GET, "/v1/sms", Some(&key), None).await;
    expect(&revoked, StatusCode::UNAUTHORIZED, "unauthorized");

    // A second key of the same account still works.
    let data = d
        .admin(AdminRequest::KeyCreate {
            account: key.account_id.clone(),
        })
        .await
        .unwrap();
    let second = Key {
        account_id: key.account_id.clone(),
        id: data["key_id"].as_str().unwrap().into(),
        secret: data["secret"].as_str().unwrap().into(),
    };
    assert_eq!(
        d.call(Method::GET, "/v1/sms", Some(&second), None)
            .await
            .status,
        StatusCode::OK
    );
}

/// Another account's message and webhook answer 404, never 403, and stay as they were.
#[tokio::test]
async fn other_accounts_ids_are_404() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(common::config(dir.path()), dir.path()).await;
    let alice = d.account("10").await;
    let bob = d.account("10").await;

    let sms = d.send_sms(&alice, "590690112233", "private").await;
    let sms_id = sms.json["id"].as_str().unwrap();
    let hook = d.webhook(&alice, "https://alice.example/hook").await;
    let hook_id = hook["id"].as_str().unwrap();

    let a = d
        .call(Method::GET, &format!("/v1/sms/{sms_id}"), Some(&bob), None)
        .await;
    expect(&a, StatusCode::NOT_FOUND, "not_found");
    for method in [Method::GET, Method::DELETE] {
        let a = d
            .call(method, &format!("/v1/webhooks/{hook_id}"), Some(&bob), None)
            .await;
        expect(&a, StatusCode::NOT_FOUND, "not_found");
    }
    let patch = json!({"enabled": false});
    let a = d
        .call(
            Method::PATCH,
            &format!("/v1/webhooks/{hook_id}"),
            Some(&bob),
            Some(patch),
        )
        .await;
    expect(&a, StatusCode::NOT_FOUND, "not_found");
    let a = d
        .call(
            Method::GET,
            &format!("/v1/webhooks/{hook_id}/deliveries"),
            Some(&bob),
            None,
        )
        .await;
    expect(&a, StatusCode::NOT_FOUND, "not_found");

    assert_eq!(message_count(&d, &bob).await, 0);
    let list = d.call(Method::GET, "/v1/webhooks", Some(&bob), None).await;
    assert_eq!(list.json["data"], json!([]));
    let mine = d
        .call(
            Method::GET,
            &format!("/v1/webhooks/{hook_id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(mine.json["enabled"], true);
    assert_eq!(mine.json["url"], "https://alice.example/hook");
}

/// Malformed, mistyped, incomplete, unknown-field, empty and oversized bodies are 4xx.
#[tokio::test]
async fn bad_bodies_are_4xx_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(common::config(dir.path()), dir.path()).await;
    let key = d.account("10").await;

    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("malformed JSON", br#"{"from": "36789", "to": "#.to_vec()),
        (
            "wrong type",
            br#"{"from": 36789, "to": "590690112233", "body": "x"}"#.to_vec(),
        ),
        (
            "missing field",
            br#"{"from": "36789", "body": "x"}"#.to_vec(),
        ),
        (
            "unknown field",
            br#"{"from": "36789", "to": "590690112233", "body": "x", "flash": true}"#.to_vec(),
        ),
        ("empty request body", Vec::new()),
        ("not an object", b"[1, 2]".to_vec()),
        (
            "empty message body",
            br#"{"from": "36789", "to": "590690112233", "body": ""}"#.to_vec(),
        ),
        (
            "bad recipient",
            br#"{"from": "36789", "to": "33-6-12", "body": "x"}"#.to_vec(),
        ),
        (
            "bad sender",
            br#"{"from": "Far Too Long Sender", "to": "590690112233", "body": "x"}"#.to_vec(),
        ),
        (
            "too many parts",
            json!({"from": "36789", "to": "590690112233", "body": "a".repeat(153 * 10 + 1)})
                .to_string()
                .into_bytes(),
        ),
    ];
    for (what, body) in bodies {
        let a = d.raw(Method::POST, "/v1/sms", Some(&key), &[], body).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{what}: {:?}", a.json);
        assert_eq!(a.json["error"]["code"], "invalid_request", "{what}");
    }

    let huge = json!({"from": "36789", "to": "590690112233", "body": "a".repeat(100_000)});
    let a = d
        .raw(
            Method::POST,
            "/v1/sms",
            Some(&key),
            &[],
            huge.to_string().into_bytes(),
        )
        .await;
    expect(&a, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    let long_key = "k".repeat(256);
    let body = br#"{"from": "36789", "to": "590690112233", "body": "x"}"#.to_vec();
    let a = d
        .raw(
            Method::POST,
            "/v1/sms",
            Some(&key),
            &[("Idempotency-Key", &long_key)],
            body,
        )
        .await;
    expect(&a, StatusCode::BAD_REQUEST, "invalid_request");

    assert_eq!(message_count(&d, &key).await, 0);
    assert_eq!(d.balance(&key.account_id).await, "10.00");
}

/// A reused idempotency key with another body is 409 and sends nothing more.
#[tokio::test]
async fn idempotency_key_with_other_body_is_409() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(common::config(dir.path()), dir.path()).await;
    let key = d.account("10").await;
    let headers = [("Idempotency-Key", "abc")];

    let first = br#"{"from": "36789", "to": "590690112233", "body": "one"}"#.to_vec();
    let other = br#"{"from": "36789", "to": "590690112233", "body": "two"}"#.to_vec();
    assert_eq!(
        d.raw(Method::POST, "/v1/sms", Some(&key), &headers, first)
            .await
            .status,
        StatusCode::CREATED
    );
    let a = d
        .raw(Method::POST, "/v1/sms", Some(&key), &headers, other)
        .await;
    expect(&a, StatusCode::CONFLICT, "conflict");
    assert_eq!(message_count(&d, &key).await, 1);
}

/// Webhook registration refuses unknown events, non-http URLs and bad patches.
#[tokio::test]
async fn bad_webhooks_are_400() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(common::config(dir.path()), dir.path()).await;
    let key = d.account("10").await;

    for body in [
        json!({"url": "https://x.example/h", "events": ["sms.unknown"]}),
        json!({"url": "https://x.example/h", "events": []}),
        json!({"url": "ftp://x.example/h", "events": ["sms.status"]}),
        json!({"url": "/relative/path", "events": ["sms.status"]}),
        json!({"url": "not a url", "events": ["sms.status"]}),
        json!({"url": "https://x.example/h"}),
        json!({"url": "https://x.example/h", "events": "sms.status"}),
        json!({"url": "https://x.example/h", "events": ["sms.status"], "extra": 1}),
    ] {
        let a = d
            .call(Method::POST, "/v1/webhooks", Some(&key), Some(body.clone()))
            .await;
        expect(&a, StatusCode::BAD_REQUEST, "invalid_request");
    }
    let list = d.call(Method::GET, "/v1/webhooks", Some(&key), None).await;
    assert_eq!(list.json["data"], json!([]));

    let hook = d.webhook(&key, "https://x.example/h").await;
    let path = format!("/v1/webhooks/{}", hook["id"].as_str().unwrap());
    let a = d
        .call(
            Method::PATCH,
            &path,
            Some(&key),
            Some(json!({"url": "mailto:a@b"})),
        )
        .await;
    expect(&a, StatusCode::BAD_REQUEST, "invalid_request");
    let a = d
        .call(
            Method::PATCH,
            &path,
            Some(&key),
            Some(json!({"enabled": "no"})),
        )
        .await;
    expect(&a, StatusCode::BAD_REQUEST, "invalid_request");
    let a = d.call(Method::GET, &path, Some(&key), None).await;
    assert_eq!(a.json["url"], "https://x.example/h");
    assert_eq!(a.json["enabled"], true);
}

/// The webhook resource: create, read, patch, list and delete.
#[tokio::test]
async fn webhook_resource_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(common::config(dir.path()), dir.path()).await;
    let key = d.account("10").await;

    let hook = d
        .webhook(&key, "https://yourdomain.com/api/sofyStatus")
        .await;
    for field in ["id", "url", "events", "createdAt", "secret"] {
        assert!(hook.get(field).is_some(), "missing {field}: {hook}");
    }
    let secret = hook["secret"].as_str().unwrap();
    let raw = secret.strip_prefix("whsec_").unwrap();
    assert!(raw.len() >= 32, "secret too short: {secret}");
    let path = format!("/v1/webhooks/{}", hook["id"].as_str().unwrap());

    let patched = d
        .call(
            Method::PATCH,
            &path,
            Some(&key),
            Some(json!({"enabled": false, "url": "http://other.example/x"})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK);
    assert_eq!(patched.json["enabled"], false);
    assert_eq!(patched.json["secret"], secret);

    let list = d.call(Method::GET, "/v1/webhooks", Some(&key), None).await;
    assert_eq!(list.json["data"][0]["url"], "http://other.example/x");

    let gone = d.call(Method::DELETE, &path, Some(&key), None).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    expect(
        &d.call(Method::GET, &path, Some(&key), None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    expect(
        &d.call(Method::DELETE, &path, Some(&key), None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

/// Unknown paths and wrong methods get the JSON error body too.
#[tokio::test]
async fn unknown_routes_are_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(common::config(dir.path()), dir.path()).await;
    let key = d.account("10").await;

    expect(
        &d.call(Method::GET, "/v2/nothing", Some(&key), None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let a = d.call(Method::PUT, "/v1/sms", Some(&key), None).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(a.json["error"]["code"], "invalid_request");
    let a = d
        .call(Method::GET, "/v1/sms?limit=0", Some(&key), None)
        .await;
    expect(&a, StatusCode::BAD_REQUEST, "invalid_request");
    let a = d
        .call(Method::GET, "/v1/sms?colour=red", Some(&key), None)
        .await;
    expect(&a, StatusCode::BAD_REQUEST, "invalid_request");
    let a = d
        .call(Method::GET, "/v1/sms?status=lost", Some(&key), None)
        .await;
    expect(&a, StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(
        d.call(Method::GET, "/healthz", None, None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        d.call(Method::GET, "/readyz", None, None).await.status,
        StatusCode::OK
    );
}
