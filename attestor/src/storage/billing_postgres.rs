//! [`BillingStore`] on PostgreSQL, for several attestors sharing one
//! database. Orderings that SQLite gets from its single writer are explicit
//! here: a close reads its watermark under `LOCK TABLE usage_events IN
//! SHARE MODE` (in-flight usage batches finish first, new ones wait the few
//! milliseconds of the close), a finalization locks its invoice row and then
//! the series counter row (always in that order, so two finalizers never
//! deadlock; the counter row lock makes numbers gapless across attestors),
//! and deliveries are claimed with `FOR UPDATE SKIP LOCKED` plus a lease.

use super::billing::*;
use super::postgres::PgStorage;
use super::{StorageError, tenant_from};
use async_trait::async_trait;

/// The rating statement; see the SQLite backend. $1 tenant, $2 ranges, $3
/// segments, $4 previous watermark, $5 watermark.
const RATE_SQL: &str = "\
WITH RECURSIVE
kinds(ev) AS (
    SELECT (SELECT min(event) FROM usage_events WHERE tenant_id = $1)
    UNION ALL
    SELECT (SELECT min(event) FROM usage_events WHERE tenant_id = $1 AND event > kinds.ev)
      FROM kinds WHERE kinds.ev IS NOT NULL
),
ranges AS (SELECT * FROM jsonb_to_recordset($2::jsonb) AS x(tag bigint, a bigint, b bigint)),
segs AS (SELECT * FROM jsonb_to_recordset($3::jsonb) AS x(tag bigint, a bigint, b bigint))
SELECT 'r' AS part, r.tag AS tag, k.ev AS event,
       (SELECT sum(u.units)::BIGINT FROM usage_events AS u
         WHERE u.tenant_id = $1 AND u.event = k.ev
           AND u.occurred_at_ms >= r.a AND u.occurred_at_ms < r.b) AS units,
       0::BIGINT AS events,
       (SELECT min(u.occurred_at_ms) FROM usage_events AS u
         WHERE u.tenant_id = $1 AND u.event = k.ev
           AND u.occurred_at_ms >= r.a AND u.occurred_at_ms < r.b) AS first_ms,
       (SELECT max(u.occurred_at_ms) FROM usage_events AS u
         WHERE u.tenant_id = $1 AND u.event = k.ev
           AND u.occurred_at_ms >= r.a AND u.occurred_at_ms < r.b) AS last_ms
  FROM kinds AS k, ranges AS r
 WHERE k.ev IS NOT NULL
UNION ALL
SELECT 'l', s.tag, e.event, sum(e.units)::BIGINT, count(*)::BIGINT,
       min(e.occurred_at_ms), max(e.occurred_at_ms)
  FROM usage_late AS l
  JOIN usage_events AS e ON e.id = l.event_id
  JOIN segs AS s ON e.occurred_at_ms >= s.a AND e.occurred_at_ms < s.b
 WHERE l.tenant_id = $1 AND l.event_id > $4 AND l.event_id <= $5
 GROUP BY s.tag, e.event
UNION ALL
SELECT 'a', r.tag, e.event, sum(e.units)::BIGINT, count(*)::BIGINT,
       min(e.occurred_at_ms), max(e.occurred_at_ms)
  FROM usage_late AS l
  JOIN usage_events AS e ON e.id = l.event_id
  JOIN ranges AS r ON e.occurred_at_ms >= r.a AND e.occurred_at_ms < r.b
 WHERE l.tenant_id = $1 AND l.event_id > $5
 GROUP BY r.tag, e.event";

#[async_trait]
impl BillingStore for PgStorage {
    async fn plan_history(&self, tenant_id: &str) -> Result<Vec<PlanChange>, BillingStoreError> {
        let rows = sqlx::query(
            "SELECT plan, effective_at_ms, recorded_at_ms FROM plan_changes \
             WHERE tenant_id = $1 ORDER BY effective_at_ms, id",
        )
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PlanChange {
                    plan: r.string("plan")?,
                    effective_at_ms: r.i64_("effective_at_ms")?,
                    recorded_at_ms: r.i64_("recorded_at_ms")?,
                })
            })
            .collect()
    }

    async fn plan_histories(
        &self,
    ) -> Result<std::collections::BTreeMap<String, Vec<PlanChange>>, BillingStoreError> {
        let rows = sqlx::query(
            "SELECT tenant_id, plan, effective_at_ms, recorded_at_ms FROM plan_changes \
             ORDER BY tenant_id, effective_at_ms, id",
        )
        .fetch_all(&self.pool)
        .await?;
        histories_from(&rows)
    }

    async fn change_plan(
        &self,
        tenant_id: &str,
        plan: &str,
        at_ms: i64,
    ) -> Result<(), BillingStoreError> {
        let mut tx = self.pool.begin().await?;
        let found: Option<String> =
            sqlx::query_scalar("SELECT id FROM tenants WHERE id = $1 FOR UPDATE")
                .bind(tenant_id)
                .fetch_optional(&mut *tx)
                .await?;
        if found.is_none() {
            return Err(BillingStoreError::NotFound(format!("tenant {tenant_id:?}")));
        }
        let last: Option<i64> = sqlx::query_scalar(
            "SELECT max(effective_at_ms) FROM plan_changes WHERE tenant_id = $1",
        )
        .bind(tenant_id)
        .fetch_one(&mut *tx)
        .await?;
        if last.is_some_and(|l| l > at_ms) {
            return Err(BillingStoreError::Refused(
                "a plan change cannot take effect before the tenant's last one".into(),
            ));
        }
        sqlx::query("UPDATE tenants SET plan = $1 WHERE id = $2")
            .bind(plan)
            .bind(tenant_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO plan_changes (tenant_id, plan, effective_at_ms, recorded_at_ms) \
             VALUES ($1, $2, $3, $3)",
        )
        .bind(tenant_id)
        .bind(plan)
        .bind(at_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn usage_watermark(&self) -> Result<i64, BillingStoreError> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(max(id), 0)::BIGINT FROM usage_events")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn open_closes(
        &self,
        specs: &[CloseSpec],
        at_ms: i64,
    ) -> Result<Vec<CloseOpened>, BillingStoreError> {
        let mut tx = self.pool.begin().await?;
        // Waits for in-flight usage batches and holds new ones back until
        // commit: every id up to the watermark has committed, every later
        // insert sees these closes (the late-marking trigger).
        sqlx::query("LOCK TABLE usage_events IN SHARE MODE")
            .execute(&mut *tx)
            .await?;
        let watermark: i64 =
            sqlx::query_scalar("SELECT COALESCE(max(id), 0)::BIGINT FROM usage_events")
                .fetch_one(&mut *tx)
                .await?;
        let mut out = Vec::with_capacity(specs.len());
        for spec in specs {
            // Two closers of one tenant and period: the second waits on the
            // unique key, then finds the first's row.
            let existing = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {CLOSE_COLUMNS} FROM billing_closes WHERE tenant_id = $1 AND period = $2"
            )))
            .bind(&spec.tenant_id)
            .bind(&spec.period)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(r) = existing {
                out.push(CloseOpened::Existing(close_from(&r)?));
                continue;
            }
            let last = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {CLOSE_COLUMNS} FROM billing_closes WHERE tenant_id = $1 \
                 ORDER BY end_ms DESC, id DESC LIMIT 1"
            )))
            .bind(&spec.tenant_id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| close_from(&r))
            .transpose()?;
            // Read committed: a concurrent closer of this tenant and period
            // can commit between the two reads above; its row is then the
            // latest close, and this close is the existing one, not a refusal.
            if let Some(l) = last.as_ref().filter(|l| l.period == spec.period) {
                out.push(CloseOpened::Existing(l.clone()));
                continue;
            }
            let mut row = match plan_close(spec, last.as_ref(), watermark, at_ms) {
                Ok(row) => row,
                Err(reason) => {
                    out.push(CloseOpened::Refused {
                        tenant_id: spec.tenant_id.clone(),
                        reason,
                    });
                    continue;
                }
            };
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO billing_closes (tenant_id, period, start_ms, end_ms, prev_end_ms, \
                 prev_watermark, watermark, early, closed_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (tenant_id, period) DO NOTHING RETURNING id",
            )
            .bind(&row.tenant_id)
            .bind(&row.period)
            .bind(row.start_ms)
            .bind(row.end_ms)
            .bind(row.prev_end_ms)
            .bind(row.prev_watermark)
            .bind(row.watermark)
            .bind(i64::from(row.early))
            .bind(row.closed_at_ms)
            .fetch_optional(&mut *tx)
            .await?;
            match id {
                Some(id) => {
                    row.id = id;
                    out.push(CloseOpened::New(row));
                }
                None => {
                    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SELECT {CLOSE_COLUMNS} FROM billing_closes WHERE tenant_id = $1 AND period = $2"
                    )))
                    .bind(&spec.tenant_id)
                    .bind(&spec.period)
                    .fetch_one(&mut *tx)
                    .await?;
                    out.push(CloseOpened::Existing(close_from(&r)?));
                }
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn closes(
        &self,
        period: &str,
        tenant_id: Option<&str>,
    ) -> Result<Vec<CloseRow>, BillingStoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CLOSE_COLUMNS} FROM billing_closes \
             WHERE period = $1 AND ($2::text IS NULL OR tenant_id = $2) ORDER BY tenant_id"
        )))
        .bind(period)
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(close_from).collect::<Result<_, _>>()?)
    }

    async fn last_close(&self, tenant_id: &str) -> Result<Option<CloseRow>, BillingStoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CLOSE_COLUMNS} FROM billing_closes WHERE tenant_id = $1 \
             ORDER BY end_ms DESC, id DESC LIMIT 1"
        )))
        .bind(tenant_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(close_from).transpose()?)
    }

    async fn rate(&self, q: &RatingQuery<'_>) -> Result<Vec<RatedRow>, BillingStoreError> {
        let rows = sqlx::query(RATE_SQL)
            .bind(q.tenant_id)
            .bind(ranges_json(q.ranges))
            .bind(ranges_json(q.segments))
            .bind(q.prev_watermark)
            .bind(q.watermark)
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            if let Some(row) = rated_from(r)? {
                out.push(row);
            }
        }
        Ok(out)
    }

    async fn upsert_draft(&self, d: &NewDraft) -> Result<DraftOutcome, BillingStoreError> {
        let mut tx = self.pool.begin().await?;
        let id: Option<String> = sqlx::query_scalar(
            "INSERT INTO invoices (id, tenant_id, close_id, period, status, draft, total_micros, created_at_ms) \
             VALUES ($1, $2, $3, $4, 'draft', $5, $6, $7) \
             ON CONFLICT (close_id) WHERE status <> 'void' DO UPDATE SET \
               draft = excluded.draft, total_micros = excluded.total_micros \
             WHERE invoices.status = 'draft' \
             RETURNING id",
        )
        .bind(&d.id)
        .bind(&d.tenant_id)
        .bind(d.close_id)
        .bind(&d.period)
        .bind(&d.draft)
        .bind(d.total_micros)
        .bind(d.created_at_ms)
        .fetch_optional(&mut *tx)
        .await?;
        let out = match id {
            Some(id) => DraftOutcome::Draft(id),
            None => {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {INVOICE_COLUMNS} FROM invoices WHERE close_id = $1 AND status <> 'void'"
                )))
                .bind(d.close_id)
                .fetch_one(&mut *tx)
                .await?;
                DraftOutcome::Issued(Box::new(invoice_from(&row)?))
            }
        };
        tx.commit().await?;
        Ok(out)
    }

    async fn finalize(
        &self,
        invoice_id: &str,
        series: &str,
        at_ms: i64,
        build: &BuildDocs<'_>,
    ) -> Result<FinalizeOutcome, BillingStoreError> {
        let mut tx = self.pool.begin().await?;
        // The invoice row first, then the counter row: one order for every
        // finalizer.
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INVOICE_COLUMNS} FROM invoices WHERE id = $1 FOR UPDATE"
        )))
        .bind(invoice_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| BillingStoreError::NotFound(format!("invoice {invoice_id:?}")))?;
        let invoice = invoice_from(&row)?;
        if invoice.status != InvoiceStatus::Draft {
            return Ok(FinalizeOutcome::AlreadyIssued(invoice));
        }
        let tenant = sqlx::query("SELECT id, name, plan, created_at_ms FROM tenants WHERE id = $1")
            .bind(&invoice.tenant_id)
            .fetch_one(&mut *tx)
            .await?;
        let tenant = tenant_from(&tenant)?;
        sqlx::query(
            "INSERT INTO invoice_counters (series, last_value) VALUES ($1, 0) ON CONFLICT DO NOTHING",
        )
        .bind(series)
        .execute(&mut *tx)
        .await?;
        let seq: i64 = sqlx::query_scalar(
            "UPDATE invoice_counters SET last_value = last_value + 1 WHERE series = $1 RETURNING last_value",
        )
        .bind(series)
        .fetch_one(&mut *tx)
        .await?;
        let number = format!("{series}{seq:06}");
        let endpoints: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM webhook_endpoints WHERE tenant_id = $1 AND enabled = 1",
        )
        .bind(&invoice.tenant_id)
        .fetch_one(&mut *tx)
        .await?;
        let docs = build(&FinalizeInput {
            number: &number,
            finalized_at_ms: at_ms,
            tenant: &tenant,
            invoice: &invoice,
            endpoints: usize::try_from(endpoints).unwrap_or(0),
        })
        .map_err(BillingStoreError::Build)?;
        let done = sqlx::query(
            "UPDATE invoices SET status = 'finalized', series = $1, seq = $2, number = $3, \
             finalized_at_ms = $4, document = $5, sha256 = $6, envelope = $7 \
             WHERE id = $8 AND status = 'draft'",
        )
        .bind(series)
        .bind(seq)
        .bind(&number)
        .bind(at_ms)
        .bind(&docs.document)
        .bind(&docs.sha256)
        .bind(&docs.envelope)
        .bind(invoice_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StorageError::Corrupt(format!(
                "invoice {invoice_id} changed under its lock"
            ))
            .into());
        }
        let mut deliveries = 0;
        if let Some(m) = &docs.message {
            sqlx::query(
                "INSERT INTO webhook_messages (id, tenant_id, event_type, payload, created_at_ms) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&m.id)
            .bind(&invoice.tenant_id)
            .bind(&m.event_type)
            .bind(&m.payload)
            .bind(at_ms)
            .execute(&mut *tx)
            .await?;
            deliveries = sqlx::query(
                "INSERT INTO webhook_outbox (message_id, endpoint_id, tenant_id, state, attempts, \
                 next_attempt_at_ms, created_at_ms) \
                 SELECT $1, id, tenant_id, 'pending', 0, $4, $2 FROM webhook_endpoints \
                 WHERE tenant_id = $3 AND enabled = 1 ORDER BY id",
            )
            .bind(&m.id)
            .bind(at_ms)
            .bind(&invoice.tenant_id)
            .bind(m.first_attempt_at_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INVOICE_COLUMNS} FROM invoices WHERE id = $1"
        )))
        .bind(invoice_id)
        .fetch_one(&mut *tx)
        .await?;
        let invoice = invoice_from(&row)?;
        tx.commit().await?;
        Ok(FinalizeOutcome::Finalized {
            invoice,
            deliveries,
        })
    }

    async fn void_invoice(
        &self,
        number: &str,
        reason: &str,
        at_ms: i64,
    ) -> Result<InvoiceRow, BillingStoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INVOICE_COLUMNS} FROM invoices WHERE number = $1 OR id = $1 FOR UPDATE"
        )))
        .bind(number)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| BillingStoreError::NotFound(format!("invoice {number:?}")))?;
        let invoice = invoice_from(&row)?;
        check_voidable(&invoice, number)?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE invoices SET status = 'void', voided_at_ms = $1, void_reason = $2 WHERE id = $3 \
             RETURNING {INVOICE_COLUMNS}"
        )))
        .bind(at_ms)
        .bind(reason)
        .bind(&invoice.id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(invoice_from(&row)?)
    }

    async fn invoices(&self, f: &InvoiceFilter<'_>) -> Result<Vec<InvoiceRow>, BillingStoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INVOICE_COLUMNS} FROM invoices \
             WHERE ($1::text IS NULL OR tenant_id = $1) AND ($2::text IS NULL OR period = $2) \
               AND ($3 OR status <> 'draft') \
             ORDER BY number IS NULL, number, created_at_ms, id"
        )))
        .bind(f.tenant_id)
        .bind(f.period)
        .bind(f.include_drafts)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(invoice_from).collect::<Result<_, _>>()?)
    }

    async fn invoice_by_number(
        &self,
        number: &str,
    ) -> Result<Option<InvoiceRow>, BillingStoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INVOICE_COLUMNS} FROM invoices WHERE number = $1"
        )))
        .bind(number)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(invoice_from).transpose()?)
    }

    async fn live_invoice(&self, close_id: i64) -> Result<Option<InvoiceRow>, BillingStoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INVOICE_COLUMNS} FROM invoices WHERE close_id = $1 AND status <> 'void'"
        )))
        .bind(close_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(invoice_from).transpose()?)
    }

    async fn store_pdf(
        &self,
        invoice_id: &str,
        pdf: &[u8],
        sha256: &str,
    ) -> Result<(), BillingStoreError> {
        sqlx::query(
            "INSERT INTO invoice_pdfs (invoice_id, pdf, sha256) VALUES ($1, $2, $3) \
             ON CONFLICT (invoice_id) DO NOTHING",
        )
        .bind(invoice_id)
        .bind(pdf)
        .bind(sha256)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn pdf(&self, invoice_id: &str) -> Result<Option<Vec<u8>>, BillingStoreError> {
        Ok(
            sqlx::query_scalar("SELECT pdf FROM invoice_pdfs WHERE invoice_id = $1")
                .bind(invoice_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn add_endpoint(&self, e: &EndpointRow) -> Result<(), BillingStoreError> {
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, tenant_id, url, secret, enabled, disabled_reason, \
             created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&e.id)
        .bind(&e.tenant_id)
        .bind(&e.url)
        .bind(&e.secret)
        .bind(i64::from(e.enabled))
        .bind(&e.disabled_reason)
        .bind(e.created_at_ms)
        .bind(e.updated_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn endpoints(
        &self,
        tenant_id: Option<&str>,
    ) -> Result<Vec<EndpointRow>, BillingStoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints \
             WHERE $1::text IS NULL OR tenant_id = $1 ORDER BY tenant_id, created_at_ms, id"
        )))
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(endpoint_from).collect::<Result<_, _>>()?)
    }

    async fn set_endpoint_enabled(
        &self,
        id: &str,
        enabled: bool,
        reason: Option<&str>,
        at_ms: i64,
    ) -> Result<EndpointRow, BillingStoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE webhook_endpoints SET enabled = $1, disabled_reason = $2, updated_at_ms = $3 \
             WHERE id = $4 RETURNING {ENDPOINT_COLUMNS}"
        )))
        .bind(i64::from(enabled))
        .bind(if enabled { None } else { reason })
        .bind(at_ms)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| BillingStoreError::NotFound(format!("webhook endpoint {id:?}")))?;
        if !enabled {
            sqlx::query(
                "UPDATE webhook_outbox SET state = 'dead', dead_at_ms = $1, lease_owner = NULL, \
                 lease_until_ms = NULL, last_error = $2 WHERE endpoint_id = $3 AND state = 'pending'",
            )
            .bind(at_ms)
            .bind(format!(
                "endpoint disabled: {}",
                reason.unwrap_or("by the operator")
            ))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(endpoint_from(&row)?)
    }

    async fn claim_deliveries(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<Claimed>, BillingStoreError> {
        // SKIP LOCKED: concurrent claimers take disjoint rows; the lease
        // keeps a claimed row from being claimed again until it expires.
        let rows = sqlx::query(
            "WITH c AS ( \
               SELECT o.id FROM webhook_outbox AS o \
                 JOIN webhook_endpoints AS e ON e.id = o.endpoint_id \
                WHERE o.state = 'pending' AND o.next_attempt_at_ms <= $2 \
                  AND (o.lease_until_ms IS NULL OR o.lease_until_ms <= $2) AND e.enabled = 1 \
                ORDER BY o.next_attempt_at_ms, o.id LIMIT $4 \
                FOR UPDATE OF o SKIP LOCKED) \
             UPDATE webhook_outbox AS o SET lease_owner = $1, lease_until_ms = $2 + $3 \
               FROM c, webhook_messages AS m, webhook_endpoints AS e \
              WHERE o.id = c.id AND m.id = o.message_id AND e.id = o.endpoint_id \
             RETURNING o.id, o.message_id, o.endpoint_id, o.tenant_id, e.url, e.secret, m.payload, \
                       o.attempts, o.next_attempt_at_ms",
        )
        .bind(owner)
        .bind(now_ms)
        .bind(lease_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut out = rows
            .iter()
            .map(|r| Ok((r.i64_("next_attempt_at_ms")?, claimed_from(r)?)))
            .collect::<Result<Vec<_>, StorageError>>()?;
        out.sort_by_key(|(next, c)| (*next, c.outbox_id));
        Ok(out.into_iter().map(|(_, c)| c).collect())
    }

    async fn complete_deliveries(
        &self,
        owner: &str,
        results: &[AttemptResult],
        now_ms: i64,
    ) -> Result<u64, BillingStoreError> {
        if results.is_empty() {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO webhook_deliveries (outbox_id, attempt, attempted_at_ms, duration_ms, \
             status_code, error, worker) \
             SELECT x.o, x.n, x.at, x.d, x.s, x.e, $2 \
               FROM jsonb_to_recordset($1::jsonb) AS x(o bigint, n bigint, at bigint, d bigint, s bigint, e text)",
        )
        .bind(attempts_json(results))
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        let updated = sqlx::query(
            "UPDATE webhook_outbox AS o SET state = x.state, attempts = x.attempts, \
               next_attempt_at_ms = x.next, last_status = x.status, last_error = x.error, \
               delivered_at_ms = x.delivered, dead_at_ms = x.dead, lease_owner = NULL, lease_until_ms = NULL \
               FROM jsonb_to_recordset($1::jsonb) AS x(id bigint, state text, attempts bigint, \
                    next bigint, status bigint, error text, delivered bigint, dead bigint) \
              WHERE o.id = x.id AND o.lease_owner = $2 AND o.state = 'pending'",
        )
        .bind(completion_json(results, now_ms))
        .bind(owner)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        for r in results.iter().filter(|r| r.next == Next::DisableEndpoint) {
            sqlx::query(
                "UPDATE webhook_endpoints SET enabled = 0, disabled_reason = $1, updated_at_ms = $2 \
                 WHERE id = $3",
            )
            .bind("the receiver answered 410 Gone")
            .bind(now_ms)
            .bind(&r.endpoint_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE webhook_outbox SET state = 'dead', dead_at_ms = $1, lease_owner = NULL, \
                 lease_until_ms = NULL, last_error = 'endpoint disabled: the receiver answered 410 Gone' \
                 WHERE endpoint_id = $2 AND state = 'pending'",
            )
            .bind(now_ms)
            .bind(&r.endpoint_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(updated)
    }

    async fn outbox(&self, f: &OutboxFilter<'_>) -> Result<Vec<OutboxRow>, BillingStoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{OUTBOX_SELECT} WHERE ($1::text IS NULL OR o.tenant_id = $1) \
               AND ($2::text IS NULL OR o.state = $2) \
               AND ($3::bigint IS NULL OR o.created_at_ms >= $3) \
             ORDER BY o.created_at_ms, o.id LIMIT $4"
        )))
        .bind(f.tenant_id)
        .bind(f.state)
        .bind(f.since_ms)
        .bind(i64::from(f.limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(outbox_from).collect::<Result<_, _>>()?)
    }

    async fn replay_dead(
        &self,
        tenant_id: Option<&str>,
        since_ms: i64,
        now_ms: i64,
    ) -> Result<u64, BillingStoreError> {
        let done = sqlx::query(
            "UPDATE webhook_outbox SET state = 'pending', attempts = 0, next_attempt_at_ms = $3, \
               dead_at_ms = NULL, lease_owner = NULL, lease_until_ms = NULL \
             WHERE state = 'dead' AND created_at_ms >= $2 AND ($1::text IS NULL OR tenant_id = $1) \
               AND endpoint_id IN (SELECT id FROM webhook_endpoints WHERE enabled = 1)",
        )
        .bind(tenant_id)
        .bind(since_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn delivery_log(
        &self,
        tenant_id: Option<&str>,
        message_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeliveryLogRow>, BillingStoreError> {
        let rows = sqlx::query(
            "SELECT d.outbox_id, o.message_id, o.endpoint_id, d.attempt, d.attempted_at_ms, \
                    d.duration_ms, d.status_code, d.error, d.worker \
               FROM webhook_deliveries AS d JOIN webhook_outbox AS o ON o.id = d.outbox_id \
              WHERE ($1::text IS NULL OR o.tenant_id = $1) AND ($2::text IS NULL OR o.message_id = $2) \
              ORDER BY d.id DESC LIMIT $3",
        )
        .bind(tenant_id)
        .bind(message_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(log_from).collect::<Result<_, _>>()?)
    }

    async fn stats(&self) -> Result<BillingStats, BillingStoreError> {
        let row = sqlx::query(
            "SELECT \
               (SELECT count(*) FROM invoices WHERE status = 'draft') AS draft, \
               (SELECT count(*) FROM invoices WHERE status = 'finalized') AS finalized, \
               (SELECT count(*) FROM invoices WHERE status = 'void') AS void, \
               (SELECT count(*) FROM webhook_outbox WHERE state = 'pending') AS pending, \
               (SELECT count(*) FROM webhook_outbox WHERE state = 'delivered') AS delivered, \
               (SELECT count(*) FROM webhook_outbox WHERE state = 'dead') AS dead, \
               (SELECT min(created_at_ms) FROM webhook_outbox WHERE state = 'pending') AS oldest",
        )
        .fetch_one(&self.pool)
        .await?;
        stats_from(&row)
    }
}
