-- The dashboard (src/store/dashboard.rs): keyset pagination over every filter it offers, and
-- job counts that do not grow with the table.

-- Lists are ordered (created_at DESC, job_id DESC) and paged by a row comparison on that pair,
-- so each filter gets an index ending with it. Each of these starts with the columns of an
-- index of 0001, which it replaces (a prefix of it serves every query the old one did).
CREATE INDEX caster_stop_jobs_created_key ON caster_stop_jobs (created_at DESC, job_id DESC);
CREATE INDEX caster_stop_jobs_status_key ON caster_stop_jobs (status, created_at DESC, job_id DESC);
CREATE INDEX caster_stop_jobs_caster_key ON caster_stop_jobs (caster_id, created_at DESC, job_id DESC);
DROP INDEX caster_stop_jobs_created;
DROP INDEX caster_stop_jobs_status;
DROP INDEX caster_stop_jobs_caster;
-- caster_stop_jobs_batch (batch_id, status) stays: the report's batch summary counts through it.
CREATE INDEX caster_stop_jobs_batch_key ON caster_stop_jobs (batch_id, created_at DESC, job_id DESC);
CREATE INDEX caster_stop_jobs_error_key ON caster_stop_jobs (error_code, created_at DESC, job_id DESC)
    WHERE error_code IS NOT NULL;
-- "Which job made the call with this RequestId?": every RequestId a job row holds (request_id,
-- evidence_request_id) is also its attempt's, so the attempts answer it.
CREATE INDEX caster_stop_attempts_request ON caster_stop_attempts (request_id)
    WHERE request_id IS NOT NULL;

-- Jobs by batch and status, kept by triggers as a ledger of changes: each insert, status
-- change and delete of a job adds rows (+1 / -1) here, so writers never wait on one another
-- for a shared counter; the sums are the counts. Counting a million jobs by status takes a
-- quarter of a second, reading this takes a millisecond. The dashboard folds the ledger
-- (one row per batch and status) from time to time; the sums are exact at any moment.
CREATE TABLE caster_stop_job_counts (
    batch_id   text,
    status     text NOT NULL,
    jobs       bigint NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX caster_stop_job_counts_batch ON caster_stop_job_counts (batch_id);

CREATE FUNCTION caster_stop_job_counts_track() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO caster_stop_job_counts (batch_id, status, jobs) VALUES (OLD.batch_id, OLD.status, -1);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO caster_stop_job_counts (batch_id, status, jobs) VALUES (NEW.batch_id, NEW.status, 1);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION caster_stop_job_counts_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM caster_stop_job_counts;
    RETURN NULL;
END $$;

-- Nobody may write a job between the seed below and the triggers taking over.
LOCK TABLE caster_stop_jobs IN SHARE ROW EXCLUSIVE MODE;

CREATE TRIGGER caster_stop_job_counts_insert AFTER INSERT ON caster_stop_jobs
    FOR EACH ROW EXECUTE FUNCTION caster_stop_job_counts_track();
CREATE TRIGGER caster_stop_job_counts_update AFTER UPDATE OF status, batch_id ON caster_stop_jobs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.batch_id IS DISTINCT FROM NEW.batch_id)
    EXECUTE FUNCTION caster_stop_job_counts_track();
CREATE TRIGGER caster_stop_job_counts_delete AFTER DELETE ON caster_stop_jobs
    FOR EACH ROW EXECUTE FUNCTION caster_stop_job_counts_track();
CREATE TRIGGER caster_stop_job_counts_truncate AFTER TRUNCATE ON caster_stop_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION caster_stop_job_counts_truncate();

INSERT INTO caster_stop_job_counts (batch_id, status, jobs, changed_at)
SELECT batch_id, status, count(*), max(updated_at) FROM caster_stop_jobs GROUP BY batch_id, status;
