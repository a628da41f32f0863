-- Incoming messages into messages (direction inbound), one row per (organization, wamid),
-- sorted. Where two different items share a wamid, the least content key wins.
INSERT INTO messages AS m (organization_id, whatsapp_message_id, direction, phone_number,
                           user_id, message_type, content, message_at, content_key)
SELECT org, wamid, 'inbound', phone, uid, type, content, to_timestamp(at), ckey
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::float8[], $8::bytea[])
     AS t(org, wamid, phone, uid, type, content, at, ckey)
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
