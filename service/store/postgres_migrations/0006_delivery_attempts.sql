-- jobhook schema, version 6 (issue 15): every delivery's recent attempts (the console's
-- delivery page and GET /v1/deliveries/{id}), at most the last 20 per delivery (trimmed as each
-- new one is recorded), and each endpoint's attempt counts and last failure (its success rate).
CREATE TABLE IF NOT EXISTS delivery_attempts (
    id          bigserial PRIMARY KEY,
    delivery_id text COLLATE "C" NOT NULL,
    attempt     integer NOT NULL,
    at          text COLLATE "C" NOT NULL,
    duration_ms double precision,
    http_status integer,
    response    text,
    error       text
);
CREATE INDEX IF NOT EXISTS delivery_attempts_delivery ON delivery_attempts (delivery_id, id);

ALTER TABLE endpoints ADD COLUMN IF NOT EXISTS attempts_ok bigint NOT NULL DEFAULT 0;
ALTER TABLE endpoints ADD COLUMN IF NOT EXISTS attempts_failed bigint NOT NULL DEFAULT 0;
ALTER TABLE endpoints ADD COLUMN IF NOT EXISTS last_failure_at text COLLATE "C";
ALTER TABLE endpoints ADD COLUMN IF NOT EXISTS last_failure text;
