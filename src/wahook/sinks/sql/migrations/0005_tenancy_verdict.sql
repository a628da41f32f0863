-- Tenancy verdicts (wahook.verdict): whose items a body may carry travels with it, and the
-- quarantine keeps it for what it holds.
--
-- kind 'forged':     an item routed to an organization its body's verdict does not allow
--                    (signed with another tenant's app secret). Never applied by replay.
-- kind 'unverified': an item of a body that carried no verdict (queued or dead-lettered
--                    before verdicts existed). Applied only when an operator says whose
--                    data it is: `wahook replay --quarantine --any-organization` or
--                    `--organization N`.
-- kind 'tenant':     as before (no organization yet), now with the verdict of its body;
--                    replay applies it once its organization exists *and* the verdict
--                    allows that organization.
-- kind 'test':       items of the phone number id reserved for `wahook check` samples: test
--                    traffic, kept apart from real data, never applied.
ALTER TABLE quarantine ADD COLUMN verdict text;
ALTER TABLE quarantine DROP CONSTRAINT quarantine_kind_check;
ALTER TABLE quarantine ADD CONSTRAINT quarantine_kind_check
    CHECK (kind IN ('problem', 'tenant', 'poison', 'forged', 'unverified', 'test'));

-- Open rows of unknown tenants stored before this migration were accepted without a
-- verdict: any organization's secret that verified their body let them in. They wait for
-- an operator's word like every other body without a verdict.
UPDATE quarantine SET verdict = 'unverified'
WHERE kind = 'tenant' AND resolved_at IS NULL;
