-- Delivery funnel per campaign: how many recipients reached each stage (a read message
-- was also delivered and sent, whatever statuses Meta happened to deliver).
SELECT c.id AS campaign_id,
       c.name,
       c.status,
       count(a.id)                                                       AS audience,
       count(a.whatsapp_message_id)                                      AS sent,
       count(*) FILTER (WHERE a.message_status IN ('delivered', 'read', 'played')) AS delivered,
       count(*) FILTER (WHERE a.message_status IN ('read', 'played'))   AS read,
       count(*) FILTER (WHERE a.message_status = 'failed')              AS failed,
       count(a.replied_at)                                               AS replied
FROM campaigns c
LEFT JOIN campaign_audience a ON a.campaign_id = c.id
WHERE $1::bigint IS NULL OR c.organization_id = $1
GROUP BY c.id
ORDER BY c.id
