-- Campaign audience rows mirror their message: its status (from messages, where statuses
-- merge) and its first reply (from incoming_messages: by the reply's own timestamp, then
-- wamid, so any order converges and a reply replaced by another item of its wamid is
-- forgotten). Keys: the staged statuses (status columns; this transaction holds their
-- messages rows) and $1/$2 (reply columns; guarded by the replies' advisory locks). One
-- statement, last in the transaction, rows locked in id order: a transaction locks its
-- audience rows once, after every other table, so concurrent writers never deadlock.
WITH k AS (
    SELECT org, wamid, bool_or(st) AS st, bool_or(rp) AS rp
    FROM (SELECT org, wamid, true AS st, false AS rp FROM wahook_stage_statuses
          UNION ALL
          SELECT org, wamid, false, true FROM unnest($1::bigint[], $2::text[]) AS r(org, wamid)
         ) AS u
    GROUP BY org, wamid
), target AS (
    SELECT a.id, k.st AND m.id IS NOT NULL AS st, k.rp,
           COALESCE(m.message_status, 'pending') AS message_status, m.sent_at, m.delivered_at,
           m.read_at, m.played_at, m.failed_at, m.error_code, m.error_message,
           r.sent_at AS replied_at, r.reply_id
    FROM k
    JOIN campaign_audience a ON a.organization_id = k.org AND a.whatsapp_message_id = k.wamid
    LEFT JOIN messages m ON k.st AND m.organization_id = k.org AND m.whatsapp_message_id = k.wamid
    LEFT JOIN LATERAL (
        SELECT i.sent_at, i.whatsapp_message_id AS reply_id
        FROM incoming_messages i
        WHERE k.rp AND i.organization_id = k.org AND i.context_message_id = k.wamid
        ORDER BY i.sent_at NULLS LAST, i.whatsapp_message_id COLLATE "C"
        LIMIT 1
    ) r ON true
    ORDER BY a.id
    FOR UPDATE OF a
)
-- Each column is either recomputed (t.st / t.rp) or kept as the row now is (a.*, the
-- version this statement locked, so a concurrent writer's columns are never rolled back).
UPDATE campaign_audience a SET
    message_status = CASE WHEN t.st THEN t.message_status ELSE a.message_status END,
    sent_at = CASE WHEN t.st THEN t.sent_at ELSE a.sent_at END,
    delivered_at = CASE WHEN t.st THEN t.delivered_at ELSE a.delivered_at END,
    read_at = CASE WHEN t.st THEN t.read_at ELSE a.read_at END,
    played_at = CASE WHEN t.st THEN t.played_at ELSE a.played_at END,
    failed_at = CASE WHEN t.st THEN t.failed_at ELSE a.failed_at END,
    error_code = CASE WHEN t.st THEN t.error_code ELSE a.error_code END,
    error_message = CASE WHEN t.st THEN t.error_message ELSE a.error_message END,
    replied_at = CASE WHEN t.rp THEN t.replied_at ELSE a.replied_at END,
    reply_message_id = CASE WHEN t.rp THEN t.reply_id ELSE a.reply_message_id END,
    updated_at = now()
FROM target t
WHERE a.id = t.id
  AND ((t.st AND (a.message_status, a.sent_at, a.delivered_at, a.read_at, a.played_at,
                  a.failed_at, a.error_code, a.error_message)
                 IS DISTINCT FROM
                 (t.message_status, t.sent_at, t.delivered_at, t.read_at, t.played_at,
                  t.failed_at, t.error_code, t.error_message))
       OR (t.rp AND (a.replied_at, a.reply_message_id) IS DISTINCT FROM (t.replied_at, t.reply_id)))
