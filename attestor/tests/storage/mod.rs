//! The `Storage` contract, run against SQLite and PostgreSQL alike.

use crate::both_backends;
use crate::support::{Backend, TestDb, tenant_with_key};
use cloister_attestor::api_key::hash_key;
use cloister_attestor::storage::{
    AttestationFilter, AttestationRow, EVENT_DOWNLOAD, EVENT_VERIFY, Page, Plan, StorageError,
    StoredResponse, SubjectRow, Tenant, UsageKey, UsageOutcome, UsageWrite,
};
use std::sync::Arc;

both_backends!(
    tenants_are_unique_and_found_by_id_or_name,
    api_keys_authenticate_by_hash_until_revoked,
    attestations_are_found_by_subject_repo_and_builder_with_paging,
    usage_generated_keys_always_count,
    usage_client_key_counts_once_and_replays_stored_response,
    usage_same_key_twice_in_one_batch_counts_once,
    usage_mixed_batch_resolves_every_position,
    usage_batch_at_the_backend_limit_commits,
    usage_key_reused_for_other_request_is_refused,
    usage_key_counts_again_after_the_window,
    usage_keys_are_per_tenant,
    usage_counts_respect_the_period,
    concurrent_duplicate_commits_from_two_pools_count_once,
    migrations_rerun_keep_data,
    purge_forgets_old_idempotency_but_keeps_usage,
);

fn write(tenant: &str, key: UsageKey, hash: &str, at_ms: i64) -> UsageWrite {
    UsageWrite {
        tenant_id: tenant.to_owned(),
        event: EVENT_VERIFY,
        units: 1,
        key,
        request_hash: hash.to_owned(),
        at_ms,
        response: StoredResponse {
            status: 200,
            body: format!("{{\"h\":\"{hash}\"}}").into_bytes().into(),
        },
    }
}

fn client(k: &str) -> UsageKey {
    UsageKey::Client(k.to_owned())
}

async fn verify_count(s: &dyn cloister_attestor::storage::Storage, tenant: &str) -> i64 {
    s.usage_counts(tenant, 0, i64::MAX)
        .await
        .unwrap()
        .get(EVENT_VERIFY)
        .copied()
        .unwrap_or(0)
}

async fn tenants_are_unique_and_found_by_id_or_name(b: Backend) {
    let db = TestDb::new(b).await;
    let s = db.open().await;
    let t = Tenant {
        id: "tn_1".into(),
        name: "acme".into(),
        plan: Plan::Enterprise,
        created_at_ms: 5,
    };
    s.create_tenant(&t).await.unwrap();
    assert_eq!(s.find_tenant("tn_1").await.unwrap(), Some(t.clone()));
    assert_eq!(s.find_tenant("acme").await.unwrap(), Some(t.clone()));
    assert_eq!(s.find_tenant("nope").await.unwrap(), None);
    let dup = Tenant {
        id: "tn_2".into(),
        ..t.clone()
    };
    assert!(matches!(
        s.create_tenant(&dup).await,
        Err(StorageError::Conflict(_))
    ));
    let other = Tenant {
        id: "tn_3".into(),
        name: "beta".into(),
        plan: Plan::Starter,
        created_at_ms: 6,
    };
    s.create_tenant(&other).await.unwrap();
    let names: Vec<String> = s
        .list_tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["acme", "beta"]);
}

async fn api_keys_authenticate_by_hash_until_revoked(b: Backend) {
    let db = TestDb::new(b).await;
    let s = db.open().await;
    let (tenant, key) = tenant_with_key(s.as_ref(), "acme").await;
    let owner = s
        .authenticate(&hash_key(&key))
        .await
        .unwrap()
        .expect("key authenticates");
    assert_eq!(owner.tenant_id, tenant);
    // The key itself is not what is stored: looking it up raw finds nothing.
    assert_eq!(s.authenticate(&key).await.unwrap(), None);
    let keys = s.list_api_keys(&tenant).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].id, owner.key_id);
    s.revoke_api_key(&owner.key_id, 99).await.unwrap();
    assert_eq!(s.authenticate(&hash_key(&key)).await.unwrap(), None);
    assert_eq!(
        s.list_api_keys(&tenant).await.unwrap()[0].revoked_at_ms,
        Some(99)
    );
    assert!(matches!(
        s.revoke_api_key("nope", 1).await,
        Err(StorageError::NotFound(_))
    ));
}

fn att(i: u32, digest: &str, repo: &str, builder: &str) -> AttestationRow {
    AttestationRow {
        id: format!("0190000{i:04}"),
        created_at_ms: i64::from(i),
        keyid: "kid".into(),
        builder_id: builder.into(),
        source_uri: repo.into(),
        subjects: vec![
            SubjectRow {
                name: "a.tar".into(),
                digest: digest.into(),
            },
            SubjectRow {
                name: "b.tar".into(),
                digest: format!("sha256:{}", "b".repeat(64)),
            },
        ],
        envelope: format!("{{\"n\":{i}}}"),
        bundle: "{}".into(),
    }
}

async fn attestations_are_found_by_subject_repo_and_builder_with_paging(b: Backend) {
    let db = TestDb::new(b).await;
    let s = db.open().await;
    let d1 = format!("sha256:{}", "1".repeat(64));
    let d2 = format!("sha256:{}", "2".repeat(64));
    for i in 0..3 {
        s.insert_attestation(&att(i, &d1, "git+https://x/a", "https://b/1"))
            .await
            .unwrap();
    }
    s.insert_attestation(&att(3, &d2, "git+https://x/b", "https://b/2"))
        .await
        .unwrap();
    let page = |limit, before: Option<&str>| Page {
        limit,
        before: before.map(str::to_owned),
    };

    let got = s
        .find_attestations(&AttestationFilter::Subject(d1.clone()), &page(2, None))
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["01900000002", "01900000001"]
    );
    assert_eq!(
        got[0],
        att(2, &d1, "git+https://x/a", "https://b/1"),
        "round trip with subjects"
    );
    let rest = s
        .find_attestations(
            &AttestationFilter::Subject(d1.clone()),
            &page(2, Some(&got[1].id)),
        )
        .await
        .unwrap();
    assert_eq!(
        rest.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["01900000000"]
    );

    let by_repo = s
        .find_attestations(
            &AttestationFilter::Repo("git+https://x/b".into()),
            &page(10, None),
        )
        .await
        .unwrap();
    assert_eq!(by_repo.len(), 1);
    assert_eq!(by_repo[0].subjects[0].digest, d2);
    let by_builder = s
        .find_attestations(
            &AttestationFilter::Builder("https://b/1".into()),
            &page(10, None),
        )
        .await
        .unwrap();
    assert_eq!(by_builder.len(), 3);
    let none = s
        .find_attestations(
            &AttestationFilter::Subject(format!("sha256:{}", "9".repeat(64))),
            &page(10, None),
        )
        .await
        .unwrap();
    assert!(none.is_empty());
    // The shared subject "b" matches all four.
    let shared = s
        .find_attestations(
            &AttestationFilter::Subject(format!("sha256:{}", "b".repeat(64))),
            &page(10, None),
        )
        .await
        .unwrap();
    assert_eq!(shared.len(), 4);

    // The envelopes alone, newest first, as verification by digest reads them.
    assert_eq!(
        s.find_envelopes(&d1, 2).await.unwrap(),
        [r#"{"n":2}"#, r#"{"n":1}"#]
    );
    assert_eq!(
        s.find_envelopes(&format!("sha256:{}", "b".repeat(64)), 10)
            .await
            .unwrap()
            .len(),
        4
    );
    assert!(
        s.find_envelopes(&format!("sha256:{}", "9".repeat(64)), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn usage_generated_keys_always_count(b: Backend) {
    let db = TestDb::new(b).await;
    let s = db.open().await;
    let (t, _) = tenant_with_key(s.as_ref(), "acme").await;
    let batch: Vec<_> = (0..5)
        .map(|i| write(&t, UsageKey::Generated(format!("g{i}")), "h", 10))
        .collect();
    let out = s.commit_usage(&batch, 0).await.unwrap();
    assert_eq!(out, vec![UsageOutcome::Recorded; 5]);
    assert_eq!(verify_count(s.as_ref(), &t).await, 5);
}

async fn usage_client_key_counts_once_and_replays_stored_response(b: Backend) {
    let db = TestDb::new(b).await;
    let s = db.open().await;
    let (t, _) = tenant_with_key(s.as_ref(), "acme").await;
    let first = write(&t, client("k1"), "h1", 1000);
    assert_eq!(
        s.commit_usage(std::slice::from_ref(&first), 0)
            .await
            .unwrap(),
        [UsageOutcome::Recorded]
    );
    let mut retry = first.clone();
    retry.response.body = bytes::Bytes::from_static(b"a different computed body");
    retry.at_ms = 2000;
    assert_eq!(
        s.commit_usage(&[retry], 0).await.unwrap(),
        [UsageOutcome::Replay(first.response.clone())],
        "the stored response is replayed, not the new one"
    );
    assert_eq!(verify_count(s.as_ref(), &t).await, 1);
}

async fn usage_same_key_twice_in_one_batch_counts_once(b: Backend) {
    let db = TestDb::new(b).await;
    let s = db.open().await;
    let (t, _) = tenant_with_key(s.as_ref(), "acme").await;
    let a = write(&t, client("dup"), "h", 10);
    let out = s.commit_usage(&[a.clone(), a.clone()], 0).await.unwrap();
    assert_eq!(
        out,
        [
            UsageOutcome::Recorded,
            UsageOutcome::Replay(a.response.clone())
        ]
    );
    assert_eq!(verify_count(s.as_ref(), &t).await, 1);
}

/// One batch holding every kind of write: generated keys, new client keys,
/// a key recorded earlier (replayed), the same key reused for another
/// request (refused), and an in-batch duplicate; two tenants.
async fn usage_mixed_batch_resolves_every_position(b: Backend) {
    let db = TestDb::new(b).await;
    let s = db.open().await;
    let (t, _) = tenant_with_key(s.as_ref(), "acme").await;
    let (u, _) = tenant_with_key(s.as_ref(), "other").await;
    let earlier = write(&t, client("old"), "h-old", 5);
    let reused = write(&t, client("taken"), "h-taken", 5);
    s.commit_usage(&[earlier.clone(), reused.clone()], 0)
        .await
        .unwrap();
    let new_a = write(&t, client("new-a"), "h-a", 10);
    let batch = vec![
        write(&t, UsageKey::Generated("g1".into()), "x", 10),
        new_a.clone(),
        write(&t, client("old"), "h-old", 11),
        write(&t, client("taken"), "h-other", 11),
        write(&u, client("new-a"), "h-a", 10),
        new_a.clone(),
        write(&u, UsageKey::Generated("g2".into()), "y", 12),
        write(&t, client("new-b"), "h-b", 12),
    ];
    let out = s.commit_usage(&batch, 0).await.unwrap();
    assert_eq!(
        out,
        [
            UsageOutcome::Recorded,
            UsageOutcome::Recorded,
            UsageOutcome::Replay(earlier.response.clone()),
            UsageOutcome::KeyReused,
            UsageOutcome::Recorded,
            UsageOutcome::Replay(new_a.response.clone()),
            UsageOutcome::Recorded,
            UsageOutcome::Recorded,
        ]
    );
    // acme: old + taken earlier, then g1, new-a, new-b; other: new-a, g2.
    assert_eq!(verify_count(s.as_ref(), &t).await, 5);
    assert_eq!(verify_count(s.as_ref(), &u).await, 2);
    // The new keys now replay what this batch stored.
    let again = s
        .commit_usage(std::slice::from_ref(&new_a), 0)
        .await
        .unwrap();
    assert_eq!(again, [UsageOutcome::Replay(new_a.response.clone())]);
}

/// A batch as large as the SQLite backend takes commits every event once
/// (and replays every client key after).
async fn usage_batch_at_the_backend_limit_commits(b: Backend) {
    let db = TestDb::new(b).await;
    let s = db.open().await;
    let (t, _) = tenant_with_key(s.as_ref(), "acme").await;
    let n = cloister_attestor::storage::sqlite::MAX_BATCH;
    let batch: Vec<_> = (0..n)
        .map(|i| {
            if i % 2 == 0 {
                write(&t, client(&format!("k{i}")), "h", 10)
            } else {
                write(&t, UsageKey::Generated(format!("g{i}")), "h", 10)
            }
        })
        .collect();
    let out = s.commit_usage(&batch, 0).await.unwrap();
    assert!(out.iter().all(|o| *o == UsageOutcome::Recorded));
    assert_eq!(verify_count(s.as_ref(), &t).await, n as i64);
    let replay = s.commit_usage(&batch, 0).await.unwrap();
    assert_eq!(
        replay
            .iter()
            .filter(|o| **o == UsageOutcome::Recorded)
            .count(),
        n / 2,
        "client keys replay, generated keys count again"
    );
}

async fn usage_key_reused_for_other_request_is_refused(b: Backend) {
    let db = TestDb::new(b).await;
    let s = db.open().await;
    let (t, _) = tenant_with_key(s.as_ref(), "acme").await;
    s.commit_usage(&[write(&t, client("k"), "h1", 10)], 0)
        .await
        .unwrap();
    let out = s
        .commit_usage(&[write(&t, client("k"), "h2", 11)], 0)
        .await
        .unwrap();
    assert_eq!(out, [UsageOutcome::KeyReused]);
    assert_eq!(verify_count(s.as_ref(), &t).await, 1);
}

async fn usage_key_counts_again_after_the_window(b: Backend) {
    let db = TestDb::new(b).await;
    let s = db.open().await;
    let (t, _) = tenant_with_key(s.as_ref(), "acme").await;
    let day = 86_400_000;
    s.commit_usage(&[write(&t, client("k"), "h1", 1000)], 0)
        .await
        .unwrap();
    // Just inside the window: replay.
    let inside = s
        .commit_usage(
            &[write(&t, client("k"), "h1", 1000 + day - 1)],
            1000 + day - 1 - day,
        )
        .await
        .unwrap();
    assert!(matches!(inside[0], UsageOutcome::Replay(_)));
    // Past it (even with another request body): a new event.
    let after = s
        .commit_usage(&[write(&t, client("k"), "h2", 1001 + day)], 1001)
        .await
        .unwrap();
    assert_eq!(after, [UsageOutcome::Recorded]);
    assert_eq!(verify_count(s.as_ref(), &t).await, 2);
    // And that new record replays from now on.
    let again = s
        .commit_usage(&[write(&t, client("k"), "h2", 2000 + day)], 1001)
        .await
        .unwrap();
    assert!(matches!(again[0], UsageOutcome::Replay(_)));
}

async fn usage_keys_are_per_tenant(b: Backend) {
    let db = TestDb::new(b).await;
    let s = db.open().await;
    let (a, _) = tenant_with_key(s.as_ref(), "a").await;
    let (bt, _) = tenant_with_key(s.as_ref(), "b").await;
    s.commit_usage(&[write(&a, client("same"), "ha", 10)], 0)
        .await
        .unwrap();
    // Tenant b using the same key neither replays a's stored result nor collides.
    let out = s
        .commit_usage(&[write(&bt, client("same"), "hb", 10)], 0)
        .await
        .unwrap();
    assert_eq!(out, [UsageOutcome::Recorded]);
    assert_eq!(verify_count(s.as_ref(), &a).await, 1);
    assert_eq!(verify_count(s.as_ref(), &bt).await, 1);
    // Events are per event name too.
    let mut dl = write(&a, client("same"), "hd", 10);
    dl.event = EVENT_DOWNLOAD;
    assert_eq!(
        s.commit_usage(&[dl], 0).await.unwrap(),
        [UsageOutcome::Recorded]
    );
    let counts = s.usage_counts(&a, 0, i64::MAX).await.unwrap();
    assert_eq!(counts.get(EVENT_DOWNLOAD), Some(&1));
    assert_eq!(counts.get(EVENT_VERIFY), Some(&1));
}

async fn usage_counts_respect_the_period(b: Backend) {
    let db = TestDb::new(b).await;
    let s = db.open().await;
    let (t, _) = tenant_with_key(s.as_ref(), "acme").await;
    let batch: Vec<_> = [99, 100, 150, 199, 200]
        .iter()
        .map(|&at| write(&t, UsageKey::Generated(format!("g{at}")), "h", at))
        .collect();
    s.commit_usage(&batch, 0).await.unwrap();
    let c = s.usage_counts(&t, 100, 200).await.unwrap();
    assert_eq!(
        c.get(EVENT_VERIFY),
        Some(&3),
        "from inclusive, to exclusive"
    );
    assert!(s.usage_counts(&t, 300, 400).await.unwrap().is_empty());
}

async fn concurrent_duplicate_commits_from_two_pools_count_once(b: Backend) {
    // Two storages on one database behave like two attestor processes.
    let db = TestDb::new(b).await;
    let s1 = db.open().await;
    let s2 = db.open().await;
    let (t, _) = tenant_with_key(s1.as_ref(), "acme").await;
    let keys = 40;
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let s = if worker % 2 == 0 {
            s1.clone()
        } else {
            s2.clone()
        };
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let mut recorded = 0;
            for round in 0..5 {
                // Every worker sends every key, in batches, in different orders.
                let mut batch: Vec<_> = (0..keys)
                    .map(|k| {
                        write(
                            &t,
                            client(&format!("k{}", (k * (worker + 1) + round) % keys)),
                            "h",
                            10,
                        )
                    })
                    .collect();
                batch.truncate(20 + worker);
                for o in s.commit_usage(&batch, 0).await.unwrap() {
                    if o == UsageOutcome::Recorded {
                        recorded += 1;
                    }
                }
            }
            recorded
        }));
    }
    let mut recorded = 0;
    for task in tasks {
        recorded += task.await.unwrap();
    }
    let distinct = {
        let mut set = std::collections::BTreeSet::new();
        for worker in 0..8usize {
            for round in 0..5usize {
                for k in 0..(20 + worker).min(keys) {
                    set.insert((k * (worker + 1) + round) % keys);
                }
            }
        }
        set.len() as i64
    };
    assert_eq!(recorded, distinct, "each key recorded exactly once");
    assert_eq!(verify_count(s1.as_ref(), &t).await, distinct);
}

async fn migrations_rerun_keep_data(b: Backend) {
    let db = TestDb::new(b).await;
    let s = db.open().await;
    let (t, key) = tenant_with_key(s.as_ref(), "acme").await;
    s.close().await;
    let again = db.open().await;
    assert!(again.find_tenant(&t).await.unwrap().is_some());
    assert!(again.authenticate(&hash_key(&key)).await.unwrap().is_some());
    again.ping().await.unwrap();
}

async fn purge_forgets_old_idempotency_but_keeps_usage(b: Backend) {
    let db = TestDb::new(b).await;
    let s = db.open().await;
    let (t, _) = tenant_with_key(s.as_ref(), "acme").await;
    s.commit_usage(
        &[
            write(&t, client("old"), "h", 10),
            write(&t, client("new"), "h", 500),
        ],
        0,
    )
    .await
    .unwrap();
    assert_eq!(s.purge_idempotency(100).await.unwrap(), 1);
    assert_eq!(verify_count(s.as_ref(), &t).await, 2);
    // "new" still replays (replay_since 0 would also replay "old" had it stayed).
    let out = s
        .commit_usage(&[write(&t, client("new"), "h", 600)], 0)
        .await
        .unwrap();
    assert!(matches!(out[0], UsageOutcome::Replay(_)));
}

#[tokio::test]
async fn sqlite_runs_in_wal_with_synchronous_full() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("a/b.db").display());
    let s = cloister_attestor::storage::sqlite::SqliteStorage::open(&url)
        .await
        .unwrap();
    assert_eq!(s.pragma("journal_mode").await.unwrap(), "wal");
    assert_eq!(s.pragma("synchronous").await.unwrap(), "2", "2 is FULL");
    assert_eq!(s.pragma("foreign_keys").await.unwrap(), "1");
    // The usage commits' own connection is just as durable.
    assert_eq!(s.writer_pragma("journal_mode").await.unwrap(), "wal");
    assert_eq!(s.writer_pragma("synchronous").await.unwrap(), "2");
    assert_eq!(s.writer_pragma("foreign_keys").await.unwrap(), "1");
}

#[tokio::test]
async fn unknown_storage_urls_are_refused() {
    for url in ["mysql://x", "", "file:///tmp/x"] {
        assert!(
            matches!(
                cloister_attestor::storage::open(url).await,
                Err(StorageError::Url(_))
            ),
            "{url}"
        );
    }
}

#[allow(dead_code)]
fn _assert_object_safe(_: Arc<dyn cloister_attestor::storage::Storage>) {}
