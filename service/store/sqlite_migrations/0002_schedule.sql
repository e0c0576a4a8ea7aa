-- jobhook schema, version 2: when each task last changed status (timers), and due-time indexes.

ALTER TABLE tasks ADD COLUMN status_since REAL;
UPDATE tasks SET status_since = CAST(strftime('%s', updated_at) AS REAL);

CREATE INDEX tasks_poll_due ON tasks (next_poll_at) WHERE finished_at IS NULL;
CREATE INDEX tasks_status_since ON tasks (status, status_since) WHERE finished_at IS NULL;
