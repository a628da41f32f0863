-- The audit trail keeps its organization id without a foreign key: a foreign key costs a
-- lookup per audited event (the hottest insert path), and an audit row should outlive the
-- organization it names.
ALTER TABLE webhook_events DROP CONSTRAINT IF EXISTS webhook_events_organization_id_fkey;
