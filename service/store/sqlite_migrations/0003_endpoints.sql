-- jobhook schema, version 3: client webhook endpoints and the delivery log.

CREATE TABLE endpoints (
    id                    TEXT PRIMARY KEY,
    owner                 TEXT NOT NULL,
    url                   TEXT NOT NULL,
    events                TEXT NOT NULL,          -- JSON list of event types; [] means all
    description           TEXT,
    secret                TEXT NOT NULL,
    previous_secret       TEXT,
    previous_secret_until REAL,
    failing_since         REAL,
    disabled_at           TEXT,
    disabled_reason       TEXT,
    deleted_at            TEXT,
    created_at            TEXT NOT NULL
);
CREATE INDEX endpoints_owner ON endpoints (owner) WHERE deleted_at IS NULL;

ALTER TABLE outbox ADD COLUMN owner TEXT;
ALTER TABLE outbox ADD COLUMN last_status INTEGER;
ALTER TABLE outbox ADD COLUMN last_attempt_at TEXT;
UPDATE outbox SET owner = (SELECT owner FROM tasks WHERE tasks.id = outbox.task_id);
CREATE INDEX outbox_owner ON outbox (owner, id);
CREATE INDEX outbox_pending_order ON outbox (task_id, subscriber, sequence) WHERE status = 'pending';
