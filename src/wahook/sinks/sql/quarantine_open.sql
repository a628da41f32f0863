SELECT id, kind, reason, field, waba_id, phone_number_id, path, context, raw, dedup_key,
       source_message_id, extract(epoch FROM received_at)::float8 AS received_at, verdict
FROM quarantine
WHERE resolved_at IS NULL AND kind = ANY($1::text[]) AND id > $2
ORDER BY id
LIMIT $3
