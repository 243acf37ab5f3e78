-- The calls of each account's shared schedule over the last seconds, by their slot on the
-- database's clock (issue 20). An answer's quota header (`Remain`) counts every call of the
-- account in the gateway's current second; taking away the calls of every worker of the
-- schedule, not only this worker's, leaves another caller's, for whom the pacer leaves room.
-- Rows older than a few seconds are deleted as calls are recorded; nothing here needs to
-- survive a crash, hence UNLOGGED (no WAL, like the pacer's own commits).
CREATE UNLOGGED TABLE stopcaster_recent_calls (
    account text NOT NULL,
    slot timestamptz NOT NULL
);
CREATE INDEX stopcaster_recent_calls_account_slot ON stopcaster_recent_calls (account, slot);
