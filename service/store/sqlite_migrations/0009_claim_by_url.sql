-- jobhook schema, version 9: the deliverer's claim costs the same at 20 or 20,000 pending
-- deliveries. It walks the receiving URLs that have pending rows (one index probe each: there
-- are as many as there are receivers), and for each reads at most per-URL-limit due rows in
-- due order from this index, instead of ranking every due row on every claim (12.6 ms at 2,000
-- pending, 40 ms at 5,000, on the writer thread that every ingest waits for).
CREATE INDEX outbox_pending_url ON outbox (url, next_attempt_at) WHERE status = 'pending';
