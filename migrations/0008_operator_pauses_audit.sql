-- Operators' pauses (`stopcaster pause`, the dashboard): one row per paused account, read by
-- every worker every quarter second; the pause holds until `resume` deletes the row or `until`
-- passes (an expired row is ignored, and removed by the next pause or resume of the account).
-- `reason` is stored as typed; every reader escapes and bounds it before showing it.
CREATE TABLE stopcaster_operator_pauses (
    account   text PRIMARY KEY,
    reason    text NOT NULL,
    paused_by text NOT NULL,
    source    text NOT NULL,
    origin    text NOT NULL,
    until     timestamptz,
    paused_at timestamptz NOT NULL DEFAULT now()
);

-- The operators' actions: one row per enqueue, cancel, replay, pause, resume or stop, from the
-- command line, the dashboard or the API. Written once, never updated.
CREATE TABLE stopcaster_audit (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    action  text NOT NULL,
    actor   text NOT NULL,
    source  text NOT NULL,
    origin  text NOT NULL,
    target  text NOT NULL,
    count   bigint,
    outcome text NOT NULL,
    detail  text
);
CREATE INDEX stopcaster_audit_at ON stopcaster_audit (at);
