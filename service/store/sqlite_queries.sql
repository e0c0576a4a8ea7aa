-- The SQLite store's statements, by name (service/store/queries.py reads them). Each one a
-- request or a worker runs finds its rows through an index: tests/integration/
-- test_query_plans.py checks every plan, and fails on a name it does not check.


-- == Connections ==================================================================================
-- PRAGMAs take no bound parameters: one block per setting (the busy timeout is sqlite3.connect's
-- `timeout`).

-- name: wal
PRAGMA journal_mode = WAL;

-- name: synchronous_normal
PRAGMA synchronous = NORMAL;

-- name: synchronous_full
PRAGMA synchronous = FULL;

-- name: foreign_keys
PRAGMA foreign_keys = ON;

-- name: query_only
PRAGMA query_only = ON;

-- name: create_schema_version
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);

-- name: schema_version
SELECT max(version) FROM schema_version;


-- == Submitting a task (the writer) ===============================================================

-- name: find_idempotency_key
SELECT request_hash, task_id FROM idempotency_keys WHERE owner = :owner AND key = :key;

-- name: insert_task
INSERT INTO tasks (id, owner, provider, action, status, params, parent_id, metadata,
                   callback_url, callback_events, created_at, updated_at, status_since)
VALUES (:id, :owner, :provider, :action, 'NOT_START', :params, :parent_id, :metadata,
        :callback_url, :callback_events, :created_at, :created_at, :status_since);

-- name: insert_idempotency_key
INSERT INTO idempotency_keys (owner, key, request_hash, task_id, created_at)
VALUES (:owner, :key, :request_hash, :task_id, :created_at);

-- name: task_by_id
SELECT * FROM tasks WHERE id = :id;


-- == Ingest (the writer) ==========================================================================

-- The task, how many events already carry the observation's dedupe key (0, 1, or 2: at most
-- two are looked at), and the owner's live endpoints: one statement, since each statement
-- hands the GIL to the event loop.
-- name: load_for_ingest
SELECT t.*,
       (SELECT count(*) FROM (SELECT 1 FROM events
         WHERE task_id = t.id AND dedupe_key = :dedupe_key LIMIT 2)) AS seen,
       (SELECT json_group_array(json_array(e.id, e.url, json(e.events))) FROM endpoints e
         WHERE e.owner = t.owner AND e.disabled_at IS NULL AND e.deleted_at IS NULL) AS endpoints
FROM tasks t WHERE t.id = :task_id;

-- name: insert_event
INSERT INTO events (id, task_id, source, type, outcome, from_status, to_status, progress,
                    received_at, detail, dedupe_key, raw)
VALUES (:id, :task_id, :source, :type, :outcome, :from_status, :to_status, :progress,
        :received_at, :detail, :dedupe_key, :raw);

-- One more replay of a delivery recorded twice: counted on the latest event with its key
-- (max(id), not ORDER BY id: the key's index gives rows in rowid order, and max needs no sort).
-- name: count_repeat
UPDATE events SET repeats = repeats + 1
WHERE id = (SELECT max(id) FROM events WHERE task_id = :task_id AND dedupe_key = :dedupe_key)
RETURNING *;

-- Every column a change may touch, guarded by the version the change was planned on.
-- name: update_task
UPDATE tasks SET status = :status, progress = :progress, modal_entered = :modal_entered,
       version = :version, sequence = :sequence, updated_at = :updated_at, result = :result,
       params = :params, error = :error, finished_at = :finished_at,
       provider_task_id = :provider_task_id, status_since = :status_since,
       next_poll_at = :next_poll_at, poll_attempts = :poll_attempts,
       poll_lease_until = :poll_lease_until,
       previous_provider_task_id = :previous_provider_task_id
WHERE id = :id AND version = :old_version;

-- name: insert_outbox
INSERT INTO outbox (id, task_id, owner, subscriber, url, event_type, sequence, payload,
                    next_attempt_at, created_at)
VALUES (:id, :task_id, :owner, :subscriber, :url, :event_type, :sequence, :payload,
        :next_attempt_at, :created_at);


-- == Polls, timers and the modal call =============================================================

-- name: reschedule_poll
UPDATE tasks SET next_poll_at = :next_poll_at, poll_attempts = :attempts,
       poll_lease_until = CASE WHEN :release THEN NULL ELSE poll_lease_until END
WHERE id = :id AND finished_at IS NULL;

-- One statement: the writer is this process's only writer, and BEGIN IMMEDIATE holds the
-- database lock against other processes, so a claimed row is nobody else's until the lease runs
-- out. `skip`: a JSON array of providers not to claim for (held by Retry-After).
-- name: claim_due_polls
UPDATE tasks SET poll_lease_until = :lease_until WHERE id IN (
    SELECT id FROM tasks
    WHERE finished_at IS NULL AND next_poll_at <= :now AND provider_task_id IS NOT NULL
      AND (poll_lease_until IS NULL OR poll_lease_until <= :now)
      AND provider NOT IN (SELECT value FROM json_each(:skip))
    ORDER BY next_poll_at LIMIT :limit)
RETURNING id, provider, provider_task_id, status, poll_attempts, next_poll_at, modal_entered;

-- The first entry of tasks_poll_ready: when a task is next due and not leased.
-- name: next_poll_due
SELECT min(max(next_poll_at, coalesce(poll_lease_until, 0))) FROM tasks
WHERE finished_at IS NULL AND next_poll_at IS NOT NULL AND provider_task_id IS NOT NULL;

-- Each task lands at a random point of the spread, so a restart with many unfinished tasks does
-- not poll them all in one burst. Once per start, over every unfinished task by design: the `+`
-- keeps SQLite from reading them out of the index on provider_task_id, which holds every task.
-- name: reschedule_unfinished
UPDATE tasks SET next_poll_at = min(coalesce(next_poll_at, :now),
                                    :now + (abs(random()) % 1000000) / 1000000.0 * :spread)
WHERE finished_at IS NULL AND +provider_task_id IS NOT NULL;

-- Unfinished tasks past their status's limit: one index range per status (tasks_status_since),
-- not a pass over every unfinished task. `skip`: a JSON array of task ids parked by the timers.
-- name: due_timers
SELECT id, status FROM (
    SELECT id, status FROM tasks
    WHERE finished_at IS NULL AND status = 'MODAL' AND status_since <= :modal_since
      AND (modal_call_at IS NULL OR modal_call_at <= :modal_call_before)
    UNION ALL
    SELECT id, status FROM tasks
    WHERE finished_at IS NULL AND status = 'NOT_START' AND status_since <= :submit_since
    UNION ALL
    SELECT id, status FROM tasks
    WHERE finished_at IS NULL AND status = 'SUBMITTED' AND status_since <= :queue_since
    UNION ALL
    SELECT id, status FROM tasks
    WHERE finished_at IS NULL AND status = 'IN_PROGRESS' AND status_since <= :run_since)
WHERE id NOT IN (SELECT value FROM json_each(:skip))
LIMIT :limit;

-- name: claim_modal
UPDATE tasks SET modal_call_at = :now
WHERE id = :id AND status = 'MODAL' AND (modal_call_at IS NULL OR modal_call_at <= :claimed_before);

-- name: release_modal
UPDATE tasks SET modal_call_at = NULL WHERE id = :id;

-- name: ping
SELECT 1;


-- == Reading tasks ================================================================================

-- A task by jobhook id or provider task id (the newest, should both match; also the provider
-- task a task followed before a modal call named a new one): three index lookups, then the
-- owner filter (`owner` NULL: any owner). Not `id = :ref OR provider_task_id = :ref`, which
-- SQLite may plan as a walk through the owner's tasks.
-- name: get_task
SELECT * FROM tasks WHERE id = (
    SELECT max(id) FROM (
        SELECT id FROM tasks WHERE id = :ref AND (:owner IS NULL OR owner = :owner)
        UNION ALL
        SELECT id FROM tasks
        WHERE provider_task_id = :ref AND (:owner IS NULL OR owner = :owner)
        UNION ALL
        SELECT id FROM tasks
        WHERE previous_provider_task_id = :ref AND (:owner IS NULL OR owner = :owner)));

-- A page of an owner's tasks, newest first: this head, the fragment of each filter given (see
-- SQLiteStore.list_tasks), then list_tasks_end.
-- name: list_tasks
SELECT * FROM tasks WHERE owner = :owner

-- One status: a page straight from tasks_owner_status.
-- name: list_tasks_status
AND status = :status

-- Several statuses (a JSON array).
-- name: list_tasks_statuses
AND status IN (SELECT value FROM json_each(:statuses))

-- name: list_tasks_provider
AND provider = :provider

-- name: list_tasks_action
AND action = :action

-- name: list_tasks_created_after
AND created_at >= :created_after

-- name: list_tasks_created_before
AND created_at < :created_before

-- The last id of the page before (the cursor, decoded).
-- name: list_tasks_cursor
AND id < :cursor

-- name: list_tasks_end
ORDER BY id DESC LIMIT :limit;

-- `after`: the cursor's event id, or '' for the first page.
-- name: list_events
SELECT * FROM events WHERE task_id = :task_id AND id > :after ORDER BY id LIMIT :limit;

-- name: changed_since
SELECT * FROM tasks WHERE updated_at >= :since ORDER BY updated_at LIMIT :limit;


-- == /readyz and /metrics =========================================================================

-- Polls and deliveries due now: two index ranges (every readiness probe runs this).
-- name: backlog
SELECT (SELECT count(*) FROM tasks
        WHERE finished_at IS NULL AND next_poll_at <= :now AND provider_task_id IS NOT NULL)
     + (SELECT count(*) FROM outbox WHERE status = 'pending' AND next_attempt_at <= :now);

-- Tasks by provider and status: finished ones from the counters the triggers of migration 0007
-- keep, unfinished ones counted in their partial index (the working set).
-- name: stats_tasks
SELECT provider, status, n FROM task_counts WHERE n > 0
UNION ALL
SELECT provider, status, count(*) FROM tasks WHERE finished_at IS NULL GROUP BY provider, status;

-- name: stats_polls_due
SELECT count(*) FROM tasks
WHERE finished_at IS NULL AND next_poll_at <= :now AND provider_task_id IS NOT NULL;

-- Deliveries not delivered, by status, from the counters; how many pending ones are due now.
-- name: stats_deliveries
SELECT status, n, CASE WHEN status = 'pending' THEN
         (SELECT count(*) FROM outbox WHERE status = 'pending' AND next_attempt_at <= :now)
       END AS due
FROM delivery_counts WHERE status != 'delivered' AND n > 0;

-- Seconds since the oldest unfinished task was created: the first entry of
-- tasks_unfinished_created (created_at is fixed-width UTC text, so its order is time order).
-- name: oldest_unfinished
SELECT (julianday('now') - julianday(min(created_at))) * 86400 FROM tasks
WHERE finished_at IS NULL;


-- == Endpoints ====================================================================================

-- name: insert_endpoint
INSERT INTO endpoints (id, owner, url, events, description, secret, created_at)
VALUES (:id, :owner, :url, :events, :description, :secret, :created_at);

-- name: endpoint_by_id
SELECT * FROM endpoints WHERE id = :id;

-- name: live_endpoint
SELECT * FROM endpoints WHERE id = :id AND owner = :owner AND deleted_at IS NULL;

-- name: list_endpoints
SELECT * FROM endpoints WHERE owner = :owner AND deleted_at IS NULL ORDER BY id;

-- name: delete_endpoint
UPDATE endpoints SET deleted_at = :now WHERE id = :id;

-- name: enable_endpoint
UPDATE endpoints SET disabled_at = NULL, disabled_reason = NULL, failing_since = NULL
WHERE id = :id;

-- name: rotate_secret
UPDATE endpoints SET secret = :secret, previous_secret = :previous_secret,
       previous_secret_until = :previous_secret_until
WHERE id = :id;

-- name: endpoint_secrets
SELECT secret, previous_secret, previous_secret_until FROM endpoints WHERE id = :id;

-- name: endpoint_recovered
UPDATE endpoints SET failing_since = NULL WHERE id = :id;

-- Since when the endpoint has failed without a single success (this failure's time if it is
-- the first).
-- name: endpoint_failing
UPDATE endpoints SET failing_since = coalesce(failing_since, :at) WHERE id = :id
RETURNING failing_since;

-- name: disable_endpoint
UPDATE endpoints SET disabled_at = :now, disabled_reason = :reason WHERE id = :id;


-- == Deliveries ===================================================================================

-- An endpoint's pending deliveries will never be sent (it was deleted or disabled).
-- name: bury
UPDATE outbox SET status = 'dead', last_error = :reason, lease_until = NULL
WHERE subscriber = :subscriber AND status = 'pending';

-- Lease due deliveries. Per task and subscriber only the earliest pending row is due, so a later
-- event is never delivered before an earlier one; per receiving URL at most :per_url are in
-- flight, counting :inflight (a JSON object: URL -> this process's attempts under way).
-- Bounded work whatever the backlog: the distinct URLs with pending rows are found by skipping
-- through outbox_pending_url (one probe per receiver), and per URL at most :per_url due rows are
-- read from it in due order; a row is first of its task and subscriber when its sequence is the
-- least pending one (a probe of outbox_pending_order).
-- name: claim_due_deliveries
WITH RECURSIVE urls(url) AS (
    SELECT (SELECT min(url) FROM outbox WHERE status = 'pending')
    UNION ALL
    SELECT (SELECT min(o.url) FROM outbox o WHERE o.status = 'pending' AND o.url > urls.url)
    FROM urls WHERE urls.url IS NOT NULL
),
candidates AS (
    SELECT c.id, c.url, c.next_attempt_at FROM urls JOIN outbox c ON c.id IN (
        SELECT d.id FROM outbox d
        WHERE d.status = 'pending' AND d.url = urls.url AND d.next_attempt_at <= :now
          AND (d.lease_until IS NULL OR d.lease_until <= :now)
          AND d.sequence = (SELECT min(e.sequence) FROM outbox e
                            WHERE e.task_id = d.task_id AND e.subscriber = d.subscriber
                              AND e.status = 'pending')
        ORDER BY d.next_attempt_at LIMIT :per_url)
    WHERE urls.url IS NOT NULL
),
due AS (
    SELECT id, url, next_attempt_at,
           ROW_NUMBER() OVER (PARTITION BY url ORDER BY next_attempt_at) AS rank
    FROM candidates
)
UPDATE outbox SET lease_until = :lease_until WHERE id IN (
    SELECT id FROM due
    WHERE rank <= :per_url - coalesce((SELECT value FROM json_each(:inflight)
                                       WHERE json_each.key = due.url), 0)
    ORDER BY next_attempt_at LIMIT :limit)
RETURNING id, task_id, subscriber, url, payload, attempts;

-- The first entry of outbox_ready: when a pending delivery is next due and not leased.
-- name: next_delivery_due
SELECT min(max(next_attempt_at, coalesce(lease_until, 0))) FROM outbox WHERE status = 'pending';

-- name: record_delivery
UPDATE outbox SET status = :status, attempts = :attempts, next_attempt_at = :next_attempt_at,
       lease_until = NULL, last_status = :last_status, last_error = :last_error,
       last_attempt_at = :now,
       delivered_at = CASE WHEN :status = 'delivered' THEN :now ELSE delivered_at END
WHERE id = :id;

-- One attempt's record (issue 15): the delivery page lists the last ATTEMPTS_KEPT of them.
-- name: insert_delivery_attempt
INSERT INTO delivery_attempts (delivery_id, attempt, at, duration_ms, http_status, response, error)
VALUES (:id, :attempt, :at, :duration_ms, :http_status, :response, :error);

-- Older attempts than the last :keep of a delivery: one index range of delivery_attempts.
-- name: trim_delivery_attempts
DELETE FROM delivery_attempts WHERE delivery_id = :id AND id <= (
    SELECT id FROM delivery_attempts WHERE delivery_id = :id ORDER BY id DESC LIMIT 1 OFFSET :keep);

-- name: delivery_attempts
SELECT attempt, at, duration_ms, http_status, response, error FROM delivery_attempts
WHERE delivery_id = :id ORDER BY id DESC LIMIT :keep;

-- An endpoint's attempt counts and last failure (its success rate in the console).
-- name: count_endpoint_attempt
UPDATE endpoints SET attempts_ok = attempts_ok + :ok, attempts_failed = attempts_failed + 1 - :ok,
       last_failure_at = CASE WHEN :ok = 1 THEN last_failure_at ELSE :now END,
       last_failure = CASE WHEN :ok = 1 THEN last_failure ELSE :error END
WHERE id = :id;

-- Send a delivery again (same webhook-id), whatever became of it: a delivered or dead one starts
-- the schedule over; a pending one is due now, its attempts counted on (issue 15: "retry now"),
-- unless an attempt is under way (leased), which is left alone.
-- name: retry_delivery
UPDATE outbox SET status = 'pending', next_attempt_at = min(next_attempt_at, :now),
       lease_until = NULL, attempts = CASE WHEN status = 'pending' THEN attempts ELSE 0 END
WHERE id = :id AND owner = :owner
  AND (status != 'pending' OR lease_until IS NULL OR lease_until <= :now);

-- name: delivery_by_id
SELECT * FROM outbox WHERE id = :id AND owner = :owner;

-- A page of an owner's deliveries, newest first: this head, the fragment of each filter given
-- (see SQLiteStore.list_deliveries), then list_deliveries_end.
-- name: list_deliveries
SELECT * FROM outbox WHERE owner = :owner

-- name: list_deliveries_status
AND status = :status

-- name: list_deliveries_task_id
AND task_id = :task_id

-- name: list_deliveries_cursor
AND id < :cursor

-- name: list_deliveries_end
ORDER BY id DESC LIMIT :limit;


-- == The submission queue (issue 13) =============================================================

-- name: queue_insert
INSERT INTO submit_queue (task_id, provider, owner, queued_at, due_at, lease_until, request)
VALUES (:task_id, :provider, :owner, :now, :now, :lease_until, :request);

-- A provider's jobs in flight (submitted, not terminal: tasks_unfinished_provider), the rows
-- being sent now (each holds a slot), and the rows waiting their turn.
-- Bounded on the submit path: jobs in flight are counted only under a cap (:capped), and the
-- tasks waiting only up to :most (a claim's limit; 1 to ask whether any waits).
-- name: queue_room
SELECT CASE WHEN :capped THEN
         (SELECT count(*) FROM tasks WHERE provider = :provider AND finished_at IS NULL
            AND status IN ('SUBMITTED', 'IN_PROGRESS', 'MODAL')) ELSE 0 END AS started,
       (SELECT count(*) FROM submit_queue WHERE provider = :provider
          AND lease_until > :now) AS sending,
       (SELECT count(*) FROM (SELECT 1 FROM submit_queue WHERE provider = :provider
          AND (lease_until IS NULL OR lease_until <= :now) LIMIT :most)) AS waiting;

-- The next task to send, round-robin across owners: the owner served longest ago first, and
-- its oldest task.
-- name: queue_next
SELECT q.task_id, q.owner, q.lease_until FROM submit_queue q
LEFT JOIN submit_turns s ON s.provider = q.provider AND s.owner = q.owner
WHERE q.provider = :provider AND q.due_at <= :now
  AND (q.lease_until IS NULL OR q.lease_until <= :now)
ORDER BY coalesce(s.served_at, 0), q.queued_at LIMIT 1;

-- name: queue_claim
UPDATE submit_queue SET lease_until = :lease_until, attempts = attempts + 1,
       claimed = claimed + :reclaimed
WHERE task_id = :task_id
RETURNING *;

-- name: queue_turn
INSERT INTO submit_turns (provider, owner, served_at) VALUES (:provider, :owner, :served_at)
ON CONFLICT (provider, owner) DO UPDATE SET served_at = excluded.served_at;

-- name: queue_release
UPDATE submit_queue SET lease_until = NULL, due_at = :due_at, last_answer = :last_answer,
       request = coalesce(:request, request)
WHERE task_id = :task_id;

-- The timers take a queued task past its submit timeout this way before ending it: never
-- one a submitter holds (is sending), and no submitter claims it from then on.
-- name: queue_take
UPDATE submit_queue SET lease_until = :lease_until
WHERE task_id = :task_id AND (lease_until IS NULL OR lease_until <= :now);

-- name: queue_delete
DELETE FROM submit_queue WHERE task_id = :task_id;

-- name: queue_row
SELECT * FROM submit_queue WHERE task_id = :task_id;

-- name: queue_owner_depth
SELECT count(*) FROM submit_queue WHERE owner = :owner AND provider = :provider;

-- name: queue_stats
SELECT provider, sum(lease_until IS NULL OR lease_until <= :now) AS waiting,
       sum(lease_until > :now) AS sending, min(queued_at) AS oldest
FROM submit_queue GROUP BY provider;
