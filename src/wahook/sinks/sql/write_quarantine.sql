-- Items that could not be applied. One row per dedup key; provenance keeps the least.
WITH ins AS (
    INSERT INTO quarantine AS q (kind, reason, field, waba_id, phone_number_id, path, context,
                                 raw, dedup_key, source_message_id, received_at, verdict)
    SELECT kind, reason, field, waba_id, phone_number_id, path, context::jsonb,
           raw, dedup_key, source_message_id, to_timestamp(received_at), verdict
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                $7::text[], $8::bytea[], $9::bytea[], $10::text[], $11::float8[],
                $12::text[])
         AS t(kind, reason, field, waba_id, phone_number_id, path, context,
              raw, dedup_key, source_message_id, received_at, verdict)
    ON CONFLICT (dedup_key) DO UPDATE SET
        source_message_id = LEAST(q.source_message_id, EXCLUDED.source_message_id),
        received_at = LEAST(q.received_at, EXCLUDED.received_at),
        path = LEAST(q.path, EXCLUDED.path)
    WHERE EXCLUDED.source_message_id < q.source_message_id
       OR EXCLUDED.received_at < q.received_at
       OR EXCLUDED.path < q.path
       OR (q.source_message_id IS NULL AND EXCLUDED.source_message_id IS NOT NULL)
       OR (q.received_at IS NULL AND EXCLUDED.received_at IS NOT NULL)
    RETURNING xmax = 0 AS fresh
)
SELECT count(*) FILTER (WHERE fresh) FROM ins
