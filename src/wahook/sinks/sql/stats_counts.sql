SELECT
    (SELECT count(*) FROM organizations)                                   AS organizations,
    (SELECT count(*) FROM campaigns)                                       AS campaigns,
    (SELECT count(*) FROM campaign_audience)                               AS campaign_audience,
    (SELECT count(*) FROM messages WHERE direction = 'outbound')           AS messages_outbound,
    (SELECT count(*) FROM messages WHERE direction = 'inbound')            AS messages_inbound,
    (SELECT count(*) FROM incoming_messages)                               AS incoming_messages,
    (SELECT count(*) FROM webhook_events)                                  AS webhook_events,
    (SELECT count(*) FROM webhook_events WHERE organization_id IS NULL)    AS webhook_events_unrouted,
    (SELECT count(*) FROM quarantine WHERE resolved_at IS NULL)            AS quarantine_open,
    (SELECT count(*) FROM quarantine WHERE resolved_at IS NOT NULL)        AS quarantine_resolved
