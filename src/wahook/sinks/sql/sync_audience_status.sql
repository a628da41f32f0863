-- Campaign audience rows mirror the status of their message (messages is where statuses
-- merge). Rows are locked in id order so concurrent writers never deadlock.
WITH k AS (
    SELECT DISTINCT org, wamid FROM unnest($1::bigint[], $2::text[]) AS k(org, wamid)
), target AS (
    SELECT a.id, m.message_status, m.sent_at, m.delivered_at, m.read_at, m.played_at,
           m.failed_at, m.error_code, m.error_message
    FROM k
    JOIN campaign_audience a ON a.organization_id = k.org AND a.whatsapp_message_id = k.wamid
    JOIN messages m ON m.organization_id = k.org AND m.whatsapp_message_id = k.wamid
    ORDER BY a.id
    FOR UPDATE OF a
)
UPDATE campaign_audience a SET
    message_status = COALESCE(t.message_status, 'pending'),
    sent_at = t.sent_at,
    delivered_at = t.delivered_at,
    read_at = t.read_at,
    played_at = t.played_at,
    failed_at = t.failed_at,
    error_code = t.error_code,
    error_message = t.error_message,
    updated_at = now()
FROM target t
WHERE a.id = t.id
  AND (a.message_status, a.sent_at, a.delivered_at, a.read_at, a.played_at, a.failed_at,
       a.error_code, a.error_message)
      IS DISTINCT FROM
      (COALESCE(t.message_status, 'pending'), t.sent_at, t.delivered_at, t.read_at,
       t.played_at, t.failed_at, t.error_code, t.error_message)
