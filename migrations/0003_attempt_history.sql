-- Verdicts read the attempt history (issue: a job's conclusion must not depend on which worker
-- made which attempt), and calls refused for their credentials spend no attempt budget.

-- Whether the attempt may have reached the API without our seeing its answer (a timeout, a
-- lost response, a crash mid-call): the evidence that makes a later IncorrectSceneStatus a
-- success. Written with the outcome, from the same rule the worker decides by.
ALTER TABLE caster_stop_attempts ADD COLUMN outcome_unknown boolean NOT NULL DEFAULT false;
UPDATE caster_stop_attempts SET outcome_unknown = true
 WHERE outcome IS NULL
    OR (outcome = 'transport-error' AND error_code IS DISTINCT FROM 'Transport.Connect');

ALTER TABLE caster_stop_attempts DROP CONSTRAINT caster_stop_attempts_outcome_check;
ALTER TABLE caster_stop_attempts ADD CONSTRAINT caster_stop_attempts_outcome_check
    CHECK (outcome IN ('ok', 'retryable', 'permanent', 'transport-error', 'credentials-refused'));

-- Calls answered with a credentials or clock refusal: counted in `attempts` (they are calls)
-- but added back to the budget, since they were not the job's fault.
ALTER TABLE caster_stop_jobs ADD COLUMN refused_attempts integer NOT NULL DEFAULT 0;
