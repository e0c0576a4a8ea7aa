-- jobhook schema for PostgreSQL, version 1: the same tables as SQLite's schema after all of its
-- migrations (sqlite_migrations/0001..0006), so both stores give the same views.
--
-- Types: ids and RFC 3339 timestamps are text in the "C" collation (ids sort by their bytes, as
-- in SQLite, whatever the database's locale; timestamps compare as text, as they are written);
-- epoch seconds (due times, leases) are double precision; JSON is `json`, which keeps the text
-- as written (key order included: `jsonb` would reorder a client's metadata); webhook bodies
-- are text, the exact bytes that are signed.

CREATE TABLE tasks (
    id               text COLLATE "C" PRIMARY KEY,
    owner            text NOT NULL,
    provider         text NOT NULL,
    action           text NOT NULL,
    status           text NOT NULL CHECK (status IN
                     ('NOT_START', 'SUBMITTED', 'IN_PROGRESS', 'MODAL', 'SUCCESS', 'FAILURE', 'CANCEL')),
    progress         integer NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    provider_task_id text,
    parent_id        text COLLATE "C" REFERENCES tasks (id),
    params           json NOT NULL,
    result           json,
    error            json,
    metadata         json,
    callback_url     text,
    callback_events  json,
    modal_entered    boolean NOT NULL DEFAULT false,
    version          integer NOT NULL DEFAULT 0,
    sequence         integer NOT NULL DEFAULT 0,
    created_at       text COLLATE "C" NOT NULL,
    updated_at       text COLLATE "C" NOT NULL,
    finished_at      text COLLATE "C",
    status_since     double precision,
    next_poll_at     double precision,
    poll_lease_until double precision,
    poll_attempts    integer NOT NULL DEFAULT 0,
    modal_call_at    double precision,
    CHECK ((status IN ('SUCCESS', 'FAILURE', 'CANCEL')) = (finished_at IS NOT NULL))
);
-- Every statement on a request or worker path finds its rows through an index (as SQLite's
-- 0007_no_scans): an owner's list, and each of its filters, read one page in id order.
CREATE INDEX tasks_owner_id ON tasks (owner, id);
CREATE INDEX tasks_owner_status ON tasks (owner, status, id);
CREATE INDEX tasks_owner_provider ON tasks (owner, provider, id);
CREATE INDEX tasks_owner_action ON tasks (owner, action, id);
CREATE INDEX tasks_provider_task_id ON tasks (provider_task_id) WHERE provider_task_id IS NOT NULL;
CREATE INDEX tasks_poll_due ON tasks (next_poll_at) WHERE finished_at IS NULL;
CREATE INDEX tasks_status_since ON tasks (status, status_since) WHERE finished_at IS NULL;
CREATE INDEX tasks_updated ON tasks (updated_at);
CREATE INDEX tasks_unfinished_created ON tasks (created_at) WHERE finished_at IS NULL;
-- When the poller next has work: the first entry (a task becomes claimable when it is due and
-- any lease ran out), not a pass over every unfinished task after each round.
CREATE INDEX tasks_poll_ready ON tasks ((greatest(next_poll_at, coalesce(poll_lease_until, 0))))
    WHERE finished_at IS NULL AND next_poll_at IS NOT NULL AND provider_task_id IS NOT NULL;

-- The state machine's allowed moves, written out again (service/domain/status.py has the same
-- table; tests/integration/test_store_contract.py asserts that the three agree).
CREATE TABLE transitions (
    from_status text NOT NULL,
    to_status   text NOT NULL,
    PRIMARY KEY (from_status, to_status)
);
INSERT INTO transitions VALUES
    ('NOT_START', 'SUBMITTED'), ('NOT_START', 'IN_PROGRESS'), ('NOT_START', 'MODAL'),
    ('NOT_START', 'SUCCESS'), ('NOT_START', 'FAILURE'), ('NOT_START', 'CANCEL'),
    ('SUBMITTED', 'IN_PROGRESS'), ('SUBMITTED', 'MODAL'),
    ('SUBMITTED', 'SUCCESS'), ('SUBMITTED', 'FAILURE'), ('SUBMITTED', 'CANCEL'),
    ('IN_PROGRESS', 'MODAL'),
    ('IN_PROGRESS', 'SUCCESS'), ('IN_PROGRESS', 'FAILURE'), ('IN_PROGRESS', 'CANCEL'),
    ('MODAL', 'SUBMITTED'), ('MODAL', 'IN_PROGRESS'),
    ('MODAL', 'SUCCESS'), ('MODAL', 'FAILURE'), ('MODAL', 'CANCEL');

CREATE FUNCTION tasks_refuse_illegal_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM transitions
                   WHERE from_status = OLD.status AND to_status = NEW.status) THEN
        RAISE EXCEPTION 'illegal status transition: % -> %', OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER tasks_transition_guard
BEFORE UPDATE OF status ON tasks
FOR EACH ROW WHEN (OLD.status <> NEW.status)
EXECUTE FUNCTION tasks_refuse_illegal_transition();

-- A running task's progress never goes down.
CREATE FUNCTION tasks_refuse_lower_progress() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'progress may not decrease: % -> %', OLD.progress, NEW.progress
        USING ERRCODE = 'check_violation';
END
$$;
CREATE TRIGGER tasks_progress_guard
BEFORE UPDATE OF progress ON tasks
FOR EACH ROW WHEN (NEW.progress < OLD.progress)
EXECUTE FUNCTION tasks_refuse_lower_progress();

CREATE TABLE events (
    id          text COLLATE "C" PRIMARY KEY,
    task_id     text COLLATE "C" NOT NULL REFERENCES tasks (id),
    source      text NOT NULL CHECK (source IN ('callback', 'poll', 'api', 'timer')),
    type        text NOT NULL,
    outcome     text NOT NULL CHECK (outcome IN
                ('applied', 'duplicate', 'stale', 'conflict', 'rejected')),
    from_status text NOT NULL,
    to_status   text,
    progress    integer,
    received_at text COLLATE "C" NOT NULL,
    detail      json,
    dedupe_key  text,
    -- events of this task that carried dedupe_key before this one (0 or 1; later replays are
    -- counted in `repeats`): unique, so two processes ingesting one delivery at once cannot
    -- both record it as new; the loser's transaction fails and ingest plans it again.
    dedupe_seq  smallint CHECK (dedupe_seq IN (0, 1)),
    raw         text,
    repeats     integer NOT NULL DEFAULT 0,
    CHECK ((dedupe_key IS NULL) = (dedupe_seq IS NULL))
);
CREATE INDEX events_task ON events (task_id, id);
CREATE UNIQUE INDEX events_dedupe ON events (task_id, dedupe_key, dedupe_seq)
    WHERE dedupe_key IS NOT NULL;

CREATE TABLE endpoints (
    id                    text COLLATE "C" PRIMARY KEY,
    owner                 text NOT NULL,
    url                   text NOT NULL,
    events                json NOT NULL,          -- list of event types; [] means all
    description           text,
    secret                text NOT NULL,
    previous_secret       text,
    previous_secret_until double precision,
    failing_since         double precision,
    disabled_at           text COLLATE "C",
    disabled_reason       text,
    deleted_at            text COLLATE "C",
    created_at            text COLLATE "C" NOT NULL
);
CREATE INDEX endpoints_live ON endpoints (owner, id) WHERE deleted_at IS NULL;

-- Transactional outbox: one row per subscriber and announced change, written with the change.
CREATE TABLE outbox (
    id              text COLLATE "C" PRIMARY KEY,
    task_id         text COLLATE "C" NOT NULL REFERENCES tasks (id),
    owner           text,
    subscriber      text COLLATE "C" NOT NULL,
    url             text NOT NULL,
    event_type      text NOT NULL,
    sequence        integer NOT NULL,
    payload         text NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at double precision NOT NULL,
    lease_until     double precision,
    created_at      text COLLATE "C" NOT NULL,
    delivered_at    text COLLATE "C",
    last_error      text,
    last_status     integer,
    last_attempt_at text COLLATE "C"
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX outbox_task ON outbox (task_id, subscriber, sequence);
CREATE INDEX outbox_owner ON outbox (owner, id);
CREATE INDEX outbox_owner_status ON outbox (owner, status, id);
CREATE INDEX outbox_owner_task ON outbox (owner, task_id, id);
CREATE INDEX outbox_ready ON outbox ((greatest(next_attempt_at, coalesce(lease_until, 0))))
    WHERE status = 'pending';
CREATE INDEX outbox_pending_order ON outbox (task_id, subscriber, sequence)
    WHERE status = 'pending';
CREATE INDEX outbox_pending_subscriber ON outbox (subscriber) WHERE status = 'pending';
-- Attempts under way, in every process: what the per-receiver limit counts.
CREATE INDEX outbox_leased ON outbox (url, lease_until)
    WHERE status = 'pending' AND lease_until IS NOT NULL;

CREATE TABLE idempotency_keys (
    owner        text NOT NULL,
    key          text NOT NULL,
    request_hash text NOT NULL,
    task_id      text COLLATE "C" NOT NULL REFERENCES tasks (id),
    created_at   text COLLATE "C" NOT NULL,
    PRIMARY KEY (owner, key)
);
