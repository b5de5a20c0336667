//! The writer's commit delay, on a real redb file: it never holds back a request on an idle
//! store, and the requests it gathers while waiting are all committed and answered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use smswire::clock::{SharedClock, SystemClock};
use smswire::model::{Account, ApiKey};
use smswire::store::{Batching, Store};

/// A delay long enough that a wait where there should be none fails the test plainly.
const LONG_DELAY: Duration = Duration::from_secs(10);

fn open(dir: &tempfile::TempDir, delay: Duration) -> Store {
    let clock: SharedClock = Arc::new(SystemClock);
    let batching = Batching { max: 1024, delay };
    let (store, _writer) =
        Store::open(&dir.path().join("smswire.redb"), 1 << 20, batching, clock).expect("open");
    store
}

async fn create_account(store: &Store) {
    let account = Account {
        id: "acc_1".into(),
        name: "test".into(),
        balance_micros: 0,
        currency: "EUR".into(),
        created_ms: 0,
    };
    let key = ApiKey {
        id: "key_1".into(),
        account_id: "acc_1".into(),
        secret_sha256: [0; 32],
        created_ms: 0,
        revoked: false,
    };
    store
        .write(move |tx| tx.create_account(&account, &key))
        .await
        .expect("create account");
}

#[tokio::test]
async fn one_request_at_a_time_is_never_held_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(&dir, LONG_DELAY);
    create_account(&store).await;
    let started = Instant::now();
    let writes = async {
        for _ in 0..20 {
            store
                .write(|tx| tx.credit_account("acc_1", 1))
                .await
                .expect("credit");
        }
    };
    let in_time = tokio::time::timeout(LONG_DELAY / 2, writes).await;
    assert!(
        in_time.is_ok(),
        "20 sequential writes took over {:?}: a batch of one waited for more",
        started.elapsed()
    );
    let account = store.account("acc_1".into()).await.expect("read");
    assert_eq!(account.map(|a| a.balance_micros), Some(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_gathered_by_the_delay_are_all_committed() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Long enough that later waves meet a busy writer and are gathered by its wait.
    let store = open(&dir, Duration::from_millis(20));
    create_account(&store).await;
    let mut tasks = tokio::task::JoinSet::new();
    for wave in 0..10u64 {
        for _ in 0..100 {
            let store = store.clone();
            tasks.spawn(async move { store.write(|tx| tx.credit_account("acc_1", 1)).await });
        }
        tokio::time::sleep(Duration::from_millis(wave % 3)).await;
    }
    let mut answered = 0;
    while let Some(result) = tasks.join_next().await {
        let credited = result.expect("task").expect("write");
        assert!(credited.is_some(), "the account exists");
        answered += 1;
    }
    assert_eq!(answered, 1000);
    let account = store.account("acc_1".into()).await.expect("read");
    assert_eq!(account.map(|a| a.balance_micros), Some(1000));
}
