-- One row per job, including malformed messages (see CONTRACT.md, "Results in Postgres").
CREATE TABLE caster_stop_jobs (
    job_id         uuid PRIMARY KEY,
    caster_id      text,
    region_id      text,
    batch_id       text,
    account        text,
    status         text NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'succeeded', 'failed', 'rejected')),
    -- How a terminal status was reached: stopped | stopped-by-unanswered-attempt |
    -- api-error | retries-exhausted | rejected.
    conclusion     text,
    request_id     text,
    -- For stopped-by-unanswered-attempt: the RequestId of the IncorrectSceneStatus answer that
    -- proved an earlier, unanswered attempt stopped the studio.
    evidence_request_id text,
    error_code     text,
    error_message  text,
    http_status    integer,
    attempts       integer NOT NULL DEFAULT 0,
    -- Attempts allowed before a retryable failure is given up: raised by a replay.
    attempt_budget integer,
    replays        integer NOT NULL DEFAULT 0,
    -- Earliest start of the next attempt (backoff that outlives a delivery).
    next_attempt_at timestamptz,
    -- The worker holding the job for a call, until when (keeps two replicas that hold copies
    -- of the same job from calling at once; expires if that worker dies).
    claimed_by     text,
    claimed_until  timestamptz,
    -- When the dead letter of a failed or rejected job was confirmed by the broker; a
    -- redelivery of a terminal job without it publishes it again.
    dead_lettered_at timestamptz,
    payload        text NOT NULL,
    -- True when the body was not valid UTF-8 or held NUL: `payload` is then escaped
    -- (\\ for a backslash, \xNN for NUL and for each byte that is not UTF-8).
    payload_escaped boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz
);

CREATE INDEX caster_stop_jobs_batch ON caster_stop_jobs (batch_id, status);
CREATE INDEX caster_stop_jobs_caster ON caster_stop_jobs (caster_id, created_at DESC);
CREATE INDEX caster_stop_jobs_status ON caster_stop_jobs (status, created_at DESC);
CREATE INDEX caster_stop_jobs_created ON caster_stop_jobs (created_at DESC);

-- One row per StopCaster call, written before the call and completed after it.
CREATE TABLE caster_stop_attempts (
    job_id        uuid NOT NULL REFERENCES caster_stop_jobs (job_id),
    attempt       integer NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at   timestamptz,
    http_status   integer,
    request_id    text,
    error_code    text,
    error_message text,
    -- NULL while the call is in flight; a row left NULL by a crash becomes transport-error
    -- with error_code 'Interrupted' when the job is picked up again.
    outcome       text CHECK (outcome IN ('ok', 'retryable', 'permanent', 'transport-error')),
    worker        text,
    PRIMARY KEY (job_id, attempt)
);

CREATE INDEX caster_stop_attempts_started ON caster_stop_attempts (started_at DESC);

-- Shared GCRA schedule per account (src/pacer.rs).
CREATE TABLE stopcaster_pacer (
    account      text PRIMARY KEY,
    tat          timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_slot    timestamptz,
    slowdown     double precision NOT NULL DEFAULT 1.0,
    throttled_at timestamptz
);
