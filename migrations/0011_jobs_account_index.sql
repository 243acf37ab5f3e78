-- The account page (/accounts/NAME) and `report --account` look a job up by its account: an
-- index, so that a name on a table of millions of jobs is found without a scan.
CREATE INDEX caster_stop_jobs_account ON caster_stop_jobs (account, created_at DESC);
