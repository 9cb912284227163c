-- Attestor schema v2 (SQLite): billing. Money is integer micro-USD (i64);
-- times are integer milliseconds from the service's clock, never the
-- database's. What a finance team relies on is enforced here, not only in
-- the code: an issued invoice, its documents, the numbering counters, the
-- closes and the webhook messages cannot change; the triggers below refuse
-- every change the invoice life cycle (draft -> finalized -> void) does not
-- allow, whoever runs the statement. Their messages start with "immutable:".

-- The plan each tenant was on and since when: usage is rated at the plan in
-- force when each event happened. A tenant's first plan is recorded by a
-- trigger when the tenant is created; later changes by the billing code.
CREATE TABLE plan_changes (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    plan            TEXT NOT NULL,
    effective_at_ms INTEGER NOT NULL,
    recorded_at_ms  INTEGER NOT NULL
) STRICT;
CREATE INDEX plan_changes_tenant ON plan_changes (tenant_id, effective_at_ms, id);
INSERT INTO plan_changes (tenant_id, plan, effective_at_ms, recorded_at_ms)
SELECT id, plan, created_at_ms, created_at_ms FROM tenants;
CREATE TRIGGER tenants_first_plan AFTER INSERT ON tenants BEGIN
    INSERT INTO plan_changes (tenant_id, plan, effective_at_ms, recorded_at_ms)
    VALUES (NEW.id, NEW.plan, NEW.created_at_ms, NEW.created_at_ms);
END;
CREATE TRIGGER plan_changes_no_update BEFORE UPDATE ON plan_changes BEGIN
    SELECT RAISE(ABORT, 'immutable: the plan history is append-only');
END;
CREATE TRIGGER plan_changes_no_delete BEFORE DELETE ON plan_changes BEGIN
    SELECT RAISE(ABORT, 'immutable: the plan history is append-only');
END;

-- A tenant's events are indexed by event kind, then time, with the units:
-- rating sums one kind's units in a time range from this index alone, and
-- a loose scan over `event` finds a tenant's kinds in a few seeks. It
-- replaces the (tenant_id, occurred_at_ms) index (`GET /v1/usage` reads it
-- the same way), so a metered event still updates one index on tenants.
DROP INDEX usage_events_tenant_time;
CREATE INDEX usage_events_rating ON usage_events (tenant_id, event, occurred_at_ms, units);

-- One row per (tenant, period) closed. `watermark` is the highest usage
-- event id when the close was taken: events with an id at or below it and
-- a time before `end_ms` are billed by this close or an earlier one; later
-- events dated before `end_ms` are late (usage_late) and go on the next
-- invoice as their own line.
CREATE TABLE billing_closes (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    period         TEXT NOT NULL,
    start_ms       INTEGER NOT NULL,
    end_ms         INTEGER NOT NULL,
    prev_end_ms    INTEGER,
    prev_watermark INTEGER NOT NULL,
    watermark      INTEGER NOT NULL,
    early          INTEGER NOT NULL CHECK (early IN (0, 1)),
    closed_at_ms   INTEGER NOT NULL,
    UNIQUE (tenant_id, period),
    CHECK (start_ms <= end_ms),
    CHECK (prev_watermark <= watermark)
) STRICT;
CREATE INDEX billing_closes_tenant_end ON billing_closes (tenant_id, end_ms);
CREATE TRIGGER billing_closes_no_update BEFORE UPDATE ON billing_closes BEGIN
    SELECT RAISE(ABORT, 'immutable: a close cannot change');
END;
CREATE TRIGGER billing_closes_no_delete BEFORE DELETE ON billing_closes BEGIN
    SELECT RAISE(ABORT, 'immutable: a close cannot be deleted');
END;

-- Late events: committed after a close of their tenant, dated before its
-- end. Marked as they are inserted (SQLite has one writer, so a close and a
-- usage batch never interleave), rated on the next invoice.
CREATE TABLE usage_late (
    event_id  INTEGER PRIMARY KEY,
    tenant_id TEXT NOT NULL
) STRICT;
CREATE INDEX usage_late_tenant ON usage_late (tenant_id, event_id);
CREATE TRIGGER usage_events_late AFTER INSERT ON usage_events
WHEN NEW.occurred_at_ms < (SELECT max(end_ms) FROM billing_closes WHERE tenant_id = NEW.tenant_id)
BEGIN
    INSERT INTO usage_late (event_id, tenant_id) VALUES (NEW.id, NEW.tenant_id);
END;

-- Invoices: draft (mutable, no number) -> finalized (number, documents,
-- immutable) -> void (only the void columns set). At most one invoice that
-- is not void per close.
CREATE TABLE invoices (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    close_id        INTEGER NOT NULL REFERENCES billing_closes (id),
    period          TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('draft', 'finalized', 'void')),
    draft           TEXT NOT NULL,
    total_micros    INTEGER NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    series          TEXT,
    seq             INTEGER,
    number          TEXT UNIQUE,
    finalized_at_ms INTEGER,
    document        TEXT,
    sha256          TEXT,
    envelope        TEXT,
    voided_at_ms    INTEGER,
    void_reason     TEXT,
    UNIQUE (series, seq),
    CHECK ((status = 'draft') = (number IS NULL)),
    CHECK (status = 'draft' OR (series IS NOT NULL AND seq IS NOT NULL AND finalized_at_ms IS NOT NULL
           AND document IS NOT NULL AND sha256 IS NOT NULL AND envelope IS NOT NULL)),
    CHECK ((status = 'void') = (voided_at_ms IS NOT NULL AND void_reason IS NOT NULL))
) STRICT;
CREATE UNIQUE INDEX invoices_live_per_close ON invoices (close_id) WHERE status <> 'void';
CREATE INDEX invoices_tenant ON invoices (tenant_id, finalized_at_ms);
CREATE TRIGGER invoices_born_draft BEFORE INSERT ON invoices WHEN NEW.status <> 'draft' BEGIN
    SELECT RAISE(ABORT, 'immutable: an invoice is created as a draft');
END;
CREATE TRIGGER invoices_number_from_counter BEFORE UPDATE ON invoices
WHEN OLD.status = 'draft' AND NEW.status = 'finalized'
 AND NEW.seq IS NOT (SELECT last_value FROM invoice_counters WHERE series = NEW.series)
BEGIN
    SELECT RAISE(ABORT, 'immutable: an invoice number comes from its series counter, in the same transaction');
END;
CREATE TRIGGER invoices_draft_not_void BEFORE UPDATE ON invoices
WHEN OLD.status = 'draft' AND NEW.status = 'void'
BEGIN
    SELECT RAISE(ABORT, 'immutable: a draft cannot be voided');
END;
CREATE TRIGGER invoices_issued_immutable BEFORE UPDATE ON invoices
WHEN OLD.status <> 'draft' AND NOT (
    OLD.status = 'finalized' AND NEW.status = 'void'
    AND NEW.id IS OLD.id AND NEW.tenant_id IS OLD.tenant_id AND NEW.close_id IS OLD.close_id
    AND NEW.period IS OLD.period AND NEW.draft IS OLD.draft AND NEW.total_micros IS OLD.total_micros
    AND NEW.created_at_ms IS OLD.created_at_ms AND NEW.series IS OLD.series AND NEW.seq IS OLD.seq
    AND NEW.number IS OLD.number AND NEW.finalized_at_ms IS OLD.finalized_at_ms
    AND NEW.document IS OLD.document AND NEW.sha256 IS OLD.sha256 AND NEW.envelope IS OLD.envelope)
BEGIN
    SELECT RAISE(ABORT, 'immutable: an issued invoice cannot change; void it and issue a new one');
END;
CREATE TRIGGER invoices_no_delete BEFORE DELETE ON invoices WHEN OLD.status <> 'draft' BEGIN
    SELECT RAISE(ABORT, 'immutable: an issued invoice cannot be deleted');
END;

-- Gapless numbering: one counter row per series, stepped by one in the
-- transaction that finalizes the invoice taking the number.
CREATE TABLE invoice_counters (
    series     TEXT PRIMARY KEY,
    last_value INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE TRIGGER invoice_counters_start BEFORE INSERT ON invoice_counters WHEN NEW.last_value <> 0 BEGIN
    SELECT RAISE(ABORT, 'immutable: an invoice counter starts at 0');
END;
CREATE TRIGGER invoice_counters_step BEFORE UPDATE ON invoice_counters
WHEN NEW.series IS NOT OLD.series OR NEW.last_value IS NOT OLD.last_value + 1
BEGIN
    SELECT RAISE(ABORT, 'immutable: an invoice counter only steps by one');
END;
CREATE TRIGGER invoice_counters_no_delete BEFORE DELETE ON invoice_counters BEGIN
    SELECT RAISE(ABORT, 'immutable: an invoice counter cannot be deleted');
END;

-- The PDF rendered from an issued invoice's JSON (reproducible: stored once).
CREATE TABLE invoice_pdfs (
    invoice_id TEXT PRIMARY KEY REFERENCES invoices (id),
    pdf        BLOB NOT NULL,
    sha256     TEXT NOT NULL
) STRICT;
CREATE TRIGGER invoice_pdfs_issued_only BEFORE INSERT ON invoice_pdfs
WHEN (SELECT status FROM invoices WHERE id = NEW.invoice_id) IS NOT 'finalized'
 AND (SELECT status FROM invoices WHERE id = NEW.invoice_id) IS NOT 'void'
BEGIN
    SELECT RAISE(ABORT, 'immutable: only an issued invoice has a PDF');
END;
CREATE TRIGGER invoice_pdfs_no_update BEFORE UPDATE ON invoice_pdfs BEGIN
    SELECT RAISE(ABORT, 'immutable: an invoice PDF cannot change');
END;
CREATE TRIGGER invoice_pdfs_no_delete BEFORE DELETE ON invoice_pdfs BEGIN
    SELECT RAISE(ABORT, 'immutable: an invoice PDF cannot be deleted');
END;

-- Webhooks (Standard Webhooks): endpoints per tenant with their signing
-- secret (`whsec_…`, readable only by the attestor's user: the database
-- file is 0600 in a 0700 state directory), messages written in the
-- finalization transaction (the outbox), one delivery row per message and
-- endpoint, and the log of every attempt.
CREATE TABLE webhook_endpoints (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    url             TEXT NOT NULL,
    secret          TEXT NOT NULL,
    enabled         INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    disabled_reason TEXT,
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL
) STRICT;
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id, id);

CREATE TABLE webhook_messages (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    event_type    TEXT NOT NULL,
    payload       TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;
CREATE TRIGGER webhook_messages_no_update BEFORE UPDATE ON webhook_messages BEGIN
    SELECT RAISE(ABORT, 'immutable: a webhook message cannot change');
END;
CREATE TRIGGER webhook_messages_no_delete BEFORE DELETE ON webhook_messages BEGIN
    SELECT RAISE(ABORT, 'immutable: a webhook message cannot be deleted');
END;

CREATE TABLE webhook_outbox (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id         TEXT NOT NULL REFERENCES webhook_messages (id),
    endpoint_id        TEXT NOT NULL REFERENCES webhook_endpoints (id),
    tenant_id          TEXT NOT NULL,
    state              TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts           INTEGER NOT NULL,
    next_attempt_at_ms INTEGER NOT NULL,
    lease_owner        TEXT,
    lease_until_ms     INTEGER,
    last_status        INTEGER,
    last_error         TEXT,
    created_at_ms      INTEGER NOT NULL,
    delivered_at_ms    INTEGER,
    dead_at_ms         INTEGER,
    UNIQUE (message_id, endpoint_id)
) STRICT;
CREATE INDEX webhook_outbox_due ON webhook_outbox (state, next_attempt_at_ms);
CREATE INDEX webhook_outbox_tenant ON webhook_outbox (tenant_id, state, created_at_ms);

CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    outbox_id       INTEGER NOT NULL REFERENCES webhook_outbox (id),
    attempt         INTEGER NOT NULL,
    attempted_at_ms INTEGER NOT NULL,
    duration_ms     INTEGER NOT NULL,
    status_code     INTEGER,
    error           TEXT,
    worker          TEXT NOT NULL
) STRICT;
CREATE INDEX webhook_deliveries_outbox ON webhook_deliveries (outbox_id, id);
