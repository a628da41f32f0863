-- What the stored incoming messages of the staged wamids reply to: read before the reply
-- locks (to know which to take), and again once the wamids' messages rows are locked.
SELECT i.organization_id, i.context_message_id
FROM wahook_stage_incoming k
JOIN incoming_messages i ON i.organization_id = k.org AND i.whatsapp_message_id = k.wamid
WHERE i.context_message_id IS NOT NULL
