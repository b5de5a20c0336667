//! The `smpp` provider against a real SMSC that we did not write: the npm `smpp` package's
//! server (`tests/smsc/smsc.js`), on 127.0.0.1.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::TestDaemon;
use common::smsc::Smsc;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use smswire::config::{BindMode, IdFormat, ProviderKind};

const WAIT: Duration = Duration::from_secs(15);

/// A configuration that talks SMPP to `smsc`, with short timers.
fn config(dir: &std::path::Path, smsc: &Smsc) -> smswire::Config {
    let mut c = common::config(dir);
    c.provider.kind = ProviderKind::Smpp;
    let s = &mut c.provider.smpp;
    s.port = smsc.port;
    s.system_id = "smswire".into();
    s.password = "secret".into();
    s.retry_delay = Duration::from_millis(100);
    s.response_timeout = Duration::from_secs(2);
    s.reconnect_min = Duration::from_millis(50);
    s.reconnect_max = Duration::from_millis(400);
    c
}

async fn start(
    smsc: &Smsc,
    dir: &std::path::Path,
    edit: impl FnOnce(&mut smswire::Config),
) -> TestDaemon {
    let mut c = config(dir, smsc);
    edit(&mut c);
    let d = TestDaemon::start(c, dir).await;
    smsc.wait(
        |e| e["event"].as_str().is_some_and(|n| n.starts_with("bind_")),
        WAIT,
    )
    .await;
    d
}

fn submits_to(smsc: &Smsc, to: &str) -> Vec<Value> {
    smsc.named("submit_sm")
        .into_iter()
        .filter(|e| e["destination_addr"] == to)
        .collect()
}

fn hex(bytes: impl IntoIterator<Item = u8>) -> String {
    bytes.into_iter().map(|b| format!("{b:02x}")).collect()
}

/// Bind and submit; `sent` then `delivered` from a receipt given as TLVs.
#[tokio::test]
async fn submit_and_tlv_receipt() {
    let smsc = Smsc::start(&["--receipt", "tlv"]).await;
    let dir = tempfile::tempdir().unwrap();
    let d = start(&smsc, dir.path(), |_| {}).await;
    assert_eq!(d.try_get("/readyz").await, Some(200));
    let key = d.account("10").await;

    let a = d.send_sms(&key, "33612345678", "Hello world !").await;
    assert_eq!(a.status, StatusCode::CREATED);
    let m = d
        .wait_status(&key, a.json["id"].as_str().unwrap(), "delivered")
        .await;
    assert_eq!(m["statusReason"], "DELIVRD");
    assert_eq!(m["price"], json!(0.08));

    let bind = smsc.named("bind_transceiver");
    assert_eq!(bind.len(), 1);
    assert_eq!(bind[0]["system_id"], "smswire");
    let submit = &smsc.named("submit_sm")[0];
    assert_eq!(submit["source_addr"], "36789");
    assert_eq!(
        (
            submit["source_addr_ton"].as_u64(),
            submit["source_addr_npi"].as_u64()
        ),
        (Some(0), Some(1))
    );
    assert_eq!(submit["destination_addr"], "33612345678");
    assert_eq!(
        (
            submit["dest_addr_ton"].as_u64(),
            submit["dest_addr_npi"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(submit["esm_class"], 0);
    assert_eq!(submit["data_coding"], 0);
    assert_eq!(submit["registered_delivery"], 1);
    assert_eq!(submit["validity_period"], "000002000000000R");
    assert_eq!(submit["short_message"], hex(*b"Hello world !"));
    let acks = smsc.wait_count("deliver_sm_resp", 1, WAIT).await;
    assert_eq!(acks[0]["command_status"], 0);
}

/// A receipt given only as text, with the SMSC answering ids in hex and reporting them in
/// decimal, as configured.
#[tokio::test]
async fn text_receipt_with_hex_and_decimal_ids() {
    let smsc = Smsc::start(&["--receipt", "text", "--id-format", "hex"]).await;
    let dir = tempfile::tempdir().unwrap();
    let d = start(&smsc, dir.path(), |c| {
        c.provider.smpp.submit_id_format = IdFormat::Hex;
        c.provider.smpp.receipt_id_format = IdFormat::Decimal;
    })
    .await;
    let key = d.account("10").await;

    let sent = d.send_sms(&key, "33612345678", "text receipt").await.json;
    d.wait_status(&key, sent["id"].as_str().unwrap(), "delivered")
        .await;
    let failed = d.send_sms(&key, "33612340002", "text receipt").await.json;
    let m = d
        .wait_status(&key, failed["id"].as_str().unwrap(), "errored")
        .await;
    assert_eq!(m["statusReason"], "UNDELIV");
}

/// A multipart message: concatenation UDH with one reference, and every part's receipt
/// counts: one undelivered part makes the message errored.
#[tokio::test]
async fn multipart_message() {
    let smsc = Smsc::start(&["--receipt", "both"]).await;
    let dir = tempfile::tempdir().unwrap();
    let d = start(&smsc, dir.path(), |_| {}).await;
    let key = d.account("10").await;
    let body = "a".repeat(200);

    let a = d.send_sms(&key, "33612345678", &body).await.json;
    assert_eq!(a["parts"], 2);
    let m = d
        .wait_status(&key, a["id"].as_str().unwrap(), "delivered")
        .await;
    assert_eq!(m["price"], json!(0.16));
    let parts = submits_to(&smsc, "33612345678");
    assert_eq!(parts.len(), 2);
    let udh: Vec<String> = parts
        .iter()
        .map(|p| p["short_message"].as_str().unwrap()[..12].to_string())
        .collect();
    assert_eq!(&udh[0][..6], "050003");
    assert_eq!(&udh[0][8..], "0201");
    assert_eq!(&udh[1][8..], "0202");
    assert_eq!(udh[0][6..8], udh[1][6..8], "one reference per message");
    for p in &parts {
        assert_eq!(p["esm_class"], 0x40);
    }
    assert_eq!(
        parts[0]["short_message"].as_str().unwrap().len(),
        2 * (6 + 153)
    );
    assert_eq!(
        parts[1]["short_message"].as_str().unwrap().len(),
        2 * (6 + 47)
    );

    let a = d.send_sms(&key, "33612340005", &body).await.json;
    let m = d
        .wait_status(&key, a["id"].as_str().unwrap(), "errored")
        .await;
    assert_eq!(m["statusReason"], "UNDELIV");
}

/// A body outside GSM-7 goes as UCS-2 (data_coding 8), emoji included.
#[tokio::test]
async fn ucs2_message() {
    let smsc = Smsc::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let d = start(&smsc, dir.path(), |_| {}).await;
    let key = d.account("10").await;
    let body = "Привет 😀";

    let a = d.send_sms(&key, "33612345678", body).await.json;
    d.wait_status(&key, a["id"].as_str().unwrap(), "delivered")
        .await;
    let submit = &smsc.named("submit_sm")[0];
    assert_eq!(submit["data_coding"], 8);
    assert_eq!(
        submit["short_message"],
        hex(body.encode_utf16().flat_map(u16::to_be_bytes))
    );
}

/// ESME_RTHROTTLED puts the segment back; it is submitted again and delivered, charged once.
#[tokio::test]
async fn throttled_then_accepted() {
    let smsc = Smsc::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let d = start(&smsc, dir.path(), |_| {}).await;
    let key = d.account("10").await;

    let a = d.send_sms(&key, "33612340008", "slow down").await.json;
    d.wait_status(&key, a["id"].as_str().unwrap(), "delivered")
        .await;
    let tries: Vec<u64> = submits_to(&smsc, "33612340008")
        .iter()
        .map(|s| s["command_status"].as_u64().unwrap())
        .collect();
    assert_eq!(tries, [0x58, 0x58, 0]);
    assert_eq!(d.balance(&key.account_id).await, "9.92");
}

/// ESME_RINVDSTADR is invalid_phone_number; another refusal is errored with its name; both
/// cost nothing.
#[tokio::test]
async fn refused_submissions() {
    let smsc = Smsc::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let d = start(&smsc, dir.path(), |_| {}).await;
    let key = d.account("10").await;

    let a = d.send_sms(&key, "33612340009", "nobody").await.json;
    let m = d
        .wait_status(&key, a["id"].as_str().unwrap(), "errored")
        .await;
    assert_eq!(m["statusReason"], "invalid_phone_number");
    assert_eq!(m["price"], json!(0));
    let a = d.send_sms(&key, "33612340007", "fails").await.json;
    let m = d
        .wait_status(&key, a["id"].as_str().unwrap(), "errored")
        .await;
    assert_eq!(m["statusReason"], "ESME_RSUBMITFAIL");
    assert_eq!(m["price"], json!(0));
    assert_eq!(d.balance(&key.account_id).await, "10.00");
}

/// The SMSC drops the connection with submits outstanding: smswire reconnects, submits
/// them again, nothing is lost and nothing is charged twice.
#[tokio::test]
async fn connection_lost_with_submits_outstanding() {
    let mut smsc = Smsc::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let d = start(&smsc, dir.path(), |_| {}).await;
    let key = d.account("10").await;

    smsc.command(json!({"cmd": "hold", "on": true})).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            d.send_sms(&key, "33612345678", "held").await.json["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    smsc.wait_count("submit_sm", 5, WAIT).await;
    let closed = smsc.command(json!({"cmd": "close"})).await;
    assert_eq!(closed["closed"], 1);
    smsc.command(json!({"cmd": "hold", "on": false})).await;

    for id in &ids {
        d.wait_status(&key, id, "delivered").await;
    }
    assert!(
        smsc.named("bind_transceiver").len() >= 2,
        "re-bound after the loss"
    );
    assert_eq!(
        smsc.named("submit_sm").len(),
        10,
        "5 lost with the connection, 5 again"
    );
    assert_eq!(d.balance(&key.account_id).await, "9.60");
}

/// enquire_link is sent on the configured interval and the SMSC's is answered.
#[tokio::test]
async fn enquire_link_both_ways() {
    let mut smsc = Smsc::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let _d = start(&smsc, dir.path(), |c| {
        c.provider.smpp.enquire_link_interval = Duration::from_millis(200);
    })
    .await;

    smsc.wait_count("enquire_link", 2, WAIT).await;
    smsc.command(json!({"cmd": "enquire_link"})).await;
    let resp = smsc.wait(|e| e["event"] == "enquire_link_resp", WAIT).await;
    assert_eq!(resp["command_status"], 0);
}

/// The window of outstanding submit_sm is never exceeded (the SMSC counts).
#[tokio::test]
async fn window_is_never_exceeded() {
    let mut smsc = Smsc::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let d = start(&smsc, dir.path(), |c| c.provider.smpp.window = 3).await;
    let key = d.account("10").await;

    smsc.command(json!({"cmd": "hold", "on": true})).await;
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(
            d.send_sms(&key, "33612345678", "w").await.json["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    smsc.wait_count("submit_sm", 3, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        smsc.named("submit_sm").len(),
        3,
        "no fourth submit while three are out"
    );
    smsc.command(json!({"cmd": "hold", "on": false})).await;
    for id in &ids {
        d.wait_status(&key, id, "delivered").await;
    }
    let stats = smsc.command(json!({"cmd": "stats"})).await;
    assert_eq!(stats["max_outstanding"], 3);
}

/// An inbound SMS (deliver_sm that is not a receipt) is acknowledged.
#[tokio::test]
async fn inbound_message_is_acknowledged() {
    let mut smsc = Smsc::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let _d = start(&smsc, dir.path(), |_| {}).await;

    smsc.command(json!({"cmd": "deliver", "from": "33612345678", "to": "36789", "text": "hi"}))
        .await;
    let ack = smsc.wait(|e| e["event"] == "deliver_sm_resp", WAIT).await;
    assert_eq!(ack["command_status"], 0);
    assert_eq!(ack["kind"], "mo");
}

/// A transmitter and receiver pair: submits on one, receipts on the other; a clean stop
/// unbinds both.
#[tokio::test]
async fn transmitter_receiver_pair() {
    let smsc = Smsc::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut d = start(&smsc, dir.path(), |c| {
        c.provider.smpp.bind = BindMode::TransmitterReceiver
    })
    .await;
    smsc.wait_count("bind_receiver", 1, WAIT).await;
    smsc.wait_count("bind_transmitter", 1, WAIT).await;
    let key = d.account("10").await;

    let a = d.send_sms(&key, "33612345678", "pair").await.json;
    d.wait_status(&key, a["id"].as_str().unwrap(), "delivered")
        .await;
    d.stop().await;
    smsc.wait_count("unbind", 2, WAIT).await;
}

/// No SMSC to bind to: not ready, and a message waits as pending instead of failing.
#[tokio::test]
async fn unreachable_smsc_is_not_ready() {
    let smsc = Smsc::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), &smsc);
    c.provider.smpp.port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let d = TestDaemon::start(c, dir.path()).await;
    assert_eq!(d.try_get("/readyz").await, Some(503));
    let key = d.account("10").await;
    let a = d.send_sms(&key, "33612345678", "later").await.json;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let m = d
        .call(
            Method::GET,
            &format!("/v1/sms/{}", a["id"].as_str().unwrap()),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(m.json["status"], "pending");
}

/// An oversized PDU from the SMSC closes the connection, and smswire connects again. (A raw
/// socket plays the SMSC here: no real SMSC sends such a PDU on purpose.)
#[tokio::test]
async fn oversized_pdu_closes_and_reconnects() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let mut c = common::config(dir.path());
    c.provider.kind = ProviderKind::Smpp;
    c.provider.smpp.port = port;
    c.provider.smpp.system_id = "smswire".into();
    c.provider.smpp.reconnect_min = Duration::from_millis(50);
    let _d = TestDaemon::start(c, dir.path()).await;

    for round in 0..2 {
        let (mut sock, _) = tokio::time::timeout(WAIT, listener.accept())
            .await
            .unwrap()
            .unwrap();
        let mut header = [0u8; 16];
        sock.read_exact(&mut header).await.unwrap();
        assert_eq!(
            &header[4..8],
            &[0, 0, 0, 9],
            "bind_transceiver first (round {round})"
        );
        let len = u32::from_be_bytes(header[..4].try_into().unwrap()) as usize;
        let mut rest = vec![0u8; len - 16];
        sock.read_exact(&mut rest).await.unwrap();
        // bind_transceiver_resp, OK, same sequence, system_id "smsc".
        let mut resp = vec![0, 0, 0, 21, 0x80, 0, 0, 9, 0, 0, 0, 0];
        resp.extend_from_slice(&header[12..16]);
        resp.extend_from_slice(b"smsc\0");
        sock.write_all(&resp).await.unwrap();
        // A PDU that claims to be 16 MiB long.
        sock.write_all(&[1, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 7])
            .await
            .unwrap();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(WAIT, sock.read(&mut byte))
            .await
            .unwrap();
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "smswire closes the connection"
        );
    }
}

/// No final receipt within the receipt timeout: errored / UNKNOWN, still charged.
#[tokio::test]
async fn missing_receipt_becomes_unknown() {
    let smsc = Smsc::start(&["--receipt", "none"]).await;
    let dir = tempfile::tempdir().unwrap();
    let d = start(&smsc, dir.path(), |c| {
        c.sms.receipt_timeout = Duration::from_millis(300)
    })
    .await;
    let key = d.account("10").await;

    let a = d.send_sms(&key, "33612345678", "into the void").await.json;
    let id = a["id"].as_str().unwrap();
    d.wait_status(&key, id, "sent").await;
    let m = d.wait_status(&key, id, "errored").await;
    assert_eq!(m["statusReason"], "UNKNOWN");
    assert_eq!(m["price"], json!(0.08));
}
