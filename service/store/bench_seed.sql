-- `jobhook bench` lookup and scale (service/bench_lookup.py): finished tasks written straight
-- into a migrated schema, as the stores would have left them, and what the database then
-- weighs. Not the store's statements: nothing on a request or worker path runs these.
--
-- A seeded task is what an `imagine` on the simulator leaves (service/store/sqlite.py's
-- `_create`, then four applied changes): SUCCESS, progress 100, version and sequence 5, its
-- provider task id, the result with 4 image URLs and a grid, next_poll_at NULL, and 5 events
-- (tests/integration/test_bench_lookup.py holds it against a real one). bench_lookup.py gives
-- the values positionally (the fastest way through sqlite3's executemany), in the order of its
-- TASK_COLUMNS and EVENT_COLUMNS (but dedupe_seq, PostgreSQL's own); PostgreSQL is seeded
-- with COPY (asyncpg's copy_records_to_table) of the same rows, on those columns.


-- == SQLite =======================================================================================

-- The seeding connection only: a crash may lose the bench's database, nothing else.
-- name: sqlite_seed_synchronous
PRAGMA synchronous = OFF;

-- 256 MiB of page cache for the seeding connection (the index on provider_task_id takes its
-- uuids in random order).
-- name: sqlite_seed_cache
PRAGMA cache_size = -262144;

-- name: sqlite_seed_task
INSERT INTO tasks (id, owner, provider, action, status, progress, provider_task_id, params,
                   result, callback_events, modal_entered, version, sequence, created_at,
                   updated_at, finished_at, status_since)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: sqlite_seed_event
INSERT INTO events (id, task_id, source, type, outcome, from_status, to_status, progress,
                    received_at, detail, dedupe_key)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: seed_has_tasks
SELECT EXISTS (SELECT 1 FROM tasks);

-- Everything in the WAL copied into the database file, and the WAL cut to nothing.
-- name: sqlite_checkpoint
PRAGMA wal_checkpoint(TRUNCATE);

-- Bytes of each table with its indexes (the dbstat virtual table: absent from some builds).
-- name: sqlite_table_bytes
SELECT m.tbl_name AS name, sum(s.pgsize) AS bytes
FROM dbstat s JOIN sqlite_master m ON m.name = s.name
WHERE m.tbl_name IN ('tasks', 'events')
GROUP BY m.tbl_name;


-- == PostgreSQL ===================================================================================

-- The seeding connections only (a crash loses the bench's last commits, nothing else).
-- name: pg_seed_synchronous_commit
SET synchronous_commit = off;

-- Once seeded: what autovacuum would have done since (statistics for the planner; hint bits
-- and the visibility map set, so that the first read of a row does not write its page).
-- name: pg_vacuum_analyze
VACUUM (ANALYZE);

-- name: pg_database_bytes
SELECT pg_database_size(current_database());

-- name: pg_table_bytes
SELECT relname AS name, pg_total_relation_size(oid) AS bytes
FROM pg_class WHERE relname IN ('tasks', 'events') AND relkind = 'r';
