-- Trust portal (issue 17): the tenant an audit engagement is for (who
-- commissioned it, `audit open --for-tenant`): that tenant follows the
-- engagement in the portal's audit tracker; no other tenant sees it.
-- NULL: an engagement for the organisation itself, seen by its auditor only.
ALTER TABLE engagements ADD COLUMN client_tenant_id TEXT REFERENCES tenants (id);
CREATE INDEX engagements_client ON engagements (client_tenant_id);
