-- jobhook schema, version 7: no query scans a table. Every statement on a request or worker
-- path finds its rows through an index; tests/integration/test_query_plans.py checks the plan
-- of each named query in service/store/sqlite_queries.sql.

-- A list filtered by status, provider or action reads one page, in id order, from its index
-- (not the owner's whole history). These columns never change but status, so only a status
-- change pays for one more index entry.
CREATE INDEX tasks_owner_status ON tasks (owner, status, id);
CREATE INDEX tasks_owner_provider ON tasks (owner, provider, id);
CREATE INDEX tasks_owner_action ON tasks (owner, action, id);

-- /metrics: unfinished tasks by provider and status are counted in this index alone (it
-- replaces the one on status, which no query used; finished_at, always NULL here, makes it
-- cover the query's WHERE, which SQLite otherwise checks in the table), and the oldest
-- unfinished task is the first entry of the next one.
DROP INDEX tasks_unfinished;
CREATE INDEX tasks_unfinished_provider ON tasks (provider, status, finished_at)
    WHERE finished_at IS NULL;
CREATE INDEX tasks_unfinished_created ON tasks (created_at) WHERE finished_at IS NULL;

-- When the poller and the deliverer next have work: the first entry of an index on the time a
-- row becomes claimable (due, and any lease run out), not a pass over every unfinished task or
-- pending delivery after each round.
CREATE INDEX tasks_poll_ready ON tasks (max(next_poll_at, coalesce(poll_lease_until, 0)))
    WHERE finished_at IS NULL AND next_poll_at IS NOT NULL AND provider_task_id IS NOT NULL;
CREATE INDEX outbox_ready ON outbox (max(next_attempt_at, coalesce(lease_until, 0)))
    WHERE status = 'pending';

-- The delivery log filtered by status or task; an endpoint's pending rows (buried when it is
-- deleted or disabled).
CREATE INDEX outbox_owner_status ON outbox (owner, status, id);
CREATE INDEX outbox_owner_task ON outbox (owner, task_id, id);
CREATE INDEX outbox_pending_subscriber ON outbox (subscriber) WHERE status = 'pending';

-- An owner's live endpoints in id order (the list, and who hears of each ingested change).
DROP INDEX endpoints_owner;
CREATE INDEX endpoints_live ON endpoints (owner, id) WHERE deleted_at IS NULL;

-- Finished tasks by provider and status, kept by triggers: they only ever grow, and /metrics
-- must not count them on every scrape. A task finishes once (no move leaves a finished status).
CREATE TABLE task_counts (
    provider TEXT NOT NULL,
    status   TEXT NOT NULL,
    n        INTEGER NOT NULL,
    PRIMARY KEY (provider, status)
) WITHOUT ROWID;
INSERT INTO task_counts
    SELECT provider, status, count(*) FROM tasks WHERE finished_at IS NOT NULL
    GROUP BY provider, status;

CREATE TRIGGER task_counts_insert AFTER INSERT ON tasks
WHEN NEW.finished_at IS NOT NULL
BEGIN
    INSERT INTO task_counts VALUES (NEW.provider, NEW.status, 1)
    ON CONFLICT (provider, status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER task_counts_finish AFTER UPDATE OF status, finished_at ON tasks
WHEN OLD.finished_at IS NULL AND NEW.finished_at IS NOT NULL
BEGIN
    INSERT INTO task_counts VALUES (NEW.provider, NEW.status, 1)
    ON CONFLICT (provider, status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER task_counts_delete AFTER DELETE ON tasks
WHEN OLD.finished_at IS NOT NULL
BEGIN
    UPDATE task_counts SET n = n - 1 WHERE provider = OLD.provider AND status = OLD.status;
END;

-- Deliveries by status, kept by triggers (dead ones pile up, pending ones are the deliverer's
-- queue): a status changes once per delivery (or per manual retry), not on each attempt.
CREATE TABLE delivery_counts (
    status TEXT PRIMARY KEY,
    n      INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO delivery_counts SELECT status, count(*) FROM outbox GROUP BY status;

CREATE TRIGGER delivery_counts_insert AFTER INSERT ON outbox
BEGIN
    INSERT INTO delivery_counts VALUES (NEW.status, 1)
    ON CONFLICT (status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER delivery_counts_update AFTER UPDATE OF status ON outbox
WHEN NEW.status != OLD.status
BEGIN
    UPDATE delivery_counts SET n = n - 1 WHERE status = OLD.status;
    INSERT INTO delivery_counts VALUES (NEW.status, 1)
    ON CONFLICT (status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER delivery_counts_delete AFTER DELETE ON outbox
BEGIN
    UPDATE delivery_counts SET n = n - 1 WHERE status = OLD.status;
END;
