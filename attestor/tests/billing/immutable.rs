//! An issued invoice never changes: every storage path that could change
//! it is refused by the schema itself (raw SQL, as any other program with
//! the database's credentials would run it), on both backends, and the
//! storage API refuses the transitions the life cycle does not allow.
//! Afterwards the invoice, its PDF and the counter are exactly as before.

use super::golden::issue_golden;
use super::*;
use crate::both_backends;
use crate::support::{Backend, TestDb};
use cloister_attestor::storage::billing::{
    BillingStoreError, CloseSpec, DraftOutcome, FinalDocs, FinalizeOutcome, NewDraft,
};

both_backends!(issued_invoices_cannot_change_by_any_path);

/// Runs one statement on a fresh connection; the database's error text.
async fn raw(db: &TestDb, sql: &str) -> Result<(), String> {
    match db.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            let r = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&pool)
                .await;
            pool.close().await;
            r.map(|_| ()).map_err(|e| e.to_string())
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            let r = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&pool)
                .await;
            pool.close().await;
            r.map(|_| ()).map_err(|e| e.to_string())
        }
    }
}

async fn issued_invoices_cannot_change_by_any_path(b: Backend) {
    let db = TestDb::new(b).await;
    let s = db.open().await;
    let n = issue_golden(s.as_ref()).await;
    let before = s.billing().invoice_by_number(&n).await.unwrap().unwrap();
    let pdf_before = s.billing().pdf(&before.id).await.unwrap().unwrap();
    // A draft of another tenant, to check the draft rules too.
    tenant(s.as_ref(), "tn_draft", Plan::Pro, "2026-10-01T00:00:00Z").await;
    let close = match &s
        .billing()
        .open_closes(
            &[CloseSpec {
                tenant_id: "tn_draft".into(),
                period: "2026-11".into(),
                month_start_ms: ms("2026-11-01T00:00:00Z"),
                end_ms: ms("2026-12-01T00:00:00Z"),
                early: false,
            }],
            ms("2026-12-01T10:00:00Z"),
        )
        .await
        .unwrap()[0]
    {
        cloister_attestor::storage::billing::CloseOpened::New(c) => c.clone(),
        other => panic!("{other:?}"),
    };
    let DraftOutcome::Draft(draft_id) = s
        .billing()
        .upsert_draft(&NewDraft {
            id: "inv_draft".into(),
            tenant_id: "tn_draft".into(),
            close_id: close.id,
            period: "2026-11".into(),
            draft: "{}".into(),
            total_micros: 5,
            created_at_ms: 1,
        })
        .await
        .unwrap()
    else {
        panic!("a new draft")
    };

    let refused: Vec<String> = vec![
        format!("UPDATE invoices SET total_micros = total_micros + 1 WHERE number = '{n}'"),
        format!("UPDATE invoices SET document = '{{}}' WHERE number = '{n}'"),
        format!("UPDATE invoices SET sha256 = 'x', envelope = 'y' WHERE number = '{n}'"),
        format!("UPDATE invoices SET number = 'CLO-2026-999999' WHERE number = '{n}'"),
        format!("UPDATE invoices SET finalized_at_ms = 1 WHERE number = '{n}'"),
        format!(
            "UPDATE invoices SET status = 'draft', number = NULL, series = NULL, seq = NULL WHERE number = '{n}'"
        ),
        format!("DELETE FROM invoices WHERE number = '{n}'"),
        // Voiding may change the void columns, nothing else.
        format!(
            "UPDATE invoices SET status = 'void', voided_at_ms = 1, void_reason = 'x', total_micros = 0 WHERE number = '{n}'"
        ),
        // Born issued, or finalized with a number the counter did not give.
        "INSERT INTO invoices (id, tenant_id, close_id, period, status, draft, total_micros, created_at_ms, \
         series, seq, number, finalized_at_ms, document, sha256, envelope) \
         SELECT 'inv_x', tenant_id, close_id, period, 'finalized', draft, 1, 1, 'CLO-2026-', 77, \
         'CLO-2026-000077', 1, '{}', 'x', '{}' FROM invoices LIMIT 1"
            .to_owned(),
        format!(
            "UPDATE invoices SET status = 'finalized', series = 'CLO-2026-', seq = 99, number = 'CLO-2026-000099', \
             finalized_at_ms = 1, document = '{{}}', sha256 = 'x', envelope = '{{}}' WHERE id = '{draft_id}'"
        ),
        format!(
            "UPDATE invoices SET status = 'void', voided_at_ms = 1, void_reason = 'x' WHERE id = '{draft_id}'"
        ),
        // The PDF.
        format!("UPDATE invoice_pdfs SET sha256 = 'x' WHERE invoice_id = '{}'", before.id),
        format!("DELETE FROM invoice_pdfs WHERE invoice_id = '{}'", before.id),
        format!("INSERT INTO invoice_pdfs (invoice_id, pdf, sha256) VALUES ('{draft_id}', x'00', 'x')")
            .replace("x'00'", if b == Backend::Sqlite { "x'00'" } else { "'\\x00'::bytea" }),
        // The counter steps by one, never back, never twice.
        "UPDATE invoice_counters SET last_value = last_value - 1".to_owned(),
        "UPDATE invoice_counters SET last_value = last_value + 2".to_owned(),
        "DELETE FROM invoice_counters".to_owned(),
        "INSERT INTO invoice_counters (series, last_value) VALUES ('CLO-2027-', 5)".to_owned(),
        // Closes, plan history and webhook messages are records.
        "UPDATE billing_closes SET watermark = 0".to_owned(),
        "DELETE FROM billing_closes".to_owned(),
        "UPDATE plan_changes SET plan = 'Enterprise'".to_owned(),
        "DELETE FROM plan_changes".to_owned(),
    ];
    for sql in &refused {
        let err = raw(&db, sql)
            .await
            .expect_err(&format!("storage accepted: {sql}"));
        assert!(err.contains("immutable"), "{sql}: {err}");
    }
    if b == Backend::Postgres {
        let err = raw(&db, "TRUNCATE invoice_counters").await.unwrap_err();
        assert!(err.contains("immutable"), "{err}");
    }

    // The API refuses the transitions the life cycle does not allow.
    match s.billing().void_invoice(&draft_id, "x", 5).await {
        Err(BillingStoreError::Refused(m)) => assert!(m.contains("draft"), "{m}"),
        other => panic!("voided a draft: {other:?}"),
    }
    match s
        .billing()
        .finalize(&before.id, "CLO-2026-", 5, &|_| -> Result<
            FinalDocs,
            String,
        > {
            panic!("no documents are built for an issued invoice")
        })
        .await
        .unwrap()
    {
        FinalizeOutcome::AlreadyIssued(inv) => assert_eq!(inv, before),
        other => panic!("{other:?}"),
    }
    // A failing builder leaves the draft a draft and the counter where it was.
    let err = s
        .billing()
        .finalize(&draft_id, "CLO-2026-", 5, &|_| Err("no key".to_owned()))
        .await
        .unwrap_err();
    assert!(matches!(err, BillingStoreError::Build(_)), "{err}");

    // Everything is as it was; the next number is still 2.
    let after = s.billing().invoice_by_number(&n).await.unwrap().unwrap();
    assert_eq!(after, before);
    assert_eq!(
        s.billing().pdf(&before.id).await.unwrap().unwrap(),
        pdf_before
    );
    s.billing().void_invoice(&n, "test", 10).await.unwrap();
    match s.billing().void_invoice(&n, "again", 11).await {
        Err(BillingStoreError::Refused(m)) => assert!(m.contains("already void"), "{m}"),
        other => panic!("voided twice: {other:?}"),
    }
    for sql in [
        format!("UPDATE invoices SET void_reason = 'other' WHERE number = '{n}'"),
        format!(
            "UPDATE invoices SET status = 'finalized', voided_at_ms = NULL, void_reason = NULL WHERE number = '{n}'"
        ),
    ] {
        let err = raw(&db, &sql).await.expect_err(&sql);
        assert!(err.contains("immutable"), "{sql}: {err}");
    }
    let voided = s.billing().invoice_by_number(&n).await.unwrap().unwrap();
    assert_eq!(voided.document, before.document);
    assert_eq!(voided.void_reason.as_deref(), Some("test"));
    let finalized = s
        .billing()
        .finalize(&draft_id, "CLO-2026-", 20, &|i| {
            Ok(FinalDocs {
                document: format!("{{\"n\":\"{}\"}}", i.number),
                sha256: "s".into(),
                envelope: "{}".into(),
                message: None,
            })
        })
        .await
        .unwrap();
    assert!(
        matches!(&finalized, FinalizeOutcome::Finalized { invoice, .. } if invoice.number.as_deref() == Some("CLO-2026-000002")),
        "{finalized:?}"
    );
    s.close().await;
}
