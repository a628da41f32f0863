-- Two changes to the status path, each measured (benchmarks/README.md, "Schema tuning").
--
-- 1. A recorded outbound message is narrow (recipient, template) and widens about 3x with
-- its first status: times, status/pricing/conversation keys, pricing and conversation
-- JSON (160 -> 500 bytes for a template without content). At 70% fill most rows outgrew
-- their page on that first status: the row moved and every index got a new entry (only
-- 17% of status updates stayed HOT in benchmarks/bench_pipeline.py). At 25% fill a page
-- of freshly recorded messages has room for all of them to widen in place, even when one
-- batch carries the first status of every message on the page (a campaign's 'sent' burst):
-- 100% HOT, and a status costs ~35% less. Widened rows fill their pages, so the table is
-- no larger than before (smaller, without the moved rows' dead versions). Only pages
-- written from now on get the room.
ALTER TABLE messages SET (fillfactor = 25);

-- 2. The audit trail's lookup by message: a hash index on the wamid costs ~1.5 µs less per
-- audited event than the btree on (organization, wamid) (7.6 against 9.2 µs per row
-- inserted); a wamid is selective on its own, the organization is filtered after. Lookups
-- are by equality only, which is how the audit trail is searched. Migrations run in a
-- transaction, so the index is built without CONCURRENTLY: on a large audit trail, writes
-- to webhook_events wait while it builds (reads do not). Apply it at a quiet time.
DROP INDEX IF EXISTS webhook_events_message_idx;
CREATE INDEX webhook_events_message_idx ON webhook_events USING hash (whatsapp_message_id)
    WHERE whatsapp_message_id IS NOT NULL;
