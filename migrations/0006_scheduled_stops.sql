-- Scheduled stops and cancel (issue 12; README "Scheduled stops"). A job whose `not_before` is
-- in the future is held here as `scheduled`, its delivery acknowledged once this row is
-- committed; a stager on every worker hands due rows back to the queue (`staged_at`) and marks
-- them `pending`. `cancel` turns a job not yet called into `cancelled`, with who and when.

ALTER TABLE caster_stop_jobs DROP CONSTRAINT caster_stop_jobs_status_check;
ALTER TABLE caster_stop_jobs ADD CONSTRAINT caster_stop_jobs_status_check
    CHECK (status IN ('scheduled', 'pending', 'succeeded', 'failed', 'rejected', 'cancelled'));

-- The due time the message carried (`not_before`): no call is made before it.
ALTER TABLE caster_stop_jobs ADD COLUMN not_before timestamptz;
-- When a scheduled row was handed to the queue (by the stager, or by a delivery that found it
-- due): the job was held by the schedule.
ALTER TABLE caster_stop_jobs ADD COLUMN staged_at timestamptz;
ALTER TABLE caster_stop_jobs ADD COLUMN cancelled_at timestamptz;
-- `user@host` of whoever ran `cancel`.
ALTER TABLE caster_stop_jobs ADD COLUMN cancelled_by text;

-- The stager's claim (`status = 'scheduled' AND not_before <= now() + lead ORDER BY
-- not_before`) and its sleep (`min(not_before)`) read only this small index.
CREATE INDEX caster_stop_jobs_due ON caster_stop_jobs (not_before) WHERE status = 'scheduled';
-- Jobs handed to the queue and not yet called: the stager's backlog, bounded.
CREATE INDEX caster_stop_jobs_staged ON caster_stop_jobs (staged_at)
    WHERE status = 'pending' AND staged_at IS NOT NULL AND attempts = 0;
