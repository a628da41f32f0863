-- The detail of every incoming message (after write_inbound.sql), one row per
-- (organization, wamid), sorted. A reply to a message of a campaign gets that campaign as
-- context_campaign_id.
INSERT INTO incoming_messages AS i (
    organization_id, whatsapp_message_id, from_phone_number, from_user_id, profile_name,
    message_type, content, media_id, media_mime_type, media_sha256, media_filename,
    interactive_type, interactive_data, reaction_message_id, reaction_emoji, location,
    contacts, order_data, referral, context_message_id, context_from, context_campaign_id,
    sent_at, phone_number_id, payload, payload_raw, content_key)
SELECT t.org, t.wamid, t.phone, t.uid, t.pname, t.type, t.content, t.media_id, t.mime,
       t.sha, t.fname, t.itype, t.idata::jsonb, t.rmid, t.remoji, t.loc::jsonb,
       t.contacts::jsonb, t.ord::jsonb, t.ref::jsonb, t.ctx, t.ctx_from, c.campaign_id,
       to_timestamp(t.at), t.pnid, t.payload::jsonb, t.raw, t.ckey
FROM wahook_stage_incoming AS t
LEFT JOIN messages c ON c.organization_id = t.org AND c.whatsapp_message_id = t.ctx
                    AND c.direction = 'outbound'
ORDER BY t.org, t.wamid
ON CONFLICT (organization_id, whatsapp_message_id) DO UPDATE SET
    from_phone_number = EXCLUDED.from_phone_number,
    from_user_id = EXCLUDED.from_user_id,
    profile_name = EXCLUDED.profile_name,
    message_type = EXCLUDED.message_type,
    content = EXCLUDED.content,
    media_id = EXCLUDED.media_id,
    media_mime_type = EXCLUDED.media_mime_type,
    media_sha256 = EXCLUDED.media_sha256,
    media_filename = EXCLUDED.media_filename,
    interactive_type = EXCLUDED.interactive_type,
    interactive_data = EXCLUDED.interactive_data,
    reaction_message_id = EXCLUDED.reaction_message_id,
    reaction_emoji = EXCLUDED.reaction_emoji,
    location = EXCLUDED.location,
    contacts = EXCLUDED.contacts,
    order_data = EXCLUDED.order_data,
    referral = EXCLUDED.referral,
    context_message_id = EXCLUDED.context_message_id,
    context_from = EXCLUDED.context_from,
    context_campaign_id = EXCLUDED.context_campaign_id,
    sent_at = EXCLUDED.sent_at,
    phone_number_id = EXCLUDED.phone_number_id,
    payload = EXCLUDED.payload,
    payload_raw = EXCLUDED.payload_raw,
    content_key = EXCLUDED.content_key
WHERE EXCLUDED.content_key < i.content_key
