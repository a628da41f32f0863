-- Per-session staging tables: a batch is COPY'd (binary) into them, then upserted with
-- INSERT ... SELECT. Measured faster than UNNEST of parameter arrays (benchmarks/README).
-- ON COMMIT DELETE ROWS empties them at the end of every transaction; the DELETEs below
-- (nothing to do, usually) empty them for a second write in the same transaction.
-- JIT compilation is off for the batch: the bulk upserts cross jit_above_cost, and
-- compiling them costs more than it saves (measured: ~40 ms per 5,000-event batch).
SET LOCAL jit = off;
CREATE TEMP TABLE IF NOT EXISTS wahook_stage_events (
    org bigint, field text, kind text, type text, wamid text, status text, waba text,
    pnid text, at float8, payload text, raw bytea, ckey bytea, dkey bytea, src text,
    recv float8
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS wahook_stage_statuses (
    org bigint, wamid text, phone text, uid text, status text, rank int2, skey bytea,
    s_at float8, d_at float8, r_at float8, p_at float8, f_at float8, ecode text,
    etitle text, emsg text, errs text, pricing text, pkey bytea, conv_id text, conv text,
    ckey bytea, opaque text
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS wahook_stage_incoming (
    org bigint, wamid text, phone text, uid text, pname text, type text, content text,
    media_id text, mime text, sha text, fname text, itype text, idata text, rmid text,
    remoji text, loc text, contacts text, ord text, ref text, ctx text, ctx_from text,
    at float8, pnid text, payload text, raw bytea, ckey bytea
) ON COMMIT DELETE ROWS;
DELETE FROM wahook_stage_events;
DELETE FROM wahook_stage_statuses;
DELETE FROM wahook_stage_incoming;
