//! The embedded SQLite backend: one file in the state dir, WAL journal,
//! `synchronous=FULL` (a commit is on disk before it returns), a busy timeout
//! so the operator CLIs can write while the server runs, and `BEGIN IMMEDIATE`
//! for write transactions so two writers never deadlock on lock upgrade.

use super::evidence_sql::sqlite_impl;
use super::*;

mod portal;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection as _, Row};
use std::str::FromStr;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Most usage events in one SQLite transaction (the committer never hands
/// over more): bounds the statement's JSON and the time the write lock is
/// held.
pub const MAX_BATCH: usize = 1024;

/// One usage batch: ?1 the first occurrences of client keys
/// (`prepare_batch`), ?2 the start of the replay window, ?3 the event
/// candidates (`event_candidates`). Rows come only from the SELECT: the live
/// records of the batch's keys.
const COMMIT_USAGE_SQL: &str = "\
BEGIN IMMEDIATE;
SELECT i.tenant_id, i.event, i.key, i.request_hash, i.status, i.body
  FROM jsonb_each(?1) AS j
  JOIN idempotency AS i
    ON i.tenant_id = j.value ->> 't' AND i.event = j.value ->> 'e' AND i.key = j.value ->> 'k'
 WHERE i.created_at_ms >= ?2;
INSERT INTO usage_events (tenant_id, event, units, idempotency_key, occurred_at_ms)
SELECT j.value ->> 't', j.value ->> 'e', j.value ->> 'u', j.value ->> 'k', j.value ->> 'a'
  FROM jsonb_each(?3) AS j
 WHERE j.value ->> 'c' = 0 OR NOT EXISTS (
       SELECT 1 FROM idempotency AS i
        WHERE i.tenant_id = j.value ->> 't' AND i.event = j.value ->> 'e'
          AND i.key = j.value ->> 'k' AND i.created_at_ms >= ?2);
INSERT INTO idempotency (tenant_id, event, key, request_hash, status, body, created_at_ms)
SELECT j.value ->> 't', j.value ->> 'e', j.value ->> 'k', j.value ->> 'h',
       j.value ->> 's', CAST(j.value ->> 'b' AS BLOB), j.value ->> 'a'
  FROM jsonb_each(?1) AS j WHERE true
    ON CONFLICT (tenant_id, event, key) DO UPDATE SET
       request_hash = excluded.request_hash, status = excluded.status,
       body = excluded.body, created_at_ms = excluded.created_at_ms
 WHERE idempotency.created_at_ms < ?2;
COMMIT;";

/// SQLite storage.
#[derive(Debug, Clone)]
pub struct SqliteStorage {
    pub(super) pool: SqlitePool,
    /// The connection usage batches are committed on, outside the pool: the
    /// only writer on the hot path, so its page cache stays valid between
    /// batches (a pooled connection drops its cache whenever another one
    /// wrote), and no pool acquire per batch.
    writer: Arc<tokio::sync::Mutex<Option<SqliteConnection>>>,
}

impl SqliteStorage {
    /// Opens `sqlite://PATH` (creating the file and its directory) and migrates.
    pub async fn open(url: &str) -> Result<Self, StorageError> {
        let opts =
            SqliteConnectOptions::from_str(url).map_err(|e| StorageError::Url(e.to_string()))?;
        let path = opts.get_filename().to_owned();
        // A directory made here is 0700 and the database files 0600,
        // whatever the umask (they hold webhook secrets): `files`.
        if let Some(dir) = path.parent() {
            super::files::create_private_dir(dir).map_err(|e| StorageError::CreateDir {
                path: dir.to_owned(),
                source: std::io::Error::other(e.to_string()),
            })?;
        }
        super::files::secure_db_file(&path).map_err(|e| StorageError::CreateDir {
            path: path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let opts = opts
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .connect_with(opts.clone())
            .await?;
        MIGRATOR.run(&pool).await?;
        let writer = SqliteConnection::connect_with(&opts).await?;
        Ok(Self {
            pool,
            writer: Arc::new(tokio::sync::Mutex::new(Some(writer))),
        })
    }
}

impl SqliteStorage {
    /// A PRAGMA's value as one connection of the pool sees it (tests check
    /// `journal_mode` and `synchronous` with it).
    pub async fn pragma(&self, name: &str) -> Result<String, StorageError> {
        let row = sqlx::query(Self::pragma_query(name)?)
            .fetch_one(&self.pool)
            .await?;
        Self::pragma_value(&row)
    }

    /// The same, as the connection usage batches are committed on sees it.
    pub async fn writer_pragma(&self, name: &str) -> Result<String, StorageError> {
        let mut writer = self.writer.lock().await;
        let conn = writer
            .as_mut()
            .ok_or(StorageError::Database(sqlx::Error::PoolClosed))?;
        let row = sqlx::query(Self::pragma_query(name)?)
            .fetch_one(&mut *conn)
            .await?;
        Self::pragma_value(&row)
    }

    fn pragma_query(name: &str) -> Result<sqlx::AssertSqlSafe<String>, StorageError> {
        if !name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            return Err(StorageError::Url(format!("bad pragma {name:?}")));
        }
        Ok(sqlx::AssertSqlSafe(format!("PRAGMA {name}")))
    }

    fn pragma_value(row: &sqlx::sqlite::SqliteRow) -> Result<String, StorageError> {
        Ok(match row.try_get::<i64, _>(0) {
            Ok(n) => n.to_string(),
            Err(_) => row.try_get::<String, _>(0)?,
        })
    }
}

#[async_trait]
impl Storage for SqliteStorage {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn billing(&self) -> &dyn super::billing::BillingStore {
        self
    }

    async fn ping(&self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        if let Some(w) = self.writer.lock().await.take() {
            let _ = w.close().await;
        }
        self.pool.close().await;
    }

    async fn create_tenant(&self, t: &Tenant) -> Result<(), StorageError> {
        sqlx::query("INSERT INTO tenants (id, name, plan, created_at_ms) VALUES (?, ?, ?, ?)")
            .bind(&t.id)
            .bind(&t.name)
            .bind(t.plan.as_str())
            .bind(t.created_at_ms)
            .execute(&self.pool)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StorageError::Conflict(format!("tenant {:?}", t.name))
                } else {
                    e.into()
                }
            })?;
        Ok(())
    }

    async fn find_tenant(&self, id_or_name: &str) -> Result<Option<Tenant>, StorageError> {
        let row = sqlx::query(
            "SELECT id, name, plan, created_at_ms FROM tenants WHERE id = ? OR name = ? \
             ORDER BY id = ? DESC LIMIT 1",
        )
        .bind(id_or_name)
        .bind(id_or_name)
        .bind(id_or_name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(tenant_from).transpose()
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>, StorageError> {
        sqlx::query("SELECT id, name, plan, created_at_ms FROM tenants ORDER BY name")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(tenant_from)
            .collect()
    }

    async fn insert_api_key(&self, k: &ApiKeyInfo, key_hash: &str) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, key_hash, created_at_ms, revoked_at_ms) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&k.id)
        .bind(&k.tenant_id)
        .bind(key_hash)
        .bind(k.created_at_ms)
        .bind(k.revoked_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn revoke_api_key(&self, key_id: &str, at_ms: i64) -> Result<(), StorageError> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at_ms = COALESCE(revoked_at_ms, ?) WHERE id = ?",
        )
        .bind(at_ms)
        .bind(key_id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StorageError::NotFound(format!("api key {key_id:?}")));
        }
        Ok(())
    }

    async fn list_api_keys(&self, tenant_id: &str) -> Result<Vec<ApiKeyInfo>, StorageError> {
        sqlx::query(
            "SELECT id, tenant_id, created_at_ms, revoked_at_ms FROM api_keys \
             WHERE tenant_id = ? ORDER BY created_at_ms, id",
        )
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(key_from)
        .collect()
    }

    async fn authenticate(&self, key_hash: &str) -> Result<Option<KeyOwner>, StorageError> {
        let row = sqlx::query(
            "SELECT id, tenant_id FROM api_keys WHERE key_hash = ? AND revoked_at_ms IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => Some(KeyOwner {
                key_id: r.try_get("id")?,
                tenant_id: r.try_get("tenant_id")?,
            }),
            None => None,
        })
    }

    async fn insert_attestation(&self, a: &AttestationRow) -> Result<(), StorageError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlite_impl::insert_attestation_rows_tx(&mut tx, a).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_signed(
        &self,
        a: &AttestationRow,
        request: &SignRequest,
    ) -> Result<(), StorageError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlite_impl::insert_attestation_rows_tx(&mut tx, a).await?;
        sqlite_impl::insert_sign_request_tx(&mut tx, &a.id, request).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn find_signed(
        &self,
        builder_id: &str,
        invocation_id: &str,
    ) -> Result<Option<(String, AttestationRow)>, StorageError> {
        sqlite_impl::find_signed_in(&self.pool, builder_id, invocation_id).await
    }

    async fn find_envelopes(&self, digest: &str, limit: u32) -> Result<Vec<String>, StorageError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT a.envelope FROM attestations a WHERE a.id IN \
             (SELECT attestation_id FROM attestation_subjects WHERE digest = ?1) \
             ORDER BY a.id DESC LIMIT ?2",
        )
        .bind(digest)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(e,)| e).collect())
    }

    async fn find_attestations(
        &self,
        filter: &AttestationFilter,
        page: &Page,
    ) -> Result<Vec<AttestationRow>, StorageError> {
        // The cursor is an id; ids are UUIDv7 so they sort by creation time.
        let sql = match filter {
            AttestationFilter::Subject(_) => {
                "SELECT a.id, a.created_at_ms, a.keyid, a.builder_id, a.source_uri, a.envelope, a.bundle \
                 FROM attestations a WHERE a.id IN (SELECT attestation_id FROM attestation_subjects WHERE digest = ?1) \
                 AND (?2 IS NULL OR a.id < ?2) ORDER BY a.id DESC LIMIT ?3"
            }
            AttestationFilter::Repo(_) => {
                "SELECT id, created_at_ms, keyid, builder_id, source_uri, envelope, bundle \
                 FROM attestations WHERE source_uri = ?1 AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3"
            }
            AttestationFilter::Builder(_) => {
                "SELECT id, created_at_ms, keyid, builder_id, source_uri, envelope, bundle \
                 FROM attestations WHERE builder_id = ?1 AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3"
            }
        };
        let value = match filter {
            AttestationFilter::Subject(v)
            | AttestationFilter::Repo(v)
            | AttestationFilter::Builder(v) => v,
        };
        let rows = sqlx::query(sql)
            .bind(value)
            .bind(page.before.as_deref())
            .bind(i64::from(page.limit))
            .fetch_all(&self.pool)
            .await?;
        let out = rows
            .iter()
            .map(attestation_row)
            .collect::<Result<Vec<_>, _>>()?;
        if out.is_empty() {
            return Ok(out);
        }
        // The subjects of every row found, in one query.
        let ids = serde_json::to_string(&out.iter().map(|r| &r.id).collect::<Vec<_>>())
            .map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let subjects = sqlx::query(
            "SELECT attestation_id, name, digest FROM attestation_subjects \
             WHERE attestation_id IN (SELECT value FROM json_each(?1)) ORDER BY name, digest",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        attach_subjects(out, &subjects)
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    async fn commit_usage(
        &self,
        batch: &[UsageWrite],
        replay_since_ms: i64,
    ) -> Result<Vec<UsageOutcome>, StorageError> {
        if batch.len() > MAX_BATCH {
            return Err(StorageError::Corrupt(format!(
                "usage batch of {} events, over the limit of {MAX_BATCH}",
                batch.len()
            )));
        }
        // The whole transaction is one multi-statement query: one message to
        // the connection's thread and back, instead of a round trip per
        // statement (each a thread wakeup, slow on a loaded machine).
        // `BEGIN IMMEDIATE` takes SQLite's single write lock first, so the
        // three statements see one state: live records are read (they
        // replay), events are inserted for generated keys and for client
        // keys without a live record (the same predicate the outcomes below
        // are computed with), then the client keys are upserted (a record
        // past the window is replaced). Set-based: constant statements per
        // batch.
        let prepared = prepare_batch(batch)?;
        let candidates = event_candidates(batch, &prepared)?;
        let mut writer = self.writer.lock().await;
        let conn = writer
            .as_mut()
            .ok_or(StorageError::Database(sqlx::Error::PoolClosed))?;
        let result = sqlx::query(COMMIT_USAGE_SQL)
            .bind(&prepared.client_rows)
            .bind(replay_since_ms)
            .bind(&candidates)
            .fetch_all(&mut *conn)
            .await;
        let rows = match result {
            Ok(rows) => rows,
            Err(e) => {
                // Whatever ran of it is undone; "no transaction is active"
                // (it failed before BEGIN or at COMMIT after SQLite rolled
                // back) is fine.
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                return Err(e.into());
            }
        };
        let index: BTreeMap<(&str, &str, &str), usize> = batch
            .iter()
            .enumerate()
            .filter(|(i, w)| {
                matches!(w.key, UsageKey::Client(_)) && prepared.duplicate_of[*i].is_none()
            })
            .map(|(i, w)| ((w.tenant_id.as_str(), w.event, w.key.as_str()), i))
            .collect();
        let mut fresh: std::collections::BTreeSet<usize> = index.values().copied().collect();
        let mut stored = BTreeMap::new();
        for r in &rows {
            let t: &str = r.try_get("tenant_id")?;
            let e: &str = r.try_get("event")?;
            let k: &str = r.try_get("key")?;
            let p = *index
                .get(&(t, e, k))
                .ok_or_else(|| StorageError::Corrupt("unexpected idempotency row".into()))?;
            fresh.remove(&p);
            stored.insert(p, stored_row(r)?);
        }
        let (outcomes, _recorded) = resolve_batch(batch, &prepared, &fresh, &stored)?;
        Ok(outcomes)
    }

    async fn usage_counts(
        &self,
        tenant_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<UsageCounts, StorageError> {
        // The one index on a tenant's events is ordered by event first
        // (`usage_events_rating`, schema 0002): the tenant's event kinds by
        // a loose index scan, then one range sum per kind.
        let rows = sqlx::query(
            "WITH RECURSIVE kinds(ev) AS ( \
               SELECT (SELECT min(event) FROM usage_events WHERE tenant_id = ?1) \
               UNION ALL \
               SELECT (SELECT min(event) FROM usage_events WHERE tenant_id = ?1 AND event > kinds.ev) \
                 FROM kinds WHERE kinds.ev IS NOT NULL) \
             SELECT k.ev AS event, (SELECT SUM(units) FROM usage_events \
                WHERE tenant_id = ?1 AND event = k.ev AND occurred_at_ms >= ?2 AND occurred_at_ms < ?3) AS n \
               FROM kinds AS k WHERE k.ev IS NOT NULL",
        )
        .bind(tenant_id)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&self.pool)
        .await?;
        let mut out = UsageCounts::new();
        for r in rows {
            if let Some(n) = r.try_get::<Option<i64>, _>("n")? {
                out.insert(r.try_get("event")?, n);
            }
        }
        Ok(out)
    }

    async fn purge_idempotency(&self, before_ms: i64) -> Result<u64, StorageError> {
        let done = sqlx::query("DELETE FROM idempotency WHERE created_at_ms < ?")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
