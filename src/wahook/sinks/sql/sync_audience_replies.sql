-- An audience row whose message got replies records the first reply (by the reply's own
-- timestamp, then wamid), computed from incoming_messages so any order converges.
WITH k AS (
    SELECT DISTINCT org, wamid FROM unnest($1::bigint[], $2::text[]) AS k(org, wamid)
), first_reply AS (
    SELECT DISTINCT ON (i.organization_id, i.context_message_id)
           i.organization_id AS org, i.context_message_id AS wamid,
           i.sent_at, i.whatsapp_message_id AS reply_id
    FROM k
    JOIN incoming_messages i ON i.organization_id = k.org AND i.context_message_id = k.wamid
    ORDER BY i.organization_id, i.context_message_id, i.sent_at NULLS LAST,
             i.whatsapp_message_id COLLATE "C"
), target AS (
    SELECT a.id, r.sent_at, r.reply_id
    FROM first_reply r
    JOIN campaign_audience a ON a.organization_id = r.org AND a.whatsapp_message_id = r.wamid
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
