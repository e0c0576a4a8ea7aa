-- Issue 13: the durable submission queue (see the SQLite migration 0010).
CREATE TABLE submit_queue (
    task_id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    owner TEXT NOT NULL,
    queued_at DOUBLE PRECISION NOT NULL,
    due_at DOUBLE PRECISION NOT NULL,
    lease_until DOUBLE PRECISION,
    attempts INTEGER NOT NULL DEFAULT 0,
    claimed INTEGER NOT NULL DEFAULT 0,
    request TEXT NOT NULL,
    last_answer TEXT
);
CREATE INDEX submit_queue_due ON submit_queue (provider, due_at);
CREATE INDEX submit_queue_owner ON submit_queue (owner);
CREATE TABLE submit_turns (
    provider TEXT NOT NULL,
    owner TEXT NOT NULL,
    served_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (provider, owner)
);
