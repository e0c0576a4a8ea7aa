-- jobhook schema, version 6: a delivery replayed again and again (a signed callback sent in a
-- loop) is one `duplicate` event that counts its repeats, not a new row each time.

ALTER TABLE events ADD COLUMN repeats INTEGER NOT NULL DEFAULT 0;
