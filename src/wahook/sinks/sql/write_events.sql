-- The audit trail: one row per dedup key. A routed duplicate fills in the organization of
-- a row written while quarantined; the payload kept is the one with the least content key;
-- provenance keeps the least. Rows are taken sorted by dedup key, from the staging table.
WITH ins AS (
    INSERT INTO webhook_events AS e (organization_id, field, event_kind, event_type,
                                     whatsapp_message_id, message_status, waba_id,
                                     phone_number_id, event_at, payload, payload_raw,
                                     content_key, dedup_key, source_message_id, received_at)
    SELECT org, field, kind, type, wamid, status, waba, pnid, to_timestamp(at),
           payload::jsonb, raw, ckey, dkey, src, to_timestamp(recv)
    FROM wahook_stage_events
    ORDER BY dkey
    ON CONFLICT (dedup_key) DO UPDATE SET
        organization_id = COALESCE(e.organization_id, EXCLUDED.organization_id),
        event_type = CASE WHEN EXCLUDED.content_key < e.content_key
                          THEN EXCLUDED.event_type ELSE e.event_type END,
        event_at = CASE WHEN EXCLUDED.content_key < e.content_key
                        THEN EXCLUDED.event_at ELSE e.event_at END,
        payload = CASE WHEN EXCLUDED.content_key < e.content_key
                       THEN EXCLUDED.payload ELSE e.payload END,
        payload_raw = CASE WHEN EXCLUDED.content_key < e.content_key
                           THEN EXCLUDED.payload_raw ELSE e.payload_raw END,
        content_key = LEAST(e.content_key, EXCLUDED.content_key),
        source_message_id = LEAST(e.source_message_id, EXCLUDED.source_message_id),
        received_at = LEAST(e.received_at, EXCLUDED.received_at)
    WHERE (e.organization_id IS NULL AND EXCLUDED.organization_id IS NOT NULL)
       OR EXCLUDED.content_key < e.content_key
       OR EXCLUDED.source_message_id < e.source_message_id
       OR EXCLUDED.received_at < e.received_at
       OR (e.source_message_id IS NULL AND EXCLUDED.source_message_id IS NOT NULL)
       OR (e.received_at IS NULL AND EXCLUDED.received_at IS NOT NULL)
    RETURNING xmax = 0 AS fresh
)
SELECT count(*) FILTER (WHERE fresh) FROM ins
