-- Attestor schema v2 (PostgreSQL): billing. Money is integer micro-USD
-- (BIGINT); times are integer milliseconds from the service's clock, never
-- the database's. What a finance team relies on is enforced here, not only
-- in the code: an issued invoice, its documents, the numbering counters,
-- the closes and the webhook messages cannot change; the triggers below
-- refuse every change the invoice life cycle (draft -> finalized -> void)
-- does not allow, whoever runs the statement. Their messages start with
-- "immutable:". Same tables and rules as the SQLite schema.

CREATE FUNCTION billing_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'immutable: %', TG_ARGV[0];
END $$;

-- The plan each tenant was on and since when.
CREATE TABLE plan_changes (
    id              BIGSERIAL PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    plan            TEXT NOT NULL,
    effective_at_ms BIGINT NOT NULL,
    recorded_at_ms  BIGINT NOT NULL
);
CREATE INDEX plan_changes_tenant ON plan_changes (tenant_id, effective_at_ms, id);
INSERT INTO plan_changes (tenant_id, plan, effective_at_ms, recorded_at_ms)
SELECT id, plan, created_at_ms, created_at_ms FROM tenants ORDER BY created_at_ms, id;
CREATE FUNCTION billing_first_plan() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO plan_changes (tenant_id, plan, effective_at_ms, recorded_at_ms)
    VALUES (NEW.id, NEW.plan, NEW.created_at_ms, NEW.created_at_ms);
    RETURN NULL;
END $$;
CREATE TRIGGER tenants_first_plan AFTER INSERT ON tenants
    FOR EACH ROW EXECUTE FUNCTION billing_first_plan();
CREATE TRIGGER plan_changes_append_only BEFORE UPDATE OR DELETE ON plan_changes
    FOR EACH ROW EXECUTE FUNCTION billing_refuse('the plan history is append-only');

-- A tenant's events by event kind, then time, with the units (index-only
-- range sums); it replaces the (tenant_id, occurred_at_ms) index. See the
-- SQLite schema.
DROP INDEX usage_events_tenant_time;
CREATE INDEX usage_events_rating ON usage_events (tenant_id, event, occurred_at_ms) INCLUDE (units);

-- One row per (tenant, period) closed; see the SQLite schema. A close takes
-- `LOCK TABLE usage_events IN SHARE MODE` while it reads the watermark, so
-- every event at or below it has committed and every later one sees it.
CREATE TABLE billing_closes (
    id             BIGSERIAL PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    period         TEXT NOT NULL,
    start_ms       BIGINT NOT NULL,
    end_ms         BIGINT NOT NULL,
    prev_end_ms    BIGINT,
    prev_watermark BIGINT NOT NULL,
    watermark      BIGINT NOT NULL,
    early          BIGINT NOT NULL CHECK (early IN (0, 1)),
    closed_at_ms   BIGINT NOT NULL,
    UNIQUE (tenant_id, period),
    CHECK (start_ms <= end_ms),
    CHECK (prev_watermark <= watermark)
);
CREATE INDEX billing_closes_tenant_end ON billing_closes (tenant_id, end_ms);
CREATE TRIGGER billing_closes_immutable BEFORE UPDATE OR DELETE ON billing_closes
    FOR EACH ROW EXECUTE FUNCTION billing_refuse('a close cannot change');

-- Late events, marked per inserted batch (one statement-level trigger).
CREATE TABLE usage_late (
    event_id  BIGINT PRIMARY KEY,
    tenant_id TEXT NOT NULL
);
CREATE INDEX usage_late_tenant ON usage_late (tenant_id, event_id);
CREATE FUNCTION billing_mark_late_usage() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO usage_late (event_id, tenant_id)
    SELECT n.id, n.tenant_id FROM new_usage AS n
     WHERE n.occurred_at_ms < (SELECT max(c.end_ms) FROM billing_closes AS c
                                WHERE c.tenant_id = n.tenant_id);
    RETURN NULL;
END $$;
CREATE TRIGGER usage_events_late AFTER INSERT ON usage_events
    REFERENCING NEW TABLE AS new_usage
    FOR EACH STATEMENT EXECUTE FUNCTION billing_mark_late_usage();

-- Invoices: draft -> finalized -> void.
CREATE TABLE invoices (
    id              TEXT COLLATE "C" PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    close_id        BIGINT NOT NULL REFERENCES billing_closes (id),
    period          TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('draft', 'finalized', 'void')),
    draft           TEXT NOT NULL,
    total_micros    BIGINT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    series          TEXT,
    seq             BIGINT,
    number          TEXT COLLATE "C" UNIQUE,
    finalized_at_ms BIGINT,
    document        TEXT,
    sha256          TEXT,
    envelope        TEXT,
    voided_at_ms    BIGINT,
    void_reason     TEXT,
    UNIQUE (series, seq),
    CHECK ((status = 'draft') = (number IS NULL)),
    CHECK (status = 'draft' OR (series IS NOT NULL AND seq IS NOT NULL AND finalized_at_ms IS NOT NULL
           AND document IS NOT NULL AND sha256 IS NOT NULL AND envelope IS NOT NULL)),
    CHECK ((status = 'void') = (voided_at_ms IS NOT NULL AND void_reason IS NOT NULL))
);
CREATE UNIQUE INDEX invoices_live_per_close ON invoices (close_id) WHERE status <> 'void';
CREATE INDEX invoices_tenant ON invoices (tenant_id, finalized_at_ms);
CREATE FUNCTION billing_invoice_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status <> 'draft' THEN
            RAISE EXCEPTION 'immutable: an invoice is created as a draft';
        END IF;
        RETURN NEW;
    END IF;
    IF TG_OP = 'DELETE' THEN
        IF OLD.status <> 'draft' THEN
            RAISE EXCEPTION 'immutable: an issued invoice cannot be deleted';
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.status = 'draft' THEN
        IF NEW.status = 'void' THEN
            RAISE EXCEPTION 'immutable: a draft cannot be voided';
        END IF;
        IF NEW.status = 'finalized' AND NEW.seq IS DISTINCT FROM
           (SELECT last_value FROM invoice_counters WHERE series = NEW.series) THEN
            RAISE EXCEPTION 'immutable: an invoice number comes from its series counter, in the same transaction';
        END IF;
        RETURN NEW;
    END IF;
    IF OLD.status = 'finalized' AND NEW.status = 'void'
       AND (NEW.id, NEW.tenant_id, NEW.close_id, NEW.period, NEW.draft, NEW.total_micros,
            NEW.created_at_ms, NEW.series, NEW.seq, NEW.number, NEW.finalized_at_ms,
            NEW.document, NEW.sha256, NEW.envelope)
           IS NOT DISTINCT FROM
           (OLD.id, OLD.tenant_id, OLD.close_id, OLD.period, OLD.draft, OLD.total_micros,
            OLD.created_at_ms, OLD.series, OLD.seq, OLD.number, OLD.finalized_at_ms,
            OLD.document, OLD.sha256, OLD.envelope) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'immutable: an issued invoice cannot change; void it and issue a new one';
END $$;
CREATE TRIGGER invoices_guard BEFORE INSERT OR UPDATE OR DELETE ON invoices
    FOR EACH ROW EXECUTE FUNCTION billing_invoice_guard();
CREATE TRIGGER invoices_no_truncate BEFORE TRUNCATE ON invoices
    FOR EACH STATEMENT EXECUTE FUNCTION billing_refuse('invoices cannot be truncated');

-- Gapless numbering: one counter row per series, stepped by one in the
-- transaction that finalizes the invoice taking the number (its row lock
-- orders concurrent finalizations, also across attestors).
CREATE TABLE invoice_counters (
    series     TEXT COLLATE "C" PRIMARY KEY,
    last_value BIGINT NOT NULL
);
CREATE FUNCTION billing_counter_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.last_value <> 0 THEN
            RAISE EXCEPTION 'immutable: an invoice counter starts at 0';
        END IF;
        RETURN NEW;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.series = OLD.series AND NEW.last_value = OLD.last_value + 1 THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'immutable: an invoice counter only steps by one';
END $$;
CREATE TRIGGER invoice_counters_guard BEFORE INSERT OR UPDATE OR DELETE ON invoice_counters
    FOR EACH ROW EXECUTE FUNCTION billing_counter_guard();
CREATE TRIGGER invoice_counters_no_truncate BEFORE TRUNCATE ON invoice_counters
    FOR EACH STATEMENT EXECUTE FUNCTION billing_refuse('invoice counters cannot be truncated');

-- The PDF rendered from an issued invoice's JSON (reproducible: stored once).
CREATE TABLE invoice_pdfs (
    invoice_id TEXT COLLATE "C" PRIMARY KEY REFERENCES invoices (id),
    pdf        BYTEA NOT NULL,
    sha256     TEXT NOT NULL
);
CREATE FUNCTION billing_pdf_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF (SELECT status FROM invoices WHERE id = NEW.invoice_id) IN ('finalized', 'void') THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION 'immutable: only an issued invoice has a PDF';
    END IF;
    RAISE EXCEPTION 'immutable: an invoice PDF cannot change';
END $$;
CREATE TRIGGER invoice_pdfs_guard BEFORE INSERT OR UPDATE OR DELETE ON invoice_pdfs
    FOR EACH ROW EXECUTE FUNCTION billing_pdf_guard();

-- Webhooks (Standard Webhooks); see the SQLite schema.
CREATE TABLE webhook_endpoints (
    id              TEXT COLLATE "C" PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    url             TEXT NOT NULL,
    secret          TEXT NOT NULL,
    enabled         BIGINT NOT NULL CHECK (enabled IN (0, 1)),
    disabled_reason TEXT,
    created_at_ms   BIGINT NOT NULL,
    updated_at_ms   BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id, id);

CREATE TABLE webhook_messages (
    id            TEXT COLLATE "C" PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    event_type    TEXT NOT NULL,
    payload       TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE TRIGGER webhook_messages_immutable BEFORE UPDATE OR DELETE ON webhook_messages
    FOR EACH ROW EXECUTE FUNCTION billing_refuse('a webhook message cannot change');

CREATE TABLE webhook_outbox (
    id                 BIGSERIAL PRIMARY KEY,
    message_id         TEXT NOT NULL REFERENCES webhook_messages (id),
    endpoint_id        TEXT NOT NULL REFERENCES webhook_endpoints (id),
    tenant_id          TEXT NOT NULL,
    state              TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts           BIGINT NOT NULL,
    next_attempt_at_ms BIGINT NOT NULL,
    lease_owner        TEXT,
    lease_until_ms     BIGINT,
    last_status        BIGINT,
    last_error         TEXT,
    created_at_ms      BIGINT NOT NULL,
    delivered_at_ms    BIGINT,
    dead_at_ms         BIGINT,
    UNIQUE (message_id, endpoint_id)
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (state, next_attempt_at_ms);
CREATE INDEX webhook_outbox_tenant ON webhook_outbox (tenant_id, state, created_at_ms);

CREATE TABLE webhook_deliveries (
    id              BIGSERIAL PRIMARY KEY,
    outbox_id       BIGINT NOT NULL REFERENCES webhook_outbox (id),
    attempt         BIGINT NOT NULL,
    attempted_at_ms BIGINT NOT NULL,
    duration_ms     BIGINT NOT NULL,
    status_code     BIGINT,
    error           TEXT,
    worker          TEXT NOT NULL
);
CREATE INDEX webhook_deliveries_outbox ON webhook_deliveries (outbox_id, id);
