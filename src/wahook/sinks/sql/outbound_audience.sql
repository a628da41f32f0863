-- Link the audience row of (campaign, phone) to the wamid sent to it, creating the row if
-- the sender did not create it first. A re-send replaces the wamid.
INSERT INTO campaign_audience AS a (campaign_id, organization_id, phone_number,
                                    whatsapp_message_id)
SELECT campaign, org, phone, wamid
FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[])
     AS t(campaign, org, phone, wamid)
ON CONFLICT (campaign_id, phone_number) DO UPDATE SET
    whatsapp_message_id = EXCLUDED.whatsapp_message_id,
    updated_at = now()
