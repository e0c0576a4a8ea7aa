-- Issue 13: the durable submission queue. A row per task accepted but not yet taken by its
-- provider: waiting (lease_until NULL or past) or being sent (lease_until ahead: it holds one of
-- the provider's in-flight slots). The row is deleted once the provider's answer is ingested.
CREATE TABLE submit_queue (
    task_id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    owner TEXT NOT NULL,
    queued_at REAL NOT NULL,
    due_at REAL NOT NULL,
    lease_until REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    claimed INTEGER NOT NULL DEFAULT 0,
    request TEXT NOT NULL,
    last_answer TEXT
);
CREATE INDEX submit_queue_due ON submit_queue (provider, due_at);
CREATE INDEX submit_queue_owner ON submit_queue (owner);
-- Round-robin across owners: when each owner's queued task last got a provider's slot.
CREATE TABLE submit_turns (
    provider TEXT NOT NULL,
    owner TEXT NOT NULL,
    served_at REAL NOT NULL,
    PRIMARY KEY (provider, owner)
);
