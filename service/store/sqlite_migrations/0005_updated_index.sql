-- jobhook schema, version 5: changes in time order, for the web process's change feed when the
-- workers run in another process.

CREATE INDEX tasks_updated ON tasks (updated_at);
