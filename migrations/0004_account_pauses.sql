-- Accounts paused by a worker because their credentials were refused (README, "Credentials
-- refused"), so that the dashboard and operators see what each worker's /readyz says. A row is
-- refreshed at each refused probe (at most a minute apart) and removed when the account
-- resumes or the worker stops; a row not refreshed for minutes belongs to a worker that died.
CREATE TABLE stopcaster_account_pauses (
    account    text NOT NULL,
    worker     text NOT NULL,
    code       text NOT NULL,
    paused_at  timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, worker)
);
