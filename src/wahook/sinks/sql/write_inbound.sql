-- Incoming messages, from the staging table (one row per (organization, wamid)), first
-- into messages (direction inbound), sorted. Where two different items share a wamid, the
-- least content key wins; its sender (phone and user id, "" meaning none) replaces what
-- statuses or the sender's record gave the row, which keep it from then on (see
-- write_statuses.sql): the same row in any order. ON CONFLICT locks each existing row,
-- even one it keeps: from here to commit no other writer can store a version of these
-- wamids (each writes the messages row first), so what their stored versions reply to
-- stays as read next.
INSERT INTO messages AS m (organization_id, whatsapp_message_id, direction, phone_number,
                           user_id, message_type, content, message_at, content_key)
SELECT org, wamid, 'inbound', NULLIF(phone, ''), NULLIF(uid, ''), type, content,
       to_timestamp(at), ckey
FROM wahook_stage_incoming
ORDER BY org, wamid
ON CONFLICT (organization_id, whatsapp_message_id) DO UPDATE SET
    direction = 'inbound',
    phone_number = EXCLUDED.phone_number,
    user_id = EXCLUDED.user_id,
    message_type = EXCLUDED.message_type,
    content = EXCLUDED.content,
    message_at = EXCLUDED.message_at,
    content_key = EXCLUDED.content_key,
    updated_at = now()
WHERE m.content_key IS NULL OR EXCLUDED.content_key < m.content_key
