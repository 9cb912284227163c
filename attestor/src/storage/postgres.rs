//! The PostgreSQL backend, for stateless attestors behind a load balancer:
//! every attestor shares the database, so idempotency and usage counts hold
//! across processes (the `idempotency` primary key arbitrates concurrent
//! duplicates; `INSERT … ON CONFLICT` waits for the other transaction). A
//! usage batch is written set-based in key order so two batches never deadlock.
//! An optional schema name (used by tests) scopes every table.

use super::evidence_sql::postgres_impl;
use super::*;

mod portal;
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::str::FromStr;

/// Connections in the pool.
const POOL_SIZE: u32 = 8;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// PostgreSQL storage.
#[derive(Debug, Clone)]
pub struct PgStorage {
    pub(super) pool: PgPool,
}

impl PgStorage {
    /// Connects to `url` and migrates. With `schema`, the schema is created if
    /// missing and every connection uses it as its `search_path`.
    pub async fn open(url: &str, schema: Option<&str>) -> Result<Self, StorageError> {
        let mut opts =
            PgConnectOptions::from_str(url).map_err(|e| StorageError::Url(e.to_string()))?;
        if let Some(schema) = schema {
            if !schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(StorageError::Url(format!("bad schema name {schema:?}")));
            }
            let admin = PgPoolOptions::new()
                .max_connections(1)
                .connect_with(opts.clone())
                .await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
            )))
            .execute(&admin)
            .await?;
            admin.close().await;
            opts = opts.options([("search_path", schema)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .connect_with(opts)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    /// Drops a schema made by [`PgStorage::open`] (tests clean up with it).
    pub async fn drop_schema(url: &str, schema: &str) -> Result<(), StorageError> {
        if !schema
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(StorageError::Url(format!("bad schema name {schema:?}")));
        }
        let opts = PgConnectOptions::from_str(url).map_err(|e| StorageError::Url(e.to_string()))?;
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
        )))
        .execute(&admin)
        .await?;
        admin.close().await;
        Ok(())
    }
}

#[async_trait]
impl Storage for PgStorage {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn billing(&self) -> &dyn super::billing::BillingStore {
        self
    }

    async fn ping(&self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn commit_concurrency(&self) -> usize {
        // Batches on separate connections commit (and fsync) concurrently;
        // their idempotency rows are locked in key order, so they never
        // deadlock. Half the pool, so reads always find a connection.
        (POOL_SIZE / 2) as usize
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn create_tenant(&self, t: &Tenant) -> Result<(), StorageError> {
        sqlx::query("INSERT INTO tenants (id, name, plan, created_at_ms) VALUES ($1, $2, $3, $4)")
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
            "SELECT id, name, plan, created_at_ms FROM tenants WHERE id = $1 OR name = $2 \
             ORDER BY id = $3 DESC LIMIT 1",
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
             VALUES ($1, $2, $3, $4, $5)",
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
            "UPDATE api_keys SET revoked_at_ms = COALESCE(revoked_at_ms, $1) WHERE id = $2",
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
             WHERE tenant_id = $1 ORDER BY created_at_ms, id",
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
            "SELECT id, tenant_id FROM api_keys WHERE key_hash = $1 AND revoked_at_ms IS NULL",
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
        let mut tx = self.pool.begin().await?;
        postgres_impl::insert_attestation_rows_tx(&mut tx, a).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_signed(
        &self,
        a: &AttestationRow,
        request: &SignRequest,
    ) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        postgres_impl::insert_attestation_rows_tx(&mut tx, a).await?;
        postgres_impl::insert_sign_request_tx(&mut tx, &a.id, request).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn find_signed(
        &self,
        builder_id: &str,
        invocation_id: &str,
    ) -> Result<Option<(String, AttestationRow)>, StorageError> {
        postgres_impl::find_signed_in(&self.pool, builder_id, invocation_id).await
    }

    async fn find_envelopes(&self, digest: &str, limit: u32) -> Result<Vec<String>, StorageError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT a.envelope FROM attestations a WHERE a.id IN \
             (SELECT attestation_id FROM attestation_subjects WHERE digest = $1) \
             ORDER BY a.id DESC LIMIT $2",
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
        // The cursor is an id; ids are UUIDv7 (text, "C" collation) so they
        // sort by creation time.
        let sql = match filter {
            AttestationFilter::Subject(_) => {
                "SELECT a.id, a.created_at_ms, a.keyid, a.builder_id, a.source_uri, a.envelope, a.bundle \
                 FROM attestations a WHERE a.id IN (SELECT attestation_id FROM attestation_subjects WHERE digest = $1) \
                 AND ($2::text IS NULL OR a.id < $2) ORDER BY a.id DESC LIMIT $3"
            }
            AttestationFilter::Repo(_) => {
                "SELECT id, created_at_ms, keyid, builder_id, source_uri, envelope, bundle \
                 FROM attestations WHERE source_uri = $1 AND ($2::text IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
            }
            AttestationFilter::Builder(_) => {
                "SELECT id, created_at_ms, keyid, builder_id, source_uri, envelope, bundle \
                 FROM attestations WHERE builder_id = $1 AND ($2::text IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
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
        let ids: Vec<&str> = out.iter().map(|r| r.id.as_str()).collect();
        let subjects = sqlx::query(
            "SELECT attestation_id, name, digest FROM attestation_subjects \
             WHERE attestation_id = ANY($1) ORDER BY name, digest",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        attach_subjects(out, &subjects)
    }

    async fn commit_usage(
        &self,
        batch: &[UsageWrite],
        replay_since_ms: i64,
    ) -> Result<Vec<UsageOutcome>, StorageError> {
        // Set-based: a constant number of statements per batch, whatever its size.
        let prepared = prepare_batch(batch)?;
        let mut tx = self.pool.begin().await?;
        let fresh_rows = sqlx::query(
            "INSERT INTO idempotency (tenant_id, event, key, request_hash, status, body, created_at_ms) \
             SELECT x.t, x.e, x.k, x.h, x.s, convert_to(x.b, 'UTF8'), x.a \
             FROM jsonb_to_recordset($1::jsonb) \
               AS x(t text, e text, k text, h text, s bigint, b text, a bigint) \
             ORDER BY x.t, x.e, x.k \
             ON CONFLICT (tenant_id, event, key) DO UPDATE SET \
               request_hash = excluded.request_hash, status = excluded.status, \
               body = excluded.body, created_at_ms = excluded.created_at_ms \
             WHERE idempotency.created_at_ms < $2 \
             RETURNING tenant_id, event, key",
        )
        .bind(&prepared.client_rows)
        .bind(replay_since_ms)
        .fetch_all(&mut *tx)
        .await?;
        let index: BTreeMap<(String, String, String), usize> = batch
            .iter()
            .enumerate()
            .filter(|(i, w)| {
                matches!(w.key, UsageKey::Client(_)) && prepared.duplicate_of[*i].is_none()
            })
            .map(|(i, w)| {
                (
                    (
                        w.tenant_id.clone(),
                        w.event.to_owned(),
                        w.key.as_str().to_owned(),
                    ),
                    i,
                )
            })
            .collect();
        let pos = |r: &sqlx::postgres::PgRow| -> Result<usize, StorageError> {
            let k: (String, String, String) = (
                r.try_get("tenant_id")?,
                r.try_get("event")?,
                r.try_get("key")?,
            );
            index
                .get(&k)
                .copied()
                .ok_or_else(|| StorageError::Corrupt("unexpected idempotency row".into()))
        };
        let mut fresh = std::collections::BTreeSet::new();
        for r in &fresh_rows {
            fresh.insert(pos(r)?);
        }
        let mut stored = BTreeMap::new();
        if fresh.len() < index.len() {
            let rows = sqlx::query(
                "SELECT i.tenant_id, i.event, i.key, i.request_hash, i.status, i.body \
                 FROM idempotency AS i \
                 JOIN jsonb_to_recordset($1::jsonb) AS x(t text, e text, k text) \
                   ON i.tenant_id = x.t AND i.event = x.e AND i.key = x.k",
            )
            .bind(&prepared.client_rows)
            .fetch_all(&mut *tx)
            .await?;
            for r in &rows {
                let p = pos(r)?;
                if fresh.contains(&p) {
                    continue;
                }
                stored.insert(p, stored_row(r)?);
            }
        }
        let (outcomes, recorded) = resolve_batch(batch, &prepared, &fresh, &stored)?;
        if recorded.iter().any(|r| *r) {
            sqlx::query(
                "INSERT INTO usage_events (tenant_id, event, units, idempotency_key, occurred_at_ms) \
                 SELECT x.t, x.e, x.u, x.k, x.a \
                 FROM jsonb_to_recordset($1::jsonb) AS x(t text, e text, u bigint, k text, a bigint)",
            )
            .bind(usage_rows(batch, &recorded)?)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn usage_counts(
        &self,
        tenant_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<UsageCounts, StorageError> {
        // See the SQLite backend: a loose index scan over the tenant's
        // event kinds, then one range sum per kind.
        let rows = sqlx::query(
            "WITH RECURSIVE kinds(ev) AS ( \
               SELECT (SELECT min(event) FROM usage_events WHERE tenant_id = $1) \
               UNION ALL \
               SELECT (SELECT min(event) FROM usage_events WHERE tenant_id = $1 AND event > kinds.ev) \
                 FROM kinds WHERE kinds.ev IS NOT NULL) \
             SELECT k.ev AS event, (SELECT SUM(units)::BIGINT FROM usage_events \
                WHERE tenant_id = $1 AND event = k.ev AND occurred_at_ms >= $2 AND occurred_at_ms < $3) AS n \
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
        let done = sqlx::query("DELETE FROM idempotency WHERE created_at_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
