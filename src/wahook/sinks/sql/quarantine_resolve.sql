UPDATE quarantine SET resolved_at = now()
WHERE id = ANY($1::bigint[]) AND resolved_at IS NULL
