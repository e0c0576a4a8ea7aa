-- jobhook schema, version 1.

CREATE TABLE tasks (
    id               TEXT PRIMARY KEY,
    owner            TEXT NOT NULL,
    provider         TEXT NOT NULL,
    action           TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN
                     ('NOT_START', 'SUBMITTED', 'IN_PROGRESS', 'MODAL', 'SUCCESS', 'FAILURE', 'CANCEL')),
    progress         INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    provider_task_id TEXT,
    parent_id        TEXT REFERENCES tasks (id),
    params           TEXT NOT NULL,
    result           TEXT,
    error            TEXT,
    metadata         TEXT,
    callback_url     TEXT,
    callback_events  TEXT,
    modal_entered    INTEGER NOT NULL DEFAULT 0,
    version          INTEGER NOT NULL DEFAULT 0,
    sequence         INTEGER NOT NULL DEFAULT 0,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    finished_at      TEXT,
    last_callback_at TEXT,
    next_poll_at     REAL,
    poll_lease_until REAL,
    poll_attempts    INTEGER NOT NULL DEFAULT 0,
    CHECK ((status IN ('SUCCESS', 'FAILURE', 'CANCEL')) = (finished_at IS NOT NULL))
);
CREATE INDEX tasks_owner_id ON tasks (owner, id);
CREATE INDEX tasks_provider_task_id ON tasks (provider_task_id) WHERE provider_task_id IS NOT NULL;
CREATE INDEX tasks_unfinished ON tasks (status) WHERE finished_at IS NULL;

-- The state machine's allowed moves, written out again (service/domain/status.py has the same
-- table; tests/integration/test_store_sqlite.py asserts that the two agree).
CREATE TABLE transitions (
    from_status TEXT NOT NULL,
    to_status   TEXT NOT NULL,
    PRIMARY KEY (from_status, to_status)
) WITHOUT ROWID;
INSERT INTO transitions VALUES
    ('NOT_START', 'SUBMITTED'), ('NOT_START', 'IN_PROGRESS'), ('NOT_START', 'MODAL'),
    ('NOT_START', 'SUCCESS'), ('NOT_START', 'FAILURE'), ('NOT_START', 'CANCEL'),
    ('SUBMITTED', 'IN_PROGRESS'), ('SUBMITTED', 'MODAL'),
    ('SUBMITTED', 'SUCCESS'), ('SUBMITTED', 'FAILURE'), ('SUBMITTED', 'CANCEL'),
    ('IN_PROGRESS', 'MODAL'),
    ('IN_PROGRESS', 'SUCCESS'), ('IN_PROGRESS', 'FAILURE'), ('IN_PROGRESS', 'CANCEL'),
    ('MODAL', 'SUBMITTED'), ('MODAL', 'IN_PROGRESS'),
    ('MODAL', 'SUCCESS'), ('MODAL', 'FAILURE'), ('MODAL', 'CANCEL');

CREATE TRIGGER tasks_transition_guard
BEFORE UPDATE OF status ON tasks
WHEN OLD.status != NEW.status AND NOT EXISTS (
    SELECT 1 FROM transitions WHERE from_status = OLD.status AND to_status = NEW.status
)
BEGIN
    SELECT RAISE(ABORT, 'illegal status transition');
END;

-- A running task's progress never goes down.
CREATE TRIGGER tasks_progress_guard
BEFORE UPDATE OF progress ON tasks
WHEN NEW.progress < OLD.progress
BEGIN
    SELECT RAISE(ABORT, 'progress may not decrease');
END;

CREATE TABLE events (
    id          TEXT PRIMARY KEY,
    task_id     TEXT NOT NULL REFERENCES tasks (id),
    source      TEXT NOT NULL CHECK (source IN ('callback', 'poll', 'api', 'timer')),
    type        TEXT NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN
                ('applied', 'duplicate', 'stale', 'conflict', 'rejected')),
    from_status TEXT NOT NULL,
    to_status   TEXT,
    progress    INTEGER,
    received_at TEXT NOT NULL,
    detail      TEXT,
    dedupe_key  TEXT,
    raw         TEXT
);
CREATE INDEX events_task ON events (task_id, id);
CREATE INDEX events_dedupe ON events (task_id, dedupe_key) WHERE dedupe_key IS NOT NULL;

-- Transactional outbox: one row per subscriber and announced change, written with the change.
CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    task_id         TEXT NOT NULL REFERENCES tasks (id),
    subscriber      TEXT NOT NULL,
    url             TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    sequence        INTEGER NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    lease_until     REAL,
    created_at      TEXT NOT NULL,
    delivered_at    TEXT,
    last_error      TEXT
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX outbox_task ON outbox (task_id, subscriber, sequence);

CREATE TABLE idempotency_keys (
    owner        TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    task_id      TEXT NOT NULL REFERENCES tasks (id),
    created_at   TEXT NOT NULL,
    PRIMARY KEY (owner, key)
) WITHOUT ROWID;
