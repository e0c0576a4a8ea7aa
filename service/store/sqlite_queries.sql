-- The SQLite store's statements, by name (service/store/queries.py reads them).

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

-- One more replay of a delivery recorded twice: counted on the latest event with its key.
-- name: count_repeat
UPDATE events SET repeats = repeats + 1
WHERE id = (SELECT id FROM events WHERE task_id = :task_id AND dedupe_key = :dedupe_key
            ORDER BY id DESC LIMIT 1)
RETURNING *;

-- Every column a change may touch, guarded by the version the change was planned on.
-- name: update_task
UPDATE tasks SET status = :status, progress = :progress, modal_entered = :modal_entered,
       version = :version, sequence = :sequence, updated_at = :updated_at, result = :result,
       params = :params, error = :error, finished_at = :finished_at,
       provider_task_id = :provider_task_id, status_since = :status_since,
       next_poll_at = :next_poll_at, poll_attempts = :poll_attempts,
       poll_lease_until = :poll_lease_until
WHERE id = :id AND version = :old_version;

-- name: insert_outbox
INSERT INTO outbox (id, task_id, owner, subscriber, url, event_type, sequence, payload,
                    next_attempt_at, created_at)
VALUES (:id, :task_id, :owner, :subscriber, :url, :event_type, :sequence, :payload,
        :next_attempt_at, :created_at);
