-- One row per dead letter put back on the work queue by `stopcaster dead-letters replay`
-- (the audit trail of operator replays; `caster_stop_jobs.replays` counts the reopenings).
CREATE TABLE caster_stop_replays (
    replay_id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- No foreign key: a dead letter may name a job that never got a row (for example one
    -- RabbitMQ dead-lettered itself after its delivery limit).
    job_id              uuid NOT NULL,
    replayed_at         timestamptz NOT NULL DEFAULT now(),
    -- The row as the replay found it; NULL when there was no row.
    previous_status     text,
    previous_error_code text,
    -- The dead letter's x-stopcaster-reason header.
    reason              text,
    -- True when the replay reopened the row (a failed job back to pending, or a rejected
    -- message's dead letter cleared so that the worker rejects it again).
    reopened            boolean NOT NULL
);

CREATE INDEX caster_stop_replays_job ON caster_stop_replays (job_id, replayed_at);
