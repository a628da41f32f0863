-- What the stored incoming messages of these wamids reply to (before they are replaced).
SELECT i.organization_id, i.context_message_id
FROM unnest($1::bigint[], $2::text[]) AS k(org, wamid)
JOIN incoming_messages i ON i.organization_id = k.org AND i.whatsapp_message_id = k.wamid
WHERE i.context_message_id IS NOT NULL
