-- An audience row whose message got replies records the first reply (by the reply's own
-- timestamp, then wamid), recomputed from incoming_messages, so any order converges and
-- a reply replaced by another item of the same wamid is forgotten. Rows are locked in id
-- order so concurrent writers never deadlock.
WITH k AS (
    SELECT DISTINCT org, wamid FROM unnest($1::bigint[], $2::text[]) AS k(org, wamid)
), target AS (
    SELECT a.id, r.sent_at, r.reply_id
    FROM k
    JOIN campaign_audience a ON a.organization_id = k.org AND a.whatsapp_message_id = k.wamid
    LEFT JOIN LATERAL (
        SELECT i.sent_at, i.whatsapp_message_id AS reply_id
        FROM incoming_messages i
        WHERE i.organization_id = k.org AND i.context_message_id = k.wamid
        ORDER BY i.sent_at NULLS LAST, i.whatsapp_message_id COLLATE "C"
        LIMIT 1
    ) r ON true
    ORDER BY a.id
    FOR UPDATE OF a
)
UPDATE campaign_audience a SET
    replied_at = t.sent_at,
    reply_message_id = t.reply_id,
    updated_at = now()
FROM target t
WHERE a.id = t.id
  AND (a.replied_at, a.reply_message_id) IS DISTINCT FROM (t.sent_at, t.reply_id)
