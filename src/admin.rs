//! The admin socket: how `smswire account ...` and `smswire key ...` reach the running
//! daemon, which is the only process that may write the store.
//!
//! A Unix socket (mode 0600 by default: only the daemon's user and root can connect; 0660
//! for the `smswire` group when installed, `admin.socket_mode`) carrying one
//! JSON request per line and one JSON answer per line. Secrets cross it once, in the answer
//! that creates them, and are stored only as SHA-256.

use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use crate::ids::{self, Kind};
use crate::model::{Account, ApiKey};
use crate::sms::price::{format_amount, parse_amount};
use crate::store::Store;

/// Longest request line accepted.
const MAX_LINE: usize = 64 * 1024;

/// A request to the daemon.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum AdminRequest {
    /// Creates an account with a starting balance and its first key.
    AccountCreate {
        name: String,
        balance: Option<String>,
    },
    /// Lists every account.
    AccountList,
    /// Adds to (or, negative, takes from) an account's balance.
    AccountCredit { id: String, amount: String },
    /// Creates another key for an account.
    KeyCreate { account: String },
    /// Revokes a key at once.
    KeyRevoke { key_id: String },
    /// Writes a consistent copy of the store to `path` (absolute; must not exist).
    Backup { path: PathBuf },
}

/// Binds the admin socket, replacing a stale one, with permissions `mode`.
pub fn bind(path: &Path, mode: u32) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;

    if path.exists() {
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(listener)
}

/// Serves admin requests until `shutdown` turns true; removes the socket file then.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    store: Store,
    currency: String,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        match accepted {
            Ok((stream, _)) => {
                let store = store.clone();
                let currency = currency.clone();
                tokio::spawn(async move { connection(stream, store, currency).await });
            }
            Err(e) => tracing::warn!(error = %e, "admin socket accept failed"),
        }
    }
    let _ = std::fs::remove_file(&path);
}

async fn connection(stream: UnixStream, store: Store, currency: String) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::with_capacity(MAX_LINE, read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let answer = match serde_json::from_str::<AdminRequest>(&line) {
            Ok(request) => match handle(request, &store, &currency).await {
                Ok(data) => json!({"ok": true, "data": data}),
                Err(error) => json!({"ok": false, "error": error}),
            },
            Err(e) => json!({"ok": false, "error": format!("bad request: {e}")}),
        };
        let mut bytes = answer.to_string().into_bytes();
        bytes.push(b'\n');
        if write.write_all(&bytes).await.is_err() {
            return;
        }
    }
}

async fn handle(request: AdminRequest, store: &Store, currency: &str) -> Result<Value, String> {
    let now = store.clock().now_ms();
    let fail = |e: crate::store::StoreError| e.to_string();
    match request {
        AdminRequest::AccountCreate { name, balance } => {
            let balance = balance
                .as_deref()
                .map(parse_amount)
                .transpose()?
                .unwrap_or(0);
            if name.trim().is_empty() {
                return Err("account name must not be empty".into());
            }
            let account = Account {
                id: ids::new(Kind::Account, now),
                name,
                balance_micros: balance,
                currency: currency.to_string(),
                created_ms: now,
            };
            let (key, secret) = new_key(&account.id, now);
            let out = json!({
                "account": account_json(&account),
                "key_id": key.id,
                "secret": secret,
            });
            tracing::info!(account_id = %account.id, key_id = %key.id, "account created");
            store
                .write(move |tx| tx.create_account(&account, &key))
                .await
                .map_err(fail)?;
            Ok(out)
        }
        AdminRequest::AccountList => {
            let accounts = store.accounts().await.map_err(fail)?;
            Ok(Value::Array(accounts.iter().map(account_json).collect()))
        }
        AdminRequest::AccountCredit { id, amount } => {
            let micros = parse_amount(&amount)?;
            let updated = store
                .write(move |tx| tx.credit_account(&id, micros))
                .await
                .map_err(fail)?;
            updated
                .map(|a| account_json(&a))
                .ok_or_else(|| "no such account".to_string())
        }
        AdminRequest::KeyCreate { account } => {
            let (key, secret) = new_key(&account, now);
            let out = json!({"key_id": key.id, "secret": secret, "account_id": account});
            let created = store
                .write(move |tx| tx.create_key(&key))
                .await
                .map_err(fail)?;
            if created {
                Ok(out)
            } else {
                Err("no such account".into())
            }
        }
        AdminRequest::Backup { path } => {
            if !path.is_absolute() {
                return Err("the backup path must be absolute".into());
            }
            let records = store.backup(path.clone()).await.map_err(fail)?;
            tracing::info!(path = %path.display(), records, "backup written");
            Ok(json!({"path": path, "records": records}))
        }
        AdminRequest::KeyRevoke { key_id } => {
            let revoked = store.revoke_key(key_id).await.map_err(fail)?;
            if revoked {
                Ok(json!({"revoked": true}))
            } else {
                Err("no such key".into())
            }
        }
    }
}

/// A new key for `account_id` and its secret, which is shown once and never stored.
fn new_key(account_id: &str, now: u64) -> (ApiKey, String) {
    let mut raw = [0u8; 32];
    ids::fill_random(&mut raw);
    let secret = format!(
        "sk_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    );
    let key = ApiKey {
        id: ids::new(Kind::Key, now),
        account_id: account_id.to_string(),
        secret_sha256: Sha256::digest(secret.as_bytes()).into(),
        created_ms: now,
        revoked: false,
    };
    (key, secret)
}

fn account_json(a: &Account) -> Value {
    json!({
        "id": a.id,
        "name": a.name,
        "balance": format_amount(a.balance_micros),
        "currency": a.currency,
        "createdAt": crate::clock::format_ms(a.created_ms),
    })
}

/// Sends one request to the daemon at `socket` and returns its `data`, or its error.
pub async fn request(socket: &Path, request: &AdminRequest) -> Result<Value, String> {
    let stream = UnixStream::connect(socket).await.map_err(|e| {
        format!(
            "cannot reach the daemon at {}: {e} (is `smswire serve` running, and may you \
             open its socket?)",
            socket.display()
        )
    })?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_string(request).map_err(|e| e.to_string())?;
    line.push('\n');
    write
        .write_all(line.as_bytes())
        .await
        .map_err(|e| format!("admin socket: {e}"))?;

    let mut answer = String::new();
    BufReader::new(read)
        .read_line(&mut answer)
        .await
        .map_err(|e| format!("admin socket: {e}"))?;
    let answer: Value =
        serde_json::from_str(&answer).map_err(|e| format!("admin socket: bad answer: {e}"))?;
    if answer["ok"] == Value::Bool(true) {
        Ok(answer["data"].clone())
    } else {
        Err(answer["error"]
            .as_str()
            .unwrap_or("unknown error")
            .to_string())
    }
}
