//! Table definitions and the record envelope. `docs/storage.md` describes the same layout
//! for people; change both together.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::StoreError;

/// The on-disk layout version written to `meta` and to the first byte of every record.
pub const SCHEMA_VERSION: u8 = 1;

type Bytes = &'static [u8];
type Str = &'static str;

pub const ACCOUNTS: TableDefinition<Str, Bytes> = TableDefinition::new("accounts");
pub const API_KEYS: TableDefinition<Str, Bytes> = TableDefinition::new("api_keys");
pub const MESSAGES: TableDefinition<Str, Bytes> = TableDefinition::new("messages");
pub const ACCOUNT_MESSAGES: TableDefinition<(Str, Str), ()> =
    TableDefinition::new("account_messages");
/// (provider, provider message id) -> (message id, segment index).
pub const PROVIDER_IDS: TableDefinition<(Str, Str), (Str, u32)> =
    TableDefinition::new("provider_ids");
/// (due ms, message id) -> Job.
pub const JOBS: TableDefinition<(u64, Str), Bytes> = TableDefinition::new("jobs");
pub const WEBHOOKS: TableDefinition<Str, Bytes> = TableDefinition::new("webhooks");
pub const ACCOUNT_WEBHOOKS: TableDefinition<(Str, Str), ()> =
    TableDefinition::new("account_webhooks");
pub const DELIVERIES: TableDefinition<Str, Bytes> = TableDefinition::new("deliveries");
/// (webhook id, delivery id) -> (), for listing a webhook's deliveries.
pub const WEBHOOK_DELIVERIES: TableDefinition<(Str, Str), ()> =
    TableDefinition::new("webhook_deliveries");
/// (delivery id, attempt number) -> Attempt.
pub const ATTEMPTS: TableDefinition<(Str, u32), Bytes> = TableDefinition::new("attempts");
/// (due ms, delivery id) -> (): the time-ordered webhook queue.
pub const DUE: TableDefinition<(u64, Str), ()> = TableDefinition::new("due");
/// (account id, key) -> IdempotentReply.
pub const IDEMPOTENCY: TableDefinition<(Str, Str), Bytes> = TableDefinition::new("idempotency");
pub const META: TableDefinition<Str, Bytes> = TableDefinition::new("meta");

const META_SCHEMA: &str = "schema_version";

/// Encodes a record: the schema version byte, then postcard.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let out = vec![SCHEMA_VERSION];
    // postcard cannot fail on the plain structs stored here (no maps with non-string keys,
    // no unsized sequences); an error would be a programming mistake caught by every test.
    match postcard::to_extend(value, out) {
        Ok(v) => v,
        Err(_) => vec![SCHEMA_VERSION],
    }
}

/// Decodes a record written by [`encode`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&SCHEMA_VERSION, rest)) => {
            postcard::from_bytes(rest).map_err(|e| StoreError::Corrupt(e.to_string()))
        }
        Some((v, _)) => Err(StoreError::Corrupt(format!(
            "record of schema version {v}, this build reads {SCHEMA_VERSION}"
        ))),
        None => Err(StoreError::Corrupt("empty record".into())),
    }
}

/// Creates every table and records the schema version on a new file; refuses a file of
/// another version. Runs once at open, before the writer starts.
pub fn prepare(db: &Database) -> Result<(), StoreError> {
    let read = db.begin_read()?;
    let found = match read.open_table(META) {
        Ok(meta) => meta.get(META_SCHEMA)?.map(|v| v.value().to_vec()),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(e.into()),
    };
    drop(read);
    if let Some(version) = found
        && version != [SCHEMA_VERSION]
    {
        return Err(StoreError::Corrupt(format!(
            "the file has schema version {version:?}; this build reads {SCHEMA_VERSION}"
        )));
    }

    let txn = db.begin_write()?;
    txn.open_table(ACCOUNTS)?;
    txn.open_table(API_KEYS)?;
    txn.open_table(MESSAGES)?;
    txn.open_table(ACCOUNT_MESSAGES)?;
    txn.open_table(PROVIDER_IDS)?;
    txn.open_table(JOBS)?;
    txn.open_table(WEBHOOKS)?;
    txn.open_table(ACCOUNT_WEBHOOKS)?;
    txn.open_table(DELIVERIES)?;
    txn.open_table(WEBHOOK_DELIVERIES)?;
    txn.open_table(ATTEMPTS)?;
    txn.open_table(DUE)?;
    txn.open_table(IDEMPOTENCY)?;
    txn.open_table(META)?
        .insert(META_SCHEMA, [SCHEMA_VERSION].as_slice())?;
    txn.commit()?;
    Ok(())
}
