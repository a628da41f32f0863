UPDATE campaign_audience a SET
    whatsapp_message_id = t.wamid,
    updated_at = now()
FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS t(audience, org, wamid)
WHERE a.id = t.audience AND a.organization_id = t.org
RETURNING a.id
