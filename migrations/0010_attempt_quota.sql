-- The answer's quota header on its attempt (issue 20): `Limit` and `Remain` of the header that
-- binds the call (`x-ratelimit-user-api`, or `x-ratelimit-user` when it has fewer calls left),
-- written by the UPDATE that finishes the attempt. The dashboard, another process than the
-- worker that read them, draws each account's latest `Limit` as its chart's quota line and
-- shows both. NULL: no answer, or an answer without a readable header.
ALTER TABLE caster_stop_attempts
    ADD COLUMN quota_limit integer,
    ADD COLUMN quota_remain integer;
