//! [`EvidenceStore`] for both backends, from one body of SQL: every query
//! is written with `$N` parameters, which PostgreSQL and sqlx's SQLite
//! driver both bind by number. What differs is passed in: how a write
//! transaction starts (SQLite `BEGIN IMMEDIATE`, so two writers never
//! deadlock on lock upgrade) and the row lock that serializes writes to one
//! engagement on PostgreSQL (`FOR UPDATE`; SQLite's write lock already does).
//! The attestation rows and signing requests the `Storage` backends write
//! and read (`insert_attestation`, `insert_signed`, `find_signed`) come from
//! the same body: `insert_attestation_rows_tx`, `insert_sign_request_tx`,
//! `find_signed_in`.

use super::evidence::*;
use super::postgres::PgStorage;
use super::sqlite::SqliteStorage;
use super::{
    AttestationRow, SignRequest, StorageError, SubjectRow, attach_subjects, attestation_row,
    is_unique_violation,
};
use async_trait::async_trait;
use sqlx::Row as _;

const ENGAGEMENT_COLUMNS: &str = "e.id, e.tag, e.repo, e.auditor, e.tenant_id, e.status, \
     e.opened_at_ms, e.expires_at_ms, e.closed_at_ms, e.pack_sha256, \
     (SELECT COUNT(*) FROM engagement_attestations ea WHERE ea.engagement_id = e.id) AS n_attestations, \
     (SELECT COUNT(*) FROM engagement_notes n WHERE n.engagement_id = e.id) AS n_notes, \
     k.id AS key_id, k.revoked_at_ms AS key_revoked_at_ms, e.client_tenant_id";

/// Frozen-set rows per INSERT (three parameters each; well under SQLite's
/// and PostgreSQL's parameter limits).
const FROZEN_ROWS: usize = 300;

const INDEX_COLUMNS: &str = "attestation_id, envelope_sha256, source_uri, source_ref, builder_id, \
     runner_version, profile_name, profile_digest, seccomp_digest, created_at_ms";

macro_rules! evidence_store {
    ($storage:ty, $db:ty, $begin:literal, $for_update:literal) => {
        impl $storage {
            async fn evidence_tx(&self) -> Result<sqlx::Transaction<'static, $db>, StorageError> {
                Ok(if $begin.is_empty() {
                    self.pool.begin().await?
                } else {
                    self.pool.begin_with($begin).await?
                })
            }
        }

        fn index_row(r: &<$db as sqlx::Database>::Row) -> Result<IndexRow, StorageError> {
            Ok(IndexRow {
                attestation_id: r.try_get("attestation_id")?,
                envelope_sha256: r.try_get("envelope_sha256")?,
                source_uri: r.try_get("source_uri")?,
                source_ref: r.try_get("source_ref")?,
                builder_id: r.try_get("builder_id")?,
                runner_version: r.try_get("runner_version")?,
                profile_name: r.try_get("profile_name")?,
                profile_digest: r.try_get("profile_digest")?,
                seccomp_digest: r.try_get("seccomp_digest")?,
                created_at_ms: r.try_get("created_at_ms")?,
            })
        }

        fn engagement_row(r: &<$db as sqlx::Database>::Row) -> Result<Engagement, StorageError> {
            Ok(Engagement {
                id: r.try_get("id")?,
                tag: r.try_get("tag")?,
                repo: r.try_get("repo")?,
                auditor: r.try_get("auditor")?,
                tenant_id: r.try_get("tenant_id")?,
                status: EngagementStatus::parse(&r.try_get::<String, _>("status")?)?,
                opened_at_ms: r.try_get("opened_at_ms")?,
                expires_at_ms: r.try_get("expires_at_ms")?,
                closed_at_ms: r.try_get("closed_at_ms")?,
                pack_sha256: r.try_get("pack_sha256")?,
                attestations: r.try_get("n_attestations")?,
                notes: r.try_get("n_notes")?,
                key_id: r.try_get("key_id")?,
                key_revoked_at_ms: r.try_get("key_revoked_at_ms")?,
                client_tenant_id: r.try_get("client_tenant_id")?,
            })
        }

        fn pack_row(r: &<$db as sqlx::Database>::Row) -> Result<PackRecord, StorageError> {
            Ok(PackRecord {
                sha256: r.try_get("sha256")?,
                kind: PackKind::parse(&r.try_get::<String, _>("kind")?)?,
                engagement_id: r.try_get("engagement_id")?,
                recipient: r.try_get("recipient")?,
                size_bytes: r.try_get("size_bytes")?,
                time_to_pack_ms: r.try_get("time_to_pack_ms")?,
                created_at_ms: r.try_get("created_at_ms")?,
                envelope: r.try_get("envelope")?,
                content: r.try_get("content")?,
            })
        }

        /// Appends to an engagement's log inside `tx` (the engagement is
        /// locked by the caller), numbering the entry after the last one.
        async fn append_log(
            tx: &mut sqlx::Transaction<'static, $db>,
            id: &str,
            e: &LogWrite,
        ) -> Result<(), StorageError> {
            sqlx::query(
                "INSERT INTO engagement_log (engagement_id, seq, at_ms, actor, action, detail, sha256) \
                 SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5, $6 \
                 FROM engagement_log WHERE engagement_id = $1",
            )
            .bind(id)
            .bind(e.at_ms)
            .bind(&e.actor)
            .bind(e.action)
            .bind(&e.detail)
            .bind(e.sha256.as_deref())
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        /// Locks an engagement for this transaction; its status, or `None`.
        async fn lock_engagement(
            tx: &mut sqlx::Transaction<'static, $db>,
            id: &str,
        ) -> Result<Option<EngagementStatus>, StorageError> {
            let row = sqlx::query(concat!(
                "SELECT status FROM engagements WHERE id = $1",
                $for_update
            ))
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
            row.map(|r| EngagementStatus::parse(&r.try_get::<String, _>("status")?))
                .transpose()
        }

        async fn insert_attestation_tx(
            tx: &mut sqlx::Transaction<'static, $db>,
            a: &AttestationRow,
            ix: &IndexRow,
        ) -> Result<(), StorageError> {
            insert_attestation_rows_tx(tx, a).await?;
            insert_index_tx(tx, ix).await
        }

        /// An attestation and its subjects, inside `tx` (also what the
        /// `Storage` backends' `insert_attestation` and `insert_signed`
        /// write).
        pub(in crate::storage) async fn insert_attestation_rows_tx(
            tx: &mut sqlx::Transaction<'static, $db>,
            a: &AttestationRow,
        ) -> Result<(), StorageError> {
            sqlx::query(
                "INSERT INTO attestations (id, created_at_ms, keyid, builder_id, source_uri, envelope, bundle) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&a.id)
            .bind(a.created_at_ms)
            .bind(&a.keyid)
            .bind(&a.builder_id)
            .bind(&a.source_uri)
            .bind(&a.envelope)
            .bind(&a.bundle)
            .execute(&mut **tx)
            .await?;
            for s in &a.subjects {
                sqlx::query(
                    "INSERT INTO attestation_subjects (attestation_id, name, digest) VALUES ($1, $2, $3) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(&a.id)
                .bind(&s.name)
                .bind(&s.digest)
                .execute(&mut **tx)
                .await?;
            }
            Ok(())
        }

        /// The signing request that produced attestation `attestation_id`,
        /// inside `tx`; one already recorded for the same (builder,
        /// invocation) is a [`StorageError::Conflict`] (dropping `tx` then
        /// rolls the attestation back too).
        pub(in crate::storage) async fn insert_sign_request_tx(
            tx: &mut sqlx::Transaction<'static, $db>,
            attestation_id: &str,
            request: &SignRequest,
        ) -> Result<(), StorageError> {
            let r = sqlx::query(
                "INSERT INTO sign_requests (builder_id, invocation_id, record_sha256, attestation_id) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&request.builder_id)
            .bind(&request.invocation_id)
            .bind(&request.record_sha256)
            .bind(attestation_id)
            .execute(&mut **tx)
            .await;
            match r {
                Ok(_) => Ok(()),
                Err(e) if is_unique_violation(&e) => Err(StorageError::Conflict(format!(
                    "signing request {} of {}",
                    request.invocation_id, request.builder_id
                ))),
                Err(e) => Err(e.into()),
            }
        }

        /// The attestation signed for (builder, invocation) with the
        /// SHA-256 of the record it was signed for (`Storage::find_signed`).
        pub(in crate::storage) async fn find_signed_in(
            pool: &sqlx::Pool<$db>,
            builder_id: &str,
            invocation_id: &str,
        ) -> Result<Option<(String, AttestationRow)>, StorageError> {
            let Some(row) = sqlx::query(
                "SELECT r.record_sha256, a.id, a.created_at_ms, a.keyid, a.builder_id, a.source_uri, \
                 a.envelope, a.bundle \
                 FROM sign_requests r JOIN attestations a ON a.id = r.attestation_id \
                 WHERE r.builder_id = $1 AND r.invocation_id = $2",
            )
            .bind(builder_id)
            .bind(invocation_id)
            .fetch_optional(pool)
            .await?
            else {
                return Ok(None);
            };
            let hash: String = row.try_get("record_sha256")?;
            let mut a = attestation_row(&row)?;
            let subjects: Vec<(String, String)> = sqlx::query_as(
                "SELECT name, digest FROM attestation_subjects \
                 WHERE attestation_id = $1 ORDER BY name, digest",
            )
            .bind(&a.id)
            .fetch_all(pool)
            .await?;
            a.subjects = subjects
                .into_iter()
                .map(|(name, digest)| SubjectRow { name, digest })
                .collect();
            Ok(Some((hash, a)))
        }

        async fn insert_index_tx(
            tx: &mut sqlx::Transaction<'static, $db>,
            r: &IndexRow,
        ) -> Result<(), StorageError> {
            sqlx::query(
                "INSERT INTO evidence_index (attestation_id, envelope_sha256, source_uri, source_ref, \
                 builder_id, runner_version, profile_name, profile_digest, seccomp_digest, created_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
            )
            .bind(&r.attestation_id)
            .bind(&r.envelope_sha256)
            .bind(&r.source_uri)
            .bind(&r.source_ref)
            .bind(&r.builder_id)
            .bind(&r.runner_version)
            .bind(&r.profile_name)
            .bind(&r.profile_digest)
            .bind(&r.seccomp_digest)
            .bind(r.created_at_ms)
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        #[async_trait]
        impl EvidenceStore for $storage {
            async fn unindexed_attestations(
                &self,
                limit: u32,
            ) -> Result<Vec<AttestationRow>, StorageError> {
                let rows = sqlx::query(
                    "SELECT a.id, a.created_at_ms, a.keyid, a.builder_id, a.source_uri, a.envelope, a.bundle \
                     FROM attestations a WHERE NOT EXISTS \
                     (SELECT 1 FROM evidence_index e WHERE e.attestation_id = a.id) \
                     ORDER BY a.id LIMIT $1",
                )
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(attestation_row).collect()
            }

            async fn insert_index(&self, rows: &[IndexRow]) -> Result<(), StorageError> {
                let mut tx = self.evidence_tx().await?;
                for r in rows {
                    insert_index_tx(&mut tx, r).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn indexed_by_ref(
                &self,
                source_ref: &str,
                repo: Option<&str>,
            ) -> Result<Vec<IndexRow>, StorageError> {
                let sql = format!(
                    "SELECT {INDEX_COLUMNS} FROM evidence_index WHERE source_ref = $1 \
                     AND (CAST($2 AS TEXT) IS NULL OR source_uri = CAST($2 AS TEXT)) ORDER BY attestation_id"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(source_ref)
                    .bind(repo)
                    .fetch_all(&self.pool)
                    .await?
                    .iter()
                    .map(index_row)
                    .collect()
            }

            async fn latest_per_repo(&self) -> Result<Vec<IndexRow>, StorageError> {
                let sql = format!(
                    "SELECT {INDEX_COLUMNS} FROM evidence_index WHERE attestation_id IN \
                     (SELECT MAX(attestation_id) FROM evidence_index GROUP BY source_uri) \
                     ORDER BY source_uri"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&self.pool)
                    .await?
                    .iter()
                    .map(index_row)
                    .collect()
            }

            async fn indexed_by_envelope(
                &self,
                envelope_sha256: &str,
            ) -> Result<Vec<IndexRow>, StorageError> {
                let sql = format!(
                    "SELECT {INDEX_COLUMNS} FROM evidence_index WHERE envelope_sha256 = $1 ORDER BY attestation_id"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(envelope_sha256)
                    .fetch_all(&self.pool)
                    .await?
                    .iter()
                    .map(index_row)
                    .collect()
            }

            async fn policy_use(&self, since_ms: i64) -> Result<Vec<PolicyUse>, StorageError> {
                let rows = sqlx::query(
                    "SELECT 'profile' AS kind, profile_digest AS digest, MAX(profile_name) AS name, \
                            COUNT(*) AS n, MAX(created_at_ms) AS last_seen \
                       FROM evidence_index WHERE created_at_ms >= $1 AND profile_digest <> '' \
                      GROUP BY profile_digest \
                     UNION ALL \
                     SELECT 'seccomp' AS kind, seccomp_digest AS digest, '' AS name, \
                            COUNT(*) AS n, MAX(created_at_ms) AS last_seen \
                       FROM evidence_index WHERE created_at_ms >= $1 AND seccomp_digest <> '' \
                      GROUP BY seccomp_digest \
                     ORDER BY kind, digest",
                )
                .bind(since_ms)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(PolicyUse {
                            kind: r.try_get("kind")?,
                            digest: r.try_get("digest")?,
                            name: r.try_get("name")?,
                            attestations: r.try_get("n")?,
                            last_seen_ms: r.try_get("last_seen")?,
                        })
                    })
                    .collect()
            }

            async fn import_attestations(
                &self,
                rows: &[(AttestationRow, IndexRow)],
            ) -> Result<(), StorageError> {
                let mut tx = self.evidence_tx().await?;
                for (a, ix) in rows {
                    insert_attestation_tx(&mut tx, a, ix).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn open_engagement(&self, e: &NewEngagement) -> Result<(), StorageError> {
                let mut tx = self.evidence_tx().await?;
                let t = &e.tenant;
                sqlx::query(
                    "INSERT INTO tenants (id, name, plan, created_at_ms) VALUES ($1, $2, $3, $4)",
                )
                .bind(&t.id)
                .bind(&t.name)
                .bind(t.plan.as_str())
                .bind(t.created_at_ms)
                .execute(&mut *tx)
                .await
                .map_err(|err| {
                    if is_unique_violation(&err) {
                        StorageError::Conflict(format!("tenant {:?}", t.name))
                    } else {
                        err.into()
                    }
                })?;
                sqlx::query(
                    "INSERT INTO engagements (id, tag, repo, auditor, tenant_id, status, opened_at_ms, \
                     expires_at_ms, client_tenant_id) VALUES ($1, $2, $3, $4, $5, 'open', $6, $7, $8)",
                )
                .bind(&e.id)
                .bind(&e.tag)
                .bind(e.repo.as_deref())
                .bind(&e.auditor)
                .bind(&t.id)
                .bind(e.opened_at_ms)
                .bind(e.expires_at_ms)
                .bind(e.client_tenant_id.as_deref())
                .execute(&mut *tx)
                .await?;
                // The frozen set, FROZEN_ROWS rows per statement.
                for chunk in e.attestations.chunks(FROZEN_ROWS) {
                    let values: Vec<String> = (0..chunk.len())
                        .map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
                        .collect();
                    let sql = format!(
                        "INSERT INTO engagement_attestations (engagement_id, attestation_id, envelope_sha256) \
                         VALUES {}",
                        values.join(", ")
                    );
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for a in chunk {
                        q = q.bind(&e.id).bind(&a.attestation_id).bind(&a.envelope_sha256);
                    }
                    q.execute(&mut *tx).await?;
                }
                sqlx::query(
                    "INSERT INTO auditor_keys (id, engagement_id, tenant_id, key_hash, created_at_ms, \
                     expires_at_ms) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&e.key_id)
                .bind(&e.id)
                .bind(&t.id)
                .bind(&e.key_hash)
                .bind(e.opened_at_ms)
                .bind(e.expires_at_ms)
                .execute(&mut *tx)
                .await?;
                let detail = format!(
                    "opened for tag {}{} with {} attestation(s); auditor {}; key {} expires at {} ms",
                    e.tag,
                    e.repo.as_deref().map(|r| format!(" of {r}")).unwrap_or_default(),
                    e.attestations.len(),
                    e.auditor,
                    e.key_id,
                    e.expires_at_ms
                );
                append_log(
                    &mut tx,
                    &e.id,
                    &LogWrite {
                        at_ms: e.opened_at_ms,
                        actor: e.actor.clone(),
                        action: "opened",
                        detail,
                        sha256: None,
                    },
                )
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn engagement(&self, id: &str) -> Result<Option<Engagement>, StorageError> {
                let sql = format!(
                    "SELECT {ENGAGEMENT_COLUMNS} FROM engagements e \
                     JOIN auditor_keys k ON k.engagement_id = e.id WHERE e.id = $1"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
                    .as_ref()
                    .map(engagement_row)
                    .transpose()
            }

            async fn engagements(&self) -> Result<Vec<Engagement>, StorageError> {
                let sql = format!(
                    "SELECT {ENGAGEMENT_COLUMNS} FROM engagements e \
                     JOIN auditor_keys k ON k.engagement_id = e.id ORDER BY e.opened_at_ms DESC, e.id DESC"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&self.pool)
                    .await?
                    .iter()
                    .map(engagement_row)
                    .collect()
            }

            async fn frozen_attestations(
                &self,
                id: &str,
            ) -> Result<Vec<FrozenAttestation>, StorageError> {
                let rows = sqlx::query(
                    "SELECT attestation_id, envelope_sha256 FROM engagement_attestations \
                     WHERE engagement_id = $1 ORDER BY attestation_id",
                )
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(FrozenAttestation {
                            attestation_id: r.try_get("attestation_id")?,
                            envelope_sha256: r.try_get("envelope_sha256")?,
                        })
                    })
                    .collect()
            }

            async fn engagement_attestations(
                &self,
                id: &str,
            ) -> Result<Vec<AttestationRow>, StorageError> {
                let rows = sqlx::query(
                    "SELECT a.id, a.created_at_ms, a.keyid, a.builder_id, a.source_uri, a.envelope, a.bundle \
                     FROM attestations a JOIN engagement_attestations ea ON ea.attestation_id = a.id \
                     WHERE ea.engagement_id = $1 ORDER BY a.id",
                )
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
                let out = rows
                    .iter()
                    .map(attestation_row)
                    .collect::<Result<Vec<_>, _>>()?;
                let subjects = sqlx::query(
                    "SELECT s.attestation_id, s.name, s.digest FROM attestation_subjects s \
                     JOIN engagement_attestations ea ON ea.attestation_id = s.attestation_id \
                     WHERE ea.engagement_id = $1 ORDER BY s.name, s.digest",
                )
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
                attach_subjects(out, &subjects)
            }

            async fn engagement_envelopes(
                &self,
                id: &str,
                digest: &str,
                limit: u32,
            ) -> Result<Vec<String>, StorageError> {
                let rows = sqlx::query(
                    "SELECT a.envelope FROM attestations a \
                     JOIN engagement_attestations ea ON ea.attestation_id = a.id \
                     WHERE ea.engagement_id = $1 AND a.id IN \
                     (SELECT attestation_id FROM attestation_subjects WHERE digest = $2) \
                     ORDER BY a.id DESC LIMIT $3",
                )
                .bind(id)
                .bind(digest)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| Ok(r.try_get("envelope")?))
                    .collect()
            }

            async fn add_note(
                &self,
                id: &str,
                author: &str,
                body: &str,
                sha256: &str,
                at_ms: i64,
                actor: &str,
            ) -> Result<NoteOutcome, StorageError> {
                let mut tx = self.evidence_tx().await?;
                match lock_engagement(&mut tx, id).await? {
                    None => return Ok(NoteOutcome::NotFound),
                    Some(EngagementStatus::SignedOff) => return Ok(NoteOutcome::Closed),
                    Some(EngagementStatus::Open) => {}
                }
                let n: i64 = sqlx::query(
                    "SELECT COUNT(*) AS n FROM engagement_notes WHERE engagement_id = $1",
                )
                .bind(id)
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
                if n >= MAX_NOTES {
                    return Ok(NoteOutcome::Limit);
                }
                let seq = n + 1;
                sqlx::query(
                    "INSERT INTO engagement_notes (engagement_id, seq, author, body, sha256, at_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(id)
                .bind(seq)
                .bind(author)
                .bind(body)
                .bind(sha256)
                .bind(at_ms)
                .execute(&mut *tx)
                .await?;
                append_log(
                    &mut tx,
                    id,
                    &LogWrite {
                        at_ms,
                        actor: actor.to_owned(),
                        action: "note",
                        detail: format!("note {seq} of {MAX_NOTES} by {author} ({} bytes)", body.len()),
                        sha256: Some(sha256.to_owned()),
                    },
                )
                .await?;
                tx.commit().await?;
                Ok(NoteOutcome::Added(Note {
                    seq,
                    author: author.to_owned(),
                    body: body.to_owned(),
                    sha256: sha256.to_owned(),
                    at_ms,
                }))
            }

            async fn notes(&self, id: &str) -> Result<Vec<Note>, StorageError> {
                let rows = sqlx::query(
                    "SELECT seq, author, body, sha256, at_ms FROM engagement_notes \
                     WHERE engagement_id = $1 ORDER BY seq",
                )
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(Note {
                            seq: r.try_get("seq")?,
                            author: r.try_get("author")?,
                            body: r.try_get("body")?,
                            sha256: r.try_get("sha256")?,
                            at_ms: r.try_get("at_ms")?,
                        })
                    })
                    .collect()
            }

            async fn engagement_log(&self, id: &str) -> Result<Vec<LogEntry>, StorageError> {
                let rows = sqlx::query(
                    "SELECT seq, at_ms, actor, action, detail, sha256 FROM engagement_log \
                     WHERE engagement_id = $1 ORDER BY seq",
                )
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(LogEntry {
                            seq: r.try_get("seq")?,
                            at_ms: r.try_get("at_ms")?,
                            actor: r.try_get("actor")?,
                            action: r.try_get("action")?,
                            detail: r.try_get("detail")?,
                            sha256: r.try_get("sha256")?,
                        })
                    })
                    .collect()
            }

            async fn sign_off(&self, id: &str, entry: &LogWrite) -> Result<bool, StorageError> {
                let mut tx = self.evidence_tx().await?;
                if lock_engagement(&mut tx, id).await? != Some(EngagementStatus::Open) {
                    return Ok(false);
                }
                sqlx::query(
                    "UPDATE engagements SET status = 'signed_off', closed_at_ms = $2 \
                     WHERE id = $1 AND status = 'open'",
                )
                .bind(id)
                .bind(entry.at_ms)
                .execute(&mut *tx)
                .await?;
                append_log(&mut tx, id, entry).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn revoke_auditor_key(
                &self,
                id: &str,
                entry: &LogWrite,
            ) -> Result<bool, StorageError> {
                let mut tx = self.evidence_tx().await?;
                if lock_engagement(&mut tx, id).await?.is_none() {
                    return Ok(false);
                }
                let done = sqlx::query(
                    "UPDATE auditor_keys SET revoked_at_ms = $2 \
                     WHERE engagement_id = $1 AND revoked_at_ms IS NULL",
                )
                .bind(id)
                .bind(entry.at_ms)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                append_log(&mut tx, id, entry).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn auditor_key(&self, key_hash: &str) -> Result<Option<AuditorKey>, StorageError> {
                let row = sqlx::query(
                    "SELECT id, engagement_id, tenant_id, created_at_ms, expires_at_ms, revoked_at_ms \
                     FROM auditor_keys WHERE key_hash = $1",
                )
                .bind(key_hash)
                .fetch_optional(&self.pool)
                .await?;
                row.map(|r| {
                    Ok(AuditorKey {
                        id: r.try_get("id")?,
                        engagement_id: r.try_get("engagement_id")?,
                        tenant_id: r.try_get("tenant_id")?,
                        created_at_ms: r.try_get("created_at_ms")?,
                        expires_at_ms: r.try_get("expires_at_ms")?,
                        revoked_at_ms: r.try_get("revoked_at_ms")?,
                    })
                })
                .transpose()
            }

            async fn record_pack(
                &self,
                p: &PackRecord,
                entry: Option<&LogWrite>,
            ) -> Result<(), StorageError> {
                let mut tx = self.evidence_tx().await?;
                if let Some(id) = &p.engagement_id
                    && lock_engagement(&mut tx, id).await?.is_none()
                {
                    return Err(StorageError::NotFound(format!("engagement {id:?}")));
                }
                let done = sqlx::query(
                    "INSERT INTO evidence_packs (sha256, kind, engagement_id, recipient, size_bytes, \
                     time_to_pack_ms, created_at_ms, envelope, content) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
                )
                .bind(&p.sha256)
                .bind(p.kind.as_str())
                .bind(p.engagement_id.as_deref())
                .bind(p.recipient.as_deref())
                .bind(p.size_bytes)
                .bind(p.time_to_pack_ms)
                .bind(p.created_at_ms)
                .bind(&p.envelope)
                .bind(p.content.as_deref())
                .execute(&mut *tx)
                .await?;
                if let Some(id) = &p.engagement_id {
                    sqlx::query("UPDATE engagements SET pack_sha256 = $2 WHERE id = $1")
                        .bind(id)
                        .bind(&p.sha256)
                        .execute(&mut *tx)
                        .await?;
                    if let Some(entry) = entry
                        && done.rows_affected() > 0
                    {
                        append_log(&mut tx, id, entry).await?;
                    }
                }
                tx.commit().await?;
                Ok(())
            }

            async fn pack(&self, sha256: &str) -> Result<Option<PackRecord>, StorageError> {
                sqlx::query(
                    "SELECT sha256, kind, engagement_id, recipient, size_bytes, time_to_pack_ms, \
                     created_at_ms, envelope, content FROM evidence_packs WHERE sha256 = $1",
                )
                .bind(sha256)
                .fetch_optional(&self.pool)
                .await?
                .as_ref()
                .map(pack_row)
                .transpose()
            }

            async fn pack_timings(&self) -> Result<Vec<(String, i64)>, StorageError> {
                let rows = sqlx::query(
                    "SELECT sha256, time_to_pack_ms FROM evidence_packs ORDER BY created_at_ms, sha256",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| Ok((r.try_get("sha256")?, r.try_get("time_to_pack_ms")?)))
                    .collect()
            }
        }
    };
}

pub(super) mod sqlite_impl {
    use super::*;
    evidence_store!(SqliteStorage, sqlx::Sqlite, "BEGIN IMMEDIATE", "");
}

pub(super) mod postgres_impl {
    use super::*;
    evidence_store!(PgStorage, sqlx::Postgres, "", " FOR UPDATE");
}
