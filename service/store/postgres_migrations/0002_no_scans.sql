-- jobhook schema for PostgreSQL, version 2: /metrics never counts whole tables (as SQLite's
-- 0007_no_scans). Finished tasks (by provider and status) and deliveries (by status) are read
-- from counters that triggers keep; unfinished tasks, the working set, are counted in a partial
-- index. tests/integration/test_query_plans_postgres.py checks the plan of every named query.
--
-- Runs in the migrating process's transaction, under the migrations' advisory lock (one process
-- migrates, the others then find version 2). Processes of the previous version may be writing
-- meanwhile: the lock below makes their writes wait for this transaction (reads go on), so every
-- row is counted exactly once, either by the initial counts below or, once this commits, by the
-- triggers. The new index is built under the same lock (a pass over tasks, once).
LOCK TABLE tasks, outbox IN SHARE ROW EXCLUSIVE MODE;

-- Unfinished tasks by provider and status, counted in this index alone (an index-only scan of
-- the working set, never of the finished history).
CREATE INDEX tasks_unfinished_provider ON tasks (provider, status) WHERE finished_at IS NULL;

-- The counters are kept by statement-level triggers: each statement that writes tasks or outbox
-- rows adds up what it changed (its transition tables) and changes each counter once, whatever
-- the number of rows (an endpoint's thousands of pending deliveries buried at once, an import
-- of finished tasks); a row trigger would change the same counter once per row, and the versions
-- of a row changed many times in one transaction make each next change slower.
--
-- Contention. A counter row is a hot row: the transaction that changes it holds its lock until
-- it commits, and another transaction that changes the same row waits until then (its commit's
-- round trip and WAL flush). That is acceptable here because each count changes rarely per task
-- or delivery: a task is counted when it finishes, once (no move leaves a finished status); a
-- delivery's status changes once (pending -> delivered or dead; a manual retry sends it back),
-- never on an attempt that fails and will be tried again; every other write (progress, polls,
-- leases, attempts) changes no count and locks no counter row. Still, every delivery written
-- adds one to `pending`, and every task finished one to its provider and status: with many
-- processes, every ingest that announces a change or finishes a task would queue on one row. So
-- each count is spread over 16 rows (`slot`: the backend's pid modulo 16, the same for all of a
-- transaction's changes), which readers add up: two transactions wait for each other only when
-- their connections share a slot. A statement locks its counter rows in one order (by key), and
-- the one statement that changes both tables' counts (ingest's write_change: a task finished and
-- its deliveries written) changes them in the same order each time, so the counters add no
-- deadlock. fillfactor: room on each page for a row's next versions (HOT updates, pruned in
-- place).

-- Finished tasks by provider and status.
CREATE TABLE task_counts (
    provider text NOT NULL,
    status   text NOT NULL,
    slot     smallint NOT NULL,
    n        bigint NOT NULL,
    PRIMARY KEY (provider, status, slot)
) WITH (fillfactor = 50);

-- A task is counted while it is finished (finished_at is set exactly when its status is final).
CREATE FUNCTION task_counts_keep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO task_counts AS c (provider, status, slot, n)
        SELECT provider, status, pg_backend_pid() % 16, count(*) FROM new_rows
        WHERE finished_at IS NOT NULL
        GROUP BY provider, status ORDER BY provider, status
        ON CONFLICT (provider, status, slot) DO UPDATE SET n = c.n + excluded.n;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO task_counts AS c (provider, status, slot, n)
        SELECT provider, status, pg_backend_pid() % 16, sum(d) FROM (
            SELECT provider, status, -1 AS d FROM old_rows WHERE finished_at IS NOT NULL
            UNION ALL
            SELECT provider, status, 1 FROM new_rows WHERE finished_at IS NOT NULL) changed
        GROUP BY provider, status HAVING sum(d) <> 0 ORDER BY provider, status
        ON CONFLICT (provider, status, slot) DO UPDATE SET n = c.n + excluded.n;
    ELSE
        INSERT INTO task_counts AS c (provider, status, slot, n)
        SELECT provider, status, pg_backend_pid() % 16, -count(*) FROM old_rows
        WHERE finished_at IS NOT NULL
        GROUP BY provider, status ORDER BY provider, status
        ON CONFLICT (provider, status, slot) DO UPDATE SET n = c.n + excluded.n;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER task_counts_insert AFTER INSERT ON tasks
REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION task_counts_keep();
CREATE TRIGGER task_counts_update AFTER UPDATE ON tasks
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION task_counts_keep();
CREATE TRIGGER task_counts_delete AFTER DELETE ON tasks
REFERENCING OLD TABLE AS old_rows
FOR EACH STATEMENT EXECUTE FUNCTION task_counts_keep();

-- Deliveries (outbox rows) by status.
CREATE TABLE delivery_counts (
    status text NOT NULL,
    slot   smallint NOT NULL,
    n      bigint NOT NULL,
    PRIMARY KEY (status, slot)
) WITH (fillfactor = 50);

CREATE FUNCTION delivery_counts_keep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO delivery_counts AS c (status, slot, n)
        SELECT status, pg_backend_pid() % 16, count(*) FROM new_rows
        GROUP BY status ORDER BY status
        ON CONFLICT (status, slot) DO UPDATE SET n = c.n + excluded.n;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO delivery_counts AS c (status, slot, n)
        SELECT status, pg_backend_pid() % 16, sum(d) FROM (
            SELECT status, -1 AS d FROM old_rows
            UNION ALL
            SELECT status, 1 FROM new_rows) changed
        GROUP BY status HAVING sum(d) <> 0 ORDER BY status
        ON CONFLICT (status, slot) DO UPDATE SET n = c.n + excluded.n;
    ELSE
        INSERT INTO delivery_counts AS c (status, slot, n)
        SELECT status, pg_backend_pid() % 16, -count(*) FROM old_rows
        GROUP BY status ORDER BY status
        ON CONFLICT (status, slot) DO UPDATE SET n = c.n + excluded.n;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER delivery_counts_insert AFTER INSERT ON outbox
REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION delivery_counts_keep();
CREATE TRIGGER delivery_counts_update AFTER UPDATE ON outbox
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION delivery_counts_keep();
CREATE TRIGGER delivery_counts_delete AFTER DELETE ON outbox
REFERENCING OLD TABLE AS old_rows
FOR EACH STATEMENT EXECUTE FUNCTION delivery_counts_keep();

-- A table emptied at once (by hand: jobhook never truncates) empties its counters too.
CREATE FUNCTION counts_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'tasks' THEN
        DELETE FROM task_counts;
    ELSE
        DELETE FROM delivery_counts;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER task_counts_truncate AFTER TRUNCATE ON tasks
FOR EACH STATEMENT EXECUTE FUNCTION counts_truncate();
CREATE TRIGGER delivery_counts_truncate AFTER TRUNCATE ON outbox
FOR EACH STATEMENT EXECUTE FUNCTION counts_truncate();

-- The rows already there (no write can come between: see the lock above), in slot 0.
INSERT INTO task_counts
    SELECT provider, status, 0, count(*) FROM tasks WHERE finished_at IS NOT NULL
    GROUP BY provider, status;
INSERT INTO delivery_counts SELECT status, 0, count(*) FROM outbox GROUP BY status;
