-- Jobs parked while their account is paused (issue 18; docs/RELIABILITY.md, "Outages"). A job
-- that has waited on a paused account for `STOPCASTER_PARK_AFTER_S` stays `pending` (no call
-- made for it, cancellable as before) but its delivery is acknowledged once `parked_until` is
-- committed: waiting never outlives RabbitMQ's consumer_timeout. The stager hands a parked
-- row back to the queue when `parked_until` comes (the account's next probe, at most a minute
-- away) or at once when the account resumes, and clears it.
ALTER TABLE caster_stop_jobs ADD COLUMN parked_until timestamptz;

-- The stager's claim (`status = 'pending' AND parked_until <= now() ORDER BY parked_until`)
-- and its sleep (`min(parked_until)`) read only this small index.
CREATE INDEX caster_stop_jobs_parked ON caster_stop_jobs (parked_until)
    WHERE status = 'pending' AND parked_until IS NOT NULL;
