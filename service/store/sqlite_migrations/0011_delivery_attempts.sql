-- jobhook schema, version 11 (issue 15): every delivery's recent attempts (the console's
-- delivery page and GET /v1/deliveries/{id}), at most the last 20 per delivery (the deliverer
-- trims older ones as it records a new one), and each endpoint's attempt counts and last
-- failure (its success rate in the console), kept as the deliverer records each attempt.
CREATE TABLE delivery_attempts (
    id          INTEGER PRIMARY KEY,
    delivery_id TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    at          TEXT NOT NULL,
    duration_ms REAL,
    http_status INTEGER,
    response    TEXT,
    error       TEXT
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, id);

ALTER TABLE endpoints ADD COLUMN attempts_ok INTEGER NOT NULL DEFAULT 0;
ALTER TABLE endpoints ADD COLUMN attempts_failed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE endpoints ADD COLUMN last_failure_at TEXT;
ALTER TABLE endpoints ADD COLUMN last_failure TEXT;
