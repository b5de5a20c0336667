//! The read queries: each opens its own MVCC snapshot on a blocking thread and never waits
//! for the writer.

use redb::{ReadTransaction, ReadableTable};

use super::ops::CHILD_MAX;
use super::tables::*;
use super::{Store, StoreError, after_key};
use crate::ids::{self, Kind};
use crate::model::{Account, ApiKey, Attempt, Delivery, Job, Message, Status, Webhook};

/// Filters of `GET /v1/sms`.
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    pub status: Option<Status>,
    /// Recipient digits without `+`.
    pub to: Option<String>,
    /// Created at or after, in ms.
    pub created_after_ms: Option<u64>,
    /// Created strictly before, in ms.
    pub created_before_ms: Option<u64>,
}

/// One page of a listing; `next` is the key to continue after, when there may be more.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// A processing job that is due.
#[derive(Debug, Clone)]
pub struct DueJob {
    pub due_ms: u64,
    pub message_id: String,
    pub job: Job,
    /// The message, as its creation committed it when the writer handed the job over (see
    /// [`super::Wakers`]), or as a scan read it. A scan's copy may be older than what a run
    /// of the same job committed meanwhile: the processor trusts it only while it shows
    /// the message not yet charged, which the charge itself then checks in the writer.
    pub message: Option<Message>,
}

/// Most index rows one listing looks at before it returns a shorter page with a cursor, so
/// a filter that matches little cannot turn one request into a scan of the whole table.
const MAX_SCAN: usize = 10_000;

impl Store {
    /// The key with this id, revoked or not.
    pub async fn api_key(&self, key_id: String) -> Result<Option<ApiKey>, StoreError> {
        self.read(move |r| {
            let t = r.open_table(API_KEYS)?;
            t.get(key_id.as_str())?
                .map(|v| decode(v.value()))
                .transpose()
        })
        .await
    }

    /// Every account, oldest first.
    pub async fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.read(|r| {
            let t = r.open_table(ACCOUNTS)?;
            let mut out = Vec::new();
            for entry in t.iter()? {
                out.push(decode(entry?.1.value())?);
            }
            Ok(out)
        })
        .await
    }

    /// One account.
    pub async fn account(&self, id: String) -> Result<Option<Account>, StoreError> {
        self.read(move |r| {
            let t = r.open_table(ACCOUNTS)?;
            t.get(id.as_str())?.map(|v| decode(v.value())).transpose()
        })
        .await
    }

    /// One message, whoever owns it; callers check the account.
    pub async fn message(&self, id: String) -> Result<Option<Message>, StoreError> {
        self.read(move |r| message(r, &id)).await
    }

    /// The account's messages, newest first, after the `cursor` message id.
    pub async fn messages(
        &self,
        account_id: String,
        filter: MessageFilter,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<Page<Message>, StoreError> {
        self.read(move |r| list_messages(r, &account_id, &filter, cursor.as_deref(), limit))
            .await
    }

    /// One webhook, whoever owns it; callers check the account.
    pub async fn webhook(&self, id: String) -> Result<Option<Webhook>, StoreError> {
        self.read(move |r| {
            let t = r.open_table(WEBHOOKS)?;
            t.get(id.as_str())?.map(|v| decode(v.value())).transpose()
        })
        .await
    }

    /// The account's webhooks, oldest first.
    pub async fn webhooks(&self, account_id: String) -> Result<Vec<Webhook>, StoreError> {
        self.read(move |r| {
            let index = r.open_table(ACCOUNT_WEBHOOKS)?;
            let hooks = r.open_table(WEBHOOKS)?;
            let mut out = Vec::new();
            for entry in index.range((account_id.as_str(), "")..(account_id.as_str(), CHILD_MAX))? {
                let (key, _) = entry?;
                if let Some(v) = hooks.get(key.value().1)? {
                    out.push(decode(v.value())?);
                }
            }
            Ok(out)
        })
        .await
    }

    /// A webhook's deliveries with their attempts, newest first, after the `cursor`
    /// delivery id.
    pub async fn deliveries(
        &self,
        webhook_id: String,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<Page<(Delivery, Vec<Attempt>)>, StoreError> {
        self.read(move |r| {
            let index = r.open_table(WEBHOOK_DELIVERIES)?;
            let table = r.open_table(DELIVERIES)?;
            let attempts = r.open_table(ATTEMPTS)?;
            let w = webhook_id.as_str();
            let upper = cursor.as_deref().unwrap_or(CHILD_MAX);
            let mut items = Vec::new();
            for entry in index.range((w, "")..(w, upper))?.rev() {
                let (key, _) = entry?;
                let id = key.value().1;
                if let Some(v) = table.get(id)? {
                    let mut log = Vec::new();
                    for a in attempts.range((id, 0)..=(id, u32::MAX))? {
                        log.push(decode::<Attempt>(a?.1.value())?);
                    }
                    items.push((decode::<Delivery>(v.value())?, log));
                }
                if items.len() == limit {
                    break;
                }
            }
            let next = (items.len() == limit).then(|| items[limit - 1].0.id.clone());
            Ok(Page { items, next })
        })
        .await
    }

    /// Up to `limit` processing jobs due at `now_ms`, earliest first, after the key `after`
    /// (from the start when `None`), and the due time of the first job after them. Submit
    /// jobs for which `want_message` (given the message id) is true come with their message,
    /// read in the same transaction. A caller reading from a cursor steps it back to
    /// [`super::Wakers::take_jobs_floor`] when a job was written behind it.
    pub async fn due_jobs(
        &self,
        after: Option<(u64, String)>,
        now_ms: u64,
        limit: usize,
        want_message: impl Fn(&str) -> bool + Send + 'static,
    ) -> Result<(Vec<DueJob>, Option<u64>), StoreError> {
        self.read(move |r| {
            let t = r.open_table(JOBS)?;
            let mut due = Vec::new();
            for entry in t.range(after_key(&after))? {
                let (key, value) = entry?;
                let (due_ms, message_id) = key.value();
                if due_ms > now_ms || due.len() == limit {
                    return Ok((due, Some(due_ms)));
                }
                let job = decode(value.value())?;
                let message = match job {
                    Job::Submit if want_message(message_id) => message(r, message_id)?,
                    _ => None,
                };
                due.push(DueJob {
                    due_ms,
                    message_id: message_id.to_string(),
                    job,
                    message,
                });
            }
            Ok((due, None))
        })
        .await
    }

    /// Segments accepted by the provider whose final receipt has not come yet, as
    /// (provider id, recipient); found through the receipt-deadline jobs, so the cost
    /// follows the messages in flight, not the whole history.
    pub async fn awaiting_receipts(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.read(|r| {
            let jobs = r.open_table(JOBS)?;
            let mut out = Vec::new();
            for entry in jobs.iter()? {
                let (key, value) = entry?;
                if decode::<Job>(value.value())? != Job::Expire {
                    continue;
                }
                let Some(m) = message(r, key.value().1)? else {
                    continue;
                };
                for s in &m.segments {
                    if let (Some(id), None) = (&s.provider_id, &s.final_state) {
                        out.push((id.clone(), m.to.clone()));
                    }
                }
            }
            Ok(out)
        })
        .await
    }
}

fn message(r: &ReadTransaction, id: &str) -> Result<Option<Message>, StoreError> {
    let t = r.open_table(MESSAGES)?;
    t.get(id)?.map(|v| decode(v.value())).transpose()
}

fn list_messages(
    r: &ReadTransaction,
    account: &str,
    filter: &MessageFilter,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<Message>, StoreError> {
    let index = r.open_table(ACCOUNT_MESSAGES)?;
    let messages = r.open_table(MESSAGES)?;

    // Ids sort by creation time, so the time filters become key bounds.
    let after = filter
        .created_after_ms
        .map(|ms| ids::lower_bound(Kind::Sms, ms));
    let before = filter
        .created_before_ms
        .map(|ms| ids::lower_bound(Kind::Sms, ms));
    let lower = after.unwrap_or_default();
    let mut upper = before.unwrap_or_else(|| CHILD_MAX.to_string());
    if let Some(c) = cursor
        && c < upper.as_str()
    {
        upper = c.to_string();
    }

    let mut items = Vec::new();
    let mut last_seen = None;
    let rows = index.range((account, lower.as_str())..(account, upper.as_str()))?;
    for (scanned, entry) in rows.rev().enumerate() {
        let (key, _) = entry?;
        let id = key.value().1;
        if scanned == MAX_SCAN {
            return Ok(Page {
                items,
                next: last_seen,
            });
        }
        last_seen = Some(id.to_string());
        let Some(v) = messages.get(id)? else { continue };
        let m: Message = decode(v.value())?;
        if filter.status.is_some_and(|s| s != m.status)
            || filter.to.as_ref().is_some_and(|to| *to != m.to)
        {
            continue;
        }
        items.push(m);
        if items.len() == limit {
            return Ok(Page {
                items,
                next: last_seen,
            });
        }
    }
    Ok(Page { items, next: None })
}

impl Store {
    /// Writes a consistent copy of the whole store to `dest` (which must not exist) while
    /// the daemon keeps running: one read transaction is a snapshot, copied table by table
    /// into a new redb file, written beside `dest` and renamed into place once durable.
    /// Returns the number of records copied.
    pub async fn backup(&self, dest: std::path::PathBuf) -> Result<u64, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            if dest.exists() {
                return Err(StoreError::Storage(format!(
                    "{} already exists",
                    dest.display()
                )));
            }
            let partial = dest.with_extension("partial");
            let _ = std::fs::remove_file(&partial);
            let snapshot = redb::ReadableDatabase::begin_read(db.as_ref())?;
            let copy = redb::Database::create(&partial)?;
            let txn = copy.begin_write()?;
            let mut n = 0;
            n += copy_table(&snapshot, &txn, ACCOUNTS)?;
            n += copy_table(&snapshot, &txn, API_KEYS)?;
            n += copy_table(&snapshot, &txn, MESSAGES)?;
            n += copy_table(&snapshot, &txn, ACCOUNT_MESSAGES)?;
            n += copy_table(&snapshot, &txn, PROVIDER_IDS)?;
            n += copy_table(&snapshot, &txn, JOBS)?;
            n += copy_table(&snapshot, &txn, WEBHOOKS)?;
            n += copy_table(&snapshot, &txn, ACCOUNT_WEBHOOKS)?;
            n += copy_table(&snapshot, &txn, DELIVERIES)?;
            n += copy_table(&snapshot, &txn, WEBHOOK_DELIVERIES)?;
            n += copy_table(&snapshot, &txn, ATTEMPTS)?;
            n += copy_table(&snapshot, &txn, DUE)?;
            n += copy_table(&snapshot, &txn, IDEMPOTENCY)?;
            n += copy_table(&snapshot, &txn, META)?;
            txn.commit()?;
            drop(copy);
            std::fs::rename(&partial, &dest)
                .map_err(|e| StoreError::Storage(format!("rename to {}: {e}", dest.display())))?;
            Ok(n)
        })
        .await
        .map_err(|e| StoreError::Storage(format!("backup task failed: {e}")))?
    }
}

fn copy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    from: &ReadTransaction,
    to: &redb::WriteTransaction,
    table: redb::TableDefinition<K, V>,
) -> Result<u64, StoreError> {
    let source = from.open_table(table)?;
    let mut target = to.open_table(table)?;
    let mut n = 0;
    for entry in source.iter()? {
        let (k, v) = entry?;
        target.insert(k.value(), v.value())?;
        n += 1;
    }
    Ok(n)
}
