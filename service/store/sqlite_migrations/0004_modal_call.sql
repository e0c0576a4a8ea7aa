-- jobhook schema, version 4: a modal call under way is claimed, so two calls (or a call and the
-- MODAL timer) never race to the provider.

ALTER TABLE tasks ADD COLUMN modal_call_at REAL;
