-- Replies that arrived before the sender recorded the message they reply to.
WITH k AS (
    SELECT org, wamid, campaign FROM unnest($1::bigint[], $2::text[], $3::bigint[])
         AS k(org, wamid, campaign)
    WHERE campaign IS NOT NULL
), target AS (
    SELECT i.id, k.campaign
    FROM k
    JOIN incoming_messages i ON i.organization_id = k.org AND i.context_message_id = k.wamid
    WHERE i.context_campaign_id IS NULL
    ORDER BY i.id
    FOR UPDATE OF i
)
UPDATE incoming_messages i SET context_campaign_id = t.campaign
FROM target t
WHERE i.id = t.id
