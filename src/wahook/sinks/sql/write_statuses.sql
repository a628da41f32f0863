-- Statuses merged into messages, one row per (organization, wamid), sorted by that key.
-- A status for a message not stored yet creates its row (direction outbound); the
-- sender's record of the message merges into it later. The greatest status key decides
-- message_status and its errors; each <status>_at keeps the earliest time seen; pricing
-- and conversation each come from the greatest status that carried one. The campaign
-- audience rows mirror them at the end of the transaction (sync_audience.sql). Recipient
-- and user id keep the least value while no incoming message of the wamid is stored
-- (content_key IS NULL); once one is, its sender's are kept (write_inbound.sql), so one
-- wamid that is both gets the same row in any order.
INSERT INTO messages AS m (organization_id, whatsapp_message_id, direction, phone_number,
                           user_id, message_status, status_rank, status_key,
                           sent_at, delivered_at, read_at, played_at, failed_at,
                           error_code, error_title, error_message, errors,
                           pricing, pricing_key, conversation_id, conversation,
                           conversation_key, biz_opaque_callback_data)
SELECT org, wamid, 'outbound', phone, uid, status, rank, skey,
       to_timestamp(s_at), to_timestamp(d_at), to_timestamp(r_at), to_timestamp(p_at),
       to_timestamp(f_at), ecode, etitle, emsg, errs::jsonb,
       pricing::jsonb, pkey, conv_id, conv::jsonb, ckey, opaque
FROM wahook_stage_statuses
ORDER BY org, wamid
ON CONFLICT (organization_id, whatsapp_message_id) DO UPDATE SET
    phone_number = CASE WHEN m.content_key IS NULL
                        THEN LEAST(m.phone_number, EXCLUDED.phone_number) ELSE m.phone_number END,
    user_id = CASE WHEN m.content_key IS NULL
                   THEN LEAST(m.user_id, EXCLUDED.user_id) ELSE m.user_id END,
    message_status = CASE WHEN EXCLUDED.status_key > COALESCE(m.status_key, ''::bytea)
                          THEN EXCLUDED.message_status ELSE m.message_status END,
    status_rank = CASE WHEN EXCLUDED.status_key > COALESCE(m.status_key, ''::bytea)
                       THEN EXCLUDED.status_rank ELSE m.status_rank END,
    error_code = CASE WHEN EXCLUDED.status_key > COALESCE(m.status_key, ''::bytea)
                      THEN EXCLUDED.error_code ELSE m.error_code END,
    error_title = CASE WHEN EXCLUDED.status_key > COALESCE(m.status_key, ''::bytea)
                       THEN EXCLUDED.error_title ELSE m.error_title END,
    error_message = CASE WHEN EXCLUDED.status_key > COALESCE(m.status_key, ''::bytea)
                         THEN EXCLUDED.error_message ELSE m.error_message END,
    errors = CASE WHEN EXCLUDED.status_key > COALESCE(m.status_key, ''::bytea)
                  THEN EXCLUDED.errors ELSE m.errors END,
    status_key = GREATEST(m.status_key, EXCLUDED.status_key),
    sent_at = LEAST(m.sent_at, EXCLUDED.sent_at),
    delivered_at = LEAST(m.delivered_at, EXCLUDED.delivered_at),
    read_at = LEAST(m.read_at, EXCLUDED.read_at),
    played_at = LEAST(m.played_at, EXCLUDED.played_at),
    failed_at = LEAST(m.failed_at, EXCLUDED.failed_at),
    pricing = CASE WHEN EXCLUDED.pricing_key > COALESCE(m.pricing_key, ''::bytea)
                   THEN EXCLUDED.pricing ELSE m.pricing END,
    pricing_key = GREATEST(m.pricing_key, EXCLUDED.pricing_key),
    conversation_id = CASE WHEN EXCLUDED.conversation_key > COALESCE(m.conversation_key, ''::bytea)
                           THEN EXCLUDED.conversation_id ELSE m.conversation_id END,
    conversation = CASE WHEN EXCLUDED.conversation_key > COALESCE(m.conversation_key, ''::bytea)
                        THEN EXCLUDED.conversation ELSE m.conversation END,
    conversation_key = GREATEST(m.conversation_key, EXCLUDED.conversation_key),
    biz_opaque_callback_data = LEAST(m.biz_opaque_callback_data,
                                     EXCLUDED.biz_opaque_callback_data),
    updated_at = now()
