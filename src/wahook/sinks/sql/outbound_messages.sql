-- What a sender sent, merged with whatever statuses already arrived for it: the first
-- recorded content wins; statuses are left alone.
INSERT INTO messages AS m (organization_id, whatsapp_message_id, direction, campaign_id,
                           phone_number, message_type, content, template_name)
SELECT org, wamid, 'outbound', campaign, NULLIF(phone, ''), type, content, template
FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[],
            $7::text[]) AS t(org, wamid, campaign, phone, type, content, template)
ON CONFLICT (organization_id, whatsapp_message_id) DO UPDATE SET
    campaign_id = COALESCE(m.campaign_id, EXCLUDED.campaign_id),
    phone_number = CASE WHEN m.content_key IS NULL  -- as in write_statuses.sql
                        THEN LEAST(m.phone_number, EXCLUDED.phone_number) ELSE m.phone_number END,
    message_type = COALESCE(m.message_type, EXCLUDED.message_type),
    content = COALESCE(m.content, EXCLUDED.content),
    template_name = COALESCE(m.template_name, EXCLUDED.template_name),
    updated_at = now()
