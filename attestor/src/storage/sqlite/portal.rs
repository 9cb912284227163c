//! [`PortalStorage`] on SQLite.

use super::super::portal::{
    AUDITOR_SESSION_COLUMNS, AUDITOR_SESSION_JOINS, AuditorSessionKey, DailyUsage, NewSession,
    PortalStorage, SessionRow,
};
use super::super::{AttestationRow, StorageError, attach_subjects, attestation_row};
use super::SqliteStorage;
use async_trait::async_trait;
use sqlx::Row as _;

/// The newest attestation of each repository: a loose index scan over
/// `attestations_source (source_uri, id)` (one seek per repository, not a
/// scan of every attestation), then the row with the largest id per URI
/// (its bundle is not read: the list does not show it).
const LATEST_PER_REPOSITORY: &str = "\
WITH RECURSIVE repos(uri) AS (
    SELECT MIN(source_uri) FROM attestations
    UNION ALL
    SELECT (SELECT MIN(source_uri) FROM attestations WHERE source_uri > repos.uri)
      FROM repos WHERE repos.uri IS NOT NULL
)
SELECT a.id, a.created_at_ms, a.keyid, a.builder_id, a.source_uri, a.envelope, '' AS bundle
  FROM repos
  JOIN attestations a
    ON a.id = (SELECT MAX(id) FROM attestations WHERE source_uri = repos.uri)
 WHERE repos.uri IS NOT NULL
 ORDER BY a.source_uri";

impl SqliteStorage {
    async fn with_subjects(
        &self,
        rows: Vec<AttestationRow>,
    ) -> Result<Vec<AttestationRow>, StorageError> {
        if rows.is_empty() {
            return Ok(rows);
        }
        let ids = serde_json::to_string(&rows.iter().map(|r| &r.id).collect::<Vec<_>>())
            .map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let subjects = sqlx::query(
            "SELECT attestation_id, name, digest FROM attestation_subjects \
             WHERE attestation_id IN (SELECT value FROM json_each(?1)) ORDER BY name, digest",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        attach_subjects(rows, &subjects)
    }
}

/// The auditor key of a session row ([`AUDITOR_SESSION_COLUMNS`]).
fn auditor_key(r: &sqlx::sqlite::SqliteRow) -> Result<Option<AuditorSessionKey>, StorageError> {
    let Some(engagement_id) = r.try_get::<Option<String>, _>("ak_engagement_id")? else {
        return Ok(None);
    };
    Ok(Some(AuditorSessionKey {
        engagement_id,
        auditor: r.try_get("ak_auditor")?,
        expires_at_ms: r.try_get("ak_expires_at_ms")?,
        revoked_at_ms: r.try_get("ak_revoked_at_ms")?,
    }))
}

#[async_trait]
impl PortalStorage for SqliteStorage {
    async fn create_session(&self, s: &NewSession) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO portal_sessions \
             (token_hash, kind, tenant_id, key_id, created_at_ms, expires_at_ms) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&s.token_hash)
        .bind(s.kind)
        .bind(&s.tenant_id)
        .bind(&s.key_id)
        .bind(s.created_at_ms)
        .bind(s.expires_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn find_session(
        &self,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<Option<SessionRow>, StorageError> {
        let sql = format!(
            "SELECT s.kind, s.tenant_id, t.name AS tenant_name, s.key_id, s.created_at_ms, \
                    s.expires_at_ms, \
                    EXISTS (SELECT 1 FROM api_keys k WHERE k.id = s.key_id \
                            AND k.tenant_id = s.tenant_id AND k.revoked_at_ms IS NULL) AS live, \
                    {AUDITOR_SESSION_COLUMNS} \
               FROM portal_sessions s JOIN tenants t ON t.id = s.tenant_id {AUDITOR_SESSION_JOINS} \
              WHERE s.token_hash = ? AND s.expires_at_ms > ?"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(token_hash)
            .bind(now_ms)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(SessionRow {
                kind: r.try_get("kind")?,
                tenant_id: r.try_get("tenant_id")?,
                tenant_name: r.try_get("tenant_name")?,
                key_id: r.try_get("key_id")?,
                created_at_ms: r.try_get("created_at_ms")?,
                expires_at_ms: r.try_get("expires_at_ms")?,
                api_key_live: r.try_get::<i64, _>("live")? != 0,
                auditor: auditor_key(&r)?,
            })
        })
        .transpose()
    }

    async fn delete_session(&self, token_hash: &str) -> Result<bool, StorageError> {
        let done = sqlx::query("DELETE FROM portal_sessions WHERE token_hash = ?")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_tenant_sessions(&self, tenant_id: &str) -> Result<u64, StorageError> {
        let done = sqlx::query("DELETE FROM portal_sessions WHERE tenant_id = ?")
            .bind(tenant_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn purge_sessions(&self, now_ms: i64) -> Result<u64, StorageError> {
        let done = sqlx::query("DELETE FROM portal_sessions WHERE expires_at_ms <= ?")
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn latest_per_repository(&self) -> Result<Vec<AttestationRow>, StorageError> {
        let rows = sqlx::query(LATEST_PER_REPOSITORY)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(attestation_row)
            .collect::<Result<Vec<_>, _>>()?;
        self.with_subjects(rows).await
    }

    async fn get_attestation(&self, id: &str) -> Result<Option<AttestationRow>, StorageError> {
        let row = sqlx::query(
            "SELECT id, created_at_ms, keyid, builder_id, source_uri, envelope, bundle \
             FROM attestations WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(self
            .with_subjects(vec![attestation_row(&row)?])
            .await?
            .pop())
    }

    async fn usage_by_day(
        &self,
        tenant_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<DailyUsage>, StorageError> {
        let rows = sqlx::query(
            "SELECT (occurred_at_ms - ?2) / 86400000 AS day, event, SUM(units) AS n \
               FROM usage_events \
              WHERE tenant_id = ?1 AND occurred_at_ms >= ?2 AND occurred_at_ms < ?3 \
              GROUP BY day, event ORDER BY day, event",
        )
        .bind(tenant_id)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DailyUsage {
                    day: r.try_get("day")?,
                    event: r.try_get("event")?,
                    units: r.try_get("n")?,
                })
            })
            .collect()
    }
}
