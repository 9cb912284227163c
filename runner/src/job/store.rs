//! Durable job records in SQLite (WAL, versioned migrations under
//! `runner/migrations/`). State changes are conditional updates so that a
//! cancel racing a start, or a restart racing a finish, cannot move a job
//! backwards out of a terminal state. One exception, explicit: a job that
//! failed waiting for the attestor keeps its build record
//! (`attest_record`) and becomes succeeded once that record is signed
//! later ([`JobStore::attested_later`], `cloister-runner attest`).

use super::spec::JobSpec;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::Path;
use std::str::FromStr;

/// Errors of the job store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("job database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("job database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt job record {id}: {message}")]
    Corrupt { id: String, message: String },
}

/// A job's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Preparing,
    Running,
    Attesting,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Preparing => "preparing",
            JobState::Running => "running",
            JobState::Attesting => "attesting",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Succeeded, failed or cancelled: the job will not change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

impl FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "queued" => JobState::Queued,
            "preparing" => JobState::Preparing,
            "running" => JobState::Running,
            "attesting" => JobState::Attesting,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            other => return Err(format!("unknown job state {other:?}")),
        })
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One artifact a job produced, with its provenance files beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Artifact {
    /// The subject name (path relative to the workspace).
    pub name: String,
    /// Where the daemon copied it.
    pub path: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// `<artifact>.intoto.jsonl`.
    pub provenance: String,
    /// `<artifact>.sigstore.json`.
    pub bundle: String,
}

/// What a finished job produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobResult {
    pub artifacts: Vec<Artifact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyid: Option<String>,
    /// The sandbox's result JSON (`cloister-runner run --json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<serde_json::Value>,
    /// Build output the job log's cap discarded, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_dropped_bytes: Option<u64>,
}

/// A job as stored and as the API returns it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRecord {
    pub id: String,
    pub state: JobState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub spec: JobSpec,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<JobResult>,
    /// For a queued job, its place in the start order (1 = next), filled in
    /// by the API from the scheduler; never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<usize>,
}

/// RFC 3339 UTC timestamp with exactly three fractional digits.
pub fn now_rfc3339() -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_default()
}

/// The job database.
#[derive(Debug, Clone)]
pub struct JobStore {
    pool: SqlitePool,
}

macro_rules! columns {
    () => {
        "id, state, reason, spec, created_at, started_at, finished_at, exit_code, result"
    };
}

impl JobStore {
    /// Opens (creating) the database at `path` and applies migrations.
    pub async fn open(path: &Path) -> Result<JobStore, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(JobStore { pool })
    }

    /// Records a new queued job.
    pub async fn insert(&self, id: &str, spec: &JobSpec) -> Result<JobRecord, StoreError> {
        let spec_json = serde_json::to_string(spec).expect("a job spec serializes");
        let created = now_rfc3339();
        sqlx::query("INSERT INTO jobs (id, state, spec, created_at) VALUES (?, 'queued', ?, ?)")
            .bind(id)
            .bind(&spec_json)
            .bind(&created)
            .execute(&self.pool)
            .await?;
        Ok(JobRecord {
            id: id.to_string(),
            state: JobState::Queued,
            reason: None,
            spec: spec.clone(),
            created_at: created,
            started_at: None,
            finished_at: None,
            exit_code: None,
            result: None,
            queue_position: None,
        })
    }

    /// Moves a job from one of `from` to `to`; returns whether it moved.
    pub async fn transition(
        &self,
        id: &str,
        from: &[JobState],
        to: JobState,
    ) -> Result<bool, StoreError> {
        let placeholders = vec!["?"; from.len()].join(", ");
        let started = if to == JobState::Preparing {
            ", started_at = ?"
        } else {
            ""
        };
        let sql = format!(
            "UPDATE jobs SET state = ?{started} WHERE id = ? AND state IN ({placeholders})"
        );
        // Only fixed fragments and `?` placeholders are formatted in.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(to.as_str());
        if to == JobState::Preparing {
            q = q.bind(now_rfc3339());
        }
        q = q.bind(id);
        for s in from {
            q = q.bind(s.as_str());
        }
        Ok(q.execute(&self.pool).await?.rows_affected() == 1)
    }

    /// Ends a job (from any non-terminal state); returns whether it changed.
    pub async fn finish(
        &self,
        id: &str,
        state: JobState,
        reason: Option<&str>,
        exit_code: Option<i64>,
        result: Option<&JobResult>,
    ) -> Result<bool, StoreError> {
        debug_assert!(state.is_terminal());
        let result = result.map(|r| serde_json::to_string(r).expect("a job result serializes"));
        let done = sqlx::query(
            "UPDATE jobs SET state = ?, reason = ?, exit_code = ?, result = ?, finished_at = ? \
             WHERE id = ? AND state NOT IN ('succeeded', 'failed', 'cancelled')",
        )
        .bind(state.as_str())
        .bind(reason)
        .bind(exit_code)
        .bind(result)
        .bind(now_rfc3339())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// One job.
    pub async fn get(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", columns!(), " FROM jobs WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| decode(&r)).transpose()
    }

    /// The most recent `limit` jobs, newest first.
    pub async fn list(&self, limit: u32) -> Result<Vec<JobRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM jobs ORDER BY seq DESC LIMIT ?"
        ))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode).collect()
    }

    /// After a restart: jobs that were in flight are marked failed (their
    /// sandbox died with the old daemon) and returned as (id, reason);
    /// queued jobs are returned in submission order to be run again.
    pub async fn recover(&self) -> Result<(Vec<(String, String)>, Vec<String>), StoreError> {
        let failed: Vec<(String, String)> = sqlx::query_as(
            "UPDATE jobs SET state = 'failed', reason = 'interrupted: the daemon stopped while the job was ' || state, \
             finished_at = ? WHERE state IN ('preparing', 'running', 'attesting') RETURNING id, reason",
        )
        .bind(now_rfc3339())
        .fetch_all(&self.pool)
        .await?;
        let queued: Vec<String> =
            sqlx::query_scalar("SELECT id FROM jobs WHERE state = 'queued' ORDER BY seq")
                .fetch_all(&self.pool)
                .await?;
        Ok((failed, queued))
    }

    /// Keeps the build record a job in `attesting` sends (the exact bytes),
    /// until it is signed or the job ends without its outputs.
    pub async fn set_attest_record(&self, id: &str, record: &[u8]) -> Result<(), StoreError> {
        sqlx::query("UPDATE jobs SET attest_record = ? WHERE id = ?")
            .bind(record)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets a job's kept build record (signed, or its outputs removed).
    pub async fn clear_attest_record(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE jobs SET attest_record = NULL WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The build record of a failed job that can still be attested.
    pub async fn pending_attestation(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row: Option<(Option<Vec<u8>>,)> =
            sqlx::query_as("SELECT attest_record FROM jobs WHERE id = ? AND state = 'failed'")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.and_then(|(r,)| r))
    }

    /// A failed job whose kept record was signed later (`attest`): it
    /// becomes succeeded with `result`, its failure reason cleared. The one
    /// move out of a terminal state, and only from `failed` with a kept
    /// record; returns whether it moved.
    pub async fn attested_later(&self, id: &str, result: &JobResult) -> Result<bool, StoreError> {
        let result = serde_json::to_string(result).expect("a job result serializes");
        let done = sqlx::query(
            "UPDATE jobs SET state = 'succeeded', reason = NULL, result = ?, attest_record = NULL, \
             finished_at = ? WHERE id = ? AND state = 'failed' AND attest_record IS NOT NULL",
        )
        .bind(result)
        .bind(now_rfc3339())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Jobs not ended, per state.
    pub async fn count_active(&self) -> Result<Vec<(JobState, i64)>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT state, COUNT(*) FROM jobs WHERE state IN ('queued', 'preparing', 'running', 'attesting') GROUP BY state",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(s, n)| {
                s.parse()
                    .map(|s| (s, n))
                    .map_err(|message| StoreError::Corrupt {
                        id: "(count)".into(),
                        message,
                    })
            })
            .collect()
    }

    /// Closes the pool (checkpointing the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn decode(row: &sqlx::sqlite::SqliteRow) -> Result<JobRecord, StoreError> {
    let id: String = row.try_get("id")?;
    let corrupt = |message: String| StoreError::Corrupt {
        id: id.clone(),
        message,
    };
    let state: String = row.try_get("state")?;
    let spec: String = row.try_get("spec")?;
    let result: Option<String> = row.try_get("result")?;
    Ok(JobRecord {
        state: state.parse().map_err(corrupt)?,
        reason: row.try_get("reason")?,
        spec: serde_json::from_str(&spec).map_err(|e| corrupt(e.to_string()))?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        exit_code: row.try_get("exit_code")?,
        result: result
            .map(|r| serde_json::from_str(&r))
            .transpose()
            .map_err(|e| corrupt(e.to_string()))?,
        queue_position: None,
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> JobSpec {
        JobSpec::from_json(
            br#"{"source":{"path":"/s","commit":"0123456789abcdef0123456789abcdef01234567","uri":"git+https://x/y","ref":"refs/heads/main"},
                 "command":["true"],"outputs":["o"]}"#,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn restart_keeps_history_and_fails_interrupted_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("jobs.db");
        {
            let store = JobStore::open(&db).await.unwrap();
            for id in ["a", "b", "c", "d"] {
                store.insert(id, &spec()).await.unwrap();
            }
            assert!(
                store
                    .transition("a", &[JobState::Queued], JobState::Preparing)
                    .await
                    .unwrap()
            );
            assert!(
                store
                    .transition("a", &[JobState::Preparing], JobState::Running)
                    .await
                    .unwrap()
            );
            assert!(
                store
                    .transition("b", &[JobState::Queued], JobState::Preparing)
                    .await
                    .unwrap()
            );
            assert!(
                store
                    .finish("b", JobState::Succeeded, None, Some(0), None)
                    .await
                    .unwrap()
            );
            store.close().await;
        }
        let store = JobStore::open(&db).await.unwrap();
        let (failed, queued) = store.recover().await.unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].0, "a");
        assert!(failed[0].1.starts_with("interrupted: "), "{failed:?}");
        assert_eq!(queued, vec!["c".to_string(), "d".to_string()]);
        let a = store.get("a").await.unwrap().unwrap();
        assert_eq!(a.state, JobState::Failed);
        assert!(a.reason.unwrap().contains("interrupted"));
        assert_eq!(
            store.get("b").await.unwrap().unwrap().state,
            JobState::Succeeded
        );
        assert_eq!(store.list(10).await.unwrap().len(), 4);
    }

    /// Issue 20: a failed job with a kept record can become succeeded once
    /// (through `attested_later`); without a record, or twice, it cannot.
    #[tokio::test]
    async fn only_a_failed_job_with_a_kept_record_is_attested_later() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::open(&dir.path().join("jobs.db")).await.unwrap();
        for id in ["kept", "plain"] {
            store.insert(id, &spec()).await.unwrap();
        }
        store.set_attest_record("kept", b"{\"r\":1}").await.unwrap();
        let result = JobResult::default();
        // not failed yet: nothing pending, no move
        assert_eq!(store.pending_attestation("kept").await.unwrap(), None);
        assert!(!store.attested_later("kept", &result).await.unwrap());
        for id in ["kept", "plain"] {
            store
                .finish(
                    id,
                    JobState::Failed,
                    Some("attestor unreachable"),
                    Some(0),
                    None,
                )
                .await
                .unwrap();
        }
        assert_eq!(
            store.pending_attestation("kept").await.unwrap().as_deref(),
            Some(&b"{\"r\":1}"[..])
        );
        assert_eq!(store.pending_attestation("plain").await.unwrap(), None);
        assert!(!store.attested_later("plain", &result).await.unwrap());
        assert!(store.attested_later("kept", &result).await.unwrap());
        let job = store.get("kept").await.unwrap().unwrap();
        assert_eq!((job.state, job.reason), (JobState::Succeeded, None));
        assert!(!store.attested_later("kept", &result).await.unwrap());
        assert_eq!(store.pending_attestation("kept").await.unwrap(), None);
    }

    #[tokio::test]
    async fn terminal_states_do_not_move() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::open(&dir.path().join("jobs.db")).await.unwrap();
        store.insert("a", &spec()).await.unwrap();
        assert!(
            store
                .finish(
                    "a",
                    JobState::Cancelled,
                    Some("cancelled by a client"),
                    None,
                    None
                )
                .await
                .unwrap()
        );
        assert!(
            !store
                .transition("a", &[JobState::Queued], JobState::Preparing)
                .await
                .unwrap()
        );
        assert!(
            !store
                .finish("a", JobState::Succeeded, None, Some(0), None)
                .await
                .unwrap()
        );
        assert_eq!(
            store.get("a").await.unwrap().unwrap().state,
            JobState::Cancelled
        );
    }
}
