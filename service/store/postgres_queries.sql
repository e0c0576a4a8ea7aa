-- The PostgreSQL store's statements, by name (service/store/queries.py reads them). Parameters
-- are written :name and bound by name (postgres.py numbers them $1, $2, ... once, at import).
-- Each is one round trip: what SQLite does in several statements is one statement here (CTEs).

-- ---- schema --------------------------------------------------------------------------------

-- Held until the transaction ends: migrations, and delivery claims, one process at a time.
-- name: advisory_lock
SELECT pg_advisory_xact_lock(:lock_class, :lock_key);

-- name: create_schema_version
CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL);

-- name: schema_version
SELECT coalesce(max(version), 0) FROM schema_version;

-- name: record_schema_version
INSERT INTO schema_version VALUES (:version);

-- ---- tasks ---------------------------------------------------------------------------------

-- name: insert_task
INSERT INTO tasks (id, owner, provider, action, status, params, parent_id, metadata,
                   callback_url, callback_events, created_at, updated_at, status_since)
VALUES (:id, :owner, :provider, :action, 'NOT_START', :params, :parent_id, :metadata,
        :callback_url, :callback_events, :now, :now, :now_epoch)
RETURNING *;

-- A task with an idempotency key: the key is claimed and the task inserted in one statement.
-- A key already claimed (or being claimed by a transaction that then commits: ON CONFLICT waits
-- for it) inserts nothing, and `idempotent_task` reads the first task.
-- name: insert_task_once
WITH claimed AS (
    INSERT INTO idempotency_keys (owner, key, request_hash, task_id, created_at)
    VALUES (:owner, :key, :request_hash, :id, :now)
    ON CONFLICT (owner, key) DO NOTHING
    RETURNING task_id
)
INSERT INTO tasks (id, owner, provider, action, status, params, parent_id, metadata,
                   callback_url, callback_events, created_at, updated_at, status_since)
SELECT :id::text, :owner::text, :provider::text, :action::text, 'NOT_START', :params::json,
       :parent_id::text, :metadata::json, :callback_url::text, :callback_events::json,
       :now::text, :now::text, :now_epoch::float8
WHERE EXISTS (SELECT 1 FROM claimed)
RETURNING *;

-- name: idempotent_task
SELECT k.request_hash, t.*
FROM idempotency_keys k JOIN tasks t ON t.id = k.task_id
WHERE k.owner = :owner AND k.key = :key;

-- The task, locked for this transaction (FOR NO KEY UPDATE: what the UPDATE takes anyway; it
-- still lets other transactions insert rows that reference the task), how many events already
-- carry the observation's dedupe key (0, 1, or 2: at most two are looked at), and the owner's
-- live endpoints (who hears of an announced change).
-- name: load_for_ingest
SELECT t.*,
       (SELECT count(*) FROM (SELECT 1 FROM events e
         WHERE e.task_id = t.id AND e.dedupe_key = :dedupe_key LIMIT 2) seen)::int AS seen,
       (SELECT coalesce(json_agg(json_build_array(p.id, p.url, p.events) ORDER BY p.id), '[]')
        FROM endpoints p
        WHERE p.owner = t.owner AND p.disabled_at IS NULL AND p.deleted_at IS NULL)::text
         AS endpoints
FROM tasks t
WHERE t.id = :task_id
FOR NO KEY UPDATE OF t;

-- name: lock_task
SELECT 1 FROM tasks WHERE id = :id FOR NO KEY UPDATE;

-- Everything a planned Change writes, in one statement: the event (or one more repeat of the
-- latest event with its dedupe key), the task's columns guarded by the version the change was
-- planned on (when there are any), and the outbox rows (arrays, one element per row).
-- `updated` is 0 when the guarded update found another version; the repeat's event row follows.
-- name: write_change
WITH new_event AS (
    INSERT INTO events (id, task_id, source, type, outcome, from_status, to_status, progress,
                        received_at, detail, dedupe_key, dedupe_seq, raw)
    SELECT :event_id::text, :task_id::text, :source::text, :type::text, :outcome::text,
           :from_status::text, :to_status::text, :event_progress::int, :received_at::text,
           :detail::json, :dedupe_key::text, :dedupe_seq::smallint, :raw::text
    WHERE :event_id::text IS NOT NULL
    RETURNING 1
), repeated AS (
    UPDATE events SET repeats = repeats + 1
    WHERE :event_id::text IS NULL
      AND id = (SELECT id FROM events WHERE task_id = :task_id AND dedupe_key = :dedupe_key
                ORDER BY dedupe_seq DESC LIMIT 1)
    RETURNING *
), task AS (
    UPDATE tasks SET status = :status, progress = :progress, modal_entered = :modal_entered,
           version = :version, sequence = :sequence, updated_at = :updated_at,
           result = :result, params = :params, error = :error, finished_at = :finished_at,
           provider_task_id = :provider_task_id, status_since = :status_since,
           next_poll_at = :next_poll_at, poll_attempts = :poll_attempts,
           poll_lease_until = :poll_lease_until,
           previous_provider_task_id = :previous_provider_task_id
    WHERE :write_task::bool AND id = :task_id AND version = :old_version
    RETURNING 1
), outbox_rows AS (
    INSERT INTO outbox (id, task_id, owner, subscriber, url, event_type, sequence, payload,
                        next_attempt_at, created_at)
    SELECT * FROM unnest(:outbox_ids::text[], :outbox_task_ids::text[], :outbox_owners::text[],
                         :outbox_subscribers::text[], :outbox_urls::text[],
                         :outbox_event_types::text[], :outbox_sequences::int[],
                         :outbox_payloads::text[], :outbox_next_attempt_ats::float8[],
                         :outbox_created_ats::text[])
    RETURNING 1
), notified AS (
    -- Every process LISTENing hears of the change when (and only if) this commits.
    SELECT pg_notify('jobhook', :notice::text) WHERE :notice::text IS NOT NULL
)
SELECT (SELECT count(*) FROM task)::int AS updated,
       (SELECT count(*) FROM new_event)::int AS inserted,
       (SELECT count(*) FROM outbox_rows)::int AS announced,
       (SELECT count(*) FROM notified)::int AS notified,
       r.*
FROM (SELECT 1) one LEFT JOIN repeated r ON true;

-- The workers of every process hear of the new due time (a hint asks for a poll now).
-- name: reschedule
WITH moved AS (
    UPDATE tasks SET next_poll_at = :next_poll_at, poll_attempts = :attempts,
           poll_lease_until = CASE WHEN :release::bool THEN NULL ELSE poll_lease_until END
    WHERE id = :id AND finished_at IS NULL
    RETURNING next_poll_at
)
SELECT pg_notify('jobhook', json_build_object('p', next_poll_at)::text) FROM moved;

-- Lease up to `limit` due tasks. SKIP LOCKED: a row another worker is claiming (or ingest is
-- writing) is passed over, never waited for; the locking read re-checks the lease on the row's
-- latest version, so a task claimed and committed meanwhile is not claimed again.
-- name: claim_due_polls
UPDATE tasks SET poll_lease_until = :lease_until
WHERE id IN (
    SELECT id FROM tasks
    WHERE finished_at IS NULL AND next_poll_at <= :now AND provider_task_id IS NOT NULL
      AND (poll_lease_until IS NULL OR poll_lease_until <= :now)
      AND provider <> ALL (:skip::text[])
    ORDER BY next_poll_at
    LIMIT :limit
    FOR NO KEY UPDATE SKIP LOCKED
)
RETURNING id, provider, provider_task_id, status, poll_attempts, next_poll_at, modal_entered;

-- name: next_poll_due
SELECT min(greatest(next_poll_at, coalesce(poll_lease_until, 0))) FROM tasks
WHERE finished_at IS NULL AND next_poll_at IS NOT NULL AND provider_task_id IS NOT NULL;

-- name: due_timers
SELECT id, status FROM tasks
WHERE finished_at IS NULL AND (
       (status = 'MODAL' AND status_since <= :modal_before
        AND (modal_call_at IS NULL OR modal_call_at <= :modal_call_before))
    OR (status = 'NOT_START' AND status_since <= :submit_before)
    OR (status = 'SUBMITTED' AND status_since <= :queue_before)
    OR (status = 'IN_PROGRESS' AND status_since <= :run_before))
  AND id <> ALL (:skip::text[])
LIMIT :limit;

-- name: claim_modal
UPDATE tasks SET modal_call_at = :now
WHERE id = :id AND status = 'MODAL'
  AND (modal_call_at IS NULL OR modal_call_at <= :claimed_before);

-- name: release_modal
UPDATE tasks SET modal_call_at = NULL WHERE id = :id;

-- Each unfinished task at a random point of the spread. The rows are locked in id order, so two
-- workers starting at once cannot deadlock on them; then each is found again by its id (an
-- array, not a join, which the planner may make a hash join over every task, finished or not).
-- name: reschedule_unfinished
UPDATE tasks SET next_poll_at = least(coalesce(next_poll_at, :now), :now + random() * :spread)
WHERE id = ANY (ARRAY(SELECT id FROM tasks WHERE finished_at IS NULL
                      AND provider_task_id IS NOT NULL ORDER BY id FOR NO KEY UPDATE));

-- A task by jobhook id, provider task id, or the provider task it followed before a modal call
-- named a new one (the newest, should several match): three index lookups, then the owner
-- filter (`owner` NULL: any owner). Not `id = :ref OR provider_task_id = :ref OR ...`, which the
-- planner may make a walk back through every task until one matches (it did, on a database not
-- yet analyzed: tests/integration/test_query_plans_postgres.py).
-- name: get_task
SELECT * FROM (
    SELECT * FROM tasks WHERE id = :ref
    UNION ALL
    SELECT * FROM tasks WHERE provider_task_id = :ref
    UNION ALL
    SELECT * FROM tasks WHERE previous_provider_task_id = :ref
) found
WHERE :owner::text IS NULL OR owner = :owner
ORDER BY id DESC LIMIT 1;

-- An owner's tasks, newest first, below a cursor (page one passes one above every id). The
-- filters a request names are added as `list_tasks_<filter>` blocks, then `list_tasks_page`
-- (postgres.py composes them): each combination is a statement of its own, whose plan reads
-- the index of its filter.
-- name: list_tasks
SELECT * FROM tasks WHERE owner = :owner AND id < :before

-- name: list_tasks_status
AND status = ANY (:status::text[])

-- name: list_tasks_provider
AND provider = :provider

-- name: list_tasks_action
AND action = :action

-- name: list_tasks_created_after
AND created_at >= :created_after

-- name: list_tasks_created_before
AND created_at < :created_before

-- name: list_tasks_page
ORDER BY id DESC LIMIT :limit

-- name: list_events
SELECT * FROM events WHERE task_id = :task_id AND id > :after ORDER BY id LIMIT :limit;

-- name: changed_since
SELECT * FROM tasks WHERE updated_at >= :since ORDER BY updated_at LIMIT :limit;

-- name: backlog
SELECT (SELECT count(*) FROM tasks WHERE finished_at IS NULL AND next_poll_at <= :now
          AND provider_task_id IS NOT NULL)
     + (SELECT count(*) FROM outbox WHERE status = 'pending' AND next_attempt_at <= :now);

-- Tasks by provider and status: finished ones from the counters the triggers of migration 0002
-- keep (each spread over a few slots), unfinished ones counted in their partial index
-- (tasks_unfinished_provider: the working set, never the finished history).
-- name: stats_tasks
SELECT provider, status, sum(n)::int AS n FROM task_counts
GROUP BY provider, status HAVING sum(n) > 0
UNION ALL
SELECT provider, status, count(*)::int FROM tasks WHERE finished_at IS NULL
GROUP BY provider, status;

-- Polls due now (an index range of tasks_poll_due), and the age of the oldest unfinished task
-- (the first entry of tasks_unfinished_created).
-- name: stats_due
SELECT (SELECT count(*) FROM tasks WHERE finished_at IS NULL AND next_poll_at <= :now
          AND provider_task_id IS NOT NULL)::int AS polls_due,
       (SELECT extract(epoch FROM now() - min(created_at)::timestamptz) FROM tasks
        WHERE finished_at IS NULL)::float8 AS oldest;

-- Deliveries not delivered, by status, from the counters; how many pending ones are due now
-- (an index range of outbox_due).
-- name: stats_outbox
SELECT status, sum(n)::int AS n,
       CASE WHEN status = 'pending' THEN
         (SELECT count(*) FROM outbox WHERE status = 'pending' AND next_attempt_at <= :now)::int
       ELSE 0 END AS due
FROM delivery_counts WHERE status <> 'delivered'
GROUP BY status HAVING sum(n) > 0;

-- The store can take writes: a primary, not a read-only replica or transaction.
-- name: writable
SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off';

-- ---- notifications -------------------------------------------------------------------------

-- name: insert_endpoint
INSERT INTO endpoints (id, owner, url, events, description, secret, created_at)
VALUES (:id, :owner, :url, :events, :description, :secret, :now)
RETURNING *;

-- name: list_endpoints
SELECT * FROM endpoints WHERE owner = :owner AND deleted_at IS NULL ORDER BY id;

-- name: get_endpoint
SELECT * FROM endpoints WHERE id = :id AND owner = :owner AND deleted_at IS NULL;

-- Deleted, and its pending deliveries dead with the reason; one row if the endpoint was there.
-- name: delete_endpoint
WITH gone AS (
    UPDATE endpoints SET deleted_at = :now
    WHERE id = :id AND owner = :owner AND deleted_at IS NULL
    RETURNING id
), buried AS (
    UPDATE outbox SET status = 'dead', last_error = :reason, lease_until = NULL
    WHERE subscriber = :id AND status = 'pending' AND EXISTS (SELECT 1 FROM gone)
    RETURNING 1
)
SELECT id FROM gone;

-- name: enable_endpoint
UPDATE endpoints SET disabled_at = NULL, disabled_reason = NULL, failing_since = NULL
WHERE id = :id AND owner = :owner AND deleted_at IS NULL
RETURNING *;

-- In an UPDATE the right-hand sides read the row as it was: the old secret becomes previous.
-- name: rotate_secret
UPDATE endpoints SET secret = :secret, previous_secret = secret, previous_secret_until = :until
WHERE id = :id AND owner = :owner AND deleted_at IS NULL
RETURNING *;

-- Lease due deliveries: per task and subscriber only the earliest pending row (a later event
-- never overtakes an earlier one); per receiving URL at most `per_url` in flight, counting the
-- unexpired leases of every process (and this process's own attempts, `inflight_*`, should a
-- lease have run out under one). Runs under advisory_lock (all processes take turns), so no two
-- claims count the same leases twice; SKIP LOCKED passes over a row whose result is being
-- written. Bounded work whatever the backlog: the URLs with pending rows are found by skipping
-- through outbox_pending_url (one probe per receiver), per URL at most per_url due rows are read
-- from it in due order, its leases counted in outbox_leased; a row is first of its task and
-- subscriber when its sequence is the least pending one (a probe of outbox_pending_order).
-- name: claim_deliveries
WITH RECURSIVE urls AS (
    (SELECT url FROM outbox WHERE status = 'pending' ORDER BY url LIMIT 1)
    UNION ALL
    SELECT (SELECT o.url FROM outbox o WHERE o.status = 'pending' AND o.url > urls.url
            ORDER BY o.url LIMIT 1)
    FROM urls WHERE urls.url IS NOT NULL
), mine AS (
    SELECT * FROM unnest(:inflight_urls::text[], :inflight_counts::int[]) AS m (url, n)
), due AS (
    SELECT d.id, d.url, d.next_attempt_at,
           row_number() OVER (PARTITION BY d.url ORDER BY d.next_attempt_at) AS rank,
           (SELECT count(*) FROM outbox b
            WHERE b.status = 'pending' AND b.url = urls.url AND b.lease_until > :now)::int
               AS busy
    FROM urls CROSS JOIN LATERAL (
        SELECT c.id, c.url, c.next_attempt_at FROM outbox c
        WHERE c.status = 'pending' AND c.url = urls.url AND c.next_attempt_at <= :now
          AND (c.lease_until IS NULL OR c.lease_until <= :now)
          AND c.sequence = (SELECT min(e.sequence) FROM outbox e
                            WHERE e.task_id = c.task_id AND e.subscriber = c.subscriber
                              AND e.status = 'pending')
        ORDER BY c.url, c.next_attempt_at  -- outbox_pending_url's order: one range per URL
        LIMIT :per_url
    ) d
    WHERE urls.url IS NOT NULL
), chosen AS (
    SELECT due.id FROM due
    WHERE rank <= :per_url - greatest(
        busy, coalesce((SELECT sum(n) FROM mine WHERE mine.url = due.url), 0))
    ORDER BY next_attempt_at
    LIMIT :limit
), locked AS (
    SELECT id FROM outbox
    WHERE id = ANY (ARRAY(SELECT id FROM chosen)) AND status = 'pending'
      AND (lease_until IS NULL OR lease_until <= :now)
    FOR NO KEY UPDATE SKIP LOCKED
), claimed AS (
    UPDATE outbox SET lease_until = :lease_until
    WHERE id IN (SELECT id FROM locked)
    RETURNING id, task_id, subscriber, url, payload, attempts, next_attempt_at
)
SELECT c.id, c.task_id, c.subscriber, c.url, c.payload, c.attempts,
       p.secret, p.previous_secret, p.previous_secret_until
FROM claimed c LEFT JOIN endpoints p ON p.id = c.subscriber
ORDER BY c.next_attempt_at, c.id;

-- An attempt's result; and for an endpoint, its failing streak (cleared by a success, started
-- by a failure), returned so the caller can decide whether to disable it.
-- name: record_delivery
WITH attempt AS (
    UPDATE outbox SET status = :status, attempts = :attempts, next_attempt_at = :next_attempt_at,
           lease_until = NULL, last_status = :http_status, last_error = :error,
           last_attempt_at = :now,
           delivered_at = CASE WHEN :status = 'delivered' THEN :now ELSE delivered_at END
    WHERE id = :id
    RETURNING 1
), logged AS (  -- the attempt's record (issue 15): the last :keep per delivery are kept
    INSERT INTO delivery_attempts (delivery_id, attempt, at, duration_ms, http_status, response,
                                   error)
    VALUES (:id, :attempts, :now, :duration_ms, :http_status, :response, :error)
    RETURNING 1
), trimmed AS (  -- this statement's snapshot does not hold the row just logged: keep :keep - 1
    DELETE FROM delivery_attempts WHERE delivery_id = :id AND id <= (
        SELECT id FROM delivery_attempts WHERE delivery_id = :id
        ORDER BY id DESC LIMIT 1 OFFSET :keep - 1)
    RETURNING 1
), streak AS (
    UPDATE endpoints
    SET failing_since = CASE WHEN :status = 'delivered' THEN NULL
                             ELSE coalesce(failing_since, :at) END,
        attempts_ok = attempts_ok + CASE WHEN :status = 'delivered' THEN 1 ELSE 0 END,
        attempts_failed = attempts_failed + CASE WHEN :status = 'delivered' THEN 0 ELSE 1 END,
        last_failure_at = CASE WHEN :status = 'delivered' THEN last_failure_at ELSE :now END,
        last_failure = CASE WHEN :status = 'delivered' THEN last_failure ELSE :error END
    WHERE id = :subscriber AND :subscriber <> 'task'
    RETURNING failing_since
)
SELECT (SELECT count(*) FROM attempt)::int AS recorded, (SELECT failing_since FROM streak),
       (SELECT count(*) FROM logged)::int AS logged, (SELECT count(*) FROM trimmed)::int AS trimmed;

-- One delivery of an owner's (issue 15: GET /v1/deliveries/{id}).
-- name: delivery_by_id
SELECT * FROM outbox WHERE id = :id AND owner = :owner;

-- A delivery's last :keep attempts, newest first (issue 15).
-- name: delivery_attempts
SELECT attempt, at, duration_ms, http_status, response, error FROM delivery_attempts
WHERE delivery_id = :id ORDER BY id DESC LIMIT :keep;

-- name: disable_endpoint
WITH disabled AS (
    UPDATE endpoints SET disabled_at = :now, disabled_reason = :reason
    WHERE id = :id
    RETURNING id
)
UPDATE outbox SET status = 'dead', last_error = :dead_reason, lease_until = NULL
WHERE subscriber = :id AND status = 'pending' AND EXISTS (SELECT 1 FROM disabled);

-- name: next_delivery_due
SELECT min(greatest(next_attempt_at, coalesce(lease_until, 0))) FROM outbox
WHERE status = 'pending';

-- An owner's deliveries, newest first, composed like list_tasks.
-- name: list_deliveries
SELECT * FROM outbox WHERE owner = :owner AND id < :before

-- name: list_deliveries_status
AND status = :status

-- name: list_deliveries_task_id
AND task_id = :task_id

-- name: list_deliveries_page
ORDER BY id DESC LIMIT :limit

-- Send a delivery again (same webhook-id), whatever became of it: the row as it is now. A
-- delivered or dead one starts the schedule over; a pending one is due now, its attempts counted
-- on (issue 15: "retry now"), unless an attempt is under way (leased): returned unchanged.
-- name: retry_delivery
WITH retried AS (
    UPDATE outbox SET status = 'pending', next_attempt_at = least(next_attempt_at, :now),
           lease_until = NULL,
           attempts = CASE WHEN status = 'pending' THEN attempts ELSE 0 END
    WHERE id = :id AND owner = :owner
      AND (status <> 'pending' OR lease_until IS NULL OR lease_until <= :now)
    RETURNING *
), notified AS (  -- every process's deliverer hears of it
    SELECT pg_notify('jobhook', '{"d": 1}') FROM retried
)
SELECT retried.* FROM retried LEFT JOIN notified ON true
UNION ALL
SELECT * FROM outbox
WHERE id = :id AND owner = :owner AND NOT EXISTS (SELECT 1 FROM retried);


-- == The submission queue (issue 13) =============================================================

-- Every claim and admission of a provider's slots holds this lock to the end of its
-- transaction: the count of jobs in flight and the claims it allows are one step across
-- processes, so a provider's concurrency holds however many workers run.
-- name: queue_lock
SELECT pg_advisory_xact_lock(hashtext('jobhook.submit.' || :provider::text));

-- name: queue_insert
INSERT INTO submit_queue (task_id, provider, owner, queued_at, due_at, lease_until, request)
VALUES (:task_id, :provider, :owner, :now, :now, :lease_until, :request);

-- Bounded on the submit path: jobs in flight are counted only under a cap (:capped), and the
-- tasks waiting only up to :most (a claim's limit; 1 to ask whether any waits).
-- name: queue_room
SELECT CASE WHEN :capped::boolean THEN
         (SELECT count(*) FROM tasks WHERE provider = :provider AND finished_at IS NULL
            AND status IN ('SUBMITTED', 'IN_PROGRESS', 'MODAL'))::int ELSE 0 END AS started,
       (SELECT count(*) FROM submit_queue WHERE provider = :provider
          AND lease_until > :now)::int AS sending,
       (SELECT count(*) FROM (SELECT 1 FROM submit_queue WHERE provider = :provider
          AND (lease_until IS NULL OR lease_until <= :now) LIMIT :most) w)::int AS waiting;

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
SELECT count(*)::int FROM submit_queue WHERE owner = :owner AND provider = :provider;

-- name: queue_stats
SELECT provider,
       count(*) FILTER (WHERE lease_until IS NULL OR lease_until <= :now)::int AS waiting,
       count(*) FILTER (WHERE lease_until > :now)::int AS sending, min(queued_at) AS oldest
FROM submit_queue GROUP BY provider;
